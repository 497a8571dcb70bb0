/*
 * pool: SQLite connections for FUSE request threads.  libfuse starts and
 * ends worker threads as load changes, so thread-local connections would
 * leak; a small free list serves instead.
 */
#include "fs.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POOL_MAX 16

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct store *pool_free[POOL_MAX]; /* guarded by pool_lock */
static int pool_nfree;                    /* guarded by pool_lock */
static char *pool_dir;                    /* set once before threads start */

int pool_init(const char *state_dir)
{
	pool_dir = strdup(state_dir);
	return pool_dir ? 0 : -1;
}

struct store *pool_get(void)
{
	struct store *st = NULL;

	pthread_mutex_lock(&pool_lock);
	if (pool_nfree)
		st = pool_free[--pool_nfree];
	pthread_mutex_unlock(&pool_lock);
	if (!st && store_open(pool_dir, &st))
		return NULL;
	return st;
}

void pool_put(struct store *st)
{
	if (!st)
		return;
	store_rollback(st);
	pthread_mutex_lock(&pool_lock);
	if (pool_nfree < POOL_MAX) {
		pool_free[pool_nfree++] = st;
		st = NULL;
	}
	pthread_mutex_unlock(&pool_lock);
	store_close(st);
}

void pool_fini(void)
{
	pthread_mutex_lock(&pool_lock);
	while (pool_nfree)
		store_close(pool_free[--pool_nfree]);
	pthread_mutex_unlock(&pool_lock);
	free(pool_dir);
	pool_dir = NULL;
}
