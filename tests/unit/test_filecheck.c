/*
 * test_filecheck: blend_check(), image_check() and image_size() against
 * files built here, byte by byte, in a private temp dir: plain, gzip and
 * multi-frame zstd .blend streams, minimal PNG/JPEG/TIFF/OpenEXR frames,
 * and every truncation of each.  Nothing outside the C libraries is needed
 * at run time.
 *
 * When FILECHECK_SAMPLES_DIR is set, every *.blend, *.png, *.jpg, *.tif and
 * *.exr in it is checked as well, so real Blender and ffmpeg output can be
 * tried by hand; files whose name contains "trunc" or "bad" must fail,
 * all others must pass.
 *
 * Exit status 0 when every check held; one line per failed check.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>
#include <zstd.h>

#include "core/filecheck.h"
#include "core/util.h"
#include "check.h"
#include "testbuf.h"

static char tmpdir[4096];

/* ------------------------------------------------------------ buffers */

static void put_u8(struct buf *b, unsigned int v)
{
	unsigned char c = (unsigned char)v;

	put(b, &c, 1);
}

static void put16(struct buf *b, unsigned int v, int be)
{
	unsigned char c[2];

	c[be ? 1 : 0] = (unsigned char)v;
	c[be ? 0 : 1] = (unsigned char)(v >> 8);
	put(b, c, 2);
}

static void put32(struct buf *b, uint32_t v, int be)
{
	unsigned char c[4];

	for (int i = 0; i < 4; i++)
		c[be ? 3 - i : i] = (unsigned char)(v >> (8 * i));
	put(b, c, 4);
}

static void put64(struct buf *b, uint64_t v, int be)
{
	put32(b, (uint32_t)(be ? v >> 32 : v), be);
	put32(b, (uint32_t)(be ? v : v >> 32), be);
}

static void put_str(struct buf *b, const char *s)
{
	put(b, s, strlen(s) + 1);
}

/* Deterministic bytes that do not compress to nothing. */
static void put_noise(struct buf *b, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		put_u8(b, (seed >> 16) & 0xff);
	}
}

static void buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* ------------------------------------------------------------ files */

static const char *tpath(const char *name)
{
	static char p[8192];

	snprintf(p, sizeof(p), "%s/%s", tmpdir, name);
	return p;
}

static void write_file(const char *path, const void *data, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0 || (n && write(fd, data, n) != (ssize_t)n) || close(fd)) {
		perror(path);
		exit(2);
	}
}

static int one_line(const char *why)
{
	return why[0] && !strchr(why, '\n') && !strchr(why, '\r');
}

static int blend_file(const char *path, struct blend_info *info, char *why, size_t whysz)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int ret;

	if (fd < 0) {
		snprintf(why, whysz, "open: %s", strerror(errno));
		return -errno;
	}
	ret = blend_check(fd, info, why, whysz);
	close(fd);
	return ret;
}

static int blend_buf(const struct buf *b, size_t n, struct blend_info *info, char *why, size_t whysz)
{
	const char *p = tpath("cut.blend");

	write_file(p, b->p, n);
	return blend_file(p, info, why, whysz);
}

/* ------------------------------------------------------------ blend */

struct blk {
	const char *code;
	int32_t len;
};

static const struct blk blend_blocks[] = {
    {"REND", 72}, {"TEST", 300}, {"GLOB", 0}, {"DATA", 5000}, {"DNA1", 1200},
};

static void make_blend(struct buf *b, int ptr8, int be, int large, int endb)
{
	size_t nb = sizeof(blend_blocks) / sizeof(blend_blocks[0]);

	if (large)
		put(b, be ? "BLENDER17-01V0502" : "BLENDER17-01v0502", 17);
	else
		put(b, ptr8 ? (be ? "BLENDER-V304" : "BLENDER-v304") : (be ? "BLENDER_V279" : "BLENDER_v279"),
		    12);
	for (size_t i = 0; i <= nb; i++) {
		const char *code = i < nb ? blend_blocks[i].code : "ENDB";
		int32_t len = i < nb ? blend_blocks[i].len : 0;

		if (i == nb && !endb)
			break;
		put(b, code, 4);
		if (large) {
			put32(b, 7, be);                     /* SDNAnr */
			put64(b, 0x7ffe12345678ull + i, be); /* old */
			put64(b, (uint64_t)len, be);
			put64(b, 1, be); /* nr */
		} else {
			put32(b, (uint32_t)len, be);
			if (ptr8)
				put64(b, 0x7ffe12345678ull + i, be);
			else
				put32(b, 0x12345678u + (uint32_t)i, be);
			put32(b, 7, be);
			put32(b, 1, be);
		}
		put_noise(b, (size_t)len, (uint32_t)i + 1);
	}
}

static void zstd_frame(const unsigned char *p, size_t n, struct buf *out)
{
	size_t cap = ZSTD_compressBound(n);
	unsigned char *tmp = malloc(cap);
	size_t r;

	if (!tmp)
		exit(2);
	r = ZSTD_compress(tmp, cap, p, n, 3);
	if (ZSTD_isError(r))
		exit(2);
	put(out, tmp, r);
	free(tmp);
}

/*
 * Like Blender 3.x: several frames, split mid-block, then a skippable
 * frame standing in for its seek table.
 */
static void zstd_buf(const struct buf *in, struct buf *out)
{
	size_t cut1 = in->n / 3, cut2 = 2 * in->n / 3;

	zstd_frame(in->p, cut1, out);
	zstd_frame(in->p + cut1, cut2 - cut1, out);
	zstd_frame(in->p + cut2, in->n - cut2, out);
	put32(out, 0x184d2a5eu, 0);
	put32(out, 9, 0);
	put_noise(out, 9, 99);
}

