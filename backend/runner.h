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

#include "config.h"
#include "transport.h"

struct runner;

int runner_start(const char *state_dir, const struct config *cfg, struct tnode *node, int nslots,
		 const char *blender, const char *worker_path, struct runner **out);
/* Ask the thread to stop without waiting (so many runners stop together). */
void runner_signal_stop(struct runner *r);
void runner_stop(struct runner *r);

#endif
