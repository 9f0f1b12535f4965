/*
 * server — the gRPC function server (statemesh/function.h): FunctionService
 * over the gRPC C core, one thread, one NEXT completion queue.
 *
 * Every completion-queue tag is a `struct tag` embedded in the object it
 * belongs to, so starting an operation never allocates. A `struct call`
 * exists from the moment a request for a new call is posted until no
 * operation can complete on it any more:
 *
 *   posted ──new(ok=0: server shutting down)─────────────────────────▶ freed
 *     │ new(ok)  → post a replacement request first
 *     ▼
 *   Invoke:  {SEND_INITIAL_METADATA, RECV_CLOSE_ON_SERVER} → t_close
 *            RECV_MESSAGE → t_recv ─┐
 *     ┌─────────────────────────────┘
 *     │ on_recv: decode ToFunction (garbage → cancel INVALID_ARGUMENT),
 *     │          process every batch, append each packed BatchResponse to
 *     │          the outgoing chunks (a FromFunction is just its repeated
 *     │          field 1, so answers concatenate), pump, re-post RECV
 *     │          unless OUT_MAX bytes wait (backpressure)
 *     │ pump:    one SEND_MESSAGE in flight; it carries every answer queued
 *     │          so far (coalescing), up to CHUNK_MAX bytes per message
 *     │ end:     client half-close (recv NULL) or server shutdown, once the
 *     │          queue is empty → SEND_STATUS_FROM_SERVER (OK / UNAVAILABLE)
 *     ▼
 *   t_close fires (status sent and peer done, or peer gone/cancelled)
 *     └─ freed once `pending` (operations in flight) is 0
 *
 *   Describe: one batch {SEND_INITIAL_METADATA, SEND_MESSAGE, SEND_STATUS,
 *             RECV_CLOSE_ON_SERVER}; other methods get UNIMPLEMENTED the same way.
 *
 * Shutdown (SIGINT/SIGTERM, seen by sigtimedwait every <= TICK_MS):
 *   grpc_server_shutdown_and_notify; open Invoke streams flush their queued
 *   answers and end with UNAVAILABLE; after GRACE_MS (or a second signal)
 *   grpc_server_cancel_all_calls. When the shutdown tag has fired and every
 *   call is freed: grpc_server_destroy, then shut down and drain the CQ.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "smlog.h"
#include "tls_internal.h"
#include "statemesh/invoke.h"

#define PREPOST_INVOKE 4
#define PREPOST_DESCRIBE 2
#define CHUNK_MAX ((size_t)1 << 20)     /* coalesce answers up to this per message */
#define OUT_MAX ((size_t)32 << 20)      /* queued answer bytes before we stop reading */
#define MAX_RECV_BYTES (64 << 20)
#define GRACE_MS 2000
#define TICK_MS 100
#define MAX_LISTEN 8

struct tag {
    void (*fn)(void *owner, bool ok);
    void *owner;
};

enum call_kind { CALL_INVOKE, CALL_DESCRIBE, CALL_UNKNOWN };

struct out_chunk {
    struct out_chunk *next;
    uint8_t *buf;
    size_t len, cap;
};

struct call {
    sm_server *srv;
    enum call_kind kind;
    struct call *prev, *next;     /* srv->calls */
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_call_details details;    /* CALL_UNKNOWN */
    grpc_byte_buffer *recv_bb;
    grpc_byte_buffer *send_bb;
    struct tag t_new, t_recv, t_send, t_close, t_done;
    int pending;                  /* operations in flight on this struct */
    int cancelled;                /* RECV_CLOSE_ON_SERVER output */
    bool active;                  /* a client call is attached */
    bool closed;                  /* no further completions except `pending` */
    bool dead;                    /* cancelled by us: start nothing new */
    bool half_closed;
    bool status_sent;
    bool recv_posted;
    bool send_inflight;
    struct out_chunk *out_head, *out_tail;
    size_t out_bytes;
    uint64_t batches, failures;
    char peer[128];
};

struct listener {
    char *addr;
    char *path;      /* unix socket path, or NULL */
    char *lock_path;
    int lock_fd;
};

