/* bootstrap — see bootstrap.h. */
#include "bootstrap.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "address.h"
#include "dispatch.h"
#include "rpc.h"
#include "server.h"
#include "statemesh/v1/admin.pb-c.h"
#include "statemesh/v1/storage.pb-c.h"
#include "wire.h"

#define KEY_PREFIX "bootstrap:"
#define TYPENAME_MAX 256

typedef Statemesh__V1__BootstrapResult__Outcome outcome_t;
#define O_LOADED STATEMESH__V1__BOOTSTRAP_RESULT__OUTCOME__LOADED
#define O_ALREADY STATEMESH__V1__BOOTSTRAP_RESULT__OUTCOME__ALREADY_LOADED
#define O_EXISTS STATEMESH__V1__BOOTSTRAP_RESULT__OUTCOME__EXISTS
#define O_INVALID STATEMESH__V1__BOOTSTRAP_RESULT__OUTCOME__INVALID

struct boot_req;

struct boot_entry {
    struct boot_req *req;
    size_t index;
    Statemesh__V1__AddressData *d;     /* NULL: refused while checking */
    struct endpoint *ep;
    XXH128_hash_t h;                   /* of the entry's bytes */
    char key[sizeof KEY_PREFIX + 32];  /* its idempotency key */
};

struct boot_req {
    uint64_t call_id;
    sm_arena *arena;                   /* the decoded entries */
    int overwrite;
    size_t n, left;                    /* entries; not yet decided (+1 while queuing) */
    struct boot_entry *e;
    Statemesh__V1__BootstrapResult *res;
    Statemesh__V1__BootstrapResult **resp;
};

/* ---- idempotency keys of the open checkpoints ------------------------------ */

static void keys_sync(struct server *s)
{
    struct boot_keys *k = &s->boot_keys;
    if (k->n && s->ckpt.generation >= k->gen) {         /* committed: the store answers */
        if (k->cap > 65536) {                           /* no memory kept for a past burst */
            free(k->v);
            k->v = NULL;
            k->cap = 0;
        } else {
            memset(k->v, 0, k->cap * 2 * sizeof *k->v);
        }
        k->n = 0;
    }
}

static int keys_has(const struct boot_keys *k, XXH128_hash_t h)
{
    if (!k->n) return 0;
    if (h.low64 == 0 && h.high64 == 0) h.low64 = 1;   /* as keys_put stores it */
    for (size_t i = h.low64 & (k->cap - 1);; i = (i + 1) & (k->cap - 1)) {
        if (k->v[2 * i] == h.low64 && k->v[2 * i + 1] == h.high64) return 1;
        if (k->v[2 * i] == 0 && k->v[2 * i + 1] == 0) return 0;
    }
}

static void keys_put(struct boot_keys *k, XXH128_hash_t h)
{
    size_t i;
    if (h.low64 == 0 && h.high64 == 0) h.low64 = 1;   /* never the empty slot */
    for (i = h.low64 & (k->cap - 1); k->v[2 * i] || k->v[2 * i + 1]; i = (i + 1) & (k->cap - 1)) {}
    k->v[2 * i] = h.low64;
    k->v[2 * i + 1] = h.high64;
    k->n++;
}

static void keys_add(struct server *s, XXH128_hash_t h)
{
    struct boot_keys *k = &s->boot_keys;
    if ((k->n + 1) * 2 > k->cap) {
        struct boot_keys nk = {NULL, k->cap ? k->cap * 2 : 1024, 0, 0};
        if (!(nk.v = calloc(nk.cap * 2, sizeof *nk.v))) abort();
        for (size_t i = 0; i < k->cap; i++)
            if (k->v[2 * i] || k->v[2 * i + 1])
                keys_put(&nk, (XXH128_hash_t){.low64 = k->v[2 * i], .high64 = k->v[2 * i + 1]});
        free(k->v);
        k->v = nk.v;
        k->cap = nk.cap;
    }
    keys_put(k, h);
    k->gen = s->ckpt.generation + 1;
}

