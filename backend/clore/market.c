/*
 * market: filter and rank marketplace servers (see market.h).
 */
#include "clore/market.h"
#include "core/util.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * Blender Cycles benchmark scores per GPU (median "samples per minute" of
 * Blender Open Data, Blender 4.x, OptiX on RTX cards, CUDA otherwise),
 * rounded.  Only the ratios matter: they turn a price into a price per
 * unit of render speed.  The longest matching name wins, so "RTX 3080 Ti"
 * is not taken for "RTX 3080".
 */
static const struct {
	const char *name;
	double score;
} gpu_scores[] = {
    {"RTX 5090", 14500},
    {"RTX 5080", 9000},
    {"RTX 4090", 11000},
    {"RTX 4080 SUPER", 8300},
    {"RTX 4080", 7900},
    {"RTX 4070 Ti SUPER", 6700},
    {"RTX 4070 Ti", 6000},
    {"RTX 4070 SUPER", 5500},
    {"RTX 4070", 4800},
    {"RTX 4060 Ti", 3600},
    {"RTX 4060", 2900},
    {"RTX 3090 Ti", 6000},
    {"RTX 3090", 5400},
    {"RTX 3080 Ti", 5200},
    {"RTX 3080", 4700},
    {"RTX 3070 Ti", 3700},
    {"RTX 3070", 3500},
    {"RTX 3060 Ti", 2900},
    {"RTX 3060", 2300},
    {"RTX 2080 Ti", 2700},
    {"RTX 2080 SUPER", 2300},
    {"RTX 2080", 2100},
    {"RTX 2070 SUPER", 1900},
    {"RTX 2070", 1700},
    {"RTX 2060", 1400},
    {"RTX 6000 Ada", 10500},
    {"RTX A6000", 5700},
    {"A6000", 5700},
    {"RTX A5000", 4400},
    {"RTX A4500", 3900},
    {"RTX A4000", 2900},
    {"L40S", 10800},
    {"L40", 10000},
    {"L4", 3300},
    {"A40", 5300},
    {"A100", 4100},
    {"H100", 7400},
    {"V100", 2500},
    {"A10", 3100},
    {"T4", 1300},
    {"GTX 1080 Ti", 900},
    {"GTX 1080", 700},
};

double market_gpu_score(const char *model)
{
	size_t best_len = 0;
	double best = 0;

	if (!model)
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(gpu_scores); i++) {
		size_t l = strlen(gpu_scores[i].name);
		const char *p = strcasestr(model, gpu_scores[i].name);

		/* A whole-word match: "A10" must not match "A100". */
		if (!p || isalnum((unsigned char)p[l]) || (p > model && isalnum((unsigned char)p[-1])))
			continue;
		if (l > best_len) {
			best_len = l;
			best = gpu_scores[i].score;
		}
	}
	return best;
}

static double table_score(const char *model)
{
	double s = market_gpu_score(model);

	return s > 0 ? s : MARKET_UNKNOWN_SCORE;
}

double market_effective_score(const char *model, const struct market_measured *m, size_t nm)
{
	double cal = 0;
	size_t used = 0;

	/* Calibrate measured frame times to the table's units: the mean of
	 * score x seconds over the measured models.  One model measured
	 * leaves its own score as it is; two or more re-order them by what
	 * was really seen. */
	for (size_t i = 0; i < nm; i++) {
		if (m[i].secs > 0 && m[i].gpu) {
			cal += table_score(m[i].gpu) * m[i].secs;
			used++;
		}
	}
	if (!used)
		return table_score(model);
	cal /= (double)used;
	for (size_t i = 0; i < nm; i++)
		if (m[i].secs > 0 && m[i].gpu && !strcasecmp(m[i].gpu, model))
			return cal / m[i].secs;
	return table_score(model);
}

/* "RTX 4090, RTX 3090": does model contain any of them? */
int market_gpu_wanted(const char *list, const char *model)
{
	const char *p = list;

	if (!list || !*list)
		return 1;
	while (*p) {
		char item[128];
		size_t l = strcspn(p, ",");
		size_t a = 0, b = l;

		while (a < b && isspace((unsigned char)p[a]))
			a++;
		while (b > a && isspace((unsigned char)p[b - 1]))
			b--;
		if (b > a && b - a < sizeof(item)) {
			snprintf(item, sizeof(item), "%.*s", (int)(b - a), p + a);
			if (strcasestr(model, item))
				return 1;
		}
		p += l;
		if (*p == ',')
			p++;
	}
	return 0;
}

