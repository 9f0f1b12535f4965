/* deadletter — see deadletter.h. */
#include "deadletter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "server.h"
#include "statemesh/v1/admin.pb-c.h"
#include "statemesh/v1/storage.pb-c.h"

#define LIST_DEFAULT 100
#define LIST_MAX 10000

static int count_one(void *arg, uint64_t id, const uint8_t *val, size_t len)
{
    struct server *s = arg;
    s->stats.dead_letters++;
    if (id >= s->next_seq) s->next_seq = id + 1;
    return 0;
}

int dl_open(struct server *s)
{
    if (store_scan_deadletters(s->store, 0, count_one, s) < 0) return -1;
    if (s->stats.dead_letters)
        LOG_WARN(&s->log, "deadletters.stored", "count=%lld msg=\"see statemesh deadletters list\"",
                 (long long)s->stats.dead_letters);
    return 0;
}

void dl_bury(struct server *s, struct mbox *mb, const char *error)
{
    int64_t now = timer_wall_ms();
    char q[300], msg[700];
    struct msg *m;

    for (m = mb->batch; m; m = m->next) {
        Statemesh__V1__StoredDeadLetter d = STATEMESH__V1__STORED_DEAD_LETTER__INIT;
        Statemesh__V1__Address target = STATEMESH__V1__ADDRESS__INIT;
        Statemesh__V1__Address caller = STATEMESH__V1__ADDRESS__INIT;
        Statemesh__V1__TypedValue arg = STATEMESH__V1__TYPED_VALUE__INIT;
        uint64_t id = s->next_seq++;
        uint8_t *buf;
        size_t len;

        target.type = (char *)mb->type;
        target.id = (char *)mb->id;
        d.target = &target;
        d.caller = ckpt_msg_fields(m, &caller, &arg);
        d.argument = &arg;
        d.reply_key = (char *)(m->reply_key ? m->reply_key : "");
        d.error = (char *)error;
        d.attempts = mb->attempts;
        d.failed_at_ms = now;
        buf = rpc_pack(&d.base, &len);
        store_batch_put_deadletter(s->ckpt.batch, id, buf, len);
        free(buf);
        if (m->pending) ckpt_pending_remove(&s->ckpt, m);
        else store_batch_delete_message(s->ckpt.batch, mb->type, mb->id, m->seq);
        if (m->call_id) {
            snprintf(msg, sizeof msg, "the message failed %u times and was moved to dead letters "
                     "(id %llu): %s", mb->attempts, (unsigned long long)id, error);
            ckpt_add_error(&s->ckpt, m->call_id, RPC_ABORTED, msg);
        }
        s->stats.queued_bytes -= (int64_t)msg_footprint(m);
        s->stats.dead_letters++;
        s->stats.dead_lettered++;
    }
    LOG_ERROR(&s->log, "message.dead_lettered", "type=%s id=%s messages=%u attempts=%u reason=%s",
              mb->type, log_quote(q, 120, mb->id), mb->nbatch, mb->attempts,
              log_quote(q + 120, sizeof q - 120, error));
    s->stats.queued_messages -= mb->nbatch;
    mbox_drop_batch(mb);
    mb->state = MBOX_PARKED;
    mbox_list_push(&s->ckpt.parked, mb);
    ckpt_touch(&s->ckpt, rpc_now_ms());
}

/* ---- admin ------------------------------------------------------------------ */

struct listing {
    const char *type;
    size_t limit;
    Statemesh__V1__DeadLetter **out;
    Statemesh__V1__StoredDeadLetter **stored;
    size_t n;
};

static int list_one(void *arg, uint64_t id, const uint8_t *val, size_t len)
{
    struct listing *l = arg;
    Statemesh__V1__StoredDeadLetter *st = statemesh__v1__stored_dead_letter__unpack(NULL, len, val);
    Statemesh__V1__DeadLetter *d;
    if (!st) return 0;
    if (l->type[0] && (!st->target || strcmp(st->target->type, l->type) != 0)) {
        statemesh__v1__stored_dead_letter__free_unpacked(st, NULL);
        return 0;
    }
    d = malloc(sizeof *d);
    if (!d) abort();
    statemesh__v1__dead_letter__init(d);
    d->id = id;
    d->target = st->target;
    d->caller = st->caller;
    d->argument = st->argument;
    d->error = st->error;
    d->attempts = st->attempts;
    d->failed_at_ms = st->failed_at_ms;
    l->out[l->n] = d;
    l->stored[l->n] = st;
    return ++l->n >= l->limit;
}

