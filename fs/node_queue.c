/*
 * node_queue: queue/, the one writable directory, and what lives in it.
 * A queue file (queue/NAME) is a row in the store with its bytes in a
 * spool file: create, mknod (regular files only), write by pwrite at the
 * kernel's offset, setattr (size, mode, times; chown is ignored), rename
 * within queue/, unlink.  Opening one for writing counts a writer in the
 * store, which intake waits on before it takes the file; close gives it
 * back.  queue/NAME.error is the text of why a drop was refused: read-only,
 * removable, and hidden by a real file of the same name.
 *
 * Owners: queue/ is a sticky world-writable directory, as /tmp is (mode
 * 1777).  A file belongs to whoever created it (the store keeps its uid
 * and gid), NAME.error to NAME.blend's owner.  Anyone creates; only the
 * owner, root or the daemon's user removes or renames an entry (EPERM,
 * as for /tmp); opening is checked against the file's mode (EACCES).  A
 * file is never writable by its group or others (those bits are cleared
 * at create and chmod), so only its owner and root overwrite it.
 */
#include "node.h"
#include "jobs/intake.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

/* ---- queue/ ---- */

static int queue_dir_getattr(struct store *s, fuse_ino_t ino, struct stat *st, double *ttl)
{
	(void)ttl;
	node_fill_dir(st, ino, 01777);
	node_set_times(st, node_dir_time(s, CH_QUEUE, 0, 0));
	return 0;
}

static int queue_dir_lookup(struct store *s, fuse_ino_t dir, const char *name, fuse_ino_t *ino)
{
	struct qfile q;
	struct qerror e;
	int rc;

	(void)dir;
	rc = queue_lookup(s, name, &q);
	if (rc == 0) {
		*ino = INO(T_QFILE, q.id);
		return 0;
	}
	rc = queue_error_lookup(s, name, &e);
	if (rc == 0)
		*ino = INO(T_QERR, e.id);
	return rc;
}

struct queue_list_ctx {
	struct listing *l;
	struct store *s;
};

static int list_qfile(void *arg, const struct qfile *q)
{
	struct queue_list_ctx *c = arg;

	list_add(c->l, INO(T_QFILE, q->id), 0, q->name);
	return 0;
}

static int list_qerror(void *arg, const struct qerror *e)
{
	struct queue_list_ctx *c = arg;
	struct qfile q;

	if (queue_lookup(c->s, e->name, &q) == 0)
		return 0; /* a real file of that name wins */
	list_add(c->l, INO(T_QERR, e->id), 0, e->name);
	return 0;
}

/* Files and .error entries in one read transaction, so that a drop being
 * refused meanwhile shows as exactly one of them. */
static int queue_dir_list(struct store *s, fuse_ino_t dir, struct listing *l)
{
	struct queue_list_ctx c = {.l = l, .s = s};
	int rc;

	(void)dir;
	rc = store_read_begin(s);
	if (!rc) {
		queue_list(s, list_qfile, &c);
		queue_error_list(s, list_qerror, &c);
		store_read_end(s);
	}
	return rc;
}

static int queue_dir_create(struct store *s, fuse_ino_t dir, const char *name, mode_t mode, int flags,
			    fuse_ino_t *ino)
{
	struct qfile q;
	int rc;

	(void)dir;
	rc = queue_lookup(s, name, &q);
	if (rc == 0 && (flags & O_EXCL))
		return -EEXIST;
	if (rc == -ENOENT) {
		/* open(O_CREAT) of a new file opens it whatever its mode says,
		 * as on any file system. */
		rc = queue_create_as(s, name, mode & 0755, node_caller.uid, node_caller.gid, &q);
		node_caller.fresh = !rc;
	}
	if (rc)
		return rc;
	*ino = INO(T_QFILE, q.id);
	return 0;
}

static int queue_dir_mknod(struct store *s, fuse_ino_t dir, const char *name, mode_t mode, fuse_ino_t *ino)
{
	struct qfile q;
	int rc;

	(void)dir;
	if (!S_ISREG(mode))
		return -EPERM;
	rc = queue_create_as(s, name, mode & 0755, node_caller.uid, node_caller.gid, &q);
	if (!rc)
		*ino = INO(T_QFILE, q.id);
	return rc;
}

/* The sticky rule for an entry of queue/ by name: a file's or an
 * error's owner.  -ENOENT when there is neither. */
static int queue_entry_sticky(struct store *s, const char *name)
{
	struct qfile q;
	struct qerror e;

	if (!queue_lookup(s, name, &q))
		return node_sticky_check(node_uid(q.uid));
	if (!queue_error_lookup(s, name, &e))
		return node_sticky_check(node_uid(e.uid));
	return -ENOENT;
}

