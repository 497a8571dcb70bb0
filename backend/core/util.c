/*
 * util: clocks, human formats and durable file operations.  Every function
 * returns 0 or a negative errno, the one error currency of the program.
 */
#include "core/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>

int64_t util_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t util_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *util_fmt_duration(char *buf, size_t sz, double secs)
{
	long s;

	/* Numbers from outside (a node's seconds): NaN and negatives read
	 * as 0, anything past UTIL_DURATION_MAX as that, so the conversion
	 * to long below is always defined. */
	if (!(secs >= 0))
		secs = 0;
	if (secs > UTIL_DURATION_MAX)
		secs = UTIL_DURATION_MAX;
	if (secs < 10) {
		snprintf(buf, sz, "%.1fs", secs);
		return buf;
	}
	s = (long)(secs + 0.5);
	if (s < 60)
		snprintf(buf, sz, "%lds", s);
	else if (s < 3600)
		snprintf(buf, sz, "%ldm%02lds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, sz, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
	else
		snprintf(buf, sz, "%ldd%02ldh", s / 86400, (s % 86400) / 3600);
	return buf;
}

char *util_fmt_money(char *buf, size_t sz, double usd)
{
	if (usd > 0 && usd < 0.10)
		snprintf(buf, sz, "$%.4f", usd);
	else
		snprintf(buf, sz, "$%.2f", usd < 0 ? 0.0 : usd);
	return buf;
}

int util_mkdirs(const char *path)
{
	char tmp[4096];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(tmp))
		return -ENAMETOOLONG;
	memcpy(tmp, path, len + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int util_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

static void dir_of(const char *path, char *out, size_t sz)
{
	const char *slash = strrchr(path, '/');

	if (!slash) {
		snprintf(out, sz, ".");
		return;
	}
	snprintf(out, sz, "%.*s", (int)(slash == path ? 1 : slash - path), path);
}

int util_rename_durable(const char *src, const char *dst)
{
	char dir[4096];
	int fd, rc;

	fd = open(src, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	if (rc)
		return rc;
	if (rename(src, dst) < 0)
		return -errno;
	dir_of(dst, dir, sizeof(dir));
	return util_fsync_dir(dir);
}

static void hex_of(const unsigned char *md, unsigned n, char *hex)
{
	static const char digits[] = "0123456789abcdef";

	for (unsigned i = 0; i < n; i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 15];
	}
	hex[2 * n] = '\0';
}

/* Stream from in to out (out may be -1: hash only). */
static int pump(int in, int out, char hex[65])
{
	EVP_MD_CTX *ctx = NULL;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	char *buf;
	int rc = 0;
	off_t off = 0;

	buf = malloc(1 << 20);
	if (!buf)
		return -ENOMEM;
	if (hex) {
		ctx = EVP_MD_CTX_new();
		if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
			rc = -ENOMEM;
			goto out_free;
		}
	}
	for (;;) {
		ssize_t n = pread(in, buf, 1 << 20, off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			goto out_free;
		}
		if (n == 0)
			break;
		off += n;
		if (ctx)
			EVP_DigestUpdate(ctx, buf, (size_t)n);
		for (ssize_t done = 0; out >= 0 && done < n;) {
			ssize_t w = write(out, buf + done, (size_t)(n - done));

			if (w < 0) {
				if (errno == EINTR)
					continue;
				rc = -errno;
				goto out_free;
			}
			done += w;
		}
	}
	if (ctx) {
		EVP_DigestFinal_ex(ctx, md, &mdlen);
		hex_of(md, mdlen, hex);
	}
out_free:
	EVP_MD_CTX_free(ctx);
	free(buf);
	return rc;
}

int util_sha256_fd(int fd, char hex[65])
{
	return pump(fd, -1, hex);
}

int util_sha256_file(const char *path, char hex[65])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -errno;
	rc = pump(fd, -1, hex);
	close(fd);
	return rc;
}

int util_copy_file(const char *src, const char *dst, char hex[65])
{
	char tmp[4200];
	int in, out, rc;

	snprintf(tmp, sizeof(tmp), "%s.part", dst);
	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -errno;
	out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (out < 0) {
		rc = -errno;
		goto out_close_in;
	}
	rc = pump(in, out, hex);
	if (!rc && fsync(out) < 0)
		rc = -errno;
	close(out);
	if (!rc)
		rc = util_rename_durable(tmp, dst);
	if (rc)
		unlink(tmp);
out_close_in:
	close(in);
	return rc;
}

int util_rmtree(const char *path)
{
	DIR *d;
	struct dirent *de;
	int rc = 0;

	d = opendir(path);
	if (!d) {
		if (errno == ENOTDIR)
			return unlink(path) < 0 ? -errno : 0;
		return errno == ENOENT ? 0 : -errno;
	}
	while ((de = readdir(d))) {
		char sub[4096];
		struct stat stt;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		if (lstat(sub, &stt) < 0)
			continue;
		if (S_ISDIR(stt.st_mode))
			rc = util_rmtree(sub);
		else if (unlink(sub) < 0)
			rc = -errno;
	}
	closedir(d);
	if (rmdir(path) < 0 && !rc)
		rc = -errno;
	return rc;
}

int util_read_file(const char *path, size_t cap, char **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;
	size_t got = 0;
	int rc = 0;

	*out = NULL;
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out_close;
	}
	if ((size_t)st.st_size > cap) {
		rc = -EFBIG;
		goto out_close;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out_close;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	*out = buf;
	if (len)
		*len = got;
out_close:
	close(fd);
	return rc;
}

