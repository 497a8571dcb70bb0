/*
 * test_store: the frame state machine (the pure table and the guarded
 * UPDATEs on real rows), start-of-mount recovery, the job state guards and
 * control commands, the queue/ rows, the schema, and the typed row
 * functions the modules above the store call instead of SQL (job counts,
 * the release of a job's inputs, the status views, usage sums, host
 * keys), against a real SQLite store in a temporary directory.
 * A plain program: one line per failed check, exit status 1 if any failed.
 */
#include "store/store.h"
#include "jobs/jobs.h"
#include "jobs/intake.h"
#include "jobs/status.h"
#include "store/hostkeys.h"
#include "store/queue_rows.h"
#include "store/status_rows.h"
#include "store/usage_rows.h"
#include "core/util.h"
#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#define RENAME_EXCHANGE  (1 << 1)
#endif

/* The number of elements of migrations[] in store.c: a new migration must
 * bump this (and should get a check of its own). */
#define N_MIGRATIONS 9

#define NO_VALUE INT64_MIN

static char tmp_root[] = "/tmp/test_store.XXXXXX";

/* ---- helpers ---- */

static const char *fs_name(int s)
{
	return s < 0 ? strerror(-s) : frame_state_name((enum frame_state)s);
}

/* A fresh state directory TMP/NAME with its subdirectories, and a store on it. */
static struct store *open_fresh(const char *name, char *dir, size_t sz)
{
	static const char *const subs[] = {"spool", "blobs", "jobs"};
	struct store *st = NULL;
	char sub[4200];
	int rc;

	snprintf(dir, sz, "%s/%s", tmp_root, name);
	if (mkdir(dir, 0700) < 0) {
		fprintf(stderr, "test_store: mkdir %s: %s\n", dir, strerror(errno));
		exit(2);
	}
	for (size_t i = 0; i < ARRAY_SIZE(subs); i++) {
		snprintf(sub, sizeof(sub), "%s/%s", dir, subs[i]);
		if (mkdir(sub, 0700) < 0) {
			fprintf(stderr, "test_store: mkdir %s: %s\n", sub, strerror(errno));
			exit(2);
		}
	}
	rc = store_open(dir, &st);
	if (rc) {
		fprintf(stderr, "test_store: store_open %s: %s\n", dir, strerror(-rc));
		exit(2);
	}
	return st;
}

static char *vsql(const char *fmt, va_list ap)
{
	char *sql = sqlite3_vmprintf(fmt, ap);

	if (!sql) {
		fprintf(stderr, "test_store: out of memory\n");
		exit(2);
	}
	return sql;
}

/* Run SQL made with sqlite3_mprintf's format; 0 or the SQLite code. */
static int sql_exec(struct store *st, const char *fmt, ...)
{
	va_list ap;
	char *sql, *msg = NULL;
	int rc;

	va_start(ap, fmt);
	sql = vsql(fmt, ap);
	va_end(ap);
	rc = sqlite3_exec(st->db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		fprintf(stderr, "test_store: sql error: %s in: %s\n", msg ? msg : "?", sql);
	sqlite3_free(msg);
	sqlite3_free(sql);
	return rc;
}

/* The first column of the first row as an integer, NO_VALUE when there is
 * no row or the value is NULL. */
static int64_t sql_int(struct store *st, const char *fmt, ...)
{
	va_list ap;
	sqlite3_stmt *s;
	char *sql;
	int64_t v = NO_VALUE;

	va_start(ap, fmt);
	sql = vsql(fmt, ap);
	va_end(ap);
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
		fprintf(stderr, "test_store: sql error: %s in: %s\n", sqlite3_errmsg(st->db), sql);
		sqlite3_free(sql);
		return NO_VALUE;
	}
	if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_free(sql);
	return v;
}

/* The first column of the first row as text into buf: "NULL" for NULL,
 * "" when there is no row. */
static const char *sql_text(struct store *st, char *buf, size_t sz, const char *fmt, ...)
{
	va_list ap;
	sqlite3_stmt *s;
	char *sql;

	buf[0] = '\0';
	va_start(ap, fmt);
	sql = vsql(fmt, ap);
	va_end(ap);
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
		fprintf(stderr, "test_store: sql error: %s in: %s\n", sqlite3_errmsg(st->db), sql);
		sqlite3_free(sql);
		return buf;
	}
	if (sqlite3_step(s) == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(s, 0);

		snprintf(buf, sz, "%s", t ? (const char *)t : "NULL");
	}
	sqlite3_finalize(s);
	sqlite3_free(sql);
	return buf;
}

/* Every column of a row, '|'-separated: two snapshots compare equal only
 * when nothing in the row changed. */
static void row_snapshot(struct store *st, const char *table, int64_t id, char *buf, size_t sz)
{
	sqlite3_stmt *s;
	char *sql = sqlite3_mprintf("SELECT * FROM %s WHERE id = %lld", table, (long long)id);
	size_t len = 0;

	buf[0] = '\0';
	if (!sql || sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
		sqlite3_free(sql);
		snprintf(buf, sz, "<error>");
		return;
	}
	if (sqlite3_step(s) == SQLITE_ROW) {
		for (int i = 0; i < sqlite3_column_count(s) && len < sz; i++) {
			const unsigned char *t = sqlite3_column_text(s, i);

			len += (size_t)snprintf(buf + len, sz - len, "%s%s", i ? "|" : "",
						t ? (const char *)t : "NULL");
		}
	} else {
		snprintf(buf, sz, "<no row>");
	}
	sqlite3_finalize(s);
	sqlite3_free(sql);
}

static int64_t insert_job(struct store *st, const char *name, const char *state, int retries)
{
	if (sql_exec(st,
		     "INSERT INTO jobs(name, drop_name, state, blend_sha, sidecar, retries,"
		     " nframes, created) VALUES (%Q, %Q, %Q, 'sha', '1-10', %d, 10, 1)",
		     name, name, state, retries))
		return -1;
	return sqlite3_last_insert_rowid(st->db);
}

static int64_t insert_frame(struct store *st, int64_t job, int frame, const char *state, int64_t lease)
{
	if (sql_exec(st, "INSERT INTO frames(job, frame, state, lease) VALUES (%lld, %d, %Q, %lld)",
		     (long long)job, frame, state, (long long)lease))
		return -1;
	return sqlite3_last_insert_rowid(st->db);
}

static int64_t insert_node(struct store *st, const char *name)
{
	if (sql_exec(st, "INSERT INTO nodes(name, provider, state) VALUES (%Q, 'local', 'busy')", name))
		return -1;
	return sqlite3_last_insert_rowid(st->db);
}

static int frame_state_of(struct store *st, int64_t id)
{
	char buf[32];

	sql_text(st, buf, sizeof(buf), "SELECT state FROM frames WHERE id = %lld", (long long)id);
	return frame_state_parse(buf);
}

static int64_t frame_col(struct store *st, int64_t id, const char *col)
{
	return sql_int(st, "SELECT %s FROM frames WHERE id = %lld", col, (long long)id);
}

static int job_state_of(struct store *st, int64_t id)
{
	char buf[32];

	sql_text(st, buf, sizeof(buf), "SELECT state FROM jobs WHERE id = %lld", (long long)id);
	return job_state_parse(buf);
}

static int path_exists(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0;
}

/* ---- 1. the pure table ---- */

#define X  (-EINVAL)
#define Q  FS_QUEUED
#define L  FS_LEASED
#define RG FS_RENDERING
#define RD FS_RENDERED
#define D  FS_DONE
#define F  FS_FAILED
#define C  FS_CANCELLED

/* store.h's transition table, written out.  Columns: dispatch, start,
 * heartbeat, rendered, collected, interrupt, fail, cancel, retry, abandon, won. */
static const int expect_left[FS__COUNT][FE__COUNT] = {
    /* has_attempts_left = 1 */
    [FS_QUEUED] = {L, X, X, X, X, X, X, C, X, F, X},      [FS_LEASED] = {X, RG, L, X, X, Q, Q, C, X, X, D},
    [FS_RENDERING] = {X, X, RG, RD, X, Q, Q, C, X, X, D}, [FS_RENDERED] = {X, X, X, X, D, Q, Q, C, X, X, D},
    [FS_DONE] = {X, X, X, X, X, X, X, X, X, X, X},        [FS_FAILED] = {X, X, X, X, X, X, X, X, Q, X, X},
    [FS_CANCELLED] = {X, X, X, X, X, X, X, X, X, X, X},
};
static const int expect_none[FS__COUNT][FE__COUNT] = {
    /* has_attempts_left = 0 */
    [FS_QUEUED] = {L, X, X, X, X, X, X, C, X, F, X},      [FS_LEASED] = {X, RG, L, X, X, Q, F, C, X, X, D},
    [FS_RENDERING] = {X, X, RG, RD, X, Q, F, C, X, X, D}, [FS_RENDERED] = {X, X, X, X, D, Q, F, C, X, X, D},
    [FS_DONE] = {X, X, X, X, X, X, X, X, X, X, X},        [FS_FAILED] = {X, X, X, X, X, X, X, X, Q, X, X},
    [FS_CANCELLED] = {X, X, X, X, X, X, X, X, X, X, X},
};

#undef X
#undef Q
#undef L
#undef RG
#undef RD
#undef D
#undef F
#undef C

