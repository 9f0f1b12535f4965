/* deadletter — see deadletter.h. */
#include "deadletter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        if (m->call_id && !m->call_kg1) {   /* a Call on another node times out */
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

/* ---- list, replay, drop ------------------------------------------------------ */

struct listing {
    const char *type;
    size_t limit;
    struct dl_page *page;
};

static int list_one(void *arg, uint64_t id, const uint8_t *val, size_t len)
{
    struct listing *l = arg;
    struct dl_page *p = l->page;
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
    p->items[p->n] = d;
    p->stored[p->n] = st;
    return ++p->n >= l->limit;
}

int dl_list(struct server *s, const char *type, uint64_t after, uint32_t limit, struct dl_page *page)
{
    struct listing l;

    memset(page, 0, sizeof *page);
    l.type = type;
    l.limit = limit == 0 ? LIST_DEFAULT : limit > LIST_MAX ? LIST_MAX : limit;
    l.page = page;
    page->items = calloc(l.limit, sizeof *page->items);
    page->stored = calloc(l.limit, sizeof *page->stored);
    if (!page->items || !page->stored) abort();
    return store_scan_deadletters(s->store, after, list_one, &l) < 0 ? -1 : 0;
}

void dl_page_cleanup(struct dl_page *page)
{
    for (size_t i = 0; i < page->n; i++) {
        free(page->items[i]);
        statemesh__v1__stored_dead_letter__free_unpacked(page->stored[i], NULL);
    }
    free(page->items);
    free(page->stored);
    memset(page, 0, sizeof *page);
}

struct action {
    struct server *s;
    const Statemesh__V1__DeadLetterSelector *sel;
    dl_requeue_fn requeue;     /* NULL: drop */
    void *arg;
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

static void delete_one(struct action *a, uint64_t id)
{
    store_batch_delete_deadletter(a->s->ckpt.batch, id);
    a->s->stats.dead_letters--;
    a->count++;
}

static int act_one(void *arg, uint64_t id, const uint8_t *val, size_t len)
{
    struct action *a = arg;
    Statemesh__V1__StoredDeadLetter *st = statemesh__v1__stored_dead_letter__unpack(NULL, len, val);

    if (!st || !st->target || !st->argument) {
        if (a->sel->all || selected(a->sel, id, st ? st : &(Statemesh__V1__StoredDeadLetter)
                                     STATEMESH__V1__STORED_DEAD_LETTER__INIT)) {
            if (!a->requeue) delete_one(a, id);   /* unreadable: can still be dropped */
        }
        if (st) statemesh__v1__stored_dead_letter__free_unpacked(st, NULL);
        return 0;
    }
    if (selected(a->sel, id, st)) {
        if (a->requeue && a->requeue(a->arg, st) != 0) a->unroutable++;
        else delete_one(a, id);
    }
    statemesh__v1__stored_dead_letter__free_unpacked(st, NULL);
    return 0;
}

static int act(struct action *a, uint64_t *count, uint64_t *unroutable)
{
    int rc = store_scan_deadletters(a->s->store, 0, act_one, a) < 0 ? -1 : 0;
    *count = a->count;
    if (unroutable) *unroutable = a->unroutable;
    return rc;
}

int dl_replay(struct server *s, const Statemesh__V1__DeadLetterSelector *sel, dl_requeue_fn requeue,
              void *arg, uint64_t *count, uint64_t *unroutable)
{
    struct action a = {s, sel, requeue, arg, 0, 0};
    return act(&a, count, unroutable);
}

int dl_drop(struct server *s, const Statemesh__V1__DeadLetterSelector *sel, uint64_t *count)
{
    struct action a = {s, sel, NULL, NULL, 0, 0};
    return act(&a, count, NULL);
}
