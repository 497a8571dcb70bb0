/*
 * blendfile: the .blend format, read by renderfs itself.
 *
 * A .blend is a header, then blocks (a BHead each: a 4-byte code, the
 * length of its data, the address the data had in memory when it was
 * written, the index of its struct in the SDNA and a count), ending with
 * ENDB.  The DNA1 block near the end describes every struct: names, types
 * with their sizes, and each struct's fields in order.  Nothing in a block
 * is read at a fixed offset: fields are found by name in that SDNA, so the
 * same code reads files of Blender 2.7x to 5.x.
 *
 * Reading takes two passes over the (decompressed) stream so that memory
 * does not grow with the file: the first walks every BHead and keeps only
 * DNA1 and GLOB; with the SDNA known, the second keeps just the blocks we
 * extract from (scenes, images, clips, sounds, fonts, libraries, volumes,
 * cache files, a scene's ID properties and sequencer strips, image tiles,
 * point and fluid caches, Mesh Cache modifiers) and remembers the name of every ID so that pointers to objects
 * (the scene camera) can be named.  Pointers are resolved by the old
 * address their target block had; since Blender 4.x writes data addresses
 * that are unique only within one ID, data pointers are looked up among the
 * blocks of the ID that holds them.
 *
 * Caps (struct blendfile_limits): the bytes of decompressed data, the
 * number of blocks, the bytes kept, the size of DNA1.  Each length a block
 * states is checked against what is left of a plain file, every field read
 * is checked against its block, lists are walked a bounded number of
 * steps.  A hostile file makes us fail with a reason, never crash or
 * allocate without bound.
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

#include "core/blendfile.h"

#define BF_IN_CHUNK   (64 * 1024)  /* compressed bytes read at once */
#define BF_OUT_CHUNK  (256 * 1024) /* decompressed bytes produced at once */
#define BF_ZSTD_WLOG  27           /* 128 MiB window, zstd's own default cap */
#define BF_MAX_GLOB   (1U << 20)   /* a FileGlobal is about 1 KiB */
#define BF_MAX_LIST   100000       /* steps walking one linked list */
#define BF_MAX_TILES  10000        /* UDIM tiles of one image */
#define BF_MAX_PATHS  1000000      /* external paths reported */
#define BF_MAX_CACHES 10000        /* point/fluid cache entries (deduplicated by scanning) */
#define BF_MAX_DIMS   (1U << 24)   /* elements in one SDNA array field */

/* IDProperty.type values (DNA_ID.h) */
#define BF_IDP_INT   1
#define BF_IDP_GROUP 6

/* Image.source, MovieClip.source, PointCache.flag */
#define BF_IMA_SRC_SEQUENCE   2
#define BF_IMA_SRC_MOVIE      3
#define BF_IMA_SRC_GENERATED  4
#define BF_IMA_SRC_VIEWER     5
#define BF_IMA_SRC_TILED      6
#define BF_MCLIP_SRC_SEQUENCE 1
#define BF_SEQ_TYPE_IMAGE     0
#define BF_SEQ_TYPE_MOVIE     3
#define BF_PTCACHE_DISK_CACHE (1 << 6)
#define BF_PTCACHE_EXTERNAL   (1 << 9)
#define BF_PTCACHE_FAKE_SMOKE (1 << 12)

/* ------------------------------------------------------------ errors */

__attribute__((format(printf, 4, 5))) static int bf_fail(char *err, size_t errsz, int code, const char *fmt,
							 ...)
{
	va_list ap;

	if (err && errsz) {
		va_start(ap, fmt);
		vsnprintf(err, errsz, fmt, ap);
		va_end(ap);
	}
	return code;
}

/* Four bytes of a block code, printable. */
static void bf_code_str(const unsigned char *c, char out[20])
{
	size_t o = 0;

	for (int i = 0; i < 4; i++) {
		if (c[i] == 0)
			break;
		if (c[i] >= 0x20 && c[i] < 0x7f && c[i] != '\\')
			out[o++] = (char)c[i];
		else
			o += (size_t)snprintf(out + o, 5, "\\x%02x", c[i]);
	}
	out[o] = 0;
}

/* An SDNA type name (the file's bytes) for a message: printable ASCII kept,
 * other bytes as \xNN, at most 64 bytes shown, so the reason stays one line. */
static const char *bf_shown(const char *s, char out[268])
{
	size_t o = 0, i;

	for (i = 0; s[i] && i < 64; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch >= 0x20 && ch < 0x7f && ch != '\\')
			out[o++] = (char)ch;
		else
			o += (size_t)snprintf(out + o, 5, "\\x%02x", ch);
	}
	if (s[i])
		o += (size_t)snprintf(out + o, 4, "...");
	out[o] = 0;
	return out;
}

/* ------------------------------------------------------------ the stream */

/*
 * The .blend bytes, decompressed when needed, read front to back.  pos
 * counts the bytes handed out; max caps it.  A stream that ends before the
 * caller has what it asked for sets truncated (or err for corrupt data).
 */
struct bf_stream {
	int fd;
	enum blendfile_compression kind;
	uint64_t file_size;
	uint64_t in_off; /* file bytes consumed */
	unsigned char *in;
	size_t in_len, in_pos;
	int in_eof;
	unsigned char *out;
	size_t out_len, out_pos;
	uint64_t pos;
	int stream_end; /* gzip member or zstd frame complete at the last byte */
	z_stream z;
	int z_live;
	ZSTD_DStream *zs;
	int err;
	char msg[160];
};

static int bf_stream_open(struct bf_stream *s, int fd, uint64_t file_size)
{
	unsigned char magic[4] = {0};
	ssize_t n;

	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->file_size = file_size;
	n = pread(fd, magic, sizeof(magic), 0);
	if (n < 0)
		return -errno;
	if (n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b)
		s->kind = BLENDFILE_GZIP;
	else if (n == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd)
		s->kind = BLENDFILE_ZSTD;
	else
		s->kind = BLENDFILE_PLAIN;
	s->out = malloc(BF_OUT_CHUNK);
	if (!s->out)
		return -ENOMEM;
	if (s->kind == BLENDFILE_PLAIN)
		return 0;
	s->in = malloc(BF_IN_CHUNK);
	if (!s->in)
		return -ENOMEM;
	if (s->kind == BLENDFILE_GZIP) {
		/* 16 + MAX_WBITS: the gzip wrapper only. */
		if (inflateInit2(&s->z, 16 + MAX_WBITS) != Z_OK)
			return -ENOMEM;
		s->z_live = 1;
	} else {
		s->zs = ZSTD_createDStream();
		if (!s->zs)
			return -ENOMEM;
		if (ZSTD_isError(ZSTD_DCtx_setParameter(s->zs, ZSTD_d_windowLogMax, BF_ZSTD_WLOG)))
			return -ENOMEM;
	}
	return 0;
}

static void bf_stream_close(struct bf_stream *s)
{
	if (s->z_live)
		inflateEnd(&s->z);
	ZSTD_freeDStream(s->zs);
	free(s->in);
	free(s->out);
	s->in = s->out = NULL;
	s->zs = NULL;
	s->z_live = 0;
}

/* Rewind for the second pass. */
static int bf_stream_rewind(struct bf_stream *s)
{
	s->in_off = 0;
	s->in_len = s->in_pos = 0;
	s->in_eof = 0;
	s->out_len = s->out_pos = 0;
	s->pos = 0;
	s->stream_end = 0;
	s->err = 0;
	if (s->kind == BLENDFILE_GZIP && inflateReset(&s->z) != Z_OK)
		return -EIO;
	if (s->kind == BLENDFILE_ZSTD && ZSTD_isError(ZSTD_DCtx_reset(s->zs, ZSTD_reset_session_only)))
		return -EIO;
	return 0;
}

static int bf_fill_in(struct bf_stream *s)
{
	ssize_t n;

	if (s->in_pos < s->in_len || s->in_eof)
		return 0;
	n = pread(s->fd, s->in, BF_IN_CHUNK, (off_t)s->in_off);
	if (n < 0)
		return -errno;
	if (n == 0)
		s->in_eof = 1;
	s->in_off += (uint64_t)n;
	s->in_len = (size_t)n;
	s->in_pos = 0;
	return 0;
}

