/*
 * install: what a node needs on its disk before it can render -- the
 * worker script and each job's scene (a blob named by its SHA-256) -- put
 * there once and verified by hash on the node itself.  A fresh work
 * directory per slot too.
 *
 * Threads: a struct install is its runner's, used on the runner's thread
 * (transfers block).  Ownership: node stays the runner's; every buffer is
 * the caller's.
 */
#ifndef RENDERFS_INSTALL_H
#define RENDERFS_INSTALL_H

#include "nodes/transport.h"
#include "store/store.h"

#include <stddef.h>

#define INSTALL_KNOWN_BLOBS 32

struct install {
	struct tnode *node; /* not owned */
	int is_local;       /* this machine: the files are already where they must be */
	/* Blobs verified present on the node since the last connect, oldest
	 * first (a small cache: at most INSTALL_KNOWN_BLOBS). */
	char known[INSTALL_KNOWN_BLOBS][65];
	int nknown;
};

void install_init(struct install *in, struct tnode *node, int is_local);
/* The connection was dropped: check every blob again on the next use. */
void install_forget(struct install *in);

/* An empty directory at path on the node (made afresh). */
int install_fresh_dir(struct install *in, const char *path);

/*
 * Make sure the blob sha (this machine's copy is in st's blobs/) is on the
 * node, named by its hash, and really is those bytes; its path on the node
 * goes to remote.  A scene goes to a node once: a second job with the same
 * file uploads nothing.  -EIO when the upload did not verify.
 */
int install_blob(struct install *in, const struct store *st, const char *sha, char *remote, size_t sz);

/* The worker script at `local` on the node, named by its own hash; its
 * path there goes to remote. */
int install_worker(struct install *in, const char *local, char *remote, size_t sz);

#endif