int util_write_file_atomic(const char *path, const void *data, size_t len)
{
	char tmp[4200];
	int fd, rc = 0;
	size_t done = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	while (done < len) {
		ssize_t n = write(fd, (const char *)data + done, len - done);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		done += (size_t)n;
	}
	close(fd);
	if (!rc)
		rc = util_rename_durable(tmp, path);
	if (rc)
		unlink(tmp);
	return rc;
}

int util_tail_lines(const char *path, int nlines, char *out, size_t sz)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	off_t start;
	ssize_t n;
	char *p;
	int seen = 0;

	out[0] = '\0';
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || sz < 2) {
		close(fd);
		return -EIO;
	}
	start = st.st_size > (off_t)(sz - 1) ? st.st_size - (off_t)(sz - 1) : 0;
	n = pread(fd, out, sz - 1, start);
	close(fd);
	if (n < 0)
		return -errno;
	out[n] = '\0';
	while (n > 0 && out[n - 1] == '\n')
		out[--n] = '\0';
	for (p = out + n; p > out; p--) {
		if (p[-1] == '\n' && ++seen == nlines)
			break;
	}
	memmove(out, p, strlen(p) + 1);
	return 0;
}

/* Length of the valid UTF-8 sequence at p (1..4) and its code point, or 0. */
size_t util_utf8_seq(const unsigned char *p, size_t avail, uint32_t *cp)
{
	unsigned char c = p[0];
	size_t n;
	uint32_t v, lo = 0x80, hi = 0xbf;

	if (!avail)
		return 0;
	if (c < 0x80) {
		if (cp)
			*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf)
		n = 2, v = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, v = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, v = c & 0x07;
	else
		return 0;
	/* The second byte's range excludes overlongs, surrogates and
	 * anything past U+10FFFF. */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (avail < n || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0; /* also stops at a NUL */
		v = v << 6 | (p[i] & 0x3f);
	}
	if (cp)
		*cp = v;
	return n;
}

static int clean_escaped(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 || (cp >= 0x202a && cp <= 0x202e) ||
	       (cp >= 0x2066 && cp <= 0x2069);
}

char *util_clean_line(char *dst, size_t dstsz, const char *src)
{
	const unsigned char *p = (const unsigned char *)(src ? src : "");
	size_t len = 0, cap = dstsz - 1, keep = 0; /* keep: where "..." would go */

	if (!dstsz)
		return dst;
	while (*p) {
		char piece[8];
		size_t plen;
		uint32_t cp;
		int n = (int)util_utf8_seq(p, SIZE_MAX, &cp);

		if (n == 1 && (cp < 0x20 || cp == 0x7f)) {
			if (cp == '\n' || cp == '\r' || cp == '\t')
				plen = (size_t)snprintf(piece, sizeof(piece), "\\%c",
							cp == '\n'   ? 'n'
							: cp == '\r' ? 'r'
								     : 't');
			else
				plen = (size_t)snprintf(piece, sizeof(piece), "\\x%02x", (unsigned)cp);
		} else if (n == 0) {
			plen = (size_t)snprintf(piece, sizeof(piece), "\\x%02x", *p);
			n = 1;
		} else if (clean_escaped(cp)) {
			plen = (size_t)snprintf(piece, sizeof(piece), "\\u%04x", (unsigned)cp);
		} else {
			memcpy(piece, p, (size_t)n);
			plen = (size_t)n;
		}
		if (plen > cap - len) {
			/* Does not fit: back to the last boundary with room for "...". */
			if (cap >= 3) {
				memcpy(dst + keep, "...", 3);
				len = keep + 3;
			}
			break;
		}
		memcpy(dst + len, piece, plen);
		len += plen;
		if (len + 3 <= cap)
			keep = len;
		p += n;
	}
	dst[len] = '\0';
	return dst;
}

extern char **environ;

void util_env_wipe(const char *name)
{
	size_t nl = strlen(name);

	/* The value's bytes only: "NAME=" stays, so unsetenv() still finds
	 * and removes every entry.  glibc never frees these strings, and the
	 * initial ones live in the block the kernel shows. */
	for (char **e = environ; e && *e; e++)
		if (!strncmp(*e, name, nl) && (*e)[nl] == '=')
			explicit_bzero(*e + nl + 1, strlen(*e + nl + 1));
	unsetenv(name);
}

void util_sb_printf(struct util_sb *sb, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (sb->oom)
		return;
	for (;;) {
		size_t room = sb->cap - sb->len;

		va_start(ap, fmt);
		n = vsnprintf(sb->buf ? sb->buf + sb->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			sb->oom = 1;
			return;
		}
		if ((size_t)n < room) {
			sb->len += (size_t)n;
			return;
		}
		size_t ncap = sb->cap ? sb->cap * 2 : 1024;
		while (ncap - sb->len <= (size_t)n)
			ncap *= 2;
		char *nb = realloc(sb->buf, ncap);
		if (!nb) {
			sb->oom = 1;
			return;
		}
		sb->buf = nb;
		sb->cap = ncap;
	}
}

void util_sb_free(struct util_sb *sb)
{
	free(sb->buf);
	sb->buf = NULL;
	sb->len = sb->cap = 0;
}
