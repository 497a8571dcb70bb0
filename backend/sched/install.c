/*
 * install: blobs, the worker script and Blender builds on a node (see
 * install.h).  Every argv word is ours: fixed command names and scripts,
 * paths made of the node's directory, slot numbers, hashes and versions
 * checked by install_version_ok(), and the mirror URL config checked.
 */
#include "sched/install.h"
#include "core/util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

/* blender-releases.txt, compiled in (embed.py). */
extern const unsigned char blender_releases[];
extern const size_t blender_releases_len;

void install_init(struct install *in, struct tnode *node, int is_local)
{
	memset(in, 0, sizeof(*in));
	in->node = node;
	in->is_local = is_local;
}

void install_forget(struct install *in)
{
	in->nknown = 0;
	in->nblenders = 0; /* listed again at the next connect */
	in->fetcher = 0;
}

int install_fresh_dir(struct install *in, const char *path)
{
	char *rm[] = {"rm", "-rf", "--", (char *)path, NULL};
	char *mk[] = {"mkdir", "-p", "--", (char *)path, NULL};
	int status, rc;

	if (in->is_local) {
		util_rmtree(path);
		return util_mkdirs(path);
	}
	rc = in->node->ops->run(in->node, rm, NULL, 0, &status, 30000);
	if (!rc)
		rc = in->node->ops->run(in->node, mk, NULL, 0, &status, 30000);
	if (!rc && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		rc = -EACCES;
	return rc;
}

/* The SHA-256 of a file on the node, by running sha256sum there. */
static int node_sha256(struct install *in, const char *path, char hex[65])
{
	char *argv[] = {"sha256sum", "--", (char *)path, NULL};
	char out[256];
	int status, rc;

	rc = in->node->ops->run(in->node, argv, out, sizeof(out), &status, 300000);
	if (rc)
		return rc;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || strlen(out) < 64)
		return -ENOENT;
	memcpy(hex, out, 64);
	hex[64] = '\0';
	return 0;
}

/* An interrupted upload leaves only a .part file (the transport's put),
 * which the next attempt replaces. */
int install_blob(struct install *in, const struct store *st, const char *sha, char *remote, size_t sz)
{
	char local[4096], got[65];
	int rc;

	snprintf(remote, sz, "%s/blobs/%s.blend", in->node->home, sha);
	if (in->is_local)
		return 0;
	for (int i = 0; i < in->nknown; i++)
		if (!strcmp(in->known[i], sha))
			return 0;
	rc = node_sha256(in, remote, got);
	if (rc || strcmp(got, sha)) {
		store_path_blob(st, sha, local, sizeof(local));
		rc = in->node->ops->put(in->node, local, remote);
		if (rc)
			return rc;
		rc = node_sha256(in, remote, got);
		if (rc)
			return rc;
		if (strcmp(got, sha))
			return -EIO;
	}
	if (in->nknown == INSTALL_KNOWN_BLOBS) {
		memmove(in->known[0], in->known[1], sizeof(in->known[0]) * (INSTALL_KNOWN_BLOBS - 1));
		in->nknown--;
	}
	snprintf(in->known[in->nknown++], sizeof(in->known[0]), "%s", sha);
	return 0;
}

int install_worker(struct install *in, const char *local, char *remote, size_t sz)
{
	char sha[65], got[65];
	int rc;

	if (in->is_local) {
		snprintf(remote, sz, "%s", local);
		return 0;
	}
	rc = util_sha256_file(local, sha);
	if (rc)
		return rc;
	snprintf(remote, sz, "%s/worker-%.16s.py", in->node->home, sha);
	if (node_sha256(in, remote, got) == 0 && !strcmp(got, sha))
		return 0;
	return in->node->ops->put(in->node, local, remote);
}

/* ---- Blender on the node ---- */

/* How long a download may take: an official build is 200-400 MB. */
#define INSTALL_FETCH_MS  (30 * 60 * 1000)
#define INSTALL_UNPACK_MS (10 * 60 * 1000)
/* The checksum list and the install listing are small; more is refused. */
#define INSTALL_LIST_MAX 65536
/* A series folder's HTML listing (the official ones are a few tens of KiB). */
#define INSTALL_LISTING_MAX (1 << 20)

