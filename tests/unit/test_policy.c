/*
 * test_policy: the scheduling policy's pure functions (backend/policy.c),
 * on hand-made facts and a clock passed in.
 */
#include "policy.h"
#include "check.h"

#include <stdio.h>

static void test_pick_job(void)
{
	const int64_t now = 1000000;
	struct sched_job none[1] = {{0}};
	struct sched_job jobs[] = {
	    {.id = 7, .priority = 0, .blocked_until = 0},
	    {.id = 3, .priority = 0, .blocked_until = 0},
	    {.id = 9, .priority = 5, .blocked_until = now + 1},
	    {.id = 12, .priority = 2, .blocked_until = now - 1},
	};

	CHECK(sched_pick_job(none, 0, now) == -1, "no jobs, no pick");
	/* Highest priority the node may take: 9 is blocked until later, 12's
	 * block has run out. */
	CHECK(sched_pick_job(jobs, 4, now) == 3, "picked %d, want index 3 (job 12)",
	      sched_pick_job(jobs, 4, now));
	/* Once 9's block runs out, it wins on priority. */
	CHECK(sched_pick_job(jobs, 4, now + 1) == 2, "forgiven job 9 first");
	/* Equal priority: the older (smaller id) job first. */
	CHECK(sched_pick_job(jobs, 2, now) == 1, "job 3 before job 7");
	/* Everything blocked: nothing. */
	for (int i = 0; i < 4; i++)
		jobs[i].blocked_until = now + 10;
	CHECK(sched_pick_job(jobs, 4, now) == -1, "all blocked, no pick");
}

static void test_pick_duplicate(void)
{
	const int64_t now = 100000;
	struct sched_inflight f[] = {
	    /* running 1 s of a 4 s average: not yet worth a second render */
	    {.frame_id = 1, .job = 1, .started = now - 1000, .avg_ms = 4000, .blocked_until = 0},
	    /* running 3 s of a 4 s average */
	    {.frame_id = 2, .job = 1, .started = now - 3000, .avg_ms = 4000, .blocked_until = 0},
	    /* running longest, but this node is blocked for its job */
	    {.frame_id = 3, .job = 2, .started = now - 9000, .avg_ms = 1000, .blocked_until = now + 1},
	    /* no average yet: needs 2 s; it has run 2.5 s */
	    {.frame_id = 4, .job = 3, .started = now - 2500, .avg_ms = 0, .blocked_until = 0},
	};

	CHECK(sched_pick_duplicate(f, 0, now) == -1, "nothing in flight, nothing to race");
	CHECK(sched_pick_duplicate(f, 1, now) == -1, "a frame at a quarter of its average is left alone");
	/* Of 2 (3 s) and 4 (2.5 s), the longest running. */
	CHECK(sched_pick_duplicate(f, 4, now) == 1, "picked %d, want index 1 (frame 2)",
	      sched_pick_duplicate(f, 4, now));
	/* When the block runs out, frame 3 has run longest. */
	CHECK(sched_pick_duplicate(f, 4, now + 1) == 2, "frame 3 once its job is allowed");
	/* No average and under 2 s: left alone. */
	f[3].started = now - 1500;
	CHECK(sched_pick_duplicate(&f[3], 1, now) == -1, "no average, 1.5 s: not yet");
}

int main(void)
{
	test_pick_job();
	test_pick_duplicate();
	printf("test_policy: %d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
