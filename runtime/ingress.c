/* ingress — see ingress.h. */
#include "ingress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>

#include "address.h"
#include "admin.h"
#include "dispatch.h"
#include "statemesh/v1/ingress.pb-c.h"
#include "rpc.h"
#include "wire.h"
#include "server.h"
#include "statemesh/v1/storage.pb-c.h"

/* Room for the address and framing around a max-size argument. */
#define REQUEST_OVERHEAD (64u << 10)
/* Memory gRPC may hold for received, not yet consumed bytes of the ingress:
 * at least this, and at least INGRESS_QUOTA_MESSAGES max-size requests. */
#define INGRESS_QUOTA_MIN ((size_t)64 << 20)
#define INGRESS_QUOTA_MESSAGES 4
/* How often freed heap pages go back to the system (malloc_trim), at most,
 * once this much of the heap is free. */
#define TRIM_INTERVAL_MS 1000
#define TRIM_MIN_FREE ((size_t)8 << 20)

struct pcall {
    struct ingress *in;
    struct rpc_call *call;
    uint64_t id;
    struct timer deadline;     /* Call: answers DEADLINE_EXCEEDED just before gRPC does */
    int64_t timeout_ms;        /* the client's deadline as it arrived, for the message */
};

/* A Call is answered this long before its client's deadline, so the client
 * sees the runtime's explanation rather than gRPC's bare "Deadline Exceeded". */
#define CALL_DEADLINE_MARGIN_MS 50

struct sstream;

struct ingress {
    struct server *s;
    struct rpc_server *rpc;
    struct rpc_server *admin_rpc; /* runtime.admin: Admin's own listener, else NULL */
    struct sstream *streams;  /* open SendStream calls */
    struct pcall **slots;     /* index = (id & 0xffffffff) - 1 */
    uint32_t *gens;
    uint32_t *free;
    size_t cap, nfree, live;
    /* A stream reads while it carries fewer than read_limit messages: its
     * share of STREAM_QUEUE_MS of deliveries at the rate measured over the
     * last STREAM_RATE_WINDOW_MS, at least STREAM_QUEUE_MIN. */
    int64_t read_limit;
    int64_t rate_since_ms, rate_delivered;
    /* SendStream requests are decoded into this arena and dropped whole:
     * no malloc/free per message field. */
    sm_arena *arena;
    int64_t last_trim_ms;
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
    timer_init(&pc->deadline, NULL, pc);
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
    if (timer_armed(&pc->deadline)) timer_stop(&in->s->timers, &pc->deadline);
    return pc;
}

static void on_call_deadline(void *arg)
{
    struct pcall *pc = arg;
    struct ingress *in = pc->in;
    struct rpc_call *call = pc->call;
    long long ms = (long long)pc->timeout_ms;
    free(pending_take(in, pc->id));
    rpc_call_error(call, RPC_DEADLINE_EXCEEDED, "no reply within %lld ms; the message is durable "
                   "and will still be processed (retry with --idempotency-key to apply it once)",
                   ms);
}

/* Arms the deadline answer of a pending Call. */
static void call_deadline_start(struct ingress *in, struct pcall *pc)
{
    int64_t left = rpc_call_deadline_ms(pc->call), margin;
    if (left == INT64_MAX) return;
    margin = left / 10 < CALL_DEADLINE_MARGIN_MS ? left / 10 : CALL_DEADLINE_MARGIN_MS;
    pc->timeout_ms = left >= 1000 ? (left + 9) / 10 * 10 : left;   /* 9996 ms left: "10000" */
    pc->deadline.fn = on_call_deadline;
    timer_start(&in->s->timers, &pc->deadline, rpc_now_ms() + left - margin);
}

static void on_cancel(void *arg, struct rpc_call *call)
{
    struct pcall *pc = arg;
    (void)call;
    free(pending_take(pc->in, pc->id));
}

