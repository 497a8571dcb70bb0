/*
 * main: the command line, the configuration and the state directory are
 * checked before anything is mounted, so a mistake costs one clear line on
 * stderr and a non-zero exit, never a half-working mount.  Then the
 * session is mounted, the engine and the notifier start (after the daemon
 * has forked, since threads do not survive fork) and the request loop runs
 * until unmount or a signal.
 */
#include "fs.h"
#include "core/config.h"
#include "engine/engine.h"
#include "engine/provider.h"
#include "core/util.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define MAX_OVERRIDES 128

struct cli {
	char *config;
	char *state;
	char *backend;
	char *overrides[MAX_OVERRIDES];
	int n_overrides;
	char *nonopt[2]; /* [source] mountpoint */
	int n_nonopt;
	int show_help, show_version;
	int bad;
};

enum { KEY_HELP, KEY_VERSION };

static const struct fuse_opt cli_opts[] = {{"config=%s", offsetof(struct cli, config), 0},
					   {"state=%s", offsetof(struct cli, state), 0},
					   {"backend=%s", offsetof(struct cli, backend), 0},
					   FUSE_OPT_KEY("-h", KEY_HELP),
					   FUSE_OPT_KEY("--help", KEY_HELP),
					   FUSE_OPT_KEY("-V", KEY_VERSION),
					   FUSE_OPT_KEY("--version", KEY_VERSION),
					   FUSE_OPT_END};

static const char *const config_sections[] = {"renderfs", "local", "ssh", "clore"};

static int cli_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct cli *c = data;
	const char *dot, *eq;

	(void)outargs;
	if (key == KEY_HELP) {
		c->show_help = 1;
		return 0;
	}
	if (key == KEY_VERSION) {
		c->show_version = 1;
		return 0;
	}
	if (key == FUSE_OPT_KEY_NONOPT) {
		/* mount.fuse3 (an fstab line of type fuse.renderfs) passes the
		 * source field first, then the mount point. */
		if (c->n_nonopt == 2) {
			c->bad = 1;
			return -1;
		}
		c->nonopt[c->n_nonopt++] = strdup(arg);
		return 0;
	}
	if (key != FUSE_OPT_KEY_OPT)
		return 1;
	/* "section.key=value" belongs to the configuration, not to FUSE. */
	dot = strchr(arg, '.');
	eq = strchr(arg, '=');
	if (dot && eq && dot < eq) {
		for (size_t i = 0; i < ARRAY_SIZE(config_sections); i++) {
			size_t n = strlen(config_sections[i]);

			if ((size_t)(dot - arg) == n && !strncmp(arg, config_sections[i], n)) {
				if (c->n_overrides == MAX_OVERRIDES) {
					c->bad = 1;
					return -1;
				}
				c->overrides[c->n_overrides++] = strdup(arg);
				return 0;
			}
		}
	}
	return 1;
}

static void usage(const char *prog)
{
	printf("usage: %s [-f] [-d] [-o OPT[,OPT...]] [SOURCE] MOUNTPOINT\n"
	       "       %s --help | --version\n\n"
	       "renderfs renders Blender scenes dropped into MOUNTPOINT/queue/.\n\n"
	       "renderfs options:\n"
	       "    -o config=FILE         configuration file\n"
	       "                           (default $XDG_CONFIG_HOME/renderfs/renderfs.conf,\n"
	       "                            else /etc/renderfs.conf)\n"
	       "    -o state=DIR           database, spool and frames\n"
	       "                           (default $XDG_DATA_HOME/renderfs)\n"
	       "    -o backend=NAME        local, ssh or clore (default local)\n"
	       "    -o SECTION.KEY=VALUE   any configuration setting, e.g. local.workers=2\n\n"
	       "FUSE options:\n",
	       prog, prog);
	fuse_cmdline_help();
	fuse_lowlevel_help();
}

static char *default_path(const char *xdg_var, const char *home_rel, const char *leaf)
{
	const char *xdg = getenv(xdg_var), *home = getenv("HOME");
	char buf[4096];

	if (xdg && *xdg)
		snprintf(buf, sizeof(buf), "%s/%s", xdg, leaf);
	else if (home && *home)
		snprintf(buf, sizeof(buf), "%s/%s/%s", home, home_rel, leaf);
	else
		return NULL;
	return strdup(buf);
}

