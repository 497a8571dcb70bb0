/*
 * test_blendfile: the .blend reader against files built here byte by byte.
 *
 * A small SDNA of our own (an ID, a scene with its RenderData, ID
 * properties, images with UDIM tiles, a library, a sound, fonts, point and
 * fluid caches, a FileGlobal) is laid out for each header form: 32-bit and
 * 64-bit pointers, little and big endian, the classic 12-byte header and
 * Blender 5's 17-byte large-block header; plain, gzip and zstd.  Struct
 * layouts differ between those (pointer sizes move every field), so the
 * facts read back prove that offsets come from the SDNA.  Then hostile
 * files: every truncation, block lengths past the end, negative lengths,
 * too many blocks, SDNA indices out of range, a zstd bomb, a block larger
 * than the memory cap, lists that loop, and random damage; each must fail
 * with -EINVAL or -EFBIG and a reason, or read, and never crash.
 *
 * Exit status 0 when every check held; one line per failed check.
 */
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

#include "core/blendfile.h"
#include "check.h"
#include "testbuf.h"

static char tmpdir[4096];

/* ------------------------------------------------------------ buffers */

/* A string literal without its NUL. */
#define PUT_LIT(b, s) put((b), (s), sizeof(s) - 1)

static void put_zero(struct buf *b, size_t n)
{
	put_fill(b, 0, n);
}

/* ------------------------------------------------------------ layouts */

struct form {
	int ptr;       /* 4 or 8 */
	int be;        /* big endian */
	int large;     /* 17-byte header, 32-byte BHeads */
	int old_names; /* Image.name and Library.name as before 3.0 */
};

static void put_uint(struct buf *b, const struct form *fm, uint64_t v, int size)
{
	unsigned char t[8];

	for (int i = 0; i < size; i++)
		t[fm->be ? size - 1 - i : i] = (unsigned char)(v >> (8 * i));
	put(b, t, (size_t)size);
}

static void set_uint(unsigned char *p, const struct form *fm, uint64_t v, int size)
{
	for (int i = 0; i < size; i++)
		p[fm->be ? size - 1 - i : i] = (unsigned char)(v >> (8 * i));
}

struct tfield {
	const char *type, *name;
};

struct tstruct {
	const char *name;
	struct tfield f[12];
};

static const char *const basic[] = {"char", "short", "int", "float", "double", "void"};
static const int basic_len[] = {1, 2, 4, 4, 8, 0};
#define NBASIC 6

/* Our SDNA.  "filepath" fields are renamed to "name" in old_names forms. */
static const struct tstruct structs[] = {
    {"ListBase", {{"void", "*first"}, {"void", "*last"}}},
    {"ID",
     {{"void", "*next"},
      {"void", "*prev"},
      {"char", "name[66]"},
      {"short", "flag"},
      {"IDProperty", "*properties"}}},
    {"IDPropertyData", {{"void", "*pointer"}, {"ListBase", "group"}, {"int", "val"}, {"int", "val2"}}},
    {"IDProperty",
     {{"IDProperty", "*next"},
      {"IDProperty", "*prev"},
      {"char", "type"},
      {"char", "subtype"},
      {"short", "flag"},
      {"char", "name[64]"},
      {"IDPropertyData", "data"}}},
    {"RenderData",
     {{"int", "sfra"},
      {"int", "efra"},
      {"int", "frame_step"},
      {"short", "frs_sec"},
      {"short", "xsch"},
      {"short", "ysch"},
      {"short", "size"},
      {"float", "frs_sec_base"},
      {"char", "engine[32]"},
      {"float", "mat[4][4]"}}},
    {"SceneEEVEE", {{"int", "flag"}, {"int", "taa_render_samples"}}},
    {"Scene", {{"ID", "id"}, {"Object", "*camera"}, {"RenderData", "r"}, {"SceneEEVEE", "eevee"}}},
    {"Object", {{"ID", "id"}, {"void", "(*func)()"}}},
    {"Image",
     {{"ID", "id"},
      {"char", "filepath[1024]"},
      {"short", "source"},
      {"short", "pad[3]"},
      {"PackedFile", "*packedfile"},
      {"ListBase", "packedfiles"},
      {"ListBase", "tiles"}}},
    {"ImageTile", {{"ImageTile", "*next"}, {"ImageTile", "*prev"}, {"int", "tile_number"}, {"int", "pad"}}},
    {"Library",
     {{"ID", "id"},
      {"char", "filepath[1024]"},
      {"char", "filepath_abs[1024]"},
      {"PackedFile", "*packedfile"}}},
    {"bSound", {{"ID", "id"}, {"char", "filepath[1024]"}, {"PackedFile", "*packedfile"}}},
    {"VFont", {{"ID", "id"}, {"char", "filepath[1024]"}, {"PackedFile", "*packedfile"}}},
    {"PackedFile", {{"int", "size"}, {"int", "seek"}, {"void", "*data"}}},
    {"PointCache",
     {{"PointCache", "*next"},
      {"PointCache", "*prev"},
      {"int", "flag"},
      {"int", "step"},
      {"char", "path[1024]"}}},
    {"FluidDomainSettings",
     {{"int", "type"},
      {"int", "pad"},
      {"char", "cache_directory[1024]"},
      {"PointCache", "*point_cache[2]"},
      {"ListBase", "ptcaches[2]"}}},
    {"FileGlobal",
     {{"char", "subvstr[4]"},
      {"short", "subversion"},
      {"short", "pad"},
      {"Scene", "*curscene"},
      {"char", "build_hash[16]"},
      {"char", "filepath[1024]"}}},
};
#define NSTRUCTS (int)(sizeof(structs) / sizeof(structs[0]))

static const char *field_name(const struct form *fm, const struct tstruct *st, const struct tfield *f)
{
	if (fm->old_names && !strcmp(f->name, "filepath[1024]") &&
	    (!strcmp(st->name, "Image") || !strcmp(st->name, "Library")))
		return "name[1024]";
	if (fm->old_names && !strcmp(f->name, "filepath_abs[1024]"))
		return "filepath[1024]";
	return f->name;
}

static int type_index(const char *t)
{
	for (int i = 0; i < NBASIC; i++)
		if (!strcmp(basic[i], t))
			return i;
	for (int i = 0; i < NSTRUCTS; i++)
		if (!strcmp(structs[i].name, t))
			return NBASIC + i;
	fprintf(stderr, "test bug: type %s\n", t);
	exit(2);
}