/*
 * A .blend whose one DATA block is `zeros` bytes of zeros, then ENDB:
 * a valid file that compresses to almost nothing.  Streamed into path
 * as gzip (gz) or zstd, never held in memory whole.
 */
static void make_bomb(const char *path, int gz, uint64_t zeros)
{
	static unsigned char zero[1 << 20];
	unsigned char out[1 << 16];
	struct buf head = {0}, tail = {0};
	FILE *f = fopen(path, "wb");
	ZSTD_CCtx *zc = gz ? NULL : ZSTD_createCCtx();
	z_stream z;

	if (!f || (!gz && !zc))
		exit(2);
	put(&head, "BLENDER-v304", 12);
	put(&head, "DATA", 4);
	put32(&head, (uint32_t)zeros, 0);
	put64(&head, 0x7ffe12345678ull, 0);
	put32(&head, 7, 0);
	put32(&head, 1, 0);
	put(&tail, "ENDB", 4);
	put_fill(&tail, 0, 20);
	memset(&z, 0, sizeof(z));
	if (gz && deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY) != Z_OK)
		exit(2);
	if (zc)
		ZSTD_CCtx_setParameter(zc, ZSTD_c_compressionLevel, 1);
	for (uint64_t left = zeros + 2;;) {
		/* head, the zeros a MiB at a time, tail, then the end */
		const unsigned char *p;
		size_t n;
		int last = 0;

		if (left == zeros + 2) {
			p = head.p, n = head.n;
		} else if (left > 1) {
			n = left - 1 > sizeof(zero) ? sizeof(zero) : (size_t)(left - 1);
			p = zero;
		} else {
			p = tail.p, n = tail.n, last = 1;
		}
		if (gz) {
			int ret;

			z.next_in = (unsigned char *)p;
			z.avail_in = (uInt)n;
			do {
				z.next_out = out;
				z.avail_out = sizeof(out);
				ret = deflate(&z, last ? Z_FINISH : Z_NO_FLUSH);
				fwrite(out, 1, sizeof(out) - z.avail_out, f);
			} while (z.avail_out == 0 || (last && ret == Z_OK));
		} else {
			ZSTD_inBuffer in = {p, n, 0};
			size_t rem;

			do {
				ZSTD_outBuffer o = {out, sizeof(out), 0};

				rem = ZSTD_compressStream2(zc, &o, &in, last ? ZSTD_e_end : ZSTD_e_continue);
				if (ZSTD_isError(rem))
					exit(2);
				fwrite(out, 1, o.pos, f);
			} while (last ? rem != 0 : in.pos < in.size);
		}
		if (last)
			break;
		left -= left == zeros + 2 ? 1 : n;
	}
	if (gz)
		deflateEnd(&z);
	ZSTD_freeCCtx(zc);
	fclose(f);
	buf_free(&head);
	buf_free(&tail);
}

/* Decompression is bounded: a small file that expands past its limit is
 * refused, quickly, with a reason that says so. */
static void test_blend_bombs(void)
{
	struct stat st;
	char why[512];
	int64_t t0;
	int ret;

	CHECK(blend_max_expanded(1 << 20) == BLEND_RATIO_FLOOR, "floor: %llu",
	      (unsigned long long)blend_max_expanded(1 << 20));
	CHECK(blend_max_expanded(100ull << 20) == 6400ull << 20, "64 times");
	CHECK(blend_max_expanded(1ull << 30) == BLEND_MAX_EXPANDED &&
		  blend_max_expanded(UINT64_MAX) == BLEND_MAX_EXPANDED,
	      "cap");

	for (int gz = 0; gz < 2; gz++) {
		const char *kind = gz ? "gzip" : "zstd";
		char want[64];

		/* Under the floor: a valid file, accepted. */
		make_bomb(tpath("small.blend"), gz, 64ull << 20);
		ret = blend_file(tpath("small.blend"), NULL, why, sizeof(why));
		CHECK(ret == 0, "%s: 64 MiB of zeros refused: '%s'", kind, why);
		/* 1 GiB of zeros in a few hundred KiB. */
		make_bomb(tpath("bomb.blend"), gz, 1ull << 30);
		CHECK(stat(tpath("bomb.blend"), &st) == 0 && st.st_size < (4 << 20), "%s bomb is %lld bytes",
		      kind, (long long)st.st_size);
		t0 = util_mono_ms();
		ret = blend_file(tpath("bomb.blend"), NULL, why, sizeof(why));
		snprintf(want, sizeof(want), "refused: this %s .blend expands to more than %llu bytes", kind,
			 (unsigned long long)blend_max_expanded((uint64_t)st.st_size));
		CHECK(ret == -EINVAL && !strncmp(why, want, strlen(want)) && one_line(why),
		      "%s bomb: %d '%s'", kind, ret, why);
		CHECK(util_mono_ms() - t0 < 5000, "%s bomb took %lld ms to refuse", kind,
		      (long long)(util_mono_ms() - t0));
		unlink(tpath("small.blend"));
		unlink(tpath("bomb.blend"));
	}
}

/*
 * Every proper prefix of a good file must fail, with a one-line reason,
 * except ok_cut: a zstd file cut just before its seek table is a complete
 * stream that Blender reads too (it falls back to streaming).
 */
