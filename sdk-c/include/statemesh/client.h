/*
 * statemesh/client.h — blocking client for statemeshd's ingress and admin
 * APIs (protocol/statemesh/v1/ingress.proto, admin.proto).
 *
 *     sm_client *c = sm_client_create(NULL);          // 127.0.0.1:7070
 *     sm_value_buf reply = SM_VALUE_BUF_INIT;
 *     sm_error err;
 *     sm_value msg = sm_value_string("hi");
 *     if (sm_client_call(c, "example/user", "alice", &msg, 10000, &reply, &err) == 0)
 *         printf("%s\n", (const char *)reply.value.data);  // NUL after data
 *     else
 *         fprintf(stderr, "%s: %s\n", sm_status_code_name(err.code), err.message);
 *     sm_value_buf_cleanup(&reply);
 *     sm_client_destroy(&c);
 *
 * Every RPC is one unary gRPC call, made with a single batch of operations
 * and waited for on the client's own completion queue.
 *
 * Threads: a client is used by one thread at a time (one client per thread).
 *
 * Errors: RPC functions return SM_OK, or a negative status with *err filled
 * in: err->code is the gRPC status code (GRPC_STATUS_*, e.g. 5 = NOT_FOUND,
 * 14 = UNAVAILABLE when the runtime is not reachable) and err->message the
 * status details. Bad arguments are reported locally with code
 * INVALID_ARGUMENT (3) and return SM_EINVAL. `err` may be NULL.
 *
 * Timeouts: timeout_ms > 0 sets the gRPC deadline (DEADLINE_EXCEEDED, 4,
 * when it passes); timeout_ms <= 0 waits without a deadline.
 */
#ifndef STATEMESH_CLIENT_H
#define STATEMESH_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "statemesh/value.h"

#define SM_DEFAULT_INGRESS "127.0.0.1:7070"

typedef struct sm_client sm_client;

typedef struct sm_error {
    int code;            /* gRPC status code; 0 = OK */
    char message[1024];  /* status details, NUL-terminated, possibly truncated */
} sm_error;

/* "NOT_FOUND" for 5, etc.; "UNKNOWN_STATUS" for codes outside 0..16. Static. */
const char *sm_status_code_name(int code);

/* One named state value of an address. */
typedef struct sm_named_value {
    const char *name;
    sm_value value;      /* typename NULL if the runtime sent no value */
} sm_named_value;

/* The answer of sm_client_get_state. Owns everything it points to. */
typedef struct sm_state_list {
    sm_named_value *items;   /* sorted by name, as the runtime sends them */
    size_t n;
    uint64_t queued_messages; /* messages waiting for the address */
    bool in_flight;           /* a batch for the address is being processed */
    void *msg_;               /* private: the unpacked response */
} sm_state_list;

typedef struct sm_stat {
    const char *name;
    int64_t value;
} sm_stat;

/* The answer of sm_client_stats. Owns everything it points to. */
typedef struct sm_stats {
    sm_stat *items;
    size_t n;
    void *msg_;               /* private */
} sm_stats;

/* Creates a client for `target` (a gRPC target such as "127.0.0.1:7070",
 * "unix:/path" or "dns:///host:port"; NULL = SM_DEFAULT_INGRESS). Connects
 * lazily: an unreachable runtime shows up as UNAVAILABLE on the first RPC.
 * Returns NULL when out of memory (caller owns; sm_client_destroy). */
sm_client *sm_client_create(const char *target);

/* Frees the client and sets *pc to NULL. NULL / *pc == NULL is a no-op. */
void sm_client_destroy(sm_client **pc);

/* The target the client talks to (owned by the client). */
const char *sm_client_target(const sm_client *c);

/* Ingress Send: durable fire-and-forget to (type, id). Returns once the
 * runtime has committed the message. v is only read during the call. */
int sm_client_send(sm_client *c, const char *type, const char *id, const sm_value *v,
                   int timeout_ms, sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;

/* Ingress Call: sends and waits for the reply of the function chain.
 * On SM_OK, *reply holds an owned copy (the caller frees it with
 * sm_value_buf_cleanup; whatever it held before is freed). */
int sm_client_call(sm_client *c, const char *type, const char *id, const sm_value *v,
                   int timeout_ms, sm_value_buf *reply /* OUT */,
                   sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;

/* Admin GetState: the committed state of (type, id); `name` NULL or ""
 * means every stored value. On SM_OK the caller owns *out and frees it with
 * sm_state_list_cleanup. */
int sm_client_get_state(sm_client *c, const char *type, const char *id, const char *name,
                        int timeout_ms, sm_state_list *out /* OUT */,
                        sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;
void sm_state_list_cleanup(sm_state_list *l);

/* Admin Stats: the runtime's counters. On SM_OK the caller owns *out and
 * frees it with sm_stats_cleanup. */
int sm_client_stats(sm_client *c, int timeout_ms, sm_stats *out /* OUT */,
                    sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;
void sm_stats_cleanup(sm_stats *s);

#endif
