/*
 * keys: see keys.h.  ssh-keygen (OpenSSH) makes the key pair: it writes
 * the OpenSSH private key format that libssh2 reads, and it is already a
 * dependency of every machine that talks to SSH nodes.
 */
#include "nodes/keys.h"
#include "store/store.h"
#include "store/hostkeys.h"
#include "nodes/transport.h"
#include "core/util.h"

#include <errno.h>
#include <spawn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int expand_home(const char *path, char *out, size_t sz)
{
	const char *home = getenv("HOME");

	if (path[0] == '~' && path[1] == '/') {
		if (!home)
			return -ENOENT;
		snprintf(out, sz, "%s%s", home, path + 1);
	} else {
		snprintf(out, sz, "%s", path);
	}
	return 0;
}

static int make_pair(const char *priv, char *err, size_t errsz)
{
	char *argv[] = {"ssh-keygen", "-q",       "-t", "ed25519",    "-N", "",
			"-C",         "renderfs", "-f", (char *)priv, NULL};
	pid_t pid;
	int status, rc;

	rc = posix_spawnp(&pid, "ssh-keygen", NULL, NULL, argv, environ);
	if (rc) {
		snprintf(err, errsz, "cannot run ssh-keygen to make %s: %s", priv, strerror(rc));
		return -rc;
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(err, errsz, "ssh-keygen failed to make %s", priv);
		return -EIO;
	}
	return 0;
}

int keys_identity(const char *state_dir, const char *configured, char *priv, size_t privsz, char *pub,
		  size_t pubsz, char *err, size_t errsz)
{
	char dir[4096];
	int rc;

	if (configured && *configured) {
		if (expand_home(configured, priv, privsz)) {
			snprintf(err, errsz, "cannot expand %s: HOME is not set", configured);
			return -ENOENT;
		}
		snprintf(pub, pubsz, "%s.pub", priv);
		if (access(priv, R_OK) < 0 || access(pub, R_OK) < 0) {
			rc = -errno;
			snprintf(err, errsz, "[ssh] identity %s: cannot read it and its .pub: %s", priv,
				 strerror(errno));
			return rc;
		}
		return 0;
	}
	snprintf(dir, sizeof(dir), "%s/ssh", state_dir);
	rc = util_mkdirs(dir);
	if (rc) {
		snprintf(err, errsz, "cannot create %s: %s", dir, strerror(-rc));
		return rc;
	}
	snprintf(priv, privsz, "%s/id_ed25519", dir);
	snprintf(pub, pubsz, "%s/id_ed25519.pub", dir);
	if (access(priv, R_OK) == 0 && access(pub, R_OK) == 0)
		return 0;
	unlink(priv);
	unlink(pub);
	return make_pair(priv, err, errsz);
}

int keys_check_hostkey(void *arg, const char *node, const char *fingerprint)
{
	/* The transport hands us its tnode's own name field (see ssh.c). */
	struct tnode *n = (struct tnode *)(void *)((char *)node - offsetof(struct tnode, name));
	struct store *st;
	char pinned[128] = "", forget[400];
	int rc;

	rc = store_open((const char *)arg, &st);
	if (rc)
		return rc;
	rc = store_hostkey_get(st, node, pinned, sizeof(pinned));
	if (rc == -ENOENT) {
		rc = store_hostkey_pin(st, node, fingerprint, util_now_ms());
		goto out;
	}
	if (rc)
		goto out;
	if (!strcmp(pinned, fingerprint)) {
		rc = 0;
		goto out;
	}
	store_hostkey_forget_command(node, forget, sizeof(forget));
	snprintf(n->error, sizeof(n->error),
		 "host key changed: pinned %s, the node now shows %s; refusing it (if it was reinstalled, "
		 "forget the pin: %s)",
		 pinned, fingerprint, forget);
	rc = -EPERM;
out:
	store_close(st);
	return rc;
}
