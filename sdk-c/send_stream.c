/*
 * send_stream — the SendStream client (statemesh/client.h): bulk ingestion
 * over one bidi gRPC call, on its own NEXT completion queue, driven by the
 * caller's thread (no threads of our own).
 *
 * Data path: push() encodes each message with wire.h straight into `buf`
 * (the batch being filled). A full batch is copied into one grpc slice and
 * sent; `buf` is reused at once. So per message: a few strlen/UTF-8 checks
 * and one memcpy per field; per batch: one slice allocation.
 *
 * Operations on the call (each tag is embedded here; `pending` counts the
 * ones in flight, and the call is released only when it is 0):
 *
 *   open:  {SEND_INITIAL_METADATA, RECV_INITIAL_METADATA} -> t_start
 *          {RECV_STATUS_ON_CLIENT}                        -> t_status
 *          {RECV_MESSAGE}                                 -> t_recv (re-posted per ack)
 *   send:  {SEND_MESSAGE [, SEND_CLOSE_FROM_CLIENT]}      -> t_send (one at a time)
 *
 * Sequence numbers (all cumulative):
 *
 *   committed <= sent <= pushed;   push blocks while pushed - committed >= window
 *   messages (sent, pushed] are in `buf`
 *
 * Whenever the caller must wait (a full batch behind one in flight, a full
 * window, finish), wait_event() blocks in grpc_completion_queue_next and
 * dispatches one completion; before waiting for acks the partial batch is
 * sent, so a wait can always make progress.
 *
 * End: finish() sends the rest with SEND_CLOSE_FROM_CLIENT; the runtime acks
 * the last message and ends the call with OK: recv gets NULL, status OK.
 * Any non-OK status marks the stream broken (`broken`, message kept).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "client_internal.h"
#include "statemesh/v1/ingress.pb-c.h"
#include "wire.h"

#define DEFAULT_BATCH_MESSAGES 256
#define DEFAULT_BATCH_BYTES ((size_t)64 << 10)
#define DEFAULT_WINDOW 65536
#define MAX_BATCH_MESSAGES 65536
#define MAX_BATCH_BYTES ((size_t)16 << 20)
#define MAX_WINDOW ((size_t)16 << 20)
#define MAX_MESSAGE_BYTES ((size_t)64 << 20) /* the client's max send on the channel is unlimited */

enum tag_kind { T_START, T_SEND, T_RECV, T_STATUS };

struct stag {
    enum tag_kind kind;
};

struct sm_send_stream {
    sm_client *client;
    sm_send_stream_options opt;
    grpc_completion_queue *cq;
    grpc_call *call;
    struct stag t_start, t_send, t_recv, t_status;
    int pending;

    /* the batch being filled */
    uint8_t *buf;
    size_t len, cap;
    size_t nmsg;

    /* sequence numbers */
    uint64_t pushed, sent, committed, rejected;

    /* call state */
    bool send_inflight, recv_inflight, recv_done, status_done, close_sent;
    grpc_byte_buffer *send_bb, *recv_bb;
    grpc_metadata_array md_init, md_trail;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;

    bool broken;
    sm_error failure;   /* why the stream broke */
};

/* ---- helpers ---- */

static int copy_failure(const sm_send_stream *s, sm_error *err)
{
    if (err) *err = s->failure;
    return SM_ERPC;
}

static void mark_broken(sm_send_stream *s, int code, const char *fmt, const char *detail)
{
    if (s->broken) return;
    s->broken = true;
    sm__set_err(&s->failure, code, SM_ERPC, fmt, detail);
}

static void on_status(sm_send_stream *s)
{
    char *d;
    const char *target = s->client->target;

    s->status_done = true;
    if (s->status == GRPC_STATUS_OK) {
        if (s->committed < s->pushed && !s->close_sent)
            mark_broken(s, GRPC_STATUS_INTERNAL, "%s",
                        "the runtime ended the stream before the client finished it");
        return;
    }
    d = grpc_slice_to_c_string(s->details);
    if (s->status == GRPC_STATUS_UNAVAILABLE) {
        char msg[1024];
        snprintf(msg, sizeof msg, "runtime not reachable at %.200s or shutting down: %.700s",
                 target, d && *d ? d : "UNAVAILABLE");
        mark_broken(s, s->status, "%s", msg);
    } else if (s->status == GRPC_STATUS_UNIMPLEMENTED) {
        mark_broken(s, s->status, "the runtime at %s does not serve SendStream (older version?)",
                    target);
    } else {
        mark_broken(s, s->status, "%s", d && *d ? d : sm_status_code_name(s->status));
    }
    gpr_free(d);
}

