/*
 * memfile: the fuzz input as a file, for parsers that take a path or a
 * descriptor.  One memfd per process, rewritten for each input; its path
 * is /proc/self/fd/N, which open() reopens as the same regular file.  No
 * disk is touched.
 */
#ifndef RENDERFS_FUZZ_MEMFILE_H
#define RENDERFS_FUZZ_MEMFILE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

struct memfile {
	int fd;
	char path[64];
};

/* The file at slot (0 or 1) now holds data[0..size); aborts on failure. */
static inline struct memfile *memfile_put(int slot, const void *data, size_t size)
{
	static struct memfile mf[2] = {{-1, ""}, {-1, ""}};
	struct memfile *m = &mf[slot];
	size_t off = 0;

	if (m->fd < 0) {
		m->fd = memfd_create("fuzz-input", MFD_CLOEXEC);
		if (m->fd < 0) {
			perror("memfd_create");
			abort();
		}
		snprintf(m->path, sizeof(m->path), "/proc/self/fd/%d", m->fd);
	}
	if (ftruncate(m->fd, 0)) {
		perror("ftruncate");
		abort();
	}
	while (off < size) {
		ssize_t n = pwrite(m->fd, (const char *)data + off, size - off, (off_t)off);

		if (n <= 0) {
			perror("pwrite");
			abort();
		}
		off += (size_t)n;
	}
	return m;
}

#endif