struct sm_server {
    sm_functions *fns;
    sm_log_level log_level;
    grpc_server *server;
    grpc_completion_queue *cq;
    void *m_invoke, *m_describe;
    struct listener listeners[MAX_LISTEN];
    size_t n_listeners;
    int port;
    bool started, ran;
    bool shutting_down, shutdown_done, cancelled_all;
    struct tag t_shutdown;
    gpr_timespec grace_deadline;
    struct call *calls;
    size_t n_calls;
    uint8_t *describe;            /* packed DescribeResponse */
    size_t describe_len;
    sm_arena *arena;              /* answers, reset after each batch */
    sm_arena *req_arena;          /* the unpacked ToFunction, reset after each message */
    sigset_t sigs, old_mask;
    uint64_t streams;
    struct sm__tls_pems tls;      /* sm_server_set_tls; tls_on = 0: plaintext */
    bool tls_on;
};

#define LOG(srv, lvl, ev, ...) SM__LOG((srv)->log_level, lvl, ev, __VA_ARGS__)

static void call_post(sm_server *srv, enum call_kind kind);
static void pump(struct call *c);

/* ---- outgoing answers ---- */

static void out_free(struct call *c)
{
    while (c->out_head) {
        struct out_chunk *ch = c->out_head;
        c->out_head = ch->next;
        free(ch->buf);
        free(ch);
    }
    c->out_tail = NULL;
    c->out_bytes = 0;
}

/* Appends r as one `responses` field (tag 1, length-delimited) of the
 * FromFunction being built. Returns SM_OK or SM_ENOMEM. */
static int out_append(struct call *c, const Statemesh__V1__BatchResponse *r)
{
    size_t n = statemesh__v1__batch_response__get_packed_size(r);
    uint8_t hdr[11];
    size_t h = 0, need;
    struct out_chunk *t = c->out_tail;

    hdr[h++] = 0x0a; /* field 1, wire type 2 */
    for (size_t v = n; ; v >>= 7) {
        hdr[h++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        if (v <= 0x7f) break;
    }
    need = h + n;
    if (!t || (t->len && t->len + need > CHUNK_MAX)) {
        t = calloc(1, sizeof *t);
        if (!t) return SM_ENOMEM;
        if (c->out_tail) c->out_tail->next = t;
        else c->out_head = t;
        c->out_tail = t;
    }
    if (t->cap - t->len < need) {
        size_t cap = t->cap ? t->cap * 2 : 4096;
        uint8_t *buf;
        while (cap < t->len + need) cap *= 2;
        if (!(buf = realloc(t->buf, cap))) return SM_ENOMEM;
        t->buf = buf;
        t->cap = cap;
    }
    memcpy(t->buf + t->len, hdr, h);
    statemesh__v1__batch_response__pack(r, t->buf + t->len + h);
    t->len += need;
    c->out_bytes += need;
    return SM_OK;
}

/* ---- call lifecycle ---- */

static void call_maybe_free(struct call *c)
{
    sm_server *srv = c->srv;

    if (c->pending > 0 || (c->active && !c->closed)) return;
    if (c->call) grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->md);
    if (c->kind == CALL_UNKNOWN) grpc_call_details_destroy(&c->details);
    if (c->recv_bb) grpc_byte_buffer_destroy(c->recv_bb);
    if (c->send_bb) grpc_byte_buffer_destroy(c->send_bb);
    out_free(c);
    if (c->prev) c->prev->next = c->next;
    else srv->calls = c->next;
    if (c->next) c->next->prev = c->prev;
    srv->n_calls--;
    free(c);
}

/* Cancels the call with a status for the client; nothing new is started. */
static void call_kill(struct call *c, grpc_status_code code, const char *why)
{
    char q[256];
    if (c->dead || c->closed) return;
    LOG(c->srv, SM_LOG_WARN, "fn.stream.abort", "peer=%s code=%d error=%s", c->peer, (int)code,
        sm__quote(q, sizeof q, why));
    grpc_call_cancel_with_status(c->call, code, why, NULL);
    c->dead = true;
    out_free(c);
}

