/* rpc_fake — see rpc_fake.h. */
#include "rpc_fake.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FAKE_MAX_METHODS 32

struct rpc_call {
    struct rpc_server *srv;
    struct rpc_call *next;
    rpc_cancel_fn cancel;
    void *cancel_arg;
    struct rpc_fake_answer a;
};

struct rpc_scall {
    struct rpc_server *srv;
    struct rpc_scall *next;
    const struct rpc_scall_callbacks *cb;
    void *arg;
    const uint8_t *const *frames;   /* borrowed during rpc_fake_stream only */
    const size_t *lens;
    size_t nframes, nextf;
    unsigned reading : 1, sending : 1, finished : 1, half_close : 1, closed_delivered : 1;
    int code;
};

struct rpc_server {
    struct {
        const char *name;
        rpc_request_fn unary;
        rpc_stream_open_fn stream;
        void *arg;
    } m[FAKE_MAX_METHODS];
    size_t nm;
    struct rpc_call *calls;        /* held: not answered yet */
    struct rpc_call *current;      /* the call whose handler runs now */
    struct rpc_scall *scalls;      /* every stream call, freed at destroy */
};

static const char *const status_names[] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED"};

static void fail(const char *what)
{
    fprintf(stderr, "rpc_fake: %s\n", what);
    abort();
}

const char *rpc_status_name(int code)
{
    if (code < 0 || code > 16) return "UNKNOWN";
    return status_names[code];
}

int64_t rpc_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int64_t rpc_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Metrics observation (rpc.h): the fake serves no metrics. */
void rpc_server_observe(struct rpc_server *srv, rpc_observe_fn fn, void *arg)
{
    (void)srv;
    (void)fn;
    (void)arg;
}

int rpc_server_nmethods(const struct rpc_server *srv)
{
    (void)srv;
    return 0;
}

const char *rpc_server_method(const struct rpc_server *srv, int method)
{
    (void)srv;
    (void)method;
    return NULL;
}

uint8_t *rpc_pack(const ProtobufCMessage *m, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) abort();
    protobuf_c_message_pack(m, buf);
    *len = n;
    return buf;
}

/* ---- server ------------------------------------------------------------- */

int rpc_server_create(struct rpc_server **out, struct rpc_loop *loop,
                      const struct rpc_server_options *opt)
{
    (void)loop;
    (void)opt;
    *out = calloc(1, sizeof **out);
    return *out ? 0 : -1;
}

static int add(struct rpc_server *srv, const char *method, rpc_request_fn u, rpc_stream_open_fn st,
               void *arg)
{
    if (srv->nm == FAKE_MAX_METHODS) return -1;
    srv->m[srv->nm].name = method;
    srv->m[srv->nm].unary = u;
    srv->m[srv->nm].stream = st;
    srv->m[srv->nm].arg = arg;
    srv->nm++;
    return 0;
}

int rpc_server_add_unary(struct rpc_server *srv, const char *method, rpc_request_fn on_request,
                         void *arg)
{
    return add(srv, method, on_request, NULL, arg);
}

int rpc_server_add_stream(struct rpc_server *srv, const char *method, rpc_stream_open_fn on_open,
                          void *arg)
{
    return add(srv, method, NULL, on_open, arg);
}

int rpc_server_start(struct rpc_server *srv, const char *addr)
{
    (void)srv;
    (void)addr;
    return 0;
}

void rpc_server_shutdown(struct rpc_server *srv) { (void)srv; }

static void unlink_call(struct rpc_call *c)
{
    struct rpc_call **pp;
    for (pp = &c->srv->calls; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            return;
        }
}

/* As gRPC cancelling every call: held unary calls and open streams. */
void rpc_server_cancel_all(struct rpc_server *srv)
{
    struct rpc_scall *sc;
    while (srv->calls) {
        struct rpc_call *c = srv->calls;
        srv->calls = c->next;
        if (c->cancel) c->cancel(c->cancel_arg, c);
        free(c);
    }
    for (sc = srv->scalls; sc; sc = sc->next)
        if (!sc->finished) {
            sc->finished = 1;
            sc->code = RPC_CANCELLED;
            if (sc->cb && sc->cb->on_cancel) sc->cb->on_cancel(sc->arg, sc);
        }
}

int rpc_server_done(const struct rpc_server *srv)
{
    const struct rpc_scall *sc;
    if (srv->calls) return 0;
    for (sc = srv->scalls; sc; sc = sc->next)
        if (!sc->finished) return 0;
    return 1;
}

void rpc_server_destroy(struct rpc_server **srvp)
{
    struct rpc_server *srv = *srvp;
    if (!srv) return;
    if (!rpc_server_done(srv)) fail("server destroyed with calls still open");
    while (srv->scalls) {
        struct rpc_scall *sc = srv->scalls;
        srv->scalls = sc->next;
        free(sc);
    }
    free(srv);
    *srvp = NULL;
}