static void test_next_state(void)
{
	for (int s = 0; s < FS__COUNT; s++) {
		for (int e = 0; e < FE__COUNT; e++) {
			int got1 = frame_next_state((enum frame_state)s, (enum frame_event)e, 1);
			int got0 = frame_next_state((enum frame_state)s, (enum frame_event)e, 0);

			CHECK(got1 == expect_left[s][e], "frame_next_state(%s, %s, 1) = %s, want %s",
			      frame_state_name((enum frame_state)s), frame_event_name((enum frame_event)e),
			      fs_name(got1), fs_name(expect_left[s][e]));
			CHECK(got0 == expect_none[s][e], "frame_next_state(%s, %s, 0) = %s, want %s",
			      frame_state_name((enum frame_state)s), frame_event_name((enum frame_event)e),
			      fs_name(got0), fs_name(expect_none[s][e]));
		}
	}
	/* Out of range on either side is illegal, never a crash. */
	CHECK(frame_next_state(FS_QUEUED, FE__COUNT, 1) == -EINVAL, "event FE__COUNT is illegal");
	CHECK(frame_next_state(FS__COUNT, FE_CANCEL, 1) == -EINVAL, "state FS__COUNT is illegal");
	CHECK(frame_next_state(FS__COUNT, FE_RETRY, 1) == -EINVAL, "state FS__COUNT is illegal");
	/* Names and parsing agree. */
	for (int s = 0; s < FS__COUNT; s++)
		CHECK(frame_state_parse(frame_state_name((enum frame_state)s)) == s,
		      "frame_state_parse(frame_state_name(%d))", s);
	CHECK(frame_state_parse("bogus") == -EINVAL, "frame_state_parse(bogus)");
	for (int s = 0; s < JS__COUNT; s++)
		CHECK(job_state_parse(job_state_name((enum job_state)s)) == s,
		      "job_state_parse(job_state_name(%d))", s);
}

/* ---- 2. transitions on real rows ---- */

/* Put a row in a state directly, as if earlier transitions had been made. */
static void force_frame(struct store *st, int64_t id, const char *state, int64_t lease, int64_t node)
{
	sql_exec(st,
		 "UPDATE frames SET state = %Q, lease = %lld, node = %s, slot = %s,"
		 " lease_until = %s, attempts = 1, interrupts = 1, error = 'old' WHERE id = %lld",
		 state, (long long)lease, node ? "1" : "NULL", node ? "0" : "NULL", node ? "99999" : "NULL",
		 (long long)id);
}

static int64_t lease_of(struct store *st, int64_t id)
{
	return frame_col(st, id, "lease");
}

static void test_transitions(void)
{
	char dir[4096], before[2048], after[2048], buf[256];
	struct frame_move m = {.now = 1000, .slot = 3, .lease_until = 5000};
	struct store *st = open_fresh("transitions", dir, sizeof(dir));
	int64_t job, job0, node, node2, f, g;
	int rc;

	job = insert_job(st, "shot", "rendering", 2);
	job0 = insert_job(st, "noretry", "rendering", 0);
	node = insert_node(st, "n1");
	node2 = insert_node(st, "n2");
	CHECK(job > 0 && job0 > 0 && node > 0 && node2 > 0, "setup rows");
	m.node = node;

	/* Dispatch: lease grows by one, node and slot recorded. */
	f = insert_frame(st, job, 1, "queued", 0);
	rc = store_frame_transition(st, f, 0, FE_DISPATCH, &m);
	CHECK(rc == FS_LEASED, "dispatch: %s", fs_name(rc));
	CHECK(lease_of(st, f) == 1, "dispatch: lease %lld, want 1", (long long)lease_of(st, f));
	CHECK(frame_col(st, f, "node") == node, "dispatch: node recorded");
	CHECK(frame_col(st, f, "slot") == 3, "dispatch: slot recorded");
	CHECK(frame_col(st, f, "lease_until") == 5000, "dispatch: lease_until recorded");
	CHECK(frame_col(st, f, "attempts") == 0, "dispatch uses no attempt");

	/* A second dispatch of the same frame loses. */
	row_snapshot(st, "frames", f, before, sizeof(before));
	m.node = node2;
	rc = store_frame_transition(st, f, 1, FE_DISPATCH, &m);
	row_snapshot(st, "frames", f, after, sizeof(after));
	CHECK(rc == -ESTALE, "second dispatch: %s, want -ESTALE", fs_name(rc));
	CHECK(!strcmp(before, after), "second dispatch changed the row: %s -> %s", before, after);
	m.node = node;

	/* Each step with an older lease than the row's is refused and changes
	 * nothing; with the row's lease it moves.  Dispatch twice first so
	 * that lease 1 is old. */
	rc = store_frame_transition(st, f, 1, FE_INTERRUPT, &m);
	CHECK(rc == FS_QUEUED, "interrupt: %s", fs_name(rc));
	rc = store_frame_transition(st, f, 0, FE_DISPATCH, &m);
	CHECK(rc == FS_LEASED && lease_of(st, f) == 2, "re-dispatch: %s lease %lld", fs_name(rc),
	      (long long)lease_of(st, f));
	{
		static const enum frame_event steps[] = {FE_START, FE_RENDERED, FE_COLLECTED};
		static const enum frame_state to[] = {FS_RENDERING, FS_RENDERED, FS_DONE};

		for (size_t i = 0; i < ARRAY_SIZE(steps); i++) {
			/* Every lease-guarded event under the old lease, in this state. */
			static const enum frame_event guarded[] = {
			    FE_START, FE_HEARTBEAT, FE_RENDERED, FE_COLLECTED, FE_INTERRUPT, FE_FAIL,
			};

			for (size_t k = 0; k < ARRAY_SIZE(guarded); k++) {
				row_snapshot(st, "frames", f, before, sizeof(before));
				rc = store_frame_transition(st, f, 1, guarded[k], &m);
				row_snapshot(st, "frames", f, after, sizeof(after));
				CHECK(rc == -ESTALE, "%s under an old lease in %s: %s, want -ESTALE",
				      frame_event_name(guarded[k]), fs_name(frame_state_of(st, f)),
				      fs_name(rc));
				CHECK(!strcmp(before, after),
				      "%s under an old lease changed the row: %s -> %s",
				      frame_event_name(guarded[k]), before, after);
				/* A lease from the future is not the row's either. */
				rc = store_frame_transition(st, f, 3, guarded[k], &m);
				row_snapshot(st, "frames", f, after, sizeof(after));
				CHECK(rc == -ESTALE && !strcmp(before, after), "%s under a newer lease: %s",
				      frame_event_name(guarded[k]), fs_name(rc));
			}
			m.now = 2000 + (int64_t)i;
			m.secs = 12.5;
			m.size = 4096;
			m.mtime = 777;
			rc = store_frame_transition(st, f, 2, steps[i], &m);
			CHECK(rc == (int)to[i], "%s under the row's lease: %s, want %s",
			      frame_event_name(steps[i]), fs_name(rc), fs_name((int)to[i]));
			if (steps[i] == FE_START) {
				CHECK(frame_col(st, f, "started") == 2000, "start records started");
				m.lease_until = 8000;
				rc = store_frame_transition(st, f, 2, FE_HEARTBEAT, &m);
				CHECK(rc == 0, "heartbeat: %s", fs_name(rc));
				CHECK(frame_col(st, f, "lease_until") == 8000, "heartbeat moves lease_until");
				CHECK(frame_state_of(st, f) == FS_RENDERING, "heartbeat keeps the state");
			}
		}
		CHECK(!strcmp(sql_text(st, buf, sizeof(buf), "SELECT secs FROM frames WHERE id = %lld",
				       (long long)f),
			      "12.5"),
		      "rendered records secs: %s", buf);
		CHECK(frame_col(st, f, "size") == 4096 && frame_col(st, f, "mtime") == 777,
		      "collected records size and mtime");
		CHECK(lease_of(st, f) == 2, "lease kept through the steps");
	}

	/* FE_FAIL with retries = 2: three attempts in all. */
	g = insert_frame(st, job, 2, "queued", 0);
	m.error = "exit status 1";
	rc = store_frame_transition(st, g, 0, FE_DISPATCH, &m);
	rc = store_frame_transition(st, g, 1, FE_FAIL, &m);
	CHECK(rc == FS_QUEUED, "fail 1 (from leased): %s, want queued", fs_name(rc));
	CHECK(frame_col(st, g, "attempts") == 1, "fail 1: attempts %lld",
	      (long long)frame_col(st, g, "attempts"));
	CHECK(frame_col(st, g, "node") == NO_VALUE, "fail clears the node");
	CHECK(
	    !strcmp(sql_text(st, buf, sizeof(buf), "SELECT error FROM frames WHERE id = %lld", (long long)g),
		    "exit status 1"),
	    "fail records the error: %s", buf);
	store_frame_transition(st, g, 1, FE_DISPATCH, &m);
	store_frame_transition(st, g, 2, FE_START, &m);
	rc = store_frame_transition(st, g, 2, FE_FAIL, &m);
	CHECK(rc == FS_QUEUED, "fail 2 (from rendering): %s, want queued", fs_name(rc));
	CHECK(frame_col(st, g, "attempts") == 2, "fail 2: attempts %lld",
	      (long long)frame_col(st, g, "attempts"));
	store_frame_transition(st, g, 2, FE_DISPATCH, &m);
	store_frame_transition(st, g, 3, FE_START, &m);
	store_frame_transition(st, g, 3, FE_RENDERED, &m);
	rc = store_frame_transition(st, g, 3, FE_FAIL, &m);
	CHECK(rc == FS_FAILED, "fail 3 (from rendered): %s, want failed", fs_name(rc));
	CHECK(frame_col(st, g, "attempts") == 3, "fail 3: attempts %lld",
	      (long long)frame_col(st, g, "attempts"));
	CHECK(frame_col(st, g, "interrupts") == 0, "fail is not an interrupt");
	CHECK(lease_of(st, g) == 3, "lease after three dispatches: %lld", (long long)lease_of(st, g));

	/* FE_RETRY from failed: attempts back to 0, the lease only grows. */
	rc = store_frame_transition(st, g, 12345, FE_RETRY, &m);
	CHECK(rc == FS_QUEUED, "retry: %s, want queued", fs_name(rc));
	CHECK(frame_col(st, g, "attempts") == 0, "retry resets attempts: %lld",
	      (long long)frame_col(st, g, "attempts"));
	CHECK(frame_col(st, g, "error") == NO_VALUE, "retry clears the error");
	CHECK(lease_of(st, g) == 3, "retry keeps the lease: %lld", (long long)lease_of(st, g));
	rc = store_frame_transition(st, g, 0, FE_DISPATCH, &m);
	CHECK(rc == FS_LEASED && lease_of(st, g) == 4, "dispatch after retry: %s lease %lld", fs_name(rc),
	      (long long)lease_of(st, g));
	rc = store_frame_transition(st, g, 4, FE_FAIL, &m);
	CHECK(rc == FS_QUEUED, "a retried frame has its attempts again: %s", fs_name(rc));

	/* FE_INTERRUPT never uses an attempt, even with retries = 0. */
	g = insert_frame(st, job0, 1, "queued", 0);
	m.error = "node lost";
	for (int i = 0; i < 6; i++) {
		int64_t l;

		store_frame_transition(st, g, 0, FE_DISPATCH, &m);
		l = lease_of(st, g);
		if (i % 3 >= 1)
			store_frame_transition(st, g, l, FE_START, &m);
		if (i % 3 >= 2)
			store_frame_transition(st, g, l, FE_RENDERED, &m);
		rc = store_frame_transition(st, g, l, FE_INTERRUPT, &m);
		CHECK(rc == FS_QUEUED, "interrupt %d: %s, want queued", i, fs_name(rc));
		CHECK(frame_col(st, g, "interrupts") == i + 1, "interrupt %d: interrupts %lld", i,
		      (long long)frame_col(st, g, "interrupts"));
		CHECK(frame_col(st, g, "attempts") == 0, "interrupt %d: attempts %lld", i,
		      (long long)frame_col(st, g, "attempts"));
		CHECK(frame_col(st, g, "node") == NO_VALUE, "interrupt %d clears the node", i);
	}
	/* ... and with retries = 0 a single FE_FAIL ends it. */
	store_frame_transition(st, g, 0, FE_DISPATCH, &m);
	rc = store_frame_transition(st, g, lease_of(st, g), FE_FAIL, &m);
	CHECK(rc == FS_FAILED, "fail with retries = 0: %s, want failed", fs_name(rc));
	CHECK(frame_col(st, g, "attempts") == 1, "fail with retries = 0: attempts %lld",
	      (long long)frame_col(st, g, "attempts"));

	/* FE_CANCEL from each state it applies to, whatever lease is given. */
	{
		static const char *const from[] = {"queued", "leased", "rendering", "rendered"};

		for (size_t i = 0; i < ARRAY_SIZE(from); i++) {
			g = insert_frame(st, job, 100 + (int)i, "queued", 0);
			force_frame(st, g, from[i], 7, i > 0);
			rc = store_frame_transition(st, g, 999, FE_CANCEL, &m);
			CHECK(rc == FS_CANCELLED, "cancel from %s: %s", from[i], fs_name(rc));
			CHECK(frame_col(st, g, "node") == NO_VALUE, "cancel from %s clears the node",
			      from[i]);
			CHECK(lease_of(st, g) == 7, "cancel from %s keeps the lease", from[i]);
		}
	}

	/* Every illegal (state, event) on a real row: -ESTALE, row unchanged,
	 * even under the row's own lease.  And every lease-guarded legal
	 * event under another lease: the same. */
	g = insert_frame(st, job, 200, "queued", 0);
	for (int s = 0; s < FS__COUNT; s++) {
		for (int e = 0; e < FE__COUNT; e++) {
			int legal = expect_left[s][e] >= 0 || expect_none[s][e] >= 0;
			int guarded = e != FE_DISPATCH && e != FE_CANCEL && e != FE_RETRY &&
				      e != FE_ABANDON && e != FE_WON;
			const char *sn = frame_state_name((enum frame_state)s);
			const char *en = frame_event_name((enum frame_event)e);

			if (!legal) {
				force_frame(st, g, sn, 5, s >= FS_LEASED && s <= FS_RENDERED);
				row_snapshot(st, "frames", g, before, sizeof(before));
				rc = store_frame_transition(st, g, 5, (enum frame_event)e, &m);
				row_snapshot(st, "frames", g, after, sizeof(after));
				CHECK(rc == -ESTALE, "illegal %s in %s: %s, want -ESTALE", en, sn,
				      fs_name(rc));
				CHECK(!strcmp(before, after), "illegal %s in %s changed the row: %s -> %s",
				      en, sn, before, after);
			} else if (guarded) {
				force_frame(st, g, sn, 5, 1);
				row_snapshot(st, "frames", g, before, sizeof(before));
				rc = store_frame_transition(st, g, 4, (enum frame_event)e, &m);
				row_snapshot(st, "frames", g, after, sizeof(after));
				CHECK(rc == -ESTALE, "%s in %s under an old lease: %s, want -ESTALE", en, sn,
				      fs_name(rc));
				CHECK(!strcmp(before, after),
				      "%s in %s under an old lease changed the row: %s -> %s", en, sn, before,
				      after);
			}
		}
	}
	/* A frame that does not exist is a lost race too, not a new row. */
	rc = store_frame_transition(st, 987654, 0, FE_DISPATCH, &m);
	CHECK(rc == -ESTALE, "dispatch of a missing frame: %s", fs_name(rc));
	CHECK(store_frame_transition(st, g, 0, FE__COUNT, &m) == -EINVAL, "FE__COUNT refused");

	/* Inside a caller's transaction, a rollback undoes the transition. */
	force_frame(st, g, "queued", 5, 0);
	row_snapshot(st, "frames", g, before, sizeof(before));
	CHECK(store_begin(st) == 0, "begin");
	rc = store_frame_transition(st, g, 0, FE_DISPATCH, &m);
	CHECK(rc == FS_LEASED, "dispatch in a transaction: %s", fs_name(rc));
	store_rollback(st);
	row_snapshot(st, "frames", g, after, sizeof(after));
	CHECK(!strcmp(before, after), "rollback undoes a transition: %s -> %s", before, after);

	store_close(st);
}

