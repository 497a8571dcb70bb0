/*
 * store/nodes: the rows of the nodes table -- one per machine that renders
 * (this machine, an SSH host, a rented server) -- and the node state
 * machine.  nodes/NODE/status shows what is written here.
 *
 * ---------------------------------------------------------------------
 * THE NODE STATE MACHINE (nodes.state)
 *
 *                              probe ok               a slot holds a frame
 *   register ──▶ starting ──▶ connecting ──────────▶ idle ◀──────────────▶ rendering
 *                   │           ▲  │  │               │     none does          │
 *                   │           │  │  │ reached, but  │                        │
 *                   │           │  │  ▼ cannot render │                        │
 *                   │           ├──┼─ error           │                        │
 *                   │   connect │  │  │               │                        │
 *                   │   again   │  │  │               │                        │
 *                   ▼           │  ▼  ▼               ▼                        ▼
 *                 offline ──────┘  ◀────── unreachable, link lost, stopped, rental
 *                                          ended, mount start (from any state)
 *
 *   Every state goes to offline; offline goes back to connecting, error
 *   straight to idle when a quiet retry succeeds (or either to starting,
 *   when a runner registers the row again).
 *
 * Transition table (from → to: who makes it; store_node_transition()):
 *
 *   (no row)   → starting     runner_start registers the node (INSERT)
 *   any        → starting     runner_start registers a row it finds: at
 *                             mount start every row is offline (recover)
 *   starting   → connecting   the runner opens the transport
 *   offline    → connecting   the runner tries again after its backoff
 *   error      → connecting   (kept for a runner that shows it; the
 *                             runner retries an error node quietly)
 *   connecting → idle         open, worker installed, the probe worker
 *                             reported "ready"
 *   error      → idle         the same, for a node in error: it is retried
 *                             without showing connecting, so its reason
 *                             stays visible until a retry succeeds
 *   connecting → error        reached, but cannot render (no Blender, the
 *                             host key changed, the worker cannot be put)
 *   connecting → offline      unreachable (refused, timed out, reset)
 *   idle       → rendering    after a scheduling pass, a slot holds a frame
 *   rendering  → idle         after a scheduling pass, no slot holds one
 *   any        → offline      the link was lost (runner), the runner
 *                             stopped, the rental ended (the clore
 *                             provider, after stopping its runner), or the
 *                             mount started (store_recover)
 *
 * Invariants:
 *   1. Every change of nodes.state is one guarded UPDATE in
 *      store_node_transition(): WHERE id = ? AND state = <from>.  Zero
 *      rows changed means the row was not in <from> (-ESTALE); an edge not
 *      in the table is refused the same way, before any SQL runs.
 *   2. There are no self-edges: a writer that finds the row already in the
 *      state it wants writes nothing.
 *   3. While a runner runs, it is the only writer of its node's state; the
 *      others (store_recover before any runner starts, the clore provider
 *      after runner_stop) only move rows to offline.
 *   4. offline is the state of every row that no runner drives: after
 *      store_recover at mount start and after runner_stop.
 *   5. error means the node was reached but cannot render; offline means
 *      it was not reached (or is not being driven).  Only connecting
 *      leads to error.
 * ---------------------------------------------------------------------
 *
 * Threads: as store.h -- a struct store is one thread's at a time.
 * Ownership: every pointer argument stays the caller's; nothing returned
 * needs freeing.
 */
#ifndef RENDERFS_STORE_NODES_H
#define RENDERFS_STORE_NODES_H

#include "store/store.h"

#include <stdint.h>

enum node_state { NS_STARTING, NS_CONNECTING, NS_IDLE, NS_RENDERING, NS_ERROR, NS_OFFLINE, NS__COUNT };

/* "starting", "connecting", "idle", "rendering", "error", "offline". */
const char *node_state_name(enum node_state s);
int node_state_parse(const char *s); /* -EINVAL if unknown */

/* The pure table: 0 when from → to is an edge of the machine, -EINVAL when
 * not (self-edges included). */
int node_check_edge(enum node_state from, enum node_state to);

/*
 * Move node from `from` to `to`: one guarded UPDATE.  Returns 0, -ESTALE
 * when the edge is not in the table or the row was not in `from` (someone
 * else moved it: re-read it with store_node_state()), or another -errno.
 * Records a change (CH_NODES) for the notifier.  Inside the caller's
 * transaction or alone.
 */
int store_node_transition(struct store *st, int64_t node, enum node_state from, enum node_state to);

/* The row's state now, or -ENOENT / -errno. */
int store_node_state(struct store *st, int64_t node);

/*
 * The runner's claim of its row: insert it (state starting) or take the
 * existing one by name (its provider, address and slots replaced, error
 * cleared, removed reset, state moved to starting).  *id is the row's id.
 */
int store_node_register(struct store *st, const char *name, const char *provider, const char *address,
			int slots, int64_t *id);

/* The node's last error as shown in its status; NULL clears it. */
int store_node_set_error(struct store *st, int64_t node, const char *error);
int store_node_set_slots(struct store *st, int64_t node, int slots);
/* The cluster scheduler's job (a Slurm job id) that holds slot of node, as
 * its status shows it; NULL or "" forgets the slot's, slot -1 every slot's
 * of the node. */
int store_node_slot_job(struct store *st, int64_t node, int slot, const char *job_id);
/* One more frame done / failed on the node. */
int store_node_count_done(struct store *st, int64_t node);
int store_node_count_failed(struct store *st, int64_t node);

/* What a worker's "ready" told about the node.  NULL strings keep what the
 * row has; gpus and gpu_names ("A, B") are always written. */
struct node_ready {
	const char *device, *device_why, *blender;
	int gpus;
	const char *gpu_names;
};
int store_node_note_ready(struct store *st, int64_t node, const struct node_ready *nr);
/* The device a frame was rendered on (a worker's done); written, and a
 * change noted, only when it differs from the row's. */
int store_node_set_device(struct store *st, int64_t node, const char *device);

/* A rental ended: its nodes are marked removed and go offline. */
int store_nodes_end_rental(struct store *st, int64_t rental);

/* Mount start (store_recover): every row that is not offline goes there.
 * Inside the caller's transaction or alone. */
int store_nodes_all_offline(struct store *st);

#endif
