/*
 * node_out: out/, the read-only tree of results.  out/JOB is a job's
 * directory: its frames (listed once done, never changing after), the
 * video JOB.mp4 once assembled, status files (node_status.c), control
 * (each write is one command for jobs.c) and logs/ with one log per
 * rendered frame.  Nothing can be made or changed here (EROFS); frames,
 * the video and the whole job directory can be removed through jobs.c,
 * which refuses (EBUSY) while the job is active, and the other entries
 * "remove" without removing anything once the job has ended -- they are
 * hidden until the directory goes (hidden.c) -- so that `rm -r out/JOB`
 * and Samba's deltree work.
 *
 * Owners: a job and everything in out/JOB show the uid and gid of its
 * .blend's dropper.  out/JOB and logs/ are 0755 and control 0644, so only
 * the owner (and root) may write control or remove entries (EACCES); out/
 * is sticky and world-writable (1777) so the owner may remove the job's
 * directory and no one else (EPERM, the kernel's answer for a sticky
 * directory).  Everyone reads.
 */
#include "node.h"
#include "jobs/jobs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- out/ ---- */

static int out_getattr(struct store *s, fuse_ino_t ino, struct stat *st, double *ttl)
{
	(void)ttl;
	node_fill_dir(st, ino, 01777);
	node_set_times(st, node_dir_time(s, CH_OUT, 0, 0));
	return 0;
}

static int out_lookup(struct store *s, fuse_ino_t dir, const char *name, fuse_ino_t *ino)
{
	struct job_row j;
	int rc;

	(void)dir;
	rc = job_by_name(s, name, &j);
	if (!rc)
		*ino = INO(T_JOB, j.id);
	return rc;
}

struct out_list_ctx {
	struct listing *l;
	const char *ext;
};

static int list_job(void *arg, const struct job_row *j)
{
	struct out_list_ctx *c = arg;

	list_add(c->l, INO(T_JOB, j->id), 1, j->name);
	return 0;
}

static int out_list(struct store *s, fuse_ino_t dir, struct listing *l)
{
	struct out_list_ctx c = {.l = l};

	(void)dir;
	return jobs_list(s, list_job, &c);
}

/* out/ itself is EACCES to setattr, as the root's other entries are. */
const struct node_ops node_out = {
    .getattr = out_getattr,
    .lookup = out_lookup,
    .list = out_list,
    .refuse_make = EROFS,
};

/* ---- out/JOB and out/JOB/logs ---- */

/* The job's owner on st. */
static void job_owner(struct stat *st, const struct job_row *j)
{
	st->st_uid = node_uid(j->uid);
	st->st_gid = node_gid(j->gid);
}

/* The caller may change what is in the job's directory: it owns it. */
static int job_writer_check(struct store *s, int64_t job)
{
	struct job_row j;
	int rc = job_get(s, job, &j);

	if (rc)
		return rc;
	return node_caller_owns(node_uid(j.uid)) ? 0 : -EACCES;
}

/* Its times: the last change the store dated, else its own. */
static int64_t job_time(const struct job_row *j)
{
	int64_t t = j->created;

	if (j->started > t)
		t = j->started;
	if (j->ended > t)
		t = j->ended;
	return t;
}

static int job_dir_getattr(struct store *s, fuse_ino_t ino, struct stat *st, double *ttl)
{
	struct job_row j;
	int rc;

	(void)ttl;
	rc = job_get(s, INO_ID(ino), &j);
	if (rc)
		return rc;
	node_fill_dir(st, ino, 0755);
	job_owner(st, &j);
	node_set_times(st, node_dir_time(s, CH_JOBDIR, j.id, job_time(&j)));
	return 0;
}

static int jlogs_getattr(struct store *s, fuse_ino_t ino, struct stat *st, double *ttl)
{
	struct job_row j;
	int rc;

	(void)ttl;
	rc = job_get(s, INO_ID(ino), &j);
	if (rc)
		return rc;
	node_fill_dir(st, ino, 0755);
	job_owner(st, &j);
	node_set_times(st, node_dir_time(s, CH_JOBLOGS, j.id, j.created));
	return 0;
}

