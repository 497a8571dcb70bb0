/*
 * fuzzcheck: what every fuzz target uses to report a broken promise.
 * Define FUZZ_NAME ("fuzz_x") before including it.  FAIL prints the
 * target's name and the reason and aborts, which libFuzzer (and the seed
 * replay) counts as a finding.
 */
#ifndef RENDERFS_FUZZ_FUZZCHECK_H
#define RENDERFS_FUZZ_FUZZCHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAIL(...)                                         \
	do {                                              \
		fprintf(stderr, FUZZ_NAME ": " __VA_ARGS__); \
		fputc('\n', stderr);                      \
		abort();                                  \
	} while (0)

/* A text field of sz bytes: terminated, one clean line (no control byte). */
static inline void check_text(const char *what, const char *s, size_t sz)
{
	if (!memchr(s, 0, sz))
		FAIL("%s is not terminated", what);
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			FAIL("%s holds control byte 0x%02x", what, (unsigned char)*s);
}

#endif
