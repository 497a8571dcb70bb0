/*
 * collect: verify and store frames; assemble videos.  ffmpeg is started
 * with an argument vector, never through a shell, and reads the frames
 * through numbered links in a private directory, so no user-chosen name
 * ever reaches its command line.
 */
#include "sched/collect.h"
#include "core/blendfile.h"
#include "core/filecheck.h"
#include "jobs/jobs.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

uint64_t collect_get_max(enum sc_format fmt, int w, int h)
{
	uint64_t max = image_max_bytes(fmt, w, h);

	return max ? max : COLLECT_GET_MAX_UNKNOWN;
}

int collect_verify(const char *src, enum sc_format fmt, int w, int h, const char *sha, int64_t *size,
		   int64_t *mtime_ms, char *why, size_t whysz)
{
	char ours[65];
	struct stat sb;
	int rc, fd;

	rc = image_check(src, fmt, w, h, why, whysz);
	if (rc)
		return rc;
	rc = util_sha256_file(src, ours);
	if (rc) {
		snprintf(why, whysz, "cannot read the rendered file: %s", strerror(-rc));
		return rc;
	}
	if (sha && strcmp(sha, ours)) {
		char raw[17], theirs[80];

		/* The node's text: at most 16 bytes of it, made safe. */
		snprintf(raw, sizeof(raw), "%s", sha);
		util_clean_line(theirs, sizeof(theirs), raw);
		snprintf(why, whysz, "checksum mismatch: the worker reported %s..., the file has %.16s...",
			 theirs, ours);
		return -EIO;
	}
	fd = open(src, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0 || fstat(fd, &sb) < 0) {
		rc = -errno;
		snprintf(why, whysz, "cannot make the frame durable: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	close(fd);
	*size = sb.st_size;
	*mtime_ms = (int64_t)sb.st_mtim.tv_sec * 1000 + sb.st_mtim.tv_nsec / 1000000;
	return 0;
}

int collect_commit(struct store *st, int64_t frame_id, int64_t lease, enum frame_event ev, int64_t node,
		   int64_t job, uint32_t frame, enum sc_format fmt, const char *src, int64_t size,
		   int64_t mtime_ms, double secs)
{
	struct frame_move m = {
	    .now = util_now_ms(), .node = node, .size = size, .mtime = mtime_ms, .secs = secs};
	char dst[4096], dir[4096];
	int rc;

	store_path_frame(st, job, frame, sc_format_ext(fmt), dst, sizeof(dst));
	store_path_job(st, job, dir, sizeof(dir));
	snprintf(dir + strlen(dir), sizeof(dir) - strlen(dir), "/frames");
	rc = store_begin(st);
	if (rc)
		goto out_unlink;
	rc = store_frame_transition(st, frame_id, lease, ev, &m);
	if (rc < 0)
		goto out_rollback;
	if (rename(src, dst) < 0) {
		rc = -errno;
		goto out_rollback;
	}
	rc = util_fsync_dir(dir);
	if (rc)
		goto out_rollback;
	return store_commit(st);

out_rollback:
	store_rollback(st);
out_unlink:
	unlink(src);
	return rc < 0 ? rc : -EIO;
}

struct link_ctx {
	struct store *st;
	const char *ext;
	const char *dir;
	int n;
	int rc;
};

static int link_frame(void *arg, const struct frame_row *f)
{
	struct link_ctx *c = arg;
	char target[4096], lnk[4200];

	store_path_frame(c->st, f->job, f->frame, c->ext, target, sizeof(target));
	snprintf(lnk, sizeof(lnk), "%s/%07d%s", c->dir, c->n, c->ext);
	if (symlink(target, lnk) < 0) {
		c->rc = -errno;
		return 1;
	}
	c->n++;
	return 0;
}

int video_start(struct store *st, int64_t job, double fps, pid_t *pid)
{
	char jobdir[4096], seq[4200], pattern[4300], out[4200], logp[4200], rate[32];
	struct job_row j;
	struct link_ctx c;
	pid_t child;
	int rc;

	rc = job_get(st, job, &j);
	if (rc)
		return rc;
	store_path_job(st, job, jobdir, sizeof(jobdir));
	snprintf(seq, sizeof(seq), "%s/video.seq", jobdir);
	util_rmtree(seq);
	rc = util_mkdirs(seq);
	if (rc)
		return rc;
	c = (struct link_ctx){.st = st, .ext = j.ext, .dir = seq};
	rc = job_frames(st, job, link_frame, &c);
	if (rc || c.rc)
		return rc ? rc : c.rc;
	if (c.n == 0)
		return -ENOENT;
	snprintf(pattern, sizeof(pattern), "%s/%%07d%s", seq, j.ext);
	snprintf(out, sizeof(out), "%s/video.part.mp4", jobdir);
	snprintf(logp, sizeof(logp), "%s/video.log", jobdir);
	snprintf(rate, sizeof(rate), "%.6g", fps > 0 ? fps : 24.0);
	{
		/* Even dimensions for yuv420p; H.264 at a quality that suits
		 * previews and dailies. */
		char *argv[] = {
		    "ffmpeg",
		    "-nostdin",
		    "-y",
		    "-loglevel",
		    "error",
		    "-framerate",
		    rate,
		    "-start_number",
		    "0",
		    "-i",
		    pattern,
		    "-vf",
		    "pad=ceil(iw/2)*2:ceil(ih/2)*2",
		    "-c:v",
		    "libx264",
		    "-pix_fmt",
		    "yuv420p",
		    "-crf",
		    "18",
		    "-movflags",
		    "+faststart",
		    out,
		    NULL,
		};
		pid_t parent = getpid();
		int logfd = open(logp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		if (logfd < 0)
			return -errno;
		child = fork();
		if (child < 0) {
			rc = -errno;
			close(logfd);
			return rc;
		}
		if (child == 0) {
			int nul = open("/dev/null", O_RDONLY);

			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent)
				_exit(127);
			if (nul >= 0)
				dup2(nul, 0);
			dup2(logfd, 1);
			dup2(logfd, 2);
			execvp(argv[0], argv);
			_exit(127);
		}
		close(logfd);
	}
	*pid = child;
	return 0;
}

int video_finish(struct store *st, int64_t job, int status, char *why, size_t whysz)
{
	char jobdir[4096], part[4200], final[4200], logp[4200], seq[4200], raw[512], tail[512];
	int rc = 0;

	store_path_job(st, job, jobdir, sizeof(jobdir));
	snprintf(part, sizeof(part), "%s/video.part.mp4", jobdir);
	snprintf(logp, sizeof(logp), "%s/video.log", jobdir);
	snprintf(seq, sizeof(seq), "%s/video.seq", jobdir);
	store_path_video(st, job, final, sizeof(final));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		util_tail_lines(logp, 2, raw, sizeof(raw));
		for (char *p = raw; *p; p++)
			if (*p == '\n')
				*p = ' ';
		util_clean_line(tail, sizeof(tail), raw);
		if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
			snprintf(why, whysz, "video: ffmpeg not found on PATH");
		else
			snprintf(why, whysz, "video: ffmpeg failed: %s", tail[0] ? tail : "no message");
		unlink(part);
		rc = -EIO;
	} else {
		rc = util_rename_durable(part, final);
		if (rc)
			snprintf(why, whysz, "video: cannot store: %s", strerror(-rc));
		else
			store_change(st, CH_JOBDIR, job);
	}
	util_rmtree(seq);
	return rc;
}

int collect_expected_size(int res_w, int res_h, int res_pct, int scene_x, int scene_y, int scene_pct, int *w,
			  int *h)
{
	int64_t x = res_w > 0 ? res_w : scene_x, y = res_h > 0 ? res_h : scene_y;
	int64_t pct = res_pct > 0 ? res_pct : res_w > 0 || res_h > 0 ? 100 : scene_pct;

	if (x <= 0 || y <= 0 || pct <= 0)
		return -ENOENT;
	x = x * pct / 100;
	y = y * pct / 100;
	if (x < 1 || y < 1 || x > IMAGE_MAX_DIM || y > IMAGE_MAX_DIM)
		return -ENOENT;
	*w = (int)x;
	*h = (int)y;
	return 0;
}

int collect_scene_resolution(const char *path, const char *scene, int *x, int *y, int *pct)
{
	struct blendfile *bf = NULL;
	char err[256];
	int rc = blendfile_open(path, NULL, &bf, err, sizeof(err));

	if (rc)
		return rc < 0 ? rc : -EIO;
	rc = -ENOENT;
	for (size_t i = 0; i < bf->nscenes; i++) {
		const struct blendfile_scene *sc = &bf->scenes[i];

		if (scene && scene[0] ? strcmp(sc->name, scene) : !sc->active)
			continue;
		*x = sc->res_x;
		*y = sc->res_y;
		*pct = sc->res_percent;
		rc = 0;
		break;
	}
	/* No scene marked active: Blender opens the first. */
	if (rc && !(scene && scene[0]) && bf->nscenes) {
		*x = bf->scenes[0].res_x;
		*y = bf->scenes[0].res_y;
		*pct = bf->scenes[0].res_percent;
		rc = 0;
	}
	blendfile_free(bf);
	return rc;
}
