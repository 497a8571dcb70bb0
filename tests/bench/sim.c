/*
 * sim: the real scheduling policy (backend/sched/policy.h: sched_pick_job,
 * sched_pick_frame, sched_pick_duplicate, SCHED_BLOCK_AFTER,
 * SCHED_FORGIVE_MS) on a virtual
 * clock, against a makespan lower bound and against the original recipe's
 * static split, on the same simulated market.  Deterministic: every random
 * draw comes from a seeded generator.
 *
 *   build/tests/bench_sim [SCENARIO...]     (no argument: all of them)
 *
 * Every scenario runs twice on the same world: the old frame choice
 * (lowest-numbered queued frame, what runner.c does today) and the new one
 * (sched_pick_frame()); the table prints the old makespan / lower bound
 * beside the new figures.  Then the same ratio over SIM_SEED = 0..7, mean
 * and max, old and new, also against the "usable" lower bound (the bound
 * without the capacity of the servers that fail every frame); n1000-f100k
 * only when named or with SIM_SEEDS_ALL=1 (about 10 s a draw).
 *
 * SIM_SEED=K draws every scenario's world again from its seed + 1000 K (the
 * table's figures are K = 0) and skips the seed table; SIM_SEEDS=N sets
 * its number of draws (0: none); SIM_VERBOSE=1 prints each draw;
 * SIM_DEBUG=1 prints each duplicate and the last frames to finish.
 *
 * What is simulated (the rules of backend/runner.c, one job):
 *   - every free slot (one per GPU) asks sched_pick_job() whether it may take
 *     a frame of the job (blocked_until from the node's blocklist row) and
 *     takes the lowest-numbered queued frame (runner.c dispatch_one; the
 *     old rule) or the one sched_pick_frame() names (the new rule: see
 *     pick_frame() for the facts it is given); when that is -1 (a slow slot
 *     leaves the tail to faster ones) it goes on as if nothing were queued
 *     for it, to a tail duplicate, and polls again;
 *   - with nothing it may take, the slot asks sched_pick_duplicate() over the
 *     first 64 in-flight frames (by frame number) held by other nodes with no
 *     duplicate yet, with the speeds start_duplicate() reads from the job's
 *     first SAMPLE done frames by frame number: avg_ms their mean render
 *     time, holder_ms the mean of the holder's among them, mine_ms the mean
 *     of the idle node's (0 when it has none), and a frame whose holder is
 *     still loading the scene waiting (its `started` then the time it was
 *     leased: the simulator renews no leases); first result wins, the
 *     loser's worker is killed and must load the scene again before its
 *     next frame (slot_kill);
 *   - a failed frame goes back to the queue while attempts < 1 + retries
 *     (retries = 3); SCHED_BLOCK_AFTER failures of one node block it for
 *     SCHED_FORGIVE_MS, and each later failure blocks it again (the
 *     blocklist UPSERT in runner.c);
 *   - a preempted node's frames are requeued without using an attempt once
 *     the loss is noticed (one lease, 60 s, later); its duplicates are
 *     released; its frames may be duplicated by idle slots meanwhile;
 *   - a worker loads the scene once (LOAD_S) when it starts, then renders
 *     frames back to back.
 *   - release (as backend/provision.c does with an idle grace; here at
 *     once): a node whose slots are all idle and for which no work is
 *     left -- no queued frame it may take, no in-flight frame of another
 *     node it could still duplicate -- is released and stops costing.
 *
 * The recipe (the original shell recipe's policy): contiguous blocks of
 * frames split by GPU count, servers ordered cheapest per GPU first (no
 * speed weighting), one Blender launch per frame (LOAD_S each), no retry,
 * no requeue of a lost node's frames: the frames missing when every live
 * server has finished are split again over the servers still alive (a
 * second pass, as a person rerunning the recipe would), a server whose
 * every frame failed is left out of the next pass.  Every server is held
 * from its order until the whole job ends (or it is preempted).
 *
 * Lower bound: the earliest T at which the render speed the run actually
 * had (each slot counted from its boot until it was preempted; released
 * nodes are still counted, which only lowers the bound) integrates to the
 * total work; never less than the earliest boot plus the longest frame on
 * the fastest GPU.
 */
#include "sched/policy.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * GPU speeds: Blender Open Data (opendata.blender.org) median scores,
 * Cycles with OptiX, Blender 3.6-4.x, in samples per minute, rounded.
 * APPROXIMATE figures written from the published medians; only their
 * ratios matter here.  Prices per GPU-hour are an assumed marketplace
 * (Clore-like spot prices), not quotes.
 */
static const struct gpu_model {
	const char *name;
	double score;
	double price_h;
} GPUS[] = {
    {"RTX 4090", 11000, 0.40}, {"RTX 3090", 5400, 0.22},    {"RTX A6000", 5700, 0.45},
    {"RTX 3080", 4700, 0.15},  {"RTX 2080 Ti", 2700, 0.10}, {"Tesla T4", 1300, 0.12},
};
#define NGPUS     (int)(sizeof(GPUS) / sizeof(GPUS[0]))
#define REF_SCORE 5400.0 /* frame times are given in seconds on an RTX 3090 */
#define LOAD_S    3.0    /* Blender start + scene load (per worker; per frame in the recipe) */
#define DETECT_S  60.0   /* a preempted node's frames come back after one lease */
#define POLL_S    0.5    /* an idle slot looks again (the runner polls every 100 ms) */
#define FAIL_FRAC 0.3    /* a failing node fails a frame 30% into it */
#define RETRIES   3
#define MAXSLOTS  8
#define SAMPLE    256 /* start_duplicate(): the job's first 256 done frames */
#define INF       1e30