void ingress_complete(struct ingress *in, const struct ckpt_ack *a)
{
    struct pcall *pc = pending_take(in, a->call_id);
    if (!pc) return;                      /* the client went away */
    switch (a->kind) {
    case CKPT_ACK_REPLY: {
        Statemesh__V1__CallResponse r = STATEMESH__V1__CALL_RESPONSE__INIT;
        Statemesh__V1__TypedValue v = STATEMESH__V1__TYPED_VALUE__INIT;
        v.typename_ = a->typename;
        v.value.data = a->data;
        v.value.len = a->len;
        r.reply = &v;
        rpc_call_reply(pc->call, &r.base);
        break;
    }
    case CKPT_ACK_RAW: {
        uint8_t *copy = malloc(a->len ? a->len : 1);
        if (!copy) abort();
        if (a->len) memcpy(copy, a->data, a->len);
        rpc_call_reply_raw(pc->call, copy, a->len);
        break;
    }
    case CKPT_ACK_ERROR:
        rpc_call_error(pc->call, a->code, "%s", (const char *)a->data);
        break;
    default: {
        Statemesh__V1__SendResponse r = STATEMESH__V1__SEND_RESPONSE__INIT;
        rpc_call_reply(pc->call, &r.base);
        break;
    }
    }
    free(pc);
}

uint64_t ingress_hold(struct ingress *in, struct rpc_call *call)
{
    return pending_add(in, call)->id;
}

size_t ingress_pending(const struct ingress *in) { return in->live; }

/* ---- Send / Call ----------------------------------------------------------- */

/* One message entering through the ingress, whatever the method. */
struct inmsg {
    const Statemesh__V1__Address *target;
    const Statemesh__V1__TypedValue *arg;
    const char *key;           /* idempotency key; "" none */
    uint64_t delay_ms;
    int is_call;
    const char *bad_string;    /* a string field is not UTF-8 or holds a NUL: why */
    const char *method;        /* unary: the method and request, to forward (forward.h) */
    const uint8_t *req;
    size_t len;
};

/* Validates an incoming message. Returns its endpoint, or NULL with a status
 * code and a precise message in `why`. */
static struct endpoint *check_message(struct server *s, const struct inmsg *im, int *code,
                                      char *why, size_t whylen)
{
    const Statemesh__V1__Address *t = im->target;
    const Statemesh__V1__TypedValue *a = im->arg;
    const char *e;
    int idx;

    *code = RPC_INVALID_ARGUMENT;
    if (s->stopping) {
        *code = RPC_UNAVAILABLE;
        snprintf(why, whylen, "statemeshd is shutting down");
        return NULL;
    }
    if (!t) {
        snprintf(why, whylen, "target address is missing");
        return NULL;
    }
    if (im->bad_string) {
        snprintf(why, whylen, "invalid request: %s", im->bad_string);
        return NULL;
    }
    if ((e = addr_check_type(t->type, strlen(t->type))) != NULL ||
        (e = addr_check_id(t->id, strlen(t->id))) != NULL) {
        snprintf(why, whylen, "invalid target address: %s", e);
        return NULL;
    }
    if (!a) {
        snprintf(why, whylen, "argument is missing");
        return NULL;
    }
    if (!a->typename_[0] || strlen(a->typename_) > 256) {
        snprintf(why, whylen, "argument typename must be 1..256 bytes");
        return NULL;
    }
    if (strlen(im->key) > IDEM_KEY_MAX) {
        snprintf(why, whylen, "idempotency key is %zu bytes, over the limit of %d",
                 strlen(im->key), IDEM_KEY_MAX);
        return NULL;
    }
    if (im->delay_ms > (uint64_t)DELAYED_MAX_MS) {
        snprintf(why, whylen, "delay_ms %llu is over the maximum of 365 days",
                 (unsigned long long)im->delay_ms);
        return NULL;
    }
    if (a->value.len > s->cfg.max_message_bytes) {
        *code = RPC_RESOURCE_EXHAUSTED;
        snprintf(why, whylen, "argument is %zu bytes, over the limit of %zu (runtime.max_message_bytes)",
                 a->value.len, s->cfg.max_message_bytes);
        return NULL;
    }
    idx = cfg_match_endpoint(&s->cfg, t->type);
    if (idx < 0) {
        *code = RPC_NOT_FOUND;
        snprintf(why, whylen, "no endpoint serves function type %s", t->type);
        return NULL;
    }
    if (ep_rejects_type(&s->endpoints[idx], t->type)) {
        *code = RPC_NOT_FOUND;
        snprintf(why, whylen, "function type %s is not served by endpoint %s", t->type,
                 s->endpoints[idx].cfg->target ? s->endpoints[idx].cfg->target : "(embedded)");
        return NULL;
    }
    if (s->cluster) {              /* docs/cluster.md: only the owner, while not fenced */
        uint16_t kg = store_key_group(t->type, t->id);
        if (!cluster_serves(s->cluster, kg)) {
            *code = RPC_UNAVAILABLE;
            cluster_explain(s->cluster, kg, why, whylen);
            return NULL;
        }
    }
    return &s->endpoints[idx];
}

