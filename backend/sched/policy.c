/*
 * policy: see policy.h.  Kept apart from the runner so that it can be tested
 * and simulated without a store or a node.
 */
#include "sched/policy.h"

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
