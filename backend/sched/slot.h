/*
 * slot: one worker slot of a runner -- at most one long-lived Blender
 * worker process, the job whose scene it loaded, and the frame it holds --
 * and the worker protocol spoken with that process (sched/worker.py).
 *
 * ---------------------------------------------------------------------
 * THE SLOT STATE MACHINE (struct slot.state)
 *
 *               spawn                ready                 send
 *   empty ─────────────▶ starting ─────────────▶ ready ─────────────▶ busy
 *     ▲                     │                    │   ▲                   │
 *     │                     │                    │   └──── finish ───────┤
 *     │                     │                    │    ("done"/"fail")    │
 *     │         kill        │        kill        │         kill          │
 *     └─────────────────────┴────────────────────┴───────────────────────┘
 *
 *   spawn: a worker started for a job, its setup line sent; ready: the
 *   worker loaded the scene; send: a frame handed to it; kill: the worker
 *   exited, hung, timed out, was idle for 30 s, its frame was taken away,
 *   the link was lost, or the runner stops.
 *
 * Transition table (event: from → to; made by slot_transition()):
 *
 *   SE_SPAWN   empty → starting       a worker process was started for a job
 *                                     and its setup line is on its way
 *   SE_READY   starting → ready       the worker's "ready": the scene loaded
 *   SE_SEND    ready → busy           a {"frame", "out"} line was written
 *   SE_FINISH  busy → ready           the worker's "done" (the frame moves to
 *                                     runner->fin to be collected) or "fail"
 *   SE_KILL    any → empty            the process is freed and whatever the
 *                                     slot held is settled; also on an empty
 *                                     slot, where it changes nothing
 *
 * Invariants:
 *   1. Every change of slot.state is made by slot_transition(), which
 *      checks the from-state against the table: an event that does not
 *      apply (the slot was killed meanwhile, a protocol line out of turn)
 *      returns -ESTALE and changes nothing; the caller drops what it was
 *      doing for the slot.
 *   2. proc is NULL exactly when the state is empty.
 *   3. A slot holds a frame (frame_id != 0) from its lease (or, for a
 *      duplicate, its claim on frames.dup_node, with no lease) until the
 *      frame is settled; it is busy while the worker renders it.  Between
 *      SE_FINISH and the next lease a ready slot holds none.  Only one
 *      slot of all runners holds a frame under a given lease.
 *   4. A slot's frame is settled (done, failed, interrupted, dropped or the
 *      duplicate released) before the slot is emptied, and its slot time
 *      goes to usage then (slot_drop_frame).
 *   5. Everything here runs on the runner's own thread: the machine is not
 *      shared, so -ESTALE means a handler earlier in the same pass moved the
 *      slot, never another thread.
 * ---------------------------------------------------------------------
 *
 * Ownership: a slot is part of its struct runner; proc is the slot's own
 * (released by SE_KILL through slot_kill()).
 */
#ifndef RENDERFS_SLOT_H
#define RENDERFS_SLOT_H

#include "core/sidecar.h"
#include "nodes/transport.h"

#include <stddef.h>
#include <stdint.h>

#define SLOT_LINE_MAX (64 * 1024) /* a longer worker line is cut */

/*
 * A frame whose sidecar sets no timeout gets this one: at least
 * SLOT_DEFAULT_TIMEOUT_MS (2 h), or SLOT_TIMEOUT_AVG_FACTOR times the job's
 * mean frame time so far when that is longer.  Hangs are caught sooner by
 * the stall limit (no render progress); the timeout ends the frame that
 * still advances but never finishes.
 */
#define SLOT_DEFAULT_TIMEOUT_MS (2 * 3600 * 1000LL)
#define SLOT_TIMEOUT_AVG_FACTOR 10
/* A frame's log keeps at most the last SLOT_LOG_CAP bytes of an attempt:
 * when a write would pass it, the file is cut to its last half (from a
 * line start), headed by a note that earlier output was cut. */
#define SLOT_LOG_CAP (1024 * 1024)
/* Progress is written to the store at most this often per slot. */
#define SLOT_PROGRESS_WRITE_MS 1000

