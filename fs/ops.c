/*
 * ops: the low-level FUSE operations.  Each handler is thin: it takes a
 * store connection from the pool, calls a helper that returns 0 or -errno,
 * gives the connection back and sends exactly one reply.  No handler
 * touches the network or waits on the engine: everything is answered from
 * the store and from local files.
 */
#include "fs.h"
#include "jobs/intake.h"
#include "jobs/jobs.h"
#include "jobs/status.h"
#include "core/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define TTL_FOREVER 86400.0 /* frames never change once listed */
#define TTL_SHORT   1.0

/* What an open file or directory holds. */
/*
 * The kernel may send release while a request on the same handle is still
 * being answered (a reader interrupted mid-read closes its file at once),
 * so every request holds a reference for as long as it uses the handle.
 */
struct fh {
	atomic_int refs;
	enum ino_type type;
	int fd;      /* frames, logs, video, queue files */
	int64_t qid; /* queue file row */
	int writer;  /* counted as a writer of the queue file */
	char *buf;   /* status/error snapshot, or directory listing */
	size_t len;
};

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

static struct rfs *ctx(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void fill_dir(struct stat *st, fuse_ino_t ino, mode_t mode)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = S_IFDIR | mode;
	st->st_nlink = 2;
	st->st_uid = getuid();
	st->st_gid = getgid();
}

static void fill_reg(struct stat *st, fuse_ino_t ino, mode_t mode, off_t size, int64_t mtime_ms)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = S_IFREG | mode;
	st->st_nlink = 1;
	st->st_size = size;
	st->st_blocks = (size + 511) / 512;
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_mtim.tv_sec = mtime_ms / 1000;
	st->st_mtim.tv_nsec = (mtime_ms % 1000) * 1000000;
	st->st_atim = st->st_ctim = st->st_mtim;
}

static int stat_file(const char *path, fuse_ino_t ino, mode_t mode, struct stat *st)
{
	struct stat sb;

	if (stat(path, &sb) < 0)
		return -errno;
	fill_reg(st, ino, mode, sb.st_size, 0);
	st->st_mtim = sb.st_mtim;
	st->st_atim = sb.st_atim;
	st->st_ctim = sb.st_ctim;
	return 0;
}

/* Render a status file (type, id) into sb. */
static int render_status(struct store *s, enum ino_type type, int64_t id, struct util_sb *sb)
{
	switch (type) {
	case T_JSTATUS: return status_job(s, id, 0, sb);
	case T_JSTATUSJSON: return status_job(s, id, 1, sb);
	case T_NSTATUS: return status_node(s, id, 0, sb);
	case T_NSTATUSJSON: return status_node(s, id, 1, sb);
	default: break;
	}
	return -ENOENT;
}

static int render_fixed_status(struct store *s, int64_t id, struct util_sb *sb)
{
	return status_farm(s, id == I_STATUSJSON, sb);
}

/*
 * `cat status` asks twice in a row (getattr for the size, then open for
 * the text), and `watch` asks every couple of seconds; a rendering that is
 * under STATUS_TTL_MS old is served again.  That also makes the size
 * getattr reports match the text open returns.  The lock guards only the
 * table, never a database wait.
 */
#define STATUS_CACHE  16
#define STATUS_TTL_MS 250

static pthread_mutex_t status_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	fuse_ino_t ino;
	int64_t at; /* mono ms */
	char *buf;
	size_t len;
} status_cache[STATUS_CACHE]; /* guarded by status_lock */

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

/* After a change made through the mount (a control command, a removal),
 * or a job's new state, the next read must show it. */
void status_cache_flush(void)
{
	pthread_mutex_lock(&status_lock);
	for (int i = 0; i < STATUS_CACHE; i++)
		status_cache[i].ino = 0;
	pthread_mutex_unlock(&status_lock);
}