void dl_on_list(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    struct server *s = arg;
    Statemesh__V1__ListDeadLettersRequest *r = statemesh__v1__list_dead_letters_request__unpack(NULL, len, req);
    Statemesh__V1__ListDeadLettersResponse resp = STATEMESH__V1__LIST_DEAD_LETTERS_RESPONSE__INIT;
    struct listing l;
    int rc;

    if (!r) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "request is not a valid ListDeadLettersRequest");
        return;
    }
    memset(&l, 0, sizeof l);
    l.type = r->type;
    l.limit = r->limit == 0 ? LIST_DEFAULT : r->limit > LIST_MAX ? LIST_MAX : r->limit;
    l.out = calloc(l.limit, sizeof *l.out);
    l.stored = calloc(l.limit, sizeof *l.stored);
    if (!l.out || !l.stored) abort();
    rc = store_scan_deadletters(s->store, r->after_id, list_one, &l);
    if (rc < 0) {
        rpc_call_error(call, RPC_INTERNAL, "cannot read dead letters (see the runtime log)");
    } else {
        resp.n_dead_letters = l.n;
        resp.dead_letters = l.out;
        resp.total = (uint64_t)s->stats.dead_letters;
        rpc_call_reply(call, &resp.base);
    }
    for (size_t i = 0; i < l.n; i++) {
        free(l.out[i]);
        statemesh__v1__stored_dead_letter__free_unpacked(l.stored[i], NULL);
    }
    free(l.out);
    free(l.stored);
    statemesh__v1__list_dead_letters_request__free_unpacked(r, NULL);
}

struct action {
    struct server *s;
    const Statemesh__V1__DeadLetterSelector *sel;
    int replay;
    uint64_t count, unroutable;
};

static int selected(const Statemesh__V1__DeadLetterSelector *sel, uint64_t id,
                    const Statemesh__V1__StoredDeadLetter *st)
{
    if (sel->type[0] && (!st->target || strcmp(st->target->type, sel->type) != 0)) return 0;
    if (sel->all) return 1;
    for (size_t i = 0; i < sel->n_ids; i++)
        if (sel->ids[i] == id) return 1;
    return 0;
}

static int act_one(void *arg, uint64_t id, const uint8_t *val, size_t len)
{
    struct action *a = arg;
    struct server *s = a->s;
    Statemesh__V1__StoredDeadLetter *st = statemesh__v1__stored_dead_letter__unpack(NULL, len, val);

    if (!st || !st->target || !st->argument) {
        if (a->sel->all || selected(a->sel, id, st ? st : &(Statemesh__V1__StoredDeadLetter)
                                     STATEMESH__V1__STORED_DEAD_LETTER__INIT)) {
            if (!a->replay) {                 /* unreadable: can still be dropped */
                store_batch_delete_deadletter(s->ckpt.batch, id);
                s->stats.dead_letters--;
                a->count++;
            }
        }
        if (st) statemesh__v1__stored_dead_letter__free_unpacked(st, NULL);
        return 0;
    }
    if (selected(a->sel, id, st)) {
        int idx = cfg_match_endpoint(&s->cfg, st->target->type);
        if (a->replay && idx < 0) {
            a->unroutable++;
        } else {
            if (a->replay) {
                struct msg *m = msg_create(st->caller ? st->caller->type : NULL,
                                           st->caller ? st->caller->id : NULL,
                                           st->argument->typename_, st->argument->value.data,
                                           st->argument->value.len, st->reply_key);
                disp_accept(s, &s->endpoints[idx], st->target->type, st->target->id, m);
            }
            store_batch_delete_deadletter(s->ckpt.batch, id);
            s->stats.dead_letters--;
            a->count++;
        }
    }
    statemesh__v1__stored_dead_letter__free_unpacked(st, NULL);
    return 0;
}

static void act(struct server *s, struct rpc_call *call, const uint8_t *req, size_t len, int replay)
{
    Statemesh__V1__DeadLetterSelector *sel = statemesh__v1__dead_letter_selector__unpack(NULL, len, req);
    Statemesh__V1__DeadLetterActionResponse resp = STATEMESH__V1__DEAD_LETTER_ACTION_RESPONSE__INIT;
    struct action a = {s, sel, replay, 0, 0};
    uint8_t *buf;
    size_t blen;

    if (!sel) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "request is not a valid DeadLetterSelector");
        return;
    }
    if (!sel->all && sel->n_ids == 0) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "name dead letter ids, or select all");
        statemesh__v1__dead_letter_selector__free_unpacked(sel, NULL);
        return;
    }
    if (s->stopping) {
        rpc_call_error(call, RPC_UNAVAILABLE, "statemeshd is shutting down");
        statemesh__v1__dead_letter_selector__free_unpacked(sel, NULL);
        return;
    }
    if (store_scan_deadletters(s->store, 0, act_one, &a) < 0) {
        rpc_call_error(call, RPC_INTERNAL, "cannot read dead letters (see the runtime log)");
        statemesh__v1__dead_letter_selector__free_unpacked(sel, NULL);
        return;
    }
    LOG_INFO(&s->log, replay ? "deadletters.replayed" : "deadletters.dropped",
             "count=%llu unroutable=%llu", (unsigned long long)a.count,
             (unsigned long long)a.unroutable);
    resp.count = a.count;
    buf = rpc_pack(&resp.base, &blen);
    ckpt_add_raw(&s->ckpt, ingress_hold(s->ingress, call), buf, blen);
    ckpt_touch(&s->ckpt, rpc_now_ms());
    statemesh__v1__dead_letter_selector__free_unpacked(sel, NULL);
}

void dl_on_replay(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    act(arg, call, req, len, 1);
}

void dl_on_drop(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    act(arg, call, req, len, 0);
}