/* ---- deterministic random numbers (splitmix64) ---- */
static uint64_t rng_state, seed_shift;
static uint64_t rnd64(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}
static double rnd(void)
{
	return (double)(rnd64() >> 11) / 9007199254740992.0;
}

/* ---- the world ---- */
struct scenario {
	const char *name;
	int nodes, frames;
	double base_s;  /* frame time on an RTX 3090 */
	int mixed;      /* GPU models and GPU counts drawn from the table */
	int vary5;      /* frame times vary 5x across the shot */
	double preempt; /* share of servers preempted at a random time */
	int failing;    /* servers that fail every frame */
	int target;     /* the targets apply (mixed GPUs with preemption) */
	uint64_t seed;
};

struct node {
	int model, ngpu;
	double speed, price_h; /* per server */
	double boot, die;      /* die = INF when never preempted */
	int fails;
	/* renderfs run */
	int alive, released, detected, poll_pending;
	double released_at;
	int failures;
	double blocked_until;
	struct slot {
		int frame; /* -1 idle */
		int dup;
		int need_load;
		unsigned gen;
	} slot[MAXSLOTS];
};

enum fstate { F_QUEUED, F_FLIGHT, F_DONE, F_FAILED };
struct frame {
	double work;
	enum fstate st;
	int node, slot; /* the holder while F_FLIGHT */
	int dup_node, dup_slot;
	int attempts;
	double leased, started; /* started: when its holder's worker begins it */
	unsigned lease;
	int done_node; /* who rendered it, once F_DONE (frames.node) */
	double secs;   /* its render time there (frames.secs) */
};

static struct node *N;
static int nn;
static struct frame *F;
static int nf;

/* ---- event heap ---- */
enum ev_type { EV_BOOT, EV_DIE, EV_DETECT, EV_END, EV_POLL };
struct event {
	double t;
	uint64_t seq;
	int type, node, slot;
	unsigned gen;
};
static struct event *H;
static size_t hn, hcap;
static uint64_t seqno;

static int ev_less(const struct event *a, const struct event *b)
{
	return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}
static void push(double t, int type, int node, int slot, unsigned gen)
{
	if (hn == hcap) {
		hcap = hcap ? hcap * 2 : 1024;
		H = realloc(H, hcap * sizeof(*H));
	}
	struct event e = {t, seqno++, type, node, slot, gen};
	size_t i = hn++;
	while (i && ev_less(&e, &H[(i - 1) / 2])) {
		H[i] = H[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	H[i] = e;
}
static struct event pop(void)
{
	struct event top = H[0], last = H[--hn];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= hn)
			break;
		if (c + 1 < hn && ev_less(&H[c + 1], &H[c]))
			c++;
		if (!ev_less(&H[c], &last))
			break;
		H[i] = H[c];
		i = c;
	}
	if (hn)
		H[i] = last;
	return top;
}

/* ---- the queue, and the done frames: Fenwick trees over frame numbers ----
 * The old rule pops the lowest queued frame; the new one (sched_pick_frame)
 * takes any, and needs the nearest done frames of the queued ones. */
struct fenwick {
	int *t;
	int n, count;
};
static void fw_add(struct fenwick *w, int i, int d)
{
	w->count += d;
	for (i++; i <= w->n; i += i & -i)
		w->t[i] += d;
}
/* how many of 0..i are set */
static int fw_prefix(const struct fenwick *w, int i)
{
	int c = 0;
	for (i++; i > 0; i -= i & -i)
		c += w->t[i];
	return c;
}
/* the k-th set index (k from 1) */
static int fw_select(const struct fenwick *w, int k)
{
	int pos = 0, step = 1;
	while (step * 2 <= w->n)
		step *= 2;
	for (; step; step /= 2)
		if (pos + step <= w->n && w->t[pos + step] < k) {
			pos += step;
			k -= w->t[pos];
		}
	return pos; /* 0-based index of the k-th */
}

static struct fenwick QW, DW; /* queued, done */
#define qn ((size_t)QW.count)
static void q_push(int f)
{
	fw_add(&QW, f, 1);
}
static void q_take(int f)
{
	fw_add(&QW, f, -1);
}
static int q_pop(void)
{
	int f = fw_select(&QW, 1);
	q_take(f);
	return f;
}

/* ---- the speeds start_duplicate() reads ----
 * The job's first SAMPLE done frames by frame number; per node, the sum and
 * count of their render times.  Recomputed when a frame done since could
 * be among them. */
static double *node_secs, sample_secs;
static int *node_nsecs, sample_n, sample_top, sample_dirty;

static void sample_note_done(int f)
{
	if (sample_n < SAMPLE || f < sample_top)
		sample_dirty = 1;
}

