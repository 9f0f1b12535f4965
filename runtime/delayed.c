/* delayed — see delayed.h. */
#include "delayed.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "dispatch.h"
#include "server.h"
#include "statemesh/v1/storage.pb-c.h"

struct delayed {
    struct timer t;
    struct server *s;
    int64_t due_ms;            /* wall clock: the D key */
    uint64_t seq;
    uint16_t kg;               /* the key group of the owner (store.h) */
    uint64_t gen;              /* committed once ckpt.generation >= gen */
    struct delayed *prev, *next;   /* every entry (cleanup) */
    struct delayed *hnext;     /* token index chain */
    uint64_t hash;
    size_t owner_len;          /* 0: no token */
    char owner[];              /* type '\0' id '\0' token */
};

static size_t owner_key(char *buf, const char *type, const char *id, const char *token)
{
    size_t tl = strlen(type), il = strlen(id), kl = strlen(token);
    if (buf) {
        memcpy(buf, type, tl + 1);
        memcpy(buf + tl + 1, id, il + 1);
        memcpy(buf + tl + il + 2, token, kl);
    }
    return tl + il + 2 + kl;
}

static void index_grow(struct delayed_index *x)
{
    size_t n = x->nbuckets ? x->nbuckets * 2 : 1024;
    struct delayed **b = calloc(n, sizeof *b);
    if (!b) abort();
    for (size_t i = 0; i < x->nbuckets; i++) {
        struct delayed *d = x->buckets[i], *next;
        for (; d; d = next) {
            next = d->hnext;
            d->hnext = b[d->hash & (n - 1)];
            b[d->hash & (n - 1)] = d;
        }
    }
    free(x->buckets);
    x->buckets = b;
    x->nbuckets = n;
}

static struct delayed **index_slot(struct delayed_index *x, const char *key, size_t len,
                                   uint64_t hash)
{
    struct delayed **pp;
    if (!x->nbuckets) return NULL;
    for (pp = &x->buckets[hash & (x->nbuckets - 1)]; *pp; pp = &(*pp)->hnext)
        if ((*pp)->hash == hash && (*pp)->owner_len == len && memcmp((*pp)->owner, key, len) == 0)
            return pp;
    return NULL;
}

static void entry_free(struct server *s, struct delayed *d)
{
    if (d->owner_len) {
        struct delayed **pp = index_slot(&s->delayed, d->owner, d->owner_len, d->hash);
        if (pp) *pp = d->hnext;
        s->delayed.count--;
    }
    if (d->prev) d->prev->next = d->next;
    else s->delayed_all = d->next;
    if (d->next) d->next->prev = d->prev;
    timer_stop(&s->timers, &d->t);
    s->stats.delayed_pending--;
    free(d);
}

static void on_due(void *arg);

static void arm(struct server *s, struct delayed *d)
{
    /* due_ms may come from a D key on disk, any 64-bit value if the key is
     * corrupt: no overflow in either subtraction or addition. */
    int64_t now = timer_wall_ms(), mono = rpc_now_ms();
    int64_t wait = d->due_ms > now ? d->due_ms - now : 0;
    if (wait > INT64_MAX - mono) wait = INT64_MAX - mono;
    timer_start(&s->timers, &d->t, mono + wait);
}

static struct delayed *entry_new(struct server *s, uint16_t kg, int64_t due_ms, uint64_t seq,
                                 uint64_t gen, const char *type, const char *id, const char *token)
{
    size_t olen = token && token[0] && type ? owner_key(NULL, type, id, token) : 0;
    struct delayed *d = calloc(1, sizeof *d + olen + 1);

    if (!d) abort();
    timer_init(&d->t, on_due, d);
    d->s = s;
    d->due_ms = due_ms;
    d->seq = seq;
    d->kg = kg;
    d->gen = gen;
    d->next = s->delayed_all;
    if (d->next) d->next->prev = d;
    s->delayed_all = d;
    if (olen) {
        owner_key(d->owner, type, id, token);
        d->owner_len = olen;
        d->hash = XXH3_64bits(d->owner, olen);
        if (s->delayed.count + 1 > s->delayed.nbuckets) index_grow(&s->delayed);
        d->hnext = s->delayed.buckets[d->hash & (s->delayed.nbuckets - 1)];
        s->delayed.buckets[d->hash & (s->delayed.nbuckets - 1)] = d;
        s->delayed.count++;
    }
    s->stats.delayed_pending++;
    arm(s, d);
    return d;
}

