/*
 * engine: the backend thread.  It owns one store connection, the local
 * node's worker slots and the video child.  Its loop: take complete drops
 * in, give frames to free slots (pull: a slot takes the next frame the
 * moment it is free), read worker reports, collect frames, end jobs.
 *
 * Every decision goes to the store first (a guarded transition) and is
 * acted on only when it committed; a lost race (-ESTALE) makes the engine
 * drop what it holds, never act twice.
 *
 * Lock order: none.  Nothing here is shared with other threads except the
 * stop flag (atomic) and the wake pipe.
 */
#include "engine.h"
#include "collect.h"
#include "intake.h"
#include "jobs.h"
#include "sidecar.h"
#include "store.h"
#include "transport.h"
#include "util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern const unsigned char worker_script[];
extern const size_t worker_script_len;

#define MAX_SLOTS      64
#define LINE_MAX_BYTES (64 * 1024) /* a longer worker line is cut */
#define LEASE_MS       60000       /* a lease lives this long unless renewed */
#define HEARTBEAT_MS   10000
#define BLOCK_AFTER    3 /* failed frames of a job before a node is blocked */
#define FORGIVE_MS     (10 * 60 * 1000)
#define IDLE_WORKER_MS 30000 /* an idle worker with nothing to do exits */

enum slot_state { SLOT_EMPTY, SLOT_STARTING, SLOT_READY, SLOT_BUSY };

struct slot {
	int idx;
	enum slot_state state;
	struct tproc proc;
	int64_t job; /* the job whose scene this worker loaded */
	enum sc_format fmt;
	int64_t timeout_ms;
	/* the frame this slot holds (STARTING or BUSY) */
	int64_t frame_id, lease;
	uint32_t frame_no;
	int frame_sent;
	int64_t frame_started, last_output, last_beat, idle_since; /* mono ms */
	int log_fd;
	int width, height;
	char setup_error[512];
	char last_fail[512];
	char outpath[4096];
	char line[LINE_MAX_BYTES + 1];
	size_t line_len;
	int line_dropping; /* inside a line longer than the cap */
};

struct engine {
	char *dir;
	const struct config *cfg;
	struct store *st;
	pthread_t thread;
	atomic_int stop;
	int wake[2];
	int64_t node_id;
	char node_error[512];
	int node_ok;
	char worker_path[4096];
	struct slot slots[MAX_SLOTS];
	int nslots;
	pid_t video_pid;
	int64_t video_job;
	int64_t last_scan, last_jobs;
};

/* ---- the local node ---- */

static int node_update(struct engine *e, const char *set_sql, const char *a, const char *b)
{
	char sql[512];
	sqlite3_stmt *s;
	int rc;

	snprintf(sql, sizeof(sql), "UPDATE nodes SET %s WHERE id = ?3", set_sql);
	rc = store_prepare(e->st, sql, &s);
	if (rc)
		return rc;
	if (a)
		sqlite3_bind_text(s, 1, a, -1, SQLITE_TRANSIENT);
	if (b)
		sqlite3_bind_text(s, 2, b, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 3, e->node_id);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	store_change(e->st, CH_NODES, e->node_id);
	return rc;
}

static int node_register(struct engine *e)
{
	sqlite3_stmt *s;
	int rc;

	rc = store_prepare(e->st,
			   "INSERT INTO nodes(name, provider, address, slots, state)"
			   " VALUES ('local', 'local', 'localhost', ?1, 'starting')"
			   " ON CONFLICT(name) DO UPDATE SET slots = ?1, state = 'starting', error = NULL,"
			   " removed = 0",
			   &s);
	if (rc)
		return rc;
	sqlite3_bind_int(s, 1, e->nslots);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	if (rc)
		return rc;
	rc = store_prepare(e->st, "SELECT id FROM nodes WHERE name = 'local'", &s);
	if (rc)
		return rc;
	if (sqlite3_step(s) == SQLITE_ROW)
		e->node_id = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return e->node_id ? 0 : -EIO;
}

static void node_set_state(struct engine *e)
{
	int busy = 0;

	for (int i = 0; i < e->nslots; i++)
		busy += e->slots[i].state == SLOT_BUSY || e->slots[i].state == SLOT_STARTING;
	node_update(e, "state = ?1", !e->node_ok ? "error" : busy ? "rendering" : "idle", NULL);
}

