/*
 * test_policy: the scheduling policy's pure functions (backend/policy.c),
 * on hand-made facts and a clock passed in.
 */
#include "sched/policy.h"
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

/* Speeds known: by expected finish (policy.h).  Times in ms; H is the
 * holder's average frame time, M the idle node's. */
static void test_duplicate_by_speed(void)
{
	const int64_t now = 1000000;
	struct sched_inflight slow_holder = {.frame_id = 1,
					     .job = 1,
					     .started = now - 5000,
					     .avg_ms = 20000,
					     .holder_ms = 40000,
					     .mine_ms = 10000};
	struct sched_inflight fast_holder = {.frame_id = 2,
					     .job = 1,
					     .started = now - 8000,
					     .avg_ms = 12000,
					     .holder_ms = 10000,
					     .mine_ms = 40000};
	struct sched_inflight f[2];

	/* A fast idle slot rescues a slow holder's frame at once: the holder
	 * needs 35 s more, the duplicate 10 s. */
	CHECK(sched_pick_duplicate(&slow_holder, 1, now) == 0, "a fast slot rescues a slow holder's frame");

	/* A slow idle slot leaves a fast holder's frame alone, although the old
	 * rule would race it (8 s run, past half the 12 s average): the holder
	 * needs 2 s more, the duplicate 40 s. */
	CHECK(sched_pick_duplicate(&fast_holder, 1, now) == -1,
	      "a slow slot leaves a fast holder's frame alone");
	/* Nor once the frame is overdue: the frame is presumed heavy, so the
	 * duplicate would be slower still. */
	fast_holder.started = now - 25000;
	CHECK(sched_pick_duplicate(&fast_holder, 1, now) == -1,
	      "a slow slot leaves an overdue fast holder's frame alone");
	/* With both in view, the slow holder's frame is the pick. */
	fast_holder.started = now - 8000;
	f[0] = fast_holder;
	f[1] = slow_holder;
	CHECK(sched_pick_duplicate(f, 2, now) == 1, "picked %d, want index 1 (the slow holder's frame)",
	      sched_pick_duplicate(f, 2, now));

	/* The largest gain, not the longest running: frame 3 has run 30 s on a
	 * 40 s holder (presumed 30 s left, and 1.5 times heavier than the
	 * average, so 15 s for the duplicate: gain 15 s); frame 1 has run 5 s
	 * (35 s left, 10 s for the duplicate: gain 25 s). */
	f[0] = slow_holder;
	f[0].frame_id = 3;
	f[0].started = now - 30000;
	f[1] = slow_holder;
	CHECK(sched_pick_duplicate(f, 2, now) == 1, "picked %d, want index 1 (the larger gain)",
	      sched_pick_duplicate(f, 2, now));

	/* Not clearly earlier: the holder needs 12 s, the duplicate 10 s; a
	 * gain under a quarter of the duplicate's time is not worth it. */
	f[0] = slow_holder;
	f[0].started = now;
	f[0].holder_ms = 12000;
	CHECK(sched_pick_duplicate(f, 1, now) == -1, "a 2 s gain on a 10 s duplicate is not worth it");
	f[0].holder_ms = 13000;
	CHECK(sched_pick_duplicate(f, 1, now) == 0, "a 3 s gain on a 10 s duplicate is worth it");

	/* Equal speeds: no duplicate while the frame may just be heavy (up to
	 * 3 times the average), then the stall case: run 20 s of 10 s, no;
	 * run 40 s (presumed 40 s left, 30 s for the duplicate), yes. */
	f[0] = slow_holder;
	f[0].holder_ms = f[0].mine_ms = 10000;
	f[0].started = now - 6000;
	CHECK(sched_pick_duplicate(f, 1, now) == -1, "equal speeds, 6 s of 10 s: left alone");
	f[0].started = now - 20000;
	CHECK(sched_pick_duplicate(f, 1, now) == -1, "equal speeds, 20 s of 10 s: left alone");
	f[0].started = now - 40000;
	CHECK(sched_pick_duplicate(f, 1, now) == 0, "equal speeds, 40 s of 10 s: raced as stalled");

	/* A blocked job is never raced, however much it would gain. */
	f[0] = slow_holder;
	f[0].blocked_until = now + 1;
	CHECK(sched_pick_duplicate(f, 1, now) == -1, "a blocked job's frame is left alone");
}

/* One speed unknown: the job's average stands in for it.  Both unknown:
 * the old rule, and only when no frame qualifies by speed. */
