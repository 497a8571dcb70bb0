/*
 * policy: the scheduling policy as pure functions of facts and a clock.
 * The runners feed it what the store says; the simulator (later) feeds it
 * a virtual world.  Nothing here touches the store, the network or the
 * real clock.
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
	int64_t started;       /* when its holder started it (ms) */
	double avg_ms;         /* its job's average frame time so far; 0 = none yet */
	int64_t blocked_until; /* this node may not take the job's frames before */
};

/*
 * The tail: a node has a free slot and no queued frame it may take.  Which
 * in-flight frame should it start again (the first verified result wins)?
 * The one that has been running longest, among those that have run at
 * least half their job's average frame time (2 s while no average is
 * known): a frame about to finish is not worth a second render.  Returns
 * an index into f, or -1.
 */
int sched_pick_duplicate(const struct sched_inflight *f, size_t n, int64_t now);

/* Failed frames of one job on one node before the node is blocked for the
 * job, and how long the block lasts. */
#define SCHED_BLOCK_AFTER 3
#define SCHED_FORGIVE_MS  (10 * 60 * 1000)

#endif
