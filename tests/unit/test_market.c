/*
 * test_market: choosing Clore servers (backend/market.c) on hand-made
 * listings: the benchmark table, each filter, the ranking by USD per unit
 * of render speed, and measured frame times re-ordering GPU models.
 */
#include "clore/market.h"
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* A one-currency server: per-day prices in CLORE at $0.02, USD figures
 * as the listing would carry them. */
static struct clore_server server(int64_t id, const char *gpu, int count, double vram, double od_day,
				  double spot_day, double reliability)
{
	struct clore_server s;

	memset(&s, 0, sizeof(s));
	s.id = id;
	snprintf(s.gpu_model, sizeof(s.gpu_model), "%s", gpu);
	s.gpu_count = count;
	s.gpuram = vram;
	s.reliability = reliability;
	snprintf(s.allowed_coins[0], sizeof(s.allowed_coins[0]), "CLORE-Blockchain");
	s.n_coins = 1;
	snprintf(s.prices[0].currency, sizeof(s.prices[0].currency), "CLORE-Blockchain");
	s.prices[0].on_demand = od_day;
	s.prices[0].spot = spot_day;
	s.n_prices = 1;
	s.usd_on_demand_clore = od_day * 0.02;
	s.usd_on_demand_usd = s.usd_on_demand_btc = -1;
	s.usd_spot = spot_day * 0.02;
	return s;
}

static void test_scores(void)
{
	CHECK(market_gpu_score("NVIDIA GeForce RTX 4090") > market_gpu_score("NVIDIA GeForce RTX 3090"),
	      "4090 faster than 3090");
	CHECK(market_gpu_score("NVIDIA GeForce RTX 3080 Ti") > market_gpu_score("NVIDIA GeForce RTX 3080"),
	      "3080 Ti is not taken for a 3080: %g vs %g", market_gpu_score("NVIDIA GeForce RTX 3080 Ti"),
	      market_gpu_score("NVIDIA GeForce RTX 3080"));
	CHECK(market_gpu_score("NVIDIA A100-SXM4-80GB") != market_gpu_score("NVIDIA A10"),
	      "A100 is not an A10");
	CHECK(market_gpu_score("nvidia rtx a6000") > 0, "matching ignores case");
	CHECK(market_gpu_score("Some Future GPU 9000") == 0, "unknown model scores 0");
	CHECK(market_gpu_score(NULL) == 0, "no model scores 0");
}

static void test_filters(void)
{
	struct clore_server s[8];
	struct market_choice out[8];
	struct market_want w = {.gpu = "RTX 4090, RTX 3090",
				.min_vram = 16,
				.max_price = 0.5,
				.spot = 0,
				.currency = "CLORE-Blockchain",
				.min_reliability = 0.9};
	int64_t avoid[] = {106};
	char why[512];
	size_t k;

	s[0] = server(101, "NVIDIA GeForce RTX 4090", 1, 24, 200, 100, 0.99);  /* $0.17/h: fits */
	s[1] = server(102, "NVIDIA GeForce RTX 3080", 1, 10, 50, 25, 0.99);    /* model */
	s[2] = server(103, "NVIDIA GeForce RTX 3090", 1, 12, 100, 50, 0.99);   /* VRAM */
	s[3] = server(104, "NVIDIA GeForce RTX 3090", 1, 24, 1000, 500, 0.99); /* $0.83/GPU-h */
	s[4] = server(105, "NVIDIA GeForce RTX 3090", 1, 24, 100, 50, 0.5);    /* reliability */
	s[5] = server(106, "NVIDIA GeForce RTX 3090", 1, 24, 100, 50, 0.99);   /* avoided */
	s[6] = server(107, "NVIDIA GeForce RTX 3090", 1, 24, 100, 50, 0.99);   /* rented */
	s[6].rented = 1;
	s[7] = server(108, "NVIDIA GeForce RTX 3090", 1, 24, 100, 50, 0.99); /* wrong coin */
	snprintf(s[7].allowed_coins[0], sizeof(s[7].allowed_coins[0]), "bitcoin");

	k = market_rank(s, 8, &w, NULL, 0, avoid, 1, out, 8, why, sizeof(why));
	CHECK(k == 1 && out[0].idx == 0, "only server 101 fits: k=%zu", k);
	CHECK(fabs(out[0].usd_h - 200 * 0.02 / 24) < 1e-9, "USD per hour from the per-day price: %g",
	      out[0].usd_h);
	/* None fits: the reasons are counted. */
	s[0].rented = 1;
	k = market_rank(s, 8, &w, NULL, 0, avoid, 1, out, 8, why, sizeof(why));
	CHECK(k == 0, "nothing fits once 101 is rented");
	CHECK(strstr(why, "8 listed") && strstr(why, "2 already rented") &&
		  strstr(why, "1 too little VRAM") && strstr(why, "1 above max_price") &&
		  strstr(why, "1 currency not accepted") && strstr(why, "1 below min_reliability") &&
		  strstr(why, "1 GPU model not wanted") && strstr(why, "1 failed before"),
	      "reasons: %s", why);
}