int install_version_ok(const char *v)
{
	int parts = 0, digits = 0;
	size_t n = strlen(v);

	if (n == 0 || n >= INSTALL_VERSION_MAX)
		return 0;
	for (const char *p = v;; p++) {
		if (*p >= '0' && *p <= '9') {
			if (++digits > 4)
				return 0;
			continue;
		}
		if (!digits || (*p != '.' && *p != '\0'))
			return 0;
		parts++;
		digits = 0;
		if (!*p)
			break;
	}
	return parts == 2 || parts == 3;
}

int install_series_of(const char *version, char *series, size_t sz)
{
	const char *dot;
	size_t n;

	if (!install_version_ok(version))
		return -EINVAL;
	dot = strchr(strchr(version, '.') + 1, '.');
	n = dot ? (size_t)(dot - version) : strlen(version);
	if (n >= sz)
		return -ENAMETOOLONG;
	memcpy(series, version, n);
	series[n] = '\0';
	return 0;
}

/* The first want bytes of the file's (decompressed) data. */
static int read_head(const char *path, unsigned char *buf, size_t want)
{
	unsigned char raw[4];
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = -EINVAL;
	ssize_t got;

	if (fd < 0)
		return -errno;
	got = pread(fd, raw, sizeof(raw), 0);
	if (got == (ssize_t)sizeof(raw) && raw[0] == 0x1f && raw[1] == 0x8b) {
		gzFile gz = gzdopen(fd, "rb");

		if (!gz) {
			close(fd);
			return -ENOMEM;
		}
		rc = gzread(gz, buf, (unsigned)want) == (int)want ? 0 : -EINVAL;
		gzclose(gz); /* closes fd */
		return rc;
	}
	if (got == (ssize_t)sizeof(raw) && raw[0] == 0x28 && raw[1] == 0xb5 && raw[2] == 0x2f &&
	    raw[3] == 0xfd) {
		/* Enough compressed input for the first frame's first bytes;
		 * the header is at the very start of the data. */
		unsigned char in[1 << 16];
		ZSTD_DCtx *dc = ZSTD_createDCtx();
		ZSTD_inBuffer ib;
		ZSTD_outBuffer ob = {buf, want, 0};
		off_t off = 0;

		if (!dc) {
			close(fd);
			return -ENOMEM;
		}
		while (ob.pos < want && off < (off_t)(1 << 22)) {
			ssize_t n = pread(fd, in, sizeof(in), off);

			if (n <= 0)
				break;
			off += n;
			ib = (ZSTD_inBuffer){in, (size_t)n, 0};
			while (ib.pos < ib.size && ob.pos < want)
				if (ZSTD_isError(ZSTD_decompressStream(dc, &ob, &ib)))
					goto zstd_done;
		}
	zstd_done:
		rc = ob.pos == want ? 0 : -EINVAL;
		ZSTD_freeDCtx(dc);
		close(fd);
		return rc;
	}
	got = pread(fd, buf, want, 0);
	close(fd);
	return got == (ssize_t)want ? 0 : -EINVAL;
}