static bool start(struct call *c, const grpc_op *ops, size_t n, struct tag *t)
{
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, t, NULL);
    if (e != GRPC_CALL_OK) {
        LOG(c->srv, SM_LOG_ERROR, "fn.grpc.error", "op=start_batch code=%d", (int)e);
        call_kill(c, GRPC_STATUS_INTERNAL, "function server: internal gRPC error");
        return false;
    }
    c->pending++;
    return true;
}

static void post_recv(struct call *c)
{
    grpc_op op;
    if (c->dead || c->closed || c->recv_posted || c->half_closed || c->status_sent ||
        c->srv->shutting_down || c->out_bytes >= OUT_MAX)
        return;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_bb;
    if (start(c, &op, 1, &c->t_recv)) c->recv_posted = true;
}

static void send_status(struct call *c, grpc_status_code code, const char *details)
{
    grpc_op op;
    grpc_slice d = grpc_slice_from_static_string(details);
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    op.data.send_status_from_server.status = code;
    op.data.send_status_from_server.status_details = &d;
    if (start(c, &op, 1, &c->t_done)) c->status_sent = true;
}

/* Starts the next send, or the final status when nothing is left to send. */
static void pump(struct call *c)
{
    if (c->dead || c->closed || c->send_inflight || c->status_sent) return;
    if (c->out_head) {
        struct out_chunk *ch = c->out_head;
        grpc_slice s = grpc_slice_new(ch->buf, ch->len, free);
        grpc_op op;

        c->out_head = ch->next;
        if (!c->out_head) c->out_tail = NULL;
        c->out_bytes -= ch->len;
        free(ch);
        c->send_bb = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_SEND_MESSAGE;
        op.data.send_message.send_message = c->send_bb;
        if (start(c, &op, 1, &c->t_send)) {
            c->send_inflight = true;
        } else {
            grpc_byte_buffer_destroy(c->send_bb);
            c->send_bb = NULL;
        }
        return;
    }
    if (c->half_closed) send_status(c, GRPC_STATUS_OK, "");
    else if (c->srv->shutting_down)
        send_status(c, GRPC_STATUS_UNAVAILABLE, "function server shutting down");
}

/* protobuf-c allocator over the server's request arena: unpacking a
 * ToFunction costs no malloc/free per field; the arena is reset afterwards. */
static void *pb_alloc(void *data, size_t size)
{
    return sm_arena_alloc(data, size);
}

static void pb_free(void *data, void *p)
{
    (void)data;
    (void)p;
}

