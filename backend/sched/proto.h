/*
 * proto: the worker protocol's lines (what sched/worker.py writes on its
 * stdout), parsed into a plain struct.  Pure: no store, no runner, no
 * allocation that outlives the call; the slot (slot.c) acts on struct
 * proto_msg only.
 *
 * A protocol line is "@rfs " followed by one JSON object with a string
 * "ev".  Everything in it is a node's word: every number is range-checked
 * and every text field is made one clean line (util_clean_line) here, so
 * nothing a node sends reaches the store or a status file raw.
 *
 *   ready    {"width","height" 1..IMAGE_MAX_DIM (else unknown: 0),
 *             "fps" (0,1000] (else unknown: 0), "blender", "device",
 *             "why", "devices": [str], "slurm_job" (optional)}
 *   error    {"msg"}
 *   start    {"frame"}
 *   progress {"frame", "fraction" 0..1, "step" 0..2^31 (optional)}
 *   done     {"frame", "secs" 0..PROTO_SECS_MAX (optional),
 *             "sha256" 64 hex (optional), "device" (optional: what the
 *             frame rendered on, "CUDA", "OPTIX", "HIP", "CPU")}
 *   fail     {"frame", "msg"}
 *
 * "frame" is required where listed and must be an integer within
 * -PROTO_FRAME_MAX..PROTO_FRAME_MAX (Blender's MAXFRAME).  Fields other
 * than these are ignored; a listed field of the wrong type or out of range
 * makes the line bad (except ready's size and fps, only hints: unknown).
 */
#ifndef RENDERFS_PROTO_H
#define RENDERFS_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_FRAME_MAX 1048574 /* Blender's MAXFRAME */
#define PROTO_SECS_MAX (366.0 * 86400) /* a year: longer is no render time */
#define PROTO_STEP_MAX 2147483647LL
#define PROTO_MAX_GPUS 64

enum proto_ev {
	PROTO_NONE,     /* not a protocol line: Blender's own text, for the log */
	PROTO_READY,
	PROTO_ERROR,
	PROTO_START,
	PROTO_PROGRESS,
	PROTO_DONE,
	PROTO_FAIL,
};

struct proto_msg {
	enum proto_ev ev;
	int64_t frame; /* start, progress, done, fail */
	/* ready */
	int width, height; /* 0: not given or out of range */
	double fps;        /* 0: not given or out of range */
	char blender[64], device[64], device_why[256];
	int has_blender, has_device, has_why; /* the field was a string */
	char gpu_names[1024]; /* the non-CPU "devices", ", "-joined, cleaned */
	char sched_job[24];   /* "slurm_job": the cluster job holding the slot */
	int ngpus;
	/* progress */
	double fraction; /* 0..1 */
	int64_t step;    /* phase changes so far; 0 when not given */
	/* done */
	double secs; /* < 0: not given */
	char sha256[65]; /* "" when not given; else 64 lowercase hex digits */
	/* error, fail */
	char msg[512];
	/* -EINVAL: why the line is bad */
	char why[128];
};

/*
 * Parse one line (len bytes, no newline; need not be NUL-terminated; may
 * hold NULs).  0 with out filled (out->ev PROTO_NONE for a line that is
 * not a protocol line), or -EINVAL with a reason in out->why for a line
 * that starts "@rfs " but is not a valid message.  -ENOMEM if cJSON could
 * not allocate.
 */
int proto_parse_line(const char *line, size_t len, struct proto_msg *out);

const char *proto_ev_name(enum proto_ev ev);

#endif
