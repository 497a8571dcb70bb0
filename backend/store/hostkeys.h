/*
 * hostkeys: SSH host keys pinned on first contact (the hostkeys table,
 * node name -> fingerprint).  nodes/keys.c decides what a mismatch means;
 * this file owns the rows.  Implemented in hostkeys.c.  Nothing returned
 * needs freeing.
 */
#ifndef RENDERFS_STORE_HOSTKEYS_H
#define RENDERFS_STORE_HOSTKEYS_H

#include <stddef.h>
#include <stdint.h>
#include "store/store.h"

/* The fingerprint pinned for node into buf (cut to sz); -ENOENT when none. */
int store_hostkey_get(struct store *st, const char *node, char *buf, size_t sz);
/* Pin node's first fingerprint, seen at now (ms).  -EEXIST when pinned. */
int store_hostkey_pin(struct store *st, const char *node, const char *fingerprint, int64_t now);
/* The shell command that forgets node's pin, for a user to run: sqlite3
 * on STATE/renderfs.db with the DELETE statement (node quoted as given). */
void store_hostkey_forget_command(const char *node, char *buf, size_t sz);

#endif