/* ---- 3. recovery ---- */

static void test_recover(void)
{
	static const char *const states[] = {
	    "queued", "leased", "rendering", "rendered", "done", "failed", "cancelled",
	};
	char dir[4096], before[FS__COUNT][2048], after[2048];
	struct store *st = open_fresh("recover", dir, sizeof(dir));
	int64_t job, node, ids[FS__COUNT];
	struct qfile q1, q2;
	int rc;

	job = insert_job(st, "rec", "rendering", 3);
	node = insert_node(st, "n1");
	for (int i = 0; i < FS__COUNT; i++) {
		ids[i] = insert_frame(st, job, i + 1, states[i], 4);
		sql_exec(st,
			 "UPDATE frames SET attempts = 2, interrupts = 5, node = %s,"
			 " slot = %s, lease_until = %s WHERE id = %lld",
			 i >= FS_LEASED && i <= FS_RENDERED ? "1" : "NULL",
			 i >= FS_LEASED && i <= FS_RENDERED ? "0" : "NULL",
			 i >= FS_LEASED && i <= FS_RENDERED ? "99999" : "NULL", (long long)ids[i]);
		row_snapshot(st, "frames", ids[i], before[i], sizeof(before[i]));
	}
	CHECK(node == 1, "node id 1");
	CHECK(queue_create(st, "a.blend", 0644, &q1) == 0, "queue_create a.blend");
	CHECK(queue_create(st, "a.range", 0644, &q2) == 0, "queue_create a.range");
	queue_writer(st, q1.id, 1);
	queue_writer(st, q1.id, 1);
	queue_writer(st, q2.id, 1);
	CHECK(sql_int(st, "SELECT sum(writers) FROM qfiles") == 3, "writers before recovery");

	rc = store_recover(st, 5000);
	CHECK(rc == 3, "store_recover gave back %d frames, want 3", rc);
	for (int i = 0; i < FS__COUNT; i++) {
		int inflight = i >= FS_LEASED && i <= FS_RENDERED;

		if (inflight) {
			CHECK(frame_state_of(st, ids[i]) == FS_QUEUED, "recover: %s -> %s, want queued",
			      states[i], fs_name(frame_state_of(st, ids[i])));
			CHECK(frame_col(st, ids[i], "interrupts") == 6, "recover: %s interrupts %lld, want 6",
			      states[i], (long long)frame_col(st, ids[i], "interrupts"));
			CHECK(frame_col(st, ids[i], "attempts") == 2, "recover: %s attempts %lld, want 2",
			      states[i], (long long)frame_col(st, ids[i], "attempts"));
			CHECK(frame_col(st, ids[i], "lease") == 4, "recover: %s lease %lld, want 4",
			      states[i], (long long)frame_col(st, ids[i], "lease"));
			CHECK(frame_col(st, ids[i], "node") == NO_VALUE, "recover: %s node cleared",
			      states[i]);
		} else {
			row_snapshot(st, "frames", ids[i], after, sizeof(after));
			CHECK(!strcmp(before[i], after), "recover changed a %s frame: %s -> %s", states[i],
			      before[i], after);
		}
	}
	CHECK(sql_int(st, "SELECT count(*) FROM frames WHERE state IN ('leased','rendering','rendered')") ==
		  0,
	      "invariant 5: nothing in flight after recovery");
	CHECK(sql_int(st, "SELECT sum(writers) FROM qfiles") == 0, "recover resets writers: %lld",
	      (long long)sql_int(st, "SELECT sum(writers) FROM qfiles"));
	CHECK(sql_int(st, "SELECT count(*) FROM nodes WHERE state != 'offline'") == 0,
	      "recover marks nodes offline");
	CHECK(sql_int(st, "SELECT count(*) FROM events WHERE kind = 'recover'") == 1, "recover event");
	CHECK(sqlite3_get_autocommit(st->db), "recover leaves no transaction open");
	rc = store_recover(st, 6000);
	CHECK(rc == 0, "second store_recover: %d, want 0", rc);
	CHECK(frame_col(st, ids[FS_LEASED], "interrupts") == 6, "second recover counts nothing again");
	store_close(st);
}

