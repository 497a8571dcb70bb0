/*
 * test_clore: the Clore API client against tests/clore_fake.py.
 *
 * The program starts the fake itself (python3; the script is found through
 * RENDERFS_SRC=<source root>, else next to this source file, else in
 * ./tests), with a scenario written to a temp dir, and reads "listening
 * PORT" from it.  Both sides run with the rate windows scaled by 0.1
 * (RENDERFS_CLORE_RATE_SCALE for the client, --rate-scale for the fake), so
 * the 1 request/s and 5 s create_order limits cost 0.1 s and 0.5 s here;
 * the fake still counts every request that comes too early, and the suite
 * ends by asserting that it counted none.
 *
 * Exit 0 when every check held, 77 when python3 or the fake is missing.
 */
#include <curl/curl.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clore/clore.h"
#include "check.h"

#define KEY "sk-test-5f2c9a7e1b3d4c6f"

static char tmpdir[4096];
static char base_url[128];
static char ctl_url[128];
static pid_t fake_pid = -1;

/* Every error message is checked for the key. */
#define CHECK_RC(c, rc, want)                                                                              \
	do {                                                                                               \
		int rc_ = (rc);                                                                            \
		CHECK(rc_ == (want), "%s = %d (%s), want %d", #rc, rc_, clore_error(c), want);             \
		CHECK(!strstr(clore_error(c), KEY), "the key is in an error message: %s", clore_error(c)); \
	} while (0)

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------ the fake */

static const char scenario[] =
    "{\"rates\": {\"CLORE-Blockchain\": 0.02, \"bitcoin\": 65000, \"USD-Blockchain\": 1.0},\n"
    " \"creation_fee_usd\": 0.1,\n"
    " \"servers\": [\n"
    "  {\"id\": 101, \"gpus\": 2, \"gpu\": \"NVIDIA GeForce RTX 4090\", \"gpuram\": 24,\n"
    "   \"on_demand\": {\"CLORE-Blockchain\": 120.5, \"USD-Blockchain\": 7.2},\n"
    "   \"spot\": {\"CLORE-Blockchain\": 60}, \"min_spot\": {\"CLORE-Blockchain\": 50},\n"
    "   \"reliability\": 0.991, \"allowed_coins\": [\"CLORE-Blockchain\", \"USD-Blockchain\"],\n"
    "   \"ssh\": {\"host\": \"127.0.0.1\", \"port\": 2201}, \"online_after\": 1.0},\n"
    "  {\"id\": 102, \"gpus\": 1, \"gpu\": \"NVIDIA GeForce RTX 3090\", \"gpuram\": 24.5,\n"
    "   \"on_demand\": {\"CLORE-Blockchain\": 88.8}, \"spot\": {\"CLORE-Blockchain\": 40.4},\n"
    "   \"gpu_array_nested\": true, \"online_after\": \"never\"},\n"
    "  {\"id\": 103, \"gpus\": 1, \"gpu\": \"NVIDIA RTX A6000\", \"gpuram\": 48, \"rented\": true},\n"
    "  {\"id\": 104, \"gpus\": 4, \"gpu\": \"NVIDIA GeForce RTX 3080\", \"gpuram\": 10,\n"
    "   \"on_demand\": {\"bitcoin\": 0.00004}, \"allowed_coins\": [\"bitcoin\"]},\n"
    "  {\"id\": 105, \"gpus\": 1, \"gpu\": \"NVIDIA GeForce RTX 4080\", \"gpuram\": 16, \"taken_on_order\": "
    "true},\n"
    "  {\"id\": 106, \"gpus\": 3, \"gpu\": \"NVIDIA GeForce RTX 2080 Ti\", \"gpuram\": 11,\n"
    "   \"omit\": [\"rating\", \"price.usd\", \"specs.gpu\", \"reliability\", \"mrl\"]},\n"
    "  {\"id\": 107, \"gpus\": 1, \"gpu\": \"NVIDIA GeForce RTX 4090\", \"gpuram\": 24}],\n"
    " \"wallets\": [{\"name\": \"CLORE-Blockchain\", \"balance\": 1000, \"deposit\": \"cl0re-dep\"},\n"
    "             {\"name\": \"USD-Blockchain\", \"balance\": 0.2}],\n"
    " \"orders\": [{\"id\": 77, \"server\": 107, \"spot\": false, \"currency\": \"CLORE-Blockchain\",\n"
    "             \"price\": 100, \"ct_ago\": 7200, \"online\": true, \"image\": \"user/own\"}]}\n";

static int find_fake(char *path, size_t sz)
{
	const char *src = getenv("RENDERFS_SRC");
	char here[4096], *slash;

	if (src && *src) {
		snprintf(path, sz, "%s/tests/clore_fake.py", src);
		if (access(path, R_OK) == 0)
			return 0;
	}
	/* __FILE__ is tests/unit/test_clore.c as the compiler saw it,
	 * relative to the build directory that meson runs tests in. */
	snprintf(here, sizeof(here), "%s", __FILE__);
	slash = strrchr(here, '/');
	if (slash) {
		*slash = '\0';
		snprintf(path, sz, "%s/../clore_fake.py", here);
		if (access(path, R_OK) == 0)
			return 0;
	}
	snprintf(path, sz, "tests/clore_fake.py");
	return access(path, R_OK) == 0 ? 0 : -ENOENT;
}

static void stop_fake(void)
{
	if (fake_pid > 0) {
		kill(fake_pid, SIGTERM);
		waitpid(fake_pid, NULL, 0);
		fake_pid = -1;
	}
}

static int start_fake(void)
{
	char fake[4096], scen[4200], logf[4200], line[128];
	int pfd[2], port = 0;
	size_t len = 0;
	FILE *f;

	if (find_fake(fake, sizeof(fake))) {
		printf("SKIP: tests/clore_fake.py not found (set RENDERFS_SRC)\n");
		return 77;
	}
	if (system("python3 -c 'import http.server' >/dev/null 2>&1") != 0) {
		printf("SKIP: python3 is needed to run the fake Clore API\n");
		return 77;
	}
	snprintf(scen, sizeof(scen), "%s/scenario.json", tmpdir);
	snprintf(logf, sizeof(logf), "%s/fake.log", tmpdir);
	f = fopen(scen, "w");
	if (!f || fputs(scenario, f) < 0 || fclose(f)) {
		printf("cannot write %s\n", scen);
		return 1;
	}
	if (pipe(pfd) < 0)
		return 1;
	fake_pid = fork();
	if (fake_pid < 0)
		return 1;
	if (fake_pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		close(pfd[1]);
		execlp("python3", "python3", fake, "--port", "0", "--key", KEY, "--scenario", scen,
		       "--rate-scale", "0.1", "--log", logf, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	atexit(stop_fake);
	/* Wait for readiness, not a guessed time. */
	for (;;) {
		struct pollfd p = {.fd = pfd[0], .events = POLLIN};
		ssize_t got;

		if (poll(&p, 1, 15000) <= 0)
			break;
		got = read(pfd[0], line + len, sizeof(line) - 1 - len);
		if (got <= 0)
			break;
		len += (size_t)got;
		line[len] = '\0';
		if (strchr(line, '\n') || len == sizeof(line) - 1)
			break;
	}
	close(pfd[0]);
	if (sscanf(line, "listening %d", &port) != 1 || port <= 0) {
		printf("the fake did not start (said: %.*s)\n", (int)len, line);
		return 1;
	}
	snprintf(base_url, sizeof(base_url), "http://127.0.0.1:%d/v1", port);
	snprintf(ctl_url, sizeof(ctl_url), "http://127.0.0.1:%d/_control", port);
	return 0;
}

/* ------------------------------------------------------------ control channel */

struct buf {
	char *p;
	size_t len;
};

static size_t on_ctl(char *d, size_t s, size_t n, void *arg)
{
	struct buf *b = arg;
	char *p = realloc(b->p, b->len + s * n + 1);

	if (!p)
		return 0;
	memcpy(p + b->len, d, s * n);
	b->p = p;
	b->len += s * n;
	b->p[b->len] = '\0';
	return s * n;
}

/* GET (body NULL) or POST a control endpoint; the reply parsed (caller deletes). */
static cJSON *ctl(const char *what, const char *body)
{
	struct buf b = {0};
	char url[256];
	CURL *h = curl_easy_init();
	cJSON *r = NULL;

	snprintf(url, sizeof(url), "%s/%s", ctl_url, what);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_ctl);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
	if (body)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	if (curl_easy_perform(h) == CURLE_OK && b.p)
		r = cJSON_Parse(b.p);
	curl_easy_cleanup(h);
	free(b.p);
	CHECK(r != NULL, "control %s failed", what);
	return r;
}

static void ctl_do(const char *what, const char *body)
{
	cJSON_Delete(ctl(what, body));
}

static double state_num(const char *field)
{
	cJSON *s = ctl("state", NULL);
	double v = cJSON_GetNumberValue(cJSON_GetObjectItem(s, field));

	cJSON_Delete(s);
	return v;
}

/* ------------------------------------------------------------ the checks */

static const struct clore_server *find_server(const struct clore_server *s, size_t n, int64_t id)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (s[i].id == id)
			return &s[i];
	return NULL;
}

static const struct clore_order *find_order(const struct clore_order *o, size_t n, int64_t id)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (o[i].id == id)
			return &o[i];
	return NULL;
}