static void blend_cuts(const char *what, const struct buf *b, size_t from_trunc, size_t ok_cut)
{
	char why[256];
	int bad = 0;

	for (size_t cut = 0; cut < b->n; cut++) {
		int ret = blend_buf(b, cut, NULL, why, sizeof(why));

		if (cut == ok_cut) {
			CHECK(ret == 0, "%s cut at %zu: '%s'", what, cut, why);
			continue;
		}
		if (ret != -EINVAL || !one_line(why) || (cut == 0 && strcmp(why, "empty file (0 bytes)")) ||
		    (cut >= from_trunc && !strstr(why, "truncated") && !strstr(why, "no ENDB"))) {
			if (bad++ < 5)
				CHECK(0, "%s cut at %zu of %zu: ret %d, '%s'", what, cut, b->n, ret, why);
		}
	}
	CHECK(bad == 0, "%s: %d bad truncations", what, bad);
}

static void test_blend(void)
{
	struct buf plain = {0}, gz = {0}, zs = {0}, t = {0};
	struct blend_info info;
	char why[256], want[256];
	int ret, fd;

	make_blend(&plain, 1, 0, 0, 1);
	ret = blend_buf(&plain, plain.n, &info, why, sizeof(why));
	CHECK(ret == 0, "plain blend: %d '%s'", ret, why);
	CHECK(info.compressed == 0 && info.version == 304 && info.ptr_size == 8 && !info.big_endian,
	      "plain info %d %d %d %d", info.compressed, info.version, info.ptr_size, info.big_endian);

	/* The file offset is neither used nor moved. */
	fd = open(tpath("cut.blend"), O_RDONLY | O_CLOEXEC);
	lseek(fd, 17, SEEK_SET);
	ret = blend_check(fd, NULL, why, sizeof(why));
	CHECK(ret == 0 && lseek(fd, 0, SEEK_CUR) == 17, "offset moved or check failed: %d '%s'", ret, why);
	close(fd);

	blend_cuts("plain", &plain, 12, SIZE_MAX);
	/* A cut inside the DATA block, checked word for word. */
	{
		size_t data_at = 12 + 3 * 24 + 72 + 300;

		ret = blend_buf(&plain, data_at + 100, NULL, why, sizeof(why));
		snprintf(want, sizeof(want),
			 "truncated Blender file: block at "
			 "byte %zu runs past the end (file is %zu bytes)",
			 data_at, data_at + 100);
		CHECK(ret == -EINVAL && !strcmp(why, want), "got '%s' want '%s'", why, want);
	}

	/* Trailing bytes after ENDB do not matter for a plain file. */
	t.n = 0;
	put(&t, plain.p, plain.n);
	put_fill(&t, 0, 100);
	ret = blend_buf(&t, t.n, NULL, why, sizeof(why));
	CHECK(ret == 0, "trailing bytes after ENDB: '%s'", why);

	gzip_buf(&plain, &gz);
	ret = blend_buf(&gz, gz.n, &info, why, sizeof(why));
	CHECK(ret == 0 && info.compressed == 1 && info.version == 304, "gzip blend: %d '%s' compressed %d",
	      ret, why, info.compressed);
	blend_cuts("gzip", &gz, 10, SIZE_MAX);

	zstd_buf(&plain, &zs);
	ret = blend_buf(&zs, zs.n, &info, why, sizeof(why));
	CHECK(ret == 0 && info.compressed == 2 && info.ptr_size == 8, "zstd blend: %d '%s' compressed %d",
	      ret, why, info.compressed);
	blend_cuts("zstd", &zs, 4, zs.n - 17);

	/* A damaged second frame is corrupt, not truncated. */
	t.n = 0;
	put(&t, zs.p, zs.n);
	{
		size_t f1 = ZSTD_findFrameCompressedSize(zs.p, zs.n);

		t.p[f1] ^= 0x55;
		ret = blend_buf(&t, t.n, NULL, why, sizeof(why));
		CHECK(ret == -EINVAL && strstr(why, "corrupt zstd"), "corrupt zstd: %d '%s'", ret, why);
	}

	/* Other layouts: 4-byte pointers big-endian, Blender 5 large heads. */
	t.n = 0;
	make_blend(&t, 0, 1, 0, 1);
	ret = blend_buf(&t, t.n, &info, why, sizeof(why));
	CHECK(ret == 0 && info.ptr_size == 4 && info.big_endian && info.version == 279,
	      "BLENDER_V279: %d '%s'", ret, why);
	blend_cuts("ptr4 big-endian", &t, 12, SIZE_MAX);

	t.n = 0;
	make_blend(&t, 1, 0, 1, 1);
	ret = blend_buf(&t, t.n, &info, why, sizeof(why));
	CHECK(ret == 0 && info.ptr_size == 8 && info.version == 502, "BLENDER17: %d '%s' version %d", ret,
	      why, info.version);
	blend_cuts("large bhead", &t, 17, SIZE_MAX);

	/* No ENDB: the blocks end cleanly at EOF. */
	t.n = 0;
	make_blend(&t, 1, 0, 0, 0);
	ret = blend_buf(&t, t.n, NULL, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "Blender file has no ENDB block"), "no ENDB: '%s'", why);

	/* A negative length stops the walk. */
	t.n = 0;
	put(&t, "BLENDER-v304", 12);
	put(&t, "REND", 4);
	put32(&t, (uint32_t)-5, 0);
	put64(&t, 1, 0);
	put32(&t, 0, 0);
	put32(&t, 1, 0);
	put_fill(&t, 0, 64);
	ret = blend_buf(&t, t.n, NULL, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "negative length -5") && strstr(why, "at byte 12"),
	      "negative len: '%s'", why);

	/* Huge length: runs past the end, no allocation. */
	t.n = 0;
	put(&t, "BLENDER-v304", 12);
	put(&t, "DATA", 4);
	put32(&t, 0x7fffffffu, 0);
	put64(&t, 1, 0);
	put32(&t, 0, 0);
	put32(&t, 1, 0);
	ret = blend_buf(&t, t.n, NULL, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "block at byte 12 runs past"), "huge len: '%s'", why);

	/* Not Blender files. */
	t.n = 0;
	put(&t, "PK\x03\x04\x14\x00\x00\x00", 8);
	put_noise(&t, 100, 5);
	ret = blend_buf(&t, t.n, NULL, why, sizeof(why));
	CHECK(ret == -EINVAL && !strcmp(why, "not a Blender file (starts with 'PK\\x03\\x04')"), "zip: '%s'",
	      why);

	t.n = 0;
	put(&t, "BLEND", 5);
	ret = blend_buf(&t, t.n, NULL, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "truncated"), "short: '%s'", why);

	t.n = 0;
	put(&t, "BLENDER?v304", 12);
	put_fill(&t, 0, 40);
	ret = blend_buf(&t, t.n, NULL, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "unrecognised Blender file header"), "odd header: '%s'", why);

	/* gzip of something else says so. */
	{
		struct buf txt = {0};

		put(&txt, "hello\nworld\n", 12);
		t.n = 0;
		gzip_buf(&txt, &t);
		ret = blend_buf(&t, t.n, NULL, why, sizeof(why));
		CHECK(ret == -EINVAL && one_line(why) &&
			  !strcmp(why, "not a Blender file (gzip data starts with "
				       "'hell')"),
		      "gzip text: '%s'", why);
		buf_free(&txt);
	}

	buf_free(&plain);
	buf_free(&gz);
	buf_free(&zs);
	buf_free(&t);
}

