/*
 * replay: a fuzz target without libFuzzer.  Feeds every file named on the
 * command line (or found in a folder named there) to the target's
 * LLVMFuzzerTestOneInput once, in name order.  tests/meson.build links it
 * with each target and runs it on the target's seeds, regression inputs
 * included, in every build: a parser change that breaks one of them, or a
 * target that no longer compiles, fails the ordinary unit tests.
 *
 * Exit 0 when every input ran (a broken check in the target aborts), 1 when
 * a file could not be read or no input was found.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t n = 0, cap = 0;

	if (!f) {
		perror(path);
		return -1;
	}
	for (;;) {
		if (n == cap) {
			uint8_t *p = realloc(buf, cap ? cap * 2 : 65536);

			if (!p) {
				fclose(f);
				free(buf);
				fprintf(stderr, "%s: out of memory\n", path);
				return -1;
			}
			buf = p;
			cap = cap ? cap * 2 : 65536;
		}
		size_t got = fread(buf + n, 1, cap - n, f);

		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		perror(path);
		fclose(f);
		free(buf);
		return -1;
	}
	fclose(f);
	/* an exact-size copy, so that ASan sees a read past the input */
	uint8_t *exact = malloc(n ? n : 1);

	if (!exact) {
		free(buf);
		return -1;
	}
	memcpy(exact, buf, n);
	free(buf);
	LLVMFuzzerTestOneInput(exact, n);
	free(exact);
	return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

int main(int argc, char **argv)
{
	int inputs = 0, bad = 0;

	for (int i = 1; i < argc; i++) {
		struct dirent **list;
		struct stat st;
		int n;

		if (stat(argv[i], &st) || !S_ISDIR(st.st_mode)) {
			bad += run_file(argv[i]) < 0;
			inputs++;
			continue;
		}
		n = scandir(argv[i], &list, NULL, by_name);
		if (n < 0) {
			perror(argv[i]);
			bad++;
			continue;
		}
		for (int k = 0; k < n; k++) {
			char path[4096];

			if (list[k]->d_name[0] != '.') {
				snprintf(path, sizeof(path), "%s/%s", argv[i], list[k]->d_name);
				bad += run_file(path) < 0;
				inputs++;
			}
			free(list[k]);
		}
		free(list);
	}
	printf("%d inputs replayed, %d unreadable\n", inputs, bad);
	return bad || !inputs;
}
