/*
 * store: the SQLite database that holds every fact renderfs knows -- jobs,
 * frames, nodes, the files in queue/, events -- and the only state that
 * fs/ and backend/ share.  A crash loses no acknowledged decision: each
 * decision is a committed transaction before anyone acts on it.
 *
 * ---------------------------------------------------------------------
 * THE FRAME STATE MACHINE
 *
 *   queued ──dispatch──▶ leased ──start──▶ rendering ──rendered──▶ rendered
 *     ▲ ▲                  │                  │                      │
 *     │ │                  │ interrupt        │ interrupt            │ interrupt
 *     │ └──────────────────┴──────────────────┴──────────────────────┤ (node lost,
 *     │         (no attempt used)                                    │  lease expired)
 *     │                                                              │ collected
 *     │ fail, attempts < 1+retries                                   ▼
 *     └───────────── leased | rendering | rendered               done
 *                          │ fail, attempts used up
 *                          ▼
 *                       failed ──retry (retry-failed)──▶ queued
 *                          ▲
 *   queued ──abandon (no usable node left)──┘
 *
 *   any of queued, leased, rendering, rendered ──cancel──▶ cancelled
 *
 * Transition table (event: from → to; made by store_frame_transition()):
 *
 *   FE_DISPATCH   queued → leased             lease := lease+1, node, slot,
 *                                             lease_until set
 *   FE_START      leased → rendering          started := now
 *   FE_HEARTBEAT  leased|rendering → same     lease_until, progress_at moved
 *   FE_RENDERED   rendering → rendered        secs recorded
 *   FE_COLLECTED  rendered → done             size, mtime recorded
 *   FE_INTERRUPT  leased|rendering|rendered → queued     interrupts += 1
 *   FE_FAIL       leased|rendering|rendered → queued     attempts += 1, while
 *                                             attempts < 1 + retries
 *                 leased|rendering|rendered → failed     otherwise
 *   FE_CANCEL     queued|leased|rendering|rendered → cancelled
 *   FE_RETRY      failed → queued             attempts := 0
 *   FE_ABANDON    queued → failed             no node is left that may render
 *                                             the job; error says why
 *   FE_WON        leased|rendering|rendered → done   a duplicate started on an
 *                                             idle slot finished first: lease :=
 *                                             lease+1 fences the original holder
 *
 * Invariants:
 *   1. Every change of frames.state is one guarded UPDATE in
 *      store_frame_transition(): WHERE id = ? AND state = <from> AND
 *      lease = <the caller's lease>.  Zero rows changed means the caller
 *      lost a race (-ESTALE) and must drop what it holds.
 *   2. The lease number only grows.  A result reported under an older
 *      lease than the row's is discarded: two nodes can never both commit
 *      the same frame.
 *   3. A frame is `done` only after its file is verified and durable in
 *      the frame store (fsync, rename, fsync of the directory), all inside
 *      the transaction that changes the row (collect_commit): a crash
 *      before the commit leaves an unlisted file that the next render of
 *      the frame overwrites, and two results for one frame never both land.
 *   4. `interrupted` (the node went away) never uses an attempt; only
 *      FE_FAIL does.  What counts against a node for a job is a frame it
 *      failed, or a failed upload of the job's scene to it (runner.c).
 *   5. At start (store_recover), no frame is leased, rendering or
 *      rendered: nothing is in flight when no backend is running.
 *
 * THE JOB STATES
 *
 *   waiting → rendering → assembling → done | failed
 *   waiting|rendering ⇄ paused; any state before done|failed → cancelled;
 *   failed → rendering (retry-failed).  Changed only by job_set_state() and
 *   store_job_resume() (jobs_rows.c).
 *
 * Files: store.c (connection, migrations, transactions, the change feed,
 * events, meta, paths), frames.c (this machine), jobs_rows.c (the job
 * machine and job rows), queue_rows.c, usage_rows.c, status_rows.c,
 * hostkeys.c.  jobs/, engine/, nodes/ and fs/ hold no SQL text and call no
 * sqlite3_* function: they call these files' typed functions.
 *
 * Threads: a struct store is one SQLite connection and belongs to one
 * thread at a time.  Every thread opens its own (WAL lets readers run
 * beside the one writer); fs/ keeps a small pool for request threads.
 * ---------------------------------------------------------------------
 */
