/*
 * slot: the slot machine (see slot.h) and the worker protocol.  A slot
 * keeps one long-lived Blender worker; the runner reads what the worker
 * reports, fetches and verifies each frame, and makes every frame
 * transition through the store's guarded updates.  A result that arrives
 * after the frame was taken away (cancel, lost lease, a duplicate won) is
 * dropped.
 */
#include "sched/slot.h"
#include "core/filecheck.h"
#include "core/util.h"
#include "jobs/jobs.h"
#include "sched/collect.h"
#include "sched/dispatch.h"
#include "sched/poke.h"
#include "sched/runner_priv.h"
#include "store/nodes.h"
#include "store/runner_rows.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define IDLE_WORKER_MS 30000 /* an idle worker with nothing to do exits */

/* ---- the machine ---- */

static const char *const slot_state_names[SLOT__COUNT] = {"empty", "starting", "ready", "busy"};
static const char *const slot_event_names[SE__COUNT] = {"spawn", "ready", "send", "finish", "kill"};

const char *slot_state_name(enum slot_state s)
{
	return (unsigned)s < SLOT__COUNT ? slot_state_names[s] : "?";
}

const char *slot_event_name(enum slot_event e)
{
	return (unsigned)e < SE__COUNT ? slot_event_names[e] : "?";
}

int slot_next_state(enum slot_state from, enum slot_event ev)
{
	if ((unsigned)from >= SLOT__COUNT)
		return -EINVAL;
	switch (ev) {
	case SE_SPAWN: return from == SLOT_EMPTY ? SLOT_STARTING : -EINVAL;
	case SE_READY: return from == SLOT_STARTING ? SLOT_READY : -EINVAL;
	case SE_SEND: return from == SLOT_READY ? SLOT_BUSY : -EINVAL;
	case SE_FINISH: return from == SLOT_BUSY ? SLOT_READY : -EINVAL;
	case SE_KILL: return SLOT_EMPTY;
	default: return -EINVAL;
	}
}

int slot_transition(struct slot *sl, enum slot_event ev)
{
	int to = slot_next_state(sl->state, ev);

	if (to < 0)
		return -ESTALE;
	sl->state = (enum slot_state)to;
	return to;
}

/* ---- the worker process ---- */

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

void slot_kill(struct runner *r, struct slot *sl)
{
	if (sl->proc)
		r->node->ops->proc_free(sl->proc);
	sl->proc = NULL;
	slot_close_log(sl);
	slot_transition(sl, SE_KILL); /* legal from every state */
	if (sl->sched_job)
		store_node_slot_job(r->st, r->node_id, sl->idx, NULL);
	sl->sched_job = 0;
	sl->job = 0;
	slot_drop_frame(r, sl);
	sl->dup = 0;
	sl->line_len = 0;
	sl->line_dropping = 0;
}

