/*
 * test_policy: the scheduling policy's pure functions (backend/policy.c),
 * on hand-made facts and a clock passed in.
 */
#include "sched/policy.h"
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

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

/* The spread order: first, last, middle, quarters, ... each frame once. */
static void test_spread_order(void)
{
	int64_t out[SCHED_SPREAD_MAX], again[SCHED_SPREAD_MAX];
	int seen[100] = {0}, once = 1;
	size_t k;

	CHECK(sched_spread_order(1, 1, out, 8) == 1 && out[0] == 1, "one frame: itself");
	k = sched_spread_order(1, 2, out, 8);
	CHECK(k == 2 && out[0] == 1 && out[1] == 2, "two frames: first, last (got %zu)", k);
	k = sched_spread_order(1, 3, out, 8);
	CHECK(k == 3 && out[0] == 1 && out[1] == 3 && out[2] == 2, "three frames: 1, 3, 2");
	k = sched_spread_order(0, 99, out, SCHED_SPREAD_MAX);
	CHECK(k == 100, "100 frames: all of them (got %zu)", k);
	CHECK(out[0] == 0 && out[1] == 99 && out[2] == 49, "first, last, middle: %lld %lld %lld",
	      (long long)out[0], (long long)out[1], (long long)out[2]);
	CHECK(out[3] == 24 && out[4] == 74, "then the quarters: %lld %lld", (long long)out[3],
	      (long long)out[4]);
	CHECK(out[5] == 12 && out[6] == 36 && out[7] == 61 && out[8] == 86,
	      "then the eighths, left to right");
	for (k = 0; k < 100; k++) {
		if (out[k] < 0 || out[k] > 99 || seen[out[k]]++)
			once = 0;
	}
	CHECK(once, "each of the 100 frames exactly once");
	CHECK(sched_spread_order(0, 99, again, SCHED_SPREAD_MAX) == 100 &&
		  memcmp(out, again, sizeof(int64_t) * 100) == 0,
	      "deterministic");
	CHECK(sched_spread_order(0, 99, out, 5) == 5 && out[4] == 74, "a prefix when max is small");
	CHECK(sched_spread_order(5, 4, out, 8) == 0, "an empty range");
	CHECK(sched_spread_order(INT64_MIN, INT64_MAX, out, 3) == 3 && out[2] == -1,
	      "the widest range does not overflow (middle %lld)", (long long)out[2]);
}

/* Weights from the nearest done neighbours, normalised by their node's speed. */
static void test_frame_weight(void)
{
	struct sched_done_fact d[] = {
	    {.frame = 10, .secs = 100, .node_speed = 1}, /* weight 100 */
	    {.frame = 20, .secs = 50, .node_speed = 4},  /* weight 200: a node 4x as fast */
	};
	struct sched_done_fact bad[] = {
	    {.frame = 14, .secs = NAN, .node_speed = 1},   {.frame = 15, .secs = -5, .node_speed = 1},
	    {.frame = 16, .secs = 1e300, .node_speed = 1}, {.frame = 17, .secs = 10, .node_speed = INFINITY},
	    {.frame = 18, .secs = 10, .node_speed = 0},
	};
	struct sched_done_fact mixed[7];
	double w;

	w = sched_frame_weight(15, d, 2);
	CHECK(fabs(w - 150) < 1e-9, "half way between 100 and 200: %g", w);
	w = sched_frame_weight(12, d, 2);
	CHECK(fabs(w - 120) < 1e-9, "a fifth of the way: %g", w);
	CHECK(sched_frame_weight(5, d, 2) == 100, "below all: the nearest one's");
	CHECK(sched_frame_weight(30, d, 2) == 200, "above all: the nearest one's (secs x speed)");
	CHECK(sched_frame_weight(20, d, 2) == 200, "a done frame: its own");
	CHECK(sched_frame_weight(15, d, 0) == 0, "no neighbours: neutral (0)");
	CHECK(sched_frame_weight(15, NULL, 3) == 0, "no facts: neutral");
	CHECK(sched_frame_weight(15, bad, 5) == 0, "NaN, negative, 1e300 secs, bad speeds: all ignored");
	mixed[0] = d[1];
	memcpy(&mixed[1], bad, sizeof(bad));
	mixed[6] = d[0];
	w = sched_frame_weight(15, mixed, 7);
	CHECK(fabs(w - 150) < 1e-9, "bad facts between the good ones are skipped, any order: %g", w);
}