static int struct_index(const char *t)
{
	return type_index(t) - NBASIC;
}

static int name_count(const char *n)
{
	int c = 1;

	for (const char *p = n; (p = strchr(p, '[')); p++)
		c *= atoi(p + 1);
	return c;
}

static int type_len(const struct form *fm, int ti);

static int field_len(const struct form *fm, const struct tfield *f)
{
	int each = strchr(f->name, '*') ? fm->ptr : type_len(fm, type_index(f->type));

	return each * name_count(f->name);
}

static int type_len(const struct form *fm, int ti)
{
	int n = 0;

	if (ti < NBASIC)
		return basic_len[ti];
	for (const struct tfield *f = structs[ti - NBASIC].f; f->type; f++)
		n += field_len(fm, f);
	return n;
}

/* Offset and size of a dotted field path in struct si. */
static int field_at(const struct form *fm, int si, const char *path, int *size)
{
	int off = 0;

	for (;;) {
		const char *dot = strchr(path, '.');
		size_t seg = dot ? (size_t)(dot - path) : strlen(path);
		const struct tfield *f;
		int o = 0;

		for (f = structs[si].f; f->type; f++) {
			const char *n = field_name(fm, &structs[si], f);

			while (*n == '*' || *n == '(')
				n++;
			if (!strncmp(n, path, seg) && (n[seg] == 0 || n[seg] == '[' || n[seg] == ')'))
				break;
			o += field_len(fm, f);
		}
		if (!f->type) {
			fprintf(stderr, "test bug: field %s in %s\n", path, structs[si].name);
			exit(2);
		}
		off += o;
		if (!dot) {
			*size = field_len(fm, f);
			return off;
		}
		si = struct_index(f->type);
		path = dot + 1;
	}
}

static void put_str_pad(struct buf *b, const char *s)
{
	put(b, s, strlen(s) + 1);
}

static void align4(struct buf *b)
{
	while (b->n % 4)
		put_zero(b, 1);
}

/* The DNA1 block's data. */
static void build_sdna(struct buf *b, const struct form *fm)
{
	const char *names[256];
	int nnames = 0;

	for (int i = 0; i < NSTRUCTS; i++)
		for (const struct tfield *f = structs[i].f; f->type; f++) {
			const char *n = field_name(fm, &structs[i], f);
			int j;

			for (j = 0; j < nnames; j++)
				if (!strcmp(names[j], n))
					break;
			if (j == nnames)
				names[nnames++] = n;
		}
	put(b, "SDNANAME", 8);
	put_uint(b, fm, (uint64_t)nnames, 4);
	for (int i = 0; i < nnames; i++)
		put_str_pad(b, names[i]);
	align4(b);
	put(b, "TYPE", 4);
	put_uint(b, fm, NBASIC + NSTRUCTS, 4);
	for (int i = 0; i < NBASIC; i++)
		put_str_pad(b, basic[i]);
	for (int i = 0; i < NSTRUCTS; i++)
		put_str_pad(b, structs[i].name);
	align4(b);
	put(b, "TLEN", 4);
	for (int i = 0; i < NBASIC + NSTRUCTS; i++)
		put_uint(b, fm, (uint64_t)type_len(fm, i), 2);
	align4(b);
	put(b, "STRC", 4);
	put_uint(b, fm, NSTRUCTS, 4);
	for (int i = 0; i < NSTRUCTS; i++) {
		int nf = 0;

		for (const struct tfield *f = structs[i].f; f->type; f++)
			nf++;
		put_uint(b, fm, (uint64_t)(NBASIC + i), 2);
		put_uint(b, fm, (uint64_t)nf, 2);
		for (const struct tfield *f = structs[i].f; f->type; f++) {
			const char *n = field_name(fm, &structs[i], f);
			int j = 0;

			while (strcmp(names[j], n))
				j++;
			put_uint(b, fm, (uint64_t)type_index(f->type), 2);
			put_uint(b, fm, (uint64_t)j, 2);
		}
	}
}

/* ------------------------------------------------------------ blocks */

/* One struct instance being filled in. */
struct inst {
	int si;
	unsigned char *p;
	int len;
};

static struct inst inst_new(const struct form *fm, const char *sname)
{
	struct inst in;

	in.si = struct_index(sname);
	in.len = type_len(fm, NBASIC + in.si);
	in.p = calloc(1, (size_t)in.len);
	return in;
}

static void iset(const struct form *fm, struct inst *in, const char *path, uint64_t v)
{
	int size, off = field_at(fm, in->si, path, &size);

	set_uint(in->p + off, fm, v, size);
}

static void iset_float(const struct form *fm, struct inst *in, const char *path, float v)
{
	uint32_t u;

	memcpy(&u, &v, 4);
	iset(fm, in, path, u);
}

static void iset_str(const struct form *fm, struct inst *in, const char *path, const char *s)
{
	int size, off;

	/* Old files name the written path "name" (and "filepath" is the absolute one). */
	if (fm->old_names && !strcmp(path, "filepath") &&
	    (!strcmp(structs[in->si].name, "Image") || !strcmp(structs[in->si].name, "Library")))
		path = "name";
	off = field_at(fm, in->si, path, &size);
	snprintf((char *)in->p + off, (size_t)size, "%s", s);
}

static void bhead(struct buf *b, const struct form *fm, const char *code, uint64_t len, uint64_t old,
		  int sdna, uint64_t nr)
{
	char c[4] = {0};

	memcpy(c, code, strlen(code) < 4 ? strlen(code) : 4);
	put(b, c, 4);
	if (fm->large) {
		put_uint(b, fm, (uint64_t)sdna, 4);
		put_uint(b, fm, old, 8);
		put_uint(b, fm, len, 8);
		put_uint(b, fm, nr, 8);
	} else {
		put_uint(b, fm, len, 4);
		put_uint(b, fm, old, fm->ptr);
		put_uint(b, fm, (uint64_t)sdna, 4);
		put_uint(b, fm, nr, 4);
	}
}