void delayed_add(struct server *s, int64_t due_wall_ms, const char *caller_type,
                 const char *caller_id, const char *token, const char *target_type,
                 const char *target_id, const Statemesh__V1__TypedValue *arg)
{
    delayed_add_traced(s, due_wall_ms, caller_type, caller_id, token, target_type, target_id, arg,
                       NULL);
}

void delayed_add_traced(struct server *s, int64_t due_wall_ms, const char *caller_type,
                        const char *caller_id, const char *token, const char *target_type,
                        const char *target_id, const Statemesh__V1__TypedValue *arg,
                        const struct trace_ctx *tr)
{
    char tp[TRACE_PARENT_LEN + 1];
    Statemesh__V1__StoredDelayed sd = STATEMESH__V1__STORED_DELAYED__INIT;
    Statemesh__V1__Address target = STATEMESH__V1__ADDRESS__INIT;
    Statemesh__V1__Address caller = STATEMESH__V1__ADDRESS__INIT;
    uint64_t seq = s->next_seq++;
    uint16_t kg = caller_type ? store_key_group(caller_type, caller_id)
                              : store_key_group(target_type, target_id);
    uint8_t *buf;
    size_t len;

    target.type = (char *)target_type;
    target.id = (char *)target_id;
    sd.target = &target;
    if (caller_type) {
        caller.type = (char *)caller_type;
        caller.id = (char *)caller_id;
        sd.caller = &caller;
    }
    sd.argument = (Statemesh__V1__TypedValue *)arg;
    sd.token = (char *)(token ? token : "");
    if (tr) {
        trace_format(tr->trace_id, tr->parent_id, tr->flags, tp);
        sd.traceparent = tp;
        sd.tracestate = (char *)tr->state;
    }
    buf = rpc_pack(&sd.base, &len);
    store_batch_put_delayed(s->ckpt.batch, kg, due_wall_ms, seq, buf, len);
    free(buf);
    ckpt_touch(&s->ckpt, rpc_now_ms());
    entry_new(s, kg, due_wall_ms, seq, s->ckpt.generation + 1, caller_type, caller_id, token);
}

static struct delayed *find(struct server *s, const char *type, const char *id, const char *token)
{
    size_t len = owner_key(NULL, type, id, token);
    char stack[1600], *key = len <= sizeof stack ? stack : malloc(len);
    struct delayed **pp;

    if (!key) abort();
    owner_key(key, type, id, token);
    pp = index_slot(&s->delayed, key, len, XXH3_64bits(key, len));
    if (key != stack) free(key);
    return pp ? *pp : NULL;
}

int delayed_pending(struct server *s, const char *type, const char *id, const char *token)
{
    return find(s, type, id, token) != NULL;
}

int delayed_cancel(struct server *s, const char *type, const char *id, const char *token)
{
    struct delayed *d = find(s, type, id, token);
    if (!d) return 0;
    store_batch_delete_delayed(s->ckpt.batch, d->kg, d->due_ms, d->seq);
    ckpt_touch(&s->ckpt, rpc_now_ms());
    s->stats.delayed_cancelled++;
    entry_free(s, d);
    return 1;
}

