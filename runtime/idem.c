/* idem — see idem.h. */
#include "idem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "server.h"
#include "statemesh/v1/storage.pb-c.h"

#define SWEEP_KEYS 2000

struct idem {
    struct idem *hnext;
    struct idem *fnext;        /* fresh list */
    uint64_t hash;
    uint64_t gen;              /* committed once ckpt.generation >= gen */
    int is_call, replied, in_fresh;
    char *typename;            /* the reply */
    uint8_t *data;
    size_t len;
    uint64_t *waiters;
    size_t nwaiters, cap;
    char key[];
};

static struct idem **slot(struct idem_table *t, const char *key, uint64_t h)
{
    struct idem **pp;
    if (!t->nbuckets) return NULL;
    for (pp = &t->buckets[h & (t->nbuckets - 1)]; *pp; pp = &(*pp)->hnext)
        if ((*pp)->hash == h && strcmp((*pp)->key, key) == 0) return pp;
    return NULL;
}

static struct idem *find(struct idem_table *t, const char *key)
{
    struct idem **pp = slot(t, key, XXH3_64bits(key, strlen(key)));
    return pp ? *pp : NULL;
}

static void mark_fresh(struct idem_table *t, struct idem *e)
{
    if (e->in_fresh) return;
    e->in_fresh = 1;
    e->fnext = t->fresh;
    t->fresh = e;
}

static struct idem *insert(struct server *s, const char *key, int is_call)
{
    struct idem_table *t = &s->idem;
    size_t kl = strlen(key);
    struct idem *e = calloc(1, sizeof *e + kl + 1);

    if (!e) abort();
    memcpy(e->key, key, kl + 1);
    e->hash = XXH3_64bits(key, kl);
    e->is_call = is_call;
    if (t->count + 1 > t->nbuckets) {
        size_t n = t->nbuckets ? t->nbuckets * 2 : 256;
        struct idem **b = calloc(n, sizeof *b);
        if (!b) abort();
        for (size_t i = 0; i < t->nbuckets; i++) {
            struct idem *x = t->buckets[i], *next;
            for (; x; x = next) {
                next = x->hnext;
                x->hnext = b[x->hash & (n - 1)];
                b[x->hash & (n - 1)] = x;
            }
        }
        free(t->buckets);
        t->buckets = b;
        t->nbuckets = n;
    }
    e->hnext = t->buckets[e->hash & (t->nbuckets - 1)];
    t->buckets[e->hash & (t->nbuckets - 1)] = e;
    t->count++;
    mark_fresh(t, e);
    return e;
}

static void entry_free(struct idem *e)
{
    free(e->typename);
    free(e->data);
    free(e->waiters);
    free(e);
}

static void add_waiter(struct idem *e, uint64_t call_id)
{
    if (e->nwaiters == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 2;
        uint64_t *w = realloc(e->waiters, cap * sizeof *w);
        if (!w) abort();
        e->waiters = w;
        e->cap = cap;
    }
    e->waiters[e->nwaiters++] = call_id;
}

static void put_record(struct server *s, struct idem *e)
{
    Statemesh__V1__StoredIdempotency r = STATEMESH__V1__STORED_IDEMPOTENCY__INIT;
    Statemesh__V1__TypedValue v = STATEMESH__V1__TYPED_VALUE__INIT;
    uint8_t *buf;
    size_t len;

    r.expires_at_ms = timer_wall_ms() + (int64_t)s->cfg.idempotency_retention_hours * 3600000;
    r.is_call = e->is_call;
    r.replied = e->replied;
    if (e->replied) {
        v.typename_ = e->typename;
        v.value.data = e->data;
        v.value.len = e->len;
        r.reply = &v;
    }
    buf = rpc_pack(&r.base, &len);
    store_batch_put_idem(s->ckpt.batch, e->key, buf, len);
    free(buf);
    e->gen = s->ckpt.generation + 1;
    ckpt_touch(&s->ckpt, rpc_now_ms());
    mark_fresh(&s->idem, e);
}

/* The committed record of `key`: 0 found (*out, caller frees), 1 absent or
 * expired, -1 error. */
static int load(struct server *s, const char *key, Statemesh__V1__StoredIdempotency **out)
{
    uint8_t *val;
    size_t len;
    int rc = store_get_idem(s->store, key, &val, &len);
    if (rc != 0) return rc < 0 ? -1 : 1;
    *out = statemesh__v1__stored_idempotency__unpack(NULL, len, val);
    free(val);
    if (!*out) {
        LOG_ERROR(&s->log, "idem.corrupt", "msg=\"unreadable idempotency record; treated as absent\"");
        return 1;
    }
    if ((*out)->expires_at_ms && (*out)->expires_at_ms <= timer_wall_ms()) {
        statemesh__v1__stored_idempotency__free_unpacked(*out, NULL);
        return 1;
    }
    return 0;
}

