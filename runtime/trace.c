/* trace — see trace.h.
 *
 * Export: the ring holds finished spans in emit order. Every
 * TRACE_EXPORT_MS the timer takes up to TRACE_EXPORT_MAX of them from the
 * head, encodes one ExportTraceServiceRequest (rpc packs it at once, so the
 * ring slots are free again when rpc_unary_start returns) and starts the
 * call; a second export waits until the first one's on_done. A full batch
 * does not wait for the timer: it goes when it is complete, or when the
 * export before it succeeds, so export keeps up with a busy runtime as long
 * as the collector does. The collector
 * being down costs one failed call per tick: gRPC fails it fast
 * (UNAVAILABLE) while the channel reconnects with backoff.
 */
#include "trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "otlp/trace.pb-c.h"
#include "rpc.h"
#include "statemesh/version.h"
#include "timer.h"
#include "tls.h"

#define EXPORT_METHOD "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
/* A failed export is logged at most this often. */
#define WARN_INTERVAL_MS 10000

typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest OtlpRequest;
typedef Opentelemetry__Proto__Collector__Trace__V1__ResourceSpans OtlpResourceSpans;
typedef Opentelemetry__Proto__Collector__Trace__V1__ScopeSpans OtlpScopeSpans;
typedef Opentelemetry__Proto__Collector__Trace__V1__InstrumentationScope OtlpScope;
typedef Opentelemetry__Proto__Collector__Trace__V1__Resource OtlpResource;
typedef Opentelemetry__Proto__Collector__Trace__V1__Span OtlpSpan;
typedef Opentelemetry__Proto__Collector__Trace__V1__Status OtlpStatus;
typedef Opentelemetry__Proto__Collector__Trace__V1__KeyValue OtlpKeyValue;
typedef Opentelemetry__Proto__Collector__Trace__V1__AnyValue OtlpAnyValue;

struct tracer {
    const struct log *log;
    struct rpc_loop *loop;
    struct timer_heap *timers;
    struct rpc_channel *ch;
    struct timer tick;
    char *target;
    uint64_t sample_below;     /* draw < sample_below: sampled; UINT64_MAX with ratio 1 */
    int sample_all;
    uint64_t rng[2];           /* xorshift128+ state, seeded from getrandom() */
    struct trace_span *ring;
    size_t head, len;          /* TRACE_QUEUE_SPANS slots */
    size_t inflight;           /* spans in the Export call running, 0: none */
    int stopped;
    struct ckpt_wait {
        uint8_t trace_id[16], parent_id[8], flags;
        int64_t start_ns;
    } *waiting;                /* results applied to the open checkpoint */
    size_t nwaiting;
    int64_t exported, dropped;
    int64_t last_warn_ms;
};

static void export_some(struct tracer *t);

/* ---- W3C trace context --------------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;                 /* upper case is invalid too (W3C) */
}

static int parse_hex(const char *s, uint8_t *out, size_t n)
{
    int nonzero = 0;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
        nonzero |= out[i];
    }
    return nonzero ? 0 : 1;
}

int trace_parse(const char *s, size_t len, uint8_t trace_id[16], uint8_t span_id[8], uint8_t *flags)
{
    uint8_t ver;
    if (!s || len < TRACE_PARENT_LEN) return -1;
    if (parse_hex(s, &ver, 1) < 0 || ver == 0xff) return -1;
    if (ver == 0 && len != TRACE_PARENT_LEN) return -1;
    if (ver != 0 && len > TRACE_PARENT_LEN && s[TRACE_PARENT_LEN] != '-') return -1;
    if (s[2] != '-' || s[35] != '-' || s[52] != '-') return -1;
    if (parse_hex(s + 3, trace_id, 16) != 0) return -1;    /* bad hex or all zero */
    if (parse_hex(s + 36, span_id, 8) != 0) return -1;
    if (parse_hex(s + 53, flags, 1) < 0) return -1;
    return 0;
}

int trace_state_ok(const char *s, size_t len)
{
    if (len > TRACE_STATE_MAX) return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) return 0;
    return 1;
}

static void hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
}

void trace_format(const uint8_t trace_id[16], const uint8_t span_id[8], uint8_t flags, char *out)
{
    memcpy(out, "00-", 3);
    hex(trace_id, 16, out + 3);
    out[35] = '-';
    hex(span_id, 8, out + 36);
    out[52] = '-';
    hex(&flags, 1, out + 53);
    out[TRACE_PARENT_LEN] = '\0';
}

void trace_id_hex(const uint8_t trace_id[16], char *out)
{
    hex(trace_id, 16, out);
    out[32] = '\0';
}

