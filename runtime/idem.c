/* idem — see idem.h. */
#include "idem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "address.h"
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
    size_t klen;               /* of scope: type '\0' id '\0' key ("" "" key: a J record) */
    char scope[];
};

/* The scope of a key: the bytes after an I key's kg, and the in-memory
 * table's key. type "" (impossible for an address) marks a J record. */
struct scope {
    const char *type, *id, *key;   /* point into p: the caller's strings may not outlive
                                    * scope_init (parse_reply_key's are on its stack) */
    char *p;                   /* type '\0' id '\0' key */
    size_t len;
    char stack[1600];
};

static void scope_init(struct scope *sc, const char *type, const char *id, const char *key)
{
    size_t tl = strlen(type), il = strlen(id), kl = strlen(key);
    sc->len = tl + 1 + il + 1 + kl;
    sc->p = sc->len + 1 <= sizeof sc->stack ? sc->stack : malloc(sc->len + 1);
    if (!sc->p) abort();
    memcpy(sc->p, type, tl + 1);
    memcpy(sc->p + tl + 1, id, il + 1);
    memcpy(sc->p + tl + il + 2, key, kl + 1);
    sc->type = sc->p;
    sc->id = sc->p + tl + 1;
    sc->key = sc->p + tl + il + 2;
}

static void scope_free(struct scope *sc)
{
    if (sc->p != sc->stack) free(sc->p);
}

static struct idem **slot(struct idem_table *t, const char *key, size_t klen, uint64_t h)
{
    struct idem **pp;
    if (!t->nbuckets) return NULL;
    for (pp = &t->buckets[h & (t->nbuckets - 1)]; *pp; pp = &(*pp)->hnext)
        if ((*pp)->hash == h && (*pp)->klen == klen && memcmp((*pp)->scope, key, klen) == 0)
            return pp;
    return NULL;
}

static struct idem *find(struct idem_table *t, const char *key, size_t klen)
{
    struct idem **pp = slot(t, key, klen, XXH3_64bits(key, klen));
    return pp ? *pp : NULL;
}

static void mark_fresh(struct idem_table *t, struct idem *e)
{
    if (e->in_fresh) return;
    e->in_fresh = 1;
    e->fnext = t->fresh;
    t->fresh = e;
}

static struct idem *insert(struct server *s, const struct scope *sc, int is_call)
{
    struct idem_table *t = &s->idem;
    struct idem *e = calloc(1, sizeof *e + sc->len + 1);

    if (!e) abort();
    memcpy(e->scope, sc->p, sc->len + 1);
    e->klen = sc->len;
    e->hash = XXH3_64bits(sc->p, sc->len);
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
    {
        const char *type = e->scope, *id = type + strlen(type) + 1, *key = id + strlen(id) + 1;
        if (type[0]) store_batch_put_idem(s->ckpt.batch, type, id, key, buf, len);
        else store_batch_put_legacy_idem(s->ckpt.batch, key, buf, len);
    }
    free(buf);
    e->gen = s->ckpt.generation + 1;
    ckpt_touch(&s->ckpt, rpc_now_ms());
    mark_fresh(&s->idem, e);
}

/* The committed record of the scope: 0 found (*out, caller frees), 1 absent
 * or expired, -1 error. A miss in the I range of a store upgraded from
 * format 1 looks in the J range, and narrows *sc to the J scope on a hit. */
