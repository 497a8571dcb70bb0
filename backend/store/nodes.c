/*
 * store/nodes: the nodes table's SQL and the node state machine (see
 * nodes.h).  The machine's rules are node_check_edge(); the one UPDATE of
 * nodes.state is in store_node_transition().
 */
#include "store/nodes.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char *const node_state_names[NS__COUNT] = {
    "starting", "connecting", "idle", "rendering", "error", "offline",
};

#define EDGE(s) (1u << (s))

/* edges[from]: the states `from` may move to (the table in nodes.h). */
static const unsigned node_edges[NS__COUNT] = {
    [NS_STARTING] = EDGE(NS_CONNECTING) | EDGE(NS_OFFLINE),
    [NS_CONNECTING] = EDGE(NS_STARTING) | EDGE(NS_IDLE) | EDGE(NS_ERROR) | EDGE(NS_OFFLINE),
    [NS_IDLE] = EDGE(NS_STARTING) | EDGE(NS_RENDERING) | EDGE(NS_OFFLINE),
    [NS_RENDERING] = EDGE(NS_STARTING) | EDGE(NS_IDLE) | EDGE(NS_OFFLINE),
    [NS_ERROR] = EDGE(NS_STARTING) | EDGE(NS_CONNECTING) | EDGE(NS_IDLE) | EDGE(NS_OFFLINE),
    [NS_OFFLINE] = EDGE(NS_STARTING) | EDGE(NS_CONNECTING),
};

const char *node_state_name(enum node_state s)
{
	return (unsigned)s < NS__COUNT ? node_state_names[s] : "?";
}

int node_state_parse(const char *s)
{
	for (int i = 0; i < NS__COUNT; i++)
		if (!strcmp(s, node_state_names[i]))
			return i;
	return -EINVAL;
}

int node_check_edge(enum node_state from, enum node_state to)
{
	if ((unsigned)from >= NS__COUNT || (unsigned)to >= NS__COUNT)
		return -EINVAL;
	return node_edges[from] & EDGE(to) ? 0 : -EINVAL;
}

static const char transition_sql[] = "UPDATE nodes SET state = ?3 WHERE id = ?1 AND state = ?2";

/* The one UPDATE of nodes.state, guarded by the from-state's text. */
static int node_move(struct store *st, int64_t node, const char *from, enum node_state to)
{
	sqlite3_stmt *s;
	int rc, changed;

	rc = store_cached(st, transition_sql, &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, node);
	sqlite3_bind_text(s, 2, from, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, node_state_names[to], -1, SQLITE_STATIC);
	rc = store_errno(sqlite3_step(s));
	changed = sqlite3_changes(st->db);
	store_release(s);
	if (rc)
		return rc;
	if (changed != 1)
		return -ESTALE;
	store_change(st, CH_NODES, node);
	return 0;
}

int store_node_transition(struct store *st, int64_t node, enum node_state from, enum node_state to)
{
	if (node_check_edge(from, to))
		return -ESTALE;
	return node_move(st, node, node_state_names[from], to);
}

int store_node_state(struct store *st, int64_t node)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, "SELECT state FROM nodes WHERE id = ?", &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, node);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		rc = node_state_parse((const char *)sqlite3_column_text(s, 0));
	else
		rc = rc == SQLITE_DONE ? -ENOENT : store_errno(rc);
	sqlite3_finalize(s);
	return rc;
}

/* Bind the texts given (NULL leaves a parameter NULL), run, record the
 * change. */
static int node_exec(struct store *st, const char *sql, int64_t node, const char *a, int64_t n)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, sql, &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, node);
	if (a)
		sqlite3_bind_text(s, 2, a, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 3, n);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	store_change(st, CH_NODES, node);
	return rc;
}

int store_node_register(struct store *st, const char *name, const char *provider, const char *address,
			int slots, int64_t *id)
{
	sqlite3_stmt *s;
	int rc, state = -ENOENT;

	*id = 0;
	rc = store_begin(st);
	if (rc)
		return rc;
	rc = store_prepare(st,
			   "INSERT INTO nodes(name, provider, address, slots, state)"
			   " VALUES (?2, ?3, ?4, ?1, 'starting')"
			   " ON CONFLICT(name) DO UPDATE SET slots = ?1, provider = ?3, address = ?4,"
			   " error = NULL, removed = 0",
			   &s);
	if (rc)
		goto out_rollback;
	sqlite3_bind_int(s, 1, slots);
	sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, provider, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, address, -1, SQLITE_STATIC);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	if (rc)
		goto out_rollback;
	rc = store_prepare(st, "SELECT id, state FROM nodes WHERE name = ?", &s);
	if (rc)
		goto out_rollback;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW) {
		*id = sqlite3_column_int64(s, 0);
		state = node_state_parse((const char *)sqlite3_column_text(s, 1));
	}
	sqlite3_finalize(s);
	if (!*id) {
		rc = -EIO;
		goto out_rollback;
	}
	/* The jobs an earlier run's slots held are gone with them. */
	rc = store_prepare(st, "DELETE FROM slot_jobs WHERE node = ?", &s);
	if (rc)
		goto out_rollback;
	sqlite3_bind_int64(s, 1, *id);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	if (rc)
		goto out_rollback;
	/* A row found: it moves to starting whatever it was (nodes.h). */
	if (state != NS_STARTING) {
		rc = state < 0 ? -EIO : store_node_transition(st, *id, (enum node_state)state, NS_STARTING);
		if (rc)
			goto out_rollback;
	}
	rc = store_commit(st);
	if (rc)
		*id = 0;
	return rc;

