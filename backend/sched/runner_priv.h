/*
 * runner_priv: the fields of a struct runner, shared by the files that
 * make one up -- runner.c (the thread: connect, backoff, the loop),
 * slot.c (the slots and the worker protocol) and dispatch.c (which frame
 * a free slot takes).  Nothing outside sched/ includes this.
 *
 * Threads: everything here is used on the runner's own thread, except
 * `stop` (atomic) and stop_why (written before the stop is signalled).
 */
#ifndef RENDERFS_RUNNER_PRIV_H
#define RENDERFS_RUNNER_PRIV_H

#include "core/config.h"
#include "nodes/transport.h"
#include "sched/install.h"
#include "sched/slot.h"
#include "store/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#define RUNNER_MAX_SLOTS 64
/* How long leasing waits after a fetch found this side's disk full. */
#define RUNNER_DISK_BACKOFF_MS 5000
/* How long a node whose Blender install failed stays in error before the
 * install is tried again (a download is large: not at every backoff). */
#define RUNNER_INSTALL_RETRY_MS (5 * 60 * 1000)

struct runner {
	struct tnode *node; /* the caller's; used only by this thread until runner_stop */
	const struct config *cfg;
	char *state_dir;
	char blender[1024]; /* the command to start; with blender_auto "blender" (PATH) */
	/* `blender = auto`: each job runs the Blender of its file's series,
	 * the node's own when it has that series, else one installed by
	 * install.c (runner.c, runner_blender_for). */
	int blender_auto;
	char path_version[INSTALL_VERSION_MAX];  /* the node's own Blender ("3.4.1"), "" none */
	char ready_version[INSTALL_VERSION_MAX]; /* what the last worker's ready said */
	/* Where each slot's Blender came from, for the status line:
	 * "on node" or "installed". */
	const char *slot_from[RUNNER_MAX_SLOTS];
	/* A Blender install failed: the reason, and until when (util_mono_ms)
	 * the node stays in error without trying again. */
	char install_error[512];
	int64_t install_retry_at;
	char worker_local[4096];  /* the worker script here */
	char worker_remote[4096]; /* and on the node */
	char local_work[4096];    /* where fetched frames land before checks */
	int is_local;
	struct store *st;
	pthread_t thread;
	atomic_int stop;
	int64_t node_id;
	char node_error[512];
	int shown_state; /* enum node_state: what the runner last wrote to its row */
	int connected;
	int lost; /* the link failed: drop the connection and start again */
	/* util_mono_ms() before which no frame is leased: a fetch found the
	 * local disk full (RUNNER_DISK_BACKOFF_MS). */
	int64_t local_full_until;
	int shown_error;
	int64_t last_keepalive;
	struct install inst; /* what is known to be on the node */
	struct slot slots[RUNNER_MAX_SLOTS];
	int nslots;
	int auto_slots; /* one slot per GPU the probe finds (at least one) */
	int ngpus;      /* GPUs the node's Blender sees */
	char stop_why[256];
	/* A finished frame being collected while its slot renders the next:
	 * a copy of the slot's fields, not a slot of the machine (its state
	 * is never read or written). */
	struct slot fin;
};

/* Errors that mean the node or the link, not the frame, failed. */
static inline int runner_link_error(int rc)
{
	return rc == -ECONNRESET || rc == -EPIPE || rc == -ETIMEDOUT || rc == -ENOTCONN ||
	       rc == -ECONNABORTED || rc == -EHOSTUNREACH || rc == -ENETUNREACH || rc == -ECONNREFUSED ||
	       rc == -EIO;
}

/* Show the node's state (enum node_state) in its row, through the node
 * machine; -1: idle or rendering, by what the slots hold.  Written only
 * when it changes (runner.c). */
void runner_show_state(struct runner *r, int state);

/*
 * The Blender a worker for the scene with hash sha starts (prog), and
 * where it came from (*from: "on node", "installed").  Without
 * blender = auto that is the configured command.  With it, the series
 * that saved the scene decides, and a missing series is installed first
 * (blocking: call it before a frame is leased).  0; -ENOPKG when the
 * install failed (the reason in r->install_error, the node to be taken
 * down as in error); a link error as the transport gave it.
 */
int runner_blender_for(struct runner *r, const char *sha, char *prog, size_t sz, const char **from);

#endif
