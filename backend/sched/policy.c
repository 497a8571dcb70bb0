/*
 * policy: see policy.h.  Kept apart from the runner so that it can be tested
 * and simulated without a store or a node.
 */
#include "sched/policy.h"

#include <math.h>

int sched_pick_job(const struct sched_job *jobs, size_t n, int64_t now)
{
	int best = -1;

	for (size_t i = 0; i < n; i++) {
		const struct sched_job *j = &jobs[i];

		if (j->blocked_until > now)
			continue;
		if (best < 0 || j->priority > jobs[best].priority ||
		    (j->priority == jobs[best].priority && j->id < jobs[best].id))
			best = (int)i;
	}
	return best;
}

/* Judge duplicating f by expected finish (rule 1 in policy.h): sets *gain
 * and the duplicate's expected time *dup_ms (both ms) and returns 1, and
 * *fallback when rule 2 may take it instead; or returns 0 when the speeds
 * are not known well enough for that. */
static int dup_gain(const struct sched_inflight *f, int64_t now, double *gain, double *dup_ms, int *fallback)
{
	double h = f->holder_ms, m = f->mine_ms;
	double e = now > f->started ? (double)(now - f->started) : 0;
	double w, holder_left;

	if (h <= 0 && m <= 0)
		return 0;
	if (h <= 0)
		h = f->avg_ms;
	if (m <= 0)
		m = f->avg_ms;
	if (h <= 0 || m <= 0)
		return 0;
	if (f->waiting) {
		*dup_ms = m;
		*gain = h - m;
		*fallback = m <= SCHED_DUP_WAIT_SLOWER * h;
		return 1;
	}
	holder_left = h - e > e ? h - e : e;
	w = 2 * e / h;
	if (w < 1)
		w = 1;
	if (w > SCHED_DUP_MAX_WEIGHT)
		w = SCHED_DUP_MAX_WEIGHT;
	*dup_ms = w * m;
	*gain = holder_left - *dup_ms;
	*fallback = 0;
	return 1;
}

int sched_pick_duplicate(const struct sched_inflight *f, size_t n, int64_t now)
{
	int best = -1, old = -1;
	double best_gain = 0;

	for (size_t i = 0; i < n; i++) {
		double dup_ms, gain, min_ms;
		int fallback = 1;

		if (f[i].blocked_until > now)
			continue;
		if (dup_gain(&f[i], now, &gain, &dup_ms, &fallback) && gain >= dup_ms * SCHED_DUP_MARGIN) {
			if (best < 0 || gain > best_gain ||
			    (gain == best_gain && f[i].started < f[best].started)) {
				best = (int)i;
				best_gain = gain;
			}
			continue;
		}
		if (!fallback)
			continue;
		/* Rule 2: the longest running, past half the average. */
		min_ms = f[i].avg_ms > 0 ? f[i].avg_ms / 2 : 2000;
		if ((double)(now - f[i].started) < min_ms)
			continue;
		if (old < 0 || f[i].started < f[old].started)
			old = (int)i;
	}
	return best >= 0 ? best : old;
}

/* ---- frame choice (see policy.h) ---- */

size_t sched_spread_order(int64_t first, int64_t last, int64_t *out, size_t max)
{
	/* The gaps still to bisect, breadth first: a ring of (a, b) pairs
	 * whose ends are both emitted.  Each emitted frame adds at most one
	 * gap net, so SCHED_SPREAD_MAX + 2 of them fit. */
	enum { RING = SCHED_SPREAD_MAX + 4 };
	int64_t ga[RING], gb[RING];
	size_t head = 0, count = 0, k = 0;

	if (last < first || max == 0 || !out)
		return 0;
	if (max > SCHED_SPREAD_MAX)
		max = SCHED_SPREAD_MAX;
	out[k++] = first;
	if (last == first || k == max)
		return k;
	out[k++] = last;
	ga[0] = first;
	gb[0] = last;
	count = 1;
	while (count > 0 && k < max) {
		int64_t a = ga[head], b = gb[head];
		uint64_t span = (uint64_t)b - (uint64_t)a;
		int64_t mid = (int64_t)((uint64_t)a + span / 2);

		head = (head + 1) % RING;
		count--;
		if (span < 2)
			continue; /* no frame between a and b */
		out[k++] = mid;
		ga[(head + count) % RING] = a;
		gb[(head + count) % RING] = mid;
		count++;
		ga[(head + count) % RING] = mid;
		gb[(head + count) % RING] = b;
		count++;
	}
	return k;
}

