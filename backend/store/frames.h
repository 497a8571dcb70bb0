/*
 * frames: what acts on many frames at once.  The machine itself (states,
 * events, frame_next_state(), store_frame_transition()) is declared in
 * store.h, with its diagram; everything here goes through
 * store_frame_transition(), except the start-of-mount requeue, which runs
 * while no backend is running.  Implemented in frames.c.
 */
#ifndef RENDERFS_STORE_FRAMES_H
#define RENDERFS_STORE_FRAMES_H

#include <stddef.h>
#include <stdint.h>
#include "store/store.h"

/*
 * Apply one event to every frame of job whose state is in state_mask (bit
 * 1 << enum frame_state), each under its own lease; m (may be NULL) is
 * passed to each transition.  A frame that moved meanwhile (-ESTALE) is
 * skipped.  0, -EINVAL for an empty mask, or the first other -errno.
 */
int store_frames_apply(struct store *st, int64_t job, unsigned state_mask, enum frame_event ev,
		       struct frame_move *m);

/*
 * Up to max leased or rendering frames whose lease_until is before now:
 * their ids and leases into the caller's arrays (max elements each).
 * Returns how many, or -errno.
 */
int store_frames_lease_expired(struct store *st, int64_t now, int64_t *ids, int64_t *leases, int max);

/*
 * store_recover's frame part, inside its transaction: every leased,
 * rendering or rendered frame goes back to queued as an interruption, and
 * duplicate claims are cleared.  Returns the number requeued, or -errno.
 */
int store_frames_requeue_inflight(struct store *st);

/*
 * The job's leased, rendering and rendered frames, by frame number (up to
 * max into out, *n set): each one's progress inside the frame (0..1, 1
 * once rendered; -1 when the worker has reported none), for status.
 */
struct frame_inflight {
	uint32_t frame;
	double fraction;
	int started; /* rendering or rendered (not just leased) */
};
int store_frames_inflight(struct store *st, int64_t job, struct frame_inflight *out, size_t max, size_t *n);

#endif