/* Produce more output into s->out; 0 bytes means the stream ended (or err). */
static size_t bf_refill(struct bf_stream *s)
{
	int ret;

	s->out_len = s->out_pos = 0;
	if (s->kind == BLENDFILE_PLAIN) {
		ssize_t n = pread(s->fd, s->out, BF_OUT_CHUNK, (off_t)s->in_off);

		if (n < 0) {
			s->err = -errno;
			return 0;
		}
		s->in_off += (uint64_t)n;
		s->out_len = (size_t)n;
		return s->out_len;
	}
	for (;;) {
		ret = bf_fill_in(s);
		if (ret < 0) {
			s->err = ret;
			return 0;
		}
		if (s->in_pos == s->in_len && s->in_eof)
			return 0;
		if (s->kind == BLENDFILE_GZIP) {
			int zr;

			if (s->stream_end) {
				/* Concatenated members are valid gzip. */
				if (inflateReset(&s->z) != Z_OK) {
					s->err = -EIO;
					return 0;
				}
				s->stream_end = 0;
			}
			s->z.next_in = s->in + s->in_pos;
			s->z.avail_in = (uInt)(s->in_len - s->in_pos);
			s->z.next_out = s->out;
			s->z.avail_out = BF_OUT_CHUNK;
			zr = inflate(&s->z, Z_NO_FLUSH);
			s->in_pos = s->in_len - s->z.avail_in;
			if (zr == Z_STREAM_END)
				s->stream_end = 1;
			else if (zr != Z_OK && zr != Z_BUF_ERROR) {
				s->err = -EINVAL;
				snprintf(s->msg, sizeof(s->msg), "corrupt gzip data: %s",
					 s->z.msg ? s->z.msg : "inflate failed");
				return 0;
			}
			s->out_len = BF_OUT_CHUNK - s->z.avail_out;
		} else {
			ZSTD_inBuffer ib = {s->in, s->in_len, s->in_pos};
			ZSTD_outBuffer ob = {s->out, BF_OUT_CHUNK, 0};
			size_t zr = ZSTD_decompressStream(s->zs, &ob, &ib);

			if (ZSTD_isError(zr)) {
				s->err = -EINVAL;
				snprintf(s->msg, sizeof(s->msg), "corrupt zstd data: %s",
					 ZSTD_getErrorName(zr));
				return 0;
			}
			s->in_pos = ib.pos;
			s->stream_end = zr == 0;
			s->out_len = ob.pos;
		}
		if (s->out_len)
			return s->out_len;
	}
}

/*
 * Read n bytes into dst (or skip them when dst is NULL); returns how many
 * were there.  Plain files skip without reading.
 */
static uint64_t bf_read(struct bf_stream *s, void *dst, uint64_t n)
{
	uint64_t got = 0;

	while (got < n) {
		size_t avail = s->out_len - s->out_pos;
		size_t take;

		if (!avail) {
			if (s->kind == BLENDFILE_PLAIN && !dst) {
				uint64_t left = s->file_size > s->in_off ? s->file_size - s->in_off : 0;
				uint64_t step = n - got < left ? n - got : left;

				s->in_off += step;
				s->pos += step;
				got += step;
				if (got < n)
					break;
				continue;
			}
			if (!bf_refill(s))
				break;
			avail = s->out_len;
		}
		take = n - got < avail ? (size_t)(n - got) : avail;
		if (dst)
			memcpy((unsigned char *)dst + got, s->out + s->out_pos, take);
		s->out_pos += take;
		s->pos += take;
		got += take;
	}
	return got;
}

/* ------------------------------------------------------------ byte order */

static uint16_t bf_u16(const unsigned char *p, int be)
{
	return be ? (uint16_t)(p[0] << 8 | p[1]) : (uint16_t)(p[1] << 8 | p[0]);
}

static uint32_t bf_u32(const unsigned char *p, int be)
{
	return be ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
		  : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static uint64_t bf_u64(const unsigned char *p, int be)
{
	uint64_t a = bf_u32(p, be), b = bf_u32(p + 4, be);

	return be ? a << 32 | b : b << 32 | a;
}

/* ------------------------------------------------------------ SDNA */

struct bf_name {
	const char *s;
	char base[128];
	int is_pointer;
	int ndims;
	uint32_t dims[4];
	uint32_t count; /* product of dims */
};

struct bf_sfield {
	int type, name;
	uint32_t offset, size;
};

struct bf_struct {
	int type;
	int nfields;
	struct bf_sfield *fields;
};

struct blendfile_sdna {
	unsigned char *raw; /* the DNA1 data; strings point into it */
	int ptr_size, be;
	int nnames, ntypes, nstructs;
	struct bf_name *names;
	const char **types;
	uint32_t *tlen;
	int *type_struct; /* type index -> struct index or -1 */
	struct bf_struct *structs;
	struct bf_sfield *all_fields;
};

static void bf_sdna_free(struct blendfile_sdna *d)
{
	if (!d)
		return;
	free(d->raw);
	free(d->names);
	free(d->types);
	free(d->tlen);
	free(d->type_struct);
	free(d->structs);
	free(d->all_fields);
	free(d);
}

/*
 * A field name: "*next", "name[66]", "mat[4][4]", "(*func)()", "*var[3]".
 * Pointers are any name with a '*'; dims are the bracketed numbers.
 */
static int bf_parse_name(struct bf_name *n)
{
	const char *p = n->s;
	size_t b = 0;

	n->is_pointer = strchr(p, '*') != NULL;
	while (*p == '*' || *p == '(')
		p++;
	while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
	       *p == '_') {
		if (b + 1 >= sizeof(n->base))
			return -EINVAL;
		n->base[b++] = *p++;
	}
	n->base[b] = 0;
	if (!b)
		return -EINVAL;
	n->count = 1;
	while ((p = strchr(p, '['))) {
		char *end;
		unsigned long v = strtoul(p + 1, &end, 10);

		if (end == p + 1 || *end != ']' || v == 0 || v > BF_MAX_DIMS || n->ndims == 4)
			return -EINVAL;
		n->dims[n->ndims++] = (uint32_t)v;
		if ((uint64_t)n->count * v > BF_MAX_DIMS)
			return -EINVAL;
		n->count *= (uint32_t)v;
		p = end;
	}
	return 0;
}

struct bf_cursor {
	const unsigned char *p, *start, *end;
	int be;
};

static int bf_cur_tag(struct bf_cursor *c, const char *tag)
{
	size_t at = (size_t)(c->p - c->start);

	at = (at + 3) & ~(size_t)3;
	if (at > (size_t)(c->end - c->start) || (size_t)(c->end - c->start) - at < 4)
		return -EINVAL;
	c->p = c->start + at;
	if (memcmp(c->p, tag, 4))
		return -EINVAL;
	c->p += 4;
	return 0;
}

