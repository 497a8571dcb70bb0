/*
 * jobs: what fs/ asks of jobs and their frames -- the control file's
 * commands and removals under out/.  The engine carries out what these
 * record (a cancelled job's workers are stopped by the engine, not here).
 * The rows behind out/ and nodes/ (job_get, jobs_list, job_frames,
 * frame_get, nodes_list ...) and job_set_error() are read and written by
 * store/jobs_rows.h, included here for fs/ and the backend.
 */
#ifndef RENDERFS_JOBS_H
#define RENDERFS_JOBS_H

#include <stdint.h>
#include "store/store.h"
#include "store/jobs_rows.h"

/* Cancel a job that has not ended: frames still to do are cancelled and
 * its inputs leave queue/.  Runs in the caller's transaction when one is
 * open, else in its own.  0, -ESTALE when the job had ended. */
int job_cancel(struct store *st, int64_t job, const char *why);
/* A command written to out/JOB/control: 0, -EBUSY (not in this state),
 * -EINVAL (unknown). */
int job_control(struct store *st, int64_t job, const char *cmd, size_t len);
/* Removals under out/: -EBUSY while the job is active. */
int job_remove(struct store *st, int64_t job);
int job_remove_frame(struct store *st, int64_t frame_id);
int job_remove_video(struct store *st, int64_t job);
/* Check that a job allows removals (0) or not (-EBUSY). */
int job_removable(struct store *st, int64_t job);

#endif
