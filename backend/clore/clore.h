/*
 * clore: a client for the Clore.ai marketplace API (libcurl + cJSON), as
 * described in shared/design/clore-api.md: the servers for rent, the
 * wallets, ordering and cancelling rentals, the spot market.
 *
 * Every call returns 0 or a negative errno; Clore's reply codes and HTTP
 * statuses are converted here and nowhere else (table in clore.c), and a
 * one-line human reason is left in clore_error().  The reasons never carry
 * the API key: it travels only in the `auth` header.
 *
 * Rate limits: one limiter for the whole process serialises every request
 * of every client and spaces them at least 1 s apart (measured from the end
 * of the previous reply), create_order at least 5 s after the previous
 * create_order.  Callers wait rather than violate.  Code 5 and HTTP 429 are
 * retried with exponential backoff; transport failures are not (a timed-out
 * create_order may have gone through: reconcile with clore_my_orders).
 *
 * Tests: RENDERFS_CLORE_RATE_SCALE=F (0.01 <= F <= 1) multiplies the
 * limiter's windows and the backoff by F.  It is honoured only for loopback
 * base URLs, so it cannot make renderfs hammer the real API.
 *
 * Threads: a struct clore_client (and its CURL handle) belongs to one thread
 * at a time; several clients may run in parallel threads and still share the
 * one limiter.
 */
#ifndef RENDERFS_CLORE_H
#define RENDERFS_CLORE_H

#include <stddef.h>
#include <stdint.h>

#define CLORE_DEFAULT_URL "https://api.clore.ai/v1"

/* Caps on what is copied out of a reply; longer strings are cut, further
 * array elements dropped. */
#define CLORE_STR_MAX     128
#define CLORE_COIN_MAX    32
#define CLORE_MAX_COINS   8
#define CLORE_MAX_PORTS   8
#define CLORE_MAX_OFFERS  64
#define CLORE_MAX_SERVERS 20000
#define CLORE_MAX_ORDERS  4096
#define CLORE_REPLY_CAP   (8u << 20) /* bytes; a larger reply fails with -EFBIG */
#define CLORE_KEY_MAX     256
#define CLORE_MAX_TRIES   5 /* attempts for code 5 / HTTP 429 before -EBUSY */

struct clore_client;

/* A price per DAY for the whole server, in one currency; negative when that
 * kind of rental is not offered in that currency. */
struct clore_price {
	char currency[CLORE_COIN_MAX];
	double on_demand;
	double spot;
};

struct clore_server {
	int64_t id;
	int64_t owner;
	int mrl;            /* maximum rental length, hours (0: unknown) */
	int rented;         /* cannot be ordered on demand */
	double reliability; /* 0-1 fraction; 0 when missing */
	double rating;      /* average; 0 when missing */
	int rating_cnt;
	char allowed_coins[CLORE_MAX_COINS][CLORE_COIN_MAX];
	size_t n_coins;
	struct clore_price prices[CLORE_MAX_COINS];
	size_t n_prices;
	/* price.usd, per day for the whole server; negative when missing */
	double usd_on_demand_clore, usd_on_demand_usd, usd_on_demand_btc, usd_spot;
	char gpu_model[CLORE_STR_MAX]; /* "NVIDIA GeForce RTX 4090" (no count prefix) */
	int gpu_count;                 /* from specs.gpu "2x ...", else gpu_array's length */
	double gpuram;                 /* GB per GPU */
	char cpu[CLORE_STR_MAX];
	double ram; /* GB */
	char cuda_version[16];
	char country[8];
	double net_up, net_down; /* Mbit/s */
};

struct clore_wallet {
	char name[CLORE_COIN_MAX];
	double balance;
	double withdrawal_fee;
	char deposit[CLORE_STR_MAX];
};

struct clore_port {
	int port;         /* container side */
	const char *kind; /* "tcp" or "http" */
};

/* What create_order sends.  Strings are borrowed for the call only. */
struct clore_order_req {
	int64_t server_id;
	int spot;               /* 1: spot (bid = spotprice), 0: on-demand */
	const char *currency;   /* NULL: "CLORE-Blockchain" */
	const char *image;      /* required */
	const char *ssh_key;    /* public key text, may be NULL */
	const char *command;    /* start-up script, may be NULL */
	double spotprice;       /* the bid, per DAY, in currency (spot only) */
	const char *const *env; /* NULL-terminated "NAME=value" list, may be NULL */
	const struct clore_port *ports;
	size_t n_ports; /* 0: {"22": "tcp"} */
};