/* The message is due: move it from D to its target's inbox in one checkpoint. */
static void on_due(void *arg)
{
    struct delayed *d = arg;
    struct server *s = d->s;
    Statemesh__V1__StoredDelayed *sd = NULL;
    uint8_t *val = NULL;
    size_t len = 0;
    char q[300];
    int rc, idx;

    if (s->stopping) return;                      /* recovery delivers it */
    if (d->gen > s->ckpt.generation) {            /* its D key is not durable yet */
        timer_start(&s->timers, &d->t, rpc_now_ms() + 1);
        return;
    }
    rc = store_get_delayed(s->store, d->kg, d->due_ms, d->seq, &val, &len);
    if (rc < 0) {                                 /* storage trouble: try again later */
        timer_start(&s->timers, &d->t, rpc_now_ms() + 1000);
        return;
    }
    if (rc == 0) sd = statemesh__v1__stored_delayed__unpack(NULL, len, val);
    free(val);
    idx = sd && sd->target ? cfg_match_endpoint(&s->cfg, sd->target->type) : -1;
    if (sd && sd->target && idx < 0) {
        /* Kept on disk, like unroutable inbox messages: a later config may route it. */
        LOG_WARN(&s->log, "delayed.unroutable", "type=%s id=%s msg=\"no endpoint serves the "
                 "target type; the message stays stored\"", sd->target->type,
                 log_quote(q, sizeof q, sd->target->id));
        statemesh__v1__stored_delayed__free_unpacked(sd, NULL);
        entry_free(s, d);
        return;
    }
    store_batch_delete_delayed(s->ckpt.batch, d->kg, d->due_ms, d->seq);
    ckpt_touch(&s->ckpt, rpc_now_ms());
    if (!sd || !sd->target || !sd->argument) {
        LOG_ERROR(&s->log, "delayed.corrupt", "seq=%llu msg=\"stored delayed message is missing "
                  "or unreadable; dropped\"", (unsigned long long)d->seq);
        s->stats.delayed_dropped++;
    } else if (peer_remote(s, store_key_group(sd->target->type, sd->target->id))) {
        peer_out_message(s, d->kg, true, sd->target->type, sd->target->id,
                         sd->caller ? sd->caller->type : NULL, sd->caller ? sd->caller->id : NULL,
                         sd->argument->typename_, sd->argument->value.data,
                         sd->argument->value.len, NULL);
        s->stats.delayed_fired++;
    } else {
        struct msg *m = msg_create(sd->caller ? sd->caller->type : NULL,
                                   sd->caller ? sd->caller->id : NULL, sd->argument->typename_,
                                   sd->argument->value.data, sd->argument->value.len, NULL);
        if (s->tracer) m->trace = trace_ctx_from_header(sd->traceparent, sd->tracestate);
        disp_accept(s, &s->endpoints[idx], sd->target->type, sd->target->id, m);
        s->stats.delayed_fired++;
    }
    if (sd) statemesh__v1__stored_delayed__free_unpacked(sd, NULL);
    entry_free(s, d);
}

static int recover_one(void *arg, uint16_t kg, int64_t due_ms, uint64_t seq, const uint8_t *val,
                       size_t len)
{
    struct server *s = arg;
    Statemesh__V1__StoredDelayed *sd = statemesh__v1__stored_delayed__unpack(NULL, len, val);
    if (seq >= s->next_seq) s->next_seq = seq + 1;
    entry_new(s, kg, due_ms, seq, 0, sd && sd->caller ? sd->caller->type : NULL,
              sd && sd->caller ? sd->caller->id : NULL, sd ? sd->token : NULL);
    if (sd) statemesh__v1__stored_delayed__free_unpacked(sd, NULL);
    return 0;
}

int delayed_recover(struct server *s)
{
    int rc = store_scan_delayed(s->store, recover_one, s);
    if (rc == 0 && s->stats.delayed_pending)
        LOG_INFO(&s->log, "delayed.recovered", "messages=%lld", (long long)s->stats.delayed_pending);
    return rc < 0 ? -1 : 0;
}

void delayed_cleanup(struct server *s)
{
    while (s->delayed_all) entry_free(s, s->delayed_all);
    free(s->delayed.buckets);
    s->delayed.buckets = NULL;
    s->delayed.nbuckets = 0;
}
