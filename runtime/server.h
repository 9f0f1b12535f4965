/*
 * server — the one process-wide struct of statemeshd (Redis's `server`).
 *
 * Everything mutable lives here and is touched only by the event-loop thread
 * (DESIGN §9): the loop waits in the completion queue with the deadline of
 * the next timer, runs what completed, commits the checkpoint, then
 * dispatches. The struct is passed explicitly; there is no global instance.
 */
#ifndef SM_SERVER_H
#define SM_SERVER_H

#include <stdint.h>

#include "auth.h"
#include "bootstrap.h"
#include "checkpoint.h"
#include "cluster.h"
#include "config.h"
#include "delayed.h"
#include "dispatch.h"
#include "egress.h"
#include "idem.h"
#include "endpoint.h"
#include "forward.h"
#include "ingress.h"
#include "log.h"
#include "mailbox.h"
#include "metrics.h"
#include "peer.h"
#include "scache.h"
#include "rpc.h"
#include "store.h"
#include "timer.h"
#include "tls.h"
#include "trace.h"

struct stats {
    int64_t messages_received;     /* accepted at the ingress */
    int64_t messages_produced;     /* sent by functions */
    int64_t messages_delivered;    /* consumed by committed results */
    int64_t batches_sent;
    int64_t batches_failed;
    int64_t batches_incomplete;
    int64_t batches_resent;        /* after a lost stream or timeout */
    int64_t batches_retried;       /* failed, given another attempt (backoff or isolation) */
    int64_t invalid_results;
    int64_t replies;
    int64_t checkpoints;
    int64_t checkpoint_ops;
    int64_t queued_messages;       /* current: waiting or in flight */
    int64_t queued_bytes;          /* current: memory held by queued messages */
    int64_t recovered_messages;
    int64_t rejected_overloaded;   /* Send/Call refused: queues full */
    int64_t delayed_pending;       /* current */
    int64_t delayed_fired;
    int64_t delayed_cancelled;
    int64_t delayed_dropped;
    int64_t egress_records;
    int64_t egress_trimmed;
    int64_t subscribers;           /* current */
    int64_t idempotent_duplicates;
    int64_t idempotency_expired;
    int64_t states_expired;        /* purged by the TTL sweep */
    int64_t send_streams;          /* current */
    int64_t dead_letters;          /* current: stored */
    int64_t dead_lettered;         /* messages moved to dead letters */
    int64_t addresses_retrying;    /* current: head message failed, retry scheduled or out */
    int64_t addresses_paused;      /* current: retries exhausted, waiting for an operator */
    int64_t bootstrap_loaded;      /* bootstrap entries loaded */
    int64_t bootstrap_already;     /* bootstrap entries found already loaded */
    int64_t spans_exported;        /* runtime.tracing: accepted by the collector */
    int64_t spans_dropped;         /* runtime.tracing: ring full or export failed */
    int64_t forwarded;             /* calls forwarded to their owner node (forward.h) */
};

struct server {
    struct cfg cfg;
    struct auth auth;              /* tokens and roles (auth.h); off when not enabled */
    struct log log;
    struct rpc_loop loop;
    struct timer_heap timers;
    struct store *store;
    struct ckpt ckpt;
    struct mbox_table mboxes;
    struct endpoint *endpoints;
    size_t n_endpoints;
    struct ingress *ingress;
    struct tls_server *tls;        /* runtime.tls: the ingress's certificates, or NULL */
    struct egress_log *egresses;   /* one per cfg.egresses */
    size_t n_egresses;
    struct delayed_index delayed;  /* (sender, token) -> pending delayed message */
    struct delayed *delayed_all;
    struct idem_table idem;
    struct scache scache;          /* state values, incl. uncommitted writes */
    struct boot_keys boot_keys;    /* bootstrap entries in uncommitted checkpoints */
    struct disp_scratch scratch;   /* dispatch's reusable arrays */
    struct store_cursor idem_cursor, idem_legacy_cursor, ttl_cursor;
    bool idem_legacy;              /* J records exist (a store upgraded from format 1) */
    struct spjob *savepoint;       /* the savepoint being written (spcreate.h), or NULL */
    uint32_t sp_fault_sleep_us;    /* test-only: STATEMESH_FAULT_SAVEPOINT_SLEEP_US (spcreate.h) */
    struct timer housekeeping;     /* retention, TTL and idempotency sweeps */
    uint64_t next_seq;
    struct stats stats;
    struct metrics *metrics;       /* runtime.metrics (metrics.h), NULL = off */
    struct tracer *tracer;         /* runtime.tracing (trace.h), NULL = off */
    int lock_fd;
    int stopping;                  /* no new batches are dispatched */
    struct cluster *cluster;       /* NULL: no `cluster` group, the node runs alone */
    struct mbox_list held;         /* READY addresses of key groups not served now (cluster.h) */
    struct forward *fwd;           /* cluster: calls forwarded to the owner node (forward.h) */
    struct peer *peer;             /* cross-node outbox and channels (peer.h), with a cluster */
    struct clustersp *clustersp;   /* the cluster savepoint's barrier (clustersp.h), or NULL */
};

#endif
