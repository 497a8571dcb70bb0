/*
 * status: facts are gathered into plain structs inside one read
 * transaction, then printed twice -- as text and as JSON -- from the same
 * structs, so the two can never disagree.
 */
#include "jobs/status.h"
#include "jobs/jobs.h"
#include "jobs/money.h"
#include "store/frames.h"
#include "store/status_rows.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STATUS_INFLIGHT_MAX 256 /* in-flight frames read for progress and eta */
#define STATUS_INFLIGHT_SHOW 16 /* of which the rendering: line lists these */

struct job_facts {
	char name[JOB_NAME_MAX + 1];
	char state[16];
	char owner[64]; /* the user name, else the uid */
	int64_t uid;
	int64_t frames, done, rendering, queued, failed, cancelled;
	int64_t interrupted;            /* times a node went away with a frame (no attempt used) */
	int64_t retried;                /* failed attempts that were tried again */
	double elapsed, avg_frame, eta; /* seconds; eta < 0 = unknown */
	int nodes, gpus;
	double rate, spent, estimate;
	double per_dollar; /* frames done per USD; < 0 = unknown (nothing spent) */
	int waiting;       /* the stored state is waiting */
	char *error;       /* owned */
	uint32_t *missing; /* owned */
	size_t nmissing;
	char *facts;         /* owned: "key: value\n" lines from the .blend, escaped at intake */
	char *missing_files; /* owned: one escaped line per file the drop lacks */
	char video[16];
	int64_t priority;
	struct frame_inflight inflight[STATUS_INFLIGHT_SHOW]; /* the first in-flight frames */
	size_t ninflight, inflight_more; /* listed; and how many more there are */
	double work_done;                /* done frames plus in-flight fractions */
	struct {
		char name[128];
		int64_t done;
	} per_node[16]; /* frames done by each node (the first 16) */
	int nper_node;
};

/* The user's name, else the uid in decimal. */
static void owner_name(int64_t uid, char *out, size_t sz)
{
	struct passwd pw, *res = NULL;
	char buf[2048];

	if (getpwuid_r((uid_t)uid, &pw, buf, sizeof(buf), &res) == 0 && res && res->pw_name[0])
		snprintf(out, sz, "%s", res->pw_name);
	else
		snprintf(out, sz, "%lld", (long long)uid);
}