/* ------------------------------------------------------------ images */

static void put_png_chunk(struct buf *b, const char *type, const unsigned char *data, size_t n)
{
	uLong crc = crc32(0, (const Bytef *)type, 4);

	if (n)
		crc = crc32(crc, data, (uInt)n);
	put32(b, (uint32_t)n, 1);
	put(b, type, 4);
	put(b, data, n);
	put32(b, (uint32_t)crc, 1);
}

static void make_png(struct buf *b, uint32_t w, uint32_t h, size_t extra)
{
	unsigned char ihdr[13];
	struct buf raw = {0}, tmp = {0};
	uLongf zn;
	unsigned char *z;

	put(b, "\x89PNG\r\n\x1a\n", 8);
	put32(&tmp, w, 1);
	put32(&tmp, h, 1);
	memcpy(ihdr, tmp.p, 8);
	ihdr[8] = 8; /* bit depth */
	ihdr[9] = 2; /* RGB */
	ihdr[10] = ihdr[11] = ihdr[12] = 0;
	put_png_chunk(b, "IHDR", ihdr, 13);
	if (extra) {
		tmp.n = 0;
		put_noise(&tmp, extra, 3);
		put_png_chunk(b, "zTXt", tmp.p, tmp.n);
	}
	for (uint32_t y = 0; y < h; y++) {
		put_u8(&raw, 0);
		put_noise(&raw, 3 * w, y);
	}
	zn = compressBound(raw.n);
	z = malloc(zn);
	if (!z || compress(z, &zn, raw.p, raw.n) != Z_OK)
		exit(2);
	put_png_chunk(b, "IDAT", z, zn);
	put_png_chunk(b, "IEND", NULL, 0);
	free(z);
	buf_free(&raw);
	buf_free(&tmp);
}

static void make_jpeg(struct buf *b, int w, int h, int progressive)
{
	static const unsigned char app0[] = {
	    0xff, 0xe0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0,
	};

	put(b, "\xff\xd8", 2);
	put(b, app0, sizeof(app0));
	/* DQT and a DHT before the frame: DHT (C4) must not pass as SOF. */
	put(b, "\xff\xdb\x00\x43\x00", 5);
	put_fill(b, 1, 64);
	put(b, "\xff\xc4\x00\x14\x00", 5);
	put_fill(b, 0x40, 17);
	put(b, progressive ? "\xff\xc2" : "\xff\xc0", 2);
	put16(b, 17, 1);
	put_u8(b, 8);
	put16(b, (unsigned int)h, 1);
	put16(b, (unsigned int)w, 1);
	put(b, "\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01", 10);
	put(b, "\xff\xda\x00\x0c\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00", 14);
	/* Entropy data: bytes that never form FF D9. */
	for (int i = 0; i < 300; i++)
		put_u8(b, i % 7 == 0 ? 0xff : (unsigned int)(i * 37) & 0x7f);
	put(b, "\xff\x00", 2);
	put(b, "\xff\xd9", 2);
}