static int render_cached(struct store *s, fuse_ino_t ino, struct util_sb *sb)
{
	int64_t now = util_mono_ms();
	int rc = 1, oldest = 0;

	pthread_mutex_lock(&status_lock);
	for (int i = 0; i < STATUS_CACHE; i++) {
		if (status_cache[i].ino == ino && now - status_cache[i].at < STATUS_TTL_MS) {
			rc = sb_set(sb, status_cache[i].buf, status_cache[i].len);
			break;
		}
	}
	pthread_mutex_unlock(&status_lock);
	if (rc <= 0)
		return rc;
	rc = INO_TYPE(ino) == T_FIXED ? render_fixed_status(s, INO_ID(ino), sb)
				      : render_status(s, INO_TYPE(ino), INO_ID(ino), sb);
	if (rc || sb->oom)
		return rc ? rc : -ENOMEM;
	pthread_mutex_lock(&status_lock);
	for (int i = 0; i < STATUS_CACHE; i++) {
		if (status_cache[i].ino == ino) {
			oldest = i;
			break;
		}
		if (status_cache[i].at < status_cache[oldest].at)
			oldest = i;
	}
	free(status_cache[oldest].buf);
	status_cache[oldest].buf = malloc(sb->len + 1);
	if (status_cache[oldest].buf) {
		memcpy(status_cache[oldest].buf, sb->buf, sb->len);
		status_cache[oldest].ino = ino;
		status_cache[oldest].at = now;
		status_cache[oldest].len = sb->len;
	} else {
		status_cache[oldest].ino = 0;
	}
	pthread_mutex_unlock(&status_lock);
	return 0;
}

static int do_getattr(struct store *s, fuse_ino_t ino, struct stat *st, double *ttl)
{
	enum ino_type type = INO_TYPE(ino);
	int64_t id = INO_ID(ino);
	char path[4096];
	int rc;

	*ttl = TTL_SHORT;
	switch (type) {
	case T_FIXED:
		if (id == I_ROOT || id == I_OUT || id == I_NODES) {
			fill_dir(st, ino, 0755);
			return 0;
		}
		if (id == I_QUEUE) {
			fill_dir(st, ino, 0775);
			return 0;
		}
		if (id == I_STATUS || id == I_STATUSJSON) {
			struct util_sb sb = {0};

			rc = render_cached(s, ino, &sb);
			fill_reg(st, ino, 0444, (off_t)sb.len, util_now_ms());
			util_sb_free(&sb);
			*ttl = 0;
			return rc;
		}
		return -ENOENT;
	case T_QFILE: {
		struct qfile q;
		struct stat sb;

		rc = queue_get(s, id, &q);
		if (rc)
			return rc;
		store_path_spool(s, id, path, sizeof(path));
		if (stat(path, &sb) < 0)
			return -errno;
		*st = sb;
		st->st_ino = ino;
		st->st_mode = S_IFREG | (q.mode & 07777);
		st->st_nlink = 1;
		st->st_uid = getuid();
		st->st_gid = getgid();
		*ttl = 0;
		return 0;
	}
	case T_QERR: {
		struct qerror e;

		rc = queue_error_get(s, id, &e);
		if (rc)
			return rc;
		fill_reg(st, ino, 0444, (off_t)e.len, e.at);
		*ttl = 0;
		return 0;
	}
	case T_JOB:
	case T_JLOGS: {
		struct job_row j;

		rc = job_get(s, id, &j);
		if (rc)
			return rc;
		fill_dir(st, ino, 0755);
		return 0;
	}
	case T_JSTATUS:
	case T_JSTATUSJSON:
	case T_NSTATUS:
	case T_NSTATUSJSON: {
		struct util_sb sb = {0};

		rc = render_cached(s, ino, &sb);
		fill_reg(st, ino, 0444, (off_t)sb.len, util_now_ms());
		util_sb_free(&sb);
		*ttl = 0;
		return rc;
	}
	case T_JCONTROL: {
		struct job_row j;

		rc = job_get(s, id, &j);
		if (rc)
			return rc;
		fill_reg(st, ino, 0644, 0, j.created);
		return 0;
	}
	case T_JVIDEO: store_path_video(s, id, path, sizeof(path)); return stat_file(path, ino, 0444, st);
	case T_FRAME: {
		struct frame_row f;

		rc = frame_get(s, id, &f);
		if (rc)
			return rc;
		if (f.state != FS_DONE)
			return -ENOENT;
		fill_reg(st, ino, 0444, (off_t)f.size, f.mtime);
		*ttl = TTL_FOREVER;
		return 0;
	}
	case T_LOG: {
		struct frame_row f;

		rc = frame_get(s, id, &f);
		if (rc)
			return rc;
		store_path_log(s, f.job, f.frame, path, sizeof(path));
		*ttl = 0;
		return stat_file(path, ino, 0444, st);
	}
	case T_NODE: {
		struct node_row n;

		rc = node_get(s, id, &n);
		if (rc)
			return rc;
		fill_dir(st, ino, 0755);
		return 0;
	}
	}
	return -ENOENT;
}

