/*
 * clore_rows: the queries the clore provider (clore/provision.c) runs on
 * rows other than its own rentals: the queued frames and jobs that decide
 * what is rented, a job's wishes and budget, the frame times measured per
 * GPU model, and the nodes rows of rented servers (their state is read
 * here, never written: see the node state machine).
 *
 * All functions take the caller's connection and return 0 or -errno
 * unless they say otherwise.
 */
#ifndef RENDERFS_STORE_CLORE_ROWS_H
#define RENDERFS_STORE_CLORE_ROWS_H

#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

#define CLORE_ROWS_STR_MAX 256

/* A job's own [clore] wishes as stored; a negative number (or "" for
 * gpu, 0 for nodes) means "as the config says". */
struct clore_job_wish {
	int nodes;
	char gpu[CLORE_ROWS_STR_MAX];
	double min_vram, max_price;
	int spot;
};

/* A GPU model and the mean time of a job's done frames on it. */
struct clore_gpu_time {
	char gpu[CLORE_ROWS_STR_MAX];
	double secs;
};

/* A job with a budget that has not been reached yet. */
struct clore_budget_job {
	int64_t job;
	double budget;
};

/*
 * Frames waiting for a node, counted up to 1000, of jobs waiting or
 * rendering, not removed and not over budget; *top_job is the first such
 * job by priority (then id) with a queued frame, 0 when none (or when the
 * count is 0).  Returns the count, or -errno.
 */
int64_t store_clore_queued(struct store *st, int64_t *top_job);

/* A job with queued frames and how many (counted up to 1000). */
struct clore_queued_job {
	int64_t job, queued;
};
/* The jobs store_clore_queued counts, by priority then id, up to cap.
 * Returns how many, or -errno. */
int store_clore_queued_jobs(struct store *st, struct clore_queued_job *out, size_t cap);

/* The job's stored wishes; -ENOENT when there is no such job. */
int store_clore_job_wish(struct store *st, int64_t job, struct clore_job_wish *w);

/* Up to cap GPU models (rentals.gpu) with the mean secs of the job's done
 * frames on nodes of those rentals.  Returns how many, or -errno. */
int store_clore_gpu_times(struct store *st, int64_t job, struct clore_gpu_time *out, size_t cap);

/* 1 when a frame is in flight (leased, rendering, rendered) on node, as its
 * holder or its duplicate; 0 when not; -errno. */
int store_clore_node_busy(struct store *st, int64_t node);

/* The node's state and error text ("" when NULL), copied into the
 * buffers; -ENOENT when there is no such node. */
int store_clore_node_state(struct store *st, int64_t node, char *state, size_t statesz, char *err,
			   size_t errsz);

/* The device the node's Blender renders on (nodes.device: what the last
 * worker's ready or done said) and why ("" when NULL); -ENOENT when there
 * is no such node. */
int store_clore_node_device(struct store *st, int64_t node, char *dev, size_t devsz, char *why,
			    size_t whysz);

/* A rented server's node row: provider 'clore', its rental and its price
 * in USD per hour, shown again (removed = 0). */
int store_clore_node_attach(struct store *st, int64_t node, int64_t rental, double price_h);

/* Up to cap jobs not removed, waiting, rendering or paused, with a budget
 * (>= 0) and not over it yet.  Returns how many, or -errno. */
int store_clore_budget_jobs(struct store *st, struct clore_budget_job *out, size_t cap);

/* The job reached its budget: it takes no more frames. */
int store_clore_job_over_budget(struct store *st, int64_t job);

#endif
