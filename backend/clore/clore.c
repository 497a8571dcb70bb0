/*
 * clore: see clore.h.  This file owns three things: the process-wide rate
 * limiter, the one place where Clore's reply codes and HTTP statuses become
 * errnos, and the copying of replies into the plain structs of clore.h
 * (the cJSON tree never leaves the function that parsed it).
 *
 * Error mapping (every reason also lands in clore_error()):
 *
 *	code 0				0
 *	code 1  database error		-EAGAIN  (short balance or server just taken: try another)
 *	code 2  invalid input		-EINVAL
 *	code 3  invalid API token	-EACCES  (never retried)
 *	code 4  invalid endpoint	-ENOSYS
 *	code 5 / HTTP 429		retried CLORE_MAX_TRIES times, 1 s, 2 s, 4 s, ... apart, then -EBUSY
 *	code 6  "error" string:
 *		not_enough_balance	-ENOSPC  (-EDQUOT is left for renderfs's own budget)
 *		server-already-rented	-EADDRINUSE
 *		too_low_price		-ERANGE
 *		currency-not-allowed	-EPERM
 *		server-offline		-EHOSTDOWN
 *		exceeded_max_step	-EDOM
 *		can_lower_every_600_seconds -EALREADY
 *		anything else		-EPROTO
 *	other codes, reply not JSON	-EPROTO
 *	reply over CLORE_REPLY_CAP	-EFBIG
 *	HTTP 401/403 -EACCES, 404 -ENOSYS, 5xx -EIO, other non-200 -EPROTO
 *	curl: timeout -ETIMEDOUT, refused -ECONNREFUSED, name or route -EHOSTUNREACH,
 *	      TLS -EPROTO, other -EIO
 */
#include "clore/clore.h"
#include "core/util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#define CLORE_ERR_MAX 320

/* Spacing between requests, from the end of one reply to the next request.
 * Measuring from the end (not the start) keeps network jitter from ever
 * bringing two arrivals at the server closer than the limit; the extra 10%
 * is what community clients leave too. */
#define LIMIT_ANY_MS    1100
#define LIMIT_CREATE_MS 5100
#define BACKOFF_MS      1000

struct clore_client {
	CURL *curl;
	/* Both hold "auth: KEY" and are wiped before they are freed. */
	struct curl_slist *get_headers, *post_headers;
	char base[512]; /* no trailing slash */
	char key[CLORE_KEY_MAX];
	int loopback;
	double scale; /* RENDERFS_CLORE_RATE_SCALE, 1 unless loopback */
	long connect_ms, total_ms;
	int last_code; /* Clore's code of the last reply, -1 when none */
	char curl_err[CURL_ERROR_SIZE];
	char err[CLORE_ERR_MAX];
};

/* ------------------------------------------------------------ rate limiter */

/*
 * One for the process: Clore counts requests per key, not per connection.
 * lim_mu guards every lim_* field.  A request holds the "busy" token (not
 * the mutex) while it is on the network, so requests are serialised and
 * each waits for the previous reply before its own spacing starts.
 */
