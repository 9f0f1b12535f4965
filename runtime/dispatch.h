/*
 * dispatch — what goes to which function server, and what comes back.
 *
 * Owns the per-address state machine (see the diagram in dispatch.c), the
 * building of invocation batches (one batch per address at a time, up to
 * max_batch messages in arrival order, with the address's declared state read
 * from the store), and the application of answers: a result's effects enter
 * the open checkpoint atomically with the consumption of its inputs; an
 * incomplete answer registers the missing state and re-sends; a failure or
 * an invalid result puts the batch back and retries it with backoff.
 */
#ifndef SM_DISPATCH_H
#define SM_DISPATCH_H

#include <stdint.h>

#include "statemesh/v1/function.pb-c.h"
#include "mailbox.h"

struct server;
struct endpoint;

/* Arrays reused by every batch built (they only grow): no allocation per
 * batch on the dispatch path. */
struct disp_scratch {
    Statemesh__V1__StateValue *sv, **svp;
    Statemesh__V1__TypedValue *tv;
    size_t cap_state;
    Statemesh__V1__Invocation *inv, **invp;
    Statemesh__V1__Address *callers;
    Statemesh__V1__TypedValue *args;
    struct msg **msgs;
    size_t cap_inv;
};

void disp_cleanup(struct server *s);

/* Accepts a new message for (type, id), served by endpoint `ep`: queues it
 * and adds it to the open checkpoint's pending messages (its inbox key is
 * written at commit unless it was consumed by then). Takes ownership of m. */
void disp_accept(struct server *s, struct endpoint *ep, const char *type, const char *id,
                 struct msg *m);
/* Queues a message recovered from the store (already durable). */
void disp_recover(struct server *s, struct endpoint *ep, const char *type, const char *id,
                  struct msg *m);

/* Builds and hands out batches for every ready address with capacity.
 * Returns how many batches went out. */
int disp_run(struct server *s);

/* Answers from an endpoint. */
void disp_on_response(struct server *s, struct endpoint *ep, struct mbox *mb,
                      const Statemesh__V1__BatchResponse *resp);
/* The batch will not be answered (stream lost, timeout): re-send later.
 * `failed` = count as a failed attempt (backoff) rather than a lost stream. */
void disp_on_lost(struct server *s, struct mbox *mb, int failed, const char *why);

/* State TTL: deletes a slice of expired state values of idle addresses. */
void disp_sweep_expired(struct server *s);

/* After a checkpoint: parked addresses become ready again or go away. */
void disp_unpark(struct server *s, struct mbox *mb);

#endif
