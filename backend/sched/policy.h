/*
 * policy: the scheduling policy as pure functions of facts and a clock.
 * The runners feed it what the store says; the simulator
 * (tests/bench/sim.c) feeds it a virtual world.  Nothing here touches the
 * store, the network or the real clock.
 */
#ifndef RENDERFS_POLICY_H
#define RENDERFS_POLICY_H

#include <stddef.h>
#include <stdint.h>

/* A job that has queued frames, as one node sees it. */
struct sched_job {
	int64_t id;            /* older jobs have smaller ids */
	int priority;          /* higher first */
	int64_t blocked_until; /* this node may not take the job's frames before (ms) */
};

/*
 * Which job a free slot of a node takes its next frame from: the highest
 * priority, then the oldest, among the jobs the node is not blocked for at
 * `now`.  Returns an index into jobs, or -1 when none may be taken.
 */
int sched_pick_job(const struct sched_job *jobs, size_t n, int64_t now);

/* A frame rendering on another node, as a node with an idle slot sees it. */
struct sched_inflight {
	int64_t frame_id;
	int64_t job;
	/* When its holder started it (ms); while waiting, when it was leased
	 * or its lease was last renewed. */
	int64_t started;
	int waiting;           /* leased, its holder has not begun rendering it */
	double avg_ms;         /* its job's average frame time so far; 0 = none yet */
	double holder_ms;      /* the holder's own average frame time for the job; 0 = unknown */
	double mine_ms;        /* the idle node's own average frame time for the job; 0 = unknown */
	int64_t blocked_until; /* this node may not take the job's frames before */
};

/*
 * The tail: a node has a free slot and no queued frame it may take.  Which
 * in-flight frame should it start again (the first verified result wins)?
 * Returns an index into f, or -1.  Frames of jobs the node is blocked for
 * at `now` are never taken.  A frame has one duplicate at most, so a
 * useless one also keeps a faster slot from taking the frame later.
 *
 * 1. By expected finish, where the speeds are known.  H is holder_ms and M
 *    is mine_ms; when only one of them is known the job's average (avg_ms)
 *    stands in for the other.  For a frame its holder is rendering, with
 *    e = now - started (at least 0):
 *
 *      holder's finish  = started + max(H, 2e)
 *          a frame that has run past half its expected time is presumed to
 *          need as long again as it has already run;
 *      weight           w = min(max(1, 2e / H), SCHED_DUP_MAX_WEIGHT)
 *          how much heavier than the holder's average the frame is
 *          presumed to be; capped, because a frame that runs longer than
 *          that is more likely held up by its holder than heavy, and would
 *          not be heavy for the duplicate;
 *      duplicate's time D = w * M, its finish now + D.
 *
 *    For a waiting frame the holder's finish is now + H at the earliest and
 *    D = M.  The gain is the holder's finish minus the duplicate's.  A
 *    frame qualifies when the gain is at least D * SCHED_DUP_MARGIN (the
 *    duplicate must clearly finish first, the estimates being averages);
 *    of those, the one with the largest gain.  So a fast idle slot rescues
 *    the frames of slow holders first, and a slow idle slot leaves a fast
 *    holder's frame alone.  Equal speeds give no duplicate of a frame being
 *    rendered unless it has run more than (1 + SCHED_DUP_MARGIN) *
 *    SCHED_DUP_MAX_WEIGHT times the holder's average: the stall case.
 *
 * 2. Otherwise the earlier rule, the frame that has been running (or
 *    waiting) longest among those that have run at least half their job's
 *    average (2 s while no average is known), since a frame about to finish
 *    is not worth a second render; over the frames whose speeds are not
 *    known (neither, or one and no average), and the waiting frames for
 *    which this node is not clearly slower (M <= SCHED_DUP_WAIT_SLOWER *
 *    H, the averages being noisy).  A holder that has not begun may be
 *    held up by more than its speed shows (a slow link, a node gone quiet,
 *    a scene still loading), and the wait cannot be timed (lease renewals
 *    move `started`); a duplicate on a slot not much slower cannot finish
 *    much later than such a holder.
 */
int sched_pick_duplicate(const struct sched_inflight *f, size_t n, int64_t now);

/* The rule above: a duplicate must gain at least this share of its own
 * expected time; a frame is presumed at most this many times its holder's
 * average; a waiting frame is left to rule 2 on a slot at most this many
 * times slower than its holder. */
#define SCHED_DUP_MARGIN      0.25
#define SCHED_DUP_MAX_WEIGHT  3.0
#define SCHED_DUP_WAIT_SLOWER 1.5

/* Failed frames of one job on one node before the node is blocked for the
 * job, and how long the block lasts. */
#define SCHED_BLOCK_AFTER 3
#define SCHED_FORGIVE_MS  (10 * 60 * 1000)

/* ---- frame choice: which queued frame a free slot takes ---- */

