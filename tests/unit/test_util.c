/*
 * test_util: util_clean_line(), the one way text from outside (nodes,
 * users, remote servers) becomes one safe line of a status or error file;
 * util_env_wipe(), which must leave the API key nowhere in the process's
 * environment block (/proc/self/environ), tested in a child started with
 * the key in its initial environment, as the daemon is.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/util.h"
#include "check.h"

static const char *clean(const char *src, size_t sz)
{
	static char buf[1024];

	memset(buf, 'Z', sizeof(buf));
	return util_clean_line(buf, sz, src);
}

#define SAME(src, sz, want)                                                                              \
	do {                                                                                             \
		const char *got_ = clean((src), (sz));                                                   \
		CHECK(!strcmp(got_, (want)), "clean(\"%s\", %d) = \"%s\", want \"%s\"", #src, (int)(sz), \
		      got_, (want));                                                                     \
	} while (0)

static void test_clean_line(void)
{
	char big[600];

	/* Plain text and valid UTF-8 pass untouched. */
	SAME("Blender 4.2.1 LTS", 64, "Blender 4.2.1 LTS");
	SAME("caf\xc3\xa9 \xe6\xb8\xb2\xe6\x9f\x93 \xf0\x9f\x8e\xac", 64,
	     "caf\xc3\xa9 \xe6\xb8\xb2\xe6\x9f\x93 \xf0\x9f\x8e\xac");
	SAME("", 8, "");
	SAME(NULL, 8, "");
	/* A forged status line cannot start: newlines become \n. */
	SAME("3.4.1\nstate: idle", 64, "3.4.1\\nstate: idle");
	SAME("a\r\nb\tc", 64, "a\\r\\nb\\tc");
	SAME("bell\x07 esc\x1b[31m del\x7f", 64, "bell\\x07 esc\\x1b[31m del\\x7f");
	/* C1 controls, line separators and bidi overrides are escaped. */
	SAME("x\xc2\x85y", 64, "x\\u0085y");
	SAME("x\xe2\x80\xa8y\xe2\x80\xa9", 64, "x\\u2028y\\u2029");
	SAME("evil\xe2\x80\xaegnp.blend", 64, "evil\\u202egnp.blend");
	SAME("\xe2\x81\xa6x", 64, "\\u2066x");
	/* Invalid UTF-8, byte by byte. */
	SAME("a\xff"
	     "b",
	     64, "a\\xffb");
	SAME("\x80", 64, "\\x80");
	SAME("\xc0\xaf", 64, "\\xc0\\xaf");                   /* overlong '/' */
	SAME("\xe0\x80\xaf", 64, "\\xe0\\x80\\xaf");          /* overlong */
	SAME("\xed\xa0\x80", 64, "\\xed\\xa0\\x80");          /* a surrogate */
	SAME("\xf4\x90\x80\x80", 64, "\\xf4\\x90\\x80\\x80"); /* past U+10FFFF */
	SAME("cut \xe6\xb8", 64, "cut \\xe6\\xb8");           /* sequence cut by the end */
	/* The cap: cut at a boundary, marked with "...". */
	SAME("abcdefghij", 11, "abcdefghij");
	SAME("abcdefghijk", 11, "abcdefg...");
	SAME("ab\ncdefghijk", 8, "ab\\n...");
	SAME("ab\ncd", 6, "ab..."); /* the escape does not fit whole */
	SAME("\xe6\xb8\xb2\xe6\xb8\xb2\xe6\xb8\xb2", 9, "\xe6\xb8\xb2..."); /* not inside a character */
	SAME("abcdef", 3, "ab");                                            /* no room for "..." */
	SAME("abc", 1, "");
	/* Whatever goes in, one line comes out, within the cap. */
	for (int i = 0; i < (int)sizeof(big) - 1; i++)
		big[i] = (char)(i % 7 == 0 ? '\n' : i % 11 == 0 ? 0x85 : i % 13 == 0 ? 0xe2 : 'a' + i % 26);
	big[sizeof(big) - 1] = '\0';
	{
		const char *got = clean(big, 200);

		CHECK(strlen(got) <= 199 && !strchr(got, '\n') && !strchr(got, '\r'),
		      "long hostile text: %zu bytes", strlen(got));
		CHECK(!strcmp(got + strlen(got) - 3, "..."), "a cut is not marked: \"%s\"", got);
	}
}

#define SECRET "sk-test-0123456789abcdef-SECRET"

/* /proc/self/environ: does it hold needle anywhere (NULs included)? */
static int environ_has(const char *needle)
{
	static char buf[1 << 16];
	size_t n = 0, nl = strlen(needle);
	ssize_t r;
	int fd = open("/proc/self/environ", O_RDONLY);

	if (fd < 0)
		return -errno;
	while (n < sizeof(buf) && (r = read(fd, buf + n, sizeof(buf) - n)) > 0)
		n += (size_t)r;
	close(fd);
	for (size_t i = 0; i + nl <= n; i++)
		if (!memcmp(buf + i, needle, nl))
			return 1;
	return 0;
}

/* In the child: the key came in the initial environment, as a daemon's does. */
static int env_child(void)
{
	const char *seen = getenv("CLORE_API_KEY");

	CHECK(seen && !strcmp(seen, SECRET), "the child did not get the key");
	CHECK(environ_has(SECRET) == 1, "the key is not in /proc/self/environ to begin with");
	util_env_wipe("CLORE_API_KEY");
	CHECK(getenv("CLORE_API_KEY") == NULL, "the key is still set after the wipe");
	CHECK(environ_has(SECRET) == 0, "the key is still readable in /proc/self/environ");
	CHECK(environ_has("sk-test") == 0, "part of the key is still readable in /proc/self/environ");
	/* Its neighbours are untouched. */
	CHECK(getenv("BEFORE") && !strcmp(getenv("BEFORE"), "one") && getenv("AFTER") &&
		  !strcmp(getenv("AFTER"), "two"),
	      "a neighbouring variable was damaged");
	CHECK(environ_has("AFTER=two") == 1, "the block after the key was damaged");
	/* Wiping what is not there is harmless. */
	util_env_wipe("RFS_NO_SUCH_VARIABLE");
	util_env_wipe("CLORE_API_KEY");
	return check_summary("test_util (environment child)");
}

static void test_env_wipe(const char *self)
{
	char *argv[] = {(char *)self, "--env-child", NULL};
	char *envp[] = {"BEFORE=one", "CLORE_API_KEY=" SECRET, "AFTER=two", "CLORE_API_KEY=" SECRET "2",
			NULL};
	int status = -1;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		execve("/proc/self/exe", argv, envp);
		_exit(127);
	}
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid, "fork/wait");
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the environment child failed (status 0x%x)",
	      status);
}

/* Durations a node may report: never undefined, never absurd. */
static void test_fmt_duration(void)
{
	char b[64];

	CHECK(!strcmp(util_fmt_duration(b, sizeof(b), 1e300), "11574d01h"), "1e300: %s", b);
	CHECK(!strcmp(util_fmt_duration(b, sizeof(b), HUGE_VAL), "11574d01h"), "inf: %s", b);
	CHECK(!strcmp(util_fmt_duration(b, sizeof(b), NAN), "0.0s"), "nan: %s", b);
	CHECK(!strcmp(util_fmt_duration(b, sizeof(b), -5), "0.0s"), "negative: %s", b);
	CHECK(!strcmp(util_fmt_duration(b, sizeof(b), 751), "12m31s"), "751: %s", b);
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--env-child"))
		return env_child();
	test_clean_line();
	test_fmt_duration();
	test_env_wipe(argv[0]);
	return check_summary("test_util");
}
