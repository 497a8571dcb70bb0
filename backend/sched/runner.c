/*
 * runner: one node's worker slots, on the node's own thread.  A runner owns
 * its transport handle (struct tnode: a local process table or one libssh2
 * session), its store connection and its slots.  This file is the thread:
 * connect (open, install the worker, probe Blender), back off while the
 * node is away, and the loop that watches the slots (slot.c), schedules
 * them (dispatch.c) and waits on the node's descriptors.  The node's state
 * goes through the node machine (store/nodes.h).
 *
 * Threads: everything here runs on the runner's thread, with its own store
 * connection; the only shared field is `stop` (atomic).
 */
#include "sched/runner.h"
#include "core/util.h"
#include "sched/dispatch.h"
#include "sched/runner_priv.h"
#include "store/nodes.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEEPALIVE_MS 15000

/* ---- the node's row ---- */

void runner_show_state(struct runner *r, int state)
{
	int busy = 0, rc;

	if (state < 0) {
		for (int i = 0; i < r->nslots; i++)
			busy += r->slots[i].state == SLOT_BUSY || r->slots[i].state == SLOT_STARTING;
		state = busy ? NS_RENDERING : NS_IDLE;
	}
	if (state == r->shown_state)
		return;
	rc =
	    store_node_transition(r->st, r->node_id, (enum node_state)r->shown_state, (enum node_state)state);
	if (rc == -ESTALE) {
		/* Someone else moved the row (nodes.h, invariant 3): take it
		 * from where it is now, when that is an edge. */
		int now = store_node_state(r->st, r->node_id);

		if (now >= 0) {
			r->shown_state = now;
			if (now != state)
				rc = store_node_transition(r->st, r->node_id, (enum node_state)now,
							   (enum node_state)state);
			else
				rc = 0;
		}
	}
	if (rc == 0)
		r->shown_state = state;
}

/* ---- connecting ---- */

/* Start one worker of Blender prog on its default scene to learn the
 * node's Blender version and devices before any job arrives.  0 when the
 * node can render with it. */
static int probe_with(struct runner *r, const char *prog, const char *from)
{
	static const char setup[] = "{\"scene\":null,\"engine\":\"cycles\",\"device\":\"auto\","
				    "\"samples\":0,\"res_w\":0,\"res_h\":0,\"res_pct\":0,\"format\":\"png\","
				    "\"gpu_index\":-1}\n";
	struct slot *sl = &r->slots[0];
	struct tproc *p;
	char cwd[4096];
	int64_t deadline = util_mono_ms() + 60000;
	int rc;

	r->node_error[0] = '\0';
	r->ready_version[0] = '\0';
	r->slot_from[0] = from;
	snprintf(cwd, sizeof(cwd), "%s/work/probe", r->node->home);
	rc = install_fresh_dir(&r->inst, cwd);
	if (rc) {
		snprintf(r->node_error, sizeof(r->node_error), "cannot make %s on the node: %s", cwd,
			 strerror(-rc));
		return rc;
	}
	{
		char *argv[] = {(char *)prog,     "-b", "-Y", "--factory-startup", "--python",
				r->worker_remote, NULL};

		rc = r->node->ops->spawn(r->node, argv, cwd, &p);
	}
	if (rc) {
		snprintf(r->node_error, sizeof(r->node_error), "cannot start '%s': %s", prog, strerror(-rc));
		return rc;
	}
	if (slot_transition(sl, SE_SPAWN) < 0) {
		/* slot 0 still has a worker: nothing is rendering before the
		 * probe, so this cannot happen */
		r->node->ops->proc_free(p);
		snprintf(r->node_error, sizeof(r->node_error), "slot 0 is busy before the probe");
		return -ESTALE;
	}
	sl->proc = p;
	slot_write_all(r, sl->proc, setup, sizeof(setup) - 1);
	while (!atomic_load(&r->stop) && util_mono_ms() < deadline && sl->state == SLOT_STARTING) {
		struct pollfd fds[8];
		int k = r->node->ops->pollfds(r->node, fds, (int)ARRAY_SIZE(fds));
		int status;

		poll(fds, (nfds_t)k, 200);
		slot_drain_log(r, sl);
		slot_read(r, sl);
		if (sl->state == SLOT_STARTING && r->node->ops->proc_exited(sl->proc, &status) == 1) {
			slot_drain_log(r, sl);
			slot_read(r, sl);
			if (sl->state != SLOT_STARTING)
				break;
			if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
				snprintf(r->node_error, sizeof(r->node_error),
					 "blender not found: '%s' (set [%s] blender)", prog,
					 r->is_local ? "local" : "ssh");
			else
				snprintf(r->node_error, sizeof(r->node_error), "Blender failed to start%s%s",
					 sl->setup_error[0] ? ": " : "", sl->setup_error);
			break;
		}
	}
	if (sl->state != SLOT_READY && !r->node_error[0])
		snprintf(r->node_error, sizeof(r->node_error), "Blender did not start within 60s");
	rc = sl->state == SLOT_READY ? 0 : -ENOEXEC; /* reached, but cannot render */
	slot_kill(r, sl);
	return rc;
}

