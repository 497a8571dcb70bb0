/*
 * clore_rows: the clore provider's queries on jobs, frames and nodes (see
 * clore_rows.h).
 */
#include "store/clore_rows.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Renting compares the count with the orders coming up, a few at most: a
 * job of a million frames must not cost a million-row count four times a
 * second. */
static const char queued_sql[] = "SELECT count(*) FROM (SELECT 1 FROM frames f JOIN jobs j ON j.id = f.job"
				 " WHERE f.state = 'queued' AND j.removed = 0 AND j.over_budget = 0"
				 " AND j.state IN ('waiting', 'rendering') LIMIT 1000)";
static const char top_job_sql[] =
    "SELECT j.id FROM jobs j WHERE j.removed = 0 AND j.over_budget = 0"
    " AND j.state IN ('waiting', 'rendering')"
    " AND EXISTS (SELECT 1 FROM frames f WHERE f.state = 'queued' AND f.job = j.id)"
    " ORDER BY j.priority DESC, j.id LIMIT 1";

int64_t store_clore_queued(struct store *st, int64_t *top_job)
{
	sqlite3_stmt *s;
	int64_t n = 0;
	int rc;

	*top_job = 0;
	rc = store_cached(st, queued_sql, &s);
	if (rc)
		return rc;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		n = sqlite3_column_int64(s, 0);
	store_release(s);
	if (rc != SQLITE_ROW)
		return store_errno(rc);
	if (!n)
		return 0;
	rc = store_cached(st, top_job_sql, &s);
	if (rc)
		return rc;
	if (sqlite3_step(s) == SQLITE_ROW)
		*top_job = sqlite3_column_int64(s, 0);
	store_release(s);
	return n;
}

int store_clore_queued_jobs(struct store *st, struct clore_queued_job *out, size_t cap)
{
	sqlite3_stmt *s;
	size_t k = 0;
	int rc = store_prepare(st,
			       "SELECT j.id, (SELECT count(*) FROM (SELECT 1 FROM frames f WHERE f.state = 'queued'"
			       "  AND f.job = j.id LIMIT 1000)) AS q FROM jobs j"
			       " WHERE j.removed = 0 AND j.over_budget = 0 AND j.state IN ('waiting', 'rendering')"
			       " AND q > 0 ORDER BY j.priority DESC, j.id LIMIT ?",
			       &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, (int64_t)cap);
	while (k < cap && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		out[k].job = sqlite3_column_int64(s, 0);
		out[k++].queued = sqlite3_column_int64(s, 1);
	}
	rc = k == cap || rc == SQLITE_DONE ? 0 : store_errno(rc);
	sqlite3_finalize(s);
	return rc ? rc : (int)k;
}

static void wish_fill(void *arg, sqlite3_stmt *s)
{
	struct clore_job_wish *w = arg;
	const char *g = (const char *)sqlite3_column_text(s, 1);

	w->nodes = sqlite3_column_int(s, 0);
	snprintf(w->gpu, sizeof(w->gpu), "%s", g ? g : "");
	w->min_vram = sqlite3_column_double(s, 2);
	w->max_price = sqlite3_column_double(s, 3);
	w->spot = sqlite3_column_int(s, 4);
}

int store_clore_job_wish(struct store *st, int64_t job, struct clore_job_wish *w)
{
	memset(w, 0, sizeof(*w));
	return store_one_row(st,
			     "SELECT clore_nodes, clore_gpu, clore_min_vram, clore_max_price, clore_spot"
			     " FROM jobs WHERE id = ?",
			     NULL, job, wish_fill, w);
}