static pthread_mutex_t lim_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t lim_cv;                   /* signalled when busy drops; CLOCK_MONOTONIC */
static int lim_busy;                            /* lim_mu */
static int64_t lim_last_end = INT64_MIN / 4;    /* lim_mu: ms, end of the last reply */
static int64_t lim_last_create = INT64_MIN / 4; /* lim_mu: ms, end of the last create_order */
static pthread_once_t lim_once = PTHREAD_ONCE_INIT;

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void lim_init(void)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&lim_cv, &attr);
	pthread_condattr_destroy(&attr);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	/* This process may follow one that made a request just before it
	 * died (a crash and a remount): Clore counts per key, so the first
	 * request waits one window and the first create_order five. */
	lim_last_end = lim_last_create = mono_ms();
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};

	while (ms > 0 && nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void lim_acquire(double scale, int is_create)
{
	int64_t any_ms = (int64_t)(LIMIT_ANY_MS * scale), create_ms = (int64_t)(LIMIT_CREATE_MS * scale);
	struct timespec ts;
	int64_t now, at;

	pthread_mutex_lock(&lim_mu);
	for (;;) {
		now = mono_ms();
		at = now + 1000;
		if (!lim_busy) {
			at = lim_last_end + any_ms;
			if (is_create && lim_last_create + create_ms > at)
				at = lim_last_create + create_ms;
			if (now >= at)
				break;
		}
		ts.tv_sec = at / 1000;
		ts.tv_nsec = (at % 1000) * 1000000;
		pthread_cond_timedwait(&lim_cv, &lim_mu, &ts);
	}
	lim_busy = 1;
	pthread_mutex_unlock(&lim_mu);
}

static void lim_release(int is_create)
{
	pthread_mutex_lock(&lim_mu);
	lim_last_end = mono_ms();
	if (is_create)
		lim_last_create = lim_last_end;
	lim_busy = 0;
	pthread_cond_broadcast(&lim_cv);
	pthread_mutex_unlock(&lim_mu);
}

/* ------------------------------------------------------------ errors */

static void set_err(struct clore_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_err(struct clore_client *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
	/* Belt and braces: nothing we format holds the key, but a reply's
	 * error text is the server's. */
	if (c->key[0] && strstr(c->err, c->key))
		snprintf(c->err, sizeof(c->err), "Clore: error text withheld (it held the API key)");
}

double clore_rate_scale(const struct clore_client *c)
{
	return c ? c->scale : 1.0;
}

const char *clore_error(const struct clore_client *c)
{
	return c->err;
}

/* Copy remote text: at most sz-1 bytes, control characters replaced, no
 * UTF-8 sequence cut in half. */
static void copy_clean(char *dst, size_t sz, const char *src)
{
	size_t i, n;

	if (!sz)
		return;
	for (n = 0; src && src[n] && n < sz - 1; n++) {
		unsigned char ch = (unsigned char)src[n];

		dst[n] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
	}
	if (src && src[n]) {
		i = n;
		while (i > 0 && ((unsigned char)dst[i - 1] & 0xc0) == 0x80)
			i--;
		if (i > 0 && ((unsigned char)dst[i - 1] & 0xc0) == 0xc0)
			n = i - 1;
	}
	dst[n] = '\0';
}

struct code6 {
	const char *error;
	int err;
	const char *say;
};

static const struct code6 code6_table[] = {
    {"not_enough_balance", -ENOSPC, "not enough balance in the Clore wallet"},
    {"server-already-rented", -EADDRINUSE, "the server is already rented"},
    {"too_low_price", -ERANGE, "the price is below the server's minimum"},
    {"currency-not-allowed", -EPERM, "the server does not accept that currency"},
    {"server-offline", -EHOSTDOWN, "the server is offline"},
    {"exceeded_max_step", -EDOM, "the spot price may not be lowered that far at once"},
    {"can_lower_every_600_seconds", -EALREADY, "the spot price was lowered less than 600 s ago"},
};

/* Clore's reply code (not 0 or 5) to an errno and a reason. */
static int code_to_errno(struct clore_client *c, const char *ep, int code, const cJSON *root)
{
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
	char what[64];
	size_t i;

	switch (code) {
	case 1:
		set_err(c, "Clore %s: database error (code 1; often a short balance or a server just taken)",
			ep);
		return -EAGAIN;
	case 2: set_err(c, "Clore %s: invalid input (code 2)", ep); return -EINVAL;
	case 3: set_err(c, "Clore %s: invalid API key (code 3)", ep); return -EACCES;
	case 4: set_err(c, "Clore %s: invalid endpoint (code 4)", ep); return -ENOSYS;
	case 6: break;
	default: set_err(c, "Clore %s: unexpected reply code %d", ep, code); return -EPROTO;
	}
	util_clean_line(what, sizeof(what), cJSON_IsString(e) ? e->valuestring : "");
	for (i = 0; i < sizeof(code6_table) / sizeof(code6_table[0]); i++) {
		const struct code6 *t = &code6_table[i];
		const cJSON *x;

		if (strcmp(what, t->error))
			continue;
		if ((x = cJSON_GetObjectItemCaseSensitive(root, "max_step")) && cJSON_IsNumber(x))
			set_err(c, "Clore %s: %s (%s; max step %g)", ep, t->say, t->error, x->valuedouble);
		else if ((x = cJSON_GetObjectItemCaseSensitive(root, "time_to_lowering")) &&
			 cJSON_IsNumber(x))
			set_err(c, "Clore %s: %s (%s; %g s to wait)", ep, t->say, t->error, x->valuedouble);
		else
			set_err(c, "Clore %s: %s (%s)", ep, t->say, t->error);
		return t->err;
	}
	set_err(c, "Clore %s: error \"%s\" (code 6)", ep, what[0] ? what : "(none given)");
	return -EPROTO;
}

static int curl_to_errno(CURLcode rc)
{
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT: return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT: return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY: return -EHOSTUNREACH;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE: return -EPROTO;
	case CURLE_UNSUPPORTED_PROTOCOL: return -EPROTONOSUPPORT;
	default: return -EIO;
	}
}

/* ------------------------------------------------------------ URL and client */

static int host_is_loopback(const char *host)
{
	struct in_addr a;

	if (!strcasecmp(host, "localhost") || !strcmp(host, "::1"))
		return 1;
	if (inet_pton(AF_INET, host, &a) == 1)
		return (ntohl(a.s_addr) >> 24) == 127;
	return 0;
}

/* Checks scheme and authority; *loopback says whether the host is ours. */
static int url_check(const char *url, int *loopback, char *err, size_t errsz)
{
	char host[256];
	const char *p, *end, *hs, *he;
	int https;

	if (!strncasecmp(url, "https://", 8)) {
		https = 1;
		p = url + 8;
	} else if (!strncasecmp(url, "http://", 7)) {
		https = 0;
		p = url + 7;
	} else {
		snprintf(err, errsz, "Clore api_url %s: not an https:// URL", url);
		return -EINVAL;
	}
	end = p + strcspn(p, "/?#");
	if (memchr(p, '@', (size_t)(end - p))) {
		snprintf(err, errsz, "Clore api_url: user names in the URL are refused");
		return -EINVAL;
	}
	if (*p == '[') {
		hs = p + 1;
		he = memchr(hs, ']', (size_t)(end - hs));
		if (!he) {
			snprintf(err, errsz, "Clore api_url %s: bad IPv6 address", url);
			return -EINVAL;
		}
	} else {
		hs = p;
		he = memchr(hs, ':', (size_t)(end - hs));
		if (!he)
			he = end;
	}
	if (he == hs || (size_t)(he - hs) >= sizeof(host)) {
		snprintf(err, errsz, "Clore api_url %s: no host", url);
		return -EINVAL;
	}
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = '\0';
	*loopback = host_is_loopback(host);
	if (!https && !*loopback) {
		snprintf(err, errsz,
			 "Clore api_url %s: plain http is accepted only for loopback addresses "
			 "(127.0.0.0/8, localhost, [::1]); use https://",
			 url);
		return -EPERM;
	}
	return 0;
}

static int key_ok(const char *key)
{
	size_t n = strlen(key);

	if (!n || n >= CLORE_KEY_MAX)
		return 0;
	/* The key goes into a header line: printable, no spaces, no CR/LF. */
	for (; *key; key++)
		if (!isgraph((unsigned char)*key))
			return 0;
	return 1;
}

static double rate_scale(int loopback)
{
	const char *s = getenv("RENDERFS_CLORE_RATE_SCALE");
	char *end;
	double v;

	if (!loopback || !s || !*s)
		return 1.0;
	v = strtod(s, &end);
	if (*end || !(v > 0))
		return 1.0;
	return v < 0.01 ? 0.01 : v > 1 ? 1.0 : v;
}

static void free_headers(struct clore_client *c)
{
	struct curl_slist *lists[2] = {c->get_headers, c->post_headers}, *h;
	int i;

	for (i = 0; i < 2; i++) {
		for (h = lists[i]; h; h = h->next)
			explicit_bzero(h->data, strlen(h->data));
		curl_slist_free_all(lists[i]);
	}
	c->get_headers = c->post_headers = NULL;
}

struct clore_client *clore_new(const char *base_url, const char *api_key, char *err, size_t errsz)
{
	struct clore_client *c;
	char line[CLORE_KEY_MAX + 16];
	size_t n;
	int loopback = 0, rc;

	pthread_once(&lim_once, lim_init);
	if (!base_url || !*base_url)
		base_url = CLORE_DEFAULT_URL;
	rc = url_check(base_url, &loopback, err, errsz);
	if (rc) {
		errno = -rc;
		return NULL;
	}
	if (strlen(base_url) >= sizeof(c->base)) {
		snprintf(err, errsz, "Clore api_url is too long");
		errno = ENAMETOOLONG;
		return NULL;
	}
	if (!api_key || !key_ok(api_key)) {
		snprintf(err, errsz,
			 "Clore API key is empty, too long or holds spaces or control characters");
		errno = EINVAL;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		goto out_nomem;
	snprintf(c->base, sizeof(c->base), "%s", base_url);
	n = strlen(c->base);
	while (n > 0 && c->base[n - 1] == '/')
		c->base[--n] = '\0';
	snprintf(c->key, sizeof(c->key), "%s", api_key);
	c->loopback = loopback;
	c->scale = rate_scale(loopback);
	c->connect_ms = 10000;
	c->total_ms = 60000;
	c->last_code = -1;
	c->curl = curl_easy_init();
	if (!c->curl)
		goto out_free;
	snprintf(line, sizeof(line), "auth: %s", c->key);
	c->get_headers = curl_slist_append(NULL, line);
	c->post_headers = curl_slist_append(NULL, line);
	explicit_bzero(line, sizeof(line));
	if (!c->get_headers || !c->post_headers ||
	    !curl_slist_append(c->get_headers, "Accept: application/json") ||
	    !curl_slist_append(c->post_headers, "Accept: application/json") ||
	    !curl_slist_append(c->post_headers, "Content-Type: application/json"))
		goto out_headers;
	return c;

out_headers:
	free_headers(c);
	curl_easy_cleanup(c->curl);
out_free:
	explicit_bzero(c->key, sizeof(c->key));
	free(c);
out_nomem:
	snprintf(err, errsz, "Clore client: out of memory");
	errno = ENOMEM;
	return NULL;
}

void clore_free(struct clore_client *c)
{
	if (!c)
		return;
	free_headers(c);
	curl_easy_cleanup(c->curl);
	explicit_bzero(c->key, sizeof(c->key));
	free(c);
}

void clore_set_timeouts(struct clore_client *c, long connect_ms, long total_ms)
{
	if (connect_ms > 0)
		c->connect_ms = connect_ms;
	if (total_ms > 0)
		c->total_ms = total_ms;
}

/* ------------------------------------------------------------ one request */

struct reply_buf {
	char *p;
	size_t len, cap;
	int too_big;
};

static size_t on_data(char *data, size_t size, size_t nmemb, void *arg)
{
	struct reply_buf *b = arg;
	size_t n = size * nmemb, want;
	char *p;

	if (b->len + n > CLORE_REPLY_CAP) {
		b->too_big = 1;
		return 0;
	}
	if (b->len + n + 1 > b->cap) {
		want = b->cap ? b->cap : 16384;
		while (want < b->len + n + 1)
			want *= 2;
		p = realloc(b->p, want);
		if (!p)
			return 0;
		b->p = p;
		b->cap = want;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	return n;
}

/* One HTTP exchange (a POST when body is not NULL): *status and the body
 * in b, or -errno. */
static int http_once(struct clore_client *c, const char *ep, const char *url, const char *body,
		     struct reply_buf *b, long *status)
{
	CURLcode rc;
	int ret;

	curl_easy_reset(c->curl);
	curl_easy_setopt(c->curl, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, c->loopback ? "http,https" : "https");
#else
	curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS,
			 c->loopback ? (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS) : (long)CURLPROTO_HTTPS);
#endif
	/* A redirect would carry the auth header to wherever it points. */
	curl_easy_setopt(c->curl, CURLOPT_FOLLOWLOCATION, 0L);
	/* Nor may a proxy from the environment see a loopback exchange in clear. */
	if (c->loopback)
		curl_easy_setopt(c->curl, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, c->connect_ms);
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, c->total_ms);
	curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "renderfs");
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->curl_err);
	curl_easy_setopt(c->curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)CLORE_REPLY_CAP);
	if (body) {
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
		curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, c->post_headers);
	} else {
		curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
		curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, c->get_headers);
	}
	c->curl_err[0] = '\0';
	rc = curl_easy_perform(c->curl);
	if (b->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
		set_err(c, "Clore %s: reply larger than %u MiB refused", ep, CLORE_REPLY_CAP >> 20);
		return -EFBIG;
	}
	if (rc != CURLE_OK) {
		ret = curl_to_errno(rc);
		set_err(c, "Clore %s: %s%s%s", ep, curl_easy_strerror(rc), c->curl_err[0] ? ": " : "",
			c->curl_err);
		return ret;
	}
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, status);
	return 0;
}

