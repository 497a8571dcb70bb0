/*
 * market: which servers of the Clore marketplace to rent, as pure
 * functions of the listing, the user's wishes and what renderfs measured
 * on servers it rented before.  Nothing here talks to the network.
 *
 * Speed comes from a built-in table of Blender Cycles benchmark scores per
 * GPU model (samples per minute, medians of Blender Open Data; see
 * docs/modules/market.md), refined by frame times measured on rented
 * nodes.  The figure ranked is USD per hour of the whole server divided by
 * its render speed (score x GPU count): the lowest is the best buy; ties
 * go to the more reliable server.
 */
#ifndef RENDERFS_MARKET_H
#define RENDERFS_MARKET_H

#include "clore/clore.h"

#include <stddef.h>

/* The benchmark score of one GPU of this model (a substring match on the
 * marketplace's name, e.g. "NVIDIA GeForce RTX 4090"); 0 when unknown. */
double market_gpu_score(const char *model);
/* Whether model contains any item of list ("RTX 4090, RTX 3090", case-
 * insensitive substrings); an empty or NULL list takes any model. */
int market_gpu_wanted(const char *list, const char *model);

/* The score used for a model the table does not know. */
#define MARKET_UNKNOWN_SCORE 1000.0

struct market_want {
	const char
	    *gpu; /* "RTX 4090, RTX 3090": any of these substrings (case-insensitive); NULL or "" = any */
	double min_vram;        /* GB per GPU */
	double max_price;       /* USD per GPU-hour; <= 0: no limit */
	int spot;               /* 1: spot rentals */
	double spot_margin;     /* a bid is the spot price times (1 + margin) */
	const char *currency;   /* must be in allowed_coins and priced */
	double min_reliability; /* 0-1; a listing without the figure passes */
};

/* A frame time measured on a GPU model (seconds per frame on one GPU of it,
 * for the job being rented for). */
struct market_measured {
	const char *gpu;
	double secs;
};

struct market_choice {
	size_t idx;         /* into the server array */
	double usd_h;       /* the whole server, per hour, at the price renderfs would pay */
	double score;       /* per GPU, after measurements */
	double per_speed;   /* usd_h / (score x GPUs): the ranking figure */
	double price_day;   /* what renderfs pays per day, in the currency (a spot bid includes the margin) */
	double reliability; /* the listing's, 0 when missing */
};

/*
 * Filter servers by want and rank them, best first, skipping any id in
 * avoid[].  Fills out[] (at most cap) and returns how many fit.  When none
 * fit, why says what excluded them (the commonest reason first).
 */
size_t market_rank(const struct clore_server *servers, size_t n, const struct market_want *want,
		   const struct market_measured *m, size_t nm, const int64_t *avoid, size_t navoid,
		   struct market_choice *out, size_t cap, char *why, size_t whysz);

/* The effective score of a GPU model given measurements: table score,
 * rescaled by measured frame times when two or more models were measured. */
double market_effective_score(const char *model, const struct market_measured *m, size_t nm);

#endif