/* What a worker's "ready" says about the node: device, Blender version. */
static void node_note_ready(struct engine *e, const cJSON *msg)
{
	const cJSON *dev = cJSON_GetObjectItem(msg, "device");
	const cJSON *why = cJSON_GetObjectItem(msg, "why");
	const cJSON *ver = cJSON_GetObjectItem(msg, "blender");
	const cJSON *devs = cJSON_GetObjectItem(msg, "devices");
	char gpus[1024] = "";
	int ngpu = 0;
	sqlite3_stmt *s;

	if (cJSON_IsArray(devs)) {
		const cJSON *d;

		cJSON_ArrayForEach(d, devs)
		{
			if (!cJSON_IsString(d) || !strncmp(d->valuestring, "CPU", 3))
				continue;
			size_t l = strlen(gpus);
			snprintf(gpus + l, sizeof(gpus) - l, "%s%s", l ? ", " : "", d->valuestring);
			ngpu++;
		}
	}
	if (store_prepare(e->st,
			  "UPDATE nodes SET device = coalesce(?1, device),"
			  " device_why = coalesce(?2, device_why), blender = coalesce(?3, blender),"
			  " gpus = ?4, gpu_names = ?5 WHERE id = ?6",
			  &s))
		return;
	if (cJSON_IsString(dev))
		sqlite3_bind_text(s, 1, dev->valuestring, -1, SQLITE_TRANSIENT);
	if (cJSON_IsString(why))
		sqlite3_bind_text(s, 2, why->valuestring, -1, SQLITE_TRANSIENT);
	if (cJSON_IsString(ver))
		sqlite3_bind_text(s, 3, ver->valuestring, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(s, 4, ngpu);
	sqlite3_bind_text(s, 5, gpus, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 6, e->node_id);
	sqlite3_step(s);
	sqlite3_finalize(s);
	store_change(e->st, CH_NODES, e->node_id);
}

/* ---- worker processes ---- */

static void slot_close_log(struct slot *sl)
{
	if (sl->log_fd >= 0)
		close(sl->log_fd);
	sl->log_fd = -1;
}

static void slot_kill(struct engine *e, struct slot *sl)
{
	int status;

	if (sl->proc.pid > 0) {
		local_transport.kill(NULL, &sl->proc);
		waitpid(sl->proc.pid, &status, 0);
		sl->proc.pid = 0;
	}
	if (sl->proc.in_fd >= 0)
		close(sl->proc.in_fd);
	if (sl->proc.out_fd >= 0)
		close(sl->proc.out_fd);
	if (sl->proc.err_fd >= 0)
		close(sl->proc.err_fd);
	sl->proc.in_fd = sl->proc.out_fd = sl->proc.err_fd = -1;
	slot_close_log(sl);
	sl->state = SLOT_EMPTY;
	sl->job = 0;
	sl->frame_id = 0;
	sl->line_len = 0;
	sl->line_dropping = 0;
	(void)e;
}

static int write_all(int fd, const char *buf, size_t len)
{
	/* The pipe is non-blocking; a worker that does not read its stdin
	 * for long enough to fill 64 KiB is treated as hung. */
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd p = {.fd = fd, .events = POLLOUT};

				if (poll(&p, 1, 1000) <= 0)
					return -ETIMEDOUT;
				continue;
			}
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int slot_send_json(struct slot *sl, cJSON *obj)
{
	char *text = cJSON_PrintUnformatted(obj);
	int rc;

	if (!text)
		return -ENOMEM;
	rc = write_all(sl->proc.in_fd, text, strlen(text));
	if (!rc)
		rc = write_all(sl->proc.in_fd, "\n", 1);
	free(text);
	return rc;
}

struct job_spec {
	char sha[65];
	char scene[SIDECAR_SCENE_MAX];
	char engine_name[16], device[16], format[8];
	int samples, res_w, res_h, res_pct;
	int64_t timeout_ms;
};

static int job_spec_get(struct store *st, int64_t job, struct job_spec *js)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st,
			       "SELECT blend_sha, scene, engine, device, format, samples, res_w,"
			       " res_h, res_pct, timeout_ms FROM jobs WHERE id = ?",
			       &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	rc = -ENOENT;
	if (sqlite3_step(s) == SQLITE_ROW) {
		snprintf(js->sha, sizeof(js->sha), "%s", (const char *)sqlite3_column_text(s, 0));
		snprintf(js->scene, sizeof(js->scene), "%s", (const char *)sqlite3_column_text(s, 1));
		snprintf(js->engine_name, sizeof(js->engine_name), "%s",
			 (const char *)sqlite3_column_text(s, 2));
		snprintf(js->device, sizeof(js->device), "%s", (const char *)sqlite3_column_text(s, 3));
		snprintf(js->format, sizeof(js->format), "%s", (const char *)sqlite3_column_text(s, 4));
		js->samples = sqlite3_column_int(s, 5);
		js->res_w = sqlite3_column_int(s, 6);
		js->res_h = sqlite3_column_int(s, 7);
		js->res_pct = sqlite3_column_int(s, 8);
		js->timeout_ms = sqlite3_column_int64(s, 9);
		rc = 0;
	}
	sqlite3_finalize(s);
	return rc;
}

static enum sc_format format_of(const char *name)
{
	for (int f = SC_FORMAT_PNG; f <= SC_FORMAT_TIFF; f++)
		if (!strcmp(name, sc_format_name((enum sc_format)f)))
			return (enum sc_format)f;
	return SC_FORMAT_PNG;
}

/* Start a worker for job on this slot: Blender loads the job's blob once. */
static int slot_spawn(struct engine *e, struct slot *sl, int64_t job)
{
	struct job_spec js;
	char blob[4096], cwd[4096];
	cJSON *setup;
	int rc;

	rc = job_spec_get(e->st, job, &js);
	if (rc)
		return rc;
	store_path_blob(e->st, js.sha, blob, sizeof(blob));
	snprintf(cwd, sizeof(cwd), "%s/work/slot%d", e->dir, sl->idx);
	util_rmtree(cwd);
	rc = util_mkdirs(cwd);
	if (rc)
		return rc;
	{
		/* -Y before the file: no script inside a dropped .blend runs. */
		char *argv[] = {e->cfg->blender, "-b",           "-Y", "--factory-startup", blob,
				"--python",      e->worker_path, NULL};

		rc = local_transport.spawn(NULL, argv, cwd, &sl->proc);
	}
	if (rc)
		return rc;
	sl->state = SLOT_STARTING;
	sl->job = job;
	sl->fmt = format_of(js.format);
	sl->timeout_ms = js.timeout_ms;
	sl->setup_error[0] = '\0';
	sl->last_output = util_mono_ms();
	sl->width = sl->height = 0;
	setup = cJSON_CreateObject();
	if (!setup)
		return -ENOMEM;
	if (js.scene[0])
		cJSON_AddStringToObject(setup, "scene", js.scene);
	else
		cJSON_AddNullToObject(setup, "scene");
	cJSON_AddStringToObject(setup, "engine", js.engine_name);
	cJSON_AddStringToObject(setup, "device", js.device);
	cJSON_AddNumberToObject(setup, "samples", js.samples);
	cJSON_AddNumberToObject(setup, "res_w", js.res_w);
	cJSON_AddNumberToObject(setup, "res_h", js.res_h);
	cJSON_AddNumberToObject(setup, "res_pct", js.res_pct);
	cJSON_AddStringToObject(setup, "format", js.format);
	cJSON_AddNumberToObject(setup, "gpu_index", -1);
	rc = slot_send_json(sl, setup);
	cJSON_Delete(setup);
	return rc;
}

