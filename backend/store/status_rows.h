/*
 * status_rows: the read-only views the status files are rendered from
 * (jobs/status.c).  Each function copies the rows it reads into a plain
 * struct and computes nothing a reader would see differently: the caller
 * derives eta, money and progress.  To make every number in a file agree,
 * the caller runs all of a file's views inside one read transaction
 * (store_read_begin() ... store_read_end()); the views never open one.
 * Implemented in status_rows.c.
 *
 * Ownership: the structs are the caller's.  view_job's error and missing
 * are malloc'd and freed by store_view_job_free(); view_node's error by
 * store_view_node_free(); store_view_orders()' array by free().  The free
 * functions may be called on a view whose fill failed.
 */
#ifndef RENDERFS_STORE_STATUS_ROWS_H
#define RENDERFS_STORE_STATUS_ROWS_H

#include <stddef.h>
#include <stdint.h>
#include "store/store.h"
#include "store/jobs_rows.h"

#define VIEW_PER_NODE 16

/* Slots and GPUs of the nodes that can render now (idle, rendering or
 * starting, not removed). */
struct view_capacity {
	int nodes, gpus, slots;
};
int store_view_capacity(struct store *st, struct view_capacity *out);

struct view_job {
	char name[JOB_NAME_MAX + 1];
	char state[16];         /* as stored */
	int64_t started, ended; /* ms; 0 when unset */
	char *error;            /* owned; NULL when none */
	int video;              /* a video is to be assembled */
	int64_t priority;
	int64_t frames;         /* nframes */
	int64_t done, inflight; /* inflight: leased, rendering or rendered */
	int64_t queued, failed, cancelled;
	int64_t interrupted; /* times a node went away with a frame */
	int64_t retried;     /* failed attempts that were tried again */
	double done_secs;    /* render seconds of the done frames that have one */
	int64_t timed;       /* how many done frames have render seconds */
	struct {
		char name[128];
		int64_t done;
	} per_node[VIEW_PER_NODE]; /* done frames by node (the first VIEW_PER_NODE) */
	int nper_node;
	uint32_t *missing; /* owned: failed frame numbers, ascending */
	size_t nmissing;
	int renting; /* waiting, and rentals are being made for it */
	char *facts;         /* owned: "key: value\n" lines intake read from the .blend ("" none) */
	char *missing_files; /* owned: one line per file the drop lacks ("" none) */
};
/* -ENOENT when the job does not exist or was removed. */
int store_view_job(struct store *st, int64_t job, struct view_job *out);
void store_view_job_free(struct view_job *v);

struct view_node {
	char name[128], provider[32], address[256], gpu_names[1024], device[64], device_why[256];
	char blender[64], state[16];
	int gpus, slots;
	double price_h;
	int64_t done, failed;
	char *error; /* owned; NULL when none */
	/* a rented node (provider clore) with its rental row */
	int rented;
	int64_t rental; /* rentals.id */
	int64_t order, server;
	int spot;
	/* the scheduler's job of each slot that has one, by slot */
	int nslot_jobs;
	struct {
		int slot;
		char job_id[32];
	} slot_jobs[64];
};
/* -ENOENT when there is no such node. */
int store_view_node(struct store *st, int64_t node, struct view_node *out);
void store_view_node_free(struct view_node *v);

/* The orders held now: rentals with an order in booting, ready or
 * releasing, by id (intent rows have no order yet and are not shown). */
struct view_order {
	int64_t rental; /* rentals.id */
	int64_t order, server;
	char state[16], node[64]; /* node: "" until it came up */
	int spot;
	double price_h; /* USD */
};
/* *out malloc'd (caller frees; NULL when none), *n set. */
int store_view_orders(struct store *st, struct view_order **out, size_t *n);

#endif
