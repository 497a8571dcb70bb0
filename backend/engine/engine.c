/*
 * engine: the backend's coordinating thread.  It turns complete drops into
 * jobs, expires leases nobody renews, ends jobs and assembles their videos,
 * and starts and stops the provider (provider.h) whose runners -- one per
 * node, each on its own thread -- pull and render the frames.
 *
 * Every decision goes to the store first (a guarded transition) and is
 * acted on only when it committed; a lost race (-ESTALE) means another
 * thread got there first, never that something happens twice.
 *
 * Threads: the engine thread owns its store connection and the video
 * child; drops are checked on intake's own threads (intake_pool_*), so a
 * large or hostile drop never delays the scheduling done here; the provider's state belongs to whoever calls engine_start and
 * engine_stop (the provider's own threads are its business); only `stop`
 * is shared with the engine thread (atomic).
 */
#include "engine/engine.h"
#include "engine/provider.h"
#include "sched/collect.h"
#include "jobs/intake.h"
#include "store/queue_rows.h"
#include "jobs/jobs.h"
#include "sched/poke.h"
#include "sched/policy.h"
#include "store/store.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Drops checked at once: one slow or hostile drop leaves the others a
 * thread (intake.h). */
#define ENGINE_INTAKE_THREADS 3

extern const unsigned char worker_script[];
extern const size_t worker_script_len;

struct engine {
	char *dir;
	const struct config *cfg;
	struct store *st;
	struct intake_pool *intake; /* its threads check drops (intake.h) */
	pthread_t thread;
	atomic_int stop;
	char worker_path[4096];
	const struct provider *prov; /* the row for [renderfs] backend */
	void *prov_state;            /* the provider's, from its start() */
	pid_t video_pid;
	int64_t video_job;
	int64_t last_scan, last_jobs;
};

/* Leases nobody renews (a slot that vanished) give their frames back. */
static void expire_leases(struct engine *e, int64_t now)
{
	int64_t ids[64], leases[64];
	int n = store_frames_lease_expired(e->st, now, ids, leases, 64);

	for (int i = 0; i < n; i++) {
		struct frame_move m = {.now = now, .error = "lease expired"};

		store_frame_transition(e->st, ids[i], leases[i], FE_INTERRUPT, &m);
	}
}

/* ---- jobs ---- */

static void job_end(struct engine *e, int64_t job)
{
	struct job_counts c;
	int64_t now = util_now_ms();
	int rc;

	store_job_counts(e->st, job, &c);
	if (store_begin(e->st))
		return;
	rc = job_set_state(e->st, job, (1u << JS_WAITING) | (1u << JS_RENDERING) | (1u << JS_ASSEMBLING),
			   c.failed ? JS_FAILED : JS_DONE, now);
	if (!rc) {
		char msg[96];

		store_release_inputs(e->st, job);
		store_blocklist_clear_job(e->st, job);
		snprintf(msg, sizeof(msg), "%s: %lld frames done, %lld failed", c.failed ? "failed" : "done",
			 (long long)c.done, (long long)c.failed);
		store_event(e->st, job, 0, 0, "job", msg);
	}
	store_commit(e->st);
}

/* The farm has no node left that may render this job: say so and end it
 * rather than wait forever (retry-failed lifts the blocklist). */
static void job_no_node(struct engine *e, int64_t job, const char *reason)
{
	struct frame_move m = {.now = util_now_ms()};
	char msg[700];

	snprintf(msg, sizeof(msg), "no usable node left: %s", reason);
	m.error = msg;
	if (store_begin(e->st))
		return;
	store_frames_apply(e->st, job, 1u << FS_QUEUED, FE_ABANDON, &m);
	job_set_error(e->st, job, msg);
	store_event(e->st, job, 0, 0, "error", msg);
	store_commit(e->st);
}

static double job_fps(struct store *st, int64_t job)
{
	double want, scene;

	if (store_job_fps(st, job, &want, &scene))
		return 24;
	return want > 0 ? want : scene > 0 ? scene : 24;
}

static int job_over_budget(struct store *st, int64_t job)
{
	int over = 0;

	store_job_over_budget(st, job, &over);
	return over;
}

/*
 * A job with queued frames and nothing in flight: is any node able to
 * take them?  When every node is blocked for the job or broken, and none
 * is merely away (a remote node reconnecting may come back), the job ends
 * with its frames failed and says why; when nodes are only away, the job
 * waits and says that.
 */
struct node_tally {
	int64_t now;
	int usable, away, nodes;
	char reason[600];
};

static void tally_node(void *arg, const struct node_for_job *n)
{
	struct node_tally *t = arg;
	size_t l = strlen(t->reason);

	t->nodes++;
	if (n->block_until > t->now) {
		snprintf(t->reason + l, sizeof(t->reason) - l, "%s%s failed %d frames of this job (last: %s)",
			 l ? "; " : "", n->name, SCHED_BLOCK_AFTER, n->reason);
	} else if (!strcmp(n->state, "error")) {
		snprintf(t->reason + l, sizeof(t->reason) - l, "%s%s: %s", l ? "; " : "", n->name, n->error);
	} else if (!strcmp(n->state, "offline") || !strcmp(n->state, "connecting")) {
		t->away++;
	} else {
		t->usable++;
	}
}

