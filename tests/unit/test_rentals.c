/*
 * test_rentals: the rental state machine (the pure table and the guarded
 * UPDATEs on real rows of a real SQLite store in a temporary directory),
 * a lost race between two callers, and the rows the provider reads back.
 * A plain program: one line per failed check, exit status 1 if any failed.
 */
#include "store/rentals.h"
#include "store/store.h"
#include "core/util.h"
#include "check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp_root[] = "/tmp/test_rentals.XXXXXX";

/* The table as the header draws it: to-state per (from, event), -1 where
 * there is no edge.  Written out again here so that a change to the
 * machine must change the test too. */
static const int expect[RS__COUNT][RE__COUNT] = {
    /*               FOUND       VOID     UP        CANCEL_FAILED  END */
    [RS_INTENT] = {RS_BOOTING, RS_VOID, -1, -1, -1},
    [RS_BOOTING] = {-1, -1, RS_READY, RS_RELEASING, RS_ENDED},
    [RS_READY] = {-1, -1, RS_READY, RS_RELEASING, RS_ENDED},
    [RS_RELEASING] = {-1, -1, -1, RS_RELEASING, RS_ENDED},
    [RS_ENDED] = {-1, -1, -1, -1, -1},
    [RS_VOID] = {-1, -1, -1, -1, -1},
};

static struct store *open_fresh(const char *name)
{
	struct store *st = NULL;
	char dir[4200];
	int rc;

	snprintf(dir, sizeof(dir), "%s/%s", tmp_root, name);
	if (mkdir(dir, 0700) < 0) {
		perror("test_rentals: mkdir");
		exit(2);
	}
	rc = store_open(dir, &st);
	if (rc) {
		fprintf(stderr, "test_rentals: store_open %s: %s\n", dir, strerror(-rc));
		exit(2);
	}
	return st;
}

