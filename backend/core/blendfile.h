/*
 * blendfile: what a .blend says about itself, read without Blender.
 *
 * blendfile_open() reads a Blender file (plain, gzip or zstd; the classic
 * 12-byte header of Blender 2.x to 4.x and the 17-byte large-block header
 * of Blender 5) and returns plain structs: the version that saved it, every
 * scene with its frame range, fps, resolution, engine, samples and camera,
 * and every external file the scene uses (images, movie clips, sounds,
 * fonts, libraries, volumes, Alembic/USD caches, point and fluid cache
 * folders, Mesh Cache files, sequencer strips), each with the path exactly
 * as written and what uses it.  Paths in a library are relative to that
 * library: a caller following libraries resolves each against its own file.
 *
 * Struct layouts come from the file's own SDNA, never from offsets compiled
 * in here, so files of every Blender version read the same way.  Hostile
 * files fail with -EINVAL or -EFBIG and a one-line reason; every length the
 * file states is checked, and the caps in struct blendfile_limits bound the
 * bytes decompressed, the blocks walked and the memory kept.
 *
 * Ownership: blendfile_open() returns one struct blendfile that owns every
 * string and array reachable from it; blendfile_free() releases all of it.
 * Nothing is shared between calls; a struct blendfile may be read by any
 * number of threads once open.  Named blendfile_* because filecheck.h
 * already has a struct blend_info (its header check).
 */
#ifndef RENDERFS_BLENDFILE_H
#define RENDERFS_BLENDFILE_H

#include <stddef.h>
#include <stdint.h>

/* Default caps (struct blendfile_limits with a zero field means these). */
#define BLENDFILE_MAX_EXPANDED (8ULL << 30)   /* bytes read after decompression */
#define BLENDFILE_MAX_BLOCKS   (16ULL << 20)  /* block headers walked */
#define BLENDFILE_MAX_KEPT     (256ULL << 20) /* bytes of blocks held in memory */
#define BLENDFILE_MAX_SDNA     (16U << 20)    /* size of the DNA1 block */

struct blendfile_limits {
	uint64_t max_expanded; /* 0: BLENDFILE_MAX_EXPANDED; past it -EFBIG */
	uint64_t max_blocks;   /* 0: BLENDFILE_MAX_BLOCKS; past it -EFBIG */
	uint64_t max_kept;     /* 0: BLENDFILE_MAX_KEPT; past it -EFBIG */
};

enum blendfile_compression {
	BLENDFILE_PLAIN,
	BLENDFILE_GZIP,
	BLENDFILE_ZSTD,
};

struct blendfile_scene {
	char name[260];   /* without the "SC" prefix */
	int active;       /* 1 for the scene the file opens with (FileGlobal.curscene) */
	int frame_start;  /* r.sfra */
	int frame_end;    /* r.efra */
	int frame_step;   /* r.frame_step */
	int fps;          /* r.frs_sec */
	double fps_base;  /* r.frs_sec_base; real fps is fps / fps_base */
	int res_x, res_y; /* r.xsch, r.ysch */
	int res_percent;  /* r.size */
	char engine[64];  /* r.engine, e.g. "CYCLES", "BLENDER_EEVEE" */
	int samples;      /* Cycles: IDProperty cycles.samples; EEVEE: eevee.taa_render_samples;
			     -1 when the file does not store it (Blender's default applies) */
	char camera[260]; /* the active camera object's name, "" when none */
};

enum blendfile_kind {
	BLENDFILE_IMAGE,
	BLENDFILE_MOVIECLIP,
	BLENDFILE_SOUND,
	BLENDFILE_FONT,
	BLENDFILE_LIBRARY,
	BLENDFILE_VOLUME,
	BLENDFILE_CACHEFILE,  /* Alembic or USD */
	BLENDFILE_POINTCACHE, /* a folder of .bphys files */
	BLENDFILE_FLUIDCACHE, /* a fluid domain's cache folder */
	BLENDFILE_MESHCACHE,  /* Mesh Cache modifier (.mdd / .pc2) */
	BLENDFILE_STRIP,      /* a video sequencer image or movie strip's file */
};