/* ---- 4. job states and control ---- */

static int control(struct store *st, int64_t job, const char *cmd)
{
	return job_control(st, job, cmd, strlen(cmd));
}

static void test_jobs(void)
{
	char dir[4096], path[4200], buf[64];
	struct store *st = open_fresh("jobs", dir, sizeof(dir));
	struct job_row j;
	int64_t job, f1, f2, f3, f4;
	int rc;

	/* job_set_state's mask. */
	job = insert_job(st, "guard", "waiting", 3);
	rc = job_set_state(st, job, 1u << JS_RENDERING, JS_PAUSED, 10);
	CHECK(rc == -ESTALE, "job_set_state outside the mask: %d, want -ESTALE", rc);
	CHECK(job_state_of(st, job) == JS_WAITING, "job_set_state outside the mask changed the job");
	CHECK(job_set_state(st, job, 0, JS_RENDERING, 10) == -EINVAL, "empty mask is -EINVAL");
	rc = job_set_state(st, job, (1u << JS_WAITING) | (1u << JS_FAILED), JS_RENDERING, 10);
	CHECK(rc == 0 && job_state_of(st, job) == JS_RENDERING, "job_set_state in the mask: %d", rc);
	CHECK(sql_int(st, "SELECT started FROM jobs WHERE id = %lld", (long long)job) == 10, "started set");
	rc = job_set_state(st, job, 1u << JS_RENDERING, JS_ASSEMBLING, 20);
	rc = job_set_state(st, job, 1u << JS_ASSEMBLING, JS_RENDERING, 30);
	CHECK(sql_int(st, "SELECT started FROM jobs WHERE id = %lld", (long long)job) == 10,
	      "started is the first start");
	rc = job_set_state(st, job, 1u << JS_RENDERING, JS_DONE, 40);
	CHECK(rc == 0 && sql_int(st, "SELECT ended FROM jobs WHERE id = %lld", (long long)job) == 40,
	      "ended set on done");
	rc = job_set_state(st, 987654, ~0u >> 24, JS_DONE, 40);
	CHECK(rc == -ESTALE, "job_set_state on a missing job: %d", rc);

	/* pause / resume. */
	job = insert_job(st, "ctl", "rendering", 3);
	rc = control(st, job, "pause");
	CHECK(rc == 0, "pause on rendering: %d", rc);
	CHECK(job_state_of(st, job) == JS_PAUSED, "pause: state %s",
	      job_state_name((enum job_state)job_state_of(st, job)));
	rc = control(st, job, "pause");
	CHECK(rc == -EBUSY, "pause on paused: %d, want -EBUSY", rc);
	CHECK(job_state_of(st, job) == JS_PAUSED, "second pause keeps paused");
	rc = control(st, job, "resume");
	CHECK(rc == 0, "resume: %d", rc);
	CHECK(job_state_of(st, job) == JS_RENDERING, "resume goes back to rendering: %s",
	      job_state_name((enum job_state)job_state_of(st, job)));
	CHECK(sql_int(st, "SELECT paused_from IS NULL FROM jobs WHERE id = %lld", (long long)job) == 1,
	      "resume clears paused_from");
	rc = control(st, job, "resume");
	CHECK(rc == -EBUSY, "resume on a running job: %d, want -EBUSY", rc);
	CHECK(job_state_of(st, job) == JS_RENDERING, "resume on running keeps rendering");
	rc = job_control(st, job, "pause\n", 6);
	CHECK(rc == 0 && job_state_of(st, job) == JS_PAUSED, "\"pause\\n\" accepted: %d", rc);
	rc = job_control(st, job, "  Resume \n", 10);
	CHECK(rc == 0 && job_state_of(st, job) == JS_RENDERING, "\"  Resume \\n\" accepted: %d", rc);
	rc = job_control(st, job, "pausexyz", 5);
	CHECK(rc == 0 && job_state_of(st, job) == JS_PAUSED, "only len bytes read: %d", rc);
	control(st, job, "resume");
	CHECK(control(st, job, "explode") == -EINVAL, "unknown command is -EINVAL");
	CHECK(control(st, job, "") == -EINVAL, "empty command is -EINVAL");
	CHECK(control(st, job, "pause pause") == -EINVAL, "two words are -EINVAL");
	CHECK(job_state_of(st, job) == JS_RENDERING, "refused commands change nothing");
	CHECK(sqlite3_get_autocommit(st->db), "job_control leaves no transaction open");
	{
		int64_t w = insert_job(st, "waiter", "waiting", 3);

		CHECK(control(st, w, "pause") == 0, "pause on waiting");
		CHECK(control(st, w, "resume") == 0 && job_state_of(st, w) == JS_WAITING,
		      "resume goes back to waiting");
	}

	/* retry-failed. */
	f1 = insert_frame(st, job, 1, "failed", 3);
	f2 = insert_frame(st, job, 2, "failed", 2);
	f3 = insert_frame(st, job, 3, "done", 1);
	f4 = insert_frame(st, job, 4, "queued", 0);
	sql_exec(st, "UPDATE frames SET attempts = 4, error = 'boom' WHERE state = 'failed'");
	rc = control(st, job, "retry-failed");
	CHECK(rc == -EBUSY, "retry-failed on a rendering job: %d, want -EBUSY", rc);
	CHECK(frame_state_of(st, f1) == FS_FAILED, "refused retry-failed changes no frame");
	sql_exec(st, "UPDATE jobs SET state = 'failed', error = 'frames failed' WHERE id = %lld",
		 (long long)job);
	rc = control(st, job, "retry-failed");
	CHECK(rc == 0, "retry-failed on a failed job: %d", rc);
	CHECK(job_state_of(st, job) == JS_RENDERING, "retry-failed: job %s, want rendering",
	      job_state_name((enum job_state)job_state_of(st, job)));
	CHECK(frame_state_of(st, f1) == FS_QUEUED && frame_state_of(st, f2) == FS_QUEUED,
	      "retry-failed queues the failed frames");
	CHECK(frame_col(st, f1, "attempts") == 0 && frame_col(st, f2, "attempts") == 0,
	      "retry-failed resets attempts");
	CHECK(frame_state_of(st, f3) == FS_DONE && frame_state_of(st, f4) == FS_QUEUED,
	      "retry-failed leaves other frames");
	CHECK(sql_int(st, "SELECT error IS NULL FROM jobs WHERE id = %lld", (long long)job) == 1,
	      "retry-failed clears the job's error");
	sql_exec(st, "UPDATE jobs SET state = 'failed' WHERE id = %lld", (long long)job);
	rc = control(st, job, "retry-failed");
	CHECK(rc == -EBUSY, "retry-failed without failed frames: %d, want -EBUSY", rc);
	CHECK(job_state_of(st, job) == JS_FAILED, "refused retry-failed keeps the job failed");

	/* cancel. */
	sql_exec(st, "UPDATE jobs SET state = 'done' WHERE id = %lld", (long long)job);
	rc = control(st, job, "cancel");
	CHECK(rc == -EBUSY, "cancel on a done job: %d, want -EBUSY", rc);
	CHECK(job_state_of(st, job) == JS_DONE, "refused cancel keeps done");
	{
		int64_t c = insert_job(st, "tocancel", "rendering", 3);
		int64_t cf[4];
		struct qfile qb, qr;

		cf[0] = insert_frame(st, c, 1, "queued", 0);
		cf[1] = insert_frame(st, c, 2, "rendering", 2);
		cf[2] = insert_frame(st, c, 3, "done", 1);
		cf[3] = insert_frame(st, c, 4, "failed", 1);
		CHECK(queue_create(st, "tocancel.blend", 0644, &qb) == 0, "queue_create");
		CHECK(queue_create(st, "tocancel.range", 0644, &qr) == 0, "queue_create");
		sql_exec(st, "UPDATE qfiles SET job = %lld", (long long)c);
		rc = control(st, c, "cancel\n");
		CHECK(rc == 0, "cancel on a rendering job: %d", rc);
		CHECK(job_state_of(st, c) == JS_CANCELLED, "cancel: job cancelled");
		CHECK(frame_state_of(st, cf[0]) == FS_CANCELLED && frame_state_of(st, cf[1]) == FS_CANCELLED,
		      "cancel cancels frames still to do");
		CHECK(frame_state_of(st, cf[2]) == FS_DONE && frame_state_of(st, cf[3]) == FS_FAILED,
		      "cancel leaves ended frames");
		CHECK(sql_int(st, "SELECT count(*) FROM qfiles") == 0, "cancel releases the job's inputs");
		CHECK(control(st, c, "cancel") == -EBUSY, "cancel twice: -EBUSY");
		CHECK(job_cancel(st, c, "again") == -ESTALE, "job_cancel on a cancelled job: -ESTALE");
	}

	/* Removal. */
	f1 = insert_job(st, "active", "rendering", 3);
	rc = job_remove(st, f1);
	CHECK(rc == -EBUSY, "job_remove on an active job: %d, want -EBUSY", rc);
	CHECK(job_get(st, f1, &j) == 0, "the active job's row stays");
	CHECK(sql_int(st, "SELECT removed FROM jobs WHERE id = %lld", (long long)f1) == 0,
	      "not marked removed");
	control(st, f1, "pause");
	CHECK(job_remove(st, f1) == -EBUSY, "job_remove on a paused job: -EBUSY");
	CHECK(sqlite3_get_autocommit(st->db), "job_remove leaves no transaction open");

	f2 = insert_job(st, "finished", "done", 3);
	store_path_job(st, f2, path, sizeof(path));
	snprintf(path + strlen(path), sizeof(path) - strlen(path), "/frames");
	CHECK(util_mkdirs(path) == 0, "mkdirs job dir");
	rc = job_remove(st, f2);
	CHECK(rc == 0, "job_remove on a done job: %d", rc);
	CHECK(job_by_name(st, "finished", &j) == -ENOENT, "removed job: job_by_name -ENOENT");
	CHECK(job_get(st, f2, &j) == -ENOENT, "removed job: job_get -ENOENT");
	store_path_job(st, f2, path, sizeof(path));
	CHECK(!path_exists(path), "removed job's directory is gone");
	f3 = insert_job(st, "finished", "waiting", 3);
	CHECK(f3 > 0, "the name of a removed job can be reused");
	CHECK(job_by_name(st, "finished", &j) == 0 && j.id == f3, "job_by_name finds the new job");
	CHECK(
	    !strcmp(sql_text(st, buf, sizeof(buf), "SELECT count(*) FROM jobs WHERE name = 'finished'"), "2"),
	    "the removed row stays as history");
	CHECK(job_remove(st, 987654) == -ENOENT, "job_remove of a missing job: -ENOENT");
	store_close(st);
}

