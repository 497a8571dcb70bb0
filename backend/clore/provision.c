/*
 * provision: rent, watch and release Clore servers (see provision.h).
 *
 * A rental's life, as rows of `rentals`:
 *
 *	intent --create_order ok, found in my_orders--> booting --online, port 22--> ready
 *	   |                                               |                          |
 *	   +--create_order refused / never found--> void   +--boot_timeout, gone--+   +--idle, budget,
 *	                                                                          v      unmount, gone
 *	                                                                        ended <-----+
 *
 * (releasing: a cancel that failed for a passing reason, retried each poll.)
 *
 * One pass of the loop, about every 250 ms: poll my_orders when `poll` has
 * passed, keep to the budgets, release idle nodes, rent when queued frames
 * outnumber the nodes coming up, settle ended orders with Clore's own
 * figures, and publish one status line (meta "clore_status").  Each API
 * call waits for the process-wide rate limiter (clore.c), so a pass may
 * take a few seconds; nothing here runs on a FUSE thread.
 */
#include "clore/provision.h"
#include "clore/clore.h"
#include "jobs/jobs.h"
#include "nodes/keys.h"
#include "clore/market.h"
#include "jobs/money.h"
#include "sched/runner.h"
#include "store/store.h"
#include "store/nodes.h"
#include "nodes/transport.h"
#include "core/util.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_HELD        64
#define MAX_AVOID       256
#define MAX_MEASURED    16
#define INTENT_WINDOW_S 30     /* an order this long before its intent still matches (clock skew) */
#define INTENT_GIVE_UP  120000 /* ms: an intent no order appeared for is void */
#define MARKET_MAX_AGE  30000  /* ms between marketplace listings */

struct held {
	int64_t rental, order, server;
	int64_t away_since; /* mono ms: its node offline or connecting since */
	struct tnode *node; /* with runner, once the server came up */
	struct runner *runner;
	int64_t idle_since; /* mono ms; 0 while it has work */
};

struct rental_row {
	int64_t id, server, order_id, intent_at, job, created, node;
	char state[16];
	char currency[CLORE_COIN_MAX];
	double price_day, usd_rate;
};

struct provision {
	char *dir;
	const struct config *cfg;
	struct store *st;
	struct clore_client *cc;
	pthread_t thread;
	atomic_int stop;
	char worker_path[4096], identity[4096], identity_pub[4096];
	char *ssh_key; /* the public key's text */
	struct held held[MAX_HELD];
	int nheld;
	struct clore_server *market;
	size_t nmarket;
	int64_t market_at;
	int64_t avoid[MAX_AVOID];
	size_t navoid;
	int64_t last_poll, next_rent, last_settle;
	int dead;          /* the key was refused: no more calls until the next mount */
	int closing;       /* unmounting: start no node */
	char problem[512]; /* what keeps renderfs from renting, "" when nothing */
	char shown[600];
};

/* ---- small helpers ---- */

static void nap(struct provision *p, int64_t ms)
{
	int64_t end = util_mono_ms() + ms;

	while (!atomic_load(&p->stop) && util_mono_ms() < end)
		usleep(20 * 1000);
}