/* "frame_0012.png" -> 12, when ext matches; -1 otherwise. */
static long parse_frame_name(const char *name, const char *ext)
{
	const char *p = name + 6;
	char *end;
	long n;

	if (strncmp(name, "frame_", 6) || !(*p >= '0' && *p <= '9'))
		return -1;
	n = strtol(p, &end, 10);
	if (strcmp(end, ext) || end - p < 4 || (end - p > 4 && *p == '0') || n < 0 || n > 1048574)
		return -1;
	return n;
}

static int do_lookup(struct store *s, fuse_ino_t parent, const char *name, fuse_ino_t *ino)
{
	enum ino_type type = INO_TYPE(parent);
	int64_t id = INO_ID(parent);
	int rc;

	if (type == T_FIXED && id == I_ROOT) {
		static const struct {
			const char *name;
			int id;
		} top[] = {
		    {"status", I_STATUS}, {"status.json", I_STATUSJSON}, {"queue", I_QUEUE}, {"out", I_OUT},
		    {"nodes", I_NODES},
		};

		for (size_t i = 0; i < ARRAY_SIZE(top); i++) {
			if (!strcmp(name, top[i].name)) {
				*ino = INO(T_FIXED, top[i].id);
				return 0;
			}
		}
		return -ENOENT;
	}
	if (type == T_FIXED && id == I_QUEUE) {
		struct qfile q;
		struct qerror e;

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
	if (type == T_FIXED && id == I_OUT) {
		struct job_row j;

		rc = job_by_name(s, name, &j);
		if (!rc)
			*ino = INO(T_JOB, j.id);
		return rc;
	}
	if (type == T_FIXED && id == I_NODES) {
		struct node_row n;

		rc = node_by_name(s, name, &n);
		if (!rc)
			*ino = INO(T_NODE, n.id);
		return rc;
	}
	if (type == T_JOB) {
		struct job_row j;
		struct frame_row f;
		char video[JOB_NAME_MAX + 8];
		long n;

		rc = job_get(s, id, &j);
		if (rc)
			return rc;
		if (!strcmp(name, "status"))
			*ino = INO(T_JSTATUS, id);
		else if (!strcmp(name, "status.json"))
			*ino = INO(T_JSTATUSJSON, id);
		else if (!strcmp(name, "control"))
			*ino = INO(T_JCONTROL, id);
		else if (!strcmp(name, "logs"))
			*ino = INO(T_JLOGS, id);
		else if (snprintf(video, sizeof(video), "%s.mp4", j.name) > 0 && !strcmp(name, video) &&
			 j.video_exists)
			*ino = INO(T_JVIDEO, id);
		else if ((n = parse_frame_name(name, j.ext)) >= 0 &&
			 !frame_by_number(s, id, (uint32_t)n, &f) && f.state == FS_DONE)
			*ino = INO(T_FRAME, f.id);
		else
			return -ENOENT;
		return 0;
	}
	if (type == T_JLOGS) {
		struct frame_row f;
		long n = parse_frame_name(name, ".log");

		if (n < 0 || frame_by_number(s, id, (uint32_t)n, &f) || !f.logged)
			return -ENOENT;
		*ino = INO(T_LOG, f.id);
		return 0;
	}
	if (type == T_NODE) {
		if (!strcmp(name, "status"))
			*ino = INO(T_NSTATUS, id);
		else if (!strcmp(name, "status.json"))
			*ino = INO(T_NSTATUSJSON, id);
		else
			return -ENOENT;
		return 0;
	}
	return -ENOTDIR;
}

/* The entry for ino, as lookup and readdirplus hand it to the kernel. */
static int fill_entry(struct store *s, fuse_ino_t ino, struct fuse_entry_param *e)
{
	double ttl;
	int rc;

	memset(e, 0, sizeof(*e));
	rc = do_getattr(s, ino, &e->attr, &ttl);
	if (rc)
		return rc;
	e->ino = ino;
	e->generation = 1;
	e->attr_timeout = ttl;
	e->entry_timeout = INO_TYPE(ino) == T_FRAME                              ? TTL_FOREVER
			   : INO_TYPE(ino) == T_QFILE || INO_TYPE(ino) == T_QERR ? 0
										 : TTL_SHORT;
	return 0;
}

static void reply_entry(fuse_req_t req, struct store *s, fuse_ino_t ino, int rc)
{
	struct fuse_entry_param e;

	if (!rc)
		rc = fill_entry(s, ino, &e);
	pool_put(s);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_entry(req, &e);
}

static void rfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct store *s = pool_get();
	fuse_ino_t ino = 0;
	int rc;

	if (!s) {
		fuse_reply_err(req, EIO);
		return;
	}
	rc = do_lookup(s, parent, name, &ino);
	reply_entry(req, s, ino, rc);
}