static int load(struct server *s, struct scope *sc, Statemesh__V1__StoredIdempotency **out)
{
    uint8_t *val;
    size_t len;
    int rc = sc->type[0] ? store_get_idem(s->store, sc->type, sc->id, sc->key, &val, &len)
                         : store_get_legacy_idem(s->store, sc->key, &val, &len);
    if (rc == 1 && sc->type[0] && s->idem_legacy) {
        rc = store_get_legacy_idem(s->store, sc->key, &val, &len);
        if (rc == 0) {
            char *key = strdup(sc->key);          /* sc->key lives in what scope_free frees */
            if (!key) abort();
            scope_free(sc);
            scope_init(sc, "", "", key);
            free(key);
        }
    }
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

/* The entry of the scope: in memory, else loaded from the store (NULL: none). */
static struct idem *lookup(struct server *s, struct scope *sc, int *err)
{
    Statemesh__V1__StoredIdempotency *r;
    struct idem *e = find(&s->idem, sc->p, sc->len);
    int rc;

    *err = 0;
    if (e) return e;
    rc = load(s, sc, &r);
    if (rc < 0) *err = 1;
    if (rc != 0) return NULL;
    e = find(&s->idem, sc->p, sc->len);          /* a J scope may be in memory */
    if (!e) {
        e = insert(s, sc, r->is_call);
        if (r->replied && r->reply) set_reply(e, r->reply->typename_, r->reply->value.data,
                                              r->reply->value.len);
    }
    statemesh__v1__stored_idempotency__free_unpacked(r, NULL);
    return e;
}

enum idem_outcome idem_check(struct server *s, const char *type, const char *id, const char *key,
                             int is_call, uint64_t call_id)
{
    struct scope sc;
    struct idem *e;
    int err;

    scope_init(&sc, type, id, key);
    e = lookup(s, &sc, &err);
    scope_free(&sc);
    if (err) return IDEM_ERROR;
    if (!e) return IDEM_NEW;
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

void idem_remember(struct server *s, const char *type, const char *id, const char *key,
                   int is_call)
{
    struct scope sc;
    struct idem *e;

    scope_init(&sc, type, id, key);
    e = insert(s, &sc, is_call);
    scope_free(&sc);
    put_record(s, e);
}

/* reply_key: "\x01" type "\x01" len(id) "\x01" id key (idem_reply_key);
 * "\x02" key, or any other string, is the key of a J record. */
char *idem_reply_key(const char *type, const char *id, const char *key)
{
    size_t n = 1 + strlen(type) + 1 + 20 + 1 + strlen(id) + strlen(key) + 1;
    char *p = malloc(n);
    if (!p) abort();
    snprintf(p, n, "\x01%s\x01%zu\x01%s%s", type, strlen(id), id, key);
    return p;
}

/* Splits a reply key into *sc. Returns 0, or -1 if it is malformed. */
static int parse_reply_key(const char *rk, struct scope *sc)
{
    char type[ADDR_MAX_TYPE + 1], idbuf[ADDR_MAX_ID + 1];
    const char *t, *p;
    char *end;
    size_t tl, il;

    if (rk[0] != '\x01') {
        scope_init(sc, "", "", rk[0] == '\x02' ? rk + 1 : rk);
        return 0;
    }
    t = rk + 1;
    if (!(p = strchr(t, '\x01')) || (tl = (size_t)(p - t)) == 0 || tl > ADDR_MAX_TYPE) return -1;
    il = strtoul(p + 1, &end, 10);
    if (end == p + 1 || *end != '\x01' || il == 0 || il > ADDR_MAX_ID || strlen(end + 1) <= il)
        return -1;
    memcpy(type, t, tl);
    type[tl] = '\0';
    memcpy(idbuf, end + 1, il);
    idbuf[il] = '\0';
    if (strlen(idbuf) != il) return -1;
    scope_init(sc, type, idbuf, end + 1 + il);
    return 0;
}

int idem_reply_key_kg(const char *reply_key)
{
    struct scope sc;
    int kg;
    if (reply_key[0] != '\x01' || parse_reply_key(reply_key, &sc) != 0) return -1;
    kg = store_key_group(sc.type, sc.id);
    scope_free(&sc);
    return kg;
}

void idem_reply(struct server *s, const char *reply_key, const char *typename,
                const uint8_t *data, size_t len)
{
    struct scope sc;
    struct idem *e;
    int err;

    if (parse_reply_key(reply_key, &sc) != 0) {
        LOG_ERROR(&s->log, "idem.corrupt", "msg=\"malformed reply key; the reply is not stored\"");
        return;
    }
    e = lookup(s, &sc, &err);
    scope_free(&sc);
    if (!e) return;                               /* expired or gone: nothing to keep */
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
        struct idem **pp = slot(t, e->scope, e->klen, e->hash);
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
    /* An I key is 'I' kg:2 scope; a J key 'J' key, never kept in memory
     * under that scope once expired. */
    if (r && r->expires_at_ms && r->expires_at_ms <= w->now &&
        (key[0] != 'I' || klen < 3 || !find(&w->s->idem, key + 3, klen - 3))) {
        store_batch_delete_raw(w->s->ckpt.batch, key, klen);
        w->deleted++;
    }
    if (r) statemesh__v1__stored_idempotency__free_unpacked(r, NULL);
    return 0;
}

void idem_sweep(struct server *s)
{
    struct sweep w = {s, timer_wall_ms(), 0};
    if (store_sweep(s->store, 'I', &s->idem_cursor, SWEEP_KEYS, sweep_one, &w) < 0) return;
    if (s->idem_legacy &&
        store_sweep(s->store, 'J', &s->idem_legacy_cursor, SWEEP_KEYS, sweep_one, &w) < 0)
        return;
    if (w.deleted) {
        ckpt_touch(&s->ckpt, rpc_now_ms());
        s->stats.idempotency_expired += (int64_t)w.deleted;
    }
}

int idem_open(struct server *s)
{
    int rc = store_has_kind(s->store, 'J');
    if (rc < 0) return -1;
    s->idem_legacy = rc == 1;
    if (s->idem_legacy)
        LOG_INFO(&s->log, "idem.legacy_records", "msg=\"idempotency records of format 1 are "
                 "consulted until they expire\"");
    return 0;
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
    store_cursor_free(&s->idem_legacy_cursor);
}
