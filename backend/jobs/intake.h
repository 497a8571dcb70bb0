/*
 * intake: the drop box.  The files in queue/ are rows of the qfiles table
 * with their bytes in the spool directory; fs/ calls the queue_* functions
 * to behave like an ordinary directory, and the engine calls intake_scan()
 * to turn complete drops into jobs or into NAME.error explanations.
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

#define QUEUE_NAME_MAX 255

struct qfile {
	int64_t id;
	char name[QUEUE_NAME_MAX + 1];
	int64_t job; /* 0 while a pending drop */
	int writers;
	int64_t changed; /* ms */
	uint32_t mode;   /* permission bits */
};

struct qerror {
	int64_t id;
	char name[QUEUE_NAME_MAX + 1]; /* "NAME.error" */
	int64_t at;
	size_t len; /* bytes of the error text */
};

int queue_lookup(struct store *st, const char *name, struct qfile *out);
int queue_get(struct store *st, int64_t id, struct qfile *out);
/* fn returns non-zero to stop.  Files in id order. */
int queue_list(struct store *st, int (*fn)(void *arg, const struct qfile *q), void *arg);
/* Create an empty file; -EEXIST when the name is taken. */
int queue_create(struct store *st, const char *name, uint32_t mode, struct qfile *out);
/* A writer opened (+1) or closed (-1) the file. */
int queue_writer(struct store *st, int64_t id, int delta);
/* The contents changed outside a writer's open/close (truncate). */
int queue_touch(struct store *st, int64_t id);
int queue_chmod(struct store *st, int64_t id, uint32_t mode);
/* rename(2) inside queue/: flags as renameat2 (RENAME_NOREPLACE, RENAME_EXCHANGE). */
int queue_rename(struct store *st, const char *from, const char *to, unsigned flags);
/* unlink(2): removing a running job's .blend cancels that job. */
int queue_unlink(struct store *st, const char *name);

/* Refused drops, shown as queue/NAME.error. */
int queue_error_lookup(struct store *st, const char *name, struct qerror *out);
int queue_error_get(struct store *st, int64_t id, struct qerror *out);
int queue_error_list(struct store *st, int (*fn)(void *arg, const struct qerror *e), void *arg);
/* Remove the explanation (unlink of NAME.error).  A drop that is still
 * there and still refused gets it back on the next scan. */
int queue_error_remove(struct store *st, int64_t id);
/* The error text, malloc'd, caller frees. */
int queue_error_text(struct store *st, int64_t id, char **text, size_t *len);

/* Is this a name that can be (half of) a drop?  Hidden files, backups and
 * editor temporaries are not. */
int intake_is_candidate(const char *name);

/* One pass over the queue: check complete drops; create jobs or errors.
 * Returns the number of jobs created, or -errno. */
int intake_scan(struct store *st, int64_t quiet_ms, int64_t now);

/* A job ended: its inputs leave queue/ (the blob and sidecar text stay). */
int intake_release_inputs(struct store *st, int64_t job);

#endif