/* ---- unary calls ---------------------------------------------------------- */

static void answer(struct rpc_call *c, int code, const char *msg, size_t reply_len)
{
    if (c->a.answered) fail("a unary call answered twice");
    c->a.answered = 1;
    c->a.code = code;
    snprintf(c->a.msg, sizeof c->a.msg, "%s", msg);
    c->a.reply_len = reply_len;
    if (c != c->srv->current) {          /* a held call: gone once answered */
        unlink_call(c);
        free(c);
    }
}

void rpc_call_set_cancel(struct rpc_call *call, rpc_cancel_fn fn, void *arg)
{
    call->cancel = fn;
    call->cancel_arg = arg;
}

int64_t rpc_call_deadline_ms(const struct rpc_call *call)
{
    (void)call;
    return INT64_MAX;
}

/* Plaintext: no client certificate. */
int rpc_call_peer_identity(const struct rpc_call *call, char *buf, size_t len)
{
    (void)call;
    if (len) buf[0] = '\0';
    return 0;
}

int rpc_call_peer_subject(const struct rpc_call *call, char *buf, size_t len)
{
    return rpc_call_peer_identity(call, buf, len);
}

int rpc_scall_peer_identity(const struct rpc_scall *c, char *buf, size_t len)
{
    (void)c;
    if (len) buf[0] = '\0';
    return 0;
}

int rpc_scall_peer_subject(const struct rpc_scall *c, char *buf, size_t len)
{
    return rpc_scall_peer_identity(c, buf, len);
}

void rpc_call_reply(struct rpc_call *call, const ProtobufCMessage *resp)
{
    size_t len;
    uint8_t *data = rpc_pack(resp, &len);
    free(data);
    answer(call, RPC_OK, "", len);
}

void rpc_call_reply_raw(struct rpc_call *call, uint8_t *data, size_t len)
{
    free(data);
    answer(call, RPC_OK, "", len);
}

void rpc_call_error(struct rpc_call *call, int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (code == RPC_OK) fail("rpc_call_error with OK");
    answer(call, code, msg, 0);
}

void rpc_call_error_md(struct rpc_call *call, int code, const char *const *md, size_t nmd,
                       const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    (void)md;
    (void)nmd;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (code == RPC_OK) fail("rpc_call_error_md with OK");
    answer(call, code, msg, 0);
}

int rpc_fake_unary(struct rpc_server *srv, const char *method, const uint8_t *req, size_t len,
                   struct rpc_fake_answer *out)
{
    struct rpc_call *c;
    size_t i;

    for (i = 0; i < srv->nm; i++)
        if (srv->m[i].unary && strcmp(srv->m[i].name, method) == 0) break;
    if (i == srv->nm) return -1;
    if (!(c = calloc(1, sizeof *c))) abort();
    c->srv = srv;
    c->next = srv->calls;
    srv->calls = c;
    srv->current = c;
    srv->m[i].unary(srv->m[i].arg, c, req, len);
    srv->current = NULL;
    *out = c->a;
    if (c->a.answered) {
        unlink_call(c);
        free(c);
    } else if (!c->cancel) {
        fail("a unary call left unanswered without a cancel callback (it would never end)");
    }
    return 0;
}

size_t rpc_fake_held(const struct rpc_server *srv)
{
    size_t n = 0;
    for (const struct rpc_call *c = srv->calls; c; c = c->next) n++;
    return n;
}

/* ---- stream calls ------------------------------------------------------------ */

void rpc_scall_set(struct rpc_scall *c, const struct rpc_scall_callbacks *cb, void *arg)
{
    c->cb = cb;
    c->arg = arg;
}

void rpc_scall_read(struct rpc_scall *c)
{
    if (c->finished) fail("rpc_scall_read after finish");
    if (c->closed_delivered) return;
    c->reading = 1;
}

int rpc_scall_writable(const struct rpc_scall *c)
{
    return !c->finished && !c->sending;
}

int rpc_scall_send(struct rpc_scall *c, uint8_t *data, size_t len)
{
    (void)len;
    free(data);
    if (!rpc_scall_writable(c)) return -1;
    c->sending = 1;
    return 0;
}

void rpc_scall_finish(struct rpc_scall *c, int code, const char *fmt, ...)
{
    (void)fmt;
    if (c->finished) fail("rpc_scall_finish twice");
    c->finished = 1;
    c->reading = 0;
    c->code = code;
}

/* One step of one stream call: a send completes or a read is served.
 * Returns 1 if something happened. */
static int step(struct rpc_scall *c)
{
    if (c->finished) return 0;
    if (c->sending) {
        c->sending = 0;
        if (c->cb->on_writable) c->cb->on_writable(c->arg, c);
        return 1;
    }
    if (c->reading) {
        if (c->nextf < c->nframes) {
            size_t k = c->nextf++;
            c->reading = 0;
            c->cb->on_message(c->arg, c, c->frames[k], c->lens[k]);
            return 1;
        }
        if (c->half_close) {
            c->reading = 0;
            c->closed_delivered = 1;
            c->cb->on_message(c->arg, c, NULL, 0);
            return 1;
        }
    }
    return 0;
}