/* Decodes one ToFunction and queues the answer to each of its batches. */
static void handle_message(struct call *c, grpc_byte_buffer *bb)
{
    sm_server *srv = c->srv;
    ProtobufCAllocator pba = {pb_alloc, pb_free, srv->req_arena};
    grpc_byte_buffer_reader r;
    grpc_slice s;
    Statemesh__V1__ToFunction *tf;

    if (!grpc_byte_buffer_reader_init(&r, bb)) {
        call_kill(c, GRPC_STATUS_INVALID_ARGUMENT, "cannot decompress ToFunction message");
        return;
    }
    s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    tf = statemesh__v1__to_function__unpack(&pba, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    if (!tf) {
        sm_arena_reset(srv->req_arena);
        call_kill(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed ToFunction message");
        return;
    }
    for (size_t i = 0; i < tf->n_batches; i++) {
        const Statemesh__V1__BatchRequest *req = tf->batches[i];
        Statemesh__V1__BatchResponse resp;
        int rc = sm_functions_process(srv->fns, req, srv->arena, &resp);

        if (rc == SM_OK) {
            c->batches++;
            if (resp.outcome_case == STATEMESH__V1__BATCH_RESPONSE__OUTCOME_FAILURE) {
                char q1[300], q2[300], q3[600];
                c->failures++;
                LOG(srv, SM_LOG_WARN, "fn.batch.failed", "type=%s id=%s batch_id=%llu error=%s",
                    sm__quote(q1, sizeof q1, req->target ? req->target->type : ""),
                    sm__quote(q2, sizeof q2, req->target ? req->target->id : ""),
                    (unsigned long long)req->batch_id,
                    sm__quote(q3, sizeof q3, resp.failure->message));
            } else if (resp.outcome_case == STATEMESH__V1__BATCH_RESPONSE__OUTCOME_INCOMPLETE) {
                char q1[300];
                LOG(srv, SM_LOG_INFO, "fn.batch.incomplete", "type=%s batch_id=%llu missing=%zu",
                    sm__quote(q1, sizeof q1, req->target->type),
                    (unsigned long long)req->batch_id, resp.incomplete->n_missing_states);
            }
            rc = out_append(c, &resp);
        }
        sm_arena_reset(srv->arena);
        if (rc != SM_OK) {
            call_kill(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "function server out of memory");
            break;
        }
    }
    sm_arena_reset(srv->req_arena); /* frees tf */
}

static void on_recv(void *owner, bool ok)
{
    struct call *c = owner;
    grpc_byte_buffer *bb = c->recv_bb;

    c->pending--;
    c->recv_posted = false;
    c->recv_bb = NULL;
    if (!ok || !bb) {
        c->half_closed = true; /* client done sending (or gone) */
    } else if (!c->dead && !c->status_sent) {
        handle_message(c, bb);
    }
    if (bb) grpc_byte_buffer_destroy(bb);
    pump(c);
    post_recv(c);
    call_maybe_free(c);
}

static void on_send(void *owner, bool ok)
{
    struct call *c = owner;

    c->pending--;
    c->send_inflight = false;
    grpc_byte_buffer_destroy(c->send_bb);
    c->send_bb = NULL;
    if (ok) {
        pump(c);
        post_recv(c); /* resumes reading if backpressure had paused it */
    }
    call_maybe_free(c);
}

static void on_close(void *owner, bool ok)
{
    struct call *c = owner;

    c->pending--;
    c->closed = true;
    LOG(c->srv, SM_LOG_INFO, "fn.stream.close", "peer=%s batches=%llu failures=%llu cancelled=%d",
        c->peer, (unsigned long long)c->batches, (unsigned long long)c->failures,
        c->cancelled);
    out_free(c);
    call_maybe_free(c);
}

/* Completion of a status batch (Invoke) or of the single unary batch. */
static void on_done(void *owner, bool ok)
{
    struct call *c = owner;

    c->pending--;
    if (c->kind != CALL_INVOKE) c->closed = true;
    call_maybe_free(c);
}

static void start_invoke(struct call *c)
{
    grpc_op ops[2];

    c->srv->streams++;
    LOG(c->srv, SM_LOG_INFO, "fn.stream.open", "peer=%s", c->peer);
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[1].data.recv_close_on_server.cancelled = &c->cancelled;
    if (!start(c, ops, 2, &c->t_close)) {
        c->closed = true; /* RECV_CLOSE never started: nothing will close us */
        return;
    }
    post_recv(c);
    pump(c); /* during shutdown: ends the stream at once */
}

static void start_unary(struct call *c)
{
    grpc_op ops[4];
    size_t n = 0;
    grpc_slice d;

    memset(ops, 0, sizeof ops);
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (c->kind == CALL_DESCRIBE) {
        grpc_slice s = grpc_slice_from_copied_buffer((const char *)c->srv->describe,
                                                     c->srv->describe_len);
        c->send_bb = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->send_bb;
        d = grpc_slice_from_static_string("");
        ops[n].data.send_status_from_server.status = GRPC_STATUS_OK;
        LOG(c->srv, SM_LOG_DEBUG, "fn.describe", "peer=%s", c->peer);
    } else {
        char *m = grpc_slice_to_c_string(c->details.method);
        char q[300];
        LOG(c->srv, SM_LOG_WARN, "fn.unimplemented", "peer=%s method=%s", c->peer,
            sm__quote(q, sizeof q, m));
        gpr_free(m);
        d = grpc_slice_from_static_string("method not served by this statemesh function server");
        ops[n].data.send_status_from_server.status = GRPC_STATUS_UNIMPLEMENTED;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n++].data.send_status_from_server.status_details = &d;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
    if (!start(c, ops, n, &c->t_done)) c->closed = true;
}

static void on_new(void *owner, bool ok)
{
    struct call *c = owner;
    sm_server *srv = c->srv;

    c->pending--;
    if (!ok) { /* the server is shutting down: the request is returned unused */
        call_maybe_free(c);
        return;
    }
    c->active = true;
    if (!srv->shutting_down) call_post(srv, c->kind); /* re-arm first */
    {
        char *peer = grpc_call_get_peer(c->call);
        sm__quote(c->peer, sizeof c->peer, peer);
        gpr_free(peer);
    }
    if (c->kind == CALL_INVOKE) start_invoke(c);
    else start_unary(c);
    call_maybe_free(c);
}

/* Posts a request for one new call of `kind`. */
static void call_post(sm_server *srv, enum call_kind kind)
{
    struct call *c = calloc(1, sizeof *c);
    grpc_call_error e;

    if (!c) {
        LOG(srv, SM_LOG_ERROR, "fn.oom", "what=call");
        return;
    }
    c->srv = srv;
    c->kind = kind;
    c->t_new = (struct tag){on_new, c};
    c->t_recv = (struct tag){on_recv, c};
    c->t_send = (struct tag){on_send, c};
    c->t_close = (struct tag){on_close, c};
    c->t_done = (struct tag){on_done, c};
    grpc_metadata_array_init(&c->md);
    strcpy(c->peer, "unknown");
    if (kind == CALL_UNKNOWN) {
        grpc_call_details_init(&c->details);
        e = grpc_server_request_call(srv->server, &c->call, &c->details, &c->md, srv->cq,
                                     srv->cq, &c->t_new);
    } else {
        e = grpc_server_request_registered_call(
            srv->server, kind == CALL_INVOKE ? srv->m_invoke : srv->m_describe, &c->call,
            &c->deadline, &c->md, kind == CALL_DESCRIBE ? &c->recv_bb : NULL, srv->cq, srv->cq,
            &c->t_new);
    }
    if (e != GRPC_CALL_OK) {
        LOG(srv, SM_LOG_ERROR, "fn.grpc.error", "op=request_call code=%d", (int)e);
        grpc_metadata_array_destroy(&c->md);
        if (kind == CALL_UNKNOWN) grpc_call_details_destroy(&c->details);
        free(c);
        return;
    }
    c->pending = 1;
    c->next = srv->calls;
    if (srv->calls) srv->calls->prev = c;
    srv->calls = c;
    srv->n_calls++;
}

/* ---- server ---- */

static void on_shutdown(void *owner, bool ok)
{
    sm_server *srv = owner;
    srv->shutdown_done = true;
}

sm_server *sm_server_create(sm_functions *fns)
{
    sm_server *srv;
    grpc_arg args[6];
    grpc_channel_args ch_args = {6, args};
    const char *keys[6] = {GRPC_ARG_ALLOW_REUSEPORT,
                           GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                           GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
                           GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS,
                           GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                           GRPC_ARG_HTTP2_MAX_PING_STRIKES};
    const int vals[6] = {0, MAX_RECV_BYTES, -1, 1, 1000, 0};

    if (!fns || !(srv = calloc(1, sizeof *srv))) return NULL;
    srv->fns = fns;
    srv->log_level = sm__log_level_parse(getenv("STATEMESH_LOG_LEVEL"), SM_LOG_INFO);
    srv->t_shutdown = (struct tag){on_shutdown, srv};
    for (size_t i = 0; i < MAX_LISTEN; i++) srv->listeners[i].lock_fd = -1;
    srv->arena = sm_arena_create();
    srv->req_arena = sm_arena_create();
    if (!srv->arena || !srv->req_arena) {
        sm_arena_destroy(&srv->arena);
        sm_arena_destroy(&srv->req_arena);
        free(srv);
        return NULL;
    }
    /* Block the stop signals before gRPC starts threads, so they inherit the
     * mask and the signals stay pending for sigtimedwait in sm_server_run. */
    sigemptyset(&srv->sigs);
    sigaddset(&srv->sigs, SIGINT);
    sigaddset(&srv->sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &srv->sigs, &srv->old_mask);

    grpc_init();
    for (size_t i = 0; i < 6; i++) {
        args[i].type = GRPC_ARG_INTEGER;
        args[i].key = (char *)keys[i];
        args[i].value.integer = vals[i];
    }
    srv->server = grpc_server_create(&ch_args, NULL);
    srv->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(srv->server, srv->cq, NULL);
    srv->m_invoke = grpc_server_register_method(srv->server, "/statemesh.v1.FunctionService/Invoke",
                                                NULL, GRPC_SRM_PAYLOAD_NONE, 0);
    srv->m_describe = grpc_server_register_method(
        srv->server, "/statemesh.v1.FunctionService/Describe", NULL,
        GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    return srv;
}

void sm_server_set_log_level(sm_server *srv, sm_log_level level)
{
    if (srv) srv->log_level = level;
}

int sm_server_port(const sm_server *srv)
{
    return srv ? srv->port : 0;
}

/* Path of a unix-socket address, or NULL for other kinds. */
static const char *unix_path(const char *addr)
{
    if (strncmp(addr, "unix://", 7) == 0) return addr + 7;
    if (strncmp(addr, "unix:", 5) == 0) return addr + 5;
    return NULL;
}

/* Takes an exclusive flock on lock_path, checking that the file we locked
 * is still the one at lock_path (a previous owner may unlink it on exit). */
static int lock_file(const char *lock_path, int *fd_out)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        struct stat a, b;
        int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) return -errno;
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            close(fd);
            return e == EWOULDBLOCK ? -EADDRINUSE : -e;
        }
        if (fstat(fd, &a) == 0 && stat(lock_path, &b) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino) {
            *fd_out = fd;
            return 0;
        }
        close(fd);
    }
    return -EAGAIN;
}

