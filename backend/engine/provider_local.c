/*
 * provider_local: this machine as the only node, [local] workers slots of
 * [local] blender.  Nothing to check before mounting.
 */
#include "engine/provider.h"
#include "nodes/transport.h"
#include "store/store.h"

#include <errno.h>
#include <stdlib.h>

static int local_check(const struct config *cfg, const char *state_dir, char *secret, size_t secret_sz,
		       char *err, size_t errsz)
{
	return 0;
}

static int local_start(const struct provider_env *env, void **state)
{
	struct runner_set *rs = calloc(1, sizeof(*rs));
	struct tnode *node;
	int rc;

	if (!rs)
		return -ENOMEM;
	rs->node_free = local_node_free;
	node = local_node_new(env->state_dir);
	if (!node) {
		free(rs);
		return -ENOMEM;
	}
	rc = runner_set_add(rs, env, node, env->cfg->workers, env->cfg->blender);
	if (rc) {
		free(rs);
		return rc;
	}
	store_meta_set(env->st, "ssh_public_key", "");
	store_meta_set(env->st, "clore_status", "");
	*state = rs;
	return 0;
}

const struct provider provider_local = {
    .name = "local",
    .check = local_check,
    .start = local_start,
    .stop = runner_set_stop,
};