static int job_facts_get(struct store *st, int64_t job, struct job_facts *f)
{
	struct view_job v;
	struct view_capacity cap;
	int64_t now = util_now_ms();
	double left_max = 0, left_sum = 0; /* in-flight work left, in frames */
	int rc;

	memset(f, 0, sizeof(*f));
	rc = store_view_job(st, job, &v);
	if (rc) {
		store_view_job_free(&v);
		return rc;
	}
	snprintf(f->name, sizeof(f->name), "%s", v.name);
	snprintf(f->state, sizeof(f->state), "%s", v.state);
	{
		/* A job whose owner is unknown (dropped before owners were
		 * kept) is the daemon's user's, as getattr shows it. */
		struct job_row j;

		f->uid = job_get(st, job, &j) == 0 && j.uid >= 0 ? j.uid : (int64_t)getuid();
		owner_name(f->uid, f->owner, sizeof(f->owner));
	}
	f->waiting = !strcmp(f->state, "waiting");
	f->error = v.error; /* ownership moves to f */
	f->missing = v.missing;
	f->nmissing = v.nmissing;
	f->facts = v.facts;
	f->missing_files = v.missing_files;
	f->priority = v.priority;
	f->frames = v.frames;
	f->done = v.done;
	f->rendering = v.inflight;
	f->queued = v.queued;
	f->failed = v.failed;
	f->cancelled = v.cancelled;
	f->interrupted = v.interrupted;
	f->retried = v.retried;
	for (int i = 0; i < v.nper_node && i < (int)ARRAY_SIZE(f->per_node); i++) {
		snprintf(f->per_node[i].name, sizeof(f->per_node[i].name), "%s", v.per_node[i].name);
		f->per_node[i].done = v.per_node[i].done;
		f->nper_node = i + 1;
	}
	if (v.timed > 0)
		f->avg_frame = v.done_secs / (double)v.timed;

	/* Progress inside the frames in flight, as their workers report it:
	 * the rendering: line, progress: and eta use it. */
	{
		struct frame_inflight fl[STATUS_INFLIGHT_MAX];
		size_t n = 0;

		f->work_done = (double)f->done;
		if (f->rendering > 0 && store_frames_inflight(st, job, fl, ARRAY_SIZE(fl), &n))
			n = 0;
		for (size_t i = 0; i < n; i++) {
			double p = fl[i].fraction > 0 ? fl[i].fraction : 0;

			f->work_done += p;
			left_max = fmax(left_max, 1 - p);
			left_sum += 1 - p;
			if (i < ARRAY_SIZE(f->inflight))
				f->inflight[f->ninflight++] = fl[i];
		}
		/* Frames beyond those read count as not started. */
		if (f->rendering > (int64_t)n) {
			left_sum += (double)(f->rendering - (int64_t)n);
			left_max = 1;
		}
		f->inflight_more = f->rendering > (int64_t)f->ninflight ? (size_t)(f->rendering - (int64_t)f->ninflight) : 0;
	}

	store_view_capacity(st, &cap);
	f->nodes = cap.nodes;
	f->gpus = cap.gpus;
	if (v.started)
		f->elapsed = ((v.ended ? v.ended : now) - v.started) / 1000.0;
	if (!strcmp(f->state, "done") || !strcmp(f->state, "failed") || !strcmp(f->state, "cancelled"))
		f->eta = 0;
	else if (f->avg_frame > 0 && cap.slots > 0)
		/* What is left: the queued frames in waves of the slots there
		 * are, and what the in-flight frames still have to render; at
		 * least the longest of those. */
		f->eta = fmax(left_max, f->queued ? ceil(((double)f->queued + left_sum) / cap.slots)
						 : left_sum / cap.slots) *
			 f->avg_frame;
	else
		f->eta = -1;
	snprintf(f->video, sizeof(f->video), "%s", !v.video ? "no" : "yes");
	/* Rented nodes' cost, shared out by slot time (money.c); the local
	 * and SSH backends cost nothing. */
	{
		struct money_job mj;
		int64_t left = f->queued + f->rendering;

		money_job_get(st, job, now, &mj);
		f->spent = mj.spent;
		f->rate = mj.rate_h;
		if (f->done > 0)
			f->estimate = f->spent + (double)left * f->spent / (double)f->done;
		else
			f->estimate = f->spent + (f->eta > 0 ? f->rate * f->eta / 3600.0 : 0);
		f->per_dollar = f->spent > 0 ? (double)f->done / f->spent : -1;
	}
	/* Waiting while servers are being rented for it: provisioning. */
	if (f->waiting && v.renting)
		snprintf(f->state, sizeof(f->state), "provisioning");
	return 0;
}

static void job_facts_free(struct job_facts *f)
{
	free(f->error);
	free(f->missing);
	free(f->facts);
	free(f->missing_files);
}

/* The files a job renders without, one line each in the store: shown as
 * one status line, "; " between them. */
static void print_missing_files(struct util_sb *out, const char *lines)
{
	int first = 1;

	util_sb_printf(out, "missing_files: ");
	for (const char *p = lines; *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);

		if (n)
			util_sb_printf(out, "%s%.*s", first ? "" : "; ", (int)n, p);
		first = first && !n;
		p += n + (nl ? 1 : 0);
	}
	util_sb_printf(out, "\n");
}

/* The facts as JSON: numbers where the value is one (samples, fps). */
static void facts_json(cJSON *o, const char *lines)
{
	for (const char *p = lines; p && *p;) {
		const char *nl = strchr(p, '\n'), *colon;
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		char line[1024], *end;
		double d;

		snprintf(line, sizeof(line), "%.*s", (int)n, p);
		p += n + (nl ? 1 : 0);
		colon = strstr(line, ": ");
		if (!colon)
			continue;
		line[colon - line] = '\0';
		d = strtod(colon + 2, &end);
		if ((!strcmp(line, "samples") || !strcmp(line, "fps")) && end != colon + 2 && !*end)
			cJSON_AddNumberToObject(o, line, d);
		else
			cJSON_AddStringToObject(o, line, colon + 2);
	}
}