void boot_cleanup(struct server *s)
{
    free(s->boot_keys.v);
    memset(&s->boot_keys, 0, sizeof s->boot_keys);
}

/* ---- checking an entry ------------------------------------------------------ */

static int bad(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(char *why, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return -1;
}

/* What a check is about ("state 'n'", "message 3: invalid caller"),
 * formatted only when it fails. */
struct what {
    const char *kind;          /* "state", "message", "delayed message" */
    size_t i;                  /* 1-based (messages) */
    const char *name;          /* state name, or NULL */
    const char *detail;        /* appended after ": ", or NULL */
};

static const char *say(const struct what *w, char *buf, size_t n)
{
    if (w->name) snprintf(buf, n, "%s '%.100s'", w->kind, w->name);
    else snprintf(buf, n, "%s %zu%s%s", w->kind, w->i, w->detail ? ": " : "",
                  w->detail ? w->detail : "");
    return buf;
}

static int check_value(const struct server *s, const Statemesh__V1__TypedValue *v,
                       const struct what *w, char *why, size_t n)
{
    char what[160];
    size_t tl;
    if (!v) return bad(why, n, "%s has no value", say(w, what, sizeof what));
    tl = strlen(v->typename_);
    if (tl == 0 || tl > TYPENAME_MAX)
        return bad(why, n, "%s: typename must be 1..%d bytes", say(w, what, sizeof what),
                   TYPENAME_MAX);
    if (v->value.len > s->cfg.max_message_bytes)
        return bad(why, n, "%s is %zu bytes, over the limit of %zu (runtime.max_message_bytes)",
                   say(w, what, sizeof what), v->value.len, s->cfg.max_message_bytes);
    return 0;
}

static int check_addr(const Statemesh__V1__Address *a, const struct what *w, char *why, size_t n)
{
    char what[160];
    const char *e;
    if ((e = addr_check_type(a->type, strlen(a->type))) || (e = addr_check_id(a->id, strlen(a->id))))
        return bad(why, n, "%s: %s", w ? say(w, what, sizeof what) : "invalid address", e);
    return 0;
}

/* Checks everything that does not depend on the address's current data.
 * Returns 0 with *ep set, or -1 with `why`. */
static int check_entry(struct server *s, const Statemesh__V1__AddressData *d,
                       struct endpoint **ep, char *why, size_t n)
{
    const Statemesh__V1__Address *a = d->address;
    struct ftype *ft;
    char what[160];
    const char *e;
    int idx;

    if (!a) return bad(why, n, "the entry has no address");
    if (check_addr(a, NULL, why, n) != 0) return -1;
    idx = cfg_match_endpoint(&s->cfg, a->type);
    if (idx < 0 || ep_rejects_type(&s->endpoints[idx], a->type))
        return bad(why, n, "no endpoint serves function type %s", a->type);
    *ep = &s->endpoints[idx];
    ft = ep_find_type(*ep, a->type);
    for (size_t i = 0; i < d->n_state; i++) {
        const Statemesh__V1__AddressState *st = d->state[i];
        if ((e = addr_check_state_name(st->name, strlen(st->name))))
            return bad(why, n, "invalid state name: %s", e);
        struct what w = {"state", 0, st->name, NULL};
        for (size_t j = 0; j < i; j++)
            if (strcmp(d->state[j]->name, st->name) == 0)
                return bad(why, n, "%s given twice", say(&w, what, sizeof what));
        if (check_value(s, st->value, &w, why, n) != 0) return -1;
        if (st->expires_at_ms < 0)
            return bad(why, n, "%s: expires_at_ms is negative", say(&w, what, sizeof what));
        for (size_t k = 0; ft && k < ft->nspecs; k++)
            if (strcmp(ft->spec_names[k], st->name) == 0 &&
                strcmp(ft->spec_types[k], st->value->typename_) != 0)
                return bad(why, n, "%s declares state '%s' as %s, not %.256s", a->type, st->name,
                           ft->spec_types[k], st->value->typename_);
    }
    for (size_t i = 0; i < d->n_messages; i++) {
        const Statemesh__V1__AddressMessage *m = d->messages[i];
        struct what w = {"message", i + 1, NULL, NULL};
        if (check_value(s, m->argument, &w, why, n) != 0) return -1;
        w.detail = "invalid caller";
        if (m->caller && check_addr(m->caller, &w, why, n) != 0) return -1;
    }
    for (size_t i = 0; i < d->n_delayed; i++) {
        const Statemesh__V1__AddressDelayed *dl = d->delayed[i];
        struct what w = {"delayed message", i + 1, NULL, NULL};
        if (check_value(s, dl->argument, &w, why, n) != 0) return -1;
        if (dl->due_at_ms <= 0)
            return bad(why, n, "%s: due_at_ms must be a Unix time in ms", say(&w, what, sizeof what));
        if (dl->target) {
            w.detail = "invalid target";
            if (check_addr(dl->target, &w, why, n) != 0) return -1;
            if (cfg_match_endpoint(&s->cfg, dl->target->type) < 0)
                return bad(why, n, "delayed message %zu: no endpoint serves its target type %s",
                           i + 1, dl->target->type);
        }
        if (dl->from_ingress) {
            if (dl->target && (strcmp(dl->target->type, a->type) || strcmp(dl->target->id, a->id)))
                return bad(why, n, "delayed message %zu: sent by the ingress, so its target must "
                           "be the address itself", i + 1);
            if (dl->token[0])
                return bad(why, n, "delayed message %zu: a message from the ingress has no "
                           "cancellation token", i + 1);
        }
        if (strlen(dl->token) > DELAYED_TOKEN_MAX)
            return bad(why, n, "delayed message %zu: token longer than %d bytes", i + 1,
                       DELAYED_TOKEN_MAX);
        for (size_t j = 0; dl->token[0] && j < i; j++)
            if (strcmp(d->delayed[j]->token, dl->token) == 0)
                return bad(why, n, "delayed message %zu: token \"%.256s\" given twice", i + 1,
                           dl->token);
    }
    return 0;
}

/* ---- deciding and applying ------------------------------------------------ */

struct live_count {
    int64_t now;
    int n;
};

static int count_live(void *arg, const char *name, const uint8_t *val, size_t len)
{
    struct live_count *c = arg;
    Statemesh__V1__StoredState *st = statemesh__v1__stored_state__unpack(NULL, len, val);
    (void)name;
    if (!st || !(st->expires_at_ms && st->expires_at_ms <= c->now)) c->n++;
    if (st) statemesh__v1__stored_state__free_unpacked(st, NULL);
    return 0;
}

/* What loading e into its address would do now: O_LOADED (then *has_state
 * says whether the address may hold state), or another outcome with `why`
 * for O_INVALID. mb: the address's mbox (NULL: none; a new IDLE one holds
 * nothing uncommitted either). No batch of the address is in flight, or
 * this is a dry run. */
static outcome_t decide(struct server *s, struct mbox *mb, const struct boot_entry *e,
                        int overwrite, int *has_state, char *why, size_t n)
{
    const Statemesh__V1__AddressData *d = e->d;
    const char *type = d->address->type, *id = d->address->id;
    int fresh = !mb || mb->state == MBOX_IDLE, nothing;
    uint8_t *val;
    size_t len;
    int rc;

    keys_sync(s);
    if (keys_has(&s->boot_keys, e->h)) return O_ALREADY;
    /* The common case, a new address: the filter knows it never had state
     * nor an idempotency record, so no read at all. */
    nothing = fresh && store_no_state(s->store, type, id);
    if (!nothing && !store_no_idem(s->store, type, id, e->key)) {
        rc = store_get_idem(s->store, type, id, e->key, &val, &len);
        if (rc < 0) {
            bad(why, n, "cannot read the store (see the runtime log)");
            return O_INVALID;
        }
        if (rc == 0) {
            free(val);
            return O_ALREADY;
        }
    }
    for (size_t i = 0; i < d->n_delayed; i++)
        if (d->delayed[i]->token[0] && !d->delayed[i]->from_ingress &&
            delayed_pending(s, type, id, d->delayed[i]->token)) {
            bad(why, n, "delayed message %zu: the address already has a delayed message with "
                "token \"%.256s\"", i + 1, d->delayed[i]->token);
            return O_INVALID;
        }
    if (nothing) {
        *has_state = 0;
        return O_LOADED;
    }
    *has_state = 1;
    if (overwrite) return O_LOADED;
    if (fresh) {
        struct live_count c = {timer_wall_ms(), 0};
        rc = store_scan_states(s->store, type, id, count_live, &c) != 0 ? -1 : c.n;
    } else {
        rc = disp_states(s, mb, 0);
    }
    if (rc < 0) {
        bad(why, n, "cannot read the store (see the runtime log)");
        return O_INVALID;
    }
    return rc > 0 ? O_EXISTS : O_LOADED;
}

static void load(struct server *s, struct mbox *mb, const struct boot_entry *e)
{
    const Statemesh__V1__AddressData *d = e->d;
    const char *type = mb->type, *id = mb->id;
    Statemesh__V1__StoredIdempotency rec = STATEMESH__V1__STORED_IDEMPOTENCY__INIT;
    uint8_t buf[32];                                   /* an int64: at most 11 bytes */
    size_t len;

    for (size_t i = 0; i < d->n_state; i++)
        disp_put_state(s, mb, d->state[i]->name, d->state[i]->value, d->state[i]->expires_at_ms);
    for (size_t i = 0; i < d->n_messages; i++) {
        const Statemesh__V1__AddressMessage *m = d->messages[i];
        disp_accept(s, mb->ep, type, id,
                    msg_create(m->caller ? m->caller->type : NULL, m->caller ? m->caller->id : NULL,
                               m->argument->typename_, m->argument->value.data,
                               m->argument->value.len, NULL));
    }
    for (size_t i = 0; i < d->n_delayed; i++) {
        const Statemesh__V1__AddressDelayed *dl = d->delayed[i];
        if (dl->from_ingress)
            delayed_add(s, dl->due_at_ms, NULL, NULL, NULL, type, id, dl->argument);
        else
            delayed_add(s, dl->due_at_ms, type, id, dl->token[0] ? dl->token : NULL,
                        dl->target ? dl->target->type : type, dl->target ? dl->target->id : id,
                        dl->argument);
    }
    rec.expires_at_ms = timer_wall_ms() + (int64_t)s->cfg.idempotency_retention_hours * 3600000;
    len = statemesh__v1__stored_idempotency__pack(&rec, buf);
    store_batch_put_idem(s->ckpt.batch, type, id, e->key, buf, len);
    keys_add(s, e->h);
    ckpt_touch(&s->ckpt, rpc_now_ms());
}

static void req_free(struct boot_req *r)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->res[i].error != protobuf_c_empty_string) free(r->res[i].error);
    sm_arena_destroy(&r->arena);
    free(r->e);
    free(r->res);
    free(r->resp);
    free(r);
}

