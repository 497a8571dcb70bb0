/*
 * provider: the table of providers (provider.h) and what its rows share:
 * the SSH identity and a set of runners started and stopped together.
 */
#include "engine/provider.h"
#include "nodes/keys.h"
#include "nodes/transport.h"
#include "sched/runner.h"
#include "store/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const struct provider provider_local, provider_ssh, provider_clore, provider_slurm;

static const struct provider *const providers[] = {
    &provider_local,
    &provider_ssh,
    &provider_clore,
    &provider_slurm,
};

const struct provider *provider_find(const char *name)
{
	for (size_t i = 0; name && i < sizeof(providers) / sizeof(providers[0]); i++)
		if (!strcmp(providers[i]->name, name))
			return providers[i];
	return NULL;
}

void provider_names(char *buf, size_t sz)
{
	size_t l = 0;

	if (sz)
		buf[0] = 0;
	for (size_t i = 0; i < sizeof(providers) / sizeof(providers[0]) && l < sz; i++)
		l += snprintf(buf + l, sz - l, "%s%s", i ? ", " : "", providers[i]->name);
}

int provider_identity(const struct config *cfg, const char *state_dir, struct store *st, char *priv,
		      char *pub, size_t sz, char *err, size_t errsz)
{
	int rc = keys_identity(state_dir, cfg->ssh_identity, priv, sz, pub, sz, err, errsz);

	if (!rc && st)
		rc = store_meta_set(st, "ssh_public_key", pub);
	return rc;
}

int runner_set_add(struct runner_set *rs, const struct provider_env *env, struct tnode *node, int nslots,
		   const char *blender)
{
	int rc;

	if (rs->n >= CONFIG_MAX_SSH_NODES) {
		rs->node_free(node);
		return -E2BIG;
	}
	rc = runner_start(env->state_dir, env->cfg, node, nslots, blender, env->worker_path,
			  &rs->runners[rs->n]);
	if (rc) {
		rs->node_free(node);
		return rc;
	}
	rs->nodes[rs->n++] = node;
	return 0;
}

void runner_set_stop(void *arg)
{
	struct runner_set *rs = arg;

	if (!rs)
		return;
	/* Signal all first so that many runners wind down together. */
	for (int i = 0; i < rs->n; i++)
		runner_signal_stop(rs->runners[i]);
	for (int i = 0; i < rs->n; i++) {
		runner_stop(rs->runners[i]);
		rs->node_free(rs->nodes[i]);
	}
	free(rs);
}
