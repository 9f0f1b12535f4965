/* checkpoint — see checkpoint.h. */
#include "checkpoint.h"

#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "server.h"

void ckpt_init(struct ckpt *ck)
{
    memset(ck, 0, sizeof *ck);
    ck->batch = store_batch_create();
    if (!ck->batch) abort();
}

static void free_acks(struct ckpt *ck)
{
    for (size_t i = 0; i < ck->nacks; i++) {
        free(ck->acks[i].typename);
        free(ck->acks[i].data);
    }
    ck->nacks = 0;
}

void ckpt_cleanup(struct ckpt *ck)
{
    free_acks(ck);
    free(ck->acks);
    ck->acks = NULL;
    ck->cap = 0;
    store_batch_destroy(&ck->batch);
}

int ckpt_dirty(const struct ckpt *ck)
{
    return store_batch_count(ck->batch) > 0 || ck->nacks > 0 || ck->parked.head != NULL ||
           ck->forced;
}

void ckpt_touch(struct ckpt *ck, int64_t now_ms)
{
    if (ck->opened_ms == 0) ck->opened_ms = now_ms;
}

static struct ckpt_ack *new_ack(struct ckpt *ck)
{
    if (ck->nacks == ck->cap) {
        size_t cap = ck->cap ? ck->cap * 2 : 256;
        struct ckpt_ack *a = realloc(ck->acks, cap * sizeof *a);
        if (!a) abort();
        ck->acks = a;
        ck->cap = cap;
    }
    memset(&ck->acks[ck->nacks], 0, sizeof ck->acks[0]);
    return &ck->acks[ck->nacks++];
}

void ckpt_add_ack(struct ckpt *ck, uint64_t call_id)
{
    new_ack(ck)->call_id = call_id;
}

void ckpt_add_reply(struct ckpt *ck, uint64_t call_id, const char *typename,
                    const uint8_t *data, size_t len)
{
    struct ckpt_ack *a = new_ack(ck);
    a->call_id = call_id;
    a->kind = CKPT_ACK_REPLY;
    a->typename = strdup(typename);
    a->data = malloc(len ? len : 1);
    if (!a->typename || !a->data) abort();
    if (len) memcpy(a->data, data, len);
    a->len = len;
}

void ckpt_add_raw(struct ckpt *ck, uint64_t call_id, uint8_t *data, size_t len)
{
    struct ckpt_ack *a = new_ack(ck);
    a->call_id = call_id;
    a->kind = CKPT_ACK_RAW;
    a->data = data;
    a->len = len;
}

void ckpt_add_error(struct ckpt *ck, uint64_t call_id, int code, const char *msg)
{
    struct ckpt_ack *a = new_ack(ck);
    a->call_id = call_id;
    a->kind = CKPT_ACK_ERROR;
    a->code = code;
    a->data = (uint8_t *)strdup(msg);
    if (!a->data) abort();
}

void ckpt_commit(struct server *s)
{
    struct ckpt *ck = &s->ckpt;
    struct mbox *mb;
    size_t ops = store_batch_count(ck->batch);

    if (!ckpt_dirty(ck)) return;
    egress_before_commit(s);
    ops = store_batch_count(ck->batch);
    if (ops > 0) {
        if (store_write(s->store, ck->batch, s->cfg.checkpoint_sync) != 0) {
            LOG_ERROR(&s->log, "checkpoint.failed",
                      "ops=%zu msg=\"storage write failed; stopping so that recovery restarts "
                      "from the last durable checkpoint\"", ops);
            exit(1);
        }
        store_batch_clear(ck->batch);
        s->stats.checkpoints++;
        s->stats.checkpoint_ops += (int64_t)ops;
    }
    ck->generation++;
    ck->opened_ms = 0;
    ck->forced = 0;
    /* Durable now: release what waited for it. */
    for (size_t i = 0; i < ck->nacks; i++) {
        struct ckpt_ack *a = &ck->acks[i];
        ingress_complete(s->ingress, a);
    }
    free_acks(ck);
    while ((mb = mbox_list_pop(&ck->parked)) != NULL) disp_unpark(s, mb);
    egress_after_commit(s);
    idem_after_commit(s);
    if (s->ingress) ingress_after_commit(s->ingress);
}
