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
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* The nodes with a filter on jobs (dispatch_set_accept): few, so a plain
 * array.  Entries are copied out under the lock and called outside it. */
static struct {
	int64_t node;
	dispatch_accept_fn fn;
	void *arg;
} filters[DISPATCH_MAX_FILTERS];
static size_t nfilters;
static pthread_mutex_t filters_lock = PTHREAD_MUTEX_INITIALIZER;

int dispatch_set_accept(int64_t node_id, dispatch_accept_fn fn, void *arg)
{
	size_t i;
	int rc = 0;

	pthread_mutex_lock(&filters_lock);
	for (i = 0; i < nfilters && filters[i].node != node_id; i++)
		;
	if (!fn) {
		if (i < nfilters)
			filters[i] = filters[--nfilters];
	} else if (i < nfilters || nfilters < DISPATCH_MAX_FILTERS) {
		if (i == nfilters)
			nfilters++;
		filters[i].node = node_id;
		filters[i].fn = fn;
		filters[i].arg = arg;
	} else {
		rc = -ENOSPC;
	}
	pthread_mutex_unlock(&filters_lock);
	return rc;
}

/* The node's filter, if it has one (0: none). */
static int filter_of(int64_t node_id, dispatch_accept_fn *fn, void **arg)
{
	int found = 0;

	pthread_mutex_lock(&filters_lock);
	for (size_t i = 0; i < nfilters; i++)
		if (filters[i].node == node_id) {
			*fn = filters[i].fn;
			*arg = filters[i].arg;
			found = 1;
			break;
		}
	pthread_mutex_unlock(&filters_lock);
	return found;
}

int64_t runner_pick_job(struct store *st, int64_t node_id, int64_t now)
{
	struct store_job_fact facts[256];
	struct sched_job jobs[256];
	dispatch_accept_fn fn = NULL;
	void *arg = NULL;
	int filtered = filter_of(node_id, &fn, &arg);
	size_t n = 0, k = 0;
	int best;

	if (store_jobs_with_queued(st, node_id, facts, ARRAY_SIZE(facts), &n))
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (filtered && !fn(arg, st, facts[i].id))
			continue; /* the job's wishes refuse this node */
		jobs[k].id = facts[i].id;
		jobs[k].priority = facts[i].priority;
		jobs[k].blocked_until = facts[i].blocked_until;
		k++;
	}
	best = sched_pick_job(jobs, k, now);
	return best < 0 ? 0 : jobs[best].id;
}

/*
 * The facts of sched_pick_frame() from the store, as the simulator
 * (tests/bench/sim.c) gathers them from its world: the queued frames (every
 * one while there are at most PICK_WINDOW, else PICK_WINDOW evenly spaced by
 * number), plus the queued frames of the spread; each one's nearest done
 * frames; the live slots; and, once the queue fits the window, the work in
 * flight.
 *
 * Speeds are measured, not looked up: a node's speed for the job is the
 * job's average render time over its own (both over the same sample of done
 * frames), so 1 is an average slot and a done frame's secs x speed is its
 * time on such a slot.  A node with no done frame of the job has no known
 * speed: the average stands in for it in the farm's totals, and as the
 * asking slot it takes the heaviest frame (the policy's rule 3 needs its
 * speed).
 */
#define PICK_WINDOW 64

static double node_speed(const struct store_pick_facts *f, int64_t node)
{
	for (size_t i = 0; i < f->nn; i++)
		if (f->nodes[i].node == node)
			return f->nodes[i].avg_secs > 0 && f->avg_secs > 0
				   ? f->avg_secs / f->nodes[i].avg_secs
				   : 0;
	return 0;
}

/*
 * The facts are read at most every PICK_FRESH_MS per thread and job (a
 * decision reads some 200 rows; a thread makes many a second only when
 * many slots free up at once): between reads a leased frame leaves the
 * cached list, and a lease lost to another runner (-ESTALE) drops the
 * cache.  Speeds and weights change by a frame's worth at a time.
 */
#define PICK_FRESH_MS 250
static _Thread_local struct {
	const struct store *st;
	int64_t job, read_at, first, last;
	size_t queued, nd;
	struct store_pick_facts f;
	struct sched_done_fact d[ARRAY_SIZE(((struct store_pick_facts *)0)->d)];
	double total_speed, fastest_speed, inflight_work;
} pick_cache;

static void pick_derive(int64_t now);

static void pick_forget(void)
{
	pick_cache.st = NULL;
}

static int pick_read(struct store *st, int64_t job, int64_t now)
{
	int64_t targets[PICK_WINDOW + SCHED_SPREAD_FRAMES];
	size_t nt = 0;
	int rc;

	if (pick_cache.st == st && pick_cache.job == job && pick_cache.f.nq &&
	    util_mono_ms() - pick_cache.read_at < PICK_FRESH_MS)
		return 0;
	pick_forget();
	rc = store_job_frame_span(st, job, &pick_cache.first, &pick_cache.last, &pick_cache.queued);
	if (rc)
		return rc;
	if (!pick_cache.queued)
		return -ENOENT;
	/* A small queue is read whole (no targets); a large one by the
	 * spread's frames (it must be seen whole) and a sample by number. */
	if (pick_cache.queued > PICK_WINDOW) {
		int64_t first = pick_cache.first, span = pick_cache.last - first + 1;

		nt = sched_spread_order(first, pick_cache.last, targets, SCHED_SPREAD_FRAMES);
		for (size_t k = 0; k < PICK_WINDOW; k++)
			targets[nt++] = first + (int64_t)((double)span * (double)k / PICK_WINDOW);
	}
	rc = store_pick_facts(st, job, now, nt ? targets : NULL, nt, &pick_cache.f);
	if (rc)
		return rc;
	pick_cache.st = st;
	pick_cache.job = job;
	pick_cache.read_at = util_mono_ms();
	pick_derive(now);
	return 0;
}

