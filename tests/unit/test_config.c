/*
 * test_config: config_load() on files a user might write -- lines longer
 * than the INI reader takes, values longer than any setting -- each named
 * clearly with its real line number, never cut silently.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "check.h"

static char path[4096];

static int load_text(const char *text, struct config *cfg, char *err, size_t errsz)
{
	FILE *f = fopen(path, "w");

	if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
		perror(path);
		exit(2);
	}
	return config_load(cfg, path, 1, NULL, 0, err, errsz);
}

static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	if (!s)
		exit(2);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* The line limit the INI library was built with, as the message says. */
static int line_limit(void)
{
	struct config cfg;
	char err[512], text[20000];
	char *v = repeat('a', 9000);
	int max = -1;
	const char *p;

	snprintf(text, sizeof(text), "[clore]\nimage = %s\n", v);
	if (load_text(text, &cfg, err, sizeof(err)) == -EINVAL && (p = strstr(err, ", max ")))
		max = atoi(p + 6);
	config_free(&cfg);
	free(v);
	return max;
}

static void test_long_lines(void)
{
	struct config cfg;
	char err[512], want[600], text[40000];
	int max = line_limit(), rc;
	char *v;

	CHECK(max >= 80 && max < 9000, "the line limit could not be learned (%d)", max);
	if (max < 80 || max >= 9000)
		return;
	printf("# line limit %d\n", max);

	/* Line 4 is too long: named as such, with its own number and length. */
	v = repeat('x', 300 + (size_t)max);
	snprintf(text, sizeof(text), "# renderfs\n[clore]\nnodes = 2\nimage = %s\nspot = no\n", v);
	rc = load_text(text, &cfg, err, sizeof(err));
	snprintf(want, sizeof(want), "%s: line 4: too long (%d bytes, max %d)", path, 8 + 300 + max, max);
	CHECK(rc == -EINVAL && !strcmp(err, want), "long line 4: rc %d '%s', want '%s'", rc, err, want);
	config_free(&cfg);
	free(v);

	/* Exactly at the limit: accepted whole, also with CRLF. */
	v = repeat('y', (size_t)max - 8);
	snprintf(text, sizeof(text), "[clore]\nimage = %s\n", v);
	rc = load_text(text, &cfg, err, sizeof(err));
	CHECK(rc == 0 && cfg.clore_image && !strcmp(cfg.clore_image, v),
	      "a line of exactly %d bytes: rc %d '%s'", max, rc, rc ? err : "");
	config_free(&cfg);
	snprintf(text, sizeof(text), "[clore]\r\nimage = %s\r\nnodes = 4\r\n", v);
	rc = load_text(text, &cfg, err, sizeof(err));
	CHECK(rc == 0 && cfg.clore_image && !strcmp(cfg.clore_image, v) && cfg.clore_nodes == 4,
	      "CRLF at the limit: rc %d '%s'", rc, rc ? err : "");
	config_free(&cfg);
	/* One more byte is one too many, without a newline at the end too. */
	snprintf(text, sizeof(text), "[clore]\nimage = %sy", v);
	rc = load_text(text, &cfg, err, sizeof(err));
	snprintf(want, sizeof(want), "%s: line 2: too long (%d bytes, max %d)", path, max + 1, max);
	CHECK(rc == -EINVAL && !strcmp(err, want), "limit + 1: '%s', want '%s'", err, want);
	config_free(&cfg);
	free(v);

	/* An error before the long line is the one reported. */
	v = repeat('z', 2 * (size_t)max);
	snprintf(text, sizeof(text), "[clore]\nnodez = 2\n\nimage = %s\n", v);
	rc = load_text(text, &cfg, err, sizeof(err));
	snprintf(want, sizeof(want), "%s: line 2: unknown setting clore.nodez", path);
	CHECK(rc == -EINVAL && !strcmp(err, want), "earlier error: '%s'", err);
	config_free(&cfg);
	free(v);

	/* Syntax errors still say so, at their own line. */
	rc = load_text("[clore]\nnodes = 2\nthis is not ini\n", &cfg, err, sizeof(err));
	snprintf(want, sizeof(want), "%s: line 3: not INI syntax", path);
	CHECK(rc == -EINVAL && !strcmp(err, want), "syntax: '%s'", err);
	config_free(&cfg);

	/* Where lines may be long enough, a value over 1023 bytes is kept whole. */
	if (max > 1200) {
		v = repeat('w', 1100);
		snprintf(text, sizeof(text), "[clore]\nimage = %s\n", v);
		rc = load_text(text, &cfg, err, sizeof(err));
		CHECK(rc == 0 && cfg.clore_image && strlen(cfg.clore_image) == 1100, "1100-byte value: %zu",
		      cfg.clore_image ? strlen(cfg.clore_image) : 0);
		config_free(&cfg);
		free(v);
	}
}