/* 1 when queued messages (and the per-address queues that hold them) use
 * all the memory the config allows. */
static int overloaded(const struct server *s)
{
    return s->stats.queued_bytes + (int64_t)s->mboxes.bytes >= (int64_t)s->cfg.max_queued_bytes;
}

/* Accepts a validated message into the open checkpoint: queued, or stored
 * as delayed. call_id: the pending Call (reply) or 0.
 * src/src_seq: the SendStream and seq of the message (NULL/0 for unary
 * calls); it may then be carried across checkpoints (checkpoint.h). */
static void admit(struct server *s, struct endpoint *ep, const struct inmsg *im, uint64_t call_id,
                  struct ckpt_source *src, uint64_t src_seq)
{
    if (im->key[0]) idem_remember(s, im->target->type, im->target->id, im->key, im->is_call);
    if (im->delay_ms) {
        delayed_add(s, timer_wall_ms() + (int64_t)im->delay_ms, NULL, NULL, NULL,
                    im->target->type, im->target->id, im->arg);
    } else {
        char *rk = im->is_call && im->key[0] ? idem_reply_key(im->target->type, im->target->id,
                                                              im->key)
                                             : NULL;
        struct msg *m = msg_create(NULL, NULL, im->arg->typename_, im->arg->value.data,
                                   im->arg->value.len, rk);
        free(rk);
        m->call_id = call_id;
        if (!im->key[0]) {         /* a key's record must not outlive a lost message */
            m->src = src;
            m->src_seq = src_seq;
        }
        disp_accept(s, ep, im->target->type, im->target->id, m);
    }
    s->stats.messages_received++;
}

static void accept_unary(struct ingress *in, struct rpc_call *call, const struct inmsg *im)
{
    struct server *s = in->s;
    struct endpoint *ep;
    struct pcall *pc;
    char why[600];
    int code;

    if ((ep = check_message(s, im, &code, why, sizeof why)) == NULL) {
        /* Not served here: forwarded to the owner, or refused naming it (forward.h). */
        if (code == RPC_UNAVAILABLE && s->cluster && im->target && !s->stopping &&
            fwd_unary(s, call, im->method, im->req, im->len, im->target->type, im->target->id))
            return;
        rpc_call_error(call, code, "%s", why);
        return;
    }
    if (s->cluster && fwd_unary(s, call, im->method, im->req, im->len, im->target->type,
                                im->target->id))
        return;                    /* served here: this adds the owner to the answer */
    pc = pending_add(in, call);
    if (im->key[0]) {
        switch (idem_check(s, im->target->type, im->target->id, im->key, im->is_call, pc->id)) {
        case IDEM_NEW: break;
        case IDEM_DUPLICATE:                     /* ack or reply arranged */
            if (im->is_call) call_deadline_start(in, pc);
            return;
        case IDEM_CONFLICT:
            free(pending_take(in, pc->id));
            rpc_call_error(call, RPC_ALREADY_EXISTS,
                           "idempotency key was already used by a Send, which has no reply");
            return;
        default:
            free(pending_take(in, pc->id));
            rpc_call_error(call, RPC_INTERNAL, "cannot read idempotency records (see the runtime log)");
            return;
        }
    }
    if (overloaded(s)) {
        free(pending_take(in, pc->id));
        s->stats.rejected_overloaded++;
        rpc_call_error(call, RPC_RESOURCE_EXHAUSTED,
                       "runtime queues are full (%lld bytes queued, runtime.max_queued_bytes = %zu); "
                       "retry later", (long long)s->stats.queued_bytes + (long long)s->mboxes.bytes,
                       s->cfg.max_queued_bytes);
        return;
    }
    if (!im->is_call || im->delay_ms) ckpt_add_ack(&s->ckpt, pc->id);
    else call_deadline_start(in, pc);
    admit(s, ep, im, im->is_call ? pc->id : 0, NULL, 0);
}

/* A Send or Call request; desc is its message type (for the string check). */
static void accept_request(struct ingress *in, struct rpc_call *call,
                           const ProtobufCMessageDescriptor *desc, const uint8_t *req,
                           size_t len, const Statemesh__V1__Address *t,
                           const Statemesh__V1__TypedValue *a, const char *key, uint64_t delay_ms,
                           int is_call)
{
    struct inmsg im;
    char bad[300];
    im.target = t;
    im.arg = a;
    im.key = key;
    im.delay_ms = delay_ms;
    im.is_call = is_call;
    im.bad_string = wire_check_strings(desc, req, len, bad, sizeof bad) ? bad : NULL;
    im.method = is_call ? "/statemesh.v1.Ingress/Call" : "/statemesh.v1.Ingress/Send";
    im.req = req;
    im.len = len;
    accept_unary(in, call, &im);
}

