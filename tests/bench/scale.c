/*
 * scale: the store and the policy with 1,000,000 queued frames and 500
 * slots.  A store is made in a temporary directory (store_open: the real
 * schema, WAL, synchronous=NORMAL) with one job of 1,000,000 queued frames
 * and a few smaller jobs (one finished, one waiting, one paused), and 500
 * slots (50 nodes of 10) then ask for work round-robin, each decision being
 * exactly what runner.c does for a free slot: pick_job's SQL, then
 * sched_pick_job(), then dispatch_one()'s SELECT of the lowest queued
 * frame and its transaction (FE_DISPATCH, job_set_state, SELECT lease,
 * COMMIT).  Each frame leased is given back (FE_INTERRUPT) before the slot
 * asks again, so the queue stays at about a million.
 *
 *   build/tests/bench_scale [DIR] [FRAMES] [DECISIONS]
 *
 * Prints decisions per second, the time of each part, and the peak
 * resident memory (getrusage ru_maxrss) of the whole process.
 */
#include "policy.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define NODES      50
#define SLOTS_PER  10
#define MAX_JOBS   256

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "scale: %s: %s\n", what, strerror(rc < 0 ? -rc : rc));
	exit(1);
}

/* runner.c pick_job(), verbatim SQL. */
static int64_t pick_job(struct store *st, int64_t node, int64_t now, double *t_sql, double *t_pol)
{
	struct sched_job jobs[MAX_JOBS];
	size_t n = 0;
	sqlite3_stmt *s;
	int best;
	double t0 = mono(), t1;

	if (store_prepare(st,
			  "SELECT j.id, j.priority, coalesce((SELECT b.until FROM blocklist b"
			  "   WHERE b.node = ?1 AND b.job = j.id), 0)"
			  " FROM jobs j WHERE j.removed = 0 AND j.state IN ('waiting', 'rendering')"
			  " AND EXISTS (SELECT 1 FROM frames f WHERE f.state = 'queued' AND f.job = j.id)"
			  " ORDER BY j.priority DESC, j.id LIMIT 256",
			  &s))
		return 0;
	sqlite3_bind_int64(s, 1, node);
	while (n < MAX_JOBS && sqlite3_step(s) == SQLITE_ROW) {
		jobs[n].id = sqlite3_column_int64(s, 0);
		jobs[n].priority = sqlite3_column_int(s, 1);
		jobs[n].blocked_until = sqlite3_column_int64(s, 2);
		n++;
	}
	sqlite3_finalize(s);
	t1 = mono();
	best = sched_pick_job(jobs, n, now);
	*t_sql += t1 - t0;
	*t_pol += mono() - t1;
	return best < 0 ? 0 : jobs[best].id;
}

/* runner.c dispatch_one(), verbatim SQL; returns the frame id and lease. */
static int64_t dispatch_one(struct store *st, int64_t node, int slot, int64_t job, int64_t now,
			    int64_t *lease, double *t_sel, double *t_tx)
{
	struct frame_move m = {.now = now, .node = node, .slot = slot, .lease_until = now + 60000};
	sqlite3_stmt *s;
	int64_t fid = 0;
	double t0 = mono(), t1;
	int rc;

	if (store_prepare(st,
			  "SELECT id, frame FROM frames WHERE state = 'queued' AND job = ?"
			  " ORDER BY frame LIMIT 1",
			  &s))
		return 0;
	sqlite3_bind_int64(s, 1, job);
	if (sqlite3_step(s) == SQLITE_ROW)
		fid = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	t1 = mono();
	*t_sel += t1 - t0;
	if (!fid)
		return 0;
	rc = store_begin(st);
	if (rc)
		die("begin", rc);
	rc = store_frame_transition(st, fid, 0, FE_DISPATCH, &m);
	if (rc >= 0) {
		job_set_state(st, job, 1u << JS_WAITING, JS_RENDERING, now);
		rc = store_prepare(st, "SELECT lease FROM frames WHERE id = ?", &s);
		if (!rc) {
			sqlite3_bind_int64(s, 1, fid);
			if (sqlite3_step(s) == SQLITE_ROW)
				*lease = sqlite3_column_int64(s, 0);
			sqlite3_finalize(s);
		}
	}
	if (rc < 0) {
		store_rollback(st);
		die("dispatch", rc);
	}
	rc = store_commit(st);
	if (rc)
		die("commit", rc);
	*t_tx += mono() - t1;
	return fid;
}

/*
 * The same decision with the statements prepared once (sqlite3_prepare_v3,
 * SQLITE_PREPARE_PERSISTENT) and the lease returned by the UPDATE itself
 * (RETURNING): what a statement cache in store.c would give.  Measured
 * beside the real path to size the proposal; not what renderfs runs.
 */