/*
 * blender = auto: the node's own Blender when it has one that starts,
 * else the newest build renderfs installed there earlier, else none yet
 * (each job's series is installed when a job needs it).  Only a link
 * error or a broken install stops the node here.
 */
static int probe_auto(struct runner *r)
{
	char prog[2048];
	const char *newest = NULL;
	int rc;

	r->path_version[0] = '\0';
	rc = install_list_blenders(&r->inst);
	if (rc) {
		snprintf(r->node_error, sizeof(r->node_error), "cannot list Blender builds on the node: %s",
			 strerror(-rc));
		return rc;
	}
	rc = probe_with(r, r->blender, "on node");
	if (rc == 0) {
		snprintf(r->path_version, sizeof(r->path_version), "%s", r->ready_version);
		return 0;
	}
	if (runner_link_error(rc))
		return rc;
	for (int i = 0; i < r->inst.nblenders; i++) {
		char s[INSTALL_VERSION_MAX];
		const char *v;

		if (install_series_of(r->inst.blenders[i], s, sizeof(s)))
			continue;
		v = install_find_blender(&r->inst, s);
		if (v && (!newest || install_version_cmp(v, newest) > 0))
			newest = v;
	}
	r->node_error[0] = '\0';
	if (!newest) {
		struct node_ready nr = {.blender =
					    "none on the node yet (installed per job: blender = auto)"};

		store_node_note_ready(r->st, r->node_id, &nr);
		return 0;
	}
	install_blender_path(&r->inst, newest, prog, sizeof(prog));
	return probe_with(r, prog, "installed");
}

static int probe_node(struct runner *r)
{
	return r->blender_auto ? probe_auto(r) : probe_with(r, r->blender, "on node");
}

/* ---- which Blender a job runs ---- */

int runner_blender_for(struct runner *r, const char *sha, char *prog, size_t sz, const char **from)
{
	char blob[4096], series[INSTALL_VERSION_MAX], have[INSTALL_VERSION_MAX], ver[INSTALL_VERSION_MAX];
	char tar[128], why[sizeof(r->install_error) - 64];
	const char *v;
	int rc;

	*from = "on node";
	snprintf(prog, sz, "%s", r->blender);
	if (!r->blender_auto)
		return 0;
	store_path_blob(r->st, sha, blob, sizeof(blob));
	if (install_blend_series(blob, series, sizeof(series))) {
		/* intake checked the file, so this is not expected: any
		 * Blender the node has is the best guess. */
		if (r->path_version[0])
			return 0;
		if (r->inst.nblenders) {
			*from = "installed";
			install_blender_path(&r->inst, r->inst.blenders[0], prog, sz);
			return 0;
		}
		snprintf(r->install_error, sizeof(r->install_error),
			 "the node has no Blender, and the scene's header does not say which to install");
		r->install_retry_at = util_mono_ms() + RUNNER_INSTALL_RETRY_MS;
		return -ENOPKG;
	}
	if (r->path_version[0] && !install_series_of(r->path_version, have, sizeof(have)) &&
	    !strcmp(have, series))
		return 0;
	v = install_find_blender(&r->inst, series);
	if (v) {
		*from = "installed";
		install_blender_path(&r->inst, v, prog, sz);
		return 0;
	}
	/* A series renderfs cannot install: the node's own Blender, newer or
	 * older, is the nearest there is. */
	ver[0] = '\0';
	if (install_known_release(series, ver, sizeof(ver), tar, sizeof(tar)) && r->path_version[0])
		return 0;
	fprintf(stderr, "renderfs: node %s: installing Blender %s (the scene was saved by %s) from %s\n",
		r->node->name, ver[0] ? ver : series, series, r->cfg->blender_mirror);
	rc = install_blender(&r->inst, r->cfg->blender_mirror, series, ver, sizeof(ver), why, sizeof(why));
	if (rc == 0) {
		*from = "installed";
		install_blender_path(&r->inst, ver, prog, sz);
		return 0;
	}
	if (rc != -ENOPKG)
		return rc;
	snprintf(r->install_error, sizeof(r->install_error), "Blender install failed: %s", why);
	r->install_retry_at = util_mono_ms() + RUNNER_INSTALL_RETRY_MS;
	return rc;
}