int install_blend_series(const char *path, char *series, size_t sz)
{
	unsigned char h[17];
	int v = 0, rc;

	/* "BLENDER_v304" (pointer size, endianness, 3 digits), or Blender 5's
	 * "BLENDER17-01v0500" (header size, format, endianness, 4 digits). */
	rc = read_head(path, h, 12);
	if (rc)
		return rc;
	if (memcmp(h, "BLENDER", 7))
		return -EINVAL;
	if (isdigit(h[7]) && isdigit(h[8])) {
		rc = read_head(path, h, 17);
		if (rc)
			return rc;
		for (int i = 13; i < 17; i++)
			if (!isdigit(h[i]))
				return -EINVAL;
		v = (h[13] - '0') * 1000 + (h[14] - '0') * 100 + (h[15] - '0') * 10 + (h[16] - '0');
	} else {
		for (int i = 9; i < 12; i++)
			if (!isdigit(h[i]))
				return -EINVAL;
		v = (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
	}
	if (v < 200)
		return -EINVAL;
	/* 2.x named its series by two digits (2.80, 2.93); 3.0 on by one. */
	rc = v < 300 ? snprintf(series, sz, "%d.%02d", v / 100, v % 100)
		     : snprintf(series, sz, "%d.%d", v / 100, v % 100);
	return rc < 0 || (size_t)rc >= sz ? -ENAMETOOLONG : 0;
}

int install_known_release(const char *series, char *version, size_t vsz, char *tarball, size_t tsz)
{
	const char *p = (const char *)blender_releases, *end = p + blender_releases_len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char line[256], ser[INSTALL_VERSION_MAX], ver[INSTALL_VERSION_MAX], tar[128] = "";
		int n;

		if (len < sizeof(line) && len && p[0] != '#') {
			memcpy(line, p, len);
			line[len] = '\0';
			n = sscanf(line, "%15s %15s %127s", ser, ver, tar);
			if (n >= 2 && !strcmp(ser, series) && install_version_ok(ver)) {
				if (n < 3)
					snprintf(tar, sizeof(tar), "blender-%s-linux-x64.tar.xz", ver);
				if (strlen(ver) >= vsz || strlen(tar) >= tsz)
					return -ENAMETOOLONG;
				memcpy(version, ver, strlen(ver) + 1);
				memcpy(tarball, tar, strlen(tar) + 1);
				return 0;
			}
		}
		p += len + 1;
	}
	return -ENOENT;
}

/* Run argv on the node: 0 when it ran and exited 0, 1 when it ran and
 * failed (exit code in *code), or a transport error. */
static int node_cmd(struct install *in, char *const argv[], char *out, size_t outsz, int timeout_ms,
		    int *code)
{
	int status, rc;

	rc = in->node->ops->run(in->node, argv, out, outsz, &status, timeout_ms);
	if (rc)
		return rc;
	*code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	return *code ? 1 : 0;
}

/* Newest first: compare version strings number by number. */
int install_version_cmp(const char *a, const char *b)
{
	while (*a || *b) {
		long x = strtol(a, (char **)&a, 10), y = strtol(b, (char **)&b, 10);

		if (x != y)
			return x < y ? -1 : 1;
		if (*a == '.')
			a++;
		if (*b == '.')
			b++;
		if (!*a != !*b)
			return *a ? 1 : -1;
	}
	return 0;
}

static void remember_blender(struct install *in, const char *v)
{
	for (int i = 0; i < in->nblenders; i++)
		if (!strcmp(in->blenders[i], v))
			return;
	if (in->nblenders < INSTALL_MAX_BLENDERS)
		snprintf(in->blenders[in->nblenders++], INSTALL_VERSION_MAX, "%s", v);
}

int install_list_blenders(struct install *in)
{
	/* One fixed script: a build counts when its program is there. */
	static const char script[] =
	    "cd \"$1\" 2>/dev/null || exit 0; "
	    "for d in *; do [ -x \"$d/blender\" ] && printf '%s\\n' \"$d\"; done; exit 0";
	char dir[1200], out[4096];
	char *argv[] = {"sh", "-c", (char *)script, "sh", dir, NULL};
	int code, rc;

	in->nblenders = 0;
	snprintf(dir, sizeof(dir), "%s/blender", in->node->home);
	rc = node_cmd(in, argv, out, sizeof(out), 30000, &code);
	if (rc < 0)
		return rc;
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"))
		if (install_version_ok(line))
			remember_blender(in, line);
	return 0;
}

const char *install_find_blender(const struct install *in, const char *series)
{
	const char *best = NULL;
	char s[INSTALL_VERSION_MAX];

	for (int i = 0; i < in->nblenders; i++)
		if (!install_series_of(in->blenders[i], s, sizeof(s)) && !strcmp(s, series) &&
		    (!best || install_version_cmp(in->blenders[i], best) > 0))
			best = in->blenders[i];
	return best;
}

void install_blender_path(const struct install *in, const char *version, char *out, size_t sz)
{
	snprintf(out, sz, "%s/blender/%s/blender", in->node->home, version);
}

/* The node's own download of url, into the file dest on the node, or with
 * dest NULL to out (at most outsz-1 bytes).  The first tool the node has
 * is remembered.  0, -ENOPKG with why, or a transport error. */
