/*
 * rpc — see rpc.h for the contract.
 *
 * Design notes
 * ------------
 * One NEXT completion queue, drained by the single event-loop thread. Every
 * tag is a `struct rpc_tag` embedded in the object it belongs to, one per
 * kind of outstanding operation, so starting a batch never allocates.
 *
 * Unary server call states:
 *
 *     requested --on_new(ok)--> open --reply/error--> answered
 *         |                      |                        |
 *     on_new(!ok)           on_close(cancelled)       on_send
 *         v                      v                        v
 *       freed        cancel callback, answered      freed once closed
 *
 * A call object is freed when RECV_CLOSE_ON_SERVER has completed, no send is
 * pending, and the module has either answered or been told of the cancel.
 *
 * Client stream: three batches are posted at open (initial metadata, status,
 * first receive); a receive is re-posted after every message; at most one
 * send is in flight. on_closed fires once the status has arrived and every
 * other batch has completed, and the object is freed right after.
 */
#include "rpc.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RPC_MAX_METHODS 24
#define RPC_MAX_TRAILER 6
/* Request metadata a forwarded call carries on (rpc_unary_forward), at most. */
#define RPC_MAX_FORWARD_MD 16
#define RPC_PREPOSTED 32          /* outstanding request_call per method */

static const char *const status_names[] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED"};

const char *rpc_status_name(int code)
{
    if (code < 0 || code > 16) return "UNKNOWN";
    return status_names[code];
}

/* ---- loop ---------------------------------------------------------------- */

static gpr_timespec ms_to_deadline(int64_t deadline_ms)
{
    gpr_timespec t;
    if (deadline_ms == INT64_MAX) return gpr_inf_future(GPR_CLOCK_MONOTONIC);
    t.clock_type = GPR_CLOCK_MONOTONIC;
    t.tv_sec = deadline_ms / 1000;
    t.tv_nsec = (int32_t)((deadline_ms % 1000) * 1000000);
    return t;
}

int64_t rpc_now_ms(void)
{
    gpr_timespec t = gpr_now(GPR_CLOCK_MONOTONIC);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int64_t rpc_now_ns(void)
{
    gpr_timespec t = gpr_now(GPR_CLOCK_MONOTONIC);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

int rpc_loop_init(struct rpc_loop *loop, const struct log *lg)
{
    memset(loop, 0, sizeof *loop);
    loop->log = lg;
    loop->cq = grpc_completion_queue_create_for_next(NULL);
    return loop->cq ? 0 : -1;
}

int rpc_loop_next(struct rpc_loop *loop, int64_t deadline_ms)
{
    grpc_event ev = grpc_completion_queue_next(loop->cq, ms_to_deadline(deadline_ms), NULL);
    switch (ev.type) {
    case GRPC_OP_COMPLETE: {
        struct rpc_tag *t = ev.tag;
        t->fn(t->owner, ev.success);
        return 1;
    }
    case GRPC_QUEUE_TIMEOUT:
        return 0;
    case GRPC_QUEUE_SHUTDOWN:
    default:
        return -1;
    }
}

void rpc_loop_cleanup(struct rpc_loop *loop)
{
    if (!loop->cq) return;
    grpc_completion_queue_shutdown(loop->cq);
    while (rpc_loop_next(loop, INT64_MAX) >= 0)
        ;
    grpc_completion_queue_destroy(loop->cq);
    loop->cq = NULL;
}

/* ---- buffers ------------------------------------------------------------- */

uint8_t *rpc_pack(const ProtobufCMessage *m, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) abort();
    protobuf_c_message_pack(m, buf);
    *len = n;
    return buf;
}

/* Takes ownership of `data` (malloc'd). */
static grpc_byte_buffer *bb_from_owned(uint8_t *data, size_t len)
{
    grpc_slice s;
    grpc_byte_buffer *bb;
    if (len == 0) {
        free(data);
        s = grpc_empty_slice();
    } else {
        s = grpc_slice_new(data, len, free);
    }
    bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

/* Reads a received buffer into one slice; returns 0, or -1 if unreadable. */
static int bb_read(grpc_byte_buffer *bb, grpc_slice *out)
{
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb)) return -1;
    *out = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    return 0;
}

static void start_batch(grpc_call *call, const grpc_op *ops, size_t n, struct rpc_tag *tag)
{
    grpc_call_error e = grpc_call_start_batch(call, ops, n, tag, NULL);
    if (e != GRPC_CALL_OK) {
        /* Only a programming error gets here (wrong op order or count). */
        fprintf(stderr, "level=error event=panic msg=\"grpc_call_start_batch failed: %d\"\n", e);
        abort();
    }
}

/* ---- server -------------------------------------------------------------- */

struct rpc_method {
    struct rpc_server *srv;
    const char *name;          /* points into names[] of the server */
    void *handle;              /* from grpc_server_register_method, NULL = catch-all */
    rpc_request_fn on_request;
    rpc_stream_open_fn on_open;    /* streaming method when set */
    void *arg;
};

struct rpc_call {
    struct rpc_server *srv;
    struct rpc_method *method;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
    grpc_call_details details;       /* catch-all only */
    grpc_byte_buffer *send_bb;
    grpc_slice status_details;
    int status_details_set;
    grpc_metadata trailer[RPC_MAX_TRAILER];  /* rpc_call_error_md */
    size_t ntrailer;
    int cancelled;                   /* out-param of RECV_CLOSE_ON_SERVER */
    struct rpc_tag t_new, t_close, t_send;
    unsigned started : 1, close_pending : 1, send_pending : 1, answered : 1;
    rpc_cancel_fn cancel_fn;
    void *cancel_arg;
    int64_t t0_ns;                   /* started (observed servers only) */
};

struct rpc_server {
    struct rpc_loop *loop;
    grpc_server *server;
    struct rpc_method methods[RPC_MAX_METHODS];
    char *names[RPC_MAX_METHODS];
    int nmethods;
    struct rpc_method catchall;
    long ncalls;                     /* call objects alive (requested or open) */
    long nopen;                      /* calls and streams started, not yet freed */
    long max_calls;                  /* 0 = unbounded */
    char max_calls_name[64];
    int started, shutting_down, shutdown_done;
    struct rpc_tag t_shutdown;
    rpc_observe_fn observe;          /* NULL: not observed */
    void *observe_arg;
    int (*authorize)(void *, grpc_call *, const char *, const char *, size_t, const char **);
    void *authorize_arg;
    grpc_server_credentials *creds;  /* NULL = plaintext; released at start */
};

