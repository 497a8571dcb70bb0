/*
 * jobs: rows behind out/, and the commands and removals a user makes there.
 * Commands only record the new state; the engine notices and acts (stops
 * workers of a cancelled job, starts a paused job's frames again).
 */
#include "jobs/jobs.h"
#include "jobs/intake.h"
#include "core/sidecar.h"
#include "core/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define JCOLS "id, name, state, format, coalesce(created, 0), coalesce(started, 0), coalesce(ended, 0)"

static void row_to_job(struct store *st, sqlite3_stmt *s, struct job_row *j)
{
	char path[4096];
	struct stat sb;
	int fmt;

	j->id = sqlite3_column_int64(s, 0);
	snprintf(j->name, sizeof(j->name), "%s", (const char *)sqlite3_column_text(s, 1));
	j->state = (enum job_state)job_state_parse((const char *)sqlite3_column_text(s, 2));
	snprintf(j->format, sizeof(j->format), "%s", (const char *)sqlite3_column_text(s, 3));
	fmt = SC_FORMAT_PNG;
	for (int f = SC_FORMAT_PNG; f <= SC_FORMAT_TIFF; f++)
		if (!strcmp(j->format, sc_format_name((enum sc_format)f)))
			fmt = f;
	snprintf(j->ext, sizeof(j->ext), "%s", sc_format_ext((enum sc_format)fmt));
	j->created = sqlite3_column_int64(s, 4);
	j->started = sqlite3_column_int64(s, 5);
	j->ended = sqlite3_column_int64(s, 6);
	store_path_video(st, j->id, path, sizeof(path));
	j->video_exists = stat(path, &sb) == 0;
}

struct job_fill {
	struct store *st;
	struct job_row *out;
};

static void fill_job(void *arg, sqlite3_stmt *row)
{
	struct job_fill *f = arg;

	row_to_job(f->st, row, f->out);
}

static int job_one(struct store *st, const char *sql, const char *name, int64_t id, struct job_row *out)
{
	struct job_fill f = {.st = st, .out = out};

	return store_one_row(st, sql, name, id, fill_job, &f);
}

int job_get(struct store *st, int64_t id, struct job_row *out)
{
	return job_one(st, "SELECT " JCOLS " FROM jobs WHERE id = ? AND removed = 0", NULL, id, out);
}

int job_by_name(struct store *st, const char *name, struct job_row *out)
{
	return job_one(st, "SELECT " JCOLS " FROM jobs WHERE name = ? AND removed = 0", name, 0, out);
}

int jobs_list(struct store *st, int (*fn)(void *arg, const struct job_row *j), void *arg)
{
	sqlite3_stmt *s;
	struct job_row j;
	int rc = store_prepare(st, "SELECT " JCOLS " FROM jobs WHERE removed = 0 ORDER BY id", &s);

	if (rc)
		return rc;
	while (sqlite3_step(s) == SQLITE_ROW) {
		row_to_job(st, s, &j);
		if (fn(arg, &j))
			break;
	}
	sqlite3_finalize(s);
	return 0;
}

#define FCOLS "id, job, frame, state, coalesce(size, 0), coalesce(mtime, 0), logged"

static void row_to_frame(sqlite3_stmt *s, struct frame_row *f)
{
	f->id = sqlite3_column_int64(s, 0);
	f->job = sqlite3_column_int64(s, 1);
	f->frame = (uint32_t)sqlite3_column_int64(s, 2);
	f->state = (enum frame_state)frame_state_parse((const char *)sqlite3_column_text(s, 3));
	f->size = sqlite3_column_int64(s, 4);
	f->mtime = sqlite3_column_int64(s, 5);
	f->logged = sqlite3_column_int(s, 6);
}