out_rollback:
	store_rollback(st);
	*id = 0;
	return rc;
}

int store_node_set_error(struct store *st, int64_t node, const char *error)
{
	return node_exec(st, "UPDATE nodes SET error = ?2 WHERE id = ?1", node, error, 0);
}

int store_node_slot_job(struct store *st, int64_t node, int slot, const char *job_id)
{
	if (slot < 0)
		return node_exec(st, "DELETE FROM slot_jobs WHERE node = ?1", node, NULL, 0);
	if (!job_id || !*job_id)
		return node_exec(st, "DELETE FROM slot_jobs WHERE node = ?1 AND slot = ?3", node, NULL, slot);
	return node_exec(st,
			 "INSERT INTO slot_jobs(node, slot, job_id) VALUES (?1, ?3, ?2)"
			 " ON CONFLICT(node, slot) DO UPDATE SET job_id = ?2",
			 node, job_id, slot);
}

int store_node_set_slots(struct store *st, int64_t node, int slots)
{
	return node_exec(st, "UPDATE nodes SET slots = ?3 WHERE id = ?1", node, NULL, slots);
}

int store_node_count_done(struct store *st, int64_t node)
{
	return node_exec(st, "UPDATE nodes SET done = done + 1 WHERE id = ?1", node, NULL, 0);
}

int store_node_count_failed(struct store *st, int64_t node)
{
	return node_exec(st, "UPDATE nodes SET failed = failed + 1 WHERE id = ?1", node, NULL, 0);
}

int store_node_note_ready(struct store *st, int64_t node, const struct node_ready *nr)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st,
			       "UPDATE nodes SET device = coalesce(?1, device),"
			       " device_why = coalesce(?2, device_why), blender = coalesce(?3, blender),"
			       " gpus = ?4, gpu_names = ?5 WHERE id = ?6",
			       &s);

	if (rc)
		return rc;
	if (nr->device)
		sqlite3_bind_text(s, 1, nr->device, -1, SQLITE_TRANSIENT);
	if (nr->device_why)
		sqlite3_bind_text(s, 2, nr->device_why, -1, SQLITE_TRANSIENT);
	if (nr->blender)
		sqlite3_bind_text(s, 3, nr->blender, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(s, 4, nr->gpus);
	sqlite3_bind_text(s, 5, nr->gpu_names ? nr->gpu_names : "", -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 6, node);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	store_change(st, CH_NODES, node);
	return rc;
}

int store_node_set_device(struct store *st, int64_t node, const char *device)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, "UPDATE nodes SET device = ?1 WHERE id = ?2 AND device IS NOT ?1", &s);

	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, device, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 2, node);
	rc = store_errno(sqlite3_step(s));
	if (!rc && sqlite3_changes(st->db) > 0)
		store_change(st, CH_NODES, node);
	sqlite3_finalize(s);
	return rc;
}

/*
 * Every row matching `where` (one integer parameter ?1) that is not
 * offline goes offline, each through the guarded transition.  Rows are
 * taken in batches so the scan never runs beside its own updates.
 */
/*
 * Every row matching `where` (one integer parameter ?1) that is not
 * offline goes offline, each through the guarded UPDATE.  A row in a state
 * the machine does not know (written by hand or by an older version) goes
 * offline too, as it always did.  Rows are taken in batches so that the
 * scan never runs beside its own updates.
 */
static int nodes_to_offline(struct store *st, const char *where_sql, int64_t arg)
{
	char sql[256], states[64][16];
	int64_t ids[64];

	snprintf(sql, sizeof(sql), "SELECT id, state FROM nodes WHERE %s AND state != 'offline' LIMIT 64",
		 where_sql);
	/* Each pass moves at least one row or ends. */
	for (;;) {
		sqlite3_stmt *s;
		size_t n = 0, moved = 0;
		int rc = store_prepare(st, sql, &s);

		if (rc)
			return rc;
		sqlite3_bind_int64(s, 1, arg);
		while (n < 64 && sqlite3_step(s) == SQLITE_ROW) {
			const unsigned char *t = sqlite3_column_text(s, 1);

			ids[n] = sqlite3_column_int64(s, 0);
			snprintf(states[n], sizeof(states[n]), "%s", t ? (const char *)t : "");
			n++;
		}
		sqlite3_finalize(s);
		if (!n)
			return 0;
		for (size_t i = 0; i < n; i++) {
			int from = node_state_parse(states[i]);

			rc = from >= 0 ? store_node_transition(st, ids[i], (enum node_state)from, NS_OFFLINE)
				       : node_move(st, ids[i], states[i], NS_OFFLINE);
			if (rc == 0)
				moved++;
			else if (rc != -ESTALE)
				return rc;
		}
		if (!moved)
			return 0;
	}
}

int store_nodes_end_rental(struct store *st, int64_t rental)
{
	int own = sqlite3_get_autocommit(st->db); /* not inside the caller's transaction */
	sqlite3_stmt *s;
	int rc = own ? store_begin(st) : 0;

	if (rc)
		return rc;
	rc = store_prepare(st, "UPDATE nodes SET removed = 1 WHERE rental = ?", &s);
	if (rc)
		goto out_rollback;
	sqlite3_bind_int64(s, 1, rental);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	if (!rc)
		rc = nodes_to_offline(st, "rental = ?1", rental);
	if (rc)
		goto out_rollback;
	if (own)
		rc = store_commit(st);
	store_change(st, CH_NODES, 0);
	return rc;

out_rollback:
	if (own)
		store_rollback(st);
	return rc;
}

int store_nodes_all_offline(struct store *st)
{
	return nodes_to_offline(st, "?1 = ?1", 0);
}
