/*
 * runner: one node's worker slots, on the node's own thread.  A runner owns
 * its transport handle (struct tnode: a local process table or one libssh2
 * session) and its slots.  It pulls frames for free slots from the store
 * (the choice made by policy.c), keeps one long-lived Blender worker per
 * slot, reads what the workers report, fetches and verifies each frame, and
 * makes every frame transition through the store's guarded updates.  A
 * result that arrives after the frame was taken away (cancel, lost lease)
 * is dropped.
 *
 * Threads: everything here runs on the runner's thread, with its own store
 * connection; the only shared field is `stop` (atomic).
 */
#include "sched/runner.h"
#include "sched/collect.h"
#include "sched/poke.h"
#include "jobs/jobs.h"
#include "sched/policy.h"
#include "core/sidecar.h"
#include "store/store.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_SLOTS       64
#define LINE_MAX_BYTES  (64 * 1024) /* a longer worker line is cut */
#define IDLE_WORKER_MS  30000       /* an idle worker with nothing to do exits */
#define KEEPALIVE_MS    15000
#define MAX_KNOWN_BLOBS 32

enum slot_state { SLOT_EMPTY, SLOT_STARTING, SLOT_READY, SLOT_BUSY };

struct slot {
	int idx;
	enum slot_state state;
	struct tproc *proc; /* NULL while SLOT_EMPTY */
	int64_t job;        /* the job whose scene this worker loaded */
	enum sc_format fmt;
	int64_t timeout_ms;
	/* the frame this slot holds (STARTING or BUSY) */
	int64_t frame_id, lease;
	uint32_t frame_no;
	int frame_sent;
	int dup; /* racing another node's holder of this frame; holds no lease */
	int64_t frame_started, last_output, last_beat, idle_since; /* mono ms */
	int64_t held_since; /* mono ms: when the slot took the frame (its slot time starts) */
	int out_alt;        /* which of the slot's two output names the next frame gets */
	int log_fd;
	int width, height;
	char setup_error[512];
	char last_fail[512];
	char outpath[4096];
	char line[LINE_MAX_BYTES + 1];
	size_t line_len;
	int line_dropping; /* inside a line longer than the cap */
};

struct runner {
	struct tnode *node; /* the caller's; used only by this thread until runner_stop */
	const struct config *cfg;
	char *state_dir;
	char blender[1024];
	char worker_local[4096];  /* the worker script here */
	char worker_remote[4096]; /* and on the node */
	char local_work[4096];    /* where fetched frames land before checks */
	int is_local;
	struct store *st;
	pthread_t thread;
	atomic_int stop;
	int64_t node_id;
	char node_error[512];
	char shown_state[16];
	int connected;
	int lost; /* the link failed: drop the connection and start again */
	int shown_error;
	int64_t last_keepalive;
	char known_blobs[MAX_KNOWN_BLOBS][65]; /* verified present on the node */
	int nknown;
	struct slot slots[MAX_SLOTS];
	int nslots;
	int auto_slots; /* one slot per GPU the probe finds (at least one) */
	int ngpus;      /* GPUs the node's Blender sees */
	char stop_why[256];
	struct slot fin; /* a finished frame being collected while its slot renders the next */
};

/* Errors that mean the node or the link, not the frame, failed. */
static int is_link_error(int rc)
{
	return rc == -ECONNRESET || rc == -EPIPE || rc == -ETIMEDOUT || rc == -ENOTCONN ||
	       rc == -ECONNABORTED || rc == -EHOSTUNREACH || rc == -ENETUNREACH || rc == -ECONNREFUSED ||
	       rc == -EIO;
}

/* ---- the node's row ---- */

static int node_update(struct runner *r, const char *set_sql, const char *a, const char *b)
{
	char sql[512];
	sqlite3_stmt *s;
	int rc;

	snprintf(sql, sizeof(sql), "UPDATE nodes SET %s WHERE id = ?3", set_sql);
	rc = store_prepare(r->st, sql, &s);
	if (rc)
		return rc;
	if (a)
		sqlite3_bind_text(s, 1, a, -1, SQLITE_TRANSIENT);
	if (b)
		sqlite3_bind_text(s, 2, b, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 3, r->node_id);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	store_change(r->st, CH_NODES, r->node_id);
	return rc;
}

static int node_register(struct runner *r)
{
	sqlite3_stmt *s;
	int rc;

	rc = store_prepare(r->st,
			   "INSERT INTO nodes(name, provider, address, slots, state)"
			   " VALUES (?2, ?3, ?4, ?1, 'starting')"
			   " ON CONFLICT(name) DO UPDATE SET slots = ?1, provider = ?3, address = ?4,"
			   " state = 'starting', error = NULL, removed = 0",
			   &s);
	if (rc)
		return rc;
	sqlite3_bind_int(s, 1, r->nslots);
	sqlite3_bind_text(s, 2, r->node->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, r->node->ops->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, r->node->address, -1, SQLITE_STATIC);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	if (rc)
		return rc;
	rc = store_prepare(r->st, "SELECT id FROM nodes WHERE name = ?", &s);
	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, r->node->name, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW)
		r->node_id = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return r->node_id ? 0 : -EIO;
}

/* The node's state as shown in nodes/NODE/status; written only when it
 * changes. */
static void node_set_state(struct runner *r, const char *state)
{
	int busy = 0;

	if (!state) {
		for (int i = 0; i < r->nslots; i++)
			busy += r->slots[i].state == SLOT_BUSY || r->slots[i].state == SLOT_STARTING;
		state = busy ? "rendering" : "idle";
	}
	if (!strcmp(state, r->shown_state))
		return;
	snprintf(r->shown_state, sizeof(r->shown_state), "%s", state);
	node_update(r, "state = ?1", state, NULL);
}

