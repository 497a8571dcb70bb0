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
#include "sched/dispatch.h" /* runner_pick_job, runner_lease_frame */

struct runner;

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
