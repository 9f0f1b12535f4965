/*
 * egress — named, durable, ordered output logs (DESIGN §1, §7).
 *
 * Functions append records with EgressRecord answers; the records enter the
 * open checkpoint together with the state changes that produced them, so
 * each processed message yields its records exactly once. Offsets start at
 * 1 and are consecutive in commit order; the next offset of every log is
 * kept in metadata ("X egress.NAME.next") written in the same checkpoint, so
 * offsets are never reused even after retention trimmed every record.
 *
 * Subscribers (Ingress.Subscribe) read committed records only: replay from
 * the store from their position, then (follow) wait and are woken after
 * each checkpoint. A position older than the oldest retained record gets
 * OUT_OF_RANGE with both offsets in the message.
 *
 * Retention: once a second, records beyond retention_records or older than
 * retention_hours are deleted (at most EGRESS_TRIM_MAX per log per pass,
 * through the checkpoint).
 */
#ifndef SM_EGRESS_H
#define SM_EGRESS_H

#include <stdint.h>

#include "config.h"
#include "statemesh/v1/types.pb-c.h"
#include "timer.h"

#define EGRESS_TRIM_MAX 10000
#define EGRESS_TRIM_INTERVAL_MS 1000

struct egress_sub;

struct egress_log {
    const struct cfg_egress *cfg;
    uint64_t next;             /* offset of the next record appended */
    uint64_t committed;        /* offsets < committed are durable */
    uint64_t first;            /* oldest retained (== next when empty) */
    int dirty;                 /* "next" metadata must go into the open checkpoint */
    struct egress_sub *subs;
};

struct server;
struct rpc_scall;

/* Reads each configured log's bounds from the store. Returns 0 or -1 (logged). */
int egress_open(struct server *s);
void egress_close(struct server *s);
/* Appends a record to log `idx` in the open checkpoint. */
void egress_append(struct server *s, int idx, const char *src_type, const char *src_id,
                   const Statemesh__V1__TypedValue *v);
/* The same with the W3C traceparent of the invocation that wrote it (NULL
 * or "": not traced), stored with the record and given to subscribers. */
void egress_append_traced(struct server *s, int idx, const char *src_type, const char *src_id,
                          const Statemesh__V1__TypedValue *v, const char *traceparent);
/* Checkpoint hooks: before the write (metadata) and after it is durable
 * (records become visible, subscribers are woken). */
void egress_before_commit(struct server *s);
void egress_after_commit(struct server *s);
/* Ingress.Subscribe: a new stream call. */
void egress_subscribe(void *server, struct rpc_scall *c);
/* Retention pass (housekeeping timer). */
void egress_trim(struct server *s);
/* Ends every subscription (shutdown). */
void egress_shutdown(struct server *s);

#endif
