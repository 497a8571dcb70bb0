/*
 * rentals: the rental state machine and the `rentals` rows (see
 * rentals.h).  rental_next_state() is the table; store_rental_transition()
 * turns each edge into one UPDATE guarded by the caller's from-state, so
 * the database decides a race.
 */
#include "store/rentals.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const rental_state_names[RS__COUNT] = {
    "intent", "booting", "ready", "releasing", "ended", "void",
};
static const char *const rental_event_names[RE__COUNT] = {
    "found", "void", "up", "cancel_failed", "end",
};

const char *rental_state_name(enum rental_state s)
{
	return (unsigned)s < RS__COUNT ? rental_state_names[s] : "?";
}

const char *rental_event_name(enum rental_event e)
{
	return (unsigned)e < RE__COUNT ? rental_event_names[e] : "?";
}

int rental_state_parse(const char *s)
{
	for (int i = 0; s && i < RS__COUNT; i++)
		if (!strcmp(s, rental_state_names[i]))
			return i;
	return -EINVAL;
}

/* Each event: the states it leaves (a mask), the state it reaches, and the
 * UPDATE that makes it.  Every statement ends in the same guard. */
static const struct {
	unsigned from;
	enum rental_state to;
	const char *sql;
} edges[RE__COUNT] = {
    [RE_FOUND] = {RENTAL_BIT(RS_INTENT), RS_BOOTING,
		  "UPDATE rentals SET state = 'booting', order_id = :order,"
		  " created = coalesce(created, :created), fee = :fee,"
		  " price_day = CASE WHEN :price > 0 THEN :price ELSE price_day END,"
		  " currency = CASE WHEN currency = '' THEN :currency ELSE currency END"
		  " WHERE id = :id AND state = :from"},
    [RE_VOID] = {RENTAL_BIT(RS_INTENT), RS_VOID,
		 "UPDATE rentals SET state = 'void', end_reason = :reason WHERE id = :id AND state = :from"},
    [RE_UP] = {RENTAL_BIT(RS_BOOTING) | RENTAL_BIT(RS_READY), RS_READY,
	       "UPDATE rentals SET state = 'ready', node = :node, online_at = coalesce(online_at, :now)"
	       " WHERE id = :id AND state = :from"},
    [RE_CANCEL_FAILED] = {RENTAL_BIT(RS_BOOTING) | RENTAL_BIT(RS_READY) | RENTAL_BIT(RS_RELEASING),
			  RS_RELEASING,
			  "UPDATE rentals SET state = 'releasing', end_reason = :reason"
			  " WHERE id = :id AND state = :from"},
    [RE_END] = {RENTAL_BIT(RS_BOOTING) | RENTAL_BIT(RS_READY) | RENTAL_BIT(RS_RELEASING), RS_ENDED,
		"UPDATE rentals SET state = 'ended', ended_at = coalesce(ended_at, :now),"
		" end_reason = :reason WHERE id = :id AND state = :from"},
};

int rental_next_state(enum rental_state from, enum rental_event ev)
{
	if ((unsigned)from >= RS__COUNT || (unsigned)ev >= RE__COUNT)
		return -EINVAL;
	if (!(edges[ev].from & RENTAL_BIT(from)))
		return -EINVAL;
	return edges[ev].to;
}

static void bind_int(sqlite3_stmt *s, const char *name, int64_t v)
{
	int idx = sqlite3_bind_parameter_index(s, name);

	if (idx)
		sqlite3_bind_int64(s, idx, v);
}

static void bind_double(sqlite3_stmt *s, const char *name, double v)
{
	int idx = sqlite3_bind_parameter_index(s, name);

	if (idx)
		sqlite3_bind_double(s, idx, v);
}

static void bind_text(sqlite3_stmt *s, const char *name, const char *v)
{
	int idx = sqlite3_bind_parameter_index(s, name);

	if (idx)
		sqlite3_bind_text(s, idx, v ? v : "", -1, SQLITE_STATIC);
}