/* The link broke: every frame this node held goes back to the queue as
 * interrupted, and the runner connects again with backoff. */
static void node_lost(struct runner *r, const char *why)
{
	/* A failed Blender install: the reason shows at once; the state
	 * goes offline -> connecting -> error (only connecting leads to
	 * error, nodes.h), where connect_node keeps it. */
	if (r->install_error[0])
		why = r->install_error;
	for (int i = 0; i < r->nslots; i++) {
		slot_interrupt(r, &r->slots[i], why);
		slot_kill(r, &r->slots[i]);
	}
	r->node->ops->close(r->node);
	r->connected = 0;
	r->lost = 0;
	install_forget(&r->inst);
	store_node_set_error(r->st, r->node_id, why);
	runner_show_state(r, NS_OFFLINE);
}

/* Wait up to ms, returning early when asked to stop. */
static void nap(struct runner *r, int64_t ms)
{
	int64_t end = util_mono_ms() + ms;

	while (!atomic_load(&r->stop) && util_mono_ms() < end)
		usleep(50 * 1000);
}

static int connect_node(struct runner *r)
{
	int rc;

	/* A node in error (host key changed, no Blender) is retried quietly:
	 * it shows error, with its reason, until a retry succeeds, rather
	 * than flickering through connecting at every backoff. */
	if (r->shown_state != NS_ERROR)
		runner_show_state(r, NS_CONNECTING);
	if (r->install_error[0]) {
		/* Nothing is rendered here until the install is tried again
		 * (no connection either: the error stays as it is). */
		if (util_mono_ms() < r->install_retry_at) {
			snprintf(r->node_error, sizeof(r->node_error), "%s", r->install_error);
			return -ENOPKG;
		}
		r->install_error[0] = '\0';
	}
	rc = r->node->ops->open(r->node);
	if (rc) {
		snprintf(r->node_error, sizeof(r->node_error), "%s",
			 r->node->error[0] ? r->node->error : strerror(-rc));
		return rc;
	}
	snprintf(r->local_work, sizeof(r->local_work), "%s/work/node-%lld", r->state_dir,
		 (long long)r->node_id);
	rc = util_mkdirs(r->local_work);
	if (!rc)
		rc = install_worker(&r->inst, r->worker_local, r->worker_remote, sizeof(r->worker_remote));
	if (rc) {
		snprintf(r->node_error, sizeof(r->node_error), "cannot install the worker on %s: %s",
			 r->node->name, strerror(-rc));
		return rc;
	}
	return probe_node(r);
}