/* A call of method `m` ends with `code`. */
static void observe(struct rpc_server *srv, const struct rpc_method *m, int code, int64_t t0_ns)
{
    if (!srv->observe) return;
    srv->observe(srv->observe_arg, m->handle ? (int)(m - srv->methods) : -1, code,
                 rpc_now_ns() - t0_ns);
}

void rpc_server_observe(struct rpc_server *srv, rpc_observe_fn fn, void *arg)
{
    srv->observe = fn;
    srv->observe_arg = arg;
}

int rpc_server_nmethods(const struct rpc_server *srv)
{
    return srv->nmethods;
}

const char *rpc_server_method(const struct rpc_server *srv, int method)
{
    return method >= 0 && method < srv->nmethods ? srv->names[method] : NULL;
}

static void server_on_new(void *owner, int ok);
static void server_on_close(void *owner, int ok);
static void server_on_send(void *owner, int ok);

static void call_free(struct rpc_call *c)
{
    struct rpc_server *srv = c->srv;
    if (c->call) grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->md);
    if (c->method->handle == NULL) grpc_call_details_destroy(&c->details);
    if (c->payload) grpc_byte_buffer_destroy(c->payload);
    if (c->send_bb) grpc_byte_buffer_destroy(c->send_bb);
    if (c->status_details_set) grpc_slice_unref(c->status_details);
    for (size_t i = 0; i < c->ntrailer; i++) {
        grpc_slice_unref(c->trailer[i].key);
        grpc_slice_unref(c->trailer[i].value);
    }
    if (c->started) srv->nopen--;
    free(c);
    srv->ncalls--;
}

static void call_maybe_free(struct rpc_call *c)
{
    if (c->close_pending || c->send_pending || !c->answered) return;
    call_free(c);
}

static void scall_request(struct rpc_method *m);

static void request_one(struct rpc_method *m)
{
    struct rpc_server *srv = m->srv;
    struct rpc_call *c;
    grpc_call_error e;

    if (m->on_open) {
        scall_request(m);
        return;
    }
    c = calloc(1, sizeof *c);
    if (!c) abort();
    c->srv = srv;
    c->method = m;
    c->t_new = (struct rpc_tag){server_on_new, c};
    c->t_close = (struct rpc_tag){server_on_close, c};
    c->t_send = (struct rpc_tag){server_on_send, c};
    grpc_metadata_array_init(&c->md);
    srv->ncalls++;
    if (m->handle) {
        e = grpc_server_request_registered_call(srv->server, m->handle, &c->call, &c->deadline,
                                                &c->md, &c->payload, srv->loop->cq, srv->loop->cq,
                                                &c->t_new);
    } else {
        grpc_call_details_init(&c->details);
        e = grpc_server_request_call(srv->server, &c->call, &c->details, &c->md, srv->loop->cq,
                                     srv->loop->cq, &c->t_new);
    }
    if (e != GRPC_CALL_OK) {
        LOG_ERROR(srv->loop->log, "rpc.request_failed", "code=%d", (int)e);
        c->answered = 1;
        call_free(c);
    }
}

/* The server's authorize hook on a new call (rpc_server_options). Returns
 * 0 or the status to refuse it with (*msg: its details). */
static int authorize(struct rpc_server *srv, grpc_call *call, const char *method,
                     const grpc_metadata_array *md, const char **msg)
{
    const grpc_slice *val = NULL;
    int n = 0;

    if (!srv->authorize) return 0;
    for (size_t i = 0; i < md->count; i++)
        if (grpc_slice_str_cmp(md->metadata[i].key, "authorization") == 0) {
            val = &md->metadata[i].value;
            n++;
        }
    if (n != 1) val = NULL;
    return srv->authorize(srv->authorize_arg, call, method,
                          val ? (const char *)GRPC_SLICE_START_PTR(*val) : NULL,
                          val ? GRPC_SLICE_LENGTH(*val) : 0, msg);
}

