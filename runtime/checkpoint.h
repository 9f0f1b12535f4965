/*
 * checkpoint — the commit group.
 *
 * Everything decided since the last checkpoint — accepted ingress messages,
 * state mutations, consumed and produced messages — goes into one store
 * batch, written atomically (fsync'd when configured) by ckpt_commit().
 * Outputs visible outside the process (ingress acks, Call replies) are
 * queued here and released only after the checkpoint holding their cause is
 * durable. Addresses whose results are in the open checkpoint are parked and
 * become dispatchable again after it commits (their next batch must read the
 * committed state).
 *
 * Inbox keys are written lazily: a message accepted into the open group
 * waits in `pending`; at commit the still-unconsumed ones get their M key,
 * while one consumed before the commit never touches LevelDB (its effects
 * carry it). Pending messages alone do not make a commit urgent (nobody
 * waits for them: a Call is answered after its result's checkpoint), but
 * they are written within CKPT_PENDING_MAX_MS, so a message waiting for a
 * slow or absent function server is durable soon anyway.
 *
 * Holding for an in-flight result: a unary message accepted into the open
 * group and already sent to its function in a batch (m->held, counted in
 * nheld) holds the commit back while the group would otherwise be due,
 * until its result arrives (it is then consumed: the group holds the result
 * instead of an M key) or CKPT_HOLD_MAX_MS after the first such message was
 * sent, whichever comes first. So a Send to a sidecar commits its accept
 * and its result in one checkpoint (one fsync), as with an embedded module,
 * instead of one for the accept and its ack and another for the result. An
 * ack is still released only after the checkpoint holding its message is
 * durable, and waits at most CKPT_HOLD_MAX_MS longer (less than a batch's
 * round trip usually costs with the fsync it saves). A batch that fails or
 * is lost keeps holding until the bound; a commit writes every held
 * message's M key and clears the hold. Stopping commits without holding.
 *
 * Carrying: a SendStream message (without an idempotency key) may stay
 * pending across commits, because its ack is a cumulative committed_through
 * that the stream can hold back: it lives in its stream's `ckpt_source`
 * list (seq order) and the stream acknowledges only up to the seq before
 * its first carried message. A commit writes the M key of a carried message
 * only when
 *   - it is CKPT_CARRY_MAX_MS old (a slow function server does not stall
 *     the stream's acks for long), or
 *   - a later message of the same stream was consumed in this group (so no
 *     message beyond committed_through ever has committed effects: after a
 *     crash the client re-sends exactly the messages that left no trace), or
 *   - the runtime is stopping.
 * A deep stream backlog then costs one state write per message instead of
 * an M put, the state write and an M delete. Messages with an idempotency
 * key are never carried: the key's record commits with the group and must
 * not outlive a lost message.
 *
 * A failed write is fatal by design: the in-memory queues no longer match the
 * disk, and recovery from the last checkpoint is the one safe way on. Nor
 * may the store be written again: LevelDB may have left part of the batch
 * in its log (a short write on a full disk, data whose fsync failed), and a
 * later record appended after it could be lost with it at recovery. So
 * ckpt_commit() releases nothing of a failed group, refuses every later
 * commit, and the loop stops the process (exit 3, runtime/main.c;
 * docs/operations-disk.md). What the failed group held is decided at the
 * next start: either all of it was durable (its acks were lost) or none.
 */
#ifndef SM_CHECKPOINT_H
#define SM_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailbox.h"
#include "statemesh/v1/types.pb-c.h"
#include "store.h"

enum ckpt_ack_kind {
    CKPT_ACK_OK,               /* Send: empty OK */
    CKPT_ACK_REPLY,            /* Call: typename + data */
    CKPT_ACK_RAW,              /* data = an encoded response message */
    CKPT_ACK_ERROR             /* code + data = message (NUL-terminated) */
};

struct ckpt_ack {
    uint64_t call_id;
    enum ckpt_ack_kind kind;
    int code;
    char *typename;            /* owned */
    uint8_t *data;             /* owned */
    size_t len;
};

#define CKPT_PENDING_MAX_MS 20
#define CKPT_CARRY_MAX_MS 1000
#define CKPT_HOLD_MAX_MS 2