static void rfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct store *s = pool_get();
	struct stat st;
	double ttl;
	int rc;

	(void)fi;
	if (!s) {
		fuse_reply_err(req, EIO);
		return;
	}
	rc = do_getattr(s, ino, &st, &ttl);
	pool_put(s);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, ttl);
}

/* ---- directories: the listing is taken whole at opendir, so offsets
 * stay valid however the directory changes while it is read ---- */

/*
 * A listing is a byte string of entries: the inode (8 bytes, little
 * endian), a kind byte ('d' directory, 'f' file, 'F' a frame whose size and
 * mtime follow as two more 8-byte fields, so readdirplus needs no lookup for
 * it), the name, and a NUL.
 */
struct listing {
	struct util_sb names;
};

static void put_u64(struct listing *l, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		util_sb_printf(&l->names, "%c", (char)((v >> (8 * i)) & 0xff));
}

static uint64_t get_u64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void list_add_kind(struct listing *l, fuse_ino_t ino, char kind, int64_t size, int64_t mtime,
			  const char *name)
{
	if (l->names.oom)
		return;
	put_u64(l, ino);
	util_sb_printf(&l->names, "%c", kind);
	if (kind == 'F') {
		put_u64(l, (uint64_t)size);
		put_u64(l, (uint64_t)mtime);
	}
	util_sb_printf(&l->names, "%s%c", name, 0);
}

static void list_add(struct listing *l, fuse_ino_t ino, int is_dir, const char *name)
{
	list_add_kind(l, ino, is_dir ? 'd' : 'f', 0, 0, name);
}

struct list_ctx {
	struct listing *l;
	struct store *s;
	const char *ext;
};

static int list_qfile(void *arg, const struct qfile *q)
{
	struct list_ctx *c = arg;

	list_add(c->l, INO(T_QFILE, q->id), 0, q->name);
	return 0;
}

static int list_qerror(void *arg, const struct qerror *e)
{
	struct list_ctx *c = arg;
	struct qfile q;

	if (queue_lookup(c->s, e->name, &q) == 0)
		return 0; /* a real file of that name wins */
	list_add(c->l, INO(T_QERR, e->id), 0, e->name);
	return 0;
}

static int list_job(void *arg, const struct job_row *j)
{
	struct list_ctx *c = arg;

	list_add(c->l, INO(T_JOB, j->id), 1, j->name);
	return 0;
}

static int list_frame(void *arg, const struct frame_row *f)
{
	struct list_ctx *c = arg;
	char name[64];

	frame_file_name(f->frame, c->ext, name, sizeof(name));
	list_add_kind(c->l, INO(T_FRAME, f->id), 'F', f->size, f->mtime, name);
	return 0;
}

static int list_log(void *arg, const struct frame_row *f)
{
	struct list_ctx *c = arg;
	char name[64];

	frame_file_name(f->frame, ".log", name, sizeof(name));
	list_add(c->l, INO(T_LOG, f->id), 0, name);
	return 0;
}

static int list_node(void *arg, const struct node_row *n)
{
	struct list_ctx *c = arg;

	list_add(c->l, INO(T_NODE, n->id), 1, n->name);
	return 0;
}