static void sample_update(void)
{
	if (!sample_dirty)
		return;
	sample_dirty = 0;
	memset(node_secs, 0, sizeof(*node_secs) * (size_t)nn);
	memset(node_nsecs, 0, sizeof(*node_nsecs) * (size_t)nn);
	sample_secs = 0;
	sample_n = 0;
	sample_top = nf;
	for (int i = 0; i < nf && sample_n < SAMPLE; i++) {
		if (F[i].st != F_DONE)
			continue;
		node_secs[F[i].done_node] += F[i].secs;
		node_nsecs[F[i].done_node]++;
		sample_secs += F[i].secs;
		if (++sample_n == SAMPLE)
			sample_top = i;
	}
}

/* A node's mean frame time in the sample (ms), 0 when it has none there. */
static double sample_node_ms(int ni)
{
	return node_nsecs[ni] ? node_secs[ni] / node_nsecs[ni] * 1000.0 : 0;
}

/* ---- statistics ---- */
static int ndone, nfailed, ndup_started, ndup_won, nrequeued, nfail_events, nwasted;

static int64_t ms(double s)
{
	return (int64_t)llround(s * 1000.0);
}

static void slot_start(int ni, int si, int f, int dup, double now)
{
	struct node *n = &N[ni];
	struct slot *sl = &n->slot[si];
	double t0 = now + (sl->need_load ? LOAD_S : 0);
	double dur = F[f].work / n->speed;

	sl->need_load = 0;
	sl->frame = f;
	sl->dup = dup;
	sl->gen++;
	if (!dup) {
		F[f].leased = now;
		F[f].started = t0;
	}
	push(t0 + (n->fails ? FAIL_FRAC * dur : dur), EV_END, ni, si, sl->gen);
}

/* Kill what a slot runs (the frame was taken from it): the worker goes. */
static void slot_kill(int ni, int si)
{
	struct slot *sl = &N[ni].slot[si];
	sl->frame = -1;
	sl->dup = 0;
	sl->need_load = 1;
	sl->gen++;
}

/* The in-flight frames another node's idle slot could duplicate, as
 * start_duplicate() reads them: no duplicate yet, held by another node,
 * the first 64 by frame number. */
static size_t dup_candidates(int self, int *out, size_t max)
{
	size_t k = 0;
	for (int i = 0; i < nn; i++) {
		if (i == self || N[i].detected)
			continue; /* a detected loss has given its frames back */
		for (int s = 0; s < N[i].ngpu; s++) {
			int f = N[i].slot[s].frame;
			if (f < 0 || N[i].slot[s].dup || F[f].st != F_FLIGHT || F[f].dup_node >= 0 ||
			    F[f].node != i)
				continue;
			if (k < max) {
				out[k++] = f;
				/* keep out sorted (insertion), bounded to max */
				for (size_t j = k - 1; j > 0 && out[j] < out[j - 1]; j--) {
					int t = out[j];
					out[j] = out[j - 1];
					out[j - 1] = t;
				}
			} else if (f < out[max - 1]) {
				out[max - 1] = f;
				for (size_t j = max - 1; j > 0 && out[j] < out[j - 1]; j--) {
					int t = out[j];
					out[j] = out[j - 1];
					out[j - 1] = t;
				}
			}
		}
	}
	return k;
}

/* ---- frame choice by the new rule: sched_pick_frame() ----
 * The facts a dispatcher would read: the queued frames (all of them up to
 * PICK_WINDOW, else PICK_WINDOW evenly spaced by number, plus the queued
 * frames of the spread), each one's nearest done frames with their secs
 * and their renderer's speed (its GPU's score), the live slots' speeds,
 * and, once the queue fits the window, the work still in flight estimated
 * the same way (the estimate minus what its holder has rendered of it). */
#define PICK_WINDOW 64
static int rule_new, npick_left;
static int64_t spread_frames[SCHED_SPREAD_MAX];
static size_t nspread;

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

/* Append f's nearest done frames (below, above) to d, keeping it sorted
 * and without repeats (callers go by increasing f). */
static size_t add_neighbours(int f, struct sched_done_fact *d, size_t nd)
{
	int c = fw_prefix(&DW, f), pair[2], np = 0;

	if (c > 0)
		pair[np++] = fw_select(&DW, c);
	if (c < DW.count)
		pair[np++] = fw_select(&DW, c + 1);
	for (int k = 0; k < np; k++) {
		int g = pair[k];
		if (nd && d[nd - 1].frame >= g)
			continue;
		d[nd++] = (struct sched_done_fact){g, F[g].secs, N[F[g].done_node].speed};
	}
	return nd;
}

static double estimate(int f)
{
	struct sched_done_fact d[2];
	size_t nd = add_neighbours(f, d, 0);
	return sched_frame_weight(f, d, nd);
}

