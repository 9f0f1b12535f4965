/*
 * statemesh/function.h — the C SDK for writing stateful functions.
 *
 * A function server binds handlers to function types in an `sm_functions`
 * registry and serves them over gRPC with an `sm_server`. The runtime,
 * statemeshd, sends *invocation batches*: one address, its declared state
 * and 1..max_batch messages in arrival order. The SDK calls the handler once
 * per message; the handler reads and writes state through its `sm_ctx`,
 * sends messages to other addresses and replies to callers.
 *
 *     static int hello(sm_ctx *ctx, const sm_value *msg, void *udata) {
 *         int64_t n;
 *         if (sm_state_get_int64(ctx, "seen", &n) < 0) return -1;
 *         if (sm_state_set_int64(ctx, "seen", n + 1) < 0) return -1;
 *         return sm_reply_string(ctx, "hello");
 *     }
 *     static const sm_state_spec specs[] = {SM_STATE("seen", SM_TYPE_INT64)};
 *     sm_functions *fns = sm_functions_create();
 *     sm_functions_bind(fns, "example/hello", specs, 1, hello, NULL);
 *     sm_server *srv = sm_server_create(fns);
 *     sm_server_listen(srv, "unix:/tmp/hello.sock");
 *     sm_server_run(srv);                        // until SIGINT/SIGTERM
 *     sm_server_destroy(&srv); sm_functions_destroy(&fns);
 *
 * Batch semantics (protocol/statemesh/v1/function.proto):
 *   - State changes accumulate over the invocations of a batch: invocation 2
 *     sees what invocation 1 wrote. The batch's answer carries the final
 *     value (or deletion) of every state that was written.
 *   - Messages sent and replies made remember the index of the invocation
 *     that produced them, so a reply further down a chain of messages
 *     answers the ingress Call that started it.
 *   - The batch fails as a whole when a handler returns non-zero, calls
 *     sm_fail(), or makes any sm_state_* / sm_send* / sm_cancel_delayed /
 *     sm_reply* call that returns a negative status (undeclared state name,
 *     typename that differs from the declared one, invalid encoding,
 *     malformed address, token or egress name). Nothing of a failed batch is
 *     applied — no state change, message, delayed message, cancellation or
 *     egress record; the runtime retries it with backoff. Once a batch has
 *     failed, the remaining invocations are not run.
 *   - Handlers must have no side effects beyond what they do through ctx:
 *     a batch may be delivered again (at-least-once invocation).
 *
 * Ownership: sm_functions copies everything passed to bind. A handler's
 * `message` and every value returned by sm_state_get* point into SDK memory
 * that stays valid until the handler returns (state values: also until the
 * next set/delete of the same name). Values passed to set/send/reply are
 * copied before the call returns.
 *
 * Threads: sm_functions is read-only once serving starts; bind every type
 * before sm_server_run. An sm_ctx belongs to one batch on one thread.
 * The gRPC server runs all handlers on the thread that calls sm_server_run:
 * a handler that blocks stalls every stream of that server.
 *
 * The registry and batch processing (statemesh/invoke.h) do not depend on
 * gRPC, so the same handlers can run in-process in the runtime (embedded
 * mode) or in unit tests.
 */
#ifndef STATEMESH_FUNCTION_H
#define STATEMESH_FUNCTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "statemesh/tls.h"
#include "statemesh/value.h"

/* The identity of one function instance. Both strings NUL-terminated. */
typedef struct sm_address {
    const char *type;   /* "namespace/name" */
    const char *id;     /* 1..1024 bytes of UTF-8 */
} sm_address;

/* One declared state of a function type, optionally with a time to live
 * (TTL). At most one of the two expire_* fields may be non-zero:
 *   expire_after_write_ms   the value expires this long after it was last
 *                           written;
 *   expire_after_invoke_ms  ... after the address was last invoked (any
 *                           batch extends it, even one that does not touch
 *                           the value).
 * Expired values are not sent to the function (it sees them absent). The
 * runtime enforces the TTL; the SDK reports it in Describe.
 *
 * Declare specs with the SM_STATE* macros (designated initializers): a
 * positional initializer such as {"n", SM_TYPE_INT64} still compiles, but
 * -Wextra (-Wmissing-field-initializers) warns about the missing TTL fields. */
