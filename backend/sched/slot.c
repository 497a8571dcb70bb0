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
#include "sched/proto.h"
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
	sl->log_size = 0;
}

#define LOG_CUT_NOTE "[renderfs: earlier output of this attempt was cut; the last part is kept]\n"

/* Replace the log's content with note + the tail of old (from its first
 * line start) + nothing else; the caller appends the new bytes. */
static int log_rewrite(struct slot *sl, const char *tail, size_t n)
{
	const char *nl = memchr(tail, '\n', n);
	size_t note = sizeof(LOG_CUT_NOTE) - 1;

	if (nl) {
		n -= (size_t)(nl + 1 - tail);
		tail = nl + 1;
	}
	if (pwrite(sl->log_fd, LOG_CUT_NOTE, note, 0) != (ssize_t)note ||
	    (n && pwrite(sl->log_fd, tail, n, (off_t)note) != (ssize_t)n) ||
	    ftruncate(sl->log_fd, (off_t)(note + n)))
		return -1;
	sl->log_size = (int64_t)(note + n);
	return 0;
}

/*
 * Append to the frame's log, keeping at most SLOT_LOG_CAP bytes: a write
 * that would pass the cap first cuts the file to the last half of the cap
 * (the new bytes included), at a line start, so the file a user reads is
 * always the attempt's tail as text.  Each byte is copied at most once
 * more on the way, whatever a worker prints.  A write error closes the
 * log (the frame goes on without one).
 */
