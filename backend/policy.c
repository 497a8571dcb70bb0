/*
 * policy: see policy.h.  Kept apart from the runner so that it can be tested
 * and simulated without a store or a node.
 */
#include "policy.h"

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

int sched_pick_duplicate(const struct sched_inflight *f, size_t n, int64_t now)
{
	int best = -1;

	for (size_t i = 0; i < n; i++) {
		double min_ms = f[i].avg_ms > 0 ? f[i].avg_ms / 2 : 2000;

		if (f[i].blocked_until > now || (double)(now - f[i].started) < min_ms)
			continue;
		if (best < 0 || f[i].started < f[best].started)
			best = (int)i;
	}
	return best;
}