static sqlite3_stmt *cached[8];
static sqlite3_stmt *stmt(struct store *st, int i, const char *sql)
{
	if (!cached[i] && sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &cached[i], NULL))
		die(sqlite3_errmsg(st->db), EIO);
	sqlite3_reset(cached[i]);
	return cached[i];
}

static int64_t decide_cached(struct store *st, int64_t node, int slot, int64_t now, int64_t *lease)
{
	struct sched_job jobs[MAX_JOBS];
	size_t n = 0;
	sqlite3_stmt *s;
	int64_t job, fid = 0;
	int best;

	s = stmt(st, 0,
		 "SELECT j.id, j.priority, coalesce((SELECT b.until FROM blocklist b"
		 "   WHERE b.node = ?1 AND b.job = j.id), 0)"
		 " FROM jobs j WHERE j.removed = 0 AND j.state IN ('waiting', 'rendering')"
		 " AND EXISTS (SELECT 1 FROM frames f WHERE f.state = 'queued' AND f.job = j.id)"
		 " ORDER BY j.priority DESC, j.id LIMIT 256");
	sqlite3_bind_int64(s, 1, node);
	while (n < MAX_JOBS && sqlite3_step(s) == SQLITE_ROW) {
		jobs[n].id = sqlite3_column_int64(s, 0);
		jobs[n].priority = sqlite3_column_int(s, 1);
		jobs[n].blocked_until = sqlite3_column_int64(s, 2);
		n++;
	}
	sqlite3_reset(s);
	best = sched_pick_job(jobs, n, now);
	if (best < 0)
		return 0;
	job = jobs[best].id;
	s = stmt(st, 1, "SELECT id FROM frames WHERE state = 'queued' AND job = ? ORDER BY frame LIMIT 1");
	sqlite3_bind_int64(s, 1, job);
	if (sqlite3_step(s) == SQLITE_ROW)
		fid = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (!fid)
		return 0;
	sqlite3_step(stmt(st, 2, "BEGIN IMMEDIATE"));
	s = stmt(st, 3,
		 "UPDATE frames SET state = 'leased', lease = lease + 1, node = ?2,"
		 " slot = ?3, lease_until = ?4, started = NULL, progress_at = ?5,"
		 " error = NULL WHERE id = ?1 AND state = 'queued' RETURNING lease");
	sqlite3_bind_int64(s, 1, fid);
	sqlite3_bind_int64(s, 2, node);
	sqlite3_bind_int(s, 3, slot);
	sqlite3_bind_int64(s, 4, now + 60000);
	sqlite3_bind_int64(s, 5, now);
	if (sqlite3_step(s) == SQLITE_ROW)
		*lease = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	s = stmt(st, 4, "UPDATE jobs SET state = 'rendering', started = coalesce(started, ?2)"
			" WHERE id = ?1 AND state = 'waiting' AND removed = 0");
	sqlite3_bind_int64(s, 1, job);
	sqlite3_bind_int64(s, 2, now);
	sqlite3_step(s);
	sqlite3_reset(s);
	if (sqlite3_step(stmt(st, 5, "COMMIT")) != SQLITE_DONE)
		die("commit", EIO);
	return fid;
}

static void exec_or_die(struct store *st, const char *sql)
{
	int rc = store_exec(st, sql);
	if (rc)
		die(sql, rc);
}

