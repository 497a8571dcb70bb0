/*
 * poke: one flag that says "a frame was committed; whoever moves jobs
 * along should look now rather than at its next tick".  Runners set it;
 * the engine takes it.  It lives here, below the engine, so that runners
 * need not include the engine that starts them.
 */
#ifndef RENDERFS_POKE_H
#define RENDERFS_POKE_H

#include <stdbool.h>

/* Any thread may call either. */
void sched_poke(void);
/* True when poked since the last call; clears the flag. */
bool sched_poke_take(void);

#endif