#ifndef RENDERFS_STORE_H
#define RENDERFS_STORE_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

enum frame_state {
	FS_QUEUED,
	FS_LEASED,
	FS_RENDERING,
	FS_RENDERED,
	FS_DONE,
	FS_FAILED,
	FS_CANCELLED,
	FS__COUNT
};

enum frame_event {
	FE_DISPATCH,
	FE_START,
	FE_HEARTBEAT,
	FE_RENDERED,
	FE_COLLECTED,
	FE_INTERRUPT,
	FE_FAIL,
	FE_CANCEL,
	FE_RETRY,
	FE_ABANDON,
	FE_WON,
	FE__COUNT
};

enum job_state {
	JS_WAITING,
	JS_PROVISIONING,
	JS_RENDERING,
	JS_ASSEMBLING,
	JS_DONE,
	JS_FAILED,
	JS_CANCELLED,
	JS_PAUSED,
	JS__COUNT
};

/* What a change to the tree touched, for the notifier (fs/notify.c). */
/* CH_JOBSTATE: a job changed state (status readers must not be served a
 * cached rendering of the old one). */
enum change_kind { CH_QUEUE = 1, CH_OUT, CH_JOBDIR, CH_JOBLOGS, CH_NODES, CH_JOBSTATE };

#define STORE_CACHE_SLOTS 32

struct store {
	sqlite3 *db;
	char *dir; /* the state directory; owned */
	/* Prepared statements kept for the hot paths, keyed by the address
	 * of their (static) SQL text; see store_cached(). */
	struct {
		const char *sql;
		sqlite3_stmt *stmt;
	} cache[STORE_CACHE_SLOTS];
};

/* Frame row fields a transition may set; unused ones are ignored. */
struct frame_move {
	int64_t now;         /* wall-clock ms */
	int64_t node;        /* FE_DISPATCH */
	int slot;            /* FE_DISPATCH */
	int64_t lease_until; /* FE_DISPATCH, FE_HEARTBEAT */
	double secs;         /* FE_RENDERED */
	int64_t size;        /* FE_COLLECTED */
	int64_t mtime;       /* FE_COLLECTED, ms */
	const char *error;   /* FE_FAIL, FE_INTERRUPT: why, for the status */
	int64_t lease_out;   /* set by the transition: the frame's lease after it */
};

const char *frame_state_name(enum frame_state s);
int frame_state_parse(const char *s); /* -EINVAL if unknown */
const char *frame_event_name(enum frame_event e);
const char *job_state_name(enum job_state s);
int job_state_parse(const char *s);
int job_state_active(enum job_state s); /* waiting .. assembling, paused */

/*
 * The pure core of the machine: the state an event moves a frame to, or
 * -EINVAL when the event is illegal in that state.  has_attempts_left
 * matters only for FE_FAIL.
 */
int frame_next_state(enum frame_state from, enum frame_event ev, int has_attempts_left);

/* Open (creating and migrating) DIR/renderfs.db.  *out owned, store_close(). */
int store_open(const char *dir, struct store **out);
void store_close(struct store *st);
int store_begin(struct store *st); /* BEGIN IMMEDIATE, retried while busy */
int store_commit(struct store *st);
void store_rollback(struct store *st);
/* Whether a transaction is open on this connection (1) or not (0). */
int store_in_transaction(struct store *st);
/* A read transaction (deferred BEGIN): every read until store_read_end()
 * sees one snapshot.  Status files are rendered inside one. */
int store_read_begin(struct store *st);
void store_read_end(struct store *st);
int store_exec(struct store *st, const char *sql);
/* Convert a SQLite result code to the program's currency (0 or -errno). */
int store_errno(int sqlite_rc);
/* Prepare (cached by SQLite's own statement cache is not available, so the
 * caller finalizes).  Logs the SQL error. */
int store_prepare(struct store *st, const char *sql, sqlite3_stmt **stmt);
/*
 * A prepared statement kept with the connection, for SQL that is a string
 * constant (its address is the key) run on hot paths.  The caller must
 * not finalize it: store_release() resets it and clears its bindings.
 */