int main(int argc, char **argv)
{
	char tmpl[] = "/var/tmp/rfs-bench-scale-XXXXXX";
	const char *dir = argc > 1 ? argv[1] : NULL;
	long frames = argc > 2 ? atol(argv[2]) : 1000000;
	long decisions = argc > 3 ? atol(argv[3]) : 20000;
	struct store *st;
	char sql[1024];
	double t0, t_fill, t_sql = 0, t_pol = 0, t_sel = 0, t_tx = 0, t_back = 0, elapsed;
	struct rusage ru;
	int64_t held[NODES * SLOTS_PER][2] = {{0}};
	int rc, proposed = getenv("SCALE_CACHED") != NULL;

	if (!dir) {
		dir = mkdtemp(tmpl);
		if (!dir)
			die("mkdtemp", errno);
	}
	rc = store_open(dir, &st);
	if (rc)
		die("store_open", rc);
	t0 = mono();
	exec_or_die(st, "BEGIN");
	/* The big job, and three others: one done, one paused, one waiting
	 * with a few frames at a lower priority. */
	snprintf(sql, sizeof(sql),
		 "INSERT INTO jobs(id, name, drop_name, state, blend_sha, sidecar, nframes, created, priority)"
		 " VALUES (1, 'big', 'big', 'waiting', 'x', '1-%ld', %ld, 0, 0),"
		 " (2, 'old', 'old', 'done', 'x', '1-1000', 1000, 0, 0),"
		 " (3, 'held', 'held', 'paused', 'x', '1-1000', 1000, 0, 5),"
		 " (4, 'low', 'low', 'waiting', 'x', '1-1000', 1000, 0, -1)",
		 frames, frames);
	exec_or_die(st, sql);
	snprintf(sql, sizeof(sql),
		 "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < %ld)"
		 " INSERT INTO frames(job, frame) SELECT 1, x FROM c",
		 frames);
	exec_or_die(st, sql);
	exec_or_die(st, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000)"
			" INSERT INTO frames(job, frame, state, size, secs) SELECT 2, x, 'done', 1000, 1.5 FROM c;"
			"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000)"
			" INSERT INTO frames(job, frame) SELECT 3, x FROM c;"
			"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000)"
			" INSERT INTO frames(job, frame) SELECT 4, x FROM c;");
	for (int i = 1; i <= NODES; i++) {
		snprintf(sql, sizeof(sql),
			 "INSERT INTO nodes(id, name, provider, slots, state) VALUES (%d, 'n%d', 'ssh', %d, 'idle')",
			 i, i, SLOTS_PER);
		exec_or_die(st, sql);
	}
	/* a blocklist row, so the subquery has something to find */
	exec_or_die(st, "INSERT INTO blocklist(node, job, failures, until) VALUES (1, 4, 3, 0)");
	exec_or_die(st, "COMMIT");
	t_fill = mono() - t0;

	/* Decisions: slot k of node n, round robin; the slot's previous frame
	 * goes back to the queue first (FE_INTERRUPT, timed apart). */
	t0 = mono();
	for (long d = 0; d < decisions; d++) {
		int k = (int)(d % (NODES * SLOTS_PER));
		int64_t node = 1 + k / SLOTS_PER, now = util_now_ms(), job, fid, lease = 0;

		if (held[k][0]) {
			double tb = mono();
			struct frame_move m = {.now = now, .error = "bench"};
			store_frame_transition(st, held[k][0], held[k][1], FE_INTERRUPT, &m);
			t_back += mono() - tb;
		}
		if (proposed) {
			fid = decide_cached(st, node, k % SLOTS_PER, now, &lease);
		} else {
			job = pick_job(st, node, now, &t_sql, &t_pol);
			if (job != 1)
				die("pick_job chose another job", EINVAL);
			fid = dispatch_one(st, node, k % SLOTS_PER, job, now, &lease, &t_sel, &t_tx);
		}
		if (!fid)
			die("nothing dispatched", ENOENT);
		held[k][0] = fid;
		held[k][1] = lease;
	}
	elapsed = mono() - t0 - t_back;
	getrusage(RUSAGE_SELF, &ru);
	for (int i = 0; i < 8; i++)
		sqlite3_finalize(cached[i]);
	printf("scale: %s\n", proposed ? "PROPOSED path: cached statements + RETURNING (not renderfs's code)"
					 : "renderfs's path: runner.c's SQL, store_frame_transition, job_set_state");
	printf("scale: %ld frames queued (+3000 in 3 other jobs), %d slots (%d nodes x %d), store in %s\n",
	       frames, NODES * SLOTS_PER, NODES, SLOTS_PER, dir);
	printf("scale: filled the store in %.1f s\n", t_fill);
	printf("scale: %ld decisions in %.2f s: %.0f decisions/s\n", decisions, elapsed, decisions / elapsed);
	printf("scale: per decision: pick_job SQL %.1f us, sched_pick_job %.2f us, SELECT next frame %.1f us,"
	       " dispatch transaction %.1f us (give-back, not counted: %.1f us)\n",
	       t_sql / decisions * 1e6, t_pol / decisions * 1e6, t_sel / decisions * 1e6,
	       t_tx / decisions * 1e6, t_back / decisions * 1e6);
	printf("scale: peak memory (ru_maxrss) %.1f MB\n", ru.ru_maxrss / 1024.0);
	printf("RESULT decisions_per_s %.0f\nRESULT maxrss_mb %.1f\n", decisions / elapsed, ru.ru_maxrss / 1024.0);
	store_close(st);
	if (argc <= 1) {
		snprintf(sql, sizeof(sql), "rm -rf '%s'", dir);
		if (system(sql) != 0)
			fprintf(stderr, "scale: could not remove %s\n", dir);
	}
	return 0;
}
