/*
 * proto: parse and check one worker protocol line (see proto.h).
 */
#include "sched/proto.h"
#include "core/filecheck.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX "@rfs "
#define PREFIX_LEN 5

static const char *const ev_names[] = {
    [PROTO_NONE] = "none",         [PROTO_READY] = "ready", [PROTO_ERROR] = "error",
    [PROTO_START] = "start",       [PROTO_PROGRESS] = "progress",
    [PROTO_DONE] = "done",         [PROTO_FAIL] = "fail",
};

const char *proto_ev_name(enum proto_ev ev)
{
	return (unsigned)ev < ARRAY_SIZE(ev_names) && ev_names[ev] ? ev_names[ev] : "?";
}

static int bad(struct proto_msg *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int bad(struct proto_msg *out, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(out->why, sizeof(out->why), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* A finite number within lo..hi. */
static int num_in(const cJSON *v, double lo, double hi, double *val)
{
	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi)
		return 0;
	*val = v->valuedouble;
	return 1;
}

/* The required integer "frame". */
static int get_frame(const cJSON *o, struct proto_msg *out)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "frame");
	double v;

	if (!f)
		return bad(out, "%s without a frame", proto_ev_name(out->ev));
	if (!num_in(f, -PROTO_FRAME_MAX, PROTO_FRAME_MAX, &v) || floor(v) != v)
		return bad(out, "%s: frame is not an integer within -%d..%d", proto_ev_name(out->ev),
			   PROTO_FRAME_MAX, PROTO_FRAME_MAX);
	out->frame = (int64_t)v;
	return 0;
}

/* An optional text field: absent or null leaves dst empty; anything but a
 * string makes the line bad. */
static int get_text(const cJSON *o, const char *key, char *dst, size_t dstsz, struct proto_msg *out,
		    int *given)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	dst[0] = '\0';
	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsString(v) || !v->valuestring)
		return bad(out, "%s: %s is not a string", proto_ev_name(out->ev), key);
	util_clean_line(dst, dstsz, v->valuestring);
	if (given)
		*given = 1;
	return 0;
}

static int parse_ready(const cJSON *o, struct proto_msg *out)
{
	const cJSON *devs = cJSON_GetObjectItemCaseSensitive(o, "devices");
	double v;
	int rc;

	/* The size and fps are hints only (the job's own settings win): one
	 * out of range is unknown, not a reason to drop the worker. */
	if (num_in(cJSON_GetObjectItemCaseSensitive(o, "width"), 1, IMAGE_MAX_DIM, &v) && floor(v) == v)
		out->width = (int)v;
	if (num_in(cJSON_GetObjectItemCaseSensitive(o, "height"), 1, IMAGE_MAX_DIM, &v) && floor(v) == v)
		out->height = (int)v;
	if (!out->width || !out->height)
		out->width = out->height = 0;
	if (num_in(cJSON_GetObjectItemCaseSensitive(o, "fps"), 1e-6, 1000, &v))
		out->fps = v;
	if ((rc = get_text(o, "blender", out->blender, sizeof(out->blender), out, &out->has_blender)) ||
	    (rc = get_text(o, "device", out->device, sizeof(out->device), out, &out->has_device)) ||
	    (rc = get_text(o, "why", out->device_why, sizeof(out->device_why), out, &out->has_why)) ||
	    (rc = get_text(o, "slurm_job", out->sched_job, sizeof(out->sched_job), out, NULL)))
		return rc;
	if (devs && !cJSON_IsNull(devs)) {
		const cJSON *d;

		if (!cJSON_IsArray(devs))
			return bad(out, "ready: devices is not a list");
		cJSON_ArrayForEach(d, devs)
		{
			char name[128];
			size_t l = strlen(out->gpu_names);

			if (!cJSON_IsString(d) || !d->valuestring)
				return bad(out, "ready: a device is not a string");
			if (!strncmp(d->valuestring, "CPU", 3))
				continue;
			if (out->ngpus >= PROTO_MAX_GPUS)
				break;
			util_clean_line(name, sizeof(name), d->valuestring);
			snprintf(out->gpu_names + l, sizeof(out->gpu_names) - l, "%s%s", l ? ", " : "", name);
			out->ngpus++;
		}
	}
	return 0;
}

