/*
 * test_install: Blender on a node (sched/install.c): which versions are
 * accepted, the series a .blend's header names (plain, gzip, zstd; both
 * header lengths), the compiled-in release table, and whole installs
 * driven through the local transport -- real curl (or wget, or python3),
 * sha256sum, tar and mv -- from a file:// mirror this test builds: a good
 * one, a reused one, a bad checksum, a missing list.
 */
#include "check.h"
#include "testbuf.h"

#include "core/util.h"
#include "sched/install.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

static char tmp[256];

static void write_file(const char *path, const void *data, size_t n)
{
	FILE *f = fopen(path, "wb");

	if (!f || fwrite(data, 1, n, f) != n || fclose(f)) {
		perror(path);
		exit(2);
	}
}

static void test_versions(void)
{
	static const char *const good[] = {"3.4.1", "2.83.20", "4.2", "5.0.0", "10.11.12"};
	static const char *const bad[] = {"",        "3",      "3.",      ".3",           "3..4",
					  "3.4.1.2", "3.4;rm", "-1.2",    "3.4.1 ",       "3.4.1\n",
					  "a.b",     "3.4/..", "12345.1", "1.2.123456789"};
	char s[INSTALL_VERSION_MAX];

	for (size_t i = 0; i < ARRAY_SIZE(good); i++)
		CHECK(install_version_ok(good[i]), "'%s' is a version", good[i]);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		CHECK(!install_version_ok(bad[i]), "'%s' is refused", bad[i]);
	CHECK(!install_series_of("3.4.1", s, sizeof(s)) && !strcmp(s, "3.4"), "3.4.1 is of 3.4: %s", s);
	CHECK(!install_series_of("2.93.18", s, sizeof(s)) && !strcmp(s, "2.93"), "2.93.18: %s", s);
	CHECK(!install_series_of("5.0", s, sizeof(s)) && !strcmp(s, "5.0"), "5.0: %s", s);
	CHECK(install_series_of("3.4;x", s, sizeof(s)) == -EINVAL, "no series of a non-version");
	CHECK(install_version_cmp("4.10.0", "4.9.1") > 0, "4.10.0 is newer than 4.9.1");
	CHECK(install_version_cmp("3.4.1", "3.4.1") == 0, "equal");
	CHECK(install_version_cmp("3.4", "3.4.1") < 0, "3.4 is older than 3.4.1");
	CHECK(install_version_cmp("2.93.18", "3.0.1") < 0, "2.93.18 is older than 3.0.1");
}

/* series of a file holding head (then some filler), as written by how:
 * 0 plain, 1 gzip, 2 zstd. */
static int series_of_file(const char *head, int how, char *series, size_t sz)
{
	char path[512];
	struct buf in = {0}, out = {0};
	int rc;

	put(&in, head, strlen(head));
	put_fill(&in, 'x', 5000);
	if (how == 1) {
		gzip_buf(&in, &out);
	} else if (how == 2) {
		size_t cap = ZSTD_compressBound(in.n), n;

		put_fill(&out, 0, cap);
		n = ZSTD_compress(out.p, cap, in.p, in.n, 3);
		if (ZSTD_isError(n))
			exit(2);
		out.n = n;
	} else {
		put(&out, in.p, in.n);
	}
	snprintf(path, sizeof(path), "%s/scene.blend", tmp);
	write_file(path, out.p, out.n);
	series[0] = '\0';
	rc = install_blend_series(path, series, sz);
	free(in.p);
	free(out.p);
	return rc;
}

static void test_headers(void)
{
	char s[INSTALL_VERSION_MAX];

	CHECK(series_of_file("BLENDER_v304", 0, s, sizeof(s)) == 0 && !strcmp(s, "3.4"), "3.4: '%s'", s);
	CHECK(series_of_file("BLENDER-V283", 0, s, sizeof(s)) == 0 && !strcmp(s, "2.83"), "2.83 BE: '%s'", s);
	CHECK(series_of_file("BLENDER-v280", 0, s, sizeof(s)) == 0 && !strcmp(s, "2.80"), "2.80: '%s'", s);
	CHECK(series_of_file("BLENDER17-01v0500", 0, s, sizeof(s)) == 0 && !strcmp(s, "5.0"),
	      "Blender 5's header: '%s'", s);
	CHECK(series_of_file("BLENDER-v293", 1, s, sizeof(s)) == 0 && !strcmp(s, "2.93"), "gzip: '%s'", s);
	CHECK(series_of_file("BLENDER-v401", 2, s, sizeof(s)) == 0 && !strcmp(s, "4.1"), "zstd: '%s'", s);
	CHECK(series_of_file("BLENDER17-01v0402", 2, s, sizeof(s)) == 0 && !strcmp(s, "4.2"),
	      "zstd, long header: '%s'", s);
	CHECK(series_of_file("NOTBLENDER12", 0, s, sizeof(s)) == -EINVAL, "not a .blend");
	CHECK(series_of_file("BLENDER_vabc", 0, s, sizeof(s)) == -EINVAL, "no digits");
	CHECK(series_of_file("BLENDER_v1;9", 0, s, sizeof(s)) == -EINVAL, "not digits");
	CHECK(series_of_file("BLENDER_v104", 0, s, sizeof(s)) == -EINVAL, "before 2.0");
	{
		char path[512];

		snprintf(path, sizeof(path), "%s/short.blend", tmp);
		write_file(path, "BLENDER_v3", 10);
		CHECK(install_blend_series(path, s, sizeof(s)) == -EINVAL, "a short file");
		snprintf(path, sizeof(path), "%s/missing.blend", tmp);
		CHECK(install_blend_series(path, s, sizeof(s)) == -ENOENT, "a missing file");
	}
}