static void set_result(struct boot_req *r, size_t i, outcome_t o, const char *why)
{
    r->res[i].outcome = o;
    if (o == O_INVALID && !(r->res[i].error = strdup(why))) abort();
}

static Statemesh__V1__BootstrapResponse response_of(struct boot_req *r)
{
    Statemesh__V1__BootstrapResponse resp = STATEMESH__V1__BOOTSTRAP_RESPONSE__INIT;
    resp.n_results = r->n;
    resp.results = r->resp;
    return resp;
}

/* One entry fewer to wait for; the last one answers (after the checkpoint). */
static void entry_done(struct server *s, struct boot_req *r)
{
    Statemesh__V1__BootstrapResponse resp;
    uint8_t *buf;
    size_t len;

    if (--r->left) return;
    resp = response_of(r);
    buf = rpc_pack(&resp.base, &len);
    ckpt_add_raw(&s->ckpt, r->call_id, buf, len);
    s->ckpt.forced = 1;
    ckpt_touch(&s->ckpt, rpc_now_ms());
    req_free(r);
}

static void apply_entry(struct server *s, struct mbox *mb, void *arg)
{
    struct boot_entry *e = arg;
    struct boot_req *r = e->req;
    char why[400];
    int has_state = 1;
    outcome_t o = decide(s, mb, e, r->overwrite, &has_state, why, sizeof why);

    if (o == O_LOADED && r->overwrite && has_state && disp_states(s, mb, 1) < 0) {
        o = O_INVALID;                                 /* nothing was deleted */
        bad(why, sizeof why, "cannot read the store (see the runtime log)");
    }
    if (o == O_LOADED) {
        load(s, mb, e);
        s->stats.bootstrap_loaded++;
    } else if (o == O_ALREADY) {
        s->stats.bootstrap_already++;
    }
    set_result(r, e->index, o, why);
    entry_done(s, r);
}

