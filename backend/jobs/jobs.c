/*
 * jobs: the commands and removals a user makes under out/.  Commands only
 * record the new state; the engine notices and acts (stops workers of a
 * cancelled job, starts a paused job's frames again).  Every row is read
 * and written through the store (store/jobs_rows.h, store/frames.h,
 * store/queue_rows.h).
 */
#include "jobs/jobs.h"
#include "store/frames.h"
#include "store/queue_rows.h"
#include "core/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define M(s)         (1u << (s))
#define FS_MASK_TODO (M(FS_QUEUED) | M(FS_LEASED) | M(FS_RENDERING) | M(FS_RENDERED))
#define ACTIVE_MASK  (M(JS_WAITING) | M(JS_PROVISIONING) | M(JS_RENDERING) | M(JS_ASSEMBLING) | M(JS_PAUSED))

static int cancel_locked(struct store *st, int64_t job, const char *why)
{
	int rc = job_set_state(st, job, ACTIVE_MASK, JS_CANCELLED, util_now_ms());

	if (rc)
		return rc;
	rc = store_frames_apply(st, job, FS_MASK_TODO, FE_CANCEL, NULL);
	if (!rc)
		rc = job_set_error(st, job, why);
	if (!rc)
		rc = store_release_inputs(st, job);
	store_event(st, job, 0, 0, "job", why);
	return rc;
}

int job_cancel(struct store *st, int64_t job, const char *why)
{
	int own = !store_in_transaction(st);
	int rc;

	if (own && (rc = store_begin(st)))
		return rc;
	rc = cancel_locked(st, job, why);
	if (!own)
		return rc;
	if (rc) {
		store_rollback(st);
		return rc;
	}
	return store_commit(st);
}

int job_control(struct store *st, int64_t job, const char *cmd, size_t len)
{
	char word[32];
	size_t n = 0;
	int rc;

	while (len && isspace((unsigned char)cmd[len - 1]))
		len--;
	while (len && isspace((unsigned char)*cmd)) {
		cmd++;
		len--;
	}
	if (len == 0 || len >= sizeof(word))
		return -EINVAL;
	for (; n < len; n++)
		word[n] = (char)tolower((unsigned char)cmd[n]);
	word[n] = '\0';
	if (strcmp(word, "cancel") && strcmp(word, "pause") && strcmp(word, "resume") &&
	    strcmp(word, "retry-failed"))
		return -EINVAL;

	rc = store_begin(st);
	if (rc)
		return rc;
	if (!strcmp(word, "cancel")) {
		rc = cancel_locked(st, job, "cancelled by a control command");
	} else if (!strcmp(word, "pause")) {
		rc = job_set_state(st, job, M(JS_WAITING) | M(JS_PROVISIONING) | M(JS_RENDERING), JS_PAUSED,
				   util_now_ms());
	} else if (!strcmp(word, "resume")) {
		/* Back to what it was doing: the engine moves waiting on. */
		rc = store_job_resume(st, job);
	} else {
		struct job_counts c;

		rc = store_job_counts(st, job, &c);
		if (!rc)
			rc = c.failed ? job_set_state(st, job, M(JS_FAILED) | M(JS_DONE), JS_RENDERING,
						      util_now_ms())
				      : -ESTALE;
		if (!rc)
			rc = store_frames_apply(st, job, M(FS_FAILED), FE_RETRY, NULL);
		if (!rc)
			rc = job_set_error(st, job, NULL);
	}
	if (rc) {
		store_rollback(st);
		return rc == -ESTALE ? -EBUSY : rc;
	}
	store_event(st, job, 0, 0, "control", word);
	return store_commit(st);
}

int job_removable(struct store *st, int64_t job)
{
	struct job_row j;
	int rc = job_get(st, job, &j);

	if (rc)
		return rc;
	return job_state_active(j.state) ? -EBUSY : 0;
}

int job_remove(struct store *st, int64_t job)
{
	char dir[4096];
	int rc;

	rc = store_begin(st);
	if (rc)
		return rc;
	rc = job_removable(st, job);
	if (rc)
		goto out_rollback;
	/* The row stays (history, and the name is free again since the
	 * unique index covers only rows not removed). */
	rc = store_job_mark_removed(st, job);
	if (rc)
		goto out_rollback;
	store_change(st, CH_OUT, 0);
	rc = store_commit(st);
	if (rc)
		return rc;
	store_path_job(st, job, dir, sizeof(dir));
	util_rmtree(dir);
	return 0;

out_rollback:
	store_rollback(st);
	return rc;
}

int job_remove_frame(struct store *st, int64_t frame_id)
{
	struct frame_row f;
	struct job_row j;
	char path[4096];
	int rc;

	rc = store_begin(st);
	if (rc)
		return rc;
	rc = frame_get(st, frame_id, &f);
	if (!rc)
		rc = job_removable(st, f.job);
	if (!rc)
		rc = job_get(st, f.job, &j);
	if (rc)
		goto out_rollback;
	rc = store_frame_mark_removed(st, frame_id);
	if (rc)
		goto out_rollback;
	store_change(st, CH_JOBDIR, f.job);
	rc = store_commit(st);
	if (!rc) {
		store_path_frame(st, f.job, f.frame, j.ext, path, sizeof(path));
		unlink(path);
	}
	return rc;

out_rollback:
	store_rollback(st);
	return rc;
}

int job_remove_video(struct store *st, int64_t job)
{
	char path[4096];
	int rc = job_removable(st, job);

	if (rc)
		return rc;
	store_path_video(st, job, path, sizeof(path));
	if (unlink(path) < 0)
		return -errno;
	store_change(st, CH_JOBDIR, job);
	return 0;
}
