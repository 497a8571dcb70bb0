/*
 * rentals: the rows of `rentals`, one per server renderfs tried to rent on
 * the Clore marketplace, and every SQL statement the clore provider
 * (clore/provision.c) runs on them.
 *
 * ---------------------------------------------------------------------
 * THE RENTAL STATE MACHINE
 *
 *                      found                     up
 *        intent ───────────────▶ booting ───────────────▶ ready ──┐ up (adopted
 *          │                      │   │                    │ │ ▲──┘  after a restart)
 *     void │      cancel failed   │   │ end            end │ │
 *          ▼     ┌────────────────┘   │                    │ │ cancel failed
 *        void    ▼                    ▼                    │ │
 *            releasing ───end────▶ ended ◀─────────────────┘ │
 *             │  ▲  ▲                                        │
 *             └──┘  └────────────────────────────────────────┘
 *        cancel failed again
 *
 *   found: the order renderfs made for the intent is seen in my_orders.
 *   void:  create_order was refused, or no order appeared within 2 min.
 *   up:    the order is online with a port for 22; its node starts.
 *   cancel failed: cancel_order failed for a passing reason; retried
 *          on every poll.
 *   end:   the order was cancelled, or is gone, expired, outbid, or
 *          never came up.
 *
 * Transition table (event: from → to; made by store_rental_transition()):
 *
 *   RE_FOUND          intent → booting            order_id, created, fee,
 *                                                 price_day, currency set
 *   RE_VOID           intent → void               end_reason
 *   RE_UP             booting|ready → ready       node, online_at (kept if set)
 *   RE_CANCEL_FAILED  booting|ready|releasing → releasing     end_reason
 *   RE_END            booting|ready|releasing → ended         ended_at (kept
 *                                                 if set), end_reason
 *
 * Invariants:
 *   1. Every change of rentals.state is one guarded UPDATE in
 *      store_rental_transition(): WHERE id = ? AND state = <from>, where
 *      from is the state the caller believes the row is in.  Zero rows
 *      changed means the caller lost a race (-ESTALE): the row is not what
 *      it thought, and it must not act on its belief (it drops the rental
 *      from what it holds; the next poll reads the row again).
 *   2. The intent row is committed (store_rental_intent) before
 *      create_order is sent: a crash between the two leaves a row that
 *      the next mount matches to the order or voids.
 *   3. order_id is written once, by RE_FOUND, and is unique among rows
 *      (index rentals_order): an order renderfs did not make is never
 *      some rental's, so it is never cancelled.
 *   4. ended and void are final: no event leaves them.
 *   5. A rental reaches ended only when its order was cancelled or is
 *      already over at the marketplace; a cancel that failed leaves it
 *      releasing, and releasing is retried on every poll.
 *   6. settled (Clore's own final cost, in USD) is written only on ended
 *      rows, once their order shows up among the completed ones.
 * ---------------------------------------------------------------------
 *
 * All functions take the caller's connection (struct store is one
 * thread's) and return 0 or -errno unless they say otherwise.
 */
#ifndef RENDERFS_STORE_RENTALS_H
#define RENDERFS_STORE_RENTALS_H

#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

enum rental_state { RS_INTENT, RS_BOOTING, RS_READY, RS_RELEASING, RS_ENDED, RS_VOID, RS__COUNT };

enum rental_event { RE_FOUND, RE_VOID, RE_UP, RE_CANCEL_FAILED, RE_END, RE__COUNT };

/* Bit of a state in a mask of states (store_rental_count). */
#define RENTAL_BIT(s) (1u << (s))
/* The rentals not yet over: intent, booting, ready, releasing. */
#define RENTAL_OPEN_MASK \
	(RENTAL_BIT(RS_INTENT) | RENTAL_BIT(RS_BOOTING) | RENTAL_BIT(RS_READY) | RENTAL_BIT(RS_RELEASING))

#define RENTAL_CURRENCY_MAX 32

/* One row of `rentals`, as the provider reads it. */
struct rental_row {
	int64_t id, server, order_id, intent_at, job, created, node; /* 0 when NULL */
	enum rental_state state;
	char currency[RENTAL_CURRENCY_MAX];
	double price_day, usd_rate;
	char gpu[128]; /* the GPU model the marketplace listed */
	int gpus, spot;
};

/* What an intent records before create_order (store_rental_intent). */
struct rental_intent {
	int64_t server, intent_at, job;
	int spot;
	const char *currency; /* borrowed */
	double price_day, usd_rate;
	const char *gpu; /* borrowed */
	int gpus;
	double score;
};

/* Row fields a transition may set; unused ones are ignored. */
struct rental_move {
	int64_t now;          /* wall-clock ms; 0: the clock now */
	int64_t order_id;     /* RE_FOUND */
	int64_t created;      /* RE_FOUND: the order's ct, ms */
	double fee;           /* RE_FOUND: the creation fee, in the rental's currency */
	double price_day;     /* RE_FOUND: kept as it was when <= 0 */
	const char *currency; /* RE_FOUND: kept when the row has one; borrowed */
	int64_t node;         /* RE_UP */
	const char *reason;   /* RE_VOID, RE_CANCEL_FAILED, RE_END; borrowed */
};

/* An ended rental waiting for Clore's final figures (store_rentals_unsettled). */
struct rental_unsettled {
	int64_t order_id;
	double usd_rate;
};

const char *rental_state_name(enum rental_state s); /* "?" when out of range */
int rental_state_parse(const char *s);              /* the state, or -EINVAL */
const char *rental_event_name(enum rental_event e);

/*
 * The pure core of the machine: the state event ev moves a rental in
 * state from to, or -EINVAL when the table has no such edge.
 */
int rental_next_state(enum rental_state from, enum rental_event ev);

/*
 * Make one guarded rental transition: the row must be in state from.
 * Returns the new state, -EINVAL for an edge the table does not have (no
 * SQL runs), -ESTALE when the row was not in state from (a lost race, or
 * no such row), or another -errno.  Notes a CH_NODES change on success.
 * Runs alone or inside a transaction the caller opened.
 */
int store_rental_transition(struct store *st, int64_t rental, enum rental_state from, enum rental_event ev,
			    const struct rental_move *m);

/* Record an intent (state intent); *id is its row id. */
int store_rental_intent(struct store *st, const struct rental_intent *in, int64_t *id);

/* The rentals in one of the states of RENTAL_OPEN_MASK, by id.  *out is
 * malloc'd (the caller frees it; NULL when *n is 0). */
int store_rentals_open(struct store *st, struct rental_row **out, size_t *n);

/* The number of rentals in one of the states in mask (RENTAL_BIT), or
 * -errno. */
int store_rental_count(struct store *st, unsigned mask);

/* 1 when order is already some rental's, 0 when not, or -errno. */
int store_rental_order_claimed(struct store *st, int64_t order);

/* The order's price changed: the rental's price_day and its node's price_h
 * (in USD per hour) follow, in one transaction. */
int store_rental_set_price(struct store *st, int64_t rental, double price_day, double price_h);

/* Up to cap ended rentals with an order and no settled figure yet, into
 * out.  Returns how many, or -errno. */
int store_rentals_unsettled(struct store *st, struct rental_unsettled *out, size_t cap);

/* The final cost of order, in USD, for its ended rental. */
int store_rental_settle(struct store *st, int64_t order_id, double usd);

#endif