static int node_fetch(struct install *in, const char *url, const char *dest, char *out, size_t outsz,
		      char *why, size_t whysz)
{
	/* python3's standard library, when neither curl nor wget is there. */
	static const char py[] = "import shutil, sys, urllib.request\n"
				 "r = urllib.request.urlopen(sys.argv[1], timeout=60)\n"
				 "o = sys.stdout.buffer if sys.argv[2] == '-' else open(sys.argv[2], 'wb')\n"
				 "shutil.copyfileobj(r, o, 1 << 20)\n"
				 "o.close()\n";
	static const char *const names[] = {"", "curl", "wget", "python3"};
	int timeout = dest ? INSTALL_FETCH_MS : 120000;
	int first = in->fetcher ? in->fetcher : 1, last = in->fetcher ? in->fetcher : 3;
	char *to = (char *)(dest ? dest : "-"), *u = (char *)url;

	for (int tool = first; tool <= last; tool++) {
		char *curl[] = {"curl", "-fsSL", "--connect-timeout", "30", "-o", to, u, NULL};
		char *wget[] = {"wget", "-q", "-T", "60", "-O", to, u, NULL};
		char *python[] = {"python3", "-c", (char *)py, u, to, NULL};
		char *const *argv = tool == 1 ? curl : tool == 2 ? wget : python;
		int code, rc = node_cmd(in, argv, out, outsz, timeout, &code);

		if (rc < 0)
			return rc;
		if (rc == 0) {
			in->fetcher = tool;
			return 0;
		}
		if (code == 127 && !in->fetcher)
			continue; /* not on this node: the next tool */
		in->fetcher = tool;
		snprintf(why, whysz, "download of %s failed (%s exit status %d)", url, names[tool], code);
		return -ENOPKG;
	}
	snprintf(why, whysz, "the node has none of curl, wget, python3 to download %s", url);
	return -ENOPKG;
}

/* The hash the checksum list gives for name ("HEX  name" or "HEX *name"
 * lines, as sha256sum writes them). */
static int sum_for(char *list, const char *name, char hex[65])
{
	for (char *line = strtok(list, "\n"); line; line = strtok(NULL, "\n")) {
		char *p = line;
		size_t n = strspn(p, "0123456789abcdefABCDEF");

		if (n != 64 || (p[64] != ' ' && p[64] != '\t'))
			continue;
		p += 64;
		p += strspn(p, " \t");
		if (*p == '*')
			p++;
		p[strcspn(p, "\r")] = '\0';
		if (strcmp(p, name))
			continue;
		for (int i = 0; i < 64; i++)
			hex[i] = (char)tolower((unsigned char)line[i]);
		hex[64] = '\0';
		return 0;
	}
	return -ENOENT;
}

static int unpack(struct install *in, const char *tarball, const char *dir, char *why, size_t whysz)
{
	/* tar with xz where the node has both; python3's tarfile else, which
	 * refuses members that would land outside dir. */
	static const char py[] = "import os, sys, tarfile\n"
				 "d = os.path.realpath(sys.argv[2])\n"
				 "with tarfile.open(sys.argv[1], 'r:xz') as t:\n"
				 "    for m in t.getmembers():\n"
				 "        p = os.path.realpath(os.path.join(d, m.name))\n"
				 "        if not p.startswith(d + os.sep) or m.isdev():\n"
				 "            sys.exit('refused member ' + repr(m.name))\n"
				 "    if hasattr(tarfile, 'data_filter'):\n"
				 "        t.extractall(d, filter='data')\n"
				 "    else:\n"
				 "        t.extractall(d)\n";
	char *tar[] = {"tar", "-xJf", (char *)tarball, "-C", (char *)dir, "--no-same-owner", NULL};
	char *python[] = {"python3", "-c", (char *)py, (char *)tarball, (char *)dir, NULL};
	int code, rc;

	rc = node_cmd(in, tar, NULL, 0, INSTALL_UNPACK_MS, &code);
	if (rc <= 0)
		return rc;
	rc = install_fresh_dir(in, dir);
	if (rc)
		return rc;
	rc = node_cmd(in, python, NULL, 0, INSTALL_UNPACK_MS, &code);
	if (rc <= 0)
		return rc;
	snprintf(why, whysz, "cannot unpack %s on the node (tar and python3 both failed)", tarball);
	return -ENOPKG;
}