static void server_on_new(void *owner, int ok)
{
    struct rpc_call *c = owner;
    struct rpc_server *srv = c->srv;
    grpc_op op;
    grpc_slice s;

    if (!ok) {                       /* server shutting down */
        c->answered = 1;
        call_free(c);
        return;
    }
    if (!srv->shutting_down) request_one(c->method);   /* re-arm first */

    c->started = 1;
    if (srv->observe) c->t0_ns = rpc_now_ns();
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    c->close_pending = 1;
    start_batch(c->call, &op, 1, &c->t_close);

    srv->nopen++;
    if (srv->max_calls && srv->nopen > srv->max_calls) {
        rpc_call_error(c, RPC_RESOURCE_EXHAUSTED, "too many concurrent calls (%s = %ld)",
                       srv->max_calls_name, srv->max_calls);
        return;
    }
    if (srv->authorize) {
        char name[256] = "";
        const char *msg = NULL;
        int code;
        if (c->method->handle == NULL)   /* unknown method: classed by its name */
            snprintf(name, sizeof name, "%.*s", (int)GRPC_SLICE_LENGTH(c->details.method),
                     (const char *)GRPC_SLICE_START_PTR(c->details.method));
        code = authorize(srv, c->call, c->method->handle ? c->method->name : name, &c->md, &msg);
        if (code != 0) {
            rpc_call_error(c, code, "%s", msg ? msg : "refused");
            return;
        }
    }
    if (c->method->handle == NULL) {
        rpc_call_error(c, RPC_UNIMPLEMENTED, "unknown method");
        return;
    }
    if (c->payload == NULL) {
        rpc_call_error(c, RPC_INVALID_ARGUMENT, "request message missing");
        return;
    }
    if (bb_read(c->payload, &s) != 0) {
        rpc_call_error(c, RPC_INVALID_ARGUMENT, "unreadable request message");
        return;
    }
    grpc_byte_buffer_destroy(c->payload);
    c->payload = NULL;
    c->method->on_request(c->method->arg, c, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
    grpc_slice_unref(s);
}

static void server_on_close(void *owner, int ok)
{
    struct rpc_call *c = owner;
    (void)ok;
    c->close_pending = 0;
    if (!c->answered && c->cancel_fn) {
        c->answered = 1;             /* the handle dies with the callback */
        observe(c->srv, c->method, RPC_CANCELLED, c->t0_ns);
        c->cancel_fn(c->cancel_arg, c);
    }
    call_maybe_free(c);
}

static void server_on_send(void *owner, int ok)
{
    struct rpc_call *c = owner;
    (void)ok;
    c->send_pending = 0;
    call_maybe_free(c);
}

static void call_finish(struct rpc_call *c, int code, const char *details, uint8_t *data,
                        size_t len)
{
    grpc_op ops[3];
    size_t n = 0;

    if (c->answered) {               /* the module answered after a cancel */
        free(data);
        return;
    }
    c->answered = 1;
    observe(c->srv, c->method, code, c->t0_ns);
    memset(ops, 0, sizeof ops);
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (data) {
        c->send_bb = bb_from_owned(data, len);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->send_bb;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)code;
    if (details && details[0]) {
        c->status_details = grpc_slice_from_copied_string(details);
        c->status_details_set = 1;
        ops[n].data.send_status_from_server.status_details = &c->status_details;
    }
    ops[n].data.send_status_from_server.trailing_metadata_count = c->ntrailer;
    ops[n].data.send_status_from_server.trailing_metadata = c->ntrailer ? c->trailer : NULL;
    n++;
    c->send_pending = 1;
    start_batch(c->call, ops, n, &c->t_send);
}

void rpc_call_reply(struct rpc_call *c, const ProtobufCMessage *resp)
{
    size_t len;
    uint8_t *data = rpc_pack(resp, &len);
    call_finish(c, RPC_OK, NULL, data, len);
    call_maybe_free(c);
}

void rpc_call_reply_raw(struct rpc_call *c, uint8_t *data, size_t len)
{
    call_finish(c, RPC_OK, NULL, data, len);
    call_maybe_free(c);
}

void rpc_call_error(struct rpc_call *c, int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    call_finish(c, code, msg, NULL, 0);
    call_maybe_free(c);
}

void rpc_call_error_md(struct rpc_call *c, int code, const char *const *md, size_t nmd,
                       const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (size_t i = 0; i < nmd && c->ntrailer < RPC_MAX_TRAILER && !c->answered; i++) {
        c->trailer[c->ntrailer].key = grpc_slice_from_copied_string(md[2 * i]);
        c->trailer[c->ntrailer].value = grpc_slice_from_copied_string(md[2 * i + 1]);
        c->ntrailer++;
    }
    call_finish(c, code, msg, NULL, 0);
    call_maybe_free(c);
}

void rpc_call_add_trailer(struct rpc_call *c, const char *const *md, size_t nmd)
{
    for (size_t i = 0; i < nmd && c->ntrailer < RPC_MAX_TRAILER && !c->answered; i++) {
        c->trailer[c->ntrailer].key = grpc_slice_from_copied_string(md[2 * i]);
        c->trailer[c->ntrailer].value = grpc_slice_from_copied_string(md[2 * i + 1]);
        c->ntrailer++;
    }
}

int rpc_call_has_metadata(const struct rpc_call *c, const char *key)
{
    for (size_t i = 0; i < c->md.count; i++)
        if (grpc_slice_str_cmp(c->md.metadata[i].key, key) == 0) return 1;
    return 0;
}

void rpc_call_set_cancel(struct rpc_call *c, rpc_cancel_fn fn, void *arg)
{
    c->cancel_fn = fn;
    c->cancel_arg = arg;
}

int64_t rpc_call_deadline_ms(const struct rpc_call *c)
{
    gpr_timespec d = gpr_convert_clock_type(c->deadline, GPR_CLOCK_MONOTONIC);
    gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
    if (gpr_time_cmp(d, gpr_inf_future(GPR_CLOCK_MONOTONIC)) == 0) return INT64_MAX;
    return gpr_time_to_millis(gpr_time_sub(d, now));
}

int rpc_server_create(struct rpc_server **out, struct rpc_loop *loop,
                      const struct rpc_server_options *opt)
{
    struct rpc_server *srv = calloc(1, sizeof *srv);
    grpc_arg args[4];
    grpc_channel_args ca;
    grpc_resource_quota *quota = NULL;
    size_t n = 2;

    if (!srv) {
        if (opt->creds) grpc_server_credentials_release(opt->creds);
        return -1;
    }
    srv->creds = opt->creds;
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = opt->max_receive_bytes > INT32_MAX ? INT32_MAX
                                                                : (int)opt->max_receive_bytes;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = (char *)GRPC_ARG_ALLOW_REUSEPORT;   /* never share a port silently */
    args[1].value.integer = 0;
    if (opt->max_streams_per_connection > 0) {
        args[n].type = GRPC_ARG_INTEGER;
        args[n].key = (char *)GRPC_ARG_MAX_CONCURRENT_STREAMS;
        args[n++].value.integer = opt->max_streams_per_connection;
    }
    if (opt->memory_quota_bytes > 0) {
        /* The chttp2 transport of gRPC 1.51 opens its flow-control window to
         * a message's full length once it has read the 5-byte prefix and
         * checks max_receive_bytes only after the whole message arrived; the
         * quota is what stops it buffering (it resets streams over it). */
        quota = grpc_resource_quota_create("ingress");
        grpc_resource_quota_resize(quota, opt->memory_quota_bytes);
        args[n].type = GRPC_ARG_POINTER;
        args[n].key = (char *)GRPC_ARG_RESOURCE_QUOTA;
        args[n].value.pointer.p = quota;
        args[n++].value.pointer.vtable = grpc_resource_quota_arg_vtable();
    }
    ca.num_args = n;
    ca.args = args;
    srv->loop = loop;
    srv->max_calls = opt->max_calls;
    srv->authorize = opt->authorize;
    srv->authorize_arg = opt->authorize_arg;
    snprintf(srv->max_calls_name, sizeof srv->max_calls_name, "%s",
             opt->max_calls_name ? opt->max_calls_name : "max_calls");
    srv->server = grpc_server_create(&ca, NULL);
    if (quota) grpc_resource_quota_unref(quota);   /* the server holds its own ref */
    grpc_server_register_completion_queue(srv->server, loop->cq, NULL);
    srv->catchall.srv = srv;
    srv->catchall.name = "*";
    srv->t_shutdown.owner = srv;
    *out = srv;
    return 0;
}

/* Registers a method: unary (on_request, payload read with the call) or
 * streaming (on_open, messages read on demand). */
static int add_method(struct rpc_server *srv, const char *method, rpc_request_fn on_request,
                      rpc_stream_open_fn on_open, void *arg)
{
    struct rpc_method *m;
    if (srv->started || srv->nmethods == RPC_MAX_METHODS) return -1;
    m = &srv->methods[srv->nmethods];
    srv->names[srv->nmethods] = strdup(method);
    if (!srv->names[srv->nmethods]) return -1;
    m->srv = srv;
    m->name = srv->names[srv->nmethods];
    m->on_request = on_request;
    m->on_open = on_open;
    m->arg = arg;
    m->handle = grpc_server_register_method(srv->server, m->name, NULL,
                                            on_open ? GRPC_SRM_PAYLOAD_NONE
                                                    : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    if (!m->handle) return -1;
    srv->nmethods++;
    return 0;
}

int rpc_server_add_unary(struct rpc_server *srv, const char *method, rpc_request_fn on_request,
                         void *arg)
{
    return add_method(srv, method, on_request, NULL, arg);
}

int rpc_server_add_stream(struct rpc_server *srv, const char *method, rpc_stream_open_fn on_open,
                          void *arg)
{
    return add_method(srv, method, NULL, on_open, arg);
}

/* ---- server streams --------------------------------------------------------
 *
 *   requested --on_new--> open: RECV_CLOSE_ON_SERVER posted, module's on_open
 *   open: reads (one at a time), sends (one at a time), then finish
 *   finish while a send is in flight: the status goes out after it
 *   close completes before finish: on_cancel, module lets go
 *   freed when close, send, recv and status have all completed and the
 *   module has finished or been told of the cancel.
 */
struct rpc_scall {
    struct rpc_server *srv;
    struct rpc_method *method;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *send_bb, *recv_bb;
    grpc_slice status_details;
    int status_details_set;
    int cancelled;
    int fin_code;
    char fin_msg[512];
    struct rpc_tag t_new, t_close, t_send, t_recv, t_status;
    unsigned close_pending : 1, send_pending : 1, recv_pending : 1, status_pending : 1,
        md_sent : 1, finished : 1, fin_deferred : 1, half_closed : 1, dead : 1, started : 1;
    struct rpc_scall_callbacks cb;
    void *arg;
    int64_t t0_ns;                   /* started (observed servers only) */
};

static void scall_maybe_free(struct rpc_scall *c)
{
    struct rpc_server *srv = c->srv;
    if (c->close_pending || c->send_pending || c->recv_pending || c->status_pending) return;
    if (!c->finished && !c->dead) return;
    if (c->call) grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->md);
    if (c->send_bb) grpc_byte_buffer_destroy(c->send_bb);
    if (c->recv_bb) grpc_byte_buffer_destroy(c->recv_bb);
    if (c->status_details_set) grpc_slice_unref(c->status_details);
    if (c->started) srv->nopen--;
    free(c);
    srv->ncalls--;
}

static void scall_on_status(void *owner, int ok)
{
    struct rpc_scall *c = owner;
    (void)ok;
    c->status_pending = 0;
    scall_maybe_free(c);
}

static void scall_send_status(struct rpc_scall *c)
{
    grpc_op ops[2];
    size_t n = 0;

    memset(ops, 0, sizeof ops);
    if (!c->md_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->md_sent = 1;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)c->fin_code;
    if (c->fin_msg[0]) {
        c->status_details = grpc_slice_from_copied_string(c->fin_msg);
        c->status_details_set = 1;
        ops[n].data.send_status_from_server.status_details = &c->status_details;
    }
    n++;
    c->status_pending = 1;
    start_batch(c->call, ops, n, &c->t_status);
}

static void scall_on_send(void *owner, int ok)
{
    struct rpc_scall *c = owner;
    c->send_pending = 0;
    if (c->send_bb) grpc_byte_buffer_destroy(c->send_bb);
    c->send_bb = NULL;
    if (c->fin_deferred) {
        c->fin_deferred = 0;
        if (!c->dead) scall_send_status(c);
    } else if (ok && !c->finished && !c->dead && c->cb.on_writable) {
        c->cb.on_writable(c->arg, c);
    }
    scall_maybe_free(c);
}

static void scall_on_recv(void *owner, int ok)
{
    struct rpc_scall *c = owner;
    grpc_slice data;

    c->recv_pending = 0;
    if (c->finished || c->dead) {
        scall_maybe_free(c);
        return;
    }
    if (ok && c->recv_bb) {
        int rc = bb_read(c->recv_bb, &data);
        grpc_byte_buffer_destroy(c->recv_bb);
        c->recv_bb = NULL;
        if (rc != 0) {
            rpc_scall_finish(c, RPC_INVALID_ARGUMENT, "unreadable request message");
        } else {
            c->cb.on_message(c->arg, c, GRPC_SLICE_START_PTR(data), GRPC_SLICE_LENGTH(data));
            grpc_slice_unref(data);
        }
    } else if (ok) {
        c->half_closed = 1;
        c->cb.on_message(c->arg, c, NULL, 0);
    }
    /* !ok: the call is dying; the close completion delivers on_cancel. */
    scall_maybe_free(c);
}

static void scall_on_close(void *owner, int ok)
{
    struct rpc_scall *c = owner;
    (void)ok;
    c->close_pending = 0;
    if (!c->finished && !c->dead) {
        c->dead = 1;
        observe(c->srv, c->method, RPC_CANCELLED, c->t0_ns);
        if (c->cb.on_cancel) c->cb.on_cancel(c->arg, c);
    }
    scall_maybe_free(c);
}

static void scall_on_new(void *owner, int ok)
{
    struct rpc_scall *c = owner;
    struct rpc_server *srv = c->srv;
    grpc_op op;

    if (!ok) {
        c->dead = 1;
        scall_maybe_free(c);
        return;
    }
    if (!srv->shutting_down) request_one(c->method);
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    c->close_pending = 1;
    start_batch(c->call, &op, 1, &c->t_close);
    c->started = 1;
    if (srv->observe) c->t0_ns = rpc_now_ns();
    srv->nopen++;
    if (srv->max_calls && srv->nopen > srv->max_calls) {
        rpc_scall_finish(c, RPC_RESOURCE_EXHAUSTED, "too many concurrent calls (%s = %ld)",
                         srv->max_calls_name, srv->max_calls);
        return;
    }
    if (srv->authorize) {
        const char *msg = NULL;
        int code = authorize(srv, c->call, c->method->name, &c->md, &msg);
        if (code != 0) {
            rpc_scall_finish(c, code, "%s", msg ? msg : "refused");
            return;
        }
    }
    c->method->on_open(c->method->arg, c);
}

static void scall_request(struct rpc_method *m)
{
    struct rpc_server *srv = m->srv;
    struct rpc_scall *c = calloc(1, sizeof *c);
    grpc_call_error e;

    if (!c) abort();
    c->srv = srv;
    c->method = m;
    c->t_new = (struct rpc_tag){scall_on_new, c};
    c->t_close = (struct rpc_tag){scall_on_close, c};
    c->t_send = (struct rpc_tag){scall_on_send, c};
    c->t_recv = (struct rpc_tag){scall_on_recv, c};
    c->t_status = (struct rpc_tag){scall_on_status, c};
    grpc_metadata_array_init(&c->md);
    srv->ncalls++;
    e = grpc_server_request_registered_call(srv->server, m->handle, &c->call, &c->deadline,
                                            &c->md, NULL, srv->loop->cq, srv->loop->cq, &c->t_new);
    if (e != GRPC_CALL_OK) {
        LOG_ERROR(srv->loop->log, "rpc.request_failed", "code=%d", (int)e);
        c->dead = 1;
        scall_maybe_free(c);
    }
}

void rpc_scall_set(struct rpc_scall *c, const struct rpc_scall_callbacks *cb, void *arg)
{
    c->cb = *cb;
    c->arg = arg;
}

void rpc_scall_read(struct rpc_scall *c)
{
    grpc_op op;
    if (c->recv_pending || c->half_closed || c->finished || c->dead) return;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_bb;
    c->recv_pending = 1;
    start_batch(c->call, &op, 1, &c->t_recv);
}

int rpc_scall_writable(const struct rpc_scall *c)
{
    return !c->send_pending && !c->finished && !c->dead;
}

int rpc_scall_send(struct rpc_scall *c, uint8_t *data, size_t len)
{
    grpc_op ops[2];
    size_t n = 0;

    if (!rpc_scall_writable(c)) {
        free(data);
        return -1;
    }
    memset(ops, 0, sizeof ops);
    if (!c->md_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->md_sent = 1;
    }
    c->send_bb = bb_from_owned(data, len);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = c->send_bb;
    c->send_pending = 1;
    start_batch(c->call, ops, n, &c->t_send);
    return 0;
}

void rpc_scall_finish(struct rpc_scall *c, int code, const char *fmt, ...)
{
    va_list ap;

    if (c->finished || c->dead) return;
    c->finished = 1;
    observe(c->srv, c->method, code, c->t0_ns);
    c->fin_code = code;
    c->fin_msg[0] = '\0';
    if (fmt) {
        va_start(ap, fmt);
        vsnprintf(c->fin_msg, sizeof c->fin_msg, fmt, ap);
        va_end(ap);
    }
    if (c->send_pending) c->fin_deferred = 1;
    else scall_send_status(c);
    scall_maybe_free(c);
}

int rpc_server_start(struct rpc_server *srv, const char *addr)
{
    grpc_server_credentials *creds = srv->creds ? srv->creds
                                                : grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(srv->server, addr, creds);
    grpc_server_credentials_release(creds);
    srv->creds = NULL;
    if (port == 0) {
        LOG_ERROR(srv->loop->log, "rpc.bind_failed", "addr=%s", addr);
        return -1;
    }
    grpc_server_start(srv->server);
    srv->started = 1;
    for (int i = 0; i < srv->nmethods; i++)
        for (int k = 0; k < RPC_PREPOSTED; k++) request_one(&srv->methods[i]);
    for (int k = 0; k < 4; k++) request_one(&srv->catchall);
    return 0;
}

static void server_on_shutdown(void *owner, int ok)
{
    struct rpc_server *srv = owner;
    (void)ok;
    srv->shutdown_done = 1;
}

void rpc_server_shutdown(struct rpc_server *srv)
{
    if (srv->shutting_down) return;
    srv->shutting_down = 1;
    srv->t_shutdown.fn = server_on_shutdown;
    if (!srv->started) {
        srv->shutdown_done = 1;
        return;
    }
    grpc_server_shutdown_and_notify(srv->server, srv->loop->cq, &srv->t_shutdown);
}

void rpc_server_cancel_all(struct rpc_server *srv)
{
    if (srv->started) grpc_server_cancel_all_calls(srv->server);
}

int rpc_server_done(const struct rpc_server *srv)
{
    return srv->shutdown_done && srv->ncalls == 0;
}

void rpc_server_destroy(struct rpc_server **srvp)
{
    struct rpc_server *srv = *srvp;
    if (!srv) return;
    grpc_server_destroy(srv->server);
    if (srv->creds) grpc_server_credentials_release(srv->creds);
    for (int i = 0; i < srv->nmethods; i++) free(srv->names[i]);
    free(srv);
    *srvp = NULL;
}

/* ---- peer identity (rpc.h) ------------------------------------------------ */

/* The values of property `name` (NULL: the peer-identity properties gRPC
 * chose, SANs or else the CN) of a call with a verified client
 * certificate, joined by ','. */
static int peer_property(grpc_call *call, const char *name, char *buf, size_t len)
{
    grpc_auth_context *ctx;
    grpc_auth_property_iterator it;
    const grpc_auth_property *p;
    size_t used = 0;
    int found = 0;

    if (len) buf[0] = '\0';
    if (!call || !(ctx = grpc_call_auth_context(call))) return 0;
    /* Only a certificate the server verified names anyone (gRPC fills the
     * x509 properties from whatever the handshake saw). */
    if (grpc_auth_context_peer_is_authenticated(ctx)) {
        it = name ? grpc_auth_context_find_properties_by_name(ctx, name)
                  : grpc_auth_context_peer_identity(ctx);
        while ((p = grpc_auth_property_iterator_next(&it)) != NULL) {
            size_t n = p->value_length;
            if (!len || used + (found ? 1 : 0) + 1 > len) break;
            if (found) buf[used++] = ',';
            if (n > len - used - 1) n = len - used - 1;
            memcpy(buf + used, p->value, n);
            used += n;
            buf[used] = '\0';
            found = 1;
        }
    }
    grpc_auth_context_release(ctx);
    return found;
}

int rpc_call_peer_identity(const struct rpc_call *call, char *buf, size_t len)
{
    return peer_property(call->call, NULL, buf, len);
}

int rpc_scall_peer_identity(const struct rpc_scall *c, char *buf, size_t len)
{
    return peer_property(c->call, NULL, buf, len);
}

int rpc_peer_identity_each(grpc_call *call, void (*fn)(void *arg, const char *value, size_t len),
                           void *arg)
{
    grpc_auth_context *ctx;
    grpc_auth_property_iterator it;
    const grpc_auth_property *p;
    int n = 0;

    if (!call || !(ctx = grpc_call_auth_context(call))) return 0;
    if (grpc_auth_context_peer_is_authenticated(ctx)) {
        it = grpc_auth_context_peer_identity(ctx);
        while ((p = grpc_auth_property_iterator_next(&it)) != NULL) {
            fn(arg, p->value, p->value_length);
            n++;
        }
    }
    grpc_auth_context_release(ctx);
    return n;
}

int rpc_call_peer_subject(const struct rpc_call *call, char *buf, size_t len)
{
    return peer_property(call->call, GRPC_X509_SUBJECT_PROPERTY_NAME, buf, len);
}

int rpc_scall_peer_subject(const struct rpc_scall *c, char *buf, size_t len)
{
    return peer_property(c->call, GRPC_X509_SUBJECT_PROPERTY_NAME, buf, len);
}

/* ---- client ------------------------------------------------------------- */

struct rpc_channel {
    struct rpc_loop *loop;
    grpc_channel *ch;
    long ncalls;
};

int rpc_channel_create(struct rpc_channel **out, struct rpc_loop *loop, const char *target,
                       const struct rpc_channel_options *opt)
{
    struct rpc_channel *ch = calloc(1, sizeof *ch);
    grpc_channel_credentials *creds;
    grpc_arg args[10];
    grpc_channel_args ca;
    size_t n = 4;

    if (!ch) return -1;
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = -1;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = (char *)GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
    args[1].value.integer = 100;
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = (char *)GRPC_ARG_MIN_RECONNECT_BACKOFF_MS;
    args[2].value.integer = 100;
    args[3].type = GRPC_ARG_INTEGER;
    args[3].key = (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
    args[3].value.integer = 2000;
    if (opt && opt->round_robin) {
        args[n].type = GRPC_ARG_STRING;
        args[n].key = (char *)GRPC_ARG_LB_POLICY_NAME;
        args[n++].value.string = (char *)"round_robin";
    }
    if (opt && opt->keepalive_ms > 0) {
        /* Pings also on idle streams (the default stops after two pings
         * without data, and dead peers go unnoticed); servers must permit
         * them: the SDKs allow pings every 5 s without calls. */
        args[n].type = GRPC_ARG_INTEGER;
        args[n].key = (char *)GRPC_ARG_KEEPALIVE_TIME_MS;
        args[n++].value.integer = opt->keepalive_ms;
        args[n].type = GRPC_ARG_INTEGER;
        args[n].key = (char *)GRPC_ARG_KEEPALIVE_TIMEOUT_MS;
        args[n++].value.integer = opt->keepalive_ms < 20000 ? opt->keepalive_ms : 20000;
        args[n].type = GRPC_ARG_INTEGER;
        args[n].key = (char *)GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA;
        args[n++].value.integer = 0;
        args[n].type = GRPC_ARG_INTEGER;
        args[n].key = (char *)GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS;
        args[n++].value.integer = 1;
    }
    ca.num_args = n;
    ca.args = args;
    creds = opt && opt->creds ? NULL : grpc_insecure_credentials_create();
    ch->ch = grpc_channel_create(target, creds ? creds : opt->creds, &ca);
    if (creds) grpc_channel_credentials_release(creds);
    ch->loop = loop;
    if (!ch->ch) {
        free(ch);
        return -1;
    }
    *out = ch;
    return 0;
}

long rpc_channel_calls(const struct rpc_channel *ch)
{
    return ch->ncalls;
}

void rpc_channel_destroy(struct rpc_channel **chp)
{
    struct rpc_channel *ch = *chp;
    if (!ch) return;
    if (ch->ncalls) SM_PANIC("rpc_channel_destroy with calls alive");
    grpc_channel_destroy(ch->ch);
    free(ch);
    *chp = NULL;
}

struct rpc_ucall {
    struct rpc_channel *ch;
    grpc_call *call;
    grpc_byte_buffer *send_bb, *recv_bb;
    grpc_metadata_array initial_md, trailing_md;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
    struct rpc_tag t_done;
    rpc_unary_done_fn on_done;
    rpc_forward_done_fn on_forward_done;  /* rpc_unary_forward */
    void *arg;
    grpc_metadata send_md[RPC_MAX_FORWARD_MD + 2];
    size_t nsend_md;
};

/* The trailing metadata keys a forwarded answer carries back (x-statemesh-*),
 * as NUL-terminated pairs in buf; returns the number of pairs. */
static size_t forward_trailer(const grpc_metadata_array *md, const char **kv, char *buf,
                              size_t buflen)
{
    size_t n = 0, used = 0;
    for (size_t i = 0; i < md->count && n < 4; i++) {
        size_t kl = GRPC_SLICE_LENGTH(md->metadata[i].key);
        size_t vl = GRPC_SLICE_LENGTH(md->metadata[i].value);
        const char *k = (const char *)GRPC_SLICE_START_PTR(md->metadata[i].key);
        if (kl < 12 || memcmp(k, "x-statemesh-", 12) != 0 || used + kl + vl + 2 > buflen) continue;
        memcpy(buf + used, k, kl);
        buf[used + kl] = '\0';
        kv[2 * n] = buf + used;
        used += kl + 1;
        memcpy(buf + used, GRPC_SLICE_START_PTR(md->metadata[i].value), vl);
        buf[used + vl] = '\0';
        kv[2 * n + 1] = buf + used;
        used += vl + 1;
        n++;
    }
    return n;
}

static void ucall_on_done(void *owner, int ok)
{
    struct rpc_ucall *u = owner;
    char details[512] = "";
    grpc_slice s;
    int status = ok ? (int)u->status : RPC_UNAVAILABLE;
    size_t dl = GRPC_SLICE_LENGTH(u->details);

    if (dl >= sizeof details) dl = sizeof details - 1;
    memcpy(details, GRPC_SLICE_START_PTR(u->details), dl);
    details[dl] = '\0';
    if (u->on_forward_done) {
        const char *kv[8];
        char buf[1024];
        size_t n = forward_trailer(&u->trailing_md, kv, buf, sizeof buf);
        if (status == RPC_OK && (!u->recv_bb || bb_read(u->recv_bb, &s) != 0)) {
            u->on_forward_done(u->arg, RPC_INTERNAL, "empty or unreadable response", NULL, 0, kv, n);
        } else if (status == RPC_OK) {
            u->on_forward_done(u->arg, RPC_OK, "", GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s),
                               kv, n);
            grpc_slice_unref(s);
        } else {
            u->on_forward_done(u->arg, status, details, NULL, 0, kv, n);
        }
    } else if (status == RPC_OK && (!u->recv_bb || bb_read(u->recv_bb, &s) != 0)) {
        u->on_done(u->arg, RPC_INTERNAL, "empty or unreadable response", NULL, 0);
    } else if (status == RPC_OK) {
        u->on_done(u->arg, RPC_OK, "", GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
        grpc_slice_unref(s);
    } else {
        u->on_done(u->arg, status, details, NULL, 0);
    }
    grpc_slice_unref(u->details);
    if (u->error_string) gpr_free((void *)u->error_string);
    grpc_metadata_array_destroy(&u->initial_md);
    grpc_metadata_array_destroy(&u->trailing_md);
    if (u->send_bb) grpc_byte_buffer_destroy(u->send_bb);
    if (u->recv_bb) grpc_byte_buffer_destroy(u->recv_bb);
    for (size_t i = 0; i < u->nsend_md; i++) {
        grpc_slice_unref(u->send_md[i].key);
        grpc_slice_unref(u->send_md[i].value);
    }
    grpc_call_unref(u->call);
    u->ch->ncalls--;
    free(u);
}

int rpc_unary_start(struct rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                    int64_t timeout_ms, rpc_unary_done_fn on_done, void *arg)
{
    struct rpc_ucall *u = calloc(1, sizeof *u);
    grpc_slice m = grpc_slice_from_copied_string(method);
    grpc_op ops[6];
    size_t len;
    uint8_t *data;

    if (!u) return -1;
    u->ch = ch;
    u->on_done = on_done;
    u->arg = arg;
    u->t_done = (struct rpc_tag){ucall_on_done, u};
    u->call = grpc_channel_create_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, ch->loop->cq, m,
                                       NULL, ms_to_deadline(rpc_now_ms() + timeout_ms), NULL);
    grpc_slice_unref(m);
    grpc_metadata_array_init(&u->initial_md);
    grpc_metadata_array_init(&u->trailing_md);
    data = rpc_pack(req, &len);
    u->send_bb = bb_from_owned(data, len);
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = u->send_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &u->initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &u->recv_bb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &u->trailing_md;
    ops[5].data.recv_status_on_client.status = &u->status;
    ops[5].data.recv_status_on_client.status_details = &u->details;
    ops[5].data.recv_status_on_client.error_string = &u->error_string;
    ch->ncalls++;
    start_batch(u->call, ops, 6, &u->t_done);
    return 0;
}

/* Request metadata that is the transport's or gRPC's own, never carried on. */
static int md_reserved(const grpc_slice *key)
{
    const char *k = (const char *)GRPC_SLICE_START_PTR(*key);
    size_t kl = GRPC_SLICE_LENGTH(*key);
    return kl == 0 || k[0] == ':' || (kl >= 5 && memcmp(k, "grpc-", 5) == 0) ||
           grpc_slice_str_cmp(*key, "user-agent") == 0 ||
           grpc_slice_str_cmp(*key, "content-type") == 0 || grpc_slice_str_cmp(*key, "te") == 0 ||
           grpc_slice_str_cmp(*key, "x-statemesh-forwarded") == 0;
}

/* Fills dst (room for RPC_MAX_FORWARD_MD + 2) with the request metadata of
 * `from` worth carrying on, then up to 2 pairs of md; returns the count. */
static size_t forward_md(grpc_metadata *dst, const grpc_metadata_array *from,
                         const char *const *md, size_t nmd)
{
    size_t n = 0;
    for (size_t i = 0; i < from->count && n < RPC_MAX_FORWARD_MD; i++) {
        if (md_reserved(&from->metadata[i].key)) continue;
        dst[n].key = grpc_slice_ref(from->metadata[i].key);
        dst[n].value = grpc_slice_ref(from->metadata[i].value);
        n++;
    }
    for (size_t i = 0; i < nmd && i < 2; i++) {
        dst[n].key = grpc_slice_from_copied_string(md[2 * i]);
        dst[n].value = grpc_slice_from_copied_string(md[2 * i + 1]);
        n++;
    }
    return n;
}

int rpc_unary_forward(struct rpc_ucall **out, struct rpc_channel *ch, const char *method,
                      const struct rpc_call *from, const uint8_t *req, size_t len,
                      const char *const *md, size_t nmd, int64_t timeout_ms,
                      rpc_forward_done_fn on_done, void *arg)
{
    struct rpc_ucall *u = calloc(1, sizeof *u);
    grpc_slice m = grpc_slice_from_copied_string(method);
    gpr_timespec deadline = timeout_ms < 0 ? gpr_inf_future(GPR_CLOCK_MONOTONIC)
                                           : ms_to_deadline(rpc_now_ms() + timeout_ms);
    uint8_t *data;
    grpc_op ops[6];

    if (!u) return -1;
    u->ch = ch;
    u->on_forward_done = on_done;
    u->arg = arg;
    u->t_done = (struct rpc_tag){ucall_on_done, u};
    u->call = grpc_channel_create_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, ch->loop->cq, m,
                                       NULL, deadline, NULL);
    grpc_slice_unref(m);
    u->nsend_md = forward_md(u->send_md, &from->md, md, nmd);
    grpc_metadata_array_init(&u->initial_md);
    grpc_metadata_array_init(&u->trailing_md);
    data = malloc(len ? len : 1);
    if (!data) abort();
    if (len) memcpy(data, req, len);
    u->send_bb = bb_from_owned(data, len);
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = u->nsend_md;
    ops[0].data.send_initial_metadata.metadata = u->nsend_md ? u->send_md : NULL;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = u->send_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &u->initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &u->recv_bb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &u->trailing_md;
    ops[5].data.recv_status_on_client.status = &u->status;
    ops[5].data.recv_status_on_client.status_details = &u->details;
    ops[5].data.recv_status_on_client.error_string = &u->error_string;
    ch->ncalls++;
    start_batch(u->call, ops, 6, &u->t_done);
    *out = u;
    return 0;
}

