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

/* ---- the facts of the frame choice (runner_rows.h) ---- */

int store_job_frame_span(struct store *st, int64_t job, int64_t *first, int64_t *last, size_t *queued)
{
	sqlite3_stmt *s;
	int rc = store_cached(st,
			      /* one min() or max() a query keeps SQLite's
			       * index shortcut for each */
			      "SELECT (SELECT min(frame) FROM frames WHERE job = ?1),"
			      " (SELECT max(frame) FROM frames WHERE job = ?1),"
			      " (SELECT count(*) FROM (SELECT 1 FROM frames"
			      "   WHERE state = 'queued' AND job = ?1 LIMIT 4096))",
			      &s);

	*first = *last = 0;
	*queued = 0;
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	rc = -ENOENT;
	if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) {
		*first = sqlite3_column_int64(s, 0);
		*last = sqlite3_column_int64(s, 1);
		*queued = (size_t)sqlite3_column_int64(s, 2);
		rc = 0;
	}
	store_release(s);
	return rc;
}

/* The done frames nearest to `frame` of job, below and at or above, into
 * f->d (repeats of the last one added are dropped). */
static int add_done_around(struct store *st, int64_t job, int64_t frame, struct store_pick_facts *f)
{
	static const char *const sql[2] = {
	    "SELECT frame, node, secs FROM frames WHERE state = 'done' AND job = ? AND frame < ?"
	    " AND secs > 0 ORDER BY frame DESC LIMIT 1",
	    "SELECT frame, node, secs FROM frames WHERE state = 'done' AND job = ? AND frame >= ?"
	    " AND secs > 0 ORDER BY frame LIMIT 1",
	};

	for (int k = 0; k < 2; k++) {
		sqlite3_stmt *s;
		int rc = store_cached(st, sql[k], &s);

		if (rc)
			return rc;
		sqlite3_bind_int64(s, 1, job);
		sqlite3_bind_int64(s, 2, frame);
		if (sqlite3_step(s) == SQLITE_ROW && f->nd < ARRAY_SIZE(f->d)) {
			int64_t fr = sqlite3_column_int64(s, 0);
			int dup = 0;

			for (size_t i = f->nd; i-- > 0 && !dup;)
				dup = f->d[i].frame == fr;
			if (!dup) {
				f->d[f->nd].frame = fr;
				f->d[f->nd].node = sqlite3_column_int64(s, 1);
				f->d[f->nd].secs = sqlite3_column_double(s, 2);
				f->nd++;
			}
		}
		store_release(s);
	}
	return 0;
}

static size_t node_index(struct store_pick_facts *f, int64_t node)
{
	for (size_t i = 0; i < f->nn; i++)
		if (f->nodes[i].node == node)
			return i;
	if (f->nn == ARRAY_SIZE(f->nodes))
		return SIZE_MAX;
	f->nodes[f->nn].node = node;
	f->nodes[f->nn].avg_secs = 0;
	f->nodes[f->nn].slots = 0;
	return f->nn++;
}

int store_pick_facts(struct store *st, int64_t job, int64_t now, const int64_t *targets, size_t nt,
		     struct store_pick_facts *f)
{
	sqlite3_stmt *s;
	int rc;

	memset(f, 0, sizeof(*f));
	rc = store_cached(st,
			  "SELECT id, frame FROM frames WHERE state = 'queued' AND job = ? AND frame >= ?"
			  " ORDER BY frame LIMIT 1",
			  &s);
	if (rc)
		return rc;
	/* No targets: the first queued frames in order, each found after
	 * the one before. */
	for (size_t t = 0; (targets ? t < nt : 1) && f->nq < ARRAY_SIZE(f->q); t++) {
		int dup = 0;

		sqlite3_reset(s);
		sqlite3_bind_int64(s, 1, job);
		sqlite3_bind_int64(s, 2, targets ? targets[t] : f->nq ? f->q[f->nq - 1].frame + 1 : INT64_MIN);
		if (sqlite3_step(s) != SQLITE_ROW) {
			if (!targets)
				break;
			continue;
		}
		for (size_t i = 0; i < f->nq && !dup; i++)
			dup = f->q[i].frame == sqlite3_column_int64(s, 1);
		if (!dup) {
			f->q[f->nq].id = sqlite3_column_int64(s, 0);
			f->q[f->nq].frame = sqlite3_column_int64(s, 1);
			f->nq++;
		}
	}
	store_release(s);
	/* sorted by number (insertion: nq <= STORE_PICK_TARGETS) */
	for (size_t i = 1; i < f->nq; i++)
		for (size_t j = i; j > 0 && f->q[j - 1].frame > f->q[j].frame; j--) {
			int64_t id = f->q[j].id, fr = f->q[j].frame;
			f->q[j] = f->q[j - 1];
			f->q[j - 1].id = id;
			f->q[j - 1].frame = fr;
		}

	rc = store_cached(st,
			  "SELECT frame, node, coalesce(started, 0) FROM frames WHERE state IN ('leased', 'rendering')"
			  " AND job = ? AND node IS NOT NULL LIMIT 64",
			  &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	while (f->nf < ARRAY_SIZE(f->f) && sqlite3_step(s) == SQLITE_ROW) {
		f->f[f->nf].frame = sqlite3_column_int64(s, 0);
		f->f[f->nf].node = sqlite3_column_int64(s, 1);
		f->f[f->nf].started = sqlite3_column_int64(s, 2);
		f->nf++;
	}
	store_release(s);

	for (size_t i = 0; i < f->nq; i++)
		if ((rc = add_done_around(st, job, f->q[i].frame, f)))
			return rc;
	for (size_t i = 0; i < f->nf; i++)
		if ((rc = add_done_around(st, job, f->f[i].frame, f)))
			return rc;

	rc = store_cached(st,
			  "WITH d AS (SELECT node, secs FROM frames WHERE state = 'done' AND job = ?1"
			  "   AND secs > 0 ORDER BY frame LIMIT 1024)"
			  " SELECT node, avg(secs), (SELECT avg(secs) FROM d) FROM d GROUP BY node",
			  &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	while (sqlite3_step(s) == SQLITE_ROW) {
		size_t k = node_index(f, sqlite3_column_int64(s, 0));

		if (k != SIZE_MAX)
			f->nodes[k].avg_secs = sqlite3_column_double(s, 1);
		f->avg_secs = sqlite3_column_double(s, 2);
	}
	store_release(s);

	rc = store_cached(st,
			  "SELECT id, slots FROM nodes WHERE removed = 0 AND state IN ('idle', 'rendering')"
			  " AND id NOT IN (SELECT node FROM blocklist WHERE job = ?1 AND until > ?2) LIMIT 64",
			  &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	sqlite3_bind_int64(s, 2, now);
	while (sqlite3_step(s) == SQLITE_ROW) {
		size_t k = node_index(f, sqlite3_column_int64(s, 0));
		int slots = sqlite3_column_int(s, 1);

		if (k != SIZE_MAX)
			f->nodes[k].slots = slots > 0 ? slots : 1;
	}
	store_release(s);
	return 0;
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
