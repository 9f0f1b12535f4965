/*
 * metrics — Prometheus `/metrics` and the HTTP probes `/healthz`, `/readyz`
 * on `runtime.metrics = "host:port"` (off when unset). docs/operations.md
 * ("Metrics") lists every metric.
 *
 * How it runs, and why. The runtime's logic lives on one event-loop thread
 * that sleeps in grpc_completion_queue_next (DESIGN §9); it cannot also wait
 * on an HTTP socket without polling it every iteration (a system call per
 * iteration on the hot path, and up to 100 ms of added scrape latency when
 * idle). So libmicrohttpd runs in its own thread
 * (MHD_USE_INTERNAL_POLLING_THREAD, one thread, poll(), at most
 * METRICS_MAX_CONNECTIONS connections, each timed out after
 * METRICS_TIMEOUT_S) and never touches the server's data. Instead:
 *
 *   loop thread                              HTTP thread
 *   -----------                              -----------
 *   counters in struct stats, histograms     on GET /metrics:
 *   in struct metrics (no lock: owner)         lock; copy `shared` into
 *   every METRICS_PUBLISH_MS (and at once      `render` (its own); unlock
 *   on ready/stopping):                        format `render` as text
 *     lock; copy live values into `shared`;  on GET /readyz: lock; read
 *     unlock                                   `ready`; unlock
 *
 * The mutex guards `shared` and `ready`, nothing else; every other field is
 * touched by one thread only (live: the loop; render: the HTTP thread).
 * Names (endpoints, egresses, methods) are copied into fixed arrays of the
 * views, so the HTTP thread never follows a pointer into the server. Hence
 * no data race by construction; a scrape sees values at most
 * METRICS_PUBLISH_MS (plus one loop iteration) old, and all of them from the
 * same instant. Checked with helgrind (test_metrics.py, opt-in with
 * STATEMESH_HELGRIND=1, ci/helgrind.supp): no report names this module, and
 * removing the lock around the copy in the handler is reported at once.
 * Observing a histogram on the hot path is a few integer
 * operations on loop-owned memory (histo.h): no lock, no allocation. With
 * metrics off, s->metrics is NULL and every hook below returns at once.
 *
 * Memory: the views are allocated once at start (their size is fixed by the
 * configuration: endpoints, egresses, METRICS_MAX_METHODS x 17 codes); a
 * scrape allocates one text buffer (capped at METRICS_MAX_TEXT) that
 * libmicrohttpd frees when the response is sent. Nothing grows per request.
 *
 * HTTP: GET or HEAD only (else 405 with Allow); /metrics (text format 0.0.4),
 * /healthz (200 while the process runs), /readyz (200 once the store is open
 * and recovery is done, 503 before that and from the moment a stop begins);
 * any other path 404.
 */
#ifndef SM_METRICS_H
#define SM_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define METRICS_PUBLISH_MS 100
#define METRICS_MAX_CONNECTIONS 32
#define METRICS_TIMEOUT_S 10
#define METRICS_MAX_METHODS 32        /* rpc methods tracked (more: counted as "other") */
#define METRICS_MAX_TEXT (8u << 20)

struct metrics;
struct server;
struct rpc_server;

/* Parses a listen address "host:port": an IPv4 literal, "[IPv6]" literal or
 * "localhost", and a port 1..65535. Returns 0, or -1 with a sentence in err. */
int metrics_parse_addr(const char *addr, struct sockaddr_storage *sa /* OUT */,
                       socklen_t *salen /* OUT */, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Binds s->cfg.metrics and starts the HTTP thread (readyz answers 503 until
 * metrics_set_ready). Returns 0 with *out owned by the caller, or -1 with a
 * sentence in err (e.g. the port is in use). */
int metrics_create(struct metrics **out /* OUT */, const struct server *s, char *err,
                   size_t errlen) __attribute__((warn_unused_result));
/* Stops the HTTP thread (closing its connections) and frees; *mp = NULL. */
void metrics_destroy(struct metrics **mp);

/* ---- loop thread only (m may be NULL: metrics off) ---------------------- */

/* Ready or not (readyz); publishes at once. */
void metrics_set_ready(struct server *s, int ready);
/* Copies the live values for the HTTP thread when METRICS_PUBLISH_MS have
 * passed since the last time (force: now). Cheap otherwise. */
void metrics_publish(struct server *s, int force);
/* Watches every call of `srv`: duration per method and status code. */
void metrics_attach_rpc(struct metrics *m, struct rpc_server *srv);

/* Durations below are in nanoseconds (rpc_now_ns). */
/* One answered batch of endpoint `ep` (index), `ns` after it was sent. */
void metrics_batch_round_trip(struct metrics *m, int ep, int64_t ns);
/* One checkpoint's LevelDB write (with its fsync when sync is on). */
void metrics_checkpoint(struct metrics *m, int64_t ns);

#endif
