/*
 * node_root: the mount's root directory, which holds the fixed entries
 * status, status.json, queue/, out/ and nodes/ (inodes 2 to 6, the same
 * on every mount).  Nothing can be made, changed or removed in it.
 */
#include "node.h"

#include <errno.h>
#include <string.h>

static const struct {
	const char *name;
	int id;
	int is_dir;
} root_entries[] = {
    {"status", I_STATUS, 0}, {"status.json", I_STATUSJSON, 0}, {"queue", I_QUEUE, 1}, {"out", I_OUT, 1},
    {"nodes", I_NODES, 1},
};

static int root_getattr(struct store *s, fuse_ino_t ino, struct stat *st, double *ttl)
{
	(void)s;
	(void)ttl;
	node_fill_dir(st, ino, 0755);
	/* Its entries never change: dated when the daemon started. */
	node_set_times(st, node_dir_time(NULL, 0, 0, 0));
	return 0;
}

static int root_lookup(struct store *s, fuse_ino_t dir, const char *name, fuse_ino_t *ino)
{
	(void)s;
	(void)dir;
	for (size_t i = 0; i < ARRAY_SIZE(root_entries); i++) {
		if (!strcmp(name, root_entries[i].name)) {
			*ino = INO(T_FIXED, root_entries[i].id);
			return 0;
		}
	}
	return -ENOENT;
}

static int root_list(struct store *s, fuse_ino_t dir, struct listing *l)
{
	(void)s;
	(void)dir;
	for (size_t i = 0; i < ARRAY_SIZE(root_entries); i++)
		list_add(l, INO(T_FIXED, root_entries[i].id), root_entries[i].is_dir, root_entries[i].name);
	return 0;
}

const struct node_ops node_root = {
    .getattr = root_getattr,
    .lookup = root_lookup,
    .list = root_list,
    .refuse_create = EACCES,
};
