/*
 * fuzz_blend: a dropped .blend, as intake sees it: the structural check
 * (core/filecheck.c, blend_check) and the reader that lists scenes and
 * external files (core/blendfile.c, blendfile_open).
 *
 * The input is the file's bytes (plain, gzip or zstd, as a user drops
 * it).  A plain file whose last byte has low bits 01 or 10 is also checked
 * gzip- or zstd-compressed here, so that mutations of the block structure
 * reach the decompressing readers too (the fuzzer cannot mutate inside a
 * compressed stream usefully).  The reader runs with caps smaller than
 * the defaults so that each input stays cheap; the cap paths are the same.
 *
 * Checked beyond memory safety: the return values are the documented
 * ones, a failure always gives a one-line reason, a success gives a
 * struct whose strings are terminated and whose counts are consistent.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>
#include <zstd.h>

#include "core/blendfile.h"
#include "core/filecheck.h"
#include "memfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_NAME "fuzz_blend"
#include "fuzzcheck.h"

static void check_reason(const char *what, int rc, const char *why, size_t sz)
{
	if (!memchr(why, 0, sz))
		FAIL("%s: reason not terminated", what);
	if (rc && !why[0])
		FAIL("%s: %d without a reason", what, rc);
	/* filecheck.md promises ASCII; the reader's reasons may carry UTF-8
	 * names, but never a control byte. */
	for (const char *p = why; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f ||
		    (!strcmp(what, "blend_check") && (unsigned char)*p > 0x7e))
			FAIL("%s: reason holds byte 0x%02x: %s", what, (unsigned char)*p, why);
}

static void check_blend(const struct memfile *m)
{
	struct blend_info info;
	char why[512];
	int rc = blend_check(m->fd, &info, why, sizeof(why));

	check_reason("blend_check", rc, why, sizeof(why));
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "blend_check: %d %s\n", rc, why);
	if (rc && rc != -EINVAL && rc != -EIO)
		FAIL("blend_check returned %d (%s)", rc, why);
	if (!rc && ((info.ptr_size != 4 && info.ptr_size != 8) || info.compressed < 0 || info.compressed > 2))
		FAIL("blend_check: accepted with pointer size %d, compression %d", info.ptr_size,
		     info.compressed);
}

static void check_terminated(const char *what, const char *s, size_t sz)
{
	if (!memchr(s, 0, sz))
		FAIL("%s is not terminated", what);
}

static void read_blend(const struct memfile *m)
{
	static const struct blendfile_limits lim = {
	    .max_expanded = 64ull << 20,
	    .max_blocks = 1u << 16,
	    .max_kept = 32ull << 20,
	};
	static const char *const fields[][2] = {
	    {"Scene", "r.sfra"},        {"Scene", "id.name"}, {"RenderData", "engine"}, {"Image", "filepath"},
	    {"FileGlobal", "curscene"}, {"Nope", "x"},        {"Scene", "a.b.c.d.e"},
	};
	struct blendfile *bf = (struct blendfile *)1;
	struct blendfile_field f;
	const char *libs[8];
	char err[512], buf[4096];
	int rc = blendfile_open(m->path, &lim, &bf, err, sizeof(err));

	check_reason("blendfile_open", rc, err, sizeof(err));
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "blendfile_open: %d %s; %zu scenes, %zu paths\n", rc, err,
			rc ? 0 : bf->nscenes, rc ? 0 : bf->npaths);
	if (rc) {
		if (bf)
			FAIL("blendfile_open failed (%d) with a result", rc);
		if (rc != -EINVAL && rc != -EFBIG && rc != -ENOMEM)
			FAIL("blendfile_open returned %d (%s)", rc, err);
		return;
	}
	if (!bf)
		FAIL("blendfile_open: 0 without a result");
	if (bf->ptr_size != 4 && bf->ptr_size != 8)
		FAIL("pointer size %d", bf->ptr_size);
	check_terminated("saved_by", bf->saved_by, sizeof(bf->saved_by));
	check_terminated("build_hash", bf->build_hash, sizeof(bf->build_hash));
	if (bf->nscenes && !bf->scenes)
		FAIL("%zu scenes, no array", bf->nscenes);
	for (size_t i = 0; i < bf->nscenes; i++) {
		check_terminated("scene name", bf->scenes[i].name, sizeof(bf->scenes[i].name));
		check_terminated("engine", bf->scenes[i].engine, sizeof(bf->scenes[i].engine));
		check_terminated("camera", bf->scenes[i].camera, sizeof(bf->scenes[i].camera));
	}
	if (bf->npaths && !bf->paths)
		FAIL("%zu paths, no array", bf->npaths);
	for (size_t i = 0; i < bf->npaths; i++) {
		const struct blendfile_path *p = &bf->paths[i];

		if (!p->path || !p->user)
			FAIL("path %zu without its text", i);
		if (p->ntiles && !p->tiles)
			FAIL("path %zu: %zu tiles, no array", i, p->ntiles);
		(void)blendfile_kind_name(p->kind);
		(void)blendfile_source_name(p->source);
		(void)blendfile_resolve(p->path, "/srv/spool/shot.blend", buf, sizeof(buf));
	}
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (blendfile_field(bf, fields[i][0], fields[i][1], &f) == 0 && f.ndims > 4)
			FAIL("field %s.%s: %d dimensions", fields[i][0], fields[i][1], f.ndims);
	for (size_t i = 0, n = blendfile_nstructs(bf); i < n; i++)
		if (!blendfile_struct_name(bf, i))
			FAIL("struct %zu has no name", i);
	size_t nl = blendfile_libraries(bf, libs, 8);
	for (size_t i = 0; i < nl && i < 8; i++)
		if (!libs[i])
			FAIL("library %zu without its path", i);
	blendfile_free(bf);
}

/* data compressed into a malloc'd buffer; NULL on failure. */
static unsigned char *squeeze(const uint8_t *data, size_t size, int zstd, size_t *out)
{
	unsigned char *buf;

	if (zstd) {
		size_t cap = ZSTD_compressBound(size), n;

		if (!(buf = malloc(cap)))
			return NULL;
		n = ZSTD_compress(buf, cap, data, size, 1);
		if (ZSTD_isError(n)) {
			free(buf);
			return NULL;
		}
		*out = n;
		return buf;
	}
	z_stream z = {0};
	size_t cap = size + size / 8 + 256;

	if (!(buf = malloc(cap)))
		return NULL;
	if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
		free(buf);
		return NULL;
	}
	z.next_in = (unsigned char *)data;
	z.avail_in = (uInt)size;
	z.next_out = buf;
	z.avail_out = (uInt)cap;
	if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
		deflateEnd(&z);
		free(buf);
		return NULL;
	}
	*out = z.total_out;
	deflateEnd(&z);
	return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct memfile *m = memfile_put(0, data, size);
	int mode = size ? data[size - 1] & 3 : 0;

	check_blend(m);
	read_blend(m);
	if (size >= 7 && !memcmp(data, "BLENDER", 7) && (mode == 1 || mode == 2)) {
		size_t n;
		unsigned char *z = squeeze(data, size, mode == 2, &n);

		if (z) {
			m = memfile_put(1, z, n);
			free(z);
			check_blend(m);
			read_blend(m);
		}
	}
	return 0;
}
