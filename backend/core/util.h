/*
 * util: small helpers shared by the backend and the filesystem: clocks,
 * human formatting of durations and money, durable file operations and
 * content hashes.  Nothing here keeps state.
 */
#ifndef RENDERFS_UTIL_H
#define RENDERFS_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Wall-clock milliseconds since the epoch: stamps stored in the database. */
int64_t util_now_ms(void);
/* Monotonic milliseconds: intervals that must not jump with the clock. */
int64_t util_mono_ms(void);

/* "12m31s", "3h05m", "0.4s", "2d04h".  Writes into buf, returns buf.
 * NaN and negative values show as 0, values over UTIL_DURATION_MAX (about
 * 31 years) as that. */
#define UTIL_DURATION_MAX 1e9
char *util_fmt_duration(char *buf, size_t sz, double secs);
/* "$1.84", "$0.0400" (4 decimals under $0.10), "$0.00" for zero. */
char *util_fmt_money(char *buf, size_t sz, double usd);

/* mkdir -p with mode 0700 for components it creates; 0 or -errno. */
int util_mkdirs(const char *path);
/* fsync the directory that holds path (or path itself if a directory). */
int util_fsync_dir(const char *dir);
/* Move src to dst durably: fsync(src), rename, fsync(dst's directory). */
int util_rename_durable(const char *src, const char *dst);
/* Copy src to dst (dst created with mode 0600, durable), computing the
 * SHA-256 of the bytes copied into hex[65] when hex is not NULL. */
int util_copy_file(const char *src, const char *dst, char hex[65]);
/* SHA-256 of a file (hex[65]), or of the open fd from offset 0. */
int util_sha256_file(const char *path, char hex[65]);
int util_sha256_fd(int fd, char hex[65]);
/* Remove a directory tree (no symlink following).  0 or -errno. */
int util_rmtree(const char *path);
/* Read a whole small file (at most cap bytes) into a malloc'd NUL-terminated
 * buffer owned by the caller.  -EFBIG when larger than cap. */
int util_read_file(const char *path, size_t cap, char **out, size_t *len);
/* Write data to path atomically (tmp + rename + fsync dir). */
int util_write_file_atomic(const char *path, const void *data, size_t len);
/* Keep only the last max bytes' worth of whole lines of a text file in out. */
int util_tail_lines(const char *path, int nlines, char *out, size_t sz);

/*
 * Make text from outside (a node's report, a user's file name, a remote
 * error message) safe for one line of a status or error file: copied into
 * dst (at most dstsz-1 bytes, always NUL-terminated; dstsz >= 1) with
 *   - newline, CR and tab written as \n, \r, \t, other C0 controls and
 *     DEL as \xNN, the C1 controls, the line and paragraph separators
 *     (U+2028, U+2029) and the bidirectional overrides (U+202A-U+202E,
 *     U+2066-U+2069) as \uNNNN;
 *   - bytes that are not valid UTF-8 (stray continuation bytes, overlong
 *     forms, surrogates, past U+10FFFF, cut sequences) as \xNN each;
 *   - valid UTF-8 kept as it is;
 *   - when it does not fit, cut at a character boundary and ended with
 *     "..." (so a cut is visible), never inside a character or an escape.
 * src NULL is taken as ""; dst and src must not overlap.  Returns dst.
 */
char *util_clean_line(char *dst, size_t dstsz, const char *src);
/* Length of the well-formed UTF-8 sequence at p (avail bytes there; a
 * NUL-terminated string may pass SIZE_MAX), or 0.  Overlong forms,
 * surrogates and code points past U+10FFFF are refused (Unicode table
 * 3-7), so "valid" is what Python and Blender accept too.  *cp gets the
 * code point when cp is not NULL. */
size_t util_utf8_seq(const unsigned char *p, size_t avail, uint32_t *cp);

/*
 * Remove the environment variable name so that its value cannot be read
 * back: the value bytes of every "name=value" string in environ -- those
 * of the process's initial environment block, which /proc/PID/environ
 * shows even after unsetenv(), included -- are overwritten with zeros,
 * then the variable is unset (the name itself stays visible there).  Not thread-safe (as setenv is not); call it
 * before starting threads.  Pointers getenv() gave for it read "" after.
 */
void util_env_wipe(const char *name);

/* A growable string; s.buf is owned and freed with util_sb_free(). */
struct util_sb {
	char *buf;
	size_t len, cap;
	int oom;
};
void util_sb_printf(struct util_sb *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void util_sb_free(struct util_sb *sb);

#endif
