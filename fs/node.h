/*
 * node: what a kind of inode can do, as one const table of operations per
 * kind, and what the node files share (attribute fillers, the directory
 * listing format, the open-file handle).  ops.c finds an inode's table
 * with node_ops() and dispatches through it; it never asks what type an
 * inode is.  The kinds are the inode types of fs.h, except that each fixed
 * inode (the root, status, status.json, queue/, out/, nodes/) is a kind of
 * its own.
 *
 *   kind                     file            entries set (the others are NULL)
 *   /                        node_root.c     getattr lookup list
 *   status, status.json      node_status.c   getattr open render
 *   queue/                   node_queue.c    getattr lookup list create mknod rename
 *   queue/NAME               node_queue.c    getattr open write setattr fsync close unlink
 *   queue/NAME.error         node_queue.c    getattr open unlink
 *   out/                     node_out.c      getattr lookup list
 *   out/JOB, out/JOB/logs    node_out.c      getattr lookup list rmdir
 *   out/JOB/status(.json)    node_status.c   getattr open unlink render
 *   out/JOB/control          node_out.c      getattr open write setattr unlink
 *   JOB.mp4, frames, logs/N  node_out.c      getattr open unlink
 *   nodes/, nodes/NODE       node_nodes.c    getattr lookup list
 *   nodes/NODE/status(.json) node_status.c   getattr open render
 *
 * A NULL entry means the answer named in the struct below.  None of these
 * functions replies: each returns 0 or -errno, and ops.c sends the one
 * reply.
 */
#ifndef RENDERFS_NODE_H
#define RENDERFS_NODE_H

#include "fs.h"
#include "core/util.h"

#include <stdatomic.h>
#include <sys/stat.h>

#define TTL_FOREVER 86400.0 /* frames never change once listed */
#define TTL_SHORT   1.0

/*
 * What an open file or directory holds.  The kernel may send release while
 * a request on the same handle is still being answered (a reader
 * interrupted mid-read closes its file at once), so every request holds a
 * reference for as long as it uses the handle (ops.c: fh_hold, fh_drop).
 */
struct fh {
	atomic_int refs;
	const struct node_ops *ops; /* of the inode opened */
	int fd;                     /* frames, logs, video, queue files; -1 if none */
	int64_t qid;                /* queue file row */
	int counted;                /* open counted it in the store (a queue writer): close undoes */
	char *buf;                  /* status/error snapshot, or directory listing; owned */
	size_t len;
	uid_t dir_uid; /* a directory's owner at opendir: its listed frames' */
	gid_t dir_gid;
};

/* A directory listing, taken whole at opendir (format in node.c). */
struct listing {
	struct util_sb names;
};

/* One entry of a listing; name points into the listing's buffer. */
struct listing_entry {
	fuse_ino_t ino;
	char kind;           /* 'd' directory, 'f' file, 'F' frame with size and mtime */
	int64_t size, mtime; /* 'F' only */
	const char *name;
	size_t next; /* byte position of the entry after it */
};

/* The entry timeout lookup and readdirplus give a kind's entries. */
enum node_ttl {
	NODE_TTL_SHORT = 0, /* TTL_SHORT: the default */
	NODE_TTL_NONE,      /* 0: queue entries come and go under the kernel */
	NODE_TTL_FOREVER,   /* TTL_FOREVER: a listed frame never changes */
};

struct node_ops {
	/* Attributes and the attribute timeout (*ttl is TTL_SHORT on entry).
	 * NULL: -ENOENT. */
	int (*getattr)(struct store *s, fuse_ino_t ino, struct stat *st, double *ttl);

	/* Directories.  lookup NULL: -ENOTDIR.  list NULL: -ENOTDIR; ops.c
	 * adds "." and ".." first. */
	int (*lookup)(struct store *s, fuse_ino_t dir, const char *name, fuse_ino_t *ino);
	int (*list)(struct store *s, fuse_ino_t dir, struct listing *l);
	/* Make or find the entry name (O_EXCL in flags: -EEXIST if it is
	 * there); ops.c then opens it through the entry's own table.  NULL:
	 * -refuse_create. */
	int (*create)(struct store *s, fuse_ino_t dir, const char *name, mode_t mode, int flags,
		      fuse_ino_t *ino);
	/* Make the entry name.  NULL: -EROFS. */
	int (*mknod)(struct store *s, fuse_ino_t dir, const char *name, mode_t mode, fuse_ino_t *ino);
	/* Rename within this directory.  NULL, or another directory on the
	 * other side: -EROFS if either side's refuse_make is EROFS, else
	 * -EXDEV if either side has rename, else -EACCES. */
	int (*rename)(struct store *s, const char *from, const char *to, unsigned int flags);

	/* Files.  open fills fh (fh->fd is -1 and fh->ops set on entry) and
	 * may set fi's direct_io, keep_cache, nonseekable.  NULL: -EISDIR.
	 * Reading needs no entry: a handle with an fd is read with pread,
	 * any other from its snapshot. */
	int (*open)(struct store *s, fuse_ino_t ino, struct fuse_file_info *fi, struct fh *fh);
	/* Write size bytes at off; *done is what was written.  NULL:
	 * -refuse. */
	int (*write)(struct fh *fh, fuse_ino_t ino, const char *buf, size_t size, off_t off, size_t *done);
	/* Apply the to_set fields of attr (FUSE_SET_ATTR_*); fh may be NULL.
	 * ops.c answers with getattr's attributes afterwards.  NULL:
	 * -refuse. */
	int (*setattr)(struct store *s, fuse_ino_t ino, const struct stat *attr, int to_set, struct fh *fh);
	/* NULL: 0 (nothing to flush). */
	int (*fsync)(struct fh *fh, int datasync);
	/* Undo what open counted in the store (fh->counted set); called once,
	 * at release or when the open reply never reached the opener. */
	void (*close)(struct store *s, struct fh *fh);

