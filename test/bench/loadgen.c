/*
 * loadgen — the load generator of `make bench`: drives one running
 * statemeshd through the C SDK's ingress client (statemesh/client.h),
 * measures throughput and latency, waits until the runtime has processed
 * everything, and checks that the counters add up.
 *
 *   loadgen --target HOST:PORT --workload counter-spread|counter-hot|greeter
 *           --ingress send|call|stream [--clients N] [--inflight N]
 *           [--addresses K] [--messages M | --duration S] [--batch N] [--window N]
 *           [--timeout-ms N] [--check-max N] [--ready-timeout-ms N] [--drain-timeout-ms N]
 *
 * --duration S: the clients start messages for S seconds (from load-start)
 * instead of sending --messages; the result's "messages" is then the number
 * started (all must be acked and are checked), plus "duration_s".
 *
 * The driver (test/bench/run.py) starts the runtime and the function server;
 * this program only talks to the ingress. It prints, one line each, flushed:
 *
 *   phase load-start   clients connected, endpoints up; the clock starts
 *   phase load-end     every message answered and the runtime's
 *                      queued_messages back to 0; the clock stops
 *   result {JSON}      the measurements and the check (fields below)
 *
 * and exits 0 if the run was clean (ok), 1 if not, 2 on a usage error.
 *
 * TLS: with $STATEMESH_TLS_CA (and _CERT, _KEY for mTLS) set, the SDK
 * clients (stream; send and call without --inflight) talk TLS to the
 * ingress; the --inflight channels stay plaintext.
 *
 * WORKLOADS. Message i (0 <= i < M) goes to address (i * P) mod K, P a
 * prime-ish stride coprime with K, so consecutive messages spread over the
 * whole key space and every address gets M/K or M/K + 1 messages:
 *   counter-spread  bench/counter, K addresses, int64 1 each
 *   counter-hot     bench/counter, one address (K is forced to 1)
 *   greeter         bench/greeter (a Call returns "Hello <id> #<n>")
 * The types are served by test/bench/bench_functions.c (C sidecar and
 * embedded) and test/bench/bench_fn.py (Python sidecar).
 *
 * INGRESS PATHS. N client threads, each with its own sm_client (a client is
 * single-threaded); client t sends messages t, t+N, t+2N, ...
 *   send    sm_client_send, one at a time: latency = until the ack
 *           (the message is durable)
 *   call    sm_client_call: latency = until the function's reply (the
 *           greeter's "Hello <id> #<n>", a counter's new value as
 *           statemesh/int64)
 *   send, call with --inflight N > 1: each client thread keeps up to N
 *           requests outstanding instead, on its own channel (own
 *           connection) and NEXT completion queue, driving gRPC core
 *           directly (grpc_call_start_batch, requests encoded with the
 *           generated protobuf-c code); concurrency = clients x inflight.
 *           Latency = from just before the call is started to its
 *           completion being taken off the queue. Outcomes and failures
 *           are counted exactly as with the SDK calls.
 *   stream  one SendStream per client (sm_send_stream_*, --batch messages
 *           per gRPC message, --window unacknowledged): latency = from
 *           push() returning to the cumulative ack that covers the message,
 *           so it includes waiting for the batch to fill and the window
 *
 * THE CLOCK. seconds = from load-start until the runtime has *processed*
 * every acknowledged message (Admin.Stats queued_messages == 0, polled every
 * 2 ms), not merely acknowledged it: msgs_per_s = acked / seconds is the
 * end-to-end rate. ack_seconds is until the last acknowledgement.
 *
 * THE CHECK. While acks arrive, expected[a] counts the acknowledged
 * messages of address a. Afterwards the counter state n of the checked
 * addresses is read with Admin.GetState (the committed state in LevelDB):
 * every address when K <= --check-max (default 20000), otherwise a sample
 * of --check-max addresses spread evenly over the key space (always with
 * the first and the last), plus the runtime's own totals: Stats
 * messages_received and messages_delivered must both equal the acked
 * count. Each checked n must equal expected[a] exactly; messages whose
 * outcome is unknown (a failed RPC, a broken stream) widen that to
 * [expected, expected + unknown]. Any failed, rejected or unknown message
 * makes the run not ok as well, with the first error in "error".
 * A mismatch is re-read for up to 5 s (the state of the last batches may
 * still be in the open checkpoint), then reported.
 *
 * Latency percentiles come from a log-linear histogram (32 sub-buckets per
 * power of two of nanoseconds: at most 3% error), per thread, merged.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "statemesh/client.h"
#include "statemesh/v1/ingress.pb-c.h"

#define COUNTER_TYPE "bench/counter"
#define GREETER_TYPE "bench/greeter"
#define STATE_NAME "n"
#define MAX_CLIENTS 1024
#define MAX_INFLIGHT 4096           /* per client thread (--inflight) */
#define MAX_ADDRESSES 100000000u   /* expected[] is 4 bytes per address */
#define MAX_FAILURES_PER_CLIENT 100 /* then the client stops: the runtime is gone */
#define MAX_REJECTED_TRACKED 4096   /* rejected seqs kept per stream */
#define CHECK_THREADS 8
#define RECHECK_MS 5000

/* ---- histogram ---------------------------------------------------------- */

#define HIST_SUB_BITS 5
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS (64 * HIST_SUB)

struct hist {
    uint64_t n, sum_ns, max_ns;
    uint64_t count[HIST_BUCKETS];
};

static unsigned hist_index(uint64_t v)
{
    unsigned msb, shift;
    if (v < HIST_SUB) return (unsigned)v;
    msb = 63u - (unsigned)__builtin_clzll(v);
    shift = msb - HIST_SUB_BITS;
    return (shift + 1) * HIST_SUB + (unsigned)((v >> shift) - HIST_SUB);
}

/* The middle of bucket idx, in ns. */
static double hist_value(unsigned idx)
{
    unsigned shift;
    if (idx < HIST_SUB) return idx;
    shift = idx / HIST_SUB - 1;
    return (double)(((uint64_t)(HIST_SUB + idx % HIST_SUB)) << shift) + (double)((uint64_t)1 << shift) / 2.0;
}

static void hist_add(struct hist *h, uint64_t ns)
{
    h->count[hist_index(ns)]++;
    h->n++;
    h->sum_ns += ns;
    if (ns > h->max_ns) h->max_ns = ns;
}