int store_rental_transition(struct store *st, int64_t rental, enum rental_state from, enum rental_event ev,
			    const struct rental_move *m)
{
	static const struct rental_move none;
	sqlite3_stmt *s;
	int to = rental_next_state(from, ev), rc;

	if (to < 0)
		return to;
	if (!m)
		m = &none;
	rc = store_prepare(st, edges[ev].sql, &s);
	if (rc)
		return rc;
	bind_int(s, ":id", rental);
	bind_text(s, ":from", rental_state_names[from]);
	bind_int(s, ":now", m->now ? m->now : util_now_ms());
	bind_int(s, ":order", m->order_id);
	bind_int(s, ":created", m->created);
	bind_double(s, ":fee", m->fee);
	bind_double(s, ":price", m->price_day);
	bind_text(s, ":currency", m->currency);
	bind_int(s, ":node", m->node);
	bind_text(s, ":reason", m->reason);
	rc = store_errno(sqlite3_step(s));
	if (!rc && sqlite3_changes(st->db) == 0)
		rc = -ESTALE;
	sqlite3_finalize(s);
	if (rc)
		return rc;
	store_change(st, CH_NODES, 0);
	return to;
}

int store_rental_intent(struct store *st, const struct rental_intent *in, int64_t *id)
{
	sqlite3_stmt *s;
	int rc;

	*id = 0;
	rc = store_prepare(st,
			   "INSERT INTO rentals(server, intent_at, state, job, spot, currency, price_day,"
			   " usd_rate, gpu, gpus, score)"
			   " VALUES (?1, ?2, 'intent', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
			   &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, in->server);
	sqlite3_bind_int64(s, 2, in->intent_at);
	sqlite3_bind_int64(s, 3, in->job);
	sqlite3_bind_int(s, 4, in->spot);
	sqlite3_bind_text(s, 5, in->currency ? in->currency : "", -1, SQLITE_STATIC);
	sqlite3_bind_double(s, 6, in->price_day);
	sqlite3_bind_double(s, 7, in->usd_rate);
	sqlite3_bind_text(s, 8, in->gpu ? in->gpu : "", -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 9, in->gpus);
	sqlite3_bind_double(s, 10, in->score);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	if (!rc)
		*id = sqlite3_last_insert_rowid(st->db);
	return rc;
}

static void row_fill(struct rental_row *r, sqlite3_stmt *s)
{
	const char *state = (const char *)sqlite3_column_text(s, 4);
	const char *cur = (const char *)sqlite3_column_text(s, 8);
	const char *gpu = (const char *)sqlite3_column_text(s, 11);
	int k = rental_state_parse(state);

	memset(r, 0, sizeof(*r));
	r->id = sqlite3_column_int64(s, 0);
	r->server = sqlite3_column_int64(s, 1);
	r->order_id = sqlite3_column_int64(s, 2);
	r->intent_at = sqlite3_column_int64(s, 3);
	r->state = k >= 0 ? (enum rental_state)k : RS_VOID; /* the schema's CHECK allows no other */
	r->job = sqlite3_column_int64(s, 5);
	r->created = sqlite3_column_int64(s, 6);
	r->node = sqlite3_column_int64(s, 7);
	snprintf(r->currency, sizeof(r->currency), "%s", cur ? cur : "");
	r->price_day = sqlite3_column_double(s, 9);
	r->usd_rate = sqlite3_column_double(s, 10);
	snprintf(r->gpu, sizeof(r->gpu), "%s", gpu ? gpu : "");
	r->gpus = sqlite3_column_int(s, 12);
	r->spot = sqlite3_column_int(s, 13);
}