static int do_list(struct store *s, fuse_ino_t ino, struct listing *l)
{
	enum ino_type type = INO_TYPE(ino);
	int64_t id = INO_ID(ino);
	struct list_ctx c = {.l = l, .s = s};
	int rc = 0;

	list_add(l, ino, 1, ".");
	list_add(l, INO(T_FIXED, I_ROOT), 1, "..");
	if (type == T_FIXED && id == I_ROOT) {
		list_add(l, INO(T_FIXED, I_STATUS), 0, "status");
		list_add(l, INO(T_FIXED, I_STATUSJSON), 0, "status.json");
		list_add(l, INO(T_FIXED, I_QUEUE), 1, "queue");
		list_add(l, INO(T_FIXED, I_OUT), 1, "out");
		list_add(l, INO(T_FIXED, I_NODES), 1, "nodes");
	} else if (type == T_FIXED && id == I_QUEUE) {
		rc = store_exec(s, "BEGIN");
		if (!rc) {
			queue_list(s, list_qfile, &c);
			queue_error_list(s, list_qerror, &c);
			store_exec(s, "COMMIT");
		}
	} else if (type == T_FIXED && id == I_OUT) {
		rc = jobs_list(s, list_job, &c);
	} else if (type == T_FIXED && id == I_NODES) {
		rc = nodes_list(s, list_node, &c);
	} else if (type == T_JOB) {
		struct job_row j;
		char video[JOB_NAME_MAX + 8];

		rc = job_get(s, id, &j);
		if (rc)
			return rc;
		c.ext = j.ext;
		list_add(l, INO(T_JSTATUS, id), 0, "status");
		list_add(l, INO(T_JSTATUSJSON, id), 0, "status.json");
		list_add(l, INO(T_JCONTROL, id), 0, "control");
		list_add(l, INO(T_JLOGS, id), 1, "logs");
		if (j.video_exists) {
			snprintf(video, sizeof(video), "%s.mp4", j.name);
			list_add(l, INO(T_JVIDEO, id), 0, video);
		}
		rc = job_frames(s, id, list_frame, &c);
	} else if (type == T_JLOGS) {
		rc = job_logs(s, id, list_log, &c);
	} else if (type == T_NODE) {
		list_add(l, INO(T_NSTATUS, id), 0, "status");
		list_add(l, INO(T_NSTATUSJSON, id), 0, "status.json");
	} else {
		return -ENOTDIR;
	}
	return rc ? rc : l->names.oom ? -ENOMEM : 0;
}

static void rfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct store *s = pool_get();
	struct listing l = {{0}};
	struct fh *fh;
	int rc;

	if (!s) {
		fuse_reply_err(req, EIO);
		return;
	}
	rc = do_list(s, ino, &l);
	pool_put(s);
	fh = rc ? NULL : calloc(1, sizeof(*fh));
	if (fh)
		atomic_init(&fh->refs, 1);
	if (!fh) {
		util_sb_free(&l.names);
		fuse_reply_err(req, rc ? -rc : ENOMEM);
		return;
	}
	fh->fd = -1;
	fh->buf = l.names.buf;
	fh->len = l.names.len;
	fi->fh = (uintptr_t)fh;
	fuse_reply_open(req, fi);
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
		const unsigned char *p = (const unsigned char *)fh->buf + pos;
		char kind = (char)p[8];
		const char *name = (const char *)p + (kind == 'F' ? 25 : 9);
		size_t next = (size_t)(name - fh->buf) + strlen(name) + 1;
		uint64_t v = get_u64(p);
		struct fuse_entry_param e;
		size_t n;

		memset(&e, 0, sizeof(e));
		e.attr.st_ino = v;
		e.attr.st_mode = kind == 'd' ? S_IFDIR : S_IFREG;
		if (!plus) {
			n = fuse_add_direntry(req, out + used, size - used, name, &e.attr, (off_t)next);
		} else {
			if (kind == 'F') {
				/* A listed frame never changes: its attributes
				 * come with the listing. */
				fill_reg(&e.attr, v, 0444, (off_t)get_u64(p + 9), (int64_t)get_u64(p + 17));
				e.ino = v;
				e.generation = 1;
				e.attr_timeout = e.entry_timeout = TTL_FOREVER;
			} else if (strcmp(name, ".") && strcmp(name, "..") && fill_entry(s, v, &e)) {
				/* "." and "..", and entries gone since opendir, go
				 * without attributes (ino 0: the kernel makes no
				 * entry). */
				memset(&e, 0, sizeof(e));
				e.attr.st_ino = v;
				e.attr.st_mode = kind == 'd' ? S_IFDIR : S_IFREG;
			}
			n = fuse_add_direntry_plus(req, out + used, size - used, name, &e, (off_t)next);
		}
		if (n > size - used)
			break;
		used += n;
		pos = next;
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

