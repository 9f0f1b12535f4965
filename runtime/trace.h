/*
 * trace — W3C trace context on messages, and spans exported over OTLP/gRPC
 * (docs/tracing.md).
 *
 * A traced message carries a `struct trace_ctx`: its trace id, the span
 * that caused it (the ingress span, or the invocation span of the function
 * that sent it) and the W3C trace-flags. When the message is dispatched it
 * gets its own invocation span id, which the function sees as the
 * invocation's traceparent and which becomes the parent of every message,
 * delayed message and egress record the function produces for it. So a
 * Call that crosses functions forms one tree:
 *
 *   ingress (SERVER) ─┬─ queue (INTERNAL)           A's wait
 *                     └─ invoke A (CLIENT) ─┬─ checkpoint (INTERNAL)
 *                                           ├─ queue                 B's wait
 *                                           └─ invoke B ── checkpoint
 *
 * The contexts are carried whether or not the sampled flag is set (logs of
 * a traced message carry trace_id=...); spans are recorded only for
 * sampled ones, and only when runtime.tracing is configured. Without it
 * nothing here runs: the ingress reads no header and no message has a
 * context (no cost when off).
 *
 * The tracer (one per process, in struct server) keeps finished spans in a
 * bounded ring (TRACE_QUEUE_SPANS). A timer on the event loop sends what is
 * there as one OTLP Export call at a time (at most TRACE_EXPORT_MAX spans
 * per call; a full batch goes at once); nothing ever blocks the loop. A full ring drops the new span,
 * and a failed export drops its spans; both are counted (spans_dropped),
 * spans the collector accepted are counted as spans_exported.
 */
#ifndef SM_TRACE_H
#define SM_TRACE_H

#include <stddef.h>
#include <stdint.h>

struct cfg_tracing;
struct log;
struct rpc_loop;
struct timer_heap;

#define TRACE_PARENT_LEN 55     /* "00-" 32 hex "-" 16 hex "-" 2 hex */
#define TRACE_STATE_MAX 512     /* W3C: at most 32 entries of ~16 bytes; we keep 512 */
#define TRACE_FLAG_SAMPLED 0x01
#define TRACE_QUEUE_SPANS 4096  /* finished spans waiting for export */
#define TRACE_EXPORT_MAX 512    /* spans per Export call */
#define TRACE_EXPORT_MS 200     /* how often the ring is exported */
#define TRACE_EXPORT_TIMEOUT_MS 2000
#define TRACE_ATTR_MAX 256      /* the statemesh.address attribute, truncated */

/* A message's trace context: one malloc'd block, tracestate inline. */
struct trace_ctx {
    uint8_t trace_id[16];
    uint8_t parent_id[8];      /* the span that caused the message */
    uint8_t span_id[8];        /* its invocation span; set when dispatched */
    uint8_t flags;             /* W3C trace-flags; TRACE_FLAG_SAMPLED: spans recorded */
    int64_t enqueued_ns;       /* wall clock: the queue span starts */
    int64_t sent_ns;           /* wall clock: the invocation span starts */
    char state[];              /* W3C tracestate, "" none */
};

/* ---- W3C trace context --------------------------------------------------- */

/* Parses a traceparent header (W3C Trace Context level 1: version 00 exactly
 * 55 characters; a higher version at least that, its extra fields ignored;
 * version ff, bad hex, upper-case hex, all-zero ids: invalid). Returns 0, or
 * -1 when it is malformed: then the caller starts a new trace, never an
 * error to the client. */
int trace_parse(const char *s, size_t len, uint8_t trace_id[16] /* OUT */,
                uint8_t span_id[8] /* OUT */, uint8_t *flags /* OUT */);
/* 1 when `s` is a tracestate we carry (printable ASCII, <= TRACE_STATE_MAX). */
int trace_state_ok(const char *s, size_t len);
/* Writes "00-<trace>-<span>-<flags>" and a NUL into out[TRACE_PARENT_LEN + 1]. */
void trace_format(const uint8_t trace_id[16], const uint8_t span_id[8], uint8_t flags,
                  char *out /* OUT */);
