/*
 * etcd — an etcd v3 client on the runtime's event loop (groundwork for the
 * cluster mode, docs/cluster.md), used by cluster.c.
 *
 * Everything runs on the thread that drives rpc_loop_next() and the caller's
 * timer heap (timer_run_due): no threads, every result comes back through a
 * callback. The caller's loop must run timer_run_due() after every wake-up
 * and wait no later than timer_next_due().
 *
 * Endpoints: a comma-separated list, `http://host:port` or `host:port`;
 * with a tls group (etcd_client_create_tls, tls.h: ca, and cert + key when
 * etcd runs with --client-cert-auth) every one is `https://host:port` and
 * etcd's certificate must name the host. The client talks to one endpoint at a time;
 * a call that fails with UNAVAILABLE (the member is down, or has no leader,
 * or a fresh connection was not up in time) is retried on the next endpoint:
 * one round over every endpoint, then, after 200 ms, a second one; the
 * endpoint that answered becomes the current one. A retried Put may thus
 * apply twice, and a retried compare-and-swap may report a conflict with its
 * own earlier write: callers read the key back when that matters.
 *
 * Unary calls: etcd_range/put/delete/cas/txn/lease_grant/lease_revoke.
 * `done` runs exactly once (also on failure, never from inside the starting
 * call) with a result borrowed for the duration of the callback.
 *
 * Lease keepalive (etcd_keepalive_start): one bidi LeaseKeepAlive stream,
 * a keepalive every TTL/3. Each answer moves the lease's deadline to
 * (the local monotonic time the keepalive was *sent*) + TTL, reported through
 * on_deadline; this is the self-fencing input (scale-out.md §3.2): the
 * holder must stop acting for the lease before that time. When etcd says the
 * lease is gone (TTL 0), or the deadline passes without an answer, on_lost
 * runs once with a sentence and the keepalive ends. A broken stream is
 * reopened on the next endpoint while the deadline has not passed.
 *
 * Watch (etcd_watch_start): every event on keys with `prefix` from
 * `start_revision` on, in revision order, each exactly once: a broken stream
 * is reopened (next endpoint) from the last delivered revision + 1. on_error
 * runs once if the watch cannot go on (history compacted, etcd cancelled it);
 * the watch is over afterwards.
 *
 * After on_lost / on_error the handle stays valid until the caller releases
 * it with etcd_keepalive_stop / etcd_watch_stop, as always.
 *
 * Shutdown: stop every keepalive and watch, then keep running the loop until
 * etcd_client_idle() says 1 (unary calls in flight still complete and call
 * back), then etcd_client_destroy().
 */
#ifndef SM_ETCD_H
#define SM_ETCD_H

#include <stddef.h>
#include <stdint.h>

#include "etcd/etcdserverpb/rpc.pb-c.h"
#include "rpc.h"
#include "timer.h"

struct etcd_client;
struct etcd_keepalive;
struct etcd_watch;

#define ETCD_MAX_ENDPOINTS 16
#define ETCD_CALL_TIMEOUT_MS 2000    /* default per unary call attempt */

/* The outcome of one unary call. `status` is a gRPC status (RPC_OK on
 * success); `error` is a sentence when status != RPC_OK, else "". */
struct etcd_result {
    int status;
    const char *error;
    int64_t revision;           /* header.revision: the store's revision */
    /* range: the keys found; txn/cas: the range of the failure branch */
    size_t n_kvs;
    Mvccpb__KeyValue **kvs;
    int64_t deleted;            /* delete */
    int succeeded;              /* txn, cas: the compares held */
    int64_t lease_id, ttl;      /* lease_grant */
    const Etcdserverpb__TxnResponse *txn;   /* txn, cas: the whole answer */
};
typedef void (*etcd_done_fn)(void *arg, const struct etcd_result *r);

/* Returns 0, or -1 with a sentence in err (bad endpoint list). */
int etcd_client_create(struct etcd_client **out /* OUT, owned */, struct rpc_loop *loop,
                       struct timer_heap *timers, const char *endpoints, char *err,
                       size_t errlen) __attribute__((warn_unused_result));
