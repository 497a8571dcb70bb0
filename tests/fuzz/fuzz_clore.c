/*
 * fuzz_clore: Clore's replies (clore/clore.c) and what market.c makes of
 * them.
 *
 * The reply readers are static in clore.c, behind libcurl.  Rather than
 * add a seam to the product code, this file compiles clore.c itself with
 * three libcurl calls replaced by a fake network (fz_setopt, fz_perform,
 * fz_getinfo below): every endpoint then runs its real path, the rate
 * limiter, the retries on code 5 / HTTP 429, the code mapping and the
 * copying into the plain structs, on replies taken from the fuzz input.
 * The limiter's windows are scaled to 0 (the client's scale field), so no
 * call sleeps.
 *
 * Input: one byte choosing the call (marketplace, wallets, my_orders,
 * spot_marketplace, cancel_order, create_order, set_spot_price), then the
 * replies of the exchanges that call makes, each ended by a NUL byte.  A
 * reply's first byte is the HTTP outcome ('0' 200, '1' 429, '2' 401, '3'
 * 403, '4' 404, '5' 500, '6' 302, 'T' a timeout, 'C' a refused connection,
 * anything else 200) and the rest is the body.  When the replies run out,
 * the connection is refused.
 *
 * Checked beyond memory safety: every call returns 0 or a negative errno;
 * the reason is one line and never holds the API key (unless the reply
 * itself did); every string copied out of a reply is terminated and free
 * of control characters; the counts stay within their caps.
 */
#include <curl/curl.h>
#include <stdarg.h>

#undef curl_easy_setopt
#undef curl_easy_getinfo
#undef curl_easy_perform
#define curl_easy_setopt  fz_setopt
#define curl_easy_getinfo fz_getinfo
#define curl_easy_perform fz_perform

static CURLcode fz_setopt(CURL *h, CURLoption opt, ...);
static CURLcode fz_getinfo(CURL *h, CURLINFO info, ...);
static CURLcode fz_perform(CURL *h);

#include "clore/clore.c"
#include "clore/market.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_KEY "sk-fuzz-3b9f0c2d7e6a4f18"

#define FUZZ_NAME "fuzz_clore"
#include "fuzzcheck.h"

/* ------------------------------------------------------------ the fake network */

static curl_write_callback fz_write;
static void *fz_wdata;
static const uint8_t *fz_in;
static size_t fz_left;
static long fz_status;

static CURLcode fz_setopt(CURL *h, CURLoption opt, ...)
{
	va_list ap;

	(void)h;
	va_start(ap, opt);
	if (opt == CURLOPT_WRITEFUNCTION)
		fz_write = va_arg(ap, curl_write_callback);
	else if (opt == CURLOPT_WRITEDATA)
		fz_wdata = va_arg(ap, void *);
	va_end(ap);
	return CURLE_OK;
}

static CURLcode fz_getinfo(CURL *h, CURLINFO info, ...)
{
	va_list ap;

	(void)h;
	va_start(ap, info);
	if (info == CURLINFO_RESPONSE_CODE)
		*va_arg(ap, long *) = fz_status;
	va_end(ap);
	return CURLE_OK;
}

/* The next reply: its outcome byte, then its body handed over in pieces
 * of varying size, as the network would. */
static CURLcode fz_perform(CURL *h)
{
	static const long codes[] = {200, 429, 401, 403, 404, 500, 302};
	const uint8_t *end, *p;
	size_t len, piece = 1;

	(void)h;
	if (!fz_left)
		return CURLE_COULDNT_CONNECT;
	end = memchr(fz_in, 0, fz_left);
	len = end ? (size_t)(end - fz_in) : fz_left;
	p = fz_in;
	fz_in += len + (end != NULL);
	fz_left -= len + (end != NULL);
	if (!len)
		return CURLE_COULDNT_CONNECT;
	if (*p == 'T')
		return CURLE_OPERATION_TIMEDOUT;
	if (*p == 'C')
		return CURLE_COULDNT_CONNECT;
	fz_status = *p >= '0' && *p <= '6' ? codes[*p - '0'] : 200;
	p++;
	len--;
	while (len) {
		size_t n = piece < len ? piece : len;

		if (fz_write((char *)p, 1, n, fz_wdata) != n)
			return CURLE_WRITE_ERROR;
		p += n;
		len -= n;
		piece = piece * 3 + 1;
	}
	return CURLE_OK;
}

/* ------------------------------------------------------------ checks */

