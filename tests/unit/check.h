/*
 * check: the unit tests' one assertion.  CHECK(cond, fmt, ...) counts a
 * check; when cond is false it prints "FAIL file:line: message" and the
 * test goes on, so one run reports every failure.  A test's main() ends
 * with check_summary(), which prints the totals and gives the exit code.
 */
#ifndef RENDERFS_TEST_CHECK_H
#define RENDERFS_TEST_CHECK_H

#include <stdarg.h>
#include <stdio.h>

static int checks, failures;

/* cond is evaluated first, as its own statement: a message may show what
 * the condition just computed. */
#define CHECK(cond, ...)                                              \
	do {                                                          \
		int check_ok_ = !!(cond);                             \
		check_at(check_ok_, __FILE__, __LINE__, __VA_ARGS__); \
	} while (0)

static void check_at(int ok, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void check_at(int ok, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	checks++;
	if (ok)
		return;
	failures++;
	printf("FAIL %s:%d: ", file, line);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static inline int check_summary(const char *test)
{
	printf("%s: %d checks, %d failed\n", test, checks, failures);
	return failures ? 1 : 0;
}

#endif
