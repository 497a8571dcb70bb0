/*
 * ops: the low-level FUSE operations.  Each handler is thin: it takes a
 * store connection from the pool, finds the inode's table of operations
 * (node.h: one table per kind of inode, the handlers in the node_*.c
 * files) and calls through it -- the helpers return 0 or -errno -- gives
 * the connection back and sends exactly one reply.  Nothing here asks an
 * inode's type.  No handler touches the network or waits on the engine:
 * everything is answered from the store and from local files.
 */
#include "node.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

static struct rfs *ctx(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* A table's refusal errno, or the default when the table leaves it 0. */
static int refusal(int e, int dflt)
{
	return e ? e : dflt;
}

/* ---- handles ---- */

static struct fh *fh_new(fuse_ino_t ino)
{
	struct fh *fh = calloc(1, sizeof(*fh));

	if (!fh)
		return NULL;
	atomic_init(&fh->refs, 1);
	fh->ops = node_ops(ino);
	fh->fd = -1;
	return fh;
}

static void fh_free(struct fh *fh)
{
	if (fh->fd >= 0)
		close(fh->fd);
	free(fh->buf);
	free(fh);
}

static struct fh *fh_hold(struct fuse_file_info *fi)
{
	struct fh *fh = (struct fh *)(uintptr_t)fi->fh;

	atomic_fetch_add(&fh->refs, 1);
	return fh;
}

static void fh_drop(struct fh *fh)
{
	if (atomic_fetch_sub(&fh->refs, 1) == 1)
		fh_free(fh);
}

/* Give back what open counted in the store (a queue writer), on s. */
static void fh_uncount(struct store *s, struct fh *fh)
{
	if (fh->counted && s)
		fh->ops->close(s, fh);
}

/*
 * The one reply that hands fh to the kernel (create's when e is given,
 * else open's).  When it fails with -ENOENT the opener was interrupted and
 * no release will come, so what open counted is undone here, on the
 * connection s that the request already holds (NULL when it counted
 * nothing); s is then given back.
 */
static void reply_handle(fuse_req_t req, struct store *s, struct fh *fh, struct fuse_file_info *fi,
			 const struct fuse_entry_param *e)
{
	int rc;

	fi->fh = (uintptr_t)fh;
	rc = e ? fuse_reply_create(req, e, fi) : fuse_reply_open(req, fi);
	if (rc == -ENOENT) {
		fh_uncount(s, fh);
		fh_drop(fh);
	}
	pool_put(s);
}

/* ---- dispatch: 0 or -errno, no replies ---- */

static int ops_getattr(struct store *s, fuse_ino_t ino, struct stat *st, double *ttl)
{
	const struct node_ops *o = node_ops(ino);

	*ttl = TTL_SHORT;
	return o->getattr ? o->getattr(s, ino, st, ttl) : -ENOENT;
}

static int ops_lookup(struct store *s, fuse_ino_t parent, const char *name, fuse_ino_t *ino)
{
	const struct node_ops *o = node_ops(parent);

	return o->lookup ? o->lookup(s, parent, name, ino) : -ENOTDIR;
}

/* The entry for ino, as lookup, create, mknod and readdirplus hand it to
 * the kernel. */
static int ops_fill_entry(struct store *s, fuse_ino_t ino, struct fuse_entry_param *e)
{
	const struct node_ops *o = node_ops(ino);
	double ttl;
	int rc;

	memset(e, 0, sizeof(*e));
	rc = ops_getattr(s, ino, &e->attr, &ttl);
	if (rc)
		return rc;
	e->ino = ino;
	e->generation = 1;
	e->attr_timeout = ttl;
	e->entry_timeout = o->entry_ttl == NODE_TTL_FOREVER ? TTL_FOREVER
			   : o->entry_ttl == NODE_TTL_NONE  ? 0
							    : TTL_SHORT;
	return 0;
}

static int ops_list(struct store *s, fuse_ino_t ino, struct listing *l)
{
	const struct node_ops *o = node_ops(ino);
	int rc;

	if (!o->list)
		return -ENOTDIR;
	list_add(l, ino, 1, ".");
	list_add(l, INO(T_FIXED, I_ROOT), 1, "..");
	rc = o->list(s, ino, l);
	return rc ? rc : l->names.oom ? -ENOMEM : 0;
}

static int ops_open(struct store *s, fuse_ino_t ino, struct fuse_file_info *fi, struct fh *fh)
{
	const struct node_ops *o = fh->ops;

	return o->open ? o->open(s, ino, fi, fh) : -EISDIR;
}

static int ops_unlink(struct store *s, fuse_ino_t parent, const char *name)
{
	const struct node_ops *o;
	fuse_ino_t ino;
	int rc;

	rc = ops_lookup(s, parent, name, &ino);
	if (rc)
		return rc;
	o = node_ops(ino);
	return o->unlink ? o->unlink(s, ino, name) : -EACCES;
}

static int ops_rmdir(struct store *s, fuse_ino_t parent, const char *name)
{
	const struct node_ops *o;
	fuse_ino_t ino;
	int rc;

	rc = ops_lookup(s, parent, name, &ino);
	if (rc)
		return rc;
	o = node_ops(ino);
	return o->rmdir ? o->rmdir(s, ino) : -EACCES;
}

/* A rename that is not within one directory able to rename. */
static int rename_refusal(const struct node_ops *from, const struct node_ops *to)
{
	if (refusal(from->refuse_make, EACCES) == EROFS || refusal(to->refuse_make, EACCES) == EROFS)
		return EROFS;
	return from->rename || to->rename ? EXDEV : EACCES;
}

/* ---- requests ---- */

static void reply_entry(fuse_req_t req, int rc, const struct fuse_entry_param *e)
{
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_entry(req, e);
}

static void rfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct store *s = pool_get();
	struct fuse_entry_param e;
	fuse_ino_t ino = 0;
	int rc;

	rc = s ? ops_lookup(s, parent, name, &ino) : -EIO;
	if (!rc)
		rc = ops_fill_entry(s, ino, &e);
	pool_put(s);
	reply_entry(req, rc, &e);
}

