/*
 * admin — the Admin service (statemesh.v1.Admin) and grpc.health.v1.Health,
 * served on the ingress's gRPC server, or on a listener of their own when
 * runtime.admin is set (Health then on both).
 *
 *   GetState          committed state of one address, its queue length
 *   Stats             the runtime's counters
 *   Inspect           failure handling of one address: phase, attempts, next
 *                     retry, last error, head message
 *   ListStuck         every address retrying or paused
 *   Skip, Resume      operator actions on a retrying or paused address;
 *                     answered after their checkpoint is durable
 *   *DeadLetters      list, replay, drop (the store of them: deadletter.c);
 *                     replay and drop answered after their checkpoint is durable
 *   ListState, SetState, DeleteState
 *                     state administration (state_admin.c)
 *   CreateSavepoint   a savepoint written online (spcreate.h)
 *   Health/Check      SERVING, or NOT_SERVING while shutting down
 *
 * Every request is checked like an ingress request (strings valid UTF-8
 * without NUL, addresses valid) and refused with INVALID_ARGUMENT otherwise.
 */
#ifndef SM_ADMIN_H
#define SM_ADMIN_H

struct rpc_server;
struct server;

/* Adds the Admin and Health methods to `rpc`. Returns 0 or -1. */
int admin_register(struct rpc_server *rpc, struct server *s) __attribute__((warn_unused_result));
/* Adds Health alone (the ingress, when Admin has its own listener). */
int admin_register_health(struct rpc_server *rpc, struct server *s)
    __attribute__((warn_unused_result));

#endif
