/*
 * node_nodes: nodes/, one directory per render node the store knows
 * (nodes/NODE), each holding its status files (node_status.c).  All of it
 * is read-only and nothing in it can be removed.
 */
#include "node.h"
#include "jobs/jobs.h"

#include <errno.h>
#include <string.h>

/* ---- nodes/ ---- */

static int nodes_dir_getattr(struct store *s, fuse_ino_t ino, struct stat *st, double *ttl)
{
	(void)ttl;
	node_fill_dir(st, ino, 0755);
	node_set_times(st, node_dir_time(s, CH_NODES, 0, 0));
	return 0;
}

static int nodes_dir_lookup(struct store *s, fuse_ino_t dir, const char *name, fuse_ino_t *ino)
{
	struct node_row n;
	int rc;

	(void)dir;
	rc = node_by_name(s, name, &n);
	if (!rc)
		*ino = INO(T_NODE, n.id);
	return rc;
}

static int list_node(void *arg, const struct node_row *n)
{
	list_add(arg, INO(T_NODE, n->id), 1, n->name);
	return 0;
}

static int nodes_dir_list(struct store *s, fuse_ino_t dir, struct listing *l)
{
	(void)dir;
	return nodes_list(s, list_node, l);
}

const struct node_ops node_nodes = {
    .getattr = nodes_dir_getattr,
    .lookup = nodes_dir_lookup,
    .list = nodes_dir_list,
    .refuse_create = EACCES,
};

/* ---- nodes/NODE ---- */

static int node_dir_getattr(struct store *s, fuse_ino_t ino, struct stat *st, double *ttl)
{
	struct node_row n;
	int rc;

	(void)ttl;
	rc = node_get(s, INO_ID(ino), &n);
	if (rc)
		return rc;
	node_fill_dir(st, ino, 0755);
	node_set_times(st, node_dir_time(s, CH_NODES, n.id, 0));
	return 0;
}

static int node_dir_lookup(struct store *s, fuse_ino_t dir, const char *name, fuse_ino_t *ino)
{
	(void)s;
	if (!strcmp(name, "status"))
		*ino = INO(T_NSTATUS, INO_ID(dir));
	else if (!strcmp(name, "status.json"))
		*ino = INO(T_NSTATUSJSON, INO_ID(dir));
	else
		return -ENOENT;
	return 0;
}

static int node_dir_list(struct store *s, fuse_ino_t dir, struct listing *l)
{
	(void)s;
	list_add(l, INO(T_NSTATUS, INO_ID(dir)), 0, "status");
	list_add(l, INO(T_NSTATUSJSON, INO_ID(dir)), 0, "status.json");
	return 0;
}

const struct node_ops node_node = {
    .getattr = node_dir_getattr,
    .lookup = node_dir_lookup,
    .list = node_dir_list,
};
