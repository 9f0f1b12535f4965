/* ingress — see ingress.h. */
#include "ingress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "statemesh/v1/admin.pb-c.h"
#include "dispatch.h"
#include "grpc/health/v1/health.pb-c.h"
#include "statemesh/v1/ingress.pb-c.h"
#include "rpc.h"
#include "server.h"
#include "statemesh/v1/storage.pb-c.h"

/* Room for the address and framing around a max-size argument. */
#define REQUEST_OVERHEAD (64u << 10)

struct pcall {
    struct ingress *in;
    struct rpc_call *call;
    uint64_t id;
};

struct ingress {
    struct server *s;
    struct rpc_server *rpc;
    struct pcall **slots;     /* index = (id & 0xffffffff) - 1 */
    uint32_t *gens;
    uint32_t *free;
    size_t cap, nfree, live;
};

/* ---- pending calls ------------------------------------------------------- */

static void on_cancel(void *arg, struct rpc_call *call);

static struct pcall *pending_add(struct ingress *in, struct rpc_call *call)
{
    struct pcall *pc = malloc(sizeof *pc);
    uint32_t idx;

    if (!pc) abort();
    if (in->nfree == 0) {
        size_t cap = in->cap ? in->cap * 2 : 1024;
        struct pcall **sl = realloc(in->slots, cap * sizeof *sl);
        uint32_t *g, *f;
        if (!sl) abort();
        in->slots = sl;
        g = realloc(in->gens, cap * sizeof *g);
        if (!g) abort();
        in->gens = g;
        f = realloc(in->free, cap * sizeof *f);
        if (!f) abort();
        in->free = f;
        for (size_t i = cap; i > in->cap; i--) {
            in->slots[i - 1] = NULL;
            in->gens[i - 1] = 0;
            in->free[in->nfree++] = (uint32_t)(i - 1);
        }
        in->cap = cap;
    }
    idx = in->free[--in->nfree];
    in->gens[idx]++;
    pc->in = in;
    pc->call = call;
    pc->id = ((uint64_t)in->gens[idx] << 32) | (idx + 1);
    in->slots[idx] = pc;
    in->live++;
    rpc_call_set_cancel(call, on_cancel, pc);
    return pc;
}

/* Detaches the pending call `id`; returns it (caller frees) or NULL. */
static struct pcall *pending_take(struct ingress *in, uint64_t id)
{
    uint64_t idx = (id & 0xffffffffu);
    struct pcall *pc;
    if (idx == 0 || idx > in->cap) return NULL;
    pc = in->slots[idx - 1];
    if (!pc || pc->id != id) return NULL;
    in->slots[idx - 1] = NULL;
    in->free[in->nfree++] = (uint32_t)(idx - 1);
    in->live--;
    return pc;
}

static void on_cancel(void *arg, struct rpc_call *call)
{
    struct pcall *pc = arg;
    (void)call;
    free(pending_take(pc->in, pc->id));
}

void ingress_complete(struct ingress *in, uint64_t call_id, const char *typename,
                      const uint8_t *data, size_t len)
{
    struct pcall *pc = pending_take(in, call_id);
    if (!pc) return;                      /* the client went away */
    if (typename) {
        Statemesh__V1__CallResponse r = STATEMESH__V1__CALL_RESPONSE__INIT;
        Statemesh__V1__TypedValue v = STATEMESH__V1__TYPED_VALUE__INIT;
        v.typename_ = (char *)typename;
        v.value.data = (uint8_t *)data;
        v.value.len = len;
        r.reply = &v;
        rpc_call_reply(pc->call, &r.base);
    } else {
        Statemesh__V1__SendResponse r = STATEMESH__V1__SEND_RESPONSE__INIT;
        rpc_call_reply(pc->call, &r.base);
    }
    free(pc);
}

size_t ingress_pending(const struct ingress *in) { return in->live; }

/* ---- Send / Call ----------------------------------------------------------- */

/* protobuf-c hands strings over NUL-terminated, so an id with an embedded NUL
 * would silently shrink to its prefix and address someone else. This walks
 * the raw bytes for the last length-delimited `field` and returns its body. */