static void hist_merge(struct hist *into, const struct hist *h)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++) into->count[i] += h->count[i];
    into->n += h->n;
    into->sum_ns += h->sum_ns;
    if (h->max_ns > into->max_ns) into->max_ns = h->max_ns;
}

/* The p-quantile (0 < p <= 1) in ms, or -1 when empty. */
static double hist_quantile_ms(const struct hist *h, double p)
{
    uint64_t rank, seen = 0;
    if (h->n == 0) return -1;
    rank = (uint64_t)(p * (double)h->n + 0.999999);
    if (rank < 1) rank = 1;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= rank) {
            double v = hist_value(i);
            if (v > (double)h->max_ns) v = (double)h->max_ns;
            return v / 1e6;
        }
    }
    return (double)h->max_ns / 1e6;
}

/* ---- options and state -------------------------------------------------- */

enum workload { W_SPREAD, W_HOT, W_GREETER };
enum ingress { I_SEND, I_CALL, I_STREAM };

static const char *const workload_names[] = {"counter-spread", "counter-hot", "greeter"};
static const char *const ingress_names[] = {"send", "call", "stream"};

struct opts {
    const char *target;
    enum workload workload;
    enum ingress ingress;
    unsigned clients;
    unsigned inflight;        /* send/call: requests outstanding per client */
    uint32_t addresses;
    uint64_t messages;
    double duration_s;        /* > 0: send for this long instead of --messages */
    size_t batch, window;     /* stream only; 0 = the SDK's defaults */
    int timeout_ms;           /* per unary RPC */
    uint32_t check_max;
    int ready_timeout_ms, drain_timeout_ms;
};

struct bench;

/* One outstanding asynchronous Send/Call (--inflight > 1); its address is
 * the completion-queue tag, valid until the completion has been taken. */
struct aslot {
    grpc_call *call;
    grpc_byte_buffer *send_bb, *recv_bb;
    grpc_metadata_array md_init, md_trail;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
    uint64_t i, t0;
};

struct worker {
    struct bench *b;
    unsigned index;
    pthread_t thread;
    bool started;
    sm_client *client;
    /* --inflight > 1 only */
    grpc_channel *ch;
    grpc_completion_queue *cq;
    struct aslot *slots;
    struct hist lat;
    uint64_t acked, failed, rejected, unknown;
    uint64_t issued;          /* messages started (sent or pushed) */
    int first_code;
    char first_error[300];
    /* stream only */
    uint64_t *push_ns;        /* ring of push times by seq */
    uint64_t ring_mask;
    uint64_t acked_through;
    uint64_t *rej;            /* rejected seqs, ascending, capped */
    size_t nrej, rej_pos;
    bool rej_overflow;
};

struct bench {
    struct opts o;
    const char *type;
    uint64_t stride;          /* P */
    _Atomic uint32_t *expected; /* acked messages per address */
    struct worker *w;
    pthread_barrier_t start;
    atomic_int stop;          /* a client gave up: the others stop too */
    uint64_t deadline_ns;     /* --duration: stop starting messages at this time; 0 = none */
    sm_client *admin;
};

/* snprintf that may truncate (messages carry gRPC status details). */
static void errorf(char *dst, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void errorf(char *dst, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, size, fmt, ap);
    va_end(ap);
}