/* Grayscale, 8-bit, uncompressed, `nstrips` strips. */
static void make_tiff(struct buf *b, int be, uint32_t w, uint32_t h, uint32_t nstrips, int short_dims)
{
	uint32_t rps = (h + nstrips - 1) / nstrips;
	uint32_t nent = 9, ifd = 8;
	uint32_t arr = ifd + 2 + 12 * nent + 4;
	uint32_t data = arr + (nstrips > 1 ? 8 * nstrips : 0);

	put(b, be ? "MM\0*" : "II*\0", 4);
	put32(b, ifd, be);
	put16(b, nent, be);
#define ENT(tag, type, count, val)                         \
	do {                                               \
		put16(b, tag, be);                         \
		put16(b, type, be);                        \
		put32(b, count, be);                       \
		if ((type) == 3 && (count) == 1) {         \
			put16(b, (unsigned int)(val), be); \
			put16(b, 0, be);                   \
		} else {                                   \
			put32(b, (uint32_t)(val), be);     \
		}                                          \
	} while (0)
	ENT(256, short_dims ? 3 : 4, 1, w);
	ENT(257, short_dims ? 3 : 4, 1, h);
	ENT(258, 3, 1, 8);
	ENT(259, 3, 1, 1);
	ENT(262, 3, 1, 1);
	ENT(273, 4, nstrips, nstrips > 1 ? arr : data);
	ENT(277, 3, 1, 1);
	ENT(278, 4, 1, rps);
	ENT(279, 4, nstrips, nstrips > 1 ? arr + 4 * nstrips : w * h);
#undef ENT
	put32(b, 0, be);
	if (nstrips > 1) {
		for (uint32_t s = 0; s < nstrips; s++)
			put32(b, data + s * rps * w, be);
		for (uint32_t s = 0; s < nstrips; s++) {
			uint32_t rows = h - s * rps < rps ? h - s * rps : rps;

			put32(b, rows * w, be);
		}
	}
	put_noise(b, (size_t)w * h, 11);
}

static void exr_attr(struct buf *b, const char *name, const char *type, const struct buf *v)
{
	put_str(b, name);
	put_str(b, type);
	put32(b, (uint32_t)v->n, 0);
	put(b, v->p, v->n);
}

/* Scanline (or tiled) half RGB with the data window at (x0, y0). */
static void make_exr(struct buf *b, int w, int h, int compression, int tiled, int x0, int y0)
{
	static const int lpc[] = {1, 1, 1, 16, 32, 16, 32, 32, 32, 256};
	struct buf v = {0};
	int lines = lpc[compression];
	uint32_t nchunks = (uint32_t)((h + lines - 1) / lines);
	uint64_t at;

	put32(b, 20000630u, 0);
	put32(b, 2 | (tiled ? 0x200 : 0), 0);
	for (const char *c = "BGR"; *c; c++) {
		char name[2] = {*c, 0};

		put_str(&v, name);
		put32(&v, 1, 0); /* HALF */
		put32(&v, 0, 0); /* pLinear, reserved */
		put32(&v, 1, 0);
		put32(&v, 1, 0);
	}
	put_u8(&v, 0);
	exr_attr(b, "channels", "chlist", &v);
	v.n = 0;
	put_u8(&v, (unsigned int)compression);
	exr_attr(b, "compression", "compression", &v);
	v.n = 0;
	put32(&v, (uint32_t)x0, 0);
	put32(&v, (uint32_t)y0, 0);
	put32(&v, (uint32_t)(x0 + w - 1), 0);
	put32(&v, (uint32_t)(y0 + h - 1), 0);
	exr_attr(b, "dataWindow", "box2i", &v);
	exr_attr(b, "displayWindow", "box2i", &v);
	v.n = 0;
	put_u8(&v, 0);
	exr_attr(b, "lineOrder", "lineOrder", &v);
	v.n = 0;
	put32(&v, 0x3f800000u, 0);
	exr_attr(b, "pixelAspectRatio", "float", &v);
	exr_attr(b, "screenWindowWidth", "float", &v);
	v.n = 0;
	put64(&v, 0, 0);
	exr_attr(b, "screenWindowCenter", "v2f", &v);
	if (tiled) {
		v.n = 0;
		put32(&v, 16, 0);
		put32(&v, 16, 0);
		put_u8(&v, 0);
		exr_attr(b, "tiles", "tiledesc", &v);
	}
	put_u8(b, 0);
	buf_free(&v);
	if (tiled) {
		/* Not walked by the checker; a token table and tile. */
		put64(b, b->n + 8, 0);
		put_noise(b, 64, 4);
		return;
	}
	at = b->n + 8ull * nchunks;
	for (uint32_t i = 0; i < nchunks; i++) {
		int rows = h - (int)i * lines < lines ? h - (int)i * lines : lines;
		uint64_t size = compression ? 40 : (uint64_t)rows * w * 6;

		put64(b, at, 0);
		at += 8 + size;
	}
	for (uint32_t i = 0; i < nchunks; i++) {
		int rows = h - (int)i * lines < lines ? h - (int)i * lines : lines;
		uint32_t size = compression ? 40 : (uint32_t)(rows * w * 6);

		put32(b, (uint32_t)(y0 + (int)i * lines), 0);
		put32(b, size, 0);
		put_noise(b, size, i);
	}
}

static int img_buf(const struct buf *b, size_t n, enum sc_format fmt, int w, int h, char *why, size_t whysz)
{
	const char *p = tpath("cut.img");

	write_file(p, b->p, n);
	return image_check(p, fmt, w, h, why, whysz);
}

static void img_cuts(const char *what, const struct buf *b, enum sc_format fmt, int w, int h, size_t from)
{
	char why[256];
	int bad = 0;

	for (size_t cut = from; cut < b->n; cut++) {
		int ret = img_buf(b, cut, fmt, w, h, why, sizeof(why));

		if (ret != -EINVAL || !one_line(why) || (cut == 0 && strcmp(why, "empty file (0 bytes)"))) {
			if (bad++ < 5)
				CHECK(0, "%s cut at %zu of %zu: ret %d, '%s'", what, cut, b->n, ret, why);
		}
	}
	CHECK(bad == 0, "%s: %d bad truncations", what, bad);
}