/* A done fact's weight (secs x speed), or 0 when the fact is not valid. */
static double fact_weight(const struct sched_done_fact *d)
{
	double s = d->secs, v = d->node_speed;

	/* The comparisons are false for NaN. */
	if (!(s > 0 && s <= SCHED_MAX_SECS && v > 0 && v <= SCHED_MAX_SPEED))
		return 0;
	return s * v;
}

/* From the nearest valid neighbours below (lo, weight wlo) and above. */
static double interpolate(int64_t frame, int have_lo, int64_t lo, double wlo, int have_hi, int64_t hi,
			  double whi)
{
	double t;

	if (have_lo && have_hi) {
		if (hi == lo)
			return wlo;
		t = ((double)frame - (double)lo) / ((double)hi - (double)lo);
		return wlo + (whi - wlo) * t;
	}
	if (have_lo)
		return wlo;
	if (have_hi)
		return whi;
	return 0;
}

double sched_frame_weight(int64_t frame, const struct sched_done_fact *done, size_t nd)
{
	int have_lo = 0, have_hi = 0;
	int64_t lo = 0, hi = 0;
	double wlo = 0, whi = 0;

	for (size_t i = 0; done && i < nd; i++) {
		double w = fact_weight(&done[i]);
		int64_t f = done[i].frame;

		if (w <= 0)
			continue;
		if (f == frame)
			return w;
		if (f < frame && (!have_lo || f > lo)) {
			have_lo = 1;
			lo = f;
			wlo = w;
		} else if (f > frame && (!have_hi || f < hi)) {
			have_hi = 1;
			hi = f;
			whi = w;
		}
	}
	return interpolate(frame, have_lo, lo, wlo, have_hi, hi, whi);
}

/* sched_frame_weight() on done facts sorted by frame: a binary search,
 * then the nearest valid fact on each side. */
static double weight_sorted(int64_t frame, const struct sched_done_fact *done, size_t nd)
{
	size_t a = 0, b = nd;
	int have_lo = 0, have_hi = 0;
	int64_t lo = 0, hi = 0;
	double wlo = 0, whi = 0;

	while (a < b) { /* the first fact with frame >= frame */
		size_t m = a + (b - a) / 2;
		if (done[m].frame < frame)
			a = m + 1;
		else
			b = m;
	}
	for (size_t i = a; i < nd; i++) {
		double w = fact_weight(&done[i]);
		if (w > 0) {
			if (done[i].frame == frame)
				return w;
			have_hi = 1;
			hi = done[i].frame;
			whi = w;
			break;
		}
	}
	for (size_t i = a; i-- > 0;) {
		double w = fact_weight(&done[i]);
		if (w > 0) {
			have_lo = 1;
			lo = done[i].frame;
			wlo = w;
			break;
		}
	}
	return interpolate(frame, have_lo, lo, wlo, have_hi, hi, whi);
}

static int known(double v)
{
	return v > 0 && v <= SCHED_MAX_SPEED * 1e6; /* false for NaN */
}

/* The index of frame in queued (sorted or not), or -1. */
static int find_queued(const struct sched_frame_fact *q, size_t n, int sorted, int64_t frame)
{
	if (sorted) {
		size_t a = 0, b = n;
		while (a < b) {
			size_t m = a + (b - a) / 2;
			if (q[m].frame < frame)
				a = m + 1;
			else
				b = m;
		}
		return a < n && q[a].frame == frame ? (int)a : -1;
	}
	for (size_t i = 0; i < n; i++)
		if (q[i].frame == frame)
			return (int)i;
	return -1;
}