/* ---- 5. queue/ ---- */

static void write_spool(struct store *st, int64_t id, const char *text)
{
	char path[4096];
	FILE *fp;

	store_path_spool(st, id, path, sizeof(path));
	fp = fopen(path, "w");
	if (fp) {
		fputs(text, fp);
		fclose(fp);
	}
}

static void read_spool(struct store *st, int64_t id, char *buf, size_t sz)
{
	char path[4096];
	FILE *fp;
	size_t n = 0;

	store_path_spool(st, id, path, sizeof(path));
	fp = fopen(path, "r");
	if (fp) {
		n = fread(buf, 1, sz - 1, fp);
		fclose(fp);
	}
	buf[n] = '\0';
}

/*
 * Fill the stack below the caller with a non-NULL pattern, so that a local
 * the next call reads before it sets holds garbage rather than whatever
 * an earlier call happened to leave there: reading an uninitialized
 * pointer then fails every time instead of now and then.
 */
static __attribute__((noinline)) void poison_stack(void)
{
	volatile unsigned char junk[64 * 1024];

	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = 0xa5;
}

/* RENAME_EXCHANGE run in a child with its own connection, so that a crash
 * in it is reported as a failed check rather than ending the test. */
static int exchange_in_child(const char *dir, const char *from, const char *to)
{
	pid_t pid;
	int status;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		struct store *st2;
		int rc = store_open(dir, &st2);

		if (!rc) {
			poison_stack();
			rc = queue_rename(st2, from, to, RENAME_EXCHANGE);
		}
		store_close(st2);
		_exit(rc ? 100 + (-rc & 0x7f) : 0);
	}
	if (waitpid(pid, &status, 0) < 0)
		return -errno;
	if (WIFSIGNALED(status))
		return 1000 + WTERMSIG(status);
	return WEXITSTATUS(status) ? -(WEXITSTATUS(status) - 100) : 0;
}

static void test_queue(void)
{
	char dir[4096], path[4200], buf[64];
	struct store *st = open_fresh("queue", dir, sizeof(dir));
	struct qfile a, b, c, q;
	int rc;

	rc = queue_create(st, "a.blend", 0640, &a);
	CHECK(rc == 0, "queue_create a.blend: %d", rc);
	CHECK(!strcmp(a.name, "a.blend") && a.writers == 0 && a.mode == 0640 && a.job == 0,
	      "queue_create's row: %s writers %d mode %o", a.name, a.writers, a.mode);
	store_path_spool(st, a.id, path, sizeof(path));
	CHECK(path_exists(path), "queue_create makes the spool file");
	rc = queue_create(st, "a.blend", 0644, &q);
	CHECK(rc == -EEXIST, "duplicate queue_create: %d, want -EEXIST", rc);
	CHECK(sqlite3_get_autocommit(st->db), "refused queue_create leaves no transaction open");
	CHECK(queue_create(st, "x/y", 0644, &q) == -EINVAL, "a name with '/' is -EINVAL");
	CHECK(queue_create(st, "..", 0644, &q) == -EINVAL, "'..' is -EINVAL");
	CHECK(queue_create(st, "", 0644, &q) == -EINVAL, "'' is -EINVAL");
	CHECK(queue_create(st, "b.blend", 0644, &b) == 0, "queue_create b.blend");
	write_spool(st, a.id, "AAA");
	write_spool(st, b.id, "BBB");

	/* Rename over an existing name replaces it. */
	rc = queue_rename(st, "a.blend", "b.blend", 0);
	CHECK(rc == 0, "rename over an existing file: %d", rc);
	CHECK(queue_lookup(st, "a.blend", &q) == -ENOENT, "the old name is gone");
	CHECK(queue_lookup(st, "b.blend", &q) == 0 && q.id == a.id, "the new name is the moved file");
	read_spool(st, q.id, buf, sizeof(buf));
	CHECK(!strcmp(buf, "AAA"), "the moved file's bytes: %s", buf);
	store_path_spool(st, b.id, path, sizeof(path));
	CHECK(!path_exists(path), "the replaced file's spool is removed");
	CHECK(sql_int(st, "SELECT count(*) FROM qfiles") == 1, "one file left");
	CHECK(queue_rename(st, "nope", "b.blend", 0) == -ENOENT, "rename of a missing file: -ENOENT");
	CHECK(queue_rename(st, "b.blend", "b.blend", 0) == 0, "rename onto itself: 0");
	CHECK(queue_rename(st, "b.blend", "z/z", 0) == -EINVAL, "rename to a bad name: -EINVAL");
	CHECK(queue_rename(st, "b.blend", "q", 1u << 5) == -EINVAL, "unknown rename flag: -EINVAL");

	/* RENAME_NOREPLACE. */
	CHECK(queue_create(st, "c.range", 0644, &c) == 0, "queue_create c.range");
	write_spool(st, c.id, "CCC");
	rc = queue_rename(st, "b.blend", "c.range", RENAME_NOREPLACE);
	CHECK(rc == -EEXIST, "RENAME_NOREPLACE onto an existing name: %d, want -EEXIST", rc);
	CHECK(queue_lookup(st, "b.blend", &q) == 0 && q.id == a.id, "NOREPLACE: source kept");
	CHECK(queue_lookup(st, "c.range", &q) == 0 && q.id == c.id, "NOREPLACE: target kept");
	CHECK(sqlite3_get_autocommit(st->db), "refused rename leaves no transaction open");
	rc = queue_rename(st, "b.blend", "d.blend", RENAME_NOREPLACE);
	CHECK(rc == 0 && queue_lookup(st, "d.blend", &q) == 0 && q.id == a.id,
	      "RENAME_NOREPLACE onto a free name: %d", rc);
	queue_rename(st, "d.blend", "b.blend", 0);

	/* RENAME_EXCHANGE swaps the names. */
	CHECK(queue_rename(st, "b.blend", "nothere", RENAME_EXCHANGE) == -ENOENT,
	      "RENAME_EXCHANGE with no target: -ENOENT");
	rc = exchange_in_child(dir, "b.blend", "c.range");
	CHECK(rc == 0, "RENAME_EXCHANGE b.blend <-> c.range: %s%d", rc >= 1000 ? "killed by signal " : "rc ",
	      rc >= 1000 ? rc - 1000 : rc);
	CHECK(queue_lookup(st, "b.blend", &q) == 0 && q.id == c.id, "EXCHANGE: b.blend is the old c.range");
	read_spool(st, q.id, buf, sizeof(buf));
	CHECK(!strcmp(buf, "CCC"), "EXCHANGE: b.blend's bytes: %s", buf);
	CHECK(queue_lookup(st, "c.range", &q) == 0 && q.id == a.id, "EXCHANGE: c.range is the old b.blend");
	CHECK(sql_int(st, "SELECT count(*) FROM qfiles WHERE name LIKE '/%%'") == 0,
	      "EXCHANGE leaves no temporary names");
	/* Swap back in this process only when the child showed it safe (a
	 * crashed child changed nothing: the names stay as they were). */
	if (rc == 0) {
		rc = queue_rename(st, "b.blend", "c.range", RENAME_EXCHANGE);
		CHECK(rc == 0, "RENAME_EXCHANGE back: %d", rc);
		CHECK(queue_lookup(st, "b.blend", &q) == 0 && q.id == a.id, "EXCHANGE back: b.blend");
		CHECK(queue_lookup(st, "c.range", &q) == 0 && q.id == c.id, "EXCHANGE back: c.range");
	}

	/* Writers. */
	CHECK(queue_writer(st, c.id, 1) == 0, "queue_writer +1");
	CHECK(queue_get(st, c.id, &q) == 0 && q.writers == 1, "writers 1: %d", q.writers);
	queue_writer(st, c.id, 1);
	CHECK(queue_get(st, c.id, &q) == 0 && q.writers == 2, "writers 2: %d", q.writers);
	queue_writer(st, c.id, -1);
	CHECK(queue_get(st, c.id, &q) == 0 && q.writers == 1, "writers back to 1: %d", q.writers);
	sql_exec(st, "UPDATE qfiles SET changed = 5 WHERE id = %lld", (long long)c.id);
	queue_writer(st, c.id, -1);
	CHECK(queue_get(st, c.id, &q) == 0 && q.writers == 0, "writers back to 0: %d", q.writers);
	CHECK(q.changed > 5, "closing a writer is a change");
	queue_writer(st, c.id, -1);
	CHECK(queue_get(st, c.id, &q) == 0 && q.writers == 0, "writers never below 0: %d", q.writers);
	CHECK(queue_writer(st, 987654, 1) == -ENOENT, "queue_writer of a missing file: -ENOENT");

	/* Unlink. */
	store_path_spool(st, c.id, path, sizeof(path));
	rc = queue_unlink(st, "c.range");
	CHECK(rc == 0, "queue_unlink: %d", rc);
	CHECK(queue_lookup(st, "c.range", &q) == -ENOENT, "unlinked name is gone");
	CHECK(!path_exists(path), "unlinked spool file is gone");
	CHECK(queue_unlink(st, "c.range") == -ENOENT, "unlink of a missing file: -ENOENT");
	CHECK(sqlite3_get_autocommit(st->db), "refused unlink leaves no transaction open");

	/* Removing a running job's .blend cancels the job. */
	{
		int64_t job = insert_job(st, "running", "rendering", 3);
		int64_t fr = insert_frame(st, job, 1, "queued", 0);
		struct qfile rb, rr;

		CHECK(queue_create(st, "running.blend", 0644, &rb) == 0, "queue_create running.blend");
		CHECK(queue_create(st, "running.range", 0644, &rr) == 0, "queue_create running.range");
		sql_exec(st, "UPDATE qfiles SET job = %lld WHERE id IN (%lld, %lld)", (long long)job,
			 (long long)rb.id, (long long)rr.id);
		rc = queue_unlink(st, "running.blend");
		CHECK(rc == 0, "unlink of a running job's .blend: %d", rc);
		CHECK(job_state_of(st, job) == JS_CANCELLED, "unlinking the .blend cancels the job");
		CHECK(frame_state_of(st, fr) == FS_CANCELLED, "... and its frames");
		CHECK(queue_lookup(st, "running.blend", &q) == -ENOENT, "the .blend is gone");
	}
	store_close(st);
}

