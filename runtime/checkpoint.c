/* checkpoint — see checkpoint.h. */
#include "checkpoint.h"

#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "server.h"
#include "statemesh/v1/storage.pb-c.h"

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

int ckpt_due(const struct ckpt *ck, int64_t now_ms)
{
    if (store_batch_count(ck->batch) > 0 || ck->nacks > 0 || ck->parked.head != NULL ||
        ck->forced)
        return 1;
    return ck->pending && now_ms - ck->pending_since_ms >= CKPT_PENDING_MAX_MS;
}

int ckpt_dirty(const struct ckpt *ck)
{
    return ck->pending != NULL || ckpt_due(ck, 0);
}

void ckpt_pending_add(struct ckpt *ck, struct msg *m, struct mbox *mb, int64_t now_ms)
{
    if (!ck->pending) ck->pending_since_ms = now_ms;
    m->mb = mb;
    m->pending = 1;
    m->pprev = NULL;
    m->pnext = ck->pending;
    if (ck->pending) ck->pending->pprev = m;
    ck->pending = m;
    ck->npending++;
}

void ckpt_pending_remove(struct ckpt *ck, struct msg *m)
{
    if (m->pprev) m->pprev->pnext = m->pnext;
    else ck->pending = m->pnext;
    if (m->pnext) m->pnext->pprev = m->pprev;
    m->pnext = m->pprev = NULL;
    m->pending = 0;
    ck->npending--;
}

/* Writes the inbox keys of the messages still waiting in the open group. */
static void flush_pending(struct ckpt *ck)
{
    struct msg *m, *next;
    for (m = ck->pending; m; m = next) {
        Statemesh__V1__StoredMessage sm = STATEMESH__V1__STORED_MESSAGE__INIT;
        Statemesh__V1__Address caller = STATEMESH__V1__ADDRESS__INIT;
        Statemesh__V1__TypedValue arg = STATEMESH__V1__TYPED_VALUE__INIT;
        uint8_t stack[512], *buf = stack;
        size_t n;

        next = m->pnext;
        if (m->caller_type) {
            caller.type = (char *)m->caller_type;
            caller.id = (char *)m->caller_id;
            sm.caller = &caller;
        }
        arg.typename_ = (char *)m->typename;
        arg.value.data = (uint8_t *)m->data;
        arg.value.len = m->len;
        sm.argument = &arg;
        if (m->reply_key) sm.reply_key = (char *)m->reply_key;
        n = statemesh__v1__stored_message__get_packed_size(&sm);
        if (n > sizeof stack && !(buf = malloc(n))) abort();
        statemesh__v1__stored_message__pack(&sm, buf);
        store_batch_put_message(ck->batch, m->mb->type, m->mb->id, m->seq, buf, n);
        if (buf != stack) free(buf);
        m->pnext = m->pprev = NULL;
        m->pending = 0;
    }
    ck->pending = NULL;
    ck->npending = 0;
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
    flush_pending(ck);
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