static void test_long_values(void)
{
	struct config cfg;
	char err[512], want[600];
	char *v = repeat('v', CONFIG_VALUE_MAX), *o = malloc(CONFIG_VALUE_MAX + 32);
	int rc;

	/* -o values: the longest allowed is kept whole, one more refused. */
	sprintf(o, "clore.image=%s", v);
	rc = config_load(&cfg, NULL, 0, &o, 1, err, sizeof(err));
	CHECK(rc == 0 && cfg.clore_image && strlen(cfg.clore_image) == CONFIG_VALUE_MAX, "-o %d bytes: rc %d",
	      CONFIG_VALUE_MAX, rc);
	config_free(&cfg);
	strcat(o, "v");
	rc = config_load(&cfg, NULL, 0, &o, 1, err, sizeof(err));
	snprintf(want, sizeof(want), "option -o: value for clore.image is too long (%d bytes, max %d)",
		 CONFIG_VALUE_MAX + 1, CONFIG_VALUE_MAX);
	CHECK(rc == -EINVAL && !strcmp(err, want), "-o too long: '%s'", err);
	config_free(&cfg);
	free(v);
	free(o);
}

/* [renderfs] blender_mirror and the blender = auto defaults (install.md). */
static void test_blender_auto(void)
{
	static const char *const bad[] = {"ftp://mirror.example/release",
					  "mirror.example/release",
					  "https://mirror.example/a b",
					  "https://mirror.example/a'b",
					  "https://mirror.example/a\\b",
					  "https://",
					  "http:///",
					  ""};
	struct config cfg;
	char err[512], *o;
	int rc;

	rc = config_load(&cfg, NULL, 0, NULL, 0, err, sizeof(err));
	CHECK(rc == 0 && !strcmp(cfg.blender_mirror, "https://download.blender.org/release") &&
		  !strcmp(cfg.clore_blender, "auto") && !strcmp(cfg.ssh_blender, "blender") &&
		  !cfg.clore_image,
	      "defaults: mirror %s, clore blender %s", cfg.blender_mirror, cfg.clore_blender);
	config_free(&cfg);
	rc = load_text("[renderfs]\nblender_mirror = http://10.0.0.1:8080/blender//\n[ssh]\nblender = auto\n"
		       "[clore]\nblender = blender\n",
		       &cfg, err, sizeof(err));
	CHECK(rc == 0 && !strcmp(cfg.blender_mirror, "http://10.0.0.1:8080/blender") &&
		  !strcmp(cfg.ssh_blender, "auto") && !strcmp(cfg.clore_blender, "blender"),
	      "a mirror of one's own, trailing '/' dropped: rc %d '%s' %s", rc, err,
	      rc ? "" : cfg.blender_mirror);
	config_free(&cfg);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		o = malloc(strlen(bad[i]) + 32);
		sprintf(o, "renderfs.blender_mirror=%s", bad[i]);
		rc = config_load(&cfg, NULL, 0, &o, 1, err, sizeof(err));
		CHECK(rc == -EINVAL && strstr(err, "renderfs.blender_mirror"),
		      "mirror '%s' refused: rc %d '%s'", bad[i], rc, err);
		config_free(&cfg);
		free(o);
	}
}

int main(void)
{
	const char *base = getenv("TMPDIR");

	snprintf(path, sizeof(path), "%s/test_config.%d.ini", base && *base ? base : "/tmp", (int)getpid());
	test_long_lines();
	test_long_values();
	test_blender_auto();
	unlink(path);
	return check_summary("test_config");
}
