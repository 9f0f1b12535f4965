/* checkpoint — see checkpoint.h. */
#include "checkpoint.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"
#include "trace.h"
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

static int wants_commit(const struct ckpt *ck)
{
    return store_batch_count(ck->batch) > 0 || ck->nacks > 0 || ck->parked.head != NULL ||
           ck->forced;
}

static void unhold(struct ckpt *ck, struct msg *m)
{
    if (!m->held) return;
    m->held = 0;
    if (--ck->nheld == 0) ck->hold_since_ms = 0;
}

void ckpt_msg_dispatched(struct ckpt *ck, struct msg *m, int64_t now_ms)
{
    if (!m->pending || m->src || m->held) return;
    m->held = 1;
    if (ck->nheld++ == 0) ck->hold_since_ms = now_ms;
}

int64_t ckpt_pending_deadline(const struct ckpt *ck)
{
    int64_t d = ck->pending ? ck->pending_since_ms + CKPT_PENDING_MAX_MS : INT64_MAX;
    if (ck->nheld > 0 && wants_commit(ck) && ck->hold_since_ms + CKPT_HOLD_MAX_MS < d)
        d = ck->hold_since_ms + CKPT_HOLD_MAX_MS;
    for (const struct ckpt_source *src = ck->sources; src; src = src->next)
        if (src->head && src->head->arrived_ms + CKPT_CARRY_MAX_MS < d)
            d = src->head->arrived_ms + CKPT_CARRY_MAX_MS;
    return d;
}

int ckpt_due(const struct ckpt *ck, int64_t now_ms)
{
    if (wants_commit(ck))
        return ck->nheld == 0 || now_ms >= ck->hold_since_ms + CKPT_HOLD_MAX_MS;
    return ckpt_pending_deadline(ck) <= now_ms;
}

int ckpt_dirty(const struct ckpt *ck)
{
    if (ck->pending != NULL || wants_commit(ck)) return 1;
    for (const struct ckpt_source *src = ck->sources; src; src = src->next)
        if (src->head) return 1;
    return 0;
}

/* The open group's list: newest first. */
static void pending_push(struct ckpt *ck, struct msg *m, int64_t since_ms)
{
    if (!ck->pending || since_ms < ck->pending_since_ms) ck->pending_since_ms = since_ms;
    m->pprev = NULL;
    m->pnext = ck->pending;
    if (ck->pending) ck->pending->pprev = m;
    ck->pending = m;
    ck->npending++;
}

void ckpt_pending_add(struct ckpt *ck, struct msg *m, struct mbox *mb, int64_t now_ms)
{
    struct ckpt_source *src = m->src;

    m->mb = mb;
    m->pending = 1;
    m->arrived_ms = now_ms;
    if (!src) {
        pending_push(ck, m, now_ms);
        return;
    }
    m->pnext = NULL;
    m->pprev = src->tail;
    if (src->tail) src->tail->pnext = m;
    else src->head = m;
    src->tail = m;
    src->n++;
}

/* Unlinks a carried message from its source (not yet marked written). */
static void source_unlink(struct ckpt_source *src, struct msg *m)
{
    if (m->pprev) m->pprev->pnext = m->pnext;
    else src->head = m->pnext;
    if (m->pnext) m->pnext->pprev = m->pprev;
    else src->tail = m->pprev;
    src->n--;
    m->src = NULL;
}

void ckpt_pending_remove(struct ckpt *ck, struct msg *m)
{
    struct ckpt_source *src = m->src;

    if (src) {
        if (m->seq > src->consumed_seq) src->consumed_seq = m->seq;
        source_unlink(src, m);
    } else {
        unhold(ck, m);
        if (m->pprev) m->pprev->pnext = m->pnext;
        else ck->pending = m->pnext;
        if (m->pnext) m->pnext->pprev = m->pprev;
        ck->npending--;
    }
    m->pnext = m->pprev = NULL;
    m->pending = 0;
}

void ckpt_source_attach(struct ckpt *ck, struct ckpt_source *src)
{
    memset(src, 0, sizeof *src);
    src->next = ck->sources;
    if (src->next) src->next->prev = src;
    ck->sources = src;
}