/* ---- 6. schema ---- */

/* store_open with its expected complaint kept off stderr, which holds only
 * failed checks. */
static int open_quietly(const char *dir, struct store **out)
{
	int saved, devnull, rc;

	fflush(stderr);
	saved = dup(STDERR_FILENO);
	devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (saved >= 0 && devnull >= 0)
		dup2(devnull, STDERR_FILENO);
	rc = store_open(dir, out);
	fflush(stderr);
	if (saved >= 0) {
		dup2(saved, STDERR_FILENO);
		close(saved);
	}
	if (devnull >= 0)
		close(devnull);
	return rc;
}

static void test_schema(void)
{
	char dir[4096], buf[64];
	struct store *st = open_fresh("schema", dir, sizeof(dir));
	struct store *st2 = NULL, *st3 = NULL;
	int rc;

	rc = store_open(dir, &st2);
	CHECK(rc == 0 && st2, "a second connection opens: %d", rc);
	if (!st2) {
		store_close(st);
		return;
	}
	CHECK(sql_int(st, "PRAGMA user_version") == N_MIGRATIONS, "user_version %lld, want %d",
	      (long long)sql_int(st, "PRAGMA user_version"), N_MIGRATIONS);
	CHECK(sql_int(st2, "PRAGMA user_version") == N_MIGRATIONS, "second connection: user_version %lld",
	      (long long)sql_int(st2, "PRAGMA user_version"));
	CHECK(!strcmp(sql_text(st, buf, sizeof(buf), "PRAGMA journal_mode"), "wal"), "journal_mode %s", buf);
	CHECK(!strcmp(sql_text(st2, buf, sizeof(buf), "PRAGMA journal_mode"), "wal"),
	      "second connection: journal_mode %s", buf);
	CHECK(sql_int(st2, "PRAGMA foreign_keys") == 1, "foreign_keys on");
	CHECK(sql_int(st, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN"
			  " ('jobs','nodes','frames','qfiles','drops','events','blocklist','changes','"
			  "rentals','usage')") == 10,
	      "every table exists");

	/* What one connection commits, the other sees; a reader beside a writer. */
	CHECK(insert_job(st, "shared", "waiting", 3) > 0, "insert through the first");
	CHECK(sql_int(st2, "SELECT count(*) FROM jobs WHERE name = 'shared'") == 1, "seen by the second");
	CHECK(store_begin(st) == 0, "begin on the first");
	sql_exec(st, "UPDATE jobs SET priority = 9");
	CHECK(sql_int(st2, "SELECT priority FROM jobs WHERE name = 'shared'") == 0,
	      "the second reads the committed row beside an open write");
	CHECK(store_commit(st) == 0, "commit");
	CHECK(sql_int(st2, "SELECT priority FROM jobs WHERE name = 'shared'") == 9, "then sees the commit");
	store_close(st2);
	store_close(st);

	/* Reopening does not migrate again; a newer schema is refused. */
	rc = store_open(dir, &st3);
	CHECK(rc == 0, "reopen: %d", rc);
	if (st3) {
		CHECK(sql_int(st3, "SELECT count(*) FROM jobs") == 1, "reopen keeps the rows");
		CHECK(sql_int(st3, "PRAGMA user_version") == N_MIGRATIONS, "reopen keeps user_version");
		sql_exec(st3, "PRAGMA user_version = %d", N_MIGRATIONS + 1);
		store_close(st3);
		st3 = NULL;
		rc = open_quietly(dir, &st3);
		CHECK(rc == -EPROTO && !st3, "a newer schema is refused: %d, want -EPROTO", rc);
		store_close(st3);
	}
}

/* ---- 7. the typed row functions ---- */

static int count_changes(struct store *st, int kind)
{
	return (int)sql_int(st, "SELECT count(*) FROM changes WHERE kind = %d", kind);
}

static void set_frame(struct store *st, int64_t id, const char *set)
{
	sql_exec(st, "UPDATE frames SET %s WHERE id = %lld", set, (long long)id);
}

static void test_job_counts(void)
{
	static const char *const states[] = {"queued", "queued", "leased", "rendering", "rendered",
					     "done",   "done",   "done",   "failed",    "cancelled"};
	char dir[4096];
	struct store *st = open_fresh("counts", dir, sizeof(dir));
	struct job_counts c;
	struct job_step steps[8];
	int64_t job = insert_job(st, "counted", "rendering", 3),
		other = insert_job(st, "other", "waiting", 3);
	int rc, n;

	for (size_t i = 0; i < ARRAY_SIZE(states); i++)
		insert_frame(st, job, (int)i + 1, states[i], 1);
	insert_frame(st, other, 1, "done", 1);
	rc = store_job_counts(st, job, &c);
	CHECK(rc == 0, "store_job_counts: %d", rc);
	CHECK(c.queued == 2 && c.inflight == 3 && c.done == 3 && c.failed == 1 && c.cancelled == 1,
	      "counts queued %lld inflight %lld done %lld failed %lld cancelled %lld, want 2 3 3 1 1",
	      (long long)c.queued, (long long)c.inflight, (long long)c.done, (long long)c.failed,
	      (long long)c.cancelled);
	CHECK(c.total == 10, "total %lld, want 10 (the other job's frame not counted)", (long long)c.total);
	memset(&c, 0x5a, sizeof(c));
	rc = store_job_counts(st, 987654, &c);
	CHECK(rc == 0 && c.total == 0 && c.queued == 0 && c.done == 0, "a job without frames counts zero");

	/* What the engine moves on: waiting, rendering, assembling; not paused or ended. */
	insert_job(st, "paused", "paused", 3);
	insert_job(st, "ended", "done", 3);
	sql_exec(st, "UPDATE jobs SET video = 0 WHERE id = %lld", (long long)other);
	n = store_jobs_to_advance(st, steps, 8);
	CHECK(n == 2, "store_jobs_to_advance: %d, want 2", n);
	if (n == 2) {
		CHECK(steps[0].id == job && steps[0].state == JS_RENDERING && steps[0].video == 1,
		      "first step: the rendering job, with video");
		CHECK(steps[1].id == other && steps[1].state == JS_WAITING && steps[1].video == 0,
		      "second step: the waiting job, without video");
	}
	CHECK(store_jobs_to_advance(st, steps, 1) == 1, "max is honoured");

	/* fps and budget. */
	{
		double fps = -1, scene = -1;
		int over = -1;

		sql_exec(st, "UPDATE jobs SET fps = 0, scene_fps = 30, over_budget = 1 WHERE id = %lld",
			 (long long)job);
		CHECK(store_job_fps(st, job, &fps, &scene) == 0 && fps == 0 && scene == 30, "store_job_fps");
		CHECK(store_job_fps(st, 987654, &fps, &scene) == -ENOENT, "store_job_fps on a missing job");
		CHECK(store_job_over_budget(st, job, &over) == 0 && over == 1, "over budget");
		CHECK(store_job_over_budget(st, other, &over) == 0 && over == 0, "not over budget");
	}

	/* store_frames_apply: every frame in the mask, under its own lease. */
	CHECK(store_frames_apply(st, job, 0, FE_CANCEL, NULL) == -EINVAL, "empty mask is -EINVAL");
	rc = store_frames_apply(st, job, (1u << FS_LEASED) | (1u << FS_RENDERING), FE_INTERRUPT, NULL);
	CHECK(rc == 0, "store_frames_apply: %d", rc);
	store_job_counts(st, job, &c);
	CHECK(c.queued == 4 && c.inflight == 1, "interrupt leased+rendering: queued %lld inflight %lld",
	      (long long)c.queued, (long long)c.inflight);

	/* Leases nobody renewed. */
	{
		int64_t f = insert_frame(st, other, 2, "leased", 4),
			g = insert_frame(st, other, 3, "rendering", 2);
		int64_t h = insert_frame(st, other, 4, "rendering", 2), ids[4], leases[4];

		set_frame(st, f, "lease_until = 100");
		set_frame(st, g, "lease_until = 50");
		set_frame(st, h, "lease_until = 5000");
		n = store_frames_lease_expired(st, 1000, ids, leases, 4);
		CHECK(n == 2, "two leases expired before 1000: %d", n);
		CHECK(n == 2 && ((ids[0] == f && leases[0] == 4) || (ids[1] == f && leases[1] == 4)),
		      "the leased frame with its lease");
		CHECK(store_frames_lease_expired(st, 1000, ids, leases, 1) == 1, "max is honoured");
	}
	store_close(st);
}

