/*
 * engine: the backend's thread.  It turns complete drops into jobs, hands
 * queued frames to free worker slots, reads what workers report, collects
 * and verifies frames, assembles videos and ends jobs -- each decision a
 * transaction in the store before it is acted on.
 *
 * Ownership: engine_start() returns an engine owned by the caller, who
 * must call engine_stop() exactly once; that stops the thread, stops every
 * worker and gives frames in flight back to the queue.
 */
#ifndef RENDERFS_ENGINE_H
#define RENDERFS_ENGINE_H

#include "config.h"

struct engine;

int engine_start(const char *state_dir, const struct config *cfg, struct engine **out);
void engine_stop(struct engine *e);

#endif