static int wire_field(const uint8_t *p, size_t n, uint32_t field, const uint8_t **body,
                      size_t *blen)
{
    int found = 0;
    size_t i = 0;
    while (i < n) {
        uint64_t key = 0, v = 0;
        int shift = 0;
        while (i < n && shift < 64) {              /* key varint */
            key |= (uint64_t)(p[i] & 0x7f) << shift;
            shift += 7;
            if (!(p[i++] & 0x80)) break;
        }
        switch (key & 7) {
        case 0:
            while (i < n && (p[i++] & 0x80)) ;
            break;
        case 1: i += 8; break;
        case 5: i += 4; break;
        case 2:
            shift = 0;
            while (i < n && shift < 64) {
                v |= (uint64_t)(p[i] & 0x7f) << shift;
                shift += 7;
                if (!(p[i++] & 0x80)) break;
            }
            if (v > n - i) return 0;
            if ((key >> 3) == field) {
                *body = p + i;
                *blen = (size_t)v;
                found = 1;
            }
            i += (size_t)v;
            break;
        default:
            return 0;
        }
    }
    return found;
}

/* 1 if the address (field `addr_field` of the raw request) holds a type or id
 * longer than its C string, i.e. one with a NUL byte. */
static int address_has_nul(const uint8_t *req, size_t len, uint32_t addr_field,
                           const Statemesh__V1__Address *t)
{
    const uint8_t *a, *f;
    size_t alen, flen;
    if (!t || !wire_field(req, len, addr_field, &a, &alen)) return 0;
    if (wire_field(a, alen, 1, &f, &flen) && flen != strlen(t->type)) return 1;
    if (wire_field(a, alen, 2, &f, &flen) && flen != strlen(t->id)) return 1;
    return 0;
}

/* Validates an incoming message. Returns the endpoint, or NULL after
 * answering the call with a precise error. */
static struct endpoint *check_message(struct server *s, struct rpc_call *call,
                                      const Statemesh__V1__Address *t,
                                      const Statemesh__V1__TypedValue *a)
{
    const char *e;
    int idx;

    if (!t) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "target address is missing");
        return NULL;
    }
    if ((e = addr_check_type(t->type, strlen(t->type))) != NULL ||
        (e = addr_check_id(t->id, strlen(t->id))) != NULL) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "invalid target address: %s", e);
        return NULL;
    }
    if (!a) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "argument is missing");
        return NULL;
    }
    if (!a->typename_[0] || strlen(a->typename_) > 256) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "argument typename must be 1..256 bytes");
        return NULL;
    }
    if (a->value.len > s->cfg.max_message_bytes) {
        rpc_call_error(call, RPC_RESOURCE_EXHAUSTED,
                       "argument is %zu bytes, over the limit of %zu (runtime.max_message_bytes)",
                       a->value.len, s->cfg.max_message_bytes);
        return NULL;
    }
    idx = cfg_match_endpoint(&s->cfg, t->type);
    if (idx < 0) {
        rpc_call_error(call, RPC_NOT_FOUND, "no endpoint serves function type %s", t->type);
        return NULL;
    }
    if (ep_rejects_type(&s->endpoints[idx], t->type)) {
        rpc_call_error(call, RPC_NOT_FOUND, "function type %s is not served by endpoint %s",
                       t->type, s->endpoints[idx].cfg->target);
        return NULL;
    }
    return &s->endpoints[idx];
}

static void accept_message(struct ingress *in, struct rpc_call *call, const uint8_t *req,
                           size_t len, const Statemesh__V1__Address *t,
                           const Statemesh__V1__TypedValue *a, int is_call)
{
    struct server *s = in->s;
    struct endpoint *ep;
    struct pcall *pc;
    struct msg *m;

    if (s->stopping) {
        rpc_call_error(call, RPC_UNAVAILABLE, "statemeshd is shutting down");
        return;
    }
    if (address_has_nul(req, len, 1, t)) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "invalid target address: type or id contains a NUL byte");
        return;
    }
    if ((ep = check_message(s, call, t, a)) == NULL) return;
    m = msg_create(NULL, NULL, a->typename_, a->value.data, a->value.len);
    pc = pending_add(in, call);
    if (is_call) m->call_id = pc->id;
    else ckpt_add_ack(&s->ckpt, pc->id);
    disp_accept(s, ep, t->type, t->id, m);
    s->stats.messages_received++;
}