/* error = msg, then "; first error: " and what error held before. */
static void error_prepend(char *error, size_t size, const char *msg)
{
    char old[600];
    errorf(old, sizeof old, "%s", error);
    if (old[0]) errorf(error, size, "%s; first error: %s", msg, old);
    else errorf(error, size, "%s", msg);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static uint32_t address_of(const struct bench *b, uint64_t i)
{
    return (uint32_t)((i * b->stride) % b->o.addresses);
}

/* Message i of client w's sequence number seq (1-based) on its stream. */
static uint64_t index_of_seq(const struct worker *w, uint64_t seq)
{
    return w->index + (seq - 1) * w->b->o.clients;
}

static void note_failure(struct worker *w, int code, const char *msg)
{
    if (w->first_error[0] == '\0') {
        w->first_code = code;
        errorf(w->first_error, sizeof w->first_error, "%s: %s", sm_status_code_name(code), msg);
    }
}

static void acked(struct worker *w, uint64_t i)
{
    atomic_fetch_add_explicit(&w->b->expected[address_of(w->b, i)], 1, memory_order_relaxed);
    w->acked++;
}

/* ---- unary: send and call ----------------------------------------------- */

/* A Call's reply as the workload defines it: the greeter answers
 * "Hello <id> #<n>", a counter its new value (statemesh/int64, >= 1). */
static bool reply_ok(const struct bench *b, const char *typename, const uint8_t *data, size_t len)
{
    if (b->o.workload == W_GREETER) return len >= 6 && memcmp(data, "Hello ", 6) == 0;
    {
        sm_value v = {.typename = typename ? typename : "", .data = data, .len = len};
        int64_t n;
        return typename && sm_value_as_int64(&v, &n) == SM_OK && n >= 1;
    }
}

/* --duration: true once the load phase's time is up. */
static bool time_up(const struct bench *b)
{
    return b->deadline_ns && now_ns() >= b->deadline_ns;
}

static void *unary_main(void *arg)
{
    struct worker *w = arg;
    struct bench *b = w->b;
    uint8_t buf[SM_SCALAR_SIZE];
    sm_value v = b->o.workload == W_GREETER ? sm_value_string("hi") : sm_value_int64(1, buf);
    sm_value_buf reply = SM_VALUE_BUF_INIT;
    sm_error err;
    char id[16];

    pthread_barrier_wait(&b->start);
    for (uint64_t i = w->index; i < b->o.messages; i += b->o.clients) {
        uint64_t t0, t1;
        int rc;
        if (atomic_load_explicit(&b->stop, memory_order_relaxed) || time_up(b)) break;
        w->issued++;
        snprintf(id, sizeof id, "%" PRIu32, address_of(b, i));
        t0 = now_ns();
        if (b->o.ingress == I_CALL)
            rc = sm_client_call(w->client, b->type, id, &v, b->o.timeout_ms, &reply, &err);
        else
            rc = sm_client_send(w->client, b->type, id, &v, b->o.timeout_ms, &err);
        t1 = now_ns();
        if (rc == SM_OK && b->o.ingress == I_CALL &&
            !reply_ok(b, reply.value.typename, reply.value.data, reply.value.len)) {
            w->failed++;
            note_failure(w, 0, b->o.workload == W_GREETER
                                   ? "unexpected reply to a Call (want \"Hello <id> #<n>\")"
                                   : "unexpected reply to a Call (want the counter, statemesh/int64)");
            acked(w, i); /* applied all the same */
            continue;
        }
        if (rc == SM_OK) {
            hist_add(&w->lat, t1 - t0);
            acked(w, i);
            continue;
        }
        w->failed++;
        w->unknown++; /* a failed RPC may or may not have been applied */
        note_failure(w, err.code, err.message);
        if (w->failed >= MAX_FAILURES_PER_CLIENT) atomic_store(&b->stop, 1);
    }
    sm_value_buf_cleanup(&reply);
    return NULL;
}

/* $STATEMESH_TLS_CA (and _CERT, _KEY) set: every client talks TLS to the
 * ingress (the bench's TLS rows, docs/security.md). */
static sm_client *client_new(const char *target)
{
    const char *ca = getenv("STATEMESH_TLS_CA");
    sm_tls_options tls = {ca, getenv("STATEMESH_TLS_CERT"), getenv("STATEMESH_TLS_KEY"), 0};
    sm_error err;
    sm_client *c;

    if (!ca || !*ca) return sm_client_create(target);
    if (!(c = sm_client_create_tls(target, &tls, &err)))
        fprintf(stderr, "loadgen: %s\n", err.message);
    return c;
}

/* ---- unary, asynchronous: send and call with --inflight > 1 -------------- */

/* A channel of its own (own connection: local subchannel pool) and a NEXT
 * completion queue, polled only by the worker's thread. */
static int async_open(struct worker *w)
{
    grpc_arg args[1];
    grpc_channel_args ch_args = {1, args};
    grpc_channel_credentials *creds;

    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
    args[0].value.integer = 1;
    creds = grpc_insecure_credentials_create();
    w->ch = grpc_channel_create(w->b->o.target, creds, &ch_args);
    grpc_channel_credentials_release(creds);
    w->cq = grpc_completion_queue_create_for_next(NULL);
    w->slots = calloc(w->b->o.inflight, sizeof *w->slots);
    return w->ch && w->cq && w->slots ? 0 : -1;
}

/* Connects the channel before the clock starts: 0 once READY. */
static int async_connect(struct worker *w, int timeout_ms)
{
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                         gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
    int tag;
    for (;;) {
        grpc_connectivity_state st = grpc_channel_check_connectivity_state(w->ch, 1);
        grpc_event ev;
        if (st == GRPC_CHANNEL_READY) return 0;
        grpc_channel_watch_connectivity_state(w->ch, st, deadline, w->cq, &tag);
        ev = grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE || !ev.success) return -1; /* deadline */
    }
}

/* Teardown: every call is done (the worker drained them), so channel, then
 * CQ shutdown + drain. */
static void async_close(struct worker *w)
{
    if (w->ch) grpc_channel_destroy(w->ch);
    if (w->cq) {
        grpc_completion_queue_shutdown(w->cq);
        while (grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
               GRPC_QUEUE_SHUTDOWN) {
        }
        grpc_completion_queue_destroy(w->cq);
    }
    free(w->slots);
    w->ch = NULL;
    w->cq = NULL;
    w->slots = NULL;
}

static void aslot_release(struct aslot *s)
{
    if (s->send_bb) grpc_byte_buffer_destroy(s->send_bb);
    if (s->recv_bb) grpc_byte_buffer_destroy(s->recv_bb);
    grpc_metadata_array_destroy(&s->md_init);
    grpc_metadata_array_destroy(&s->md_trail);
    grpc_slice_unref(s->details);
    gpr_free((void *)s->error_string);
    if (s->call) grpc_call_unref(s->call);
    memset(s, 0, sizeof *s);
}

/* A failed RPC, counted as unary_main counts a failed sm_client_* call:
 * its outcome is unknown. */
static void async_failed(struct worker *w, int code, const char *msg)
{
    w->failed++;
    w->unknown++;
    note_failure(w, code, msg);
    if (w->failed >= MAX_FAILURES_PER_CLIENT) atomic_store(&w->b->stop, 1);
}

/* Starts message i in slot s: 0 if started, -1 if it failed at once
 * (counted; s is free again). */
static int async_start(struct worker *w, struct aslot *s, uint64_t i, const sm_value *v)
{
    struct bench *b = w->b;
    bool call = b->o.ingress == I_CALL;
    Statemesh__V1__SendRequest sreq = STATEMESH__V1__SEND_REQUEST__INIT;
    Statemesh__V1__CallRequest creq = STATEMESH__V1__CALL_REQUEST__INIT;
    Statemesh__V1__Address addr = STATEMESH__V1__ADDRESS__INIT;
    Statemesh__V1__TypedValue tv = STATEMESH__V1__TYPED_VALUE__INIT;
    const ProtobufCMessage *req = call ? &creq.base : &sreq.base;
    grpc_op ops[6];
    grpc_slice slice;
    char id[16];

    snprintf(id, sizeof id, "%" PRIu32, address_of(b, i));
    addr.type = (char *)b->type;
    addr.id = id;
    tv.typename_ = (char *)v->typename;
    tv.value.data = (uint8_t *)v->data;
    tv.value.len = v->len;
    sreq.target = creq.target = &addr;
    sreq.argument = creq.argument = &tv;

    memset(s, 0, sizeof *s);
    s->i = i;
    s->status = GRPC_STATUS_UNKNOWN;
    s->details = grpc_empty_slice();
    grpc_metadata_array_init(&s->md_init);
    grpc_metadata_array_init(&s->md_trail);
    slice = grpc_slice_malloc(protobuf_c_message_get_packed_size(req));
    protobuf_c_message_pack(req, GRPC_SLICE_START_PTR(slice));
    s->send_bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);

    s->t0 = now_ns();
    s->call = grpc_channel_create_call(
        w->ch, NULL, GRPC_PROPAGATE_DEFAULTS, w->cq,
        grpc_slice_from_static_string(call ? "/statemesh.v1.Ingress/Call" : "/statemesh.v1.Ingress/Send"),
        NULL,
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(b->o.timeout_ms, GPR_TIMESPAN)),
        NULL);
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = s->send_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->md_init;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &s->recv_bb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &s->md_trail;
    ops[5].data.recv_status_on_client.status = &s->status;
    ops[5].data.recv_status_on_client.status_details = &s->details;
    ops[5].data.recv_status_on_client.error_string = &s->error_string;
    if (!s->call || grpc_call_start_batch(s->call, ops, 6, s, NULL) != GRPC_CALL_OK) {
        aslot_release(s);
        async_failed(w, GRPC_STATUS_INTERNAL, "cannot start the call");
        return -1;
    }
    return 0;
}

