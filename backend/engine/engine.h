/*
 * engine: the backend.  Its thread turns complete drops into jobs, expires
 * leases nobody renews, ends jobs and assembles their videos; it starts the
 * provider named by [renderfs] backend (provider.h), whose runners pull,
 * render and collect the frames.
 * Each decision is a transaction in the store before it is acted on.
 *
 * Ownership: engine_start() returns an engine owned by the caller, who
 * must call engine_stop() exactly once; that stops the provider (frames in
 * flight go back to the queue as interrupted) and the engine's thread.
 */
#ifndef RENDERFS_ENGINE_H
#define RENDERFS_ENGINE_H

#include "core/config.h"

struct engine;

/* secret: what the provider's check() read before mounting (the Clore
 * API key), else NULL; used while starting, not kept by the engine.
 * -ENOTSUP for a backend no provider is named. */
int engine_start(const char *state_dir, const struct config *cfg, const char *secret, struct engine **out);
void engine_stop(struct engine *e);

#endif
