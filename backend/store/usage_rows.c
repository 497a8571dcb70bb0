/*
 * usage_rows: see usage_rows.h.
 */
#include "store/usage_rows.h"

#include <errno.h>
#include <string.h>

int store_usage_add(struct store *st, int64_t node, int64_t job, int64_t ms)
{
	static const char sql[] = "INSERT INTO usage(node, job, ms) VALUES (?1, ?2, ?3)"
				  " ON CONFLICT(node, job) DO UPDATE SET ms = ms + ?3";
	sqlite3_stmt *s;
	int rc;

	if (ms <= 0 || !node || !job)
		return 0;
	rc = store_cached(st, sql, &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, node);
	sqlite3_bind_int64(s, 2, job);
	sqlite3_bind_int64(s, 3, ms);
	rc = store_errno(sqlite3_step(s));
	store_release(s);
	return rc;
}

/* One rental row r's cost so far in USD; :now in ms.  Rows that never got
 * an order (an intent that failed) cost nothing. */
#define RENTAL_COST                                                              \
	"CASE WHEN r.order_id IS NULL THEN 0 ELSE coalesce(r.settled,"           \
	" r.price_day * r.usd_rate / 86400000.0 *"                               \
	" max(0, coalesce(r.ended_at, :now) - coalesce(r.created, r.intent_at))" \
	" + r.fee * r.usd_rate) END"

#define HELD "r.state IN ('booting', 'ready', 'releasing')"

/* Slot time on rented nodes, priced per slot. */
#define USAGE_COST "u.ms * r.price_day * r.usd_rate / 86400000.0 / max(1, n.slots)"

static void bind_named(sqlite3_stmt *s, const char *name, int64_t v)
{
	int idx = sqlite3_bind_parameter_index(s, name);

	if (idx)
		sqlite3_bind_int64(s, idx, v);
}

static double one_double(struct store *st, const char *sql, int64_t now, int64_t id)
{
	sqlite3_stmt *s;
	double v = 0;

	if (store_cached(st, sql, &s))
		return 0;
	bind_named(s, ":now", now);
	bind_named(s, ":id", id);
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_double(s, 0);
	store_release(s);
	return v;
}

int store_usage_farm(struct store *st, int64_t now, struct usage_farm *out)
{
	static const char spent_sql[] =
	    "SELECT coalesce(sum(" RENTAL_COST "), 0), coalesce(sum(CASE WHEN " HELD
	    " THEN r.price_day * r.usd_rate / 24.0 ELSE 0 END), 0),"
	    " coalesce(sum(CASE WHEN " HELD " THEN 1 ELSE 0 END), 0) FROM rentals r WHERE r.state != 'void'";
	static const char used_sql[] = "SELECT coalesce(sum(" USAGE_COST "), 0) FROM usage u"
				       " JOIN nodes n ON n.id = u.node JOIN rentals r ON r.id = n.rental";
	static const char fees_sql[] = "SELECT coalesce(sum(r.fee * r.usd_rate), 0) FROM rentals r"
				       " WHERE r.job IS NOT NULL AND r.order_id IS NOT NULL";
	sqlite3_stmt *s;

	memset(out, 0, sizeof(*out));
	if (store_cached(st, spent_sql, &s))
		return -EIO;
	bind_named(s, ":now", now);
	if (sqlite3_step(s) == SQLITE_ROW) {
		out->spent = sqlite3_column_double(s, 0);
		out->rate_h = sqlite3_column_double(s, 1);
		out->held = sqlite3_column_int(s, 2);
	}
	store_release(s);
	out->used = one_double(st, used_sql, now, 0) + one_double(st, fees_sql, now, 0);
	return 0;
}

int store_usage_job(struct store *st, int64_t job, int64_t now, struct usage_job *out)
{
	static const char used_sql[] = "SELECT coalesce(sum(" USAGE_COST "), 0) FROM usage u"
				       " JOIN nodes n ON n.id = u.node JOIN rentals r ON r.id = n.rental"
				       " WHERE u.job = :id";
	static const char fees_sql[] = "SELECT coalesce(sum(r.fee * r.usd_rate), 0) FROM rentals r"
				       " WHERE r.job = :id AND r.order_id IS NOT NULL";
	static const char rate_sql[] =
	    "SELECT coalesce(sum(r.price_day * r.usd_rate / 24.0 / max(1, n.slots)), 0)"
	    " FROM frames f JOIN nodes n ON n.id = f.node JOIN rentals r ON r.id = n.rental"
	    " WHERE f.job = :id AND f.state IN ('leased', 'rendering', 'rendered') AND " HELD;

	out->used = one_double(st, used_sql, now, job);
	out->fees = one_double(st, fees_sql, now, job);
	out->rate_h = one_double(st, rate_sql, now, job);
	return 0;
}

double store_rental_cost(struct store *st, int64_t rental, int64_t now)
{
	static const char sql[] = "SELECT " RENTAL_COST " FROM rentals r WHERE r.id = :id";

	return one_double(st, sql, now, rental);
}
