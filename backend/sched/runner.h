/*
 * runner: drives one node (this machine, or one SSH host) on its own
 * thread: pulls frames for its slots, runs the Blender workers, fetches
 * and verifies frames.  See runner.c.
 *
 * Ownership: node stays the caller's, but only the runner's thread uses it
 * between runner_start() and runner_stop().  runner_stop() stops the
 * thread (frames in flight go back to the queue as interrupted), closes the
 * node and frees the runner; the caller then frees the node.
 */
#ifndef RENDERFS_RUNNER_H
#define RENDERFS_RUNNER_H

#include "core/config.h"
#include "nodes/transport.h"

struct runner;

/*
 * One scheduling decision, as the runner makes it for a free slot (and as
 * the scale benchmark measures it): the job the policy picks for node_id
 * (0 when none), then that job's next frame leased to (node_id, slot).
 */
struct lease_grant {
	int64_t frame_id, lease;
	uint32_t frame_no;
};
struct store;
int64_t runner_pick_job(struct store *st, int64_t node_id, int64_t now);
int runner_lease_frame(struct store *st, int64_t node_id, int slot, int64_t job, int64_t lease_ms,
		       int64_t now, struct lease_grant *g);

int runner_start(const char *state_dir, const struct config *cfg, struct tnode *node, int nslots,
		 const char *blender, const char *worker_path, struct runner **out);
/* The node's row in the store (nodes.id). */
int64_t runner_node_id(const struct runner *r);
/* Why frames in flight go back to the queue when this runner stops (default
 * "renderfs stopped"); set before runner_signal_stop/runner_stop. */
void runner_stop_because(struct runner *r, const char *why);
/* Ask the thread to stop without waiting (so many runners stop together). */
void runner_signal_stop(struct runner *r);
void runner_stop(struct runner *r);

#endif
