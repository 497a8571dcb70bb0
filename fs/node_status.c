/*
 * node_status: every status file -- the farm's status and status.json at
 * the root, out/JOB/status(.json) and nodes/NODE/status(.json).  Each is
 * rendered by jobs/status.c through the status cache (statcache.c): at
 * getattr, so st_size is the true size, and at open into the handle, whose
 * snapshot every read of that open then serves (direct_io).  They are
 * read-only; a job's status files may be unlinked once the job has ended,
 * so that `rm -r out/JOB` works, without removing anything (the names
 * are hidden, hidden.c).
 */
#include "node.h"
#include "jobs/jobs.h"
#include "jobs/status.h"

#include <errno.h>

static int status_getattr(struct store *s, fuse_ino_t ino, struct stat *st, double *ttl)
{
	struct util_sb sb = {0};
	int rc;

	rc = statcache_get(s, ino, node_ops(ino)->render, INO_ID(ino), &sb);
	node_fill_reg(st, ino, 0444, (off_t)sb.len, util_now_ms());
	util_sb_free(&sb);
	*ttl = 0;
	return rc;
}

static int status_open(struct store *s, fuse_ino_t ino, struct fuse_file_info *fi, struct fh *fh)
{
	struct util_sb sb = {0};
	int rc;

	if (node_is_write(fi->flags))
		return -EACCES;
	rc = statcache_get(s, ino, node_ops(ino)->render, INO_ID(ino), &sb);
	fh->buf = sb.buf;
	fh->len = sb.len;
	fi->direct_io = 1;
	return rc;
}

/* A job's status files are its owner's, as the rest of out/JOB. */
static int job_status_getattr(struct store *s, fuse_ino_t ino, struct stat *st, double *ttl)
{
	struct job_row j;
	int rc;

	rc = job_get(s, INO_ID(ino), &j);
	if (rc)
		return rc;
	rc = status_getattr(s, ino, st, ttl);
	st->st_uid = node_uid(j.uid);
	st->st_gid = node_gid(j.gid);
	return rc;
}

/* They go with the job's directory (rm -r): fine once it has ended, and
 * only for the job's owner (EACCES, as out/JOB is 0755). */
static int job_status_unlink(struct store *s, fuse_ino_t ino, const char *name)
{
	struct job_row j;
	int rc;

	(void)name;
	rc = job_get(s, INO_ID(ino), &j);
	if (!rc && !node_caller_owns(node_uid(j.uid)))
		rc = -EACCES;
	return rc ? rc : node_hide_removed(s, ino, INO_ID(ino));
}

static int render_farm(struct store *s, int64_t id, struct util_sb *sb)
{
	(void)id;
	return status_farm(s, 0, sb);
}

static int render_farm_json(struct store *s, int64_t id, struct util_sb *sb)
{
	(void)id;
	return status_farm(s, 1, sb);
}

static int render_job(struct store *s, int64_t id, struct util_sb *sb)
{
	return status_job(s, id, 0, sb);
}

static int render_job_json(struct store *s, int64_t id, struct util_sb *sb)
{
	return status_job(s, id, 1, sb);
}

static int render_node(struct store *s, int64_t id, struct util_sb *sb)
{
	return status_node(s, id, 0, sb);
}

static int render_node_json(struct store *s, int64_t id, struct util_sb *sb)
{
	return status_node(s, id, 1, sb);
}

/* At the root: creating beside them is EACCES, as in the root itself. */
const struct node_ops node_farm_status = {
    .getattr = status_getattr,
    .open = status_open,
    .render = render_farm,
    .refuse_create = EACCES,
};

const struct node_ops node_farm_status_json = {
    .getattr = status_getattr,
    .open = status_open,
    .render = render_farm_json,
    .refuse_create = EACCES,
};

/* Under out/: changes are EROFS. */
const struct node_ops node_job_status = {
    .getattr = job_status_getattr,
    .open = status_open,
    .unlink = job_status_unlink,
    .render = render_job,
    .refuse = EROFS,
    .refuse_make = EROFS,
};

const struct node_ops node_job_status_json = {
    .getattr = job_status_getattr,
    .open = status_open,
    .unlink = job_status_unlink,
    .render = render_job_json,
    .refuse = EROFS,
    .refuse_make = EROFS,
};

const struct node_ops node_node_status = {
    .getattr = status_getattr,
    .open = status_open,
    .render = render_node,
};

const struct node_ops node_node_status_json = {
    .getattr = status_getattr,
    .open = status_open,
    .render = render_node_json,
};
