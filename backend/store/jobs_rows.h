/*
 * jobs_rows: the rows of jobs, their frames as out/ lists them, the nodes
 * as nodes/ lists them, the blocklist, and the one function that changes
 * a job's state (the job machine is described in store.h).  Every SQL
 * statement about these tables that a module above the store needs is a
 * function here.  Implemented in jobs_rows.c.
 *
 * Ownership: rows are copied into the caller's structs (fixed-size
 * fields, no pointers to free); callbacks get a row that lives only for
 * the call.  Callbacks return non-zero to stop the walk.
 */
#ifndef RENDERFS_STORE_JOBS_ROWS_H
#define RENDERFS_STORE_JOBS_ROWS_H

#include <stdint.h>
#include "store/store.h"

struct sidecar;

#define JOB_NAME_MAX 255

struct job_row {
	int64_t id;
	char name[JOB_NAME_MAX + 1];
	enum job_state state;
	char format[8];                  /* "png" ... */
	char ext[8];                     /* ".png" ... */
	int64_t created, started, ended; /* ms; 0 when unset */
	int video_exists;                /* the assembled video is stored */
	int64_t uid, gid;                /* its .blend's dropper; -1: unknown (older jobs) */
};

struct frame_row {
	int64_t id;
	int64_t job;
	uint32_t frame;
	enum frame_state state;
	int64_t size, mtime; /* done frames */
	int logged;
	int removed; /* removed from out/JOB (its log stays in logs/) */
};

/* Nodes, for nodes/ */
struct node_row {
	int64_t id;
	char name[128];
};

/* ---- the job machine ---- */

/* Change a job's state when it is in one of the states in from_mask
 * (bit 1<<state).  Returns 0, -ESTALE when it was not. */
int job_set_state(struct store *st, int64_t job, unsigned from_mask, enum job_state to, int64_t now);
/* resume: a paused job goes back to the state it was paused in (waiting
 * when unknown).  0, -ESTALE when it was not paused. */
int store_job_resume(struct store *st, int64_t job);

/* ---- reads (jobs and frames not removed; -ENOENT when none) ---- */

int job_get(struct store *st, int64_t id, struct job_row *out);
int job_by_name(struct store *st, const char *name, struct job_row *out);
int jobs_list(struct store *st, int (*fn)(void *arg, const struct job_row *j), void *arg);
/* Done, not removed frames of a job, in frame order. */
int job_frames(struct store *st, int64_t job, int (*fn)(void *arg, const struct frame_row *f), void *arg);
/* Frames that have a log file. */
int job_logs(struct store *st, int64_t job, int (*fn)(void *arg, const struct frame_row *f), void *arg);
int frame_get(struct store *st, int64_t id, struct frame_row *out);
int frame_by_number(struct store *st, int64_t job, uint32_t frame, struct frame_row *out);

int nodes_list(struct store *st, int (*fn)(void *arg, const struct node_row *n), void *arg);
int node_by_name(struct store *st, const char *name, struct node_row *out);
int node_get(struct store *st, int64_t id, struct node_row *out);

/* A job's frames counted by state (one pass over the frames_counts index). */
struct job_counts {
	int64_t queued;
	int64_t inflight; /* leased, rendering or rendered */
	int64_t done, failed, cancelled;
	int64_t total;
};
int store_job_counts(struct store *st, int64_t job, struct job_counts *out);

/* Jobs the engine moves on: waiting, rendering or assembling, by id. */
struct job_step {
	int64_t id;
	int video; /* a video is to be assembled */
	enum job_state state;
};
/* Up to max of them into out; returns how many, or -errno. */
int store_jobs_to_advance(struct store *st, struct job_step *out, int max);

/* The frame rate for the video: fps as the sidecar asked (0: the scene's)
 * and the scene's as a worker reported (0: unknown).  -ENOENT. */
int store_job_fps(struct store *st, int64_t job, double *fps, double *scene_fps);
/* Whether the provider stopped renting for the job's budget (0 or 1). */
int store_job_over_budget(struct store *st, int64_t job, int *over);

/* ---- writes ---- */

/* A new job from a checked drop: the job row and one queued frame row per
 * frame of sc, with the sidecar's settings copied into the row.  Call
 * inside a transaction.  *job set. */
struct job_insert {
	const char *name;         /* the out/ name, free */
	const char *drop_name;    /* NAME of queue/NAME.blend */
	const char *blend_sha;    /* the blob it renders */
	const char *sidecar_text; /* as dropped */
	const struct sidecar *sc; /* parsed */
	int video;                /* assemble a video */
	int64_t now;              /* ms */
	const char *facts;         /* NULL or "key: value\n" lines read from the .blend, escaped */
	const char *missing_files; /* NULL or one escaped line per file the drop lacks */
};
int store_job_insert(struct store *st, const struct job_insert *ji, int64_t *job);

/* Set (msg NULL: clear) the job's error line; written, and the change
 * announced (CH_JOBDIR), only when it differs from the stored one, so a
 * caller may repeat it every pass. */
int job_set_error(struct store *st, int64_t job, const char *msg);
/* Clear the error only when it says the job is waiting for a node (a node
 * is back).  No change is announced. */
int store_job_clear_waiting_error(struct store *st, int64_t job);
/* A frame of the job landed: a "disk full:" error line is no longer true. */
int store_job_clear_disk_full(struct store *st, int64_t job);
/* Hide a job (the row stays as history; its name is free again). */
int store_job_mark_removed(struct store *st, int64_t job);
/* Hide a frame from out/JOB. */
int store_frame_mark_removed(struct store *st, int64_t frame_id);

/* ---- the blocklist ---- */

/* A job ended: no node is blocked for it any more. */
int store_blocklist_clear_job(struct store *st, int64_t job);

/* Each node not removed, with how it stands for one job. */
struct node_for_job {
	char name[128];
	char state[16];
	char error[600];     /* its error line, "" when none (cut to fit) */
	int64_t block_until; /* blocked for the job until (ms), 0 when not */
	char reason[600];    /* why it was blocked, "" when not */
};
int store_nodes_for_job(struct store *st, int64_t job, void (*fn)(void *arg, const struct node_for_job *n),
			void *arg);

#endif