void rpc_unary_cancel(struct rpc_ucall *u)
{
    grpc_call_cancel(u->call, NULL);
}

struct rpc_stream {
    struct rpc_channel *ch;
    grpc_call *call;
    struct rpc_stream_callbacks cb;
    void *arg;
    grpc_byte_buffer *send_bb, *recv_bb;
    grpc_metadata_array initial_md, trailing_md;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
    struct rpc_tag t_start, t_recv, t_send, t_status;
    int pending;                 /* batches outstanding */
    unsigned send_inflight : 1, status_received : 1;
    grpc_metadata send_md[RPC_MAX_FORWARD_MD + 2];   /* rpc_stream_open_forward */
    size_t nsend_md;
};

static void stream_maybe_close(struct rpc_stream *s)
{
    char details[512];
    size_t dl;

    if (!s->status_received || s->pending) return;
    dl = GRPC_SLICE_LENGTH(s->details);
    if (dl >= sizeof details) dl = sizeof details - 1;
    memcpy(details, GRPC_SLICE_START_PTR(s->details), dl);
    details[dl] = '\0';
    s->cb.on_closed(s->arg, (int)s->status, details);
    grpc_slice_unref(s->details);
    if (s->error_string) gpr_free((void *)s->error_string);
    grpc_metadata_array_destroy(&s->initial_md);
    grpc_metadata_array_destroy(&s->trailing_md);
    for (size_t i = 0; i < s->nsend_md; i++) {
        grpc_slice_unref(s->send_md[i].key);
        grpc_slice_unref(s->send_md[i].value);
    }
    grpc_call_unref(s->call);
    s->ch->ncalls--;
    free(s);
}