void ckpt_source_detach(struct ckpt *ck, struct ckpt_source *src)
{
    struct msg *m;

    while ((m = src->head) != NULL) {
        source_unlink(src, m);
        pending_push(ck, m, m->arrived_ms);
    }
    if (src->prev) src->prev->next = src->next;
    else ck->sources = src->next;
    if (src->next) src->next->prev = src->prev;
    src->prev = src->next = NULL;
}

uint64_t ckpt_source_first(const struct ckpt_source *src)
{
    return src->head ? src->head->src_seq : 0;
}

Statemesh__V1__Address *ckpt_msg_fields(const struct msg *m, Statemesh__V1__Address *caller,
                                        Statemesh__V1__TypedValue *arg)
{
    arg->typename_ = (char *)m->typename;
    arg->value.data = (uint8_t *)m->data;
    arg->value.len = m->len;
    if (!m->caller_type) return NULL;
    caller->type = (char *)m->caller_type;
    caller->id = (char *)m->caller_id;
    return caller;
}

/* Puts m's inbox key into the open group; m is then no longer pending. */
static void write_inbox_key(struct ckpt *ck, struct msg *m)
{
    Statemesh__V1__StoredMessage sm = STATEMESH__V1__STORED_MESSAGE__INIT;
    Statemesh__V1__Address caller = STATEMESH__V1__ADDRESS__INIT;
    Statemesh__V1__TypedValue arg = STATEMESH__V1__TYPED_VALUE__INIT;
    uint8_t stack[512], *buf = stack;
    char tp[TRACE_PARENT_LEN + 1];
    size_t n;

    sm.caller = ckpt_msg_fields(m, &caller, &arg);
    sm.argument = &arg;
    if (m->reply_key) sm.reply_key = (char *)m->reply_key;
    if (m->trace) {                /* the message's parent span, as the ingress had it */
        trace_format(m->trace->trace_id, m->trace->parent_id, m->trace->flags, tp);
        sm.traceparent = tp;
        sm.tracestate = m->trace->state;
    }
    n = statemesh__v1__stored_message__get_packed_size(&sm);
    if (n > sizeof stack && !(buf = malloc(n))) abort();
    statemesh__v1__stored_message__pack(&sm, buf);
    store_batch_put_message(ck->batch, m->mb->type, m->mb->id, m->seq, buf, n);
    if (buf != stack) free(buf);
    unhold(ck, m);
    m->pnext = m->pprev = NULL;
    m->pending = 0;
}

/* Writes the inbox keys of the messages still waiting in the open group,
 * and of the carried ones that may wait no longer (see the header). */
static void flush_pending(struct ckpt *ck, int64_t now_ms, int all)
{
    struct msg *m, *next;

    for (struct ckpt_source *src = ck->sources; src; src = src->next) {
        while ((m = src->head) != NULL &&
               (all || m->seq <= src->consumed_seq ||
                now_ms - m->arrived_ms >= CKPT_CARRY_MAX_MS)) {
            source_unlink(src, m);
            write_inbox_key(ck, m);
        }
    }
    for (m = ck->pending; m; m = next) {
        next = m->pnext;
        write_inbox_key(ck, m);
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

int ckpt_commit(struct server *s)
{
    struct ckpt *ck = &s->ckpt;
    size_t ops;

    if (ck->failed) return -EIO;
    if (!ckpt_dirty(ck)) return 0;
    flush_pending(ck, rpc_now_ms(), s->stopping);
    ops = store_batch_count(ck->batch);
    if (ops > 0) {
        int64_t t0 = s->metrics ? rpc_now_ns() : 0;
        if (store_write(s->store, ck->batch, s->cfg.checkpoint_sync) != 0) {
            ck->failed = 1;
            LOG_ERROR(&s->log, "checkpoint.failed",
                      "ops=%zu acks_withheld=%zu msg=\"storage write failed; nothing of this "
                      "checkpoint is acknowledged; stopping so that recovery restarts from the "
                      "last durable checkpoint\"", ops, ck->nacks);
            return -EIO;
        }
        if (s->metrics) metrics_checkpoint(s->metrics, rpc_now_ns() - t0);
        store_batch_clear(ck->batch);
        s->stats.checkpoints++;
        s->stats.checkpoint_ops += (int64_t)ops;
    }
    ck->generation++;
    ck->opened_ms = 0;
    ck->forced = 0;
    return 1;
}

void ckpt_released(struct ckpt *ck)
{
    free_acks(ck);
}