static void rfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct store *s = pool_get();
	struct stat st;
	double ttl;
	int rc;

	(void)fi;
	rc = s ? ops_getattr(s, ino, &st, &ttl) : -EIO;
	pool_put(s);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, ttl);
}

/* ---- directories: the listing is taken whole at opendir, so offsets
 * stay valid however the directory changes while it is read ---- */

static void rfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct store *s = pool_get();
	struct listing l = {{0}};
	struct fh *fh = NULL;
	int rc;

	rc = s ? ops_list(s, ino, &l) : -EIO;
	pool_put(s);
	if (!rc && !(fh = fh_new(ino)))
		rc = -ENOMEM;
	if (rc) {
		util_sb_free(&l.names);
		fuse_reply_err(req, -rc);
		return;
	}
	fh->buf = l.names.buf;
	fh->len = l.names.len;
	reply_handle(req, NULL, fh, fi, NULL);
}

/*
 * Answer readdir (plus = 0) or readdirplus (plus = 1) from the listing taken
 * at opendir.  With plus, each entry carries its attributes, so `ls -l` of
 * a job with thousands of frames needs no lookup per frame.
 */
static void readdir_fh(fuse_req_t req, struct fh *fh, size_t size, off_t off, int plus)
{
	struct store *s = plus ? pool_get() : NULL;
	char *out = malloc(size);
	size_t used = 0, pos = (size_t)off;

	if (!out || (plus && !s)) {
		free(out);
		pool_put(s);
		fuse_reply_err(req, out ? EIO : ENOMEM);
		return;
	}
	/* off is the byte position of the next entry in the listing. */
	while (pos < fh->len) {
		struct listing_entry le;
		struct fuse_entry_param e;
		size_t n;

		list_entry_at(fh->buf, pos, &le);
		memset(&e, 0, sizeof(e));
		e.attr.st_ino = le.ino;
		e.attr.st_mode = le.kind == 'd' ? S_IFDIR : S_IFREG;
		if (!plus) {
			n = fuse_add_direntry(req, out + used, size - used, le.name, &e.attr, (off_t)le.next);
		} else {
			if (le.kind == 'F') {
				/* A listed frame never changes: its attributes
				 * come with the listing. */
				node_fill_reg(&e.attr, le.ino, 0444, (off_t)le.size, le.mtime);
				e.ino = le.ino;
				e.generation = 1;
				e.attr_timeout = e.entry_timeout = TTL_FOREVER;
			} else if (strcmp(le.name, ".") && strcmp(le.name, "..") &&
				   ops_fill_entry(s, le.ino, &e)) {
				/* "." and "..", and entries gone since opendir, go
				 * without attributes (ino 0: the kernel makes no
				 * entry). */
				memset(&e, 0, sizeof(e));
				e.attr.st_ino = le.ino;
				e.attr.st_mode = le.kind == 'd' ? S_IFDIR : S_IFREG;
			}
			n = fuse_add_direntry_plus(req, out + used, size - used, le.name, &e, (off_t)le.next);
		}
		if (n > size - used)
			break;
		used += n;
		pos = le.next;
	}
	pool_put(s);
	fuse_reply_buf(req, out, used);
	free(out);
}