static void stream_post_recv(struct rpc_stream *s)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &s->recv_bb;
    s->pending++;
    start_batch(s->call, &op, 1, &s->t_recv);
}

static void stream_on_start(void *owner, int ok)
{
    struct rpc_stream *s = owner;
    (void)ok;
    s->pending--;
    stream_maybe_close(s);
}

static void stream_on_recv(void *owner, int ok)
{
    struct rpc_stream *s = owner;
    grpc_slice data;

    s->pending--;
    if (ok && s->recv_bb) {
        int rc = bb_read(s->recv_bb, &data);
        grpc_byte_buffer_destroy(s->recv_bb);
        s->recv_bb = NULL;
        if (rc == 0) {
            if (!s->status_received) stream_post_recv(s);
            s->cb.on_message(s->arg, GRPC_SLICE_START_PTR(data), GRPC_SLICE_LENGTH(data));
            grpc_slice_unref(data);
        } else {
            grpc_call_cancel_with_status(s->call, GRPC_STATUS_INTERNAL, "unreadable message", NULL);
        }
    }
    stream_maybe_close(s);
}

static void stream_on_send(void *owner, int ok)
{
    struct rpc_stream *s = owner;
    s->pending--;
    s->send_inflight = 0;
    grpc_byte_buffer_destroy(s->send_bb);
    s->send_bb = NULL;
    if (ok && !s->status_received && s->cb.on_writable) s->cb.on_writable(s->arg);
    stream_maybe_close(s);
}