int install_newest_listed(const char *listing, const char *series, char *version, size_t vsz, char *tarball,
			  size_t tsz)
{
	static const char *const suffixes[] = {"-linux-x64.tar.xz", "-linux64.tar.xz"};
	char prefix[32], best[INSTALL_VERSION_MAX] = "", best_tar[128] = "";
	size_t plen;

	if (snprintf(prefix, sizeof(prefix), "blender-%s.", series) >= (int)sizeof(prefix))
		return -ENOENT;
	plen = strlen(prefix);
	for (const char *p = strstr(listing, prefix); p; p = strstr(p + plen, prefix)) {
		const char *q = p + plen;
		size_t n = strspn(q, "0123456789");
		char v[INSTALL_VERSION_MAX];

		if (!n || n > 4)
			continue;
		snprintf(v, sizeof(v), "%s.%.*s", series, (int)n, q);
		for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
			if (strncmp(q + n, suffixes[i], strlen(suffixes[i])) || !install_version_ok(v))
				continue;
			if (!best[0] || install_version_cmp(v, best) > 0) {
				snprintf(best, sizeof(best), "%s", v);
				snprintf(best_tar, sizeof(best_tar), "blender-%s%s", v, suffixes[i]);
			}
		}
	}
	if (!best[0])
		return -ENOENT;
	if (strlen(best) >= vsz || strlen(best_tar) >= tsz)
		return -ENAMETOOLONG;
	memcpy(version, best, strlen(best) + 1);
	memcpy(tarball, best_tar, strlen(best_tar) + 1);
	return 0;
}

/* The checksum list of version ver into sums.  When the mirror does not
 * have it (the table names a release this mirror lacks), the newest build
 * of the series that the folder's listing names is used instead, and ver
 * and tarname change to it.  0, -ENOPKG with why, or a transport error. */
static int fetch_sums(struct install *in, const char *mirror, const char *series, char *ver, size_t vsz,
		      char *tarname, size_t tsz, char *sums, size_t sumsz, char *why, size_t whysz)
{
	char url[4600], v2[INSTALL_VERSION_MAX], t2[128], first[512];
	char *listing;
	int rc;

	snprintf(url, sizeof(url), "%s/Blender%s/blender-%s.sha256", mirror, series, ver);
	rc = node_fetch(in, url, NULL, sums, sumsz, why, whysz);
	if (rc != -ENOPKG)
		return rc;
	snprintf(first, sizeof(first), "%s", why);
	listing = malloc(INSTALL_LISTING_MAX);
	if (!listing)
		return -ENOMEM;
	snprintf(url, sizeof(url), "%s/Blender%s/", mirror, series);
	rc = node_fetch(in, url, NULL, listing, INSTALL_LISTING_MAX, why, whysz);
	if (rc == 0)
		rc =
		    install_newest_listed(listing, series, v2, sizeof(v2), t2, sizeof(t2)) || !strcmp(v2, ver)
			? -ENOPKG
			: 0;
	free(listing);
	if (rc == 0) {
		snprintf(url, sizeof(url), "%s/Blender%s/blender-%s.sha256", mirror, series, v2);
		rc = node_fetch(in, url, NULL, sums, sumsz, why, whysz);
		if (rc == 0) {
			snprintf(ver, vsz, "%s", v2);
			snprintf(tarname, tsz, "%s", t2);
			return 0;
		}
	}
	if (rc == -ENOPKG)
		snprintf(why, whysz, "%s", first);
	return rc;
}

static void node_rm(struct install *in, const char *path)
{
	char *rm[] = {"rm", "-rf", "--", (char *)path, NULL};
	int ignored;

	node_cmd(in, rm, NULL, 0, 120000, &ignored);
}

