/*
 * provision: the clore backend's provider.  On its own thread it rents
 * servers from the Clore marketplace while jobs have frames to render,
 * hands each server that comes up to a runner (driven over SSH like any
 * SSH node), notices orders that end (outbid, expired, offline), releases
 * idle nodes and everything at unmount, keeps to the budgets, and at start
 * reconciles the store with the account's orders.
 *
 * The store is the truth: each rental is a row of `rentals`, written
 * before create_order (the intent: server and time), so a crash at any
 * moment leaves a row that the next mount can match to the order Clore
 * made.  Orders renderfs did not make are never cancelled or changed.
 *
 * Ownership: provision_start() returns a provisioner owned by the caller,
 * stopped exactly once with provision_stop(), which stops its runners and
 * cancels every order it holds unless [clore] keep_at_unmount is set.  The
 * API key is copied into the client and never written anywhere.
 */
#ifndef RENDERFS_PROVISION_H
#define RENDERFS_PROVISION_H

#include "core/config.h"

struct provision;

/* The image ordered when [clore] image is not set: Clore's own stock
 * Ubuntu image, whose entrypoint puts the order's ssh_key in root's
 * authorized_keys and starts sshd.  Blender comes from blender = auto.
 * Why this one: docs/modules/provision.md. */
#define PROVISION_DEFAULT_IMAGE "cloreai/jupyter:ubuntu24.04-v2"

/* identity/identity_pub: the SSH key pair renderfs logs in with (paths);
 * the public half's text is what each order's ssh_key carries. */
int provision_start(const char *state_dir, const struct config *cfg, const char *api_key,
		    const char *identity, const char *identity_pub, const char *worker_path,
		    struct provision **out);
void provision_stop(struct provision *p);

#endif