static void *runner_main(void *arg)
{
	struct runner *r = arg;
	int64_t backoff = 1000;

	while (!atomic_load(&r->stop)) {
		struct pollfd fds[2 * RUNNER_MAX_SLOTS + 2];
		int k;

		if (!r->connected) {
			int rc = connect_node(r);

			if (rc) {
				/* Unreachable is "offline"; reachable but unable to
				 * render (no Blender, host key changed) is "error". */
				int reached =
				    r->node_error[0] && rc != -ECONNREFUSED && !runner_link_error(rc);

				r->node->ops->close(r->node);
				store_node_set_error(r->st, r->node_id, r->node_error);
				runner_show_state(r, r->is_local || reached ? NS_ERROR : NS_OFFLINE);
				if (!r->shown_error) {
					fprintf(stderr, "renderfs: node %s unusable: %s\n", r->node->name,
						r->node_error);
					r->shown_error = 1;
				}
				/* This machine's Blender does not appear by itself;
				 * a remote node may come back. */
				nap(r, r->is_local ? 3600 * 1000 : backoff);
				backoff = backoff * 2 > 60000 ? 60000 : backoff * 2;
				continue;
			}
			r->connected = 1;
			r->shown_error = 0;
			if (r->auto_slots) {
				r->nslots = r->ngpus > 1
						? (r->ngpus < RUNNER_MAX_SLOTS ? r->ngpus : RUNNER_MAX_SLOTS)
						: 1;
				store_node_set_slots(r->st, r->node_id, r->nslots);
			}
			backoff = 1000;
			store_node_set_error(r->st, r->node_id, NULL);
			runner_show_state(r, NS_IDLE);
			r->last_keepalive = util_mono_ms();
		}
		slot_watch(r);
		if (!r->lost)
			dispatch_schedule(r);
		if (r->lost) {
			node_lost(r, r->node->error[0] ? r->node->error : "connection to the node lost");
			continue;
		}
		k = r->node->ops->pollfds(r->node, fds, (int)ARRAY_SIZE(fds));
		poll(fds, (nfds_t)k, 100);
		for (int i = 0; i < r->nslots; i++) {
			if (r->slots[i].state == SLOT_EMPTY || !r->slots[i].proc)
				continue;
			slot_drain_log(r, &r->slots[i]);
			slot_read(r, &r->slots[i]);
		}
		if (util_mono_ms() - r->last_keepalive > KEEPALIVE_MS) {
			r->last_keepalive = util_mono_ms();
			if (r->node->ops->keepalive(r->node))
				r->lost = 1;
		}
	}
	/* A clean stop pauses work: frames in flight go back to the queue
	 * without using an attempt, and the next mount carries on. */
	for (int i = 0; i < r->nslots; i++) {
		slot_interrupt(r, &r->slots[i], r->stop_why[0] ? r->stop_why : "renderfs stopped");
		slot_kill(r, &r->slots[i]);
	}
	r->node->ops->close(r->node);
	runner_show_state(r, NS_OFFLINE);
	return NULL;
}

int runner_start(const char *state_dir, const struct config *cfg, struct tnode *node, int nslots,
		 const char *blender, const char *worker_path, struct runner **out)
{
	struct runner *r;
	int rc;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->node = node;
	r->cfg = cfg;
	r->is_local = !strcmp(node->ops->name, "local");
	install_init(&r->inst, node, r->is_local);
	r->auto_slots = nslots == 0;
	r->nslots = nslots < 1 ? 1 : nslots > RUNNER_MAX_SLOTS ? RUNNER_MAX_SLOTS : nslots;
	/* auto: the node's own `blender` on PATH when it is of the job's
	 * series, else a build renderfs installs (runner_blender_for). */
	r->blender_auto = !strcmp(blender, CONFIG_BLENDER_AUTO) && !r->is_local;
	snprintf(r->blender, sizeof(r->blender), "%s", r->blender_auto ? "blender" : blender);
	for (int i = 0; i < RUNNER_MAX_SLOTS; i++)
		r->slot_from[i] = "on node";
	snprintf(r->worker_local, sizeof(r->worker_local), "%s", worker_path);
	for (int i = 0; i < RUNNER_MAX_SLOTS; i++) {
		r->slots[i].idx = i;
		r->slots[i].log_fd = -1;
	}
	r->state_dir = strdup(state_dir);
	if (!r->state_dir) {
		rc = -ENOMEM;
		goto out_free;
	}
	rc = store_open(state_dir, &r->st);
	if (rc)
		goto out_free;
	rc = store_node_register(r->st, node->name, node->ops->name, node->address, r->nslots, &r->node_id);
	if (rc)
		goto out_close_store;
	r->shown_state = NS_STARTING;
	rc = pthread_create(&r->thread, NULL, runner_main, r);
	if (rc) {
		rc = -rc;
		goto out_close_store;
	}
	*out = r;
	return 0;

out_close_store:
	store_close(r->st);
out_free:
	free(r->state_dir);
	free(r);
	return rc;
}

int64_t runner_node_id(const struct runner *r)
{
	return r->node_id;
}

void runner_stop_because(struct runner *r, const char *why)
{
	if (r && why)
		snprintf(r->stop_why, sizeof(r->stop_why), "%s", why);
}

void runner_signal_stop(struct runner *r)
{
	if (r)
		atomic_store(&r->stop, 1);
}

void runner_stop(struct runner *r)
{
	if (!r)
		return;
	atomic_store(&r->stop, 1);
	pthread_join(r->thread, NULL);
	store_close(r->st);
	free(r->state_dir);
	free(r);
}