static void test_urls_and_helpers(void)
{
	struct clore_order o = {0};
	struct clore_server s = {0};
	struct clore_client *c;
	char err[256], host[64];
	int port = 0;

	c = clore_new("http://example.com/v1", KEY, err, sizeof(err));
	CHECK(!c && strstr(err, "loopback"), "plain http to a remote host accepted (%s)", err);
	c = clore_new("http://127.0.0.1@evil.example/v1", KEY, err, sizeof(err));
	CHECK(!c, "user@host URL accepted");
	c = clore_new("ftp://127.0.0.1/v1", KEY, err, sizeof(err));
	CHECK(!c, "ftp URL accepted");
	c = clore_new("http://127.0.0.1:1/v1", "bad key\r\nX: y", err, sizeof(err));
	CHECK(!c, "a key with CR/LF accepted");
	c = clore_new("http://localhost:1/v1", KEY, err, sizeof(err));
	CHECK(c, "localhost refused: %s", err);
	clore_free(c);
	c = clore_new("http://[::1]:1/v1", KEY, err, sizeof(err));
	CHECK(c, "[::1] refused: %s", err);
	clore_free(c);
	c = clore_new("http://127.8.9.10:1/v1", KEY, err, sizeof(err));
	CHECK(c, "127.8.9.10 refused: %s", err);
	clore_free(c);
	c = clore_new(NULL, KEY, err, sizeof(err));
	CHECK(c, "the default https URL refused: %s", err);
	clore_free(c);

	CHECK(clore_gpu_count("2x NVIDIA GeForce RTX 4090", 1) == 2, "2x");
	CHECK(clore_gpu_count("12x NVIDIA A100", 1) == 12, "12x");
	CHECK(clore_gpu_count("NVIDIA GeForce RTX 4090", 3) == 3, "no prefix");
	CHECK(clore_gpu_count("3090x", 1) == 1, "3090x is a model, not a count");
	CHECK(clore_gpu_count(NULL, 0) == 0, "NULL");

	snprintf(o.host, sizeof(o.host), "n1.example.net");
	snprintf(o.tcp_ports[0], sizeof(o.tcp_ports[0]), "8888:9000");
	o.n_tcp_ports = 1;
	CHECK(clore_order_ssh(&o, host, sizeof(host), &port) == -EAGAIN, "no 22 mapping");
	snprintf(o.tcp_ports[1], sizeof(o.tcp_ports[1]), "22:1277");
	o.n_tcp_ports = 2;
	CHECK(clore_order_ssh(&o, host, sizeof(host), &port) == 0 && port == 1277 && !strcmp(host, o.host),
	      "22:1277 -> %s:%d", host, port);
	o.host[0] = '\0';
	CHECK(clore_order_ssh(&o, host, sizeof(host), &port) == -EAGAIN, "no host");

	s.gpu_count = 2;
	s.usd_spot = 4.8;
	s.usd_on_demand_clore = 9.6;
	s.usd_on_demand_usd = -1;
	s.usd_on_demand_btc = 7.2;
	CHECK(fabs(clore_usd_per_gpu_hour(&s, 1, NULL) - 0.1) < 1e-9, "spot per GPU-hour");
	CHECK(fabs(clore_usd_per_gpu_hour(&s, 0, "CLORE-Blockchain") - 0.2) < 1e-9, "on-demand CLORE");
	CHECK(fabs(clore_usd_per_gpu_hour(&s, 0, NULL) - 0.15) < 1e-9, "cheapest on-demand");
	CHECK(clore_usd_per_gpu_hour(&s, 0, "USD-Blockchain") < 0, "missing figure is negative");
}

