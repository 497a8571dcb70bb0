/*
 * store/runner_rows: the SQL behind a runner's scheduling and slots (see
 * runner_rows.h).  The two hot queries (a free slot's job, the job's next
 * frame) are kept prepared with the connection.
 */
#include "store/runner_rows.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void copy_text(char *dst, size_t sz, sqlite3_stmt *s, int col)
{
	const unsigned char *t = sqlite3_column_text(s, col);

	snprintf(dst, sz, "%s", t ? (const char *)t : "");
}

int store_job_spec(struct store *st, int64_t job, struct store_job_spec *js)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st,
			       "SELECT blend_sha, scene, engine, device, format, samples, res_w,"
			       " res_h, res_pct, timeout_ms, out_w, out_h FROM jobs WHERE id = ?",
			       &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	rc = -ENOENT;
	if (sqlite3_step(s) == SQLITE_ROW) {
		copy_text(js->sha, sizeof(js->sha), s, 0);
		copy_text(js->scene, sizeof(js->scene), s, 1);
		copy_text(js->engine_name, sizeof(js->engine_name), s, 2);
		copy_text(js->device, sizeof(js->device), s, 3);
		copy_text(js->format, sizeof(js->format), s, 4);
		js->samples = sqlite3_column_int(s, 5);
		js->res_w = sqlite3_column_int(s, 6);
		js->res_h = sqlite3_column_int(s, 7);
		js->res_pct = sqlite3_column_int(s, 8);
		js->timeout_ms = sqlite3_column_int64(s, 9);
		js->out_w = sqlite3_column_int(s, 10);
		js->out_h = sqlite3_column_int(s, 11);
		rc = 0;
	}
	sqlite3_finalize(s);
	return rc;
}

int store_frame_set_progress(struct store *st, int64_t frame, int64_t lease, double fraction)
{
	sqlite3_stmt *s;
	int rc = store_cached(st,
			      "UPDATE frames SET progress = ?1 WHERE id = ?2 AND lease = ?3"
			      " AND state = 'rendering'",
			      &s);

	if (rc)
		return rc;
	sqlite3_bind_double(s, 1, fraction < 0 ? 0 : fraction > 1 ? 1 : fraction);
	sqlite3_bind_int64(s, 2, frame);
	sqlite3_bind_int64(s, 3, lease);
	rc = store_errno(sqlite3_step(s));
	store_release(s);
	return rc;
}

int store_job_avg_secs(struct store *st, int64_t job, double *avg)
{
	sqlite3_stmt *s;
	int rc = store_cached(st,
			      "SELECT coalesce(avg(secs), 0) FROM frames WHERE job = ?"
			      " AND state = 'done' AND secs IS NOT NULL",
			      &s);

	*avg = 0;
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*avg = sqlite3_column_double(s, 0);
	rc = rc == SQLITE_ROW ? 0 : store_errno(rc);
	store_release(s);
	return rc;
}

int store_job_set_out_size(struct store *st, int64_t job, int w, int h)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, "UPDATE jobs SET out_w = ?, out_h = ? WHERE id = ?", &s);

	if (rc)
		return rc;
	sqlite3_bind_int(s, 1, w);
	sqlite3_bind_int(s, 2, h);
	sqlite3_bind_int64(s, 3, job);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	return rc;
}

int store_job_set_scene_fps(struct store *st, int64_t job, double fps)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, "UPDATE jobs SET scene_fps = ? WHERE id = ?", &s);

	if (rc)
		return rc;
	sqlite3_bind_double(s, 1, fps);
	sqlite3_bind_int64(s, 2, job);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	return rc;
}

/* The jobs a free slot may take from, and until when this node is blocked
 * for each. */
