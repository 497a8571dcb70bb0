/*
 * sidecar: the parser for NAME.range, the per-job settings file.
 *
 * The grammar is the one in product.md: UTF-8 text of at most 64 KiB, '#'
 * starts a comment, the first non-comment line may be a bare frame list,
 * every other line is "key = value".  Unknown keys, bad values and
 * duplicate keys are errors, each reported with its line number.
 *
 * The parser is pure: no I/O, no globals, no allocation besides the frame
 * array and the error text, both owned by the caller afterwards.
 */
#ifndef RENDERFS_SIDECAR_H
#define RENDERFS_SIDECAR_H

#include <stddef.h>
#include <stdint.h>

#define SIDECAR_MAX_BYTES  (64 * 1024)
#define SIDECAR_MAX_FRAME  1048574u /* Blender's own MAXFRAME */
#define SIDECAR_MAX_FRAMES 1000000u /* per job, after removing duplicates */
#define SIDECAR_SCENE_MAX  256      /* bytes, including the NUL */
#define SIDECAR_GPU_MAX    256
#define SIDECAR_RES_MAX    32768 /* a side; the frame check's IMAGE_MAX_DIM */

enum sc_engine { SC_ENGINE_SAVED = 0, SC_ENGINE_CYCLES, SC_ENGINE_EEVEE, SC_ENGINE_WORKBENCH };
enum sc_device { SC_DEVICE_AUTO = 0, SC_DEVICE_OPTIX, SC_DEVICE_CUDA, SC_DEVICE_HIP, SC_DEVICE_CPU };
enum sc_format { SC_FORMAT_PNG = 0, SC_FORMAT_EXR, SC_FORMAT_JPEG, SC_FORMAT_TIFF };

struct sidecar {
	uint32_t *frames; /* sorted ascending, no duplicates; owned, free with sidecar_free() */
	size_t nframes;   /* 0 (frames NULL): none given, the scene's own range (intake fills it) */
	char scene[SIDECAR_SCENE_MAX]; /* "" = the file's active scene */
	enum sc_engine engine;
	enum sc_device device;
	int samples;      /* 0 = as saved */
	int res_w, res_h; /* 0 = as saved; set together by "WxH" */
	int res_pct;      /* 0 = as saved; set by "N%" */
	enum sc_format format;
	int video;         /* -1 = default (yes when nframes >= 2), 0 no, 1 yes */
	double fps;        /* 0 = the scene's, else 24 */
	int retries;       /* default 3 */
	int64_t timeout_s; /* 0 = none */
	int priority;      /* default 0 */
	/* [clore] overrides for this job; "unset" values mean "the config's". */
	int nodes;                 /* 0 = unset */
	char gpu[SIDECAR_GPU_MAX]; /* "" = unset */
	double min_vram;           /* < 0 = unset */
	double max_price;          /* < 0 = unset */
	int spot;                  /* -1 = unset, 0 no, 1 yes */
	double budget;             /* < 0 = unset */
	int missing_ignore;        /* missing = ignore: render without the files not in the drop */
};

/*
 * Parse text[0..len) (need not be NUL-terminated).  fname is the file name
 * used in messages ("shot.range").  Returns 0 and fills *out on success.
 * On any problem returns -EINVAL and sets *errors to a malloc'd,
 * NUL-terminated text with one line per problem, each of the form
 *   "shot.range:3: unknown key 'sampels'\n"
 * (line 0 is used for problems of the whole file, e.g. one too large).
 * All problems are reported, not only the first.  On success *errors is
 * NULL.  Returns -ENOMEM on allocation failure.
 * *out is always left in a state sidecar_free() accepts.
 */
int sidecar_parse(const char *text, size_t len, const char *fname, struct sidecar *out, char **errors);
void sidecar_free(struct sidecar *sc);

/* Frame list "1-9x2,12": sorted, deduplicated, malloc'd into *frames.
 * Returns 0, or -EINVAL with a short reason in why (no file/line prefix). */
int sidecar_parse_frames(const char *s, uint32_t **frames, size_t *n, char *why, size_t whysz);

/* Durations as in the config and the sidecar: "90s", "30m", "2h",
 * "1h30m", "500ms", "0.5s", "45" (plain number = seconds).  Result in
 * milliseconds.  Returns 0 or -EINVAL (also for negative or absurd values
 * over 30 days). */
int parse_duration_ms(const char *s, int64_t *ms);

const char *sc_engine_name(enum sc_engine e); /* "" for SAVED, else "cycles"... */
const char *sc_device_name(enum sc_device d); /* "auto", "optix", ... */
const char *sc_format_name(enum sc_format f); /* "png", "exr", "jpeg", "tiff" */
const char *sc_format_ext(enum sc_format f);  /* ".png", ".exr", ".jpg", ".tif" */

#endif