static void test_key_file(void)
{
	char path[4200], key[CLORE_KEY_MAX], err[512];
	const char *old = getenv("CLORE_API_KEY");
	int fd, rc;

	unsetenv("CLORE_API_KEY");
	snprintf(path, sizeof(path), "%s/clore.key", tmpdir);
	rc = clore_load_key(path, key, sizeof(key), err, sizeof(err));
	CHECK(rc == -ENOENT, "missing key file: %d %s", rc, err);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0 && write(fd, KEY "\n", strlen(KEY) + 1) > 0, "write key file");
	close(fd);
	chmod(path, 0644);
	rc = clore_load_key(path, key, sizeof(key), err, sizeof(err));
	CHECK(rc == -EPERM && strstr(err, "chmod 600") && !strstr(err, KEY), "0644 key file: %d %s", rc, err);
	chmod(path, 0640);
	rc = clore_load_key(path, key, sizeof(key), err, sizeof(err));
	CHECK(rc == -EPERM, "0640 key file: %d %s", rc, err);
	chmod(path, 0600);
	rc = clore_load_key(path, key, sizeof(key), err, sizeof(err));
	CHECK(rc == 0 && !strcmp(key, KEY), "0600 key file: %d %s", rc, err);
	setenv("CLORE_API_KEY", "from-the-env", 1);
	chmod(path, 0644);
	rc = clore_load_key(path, key, sizeof(key), err, sizeof(err));
	CHECK(rc == 0 && !strcmp(key, "from-the-env"), "CLORE_API_KEY wins: %d %s", rc, err);
	if (old)
		setenv("CLORE_API_KEY", old, 1);
	else
		unsetenv("CLORE_API_KEY");
}

