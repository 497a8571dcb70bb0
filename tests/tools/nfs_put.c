/*
 * nfs_put: copy a local file into an NFS export with libnfs, then rename
 * it in place if asked -- how test_nfs.py drops a job the way a client
 * writes a temp name and renames it.  libnfs 4.0's own nfs-cp cannot
 * write more than about 1 KB in one NFSv4 WRITE (it fails with "ZDR
 * error: Failed to encode COMPOUND4args"), so this writes 1 KB at a time.
 *
 *   nfs_put 'nfs://HOST/EXPORT/DIR/NAME?version=4&nfsport=N' LOCAL [NEWNAME]
 *
 * NEWNAME is a name in the same directory.  Runs as the calling user
 * (AUTH_SYS with its uid and gid).  Exit 0, or 1 with the error printed.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nfsc/libnfs.h>

#define CHUNK 1024

static int put_file(struct nfs_context *nfs, const char *path, int in)
{
	struct nfsfh *fh = NULL;
	char buf[CHUNK];
	uint64_t off = 0;
	ssize_t n;

	if (nfs_create(nfs, path, O_WRONLY | O_CREAT | O_TRUNC, 0644, &fh) < 0) {
		fprintf(stderr, "nfs_put: create %s: %s\n", path, nfs_get_error(nfs));
		return -1;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0) {
		int w = nfs_pwrite(nfs, fh, off, (uint64_t)n, buf);

		if (w != n) {
			fprintf(stderr, "nfs_put: write %s at %llu: %s\n", path, (unsigned long long)off,
				w < 0 ? nfs_get_error(nfs) : "short write");
			nfs_close(nfs, fh);
			return -1;
		}
		off += (uint64_t)n;
	}
	if (n < 0) {
		perror("nfs_put: read");
		nfs_close(nfs, fh);
		return -1;
	}
	if (nfs_close(nfs, fh) < 0) {
		fprintf(stderr, "nfs_put: close %s: %s\n", path, nfs_get_error(nfs));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct nfs_context *nfs;
	struct nfs_url *url = NULL;
	char newpath[4096];
	int in, rc = 1;

	if (argc != 3 && argc != 4) {
		fprintf(stderr, "usage: nfs_put NFS-URL LOCAL [NEWNAME]\n");
		return 2;
	}
	in = open(argv[2], O_RDONLY);
	if (in < 0) {
		perror(argv[2]);
		return 1;
	}
	nfs = nfs_init_context();
	if (!nfs)
		goto out_close;
	url = nfs_parse_url_full(nfs, argv[1]);
	if (!url) {
		fprintf(stderr, "nfs_put: bad URL: %s\n", nfs_get_error(nfs));
		goto out_nfs;
	}
	if (nfs_mount(nfs, url->server, url->path) < 0) {
		fprintf(stderr, "nfs_put: mount %s:%s: %s\n", url->server, url->path, nfs_get_error(nfs));
		goto out_url;
	}
	if (put_file(nfs, url->file, in) < 0)
		goto out_url;
	if (argc == 4) {
		const char *slash = strrchr(url->file, '/');
		int dirlen = slash ? (int)(slash - url->file) : 0;

		if (strchr(argv[3], '/') ||
		    snprintf(newpath, sizeof(newpath), "%.*s/%s", dirlen, url->file, argv[3]) >= (int)sizeof(newpath)) {
			fprintf(stderr, "nfs_put: bad new name\n");
			goto out_url;
		}
		if (nfs_rename(nfs, url->file, newpath) < 0) {
			fprintf(stderr, "nfs_put: rename %s %s: %s\n", url->file, newpath, nfs_get_error(nfs));
			goto out_url;
		}
	}
	rc = 0;
out_url:
	nfs_destroy_url(url);
out_nfs:
	nfs_destroy_context(nfs);
out_close:
	close(in);
	return rc;
}
