/*
 * provider: where a mount's nodes come from.  One const table row per
 * backend name ([renderfs] backend): local (this machine), ssh (the
 * configured hosts), clore (servers rented on the marketplace).  A new
 * provider is one new file in this folder plus one row in provider.c.
 *
 * Life of a provider, all on the caller's thread:
 *
 *   check   before mounting: refuses a configuration it cannot run with
 *           (one line in err), may read a secret into the caller's
 *           buffer, and tells the user what they must do (stderr);
 *   start   from engine_start(): starts whatever threads it needs (one
 *           runner per node, or a provisioning thread) and returns its
 *           state, owned by the provider until stop;
 *   stop    from engine_stop(): frames in flight go back as interrupted,
 *           every thread is joined, the state is freed.
 *
 * job_waits (may be NULL): a job has queued frames and no node that may
 * take them.  A provider whose nodes come and go (rented) returns 1 with
 * the line the job should show while it waits; NULL or 0 lets the engine
 * decide from the nodes it sees (wait while some are away, else fail).
 */
#ifndef RENDERFS_PROVIDER_H
#define RENDERFS_PROVIDER_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

struct store;

/* What start() is given; every pointer is the caller's and outlives the
 * provider's state, except secret, which is wiped once start returns. */
struct provider_env {
	const char *state_dir;
	const struct config *cfg;
	struct store *st; /* the engine's connection; only during start */
	const char *worker_path;
	const char *secret; /* what check() read, or NULL */
};

struct provider {
	const char *name;
	int (*check)(const struct config *cfg, const char *state_dir, char *secret, size_t secret_sz,
		     char *err, size_t errsz);
	int (*start)(const struct provider_env *env, void **state);
	void (*stop)(void *state);
	int (*job_waits)(struct store *st, int64_t job, char *msg, size_t sz);
};

/* The row for name, or NULL (then provider_names lists the known ones). */
const struct provider *provider_find(const char *name);
/* "local, ssh, clore" into buf. */
void provider_names(char *buf, size_t sz);

/* ---- shared by the rows (provider.c) ---- */

/* The SSH key pair nodes are driven with, made in the state dir when
 * [ssh] identity is not set; priv and pub get paths (sz bytes each).  It
 * is recorded in the store (MOUNT/status shows ssh_key:). */
int provider_identity(const struct config *cfg, const char *state_dir, struct store *st, char *priv,
		      char *pub, size_t sz, char *err, size_t errsz);

/* A fixed set of runners, one per node, that a provider starts and stops
 * together.  node_free frees a node its runner no longer drives. */
struct tnode;
struct runner;
struct runner_set {
	int n;
	struct runner *runners[CONFIG_MAX_SSH_NODES];
	struct tnode *nodes[CONFIG_MAX_SSH_NODES]; /* runners[i] drives nodes[i] */
	void (*node_free)(struct tnode *);
};
/* Starts a runner for node; on failure the node is freed.  0 or -errno. */
int runner_set_add(struct runner_set *rs, const struct provider_env *env, struct tnode *node, int nslots,
		   const char *blender);
/* Stops every runner together, frees the nodes and rs itself. */
void runner_set_stop(void *rs);

#endif