typedef struct sm_state_spec {
    const char *name;      /* [A-Za-z0-9_.-]+, at most 128 bytes */
    const char *typename;  /* every value written must carry this typename */
    uint64_t expire_after_write_ms;  /* 0 = never; at most SM_MAX_EXPIRE_MS */
    uint64_t expire_after_invoke_ms; /* 0 = never; at most SM_MAX_EXPIRE_MS */
} sm_state_spec;

#define SM_STATE(name_, typename_) {.name = (name_), .typename = (typename_)}
#define SM_STATE_EXPIRE_AFTER_WRITE(name_, typename_, ms_) \
    {.name = (name_), .typename = (typename_), .expire_after_write_ms = (ms_)}
#define SM_STATE_EXPIRE_AFTER_INVOKE(name_, typename_, ms_) \
    {.name = (name_), .typename = (typename_), .expire_after_invoke_ms = (ms_)}

/* Largest state TTL: 100 years. */
#define SM_MAX_EXPIRE_MS ((uint64_t)100 * 365 * 24 * 3600 * 1000)
/* SM_MAX_DELAY_MS, the longest delay of a delayed message: statemesh/value.h. */
/* Cancellation tokens are 1..SM_MAX_TOKEN_LEN bytes of UTF-8. */
#define SM_MAX_TOKEN_LEN 256
/* Egress names are [A-Za-z0-9_.-]{1,SM_MAX_EGRESS_NAME_LEN}. */
#define SM_MAX_EGRESS_NAME_LEN 128

typedef struct sm_functions sm_functions;
typedef struct sm_ctx sm_ctx;

/* Called once per message. Return 0 on success; non-zero fails the batch
 * (use sm_fail() to say why). `message` is owned by the SDK. */
typedef int (*sm_handler)(sm_ctx *ctx, const sm_value *message, void *udata);

/* ---- registry ---- */

/* Returns a new, empty registry (caller owns; sm_functions_destroy), or NULL
 * when out of memory. */
sm_functions *sm_functions_create(void);

/* Binds `fn` to function type `type` ("namespace/name") with `n` declared
 * states. Copies type and specs; `udata` is passed to every call of fn and
 * stays owned by the caller. Returns SM_OK, SM_EINVAL (malformed type, state
 * name or typename; duplicate state name; both expire_* fields set or one
 * above SM_MAX_EXPIRE_MS), SM_EEXIST (type already bound) or SM_ENOMEM. */
int sm_functions_bind(sm_functions *fns, const char *type, const sm_state_spec *specs,
                      size_t n, sm_handler fn, void *udata) SM_WARN_UNUSED;

/* Frees the registry and sets *pfns to NULL. NULL / *pfns == NULL is a no-op. */
void sm_functions_destroy(sm_functions **pfns);

/* ---- inside a handler: the invocation ---- */

/* The address being invoked. Owned by the SDK, valid until the handler returns. */
const sm_address *sm_ctx_self(const sm_ctx *ctx);
/* The sending function's address, or NULL when the message came from the
 * ingress. Owned by the SDK, valid until the handler returns. */
const sm_address *sm_ctx_caller(const sm_ctx *ctx);
/* Index of the current invocation in its batch (0-based) and the batch size. */
size_t sm_ctx_invocation_index(const sm_ctx *ctx);
size_t sm_ctx_batch_size(const sm_ctx *ctx);
/* W3C trace context of the invocation (docs/tracing.md), or NULL when the
 * message is not traced (or the runtime has no runtime.tracing):
 * sm_ctx_trace_id() is the 32 lowercase hex digits of the trace id,
 * sm_ctx_traceparent() the whole "00-<trace id>-<span id>-<flags>" header,
 * whose span is the runtime's invocation span: spans the handler records
 * itself are its children. Messages the handler sends are traced by the
 * runtime without help. Owned by the SDK, valid until the handler returns. */
const char *sm_ctx_trace_id(const sm_ctx *ctx);
const char *sm_ctx_traceparent(const sm_ctx *ctx);

/* Scratch memory for the handler: n bytes, 16-byte aligned, owned by the
 * SDK and freed when the batch is done. NULL when out of memory. */
void *sm_ctx_alloc(sm_ctx *ctx, size_t n);

/* Fails the whole batch with a printf-style message (at most 1 KiB kept;
 * the first failure's message wins). Always returns SM_EFAILED, so a
 * handler can `return sm_fail(ctx, "bad input %d", x);`. */
int sm_fail(sm_ctx *ctx, const char *fmt, ...) SM_PRINTF(2, 3);

/* ---- state ----
 * `name` must be declared for the function type; otherwise the call returns
 * SM_EUNDECLARED and the batch fails. */

