/*
 * hidden: the entries of ended jobs that were "removed" without anything
 * being removed (status, status.json, control, logs/ and each log).  Such
 * an unlink used to succeed and leave the name listed, which is enough
 * for `rm -r`, but not for Samba: before it removes a directory smbd lists
 * it and refuses (NT_STATUS_DIRECTORY_NOT_EMPTY) while any name is left,
 * so `deltree` of an ended job failed.  A removed entry is now hidden from
 * listings and lookups until its job's directory goes (job_rmdir forgets
 * the job's entries) or renderfs is mounted again.
 *
 * The set is an open-addressing hash of inode numbers (each with its job)
 * under one mutex, which is never held while anything else is taken or
 * waited on.  It holds at most HIDDEN_MAX entries (16 bytes each).
 */
#include "node.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define HIDDEN_MAX (1u << 20)

struct hidden_slot {
	uint64_t ino; /* 0: free */
	int64_t job;
};

static pthread_mutex_t hidden_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hidden_slot *hidden_tab; /* hidden_lock */
static size_t hidden_cap, hidden_used; /* hidden_lock; cap is 0 or a power of two */
/* hidden_used, readable without the lock: listings of a farm where nothing
 * was hidden (the usual case) take no lock per entry. */
static atomic_size_t hidden_any;

static size_t slot_of(uint64_t ino, size_t cap)
{
	uint64_t h = ino * 0x9e3779b97f4a7c15ull;

	return (size_t)(h >> 17) & (cap - 1);
}

/* Put ino in tab (cap slots, with room); no duplicates are made. */
static void tab_put(struct hidden_slot *tab, size_t cap, uint64_t ino, int64_t job, size_t *used)
{
	size_t i = slot_of(ino, cap);

	while (tab[i].ino && tab[i].ino != ino)
		i = (i + 1) & (cap - 1);
	if (!tab[i].ino)
		(*used)++;
	tab[i].ino = ino;
	tab[i].job = job;
}

/* Rebuild into cap slots, leaving out the entries of job drop (0: none). */
static int tab_rebuild(size_t cap, int64_t drop)
{
	struct hidden_slot *tab = calloc(cap, sizeof(*tab));
	size_t used = 0;

	if (!tab)
		return -ENOMEM;
	for (size_t i = 0; i < hidden_cap; i++)
		if (hidden_tab[i].ino && hidden_tab[i].job != drop)
			tab_put(tab, cap, hidden_tab[i].ino, hidden_tab[i].job, &used);
	free(hidden_tab);
	hidden_tab = tab;
	hidden_cap = cap;
	hidden_used = used;
	atomic_store(&hidden_any, used);
	return 0;
}

int node_hide(fuse_ino_t ino, int64_t job)
{
	int rc = 0;

	pthread_mutex_lock(&hidden_lock);
	if (hidden_used >= HIDDEN_MAX)
		rc = -ENOMEM;
	else if ((hidden_used + 1) * 2 > hidden_cap)
		rc = tab_rebuild(hidden_cap ? hidden_cap * 2 : 64, 0);
	if (!rc) {
		tab_put(hidden_tab, hidden_cap, ino, job, &hidden_used);
		atomic_store(&hidden_any, hidden_used);
	}
	pthread_mutex_unlock(&hidden_lock);
	return rc;
}

int node_hidden(fuse_ino_t ino)
{
	int found = 0;

	if (!atomic_load(&hidden_any))
		return 0;
	pthread_mutex_lock(&hidden_lock);
	if (hidden_cap) {
		size_t i = slot_of(ino, hidden_cap);

		while (hidden_tab[i].ino && hidden_tab[i].ino != ino)
			i = (i + 1) & (hidden_cap - 1);
		found = hidden_tab[i].ino == ino;
	}
	pthread_mutex_unlock(&hidden_lock);
	return found;
}

void node_unhide_job(int64_t job)
{
	pthread_mutex_lock(&hidden_lock);
	/* Failing to shrink keeps the old table: the entries stay, harmless,
	 * since a removed job's inodes are never listed again. */
	if (hidden_cap)
		tab_rebuild(hidden_cap, job);
	pthread_mutex_unlock(&hidden_lock);
}

void node_hidden_fini(void)
{
	pthread_mutex_lock(&hidden_lock);
	free(hidden_tab);
	hidden_tab = NULL;
	hidden_cap = hidden_used = 0;
	atomic_store(&hidden_any, 0);
	pthread_mutex_unlock(&hidden_lock);
}