static int job_lookup(struct store *s, fuse_ino_t dir, const char *name, fuse_ino_t *ino)
{
	int64_t id = INO_ID(dir);
	char video[JOB_NAME_MAX + 8];
	struct frame_row f;
	struct job_row j;
	long n;
	int rc;

	rc = job_get(s, id, &j);
	if (rc)
		return rc;
	if (!strcmp(name, "status"))
		*ino = INO(T_JSTATUS, id);
	else if (!strcmp(name, "status.json"))
		*ino = INO(T_JSTATUSJSON, id);
	else if (!strcmp(name, "control"))
		*ino = INO(T_JCONTROL, id);
	else if (!strcmp(name, "logs"))
		*ino = INO(T_JLOGS, id);
	else if (snprintf(video, sizeof(video), "%s.mp4", j.name) > 0 && !strcmp(name, video) &&
		 j.video_exists)
		*ino = INO(T_JVIDEO, id);
	else if ((n = node_parse_frame_name(name, j.ext)) >= 0 && !frame_by_number(s, id, (uint32_t)n, &f) &&
		 f.state == FS_DONE && !f.removed)
		*ino = INO(T_FRAME, f.id);
	else
		return -ENOENT;
	return 0;
}

static int list_frame(void *arg, const struct frame_row *f)
{
	struct out_list_ctx *c = arg;
	char name[64];

	frame_file_name(f->frame, c->ext, name, sizeof(name));
	list_add_frame(c->l, INO(T_FRAME, f->id), f->size, f->mtime, name);
	return 0;
}

static int job_list(struct store *s, fuse_ino_t dir, struct listing *l)
{
	int64_t id = INO_ID(dir);
	struct out_list_ctx c = {.l = l};
	char video[JOB_NAME_MAX + 8];
	struct job_row j;
	int rc;

	rc = job_get(s, id, &j);
	if (rc)
		return rc;
	c.ext = j.ext;
	list_add(l, INO(T_JSTATUS, id), 0, "status");
	list_add(l, INO(T_JSTATUSJSON, id), 0, "status.json");
	list_add(l, INO(T_JCONTROL, id), 0, "control");
	list_add(l, INO(T_JLOGS, id), 1, "logs");
	if (j.video_exists) {
		snprintf(video, sizeof(video), "%s.mp4", j.name);
		list_add(l, INO(T_JVIDEO, id), 0, video);
	}
	return job_frames(s, id, list_frame, &c);
}

/* out/ is sticky: removing another's job is EPERM. */
static int job_rmdir(struct store *s, fuse_ino_t ino)
{
	struct job_row j;
	int rc = job_get(s, INO_ID(ino), &j);

	if (!rc)
		rc = node_sticky_check(node_uid(j.uid));
	if (!rc)
		rc = job_remove(s, INO_ID(ino));
	if (!rc)
		node_unhide_job(INO_ID(ino));
	return rc;
}

/* An entry of an ended job that goes with its directory: nothing is
 * removed, the name is hidden (hidden.c: Samba removes a directory only
 * once it lists nothing). */
int node_hide_removed(struct store *s, fuse_ino_t ino, int64_t job)
{
	int rc = job_removable(s, job);

	return rc ? rc : node_hide(ino, job);
}

const struct node_ops node_job = {
    .getattr = job_dir_getattr,
    .lookup = job_lookup,
    .list = job_list,
    .rmdir = job_rmdir,
    .refuse = EROFS,
    .refuse_make = EROFS,
};

static int jlogs_lookup(struct store *s, fuse_ino_t dir, const char *name, fuse_ino_t *ino)
{
	long n = node_parse_frame_name(name, ".log");
	struct frame_row f;

	if (n < 0 || frame_by_number(s, INO_ID(dir), (uint32_t)n, &f) || !f.logged)
		return -ENOENT;
	*ino = INO(T_LOG, f.id);
	return 0;
}

static int list_log(void *arg, const struct frame_row *f)
{
	struct out_list_ctx *c = arg;
	char name[64];

	frame_file_name(f->frame, ".log", name, sizeof(name));
	list_add(c->l, INO(T_LOG, f->id), 0, name);
	return 0;
}

static int jlogs_list(struct store *s, fuse_ino_t dir, struct listing *l)
{
	struct out_list_ctx c = {.l = l};

	return job_logs(s, INO_ID(dir), list_log, &c);
}

