/*
 * frames: the frame state machine.  Its rules live in frame_next_state();
 * store_frame_transition() turns each rule into one guarded UPDATE, so the
 * database is where a race is decided.  The diagram, the table and the
 * invariants are at the top of store.h; the functions that act on many
 * frames at once are in frames.h.
 */
#include "store/store.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const frame_state_names[FS__COUNT] = {
    "queued", "leased", "rendering", "rendered", "done", "failed", "cancelled",
};
static const char *const frame_event_names[FE__COUNT] = {
    "dispatch", "start",  "heartbeat", "rendered", "collected", "interrupt",
    "fail",     "cancel", "retry",     "abandon",  "won",
};

const char *frame_state_name(enum frame_state s)
{
	return (unsigned)s < FS__COUNT ? frame_state_names[s] : "?";
}

const char *frame_event_name(enum frame_event e)
{
	return (unsigned)e < FE__COUNT ? frame_event_names[e] : "?";
}

int frame_state_parse(const char *s)
{
	for (int i = 0; i < FS__COUNT; i++)
		if (!strcmp(s, frame_state_names[i]))
			return i;
	return -EINVAL;
}

int frame_next_state(enum frame_state from, enum frame_event ev, int has_attempts_left)
{
	int inflight = from == FS_LEASED || from == FS_RENDERING || from == FS_RENDERED;

	switch (ev) {
	case FE_DISPATCH: return from == FS_QUEUED ? FS_LEASED : -EINVAL;
	case FE_START: return from == FS_LEASED ? FS_RENDERING : -EINVAL;
	case FE_HEARTBEAT: return from == FS_LEASED || from == FS_RENDERING ? (int)from : -EINVAL;
	case FE_RENDERED: return from == FS_RENDERING ? FS_RENDERED : -EINVAL;
	case FE_COLLECTED: return from == FS_RENDERED ? FS_DONE : -EINVAL;
	case FE_INTERRUPT: return inflight ? FS_QUEUED : -EINVAL;
	case FE_FAIL:
		if (!inflight)
			return -EINVAL;
		return has_attempts_left ? FS_QUEUED : FS_FAILED;
	case FE_CANCEL: return inflight || from == FS_QUEUED ? FS_CANCELLED : -EINVAL;
	case FE_RETRY: return from == FS_FAILED ? FS_QUEUED : -EINVAL;
	case FE_ABANDON: return from == FS_QUEUED ? FS_FAILED : -EINVAL;
	case FE_WON: return inflight ? FS_DONE : -EINVAL;
	case FE__COUNT: break;
	}
	return -EINVAL;
}

/*
 * The one place frame rows change state.  The WHERE clause is the guard:
 * the state the event leaves from, and the caller's lease.  FE_FAIL decides
 * between queued and failed inside the same statement, from the row's own
 * attempts and its job's retries, so no read-then-write race exists.
 */