static void on_send(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    struct ingress *in = arg;
    Statemesh__V1__SendRequest *r = statemesh__v1__send_request__unpack(NULL, len, req);
    if (!r) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "request is not a valid SendRequest");
        return;
    }
    accept_message(in, call, req, len, r->target, r->argument, 0);
    statemesh__v1__send_request__free_unpacked(r, NULL);
}

static void on_call(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    struct ingress *in = arg;
    Statemesh__V1__CallRequest *r = statemesh__v1__call_request__unpack(NULL, len, req);
    if (!r) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "request is not a valid CallRequest");
        return;
    }
    accept_message(in, call, req, len, r->target, r->argument, 1);
    statemesh__v1__call_request__free_unpacked(r, NULL);
}

/* ---- Admin ------------------------------------------------------------------ */

struct state_list {
    Statemesh__V1__StateValue **v;
    Statemesh__V1__StoredState **stored;
    size_t n, cap;
    int corrupt;
};

static int collect_state(void *arg, const char *name, const uint8_t *val, size_t len)
{
    struct state_list *l = arg;
    Statemesh__V1__StoredState *st = statemesh__v1__stored_state__unpack(NULL, len, val);
    Statemesh__V1__StateValue *sv;
    if (!st) {
        l->corrupt = 1;
        return 0;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        void *a = realloc(l->v, cap * sizeof *l->v), *b;
        if (!a) abort();
        l->v = a;
        b = realloc(l->stored, cap * sizeof *l->stored);
        if (!b) abort();
        l->stored = b;
        l->cap = cap;
    }
    sv = malloc(sizeof *sv);
    if (!sv) abort();
    statemesh__v1__state_value__init(sv);
    sv->name = strdup(name);
    sv->value = st->value;
    l->v[l->n] = sv;
    l->stored[l->n] = st;
    l->n++;
    return 0;
}

static void on_get_state(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    struct ingress *in = arg;
    struct server *s = in->s;
    Statemesh__V1__GetStateRequest *r = statemesh__v1__get_state_request__unpack(NULL, len, req);
    Statemesh__V1__GetStateResponse resp = STATEMESH__V1__GET_STATE_RESPONSE__INIT;
    struct state_list l = {0};
    const char *e;
    struct mbox *mb;
    int rc = 0;

    if (!r) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "request is not a valid GetStateRequest");
        return;
    }
    if (!r->address) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "address is missing");
        goto out;
    }
    if (address_has_nul(req, len, 1, r->address)) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "type or id contains a NUL byte");
        goto out;
    }
    if ((e = addr_check_type(r->address->type, strlen(r->address->type))) ||
        (e = addr_check_id(r->address->id, strlen(r->address->id))) ||
        (r->name[0] && (e = addr_check_state_name(r->name, strlen(r->name))))) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "%s", e);
        goto out;
    }
    if (r->name[0]) {
        uint8_t *val;
        size_t vlen;
        rc = store_get_state(s->store, r->address->type, r->address->id, r->name, &val, &vlen);
        if (rc == 0) {
            collect_state(&l, r->name, val, vlen);
            free(val);
        }
    } else {
        rc = store_scan_states(s->store, r->address->type, r->address->id, collect_state, &l);
    }
    if (rc < 0 || l.corrupt) {
        rpc_call_error(call, RPC_INTERNAL, "cannot read state from the store (see the runtime log)");
        goto out;
    }
    resp.n_values = l.n;
    resp.values = l.v;
    mb = mbox_find(&s->mboxes, r->address->type, r->address->id);
    if (mb) {
        resp.queued_messages = mb->nqueued + mb->nbatch;
        resp.in_flight = mb->state == MBOX_INFLIGHT;
    }
    rpc_call_reply(call, &resp.base);
out:
    for (size_t i = 0; i < l.n; i++) {
        free(l.v[i]->name);
        free(l.v[i]);
        statemesh__v1__stored_state__free_unpacked(l.stored[i], NULL);
    }
    free(l.v);
    free(l.stored);
    statemesh__v1__get_state_request__free_unpacked(r, NULL);
}