/* A good image passes, sizes right, and fails with other dims. */
static void img_good(const char *what, const struct buf *b, enum sc_format fmt, int w, int h)
{
	char why[256], want[128];
	int ret, gw = -1, gh = -1;

	ret = img_buf(b, b->n, fmt, w, h, why, sizeof(why));
	CHECK(ret == 0, "%s: %d '%s'", what, ret, why);
	ret = img_buf(b, b->n, fmt, 0, 0, why, sizeof(why));
	CHECK(ret == 0, "%s any size: %d '%s'", what, ret, why);
	ret = image_size(tpath("cut.img"), fmt, &gw, &gh);
	CHECK(ret == 0 && gw == w && gh == h, "%s image_size: %d %dx%d", what, ret, gw, gh);
	ret = img_buf(b, b->n, fmt, w * 2, h * 2, why, sizeof(why));
	snprintf(want, sizeof(want), "image is %dx%d, expected %dx%d", w, h, w * 2, h * 2);
	CHECK(ret == -EINVAL && !strcmp(why, want), "%s dims: '%s'", what, why);
}

static void test_images(void)
{
	struct buf b = {0}, t = {0};
	char why[256];
	int ret;

	/* PNG */
	make_png(&b, 32, 24, 0);
	img_good("png", &b, SC_FORMAT_PNG, 32, 24);
	img_cuts("png", &b, SC_FORMAT_PNG, 32, 24, 0);
	ret = img_buf(&b, b.n, SC_FORMAT_JPEG, 32, 24, why, sizeof(why));
	CHECK(ret == -EINVAL && !strcmp(why, "not a JPEG file (starts with '\\x89PNG')"), "png as jpeg: '%s'",
	      why);
	ret = img_buf(&b, b.n - 5, SC_FORMAT_PNG, 32, 24, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "truncated PNG: chunk at byte"), "png cut: '%s'", why);
	t.n = 0;
	make_png(&t, 1, 1, 1100 * 1024);
	ret = img_buf(&t, t.n, SC_FORMAT_PNG, 1, 1, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "implausibly large"), "huge 1x1 png: '%s'", why);
	/* A length field of 2^31 and more is damage, not a big chunk. */
	t.n = 0;
	put(&t, b.p, 33);
	put32(&t, 0x80000000u, 1);
	put(&t, "IDAT", 4);
	put_fill(&t, 0, 64);
	ret = img_buf(&t, t.n, SC_FORMAT_PNG, 32, 24, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "damaged"), "png len: '%s'", why);

	/* JPEG, baseline and progressive */
	b.n = 0;
	make_jpeg(&b, 64, 48, 0);
	img_good("jpeg", &b, SC_FORMAT_JPEG, 64, 48);
	img_cuts("jpeg", &b, SC_FORMAT_JPEG, 64, 48, 0);
	t.n = 0;
	put(&t, b.p, b.n);
	put_fill(&t, 0, 16);
	ret = img_buf(&t, t.n, SC_FORMAT_JPEG, 64, 48, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "EOI"), "jpeg padding: '%s'", why);
	b.n = 0;
	make_jpeg(&b, 1920, 1080, 1);
	img_good("progressive jpeg", &b, SC_FORMAT_JPEG, 1920, 1080);

	/* TIFF: both byte orders, SHORT and LONG dims, one and many strips */
	for (int v = 0; v < 4; v++) {
		char what[64];

		snprintf(what, sizeof(what), "tiff %s %s", v & 1 ? "MM" : "II",
			 v & 2 ? "short/1 strip" : "long/5 strips");
		b.n = 0;
		make_tiff(&b, v & 1, 40, 30, v & 2 ? 1 : 5, v & 2);
		img_good(what, &b, SC_FORMAT_TIFF, 40, 30);
		img_cuts(what, &b, SC_FORMAT_TIFF, 40, 30, 0);
	}
	b.n = 0;
	make_tiff(&b, 0, 40, 30, 5, 0);
	ret = img_buf(&b, b.n - 1, SC_FORMAT_TIFF, 40, 30, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "truncated TIFF: strip 4"), "tiff cut: '%s'", why);

	/* OpenEXR: NONE (1 line per chunk), ZIP (16), DWAB (256), offset origin */
	{
		static const int comps[] = {0, 3, 4, 9};

		for (size_t i = 0; i < sizeof(comps) / sizeof(comps[0]); i++) {
			char what[64];

			snprintf(what, sizeof(what), "exr compression %d", comps[i]);
			b.n = 0;
			make_exr(&b, 20, 37, comps[i], 0, -3, 5);
			img_good(what, &b, SC_FORMAT_EXR, 20, 37);
			img_cuts(what, &b, SC_FORMAT_EXR, 20, 37, 0);
		}
	}
	/* A zeroed offset table (the writer died before filling it). */
	b.n = 0;
	make_exr(&b, 8, 4, 0, 0, 0, 0);
	t.n = 0;
	put(&t, b.p, b.n);
	memset(t.p + (b.n - 4 * (8 + 8 * 6) - 4 * 8), 0, 8);
	ret = img_buf(&t, t.n, SC_FORMAT_EXR, 8, 4, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "chunk 0 of 4 has offset 0"), "exr zero offset: '%s'", why);
	/* Tiled: header only is checked. */
	b.n = 0;
	make_exr(&b, 64, 48, 3, 1, 0, 0);
	img_good("tiled exr", &b, SC_FORMAT_EXR, 64, 48);
	ret = img_buf(&b, 100, SC_FORMAT_EXR, 64, 48, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "truncated OpenEXR"), "tiled exr header cut: '%s'", why);

	/* Wrong kind of file for each format. */
	t.n = 0;
	put(&t, "PK\x03\x04", 4);
	put_noise(&t, 200, 8);
	for (int f = SC_FORMAT_PNG; f <= SC_FORMAT_TIFF; f++) {
		ret = img_buf(&t, t.n, (enum sc_format)f, 0, 0, why, sizeof(why));
		CHECK(ret == -EINVAL && strstr(why, "starts with 'PK\\x03\\x04'"), "zip as format %d: '%s'",
		      f, why);
	}
	ret = image_check(tpath("does-not-exist.png"), SC_FORMAT_PNG, 0, 0, why, sizeof(why));
	CHECK(ret == -ENOENT, "missing file: %d", ret);

	buf_free(&b);
	buf_free(&t);
}