static void check_nodes_for(struct engine *e, int64_t job, int64_t now, struct job_counts *c)
{
	struct node_tally t = {.now = now};
	int away, nodes;
	char *reason = t.reason;

	if (store_nodes_for_job(e->st, job, tally_node, &t))
		return;
	away = t.away;
	nodes = t.nodes;
	if (t.usable) {
		/* A node is back: the job no longer waits. */
		store_job_clear_waiting_error(e->st, job);
		return;
	}
	if (e->prov->job_waits) {
		char msg[700];

		if (job_over_budget(e->st, job))
			return;
		if (e->prov->job_waits(e->st, job, msg, sizeof(msg))) {
			job_set_error(e->st, job, msg);
			return;
		}
	}
	if (nodes && away) {
		char msg[700];

		snprintf(msg, sizeof(msg), "waiting for a node: %d of %d node%s offline or connecting%s%s",
			 away, nodes, nodes == 1 ? "" : "s", reason[0] ? "; " : "", reason);
		job_set_error(e->st, job, msg);
		return;
	}
	job_no_node(e, job, reason[0] ? reason : "no node is configured");
	store_job_counts(e->st, job, c);
}

static void advance_jobs(struct engine *e)
{
	struct job_step steps[256];
	int64_t now = util_now_ms();
	int n = store_jobs_to_advance(e->st, steps, 256);

	for (int i = 0; i < n; i++) {
		int64_t job = steps[i].id;
		int state = steps[i].state;
		struct job_counts c;

		store_job_counts(e->st, job, &c);
		if (state != JS_ASSEMBLING && c.queued > 0 && c.inflight == 0)
			check_nodes_for(e, job, now, &c);
		if (c.queued || c.inflight)
			continue;
		if (steps[i].video && c.done > 0) {
			if (e->video_pid > 0)
				continue; /* one assembly at a time */
			if (state != JS_ASSEMBLING &&
			    job_set_state(e->st, job, (1u << JS_WAITING) | (1u << JS_RENDERING),
					  JS_ASSEMBLING, now))
				continue;
			if (video_start(e->st, job, job_fps(e->st, job), &e->video_pid) == 0) {
				e->video_job = job;
				continue;
			}
			e->video_pid = 0;
			job_set_error(e->st, job, "video: could not start ffmpeg");
		}
		job_end(e, job);
	}
}

static void watch_video(struct engine *e)
{
	int status;
	char why[512];

	if (e->video_pid <= 0 || waitpid(e->video_pid, &status, WNOHANG) != e->video_pid)
		return;
	e->video_pid = 0;
	if (video_finish(e->st, e->video_job, status, why, sizeof(why)))
		job_set_error(e->st, e->video_job, why);
	job_end(e, e->video_job);
}

/* ---- start-up ---- */

static int write_worker(struct engine *e)
{
	snprintf(e->worker_path, sizeof(e->worker_path), "%s/worker.py", e->dir);
	return util_write_file_atomic(e->worker_path, worker_script, worker_script_len);
}

static void *engine_main(void *arg)
{
	struct engine *e = arg;

	while (!atomic_load(&e->stop)) {
		int64_t now = util_now_ms();
		int64_t mono = util_mono_ms();

		if (mono - e->last_scan >= 100) {
			e->last_scan = mono;
			intake_pool_scan(e->intake, e->st, e->cfg->quiet_ms, now);
		}
		watch_video(e);
		if (mono - e->last_jobs >= 200 || sched_poke_take()) {
			e->last_jobs = mono;
			expire_leases(e, now);
			advance_jobs(e);
		}
		usleep(20 * 1000);
	}
	if (e->video_pid > 0) {
		kill(e->video_pid, SIGKILL);
		waitpid(e->video_pid, NULL, 0);
	}
	return NULL;
}

int engine_start(const char *state_dir, const struct config *cfg, const char *secret, struct engine **out)
{
	struct engine *e;
	char sub[4096];
	int rc;

	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->cfg = cfg;
	e->prov = provider_find(cfg->backend);
	if (!e->prov) {
		rc = -ENOTSUP;
		goto out_free;
	}
	e->dir = strdup(state_dir);
	if (!e->dir) {
		rc = -ENOMEM;
		goto out_free;
	}
	rc = store_open(state_dir, &e->st);
	if (rc)
		goto out_free;
	snprintf(sub, sizeof(sub), "%s/work", state_dir);
	util_rmtree(sub);
	rc = util_mkdirs(sub);
	if (!rc)
		rc = write_worker(e);
	if (!rc)
		rc = intake_pool_start(state_dir, ENGINE_INTAKE_THREADS, &e->intake);
	if (!rc) {
		struct provider_env env = {
		    .state_dir = e->dir,
		    .cfg = cfg,
		    .st = e->st,
		    .worker_path = e->worker_path,
		    .secret = secret,
		};

		rc = e->prov->start(&env, &e->prov_state);
	}
	if (rc)
		goto out_stop_intake;
	rc = pthread_create(&e->thread, NULL, engine_main, e);
	if (rc) {
		rc = -rc;
		goto out_stop_runners;
	}
	*out = e;
	return 0;

out_stop_runners:
	e->prov->stop(e->prov_state);
out_stop_intake:
	intake_pool_stop(e->intake);
	store_close(e->st);
out_free:
	free(e->dir);
	free(e);
	return rc;
}

void engine_stop(struct engine *e)
{
	if (!e)
		return;
	e->prov->stop(e->prov_state);
	atomic_store(&e->stop, 1);
	pthread_join(e->thread, NULL);
	intake_pool_stop(e->intake);
	store_close(e->st);
	free(e->dir);
	free(e);
}
