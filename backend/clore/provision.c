/*
 * provision: rent, watch and release Clore servers (see provision.h).
 *
 * A rental's life is a row of `rentals` and its state machine
 * (intent -> booting -> ready -> ended; void; releasing) is drawn in
 * store/rentals.h.  Every state change here goes through
 * store_rental_transition() from the state this thread last read or made
 * (struct held keeps it); a lost race (-ESTALE) is written as an event and
 * the rental is left to the next poll, which reads the row again.
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
#include "sched/dispatch.h"
#include "sched/runner.h"
#include "store/clore_rows.h"
#include "store/rentals.h"
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
#include <strings.h>
#include <unistd.h>

#define MAX_HELD        64
#define MAX_AVOID       256
#define MAX_MEASURED    16
#define INTENT_WINDOW_S 30     /* an order this long before its intent still matches (clock skew) */
#define INTENT_GIVE_UP  120000 /* ms: an intent no order appeared for is void */
#define MARKET_MAX_AGE  30000  /* ms between marketplace listings */
#define NO_FIT_MAX      16     /* jobs remembered as fitting no listed server */
/* At unmount, cancels that failed are tried again, with backoff, for this
 * long (times the client's rate scale: the tests' fake runs faster); new
 * attempts start only within it, so unmount takes at most this plus one
 * cancel call (its own retries on code 5 / HTTP 429 included). */
#define UNMOUNT_RETRY_MS 60000

/* What a rented node is, as a job's wishes judge it (desc_accepts). */
struct node_desc {
	const struct config *cfg;
	int64_t node;     /* its nodes row, once started (0 before) */
	char gpu[128];    /* the model the marketplace listed */
	int gpus, spot;
	double vram;      /* GB per GPU; 0: unknown (accepted) */
	double usd_gpu_h; /* what renderfs pays, per GPU-hour; 0: unknown (accepted) */
};

struct held {
	int64_t rental, order, server;
	enum rental_state state; /* what the row was when last read or moved */
	int64_t away_since;      /* mono ms: its node offline or connecting since */
	int64_t up_at;           /* mono ms: its node was started (0: not yet) */
	int key_wait_said;       /* the "key refused so far" event was written */
	struct tnode *node;      /* with runner, once the server came up */
	struct runner *runner;
	struct node_desc *desc; /* what the node is, for the jobs' wishes (with runner) */
	int64_t idle_since; /* mono ms; 0 while it has work */
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
	/* a rented node could not install Blender: the mirror, not the
	 * server, is at fault; no order before this (mono ms) */
	int64_t install_block_until;
	struct {
		int64_t job, until; /* mono ms */
	} no_fit[NO_FIT_MAX];       /* jobs no listed server fits, for now */
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

#define INSTALL_BLOCK_MS (10 * 60 * 1000)

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

static struct held *held_add(struct provision *p, int64_t rental, int64_t order, int64_t server,
			     enum rental_state state)
{
	struct held *h = held_find(p, rental);