static void set_reply(struct idem *e, const char *typename, const uint8_t *data, size_t len)
{
    e->replied = 1;
    e->typename = strdup(typename);
    e->data = malloc(len ? len : 1);
    if (!e->typename || !e->data) abort();
    if (len) memcpy(e->data, data, len);
    e->len = len;
}

enum idem_outcome idem_check(struct server *s, const char *key, int is_call, uint64_t call_id)
{
    Statemesh__V1__StoredIdempotency *r;
    struct idem *e = find(&s->idem, key);
    int rc;

    if (!e) {
        rc = load(s, key, &r);
        if (rc < 0) return IDEM_ERROR;
        if (rc == 1) return IDEM_NEW;
        e = insert(s, key, r->is_call);
        e->gen = 0;
        if (r->replied && r->reply) set_reply(e, r->reply->typename_, r->reply->value.data,
                                              r->reply->value.len);
        statemesh__v1__stored_idempotency__free_unpacked(r, NULL);
    }
    s->stats.idempotent_duplicates++;
    if (!is_call) {
        if (call_id) ckpt_add_ack(&s->ckpt, call_id);
        return IDEM_DUPLICATE;
    }
    if (!e->is_call) return IDEM_CONFLICT;
    if (e->replied) ckpt_add_reply(&s->ckpt, call_id, e->typename, e->data, e->len);
    else add_waiter(e, call_id);
    return IDEM_DUPLICATE;
}

void idem_remember(struct server *s, const char *key, int is_call)
{
    struct idem *e = insert(s, key, is_call);
    put_record(s, e);
}

void idem_reply(struct server *s, const char *key, const char *typename, const uint8_t *data,
                size_t len)
{
    struct idem *e = find(&s->idem, key);
    Statemesh__V1__StoredIdempotency *r;

    if (!e) {
        if (load(s, key, &r) != 0) return;        /* expired or gone: nothing to keep */
        e = insert(s, key, r->is_call);
        if (r->replied && r->reply) set_reply(e, r->reply->typename_, r->reply->value.data,
                                              r->reply->value.len);
        statemesh__v1__stored_idempotency__free_unpacked(r, NULL);
    }
    if (e->replied || !e->is_call) return;        /* the first reply won */
    set_reply(e, typename, data, len);
    put_record(s, e);
    for (size_t i = 0; i < e->nwaiters; i++)
        ckpt_add_reply(&s->ckpt, e->waiters[i], typename, data, len);
    e->nwaiters = 0;
}

void idem_after_commit(struct server *s)
{
    struct idem_table *t = &s->idem;
    struct idem *e = t->fresh, *next, *keep = NULL;

    t->fresh = NULL;
    for (; e; e = next) {
        next = e->fnext;
        e->in_fresh = 0;
        if (e->gen > s->ckpt.generation || (e->is_call && !e->replied && e->nwaiters)) {
            e->fnext = keep;           /* still needed in memory */
            e->in_fresh = 1;
            keep = e;
            continue;
        }
        struct idem **pp = slot(t, e->key, e->hash);
        if (pp) *pp = e->hnext;
        t->count--;
        entry_free(e);
    }
    t->fresh = keep;
}

struct sweep {
    struct server *s;
    int64_t now;
    size_t deleted;
};

static int sweep_one(void *arg, const char *key, size_t klen, const uint8_t *val, size_t len)
{
    struct sweep *w = arg;
    Statemesh__V1__StoredIdempotency *r = statemesh__v1__stored_idempotency__unpack(NULL, len, val);
    if (r && r->expires_at_ms && r->expires_at_ms <= w->now) {
        char k[IDEM_KEY_MAX + 2];
        size_t n = klen - 1 < IDEM_KEY_MAX ? klen - 1 : IDEM_KEY_MAX;
        memcpy(k, key + 1, n);
        k[n] = '\0';
        if (!find(&w->s->idem, k)) {
            store_batch_delete_raw(w->s->ckpt.batch, key, klen);
            w->deleted++;
        }
    }
    if (r) statemesh__v1__stored_idempotency__free_unpacked(r, NULL);
    return 0;
}

void idem_sweep(struct server *s)
{
    struct sweep w = {s, timer_wall_ms(), 0};
    if (store_sweep(s->store, 'I', &s->idem_cursor, SWEEP_KEYS, sweep_one, &w) < 0) return;
    if (w.deleted) {
        ckpt_touch(&s->ckpt, rpc_now_ms());
        s->stats.idempotency_expired += (int64_t)w.deleted;
    }
}

void idem_cleanup(struct server *s)
{
    struct idem_table *t = &s->idem;
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct idem *e = t->buckets[i], *next;
        for (; e; e = next) {
            next = e->hnext;
            entry_free(e);
        }
    }
    free(t->buckets);
    memset(t, 0, sizeof *t);
    store_cursor_free(&s->idem_cursor);
}
