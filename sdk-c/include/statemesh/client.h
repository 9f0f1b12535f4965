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
 * Every unary RPC is one gRPC call, made with a single batch of operations
 * and waited for on the client's own completion queue. The two streaming
 * APIs, SendStream (bulk ingestion) and Subscribe (reading an egress), are
 * objects of their own opened on a client; see their sections below.
 *
 * Threads: a client is used by one thread at a time (one client per thread);
 * so are the streams opened on it, which must be destroyed before it.
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

#include "statemesh/tls.h"
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

/* The same over TLS (statemesh/tls.h): the runtime's certificate is
 * verified against tls->ca_file; tls->cert_file + key_file present a client
 * certificate (mTLS). The files are read now: a missing or unreadable one,
 * or one that holds no PEM certificate/key, gives NULL with err->code
 * INVALID_ARGUMENT and err->message naming the file. A handshake that fails
 * later (wrong CA, refused client certificate) shows as UNAVAILABLE on the
 * first RPC. tls NULL = sm_client_create. */
sm_client *sm_client_create_tls(const char *target, const sm_tls_options *tls,
                                sm_error *err /* OUT, may be NULL */);

/* Frees the client and sets *pc to NULL. NULL / *pc == NULL is a no-op. */
void sm_client_destroy(sm_client **pc);

/* The target the client talks to (owned by the client). */
const char *sm_client_target(const sm_client *c);

/* Bearer token for a runtime with runtime.auth (docs/security.md): every
 * later RPC and stream of the client carries "authorization: Bearer TOKEN".
 * sm_client_create takes $STATEMESH_TOKEN when it is set; this replaces it.
 * token NULL or "" = send none. Call it before opening streams (an open
 * stream keeps what it was opened with). Returns SM_OK, or SM_EINVAL (more
 * than SM_MAX_TOKEN_LEN bytes, or not printable ASCII without spaces) and
 * the token in force stays. A wrong token is refused by the runtime:
 * UNAUTHENTICATED (16); a token whose role does not allow the RPC:
 * PERMISSION_DENIED (7). */
#define SM_MAX_TOKEN_LEN 4096
int sm_client_set_token(sm_client *c, const char *token, sm_error *err /* OUT, may be NULL */)
    SM_WARN_UNUSED;

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

/* ---- Send and Call with options ---- */

#define SM_MAX_IDEMPOTENCY_KEY_LEN 256

/* Idempotency key: a Send/Call/stream message that repeats the key of an
 * earlier one (within the runtime's retention, default 24 h; one namespace
 * per runtime) is acknowledged without being applied again, and a repeated
 * Call returns the first one's reply. NULL or "" = none; otherwise 1..256
 * bytes of UTF-8.
 * delay_ms: deliver the message this long after it was accepted (durably:
 * it survives restarts); 0..SM_MAX_DELAY_MS. The Send returns as soon as the
 * message is stored, not when it is delivered. */
typedef struct sm_send_options {
    const char *idempotency_key;
    uint64_t delay_ms;
} sm_send_options;

typedef struct sm_call_options {
    const char *idempotency_key;
} sm_call_options;

/* sm_client_send / sm_client_call with options (opts NULL = none, the same
 * as the plain calls). Bad options are reported locally (SM_EINVAL). */