/* Owners: a queue file keeps who made it, its refusal and its job are
 * the .blend's owner's; directories are dated by the changes to them; an
 * ended job drops a "waiting for a node" line. */
static void test_owners(void)
{
	char dir[4096];
	struct store *st = open_fresh("owners", dir, sizeof(dir));
	int64_t job = insert_job(st, "own", "rendering", 3), at = 0;
	struct qfile b, r, old;
	struct qerror e;
	struct job_row j;
	int rc;

	CHECK(queue_create_as(st, "own.blend", 0644, 1234, 567, &b) == 0, "create own.blend as 1234:567");
	CHECK(b.uid == 1234 && b.gid == 567, "the row keeps the owner: %lld:%lld", (long long)b.uid,
	      (long long)b.gid);
	CHECK(queue_create_as(st, "own.range", 0644, 99, 99, &r) == 0, "create own.range as 99:99");
	CHECK(queue_create(st, "old.blend", 0644, &old) == 0 && old.uid == -1 && old.gid == -1,
	      "queue_create: owner unknown (-1)");
	CHECK(queue_chown(st, old.id, 42, -1) == 0 && queue_get(st, old.id, &old) == 0 && old.uid == 42 &&
		  old.gid == -1,
	      "queue_chown sets the uid, leaves the gid: %lld:%lld", (long long)old.uid, (long long)old.gid);
	CHECK(queue_chown(st, 999999, 1, 1) == -ENOENT, "queue_chown of no row: -ENOENT");

	CHECK(store_drop_set(st, "own", "own.range: bad\n", "sig", 10) == 0, "store_drop_set");
	CHECK(queue_error_lookup(st, "own.error", &e) == 0 && e.uid == 1234 && e.gid == 567,
	      "own.error is own.blend's owner's: %lld:%lld", (long long)e.uid, (long long)e.gid);

	CHECK(job_get(st, job, &j) == 0 && j.uid == -1 && j.gid == -1, "a job's owner starts unknown");
	CHECK(store_qfile_claim(st, job, b.id, r.id) == 0, "claim");
	CHECK(job_get(st, job, &j) == 0 && j.uid == 1234 && j.gid == 567,
	      "the job is its .blend's owner's, not the .range's: %lld:%lld", (long long)j.uid,
	      (long long)j.gid);

	rc = store_dir_time(st, CH_JOBDIR, job + 1000, &at);
	CHECK(rc == -ENOENT && at == 0, "no time for a directory nothing touched: %d", rc);
	CHECK(store_change(st, CH_JOBSTATE, job) == 0, "a job state change");
	CHECK(store_dir_time(st, CH_JOBDIR, job, &at) == 0 && at > 0, "dates out/JOB");
	CHECK(store_change(st, CH_NODES, 7) == 0 && store_dir_time(st, CH_NODES, 0, &at) == 0 && at > 0,
	      "a node's change dates nodes/ too");
	CHECK(store_dir_time(st, CH_QUEUE, 0, &at) == 0 && at > 0, "queue/ is dated by its changes");

	CHECK(job_set_error(st, job, "waiting for a node: 1 of 1 node offline or connecting") == 0,
	      "set the waiting line");
	CHECK(job_set_state(st, job, 1u << JS_RENDERING, JS_DONE, 20) == 0, "the job ends");
	CHECK(sql_int(st, "SELECT error IS NULL FROM jobs WHERE id = %lld", (long long)job) == 1,
	      "an ended job keeps no waiting line");
	store_close(st);
}

static void test_release_inputs(void)
{
	char dir[4096], path[4200];
	struct store *st = open_fresh("release", dir, sizeof(dir));
	struct qfile b, r, mine_too, pending;
	int64_t job = insert_job(st, "rel", "rendering", 3), other = insert_job(st, "keep", "rendering", 3);
	int rc, before;

	CHECK(queue_create(st, "rel.blend", 0644, &b) == 0, "create rel.blend");
	CHECK(queue_create(st, "rel.range", 0644, &r) == 0, "create rel.range");
	CHECK(queue_create(st, "keep.blend", 0644, &mine_too) == 0, "create keep.blend");
	CHECK(queue_create(st, "new.blend", 0644, &pending) == 0, "create new.blend");
	CHECK(store_qfile_claim(st, job, b.id, r.id) == 0, "claim rel's inputs");
	CHECK(store_qfile_claim(st, other, mine_too.id, mine_too.id) == 0, "claim keep's input");
	CHECK(queue_get(st, b.id, &b) == 0 && b.job == job, "the claim is stored");

	before = count_changes(st, CH_QUEUE);
	rc = store_release_inputs(st, job);
	CHECK(rc == 0, "store_release_inputs: %d", rc);
	CHECK(queue_lookup(st, "rel.blend", &b) == -ENOENT && queue_lookup(st, "rel.range", &r) == -ENOENT,
	      "the job's inputs left queue/");
	store_path_spool(st, b.id, path, sizeof(path));
	CHECK(!path_exists(path), "the .blend's spool file is gone");
	store_path_spool(st, r.id, path, sizeof(path));
	CHECK(!path_exists(path), "the .range's spool file is gone");
	CHECK(queue_lookup(st, "keep.blend", &mine_too) == 0, "another job's input stays");
	CHECK(queue_lookup(st, "new.blend", &pending) == 0, "a pending drop stays");
	store_path_spool(st, pending.id, path, sizeof(path));
	CHECK(path_exists(path), "the pending drop's spool file stays");
	CHECK(count_changes(st, CH_QUEUE) == before + 1, "queue/ changed once");

	before = count_changes(st, CH_QUEUE);
	CHECK(store_release_inputs(st, job) == 0, "releasing again is harmless");
	CHECK(count_changes(st, CH_QUEUE) == before, "nothing released: no change announced");

	/* Drops: the refusal, its signature, and the prune. */
	CHECK(store_drop_set(st, "new", "new.range: missing\n", "sig1", 10) == 0, "store_drop_set");
	{
		char sig[32];
		struct qerror e;
		char *text = NULL;
		size_t len = 0;

		CHECK(store_drop_sig(st, "new", sig, sizeof(sig)) == 0 && !strcmp(sig, "sig1"), "signature");
		CHECK(store_drop_sig(st, "nope", sig, sizeof(sig)) == -ENOENT, "no signature");
		CHECK(queue_error_lookup(st, "new.error", &e) == 0 && e.len == 19,
		      "new.error shown, %zu bytes", e.len);
		CHECK(queue_error_text(st, e.id, &text, &len) == 0 && len == 19 &&
			  !strcmp(text, "new.range: missing\n"),
		      "the error text");
		free(text);
		/* new.range does not exist: the explanation goes. */
		CHECK(store_drops_prune(st) == 0, "prune");
		CHECK(queue_error_lookup(st, "new.error", &e) == -ENOENT,
		      "the refusal of a half drop is pruned");
	}
	store_close(st);
}