/* Current value of state `name` as seen by this invocation. Returns SM_OK
 * and fills *out, or SM_ABSENT (state never written or deleted; *out is
 * {declared typename, NULL, 0}). *out is owned by the SDK. */
int sm_state_get(sm_ctx *ctx, const char *name, sm_value *out /* OUT */) SM_WARN_UNUSED;

/* Typed getters. An absent state yields the type's default — 0, 0.0, false,
 * or an empty string/bytes/json ("" with length 0) — and returns SM_ABSENT.
 * A stored value of another typename or with a bad encoding returns SM_ETYPE
 * or SM_EVALUE and fails the batch. String/json/bytes outputs are owned by
 * the SDK and not NUL-terminated. */
int sm_state_get_int64(sm_ctx *ctx, const char *name, int64_t *out /* OUT */) SM_WARN_UNUSED;
int sm_state_get_float64(sm_ctx *ctx, const char *name, double *out /* OUT */) SM_WARN_UNUSED;
int sm_state_get_bool(sm_ctx *ctx, const char *name, bool *out /* OUT */) SM_WARN_UNUSED;
int sm_state_get_string(sm_ctx *ctx, const char *name, const char **s /* OUT */,
                        size_t *len /* OUT */) SM_WARN_UNUSED;
int sm_state_get_json(sm_ctx *ctx, const char *name, const char **s /* OUT */,
                      size_t *len /* OUT */) SM_WARN_UNUSED;
int sm_state_get_bytes(sm_ctx *ctx, const char *name, const uint8_t **data /* OUT */,
                       size_t *len /* OUT */) SM_WARN_UNUSED;

/* Sets state `name` to a copy of *v. v->typename must equal the declared
 * typename (SM_ETYPE) and built-in encodings must be valid (SM_EVALUE). */
int sm_state_set(sm_ctx *ctx, const char *name, const sm_value *v);
int sm_state_set_int64(sm_ctx *ctx, const char *name, int64_t v);
int sm_state_set_float64(sm_ctx *ctx, const char *name, double v);
int sm_state_set_bool(sm_ctx *ctx, const char *name, bool v);
int sm_state_set_string(sm_ctx *ctx, const char *name, const char *s);  /* NUL-terminated */
int sm_state_set_json(sm_ctx *ctx, const char *name, const char *json); /* NUL-terminated */
int sm_state_set_bytes(sm_ctx *ctx, const char *name, const void *data, size_t len);

/* Deletes state `name` (absent from now on). */
int sm_state_delete(sm_ctx *ctx, const char *name);

/* ---- messages and replies ----
 * The value is copied. The target type must be "namespace/name" and the id
 * 1..1024 bytes of UTF-8; otherwise SM_EINVAL and the batch fails. */
int sm_send(sm_ctx *ctx, const char *type, const char *id, const sm_value *v);
int sm_send_int64(sm_ctx *ctx, const char *type, const char *id, int64_t v);
int sm_send_string(sm_ctx *ctx, const char *type, const char *id, const char *s);
int sm_send_json(sm_ctx *ctx, const char *type, const char *id, const char *json);

/* ---- delayed messages ----
 * sm_send_after sends (type, id, *v) once, after delay_ms (0..SM_MAX_DELAY_MS),
 * durably: the runtime keeps it across restarts. A non-NULL
 * cancellation_token (1..SM_MAX_TOKEN_LEN bytes of UTF-8, scoped to the
 * sending address) lets a later sm_cancel_delayed from the same address
 * cancel it until it fires. Target and value are checked as for sm_send.
 * A delayed message does not carry the pending ingress Call along (a reply
 * made by its receiver answers nothing).
 *
 * Tokens within one batch follow the order of the calls: cancelling a token
 * that this batch already used for sm_send_after drops that message (and
 * also cancels a pending one of an earlier batch); using a token a second
 * time in the batch without cancelling it in between fails the batch
 * (SM_EEXIST). Re-using a token that is still pending from an earlier batch
 * is detected by the runtime, which then fails the whole batch.
 *
 * sm_cancel_delayed cancels the pending delayed message this address sent
 * with `token`; unknown or already delivered tokens are ignored. */
int sm_send_after(sm_ctx *ctx, uint64_t delay_ms, const char *type, const char *id,
                  const sm_value *v, const char *cancellation_token /* NULL: none */);
int sm_send_after_int64(sm_ctx *ctx, uint64_t delay_ms, const char *type, const char *id,
                        int64_t v, const char *cancellation_token);