static void block(struct buf *b, const struct form *fm, const char *code, uint64_t old, struct inst *in)
{
	bhead(b, fm, code, (uint64_t)in->len, old, in->si, 1);
	put(b, in->p, (size_t)in->len);
	free(in->p);
	in->p = NULL;
}

static void header(struct buf *b, const struct form *fm, int version)
{
	char h[32];

	if (fm->large)
		snprintf(h, sizeof(h), "BLENDER17-01%c%04d", fm->be ? 'V' : 'v', version);
	else
		snprintf(h, sizeof(h), "BLENDER%c%c%03d", fm->ptr == 4 ? '_' : '-', fm->be ? 'V' : 'v',
			 version);
	put(b, h, strlen(h));
}

static void idprop(struct buf *b, const struct form *fm, uint64_t old, const char *name, int type,
		   uint64_t first_or_val, uint64_t next)
{
	struct inst p = inst_new(fm, "IDProperty");

	iset(fm, &p, "type", (uint64_t)type);
	iset_str(fm, &p, "name", name);
	iset(fm, &p, "next", next);
	if (type == 6)
		iset(fm, &p, "data.group.first", first_or_val);
	else
		iset(fm, &p, "data.val", first_or_val);
	block(b, fm, "DATA", old, &p);
}

/* A scene with Cycles samples in its ID properties, at fixed data addresses:
 * two scenes use the same ones, as Blender 4.x writes them. */
static void scene(struct buf *b, const struct form *fm, uint64_t old, const char *name, int samples, int sfra)
{
	struct inst sc = inst_new(fm, "Scene");
	char idname[80];

	snprintf(idname, sizeof(idname), "SC%s", name);
	iset_str(fm, &sc, "id.name", idname);
	iset(fm, &sc, "id.properties", 0x100);
	iset(fm, &sc, "camera", 0x2000);
	iset(fm, &sc, "r.sfra", (uint64_t)sfra);
	iset(fm, &sc, "r.efra", 250);
	iset(fm, &sc, "r.frame_step", 3);
	iset(fm, &sc, "r.frs_sec", 30);
	iset_float(fm, &sc, "r.frs_sec_base", 1.001f);
	iset(fm, &sc, "r.xsch", 1280);
	iset(fm, &sc, "r.ysch", 720);
	iset(fm, &sc, "r.size", 50);
	iset_str(fm, &sc, "r.engine", "CYCLES");
	iset(fm, &sc, "eevee.taa_render_samples", 16);
	block(b, fm, "SC", old, &sc);
	idprop(b, fm, 0x100, "", 6, 0x110, 0);
	idprop(b, fm, 0x110, "cycles", 6, 0x120, 0);
	idprop(b, fm, 0x120, "preview_samples", 1, 8, 0x130);
	idprop(b, fm, 0x130, "samples", 1, (uint64_t)samples, 0);
}

static void id_block(struct buf *b, const struct form *fm, const char *code, uint64_t old, const char *name,
		     struct inst *in)
{
	char idname[80];

	snprintf(idname, sizeof(idname), "%s%s", code, name);
	iset_str(fm, in, "id.name", idname);
	block(b, fm, code, old, in);
}

static void image(struct buf *b, const struct form *fm, uint64_t old, const char *name, const char *path,
		  int source, int packed, uint64_t tiles)
{
	struct inst im = inst_new(fm, "Image");

	iset_str(fm, &im, "filepath", path);
	iset(fm, &im, "source", (uint64_t)source);
	if (packed)
		iset(fm, &im, "packedfiles.first", 0x9000);
	iset(fm, &im, "tiles.first", tiles);
	id_block(b, fm, "IM", old, name, &im);
}

static void tile(struct buf *b, const struct form *fm, uint64_t old, int number, uint64_t next)
{
	struct inst t = inst_new(fm, "ImageTile");

	iset(fm, &t, "tile_number", (uint64_t)number);
	iset(fm, &t, "next", next);
	block(b, fm, "DATA", old, &t);
}

static void pathed(struct buf *b, const struct form *fm, const char *code, const char *sname, uint64_t old,
		   const char *name, const char *path, int packed)
{
	struct inst x = inst_new(fm, sname);

	iset_str(fm, &x, "filepath", path);
	if (packed)
		iset(fm, &x, "packedfile", 0x9100);
	id_block(b, fm, code, old, name, &x);
}

static void ptcache(struct buf *b, const struct form *fm, uint64_t old, int flag, const char *path,
		    uint64_t next)
{
	struct inst pc = inst_new(fm, "PointCache");

	iset(fm, &pc, "flag", (uint64_t)flag);
	iset_str(fm, &pc, "path", path);
	iset(fm, &pc, "next", next);
	block(b, fm, "DATA", old, &pc);
}

/* The whole test scene; the hostile tests damage copies of it. */
static void build_scene(struct buf *b, const struct form *fm, int version)
{
	struct inst ob, g, fd;
	struct buf dna = {0};

	header(b, fm, version);
	g = inst_new(fm, "FileGlobal");
	iset(fm, &g, "subversion", 7);
	iset(fm, &g, "curscene", 0x1000);
	iset_str(fm, &g, "build_hash", "abc123def456");
	iset_str(fm, &g, "filepath", "/home/artist/shot.blend");
	block(b, fm, "GLOB", 0x10, &g);

	scene(b, fm, 0x1000, "Shot", 64, 11);
	scene(b, fm, 0x1100, "Other", 99, 21);

	ob = inst_new(fm, "Object");
	id_block(b, fm, "OB", 0x2000, "ShotCam", &ob);

	image(b, fm, 0x3000, "wood", "//textures/wood.png", 1, 0, 0);
	image(b, fm, 0x3100, "udim", "//udim/t.<UDIM>.png", 6, 0, 0x3110);
	tile(b, fm, 0x3110, 1001, 0x3120);
	tile(b, fm, 0x3120, 1002, 0);
	image(b, fm, 0x3200, "packed", "//packme.png", 1, 1, 0);
	image(b, fm, 0x3300, "Render Result", "", 5, 0, 0);
	image(b, fm, 0x3400, "seq", "//seq/f_0001.png", 2, 0, 0);

	pathed(b, fm, "LI", "Library", 0x4000, "lib.blend", "//lib.blend", 0);
	pathed(b, fm, "SO", "bSound", 0x4100, "beep", "//sounds/beep.wav", 0);
	pathed(b, fm, "VF", "VFont", 0x4200, "Bfont", "<builtin>", 0);
	pathed(b, fm, "VF", "VFont", 0x4300, "mono", "//fonts/mono.ttf", 1);

	ob = inst_new(fm, "Object");
	id_block(b, fm, "OB", 0x5000, "Emitter", &ob);
	ptcache(b, fm, 0x5010, 64, "", 0);
	ptcache(b, fm, 0x5020, 512 | 64, "//ptc_ext", 0);
	ptcache(b, fm, 0x5030, 0, "//memory_only", 0);

	ob = inst_new(fm, "Object");
	id_block(b, fm, "OB", 0x6000, "Domain", &ob);
	fd = inst_new(fm, "FluidDomainSettings");
	iset_str(fm, &fd, "cache_directory", "//fluid");
	{
		int size, off = field_at(fm, fd.si, "ptcaches", &size);

		set_uint(fd.p + off, fm, 0x6020, fm->ptr); /* ptcaches[0].first */
	}
	block(b, fm, "DATA", 0x6010, &fd);
	ptcache(b, fm, 0x6020, 64, "", 0);
	ptcache(b, fm, 0x6030, 64 | (1 << 12), "", 0);

	/* A data block that belongs to nothing we read: raw bytes. */
	bhead(b, fm, "DATA", 5, 0x7000, 0, 5);
	put(b, "hello", 5);

	build_sdna(&dna, fm);
	bhead(b, fm, "DNA1", dna.n, 0x8000, 0, 1);
	put(b, dna.p, dna.n);
	free(dna.p);
	bhead(b, fm, "ENDB", 0, 0, 0, 0);
}

