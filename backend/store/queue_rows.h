/*
 * queue_rows: the files in queue/ (qfiles rows, their bytes in
 * STATE/spool/ID), the refused drops shown as queue/NAME.error (drops
 * rows), and the release of a job's inputs when it ends.  jobs/intake.c
 * decides what a drop is and when it becomes a job; this file owns the
 * SQL and the spool files' lives.  Implemented in queue_rows.c.
 *
 * Ownership: rows are copied into the caller's structs; callbacks get a
 * row that lives only for the call and return non-zero to stop.  The one
 * allocation handed out is queue_error_text()'s, which the caller frees.
 * Lookups return -ENOENT when there is no such row.
 */
#ifndef RENDERFS_STORE_QUEUE_ROWS_H
#define RENDERFS_STORE_QUEUE_ROWS_H

#include <stddef.h>
#include <stdint.h>
#include "store/store.h"

#define QUEUE_NAME_MAX 255

struct qfile {
	int64_t id;
	char name[QUEUE_NAME_MAX + 1];
	int64_t job; /* 0 while a pending drop */
	int writers;
	int64_t changed;  /* ms */
	uint32_t mode;    /* permission bits */
	int64_t uid, gid; /* who created it; -1: unknown (from before owners were kept) */
};

struct qerror {
	int64_t id;
	char name[QUEUE_NAME_MAX + 1]; /* "NAME.error" */
	int64_t at;
	size_t len;       /* bytes of the error text */
	int64_t uid, gid; /* NAME.blend's owner when the error was set; -1: unknown */
};

/* ---- queue/ files, as fs/ sees them ---- */

int queue_lookup(struct store *st, const char *name, struct qfile *out);
int queue_get(struct store *st, int64_t id, struct qfile *out);
/* fn returns non-zero to stop.  Files in id order. */
int queue_list(struct store *st, int (*fn)(void *arg, const struct qfile *q), void *arg);
/* A writer opened (+1) or closed (-1) the file. */
int queue_writer(struct store *st, int64_t id, int delta);
/* The contents changed outside a writer's open/close (truncate). */
int queue_touch(struct store *st, int64_t id);
int queue_chmod(struct store *st, int64_t id, uint32_t mode);
/* Set the owner; a uid or gid < 0 is left as it is. */
int queue_chown(struct store *st, int64_t id, int64_t uid, int64_t gid);

/* Refused drops, shown as queue/NAME.error. */
int queue_error_lookup(struct store *st, const char *name, struct qerror *out);
int queue_error_get(struct store *st, int64_t id, struct qerror *out);
int queue_error_list(struct store *st, int (*fn)(void *arg, const struct qerror *e), void *arg);
/* Remove the explanation (unlink of NAME.error).  A drop that is still
 * there and still refused gets it back on the next scan. */
int queue_error_remove(struct store *st, int64_t id);
/* The error text, malloc'd, caller frees. */
int queue_error_text(struct store *st, int64_t id, char **text, size_t *len);

/* ---- the primitives intake builds on ---- */

/* A new empty file NAME (checked by the caller) owned by uid and gid (-1:
 * unknown) with its spool file, in its own transaction; *out filled.
 * -EEXIST when the name is taken. */
int store_qfile_create(struct store *st, const char *name, uint32_t mode, int64_t uid, int64_t gid,
		       int64_t now, struct qfile *out);
/* Delete the row and its spool file.  Call inside a transaction. */
int store_qfile_delete(struct store *st, int64_t id);
/* Rename one file (to must be free); it becomes a pending drop again. */
int store_qfile_rename(struct store *st, int64_t id, const char *to, int64_t now);
/* Swap the names of two files: a is named a_to, b is named b_to; both
 * become pending drops.  Call inside a transaction. */
int store_qfile_exchange(struct store *st, int64_t a, const char *a_to, int64_t b, const char *b_to,
			 int64_t now);
/* The two files of a drop now belong to job, and the job to the owner of
 * its .blend (jobs.uid, gid). */
int store_qfile_claim(struct store *st, int64_t job, int64_t blend, int64_t range);
/*
 * A job ended: its inputs (the qfiles rows it claimed, at most its .blend
 * and .range) leave queue/ with their spool files; the blob and the
 * sidecar text stay with the job.  Announces CH_QUEUE when one left.
 */
int store_release_inputs(struct store *st, int64_t job);

/* NAME's refusal: set (text and the inputs' signature; its owner is
 * NAME.blend's), read the
 * signature (-ENOENT), clear it.  Each announces CH_QUEUE when it changed
 * something. */
int store_drop_set(struct store *st, const char *name, const char *text, const char *sig, int64_t now);
int store_drop_sig(struct store *st, const char *name, char *sig, size_t sz);
int store_drop_clear(struct store *st, const char *name);
/* Remove every refusal whose .blend or .range is gone or became a job's
 * input (an explanation outlives neither of the files it explains). */
int store_drops_prune(struct store *st);

#endif
