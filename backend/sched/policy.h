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

#endif