static void on_ack(sm_send_stream *s, const Statemesh__V1__SendStreamResponse *r)
{
    for (size_t i = 0; i < r->n_errors; i++) {
        const Statemesh__V1__StreamError *e = r->errors[i];
        s->rejected++;
        if (s->opt.on_error)
            s->opt.on_error(s->opt.udata, e->seq, e->code, e->message ? e->message : "");
    }
    if (r->committed_through > s->sent) {
        mark_broken(s, GRPC_STATUS_INTERNAL, "%s",
                    "the runtime acknowledged messages that were never sent (protocol error)");
        return;
    }
    if (r->committed_through > s->committed) {
        s->committed = r->committed_through;
        if (s->opt.on_ack) s->opt.on_ack(s->opt.udata, s->committed);
    }
}

static void post_recv(sm_send_stream *s)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &s->recv_bb;
    if (grpc_call_start_batch(s->call, &op, 1, &s->t_recv, NULL) != GRPC_CALL_OK) {
        mark_broken(s, GRPC_STATUS_INTERNAL, "%s", "cannot post a receive on the stream");
        s->recv_done = true;
        return;
    }
    s->recv_inflight = true;
    s->pending++;
}

static void on_recv(sm_send_stream *s, bool ok)
{
    grpc_byte_buffer_reader r;
    grpc_slice all;
    Statemesh__V1__SendStreamResponse *resp;

    s->recv_inflight = false;
    if (!ok || !s->recv_bb) { /* stream over; the status says how */
        s->recv_done = true;
        return;
    }
    if (!grpc_byte_buffer_reader_init(&r, s->recv_bb)) {
        grpc_byte_buffer_destroy(s->recv_bb);
        s->recv_bb = NULL;
        mark_broken(s, GRPC_STATUS_INTERNAL, "%s", "cannot decompress an acknowledgement");
        s->recv_done = true;
        return;
    }
    all = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    grpc_byte_buffer_destroy(s->recv_bb);
    s->recv_bb = NULL;
    resp = statemesh__v1__send_stream_response__unpack(NULL, GRPC_SLICE_LENGTH(all),
                                                       GRPC_SLICE_START_PTR(all));
    grpc_slice_unref(all);
    if (!resp) {
        mark_broken(s, GRPC_STATUS_INTERNAL, "%s", "malformed acknowledgement from the runtime");
        grpc_call_cancel(s->call, NULL);
        post_recv(s);
        return;
    }
    on_ack(s, resp);
    statemesh__v1__send_stream_response__free_unpacked(resp, NULL);
    post_recv(s);
}

/* Dispatches one completion. */
static void dispatch(sm_send_stream *s, grpc_event ev)
{
    struct stag *t = ev.tag;
    s->pending--;
    switch (t->kind) {
    case T_START: break; /* a failure shows up in the status */
    case T_SEND:
        s->send_inflight = false;
        grpc_byte_buffer_destroy(s->send_bb);
        s->send_bb = NULL;
        break;
    case T_RECV: on_recv(s, ev.success); break;
    case T_STATUS: on_status(s); break;
    }
}

/* Waits until `deadline` for one completion and dispatches it. Returns 1 if
 * one was handled, 0 on timeout. */
static int wait_event(sm_send_stream *s, gpr_timespec deadline)
{
    grpc_event ev = grpc_completion_queue_next(s->cq, deadline, NULL);
    if (ev.type != GRPC_OP_COMPLETE) return 0;
    dispatch(s, ev);
    return 1;
}