/* Both the file renamed and the one it replaces must be the caller's. */
static int queue_dir_rename(struct store *s, const char *from, const char *to, unsigned int flags)
{
	int rc = queue_entry_sticky(s, from);

	if (!rc)
		rc = queue_entry_sticky(s, to);
	if (rc && rc != -ENOENT)
		return rc;
	return queue_rename(s, from, to, flags);
}

/* Only regular files are made here: mkdir, symlink and link are EPERM. */
const struct node_ops node_queue = {
    .getattr = queue_dir_getattr,
    .lookup = queue_dir_lookup,
    .list = queue_dir_list,
    .create = queue_dir_create,
    .mknod = queue_dir_mknod,
    .rename = queue_dir_rename,
    .refuse_make = EPERM,
};

/* ---- queue/NAME ---- */

static int qfile_getattr(struct store *s, fuse_ino_t ino, struct stat *st, double *ttl)
{
	char path[4096];
	struct qfile q;
	struct stat sb;
	int rc;

	rc = queue_get(s, INO_ID(ino), &q);
	if (rc)
		return rc;
	store_path_spool(s, INO_ID(ino), path, sizeof(path));
	if (stat(path, &sb) < 0)
		return -errno;
	*st = sb;
	st->st_ino = ino;
	st->st_mode = S_IFREG | (q.mode & 07777);
	st->st_nlink = 1;
	st->st_uid = node_uid(q.uid);
	st->st_gid = node_gid(q.gid);
	*ttl = 0;
	return 0;
}

static int qfile_open(struct store *s, fuse_ino_t ino, struct fuse_file_info *fi, struct fh *fh)
{
	int64_t id = INO_ID(ino);
	int flags = fi->flags & (O_ACCMODE | O_TRUNC | O_APPEND);
	char path[4096];
	struct stat st;
	double ttl;
	int rc;

	rc = qfile_getattr(s, ino, &st, &ttl);
	if (rc)
		return rc;
	if (!node_caller.fresh)
		rc = node_access(&st, ((fi->flags & O_ACCMODE) != O_WRONLY ? R_OK : 0) |
					  (node_is_write(fi->flags) ? W_OK : 0));
	if (rc)
		return rc;
	store_path_spool(s, id, path, sizeof(path));
	/* O_APPEND is left to the kernel's offsets; the spool fd is written
	 * with pwrite at the offsets the kernel sends. */
	flags &= ~O_APPEND;
	if ((flags & O_ACCMODE) == O_WRONLY)
		flags = (flags & ~O_ACCMODE) | O_RDWR;
	fh->fd = open(path, flags | O_CLOEXEC);
	if (fh->fd < 0)
		return -errno;
	fh->qid = id;
	if (node_is_write(fi->flags)) {
		rc = queue_writer(s, id, +1);
		if (rc)
			return rc;
		fh->counted = 1;
	}
	return 0;
}

static int qfile_write(struct fh *fh, fuse_ino_t ino, const char *buf, size_t size, off_t off, size_t *done)
{
	ssize_t n;

	(void)ino;
	n = pwrite(fh->fd, buf, size, off);
	if (n < 0)
		return -errno;
	*done = (size_t)n;
	return 0;
}

/*
 * What the caller may set, as the kernel decides for a local file: the
 * size through a handle opened for writing or with write permission
 * (EACCES); mode, owner and explicit times only as the owner (EPERM);
 * times "now" as the owner or with write permission (EACCES); the owner
 * only as root, the group only to one of the owner's own groups.
 */
static int qfile_may_set(const struct stat *cur, const struct stat *attr, int to_set, struct fh *fh)
{
	int owner = node_caller_owns(cur->st_uid);

	if ((to_set & FUSE_SET_ATTR_SIZE) && !(fh && fh->counted) && node_access(cur, W_OK))
		return -EACCES;
	if ((to_set & FUSE_SET_ATTR_MODE) && !owner)
		return -EPERM;
	if ((to_set & FUSE_SET_ATTR_UID) && attr->st_uid != cur->st_uid && node_caller.uid != 0)
		return -EPERM;
	if ((to_set & FUSE_SET_ATTR_GID) && attr->st_gid != cur->st_gid && node_caller.uid != 0 &&
	    !(owner && node_caller_in_group(attr->st_gid)))
		return -EPERM;
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
		int now = (!(to_set & FUSE_SET_ATTR_ATIME) || (to_set & FUSE_SET_ATTR_ATIME_NOW)) &&
			  (!(to_set & FUSE_SET_ATTR_MTIME) || (to_set & FUSE_SET_ATTR_MTIME_NOW));

		if (!owner && (!now || node_access(cur, W_OK)))
			return now ? -EACCES : -EPERM;
	}
	return 0;
}