int store_rentals_open(struct store *st, struct rental_row **out, size_t *n)
{
	struct rental_row *rows = NULL;
	sqlite3_stmt *s;
	size_t cap = 0, k = 0;
	int rc;

	*out = NULL;
	*n = 0;
	rc = store_prepare(st,
			   "SELECT id, server, coalesce(order_id, 0), intent_at, state, coalesce(job, 0),"
			   " coalesce(created, 0), coalesce(node, 0), currency, price_day, usd_rate,"
			   " gpu, gpus, spot"
			   " FROM rentals WHERE state IN ('intent', 'booting', 'ready', 'releasing')"
			   " ORDER BY id",
			   &s);
	if (rc)
		return rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (k == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct rental_row *nr = realloc(rows, ncap * sizeof(*nr));

			if (!nr) {
				rc = -ENOMEM;
				goto out_rows;
			}
			rows = nr;
			cap = ncap;
		}
		row_fill(&rows[k++], s);
	}
	rc = rc == SQLITE_DONE ? 0 : store_errno(rc);
	if (rc)
		goto out_rows;
	sqlite3_finalize(s);
	*out = rows;
	*n = k;
	return 0;

out_rows:
	sqlite3_finalize(s);
	free(rows);
	return rc;
}

int store_rental_count(struct store *st, unsigned mask)
{
	sqlite3_stmt *s;
	int rc, n = 0;

	rc = store_cached(st, "SELECT state, count(*) FROM rentals GROUP BY state", &s);
	if (rc)
		return rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int k = rental_state_parse((const char *)sqlite3_column_text(s, 0));

		if (k >= 0 && (mask & RENTAL_BIT(k)))
			n += sqlite3_column_int(s, 1);
	}
	rc = rc == SQLITE_DONE ? 0 : store_errno(rc);
	store_release(s);
	return rc ? rc : n;
}

int store_rental_order_claimed(struct store *st, int64_t order)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, "SELECT 1 FROM rentals WHERE order_id = ?", &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, order);
	rc = sqlite3_step(s);
	rc = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : store_errno(rc);
	sqlite3_finalize(s);
	return rc;
}

int store_rental_set_price(struct store *st, int64_t rental, double price_day, double price_h)
{
	static const char *const sql[] = {
	    "UPDATE rentals SET price_day = ?2 WHERE id = ?1",
	    "UPDATE nodes SET price_h = ?2 WHERE rental = ?1",
	};
	int rc = store_begin(st);

	if (rc)
		return rc;
	for (size_t i = 0; i < ARRAY_SIZE(sql) && !rc; i++) {
		sqlite3_stmt *s;

		rc = store_prepare(st, sql[i], &s);
		if (rc)
			break;
		sqlite3_bind_int64(s, 1, rental);
		sqlite3_bind_double(s, 2, i == 0 ? price_day : price_h);
		rc = store_errno(sqlite3_step(s));
		sqlite3_finalize(s);
	}
	if (rc) {
		store_rollback(st);
		return rc;
	}
	rc = store_change(st, CH_NODES, 0);
	return rc ? (store_rollback(st), rc) : store_commit(st);
}

int store_rentals_unsettled(struct store *st, struct rental_unsettled *out, size_t cap)
{
	sqlite3_stmt *s;
	size_t k = 0;
	int rc;

	rc = store_prepare(st,
			   "SELECT order_id, usd_rate FROM rentals WHERE state = 'ended' AND settled IS NULL"
			   " AND order_id IS NOT NULL ORDER BY id LIMIT ?",
			   &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, (int64_t)cap);
	while (k < cap && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		out[k].order_id = sqlite3_column_int64(s, 0);
		out[k++].usd_rate = sqlite3_column_double(s, 1);
	}
	rc = k == cap || rc == SQLITE_DONE ? 0 : store_errno(rc);
	sqlite3_finalize(s);
	return rc ? rc : (int)k;
}

int store_rental_settle(struct store *st, int64_t order_id, double usd)
{
	sqlite3_stmt *s;
	int rc =
	    store_prepare(st, "UPDATE rentals SET settled = ?1 WHERE order_id = ?2 AND state = 'ended'", &s);

	if (rc)
		return rc;
	sqlite3_bind_double(s, 1, usd);
	sqlite3_bind_int64(s, 2, order_id);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	return rc;
}