static int frames_where(struct store *st, const char *sql, int64_t job,
			int (*fn)(void *arg, const struct frame_row *f), void *arg)
{
	sqlite3_stmt *s;
	struct frame_row f;
	int rc = store_prepare(st, sql, &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	while (sqlite3_step(s) == SQLITE_ROW) {
		row_to_frame(s, &f);
		if (fn(arg, &f))
			break;
	}
	sqlite3_finalize(s);
	return 0;
}

int job_frames(struct store *st, int64_t job, int (*fn)(void *arg, const struct frame_row *f), void *arg)
{
	return frames_where(st,
			    "SELECT " FCOLS " FROM frames WHERE job = ? AND state = 'done'"
			    " AND removed = 0 ORDER BY frame",
			    job, fn, arg);
}

int job_logs(struct store *st, int64_t job, int (*fn)(void *arg, const struct frame_row *f), void *arg)
{
	return frames_where(st,
			    "SELECT " FCOLS " FROM frames WHERE job = ? AND logged = 1"
			    " ORDER BY frame",
			    job, fn, arg);
}

static int frame_one(struct store *st, const char *sql, int64_t a, int64_t b, struct frame_row *out)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, sql, &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, a);
	sqlite3_bind_int64(s, 2, b);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		row_to_frame(s, out);
		rc = 0;
	} else {
		rc = rc == SQLITE_DONE ? -ENOENT : store_errno(rc);
	}
	sqlite3_finalize(s);
	return rc;
}

int frame_get(struct store *st, int64_t id, struct frame_row *out)
{
	return frame_one(st, "SELECT " FCOLS " FROM frames WHERE id = ?1 AND ?2 = ?2", id, 0, out);
}

int frame_by_number(struct store *st, int64_t job, uint32_t frame, struct frame_row *out)
{
	return frame_one(st, "SELECT " FCOLS " FROM frames WHERE job = ?1 AND frame = ?2", job, frame, out);
}

int job_set_error(struct store *st, int64_t job, const char *msg)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, "UPDATE jobs SET error = ?1 WHERE id = ?2 AND error IS NOT ?1", &s);

	if (rc)
		return rc;
	if (msg)
		sqlite3_bind_text(s, 1, msg, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 2, job);
	rc = store_errno(sqlite3_step(s));
	if (!rc && sqlite3_changes(st->db))
		rc = store_change(st, CH_JOBDIR, job);
	sqlite3_finalize(s);
	return rc;
}