struct clore_order {
	int64_t id;
	int64_t server_id; /* si */
	int64_t ct;        /* creation time, unix seconds */
	char currency[CLORE_COIN_MAX];
	double price;        /* per DAY */
	double creation_fee; /* USD, not the order's currency (about $0.10; clore-api.md) */
	double spend;        /* in the order's currency, so far or in all */
	char image[256];
	int mrl;
	int spot;
	int online;
	int expired;
	char host[CLORE_STR_MAX];            /* pub_cluster[0]; empty until it comes up */
	char tcp_ports[CLORE_MAX_PORTS][32]; /* "22:1277" */
	size_t n_tcp_ports;
	char http_port[16];
	char gpu_model[CLORE_STR_MAX];
	int gpu_count;
	double gpuram;
};

struct clore_spot_offer {
	int64_t offer_id;
	double bid; /* per DAY */
	int active;
	int my;
	char currency[CLORE_COIN_MAX];
};

struct clore_spot {
	int exists;
	struct clore_spot_offer offers[CLORE_MAX_OFFERS];
	size_t n_offers;
	struct clore_price min_pricing[CLORE_MAX_COINS]; /* .spot holds the floor; .on_demand unused (-1) */
	size_t n_min_pricing;
	struct {
		char currency[CLORE_COIN_MAX];
		double usd;
	} rates[CLORE_MAX_COINS];
	size_t n_rates;
	int online;
	int mrl;
};

/*
 * A client for base_url ("https://api.clore.ai/v1"; plain http only for
 * 127.0.0.0/8, localhost and [::1]).  The key is copied (and wiped at
 * clore_free).  NULL on failure with the reason in err.  Owned by the
 * caller, freed with clore_free().
 */
struct clore_client *clore_new(const char *base_url, const char *api_key, char *err, size_t errsz);
void clore_free(struct clore_client *c);
/* Connect and total timeouts per request, milliseconds (defaults 10 s, 60 s). */
void clore_set_timeouts(struct clore_client *c, long connect_ms, long total_ms);
/* The reason for the last failure; owned by the client, valid until its next call. */
const char *clore_error(const struct clore_client *c);
/* The factor applied to the rate-limit spacing and backoff: 1, or
 * RENDERFS_CLORE_RATE_SCALE (0.01-1) for a loopback api_url (the tests'
 * fake).  Callers that wait in units of the API's limits scale by it too. */
double clore_rate_scale(const struct clore_client *c);

/* *out is a malloc'd array owned by the caller: free() it (the structs hold
 * no pointers).  *n may be 0 with *out NULL. */
int clore_marketplace(struct clore_client *c, struct clore_server **out, size_t *n);
int clore_wallets(struct clore_client *c, struct clore_wallet **out, size_t *n);
int clore_my_orders(struct clore_client *c, int return_completed, struct clore_order **out, size_t *n);
/* Answers only success: the order id is found with clore_my_orders and
 * clore_newest_order. */
int clore_create_order(struct clore_client *c, const struct clore_order_req *req);
/* Cancelling an order that already ended, or twice, returns 0 (checked
 * against the active my_orders list when Clore refuses). issue may be NULL. */
int clore_cancel_order(struct clore_client *c, int64_t id, const char *issue);
/* out->exists is 0 for an unknown server. */
int clore_spot_market(struct clore_client *c, int64_t server_id, struct clore_spot *out);
int clore_set_spot_price(struct clore_client *c, int64_t order_id, double per_day);

/*
 * The key: the CLORE_API_KEY environment variable when set and not empty,
 * else the first line of key_file ("~/" expanded).  A key file accessible
 * by group or others, or not owned by the user, is refused (as ssh does).
 */
int clore_load_key(const char *key_file, char *key, size_t sz, char *err, size_t errsz);

/* ------------------------------------------------------------ pure helpers */

/* USD per GPU-hour: price.usd (spot, or on-demand in currency; currency NULL:
 * the cheapest on-demand figure) / 24 / GPU count.  Negative when unknown. */
double clore_usd_per_gpu_hour(const struct clore_server *s, int spot, const char *currency);
/* The count prefix of specs.gpu ("2x NVIDIA ..." -> 2), else fallback. */
int clore_gpu_count(const char *specs_gpu, int fallback);
/* Whether the server takes currency. */
int clore_server_takes(const struct clore_server *s, const char *currency);
/* Its per-day price in currency (spot or on-demand); negative when none. */
double clore_server_price(const struct clore_server *s, int spot, const char *currency);
/* SSH endpoint of an order: host = pub_cluster[0], port = the host side of
 * the tcp_ports entry for container port 22.  -EAGAIN while it has none. */
int clore_order_ssh(const struct clore_order *o, char *host, size_t hostsz, int *port);
/* The newest order (largest ct, then id) on server_id created at or after
 * not_before (unix s); NULL when none.  Points into orders. */
const struct clore_order *clore_newest_order(const struct clore_order *orders, size_t n, int64_t server_id,
					     int64_t not_before);
/* A spot market's floor for currency; negative when none. */
double clore_spot_floor(const struct clore_spot *m, const char *currency);

#endif