static void test_bad_key(void)
{
	struct clore_wallet *w = NULL;
	struct clore_client *c;
	char err[256], url[256];
	double before, t;
	size_t n;
	int rc;

	c = clore_new(base_url, "not-the-key", err, sizeof(err));
	CHECK(c, "clore_new: %s", err);
	if (!c)
		return;
	before = state_num("requests_total");
	t = now_s();
	rc = clore_wallets(c, &w, &n);
	CHECK(rc == -EACCES && strstr(clore_error(c), "invalid API key"), "bad key: %d %s", rc,
	      clore_error(c));
	CHECK(!strstr(clore_error(c), "not-the-key"), "the key is in the message: %s", clore_error(c));
	CHECK(state_num("requests_total") - before == 1,
	      "a bad key must cost one request, not a retry storm");
	CHECK(now_s() - t < 1.0, "a bad key must fail at once");
	free(w);
	clore_free(c);

	/* An endpoint Clore does not know: code 4. */
	snprintf(url, sizeof(url), "%s/nope", base_url);
	c = clore_new(url, KEY, err, sizeof(err));
	CHECK(c, "clore_new");
	if (!c)
		return;
	CHECK_RC(c, clore_wallets(c, &w, &n), -ENOSYS);
	clore_free(c);
}

static void test_marketplace(struct clore_client *c)
{
	struct clore_server *s = NULL;
	const struct clore_server *x;
	size_t n = 0;
	int nested;

	for (nested = 0; nested < 2; nested++) {
		if (nested)
			ctl_do("set", "{\"gpu_array_nested\": true}");
		CHECK_RC(c, clore_marketplace(c, &s, &n), 0);
		CHECK(n == 7, "%zu servers", n);
		x = find_server(s, n, 101);
		CHECK(x && x->gpu_count == 2 && !strcmp(x->gpu_model, "NVIDIA GeForce RTX 4090") &&
			  x->gpuram == 24,
		      "server 101 GPUs (nested %d)", nested);
		/* 60 arrives as an integer, 120.5 as a float. */
		CHECK(x && clore_server_price(x, 1, "CLORE-Blockchain") == 60 &&
			  clore_server_price(x, 0, "CLORE-Blockchain") == 120.5 &&
			  clore_server_price(x, 0, "bitcoin") < 0,
		      "server 101 prices");
		CHECK(x && fabs(clore_usd_per_gpu_hour(x, 1, NULL) - 60 * 0.02 / 24 / 2) < 1e-9,
		      "server 101 spot USD/GPU-hour %g", x ? clore_usd_per_gpu_hour(x, 1, NULL) : 0);
		CHECK(x && fabs(x->reliability - 0.991) < 1e-9 && !x->rented && x->mrl == 72 &&
			  clore_server_takes(x, "USD-Blockchain") && !clore_server_takes(x, "bitcoin"),
		      "server 101 fields");
		x = find_server(s, n, 102);
		CHECK(x && x->gpu_count == 1 && !strcmp(x->gpu_model, "NVIDIA GeForce RTX 3090") &&
			  fabs(x->gpuram - 24.5) < 1e-9 &&
			  fabs(clore_server_price(x, 0, "CLORE-Blockchain") - 88.8) < 1e-9,
		      "server 102 (nested gpu_array, float prices)");
		x = find_server(s, n, 103);
		CHECK(x && x->rented, "server 103 is rented");
		x = find_server(s, n, 106);
		CHECK(x && x->gpu_count == 3 && !strcmp(x->gpu_model, "NVIDIA GeForce RTX 2080 Ti") &&
			  x->reliability == 0 && x->mrl == 0 && clore_usd_per_gpu_hour(x, 1, NULL) < 0,
		      "server 106 (fields missing): count %d model %s", x ? x->gpu_count : -1,
		      x ? x->gpu_model : "");
		x = find_server(s, n, 107);
		CHECK(x && x->rented, "server 107 is rented by the user's own order");
		free(s);
		s = NULL;
	}
	ctl_do("set", "{\"gpu_array_nested\": false}");
}

