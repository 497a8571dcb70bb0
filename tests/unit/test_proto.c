/*
 * The worker protocol parser (sched/proto.c) against good and hostile
 * lines: every number range-checked, every text one clean line, bad lines
 * refused with a reason.
 */
#include "check.h"
#include "sched/proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int parse(const char *line, struct proto_msg *m)
{
	return proto_parse_line(line, strlen(line), m);
}

/* A bad line: -EINVAL with a reason. */
static void refused(const char *line, const char *why_part)
{
	struct proto_msg m;
	int rc = parse(line, &m);

	CHECK(rc == -EINVAL, "refused %s: rc %d", line, rc);
	CHECK(m.why[0] && strstr(m.why, why_part), "reason for %s: '%s' lacks '%s'", line, m.why, why_part);
}

static void test_good(void)
{
	struct proto_msg m;
	int rc;

	rc = parse("Fra:1 Mem:9M | Sample 3/8", &m);
	CHECK(rc == 0 && m.ev == PROTO_NONE, "log text: rc %d ev %d", rc, m.ev);
	rc = parse("@rfs", &m);
	CHECK(rc == 0 && m.ev == PROTO_NONE, "a bare @rfs is log text: rc %d", rc);

	rc = parse("@rfs {\"ev\":\"ready\",\"blender\":\"3.4.1\",\"device\":\"OPTIX\",\"why\":\"auto\","
		   "\"width\":320,\"height\":180,\"fps\":24,\"devices\":[\"OPTIX:RTX 4090\",\"CPU:x\","
		   "\"CUDA:RTX 4090\"]}",
		   &m);
	CHECK(rc == 0 && m.ev == PROTO_READY, "ready: rc %d ev %d", rc, m.ev);
	CHECK(m.width == 320 && m.height == 180 && m.fps == 24, "ready numbers %d %d %g", m.width, m.height,
	      m.fps);
	CHECK(!strcmp(m.blender, "3.4.1") && m.has_blender && m.has_device && m.has_why, "ready text");
	CHECK(m.ngpus == 2 && !strcmp(m.gpu_names, "OPTIX:RTX 4090, CUDA:RTX 4090"), "gpus %d '%s'", m.ngpus,
	      m.gpu_names);

	rc = parse("@rfs {\"ev\":\"start\",\"frame\":12}", &m);
	CHECK(rc == 0 && m.ev == PROTO_START && m.frame == 12, "start: rc %d frame %lld", rc,
	      (long long)m.frame);
	rc = parse("@rfs {\"ev\":\"progress\",\"frame\":12,\"fraction\":0.41,\"step\":3}", &m);
	CHECK(rc == 0 && m.ev == PROTO_PROGRESS && m.fraction == 0.41 && m.step == 3, "progress: rc %d %g %lld",
	      rc, m.fraction, (long long)m.step);
	rc = parse("@rfs {\"ev\":\"progress\",\"frame\":-5,\"fraction\":1}", &m);
	CHECK(rc == 0 && m.frame == -5 && m.fraction == 1 && m.step == 0, "progress, no step");
	rc = parse("@rfs {\"ev\":\"done\",\"frame\":1,\"secs\":0.5,\"sha256\":"
		   "\"ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789\",\"width\":9}",
		   &m);
	CHECK(rc == 0 && m.ev == PROTO_DONE && m.secs == 0.5, "done: rc %d secs %g", rc, m.secs);
	CHECK(!strcmp(m.sha256, "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"),
	      "sha lowercased: %s", m.sha256);
	rc = parse("@rfs {\"ev\":\"done\",\"frame\":1}", &m);
	CHECK(rc == 0 && m.secs < 0 && !m.sha256[0], "done without secs and sha");
	rc = parse("@rfs {\"ev\":\"fail\",\"frame\":2,\"msg\":\"Out of GPU memory\"}", &m);
	CHECK(rc == 0 && m.ev == PROTO_FAIL && !strcmp(m.msg, "Out of GPU memory"), "fail: '%s'", m.msg);
	rc = parse("@rfs {\"ev\":\"error\",\"msg\":\"scene \\\"x\\\" not found\"}", &m);
	CHECK(rc == 0 && m.ev == PROTO_ERROR && !strcmp(m.msg, "scene \"x\" not found"), "error: '%s'", m.msg);
	rc = parse("@rfs  {\"ev\":\"start\",\"frame\":1}  ", &m);
	CHECK(rc == 0 && m.ev == PROTO_START, "whitespace around the object: rc %d", rc);
}