/* "17,203" style, with runs folded: "1-5,9,12-14". */
static void print_frame_list(struct util_sb *out, const uint32_t *v, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t j = i;

		while (j + 1 < n && v[j + 1] == v[j] + 1)
			j++;
		if (j > i + 1)
			util_sb_printf(out, "%s%u-%u", i ? "," : "", v[i], v[j]);
		else if (j == i + 1)
			util_sb_printf(out, "%s%u,%u", i ? "," : "", v[i], v[j]);
		else
			util_sb_printf(out, "%s%u", i ? "," : "", v[i]);
		i = j + 1;
	}
}

/* Values are printed on one line: control characters in user-chosen text
 * (a job named with a newline) are escaped so a line stays a line. */
static void print_value(struct util_sb *out, const char *v)
{
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p == '\n')
			util_sb_printf(out, "\\n");
		else if (*p < 0x20 || *p == 0x7f)
			util_sb_printf(out, "\\x%02x", *p);
		else if (*p == '\\')
			util_sb_printf(out, "\\\\");
		else
			util_sb_printf(out, "%c", *p);
	}
}

/* "key: value\n" with the value escaped by print_value(). */
static void print_kv(struct util_sb *out, const char *key, const char *v)
{
	util_sb_printf(out, "%s: ", key);
	print_value(out, v);
	util_sb_printf(out, "\n");
}

/* Percent of a job's frames done; done may count fractions of frames. */
static double progress_of(double done, int64_t frames)
{
	double p = frames > 0 ? 100.0 * done / (double)frames : 0;

	return p > 100 ? 100 : p;
}

/* "8 (12 41%, 13 7%)": the count first, as before, then each in-flight
 * frame with its progress inside the frame. */
static void print_rendering(struct util_sb *out, const struct job_facts *f)
{
	util_sb_printf(out, "rendering: %lld", (long long)f->rendering);
	if (!f->ninflight) {
		util_sb_printf(out, "\n");
		return;
	}
	util_sb_printf(out, " (");
	for (size_t i = 0; i < f->ninflight; i++)
		util_sb_printf(out, "%s%u %d%%", i ? ", " : "", f->inflight[i].frame,
			       (int)floor(100 * (f->inflight[i].fraction > 0 ? f->inflight[i].fraction : 0)));
	if (f->inflight_more)
		util_sb_printf(out, ", +%zu more", f->inflight_more);
	util_sb_printf(out, ")\n");
}

static void print_progress(struct util_sb *out, double pct)
{
	int filled = (int)(pct / 5.0);

	util_sb_printf(out, "progress: %.1f%% [", pct);
	for (int i = 0; i < 20; i++)
		util_sb_printf(out, "%c", i < filled ? '#' : '.');
	util_sb_printf(out, "]\n");
}