static void test_wallets(struct clore_client *c)
{
	struct clore_wallet *w = NULL;
	size_t n = 0, i;
	int seen = 0;

	CHECK_RC(c, clore_wallets(c, &w, &n), 0);
	for (i = 0; i < n; i++) {
		if (!strcmp(w[i].name, "CLORE-Blockchain"))
			seen += fabs(w[i].balance - 1000) < 1 && !strcmp(w[i].deposit, "cl0re-dep");
		if (!strcmp(w[i].name, "USD-Blockchain"))
			seen += fabs(w[i].balance - 0.2) < 1e-6;
	}
	CHECK(n == 2 && seen == 2, "wallets: %zu, %d as expected", n, seen);
	free(w);
}

static void test_create_errors(struct clore_client *c)
{
	struct clore_order_req r = {.image = "renderfs/blender:4", .currency = "CLORE-Blockchain"};

	r.server_id = 103;
	CHECK_RC(c, clore_create_order(c, &r), -EADDRINUSE);
	r.server_id = 104;
	CHECK_RC(c, clore_create_order(c, &r), -EPERM);
	r.server_id = 101;
	r.spot = 1;
	r.spotprice = 40;
	CHECK_RC(c, clore_create_order(c, &r), -ERANGE);
	r.spot = 0;
	r.currency = "USD-Blockchain";
	CHECK_RC(c, clore_create_order(c, &r), -ENOSPC);
	CHECK(strstr(clore_error(c), "balance"), "short balance says so: %s", clore_error(c));
	ctl_do("set", "{\"balance_error\": \"code1\"}");
	CHECK_RC(c, clore_create_order(c, &r), -EAGAIN);
	ctl_do("set", "{\"balance_error\": \"code6\"}");
	r.currency = "CLORE-Blockchain";
	r.server_id = 105;
	CHECK_RC(c, clore_create_order(c, &r), -EAGAIN);
	r.server_id = 999;
	CHECK_RC(c, clore_create_order(c, &r), -EINVAL);
	r.image = NULL;
	CHECK_RC(c, clore_create_order(c, &r), -EINVAL);
}