int sm_server_set_tls(sm_server *srv, const sm_tls_options *tls)
{
    char why[600], q[700];

    if (!srv || !tls) return SM_EINVAL;
    if (srv->started) return SM_ESTATE;
    if (srv->tls_on) sm__tls_pems_cleanup(&srv->tls);
    srv->tls_on = false;
    if (sm__tls_read(tls, 1, &srv->tls, why, sizeof why) != 0) {
        LOG(srv, SM_LOG_ERROR, "fn.tls.failed", "error=%s", sm__quote(q, sizeof q, why));
        return SM_EINVAL;
    }
    srv->tls_on = true;
    return SM_OK;
}

int sm_server_listen(sm_server *srv, const char *addr)
{
    struct listener *l;
    const char *path;
    grpc_server_credentials *creds;
    char q[600];
    int port, rc = SM_OK;

    if (!srv || !addr || !*addr) return SM_EINVAL;
    if (srv->started) return SM_ESTATE;
    sm__quote(q, sizeof q, addr);
    if (srv->n_listeners == MAX_LISTEN) {
        LOG(srv, SM_LOG_ERROR, "fn.listen.failed", "addr=%s error=\"too many addresses\"", q);
        return SM_EINVAL;
    }
    l = &srv->listeners[srv->n_listeners];
    memset(l, 0, sizeof *l);
    l->lock_fd = -1;
    if (!(l->addr = strdup(addr))) return SM_ENOMEM;
    path = unix_path(addr);
    if (path) {
        struct stat st;
        int e;
        if (!*path || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            LOG(srv, SM_LOG_ERROR, "fn.listen.failed",
                "addr=%s error=\"unix socket path empty or longer than 107 bytes\"", q);
            rc = SM_EINVAL;
            goto out;
        }
        l->path = strdup(path);
        l->lock_path = malloc(strlen(path) + 6);
        if (!l->path || !l->lock_path) {
            rc = SM_ENOMEM;
            goto out;
        }
        sprintf(l->lock_path, "%s.lock", path);
        if ((e = lock_file(l->lock_path, &l->lock_fd)) != 0) {
            char q2[600];
            if (e == -EADDRINUSE) {
                LOG(srv, SM_LOG_ERROR, "fn.listen.failed",
                    "addr=%s error=\"address in use: another function server holds %s\"", q,
                    sm__quote(q2, sizeof q2, l->lock_path) );
                rc = SM_EEXIST;
            } else {
                LOG(srv, SM_LOG_ERROR, "fn.listen.failed", "addr=%s lock=%s error=\"%s\"", q,
                    sm__quote(q2, sizeof q2, l->lock_path), strerror(-e));
                rc = SM_ESYS;
            }
            goto out;
        }
        if (lstat(path, &st) == 0) {
            if (!S_ISSOCK(st.st_mode)) {
                LOG(srv, SM_LOG_ERROR, "fn.listen.failed",
                    "addr=%s error=\"path exists and is not a socket\"", q);
                rc = SM_EEXIST;
                goto out;
            }
            unlink(path); /* stale socket of a dead server: we hold the lock */
        }
    }
    if (path && srv->tls_on) {
        LOG(srv, SM_LOG_ERROR, "fn.listen.failed", "addr=%s error=\"TLS is for host:port "
            "addresses; a unix socket stays plain\"", q);
        rc = SM_EINVAL;
        goto out;
    }
    creds = srv->tls_on ? sm__tls_server_credentials(&srv->tls)
                        : grpc_insecure_server_credentials_create();
    port = grpc_server_add_http2_port(srv->server, addr, creds);
    grpc_server_credentials_release(creds);
    if (port == 0) {
        LOG(srv, SM_LOG_ERROR, "fn.listen.failed",
            "addr=%s error=\"cannot bind (address in use, bad address or missing directory%s)\"",
            q, srv->tls_on ? ", or a TLS key that does not match its certificate" : "");
        rc = path ? SM_ESYS : SM_EEXIST;
        goto out;
    }
    srv->n_listeners++;
    if (path) {
        LOG(srv, SM_LOG_INFO, "fn.listen", "addr=%s", q);
    } else {
        srv->port = port;
        LOG(srv, SM_LOG_INFO, "fn.listen", "addr=%s port=%d", q, port);
    }
    return SM_OK;

out:
    if (l->lock_fd >= 0) close(l->lock_fd);
    free(l->addr);
    free(l->path);
    free(l->lock_path);
    memset(l, 0, sizeof *l);
    l->lock_fd = -1;
    return rc;
}

