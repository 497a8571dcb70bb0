/*
 * intake: the drop box.  The files in queue/ are rows of the qfiles table
 * with their bytes in the spool directory (store/queue_rows.h); fs/ calls
 * the queue_* functions to behave like an ordinary directory, and the
 * engine calls intake_scan() to turn complete drops into jobs or into
 * NAME.error explanations.
 *
 * A drop NAME is complete when NAME.blend and NAME.range both exist, no
 * writer has either open, and `quiet` has passed since the later of their
 * last changes (create, close after writing, truncate, rename).
 */
#ifndef RENDERFS_INTAKE_H
#define RENDERFS_INTAKE_H

#include <stdint.h>
#include <sys/types.h>
#include "store/store.h"
#include "store/queue_rows.h"

/* The rows (struct qfile, struct qerror) and the queue_* reads and small
 * writes fs/ calls are in store/queue_rows.h. */

/* Create an empty file owned by uid, gid (the creator; its job will be
 * theirs); -EEXIST when the name is taken.  queue_create: owner unknown
 * (shown as the daemon's user). */
int queue_create_as(struct store *st, const char *name, uint32_t mode, int64_t uid, int64_t gid,
		    struct qfile *out);
int queue_create(struct store *st, const char *name, uint32_t mode, struct qfile *out);
/* rename(2) inside queue/: flags as renameat2 (RENAME_NOREPLACE, RENAME_EXCHANGE). */
int queue_rename(struct store *st, const char *from, const char *to, unsigned flags);
/* unlink(2): removing a running job's .blend cancels that job. */
int queue_unlink(struct store *st, const char *name);

/* Is this a name that can be (half of) a drop?  Hidden files, backups and
 * editor temporaries are not. */
int intake_is_candidate(const char *name);

/* One pass over the queue on the caller's thread: check complete drops;
 * create jobs or errors.  Returns the number of jobs created, or -errno.
 * (Tests and tools; the engine uses the pool below.) */
int intake_scan(struct store *st, int64_t quiet_ms, int64_t now);

/*
 * The intake threads.  Checking a drop means reading, hashing and copying
 * its .blend (up to BLEND_MAX_EXPANDED of decompression for a compressed
 * one), which may take seconds; the engine must go on scheduling
 * meanwhile.  intake_pool_scan() (the engine thread, every 100 ms) only
 * finds the complete drops and queues each to one of `nthreads` threads,
 * each with its own store connection, which check it and write the job or
 * the NAME.error.  A drop is queued once until its outcome is written.
 * intake_pool_stop() waits for the checks in progress (each bounded by the
 * caps of blend_check) and drops the queued ones: they are found again by
 * the next mount's first scan.
 */
#define INTAKE_THREADS_MAX 8
#define INTAKE_QUEUE_MAX   64
#define INTAKE_SIG_MAX     160
struct intake_pool;
int intake_pool_start(const char *state_dir, int nthreads, struct intake_pool **out);
void intake_pool_stop(struct intake_pool *p);
/* Queue the drops ready to be checked (see intake_scan); st is the
 * caller's connection.  0 or -errno. */
int intake_pool_scan(struct intake_pool *p, struct store *st, int64_t quiet_ms, int64_t now);

/* A job's inputs leave queue/ when it ends: store_release_inputs()
 * (store/queue_rows.h), called by jobs.c and the engine. */

#endif
