/*
 * config: the INI configuration file plus "-o section.key=value" overrides,
 * checked against the keys renderfs knows, into one plain struct.
 *
 * Ownership: config_load() fills a caller-owned struct; config_free()
 * releases the strings inside it.
 */
#ifndef RENDERFS_CONFIG_H
#define RENDERFS_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define CONFIG_MAX_SSH_NODES 64
/* The longest value a setting may have (a path); longer is refused whole. */
#define CONFIG_VALUE_MAX 4095

struct config {
	/* [renderfs] */
	char *backend;    /* a provider name (engine/provider.c) */
	int64_t quiet_ms; /* a drop is complete after this long untouched */
	int64_t stall_ms; /* a frame with no output for this long is hung */
	int64_t lease_ms; /* a frame's lease lasts this long unless renewed */
	/* Where nodes with blender = auto download Blender: http(s), no
	 * trailing '/', laid out as BlenderX.Y/blender-X.Y.Z-linux-x64.tar.xz. */
	char *blender_mirror;
	/* [local] */
	char *blender;
	int workers;
	/* [ssh] (used by the ssh backend) */
	char *ssh_nodes[CONFIG_MAX_SSH_NODES];
	int n_ssh_nodes;
	char *ssh_identity;
	char *ssh_blender; /* a command, or "auto" (CONFIG_BLENDER_AUTO) */
	int ssh_slots;     /* workers per node; 0 = one per GPU (at least one) */
	/* [clore] (used by the clore backend) */
	char *clore_api_url;
	char *clore_api_key_file;
	char *clore_image;   /* NULL: the provider's default image */
	char *clore_blender; /* default "auto" */
	int clore_nodes;
	char *clore_gpu;
	double clore_min_vram;
	double clore_max_price;
	int clore_spot;
	char *clore_currency;
	double clore_budget;           /* USD, < 0: none */
	double clore_spot_margin;      /* fraction: 0.15 bids 15% over the going spot price */
	int64_t clore_poll_ms;         /* my_orders polling interval */
	int64_t clore_boot_timeout_ms; /* an order not up by then is cancelled */
	int64_t clore_idle_ms;         /* an idle rented node is released after this grace */
	int clore_keep_at_unmount;     /* leave rentals running at unmount */
	double clore_min_reliability;  /* 0-1 */
};

/* The `blender` value that lets renderfs install Blender on the node. */
#define CONFIG_BLENDER_AUTO   "auto"
#define CONFIG_BLENDER_MIRROR "https://download.blender.org/release"

/*
 * Load file (may be NULL: defaults only; a missing default file is fine,
 * a missing explicit file is an error), then apply overrides, an array of
 * "section.key=value" strings.  On error returns -EINVAL (or -errno) and a
 * one-line message in err.
 */
int config_load(struct config *cfg, const char *file, int explicit_file, char **overrides, int n_overrides,
		char *err, size_t errsz);
void config_free(struct config *cfg);

#endif