/* Handles every completion already there, without waiting. */
static void drain_ready(sm_send_stream *s)
{
    while (s->pending && wait_event(s, gpr_time_0(GPR_CLOCK_MONOTONIC))) {
    }
}

static gpr_timespec deadline_in(int ms)
{
    if (ms < 0) return gpr_inf_future(GPR_CLOCK_MONOTONIC);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

/* Starts sending the batch in buf (and/or the half-close). Requires no send
 * in flight. */
static int start_send(sm_send_stream *s, bool close, sm_error *err)
{
    grpc_op ops[2];
    size_t n = 0;

    memset(ops, 0, sizeof ops);
    if (s->nmsg) {
        grpc_slice slice = grpc_slice_from_copied_buffer((const char *)s->buf, s->len);
        s->send_bb = grpc_raw_byte_buffer_create(&slice, 1);
        grpc_slice_unref(slice);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = s->send_bb;
        n++;
    }
    if (close) ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    if (!n) return SM_OK;
    if (grpc_call_start_batch(s->call, ops, n, &s->t_send, NULL) != GRPC_CALL_OK) {
        if (s->send_bb) grpc_byte_buffer_destroy(s->send_bb);
        s->send_bb = NULL;
        mark_broken(s, GRPC_STATUS_INTERNAL, "%s", "cannot start a send on the stream");
        return copy_failure(s, err);
    }
    s->pending++;
    s->send_inflight = true;
    s->sent = s->pushed;
    s->len = 0;
    s->nmsg = 0;
    if (close) s->close_sent = true;
    return SM_OK;
}

/* Sends the batch in buf, first waiting for the one in flight (while
 * handling acks). */
static int send_batch(sm_send_stream *s, bool close, gpr_timespec deadline, sm_error *err)
{
    drain_ready(s);
    while (s->send_inflight && !s->broken)
        if (!wait_event(s, deadline))
            return sm__set_err(err, GRPC_STATUS_DEADLINE_EXCEEDED, SM_ERPC,
                               "timed out waiting for the runtime to take the previous batch");
    if (s->broken) return copy_failure(s, err);
    return start_send(s, close, err);
}

/* ---- public API ---- */

int sm_send_stream_open(sm_client *c, const sm_send_stream_options *opts, sm_send_stream **out,
                        sm_error *err)
{
    sm_send_stream *s;
    grpc_op ops[2];

    if (!out) return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "no output");
    *out = NULL;
    if (!c) return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "no client");
    if (opts && (opts->batch_messages > MAX_BATCH_MESSAGES || opts->batch_bytes > MAX_BATCH_BYTES ||
                 opts->window > MAX_WINDOW))
        return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL,
                           "stream options out of range (batch_messages <= %d, batch_bytes <= "
                           "%zu, window <= %zu)",
                           MAX_BATCH_MESSAGES, MAX_BATCH_BYTES, MAX_WINDOW);
    if (!(s = calloc(1, sizeof *s))) goto nomem;
    if (opts) s->opt = *opts;
    if (!s->opt.batch_messages) s->opt.batch_messages = DEFAULT_BATCH_MESSAGES;
    if (!s->opt.batch_bytes) s->opt.batch_bytes = DEFAULT_BATCH_BYTES;
    if (!s->opt.window) s->opt.window = DEFAULT_WINDOW;
    if (s->opt.window < s->opt.batch_messages) s->opt.window = s->opt.batch_messages;
    s->client = c;
    s->cap = s->opt.batch_bytes + 1024;
    if (!(s->buf = malloc(s->cap))) goto nomem;
    s->t_start.kind = T_START;
    s->t_send.kind = T_SEND;
    s->t_recv.kind = T_RECV;
    s->t_status.kind = T_STATUS;
    s->details = grpc_empty_slice();
    grpc_metadata_array_init(&s->md_init);
    grpc_metadata_array_init(&s->md_trail);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    s->call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq,
                                       grpc_slice_from_static_string("/statemesh.v1.Ingress/SendStream"),
                                       NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);

    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (s->opt.wait_for_ready) ops[0].flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY;
    sm__auth_md(c, &ops[0]);
    ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[1].data.recv_initial_metadata.recv_initial_metadata = &s->md_init;
    if (grpc_call_start_batch(s->call, ops, 2, &s->t_start, NULL) != GRPC_CALL_OK) goto callfail;
    s->pending++;
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[0].data.recv_status_on_client.trailing_metadata = &s->md_trail;
    ops[0].data.recv_status_on_client.status = &s->status;
    ops[0].data.recv_status_on_client.status_details = &s->details;
    ops[0].data.recv_status_on_client.error_string = &s->error_string;
    if (grpc_call_start_batch(s->call, ops, 1, &s->t_status, NULL) != GRPC_CALL_OK) goto callfail;
    s->pending++;
    post_recv(s);
    if (s->broken) goto callfail;
    *out = s;
    return SM_OK;