int store_cached(struct store *st, const char *sql, sqlite3_stmt **stmt);
void store_release(sqlite3_stmt *stmt);

/*
 * Make one guarded frame transition.  lease is the lease number the caller
 * holds (ignored for FE_DISPATCH, FE_CANCEL, FE_RETRY, FE_ABANDON and FE_WON).
 * Returns the new state, -ESTALE when the row was not in a state the event
 * applies to under that lease (a lost race), or another -errno.
 * Records an event row and a change for the notifier when it matters.
 * Must be called inside a transaction the caller opened, or alone (it then
 * runs in its own).
 */
int store_frame_transition(struct store *st, int64_t frame_id, int64_t lease, enum frame_event ev,
			   struct frame_move *m);

/* Start-of-mount recovery: in-flight frames go back to queued as
 * interrupted and writer counts reset.  (A job left assembling is picked
 * up by the engine, which assembles its video again from scratch.)  Returns the number of frames given back, or -errno. */
int store_recover(struct store *st, int64_t now);

/* The change feed: the backend appends, the notifier reads.  Each change
 * also dates the directory it touched (a job's state: out/JOB; a node:
 * nodes/NODE and nodes/), which is that directory's mtime. */
int store_change(struct store *st, enum change_kind kind, int64_t id);
/* When (ms) the directory of (kind, id) last changed: CH_QUEUE 0 is
 * queue/, CH_OUT 0 out/, CH_JOBDIR JOB out/JOB, CH_JOBLOGS JOB its logs/,
 * CH_NODES 0 nodes/, CH_NODES NODE nodes/NODE.  -ENOENT: not since the
 * store began keeping these times (*at is 0). */
int store_dir_time(struct store *st, enum change_kind kind, int64_t id, int64_t *at);
/* The newest change's sequence number (0 when the feed is empty). */
int store_changes_head(struct store *st, int64_t *seq);
/* Call fn for each change after *seq; *seq advanced.  Old rows pruned. */
int store_changes_since(struct store *st, int64_t *seq, void (*fn)(void *arg, int kind, int64_t id),
			void *arg);

/*
 * Run a query that returns at most one row, with one parameter: the text
 * key when key is not NULL, else the integer id.  On a row, fill(arg, stmt)
 * copies it out (the statement is finalized afterwards).  Returns 0,
 * -ENOENT when there is no row, or another -errno.
 */
int store_one_row(struct store *st, const char *sql, const char *key, int64_t id,
		  void (*fill)(void *arg, sqlite3_stmt *row), void *arg);

/* Small facts about the mount (e.g. "ssh_public_key"): set or read. */
int store_meta_set(struct store *st, const char *key, const char *value);
int store_meta_get(struct store *st, const char *key, char *out, size_t sz);

/* Record an event (a line of history, also shown as a node's/job's last
 * error when kind is "error"). job/node/frame may be 0. */
int store_event(struct store *st, int64_t job, int64_t node, int64_t frame, const char *kind,
		const char *msg);

/* Paths in the state directory (buf of PATH_MAX). */
void store_path_job(const struct store *st, int64_t job, char *buf, size_t sz);
void store_path_frame(const struct store *st, int64_t job, uint32_t frame, const char *ext, char *buf,
		      size_t sz);
void store_path_log(const struct store *st, int64_t job, uint32_t frame, char *buf, size_t sz);
void store_path_video(const struct store *st, int64_t job, char *buf, size_t sz);
void store_path_spool(const struct store *st, int64_t qfile, char *buf, size_t sz);
void store_path_blob(const struct store *st, const char *sha, char *buf, size_t sz);

/* A frame's file name as shown under out/JOB: "frame_0001.png". */
void frame_file_name(uint32_t frame, const char *ext, char *buf, size_t sz);

/*
 * The table families, each in its own file with its own header; included
 * here so that store.h still declares everything it always did (the frame
 * machine's implementation is frames.c, job_set_state() is jobs_rows.c,
 * store_usage_add() is usage_rows.c).  queue_rows.h, status_rows.h and
 * hostkeys.h are included by their users.
 */
#include "store/frames.h"
#include "store/jobs_rows.h"
#include "store/usage_rows.h"

#endif
