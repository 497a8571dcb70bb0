/*
 * fuzz_proto: one line of the worker protocol, as a node sends it
 * (sched/proto.c, proto_parse_line).  Built only once backend/sched/proto.h
 * exists (tests/fuzz/meson.build).
 *
 * The input is the line's bytes, handed over with its length and without a
 * terminating NUL, so a parser that reads past len is caught.  Checked
 * beyond memory safety: the result is 0 or a negative errno.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_msg msg;
	int rc;

	memset(&msg, 0, sizeof(msg));
	rc = proto_parse_line((const char *)data, size, &msg);
	if (rc > 0) {
		fprintf(stderr, "fuzz_proto: proto_parse_line returned %d\n", rc);
		abort();
	}
#ifdef FUZZ_PROTO_MSG_FREE
	proto_msg_free(&msg);
#endif
	return 0;
}