static void job_text(const struct job_facts *f, struct util_sb *out)
{
	char a[32], b[32], c[32];

	util_sb_printf(out, "job: ");
	print_value(out, f->name);
	util_sb_printf(out, "\nstate: %s\n", f->state);
	print_kv(out, "owner", f->owner);
	util_sb_printf(out, "frames: %lld\ndone: %lld\n", (long long)f->frames, (long long)f->done);
	print_rendering(out, f);
	util_sb_printf(out, "queued: %lld\nfailed: %lld\n", (long long)f->queued, (long long)f->failed);
	print_progress(out, progress_of(f->work_done, f->frames));
	util_sb_printf(out, "elapsed: %s\n", util_fmt_duration(a, sizeof(a), f->elapsed));
	util_sb_printf(out, "eta: %s\n", f->eta < 0 ? "unknown" : util_fmt_duration(a, sizeof(a), f->eta));
	util_sb_printf(out, "avg_frame: %s\n",
		       f->avg_frame > 0 ? util_fmt_duration(a, sizeof(a), f->avg_frame) : "unknown");
	util_sb_printf(out, "nodes: %d (%d GPU%s)\n", f->nodes, f->gpus, f->gpus == 1 ? "" : "s");
	util_sb_printf(out, "rate: %s/h\nspent: %s\nestimate: %s\n", util_fmt_money(a, sizeof(a), f->rate),
		       util_fmt_money(b, sizeof(b), f->spent), util_fmt_money(c, sizeof(c), f->estimate));
	if (f->per_dollar < 0)
		util_sb_printf(out, "frames_per_dollar: unknown\n");
	else
		util_sb_printf(out, "frames_per_dollar: %.1f\n", f->per_dollar);
	util_sb_printf(out, "interrupted: %lld\nretried: %lld\n", (long long)f->interrupted,
		       (long long)f->retried);
	util_sb_printf(out, "cancelled: %lld\npriority: %lld\nvideo: %s\n", (long long)f->cancelled,
		       (long long)f->priority, f->video);
	util_sb_printf(out, "node_frames:");
	for (int i = 0; i < f->nper_node; i++)
		util_sb_printf(out, "%s %s=%lld", i ? "," : "", f->per_node[i].name,
			       (long long)f->per_node[i].done);
	util_sb_printf(out, "\n");
	if (f->nmissing) {
		util_sb_printf(out, "missing: ");
		print_frame_list(out, f->missing, f->nmissing);
		util_sb_printf(out, "\n");
	}
	/* Already one escaped line each (intake cleaned them). */
	if (f->facts)
		util_sb_printf(out, "%s", f->facts);
	if (f->missing_files && f->missing_files[0])
		print_missing_files(out, f->missing_files);
	if (f->error && f->error[0]) {
		util_sb_printf(out, "error: ");
		print_value(out, f->error);
		util_sb_printf(out, "\n");
	}
}

static cJSON *job_json(const struct job_facts *f)
{
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "job", f->name);
	cJSON_AddStringToObject(o, "state", f->state);
	cJSON_AddStringToObject(o, "owner", f->owner);
	cJSON_AddNumberToObject(o, "uid", (double)f->uid);
	cJSON_AddNumberToObject(o, "frames", (double)f->frames);
	cJSON_AddNumberToObject(o, "done", (double)f->done);
	cJSON_AddNumberToObject(o, "rendering", (double)f->rendering);
	cJSON_AddNumberToObject(o, "queued", (double)f->queued);
	cJSON_AddNumberToObject(o, "failed", (double)f->failed);
	{
		cJSON *arr = cJSON_AddArrayToObject(o, "rendering_frames");

		for (size_t i = 0; arr && i < f->ninflight; i++) {
			cJSON *e = cJSON_CreateObject();

			if (!e)
				break;
			cJSON_AddNumberToObject(e, "frame", f->inflight[i].frame);
			if (f->inflight[i].fraction < 0)
				cJSON_AddNullToObject(e, "progress");
			else
				cJSON_AddNumberToObject(e, "progress", round(f->inflight[i].fraction * 1000) / 10);
			cJSON_AddItemToArray(arr, e);
		}
	}
	cJSON_AddNumberToObject(o, "progress", round(progress_of(f->work_done, f->frames) * 10) / 10);
	cJSON_AddNumberToObject(o, "elapsed", round(f->elapsed * 10) / 10);
	if (f->eta < 0)
		cJSON_AddNullToObject(o, "eta");
	else
		cJSON_AddNumberToObject(o, "eta", round(f->eta * 10) / 10);
	if (f->avg_frame > 0)
		cJSON_AddNumberToObject(o, "avg_frame", round(f->avg_frame * 1000) / 1000);
	else
		cJSON_AddNullToObject(o, "avg_frame");
	cJSON_AddNumberToObject(o, "nodes", f->nodes);
	cJSON_AddNumberToObject(o, "gpus", f->gpus);
	cJSON_AddNumberToObject(o, "rate", f->rate);
	cJSON_AddNumberToObject(o, "spent", f->spent);
	cJSON_AddNumberToObject(o, "estimate", f->estimate);
	if (f->per_dollar < 0)
		cJSON_AddNullToObject(o, "frames_per_dollar");
	else
		cJSON_AddNumberToObject(o, "frames_per_dollar", round(f->per_dollar * 10) / 10);
	cJSON_AddNumberToObject(o, "cancelled", (double)f->cancelled);
	cJSON_AddNumberToObject(o, "interrupted", (double)f->interrupted);
	cJSON_AddNumberToObject(o, "retried", (double)f->retried);
	cJSON_AddNumberToObject(o, "priority", (double)f->priority);
	cJSON_AddStringToObject(o, "video", f->video);
	{
		cJSON *per = cJSON_AddObjectToObject(o, "node_frames");

		for (int i = 0; per && i < f->nper_node; i++)
			cJSON_AddNumberToObject(per, f->per_node[i].name, (double)f->per_node[i].done);
	}
	if (f->nmissing) {
		cJSON *arr = cJSON_AddArrayToObject(o, "missing");

		for (size_t i = 0; arr && i < f->nmissing; i++)
			cJSON_AddItemToArray(arr, cJSON_CreateNumber(f->missing[i]));
	}
	facts_json(o, f->facts);
	if (f->missing_files && f->missing_files[0]) {
		cJSON *arr = cJSON_AddArrayToObject(o, "missing_files");

		for (const char *p = f->missing_files; arr && *p;) {
			const char *nl = strchr(p, '\n');
			size_t n = nl ? (size_t)(nl - p) : strlen(p);
			char line[1024];

			snprintf(line, sizeof(line), "%.*s", (int)n, p);
			if (n)
				cJSON_AddItemToArray(arr, cJSON_CreateString(line));
			p += n + (nl ? 1 : 0);
		}
	}
	if (f->error && f->error[0])
		cJSON_AddStringToObject(o, "error", f->error);
	return o;
}