/*
 * A whole API call: the limiter, retries on code 5 / HTTP 429, the code
 * mapping.  A GET without body, a POST with it.  On 0, *root is the parsed
 * reply (code 0), owned by the caller (cJSON_Delete).  query includes its "?".
 */
static int call(struct clore_client *c, const char *ep, const char *query, const char *body, cJSON **root)
{
	char url[1024];
	int is_create = !strcmp(ep, "create_order");
	struct reply_buf b = {0};
	const cJSON *code;
	cJSON *r = NULL;
	long status;
	int tries, ret;

	*root = NULL;
	c->last_code = -1;
	c->err[0] = '\0';
	snprintf(url, sizeof(url), "%s/%s%s", c->base, ep, query ? query : "");
	for (tries = 1;; tries++) {
		b.len = 0;
		b.too_big = 0;
		status = 0;
		lim_acquire(c->scale, is_create);
		ret = http_once(c, ep, url, body, &b, &status);
		lim_release(is_create);
		if (ret)
			goto out;
		r = cJSON_ParseWithLength(b.p ? b.p : "", b.len);
		code = cJSON_GetObjectItemCaseSensitive(r, "code");
		if (status == 429 || (cJSON_IsNumber(code) && code->valueint == 5)) {
			c->last_code = 5;
			cJSON_Delete(r);
			r = NULL;
			if (tries >= CLORE_MAX_TRIES) {
				set_err(c, "Clore %s: over the rate limit, still after %d tries", ep, tries);
				ret = -EBUSY;
				goto out;
			}
			sleep_ms((int64_t)(BACKOFF_MS * c->scale) << (tries - 1));
			continue;
		}
		break;
	}
	if (!cJSON_IsNumber(code)) {
		if (status == 401 || status == 403) {
			set_err(c, "Clore %s: HTTP %ld: invalid API key?", ep, status);
			ret = -EACCES;
		} else if (status == 404) {
			set_err(c, "Clore %s: HTTP 404: no such endpoint", ep);
			ret = -ENOSYS;
		} else if (status >= 500) {
			set_err(c, "Clore %s: HTTP %ld from the server", ep, status);
			ret = -EIO;
		} else if (status != 200) {
			set_err(c, "Clore %s: unexpected HTTP %ld", ep, status);
			ret = -EPROTO;
		} else {
			set_err(c, "Clore %s: the reply is not JSON with a code", ep);
			ret = -EPROTO;
		}
		goto out;
	}
	c->last_code = code->valueint;
	if (code->valueint != 0) {
		ret = code_to_errno(c, ep, code->valueint, r);
		goto out;
	}
	*root = r;
	r = NULL;
out:
	cJSON_Delete(r);
	free(b.p);
	return ret;
}