callfail:
    sm_send_stream_destroy(&s);
    return sm__set_err(err, GRPC_STATUS_INTERNAL, SM_ERPC, "cannot start the SendStream call");
nomem:
    if (s) free(s->buf);
    free(s);
    return sm__set_err(err, GRPC_STATUS_RESOURCE_EXHAUSTED, SM_ENOMEM, "out of memory");
}

int sm_send_stream_push(sm_send_stream *s, const char *type, const char *id, const sm_value *v,
                        const sm_send_options *opts, uint64_t *seq, sm_error *err)
{
    struct wire_msg m;
    size_t need;
    int rc;

    if (!s || !v) return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "no stream or value");
    if (s->broken) return copy_failure(s, err);
    if (s->close_sent)
        return sm__set_err(err, GRPC_STATUS_FAILED_PRECONDITION, SM_ESTATE,
                           "the stream is finished: no more messages");
    if ((rc = sm__check_target(type, id, v, err))) return rc;
    m.key = opts ? opts->idempotency_key : NULL;
    m.key_len = m.key ? strlen(m.key) : 0;
    m.delay_ms = opts ? opts->delay_ms : 0;
    if (opts && ((rc = sm__check_key(m.key, err)) || (rc = sm__check_delay(m.delay_ms, err))))
        return rc;
    m.type = type;
    m.type_len = strlen(type);
    m.id = id;
    m.id_len = strlen(id);
    if (!sm_utf8_valid(type, m.type_len) || !sm_utf8_valid(id, m.id_len))
        return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL,
                           "function type or id is not valid UTF-8");
    m.typename = v->typename;
    m.typename_len = strlen(v->typename);
    m.data = v->data;
    m.data_len = v->len;
    m.seq = s->pushed + 1;
    need = wire_stream_message_size(&m);
    if (need > MAX_MESSAGE_BYTES)
        return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL,
                           "message of %zu bytes is larger than the stream's limit of %zu", need,
                           MAX_MESSAGE_BYTES);

    /* Room in this batch? Otherwise send it first. */
    if (s->nmsg && (s->nmsg >= s->opt.batch_messages || s->len + need > s->opt.batch_bytes))
        if ((rc = send_batch(s, false, gpr_inf_future(GPR_CLOCK_MONOTONIC), err))) return rc;
    /* Room in the window? Otherwise get acks (sending what waits first). */
    while (s->pushed - s->committed >= s->opt.window) {
        if (!s->send_inflight && s->nmsg && (rc = start_send(s, false, err))) return rc;
        if (s->broken) return copy_failure(s, err);
        if (!s->pending) { /* nothing can complete any more */
            mark_broken(s, GRPC_STATUS_INTERNAL, "%s", "the runtime stopped acknowledging");
            return copy_failure(s, err);
        }
        wait_event(s, gpr_inf_future(GPR_CLOCK_MONOTONIC));
    }
    if (s->broken) return copy_failure(s, err);
    if (s->len + need > s->cap) { /* only a single big message gets here */
        size_t cap = s->len + need;
        uint8_t *nb = realloc(s->buf, cap);
        if (!nb) return sm__set_err(err, GRPC_STATUS_RESOURCE_EXHAUSTED, SM_ENOMEM, "out of memory");
        s->buf = nb;
        s->cap = cap;
    }
    s->len = (size_t)(wire_put_stream_message(s->buf + s->len, &m) - s->buf);
    s->nmsg++;
    s->pushed = m.seq;
    if (seq) *seq = m.seq;
    /* A full batch goes out now if the wire is free; else with the next push. */
    if (s->nmsg >= s->opt.batch_messages || s->len >= s->opt.batch_bytes) {
        drain_ready(s);
        if (!s->send_inflight && !s->broken && (rc = start_send(s, false, err))) return rc;
    }
    return SM_OK;
}