static void slot_log_write(struct slot *sl, const char *buf, size_t n)
{
	const size_t half = SLOT_LOG_CAP / 2;

	if (sl->log_fd < 0 || !n)
		return;
	if (n >= half) {
		/* The new bytes alone fill the kept half: only their tail. */
		if (log_rewrite(sl, buf + n - half, half))
			slot_close_log(sl);
		return;
	}
	if (sl->log_size + (int64_t)n > SLOT_LOG_CAP) {
		size_t keep = half - n;
		char *old = malloc(keep ? keep : 1);
		ssize_t got = old && keep ? pread(sl->log_fd, old, keep, (off_t)(sl->log_size - (int64_t)keep))
					  : 0;

		if (!old || got < 0 || log_rewrite(sl, old, (size_t)got)) {
			free(old);
			slot_close_log(sl);
			return;
		}
		free(old);
	}
	if (pwrite(sl->log_fd, buf, n, (off_t)sl->log_size) != (ssize_t)n) {
		slot_close_log(sl);
		return;
	}
	sl->log_size += (int64_t)n;
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

/*
 * The size the job's frames must have: the sidecar's absolute resolution
 * (with its percentage), else the scene's own settings, read here from
 * the job's blob (once per job: the result is kept in the store).  0x0
 * when neither is known (an old file blendfile cannot read); the worker's
 * ready line is then the fallback.
 */
static void slot_expected_size(struct runner *r, struct slot *sl, int64_t job, const struct store_job_spec *js)
{
	char path[4096];
	int w, h, x, y, pct;

	sl->exp_w = sl->exp_h = 0;
	if (js->out_w < 0)
		return; /* tried before: not known */
	if (js->out_w > 0 && js->out_h > 0 && js->out_w <= IMAGE_MAX_DIM && js->out_h <= IMAGE_MAX_DIM) {
		sl->exp_w = js->out_w;
		sl->exp_h = js->out_h;
		return;
	}
	if (collect_expected_size(js->res_w, js->res_h, js->res_pct, 0, 0, 0, &w, &h)) {
		store_path_blob(r->st, js->sha, path, sizeof(path));
		if (collect_scene_resolution(path, js->scene, &x, &y, &pct) ||
		    collect_expected_size(js->res_w, js->res_h, js->res_pct, x, y, pct, &w, &h)) {
			/* Not read again for this job's next workers. */
			store_job_set_out_size(r->st, job, -1, -1);
			return;
		}
	}
	sl->exp_w = w;
	sl->exp_h = h;
	store_job_set_out_size(r->st, job, w, h);
}

/* Start a worker for job on this slot: Blender loads the job's blob once. */
static int slot_spawn(struct runner *r, struct slot *sl, int64_t job)
{
	struct store_job_spec js;
	char blob[4096], cwd[4096], prog[4096];
	const char *from;
	struct tproc *p;
	cJSON *setup;
	int rc;

	rc = store_job_spec(r->st, job, &js);
	if (rc)
		return rc;
	slot_expected_size(r, sl, job, &js);
	rc = install_blob(&r->inst, r->st, js.sha, blob, sizeof(blob));
	if (rc)
		return rc;
	rc = runner_blender_for(r, js.sha, prog, sizeof(prog), &from);
	if (rc)
		return rc;
	r->slot_from[sl->idx] = from;
	snprintf(cwd, sizeof(cwd), "%s/work/slot%d", r->node->home, sl->idx);
	rc = install_fresh_dir(&r->inst, cwd);
	if (rc)
		return rc;
	{
		/* -Y before the file: no script inside a dropped .blend runs.
		 * Every word here is ours: paths made of the node's home, slot
		 * numbers, a content hash and a checked Blender version. */
		char *argv[] = {prog, "-b", "-Y", "--factory-startup", blob, "--python", r->worker_remote,
				NULL};

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
	sl->last_output = sl->last_progress = util_mono_ms();
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

int64_t slot_timeout_default_ms(double avg_secs)
{
	double t = avg_secs * 1000.0 * SLOT_TIMEOUT_AVG_FACTOR;

	if (!isfinite(t) || t < (double)SLOT_DEFAULT_TIMEOUT_MS)
		return SLOT_DEFAULT_TIMEOUT_MS;
	return t > 30.0 * 86400 * 1000 ? 30LL * 86400 * 1000 : (int64_t)t;
}

static int64_t slot_default_timeout(struct runner *r, int64_t job)
{
	double avg = 0;

	store_job_avg_secs(r->st, job, &avg);
	return slot_timeout_default_ms(avg);
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
	sl->frame_started = sl->last_output = sl->last_progress = util_mono_ms();
	sl->prog_fraction = 0;
	sl->prog_seen = 0;
	sl->prog_step = 0;
	sl->prog_written = 0;
	sl->prog_written_val = -1;
	sl->timeout_default = sl->timeout_ms <= 0;
	sl->frame_timeout_ms = sl->timeout_default ? slot_default_timeout(r, sl->job) : sl->timeout_ms;
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

static void frame_done(struct runner *r, struct slot *sl, const struct proto_msg *pm)
{
	struct frame_move m = {.now = util_now_ms()};
	double wall = (util_mono_ms() - sl->frame_started) / 1000.0;
	int64_t size, mtime;
	char why[512], local[4096];
	int rc;

	/* The node's own figure, when it is one that can be true: finite,
	 * not negative, and not longer than the frame was held here (plus a
	 * second of slack for clocks); else what was measured here. */
	m.secs = wall;
	if (pm->secs >= 0 && pm->secs <= wall + 1.0)
		m.secs = pm->secs;
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
	/* The size checked is the job's (its sidecar, else its scene as
	 * renderfs read it), or what the worker announced at ready when
	 * neither is known; never what a done message claims. */
	rc = collect_verify(local, sl->fmt, sl->width, sl->height,
			    pm->sha256[0] ? pm->sha256 : NULL, &size, &mtime, why, sizeof(why));
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
 * it comes.  It shows the link is alive (last_output), never that the
 * render is: a worker that prints forever without progress is hung. */
void slot_drain_log(struct runner *r, struct slot *sl)
{
	char buf[16384];

	for (;;) {
		ssize_t n = sl->proc ? r->node->ops->proc_read(sl->proc, TS_ERR, buf, sizeof(buf)) : -1;

		if (n <= 0)
			return;
		sl->last_output = util_mono_ms();
		slot_log_write(sl, buf, (size_t)n);
	}
}

/*
 * The worker finished a frame.  The slot gives it to r->fin and, when the
 * policy's next job is the scene the worker has loaded, takes and starts
 * the next frame at once; then the finished frame is fetched, verified
 * and committed while the worker renders.  The GPU never waits for a
 * transfer.
 */
static void slot_finished(struct runner *r, struct slot *sl, const struct proto_msg *pm)
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
	frame_done(r, fin, pm);
}

/* What a worker's "ready" says about the node: device, Blender version,
 * GPUs (each already one clean line: proto.c). */
static void note_ready(struct runner *r, const struct slot *sl, const struct proto_msg *pm)
{
	char shown[96];
	struct node_ready nr = {
	    .device = pm->has_device ? pm->device : NULL,
	    .device_why = pm->has_why ? pm->device_why : NULL,
	    .blender = pm->has_blender ? pm->blender : NULL,
	    .gpus = pm->ngpus,
	    .gpu_names = pm->gpu_names,
	};

	r->ngpus = pm->ngpus;
	/* The version and where that Blender came from, "3.4.1 (installed)". */
	r->ready_version[0] = '\0';
	if (nr.blender && install_version_ok(nr.blender))
		snprintf(r->ready_version, sizeof(r->ready_version), "%s", nr.blender);
	if (nr.blender) {
		snprintf(shown, sizeof(shown), "%s (%s)", nr.blender, r->slot_from[sl->idx]);
		nr.blender = shown;
	}
	store_node_note_ready(r->st, r->node_id, &nr);
}

/* Text for the frame's log: Blender's own lines that reached stdout, and
 * what we refused of the worker's. */
static void slot_log_line(struct slot *sl, const char *text, size_t len)
{
	slot_log_write(sl, text, len);
	slot_log_write(sl, "\n", 1);
}

/* Write the frame's progress to the store when it changed and the last
 * write is SLOT_PROGRESS_WRITE_MS old (also from slot_watch, so the last
 * value of a burst lands too). */
static void slot_progress_flush(struct runner *r, struct slot *sl, int64_t now)
{
	if (sl->dup || !sl->frame_id || sl->state != SLOT_BUSY || !sl->prog_seen ||
	    sl->prog_fraction == sl->prog_written_val ||
	    now - sl->prog_written < SLOT_PROGRESS_WRITE_MS)
		return;
	sl->prog_written = now;
	sl->prog_written_val = sl->prog_fraction;
	store_frame_set_progress(r->st, sl->frame_id, sl->lease, sl->prog_fraction);
}

/* The worker's progress inside the frame.  Only an advance (a larger
 * fraction, or a new phase of the render) refreshes the stall clock; the
 * store gets it at most once a SLOT_PROGRESS_WRITE_MS, for status. */
static void slot_progress(struct runner *r, struct slot *sl, const struct proto_msg *pm)
{
	int64_t now = util_mono_ms();

	sl->prog_seen = 1;
	if (pm->fraction > sl->prog_fraction || pm->step > sl->prog_step) {
		sl->last_progress = now;
		if (pm->fraction > sl->prog_fraction)
			sl->prog_fraction = pm->fraction;
		if (pm->step > sl->prog_step)
			sl->prog_step = pm->step;
	}
	slot_progress_flush(r, sl, now);
}

static void slot_line(struct runner *r, struct slot *sl, char *line, size_t len)
{
	struct proto_msg pm;
	int rc, this_frame;

	sl->last_output = util_mono_ms();
	rc = proto_parse_line(line, len, &pm);
	/* The stall clock: every valid protocol event but progress, which
	 * counts only when it advances (below). */
	if (!rc && pm.ev != PROTO_NONE && pm.ev != PROTO_PROGRESS)
		sl->last_progress = sl->last_output;
	if (rc) {
		char note[200];

		/* Kept in the log, where the user looking at a stuck frame
		 * finds it; the line itself is ignored. */
		snprintf(note, sizeof(note), "renderfs: ignored a bad worker line: %s",
			 rc == -EINVAL ? pm.why : strerror(-rc));
		slot_log_line(sl, note, strlen(note));
		return;
	}
	this_frame = sl->frame_id && pm.frame == (int64_t)sl->frame_no;
	switch (pm.ev) {
	case PROTO_NONE: slot_log_line(sl, line, len); return;
	case PROTO_READY:
		if (slot_transition(sl, SE_READY) < 0)
			return; /* not starting: out of turn, ignored */
		/* The job's own size; the worker's word only when that is not
		 * known (proto.c range-checked it). */
		sl->width = sl->exp_w ? sl->exp_w : pm.width;
		sl->height = sl->exp_w ? sl->exp_h : pm.height;
		note_ready(r, sl, &pm);
		/* The cluster scheduler's job holding the slot (Slurm), for the
		 * node's status: only a job id that is all digits is shown. */
		if (pm.sched_job[0] && strspn(pm.sched_job, "0123456789") == strlen(pm.sched_job) &&
		    !store_node_slot_job(r->st, r->node_id, sl->idx, pm.sched_job))
			sl->sched_job = 1;
		if (pm.fps > 0)
			store_job_set_scene_fps(r->st, sl->job, pm.fps);
		sl->idle_since = util_mono_ms();
		if (sl->frame_id && slot_send_frame(r, sl))
			frame_failed(r, sl, "could not hand the frame to the worker");
		return;
	case PROTO_ERROR:
		if (sl->state == SLOT_STARTING)
			snprintf(sl->setup_error, sizeof(sl->setup_error), "%s",
				 pm.msg[0] ? pm.msg : "worker setup failed");
		return;
	case PROTO_START:
		if (sl->state == SLOT_BUSY && this_frame) {
			struct frame_move m = {.now = util_now_ms(),
					       .lease_until = util_now_ms() + r->cfg->lease_ms};

			if (!sl->dup && store_frame_transition(r->st, sl->frame_id, sl->lease, FE_START, &m) < 0)
				slot_kill(r, sl); /* no longer ours */
		}
		return;
	case PROTO_PROGRESS:
		if (sl->state == SLOT_BUSY && this_frame)
			slot_progress(r, sl, &pm);
		return;
	case PROTO_DONE:
		if (sl->state == SLOT_BUSY && this_frame) {
			/* The device this frame really rendered on: the node's
			 * status shows it, and the clore provider checks it (a
			 * rented GPU node on CPU is broken). */
			if (pm.has_device && pm.device[0])
				store_node_set_device(r->st, r->node_id, pm.device);
			slot_finished(r, sl, &pm);
		}
		return;
	case PROTO_FAIL:
		if (sl->state == SLOT_BUSY && this_frame) {
			slot_drain_log(r, sl);
			frame_failed(r, sl, pm.msg[0] ? pm.msg : "Blender reported a failure");
			if (slot_transition(sl, SE_FINISH) >= 0)
				sl->idle_since = util_mono_ms();
		}
		return;
	}
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
	sl->log_fd = open(logp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	sl->log_size = 0;
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
		if (runner_link_error(rc) || rc == -ENOPKG) {
			/* A link error, or a Blender install that failed: the
			 * node, not the frame, is at fault (runner.c). */
			slot_interrupt(r, sl, rc == -ENOPKG ? r->install_error : why);
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
		char why[200], d[32];
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
		if (sl->state == SLOT_BUSY && sl->frame_timeout_ms > 0 &&
		    mono - sl->frame_started > sl->frame_timeout_ms) {
			snprintf(why, sizeof(why), "timed out after %s (%s)",
				 util_fmt_duration(d, sizeof(d), sl->frame_timeout_ms / 1000.0),
				 sl->timeout_default ? "the default timeout; set timeout in the sidecar"
						     : "timeout");
			frame_failed(r, sl, why);
			slot_kill(r, sl);
			continue;
		}
		if (mono - sl->last_progress > r->cfg->stall_ms) {
			snprintf(why, sizeof(why), "hung: no render progress for %s",
				 util_fmt_duration(d, sizeof(d), (mono - sl->last_progress) / 1000.0));
			frame_failed(r, sl, why);
			slot_kill(r, sl);
			continue;
		}
		slot_progress_flush(r, sl, mono);
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
