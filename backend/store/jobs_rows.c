/*
 * jobs_rows: see jobs_rows.h.
 */
#include "store/jobs_rows.h"
#include "core/sidecar.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const job_state_names[JS__COUNT] = {
    "waiting", "provisioning", "rendering", "assembling", "done", "failed", "cancelled", "paused",
};

const char *job_state_name(enum job_state s)
{
	return (unsigned)s < JS__COUNT ? job_state_names[s] : "?";
}

int job_state_parse(const char *s)
{
	for (int i = 0; i < JS__COUNT; i++)
		if (!strcmp(s, job_state_names[i]))
			return i;
	return -EINVAL;
}

int job_state_active(enum job_state s)
{
	return s == JS_WAITING || s == JS_PROVISIONING || s == JS_RENDERING || s == JS_ASSEMBLING ||
	       s == JS_PAUSED;
}

int job_set_state(struct store *st, int64_t job, unsigned from_mask, enum job_state to, int64_t now)
{
	char in[256] = "";
	char sql[512];
	sqlite3_stmt *s;
	int rc;

	for (int i = 0; i < JS__COUNT; i++) {
		if (!(from_mask & (1u << i)))
			continue;
		size_t l = strlen(in);
		snprintf(in + l, sizeof(in) - l, "%s'%s'", l ? "," : "", job_state_names[i]);
	}
	if (!in[0])
		return -EINVAL;
	/* started is the first time work began; ended the last time it stopped. */
	snprintf(
	    sql, sizeof(sql),
	    "UPDATE jobs SET state = ?1,"
	    " started = CASE WHEN ?1 = 'rendering' THEN coalesce(started, ?3) ELSE started END,"
	    " ended = CASE WHEN ?1 IN ('done','failed','cancelled') THEN ?3 ELSE NULL END,"
	    /* waiting for a node is no longer true of a job that ended */
	    " error = CASE WHEN ?1 IN ('done','failed','cancelled') AND error LIKE 'waiting for a node%%'"
	    "  THEN NULL ELSE error END,"
	    " paused_from = CASE WHEN ?1 = 'paused' THEN state ELSE NULL END"
	    " WHERE id = ?2 AND removed = 0 AND state IN (%s)",
	    in);
	rc = store_prepare(st, sql, &s);
	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, job_state_names[to], -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, job);
	sqlite3_bind_int64(s, 3, now);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return store_errno(rc);
	if (sqlite3_changes(st->db) == 0)
		return -ESTALE;
	store_change(st, CH_JOBDIR, job);
	store_change(st, CH_JOBSTATE, job);
	return 0;
}

/* ---- reads ---- */

#define JCOLS                                                                                      \
	"id, name, state, format, coalesce(created, 0), coalesce(started, 0), coalesce(ended, 0)," \
	" coalesce(uid, -1), coalesce(gid, -1)"

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
	j->uid = sqlite3_column_int64(s, 7);
	j->gid = sqlite3_column_int64(s, 8);
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

#define FCOLS "id, job, frame, state, coalesce(size, 0), coalesce(mtime, 0), logged, removed"

static void row_to_frame(sqlite3_stmt *s, struct frame_row *f)
{
	f->id = sqlite3_column_int64(s, 0);
	f->job = sqlite3_column_int64(s, 1);
	f->frame = (uint32_t)sqlite3_column_int64(s, 2);
	f->state = (enum frame_state)frame_state_parse((const char *)sqlite3_column_text(s, 3));
	f->size = sqlite3_column_int64(s, 4);
	f->mtime = sqlite3_column_int64(s, 5);
	f->logged = sqlite3_column_int(s, 6);
	f->removed = sqlite3_column_int(s, 7);
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

/* ---- writes ---- */

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

int store_job_resume(struct store *st, int64_t job)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st,
			       "UPDATE jobs SET state = coalesce(paused_from, 'waiting'),"
			       " paused_from = NULL WHERE id = ? AND state = 'paused' AND removed = 0",
			       &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	if (!rc && sqlite3_changes(st->db) == 0)
		rc = -ESTALE;
	if (!rc)
		store_change(st, CH_JOBDIR, job);
	return rc;
}

