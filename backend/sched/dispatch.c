/*
 * dispatch: a free slot's next frame (see dispatch.h).  The facts come from
 * the store (store/runner_rows.c), the choices from the policy (policy.c);
 * every claim is a guarded update, so a lost race costs nothing but the
 * attempt.
 */
#include "sched/dispatch.h"
#include "core/util.h"
#include "jobs/jobs.h"
#include "sched/policy.h"
#include "sched/runner_priv.h"
#include "store/nodes.h"
#include "store/runner_rows.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int64_t runner_pick_job(struct store *st, int64_t node_id, int64_t now)
{
	struct store_job_fact facts[256];
	struct sched_job jobs[256];
	size_t n = 0;
	int best;

	if (store_jobs_with_queued(st, node_id, facts, ARRAY_SIZE(facts), &n))
		return 0;
	for (size_t i = 0; i < n; i++) {
		jobs[i].id = facts[i].id;
		jobs[i].priority = facts[i].priority;
		jobs[i].blocked_until = facts[i].blocked_until;
	}
	best = sched_pick_job(jobs, n, now);
	return best < 0 ? 0 : jobs[best].id;
}

int runner_lease_frame(struct store *st, int64_t node_id, int slot, int64_t job, int64_t lease_ms,
		       int64_t now, struct lease_grant *g)
{
	struct frame_move m = {.now = now, .node = node_id, .slot = slot, .lease_until = now + lease_ms};
	int rc;

	rc = store_frame_next_queued(st, job, &g->frame_id, &g->frame_no);
	if (rc)
		return rc;
	rc = store_begin(st);
	if (rc)
		return rc;
	rc = store_frame_transition(st, g->frame_id, 0, FE_DISPATCH, &m);
	if (rc >= 0) {
		g->lease = m.lease_out;
		job_set_state(st, job, 1u << JS_WAITING, JS_RENDERING, now);
	}
	if (rc < 0) {
		store_rollback(st);
		return rc;
	}
	return store_commit(st);
}

void dispatch_block_note(struct runner *r, int64_t job, const char *why)
{
	store_blocklist_note(r->st, r->node_id, job, why, SCHED_BLOCK_AFTER,
			     util_now_ms() + SCHED_FORGIVE_MS);
}

int dispatch_blob_ready(struct runner *r, int64_t job)
{
	struct store_job_spec js;
	char remote[4096], why[512];
	const char *from;
	int rc;

	rc = store_job_spec(r->st, job, &js);
	if (!rc)
		rc = install_blob(&r->inst, r->st, js.sha, remote, sizeof(remote));
	/* And the job's Blender (blender = auto may install one): a long
	 * download, like the upload, comes before any lease. */
	if (!rc)
		rc = runner_blender_for(r, js.sha, remote, sizeof(remote), &from);
	if (!rc)
		return 0;
	if (rc == -ENOPKG) {
		r->lost = 1; /* the runner takes the node down as in error */
		return rc;
	}
	snprintf(why, sizeof(why), "cannot put the scene on %s: %s", r->node->name,
		 rc == -EIO ? "it did not verify after upload" : strerror(-rc));
	if (runner_link_error(rc) && rc != -EIO) {
		r->lost = 1;
	} else {
		dispatch_block_note(r, job, why);
		store_node_set_error(r->st, r->node_id, why);
	}
	return rc;
}

int dispatch_one(struct runner *r, struct slot *sl, int64_t job, int64_t now)
{
	struct lease_grant g;
	int rc = runner_lease_frame(r->st, r->node_id, sl->idx, job, r->cfg->lease_ms, now, &g);

	if (rc)
		return rc;
	sl->frame_id = g.frame_id;
	sl->held_since = util_mono_ms();
	sl->frame_no = g.frame_no;
	sl->lease = g.lease;
	sl->dup = 0;
	sl->frame_sent = 0;
	sl->last_beat = util_mono_ms();
	sl->last_fail[0] = '\0';
	return 0;
}

/*
 * Nothing queued that this node may take, and a slot idle: race a frame of
 * another node (policy.c decides which, by expected finish where the speeds
 * are known; store_dup_candidates says where the speeds come from).  The
 * claim is a guarded update, so one frame has at most one duplicate.
 */
static int start_duplicate(struct runner *r, struct slot *sl, int64_t now)
{
	struct store_dup_candidate c[64];
	struct sched_inflight f[64];
	size_t n = 0;
	int best, rc;

	if (store_dup_candidates(r->st, r->node_id, c, ARRAY_SIZE(c), &n))
		return -EIO;
	for (size_t i = 0; i < n; i++) {
		f[i].frame_id = c[i].frame_id;
		f[i].job = c[i].job;
		f[i].started = c[i].started;
		f[i].waiting = c[i].waiting;
		f[i].avg_ms = c[i].avg_ms;
		f[i].holder_ms = c[i].holder_ms;
		f[i].mine_ms = c[i].mine_ms;
		f[i].blocked_until = c[i].blocked_until;
	}
	best = sched_pick_duplicate(f, n, now);
	if (best < 0)
		return -ENOENT;
	if (sl->state == SLOT_READY && sl->job != f[best].job)
		slot_kill(r, sl);
	if (sl->state == SLOT_EMPTY && dispatch_blob_ready(r, f[best].job))
		return -EIO;
	rc = store_dup_claim(r->st, f[best].frame_id, r->node_id);
	if (rc)
		return rc == -ESTALE ? rc : -EIO;
	sl->frame_id = f[best].frame_id;
	sl->held_since = util_mono_ms();
	sl->frame_no = c[best].frame;
	sl->lease = 0;
	sl->dup = 1;
	sl->frame_sent = 0;
	sl->last_beat = util_mono_ms();
	slot_start_frame(r, sl, f[best].job);
	return 0;
}

void dispatch_schedule(struct runner *r)
{
	int64_t now = util_now_ms();

	/* The local disk was full at the last fetch: frames stay queued (no
	 * node is to blame, no attempt is used) until it is tried again. */
	if (util_mono_ms() < r->local_full_until)
		return;
	for (int i = 0; i < r->nslots && !r->lost; i++) {
		struct slot *sl = &r->slots[i];
		int64_t job;

		if (sl->state != SLOT_EMPTY && sl->state != SLOT_READY)
			continue;
		job = runner_pick_job(r->st, r->node_id, now);
		if (!job) {
			start_duplicate(r, sl, now);
			continue;
		}
		if (sl->state == SLOT_READY && sl->job != job)
			slot_kill(r, sl); /* another scene: load it afresh */
		/* The scene goes to the node before a frame is leased, so a long
		 * upload never eats into a frame's lease. */
		if (sl->state == SLOT_EMPTY && dispatch_blob_ready(r, job))
			continue;
		if (dispatch_one(r, sl, job, now))
			continue;
		slot_start_frame(r, sl, job);
	}
	runner_show_state(r, -1);
}