static int parse_progress(const cJSON *o, struct proto_msg *out)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "fraction");
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "step");
	double v;
	int rc = get_frame(o, out);

	if (rc)
		return rc;
	if (!num_in(f, 0, 1, &out->fraction))
		return bad(out, "progress: fraction is not a number within 0..1");
	if (s && !cJSON_IsNull(s)) {
		if (!num_in(s, 0, (double)PROTO_STEP_MAX, &v) || floor(v) != v)
			return bad(out, "progress: step is not an integer within 0..%lld",
				   (long long)PROTO_STEP_MAX);
		out->step = (int64_t)v;
	}
	return 0;
}

static int parse_done(const cJSON *o, struct proto_msg *out)
{
	const cJSON *secs = cJSON_GetObjectItemCaseSensitive(o, "secs");
	const cJSON *sha = cJSON_GetObjectItemCaseSensitive(o, "sha256");
	int rc = get_frame(o, out);

	if (rc)
		return rc;
	if (secs && !cJSON_IsNull(secs) && !num_in(secs, 0, PROTO_SECS_MAX, &out->secs))
		return bad(out, "done: secs is not a number within 0..%.0f", PROTO_SECS_MAX);
	/* the device the frame really rendered on (the node's GPU proof) */
	if ((rc = get_text(o, "device", out->device, sizeof(out->device), out, &out->has_device)))
		return rc;
	if (sha && !cJSON_IsNull(sha)) {
		const char *p = cJSON_IsString(sha) ? sha->valuestring : NULL;

		if (!p || strlen(p) != 64 || strspn(p, "0123456789abcdefABCDEF") != 64)
			return bad(out, "done: sha256 is not 64 hex digits");
		for (int i = 0; i < 64; i++)
			out->sha256[i] = (char)(p[i] >= 'A' && p[i] <= 'F' ? p[i] - 'A' + 'a' : p[i]);
		out->sha256[64] = '\0';
	}
	return 0;
}

int proto_parse_line(const char *line, size_t len, struct proto_msg *out)
{
	static const struct {
		const char *name;
		enum proto_ev ev;
	} evs[] = {{"ready", PROTO_READY}, {"error", PROTO_ERROR},   {"start", PROTO_START},
		   {"progress", PROTO_PROGRESS}, {"done", PROTO_DONE}, {"fail", PROTO_FAIL}};
	const char *end = NULL;
	const cJSON *ev;
	cJSON *o;
	char *buf;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	out->secs = -1;
	if (!line || len < PREFIX_LEN || memcmp(line, PREFIX, PREFIX_LEN))
		return 0; /* PROTO_NONE: log text */
	line += PREFIX_LEN;
	len -= PREFIX_LEN;
	if (memchr(line, '\0', len))
		return bad(out, "a NUL byte in the line");
	buf = malloc(len + 1);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, line, len);
	buf[len] = '\0';
	o = cJSON_ParseWithOpts(buf, &end, 1);
	free(buf);
	if (!o)
		return bad(out, "not one JSON object");
	if (!cJSON_IsObject(o)) {
		rc = bad(out, "not a JSON object");
		goto out;
	}
	ev = cJSON_GetObjectItemCaseSensitive(o, "ev");
	if (!cJSON_IsString(ev) || !ev->valuestring) {
		rc = bad(out, "no \"ev\" string");
		goto out;
	}
	for (size_t i = 0; i < ARRAY_SIZE(evs); i++)
		if (!strcmp(ev->valuestring, evs[i].name))
			out->ev = evs[i].ev;
	switch (out->ev) {
	case PROTO_READY: rc = parse_ready(o, out); break;
	case PROTO_ERROR: rc = get_text(o, "msg", out->msg, sizeof(out->msg), out, NULL); break;
	case PROTO_START: rc = get_frame(o, out); break;
	case PROTO_PROGRESS: rc = parse_progress(o, out); break;
	case PROTO_DONE: rc = parse_done(o, out); break;
	case PROTO_FAIL:
		rc = get_frame(o, out);
		if (!rc)
			rc = get_text(o, "msg", out->msg, sizeof(out->msg), out, NULL);
		break;
	default: {
		char name[40];

		rc = bad(out, "unknown event \"%s\"", util_clean_line(name, sizeof(name), ev->valuestring));
	}
	}
out:
	cJSON_Delete(o);
	if (rc) {
		enum proto_ev e = out->ev;
		char why[sizeof(out->why)];

		memcpy(why, out->why, sizeof(why));
		memset(out, 0, sizeof(*out));
		out->ev = e;
		memcpy(out->why, why, sizeof(why));
	}
	return rc;
}
