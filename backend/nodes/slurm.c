/*
 * slurm: the transport for one compute host of a Slurm cluster.  Every
 * worker is an `srun` child of renderfs, pinned to the host, whose
 * standard streams are the worker's: the protocol runs over them exactly
 * as over SSH.  Each srun is one Slurm job with a name of renderfs's own
 * (renderfs-SID-N) and the comment renderfs:SID, SID naming the state
 * directory, so that renderfs can always tell its jobs from the user's.
 *
 * Files: the node's directory is in [slurm] shared, which this machine
 * and every compute host see at the same path, so put, get and run are
 * this machine's (localproc.h): a frame comes back by a bounded local copy
 * (or a rename), and is verified like any other.  Scenes go to
 * SHARED/.renderfs/blobs once by content: each node's blobs/ is a link to
 * that one folder.
 *
 * A worker whose Slurm job was cancelled, preempted, timed out or lost
 * with its host reports -ECANCELED from proc_exited (transport.h): its
 * frame goes back as interrupted, with no attempt used.
 *
 * Threads: as transport.h.  slurm_cancel_own() and slurm_hosts() block
 * and may be called from any one thread at a time.
 */
#include "nodes/localproc.h"
#include "core/util.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SLURM_CMD_MS 30000

struct slurm_node {
	struct local_node ln; /* first: a tnode pointer is a slurm_node pointer */
	char host[128];
	char sid[32];
	char blobs[1024]; /* SHARED/.renderfs/blobs */
	char partition[160], gres[160], account[160], qos[160], time[160];
};

static const struct transport_ops slurm_ops;

/* Jobs started by this process: the N of renderfs-SID-N. */
static atomic_uint slurm_seq;

