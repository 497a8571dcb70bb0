/*
 * statcache: a small table of status renderings, each served again while
 * it is under STATCACHE_TTL_MS old.  `cat status` asks twice in a row
 * (getattr for the size, then open for the text) and `watch` every couple
 * of seconds; serving the same rendering to both also makes the size
 * getattr reports match the text open returns.  The lock guards only the
 * table, never a database wait.
 */
#include "statcache.h"
#include "core/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define STATCACHE_SLOTS  16
#define STATCACHE_TTL_MS 250

static pthread_mutex_t statcache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	uint64_t key; /* 0: empty */
	int64_t at;   /* mono ms */
	char *buf;
	size_t len;
} statcache[STATCACHE_SLOTS]; /* guarded by statcache_lock */

static int sb_set(struct util_sb *sb, const char *buf, size_t len)
{
	sb->buf = malloc(len + 1);
	if (!sb->buf)
		return -ENOMEM;
	memcpy(sb->buf, buf, len);
	sb->buf[len] = '\0';
	sb->len = len;
	sb->cap = len + 1;
	return 0;
}

void status_cache_flush(void)
{
	pthread_mutex_lock(&statcache_lock);
	for (int i = 0; i < STATCACHE_SLOTS; i++)
		statcache[i].key = 0;
	pthread_mutex_unlock(&statcache_lock);
}

/* Keep a copy of text as key's rendering made at now: in key's own slot,
 * else the oldest.  Without memory the slot is simply left empty. */
static void statcache_keep(uint64_t key, int64_t now, const struct util_sb *text)
{
	int slot = 0;

	pthread_mutex_lock(&statcache_lock);
	for (int i = 0; i < STATCACHE_SLOTS; i++) {
		if (statcache[i].key == key) {
			slot = i;
			break;
		}
		if (statcache[i].at < statcache[slot].at)
			slot = i;
	}
	free(statcache[slot].buf);
	statcache[slot].buf = malloc(text->len + 1);
	if (statcache[slot].buf) {
		memcpy(statcache[slot].buf, text->buf, text->len);
		statcache[slot].key = key;
		statcache[slot].at = now;
		statcache[slot].len = text->len;
	} else {
		statcache[slot].key = 0;
	}
	pthread_mutex_unlock(&statcache_lock);
}

int statcache_get(struct store *s, uint64_t key, statcache_render_fn *render, int64_t id, struct util_sb *sb)
{
	int64_t now = util_mono_ms();
	int rc = 1;

	pthread_mutex_lock(&statcache_lock);
	for (int i = 0; i < STATCACHE_SLOTS; i++) {
		if (statcache[i].key == key && now - statcache[i].at < STATCACHE_TTL_MS) {
			rc = sb_set(sb, statcache[i].buf, statcache[i].len);
			break;
		}
	}
	pthread_mutex_unlock(&statcache_lock);
	if (rc <= 0)
		return rc;
	rc = render(s, id, sb);
	if (rc || sb->oom)
		return rc ? rc : -ENOMEM;
	statcache_keep(key, now, sb);
	return 0;
}