/* With runtime.tls and log_level = debug: who made the call or opened the
 * stream (rpc.h's peer identity, the hook authorisation uses). */
static int peer_logged(const struct ingress *in)
{
    return in->s->tls && in->s->log.level <= LOG_LEVEL_DEBUG;
}

static void log_peer(const struct ingress *in, const char *method, const char *id,
                     const char *subject)
{
    char q1[600], q2[600];
    LOG_DEBUG(&in->s->log, "ingress.peer", "method=%s identity=%s subject=%s", method,
              log_quote(q1, sizeof q1, id), log_quote(q2, sizeof q2, subject));
}

static void log_call_peer(const struct ingress *in, const struct rpc_call *call, const char *method)
{
    char id[512], subject[512];
    if (!peer_logged(in)) return;
    rpc_call_peer_identity(call, id, sizeof id);
    rpc_call_peer_subject(call, subject, sizeof subject);
    log_peer(in, method, id, subject);
}

static void on_send(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    Statemesh__V1__SendRequest *r = statemesh__v1__send_request__unpack(NULL, len, req);
    log_call_peer(arg, call, "Send");
    if (!r) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "request is not a valid SendRequest");
        return;
    }
    accept_request(arg, call, &statemesh__v1__send_request__descriptor, req, len, r->target,
                   r->argument, r->idempotency_key, r->delay_ms, 0);
    statemesh__v1__send_request__free_unpacked(r, NULL);
}

static void on_call(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    Statemesh__V1__CallRequest *r = statemesh__v1__call_request__unpack(NULL, len, req);
    log_call_peer(arg, call, "Call");
    if (!r) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "request is not a valid CallRequest");
        return;
    }
    accept_request(arg, call, &statemesh__v1__call_request__descriptor, req, len, r->target,
                   r->argument, r->idempotency_key, 0, 1);
    statemesh__v1__call_request__free_unpacked(r, NULL);
}

/* ---- SendStream ------------------------------------------------------------------
 *
 * Flow control: a stream reads its next request only while it has fewer
 * than STREAM_WINDOW messages not yet durable (received since the last
 * checkpoint, or carried), the runtime's queues are under max_queued_bytes,
 * and it carries fewer messages than the runtime delivers in about
 * STREAM_QUEUE_MS (read_limit, shared by the open streams); otherwise it
 * stops reading and gRPC's window pushes back on the client. The last bound
 * keeps a client that outruns the functions from building a backlog that
 * waits past CKPT_CARRY_MAX_MS: its messages are then consumed while still
 * carried and never touch LevelDB (a backlog costs three writes per message:
 * M put, state, M delete; a carried message one). Messages that stop being
 * carried (a stalled function server) no longer count, so a stream still
 * fills the runtime's queue, durably, up to max_queued_bytes. After every checkpoint each stream gets committed_through =
 * the seq before its first carried message (checkpoint.h), or the last seq
 * it had received before the write when none is carried.
 */
#define STREAM_WINDOW 65536
#define STREAM_QUEUE_MIN 16384
#define STREAM_QUEUE_MS (CKPT_CARRY_MAX_MS / 2)
#define STREAM_RATE_WINDOW_MS 100

struct serr {
    uint64_t seq;
    int code;
    char *msg;
};

struct sstream {
    struct ingress *in;
    struct rpc_scall *c;
    struct sstream *prev, *next;
    uint64_t last_seq;         /* highest seq received */
    uint64_t durable;          /* seqs <= durable are committed or rejected */
    uint64_t acked;            /* committed_through last sent */
    uint64_t waiting;          /* messages received since the last checkpoint */
    struct ckpt_source src;    /* its carried messages */
    struct serr *errs;
    size_t nerrs, cap;
    unsigned half_closed : 1;
    unsigned forwarded_in : 1; /* came from another node: never forwarded again */
    uint64_t local_durable;    /* what this node's checkpoints cover (durable: also the owners') */
    struct fwd_stream **routes;   /* forwarded streams, one per owner node (forward.h) */
    size_t nroutes;
};

