/*
 * endpoint — the runtime's gRPC client to one function server (sidecar).
 *
 * Life of an endpoint:
 *
 *   DOWN --timer--> DESCRIBING --Describe ok--> UP (Invoke stream open)
 *    ^                  |                        |
 *    +----- failure ----+------ stream closed ---+   (backoff 100 ms .. 2 s)
 *
 * Describe tells which function types the server serves and their declared
 * state; only declared state is sent. An endpoint keeps cfg->streams Invoke
 * streams open (remote mode: 4 by default, on a round_robin channel, so they
 * spread over the backends; gRPC balances calls, not messages). Batches go to
 * the open streams in turn. When one stream closes, its in-flight batches go
 * back to their addresses and are sent again on the others, and the endpoint
 * re-Describes (a new version of a backend is picked up) and reopens it after
 * a backoff; the endpoint is DOWN only when no stream is open. In remote
 * mode a stream older than EP_STREAM_MAX_AGE_MS is drained and reopened, one
 * at a time, so backends that appeared since (DNS) get their share; the
 * first rotation comes early (EP_STREAM_FIRST_AGE_MS), because streams opened
 * while the balancer had connected to only some backends all land there. Batches are coalesced: while a stream
 * message is being sent, newly built batches accumulate in the next frame
 * (ToFunction.batches is a repeated field, so a frame is the concatenation of
 * encoded batches). Each in-flight batch occupies a slot (<= max_in_flight);
 * batch_id = generation << 32 | slot, so stale or forged ids are ignored.
 * When the stream fails, every in-flight batch goes back to its address to
 * be sent again: invocations are at-least-once, effects exactly-once.
 * A batch not answered within the invocation timeout counts as failed.
 *
 * Embedded mode (cfg mode = embedded, runtime/embedded.h): no channel, no
 * stream. ep_start loads the library and takes its Describe answer
 * (DOWN -> UP at once; a load failure fails ep_start and the runtime refuses
 * to start); ep_flush hands the frame to the module, which answers every
 * batch synchronously through the same per-batch path as on_message, so
 * dispatch sees no difference. Answers made during ep_flush land after this
 * loop iteration's checkpoint step, so the endpoint arms `kick` (due now) to
 * keep the loop from sleeping before it commits them.
 */
#ifndef SM_ENDPOINT_H
#define SM_ENDPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "embedded.h"
#include "statemesh/v1/types.pb-c.h"
#include "mailbox.h"
#include "rpc.h"
#include "timer.h"

#define EP_MAX_FRAME_BYTES (4u << 20)
#define EP_STREAM_MAX_AGE_MS 30000
#define EP_STREAM_FIRST_AGE_MS 2000   /* first rotation: after the balancer connected */

struct ftype {
    char *name;
    char **spec_names, **spec_types;
    uint64_t *spec_ttl_write, *spec_ttl_invoke;   /* ms, 0 = never expires */
    size_t nspecs;
    int has_invoke_ttl;        /* some spec expires after invoke */
};

enum ep_state { EP_DOWN, EP_DESCRIBING, EP_UP };

struct ep_slot {
    struct mbox *mb;           /* NULL: free */
    uint32_t gen;
    int stream;                /* index of the stream it was sent on */
    int64_t deadline_ms;
    int64_t sent_ns;           /* metrics on: when reserved, for the round trip */
};

struct endpoint;

/* One Invoke stream of a sidecar/remote endpoint. */
struct ep_stream {
    struct endpoint *ep;
    int index;
    struct rpc_stream *rs;     /* NULL: closed */
    uint8_t *frame;            /* encoded batches waiting to be sent on it */
    size_t frame_len, frame_cap;
    uint32_t inflight;         /* batches sent on it, not answered */
    int64_t opened_ms;
    int poisoned;              /* we reset it over garbage */
    int draining;              /* rotating: no new batches, closed when empty */
    unsigned rotations;        /* times it was rotated */
};

struct server;

#define EP_MAX_RETIRED 4

struct endpoint {
    struct server *srv;
    const struct cfg_endpoint *cfg;
    int index;
    enum ep_state state;
    struct rpc_channel *ch;
    struct rpc_channel *retired[EP_MAX_RETIRED]; /* replaced by ep_reload_tls, freed
                                                  * by the sweep once their calls end */
    struct ep_stream *streams; /* cfg->streams of them */
    int nstreams, nopen;
    int next_stream;           /* round robin over open streams */
    int cur_stream;            /* where the batch being built goes */
    int describe_pending;
    struct ftype *types;       /* served types, from Describe */
    size_t ntypes;
    int described;             /* types[] is known */
    struct mbox_list ready;    /* addresses waiting to be dispatched */
    struct ep_slot *slots;
    uint32_t *free_slots;
    uint32_t nfree;
    uint32_t inflight;
    uint8_t *frame;            /* embedded: encoded batches waiting to be run */
    size_t frame_len, frame_cap;
    struct timer reconnect, sweep;
    int64_t backoff_ms;
    unsigned failures;         /* consecutive connect failures, for log pacing */
    struct sm_arena *answers;  /* decoded FromFunction messages, dropped whole */
    /* embedded mode only */
    struct emb_module *module; /* the loaded library */
    struct timer kick;         /* due now after in-process answers */
    char error[600];           /* why ep_start failed, for the start-up message */
};

int ep_init(struct endpoint *ep, struct server *s, const struct cfg_endpoint *cfg, int index);
int ep_start(struct endpoint *ep);               /* begins connecting; -1 bad target
                                                    (embedded: load failed, see ep->error) */
void ep_stop(struct endpoint *ep);               /* cancels stream and timers */
int ep_closed(const struct endpoint *ep);        /* no rpc in progress */
/* SIGHUP: re-reads the endpoint's tls files (no-op without tls). Good files:
 * a new channel for every stream and call from now on; those running finish
 * on the old connection, which is closed once they are done. Bad files, or
 * EP_MAX_RETIRED old channels still busy: -1, `err` says why, nothing
 * changes. */
int ep_reload_tls(struct endpoint *ep, char *err, size_t errlen);
void ep_cleanup(struct endpoint *ep);

/* The endpoint's name for messages: its target, or (embedded) its library.
 * Borrowed from the config; never NULL. */
const char *ep_name(const struct endpoint *ep);

/* The served type, or NULL (unknown type or not yet described). */
struct ftype *ep_find_type(struct endpoint *ep, const char *type);
/* 1 if the endpoint is known not to serve `type`. */
int ep_rejects_type(struct endpoint *ep, const char *type);
/* Adds specs reported missing by an Incomplete answer. */
void ep_add_specs(struct endpoint *ep, struct ftype *ft, const Statemesh__V1__StateSpec *spec);

/* 1 if another batch may be added now. */
int ep_has_capacity(const struct endpoint *ep);
/* Takes an in-flight slot for `mb`'s batch; returns its batch_id. */
uint64_t ep_reserve(struct endpoint *ep, struct mbox *mb);
/* Appends one encoded BatchRequest to the next frame. */
void ep_append(struct endpoint *ep, const uint8_t *batch, size_t len);
/* The same, encoding `req` straight into the frame. */
void ep_append_message(struct endpoint *ep, const ProtobufCMessage *req);
/* Sends the pending frame if the stream is writable. */
void ep_flush(struct endpoint *ep);

#endif