static int build_describe(sm_server *srv)
{
    Statemesh__V1__DescribeResponse d;
    int rc = sm_functions_describe(srv->fns, srv->arena, &d);
    if (rc == SM_OK) {
        srv->describe_len = statemesh__v1__describe_response__get_packed_size(&d);
        srv->describe = malloc(srv->describe_len ? srv->describe_len : 1);
        if (!srv->describe) rc = SM_ENOMEM;
        else statemesh__v1__describe_response__pack(&d, srv->describe);
    }
    sm_arena_reset(srv->arena);
    return rc;
}

static void begin_shutdown(sm_server *srv, int sig)
{
    srv->shutting_down = true;
    LOG(srv, SM_LOG_INFO, "fn.shutdown", "signal=%d calls=%zu", sig, srv->n_calls);
    grpc_server_shutdown_and_notify(srv->server, srv->cq, &srv->t_shutdown);
    srv->grace_deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                       gpr_time_from_millis(GRACE_MS, GPR_TIMESPAN));
    for (struct call *c = srv->calls; c; c = c->next)
        if (c->active && c->kind == CALL_INVOKE) pump(c);
}

static void cancel_all(sm_server *srv)
{
    if (srv->cancelled_all) return;
    srv->cancelled_all = true;
    LOG(srv, SM_LOG_INFO, "fn.shutdown.cancel", "calls=%zu", srv->n_calls);
    grpc_server_cancel_all_calls(srv->server);
}