static void stream_free(struct sstream *st)
{
    struct ingress *in = st->in;
    if (st->prev) st->prev->next = st->next;
    else in->streams = st->next;
    if (st->next) st->next->prev = st->prev;
    for (size_t i = 0; i < st->nerrs; i++) free(st->errs[i].msg);
    free(st->errs);
    for (size_t i = 0; i < st->nroutes; i++) fwd_stream_close(st->routes[i]);
    free(st->routes);
    ckpt_source_detach(&in->s->ckpt, &st->src);
    in->s->stats.send_streams--;
    free(st);
}

static void stream_end(struct sstream *st, int code, const char *msg)
{
    rpc_scall_finish(st->c, code, "%s", msg);
    stream_free(st);
}

static void stream_error(struct sstream *st, uint64_t seq, int code, const char *msg)
{
    if (st->nerrs == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 8;
        struct serr *e = realloc(st->errs, cap * sizeof *e);
        if (!e) abort();
        st->errs = e;
        st->cap = cap;
    }
    st->errs[st->nerrs].seq = seq;
    st->errs[st->nerrs].code = code;
    st->errs[st->nerrs].msg = strdup(msg);
    if (!st->errs[st->nerrs].msg) abort();
    st->nerrs++;
}

/* Messages sent to owner nodes and not acknowledged by them yet. */
static uint64_t routed_pending(const struct sstream *st)
{
    uint64_t n = 0;
    for (size_t i = 0; i < st->nroutes; i++) n += fwd_stream_pending(st->routes[i]);
    return n;
}

/* committed_through: what this node committed, and below the first message
 * an owner has not acknowledged. */
static void stream_update_durable(struct sstream *st)
{
    uint64_t d = st->local_durable;
    for (size_t i = 0; i < st->nroutes; i++) {
        uint64_t first = fwd_stream_first_pending(st->routes[i]);
        if (first && first - 1 < d) d = first - 1;
    }
    if (d > st->durable) st->durable = d;
}

static int stream_progress(struct sstream *st);

static void route_on_ack(void *arg, struct fwd_stream *fs)
{
    struct sstream *st = arg;
    (void)fs;
    stream_update_durable(st);
    stream_progress(st);
}

static void route_on_error(void *arg, uint64_t seq, int code, const char *msg)
{
    stream_error(arg, seq, code, msg);
}

static void route_on_closed(void *arg, struct fwd_stream *fs, size_t pending, int code,
                            const char *why)
{
    struct sstream *st = arg;
    char msg[900];
    size_t i;

    for (i = 0; i < st->nroutes && st->routes[i] != fs; i++)
        ;
    if (i < st->nroutes) st->routes[i] = st->routes[--st->nroutes];
    (void)code;
    if (!pending) {
        stream_progress(st);
        return;
    }
    /* Messages whose fate is unknown: end the stream; the client re-sends
     * what is above committed_through (ingress.proto). */
    snprintf(msg, sizeof msg, "%s; every message up to seq %llu is committed, re-send the rest",
             why, (unsigned long long)st->acked);
    stream_end(st, RPC_UNAVAILABLE, msg);
}

/* The forwarded stream to the owner of `t`, opened on first use; NULL with
 * why set when the message cannot be forwarded (owner down, unknown, this
 * node fenced, the stream itself forwarded). */
static struct fwd_stream *stream_route(struct sstream *st, const Statemesh__V1__Address *t,
                                       char *why, size_t whylen)
{
    static const struct fwd_stream_callbacks cb = {route_on_ack, route_on_error,
                                                   route_on_closed};
    struct server *s = st->in->s;
    struct cluster_owner o = {0};
    struct fwd_stream *fs, **r;

    cluster_owner(s->cluster, store_key_group(t->type, t->id), &o);
    if (st->forwarded_in || !o.node_id || !o.alive || !o.advertise[0] ||
        strcmp(o.node_id, cluster_node_id(s->cluster)) == 0)
        return NULL;
    for (size_t i = 0; i < st->nroutes; i++)
        if (strcmp(fwd_stream_node(st->routes[i]), o.node_id) == 0) return st->routes[i];
    if (!(fs = fwd_stream_open(s, o.node_id, o.advertise, st->c, &cb, st, why, whylen)))
        return NULL;
    r = realloc(st->routes, (st->nroutes + 1) * sizeof *r);
    if (!r) abort();
    st->routes = r;
    st->routes[st->nroutes++] = fs;
    return fs;
}