static const char jobs_with_queued_sql[] =
    "SELECT j.id, j.priority, coalesce((SELECT b.until FROM blocklist b"
    "   WHERE b.node = ?1 AND b.job = j.id), 0)"
    " FROM jobs j WHERE j.removed = 0 AND j.over_budget = 0 AND j.state IN ('waiting', 'rendering')"
    " AND EXISTS (SELECT 1 FROM frames f WHERE f.state = 'queued' AND f.job = j.id)"
    " ORDER BY j.priority DESC, j.id LIMIT 256";

int store_jobs_with_queued(struct store *st, int64_t node, struct store_job_fact *out, size_t max, size_t *n)
{
	sqlite3_stmt *s;
	int rc = store_cached(st, jobs_with_queued_sql, &s);

	*n = 0;
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, node);
	while (*n < max && sqlite3_step(s) == SQLITE_ROW) {
		out[*n].id = sqlite3_column_int64(s, 0);
		out[*n].priority = sqlite3_column_int(s, 1);
		out[*n].blocked_until = sqlite3_column_int64(s, 2);
		(*n)++;
	}
	store_release(s);
	return 0;
}

/* The job's next frame in frame order (the frames_by_state index). */
static const char next_frame_sql[] = "SELECT id, frame FROM frames WHERE state = 'queued' AND job = ?"
				     " ORDER BY frame LIMIT 1";

int store_frame_next_queued(struct store *st, int64_t job, int64_t *frame_id, uint32_t *frame_no)
{
	sqlite3_stmt *s;
	int rc = store_cached(st, next_frame_sql, &s);

	*frame_id = 0;
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	if (sqlite3_step(s) == SQLITE_ROW) {
		*frame_id = sqlite3_column_int64(s, 0);
		*frame_no = (uint32_t)sqlite3_column_int64(s, 1);
	}
	store_release(s);
	return *frame_id ? 0 : -ENOENT;
}

/*
 * Candidates and speeds in one query: the speeds come from a sample of
 * each candidate job's done frames, the first 256 by frame number (the
 * frames_by_state index gives them in order, so the scan is bounded
 * whatever the job's size): the job's average render time, the holder's
 * average and this node's average among them (frames.node is whoever
 * rendered a done frame, a winning duplicate included).  A frame still
 * leased (started IS NULL) is waiting; its time is progress_at, which
 * lease renewals move.
 */
int store_dup_candidates(struct store *st, int64_t node, struct store_dup_candidate *out, size_t max,
			 size_t *n)
{
	sqlite3_stmt *s;
	int rc = store_prepare(
	    st,
	    "WITH c AS (SELECT f.id, f.job, f.frame, f.node,"
	    "   coalesce(f.started, f.progress_at, 0) AS started, f.started IS NULL AS waiting"
	    "   FROM frames f JOIN jobs j ON j.id = f.job"
	    "   WHERE f.state IN ('leased', 'rendering') AND f.dup_node IS NULL AND f.node != ?1"
	    "   AND j.state = 'rendering' AND j.removed = 0 AND j.over_budget = 0 LIMIT 64),"
	    " d AS (SELECT x.job, x.node, x.secs FROM (SELECT DISTINCT job FROM c) cj"
	    "   JOIN frames x ON x.id IN (SELECT id FROM frames WHERE job = cj.job"
	    "     AND state = 'done' AND secs IS NOT NULL ORDER BY frame LIMIT 256)),"
	    " dj AS (SELECT job, avg(secs) AS secs FROM d GROUP BY job),"
	    " dn AS (SELECT job, node, avg(secs) AS secs FROM d GROUP BY job, node)"
	    " SELECT c.id, c.job, c.frame, c.started, c.waiting, coalesce(dj.secs, 0) * 1000,"
	    " coalesce(h.secs, 0) * 1000, coalesce(m.secs, 0) * 1000,"
	    " coalesce((SELECT b.until FROM blocklist b WHERE b.node = ?1 AND b.job = c.job), 0)"
	    " FROM c LEFT JOIN dj ON dj.job = c.job"
	    " LEFT JOIN dn h ON h.job = c.job AND h.node = c.node"
	    " LEFT JOIN dn m ON m.job = c.job AND m.node = ?1",
	    &s);

	*n = 0;
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, node);
	while (*n < max && sqlite3_step(s) == SQLITE_ROW) {
		struct store_dup_candidate *c = &out[*n];

		c->frame_id = sqlite3_column_int64(s, 0);
		c->job = sqlite3_column_int64(s, 1);
		c->frame = (uint32_t)sqlite3_column_int64(s, 2);
		c->started = sqlite3_column_int64(s, 3);
		c->waiting = sqlite3_column_int(s, 4);
		c->avg_ms = sqlite3_column_double(s, 5);
		c->holder_ms = sqlite3_column_double(s, 6);
		c->mine_ms = sqlite3_column_double(s, 7);
		c->blocked_until = sqlite3_column_int64(s, 8);
		(*n)++;
	}
	sqlite3_finalize(s);
	return 0;
}

