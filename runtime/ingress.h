/*
 * ingress — the gRPC server clients talk to: Ingress (Send, Call), Admin
 * (GetState, Stats) and grpc.health.v1.Health/Check, all on one address,
 * or Admin on a second listener of its own (runtime.admin; started by
 * ingress_start, stopped with the ingress). Every call of both passes the
 * token check first when runtime.auth is set (auth.h).
 *
 * Send is acknowledged after the checkpoint holding the message is durable;
 * Call is answered with the first reply of its chain of messages, released
 * after the checkpoint holding that reply. Pending calls live in a slot
 * table; call ids (generation << 32 | slot + 1) travel with messages, so a
 * reply for a call whose client gave up finds nothing and is dropped.
 */
#ifndef SM_INGRESS_H
#define SM_INGRESS_H

#include <stddef.h>
#include <stdint.h>

struct server;
struct ingress;

int ingress_create(struct ingress **out /* OUT */, struct server *s)
    __attribute__((warn_unused_result));
int ingress_start(struct ingress *in, const char *addr) __attribute__((warn_unused_result));
/* Stops accepting calls; pending calls stay answerable until cancel_all. */
void ingress_shutdown(struct ingress *in);
void ingress_cancel_all(struct ingress *in);
int ingress_done(const struct ingress *in);
void ingress_destroy(struct ingress **inp);

struct ckpt_ack;
struct rpc_call;
/* Completes a pending call after its checkpoint (see enum ckpt_ack_kind).
 * Unknown/expired ids are ignored; the ack's buffers stay the caller's. */
void ingress_complete(struct ingress *in, const struct ckpt_ack *a);
/* Keeps a unary call pending until a checkpoint ack names the returned id. */
uint64_t ingress_hold(struct ingress *in, struct rpc_call *call);
size_t ingress_pending(const struct ingress *in);
/* After a checkpoint: SendStream acks, resumed reading. */
void ingress_after_commit(struct ingress *in);
/* Re-checks streams that stopped reading (queues drained, shutdown). */
void ingress_poll_streams(struct ingress *in);

#endif