struct trace_ctx *trace_ctx_create(const uint8_t trace_id[16], const uint8_t parent_id[8],
                                   uint8_t flags, const char *state, size_t state_len)
{
    struct trace_ctx *c;
    if (!state) state_len = 0;
    c = malloc(sizeof *c + state_len + 1);
    if (!c) abort();
    memset(c, 0, sizeof *c);
    memcpy(c->trace_id, trace_id, 16);
    if (parent_id) memcpy(c->parent_id, parent_id, 8);
    c->flags = flags;
    if (state_len) memcpy(c->state, state, state_len);
    c->state[state_len] = '\0';
    return c;
}

struct trace_ctx *trace_ctx_child(const struct trace_ctx *cause)
{
    return trace_ctx_create(cause->trace_id, cause->span_id, cause->flags, cause->state,
                            strlen(cause->state));
}

struct trace_ctx *trace_ctx_from_header(const char *traceparent, const char *tracestate)
{
    uint8_t tid[16], sid[8], fl;
    if (!traceparent || !traceparent[0] ||
        trace_parse(traceparent, strlen(traceparent), tid, sid, &fl) != 0)
        return NULL;
    if (!tracestate || !trace_state_ok(tracestate, strlen(tracestate))) tracestate = NULL;
    return trace_ctx_create(tid, sid, fl, tracestate, tracestate ? strlen(tracestate) : 0);
}

int64_t trace_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- ids and sampling ---------------------------------------------------- */

static uint64_t next_random(struct tracer *t)
{
    uint64_t a = t->rng[0], b = t->rng[1];
    t->rng[0] = b;
    a ^= a << 23;
    a ^= a >> 17;
    a ^= b ^ (b >> 26);
    t->rng[1] = a;
    return a + b;
}

int tracer_sample(struct tracer *t)
{
    if (t->sample_all) return 1;
    return next_random(t) < t->sample_below;
}

void tracer_new_trace_id(struct tracer *t, uint8_t out[16])
{
    do {
        uint64_t a = next_random(t), b = next_random(t);
        memcpy(out, &a, 8);
        memcpy(out + 8, &b, 8);
    } while (!(out[0] | out[15]) && !memcmp(out, out + 1, 15));   /* never all zero */
}

void tracer_new_span_id(struct tracer *t, uint8_t out[8])
{
    uint64_t a;
    do a = next_random(t);
    while (a == 0);
    memcpy(out, &a, 8);
}

/* ---- spans --------------------------------------------------------------- */

void trace_span_init(struct trace_span *sp, const uint8_t trace_id[16], const uint8_t span_id[8],
                     const uint8_t *parent_id, uint8_t flags, enum trace_kind kind,
                     const char *name, int64_t start_ns, int64_t end_ns)
{
    memcpy(sp->trace_id, trace_id, 16);
    memcpy(sp->span_id, span_id, 8);
    if (parent_id) memcpy(sp->parent_id, parent_id, 8);
    else memset(sp->parent_id, 0, 8);
    sp->flags = flags;
    sp->kind = (uint8_t)kind;
    sp->error = 0;
    sp->name = name;
    sp->start_ns = start_ns;
    sp->end_ns = end_ns < start_ns ? start_ns : end_ns;
    sp->count = 0;
    sp->address[0] = '\0';
    sp->status[0] = '\0';
}

void trace_span_address(struct trace_span *sp, const char *type, const char *id)
{
    snprintf(sp->address, sizeof sp->address, "%s/%s", type, id);
}

void tracer_emit(struct tracer *t, const struct trace_span *sp)
{
    if (t->len == TRACE_QUEUE_SPANS || t->stopped) {
        t->dropped++;
        return;
    }
    t->ring[(t->head + t->len) % TRACE_QUEUE_SPANS] = *sp;
    if (++t->len >= TRACE_EXPORT_MAX && !t->inflight) export_some(t);   /* a full batch: now */
}

void tracer_checkpoint_wait(struct tracer *t, const struct trace_ctx *c)
{
    struct ckpt_wait *w;
    if (t->nwaiting == TRACE_QUEUE_SPANS) {
        t->dropped++;
        return;
    }
    w = &t->waiting[t->nwaiting++];
    memcpy(w->trace_id, c->trace_id, 16);
    memcpy(w->parent_id, c->span_id, 8);
    w->flags = c->flags;
    w->start_ns = trace_now_ns();
}

void tracer_checkpoint_done(struct tracer *t)
{
    int64_t now;
    if (!t || !t->nwaiting) return;
    now = trace_now_ns();
    for (size_t i = 0; i < t->nwaiting; i++) {
        struct ckpt_wait *w = &t->waiting[i];
        struct trace_span sp;
        uint8_t sid[8];
        tracer_new_span_id(t, sid);
        trace_span_init(&sp, w->trace_id, sid, w->parent_id, w->flags, TRACE_INTERNAL,
                        "statemesh.checkpoint", w->start_ns, now);
        tracer_emit(t, &sp);
    }
    t->nwaiting = 0;
}

