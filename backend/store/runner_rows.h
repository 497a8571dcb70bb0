/*
 * store/runner_rows: the queries and small updates a runner (sched/) makes
 * on jobs, frames and the blocklist, as typed functions.  Frame state
 * changes are not here: they go through store_frame_transition().
 *
 * Threads: as store.h.  Ownership: every pointer argument stays the
 * caller's; results are copied into the caller's buffers, each with a
 * fixed cap.
 */
#ifndef RENDERFS_STORE_RUNNER_ROWS_H
#define RENDERFS_STORE_RUNNER_ROWS_H

#include "core/sidecar.h"
#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

/* What a worker needs to load a job's scene. */
struct store_job_spec {
	char sha[65];
	char scene[SIDECAR_SCENE_MAX];
	char engine_name[16], device[16], format[8];
	int samples, res_w, res_h, res_pct;
	int out_w, out_h; /* the frames' pixel size renderfs worked out; 0 = not yet, -1 = unknown */
	int64_t timeout_ms;
};
/* 0, -ENOENT when there is no such job, or -errno. */
int store_job_spec(struct store *st, int64_t job, struct store_job_spec *js);

/*
 * A rendering frame's progress inside it (0..1), as its worker reported:
 * written only under the caller's lease while the frame renders.  The
 * caller rate-limits these writes.
 */
int store_frame_set_progress(struct store *st, int64_t frame, int64_t lease, double fraction);

/* The mean render seconds of the job's done frames that have one; *avg 0
 * when none has. */
int store_job_avg_secs(struct store *st, int64_t job, double *avg);

/* The pixel size renderfs expects of the job's frames (w, h > 0; from
 * the sidecar and the scene it read itself), kept so that the scene is
 * read once per job; -1, -1 when it could not be worked out. */
int store_job_set_out_size(struct store *st, int64_t job, int w, int h);

/* The frame rate a worker found in the job's scene. */
int store_job_set_scene_fps(struct store *st, int64_t job, double fps);

/* A job with queued frames, as one node sees it. */
struct store_job_fact {
	int64_t id;
	int priority;
	int64_t blocked_until; /* the node's block for the job ends (ms), 0 = none */
};
/* Up to max active jobs (not removed, not over budget, waiting or
 * rendering) that have a queued frame, by priority then age; *n set. */
int store_jobs_with_queued(struct store *st, int64_t node, struct store_job_fact *out, size_t max, size_t *n);

/* The job's lowest queued frame: 0, or -ENOENT when none is queued. */
int store_frame_next_queued(struct store *st, int64_t job, int64_t *frame_id, uint32_t *frame_no);

/*
 * The facts of a free slot's frame choice (sched_pick_frame, through
 * dispatch.c), each read bounded whatever the job's size.
 *
 * store_job_frame_span: the job's lowest and highest frame numbers (every
 * state) and its queued frames, counted up to STORE_PICK_COUNT_CAP.
 * -ENOENT when the job has no frames.
 *
 * store_pick_facts: for each of the nt target frame numbers, the job's
 * first queued frame at or after it (repeats dropped, sorted by number),
 * or with targets NULL the first STORE_PICK_TARGETS queued frames;
 * for each of those and each frame in flight, the nearest done frames below
 * and at or above it, with their render time and renderer; the average
 * render time of each node over a sample of the job's done frames (the
 * first STORE_PICK_SPEED_SAMPLE by number) and of the sample as a whole;
 * the live nodes (idle or rendering, not removed, not blocked for the job
 * at now) with their slots; and the frames in flight (leased or rendering,
 * not duplicates) with their holder and start.
 */
#define STORE_PICK_COUNT_CAP    4096
#define STORE_PICK_TARGETS      96
#define STORE_PICK_INFLIGHT     64
#define STORE_PICK_NODES        64
#define STORE_PICK_SPEED_SAMPLE 1024
struct store_pick_facts {
	size_t nq, nd, nn, nf;
	struct {
		int64_t id, frame;
	} q[STORE_PICK_TARGETS];
	struct {
		int64_t frame, node;
		double secs;
	} d[2 * (STORE_PICK_TARGETS + STORE_PICK_INFLIGHT)];
	struct {
		int64_t node;
		double avg_secs; /* over the sample; 0 = none of it */
		int slots;       /* 0 = not live for the job */
	} nodes[STORE_PICK_NODES];
	double avg_secs; /* the sample's average; 0 = no done frame */
	struct {
		int64_t frame, node, started; /* started: ms, 0 = not begun */
	} f[STORE_PICK_INFLIGHT];
};
int store_job_frame_span(struct store *st, int64_t job, int64_t *first, int64_t *last, size_t *queued);
int store_pick_facts(struct store *st, int64_t job, int64_t now, const int64_t *targets, size_t nt,
		     struct store_pick_facts *out);

/* A frame leased or rendering on another node, with the speeds the tail
 * policy compares (ms; 0 = unknown).  See dispatch.c. */
struct store_dup_candidate {
	int64_t frame_id, job;
	uint32_t frame;
	int64_t started; /* started, else progress_at, else 0 */
	int waiting;     /* leased: its holder has not begun it */
	double avg_ms, holder_ms, mine_ms;
	int64_t blocked_until;
};
/* Up to max candidates for node's idle slot (at most 64 are looked at). */
int store_dup_candidates(struct store *st, int64_t node, struct store_dup_candidate *out, size_t max,
			 size_t *n);
/* Claim the frame's one duplicate for node: 0, or -ESTALE when it has one
 * already or is no longer in flight. */
int store_dup_claim(struct store *st, int64_t frame, int64_t node);
/* Give the claim back (a no-op when node no longer holds it). */
int store_dup_release(struct store *st, int64_t frame, int64_t node);

/* Is the frame still the caller's?  1 or 0: held under this lease and
 * leased or rendering; or, for a duplicate, claimed by node and not yet
 * finished by anyone. */
int store_frame_lease_held(struct store *st, int64_t frame, int64_t lease);
int store_frame_dup_held(struct store *st, int64_t frame, int64_t node);

/* The frame has a log file now (logs/ lists it); records CH_JOBLOGS for
 * the job the first time. */
int store_frame_mark_logged(struct store *st, int64_t frame, int64_t job);

/* One more failure of node on job, with why; from the block_after'th
 * failure on, the node is blocked for the job until `until` (ms). */
int store_blocklist_note(struct store *st, int64_t node, int64_t job, const char *why, int block_after,
			 int64_t until);

#endif