int store_frame_transition(struct store *st, int64_t frame_id, int64_t lease, enum frame_event ev,
			   struct frame_move *m)
{
	static const char *const sql[FE__COUNT] = {
	    [FE_DISPATCH] = "UPDATE frames SET state = 'leased', lease = lease + 1, node = :node,"
			    " slot = :slot, lease_until = :until, started = NULL, progress_at = :now,"
			    " progress = NULL, error = NULL WHERE id = :id AND state = 'queued' RETURNING state, job, lease",
	    [FE_START] =
		"UPDATE frames SET state = 'rendering', started = :now, progress_at = :now,"
		" lease_until = :until"
		" WHERE id = :id AND state = 'leased' AND lease = :lease RETURNING state, job, lease",
	    [FE_HEARTBEAT] = "UPDATE frames SET lease_until = :until, progress_at = :now"
			     " WHERE id = :id AND state IN ('leased', 'rendering') AND lease = :lease "
			     "RETURNING state, job, lease",
	    [FE_RENDERED] =
		"UPDATE frames SET state = 'rendered', secs = :secs"
		" WHERE id = :id AND state = 'rendering' AND lease = :lease RETURNING state, job, lease",
	    [FE_COLLECTED] = "UPDATE frames SET state = 'done', size = :size, mtime = :mtime,"
			     " error = NULL, removed = 0, dup_node = NULL WHERE id = :id AND state = "
			     "'rendered' AND lease = :lease RETURNING state, job, lease",
	    [FE_INTERRUPT] = "UPDATE frames SET state = 'queued', interrupts = interrupts + 1,"
			     " node = NULL, slot = NULL, lease_until = NULL"
			     " WHERE id = :id AND state IN ('leased', 'rendering', 'rendered') AND lease = "
			     ":lease RETURNING state, job, lease",
	    [FE_FAIL] =
		"UPDATE frames SET attempts = attempts + 1, error = :error,"
		" state = CASE WHEN attempts + 1 < 1 + (SELECT retries FROM jobs WHERE jobs.id = frames.job)"
		"   THEN 'queued' ELSE 'failed' END,"
		" node = NULL, slot = NULL, lease_until = NULL"
		" WHERE id = :id AND state IN ('leased', 'rendering', 'rendered') AND lease = :lease "
		"RETURNING state, job, lease",
	    [FE_CANCEL] = "UPDATE frames SET state = 'cancelled', node = NULL, slot = NULL,"
			  " lease_until = NULL, dup_node = NULL WHERE id = :id AND state IN"
			  " ('queued', 'leased', 'rendering', 'rendered') RETURNING state, job, lease",
	    [FE_RETRY] = "UPDATE frames SET state = 'queued', attempts = 0, error = NULL"
			 " WHERE id = :id AND state = 'failed' RETURNING state, job, lease",
	    [FE_ABANDON] = "UPDATE frames SET state = 'failed', error = :error WHERE id = :id AND state = "
			   "'queued' RETURNING state, job, lease",
	    [FE_WON] = "UPDATE frames SET state = 'done', lease = lease + 1, node = :node, size = :size, "
		       "secs = :secs,"
		       " mtime = :mtime, error = NULL, removed = 0, dup_node = NULL"
		       " WHERE id = :id AND state IN ('leased', 'rendering', 'rendered') RETURNING state, "
		       "job, lease",
	};
	sqlite3_stmt *s;
	int rc, idx;

	if ((unsigned)ev >= FE__COUNT)
		return -EINVAL;
	rc = store_cached(st, sql[ev], &s);
	if (rc)
		return rc;
#define BIND_I64(name, v)                                    \
	do {                                                 \
		idx = sqlite3_bind_parameter_index(s, name); \
		if (idx)                                     \
			sqlite3_bind_int64(s, idx, (v));     \
	} while (0)
	BIND_I64(":id", frame_id);
	BIND_I64(":lease", lease);
	BIND_I64(":now", m ? m->now : util_now_ms());
	if (m) {
		BIND_I64(":node", m->node);
		BIND_I64(":slot", m->slot);
		BIND_I64(":until", m->lease_until);
		BIND_I64(":size", m->size);
		BIND_I64(":mtime", m->mtime);
		idx = sqlite3_bind_parameter_index(s, ":secs");
		if (idx)
			sqlite3_bind_double(s, idx, m->secs);
		idx = sqlite3_bind_parameter_index(s, ":error");
		if (idx && m->error)
			sqlite3_bind_text(s, idx, m->error, -1, SQLITE_TRANSIENT);
	}
#undef BIND_I64
	/* RETURNING: one row when the guard let the change through, none
	 * when the caller lost a race. */
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		int64_t job = sqlite3_column_int64(s, 1);
		int state = frame_state_parse((const char *)sqlite3_column_text(s, 0));