static void test_ranking(void)
{
	struct clore_server s[4];
	struct market_choice out[4];
	struct market_want w = {.currency = "CLORE-Blockchain", .spot = 0};
	struct market_measured m[2];
	char why[256];
	size_t k;

	/* Per unit of speed: 4090 at 300/day (11000) beats a 3090 at 200/day
	 * (5400), and two 3090s at 350/day beat one at 200. */
	s[0] = server(1, "NVIDIA GeForce RTX 3090", 1, 24, 200, 100, 0.99);
	s[1] = server(2, "NVIDIA GeForce RTX 4090", 1, 24, 300, 150, 0.95);
	s[2] = server(3, "NVIDIA GeForce RTX 3090", 2, 24, 350, 175, 0.99);
	s[3] = server(4, "NVIDIA GeForce RTX 4090", 1, 24, 300, 150, 0.99);
	k = market_rank(s, 4, &w, NULL, 0, NULL, 0, out, 4, why, sizeof(why));
	CHECK(k == 4, "all fit");
	CHECK(out[0].idx == 3 && out[1].idx == 1,
	      "the cheaper-per-speed 4090s first, the more reliable one ahead:"
	      " %zu %zu",
	      out[0].idx, out[1].idx);
	CHECK(out[2].idx == 2 && out[3].idx == 0, "two 3090s for 350 before one for 200: %zu %zu", out[2].idx,
	      out[3].idx);
	CHECK(out[0].per_speed < out[2].per_speed, "the figure orders them");

	/* Spot: ranked at the bid (the spot price plus the margin). */
	w.spot = 1;
	w.spot_margin = 0.15;
	k = market_rank(s, 1, &w, NULL, 0, NULL, 0, out, 4, why, sizeof(why));
	CHECK(k == 1 && fabs(out[0].price_day - 115) < 1e-9, "spot bid 100 + 15%%: %g", out[0].price_day);
	CHECK(fabs(out[0].usd_h - 115 * 0.02 / 24) < 1e-9, "spot USD per hour %g", out[0].usd_h);

	/* Measured: the 3090s turned out as fast as the 4090 for this job. */
	w.spot = 0;
	m[0].gpu = "NVIDIA GeForce RTX 4090";
	m[0].secs = 2.0;
	m[1].gpu = "NVIDIA GeForce RTX 3090";
	m[1].secs = 2.0;
	CHECK(fabs(market_effective_score("NVIDIA GeForce RTX 3090", m, 2) -
		   market_effective_score("NVIDIA GeForce RTX 4090", m, 2)) < 1e-6,
	      "equal measured times, equal scores");
	CHECK(market_effective_score("NVIDIA GeForce RTX 4090", m, 1) ==
		  market_gpu_score("NVIDIA GeForce RTX 4090"),
	      "one model measured keeps its table score");
	k = market_rank(s, 4, &w, m, 2, NULL, 0, out, 4, why, sizeof(why));
	CHECK(k == 4 && out[0].idx == 2 && out[1].idx == 0,
	      "measured: the 3090s (175 then 200 per GPU-day) now go before the 4090s: %zu %zu", out[0].idx,
	      out[1].idx);
}

int main(void)
{
	test_scores();
	test_filters();
	test_ranking();
	return check_summary("test_market");
}