static int bf_cur_count(struct bf_cursor *c, int *out)
{
	uint32_t v;

	if (c->end - c->p < 4)
		return -EINVAL;
	v = bf_u32(c->p, c->be);
	c->p += 4;
	/* Every entry takes at least one byte of the block. */
	if (v == 0 || v > (uint32_t)(c->end - c->p) || v > INT32_MAX)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

/* NUL-terminated strings, each inside the block. */
static int bf_cur_strings(struct bf_cursor *c, int n, const char **out)
{
	for (int i = 0; i < n; i++) {
		const unsigned char *z = memchr(c->p, 0, (size_t)(c->end - c->p));

		if (!z)
			return -EINVAL;
		out[i] = (const char *)c->p;
		c->p = z + 1;
	}
	return 0;
}

static int bf_sdna_parse(unsigned char *raw, size_t len, int ptr_size, int be, struct blendfile_sdna **out,
			 char *err, size_t errsz)
{
	struct blendfile_sdna *d = calloc(1, sizeof(*d));
	struct bf_cursor c = {raw, raw, raw + len, be};
	const char **names = NULL;
	size_t nfields_total = 0;
	const unsigned char *strc;
	char shown[268];
	int ret = -EINVAL;

	if (!d) {
		free(raw);
		return bf_fail(err, errsz, -ENOMEM, "out of memory reading the SDNA");
	}
	d->raw = raw;
	d->ptr_size = ptr_size;
	d->be = be;
	if (len < 8 || memcmp(c.p, "SDNA", 4)) {
		bf_fail(err, errsz, -EINVAL, "damaged SDNA: the DNA1 block does not start with SDNA");
		goto out_free;
	}
	c.p += 4;
	if (bf_cur_tag(&c, "NAME") || bf_cur_count(&c, &d->nnames)) {
		bf_fail(err, errsz, -EINVAL, "damaged SDNA: no NAME table");
		goto out_free;
	}
	names = calloc((size_t)d->nnames, sizeof(*names));
	d->names = calloc((size_t)d->nnames, sizeof(*d->names));
	if (!names || !d->names)
		goto out_nomem;
	if (bf_cur_strings(&c, d->nnames, names)) {
		bf_fail(err, errsz, -EINVAL, "damaged SDNA: field names run past the block");
		goto out_free;
	}
	for (int i = 0; i < d->nnames; i++) {
		d->names[i].s = names[i];
		/* A bad name is only an error if a struct uses it. */
		if (bf_parse_name(&d->names[i]))
			d->names[i].base[0] = 0;
	}
	if (bf_cur_tag(&c, "TYPE") || bf_cur_count(&c, &d->ntypes)) {
		bf_fail(err, errsz, -EINVAL, "damaged SDNA: no TYPE table");
		goto out_free;
	}
	d->types = calloc((size_t)d->ntypes, sizeof(*d->types));
	d->tlen = calloc((size_t)d->ntypes, sizeof(*d->tlen));
	d->type_struct = malloc((size_t)d->ntypes * sizeof(*d->type_struct));
	if (!d->types || !d->tlen || !d->type_struct)
		goto out_nomem;
	if (bf_cur_strings(&c, d->ntypes, d->types)) {
		bf_fail(err, errsz, -EINVAL, "damaged SDNA: type names run past the block");
		goto out_free;
	}
	if (bf_cur_tag(&c, "TLEN") || (size_t)(c.end - c.p) < (size_t)d->ntypes * 2) {
		bf_fail(err, errsz, -EINVAL, "damaged SDNA: no TLEN table");
		goto out_free;
	}
	for (int i = 0; i < d->ntypes; i++) {
		d->tlen[i] = bf_u16(c.p, be);
		d->type_struct[i] = -1;
		c.p += 2;
	}
	if (bf_cur_tag(&c, "STRC") || bf_cur_count(&c, &d->nstructs)) {
		bf_fail(err, errsz, -EINVAL, "damaged SDNA: no STRC table");
		goto out_free;
	}
	/* First walk: check every index and count the fields. */
	strc = c.p;
	for (int i = 0; i < d->nstructs; i++) {
		int type, nf;

		if (c.end - c.p < 4)
			goto out_short;
		type = bf_u16(c.p, be);
		nf = bf_u16(c.p + 2, be);
		c.p += 4;
		if (type >= d->ntypes) {
			bf_fail(err, errsz, -EINVAL, "damaged SDNA: struct %d has type index %d of %d", i,
				type, d->ntypes);
			goto out_free;
		}
		if (d->type_struct[type] != -1) {
			bf_fail(err, errsz, -EINVAL, "damaged SDNA: type '%s' is described twice",
				bf_shown(d->types[type], shown));
			goto out_free;
		}
		d->type_struct[type] = i;
		if ((size_t)(c.end - c.p) < (size_t)nf * 4)
			goto out_short;
		c.p += (size_t)nf * 4;
		nfields_total += (size_t)nf;
	}
	d->structs = calloc((size_t)d->nstructs, sizeof(*d->structs));
	d->all_fields = calloc(nfields_total ? nfields_total : 1, sizeof(*d->all_fields));
	if (!d->structs || !d->all_fields)
		goto out_nomem;
	c.p = strc;
	nfields_total = 0;
	for (int i = 0; i < d->nstructs; i++) {
		struct bf_struct *st = &d->structs[i];
		uint64_t off = 0;

		st->type = bf_u16(c.p, be);
		st->nfields = bf_u16(c.p + 2, be);
		st->fields = d->all_fields + nfields_total;
		nfields_total += (size_t)st->nfields;
		c.p += 4;
		for (int f = 0; f < st->nfields; f++, c.p += 4) {
			struct bf_sfield *fl = &st->fields[f];
			const struct bf_name *nm;
			uint64_t sz;

			fl->type = bf_u16(c.p, be);
			fl->name = bf_u16(c.p + 2, be);
			if (fl->type >= d->ntypes || fl->name >= d->nnames) {
				bf_fail(
				    err, errsz, -EINVAL,
				    "damaged SDNA: field %d of struct '%s' has type %d of %d, name %d of %d",
				    f, bf_shown(d->types[st->type], shown), fl->type, d->ntypes, fl->name,
				    d->nnames);
				goto out_free;
			}
			nm = &d->names[fl->name];
			if (!nm->base[0]) {
				bf_fail(err, errsz, -EINVAL,
					"damaged SDNA: unreadable field name in struct '%s'",
					bf_shown(d->types[st->type], shown));
				goto out_free;
			}
			sz = (uint64_t)(nm->is_pointer ? (uint32_t)ptr_size : d->tlen[fl->type]) * nm->count;
			fl->offset = (uint32_t)off;
			fl->size = (uint32_t)sz;
			off += sz;
			if (off > UINT16_MAX) /* TLEN is 16 bits: no struct is larger */
				break;
		}
		/* makesdna pads every struct by hand: the fields fill it exactly. */
		if (off != d->tlen[st->type]) {
			bf_fail(err, errsz, -EINVAL,
				"damaged SDNA: struct '%s' has fields of %" PRIu64 " bytes but is %" PRIu32
				" bytes",
				bf_shown(d->types[st->type], shown), off, d->tlen[st->type]);
			goto out_free;
		}
	}
	free(names);
	*out = d;
	return 0;

out_short:
	bf_fail(err, errsz, -EINVAL, "damaged SDNA: struct table runs past the block");
	goto out_free;
out_nomem:
	ret = bf_fail(err, errsz, -ENOMEM, "out of memory reading the SDNA");
out_free:
	free(names);
	bf_sdna_free(d);
	return ret;
}

static int bf_sdna_struct(const struct blendfile_sdna *d, const char *name)
{
	for (int i = 0; i < d->nstructs; i++)
		if (!strcmp(d->types[d->structs[i].type], name))
			return i;
	return -1;
}

/* Find a dotted field path in struct si; 0 or -ENOENT. */
static int bf_sdna_field(const struct blendfile_sdna *d, int si, const char *path,
			 struct blendfile_field *out)
{
	uint32_t base = 0;

	while (si >= 0 && si < d->nstructs) {
		const struct bf_struct *st = &d->structs[si];
		const char *dot = strchr(path, '.');
		size_t seg = dot ? (size_t)(dot - path) : strlen(path);
		const struct bf_sfield *hit = NULL;
		const struct bf_name *nm;

		for (int f = 0; f < st->nfields; f++) {
			const char *b = d->names[st->fields[f].name].base;

			if (strlen(b) == seg && !memcmp(b, path, seg)) {
				hit = &st->fields[f];
				break;
			}
		}
		if (!hit)
			return -ENOENT;
		nm = &d->names[hit->name];
		if (dot) {
			if (nm->is_pointer || nm->ndims)
				return -ENOENT;
			base += hit->offset;
			si = d->type_struct[hit->type];
			path = dot + 1;
			continue;
		}
		memset(out, 0, sizeof(*out));
		out->offset = base + hit->offset;
		out->size = hit->size;
		out->is_pointer = nm->is_pointer;
		out->elem_size = nm->is_pointer ? (uint32_t)d->ptr_size : d->tlen[hit->type];
		out->ndims = nm->ndims;
		memcpy(out->dims, nm->dims, sizeof(out->dims));
		out->type = d->types[hit->type];
		return 0;
	}
	return -ENOENT;
}

/* ------------------------------------------------------------ blocks */

struct bf_block {
	unsigned char code[4];
	int sdna;
	uint64_t old;
	uint64_t len;
	uint64_t nr;
	unsigned char *data; /* NULL when not kept */
	size_t owner;        /* index in owners of the ID this block belongs to */
	int unused;          /* a point cache that its owner never uses (fluid domains) */
};

/* Every ID block seen: its address, code and name, for naming pointers. */
struct bf_owner {
	uint64_t old;
	char code[3];
	char name[260];
};

struct bf_reader {
	struct blendfile *bf;
	const struct blendfile_sdna *d;
	struct bf_stream s;
	const char *path;
	uint64_t max_expanded, max_blocks, max_kept, kept;
	int bhead_size;

	struct bf_block glob;
	struct bf_block *blocks;
	size_t nblocks, capblocks;
	struct bf_block **sorted; /* kept blocks ordered by (owner, old) */
	struct bf_owner *owners;
	size_t nowners, capowners;
	struct bf_owner **owners_sorted; /* by old */
	size_t ncaches;
	size_t cappaths, capscenes; /* allocated entries of bf->paths, bf->scenes */

	/* struct indices, -1 when the file has no such struct */
	int s_id, s_idprop, s_tile, s_ptcache, s_fluid, s_meshcache;
	/* sequencer strips: the strip, its data (folder), its file names */
	int s_strip, s_stripdata, s_stripelem;
	const char *strip_data_field; /* "strip" (to 4.3) or "data" (4.4 on) */
	uint32_t id_name_end;         /* bytes of an ID block needed to read its name */
};

static int bf_is_id_code(const unsigned char *c)
{
	return c[0] && c[1] && !c[2] && !c[3];
}

static int bf_header(struct bf_reader *r, char *err, size_t errsz)
{
	unsigned char h[17];
	struct blendfile *bf = r->bf;
	uint64_t n = bf_read(&r->s, h, 12);
	int v;

	if (n < 12 || memcmp(h, "BLENDER", 7)) {
		if (r->s.err == -EINVAL)
			return bf_fail(err, errsz, -EINVAL, "not a Blender file: %s", r->s.msg);
		if (r->s.err)
			return bf_fail(err, errsz, r->s.err, "read error: %s", strerror(-r->s.err));
		return bf_fail(err, errsz, -EINVAL, "not a Blender file (no BLENDER header)");
	}
	if ((h[7] == '_' || h[7] == '-') && (h[8] == 'v' || h[8] == 'V')) {
		if (h[9] < '0' || h[9] > '9' || h[10] < '0' || h[10] > '9' || h[11] < '0' || h[11] > '9')
			return bf_fail(err, errsz, -EINVAL, "Blender file header has no version digits");
		bf->ptr_size = h[7] == '_' ? 4 : 8;
		bf->big_endian = h[8] == 'V';
		bf->version = (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
		r->bhead_size = bf->ptr_size == 4 ? 20 : 24;
	} else if (!memcmp(h + 7, "17-", 3)) {
		/* "BLENDER" "17" (header size) "-" "01" (format) "v" "0500" */
		if (bf_read(&r->s, h + 12, 5) < 5)
			return bf_fail(err, errsz, -EINVAL,
				       "truncated Blender file: the header is cut short");
		if (memcmp(h + 10, "01", 2)) {
			/* The bytes are the file's: escaped, the reason stays one line. */
			unsigned char fv[4] = {h[10], h[11], 0, 0};
			char shown[20];

			bf_code_str(fv, shown);
			return bf_fail(err, errsz, -EINVAL, "unknown Blender file format version '%s'",
				       shown);
		}
		if (h[12] != 'v' && h[12] != 'V')
			return bf_fail(err, errsz, -EINVAL, "Blender file header has no byte order");
		v = 0;
		for (int i = 13; i < 17; i++) {
			if (h[i] < '0' || h[i] > '9')
				return bf_fail(err, errsz, -EINVAL,
					       "Blender file header has no version digits");
			v = v * 10 + (h[i] - '0');
		}
		bf->ptr_size = 8;
		bf->big_endian = h[12] == 'V';
		bf->large_bhead = 1;
		bf->version = v;
		r->bhead_size = 32;
	} else {
		return bf_fail(err, errsz, -EINVAL, "unrecognised Blender file header");
	}
	if (bf->version < 300)
		snprintf(bf->saved_by, sizeof(bf->saved_by), "%d.%02d", bf->version / 100, bf->version % 100);
	else
		snprintf(bf->saved_by, sizeof(bf->saved_by), "%d.%d", bf->version / 100, bf->version % 100);
	return 0;
}

/* Parse one BHead; 1 at ENDB. */
static int bf_bhead(struct bf_reader *r, const unsigned char *h, struct bf_block *b, uint64_t at, char *err,
		    size_t errsz)
{
	const struct blendfile *bf = r->bf;
	int be = bf->big_endian;
	char code[20];
	int64_t len, nr;
	uint32_t sdna;

	memset(b, 0, sizeof(*b));
	memcpy(b->code, h, 4);
	if (!memcmp(h, "ENDB", 4))
		return 1;
	if (bf->large_bhead) {
		sdna = bf_u32(h + 4, be);
		b->old = bf_u64(h + 8, be);
		len = (int64_t)bf_u64(h + 16, be);
		nr = (int64_t)bf_u64(h + 24, be);
	} else {
		len = (int32_t)bf_u32(h + 4, be);
		b->old = bf->ptr_size == 4 ? bf_u32(h + 8, be) : bf_u64(h + 8, be);
		sdna = bf_u32(h + r->bhead_size - 8, be);
		nr = (int32_t)bf_u32(h + r->bhead_size - 4, be);
	}
	bf_code_str(h, code);
	if (len < 0 || nr < 0)
		return bf_fail(err, errsz, -EINVAL,
			       "damaged Blender file: block '%s' at byte %" PRIu64 " has a negative %s", code,
			       at, len < 0 ? "length" : "count");
	if (r->s.kind == BLENDFILE_PLAIN && (uint64_t)len > r->s.file_size - r->s.pos)
		return bf_fail(err, errsz, -EINVAL,
			       "truncated Blender file: block '%s' at byte %" PRIu64 " is %" PRId64
			       " bytes, but the file ends %" PRIu64 " bytes later",
			       code, at, len, r->s.file_size - r->s.pos);
	if ((uint64_t)len > r->max_expanded - r->s.pos)
		return bf_fail(err, errsz, -EFBIG,
			       "Blender file too large: block '%s' at byte %" PRIu64
			       " would go past the cap of %" PRIu64 " bytes of .blend data",
			       code, at, r->max_expanded);
	if (r->d && (int64_t)sdna >= r->d->nstructs)
		return bf_fail(err, errsz, -EINVAL,
			       "damaged Blender file: block '%s' at byte %" PRIu64 " names struct %" PRIu32
			       " but the SDNA has %d",
			       code, at, sdna, r->d->nstructs);
	b->sdna = (int)sdna;
	b->len = (uint64_t)len;
	b->nr = (uint64_t)nr;
	b->data = NULL;
	return 0;
}

static int bf_short(struct bf_reader *r, uint64_t at, char *err, size_t errsz)
{
	if (r->s.err == -EINVAL)
		return bf_fail(err, errsz, -EINVAL, "%s (block at byte %" PRIu64 ")", r->s.msg, at);
	if (r->s.err)
		return bf_fail(err, errsz, r->s.err, "read error: %s", strerror(-r->s.err));
	return bf_fail(err, errsz, -EINVAL,
		       "truncated Blender file: the block at byte %" PRIu64
		       " runs past the end (%s data ends at %" PRIu64 " bytes)",
		       at,
		       r->s.kind == BLENDFILE_PLAIN  ? "plain"
		       : r->s.kind == BLENDFILE_GZIP ? "gzip"
						     : "zstd",
		       r->s.pos);
}

static int bf_keep(struct bf_reader *r, struct bf_block *b, uint64_t at, char *err, size_t errsz)
{
	if (b->len > r->max_kept - r->kept)
		return bf_fail(err, errsz, -EFBIG,
			       "Blender file too large: keeping the block at byte %" PRIu64
			       " would pass the cap of %" PRIu64 " bytes held in memory",
			       at, r->max_kept);
	b->data = malloc(b->len ? b->len : 1);
	if (!b->data)
		return bf_fail(err, errsz, -ENOMEM, "out of memory reading block at byte %" PRIu64, at);
	r->kept += b->len;
	if (bf_read(&r->s, b->data, b->len) < b->len) {
		free(b->data);
		b->data = NULL;
		return bf_short(r, at, err, errsz);
	}
	return 0;
}

/* Pass 1: walk every block; keep DNA1 and GLOB. */
static int bf_pass1(struct bf_reader *r, unsigned char **dna, size_t *dnalen, char *err, size_t errsz)
{
	unsigned char h[32];
	int ret;

	ret = bf_header(r, err, errsz);
	if (ret)
		return ret;
	for (;;) {
		uint64_t at = r->s.pos;
		struct bf_block b;

		if (bf_read(&r->s, h, (uint64_t)r->bhead_size) < (uint64_t)r->bhead_size) {
			if (r->s.pos == at && !r->s.err)
				return bf_fail(
				    err, errsz, -EINVAL,
				    "truncated Blender file: no ENDB block (blocks end at byte %" PRIu64 ")",
				    at);
			return bf_short(r, at, err, errsz);
		}
		ret = bf_bhead(r, h, &b, at, err, errsz);
		if (ret == 1)
			break;
		if (ret)
			return ret;
		if (++r->bf->nblocks > r->max_blocks)
			return bf_fail(err, errsz, -EFBIG, "Blender file has more than %" PRIu64 " blocks",
				       r->max_blocks);
		if (!memcmp(b.code, "DNA1", 4)) {
			if (*dna)
				return bf_fail(err, errsz, -EINVAL, "damaged Blender file: two DNA1 blocks");
			if (b.len > BLENDFILE_MAX_SDNA)
				return bf_fail(err, errsz, -EFBIG,
					       "Blender file's SDNA is %" PRIu64 " bytes (cap %u)", b.len,
					       BLENDFILE_MAX_SDNA);
			ret = bf_keep(r, &b, at, err, errsz);
			if (ret)
				return ret;
			*dna = b.data;
			*dnalen = (size_t)b.len;
			continue;
		}
		if (!memcmp(b.code, "GLOB", 4) && !r->glob.data && b.len <= BF_MAX_GLOB) {
			ret = bf_keep(r, &b, at, err, errsz);
			if (ret)
				return ret;
			r->glob = b;
			continue;
		}
		if (bf_read(&r->s, NULL, b.len) < b.len)
			return bf_short(r, at, err, errsz);
	}
	r->bf->expanded_size = r->s.pos;
	if (!*dna)
		return bf_fail(err, errsz, -EINVAL, "damaged Blender file: no DNA1 block (no SDNA)");
	return 0;
}

static const char *bf_struct_name_of(const struct bf_reader *r, int si)
{
	return r->d->types[r->d->structs[si].type];
}

/* Is this block one we extract from? */
static int bf_wanted(const struct bf_reader *r, const struct bf_block *b)
{
	static const char *const ids[][2] = {
	    {"SC", "Scene"}, {"IM", "Image"},   {"MC", "MovieClip"}, {"SO", "bSound"},
	    {"VF", "VFont"}, {"LI", "Library"}, {"VO", "Volume"},    {"CF", "CacheFile"},
	};

	if (bf_is_id_code(b->code)) {
		for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
			if (!memcmp(b->code, ids[i][0], 2))
				return !strcmp(bf_struct_name_of(r, b->sdna), ids[i][1]);
		return 0;
	}
	if (memcmp(b->code, "DATA", 4) || !r->nowners)
		return 0;
	if (b->sdna == r->s_idprop)
		return !strcmp(r->owners[r->nowners - 1].code, "SC");
	if (b->sdna == r->s_tile)
		return !strcmp(r->owners[r->nowners - 1].code, "IM");
	if (b->sdna == r->s_strip || b->sdna == r->s_stripdata || b->sdna == r->s_stripelem)
		return !strcmp(r->owners[r->nowners - 1].code, "SC");
	return b->sdna == r->s_ptcache || b->sdna == r->s_fluid || b->sdna == r->s_meshcache;
}

static void bf_copy_str(char *dst, size_t dstsz, const unsigned char *src, size_t n)
{
	size_t l = 0;

	while (l < n && l + 1 < dstsz && src[l])
		l++;
	memcpy(dst, src, l);
	dst[l] = 0;
}

static int bf_add_owner(struct bf_reader *r, const struct bf_block *b, const unsigned char *head,
			size_t headlen)
{
	struct blendfile_field f;
	struct bf_owner *o;
	int si = b->sdna;

	/* Names of IDs count as kept memory: a file of tiny ID blocks is cheap to compress. */
	if (sizeof(*o) > r->max_kept - r->kept)
		return -EFBIG;
	r->kept += sizeof(*o);
	if (r->nowners == r->capowners) {
		size_t cap = r->capowners ? r->capowners * 2 : 256;
		struct bf_owner *p = realloc(r->owners, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		r->owners = p;
		r->capowners = cap;
	}
	o = &r->owners[r->nowners++];
	memset(o, 0, sizeof(*o));
	o->old = b->old;
	memcpy(o->code, b->code, 2);
	/* Every ID struct starts with "ID id"; the ID placeholder is an ID. */
	if (bf_sdna_field(r->d, si, "id.name", &f) && bf_sdna_field(r->d, si, "name", &f))
		return 0;
	if (f.offset < headlen) {
		size_t n = headlen - f.offset < f.size ? headlen - f.offset : f.size;

		/* Skip the two-letter prefix ("OBCamera"). */
		if (n > 2)
			bf_copy_str(o->name, sizeof(o->name), head + f.offset + 2, n - 2);
	}
	return 0;
}

static int bf_push_block(struct bf_reader *r, const struct bf_block *b)
{
	if (sizeof(*b) > r->max_kept - r->kept)
		return -EFBIG;
	r->kept += sizeof(*b);
	if (r->nblocks == r->capblocks) {
		size_t cap = r->capblocks ? r->capblocks * 2 : 64;
		struct bf_block *p = realloc(r->blocks, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		r->blocks = p;
		r->capblocks = cap;
	}
	r->blocks[r->nblocks++] = *b;
	return 0;
}

static int bf_kept_fail(const struct bf_reader *r, int ret, uint64_t at, char *err, size_t errsz)
{
	if (ret == -EFBIG)
		return bf_fail(err, errsz, -EFBIG,
			       "Blender file too large: the block at byte %" PRIu64
			       " would pass the cap of %" PRIu64 " bytes held in memory",
			       at, r->max_kept);
	return bf_fail(err, errsz, ret, "out of memory");
}

/* Pass 2: keep what we extract from, name every ID. */
static int bf_pass2(struct bf_reader *r, char *err, size_t errsz)
{
	unsigned char h[32];
	unsigned char *head = NULL;
	int ret;

	ret = bf_stream_rewind(&r->s);
	if (ret)
		return bf_fail(err, errsz, ret, "cannot rewind the file");
	ret = bf_header(r, err, errsz);
	if (ret)
		return ret;
	head = malloc(r->id_name_end ? r->id_name_end : 1);
	if (!head)
		return bf_fail(err, errsz, -ENOMEM, "out of memory");
	for (;;) {
		uint64_t at = r->s.pos;
		uint64_t done = 0;
		struct bf_block b;

		if (bf_read(&r->s, h, (uint64_t)r->bhead_size) < (uint64_t)r->bhead_size) {
			ret = bf_short(r, at, err, errsz);
			goto out_head;
		}
		ret = bf_bhead(r, h, &b, at, err, errsz);
		if (ret == 1)
			break;
		if (ret)
			goto out_head;
		if (bf_is_id_code(b.code)) {
			size_t want = b.len < r->id_name_end ? (size_t)b.len : r->id_name_end;

			if (bf_wanted(r, &b)) {
				ret = bf_keep(r, &b, at, err, errsz);
				if (ret)
					goto out_head;
				ret = bf_add_owner(r, &b, b.data, (size_t)b.len);
				done = b.len;
			} else {
				if (bf_read(&r->s, head, want) < want) {
					ret = bf_short(r, at, err, errsz);
					goto out_head;
				}
				done = want;
				ret = bf_add_owner(r, &b, head, want);
			}
			if (ret) {
				bf_kept_fail(r, ret, at, err, errsz);
				goto out_head;
			}
		} else if (bf_wanted(r, &b)) {
			ret = bf_keep(r, &b, at, err, errsz);
			if (ret)
				goto out_head;
			done = b.len;
		}
		if (b.data) {
			b.owner = r->nowners - 1;
			ret = bf_push_block(r, &b);
			if (ret) {
				free(b.data);
				bf_kept_fail(r, ret, at, err, errsz);
				goto out_head;
			}
		}
		if (bf_read(&r->s, NULL, b.len - done) < b.len - done) {
			ret = bf_short(r, at, err, errsz);
			goto out_head;
		}
	}
	ret = 0;
out_head:
	free(head);
	return ret;
}

/* ------------------------------------------------------------ field access */

/* The field at path in element 0 of block b, checked to lie inside it. */
static int bf_at(const struct bf_reader *r, const struct bf_block *b, const char *path,
		 struct blendfile_field *f)
{
	if (!b || !b->data || bf_sdna_field(r->d, b->sdna, path, f))
		return -ENOENT;
	if ((uint64_t)f->offset + f->size > b->len)
		return -ENOENT;
	return 0;
}

static int bf_is_float(const char *t)
{
	return !strcmp(t, "float") || !strcmp(t, "double");
}

static int64_t bf_int(const struct bf_reader *r, const struct bf_block *b, const char *path, int64_t dflt)
{
	struct blendfile_field f;
	const unsigned char *p;
	int be = r->d->be;
	int uns;

	if (bf_at(r, b, path, &f) || f.is_pointer || f.ndims || bf_is_float(f.type))
		return dflt;
	p = b->data + f.offset;
	uns = f.type[0] == 'u';
	switch (f.elem_size) {
	case 1: return uns ? (int64_t)p[0] : (int64_t)(int8_t)p[0];
	case 2: return uns ? (int64_t)bf_u16(p, be) : (int64_t)(int16_t)bf_u16(p, be);
	case 4: return uns ? (int64_t)bf_u32(p, be) : (int64_t)(int32_t)bf_u32(p, be);
	case 8: return (int64_t)bf_u64(p, be);
	default: return dflt;
	}
}

static double bf_float(const struct bf_reader *r, const struct bf_block *b, const char *path, double dflt)
{
	struct blendfile_field f;
	const unsigned char *p;

	if (bf_at(r, b, path, &f) || f.is_pointer || f.ndims || !bf_is_float(f.type))
		return dflt;
	p = b->data + f.offset;
	if (f.elem_size == 4) {
		uint32_t u = bf_u32(p, r->d->be);
		float v;

		memcpy(&v, &u, 4);
		return v;
	}
	if (f.elem_size == 8) {
		uint64_t u = bf_u64(p, r->d->be);
		double v;

		memcpy(&v, &u, 8);
		return v;
	}
	return dflt;
}

static uint64_t bf_ptr(const struct bf_reader *r, const struct bf_block *b, const char *path)
{
	struct blendfile_field f;

	if (bf_at(r, b, path, &f) || !f.is_pointer || f.ndims)
		return 0;
	return r->d->ptr_size == 4 ? bf_u32(b->data + f.offset, r->d->be)
				   : bf_u64(b->data + f.offset, r->d->be);
}

/* The pointer at byte off of block b; 0 when outside it. */
static uint64_t bf_ptr_raw(const struct bf_reader *r, const struct bf_block *b, uint64_t off)
{
	if (off + (uint64_t)r->d->ptr_size > b->len)
		return 0;
	return r->d->ptr_size == 4 ? bf_u32(b->data + off, r->d->be) : bf_u64(b->data + off, r->d->be);
}

/* Whether the struct has the field at all (versions differ). */
static int bf_has(const struct bf_reader *r, const struct bf_block *b, const char *path)
{
	struct blendfile_field f;

	return !bf_at(r, b, path, &f);
}

/* A char array field as a string; "" when absent. */
static void bf_str(const struct bf_reader *r, const struct bf_block *b, const char *path, char *buf, size_t n)
{
	struct blendfile_field f;

	buf[0] = 0;
	if (bf_at(r, b, path, &f) || f.is_pointer || f.elem_size != 1)
		return;
	bf_copy_str(buf, n, b->data + f.offset, f.size);
}

static int bf_cmp_block(const void *a, const void *b)
{
	const struct bf_block *x = *(const struct bf_block *const *)a,
			      *y = *(const struct bf_block *const *)b;

	if (x->owner != y->owner)
		return x->owner < y->owner ? -1 : 1;
	if (x->old != y->old)
		return x->old < y->old ? -1 : 1;
	return 0;
}

static int bf_cmp_owner(const void *a, const void *b)
{
	const struct bf_owner *x = *(const struct bf_owner *const *)a,
			      *y = *(const struct bf_owner *const *)b;

	return x->old < y->old ? -1 : x->old > y->old;
}

/* The kept block of the same ID at address old, of struct si; NULL if none. */
static const struct bf_block *bf_deref(const struct bf_reader *r, size_t owner, uint64_t old, int si)
{
	size_t lo = 0, hi = r->nblocks;

	if (!old)
		return NULL;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct bf_block *m = r->sorted[mid];

		if (m->owner < owner || (m->owner == owner && m->old < old))
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < r->nblocks && r->sorted[lo]->owner == owner && r->sorted[lo]->old == old &&
	    r->sorted[lo]->sdna == si)
		return r->sorted[lo];
	return NULL;
}

static const struct bf_owner *bf_find_id(const struct bf_reader *r, uint64_t old, const char *code)
{
	size_t lo = 0, hi = r->nowners;

	if (!old)
		return NULL;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (r->owners_sorted[mid]->old < old)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < r->nowners && r->owners_sorted[lo]->old == old; lo++)
		if (!strcmp(r->owners_sorted[lo]->code, code))
			return r->owners_sorted[lo];
	return NULL;
}

/* ------------------------------------------------------------ extraction */

/* A child of IDProperty group g named name (any type); NULL if none. */
static const struct bf_block *bf_idp_child(const struct bf_reader *r, const struct bf_block *g,
					   const char *name)
{
	uint64_t p;
	char nm[80];

	if (!g || bf_int(r, g, "type", -1) != BF_IDP_GROUP)
		return NULL;
	p = bf_ptr(r, g, "data.group.first");
	for (int steps = 0; p && steps < BF_MAX_LIST; steps++) {
		const struct bf_block *c = bf_deref(r, g->owner, p, r->s_idprop);

		if (!c)
			return NULL;
		bf_str(r, c, "name", nm, sizeof(nm));
		if (!strcmp(nm, name))
			return c;
		p = bf_ptr(r, c, "next");
	}
	return NULL;
}

static int bf_cycles_samples(const struct bf_reader *r, const struct bf_block *sc)
{
	static const char *const roots[] = {"id.properties", "id.system_properties"};

	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
		const struct bf_block *root = bf_deref(r, sc->owner, bf_ptr(r, sc, roots[i]), r->s_idprop);
		const struct bf_block *cy = bf_idp_child(r, root, "cycles");
		const struct bf_block *smp = bf_idp_child(r, cy, "samples");

		if (smp && bf_int(r, smp, "type", -1) == BF_IDP_INT)
			return (int)bf_int(r, smp, "data.val", -1);
	}
	return -1;
}

static int bf_add_scene(struct bf_reader *r, const struct bf_block *b, uint64_t curscene)
{
	struct blendfile *bf = r->bf;
	struct blendfile_scene *sc, *p;
	const struct bf_owner *cam;

	if (bf->nscenes == r->capscenes) {
		size_t cap = r->capscenes ? 2 * r->capscenes : 4;

		p = realloc(bf->scenes, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		bf->scenes = p;
		r->capscenes = cap;
	}
	sc = &bf->scenes[bf->nscenes++];
	memset(sc, 0, sizeof(*sc));
	snprintf(sc->name, sizeof(sc->name), "%s", r->owners[b->owner].name);
	sc->active = curscene && curscene == b->old;
	sc->frame_start = (int)bf_int(r, b, "r.sfra", 1);
	sc->frame_end = (int)bf_int(r, b, "r.efra", 1);
	sc->frame_step = (int)bf_int(r, b, "r.frame_step", 1);
	sc->fps = (int)bf_int(r, b, "r.frs_sec", 24);
	sc->fps_base = bf_float(r, b, "r.frs_sec_base", 1.0);
	sc->res_x = (int)bf_int(r, b, "r.xsch", 0);
	sc->res_y = (int)bf_int(r, b, "r.ysch", 0);
	sc->res_percent = (int)bf_int(r, b, "r.size", 100);
	bf_str(r, b, "r.engine", sc->engine, sizeof(sc->engine));
	sc->samples = -1;
	if (!strcmp(sc->engine, "CYCLES"))
		sc->samples = bf_cycles_samples(r, b);
	else if (!strncmp(sc->engine, "BLENDER_EEVEE", 13))
		sc->samples = (int)bf_int(r, b, "eevee.taa_render_samples", -1);
	cam = bf_find_id(r, bf_ptr(r, b, "camera"), "OB");
	if (cam)
		snprintf(sc->camera, sizeof(sc->camera), "%s", cam->name);
	return 0;
}

static int bf_add_path(struct bf_reader *r, enum blendfile_kind kind, enum blendfile_source src,
		       const char *path, const char *user, int packed, struct blendfile_path **out)
{
	struct blendfile *bf = r->bf;
	struct blendfile_path *p, *e;

	if (bf->npaths >= BF_MAX_PATHS)
		return -EFBIG;
	if (bf->npaths == r->cappaths) {
		size_t cap = r->cappaths ? 2 * r->cappaths : 16;

		p = realloc(bf->paths, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		bf->paths = p;
		r->cappaths = cap;
	}
	e = &bf->paths[bf->npaths];
	memset(e, 0, sizeof(*e));
	e->kind = kind;
	e->source = src;
	e->packed = packed;
	e->path = strdup(path);
	e->user = strdup(user);
	if (!e->path || !e->user) {
		free(e->path);
		free(e->user);
		return -ENOMEM;
	}
	bf->npaths++;
	if (out)
		*out = e;
	return 0;
}

/*
 * A cache folder; the same folder for the same user is listed once.  Blocks
 * are taken in file order and an ID's data follows it, so the entries of
 * this user are the last ones: only those are compared.
 */
static int bf_add_cache(struct bf_reader *r, enum blendfile_kind kind, const char *path, const char *user)
{
	struct blendfile *bf = r->bf;

	for (size_t i = bf->npaths; i-- > 0;) {
		const struct blendfile_path *e = &bf->paths[i];

		if (strcmp(e->user, user))
			break;
		if (e->kind == kind && !strcmp(e->path, path))
			return 0;
	}
	if (++r->ncaches > BF_MAX_CACHES)
		return -EFBIG;
	return bf_add_path(r, kind, BLENDFILE_SRC_DIR, path, user, 0, NULL);
}

static int bf_packed(const struct bf_reader *r, const struct bf_block *b)
{
	return bf_ptr(r, b, "packedfile") != 0 || bf_ptr(r, b, "packedfiles.first") != 0;
}

/* The path field: renamed from "name" to "filepath" in 2.9x/3.x. */
static void bf_filepath(const struct bf_reader *r, const struct bf_block *b, char *buf, size_t n)
{
	if (!memcmp(b->code, "LI", 2) && !bf_has(r, b, "filepath_abs") && bf_has(r, b, "name")) {
		/* Before 2.93 Library.name held the path as written and
		 * Library.filepath the absolute one Blender made of it. */
		bf_str(r, b, "name", buf, n);
		return;
	}
	if (bf_has(r, b, "filepath"))
		bf_str(r, b, "filepath", buf, n);
	else
		bf_str(r, b, "name", buf, n);
}

static int bf_add_tiles(struct bf_reader *r, const struct bf_block *im, struct blendfile_path *e)
{
	uint64_t p = bf_ptr(r, im, "tiles.first");

	for (int steps = 0; p && steps < BF_MAX_TILES; steps++) {
		const struct bf_block *t = bf_deref(r, im->owner, p, r->s_tile);
		int *nt;

		if (!t)
			break;
		nt = realloc(e->tiles, (e->ntiles + 1) * sizeof(*nt));
		if (!nt)
			return -ENOMEM;
		e->tiles = nt;
		e->tiles[e->ntiles++] = (int)bf_int(r, t, "tile_number", 0);
		p = bf_ptr(r, t, "next");
	}
	return 0;
}

static int bf_extract_id(struct bf_reader *r, const struct bf_block *b, uint64_t curscene)
{
	char path[1100];
	const char *user = r->owners[b->owner].name;
	const char *c = (const char *)b->code;
	struct blendfile_path *e = NULL;
	int src, ret;

	if (!memcmp(c, "SC", 2))
		return bf_add_scene(r, b, curscene);
	bf_filepath(r, b, path, sizeof(path));
	if (!path[0])
		return 0;
	if (!memcmp(c, "IM", 2)) {
		src = (int)bf_int(r, b, "source", 1);
		if (src == BF_IMA_SRC_GENERATED || src == BF_IMA_SRC_VIEWER)
			return 0;
		ret = bf_add_path(r, BLENDFILE_IMAGE,
				  src == BF_IMA_SRC_SEQUENCE ? BLENDFILE_SRC_SEQUENCE
				  : src == BF_IMA_SRC_MOVIE  ? BLENDFILE_SRC_MOVIE
				  : src == BF_IMA_SRC_TILED  ? BLENDFILE_SRC_TILED
							     : BLENDFILE_SRC_FILE,
				  path, user, bf_packed(r, b), &e);
		if (!ret && src == BF_IMA_SRC_TILED)
			ret = bf_add_tiles(r, b, e);
		return ret;
	}
	if (!memcmp(c, "MC", 2)) {
		src = (int)bf_int(r, b, "source", 0);
		return bf_add_path(r, BLENDFILE_MOVIECLIP,
				   src == BF_MCLIP_SRC_SEQUENCE ? BLENDFILE_SRC_SEQUENCE
								: BLENDFILE_SRC_MOVIE,
				   path, user, 0, NULL);
	}
	if (!memcmp(c, "SO", 2))
		return bf_add_path(r, BLENDFILE_SOUND, BLENDFILE_SRC_FILE, path, user, bf_packed(r, b), NULL);
	if (!memcmp(c, "VF", 2)) {
		if (!strcmp(path, "<builtin>"))
			return 0;
		return bf_add_path(r, BLENDFILE_FONT, BLENDFILE_SRC_FILE, path, user, bf_packed(r, b), NULL);
	}
	if (!memcmp(c, "LI", 2))
		return bf_add_path(r, BLENDFILE_LIBRARY, BLENDFILE_SRC_FILE, path, user, bf_packed(r, b),
				   NULL);
	if (!memcmp(c, "VO", 2))
		return bf_add_path(r, BLENDFILE_VOLUME,
				   bf_int(r, b, "is_sequence", 0) ? BLENDFILE_SRC_SEQUENCE
								  : BLENDFILE_SRC_FILE,
				   path, user, bf_packed(r, b), NULL);
	if (!memcmp(c, "CF", 2))
		return bf_add_path(r, BLENDFILE_CACHEFILE, BLENDFILE_SRC_FILE, path, user, bf_packed(r, b),
				   NULL);
	return 0;
}

/* Point caches on disk go to "//blendcache_NAME/" unless given a folder. */
static int bf_extract_ptcache(struct bf_reader *r, const struct bf_block *b)
{
	int64_t flag = bf_int(r, b, "flag", 0);
	char path[1100];

	/* Fluid domains write a dummy "fake smoke" cache for old Blenders. */
	if (flag & BF_PTCACHE_FAKE_SMOKE)
		return 0;
	if (flag & BF_PTCACHE_EXTERNAL) {
		bf_str(r, b, "path", path, sizeof(path));
		if (!path[0])
			return 0;
	} else if (flag & BF_PTCACHE_DISK_CACHE) {
		const char *base = strrchr(r->path, '/');
		size_t n;

		base = base ? base + 1 : r->path;
		n = strlen(base);
		if (n > 6 && !strcmp(base + n - 6, ".blend"))
			n -= 6;
		snprintf(path, sizeof(path), "//blendcache_%.*s/", (int)n, base);
	} else {
		return 0;
	}
	return bf_add_cache(r, BLENDFILE_POINTCACHE, path, r->owners[b->owner].name);
}

/*
 * Since Mantaflow (2.82) a fluid domain caches into its cache_directory; it
 * still carries point caches (ptcaches[2], flagged as disk caches) that
 * nothing reads.  Mark them so that no blendcache folder is asked for.
 */
static void bf_mark_fluid_ptcaches(struct bf_reader *r, const struct bf_block *fl)
{
	struct blendfile_field f;

	if (bf_at(r, fl, "ptcaches", &f) || f.is_pointer || f.ndims != 1)
		return;
	for (uint32_t i = 0; i < f.dims[0]; i++) {
		uint64_t p = bf_ptr_raw(r, fl, (uint64_t)f.offset + (uint64_t)i * f.elem_size);

		for (int steps = 0; p && steps < BF_MAX_LIST; steps++) {
			struct bf_block *pc = (struct bf_block *)bf_deref(r, fl->owner, p, r->s_ptcache);

			if (!pc || pc->unused)
				break;
			pc->unused = 1;
			p = bf_ptr(r, pc, "next");
		}
	}
}

/*
 * Video sequencer strips name their files as a folder and file names:
 * Sequence.strip -> Strip {dir, stripdata -> StripElem[] {name}} up to 4.3
 * (dirpath and filename from 3.6), Strip.data -> StripData from 4.4.
 * Image strips list every frame's file; movie strips one file.  Sound
 * strips use a sound ID, which is listed already.
 */
static int bf_extract_strip(struct bf_reader *r, const struct bf_block *st)
{
	int64_t type = bf_int(r, st, "type", -1);
	const struct bf_block *data, *elems;
	struct blendfile_field nf;
	char dir[800], name[300], user[80], path[1100];
	uint32_t esize;
	uint64_t n;
	int ret = 0;

	if (type != BF_SEQ_TYPE_IMAGE && type != BF_SEQ_TYPE_MOVIE)
		return 0;
	data = bf_deref(r, st->owner, bf_ptr(r, st, r->strip_data_field), r->s_stripdata);
	if (!data)
		return 0;
	bf_str(r, data, bf_has(r, data, "dirpath") ? "dirpath" : "dir", dir, sizeof(dir));
	elems = bf_deref(r, st->owner, bf_ptr(r, data, "stripdata"), r->s_stripelem);
	if (!elems ||
	    bf_sdna_field(r->d, elems->sdna, bf_has(r, elems, "filename") ? "filename" : "name", &nf))
		return 0;
	esize = r->d->tlen[r->d->structs[elems->sdna].type];
	if (!esize || nf.offset + nf.size > esize)
		return 0;
	bf_str(r, st, "name", user, sizeof(user));
	n = elems->len / esize;
	if (type == BF_SEQ_TYPE_MOVIE && n > 1)
		n = 1;
	for (uint64_t i = 0; i < n && !ret; i++) {
		size_t dl = strlen(dir);

		bf_copy_str(name, sizeof(name), elems->data + i * esize + nf.offset, nf.size);
		if (!name[0])
			continue;
		snprintf(path, sizeof(path), "%s%s%s", dir, dl && dir[dl - 1] != '/' ? "/" : "", name);
		/* Strip names carry the "SQ" prefix of ID names. */
		ret = bf_add_path(r, BLENDFILE_STRIP,
				  type == BF_SEQ_TYPE_MOVIE ? BLENDFILE_SRC_MOVIE : BLENDFILE_SRC_FILE, path,
				  strncmp(user, "SQ", 2) ? user : user + 2, 0, NULL);
	}
	return ret;
}

static int bf_extract(struct bf_reader *r, char *err, size_t errsz)
{
	struct blendfile *bf = r->bf;
	uint64_t curscene = 0;
	char buf[1100];
	int ret = 0;

	if (r->glob.data) {
		int si = bf_sdna_struct(r->d, "FileGlobal");

		if (si >= 0 && r->glob.sdna == si) {
			r->glob.owner = 0;
			bf->subversion = (int)bf_int(r, &r->glob, "subversion", -1);
			bf_str(r, &r->glob, "build_hash", bf->build_hash, sizeof(bf->build_hash));
			curscene = bf_ptr(r, &r->glob, "curscene");
			bf_str(r, &r->glob, bf_has(r, &r->glob, "filepath") ? "filepath" : "filename", buf,
			       sizeof(buf));
			if (buf[0] && !(bf->saved_path = strdup(buf)))
				return bf_fail(err, errsz, -ENOMEM, "out of memory");
		}
	}
	r->sorted = malloc((r->nblocks ? r->nblocks : 1) * sizeof(*r->sorted));
	r->owners_sorted = malloc((r->nowners ? r->nowners : 1) * sizeof(*r->owners_sorted));
	if (!r->sorted || !r->owners_sorted)
		return bf_fail(err, errsz, -ENOMEM, "out of memory");
	for (size_t i = 0; i < r->nblocks; i++)
		r->sorted[i] = &r->blocks[i];
	qsort(r->sorted, r->nblocks, sizeof(*r->sorted), bf_cmp_block);
	for (size_t i = 0; i < r->nowners; i++)
		r->owners_sorted[i] = &r->owners[i];
	qsort(r->owners_sorted, r->nowners, sizeof(*r->owners_sorted), bf_cmp_owner);

	for (size_t i = 0; i < r->nblocks; i++)
		if (r->blocks[i].sdna == r->s_fluid && bf_has(r, &r->blocks[i], "cache_directory"))
			bf_mark_fluid_ptcaches(r, &r->blocks[i]);
	for (size_t i = 0; i < r->nblocks && !ret; i++) {
		const struct bf_block *b = &r->blocks[i];

		if (bf_is_id_code(b->code)) {
			ret = bf_extract_id(r, b, curscene);
		} else if (b->sdna == r->s_ptcache && !b->unused) {
			ret = bf_extract_ptcache(r, b);
		} else if (b->sdna == r->s_fluid) {
			bf_str(r, b, "cache_directory", buf, sizeof(buf));
			if (buf[0])
				ret = bf_add_cache(r, BLENDFILE_FLUIDCACHE, buf, r->owners[b->owner].name);
		} else if (b->sdna == r->s_strip) {
			ret = bf_extract_strip(r, b);
		} else if (b->sdna == r->s_meshcache) {
			bf_str(r, b, "filepath", buf, sizeof(buf));
			if (buf[0])
				ret = bf_add_path(r, BLENDFILE_MESHCACHE, BLENDFILE_SRC_FILE, buf,
						  r->owners[b->owner].name, 0, NULL);
		}
	}
	if (ret == -EFBIG)
		return bf_fail(err, errsz, -EFBIG, "Blender file lists too many external files");
	if (ret)
		return bf_fail(err, errsz, ret, "out of memory");
	return 0;
}

static void bf_reader_free(struct bf_reader *r)
{
	for (size_t i = 0; i < r->nblocks; i++)
		free(r->blocks[i].data);
	free(r->blocks);
	free(r->glob.data);
	free(r->sorted);
	free(r->owners);
	free(r->owners_sorted);
	bf_stream_close(&r->s);
}

int blendfile_open(const char *path, const struct blendfile_limits *limits, struct blendfile **out, char *err,
		   size_t errsz)
{
	struct bf_reader r;
	struct blendfile *bf;
	unsigned char *dna = NULL;
	size_t dnalen = 0;
	struct blendfile_field f;
	struct stat st;
	int fd, ret;

	*out = NULL;
	if (err && errsz)
		err[0] = 0;
	memset(&r, 0, sizeof(r));
	r.path = path;
	r.max_expanded = limits && limits->max_expanded ? limits->max_expanded : BLENDFILE_MAX_EXPANDED;
	r.max_blocks = limits && limits->max_blocks ? limits->max_blocks : BLENDFILE_MAX_BLOCKS;
	r.max_kept = limits && limits->max_kept ? limits->max_kept : BLENDFILE_MAX_KEPT;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return bf_fail(err, errsz, -errno, "cannot open: %s", strerror(errno));
	if (fstat(fd, &st)) {
		ret = bf_fail(err, errsz, -errno, "cannot stat: %s", strerror(errno));
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = bf_fail(err, errsz, -EINVAL, "not a regular file");
		goto out_close;
	}
	bf = calloc(1, sizeof(*bf));
	if (!bf) {
		ret = bf_fail(err, errsz, -ENOMEM, "out of memory");
		goto out_close;
	}
	bf->subversion = -1;
	r.bf = bf;
	ret = bf_stream_open(&r.s, fd, (uint64_t)st.st_size);
	if (ret) {
		bf_fail(err, errsz, ret, "cannot start reading: %s", strerror(-ret));
		goto out_reader;
	}
	bf->compression = r.s.kind;
	ret = bf_pass1(&r, &dna, &dnalen, err, errsz);
	if (ret) {
		free(dna);
		goto out_reader;
	}
	ret = bf_sdna_parse(dna, dnalen, bf->ptr_size, bf->big_endian, &bf->sdna, err, errsz);
	if (ret)
		goto out_reader;
	r.d = bf->sdna;
	r.s_id = bf_sdna_struct(r.d, "ID");
	r.s_idprop = bf_sdna_struct(r.d, "IDProperty");
	r.s_tile = bf_sdna_struct(r.d, "ImageTile");
	r.s_ptcache = bf_sdna_struct(r.d, "PointCache");
	r.s_fluid = bf_sdna_struct(r.d, "FluidDomainSettings");
	r.s_meshcache = bf_sdna_struct(r.d, "MeshCacheModifierData");
	r.s_stripelem = bf_sdna_struct(r.d, "StripElem");
	r.s_strip = r.s_stripdata = -1;
	if (bf_sdna_struct(r.d, "StripData") >= 0) {
		r.s_strip = bf_sdna_struct(r.d, "Strip");
		r.s_stripdata = bf_sdna_struct(r.d, "StripData");
		r.strip_data_field = "data";
	} else if (bf_sdna_struct(r.d, "Sequence") >= 0) {
		r.s_strip = bf_sdna_struct(r.d, "Sequence");
		r.s_stripdata = bf_sdna_struct(r.d, "Strip");
		r.strip_data_field = "strip";
	}
	if (r.s_id < 0 || bf_sdna_field(r.d, r.s_id, "name", &f)) {
		ret = bf_fail(err, errsz, -EINVAL, "damaged SDNA: no struct ID with a name");
		goto out_reader;
	}
	r.id_name_end = f.offset + f.size;
	ret = bf_pass2(&r, err, errsz);
	if (ret)
		goto out_reader;
	ret = bf_extract(&r, err, errsz);
	if (ret)
		goto out_reader;
	bf_reader_free(&r);
	close(fd);
	*out = bf;
	return 0;

out_reader:
	bf_reader_free(&r);
	blendfile_free(bf);
out_close:
	close(fd);
	return ret;
}

void blendfile_free(struct blendfile *bf)
{
	if (!bf)
		return;
	for (size_t i = 0; i < bf->npaths; i++) {
		free(bf->paths[i].path);
		free(bf->paths[i].user);
		free(bf->paths[i].tiles);
	}
	free(bf->paths);
	free(bf->scenes);
	free(bf->saved_path);
	bf_sdna_free(bf->sdna);
	free(bf);
}

int blendfile_field(const struct blendfile *bf, const char *sname, const char *field,
		    struct blendfile_field *out)
{
	int si;

	if (!bf || !bf->sdna)
		return -ENOENT;
	si = bf_sdna_struct(bf->sdna, sname);
	if (si < 0)
		return -ENOENT;
	return bf_sdna_field(bf->sdna, si, field, out);
}

size_t blendfile_nstructs(const struct blendfile *bf)
{
	return bf && bf->sdna ? (size_t)bf->sdna->nstructs : 0;
}

const char *blendfile_struct_name(const struct blendfile *bf, size_t i)
{
	if (i >= blendfile_nstructs(bf))
		return NULL;
	return bf->sdna->types[bf->sdna->structs[i].type];
}

size_t blendfile_libraries(const struct blendfile *bf, const char **out, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < bf->npaths; i++) {
		if (bf->paths[i].kind != BLENDFILE_LIBRARY)
			continue;
		if (n < max)
			out[n] = bf->paths[i].path;
		n++;
	}
	return n;
}

int blendfile_resolve(const char *written, const char *blend_path, char *buf, size_t bufsz)
{
	const char *slash;
	int n;

	if (strncmp(written, "//", 2)) {
		n = snprintf(buf, bufsz, "%s", written);
	} else {
		slash = strrchr(blend_path, '/');
		if (slash)
			n = snprintf(buf, bufsz, "%.*s/%s", (int)(slash - blend_path), blend_path,
				     written + 2);
		else
			n = snprintf(buf, bufsz, "%s", written + 2);
	}
	if (n < 0 || (size_t)n >= bufsz)
		return -ENAMETOOLONG;
	return 0;
}

const char *blendfile_kind_name(enum blendfile_kind kind)
{
	switch (kind) {
	case BLENDFILE_IMAGE: return "image";
	case BLENDFILE_MOVIECLIP: return "movieclip";
	case BLENDFILE_SOUND: return "sound";
	case BLENDFILE_FONT: return "font";
	case BLENDFILE_LIBRARY: return "library";
	case BLENDFILE_VOLUME: return "volume";
	case BLENDFILE_CACHEFILE: return "cachefile";
	case BLENDFILE_POINTCACHE: return "pointcache";
	case BLENDFILE_FLUIDCACHE: return "fluidcache";
	case BLENDFILE_MESHCACHE: return "meshcache";
	case BLENDFILE_STRIP: return "strip";
	}
	return "?";
}

const char *blendfile_source_name(enum blendfile_source src)
{
	switch (src) {
	case BLENDFILE_SRC_FILE: return "file";
	case BLENDFILE_SRC_SEQUENCE: return "sequence";
	case BLENDFILE_SRC_TILED: return "tiled";
	case BLENDFILE_SRC_MOVIE: return "movie";
	case BLENDFILE_SRC_DIR: return "dir";
	}
	return "?";
}