enum { X_AVOID, X_RENTED, X_GPU, X_VRAM, X_COIN, X_PRICE, X_RELIABILITY, X__COUNT };

static const char *const x_text[X__COUNT] = {
    [X_AVOID] = "failed before",
    [X_RENTED] = "already rented",
    [X_GPU] = "GPU model not wanted",
    [X_VRAM] = "too little VRAM",
    [X_COIN] = "currency not accepted",
    [X_PRICE] = "above max_price",
    [X_RELIABILITY] = "below min_reliability",
};

static int cmp_choice(const void *a, const void *b)
{
	const struct market_choice *x = a, *y = b;

	if (x->per_speed != y->per_speed)
		return x->per_speed < y->per_speed ? -1 : 1;
	/* Equal figures: the more reliable first, then the listing's order. */
	if (x->reliability != y->reliability)
		return x->reliability > y->reliability ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

size_t market_rank(const struct clore_server *servers, size_t n, const struct market_want *want,
		   const struct market_measured *m, size_t nm, const int64_t *avoid, size_t navoid,
		   struct market_choice *out, size_t cap, char *why, size_t whysz)
{
	size_t k = 0, excluded[X__COUNT] = {0};
	const char *cur = want->currency && *want->currency ? want->currency : "CLORE-Blockchain";

	for (size_t i = 0; i < n; i++) {
		const struct clore_server *s = &servers[i];
		double day, usd_day, score, rate, gpu_h;
		int x = -1;

		for (size_t a = 0; a < navoid && x < 0; a++)
			if (avoid[a] == s->id)
				x = X_AVOID;
		day = clore_server_price(s, want->spot, cur);
		if (x >= 0)
			;
		else if (s->rented)
			x = X_RENTED;
		else if (!market_gpu_wanted(want->gpu, s->gpu_model))
			x = X_GPU;
		else if (s->gpuram < want->min_vram)
			x = X_VRAM;
		else if (!clore_server_takes(s, cur) || day <= 0)
			x = X_COIN;
		else if (s->reliability > 0 && s->reliability < want->min_reliability)
			x = X_RELIABILITY;
		if (x < 0) {
			/* USD per unit of the currency, from the listing's own USD
			 * figure for the same kind of rental. */
			double usd_ref = clore_usd_per_gpu_hour(s, want->spot, want->spot ? NULL : cur);
			double ref_day = want->spot ? clore_server_price(s, 1, cur) : day;
			int gpus = s->gpu_count > 0 ? s->gpu_count : 1;

			if (want->spot) {
				/* usd.spot is the cheapest currency's figure; the
				 * ratio still prices the bid in USD. */
				day *= 1 + want->spot_margin;
			}
			rate = usd_ref > 0 && ref_day > 0 ? usd_ref * 24.0 * gpus / ref_day : 0;
			usd_day = rate > 0 ? day * rate : -1;
			gpu_h = usd_day > 0 ? usd_day / 24.0 / gpus : -1;
			if (want->max_price > 0 && (gpu_h < 0 || gpu_h > want->max_price + 1e-12))
				x = X_PRICE;
			if (x < 0 && k < cap) {
				score = market_effective_score(s->gpu_model, m, nm);
				out[k].idx = i;
				out[k].price_day = day;
				out[k].usd_h = usd_day > 0 ? usd_day / 24.0 : 0;
				out[k].score = score;
				out[k].reliability = s->reliability;
				/* An unknown USD price ranks after every known one. */
				out[k].per_speed = usd_day > 0 ? out[k].usd_h / (score * gpus) : HUGE_VAL;
				k++;
				continue;
			}
		}
		if (x >= 0)
			excluded[x]++;
	}
	qsort(out, k, sizeof(*out), cmp_choice);
	if (!k && why && whysz) {
		size_t l = 0;

		why[0] = '\0';
		l += (size_t)snprintf(why, whysz, "no server fits (%zu listed", n);
		for (int r = 0; r < X__COUNT && l < whysz; r++)
			if (excluded[r])
				l += (size_t)snprintf(why + l, whysz - l, "; %zu %s", excluded[r], x_text[r]);
		if (l < whysz)
			snprintf(why + l, whysz - l, ")");
	}
	return k;
}