/* Slot s completed at t1: the same outcomes as sm_client_send/_call and
 * unary_main. Frees the slot. */
static void async_complete(struct worker *w, struct aslot *s, uint64_t t1)
{
    bool call = w->b->o.ingress == I_CALL;
    ProtobufCMessage *resp = NULL;
    grpc_byte_buffer_reader r;
    grpc_slice all;

    if (s->status != GRPC_STATUS_OK) {
        char *d = grpc_slice_to_c_string(s->details);
        async_failed(w, (int)s->status, d && *d ? d : sm_status_code_name((int)s->status));
        gpr_free(d);
        goto out;
    }
    if (!s->recv_bb) {
        char msg[300];
        errorf(msg, sizeof msg, "empty response from %s", w->b->o.target);
        async_failed(w, GRPC_STATUS_INTERNAL, msg);
        goto out;
    }
    if (!grpc_byte_buffer_reader_init(&r, s->recv_bb)) {
        async_failed(w, GRPC_STATUS_INTERNAL, "cannot decompress response");
        goto out;
    }
    all = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    resp = protobuf_c_message_unpack(call ? &statemesh__v1__call_response__descriptor
                                          : &statemesh__v1__send_response__descriptor,
                                     NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
    grpc_slice_unref(all);
    if (!resp) {
        async_failed(w, GRPC_STATUS_INTERNAL, "malformed response");
        goto out;
    }
    if (call) {
        const Statemesh__V1__TypedValue *reply = ((Statemesh__V1__CallResponse *)resp)->reply;
        if (!reply || !reply_ok(w->b, reply->typename_, reply->value.data, reply->value.len)) {
            w->failed++;
            note_failure(w, 0, w->b->o.workload == W_GREETER
                                   ? "unexpected reply to a Call (want \"Hello <id> #<n>\")"
                                   : "unexpected reply to a Call (want the counter, statemesh/int64)");
            acked(w, s->i); /* applied all the same */
            goto out;
        }
    }
    hist_add(&w->lat, t1 - s->t0);
    acked(w, s->i);
out:
    if (resp) protobuf_c_message_free_unpacked(resp, NULL);
    aslot_release(s);
}

static void *async_main(void *arg)
{
    struct worker *w = arg;
    struct bench *b = w->b;
    unsigned n = b->o.inflight, outstanding = 0, nfree = n;
    struct aslot **free_slots = calloc(n, sizeof *free_slots);
    uint8_t buf[SM_SCALAR_SIZE];
    sm_value v = b->o.workload == W_GREETER ? sm_value_string("hi") : sm_value_int64(1, buf);
    uint64_t i = w->index;

    pthread_barrier_wait(&b->start);
    if (!free_slots) {
        async_failed(w, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        atomic_store(&b->stop, 1);
        return NULL;
    }
    for (unsigned k = 0; k < n; k++) free_slots[k] = &w->slots[n - 1 - k];
    for (;;) {
        grpc_event ev;
        while (nfree > 0 && i < b->o.messages &&
               !atomic_load_explicit(&b->stop, memory_order_relaxed) && !time_up(b)) {
            struct aslot *s = free_slots[--nfree];
            w->issued++;
            if (async_start(w, s, i, &v) == 0) outstanding++;
            else free_slots[nfree++] = s;
            i += b->o.clients;
        }
        if (outstanding == 0) break;
        ev = grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE) {
            /* no deadline and no shutdown yet: cannot happen */
            fprintf(stderr, "loadgen: completion queue returned event type %d\n", (int)ev.type);
            abort();
        }
        /* take every completion that is ready, then refill the slots together */
        do {
            async_complete(w, ev.tag, now_ns());
            free_slots[nfree++] = ev.tag;
            outstanding--;
            ev = outstanding ? grpc_completion_queue_next(w->cq, gpr_inf_past(GPR_CLOCK_MONOTONIC), NULL)
                             : (grpc_event){.type = GRPC_QUEUE_TIMEOUT};
        } while (ev.type == GRPC_OP_COMPLETE);
        if (ev.type != GRPC_QUEUE_TIMEOUT) {
            fprintf(stderr, "loadgen: completion queue returned event type %d\n", (int)ev.type);
            abort();
        }
    }
    free(free_slots);
    return NULL;
}

/* ---- stream ------------------------------------------------------------- */

static void stream_on_error(void *udata, uint64_t seq, int code, const char *message)
{
    struct worker *w = udata;
    w->rejected++;
    note_failure(w, code, message);
    if (w->nrej < MAX_REJECTED_TRACKED)
        w->rej[w->nrej++] = seq;
    else
        w->rej_overflow = true;
}

static bool was_rejected(struct worker *w, uint64_t seq)
{
    while (w->rej_pos < w->nrej && w->rej[w->rej_pos] < seq) w->rej_pos++;
    return w->rej_pos < w->nrej && w->rej[w->rej_pos] == seq;
}

static void stream_on_ack(void *udata, uint64_t committed_through)
{
    struct worker *w = udata;
    uint64_t now = now_ns();
    for (uint64_t seq = w->acked_through + 1; seq <= committed_through; seq++) {
        if (was_rejected(w, seq)) continue;
        hist_add(&w->lat, now - w->push_ns[seq & w->ring_mask]);
        acked(w, index_of_seq(w, seq));
    }
    if (committed_through > w->acked_through) w->acked_through = committed_through;
}

static void *stream_main(void *arg)
{
    struct worker *w = arg;
    struct bench *b = w->b;
    sm_send_stream_options so = {.batch_messages = b->o.batch, .window = b->o.window,
                                 .on_error = stream_on_error, .on_ack = stream_on_ack,
                                 .udata = w};
    sm_send_stream *st = NULL;
    sm_send_stream_progress p;
    uint8_t buf[SM_SCALAR_SIZE];
    sm_value v = b->o.workload == W_GREETER ? sm_value_string("hi") : sm_value_int64(1, buf);
    size_t poll_every = b->o.batch ? b->o.batch : 256;
    uint64_t k = 0;
    sm_error err = {0};
    char id[16];
    int rc;

    pthread_barrier_wait(&b->start);
    if (sm_send_stream_open(w->client, &so, &st, &err) != SM_OK) {
        w->failed++;
        note_failure(w, err.code, err.message);
        return NULL;
    }
    for (uint64_t i = w->index; i < b->o.messages; i += b->o.clients) {
        uint64_t seq;
        if (atomic_load_explicit(&b->stop, memory_order_relaxed) || time_up(b)) break;
        w->issued++;
        snprintf(id, sizeof id, "%" PRIu32, address_of(b, i));
        if (sm_send_stream_push(st, b->type, id, &v, NULL, &seq, &err) != SM_OK) {
            note_failure(w, err.code, err.message);
            w->failed++;
            atomic_store(&b->stop, 1);
            break;
        }
        w->push_ns[seq & w->ring_mask] = now_ns();
        if (++k % poll_every == 0 && sm_send_stream_poll(st, 0, &err) != SM_OK) {
            note_failure(w, err.code, err.message);
            w->failed++;
            atomic_store(&b->stop, 1);
            break;
        }
    }
    rc = sm_send_stream_finish(st, b->o.drain_timeout_ms, &err);
    sm_send_stream_get_progress(st, &p);
    if (rc != SM_OK) {
        note_failure(w, err.code, err.message);
        w->failed++;
        w->unknown += p.pushed - p.committed_through;
    }
    sm_send_stream_destroy(&st);
    return NULL;
}

/* ---- the runtime's stats ------------------------------------------------ */

struct rt_stats {
    int64_t received, delivered, queued, checkpoints, batches, endpoints, endpoints_up;
};

static int get_stats(sm_client *c, struct rt_stats *out, sm_error *err)
{
    sm_stats s;
    if (sm_client_stats(c, 5000, &s, err) != SM_OK) return -1;
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < s.n; i++) {
        const char *n = s.items[i].name;
        int64_t v = s.items[i].value;
        if (strcmp(n, "messages_received") == 0) out->received = v;
        else if (strcmp(n, "messages_delivered") == 0) out->delivered = v;
        else if (strcmp(n, "queued_messages") == 0) out->queued = v;
        else if (strcmp(n, "checkpoints") == 0) out->checkpoints = v;
        else if (strcmp(n, "batches_sent") == 0) out->batches = v;
        else if (strcmp(n, "endpoints") == 0) out->endpoints = v;
        else if (strcmp(n, "endpoints_up") == 0) out->endpoints_up = v;
    }
    sm_stats_cleanup(&s);
    return 0;
}