int64_t tracer_exported(const struct tracer *t) { return t ? t->exported : 0; }
int64_t tracer_dropped(const struct tracer *t) { return t ? t->dropped : 0; }

/* ---- export -------------------------------------------------------------- */

static void on_export_done(void *arg, int status, const char *details, const uint8_t *resp,
                           size_t len)
{
    struct tracer *t = arg;
    size_t n = t->inflight;
    int64_t rejected = 0;

    t->inflight = 0;
    if (status == RPC_OK) {
        Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse *r =
            opentelemetry__proto__collector__trace__v1__export_trace_service_response__unpack(
                NULL, len, resp);
        if (r && r->partial_success && r->partial_success->rejected_spans > 0)
            rejected = r->partial_success->rejected_spans > (int64_t)n
                           ? (int64_t)n : r->partial_success->rejected_spans;
        if (r) opentelemetry__proto__collector__trace__v1__export_trace_service_response__free_unpacked(r, NULL);
        t->exported += (int64_t)n - rejected;
        t->dropped += rejected;
        if (!t->stopped && t->len >= TRACE_EXPORT_MAX) export_some(t);   /* keep up */
        return;
    }
    t->dropped += (int64_t)n;
    if (rpc_now_ms() - t->last_warn_ms >= WARN_INTERVAL_MS || t->last_warn_ms == 0) {
        char q[600];
        t->last_warn_ms = rpc_now_ms();
        LOG_WARN(t->log, "tracing.export_failed", "otlp=%s spans=%zu status=%s msg=%s", t->target,
                 n, rpc_status_name(status), log_quote(q, sizeof q, details));
    }
}

static void set_string_attr(OtlpKeyValue *kv, OtlpAnyValue *v, const char *key, const char *val)
{
    opentelemetry__proto__collector__trace__v1__key_value__init(kv);
    opentelemetry__proto__collector__trace__v1__any_value__init(v);
    kv->key = (char *)key;
    v->value_case = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__ANY_VALUE__VALUE_STRING_VALUE;
    v->string_value = (char *)val;
    kv->value = v;
}

/* Exports up to TRACE_EXPORT_MAX spans from the head of the ring. */
static void export_some(struct tracer *t)
{
    size_t n = t->len < TRACE_EXPORT_MAX ? t->len : TRACE_EXPORT_MAX;
    OtlpRequest req = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
    OtlpResourceSpans rs = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__RESOURCE_SPANS__INIT, *rsp = &rs;
    OtlpScopeSpans ss = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__SCOPE_SPANS__INIT, *ssp = &ss;
    OtlpScope scope = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__INSTRUMENTATION_SCOPE__INIT;
    OtlpResource res = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__RESOURCE__INIT;
    OtlpKeyValue rkv[2], *rkvp[2];
    OtlpAnyValue rv[2];
    OtlpSpan *spans = NULL, **spanp = NULL;
    OtlpStatus *status = NULL;
    OtlpKeyValue *kv = NULL, **kvp = NULL;
    OtlpAnyValue *av = NULL;

    if (n == 0 || t->inflight || !t->ch) return;
    spans = calloc(n, sizeof *spans);
    spanp = calloc(n, sizeof *spanp);
    status = calloc(n, sizeof *status);
    kv = calloc(2 * n, sizeof *kv);
    kvp = calloc(2 * n, sizeof *kvp);
    av = calloc(2 * n, sizeof *av);
    if (!spans || !spanp || !status || !kv || !kvp || !av) abort();
    for (size_t i = 0; i < n; i++) {
        struct trace_span *sp = &t->ring[(t->head + i) % TRACE_QUEUE_SPANS];
        OtlpSpan *o = &spans[i];
        size_t na = 0;
        opentelemetry__proto__collector__trace__v1__span__init(o);
        o->trace_id.data = sp->trace_id;
        o->trace_id.len = 16;
        o->span_id.data = sp->span_id;
        o->span_id.len = 8;
        if (memcmp(sp->parent_id, "\0\0\0\0\0\0\0\0", 8) != 0) {
            o->parent_span_id.data = sp->parent_id;
            o->parent_span_id.len = 8;
        }
        o->name = (char *)sp->name;
        o->kind = (Opentelemetry__Proto__Collector__Trace__V1__Span__SpanKind)sp->kind;
        o->start_time_unix_nano = (uint64_t)sp->start_ns;
        o->end_time_unix_nano = (uint64_t)sp->end_ns;
        o->flags = sp->flags;
        if (sp->address[0]) {
            set_string_attr(&kv[2 * i], &av[2 * i], "statemesh.address", sp->address);
            kvp[2 * i + na++] = &kv[2 * i];
        }
        if (sp->count) {
            OtlpKeyValue *k = &kv[2 * i + 1];
            OtlpAnyValue *v = &av[2 * i + 1];
            opentelemetry__proto__collector__trace__v1__key_value__init(k);
            opentelemetry__proto__collector__trace__v1__any_value__init(v);
            k->key = (char *)"statemesh.messages";
            v->value_case = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__ANY_VALUE__VALUE_INT_VALUE;
            v->int_value = sp->count;
            k->value = v;
            kvp[2 * i + na++] = k;
        }
        o->n_attributes = na;
        o->attributes = &kvp[2 * i];
        if (sp->error) {
            opentelemetry__proto__collector__trace__v1__status__init(&status[i]);
            status[i].code = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR;
            status[i].message = sp->status;
            o->status = &status[i];
        }
        spanp[i] = o;
    }
    set_string_attr(&rkv[0], &rv[0], "service.name", "statemeshd");
    set_string_attr(&rkv[1], &rv[1], "service.version", SM_VERSION);
    rkvp[0] = &rkv[0];
    rkvp[1] = &rkv[1];
    res.n_attributes = 2;
    res.attributes = rkvp;
    scope.name = (char *)"statemesh";
    scope.version = (char *)SM_VERSION;
    ss.scope = &scope;
    ss.n_spans = n;
    ss.spans = spanp;
    rs.resource = &res;
    rs.n_scope_spans = 1;
    rs.scope_spans = &ssp;
    req.n_resource_spans = 1;
    req.resource_spans = &rsp;
    if (rpc_unary_start(t->ch, EXPORT_METHOD, &req.base, TRACE_EXPORT_TIMEOUT_MS, on_export_done,
                        t) == 0)
        t->inflight = n;
    else
        t->dropped += (int64_t)n;
    t->head = (t->head + n) % TRACE_QUEUE_SPANS;
    t->len -= n;
    free(spans);
    free(spanp);
    free(status);
    free(kv);
    free(kvp);
    free(av);
}