/* ------------------------------------------------------------ files */

static void write_file(const char *path, const void *p, size_t n)
{
	int fd;

	/* A new file each time: ext4 flushes a file rewritten by truncation on close. */
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0 || write(fd, p, n) != (ssize_t)n) {
		perror(path);
		exit(2);
	}
	close(fd);
}

/* Two zstd frames and a skippable frame after them, as Blender writes. */
static void zstd_buf(const struct buf *in, struct buf *out)
{
	size_t half = in->n / 2;
	const unsigned char *parts[2] = {in->p, in->p + half};
	size_t lens[2] = {half, in->n - half};
	unsigned char skip[12] = {0x5e, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4};

	for (int i = 0; i < 2; i++) {
		size_t cap = ZSTD_compressBound(lens[i]);
		unsigned char *z = malloc(cap);
		size_t n = ZSTD_compress(z, cap, parts[i], lens[i], 3);

		put(out, z, n);
		free(z);
	}
	put(out, skip, sizeof(skip));
}

static int open_buf(const struct buf *b, const char *name, const struct blendfile_limits *lim,
		    struct blendfile **bf, char *err, size_t errsz)
{
	char path[4200];

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	write_file(path, b->p, b->n);
	return blendfile_open(path, lim, bf, err, errsz);
}

static const struct blendfile_path *find_path(const struct blendfile *bf, enum blendfile_kind k,
					      const char *user)
{
	for (size_t i = 0; i < bf->npaths; i++)
		if (bf->paths[i].kind == k && !strcmp(bf->paths[i].user, user))
			return &bf->paths[i];
	return NULL;
}

/* ------------------------------------------------------------ good files */

static void check_facts(const struct blendfile *bf, const struct form *fm, const char *what, const char *stem)
{
	const struct blendfile_scene *sc = NULL, *other = NULL;
	const struct blendfile_path *p;
	const char *libs[4];
	char want[64];
	size_t nlib;
	int n;

	CHECK(bf->ptr_size == fm->ptr, "%s: ptr_size %d", what, bf->ptr_size);
	CHECK(bf->big_endian == fm->be, "%s: big_endian %d", what, bf->big_endian);
	CHECK(bf->large_bhead == fm->large, "%s: large_bhead %d", what, bf->large_bhead);
	CHECK(!strcmp(bf->saved_by, fm->large ? "5.0" : "3.4"), "%s: saved_by %s", what, bf->saved_by);
	CHECK(bf->subversion == 7, "%s: subversion %d", what, bf->subversion);
	CHECK(!strcmp(bf->build_hash, "abc123def456"), "%s: build_hash %s", what, bf->build_hash);
	CHECK(bf->saved_path && !strcmp(bf->saved_path, "/home/artist/shot.blend"), "%s: saved_path", what);
	CHECK(bf->nscenes == 2, "%s: %zu scenes", what, bf->nscenes);
	for (size_t i = 0; i < bf->nscenes; i++) {
		if (!strcmp(bf->scenes[i].name, "Shot"))
			sc = &bf->scenes[i];
		if (!strcmp(bf->scenes[i].name, "Other"))
			other = &bf->scenes[i];
	}
	CHECK(sc && other, "%s: scenes Shot and Other", what);
	if (sc && other) {
		CHECK(sc->active && !other->active, "%s: Shot is the active scene", what);
		CHECK(sc->frame_start == 11 && sc->frame_end == 250 && sc->frame_step == 3,
		      "%s: frames %d-%d/%d", what, sc->frame_start, sc->frame_end, sc->frame_step);
		CHECK(sc->fps == 30 && sc->fps_base > 1.0009 && sc->fps_base < 1.0011, "%s: fps %d/%g", what,
		      sc->fps, sc->fps_base);
		CHECK(sc->res_x == 1280 && sc->res_y == 720 && sc->res_percent == 50, "%s: res %dx%d %d%%",
		      what, sc->res_x, sc->res_y, sc->res_percent);
		CHECK(!strcmp(sc->engine, "CYCLES"), "%s: engine %s", what, sc->engine);
		CHECK(!strcmp(sc->camera, "ShotCam"), "%s: camera '%s'", what, sc->camera);
		/* Same data addresses in both scenes: each must find its own. */
		CHECK(sc->samples == 64, "%s: Shot samples %d", what, sc->samples);
		CHECK(other->samples == 99 && other->frame_start == 21, "%s: Other samples %d", what,
		      other->samples);
	}
	p = find_path(bf, BLENDFILE_IMAGE, "wood");
	CHECK(p && !strcmp(p->path, "//textures/wood.png") && p->source == BLENDFILE_SRC_FILE && !p->packed,
	      "%s: image wood", what);
	p = find_path(bf, BLENDFILE_IMAGE, "udim");
	CHECK(p && p->source == BLENDFILE_SRC_TILED && p->ntiles == 2 && p->tiles[0] == 1001 &&
		  p->tiles[1] == 1002 && !strcmp(p->path, "//udim/t.<UDIM>.png"),
	      "%s: image udim with tiles 1001, 1002", what);
	p = find_path(bf, BLENDFILE_IMAGE, "packed");
	CHECK(p && p->packed, "%s: image packed is packed", what);
	p = find_path(bf, BLENDFILE_IMAGE, "seq");
	CHECK(p && p->source == BLENDFILE_SRC_SEQUENCE, "%s: image seq is a sequence", what);
	CHECK(!find_path(bf, BLENDFILE_IMAGE, "Render Result"), "%s: no path for Render Result", what);
	p = find_path(bf, BLENDFILE_LIBRARY, "lib.blend");
	CHECK(p && !strcmp(p->path, "//lib.blend"), "%s: library", what);
	p = find_path(bf, BLENDFILE_SOUND, "beep");
	CHECK(p && !strcmp(p->path, "//sounds/beep.wav"), "%s: sound", what);
	CHECK(!find_path(bf, BLENDFILE_FONT, "Bfont"), "%s: builtin font not listed", what);
	p = find_path(bf, BLENDFILE_FONT, "mono");
	CHECK(p && p->packed && !strcmp(p->path, "//fonts/mono.ttf"), "%s: packed font", what);
	n = 0;
	snprintf(want, sizeof(want), "//blendcache_%s/", stem);
	for (size_t i = 0; i < bf->npaths; i++) {
		const struct blendfile_path *e = &bf->paths[i];

		if (e->kind != BLENDFILE_POINTCACHE)
			continue;
		n++;
		CHECK(!strcmp(e->user, "Emitter") && e->source == BLENDFILE_SRC_DIR &&
			  (!strcmp(e->path, want) || !strcmp(e->path, "//ptc_ext")),
		      "%s: point cache %s of %s", what, e->path, e->user);
	}
	CHECK(n == 2, "%s: %d point caches (want the default folder and //ptc_ext only)", what, n);
	p = find_path(bf, BLENDFILE_FLUIDCACHE, "Domain");
	CHECK(p && !strcmp(p->path, "//fluid") && p->source == BLENDFILE_SRC_DIR, "%s: fluid cache", what);
	CHECK(bf->npaths == 10, "%s: %zu paths", what, bf->npaths);
	nlib = blendfile_libraries(bf, libs, 4);
	CHECK(nlib == 1 && !strcmp(libs[0], "//lib.blend"), "%s: blendfile_libraries %zu", what, nlib);
}

