/*
 * install: blobs and the worker script on a node (see install.h).  Every
 * argv word is ours: fixed command names and paths made of the node's
 * directory, slot numbers and hashes.
 */
#include "sched/install.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

void install_init(struct install *in, struct tnode *node, int is_local)
{
	memset(in, 0, sizeof(*in));
	in->node = node;
	in->is_local = is_local;
}

void install_forget(struct install *in)
{
	in->nknown = 0;
}

int install_fresh_dir(struct install *in, const char *path)
{
	char *rm[] = {"rm", "-rf", "--", (char *)path, NULL};
	char *mk[] = {"mkdir", "-p", "--", (char *)path, NULL};
	int status, rc;

	if (in->is_local) {
		util_rmtree(path);
		return util_mkdirs(path);
	}
	rc = in->node->ops->run(in->node, rm, NULL, 0, &status, 30000);
	if (!rc)
		rc = in->node->ops->run(in->node, mk, NULL, 0, &status, 30000);
	if (!rc && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		rc = -EACCES;
	return rc;
}

/* The SHA-256 of a file on the node, by running sha256sum there. */
static int node_sha256(struct install *in, const char *path, char hex[65])
{
	char *argv[] = {"sha256sum", "--", (char *)path, NULL};
	char out[256];
	int status, rc;

	rc = in->node->ops->run(in->node, argv, out, sizeof(out), &status, 300000);
	if (rc)
		return rc;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || strlen(out) < 64)
		return -ENOENT;
	memcpy(hex, out, 64);
	hex[64] = '\0';
	return 0;
}

/* An interrupted upload leaves only a .part file (the transport's put),
 * which the next attempt replaces. */
int install_blob(struct install *in, const struct store *st, const char *sha, char *remote, size_t sz)
{
	char local[4096], got[65];
	int rc;

	snprintf(remote, sz, "%s/blobs/%s.blend", in->node->home, sha);
	if (in->is_local)
		return 0;
	for (int i = 0; i < in->nknown; i++)
		if (!strcmp(in->known[i], sha))
			return 0;
	rc = node_sha256(in, remote, got);
	if (rc || strcmp(got, sha)) {
		store_path_blob(st, sha, local, sizeof(local));
		rc = in->node->ops->put(in->node, local, remote);
		if (rc)
			return rc;
		rc = node_sha256(in, remote, got);
		if (rc)
			return rc;
		if (strcmp(got, sha))
			return -EIO;
	}
	if (in->nknown == INSTALL_KNOWN_BLOBS) {
		memmove(in->known[0], in->known[1], sizeof(in->known[0]) * (INSTALL_KNOWN_BLOBS - 1));
		in->nknown--;
	}
	snprintf(in->known[in->nknown++], sizeof(in->known[0]), "%s", sha);
	return 0;
}

int install_worker(struct install *in, const char *local, char *remote, size_t sz)
{
	char sha[65], got[65];
	int rc;

	if (in->is_local) {
		snprintf(remote, sz, "%s", local);
		return 0;
	}
	rc = util_sha256_file(local, sha);
	if (rc)
		return rc;
	snprintf(remote, sz, "%s/worker-%.16s.py", in->node->home, sha);
	if (node_sha256(in, remote, got) == 0 && !strcmp(got, sha))
		return 0;
	return in->node->ops->put(in->node, local, remote);
}