/* logs/ goes with the job's directory (rm -r): fine once it has ended. */
static int jlogs_rmdir(struct store *s, fuse_ino_t ino)
{
	int rc = job_writer_check(s, INO_ID(ino));

	return rc ? rc : node_hide_removed(s, ino, INO_ID(ino));
}

const struct node_ops node_jlogs = {
    .getattr = jlogs_getattr,
    .lookup = jlogs_lookup,
    .list = jlogs_list,
    .rmdir = jlogs_rmdir,
    .refuse = EROFS,
    .refuse_make = EROFS,
};

/* ---- out/JOB/control ---- */

static int control_getattr(struct store *s, fuse_ino_t ino, struct stat *st, double *ttl)
{
	struct job_row j;
	int rc;

	(void)ttl;
	rc = job_get(s, INO_ID(ino), &j);
	if (rc)
		return rc;
	node_fill_reg(st, ino, 0644, 0, j.created);
	job_owner(st, &j);
	return 0;
}

/* Reads see an empty file: the handle has neither fd nor snapshot.  It is
 * seekable: smbd writes a command with pwrite at offset 0 (ESPIPE on a
 * non-seekable file), and every write is one command whatever its
 * offset.  Only the job's owner (and root) opens it for writing or
 * changes it. */
static int control_open(struct store *s, fuse_ino_t ino, struct fuse_file_info *fi, struct fh *fh)
{
	(void)fh;
	fi->direct_io = 1;
	if (node_is_write(fi->flags))
		return job_writer_check(s, INO_ID(ino));
	return job_get(s, INO_ID(ino), &(struct job_row){0});
}

/* Truncating to 0 and setting times change nothing and succeed: smbd
 * truncates and sets the times when it closes what it wrote, and gio save
 * stops at the first error.  Anything else (mode, owner, a size) is
 * EROFS. */
static int control_setattr(struct store *s, fuse_ino_t ino, const struct stat *attr, int to_set, struct fh *fh)
{
	const int times = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
			  FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME;

	int rc = job_writer_check(s, INO_ID(ino));

	(void)fh;
	if (rc)
		return rc;
	if (to_set & ~(times | FUSE_SET_ATTR_SIZE))
		return -EROFS;
	if ((to_set & FUSE_SET_ATTR_SIZE) && attr->st_size != 0)
		return -EROFS;
	return job_get(s, INO_ID(ino), &(struct job_row){0});
}

/* Each write is one command; status renderings are stale after it. */
static int control_write(struct fh *fh, fuse_ino_t ino, const char *buf, size_t size, off_t off, size_t *done)
{
	struct store *s = pool_get();
	int rc;

	(void)fh;
	(void)off;
	rc = s ? job_control(s, INO_ID(ino), buf, size) : -EIO;
	status_cache_flush();
	pool_put(s);
	if (!rc)
		*done = size;
	return rc;
}

static int job_entry_unlink(struct store *s, fuse_ino_t ino, const char *name)
{
	int rc = job_writer_check(s, INO_ID(ino));

	(void)name;
	return rc ? rc : node_hide_removed(s, ino, INO_ID(ino));
}

const struct node_ops node_jcontrol = {
    .getattr = control_getattr,
    .open = control_open,
    .write = control_write,
    .setattr = control_setattr,
    .unlink = job_entry_unlink,
    .refuse = EROFS,
    .refuse_make = EROFS,
};

/* ---- out/JOB/JOB.mp4, frames, logs: local files, read-only ---- */

static int open_ro(const char *path, struct fh *fh)
{
	fh->fd = open(path, O_RDONLY | O_CLOEXEC);
	return fh->fd < 0 ? -errno : 0;
}

static int video_getattr(struct store *s, fuse_ino_t ino, struct stat *st, double *ttl)
{
	char path[4096];
	struct job_row j;
	int rc;

	(void)ttl;
	rc = job_get(s, INO_ID(ino), &j);
	if (rc)
		return rc;
	store_path_video(s, INO_ID(ino), path, sizeof(path));
	rc = node_stat_file(path, ino, 0444, st);
	job_owner(st, &j);
	return rc;
}

static int video_open(struct store *s, fuse_ino_t ino, struct fuse_file_info *fi, struct fh *fh)
{
	char path[4096];
	int rc;

	if (node_is_write(fi->flags))
		return -EROFS;
	store_path_video(s, INO_ID(ino), path, sizeof(path));
	rc = open_ro(path, fh);
	if (!rc)
		fi->keep_cache = 1;
	return rc;
}