/* How the path names its files (images, clips and volumes). */
enum blendfile_source {
	BLENDFILE_SRC_FILE,     /* one file */
	BLENDFILE_SRC_SEQUENCE, /* numbered frames; path is one of them */
	BLENDFILE_SRC_TILED,    /* UDIM tiles; see tiles[] and the <UDIM> token */
	BLENDFILE_SRC_MOVIE,    /* one movie file */
	BLENDFILE_SRC_DIR,      /* path is a folder (caches) */
};

struct blendfile_path {
	enum blendfile_kind kind;
	enum blendfile_source source;
	char *path; /* as written in the file, e.g. "//textures/wood.png" */
	char *user; /* the ID using it, without its prefix: image "wood",
			  or for caches the object (or scene) that owns them */
	int packed; /* 1 when the data is packed in the .blend (needs no file) */
	int *tiles; /* UDIM tile numbers (1001, ...) when source is TILED */
	size_t ntiles;
};

struct blendfile {
	enum blendfile_compression compression;
	int ptr_size;           /* 4 or 8 */
	int big_endian;         /* 1 for 'V' files */
	int large_bhead;        /* 1 for the 17-byte header with 64-bit block lengths */
	int version;            /* 304 for Blender 3.4, 280 for 2.80, 500 for 5.0 */
	int subversion;         /* FileGlobal.subversion, -1 when absent */
	char saved_by[16];      /* "3.4", "2.80", "5.0" (no patch level: files do not store it) */
	char build_hash[20];    /* FileGlobal.build_hash, "" when absent */
	char *saved_path;       /* FileGlobal.filepath: where the file was saved, or NULL */
	uint64_t expanded_size; /* bytes of .blend data after decompression */
	uint64_t nblocks;       /* blocks before ENDB */

	struct blendfile_scene *scenes;
	size_t nscenes;
	struct blendfile_path *paths;
	size_t npaths;

	struct blendfile_sdna *sdna; /* private: for blendfile_field() */
};

/*
 * Read the .blend at path.  limits may be NULL (defaults).  On success
 * returns 0 and *out, which the caller frees with blendfile_free().
 * Otherwise *out is NULL and a negative errno with a one-line reason in
 * err: -EINVAL (not a .blend, damaged, inconsistent SDNA), -EFBIG (a cap
 * in limits hit), -ENOMEM, or the errno of open/read.
 */
int blendfile_open(const char *path, const struct blendfile_limits *limits, struct blendfile **out, char *err,
		   size_t errsz);

void blendfile_free(struct blendfile *bf);

/* Where a field lies in a struct, as the file's SDNA says. */
struct blendfile_field {
	uint32_t offset;    /* from the start of the outer struct */
	uint32_t size;      /* bytes, all array elements together */
	uint32_t elem_size; /* bytes of one element (ptr_size for pointers) */
	int is_pointer;
	int ndims;        /* 0 to 4 */
	uint32_t dims[4]; /* array dimensions, e.g. name[66] -> {66}, mat[4][4] -> {4, 4} */
	const char *type; /* SDNA type name, e.g. "int", "RenderData"; owned by bf */
};

/*
 * Look up field (dotted for nested structs: "r.sfra", "id.name") of struct
 * sname in the file's SDNA.  0, or -ENOENT when the struct or a field is not
 * there (e.g. a field that a newer Blender added).
 */
int blendfile_field(const struct blendfile *bf, const char *sname, const char *field,
		    struct blendfile_field *out);

/* Number of structs in the SDNA, and the name of struct i (owned by bf). */
size_t blendfile_nstructs(const struct blendfile *bf);
const char *blendfile_struct_name(const struct blendfile *bf, size_t i);

/*
 * The linked libraries' paths as written, for a caller that follows them
 * (blendfile_resolve() each, then blendfile_open() it).  Fills at most max
 * pointers (owned by bf) and returns how many libraries there are.
 */
size_t blendfile_libraries(const struct blendfile *bf, const char **out, size_t max);

/*
 * A path as Blender resolves it: "//x" is relative to the folder of
 * blend_path; other paths are returned as they are.  0, or -ENAMETOOLONG.
 */
int blendfile_resolve(const char *written, const char *blend_path, char *buf, size_t bufsz);

/* "image", "movieclip", "sound", "font", "library", "volume", "cachefile",
 * "pointcache", "fluidcache", "meshcache", "strip"; and "file", "sequence", "tiled",
 * "movie", "dir".  Static strings. */
const char *blendfile_kind_name(enum blendfile_kind kind);
const char *blendfile_source_name(enum blendfile_source src);

#endif