/* The runtime stops with the entry still waiting: nobody is answered. */
static void drop_entry(void *arg)
{
    struct boot_entry *e = arg;
    if (--e->req->left == 0) req_free(e->req);
}

/* ---- the RPC ---------------------------------------------------------------- */

/* Reads a varint at p[*pos..n). Returns 0, or -1 if malformed. */
static int varint(const uint8_t *p, size_t n, size_t *pos, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && *pos < n; shift += 7) {
        uint8_t b = p[(*pos)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return 0;
    }
    return -1;
}

/* Walks the top level of a BootstrapRequest: calls fn for each entry (field
 * 1) unless fn is NULL, and returns the count, mode and dry_run; -1 if the
 * bytes are malformed. */
static long walk(const uint8_t *p, size_t n, uint64_t *mode, uint64_t *dry,
                 void (*fn)(void *arg, const uint8_t *body, size_t len), void *arg)
{
    size_t pos = 0;
    long count = 0;
    while (pos < n) {
        uint64_t tag, v;
        if (varint(p, n, &pos, &tag) != 0) return -1;
        switch (tag & 7) {
        case 0:
            if (varint(p, n, &pos, &v) != 0) return -1;
            if (tag >> 3 == 2) *mode = v;
            if (tag >> 3 == 3) *dry = v;
            break;
        case 1:
            if (n - pos < 8) return -1;
            pos += 8;
            break;
        case 5:
            if (n - pos < 4) return -1;
            pos += 4;
            break;
        case 2:
            if (varint(p, n, &pos, &v) != 0 || v > n - pos) return -1;
            if (tag >> 3 == 1) {
                if (fn) fn(arg, p + pos, (size_t)v);
                count++;
            }
            pos += (size_t)v;
            break;
        default:
            return -1;
        }
    }
    return count;
}