/* Sends acks and errors, ends the stream when it is done, reads when there
 * is room. Returns 0, or 1 if the stream is gone. */
static int stream_progress(struct sstream *st)
{
    struct server *s = st->in->s;

    if (!rpc_scall_writable(st->c)) return 0;            /* on_writable comes back */
    if (st->nerrs || st->durable > st->acked) {
        Statemesh__V1__SendStreamResponse r = STATEMESH__V1__SEND_STREAM_RESPONSE__INIT;
        Statemesh__V1__StreamError *e = calloc(st->nerrs + 1, sizeof *e);
        Statemesh__V1__StreamError **ep = calloc(st->nerrs + 1, sizeof *ep);
        uint8_t *buf;
        size_t len;
        if (!e || !ep) abort();
        for (size_t i = 0; i < st->nerrs; i++) {
            statemesh__v1__stream_error__init(&e[i]);
            e[i].seq = st->errs[i].seq;
            e[i].code = st->errs[i].code;
            e[i].message = st->errs[i].msg;
            ep[i] = &e[i];
        }
        r.committed_through = st->durable;
        r.n_errors = st->nerrs;
        r.errors = ep;
        buf = rpc_pack(&r.base, &len);
        for (size_t i = 0; i < st->nerrs; i++) free(st->errs[i].msg);
        st->nerrs = 0;
        free(e);
        free(ep);
        st->acked = st->durable;
        rpc_scall_send(st->c, buf, len);
        return 0;
    }
    if (st->acked == st->last_seq && (st->half_closed || s->stopping)) {
        char msg[160] = "";
        if (!st->half_closed)
            snprintf(msg, sizeof msg, "statemeshd is shutting down; every message up to seq %llu "
                     "is committed", (unsigned long long)st->acked);
        stream_end(st, st->half_closed ? RPC_OK : RPC_UNAVAILABLE, msg);
        return 1;
    }
    if (!st->half_closed && !s->stopping &&
        st->waiting + st->src.n + routed_pending(st) < STREAM_WINDOW &&
        (int64_t)st->src.n < st->in->read_limit &&
        !overloaded(s))
        rpc_scall_read(st->c);
    return 0;
}

static void stream_on_message(void *arg, struct rpc_scall *c, const uint8_t *data, size_t len)
{
    struct sstream *st = arg;
    struct server *s = st->in->s;
    ProtobufCAllocator pba = wire_arena_allocator(st->in->arena);
    Statemesh__V1__SendStreamRequest *r;
    size_t pos = 0, k = 0;
    uint32_t field;
    const uint8_t *body;
    size_t blen;
    char why[600], bad[300];

    if (!data) {
        st->half_closed = 1;
        stream_progress(st);
        return;
    }
    r = statemesh__v1__send_stream_request__unpack(&pba, len, data);
    if (!r) {
        sm_arena_reset(st->in->arena);
        stream_end(st, RPC_INVALID_ARGUMENT, "request is not a valid SendStreamRequest");
        return;
    }
    while (k < r->n_messages && wire_next(data, len, &pos, &field, &body, &blen) == 1) {
        const Statemesh__V1__StreamMessage *sm;
        struct endpoint *ep;
        struct inmsg im;
        int code;

        if (field != 1) continue;
        sm = r->messages[k++];
        if (sm->seq <= st->last_seq) {
            snprintf(why, sizeof why, "seq %llu does not follow %llu: seqs must increase",
                     (unsigned long long)sm->seq, (unsigned long long)st->last_seq);
            sm_arena_reset(st->in->arena);
            stream_end(st, RPC_INVALID_ARGUMENT, why);
            return;
        }
        st->last_seq = sm->seq;
        st->waiting++;
        im.target = sm->target;
        im.arg = sm->argument;
        im.key = sm->idempotency_key;
        im.delay_ms = sm->delay_ms;
        im.is_call = 0;
        im.bad_string = wire_check_strings(&statemesh__v1__stream_message__descriptor, body,
                                           blen, bad, sizeof bad) ? bad : NULL;
        im.method = NULL;
        im.req = NULL;
        im.len = 0;
        if ((ep = check_message(s, &im, &code, why, sizeof why)) == NULL) {
            struct fwd_stream *fs;
            if (code == RPC_UNAVAILABLE && s->cluster && im.target && !s->stopping &&
                (fs = stream_route(st, im.target, why, sizeof why)) != NULL) {
                fwd_stream_push(fs, sm->seq, body, blen);   /* its owner commits and acks it */
                st->waiting--;
                continue;
            }
            stream_error(st, sm->seq, code, why);
            continue;
        }
        if (im.key[0]) {
            enum idem_outcome o = idem_check(s, im.target->type, im.target->id, im.key, 0, 0);
            if (o == IDEM_DUPLICATE) continue;
            if (o != IDEM_NEW) {
                stream_error(st, sm->seq, RPC_INTERNAL, "cannot read idempotency records");
                continue;
            }
        }
        admit(s, ep, &im, 0, &st->src, sm->seq);
    }
    s->ckpt.forced = 1;            /* acks wait for a checkpoint even if nothing was written */
    sm_arena_reset(st->in->arena);
    stream_progress(st);
}