/* Waits until every endpoint is up (the function server connected). */
static int wait_ready(struct bench *b, char *why, size_t whylen)
{
    uint64_t deadline = now_ns() + (uint64_t)b->o.ready_timeout_ms * 1000000u;
    struct rt_stats st;
    sm_error err = {0};
    for (;;) {
        if (get_stats(b->admin, &st, &err) == 0 && st.endpoints > 0 && st.endpoints_up == st.endpoints)
            return 0;
        if (now_ns() > deadline) {
            if (err.message[0])
                errorf(why, whylen, "runtime not ready after %d ms: %s: %s", b->o.ready_timeout_ms,
                         sm_status_code_name(err.code), err.message);
            else
                errorf(why, whylen, "runtime not ready after %d ms: endpoints_up=%" PRId64 " of %" PRId64,
                         b->o.ready_timeout_ms, st.endpoints_up, st.endpoints);
            return -1;
        }
        sleep_ms(20);
    }
}

/* Waits until queued_messages is 0; *last gets the final stats. */
static int wait_drained(struct bench *b, struct rt_stats *last, char *why, size_t whylen)
{
    uint64_t deadline = now_ns() + (uint64_t)b->o.drain_timeout_ms * 1000000u;
    sm_error err = {0};
    for (;;) {
        if (get_stats(b->admin, last, &err) != 0) {
            errorf(why, whylen, "Stats failed while draining: %s: %s", sm_status_code_name(err.code),
                     err.message);
            return -1;
        }
        if (last->queued == 0) return 0;
        if (now_ns() > deadline) {
            errorf(why, whylen, "queued_messages still %" PRId64 " after %d ms", last->queued,
                     b->o.drain_timeout_ms);
            return -1;
        }
        sleep_ms(2);
    }
}

/* ---- the check ---------------------------------------------------------- */

struct check {
    struct bench *b;
    const uint32_t *addrs;    /* the checked addresses */
    size_t n;
    uint64_t unknown;         /* tolerance: messages of unknown outcome */
    /* per thread results (one struct per thread) */
    size_t from, to;
    sm_client *client;
    uint64_t sum, bad;
    uint32_t first_bad;
    int64_t first_bad_value;
    int rpc_code;
    char rpc_error[300];
};

static void *check_main(void *arg)
{
    struct check *c = arg;
    struct bench *b = c->b;
    char id[16];
    for (size_t j = c->from; j < c->to; j++) {
        uint32_t a = c->addrs[j];
        uint32_t want = atomic_load_explicit(&b->expected[a], memory_order_relaxed);
        uint64_t deadline = 0;
        int64_t n;
        snprintf(id, sizeof id, "%" PRIu32, a);
        for (;;) {
            sm_state_list l;
            sm_error err;
            n = 0;
            if (sm_client_get_state(c->client, b->type, id, STATE_NAME, 10000, &l, &err) != SM_OK) {
                c->rpc_code = err.code;
                errorf(c->rpc_error, sizeof c->rpc_error, "GetState %s %s: %s: %s", b->type, id,
                         sm_status_code_name(err.code), err.message);
                return NULL;
            }
            for (size_t k = 0; k < l.n; k++)
                if (l.items[k].value.typename && sm_value_as_int64(&l.items[k].value, &n) != SM_OK)
                    n = -1;
            sm_state_list_cleanup(&l);
            if (n >= (int64_t)want && n <= (int64_t)want + (int64_t)c->unknown) break;
            /* Wait for a lagging counter only until one is found wrong: on a
             * store that already held counters every address is off, and
             * waiting RECHECK_MS for each would look like a hang. */
            if (c->bad > 0) break;
            if (deadline == 0) deadline = now_ns() + (uint64_t)RECHECK_MS * 1000000u;
            if (now_ns() > deadline) break;
            sleep_ms(50);
        }
        c->sum += (uint64_t)(n > 0 ? n : 0);
        if (n < (int64_t)want || n > (int64_t)want + (int64_t)c->unknown) {
            if (c->bad++ == 0) {
                c->first_bad = a;
                c->first_bad_value = n;
            }
        }
    }
    return NULL;
}

