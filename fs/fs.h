/*
 * fs: the kernel's side of renderfs.  Inode numbers are derived from store
 * ids (type in the top 16 bits, row id below), so they are the same after
 * a remount and NFS file handles stay valid; nothing about inodes is kept
 * in memory, which is also why forget() has nothing to do.
 */
#ifndef RENDERFS_FS_H
#define RENDERFS_FS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <stdint.h>

#include "store/store.h"
#include "statcache.h" /* status_cache_flush(): the notifier calls it on a job's new state */

enum ino_type {
	T_FIXED = 0, /* the root and its fixed children */
	T_QFILE,     /* queue/NAME: qfiles.id */
	T_QERR,      /* queue/NAME.error: drops.id */
	T_JOB,       /* out/JOB: jobs.id */
	T_JSTATUS,
	T_JSTATUSJSON,
	T_JCONTROL,
	T_JLOGS,
	T_JVIDEO, /* jobs.id */
	T_FRAME,  /* out/JOB/frame_N.ext: frames.id */
	T_LOG,    /* out/JOB/logs/frame_N.log: frames.id */
	T_NODE,
	T_NSTATUS,
	T_NSTATUSJSON, /* nodes.id */
};

enum { I_ROOT = 1, I_STATUS, I_STATUSJSON, I_QUEUE, I_OUT, I_NODES };

#define INO(type, id) (((uint64_t)(type) << 48) | (uint64_t)(id))
#define INO_TYPE(ino) ((enum ino_type)((ino) >> 48))
#define INO_ID(ino)   ((int64_t)((ino) & ((1ull << 48) - 1)))

struct rfs {
	char *state_dir;
	struct fuse_session *se;
};

extern const struct fuse_lowlevel_ops rfs_ops;

/* A pool of store connections for request threads (pool.c).  A connection
 * is used by one thread at a time; get blocks only to open a new one. */
int pool_init(const char *state_dir);
struct store *pool_get(void);
void pool_put(struct store *st);
void pool_fini(void);

/* The notifier thread (notify.c): reads the store's change feed and sends
 * the kernel invalidations -- never from a request thread. */
int notify_start(struct fuse_session *se, const char *state_dir);
void notify_stop(void);

#endif