static void check_fields(const struct blendfile *bf, const struct form *fm, const char *what)
{
	struct blendfile_field f;
	int ret;

	ret = blendfile_field(bf, "Scene", "r.xsch", &f);
	/* Scene: ID (2 ptrs + 66 + 2 + 1 ptr), camera ptr, then RenderData:
	 * sfra, efra, frame_step (12), frs_sec (2), xsch. */
	CHECK(!ret && f.offset == (uint32_t)(3 * fm->ptr + 68 + fm->ptr + 14) && f.size == 2 &&
		  !strcmp(f.type, "short"),
	      "%s: Scene r.xsch at %u", what, f.offset);
	ret = blendfile_field(bf, "ID", "name", &f);
	CHECK(!ret && f.ndims == 1 && f.dims[0] == 66 && f.size == 66 && f.offset == (uint32_t)(2 * fm->ptr),
	      "%s: ID name[66]", what);
	ret = blendfile_field(bf, "RenderData", "mat", &f);
	CHECK(!ret && f.ndims == 2 && f.dims[0] == 4 && f.dims[1] == 4 && f.size == 64 && f.elem_size == 4,
	      "%s: mat[4][4]", what);
	ret = blendfile_field(bf, "FluidDomainSettings", "point_cache", &f);
	CHECK(!ret && f.is_pointer && f.size == (uint32_t)(2 * fm->ptr) && f.elem_size == (uint32_t)fm->ptr,
	      "%s: *point_cache[2]", what);
	ret = blendfile_field(bf, "Object", "func", &f);
	CHECK(!ret && f.is_pointer && f.size == (uint32_t)fm->ptr, "%s: (*func)()", what);
	CHECK(blendfile_field(bf, "Scene", "r.nothing", &f) == -ENOENT, "%s: missing field", what);
	CHECK(blendfile_field(bf, "Nope", "x", &f) == -ENOENT, "%s: missing struct", what);
	CHECK(blendfile_nstructs(bf) == (size_t)NSTRUCTS && !strcmp(blendfile_struct_name(bf, 0), "ListBase"),
	      "%s: struct list", what);
}

static void test_good(void)
{
	static const struct form forms[] = {
	    {8, 0, 0, 0}, {4, 0, 0, 0}, {8, 1, 0, 0}, {4, 1, 0, 0}, {8, 0, 1, 0}, {8, 1, 1, 0}, {8, 0, 0, 1},
	};

	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		const struct form *fm = &forms[i];
		struct buf plain = {0}, gz = {0}, zs = {0};
		struct blendfile *bf;
		char what[96], err[256], name[64];
		int ret;

		build_scene(&plain, fm, fm->large ? 500 : 304);
		snprintf(name, sizeof(name), "form%zu.blend", i);
		snprintf(what, sizeof(what), "ptr %d %s %s%s plain", fm->ptr, fm->be ? "BE" : "LE",
			 fm->large ? "large" : "classic", fm->old_names ? " old names" : "");
		ret = open_buf(&plain, name, NULL, &bf, err, sizeof(err));
		CHECK(ret == 0, "%s: open: %d %s", what, ret, err);
		if (!ret) {
			CHECK(bf->compression == BLENDFILE_PLAIN && bf->expanded_size == plain.n, "%s: size",
			      what);
			snprintf(name, sizeof(name), "form%zu", i);
			check_facts(bf, fm, what, name);
			check_fields(bf, fm, what);
			blendfile_free(bf);
		}
		gzip_buf(&plain, &gz);
		snprintf(name, sizeof(name), "form%zu_gz.blend", i);
		ret = open_buf(&gz, name, NULL, &bf, err, sizeof(err));
		snprintf(what + strlen(what) - 5, 6, "gzip");
		CHECK(ret == 0 && bf->compression == BLENDFILE_GZIP, "%s: open: %d %s", what, ret, err);
		if (!ret) {
			snprintf(name, sizeof(name), "form%zu_gz", i);
			check_facts(bf, fm, what, name);
			blendfile_free(bf);
		}
		zstd_buf(&plain, &zs);
		snprintf(name, sizeof(name), "form%zu_zs.blend", i);
		ret = open_buf(&zs, name, NULL, &bf, err, sizeof(err));
		snprintf(what + strlen(what) - 4, 5, "zstd");
		CHECK(ret == 0 && bf->compression == BLENDFILE_ZSTD, "%s: open: %d %s", what, ret, err);
		if (!ret) {
			snprintf(name, sizeof(name), "form%zu_zs", i);
			check_facts(bf, fm, what, name);
			blendfile_free(bf);
		}
		free(plain.p);
		free(gz.p);
		free(zs.p);
	}
}

