/*
 * fuzz_sidecar: NAME.range, the per-job settings file (core/sidecar.c).
 *
 * The input is the file's bytes.  Beyond "no crash, no leak, no undefined
 * behaviour", every result is checked against the contract in sidecar.h:
 * success means a sorted, duplicate-free frame list within the limits and
 * no error text; failure means -EINVAL with at least one "NAME:LINE: "
 * line.  The same bytes (up to the first NUL) also go to the frame-list
 * and duration parsers on their own.  A broken promise aborts, which
 * libFuzzer reports like a crash.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sidecar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_NAME "fuzz_sidecar"
#include "fuzzcheck.h"

static void check_frames(const uint32_t *f, size_t n)
{
	if (n > SIDECAR_MAX_FRAMES)
		FAIL("%zu frames, over the cap", n);
	for (size_t i = 0; i < n; i++) {
		if (f[i] > SIDECAR_MAX_FRAME)
			FAIL("frame %u over the cap", f[i]);
		if (i && f[i] <= f[i - 1])
			FAIL("frames not sorted/unique at %zu", i);
	}
}

static void whole_file(const uint8_t *data, size_t size)
{
	struct sidecar sc;
	char *errors = (char *)1;
	int rc = sidecar_parse((const char *)data, size, "f.range", &sc, &errors);

	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "sidecar_parse: %d, %zu frames\n%s", rc, rc ? 0 : sc.nframes,
			rc ? errors : "");
	if (rc == 0) {
		if (errors)
			FAIL("success with error text");
		/* no frame list: the scene's own range (intake fills it) */
		if (!sc.nframes != !sc.frames)
			FAIL("frames and nframes disagree");
		if (sc.nframes)
			check_frames(sc.frames, sc.nframes);
		if (memchr(sc.scene, 0, sizeof(sc.scene)) == NULL ||
		    memchr(sc.gpu, 0, sizeof(sc.gpu)) == NULL)
			FAIL("unterminated string field");
		if (sc.res_w < 0 || sc.res_h < 0 || sc.res_w > SIDECAR_RES_MAX ||
		    sc.res_h > SIDECAR_RES_MAX || (!sc.res_w) != (!sc.res_h))
			FAIL("resolution %dx%d", sc.res_w, sc.res_h);
		if (sc.timeout_s < 0 || sc.samples < 0 || sc.res_pct < 0 || sc.retries < 0 || sc.nodes < 0)
			FAIL("negative setting");
		if ((unsigned)sc.engine > SC_ENGINE_WORKBENCH || (unsigned)sc.device > SC_DEVICE_CPU ||
		    (unsigned)sc.format > SC_FORMAT_TIFF || sc.video < -1 || sc.video > 1 || sc.spot < -1 ||
		    sc.spot > 1)
			FAIL("a setting outside its enumeration");
		/* numbers that reach the scheduler and the money code */
		if (!isfinite(sc.fps) || sc.fps < 0 || !isfinite(sc.min_vram) || !isfinite(sc.max_price) ||
		    !isfinite(sc.budget))
			FAIL("a number that is not finite: fps %g, min_vram %g, max_price %g, budget %g",
			     sc.fps, sc.min_vram, sc.max_price, sc.budget);
	} else if (rc == -EINVAL) {
		if (!errors || !errors[0] || strncmp(errors, "f.range:", 8))
			FAIL("-EINVAL without a located reason: %s", errors ? errors : "(null)");
		/* One problem per line, every line located: hostile bytes
		 * echoed back never start a line of their own. */
		for (const char *l = errors; *l; l = strchr(l, '\n') + 1) {
			if (strncmp(l, "f.range:", 8))
				FAIL("error line without its location: %.80s", l);
			if (!strchr(l, '\n'))
				FAIL("error text does not end in a newline");
		}
	} else if (rc != -ENOMEM) {
		FAIL("unexpected return %d", rc);
	}
	free(rc ? errors : NULL);
	sidecar_free(&sc);
}

static void parts(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), why[256];
	uint32_t *frames = NULL;
	size_t n = 0;
	int64_t ms;

	if (!s)
		return;
	memcpy(s, data, size);
	s[size] = '\0';
	if (sidecar_parse_frames(s, &frames, &n, why, sizeof(why)) == 0)
		check_frames(frames, n);
	free(frames);
	if (parse_duration_ms(s, &ms) == 0 && (ms < 0 || ms > 30LL * 86400 * 1000))
		FAIL("duration %lld ms out of range", (long long)ms);
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	whole_file(data, size);
	if (size <= 4096)
		parts(data, size);
	return 0;
}
