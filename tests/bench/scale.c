/*
 * scale: the store and the policy with 1,000,000 queued frames and 500
 * slots.  A store is made in a temporary directory (store_open: the real
 * schema, WAL, synchronous=NORMAL) with one job of 1,000,000 queued frames
 * and a few smaller jobs (one finished, one waiting, one paused), and 500
 * slots (50 nodes of 10) then ask for work round-robin, each decision made
 * by the runner's own functions: runner_pick_job() (the store's facts and
 * sched_pick_job()) and runner_lease_frame() (the lowest queued frame and
 * its FE_DISPATCH transaction).  Each frame leased is given back (FE_INTERRUPT) before the slot
 * asks again, so the queue stays at about a million.
 *
 *   build/tests/bench_scale [DIR] [FRAMES] [DECISIONS]
 *
 * Prints decisions per second, the time of each part, and the peak
 * resident memory (getrusage ru_maxrss) of the whole process.
 */
#include "sched/policy.h"
#include "sched/runner.h"
#include "store/store.h"
#include "core/util.h"

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
/* One decision through the runner's own code: the pick (store facts +
 * policy) and the lease of the job's next frame, each timed. */
static int64_t decide(struct store *st, int64_t node, int slot, int64_t now, int64_t *lease, double *t_pick,
		      double *t_lease)
{
	struct lease_grant g;
	double t = mono();
	int64_t job = runner_pick_job(st, node, now);
	int rc;

	*t_pick += mono() - t;
	if (job != 1)
		die("runner_pick_job chose another job", EINVAL);
	t = mono();
	rc = runner_lease_frame(st, node, slot, job, 60000, now, &g);
	*t_lease += mono() - t;
	if (rc)
		die("runner_lease_frame", rc);
	*lease = g.lease;
	return g.frame_id;
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
	double t0, t_fill, t_pick = 0, t_lease = 0, t_back = 0, elapsed;
	struct rusage ru;
	int64_t held[NODES * SLOTS_PER][2] = {{0}};
	int rc;

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
		int64_t node = 1 + k / SLOTS_PER, now = util_now_ms(), fid, lease = 0;

		if (held[k][0]) {
			double tb = mono();
			struct frame_move m = {.now = now, .error = "bench"};
			store_frame_transition(st, held[k][0], held[k][1], FE_INTERRUPT, &m);
			t_back += mono() - tb;
		}
		fid = decide(st, node, k % SLOTS_PER, now, &lease, &t_pick, &t_lease);
		if (!fid)
			die("nothing dispatched", ENOENT);
		held[k][0] = fid;
		held[k][1] = lease;
	}
	elapsed = mono() - t0 - t_back;
	getrusage(RUSAGE_SELF, &ru);
	printf("scale: renderfs's path: runner_pick_job() and runner_lease_frame() from runner.c\n");
	printf("scale: %ld frames queued (+3000 in 3 other jobs), %d slots (%d nodes x %d), store in %s\n",
	       frames, NODES * SLOTS_PER, NODES, SLOTS_PER, dir);
	printf("scale: filled the store in %.1f s\n", t_fill);
	printf("scale: %ld decisions in %.2f s: %.0f decisions/s\n", decisions, elapsed, decisions / elapsed);
	printf("scale: per decision: pick (facts + policy) %.1f us, lease of the next frame %.1f us"
	       " (give-back, not counted: %.1f us)\n",
	       t_pick / decisions * 1e6, t_lease / decisions * 1e6, t_back / decisions * 1e6);
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