static void test_status_view(void)
{
	char dir[4096], dir2[4096];
	struct store *st = open_fresh("view", dir, sizeof(dir)), *st2;
	struct view_job v;
	struct view_capacity cap;
	struct view_node vn;
	struct view_order *orders = NULL;
	size_t norders = 0;
	int64_t job = insert_job(st, "viewed", "rendering", 3), n1 = insert_node(st, "alpha"),
		n2 = insert_node(st, "beta"), fr[6];
	int rc;

	(void)dir2;
	for (int i = 0; i < 6; i++)
		fr[i] = insert_frame(st, job, 10 + i, i < 3 ? "done" : i == 3 ? "rendering" : "failed", 1);
	set_frame(st, fr[0], "node = 1, secs = 2.0, interrupts = 1");
	set_frame(st, fr[1], "node = 1, secs = 4.0");
	set_frame(st, fr[2], "node = 2");
	set_frame(st, fr[4], "attempts = 3");
	set_frame(st, fr[5], "attempts = 1");
	sql_exec(st, "UPDATE frames SET node = %lld WHERE node = 1", (long long)n1);
	sql_exec(st, "UPDATE frames SET node = %lld WHERE node = 2", (long long)n2);
	sql_exec(st, "UPDATE jobs SET error = 'two frames failed', priority = 7 WHERE id = %lld",
		 (long long)job);
	sql_exec(st, "UPDATE nodes SET state = 'idle', gpus = 2, slots = 3 WHERE id = %lld", (long long)n1);

	rc = store_view_job(st, job, &v);
	CHECK(rc == 0, "store_view_job: %d", rc);
	CHECK(!strcmp(v.name, "viewed") && !strcmp(v.state, "rendering"), "name and state");
	CHECK(v.frames == 10 && v.done == 3 && v.inflight == 1 && v.failed == 2 && v.queued == 0,
	      "frames %lld done %lld inflight %lld failed %lld", (long long)v.frames, (long long)v.done,
	      (long long)v.inflight, (long long)v.failed);
	CHECK(v.timed == 2 && v.done_secs == 6.0, "render time: %lld frames, %.1f s", (long long)v.timed,
	      v.done_secs);
	CHECK(v.interrupted == 1, "interrupted %lld", (long long)v.interrupted);
	CHECK(v.retried == 2, "retried %lld: a failed frame's last attempt is not a retry",
	      (long long)v.retried);
	CHECK(v.nper_node == 2 && !strcmp(v.per_node[0].name, "alpha") && v.per_node[0].done == 2 &&
		  !strcmp(v.per_node[1].name, "beta") && v.per_node[1].done == 1,
	      "frames per node");
	CHECK(v.nmissing == 2 && v.missing[0] == 14 && v.missing[1] == 15, "missing frames 14, 15");
	CHECK(v.error && !strcmp(v.error, "two frames failed") && v.priority == 7, "error and priority");
	CHECK(!v.renting, "not renting");
	store_view_job_free(&v);
	CHECK(!v.error && !v.missing, "free clears the owned pointers");

	CHECK(store_view_capacity(st, &cap) == 0 && cap.nodes == 1 && cap.gpus == 2 && cap.slots == 3,
	      "capacity: the idle node only (%d nodes, %d GPUs, %d slots)", cap.nodes, cap.gpus, cap.slots);

	/* A waiting job with servers being rented; a rented node; a held order. */
	{
		int64_t w = insert_job(st, "waits", "waiting", 3), rental;

		sql_exec(
		    st,
		    "INSERT INTO rentals(server, order_id, intent_at, state, job, spot, price_day, usd_rate)"
		    " VALUES (77, 501, 1000, 'booting', %lld, 1, 48, 0.5)",
		    (long long)w);
		rental = sqlite3_last_insert_rowid(st->db);
		rc = store_view_job(st, w, &v);
		CHECK(rc == 0 && v.renting, "waiting while renting: %d %d", rc, v.renting);
		store_view_job_free(&v);
		sql_exec(st, "UPDATE nodes SET provider = 'clore', rental = %lld WHERE id = %lld",
			 (long long)rental, (long long)n2);
		rc = store_view_node(st, n2, &vn);
		CHECK(rc == 0 && vn.rented && vn.rental == rental && vn.order == 501 && vn.server == 77 &&
			  vn.spot,
		      "a rented node's order");
		store_view_node_free(&vn);
		rc = store_view_node(st, n1, &vn);
		CHECK(rc == 0 && !vn.rented && !strcmp(vn.name, "alpha") && vn.slots == 3, "a local node");
		store_view_node_free(&vn);
		CHECK(store_view_node(st, 987654, &vn) == -ENOENT, "a missing node");
		store_view_node_free(&vn);
		rc = store_view_orders(st, &orders, &norders);
		CHECK(rc == 0 && norders == 1, "one held order: %d, %zu", rc, norders);
		if (norders == 1)
			CHECK(orders[0].order == 501 && orders[0].rental == rental &&
				  !strcmp(orders[0].node, "beta") && orders[0].price_h == 1.0 &&
				  !strcmp(orders[0].state, "booting"),
			      "the order: price %.2f/h node %s", orders[0].price_h, orders[0].node);
		free(orders);
	}
	sql_exec(st, "UPDATE jobs SET removed = 1 WHERE name = 'waits'");
	CHECK(store_view_job(st, 987654, &v) == -ENOENT, "a missing job");
	store_view_job_free(&v);

	/* One read transaction is one snapshot: a commit on another
	 * connection in the middle is not seen until it ends. */
	rc = store_open(dir, &st2);
	CHECK(rc == 0, "second connection");
	if (!rc) {
		CHECK(store_read_begin(st) == 0, "read begin");
		CHECK(store_view_job(st, job, &v) == 0 && v.done == 3, "done 3 in the snapshot");
		store_view_job_free(&v);
		CHECK(store_frame_transition(st2, fr[3], 1, FE_RENDERED, &(struct frame_move){.secs = 1}) ==
			  FS_RENDERED,
		      "the other connection moves a frame");
		CHECK(store_view_job(st, job, &v) == 0 && v.inflight == 1 && v.done == 3,
		      "inside the read: the same counts");
		store_view_job_free(&v);
		CHECK(store_in_transaction(st), "a read transaction is open");
		store_read_end(st);
		CHECK(!store_in_transaction(st), "and closed");
		store_close(st2);
	}

	/* The rendered status file agrees with the view, and closes its read. */
	{
		struct util_sb out = {0};

		rc = status_job(st, job, 0, &out);
		CHECK(rc == 0 && out.buf && strstr(out.buf, "\ndone: 3\n") &&
			  strstr(out.buf, "\nfailed: 2\n") && strstr(out.buf, "\nmissing: 14,15\n") &&
			  strstr(out.buf, "node_frames: alpha=2, beta=1\n"),
		      "status text: %s", out.buf ? out.buf : "(none)");
		CHECK(!store_in_transaction(st), "status_job leaves no transaction open");
		util_sb_free(&out);
	}
	store_close(st);
}

static void test_usage_and_hostkeys(void)
{
	char dir[4096], pinned[128], cmd[256];
	struct store *st = open_fresh("usage", dir, sizeof(dir));
	struct usage_farm uf;
	struct usage_job uj;
	int64_t job = insert_job(st, "paid", "rendering", 3), node = insert_node(st, "rented"), rental;

	/* A rental of 24 USD a day (1 USD an hour), 2 slots, held for one hour,
	 * with a 0.5 USD fee, made for the job. */
	sql_exec(
	    st,
	    "INSERT INTO rentals(server, order_id, intent_at, state, job, price_day, usd_rate, fee, created)"
	    " VALUES (1, 9, 0, 'ready', %lld, 48, 0.5, 1, 0)",
	    (long long)job);
	rental = sqlite3_last_insert_rowid(st->db);
	sql_exec(st, "UPDATE nodes SET rental = %lld, slots = 2 WHERE id = %lld", (long long)rental,
		 (long long)node);
	CHECK(store_usage_add(st, node, job, 1800000) == 0, "usage: half an hour of one slot");
	CHECK(store_usage_add(st, node, job, 1800000) == 0, "and another");
	CHECK(store_usage_add(st, node, job, 0) == 0 && store_usage_add(st, 0, job, 5) == 0,
	      "nothing to add");
	CHECK(sql_int(st, "SELECT ms FROM usage WHERE node = %lld AND job = %lld", (long long)node,
		      (long long)job) == 3600000,
	      "usage rows add up");
	CHECK(store_usage_farm(st, 3600000, &uf) == 0, "store_usage_farm");
	CHECK(uf.spent > 1.499 && uf.spent < 1.501 && uf.rate_h == 1.0 && uf.held == 1,
	      "farm: spent %.3f (1 h + fee), rate %.2f/h, %d held", uf.spent, uf.rate_h, uf.held);
	CHECK(uf.used > 0.999 && uf.used < 1.001, "farm used %.3f: one slot-hour of two (0.5) + fee 0.5",
	      uf.used);
	CHECK(store_usage_job(st, job, 3600000, &uj) == 0, "store_usage_job");
	CHECK(uj.used > 0.499 && uj.used < 0.501 && uj.fees == 0.5 && uj.rate_h == 0,
	      "job: used %.3f fees %.2f rate %.2f (no frame in flight)", uj.used, uj.fees, uj.rate_h);
	CHECK(store_rental_cost(st, rental, 3600000) > 1.499, "rental cost");
	sql_exec(st, "UPDATE rentals SET settled = 3.25");
	CHECK(store_rental_cost(st, rental, 3600000) == 3.25, "a settled rental costs its settled figure");

	/* Host keys. */
	CHECK(store_hostkey_get(st, "n1", pinned, sizeof(pinned)) == -ENOENT, "no pin yet");
	CHECK(store_hostkey_pin(st, "n1", "SHA256:aaa", 5) == 0, "pin");
	CHECK(store_hostkey_get(st, "n1", pinned, sizeof(pinned)) == 0 && !strcmp(pinned, "SHA256:aaa"),
	      "the pin is read back");
	CHECK(store_hostkey_pin(st, "n1", "SHA256:bbb", 6) == -EEXIST, "a second pin is refused");
	CHECK(store_hostkey_get(st, "n1", pinned, sizeof(pinned)) == 0 && !strcmp(pinned, "SHA256:aaa"),
	      "the first pin stays");
	store_hostkey_forget_command("n1", cmd, sizeof(cmd));
	CHECK(!strcmp(cmd, "sqlite3 STATE/renderfs.db \"DELETE FROM hostkeys WHERE node = 'n1'\""),
	      "the forget command: %s", cmd);
	sql_exec(st, "DELETE FROM hostkeys WHERE node = 'n1'");
	CHECK(store_hostkey_get(st, "n1", pinned, sizeof(pinned)) == -ENOENT, "the command's SQL forgets");

	/* The waiting error is cleared only when it is a waiting one. */
	job_set_error(st, job, "waiting for a node: 1 of 1 node offline");
	CHECK(store_job_clear_waiting_error(st, job) == 0 &&
		  sql_int(st, "SELECT error IS NULL FROM jobs WHERE id = %lld", (long long)job) == 1,
	      "a waiting error is cleared");
	job_set_error(st, job, "video: could not start ffmpeg");
	store_job_clear_waiting_error(st, job);
	CHECK(sql_int(st, "SELECT error IS NULL FROM jobs WHERE id = %lld", (long long)job) == 0,
	      "another error stays");
	store_close(st);
}

int main(void)
{
	if (!mkdtemp(tmp_root)) {
		perror("test_store: mkdtemp");
		return 2;
	}
	test_next_state();
	test_transitions();
	test_recover();
	test_jobs();
	test_queue();
	test_schema();
	test_job_counts();
	test_release_inputs();
	test_owners();
	test_status_view();
	test_usage_and_hostkeys();
	util_rmtree(tmp_root);
	printf("test_store: %d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
