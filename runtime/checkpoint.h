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
 * A failed write is fatal by design: the in-memory queues no longer match the
 * disk, and recovery from the last checkpoint is the one safe way on.
 */
#ifndef SM_CHECKPOINT_H
#define SM_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailbox.h"
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

struct ckpt {
    struct store_batch *batch;
    struct ckpt_ack *acks;
    size_t nacks, cap;
    struct mbox_list parked;
    uint64_t generation;       /* checkpoints committed */
    int64_t opened_ms;         /* when the first change entered the open group */
    int forced;                /* commit even if nothing was written (stream acks) */
};

void ckpt_init(struct ckpt *ck);
void ckpt_cleanup(struct ckpt *ck);
/* 1 when the open group holds anything to commit. */
int ckpt_dirty(const struct ckpt *ck);
void ckpt_add_ack(struct ckpt *ck, uint64_t call_id);
void ckpt_add_reply(struct ckpt *ck, uint64_t call_id, const char *typename,
                    const uint8_t *data, size_t len);
void ckpt_add_raw(struct ckpt *ck, uint64_t call_id, uint8_t *data /* owned */, size_t len);
void ckpt_add_error(struct ckpt *ck, uint64_t call_id, int code, const char *msg);
void ckpt_touch(struct ckpt *ck, int64_t now_ms);

struct server;
/* Writes the open group, then releases acks/replies and un-parks addresses.
 * Exits the process on a storage failure (see above). */
void ckpt_commit(struct server *s);

#endif