/* my_orders until the order of server sid created since t0 is online. */
static int wait_online(struct clore_client *c, int64_t sid, int64_t t0, int64_t *id, double secs)
{
	struct clore_order *o = NULL;
	const struct clore_order *x;
	double end = now_s() + secs;
	char host[64];
	int port = 0, polls = 0;
	size_t n;

	*id = 0;
	while (now_s() < end) {
		if (clore_my_orders(c, 0, &o, &n))
			return -EIO;
		polls++;
		x = clore_newest_order(o, n, sid, t0);
		if (x) {
			*id = x->id;
			if (polls == 1)
				CHECK(!x->online && !x->host[0] && !x->n_tcp_ports &&
					  clore_order_ssh(x, host, sizeof(host), &port) == -EAGAIN,
				      "a new order starts offline without an endpoint");
			if (x->online && clore_order_ssh(x, host, sizeof(host), &port) == 0) {
				CHECK(!strcmp(host, "127.0.0.1") && port == 2201, "ssh endpoint %s:%d", host,
				      port);
				CHECK(x->spot && x->price == 65 && x->creation_fee > 0 && x->gpu_count == 2 &&
					  !strcmp(x->currency, "CLORE-Blockchain") &&
					  !strcmp(x->image, "renderfs/blender:4"),
				      "order fields");
				free(o);
				return 0;
			}
		}
		free(o);
		o = NULL;
	}
	return -ETIMEDOUT;
}

static int order_ended(struct clore_client *c, int64_t id, int *expired)
{
	struct clore_order *o = NULL;
	const struct clore_order *x;
	size_t n;
	int active;

	CHECK_RC(c, clore_my_orders(c, 0, &o, &n), 0);
	active = find_order(o, n, id) != NULL;
	free(o);
	o = NULL;
	CHECK_RC(c, clore_my_orders(c, 1, &o, &n), 0);
	x = find_order(o, n, id);
	*expired = x && x->expired;
	free(o);
	return !active;
}