/* ------------------------------------------------------------ tolerant readers */

static const cJSON *jget(const cJSON *o, const char *k)
{
	return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

static double jnum_of(const cJSON *v, double def)
{
	char *end;
	double d;

	/* 1e999 parses as infinity: no price, size or count is infinite. */
	if (cJSON_IsNumber(v))
		return isfinite(v->valuedouble) ? v->valuedouble : def;
	if (cJSON_IsBool(v))
		return cJSON_IsTrue(v);
	if (cJSON_IsString(v) && v->valuestring[0]) {
		d = strtod(v->valuestring, &end);
		if (!*end && isfinite(d))
			return d;
	}
	return def;
}

static double jnum(const cJSON *o, const char *k, double def)
{
	return jnum_of(jget(o, k), def);
}

static int64_t jint(const cJSON *o, const char *k, int64_t def)
{
	double d = jnum(o, k, NAN);

	if (isnan(d) || d > 9e18 || d < -9e18)
		return def;
	return (int64_t)d;
}

static int jbool(const cJSON *o, const char *k, int def)
{
	const cJSON *v = jget(o, k);

	if (cJSON_IsBool(v))
		return cJSON_IsTrue(v);
	if (cJSON_IsNumber(v))
		return v->valuedouble != 0;
	if (cJSON_IsString(v))
		return !strcasecmp(v->valuestring, "true") || !strcmp(v->valuestring, "1");
	return def;
}

static void jstr_of(const cJSON *v, char *dst, size_t sz)
{
	if (cJSON_IsString(v))
		copy_clean(dst, sz, v->valuestring);
	else if (cJSON_IsNumber(v))
		snprintf(dst, sz, "%.15g", v->valuedouble);
	else if (sz)
		dst[0] = '\0';
}

static void jstr(const cJSON *o, const char *k, char *dst, size_t sz)
{
	jstr_of(jget(o, k), dst, sz);
}

/* A gpu_array element: "name", ["name"], or {"name": "..."}. */
static void gpu_name(const cJSON *e, char *dst, size_t sz)
{
	if (cJSON_IsArray(e))
		e = cJSON_GetArrayItem(e, 0);
	else if (cJSON_IsObject(e))
		e = jget(e, "name");
	jstr_of(e, dst, sz);
}

int clore_gpu_count(const char *specs_gpu, int fallback)
{
	const char *p = specs_gpu;
	long n = 0;
	int digits = 0;

	if (!p)
		return fallback;
	while (*p == ' ')
		p++;
	for (; isdigit((unsigned char)*p) && digits < 4; p++, digits++)
		n = n * 10 + (*p - '0');
	while (*p == ' ')
		p++;
	if (!digits || (*p != 'x' && *p != 'X') || (p[1] && p[1] != ' ') || n < 1 || n > 256)
		return fallback;
	return (int)n;
}

/* specs.gpu without its count prefix. */
static void gpu_model_of(const char *specs_gpu, char *dst, size_t sz)
{
	const char *p = specs_gpu;

	if (clore_gpu_count(specs_gpu, 0) > 0) {
		p = strpbrk(specs_gpu, "xX") + 1;
		while (*p == ' ')
			p++;
	}
	copy_clean(dst, sz, p);
}

static void gpu_fields(const cJSON *o, char *model, size_t msz, int *count, double *gpuram)
{
	const cJSON *specs = jget(o, "specs"), *arr = jget(o, "gpu_array");
	char sg[CLORE_STR_MAX];
	int n = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : 0;

	jstr(specs, "gpu", sg, sizeof(sg));
	model[0] = '\0';
	if (sg[0])
		gpu_model_of(sg, model, msz);
	if (!model[0] && n > 0)
		gpu_name(cJSON_GetArrayItem(arr, 0), model, msz);
	*count = clore_gpu_count(sg, n > 0 ? n : (model[0] ? 1 : 0));
	*gpuram = jnum(specs, "gpuram", 0);
}

static struct clore_price *price_slot(struct clore_server *s, const char *cur)
{
	size_t i;

	for (i = 0; i < s->n_prices; i++)
		if (!strcmp(s->prices[i].currency, cur))
			return &s->prices[i];
	if (s->n_prices == CLORE_MAX_COINS)
		return NULL;
	copy_clean(s->prices[i].currency, sizeof(s->prices[i].currency), cur);
	s->prices[i].on_demand = -1;
	s->prices[i].spot = -1;
	s->n_prices++;
	return &s->prices[i];
}

static void parse_server(const cJSON *o, struct clore_server *s)
{
	const cJSON *price = jget(o, "price"), *usd = jget(price, "usd"), *specs = jget(o, "specs");
	const cJSON *net = jget(specs, "net"), *rating = jget(o, "rating"), *e;
	struct clore_price *p;

	memset(s, 0, sizeof(*s));
	s->id = jint(o, "id", 0);
	s->owner = jint(o, "owner", 0);
	s->mrl = (int)jint(o, "mrl", 0);
	s->rented = jbool(o, "rented", 0);
	s->reliability = jnum(o, "reliability", 0);
	s->rating = cJSON_IsObject(rating) ? jnum(rating, "avg", 0) : jnum_of(rating, 0);
	s->rating_cnt = (int)jint(rating, "cnt", 0);
	cJSON_ArrayForEach(e, jget(o, "allowed_coins"))
	{
		if (s->n_coins == CLORE_MAX_COINS)
			break;
		if (cJSON_IsString(e))
			copy_clean(s->allowed_coins[s->n_coins++], CLORE_COIN_MAX, e->valuestring);
	}
	cJSON_ArrayForEach(e, jget(price, "on_demand"))
	{
		if (e->string && (p = price_slot(s, e->string)))
			p->on_demand = jnum_of(e, -1);
	}
	cJSON_ArrayForEach(e, jget(price, "spot"))
	{
		if (e->string && (p = price_slot(s, e->string)))
			p->spot = jnum_of(e, -1);
	}
	s->usd_on_demand_clore = jnum(usd, "on_demand_clore", -1);
	s->usd_on_demand_usd = jnum(usd, "on_demand_usd", -1);
	s->usd_on_demand_btc = jnum(usd, "on_demand_btc", -1);
	s->usd_spot = jnum(usd, "spot", -1);
	gpu_fields(o, s->gpu_model, sizeof(s->gpu_model), &s->gpu_count, &s->gpuram);
	jstr(specs, "cpu", s->cpu, sizeof(s->cpu));
	s->ram = jnum(specs, "ram", 0);
	jstr(o, "cuda_version", s->cuda_version, sizeof(s->cuda_version));
	jstr(net, "cc", s->country, sizeof(s->country));
	s->net_up = jnum(net, "up", 0);
	s->net_down = jnum(net, "down", 0);
}

static void parse_order(const cJSON *o, struct clore_order *d)
{
	const cJSON *e, *pc = jget(o, "pub_cluster");

	memset(d, 0, sizeof(*d));
	d->id = jint(o, "id", 0);
	d->server_id = jint(o, "si", 0);
	d->ct = jint(o, "ct", 0);
	jstr(o, "currency", d->currency, sizeof(d->currency));
	d->price = jnum(o, "price", 0);
	d->creation_fee = jnum(o, "creation_fee", 0);
	d->spend = jnum(o, "spend", 0);
	jstr(o, "image", d->image, sizeof(d->image));
	d->mrl = (int)jint(o, "mrl", 0);
	d->spot = jbool(o, "spot", 0);
	d->online = jbool(o, "online", 0);
	d->expired = jbool(o, "expired", 0);
	jstr_of(cJSON_IsArray(pc) ? cJSON_GetArrayItem(pc, 0) : pc, d->host, sizeof(d->host));
	cJSON_ArrayForEach(e, jget(o, "tcp_ports"))
	{
		if (d->n_tcp_ports == CLORE_MAX_PORTS)
			break;
		jstr_of(e, d->tcp_ports[d->n_tcp_ports], sizeof(d->tcp_ports[0]));
		if (d->tcp_ports[d->n_tcp_ports][0])
			d->n_tcp_ports++;
	}
	jstr(o, "http_port", d->http_port, sizeof(d->http_port));
	gpu_fields(o, d->gpu_model, sizeof(d->gpu_model), &d->gpu_count, &d->gpuram);
}

/* Copies each element of the array field k of root into a calloc'd array of
 * at most cap elements of size elsz. */
static int copy_array(struct clore_client *c, const char *ep, const cJSON *root, const char *k, size_t cap,
		      size_t elsz, void (*parse)(const cJSON *, void *), void **out, size_t *n)
{
	const cJSON *arr = jget(root, k), *e;
	size_t count, i = 0;
	char *v;

	*out = NULL;
	*n = 0;
	if (!arr)
		return 0; /* "may have different fields": none is an empty list */
	if (!cJSON_IsArray(arr)) {
		set_err(c, "Clore %s: \"%s\" is not a list", ep, k);
		return -EPROTO;
	}
	count = (size_t)cJSON_GetArraySize(arr);
	if (count > cap)
		count = cap;
	if (!count)
		return 0;
	v = calloc(count, elsz);
	if (!v) {
		set_err(c, "Clore %s: out of memory", ep);
		return -ENOMEM;
	}
	cJSON_ArrayForEach(e, arr)
	{
		if (i == count)
			break;
		if (!cJSON_IsObject(e))
			continue;
		parse(e, v + i * elsz);
		i++;
	}
	*out = v;
	*n = i;
	return 0;
}

static void parse_server_v(const cJSON *o, void *d)
{
	parse_server(o, d);
}

static void parse_order_v(const cJSON *o, void *d)
{
	parse_order(o, d);
}

static void parse_wallet_v(const cJSON *o, void *d)
{
	struct clore_wallet *w = d;

	memset(w, 0, sizeof(*w));
	jstr(o, "name", w->name, sizeof(w->name));
	w->balance = jnum(o, "balance", 0);
	w->withdrawal_fee = jnum(o, "withdrawal_fee", 0);
	jstr(o, "deposit", w->deposit, sizeof(w->deposit));
}

/* ------------------------------------------------------------ endpoints */

int clore_marketplace(struct clore_client *c, struct clore_server **out, size_t *n)
{
	cJSON *root;
	int ret;

	*out = NULL;
	*n = 0;
	ret = call(c, "marketplace", NULL, NULL, &root);
	if (ret)
		return ret;
	ret = copy_array(c, "marketplace", root, "servers", CLORE_MAX_SERVERS, sizeof(**out), parse_server_v,
			 (void **)out, n);
	cJSON_Delete(root);
	return ret;
}

int clore_wallets(struct clore_client *c, struct clore_wallet **out, size_t *n)
{
	cJSON *root;
	int ret;

	*out = NULL;
	*n = 0;
	ret = call(c, "wallets", NULL, NULL, &root);
	if (ret)
		return ret;
	ret = copy_array(c, "wallets", root, "wallets", CLORE_MAX_COINS * 4, sizeof(**out), parse_wallet_v,
			 (void **)out, n);
	cJSON_Delete(root);
	return ret;
}

int clore_my_orders(struct clore_client *c, int return_completed, struct clore_order **out, size_t *n)
{
	cJSON *root;
	int ret;

	*out = NULL;
	*n = 0;
	ret = call(c, "my_orders", return_completed ? "?return_completed=true" : NULL, NULL, &root);
	if (ret)
		return ret;
	ret = copy_array(c, "my_orders", root, "orders", CLORE_MAX_ORDERS, sizeof(**out), parse_order_v,
			 (void **)out, n);
	cJSON_Delete(root);
	return ret;
}

/* POST ep with body (consumed); the reply must be code 0. */
static int post(struct clore_client *c, const char *ep, cJSON *body)
{
	cJSON *root = NULL;
	char *text;
	int ret;

	text = body ? cJSON_PrintUnformatted(body) : NULL;
	cJSON_Delete(body);
	if (!text) {
		set_err(c, "Clore %s: out of memory", ep);
		return -ENOMEM;
	}
	ret = call(c, ep, NULL, text, &root);
	cJSON_Delete(root);
	/* The body may hold the ssh public key and env values: not secret,
	 * but nothing of it needs to outlive the call. */
	explicit_bzero(text, strlen(text));
	cJSON_free(text);
	return ret;
}

int clore_create_order(struct clore_client *c, const struct clore_order_req *req)
{
	cJSON *body, *ports, *env;
	const char *const *e;
	char name[128];
	const char *eq;
	size_t i;

	c->err[0] = '\0';
	if (!req->image || !*req->image || req->server_id <= 0 ||
	    (req->spot && !(req->spotprice > 0 && isfinite(req->spotprice)))) {
		set_err(c, "Clore create_order: needs a server id, an image and, for spot, a positive bid");
		return -EINVAL;
	}
	body = cJSON_CreateObject();
	if (!body)
		goto out_nomem;
	if (!cJSON_AddNumberToObject(body, "renting_server", (double)req->server_id) ||
	    !cJSON_AddStringToObject(body, "type", req->spot ? "spot" : "on-demand") ||
	    !cJSON_AddStringToObject(body, "currency", req->currency ? req->currency : "CLORE-Blockchain") ||
	    !cJSON_AddStringToObject(body, "image", req->image))
		goto out_body;
	if (!(ports = cJSON_AddObjectToObject(body, "ports")))
		goto out_body;
	if (!req->n_ports && !cJSON_AddStringToObject(ports, "22", "tcp"))
		goto out_body;
	for (i = 0; i < req->n_ports; i++) {
		snprintf(name, sizeof(name), "%d", req->ports[i].port);
		if (!cJSON_AddStringToObject(ports, name, req->ports[i].kind ? req->ports[i].kind : "tcp"))
			goto out_body;
	}
	if (req->env) {
		if (!(env = cJSON_AddObjectToObject(body, "env")))
			goto out_body;
		for (e = req->env; *e; e++) {
			eq = strchr(*e, '=');
			if (!eq || eq == *e || (size_t)(eq - *e) >= sizeof(name)) {
				cJSON_Delete(body);
				set_err(c, "Clore create_order: env entries must be NAME=value");
				return -EINVAL;
			}
			memcpy(name, *e, (size_t)(eq - *e));
			name[eq - *e] = '\0';
			if (!cJSON_AddStringToObject(env, name, eq + 1))
				goto out_body;
		}
	}
	if (req->ssh_key && !cJSON_AddStringToObject(body, "ssh_key", req->ssh_key))
		goto out_body;
	if (req->command && !cJSON_AddStringToObject(body, "command", req->command))
		goto out_body;
	if (req->spot && !cJSON_AddNumberToObject(body, "spotprice", req->spotprice))
		goto out_body;
	return post(c, "create_order", body);

out_body:
	cJSON_Delete(body);
out_nomem:
	set_err(c, "Clore create_order: out of memory");
	return -ENOMEM;
}

int clore_cancel_order(struct clore_client *c, int64_t id, const char *issue)
{
	struct clore_order *orders;
	char why[CLORE_ERR_MAX];
	size_t n, i;
	cJSON *body;
	int ret, rc, code;

	body = cJSON_CreateObject();
	if (!body || !cJSON_AddNumberToObject(body, "id", (double)id) ||
	    (issue && !cJSON_AddStringToObject(body, "issue", issue))) {
		cJSON_Delete(body);
		set_err(c, "Clore cancel_order: out of memory");
		return -ENOMEM;
	}
	ret = post(c, "cancel_order", body);
	code = c->last_code;
	if (!ret || (code != 2 && code != 6))
		return ret;
	/*
	 * Refused.  What Clore answers for an order that already ended is not
	 * documented; whether it is still running is: it is so only when the
	 * active list has it.  Anything else is a real failure (and the order
	 * may still cost money), so say so.
	 */
	snprintf(why, sizeof(why), "%s", c->err);
	rc = clore_my_orders(c, 0, &orders, &n);
	if (rc) {
		snprintf(why + strlen(why), sizeof(why) - strlen(why), "; checking my_orders: %s", c->err);
		set_err(c, "%s", why);
		return ret;
	}
	for (i = 0; i < n && orders[i].id != id; i++)
		;
	free(orders);
	if (i == n) {
		c->err[0] = '\0';
		return 0;
	}
	set_err(c, "%s (order %lld is still active)", why, (long long)id);
	return ret;
}

int clore_set_spot_price(struct clore_client *c, int64_t order_id, double per_day)
{
	cJSON *body;

	if (!(per_day > 0 && isfinite(per_day))) {
		set_err(c, "Clore set_spot_price: the price must be positive");
		return -EINVAL;
	}
	body = cJSON_CreateObject();
	if (!body || !cJSON_AddNumberToObject(body, "order_id", (double)order_id) ||
	    !cJSON_AddNumberToObject(body, "desired_price", per_day)) {
		cJSON_Delete(body);
		set_err(c, "Clore set_spot_price: out of memory");
		return -ENOMEM;
	}
	return post(c, "set_spot_price", body);
}

int clore_spot_market(struct clore_client *c, int64_t server_id, struct clore_spot *out)
{
	const cJSON *market, *srv, *e;
	char query[64];
	cJSON *root;
	int ret;

	memset(out, 0, sizeof(*out));
	snprintf(query, sizeof(query), "?market=%lld", (long long)server_id);
	ret = call(c, "spot_marketplace", query, NULL, &root);
	if (ret)
		return ret;
	market = jget(root, "market");
	srv = jget(market, "server");
	out->exists = jbool(root, "exists", cJSON_IsObject(market));
	cJSON_ArrayForEach(e, jget(market, "offers"))
	{
		struct clore_spot_offer *f = &out->offers[out->n_offers];

		if (out->n_offers == CLORE_MAX_OFFERS)
			break;
		if (!cJSON_IsObject(e))
			continue;
		f->offer_id = jint(e, "offer_id", 0);
		f->bid = jnum(e, "bid", 0);
		f->active = jbool(e, "active", 1);
		f->my = jbool(e, "my", 0);
		jstr(e, "currency", f->currency, sizeof(f->currency));
		out->n_offers++;
	}
	cJSON_ArrayForEach(e, jget(srv, "min_pricing"))
	{
		struct clore_price *p = &out->min_pricing[out->n_min_pricing];

		if (out->n_min_pricing == CLORE_MAX_COINS)
			break;
		if (!e->string)
			continue;
		copy_clean(p->currency, sizeof(p->currency), e->string);
		p->on_demand = -1;
		p->spot = jnum_of(e, -1);
		out->n_min_pricing++;
	}
	cJSON_ArrayForEach(e, jget(market, "currency_rates_in_usd"))
	{
		if (out->n_rates == CLORE_MAX_COINS)
			break;
		if (!e->string)
			continue;
		copy_clean(out->rates[out->n_rates].currency, CLORE_COIN_MAX, e->string);
		out->rates[out->n_rates++].usd = jnum_of(e, 0);
	}
	out->online = jbool(srv, "online", 0);
	out->mrl = (int)jint(srv, "mrl", 0);
	cJSON_Delete(root);
	return 0;
}

/* ------------------------------------------------------------ the key */

int clore_load_key(const char *key_file, char *key, size_t sz, char *err, size_t errsz)
{
	const char *env = getenv("CLORE_API_KEY"), *home;
	char path[4096], buf[CLORE_KEY_MAX + 2];
	struct stat st;
	ssize_t got;
	size_t n;
	int fd, ret = 0;

	key[0] = '\0';
	if (env && *env) {
		if (!key_ok(env) || strlen(env) >= sz) {
			snprintf(err, errsz,
				 "CLORE_API_KEY is too long or holds spaces or control characters");
			return -EINVAL;
		}
		snprintf(key, sz, "%s", env);
		return 0;
	}
	if (!key_file || !*key_file) {
		snprintf(err, errsz, "no Clore API key: set CLORE_API_KEY or [clore] api_key_file");
		return -ENOENT;
	}
	if (key_file[0] == '~' && key_file[1] == '/') {
		home = getenv("HOME");
		if (!home) {
			snprintf(err, errsz, "cannot expand %s: HOME is not set", key_file);
			return -ENOENT;
		}
		snprintf(path, sizeof(path), "%s%s", home, key_file + 1);
	} else {
		snprintf(path, sizeof(path), "%s", key_file);
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errsz, "Clore API key file %s: %s", path, strerror(errno));
		return ret;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		snprintf(err, errsz, "Clore API key file %s: %s", path, strerror(errno));
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errsz, "Clore API key file %s is not a regular file", path);
		ret = -EINVAL;
		goto out_close;
	}
	if (st.st_mode & 077) {
		snprintf(err, errsz, "Clore API key file %s is readable by others (mode %04o); chmod 600 it",
			 path, (unsigned)(st.st_mode & 07777));
		ret = -EPERM;
		goto out_close;
	}
	if (st.st_uid != geteuid() && st.st_uid != 0) {
		snprintf(err, errsz, "Clore API key file %s belongs to another user", path);
		ret = -EPERM;
		goto out_close;
	}
	got = read(fd, buf, sizeof(buf) - 1);
	if (got < 0) {
		ret = -errno;
		snprintf(err, errsz, "Clore API key file %s: %s", path, strerror(errno));
		goto out_wipe;
	}
	buf[got] = '\0';
	n = strcspn(buf, "\r\n");
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		buf[--n] = '\0';
	if (!key_ok(buf) || n >= sz) {
		snprintf(err, errsz, "Clore API key file %s: the first line must be the key alone", path);
		ret = -EINVAL;
		goto out_wipe;
	}
	memcpy(key, buf, n + 1);