static void drain_and_destroy_cq(sm_server *srv)
{
    grpc_completion_queue_shutdown(srv->cq);
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(srv->cq, gpr_inf_future(GPR_CLOCK_REALTIME),
                                                   NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type == GRPC_OP_COMPLETE) ((struct tag *)ev.tag)->fn(((struct tag *)ev.tag)->owner,
                                                                   ev.success);
    }
    grpc_completion_queue_destroy(srv->cq);
    srv->cq = NULL;
}

int sm_server_run(sm_server *srv)
{
    const struct timespec zero = {0, 0};
    gpr_timespec last_check;
    int rc;

    if (!srv) return SM_EINVAL;
    if (srv->ran || srv->n_listeners == 0) return SM_ESTATE;
    srv->ran = true;
    pthread_sigmask(SIG_BLOCK, &srv->sigs, NULL);
    if ((rc = build_describe(srv)) != SM_OK) return rc;
    grpc_server_start(srv->server);
    srv->started = true;
    for (int i = 0; i < PREPOST_INVOKE; i++) call_post(srv, CALL_INVOKE);
    for (int i = 0; i < PREPOST_DESCRIBE; i++) call_post(srv, CALL_DESCRIBE);
    call_post(srv, CALL_UNKNOWN);
    LOG(srv, SM_LOG_INFO, "fn.start", "types=%zu sdk=statemesh-c/%s", sm_functions_count(srv->fns),
        SM_SDK_VERSION);

    last_check = gpr_now(GPR_CLOCK_MONOTONIC);
    for (;;) {
        gpr_timespec now;
        grpc_event ev = grpc_completion_queue_next(
            srv->cq,
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(TICK_MS, GPR_TIMESPAN)),
            NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type == GRPC_OP_COMPLETE) {
            struct tag *t = ev.tag;
            t->fn(t->owner, ev.success != 0);
        }
        now = gpr_now(GPR_CLOCK_MONOTONIC);
        if (ev.type == GRPC_QUEUE_TIMEOUT ||
            gpr_time_cmp(gpr_time_sub(now, last_check), gpr_time_from_millis(TICK_MS, GPR_TIMESPAN)) >= 0) {
            int sig = sigtimedwait(&srv->sigs, NULL, &zero);
            last_check = now;
            if (sig > 0) {
                if (!srv->shutting_down) begin_shutdown(srv, sig);
                else cancel_all(srv); /* second signal: stop now */
            }
        }
        if (srv->shutting_down) {
            if (!srv->cancelled_all && gpr_time_cmp(now, srv->grace_deadline) >= 0) cancel_all(srv);
            if (srv->shutdown_done && srv->n_calls == 0) break;
        }
    }
    grpc_server_destroy(srv->server);
    srv->server = NULL;
    drain_and_destroy_cq(srv);
    LOG(srv, SM_LOG_INFO, "fn.stopped", "streams_served=%llu", (unsigned long long)srv->streams);
    return SM_OK;
}