/* The same over TLS (tls.h's client side; tls NULL or off: plaintext). */
struct cfg_tls;
int etcd_client_create_tls(struct etcd_client **out /* OUT, owned */, struct rpc_loop *loop,
                           struct timer_heap *timers, const char *endpoints,
                           const struct cfg_tls *tls, char *err, size_t errlen)
    __attribute__((warn_unused_result));
int etcd_client_idle(const struct etcd_client *c);
void etcd_client_destroy(struct etcd_client **cp);
/* The deadline of each unary call attempt (default ETCD_CALL_TIMEOUT_MS).
 * A call that times out (DEADLINE_EXCEEDED) is not retried: it may have been
 * applied. During an election a call can hang until this deadline, so it
 * bounds the write gap a leader's loss causes. */
void etcd_client_set_timeout(struct etcd_client *c, int64_t ms);
/* The endpoint calls currently go to (as given). */
const char *etcd_client_endpoint(const struct etcd_client *c);

/* [key, range_end); range_end NULL: the key alone. Keys and values are
 * copied before these return. */
void etcd_range(struct etcd_client *c, const void *key, size_t klen, const void *range_end,
                size_t relen, etcd_done_fn done, void *arg);
void etcd_put(struct etcd_client *c, const void *key, size_t klen, const void *val, size_t vlen,
              int64_t lease, etcd_done_fn done, void *arg);
void etcd_delete(struct etcd_client *c, const void *key, size_t klen, const void *range_end,
                 size_t relen, etcd_done_fn done, void *arg);
/* Compare-and-swap: puts key=val (bound to `lease` unless 0) if the key's
 * mod_revision == expect_mod_rev (0: the key must not exist). On success
 * r->succeeded = 1 and r->revision is the key's new mod_revision (its epoch);
 * else r->succeeded = 0 and r->kvs holds the key as it is now (if any). */
void etcd_cas(struct etcd_client *c, const void *key, size_t klen, const void *val, size_t vlen,
              int64_t expect_mod_rev, int64_t lease, etcd_done_fn done, void *arg);
/* Any Txn (the request is copied before this returns). */
void etcd_txn(struct etcd_client *c, const Etcdserverpb__TxnRequest *req, etcd_done_fn done,
              void *arg);
void etcd_lease_grant(struct etcd_client *c, int64_t ttl_s, etcd_done_fn done, void *arg);
void etcd_lease_revoke(struct etcd_client *c, int64_t lease_id, etcd_done_fn done, void *arg);

/* The end of the range holding every key that starts with prefix (the prefix
 * with its last byte below 0xff incremented; "\0" when none is); writes at
 * most plen bytes into out and returns the length. */
size_t etcd_prefix_end(const void *prefix, size_t plen, uint8_t *out);

struct etcd_keepalive_callbacks {
    void (*on_deadline)(void *arg, int64_t deadline_ms);   /* rpc_now_ms clock */
    void (*on_lost)(void *arg, const char *why);
};
/* Keeps `lease_id` (granted with ttl_s) alive; `granted_at_ms` is the
 * rpc_now_ms() at which the grant was sent (the first deadline is
 * granted_at_ms + ttl). Returns NULL (and nothing runs) if out of memory. */
struct etcd_keepalive *etcd_keepalive_start(struct etcd_client *c, int64_t lease_id,
                                            int64_t ttl_s, int64_t granted_at_ms,
                                            const struct etcd_keepalive_callbacks *cb,
                                            void *arg);
/* Stops sending keepalives (the lease then expires after its TTL); no
 * callback runs afterwards. The handle is invalid after this. */
void etcd_keepalive_stop(struct etcd_keepalive *k);

struct etcd_watch_callbacks {
    /* One event, borrowed; events arrive in revision order. */
    void (*on_event)(void *arg, const Mvccpb__Event *ev);
    void (*on_error)(void *arg, const char *why);
};
struct etcd_watch *etcd_watch_start(struct etcd_client *c, const void *prefix, size_t plen,
                                    int64_t start_revision, int prev_kv,
                                    const struct etcd_watch_callbacks *cb, void *arg);
/* No callback runs afterwards; the handle is invalid after this. */
void etcd_watch_stop(struct etcd_watch *w);

#endif