/* Writes the 32 hex digits of a trace id and a NUL into out[33]. */
void trace_id_hex(const uint8_t trace_id[16], char *out /* OUT */);

/* A new context (caller owns; free()). state may be NULL. */
struct trace_ctx *trace_ctx_create(const uint8_t trace_id[16], const uint8_t parent_id[8],
                                   uint8_t flags, const char *state, size_t state_len);
/* The context of a message produced by the invocation of `cause`: same
 * trace, flags and tracestate, parent = cause's invocation span. */
struct trace_ctx *trace_ctx_child(const struct trace_ctx *cause);
/* The context a stored traceparent/tracestate pair describes (recovery,
 * delayed messages), or NULL when traceparent is empty or malformed. */
struct trace_ctx *trace_ctx_from_header(const char *traceparent, const char *tracestate);
/* Wall-clock nanoseconds since the Unix epoch (span times). */
int64_t trace_now_ns(void);

/* ---- spans and their export ------------------------------------------------ */

enum trace_kind { TRACE_INTERNAL = 1, TRACE_SERVER = 2, TRACE_CLIENT = 3 };

struct trace_span {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t parent_id[8];      /* all zero: a root span */
    uint8_t flags;
    uint8_t kind;              /* enum trace_kind */
    uint8_t error;             /* status ERROR with `status` as its message */
    const char *name;          /* a string literal */
    int64_t start_ns, end_ns;
    int64_t count;             /* statemesh.messages attribute; 0: none */
    char address[TRACE_ATTR_MAX];   /* statemesh.address ("type/id"); "" none */
    char status[160];
};

struct tracer;

/* Creates the tracer for runtime.tracing (caller owns; tracer_destroy) and
 * arms its export timer. Returns 0, or -1 with `err` filled (TLS files). */
int tracer_create(struct tracer **out /* OUT */, const struct cfg_tracing *cfg,
                  struct rpc_loop *loop, struct timer_heap *timers, const struct log *lg,
                  char *err, size_t errlen) __attribute__((warn_unused_result));
/* Sends what is queued (one last Export) and stops the timer; then wait
 * until tracer_idle() before tracer_destroy(). */
void tracer_stop(struct tracer *t);
int tracer_idle(const struct tracer *t);
void tracer_destroy(struct tracer **tp);

/* 1 with probability sample_ratio: a new trace is recorded. */
int tracer_sample(struct tracer *t);
void tracer_new_trace_id(struct tracer *t, uint8_t out[16] /* OUT */);
void tracer_new_span_id(struct tracer *t, uint8_t out[8] /* OUT */);
/* Queues a finished span (copied); drops and counts it when the ring is
 * full. */
void tracer_emit(struct tracer *t, const struct trace_span *sp);
/* A span filled with ids, kind, name and times (the rest zero). parent
 * NULL: a root span. */
void trace_span_init(struct trace_span *sp, const uint8_t trace_id[16], const uint8_t span_id[8],
                     const uint8_t *parent_id, uint8_t flags, enum trace_kind kind,
                     const char *name, int64_t start_ns, int64_t end_ns);
void trace_span_address(struct trace_span *sp, const char *type, const char *id);

/* Checkpoint spans: the result of the invocation `c` (its span_id) was
 * applied to the open checkpoint; tracer_checkpoint_done() records a
 * "statemesh.checkpoint" child span for each, from then until now, once
 * the checkpoint is durable. At most TRACE_QUEUE_SPANS wait (then dropped
 * and counted). */
void tracer_checkpoint_wait(struct tracer *t, const struct trace_ctx *c);
void tracer_checkpoint_done(struct tracer *t);

/* Counters (Stats, /metrics). */
int64_t tracer_exported(const struct tracer *t);
int64_t tracer_dropped(const struct tracer *t);

#endif