	/* Removing this node by its name in its parent.  NULL: -EACCES. */
	int (*unlink)(struct store *s, fuse_ino_t ino, const char *name);
	int (*rmdir)(struct store *s, fuse_ino_t ino);

	/* Status files: the text for row id, served through statcache. */
	int (*render)(struct store *s, int64_t id, struct util_sb *sb);

	/* Refusals; 0 means the default named. */
	int refuse;        /* setattr, write on this node: default EACCES */
	int refuse_create; /* create in this directory: default EROFS */
	int refuse_make;   /* mkdir, symlink, link in this directory: default EACCES */
	enum node_ttl entry_ttl;
};

/*
 * Who asks.  ops.c sets it at the start of every request, on the thread
 * that answers it (a request is answered on one thread, start to end), so
 * the kinds' functions can check the caller without every signature
 * carrying it.  Without `-o default_permissions` the kernel checks
 * nothing and these checks are the only ones; with it the kernel checks
 * the same modes and owners first (getattr shows them truthfully), and
 * these agree.  Root (uid 0) may do anything a mode allows anyone.
 */
struct node_caller {
	uid_t uid;
	gid_t gid;
	fuse_req_t req; /* for its supplementary groups, asked only when they decide */
	int fresh;      /* create made the file just now: its opening is not checked */
};
extern _Thread_local struct node_caller node_caller;

/* Owner uid or gid of a row (-1: unknown, from before owners were kept)
 * as shown: unknown is the daemon's user. */
uid_t node_uid(int64_t uid);
gid_t node_gid(int64_t gid);
/* The caller is root or uid. */
int node_caller_owns(uid_t uid);
/* The caller may remove or rename an entry owned by uid in a sticky
 * directory (queue/, out/) of the daemon's: root, uid itself, or the
 * daemon's user.  Else -EPERM, as the kernel answers for /tmp. */
int node_sticky_check(uid_t uid);
/* The caller is in group gid (its own or a supplementary one). */
int node_caller_in_group(gid_t gid);
/* The permission bits of st allow the caller mask (R_OK, W_OK, X_OK
 * combined): 0, else -EACCES. */
int node_access(const struct stat *st, int mask);

/* When a directory changed last (store_dir_time), ms, and never before
 * fallback; when neither is known (or s is NULL), when this daemon
 * started. */
int64_t node_dir_time(struct store *s, enum change_kind kind, int64_t id, int64_t fallback);
/* Set st's mtime, ctime and atime to ms. */
void node_set_times(struct stat *st, int64_t ms);

/* The table for ino: never NULL (an inode that names no kind gets an empty
 * table, whose answers are the defaults above). */
const struct node_ops *node_ops(fuse_ino_t ino);

/* The kinds' tables, one per kind (the files named at the top). */
extern const struct node_ops node_root, node_farm_status, node_farm_status_json;
extern const struct node_ops node_queue, node_qfile, node_qerr;
extern const struct node_ops node_out, node_job, node_jcontrol, node_jlogs, node_jvideo, node_frame, node_log;
extern const struct node_ops node_job_status, node_job_status_json;
extern const struct node_ops node_nodes, node_node, node_node_status, node_node_status_json;

/* Attribute fillers (node.c).  Owner is the daemon's user; callers set
 * st_uid and st_gid for what users own. */
void node_fill_dir(struct stat *st, fuse_ino_t ino, mode_t mode);
void node_fill_reg(struct stat *st, fuse_ino_t ino, mode_t mode, off_t size, int64_t mtime_ms);
/* A regular file's attributes from the local file at path: -errno of stat. */
int node_stat_file(const char *path, fuse_ino_t ino, mode_t mode, struct stat *st);
/* The directory that holds directory dir ("..", asked by the kernel for
 * NFS file handles): the root for the root; 0 when dir is no directory. */
fuse_ino_t node_parent(fuse_ino_t dir);

/* Entries of ended jobs that were removed without anything being removed
 * (hidden.c): hidden from listings and lookups until node_unhide_job() of
 * their job (its directory removed) or the next mount.  node_hide: 0 or
 * -ENOMEM. */
int node_hide(fuse_ino_t ino, int64_t job);
int node_hidden(fuse_ino_t ino);
void node_unhide_job(int64_t job);
void node_hidden_fini(void);
/* Hide ino, an entry of job that goes with the job's directory, if the job
 * allows removals (node_out.c): 0, -EBUSY while it is active, -ENOMEM. */
int node_hide_removed(struct store *s, fuse_ino_t ino, int64_t job);

/* Opened for writing, or truncating. */
int node_is_write(int flags);
/* "frame_0012.png" -> 12 when it ends in ext and is in canonical form;
 * -1 otherwise. */
long node_parse_frame_name(const char *name, const char *ext);

/* Listings (node.c).  An allocation failure is kept in l->names.oom and
 * makes later adds no-ops. */
void list_add(struct listing *l, fuse_ino_t ino, int is_dir, const char *name);
void list_add_frame(struct listing *l, fuse_ino_t ino, int64_t size, int64_t mtime, const char *name);
/* Decode the entry starting at byte pos of a listing of len bytes (pos <
 * len, as produced by list_add*). */
void list_entry_at(const char *buf, size_t pos, struct listing_entry *e);

#endif
