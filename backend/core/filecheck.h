/*
 * filecheck: recognising what a file really is, without trusting its name.
 *
 * blend_check() tells whether a dropped file is a complete Blender file
 * (plain, gzip- or zstd-compressed).  image_check() tells whether a rendered
 * frame is a complete image of the expected format and pixel size.  Both
 * read only; neither follows the file's own idea of how much memory it needs
 * beyond fixed caps.
 */
#ifndef RENDERFS_FILECHECK_H
#define RENDERFS_FILECHECK_H

#include <stddef.h>
#include <stdint.h>
#include "core/sidecar.h"

struct blend_info {
	int compressed; /* 0 plain, 1 gzip, 2 zstd */
	int version;    /* e.g. 304 for Blender 3.4 */
	int ptr_size;   /* 4 or 8 */
	int big_endian;
};

/*
 * Check the file open at fd (read from offset 0 with pread; the offset is
 * not used).  Returns 0 when it is a Blender file whose block list runs
 * whole to its ENDB block.  Otherwise -EINVAL (or -EIO on read error) and a
 * one-line human reason in why, e.g. "empty file (0 bytes)",
 * "not a Blender file (starts with 'PK\x03\x04')",
 * "truncated Blender file (block at byte 81234 runs past the end)".
 */
int blend_check(int fd, struct blend_info *info, char *why, size_t whysz);

/*
 * Decompression is bounded: a gzip or zstd .blend may expand to at most
 * BLEND_MAX_RATIO times its compressed size (Blender's own files stay
 * under about 10 times; zeros compress over 1000 times), never less than
 * BLEND_RATIO_FLOOR (small files check cheaply whatever their ratio) and
 * never more than BLEND_MAX_EXPANDED.  Past that blend_check() stops
 * decompressing and fails with -EINVAL and "refused: this zstd .blend
 * expands to more than N bytes (...)".  The cost of checking any file is
 * thus at most BLEND_MAX_EXPANDED bytes of decompression.
 */
#define BLEND_MAX_RATIO    64u
#define BLEND_RATIO_FLOOR  (256ull << 20) /* 256 MiB */
#define BLEND_MAX_EXPANDED (16ull << 30)  /* 16 GiB */
/* The expanded-size limit for a compressed file of that many bytes. */
uint64_t blend_max_expanded(uint64_t compressed);

/*
 * Check the image at path: the format's signature, its header's width and
 * height within IMAGE_MAX_DIM a side and equal to want_w x want_h, the
 * file complete (PNG up to IEND, JPEG ending in EOI, EXR/TIFF headers and
 * every referenced offset inside the file), and its byte size within a
 * plausible range for that size.  want_w, want_h are what the JOB asked
 * for, never what the node that rendered it says; 0 means "not known":
 * the hard caps still apply (IMAGE_MAX_DIM, the size bound, every chunk
 * and offset inside the file), only the equality is not checked.  The
 * size is checked from the header before the rest of the file is read.
 * Returns 0, or -EINVAL with a reason in why (also for want_w or want_h
 * negative or over IMAGE_MAX_DIM).
 */
int image_check(const char *path, enum sc_format fmt, int want_w, int want_h, char *why, size_t whysz);

/* The largest side a frame may have, whatever the job asks. */
#define IMAGE_MAX_DIM 32768
/* Bytes per pixel an EXR's channel list may claim for the size bound:
 * 128 float channels, twice over for compression overhead. */
#define IMAGE_EXR_BPP_MAX 1024

/*
 * The most bytes image_check() accepts for a w x h image of fmt (for EXR,
 * with the widest channel list it accepts): the cap for copying a frame.
 * 0 when w or h is not 1..IMAGE_MAX_DIM.
 */
uint64_t image_max_bytes(enum sc_format fmt, int w, int h);

/* Read width and height from an image header; 0 or -EINVAL. */
int image_size(const char *path, enum sc_format fmt, int *w, int *h);

#endif
