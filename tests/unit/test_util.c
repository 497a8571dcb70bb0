/*
 * test_util: util_clean_line(), the one way text from outside (nodes,
 * users, remote servers) becomes one safe line of a status or error file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int main(void)
{
	test_clean_line();
	return check_summary("test_util");
}