/* Apply one event to every frame of a job in one of the given states. */
static int frames_apply(struct store *st, int64_t job, const char *states, enum frame_event ev)
{
	char sql[256];
	sqlite3_stmt *s;
	int64_t *ids = NULL, *lease = NULL;
	size_t n = 0, cap = 0;
	int rc;

	snprintf(sql, sizeof(sql), "SELECT id, lease FROM frames WHERE job = ? AND state IN (%s)", states);
	rc = store_prepare(st, sql, &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	while (sqlite3_step(s) == SQLITE_ROW) {
		if (n == cap) {
			size_t ncap = cap ? 2 * cap : 256;
			int64_t *ni = realloc(ids, ncap * sizeof(*ni));
			int64_t *nl = ni ? realloc(lease, ncap * sizeof(*nl)) : NULL;

			if (ni)
				ids = ni;
			if (!nl) {
				rc = -ENOMEM;
				break;
			}
			lease = nl;
			cap = ncap;
		}
		ids[n] = sqlite3_column_int64(s, 0);
		lease[n++] = sqlite3_column_int64(s, 1);
	}
	sqlite3_finalize(s);
	for (size_t i = 0; i < n && !rc; i++) {
		int r = store_frame_transition(st, ids[i], lease[i], ev, NULL);

		if (r < 0 && r != -ESTALE)
			rc = r;
	}
	free(ids);
	free(lease);
	return rc;
}

#define M(s)        (1u << (s))
#define ACTIVE_MASK (M(JS_WAITING) | M(JS_PROVISIONING) | M(JS_RENDERING) | M(JS_ASSEMBLING) | M(JS_PAUSED))

static int cancel_locked(struct store *st, int64_t job, const char *why)
{
	int rc = job_set_state(st, job, ACTIVE_MASK, JS_CANCELLED, util_now_ms());

	if (rc)
		return rc;
	rc = frames_apply(st, job, "'queued','leased','rendering','rendered'", FE_CANCEL);
	if (!rc)
		rc = job_set_error(st, job, why);
	if (!rc)
		rc = intake_release_inputs(st, job);
	store_event(st, job, 0, 0, "job", why);
	return rc;
}

int job_cancel(struct store *st, int64_t job, const char *why)
{
	int own = sqlite3_get_autocommit(st->db);
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
		sqlite3_stmt *s;

		/* Back to what it was doing: the engine moves waiting on. */
		rc = store_prepare(st,
				   "UPDATE jobs SET state = coalesce(paused_from, 'waiting'),"
				   " paused_from = NULL WHERE id = ? AND state = 'paused' AND removed = 0",
				   &s);
		if (!rc) {
			sqlite3_bind_int64(s, 1, job);
			rc = store_errno(sqlite3_step(s));
			sqlite3_finalize(s);
			if (!rc && sqlite3_changes(st->db) == 0)
				rc = -ESTALE;
			if (!rc)
				store_change(st, CH_JOBDIR, job);
		}
	} else {
		sqlite3_stmt *s;
		int failed = 0;

		rc = store_prepare(st, "SELECT count(*) FROM frames WHERE job = ? AND state = 'failed'", &s);
		if (!rc) {
			sqlite3_bind_int64(s, 1, job);
			if (sqlite3_step(s) == SQLITE_ROW)
				failed = sqlite3_column_int(s, 0);
			sqlite3_finalize(s);
			rc = failed ? job_set_state(st, job, M(JS_FAILED) | M(JS_DONE), JS_RENDERING,
						    util_now_ms())
				    : -ESTALE;
		}
		if (!rc)
			rc = frames_apply(st, job, "'failed'", FE_RETRY);
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
	sqlite3_stmt *s;
	int rc;

	rc = store_begin(st);
	if (rc)
		return rc;
	rc = job_removable(st, job);
	if (rc)
		goto out_rollback;
	/* The row stays (history, and the name is free again since the
	 * unique index covers only rows not removed). */
	rc = store_prepare(st, "UPDATE jobs SET removed = 1 WHERE id = ?", &s);
	if (rc)
		goto out_rollback;
	sqlite3_bind_int64(s, 1, job);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
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
	sqlite3_stmt *s;
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
	rc = store_prepare(st, "UPDATE frames SET removed = 1 WHERE id = ?", &s);
	if (rc)
		goto out_rollback;
	sqlite3_bind_int64(s, 1, frame_id);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
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

static void fill_node(void *arg, sqlite3_stmt *row)
{
	struct node_row *out = arg;

	out->id = sqlite3_column_int64(row, 0);
	snprintf(out->name, sizeof(out->name), "%s", (const char *)sqlite3_column_text(row, 1));
}

static int node_one(struct store *st, const char *sql, const char *name, int64_t id, struct node_row *out)
{
	return store_one_row(st, sql, name, id, fill_node, out);
}

int node_by_name(struct store *st, const char *name, struct node_row *out)
{
	return node_one(st, "SELECT id, name FROM nodes WHERE name = ? AND removed = 0", name, 0, out);
}

int node_get(struct store *st, int64_t id, struct node_row *out)
{
	return node_one(st, "SELECT id, name FROM nodes WHERE id = ? AND removed = 0", NULL, id, out);
}

int nodes_list(struct store *st, int (*fn)(void *arg, const struct node_row *n), void *arg)
{
	sqlite3_stmt *s;
	struct node_row n;
	int rc = store_prepare(st, "SELECT id, name FROM nodes WHERE removed = 0 ORDER BY id", &s);

	if (rc)
		return rc;
	while (sqlite3_step(s) == SQLITE_ROW) {
		fill_node(&n, s);
		if (fn(arg, &n))
			break;
	}
	sqlite3_finalize(s);
	return 0;
}