static void test_duplicate_unknown_speeds(void)
{
	const int64_t now = 1000000;
	struct sched_inflight f[2];

	/* This node has no done frame of the job yet; the holder is slow (40 s)
	 * and the job's average is 10 s: rescued. */
	f[0] = (struct sched_inflight){
	    .frame_id = 1, .job = 1, .started = now - 1000, .avg_ms = 10000, .holder_ms = 40000};
	CHECK(sched_pick_duplicate(f, 1, now) == 0, "unknown own speed: a slow holder's frame is rescued");
	/* The holder has none; this node is slow (40 s), the average 10 s: the
	 * old rule would race it (run 6 s, past half the average), this does
	 * not. */
	f[0] = (struct sched_inflight){
	    .frame_id = 1, .job = 1, .started = now - 6000, .avg_ms = 10000, .mine_ms = 40000};
	CHECK(sched_pick_duplicate(f, 1, now) == -1, "unknown holder speed: a slow slot leaves it alone");

	/* Both unknown: the old rule, the longest running past half the
	 * average. */
	f[0] = (struct sched_inflight){.frame_id = 1, .job = 1, .started = now - 6000, .avg_ms = 10000};
	f[1] = (struct sched_inflight){.frame_id = 2, .job = 1, .started = now - 7000, .avg_ms = 10000};
	CHECK(sched_pick_duplicate(f, 2, now) == 1, "picked %d, want index 1 (the longest running)",
	      sched_pick_duplicate(f, 2, now));
	f[1].started = now - 4000;
	CHECK(sched_pick_duplicate(f, 2, now) == 0, "picked %d, want index 0 (the only one past half)",
	      sched_pick_duplicate(f, 2, now));
	/* A frame that qualifies by speed comes first, though the other has run
	 * longer. */
	f[1] = (struct sched_inflight){.frame_id = 2,
				       .job = 1,
				       .started = now - 1000,
				       .avg_ms = 10000,
				       .holder_ms = 40000,
				       .mine_ms = 10000};
	CHECK(sched_pick_duplicate(f, 2, now) == 1, "picked %d, want index 1 (known to gain)",
	      sched_pick_duplicate(f, 2, now));
	/* One known not to be worth it leaves the old rule to the other. */
	f[1].holder_ms = 10000;
	f[1].mine_ms = 40000;
	CHECK(sched_pick_duplicate(f, 2, now) == 0, "picked %d, want index 0 (old rule)",
	      sched_pick_duplicate(f, 2, now));
	/* Only one speed known and no average: nothing to judge by; the old
	 * rule's 2 s applies. */
	f[0] = (struct sched_inflight){.frame_id = 1, .job = 1, .started = now - 2500, .holder_ms = 40000};
	CHECK(sched_pick_duplicate(f, 1, now) == 0, "no average, 2.5 s: the old rule races it");
}

/* Waiting frames: leased, the holder has not begun (started is the lease's
 * last renewal). */
static void test_duplicate_waiting(void)
{
	const int64_t now = 1000000;
	struct sched_inflight f = {.frame_id = 1,
				   .job = 1,
				   .started = now - 3000,
				   .waiting = 1,
				   .avg_ms = 4000,
				   .holder_ms = 4000,
				   .mine_ms = 4000};

	/* Equal speeds: no gain by expected finish, but a holder that has not
	 * begun may be held up (a slow link): the earlier rule races it once it
	 * has waited half the average. */
	CHECK(sched_pick_duplicate(&f, 1, now) == 0, "equal speeds, waited 3 s: raced");
	f.started = now - 1000;
	CHECK(sched_pick_duplicate(&f, 1, now) == -1, "equal speeds, waited 1 s: left alone");
	/* Somewhat slower by the averages (noise): still raced. */
	f.started = now - 3000;
	f.mine_ms = 5000;
	CHECK(sched_pick_duplicate(&f, 1, now) == 0, "a slot 1.25 times slower races a waiting frame");
	/* Clearly slower: left alone. */
	f.mine_ms = 16000;
	CHECK(sched_pick_duplicate(&f, 1, now) == -1, "a slot 4 times slower leaves a waiting frame alone");
	/* A slow holder's waiting frame is rescued by a fast slot at once: it
	 * will take the holder 16 s once begun, the duplicate 4 s. */
	f.started = now;
	f.holder_ms = 16000;
	f.mine_ms = 4000;
	CHECK(sched_pick_duplicate(&f, 1, now) == 0, "a fast slot rescues a slow holder's waiting frame");
}

int main(void)
{
	test_pick_job();
	test_pick_duplicate();
	test_duplicate_by_speed();
	test_duplicate_unknown_speeds();
	test_duplicate_waiting();
	return check_summary("test_policy");
}
