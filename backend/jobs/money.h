/*
 * money: what rented nodes cost, from the rentals table, and how that is
 * shared out among jobs.  All figures are USD.
 *
 * A rental costs its per-day price / 24 x the hours from the order's
 * creation until it ended (or now), plus its creation fee; once Clore's
 * own final figure for an ended order is known (settled), that is used
 * instead.  A job is charged the slot time its frames used on each rented
 * node (usage table) at that node's price per slot, plus the creation fees
 * of the orders made for it; what no job used is idle.
 *
 * Every function reads inside the caller's transaction (status renders
 * under one read transaction) and only reads.
 */
#ifndef RENDERFS_MONEY_H
#define RENDERFS_MONEY_H

#include "store/store.h"

struct money_farm {
	double spent;  /* every rental this state dir ever made */
	double rate_h; /* the rentals held now, per hour */
	double idle;   /* spent that no job used */
	int held;      /* orders held (booting, ready, releasing) */
};

struct money_job {
	double spent;  /* slot time on rented nodes + fees of orders made for it */
	double rate_h; /* its share of the held nodes' rate, by slots rendering it now */
};

int money_farm_get(struct store *st, int64_t now_ms, struct money_farm *out);
int money_job_get(struct store *st, int64_t job, int64_t now_ms, struct money_job *out);
/* The cost so far of one rental (rentals.id). */
double money_rental_cost(struct store *st, int64_t rental, int64_t now_ms);

#endif