/* A queued frame of the job: its number. */
struct sched_frame_fact {
	int64_t frame;
};

/* A done frame of the job: its number, its render time (frames.secs) and
 * the speed of the node that rendered it (any unit, the same for every
 * node and for sched_pick.slot_speed: e.g. market_gpu_score() of its GPU
 * model).  A fact whose secs or speed is not a finite number in
 * (0, SCHED_MAX_SECS] / (0, SCHED_MAX_SPEED] is ignored. */
struct sched_done_fact {
	int64_t frame;
	double secs;
	double node_speed;
};

#define SCHED_MAX_SECS  1e7 /* 115 days a frame */
#define SCHED_MAX_SPEED 1e9

/* The slot asking, and the farm around it. */
struct sched_pick {
	int64_t first, last;  /* the job's frame range (the spread is over it) */
	double slot_speed;    /* this slot's node's speed; <= 0: unknown */
	double fastest_speed; /* the fastest live slot's speed (this one included) */
	double total_speed;   /* the sum over all live slots (one per GPU) */
	size_t queued_total;  /* frames queued in all; the facts may be a sample
	                       * (0: the n facts are all of them) */
	double inflight_work; /* work in flight still to render, in secs x speed
	                       * (the unit of a done fact's secs x node_speed);
	                       * 0 when not known */
};

/*
 * The spread order of the frames first..last: first, last, middle, then
 * the quarters, the eighths, ... left to right within a level (bisection
 * of every gap, breadth first), each frame exactly once.  Writes the first
 * `max` of it to out (caller's array) and returns how many it wrote
 * (min(max, last - first + 1); 0 when last < first).
 */
size_t sched_spread_order(int64_t first, int64_t last, int64_t *out, size_t max);

/*
 * A frame's estimated weight: its render time on a node of speed 1, in
 * secs x speed.  From its nearest valid done neighbours by frame number,
 * each neighbour's secs x node_speed: interpolated linearly between the
 * one below and the one above, the one side's value when there is only
 * one (a done frame of that number: its own).  0 (neutral: unknown) when
 * no valid done fact exists.  done in any order; O(nd).
 */
double sched_frame_weight(int64_t frame, const struct sched_done_fact *done, size_t nd);

/*
 * Which queued frame a free slot takes.  Returns an index into queued, or
 * -1 when the slot should leave every one of them to faster slots (it may
 * still start a tail duplicate); -1 too when n is 0.
 *
 * 1. The spread: the first SCHED_SPREAD_FRAMES frames of
 *    sched_spread_order(first, last) are taken first, in that order, by
 *    any slot: the artist sees the whole shot early, and every later
 *    estimate has neighbours on both sides.  While no valid done fact
 *    exists (nothing to estimate from) the spread order goes on, up to
 *    SCHED_SPREAD_MAX frames; after that the lowest frame number.
 * 2. By estimated weight (sched_frame_weight()): the heaviest queued
 *    frame first (longest processing time first: heavy frames early, on
 *    whichever slots are free, light ones left for the end), within the
 *    cap of rule 3.  Ties: the lower frame number.
 * 3. The tail: R = (estimated queued work, scaled to queued_total, +
 *    inflight_work) / total_speed is the time the farm needs for what is
 *    left.  A slot at least SCHED_SLOW_FACTOR slower than the fastest
 *    takes no frame whose time here, w / slot_speed, exceeds R + w /
 *    fastest_speed (a fastest slot would end it sooner even if it began
 *    it only once everything else is done): it takes the heaviest frame
 *    with w <= R / (1 / slot_speed - 1 / fastest_speed), so slow slots
 *    take lighter frames as the queue drains and heavy ones stay for fast
 *    slots; -1 when even the lightest is above that.
 * Unknown speeds (slot_speed, fastest_speed or total_speed <= 0 or not
 * finite): rule 3 does not apply (the heaviest frame is taken).
 *
 * Facts: queued sorted by frame number and done sorted by frame number
 * make it O(n + nd); other orders give the same answer in O(n x nd).  At
 * most SCHED_PICK_MAX queued facts and SCHED_PICK_MAX_DONE done facts are
 * read (the rest are ignored); a job with more queued frames passes a
 * sample (e.g. evenly spaced by number), plus its queued spread frames,
 * and each sampled frame's nearest done neighbours.
 */
int sched_pick_frame(const struct sched_frame_fact *queued, size_t n, const struct sched_done_fact *done,
		     size_t nd, const struct sched_pick *ctx);

#define SCHED_SPREAD_FRAMES 17 /* first, last, middle, quarters, eighths, sixteenths */
#define SCHED_SPREAD_MAX    256
#define SCHED_SLOW_FACTOR   1.5
#define SCHED_PICK_MAX      4096
#define SCHED_PICK_MAX_DONE 8192

#endif
