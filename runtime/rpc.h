/*
 * rpc — the runtime's thin layer over the gRPC C core.
 *
 * No other module touches completion-queue tags, grpc_op arrays, slices or
 * byte buffers: they see decoded bytes (`const uint8_t *, size_t`, borrowed for
 * the duration of a callback) and hand over encoded bytes as malloc'd buffers
 * whose ownership moves to rpc.
 *
 * Threading: everything runs on the one event-loop thread that calls
 * rpc_loop_next(); callbacks are invoked from there, never concurrently.
 *
 * Lifetimes (the invariant that keeps this ASan/valgrind clean): every object
 * that owns a tag (server call, client call, stream) is freed only when no
 * operation can still complete on it. Modules never free rpc objects; they
 * release their interest (reply, cancel) and rpc frees when gRPC is done.
 *
 *   unary server call:  on_request -> module keeps handle -> rpc_call_reply()
 *                       or rpc_call_error() exactly once; if the client goes
 *                       away first, on_cancel fires instead and the handle is
 *                       invalid once it returns.
 *   client stream:      rpc_stream_open -> on_message* -> on_closed (last
 *                       callback; handle invalid once it returns).
 *   client unary:       rpc_unary_start -> on_done exactly once.
 */
#ifndef SM_RPC_H
#define SM_RPC_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include "log.h"

/* gRPC status codes, as the module edge sees them. */
enum rpc_status {
    RPC_OK = 0, RPC_CANCELLED = 1, RPC_UNKNOWN = 2, RPC_INVALID_ARGUMENT = 3,
    RPC_DEADLINE_EXCEEDED = 4, RPC_NOT_FOUND = 5, RPC_ALREADY_EXISTS = 6,
    RPC_PERMISSION_DENIED = 7, RPC_RESOURCE_EXHAUSTED = 8, RPC_FAILED_PRECONDITION = 9,
    RPC_ABORTED = 10, RPC_OUT_OF_RANGE = 11, RPC_UNIMPLEMENTED = 12, RPC_INTERNAL = 13,
    RPC_UNAVAILABLE = 14, RPC_DATA_LOSS = 15, RPC_UNAUTHENTICATED = 16
};
const char *rpc_status_name(int code);

/* Every completion-queue tag is one of these, embedded in its owner. */
struct rpc_tag {
    void (*fn)(void *owner, int ok);
    void *owner;
};

struct rpc_loop {
    grpc_completion_queue *cq;
    const struct log *log;
    int shutdown_started;
};

int rpc_loop_init(struct rpc_loop *loop, const struct log *lg);
/* Waits until `deadline_ms` (monotonic, see rpc_now_ms) for one event and
 * dispatches it. Returns 1 if an event ran, 0 on timeout, -1 once the queue
 * has been shut down and drained. */
int rpc_loop_next(struct rpc_loop *loop, int64_t deadline_ms);
/* Shuts the queue down and drains it; call after every server, channel and
 * call is gone. */
void rpc_loop_cleanup(struct rpc_loop *loop);
int64_t rpc_now_ms(void);

/* Encodes a protobuf message into a malloc'd buffer (caller owns). */
uint8_t *rpc_pack(const ProtobufCMessage *m, size_t *len /* OUT */);

/* ---- server ------------------------------------------------------------ */

struct rpc_server;
struct rpc_call;      /* one unary server call */

/* `req` is the request payload, borrowed during the callback. The module must
 * eventually answer with rpc_call_reply()/rpc_call_error() unless on_cancel
 * fires first. `arg` is the method's registration argument. */
typedef void (*rpc_request_fn)(void *arg, struct rpc_call *call, const uint8_t *req, size_t len);
typedef void (*rpc_cancel_fn)(void *arg, struct rpc_call *call);

struct rpc_server_options {
    size_t max_receive_bytes;   /* larger requests get RESOURCE_EXHAUSTED from gRPC */
    int max_streams_per_connection; /* HTTP/2 MAX_CONCURRENT_STREAMS, 0 = gRPC's default */
    long max_calls;             /* calls + streams open at once, 0 = unbounded; beyond it
                                 * new calls get RESOURCE_EXHAUSTED naming max_calls_name */
    const char *max_calls_name;
    size_t memory_quota_bytes;  /* gRPC resource quota for the transport's buffers
                                 * (0 = none): over it gRPC resets streams with
                                 * RESOURCE_EXHAUSTED instead of buffering on */
    /* Called for every new call before its request is read or its module
     * sees it, with the full method name and the `authorization` metadata
     * value (NULL: none; two or more: refused as if missing), and the call
     * gRPC call (for rpc_peer_identity_each). Nonzero: the call is answered
     * with that status and *msg. NULL = no check. */
    int (*authorize)(void *arg, grpc_call *call, const char *method, const char *value,
                     size_t len, const char **msg);
    void *authorize_arg;
    grpc_server_credentials *creds; /* TLS (tls.h), NULL = plaintext; ownership moves
                                 * to rpc, also when rpc_server_create fails */
};

int rpc_server_create(struct rpc_server **out /* OUT, owned */, struct rpc_loop *loop,
                      const struct rpc_server_options *opt)
    __attribute__((warn_unused_result));
