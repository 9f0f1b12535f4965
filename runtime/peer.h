/*
 * peer — exactly-once delivery between the nodes of a cluster: the durable
 * outbox on the sending side, the channel table on the receiving side, and
 * the `Peer` gRPC service between them (protocol/statemesh/v1/peer.proto;
 * docs/cluster.md "Cross-node messages", docs/protocol.md "Peer").
 *
 * A CHANNEL is an ordered pair of key groups (s, d): s the key group of the
 * address that produced a message (or of the timer's owner, or of the
 * address whose function replied), d the key group it must reach. Keys
 * (store.h lists the node's other kinds):
 *
 *   'O' s:u16be d:u16be seq:u64be  -> PeerFrame without src_epoch (outbox)
 *   'O' s:u16be d:u16be 0:u64be    -> u64be: the last seq assigned on (s, d)
 *   'C' d:u16be s:u16be            -> i64be epoch, u64be last applied seq
 *
 * O keys live under the SOURCE key group and C keys under the DESTINATION
 * key group, so both travel with their range in savepoints and sequences
 * continue and deduplicate after a restore onto another topology.
 *
 * Sender invariants:
 *   - a frame enters the open checkpoint together with the effects that
 *     produced it (the O key, and the channel's counter) and is transmitted
 *     only after that checkpoint is durable (never the dispatch-before-commit
 *     fast path);
 *   - frames go out in seq order per channel, at most PEER_WINDOW unacked;
 *     an ACK of seq deletes O s d <= seq in the next checkpoint;
 *   - nothing is transmitted for s while this node does not serve s
 *     (fenced, not the owner) or while cluster_paused().
 *
 * Receiver rule for a frame (s, epoch, d, seq, first) with stored (E, L):
 *   d not served here         -> NOT_OWNER (or RETRY when fenced/paused)
 *   epoch < E, or below the epoch of s's range in this node's view
 *                             -> REJECTED (a zombie)
 *   seq <= L                  -> OK (duplicate; nothing applied)
 *   seq == L + 1, or first && epoch > E
 *                             -> applied: the M entry (or the reply) and
 *                                C d s = (max(E, epoch), seq) in one batch
 *   otherwise                 -> GAP (expected L + 1)
 * Every answer is sent after the next checkpoint is durable, in frame
 * order, so an OK always means durable.
 *
 * Lifetime: peer_create() after recovery (reads O and C), peer_destroy()
 * once peer_idle() (every outbound stream closed). Everything runs on the
 * loop thread.
 */
#ifndef SM_PEER_H
#define SM_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "statemesh/v1/types.pb-c.h"

struct server;
struct peer;
struct msg;
struct rpc_server;

/* Reads the outbox and the channel table. Returns 0, or -1 with a sentence
 * in err. The caller owns *out. */
int peer_create(struct peer **out /* OUT */, struct server *s, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* Registers the Peer service on the ingress server (also without a
 * cluster: then every frame is answered INVALID). */
int peer_register(struct rpc_server *rpc, struct server *s) __attribute__((warn_unused_result));

/* True when key group kg is owned by another node: a message to it goes
 * through the outbox. */
bool peer_remote(const struct server *s, uint32_t kg);
/* Puts a message from key group src_kg to (type, id) (remote: see above)
 * into the outbox in the open checkpoint. cause (NULL: none) is the message
 * whose invocation produced it: its Call (reply_key, call_id) travels on.
 * delayed: a delayed message that came due. */
void peer_out_message(struct server *s, uint32_t src_kg, bool delayed, const char *type,
                      const char *id, const char *caller_type, const char *caller_id,
                      const char *typename, const uint8_t *data, size_t len,
                      const struct msg *cause);
/* A function at src_kg replied to `cause`. When the Call or its
 * idempotency record lives on another node, puts the REPLY into the outbox
 * (and does the local part, if any) and returns 1; returns 0 when both are
 * local: the caller answers as without a cluster. */
int peer_reply(struct server *s, uint32_t src_kg, const struct msg *cause, const char *typename,
               const uint8_t *data, size_t len);

/* After a durable checkpoint: releases the receiver's answers and lets the
 * frames of that checkpoint go out. */
void peer_after_commit(struct server *s);
/* Ownership or fencing may have changed: look again (cluster change hook). */
void peer_kick(struct server *s);

/* Frames in the outbox whose destination key group is owned by node_id
 * (NULL: all frames). */
uint64_t peer_outbox_depth(const struct peer *p, const char *node_id);

/* Shutdown: cancels the outbound streams; run the loop until peer_idle(). */
void peer_stop(struct peer *p);
bool peer_idle(const struct peer *p);
void peer_destroy(struct peer **pp);

#endif