struct prep {
    struct server *s;
    struct boot_req *r;
    size_t i, nvalid;
};

/* Decodes and checks one entry. */
static void prepare(void *arg, const uint8_t *body, size_t len)
{
    struct prep *pp = arg;
    struct boot_entry *e = &pp->r->e[pp->i];
    ProtobufCAllocator alloc = wire_arena_allocator(pp->r->arena);
    char why[400];

    e->req = pp->r;
    e->index = pp->i++;
    statemesh__v1__bootstrap_result__init(&pp->r->res[e->index]);
    pp->r->resp[e->index] = &pp->r->res[e->index];
    e->h = XXH3_128bits(body, len);
    memcpy(e->key, KEY_PREFIX, sizeof KEY_PREFIX - 1);
    for (int k = 0; k < 32; k++) {                     /* high64 then low64, hex */
        uint64_t w = k < 16 ? e->h.high64 : e->h.low64;
        e->key[sizeof KEY_PREFIX - 1 + k] = "0123456789abcdef"[(w >> (60 - 4 * (k & 15))) & 15];
    }
    e->key[sizeof KEY_PREFIX - 1 + 32] = '\0';
    if (wire_check_strings(&statemesh__v1__address_data__descriptor, body, len, why,
                           sizeof why) != 0) {
        set_result(pp->r, e->index, O_INVALID, why);
        return;
    }
    if (!(e->d = statemesh__v1__address_data__unpack(&alloc, len, body))) {
        set_result(pp->r, e->index, O_INVALID, "the entry is not a valid AddressData");
        return;
    }
    if (check_entry(pp->s, e->d, &e->ep, why, sizeof why) != 0) {
        set_result(pp->r, e->index, O_INVALID, why);
        e->d = NULL;                                   /* freed with the arena */
        return;
    }
    pp->nvalid++;
}

