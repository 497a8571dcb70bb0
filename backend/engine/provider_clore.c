/*
 * provider_clore: servers rented on the Clore.ai marketplace
 * (clore/provision.c does the renting, on its own thread, and drives each
 * server with an SSH runner).  Before mounting it reads the API key (file
 * or CLORE_API_KEY, which is then dropped so no child inherits it), and
 * refuses a bad api_url, or no image where blender is not auto, without
 * sending any request.
 */
#include "engine/provider.h"
#include "clore/clore.h"
#include "clore/provision.h"
#include "core/util.h"
#include "store/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int clore_check(const struct config *cfg, const char *state_dir, char *secret, size_t secret_sz,
		       char *err, size_t errsz)
{
	char priv[4096], pub[4096], why[512];
	struct clore_client *cc;

	if (clore_load_key(cfg->clore_api_key_file ? cfg->clore_api_key_file : "~/.config/renderfs/clore.key",
			   secret, secret_sz, err, errsz))
		return -EINVAL;
	util_env_wipe("CLORE_API_KEY"); /* unset, and its bytes gone from /proc/PID/environ */
	/* A bad api_url (plain http to a remote host) stops the mount here,
	 * not after it. */
	cc = clore_new(cfg->clore_api_url, secret, why, sizeof(why));
	if (!cc) {
		snprintf(err, errsz, "[clore] api_url: %s", why);
		return -EINVAL;
	}
	clore_free(cc);
	/* Without an image of the user's own the stock one has no Blender:
	 * only blender = auto (the default) can install one there. */
	if ((!cfg->clore_image || !*cfg->clore_image) && strcmp(cfg->clore_blender, CONFIG_BLENDER_AUTO)) {
		snprintf(err, errsz,
			 "[clore] blender = %.64s needs [clore] image = a container image with that Blender "
			 "and sshd",
			 cfg->clore_blender);
		return -EINVAL;
	}
	if (provider_identity(cfg, state_dir, NULL, priv, pub, sizeof(pub), err, errsz))
		return -EINVAL;
	return 0;
}

static int clore_start(const struct provider_env *env, void **state)
{
	char priv[4096], pub[4096], err[512];
	struct provision *p;
	int rc;

	rc = provider_identity(env->cfg, env->state_dir, env->st, priv, pub, sizeof(pub), err, sizeof(err));
	if (rc) {
		fprintf(stderr, "renderfs: %s\n", err);
		return rc;
	}
	store_meta_set(env->st, "clore_status", "starting");
	rc = provision_start(env->state_dir, env->cfg, env->secret, priv, pub, env->worker_path, &p);
	if (rc)
		return rc;
	*state = p;
	return 0;
}

static void clore_stop(void *state)
{
	provision_stop(state);
}

/* Rented nodes come and go: the provider rents more while frames wait,
 * or says in clore_status why it cannot. */
static int clore_job_waits(struct store *st, int64_t job, char *msg, size_t sz)
{
	char why[600] = "";

	store_meta_get(st, "clore_status", why, sizeof(why));
	snprintf(msg, sz, "waiting for a node: %s",
		 !why[0] || !strncmp(why, "ok", 2) ? "renting servers on Clore" : why);
	return 1;
}

const struct provider provider_clore = {
    .name = "clore",
    .check = clore_check,
    .start = clore_start,
    .stop = clore_stop,
    .job_waits = clore_job_waits,
};