static int pick_frame(int ni, double now)
{
	static int cand[PICK_WINDOW + SCHED_SPREAD_FRAMES];
	static struct sched_frame_fact q[PICK_WINDOW + SCHED_SPREAD_FRAMES];
	static struct sched_done_fact d[2 * (PICK_WINDOW + SCHED_SPREAD_FRAMES)];
	struct sched_pick ctx = {.first = 0, .last = nf - 1, .slot_speed = N[ni].speed};
	size_t nq = 0, nd = 0, k;
	int best;

	if (qn <= PICK_WINDOW) {
		for (k = 0; k < qn; k++)
			cand[nq++] = fw_select(&QW, (int)k + 1);
	} else {
		for (k = 0; k < PICK_WINDOW; k++)
			cand[nq++] = fw_select(&QW, (int)(k * qn / PICK_WINDOW) + 1);
		for (k = 0; k < nspread && k < SCHED_SPREAD_FRAMES; k++)
			if (F[spread_frames[k]].st == F_QUEUED)
				cand[nq++] = (int)spread_frames[k];
		qsort(cand, nq, sizeof(int), cmp_int);
	}
	/* drop repeats (a spread frame also in the sample) */
	{
		size_t m = 0;
		for (k = 0; k < nq; k++)
			if (!m || cand[k] != q[m - 1].frame)
				q[m++].frame = cand[k];
		nq = m;
	}
	for (k = 0; k < nq; k++)
		nd = add_neighbours((int)q[k].frame, d, nd);
	for (int i = 0; i < nn; i++) {
		if (!N[i].alive || N[i].released)
			continue;
		ctx.total_speed += N[i].speed * N[i].ngpu;
		if (N[i].speed > ctx.fastest_speed)
			ctx.fastest_speed = N[i].speed;
		if (qn > PICK_WINDOW)
			continue;
		for (int s = 0; s < N[i].ngpu; s++) {
			int f = N[i].slot[s].frame;
			double w, done_w;
			if (f < 0 || N[i].slot[s].dup)
				continue;
			w = estimate(f);
			done_w = now > F[f].started ? (now - F[f].started) * N[i].speed : 0;
			if (w > done_w)
				ctx.inflight_work += w - done_w;
		}
	}
	ctx.queued_total = qn;
	best = sched_pick_frame(q, nq, d, nd, &ctx);
	if (best < 0) {
		npick_left++;
		return -1;
	}
	q_take((int)q[best].frame);
	return (int)q[best].frame;
}

static void schedule(int ni, double now)
{
	struct node *n = &N[ni];
	int idle = 0, cand_f[64];
	size_t nc = 0;
	int have_cands = -1;

	if (!n->alive || n->released)
		return;
	for (int s = 0; s < n->ngpu; s++) {
		struct slot *sl = &n->slot[s];
		struct sched_job job = {.id = 1, .priority = 0, .blocked_until = ms(n->blocked_until)};
		int pick, qf;

		if (sl->frame >= 0)
			continue;
		pick = sched_pick_job(&job, qn ? 1 : 0, ms(now));
		qf = -1;
		if (pick >= 0)
			qf = rule_new ? pick_frame(ni, now) : q_pop();
		if (qf >= 0) {
			F[qf].st = F_FLIGHT;
			F[qf].node = ni;
			F[qf].slot = s;
			F[qf].lease++;
			slot_start(ni, s, qf, 0, now);
			continue;
		}
		/* the tail: start_duplicate() */
		{
			struct sched_inflight inf[64];
			int best;

			nc = dup_candidates(ni, cand_f, 64);
			have_cands = nc > 0;
			sample_update();
			for (size_t i = 0; i < nc; i++) {
				inf[i].frame_id = cand_f[i];
				inf[i].job = 1;
				/* coalesce(started, progress_at): a frame whose
				 * holder is still loading the scene is waiting */
				inf[i].waiting = F[cand_f[i]].started > now;
				inf[i].started =
				    ms(inf[i].waiting ? F[cand_f[i]].leased : F[cand_f[i]].started);
				inf[i].avg_ms = sample_n ? sample_secs / sample_n * 1000.0 : 0;
				inf[i].holder_ms = sample_node_ms(F[cand_f[i]].node);
				inf[i].mine_ms = sample_node_ms(ni);
				inf[i].blocked_until = ms(n->blocked_until);
			}
			best = sched_pick_duplicate(inf, nc, ms(now));
			if (best >= 0) {
				int f = cand_f[best];
				F[f].dup_node = ni;
				F[f].dup_slot = s;
				ndup_started++;
				if (getenv("SIM_DEBUG"))
					fprintf(stderr,
						"  t=%7.0f dup of frame %d (holder %d %s, started %.0f,"
						" %.0f s/frame) on node %d (%s, %.0f s/frame)\n",
						now, f, F[f].node, GPUS[N[F[f].node].model].name,
						F[f].started, inf[best].holder_ms / 1000, ni,
						GPUS[n->model].name, inf[best].mine_ms / 1000);
				slot_start(ni, s, f, 1, now);
				continue;
			}
		}
		idle++;
	}
	if (!idle)
		return;
	/* Is any work left for this node, now or later? */
	{
		int blocked = n->blocked_until > now;
		int busy = 0;
		for (int s = 0; s < n->ngpu; s++)
			busy += n->slot[s].frame >= 0;
		if (have_cands < 0)
			have_cands = dup_candidates(ni, cand_f, 1) > 0;
		if (!busy && (blocked || (!qn && !have_cands))) {
			n->released = 1;
			n->released_at = now;
			return;
		}
	}
	if (!n->poll_pending) {
		n->poll_pending = 1;
		push(now + POLL_S, EV_POLL, ni, 0, 0);
	}
}

