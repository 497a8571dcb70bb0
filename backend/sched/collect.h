/*
 * collect: bringing a rendered frame home.  A frame becomes `done` only
 * after its bytes are verified (image header, pixel size, completeness,
 * the worker's SHA-256 equal to ours) and durable in the frame store.
 * Also assembles a job's video from its done frames with ffmpeg.
 */
#ifndef RENDERFS_COLLECT_H
#define RENDERFS_COLLECT_H

#include <stdint.h>
#include <sys/types.h>
#include "core/sidecar.h"
#include "store/store.h"

/*
 * The pixel size a job's frames must have, as Blender computes it
 * (side * percentage / 100): the sidecar's res_w / res_h / res_pct (0 =
 * as saved; an absolute side means 100 % unless res_pct says otherwise)
 * over the scene's own scene_x / scene_y / scene_pct (0 = not known).
 * 0 with *w, *h in 1..IMAGE_MAX_DIM, or -ENOENT when a needed scene value
 * is not known or the result is out of range.
 */
int collect_expected_size(int res_w, int res_h, int res_pct, int scene_x, int scene_y, int scene_pct, int *w,
			  int *h);

/*
 * The scene's own resolution from the .blend at path (blendfile_open):
 * the scene called scene (NULL or "": the one the file opens with).
 * 0, or -errno when the file cannot be read or has no such scene.
 */
int collect_scene_resolution(const char *path, const char *scene, int *x, int *y, int *pct);

/*
 * The most bytes a frame of this format and pixel size may have on the
 * node: what get() is allowed to copy home.  w x h is what the job asked
 * for (its sidecar, else the scene as the worker read it at start), never
 * what a node says in `done`.  With w or h unknown (<= 0) or over the
 * image check's 32768 a side, COLLECT_GET_MAX_UNKNOWN.
 */
#define COLLECT_GET_MAX_UNKNOWN (2ull << 30) /* 2 GiB */
uint64_t collect_get_max(enum sc_format fmt, int w, int h);

/*
 * Verify the frame file at src (on this machine): its format, pixel size
 * (w x h: what the JOB asked for -- the sidecar, else the scene as the
 * worker read it at start -- never the node's `done`; 0 when not known,
 * which checks the hard caps of image_check() only), completeness, and the worker's SHA-256 (sha may be
 * NULL); then make its bytes durable (fsync).  Returns 0 with its *size
 * and *mtime_ms, or -errno with a one-line reason in why.  src stays.
 */
int collect_verify(const char *src, enum sc_format fmt, int w, int h, const char *sha, int64_t *size,
		   int64_t *mtime_ms, char *why, size_t whysz);

/*
 * List a verified frame: in one transaction, the guarded transition ev
 * (FE_COLLECTED under the caller's lease, or FE_WON for a duplicate that
 * finished first), the rename of src into the frame store and the fsync
 * of its directory.  Nobody can list the frame's file before it is
 * durable, and two results for one frame can never both land.  Returns 0,
 * or -ESTALE when the frame was no longer the caller's (src is removed).
 */
int collect_commit(struct store *st, int64_t frame_id, int64_t lease, enum frame_event ev, int64_t node,
		   int64_t job, uint32_t frame, enum sc_format fmt, const char *src, int64_t size,
		   int64_t mtime_ms, double secs);

/*
 * Start ffmpeg assembling the job's done frames (in frame order) into a
 * temporary file next to video.mp4.  *pid is the child to wait for; then
 * call video_finish().  Returns 0, -ENOENT when there are no frames.
 */
int video_start(struct store *st, int64_t job, double fps, pid_t *pid);
/* After ffmpeg exited with wait status `status`: 0 and the video is in
 * place, or -EIO with the reason (ffmpeg's last lines) in why. */
int video_finish(struct store *st, int64_t job, int status, char *why, size_t whysz);

#endif