int store_clore_gpu_times(struct store *st, int64_t job, struct clore_gpu_time *out, size_t cap)
{
	sqlite3_stmt *s;
	size_t k = 0;
	int rc;

	rc = store_prepare(st,
			   "SELECT r.gpu, avg(f.secs) FROM frames f JOIN nodes n ON n.id = f.node"
			   " JOIN rentals r ON r.id = n.rental WHERE f.job = ? AND f.state = 'done'"
			   " AND f.secs > 0 AND r.gpu != '' GROUP BY r.gpu",
			   &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	while (k < cap && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *g = (const char *)sqlite3_column_text(s, 0);

		snprintf(out[k].gpu, sizeof(out[k].gpu), "%s", g ? g : "");
		out[k++].secs = sqlite3_column_double(s, 1);
	}
	rc = k == cap || rc == SQLITE_DONE ? 0 : store_errno(rc);
	sqlite3_finalize(s);
	return rc ? rc : (int)k;
}

int store_clore_node_busy(struct store *st, int64_t node)
{
	sqlite3_stmt *s;
	int rc;

	rc = store_prepare(st,
			   "SELECT EXISTS (SELECT 1 FROM frames WHERE (node = ?1 OR dup_node = ?1)"
			   " AND state IN ('leased', 'rendering', 'rendered'))",
			   &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, node);
	rc = sqlite3_step(s);
	rc = rc == SQLITE_ROW ? !!sqlite3_column_int(s, 0) : store_errno(rc);
	sqlite3_finalize(s);
	return rc;
}

struct node_state_out {
	char *state, *err;
	size_t statesz, errsz;
};

static void node_state_fill(void *arg, sqlite3_stmt *s)
{
	struct node_state_out *o = arg;
	const char *state = (const char *)sqlite3_column_text(s, 0);
	const char *err = (const char *)sqlite3_column_text(s, 1);

	snprintf(o->state, o->statesz, "%s", state ? state : "");
	snprintf(o->err, o->errsz, "%s", err ? err : "");
}

int store_clore_node_state(struct store *st, int64_t node, char *state, size_t statesz, char *err,
			   size_t errsz)
{
	struct node_state_out o = {state, err, statesz, errsz};

	if (statesz)
		state[0] = '\0';
	if (errsz)
		err[0] = '\0';
	return store_one_row(st, "SELECT state, coalesce(error, '') FROM nodes WHERE id = ?", NULL, node,
			     node_state_fill, &o);
}

int store_clore_node_device(struct store *st, int64_t node, char *dev, size_t devsz, char *why,
			    size_t whysz)
{
	struct node_state_out o = {dev, why, devsz, whysz};

	if (devsz)
		dev[0] = '\0';
	if (whysz)
		why[0] = '\0';
	return store_one_row(st, "SELECT coalesce(device, ''), coalesce(device_why, '') FROM nodes WHERE id = ?",
			     NULL, node, node_state_fill, &o);
}

int store_clore_node_attach(struct store *st, int64_t node, int64_t rental, double price_h)
{
	sqlite3_stmt *s;
	int rc;

	rc = store_prepare(st,
			   "UPDATE nodes SET provider = 'clore', rental = ?1, price_h = ?2, removed = 0"
			   " WHERE id = ?3",
			   &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, rental);
	sqlite3_bind_double(s, 2, price_h);
	sqlite3_bind_int64(s, 3, node);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	return rc;
}

int store_clore_budget_jobs(struct store *st, struct clore_budget_job *out, size_t cap)
{
	sqlite3_stmt *s;
	size_t k = 0;
	int rc;

	rc = store_prepare(st,
			   "SELECT id, budget FROM jobs WHERE removed = 0 AND budget >= 0 AND over_budget = 0"
			   " AND state IN ('waiting', 'rendering', 'paused') ORDER BY id LIMIT ?",
			   &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, (int64_t)cap);
	while (k < cap && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		out[k].job = sqlite3_column_int64(s, 0);
		out[k++].budget = sqlite3_column_double(s, 1);
	}
	rc = k == cap || rc == SQLITE_DONE ? 0 : store_errno(rc);
	sqlite3_finalize(s);
	return rc ? rc : (int)k;
}

int store_clore_job_over_budget(struct store *st, int64_t job)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, "UPDATE jobs SET over_budget = 1 WHERE id = ?", &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	if (!rc)
		store_change(st, CH_NODES, 0);
	return rc;
}