int sm_client_send_opts(sm_client *c, const char *type, const char *id, const sm_value *v,
                        const sm_send_options *opts, int timeout_ms,
                        sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;
int sm_client_call_opts(sm_client *c, const char *type, const char *id, const sm_value *v,
                        const sm_call_options *opts, int timeout_ms,
                        sm_value_buf *reply /* OUT */,
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

/* Admin GetTopology: the cluster as the node at `target` sees it
 * (docs/cluster.md). cluster == false: that runtime runs alone and the
 * rest is empty. Strings point into the answer. */
typedef struct sm_topology_node {
    const char *id, *advertise;
    bool alive;                  /* its lease-bound key exists */
    int64_t lease_ttl_left_ms;   /* the answering node only; -1 for the others */
    uint64_t outbox_frames;      /* frames the answering node holds for it, not yet acked */
} sm_topology_node;
typedef struct sm_topology_range {
    uint32_t first, last;        /* key groups, inclusive */
    const char *owner;           /* node id */
    int64_t epoch;               /* the range's fencing epoch (etcd mod_revision) */
} sm_topology_range;
typedef struct sm_topology {
    bool cluster;
    const char *cluster_name, *node_id, *controller;  /* controller "" while none */
    const char *state;           /* joining | serving | fenced */
    const char *fencing_reason;  /* "" unless fenced */
    int64_t revision;
    uint32_t key_groups;
    sm_topology_node *nodes;
    size_t n_nodes;
    sm_topology_range *ranges;
    size_t n_ranges;
    void *msg_;                  /* private */
} sm_topology;
/* On SM_OK the caller owns *out and frees it with sm_topology_cleanup. */
int sm_client_get_topology(sm_client *c, int timeout_ms, sm_topology *out /* OUT */,
                           sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;
void sm_topology_cleanup(sm_topology *t);

/* A consistent savepoint of the whole cluster (docs/savepoints.md, "Cluster
 * savepoints"): the node called coordinates an etcd barrier and answers
 * when PATH (absolute, new, on a file system every node shares) is
 * complete. ranges: files per node (0 = 16); pause_timeout_ms: 0 = 10000.
 * timeout_ms bounds the whole call (0 = none). */
typedef struct sm_cluster_savepoint_node {
    const char *node_id, *key_groups;   /* key_groups: "0-2047" (owned at the cut) */
    uint64_t records, bytes;
    int64_t write_ms;
} sm_cluster_savepoint_node;
typedef struct sm_cluster_savepoint {
    const char *path, *id;
    int64_t pause_ms, elapsed_ms;
    uint64_t records, bytes;
    sm_cluster_savepoint_node *nodes;
    size_t n_nodes;
    void *msg_;                  /* private */
} sm_cluster_savepoint;
/* On SM_OK the caller owns *out and frees it with sm_cluster_savepoint_cleanup. */
int sm_client_cluster_savepoint(sm_client *c, const char *path, uint32_t ranges,
                                uint32_t pause_timeout_ms, int timeout_ms,
                                sm_cluster_savepoint *out /* OUT */,
                                sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;
void sm_cluster_savepoint_cleanup(sm_cluster_savepoint *r);

/* ---- Dead letters ----
 *
 * Messages whose batch failed its endpoint's retry.max_attempts times are
 * kept in the runtime's dead-letter store, each under an id (increasing in
 * the order they were stored). List them a page at a time; replay puts the
 * selected ones back into their targets' inboxes (in id order, after what
 * is queued there) and drop deletes them. Replay and drop return once their
 * checkpoint is durable, with the number of dead letters they moved.
 *
 *     sm_deadletters dl;
 *     uint64_t after = 0, n;
 *     do {
 *         if (sm_client_list_deadletters(c, NULL, after, 1000, 10000, &dl, &err)) break;
 *         for (size_t i = 0; i < dl.n; i++) ...dl.items[i]...;
 *         after = dl.n ? dl.items[dl.n - 1].id : after;
 *         n = dl.n;
 *         sm_deadletters_cleanup(&dl);
 *     } while (n == 1000);
 *     rc = sm_client_replay_deadletters(c, NULL, 0, true, "example/user", 10000, &n, &err);
 */

/* One dead letter. Every pointer is owned by the sm_deadletters holding it. */
typedef struct sm_deadletter {
    uint64_t id;
    const char *target_type;   /* the address the message was for */
    const char *target_id;
    const char *caller_type;   /* the function that sent it; NULL: the ingress */
    const char *caller_id;     /* NULL when caller_type is */
    sm_value argument;         /* the message (typename NULL if the runtime sent none) */
    const char *error;         /* the last failure */
    uint32_t attempts;         /* how often its batch was tried */
    int64_t failed_at_ms;      /* when it was stored, Unix epoch ms */
} sm_deadletter;

/* The answer of sm_client_list_deadletters. Owns everything it points to. */
typedef struct sm_deadletters {
    sm_deadletter *items;      /* by increasing id */
    size_t n;
    uint64_t total;            /* dead letters stored, of every function type */
    void *msg_;                /* private: the unpacked response */
} sm_deadletters;

#define SM_DEADLETTERS_MAX_LIMIT 10000

/* Admin ListDeadLetters: up to `limit` dead letters (0 = 100; the runtime
 * returns at most SM_DEADLETTERS_MAX_LIMIT) with ids above `after_id` (0 =
 * from the first), only those for function type `type` ("namespace/name";
 * NULL or "" = every type). Page on with after_id = the last id returned.
 * On SM_OK the caller owns *out and frees it with sm_deadletters_cleanup.
 * A malformed type is SM_EINVAL. */
int sm_client_list_deadletters(sm_client *c, const char *type, uint64_t after_id, uint32_t limit,
                               int timeout_ms, sm_deadletters *out /* OUT */,
                               sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;
void sm_deadletters_cleanup(sm_deadletters *l);

/* Admin ReplayDeadLetters / DropDeadLetters. Selects the n dead letters
 * listed in ids (all = false), or every one (all = true, ids NULL and n 0);
 * `type` (NULL or "" = any) further restricts either to one function type.
 * Ids that name no stored dead letter (already replayed or dropped) are
 * skipped; replay also skips dead letters whose type no endpoint serves any
 * more (they stay stored). *count (may be NULL) gets the number replayed or
 * dropped, once that is durable. Neither ids nor all, both, ids NULL with
 * n > 0 or a malformed type: SM_EINVAL, nothing sent. */
int sm_client_replay_deadletters(sm_client *c, const uint64_t *ids, size_t n, bool all,
                                 const char *type, int timeout_ms,
                                 uint64_t *count /* OUT, may be NULL */,
                                 sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;
int sm_client_drop_deadletters(sm_client *c, const uint64_t *ids, size_t n, bool all,
                               const char *type, int timeout_ms,
                               uint64_t *count /* OUT, may be NULL */,
                               sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;

/* ---- Failure handling of an address ----
 *
 * A message its function keeps failing on is retried alone (the messages
 * before it in its batch are applied, those after it wait). Inspect shows
 * where an address stands; list_stuck lists every address retrying or
 * paused; skip moves the failing head message to dead letters; resume
 * retries a paused address now (e.g. after a fix was deployed).
 *
 *     sm_address_statuses st;
 *     if (sm_client_inspect(c, "shop/cart", "alice", 10000, &st, &err) == SM_OK) {
 *         printf("%s attempts=%u %s\n", sm_phase_name(st.items[0].phase),
 *                st.items[0].attempts, st.items[0].last_error);
 *         sm_address_statuses_cleanup(&st);
 *     }
 */

typedef enum sm_phase {
    SM_PHASE_IDLE = 0,         /* nothing queued */
    SM_PHASE_QUEUED = 1,       /* messages wait for dispatch */
    SM_PHASE_IN_FLIGHT = 2,    /* a batch is being invoked */
    SM_PHASE_RETRYING = 3,     /* the head message failed; a retry is scheduled */
    SM_PHASE_PAUSED = 4        /* retries exhausted (on_exhausted = "pause") */
} sm_phase;

/* "idle", "queued", "in_flight", "retrying", "paused" (or "unknown"). */
const char *sm_phase_name(sm_phase p);

/* One address's failure handling. Pointers are owned by the
 * sm_address_statuses holding it. */
typedef struct sm_address_status {
    const char *type, *id;
    sm_phase phase;
    uint64_t queued_messages;  /* including the in-flight batch */
    uint32_t in_flight_messages;
    uint32_t attempts;         /* failed attempts of the head message */
    uint32_t max_attempts;     /* the endpoint's retry.max_attempts, 0 = forever */
    int64_t next_retry_at_ms;  /* RETRYING: Unix epoch ms; else 0 */
    const char *last_error;    /* "" = none */
    int64_t last_error_at_ms;
    bool isolating;            /* a failed batch is re-sent one message at a time */
    bool has_head;
    sm_value head;             /* the head message when has_head */
    const char *head_caller_type;   /* NULL: from the ingress */
    const char *head_caller_id;
} sm_address_status;

typedef struct sm_address_statuses {
    sm_address_status *items;
    size_t n;
    uint64_t retrying, paused;  /* list_stuck: totals over every type */
    void *msg_;                 /* private */
} sm_address_statuses;

/* Admin Inspect: one item for (type, id). Free with sm_address_statuses_cleanup. */
int sm_client_inspect(sm_client *c, const char *type, const char *id, int timeout_ms,
                      sm_address_statuses *out /* OUT */,
                      sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;
/* Admin ListStuck: addresses retrying or paused, of `type` (NULL/"" = any),
 * at most `limit` (0 = 1000). */
int sm_client_list_stuck(sm_client *c, const char *type, uint32_t limit, int timeout_ms,
                         sm_address_statuses *out /* OUT */,
                         sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;
void sm_address_statuses_cleanup(sm_address_statuses *l);
/* Admin Skip: the head message of a retrying or paused address goes to
 * dead letters (*dead_letter_id, may be NULL), once durable. An address
 * in any other state: FAILED_PRECONDITION. */
int sm_client_skip(sm_client *c, const char *type, const char *id, int timeout_ms,
                   uint64_t *dead_letter_id /* OUT, may be NULL */,
                   sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;
/* Admin Resume: a paused (or backing-off) address is retried now with a
 * fresh attempt count. Otherwise FAILED_PRECONDITION. */
int sm_client_resume(sm_client *c, const char *type, const char *id, int timeout_ms,
                     sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;

/* ---- SendStream: bulk ingestion ----
 *
 *     sm_send_stream *st;
 *     if (sm_send_stream_open(c, NULL, &st, &err) != SM_OK) ...;
 *     for (...)
 *         if (sm_send_stream_push(st, "ns/fn", id, &v, NULL, NULL, &err) != SM_OK) break;
 *     rc = sm_send_stream_finish(st, 30000, &err);   // waits for the last ack
 *     sm_send_stream_progress p; sm_send_stream_get_progress(st, &p);
 *     sm_send_stream_destroy(&st);
 *
 * push() encodes the message straight into the stream's batch buffer — no
 * allocation per message — and assigns it the next seq (1, 2, 3, ...). A
 * batch goes out as one gRPC message when it holds batch_messages messages
 * or batch_bytes bytes, or on flush()/finish(), or when push() has to wait.
 * One batch is in flight at a time; push() blocks while the next one is
 * full and the previous one is still being written (gRPC flow control,
 * which the runtime uses when its queues are full), and while `window`
 * messages are pushed but not yet acknowledged.
 *
 * Acknowledgements are cumulative: the runtime reports committed_through,
 * the highest seq up to which every message is durable or was rejected.
 * Rejected messages (e.g. an unknown function type) are never applied; each
 * is reported once to on_error (seq, gRPC code, message) before the ack that
 * covers it, and counted. Callbacks run on the caller's thread, inside
 * push/flush/poll/finish, and must not call into the stream.
 *
 * If the stream breaks (runtime stopped, connection lost), every later call
 * fails with SM_ERPC and the gRPC status; messages after committed_through
 * may or may not have been applied: re-send them with idempotency keys to
 * make that safe. */

typedef struct sm_send_stream sm_send_stream;

typedef struct sm_send_stream_options {
    size_t batch_messages;  /* messages per gRPC message; 0 = 256 (max 65536) */
    size_t batch_bytes;     /* bytes per gRPC message (a bigger single message
                               goes alone); 0 = 64 KiB (max 16 MiB) */
    size_t window;          /* unacknowledged messages before push blocks;
                               0 = 65536 (max 16M) */
    bool wait_for_ready;    /* wait for an unreachable runtime instead of failing */
    void (*on_error)(void *udata, uint64_t seq, int code, const char *message);
    void (*on_ack)(void *udata, uint64_t committed_through);
    void *udata;
} sm_send_stream_options;

typedef struct sm_send_stream_progress {
    uint64_t pushed;             /* messages pushed = the last seq assigned */
    uint64_t sent;               /* of which handed to gRPC */
    uint64_t committed_through;  /* acknowledged (committed or rejected) */
    uint64_t rejected;           /* of which rejected */
} sm_send_stream_progress;

/* Opens a SendStream on c (opts NULL = defaults; copied). On SM_OK *out is
 * the stream (caller owns; sm_send_stream_destroy). Connection problems
 * show up on the following calls. Returns SM_OK, SM_EINVAL or SM_ENOMEM. */
int sm_send_stream_open(sm_client *c, const sm_send_stream_options *opts,
                        sm_send_stream **out /* OUT */,
                        sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;

/* Queues one message for (type, id). opts (NULL = none) as for
 * sm_client_send_opts. *seq (may be NULL) gets its seq. Everything is
 * copied before the call returns. Returns SM_OK, SM_EINVAL (bad argument:
 * nothing queued, the stream stays usable), SM_ESTATE (after finish),
 * SM_ENOMEM, or SM_ERPC (the stream broke). */
int sm_send_stream_push(sm_send_stream *s, const char *type, const char *id, const sm_value *v,
                        const sm_send_options *opts, uint64_t *seq /* OUT, may be NULL */,
                        sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;

/* Sends the partly filled batch now (waiting for the previous one to be
 * written first). Use it when the producer may pause. */
int sm_send_stream_flush(sm_send_stream *s, sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;

/* Processes the acknowledgements that arrived, waiting up to wait_ms (0:
 * not at all, < 0: until something happens) for at least one event.
 * Returns SM_OK or SM_ERPC. */
int sm_send_stream_poll(sm_send_stream *s, int wait_ms,
                        sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;

void sm_send_stream_get_progress(const sm_send_stream *s,
                                 sm_send_stream_progress *out /* OUT */);

/* Sends what is left, half-closes and waits (up to timeout_ms; <= 0
 * forever) until the runtime has acknowledged every message and ended the
 * stream. Returns SM_OK if all were acknowledged (some may have been
 * rejected: see the progress and on_error), SM_ERPC otherwise (err says
 * why; DEADLINE_EXCEEDED on timeout). The stream takes no more messages. */
int sm_send_stream_finish(sm_send_stream *s, int timeout_ms,
                          sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;

/* Cancels the stream if it is still open, frees it, sets *ps to NULL. */
void sm_send_stream_destroy(sm_send_stream **ps);

/* ---- Subscribe: reading an egress ---- */

typedef enum sm_egress_start {
    SM_EGRESS_FROM_OFFSET = 0,  /* from `from_offset` (offsets start at 1) */
    SM_EGRESS_EARLIEST = 1,     /* the oldest retained record */
    SM_EGRESS_LATEST = 2        /* only records committed from now on */
} sm_egress_start;

typedef struct sm_subscribe_options {
    const char *egress;         /* [A-Za-z0-9_.-]{1,128} */
    sm_egress_start start;
    uint64_t from_offset;       /* SM_EGRESS_FROM_OFFSET only */
    bool follow;                /* false: end once caught up; true: wait for more */
    int timeout_ms;             /* deadline of the whole subscription; <= 0 none */
} sm_subscribe_options;

/* One egress record. Every pointer is owned by the subscription. */
typedef struct sm_egress_record {
    uint64_t offset;            /* consecutive, from 1 */
    int64_t timestamp_ms;       /* commit time, Unix epoch */
    const char *source_type;    /* the function that wrote it ("" if unknown) */
    const char *source_id;
    sm_value value;
    const char *node;           /* cluster: the node whose log holds it (offsets are
                                 * per node); "" on a runtime alone */
} sm_egress_record;

typedef struct sm_subscription sm_subscription;

/* Opens a subscription (opts copied). Errors of the runtime (unknown
 * egress, trimmed offset, unreachable) come from the first
 * sm_subscription_next. Returns SM_OK, SM_EINVAL or SM_ENOMEM. */
int sm_subscription_open(sm_client *c, const sm_subscribe_options *opts,
                         sm_subscription **out /* OUT */,
                         sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;

/* The next record, waiting up to wait_ms (< 0: without limit). Returns
 * SM_OK (*rec valid until the next call or close), SM_AGAIN (nothing within
 * wait_ms), SM_ABSENT (the stream ended: caught up without follow), or
 * SM_ERPC with err filled in; the messages of the usual failures:
 *   NOT_FOUND     no egress named 'X' (egresses are declared in the
 *                 runtime's config)
 *   OUT_OF_RANGE  offset N is no longer retained; start from the earliest
 *   UNAVAILABLE   the runtime is not reachable at TARGET */
int sm_subscription_next(sm_subscription *sub, int wait_ms, sm_egress_record *rec /* OUT */,
                         sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;

/* Cancels the subscription if still open, frees it, sets *psub to NULL. */
void sm_subscription_close(sm_subscription **psub);

/* Calls fn for each record until the stream ends (SM_OK), fn returns
 * non-zero (the subscription is cancelled; SM_OK), or an error (SM_ERPC,
 * SM_EINVAL, SM_ENOMEM with err filled in). */
typedef int (*sm_egress_fn)(void *udata, const sm_egress_record *rec);
int sm_client_subscribe(sm_client *c, const sm_subscribe_options *opts, sm_egress_fn fn,
                        void *udata, sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;

/* ---- State administration (docs/state-admin.md) ----
 *
 * List the ids of a function type that hold state, a page at a time, and
 * write or delete state values of an address as an operator. A write is
 * applied like a message to the address (never during an invocation of it)
 * and returns once its checkpoint is durable.
 *
 *     sm_state_ids p;
 *     char after[1025] = "";     // ids are at most 1024 bytes
 *     bool more = true;
 *     while (more && sm_client_state_list(c, "shop/cart", NULL, after, 0, 10000, &p,
 *                                         &err) == SM_OK) {
 *         for (size_t i = 0; i < p.n; i++) puts(p.ids[i]);
 *         more = p.more;
 *         if (more) snprintf(after, sizeof after, "%s", p.next_after_id);
 *         sm_state_ids_cleanup(&p);
 *     }
 */

/* One page of ids. Every pointer is owned by the struct. */
typedef struct sm_state_ids {
    const char **ids;          /* in key order: key group, then id bytes */
    size_t n;
    bool more;                 /* the listing goes on after this page */
    const char *next_after_id; /* with more: the after_id of the next page */
    void *msg_;                /* private */
} sm_state_ids;

/* Admin ListState: ids of `type` with committed, unexpired state, starting
 * with `prefix` (NULL/"" = all), after `after_id` (NULL/"" = from the
 * start), at most `limit` (0 = 1000, at most 10000). On SM_OK the caller
 * frees *out with sm_state_ids_cleanup. */
int sm_client_state_list(sm_client *c, const char *type, const char *prefix,
                         const char *after_id, uint32_t limit, int timeout_ms,
                         sm_state_ids *out /* OUT */,
                         sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;
void sm_state_ids_cleanup(sm_state_ids *l);
/* Admin SetState: state `name` of (type, id) becomes v (only read during
 * the call). The runtime refuses a value over max_message_bytes
 * (RESOURCE_EXHAUSTED) and a typename other than the function declares for
 * the state (FAILED_PRECONDITION). */
int sm_client_state_set(sm_client *c, const char *type, const char *id, const char *name,
                        const sm_value *v, int timeout_ms,
                        sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;
/* Admin DeleteState: deletes state `name` of (type, id), or every state
 * value of it when name is NULL or "". *deleted (may be NULL): how many
 * values existed. */
int sm_client_state_delete(sm_client *c, const char *type, const char *id, const char *name,
                           int timeout_ms, uint32_t *deleted /* OUT, may be NULL */,
                           sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;

/* ---- savepoints (docs/savepoints.md) ---- */

typedef struct sm_savepoint_progress {
    uint64_t records, bytes;    /* written so far */
    uint32_t files_done, files;
    int64_t elapsed_ms;
    bool done;                  /* the last one: the savepoint is complete */
    const char *path;           /* when done */
    const char *manifest_json;  /* when done: its MANIFEST.json */
} sm_savepoint_progress;

/* Called for each progress report (about every 250 ms) and once with done
 * set; strings are valid during the call. Non-zero cancels the savepoint. */
typedef int (*sm_savepoint_fn)(void *udata, const sm_savepoint_progress *p);

/* Has the runtime write a savepoint into `path` (absolute, on the runtime's
 * machine, not existing yet; its parent must exist), in `ranges` key-group
 * files (0: 16). Blocks until it is complete (SM_OK) or failed (SM_ERPC,
 * err says why: ALREADY_EXISTS, FAILED_PRECONDITION (another savepoint
 * running, no parent directory), INTERNAL (a write failed), ...). */
int sm_client_create_savepoint(sm_client *c, const char *path, uint32_t ranges,
                               sm_savepoint_fn fn, void *udata,
                               sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;

/* ---- bootstrap (docs/savepoints.md#bootstrap) ----
 *
 * Loads addresses' application data into the running runtime: each entry
 * is one AddressData message (protocol/statemesh/v1/admin.proto: address,
 * state, inbox messages, delayed messages), already encoded, as
 * `statemesh bootstrap` builds them from JSON lines. Each entry is applied
 * like a message to its address, all of it in one checkpoint, exactly once:
 * sending the same entry bytes again gives SM_BOOT_ALREADY_LOADED. Returns
 * once the checkpoint holding every loaded entry is durable, with one
 * outcome per entry; a bad entry (SM_BOOT_INVALID, errors[i] says why)
 * does not stop the others. At most SM_BOOTSTRAP_MAX_ENTRIES entries per
 * call, and their bytes within the runtime's largest message
 * (runtime.max_message_bytes): larger requests fail with
 * RESOURCE_EXHAUSTED. UNAVAILABLE with "overloaded": the runtime's queues
 * are full, retry later. Several calls may run at once on one client from
 * different threads (at most 6), which is how the CLI keeps the runtime busy. */

#define SM_BOOTSTRAP_MAX_ENTRIES 10000

typedef enum sm_bootstrap_mode {
    SM_BOOTSTRAP_CREATE_ONLY = 0,   /* an address that has state is left alone (EXISTS) */
    SM_BOOTSTRAP_OVERWRITE = 1      /* its state is replaced by the entry's */
} sm_bootstrap_mode;

typedef enum sm_boot_outcome {
    SM_BOOT_LOADED = 0,             /* applied (dry run: would be) */
    SM_BOOT_ALREADY_LOADED = 1,     /* this very entry was loaded before: nothing changed */
    SM_BOOT_EXISTS = 2,             /* create-only and the address has state: nothing changed */
    SM_BOOT_INVALID = 3             /* refused (errors[i]): nothing changed */
} sm_boot_outcome;

typedef struct sm_bootstrap_results {
    size_t n;
    sm_boot_outcome *outcomes;      /* n, in request order */
    const char **errors;            /* n; "" unless INVALID */
    void *msg_;                     /* private */
} sm_bootstrap_results;

/* Admin Bootstrap of entries[0..n) (lens[i] bytes each). dry_run: every
 * entry is checked and its outcome decided, nothing is applied. On SM_OK
 * the caller frees *out with sm_bootstrap_results_cleanup. */
int sm_client_bootstrap(sm_client *c, const void *const *entries, const size_t *lens, size_t n,
                        sm_bootstrap_mode mode, bool dry_run, int timeout_ms,
                        sm_bootstrap_results *out /* OUT */,
                        sm_error *err /* OUT, may be NULL */) SM_WARN_UNUSED;
void sm_bootstrap_results_cleanup(sm_bootstrap_results *r);

#endif