static int print_json(cJSON *o, struct util_sb *out)
{
	char *text;

	if (!o)
		return -ENOMEM;
	text = cJSON_Print(o);
	cJSON_Delete(o);
	if (!text)
		return -ENOMEM;
	util_sb_printf(out, "%s\n", text);
	free(text);
	return out->oom ? -ENOMEM : 0;
}

/* One consistent snapshot: a read transaction around all the queries. */
int status_job(struct store *st, int64_t job, int json, struct util_sb *out)
{
	struct job_facts f;
	int rc = store_read_begin(st);

	if (rc)
		return rc;
	rc = job_facts_get(st, job, &f);
	store_read_end(st);
	if (rc) {
		job_facts_free(&f);
		return rc;
	}
	if (json)
		rc = print_json(job_json(&f), out);
	else
		job_text(&f, out);
	job_facts_free(&f);
	return rc ? rc : out->oom ? -ENOMEM : 0;
}

/* A node as its status shows it: the stored view, and what it cost so far
 * when it is rented. */
struct node_facts {
	struct view_node v;
	double spent;
};

static int node_facts_get(struct store *st, int64_t id, struct node_facts *n)
{
	int rc = store_view_node(st, id, &n->v);

	n->spent = 0;
	if (!rc && n->v.rented)
		n->spent = money_rental_cost(st, n->v.rental, util_now_ms());
	return rc;
}

static void node_text(const struct node_facts *n, struct util_sb *out)
{
	char a[32];

	/* Names, devices and versions come from nodes and users: each is
	 * escaped so that it cannot add a line. */
	print_kv(out, "node", n->v.name);
	print_kv(out, "provider", n->v.provider);
	print_kv(out, "address", n->v.address);
	util_sb_printf(out, "gpus: %d", n->v.gpus);
	if (n->v.gpus) {
		util_sb_printf(out, " (");
		print_value(out, n->v.gpu_names);
		util_sb_printf(out, ")");
	}
	util_sb_printf(out, "\ndevice: ");
	print_value(out, n->v.device[0] ? n->v.device : "unknown");
	if (n->v.device_why[0]) {
		util_sb_printf(out, " (");
		print_value(out, n->v.device_why);
		util_sb_printf(out, ")");
	}
	util_sb_printf(out, "\n");
	print_kv(out, "blender", n->v.blender[0] ? n->v.blender : "unknown");
	if (n->v.order)
		util_sb_printf(out, "order: %lld\nserver: %lld\nspot: %s\nspent: %s\n", (long long)n->v.order,
			       (long long)n->v.server, n->v.spot ? "yes" : "no",
			       util_fmt_money(a, sizeof(a), n->spent));
	if (!strcmp(n->v.provider, "slurm")) {
		/* Which Slurm job holds each slot now, for squeue and scancel. */
		util_sb_printf(out, "slurm_jobs:");
		for (int i = 0; i < n->v.nslot_jobs; i++) {
			util_sb_printf(out, "%s ", i ? "," : "");
			print_value(out, n->v.slot_jobs[i].job_id);
			util_sb_printf(out, " (slot %d)", n->v.slot_jobs[i].slot);
		}
		util_sb_printf(out, "%s\n", n->v.nslot_jobs ? "" : " none");
	}
	util_sb_printf(out, "price: %s/h\nstate: %s\nslots: %d\ndone: %lld\nfailed: %lld\n",
		       util_fmt_money(a, sizeof(a), n->v.price_h), n->v.state, n->v.slots,
		       (long long)n->v.done, (long long)n->v.failed);
	if (n->v.error && n->v.error[0]) {
		util_sb_printf(out, "error: ");
		print_value(out, n->v.error);
		util_sb_printf(out, "\n");
	}
}

