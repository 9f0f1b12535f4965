/*
 * delayed — durable delayed messages and their cancellation tokens.
 *
 * A delayed message is a D key (wall-clock due time, seq) holding a
 * StoredDelayed: target, sender, argument, token. It enters the store in the
 * checkpoint of the result (or ingress Send) that created it. In memory each
 * one is a timer (monotonic deadline derived from the wall-clock due time)
 * and, when it has a token, an entry in the (sender, token) index, so
 * cancellation and token-reuse checks need no store read. Recovery rebuilds
 * both from the D range.
 *
 * Firing happens only once the D key is committed: in one checkpoint the D
 * key is deleted and the message is accepted into its target's inbox (M
 * key), so a crash either leaves the D key (it fires again after restart) or
 * the M key (it is delivered): exactly once. Cancelling deletes the D key in
 * the open checkpoint; cancelling an unknown or delivered token does nothing.
 */
#ifndef SM_DELAYED_H
#define SM_DELAYED_H

#include <stddef.h>
#include <stdint.h>

#include "statemesh/v1/types.pb-c.h"
#include "timer.h"

#define DELAYED_MAX_MS (365LL * 24 * 3600 * 1000)
#define DELAYED_TOKEN_MAX 256

struct delayed;

struct delayed_index {
    struct delayed **buckets;
    size_t nbuckets;
    size_t count;              /* entries with a token */
};

struct server;

/* Schedules a message. caller and token may be NULL (token "" = none). */
void delayed_add(struct server *s, int64_t due_wall_ms, const char *caller_type,
                 const char *caller_id, const char *token, const char *target_type,
                 const char *target_id, const Statemesh__V1__TypedValue *arg);
/* The same for a traced message (trace.h): `tr` (borrowed; NULL: not
 * traced) is stored with it, and the message it becomes when it fires
 * carries the same trace and parent span. */
struct trace_ctx;
void delayed_add_traced(struct server *s, int64_t due_wall_ms, const char *caller_type,
                        const char *caller_id, const char *token, const char *target_type,
                        const char *target_id, const Statemesh__V1__TypedValue *arg,
                        const struct trace_ctx *tr);
/* 1 if `sender` has a pending delayed message with `token`. */
int delayed_pending(struct server *s, const char *type, const char *id, const char *token);
/* Cancels it if pending; returns 1 if something was cancelled. */
int delayed_cancel(struct server *s, const char *type, const char *id, const char *token);
/* Recovery: schedules every stored delayed message. Returns 0 or -1. */
int delayed_recover(struct server *s);
/* Frees every in-memory entry (shutdown). */
void delayed_cleanup(struct server *s);

#endif