static void stream_on_status(void *owner, int ok)
{
    struct rpc_stream *s = owner;
    (void)ok;
    s->pending--;
    s->status_received = 1;
    stream_maybe_close(s);
}

static int stream_open(struct rpc_stream **out, struct rpc_channel *ch, const char *method,
                       const grpc_metadata_array *from, const char *const *md, size_t nmd,
                       const struct rpc_stream_callbacks *cb, void *arg);

int rpc_stream_open(struct rpc_stream **out, struct rpc_channel *ch, const char *method,
                    const struct rpc_stream_callbacks *cb, void *arg)
{
    return stream_open(out, ch, method, NULL, NULL, 0, cb, arg);
}

int rpc_stream_open_forward(struct rpc_stream **out, struct rpc_channel *ch, const char *method,
                            const struct rpc_scall *from, const char *const *md, size_t nmd,
                            const struct rpc_stream_callbacks *cb, void *arg)
{
    return stream_open(out, ch, method, &from->md, md, nmd, cb, arg);
}

int rpc_scall_has_metadata(const struct rpc_scall *c, const char *key)
{
    for (size_t i = 0; i < c->md.count; i++)
        if (grpc_slice_str_cmp(c->md.metadata[i].key, key) == 0) return 1;
    return 0;
}

static int stream_open(struct rpc_stream **out, struct rpc_channel *ch, const char *method,
                       const grpc_metadata_array *from, const char *const *md, size_t nmd,
                       const struct rpc_stream_callbacks *cb, void *arg)
{
    struct rpc_stream *s = calloc(1, sizeof *s);
    grpc_slice m = grpc_slice_from_copied_string(method);
    grpc_op ops[2];

    if (!s) return -1;
    s->ch = ch;
    s->cb = *cb;
    s->arg = arg;
    s->t_start = (struct rpc_tag){stream_on_start, s};
    s->t_recv = (struct rpc_tag){stream_on_recv, s};
    s->t_send = (struct rpc_tag){stream_on_send, s};
    s->t_status = (struct rpc_tag){stream_on_status, s};
    grpc_metadata_array_init(&s->initial_md);
    grpc_metadata_array_init(&s->trailing_md);
    s->call = grpc_channel_create_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, ch->loop->cq, m,
                                       NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_slice_unref(m);
    ch->ncalls++;

    if (from) s->nsend_md = forward_md(s->send_md, from, md, nmd);
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = s->nsend_md;
    ops[0].data.send_initial_metadata.metadata = s->nsend_md ? s->send_md : NULL;
    ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[1].data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
    s->pending++;
    start_batch(s->call, ops, 2, &s->t_start);

    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[0].data.recv_status_on_client.trailing_metadata = &s->trailing_md;
    ops[0].data.recv_status_on_client.status = &s->status;
    ops[0].data.recv_status_on_client.status_details = &s->details;
    ops[0].data.recv_status_on_client.error_string = &s->error_string;
    s->pending++;
    start_batch(s->call, ops, 1, &s->t_status);

    stream_post_recv(s);
    *out = s;
    return 0;
}

int rpc_stream_writable(const struct rpc_stream *s)
{
    return !s->send_inflight && !s->status_received;
}

int rpc_stream_send(struct rpc_stream *s, uint8_t *data, size_t len)
{
    grpc_op op;
    if (!rpc_stream_writable(s)) {
        free(data);
        return -1;
    }
    s->send_bb = bb_from_owned(data, len);
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = s->send_bb;
    s->send_inflight = 1;
    s->pending++;
    start_batch(s->call, &op, 1, &s->t_send);
    return 0;
}

void rpc_stream_cancel(struct rpc_stream *s)
{
    grpc_call_cancel(s->call, NULL);
}