static cJSON *node_json(const struct node_facts *n)
{
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "node", n->v.name);
	cJSON_AddStringToObject(o, "provider", n->v.provider);
	cJSON_AddStringToObject(o, "address", n->v.address);
	cJSON_AddNumberToObject(o, "gpus", n->v.gpus);
	cJSON_AddStringToObject(o, "gpu_names", n->v.gpu_names);
	cJSON_AddStringToObject(o, "device", n->v.device[0] ? n->v.device : "unknown");
	cJSON_AddStringToObject(o, "device_why", n->v.device_why);
	cJSON_AddStringToObject(o, "blender", n->v.blender[0] ? n->v.blender : "unknown");
	cJSON_AddNumberToObject(o, "price", n->v.price_h);
	if (n->v.order) {
		cJSON_AddNumberToObject(o, "order", (double)n->v.order);
		cJSON_AddNumberToObject(o, "server", (double)n->v.server);
		cJSON_AddBoolToObject(o, "spot", n->v.spot);
		cJSON_AddNumberToObject(o, "spent", n->spent);
	}
	if (!strcmp(n->v.provider, "slurm")) {
		cJSON *arr = cJSON_AddArrayToObject(o, "slurm_jobs");

		for (int i = 0; arr && i < n->v.nslot_jobs; i++) {
			cJSON *j = cJSON_CreateObject();

			if (!j)
				break;
			cJSON_AddNumberToObject(j, "slot", n->v.slot_jobs[i].slot);
			cJSON_AddStringToObject(j, "job", n->v.slot_jobs[i].job_id);
			cJSON_AddItemToArray(arr, j);
		}
	}
	cJSON_AddStringToObject(o, "state", n->v.state);
	cJSON_AddNumberToObject(o, "slots", n->v.slots);
	cJSON_AddNumberToObject(o, "done", (double)n->v.done);
	cJSON_AddNumberToObject(o, "failed", (double)n->v.failed);
	if (n->v.error && n->v.error[0])
		cJSON_AddStringToObject(o, "error", n->v.error);
	return o;
}

int status_node(struct store *st, int64_t node, int json, struct util_sb *out)
{
	struct node_facts n;
	int rc = store_read_begin(st);

	if (rc)
		return rc;
	rc = node_facts_get(st, node, &n);
	store_read_end(st);
	if (!rc) {
		if (json)
			rc = print_json(node_json(&n), out);
		else
			node_text(&n, out);
	}
	store_view_node_free(&n.v);
	return rc ? rc : out->oom ? -ENOMEM : 0;
}

struct farm_ctx {
	struct store *st;
	struct job_facts *jobs;
	size_t n, cap;
	struct node_facts *nodes;
	size_t nnodes, nodes_cap;
};

static int farm_node(void *arg, const struct node_row *n)
{
	struct farm_ctx *c = arg;

	if (c->nnodes == c->nodes_cap) {
		size_t ncap = c->nodes_cap ? c->nodes_cap * 2 : 8;
		struct node_facts *nn = realloc(c->nodes, ncap * sizeof(*nn));

		if (!nn)
			return 1;
		c->nodes = nn;
		c->nodes_cap = ncap;
	}
	if (node_facts_get(c->st, n->id, &c->nodes[c->nnodes]) == 0)
		c->nnodes++;
	return 0;
}