int sched_pick_frame(const struct sched_frame_fact *queued, size_t n, const struct sched_done_fact *done,
		     size_t nd, const struct sched_pick *ctx)
{
	int64_t spread[SCHED_SPREAD_MAX];
	size_t ns, nspread;
	int qsorted = 1, dsorted = 1, any_done = 0;
	int aim_i = -1, light_i = -1;
	double wmax = 0, wsum = 0, aim, w_aim = 0, w_light = 0, cap = HUGE_VAL;
	double slot, fastest, total;

	if (!queued || n == 0 || !ctx)
		return -1;
	if (n > SCHED_PICK_MAX)
		n = SCHED_PICK_MAX;
	if (!done)
		nd = 0;
	if (nd > SCHED_PICK_MAX_DONE)
		nd = SCHED_PICK_MAX_DONE;
	for (size_t i = 1; i < n; i++)
		if (queued[i].frame < queued[i - 1].frame)
			qsorted = 0;
	for (size_t i = 0; i < nd; i++) {
		if (i > 0 && done[i].frame < done[i - 1].frame)
			dsorted = 0;
		if (fact_weight(&done[i]) > 0)
			any_done = 1;
	}

	/* 1. The spread; on, while nothing is known. */
	nspread = any_done ? SCHED_SPREAD_FRAMES : SCHED_SPREAD_MAX;
	ns = sched_spread_order(ctx->first, ctx->last, spread, nspread);
	for (size_t k = 0; k < ns; k++) {
		int i = find_queued(queued, n, qsorted, spread[k]);
		if (i >= 0)
			return i;
	}
	if (!any_done) {
		int low = 0;
		for (size_t i = 1; i < n; i++)
			if (queued[i].frame < queued[low].frame)
				low = (int)i;
		return low;
	}

	/* 2. By estimated weight.  Every estimate is > 0 here: some valid
	 * fact exists, so each frame has a neighbour on one side at least. */
	slot = ctx->slot_speed;
	fastest = ctx->fastest_speed;
	total = ctx->total_speed;
	for (size_t i = 0; i < n; i++) {
		double w = dsorted ? weight_sorted(queued[i].frame, done, nd)
				   : sched_frame_weight(queued[i].frame, done, nd);
		if (w > wmax)
			wmax = w;
		wsum += w;
	}
	aim = wmax;
	/* 3. The tail: w / slot > r + w / fastest  <=>  w > cap. */
	if (known(slot) && known(fastest) && known(total) && slot * SCHED_SLOW_FACTOR <= fastest) {
		double scale = ctx->queued_total > n ? (double)ctx->queued_total / (double)n : 1.0;
		double inflight =
		    ctx->inflight_work > 0 && ctx->inflight_work < 1e300 ? ctx->inflight_work : 0;
		double r = (wsum * scale + inflight) / total;

		cap = r / (1 / slot - 1 / fastest);
		if (aim > cap)
			aim = cap;
	}
	aim *= 1 + 1e-9; /* the heaviest itself qualifies despite rounding */
	for (size_t i = 0; i < n; i++) {
		double w = dsorted ? weight_sorted(queued[i].frame, done, nd)
				   : sched_frame_weight(queued[i].frame, done, nd);
		int64_t f = queued[i].frame;

		if (w <= aim && (aim_i < 0 || w > w_aim || (w == w_aim && f < queued[aim_i].frame))) {
			aim_i = (int)i;
			w_aim = w;
		}
		if (light_i < 0 || w < w_light || (w == w_light && f < queued[light_i].frame)) {
			light_i = (int)i;
			w_light = w;
		}
	}
	if (aim_i >= 0)
		return aim_i;
	return w_light <= cap ? light_i : -1;
}