int slot_write_all(struct runner *r, struct tproc *p, const char *buf, size_t len)
{
	/* A worker that does not read its stdin for a while (a full pipe or
	 * SSH window) is treated as hung. */
	int64_t deadline = util_mono_ms() + 5000;

	while (len) {
		ssize_t n = r->node->ops->proc_write(p, buf, len);

		if (n == -EAGAIN) {
			struct pollfd fds[2 * RUNNER_MAX_SLOTS + 2];
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
	rc = slot_write_all(r, sl->proc, text, strlen(text));
	if (!rc)
		rc = slot_write_all(r, sl->proc, "\n", 1);
	free(text);
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
	struct store_job_spec js;
	char blob[4096], cwd[4096];
	struct tproc *p;
	cJSON *setup;
	int rc;

	rc = store_job_spec(r->st, job, &js);
	if (rc)
		return rc;
	rc = install_blob(&r->inst, r->st, js.sha, blob, sizeof(blob));
	if (rc)
		return rc;
	snprintf(cwd, sizeof(cwd), "%s/work/slot%d", r->node->home, sl->idx);
	rc = install_fresh_dir(&r->inst, cwd);
	if (rc)
		return rc;
	{
		/* -Y before the file: no script inside a dropped .blend runs.
		 * Every word here is ours: paths made of the node's home, slot
		 * numbers and a content hash. */
		char *argv[] = {r->blender,       "-b", "-Y", "--factory-startup", blob, "--python",
				r->worker_remote, NULL};

		rc = r->node->ops->spawn(r->node, argv, cwd, &p);
	}
	if (rc)
		return rc;
	rc = slot_transition(sl, SE_SPAWN);
	if (rc < 0) {
		r->node->ops->proc_free(p);
		return rc;
	}
	sl->proc = p;
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
	cJSON *msg;
	int rc;

	/* Only a ready worker takes a frame (the edge is made after the write
	 * below, so that a failed write leaves the slot ready). */
	if (slot_next_state(sl->state, SE_SEND) < 0)
		return -ESTALE;
	msg = cJSON_CreateObject();
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
	if (rc)
		return rc;
	rc = slot_transition(sl, SE_SEND);
	if (rc < 0)
		return rc;
	sl->frame_sent = 1;
	sl->frame_started = sl->last_output = util_mono_ms();
	return 0;
}

/* ---- frame outcomes ---- */

/* A duplicate that will not finish: let another idle slot try instead.
 * It used no attempt and counts against nothing. */
static void dup_release(struct runner *r, struct slot *sl, const char *why)
{
	store_dup_release(r->st, sl->frame_id, r->node_id);
	if (why) {
		char msg[700];

		snprintf(msg, sizeof(msg), "duplicate of frame %u dropped on %s: %s", sl->frame_no,
			 r->node->name, why);
		store_event(r->st, sl->job, r->node_id, sl->frame_id, "duplicate", msg);
		store_node_set_error(r->st, r->node_id, msg);
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
		store_node_set_error(r->st, r->node_id, msg);
		store_node_count_failed(r->st, r->node_id);
		dispatch_block_note(r, sl->job, why);
	}
	slot_close_log(sl);
	slot_drop_frame(r, sl);
}

void slot_interrupt(struct runner *r, struct slot *sl, const char *why)
{
	struct frame_move m = {.now = util_now_ms(), .error = why};

	if (!sl->frame_id)
		return;
	if (sl->dup) {
		dup_release(r, sl, NULL);
		return;
	}
	store_frame_transition(r->st, sl->frame_id, sl->lease, FE_INTERRUPT, &m);
	store_node_set_error(r->st, r->node_id, why);
	slot_close_log(sl);
	slot_drop_frame(r, sl);
}

static void frame_done(struct runner *r, struct slot *sl, const cJSON *msg)
{
	const cJSON *secs = cJSON_GetObjectItem(msg, "secs");
	const cJSON *sha = cJSON_GetObjectItem(msg, "sha256");
	struct frame_move m = {.now = util_now_ms()};
	double wall = (util_mono_ms() - sl->frame_started) / 1000.0;
	int64_t size, mtime;
	char why[512], local[4096];
	int rc;

	/* The node's own figure, when it is one that can be true: finite,
	 * not negative, and not longer than the frame was held here (plus a
	 * second of slack for clocks); else what was measured here. */
	m.secs = wall;
	if (cJSON_IsNumber(secs) && isfinite(secs->valuedouble) && secs->valuedouble >= 0 &&
	    secs->valuedouble <= wall + 1.0)
		m.secs = secs->valuedouble;
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
	/* No more bytes than a frame of this size and format can take. */
	rc = r->node->ops->get(r->node, sl->outpath, local, collect_get_max(sl->fmt, sl->width, sl->height));
	switch (rc ? (int)transport_get_fault(rc) : -1) {
	case -1: break;
	case TF_REMOTE_FILE:
		/* Missing, too large, not a regular file: the node's fault,
		 * an attempt used and counted against it. */
		snprintf(why, sizeof(why), "the frame the node returned is unusable: %s",
			 rc == -ENOENT  ? "its file is missing on the node"
			 : rc == -EFBIG ? "larger than a frame of this size can be"
					: strerror(-rc));
		frame_failed(r, sl, why);
		return;
	case TF_LOCAL:
		/* This side's disk: nobody's attempt; frames wait until the
		 * disk has room again (dispatch_schedule backs off). */
		snprintf(why, sizeof(why), "disk full: %s (%s)", r->state_dir, strerror(-rc));
		job_set_error(r->st, sl->job, why);
		r->local_full_until = util_mono_ms() + RUNNER_DISK_BACKOFF_MS;
		slot_interrupt(r, sl, why);
		return;
	default:
		snprintf(why, sizeof(why), "could not fetch the frame from %s: %s", r->node->name,
			 strerror(-rc));
		slot_interrupt(r, sl, why);
		r->lost = 1;
		return;
	}
	/* The size checked is the one this slot's worker announced when it
	 * loaded the scene, never what a done message claims. */
	rc = collect_verify(local, sl->fmt, sl->width, sl->height,
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
		store_node_count_done(r->st, r->node_id);
		store_job_clear_disk_full(r->st, sl->job);
		if (sl->dup)
			store_event(r->st, sl->job, r->node_id, sl->frame_id, "duplicate",
				    "a duplicate on an idle slot finished first");
	}
	slot_close_log(sl);
	slot_drop_frame(r, sl);
	sl->dup = 0;
}

/* ---- the worker protocol ---- */

/* Blender's own output (the worker's stderr) goes to the frame's log as
 * it comes; any output at all shows the worker is not hung. */
void slot_drain_log(struct runner *r, struct slot *sl)
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
	if (slot_transition(sl, SE_FINISH) >= 0) {
		sl->idle_since = util_mono_ms();
		if (!r->lost && !atomic_load(&r->stop) &&
		    (job = runner_pick_job(r->st, r->node_id, now)) == sl->job &&
		    !dispatch_one(r, sl, job, now))
			slot_start_frame(r, sl, job);
	}
	frame_done(r, fin, msg);
}

/* What a worker's "ready" says about the node: device, Blender version,
 * GPUs. */
static void note_ready(struct runner *r, const cJSON *msg)
{
	const cJSON *dev = cJSON_GetObjectItem(msg, "device");
	const cJSON *why = cJSON_GetObjectItem(msg, "why");
	const cJSON *ver = cJSON_GetObjectItem(msg, "blender");
	const cJSON *devs = cJSON_GetObjectItem(msg, "devices");
	char gpus[1024] = "", device[64], device_why[256], blender[64], name[128];
	struct node_ready nr = {0};

	/* Everything here is the node's word: each piece is made one safe
	 * line, cut to a size that status can show. */

	if (cJSON_IsArray(devs)) {
		const cJSON *d;

		cJSON_ArrayForEach(d, devs)
		{
			if (!cJSON_IsString(d) || !strncmp(d->valuestring, "CPU", 3))
				continue;
			size_t l = strlen(gpus);
			if (nr.gpus >= 64)
				break;
			util_clean_line(name, sizeof(name), d->valuestring);
			snprintf(gpus + l, sizeof(gpus) - l, "%s%s", l ? ", " : "", name);
			nr.gpus++;
		}
	}
	nr.device = cJSON_IsString(dev) ? util_clean_line(device, sizeof(device), dev->valuestring) : NULL;
	nr.device_why =
	    cJSON_IsString(why) ? util_clean_line(device_why, sizeof(device_why), why->valuestring) : NULL;
	nr.blender = cJSON_IsString(ver) ? util_clean_line(blender, sizeof(blender), ver->valuestring) : NULL;
	nr.gpu_names = gpus;
	r->ngpus = nr.gpus;
	store_node_note_ready(r->st, r->node_id, &nr);
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
		goto out_free;
	if (!strcmp(ev->valuestring, "ready")) {
		const cJSON *w = cJSON_GetObjectItem(msg, "width");
		const cJSON *h = cJSON_GetObjectItem(msg, "height");
		const cJSON *fps = cJSON_GetObjectItem(msg, "fps");

		if (slot_transition(sl, SE_READY) < 0)
			goto out_free; /* not starting: out of turn, ignored */
		sl->width = cJSON_IsNumber(w) && w->valuedouble >= 1 && w->valuedouble <= IMAGE_MAX_DIM
				? w->valueint
				: 0;
		sl->height = cJSON_IsNumber(h) && h->valuedouble >= 1 && h->valuedouble <= IMAGE_MAX_DIM
				 ? h->valueint
				 : 0;
		note_ready(r, msg);
		{
			const cJSON *sj = cJSON_GetObjectItem(msg, "slurm_job");

			/* Only a job id that is all digits is shown. */
			if (cJSON_IsString(sj) && *sj->valuestring && strlen(sj->valuestring) < 24 &&
			    strspn(sj->valuestring, "0123456789") == strlen(sj->valuestring) &&
			    !store_node_slot_job(r->st, r->node_id, sl->idx, sj->valuestring))
				sl->sched_job = 1;
		}
		if (cJSON_IsNumber(fps) && fps->valuedouble > 0 && fps->valuedouble <= 1000)
			store_job_set_scene_fps(r->st, sl->job, fps->valuedouble);
		sl->idle_since = util_mono_ms();
		if (sl->frame_id && slot_send_frame(r, sl))
			frame_failed(r, sl, "could not hand the frame to the worker");
	} else if (!strcmp(ev->valuestring, "error") && sl->state == SLOT_STARTING) {
		const cJSON *m = cJSON_GetObjectItem(msg, "msg");

		util_clean_line(sl->setup_error, sizeof(sl->setup_error),
				cJSON_IsString(m) ? m->valuestring : "worker setup failed");
	} else if (!strcmp(ev->valuestring, "start") && sl->state == SLOT_BUSY) {
		struct frame_move m = {.now = util_now_ms(), .lease_until = util_now_ms() + r->cfg->lease_ms};

		if (!sl->dup && store_frame_transition(r->st, sl->frame_id, sl->lease, FE_START, &m) < 0)
			slot_kill(r, sl); /* no longer ours */
	} else if (!strcmp(ev->valuestring, "done") && sl->state == SLOT_BUSY && sl->frame_id) {
		slot_finished(r, sl, msg);
	} else if (!strcmp(ev->valuestring, "fail") && sl->state == SLOT_BUSY && sl->frame_id) {
		const cJSON *m = cJSON_GetObjectItem(msg, "msg");

		char why[512];

		slot_drain_log(r, sl);
		frame_failed(
		    r, sl,
		    util_clean_line(why, sizeof(why),
				    cJSON_IsString(m) ? m->valuestring : "Blender reported a failure"));
		if (slot_transition(sl, SE_FINISH) >= 0)
			sl->idle_since = util_mono_ms();
	}
out_free:
	cJSON_Delete(msg);
}

void slot_read(struct runner *r, struct slot *sl)
{
	char buf[16384];

	for (;;) {
		ssize_t n = sl->proc ? r->node->ops->proc_read(sl->proc, TS_OUT, buf, sizeof(buf)) : -1;

		if (n < 0 && n != -EAGAIN && sl->proc && runner_link_error((int)n))
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
			} else if (sl->line_len < SLOT_LINE_MAX) {
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

	slot_close_log(sl);
	if (sl->dup)
		return; /* the holder's attempt keeps the frame's log */
	store_path_log(r->st, sl->job, sl->frame_no, logp, sizeof(logp));
	sl->log_fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	store_frame_mark_logged(r->st, sl->frame_id, sl->job);
}

void slot_start_frame(struct runner *r, struct slot *sl, int64_t job)
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
		if (runner_link_error(rc)) {
			slot_interrupt(r, sl, why);
			r->lost = 1;
		} else {
			frame_failed(r, sl, why);
		}
		slot_kill(r, sl);
	}
}

/* ---- the watch ---- */

void slot_watch(struct runner *r)
{
	int64_t mono = util_mono_ms();

	for (int i = 0; i < r->nslots; i++) {
		struct slot *sl = &r->slots[i];
		char why[160], d[32];
		int ours;

		if (sl->state == SLOT_EMPTY)
			continue;
		if (sl->proc) {
			int status, ended = r->node->ops->proc_exited(sl->proc, &status);

			if (ended == 1) {
				slot_read(r, sl);
				slot_exited(r, sl, status);
				continue;
			}
			if (ended == -ECANCELED) {
				/* The node's scheduler took the worker away (a Slurm
				 * job cancelled or preempted): not the frame's fault. */
				slot_read(r, sl);
				slot_drain_log(r, sl);
				slot_interrupt(r, sl, r->node->error[0] ? r->node->error
									: "the worker was cancelled");
				slot_kill(r, sl);
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
		ours = sl->dup ? store_frame_dup_held(r->st, sl->frame_id, r->node_id)
			       : store_frame_lease_held(r->st, sl->frame_id, sl->lease);
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