/* Registers a unary method ("/pkg.Service/Method"). Before start only. */
int rpc_server_add_unary(struct rpc_server *srv, const char *method, rpc_request_fn on_request,
                         void *arg) __attribute__((warn_unused_result));
/* Binds `addr` (host:port or unix:/path) and starts serving. Unknown methods
 * get UNIMPLEMENTED. Returns 0 or -1 (logged). */
int rpc_server_start(struct rpc_server *srv, const char *addr)
    __attribute__((warn_unused_result));
/* Stops accepting new calls; calls in progress may still be answered.
 * After `grace_ms` the remaining calls are cancelled (their on_cancel fires).
 * rpc_server_done() turns true once every call is over. */
void rpc_server_shutdown(struct rpc_server *srv);
void rpc_server_cancel_all(struct rpc_server *srv);
int rpc_server_done(const struct rpc_server *srv);
void rpc_server_destroy(struct rpc_server **srvp);   /* only when done */

/* Observing calls (metrics.h): `fn` runs once per started call or stream,
 * when its status is sent or it is cancelled (code RPC_CANCELLED), with the
 * method's index in registration order (-1: unknown method) and its
 * duration. Before start only; fn NULL = off (the default). */
typedef void (*rpc_observe_fn)(void *arg, int method, int code, int64_t ns);
void rpc_server_observe(struct rpc_server *srv, rpc_observe_fn fn, void *arg);
/* The registered methods, "/pkg.Service/Method"; borrowed until destroy. */
int rpc_server_nmethods(const struct rpc_server *srv);
const char *rpc_server_method(const struct rpc_server *srv, int method);
/* Monotonic nanoseconds. */
int64_t rpc_now_ns(void);

/* ---- server streams (bidi and server-streaming methods) -----------------
 *
 * The module decides when to read (rpc_scall_read: one receive at a time,
 * which is also flow control: while it does not read, gRPC's window fills
 * and the client blocks), sends one message at a time (on_writable tells
 * when the next may go), and ends the call once with rpc_scall_finish().
 * on_cancel fires instead if the call dies first (client gone, deadline,
 * server shutdown); the handle is invalid once on_cancel returns or once
 * rpc_scall_finish() has been called. */
struct rpc_scall;

struct rpc_scall_callbacks {
    /* A client message (borrowed). data == NULL: the client half-closed. */
    void (*on_message)(void *arg, struct rpc_scall *c, const uint8_t *data, size_t len);
    void (*on_writable)(void *arg, struct rpc_scall *c);   /* a send completed */
    void (*on_cancel)(void *arg, struct rpc_scall *c);
};

/* Called for every new call of the method; the module sets its callbacks
 * with rpc_scall_set() (before returning) and starts reading. */
typedef void (*rpc_stream_open_fn)(void *arg, struct rpc_scall *c);

int rpc_server_add_stream(struct rpc_server *srv, const char *method, rpc_stream_open_fn on_open,
                          void *arg) __attribute__((warn_unused_result));
void rpc_scall_set(struct rpc_scall *c, const struct rpc_scall_callbacks *cb, void *arg);
/* Asks for the next client message (no-op if a receive is pending or the
 * client has half-closed). */
void rpc_scall_read(struct rpc_scall *c);
int rpc_scall_writable(const struct rpc_scall *c);
/* Sends one message (ownership of the malloc'd `data` moves to rpc).
 * Returns 0, or -1 (data freed) if not writable. */
