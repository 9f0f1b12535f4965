/*
 * cluster — the control plane of the cluster mode (docs/cluster.md): this
 * node's membership, the ownership of key-group ranges and the controller,
 * all kept in etcd under /statemesh/<name>/ through etcd.h, on the event
 * loop (no threads: every step is a callback of etcd.c or a timer).
 *
 * Keyspace (values are "k=v" words separated by spaces; unknown words are
 * ignored, so later versions may add some):
 *   config          "key_groups=4096 hash=xxh3_64 format=1"; create-only: the
 *                   first node writes it, a node that disagrees refuses to join
 *   members/<id>    "advertise=HOST:PORT"; written at every registration, never
 *                   deleted: the nodes the cluster knows
 *   nodes/<id>      "advertise=HOST:PORT"; bound to the node's lease: alive
 *   controller      "<id>"; bound to its lease, taken by a create_revision == 0
 *                   Txn; the controller writes the first range assignment
 *   ranges/<NNNN>   "end=<last kg> owner=<id>" for key groups NNNN..end
 *                   (4 digits, so keys sort by key group); written only by a
 *                   Txn that compares; its mod_revision is the range's EPOCH
 *
 * Life of a node: cluster_create() checks the node id kept in the store (X
 * meta "cluster_node", "cluster_name": another id on the same data dir is
 * refused), then cluster_start() joins: config (create or compare) -> lease
 * -> registration (members/, nodes/) and keepalive -> read the prefix once
 * -> watch it from header.revision + 1 -> campaign for controller. Until
 * cluster_joined() the runtime does not open its ingress (main.c).
 *
 * Fencing rule: the node serves key group kg only while ranges say it owns
 * kg AND its lease is valid by its own monotonic clock: the keepalive's
 * deadline (etcd.h: send time of the last answered keepalive + TTL, never
 * later than etcd's expiry) minus a margin of TTL/10. When the lease is lost
 * (etcd said so, or the deadline passed: a stall, etcd without quorum, a
 * partition) the node is FENCED; it keeps trying to register again (a new
 * lease every RETRY_MS) and serves again once registered, if it still owns
 * the ranges. A dead node's ranges stay assigned to it (no reassignment
 * without its data in this version).
 *
 * Ranges are assigned once, when the cluster has none: the controller waits
 * until `initial_nodes` nodes are alive, then splits the key groups into
 * contiguous even ranges over the alive nodes sorted by id (Flink's
 * KeyGroupRangeAssignment: node i of p gets ceil(i*G/p) .. floor(((i+1)*G-1)/p)).
 *
 * Errors: cluster_failed() returns a sentence once a condition makes joining
 * impossible (config mismatch); etcd being unreachable is not one: the node
 * logs and retries.
 */
#ifndef SM_CLUSTER_H
#define SM_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct server;
struct cluster;
struct rpc_server;

enum cluster_state {
    CLUSTER_JOINING = 0,   /* not registered yet */
    CLUSTER_SERVING = 1,   /* registered, lease valid */
    CLUSTER_FENCED = 2     /* lease lost or past its local deadline */
};

/* The owner of a key group, borrowed until the next loop iteration. */
struct cluster_owner {
    const char *node_id;      /* NULL: the key group has no owner yet */
    const char *advertise;    /* its host:port, "" if it never registered */
    int64_t epoch;            /* its range's mod_revision */
    bool alive;               /* its lease-bound key exists */
};

/* Runs when the set of key groups this node serves may have changed (an
 * ownership change, fencing, unfencing). */
typedef void (*cluster_change_fn)(void *arg);

/* Checks and records the node id in the store, creates the etcd client.
 * Returns 0, or -1 with a sentence in err. The caller owns *out. */
int cluster_create(struct cluster **out /* OUT */, struct server *s, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void cluster_set_change_hook(struct cluster *c, cluster_change_fn fn, void *arg);
/* Starts joining (see the top). */
void cluster_start(struct cluster *c);
bool cluster_joined(const struct cluster *c);
/* A sentence when joining is impossible, else NULL. */
const char *cluster_failed(const struct cluster *c);

/* ---- what other modules ask ---- */

/* True when this node may serve key group kg now (the fencing rule). */
bool cluster_serves(const struct cluster *c, uint32_t kg);
void cluster_owner(const struct cluster *c, uint32_t kg, struct cluster_owner *out /* OUT */);
enum cluster_state cluster_state(const struct cluster *c);
/* True while a cluster savepoint barrier holds this node paused (see
 * cluster_set_paused): dispatch starts no new batch and inbound peer frames
 * are not applied (they are answered "retry later"), so that every node's
 * snapshot is one consistent cut. */
bool cluster_paused(const struct cluster *c);
void cluster_set_paused(struct cluster *c, bool paused);
/* ---- for the cluster savepoint (clustersp.h) ---- */

/* Runs for every PUT/DELETE (read or watched) of a key under the prefix
 * that this module does not use itself; key is relative to the prefix. */
typedef void (*cluster_key_fn)(void *arg, const char *key, size_t klen, const char *val,
                               size_t vlen, int is_put);
void cluster_set_key_hook(struct cluster *c, cluster_key_fn fn, void *arg);
struct etcd_client *cluster_etcd(const struct cluster *c);
const char *cluster_prefix(const struct cluster *c);       /* "/statemesh/<name>/" */
int64_t cluster_lease(const struct cluster *c);            /* 0: no lease now */
int64_t cluster_revision(const struct cluster *c);         /* of the topology seen */
size_t cluster_range_count(const struct cluster *c);
/* Range i (in key-group order); owner borrowed until the next change. */
void cluster_range(const struct cluster *c, size_t i, uint32_t *first, uint32_t *last,
                   const char **owner);
bool cluster_node_alive(const struct cluster *c, const char *id);

/* rpc_now_ms() time until which the lease is valid for serving, 0: none. */
int64_t cluster_lease_valid_until(const struct cluster *c);
const char *cluster_node_id(const struct cluster *c);
/* Why kg is not served here, as a sentence for a client (see ingress.c). */
void cluster_explain(const struct cluster *c, uint32_t kg, char *why, size_t whylen);

/* Admin/GetTopology (on a runtime without cluster too). */
int cluster_register(struct rpc_server *rpc, struct server *s) __attribute__((warn_unused_result));

/* Shutdown: revokes the lease (the others see this node down at once),
 * stops the keepalive and the watch; run the loop until cluster_idle(). */
void cluster_stop(struct cluster *c);
bool cluster_idle(const struct cluster *c);
void cluster_destroy(struct cluster **cp);

/* ---- pure helpers (unit tests) ---- */

/* Range i of p over `groups` key groups (Flink): *first..*last inclusive. */
void cluster_split(uint32_t groups, uint32_t parts, uint32_t i, uint32_t *first, uint32_t *last);
/* Parses a ranges/ value "end=N owner=ID" (len bytes). Returns 0 and fills
 * *end and owner (NUL-terminated, at most ownlen - 1 bytes), or -1. */
int cluster_parse_range(const char *val, size_t len, uint32_t *end, char *owner, size_t ownlen);
/* The value of word `name` in "k=v k=v" (len bytes): copies it into out and
 * returns 0, or -1 when absent or too long. */
int cluster_word(const char *val, size_t len, const char *name, char *out, size_t outlen);

#endif