/* The addresses to check: all, or an even sample (first and last included). */
static uint32_t *check_set(const struct bench *b, size_t *n)
{
    uint32_t k = b->o.addresses, m = k <= b->o.check_max ? k : b->o.check_max;
    uint32_t *a = malloc((size_t)m * sizeof *a);
    if (!a) return NULL;
    for (uint32_t j = 0; j < m; j++)
        a[j] = m == k ? j : (uint32_t)((uint64_t)j * (k - 1) / (m - 1));
    *n = m;
    return a;
}

/* ---- JSON output --------------------------------------------------------- */

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

static void json_ms(FILE *f, const char *key, double ms)
{
    if (ms < 0) fprintf(f, ",\"%s\":null", key);
    else fprintf(f, ",\"%s\":%.4f", key, ms);
}

/* ---- main --------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: loadgen --target HOST:PORT --workload counter-spread|counter-hot|greeter\n"
            "               --ingress send|call|stream [--clients N] [--inflight N]\n"
            "               [--addresses K] [--messages M | --duration S] [--batch N] [--window N]\n"
            "               [--timeout-ms N] [--check-max N] [--ready-timeout-ms N]\n"
            "               [--drain-timeout-ms N]\n"
            "See the top of test/bench/loadgen.c.\n");
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max) return -1;
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.target = NULL, .workload = W_SPREAD, .ingress = I_STREAM, .clients = 1, .inflight = 1,
                       .addresses = 1000, .messages = 10000, .timeout_ms = 30000,
                       .check_max = 20000, .ready_timeout_ms = 20000, .drain_timeout_ms = 300000};
    bool have_workload = false, have_ingress = false, have_messages = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t n;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (!v) goto bad;
        i++;
        if (strcmp(a, "--target") == 0) {
            o->target = v;
        } else if (strcmp(a, "--workload") == 0) {
            for (n = 0; n < 3 && strcmp(v, workload_names[n]) != 0; n++) {
            }
            if (n == 3) goto bad_value;
            o->workload = (enum workload)n;
            have_workload = true;
        } else if (strcmp(a, "--ingress") == 0) {
            for (n = 0; n < 3 && strcmp(v, ingress_names[n]) != 0; n++) {
            }
            if (n == 3) goto bad_value;
            o->ingress = (enum ingress)n;
            have_ingress = true;
        } else if (strcmp(a, "--clients") == 0) {
            if (parse_u64(v, 1, MAX_CLIENTS, &n)) goto bad_value;
            o->clients = (unsigned)n;
        } else if (strcmp(a, "--inflight") == 0) {
            if (parse_u64(v, 1, MAX_INFLIGHT, &n)) goto bad_value;
            o->inflight = (unsigned)n;
        } else if (strcmp(a, "--addresses") == 0) {
            if (parse_u64(v, 1, MAX_ADDRESSES, &n)) goto bad_value;
            o->addresses = (uint32_t)n;
        } else if (strcmp(a, "--messages") == 0) {
            if (parse_u64(v, 1, (uint64_t)1 << 40, &n)) goto bad_value;
            o->messages = n;
            have_messages = true;
        } else if (strcmp(a, "--duration") == 0) {
            char *end;
            double d;
            errno = 0;
            d = strtod(v, &end);
            if (errno || end == v || *end || !(d > 0 && d <= 86400)) goto bad_value;
            o->duration_s = d;
        } else if (strcmp(a, "--batch") == 0) {
            if (parse_u64(v, 1, 65536, &n)) goto bad_value;
            o->batch = (size_t)n;
        } else if (strcmp(a, "--window") == 0) {
            if (parse_u64(v, 1, (uint64_t)16 << 20, &n)) goto bad_value;
            o->window = (size_t)n;
        } else if (strcmp(a, "--timeout-ms") == 0) {
            if (parse_u64(v, 1, 3600000, &n)) goto bad_value;
            o->timeout_ms = (int)n;
        } else if (strcmp(a, "--check-max") == 0) {
            if (parse_u64(v, 2, MAX_ADDRESSES, &n)) goto bad_value;
            o->check_max = (uint32_t)n;
        } else if (strcmp(a, "--ready-timeout-ms") == 0) {
            if (parse_u64(v, 1, 3600000, &n)) goto bad_value;
            o->ready_timeout_ms = (int)n;
        } else if (strcmp(a, "--drain-timeout-ms") == 0) {
            if (parse_u64(v, 1, 36000000, &n)) goto bad_value;
            o->drain_timeout_ms = (int)n;
        } else {
            goto bad;
        }
        continue;
    bad_value:
        fprintf(stderr, "loadgen: bad value '%s' for %s\n", v, a);
        return -1;
    bad:
        fprintf(stderr, "loadgen: unexpected argument '%s'\n", a);
        usage(stderr);
        return -1;
    }
    if (!o->target || !have_workload || !have_ingress) {
        fprintf(stderr, "loadgen: --target, --workload and --ingress are required\n");
        usage(stderr);
        return -1;
    }
    if (o->ingress == I_STREAM && o->inflight > 1) {
        fprintf(stderr, "loadgen: --inflight is for --ingress send|call (a stream has --window)\n");
        return -1;
    }
    if (o->duration_s > 0) {
        if (have_messages) {
            fprintf(stderr, "loadgen: --messages and --duration exclude each other\n");
            return -1;
        }
        o->messages = (uint64_t)1 << 40; /* never reached: the clock stops the load */
    }
    if (o->workload == W_HOT) o->addresses = 1;
    if (o->clients > o->messages) o->clients = (unsigned)o->messages;
    return 0;
}