/* A PNG signature and IHDR claiming w x h, nothing else. */
static void png_head(struct buf *b, uint32_t w, uint32_t h)
{
	unsigned char ihdr[13] = {0};
	struct buf tmp = {0};

	put(b, "\x89PNG\r\n\x1a\n", 8);
	put32(&tmp, w, 1);
	put32(&tmp, h, 1);
	memcpy(ihdr, tmp.p, 8);
	ihdr[8] = 8;
	ihdr[9] = 6; /* RGBA */
	put_png_chunk(b, "IHDR", ihdr, 13);
	buf_free(&tmp);
}

/* Files a hostile node would send: the job's size decides, and every
 * length the file states is bounded before it is used. */
static void test_hostile_images(void)
{
	struct buf b = {0};
	char why[256];
	int64_t t0;
	int ret, fd;

	/* 65536 x 65536 when the job asked for 64 x 64; and with the size
	 * unknown (0), the hard cap still refuses it. */
	png_head(&b, 65536, 65536);
	put32(&b, 300u << 20, 1); /* an IDAT of 300 MB ... */
	put(&b, "IDAT", 4);
	put_fill(&b, 0, 4096); /* ... of which 4 KiB are here */
	ret = img_buf(&b, b.n, SC_FORMAT_PNG, 64, 64, why, sizeof(why));
	CHECK(ret == -EINVAL && !strcmp(why, "image is 65536x65536, expected 64x64"),
	      "65536 png for 64: '%s'", why);
	ret = img_buf(&b, b.n, SC_FORMAT_PNG, 0, 0, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "65536x65536, over the limit of 32768 pixels a side"),
	      "65536 png, size unknown: '%s'", why);
	ret = image_size(tpath("cut.img"), SC_FORMAT_PNG, NULL, NULL);
	CHECK(ret == -EINVAL, "image_size accepted a 65536 a side header: %d", ret);

	/* The right size, a 300 MB chunk length in a small file. */
	b.n = 0;
	png_head(&b, 64, 64);
	put32(&b, 300u << 20, 1);
	put(&b, "IDAT", 4);
	put_fill(&b, 0, 4096);
	ret = img_buf(&b, b.n, SC_FORMAT_PNG, 64, 64, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "truncated PNG: chunk at byte 33 runs past the end"),
	      "300 MB chunk in a 4 KB file: '%s'", why);
	/* A metadata chunk of 2^31-1 is refused by the cap, not the file. */
	b.n = 0;
	png_head(&b, 64, 64);
	put32(&b, 0x7fffffffu, 1);
	put(&b, "tEXt", 4);
	put_fill(&b, 0, 64);
	ret = img_buf(&b, b.n, SC_FORMAT_PNG, 64, 64, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "PNG is damaged: chunk at byte 33 has length 2147483647"),
	      "huge tEXt length: '%s'", why);

	/* A 64 x 64 PNG that is 300 MB (sparse): refused from its size,
	 * before a byte of it is walked. */
	b.n = 0;
	png_head(&b, 64, 64);
	write_file(tpath("sparse.png"), b.p, b.n);
	fd = open(tpath("sparse.png"), O_WRONLY);
	CHECK(fd >= 0 && ftruncate(fd, 300ll << 20) == 0, "make a sparse file");
	if (fd >= 0)
		close(fd);
	t0 = util_mono_ms();
	ret = image_check(tpath("sparse.png"), SC_FORMAT_PNG, 64, 64, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "implausibly large for 64x64"), "300 MB 64x64 png: '%s'", why);
	CHECK(util_mono_ms() - t0 < 1000, "the 300 MB png took %lld ms", (long long)(util_mono_ms() - t0));
	ret = image_check(tpath("sparse.png"), SC_FORMAT_PNG, 0, 0, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "implausibly large for 64x64"), "300 MB png, size unknown: '%s'",
	      why);
	unlink(tpath("sparse.png"));

	/* JPEG and EXR headers saying otherwise than the job. */
	b.n = 0;
	make_jpeg(&b, 65535, 65535, 0);
	ret = img_buf(&b, b.n, SC_FORMAT_JPEG, 64, 48, why, sizeof(why));
	CHECK(ret == -EINVAL && !strcmp(why, "image is 65535x65535, expected 64x48"), "jpeg for 64x48: '%s'",
	      why);
	ret = img_buf(&b, b.n, SC_FORMAT_JPEG, 0, 0, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "over the limit of 32768"), "jpeg 65535, size unknown: '%s'",
	      why);
	b.n = 0;
	make_jpeg(&b, 640, 480, 0);
	ret = img_buf(&b, b.n, SC_FORMAT_JPEG, 64, 48, why, sizeof(why));
	CHECK(ret == -EINVAL && !strcmp(why, "image is 640x480, expected 64x48"), "jpeg 640 for 64: '%s'",
	      why);
	b.n = 0;
	make_exr(&b, 40000, 1, 3, 0, 0, 0);
	ret = img_buf(&b, b.n, SC_FORMAT_EXR, 0, 0, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "OpenEXR header says 40000x1, over the limit"), "exr 40000: '%s'",
	      why);
	b.n = 0;
	make_exr(&b, 20, 37, 3, 0, 0, 0);
	ret = img_buf(&b, b.n, SC_FORMAT_EXR, 20, 36, why, sizeof(why));
	CHECK(ret == -EINVAL && !strcmp(why, "image is 20x37, expected 20x36"), "exr 20x37 for 20x36: '%s'",
	      why);
	b.n = 0;
	make_tiff(&b, 0, 40000, 3, 1, 0);
	ret = img_buf(&b, b.n, SC_FORMAT_TIFF, 0, 0, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "over the limit of 32768"), "tiff 40000: '%s'", why);

	/* The caller's expectation is bounded too; 0 is not "skip". */
	b.n = 0;
	make_png(&b, 32, 24, 0);
	ret = img_buf(&b, b.n, SC_FORMAT_PNG, -32, 24, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "outside 1..32768"), "negative expectation: '%s'", why);
	ret = img_buf(&b, b.n, SC_FORMAT_PNG, 40000, 24, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "outside 1..32768"), "expectation over the cap: '%s'", why);

	/* The copy cap follows the same bound. */
	CHECK(image_max_bytes(SC_FORMAT_PNG, 64, 64) == 64 * 64 * 16 + (1 << 20), "png 64x64 cap %llu",
	      (unsigned long long)image_max_bytes(SC_FORMAT_PNG, 64, 64));
	CHECK(image_max_bytes(SC_FORMAT_EXR, 64, 64) == 64ull * 64 * IMAGE_EXR_BPP_MAX + (1 << 20),
	      "exr 64x64 cap");
	CHECK(image_max_bytes(SC_FORMAT_PNG, 0, 64) == 0 && image_max_bytes(SC_FORMAT_PNG, 32769, 1) == 0,
	      "cap for an unknown or impossible size is not 0");
	buf_free(&b);
}

