/*
 * dispatch: which frame a runner's free slot takes -- the job the policy
 * picks (policy.c) and that job's next frame leased to the slot -- and,
 * with nothing queued for the node, the tail: a duplicate of a frame that
 * another node is slow to finish.  The scene goes to the node before a
 * frame is leased, so a long upload never eats into a lease.
 *
 * Threads: the runner's.  Ownership: nothing returned needs freeing.
 */
#ifndef RENDERFS_DISPATCH_H
#define RENDERFS_DISPATCH_H

#include <stdint.h>

struct store;
struct runner;
struct slot;

/*
 * One scheduling decision, as the runner makes it for a free slot (and as
 * the scale benchmark and the clore provider use it): the job the policy
 * picks for node_id (0 when none), then that job's next frame leased to
 * (node_id, slot) by FE_DISPATCH, with the job's waiting → rendering, in
 * one transaction.  runner_lease_frame returns 0, -ENOENT when the job has
 * no queued frame, -ESTALE on a lost race, or -errno.
 */
struct lease_grant {
	int64_t frame_id, lease;
	uint32_t frame_no;
};
int64_t runner_pick_job(struct store *st, int64_t node_id, int64_t now);

/*
 * A node's own filter on jobs (the clore provider's per-job wishes: a node
 * rented for one job's gpu, min_vram, max_price or spot is not used for a
 * job that would refuse it).  runner_pick_job and the tail duplicates skip
 * a job when accept(arg, st, job) is 0; it is called on the picking thread
 * with that thread's store.  fn NULL removes the node's filter.  Set it
 * before the node can take frames, and remove it only once no thread can
 * still pick for the node (after runner_stop); arg must live until then.
 * Returns 0, or -ENOSPC when DISPATCH_MAX_FILTERS nodes already have one.
 */
typedef int (*dispatch_accept_fn)(void *arg, struct store *st, int64_t job);
#define DISPATCH_MAX_FILTERS 256
int dispatch_set_accept(int64_t node_id, dispatch_accept_fn fn, void *arg);
int runner_lease_frame(struct store *st, int64_t node_id, int slot, int64_t job, int64_t lease_ms,
		       int64_t now, struct lease_grant *g);

/* One pass over r's slots: each empty or ready slot takes a frame (or a
 * duplicate), then the node's state shows whether any slot holds one. */
void dispatch_schedule(struct runner *r);
/* Lease job's next frame to sl (sl's frame fields set): 0 or -errno. */
int dispatch_one(struct runner *r, struct slot *sl, int64_t job, int64_t now);
/* Upload job's scene if the node lacks it.  A failure of the link marks
 * the runner lost; any other counts against the node for the job. */
int dispatch_blob_ready(struct runner *r, int64_t job);
/* A failure of the node on job, counted towards blocking it for the job. */
void dispatch_block_note(struct runner *r, int64_t job, const char *why);

#endif
