/*
 * dispatch — what goes to which function server, and what comes back.
 *
 * Owns the per-address state machine (see the diagram in dispatch.c), the
 * building of invocation batches (one batch per address at a time, up to
 * max_batch messages in arrival order, with the address's declared state read
 * from the store), and the application of answers: a result's effects enter
 * the open checkpoint atomically with the consumption of its inputs; an
 * incomplete answer registers the missing state and re-sends; a failure, an
 * invalid result or a timeout isolates the failing message (a failed batch
 * of several is re-sent one message at a time) and retries it alone with
 * backoff; after retry.max_attempts it alone goes to dead letters, or the
 * address pauses (retry.on_exhausted = "pause") until an operator acts.
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
    char *tp;                  /* traceparents of a batch's traced invocations (trace.h) */
    size_t cap_tp;
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

/* Recovery, before disp_recover: the address was paused when the runtime
 * stopped (a P key); its recovered messages stay held. */
void disp_recover_pause(struct server *s, struct endpoint *ep, const char *type, const char *id,
                        const char *error, uint32_t attempts);
/* After recovery: pauses of addresses with no message left are dropped. */
void disp_recover_done(struct server *s);

/* Operator actions (Admin Skip / Resume), effects in the open checkpoint.
 * disp_skip moves the head message of a retrying (BACKOFF) or PAUSED
 * address to dead letters with error `why` and returns 0 with its dead
 * letter id; disp_resume makes a PAUSED or BACKOFF address ready now with a
 * fresh attempt count. Both return -1 (nothing changed) in any other state. */
int disp_skip(struct server *s, struct mbox *mb, const char *why,
              uint64_t *dead_letter_id /* OUT */) __attribute__((warn_unused_result));
int disp_resume(struct server *s, struct mbox *mb) __attribute__((warn_unused_result));

/* Builds and hands out batches for every ready address with capacity.
 * Returns how many batches went out. In a cluster, a ready address whose
 * key group this node does not serve now (cluster_serves) is held, not
 * dispatched, until disp_release_held(). */
int disp_run(struct server *s);
/* Puts the held addresses back on their endpoints' ready lists (the
 * cluster's change hook: ownership or fencing changed). */
void disp_release_held(struct server *s);

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

/* Operator state writes (Admin SetState / DeleteState, state_admin.h). op
 * (owned; op->call_id a held Admin call) is applied like a result of the
 * address, by the runtime itself: at once when no batch of the address is
 * in flight, else right after that batch is answered, failed or lost, and
 * before its next one. Its writes go through the state cache into the open
 * checkpoint (a known state TTL of the function applies to a set), the
 * address stays active until that checkpoint commits, and the call is
 * answered then (SetStateResponse / DeleteStateResponse). */
void disp_state_op(struct server *s, struct endpoint *ep, const char *type, const char *id,
                   struct mbox_op *op);
/* The same for any action applied like a message (op from mbox_op_fn, e.g.
 * a bootstrap entry, bootstrap.h): fn runs at once when no batch of the
 * address is in flight, else right after it; the address stays active
 * until the open checkpoint commits. fn answers its own calls. */
#define disp_address_op disp_state_op

/* For such actions, on an address with no batch in flight: counts the
 * unexpired state values of mb (committed or in the open checkpoint) and,
 * do_delete, deletes every value it has. Returns the count, or -1 when the
 * store cannot be read (nothing changed). */
int disp_states(struct server *s, struct mbox *mb, int do_delete);
/* Writes one state value (NULL: deletes it) through the state cache into
 * the open checkpoint, with this absolute expiry (0: none). */
void disp_put_state(struct server *s, struct mbox *mb, const char *name,
                    const Statemesh__V1__TypedValue *v, int64_t expires_at_ms);

#endif
