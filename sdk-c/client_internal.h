/*
 * client_internal — what the ingress client's files share (internal to
 * libstatemesh): the client struct, error helpers and argument checks.
 * client.c holds the unary RPCs, send_stream.c the SendStream client,
 * subscribe.c the Subscribe client.
 */
#ifndef STATEMESH_CLIENT_INTERNAL_H
#define STATEMESH_CLIENT_INTERNAL_H

#include <grpc/grpc.h>

#include "statemesh/client.h"

struct sm_client {
    grpc_channel *ch;
    grpc_completion_queue *cq;  /* pluck, for the unary RPCs */
    char *target;
    grpc_metadata auth;         /* "authorization: Bearer ..." when has_auth */
    int has_auth;
};

/* Puts the client's authorization metadata (if any) on a
 * GRPC_OP_SEND_INITIAL_METADATA op. */
void sm__auth_md(sm_client *c, grpc_op *op);

/* Fills *err (if not NULL) with code and a printf message; returns rc. */
int sm__set_err(sm_error *err, int code, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Local argument checks; on failure they fill *err with INVALID_ARGUMENT
 * and return SM_EINVAL. check_target: non-empty type and id; v (if not
 * NULL) has a typename and data for its length. */
int sm__check_target(const char *type, const char *id, const sm_value *v, sm_error *err);
/* key NULL or "" = none; else 1..SM_MAX_IDEMPOTENCY_KEY_LEN bytes of UTF-8. */
int sm__check_key(const char *key, sm_error *err);
int sm__check_delay(uint64_t delay_ms, sm_error *err);

/* Copies a received status into *err (code, details or the code's name)
 * and returns SM_ERPC. Consumes nothing. */
int sm__status_err(sm_error *err, grpc_status_code status, grpc_slice details,
                   const char *prefix);

#endif