static void on_tick(void *arg)
{
    struct tracer *t = arg;
    export_some(t);
    if (!t->stopped) timer_start(t->timers, &t->tick, rpc_now_ms() + TRACE_EXPORT_MS);
}

int tracer_create(struct tracer **out, const struct cfg_tracing *cfg, struct rpc_loop *loop,
                  struct timer_heap *timers, const struct log *lg, char *err, size_t errlen)
{
    struct tracer *t = calloc(1, sizeof *t);
    struct rpc_channel_options co = {0, 0, NULL};
    int rc = -1;

    *out = NULL;
    if (!t) abort();
    t->log = lg;
    t->loop = loop;
    t->timers = timers;
    t->target = strdup(cfg->otlp);
    t->ring = calloc(TRACE_QUEUE_SPANS, sizeof *t->ring);
    t->waiting = calloc(TRACE_QUEUE_SPANS, sizeof *t->waiting);
    if (!t->target || !t->ring || !t->waiting) abort();
    if (cfg->sample_ratio >= 1.0) t->sample_all = 1;
    else if (cfg->sample_ratio > 0) t->sample_below = (uint64_t)(cfg->sample_ratio * 18446744073709551615.0);
    if (getrandom(t->rng, sizeof t->rng, 0) != (ssize_t)sizeof t->rng || !(t->rng[0] | t->rng[1])) {
        t->rng[0] = (uint64_t)trace_now_ns() | 1;
        t->rng[1] = (uint64_t)(uintptr_t)t ^ 0x9e3779b97f4a7c15ull;
    }
    if (cfg->tls.on && !(co.creds = tls_channel_credentials(&cfg->tls, err, errlen))) goto out;
    if (rpc_channel_create(&t->ch, loop, cfg->otlp, &co) != 0) {
        snprintf(err, errlen, "tracing.otlp: cannot create a channel to %s", cfg->otlp);
        goto out;
    }
    timer_init(&t->tick, on_tick, t);
    timer_start(timers, &t->tick, rpc_now_ms() + TRACE_EXPORT_MS);
    *out = t;
    t = NULL;
    rc = 0;
out:
    if (co.creds) grpc_channel_credentials_release(co.creds);   /* the channel holds its own */
    if (t) {
        free(t->waiting);
        free(t->ring);
        free(t->target);
        free(t);
    }
    return rc;
}

void tracer_stop(struct tracer *t)
{
    if (!t || t->stopped) return;
    export_some(t);            /* the last spans, if the collector is there */
    t->stopped = 1;
    timer_stop(t->timers, &t->tick);
}

int tracer_idle(const struct tracer *t) { return !t || t->inflight == 0; }

void tracer_destroy(struct tracer **tp)
{
    struct tracer *t = *tp;
    if (!t) return;
    if (timer_armed(&t->tick)) timer_stop(t->timers, &t->tick);
    if (t->ch) rpc_channel_destroy(&t->ch);
    free(t->waiting);
    free(t->ring);
    free(t->target);
    free(t);
    *tp = NULL;
}