static char *absolute(const char *path)
{
	char cwd[4096], buf[8192];

	if (path[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return strdup(path);
	snprintf(buf, sizeof(buf), "%s/%s", cwd, path);
	return strdup(buf);
}

/* Make the state directory and its parts; take its lock so two mounts
 * never share one database and spool. */
static int state_prepare(const char *dir, int *lock_fd)
{
	static const char *const subs[] = {"spool", "blobs", "jobs", "work"};
	char path[4200];
	int rc;

	rc = util_mkdirs(dir);
	if (rc) {
		fprintf(stderr, "renderfs: cannot create state directory %s: %s\n", dir, strerror(-rc));
		return rc;
	}
	for (size_t i = 0; i < ARRAY_SIZE(subs); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, subs[i]);
		rc = util_mkdirs(path);
		if (rc) {
			fprintf(stderr, "renderfs: cannot create %s: %s\n", path, strerror(-rc));
			return rc;
		}
	}
	snprintf(path, sizeof(path), "%s/lock", dir);
	*lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (*lock_fd < 0) {
		rc = -errno;
		fprintf(stderr, "renderfs: cannot open %s: %s\n", path, strerror(errno));
		return rc;
	}
	if (flock(*lock_fd, LOCK_EX | LOCK_NB) < 0) {
		fprintf(stderr, "renderfs: state directory %s is in use by another renderfs\n", dir);
		return -EBUSY;
	}
	return 0;
}

/*
 * Frames are read sequentially and in whole: let the kernel read ahead 1
 * MiB at a time, which is also the request size renderfs is offered.  At
 * INIT the kernel takes the smaller of the mount's bdi setting (128 KiB by
 * default) and the daemon's max_readahead, so the bdi is raised first,
 * here, between mount and INIT.  The mount's device number comes from
 * /proc/self/mountinfo (a stat() of the mount point would wait for INIT).
 * Best effort: without root, sysfs refuses and reads stay at 128 KiB.
 */
static void raise_readahead(const char *mountpoint)
{
	char real[PATH_MAX], line[8192], dev[32] = "", path[96];
	FILE *f;

	if (!realpath(mountpoint, real) || !(f = fopen("/proc/self/mountinfo", "re")))
		return;
	while (fgets(line, sizeof(line), f)) {
		char mdev[32], mpath[PATH_MAX], *dash = strstr(line, " - ");

		/* id parent major:minor root mount-point ... - fstype ... */
		if (!dash || sscanf(line, "%*s %*s %31s %*s %4095s", mdev, mpath) != 2)
			continue;
		if (!strcmp(mpath, real) && !strncmp(dash + 3, "fuse.renderfs ", 14))
			snprintf(dev, sizeof(dev), "%s", mdev); /* the last one: ours */
	}
	fclose(f);
	if (!dev[0] || strspn(dev, "0123456789:") != strlen(dev))
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
	f = fopen(path, "we");
	if (f) {
		fputs("1024\n", f);
		fclose(f);
	}
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts opts = {0};
	struct cli cli = {0};
	struct config cfg;
	struct rfs rfs = {0};
	struct engine *engine = NULL;
	struct fuse_session *se;
	struct store *st;
	char err[512], *config_file = NULL;
	/* A provider's secret (the Clore API key); wiped after the engine
	 * starts and on every way out.  Static: not on a stack that later
	 * calls would leave it in. */
	static char secret[512];
	const struct provider *prov;
	int ret = 1, lock_fd = -1, rc;

	if (fuse_opt_parse(&args, &cli, cli_opts, cli_proc) < 0 || cli.bad) {
		fprintf(stderr, "renderfs: bad options (see renderfs --help)\n");
		return 1;
	}
	if (cli.show_version) {
		printf("renderfs %s\n", "0.1.0");
		printf("FUSE library version %s\n", fuse_pkgversion());
		ret = 0;
		goto out_free_args;
	}
	if (cli.show_help) {
		usage(argv[0]);
		ret = 0;
		goto out_free_args;
	}
	if (cli.n_nonopt)
		fuse_opt_add_arg(&args, cli.nonopt[cli.n_nonopt - 1]);
	if (fuse_parse_cmdline(&args, &opts) != 0) {
		fprintf(stderr, "renderfs: bad options (see renderfs --help)\n");
		goto out_free_args;
	}
	if (!opts.mountpoint) {
		fprintf(stderr, "renderfs: no mount point given (see renderfs --help)\n");
		goto out_free_args;
	}

	/* Configuration: the file, then -o section.key=value, then backend=. */
	if (cli.config) {
		config_file = absolute(cli.config);
	} else {
		config_file = default_path("XDG_CONFIG_HOME", ".config", "renderfs/renderfs.conf");
		if (!config_file || access(config_file, F_OK) != 0) {
			free(config_file);
			config_file =
			    access("/etc/renderfs.conf", F_OK) == 0 ? strdup("/etc/renderfs.conf") : NULL;
		}
	}
	if (cli.backend) {
		char *o = malloc(strlen(cli.backend) + 20);

		if (!o || cli.n_overrides == MAX_OVERRIDES)
			goto out_free_args;
		sprintf(o, "renderfs.backend=%s", cli.backend);
		cli.overrides[cli.n_overrides++] = o;
	}
	rc = config_load(&cfg, config_file, cli.config != NULL, cli.overrides, cli.n_overrides, err,
			 sizeof(err));
	if (rc) {
		fprintf(stderr, "renderfs: %s\n", err);
		goto out_free_cfg;
	}
	prov = provider_find(cfg.backend);
	if (!prov) {
		char names[128];

		provider_names(names, sizeof(names));
		fprintf(stderr, "renderfs: unknown backend '%.64s' (one of %s)\n", cfg.backend, names);
		goto out_free_cfg;
	}

	rfs.state_dir =
	    cli.state ? absolute(cli.state) : default_path("XDG_DATA_HOME", ".local/share", "renderfs");
	if (!rfs.state_dir) {
		fprintf(stderr, "renderfs: no state directory: give -o state=DIR (HOME is not set)\n");
		goto out_free_cfg;
	}
	if (state_prepare(rfs.state_dir, &lock_fd))
		goto out_free_cfg;
	rc = store_open(rfs.state_dir, &st);
	if (rc) {
		fprintf(stderr, "renderfs: cannot open the database in %s: %s\n", rfs.state_dir,
			strerror(-rc));
		goto out_free_cfg;
	}
	rc = store_recover(st, util_now_ms());
	store_close(st);
	if (rc < 0) {
		fprintf(stderr, "renderfs: cannot recover the database in %s: %s\n", rfs.state_dir,
			strerror(-rc));
		goto out_free_cfg;
	}
	/* The provider's own checks (a key file, its nodes, the SSH key they
	 * must accept) stop the mount with one line before anything is
	 * mounted; a secret it reads goes to the engine and is then wiped. */
	if (prov->check(&cfg, rfs.state_dir, secret, sizeof(secret), err, sizeof(err))) {
		fprintf(stderr, "renderfs: %s\n", err);
		goto out_free_cfg;
	}
	if (pool_init(rfs.state_dir))
		goto out_free_cfg;

	fuse_opt_add_arg(&args, "-ofsname=renderfs,subtype=renderfs");
	se = fuse_session_new(&args, &rfs_ops, sizeof(rfs_ops), &rfs);
	if (!se)
		goto out_pool;
	rfs.se = se;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_destroy;
	if (fuse_session_mount(se, opts.mountpoint) != 0) {
		fprintf(stderr, "renderfs: cannot mount on %s\n", opts.mountpoint);
		goto out_remove_handlers;
	}
	raise_readahead(opts.mountpoint);
	fuse_daemonize(opts.foreground);

	rc = engine_start(rfs.state_dir, &cfg, secret[0] ? secret : NULL, &engine);
	explicit_bzero(secret, sizeof(secret));
	if (rc) {
		fprintf(stderr, "renderfs: cannot start the engine: %s\n", strerror(-rc));
		goto out_unmount;
	}
	rc = notify_start(se, rfs.state_dir);
	if (rc)
		fprintf(stderr, "renderfs: no change notifier (%s); listings refresh on their own\n",
			strerror(-rc));
	if (opts.singlethread) {
		ret = fuse_session_loop(se);
	} else {
		struct fuse_loop_config *lc = fuse_loop_cfg_create();

		if (!lc)
			goto out_stop;
		fuse_loop_cfg_set_clone_fd(lc, opts.clone_fd);
		/* Only limits that were given: libfuse 3.14 complains about its
		 * own "unlimited" default when it is passed back to it. */
		if (opts.max_idle_threads != UINT_MAX)
			fuse_loop_cfg_set_idle_threads(lc, opts.max_idle_threads);
		if (opts.max_threads > 0 && opts.max_threads <= 100000)
			fuse_loop_cfg_set_max_threads(lc, opts.max_threads);
		ret = fuse_session_loop_mt(se, lc);
		fuse_loop_cfg_destroy(lc);
	}
out_stop:
	notify_stop();
	engine_stop(engine);
out_unmount:
	fuse_session_unmount(se);
out_remove_handlers:
	fuse_remove_signal_handlers(se);
out_destroy:
	fuse_session_destroy(se);
out_pool:
	pool_fini();
out_free_cfg:
	explicit_bzero(secret, sizeof(secret));
	config_free(&cfg);
out_free_args:
	if (lock_fd >= 0)
		close(lock_fd);
	free(rfs.state_dir);
	free(config_file);
	free(opts.mountpoint);
	for (int i = 0; i < cli.n_overrides; i++)
		free(cli.overrides[i]);
	for (int i = 0; i < cli.n_nonopt; i++)
		free(cli.nonopt[i]);
	free(cli.config);
	free(cli.state);
	free(cli.backend);
	fuse_opt_free_args(&args);
	return ret ? 1 : 0;
}