/* Carried messages of one SendStream; embedded in the stream. */
struct ckpt_source {
    struct msg *head, *tail;       /* carried, seq order (linked via pnext/pprev) */
    size_t n;
    uint64_t consumed_seq;         /* highest global seq of its messages consumed */
    struct ckpt_source *prev, *next;   /* ckpt.sources */
};

struct ckpt {
    struct store_batch *batch;
    struct msg *pending;       /* accepted, M key not yet written */
    size_t npending;
    int64_t pending_since_ms;
    size_t nheld;              /* pending unary messages in a batch in flight */
    int64_t hold_since_ms;     /* when the first of them was sent; 0 none */
    struct ckpt_ack *acks;
    size_t nacks, cap;
    struct ckpt_source *sources;
    struct mbox_list parked;
    uint64_t generation;       /* checkpoints committed */
    int64_t opened_ms;         /* when the first change entered the open group */
    int forced;                /* commit even if nothing was written (stream acks) */
    int failed;                /* a write failed: no further commit (see above) */
};

void ckpt_init(struct ckpt *ck);
void ckpt_cleanup(struct ckpt *ck);
/* 1 when the open group holds anything to commit. */
int ckpt_dirty(const struct ckpt *ck);
/* 1 when something waits for the commit (acks, parked addresses, writes) or
 * pending or carried messages have waited their maximum. */
int ckpt_due(const struct ckpt *ck, int64_t now_ms);
/* When a pending or carried message must be written at the latest;
 * INT64_MAX if none waits. */
int64_t ckpt_pending_deadline(const struct ckpt *ck);
/* Lazy inbox keys (see above). mb is the message's address; m->src (set by
 * the caller, or NULL) makes it carry-eligible. */
void ckpt_pending_add(struct ckpt *ck, struct msg *m, struct mbox *mb, int64_t now_ms);
/* m goes out in a batch (see "Holding for an in-flight result"). */
void ckpt_msg_dispatched(struct ckpt *ck, struct msg *m, int64_t now_ms);
/* m was consumed (its effects are in the open group) or taken out. */
void ckpt_pending_remove(struct ckpt *ck, struct msg *m);
void ckpt_source_attach(struct ckpt *ck, struct ckpt_source *src);
/* The stream is gone: its carried messages join the open group's pending
 * ones (written at the next commit unless consumed first). */
void ckpt_source_detach(struct ckpt *ck, struct ckpt_source *src);
/* Stream seq of src's first carried message; 0 when none is carried. */
uint64_t ckpt_source_first(const struct ckpt_source *src);
void ckpt_add_ack(struct ckpt *ck, uint64_t call_id);
void ckpt_add_reply(struct ckpt *ck, uint64_t call_id, const char *typename,
                    const uint8_t *data, size_t len);
void ckpt_add_raw(struct ckpt *ck, uint64_t call_id, uint8_t *data /* owned */, size_t len);
void ckpt_add_error(struct ckpt *ck, uint64_t call_id, int code, const char *msg);
void ckpt_touch(struct ckpt *ck, int64_t now_ms);
/* Fills *arg with m's argument and, when m came from a function, *caller
 * with its sender (both borrow m's strings). Returns caller, or NULL for a
 * message from the ingress: what a stored message or dead letter records. */
Statemesh__V1__Address *ckpt_msg_fields(const struct msg *m, Statemesh__V1__Address *caller,
                                        Statemesh__V1__TypedValue *arg);

struct server;
/* Writes the open group (when it holds anything). Returns 1 when it is
 * durable: the caller then runs the after-commit phases (the loop in
 * main.c: release ck->acks to the ingress, un-park ck->parked, wake egress
 * subscribers, ...) and calls ckpt_released(). The checkpoint knows none of
 * its listeners. Returns 0 when there was nothing to write, or -EIO when the
 * write failed or an earlier one did: then nothing of the group is released
 * (no ack, reply or egress record leaves) and the caller must stop the
 * process (see above). */
int ckpt_commit(struct server *s) __attribute__((warn_unused_result));
/* After the after-commit phases: frees the released acks. */
void ckpt_released(struct ckpt *ck);

#endif
