/*
 * usage_rows: the sums money is made of -- slot time per node and job
 * (the usage table) and what the rentals cost, all in USD.  The rules are
 * described in jobs/money.h, which shares them out; this file owns their
 * SQL.  Every read runs inside the caller's transaction (status renders
 * under one read transaction) and only reads.  Implemented in
 * usage_rows.c.  Nothing returned needs freeing.
 */
#ifndef RENDERFS_STORE_USAGE_ROWS_H
#define RENDERFS_STORE_USAGE_ROWS_H

#include <stdint.h>
#include "store/store.h"

/* Slot time (ms) that job's frames used on node: rented nodes' cost is
 * shared out among jobs by it. */
int store_usage_add(struct store *st, int64_t node, int64_t job, int64_t ms);

struct usage_farm {
	double spent;  /* every rental not void, so far */
	double rate_h; /* the rentals held now (booting, ready, releasing), per hour */
	int held;      /* how many are held */
	double used;   /* slot time any job used on rented nodes, plus the
			* creation fees of orders made for a job */
};
int store_usage_farm(struct store *st, int64_t now_ms, struct usage_farm *out);

struct usage_job {
	double used;   /* the job's slot time on rented nodes, priced per slot */
	double fees;   /* creation fees of the orders made for it */
	double rate_h; /* per hour, by the slots of held nodes rendering it now */
};
int store_usage_job(struct store *st, int64_t job, int64_t now_ms, struct usage_job *out);

/* The cost so far of one rental (rentals.id); 0 when unknown. */
double store_rental_cost(struct store *st, int64_t rental, int64_t now_ms);

#endif