static void stream_on_writable(void *arg, struct rpc_scall *c)
{
    stream_progress(arg);
}

static void stream_on_cancel(void *arg, struct rpc_scall *c)
{
    stream_free(arg);
}

static void on_send_stream(void *arg, struct rpc_scall *c)
{
    static const struct rpc_scall_callbacks cb = {stream_on_message, stream_on_writable,
                                                  stream_on_cancel};
    struct ingress *in = arg;
    struct sstream *st = calloc(1, sizeof *st);

    if (!st) abort();
    if (peer_logged(in)) {
        char id[512], subject[512];
        rpc_scall_peer_identity(c, id, sizeof id);
        rpc_scall_peer_subject(c, subject, sizeof subject);
        log_peer(in, "SendStream", id, subject);
    }
    st->in = in;
    st->c = c;
    st->forwarded_in = in->s->cluster && rpc_scall_has_metadata(c, "x-statemesh-forwarded");
    ckpt_source_attach(&in->s->ckpt, &st->src);
    st->next = in->streams;
    if (st->next) st->next->prev = st;
    in->streams = st;
    in->s->stats.send_streams++;
    rpc_scall_set(c, &cb, st);
    if (in->s->stopping) {
        stream_end(st, RPC_UNAVAILABLE, "statemeshd is shutting down");
        return;
    }
    rpc_scall_read(c);
}

void ingress_after_commit(struct ingress *in)
{
    struct sstream *st, *next;
    for (st = in->streams; st; st = next) {
        uint64_t first = ckpt_source_first(&st->src);
        next = st->next;
        st->local_durable = first ? first - 1 : st->last_seq;
        stream_update_durable(st);
        st->waiting = 0;
        stream_progress(st);
    }
}

/* Re-measures the delivery rate behind read_limit every STREAM_RATE_WINDOW_MS. */
static void update_read_limit(struct ingress *in)
{
    int64_t now = rpc_now_ms(), dt = now - in->rate_since_ms;
    int64_t delivered = in->s->stats.messages_delivered, limit;

    if (dt < STREAM_RATE_WINDOW_MS) return;
    limit = (delivered - in->rate_delivered) * STREAM_QUEUE_MS / dt;
    if (in->s->stats.send_streams > 1) limit /= in->s->stats.send_streams;
    in->read_limit = limit > STREAM_QUEUE_MIN ? limit : STREAM_QUEUE_MIN;
    in->rate_since_ms = now;
    in->rate_delivered = delivered;
}

/* gRPC's threads free the buffers of a refused request into their malloc
 * arenas, which glibc does not shrink by itself: hand free pages back. */
static void maybe_trim(struct ingress *in)
{
    int64_t now = rpc_now_ms();
    struct mallinfo2 mi;

    if (now - in->last_trim_ms < TRIM_INTERVAL_MS) return;
    in->last_trim_ms = now;
    mi = mallinfo2();
    if (mi.fordblks >= TRIM_MIN_FREE) malloc_trim(0);
}

void ingress_poll_streams(struct ingress *in)
{
    struct sstream *st, *next;
    maybe_trim(in);
    update_read_limit(in);
    for (st = in->streams; st; st = next) {
        next = st->next;
        stream_progress(st);
    }
}

/* ---- lifecycle -------------------------------------------------------------- */

struct cert_match {
    const struct auth *auth;
    unsigned roles;
};

static void cert_identity(void *arg, const char *value, size_t len)
{
    struct cert_match *m = arg;
    m->roles |= auth_cert_roles(m->auth, value, len);
}

/* rpc's authorize hook (rpc.h) over the server's tokens and certificate
 * entries (auth.h); a certificate is looked at only for a call without a
 * token, and only when certificates are configured. */