int main(int argc, char **argv)
{
    struct bench b = {0};
    struct hist *lat = NULL;
    struct rt_stats before = {0}, after = {0};
    struct check *chk = NULL;
    uint32_t *addrs = NULL;
    size_t naddrs = 0, nthreads = 0;
    uint64_t t_start = 0, t_acked = 0, t_end = 0;
    uint64_t acked = 0, issued = 0, want = 0, failed = 0, rejected = 0, unknown = 0, sum = 0, expect_sum = 0, bad = 0;
    bool barrier = false, ok = false, rej_overflow = false;
    char error[600] = "", check_desc[200] = "";
    int rc = 1;

    if (parse_args(argc, argv, &b.o) != 0) return 2;
    grpc_init(); /* for the --inflight channels; paired with grpc_shutdown_blocking below */
    b.type = b.o.workload == W_GREETER ? GREETER_TYPE : COUNTER_TYPE;
    for (b.stride = 1000003; gcd(b.stride, b.o.addresses) != 1; b.stride += 2) {
    }
    b.expected = calloc(b.o.addresses, sizeof *b.expected);
    b.w = calloc(b.o.clients, sizeof *b.w);
    lat = calloc(1, sizeof *lat);
    if (!b.expected || !b.w || !lat || !(b.admin = client_new(b.o.target))) {
        errorf(error, sizeof error, "out of memory");
        goto out;
    }

    if (wait_ready(&b, error, sizeof error) != 0) goto out;
    for (unsigned t = 0; t < b.o.clients; t++) {
        struct worker *w = &b.w[t];
        sm_stats warm;
        sm_error err;
        w->b = &b;
        w->index = t;
        if (!(w->client = client_new(b.o.target))) {
            errorf(error, sizeof error, "out of memory");
            goto out;
        }
        /* connect before the clock starts */
        if (sm_client_stats(w->client, 10000, &warm, &err) != SM_OK) {
            errorf(error, sizeof error, "client %u cannot reach %s: %s: %s", t, b.o.target,
                     sm_status_code_name(err.code), err.message);
            goto out;
        }
        sm_stats_cleanup(&warm);
        if (b.o.inflight > 1) {
            if (async_open(w) != 0) {
                errorf(error, sizeof error, "out of memory");
                goto out;
            }
            if (async_connect(w, 10000) != 0) {
                errorf(error, sizeof error, "client %u cannot connect its channel to %s", t, b.o.target);
                goto out;
            }
        }
        if (b.o.ingress == I_STREAM) {
            size_t window = b.o.window ? b.o.window : 65536, ring = 1;
            while (ring < 2 * window + 2) ring <<= 1;
            w->push_ns = calloc(ring, sizeof *w->push_ns);
            w->rej = calloc(MAX_REJECTED_TRACKED, sizeof *w->rej);
            w->ring_mask = ring - 1;
            if (!w->push_ns || !w->rej) {
                errorf(error, sizeof error, "out of memory");
                goto out;
            }
        }
    }
    {
        sm_error err;
        if (get_stats(b.admin, &before, &err) != 0) {
            errorf(error, sizeof error, "Stats: %s: %s", sm_status_code_name(err.code), err.message);
            goto out;
        }
    }

    if (pthread_barrier_init(&b.start, NULL, b.o.clients + 1) != 0) {
        errorf(error, sizeof error, "pthread_barrier_init failed");
        goto out;
    }
    barrier = true;
    for (unsigned t = 0; t < b.o.clients; t++) {
        if (pthread_create(&b.w[t].thread, NULL,
                           b.o.ingress == I_STREAM ? stream_main : b.o.inflight > 1 ? async_main : unary_main,
                           &b.w[t]) != 0) {
            /* cannot happen in practice; the started ones are already at the barrier */
            fprintf(stderr, "loadgen: pthread_create failed\n");
            abort();
        }
        b.w[t].started = true;
    }
    printf("phase load-start\n");
    fflush(stdout);
    t_start = now_ns();
    if (b.o.duration_s > 0) b.deadline_ns = t_start + (uint64_t)(b.o.duration_s * 1e9);
    pthread_barrier_wait(&b.start);
    for (unsigned t = 0; t < b.o.clients; t++) {
        struct worker *w = &b.w[t];
        pthread_join(w->thread, NULL);
        w->started = false;
        hist_merge(lat, &w->lat);
        acked += w->acked;
        issued += w->issued;
        failed += w->failed;
        rejected += w->rejected;
        unknown += w->unknown;
        rej_overflow |= w->rej_overflow;
        if (!error[0] && w->first_error[0])
            errorf(error, sizeof error, "client %u: %s", t, w->first_error);
    }
    t_acked = now_ns();
    /* --duration: the messages started before the time was up */
    want = b.o.duration_s > 0 ? issued : b.o.messages;
    {
        char why[300];
        int drained = wait_drained(&b, &after, why, sizeof why);
        t_end = now_ns();
        printf("phase load-end\n");
        fflush(stdout);
        if (drained != 0) {
            size_t n = strlen(error);
            errorf(error + n, sizeof error - n, "%s%s", n ? "; " : "", why);
            goto report;
        }
    }

    /* the check */
    if (!(addrs = check_set(&b, &naddrs))) {
        errorf(error, sizeof error, "out of memory");
        goto report;
    }
    nthreads = naddrs < CHECK_THREADS ? naddrs : CHECK_THREADS;
    if (nthreads > b.o.clients) nthreads = b.o.clients;
    if (!(chk = calloc(nthreads, sizeof *chk))) {
        errorf(error, sizeof error, "out of memory");
        goto report;
    }
    for (size_t t = 0; t < nthreads; t++) {
        chk[t] = (struct check){.b = &b, .addrs = addrs, .n = naddrs, .unknown = unknown,
                                .from = naddrs * t / nthreads, .to = naddrs * (t + 1) / nthreads,
                                .client = b.w[t].client};
        if (pthread_create(&b.w[t].thread, NULL, check_main, &chk[t]) != 0) abort();
    }
    for (size_t t = 0; t < nthreads; t++) pthread_join(b.w[t].thread, NULL);
    for (size_t j = 0; j < naddrs; j++) expect_sum += atomic_load(&b.expected[addrs[j]]);
    {
        const struct check *first_bad = NULL;
        const char *rpc_error = NULL;
        for (size_t t = 0; t < nthreads; t++) {
            sum += chk[t].sum;
            bad += chk[t].bad;
            if (chk[t].bad && !first_bad) first_bad = &chk[t];
            if (chk[t].rpc_error[0] && !rpc_error) rpc_error = chk[t].rpc_error;
        }
        if (naddrs == b.o.addresses)
            errorf(check_desc, sizeof check_desc, "GetState of all %zu addresses; Stats totals", naddrs);
        else
            errorf(check_desc, sizeof check_desc,
                     "GetState of a sample of %zu of %" PRIu32 " addresses; Stats totals", naddrs,
                     b.o.addresses);
        if (rpc_error) {
            if (!error[0]) errorf(error, sizeof error, "check: %s", rpc_error);
        } else if (first_bad) {
            uint32_t a = first_bad->first_bad;
            char msg[300];
            errorf(msg, sizeof msg,
                     "check failed: %" PRIu64 " of %zu addresses wrong; %s %" PRIu32
                     " has n=%" PRId64 ", acked %" PRIu32 "%s",
                     bad, naddrs, b.type, a, first_bad->first_bad_value,
                     atomic_load(&b.expected[a]),
                     unknown ? " (+ unknown outcomes)" : "");
            error_prepend(error, sizeof error, msg);
        } else if ((uint64_t)(after.received - before.received) < acked ||
                   (uint64_t)(after.received - before.received) > acked + unknown ||
                   after.delivered - before.delivered != after.received - before.received) {
            char msg[300];
            errorf(msg, sizeof msg,
                     "check failed: Stats messages_received=+%" PRId64 " messages_delivered=+%" PRId64
                     " but acked=%" PRIu64,
                     after.received - before.received, after.delivered - before.delivered, acked);
            error_prepend(error, sizeof error, msg);
        } else if (rej_overflow) {
            if (!error[0]) errorf(error, sizeof error, "too many rejected messages to check");
        }
    }
    ok = error[0] == '\0' && failed == 0 && rejected == 0 && acked == want;
    if (ok) rc = 0;
    if (!ok && !error[0])
        errorf(error, sizeof error, "only %" PRIu64 " of %" PRIu64 " messages acknowledged", acked,
                 want);

report:
    {
        double secs = t_end > t_start ? (double)(t_end - t_start) / 1e9 : 0;
        double ack_secs = t_acked > t_start ? (double)(t_acked - t_start) / 1e9 : 0;
        int64_t batches = after.batches - before.batches, ckpts = after.checkpoints - before.checkpoints;
        FILE *f = stdout;
        fprintf(f, "result {\"workload\":\"%s\",\"ingress\":\"%s\",\"clients\":%u,\"inflight\":%u"
                   ",\"addresses\":%" PRIu32 ",\"messages\":%" PRIu64,
                workload_names[b.o.workload], ingress_names[b.o.ingress], b.o.clients, b.o.inflight,
                b.o.addresses, t_acked ? want : b.o.messages);
        if (b.o.duration_s > 0) fprintf(f, ",\"duration_s\":%.3f", b.o.duration_s);
        fprintf(f, ",\"acked\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"rejected\":%" PRIu64
                   ",\"unknown\":%" PRIu64,
                acked, failed, rejected, unknown);
        fprintf(f, ",\"seconds\":%.4f,\"ack_seconds\":%.4f", secs, ack_secs);
        if (secs > 0 && t_end) fprintf(f, ",\"msgs_per_s\":%.1f", (double)acked / secs);
        else fprintf(f, ",\"msgs_per_s\":null");
        json_ms(f, "p50_ms", hist_quantile_ms(lat, 0.50));
        json_ms(f, "p99_ms", hist_quantile_ms(lat, 0.99));
        json_ms(f, "p999_ms", hist_quantile_ms(lat, 0.999));
        json_ms(f, "max_ms", lat->n ? (double)lat->max_ns / 1e6 : -1);
        json_ms(f, "mean_ms", lat->n ? (double)lat->sum_ns / (double)lat->n / 1e6 : -1);
        fprintf(f, ",\"latency\":\"%s\"",
                b.o.ingress == I_STREAM ? "push to cumulative ack" :
                b.o.ingress == I_CALL ? "call to reply" : "send to ack (durable)");
        fprintf(f, ",\"batches\":%" PRId64 ",\"checkpoints\":%" PRId64, batches, ckpts);
        if (batches > 0) fprintf(f, ",\"msgs_per_batch\":%.2f", (double)acked / (double)batches);
        if (ckpts > 0) fprintf(f, ",\"msgs_per_checkpoint\":%.2f", (double)acked / (double)ckpts);
        fprintf(f, ",\"check\":");
        json_string(f, check_desc[0] ? check_desc : "not run");
        fprintf(f, ",\"checked_addresses\":%zu,\"checked_sum\":%" PRIu64 ",\"expected_sum\":%" PRIu64,
                naddrs, sum, expect_sum);
        fprintf(f, ",\"ok\":%s,\"error\":", ok ? "true" : "false");
        if (error[0]) json_string(f, error);
        else fputs("null", f);
        fputs("}\n", f);
        fflush(f);
    }

out:
    if (rc != 0 && !t_start) {
        /* failed before the load: still one result line for the driver */
        printf("result {\"workload\":\"%s\",\"ingress\":\"%s\",\"ok\":false,\"error\":",
               workload_names[b.o.workload], ingress_names[b.o.ingress]);
        json_string(stdout, error[0] ? error : "failed before the load started");
        printf("}\n");
        fflush(stdout);
    }
    if (barrier) pthread_barrier_destroy(&b.start);
    if (b.w) {
        for (unsigned t = 0; t < b.o.clients; t++) {
            sm_client_destroy(&b.w[t].client);
            async_close(&b.w[t]);
            free(b.w[t].push_ns);
            free(b.w[t].rej);
        }
    }
    sm_client_destroy(&b.admin);
    free(chk);
    free(addrs);
    free(lat);
    free(b.w);
    free((void *)b.expected);
    grpc_shutdown_blocking();
    return rc;
}