static void set_problem(struct provision *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_problem(struct provision *p, const char *fmt, ...)
{
	va_list ap;
	char buf[sizeof(p->problem)];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (strcmp(buf, p->problem)) {
		snprintf(p->problem, sizeof(p->problem), "%s", buf);
		if (buf[0]) {
			char ev[600];

			snprintf(ev, sizeof(ev), "clore: %s", buf);
			store_event(p->st, 0, 0, 0, "clore", ev);
			fprintf(stderr, "renderfs: clore: %s\n", buf);
		}
	}
}

static void avoid_server(struct provision *p, int64_t server)
{
	for (size_t i = 0; i < p->navoid; i++)
		if (p->avoid[i] == server)
			return;
	if (p->navoid < MAX_AVOID)
		p->avoid[p->navoid++] = server;
}

static struct held *held_find(struct provision *p, int64_t rental)
{
	for (int i = 0; i < p->nheld; i++)
		if (p->held[i].rental == rental)
			return &p->held[i];
	return NULL;
}

static struct held *held_add(struct provision *p, int64_t rental, int64_t order, int64_t server)
{
	struct held *h = held_find(p, rental);

	if (h)
		return h;
	if (p->nheld >= MAX_HELD)
		return NULL;
	h = &p->held[p->nheld++];
	memset(h, 0, sizeof(*h));
	h->rental = rental;
	h->order = order;
	h->server = server;
	return h;
}

static void held_remove(struct provision *p, struct held *h)
{
	*h = p->held[--p->nheld];
}

static const struct clore_order *order_by_id(const struct clore_order *o, size_t n, int64_t id)
{
	for (size_t i = 0; i < n; i++)
		if (o[i].id == id)
			return &o[i];
	return NULL;
}

/* ---- the rentals table ---- */

static void row_fill(struct rental_row *r, sqlite3_stmt *s)
{
	memset(r, 0, sizeof(*r));
	r->id = sqlite3_column_int64(s, 0);
	r->server = sqlite3_column_int64(s, 1);
	r->order_id = sqlite3_column_int64(s, 2);
	r->intent_at = sqlite3_column_int64(s, 3);
	snprintf(r->state, sizeof(r->state), "%s", (const char *)sqlite3_column_text(s, 4));
	r->job = sqlite3_column_int64(s, 5);
	r->created = sqlite3_column_int64(s, 6);
	r->node = sqlite3_column_int64(s, 7);
	snprintf(r->currency, sizeof(r->currency), "%s", (const char *)sqlite3_column_text(s, 8));
	r->price_day = sqlite3_column_double(s, 9);
	r->usd_rate = sqlite3_column_double(s, 10);
}

/* The rentals not yet over; *out malloc'd (free it). */
static int rentals_open(struct provision *p, struct rental_row **out, size_t *n)
{
	sqlite3_stmt *s;
	size_t cap = 0;

	*out = NULL;
	*n = 0;
	if (store_prepare(
		p->st,
		"SELECT id, server, coalesce(order_id, 0), intent_at, state, coalesce(job, 0),"
		" coalesce(created, 0), coalesce(node, 0), currency, price_day, usd_rate"
		" FROM rentals WHERE state IN ('intent', 'booting', 'ready', 'releasing') ORDER BY id",
		&s))
		return -EIO;
	while (sqlite3_step(s) == SQLITE_ROW) {
		if (*n == cap) {
			struct rental_row *nr = realloc(*out, (cap = cap ? cap * 2 : 16) * sizeof(*nr));

			if (!nr)
				break;
			*out = nr;
		}
		row_fill(&(*out)[(*n)++], s);
	}
	sqlite3_finalize(s);
	return 0;
}

static int rental_exec(struct provision *p, const char *sql, int64_t id, const char *text, int64_t a,
		       double d)
{
	sqlite3_stmt *s;
	int rc = store_prepare(p->st, sql, &s);
	int idx;

	if (rc)
		return rc;
	if ((idx = sqlite3_bind_parameter_index(s, ":id")))
		sqlite3_bind_int64(s, idx, id);
	if ((idx = sqlite3_bind_parameter_index(s, ":text")))
		sqlite3_bind_text(s, idx, text, -1, SQLITE_TRANSIENT);
	if ((idx = sqlite3_bind_parameter_index(s, ":a")))
		sqlite3_bind_int64(s, idx, a);
	if ((idx = sqlite3_bind_parameter_index(s, ":d")))
		sqlite3_bind_double(s, idx, d);
	if ((idx = sqlite3_bind_parameter_index(s, ":now")))
		sqlite3_bind_int64(s, idx, util_now_ms());
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	store_change(p->st, CH_NODES, 0);
	return rc;
}

static void rental_end(struct provision *p, int64_t rental, const char *why)
{
	rental_exec(p,
		    "UPDATE rentals SET state = 'ended', ended_at = coalesce(ended_at, :now),"
		    " end_reason = :text WHERE id = :id AND state != 'ended'",
		    rental, why, 0, 0);
	store_nodes_end_rental(p->st, rental); /* removed, and offline through the node machine */
}

/* An order found for a rental: remember its id and its own figures. */
static void rental_found(struct provision *p, int64_t rental, const struct clore_order *o)
{
	sqlite3_stmt *s;

	if (store_prepare(p->st,
			  "UPDATE rentals SET order_id = ?1, created = coalesce(created, ?2),"
			  " state = CASE WHEN state = 'intent' THEN 'booting' ELSE state END,"
			  " fee = ?3, price_day = CASE WHEN ?4 > 0 THEN ?4 ELSE price_day END,"
			  " currency = CASE WHEN currency = '' THEN ?5 ELSE currency END WHERE id = ?6",
			  &s))
		return;
	sqlite3_bind_int64(s, 1, o->id);
	sqlite3_bind_int64(s, 2, o->ct > 0 ? o->ct * 1000 : util_now_ms());
	sqlite3_bind_double(s, 3, o->creation_fee > 0 ? o->creation_fee : 0);
	sqlite3_bind_double(s, 4, o->price);
	sqlite3_bind_text(s, 5, o->currency, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 6, rental);
	sqlite3_step(s);
	sqlite3_finalize(s);
}

/* Is this order id already some rental's? */
static int order_claimed(struct provision *p, int64_t order)
{
	sqlite3_stmt *s;
	int claimed = 0;

	if (store_prepare(p->st, "SELECT 1 FROM rentals WHERE order_id = ?", &s))
		return 1;
	sqlite3_bind_int64(s, 1, order);
	claimed = sqlite3_step(s) == SQLITE_ROW;
	sqlite3_finalize(s);
	return claimed;
}

/* The order Clore made for an intent: the newest on the server, created no
 * earlier than the intent (less a margin for clock skew), and not already
 * some other rental's.  The user's own orders were made before any intent
 * of ours on a server we could rent, so they never match. */
static const struct clore_order *match_intent(struct provision *p, const struct clore_order *o, size_t n,
					      const struct rental_row *r)
{
	const struct clore_order *best = NULL;
	int64_t not_before = r->intent_at / 1000 - INTENT_WINDOW_S;

	for (size_t i = 0; i < n; i++) {
		if (o[i].server_id != r->server || o[i].ct < not_before || order_claimed(p, o[i].id))
			continue;
		if (!best || o[i].ct > best->ct || (o[i].ct == best->ct && o[i].id > best->id))
			best = &o[i];
	}
	return best;
}

/* ---- API errors ---- */

/* A call that failed before worked now: its error no longer stands. */
static void api_ok(struct provision *p, const char *what)
{
	size_t l = strlen(what);

	if (!strncmp(p->problem, "error: ", 7) && !strncmp(p->problem + 7, what, l) &&
	    p->problem[7 + l] == ':')
		set_problem(p, "%s", "");
}

static void api_failed(struct provision *p, const char *what, int rc)
{
	if (rc == -EACCES) {
		p->dead = 1;
		set_problem(p, "error: the Clore API key was refused (code 3): fix [clore] api_key_file or "
			       "CLORE_API_KEY and mount again; nothing is rented meanwhile");
		return;
	}
	if (rc == -ENOSPC) {
		set_problem(p, "error: not enough balance in the Clore wallet (%s)", what);
		return;
	}
	set_problem(p, "error: %s: %s", what, clore_error(p->cc));
}

/* ---- nodes ---- */

static double rental_price_h(const struct rental_row *r)
{
	return r->price_day * r->usd_rate / 24.0;
}

/* The server is up: drive it like an SSH node. */
static int node_start(struct provision *p, const struct rental_row *r, const struct clore_order *o)
{
	char host[CLORE_STR_MAX], target[CLORE_STR_MAX + 32], name[64];
	struct held *h;
	struct ssh_opts so;
	sqlite3_stmt *s;
	int port, rc;

	if (clore_order_ssh(o, host, sizeof(host), &port))
		return -EAGAIN;
	h = held_add(p, r->id, r->order_id, r->server);
	if (!h)
		return -ENOSPC;
	if (h->runner)
		return 0;
	snprintf(target, sizeof(target), strchr(host, ':') ? "root@[%s]:%d" : "root@%s:%d", host, port);
	snprintf(name, sizeof(name), "clore-%lld", (long long)r->order_id);
	memset(&so, 0, sizeof(so));
	so.target = target;
	so.identity = p->identity;
	so.identity_pub = p->identity_pub;
	so.check_hostkey = keys_check_hostkey;
	so.check_arg = p->dir;
	so.connect_timeout_ms = 10000;
	so.name = name;
	h->node = ssh_node_new(&so);
	if (!h->node)
		return -ENOMEM;
	rc = runner_start(p->dir, p->cfg, h->node, p->cfg->ssh_slots, p->cfg->ssh_blender, p->worker_path,
			  &h->runner);
	if (rc) {
		ssh_node_free(h->node);
		h->node = NULL;
		return rc;
	}
	if (!store_prepare(p->st,
			   "UPDATE nodes SET provider = 'clore', rental = ?1, price_h = ?2, removed = 0"
			   " WHERE id = ?3",
			   &s)) {
		sqlite3_bind_int64(s, 1, r->id);
		sqlite3_bind_double(s, 2, rental_price_h(r));
		sqlite3_bind_int64(s, 3, runner_node_id(h->runner));
		sqlite3_step(s);
		sqlite3_finalize(s);
	}
	rental_exec(p,
		    "UPDATE rentals SET state = 'ready', node = :a, online_at = coalesce(online_at, :now)"
		    " WHERE id = :id",
		    r->id, NULL, runner_node_id(h->runner), 0);
	{
		char ev[256];

		snprintf(ev, sizeof(ev), "order %lld on server %lld is up at %s", (long long)r->order_id,
			 (long long)r->server, target);
		store_event(p->st, r->job, runner_node_id(h->runner), 0, "clore", ev);
	}
	return 0;
}

static void node_stop(struct held *h, const char *why)
{
	if (!h->runner)
		return;
	runner_stop_because(h->runner, why);
	runner_stop(h->runner);
	ssh_node_free(h->node);
	h->runner = NULL;
	h->node = NULL;
}

/* Give a rental back: stop its node (frames in flight go back to the queue
 * as interrupted), cancel the order, mark it ended. */
static void release(struct provision *p, struct held *h, const char *why)
{
	int64_t rental = h->rental, order = h->order;
	char ev[400];
	int rc = 0;

	node_stop(h, why);
	if (order) {
		rc = clore_cancel_order(p->cc, order, NULL);
		if (rc) {
			/* Try again on the next poll; the row says so. */
			rental_exec(
			    p, "UPDATE rentals SET state = 'releasing', end_reason = :text WHERE id = :id",
			    rental, why, 0, 0);
			snprintf(ev, sizeof(ev), "cancelling order %lld failed: %s (will retry)",
				 (long long)order, clore_error(p->cc));
			store_event(p->st, 0, 0, 0, "clore", ev);
			fprintf(stderr, "renderfs: clore: %s\n", ev);
			held_remove(p, h); /* the next poll (or mount) takes it up again */
			return;
		}
	}
	rental_end(p, rental, why);
	snprintf(ev, sizeof(ev), "order %lld released: %s", (long long)order, why);
	store_event(p->st, 0, 0, 0, "clore", ev);
	held_remove(p, h);
}

/* The order is gone or dead (outbid, expired, offline after being up):
 * its frames go back to the queue as interrupted, and it is cancelled in
 * case it still bills. */
static void lost(struct provision *p, struct held *h, const char *why)
{
	char ev[400];

	snprintf(ev, sizeof(ev), "order %lld lost: %s", (long long)h->order, why);
	store_event(p->st, 0, 0, 0, "clore", ev);
	fprintf(stderr, "renderfs: clore: %s\n", ev);
	release(p, h, why);
}

/* ---- polling ---- */

static void poll_orders(struct provision *p)
{
	struct clore_order *o = NULL, *done = NULL;
	size_t ndone = 0;
	struct rental_row *rows = NULL;
	size_t n = 0, nrows = 0;
	int64_t now = util_now_ms();
	int rc;

	rc = clore_my_orders(p->cc, 0, &o, &n);
	if (rc) {
		api_failed(p, "my_orders", rc);
		return;
	}
	api_ok(p, "my_orders");
	rentals_open(p, &rows, &nrows);
	for (size_t i = 0; i < nrows; i++) {
		struct rental_row *r = &rows[i];
		const struct clore_order *ord;
		struct held *h;
		char why[256];

		if (!strcmp(r->state, "intent")) {
			ord = match_intent(p, o, n, r);
			if (ord) {
				rental_found(p, r->id, ord);
				r->order_id = ord->id;
				snprintf(r->state, sizeof(r->state), "booting");
				held_add(p, r->id, ord->id, r->server);
			} else if (now - r->intent_at > INTENT_GIVE_UP) {
				/* Its order may have come and gone while renderfs was
				 * down: then it is ended (and settled), not void. */
				if (!done && clore_my_orders(p->cc, 1, &done, &ndone))
					done = NULL, ndone = 0;
				ord = done ? match_intent(p, done, ndone, r) : NULL;
				if (ord) {
					rental_found(p, r->id, ord);
					rental_end(p, r->id, "ended while renderfs was not running");
				} else {
					rental_exec(p,
						    "UPDATE rentals SET state = 'void', end_reason = :text "
						    "WHERE id = :id",
						    r->id, "no order appeared", 0, 0);
				}
				continue;
			} else {
				continue;
			}
		}
		h = held_add(p, r->id, r->order_id, r->server);
		if (!h)
			continue;
		ord = order_by_id(o, n, r->order_id);
		if (!strcmp(r->state, "releasing")) {
			release(p, h, "released");
			continue;
		}
		if (!strcmp(r->state, "booting")) {
			if (!ord || ord->expired) {
				node_stop(h, "the order ended before it came up");
				rental_end(p, r->id, "the order ended before it came up");
				held_remove(p, h);
				avoid_server(p, r->server);
				continue;
			}
			if (ord->online && !p->closing && node_start(p, r, ord) == 0)
				continue;
			/* From the later of our intent and the order's ct (whole seconds). */
			if (now - (r->created > r->intent_at ? r->created : r->intent_at) >
			    p->cfg->clore_boot_timeout_ms) {
				char d[32];

				snprintf(
				    why, sizeof(why), "server %lld did not come up within %s",
				    (long long)r->server,
				    util_fmt_duration(d, sizeof(d), p->cfg->clore_boot_timeout_ms / 1000.0));
				avoid_server(p, r->server);
				lost(p, h, why);
			}
			continue;
		}
		/* ready */
		if (!ord || ord->expired) {
			snprintf(why, sizeof(why), "order %lld ended (outbid or expired)",
				 (long long)r->order_id);
			lost(p, h, why);
		} else if (!ord->online) {
			snprintf(why, sizeof(why), "order %lld went offline", (long long)r->order_id);
			lost(p, h, why);
		} else if (!h->runner && !p->closing) {
			node_start(p, r, ord); /* adopted after a restart */
		} else if (ord->price > 0 && fabs(ord->price - r->price_day) > 1e-9) {
			rental_exec(p, "UPDATE rentals SET price_day = :d WHERE id = :id", r->id, NULL, 0,
				    ord->price);
			rental_exec(p, "UPDATE nodes SET price_h = :d WHERE rental = :id", r->id, NULL, 0,
				    ord->price * r->usd_rate / 24.0);
		}
	}
	free(rows);
	free(o);
	free(done);
}

/* Ended orders: take Clore's own final figure for what they cost. */
static void settle(struct provision *p)
{
	struct clore_order *o = NULL;
	size_t n = 0;
	sqlite3_stmt *s;
	int64_t ids[64];
	double rates[64];
	int k = 0;

	if (store_prepare(p->st,
			  "SELECT order_id, usd_rate FROM rentals WHERE state = 'ended' AND settled IS NULL"
			  " AND order_id IS NOT NULL LIMIT 64",
			  &s))
		return;
	while (k < 64 && sqlite3_step(s) == SQLITE_ROW) {
		ids[k] = sqlite3_column_int64(s, 0);
		rates[k++] = sqlite3_column_double(s, 1);
	}
	sqlite3_finalize(s);
	if (!k || clore_my_orders(p->cc, 1, &o, &n))
		return;
	for (int i = 0; i < k; i++) {
		const struct clore_order *ord = order_by_id(o, n, ids[i]);

		if (!ord || !ord->expired || ord->spend < 0)
			continue;
		if (!store_prepare(p->st, "UPDATE rentals SET settled = ?1 WHERE order_id = ?2", &s)) {
			sqlite3_bind_double(
			    s, 1, (ord->spend + (ord->creation_fee > 0 ? ord->creation_fee : 0)) * rates[i]);
			sqlite3_bind_int64(s, 2, ids[i]);
			sqlite3_step(s);
			sqlite3_finalize(s);
		}
	}
	free(o);
}

/* 1 when the total budget is spent: everything held is released. */
static int budgets(struct provision *p)
{
	struct money_farm f;
	int64_t now = util_now_ms();
	sqlite3_stmt *s;
	int64_t jobs[64];
	double limits[64];
	int k = 0;

	/* A job's own budget: past it, the job takes no more frames (and
	 * so asks for no more nodes). */
	if (!store_prepare(p->st,
			   "SELECT id, budget FROM jobs WHERE removed = 0 AND budget >= 0 AND over_budget = 0"
			   " AND state IN ('waiting', 'rendering', 'paused') LIMIT 64",
			   &s)) {
		while (k < 64 && sqlite3_step(s) == SQLITE_ROW) {
			jobs[k] = sqlite3_column_int64(s, 0);
			limits[k++] = sqlite3_column_double(s, 1);
		}
		sqlite3_finalize(s);
	}
	for (int i = 0; i < k; i++) {
		struct money_job mj;
		char msg[256], a[32], b[32];

		money_job_get(p->st, jobs[i], now, &mj);
		if (mj.spent < limits[i])
			continue;
		snprintf(msg, sizeof(msg),
			 "budget reached: spent %s of the job's budget %s; no new frames start",
			 util_fmt_money(a, sizeof(a), mj.spent), util_fmt_money(b, sizeof(b), limits[i]));
		rental_exec(p, "UPDATE jobs SET over_budget = 1 WHERE id = :id", jobs[i], NULL, 0, 0);
		job_set_error(p->st, jobs[i], msg);
		store_event(p->st, jobs[i], 0, 0, "clore", msg);
	}
	if (p->cfg->clore_budget < 0)
		return 0;
	money_farm_get(p->st, now, &f);
	/* Once reached, the budget stays reached (for this budget): Clore's
	 * final figures for the released orders may come in a little lower
	 * than the running estimate, and a last order for the few cents left
	 * would mostly pay its creation fee. */
	{
		char v[64] = "";

		store_meta_get(p->st, "clore_budget_reached", v, sizeof(v));
		if (f.spent < p->cfg->clore_budget && !(v[0] && fabs(atof(v) - p->cfg->clore_budget) < 1e-9))
			return 0;
		if (!v[0] || fabs(atof(v) - p->cfg->clore_budget) >= 1e-9) {
			snprintf(v, sizeof(v), "%.6f", p->cfg->clore_budget);
			store_meta_set(p->st, "clore_budget_reached", v);
		}
	}
	{
		char a[32], b[32];

		set_problem(p, "error: budget reached: spent %s of the total budget %s; no new rentals",
			    util_fmt_money(a, sizeof(a), f.spent),
			    util_fmt_money(b, sizeof(b), p->cfg->clore_budget));
	}
	while (p->nheld > 0)
		release(p, &p->held[p->nheld - 1], "budget reached");
	return 1;
}

/* ---- idle nodes ---- */

/* Frames waiting for a node, counted up to 1000 (renting compares
 * the count with the orders coming up, a few at most: a job of a million
 * frames must not cost a million-row count four times a second), and the
 * job that decides what is rented: the first by priority with a queued
 * frame. */

static const char queued_sql[] = "SELECT count(*) FROM (SELECT 1 FROM frames f JOIN jobs j ON j.id = f.job"
				 " WHERE f.state = 'queued' AND j.removed = 0 AND j.over_budget = 0"
				 " AND j.state IN ('waiting', 'rendering') LIMIT 1000)";
static const char top_job_sql[] =
    "SELECT j.id FROM jobs j WHERE j.removed = 0 AND j.over_budget = 0"
    " AND j.state IN ('waiting', 'rendering')"
    " AND EXISTS (SELECT 1 FROM frames f WHERE f.state = 'queued' AND f.job = j.id)"
    " ORDER BY j.priority DESC, j.id LIMIT 1";

static int64_t queued_frames(struct provision *p, int64_t *top_job)
{
	sqlite3_stmt *s;
	int64_t n = 0;

	*top_job = 0;
	if (store_cached(p->st, queued_sql, &s))
		return 0;
	if (sqlite3_step(s) == SQLITE_ROW)
		n = sqlite3_column_int64(s, 0);
	store_release(s);
	if (!n || store_cached(p->st, top_job_sql, &s))
		return n;
	if (sqlite3_step(s) == SQLITE_ROW)
		*top_job = sqlite3_column_int64(s, 0);
	store_release(s);
	return n;
}

static int node_busy(struct provision *p, int64_t node)
{
	sqlite3_stmt *s;
	int busy = 1;

	if (store_prepare(p->st,
			  "SELECT EXISTS (SELECT 1 FROM frames WHERE (node = ?1 OR dup_node = ?1)"
			  " AND state IN ('leased', 'rendering', 'rendered'))",
			  &s))
		return 1;
	sqlite3_bind_int64(s, 1, node);
	if (sqlite3_step(s) == SQLITE_ROW)
		busy = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	return busy;
}

static int node_broken(struct provision *p, struct held *h, int64_t node, int64_t mono, char *why,
		       size_t whysz)
{
	sqlite3_stmt *s;
	char state[16] = "", err[512] = "";

	if (store_prepare(p->st, "SELECT state, coalesce(error, '') FROM nodes WHERE id = ?", &s))
		return 0;
	sqlite3_bind_int64(s, 1, node);
	if (sqlite3_step(s) == SQLITE_ROW) {
		snprintf(state, sizeof(state), "%s", (const char *)sqlite3_column_text(s, 0));
		snprintf(err, sizeof(err), "%s", (const char *)sqlite3_column_text(s, 1));
	}
	sqlite3_finalize(s);
	if (!strcmp(state, "error")) {
		snprintf(why, whysz, "server %lld cannot render: %s", (long long)h->server, err);
		return 1;
	}
	if (strcmp(state, "offline") && strcmp(state, "connecting") && strcmp(state, "starting")) {
		h->away_since = 0;
		return 0;
	}
	if (!h->away_since)
		h->away_since = mono;
	/* Connecting includes starting Blender once (the probe): allow at
	 * least two minutes whatever boot_timeout says. */
	if (mono - h->away_since <
	    (p->cfg->clore_boot_timeout_ms > 120000 ? p->cfg->clore_boot_timeout_ms : 120000))
		return 0;
	snprintf(why, whysz, "server %lld unreachable over SSH for %llds: %s", (long long)h->server,
		 (long long)((mono - h->away_since) / 1000), err[0] ? err : state);
	return 1;
}

/* A node with nothing in flight and no queued frame it may take is idle;
 * idle for [clore] idle, it is given back.  An order still coming up is
 * idle when no frame is queued at all. */
static void release_idle(struct provision *p)
{
	int64_t mono = util_mono_ms(), now = util_now_ms(), top;
	int64_t queued = queued_frames(p, &top);

	for (int i = p->nheld - 1; i >= 0; i--) {
		struct held *h = &p->held[i];
		int idle;

		if (h->runner) {
			int64_t node = runner_node_id(h->runner);
			char why[700];

			/* Up but unable to render (no Blender, host key refused),
			 * or unreachable for as long as a boot may take: it costs
			 * money for nothing.  Give it back and try another. */
			if (node_broken(p, h, node, mono, why, sizeof(why))) {
				avoid_server(p, h->server);
				lost(p, h, why);
				continue;
			}
			idle = !node_busy(p, node) && !runner_pick_job(p->st, node, now);
		} else {
			idle = queued == 0;
		}
		if (!idle) {
			h->idle_since = 0;
		} else if (!h->idle_since) {
			h->idle_since = mono;
		} else if (mono - h->idle_since >= p->cfg->clore_idle_ms) {
			char why[128], d[32];

			snprintf(why, sizeof(why), "idle for %s",
				 util_fmt_duration(d, sizeof(d), (mono - h->idle_since) / 1000.0));
			release(p, h, why);
		}
	}
}

/* ---- renting ---- */

struct job_want {
	int64_t id;
	int nodes;
	char gpu[256];
	double min_vram, max_price;
	int spot;
};

static int job_want_get(struct provision *p, int64_t job, struct job_want *w)
{
	sqlite3_stmt *s;
	int rc = -ENOENT;

	memset(w, 0, sizeof(*w));
	if (store_prepare(p->st,
			  "SELECT clore_nodes, clore_gpu, clore_min_vram, clore_max_price, clore_spot"
			  " FROM jobs WHERE id = ?",
			  &s))
		return -EIO;
	sqlite3_bind_int64(s, 1, job);
	if (sqlite3_step(s) == SQLITE_ROW) {
		const char *g = (const char *)sqlite3_column_text(s, 1);
		double v = sqlite3_column_double(s, 2), mp = sqlite3_column_double(s, 3);
		int sp = sqlite3_column_int(s, 4);

		w->id = job;
		w->nodes = sqlite3_column_int(s, 0) > 0 ? sqlite3_column_int(s, 0) : p->cfg->clore_nodes;
		snprintf(w->gpu, sizeof(w->gpu), "%s",
			 g && *g             ? g
			 : p->cfg->clore_gpu ? p->cfg->clore_gpu
					     : "");
		w->min_vram = v >= 0 ? v : p->cfg->clore_min_vram;
		w->max_price = mp >= 0 ? mp : p->cfg->clore_max_price;
		w->spot = sp >= 0 ? sp : p->cfg->clore_spot;
		rc = 0;
	}
	sqlite3_finalize(s);
	return rc;
}

/* Frame times measured per GPU model for the job, to refine the ranking. */
static size_t measured(struct provision *p, int64_t job, struct market_measured *m,
		       char names[][CLORE_STR_MAX], size_t cap)
{
	sqlite3_stmt *s;
	size_t k = 0;

	if (store_prepare(p->st,
			  "SELECT r.gpu, avg(f.secs) FROM frames f JOIN nodes n ON n.id = f.node"
			  " JOIN rentals r ON r.id = n.rental WHERE f.job = ? AND f.state = 'done'"
			  " AND f.secs > 0 AND r.gpu != '' GROUP BY r.gpu",
			  &s))
		return 0;
	sqlite3_bind_int64(s, 1, job);
	while (k < cap && sqlite3_step(s) == SQLITE_ROW) {
		snprintf(names[k], CLORE_STR_MAX, "%s", (const char *)sqlite3_column_text(s, 0));
		m[k].gpu = names[k];
		m[k].secs = sqlite3_column_double(s, 1);
		k++;
	}
	sqlite3_finalize(s);
	return k;
}

static int count_state(struct provision *p, const char *states)
{
	char sql[256];
	sqlite3_stmt *s;
	int n = 0;

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM rentals WHERE state IN (%s)", states);
	if (store_prepare(p->st, sql, &s))
		return 0;
	if (sqlite3_step(s) == SQLITE_ROW)
		n = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	return n;
}

static int refresh_market(struct provision *p)
{
	struct clore_server *s = NULL;
	size_t n = 0;
	int rc;

	if (p->market && util_mono_ms() - p->market_at < MARKET_MAX_AGE)
		return 0;
	rc = clore_marketplace(p->cc, &s, &n);
	if (rc) {
		api_failed(p, "marketplace", rc);
		return rc;
	}
	api_ok(p, "marketplace");
	free(p->market);
	p->market = s;
	p->nmarket = n;
	p->market_at = util_mono_ms();
	return 0;
}

/* Wait before trying to rent again: a tenth of a minute per poll second,
 * between the poll interval and 30 s. */
static void rent_later(struct provision *p)
{
	int64_t wait = p->cfg->clore_poll_ms * 10;

	if (wait > 30000)
		wait = 30000;
	p->next_rent = util_mono_ms() + wait;
}

/* What renderfs would rent next and on what terms. */
struct offer {
	const struct clore_server *sv; /* in p->market */
	double bid;                    /* per day, in the currency (spot: the bid) */
	double rate;                   /* USD per unit of the currency */
	double score;                  /* per GPU, after measurements */
};

/* The best server for the job's wishes, not one we hold or that failed us. */
static int choose(struct provision *p, const struct job_want *w, struct offer *of)
{
	struct market_want mw = {
	    .gpu = w->gpu,
	    .min_vram = w->min_vram,
	    .max_price = w->max_price,
	    .spot = w->spot,
	    .spot_margin = p->cfg->clore_spot_margin,
	    .currency = p->cfg->clore_currency,
	    .min_reliability = p->cfg->clore_min_reliability,
	};
	struct market_measured m[MAX_MEASURED];
	char names[MAX_MEASURED][CLORE_STR_MAX], why[512];
	int64_t avoid[MAX_AVOID + MAX_HELD];
	struct rental_row *rows = NULL;
	struct market_choice *ch;
	size_t navoid = p->navoid, nrows = 0, nm, k;
	int rc = refresh_market(p);

	if (rc)
		return rc;
	memcpy(avoid, p->avoid, p->navoid * sizeof(avoid[0]));
	rentals_open(p, &rows, &nrows);
	for (size_t i = 0; i < nrows && navoid < ARRAY_SIZE(avoid); i++)
		avoid[navoid++] = rows[i].server;
	free(rows);
	nm = measured(p, w->id, m, names, MAX_MEASURED);
	ch = calloc(p->nmarket ? p->nmarket : 1, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	k = market_rank(p->market, p->nmarket, &mw, m, nm, avoid, navoid, ch, p->nmarket, why, sizeof(why));
	if (k) {
		of->sv = &p->market[ch[0].idx];
		of->bid = ch[0].price_day;
		of->score = ch[0].score;
		/* The listing's own USD figure until the spot market says better. */
		of->rate = ch[0].price_day > 0 ? ch[0].usd_h * 24.0 / ch[0].price_day : 0;
	} else {
		set_problem(p, "error: %s", why);
		p->market_at = 0; /* listings change: look again next time */
	}
	free(ch);
	return k ? 0 : -ENOENT;
}

/* Enough money for one hour of it?  Checked before every order. */
static int check_wallet(struct provision *p, const struct offer *of)
{
	const char *cur = p->cfg->clore_currency;
	struct clore_wallet *w = NULL;
	size_t n = 0;
	double balance = 0;
	int rc = clore_wallets(p->cc, &w, &n);

	if (rc) {
		api_failed(p, "wallets", rc);
		return rc;
	}
	api_ok(p, "wallets");
	for (size_t i = 0; i < n; i++)
		if (!strcmp(w[i].name, cur))
			balance = w[i].balance;
	free(w);
	if (balance >= of->bid / 24.0)
		return 0;
	set_problem(p,
		    "error: not enough balance: the %s wallet holds %.6g, one hour on server %lld needs %.6g;"
		    " nothing is rented",
		    cur, balance, (long long)of->sv->id, of->bid / 24.0);
	return -ENOSPC;
}

/* The spot market gives the currency's USD rate and, for a spot rental,
 * what the bid must beat: the listed spot price, the host's floor and the
 * highest bid of others, plus the margin. */
static void spot_terms(struct provision *p, const struct job_want *w, struct offer *of)
{
	const char *cur = p->cfg->clore_currency;
	struct clore_spot *sm = calloc(1, sizeof(*sm));

	if (sm && clore_spot_market(p->cc, of->sv->id, sm) == 0 && sm->exists) {
		double base = clore_server_price(of->sv, 1, cur), floor = clore_spot_floor(sm, cur);

		for (size_t i = 0; i < sm->n_rates; i++)
			if (!strcmp(sm->rates[i].currency, cur) && sm->rates[i].usd > 0)
				of->rate = sm->rates[i].usd;
		if (floor > base)
			base = floor;
		for (size_t i = 0; i < sm->n_offers; i++)
			if (sm->offers[i].active && !sm->offers[i].my &&
			    !strcmp(sm->offers[i].currency, cur) && sm->offers[i].bid > base)
				base = sm->offers[i].bid;
		if (w->spot)
			of->bid = base * (1 + p->cfg->clore_spot_margin);
	}
	free(sm);
}

/* The intent goes to disk before the order exists: a crash between the
 * two leaves a row the next mount matches to the order.  Returns its id. */
static int64_t record_intent(struct provision *p, const struct job_want *w, const struct offer *of,
			     int64_t now)
{
	sqlite3_stmt *s;
	int rc;

	if (store_prepare(
		p->st,
		"INSERT INTO rentals(server, intent_at, state, job, spot, currency, price_day,"
		" usd_rate, gpu, gpus, score) VALUES (?1, ?2, 'intent', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
		&s))
		return 0;
	sqlite3_bind_int64(s, 1, of->sv->id);
	sqlite3_bind_int64(s, 2, now);
	sqlite3_bind_int64(s, 3, w->id);
	sqlite3_bind_int(s, 4, w->spot);
	sqlite3_bind_text(s, 5, p->cfg->clore_currency, -1, SQLITE_STATIC);
	sqlite3_bind_double(s, 6, of->bid);
	sqlite3_bind_double(s, 7, of->rate);
	sqlite3_bind_text(s, 8, of->sv->gpu_model, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 9, of->sv->gpu_count);
	sqlite3_bind_double(s, 10, of->score);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	return rc ? 0 : sqlite3_last_insert_rowid(p->st->db);
}

/* create_order failed.  A timeout may still have made the order: the
 * intent stays for my_orders to settle; a refusal voids it. */
static void order_refused(struct provision *p, const struct job_want *w, const struct offer *of,
			  int64_t rental, int rc)
{
	int maybe_made = rc == -ETIMEDOUT || rc == -EIO || rc == -ECONNRESET || rc == -EPROTO;
	char why[512];

	snprintf(why, sizeof(why), "ordering server %lld: %s", (long long)of->sv->id, clore_error(p->cc));
	if (!maybe_made)
		rental_exec(p, "UPDATE rentals SET state = 'void', end_reason = :text WHERE id = :id", rental,
			    why, 0, 0);
	if (rc == -ENOSPC)
		set_problem(p, "error: not enough balance in the %s wallet to rent server %lld",
			    p->cfg->clore_currency, (long long)of->sv->id);
	else if (rc == -EACCES)
		api_failed(p, "create_order", rc);
	else
		store_event(p->st, w->id, 0, 0, "clore", why);
	/* Taken, outbid, offline, currency refused: try another server. */
	if (rc != -ENOSPC && rc != -EACCES && !maybe_made)
		avoid_server(p, of->sv->id);
	p->market_at = 0;
}

static void rent_one(struct provision *p, const struct job_want *w)
{
	struct clore_order_req req = {0};
	struct offer of = {0};
	int64_t rental, now;
	int rc;

	if (choose(p, w, &of) || check_wallet(p, &of)) {
		rent_later(p);
		return;
	}
	spot_terms(p, w, &of);
	/* Outbidding others may have pushed a spot bid past max_price. */
	if (w->max_price > 0 && of.sv->gpu_count > 0 && of.rate > 0 &&
	    of.bid * of.rate / 24.0 / of.sv->gpu_count > w->max_price + 1e-12) {
		char ev[256];

		snprintf(ev, sizeof(ev),
			 "server %lld: a winning bid would cost more than max_price; not ordered",
			 (long long)of.sv->id);
		store_event(p->st, w->id, 0, 0, "clore", ev);
		avoid_server(p, of.sv->id);
		p->next_rent = 0;
		return;
	}
	now = util_now_ms();
	rental = record_intent(p, w, &of, now);
	if (!rental) {
		rent_later(p);
		return;
	}
	req.server_id = of.sv->id;
	req.spot = w->spot;
	req.currency = p->cfg->clore_currency;
	req.image = p->cfg->clore_image;
	req.ssh_key = p->ssh_key;
	req.spotprice = of.bid;
	rc = clore_create_order(p->cc, &req);
	if (rc) {
		order_refused(p, w, &of, rental, rc);
		rent_later(p);
		return;
	}
	/* Clore answers without the order id: find it (or the next poll will). */
	{
		struct clore_order *o = NULL;
		struct rental_row r = {.id = rental, .server = of.sv->id, .intent_at = now};
		const struct clore_order *ord;
		size_t n = 0;
		char ev[300], a[32];

		if (clore_my_orders(p->cc, 0, &o, &n) == 0 && (ord = match_intent(p, o, n, &r))) {
			rental_found(p, rental, ord);
			held_add(p, rental, ord->id, of.sv->id);
			snprintf(ev, sizeof(ev), "rented server %lld (%dx %s) as order %lld, %s, %s/h",
				 (long long)of.sv->id, of.sv->gpu_count, of.sv->gpu_model, (long long)ord->id,
				 w->spot ? "spot" : "on-demand",
				 util_fmt_money(a, sizeof(a), of.bid * of.rate / 24.0));
			store_event(p->st, w->id, 0, 0, "clore", ev);
		}
		free(o);
	}
	if (!strncmp(p->problem, "error: not enough balance", 25) ||
	    !strncmp(p->problem, "error: no server", 16))
		set_problem(p, "%s", "");
	p->next_rent = 0;
}

static void maybe_rent(struct provision *p)
{
	struct job_want w;
	int64_t top, queued;
	int held, coming;

	if (util_mono_ms() < p->next_rent)
		return;
	queued = queued_frames(p, &top);
	if (!queued && (!strncmp(p->problem, "error: not enough balance", 25) ||
			!strncmp(p->problem, "error: no server", 16)))
		set_problem(p, "%s", ""); /* nothing to rent for: nothing stops it */
	if (!queued || job_want_get(p, top, &w))
		return;
	held = count_state(p, "'intent', 'booting', 'ready', 'releasing'");
	coming = count_state(p, "'intent', 'booting'");
	/* Each order coming up will take a frame: rent only for frames no
	 * node is on its way for. */
	if (held >= w.nodes || queued <= coming)
		return;
	rent_one(p, &w);
}

/* ---- the status line ---- */

static void publish(struct provision *p)
{
	char line[600];
	int held = count_state(p, "'booting', 'ready', 'releasing'");

	if (p->problem[0])
		snprintf(line, sizeof(line), "%s", p->problem);
	else
		snprintf(line, sizeof(line), "ok, %d order%s held", held, held == 1 ? "" : "s");
	if (!strcmp(line, p->shown))
		return;
	snprintf(p->shown, sizeof(p->shown), "%s", line);
	store_meta_set(p->st, "clore_status", line);
}

/* ---- the thread ---- */

static void *provision_main(void *arg)
{
	struct provision *p = arg;
	int spent_out = 0;

	/* Reconcile first: adopt what is still ours and running, end what
	 * is gone, resolve intents left by a crash. */
	poll_orders(p);
	p->last_poll = util_mono_ms();
	while (!atomic_load(&p->stop)) {
		int64_t mono = util_mono_ms();

		if (!p->dead && mono - p->last_poll >= p->cfg->clore_poll_ms) {
			p->last_poll = mono;
			poll_orders(p);
		}
		if (!p->dead && !atomic_load(&p->stop)) {
			spent_out = budgets(p);
			release_idle(p);
			if (!spent_out && !atomic_load(&p->stop))
				maybe_rent(p);
			if (mono - p->last_settle >= 5 * p->cfg->clore_poll_ms) {
				p->last_settle = mono;
				settle(p);
			}
		}
		publish(p);
		nap(p, 250);
	}
	/* Unmount: stop every node together, then give the orders back. */
	for (int i = 0; i < p->nheld; i++)
		if (p->held[i].runner) {
			runner_stop_because(p->held[i].runner, "renderfs stopped");
			runner_signal_stop(p->held[i].runner);
		}
	for (int i = 0; i < p->nheld; i++)
		node_stop(&p->held[i], "renderfs stopped");
	p->closing = 1;
	if (!p->cfg->clore_keep_at_unmount && !p->dead) {
		while (p->nheld > 0)
			release(p, &p->held[p->nheld - 1], "renderfs unmounted");
		/* Intents whose order was never found: look once more. */
		if (count_state(p, "'intent', 'booting', 'ready', 'releasing'")) {
			poll_orders(p);
			while (p->nheld > 0)
				release(p, &p->held[p->nheld - 1], "renderfs unmounted");
		}
		settle(p);
	}
	publish(p);
	return NULL;
}

int provision_start(const char *state_dir, const struct config *cfg, const char *api_key,
		    const char *identity, const char *identity_pub, const char *worker_path,
		    struct provision **out)
{
	struct provision *p;
	char err[512];
	size_t len;
	int rc;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->cfg = cfg;
	p->dir = strdup(state_dir);
	snprintf(p->worker_path, sizeof(p->worker_path), "%s", worker_path);
	snprintf(p->identity, sizeof(p->identity), "%s", identity);
	snprintf(p->identity_pub, sizeof(p->identity_pub), "%s", identity_pub);
	rc = p->dir ? util_read_file(identity_pub, 16384, &p->ssh_key, &len) : -ENOMEM;
	if (rc) {
		fprintf(stderr, "renderfs: cannot read %s: %s\n", identity_pub, strerror(-rc));
		goto out_free;
	}
	while (len && (p->ssh_key[len - 1] == '\n' || p->ssh_key[len - 1] == '\r'))
		p->ssh_key[--len] = '\0';
	p->cc = clore_new(cfg->clore_api_url, api_key, err, sizeof(err));
	if (!p->cc) {
		fprintf(stderr, "renderfs: clore: %s\n", err);
		rc = -EINVAL;
		goto out_free;
	}
	rc = store_open(state_dir, &p->st);
	if (rc)
		goto out_client;
	rc = pthread_create(&p->thread, NULL, provision_main, p);
	if (rc) {
		rc = -rc;
		store_close(p->st);
		goto out_client;
	}
	*out = p;
	return 0;

out_client:
	clore_free(p->cc);
out_free:
	free(p->ssh_key);
	free(p->dir);
	free(p);
	return rc;
}

void provision_stop(struct provision *p)
{
	if (!p)
		return;
	atomic_store(&p->stop, 1);
	pthread_join(p->thread, NULL);
	store_close(p->st);
	clore_free(p->cc);
	free(p->market);
	free(p->ssh_key);
	free(p->dir);
	free(p);
}