/* Frame choice: spread first, then heaviest, slow slots capped at the tail. */
static void test_pick_frame(void)
{
	struct sched_frame_fact q[100];
	struct sched_done_fact d[3];
	struct sched_pick ctx = {
	    .first = 0, .last = 99, .slot_speed = 1, .fastest_speed = 1, .total_speed = 1};
	int64_t spread[SCHED_SPREAD_FRAMES];
	int order_ok = 1, i;

	for (i = 0; i < 100; i++)
		q[i].frame = i;
	CHECK(sched_pick_frame(q, 0, NULL, 0, &ctx) == -1, "n = 0: nothing");
	CHECK(sched_pick_frame(q, 5, NULL, 0, NULL) == -1, "no context: nothing");
	/* Nothing done: the spread order, taking each pick out of the queue. */
	sched_spread_order(0, 99, spread, SCHED_SPREAD_FRAMES);
	{
		struct sched_frame_fact left[100];
		size_t nl = 100;
		memcpy(left, q, sizeof(q));
		for (int k = 0; k < SCHED_SPREAD_FRAMES; k++) {
			int p = sched_pick_frame(left, nl, NULL, 0, &ctx);
			if (p < 0 || left[p].frame != spread[k])
				order_ok = 0;
			if (p >= 0)
				memmove(&left[p], &left[p + 1], sizeof(left[0]) * (nl - (size_t)p - 1)), nl--;
		}
	}
	CHECK(order_ok, "first picks follow the spread order");

	/* Past the spread: 3 done frames; the middle of the shot is heavy. */
	d[0] = (struct sched_done_fact){.frame = 0, .secs = 10, .node_speed = 1};
	d[1] = (struct sched_done_fact){.frame = 50, .secs = 25, .node_speed = 2}; /* weight 50 */
	d[2] = (struct sched_done_fact){.frame = 99, .secs = 10, .node_speed = 1};
	{
		/* queued: frames away from the spread */
		struct sched_frame_fact qq[] = {{3}, {45}, {47}, {95}};
		ctx.first = 0;
		ctx.last = 99;
		/* Spread frames are all done or leased: not queued here. */
		ctx.slot_speed = 4;
		ctx.fastest_speed = 4;
		ctx.total_speed = 8;
		i = sched_pick_frame(qq, 4, d, 3, &ctx);
		CHECK(i == 2, "the fastest slot takes the heaviest estimate (frame 47): got %d", i);
		/* Estimates 12.4, 46, 47.6, 13.27: R = 119.27 / 8 = 14.9 s.  A slot
		 * 4x slower than the fastest: cap = 14.9 / (1 - 0.25) = 19.9, so
		 * frames 3 and 95 only; the heavier of the two, 95. */
		ctx.slot_speed = 1;
		i = sched_pick_frame(qq, 4, d, 3, &ctx);
		CHECK(i == 3, "a slow slot takes a light frame at the end (frame 95): got %d", i);
		/* 8x slower: cap = 14.9 / 1.75 = 8.5, below every estimate. */
		ctx.slot_speed = 0.5;
		i = sched_pick_frame(qq, 4, d, 3, &ctx);
		CHECK(i == -1, "a slot 8x slower leaves even the light frames: got %d", i);
		ctx.slot_speed = 1;
		/* Much more work left (queued_total): the slow slot may take heavy ones. */
		ctx.queued_total = 400;
		i = sched_pick_frame(qq, 4, d, 3, &ctx);
		CHECK(i == 2, "with much work left the slow slot takes the heaviest: got %d", i);
		/* Nothing light enough: leave it to faster slots. */
		ctx.queued_total = 0;
		ctx.slot_speed = 0.05;
		i = sched_pick_frame(&qq[1], 2, d, 3, &ctx);
		CHECK(i == -1, "a very slow slot leaves the heavy tail alone: got %d", i);
		/* Unknown speeds: no cap, the heaviest. */
		ctx.slot_speed = NAN;
		i = sched_pick_frame(qq, 4, d, 3, &ctx);
		CHECK(i == 2, "unknown slot speed: the heaviest");
		/* Unsorted queued and done give the same answer. */
		{
			struct sched_frame_fact qr[] = {{95}, {47}, {3}, {45}};
			struct sched_done_fact dr[] = {d[2], d[0], d[1]};
			ctx.slot_speed = 4;
			i = sched_pick_frame(qr, 4, dr, 3, &ctx);
			CHECK(i == 1, "any order: frame 47 again (index %d)", i);
		}
		/* Hostile done facts only: as if nothing were done (spread order on,
		 * then lowest number). */
		{
			struct sched_done_fact hostile[] = {{.frame = 47, .secs = NAN, .node_speed = 1},
							    {.frame = 3, .secs = -1, .node_speed = 1},
							    {.frame = 95, .secs = 1e300, .node_speed = 1}};
			i = sched_pick_frame(qq, 4, hostile, 3, &ctx);
			CHECK(i >= 0 && i < 4, "hostile facts: still a valid index (%d)", i);
			CHECK(i == 0, "hostile facts are ignored: lowest frame, not frame 95 (%d)", i);
		}
	}
}

int main(void)
{
	test_pick_job();
	test_pick_duplicate();
	test_duplicate_by_speed();
	test_duplicate_unknown_speeds();
	test_duplicate_waiting();
	test_spread_order();
	test_frame_weight();
	test_pick_frame();
	return check_summary("test_policy");
}