void sm_server_destroy(sm_server **psrv)
{
    sm_server *srv;

    if (!psrv || !*psrv) return;
    srv = *psrv;
    if (srv->server) {
        /* Never ran (or run failed early): shut the server down properly. */
        if (!srv->shutting_down) {
            srv->shutting_down = true;
            grpc_server_shutdown_and_notify(srv->server, srv->cq, &srv->t_shutdown);
        }
        grpc_server_cancel_all_calls(srv->server);
        while (!srv->shutdown_done || srv->n_calls > 0) {
            grpc_event ev = grpc_completion_queue_next(
                srv->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
            if (ev.type == GRPC_OP_COMPLETE) {
                struct tag *t = ev.tag;
                t->fn(t->owner, ev.success != 0);
            } else if (ev.type == GRPC_QUEUE_SHUTDOWN) {
                break;
            }
        }
        grpc_server_destroy(srv->server);
        srv->server = NULL;
    }
    if (srv->cq) drain_and_destroy_cq(srv);
    for (size_t i = 0; i < srv->n_listeners; i++) {
        struct listener *l = &srv->listeners[i];
        if (l->path) {
            unlink(l->path);
            unlink(l->lock_path); /* safe: lock_file() re-checks the inode */
        }
        if (l->lock_fd >= 0) close(l->lock_fd);
        free(l->addr);
        free(l->path);
        free(l->lock_path);
    }
    free(srv->describe);
    sm__tls_pems_cleanup(&srv->tls);
    sm_arena_destroy(&srv->arena);
    sm_arena_destroy(&srv->req_arena);
    grpc_shutdown_blocking(); /* joins gRPC threads: clean exit under valgrind */
    pthread_sigmask(SIG_SETMASK, &srv->old_mask, NULL);
    free(srv);
    *psrv = NULL;
}
