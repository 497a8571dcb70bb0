/*
 * provider_slurm: the compute hosts of a Slurm partition, one runner each
 * (named slurm-HOST), driven through the slurm transport: every worker is
 * an srun job pinned to its host, started when a frame waits for it and
 * ended (its job with it) when it has been idle for a while, so the
 * cluster's GPUs are held only while there is work.  [slurm] slots, the
 * most workers at once, is shared out among the hosts.
 *
 * renderfs's jobs carry the name renderfs-SID-N and the comment
 * renderfs:SID, SID being this state directory's id (meta slurm_id).  At
 * start, jobs left so marked by a renderfs that was killed are cancelled
 * before any new one is submitted; at stop, once every runner has ended
 * its workers, the same sweep runs again.  No other job is ever touched.
 */
#include "engine/provider.h"
#include "nodes/transport.h"
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

struct slurm_state {
	struct runner_set *rs;
	char sid[32];
};

static int slurm_check(const struct config *cfg, const char *state_dir, char *secret, size_t secret_sz,
		       char *err, size_t errsz)
{
	char hosts[1][128];
	struct stat st;
	int n;

	(void)state_dir;
	(void)secret;
	(void)secret_sz;
	if (!cfg->slurm_shared) {
		snprintf(err, errsz,
			 "backend slurm needs [slurm] shared = DIR (a directory every compute node sees "
			 "at the same path)");
		return -EINVAL;
	}
	if (stat(cfg->slurm_shared, &st) < 0 || !S_ISDIR(st.st_mode) || access(cfg->slurm_shared, W_OK)) {
		snprintf(err, errsz, "[slurm] shared: %.300s is not a writable directory", cfg->slurm_shared);
		return -EINVAL;
	}
	if (!strcmp(cfg->slurm_blender, "auto")) {
		snprintf(err, errsz, "[slurm] blender = auto is not supported: give Blender's path on the "
				     "compute nodes");
		return -EINVAL;
	}
	n = slurm_hosts(cfg->slurm_partition, hosts, 1, err, errsz);
	return n > 0 ? 0 : -EINVAL;
}

/* This state directory's id, made once and kept in the store. */
static int state_id(struct store *st, char *sid, size_t sz)
{
	unsigned char raw[6];

	if (store_meta_get(st, "slurm_id", sid, sz) == 0 && slurm_word_ok(sid))
		return 0;
	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
		return -EIO;
	snprintf(sid, sz, "%02x%02x%02x%02x%02x%02x", raw[0], raw[1], raw[2], raw[3], raw[4], raw[5]);
	return store_meta_set(st, "slurm_id", sid);
}

static void slurm_stop(void *arg)
{
	struct slurm_state *ss = arg;

	if (!ss)
		return;
	runner_set_stop(ss->rs);
	/* Each worker's job was cancelled as its slot was killed; this
	 * catches one whose scancel did not reach slurmctld. */
	slurm_cancel_own(ss->sid);
	free(ss);
}

static int slurm_start(const struct provider_env *env, void **state)
{
	const struct config *cfg = env->cfg;
	char hosts[CONFIG_MAX_SSH_NODES][128];
	char err[512];
	struct slurm_state *ss;
	int n, rc, left;

	ss = calloc(1, sizeof(*ss));
	if (!ss)
		return -ENOMEM;
	ss->rs = calloc(1, sizeof(*ss->rs));
	if (!ss->rs) {
		free(ss);
		return -ENOMEM;
	}
	ss->rs->node_free = slurm_node_free;
	rc = state_id(env->st, ss->sid, sizeof(ss->sid));
	if (rc)
		goto out_free;
	store_meta_set(env->st, "ssh_public_key", "");
	store_meta_set(env->st, "clore_status", "");
	/* A killed renderfs left its workers' jobs behind: end them first. */
	rc = slurm_cancel_own(ss->sid);
	if (rc > 0)
		fprintf(stderr, "renderfs: cancelled %d Slurm job%s left by an earlier mount\n", rc,
			rc == 1 ? "" : "s");
	n = slurm_hosts(cfg->slurm_partition, hosts, CONFIG_MAX_SSH_NODES, err, sizeof(err));
	if (n <= 0) {
		fprintf(stderr, "renderfs: %s\n", err);
		rc = n < 0 ? n : -ENODEV;
		goto out_free;
	}
	/* The slots shared out: the first hosts get one more. */
	left = cfg->slurm_slots;
	for (int i = 0; i < n && left > 0; i++) {
		int nslots = cfg->slurm_slots / n + (i < cfg->slurm_slots % n);
		struct slurm_opts o = {
		    .host = hosts[i],
		    .sid = ss->sid,
		    .shared = cfg->slurm_shared,
		    .partition = cfg->slurm_partition,
		    .gres = cfg->slurm_gres,
		    .account = cfg->slurm_account,
		    .qos = cfg->slurm_qos,
		    .time = cfg->slurm_time,
		};
		struct tnode *node;

		if (nslots < 1)
			break;
		left -= nslots;
		node = slurm_node_new(&o);
		rc = node ? runner_set_add(ss->rs, env, node, nslots, cfg->slurm_blender) : -ENOMEM;
		if (rc) {
			slurm_stop(ss);
			return rc;
		}
	}
	*state = ss;
	return 0;

out_free:
	free(ss->rs);
	free(ss);
	return rc;
}

const struct provider provider_slurm = {
    .name = "slurm",
    .check = slurm_check,
    .start = slurm_start,
    .stop = slurm_stop,
};
