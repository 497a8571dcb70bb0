/*
 * keys: the SSH identity renderfs authenticates with -- the configured
 * [ssh] identity, or an ed25519 pair renderfs makes once in its state
 * directory (STATE/ssh/id_ed25519, with the public half beside it, which is
 * what a user adds to each node's authorized_keys) -- and the pinning of
 * node host keys on first contact.
 */
#ifndef RENDERFS_KEYS_H
#define RENDERFS_KEYS_H

#include <stddef.h>

/* Find or make the identity.  configured may be NULL or "~/..." (expanded
 * with $HOME).  Fills priv and pub with paths; on error -errno and a
 * one-line reason in err. */
int keys_identity(const char *state_dir, const char *configured, char *priv, size_t privsz, char *pub,
		  size_t pubsz, char *err, size_t errsz);

/*
 * Host key check for the SSH transport (struct ssh_opts.check_hostkey):
 * arg is the state directory.  The first fingerprint seen for a node is
 * pinned in the store; a different one later is refused, and the reason
 * (both fingerprints, and how to forget the pin) is written into the
 * node's error line.
 */
int keys_check_hostkey(void *arg, const char *node, const char *fingerprint);

#endif
