/*
 * fuzz_image: a frame a node sends back (core/filecheck.c: image_check,
 * image_size), for each format renderfs renders.
 *
 * Input: five bytes of settings, then the file.  Byte 0 picks the format
 * the job asked for (low two bits: PNG, EXR, JPEG, TIFF); bytes 1-2 and
 * 3-4 are the width and height the job asked for (little endian, taken
 * modulo IMAGE_MAX_DIM + 2, so 0 "not known" and one past the cap occur).
 * A file of another format than the one asked for is a case too.
 *
 * Checked beyond memory safety: an accepted frame has a readable size
 * within 1..IMAGE_MAX_DIM a side, equal to the size asked for, and no more
 * bytes than image_max_bytes() allows (the copy cap); a refused one has a
 * one-line reason.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/filecheck.h"
#include "memfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_NAME "fuzz_image"
#include "fuzzcheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum sc_format fmt;
	struct memfile *m;
	int want_w, want_h, w = -1, h = -1, rc, rs;
	char why[512];

	if (size < 5)
		return 0;
	fmt = (enum sc_format)(data[0] & 3);
	want_w = (data[1] | data[2] << 8) % (IMAGE_MAX_DIM + 2);
	want_h = (data[3] | data[4] << 8) % (IMAGE_MAX_DIM + 2);
	m = memfile_put(0, data + 5, size - 5);

	memset(why, 'x', sizeof(why));
	rc = image_check(m->path, fmt, want_w, want_h, why, sizeof(why));
	if (!memchr(why, 0, sizeof(why)))
		FAIL("reason not terminated");
	if (rc && (rc != -EINVAL || !why[0]))
		FAIL("image_check returned %d (%s)", rc, why);
	for (const char *p = why; *p; p++) /* one line of ASCII (filecheck.md) */
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			FAIL("reason holds byte 0x%02x: %s", (unsigned char)*p, why);
	rs = image_size(m->path, fmt, &w, &h);
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "image_check(fmt %d, want %dx%d): %d %s; image_size: %d %dx%d\n", (int)fmt,
			want_w, want_h, rc, why, rs, w, h);
	if (rs == 0 && (w < 1 || h < 1 || w > IMAGE_MAX_DIM || h > IMAGE_MAX_DIM))
		FAIL("image_size gave %dx%d", w, h);
	if (rc == 0) {
		if (want_w > IMAGE_MAX_DIM || want_h > IMAGE_MAX_DIM)
			FAIL("accepted for an impossible job size %dx%d", want_w, want_h);
		if (rs)
			FAIL("accepted, but image_size fails (%d)", rs);
		if ((want_w && w != want_w) || (want_h && h != want_h))
			FAIL("accepted a %dx%d frame for a %dx%d job", w, h, want_w, want_h);
		if (size - 5 > image_max_bytes(fmt, w, h))
			FAIL("accepted %zu bytes for %dx%d, over the copy cap %llu", size - 5, w, h,
			     (unsigned long long)image_max_bytes(fmt, w, h));
	}
	return 0;
}
