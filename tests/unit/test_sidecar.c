/*
 * test_sidecar: the NAME.range parser against product.md's grammar and the
 * exact wording of its messages, which users read and scripts may grep.
 * A plain program: one line per failed check, exit status 1 if any failed.
 */
#include "core/sidecar.h"
#include "check.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Parse a NUL-terminated sidecar named shot.range. */
static int parse(const char *text, struct sidecar *sc, char **errs)
{
	return sidecar_parse(text, strlen(text), "shot.range", sc, errs);
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; s && *s; s++)
		n += *s == '\n';
	return n;
}

/* The text parses, and each line of it is checked by the caller. */
#define PARSE_OK(text, sc)                                                                        \
	do {                                                                                      \
		char *e_ = NULL;                                                                  \
		int rc_ = parse(text, sc, &e_);                                                   \
		CHECK(rc_ == 0 && !e_, "%s: rc %d, errors:\n%s", #text, rc_, e_ ? e_ : "(none)"); \
		free(e_);                                                                         \
	} while (0)

/*
 * The text fails with exactly the given messages, in order, each already
 * prefixed "shot.range:LINE: " by the caller and without its newline.
 */
static void expect_errors(int line, const char *text, size_t len, ...)
{
	struct sidecar sc;
	char *errs = NULL, want[4096];
	const char *m;
	size_t o = 0;
	va_list ap;
	int rc;

	va_start(ap, len);
	while ((m = va_arg(ap, const char *)))
		o += (size_t)snprintf(want + o, sizeof(want) - o, "%s\n", m);
	va_end(ap);
	want[o] = '\0';
	rc = sidecar_parse(text, len, "shot.range", &sc, &errs);
	check_at(rc == -EINVAL, __FILE__, line, "rc %d, want -EINVAL", rc);
	check_at(errs && !strcmp(errs, want), __FILE__, line, "errors:\n%s--- want:\n%s---",
		 errs ? errs : "(null)\n", want);
	check_at(!sc.frames && sc.nframes == 0, __FILE__, line, "frames left after failure");
	sidecar_free(&sc);
	free(errs);
}

#define EXPECT(text, ...)        expect_errors(__LINE__, text, strlen(text), __VA_ARGS__, (char *)NULL)
#define EXPECT_N(text, len, ...) expect_errors(__LINE__, text, len, __VA_ARGS__, (char *)NULL)
/* One bad line after a good frame list: the message is for line 2. */
#define BAD2(setting, msg) EXPECT("1-10\n" setting "\n", "shot.range:2: " msg)

static void test_example(void)
{
	struct sidecar sc;
	size_t i;
	int ok = 1;

	PARSE_OK("# shot 12, final look\n"
		 "1-250\n"
		 "samples = 256\n"
		 "resolution = 1920x1080\n"
		 "device = optix\n"
		 "budget = 6.00\n",
		 &sc);
	CHECK(sc.nframes == 250, "nframes %zu", sc.nframes);
	for (i = 0; i < sc.nframes; i++)
		ok &= sc.frames[i] == i + 1;
	CHECK(ok, "frames are not 1..250");
	CHECK(sc.samples == 256, "samples %d", sc.samples);
	CHECK(sc.res_w == 1920 && sc.res_h == 1080 && sc.res_pct == 0, "resolution");
	CHECK(sc.device == SC_DEVICE_OPTIX, "device");
	CHECK(sc.budget == 6.0, "budget %g", sc.budget);
	CHECK(sc.engine == SC_ENGINE_SAVED && sc.format == SC_FORMAT_PNG, "defaults kept");
	sidecar_free(&sc);
	CHECK(!sc.frames && !sc.nframes, "sidecar_free resets");
	sidecar_free(&sc); /* twice is fine */
	sidecar_free(NULL);
}

static void test_defaults(void)
{
	struct sidecar sc;

	PARSE_OK("7\n", &sc);
	CHECK(sc.nframes == 1 && sc.frames[0] == 7, "single frame");
	CHECK(sc.scene[0] == '\0', "scene");
	CHECK(sc.engine == SC_ENGINE_SAVED, "engine");
	CHECK(sc.device == SC_DEVICE_AUTO, "device");
	CHECK(sc.samples == 0, "samples");
	CHECK(sc.res_w == 0 && sc.res_h == 0 && sc.res_pct == 0, "resolution");
	CHECK(sc.format == SC_FORMAT_PNG, "format");
	CHECK(sc.video == -1, "video");
	CHECK(sc.fps == 0, "fps");
	CHECK(sc.retries == 3, "retries");
	CHECK(sc.timeout_s == 0, "timeout");
	CHECK(sc.priority == 0, "priority");
	CHECK(sc.nodes == 0, "nodes");
	CHECK(sc.gpu[0] == '\0', "gpu");
	CHECK(sc.min_vram == -1, "min_vram");
	CHECK(sc.max_price == -1, "max_price");
	CHECK(sc.spot == -1, "spot");
	CHECK(sc.budget == -1, "budget");
	sidecar_free(&sc);
}

static void test_keys_legal(void)
{
	struct sidecar sc;

	PARSE_OK("frames = 1-3\n"
		 "scene =   Shot 12 — final  \n"
		 "engine = CYCLES\n"
		 "device = Cuda\n"
		 "samples = 16777216\n"
		 "resolution = 50%\n"
		 "format = JPG\n"
		 "video = off\n"
		 "fps = 23.976\n"
		 "retries = 0\n"
		 "timeout = 1h30m\n"
		 "priority = -1000000\n"
		 "nodes = 1000\n"
		 "gpu = RTX 4090\n"
		 "min_vram = 0\n"
		 "max_price = 0.35\n"
		 "spot = Yes\n"
		 "budget = 0\n",
		 &sc);
	CHECK(sc.nframes == 3 && sc.frames[2] == 3, "frames key");
	CHECK(!strcmp(sc.scene, "Shot 12 — final"), "scene '%s'", sc.scene);
	CHECK(sc.engine == SC_ENGINE_CYCLES, "engine");
	CHECK(sc.device == SC_DEVICE_CUDA, "device");
	CHECK(sc.samples == 16777216, "samples");
	CHECK(sc.res_pct == 50 && sc.res_w == 0, "res_pct");
	CHECK(sc.format == SC_FORMAT_JPEG, "format");
	CHECK(sc.video == 0, "video");
	CHECK(sc.fps > 23.975 && sc.fps < 23.977, "fps");
	CHECK(sc.retries == 0, "retries");
	CHECK(sc.timeout_s == 5400, "timeout %lld", (long long)sc.timeout_s);
	CHECK(sc.priority == -1000000, "priority");
	CHECK(sc.nodes == 1000, "nodes");
	CHECK(!strcmp(sc.gpu, "RTX 4090"), "gpu");
	CHECK(sc.min_vram == 0, "min_vram");
	CHECK(sc.max_price == 0.35, "max_price");
	CHECK(sc.spot == 1, "spot");
	CHECK(sc.budget == 0, "budget");
	sidecar_free(&sc);

	/* the other ends of each range, and the other spellings */
	PARSE_OK("1\nengine=eevee\ndevice=hip\nsamples=1\nresolution=1x1\nformat=exr\n"
		 "video=1\nfps=1000\nretries=100\ntimeout=0.5s\npriority=1000000\n"
		 "nodes=1\nmin_vram=24.5\nmax_price=1e-3\nspot=false\nbudget=6.00\n",
		 &sc);
	CHECK(sc.engine == SC_ENGINE_EEVEE && sc.device == SC_DEVICE_HIP, "enums");
	CHECK(sc.samples == 1 && sc.res_w == 1 && sc.res_h == 1, "mins");
	CHECK(sc.format == SC_FORMAT_EXR && sc.video == 1 && sc.fps == 1000, "format/video/fps");
	CHECK(sc.retries == 100 && sc.timeout_s == 1, "retries/timeout rounds up");
	CHECK(sc.priority == 1000000 && sc.nodes == 1, "priority/nodes");
	CHECK(sc.min_vram == 24.5 && sc.max_price == 0.001 && sc.spot == 0, "clore");
	CHECK(sc.budget == 6.0, "budget");
	sidecar_free(&sc);

	PARSE_OK("1\nengine=Workbench\ndevice=CPU\nresolution = 32768 X 32768\n"
		 "format=tiff\nvideo=TRUE\nspot=on\ntimeout=30d\n",
		 &sc);
	CHECK(sc.engine == SC_ENGINE_WORKBENCH && sc.device == SC_DEVICE_CPU, "enums 2");
	CHECK(sc.res_w == 32768 && sc.res_h == 32768, "max resolution");
	CHECK(sc.format == SC_FORMAT_TIFF && sc.video == 1 && sc.spot == 1, "tiff/bools");
	CHECK(sc.timeout_s == 30 * 86400, "30 days");
	sidecar_free(&sc);

	PARSE_OK("1\nresolution=1000%\nvideo=no\nspot=0\ntimeout=45\n", &sc);
	CHECK(sc.res_pct == 1000 && sc.video == 0 && sc.spot == 0 && sc.timeout_s == 45,
	      "pct 1000, bools, plain-seconds timeout");
	sidecar_free(&sc);

	/* the enum spellings not yet seen */
	PARSE_OK("1\nformat = png\nvideo = yes\nspot = true\n", &sc);
	CHECK(sc.format == SC_FORMAT_PNG && sc.video == 1 && sc.spot == 1, "png/yes/true");
	sidecar_free(&sc);
	PARSE_OK("1\nformat = TIF\nvideo = FALSE\nspot = OFF\ndevice = auto\n", &sc);
	CHECK(sc.format == SC_FORMAT_TIFF && sc.video == 0 && sc.spot == 0, "tif/false/off");
	CHECK(sc.device == SC_DEVICE_AUTO, "device auto");
	sidecar_free(&sc);
	PARSE_OK("1\nvideo = On\nspot = 1\n", &sc);
	CHECK(sc.video == 1 && sc.spot == 1, "on/1");
	sidecar_free(&sc);

	/* spaces around '=' are optional, and values keep inner '=' */
	PARSE_OK("1\nscene=a=b\n", &sc);
	CHECK(!strcmp(sc.scene, "a=b"), "scene '%s'", sc.scene);
	sidecar_free(&sc);
	/* a 255-byte scene fits exactly */
	{
		char text[400];

		snprintf(text, sizeof(text), "1\nscene = %0255d\n", 0);
		PARSE_OK(text, &sc);
		CHECK(strlen(sc.scene) == 255, "scene of 255 bytes");
		sidecar_free(&sc);
	}
}

static void test_keys_illegal(void)
{
	char text[600];

	BAD2("scene =", "no value for 'scene'");
	BAD2("scene = a\tb", "bad scene 'a\\tb': control characters are not allowed");
	BAD2("gpu = \x01x", "bad gpu '\\x01x': control characters are not allowed");
	BAD2("gpu =   ", "no value for 'gpu'");
	snprintf(text, sizeof(text), "1\nscene = %0256d\n", 0);
	EXPECT(text, "shot.range:2: scene is 256 bytes, over the limit of 255");
	snprintf(text, sizeof(text), "1\ngpu = %0300d\n", 0);
	EXPECT(text, "shot.range:2: gpu is 300 bytes, over the limit of 255");

	BAD2("engine = blender", "bad engine 'blender': expected cycles, eevee or workbench");
	BAD2("engine = ''", "bad engine '\\'\\'': expected cycles, eevee or workbench");
	BAD2("device = metal", "bad device 'metal': expected auto, optix, cuda, hip or cpu");

	BAD2("samples = abc", "bad samples 'abc': expected a positive integer");
	BAD2("samples = 0", "bad samples '0': expected a positive integer");
	BAD2("samples = -4", "bad samples '-4': expected a positive integer");
	BAD2("samples = 4.5", "bad samples '4.5': expected a positive integer");
	BAD2("samples = 4 4", "bad samples '4 4': expected a positive integer");
	BAD2("samples = 0x10", "bad samples '0x10': expected a positive integer");
	BAD2("samples = 16777217", "samples 16777217 is over the limit of 16777216");
	BAD2("samples = 99999999999999999999999",
	     "samples 99999999999999999999999 is over the limit of 16777216");
	BAD2("samples = -99999999999999999999999",
	     "bad samples '-99999999999999999999999': expected a positive integer");

	BAD2("resolution = big", "bad resolution 'big': expected WxH (like 1920x1080) or N% (like 50%)");
	BAD2("resolution = 1920x", "bad resolution '1920x': expected WxH (like 1920x1080) or N% (like 50%)");
	BAD2("resolution = x1080", "bad resolution 'x1080': expected WxH (like 1920x1080) or N% (like 50%)");
	BAD2("resolution = 1920x1080x2",
	     "bad resolution '1920x1080x2': expected WxH (like 1920x1080) or N% (like 50%)");
	BAD2("resolution = -5x5", "bad resolution '-5x5': expected WxH (like 1920x1080) or N% (like 50%)");
	BAD2("resolution = %", "bad resolution '%': expected WxH (like 1920x1080) or N% (like 50%)");
	BAD2("resolution = 0x1080", "bad resolution '0x1080': width and height must be 1 to 32768");
	BAD2("resolution = 1920x32769", "bad resolution '1920x32769': width and height must be 1 to 32768");
	BAD2("resolution = 0%", "bad resolution '0%': the percentage must be 1 to 1000");
	BAD2("resolution = 1001%", "bad resolution '1001%': the percentage must be 1 to 1000");

	BAD2("format = gif", "bad format 'gif': expected png, exr, jpeg or tiff");
	BAD2("video = maybe", "bad video 'maybe': expected yes or no");
	BAD2("spot = 2", "bad spot '2': expected yes or no");

	BAD2("fps = 0", "bad fps '0': expected a positive number");
	BAD2("fps = -24", "bad fps '-24': expected a positive number");
	BAD2("fps = nan", "bad fps 'nan': expected a positive number");
	BAD2("fps = inf", "bad fps 'inf': expected a positive number");
	BAD2("fps = 0x18", "bad fps '0x18': expected a positive number");
	BAD2("fps = 24fps", "bad fps '24fps': expected a positive number");
	BAD2("fps = 1e", "bad fps '1e': expected a positive number");
	BAD2("fps = .", "bad fps '.': expected a positive number");
	BAD2("fps = 1001", "fps 1001 is over the limit of 1000");
	BAD2("fps = 1e999", "fps 1e999 is over the limit of 1000");

	BAD2("retries = -1", "bad retries '-1': expected an integer from 0 to 100");
	BAD2("retries = 101", "bad retries '101': expected an integer from 0 to 100");
	BAD2("retries = many", "bad retries 'many': expected an integer from 0 to 100");

	BAD2("timeout = soon", "bad timeout 'soon': expected a duration like 90s, 30m, 2h or 1h30m");
	BAD2("timeout = -5s", "bad timeout '-5s': expected a duration like 90s, 30m, 2h or 1h30m");
	BAD2("timeout = 5 s", "bad timeout '5 s': expected a duration like 90s, 30m, 2h or 1h30m");
	BAD2("timeout = 0s", "bad timeout '0s': it must be more than zero");
	BAD2("timeout = 0", "bad timeout '0': it must be more than zero");
	BAD2("timeout = 31d", "timeout 31d is over the limit of 30 days");
	BAD2("timeout = 721h", "timeout 721h is over the limit of 30 days");

	BAD2("priority = 1000001", "bad priority '1000001': expected an integer from -1000000 to 1000000");
	BAD2("priority = -1000001", "bad priority '-1000001': expected an integer from -1000000 to 1000000");
	BAD2("priority = high", "bad priority 'high': expected an integer from -1000000 to 1000000");

	BAD2("nodes = 0", "bad nodes '0': expected a positive integer");
	BAD2("nodes = 1001", "nodes 1001 is over the limit of 1000");
	BAD2("min_vram = -1", "bad min_vram '-1': expected a number of 0 or more");
	BAD2("min_vram = lots", "bad min_vram 'lots': expected a number of 0 or more");
	BAD2("min_vram = 2000000", "min_vram 2000000 is over the limit of 1000000");
	BAD2("max_price = 0", "bad max_price '0': expected a positive number");
	BAD2("max_price = $1", "bad max_price '$1': expected a positive number");
	BAD2("max_price = 1e7", "max_price 1e7 is over the limit of 1000000");
	BAD2("budget = -0.01", "bad budget '-0.01': expected a number of 0 or more");
	BAD2("budget = 6,00", "bad budget '6,00': expected a number of 0 or more");
	BAD2("budget = 2e9", "budget 2e9 is over the limit of 1000000000");

	BAD2("samples =", "no value for 'samples'");
	EXPECT("frames =\n", "shot.range:1: no value for 'frames'");
}

static void test_structure(void)
{
	struct sidecar sc;
	char *errs;

	/* unknown keys: exact names, case matters */
	BAD2("sampels = 4", "unknown key 'sampels'");
	BAD2("Samples = 4", "unknown key 'Samples'");
	BAD2("= 4", "missing key before '='");
	BAD2("samples 4", "expected 'key = value', got 'samples 4'");
	BAD2("5-10", "expected 'key = value', got '5-10' (a bare frame list must be the first line)");
	EXPECT("samples 4\n", "shot.range:1: expected a frame list or 'key = value', got 'samples 4'");

	/* duplicates, the bare list counting as frames */
	EXPECT("1-10\nsamples = 4\nsamples = 8\n", "shot.range:3: duplicate key 'samples' (first on line 2)");
	EXPECT("1-10\nframes = 1-10\n", "shot.range:2: duplicate key 'frames' (first on line 1)");
	EXPECT("frames = 1\nframes = 2\n", "shot.range:2: duplicate key 'frames' (first on line 1)");
	EXPECT("1\nscene = a\nscene = a\n", "shot.range:3: duplicate key 'scene' (first on line 2)");

	/* line numbers count comments and blank lines */
	EXPECT("# a comment\n\n   \n\t# indented comment\n1-10\n\nsamples = x # bad\n",
	       "shot.range:7: bad samples 'x': expected a positive integer");
	EXPECT("\n\n\nsampels = 2\n", "shot.range:4: unknown key 'sampels'");

	/* no frame list: the scene's own range (nframes 0), and missing = */
	PARSE_OK("", &sc);
	CHECK(sc.nframes == 0 && !sc.frames && !sc.missing_ignore, "empty sidecar: the scene's range");
	sidecar_free(&sc);
	PARSE_OK("# only a comment\n\n", &sc);
	CHECK(sc.nframes == 0, "comments only");
	sidecar_free(&sc);
	PARSE_OK("samples = 4\nmissing = ignore\n", &sc);
	CHECK(sc.nframes == 0 && sc.samples == 4 && sc.missing_ignore == 1, "missing = ignore");
	sidecar_free(&sc);
	PARSE_OK("1\nmissing = refuse\n", &sc);
	CHECK(sc.nframes == 1 && sc.missing_ignore == 0, "missing = refuse");
	sidecar_free(&sc);
	BAD2("missing = skip", "bad missing 'skip': expected ignore or refuse");
	/* a bad frame list is reported once, not also as missing */
	EXPECT("1-x\n", "shot.range:1: bad frame list item '1-x': expected N, A-B or A-BxS");
	EXPECT("samples = 4\n1-10\n",
	       "shot.range:2: expected 'key = value', got '1-10' (a bare frame list must be the first line)");

	/* comments after values, and a bare list with a comment */
	PARSE_OK("1-3 # three\nsamples = 4  # note\nscene = x#y\n", &sc);
	CHECK(sc.nframes == 3 && sc.samples == 4 && !strcmp(sc.scene, "x"), "trailing comments");
	sidecar_free(&sc);

	/* several problems, all reported, in line order, missing frames last */
	EXPECT("sampels = 4\nsamples = abc\nsamples = 5\nengine = povray\nfoo\n",
	       "shot.range:1: unknown key 'sampels'",
	       "shot.range:2: bad samples 'abc': expected a positive integer",
	       "shot.range:3: duplicate key 'samples' (first on line 2)",
	       "shot.range:4: bad engine 'povray': expected cycles, eevee or workbench",
	       "shot.range:5: expected 'key = value', got 'foo'");

	/* errors is optional, and *out is always freeable */
	CHECK(parse("x = 1\n", &sc, NULL) == -EINVAL, "NULL errors");
	sidecar_free(&sc);
	errs = (char *)1;
	CHECK(parse("1\n", &sc, &errs) == 0 && errs == NULL, "errors NULL on success");
	sidecar_free(&sc);
	/* text need not be NUL-terminated */
	CHECK(sidecar_parse("1-2\nsamples = 9", 15, "f.range", &sc, &errs) == 0, "no NUL");
	CHECK(sc.nframes == 2 && sc.samples == 9, "no NUL values");
	sidecar_free(&sc);
	CHECK(sidecar_parse("1-2\nsamples = 9", 14, "f.range", &sc, &errs) == -EINVAL && errs &&
		  !strcmp(errs, "f.range:2: no value for 'samples'\n"),
	      "length respected: %s", errs ? errs : "(null)");
	free(errs);
	CHECK(sidecar_parse("1-2\nsamples = 9XYZ", 15, "f.range", &sc, &errs) == 0 && sc.samples == 9,
	      "bytes past len ignored");
	sidecar_free(&sc);
}

static void test_encoding(void)
{
	struct sidecar sc;
	char *big, *errs;
	size_t i;
	int rc;

	/* CRLF and a byte order mark */
	PARSE_OK("\xef\xbb\xbf"
		 "1-5\r\nsamples = 8\r\n# c\r\n\r\nscene = s\r\n",
		 &sc);
	CHECK(sc.nframes == 5 && sc.samples == 8 && !strcmp(sc.scene, "s"), "CRLF + BOM");
	sidecar_free(&sc);
	PARSE_OK("\xef\xbb\xbf"
		 "frames=1\r\n",
		 &sc);
	sidecar_free(&sc);
	EXPECT("1\r\nsamples = x\r\n", "shot.range:2: bad samples 'x': expected a positive integer");
	/* a lone CR is a control character, not a line end */
	EXPECT("1\nscene = a\rb\n", "shot.range:2: bad scene 'a\\rb': control characters are not allowed");
	/* BOM only counts at the very start */
	EXPECT("1\n\xef\xbb\xbfsamples = 1\n", "shot.range:2: unknown key '\xef\xbb\xbfsamples'");

	/* invalid UTF-8, in several shapes, each on its own line number */
	EXPECT("1\nscene = caf\xe9\n", "shot.range:2: invalid UTF-8 (byte 0xe9 at column 12)");
	EXPECT("1\n# \xff comment\n", "shot.range:2: invalid UTF-8 (byte 0xff at column 3)");
	EXPECT("1\nscene = \xc0\x80\n", "shot.range:2: invalid UTF-8 (byte 0xc0 at column 9)");
	EXPECT("1\nscene = \xed\xa0\x80\n", "shot.range:2: invalid UTF-8 (byte 0xed at column 9)");
	EXPECT("1\nscene = \xf4\x90\x80\x80\n", "shot.range:2: invalid UTF-8 (byte 0xf4 at column 9)");
	EXPECT("1\nscene = \xe2\x82", "shot.range:2: invalid UTF-8 (byte 0xe2 at column 9)");
	PARSE_OK("1\nscene = \xf0\x9f\x8e\xac \xe2\x82\xac\n", &sc);
	CHECK(!strcmp(sc.scene, "\xf0\x9f\x8e\xac \xe2\x82\xac"), "4- and 3-byte UTF-8");
	sidecar_free(&sc);

	/* NUL bytes */
	EXPECT_N("1\nsam\0ples = 1\n", 15, "shot.range:2: NUL byte at column 4 (is this a text file?)");
	EXPECT_N("1\0\n", 3, "shot.range:1: NUL byte at column 2 (is this a text file?)");
	/* a binary first line that held the frames is not also "missing" */
	EXPECT("1-1\xff\n", "shot.range:1: invalid UTF-8 (byte 0xff at column 4)");
	EXPECT("frames = \xff\n", "shot.range:1: invalid UTF-8 (byte 0xff at column 10)");
	EXPECT("samples = \xff\n", "shot.range:1: invalid UTF-8 (byte 0xff at column 11)");

	/* size: 64 KiB is fine, one more byte is not */
	big = malloc(SIDECAR_MAX_BYTES + 2);
	memcpy(big, "1-10\n", 5);
	/* then comment lines of 80 bytes, to the last byte */
	for (i = 5; i < SIDECAR_MAX_BYTES + 1; i++)
		big[i] = (i - 5) % 80 == 79 ? '\n' : (i - 5) % 80 == 0 ? '#' : 'x';
	rc = sidecar_parse(big, SIDECAR_MAX_BYTES, "shot.range", &sc, &errs);
	CHECK(rc == 0, "64 KiB accepted: %.200s", errs ? errs : "");
	CHECK(sc.nframes == 10, "64 KiB frames");
	sidecar_free(&sc);
	free(errs);
	EXPECT_N(big, SIDECAR_MAX_BYTES + 1, "shot.range:0: file is 65537 bytes, over the limit of 65536");
	free(big);
}

static void test_quoting(void)
{
	char text[400], want[200];

	/* long values are capped at 60 bytes with "..." */
	snprintf(text, sizeof(text), "1\nengine = %s\n",
		 "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz");
	snprintf(want, sizeof(want),
		 "shot.range:2: bad engine '%s...': expected cycles, "
		 "eevee or workbench",
		 "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefgh");
	EXPECT(text, want);
	/* never cut a UTF-8 character in half */
	snprintf(text, sizeof(text), "1\nengine = %.59s\xc3\xa9zz\n",
		 "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefgh");
	snprintf(want, sizeof(want),
		 "shot.range:2: bad engine '%.59s\xc3\xa9...': expected "
		 "cycles, eevee or workbench",
		 "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefgh");
	EXPECT(text, want);
	BAD2("engine = a\\b\x1b[31m", "bad engine 'a\\\\b\\x1b[31m': expected cycles, eevee or workbench");
	BAD2("engine = \x7f", "bad engine '\\x7f': expected cycles, eevee or workbench");

	/* the file name is escaped too, but not quoted */
	{
		struct sidecar sc;
		char *errs = NULL;

		sidecar_parse("x = 1\n", 6, "bob's\nshot.range", &sc, &errs);
		CHECK(errs && !strncmp(errs, "bob's\\nshot.range:1: unknown key", 32),
		      "file name escaped: %s", errs ? errs : "(null)");
		CHECK(count_lines(errs) == 1, "one line");
		free(errs);
	}
}

static void frames_eq(int line, const char *list, const uint32_t *want, size_t nwant)
{
	uint32_t *f = NULL;
	size_t n = 0, i;
	char why[256] = "";
	int rc = sidecar_parse_frames(list, &f, &n, why, sizeof(why));

	check_at(rc == 0, __FILE__, line, "'%s': rc %d (%s)", list, rc, why);
	check_at(n == nwant, __FILE__, line, "'%s': %zu frames, want %zu", list, n, nwant);
	for (i = 0; rc == 0 && i < n && i < nwant; i++)
		if (f[i] != want[i]) {
			check_at(0, __FILE__, line, "'%s': frame[%zu] = %u, want %u", list, i, f[i], want[i]);
			break;
		}
	free(f);
}

static void frames_bad(int line, const char *list, const char *msg)
{
	uint32_t *f = (uint32_t *)1;
	size_t n = 7;
	char why[256] = "";
	int rc = sidecar_parse_frames(list, &f, &n, why, sizeof(why));

	check_at(rc == -EINVAL && !f && !n, __FILE__, line, "'%s': rc %d", list, rc);
	check_at(!strcmp(why, msg), __FILE__, line, "'%s': why '%s', want '%s'", list, why, msg);
}

#define FRAMES(list, ...)                                                  \
	do {                                                               \
		static const uint32_t w_[] = {__VA_ARGS__};                \
		frames_eq(__LINE__, list, w_, sizeof(w_) / sizeof(w_[0])); \
	} while (0)
#define FRAMES_BAD(list, msg) frames_bad(__LINE__, list, msg)

/* The list parses to n frames; returns the seconds it took. */
static double frames_count(int line, const char *list, size_t want)
{
	uint32_t *f = NULL;
	size_t n = 0, i;
	char why[256] = "";
	double t0 = now_s();
	int rc = sidecar_parse_frames(list, &f, &n, why, sizeof(why)), sorted = 1;
	double t = now_s() - t0;

	check_at(rc == 0 && n == want, __FILE__, line, "%.40s: rc %d n %zu want %zu (%s)", list, rc, n, want,
		 why);
	for (i = 1; i < n; i++)
		sorted &= f[i - 1] < f[i];
	check_at(sorted, __FILE__, line, "%.40s: not strictly ascending", list);
	free(f);
	return t;
}

static void test_frames(void)
{
	char *s;
	size_t i, o;
	double t0, t;

	FRAMES("0", 0);
	FRAMES("1048574", 1048574);
	FRAMES("1-9x2,12", 1, 3, 5, 7, 9, 12);
	FRAMES("12,1-9x2", 1, 3, 5, 7, 9, 12);
	FRAMES("5,5,5,4-6", 4, 5, 6);
	FRAMES(" 1 , 3 - 4 , 10-20 x 5 ", 1, 3, 4, 10, 15, 20);
	FRAMES("1-10X4", 1, 5, 9);
	FRAMES("1-10x100", 1);
	FRAMES("1-10x99999999999999", 1);
	FRAMES("7-7", 7);
	FRAMES("007", 7);
	FRAMES("0-12x3,0-12x4", 0, 3, 4, 6, 8, 9, 12);
	FRAMES("1-4,3-8,10,9", 1, 2, 3, 4, 5, 6, 7, 8, 9, 10);
	FRAMES("1-100x10", 1, 11, 21, 31, 41, 51, 61, 71, 81, 91);
	FRAMES("1048570-1048574", 1048570, 1048571, 1048572, 1048573, 1048574);

	FRAMES_BAD("", "empty frame list");
	FRAMES_BAD("  ", "empty frame list");
	FRAMES_BAD("1,,2", "empty item in frame list '1,,2'");
	FRAMES_BAD("1,", "empty item in frame list '1,'");
	FRAMES_BAD(",1", "empty item in frame list ',1'");
	FRAMES_BAD("1048575", "frame 1048575 is over Blender's limit of 1048574");
	FRAMES_BAD("2000000", "frame 2000000 is over Blender's limit of 1048574");
	FRAMES_BAD("1-1048575", "frame 1048575 is over Blender's limit of 1048574");
	FRAMES_BAD("123456789012345678901234567890",
		   "frame 12345678901234567890... is over Blender's limit of 1048574");
	FRAMES_BAD("10-5", "range 10-5 runs backwards");
	FRAMES_BAD("1-10x0", "step 0 in '1-10x0'");
	FRAMES_BAD("1, 1 - 10 x 0", "step 0 in '1 - 10 x 0'");
	FRAMES_BAD("-5", "bad frame list item '-5': frames can't be negative");
	FRAMES_BAD("1--5", "bad frame list item '1--5': expected N, A-B or A-BxS");
	FRAMES_BAD("1-", "bad frame list item '1-': expected N, A-B or A-BxS");
	FRAMES_BAD("1-10x", "bad frame list item '1-10x': expected N, A-B or A-BxS");
	FRAMES_BAD("3x2", "bad frame list item '3x2': expected N, A-B or A-BxS");
	FRAMES_BAD("1 2", "bad frame list item '1 2': expected N, A-B or A-BxS");
	FRAMES_BAD("1;2", "bad frame list item '1;2': expected N, A-B or A-BxS");
	FRAMES_BAD("1.5", "bad frame list item '1.5': expected N, A-B or A-BxS");
	FRAMES_BAD("1-10x2x3", "bad frame list item '1-10x2x3': expected N, A-B or A-BxS");
	FRAMES_BAD("+1", "bad frame list item '+1': expected N, A-B or A-BxS");
	FRAMES_BAD("0-1048574", "1048575 frames is over the limit of 1000000 per job");
	FRAMES_BAD("0-1000000", "1000001 frames is over the limit of 1000000 per job");
	FRAMES_BAD("0-999999,1000000", "1000001 frames is over the limit of 1000000 per job");
	FRAMES_BAD("0-1048574x2,1-1048574x2", "1048575 frames is over the limit of 1000000 per job");

	/* the limits themselves */
	frames_count(__LINE__, "0-999999", 1000000);
	frames_count(__LINE__, "1-1000000,1-1000000,500-600", 1000000);
	frames_count(__LINE__, "0-1048574x2", 524288);
	frames_count(__LINE__, "0-999999x2,0-999999x3", 666667);
	frames_count(__LINE__, "0-1048574x2,0-1048574x3", 699050);

	/* the file form carries the same messages, with the line */
	EXPECT("\n10-5\n", "shot.range:2: range 10-5 runs backwards");
	EXPECT("1\nframes = 1-10x0\n", "shot.range:2: duplicate key 'frames' (first on line 1)");
	EXPECT("frames = 1-10x0\n", "shot.range:1: step 0 in '1-10x0'");
	EXPECT("# big\n0-1048575\n", "shot.range:2: frame 1048575 is over Blender's limit of 1048574");
	EXPECT("frames = 0-1000000\n", "shot.range:1: 1000001 frames is over the limit of 1000000 per job");

	/* absurd lists are refused (or done) fast, not in quadratic time:
	 * a 64 KiB file of repeated whole-range items, in many steps */
	s = malloc(SIDECAR_MAX_BYTES + 64);
	t0 = now_s();
	for (o = 0, i = 0; o < SIDECAR_MAX_BYTES - 40; i++)
		o += (size_t)sprintf(s + o, "%s0-1048574x%zu", o ? "," : "", 2 + i % 100);
	{
		uint32_t *f = NULL;
		size_t n = 0;
		char why[256];
		int rc = sidecar_parse_frames(s, &f, &n, why, sizeof(why));

		/* multiples of 2..101: about 92% of all frames, under the cap */
		CHECK(rc == 0 && n > 900000 && n < 1000000 && f[0] == 0 && f[1] == 2,
		      "strided union: rc %d n %zu (%s)", rc, n, why);
		free(f);
	}
	t = now_s() - t0;
	CHECK(t < 5, "many big strided ranges took %.2fs", t);
	for (o = 0, i = 0; o < SIDECAR_MAX_BYTES - 40; i++)
		o += (size_t)sprintf(s + o, "%s%zu-999999", o ? "," : "", i % 7);
	t = frames_count(__LINE__, s, 1000000);
	CHECK(t < 5, "many overlapping ranges took %.2fs", t);
	for (o = 0, i = 0; o < SIDECAR_MAX_BYTES - 40; i++)
		o += (size_t)sprintf(s + o, "%s%zu-1048574x%zu", o ? "," : "", i % 50, 1 + i % 50);
	t0 = now_s();
	FRAMES_BAD(s, "1048575 frames is over the limit of 1000000 per job");
	t = now_s() - t0;
	CHECK(t < 5, "many lattices took %.2fs", t);
	free(s);
	t0 = now_s();
	for (i = 0; i < 1000; i++)
		FRAMES_BAD("0-1048574", "1048575 frames is over the limit of 1000000 per job");
	t = now_s() - t0;
	CHECK(t < 1, "1000 refusals of a huge range took %.2fs", t);

	/* why may be omitted */
	{
		uint32_t *f;
		size_t n;

		CHECK(sidecar_parse_frames("x", &f, &n, NULL, 0) == -EINVAL, "NULL why");
		CHECK(sidecar_parse_frames(NULL, &f, &n, NULL, 0) == -EINVAL, "NULL list");
	}
}

static void dur_ok(int line, const char *s, int64_t want)
{
	int64_t ms = -7;
	int rc = parse_duration_ms(s, &ms);

	check_at(rc == 0 && ms == want, __FILE__, line, "'%s': rc %d ms %lld want %lld", s, rc, (long long)ms,
		 (long long)want);
}

static void dur_bad(int line, const char *s)
{
	int64_t ms = -7;
	int rc = parse_duration_ms(s, &ms);

	check_at(rc == -EINVAL && ms == -7, __FILE__, line, "'%s': rc %d ms %lld, want -EINVAL untouched", s,
		 rc, (long long)ms);
}

#define DUR(s, ms) dur_ok(__LINE__, s, ms)
#define DUR_BAD(s) dur_bad(__LINE__, s)

static void test_durations(void)
{
	DUR("90s", 90000);
	DUR("30m", 1800000);
	DUR("2h", 7200000);
	DUR("1h30m", 5400000);
	DUR("1h30m15s", 5415000);
	DUR("1m500ms", 60500);
	DUR("500ms", 500);
	DUR("0.5s", 500);
	DUR("1.5h", 5400000);
	DUR("45", 45000);
	DUR("0.25", 250);
	DUR("0", 0);
	DUR("0s", 0);
	DUR("1d", 86400000);
	DUR("30d", 2592000000LL);
	DUR("720h", 2592000000LL);
	DUR("0.0001s", 1); /* rounds up, never to zero */
	DUR("0.0000000001s", 1);
	DUR("0.1ms", 1);

	DUR_BAD("");
	DUR_BAD(NULL);
	DUR_BAD("-5s");
	DUR_BAD("-5");
	DUR_BAD("abc");
	DUR_BAD("5x");
	DUR_BAD("5 s");
	DUR_BAD(" 5s");
	DUR_BAD("5s ");
	DUR_BAD("s");
	DUR_BAD("1h30");
	DUR_BAD("30m1h");
	DUR_BAD("1m1m");
	DUR_BAD("1.2.3s");
	DUR_BAD("30d1ms");
	DUR_BAD("31d");
	DUR_BAD("2592000001ms");
	DUR_BAD("99999999999999999999999h");
	DUR_BAD("nan");
	DUR_BAD("inf");
	DUR_BAD("1e3s");
}

static void test_names(void)
{
	CHECK(!strcmp(sc_engine_name(SC_ENGINE_SAVED), ""), "engine saved");
	CHECK(!strcmp(sc_engine_name(SC_ENGINE_CYCLES), "cycles"), "cycles");
	CHECK(!strcmp(sc_engine_name(SC_ENGINE_EEVEE), "eevee"), "eevee");
	CHECK(!strcmp(sc_engine_name(SC_ENGINE_WORKBENCH), "workbench"), "workbench");
	CHECK(!strcmp(sc_device_name(SC_DEVICE_AUTO), "auto"), "auto");
	CHECK(!strcmp(sc_device_name(SC_DEVICE_OPTIX), "optix"), "optix");
	CHECK(!strcmp(sc_device_name(SC_DEVICE_CUDA), "cuda"), "cuda");
	CHECK(!strcmp(sc_device_name(SC_DEVICE_HIP), "hip"), "hip");
	CHECK(!strcmp(sc_device_name(SC_DEVICE_CPU), "cpu"), "cpu");
	CHECK(!strcmp(sc_format_name(SC_FORMAT_PNG), "png"), "png");
	CHECK(!strcmp(sc_format_name(SC_FORMAT_EXR), "exr"), "exr");
	CHECK(!strcmp(sc_format_name(SC_FORMAT_JPEG), "jpeg"), "jpeg");
	CHECK(!strcmp(sc_format_name(SC_FORMAT_TIFF), "tiff"), "tiff");
	CHECK(!strcmp(sc_format_ext(SC_FORMAT_PNG), ".png"), ".png");
	CHECK(!strcmp(sc_format_ext(SC_FORMAT_EXR), ".exr"), ".exr");
	CHECK(!strcmp(sc_format_ext(SC_FORMAT_JPEG), ".jpg"), ".jpg");
	CHECK(!strcmp(sc_format_ext(SC_FORMAT_TIFF), ".tif"), ".tif");
	CHECK(!strcmp(sc_format_ext((enum sc_format)99), ""), "out of range");
}

int main(void)
{
	test_example();
	test_defaults();
	test_keys_legal();
	test_keys_illegal();
	test_structure();
	test_encoding();
	test_quoting();
	test_frames();
	test_durations();
	test_names();
	printf("test_sidecar: %d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