static int is_write(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

static int in_out_tree(enum ino_type t)
{
	return t >= T_JOB && t <= T_LOG;
}

static int do_open(struct store *s, fuse_ino_t ino, struct fuse_file_info *fi, struct fh *fh)
{
	enum ino_type type = INO_TYPE(ino);
	int64_t id = INO_ID(ino);
	char path[4096];
	int rc;

	fh->type = type;
	fh->fd = -1;
	switch (type) {
	case T_FIXED:
		if (id != I_STATUS && id != I_STATUSJSON)
			return -EISDIR;
		if (is_write(fi->flags))
			return -EACCES;
		{
			struct util_sb sb = {0};

			rc = render_cached(s, ino, &sb);
			fh->buf = sb.buf;
			fh->len = sb.len;
		}
		fi->direct_io = 1;
		return rc;
	case T_JSTATUS:
	case T_JSTATUSJSON:
	case T_NSTATUS:
	case T_NSTATUSJSON: {
		struct util_sb sb = {0};

		if (is_write(fi->flags))
			return -EACCES;
		rc = render_cached(s, ino, &sb);
		fh->buf = sb.buf;
		fh->len = sb.len;
		fi->direct_io = 1;
		return rc;
	}
	case T_QERR: {
		if (is_write(fi->flags))
			return -EACCES;
		fi->direct_io = 1;
		return queue_error_text(s, id, &fh->buf, &fh->len);
	}
	case T_JCONTROL:
		fi->direct_io = 1;
		fi->nonseekable = 1;
		return job_get(s, id, &(struct job_row){0});
	case T_FRAME:
	case T_LOG:
	case T_JVIDEO: {
		struct frame_row f;
		struct job_row j;

		if (is_write(fi->flags))
			return -EROFS;
		if (type == T_JVIDEO) {
			store_path_video(s, id, path, sizeof(path));
		} else {
			rc = frame_get(s, id, &f);
			if (!rc)
				rc = job_get(s, f.job, &j);
			if (rc)
				return rc;
			if (type == T_FRAME)
				store_path_frame(s, f.job, f.frame, j.ext, path, sizeof(path));
			else
				store_path_log(s, f.job, f.frame, path, sizeof(path));
		}
		fh->fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fh->fd < 0)
			return -errno;
		/* Frames never change: let the page cache keep them. */
		fi->keep_cache = type != T_LOG;
		if (type == T_LOG)
			fi->direct_io = 1;
		return 0;
	}
	case T_QFILE: {
		struct qfile q;
		int flags = fi->flags & (O_ACCMODE | O_TRUNC | O_APPEND);

		rc = queue_get(s, id, &q);
		if (rc)
			return rc;
		store_path_spool(s, id, path, sizeof(path));
		/* O_APPEND is left to the kernel's offsets; the spool fd is
		 * written with pwrite at the offsets the kernel sends. */
		flags &= ~O_APPEND;
		if ((flags & O_ACCMODE) == O_WRONLY)
			flags = (flags & ~O_ACCMODE) | O_RDWR;
		fh->fd = open(path, flags | O_CLOEXEC);
		if (fh->fd < 0)
			return -errno;
		fh->qid = id;
		if (is_write(fi->flags)) {
			rc = queue_writer(s, id, +1);
			if (rc)
				return rc;
			fh->writer = 1;
		}
		return 0;
	}
	default: return -EISDIR;
	}
}

static void rfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct store *s = pool_get();
	struct fh *fh = calloc(1, sizeof(*fh));
	int rc;

	if (fh)
		atomic_init(&fh->refs, 1);
	if (!s || !fh) {
		pool_put(s);
		free(fh);
		fuse_reply_err(req, s ? ENOMEM : EIO);
		return;
	}
	rc = do_open(s, ino, fi, fh);
	if (rc && fh->writer)
		queue_writer(s, fh->qid, -1);
	pool_put(s);
	if (rc) {
		fh_free(fh);
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uintptr_t)fh;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		/* The opener was interrupted: undo. */
		s = pool_get();
		if (s && fh->writer)
			queue_writer(s, fh->qid, -1);
		pool_put(s);
		fh_free(fh);
	}
}