static void test_resolve(void)
{
	char buf[64];

	CHECK(!blendfile_resolve("//tex/a.png", "/drop/shot/shot.blend", buf, sizeof(buf)) &&
		  !strcmp(buf, "/drop/shot/tex/a.png"),
	      "resolve //: %s", buf);
	CHECK(!blendfile_resolve("/abs/a.png", "/drop/shot.blend", buf, sizeof(buf)) &&
		  !strcmp(buf, "/abs/a.png"),
	      "resolve absolute: %s", buf);
	CHECK(!blendfile_resolve("//a.png", "shot.blend", buf, sizeof(buf)) && !strcmp(buf, "a.png"),
	      "resolve bare: %s", buf);
	CHECK(blendfile_resolve("//a-very-long-name-that-does-not-fit.png", "/some/long/folder/shot.blend",
				buf, 16) == -ENAMETOOLONG,
	      "resolve too long");
}

/* ------------------------------------------------------------ hostile files */

/* Must fail with want (0: any of -EINVAL/-EFBIG) and a reason. */
static void expect_fail(const struct buf *b, const char *what, int want, const struct blendfile_limits *lim,
			const char *needle)
{
	struct blendfile *bf = (struct blendfile *)1;
	char err[256] = "";
	int ret = open_buf(b, "hostile.blend", lim, &bf, err, sizeof(err));

	if (want)
		CHECK(ret == want, "%s: got %d (%s), want %d", what, ret, err, want);
	else
		CHECK(ret == -EINVAL || ret == -EFBIG, "%s: got %d (%s)", what, ret, err);
	CHECK(bf == NULL, "%s: *out left set", what);
	CHECK(err[0] && !strchr(err, '\n'), "%s: reason '%s'", what, err);
	if (needle)
		CHECK(strstr(err, needle) != NULL, "%s: reason '%s' lacks '%s'", what, err, needle);
	if (!ret)
		blendfile_free(bf);
}

/* Byte offset of the first BHead with this code. */
static size_t find_block(const struct buf *b, const struct form *fm, const char *code, int nth)
{
	size_t at = fm->large ? 17 : 12, bh = fm->large ? 32 : (size_t)(16 + fm->ptr);

	while (at + bh <= b->n) {
		uint64_t len = 0;
		const unsigned char *h = b->p + at;

		for (int i = 0; i < (fm->large ? 8 : 4); i++)
			len |= (uint64_t)h[(fm->large ? 16 : 4) + i] << (8 * i);
		if (!memcmp(h, code, strlen(code)) && !nth--)
			return at;
		at += bh + len;
	}
	fprintf(stderr, "test bug: no block %s\n", code);
	exit(2);
}

static void test_truncations(void)
{
	static const struct form fm = {8, 0, 0, 0};
	struct buf plain = {0}, zs = {0}, cut = {0};
	struct blendfile *bf;
	char err[256];
	int bad = 0;

	build_scene(&plain, &fm, 304);
	/* Every prefix: none may read as a whole file. */
	for (size_t n = 0; n < plain.n; n += n < 400 ? 1 : 13) {
		int ret;

		cut.n = 0;
		put(&cut, plain.p, n);
		ret = open_buf(&cut, "cut.blend", NULL, &bf, err, sizeof(err));
		if (ret != -EINVAL || bf || !err[0]) {
			if (!bad)
				printf("truncated at %zu: %d %s\n", n, ret, err);
			bad++;
		}
		if (!ret)
			blendfile_free(bf);
	}
	CHECK(bad == 0, "%d truncations of a %zu-byte file did not fail cleanly", bad, plain.n);
	/* Compressed streams cut short. */
	zstd_buf(&plain, &zs);
	bad = 0;
	for (size_t n = 0; n + 12 < zs.n; n += 7) {
		int ret;

		cut.n = 0;
		put(&cut, zs.p, n);
		ret = open_buf(&cut, "cut.blend", NULL, &bf, err, sizeof(err));
		if (ret != -EINVAL || bf)
			bad++;
		if (!ret)
			blendfile_free(bf);
	}
	CHECK(bad == 0, "%d truncations of zstd data did not fail cleanly", bad);
	free(plain.p);
	free(zs.p);
	free(cut.p);
}