static int authorize_call(void *arg, grpc_call *call, const char *method, const char *value,
                          size_t len, const char **msg)
{
    struct cert_match m = {arg, 0};
    if (!value && m.auth->n_certs) rpc_peer_identity_each(call, cert_identity, &m);
    return auth_check(m.auth, method, value, len, m.roles, msg);
}

int ingress_create(struct ingress **out, struct server *s)
{
    struct ingress *in = calloc(1, sizeof *in);
    struct rpc_server_options opt;

    if (!in) return -1;
    in->s = s;
    if (!(in->arena = sm_arena_create())) {
        free(in);
        return -1;
    }
    in->read_limit = STREAM_QUEUE_MIN;
    in->rate_since_ms = rpc_now_ms();
    memset(&opt, 0, sizeof opt);
    opt.max_receive_bytes = s->cfg.max_message_bytes + REQUEST_OVERHEAD;
    opt.max_streams_per_connection = s->cfg.max_streams_per_connection;
    opt.max_calls = s->cfg.max_calls;
    opt.max_calls_name = "runtime.max_calls";
    opt.memory_quota_bytes = INGRESS_QUOTA_MESSAGES * opt.max_receive_bytes;
    if (opt.memory_quota_bytes < INGRESS_QUOTA_MIN) opt.memory_quota_bytes = INGRESS_QUOTA_MIN;
    if (s->auth.enabled) {
        opt.authorize = authorize_call;
        opt.authorize_arg = &s->auth;
    }
    /* The admin listener (runtime.admin) takes the ingress's TLS too, with
     * credentials of its own: rpc_server_create owns what it is given. */
    if (s->cfg.admin) {
        if (s->tls && !(opt.creds = tls_server_credentials(s->tls))) {
            ingress_destroy(&in);
            return -1;
        }
        if (rpc_server_create(&in->admin_rpc, &s->loop, &opt) != 0 ||
            admin_register(in->admin_rpc, s) != 0) {
            ingress_destroy(&in);
            return -1;
        }
        opt.creds = NULL;
    }
    if (s->tls && !(opt.creds = tls_server_credentials(s->tls))) {
        ingress_destroy(&in);
        return -1;
    }
    if (rpc_server_create(&in->rpc, &s->loop, &opt) != 0 ||
        rpc_server_add_unary(in->rpc, "/statemesh.v1.Ingress/Send", on_send, in) != 0 ||
        rpc_server_add_unary(in->rpc, "/statemesh.v1.Ingress/Call", on_call, in) != 0 ||
        (in->admin_rpc ? admin_register_health(in->rpc, s) : admin_register(in->rpc, s)) != 0 ||
        rpc_server_add_stream(in->rpc, "/statemesh.v1.Ingress/SendStream", on_send_stream, in) != 0 ||
        rpc_server_add_stream(in->rpc, "/statemesh.v1.Ingress/Subscribe", egress_subscribe, s) != 0) {
        ingress_destroy(&in);
        return -1;
    }
    metrics_attach_rpc(s->metrics, in->rpc);   /* no-op when metrics are off */
    *out = in;
    return 0;
}

int ingress_start(struct ingress *in, const char *addr)
{
    if (rpc_server_start(in->rpc, addr) != 0) return -1;
    return in->admin_rpc ? rpc_server_start(in->admin_rpc, in->s->cfg.admin) : 0;
}

void ingress_shutdown(struct ingress *in)
{
    rpc_server_shutdown(in->rpc);
    if (in->admin_rpc) rpc_server_shutdown(in->admin_rpc);
    egress_shutdown(in->s);
    ingress_poll_streams(in);
}
void ingress_cancel_all(struct ingress *in)
{
    rpc_server_cancel_all(in->rpc);
    if (in->admin_rpc) rpc_server_cancel_all(in->admin_rpc);
}
int ingress_done(const struct ingress *in)
{
    return rpc_server_done(in->rpc) && (!in->admin_rpc || rpc_server_done(in->admin_rpc));
}

void ingress_destroy(struct ingress **inp)
{
    struct ingress *in = *inp;
    if (!in) return;
    for (size_t i = 0; i < in->cap; i++) free(in->slots[i]);
    free(in->slots);
    free(in->gens);
    free(in->free);
    if (in->rpc) rpc_server_destroy(&in->rpc);
    if (in->admin_rpc) rpc_server_destroy(&in->admin_rpc);
    sm_arena_destroy(&in->arena);
    free(in);
    *inp = NULL;
}