static void test_hostile(void)
{
	struct proto_msg m;
	int rc;

	refused("@rfs ", "JSON");
	refused("@rfs {", "JSON");
	refused("@rfs [1,2]", "object");
	refused("@rfs \"ready\"", "object");
	refused("@rfs {\"ev\":\"start\",\"frame\":1} {\"ev\":\"done\"}", "JSON");
	refused("@rfs {\"ev\":7}", "ev");
	refused("@rfs {\"frame\":1}", "ev");
	refused("@rfs {\"ev\":\"explode\"}", "unknown");
	refused("@rfs {\"ev\":\"start\"}", "frame");
	refused("@rfs {\"ev\":\"start\",\"frame\":\"1\"}", "frame");
	refused("@rfs {\"ev\":\"start\",\"frame\":1.5}", "frame");
	refused("@rfs {\"ev\":\"start\",\"frame\":1048575}", "frame");
	refused("@rfs {\"ev\":\"start\",\"frame\":-1e300}", "frame");
	refused("@rfs {\"ev\":\"done\",\"frame\":1e400}", "frame");
	refused("@rfs {\"ev\":\"start\",\"frame\":true}", "frame");
	refused("@rfs {\"ev\":\"done\",\"frame\":1,\"secs\":-1}", "secs");
	refused("@rfs {\"ev\":\"done\",\"frame\":1,\"secs\":1e300}", "secs");
	refused("@rfs {\"ev\":\"done\",\"frame\":1,\"secs\":\"5\"}", "secs");
	refused("@rfs {\"ev\":\"done\",\"frame\":1,\"sha256\":\"abc\"}", "sha256");
	refused("@rfs {\"ev\":\"done\",\"frame\":1,\"sha256\":"
		"\"zz" "cdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789\"}",
		"sha256");
	refused("@rfs {\"ev\":\"progress\",\"frame\":1}", "fraction");
	refused("@rfs {\"ev\":\"progress\",\"frame\":1,\"fraction\":1.01}", "fraction");
	refused("@rfs {\"ev\":\"progress\",\"frame\":1,\"fraction\":-0.1}", "fraction");
	refused("@rfs {\"ev\":\"progress\",\"frame\":1,\"fraction\":0.5,\"step\":-1}", "step");
	refused("@rfs {\"ev\":\"progress\",\"frame\":1,\"fraction\":0.5,\"step\":0.5}", "step");
	refused("@rfs {\"ev\":\"progress\",\"frame\":1,\"fraction\":0.5,\"step\":1e18}", "step");
	refused("@rfs {\"ev\":\"fail\",\"frame\":1,\"msg\":42}", "msg");
	refused("@rfs {\"ev\":\"ready\",\"blender\":[\"3.4\"]}", "blender");
	refused("@rfs {\"ev\":\"ready\",\"devices\":\"OPTIX\"}", "devices");
	refused("@rfs {\"ev\":\"ready\",\"devices\":[1]}", "device");

	/* A NUL inside the line (lengths, not C strings). */
	{
		const char line[] = "@rfs {\"ev\":\"start\",\0\"frame\":1}";

		rc = proto_parse_line(line, sizeof(line) - 1, &m);
		CHECK(rc == -EINVAL && strstr(m.why, "NUL"), "NUL byte: rc %d '%s'", rc, m.why);
	}
	/* Not NUL-terminated: only len bytes are read. */
	{
		const char line[] = "@rfs {\"ev\":\"start\",\"frame\":1}GARBAGE";

		rc = proto_parse_line(line, sizeof(line) - 1 - 7, &m);
		CHECK(rc == 0 && m.ev == PROTO_START && m.frame == 1, "len bounds the line: rc %d", rc);
	}

	/* Ready's size and fps are hints: out of range is unknown, not bad. */
	rc = parse("@rfs {\"ev\":\"ready\",\"width\":65536,\"height\":65536,\"fps\":1e9}", &m);
	CHECK(rc == 0 && m.ev == PROTO_READY && m.width == 0 && m.height == 0 && m.fps == 0,
	      "huge ready: rc %d %dx%d fps %g", rc, m.width, m.height, m.fps);
	rc = parse("@rfs {\"ev\":\"ready\",\"width\":64,\"height\":-3,\"fps\":-1}", &m);
	CHECK(rc == 0 && m.width == 0 && m.height == 0 && m.fps == 0, "one side bad: %dx%d", m.width, m.height);
	rc = parse("@rfs {\"ev\":\"ready\",\"width\":64.5,\"height\":64}", &m);
	CHECK(rc == 0 && m.width == 0, "fractional width is unknown: %d", m.width);
	CHECK(!m.has_blender && !m.has_device && !m.ngpus && !m.gpu_names[0], "absent texts stay absent");

	/* Text is cleaned: a version that forges a status line stays one line. */
	rc = parse("@rfs {\"ev\":\"ready\",\"blender\":\"3.4.1\\nstate: idle\",\"device\":\"\\u001b[2J\","
		   "\"devices\":[\"OPTIX:a\\nb\"]}",
		   &m);
	CHECK(rc == 0 && !strchr(m.blender, '\n') && strstr(m.blender, "3.4.1"), "blender cleaned: '%s'",
	      m.blender);
	CHECK(!strchr(m.device, '\x1b'), "device cleaned: '%s'", m.device);
	CHECK(!strchr(m.gpu_names, '\n'), "gpu names cleaned: '%s'", m.gpu_names);
	rc = parse("@rfs {\"ev\":\"fail\",\"frame\":1,\"msg\":\"a\\r\\nerror: forged\"}", &m);
	CHECK(rc == 0 && !strchr(m.msg, '\n') && !strchr(m.msg, '\r'), "fail msg cleaned: '%s'", m.msg);

	/* Long text is cut, never overflows. */
	{
		size_t n = 100000;
		char *line = malloc(n + 64);

		if (line) {
			int k = sprintf(line, "@rfs {\"ev\":\"fail\",\"frame\":1,\"msg\":\"");

			memset(line + k, 'x', n);
			strcpy(line + k + n, "\"}");
			rc = parse(line, &m);
			CHECK(rc == 0 && strlen(m.msg) < sizeof(m.msg), "long msg cut: rc %d len %zu", rc,
			      strlen(m.msg));
			free(line);
		}
	}
	/* Many GPUs: capped. */
	{
		char line[8192];
		int k = sprintf(line, "@rfs {\"ev\":\"ready\",\"devices\":[");

		for (int i = 0; i < 200; i++)
			k += sprintf(line + k, "%s\"CUDA:GPU %d\"", i ? "," : "", i);
		sprintf(line + k, "]}");
		rc = parse(line, &m);
		CHECK(rc == 0 && m.ngpus == PROTO_MAX_GPUS && strlen(m.gpu_names) < sizeof(m.gpu_names),
		      "gpus capped: rc %d n %d", rc, m.ngpus);
	}
	/* Deep nesting does not crash. */
	{
		char line[20000];
		int k = sprintf(line, "@rfs {\"ev\":\"start\",\"frame\":1,\"x\":");

		for (int i = 0; i < 5000; i++)
			line[k++] = '[';
		line[k] = '\0';
		rc = parse(line, &m);
		CHECK(rc == -EINVAL, "deep nesting refused: rc %d", rc);
	}
	/* A bad line leaves nothing usable behind. */
	rc = parse("@rfs {\"ev\":\"done\",\"frame\":3,\"secs\":-4}", &m);
	CHECK(rc == -EINVAL && m.frame == 0 && m.secs == 0, "bad line cleared");
}

int main(void)
{
	test_good();
	test_hostile();
	return check_summary("proto");
}
