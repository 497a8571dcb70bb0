/*
 * engine: the backend.  Its thread turns complete drops into jobs, expires
 * leases nobody renews, ends jobs and assembles their videos; it starts one
 * runner per node (runner.h), which pull, render and collect the frames.
 * Each decision is a transaction in the store before it is acted on.
 *
 * Ownership: engine_start() returns an engine owned by the caller, who
 * must call engine_stop() exactly once; that stops the runners (frames in
 * flight go back to the queue as interrupted) and the engine's thread.
 */
#ifndef RENDERFS_ENGINE_H
#define RENDERFS_ENGINE_H

#include "core/config.h"

struct engine;

/* clore_key: the Clore API key for backend = clore (else NULL); used
 * while starting, not kept by the engine. */
int engine_start(const char *state_dir, const struct config *cfg, const char *clore_key, struct engine **out);
void engine_stop(struct engine *e);

#endif