int store_dup_claim(struct store *st, int64_t frame, int64_t node)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st,
			       "UPDATE frames SET dup_node = ?1 WHERE id = ?2 AND dup_node IS NULL"
			       " AND state IN ('leased', 'rendering')",
			       &s);
	int claimed = 0;

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, node);
	sqlite3_bind_int64(s, 2, frame);
	rc = store_errno(sqlite3_step(s));
	if (!rc)
		claimed = sqlite3_changes(st->db) == 1;
	sqlite3_finalize(s);
	if (rc)
		return rc;
	return claimed ? 0 : -ESTALE;
}

int store_dup_release(struct store *st, int64_t frame, int64_t node)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, "UPDATE frames SET dup_node = NULL WHERE id = ? AND dup_node = ?", &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, frame);
	sqlite3_bind_int64(s, 2, node);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	return rc;
}

static int frame_held(struct store *st, const char *sql, int64_t frame, int64_t key)
{
	sqlite3_stmt *s;
	int held = 0;

	if (store_prepare(st, sql, &s))
		return 0;
	sqlite3_bind_int64(s, 1, frame);
	sqlite3_bind_int64(s, 2, key);
	held = sqlite3_step(s) == SQLITE_ROW;
	sqlite3_finalize(s);
	return held;
}

int store_frame_lease_held(struct store *st, int64_t frame, int64_t lease)
{
	return frame_held(st,
			  "SELECT 1 FROM frames WHERE id = ?1 AND lease = ?2"
			  " AND state IN ('leased', 'rendering')",
			  frame, lease);
}

int store_frame_dup_held(struct store *st, int64_t frame, int64_t node)
{
	return frame_held(st,
			  "SELECT 1 FROM frames WHERE id = ?1 AND dup_node = ?2"
			  " AND state IN ('queued', 'leased', 'rendering', 'rendered')",
			  frame, node);
}

int store_frame_mark_logged(struct store *st, int64_t frame, int64_t job)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, "UPDATE frames SET logged = 1 WHERE id = ? AND logged = 0", &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, frame);
	rc = store_errno(sqlite3_step(s));
	if (!rc && sqlite3_changes(st->db))
		store_change(st, CH_JOBLOGS, job);
	sqlite3_finalize(s);
	return rc;
}

int store_blocklist_note(struct store *st, int64_t node, int64_t job, const char *why, int block_after,
			 int64_t until)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st,
			       "INSERT INTO blocklist(node, job, failures, reason) VALUES (?1, ?2, 1, ?3)"
			       " ON CONFLICT(node, job) DO UPDATE SET failures = failures + 1, reason = ?3,"
			       " until = CASE WHEN failures + 1 >= ?4 THEN ?5 ELSE until END",
			       &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, node);
	sqlite3_bind_int64(s, 2, job);
	sqlite3_bind_text(s, 3, why, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(s, 4, block_after);
	sqlite3_bind_int64(s, 5, until);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	return rc;
}