static void rfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fh *fh = fh_hold(fi);

	(void)ino;
	readdir_fh(req, fh, size, off, 0);
	fh_drop(fh);
}

static void rfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fh *fh = fh_hold(fi);

	(void)ino;
	readdir_fh(req, fh, size, off, 1);
	fh_drop(fh);
}

static void rfs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	fh_drop((struct fh *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/* ---- files ---- */

static void rfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct store *s = pool_get();
	struct fh *fh = fh_new(ino);
	int rc;

	rc = !s ? -EIO : !fh ? -ENOMEM : ops_open(s, ino, fi, fh);
	if (rc) {
		if (fh) {
			fh_uncount(s, fh);
			fh_free(fh);
		}
		pool_put(s);
		fuse_reply_err(req, -rc);
		return;
	}
	reply_handle(req, s, fh, fi, NULL);
}

/*
 * Each FUSE thread's read buffer, kept: a request is up to 1 MiB (the
 * readahead renderfs asks for), and a fresh malloc of that size is an
 * mmap, 256 page faults and an munmap per request.  Freed when the
 * thread ends (libfuse's worker threads come and go).
 */
static pthread_key_t read_buf_key;
static pthread_once_t read_buf_once = PTHREAD_ONCE_INIT;

struct read_buf {
	size_t cap;
	char data[];
};

static void read_buf_key_init(void)
{
	pthread_key_create(&read_buf_key, free);
}

static char *read_buffer(size_t size)
{
	struct read_buf *b;

	pthread_once(&read_buf_once, read_buf_key_init);
	b = pthread_getspecific(read_buf_key);
	if (b && b->cap >= size)
		return b->data;
	free(b);
	pthread_setspecific(read_buf_key, NULL);
	b = malloc(sizeof(*b) + (size ? size : 1));
	if (!b)
		return NULL;
	b->cap = size;
	pthread_setspecific(read_buf_key, b);
	return b->data;
}

/* A handle with an fd is read from its file, any other from its snapshot
 * (none at all: an empty file, as control reads). */
static void read_fh(fuse_req_t req, struct fh *fh, size_t size, off_t off)
{
	if (fh->fd >= 0) {
		/* A plain copy, not splice: libfuse 3.14 drops the reply (the
		 * reader hangs) when splicing a reply into /dev/fuse fails,
		 * which was seen with files still being written (logs). */
		char *buf = read_buffer(size);
		ssize_t n;

		if (!buf) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		n = pread(fh->fd, buf, size, off);
		if (n < 0)
			fuse_reply_err(req, errno);
		else
			fuse_reply_buf(req, buf, (size_t)n);
		return;
	}
	if ((size_t)off >= fh->len) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > fh->len - (size_t)off)
		size = fh->len - (size_t)off;
	fuse_reply_buf(req, fh->buf + off, size);
}

static void rfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fh *fh = fh_hold(fi);

	(void)ino;
	read_fh(req, fh, size, off);
	fh_drop(fh);
}

static void rfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		      struct fuse_file_info *fi)
{
	struct fh *fh = fh_hold(fi);
	const struct node_ops *o = fh->ops;
	size_t done = 0;
	int rc;

	rc = o->write ? o->write(fh, ino, buf, size, off, &done) : -refusal(o->refuse, EACCES);
	fh_drop(fh);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_write(req, done);
}

static void rfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fh *fh = (struct fh *)(uintptr_t)fi->fh;

	(void)ino;
	if (fh->counted) {
		struct store *s = pool_get();

		fh_uncount(s, fh);
		pool_put(s);
	}
	fh_drop(fh);
	fuse_reply_err(req, 0);
}

static void rfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct fh *fh = fh_hold(fi);
	int rc;

	(void)ino;
	rc = fh->ops->fsync ? fh->ops->fsync(fh, datasync) : 0;
	fh_drop(fh);
	fuse_reply_err(req, -rc);
}

static void rfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

/* Make or find the entry, open it, and answer both with one reply. */
static void rfs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		       struct fuse_file_info *fi)
{
	const struct node_ops *dir = node_ops(parent);
	struct fuse_entry_param e;
	struct store *s = NULL;
	struct fh *fh = NULL;
	fuse_ino_t ino = 0;
	int rc;

	if (!dir->create)
		rc = -refusal(dir->refuse_create, EROFS);
	else if (!(s = pool_get()))
		rc = -EIO;
	else
		rc = dir->create(s, parent, name, mode, fi->flags, &ino);
	if (!rc && !(fh = fh_new(ino)))
		rc = -ENOMEM;
	if (!rc)
		rc = ops_open(s, ino, fi, fh);
	if (!rc)
		rc = ops_fill_entry(s, ino, &e);
	if (rc) {
		if (fh) {
			fh_uncount(s, fh);
			fh_free(fh);
		}
		pool_put(s);
		fuse_reply_err(req, -rc);
		return;
	}
	reply_handle(req, s, fh, fi, &e);
}