/* The frame at index i of the cached list was leased. */
static void pick_taken(size_t i)
{
	struct store_pick_facts *f = &pick_cache.f;

	memmove(&f->q[i], &f->q[i + 1], (f->nq - i - 1) * sizeof(f->q[0]));
	f->nq--;
	if (pick_cache.queued)
		pick_cache.queued--;
}

/* What the policy reads, derived from the cached facts once per read. */
static void pick_derive(int64_t now)
{
	const struct store_pick_facts *f = &pick_cache.f;
	struct sched_done_fact *d = pick_cache.d;

	pick_cache.nd = f->nd;
	for (size_t i = 0; i < f->nd; i++) {
		d[i].frame = f->d[i].frame;
		d[i].secs = f->d[i].secs;
		d[i].node_speed = node_speed(f, f->d[i].node);
	}
	/* sorted by frame number makes the policy linear */
	for (size_t i = 1; i < f->nd; i++)
		for (size_t j = i; j > 0 && d[j - 1].frame > d[j].frame; j--) {
			struct sched_done_fact t = d[j];
			d[j] = d[j - 1];
			d[j - 1] = t;
		}
	pick_cache.total_speed = pick_cache.fastest_speed = pick_cache.inflight_work = 0;
	for (size_t i = 0; i < f->nn; i++) {
		double sp;

		if (!f->nodes[i].slots)
			continue;
		sp = node_speed(f, f->nodes[i].node);
		if (sp <= 0)
			sp = 1; /* not measured yet: an average slot */
		pick_cache.total_speed += sp * f->nodes[i].slots;
		if (sp > pick_cache.fastest_speed)
			pick_cache.fastest_speed = sp;
	}
	if (pick_cache.queued > PICK_WINDOW)
		return;
	for (size_t i = 0; i < f->nf; i++) {
		double w = sched_frame_weight(f->f[i].frame, d, f->nd), sp = node_speed(f, f->f[i].node);
		double done_w = f->f[i].started && now > f->f[i].started
				    ? (double)(now - f->f[i].started) / 1000.0 * (sp > 0 ? sp : 1)
				    : 0;
		if (w > done_w)
			pick_cache.inflight_work += w - done_w;
	}
}

static int pick_queued(struct store *st, int64_t node, int64_t job, int64_t now, size_t *index)
{
	const struct store_pick_facts *f = &pick_cache.f;
	struct sched_frame_fact q[STORE_PICK_TARGETS];
	struct sched_pick ctx = {0};
	int best, rc;

	rc = pick_read(st, job, now);
	if (rc)
		return rc;
	ctx.first = pick_cache.first;
	ctx.last = pick_cache.last;
	ctx.queued_total = pick_cache.queued;
	ctx.slot_speed = node_speed(f, node);
	ctx.total_speed = pick_cache.total_speed;
	ctx.fastest_speed = pick_cache.fastest_speed;
	ctx.inflight_work = pick_cache.inflight_work;
	for (size_t i = 0; i < f->nq; i++)
		q[i].frame = f->q[i].frame;
	best = sched_pick_frame(q, f->nq, pick_cache.d, pick_cache.nd, &ctx);
	if (best < 0)
		return f->nq ? -EAGAIN : -ENOENT;
	*index = (size_t)best;
	return 0;
}

int runner_lease_frame(struct store *st, int64_t node_id, int slot, int64_t job, int64_t lease_ms,
		       int64_t now, struct lease_grant *g)
{
	struct frame_move m = {.now = now, .node = node_id, .slot = slot, .lease_until = now + lease_ms};
	size_t pick;
	int rc;

	rc = pick_queued(st, node_id, job, now, &pick);
	if (rc)
		return rc;
	g->frame_id = pick_cache.f.q[pick].id;
	g->frame_no = (uint32_t)pick_cache.f.q[pick].frame;
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
		pick_forget(); /* lost to another runner: read afresh */
		return rc;
	}
	rc = store_commit(st);
	if (rc)
		pick_forget();
	else
		pick_taken(pick);
	return rc;
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
	dispatch_accept_fn fn = NULL;
	void *arg = NULL;
	size_t n = 0, k = 0;
	int best, rc;

	if (store_dup_candidates(r->st, r->node_id, c, ARRAY_SIZE(c), &n))
		return -EIO;
	if (filter_of(r->node_id, &fn, &arg)) {
		/* Only jobs whose wishes take this node (c keeps the order). */
		for (size_t i = 0; i < n; i++)
			if (fn(arg, r->st, c[i].job))
				c[k++] = c[i];
		n = k;
	}
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
		int rc;

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
		rc = dispatch_one(r, sl, job, now);
		if (rc == -EAGAIN) {
			/* the queued frames are better left to faster slots */
			start_duplicate(r, sl, now);
			continue;
		}
		if (rc)
			continue;
		slot_start_frame(r, sl, job);
	}
	runner_show_state(r, -1);
}
