/*
 * money: see money.h.  The sums come from the store (store/usage_rows.h);
 * what is shared out, and how, is decided here.
 */
#include "jobs/money.h"
#include "store/usage_rows.h"

#include <errno.h>
#include <string.h>

int money_farm_get(struct store *st, int64_t now, struct money_farm *out)
{
	struct usage_farm u;
	int rc = store_usage_farm(st, now, &u);

	memset(out, 0, sizeof(*out));
	if (rc)
		return rc;
	out->spent = u.spent;
	out->rate_h = u.rate_h;
	out->held = u.held;
	out->idle = u.spent > u.used ? u.spent - u.used : 0;
	return 0;
}

int money_job_get(struct store *st, int64_t job, int64_t now, struct money_job *out)
{
	struct usage_job u;
	int rc = store_usage_job(st, job, now, &u);

	memset(out, 0, sizeof(*out));
	if (rc)
		return rc;
	out->spent = u.used + u.fees;
	out->rate_h = u.rate_h;
	return 0;
}

double money_rental_cost(struct store *st, int64_t rental, int64_t now)
{
	return store_rental_cost(st, rental, now);
}
