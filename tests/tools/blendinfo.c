/*
 * blendinfo: what renderfs reads from a .blend, one JSON object a line.
 *
 *   blendinfo FILE.blend...            the file, its scenes, its paths
 *   blendinfo -r FILE.blend            the same, then each linked library's,
 *                                      followed recursively (each file once)
 *   blendinfo -f STRUCT FIELD FILE     where a field lies (SDNA lookup)
 *   blendinfo -s FILE                  every struct name in the SDNA
 *
 * Lines: {"file":...,"saved_by":...}, {"scene":...}, {"path":...}; a file
 * that cannot be read gives {"file":...,"error":...,"errno":...} and exit
 * status 1.  A second consumer of backend/core/blendfile, for the tests
 * and for bug reports; it is built, not installed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/blendfile.h"

/* A JSON string: quotes, backslashes and control bytes escaped. */
static void put_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static const char *compression_name(enum blendfile_compression c)
{
	return c == BLENDFILE_GZIP ? "gzip" : c == BLENDFILE_ZSTD ? "zstd" : "plain";
}

static void print_file(const char *path, const struct blendfile *bf)
{
	printf("{\"file\":");
	put_str(path);
	printf(",\"saved_by\":\"%s\",\"version\":%d,\"subversion\":%d,\"build_hash\":", bf->saved_by,
	       bf->version, bf->subversion);
	put_str(bf->build_hash);
	printf(",\"compression\":\"%s\",\"ptr_size\":%d,\"big_endian\":%d,\"large_bhead\":%d,"
	       "\"blocks\":%llu,\"size\":%llu,\"saved_path\":",
	       compression_name(bf->compression), bf->ptr_size, bf->big_endian, bf->large_bhead,
	       (unsigned long long)bf->nblocks, (unsigned long long)bf->expanded_size);
	put_str(bf->saved_path ? bf->saved_path : "");
	printf(",\"scenes\":%zu,\"paths\":%zu}\n", bf->nscenes, bf->npaths);
	for (size_t i = 0; i < bf->nscenes; i++) {
		const struct blendfile_scene *s = &bf->scenes[i];

		printf("{\"scene\":");
		put_str(s->name);
		printf(",\"active\":%d,\"frame_start\":%d,\"frame_end\":%d,\"frame_step\":%d,\"fps\":%d,"
		       "\"fps_base\":%.6g,\"res_x\":%d,\"res_y\":%d,\"res_percent\":%d,\"engine\":",
		       s->active, s->frame_start, s->frame_end, s->frame_step, s->fps, s->fps_base, s->res_x,
		       s->res_y, s->res_percent);
		put_str(s->engine);
		printf(",\"samples\":%d,\"camera\":", s->samples);
		put_str(s->camera);
		printf("}\n");
	}
	for (size_t i = 0; i < bf->npaths; i++) {
		const struct blendfile_path *p = &bf->paths[i];

		printf("{\"path\":");
		put_str(p->path);
		printf(",\"kind\":\"%s\",\"source\":\"%s\",\"user\":", blendfile_kind_name(p->kind),
		       blendfile_source_name(p->source));
		put_str(p->user);
		printf(",\"packed\":%d,\"tiles\":[", p->packed);
		for (size_t t = 0; t < p->ntiles; t++)
			printf("%s%d", t ? "," : "", p->tiles[t]);
		printf("]}\n");
	}
}

static int open_one(const char *path, struct blendfile **bf)
{
	char err[256];
	int ret = blendfile_open(path, NULL, bf, err, sizeof(err));

	if (ret) {
		printf("{\"file\":");
		put_str(path);
		printf(",\"error\":");
		put_str(err);
		printf(",\"errno\":%d}\n", -ret);
	}
	return ret;
}

#define MAX_DEPTH 16
#define MAX_FILES 256

static char *seen[MAX_FILES];
static int nseen;

/* Print path and, recursively, the libraries it links; 0 or 1 on any failure. */
static int follow(const char *path, int depth)
{
	struct blendfile *bf;
	const char *libs[64];
	char abs[4096];
	size_t n;
	int status = 0;

	if (!realpath(path, abs))
		snprintf(abs, sizeof(abs), "%s", path);
	for (int i = 0; i < nseen; i++)
		if (!strcmp(seen[i], abs))
			return 0;
	if (nseen == MAX_FILES || depth > MAX_DEPTH) {
		printf("{\"file\":");
		put_str(path);
		printf(",\"error\":\"too many linked libraries\",\"errno\":%d}\n", EFBIG);
		return 1;
	}
	seen[nseen++] = strdup(abs);
	if (open_one(path, &bf))
		return 1;
	print_file(path, bf);
	n = blendfile_libraries(bf, libs, sizeof(libs) / sizeof(libs[0]));
	for (size_t i = 0; i < n && i < sizeof(libs) / sizeof(libs[0]); i++) {
		char lib[4096];

		if (blendfile_resolve(libs[i], path, lib, sizeof(lib)) || follow(lib, depth + 1))
			status = 1;
	}
	blendfile_free(bf);
	return status;
}

int main(int argc, char **argv)
{
	struct blendfile *bf;
	int status = 0;

	if (argc == 5 && !strcmp(argv[1], "-f")) {
		struct blendfile_field f;

		if (open_one(argv[4], &bf))
			return 1;
		if (blendfile_field(bf, argv[2], argv[3], &f)) {
			printf("{\"struct\":\"%s\",\"field\":\"%s\",\"error\":\"no such field\"}\n", argv[2],
			       argv[3]);
			status = 1;
		} else {
			printf(
			    "{\"struct\":\"%s\",\"field\":\"%s\",\"type\":\"%s\",\"offset\":%u,\"size\":%u,"
			    "\"elem_size\":%u,\"pointer\":%d,\"dims\":[",
			    argv[2], argv[3], f.type, f.offset, f.size, f.elem_size, f.is_pointer);
			for (int d = 0; d < f.ndims; d++)
				printf("%s%u", d ? "," : "", f.dims[d]);
			printf("]}\n");
		}
		blendfile_free(bf);
		return status;
	}
	if (argc == 3 && !strcmp(argv[1], "-s")) {
		if (open_one(argv[2], &bf))
			return 1;
		for (size_t i = 0; i < blendfile_nstructs(bf); i++)
			printf("%s\n", blendfile_struct_name(bf, i));
		blendfile_free(bf);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "-r")) {
		status = follow(argv[2], 0);
		for (int i = 0; i < nseen; i++)
			free(seen[i]);
		return status;
	}
	if (argc < 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: blendinfo FILE.blend...\n"
				"       blendinfo -r FILE.blend\n"
				"       blendinfo -f STRUCT FIELD FILE.blend\n"
				"       blendinfo -s FILE.blend\n");
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		if (open_one(argv[i], &bf)) {
			status = 1;
			continue;
		}
		print_file(argv[i], bf);
		blendfile_free(bf);
	}
	return status;
}