static int qfile_setattr(struct store *s, fuse_ino_t ino, const struct stat *attr, int to_set, struct fh *fh)
{
	int64_t id = INO_ID(ino);
	char path[4096];
	struct stat cur;
	double ttl;
	int rc;

	rc = qfile_getattr(s, ino, &cur, &ttl);
	if (!rc)
		rc = qfile_may_set(&cur, attr, to_set, fh);
	if (rc)
		return rc;
	store_path_spool(s, id, path, sizeof(path));
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (fh && fh->fd >= 0)
			rc = ftruncate(fh->fd, attr->st_size) < 0 ? -errno : 0;
		else
			rc = truncate(path, attr->st_size) < 0 ? -errno : 0;
		if (!rc)
			rc = queue_touch(s, id);
	}
	if (!rc && (to_set & FUSE_SET_ATTR_MODE))
		rc = queue_chmod(s, id, attr->st_mode & ~(mode_t)022);
	if (!rc && (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))) {
		struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_nsec = UTIME_OMIT}};

		if (to_set & FUSE_SET_ATTR_ATIME)
			ts[0] = to_set & FUSE_SET_ATTR_ATIME_NOW ? (struct timespec){.tv_nsec = UTIME_NOW}
								 : attr->st_atim;
		if (to_set & FUSE_SET_ATTR_MTIME)
			ts[1] = to_set & FUSE_SET_ATTR_MTIME_NOW ? (struct timespec){.tv_nsec = UTIME_NOW}
								 : attr->st_mtim;
		rc = utimensat(AT_FDCWD, path, ts, 0) < 0 ? -errno : 0;
	}
	/* chown: the owner is the store's (the spool file stays the
	 * daemon's), so cp -a and rsync -a as root keep who owns a drop. */
	if (!rc && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)))
		rc = queue_chown(s, id, (to_set & FUSE_SET_ATTR_UID) ? (int64_t)attr->st_uid : -1,
				 (to_set & FUSE_SET_ATTR_GID) ? (int64_t)attr->st_gid : -1);
	return rc;
}

static int qfile_fsync(struct fh *fh, int datasync)
{
	return (datasync ? fdatasync(fh->fd) : fsync(fh->fd)) < 0 ? -errno : 0;
}

static void qfile_close(struct store *s, struct fh *fh)
{
	queue_writer(s, fh->qid, -1);
	fh->counted = 0;
}

static int qfile_unlink(struct store *s, fuse_ino_t ino, const char *name)
{
	struct qfile q;
	int rc;

	rc = queue_get(s, INO_ID(ino), &q);
	if (!rc)
		rc = node_sticky_check(node_uid(q.uid));
	return rc ? rc : queue_unlink(s, name);
}

const struct node_ops node_qfile = {
    .getattr = qfile_getattr,
    .open = qfile_open,
    .write = qfile_write,
    .setattr = qfile_setattr,
    .fsync = qfile_fsync,
    .close = qfile_close,
    .unlink = qfile_unlink,
    .entry_ttl = NODE_TTL_NONE,
};

/* ---- queue/NAME.error ---- */

static int qerr_getattr(struct store *s, fuse_ino_t ino, struct stat *st, double *ttl)
{
	struct qerror e;
	int rc;

	rc = queue_error_get(s, INO_ID(ino), &e);
	if (rc)
		return rc;
	node_fill_reg(st, ino, 0444, (off_t)e.len, e.at);
	st->st_uid = node_uid(e.uid);
	st->st_gid = node_gid(e.gid);
	*ttl = 0;
	return 0;
}

static int qerr_open(struct store *s, fuse_ino_t ino, struct fuse_file_info *fi, struct fh *fh)
{
	if (node_is_write(fi->flags))
		return -EACCES;
	fi->direct_io = 1;
	return queue_error_text(s, INO_ID(ino), &fh->buf, &fh->len);
}

static int qerr_unlink(struct store *s, fuse_ino_t ino, const char *name)
{
	struct qerror e;
	int rc;

	(void)name;
	rc = queue_error_get(s, INO_ID(ino), &e);
	if (!rc)
		rc = node_sticky_check(node_uid(e.uid));
	return rc ? rc : queue_error_remove(s, INO_ID(ino));
}

const struct node_ops node_qerr = {
    .getattr = qerr_getattr,
    .open = qerr_open,
    .unlink = qerr_unlink,
    .entry_ttl = NODE_TTL_NONE,
};