#define CHECK_TEXT(field) check_text(#field, field, sizeof(field))

static void check_rc(const struct clore_client *c, int rc, const uint8_t *data, size_t size)
{
	const char *e = clore_error(c);

	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "clore: %d %s\n", rc, e);
	if (rc > 0)
		FAIL("positive return %d", rc);
	if (strchr(e, '\n'))
		FAIL("reason on two lines: %s", e);
	if (strstr(e, FZ_KEY) && !memmem(data, size, FZ_KEY, strlen(FZ_KEY)))
		FAIL("the key is in the reason: %s", e);
}

static void check_server(const struct clore_server *s)
{
	if (s->n_coins > CLORE_MAX_COINS || s->n_prices > CLORE_MAX_COINS)
		FAIL("coin count over the cap");
	for (size_t i = 0; i < s->n_coins; i++)
		CHECK_TEXT(s->allowed_coins[i]);
	for (size_t i = 0; i < s->n_prices; i++)
		CHECK_TEXT(s->prices[i].currency);
	CHECK_TEXT(s->gpu_model);
	CHECK_TEXT(s->cpu);
	CHECK_TEXT(s->cuda_version);
	CHECK_TEXT(s->country);
}

static void check_order(const struct clore_order *o)
{
	if (o->n_tcp_ports > CLORE_MAX_PORTS)
		FAIL("port count over the cap");
	for (size_t i = 0; i < o->n_tcp_ports; i++)
		CHECK_TEXT(o->tcp_ports[i]);
	CHECK_TEXT(o->currency);
	CHECK_TEXT(o->image);
	CHECK_TEXT(o->host);
	CHECK_TEXT(o->http_port);
	CHECK_TEXT(o->gpu_model);
}

/* ------------------------------------------------------------ the calls */

static void do_marketplace(struct clore_client *c, const uint8_t *data, size_t size)
{
	static const char *const coins[] = {NULL, "CLORE-Blockchain", "bitcoin", "USD-Blockchain"};
	struct market_choice choice[16];
	struct market_measured m[3];
	struct clore_server *s;
	size_t n, nm = 0;
	int64_t avoid[2];
	char why[256];
	int rc = clore_marketplace(c, &s, &n);

	check_rc(c, rc, data, size);
	if (rc) {
		if (s || n)
			FAIL("marketplace failed with servers");
		return;
	}
	if (n > CLORE_MAX_SERVERS || (n && !s))
		FAIL("marketplace: %zu servers", n);
	for (size_t i = 0; i < n; i++) {
		check_server(&s[i]);
		for (int spot = 0; spot < 2; spot++)
			for (size_t k = 0; k < 4; k++) {
				(void)clore_usd_per_gpu_hour(&s[i], spot, coins[k]);
				(void)clore_server_price(&s[i], spot,
							 coins[k] ? coins[k] : "CLORE-Blockchain");
			}
		if (nm < 3 && s[i].gpu_model[0]) {
			m[nm].gpu = s[i].gpu_model;
			/* frame times renderfs measured itself: sane numbers */
			m[nm].secs = 10.0 + 7.0 * (double)nm;
			nm++;
		}
	}
	avoid[0] = n ? s[0].id : 1;
	avoid[1] = -1;
	for (int w = 0; w < 8; w++) {
		struct market_want want = {
		    .gpu = (w & 1) ? "RTX 4090, rtx 3090 ,, A100" : NULL,
		    .min_vram = (w & 2) ? 12 : 0,
		    .max_price = (w & 4) ? 0.5 : 0,
		    .spot = w & 1,
		    .spot_margin = 0.1,
		    .currency = coins[w & 3],
		    .min_reliability = (w & 2) ? 0.9 : 0,
		};
		size_t k =
		    market_rank(s, n, &want, m, nm, avoid, w & 1 ? 2 : 0, choice, 16, why, sizeof(why));

		if (k > 16)
			FAIL("market_rank: %zu choices for 16 places", k);
		for (size_t i = 0; i < k; i++) {
			const struct market_choice *ch = &choice[i];

			if (ch->idx >= n)
				FAIL("market_rank: index %zu of %zu", ch->idx, n);
			/* Whatever the listing says, the ranking figure is a
			 * number and the list is in its order: a nonsense price
			 * must not sort a server first. */
			if (isnan(ch->per_speed) || isnan(ch->usd_h) || isnan(ch->price_day) ||
			    isnan(ch->score))
				FAIL("market_rank: NaN in choice %zu (server %lld)", i,
				     (long long)s[ch->idx].id);
			if (!(ch->price_day > 0) || !isfinite(ch->price_day))
				FAIL("market_rank: chose server %lld at price %g", (long long)s[ch->idx].id,
				     ch->price_day);
			if (i && ch->per_speed < choice[i - 1].per_speed)
				FAIL("market_rank: choice %zu out of order", i);
		}
		if (!k)
			CHECK_TEXT(why);
	}
	free(s);
}