/* The row's state as a rental_state, -ENOENT when there is no row. */
static int row_state(struct store *st, int64_t id)
{
	sqlite3_stmt *s;
	int k = -ENOENT;

	if (sqlite3_prepare_v2(st->db, "SELECT state FROM rentals WHERE id = ?", -1, &s, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_int64(s, 1, id);
	if (sqlite3_step(s) == SQLITE_ROW)
		k = rental_state_parse((const char *)sqlite3_column_text(s, 0));
	sqlite3_finalize(s);
	return k;
}

static const char *name_of(int s)
{
	return s < 0 ? strerror(-s) : rental_state_name((enum rental_state)s);
}

/* A fresh intent row on server. */
static int64_t new_intent(struct store *st, int64_t server)
{
	struct rental_intent in = {
	    .server = server,
	    .intent_at = util_now_ms(),
	    .job = 1,
	    .currency = "CLORE-Blockchain",
	    .price_day = 10,
	    .usd_rate = 0.02,
	    .gpu = "RTX 4090",
	    .gpus = 1,
	};
	int64_t id = 0;
	int rc = store_rental_intent(st, &in, &id);

	CHECK(rc == 0 && id > 0, "store_rental_intent: %s, id %lld", strerror(-rc), (long long)id);
	return id;
}

/* Shortest path of legal events from intent to state; the events are
 * written into path, their count returned (-1: unreachable). */
static int path_to(enum rental_state to, enum rental_event *path)
{
	switch (to) {
	case RS_INTENT: return 0;
	case RS_BOOTING: path[0] = RE_FOUND; return 1;
	case RS_READY: path[0] = RE_FOUND, path[1] = RE_UP; return 2;
	case RS_RELEASING: path[0] = RE_FOUND, path[1] = RE_CANCEL_FAILED; return 2;
	case RS_ENDED: path[0] = RE_FOUND, path[1] = RE_END; return 2;
	case RS_VOID: path[0] = RE_VOID; return 1;
	default: return -1;
	}
}

static int64_t next_order = 1000;

/* A row brought to state s through legal transitions. */
static int64_t row_in(struct store *st, enum rental_state s)
{
	enum rental_event path[4];
	int64_t id = new_intent(st, 7);
	enum rental_state at = RS_INTENT;
	int n = path_to(s, path);

	for (int i = 0; i < n; i++) {
		struct rental_move m = {.order_id = next_order++, .created = util_now_ms(), .node = 3};
		int rc = store_rental_transition(st, id, at, path[i], &m);

		CHECK(rc >= 0, "setup %s --%s-->: %s", rental_state_name(at), rental_event_name(path[i]),
		      name_of(rc));
		if (rc < 0)
			break;
		at = (enum rental_state)rc;
	}
	CHECK(row_state(st, id) == (int)s, "setup row in %s: it is %s", rental_state_name(s),
	      name_of(row_state(st, id)));
	return id;
}

/* The pure table agrees with the drawn one, and has nothing out of range. */
static void test_table(void)
{
	for (int f = 0; f < RS__COUNT; f++)
		for (int e = 0; e < RE__COUNT; e++) {
			int got = rental_next_state((enum rental_state)f, (enum rental_event)e);
			int want = expect[f][e] < 0 ? -EINVAL : expect[f][e];

			CHECK(got == want, "%s --%s-->: %s, want %s", rental_state_name(f),
			      rental_event_name(e), name_of(got), name_of(want));
		}
	CHECK(rental_next_state(RS__COUNT, RE_END) == -EINVAL, "out-of-range state refused");
	CHECK(rental_next_state(RS_READY, RE__COUNT) == -EINVAL, "out-of-range event refused");
	for (int f = 0; f < RS__COUNT; f++)
		CHECK(rental_state_parse(rental_state_name(f)) == f, "state %d's name parses back", f);
	CHECK(rental_state_parse("rented") == -EINVAL, "an unknown state name is refused");
}

/*
 * Every (from, event) pair on a real row.  A legal edge moves the row to
 * its to-state; an illegal one (the table has no such edge) is refused
 * with -EINVAL and leaves the row alone; and an event whose from-state the
 * row is NOT in is refused with -ESTALE, again leaving the row alone.
 */
static void test_walk(struct store *st)
{
	for (int f = 0; f < RS__COUNT; f++)
		for (int e = 0; e < RE__COUNT; e++) {
			struct rental_move m = {.order_id = next_order++, .node = 5, .reason = "test"};
			int64_t id = row_in(st, (enum rental_state)f);
			int rc =
			    store_rental_transition(st, id, (enum rental_state)f, (enum rental_event)e, &m);
			int now = row_state(st, id);

			if (expect[f][e] >= 0) {
				CHECK(rc == expect[f][e] && now == expect[f][e],
				      "legal %s --%s-->: %s, row %s", rental_state_name(f),
				      rental_event_name(e), name_of(rc), name_of(now));
			} else {
				CHECK(rc == -EINVAL && now == f, "illegal %s --%s-->: %s, row %s",
				      rental_state_name(f), rental_event_name(e), name_of(rc), name_of(now));
			}
		}
	/* The caller's belief is wrong: every legal edge is refused with
	 * -ESTALE on a row in any other state, and the row stays. */
	for (int f = 0; f < RS__COUNT; f++)
		for (int e = 0; e < RE__COUNT; e++) {
			if (expect[f][e] < 0)
				continue;
			for (int actual = 0; actual < RS__COUNT; actual++) {
				struct rental_move m = {.order_id = next_order++, .reason = "test"};
				int64_t id;
				int rc, now;

				if (actual == f)
					continue;
				id = row_in(st, (enum rental_state)actual);
				rc = store_rental_transition(st, id, (enum rental_state)f,
							     (enum rental_event)e, &m);
				now = row_state(st, id);
				CHECK(rc == -ESTALE && now == actual,
				      "%s --%s--> on a row in %s: %s, row %s (want ESTALE, unchanged)",
				      rental_state_name(f), rental_event_name(e), rental_state_name(actual),
				      name_of(rc), name_of(now));
			}
		}
	{
		struct rental_move m = {.reason = "x"};

		CHECK(store_rental_transition(st, 999999, RS_BOOTING, RE_END, &m) == -ESTALE,
		      "a transition on no row is -ESTALE");
	}
}

/* The fields each event writes, and what it keeps. */
static void test_fields(struct store *st)
{
	struct rental_move found = {.order_id = 4242,
				    .created = 1700000000000LL,
				    .fee = 0.1,
				    .price_day = 12.5,
				    .currency = "bitcoin"};
	struct rental_move up = {.node = 77, .now = 1700000005000LL};
	struct rental_move end = {.reason = "renderfs unmounted", .now = 1700000009000LL};
	int64_t id = new_intent(st, 8);
	struct rental_row *rows = NULL;
	sqlite3_stmt *s;
	size_t n = 0;
	int rc;

	CHECK(store_rental_order_claimed(st, 4242) == 0, "order 4242 not claimed before");
	rc = store_rental_transition(st, id, RS_INTENT, RE_FOUND, &found);
	CHECK(rc == RS_BOOTING, "found: %s", name_of(rc));
	CHECK(store_rental_order_claimed(st, 4242) == 1, "order 4242 claimed after found");
	rc = store_rental_transition(st, id, RS_BOOTING, RE_UP, &up);
	CHECK(rc == RS_READY, "up: %s", name_of(rc));
	up.node = 78, up.now = 1700000007000LL;
	rc = store_rental_transition(st, id, RS_READY, RE_UP, &up);
	CHECK(rc == RS_READY, "up again (adopted after a restart): %s", name_of(rc));

	store_rentals_open(st, &rows, &n);
	for (size_t i = 0; i < n; i++)
		if (rows[i].id == id) {
			CHECK(rows[i].state == RS_READY && rows[i].order_id == 4242 &&
				  rows[i].created == 1700000000000LL && rows[i].node == 78 &&
				  rows[i].price_day == 12.5 && !strcmp(rows[i].currency, "CLORE-Blockchain"),
			      "open row: state %s order %lld node %lld price %g currency %s",
			      rental_state_name(rows[i].state), (long long)rows[i].order_id,
			      (long long)rows[i].node, rows[i].price_day, rows[i].currency);
		}
	free(rows);

	rc = store_rental_transition(st, id, RS_READY, RE_END, &end);
	CHECK(rc == RS_ENDED, "end: %s", name_of(rc));
	if (sqlite3_prepare_v2(st->db,
			       "SELECT online_at, ended_at, end_reason, fee FROM rentals WHERE id = ?", -1,
			       &s, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(s, 1, id);
		CHECK(sqlite3_step(s) == SQLITE_ROW, "the ended row is there");
		CHECK(sqlite3_column_int64(s, 0) == 1700000005000LL, "online_at kept from the first up: %lld",
		      (long long)sqlite3_column_int64(s, 0));
		CHECK(sqlite3_column_int64(s, 1) == 1700000009000LL, "ended_at: %lld",
		      (long long)sqlite3_column_int64(s, 1));
		CHECK(!strcmp((const char *)sqlite3_column_text(s, 2), "renderfs unmounted"),
		      "end_reason: %s", sqlite3_column_text(s, 2));
		CHECK(sqlite3_column_double(s, 3) == 0.1, "fee: %g", sqlite3_column_double(s, 3));
		sqlite3_finalize(s);
	}
	{
		struct rental_unsettled u[256];
		int k = store_rentals_unsettled(st, u, ARRAY_SIZE(u)), seen = 0;

		for (int i = 0; i < k; i++)
			seen += u[i].order_id == 4242 && u[i].usd_rate == 0.02;
		CHECK(seen == 1, "the ended order waits to be settled (%d rows)", k);
		CHECK(store_rental_settle(st, 4242, 0.33) == 0, "settle");
		k = store_rentals_unsettled(st, u, ARRAY_SIZE(u));
		seen = 0;
		for (int i = 0; i < k; i++)
			seen += u[i].order_id == 4242;
		CHECK(seen == 0, "once settled it no longer waits");
	}
}

/*
 * Two callers read the same row in booting and both act on it: one
 * cancels the order (end), the other saw it come up (up).  Exactly one
 * wins; the other gets -ESTALE and the row is what the winner made it.
 * The same with two ends from ready: the second changes nothing (its
 * reason does not overwrite the first).
 */
static void test_race(const char *dir_name)
{
	struct store *a = open_fresh(dir_name), *b = NULL;
	char dir[4200];
	int64_t id;
	int ra, rb, rc;

	snprintf(dir, sizeof(dir), "%s/%s", tmp_root, dir_name);
	rc = store_open(dir, &b);
	CHECK(rc == 0, "second connection: %s", strerror(-rc));
	if (rc) {
		store_close(a);
		return;
	}
	id = row_in(a, RS_BOOTING);
	{
		struct rental_move up = {.node = 9};
		struct rental_move end = {.reason = "budget reached"};

		ra = store_rental_transition(a, id, RS_BOOTING, RE_END, &end);
		rb = store_rental_transition(b, id, RS_BOOTING, RE_UP, &up);
	}
	CHECK(ra == RS_ENDED, "the first caller wins: %s", name_of(ra));
	CHECK(rb == -ESTALE, "the second caller from the same state loses: %s", name_of(rb));
	CHECK(row_state(a, id) == RS_ENDED, "the row is the winner's: %s", name_of(row_state(a, id)));

	id = row_in(a, RS_READY);
	{
		struct rental_move first = {.reason = "idle for 1m"};
		struct rental_move second = {.reason = "renderfs unmounted"};
		sqlite3_stmt *s;

		ra = store_rental_transition(b, id, RS_READY, RE_END, &first);
		rb = store_rental_transition(a, id, RS_READY, RE_END, &second);
		CHECK(ra == RS_ENDED && rb == -ESTALE, "two ends from ready: %s then %s", name_of(ra),
		      name_of(rb));
		if (sqlite3_prepare_v2(a->db, "SELECT end_reason FROM rentals WHERE id = ?", -1, &s, NULL) ==
		    SQLITE_OK) {
			sqlite3_bind_int64(s, 1, id);
			CHECK(sqlite3_step(s) == SQLITE_ROW &&
				  !strcmp((const char *)sqlite3_column_text(s, 0), "idle for 1m"),
			      "the loser did not overwrite the reason");
			sqlite3_finalize(s);
		}
	}
	store_close(b);
	store_close(a);
}

/* Counts by state mask, and what is open. */
static void test_counts(const char *dir_name)
{
	struct store *st = open_fresh(dir_name);
	struct rental_row *rows = NULL;
	size_t n = 0;
	int per[RS__COUNT] = {2, 1, 3, 1, 2, 1};

	for (int s = 0; s < RS__COUNT; s++)
		for (int i = 0; i < per[s]; i++)
			row_in(st, (enum rental_state)s);
	CHECK(store_rental_count(st, RENTAL_OPEN_MASK) == 7, "open: %d, want 7",
	      store_rental_count(st, RENTAL_OPEN_MASK));
	CHECK(store_rental_count(st, RENTAL_BIT(RS_INTENT) | RENTAL_BIT(RS_BOOTING)) == 3,
	      "coming up: %d, want 3",
	      store_rental_count(st, RENTAL_BIT(RS_INTENT) | RENTAL_BIT(RS_BOOTING)));
	CHECK(store_rental_count(st, RENTAL_BIT(RS_ENDED)) == 2, "ended: %d",
	      store_rental_count(st, RENTAL_BIT(RS_ENDED)));
	CHECK(store_rentals_open(st, &rows, &n) == 0 && n == 7, "store_rentals_open: %zu rows", n);
	for (size_t i = 0; i < n; i++)
		CHECK(RENTAL_OPEN_MASK & RENTAL_BIT(rows[i].state), "open row %lld is %s",
		      (long long)rows[i].id, rental_state_name(rows[i].state));
	free(rows);
	store_close(st);
}

int main(void)
{
	struct store *st;
	char cmd[4300];

	if (!mkdtemp(tmp_root)) {
		perror("test_rentals: mkdtemp");
		return 2;
	}
	test_table();
	st = open_fresh("walk");
	test_walk(st);
	test_fields(st);
	store_close(st);
	test_race("race");
	test_counts("counts");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_root);
	if (system(cmd) != 0)
		fprintf(stderr, "test_rentals: could not remove %s\n", tmp_root);
	return check_summary("test_rentals");
}