static int video_unlink(struct store *s, fuse_ino_t ino, const char *name)
{
	int rc = job_writer_check(s, INO_ID(ino));

	(void)name;
	return rc ? rc : job_remove_video(s, INO_ID(ino));
}

const struct node_ops node_jvideo = {
    .getattr = video_getattr,
    .open = video_open,
    .unlink = video_unlink,
    .refuse = EROFS,
    .refuse_make = EROFS,
};

/* The frame row of a frame or log inode, and its job. */
static int frame_and_job(struct store *s, fuse_ino_t ino, struct frame_row *f, struct job_row *j)
{
	int rc = frame_get(s, INO_ID(ino), f);

	return rc ? rc : job_get(s, f->job, j);
}

static int frame_getattr(struct store *s, fuse_ino_t ino, struct stat *st, double *ttl)
{
	struct frame_row f;
	struct job_row j;
	int rc;

	rc = frame_and_job(s, ino, &f, &j);
	if (rc)
		return rc;
	if (f.state != FS_DONE || f.removed)
		return -ENOENT;
	node_fill_reg(st, ino, 0444, (off_t)f.size, f.mtime);
	job_owner(st, &j);
	*ttl = TTL_FOREVER;
	return 0;
}

/* Frames never change: the page cache may keep them. */
static int frame_open(struct store *s, fuse_ino_t ino, struct fuse_file_info *fi, struct fh *fh)
{
	struct frame_row f;
	struct job_row j;
	char path[4096];
	int rc;

	if (node_is_write(fi->flags))
		return -EROFS;
	rc = frame_and_job(s, ino, &f, &j);
	if (rc)
		return rc;
	store_path_frame(s, f.job, f.frame, j.ext, path, sizeof(path));
	rc = open_ro(path, fh);
	if (!rc)
		fi->keep_cache = 1;
	return rc;
}

static int frame_unlink(struct store *s, fuse_ino_t ino, const char *name)
{
	struct frame_row f;
	int rc;

	(void)name;
	rc = frame_get(s, INO_ID(ino), &f);
	if (!rc)
		rc = job_writer_check(s, f.job);
	return rc ? rc : job_remove_frame(s, INO_ID(ino));
}

const struct node_ops node_frame = {
    .getattr = frame_getattr,
    .open = frame_open,
    .unlink = frame_unlink,
    .refuse = EROFS,
    .refuse_make = EROFS,
    .entry_ttl = NODE_TTL_FOREVER,
};

static int log_getattr(struct store *s, fuse_ino_t ino, struct stat *st, double *ttl)
{
	struct frame_row f;
	struct job_row j;
	char path[4096];
	int rc;

	rc = frame_and_job(s, ino, &f, &j);
	if (rc)
		return rc;
	store_path_log(s, f.job, f.frame, path, sizeof(path));
	*ttl = 0;
	rc = node_stat_file(path, ino, 0444, st);
	job_owner(st, &j);
	return rc;
}

/* A log may still be growing: no page cache, direct_io. */
static int log_open(struct store *s, fuse_ino_t ino, struct fuse_file_info *fi, struct fh *fh)
{
	struct frame_row f;
	struct job_row j;
	char path[4096];
	int rc;

	if (node_is_write(fi->flags))
		return -EROFS;
	rc = frame_and_job(s, ino, &f, &j);
	if (rc)
		return rc;
	store_path_log(s, f.job, f.frame, path, sizeof(path));
	rc = open_ro(path, fh);
	if (!rc) {
		fi->keep_cache = 0;
		fi->direct_io = 1;
	}
	return rc;
}

/* Logs go with the job's directory (rm -r): fine once it has ended. */
static int log_unlink(struct store *s, fuse_ino_t ino, const char *name)
{
	struct frame_row f;
	int rc;

	(void)name;
	rc = frame_get(s, INO_ID(ino), &f);
	if (!rc)
		rc = job_writer_check(s, f.job);
	return rc ? rc : node_hide_removed(s, ino, f.job);
}

const struct node_ops node_log = {
    .getattr = log_getattr,
    .open = log_open,
    .unlink = log_unlink,
    .refuse = EROFS,
    .refuse_make = EROFS,
};
