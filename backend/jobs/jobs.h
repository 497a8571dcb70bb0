/*
 * jobs: what fs/ reads and asks about jobs and their frames -- the rows
 * behind out/, the control file's commands and removals.  The engine
 * carries out what these record (a cancelled job's workers are stopped by
 * the engine, not here).
 */
#ifndef RENDERFS_JOBS_H
#define RENDERFS_JOBS_H

#include <stdint.h>
#include "store/store.h"

#define JOB_NAME_MAX 255

struct job_row {
	int64_t id;
	char name[JOB_NAME_MAX + 1];
	enum job_state state;
	char format[8];                  /* "png" ... */
	char ext[8];                     /* ".png" ... */
	int64_t created, started, ended; /* ms; 0 when unset */
	int video_exists;                /* the assembled video is stored */
};

struct frame_row {
	int64_t id;
	int64_t job;
	uint32_t frame;
	enum frame_state state;
	int64_t size, mtime; /* done frames */
	int logged;
};

int job_get(struct store *st, int64_t id, struct job_row *out);
int job_by_name(struct store *st, const char *name, struct job_row *out);
int jobs_list(struct store *st, int (*fn)(void *arg, const struct job_row *j), void *arg);
/* Done, not removed frames of a job, in frame order. */
int job_frames(struct store *st, int64_t job, int (*fn)(void *arg, const struct frame_row *f), void *arg);
/* Frames that have a log file. */
int job_logs(struct store *st, int64_t job, int (*fn)(void *arg, const struct frame_row *f), void *arg);
int frame_get(struct store *st, int64_t id, struct frame_row *out);
int frame_by_number(struct store *st, int64_t job, uint32_t frame, struct frame_row *out);

/* Cancel a job that has not ended: frames still to do are cancelled. */
int job_cancel(struct store *st, int64_t job, const char *why);
/* Set (msg NULL: clear) the job's error line; written, and the change
 * announced (CH_JOBDIR), only when it differs from the stored one, so a
 * caller may repeat it every pass. */
int job_set_error(struct store *st, int64_t job, const char *msg);
/* A command written to out/JOB/control: 0, -EBUSY (not in this state),
 * -EINVAL (unknown). */
int job_control(struct store *st, int64_t job, const char *cmd, size_t len);
/* Removals under out/: -EBUSY while the job is active. */
int job_remove(struct store *st, int64_t job);
int job_remove_frame(struct store *st, int64_t frame_id);
int job_remove_video(struct store *st, int64_t job);
/* Check that a job allows removals (0) or not (-EBUSY). */
int job_removable(struct store *st, int64_t job);

/* Nodes, for nodes/ */
struct node_row {
	int64_t id;
	char name[128];
};
int nodes_list(struct store *st, int (*fn)(void *arg, const struct node_row *n), void *arg);
int node_by_name(struct store *st, const char *name, struct node_row *out);
int node_get(struct store *st, int64_t id, struct node_row *out);
#endif