static void test_table(void)
{
	char v[INSTALL_VERSION_MAX], t[128];

	CHECK(install_known_release("3.4", v, sizeof(v), t, sizeof(t)) == 0 && !strcmp(v, "3.4.1") &&
		  !strcmp(t, "blender-3.4.1-linux-x64.tar.xz"),
	      "3.4: %s %s", v, t);
	CHECK(install_known_release("2.92", v, sizeof(v), t, sizeof(t)) == 0 &&
		  !strcmp(t, "blender-2.92.0-linux64.tar.xz"),
	      "2.92 names its own tarball: %s", t);
	CHECK(install_known_release("9.9", v, sizeof(v), t, sizeof(t)) == -ENOENT, "no 9.9");
	CHECK(install_known_release("#", v, sizeof(v), t, sizeof(t)) == -ENOENT, "comments are not series");
	/* Every series 2.83 .. 4.5 is there, and each names a version of its own series. */
	static const char *const all[] = {"2.83", "2.90", "2.91", "2.92", "2.93", "3.0", "3.1", "3.2", "3.3",
					  "3.4",  "3.5",  "3.6",  "4.0",  "4.1",  "4.2", "4.3", "4.4", "4.5"};
	for (size_t i = 0; i < ARRAY_SIZE(all); i++) {
		char s[INSTALL_VERSION_MAX] = "";
		int rc = install_known_release(all[i], v, sizeof(v), t, sizeof(t));

		CHECK(rc == 0 && !install_series_of(v, s, sizeof(s)) && !strcmp(s, all[i]),
		      "series %s: rc %d version %s", all[i], rc, rc ? "-" : v);
	}
}

static void test_listing(void)
{
	static const char html[] =
	    "<a href=\"blender-3.6.2-linux-x64.tar.xz\">blender-3.6.2-linux-x64.tar.xz</a>\n"
	    "<a href=\"blender-3.6.10-linux-x64.tar.xz\">blender-3.6.10-linux-x64.tar.xz</a>\n"
	    "<a href=\"blender-3.6.11-windows-x64.zip\">blender-3.6.11-windows-x64.zip</a>\n"
	    "<a href=\"blender-3.6.9-linux-x64.tar.xz\">blender-3.6.9-linux-x64.tar.xz</a>\n"
	    "<a href=\"blender-3.6.99999-linux-x64.tar.xz\">too long</a>\n"
	    "<a href=\"blender-3.61.0-linux-x64.tar.xz\">another series</a>\n"
	    "<a href=\"blender-3.6.10.sha256\">blender-3.6.10.sha256</a>\n";
	char v[INSTALL_VERSION_MAX], t[128];

	CHECK(install_newest_listed(html, "3.6", v, sizeof(v), t, sizeof(t)) == 0 && !strcmp(v, "3.6.10") &&
		  !strcmp(t, "blender-3.6.10-linux-x64.tar.xz"),
	      "the newest Linux build listed: %s %s", v, t);
	CHECK(install_newest_listed("blender-2.91.0-linux64.tar.xz blender-2.91.2-linux64.tar.xz", "2.91", v,
				    sizeof(v), t, sizeof(t)) == 0 &&
		  !strcmp(v, "2.91.2") && !strcmp(t, "blender-2.91.2-linux64.tar.xz"),
	      "the older naming: %s %s", v, t);
	CHECK(install_newest_listed(html, "4.2", v, sizeof(v), t, sizeof(t)) == -ENOENT, "none of 4.2");
	CHECK(install_newest_listed("blender-3.6.-linux-x64.tar.xz", "3.6", v, sizeof(v), t, sizeof(t)) ==
		  -ENOENT,
	      "no patch number");
}

/* ---- whole installs through the local transport ---- */