static void test_hostile_blocks(void)
{
	static const struct form fm = {8, 0, 0, 0}, lg = {8, 0, 1, 0};
	struct buf b = {0}, z = {0};
	struct blendfile_limits lim = {0};
	size_t at;

	/* Block length far past the end of a plain file. */
	build_scene(&b, &fm, 304);
	at = find_block(&b, &fm, "SC", 0);
	set_uint(b.p + at + 4, &fm, 0x7ffffff0, 4);
	expect_fail(&b, "length past EOF", -EINVAL, NULL, "truncated");
	/* Negative length. */
	set_uint(b.p + at + 4, &fm, 0xfffffff0, 4);
	expect_fail(&b, "negative length", -EINVAL, NULL, "negative");
	/* The same in a zstd file: the cap on decompressed data answers. */
	set_uint(b.p + at + 4, &fm, 0x7ffffff0, 4);
	lim.max_expanded = 1 << 20;
	zstd_buf(&b, &z);
	expect_fail(&z, "zstd length past cap", -EFBIG, &lim, "cap");
	z.n = 0;
	free(b.p);
	memset(&b, 0, sizeof(b));

	/* Large BHead with a 2^62 length. */
	build_scene(&b, &lg, 500);
	at = find_block(&b, &lg, "IM", 0);
	set_uint(b.p + at + 16, &lg, 1ULL << 62, 8);
	expect_fail(&b, "large length past EOF", -EINVAL, NULL, NULL);
	set_uint(b.p + at + 16, &lg, 1ULL << 63, 8);
	expect_fail(&b, "large negative length", -EINVAL, NULL, NULL);
	free(b.p);
	memset(&b, 0, sizeof(b));

	/* A block naming a struct the SDNA does not have. */
	build_scene(&b, &fm, 304);
	at = find_block(&b, &fm, "IM", 0);
	set_uint(b.p + at + 16, &fm, 5000, 4);
	expect_fail(&b, "block SDNA index out of range", -EINVAL, NULL, "struct 5000");
	free(b.p);
	memset(&b, 0, sizeof(b));

	/* Too many blocks. */
	build_scene(&b, &fm, 304);
	lim.max_expanded = 0;
	lim.max_blocks = 10;
	expect_fail(&b, "block count cap", -EFBIG, &lim, "blocks");
	lim.max_blocks = 0;
	/* A kept block larger than the memory cap. */
	lim.max_kept = 2000;
	expect_fail(&b, "kept bytes cap", -EFBIG, &lim, "memory");
	lim.max_kept = 0;
	free(b.p);
	memset(&b, 0, sizeof(b));

	/* Two DNA1, none, no ENDB, not a .blend at all. */
	build_scene(&b, &fm, 304);
	at = find_block(&b, &fm, "DNA1", 0);
	memcpy(b.p + at, "DNA2", 4);
	expect_fail(&b, "no DNA1", -EINVAL, NULL, "DNA1");
	memcpy(b.p + at, "DNA1", 4);
	b.n -= 24; /* drop ENDB */
	expect_fail(&b, "no ENDB", -EINVAL, NULL, "ENDB");
	b.n = 0;
	PUT_LIT(&b, "PK\003\004 not a blend file at all");
	expect_fail(&b, "zip file", -EINVAL, NULL, "not a Blender file");
	b.n = 0;
	expect_fail(&b, "empty file", -EINVAL, NULL, NULL);
	PUT_LIT(&b, "BLENDER-x304");
	expect_fail(&b, "bad header", -EINVAL, NULL, "header");
	b.n = 0;
	PUT_LIT(&b, "BLENDER17-02v0500");
	expect_fail(&b, "unknown format version", -EINVAL, NULL, "format");
	b.n = 0;
	PUT_LIT(&b, "\x1f\x8b\x08\x00garbage-garbage-garbage");
	expect_fail(&b, "corrupt gzip", -EINVAL, NULL, "gzip");
	b.n = 0;
	PUT_LIT(&b, "\x28\xb5\x2f\xfdgarbage-garbage-garbage");
	expect_fail(&b, "corrupt zstd", -EINVAL, NULL, "zstd");
	free(b.p);
	free(z.p);
}

/* A zstd file whose one DATA block expands to 200 MiB of zeros. */
static void test_zstd_bomb(void)
{
	static const struct form fm = {8, 0, 0, 0};
	const size_t big = 200u << 20;
	struct blendfile_limits lim = {64u << 20, 0, 0};
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	unsigned char *zeros = calloc(1, 1 << 20);
	unsigned char *outb = malloc(ZSTD_CStreamOutSize());
	struct buf head = {0}, z = {0};

	header(&head, &fm, 304);
	bhead(&head, &fm, "DATA", big, 0x10, 0, big);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 1);
	for (size_t done = 0; done <= big; done += 1u << 20) {
		/* The header first, then 200 chunks of 1 MiB of zeros, then the end. */
		int last = done == big;
		ZSTD_inBuffer in = {zeros, last ? 0 : 1u << 20, 0};
		size_t left;

		if (done == 0) {
			in.src = head.p;
			in.size = head.n;
		}
		do {
			ZSTD_outBuffer o = {outb, ZSTD_CStreamOutSize(), 0};

			left = ZSTD_compressStream2(cc, &o, &in, last ? ZSTD_e_end : ZSTD_e_continue);
			put(&z, outb, o.pos);
		} while (last ? left != 0 : in.pos < in.size);
	}
	CHECK(z.n < (1u << 20), "bomb is small: %zu bytes", z.n);
	expect_fail(&z, "zstd bomb", -EFBIG, &lim, "cap");
	ZSTD_freeCCtx(cc);
	free(zeros);
	free(outb);
	free(head.p);
	free(z.p);
}

/* Many tiny ID blocks: the names kept for them count against the memory cap. */
static void test_many_ids(void)
{
	static const struct form fm = {8, 0, 0, 0};
	struct blendfile_limits lim = {0, 0, 1u << 20};
	struct buf b = {0}, dna = {0}, z = {0};
	int ob = struct_index("Object");

	header(&b, &fm, 304);
	for (int i = 0; i < 100000; i++)
		bhead(&b, &fm, "OB", 0, 0x1000 + (uint64_t)i, ob, 1);
	build_sdna(&dna, &fm);
	bhead(&b, &fm, "DNA1", dna.n, 0x8000, 0, 1);
	put(&b, dna.p, dna.n);
	bhead(&b, &fm, "ENDB", 0, 0, 0, 0);
	{
		struct blendfile *bf;
		char err[256];
		int ret = open_buf(&b, "ids.blend", NULL, &bf, err, sizeof(err));

		CHECK(ret == 0 && bf->nblocks == 100001 && bf->nscenes == 0, "100000 ID blocks read: %d %s",
		      ret, err);
		if (!ret)
			blendfile_free(bf);
	}
	expect_fail(&b, "100000 ID blocks, 1 MiB cap", -EFBIG, &lim, "memory");
	zstd_buf(&b, &z);
	CHECK(z.n < b.n / 20, "tiny IDs compress: %zu of %zu", z.n, b.n);
	expect_fail(&z, "100000 ID blocks zstd, 1 MiB cap", -EFBIG, &lim, "memory");
	free(b.p);
	free(dna.p);
	free(z.p);
}

