/*
 * fuzz_proto: one line of the worker protocol, as a node sends it
 * (sched/proto.c, proto_parse_line).  Built only once backend/sched/proto.h
 * exists (tests/fuzz/meson.build).
 *
 * The input is the line's bytes, handed over with its length and without a
 * terminating NUL, so a parser that reads past len is caught.  Checked
 * beyond memory safety, against proto.h: 0 or a negative errno; a refused
 * line has a one-line reason; an accepted message has every number within
 * its documented range and every text field terminated and free of control
 * bytes (what reaches the store and the status files).
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/filecheck.h"
#include "sched/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_NAME "fuzz_proto"
#include "fuzzcheck.h"

#define CHECK_TEXT(m, field) check_text(#field, (m)->field, sizeof((m)->field))

static void check_msg(const struct proto_msg *m)
{
	if ((unsigned)m->ev > PROTO_FAIL)
		FAIL("event %d", (int)m->ev);
	if (m->ev != PROTO_NONE && m->ev != PROTO_READY && m->ev != PROTO_ERROR &&
	    (m->frame < -PROTO_FRAME_MAX || m->frame > PROTO_FRAME_MAX))
		FAIL("frame %lld", (long long)m->frame);
	if (m->width < 0 || m->height < 0 || m->width > IMAGE_MAX_DIM || m->height > IMAGE_MAX_DIM)
		FAIL("size %dx%d", m->width, m->height);
	if (!isfinite(m->fps) || m->fps < 0 || m->fps > 1000)
		FAIL("fps %g", m->fps);
	if (m->ngpus < 0 || m->ngpus > PROTO_MAX_GPUS)
		FAIL("%d GPUs", m->ngpus);
	if (m->ev == PROTO_PROGRESS &&
	    (!(m->fraction >= 0 && m->fraction <= 1) || m->step < 0 || m->step > PROTO_STEP_MAX))
		FAIL("progress %g, step %lld", m->fraction, (long long)m->step);
	if (m->ev == PROTO_DONE && (isnan(m->secs) || m->secs > PROTO_SECS_MAX))
		FAIL("secs %g", m->secs);
	if (m->sha256[0]) {
		if (strlen(m->sha256) != 64 || strspn(m->sha256, "0123456789abcdef") != 64)
			FAIL("sha256 '%s'", m->sha256);
	}
	CHECK_TEXT(m, blender);
	CHECK_TEXT(m, device);
	CHECK_TEXT(m, device_why);
	CHECK_TEXT(m, gpu_names);
	CHECK_TEXT(m, msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_msg msg;
	int rc;

	memset(&msg, 0, sizeof(msg));
	rc = proto_parse_line((const char *)data, size, &msg);
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "proto_parse_line: %d ev %s %s\n", rc, proto_ev_name(msg.ev),
			rc ? msg.why : "");
	if (rc == 0) {
		check_msg(&msg);
	} else if (rc == -EINVAL) {
		if (!memchr(msg.why, 0, sizeof(msg.why)) || !msg.why[0])
			FAIL("-EINVAL without a reason");
		check_text("why", msg.why, sizeof(msg.why));
	} else if (rc != -ENOMEM) {
		FAIL("proto_parse_line returned %d", rc);
	}
#ifdef FUZZ_PROTO_MSG_FREE
	proto_msg_free(&msg);
#endif
	return 0;
}