void rpc_fake_drive(struct rpc_server *srv, int rounds)
{
    for (int r = 0; r < rounds; r++) {
        int moved = 0;
        for (struct rpc_scall *c = srv->scalls; c; c = c->next) moved |= step(c);
        if (!moved) return;
    }
}

int rpc_fake_stream(struct rpc_server *srv, const char *method, const uint8_t *const *frames,
                    const size_t *lens, size_t nframes, int half_close, int *finished, int *code)
{
    struct rpc_scall *c;
    size_t i;

    for (i = 0; i < srv->nm; i++)
        if (srv->m[i].stream && strcmp(srv->m[i].name, method) == 0) break;
    if (i == srv->nm) return -1;
    if (!(c = calloc(1, sizeof *c))) abort();
    c->srv = srv;
    c->next = srv->scalls;
    srv->scalls = c;
    c->frames = frames;
    c->lens = lens;
    c->nframes = nframes;
    c->half_close = half_close;
    srv->m[i].stream(srv->m[i].arg, c);
    if (!c->cb && !c->finished) fail("a stream call opened without callbacks");
    for (int guard = 0; guard < 1000 && step(c); guard++) {}
    c->frames = NULL;                    /* borrowed: no later delivery */
    c->lens = NULL;
    c->nframes = c->nextf = 0;
    *finished = c->finished;
    *code = c->code;
    return 0;
}

/* ---- client: not available ---------------------------------------------------- */

int rpc_channel_create(struct rpc_channel **out, struct rpc_loop *loop, const char *target,
                       const struct rpc_channel_options *opt)
{
    (void)loop;
    (void)target;
    (void)opt;
    *out = NULL;
    return -1;
}

void rpc_channel_destroy(struct rpc_channel **chp) { *chp = NULL; }

long rpc_channel_calls(const struct rpc_channel *ch)
{
    (void)ch;
    return 0;
}

int rpc_unary_start(struct rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                    int64_t timeout_ms, rpc_unary_done_fn on_done, void *arg)
{
    (void)ch;
    (void)method;
    (void)req;
    (void)timeout_ms;
    (void)on_done;
    (void)arg;
    return -1;
}

int rpc_stream_open(struct rpc_stream **out, struct rpc_channel *ch, const char *method,
                    const struct rpc_stream_callbacks *cb, void *arg)
{
    (void)ch;
    (void)method;
    (void)cb;
    (void)arg;
    *out = NULL;
    return -1;
}

int rpc_stream_writable(const struct rpc_stream *s)
{
    (void)s;
    return 0;
}

int rpc_stream_send(struct rpc_stream *s, uint8_t *data, size_t len)
{
    (void)s;
    (void)len;
    free(data);
    return -1;
}

void rpc_stream_cancel(struct rpc_stream *s) { (void)s; }

/* Forwarding (forward.h): the fake server is never part of a cluster. */
void rpc_call_add_trailer(struct rpc_call *call, const char *const *md, size_t nmd)
{
    (void)call;
    (void)md;
    (void)nmd;
}

int rpc_call_has_metadata(const struct rpc_call *call, const char *key)
{
    (void)call;
    (void)key;
    return 0;
}

int rpc_scall_has_metadata(const struct rpc_scall *c, const char *key)
{
    (void)c;
    (void)key;
    return 0;
}

int rpc_unary_forward(struct rpc_ucall **out, struct rpc_channel *ch, const char *method,
                      const struct rpc_call *from, const uint8_t *req, size_t len,
                      const char *const *md, size_t nmd, int64_t timeout_ms,
                      rpc_forward_done_fn on_done, void *arg)
{
    (void)out;
    (void)ch;
    (void)method;
    (void)from;
    (void)req;
    (void)len;
    (void)md;
    (void)nmd;
    (void)timeout_ms;
    (void)on_done;
    (void)arg;
    return -1;
}

void rpc_unary_cancel(struct rpc_ucall *u) { (void)u; }

int rpc_stream_open_forward(struct rpc_stream **out, struct rpc_channel *ch, const char *method,
                            const struct rpc_scall *from, const char *const *md, size_t nmd,
                            const struct rpc_stream_callbacks *cb, void *arg)
{
    (void)from;
    (void)md;
    (void)nmd;
    return rpc_stream_open(out, ch, method, cb, arg);
}

/* No client certificates here (auth.h's certificate roles). */
int rpc_peer_identity_each(grpc_call *call, void (*fn)(void *arg, const char *value, size_t len),
                           void *arg)
{
    (void)call;
    (void)fn;
    (void)arg;
    return 0;
}