/* SDNA tables that point outside themselves. */
static void test_hostile_sdna(void)
{
	static const struct form fm = {8, 0, 0, 0};
	struct buf b = {0};
	size_t at, strc;
	unsigned char *d;

	build_scene(&b, &fm, 304);
	at = find_block(&b, &fm, "DNA1", 0) + 24;
	d = b.p + at;
	/* NAME count larger than the block. */
	set_uint(d + 8, &fm, 0x7fffffff, 4);
	expect_fail(&b, "SDNA huge name count", -EINVAL, NULL, "SDNA");
	set_uint(d + 8, &fm, 0xffffffff, 4);
	expect_fail(&b, "SDNA negative name count", -EINVAL, NULL, "SDNA");
	free(b.p);
	memset(&b, 0, sizeof(b));

	build_scene(&b, &fm, 304);
	at = find_block(&b, &fm, "DNA1", 0) + 24;
	d = b.p + at;
	strc = (size_t)((unsigned char *)memmem(d, b.n - at, "STRC", 4) - d);
	/* First struct (ListBase): its type, then its first field's type and name. */
	set_uint(d + strc + 8, &fm, 30000, 2);
	expect_fail(&b, "SDNA struct type out of range", -EINVAL, NULL, "type index");
	set_uint(d + strc + 8, &fm, NBASIC, 2);
	set_uint(d + strc + 12, &fm, 30000, 2);
	expect_fail(&b, "SDNA field type out of range", -EINVAL, NULL, "field");
	set_uint(d + strc + 12, &fm, 5, 2);
	set_uint(d + strc + 14, &fm, 30000, 2);
	expect_fail(&b, "SDNA field name out of range", -EINVAL, NULL, "field");
	set_uint(d + strc + 14, &fm, 0, 2);
	/* A struct whose fields do not add up to its length. */
	{
		size_t tlen = (size_t)((unsigned char *)memmem(d, b.n - at, "TLEN", 4) - d);

		set_uint(d + tlen + 4 + 2 * NBASIC, &fm, 7, 2); /* ListBase */
		expect_fail(&b, "SDNA struct length mismatch", -EINVAL, NULL, "ListBase");
		set_uint(d + tlen + 4 + 2 * NBASIC, &fm, 16, 2);
	}
	/* The struct table cut short: a field count past the end. */
	set_uint(d + strc + 10, &fm, 60000, 2);
	expect_fail(&b, "SDNA field count past block", -EINVAL, NULL, "SDNA");
	set_uint(d + strc + 10, &fm, 2, 2);
	/* No TYPE tag. */
	memcpy(memmem(d, b.n - at, "TYPE", 4), "TYPX", 4);
	expect_fail(&b, "SDNA without TYPE", -EINVAL, NULL, "TYPE");
	free(b.p);
}

/* Lists that point at themselves end. */
static void test_loops(void)
{
	static const struct form fm = {8, 0, 0, 0};
	struct buf b = {0};
	struct blendfile *bf;
	char err[256];
	size_t at;
	int ret, size, off;

	build_scene(&b, &fm, 304);
	/* Third IDProperty after the first scene ("preview_samples"): next -> itself. */
	at = find_block(&b, &fm, "DATA", 2) + 24;
	off = field_at(&fm, struct_index("IDProperty"), "next", &size);
	set_uint(b.p + at + off, &fm, 0x120, 8);
	/* Second UDIM tile: next -> first tile. */
	at = find_block(&b, &fm, "DATA", 9) + 24;
	off = field_at(&fm, struct_index("ImageTile"), "next", &size);
	set_uint(b.p + at + off, &fm, 0x3110, 8);
	ret = open_buf(&b, "loop.blend", NULL, &bf, err, sizeof(err));
	CHECK(ret == 0, "looping lists: %d %s", ret, err);
	if (!ret) {
		const struct blendfile_path *p = find_path(bf, BLENDFILE_IMAGE, "udim");

		CHECK(bf->scenes[0].samples == -1, "looping idprops: samples %d", bf->scenes[0].samples);
		CHECK(p && p->ntiles <= 10000, "looping tiles bounded: %zu", p ? p->ntiles : 0);
		blendfile_free(bf);
	}
	free(b.p);
}

/*
 * Random damage: reads or fails, never crashes (run under ASan).
 * BLENDFILE_DAMAGE_ROUNDS=N tries N damaged copies of each form (400).
 */
static void test_damage(void)
{
	static const struct form forms[] = {{8, 0, 0, 0}, {4, 1, 0, 0}, {8, 0, 1, 0}};
	const char *env = getenv("BLENDFILE_DAMAGE_ROUNDS");
	int rounds = env ? atoi(env) : 400;
	unsigned seed = 12345;
	int ok = 0, failed = 0, other = 0;

	for (size_t f = 0; f < 3; f++) {
		struct buf b = {0};

		build_scene(&b, &forms[f], forms[f].large ? 500 : 304);
		for (int round = 0; round < rounds; round++) {
			struct buf d = {0};
			struct blendfile *bf;
			char err[256];
			int ret;

			put(&d, b.p, b.n);
			for (int k = 0; k < 1 + round % 8; k++) {
				seed = seed * 1103515245u + 12345u;
				d.p[(seed >> 8) % d.n] = (unsigned char)(seed >> 24);
			}
			ret = open_buf(&d, "damaged.blend", NULL, &bf, err, sizeof(err));
			if (!ret) {
				ok++;
				blendfile_free(bf);
			} else if ((ret == -EINVAL || ret == -EFBIG) && err[0]) {
				failed++;
			} else {
				other++;
				printf("damage: %d %s\n", ret, err);
			}
			free(d.p);
		}
		free(b.p);
	}
	CHECK(other == 0, "random damage: %d odd results (%d read, %d refused)", other, ok, failed);
	printf("random damage: %d read, %d refused\n", ok, failed);
}

int main(void)
{
	const char *t = getenv("TMPDIR");
	char cmd[4200];

	snprintf(tmpdir, sizeof(tmpdir), "%s/test_blendfile.XXXXXX", t ? t : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 2;
	}
	test_good();
	test_resolve();
	test_truncations();
	test_hostile_blocks();
	test_zstd_bomb();
	test_many_ids();
	test_hostile_sdna();
	test_loops();
	test_damage();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	return check_summary("blendfile");
}