static void schedule_all(double now)
{
	for (int i = 0; i < nn; i++)
		if (N[i].alive && !N[i].released)
			for (int s = 0; s < N[i].ngpu; s++)
				if (N[i].slot[s].frame < 0) {
					schedule(i, now);
					break;
				}
}

/* A frame's holder or duplicate finished (or failed) on slot si of node ni. */
static void on_end(int ni, int si, double now)
{
	struct node *n = &N[ni];
	struct slot *sl = &n->slot[si];
	int f = sl->frame, dup = sl->dup;
	struct frame *fr = &F[f];

	sl->frame = -1;
	sl->dup = 0;
	if (n->fails) {
		if (dup) { /* dup_release: no attempt, counts against nothing */
			fr->dup_node = -1;
		} else {
			nfail_events++;
			fr->attempts++;
			fr->node = -1;
			if (fr->attempts < 1 + RETRIES) {
				fr->st = F_QUEUED;
				q_push(f);
			} else {
				fr->st = F_FAILED;
				nfailed++;
			}
			if (++n->failures >= SCHED_BLOCK_AFTER)
				n->blocked_until = now + SCHED_FORGIVE_MS / 1000.0;
		}
		schedule_all(now); /* a requeued frame: idle slots may take it */
		return;
	}
	if (!dup) {
		/* FE_RENDERED + FE_COLLECTED: ours while the lease is */
		fr->st = F_DONE;
		ndone++;
		if (fr->dup_node >= 0) {
			slot_kill(fr->dup_node, fr->dup_slot);
			schedule(fr->dup_node, now);
		}
		fr->dup_node = -1;
	} else if (fr->st == F_FLIGHT) {
		/* FE_WON: the duplicate finished first, the holder is fenced */
		fr->st = F_DONE;
		ndone++;
		ndup_won++;
		if (N[fr->node].alive) {
			slot_kill(fr->node, fr->slot);
			schedule(fr->node, now);
		}
		fr->dup_node = -1;
	} else {
		/* the holder was lost and the frame requeued: FE_WON refuses a
		 * queued frame, the result is dropped (dup_node stays set) */
		nwasted++;
		schedule(ni, now);
		return;
	}
	if (getenv("SIM_DEBUG") && nf - ndone < 12)
		fprintf(stderr, "  t=%7.0f frame %d work %.0f done on node %d (%s x%d)%s started %.0f\n", now,
			f, fr->work, ni, GPUS[n->model].name, n->ngpu, dup ? " as dup" : "", fr->started);
	fr->done_node = ni;
	fr->secs = fr->work / n->speed;
	fw_add(&DW, f, 1);
	sample_note_done(f);
	schedule(ni, now);
}

static void on_detect(int ni, double now)
{
	struct node *n = &N[ni];

	n->detected = 1;
	for (int i = 0; i < nf; i++) {
		if (F[i].st == F_FLIGHT && F[i].node == ni) { /* FE_INTERRUPT */
			F[i].st = F_QUEUED;
			F[i].node = -1;
			nrequeued++;
			q_push(i);
		}
		if (F[i].dup_node == ni && F[i].st != F_DONE)
			F[i].dup_node = -1; /* dup_release */
	}
	schedule_all(now);
}

struct result {
	double makespan, cost, lb, lb_usable;
	int failed;
};

static double run_renderfs(struct result *r)
{
	double now = 0;

	hn = 0;
	memset(QW.t, 0, sizeof(int) * ((size_t)nf + 1));
	memset(DW.t, 0, sizeof(int) * ((size_t)nf + 1));
	QW.count = DW.count = 0;
	npick_left = 0;
	sample_dirty = 1;
	ndone = nfailed = ndup_started = ndup_won = nrequeued = nfail_events = nwasted = 0;
	for (int i = 0; i < nf; i++) {
		F[i].st = F_QUEUED;
		F[i].node = F[i].dup_node = -1;
		F[i].attempts = 0;
		F[i].lease = 0;
		q_push(i);
	}
	for (int i = 0; i < nn; i++) {
		struct node *n = &N[i];
		n->alive = n->released = n->detected = n->poll_pending = 0;
		n->failures = 0;
		n->blocked_until = 0;
		for (int s = 0; s < MAXSLOTS; s++)
			n->slot[s] = (struct slot){.frame = -1, .need_load = 1};
		push(n->boot, EV_BOOT, i, 0, 0);
		if (n->die < INF)
			push(n->die, EV_DIE, i, 0, 0);
	}
	while (hn && ndone + nfailed < nf) {
		struct event e = pop();
		struct node *n = &N[e.node];

		now = e.t;
		switch (e.type) {
		case EV_BOOT:
			if (n->die > now) {
				n->alive = 1;
				schedule(e.node, now);
			}
			break;
		case EV_DIE:
			if (n->alive && !n->released)
				n->released_at = now;
			else if (!n->alive)
				n->released_at = now;
			n->alive = 0;
			for (int s = 0; s < n->ngpu; s++)
				n->slot[s].gen++; /* what it ran never finishes */
			push(now + DETECT_S, EV_DETECT, e.node, 0, 0);
			break;
		case EV_DETECT: on_detect(e.node, now); break;
		case EV_END:
			if (n->alive && n->slot[e.slot].gen == e.gen && n->slot[e.slot].frame >= 0)
				on_end(e.node, e.slot, now);
			break;
		case EV_POLL:
			n->poll_pending = 0;
			schedule(e.node, now);
			break;
		}
	}
	r->makespan = now;
	r->failed = nf - ndone;
	r->cost = 0;
	for (int i = 0; i < nn; i++) {
		struct node *n = &N[i];
		double until = now;
		if (n->released)
			until = n->released_at;
		if (n->die < until)
			until = n->die;
		r->cost += n->price_h * until / 3600.0;
	}
	return now;
}