int sm_send_stream_flush(sm_send_stream *s, sm_error *err)
{
    if (!s) return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "no stream");
    if (s->broken) return copy_failure(s, err);
    if (!s->nmsg) return SM_OK;
    return send_batch(s, false, gpr_inf_future(GPR_CLOCK_MONOTONIC), err);
}

int sm_send_stream_poll(sm_send_stream *s, int wait_ms, sm_error *err)
{
    if (!s) return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "no stream");
    if (s->pending && wait_ms != 0) wait_event(s, deadline_in(wait_ms));
    drain_ready(s);
    return s->broken ? copy_failure(s, err) : SM_OK;
}

void sm_send_stream_get_progress(const sm_send_stream *s, sm_send_stream_progress *out)
{
    memset(out, 0, sizeof *out);
    if (!s) return;
    out->pushed = s->pushed;
    out->sent = s->sent;
    out->committed_through = s->committed;
    out->rejected = s->rejected;
}

int sm_send_stream_finish(sm_send_stream *s, int timeout_ms, sm_error *err)
{
    gpr_timespec deadline = timeout_ms > 0 ? deadline_in(timeout_ms)
                                           : gpr_inf_future(GPR_CLOCK_MONOTONIC);
    int rc;

    if (!s) return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "no stream");
    if (s->broken) return copy_failure(s, err);
    if (!s->close_sent && (rc = send_batch(s, true, deadline, err))) return rc;
    while (!(s->status_done && s->recv_done) && !s->broken) {
        if (!wait_event(s, deadline)) {
            char msg[256];
            snprintf(msg, sizeof msg,
                     "timed out after %d ms waiting for acknowledgements: %llu of %llu "
                     "acknowledged",
                     timeout_ms, (unsigned long long)s->committed, (unsigned long long)s->pushed);
            grpc_call_cancel(s->call, NULL);
            mark_broken(s, GRPC_STATUS_DEADLINE_EXCEEDED, "%s", msg);
        }
    }
    if (s->broken) return copy_failure(s, err);
    if (s->committed < s->pushed) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "the runtime ended the stream with only %llu of %llu messages acknowledged",
                 (unsigned long long)s->committed, (unsigned long long)s->pushed);
        mark_broken(s, GRPC_STATUS_INTERNAL, "%s", msg);
        return copy_failure(s, err);
    }
    if (err) {
        err->code = 0;
        err->message[0] = '\0';
    }
    return SM_OK;
}

void sm_send_stream_destroy(sm_send_stream **ps)
{
    sm_send_stream *s;
    if (!ps || !*ps) return;
    s = *ps;
    if (s->call) {
        if (!(s->status_done && s->recv_done)) grpc_call_cancel(s->call, NULL);
        while (s->pending) {
            grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
            if (ev.type != GRPC_OP_COMPLETE) break;
            s->pending--;
            if (ev.tag == &s->t_send && s->send_bb) {
                grpc_byte_buffer_destroy(s->send_bb);
                s->send_bb = NULL;
            }
            if (ev.tag == &s->t_recv && s->recv_bb) {
                grpc_byte_buffer_destroy(s->recv_bb);
                s->recv_bb = NULL;
            }
        }
        grpc_call_unref(s->call);
    }
    if (s->cq) {
        grpc_completion_queue_shutdown(s->cq);
        while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
               GRPC_QUEUE_SHUTDOWN) {
        }
        grpc_completion_queue_destroy(s->cq);
    }
    grpc_metadata_array_destroy(&s->md_init);
    grpc_metadata_array_destroy(&s->md_trail);
    grpc_slice_unref(s->details);
    gpr_free((void *)s->error_string);
    free(s->buf);
    free(s);
    *ps = NULL;
}