/* What a worker's "ready" says about the node: device, Blender version. */
static void node_note_ready(struct runner *r, const cJSON *msg)
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
	if (store_prepare(r->st,
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
	r->ngpus = ngpu;
	sqlite3_bind_text(s, 5, gpus, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 6, r->node_id);
	sqlite3_step(s);
	sqlite3_finalize(s);
	store_change(r->st, CH_NODES, r->node_id);
}

/* ---- worker processes ---- */

static void slot_close_log(struct slot *sl)
{
	if (sl->log_fd >= 0)
		close(sl->log_fd);
	sl->log_fd = -1;
}

/* The slot stops holding its frame.  Its slot time goes to the frame's job:
 * a rented node's cost is shared out among jobs by it. */
static void slot_drop_frame(struct runner *r, struct slot *sl)
{
	if (sl->frame_id && sl->held_since && sl->job)
		store_usage_add(r->st, r->node_id, sl->job, util_mono_ms() - sl->held_since);
	sl->frame_id = 0;
	sl->held_since = 0;
}

static void slot_kill(struct runner *r, struct slot *sl)
{
	if (sl->proc)
		r->node->ops->proc_free(sl->proc);
	sl->proc = NULL;
	slot_close_log(sl);
	sl->state = SLOT_EMPTY;
	sl->job = 0;
	slot_drop_frame(r, sl);
	sl->dup = 0;
	sl->line_len = 0;
	sl->line_dropping = 0;
}

static int write_all(struct runner *r, struct tproc *p, const char *buf, size_t len)
{
	/* A worker that does not read its stdin for a while (a full pipe or
	 * SSH window) is treated as hung. */
	int64_t deadline = util_mono_ms() + 5000;

	while (len) {
		ssize_t n = r->node->ops->proc_write(p, buf, len);

		if (n == -EAGAIN) {
			struct pollfd fds[2 * MAX_SLOTS + 2];
			int k = r->node->ops->pollfds(r->node, fds, (int)ARRAY_SIZE(fds));

			if (util_mono_ms() > deadline)
				return -ETIMEDOUT;
			poll(fds, (nfds_t)k, 50);
			continue;
		}
		if (n < 0)
			return (int)n;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int slot_send_json(struct runner *r, struct slot *sl, cJSON *obj)
{
	char *text = cJSON_PrintUnformatted(obj);
	int rc;

	if (!text)
		return -ENOMEM;
	rc = write_all(r, sl->proc, text, strlen(text));
	if (!rc)
		rc = write_all(r, sl->proc, "\n", 1);
	free(text);
	return rc;
}

/* ---- files on the node ---- */

/* An empty directory at path on the node (made afresh). */
static int node_fresh_dir(struct runner *r, const char *path)
{
	char *rm[] = {"rm", "-rf", "--", (char *)path, NULL};
	char *mk[] = {"mkdir", "-p", "--", (char *)path, NULL};
	int status, rc;

	if (r->is_local) {
		util_rmtree(path);
		return util_mkdirs(path);
	}
	rc = r->node->ops->run(r->node, rm, NULL, 0, &status, 30000);
	if (!rc)
		rc = r->node->ops->run(r->node, mk, NULL, 0, &status, 30000);
	if (!rc && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		rc = -EACCES;
	return rc;
}

/* The SHA-256 of a file on the node, by running sha256sum there. */
static int node_sha256(struct runner *r, const char *path, char hex[65])
{
	char *argv[] = {"sha256sum", "--", (char *)path, NULL};
	char out[256];
	int status, rc;

	rc = r->node->ops->run(r->node, argv, out, sizeof(out), &status, 300000);
	if (rc)
		return rc;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || strlen(out) < 64)
		return -ENOENT;
	memcpy(hex, out, 64);
	hex[64] = '\0';
	return 0;
}

/*
 * Make sure the job's scene is on the node, named by its hash, and really
 * is those bytes.  A scene goes to a node once; a second job with the same
 * file uploads nothing.  An interrupted upload leaves only a .part file,
 * which the next attempt replaces.
 */
static int ensure_blob(struct runner *r, const char *sha, char *remote, size_t sz)
{
	char local[4096], got[65];
	int rc;

	snprintf(remote, sz, "%s/blobs/%s.blend", r->node->home, sha);
	if (r->is_local)
		return 0;
	for (int i = 0; i < r->nknown; i++)
		if (!strcmp(r->known_blobs[i], sha))
			return 0;
	rc = node_sha256(r, remote, got);
	if (rc || strcmp(got, sha)) {
		store_path_blob(r->st, sha, local, sizeof(local));
		rc = r->node->ops->put(r->node, local, remote);
		if (rc)
			return rc;
		rc = node_sha256(r, remote, got);
		if (rc)
			return rc;
		if (strcmp(got, sha))
			return -EIO;
	}
	if (r->nknown == MAX_KNOWN_BLOBS) {
		memmove(r->known_blobs[0], r->known_blobs[1],
			sizeof(r->known_blobs[0]) * (MAX_KNOWN_BLOBS - 1));
		r->nknown--;
	}
	snprintf(r->known_blobs[r->nknown++], sizeof(r->known_blobs[0]), "%s", sha);
	return 0;
}

/* The worker script on the node, named by its own hash. */
static int install_worker(struct runner *r)
{
	char sha[65], got[65];
	int rc;

	if (r->is_local) {
		snprintf(r->worker_remote, sizeof(r->worker_remote), "%s", r->worker_local);
		return 0;
	}
	rc = util_sha256_file(r->worker_local, sha);
	if (rc)
		return rc;
	snprintf(r->worker_remote, sizeof(r->worker_remote), "%s/worker-%.16s.py", r->node->home, sha);
	if (node_sha256(r, r->worker_remote, got) == 0 && !strcmp(got, sha))
		return 0;
	return r->node->ops->put(r->node, r->worker_local, r->worker_remote);
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
static int slot_spawn(struct runner *r, struct slot *sl, int64_t job)
{
	struct job_spec js;
	char blob[4096], cwd[4096];
	cJSON *setup;
	int rc;

	rc = job_spec_get(r->st, job, &js);
	if (rc)
		return rc;
	rc = ensure_blob(r, js.sha, blob, sizeof(blob));
	if (rc)
		return rc;
	snprintf(cwd, sizeof(cwd), "%s/work/slot%d", r->node->home, sl->idx);
	rc = node_fresh_dir(r, cwd);
	if (rc)
		return rc;
	{
		/* -Y before the file: no script inside a dropped .blend runs.
		 * Every word here is ours: paths made of the node's home, slot
		 * numbers and a content hash. */
		char *argv[] = {r->blender,       "-b", "-Y", "--factory-startup", blob, "--python",
				r->worker_remote, NULL};

		rc = r->node->ops->spawn(r->node, argv, cwd, &sl->proc);
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
	/* Several GPUs and a slot each: each worker renders on its own. */
	cJSON_AddNumberToObject(setup, "gpu_index", r->ngpus > 1 && r->nslots > 1 ? sl->idx % r->ngpus : -1);
	rc = slot_send_json(r, sl, setup);
	cJSON_Delete(setup);
	return rc;
}

static int slot_send_frame(struct runner *r, struct slot *sl)
{
	cJSON *msg = cJSON_CreateObject();
	int rc;

	if (!msg)
		return -ENOMEM;
	/* Two output names per slot, in turn: a frame renders into one while
	 * the previous one is fetched from the other; each frame replaces the
	 * one before last, so nothing piles up on the node. */
	sl->out_alt ^= 1;
	snprintf(sl->outpath, sizeof(sl->outpath), "%s/work/slot%d/out%d%s", r->node->home, sl->idx,
		 sl->out_alt, sc_format_ext(sl->fmt));
	cJSON_AddNumberToObject(msg, "frame", sl->frame_no);
	cJSON_AddStringToObject(msg, "out", sl->outpath);
	rc = slot_send_json(r, sl, msg);
	cJSON_Delete(msg);
	if (!rc) {
		sl->frame_sent = 1;
		sl->state = SLOT_BUSY;
		sl->frame_started = sl->last_output = util_mono_ms();
	}
	return rc;
}

/* ---- frame outcomes ---- */

static void count_node(struct runner *r, const char *col)
{
	char sql[96];

	snprintf(sql, sizeof(sql), "%s = %s + 1", col, col);
	node_update(r, sql, NULL, NULL);
}

/* A failure counts against the node for this job; past SCHED_BLOCK_AFTER the
 * node is blocked for the job until forgiven. */
static void blocklist_note(struct runner *r, int64_t job, const char *why)
{
	sqlite3_stmt *s;

	if (store_prepare(r->st,
			  "INSERT INTO blocklist(node, job, failures, reason) VALUES (?1, ?2, 1, ?3)"
			  " ON CONFLICT(node, job) DO UPDATE SET failures = failures + 1, reason = ?3,"
			  " until = CASE WHEN failures + 1 >= ?4 THEN ?5 ELSE until END",
			  &s))
		return;
	sqlite3_bind_int64(s, 1, r->node_id);
	sqlite3_bind_int64(s, 2, job);
	sqlite3_bind_text(s, 3, why, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(s, 4, SCHED_BLOCK_AFTER);
	sqlite3_bind_int64(s, 5, util_now_ms() + SCHED_FORGIVE_MS);
	sqlite3_step(s);
	sqlite3_finalize(s);
}

/* A duplicate that will not finish: let another idle slot try instead.
 * It used no attempt and counts against nothing. */
static void dup_release(struct runner *r, struct slot *sl, const char *why)
{
	sqlite3_stmt *s;

	if (!store_prepare(r->st, "UPDATE frames SET dup_node = NULL WHERE id = ? AND dup_node = ?", &s)) {
		sqlite3_bind_int64(s, 1, sl->frame_id);
		sqlite3_bind_int64(s, 2, r->node_id);
		sqlite3_step(s);
		sqlite3_finalize(s);
	}
	if (why) {
		char msg[700];

		snprintf(msg, sizeof(msg), "duplicate of frame %u dropped on %s: %s", sl->frame_no,
			 r->node->name, why);
		store_event(r->st, sl->job, r->node_id, sl->frame_id, "duplicate", msg);
		node_update(r, "error = ?1", msg, NULL);
	}
	slot_close_log(sl);
	slot_drop_frame(r, sl);
	sl->dup = 0;
}

static void frame_failed(struct runner *r, struct slot *sl, const char *why)
{
	struct frame_move m = {.now = util_now_ms(), .error = why};
	int rc;

	if (!sl->frame_id)
		return;
	if (sl->dup) {
		dup_release(r, sl, why);
		return;
	}
	rc = store_frame_transition(r->st, sl->frame_id, sl->lease, FE_FAIL, &m);
	if (rc >= 0) {
		char msg[700];

		snprintf(msg, sizeof(msg), "frame %u failed on %s: %s", sl->frame_no, r->node->name, why);
		store_event(r->st, sl->job, r->node_id, sl->frame_id, "error", msg);
		job_set_error(r->st, sl->job, msg);
		node_update(r, "error = ?1", msg, NULL);
		count_node(r, "failed");
		blocklist_note(r, sl->job, why);
	}
	slot_close_log(sl);
	slot_drop_frame(r, sl);
}

/* The node, not the frame, let us down: the frame goes back to the queue
 * without using an attempt. */
static void frame_interrupted(struct runner *r, struct slot *sl, const char *why)
{
	struct frame_move m = {.now = util_now_ms(), .error = why};

	if (!sl->frame_id)
		return;
	if (sl->dup) {
		dup_release(r, sl, NULL);
		return;
	}
	store_frame_transition(r->st, sl->frame_id, sl->lease, FE_INTERRUPT, &m);
	node_update(r, "error = ?1", why, NULL);
	slot_close_log(sl);
	slot_drop_frame(r, sl);
}

static void frame_done(struct runner *r, struct slot *sl, const cJSON *msg)
{
	const cJSON *secs = cJSON_GetObjectItem(msg, "secs");
	const cJSON *sha = cJSON_GetObjectItem(msg, "sha256");
	const cJSON *w = cJSON_GetObjectItem(msg, "width");
	const cJSON *h = cJSON_GetObjectItem(msg, "height");
	struct frame_move m = {.now = util_now_ms()};
	int64_t size, mtime;
	char why[512], local[4096];
	int rc;

	m.secs = cJSON_IsNumber(secs) ? secs->valuedouble : (util_mono_ms() - sl->frame_started) / 1000.0;
	if (!sl->dup && store_frame_transition(r->st, sl->frame_id, sl->lease, FE_RENDERED, &m) < 0) {
		/* The frame was taken from us (cancelled, or a duplicate won):
		 * drop the result. */
		slot_close_log(sl);
		slot_drop_frame(r, sl);
		return;
	}
	/* Bring the file home.  The node's other slots go on rendering
	 * meanwhile; this runner thread waits for the transfer. */
	snprintf(local, sizeof(local), "%s/fetch-%d%s", r->local_work, sl->idx, sc_format_ext(sl->fmt));
	rc = r->node->ops->get(r->node, sl->outpath, local, collect_get_max(sl->fmt, sl->width, sl->height));
	if (rc == -ENOENT) {
		frame_failed(r, sl,
			     "the worker reported the frame done, but its file is missing on the node");
		return;
	}
	if (rc) {
		snprintf(why, sizeof(why), "could not fetch the frame from %s: %s", r->node->name,
			 strerror(-rc));
		frame_interrupted(r, sl, why);
		r->lost = 1;
		return;
	}
	rc = collect_verify(local, sl->fmt, cJSON_IsNumber(w) ? w->valueint : sl->width,
			    cJSON_IsNumber(h) ? h->valueint : sl->height,
			    cJSON_IsString(sha) ? sha->valuestring : NULL, &size, &mtime, why, sizeof(why));
	if (rc) {
		unlink(local);
		frame_failed(r, sl, why);
		return;
	}
	rc = collect_commit(r->st, sl->frame_id, sl->lease, sl->dup ? FE_WON : FE_COLLECTED, r->node_id,
			    sl->job, sl->frame_no, sl->fmt, local, size, mtime, m.secs);
	if (rc == 0) {
		sched_poke(); /* the engine ends a finished job at once */
		count_node(r, "done");
		if (sl->dup)
			store_event(r->st, sl->job, r->node_id, sl->frame_id, "duplicate",
				    "a duplicate on an idle slot finished first");
	}
	slot_close_log(sl);
	slot_drop_frame(r, sl);
	sl->dup = 0;
}

/* Blender's own output (the worker's stderr) goes to the frame's log as
 * it comes; any output at all shows the worker is not hung. */
static void slot_drain_log(struct runner *r, struct slot *sl)
{
	char buf[16384];

	for (;;) {
		ssize_t n = sl->proc ? r->node->ops->proc_read(sl->proc, TS_ERR, buf, sizeof(buf)) : -1;

		if (n <= 0)
			return;
		sl->last_output = util_mono_ms();
		if (sl->log_fd >= 0 && write(sl->log_fd, buf, (size_t)n) != n)
			slot_close_log(sl);
	}
}

static int dispatch_one(struct runner *r, struct slot *sl, int64_t job, int64_t now);
static void slot_start_frame(struct runner *r, struct slot *sl, int64_t job);

/*
 * The worker finished a frame.  The slot gives it to r->fin and, when the
 * policy's next job is the scene the worker has loaded, takes and starts
 * the next frame at once; then the finished frame is fetched, verified
 * and committed while the worker renders.  The GPU never waits for a
 * transfer.
 */
static void slot_finished(struct runner *r, struct slot *sl, const cJSON *msg)
{
	struct slot *fin = &r->fin;
	int64_t now = util_now_ms(), job;

	slot_drain_log(r, sl);
	slot_close_log(sl);
	/* The slot's time on this frame ends here; the next frame's begins. */
	if (sl->held_since && sl->job)
		store_usage_add(r->st, r->node_id, sl->job, util_mono_ms() - sl->held_since);
	memcpy(fin, sl, offsetof(struct slot, line));
	fin->proc = NULL;
	fin->held_since = 0;
	sl->frame_id = 0;
	sl->held_since = 0;
	sl->dup = 0;
	sl->state = SLOT_READY;
	sl->idle_since = util_mono_ms();
	if (!r->lost && !atomic_load(&r->stop) &&
	    (job = runner_pick_job(r->st, r->node_id, now)) == sl->job && !dispatch_one(r, sl, job, now))
		slot_start_frame(r, sl, job);
	frame_done(r, fin, msg);
}

static void slot_line(struct runner *r, struct slot *sl, char *line, size_t len)
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
		node_note_ready(r, msg);
		if (cJSON_IsNumber(fps) &&
		    !store_prepare(r->st, "UPDATE jobs SET scene_fps = ? WHERE id = ?", &s)) {
			sqlite3_bind_double(s, 1, fps->valuedouble);
			sqlite3_bind_int64(s, 2, sl->job);
			sqlite3_step(s);
			sqlite3_finalize(s);
		}
		sl->state = SLOT_READY;
		sl->idle_since = util_mono_ms();
		if (sl->frame_id && slot_send_frame(r, sl))
			frame_failed(r, sl, "could not hand the frame to the worker");
	} else if (!strcmp(ev->valuestring, "error") && sl->state == SLOT_STARTING) {
		const cJSON *m = cJSON_GetObjectItem(msg, "msg");

		snprintf(sl->setup_error, sizeof(sl->setup_error), "%s",
			 cJSON_IsString(m) ? m->valuestring : "worker setup failed");
	} else if (!strcmp(ev->valuestring, "start") && sl->state == SLOT_BUSY) {
		struct frame_move m = {.now = util_now_ms(), .lease_until = util_now_ms() + r->cfg->lease_ms};

		if (!sl->dup && store_frame_transition(r->st, sl->frame_id, sl->lease, FE_START, &m) < 0)
			slot_kill(r, sl); /* no longer ours */
	} else if (!strcmp(ev->valuestring, "done") && sl->state == SLOT_BUSY && sl->frame_id) {
		slot_finished(r, sl, msg);
	} else if (!strcmp(ev->valuestring, "fail") && sl->state == SLOT_BUSY && sl->frame_id) {
		const cJSON *m = cJSON_GetObjectItem(msg, "msg");

		slot_drain_log(r, sl);
		frame_failed(r, sl, cJSON_IsString(m) ? m->valuestring : "Blender reported a failure");
		sl->state = SLOT_READY;
		sl->idle_since = util_mono_ms();
	}
out:
	cJSON_Delete(msg);
}

static void slot_read(struct runner *r, struct slot *sl)
{
	char buf[16384];

	for (;;) {
		ssize_t n = sl->proc ? r->node->ops->proc_read(sl->proc, TS_OUT, buf, sizeof(buf)) : -1;

		if (n < 0 && n != -EAGAIN && sl->proc && is_link_error((int)n))
			r->lost = 1;
		if (n <= 0)
			return;
		for (ssize_t i = 0; i < n; i++) {
			char c = buf[i];

			if (c == '\n') {
				if (!sl->line_dropping)
					slot_line(r, sl, sl->line, sl->line_len);
				sl->line_len = 0;
				sl->line_dropping = 0;
			} else if (sl->line_len < LINE_MAX_BYTES) {
				sl->line[sl->line_len++] = c;
			} else if (!sl->line_dropping) {
				/* Over the cap: keep what we have as log text. */
				slot_line(r, sl, sl->line, sl->line_len);
				sl->line_len = 0;
				sl->line_dropping = 1;
			}
			if (!sl->proc)
				return; /* the line handler killed the worker */
		}
	}
}

/* The worker process ended (or must be ended): settle what it held. */
static void slot_exited(struct runner *r, struct slot *sl, int status)
{
	char why[700], tail[400] = "";

	if (sl->line_len && !sl->line_dropping)
		slot_line(r, sl, sl->line, sl->line_len);
	sl->line_len = 0;
	slot_drain_log(r, sl);
	if (sl->frame_id) {
		if (sl->state == SLOT_STARTING) {
			if (sl->setup_error[0])
				snprintf(why, sizeof(why), "%s", sl->setup_error);
			else if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
				snprintf(why, sizeof(why), "blender not found: '%s' (set [local] blender)",
					 r->blender);
			else
				snprintf(why, sizeof(why),
					 "Blender could not load the scene (exit status %d)",
					 WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
		} else {
			char logp[4096];

			store_path_log(r->st, sl->job, sl->frame_no, logp, sizeof(logp));
			util_tail_lines(logp, 1, tail, sizeof(tail));
			if (WIFSIGNALED(status))
				snprintf(why, sizeof(why), "Blender died (signal %d)%s%s", WTERMSIG(status),
					 tail[0] ? ": " : "", tail);
			else
				snprintf(why, sizeof(why), "Blender exited (status %d)%s%s",
					 WEXITSTATUS(status), tail[0] ? ": " : "", tail);
		}
		frame_failed(r, sl, why);
	}
	slot_kill(r, sl);
}

static void slot_open_log(struct runner *r, struct slot *sl)
{
	char logp[4096];
	sqlite3_stmt *s;

	slot_close_log(sl);
	if (sl->dup)
		return; /* the holder's attempt keeps the frame's log */
	store_path_log(r->st, sl->job, sl->frame_no, logp, sizeof(logp));
	sl->log_fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (!store_prepare(r->st, "UPDATE frames SET logged = 1 WHERE id = ? AND logged = 0", &s)) {
		sqlite3_bind_int64(s, 1, sl->frame_id);
		sqlite3_step(s);
		if (sqlite3_changes(r->st->db))
			store_change(r->st, CH_JOBLOGS, sl->job);
		sqlite3_finalize(s);
	}
}

/* The link broke: every frame this node held goes back to the queue as
 * interrupted, and the runner connects again with backoff. */
static void node_lost(struct runner *r, const char *why)
{
	for (int i = 0; i < r->nslots; i++) {
		frame_interrupted(r, &r->slots[i], why);
		slot_kill(r, &r->slots[i]);
	}
	r->node->ops->close(r->node);
	r->connected = 0;
	r->lost = 0;
	r->nknown = 0;
	node_update(r, "error = ?1", why, NULL);
	node_set_state(r, "offline");
}

/* Upload the job's scene if the node lacks it.  A failure of the link
 * drops the connection; any other failure counts against the node for
 * this job (three and it is blocked for the job). */
static int job_blob_ready(struct runner *r, int64_t job)
{
	struct job_spec js;
	char remote[4096], why[512];
	int rc;

	rc = job_spec_get(r->st, job, &js);
	if (!rc)
		rc = ensure_blob(r, js.sha, remote, sizeof(remote));
	if (!rc)
		return 0;
	snprintf(why, sizeof(why), "cannot put the scene on %s: %s", r->node->name,
		 rc == -EIO ? "it did not verify after upload" : strerror(-rc));
	if (is_link_error(rc) && rc != -EIO) {
		r->lost = 1;
	} else {
		blocklist_note(r, job, why);
		node_update(r, "error = ?1", why, NULL);
	}
	return rc;
}

/* ---- scheduling ---- */

/* The next job for a free slot: the facts from the store (jobs with queued
 * frames, and until when this node is blocked for each), the choice from
 * the policy (policy.c). */
static const char pick_job_sql[] =
    "SELECT j.id, j.priority, coalesce((SELECT b.until FROM blocklist b"
    "   WHERE b.node = ?1 AND b.job = j.id), 0)"
    " FROM jobs j WHERE j.removed = 0 AND j.over_budget = 0 AND j.state IN ('waiting', 'rendering')"
    " AND EXISTS (SELECT 1 FROM frames f WHERE f.state = 'queued' AND f.job = j.id)"
    " ORDER BY j.priority DESC, j.id LIMIT 256";

int64_t runner_pick_job(struct store *st, int64_t node_id, int64_t now)
{
	struct sched_job jobs[256];
	size_t n = 0;
	sqlite3_stmt *s;
	int best;

	if (store_cached(st, pick_job_sql, &s))
		return 0;
	sqlite3_bind_int64(s, 1, node_id);
	while (n < ARRAY_SIZE(jobs) && sqlite3_step(s) == SQLITE_ROW) {
		jobs[n].id = sqlite3_column_int64(s, 0);
		jobs[n].priority = sqlite3_column_int(s, 1);
		jobs[n].blocked_until = sqlite3_column_int64(s, 2);
		n++;
	}
	store_release(s);
	best = sched_pick_job(jobs, n, now);
	return best < 0 ? 0 : jobs[best].id;
}

/* The job's next frame in frame order (the frames_by_state index). */
static const char next_frame_sql[] = "SELECT id, frame FROM frames WHERE state = 'queued' AND job = ?"
				     " ORDER BY frame LIMIT 1";

int runner_lease_frame(struct store *st, int64_t node_id, int slot, int64_t job, int64_t lease_ms,
		       int64_t now, struct lease_grant *g)
{
	struct frame_move m = {.now = now, .node = node_id, .slot = slot, .lease_until = now + lease_ms};
	sqlite3_stmt *s;
	int rc;

	g->frame_id = 0;
	rc = store_cached(st, next_frame_sql, &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	if (sqlite3_step(s) == SQLITE_ROW) {
		g->frame_id = sqlite3_column_int64(s, 0);
		g->frame_no = (uint32_t)sqlite3_column_int64(s, 1);
	}
	store_release(s);
	if (!g->frame_id)
		return -ENOENT;
	rc = store_begin(st);
	if (rc)
		return rc;
	rc = store_frame_transition(st, g->frame_id, 0, FE_DISPATCH, &m);
	if (rc >= 0) {
		g->lease = m.lease_out;
		job_set_state(st, job, 1u << JS_WAITING, JS_RENDERING, now);
	}
	if (rc < 0) {
		store_rollback(st);
		return rc;
	}
	return store_commit(st);
}

static int dispatch_one(struct runner *r, struct slot *sl, int64_t job, int64_t now)
{
	struct lease_grant g;
	int rc = runner_lease_frame(r->st, r->node_id, sl->idx, job, r->cfg->lease_ms, now, &g);

	if (rc)
		return rc;
	sl->frame_id = g.frame_id;
	sl->held_since = util_mono_ms();
	sl->frame_no = g.frame_no;
	sl->lease = g.lease;
	sl->dup = 0;
	sl->frame_sent = 0;
	sl->last_beat = util_mono_ms();
	sl->last_fail[0] = '\0';
	return 0;
}

/* The slot holds sl->frame_id for sl->job (leased, or claimed as a
 * duplicate): start it on the slot's worker, starting the worker first if
 * the slot has none. */
static void slot_start_frame(struct runner *r, struct slot *sl, int64_t job)
{
	int rc;

	if (sl->state == SLOT_READY) {
		slot_open_log(r, sl);
		if (slot_send_frame(r, sl)) {
			frame_failed(r, sl, "could not hand the frame to the worker");
			slot_kill(r, sl);
		}
		return;
	}
	rc = slot_spawn(r, sl, job);
	sl->job = job;
	slot_open_log(r, sl);
	if (rc) {
		char why[256];

		snprintf(why, sizeof(why), "cannot start Blender '%s' on %s: %s", r->blender, r->node->name,
			 strerror(-rc));
		if (is_link_error(rc)) {
			frame_interrupted(r, sl, why);
			r->lost = 1;
		} else {
			frame_failed(r, sl, why);
		}
		slot_kill(r, sl);
	}
}

/*
 * Nothing queued that this node may take, and a slot idle: race a frame of
 * another node (policy.c decides which, by expected finish where the speeds
 * are known).  The speeds come from a sample of each candidate job's done
 * frames, the first 256 by frame number (frames_by_state gives them in
 * order, so the scan is bounded whatever the job's size): the job's average
 * render time, the holder's average and this node's average among them
 * (frames.node is whoever rendered a done frame, a winning duplicate
 * included).  A frame still leased (started IS NULL) is waiting: its holder
 * has not begun it, and its time is progress_at, which lease renewals move.
 * The claim is a guarded update, so one frame has at most one duplicate.
 */
static int start_duplicate(struct runner *r, struct slot *sl, int64_t now)
{
	struct sched_inflight f[64];
	uint32_t frames[64];
	size_t n = 0;
	sqlite3_stmt *s;
	int best, claimed = 0;

	if (store_prepare(
		r->st,
		"WITH c AS (SELECT f.id, f.job, f.frame, f.node,"
		"   coalesce(f.started, f.progress_at, 0) AS started, f.started IS NULL AS waiting"
		"   FROM frames f JOIN jobs j ON j.id = f.job"
		"   WHERE f.state IN ('leased', 'rendering') AND f.dup_node IS NULL AND f.node != ?1"
		"   AND j.state = 'rendering' AND j.removed = 0 AND j.over_budget = 0 LIMIT 64),"
		" d AS (SELECT x.job, x.node, x.secs FROM (SELECT DISTINCT job FROM c) cj"
		"   JOIN frames x ON x.id IN (SELECT id FROM frames WHERE job = cj.job"
		"     AND state = 'done' AND secs IS NOT NULL ORDER BY frame LIMIT 256)),"
		" dj AS (SELECT job, avg(secs) AS secs FROM d GROUP BY job),"
		" dn AS (SELECT job, node, avg(secs) AS secs FROM d GROUP BY job, node)"
		" SELECT c.id, c.job, c.frame, c.started, c.waiting, coalesce(dj.secs, 0) * 1000,"
		" coalesce(h.secs, 0) * 1000, coalesce(m.secs, 0) * 1000,"
		" coalesce((SELECT b.until FROM blocklist b WHERE b.node = ?1 AND b.job = c.job), 0)"
		" FROM c LEFT JOIN dj ON dj.job = c.job"
		" LEFT JOIN dn h ON h.job = c.job AND h.node = c.node"
		" LEFT JOIN dn m ON m.job = c.job AND m.node = ?1",
		&s))
		return -EIO;
	sqlite3_bind_int64(s, 1, r->node_id);
	while (n < ARRAY_SIZE(f) && sqlite3_step(s) == SQLITE_ROW) {
		f[n].frame_id = sqlite3_column_int64(s, 0);
		f[n].job = sqlite3_column_int64(s, 1);
		frames[n] = (uint32_t)sqlite3_column_int64(s, 2);
		f[n].started = sqlite3_column_int64(s, 3);
		f[n].waiting = sqlite3_column_int(s, 4);
		f[n].avg_ms = sqlite3_column_double(s, 5);
		f[n].holder_ms = sqlite3_column_double(s, 6);
		f[n].mine_ms = sqlite3_column_double(s, 7);
		f[n].blocked_until = sqlite3_column_int64(s, 8);
		n++;
	}
	sqlite3_finalize(s);
	best = sched_pick_duplicate(f, n, now);
	if (best < 0)
		return -ENOENT;
	if (sl->state == SLOT_READY && sl->job != f[best].job)
		slot_kill(r, sl);
	if (sl->state == SLOT_EMPTY && job_blob_ready(r, f[best].job))
		return -EIO;
	if (store_prepare(r->st,
			  "UPDATE frames SET dup_node = ?1 WHERE id = ?2 AND dup_node IS NULL"
			  " AND state IN ('leased', 'rendering')",
			  &s))
		return -EIO;
	sqlite3_bind_int64(s, 1, r->node_id);
	sqlite3_bind_int64(s, 2, f[best].frame_id);
	if (sqlite3_step(s) == SQLITE_DONE)
		claimed = sqlite3_changes(r->st->db) == 1;
	sqlite3_finalize(s);
	if (!claimed)
		return -ESTALE;
	sl->frame_id = f[best].frame_id;
	sl->held_since = util_mono_ms();
	sl->frame_no = frames[best];
	sl->lease = 0;
	sl->dup = 1;
	sl->frame_sent = 0;
	sl->last_beat = util_mono_ms();
	slot_start_frame(r, sl, f[best].job);
	return 0;
}

static void schedule(struct runner *r)
{
	int64_t now = util_now_ms();

	for (int i = 0; i < r->nslots && !r->lost; i++) {
		struct slot *sl = &r->slots[i];
		int64_t job;

		if (sl->state != SLOT_EMPTY && sl->state != SLOT_READY)
			continue;
		job = runner_pick_job(r->st, r->node_id, now);
		if (!job) {
			start_duplicate(r, sl, now);
			continue;
		}
		if (sl->state == SLOT_READY && sl->job != job)
			slot_kill(r, sl); /* another scene: load it afresh */
		/* The scene goes to the node before a frame is leased, so a long
		 * upload never eats into a frame's lease. */
		if (sl->state == SLOT_EMPTY && job_blob_ready(r, job))
			continue;
		if (dispatch_one(r, sl, job, now))
			continue;
		slot_start_frame(r, sl, job);
	}
	node_set_state(r, NULL);
}

/* Per-slot checks: is the frame still ours, is it hung, past its timeout,
 * is its lease due for renewal; is an idle worker still wanted. */
static void watch_slots(struct runner *r)
{
	int64_t mono = util_mono_ms();

	for (int i = 0; i < r->nslots; i++) {
		struct slot *sl = &r->slots[i];
		char why[160], d[32];
		sqlite3_stmt *s;
		int ours = 0;

		if (sl->state == SLOT_EMPTY)
			continue;
		if (sl->proc) {
			int status, ended = r->node->ops->proc_exited(sl->proc, &status);

			if (ended == 1) {
				slot_read(r, sl);
				slot_exited(r, sl, status);
				continue;
			}
		}
		if (sl->state == SLOT_READY) {
			struct job_row j;

			if (job_get(r->st, sl->job, &j) || !job_state_active(j.state) ||
			    mono - sl->idle_since > IDLE_WORKER_MS)
				slot_kill(r, sl);
			continue;
		}
		if (!sl->frame_id)
			continue;
		/* Still ours: the holder's lease, or a duplicate's claim on a
		 * frame nobody has finished yet. */
		if (!store_prepare(r->st,
				   sl->dup ? "SELECT 1 FROM frames WHERE id = ?1 AND dup_node = ?2"
					     " AND state IN ('queued', 'leased', 'rendering', 'rendered')"
					   : "SELECT 1 FROM frames WHERE id = ?1 AND lease = ?2"
					     " AND state IN ('leased', 'rendering')",
				   &s)) {
			sqlite3_bind_int64(s, 1, sl->frame_id);
			sqlite3_bind_int64(s, 2, sl->dup ? r->node_id : sl->lease);
			ours = sqlite3_step(s) == SQLITE_ROW;
			sqlite3_finalize(s);
		}
		if (!ours) {
			/* Cancelled or taken away: stop rendering it.  Taken away
			 * from a node that has been silent for a whole lease means
			 * the link is gone: connect again from scratch. */
			if (!r->is_local && mono - sl->last_output > r->cfg->lease_ms)
				r->lost = 1;
			slot_drop_frame(r, sl);
			sl->dup = 0;
			slot_kill(r, sl);
			continue;
		}
		if (sl->state == SLOT_BUSY && sl->timeout_ms > 0 &&
		    mono - sl->frame_started > sl->timeout_ms) {
			snprintf(why, sizeof(why), "timed out after %s (timeout)",
				 util_fmt_duration(d, sizeof(d), sl->timeout_ms / 1000.0));
			frame_failed(r, sl, why);
			slot_kill(r, sl);
			continue;
		}
		if (mono - sl->last_output > r->cfg->stall_ms) {
			snprintf(why, sizeof(why), "hung: no output from Blender for %s",
				 util_fmt_duration(d, sizeof(d), (mono - sl->last_output) / 1000.0));
			frame_failed(r, sl, why);
			slot_kill(r, sl);
			continue;
		}
		/* Renew the lease only while the node shows signs of life: a
		 * node behind a dead link must let its frames go. */
		if (!sl->dup && mono - sl->last_beat > r->cfg->lease_ms / 6 &&
		    (r->is_local || mono - sl->last_output < r->cfg->lease_ms)) {
			struct frame_move m = {.now = util_now_ms(),
					       .lease_until = util_now_ms() + r->cfg->lease_ms};

			sl->last_beat = mono;
			store_frame_transition(r->st, sl->frame_id, sl->lease, FE_HEARTBEAT, &m);
		}
	}
}

/* Start one worker on Blender's default scene to learn the node's Blender
 * version and devices before any job arrives.  0 when the node can render. */
static int probe_node(struct runner *r)
{
	static const char setup[] = "{\"scene\":null,\"engine\":\"cycles\",\"device\":\"auto\","
				    "\"samples\":0,\"res_w\":0,\"res_h\":0,\"res_pct\":0,\"format\":\"png\","
				    "\"gpu_index\":-1}\n";
	struct slot *sl = &r->slots[0];
	char cwd[4096];
	int64_t deadline = util_mono_ms() + 60000;
	int rc;

	r->node_error[0] = '\0';
	snprintf(cwd, sizeof(cwd), "%s/work/probe", r->node->home);
	rc = node_fresh_dir(r, cwd);
	if (rc) {
		snprintf(r->node_error, sizeof(r->node_error), "cannot make %s on the node: %s", cwd,
			 strerror(-rc));
		return rc;
	}
	{
		char *argv[] = {r->blender,       "-b", "-Y", "--factory-startup", "--python",
				r->worker_remote, NULL};

		rc = r->node->ops->spawn(r->node, argv, cwd, &sl->proc);
	}
	if (rc) {
		snprintf(r->node_error, sizeof(r->node_error), "cannot start '%s': %s", r->blender,
			 strerror(-rc));
		return rc;
	}
	write_all(r, sl->proc, setup, sizeof(setup) - 1);
	sl->state = SLOT_STARTING;
	while (!atomic_load(&r->stop) && util_mono_ms() < deadline && sl->state == SLOT_STARTING) {
		struct pollfd fds[8];
		int k = r->node->ops->pollfds(r->node, fds, (int)ARRAY_SIZE(fds));
		int status;

		poll(fds, (nfds_t)k, 200);
		slot_drain_log(r, sl);
		slot_read(r, sl);
		if (sl->state == SLOT_STARTING && r->node->ops->proc_exited(sl->proc, &status) == 1) {
			slot_drain_log(r, sl);
			slot_read(r, sl);
			if (sl->state != SLOT_STARTING)
				break;
			if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
				snprintf(r->node_error, sizeof(r->node_error),
					 "blender not found: '%s' (set [%s] blender)", r->blender,
					 r->is_local ? "local" : "ssh");
			else
				snprintf(r->node_error, sizeof(r->node_error), "Blender failed to start%s%s",
					 sl->setup_error[0] ? ": " : "", sl->setup_error);
			break;
		}
	}
	if (sl->state != SLOT_READY && !r->node_error[0])
		snprintf(r->node_error, sizeof(r->node_error), "Blender did not start within 60s");
	rc = sl->state == SLOT_READY ? 0 : -ENOEXEC; /* reached, but cannot render */
	slot_kill(r, sl);
	return rc;
}

/* Wait up to ms, returning early when asked to stop. */
static void nap(struct runner *r, int64_t ms)
{
	int64_t end = util_mono_ms() + ms;

	while (!atomic_load(&r->stop) && util_mono_ms() < end)
		usleep(50 * 1000);
}

static int connect_node(struct runner *r)
{
	int rc;

	node_set_state(r, "connecting");
	rc = r->node->ops->open(r->node);
	if (rc) {
		snprintf(r->node_error, sizeof(r->node_error), "%s",
			 r->node->error[0] ? r->node->error : strerror(-rc));
		return rc;
	}
	snprintf(r->local_work, sizeof(r->local_work), "%s/work/node-%lld", r->state_dir,
		 (long long)r->node_id);
	rc = util_mkdirs(r->local_work);
	if (!rc)
		rc = install_worker(r);
	if (rc) {
		snprintf(r->node_error, sizeof(r->node_error), "cannot install the worker on %s: %s",
			 r->node->name, strerror(-rc));
		return rc;
	}
	return probe_node(r);
}

static void *runner_main(void *arg)
{
	struct runner *r = arg;
	int64_t backoff = 1000;

	while (!atomic_load(&r->stop)) {
		struct pollfd fds[2 * MAX_SLOTS + 2];
		int k;

		if (!r->connected) {
			int rc = connect_node(r);

			if (rc) {
				/* Unreachable is "offline"; reachable but unable to
				 * render (no Blender, host key changed) is "error". */
				int reached = r->node_error[0] && rc != -ECONNREFUSED && !is_link_error(rc);

				r->node->ops->close(r->node);
				node_update(r, "error = ?1", r->node_error, NULL);
				node_set_state(r, r->is_local || reached ? "error" : "offline");
				if (!r->shown_error) {
					fprintf(stderr, "renderfs: node %s unusable: %s\n", r->node->name,
						r->node_error);
					r->shown_error = 1;
				}
				/* This machine's Blender does not appear by itself;
				 * a remote node may come back. */
				nap(r, r->is_local ? 3600 * 1000 : backoff);
				backoff = backoff * 2 > 60000 ? 60000 : backoff * 2;
				continue;
			}
			r->connected = 1;
			r->shown_error = 0;
			if (r->auto_slots) {
				char n[16];

				r->nslots = r->ngpus > 1 ? (r->ngpus < MAX_SLOTS ? r->ngpus : MAX_SLOTS) : 1;
				snprintf(n, sizeof(n), "%d", r->nslots);
				node_update(r, "slots = ?1", n, NULL);
			}
			backoff = 1000;
			node_update(r, "error = NULL", NULL, NULL);
			node_set_state(r, "idle");
			r->last_keepalive = util_mono_ms();
		}
		watch_slots(r);
		if (!r->lost)
			schedule(r);
		if (r->lost) {
			node_lost(r, r->node->error[0] ? r->node->error : "connection to the node lost");
			continue;
		}
		k = r->node->ops->pollfds(r->node, fds, (int)ARRAY_SIZE(fds));
		poll(fds, (nfds_t)k, 100);
		for (int i = 0; i < r->nslots; i++) {
			if (r->slots[i].state == SLOT_EMPTY || !r->slots[i].proc)
				continue;
			slot_drain_log(r, &r->slots[i]);
			slot_read(r, &r->slots[i]);
		}
		if (util_mono_ms() - r->last_keepalive > KEEPALIVE_MS) {
			r->last_keepalive = util_mono_ms();
			if (r->node->ops->keepalive(r->node))
				r->lost = 1;
		}
	}
	/* A clean stop pauses work: frames in flight go back to the queue
	 * without using an attempt, and the next mount carries on. */
	for (int i = 0; i < r->nslots; i++) {
		frame_interrupted(r, &r->slots[i], r->stop_why[0] ? r->stop_why : "renderfs stopped");
		slot_kill(r, &r->slots[i]);
	}
	r->node->ops->close(r->node);
	node_set_state(r, "offline");
	return NULL;
}

int runner_start(const char *state_dir, const struct config *cfg, struct tnode *node, int nslots,
		 const char *blender, const char *worker_path, struct runner **out)
{
	struct runner *r;
	int rc;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->node = node;
	r->cfg = cfg;
	r->is_local = !strcmp(node->ops->name, "local");
	r->auto_slots = nslots == 0;
	r->nslots = nslots < 1 ? 1 : nslots > MAX_SLOTS ? MAX_SLOTS : nslots;
	snprintf(r->blender, sizeof(r->blender), "%s", blender);
	snprintf(r->worker_local, sizeof(r->worker_local), "%s", worker_path);
	for (int i = 0; i < MAX_SLOTS; i++) {
		r->slots[i].idx = i;
		r->slots[i].log_fd = -1;
	}
	r->state_dir = strdup(state_dir);
	if (!r->state_dir) {
		rc = -ENOMEM;
		goto out_free;
	}
	rc = store_open(state_dir, &r->st);
	if (rc)
		goto out_free;
	rc = node_register(r);
	if (rc)
		goto out_close_store;
	rc = pthread_create(&r->thread, NULL, runner_main, r);
	if (rc) {
		rc = -rc;
		goto out_close_store;
	}
	*out = r;
	return 0;

out_close_store:
	store_close(r->st);
out_free:
	free(r->state_dir);
	free(r);
	return rc;
}

int64_t runner_node_id(const struct runner *r)
{
	return r->node_id;
}

void runner_stop_because(struct runner *r, const char *why)
{
	if (r && why)
		snprintf(r->stop_why, sizeof(r->stop_why), "%s", why);
}

void runner_signal_stop(struct runner *r)
{
	if (r)
		atomic_store(&r->stop, 1);
}

void runner_stop(struct runner *r)
{
	if (!r)
		return;
	atomic_store(&r->stop, 1);
	pthread_join(r->thread, NULL);
	store_close(r->st);
	free(r->state_dir);
	free(r);
}