static int farm_job(void *arg, const struct job_row *j)
{
	struct farm_ctx *c = arg;

	if (c->n == c->cap) {
		struct job_facts *nj = realloc(c->jobs, (c->cap = c->cap ? c->cap * 2 : 16) * sizeof(*nj));

		if (!nj)
			return 1;
		c->jobs = nj;
	}
	if (job_facts_get(c->st, j->id, &c->jobs[c->n]) == 0)
		c->n++;
	return 0;
}

/* A held order as the farm status shows it. */
struct order_facts {
	struct view_order v;
	double spent;
};

/* The orders held now, with what each cost so far; *out caller frees. */
static size_t orders_get(struct store *st, int64_t now, struct order_facts **out)
{
	struct view_order *v;
	size_t n = 0;

	*out = NULL;
	if (store_view_orders(st, &v, &n) || !n)
		return 0;
	*out = calloc(n, sizeof(**out));
	if (*out)
		for (size_t i = 0; i < n; i++) {
			(*out)[i].v = v[i];
			(*out)[i].spent = money_rental_cost(st, v[i].rental, now);
		}
	free(v);
	return *out ? n : 0;
}

int status_farm(struct store *st, int json, struct util_sb *out)
{
	struct farm_ctx c = {.st = st};
	int64_t frames = 0, done = 0, rendering = 0, queued = 0, failed = 0;
	double work = 0; /* done frames plus in-flight fractions */
	struct view_capacity cap;
	int nodes, gpus, active = 0, rc;
	double rate = 0, spent = 0, estimate = 0;
	char a[32], b[32], d[32], key[4096] = "", clore[600] = "";
	struct money_farm money;
	struct order_facts *orders = NULL;
	size_t norders = 0;
	int64_t now = util_now_ms();

	rc = store_read_begin(st);
	if (rc)
		return rc;
	jobs_list(st, farm_job, &c);
	nodes_list(st, farm_node, &c);
	store_view_capacity(st, &cap);
	nodes = cap.nodes;
	gpus = cap.gpus;
	store_meta_get(st, "ssh_public_key", key, sizeof(key));
	store_meta_get(st, "clore_status", clore, sizeof(clore));
	money_farm_get(st, now, &money);
	norders = orders_get(st, now, &orders);
	store_read_end(st);
	for (size_t i = 0; i < c.n; i++) {
		struct job_facts *f = &c.jobs[i];

		frames += f->frames;
		done += f->done;
		work += f->work_done;
		rendering += f->rendering;
		queued += f->queued;
		failed += f->failed;
		estimate += f->estimate - f->spent;
		active +=
		    strcmp(f->state, "done") && strcmp(f->state, "failed") && strcmp(f->state, "cancelled");
	}
	/* The farm's money is every rental's, idle time included; the jobs'
	 * estimates add what their remaining frames should cost. */
	rate = money.rate_h;
	spent = money.spent;
	estimate += spent;
	if (json) {
		cJSON *o = cJSON_CreateObject(), *arr;

		if (o) {
			cJSON_AddNumberToObject(o, "jobs", (double)c.n);
			cJSON_AddNumberToObject(o, "active", active);
			cJSON_AddNumberToObject(o, "frames", (double)frames);
			cJSON_AddNumberToObject(o, "done", (double)done);
			cJSON_AddNumberToObject(o, "rendering", (double)rendering);
			cJSON_AddNumberToObject(o, "queued", (double)queued);
			cJSON_AddNumberToObject(o, "failed", (double)failed);
			cJSON_AddNumberToObject(o, "progress", round(progress_of(work, frames) * 10) / 10);
			cJSON_AddNumberToObject(o, "nodes", nodes);
			cJSON_AddNumberToObject(o, "gpus", gpus);
			cJSON_AddNumberToObject(o, "rate", rate);
			cJSON_AddNumberToObject(o, "spent", spent);
			cJSON_AddNumberToObject(o, "estimate", estimate);
			cJSON_AddNumberToObject(o, "idle", money.idle);
			if (clore[0])
				cJSON_AddStringToObject(o, "clore", clore);
			arr = cJSON_AddArrayToObject(o, "orders");
			for (size_t i = 0; arr && i < norders; i++) {
				cJSON *r = cJSON_CreateObject();

				if (!r)
					break;
				cJSON_AddNumberToObject(r, "id", (double)orders[i].v.order);
				cJSON_AddNumberToObject(r, "server", (double)orders[i].v.server);
				cJSON_AddStringToObject(r, "state", orders[i].v.state);
				cJSON_AddBoolToObject(r, "spot", orders[i].v.spot);
				cJSON_AddNumberToObject(r, "price_h", orders[i].v.price_h);
				cJSON_AddNumberToObject(r, "spent", orders[i].spent);
				cJSON_AddStringToObject(r, "node", orders[i].v.node);
				cJSON_AddItemToArray(arr, r);
			}
			if (key[0])
				cJSON_AddStringToObject(o, "ssh_key", key);
			arr = cJSON_AddArrayToObject(o, "job_list");
			for (size_t i = 0; arr && i < c.n; i++)
				cJSON_AddItemToArray(arr, job_json(&c.jobs[i]));
			arr = cJSON_AddArrayToObject(o, "node_list");
			for (size_t i = 0; arr && i < c.nnodes; i++)
				cJSON_AddItemToArray(arr, node_json(&c.nodes[i]));
		}
		rc = print_json(o, out);
	} else {
		util_sb_printf(out,
			       "jobs: %zu\nactive: %d\nframes: %lld\ndone: %lld\nrendering: %lld\n"
			       "queued: %lld\nfailed: %lld\n",
			       c.n, active, (long long)frames, (long long)done, (long long)rendering,
			       (long long)queued, (long long)failed);
		print_progress(out, progress_of(work, frames));
		util_sb_printf(out, "nodes: %d (%d GPU%s)\nrate: %s/h\nspent: %s\nestimate: %s\n", nodes,
			       gpus, gpus == 1 ? "" : "s", util_fmt_money(a, sizeof(a), rate),
			       util_fmt_money(b, sizeof(b), spent), util_fmt_money(d, sizeof(d), estimate));
		util_sb_printf(out, "idle: %s\n", util_fmt_money(a, sizeof(a), money.idle));
		if (clore[0]) {
			util_sb_printf(out, "clore: ");
			print_value(out, clore);
			util_sb_printf(out, "\n");
		}
		if (key[0])
			util_sb_printf(out, "ssh_key: %s\n", key);
		for (size_t i = 0; i < norders; i++) {
			const struct order_facts *r = &orders[i];

			util_sb_printf(
			    out, "order: %lld server %lld %s %s %s/h spent %s node %s\n",
			    (long long)r->v.order, (long long)r->v.server, r->v.state,
			    r->v.spot ? "spot" : "on-demand", util_fmt_money(a, sizeof(a), r->v.price_h),
			    util_fmt_money(b, sizeof(b), r->spent), r->v.node[0] ? r->v.node : "-");
		}
		for (size_t i = 0; i < c.nnodes; i++) {
			const struct node_facts *n = &c.nodes[i];

			util_sb_printf(out, "node: ");
			print_value(out, n->v.name);
			util_sb_printf(out, " %s ", n->v.state);
			print_value(out, n->v.device[0] ? n->v.device : "unknown");
			util_sb_printf(out, ", %lld done, %lld failed\n", (long long)n->v.done,
				       (long long)n->v.failed);
		}
		for (size_t i = 0; i < c.n; i++) {
			const struct job_facts *f = &c.jobs[i];

			util_sb_printf(out, "job: ");
			print_value(out, f->name);
			util_sb_printf(out, " %s %lld/%lld %.1f%%\n", f->state, (long long)f->done,
				       (long long)f->frames, progress_of(f->work_done, f->frames));
		}
	}
	for (size_t i = 0; i < c.n; i++)
		job_facts_free(&c.jobs[i]);
	free(c.jobs);
	free(orders);
	for (size_t i = 0; i < c.nnodes; i++)
		store_view_node_free(&c.nodes[i].v);
	free(c.nodes);
	return rc ? rc : out->oom ? -ENOMEM : 0;
}