static int slot_send_frame(struct engine *e, struct slot *sl)
{
	cJSON *msg = cJSON_CreateObject();
	char name[64];
	int rc;

	if (!msg)
		return -ENOMEM;
	frame_file_name(sl->frame_no, sc_format_ext(sl->fmt), name, sizeof(name));
	snprintf(sl->outpath, sizeof(sl->outpath), "%s/work/slot%d/%s", e->dir, sl->idx, name);
	unlink(sl->outpath);
	cJSON_AddNumberToObject(msg, "frame", sl->frame_no);
	cJSON_AddStringToObject(msg, "out", sl->outpath);
	rc = slot_send_json(sl, msg);
	cJSON_Delete(msg);
	if (!rc) {
		sl->frame_sent = 1;
		sl->state = SLOT_BUSY;
		sl->frame_started = sl->last_output = util_mono_ms();
	}
	return rc;
}

/* ---- frame outcomes ---- */

static void count_node(struct engine *e, const char *col)
{
	char sql[96];

	snprintf(sql, sizeof(sql), "%s = %s + 1", col, col);
	node_update(e, sql, NULL, NULL);
}

static void set_job_error(struct store *st, int64_t job, const char *msg)
{
	sqlite3_stmt *s;

	if (store_prepare(st, "UPDATE jobs SET error = ? WHERE id = ?", &s))
		return;
	sqlite3_bind_text(s, 1, msg, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 2, job);
	sqlite3_step(s);
	sqlite3_finalize(s);
	store_change(st, CH_JOBDIR, job);
}

/* A failure counts against the node for this job; past BLOCK_AFTER the
 * node is blocked for the job until forgiven. */
