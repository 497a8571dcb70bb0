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
#include "sidecar.h"
#include "store.h"

/*
 * Verify src (on this machine) and move it to the frame store as frame
 * `frame` of job `job`.  sha is the worker's checksum (may be NULL).
 * Returns 0 with *size and *mtime_ms of the stored file, or -errno with a
 * one-line reason in why.
 */
int collect_frame(struct store *st, int64_t job, uint32_t frame, const char *src, enum sc_format fmt, int w,
		  int h, const char *sha, int64_t *size, int64_t *mtime_ms, char *why, size_t whysz);

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