out_wipe:
	explicit_bzero(buf, sizeof(buf));
out_close:
	close(fd);
	return ret;
}

/* ------------------------------------------------------------ pure helpers */

int clore_server_takes(const struct clore_server *s, const char *currency)
{
	size_t i;

	for (i = 0; i < s->n_coins; i++)
		if (!strcmp(s->allowed_coins[i], currency))
			return 1;
	return 0;
}

double clore_server_price(const struct clore_server *s, int spot, const char *currency)
{
	size_t i;

	for (i = 0; i < s->n_prices; i++)
		if (!strcmp(s->prices[i].currency, currency))
			return spot ? s->prices[i].spot : s->prices[i].on_demand;
	return -1;
}

double clore_usd_per_gpu_hour(const struct clore_server *s, int spot, const char *currency)
{
	double day = -1, v[3] = {s->usd_on_demand_clore, s->usd_on_demand_usd, s->usd_on_demand_btc};
	int i;

	if (spot) {
		day = s->usd_spot;
	} else if (currency && !strcmp(currency, "CLORE-Blockchain")) {
		day = v[0];
	} else if (currency && !strcmp(currency, "USD-Blockchain")) {
		day = v[1];
	} else if (currency && !strcmp(currency, "bitcoin")) {
		day = v[2];
	} else if (!currency) {
		for (i = 0; i < 3; i++)
			if (v[i] >= 0 && (day < 0 || v[i] < day))
				day = v[i];
	}
	if (day < 0 || s->gpu_count < 1)
		return -1;
	return day / 24.0 / s->gpu_count;
}