static void read_fh(fuse_req_t req, struct fh *fh, size_t size, off_t off)
{
	if (fh->fd >= 0) {
		/* A plain copy, not splice: libfuse 3.14 drops the reply (the
		 * reader hangs) when splicing a reply into /dev/fuse fails,
		 * which was seen with files still being written (logs). */
		char *buf = malloc(size ? size : 1);
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
		free(buf);
		return;
	}
	if (fh->type == T_JCONTROL) {
		fuse_reply_buf(req, NULL, 0);
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

static void write_fh(fuse_req_t req, fuse_ino_t ino, struct fh *fh, const char *buf, size_t size, off_t off)
{
	struct store *s;
	ssize_t n;
	int rc;

	if (fh->type == T_JCONTROL) {
		s = pool_get();
		rc = s ? job_control(s, INO_ID(ino), buf, size) : -EIO;
		status_cache_flush();
		pool_put(s);
		if (rc)
			fuse_reply_err(req, -rc);
		else
			fuse_reply_write(req, size);
		return;
	}
	if (fh->type != T_QFILE || fh->fd < 0) {
		fuse_reply_err(req, in_out_tree(fh->type) ? EROFS : EACCES);
		return;
	}
	n = pwrite(fh->fd, buf, size, off);
	if (n < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_write(req, (size_t)n);
}

static void rfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		      struct fuse_file_info *fi)
{
	struct fh *fh = fh_hold(fi);

	write_fh(req, ino, fh, buf, size, off);
	fh_drop(fh);
}

static void rfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fh *fh = (struct fh *)(uintptr_t)fi->fh;

	(void)ino;
	if (fh->writer) {
		struct store *s = pool_get();

		if (s)
			queue_writer(s, fh->qid, -1);
		pool_put(s);
	}
	fh_drop(fh);
	fuse_reply_err(req, 0);
}

static void rfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct fh *fh = fh_hold(fi);
	int rc = 0;

	(void)ino;
	if (fh->fd >= 0 && fh->type == T_QFILE)
		rc = (datasync ? fdatasync(fh->fd) : fsync(fh->fd)) < 0 ? errno : 0;
	fh_drop(fh);
	fuse_reply_err(req, rc);
}

static void rfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void rfs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		       struct fuse_file_info *fi)
{
	struct store *s;
	struct qfile q;
	struct fuse_entry_param e;
	struct fh *fh;
	double ttl;
	int rc;

	if (parent != INO(T_FIXED, I_QUEUE)) {
		fuse_reply_err(req, INO_TYPE(parent) == T_FIXED && INO_ID(parent) != I_OUT ? EACCES : EROFS);
		return;
	}
	s = pool_get();
	if (!s) {
		fuse_reply_err(req, EIO);
		return;
	}
	rc = queue_lookup(s, name, &q);
	if (rc == 0) {
		if (fi->flags & O_EXCL)
			rc = -EEXIST;
		else
			goto open_existing;
	} else if (rc == -ENOENT) {
		rc = queue_create(s, name, mode & 0777, &q);
	}
	if (rc) {
		pool_put(s);
		fuse_reply_err(req, -rc);
		return;
	}
open_existing:
	fh = calloc(1, sizeof(*fh));
	if (fh)
		atomic_init(&fh->refs, 1);
	rc = fh ? do_open(s, INO(T_QFILE, q.id), fi, fh) : -ENOMEM;
	if (!rc) {
		memset(&e, 0, sizeof(e));
		rc = do_getattr(s, INO(T_QFILE, q.id), &e.attr, &ttl);
	}
	if (rc && fh && fh->writer)
		queue_writer(s, fh->qid, -1);
	pool_put(s);
	if (rc) {
		if (fh)
			fh_free(fh);
		fuse_reply_err(req, -rc);
		return;
	}
	e.ino = INO(T_QFILE, q.id);
	e.generation = 1;
	e.attr_timeout = 0;
	e.entry_timeout = 0;
	fi->fh = (uintptr_t)fh;
	if (fuse_reply_create(req, &e, fi) == -ENOENT) {
		s = pool_get();
		if (s && fh->writer)
			queue_writer(s, fh->qid, -1);
		pool_put(s);
		fh_free(fh);
	}
}

