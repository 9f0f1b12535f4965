/*
 * forward — any node of a cluster is an ingress (docs/cluster.md, "Routing"):
 * a unary call (Send, Call, GetState and the Admin calls that name one
 * address) whose address another node owns is forwarded to that owner's
 * ingress (its advertise address, cluster_owner()) in one hop, as a gRPC
 * call of the same method with the same request bytes.
 *
 * What travels: the client's request metadata (authorization token, trace
 * context, ...; gRPC's own keys excepted), the client's deadline (none: none),
 * and `x-statemesh-forwarded: <this node's id>`. The idempotency key is in
 * the request, so it is checked on the owner. The client's answer is the
 * owner's answer, status and message unchanged: an ack the owner released
 * after its checkpoint, a reply, an error. Every answer of a cluster node
 * carries `x-statemesh-owner` (and `x-statemesh-owner-address`) naming the
 * node that owns the address, so clients may route directly.
 *
 * Loop prevention: a call that arrives with x-statemesh-forwarded is never
 * forwarded again; if its node does not own the address (ownership moved
 * meanwhile), it answers UNAVAILABLE naming the owner, as when the owner is
 * down, unknown, or this node is the owner but fenced. UNAVAILABLE is
 * retryable: the client retries (through any node).
 *
 * Channels: one per peer node, made at its first forward, TLS with the
 * runtime's own CA and certificate (the client identity for an mTLS
 * ingress) when runtime.tls is set. A node whose advertise address changes
 * gets a new channel; the old one is destroyed once its calls are over.
 * Every forwarded call is bounded by the client's deadline and cancelled
 * when its client goes away; fwd_cancel_all() + fwd_idle() at shutdown.
 */
#ifndef SM_FORWARD_H
#define SM_FORWARD_H

#include <stddef.h>
#include <stdint.h>

struct server;
struct forward;
struct rpc_call;

int fwd_create(struct forward **out /* OUT */, struct server *s)
    __attribute__((warn_unused_result));
/* Routes a unary call for address (type, id) whose request has already
 * been checked. Returns 0 when this node serves the address (or runs
 * alone): the caller answers it, and the answer will carry the owner's
 * metadata. Returns 1 when the call was taken: forwarded to the owner, or
 * answered UNAVAILABLE with the reason and the owner's metadata; the
 * caller must not touch `call` again. `method` is "/pkg.Service/Method"
 * (a literal: not copied); req is borrowed. */
int fwd_unary(struct server *s, struct rpc_call *call, const char *method, const uint8_t *req,
              size_t len, const char *type, const char *id);
/* Answers UNAVAILABLE for key group kg (not served here), with the
 * sentence of cluster_explain() and the owner in trailing metadata. */
void fwd_refuse(struct server *s, struct rpc_call *call, uint32_t kg);
/* ---- SendStream ----------------------------------------------------------
 *
 * A client's SendStream may carry messages for addresses of every node:
 * ingress.c commits its own and hands each other one to the forwarded
 * stream of its owner node (one per owner per client stream, opened at the
 * first such message, with the client's metadata and the forwarded mark).
 * A forwarded message keeps the client's seq (a subsequence of increasing
 * seqs is increasing), so the owner's committed_through and errors need no
 * translation. fwd_stream_first_pending() is the lowest seq sent and not yet
 * covered by the owner's committed_through: the client's committed_through
 * stays below it, so an ack is released only once the owner acknowledged.
 */
struct fwd_stream;
struct rpc_scall;

struct fwd_stream_callbacks {
    /* The owner's committed_through advanced (first_pending changed). */
    void (*on_ack)(void *arg, struct fwd_stream *fs);
    /* The owner rejected message `seq` (never applied). */
    void (*on_error)(void *arg, uint64_t seq, int code, const char *msg);
    /* The forwarded stream ended (owner gone, shut down, refused): the
     * handle is freed once this returns; pending says how many messages were
     * sent and not acknowledged (their fate is unknown). */
    void (*on_closed)(void *arg, struct fwd_stream *fs, size_t pending, int code,
                      const char *why);
};

/* Opens a forwarded SendStream to node `node` at `advertise` for client
 * stream `from`. Returns it, or NULL with a sentence in why. */
struct fwd_stream *fwd_stream_open(struct server *s, const char *node, const char *advertise,
                                   struct rpc_scall *from, const struct fwd_stream_callbacks *cb,
                                   void *arg, char *why, size_t whylen);
/* Queues one encoded StreamMessage (borrowed) with its seq for the owner. */
void fwd_stream_push(struct fwd_stream *fs, uint64_t seq, const uint8_t *msg, size_t len);
uint64_t fwd_stream_first_pending(const struct fwd_stream *fs);   /* 0: none */
size_t fwd_stream_pending(const struct fwd_stream *fs);
const char *fwd_stream_node(const struct fwd_stream *fs);
/* The client stream is over: cancels the forwarded one (no callback runs
 * any more); it is freed when gRPC is done with it. */
void fwd_stream_close(struct fwd_stream *fs);

/* ---- Subscribe across nodes ---------------------------------------------
 *
 * A subscriber on any node of a cluster reads every node's egress log: the
 * node fans in one forwarded Subscribe per node that owns a range (itself
 * included, through its own ingress, so every source is alike), marked so
 * that the receiving node answers from its own log only, with its id in
 * each record's `node`. Offsets are per node: a record is identified by
 * (node, offset), and a subscriber resumes with node_offsets (ingress.proto).
 * Order: each node's records in offset (commit) order, so per address in
 * commit order; no order across nodes. A source that fails with UNAVAILABLE
 * (node down, restarting) is reopened from its next offset every
 * FWD_SUB_RETRY_MS while following; without follow the subscription ends
 * with the error. Any other error of a source (e.g. OUT_OF_RANGE) ends the
 * subscription with it, naming the node. Memory: at most FWD_SUB_QUEUE_BYTES
 * of records wait for the client; past that a source is cancelled and
 * reopened from its next offset once the queue has drained.
 */
#define FWD_SUB_RETRY_MS 500
#define FWD_SUB_QUEUE_BYTES ((size_t)8 << 20)

struct Statemesh__V1__SubscribeRequest;
/* Takes over Subscribe call `c` whose request `r` (borrowed) names a
 * configured egress. */
void fwd_subscribe(struct server *s, struct rpc_scall *c,
                   const struct Statemesh__V1__SubscribeRequest *r);

/* Forwarded calls and streams still running. */
size_t fwd_pending(const struct forward *f);
/* Shutdown: cancels every forwarded call and stream; run the loop until fwd_idle(). */
void fwd_cancel_all(struct forward *f);
int fwd_idle(const struct forward *f);
void fwd_destroy(struct forward **fp);   /* only when idle */

#endif