static void on_stats(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    struct ingress *in = arg;
    struct server *s = in->s;
    const struct stats *st = &s->stats;
    int64_t up = 0;
    struct { const char *name; int64_t value; } rows[24];
    Statemesh__V1__Stat stats[24], *sp[24];
    Statemesh__V1__StatsResponse resp = STATEMESH__V1__STATS_RESPONSE__INIT;
    size_t n = 0;
    (void)req;
    (void)len;

    for (size_t i = 0; i < s->n_endpoints; i++) up += s->endpoints[i].state == EP_UP;
#define ROW(k, v) rows[n].name = (k), rows[n].value = (int64_t)(v), n++
    ROW("messages_received", st->messages_received);
    ROW("messages_produced", st->messages_produced);
    ROW("messages_delivered", st->messages_delivered);
    ROW("queued_messages", st->queued_messages);
    ROW("recovered_messages", st->recovered_messages);
    ROW("batches_sent", st->batches_sent);
    ROW("batches_failed", st->batches_failed);
    ROW("batches_incomplete", st->batches_incomplete);
    ROW("batches_resent", st->batches_resent);
    ROW("invalid_results", st->invalid_results);
    ROW("replies", st->replies);
    ROW("checkpoints", st->checkpoints);
    ROW("checkpoint_ops", st->checkpoint_ops);
    ROW("active_addresses", s->mboxes.count);
    ROW("pending_calls", in->live);
    ROW("endpoints", s->n_endpoints);
    ROW("endpoints_up", up);
#undef ROW
    for (size_t i = 0; i < n; i++) {
        statemesh__v1__stat__init(&stats[i]);
        stats[i].name = (char *)rows[i].name;
        stats[i].value = rows[i].value;
        sp[i] = &stats[i];
    }
    resp.n_stats = n;
    resp.stats = sp;
    rpc_call_reply(call, &resp.base);
}

static void on_health(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    struct ingress *in = arg;
    Grpc__Health__V1__HealthCheckRequest *r = grpc__health__v1__health_check_request__unpack(NULL, len, req);
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

    if (!r) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "request is not a valid HealthCheckRequest");
        return;
    }
    if (r->service[0] && strcmp(r->service, "statemesh.v1.Ingress") != 0 &&
        strcmp(r->service, "statemesh.v1.Admin") != 0) {
        rpc_call_error(call, RPC_NOT_FOUND, "unknown service %s", r->service);
    } else {
        resp.status = in->s->stopping ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
                                      : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        rpc_call_reply(call, &resp.base);
    }
    grpc__health__v1__health_check_request__free_unpacked(r, NULL);
}

/* ---- lifecycle -------------------------------------------------------------- */

int ingress_create(struct ingress **out, struct server *s)
{
    struct ingress *in = calloc(1, sizeof *in);
    struct rpc_server_options opt;

    if (!in) return -1;
    in->s = s;
    opt.max_receive_bytes = s->cfg.max_message_bytes + REQUEST_OVERHEAD;
    if (rpc_server_create(&in->rpc, &s->loop, &opt) != 0 ||
        rpc_server_add_unary(in->rpc, "/statemesh.v1.Ingress/Send", on_send, in) != 0 ||
        rpc_server_add_unary(in->rpc, "/statemesh.v1.Ingress/Call", on_call, in) != 0 ||
        rpc_server_add_unary(in->rpc, "/statemesh.v1.Admin/GetState", on_get_state, in) != 0 ||
        rpc_server_add_unary(in->rpc, "/statemesh.v1.Admin/Stats", on_stats, in) != 0 ||
        rpc_server_add_unary(in->rpc, "/grpc.health.v1.Health/Check", on_health, in) != 0) {
        ingress_destroy(&in);
        return -1;
    }
    *out = in;
    return 0;
}

int ingress_start(struct ingress *in, const char *addr)
{
    return rpc_server_start(in->rpc, addr);
}

void ingress_shutdown(struct ingress *in) { rpc_server_shutdown(in->rpc); }
void ingress_cancel_all(struct ingress *in) { rpc_server_cancel_all(in->rpc); }
int ingress_done(const struct ingress *in) { return rpc_server_done(in->rpc); }

void ingress_destroy(struct ingress **inp)
{
    struct ingress *in = *inp;
    if (!in) return;
    for (size_t i = 0; i < in->cap; i++) free(in->slots[i]);
    free(in->slots);
    free(in->gens);
    free(in->free);
    if (in->rpc) rpc_server_destroy(&in->rpc);
    free(in);
    *inp = NULL;
}