int store_job_counts(struct store *st, int64_t job, struct job_counts *c)
{
	sqlite3_stmt *s;
	int rc;

	memset(c, 0, sizeof(*c));
	rc = store_prepare(st, "SELECT state, count(*) FROM frames WHERE job = ? GROUP BY state", &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int fs = frame_state_parse((const char *)sqlite3_column_text(s, 0));
		int64_t n = sqlite3_column_int64(s, 1);

		c->total += n;
		if (fs == FS_QUEUED)
			c->queued += n;
		else if (fs == FS_DONE)
			c->done += n;
		else if (fs == FS_FAILED)
			c->failed += n;
		else if (fs == FS_CANCELLED)
			c->cancelled += n;
		else
			c->inflight += n;
	}
	sqlite3_finalize(s);
	return store_errno(rc);
}

int store_jobs_to_advance(struct store *st, struct job_step *out, int max)
{
	sqlite3_stmt *s;
	int n = 0, rc;

	rc = store_prepare(st,
			   "SELECT id, video, state FROM jobs WHERE removed = 0"
			   " AND state IN ('waiting', 'rendering', 'assembling') ORDER BY id LIMIT ?",
			   &s);
	if (rc)
		return rc;
	sqlite3_bind_int(s, 1, max);
	while (n < max && sqlite3_step(s) == SQLITE_ROW) {
		out[n].id = sqlite3_column_int64(s, 0);
		out[n].video = sqlite3_column_int(s, 1);
		out[n++].state = (enum job_state)job_state_parse((const char *)sqlite3_column_text(s, 2));
	}
	sqlite3_finalize(s);
	return n;
}

int store_job_fps(struct store *st, int64_t job, double *fps, double *scene_fps)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, "SELECT fps, scene_fps FROM jobs WHERE id = ?", &s);

	*fps = *scene_fps = 0;
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*fps = sqlite3_column_double(s, 0);
		*scene_fps = sqlite3_column_double(s, 1);
	}
	sqlite3_finalize(s);
	return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : store_errno(rc);
}

int store_job_over_budget(struct store *st, int64_t job, int *over)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, "SELECT over_budget FROM jobs WHERE id = ?", &s);

	*over = 0;
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*over = sqlite3_column_int(s, 0) != 0;
	sqlite3_finalize(s);
	return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : store_errno(rc);
}

int store_job_insert(struct store *st, const struct job_insert *ji, int64_t *job)
{
	const struct sidecar *sc = ji->sc;
	sqlite3_stmt *s;
	int rc;

	rc = store_prepare(
	    st,
	    "INSERT INTO jobs(name, drop_name, blend_sha, sidecar, scene, engine, device, samples,"
	    " res_w, res_h, res_pct, format, video, fps, retries, timeout_ms, priority, budget,"
	    " nframes, created, clore_nodes, clore_gpu, clore_min_vram, clore_max_price, clore_spot,"
	    " facts, missing_files)"
	    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
	    &s);
	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, ji->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, ji->drop_name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, ji->blend_sha, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, ji->sidecar_text, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 5, sc->scene, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, sc_engine_name(sc->engine), -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 7, sc_device_name(sc->device), -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 8, sc->samples);
	sqlite3_bind_int(s, 9, sc->res_w);
	sqlite3_bind_int(s, 10, sc->res_h);
	sqlite3_bind_int(s, 11, sc->res_pct);
	sqlite3_bind_text(s, 12, sc_format_name(sc->format), -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 13, ji->video);
	sqlite3_bind_double(s, 14, sc->fps);
	sqlite3_bind_int(s, 15, sc->retries);
	sqlite3_bind_int64(s, 16, sc->timeout_s * 1000);
	sqlite3_bind_int(s, 17, sc->priority);
	sqlite3_bind_double(s, 18, sc->budget);
	sqlite3_bind_int64(s, 19, (int64_t)sc->nframes);
	sqlite3_bind_int64(s, 20, ji->now);
	sqlite3_bind_int(s, 21, sc->nodes);
	sqlite3_bind_text(s, 22, sc->gpu, -1, SQLITE_STATIC);
	sqlite3_bind_double(s, 23, sc->min_vram);
	sqlite3_bind_double(s, 24, sc->max_price);
	sqlite3_bind_int(s, 25, sc->spot);
	sqlite3_bind_text(s, 26, ji->facts ? ji->facts : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 27, ji->missing_files ? ji->missing_files : "", -1, SQLITE_STATIC);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	if (rc)
		return rc;
	*job = sqlite3_last_insert_rowid(st->db);

	rc = store_prepare(st, "INSERT INTO frames(job, frame) VALUES (?, ?)", &s);
	if (rc)
		return rc;
	for (size_t i = 0; i < sc->nframes && !rc; i++) {
		sqlite3_bind_int64(s, 1, *job);
		sqlite3_bind_int64(s, 2, sc->frames[i]);
		rc = store_errno(sqlite3_step(s));
		sqlite3_reset(s);
	}
	sqlite3_finalize(s);
	return rc;
}

