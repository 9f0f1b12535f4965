/*
 * mailbox — per-address message queues and the table of active addresses.
 *
 * A `struct mbox` exists only while its address has queued or in-flight
 * messages (or effects waiting for a checkpoint), so memory follows the
 * active set, not the number of addresses ever seen. The table is a chained
 * hash table that doubles as it grows and halves when it is 1/8 full: O(1)
 * lookups at any size, and no memory kept for a past burst of addresses.
 *
 * A message is one allocation: the struct followed by its strings and bytes.
 * Queues are FIFO in arrival order (seq order); a batch takes messages from
 * the head and, if it fails, puts them back at the head in the same order.
 *
 * The life of an mbox (state field; transitions live in dispatch.c):
 *   IDLE, READY (in its endpoint's ready list), INFLIGHT (a batch is out),
 *   PARKED (a result waits for its checkpoint), BACKOFF (retry timer armed),
 *   PAUSED (retries exhausted with on_exhausted = pause: nothing is
 *   dispatched until an operator skips or resumes).
 *
 * Failure bookkeeping (the last error, the next retry, isolation) lives in
 * a separate `struct mbox_fail`, allocated at an address's first failure and
 * freed with the mbox, so healthy addresses pay one pointer for it.
 */
#ifndef SM_MAILBOX_H
#define SM_MAILBOX_H

#include <stddef.h>
#include <stdint.h>

#include "timer.h"

struct ckpt_source;
struct trace_ctx;
struct server;
struct mbox;

struct msg {
    struct msg *next;
    uint64_t seq;              /* inbox key; global arrival order */
    uint64_t call_id;          /* pending ingress Call answered by this chain; 0 none */
    const char *caller_type;   /* NULL when from the ingress */
    const char *caller_id;
    const char *typename;
    const char *reply_key;     /* idempotency key of the Call this chain answers; NULL none */
    uint32_t call_kg1;         /* call_id waits on the node owning key group call_kg1 - 1
                                * (a chain that came from another node, peer.h); 0: here */
    uint64_t call_boot;        /* that node's incarnation (peer.h) */
    const uint8_t *data;
    size_t len;
    struct trace_ctx *trace;   /* W3C trace context (trace.h), owned; NULL: not traced */
    /* Its inbox (M) key is not in the store yet: it waits in the open
     * checkpoint's pending list (see checkpoint.h) and is written only if
     * the message is still unconsumed when the checkpoint commits. */
    struct msg *pnext, *pprev;
    struct mbox *mb;           /* its address, while pending */
    int pending;
    int held;                  /* pending and sent in a batch: counted in ckpt.nheld */
    /* A message from a SendStream may stay pending across checkpoints
     * ("carried", checkpoint.h): then pnext/pprev link it in src's list
     * instead of the open group's, src_seq is its seq in that stream and
     * arrived_ms bounds how long it is carried. src is NULL otherwise. */
    struct ckpt_source *src;
    uint64_t src_seq;
    int64_t arrived_ms;
    /* strings and bytes follow in the same allocation */
};

/* Copies everything into one allocation. caller_type/id and reply_key may
 * be NULL. A trace context, if any, is set (m->trace, ownership moves)
 * before the message is queued: msg_footprint counts it. */
struct msg *msg_create(const char *caller_type, const char *caller_id, const char *typename,
                       const uint8_t *data, size_t len, const char *reply_key);
void msg_destroy(struct msg *m);
/* Copies name (NULL: all), typename (NULL: delete) and data into one
 * allocation, freed with free() or with its mbox. */
struct mbox_op *mbox_op_create(uint64_t call_id, const char *name, const char *typename,
                               const uint8_t *data, size_t len);
/* An op that runs fn(s, mb, arg) (see struct mbox_op). */
struct mbox_op *mbox_op_fn(void (*fn)(struct server *s, struct mbox *mb, void *arg),
                           void (*drop)(void *arg), void *arg);
size_t msg_footprint(const struct msg *m);   /* bytes held, for accounting */