static void do_wallets(struct clore_client *c, const uint8_t *data, size_t size)
{
	struct clore_wallet *w;
	size_t n;
	int rc = clore_wallets(c, &w, &n);

	check_rc(c, rc, data, size);
	if (!rc) {
		if (n > CLORE_MAX_COINS * 4)
			FAIL("wallets: %zu", n);
		for (size_t i = 0; i < n; i++) {
			CHECK_TEXT(w[i].name);
			CHECK_TEXT(w[i].deposit);
		}
	}
	free(w);
}

static void do_orders(struct clore_client *c, const uint8_t *data, size_t size)
{
	struct clore_order *o;
	char host[64];
	size_t n;
	int port, rc = clore_my_orders(c, 1, &o, &n);

	check_rc(c, rc, data, size);
	if (rc)
		return;
	if (n > CLORE_MAX_ORDERS)
		FAIL("my_orders: %zu", n);
	for (size_t i = 0; i < n; i++) {
		check_order(&o[i]);
		if (clore_order_ssh(&o[i], host, sizeof(host), &port) == 0) {
			CHECK_TEXT(host);
			if (port < 1 || port > 65535)
				FAIL("ssh port %d", port);
		}
	}
	if (n) {
		const struct clore_order *x = clore_newest_order(o, n, o[0].server_id, INT64_MIN);

		if (!x || x < o || x >= o + n || x->server_id != o[0].server_id)
			FAIL("clore_newest_order missed the server it was given");
	}
	free(o);
}

static void do_spot(struct clore_client *c, const uint8_t *data, size_t size)
{
	struct clore_spot m;
	int rc = clore_spot_market(c, 42, &m);

	check_rc(c, rc, data, size);
	if (rc)
		return;
	if (m.n_offers > CLORE_MAX_OFFERS || m.n_min_pricing > CLORE_MAX_COINS || m.n_rates > CLORE_MAX_COINS)
		FAIL("spot market counts over the caps");
	for (size_t i = 0; i < m.n_offers; i++)
		CHECK_TEXT(m.offers[i].currency);
	for (size_t i = 0; i < m.n_min_pricing; i++)
		CHECK_TEXT(m.min_pricing[i].currency);
	for (size_t i = 0; i < m.n_rates; i++)
		CHECK_TEXT(m.rates[i].currency);
	(void)clore_spot_floor(&m, "CLORE-Blockchain");
	(void)clore_spot_floor(&m, "bitcoin");
}

static void do_create(struct clore_client *c, const uint8_t *data, size_t size)
{
	static const char *const env[] = {"RENDERFS_TOKEN=abc", NULL};
	static const struct clore_port ports[] = {{22, "tcp"}, {8080, "http"}};
	struct clore_order_req req = {
	    .server_id = 42,
	    .spot = 1,
	    .image = "renderfs/worker:3.4",
	    .ssh_key = "ssh-ed25519 AAAA renderfs",
	    .command = "true",
	    .spotprice = 3.5,
	    .env = env,
	    .ports = ports,
	    .n_ports = 2,
	};

	check_rc(c, clore_create_order(c, &req), data, size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct clore_client *c;
	char err[256];

	if (!c) {
		c = clore_new("http://127.0.0.1:9/v1", FZ_KEY, err, sizeof(err));
		if (!c)
			FAIL("clore_new: %s", err);
	}
	c->scale = 0; /* no waiting between requests, nor before retries */
	if (!size)
		return 0;
	fz_in = data + 1;
	fz_left = size - 1;
	switch (data[0] % 7) {
	case 0: do_marketplace(c, data, size); break;
	case 1: do_wallets(c, data, size); break;
	case 2: do_orders(c, data, size); break;
	case 3: do_spot(c, data, size); break;
	case 4: check_rc(c, clore_cancel_order(c, 77, "renderfs: job done"), data, size); break;
	case 5: do_create(c, data, size); break;
	default: check_rc(c, clore_set_spot_price(c, 77, 2.25), data, size); break;
	}
	return 0;
}