static void test_orders(struct clore_client *c)
{
	struct clore_order_req r = {.server_id = 101,
				    .spot = 1,
				    .spotprice = 65,
				    .currency = "CLORE-Blockchain",
				    .image = "renderfs/blender:4",
				    .ssh_key = "ssh-ed25519 AAAAC3Nza renderfs@test"};
	const char *env[] = {"RENDERFS=1", NULL};
	struct clore_spot m;
	int64_t t0 = (int64_t)time(NULL) - 2, id, id2;
	char body[64];
	cJSON *st, *e;
	int expired = 0, found;

	r.env = env;
	CHECK_RC(c, clore_create_order(c, &r), 0);
	CHECK(wait_online(c, 101, t0, &id, 8) == 0, "spot order on 101 came online (id %lld)", (long long)id);
	st = ctl("state", NULL);
	found = 0;
	cJSON_ArrayForEach(e, cJSON_GetObjectItem(st, "ssh_keys")) found +=
	    !strcmp(cJSON_GetStringValue(e), r.ssh_key);
	CHECK(found == 1, "the fake got the ssh key");
	cJSON_Delete(st);

	CHECK_RC(c, clore_spot_market(c, 101, &m), 0);
	CHECK(m.exists && m.n_offers == 1 && m.offers[0].my && m.offers[0].bid == 65 &&
		  clore_spot_floor(&m, "CLORE-Blockchain") == 50 && m.n_rates == 3 && m.online,
	      "spot market of 101");
	CHECK_RC(c, clore_spot_market(c, 999, &m), 0);
	CHECK(!m.exists, "unknown spot market");

	CHECK_RC(c, clore_set_spot_price(c, id, 70), 0);
	CHECK_RC(c, clore_set_spot_price(c, id, 45), -ERANGE);
	CHECK_RC(c, clore_set_spot_price(c, id, 55), -EDOM);
	CHECK_RC(c, clore_set_spot_price(c, id, 65), 0);
	CHECK_RC(c, clore_set_spot_price(c, id, 60), -EALREADY);

	/* Outbid: gone from the active list, expired among the completed. */
	snprintf(body, sizeof(body), "{\"order_id\": %lld}", (long long)id);
	ctl_do("outbid", body);
	CHECK(order_ended(c, id, &expired) && expired, "outbid order ended (expired %d)", expired);
	CHECK_RC(c, clore_cancel_order(c, id, NULL), 0);

	/* On demand, never comes up: cancel it, twice. */
	r.server_id = 102;
	r.spot = 0;
	r.env = NULL;
	t0 = (int64_t)time(NULL) - 2;
	CHECK_RC(c, clore_create_order(c, &r), 0);
	CHECK(wait_online(c, 102, t0, &id2, 0.3) == -ETIMEDOUT && id2 > id,
	      "order on 102 found, stays offline");
	CHECK_RC(c, clore_cancel_order(c, id2, "never came online"), 0);
	CHECK_RC(c, clore_cancel_order(c, id2, NULL), 0);
	ctl_do("set", "{\"cancel_ended_reply\": \"ok\"}");
	CHECK_RC(c, clore_cancel_order(c, id2, NULL), 0);
	ctl_do("set", "{\"cancel_ended_reply\": \"code6\"}");
	CHECK_RC(c, clore_cancel_order(c, id2, NULL), 0);
	CHECK_RC(c, clore_cancel_order(c, 424242, NULL), 0);
	CHECK(order_ended(c, id2, &expired) && expired, "cancelled order ended");

	/* The user's own order was never touched. */
	st = ctl("state", NULL);
	found = 0;
	cJSON_ArrayForEach(e, cJSON_GetObjectItem(st, "cancels")) found +=
	    cJSON_GetNumberValue(cJSON_GetObjectItem(e, "id")) == 77;
	CHECK(found == 0, "the user's order 77 was cancelled");
	cJSON_ArrayForEach(e, cJSON_GetObjectItem(st, "orders"))
	{
		if (cJSON_GetNumberValue(cJSON_GetObjectItem(e, "id")) == 77)
			CHECK(!cJSON_IsTrue(cJSON_GetObjectItem(e, "ended")), "the user's order 77 ended");
	}
	cJSON_Delete(st);
}

