/*
 * status_rows: see status_rows.h.
 */
#include "store/status_rows.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dup_col(sqlite3_stmt *s, int col)
{
	const unsigned char *t = sqlite3_column_text(s, col);

	return t ? strdup((const char *)t) : NULL;
}

static void copy_col(char *dst, size_t sz, sqlite3_stmt *s, int col)
{
	const unsigned char *t = sqlite3_column_text(s, col);

	snprintf(dst, sz, "%s", t ? (const char *)t : "");
}

int store_view_capacity(struct store *st, struct view_capacity *out)
{
	sqlite3_stmt *s;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = store_prepare(st,
			   "SELECT count(*), coalesce(sum(gpus), 0), coalesce(sum(slots), 0)"
			   " FROM nodes WHERE removed = 0 AND state IN ('idle', 'rendering', 'starting')",
			   &s);
	if (rc)
		return rc;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		out->nodes = sqlite3_column_int(s, 0);
		out->gpus = sqlite3_column_int(s, 1);
		out->slots = sqlite3_column_int(s, 2);
	}
	sqlite3_finalize(s);
	return store_errno(rc);
}

static const char frame_counts_sql[] =
    "SELECT f.state, count(*), coalesce(sum(f.secs), 0), count(f.secs), coalesce(sum(f.interrupts), 0),"
    " coalesce(sum(CASE WHEN f.state = 'failed' THEN max(f.attempts - 1, 0) ELSE f.attempts END), 0),"
    " (SELECT n.name FROM nodes n WHERE n.id = f.node)"
    " FROM frames f WHERE f.job = ? GROUP BY f.state, f.node ORDER BY f.state, f.node";