enum slot_state { SLOT_EMPTY, SLOT_STARTING, SLOT_READY, SLOT_BUSY, SLOT__COUNT };
enum slot_event { SE_SPAWN, SE_READY, SE_SEND, SE_FINISH, SE_KILL, SE__COUNT };

struct slot {
	int idx;
	enum slot_state state; /* written only by slot_transition() */
	struct tproc *proc;    /* NULL while SLOT_EMPTY */
	int64_t job;           /* the job whose scene this worker loaded */
	enum sc_format fmt;
	int64_t timeout_ms;       /* the sidecar's; 0 = none set */
	int64_t frame_timeout_ms; /* the one this frame runs under */
	int timeout_default;      /* frame_timeout_ms is renderfs's default */
	/* the frame this slot holds (STARTING or BUSY) */
	int64_t frame_id, lease;
	uint32_t frame_no;
	int frame_sent;
	int dup; /* racing another node's holder of this frame; holds no lease */
	int sched_job; /* its worker's scheduler job is shown in the node's row */
	/* mono ms: last_output is any byte from the worker (the link lives);
	 * last_progress is the stall clock: protocol events and render
	 * progress only, never log output. */
	int64_t frame_started, last_output, last_progress, last_beat, idle_since;
	double prog_fraction;    /* the frame's progress so far, 0..1 */
	int prog_seen;           /* the worker reported progress for this frame */
	int64_t prog_step;       /* the worker's phase count so far */
	int64_t prog_written;    /* mono ms of the last store write */
	double prog_written_val; /* what it wrote */
	int64_t held_since; /* mono ms: when the slot took the frame (its slot time starts) */
	int out_alt;        /* which of the slot's two output names the next frame gets */
	int log_fd;
	int64_t log_size; /* bytes in the log file (log_fd) */
	int width, height; /* what frames are checked against (0 = hard caps only) */
	int exp_w, exp_h;  /* the job's own size (sidecar, else its scene); 0 = unknown */
	char setup_error[512];
	char last_fail[512];
	char outpath[4096];
	/* Everything from here on is not copied into runner->fin. */
	char line[SLOT_LINE_MAX + 1];
	size_t line_len;
	int line_dropping; /* inside a line longer than the cap */
};

const char *slot_state_name(enum slot_state s);
const char *slot_event_name(enum slot_event e);

/* The pure table: the state ev moves a slot in `from` to, or -EINVAL. */
int slot_next_state(enum slot_state from, enum slot_event ev);

/* The one writer of sl->state: the new state, or -ESTALE (nothing
 * changed) when ev does not apply to the slot's state. */
int slot_transition(struct slot *sl, enum slot_event ev);

/* ---- what the runner (runner.c, dispatch.c) does with its slots ---- */

struct runner;

/* Free the worker and settle the slot (SE_KILL); the slot's frame, if it
 * still holds one, must have been settled or is dropped here. */
void slot_kill(struct runner *r, struct slot *sl);
/* The slot holds sl->frame_id for job: send it to its ready worker, or
 * start a worker first.  A failure fails or interrupts the frame. */
void slot_start_frame(struct runner *r, struct slot *sl, int64_t job);
/* Read the worker's stdout (protocol lines) / stderr (the frame's log). */
void slot_read(struct runner *r, struct slot *sl);
void slot_drain_log(struct runner *r, struct slot *sl);
/* Per-slot checks of one pass: exits, frames no longer ours, timeouts,
 * hangs, lease renewals, idle workers. */
void slot_watch(struct runner *r);
/* The node, not the frame, let us down: back to the queue, no attempt
 * used (a duplicate only gives its claim back). */
void slot_interrupt(struct runner *r, struct slot *sl, const char *why);
/* The default per-frame timeout for a job whose done frames average
 * avg_secs (0 when none is done): see SLOT_DEFAULT_TIMEOUT_MS. */
int64_t slot_timeout_default_ms(double avg_secs);
/* Write all of buf to the worker's stdin, waiting at most 5 s. */
int slot_write_all(struct runner *r, struct tproc *p, const char *buf, size_t len);

#endif