static int run_sh(const char *cmd)
{
	int rc = system(cmd);

	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* MIRROR/BlenderS/blender-V-linux-x64.tar.xz with a `blender` script, and
 * its list (good or with a wrong sum). */
static void make_release(const char *mirror, const char *series, const char *v, int good)
{
	char cmd[4096];

	snprintf(
	    cmd, sizeof(cmd),
	    "set -e; d='%s/Blender%s'; b=\"$d/build/blender-%s-linux-x64\"; mkdir -p \"$b\"; "
	    "printf '#!/bin/sh\\necho stand-in\\n' > \"$b/blender\"; chmod 755 \"$b/blender\"; "
	    "tar -cJf \"$d/blender-%s-linux-x64.tar.xz\" -C \"$d/build\" blender-%s-linux-x64; "
	    "rm -rf \"$d/build\"; cd \"$d\"; "
	    "{ echo '%.64s  blender-%s-windows-x64.zip'; "
	    "%s blender-%s-linux-x64.tar.xz; } > blender-%s.sha256",
	    mirror, series, v, v, v, "0000000000000000000000000000000000000000000000000000000000000000", v,
	    good ? "sha256sum" : "echo ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff ", v,
	    v);
	if (run_sh(cmd)) {
		fprintf(stderr, "cannot build the mirror: %s\n", cmd);
		exit(2);
	}
}

static int exists(const char *fmt, const char *a, const char *b)
{
	char p[1024];
	struct stat st;

	snprintf(p, sizeof(p), fmt, a, b);
	return stat(p, &st) == 0;
}

static void test_install(void)
{
	char home[512], mirror[512], url[600], ver[INSTALL_VERSION_MAX], why[512];
	struct tnode *node;
	struct install in;
	int rc;

	snprintf(home, sizeof(home), "%s/node", tmp);
	snprintf(mirror, sizeof(mirror), "%s/mirror", tmp);
	snprintf(url, sizeof(url), "file://%s", mirror);
	util_mkdirs(home);
	make_release(mirror, "3.4", "3.4.1", 1);
	make_release(mirror, "3.5", "3.5.1", 0);
	node = local_node_new(home);
	if (!node)
		exit(2);
	/* Not is_local: every step goes through the transport's run(), as on
	 * an SSH node. */
	install_init(&in, node, 0);

	CHECK(install_list_blenders(&in) == 0 && in.nblenders == 0, "no builds at first: %d", in.nblenders);
	why[0] = '\0';
	rc = install_blender(&in, url, "3.4", ver, sizeof(ver), why, sizeof(why));
	CHECK(rc == 0 && !strcmp(ver, "3.4.1"), "3.4 installs 3.4.1: rc %d '%s'", rc, why);
	CHECK(exists("%s/blender/%s/blender", home, "3.4.1"), "HOME/blender/3.4.1/blender is there");
	CHECK(!exists("%s/blender/.part-%s", home, "3.4"), "no temporary folder left");
	CHECK(install_find_blender(&in, "3.4") && !strcmp(install_find_blender(&in, "3.4"), "3.4.1"),
	      "found by series");

	/* Listed again from the node (a reconnect), and reused without the
	 * mirror: it is gone now. */
	install_forget(&in);
	CHECK(install_list_blenders(&in) == 0 && in.nblenders == 1 && !strcmp(in.blenders[0], "3.4.1"),
	      "the node lists its build: %d", in.nblenders);
	run_sh("mv -T -- \"$RFS_MIRROR/Blender3.4\" \"$RFS_MIRROR/away\"");
	rc = install_blender(&in, url, "3.4", ver, sizeof(ver), why, sizeof(why));
	CHECK(rc == 0 && !strcmp(ver, "3.4.1"), "a second install is a no-op: rc %d '%s'", rc, why);

	why[0] = '\0';
	rc = install_blender(&in, url, "3.5", ver, sizeof(ver), why, sizeof(why));
	CHECK(rc == -ENOPKG && strstr(why, "SHA-256 mismatch") &&
		  strstr(why, "blender-3.5.1-linux-x64.tar.xz"),
	      "a wrong sum: rc %d '%s'", rc, why);
	CHECK(!exists("%s/blender/%s", home, "3.5.1"), "nothing installed for a wrong sum");
	CHECK(!exists("%s/blender/.part-%s", home, "3.5"), "and nothing left of it");

	why[0] = '\0';
	rc = install_blender(&in, url, "4.0", ver, sizeof(ver), why, sizeof(why));
	CHECK(rc == -ENOPKG && strstr(why, "download of") && strstr(why, "blender-4.0.2.sha256"),
	      "a missing list: rc %d '%s'", rc, why);
	rc = install_blender(&in, url, "9.9", ver, sizeof(ver), why, sizeof(why));
	CHECK(rc == -ENOPKG && strstr(why, "knows no Blender release"), "an unknown series: '%s'", why);
	local_node_free(node);
}

int main(void)
{
	char cmd[600];

	snprintf(tmp, sizeof(tmp), "/tmp/test_install.XXXXXX");
	if (!mkdtemp(tmp))
		return 2;
	snprintf(cmd, sizeof(cmd), "%s/mirror", tmp);
	setenv("RFS_MIRROR", cmd, 1);
	test_versions();
	test_headers();
	test_table();
	test_listing();
	test_install();
	if (!failures) {
		snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", tmp);
		run_sh(cmd);
	} else {
		printf("test_install: kept %s\n", tmp);
	}
	return check_summary("test_install");
}