static void blocklist_note(struct engine *e, int64_t job, const char *why)
{
	sqlite3_stmt *s;

	if (store_prepare(e->st,
			  "INSERT INTO blocklist(node, job, failures, reason) VALUES (?1, ?2, 1, ?3)"
			  " ON CONFLICT(node, job) DO UPDATE SET failures = failures + 1, reason = ?3,"
			  " until = CASE WHEN failures + 1 >= ?4 THEN ?5 ELSE until END",
			  &s))
		return;
	sqlite3_bind_int64(s, 1, e->node_id);
	sqlite3_bind_int64(s, 2, job);
	sqlite3_bind_text(s, 3, why, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(s, 4, BLOCK_AFTER);
	sqlite3_bind_int64(s, 5, util_now_ms() + FORGIVE_MS);
	sqlite3_step(s);
	sqlite3_finalize(s);
}

static void frame_failed(struct engine *e, struct slot *sl, const char *why)
{
	struct frame_move m = {.now = util_now_ms(), .error = why};
	int rc;

	if (!sl->frame_id)
		return;
	rc = store_frame_transition(e->st, sl->frame_id, sl->lease, FE_FAIL, &m);
	if (rc >= 0) {
		char msg[700];

		snprintf(msg, sizeof(msg), "frame %u failed on local: %s", sl->frame_no, why);
		store_event(e->st, sl->job, e->node_id, sl->frame_id, "error", msg);
		set_job_error(e->st, sl->job, msg);
		node_update(e, "error = ?1", msg, NULL);
		count_node(e, "failed");
		blocklist_note(e, sl->job, why);
	}
	slot_close_log(sl);
	sl->frame_id = 0;
}

static void frame_done(struct engine *e, struct slot *sl, const cJSON *msg)
{
	const cJSON *secs = cJSON_GetObjectItem(msg, "secs");
	const cJSON *sha = cJSON_GetObjectItem(msg, "sha256");
	const cJSON *w = cJSON_GetObjectItem(msg, "width");
	const cJSON *h = cJSON_GetObjectItem(msg, "height");
	struct frame_move m = {.now = util_now_ms()};
	char why[512];
	int rc;

	m.secs = cJSON_IsNumber(secs) ? secs->valuedouble : (util_mono_ms() - sl->frame_started) / 1000.0;
	rc = store_frame_transition(e->st, sl->frame_id, sl->lease, FE_RENDERED, &m);
	if (rc < 0) {
		/* The frame was taken from us (cancelled): drop the result. */
		unlink(sl->outpath);
		slot_close_log(sl);
		sl->frame_id = 0;
		return;
	}
	rc = collect_frame(
	    e->st, sl->job, sl->frame_no, sl->outpath, sl->fmt, cJSON_IsNumber(w) ? w->valueint : sl->width,
	    cJSON_IsNumber(h) ? h->valueint : sl->height, cJSON_IsString(sha) ? sha->valuestring : NULL,
	    &m.size, &m.mtime, why, sizeof(why));
	if (rc) {
		unlink(sl->outpath);
		frame_failed(e, sl, why);
		return;
	}
	rc = store_frame_transition(e->st, sl->frame_id, sl->lease, FE_COLLECTED, &m);
	if (rc >= 0)
		count_node(e, "done");
	slot_close_log(sl);
	sl->frame_id = 0;
}

/* Blender's own output (the worker's stderr) goes to the frame's log as
 * it comes; any output at all shows the worker is not hung. */
static void slot_drain_log(struct slot *sl)
{
	char buf[16384];

	for (;;) {
		ssize_t n = sl->proc.err_fd >= 0 ? read(sl->proc.err_fd, buf, sizeof(buf)) : -1;

		if (n <= 0)
			return;
		sl->last_output = util_mono_ms();
		if (sl->log_fd >= 0 && write(sl->log_fd, buf, (size_t)n) != n)
			slot_close_log(sl);
	}
}

static void slot_line(struct engine *e, struct slot *sl, char *line, size_t len)
{
	cJSON *msg;
	const cJSON *ev;

	sl->last_output = util_mono_ms();
	if (len < 5 || memcmp(line, "@rfs ", 5)) {
		if (sl->log_fd >= 0) {
			line[len] = '\n';
			if (write(sl->log_fd, line, len + 1) < 0)
				slot_close_log(sl);
		}
		return;
	}
	line[len] = '\0';
	msg = cJSON_Parse(line + 5);
	ev = msg ? cJSON_GetObjectItem(msg, "ev") : NULL;
	if (!cJSON_IsString(ev))
		goto out;
	if (!strcmp(ev->valuestring, "ready") && sl->state == SLOT_STARTING) {
		const cJSON *w = cJSON_GetObjectItem(msg, "width");
		const cJSON *h = cJSON_GetObjectItem(msg, "height");
		const cJSON *fps = cJSON_GetObjectItem(msg, "fps");
		sqlite3_stmt *s;

		sl->width = cJSON_IsNumber(w) ? w->valueint : 0;
		sl->height = cJSON_IsNumber(h) ? h->valueint : 0;
		node_note_ready(e, msg);
		if (cJSON_IsNumber(fps) &&
		    !store_prepare(e->st, "UPDATE jobs SET scene_fps = ? WHERE id = ?", &s)) {
			sqlite3_bind_double(s, 1, fps->valuedouble);
			sqlite3_bind_int64(s, 2, sl->job);
			sqlite3_step(s);
			sqlite3_finalize(s);
		}
		sl->state = SLOT_READY;
		sl->idle_since = util_mono_ms();
		if (sl->frame_id && slot_send_frame(e, sl))
			frame_failed(e, sl, "could not hand the frame to the worker");
	} else if (!strcmp(ev->valuestring, "error") && sl->state == SLOT_STARTING) {
		const cJSON *m = cJSON_GetObjectItem(msg, "msg");

		snprintf(sl->setup_error, sizeof(sl->setup_error), "%s",
			 cJSON_IsString(m) ? m->valuestring : "worker setup failed");
	} else if (!strcmp(ev->valuestring, "start") && sl->state == SLOT_BUSY) {
		struct frame_move m = {.now = util_now_ms(), .lease_until = util_now_ms() + LEASE_MS};

		if (store_frame_transition(e->st, sl->frame_id, sl->lease, FE_START, &m) < 0)
			slot_kill(e, sl); /* no longer ours */
	} else if (!strcmp(ev->valuestring, "done") && sl->state == SLOT_BUSY && sl->frame_id) {
		slot_drain_log(sl);
		frame_done(e, sl, msg);
		sl->state = SLOT_READY;
		sl->idle_since = util_mono_ms();
	} else if (!strcmp(ev->valuestring, "fail") && sl->state == SLOT_BUSY && sl->frame_id) {
		const cJSON *m = cJSON_GetObjectItem(msg, "msg");

		slot_drain_log(sl);
		frame_failed(e, sl, cJSON_IsString(m) ? m->valuestring : "Blender reported a failure");
		sl->state = SLOT_READY;
		sl->idle_since = util_mono_ms();
	}
out:
	cJSON_Delete(msg);
}

static void slot_read(struct engine *e, struct slot *sl)
{
	char buf[16384];

	for (;;) {
		ssize_t n = read(sl->proc.out_fd, buf, sizeof(buf));

		if (n <= 0)
			return;
		for (ssize_t i = 0; i < n; i++) {
			char c = buf[i];

			if (c == '\n') {
				if (!sl->line_dropping)
					slot_line(e, sl, sl->line, sl->line_len);
				sl->line_len = 0;
				sl->line_dropping = 0;
			} else if (sl->line_len < LINE_MAX_BYTES) {
				sl->line[sl->line_len++] = c;
			} else if (!sl->line_dropping) {
				/* Over the cap: keep what we have as log text. */
				slot_line(e, sl, sl->line, sl->line_len);
				sl->line_len = 0;
				sl->line_dropping = 1;
			}
			if (sl->proc.out_fd < 0)
				return; /* the line handler killed the worker */
		}
	}
}

/* The worker process ended (or must be ended): settle what it held. */
static void slot_exited(struct engine *e, struct slot *sl, int status)
{
	char why[700], tail[400] = "";

	if (sl->line_len && !sl->line_dropping)
		slot_line(e, sl, sl->line, sl->line_len);
	sl->line_len = 0;
	slot_drain_log(sl);
	if (sl->frame_id) {
		if (sl->state == SLOT_STARTING) {
			if (sl->setup_error[0])
				snprintf(why, sizeof(why), "%s", sl->setup_error);
			else if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
				snprintf(why, sizeof(why), "blender not found: '%s' (set [local] blender)",
					 e->cfg->blender);
			else
				snprintf(why, sizeof(why),
					 "Blender could not load the scene (exit status %d)",
					 WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
		} else {
			char logp[4096];

			store_path_log(e->st, sl->job, sl->frame_no, logp, sizeof(logp));
			util_tail_lines(logp, 1, tail, sizeof(tail));
			if (WIFSIGNALED(status))
				snprintf(why, sizeof(why), "Blender died (signal %d)%s%s", WTERMSIG(status),
					 tail[0] ? ": " : "", tail);
			else
				snprintf(why, sizeof(why), "Blender exited (status %d)%s%s",
					 WEXITSTATUS(status), tail[0] ? ": " : "", tail);
		}
		frame_failed(e, sl, why);
	}
	slot_kill(e, sl);
}

static void slot_open_log(struct engine *e, struct slot *sl)
{
	char logp[4096];
	sqlite3_stmt *s;

	store_path_log(e->st, sl->job, sl->frame_no, logp, sizeof(logp));
	slot_close_log(sl);
	sl->log_fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (!store_prepare(e->st, "UPDATE frames SET logged = 1 WHERE id = ? AND logged = 0", &s)) {
		sqlite3_bind_int64(s, 1, sl->frame_id);
		sqlite3_step(s);
		if (sqlite3_changes(e->st->db))
			store_change(e->st, CH_JOBLOGS, sl->job);
		sqlite3_finalize(s);
	}
}

/* ---- scheduling ---- */

/* The next job to serve: highest priority, then oldest, among jobs with
 * queued frames that this node is not blocked for. */
static int64_t pick_job(struct engine *e, int64_t now)
{
	sqlite3_stmt *s;
	int64_t job = 0;

	if (store_prepare(e->st,
			  "SELECT j.id FROM jobs j WHERE j.removed = 0"
			  " AND j.state IN ('waiting', 'rendering')"
			  " AND EXISTS (SELECT 1 FROM frames f WHERE f.state = 'queued' AND f.job = j.id)"
			  " AND NOT EXISTS (SELECT 1 FROM blocklist b WHERE b.node = ?1 AND b.job = j.id"
			  "   AND b.until > ?2)"
			  " ORDER BY j.priority DESC, j.id LIMIT 1",
			  &s))
		return 0;
	sqlite3_bind_int64(s, 1, e->node_id);
	sqlite3_bind_int64(s, 2, now);
	if (sqlite3_step(s) == SQLITE_ROW)
		job = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return job;
}

static int dispatch_one(struct engine *e, struct slot *sl, int64_t job, int64_t now)
{
	struct frame_move m = {
	    .now = now, .node = e->node_id, .slot = sl->idx, .lease_until = now + LEASE_MS};
	sqlite3_stmt *s;
	int64_t fid = 0;
	uint32_t fno = 0;
	int rc;

	rc = store_prepare(e->st,
			   "SELECT id, frame FROM frames WHERE state = 'queued' AND job = ?"
			   " ORDER BY frame LIMIT 1",
			   &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	if (sqlite3_step(s) == SQLITE_ROW) {
		fid = sqlite3_column_int64(s, 0);
		fno = (uint32_t)sqlite3_column_int64(s, 1);
	}
	sqlite3_finalize(s);
	if (!fid)
		return -ENOENT;
	rc = store_begin(e->st);
	if (rc)
		return rc;
	rc = store_frame_transition(e->st, fid, 0, FE_DISPATCH, &m);
	if (rc >= 0) {
		job_set_state(e->st, job, 1u << JS_WAITING, JS_RENDERING, now);
		rc = store_prepare(e->st, "SELECT lease FROM frames WHERE id = ?", &s);
		if (!rc) {
			sqlite3_bind_int64(s, 1, fid);
			if (sqlite3_step(s) == SQLITE_ROW)
				sl->lease = sqlite3_column_int64(s, 0);
			sqlite3_finalize(s);
		}
	}
	if (rc < 0) {
		store_rollback(e->st);
		return rc;
	}
	rc = store_commit(e->st);
	if (rc)
		return rc;
	sl->frame_id = fid;
	sl->frame_no = fno;
	sl->frame_sent = 0;
	sl->last_beat = util_mono_ms();
	sl->last_fail[0] = '\0';
	return 0;
}

static void schedule(struct engine *e)
{
	int64_t now = util_now_ms();

	if (!e->node_ok)
		return;
	for (int i = 0; i < e->nslots; i++) {
		struct slot *sl = &e->slots[i];
		int64_t job;

		if (sl->state != SLOT_EMPTY && sl->state != SLOT_READY)
			continue;
		job = pick_job(e, now);
		if (!job)
			continue;
		if (sl->state == SLOT_READY && sl->job != job)
			slot_kill(e, sl); /* another scene: load it afresh */
		if (dispatch_one(e, sl, job, now))
			continue;
		if (sl->state == SLOT_EMPTY) {
			int rc = slot_spawn(e, sl, job);

			sl->job = job;
			slot_open_log(e, sl);
			if (rc) {
				char why[256];

				snprintf(why, sizeof(why), "cannot start Blender '%s': %s", e->cfg->blender,
					 strerror(-rc));
				frame_failed(e, sl, why);
				slot_kill(e, sl);
			}
		} else {
			slot_open_log(e, sl);
			if (slot_send_frame(e, sl)) {
				frame_failed(e, sl, "could not hand the frame to the worker");
				slot_kill(e, sl);
			}
		}
	}
	node_set_state(e);
}

/* Per-slot checks: is the frame still ours, is it hung, past its timeout,
 * is its lease due for renewal; is an idle worker still wanted. */
static void watch_slots(struct engine *e)
{
	int64_t mono = util_mono_ms();

	for (int i = 0; i < e->nslots; i++) {
		struct slot *sl = &e->slots[i];
		char why[160], d[32];
		sqlite3_stmt *s;
		int ours = 0;

		if (sl->state == SLOT_EMPTY)
			continue;
		if (sl->proc.pid > 0) {
			int status, r = local_transport.reap(NULL, &sl->proc, &status);

			if (r == 1) {
				slot_read(e, sl);
				slot_exited(e, sl, status);
				continue;
			}
		}
		if (sl->state == SLOT_READY) {
			struct job_row j;

			if (job_get(e->st, sl->job, &j) || !job_state_active(j.state) ||
			    mono - sl->idle_since > IDLE_WORKER_MS)
				slot_kill(e, sl);
			continue;
		}
		if (!sl->frame_id)
			continue;
		if (!store_prepare(e->st,
				   "SELECT 1 FROM frames WHERE id = ? AND lease = ?"
				   " AND state IN ('leased', 'rendering')",
				   &s)) {
			sqlite3_bind_int64(s, 1, sl->frame_id);
			sqlite3_bind_int64(s, 2, sl->lease);
			ours = sqlite3_step(s) == SQLITE_ROW;
			sqlite3_finalize(s);
		}
		if (!ours) {
			/* Cancelled or taken away: stop rendering it. */
			sl->frame_id = 0;
			slot_kill(e, sl);
			continue;
		}
		if (sl->state == SLOT_BUSY && sl->timeout_ms > 0 &&
		    mono - sl->frame_started > sl->timeout_ms) {
			snprintf(why, sizeof(why), "timed out after %s (timeout)",
				 util_fmt_duration(d, sizeof(d), sl->timeout_ms / 1000.0));
			frame_failed(e, sl, why);
			slot_kill(e, sl);
			continue;
		}
		if (mono - sl->last_output > e->cfg->stall_ms) {
			snprintf(why, sizeof(why), "hung: no output from Blender for %s",
				 util_fmt_duration(d, sizeof(d), (mono - sl->last_output) / 1000.0));
			frame_failed(e, sl, why);
			slot_kill(e, sl);
			continue;
		}
		if (mono - sl->last_beat > HEARTBEAT_MS) {
			struct frame_move m = {.now = util_now_ms(), .lease_until = util_now_ms() + LEASE_MS};

			sl->last_beat = mono;
			store_frame_transition(e->st, sl->frame_id, sl->lease, FE_HEARTBEAT, &m);
		}
	}
}

/* Leases nobody renews (a slot that vanished) give their frames back. */
static void expire_leases(struct engine *e, int64_t now)
{
	sqlite3_stmt *s;
	int64_t ids[64], leases[64];
	int n = 0;

	if (store_prepare(e->st,
			  "SELECT id, lease FROM frames WHERE state IN ('leased', 'rendering')"
			  " AND lease_until < ? LIMIT 64",
			  &s))
		return;
	sqlite3_bind_int64(s, 1, now);
	while (n < 64 && sqlite3_step(s) == SQLITE_ROW) {
		ids[n] = sqlite3_column_int64(s, 0);
		leases[n++] = sqlite3_column_int64(s, 1);
	}
	sqlite3_finalize(s);
	for (int i = 0; i < n; i++) {
		struct frame_move m = {.now = now, .error = "lease expired"};

		store_frame_transition(e->st, ids[i], leases[i], FE_INTERRUPT, &m);
	}
}

/* ---- jobs ---- */

struct counts {
	int64_t queued, inflight, done, failed, cancelled, total;
};

static void job_counts(struct store *st, int64_t job, struct counts *c)
{
	sqlite3_stmt *s;

	memset(c, 0, sizeof(*c));
	if (store_prepare(st, "SELECT state, count(*) FROM frames WHERE job = ? GROUP BY state", &s))
		return;
	sqlite3_bind_int64(s, 1, job);
	while (sqlite3_step(s) == SQLITE_ROW) {
		int fs = frame_state_parse((const char *)sqlite3_column_text(s, 0));
		int64_t n = sqlite3_column_int64(s, 1);

		c->total += n;
		if (fs == FS_QUEUED)
			c->queued += n;
		else if (fs == FS_DONE)
			c->done += n;
		else if (fs == FS_FAILED)
			c->failed += n;
		else if (fs == FS_CANCELLED)
			c->cancelled += n;
		else
			c->inflight += n;
	}
	sqlite3_finalize(s);
}

static void job_end(struct engine *e, int64_t job)
{
	struct counts c;
	int64_t now = util_now_ms();
	int rc;

	job_counts(e->st, job, &c);
	if (store_begin(e->st))
		return;
	rc = job_set_state(e->st, job, (1u << JS_WAITING) | (1u << JS_RENDERING) | (1u << JS_ASSEMBLING),
			   c.failed ? JS_FAILED : JS_DONE, now);
	if (!rc) {
		char msg[96];
		sqlite3_stmt *s;

		intake_release_inputs(e->st, job);
		if (!store_prepare(e->st, "DELETE FROM blocklist WHERE job = ?", &s)) {
			sqlite3_bind_int64(s, 1, job);
			sqlite3_step(s);
			sqlite3_finalize(s);
		}
		snprintf(msg, sizeof(msg), "%s: %lld frames done, %lld failed", c.failed ? "failed" : "done",
			 (long long)c.done, (long long)c.failed);
		store_event(e->st, job, 0, 0, "job", msg);
	}
	store_commit(e->st);
}

/* The farm has no node left that may render this job: say so and end it
 * rather than wait forever (retry-failed lifts the blocklist). */
static void job_no_node(struct engine *e, int64_t job, const char *reason)
{
	sqlite3_stmt *s;
	char msg[700];
	int64_t *ids = NULL;
	size_t n = 0, cap = 0;

	snprintf(msg, sizeof(msg), "no usable node left: %s", reason);
	if (store_prepare(e->st, "SELECT id FROM frames WHERE job = ? AND state = 'queued'", &s))
		return;
	sqlite3_bind_int64(s, 1, job);
	while (sqlite3_step(s) == SQLITE_ROW) {
		if (n == cap) {
			int64_t *ni = realloc(ids, (cap = cap ? cap * 2 : 256) * sizeof(*ni));

			if (!ni)
				break;
			ids = ni;
		}
		ids[n++] = sqlite3_column_int64(s, 0);
	}
	sqlite3_finalize(s);
	if (store_begin(e->st)) {
		free(ids);
		return;
	}
	/* Through the state machine: these frames use up their attempts at
	 * once (leased, then failed with nothing left). */
	if (!store_prepare(e->st, "UPDATE frames SET attempts = 1000000 WHERE id = ?", &s)) {
		for (size_t i = 0; i < n; i++) {
			struct frame_move m = {.now = util_now_ms(), .node = e->node_id, .error = msg};
			int64_t lease;
			sqlite3_stmt *q;

			if (store_frame_transition(e->st, ids[i], 0, FE_DISPATCH, &m) < 0)
				continue;
			sqlite3_bind_int64(s, 1, ids[i]);
			sqlite3_step(s);
			sqlite3_reset(s);
			if (store_prepare(e->st, "SELECT lease FROM frames WHERE id = ?", &q))
				continue;
			sqlite3_bind_int64(q, 1, ids[i]);
			lease = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : -1;
			sqlite3_finalize(q);
			store_frame_transition(e->st, ids[i], lease, FE_FAIL, &m);
		}
		sqlite3_finalize(s);
	}
	set_job_error(e->st, job, msg);
	store_event(e->st, job, e->node_id, 0, "error", msg);
	store_commit(e->st);
	free(ids);
}

static double job_fps(struct store *st, int64_t job)
{
	sqlite3_stmt *s;
	double fps = 24;

	if (store_prepare(st, "SELECT fps, scene_fps FROM jobs WHERE id = ?", &s))
		return fps;
	sqlite3_bind_int64(s, 1, job);
	if (sqlite3_step(s) == SQLITE_ROW) {
		double want = sqlite3_column_double(s, 0), scene = sqlite3_column_double(s, 1);

		fps = want > 0 ? want : scene > 0 ? scene : 24;
	}
	sqlite3_finalize(s);
	return fps;
}

static void advance_jobs(struct engine *e)
{
	sqlite3_stmt *s;
	int64_t jobs[256];
	int video[256], states[256], n = 0;
	int64_t now = util_now_ms();

	if (store_prepare(e->st,
			  "SELECT id, video, state FROM jobs WHERE removed = 0"
			  " AND state IN ('waiting', 'rendering', 'assembling') ORDER BY id LIMIT 256",
			  &s))
		return;
	while (n < 256 && sqlite3_step(s) == SQLITE_ROW) {
		jobs[n] = sqlite3_column_int64(s, 0);
		video[n] = sqlite3_column_int(s, 1);
		states[n++] = job_state_parse((const char *)sqlite3_column_text(s, 2));
	}
	sqlite3_finalize(s);
	for (int i = 0; i < n; i++) {
		struct counts c;

		job_counts(e->st, jobs[i], &c);
		if (states[i] != JS_ASSEMBLING && c.queued > 0 && c.inflight == 0) {
			/* Is any node allowed to take it? (Only the local node here.) */
			int blocked = 0;
			char reason[600] = "";

			if (!store_prepare(e->st,
					   "SELECT reason FROM blocklist WHERE node = ? AND job = ?"
					   " AND until > ?",
					   &s)) {
				sqlite3_bind_int64(s, 1, e->node_id);
				sqlite3_bind_int64(s, 2, jobs[i]);
				sqlite3_bind_int64(s, 3, now);
				if (sqlite3_step(s) == SQLITE_ROW) {
					blocked = 1;
					snprintf(reason, sizeof(reason),
						 "local failed %d frames of this job (last: %s)", BLOCK_AFTER,
						 (const char *)sqlite3_column_text(s, 0));
				}
				sqlite3_finalize(s);
			}
			if (!e->node_ok) {
				blocked = 1;
				snprintf(reason, sizeof(reason), "local: %s", e->node_error);
			}
			if (blocked) {
				job_no_node(e, jobs[i], reason);
				job_counts(e->st, jobs[i], &c);
			}
		}
		if (c.queued || c.inflight)
			continue;
		if (video[i] && c.done > 0) {
			if (e->video_pid > 0)
				continue; /* one assembly at a time */
			if (states[i] != JS_ASSEMBLING &&
			    job_set_state(e->st, jobs[i], (1u << JS_WAITING) | (1u << JS_RENDERING),
					  JS_ASSEMBLING, now))
				continue;
			if (video_start(e->st, jobs[i], job_fps(e->st, jobs[i]), &e->video_pid) == 0) {
				e->video_job = jobs[i];
				continue;
			}
			e->video_pid = 0;
			set_job_error(e->st, jobs[i], "video: could not start ffmpeg");
		}
		job_end(e, jobs[i]);
	}
}

static void watch_video(struct engine *e)
{
	int status;
	char why[512];

	if (e->video_pid <= 0 || waitpid(e->video_pid, &status, WNOHANG) != e->video_pid)
		return;
	e->video_pid = 0;
	if (video_finish(e->st, e->video_job, status, why, sizeof(why)))
		set_job_error(e->st, e->video_job, why);
	job_end(e, e->video_job);
}

/* ---- start-up ---- */

static int write_worker(struct engine *e)
{
	snprintf(e->worker_path, sizeof(e->worker_path), "%s/worker.py", e->dir);
	return util_write_file_atomic(e->worker_path, worker_script, worker_script_len);
}

/* Start one worker on Blender's default scene to learn the node's Blender
 * version and devices before any job arrives. */
static void probe_node(struct engine *e)
{
	struct slot *sl = &e->slots[0];
	char cwd[4096];
	int64_t deadline = util_mono_ms() + 60000;
	int rc;

	snprintf(cwd, sizeof(cwd), "%s/work/probe", e->dir);
	util_mkdirs(cwd);
	{
		char *argv[] = {e->cfg->blender, "-b",           "-Y", "--factory-startup",
				"--python",      e->worker_path, NULL};

		rc = local_transport.spawn(NULL, argv, cwd, &sl->proc);
	}
	if (rc) {
		snprintf(e->node_error, sizeof(e->node_error), "cannot start '%s': %s", e->cfg->blender,
			 strerror(-rc));
		goto out;
	}
	{
		static const char setup[] =
		    "{\"scene\":null,\"engine\":\"cycles\",\"device\":\"auto\","
		    "\"samples\":0,\"res_w\":0,\"res_h\":0,\"res_pct\":0,\"format\":\"png\","
		    "\"gpu_index\":-1}\n";

		write_all(sl->proc.in_fd, setup, sizeof(setup) - 1);
	}
	sl->state = SLOT_STARTING;
	while (!atomic_load(&e->stop) && util_mono_ms() < deadline && sl->state == SLOT_STARTING) {
		struct pollfd p = {.fd = sl->proc.out_fd, .events = POLLIN};
		int status;

		poll(&p, 1, 200);
		slot_drain_log(sl);
		slot_read(e, sl);
		if (sl->state == SLOT_STARTING && local_transport.reap(NULL, &sl->proc, &status) == 1) {
			if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
				snprintf(e->node_error, sizeof(e->node_error),
					 "blender not found: '%s' (set [local] blender)", e->cfg->blender);
			else
				snprintf(e->node_error, sizeof(e->node_error), "Blender failed to start%s%s",
					 sl->setup_error[0] ? ": " : "", sl->setup_error);
			break;
		}
	}
	if (sl->state == SLOT_READY)
		e->node_ok = 1;
	else if (!e->node_error[0])
		snprintf(e->node_error, sizeof(e->node_error), "Blender did not start within 60s");
out:
	slot_kill(e, sl);
	if (!e->node_ok) {
		node_update(e, "state = 'error', error = ?1", e->node_error, NULL);
		fprintf(stderr, "renderfs: local node unusable: %s\n", e->node_error);
	}
}

static void *engine_main(void *arg)
{
	struct engine *e = arg;
	struct pollfd pfd[2 * MAX_SLOTS + 1];
	int n;

	probe_node(e);
	node_set_state(e);
	while (!atomic_load(&e->stop)) {
		int64_t now = util_now_ms();
		int64_t mono = util_mono_ms();

		if (mono - e->last_scan >= 100) {
			e->last_scan = mono;
			intake_scan(e->st, e->cfg->quiet_ms, now);
		}
		watch_slots(e);
		watch_video(e);
		if (mono - e->last_jobs >= 200) {
			e->last_jobs = mono;
			expire_leases(e, now);
			advance_jobs(e);
		}
		schedule(e);

		n = 0;
		pfd[n++] = (struct pollfd){.fd = e->wake[0], .events = POLLIN};
		for (int i = 0; i < e->nslots; i++) {
			if (e->slots[i].state == SLOT_EMPTY || e->slots[i].proc.out_fd < 0)
				continue;
			pfd[n++] = (struct pollfd){.fd = e->slots[i].proc.out_fd, .events = POLLIN};
			pfd[n++] = (struct pollfd){.fd = e->slots[i].proc.err_fd, .events = POLLIN};
		}
		poll(pfd, (nfds_t)n, 100);
		if (pfd[0].revents) {
			char buf[64];

			while (read(e->wake[0], buf, sizeof(buf)) > 0)
				;
		}
		for (int i = 0; i < e->nslots; i++) {
			if (e->slots[i].state == SLOT_EMPTY || e->slots[i].proc.out_fd < 0)
				continue;
			slot_drain_log(&e->slots[i]);
			slot_read(e, &e->slots[i]);
		}
	}
	/* A clean stop pauses work: frames in flight go back to the queue
	 * without using an attempt, and the next mount carries on. */
	for (int i = 0; i < e->nslots; i++) {
		struct slot *sl = &e->slots[i];

		if (sl->frame_id) {
			struct frame_move m = {.now = util_now_ms(), .error = "renderfs stopped"};

			store_frame_transition(e->st, sl->frame_id, sl->lease, FE_INTERRUPT, &m);
			sl->frame_id = 0;
		}
		slot_kill(e, sl);
	}
	if (e->video_pid > 0) {
		kill(e->video_pid, SIGKILL);
		waitpid(e->video_pid, NULL, 0);
	}
	node_update(e, "state = 'offline'", NULL, NULL);
	return NULL;
}

int engine_start(const char *state_dir, const struct config *cfg, struct engine **out)
{
	struct engine *e;
	char sub[4096];
	int rc;

	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->cfg = cfg;
	e->dir = strdup(state_dir);
	e->nslots = cfg->workers < MAX_SLOTS ? cfg->workers : MAX_SLOTS;
	for (int i = 0; i < MAX_SLOTS; i++) {
		e->slots[i].idx = i;
		e->slots[i].log_fd = -1;
		e->slots[i].proc.in_fd = e->slots[i].proc.out_fd = e->slots[i].proc.err_fd = -1;
	}
	if (!e->dir) {
		rc = -ENOMEM;
		goto out_free;
	}
	if (pipe2(e->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		rc = -errno;
		goto out_free;
	}
	rc = store_open(state_dir, &e->st);
	if (rc)
		goto out_close_pipe;
	snprintf(sub, sizeof(sub), "%s/work", state_dir);
	util_rmtree(sub);
	rc = util_mkdirs(sub);
	if (!rc)
		rc = write_worker(e);
	if (!rc)
		rc = node_register(e);
	if (rc)
		goto out_close_store;
	rc = pthread_create(&e->thread, NULL, engine_main, e);
	if (rc) {
		rc = -rc;
		goto out_close_store;
	}
	*out = e;
	return 0;

out_close_store:
	store_close(e->st);
out_close_pipe:
	close(e->wake[0]);
	close(e->wake[1]);
out_free:
	free(e->dir);
	free(e);
	return rc;
}

void engine_stop(struct engine *e)
{
	if (!e)
		return;
	atomic_store(&e->stop, 1);
	if (write(e->wake[1], "x", 1) < 0) {
		/* the loop wakes within its poll timeout anyway */
	}
	pthread_join(e->thread, NULL);
	store_close(e->st);
	close(e->wake[0]);
	close(e->wake[1]);
	free(e->dir);
	free(e);
}