static void on_bootstrap(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    struct server *s = arg;
    uint64_t mode = 0, dry = 0;
    long n = walk(req, len, &mode, &dry, NULL, NULL);
    struct prep pp;
    struct boot_req *r;

    if (n < 0) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "request is not a valid BootstrapRequest");
        return;
    }
    if (n > BOOT_MAX_ENTRIES) {
        rpc_call_error(call, RPC_RESOURCE_EXHAUSTED, "%ld entries in one request, over the limit "
                       "of %d: send them in several", n, BOOT_MAX_ENTRIES);
        return;
    }
    if (mode > STATEMESH__V1__BOOTSTRAP_REQUEST__MODE__OVERWRITE) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "unknown mode %llu", (unsigned long long)mode);
        return;
    }
    if (s->stopping) {
        rpc_call_error(call, RPC_UNAVAILABLE, "statemeshd is shutting down");
        return;
    }
    if (!dry && s->stats.queued_bytes + (int64_t)s->mboxes.bytes >= (int64_t)s->cfg.max_queued_bytes) {
        s->stats.rejected_overloaded++;
        rpc_call_error(call, RPC_UNAVAILABLE, "overloaded: queued messages use "
                       "runtime.max_queued_bytes; retry later");
        return;
    }
    if (!(r = calloc(1, sizeof *r))) abort();
    r->n = (size_t)n;
    r->overwrite = mode == STATEMESH__V1__BOOTSTRAP_REQUEST__MODE__OVERWRITE;
    r->e = calloc(r->n ? r->n : 1, sizeof *r->e);
    r->res = calloc(r->n ? r->n : 1, sizeof *r->res);
    r->resp = calloc(r->n ? r->n : 1, sizeof *r->resp);
    if (!r->e || !r->res || !r->resp || !(r->arena = sm_arena_create())) abort();
    pp = (struct prep){s, r, 0, 0};
    walk(req, len, &mode, &dry, prepare, &pp);

    if (dry || pp.nvalid == 0) {                       /* nothing to apply: answer now */
        Statemesh__V1__BootstrapResponse resp;
        for (size_t i = 0; dry && i < r->n; i++) {
            struct boot_entry *e = &r->e[i];
            char why[400];
            int has_state;
            if (!e->d) continue;
            set_result(r, i, decide(s, mbox_find(&s->mboxes, e->d->address->type,
                                                 e->d->address->id),
                                    e, r->overwrite, &has_state, why, sizeof why), why);
        }
        resp = response_of(r);
        rpc_call_reply(call, &resp.base);
        req_free(r);
        return;
    }
    r->call_id = ingress_hold(s->ingress, call);
    r->left = pp.nvalid + 1;                           /* +1: until every entry is queued */
    for (size_t i = 0; i < r->n; i++) {
        struct boot_entry *e = &r->e[i];
        if (!e->d) continue;
        disp_address_op(s, e->ep, e->d->address->type, e->d->address->id,
                        mbox_op_fn(apply_entry, drop_entry, e));
    }
    entry_done(s, r);
}

int boot_register(struct rpc_server *rpc, struct server *s)
{
    return rpc_server_add_unary(rpc, "/statemesh.v1.Admin/Bootstrap", on_bootstrap, s);
}