int store_view_job(struct store *st, int64_t job, struct view_job *v)
{
	sqlite3_stmt *s;
	size_t cap = 0;
	int rc;

	memset(v, 0, sizeof(*v));
	rc = store_prepare(st,
			   "SELECT name, state, coalesce(started, 0), coalesce(ended, 0), error,"
			   " video, priority, nframes, facts, missing_files FROM jobs WHERE id = ? AND removed = 0",
			   &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	if (sqlite3_step(s) != SQLITE_ROW) {
		sqlite3_finalize(s);
		return -ENOENT;
	}
	copy_col(v->name, sizeof(v->name), s, 0);
	copy_col(v->state, sizeof(v->state), s, 1);
	v->started = sqlite3_column_int64(s, 2);
	v->ended = sqlite3_column_int64(s, 3);
	v->error = dup_col(s, 4);
	v->video = sqlite3_column_int(s, 5);
	v->priority = sqlite3_column_int64(s, 6);
	v->frames = sqlite3_column_int64(s, 7);
	v->facts = dup_col(s, 8);
	v->missing_files = dup_col(s, 9);
	sqlite3_finalize(s);

	/* One pass over the job's frames gives every count, the render time,
	 * the interruptions and retries, and the frames each node did. */
	rc = store_cached(st, frame_counts_sql, &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	while (sqlite3_step(s) == SQLITE_ROW) {
		int fs = frame_state_parse((const char *)sqlite3_column_text(s, 0));
		int64_t n = sqlite3_column_int64(s, 1);

		v->interrupted += sqlite3_column_int64(s, 4);
		v->retried += sqlite3_column_int64(s, 5);
		switch (fs) {
		case FS_QUEUED: v->queued += n; break;
		case FS_DONE:
			v->done += n;
			v->done_secs += sqlite3_column_double(s, 2);
			v->timed += sqlite3_column_int64(s, 3);
			if (sqlite3_column_type(s, 6) != SQLITE_NULL && v->nper_node < VIEW_PER_NODE) {
				copy_col(v->per_node[v->nper_node].name, sizeof(v->per_node[0].name), s, 6);
				v->per_node[v->nper_node++].done = n;
			}
			break;
		case FS_FAILED: v->failed += n; break;
		case FS_CANCELLED: v->cancelled += n; break;
		default: v->inflight += n; break;
		}
	}
	store_release(s);

	rc = store_prepare(st, "SELECT frame FROM frames WHERE job = ? AND state = 'failed' ORDER BY frame",
			   &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	while (sqlite3_step(s) == SQLITE_ROW) {
		if (v->nmissing == cap) {
			uint32_t *nm = realloc(v->missing, (cap = cap ? cap * 2 : 64) * sizeof(*nm));

			if (!nm)
				break;
			v->missing = nm;
		}
		v->missing[v->nmissing++] = (uint32_t)sqlite3_column_int64(s, 0);
	}
	sqlite3_finalize(s);

	/* Waiting while servers are being rented for it. */
	if (!strcmp(v->state, "waiting") &&
	    !store_prepare(st,
			   "SELECT EXISTS (SELECT 1 FROM rentals WHERE job = ?"
			   " AND state IN ('intent', 'booting'))",
			   &s)) {
		sqlite3_bind_int64(s, 1, job);
		if (sqlite3_step(s) == SQLITE_ROW)
			v->renting = sqlite3_column_int(s, 0) != 0;
		sqlite3_finalize(s);
	}
	return 0;
}

void store_view_job_free(struct view_job *v)
{
	free(v->error);
	free(v->missing);
	free(v->facts);
	free(v->missing_files);
	v->facts = v->missing_files = NULL;
	v->error = NULL;
	v->missing = NULL;
	v->nmissing = 0;
}

int store_view_node(struct store *st, int64_t id, struct view_node *n)
{
	sqlite3_stmt *s;
	int rc;

	memset(n, 0, sizeof(*n));
	rc = store_prepare(st,
			   "SELECT name, provider, address, gpus, gpu_names, device, device_why,"
			   " blender, state, slots, price_h, done, failed, error FROM nodes WHERE id = ?",
			   &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, id);
	if (sqlite3_step(s) != SQLITE_ROW) {
		sqlite3_finalize(s);
		return -ENOENT;
	}
#define COPY(field, col) copy_col(n->field, sizeof(n->field), s, col)
	COPY(name, 0);
	COPY(provider, 1);
	COPY(address, 2);
	n->gpus = sqlite3_column_int(s, 3);
	COPY(gpu_names, 4);
	COPY(device, 5);
	COPY(device_why, 6);
	COPY(blender, 7);
	COPY(state, 8);
#undef COPY
	n->slots = sqlite3_column_int(s, 9);
	n->price_h = sqlite3_column_double(s, 10);
	n->done = sqlite3_column_int64(s, 11);
	n->failed = sqlite3_column_int64(s, 12);
	n->error = dup_col(s, 13);
	sqlite3_finalize(s);
	if (!store_prepare(st, "SELECT slot, job_id FROM slot_jobs WHERE node = ? ORDER BY slot LIMIT 64",
			   &s)) {
		sqlite3_bind_int64(s, 1, id);
		while (sqlite3_step(s) == SQLITE_ROW && n->nslot_jobs < 64) {
			n->slot_jobs[n->nslot_jobs].slot = sqlite3_column_int(s, 0);
			copy_col(n->slot_jobs[n->nslot_jobs].job_id, sizeof(n->slot_jobs[0].job_id), s, 1);
			n->nslot_jobs++;
		}
		sqlite3_finalize(s);
	}
	if (!strcmp(n->provider, "clore") &&
	    !store_prepare(st,
			   "SELECT r.id, coalesce(r.order_id, 0), r.server, r.spot FROM rentals r"
			   " JOIN nodes n ON n.rental = r.id WHERE n.id = ?",
			   &s)) {
		sqlite3_bind_int64(s, 1, id);
		if (sqlite3_step(s) == SQLITE_ROW) {
			n->rented = 1;
			n->rental = sqlite3_column_int64(s, 0);
			n->order = sqlite3_column_int64(s, 1);
			n->server = sqlite3_column_int64(s, 2);
			n->spot = sqlite3_column_int(s, 3);
		}
		sqlite3_finalize(s);
	}
	return 0;
}

void store_view_node_free(struct view_node *v)
{
	free(v->error);
	v->error = NULL;
}

int store_view_orders(struct store *st, struct view_order **out, size_t *np)
{
	sqlite3_stmt *s;
	size_t n = 0, cap = 0;
	int rc;

	*out = NULL;
	*np = 0;
	rc = store_prepare(
	    st,
	    "SELECT r.id, r.order_id, r.server, r.state, r.spot, r.price_day * r.usd_rate / 24.0,"
	    " coalesce((SELECT name FROM nodes WHERE rental = r.id), '')"
	    " FROM rentals r WHERE r.order_id IS NOT NULL"
	    " AND r.state IN ('booting', 'ready', 'releasing') ORDER BY r.id",
	    &s);
	if (rc)
		return rc;
	while (sqlite3_step(s) == SQLITE_ROW) {
		struct view_order *o;

		if (n == cap) {
			struct view_order *no = realloc(*out, (cap = cap ? cap * 2 : 8) * sizeof(*no));

			if (!no)
				break;
			*out = no;
		}
		o = &(*out)[n++];
		o->rental = sqlite3_column_int64(s, 0);
		o->order = sqlite3_column_int64(s, 1);
		o->server = sqlite3_column_int64(s, 2);
		copy_col(o->state, sizeof(o->state), s, 3);
		o->spot = sqlite3_column_int(s, 4);
		o->price_h = sqlite3_column_double(s, 5);
		copy_col(o->node, sizeof(o->node), s, 6);
	}
	sqlite3_finalize(s);
	*np = n;
	return 0;
}
