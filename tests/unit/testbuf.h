/*
 * testbuf: a growing byte buffer for unit tests that build files byte by
 * byte (crafted images, crafted .blend files), and gzip of one.  Any
 * allocation or zlib failure ends the test program (exit 2): a test that
 * cannot build its input has nothing to say.  Header-only: each test is
 * one program.
 */
#ifndef RENDERFS_TESTBUF_H
#define RENDERFS_TESTBUF_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

struct buf {
	unsigned char *p;
	size_t n, cap;
};

static inline void put(struct buf *b, const void *data, size_t n)
{
	if (b->n + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;

		while (cap < b->n + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p) {
			perror("realloc");
			exit(2);
		}
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->n, data, n);
	b->n += n;
}

/* n bytes of c. */
static inline void put_fill(struct buf *b, int c, size_t n)
{
	unsigned char chunk[256];

	memset(chunk, c, sizeof(chunk));
	while (n) {
		size_t k = n < sizeof(chunk) ? n : sizeof(chunk);

		put(b, chunk, k);
		n -= k;
	}
}

/* in, gzip-compressed, appended to out. */
static inline void gzip_buf(const struct buf *in, struct buf *out)
{
	z_stream z;
	unsigned char tmp[4096];
	int ret;

	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		exit(2);
	z.next_in = in->p;
	z.avail_in = (uInt)in->n;
	do {
		z.next_out = tmp;
		z.avail_out = sizeof(tmp);
		ret = deflate(&z, Z_FINISH);
		put(out, tmp, sizeof(tmp) - z.avail_out);
	} while (ret == Z_OK);
	deflateEnd(&z);
	if (ret != Z_STREAM_END)
		exit(2);
}

#endif