int rpc_scall_send(struct rpc_scall *c, uint8_t *data, size_t len);
/* Ends the call with a status (after any send in flight). */
void rpc_scall_finish(struct rpc_scall *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Module bookkeeping on a call: an opaque pointer and a cancel callback. */
void rpc_call_set_cancel(struct rpc_call *call, rpc_cancel_fn fn, void *arg);
/* The peer's identity as its TLS client certificate states it — the hook
 * authorisation uses (docs/security.md): the subject alternative names
 * (DNS, IP, URI, e-mail), comma-separated, or the subject's common name when
 * the certificate has none. Writes a NUL-terminated string (truncated to
 * `len`) and returns 1; returns 0 with "" when the call came without a
 * verified client certificate (plaintext, or TLS without mTLS). */
int rpc_call_peer_identity(const struct rpc_call *call, char *buf, size_t len);
int rpc_scall_peer_identity(const struct rpc_scall *c, char *buf, size_t len);
/* 1 when the client of the stream sent request metadata `key` (lowercase). */
int rpc_scall_has_metadata(const struct rpc_scall *c, const char *key);
/* Calls fn once per identity of the verified client certificate (each SAN,
 * or the CN when it has none: the values rpc_call_peer_identity joins),
 * with its bytes and length. Returns how many there were (0: plaintext, or
 * no verified certificate). */
int rpc_peer_identity_each(grpc_call *call, void (*fn)(void *arg, const char *value, size_t len),
                           void *arg);
/* The same for the certificate's whole subject ("CN=...,O=..."). */
int rpc_call_peer_subject(const struct rpc_call *call, char *buf, size_t len);
int rpc_scall_peer_subject(const struct rpc_scall *c, char *buf, size_t len);

/* Adds trailing metadata pairs (as rpc_call_error_md) that the call's
 * answer, whichever it is, will carry; copied. */
void rpc_call_add_trailer(struct rpc_call *call, const char *const *md, size_t nmd);
/* 1 when the client sent request metadata `key` (lowercase). */
int rpc_call_has_metadata(const struct rpc_call *call, const char *key);
/* Milliseconds left before the client's deadline (INT64_MAX: none). */
int64_t rpc_call_deadline_ms(const struct rpc_call *call);
/* Answers OK with `resp`; the handle is invalid afterwards. */
void rpc_call_reply(struct rpc_call *call, const ProtobufCMessage *resp);
/* Answers OK with an already encoded response (malloc'd; ownership moves). */
void rpc_call_reply_raw(struct rpc_call *call, uint8_t *data, size_t len);
/* Answers with a status; the handle is invalid afterwards. */
/* rpc_call_error() with trailing metadata: md holds nmd key, value pairs
 * (lowercase keys, printable ASCII values; at most 4 pairs; copied). */
void rpc_call_error_md(struct rpc_call *call, int code, const char *const *md, size_t nmd,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void rpc_call_error(struct rpc_call *call, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- client ------------------------------------------------------------ */

struct rpc_channel;
struct rpc_stream;

struct rpc_channel_options {
    int round_robin;           /* balance calls over every resolved address */
    int keepalive_ms;          /* HTTP/2 ping interval, 0 = off */
    grpc_channel_credentials *creds; /* TLS (tls.h), NULL = plaintext; borrowed */
};

/* opt may be NULL (pick_first, no keepalive). */
int rpc_channel_create(struct rpc_channel **out /* OUT, owned */, struct rpc_loop *loop,
                       const char *target, const struct rpc_channel_options *opt)
    __attribute__((warn_unused_result));
/* Only once every stream and unary call on it has completed. */
void rpc_channel_destroy(struct rpc_channel **chp);
/* Streams and unary calls still running on the channel. */
long rpc_channel_calls(const struct rpc_channel *ch);

/* Unary client call; on_done runs exactly once with the status and, on OK,
 * the response bytes (borrowed). */
typedef void (*rpc_unary_done_fn)(void *arg, int status, const char *details,
                                  const uint8_t *resp, size_t len);
int rpc_unary_start(struct rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                    int64_t timeout_ms, rpc_unary_done_fn on_done, void *arg)
    __attribute__((warn_unused_result));

/* Forwarding a unary server call to another server (forward.h): the same
 * method with the request bytes `req` (copied), the client's request
 * metadata carried on (all but gRPC's and the transport's own keys and
 * x-statemesh-forwarded, at most 16) plus up to 2 pairs of `md`, and a
 * deadline timeout_ms from now (< 0: none). on_done runs exactly once with
 * the status, the response (borrowed, on OK) and the answer's x-statemesh-*
 * trailing metadata as nmd key/value pairs (borrowed). *out stays valid
 * until on_done has run; rpc_unary_cancel() makes on_done come sooner. */
struct rpc_ucall;
typedef void (*rpc_forward_done_fn)(void *arg, int status, const char *details,
                                    const uint8_t *resp, size_t len,
                                    const char *const *md, size_t nmd);
int rpc_unary_forward(struct rpc_ucall **out /* OUT */, struct rpc_channel *ch,
                      const char *method, const struct rpc_call *from, const uint8_t *req,
                      size_t len, const char *const *md, size_t nmd, int64_t timeout_ms,
                      rpc_forward_done_fn on_done, void *arg) __attribute__((warn_unused_result));
void rpc_unary_cancel(struct rpc_ucall *u);

struct rpc_stream_callbacks {
    void (*on_message)(void *arg, const uint8_t *data, size_t len);
    void (*on_writable)(void *arg);            /* the previous send completed */
    void (*on_closed)(void *arg, int status, const char *details);  /* last call */
};

/* Opens a bidi stream. */
int rpc_stream_open(struct rpc_stream **out /* OUT */, struct rpc_channel *ch, const char *method,
                    const struct rpc_stream_callbacks *cb, void *arg)
    __attribute__((warn_unused_result));
/* rpc_stream_open() carrying the request metadata of server stream `from`
 * and up to 2 pairs of md, as rpc_unary_forward() does (forward.h). */
int rpc_stream_open_forward(struct rpc_stream **out /* OUT */, struct rpc_channel *ch,
                            const char *method, const struct rpc_scall *from,
                            const char *const *md, size_t nmd,
                            const struct rpc_stream_callbacks *cb, void *arg)
    __attribute__((warn_unused_result));
/* 1 if a send may start now (no send in flight and the stream is open). */
int rpc_stream_writable(const struct rpc_stream *s);
/* Sends `data` (malloc'd; ownership moves to rpc, also on failure).
 * Returns 0, or -1 if not writable. */
int rpc_stream_send(struct rpc_stream *s, uint8_t *data, size_t len);
/* Cancels the stream; on_closed follows. */
void rpc_stream_cancel(struct rpc_stream *s);

#endif