		if (m)
			m->lease_out = sqlite3_column_int64(s, 2);
		rc = sqlite3_step(s);
		store_release(s);
		if (rc != SQLITE_DONE)
			return store_errno(rc);
		if (ev == FE_COLLECTED || ev == FE_WON)
			store_change(st, CH_JOBDIR, job);
		if (ev == FE_FAIL || ev == FE_COLLECTED)
			store_change(st, CH_JOBLOGS, job);
		return ev == FE_HEARTBEAT ? 0 : state;
	}
	store_release(s);
	return rc == SQLITE_DONE ? -ESTALE : store_errno(rc);
}

/* ---- many frames at once ---- */

int store_frames_apply(struct store *st, int64_t job, unsigned state_mask, enum frame_event ev,
		       struct frame_move *m)
{
	char in[160] = "", sql[256];
	sqlite3_stmt *s;
	int64_t *ids = NULL, *lease = NULL;
	size_t n = 0, cap = 0;
	int rc;

	for (int i = 0; i < FS__COUNT; i++) {
		size_t l = strlen(in);

		if (state_mask & (1u << i))
			snprintf(in + l, sizeof(in) - l, "%s'%s'", l ? "," : "", frame_state_names[i]);
	}
	if (!in[0])
		return -EINVAL;
	snprintf(sql, sizeof(sql), "SELECT id, lease FROM frames WHERE job = ? AND state IN (%s)", in);
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
		int r = store_frame_transition(st, ids[i], lease[i], ev, m);

		if (r < 0 && r != -ESTALE)
			rc = r;
	}
	free(ids);
	free(lease);
	return rc;
}

int store_frames_lease_expired(struct store *st, int64_t now, int64_t *ids, int64_t *leases, int max)
{
	sqlite3_stmt *s;
	int n = 0, rc;

	rc = store_prepare(st,
			   "SELECT id, lease FROM frames WHERE state IN ('leased', 'rendering')"
			   " AND lease_until < ?1 LIMIT ?2",
			   &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, now);
	sqlite3_bind_int(s, 2, max);
	while (n < max && sqlite3_step(s) == SQLITE_ROW) {
		ids[n] = sqlite3_column_int64(s, 0);
		leases[n++] = sqlite3_column_int64(s, 1);
	}
	sqlite3_finalize(s);
	return n;
}

int store_frames_requeue_inflight(struct store *st)
{
	sqlite3_stmt *s;
	int rc, n;

	rc = store_prepare(st,
			   "UPDATE frames SET state = 'queued', interrupts = interrupts + 1,"
			   " node = NULL, slot = NULL, lease_until = NULL"
			   " WHERE state IN ('leased', 'rendering', 'rendered')",
			   &s);
	if (rc)
		return rc;
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	if (rc)
		return rc;
	n = sqlite3_changes(st->db);
	rc = store_exec(st, "UPDATE frames SET dup_node = NULL WHERE dup_node IS NOT NULL");
	return rc ? rc : n;
}

int store_frames_inflight(struct store *st, int64_t job, struct frame_inflight *out, size_t max, size_t *n)
{
	sqlite3_stmt *s;
	int rc;

	*n = 0;
	rc = store_cached(st,
			  "SELECT frame, state, progress FROM frames WHERE job = ?"
			  " AND state IN ('leased', 'rendering', 'rendered') ORDER BY frame",
			  &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	while (*n < max && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct frame_inflight *f = &out[(*n)++];
		const char *state = (const char *)sqlite3_column_text(s, 1);
		double p = sqlite3_column_type(s, 2) == SQLITE_NULL ? -1 : sqlite3_column_double(s, 2);

		f->frame = (uint32_t)sqlite3_column_int64(s, 0);
		/* Rendered: only the transfer is left. */
		if (state && !strcmp(state, "rendered"))
			p = 1;
		f->fraction = p < 0 ? -1 : p > 1 ? 1 : p;
		f->started = state && strcmp(state, "leased");
	}
	store_release(s);
	return 0;
}
