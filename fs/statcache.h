/*
 * statcache: recent renderings of status files, so that the getattr and
 * the open of one `cat` (and a `watch` every couple of seconds) render
 * once, and the size getattr reports matches the text open returns.
 */
#ifndef RENDERFS_STATCACHE_H
#define RENDERFS_STATCACHE_H

#include <stdint.h>

struct store;
struct util_sb;

/* Renders row id's status text into sb: 0 or -errno. */
typedef int statcache_render_fn(struct store *s, int64_t id, struct util_sb *sb);

/*
 * Fill sb (empty on entry; the caller frees it with util_sb_free, also on
 * error) with the text of the status file key: a copy of a rendering under
 * STATCACHE_TTL_MS old, else render(s, id, sb), which is then kept.
 * 0 or -errno (-ENOMEM when the text could not be built).  Safe from any
 * thread; the cache's lock is never held while rendering.
 */
int statcache_get(struct store *s, uint64_t key, statcache_render_fn *render, int64_t id, struct util_sb *sb);

/* Forget every rendering: after a change made through the mount (a control
 * command, a removal), or a job's new state, the next read must show it. */
void status_cache_flush(void);

#endif