int slurm_word_ok(const char *w)
{
	return w && *w && strlen(w) < 128 &&
	       strspn(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:,-") == strlen(w) &&
	       w[0] != '-';
}

/* A command on this machine (sinfo, squeue, scancel), to completion. */
static int slurm_cmd(char *const argv[], char *out, size_t outsz, int *status)
{
	struct local_node tmp = {0};

	return localproc_run(&tmp.base, argv, out, outsz, status, SLURM_CMD_MS);
}

static int slurm_open(struct tnode *n)
{
	struct slurm_node *sn = (struct slurm_node *)n;
	char link[1100], state[256];
	char nodearg[160];
	struct stat st;
	int rc, status;

	n->error[0] = '\0';
	snprintf(nodearg, sizeof(nodearg), "--nodes=%s", sn->host);
	{
		char *argv[] = {"sinfo", "--noheader", nodearg, "--format=%T", NULL};

		rc = slurm_cmd(argv, state, sizeof(state), &status);
	}
	if (rc == -ENOENT || (!rc && WIFEXITED(status) && WEXITSTATUS(status) == 127)) {
		snprintf(n->error, sizeof(n->error), "sinfo not found: install Slurm's client tools");
		return -ENOEXEC;
	}
	if (rc || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(n->error, sizeof(n->error), "Slurm does not answer (sinfo failed)");
		return -ECONNREFUSED;
	}
	state[strcspn(state, "\n")] = '\0';
	if (!state[0] || strstr(state, "down") || strstr(state, "drain") || strstr(state, "fail")) {
		snprintf(n->error, sizeof(n->error), "Slurm shows host %s as %.40s", sn->host,
			 state[0] ? state : "unknown");
		return -ECONNREFUSED;
	}
	rc = util_mkdirs(sn->blobs);
	if (!rc)
		rc = util_mkdirs(n->home);
	if (rc) {
		snprintf(n->error, sizeof(n->error), "cannot make %.400s: %s", n->home, strerror(-rc));
		return rc;
	}
	/* One folder of scenes for every host: a scene is placed once. */
	snprintf(link, sizeof(link), "%s/blobs", n->home);
	if (lstat(link, &st) == 0 && !S_ISLNK(st.st_mode))
		util_rmtree(link);
	unlink(link);
	if (symlink(sn->blobs, link) < 0) {
		snprintf(n->error, sizeof(n->error), "cannot link %.400s: %s", link, strerror(errno));
		return -errno;
	}
	return 0;
}

static void slurm_close(struct tnode *n)
{
	(void)n;
}

static int slurm_spawn(struct tnode *n, char *const argv[], const char *cwd, struct tproc **out)
{
	struct slurm_node *sn = (struct slurm_node *)n;
	char name[64], comment[64], nodelist[160], chdir_arg[4200];
	char part[200], gres[200], account[200], qos[200], tlimit[200];
	char *av[64];
	int k = 0, rc;

	snprintf(name, sizeof(name), "renderfs-%s-%u", sn->sid, atomic_fetch_add(&slurm_seq, 1) + 1);
	snprintf(comment, sizeof(comment), "renderfs:%s", sn->sid);
	snprintf(nodelist, sizeof(nodelist), "--nodelist=%s", sn->host);
	av[k++] = "srun";
	av[k++] = "--unbuffered";
	av[k++] = "--nodes=1";
	av[k++] = "--ntasks=1";
	av[k++] = nodelist;
	av[k++] = "--job-name";
	av[k++] = name;
	av[k++] = "--comment";
	av[k++] = comment;
	if (cwd) {
		if ((size_t)snprintf(chdir_arg, sizeof(chdir_arg), "--chdir=%s", cwd) >= sizeof(chdir_arg))
			return -ENAMETOOLONG;
		av[k++] = chdir_arg;
	}
#define OPT(field, buf, flag)                                                                      \
	do {                                                                                       \
		if (sn->field[0]) {                                                                \
			snprintf(buf, sizeof(buf), "--" flag "=%s", sn->field);                    \
			av[k++] = buf;                                                             \
		}                                                                                  \
	} while (0)
	OPT(partition, part, "partition");
	OPT(gres, gres, "gres");
	OPT(account, account, "account");
	OPT(qos, qos, "qos");
	OPT(time, tlimit, "time");
#undef OPT
	av[k++] = "--";
	for (int i = 0; argv[i]; i++) {
		if (k >= (int)ARRAY_SIZE(av) - 1)
			return -E2BIG;
		av[k++] = argv[i];
	}
	av[k] = NULL;
	rc = localproc_spawn(n, av, cwd, out);
	if (rc)
		return rc;
	snprintf((*out)->tag, sizeof((*out)->tag), "%s", name);
	return 0;
}

/* What Slurm says became of the job named tag: "ID STATE", or "" when it
 * does not know.  slurmctld keeps an ended job for MinJobAge.  squeue
 * finds the job by name, but shows COMPLETING while its processes are
 * being ended; scontrol shows the state it is ending in. */
static void slurm_job_state(const char *tag, char *state, size_t sz)
{
	char namearg[96], id[64], out[8192];
	const char *js;
	int status;
	char *q[] = {"squeue", "--noheader", "--states=all", namearg, "--format=%i", NULL};
	char *c[] = {"scontrol", "--oneliner", "show", "job", id, NULL};

	state[0] = '\0';
	snprintf(namearg, sizeof(namearg), "--name=%s", tag);
	if (slurm_cmd(q, id, sizeof(id), &status) || !WIFEXITED(status) || WEXITSTATUS(status))
		return;
	id[strcspn(id, "\n")] = '\0';
	if (!id[0] || strspn(id, "0123456789") != strlen(id))
		return;
	if (slurm_cmd(c, out, sizeof(out), &status) || !WIFEXITED(status) || WEXITSTATUS(status))
		return;
	js = strstr(out, "JobState=");
	if (!js)
		return;
	js += strlen("JobState=");
	snprintf(state, sz, "%s %.*s", id, (int)strspn(js, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_"), js);
}

static int slurm_exited(struct tproc *p, int *status)
{
	static const char *const taken[] = {"CANCELLED", "PREEMPTED", "TIMEOUT", "NODE_FAIL",
					    "BOOT_FAIL", "DEADLINE"};
	int rc;

	if (p->gone)
		return -ECANCELED;
	rc = localproc_exited(p, status);
	if (rc != 1 || (WIFEXITED(*status) && WEXITSTATUS(*status) == 0) || !p->tag[0])
		return rc;
	/* srun ended badly: Blender's doing, or Slurm's?  Slurm's own word
	 * on the job decides.  srun can end a moment before slurmctld has
	 * recorded why, so an answer that is not yet an end state is asked
	 * again, for a few seconds at most. */
	{
		char state[128] = "";
		const char *sp = NULL;
		int64_t until = util_mono_ms() + 3000;

		for (;;) {
			slurm_job_state(p->tag, state, sizeof(state));
			sp = strchr(state, ' ');
			if ((sp && strcmp(sp + 1, "RUNNING") && strcmp(sp + 1, "COMPLETING") &&
			     strcmp(sp + 1, "PENDING")) ||
			    util_mono_ms() > until)
				break;
			usleep(200 * 1000);
		}
		for (size_t i = 0; sp && i < ARRAY_SIZE(taken); i++) {
			if (!strncmp(sp + 1, taken[i], strlen(taken[i]))) {
				p->gone = 1;
				snprintf(p->node->base.error, sizeof(p->node->base.error),
					 "Slurm ended job %.*s: %s", (int)(sp - state), state, sp + 1);
				return -ECANCELED;
			}
		}
		fprintf(stderr, "renderfs: %s: worker job %s ended with status %d (Slurm: %s)\n",
			p->node->base.name, p->tag, WIFEXITED(*status) ? WEXITSTATUS(*status) : -1,
			state[0] ? state : "no answer");
	}
	return rc;
}

/* Stop the worker's Slurm job, then srun: a killed srun alone leaves the
 * job holding its GPU until slurmctld notices. */
static void slurm_kill(struct tproc *p)
{
	if (p->pid > 0 && p->tag[0]) {
		char namearg[96];
		int status;
		char *argv[] = {"scancel", "--quiet", namearg, NULL};

		snprintf(namearg, sizeof(namearg), "--name=%s", p->tag);
		slurm_cmd(argv, NULL, 0, &status);
	}
	localproc_kill(p);
}

static void slurm_free(struct tproc *p)
{
	if (!p)
		return;
	slurm_kill(p);
	localproc_free(p);
}

static const struct transport_ops slurm_ops = {
    .name = "slurm",
    .open = slurm_open,
    .close = slurm_close,
    .spawn = slurm_spawn,
    .proc_read = localproc_read,
    .proc_write = localproc_write,
    .proc_exited = slurm_exited,
    .proc_kill = slurm_kill,
    .proc_free = slurm_free,
    .pollfds = localproc_pollfds,
    .put = localproc_put,
    .get = localproc_get,
    .run = localproc_run,
    .keepalive = localproc_keepalive,
};

static void copy_opt(char *dst, size_t sz, const char *v)
{
	snprintf(dst, sz, "%s", v && slurm_word_ok(v) ? v : "");
}

struct tnode *slurm_node_new(const struct slurm_opts *o)
{
	struct slurm_node *sn;

	if (!slurm_word_ok(o->host) || !slurm_word_ok(o->sid) || !o->shared || o->shared[0] != '/')
		return NULL;
	sn = calloc(1, sizeof(*sn));
	if (!sn)
		return NULL;
	sn->ln.base.ops = &slurm_ops;
	snprintf(sn->host, sizeof(sn->host), "%s", o->host);
	snprintf(sn->sid, sizeof(sn->sid), "%s", o->sid);
	snprintf(sn->ln.base.name, sizeof(sn->ln.base.name), "slurm-%s", o->host);
	snprintf(sn->ln.base.address, sizeof(sn->ln.base.address), "%s", o->host);
	snprintf(sn->ln.base.home, sizeof(sn->ln.base.home), "%s/.renderfs/%s/%s", o->shared, o->sid,
		 o->host);
	snprintf(sn->blobs, sizeof(sn->blobs), "%s/.renderfs/blobs", o->shared);
	copy_opt(sn->partition, sizeof(sn->partition), o->partition);
	copy_opt(sn->gres, sizeof(sn->gres), o->gres);
	copy_opt(sn->account, sizeof(sn->account), o->account);
	copy_opt(sn->qos, sizeof(sn->qos), o->qos);
	copy_opt(sn->time, sizeof(sn->time), o->time);
	return &sn->ln.base;
}

void slurm_node_free(struct tnode *n)
{
	free(n);
}

int slurm_hosts(const char *partition, char hosts[][128], int max, char *err, size_t errsz)
{
	char part[200], *out, *line, *save = NULL;
	int status, rc, k = 0;
	char *argv[] = {"sinfo", "--noheader", "--Node", "--responding", "--format=%N", NULL, NULL};
	const size_t outsz = 1 << 16;

	if (partition && *partition) {
		snprintf(part, sizeof(part), "--partition=%s", partition);
		argv[5] = part;
	}
	out = malloc(outsz);
	if (!out)
		return -ENOMEM;
	rc = slurm_cmd(argv, out, outsz, &status);
	if (rc || !WIFEXITED(status) || WEXITSTATUS(status)) {
		snprintf(err, errsz, "sinfo failed%s%s: is Slurm reachable from this machine?",
			 rc ? ": " : "", rc ? strerror(-rc) : "");
		free(out);
		return rc ? rc : -ECONNREFUSED;
	}
	for (line = strtok_r(out, "\n", &save); line && k < max; line = strtok_r(NULL, "\n", &save)) {
		int dup = 0;

		line[strcspn(line, " \t")] = '\0';
		if (!slurm_word_ok(line))
			continue; /* not a name we can put on a command line */
		for (int i = 0; i < k; i++)
			dup |= !strcmp(hosts[i], line);
		if (!dup)
			snprintf(hosts[k++], 128, "%s", line);
	}
	free(out);
	if (!k)
		snprintf(err, errsz, "Slurm lists no responding host%s%s", partition ? " in partition " : "",
			 partition ? partition : "");
	return k;
}

int slurm_cancel_own(const char *sid)
{
	char want[64], prefix[64], *out, *line, *save = NULL;
	int status, rc, n = 0;
	char *argv[] = {"squeue", "--noheader", "--format=%i|%j|%k", NULL};
	const size_t outsz = 1 << 20;

	if (!slurm_word_ok(sid))
		return -EINVAL;
	snprintf(want, sizeof(want), "renderfs:%s", sid);
	snprintf(prefix, sizeof(prefix), "renderfs-%s-", sid);
	out = malloc(outsz);
	if (!out)
		return -ENOMEM;
	rc = slurm_cmd(argv, out, outsz, &status);
	if (rc || !WIFEXITED(status) || WEXITSTATUS(status)) {
		free(out);
		return rc ? rc : -ECONNREFUSED;
	}
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *id = line, *name = strchr(line, '|'), *comment;

		if (!name)
			continue;
		*name++ = '\0';
		comment = strchr(name, '|');
		if (!comment)
			continue;
		*comment++ = '\0';
		/* Both marks, and a job id that is only digits: the user's
		 * own jobs never match. */
		if (strncmp(name, prefix, strlen(prefix)) || strcmp(comment, want) || !*id ||
		    strspn(id, "0123456789") != strlen(id))
			continue;
		{
			char *cancel[] = {"scancel", "--quiet", id, NULL};

			if (slurm_cmd(cancel, NULL, 0, &status) == 0)
				n++;
		}
	}
	free(out);
	return n;
}
