/*
 * filecheck: is this really a complete .blend, is this really a finished
 * frame?
 *
 * Everything here reads with pread() and never touches the file offset, so
 * a caller may check a descriptor it is still using.  Nothing is loaded
 * whole: a .blend can be gigabytes, so its block list is walked header by
 * header (seeking over the data when the file is plain, decompressing
 * into a fixed window and throwing the bytes away when it is gzip or
 * zstd); image checks read the few header bytes they need and walk the
 * offset tables in fixed-size pieces.  Every length a file states about
 * itself is checked against the file size before it is used, so a hostile
 * or damaged file can make us fail, never allocate or loop without bound.
 *
 * Reasons for failure are one line, meant for a human reading a status
 * file: they name the byte where things went wrong and the file size.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>
#include <zstd.h>

#include "core/filecheck.h"

_Static_assert(IMAGE_MAX_DIM == SIDECAR_RES_MAX, "a job may ask for no size the frame check refuses");

#define FC_CHUNK     (64 * 1024) /* compressed bytes read per pread */
#define FC_ZSTD_WLOG 27          /* 128 MiB window: zstd's own default cap */
#define FC_SHOW      4           /* bytes of a foreign file shown in reasons */

__attribute__((format(printf, 3, 4))) static int fc_fail(char *why, size_t whysz, const char *fmt, ...)
{
	va_list ap;

	if (why && whysz) {
		va_start(ap, fmt);
		vsnprintf(why, whysz, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static int fc_ioerr(char *why, size_t whysz, int err)
{
	if (why && whysz)
		snprintf(why, whysz, "read error: %s", strerror(-err));
	return err;
}

/* Reads up to n bytes at off; fewer only at end of file. */
static ssize_t fc_pread(int fd, void *buf, size_t n, uint64_t off)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/*
 * Quote the first bytes of a file for a reason string.  Non-printables are
 * escaped so the reason stays one line of plain ASCII whatever the file
 * holds.
 */
static void fc_escape(char *dst, size_t dstsz, const unsigned char *src, size_t n)
{
	size_t o = 0;

	if (!dstsz)
		return;
	for (size_t i = 0; i < n; i++) {
		char tmp[5];
		int c = src[i];

		if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\')
			snprintf(tmp, sizeof(tmp), "%c", c);
		else
			snprintf(tmp, sizeof(tmp), "\\x%02x", c);
		if (o + strlen(tmp) + 1 > dstsz)
			break;
		memcpy(dst + o, tmp, strlen(tmp));
		o += strlen(tmp);
	}
	dst[o] = '\0';
}

static uint16_t fc_le16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t fc_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t fc_le64(const unsigned char *p)
{
	return (uint64_t)fc_le32(p) | (uint64_t)fc_le32(p + 4) << 32;
}

static uint16_t fc_be16(const unsigned char *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t fc_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint64_t fc_be64(const unsigned char *p)
{
	return (uint64_t)fc_be32(p) << 32 | fc_be32(p + 4);
}

/* ---------------------------------------------------------------- blend */

enum fc_kind { FC_PLAIN = 0, FC_GZIP = 1, FC_ZSTD = 2 };

/*
 * One sequential reader over the .blend bytes, whatever the container.
 * For plain files pos is the file offset; for compressed files it counts
 * decompressed bytes handed out, and the decompressor's output sits in
 * out[out_pos..out_len).
 */
struct fc_stream {
	int fd;
	enum fc_kind kind;
	uint64_t file_size;
	uint64_t pos;
	uint64_t in_off; /* next compressed byte to read */
	unsigned char *in;
	size_t in_len, in_pos;
	int in_eof;
	unsigned char *out;
	size_t out_cap, out_len, out_pos;
	int eof;       /* no more bytes will come */
	int truncated; /* the container ended mid-frame */
	int err;       /* 0, -EIO-ish, or -EINVAL for corrupt */
	char errmsg[128];
	int member_open;            /* gzip member or zstd frame unfinished */
	uint64_t produced, max_out; /* decompressed bytes so far, and the most allowed */
	int bomb;                   /* produced went past max_out */
	z_stream z;
	int z_init;
	ZSTD_DStream *zd;
};

static const char *fc_kind_name(enum fc_kind k)
{
	return k == FC_GZIP ? "gzip" : k == FC_ZSTD ? "zstd" : "plain";
}

static int fc_stream_open(struct fc_stream *s, int fd, uint64_t size, enum fc_kind kind)
{
	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->kind = kind;
	s->file_size = size;
	if (kind == FC_PLAIN)
		return 0;

	s->in = malloc(FC_CHUNK);
	s->out_cap = kind == FC_ZSTD ? ZSTD_DStreamOutSize() : FC_CHUNK;
	s->out = malloc(s->out_cap);
	if (!s->in || !s->out)
		return -ENOMEM;
	if (kind == FC_GZIP) {
		/* 16 + MAX_WBITS: accept the gzip wrapper only. */
		if (inflateInit2(&s->z, 16 + MAX_WBITS) != Z_OK)
			return -ENOMEM;
		s->z_init = 1;
	} else {
		s->zd = ZSTD_createDStream();
		if (!s->zd)
			return -ENOMEM;
		/*
		 * The window a frame asks for is allocated by the decoder;
		 * cap it explicitly so a hostile header cannot ask for more
		 * than Blender itself would ever write.
		 */
		ZSTD_DCtx_setParameter(s->zd, ZSTD_d_windowLogMax, FC_ZSTD_WLOG);
	}
	return 0;
}

static void fc_stream_close(struct fc_stream *s)
{
	if (s->z_init)
		inflateEnd(&s->z);
	ZSTD_freeDStream(s->zd);
	free(s->in);
	free(s->out);
}

static int fc_stream_fill_input(struct fc_stream *s)
{
	ssize_t r;

	if (s->in_pos < s->in_len || s->in_eof)
		return 0;
	r = fc_pread(s->fd, s->in, FC_CHUNK, s->in_off);
	if (r < 0) {
		s->err = (int)r;
		return (int)r;
	}
	s->in_off += (uint64_t)r;
	s->in_len = (size_t)r;
	s->in_pos = 0;
	if (r == 0)
		s->in_eof = 1;
	return 0;
}

/*
 * At a zstd frame boundary: step over a skippable frame ourselves.  The
 * decoder would skip it too, but it reports "more to do" (a hint > 0) after
 * one, so a file ending in Blender's seek table would look cut off.
 * Returns 1 when a frame was skipped, 0 when a regular frame follows,
 * or -errno; a skippable frame cut short marks the stream truncated.
 */
static int fc_zstd_skippable(struct fc_stream *s)
{
	uint64_t cur = s->in_off - (s->in_len - s->in_pos);
	unsigned char b[8];
	ssize_t n = fc_pread(s->fd, b, sizeof(b), cur);

	if (n < 0) {
		s->err = (int)n;
		return (int)n;
	}
	if (n < 4 || (fc_le32(b) & ZSTD_MAGIC_SKIPPABLE_MASK) != ZSTD_MAGIC_SKIPPABLE_START)
		return 0;
	if (n < 8 || fc_le32(b + 4) > s->file_size - cur - 8) {
		s->eof = 1;
		s->truncated = 1;
		return 0;
	}
	s->in_off = cur + 8 + fc_le32(b + 4);
	s->in_len = s->in_pos = 0;
	s->in_eof = 0;
	return 1;
}

/* One decompression step into out[]; sets eof/truncated/err at the end. */
static void fc_stream_step(struct fc_stream *s)
{
	s->out_len = 0;
	s->out_pos = 0;
	while (!s->out_len && !s->eof && !s->err) {
		int had_input;

		if (fc_stream_fill_input(s))
			return;
		if (s->kind == FC_ZSTD && !s->member_open && s->in_pos < s->in_len) {
			int ret = fc_zstd_skippable(s);

			if (ret < 0 || s->eof)
				return;
			if (ret > 0)
				continue;
		}
		had_input = s->in_pos < s->in_len;
		if (!had_input && s->in_eof && !s->member_open) {
			/* Ended between frames; a fresh decoder asks for more. */
			s->eof = 1;
			return;
		}
		if (s->kind == FC_ZSTD) {
			ZSTD_inBuffer zin = {s->in, s->in_len, s->in_pos};
			ZSTD_outBuffer zout = {s->out, s->out_cap, 0};
			size_t ret = ZSTD_decompressStream(s->zd, &zout, &zin);

			if (ZSTD_isError(ret)) {
				s->err = -EINVAL;
				snprintf(s->errmsg, sizeof(s->errmsg), "corrupt zstd stream: %s",
					 ZSTD_getErrorName(ret));
				return;
			}
			s->in_pos = zin.pos;
			s->out_len = zout.pos;
			/* 0 means a frame ended and was flushed completely. */
			s->member_open = ret != 0;
		} else {
			int ret;

			s->z.next_in = s->in + s->in_pos;
			s->z.avail_in = (uInt)(s->in_len - s->in_pos);
			s->z.next_out = s->out;
			s->z.avail_out = (uInt)s->out_cap;
			if (had_input)
				s->member_open = 1;
			ret = inflate(&s->z, Z_NO_FLUSH);
			s->in_pos = s->in_len - s->z.avail_in;
			s->out_len = s->out_cap - s->z.avail_out;
			if (ret == Z_STREAM_END) {
				/* Concatenated members are valid gzip. */
				s->member_open = 0;
				inflateReset(&s->z);
			} else if (ret != Z_OK && ret != Z_BUF_ERROR) {
				s->err = -EINVAL;
				snprintf(s->errmsg, sizeof(s->errmsg), "corrupt gzip stream: %s",
					 s->z.msg ? s->z.msg : "inflate failed");
				return;
			}
		}
		if (!s->out_len && !had_input && s->in_eof) {
			s->eof = 1;
			s->truncated = s->member_open;
		}
		s->produced += s->out_len;
		if (s->produced > s->max_out) {
			/* Stop before handing out a byte past the limit. */
			s->bomb = 1;
			s->err = -EINVAL;
			s->out_len = 0;
			return;
		}
	}
}

/*
 * Hand out up to n bytes (buf may be NULL to skip them).  Returns how many;
 * fewer than n means the stream ended or failed: look at s->err.
 */
static uint64_t fc_stream_read(struct fc_stream *s, void *buf, uint64_t n)
{
	uint64_t got = 0;

	if (s->kind == FC_PLAIN) {
		uint64_t left = s->pos < s->file_size ? s->file_size - s->pos : 0;

		if (n > left)
			n = left;
		if (buf && n) {
			ssize_t r = fc_pread(s->fd, buf, (size_t)n, s->pos);

			if (r < 0) {
				s->err = (int)r;
				return 0;
			}
			n = (uint64_t)r;
		}
		s->pos += n;
		return n;
	}
	while (got < n) {
		size_t take;

		if (s->out_pos == s->out_len) {
			if (s->eof || s->err)
				break;
			fc_stream_step(s);
			continue;
		}
		take = s->out_len - s->out_pos;
		if (take > n - got)
			take = (size_t)(n - got);
		if (buf)
			memcpy((char *)buf + got, s->out + s->out_pos, take);
		s->out_pos += take;
		got += take;
	}
	s->pos += got;
	return got;
}

/* The reason for a short read from the stream at block offset at. */
static int fc_bomb(struct fc_stream *s, char *why, size_t whysz)
{
	return fc_fail(
	    why, whysz,
	    "refused: this %s .blend expands to more than %" PRIu64 " bytes (the limit for %" PRIu64
	    " compressed bytes: %u times that, at least %llu MiB, at most %llu GiB)",
	    fc_kind_name(s->kind), s->max_out, s->file_size, (unsigned)BLEND_MAX_RATIO,
	    (unsigned long long)(BLEND_RATIO_FLOOR >> 20), (unsigned long long)(BLEND_MAX_EXPANDED >> 30));
}

static int fc_blend_short(struct fc_stream *s, uint64_t at, char *why, size_t whysz)
{
	if (s->bomb)
		return fc_bomb(s, why, whysz);
	if (s->err == -EINVAL)
		return fc_fail(why, whysz, "%s (after %" PRIu64 " bytes of Blender data)", s->errmsg, s->pos);
	if (s->err)
		return fc_ioerr(why, whysz, s->err);
	if (s->truncated && at == 0)
		return fc_fail(why, whysz,
			       "truncated %s stream (it ends inside "
			       "the Blender file header)",
			       fc_kind_name(s->kind));
	if (s->truncated)
		return fc_fail(why, whysz,
			       "truncated %s stream (it ends inside "
			       "the block at byte %" PRIu64 ", after %" PRIu64 " decompressed bytes)",
			       fc_kind_name(s->kind), at, s->pos);
	if (s->kind == FC_PLAIN)
		return fc_fail(why, whysz,
			       "truncated Blender file: block at "
			       "byte %" PRIu64 " runs past the end (file is %" PRIu64 " bytes)",
			       at, s->file_size);
	return fc_fail(why, whysz,
		       "truncated Blender file: block at byte %" PRIu64
		       " runs past the end (%s data decompresses to %" PRIu64 " bytes)",
		       at, fc_kind_name(s->kind), s->pos);
}

/*
 * Parse the file header from the (decompressed) stream.  Two layouts
 * exist: the classic 12 bytes "BLENDER-v304" and, since Blender 5.0,
 * 17 bytes "BLENDER17-01v0500" whose blocks use 64-bit lengths.
 */
static int fc_blend_header(struct fc_stream *s, struct blend_info *info, int *bhead_size, int *large,
			   char *why, size_t whysz)
{
	unsigned char h[17];
	char shown[64];
	uint64_t n = fc_stream_read(s, h, 12);
	const char *ctx = s->kind == FC_PLAIN ? "" : s->kind == FC_GZIP ? "gzip data " : "zstd data ";

	if (n < 12) {
		if (s->err || s->truncated)
			return fc_blend_short(s, 0, why, whysz);
		if (n >= 1 && !memcmp(h, "BLENDER", n < 7 ? n : 7))
			return fc_fail(why, whysz,
				       "truncated Blender file: "
				       "the header is only %" PRIu64 " bytes",
				       n);
		fc_escape(shown, sizeof(shown), h, n < FC_SHOW ? n : FC_SHOW);
		return fc_fail(why, whysz, "not a Blender file (%sstarts with '%s')", ctx, shown);
	}
	if (memcmp(h, "BLENDER", 7)) {
		fc_escape(shown, sizeof(shown), h, FC_SHOW);
		return fc_fail(why, whysz, "not a Blender file (%sstarts with '%s')", ctx, shown);
	}
	if ((h[7] == '_' || h[7] == '-') && (h[8] == 'v' || h[8] == 'V') && h[9] >= '0' && h[9] <= '9' &&
	    h[10] >= '0' && h[10] <= '9' && h[11] >= '0' && h[11] <= '9') {
		info->ptr_size = h[7] == '_' ? 4 : 8;
		info->big_endian = h[8] == 'V';
		info->version = (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
		*bhead_size = 16 + info->ptr_size;
		*large = 0;
		return 0;
	}
	if (!memcmp(h + 7, "17-01", 5)) {
		n = fc_stream_read(s, h + 12, 5);
		if (n < 5) {
			if (s->err || s->truncated)
				return fc_blend_short(s, 0, why, whysz);
			return fc_fail(why, whysz,
				       "truncated Blender file: "
				       "the header is only %" PRIu64 " bytes",
				       12 + n);
		}
		if ((h[12] == 'v' || h[12] == 'V') && h[13] >= '0' && h[13] <= '9' && h[14] >= '0' &&
		    h[14] <= '9' && h[15] >= '0' && h[15] <= '9' && h[16] >= '0' && h[16] <= '9') {
			info->ptr_size = 8;
			info->big_endian = h[12] == 'V';
			info->version =
			    (h[13] - '0') * 1000 + (h[14] - '0') * 100 + (h[15] - '0') * 10 + (h[16] - '0');
			*bhead_size = 32;
			*large = 1;
			return 0;
		}
	}
	fc_escape(shown, sizeof(shown), h, 12);
	return fc_fail(why, whysz, "unrecognised Blender file header '%s'", shown);
}

/* Walk BHeads until ENDB.  Block at offset pos; data follows the head. */
static int fc_blend_walk(struct fc_stream *s, const struct blend_info *info, int bhead_size, int large,
			 char *why, size_t whysz)
{
	unsigned char bh[32];

	for (;;) {
		uint64_t at = s->pos;
		uint64_t n = fc_stream_read(s, bh, (uint64_t)bhead_size);
		int64_t len;

		if (n == 0 && !s->err && !s->truncated)
			return fc_fail(why, whysz,
				       "Blender file has no ENDB "
				       "block (its blocks end cleanly at byte %" PRIu64 ")",
				       at);
		if (n < (uint64_t)bhead_size)
			return fc_blend_short(s, at, why, whysz);
		if (!memcmp(bh, "ENDB", 4))
			return 0;
		if (large)
			len = (int64_t)(info->big_endian ? fc_be64(bh + 16) : fc_le64(bh + 16));
		else
			len = (int32_t)(info->big_endian ? fc_be32(bh + 4) : fc_le32(bh + 4));
		if (len < 0) {
			char code[32];

			fc_escape(code, sizeof(code), bh, 4);
			return fc_fail(why, whysz,
				       "Blender file is damaged: "
				       "block '%s' at byte %" PRIu64 " has negative length %" PRId64,
				       code, at, len);
		}
		if (fc_stream_read(s, NULL, (uint64_t)len) < (uint64_t)len)
			return fc_blend_short(s, at, why, whysz);
	}
}

/*
 * After ENDB a compressed file must still end properly: a zstd file whose
 * last frame (or Blender's seek table) is cut off was not written to the
 * end, even though all blocks are there.  What follows ENDB is tiny, so
 * draining it costs nothing.
 */
static int fc_blend_drain(struct fc_stream *s, char *why, size_t whysz)
{
	uint64_t endb = s->pos;

	while (fc_stream_read(s, NULL, FC_CHUNK) == FC_CHUNK)
		;
	if (s->bomb)
		return fc_bomb(s, why, whysz);
	if (s->err == -EINVAL)
		return fc_fail(why, whysz, "%s (after the ENDB block)", s->errmsg);
	if (s->err)
		return fc_ioerr(why, whysz, s->err);
	if (s->truncated)
		return fc_fail(why, whysz,
			       "truncated %s stream (it ends "
			       "after the ENDB block at byte %" PRIu64 " but before its own end)",
			       fc_kind_name(s->kind), endb);
	return 0;
}

uint64_t blend_max_expanded(uint64_t compressed)
{
	uint64_t max = compressed > BLEND_MAX_EXPANDED / BLEND_MAX_RATIO ? BLEND_MAX_EXPANDED
									 : compressed * BLEND_MAX_RATIO;

	return max < BLEND_RATIO_FLOOR ? BLEND_RATIO_FLOOR : max;
}

int blend_check(int fd, struct blend_info *info, char *why, size_t whysz)
{
	struct blend_info dummy;
	struct fc_stream s;
	unsigned char magic[4];
	struct stat st;
	enum fc_kind kind = FC_PLAIN;
	int bhead_size = 0, large = 0, ret;
	ssize_t n;

	if (!info)
		info = &dummy;
	memset(info, 0, sizeof(*info));
	if (why && whysz)
		why[0] = '\0';
	if (fstat(fd, &st))
		return fc_ioerr(why, whysz, -errno);
	if (!S_ISREG(st.st_mode))
		return fc_fail(why, whysz, "not a regular file");
	if (st.st_size == 0)
		return fc_fail(why, whysz, "empty file (0 bytes)");

	n = fc_pread(fd, magic, sizeof(magic), 0);
	if (n < 0)
		return fc_ioerr(why, whysz, (int)n);
	if (n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b)
		kind = FC_GZIP;
	else if (n == 4 && fc_le32(magic) == ZSTD_MAGICNUMBER)
		kind = FC_ZSTD;
	info->compressed = (int)kind;

	ret = fc_stream_open(&s, fd, (uint64_t)st.st_size, kind);
	if (ret) {
		fc_fail(why, whysz, "out of memory");
		goto out_close;
	}
	s.max_out = blend_max_expanded((uint64_t)st.st_size);
	ret = fc_blend_header(&s, info, &bhead_size, &large, why, whysz);
	if (ret)
		goto out_close;
	ret = fc_blend_walk(&s, info, bhead_size, large, why, whysz);
	if (ret)
		goto out_close;
	if (kind != FC_PLAIN)
		ret = fc_blend_drain(&s, why, whysz);
out_close:
	fc_stream_close(&s);
	return ret;
}

/* ---------------------------------------------------------------- images */

/*
 * Smallest files that can hold each format's mandatory structure; anything
 * shorter cannot be a frame however its header reads.
 *   PNG:  signature 8 + IHDR 25 + an IDAT 12 + IEND 12
 *   EXR:  magic and version 8 + the eight required attributes (> 15 each)
 *   JPEG: SOI 2 + one-component SOF 13 + SOS 10 + EOI 2
 *   TIFF: header 8 + an IFD with the six baseline tags 2 + 72 + 4
 */
static const uint64_t fc_min_size[] = {
    [SC_FORMAT_PNG] = 57,
    [SC_FORMAT_EXR] = 128,
    [SC_FORMAT_JPEG] = 27,
    [SC_FORMAT_TIFF] = 86,
};

/*
 * The plausible upper bound is w*h*16 bytes (RGBA float) + 1 MiB for
 * headers and metadata.  EXR may hold more channels than RGBA (Blender's
 * multilayer passes), so for EXR the bound grows with the channel list:
 * twice its uncompressed bytes per pixel leaves room for RLE/ZIP
 * expanding incompressible data and per-line chunk overhead.
 */
#define FC_BPP_MAX           16
#define FC_SLACK             (1024 * 1024)
#define FC_PNG_ANCILLARY_MAX (16 * 1024 * 1024) /* text, ICC profile, EXIF */

static const char *const fc_fmt_name[] = {
    [SC_FORMAT_PNG] = "PNG",
    [SC_FORMAT_EXR] = "OpenEXR",
    [SC_FORMAT_JPEG] = "JPEG",
    [SC_FORMAT_TIFF] = "TIFF",
};

struct fc_img {
	int fd;
	uint64_t size;
	int full; /* also check that the file is complete */
	int w, h;
	int want_w, want_h; /* what the job asked for; 0: unknown, hard caps only */
	uint64_t bpp;       /* bytes per pixel bound for the size check */
	char *why;
	size_t whysz;
};

/* Read exactly n bytes at off, or fail naming the item that ran past the end. */
static int fc_img_read(struct fc_img *im, void *buf, size_t n, uint64_t off, const char *fmt_name,
		       const char *item)
{
	ssize_t r;

	if (off > im->size || n > im->size - off)
		return fc_fail(im->why, im->whysz,
			       "truncated %s: %s at byte %" PRIu64 " runs past the end (file is %" PRIu64
			       " bytes)",
			       fmt_name, item, off, im->size);
	r = fc_pread(im->fd, buf, n, off);
	if (r < 0)
		return fc_ioerr(im->why, im->whysz, (int)r);
	if ((size_t)r < n)
		return fc_fail(im->why, im->whysz,
			       "file shrank while being "
			       "checked");
	return 0;
}

static int fc_not_format(struct fc_img *im, const char *fmt_name, const unsigned char *head, size_t n)
{
	char shown[64];

	fc_escape(shown, sizeof(shown), head, n < FC_SHOW ? n : FC_SHOW);
	return fc_fail(im->why, im->whysz, "not a %s file (starts with '%s')", fmt_name, shown);
}

/*
 * The header's size, checked before anything else in the file is walked:
 * within IMAGE_MAX_DIM a side, equal to what the job asked for (each of
 * want_w, want_h when > 0), and, for a full check, the file no larger
 * than that many pixels can plausibly take.
 */
static int fc_dims_ok(struct fc_img *im, const char *what, int64_t w, int64_t h)
{
	uint64_t max;

	if (w <= 0 || h <= 0)
		return fc_fail(im->why, im->whysz,
			       "%s header has impossible "
			       "size %" PRId64 "x%" PRId64,
			       what, w, h);
	if ((im->want_w > 0 && w != im->want_w) || (im->want_h > 0 && h != im->want_h))
		return fc_fail(im->why, im->whysz, "image is %" PRId64 "x%" PRId64 ", expected %dx%d", w, h,
			       im->want_w, im->want_h);
	if (w > IMAGE_MAX_DIM || h > IMAGE_MAX_DIM)
		return fc_fail(im->why, im->whysz,
			       "%s header says %" PRId64 "x%" PRId64 ", over the limit of %d pixels a side",
			       what, w, h, IMAGE_MAX_DIM);
	im->w = (int)w;
	im->h = (int)h;
	max = (uint64_t)im->w * (uint64_t)im->h * im->bpp + FC_SLACK;
	if (im->full && im->size > max)
		return fc_fail(im->why, im->whysz,
			       "%s file is implausibly large for "
			       "%dx%d (%" PRIu64 " bytes, at most %" PRIu64 " expected)",
			       what, im->w, im->h, im->size, max);
	return 0;
}

static int fc_png(struct fc_img *im)
{
	static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	unsigned char b[33];
	uint64_t off;
	int ret, idat = 0;
	ssize_t n = fc_pread(im->fd, b, sizeof(b), 0);

	if (n < 0)
		return fc_ioerr(im->why, im->whysz, (int)n);
	if ((size_t)n < sizeof(sig) || memcmp(b, sig, sizeof(sig)))
		return fc_not_format(im, "PNG", b, (size_t)n);
	if ((size_t)n < sizeof(b))
		return fc_fail(im->why, im->whysz,
			       "truncated PNG: the file "
			       "ends inside IHDR (file is %" PRIu64 " bytes)",
			       im->size);
	if (fc_be32(b + 8) != 13 || memcmp(b + 12, "IHDR", 4))
		return fc_fail(im->why, im->whysz,
			       "PNG does not start with "
			       "an IHDR chunk");
	ret = fc_dims_ok(im, "PNG", fc_be32(b + 16), fc_be32(b + 20));
	if (ret || !im->full)
		return ret;

	/* Walk chunk heads only: lengths must chain exactly to IEND. */
	for (off = 8;;) {
		uint64_t len;

		if (off == im->size)
			return fc_fail(im->why, im->whysz,
				       "truncated PNG: no "
				       "IEND chunk (file is %" PRIu64 " bytes)",
				       im->size);
		ret = fc_img_read(im, b, 8, off, "PNG", "chunk");
		if (ret)
			return ret;
		len = fc_be32(b);
		for (int i = 4; i < 8; i++)
			if (!((b[i] | 0x20) >= 'a' && (b[i] | 0x20) <= 'z'))
				return fc_fail(im->why, im->whysz,
					       "PNG is "
					       "damaged: bad chunk type at "
					       "byte %" PRIu64,
					       off);
		/* The spec's 2^31-1, and far less for metadata (an ancillary
		 * chunk: lower-case first letter), whatever the file size. */
		if (len > 0x7fffffffu || ((b[4] & 0x20) && len > FC_PNG_ANCILLARY_MAX))
			return fc_fail(im->why, im->whysz,
				       "PNG is damaged: "
				       "chunk at byte %" PRIu64 " has length %" PRIu64,
				       off, len);
		if (12 + len > im->size - off)
			return fc_fail(im->why, im->whysz,
				       "truncated PNG: "
				       "chunk at byte %" PRIu64 " runs past "
				       "the end (file is %" PRIu64 " bytes)",
				       off, im->size);
		if (!memcmp(b + 4, "IDAT", 4))
			idat = 1;
		if (!memcmp(b + 4, "IEND", 4))
			break;
		off += 12 + len;
	}
	if (!idat)
		return fc_fail(im->why, im->whysz, "PNG has no IDAT chunk");
	return 0;
}

static int fc_jpeg(struct fc_img *im)
{
	unsigned char b[9];
	uint64_t off = 2;
	int ret;
	ssize_t n = fc_pread(im->fd, b, FC_SHOW, 0);

	if (n < 0)
		return fc_ioerr(im->why, im->whysz, (int)n);
	if (n < 2 || b[0] != 0xff || b[1] != 0xd8)
		return fc_not_format(im, "JPEG", b, (size_t)n);

	/* Segments up to the frame header; the entropy data is not parsed. */
	for (;;) {
		unsigned int m, len;

		ret = fc_img_read(im, b, 2, off, "JPEG", "marker");
		if (ret)
			return ret;
		if (b[0] != 0xff)
			return fc_fail(im->why, im->whysz,
				       "JPEG is damaged: "
				       "no marker at byte %" PRIu64,
				       off);
		m = b[1];
		if (m == 0xff) { /* fill byte before a marker */
			off++;
			continue;
		}
		if (m == 0x01 || (m >= 0xd0 && m <= 0xd8)) {
			off += 2; /* markers without a length */
			continue;
		}
		if (m == 0xd9)
			return fc_fail(im->why, im->whysz,
				       "JPEG ends (EOI at "
				       "byte %" PRIu64 ") before its frame "
				       "header",
				       off);
		if (m == 0xda)
			return fc_fail(im->why, im->whysz,
				       "JPEG has scan data "
				       "before any frame header");
		ret = fc_img_read(im, b, 2, off + 2, "JPEG", "segment");
		if (ret)
			return ret;
		len = fc_be16(b);
		if (len < 2)
			return fc_fail(im->why, im->whysz,
				       "JPEG is damaged: "
				       "segment at byte %" PRIu64 " has length "
				       "%u",
				       off, len);
		if (len > im->size - off - 2)
			return fc_fail(im->why, im->whysz,
				       "truncated JPEG: "
				       "segment at byte %" PRIu64 " runs past "
				       "the end (file is %" PRIu64 " bytes)",
				       off, im->size);
		/* SOF0..SOF15, but C4 (DHT), C8 (JPG) and CC (DAC) are not. */
		if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc) {
			if (len < 8)
				return fc_fail(im->why, im->whysz,
					       "JPEG frame "
					       "header is too short");
			ret = fc_img_read(im, b, 5, off + 4, "JPEG", "frame header");
			if (ret)
				return ret;
			/* Height 0 means "see DNL", which renderers never write. */
			ret = fc_dims_ok(im, "JPEG", fc_be16(b + 3), fc_be16(b + 1));
			if (ret)
				return ret;
			break;
		}
		off += 2 + len;
	}
	if (!im->full)
		return 0;
	/*
	 * Strict end: an encoder that finished wrote EOI last.  Trailing
	 * padding is not accepted; none of our renderers write it, and a
	 * pre-allocated file of zeros looks exactly like that.
	 */
	ret = fc_img_read(im, b, 2, im->size - 2, "JPEG", "end");
	if (ret)
		return ret;
	if (b[0] != 0xff || b[1] != 0xd9)
		return fc_fail(im->why, im->whysz,
			       "truncated JPEG: it does "
			       "not end with an EOI marker (file is %" PRIu64 " bytes)",
			       im->size);
	return 0;
}

/* ---- OpenEXR */

#define EXR_TILED      0x200
#define EXR_LONG_NAMES 0x400
#define EXR_DEEP       0x800
#define EXR_MULTIPART  0x1000
#define EXR_MAX_ATTRS  100000 /* bounds the walk on garbage */
#define EXR_CHLIST_MAX (64 * 1024)

struct exr_hdr {
	int have_dw;
	int64_t w, h;
	int compression; /* -1 = not seen */
	uint64_t bpp;    /* from chlist; 0 = not known */
};

/* Bytes per pixel from a chlist value; 0 when it does not parse. */
static uint64_t exr_chlist_bpp(const unsigned char *p, size_t n)
{
	uint64_t bpp = 0;
	size_t i = 0;

	while (i < n && p[i]) {
		const unsigned char *nul = memchr(p + i, 0, n - i);
		uint32_t type;

		if (!nul || (size_t)(nul - p) + 1 + 16 > n)
			return 0;
		i = (size_t)(nul - p) + 1;
		type = fc_le32(p + i);
		bpp += type == 1 ? 2 : 4; /* HALF, else UINT/FLOAT */
		i += 16;
	}
	return bpp;
}

/* Parse one header (attribute list) at *off; leave *off after its NUL. */
static int exr_header(struct fc_img *im, uint64_t *off, int long_names, struct exr_hdr *hd)
{
	size_t maxname = long_names ? 255 : 31;

	for (int i = 0; i < EXR_MAX_ATTRS; i++) {
		unsigned char b[2 * 256 + 4];
		const unsigned char *nul, *tnul;
		const char *name, *type;
		uint64_t vsize;
		ssize_t n = fc_pread(im->fd, b, sizeof(b), *off);
		size_t nlen, tlen;

		if (n < 0)
			return fc_ioerr(im->why, im->whysz, (int)n);
		if (n == 0)
			return fc_fail(im->why, im->whysz,
				       "truncated OpenEXR: "
				       "header runs past the end (file is %" PRIu64 " bytes)",
				       im->size);
		if (b[0] == 0) {
			*off += 1;
			return 0;
		}
		nul = memchr(b, 0, (size_t)n);
		if (!nul)
			goto short_or_bad;
		nlen = (size_t)(nul - b);
		tnul = memchr(nul + 1, 0, (size_t)n - nlen - 1);
		if (!tnul)
			goto short_or_bad;
		tlen = (size_t)(tnul - nul - 1);
		if (nlen > maxname || tlen > maxname || tlen == 0)
			return fc_fail(im->why, im->whysz,
				       "OpenEXR header is "
				       "damaged at byte %" PRIu64,
				       *off);
		if ((size_t)n < nlen + tlen + 2 + 4)
			goto short_or_bad;
		name = (const char *)b;
		type = (const char *)nul + 1;
		vsize = fc_le32(tnul + 1);
		*off += nlen + tlen + 2 + 4;
		if (vsize > 0x7fffffff || vsize > im->size - *off) {
			/* The name is the file's: escaped, the reason stays one line. */
			char shown[32 * 4 + 1];

			fc_escape(shown, sizeof(shown), b, nlen < 32 ? nlen : 32);
			return fc_fail(im->why, im->whysz,
				       "truncated OpenEXR: "
				       "attribute '%s' runs past the end (file "
				       "is %" PRIu64 " bytes)",
				       shown, im->size);
		}

		if (!strcmp(name, "dataWindow") && !strcmp(type, "box2i") && vsize == 16) {
			unsigned char v[16];
			int ret = fc_img_read(im, v, 16, *off, "OpenEXR", "attribute");

			if (ret)
				return ret;
			hd->w = (int64_t)(int32_t)fc_le32(v + 8) - (int32_t)fc_le32(v) + 1;
			hd->h = (int64_t)(int32_t)fc_le32(v + 12) - (int32_t)fc_le32(v + 4) + 1;
			hd->have_dw = 1;
		} else if (!strcmp(name, "compression") && vsize == 1) {
			unsigned char v;
			int ret = fc_img_read(im, &v, 1, *off, "OpenEXR", "attribute");

			if (ret)
				return ret;
			hd->compression = v;
		} else if (!strcmp(name, "channels") && !strcmp(type, "chlist") && vsize <= EXR_CHLIST_MAX &&
			   !hd->bpp) {
			unsigned char *v = malloc(vsize ? vsize : 1);
			int ret;

			if (!v)
				return fc_fail(im->why, im->whysz, "out of memory");
			ret = fc_img_read(im, v, (size_t)vsize, *off, "OpenEXR", "attribute");
			if (!ret)
				hd->bpp = exr_chlist_bpp(v, (size_t)vsize);
			free(v);
			if (ret)
				return ret;
		}
		*off += vsize;
		continue;
	short_or_bad:
		if ((size_t)n < sizeof(b))
			return fc_fail(im->why, im->whysz,
				       "truncated OpenEXR: "
				       "header runs past the end (file is %" PRIu64 " bytes)",
				       im->size);
		return fc_fail(im->why, im->whysz,
			       "OpenEXR header is "
			       "damaged at byte %" PRIu64,
			       *off);
	}
	return fc_fail(im->why, im->whysz,
		       "OpenEXR header has too many "
		       "attributes");
}

static int exr_lines_per_chunk(int compression)
{
	switch (compression) {
	case 0: /* NONE */
	case 1: /* RLE */
	case 2: /* ZIPS */ return 1;
	case 3: /* ZIP */
	case 5: /* PXR24 */ return 16;
	case 4: /* PIZ */
	case 6: /* B44 */
	case 7: /* B44A */
	case 8: /* DWAA */ return 32;
	case 9: /* DWAB */ return 256;
	}
	return 0;
}

/*
 * The offset table of a single-part scanline file: every chunk it points
 * at must lie after the table and, with its 8-byte head (y, data size),
 * wholly inside the file.  A renderer killed mid-write leaves zeros or
 * offsets past the end here, so this is where truncation shows.
 */
static int exr_offsets(struct fc_img *im, uint64_t table, uint64_t nchunks)
{
	unsigned char b[512 * 8];
	uint64_t table_end = table + nchunks * 8;

	if (nchunks * 8 > im->size - table)
		return fc_fail(im->why, im->whysz,
			       "truncated OpenEXR: offset "
			       "table at byte %" PRIu64 " runs past the end "
			       "(file is %" PRIu64 " bytes)",
			       table, im->size);
	for (uint64_t i = 0; i < nchunks;) {
		uint64_t k = nchunks - i < 512 ? nchunks - i : 512;
		int ret = fc_img_read(im, b, (size_t)k * 8, table + i * 8, "OpenEXR", "offset table");

		if (ret)
			return ret;
		for (uint64_t j = 0; j < k; j++, i++) {
			uint64_t o = fc_le64(b + j * 8);
			unsigned char c[8];
			uint32_t dsize;

			if (o < table_end || o > im->size - 8)
				return fc_fail(im->why, im->whysz,
					       "truncated "
					       "OpenEXR: chunk %" PRIu64 " of %" PRIu64 " has offset %" PRIu64
					       " (file is %" PRIu64 " bytes)",
					       i, nchunks, o, im->size);
			ret = fc_img_read(im, c, 8, o, "OpenEXR", "chunk");
			if (ret)
				return ret;
			dsize = fc_le32(c + 4);
			if (dsize > im->size - o - 8)
				return fc_fail(im->why, im->whysz,
					       "truncated "
					       "OpenEXR: chunk %" PRIu64 " at "
					       "byte %" PRIu64 " runs past the "
					       "end (file is %" PRIu64 " bytes)",
					       i, o, im->size);
		}
	}
	return 0;
}

static int fc_exr(struct fc_img *im)
{
	unsigned char b[8];
	struct exr_hdr hd = {.compression = -1};
	uint64_t off = 8;
	uint32_t version;
	int ret, lpc;
	ssize_t n = fc_pread(im->fd, b, sizeof(b), 0);

	if (n < 0)
		return fc_ioerr(im->why, im->whysz, (int)n);
	if (n < 4 || fc_le32(b) != 20000630u) /* 76 2f 31 01 */
		return fc_not_format(im, "OpenEXR", b, (size_t)n);
	if (n < 8)
		return fc_fail(im->why, im->whysz,
			       "truncated OpenEXR: header "
			       "runs past the end (file is %" PRIu64 " bytes)",
			       im->size);
	version = fc_le32(b + 4);
	if ((version & 0xff) != 2)
		return fc_fail(im->why, im->whysz,
			       "OpenEXR version %u is not "
			       "supported",
			       version & 0xff);
	ret = exr_header(im, &off, !!(version & EXR_LONG_NAMES), &hd);
	if (ret)
		return ret;
	if (!hd.have_dw)
		return fc_fail(im->why, im->whysz,
			       "OpenEXR header has no "
			       "dataWindow");
	if (hd.bpp > im->bpp / 2)
		im->bpp = hd.bpp * 2 < IMAGE_EXR_BPP_MAX ? hd.bpp * 2 : IMAGE_EXR_BPP_MAX;
	ret = fc_dims_ok(im, "OpenEXR", hd.w, hd.h);
	if (ret)
		return ret;
	if (!im->full)
		return 0;
	if (version & EXR_MULTIPART) {
		/* Further part headers until the empty one; dims from the first. */
		for (int part = 1;; part++) {
			struct exr_hdr more = {.compression = -1};
			unsigned char z;

			ret = fc_img_read(im, &z, 1, off, "OpenEXR", "header");
			if (ret)
				return ret;
			if (z == 0)
				return 0;
			if (part > 10000)
				return fc_fail(im->why, im->whysz,
					       "OpenEXR has "
					       "too many parts");
			ret = exr_header(im, &off, !!(version & EXR_LONG_NAMES), &more);
			if (ret)
				return ret;
		}
	}
	if (version & (EXR_TILED | EXR_DEEP))
		return 0; /* tile tables depend on levels; header only */
	lpc = exr_lines_per_chunk(hd.compression);
	if (!lpc)
		return fc_fail(im->why, im->whysz,
			       "OpenEXR has unknown "
			       "compression %d",
			       hd.compression);
	return exr_offsets(im, off, ((uint64_t)im->h + (uint64_t)lpc - 1) / (uint64_t)lpc);
}

/* ---- TIFF */

#define TIFF_MAX_ENTRIES 4096
#define TIFF_MAX_STRIPS  (1u << 24)

struct tiff_arr {
	int seen;
	uint16_t type;
	uint32_t count;
	uint32_t value; /* inline value or offset of the array */
};

struct tiff_ctx {
	struct fc_img *im;
	int be;
};

static uint16_t tiff16(const struct tiff_ctx *t, const unsigned char *p)
{
	return t->be ? fc_be16(p) : fc_le16(p);
}

static uint32_t tiff32(const struct tiff_ctx *t, const unsigned char *p)
{
	return t->be ? fc_be32(p) : fc_le32(p);
}

/* An inline SHORT sits in the first two bytes of the value field. */
static int tiff_scalar(const struct tiff_ctx *t, const unsigned char *e, uint32_t *v)
{
	uint16_t type = tiff16(t, e + 2);

	if (tiff32(t, e + 4) != 1)
		return -EINVAL;
	if (type == 3)
		*v = tiff16(t, e + 8);
	else if (type == 4)
		*v = tiff32(t, e + 8);
	else
		return -EINVAL;
	return 0;
}

static int tiff_array_at(struct tiff_ctx *t, const struct tiff_arr *a, const unsigned char *inl, uint32_t i,
			 uint64_t *v)
{
	unsigned int esz = a->type == 3 ? 2 : 4;
	unsigned char b[4];
	const unsigned char *p;

	if ((uint64_t)a->count * esz <= 4) {
		p = inl + i * esz;
	} else {
		int ret =
		    fc_img_read(t->im, b, esz, (uint64_t)a->value + (uint64_t)i * esz, "TIFF", "strip table");
		if (ret)
			return ret;
		p = b;
	}
	*v = esz == 2 ? tiff16(t, p) : tiff32(t, p);
	return 0;
}

/*
 * Writers put the IFD after the pixels and its larger values (resolution,
 * software string, strip tables) after the IFD, so the file's last bytes
 * are often one of these: each must lie inside the file.
 */
static int tiff_value_inside(struct tiff_ctx *t, const unsigned char *e, uint32_t i)
{
	static const unsigned char tsize[] = {
	    0, 1, 1, 2, 4, 8, 1, 1, 2, 4, 8, 4, 8, 4,
	};
	uint16_t type = tiff16(t, e + 2);
	uint64_t bytes;

	if (type >= sizeof(tsize) || !tsize[type])
		return 0; /* unknown type: readers skip it, so do we */
	bytes = (uint64_t)tiff32(t, e + 4) * tsize[type];
	if (bytes <= 4)
		return 0;
	if (tiff32(t, e + 8) > t->im->size || bytes > t->im->size - tiff32(t, e + 8))
		return fc_fail(t->im->why, t->im->whysz,
			       "truncated TIFF: "
			       "value of tag %u (entry %u) runs past the end "
			       "(file is %" PRIu64 " bytes)",
			       tiff16(t, e), i, t->im->size);
	return 0;
}

static int fc_tiff(struct fc_img *im)
{
	struct tiff_ctx t = {.im = im};
	struct tiff_arr offs = {0}, cnts = {0};
	unsigned char b[12], offs_inl[4] = {0}, cnts_inl[4] = {0};
	uint32_t w = 0, h = 0, ifd;
	uint16_t nent;
	int ret;
	ssize_t n = fc_pread(im->fd, b, 8, 0);

	if (n < 0)
		return fc_ioerr(im->why, im->whysz, (int)n);
	if (n >= 4 && (!memcmp(b, "II+\0", 4) || !memcmp(b, "MM\0+", 4)))
		return fc_fail(im->why, im->whysz, "BigTIFF is not supported");
	if (n < 4 || (memcmp(b, "II*\0", 4) && memcmp(b, "MM\0*", 4)))
		return fc_not_format(im, "TIFF", b, (size_t)n);
	if (n < 8)
		return fc_fail(im->why, im->whysz,
			       "truncated TIFF: header "
			       "runs past the end (file is %" PRIu64 " bytes)",
			       im->size);
	t.be = b[0] == 'M';
	ifd = tiff32(&t, b + 4);
	if (ifd < 8)
		return fc_fail(im->why, im->whysz,
			       "TIFF is damaged: first "
			       "IFD at byte %u",
			       ifd);
	ret = fc_img_read(im, b, 2, ifd, "TIFF", "directory");
	if (ret)
		return ret;
	nent = tiff16(&t, b);
	if (nent == 0 || nent > TIFF_MAX_ENTRIES)
		return fc_fail(im->why, im->whysz,
			       "TIFF is damaged: IFD has "
			       "%u entries",
			       nent);
	if ((uint64_t)ifd + 2 + 12u * nent + 4 > im->size)
		return fc_fail(im->why, im->whysz,
			       "truncated TIFF: directory "
			       "at byte %u runs past the end (file is %" PRIu64 " bytes)",
			       ifd, im->size);

	for (uint32_t i = 0; i < nent; i++) {
		uint16_t tag;
		uint32_t v;
		struct tiff_arr *a = NULL;

		ret = fc_img_read(im, b, 12, (uint64_t)ifd + 2 + 12u * i, "TIFF", "directory");
		if (ret)
			return ret;
		tag = tiff16(&t, b);
		ret = tiff_value_inside(&t, b, i);
		if (ret)
			return ret;
		if (tag == 256 || tag == 257) {
			if (tiff_scalar(&t, b, &v))
				return fc_fail(im->why, im->whysz,
					       "TIFF is "
					       "damaged: bad tag %u",
					       tag);
			if (tag == 256)
				w = v;
			else
				h = v;
		}
		/* Strips, or tiles when the writer chose those. */
		if ((tag == 273 || tag == 324) && !offs.seen)
			a = &offs;
		else if ((tag == 279 || tag == 325) && !cnts.seen)
			a = &cnts;
		if (a) {
			a->seen = 1;
			a->type = tiff16(&t, b + 2);
			a->count = tiff32(&t, b + 4);
			a->value = tiff32(&t, b + 8);
			memcpy(a == &offs ? offs_inl : cnts_inl, b + 8, 4);
			if (a->type != 3 && a->type != 4)
				return fc_fail(im->why, im->whysz,
					       "TIFF is "
					       "damaged: bad tag %u",
					       tag);
		}
	}
	ret = fc_dims_ok(im, "TIFF", w, h);
	if (ret || !im->full)
		return ret;
	if (!offs.seen || !cnts.seen)
		return fc_fail(im->why, im->whysz,
			       "TIFF has no strip offsets "
			       "and byte counts");
	if (offs.count != cnts.count || offs.count == 0 || offs.count > TIFF_MAX_STRIPS)
		return fc_fail(im->why, im->whysz,
			       "TIFF is damaged: %u strip "
			       "offsets for %u byte counts",
			       offs.count, cnts.count);
	for (uint32_t i = 0; i < offs.count; i++) {
		uint64_t o, c;

		ret = tiff_array_at(&t, &offs, offs_inl, i, &o);
		if (!ret)
			ret = tiff_array_at(&t, &cnts, cnts_inl, i, &c);
		if (ret)
			return ret;
		if (o > im->size || c > im->size - o)
			return fc_fail(im->why, im->whysz,
				       "truncated TIFF: "
				       "strip %u (bytes %" PRIu64 "..%" PRIu64
				       ") runs past the end (file is %" PRIu64 " bytes)",
				       i, o, o + c, im->size);
	}
	return 0;
}

/* ---------------------------------------------------------------- entry */

static int fc_image(const char *path, enum sc_format fmt, struct fc_img *im)
{
	struct stat st;
	int ret;

	if ((unsigned int)fmt > SC_FORMAT_TIFF)
		return fc_fail(im->why, im->whysz, "unknown image format %d", (int)fmt);
	im->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (im->fd < 0) {
		ret = -errno;
		fc_fail(im->why, im->whysz, "cannot open: %s", strerror(-ret));
		return ret;
	}
	if (fstat(im->fd, &st)) {
		ret = fc_ioerr(im->why, im->whysz, -errno);
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = fc_fail(im->why, im->whysz, "not a regular file");
		goto out_close;
	}
	im->size = (uint64_t)st.st_size;
	if (im->size == 0) {
		ret = fc_fail(im->why, im->whysz, "empty file (0 bytes)");
		goto out_close;
	}
	switch (fmt) {
	case SC_FORMAT_PNG: ret = fc_png(im); break;
	case SC_FORMAT_EXR: ret = fc_exr(im); break;
	case SC_FORMAT_JPEG: ret = fc_jpeg(im); break;
	default: ret = fc_tiff(im); break;
	}
out_close:
	close(im->fd);
	return ret;
}

uint64_t image_max_bytes(enum sc_format fmt, int w, int h)
{
	if (w < 1 || h < 1 || w > IMAGE_MAX_DIM || h > IMAGE_MAX_DIM)
		return 0;
	return (uint64_t)w * (uint64_t)h * (fmt == SC_FORMAT_EXR ? IMAGE_EXR_BPP_MAX : FC_BPP_MAX) + FC_SLACK;
}

int image_size(const char *path, enum sc_format fmt, int *w, int *h)
{
	char why[256];
	struct fc_img im = {.why = why, .whysz = sizeof(why)};
	int ret = fc_image(path, fmt, &im);

	if (ret)
		return ret;
	if (w)
		*w = im.w;
	if (h)
		*h = im.h;
	return 0;
}

int image_check(const char *path, enum sc_format fmt, int want_w, int want_h, char *why, size_t whysz)
{
	struct fc_img im = {
	    .full = 1,
	    .want_w = want_w,
	    .want_h = want_h,
	    .bpp = FC_BPP_MAX,
	    .why = why,
	    .whysz = whysz,
	};
	int ret;

	if (why && whysz)
		why[0] = '\0';
	if (want_w < 0 || want_h < 0 || want_w > IMAGE_MAX_DIM || want_h > IMAGE_MAX_DIM)
		return fc_fail(why, whysz, "the job's size %dx%d is outside 1..%d a side", want_w, want_h,
			       IMAGE_MAX_DIM);
	ret = fc_image(path, fmt, &im);
	if (ret)
		return ret;
	if (im.size < fc_min_size[fmt])
		return fc_fail(why, whysz,
			       "%s file is too small to be an "
			       "image (%" PRIu64 " bytes)",
			       fc_fmt_name[fmt], im.size);
	return 0;
}