/* An operator's write to an address (Admin SetState / DeleteState, or any
 * other action applied like a message: fn set, e.g. a bootstrap entry,
 * dispatch.h) waiting for the address's batch in flight to finish. One
 * allocation, strings and value inline. */
struct mbox_op {
    struct mbox_op *next;
    uint64_t call_id;          /* held Admin call, answered after the checkpoint */
    const char *name;          /* NULL: every state value of the address */
    const char *typename;      /* NULL: delete */
    const uint8_t *data;
    size_t len;
    /* fn set: the op is fn(s, mb, arg), nothing else; drop(arg) is called
     * instead when the op is freed without being applied (shutdown). */
    void (*fn)(struct server *s, struct mbox *mb, void *arg);
    void (*drop)(void *arg);
    void *arg;
};

enum mbox_state { MBOX_IDLE, MBOX_READY, MBOX_INFLIGHT, MBOX_PARKED, MBOX_BACKOFF, MBOX_PAUSED };

struct mbox_fail {
    char *last_error;          /* malloc'd; NULL none */
    int64_t last_error_ms;     /* wall clock */
    int64_t retry_at_ms;       /* wall clock of the next attempt (BACKOFF) */
    /* A batch of several messages failed: the next `isolate` messages are
     * sent one at a time, so the failing one is found and only it retried. */
    uint32_t isolate;
};

struct endpoint;

struct mbox {
    struct mbox *hnext;        /* hash chain */
    uint64_t hash;
    const char *type, *id;     /* inline after the struct */
    struct endpoint *ep;       /* serves this type */
    struct msg *head, *tail;   /* queued, not yet sent */
    uint32_t nqueued;
    struct msg *batch;         /* in flight, in order */
    uint32_t nbatch;
    enum mbox_state state;
    struct mbox *lnext;        /* ready list or parked list */
    uint32_t attempts;         /* consecutive failures of the head message */
    struct timer retry;        /* BACKOFF */
    struct mbox_fail *fail;    /* NULL until the first failure */
    struct mbox_op *ops;       /* state writes waiting for the batch in flight */
};

struct mbox_table {
    struct mbox **buckets;
    size_t nbuckets;
    size_t count;
    size_t bytes;              /* memory of the mboxes themselves (not their messages) */
};

void mbox_table_init(struct mbox_table *t);
/* Frees every mbox and message. */
void mbox_table_cleanup(struct mbox_table *t);
struct mbox *mbox_find(const struct mbox_table *t, const char *type, const char *id);
/* Returns the mbox, creating it (IDLE, empty) when absent. */
struct mbox *mbox_get(struct mbox_table *t, const char *type, const char *id, struct endpoint *ep);
/* Unlinks and frees an mbox; it must be empty and not in any list. */
void mbox_remove(struct mbox_table *t, struct mbox *mb);
/* Calls fn for every mbox until it returns non-zero. fn must not add or
 * remove mboxes. */
void mbox_each(const struct mbox_table *t, int (*fn)(void *arg, struct mbox *mb), void *arg);
/* mb's failure record, allocated (zeroed) on first use. */
struct mbox_fail *mbox_fail(struct mbox *mb);

void mbox_push(struct mbox *mb, struct msg *m);          /* append to the queue */
/* Moves up to `max` queued messages into the batch. Returns the count. */
uint32_t mbox_take_batch(struct mbox *mb, uint32_t max);
/* Puts the batch back at the head of the queue, order kept. */
void mbox_return_batch(struct mbox *mb);
/* Frees the batch's messages (they were consumed). */
void mbox_drop_batch(struct mbox *mb);
/* The i-th message of the batch (i < nbatch). */
struct msg *mbox_batch_at(const struct mbox *mb, uint32_t i);

/* FIFO of mboxes linked through lnext. */
struct mbox_list {
    struct mbox *head, *tail;
    size_t len;
};
void mbox_list_push(struct mbox_list *l, struct mbox *mb);
struct mbox *mbox_list_pop(struct mbox_list *l);

#endif
