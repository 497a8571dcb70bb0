/*
 * install: what a node needs on its disk before it can render -- the
 * worker script and each job's scene (a blob named by its SHA-256) -- put
 * there once and verified by hash on the node itself.  A fresh work
 * directory per slot too.  And, for a node with `blender = auto`, Blender
 * itself: the official Linux build of the series that saved a job's file,
 * which the node downloads from the mirror, checks against the published
 * SHA-256 and unpacks into HOME/blender/VERSION/ (HOME is the node's
 * renderfs directory, ~/.renderfs).  Every word of every command is ours:
 * fixed names, the node's directory, hashes, versions made of digits and
 * dots, and the mirror URL checked by config.
 *
 * Threads: a struct install is its runner's, used on the runner's thread
 * (transfers block).  Ownership: node stays the runner's; every buffer is
 * the caller's.
 */
#ifndef RENDERFS_INSTALL_H
#define RENDERFS_INSTALL_H

#include "nodes/transport.h"
#include "store/store.h"

#include <stddef.h>

#define INSTALL_KNOWN_BLOBS 32
/* Blender builds remembered per node (HOME/blender/VERSION). */
#define INSTALL_MAX_BLENDERS 32
/* "3.4.1", "2.83.20": digits and dots, short. */
#define INSTALL_VERSION_MAX 16

struct install {
	struct tnode *node; /* not owned */
	int is_local;       /* this machine: the files are already where they must be */
	/* Blobs verified present on the node since the last connect, oldest
	 * first (a small cache: at most INSTALL_KNOWN_BLOBS). */
	char known[INSTALL_KNOWN_BLOBS][65];
	int nknown;
	/* The Blender builds installed on the node (install_list_blenders,
	 * then each install_blender that worked). */
	char blenders[INSTALL_MAX_BLENDERS][INSTALL_VERSION_MAX];
	int nblenders;
	/* Which download tool the node has: 0 not yet known, then 1 curl,
	 * 2 wget, 3 python3 (the first one the node can run). */
	int fetcher;
};

void install_init(struct install *in, struct tnode *node, int is_local);
/* The connection was dropped: check every blob again on the next use. */
void install_forget(struct install *in);

/* An empty directory at path on the node (made afresh). */
int install_fresh_dir(struct install *in, const char *path);

/*
 * Make sure the blob sha (this machine's copy is in st's blobs/) is on the
 * node, named by its hash, and really is those bytes; its path on the node
 * goes to remote.  A scene goes to a node once: a second job with the same
 * file uploads nothing.  -EIO when the upload did not verify.
 */
int install_blob(struct install *in, const struct store *st, const char *sha, char *remote, size_t sz);

/* The worker script at `local` on the node, named by its own hash; its
 * path there goes to remote. */
int install_worker(struct install *in, const char *local, char *remote, size_t sz);

/* ---- Blender on the node ---- */

/* 1 when v is a version renderfs accepts: 2 or 3 numbers of digits joined
 * by dots, shorter than INSTALL_VERSION_MAX.  Anything a node, a mirror or
 * a file says is checked with this before it goes into a path or a URL. */
int install_version_ok(const char *v);
/* <0, 0, >0 as version a is older than, the same as, newer than b
 * ("4.10.0" is newer than "4.9.1"). */
int install_version_cmp(const char *a, const char *b);
/* The series of a version: "3.4.1" -> "3.4", "2.93.18" -> "2.93".
 * -EINVAL unless install_version_ok(). */
int install_series_of(const char *version, char *series, size_t sz);
/* The series of the Blender that saved the .blend at path (on this
 * machine), from its header (plain, gzip or zstd; the 12-byte header and
 * Blender 5's 17-byte one): 304 -> "3.4", 283 -> "2.83", 500 -> "5.0".
 * 0, -EINVAL when it is no .blend, or -errno. */
int install_blend_series(const char *path, char *series, size_t sz);
/* The release renderfs installs for a series (blender-releases.txt): the
 * version, and the tarball's file name.  0, or -ENOENT when renderfs
 * knows no release of that series. */
int install_known_release(const char *series, char *version, size_t vsz, char *tarball, size_t tsz);

/* The newest build of a series that a mirror folder's listing (HTML, or
 * any text) names: blender-SERIES.N-linux-x64.tar.xz, or the older
 * ...-linux64.tar.xz.  0, or -ENOENT when it names none. */
int install_newest_listed(const char *listing, const char *series, char *version, size_t vsz, char *tarball,
			  size_t tsz);

/* Read which builds are installed (HOME/blender/VERSION/blender) into
 * in->blenders.  A node with none is not an error. */
int install_list_blenders(struct install *in);
/* The newest installed build of a series, or NULL.  Points into in. */
const char *install_find_blender(const struct install *in, const char *series);
/* HOME/blender/VERSION/blender, the program to start. */
void install_blender_path(const struct install *in, const char *version, char *out, size_t sz);

/*
 * Install the known release of `series` on the node: the node fetches
 * MIRROR/BlenderSERIES/TARBALL and MIRROR/BlenderSERIES/blender-V.sha256
 * itself (curl, else wget, else python3) -- when the mirror lacks that
 * release, the newest build of the series its folder listing names --
 * checks the tarball's SHA-256
 * against its line in that list, unpacks it into a temporary folder and
 * renames it to HOME/blender/V, so a cut install never looks whole.  A
 * second install of a version already there is a no-op.  mirror is
 * config's `[renderfs] blender_mirror` (http or https, no trailing '/').
 * On success the version goes to version.  Failures: -ENOPKG (no known
 * release, a failed download, a checksum that does not match, a tarball
 * without blender in it) with a one-line reason in why; a link error as
 * the transport gives it.
 */
int install_blender(struct install *in, const char *mirror, const char *series, char *version, size_t vsz,
		    char *why, size_t whysz);

#endif