/* ---- the recipe ---- */
static int by_price_per_gpu(const void *a, const void *b)
{
	const struct node *x = &N[*(const int *)a], *y = &N[*(const int *)b];
	double px = x->price_h / x->ngpu, py = y->price_h / y->ngpu;
	return px < py ? -1 : px > py;
}

static void run_recipe(struct result *r)
{
	int *missing = malloc(sizeof(int) * (size_t)(nf > 0 ? nf : 1)), nmiss = nf;
	int *order = malloc(sizeof(int) * (size_t)(nn > 0 ? nn : 1));
	char *excluded = calloc((size_t)(nn > 0 ? nn : 1), 1);
	double pass_start = 0, end = 0;
	int passes = 0;

	for (int i = 0; i < nf; i++)
		missing[i] = i;
	while (nmiss > 0 && passes < 20) {
		int nl = 0, gpus = 0, *next = malloc(sizeof(int) * (size_t)nmiss), nnext = 0, assigned = 0;
		double pass_end = pass_start;

		for (int i = 0; i < nn; i++)
			if (!excluded[i] && N[i].die > pass_start)
				order[nl++] = i;
		if (!nl) {
			free(next);
			end = INF;
			break;
		}
		qsort(order, (size_t)nl, sizeof(int), by_price_per_gpu);
		for (int k = 0; k < nl; k++)
			gpus += N[order[k]].ngpu;
		for (int k = 0, g0 = 0; k < nl; k++) {
			struct node *n = &N[order[k]];
			int all_failed = 1, any = 0;
			for (int g = 0; g < n->ngpu; g++, g0++) {
				/* contiguous block of this GPU: by cumulative GPU share */
				int a = (int)((long long)nmiss * g0 / gpus);
				int b = (int)((long long)nmiss * (g0 + 1) / gpus);
				double t = (pass_start > n->boot ? pass_start : n->boot);
				for (int j = a; j < b; j++) {
					int f = missing[j];
					double dur = F[f].work / n->speed;
					double fin = t + LOAD_S + (n->fails ? FAIL_FRAC * dur : dur);
					any = 1;
					assigned++;
					if (fin > n->die) { /* lost with the node: not requeued */
						next[nnext++] = f;
						continue;
					}
					t = fin;
					if (n->fails)
						next[nnext++] = f;
					else
						all_failed = 0;
				}
				if (n->die >= INF || t < n->die) {
					if (t > pass_end)
						pass_end = t;
				}
			}
			if (any && all_failed && n->fails)
				excluded[order[k]] = 1;
		}
		(void)assigned;
		/* frames are numbered; keep the missing list in order */
		for (int i = 1; i < nnext; i++)
			for (int j = i; j > 0 && next[j] < next[j - 1]; j--) {
				int t = next[j];
				next[j] = next[j - 1];
				next[j - 1] = t;
			}
		memcpy(missing, next, sizeof(int) * (size_t)nnext);
		nmiss = nnext;
		free(next);
		end = pass_end;
		pass_start = pass_end;
		passes++;
	}
	r->makespan = nmiss ? INF : end;
	r->failed = nmiss;
	r->cost = 0;
	for (int i = 0; i < nn; i++) {
		double until = N[i].die < end ? N[i].die : end;
		r->cost += N[i].price_h * until / 3600.0;
	}
	free(missing);
	free(order);
	free(excluded);
}

/* ---- the lower bound ---- */
struct cap_ev {
	double t, d;
};
static int cap_cmp(const void *a, const void *b)
{
	double x = ((const struct cap_ev *)a)->t, y = ((const struct cap_ev *)b)->t;
	return x < y ? -1 : x > y;
}