static void rfs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	const struct node_ops *dir = node_ops(parent);
	struct fuse_entry_param e;
	struct store *s = NULL;
	fuse_ino_t ino = 0;
	int rc;

	(void)rdev;
	if (!dir->mknod)
		rc = -EROFS;
	else if (!(s = pool_get()))
		rc = -EIO;
	else
		rc = dir->mknod(s, parent, name, mode, &ino);
	if (!rc)
		rc = ops_fill_entry(s, ino, &e);
	pool_put(s);
	reply_entry(req, rc, &e);
}

static void rfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			struct fuse_file_info *fi)
{
	const struct node_ops *o = node_ops(ino);
	struct fh *fh = NULL;
	struct store *s = NULL;
	struct stat st;
	double ttl;
	int rc;

	/* Where nothing can be set, even times are refused: cp -p and
	 * rsync -t into a directory they cannot write to still expect a
	 * clear answer. */
	if (!o->setattr) {
		rc = -refusal(o->refuse, EACCES);
	} else if (!(s = pool_get())) {
		rc = -EIO;
	} else {
		fh = fi ? fh_hold(fi) : NULL;
		rc = o->setattr(s, ino, attr, to_set, fh);
		if (fh)
			fh_drop(fh);
		if (!rc)
			rc = ops_getattr(s, ino, &st, &ttl);
	}
	pool_put(s);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, 0);
}

static void rfs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct store *s = pool_get();
	int rc = s ? ops_unlink(s, parent, name) : -EIO;

	status_cache_flush();
	pool_put(s);
	fuse_reply_err(req, -rc);
}

static void rfs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct store *s = pool_get();
	int rc = s ? ops_rmdir(s, parent, name) : -EIO;

	status_cache_flush();
	pool_put(s);
	fuse_reply_err(req, -rc);
}

static void rfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		       const char *newname, unsigned int flags)
{
	const struct node_ops *from = node_ops(parent), *to = node_ops(newparent);
	struct store *s = NULL;
	int rc;

	if (parent != newparent || !from->rename)
		rc = -rename_refusal(from, to);
	else if (!(s = pool_get()))
		rc = -EIO;
	else
		rc = from->rename(s, name, newname, flags);
	pool_put(s);
	fuse_reply_err(req, -rc);
}

/* Nothing but regular files is made anywhere (queue/ says EPERM). */
static int refuse_in(fuse_ino_t parent)
{
	return refusal(node_ops(parent)->refuse_make, EACCES);
}

static void rfs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	(void)name;
	(void)mode;
	fuse_reply_err(req, refuse_in(parent));
}

static void rfs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	(void)link;
	(void)name;
	fuse_reply_err(req, refuse_in(parent));
}

static void rfs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino;
	(void)newname;
	fuse_reply_err(req, refuse_in(newparent));
}

static void rfs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;

	(void)ino;
	if (statvfs(ctx(req)->state_dir, &sv) < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	sv.f_namemax = 255;
	fuse_reply_statfs(req, &sv);
}

static void rfs_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* Large reads for frames, copied (see read_fh for why not spliced). */
	conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
	conn->max_readahead = 1 << 20;
	/* No writeback cache: queue/ must see writers open and close. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

const struct fuse_lowlevel_ops rfs_ops = {
    .init = rfs_init,
    .lookup = rfs_lookup,
    .getattr = rfs_getattr,
    .setattr = rfs_setattr,
    .opendir = rfs_opendir,
    .readdir = rfs_readdir,
    .readdirplus = rfs_readdirplus,
    .releasedir = rfs_releasedir,
    .open = rfs_open,
    .read = rfs_read,
    .write = rfs_write,
    .release = rfs_release,
    .flush = rfs_flush,
    .fsync = rfs_fsync,
    .create = rfs_create,
    .mknod = rfs_mknod,
    .unlink = rfs_unlink,
    .rmdir = rfs_rmdir,
    .rename = rfs_rename,
    .mkdir = rfs_mkdir,
    .symlink = rfs_symlink,
    .link = rfs_link,
    .statfs = rfs_statfs,
};