static void rfs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct store *s;
	struct qfile q;
	int rc;

	(void)rdev;
	if (parent != INO(T_FIXED, I_QUEUE)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (!S_ISREG(mode)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	s = pool_get();
	rc = s ? queue_create(s, name, mode & 0777, &q) : -EIO;
	reply_entry(req, s, INO(T_QFILE, q.id), rc);
}

static void rfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			struct fuse_file_info *fi)
{
	struct store *s;
	struct stat st;
	double ttl;
	char path[4096];
	int rc = 0;

	if (INO_TYPE(ino) != T_QFILE) {
		/* Only times may be "set" elsewhere, and only as a no-op
		 * (cp -p, rsync -t into a directory they cannot write to
		 * still expect a clear answer). */
		fuse_reply_err(req, in_out_tree(INO_TYPE(ino)) ? EROFS : EACCES);
		return;
	}
	s = pool_get();
	if (!s) {
		fuse_reply_err(req, EIO);
		return;
	}
	store_path_spool(s, INO_ID(ino), path, sizeof(path));
	if (to_set & FUSE_SET_ATTR_SIZE) {
		struct fh *fh = fi ? (struct fh *)(uintptr_t)fi->fh : NULL;

		if (fh && fh->fd >= 0)
			rc = ftruncate(fh->fd, attr->st_size) < 0 ? -errno : 0;
		else
			rc = truncate(path, attr->st_size) < 0 ? -errno : 0;
		if (!rc)
			rc = queue_touch(s, INO_ID(ino));
	}
	if (!rc && (to_set & FUSE_SET_ATTR_MODE))
		rc = queue_chmod(s, INO_ID(ino), attr->st_mode);
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
	/* chown: the spool belongs to the daemon; accepted and ignored so
	 * that cp -a and rsync -a (as root) do not fail. */
	if (!rc)
		rc = do_getattr(s, ino, &st, &ttl);
	pool_put(s);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, 0);
}

static int do_unlink(struct store *s, fuse_ino_t parent, const char *name)
{
	fuse_ino_t ino;
	int rc;

	if (parent == INO(T_FIXED, I_QUEUE)) {
		struct qfile q;

		if (queue_lookup(s, name, &q) == 0)
			return queue_unlink(s, name);
		rc = do_lookup(s, parent, name, &ino);
		if (rc)
			return rc;
		return INO_TYPE(ino) == T_QERR ? queue_error_remove(s, INO_ID(ino)) : -EPERM;
	}
	rc = do_lookup(s, parent, name, &ino);
	if (rc)
		return rc;
	switch (INO_TYPE(ino)) {
	case T_FRAME: return job_remove_frame(s, INO_ID(ino));
	case T_JVIDEO: return job_remove_video(s, INO_ID(ino));
	case T_JSTATUS:
	case T_JSTATUSJSON:
	case T_JCONTROL:
		/* They go with the directory (rm -r): fine once it has ended. */
		return job_removable(s, INO_ID(ino));
	case T_LOG: {
		struct frame_row f;

		rc = frame_get(s, INO_ID(ino), &f);
		return rc ? rc : job_removable(s, f.job);
	}
	default: return -EACCES;
	}
}

static void rfs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct store *s = pool_get();
	int rc = s ? do_unlink(s, parent, name) : -EIO;

	status_cache_flush();
	pool_put(s);
	fuse_reply_err(req, -rc);
}

static void rfs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct store *s = pool_get();
	fuse_ino_t ino = 0;
	int rc = s ? do_lookup(s, parent, name, &ino) : -EIO;

	if (!rc) {
		if (INO_TYPE(ino) == T_JOB)
			rc = job_remove(s, INO_ID(ino));
		else if (INO_TYPE(ino) == T_JLOGS)
			rc = job_removable(s, INO_ID(ino));
		else
			rc = -EACCES;
	}
	status_cache_flush();
	pool_put(s);
	fuse_reply_err(req, -rc);
}

static void rfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		       const char *newname, unsigned int flags)
{
	struct store *s;
	int rc;

	if (parent != INO(T_FIXED, I_QUEUE) || newparent != INO(T_FIXED, I_QUEUE)) {
		int out = in_out_tree(INO_TYPE(parent)) || in_out_tree(INO_TYPE(newparent)) ||
			  parent == INO(T_FIXED, I_OUT) || newparent == INO(T_FIXED, I_OUT);

		fuse_reply_err(req, out ? EROFS
				    : parent == INO(T_FIXED, I_QUEUE) || newparent == INO(T_FIXED, I_QUEUE)
					? EXDEV
					: EACCES);
		return;
	}
	s = pool_get();
	rc = s ? queue_rename(s, name, newname, flags) : -EIO;
	pool_put(s);
	fuse_reply_err(req, -rc);
}

/* Only regular files live in queue/; nothing at all is made under out/. */
static int refuse_in(fuse_ino_t parent)
{
	if (parent == INO(T_FIXED, I_QUEUE))
		return EPERM;
	return parent == INO(T_FIXED, I_OUT) || in_out_tree(INO_TYPE(parent)) ? EROFS : EACCES;
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