static double lower_bound(int usable)
{
	struct cap_ev *ev = malloc(sizeof(*ev) * (size_t)nn * 2);
	int ne = 0;
	double work = 0, wmax = 0, smax = 0, first_boot = INF, rate = 0, done = 0, t = 0, T = INF;

	for (int i = 0; i < nf; i++) {
		work += F[i].work;
		if (F[i].work > wmax)
			wmax = F[i].work;
	}
	for (int i = 0; i < nn; i++) {
		if (N[i].die <= N[i].boot || (usable && N[i].fails))
			continue;
		ev[ne++] = (struct cap_ev){N[i].boot, N[i].speed * N[i].ngpu};
		if (N[i].die < INF)
			ev[ne++] = (struct cap_ev){N[i].die, -N[i].speed * N[i].ngpu};
		if (N[i].speed > smax)
			smax = N[i].speed;
		if (N[i].boot < first_boot)
			first_boot = N[i].boot;
	}
	qsort(ev, (size_t)ne, sizeof(*ev), cap_cmp);
	for (int k = 0; k <= ne; k++) {
		double next = k < ne ? ev[k].t : INF;
		if (rate > 0 && done + rate * (next - t) >= work) {
			T = t + (work - done) / rate;
			break;
		}
		done += rate * (next - t);
		t = next;
		if (k < ne)
			rate += ev[k].d;
	}
	free(ev);
	if (first_boot + wmax / smax > T)
		T = first_boot + wmax / smax;
	return T;
}

/* ---- scenarios ---- */
static void build(const struct scenario *sc)
{
	double total_speed = 0, work = 0;

	rng_state = sc->seed + seed_shift;
	nn = sc->nodes;
	nf = sc->frames;
	N = calloc((size_t)nn, sizeof(*N));
	F = calloc((size_t)nf, sizeof(*F));
	QW = (struct fenwick){calloc((size_t)nf + 1, sizeof(int)), nf, 0};
	DW = (struct fenwick){calloc((size_t)nf + 1, sizeof(int)), nf, 0};
	node_secs = calloc((size_t)nn, sizeof(*node_secs));
	node_nsecs = calloc((size_t)nn, sizeof(*node_nsecs));
	nspread = sched_spread_order(0, nf - 1, spread_frames, SCHED_SPREAD_FRAMES);
	for (int i = 0; i < nn; i++) {
		struct node *n = &N[i];
		static const int counts[] = {1, 1, 2, 4};
		n->model = sc->mixed ? (int)(rnd() * NGPUS) : 1;
		n->ngpu = sc->mixed ? counts[(int)(rnd() * 4)] : 1;
		n->speed = GPUS[n->model].score / REF_SCORE;
		n->price_h = n->ngpu * GPUS[n->model].price_h * (sc->mixed ? 0.8 + 0.4 * rnd() : 1.0);
		n->boot = 60 + 120 * rnd();
		n->die = INF;
		total_speed += n->speed * n->ngpu;
	}
	for (int i = 0; i < nf; i++) {
		double x = sc->vary5 ? 1 + 4 * (0.5 - 0.5 * cos(2 * M_PI * i / (nf > 1 ? nf - 1 : 1))) : 1;
		F[i].work = sc->base_s * x * (0.9 + 0.2 * rnd());
		work += F[i].work;
	}
	{
		double est = work / total_speed;
		for (int i = 0; i < nn; i++)
			if (rnd() < sc->preempt)
				N[i].die = N[i].boot + 60 + rnd() * 0.8 * est;
		/* the failing servers: the first ones drawn that are not preempted */
		for (int i = 0, k = 0; i < nn && k < sc->failing; i++)
			if (N[i].die >= INF) {
				N[i].fails = 1;
				k++;
			}
	}
}

static void teardown(void)
{
	free(N);
	free(F);
	free(QW.t);
	free(DW.t);
	free(node_secs);
	free(node_nsecs);
	node_secs = NULL;
	node_nsecs = NULL;
	N = NULL;
	F = NULL;
	QW.t = DW.t = NULL;
}

static const struct scenario SCENARIOS[] = {
    /* name               nodes frames base mixed vary5 preempt failing target seed */
    {"identical", 10, 500, 60, 0, 0, 0, 0, 0, 1},
    {"mixed", 20, 1000, 60, 1, 0, 0, 0, 0, 2},
    {"mixed-vary5x", 20, 1000, 60, 1, 1, 0, 0, 0, 3},
    {"mixed-failing", 20, 1000, 60, 1, 0, 0, 1, 0, 4},
    {"mixed-preempt", 20, 1000, 60, 1, 0, 0.25, 0, 1, 5},
    {"mixed-all", 20, 2000, 60, 1, 1, 0.25, 1, 1, 6},
    {"n10-f100", 10, 100, 60, 1, 1, 0.25, 1, 1, 7},
    {"n100-f10k", 100, 10000, 60, 1, 1, 0.25, 1, 1, 8},
    {"n1000-f100k", 1000, 100000, 60, 1, 1, 0.25, 1, 1, 9},
};

static int verdict(double v, double target, int le, int applies, char *out)
{
	int ok = le ? v <= target : v >= target;
	strcpy(out, !applies ? "" : ok ? "PASS" : "MISS");
	return applies && !ok;
}

/* One scenario, one rule: the makespan over its lower bound. */
static double run_one(const struct scenario *sc, int rule, struct result *rf, struct result *rc)
{
	build(sc);
	if (rc)
		run_recipe(rc);
	rule_new = rule;
	run_renderfs(rf);
	rf->lb = lower_bound(0);
	rf->lb_usable = lower_bound(1);
	teardown();
	return rf->makespan / rf->lb;
}