int store_job_clear_waiting_error(struct store *st, int64_t job)
{
	sqlite3_stmt *s;
	int rc = store_prepare(
	    st, "UPDATE jobs SET error = NULL WHERE id = ? AND error LIKE 'waiting for a node%'", &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	return rc;
}

static int update_by_id(struct store *st, const char *sql, int64_t id)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, sql, &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, id);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	return rc;
}

int store_job_clear_disk_full(struct store *st, int64_t job)
{
	int rc =
	    update_by_id(st, "UPDATE jobs SET error = NULL WHERE id = ? AND error LIKE 'disk full:%'", job);

	if (!rc && sqlite3_changes(st->db) > 0)
		rc = store_change(st, CH_JOBDIR, job);
	return rc;
}

int store_job_mark_removed(struct store *st, int64_t job)
{
	return update_by_id(st, "UPDATE jobs SET removed = 1 WHERE id = ?", job);
}

int store_frame_mark_removed(struct store *st, int64_t frame_id)
{
	return update_by_id(st, "UPDATE frames SET removed = 1 WHERE id = ?", frame_id);
}

/* ---- the blocklist ---- */

int store_blocklist_clear_job(struct store *st, int64_t job)
{
	return update_by_id(st, "DELETE FROM blocklist WHERE job = ?", job);
}

static void copy_col(char *dst, size_t sz, sqlite3_stmt *s, int col)
{
	const unsigned char *t = sqlite3_column_text(s, col);

	snprintf(dst, sz, "%s", t ? (const char *)t : "");
}

int store_nodes_for_job(struct store *st, int64_t job, void (*fn)(void *arg, const struct node_for_job *n),
			void *arg)
{
	struct node_for_job n;
	sqlite3_stmt *s;
	int rc;

	rc = store_prepare(
	    st,
	    "SELECT n.name, n.state, coalesce(n.error, ''),"
	    " coalesce((SELECT b.until FROM blocklist b WHERE b.node = n.id AND b.job = ?1), 0),"
	    " coalesce((SELECT b.reason FROM blocklist b WHERE b.node = n.id AND b.job = ?1), '')"
	    " FROM nodes n WHERE n.removed = 0",
	    &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		copy_col(n.name, sizeof(n.name), s, 0);
		copy_col(n.state, sizeof(n.state), s, 1);
		copy_col(n.error, sizeof(n.error), s, 2);
		n.block_until = sqlite3_column_int64(s, 3);
		copy_col(n.reason, sizeof(n.reason), s, 4);
		fn(arg, &n);
	}
	sqlite3_finalize(s);
	return store_errno(rc);
}
