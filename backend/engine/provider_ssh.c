/*
 * provider_ssh: the hosts listed as [ssh] node, one runner each, driven
 * with renderfs's key pair (provider_identity).  Before mounting it needs
 * at least one node and a usable key, and tells the user which public key
 * the nodes must accept.
 */
#include "engine/provider.h"
#include "nodes/keys.h"
#include "nodes/transport.h"
#include "store/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static int ssh_check(const struct config *cfg, const char *state_dir, char *secret, size_t secret_sz,
		     char *err, size_t errsz)
{
	char priv[4096], pub[4096];

	if (cfg->n_ssh_nodes == 0) {
		snprintf(err, errsz, "backend ssh needs at least one [ssh] node = HOST");
		return -EINVAL;
	}
	if (provider_identity(cfg, state_dir, NULL, priv, pub, sizeof(pub), err, errsz))
		return -EINVAL;
	fprintf(stderr, "renderfs: SSH nodes must accept the key %s (add it to their authorized_keys)\n",
		pub);
	return 0;
}

static int ssh_start(const struct provider_env *env, void **state)
{
	const struct config *cfg = env->cfg;
	char priv[4096], pub[4096], err[512];
	struct runner_set *rs;
	int rc;

	rc = provider_identity(cfg, env->state_dir, env->st, priv, pub, sizeof(pub), err, sizeof(err));
	if (rc) {
		fprintf(stderr, "renderfs: %s\n", err);
		return rc;
	}
	store_meta_set(env->st, "clore_status", "");
	rs = calloc(1, sizeof(*rs));
	if (!rs)
		return -ENOMEM;
	rs->node_free = ssh_node_free;
	for (int i = 0; i < cfg->n_ssh_nodes && i < CONFIG_MAX_SSH_NODES; i++) {
		struct ssh_opts o = {
		    .target = cfg->ssh_nodes[i],
		    .identity = priv,
		    .identity_pub = pub,
		    .check_hostkey = keys_check_hostkey,
		    .check_arg = (void *)env->state_dir,
		    .connect_timeout_ms = 10000,
		};
		struct tnode *node = ssh_node_new(&o);

		rc = node ? runner_set_add(rs, env, node, cfg->ssh_slots, cfg->ssh_blender) : -ENOMEM;
		if (rc) {
			runner_set_stop(rs);
			return rc;
		}
	}
	*state = rs;
	return 0;
}

const struct provider provider_ssh = {
    .name = "ssh",
    .check = ssh_check,
    .start = ssh_start,
    .stop = runner_set_stop,
};