int main(int argc, char **argv)
{
	int misses = 0, nseeds = 8;
	const size_t nsc = sizeof(SCENARIOS) / sizeof(SCENARIOS[0]);

	if (getenv("SIM_SEED")) {
		seed_shift = 1000 * (uint64_t)strtoull(getenv("SIM_SEED"), NULL, 10);
		nseeds = 0;
	}
	if (getenv("SIM_SEEDS"))
		nseeds = atoi(getenv("SIM_SEEDS"));
	printf("sim: the real policy (policy.c) on a virtual clock; targets apply to the rows marked *\n");
	printf("  (mixed GPUs with preemption): makespan/LB <= 1.10, makespan/recipe <= 0.75, "
	       "cost/frame vs recipe <= 0.80\n");
	printf("  old = lowest queued frame first; new = sched_pick_frame() (spread, weight by "
	       "neighbours, tail); same worlds\n");
	printf("%-15s %5s %6s | %5s %8s %8s %8s | %10s %10s %9s | %5s %5s %5s %4s %5s\n", "scenario", "nodes",
	       "frames", "old", "mk/LB", "mk/rcp", "cost/rcp", "makespan_s", "recipe_s", "LB_s", "dups",
	       "won", "requeue", "fail", "left");
	for (size_t k = 0; k < nsc; k++) {
		const struct scenario *sc = &SCENARIOS[k];
		struct result rf, rc, ro;
		char v1[8], v2[8], v3[8];
		int pick = argc < 2;
		double old;

		for (int a = 1; a < argc; a++)
			pick |= !strcmp(argv[a], sc->name);
		if (!pick)
			continue;
		old = run_one(sc, 0, &ro, NULL);
		run_one(sc, 1, &rf, &rc);
		{
			double r1 = rf.makespan / rf.lb, r2 = rf.makespan / rc.makespan;
			double r3 = (rf.cost / nf) / (rc.cost / nf);
			misses += verdict(r1, 1.10, 1, sc->target, v1);
			misses += verdict(r2, 0.75, 1, sc->target, v2);
			misses += verdict(r3, 0.80, 1, sc->target, v3);
			printf(
			    "%-14s%s %5d %6d | %5.3f %4.3f%-4s %4.3f%-4s %4.3f%-4s | %10.0f %10.0f %9.0f | "
			    "%5d %5d %5d %4d %5d\n",
			    sc->name, sc->target ? "*" : " ", sc->nodes, sc->frames, old, r1, v1, r2, v2, r3,
			    v3, rf.makespan, rc.makespan, rf.lb, ndup_started, ndup_won, nrequeued, rf.failed,
			    npick_left);
			printf("    cost: renderfs $%.2f ($%.4f/frame; old rule $%.2f), recipe $%.2f "
			       "($%.4f/frame)%s; failed attempts %d, wasted dup results %d\n",
			       rf.cost, rf.cost / sc->frames, ro.cost, rc.cost, rc.cost / sc->frames,
			       rc.failed ? " (recipe never finished)" : "", nfail_events, nwasted);
		}
	}
	if (nseeds > 0) {
		printf("\nmakespan / lower bound over SIM_SEED = 0..%d: old rule | new rule (mean, max, "
		       "rows over 1.10)\n",
		       nseeds - 1);
		for (size_t k = 0; k < nsc; k++) {
			const struct scenario *sc = &SCENARIOS[k];
			double sum[2] = {0, 0}, max[2] = {0, 0}, usum[2] = {0, 0}, umax[2] = {0, 0};
			int over[2] = {0, 0}, pick = argc < 2;

			for (int a = 1; a < argc; a++)
				pick |= !strcmp(argv[a], sc->name);
			/* n1000-f100k takes ~10 s a draw: only when named or asked */
			if (argc < 2 && sc->frames > 10000 && !getenv("SIM_SEEDS_ALL"))
				pick = 0;
			if (!pick)
				continue;
			for (int seed = 0; seed < nseeds; seed++)
				for (int rule = 0; rule < 2; rule++) {
					struct result r;
					double v;
					seed_shift = 1000 * (uint64_t)seed;
					v = run_one(sc, rule, &r, NULL);
					if (getenv("SIM_VERBOSE"))
						printf("  seed %d rule %d: %.3f (usable LB %.3f)\n", seed,
						       rule, v, r.makespan / r.lb_usable);
					sum[rule] += v;
					usum[rule] += r.makespan / r.lb_usable;
					if (r.makespan / r.lb_usable > umax[rule])
						umax[rule] = r.makespan / r.lb_usable;
					if (v > max[rule])
						max[rule] = v;
					over[rule] += v > 1.10;
				}
			printf("%-14s%s | old %5.3f %5.3f %d | new %5.3f %5.3f %d || usable LB: old %5.3f "
			       "%5.3f | new %5.3f %5.3f\n",
			       sc->name, sc->target ? "*" : " ", sum[0] / nseeds, max[0], over[0],
			       sum[1] / nseeds, max[1], over[1], usum[0] / nseeds, umax[0], usum[1] / nseeds,
			       umax[1]);
		}
	}
	printf("sim: %s\n", misses ? "some targets MISSED" : "all targets met");
	return 0;
}