int install_blender(struct install *in, const char *mirror, const char *series, char *version, size_t vsz,
		    char *why, size_t whysz)
{
	char ver[INSTALL_VERSION_MAX], tarname[128], top[128], url[4600], sums[INSTALL_LIST_MAX];
	char base[1100], tmp[1200], part[1400], xdir[1400], built[1600], final[1200], want[65], got[65];
	const char *have = install_find_blender(in, series);
	size_t tl;
	int code, rc;

	if (have) {
		snprintf(version, vsz, "%s", have);
		return 0;
	}
	if (install_known_release(series, ver, sizeof(ver), tarname, sizeof(tarname))) {
		snprintf(why, whysz, "renderfs knows no Blender release of series %s", series);
		return -ENOPKG;
	}
	snprintf(base, sizeof(base), "%s/blender", in->node->home);
	/* One temporary folder per series: a second try replaces it. */
	snprintf(tmp, sizeof(tmp), "%s/.part-%s", base, series);
	snprintf(xdir, sizeof(xdir), "%s/x", tmp);
	rc = install_fresh_dir(in, xdir);
	if (rc) {
		snprintf(why, whysz, "cannot make %s on the node: %s", xdir, strerror(-rc));
		return rc == -EACCES ? -ENOPKG : rc;
	}
	/* The list first: it is small, and without it nothing can be
	 * checked, so a missing one costs no large download. */
	rc = fetch_sums(in, mirror, series, ver, sizeof(ver), tarname, sizeof(tarname), sums, sizeof(sums),
			why, whysz);
	if (rc)
		goto out_rm;
	tl = strlen(tarname);
	if (tl < 8 || strcmp(tarname + tl - 7, ".tar.xz")) {
		snprintf(why, whysz, "bad tarball name for Blender %s", ver);
		rc = -ENOPKG;
		goto out_rm;
	}
	snprintf(top, sizeof(top), "%.*s", (int)(tl - 7), tarname);
	snprintf(part, sizeof(part), "%s/%s", tmp, tarname);
	snprintf(built, sizeof(built), "%s/%s", xdir, top);
	snprintf(final, sizeof(final), "%s/%s", base, ver);
	if (sum_for(sums, tarname, want)) {
		snprintf(why, whysz, "%s/Blender%s/blender-%s.sha256 lists no %s", mirror, series, ver,
			 tarname);
		rc = -ENOPKG;
		goto out_rm;
	}
	snprintf(url, sizeof(url), "%s/Blender%s/%s", mirror, series, tarname);
	rc = node_fetch(in, url, part, NULL, 0, why, whysz);
	if (rc)
		goto out_rm;
	rc = node_sha256(in, part, got);
	if (rc == -ENOENT) {
		snprintf(why, whysz, "cannot read the SHA-256 of %s on the node", part);
		rc = -ENOPKG;
	}
	if (rc)
		goto out_rm;
	if (strcmp(got, want)) {
		snprintf(why, whysz, "SHA-256 mismatch for %s: got %.16s..., blender-%s.sha256 says %.16s...",
			 tarname, got, ver, want);
		rc = -ENOPKG;
		goto out_rm;
	}
	rc = unpack(in, part, xdir, why, whysz);
	if (rc)
		goto out_rm;
	{
		char prog[1700];
		char *test[] = {"test", "-f", prog, "-a", "-x", prog, NULL};

		snprintf(prog, sizeof(prog), "%s/blender", built);
		rc = node_cmd(in, test, NULL, 0, 30000, &code);
		if (rc > 0) {
			snprintf(why, whysz, "%s holds no %s/blender", tarname, top);
			rc = -ENOPKG;
		}
		if (rc)
			goto out_rm;
	}
	{
		/* rename(2): the build appears whole or not at all.  Another
		 * runner sharing this home may have won the race: then its
		 * build is the one used. */
		char prog[1300];
		char *mv[] = {"mv", "-T", "--", built, final, NULL};
		char *test[] = {"test", "-x", prog, NULL};

		rc = node_cmd(in, mv, NULL, 0, 60000, &code);
		if (rc > 0) {
			snprintf(prog, sizeof(prog), "%s/blender", final);
			rc = node_cmd(in, test, NULL, 0, 30000, &code);
			if (rc > 0) {
				snprintf(why, whysz, "cannot move the build into %s on the node", final);
				rc = -ENOPKG;
			}
		}
		if (rc)
			goto out_rm;
	}
	remember_blender(in, ver);
	snprintf(version, vsz, "%s", ver);
out_rm:
	/* A transport error leaves it: the next try starts afresh anyway. */
	if (rc == 0 || rc == -ENOPKG)
		node_rm(in, tmp);
	return rc;
}