int sm_send_after_string(sm_ctx *ctx, uint64_t delay_ms, const char *type, const char *id,
                         const char *s, const char *cancellation_token);
int sm_send_after_json(sm_ctx *ctx, uint64_t delay_ms, const char *type, const char *id,
                       const char *json, const char *cancellation_token);
int sm_cancel_delayed(sm_ctx *ctx, const char *token);

/* ---- egress ----
 * Appends a copy of *v to the egress log `egress` ([A-Za-z0-9_.-]{1,128},
 * declared in the runtime's config; an undeclared name makes the runtime
 * fail the batch). Records become visible to subscribers once the batch's
 * checkpoint is durable, in commit order. */
int sm_send_egress(sm_ctx *ctx, const char *egress, const sm_value *v);
int sm_send_egress_int64(sm_ctx *ctx, const char *egress, int64_t v);
int sm_send_egress_string(sm_ctx *ctx, const char *egress, const char *s);
int sm_send_egress_json(sm_ctx *ctx, const char *egress, const char *json);

/* Replies to the ingress Call that led to the current invocation (the first
 * reply to a Call wins; without a pending Call the runtime drops it). */
int sm_reply(sm_ctx *ctx, const sm_value *v);
int sm_reply_int64(sm_ctx *ctx, int64_t v);
int sm_reply_string(sm_ctx *ctx, const char *s);
int sm_reply_json(sm_ctx *ctx, const char *json);

/* ---- the gRPC function server ---- */

typedef enum sm_log_level {
    SM_LOG_DEBUG = 0,
    SM_LOG_INFO,
    SM_LOG_WARN,
    SM_LOG_ERROR,
    SM_LOG_OFF
} sm_log_level;

typedef struct sm_server sm_server;

/* Creates a server for the types bound in `fns` (borrowed: fns must outlive
 * the server and not change once sm_server_run starts). Blocks SIGINT and
 * SIGTERM in the calling thread before gRPC starts its threads, so create
 * the server from the main thread before any other gRPC object. The log
 * level comes from $STATEMESH_LOG_LEVEL (debug|info|warn|error|off; default
 * info). Returns NULL when out of memory (caller owns; sm_server_destroy). */
sm_server *sm_server_create(sm_functions *fns);

/* Sets the level of the logfmt lines the server writes to stderr. */
void sm_server_set_log_level(sm_server *srv, sm_log_level level);

/* Adds a listening address: "unix:/path.sock" (also unix:///abs/path),
 * "unix-abstract:name" or "host:port" (port 0 = pick one; see
 * sm_server_port). For a unix path the server holds an flock on
 * "PATH.lock" so that a second server on the same socket fails with
 * SM_EEXIST instead of silently stealing it; a stale socket file is
 * replaced. Call before sm_server_run. Errors are logged; returns SM_OK,
 * SM_EINVAL, SM_EEXIST, SM_ESYS or SM_ESTATE (already running). */
int sm_server_listen(sm_server *srv, const char *addr) SM_WARN_UNUSED;

/* Serves the next host:port listens over TLS (statemesh/tls.h): cert_file
 * and key_file required; ca_file + require_client_cert = 1 admit only
 * clients (the runtime) with a certificate signed by that CA (mTLS). The
 * files are read now; a missing one, or one without a PEM certificate/key,
 * is logged (event=fn.tls.failed) and gives SM_EINVAL. A key that does not
 * match its certificate makes sm_server_listen fail. A unix-socket listen
 * after it fails with SM_EINVAL: unix sockets stay plain. Call before
 * sm_server_listen; SM_ESTATE once running. */
int sm_server_set_tls(sm_server *srv, const sm_tls_options *tls) SM_WARN_UNUSED;

/* The TCP port bound by the last successful host:port listen (0 if none). */
int sm_server_port(const sm_server *srv);

/* Serves until SIGINT or SIGTERM, then shuts down: stops accepting calls,
 * flushes answers already computed, ends open streams with UNAVAILABLE
 * (after at most 2 s, cancels what is left) and returns SM_OK. Returns
 * SM_ESTATE without listening addresses or when called twice. */
int sm_server_run(sm_server *srv) SM_WARN_UNUSED;

/* Frees the server, removes its unix socket files and releases their locks,
 * and sets *psrv to NULL. NULL / *psrv == NULL is a no-op. */
void sm_server_destroy(sm_server **psrv);

#endif
