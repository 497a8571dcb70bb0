/*
 * fuzz_config: the configuration file and -o overrides (core/config.c).
 *
 * Input: the file's bytes up to the first NUL byte, then up to eight
 * "section.key=value" overrides, each ended by a NUL byte.  Checked beyond
 * memory safety: 0 or a negative errno, and a failure has a one-line
 * reason.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "memfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_NAME "fuzz_config"
#include "fuzzcheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size), *end = data + size, *p;
	char *ov[8], err[1024];
	struct config cfg;
	struct memfile *m;
	int n = 0, rc;

	for (p = nul ? nul + 1 : end; p < end && n < 8;) {
		const uint8_t *q = memchr(p, 0, (size_t)(end - p));
		size_t l = q ? (size_t)(q - p) : (size_t)(end - p);

		if (!(ov[n] = strndup((const char *)p, l)))
			goto out;
		n++;
		p += l + 1;
	}
	m = memfile_put(0, data, nul ? (size_t)(nul - data) : size);
	memset(&cfg, 0, sizeof(cfg));
	memset(err, 'x', sizeof(err));
	err[0] = '\0';
	rc = config_load(&cfg, m->path, 1, ov, n, err, sizeof(err));
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "config_load (%d overrides): %d %s\n", n, rc, err);
	if (rc > 0)
		FAIL("config_load returned %d", rc);
	if (!memchr(err, 0, sizeof(err)))
		FAIL("reason not terminated");
	if (rc && !err[0])
		FAIL("%d without a reason", rc);
	if (strchr(err, '\n'))
		FAIL("reason on two lines: %s", err);
	config_free(&cfg);
out:
	while (n > 0)
		free(ov[--n]);
	return 0;
}