static void test_rate_and_limits(struct clore_client *c)
{
	struct clore_wallet *w = NULL;
	double forced0 = state_num("forced"), t;
	size_t n;

	ctl_do("set", "{\"force_code5\": 2}");
	CHECK_RC(c, clore_wallets(c, &w, &n), 0);
	free(w);
	CHECK(state_num("forced") - forced0 == 2, "two code 5 answers retried");

	ctl_do("set", "{\"force_code5\": 100}");
	t = now_s();
	CHECK_RC(c, clore_wallets(c, &w, &n), -EBUSY);
	free(w);
	/* 0.1 + 0.2 + 0.4 + 0.8 s of backoff at scale 0.1 */
	CHECK(now_s() - t >= 1.4, "backoff took %.2f s", now_s() - t);
	CHECK(state_num("forced") - forced0 == 2 + CLORE_MAX_TRIES, "tries bounded");
	ctl_do("set", "{\"force_code5\": 2, \"http429\": true}");
	CHECK_RC(c, clore_wallets(c, &w, &n), 0);
	free(w);
	ctl_do("set", "{\"force_code5\": 0, \"http429\": false}");

	ctl_do("set", "{\"pad_bytes\": 9437184}");
	CHECK_RC(c, clore_wallets(c, &w, &n), -EFBIG);
	free(w);
	ctl_do("set", "{\"pad_bytes\": 0, \"stall_ms\": 1500}");
	clore_set_timeouts(c, 1000, 400);
	CHECK_RC(c, clore_wallets(c, &w, &n), -ETIMEDOUT);
	free(w);
	ctl_do("set", "{\"stall_ms\": 0}");
	clore_set_timeouts(c, 10000, 60000);
}

/* Several clients in parallel threads share the one limiter. */
static void *hammer(void *arg)
{
	struct clore_wallet *w;
	struct clore_client *c;
	char err[256];
	size_t n;
	int i, *bad = arg;

	c = clore_new(base_url, KEY, err, sizeof(err));
	if (!c) {
		(*bad)++;
		return NULL;
	}
	for (i = 0; i < 3; i++) {
		if (clore_wallets(c, &w, &n))
			(*bad)++;
		else
			free(w);
	}
	clore_free(c);
	return NULL;
}

static void test_threads(void)
{
	pthread_t th[3];
	int bad[3] = {0};
	int i;

	for (i = 0; i < 3; i++)
		pthread_create(&th[i], NULL, hammer, &bad[i]);
	for (i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		CHECK(bad[i] == 0, "thread %d: %d failures", i, bad[i]);
	}
}

static void test_log_has_no_key(void)
{
	char path[4200], *text = NULL;
	size_t cap = 0;
	ssize_t got;
	FILE *f;

	snprintf(path, sizeof(path), "%s/fake.log", tmpdir);
	f = fopen(path, "r");
	CHECK(f, "fake log");
	if (!f)
		return;
	got = getdelim(&text, &cap, '\0', f);
	CHECK(got > 0 && strstr(text, "/v1/create_order") && !strstr(text, KEY), "fake log holds the key");
	free(text);
	fclose(f);
}

static void cleanup_tmp(void)
{
	char cmd[4200];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		printf("could not remove %s\n", tmpdir);
}

int main(void)
{
	struct clore_client *c;
	const char *tmp = getenv("TMPDIR");
	double t0 = now_s();
	char err[256];
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	snprintf(tmpdir, sizeof(tmpdir), "%s/test_clore.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	setenv("RENDERFS_CLORE_RATE_SCALE", "0.1", 1);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = start_fake();
	if (rc) {
		cleanup_tmp();
		return rc;
	}

	test_urls_and_helpers();
	test_key_file();
	test_bad_key();
	c = clore_new(base_url, KEY, err, sizeof(err));
	CHECK(c, "clore_new: %s", err);
	if (c) {
		test_marketplace(c);
		test_wallets(c);
		test_create_errors(c);
		test_orders(c);
		test_rate_and_limits(c);
		clore_free(c);
	}
	test_threads();
	CHECK(state_num("violations") == 0, "the fake counted %g rate-limit violations",
	      state_num("violations"));
	test_log_has_no_key();

	stop_fake();
	cleanup_tmp();
	curl_global_cleanup();
	printf("%d checks, %d failed, %.1f s\n", checks, failures, now_s() - t0);
	return failures ? 1 : 0;
}