int clore_order_ssh(const struct clore_order *o, char *host, size_t hostsz, int *port)
{
	const char *colon;
	char *end;
	long hp;
	size_t i;

	if (!o->host[0])
		return -EAGAIN;
	for (i = 0; i < o->n_tcp_ports; i++) {
		colon = strchr(o->tcp_ports[i], ':');
		if (!colon || colon - o->tcp_ports[i] != 2 || strncmp(o->tcp_ports[i], "22", 2))
			continue;
		hp = strtol(colon + 1, &end, 10);
		if (*end || end == colon + 1 || hp < 1 || hp > 65535)
			continue;
		snprintf(host, hostsz, "%s", o->host);
		*port = (int)hp;
		return 0;
	}
	return -EAGAIN;
}

const struct clore_order *clore_newest_order(const struct clore_order *orders, size_t n, int64_t server_id,
					     int64_t not_before)
{
	const struct clore_order *best = NULL;
	size_t i;

	for (i = 0; i < n; i++) {
		const struct clore_order *o = &orders[i];

		if (o->server_id != server_id || o->ct < not_before)
			continue;
		if (!best || o->ct > best->ct || (o->ct == best->ct && o->id > best->id))
			best = o;
	}
	return best;
}

double clore_spot_floor(const struct clore_spot *m, const char *currency)
{
	size_t i;

	for (i = 0; i < m->n_min_pricing; i++)
		if (!strcmp(m->min_pricing[i].currency, currency))
			return m->min_pricing[i].spot;
	return -1;
}