	if (h) {
		h->state = state;
		return h;
	}
	if (p->nheld >= MAX_HELD)
		return NULL;
	h = &p->held[p->nheld++];
	memset(h, 0, sizeof(*h));
	h->rental = rental;
	h->order = order;
	h->server = server;
	h->state = state;
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

/* The rentals not yet over; *out malloc'd (free it), NULL on an error. */
static void rentals_open(struct provision *p, struct rental_row **out, size_t *n)
{
	if (store_rentals_open(p->st, out, n))
		*out = NULL, *n = 0;
}

/* A transition lost its race: the row is not in the state this thread
 * believed.  Nothing is done on that belief; the rental is dropped from
 * what is held (if it was), and the next poll reads the row afresh. */
static void lost_race(struct provision *p, int64_t rental, enum rental_state from, enum rental_event ev)
{
	char ev_text[256];

	snprintf(ev_text, sizeof(ev_text), "rental %lld was no longer %s (%s not made); left as it is",
		 (long long)rental, rental_state_name(from), rental_event_name(ev));
	store_event(p->st, 0, 0, 0, "clore", ev_text);
	fprintf(stderr, "renderfs: clore: %s\n", ev_text);
}

/* Move a rental by ev from the state the caller believes it is in; a lost
 * race is reported (lost_race) and returned as -ESTALE. */
static int rental_step(struct provision *p, int64_t rental, enum rental_state from, enum rental_event ev,
		       const struct rental_move *m)
{
	int rc = store_rental_transition(p->st, rental, from, ev, m);

	if (rc == -ESTALE)
		lost_race(p, rental, from, ev);
	return rc;
}

static int rental_end(struct provision *p, int64_t rental, enum rental_state from, const char *why)
{
	struct rental_move m = {.reason = why};
	int rc = rental_step(p, rental, from, RE_END, &m);

	store_nodes_end_rental(p->st, rental); /* removed, and offline through the node machine */
	return rc < 0 ? rc : 0;
}

static int rental_void(struct provision *p, int64_t rental, const char *why)
{
	struct rental_move m = {.reason = why};
	int rc = rental_step(p, rental, RS_INTENT, RE_VOID, &m);

	return rc < 0 ? rc : 0;
}

/* The order's creation fee in its currency, as rentals.fee keeps it:
 * Clore gives the fee in USD (clore-api.md), the row's usd_rate converts.
 * Unknown (0) when the rate is. */
static double fee_in_currency(const struct clore_order *o, double usd_rate)
{
	return o->creation_fee > 0 && usd_rate > 0 ? o->creation_fee / usd_rate : 0;
}

/* An order found for an intent: remember its id and its own figures.
 * usd_rate is the rental's (USD per unit of its currency). */
static int rental_found(struct provision *p, int64_t rental, double usd_rate, const struct clore_order *o)
{
	struct rental_move m = {
	    .order_id = o->id,
	    .created = o->ct > 0 ? o->ct * 1000 : util_now_ms(),
	    .fee = fee_in_currency(o, usd_rate),
	    .price_day = o->price,
	    .currency = o->currency,
	};
	int rc = rental_step(p, rental, RS_INTENT, RE_FOUND, &m);

	return rc < 0 ? rc : 0;
}

/* Is this order id already some rental's?  (An error counts as yes.) */
static int order_claimed(struct provision *p, int64_t order)
{
	return store_rental_order_claimed(p->st, order) != 0;
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

/* ---- the jobs' wishes ---- */

struct job_want {
	int64_t id;
	int nodes;
	char gpu[256];
	double min_vram, max_price;
	int spot;
};

/* The job's wishes: its sidecar's (jobs.clore_*), else [clore]'s. */
static int want_fill(const struct config *cfg, struct store *st, int64_t job, struct job_want *w)
{
	struct clore_job_wish jw;
	int rc = store_clore_job_wish(st, job, &jw);

	memset(w, 0, sizeof(*w));
	if (rc)
		return rc == -ENOENT ? rc : -EIO;
	w->id = job;
	w->nodes = jw.nodes > 0 ? jw.nodes : cfg->clore_nodes;
	snprintf(w->gpu, sizeof(w->gpu), "%s",
		 jw.gpu[0]      ? jw.gpu
		 : cfg->clore_gpu ? cfg->clore_gpu
				  : "");
	w->min_vram = jw.min_vram >= 0 ? jw.min_vram : cfg->clore_min_vram;
	w->max_price = jw.max_price >= 0 ? jw.max_price : cfg->clore_max_price;
	w->spot = jw.spot >= 0 ? jw.spot : cfg->clore_spot;
	return 0;
}

static int job_want_get(struct provision *p, int64_t job, struct job_want *w)
{
	return want_fill(p->cfg, p->st, job, w);
}

/* A rental as the wishes see it: the row's GPU model, count, price and
 * kind; the GPU memory from the last listing (unknown when the server is
 * no longer listed). */
static void desc_from_row(struct provision *p, const struct rental_row *r, struct node_desc *d)
{
	memset(d, 0, sizeof(*d));
	d->cfg = p->cfg;
	snprintf(d->gpu, sizeof(d->gpu), "%s", r->gpu);
	d->gpus = r->gpus;
	d->spot = r->spot;
	if (r->gpus > 0 && r->price_day > 0 && r->usd_rate > 0)
		d->usd_gpu_h = r->price_day * r->usd_rate / 24.0 / r->gpus;
	for (size_t i = 0; i < p->nmarket; i++)
		if (p->market[i].id == r->server)
			d->vram = p->market[i].gpuram;
}

/* Would a job with these wishes take this node?  The same filters renting
 * applies (market_rank): the GPU model, its memory, the price per GPU-hour
 * (the bid, for spot), and spot = no refuses a spot node (it can be
 * outbid); a spot = yes job takes an on-demand node.  What is not known
 * about the node does not refuse it. */
static int desc_accepts(const struct node_desc *d, const struct job_want *w)
{
	if (w->gpu[0] && d->gpu[0] && !market_gpu_wanted(w->gpu, d->gpu))
		return 0;
	if (w->min_vram > 0 && d->vram > 0 && d->vram + 1e-9 < w->min_vram)
		return 0;
	if (w->max_price > 0 && d->usd_gpu_h > 0 && d->usd_gpu_h > w->max_price + 1e-9)
		return 0;
	if (!w->spot && d->spot)
		return 0;
	return 1;
}

/* A rented GPU server whose Blender renders on the CPU although no job
 * asked for it (device auto fell back: no GPU back-end, no driver, no
 * device): 1, with the worker's reason in why. */
static int cpu_fallback(struct store *st, int64_t node, char *why, size_t whysz)
{
	char dev[64];

	if (!node || store_clore_node_device(st, node, dev, sizeof(dev), why, whysz))
		return 0;
	return !strcasecmp(dev, "CPU") && strncmp(why, "cpu requested", 13);
}

/* dispatch's filter for a rented node (dispatch_set_accept): on the
 * picking thread, with its store.  A job that cannot be read is refused,
 * and so is every job while the node renders on CPU instead of its GPUs
 * (provision gives it back: node_broken). */
static int node_accepts(void *arg, struct store *st, int64_t job)
{
	const struct node_desc *d = arg;
	struct job_want w;
	char why[256];

	if (cpu_fallback(st, d->node, why, sizeof(why)) || want_fill(d->cfg, st, job, &w))
		return 0;
	return desc_accepts(d, &w);
}

/* ---- nodes ---- */

static double rental_price_h(const struct rental_row *r)
{
	return r->price_day * r->usd_rate / 24.0;
}

static void node_stop(struct held *h, const char *why)
{
	int64_t node;

	if (!h->runner)
		return;
	runner_stop_because(h->runner, why);
	node = runner_node_id(h->runner);
	runner_stop(h->runner);
	dispatch_set_accept(node, NULL, NULL); /* no thread picks for it now */
	free(h->desc);
	ssh_node_free(h->node);
	h->runner = NULL;
	h->node = NULL;
	h->desc = NULL;
}

/* The server is up: drive it like an SSH node.  -ESTALE: the rental's row
 * was no longer what this thread believed; its node is stopped again and it
 * is no longer held (h is gone). */
static int node_start(struct provision *p, const struct rental_row *r, const struct clore_order *o)
{
	char host[CLORE_STR_MAX], target[CLORE_STR_MAX + 32], name[64];
	struct rental_move m = {0};
	struct held *h;
	struct ssh_opts so;
	int port, rc;

	if (clore_order_ssh(o, host, sizeof(host), &port))
		return -EAGAIN;
	h = held_add(p, r->id, r->order_id, r->server, r->state);
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
	h->desc = calloc(1, sizeof(*h->desc));
	h->node = h->desc ? ssh_node_new(&so) : NULL;
	if (!h->node) {
		free(h->desc);
		h->desc = NULL;
		return -ENOMEM;
	}
	desc_from_row(p, r, h->desc);
	h->up_at = util_mono_ms();
	h->key_wait_said = 0;
	rc = runner_start(p->dir, p->cfg, h->node, p->cfg->ssh_slots, p->cfg->clore_blender, p->worker_path,
			  &h->runner);
	if (rc) {
		ssh_node_free(h->node);
		free(h->desc);
		h->node = NULL;
		h->desc = NULL;
		return rc;
	}
	/* Before its first frame: connecting and the Blender probe come first. */
	h->desc->node = runner_node_id(h->runner);
	dispatch_set_accept(h->desc->node, node_accepts, h->desc);
	store_clore_node_attach(p->st, runner_node_id(h->runner), r->id, rental_price_h(r));
	m.node = runner_node_id(h->runner);
	rc = rental_step(p, r->id, h->state, RE_UP, &m);
	if (rc < 0) {
		/* The row moved on (lost race): this node is not its rental's. */
		node_stop(h, "its rental changed meanwhile");
		held_remove(p, h);
		return rc;
	}
	h->state = RS_READY;
	{
		char ev[256];

		snprintf(ev, sizeof(ev), "order %lld on server %lld is up at %s", (long long)r->order_id,
			 (long long)r->server, target);
		store_event(p->st, r->job, runner_node_id(h->runner), 0, "clore", ev);
	}
	return 0;
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
			struct rental_move m = {.reason = why};

			/* Try again on the next poll; the row says so.  A lost
			 * race leaves the row to the next poll as well. */
			rental_step(p, rental, h->state, RE_CANCEL_FAILED, &m);
			snprintf(ev, sizeof(ev), "cancelling order %lld failed: %s (will retry)",
				 (long long)order, clore_error(p->cc));
			store_event(p->st, 0, 0, 0, "clore", ev);
			fprintf(stderr, "renderfs: clore: %s\n", ev);
			held_remove(p, h); /* the next poll (or mount) takes it up again */
			return;
		}
	}
	rental_end(p, rental, h->state, why);
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

/* Cancel again every rental left `releasing` (a cancel that failed); no
 * new attempt starts after the mono-ms deadline (0: none).  Returns how
 * many are still releasing (an error counts as one). */
static int release_pending(struct provision *p, const char *why, int64_t deadline)
{
	struct rental_row *rows = NULL;
	size_t n = 0;
	int left;

	rentals_open(p, &rows, &n);
	for (size_t i = 0; i < n; i++) {
		struct held *h;

		if (rows[i].state != RS_RELEASING || (deadline && util_mono_ms() >= deadline))
			continue;
		h = held_add(p, rows[i].id, rows[i].order_id, rows[i].server, RS_RELEASING);
		if (h)
			release(p, h, why);
	}
	free(rows);
	left = store_rental_count(p->st, RENTAL_BIT(RS_RELEASING));
	return left < 0 ? 1 : left;
}

/* Unmounting: the cancels that failed are tried again, 1 s, 2 s, 4 s ...
 * apart (scaled like the client's backoff), for UNMOUNT_RETRY_MS.  What is
 * still not given back is said on stderr with its order ids: the rentals
 * stay `releasing`, and the next mount cancels them before anything else. */
static void release_at_unmount(struct provision *p)
{
	double scale = clore_rate_scale(p->cc);
	int64_t deadline = util_mono_ms() + (int64_t)(UNMOUNT_RETRY_MS * scale);
	int64_t wait = (int64_t)(1000 * scale);
	struct rental_row *rows = NULL;
	size_t n = 0;
	char ids[400] = "", ev[700], d[32];
	size_t len = 0;
	int left = release_pending(p, "renderfs unmounted", deadline), k = 0;

	while (left > 0 && util_mono_ms() + wait < deadline) {
		for (int64_t end = util_mono_ms() + wait; util_mono_ms() < end;)
			usleep(20 * 1000);
		wait = wait * 2 > 10000 ? 10000 : wait * 2;
		left = release_pending(p, "renderfs unmounted", deadline);
	}
	if (left <= 0)
		return;
	rentals_open(p, &rows, &n);
	for (size_t i = 0; i < n; i++) {
		if (rows[i].state != RS_RELEASING)
			continue;
		k++;
		if (len < sizeof(ids) - 24)
			len += (size_t)snprintf(ids + len, sizeof(ids) - len, "%s%lld", len ? ", " : "",
						(long long)rows[i].order_id);
	}
	free(rows);
	snprintf(ev, sizeof(ev),
		 "%d order%s could not be cancelled within %s: %s (last error: %s); the next mount "
		 "cancels %s first; until then %s may cost money (cancelling at clore.ai stops that now)",
		 k, k == 1 ? "" : "s", util_fmt_duration(d, sizeof(d), UNMOUNT_RETRY_MS * scale / 1000.0),
		 ids[0] ? ids : "?", clore_error(p->cc)[0] ? clore_error(p->cc) : "unknown",
		 k == 1 ? "it" : "them", k == 1 ? "it" : "they");
	store_event(p->st, 0, 0, 0, "clore", ev);
	fprintf(stderr, "renderfs: clore: %s\n", ev);
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

		if (r->state == RS_INTENT) {
			ord = match_intent(p, o, n, r);
			if (ord) {
				if (rental_found(p, r->id, r->usd_rate, ord))
					continue; /* lost race: the row is not an intent now */
				r->order_id = ord->id;
				r->state = RS_BOOTING;
			} else if (now - r->intent_at > INTENT_GIVE_UP) {
				/* Its order may have come and gone while renderfs was
				 * down: then it is ended (and settled), not void. */
				if (!done && clore_my_orders(p->cc, 1, &done, &ndone))
					done = NULL, ndone = 0;
				ord = done ? match_intent(p, done, ndone, r) : NULL;
				if (ord) {
					if (rental_found(p, r->id, r->usd_rate, ord) == 0)
						rental_end(p, r->id, RS_BOOTING,
							   "ended while renderfs was not running");
				} else {
					rental_void(p, r->id, "no order appeared");
				}
				continue;
			} else {
				continue;
			}
		}
		h = held_add(p, r->id, r->order_id, r->server, r->state);
		if (!h)
			continue;
		ord = order_by_id(o, n, r->order_id);
		if (r->state == RS_RELEASING) {
			release(p, h, "released");
			continue;
		}
		if (r->state == RS_BOOTING) {
			if (!ord || ord->expired) {
				node_stop(h, "the order ended before it came up");
				rental_end(p, r->id, RS_BOOTING, "the order ended before it came up");
				held_remove(p, h);
				avoid_server(p, r->server);
				continue;
			}
			if (ord->online && !p->closing) {
				int up = node_start(p, r, ord);

				if (up == 0 || up == -ESTALE)
					continue; /* up, or no longer ours to start (h is gone) */
			}
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
			store_rental_set_price(p->st, r->id, ord->price, ord->price * r->usd_rate / 24.0);
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
	struct rental_unsettled u[64];
	size_t n = 0;
	int k = store_rentals_unsettled(p->st, u, ARRAY_SIZE(u));

	if (k <= 0 || clore_my_orders(p->cc, 1, &o, &n))
		return;
	for (int i = 0; i < k; i++) {
		const struct clore_order *ord = order_by_id(o, n, u[i].order_id);

		if (!ord || !ord->expired || ord->spend < 0)
			continue;
		/* spend is in the order's currency, the creation fee in USD. */
		store_rental_settle(p->st, u[i].order_id,
				    ord->spend * u[i].usd_rate +
					(ord->creation_fee > 0 ? ord->creation_fee : 0));
	}
	free(o);
}

/* 1 when the total budget is spent: everything held is released. */
static int budgets(struct provision *p)
{
	struct money_farm f;
	int64_t now = util_now_ms();
	struct clore_budget_job bj[64];
	int k = store_clore_budget_jobs(p->st, bj, ARRAY_SIZE(bj));

	/* A job's own budget: past it, the job takes no more frames (and
	 * so asks for no more nodes). */
	for (int i = 0; i < k; i++) {
		struct money_job mj;
		char msg[256], a[32], b[32];

		money_job_get(p->st, bj[i].job, now, &mj);
		if (mj.spent < bj[i].budget)
			continue;
		snprintf(msg, sizeof(msg),
			 "budget reached: spent %s of the job's budget %s; no new frames start",
			 util_fmt_money(a, sizeof(a), mj.spent), util_fmt_money(b, sizeof(b), bj[i].budget));
		store_clore_job_over_budget(p->st, bj[i].job);
		job_set_error(p->st, bj[i].job, msg);
		store_event(p->st, bj[i].job, 0, 0, "clore", msg);
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

/* Frames waiting for a node (counted up to 1000) and the job that decides
 * what is rented: the first by priority with a queued frame (see
 * store_clore_queued).  0 on an error. */
static int64_t queued_frames(struct provision *p, int64_t *top_job)
{
	int64_t n = store_clore_queued(p->st, top_job);

	return n > 0 ? n : 0;
}

/* An error counts as busy: nothing is released on a guess. */
static int node_busy(struct provision *p, int64_t node)
{
	return store_clore_node_busy(p->st, node) != 0;
}

static int node_broken(struct provision *p, struct held *h, int64_t node, int64_t mono, char *why,
		       size_t whysz)
{
	char state[16] = "", err[512] = "";
	int rc = store_clore_node_state(p->st, node, state, sizeof(state), err, sizeof(err));

	if (rc && rc != -ENOENT)
		return 0;
	{
		char dwhy[256];

		/* Paid for its GPUs, rendering on CPU: not a slow success. */
		if (strcmp(state, "error") && cpu_fallback(p->st, node, dwhy, sizeof(dwhy))) {
			const struct node_desc *d = h->desc;

			snprintf(why, whysz,
				 "server %lld has %dx %s, but Blender renders on CPU there (%s); its "
				 "frames go to other nodes",
				 (long long)h->server, d && d->gpus ? d->gpus : 1,
				 d && d->gpu[0] ? d->gpu : "GPU", dwhy[0] ? dwhy : "device auto found no GPU");
			store_node_set_error(p->st, node, why);
			return 1;
		}
	}
	if (!strcmp(state, "error")) {
		/* The container may install the order's key only after the order
		 * shows online: a refused login is tried again (the runner backs
		 * off) until boot_timeout from the node's start. */
		if (!strncmp(err, "authentication", 14) && h->up_at &&
		    mono - h->up_at < p->cfg->clore_boot_timeout_ms) {
			if (!h->key_wait_said) {
				char ev[700];

				h->key_wait_said = 1;
				snprintf(ev, sizeof(ev),
					 "server %lld refuses the order's key so far (%s); trying again "
					 "until boot_timeout",
					 (long long)h->server, err);
				store_event(p->st, 0, node, 0, "clore", ev);
			}
			return 0;
		}
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
				/* A download that failed or did not verify is the
				 * mirror's fault: another server would fail the same
				 * way and cost another creation fee.  Renting waits. */
				const char *inst = strstr(why, "cannot render: Blender install failed");

				if (inst) {
					p->install_block_until = mono + INSTALL_BLOCK_MS;
					set_problem(p,
						    "error: %s; no new order for %d min (see [renderfs] "
						    "blender_mirror)",
						    inst + strlen("cannot render: "), INSTALL_BLOCK_MS / 60000);
				} else {
					avoid_server(p, h->server);
				}
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

/* Frame times measured per GPU model for the job, to refine the ranking;
 * m[i].gpu points into t. */
static size_t measured(struct provision *p, int64_t job, struct market_measured *m, struct clore_gpu_time *t,
		       size_t cap)
{
	int k = store_clore_gpu_times(p->st, job, t, cap);

	for (int i = 0; i < k; i++) {
		m[i].gpu = t[i].gpu;
		m[i].secs = t[i].secs;
	}
	return k > 0 ? (size_t)k : 0;
}

/* How many rentals are in the states of mask; 0 on an error. */
static int count_state(struct provision *p, unsigned mask)
{
	int n = store_rental_count(p->st, mask);

	return n > 0 ? n : 0;
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
	struct clore_gpu_time times[MAX_MEASURED];
	char why[512];
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
	nm = measured(p, w->id, m, times, MAX_MEASURED);
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
	struct rental_intent in = {
	    .server = of->sv->id,
	    .intent_at = now,
	    .job = w->id,
	    .spot = w->spot,
	    .currency = p->cfg->clore_currency,
	    .price_day = of->bid,
	    .usd_rate = of->rate,
	    .gpu = of->sv->gpu_model,
	    .gpus = of->sv->gpu_count,
	    .score = of->score,
	};
	int64_t id = 0;

	return store_rental_intent(p->st, &in, &id) ? 0 : id;
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
		rental_void(p, rental, why);
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

/* Returns -ENOENT when no listed server fits the job's wishes (another
 * job may still find one), else 0 (rented, or tried and failed: the
 * failure spaces the next attempt). */
static int rent_one(struct provision *p, const struct job_want *w)
{
	struct clore_order_req req = {0};
	struct offer of = {0};
	int64_t rental, now;
	int rc;

	rc = choose(p, w, &of);
	if (rc == -ENOENT)
		return rc;
	if (rc || check_wallet(p, &of)) {
		rent_later(p);
		return 0;
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
		return 0;
	}
	now = util_now_ms();
	rental = record_intent(p, w, &of, now);
	if (!rental) {
		rent_later(p);
		return 0;
	}
	req.server_id = of.sv->id;
	req.spot = w->spot;
	req.currency = p->cfg->clore_currency;
	/* No image of the user's own: a stock one that starts sshd with the
	 * order's ssh_key; Blender is then installed by renderfs
	 * (docs/modules/provision.md says which image and why). */
	req.image =
	    p->cfg->clore_image && *p->cfg->clore_image ? p->cfg->clore_image : PROVISION_DEFAULT_IMAGE;
	req.ssh_key = p->ssh_key;
	req.spotprice = of.bid;
	rc = clore_create_order(p->cc, &req);
	if (rc) {
		order_refused(p, w, &of, rental, rc);
		rent_later(p);
		return 0;
	}
	/* Clore answers without the order id: find it (or the next poll will). */
	{
		struct clore_order *o = NULL;
		struct rental_row r = {
		    .id = rental, .server = of.sv->id, .intent_at = now, .state = RS_INTENT};
		const struct clore_order *ord;
		size_t n = 0;
		char ev[300], a[32];

		if (clore_my_orders(p->cc, 0, &o, &n) == 0 && (ord = match_intent(p, o, n, &r)) &&
		    rental_found(p, rental, of.rate, ord) == 0) {
			held_add(p, rental, ord->id, of.sv->id, RS_BOOTING);
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
	return 0;
}

/* Is job j waiting for a server to fit its wishes?  (p->no_fit) */
static int no_fit_now(struct provision *p, int64_t job, int64_t mono)
{
	for (int i = 0; i < NO_FIT_MAX; i++)
		if (p->no_fit[i].job == job && mono < p->no_fit[i].until)
			return 1;
	return 0;
}

static void no_fit_note(struct provision *p, int64_t job, int64_t mono)
{
	int slot = 0;
	int64_t wait = p->cfg->clore_poll_ms * 10 > 30000 ? 30000 : p->cfg->clore_poll_ms * 10;

	for (int i = 0; i < NO_FIT_MAX; i++) {
		if (p->no_fit[i].job == job) {
			slot = i;
			break;
		}
		if (p->no_fit[i].until < p->no_fit[slot].until)
			slot = i;
	}
	p->no_fit[slot].job = job;
	p->no_fit[slot].until = mono + wait;
}

/*
 * Every job with queued frames, by priority, gets nodes that fit its own
 * wishes: the open rentals that would take its frames (desc_accepts) are
 * counted for it, and one more is rented for the first job that has fewer
 * than its `nodes` and more queued frames than such rentals still coming
 * up.  The farm holds at most [clore] nodes rentals in all.  One order per
 * pass; a job no listed server fits waits a while (no_fit) and the next
 * job is looked at meanwhile.
 */
static void maybe_rent(struct provision *p)
{
	struct clore_queued_job jobs[64];
	struct rental_row *rows = NULL;
	size_t nrows = 0;
	int64_t top, queued, mono = util_mono_ms();
	int njobs, held;

	if (mono < p->next_rent || mono < p->install_block_until)
		return;
	queued = queued_frames(p, &top);
	if (!queued && (!strncmp(p->problem, "error: not enough balance", 25) ||
			!strncmp(p->problem, "error: no server", 16)))
		set_problem(p, "%s", ""); /* nothing to rent for: nothing stops it */
	if (!queued)
		return;
	held = count_state(p, RENTAL_OPEN_MASK);
	if (held >= p->cfg->clore_nodes)
		return;
	njobs = store_clore_queued_jobs(p->st, jobs, ARRAY_SIZE(jobs));
	if (njobs <= 0)
		return;
	rentals_open(p, &rows, &nrows);
	for (int j = 0; j < njobs; j++) {
		struct job_want w;
		int taking = 0, coming = 0;

		if (no_fit_now(p, jobs[j].job, mono) || job_want_get(p, jobs[j].job, &w))
			continue;
		for (size_t i = 0; i < nrows; i++) {
			struct node_desc d;

			if (rows[i].state == RS_RELEASING)
				continue;
			desc_from_row(p, &rows[i], &d);
			if (!desc_accepts(&d, &w))
				continue;
			taking++;
			if (rows[i].state == RS_INTENT || rows[i].state == RS_BOOTING)
				coming++;
		}
		/* Each order coming up will take a frame: rent only for frames
		 * no node is on its way for. */
		if (taking >= w.nodes || jobs[j].queued <= coming)
			continue;
		if (rent_one(p, &w) == -ENOENT) {
			no_fit_note(p, w.id, mono);
			continue;
		}
		break;
	}
	free(rows);
}

/* ---- the status line ---- */

static void publish(struct provision *p)
{
	char line[600];
	int held = count_state(p, RENTAL_BIT(RS_BOOTING) | RENTAL_BIT(RS_READY) | RENTAL_BIT(RS_RELEASING));

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

	/* Orders an earlier mount could not give back are cancelled first,
	 * before anything else is asked of the API; then reconcile: adopt
	 * what is still ours and running, end what is gone, resolve intents
	 * left by a crash. */
	release_pending(p, "left over from an earlier mount", 0);
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
		if (count_state(p, RENTAL_OPEN_MASK & ~RENTAL_BIT(RS_RELEASING))) {
			poll_orders(p);
			while (p->nheld > 0)
				release(p, &p->held[p->nheld - 1], "renderfs unmounted");
		}
		release_at_unmount(p);
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