/* ------------------------------------------------------------ samples */

static int sample_format(const char *name, enum sc_format *fmt)
{
	const char *dot = strrchr(name, '.');

	if (!dot)
		return -1;
	if (!strcasecmp(dot, ".blend"))
		return 1;
	if (!strcasecmp(dot, ".png"))
		*fmt = SC_FORMAT_PNG;
	else if (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"))
		*fmt = SC_FORMAT_JPEG;
	else if (!strcasecmp(dot, ".tif") || !strcasecmp(dot, ".tiff"))
		*fmt = SC_FORMAT_TIFF;
	else if (!strcasecmp(dot, ".exr"))
		*fmt = SC_FORMAT_EXR;
	else
		return -1;
	return 0;
}

static void test_samples(const char *dir)
{
	struct dirent **ents;
	int n = scandir(dir, &ents, NULL, alphasort);

	if (n < 0) {
		CHECK(0, "FILECHECK_SAMPLES_DIR %s: %s", dir, strerror(errno));
		return;
	}
	for (int i = 0; i < n; i++) {
		const char *name = ents[i]->d_name;
		char path[8192], why[256] = "";
		enum sc_format fmt = SC_FORMAT_PNG;
		int kind = sample_format(name, &fmt), ret, w = 0, h = 0;
		int expect_bad = strstr(name, "trunc") || strstr(name, "bad");

		snprintf(path, sizeof(path), "%s/%s", dir, name);
		if (kind < 0) {
			free(ents[i]);
			continue;
		}
		if (kind == 1) {
			struct blend_info info = {0};

			ret = blend_file(path, &info, why, sizeof(why));
			printf("sample %s: %s%s (compressed %d, version %d, "
			       "ptr %d%s)\n",
			       name, ret ? "FAILS: " : "ok", why, info.compressed, info.version,
			       info.ptr_size, info.big_endian ? ", BE" : "");
		} else {
			ret = image_size(path, fmt, &w, &h);
			if (!ret)
				ret = image_check(path, fmt, w, h, why, sizeof(why));
			else
				image_check(path, fmt, 0, 0, why, sizeof(why));
			printf("sample %s: %s%s (%dx%d)\n", name, ret ? "FAILS: " : "ok", why, w, h);
		}
		CHECK(expect_bad ? ret != 0 : ret == 0, "sample %s: expected %s", name,
		      expect_bad ? "failure" : "success");
		CHECK(!ret || one_line(why), "sample %s: reason not one line", name);
		free(ents[i]);
	}
	free(ents);
}

/* ------------------------------------------------------------ main */

static void cleanup(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		unlink(tpath(e->d_name));
	}
	closedir(d);
	rmdir(tmpdir);
}

int main(void)
{
	const char *base = getenv("TMPDIR");
	const char *samples = getenv("FILECHECK_SAMPLES_DIR");

	snprintf(tmpdir, sizeof(tmpdir), "%s/test_filecheck.XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 2;
	}
	test_blend();
	test_blend_bombs();
	test_images();
	test_hostile_images();
	if (samples && *samples)
		test_samples(samples);
	cleanup();
	printf("%d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
