/*
 * ride — the ride-sharing example (Fig. 1 of the Flink Stateful Functions 2.0
 * announcement) as one C function server.
 *
 *   ride [--listen unix:/path.sock | host:port] [--pickup-timeout-ms N]
 *        (default unix:/tmp/statemesh-ride.sock, 600000)
 *
 * Four function types; every message and state value is statemesh/json:
 *
 *   ride/driver     id = driver.    state driver {"cell","status","ride"}
 *   ride/geocell    id = cell.      state drivers ["d1", ...]   (free drivers, FIFO)
 *   ride/ride       id = ride.      state ride {"passenger","cell","status","driver","attempts"}
 *   ride/passenger  id = passenger. state passenger {"status","ride","driver","rides"}
 *
 * Messages (from the ingress unless said otherwise):
 *
 *   driver     {"cell":"c12"}     joins cell c12 (leaves the previous one) -> geocell join
 *              {"op":"leave"}     goes off duty                            -> geocell leave
 *              {"op":"pickup"}    the passenger is in the car              -> ride started
 *              {"op":"dropoff"}   the ride is over; free again             -> ride completed,
 *                                                                             geocell join
 *              offer  (geocell)   free: accept -> ride; else decline -> ride
 *              release (ride)     the ride was cancelled: free again       -> geocell join
 *   geocell    join / leave (driver); request (ride): the first free driver
 *              gets an offer, or the ride hears no_driver
 *   ride       create (passenger) -> event requested, request -> geocell
 *              accept (driver)    -> event driver_assigned, passenger notified,
 *                                    a pickup timeout scheduled (delayed message,
 *                                    cancellation token "pickup")
 *              decline (driver)   -> ask the geocell again (3 attempts, then no driver)
 *              no_driver (geocell)-> event no_driver_available, passenger notified
 *              started (driver)   -> event started (timeout cancelled), passenger notified
 *              completed (driver) -> event completed, passenger notified
 *              pickup_timeout (itself, delayed) -> event cancelled, driver released,
 *                                    passenger notified
 *   passenger  {"op":"request","cell":"c12"}  a new ride "<passenger>-<n>" -> ride create.
 *              Make it a Call: the reply comes back along the chain once the ride
 *              has a driver ({"ride","status":"driver_assigned","driver"}) or has none
 *              ({"ride","status":"no_driver_available"}).
 *              assigned / no_driver / started / completed / cancelled (ride): bookkeeping
 *
 * Ride lifecycle events go to the egress "ride-events" (declared in
 * statemesh.conf) as {"event","ride","passenger","cell"[,"driver"][,"reason"]}:
 * requested, driver_assigned, started, completed, no_driver_available, cancelled.
 *
 * Bad input from the ingress (not JSON, unknown op, a request while a ride is
 * active) is answered with {"error": "..."} and changes nothing: failing the
 * batch would make the runtime retry the same bad message forever.
 *
 * Try it: examples/ride-sharing/run.sh, then the commands in docs/c-sdk.md (ride-sharing)
 * section "Ride-sharing example".
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "statemesh/function.h"
#include "statemesh/json.h"

#define EGRESS "ride-events"
#define MAX_ATTEMPTS 3
#define ID_MAX 1025 /* ids are 1..1024 bytes */

struct options {
    const char *listen;
    uint64_t pickup_timeout_ms;
};

/* ---- a JSON writer into handler scratch memory ---- */

struct jw {
    sm_ctx *ctx;
    char *buf;
    size_t len, cap;
    bool comma, oom;
};

static void jw_grow(struct jw *w, size_t more)
{
    char *nb;
    size_t cap;
    if (w->oom || w->len + more + 1 <= w->cap) return;
    cap = (w->cap ? w->cap * 2 : 256) + more;
    if (!(nb = sm_ctx_alloc(w->ctx, cap))) {
        w->oom = true;
        return;
    }
    if (w->len) memcpy(nb, w->buf, w->len);
    w->buf = nb;
    w->cap = cap;
}

static void jw_raw(struct jw *w, const char *s, size_t n)
{
    jw_grow(w, n);
    if (w->oom) return;
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

static void jw_quoted(struct jw *w, const char *s)
{
    size_t n = strlen(s), need = sm_json_quote(NULL, 0, s, n);
    jw_grow(w, need);
    if (w->oom) return;
    sm_json_quote(w->buf + w->len, need + 1, s, n);
    w->len += need;
}

static void jw_begin(struct jw *w, sm_ctx *ctx, char open)
{
    memset(w, 0, sizeof *w);
    w->ctx = ctx;
    jw_raw(w, &open, 1);
}

static void jw_key(struct jw *w, const char *key)
{
    if (w->comma) jw_raw(w, ",", 1);
    w->comma = true;
    if (key) {
        jw_quoted(w, key);
        jw_raw(w, ":", 1);
    }
}

/* "key": "value" (null when value is NULL or empty) */
static void jw_str(struct jw *w, const char *key, const char *value)
{
    jw_key(w, key);
    if (value && *value) jw_quoted(w, value);
    else jw_raw(w, "null", 4);
}

static void jw_int(struct jw *w, const char *key, int64_t v)
{
    char num[24];
    jw_key(w, key);
    jw_raw(w, num, (size_t)snprintf(num, sizeof num, "%" PRId64, v));
}

/* Closes the object/array; returns the text or NULL when out of memory. */
static const char *jw_end(struct jw *w, char close)
{
    jw_raw(w, &close, 1);
    return w->oom ? NULL : w->buf;
}

/* ---- reading messages and state ---- */

/* Parses a statemesh/json value. Returns 0 or -1. */
static int parse_json(const sm_value *v, sm_json *out)
{
    const char *s;
    size_t n;
    if (sm_value_as_json(v, &s, &n) != SM_OK) return -1;
    return sm_json_parse(s, n, out) == SM_OK && out->kind == SM_JSON_OBJECT ? 0 : -1;
}

/* Member `key` as a string into buf ("" when absent or null). Returns 0, or
 * -1 when it is of another kind or too long. */
static int get_str(const sm_json *obj, const char *key, char *buf, size_t size)
{
    sm_json v;
    int rc = sm_json_get(obj, key, &v);
    buf[0] = '\0';
    if (rc == SM_ABSENT || (rc == SM_OK && sm_json_is_null(&v))) return 0;
    if (rc != SM_OK) return -1;
    return sm_json_string(&v, buf, size, NULL) == SM_OK ? 0 : -1;
}

static bool op_is(const sm_json *msg, const char *op)
{
    sm_json v;
    return sm_json_get(msg, "op", &v) == SM_OK && sm_json_string_eq(&v, op);
}

/* Reads JSON state `name` (absent: *present = false). */
static int load_state(sm_ctx *ctx, const char *name, sm_json *out, bool *present)
{
    const char *s;
    size_t n;
    int rc = sm_state_get_json(ctx, name, &s, &n);
    if (rc < 0) return -1;
    *present = rc == SM_OK;
    if (!*present) return 0;
    if (sm_json_parse(s, n, out) != SM_OK) {
        sm_fail(ctx, "%s: state %s is not valid JSON", sm_ctx_self(ctx)->type, name);
        return -1;
    }
    return 0;
}

/* Answers bad ingress input: {"error": why}, nothing else changes. */
static int reject(sm_ctx *ctx, const char *fmt, ...) SM_PRINTF(2, 3);
static int reject(sm_ctx *ctx, const char *fmt, ...)
{
    char why[512];
    struct jw w;
    const char *json;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    jw_begin(&w, ctx, '{');
    jw_str(&w, "error", why);
    if (!(json = jw_end(&w, '}'))) return sm_fail(ctx, "out of memory");
    return sm_reply_json(ctx, json);
}

/* Sends {"op": op, key1: val1, ...} (pairs of strings, NULL-terminated) to (type, id). */
static int send_op(sm_ctx *ctx, const char *type, const char *id, const char *op, ...)
{
    struct jw w;
    const char *key, *json;
    va_list ap;

    jw_begin(&w, ctx, '{');
    jw_str(&w, "op", op);
    va_start(ap, op);
    while ((key = va_arg(ap, const char *)) != NULL) jw_str(&w, key, va_arg(ap, const char *));
    va_end(ap);
    if (!(json = jw_end(&w, '}'))) return sm_fail(ctx, "out of memory");
    return sm_send_json(ctx, type, id, json);
}

/* ---- ride/driver ---- */

struct driver {
    char cell[ID_MAX], status[16], ride[ID_MAX];
};

static int driver_load(sm_ctx *ctx, struct driver *d)
{
    sm_json st;
    bool present;
    memset(d, 0, sizeof *d);
    strcpy(d->status, "off");
    if (load_state(ctx, "driver", &st, &present)) return -1;
    if (!present) return 0;
    if (get_str(&st, "cell", d->cell, sizeof d->cell) || get_str(&st, "status", d->status, sizeof d->status) ||
        get_str(&st, "ride", d->ride, sizeof d->ride))
        return sm_fail(ctx, "ride/driver: malformed state");
    return 0;
}

/* Saves the state and returns its JSON text (for replies), NULL on error. */
static const char *driver_save(sm_ctx *ctx, const struct driver *d)
{
    struct jw w;
    const char *json;
    jw_begin(&w, ctx, '{');
    jw_str(&w, "cell", d->cell);
    jw_str(&w, "status", d->status);
    jw_str(&w, "ride", d->ride);
    if (!(json = jw_end(&w, '}'))) {
        sm_fail(ctx, "out of memory");
        return NULL;
    }
    return sm_state_set_json(ctx, "driver", json) < 0 ? NULL : json;
}

static int driver_fn(sm_ctx *ctx, const sm_value *message, void *udata)
{
    const char *me = sm_ctx_self(ctx)->id, *json;
    bool from_ingress = sm_ctx_caller(ctx) == NULL;
    char cell[ID_MAX], ride[ID_MAX], passenger[ID_MAX];
    struct driver d;
    sm_json msg;

    if (parse_json(message, &msg))
        return from_ingress ? reject(ctx, "ride/driver wants a JSON object") : 0;
    if (driver_load(ctx, &d)) return -1;

    if (op_is(&msg, "offer")) { /* from a geocell */
        if (get_str(&msg, "ride", ride, sizeof ride) || get_str(&msg, "passenger", passenger, sizeof passenger) ||
            !*ride)
            return sm_fail(ctx, "ride/driver: malformed offer");
        if (strcmp(d.status, "available") != 0)
            return send_op(ctx, "ride/ride", ride, "decline", "driver", me, NULL);
        strcpy(d.status, "busy");
        strcpy(d.ride, ride);
        if (!driver_save(ctx, &d)) return -1;
        return send_op(ctx, "ride/ride", ride, "accept", "driver", me, NULL);
    }
    if (op_is(&msg, "release")) { /* from a ride that was cancelled */
        if (get_str(&msg, "ride", ride, sizeof ride)) return sm_fail(ctx, "ride/driver: malformed release");
        if (strcmp(d.status, "busy") != 0 || strcmp(d.ride, ride) != 0) return 0;
        strcpy(d.status, d.cell[0] ? "available" : "off");
        d.ride[0] = '\0';
        if (!driver_save(ctx, &d)) return -1;
        return d.cell[0] ? send_op(ctx, "ride/geocell", d.cell, "join", "driver", me, NULL) : 0;
    }
    if (!from_ingress) return 0; /* nothing else comes from functions */

    if (op_is(&msg, "pickup") || op_is(&msg, "dropoff")) {
        bool pickup = op_is(&msg, "pickup");
        if (strcmp(d.status, "busy") != 0) return reject(ctx, "driver %s has no ride", me);
        if (pickup) {
            if (send_op(ctx, "ride/ride", d.ride, "started", "driver", me, NULL) < 0) return -1;
        } else {
            if (send_op(ctx, "ride/ride", d.ride, "completed", "driver", me, NULL) < 0) return -1;
            strcpy(d.status, d.cell[0] ? "available" : "off");
            d.ride[0] = '\0';
            if (d.cell[0] && send_op(ctx, "ride/geocell", d.cell, "join", "driver", me, NULL) < 0)
                return -1;
        }
        return (json = driver_save(ctx, &d)) ? sm_reply_json(ctx, json) : -1;
    }
    if (op_is(&msg, "leave")) {
        if (strcmp(d.status, "available") == 0 &&
            send_op(ctx, "ride/geocell", d.cell, "leave", "driver", me, NULL) < 0)
            return -1;
        if (strcmp(d.status, "busy") != 0) strcpy(d.status, "off");
        d.cell[0] = '\0';
        return (json = driver_save(ctx, &d)) ? sm_reply_json(ctx, json) : -1;
    }
    /* {"cell": "c12"} (optionally with "op": "join") */
    if (get_str(&msg, "cell", cell, sizeof cell) || !*cell ||
        (sm_json_get(&msg, "op", &(sm_json){0}) == SM_OK && !op_is(&msg, "join")))
        return reject(ctx, "ride/driver wants {\"cell\": CELL} or {\"op\": "
                           "\"leave\"|\"pickup\"|\"dropoff\"}");
    if (strcmp(d.status, "available") == 0 && strcmp(d.cell, cell) != 0 &&
        send_op(ctx, "ride/geocell", d.cell, "leave", "driver", me, NULL) < 0)
        return -1;
    strcpy(d.cell, cell); /* a busy driver joins the new cell after the ride */
    if (strcmp(d.status, "busy") != 0) {
        strcpy(d.status, "available");
        if (send_op(ctx, "ride/geocell", cell, "join", "driver", me, NULL) < 0) return -1;
    }
    return (json = driver_save(ctx, &d)) ? sm_reply_json(ctx, json) : -1;
}

/* ---- ride/geocell ---- */

/* Rewrites the free-driver list without `drop` (if given) and with `add`
 * appended (if given and not there). *first gets the first remaining driver
 * before the change when pop is set (and is removed). */
static int geocell_update(sm_ctx *ctx, const char *drop, const char *add, bool pop,
                          char *first, size_t first_size)
{
    sm_json list, item;
    sm_json_iter it;
    bool present, there = false;
    struct jw w;
    const char *json;
    char id[ID_MAX];

    if (first) first[0] = '\0';
    if (load_state(ctx, "drivers", &list, &present)) return -1;
    jw_begin(&w, ctx, '[');
    if (present) {
        if (sm_json_iter_init(&it, &list) != SM_OK) return sm_fail(ctx, "ride/geocell: malformed state");
        while (sm_json_iter_next(&it, NULL, &item) == SM_OK) {
            if (sm_json_string(&item, id, sizeof id, NULL) != SM_OK)
                return sm_fail(ctx, "ride/geocell: malformed state");
            if (pop && first && !first[0]) {
                snprintf(first, first_size, "%s", id);
                continue;
            }
            if (drop && strcmp(id, drop) == 0) continue;
            if (add && strcmp(id, add) == 0) there = true;
            jw_key(&w, NULL);
            jw_quoted(&w, id);
        }
    }
    if (add && !there) {
        jw_key(&w, NULL);
        jw_quoted(&w, add);
    }
    if (!(json = jw_end(&w, ']'))) return sm_fail(ctx, "out of memory");
    return sm_state_set_json(ctx, "drivers", json) < 0 ? -1 : 0;
}

static int geocell_fn(sm_ctx *ctx, const sm_value *message, void *udata)
{
    const char *cell = sm_ctx_self(ctx)->id;
    char driver[ID_MAX], ride[ID_MAX], passenger[ID_MAX];
    sm_json msg;

    if (parse_json(message, &msg) || get_str(&msg, "driver", driver, sizeof driver) ||
        get_str(&msg, "ride", ride, sizeof ride) || get_str(&msg, "passenger", passenger, sizeof passenger))
        return sm_ctx_caller(ctx) ? 0 : reject(ctx, "ride/geocell takes messages from drivers and rides");
    if (op_is(&msg, "join") && *driver) return geocell_update(ctx, NULL, driver, false, NULL, 0);
    if (op_is(&msg, "leave") && *driver) return geocell_update(ctx, driver, NULL, false, NULL, 0);
    if (op_is(&msg, "request") && *ride) {
        char first[ID_MAX];
        if (geocell_update(ctx, NULL, NULL, true, first, sizeof first) < 0) return -1;
        if (!first[0]) return send_op(ctx, "ride/ride", ride, "no_driver", "cell", cell, NULL);
        return send_op(ctx, "ride/driver", first, "offer", "ride", ride, "passenger", passenger,
                       "cell", cell, NULL);
    }
    return sm_ctx_caller(ctx) ? 0 : reject(ctx, "ride/geocell: unknown message");
}

/* ---- ride/ride ---- */

struct ride {
    char passenger[ID_MAX], cell[ID_MAX], status[24], driver[ID_MAX];
    int64_t attempts;
    bool exists;
};

static int ride_load(sm_ctx *ctx, struct ride *r)
{
    sm_json st;
    memset(r, 0, sizeof *r);
    if (load_state(ctx, "ride", &st, &r->exists)) return -1;
    if (!r->exists) return 0;
    if (get_str(&st, "passenger", r->passenger, sizeof r->passenger) ||
        get_str(&st, "cell", r->cell, sizeof r->cell) || get_str(&st, "status", r->status, sizeof r->status) ||
        get_str(&st, "driver", r->driver, sizeof r->driver) ||
        sm_json_get_int64(&st, "attempts", &r->attempts) < 0)
        return sm_fail(ctx, "ride/ride: malformed state");
    return 0;
}

static int ride_save(sm_ctx *ctx, const struct ride *r)
{
    struct jw w;
    const char *json;
    jw_begin(&w, ctx, '{');
    jw_str(&w, "passenger", r->passenger);
    jw_str(&w, "cell", r->cell);
    jw_str(&w, "status", r->status);
    jw_str(&w, "driver", r->driver);
    jw_int(&w, "attempts", r->attempts);
    if (!(json = jw_end(&w, '}'))) return sm_fail(ctx, "out of memory");
    return sm_state_set_json(ctx, "ride", json) < 0 ? -1 : 0;
}

/* Sets the status, writes the lifecycle event to the egress. */
static int ride_event(sm_ctx *ctx, struct ride *r, const char *status, const char *event,
                      const char *reason)
{
    struct jw w;
    const char *json;
    snprintf(r->status, sizeof r->status, "%s", status);
    if (ride_save(ctx, r) < 0) return -1;
    jw_begin(&w, ctx, '{');
    jw_str(&w, "event", event);
    jw_str(&w, "ride", sm_ctx_self(ctx)->id);
    jw_str(&w, "passenger", r->passenger);
    jw_str(&w, "cell", r->cell);
    if (r->driver[0]) jw_str(&w, "driver", r->driver);
    if (reason) jw_str(&w, "reason", reason);
    if (!(json = jw_end(&w, '}'))) return sm_fail(ctx, "out of memory");
    return sm_send_egress_json(ctx, EGRESS, json);
}

static int ride_fn(sm_ctx *ctx, const sm_value *message, void *udata)
{
    const struct options *opt = udata;
    const char *me = sm_ctx_self(ctx)->id;
    char driver[ID_MAX];
    struct ride r;
    sm_json msg;

    if (parse_json(message, &msg) || get_str(&msg, "driver", driver, sizeof driver))
        return sm_ctx_caller(ctx) ? 0 : reject(ctx, "ride/ride takes messages from passengers and drivers");
    if (ride_load(ctx, &r)) return -1;

    if (op_is(&msg, "create")) {
        if (r.exists) return 0; /* already created: nothing to redo */
        if (get_str(&msg, "passenger", r.passenger, sizeof r.passenger) ||
            get_str(&msg, "cell", r.cell, sizeof r.cell) || !r.passenger[0] || !r.cell[0])
            return sm_fail(ctx, "ride/ride: malformed create");
        r.attempts = 1;
        if (ride_event(ctx, &r, "requested", "requested", NULL) < 0) return -1;
        return send_op(ctx, "ride/geocell", r.cell, "request", "ride", me, "passenger", r.passenger, NULL);
    }
    if (!r.exists) return 0; /* a message for a ride that never was: ignore */

    if (op_is(&msg, "accept")) {
        if (strcmp(r.status, "requested") != 0) /* too late: let the driver go */
            return send_op(ctx, "ride/driver", driver, "release", "ride", me, NULL);
        snprintf(r.driver, sizeof r.driver, "%s", driver);
        if (ride_event(ctx, &r, "driver_assigned", "driver_assigned", NULL) < 0) return -1;
        if (sm_send_after_json(ctx, opt->pickup_timeout_ms, "ride/ride", me,
                               "{\"op\":\"pickup_timeout\"}", "pickup") < 0)
            return -1;
        return send_op(ctx, "ride/passenger", r.passenger, "assigned", "ride", me, "driver", driver, NULL);
    }
    if (op_is(&msg, "decline")) {
        if (strcmp(r.status, "requested") != 0) return 0;
        if (r.attempts < MAX_ATTEMPTS) {
            r.attempts++;
            if (ride_save(ctx, &r) < 0) return -1;
            return send_op(ctx, "ride/geocell", r.cell, "request", "ride", me, "passenger", r.passenger, NULL);
        }
        /* fall through to no driver */
    } else if (!op_is(&msg, "no_driver")) {
        goto lifecycle;
    }
    if (strcmp(r.status, "requested") != 0) return 0;
    if (ride_event(ctx, &r, "no_driver", "no_driver_available", NULL) < 0) return -1;
    return send_op(ctx, "ride/passenger", r.passenger, "no_driver", "ride", me, NULL);

lifecycle:
    if (op_is(&msg, "started")) {
        if (strcmp(r.status, "driver_assigned") != 0) return 0;
        if (sm_cancel_delayed(ctx, "pickup") < 0) return -1;
        if (ride_event(ctx, &r, "started", "started", NULL) < 0) return -1;
        return send_op(ctx, "ride/passenger", r.passenger, "started", "ride", me, NULL);
    }
    if (op_is(&msg, "completed")) {
        if (strcmp(r.status, "started") != 0) return 0;
        if (ride_event(ctx, &r, "completed", "completed", NULL) < 0) return -1;
        return send_op(ctx, "ride/passenger", r.passenger, "completed", "ride", me, NULL);
    }
    if (op_is(&msg, "pickup_timeout")) {
        if (strcmp(r.status, "driver_assigned") != 0) return 0; /* started meanwhile */
        if (ride_event(ctx, &r, "cancelled", "cancelled", "pickup timeout") < 0) return -1;
        if (send_op(ctx, "ride/driver", r.driver, "release", "ride", me, NULL) < 0) return -1;
        return send_op(ctx, "ride/passenger", r.passenger, "cancelled", "ride", me, NULL);
    }
    return sm_ctx_caller(ctx) ? 0 : reject(ctx, "ride/ride: unknown message");
}

/* ---- ride/passenger ---- */

struct passenger {
    char status[16], ride[ID_MAX], driver[ID_MAX];
    int64_t rides;
};

static int passenger_load(sm_ctx *ctx, struct passenger *p)
{
    sm_json st;
    bool present;
    memset(p, 0, sizeof *p);
    strcpy(p->status, "idle");
    if (load_state(ctx, "passenger", &st, &present)) return -1;
    if (!present) return 0;
    if (get_str(&st, "status", p->status, sizeof p->status) || get_str(&st, "ride", p->ride, sizeof p->ride) ||
        get_str(&st, "driver", p->driver, sizeof p->driver) ||
        sm_json_get_int64(&st, "rides", &p->rides) < 0)
        return sm_fail(ctx, "ride/passenger: malformed state");
    return 0;
}

static int passenger_save(sm_ctx *ctx, const struct passenger *p)
{
    struct jw w;
    const char *json;
    jw_begin(&w, ctx, '{');
    jw_str(&w, "status", p->status);
    jw_str(&w, "ride", p->ride);
    jw_str(&w, "driver", p->driver);
    jw_int(&w, "rides", p->rides);
    if (!(json = jw_end(&w, '}'))) return sm_fail(ctx, "out of memory");
    return sm_state_set_json(ctx, "passenger", json) < 0 ? -1 : 0;
}

/* Replies {"ride", "status"[, "driver"]} to the Call that requested the ride. */
static int passenger_reply(sm_ctx *ctx, const char *ride, const char *status, const char *driver)
{
    struct jw w;
    const char *json;
    jw_begin(&w, ctx, '{');
    jw_str(&w, "ride", ride);
    jw_str(&w, "status", status);
    if (driver) jw_str(&w, "driver", driver);
    if (!(json = jw_end(&w, '}'))) return sm_fail(ctx, "out of memory");
    return sm_reply_json(ctx, json);
}

static int passenger_fn(sm_ctx *ctx, const sm_value *message, void *udata)
{
    const char *me = sm_ctx_self(ctx)->id;
    bool from_ingress = sm_ctx_caller(ctx) == NULL;
    char ride[ID_MAX], driver[ID_MAX], cell[ID_MAX];
    struct passenger p;
    sm_json msg;

    if (parse_json(message, &msg) || get_str(&msg, "ride", ride, sizeof ride) ||
        get_str(&msg, "driver", driver, sizeof driver) || get_str(&msg, "cell", cell, sizeof cell))
        return from_ingress ? reject(ctx, "ride/passenger wants {\"op\": \"request\", \"cell\": CELL}") : 0;
    if (passenger_load(ctx, &p)) return -1;

    if (from_ingress) {
        char *id;
        size_t size;
        if (!op_is(&msg, "request") || !*cell)
            return reject(ctx, "ride/passenger wants {\"op\": \"request\", \"cell\": CELL}");
        if (strcmp(p.status, "idle") != 0)
            return reject(ctx, "passenger %s already has ride %s (%s)", me, p.ride, p.status);
        p.rides++;
        size = strlen(me) + 24;
        if (!(id = sm_ctx_alloc(ctx, size))) return sm_fail(ctx, "out of memory");
        snprintf(id, size, "%s-%" PRId64, me, p.rides);
        if (strlen(id) >= ID_MAX) return reject(ctx, "passenger id too long for a ride id");
        strcpy(p.status, "waiting");
        strcpy(p.ride, id);
        p.driver[0] = '\0';
        if (passenger_save(ctx, &p) < 0) return -1;
        return send_op(ctx, "ride/ride", id, "create", "passenger", me, "cell", cell, NULL);
    }
    if (strcmp(ride, p.ride) != 0) return 0; /* about an old ride */
    if (op_is(&msg, "assigned")) {
        strcpy(p.status, "assigned");
        snprintf(p.driver, sizeof p.driver, "%s", driver);
        if (passenger_save(ctx, &p) < 0) return -1;
        return passenger_reply(ctx, ride, "driver_assigned", driver);
    }
    if (op_is(&msg, "started")) strcpy(p.status, "riding");
    else if (op_is(&msg, "no_driver") || op_is(&msg, "completed") || op_is(&msg, "cancelled")) {
        strcpy(p.status, "idle");
        p.driver[0] = '\0';
        if (!op_is(&msg, "completed")) p.ride[0] = '\0';
    } else {
        return 0;
    }
    if (passenger_save(ctx, &p) < 0) return -1;
    return op_is(&msg, "no_driver") ? passenger_reply(ctx, ride, "no_driver_available", NULL) : 0;
}

/* ---- main ---- */

int main(int argc, char **argv)
{
    static const sm_state_spec driver_state[] = {SM_STATE("driver", SM_TYPE_JSON)};
    static const sm_state_spec geocell_state[] = {SM_STATE("drivers", SM_TYPE_JSON)};
    static const sm_state_spec ride_state[] = {SM_STATE("ride", SM_TYPE_JSON)};
    static const sm_state_spec passenger_state[] = {SM_STATE("passenger", SM_TYPE_JSON)};
    struct options opt = {"unix:/tmp/statemesh-ride.sock", 600000};
    sm_functions *fns = NULL;
    sm_server *srv = NULL;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            opt.listen = argv[++i];
        } else if (strcmp(argv[i], "--pickup-timeout-ms") == 0 && i + 1 < argc) {
            char *end;
            unsigned long long ms = strtoull(argv[++i], &end, 10);
            if (*end || ms < 1 || ms > SM_MAX_DELAY_MS || argv[i][0] == '-') {
                fprintf(stderr, "ride: --pickup-timeout-ms wants 1..%llu milliseconds\n",
                        (unsigned long long)SM_MAX_DELAY_MS);
                return 2;
            }
            opt.pickup_timeout_ms = ms;
        } else {
            fprintf(stderr, "usage: ride [--listen unix:/path.sock|host:port] [--pickup-timeout-ms N]\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }

    fns = sm_functions_create();
    if (!fns || sm_functions_bind(fns, "ride/driver", driver_state, 1, driver_fn, &opt) != SM_OK ||
        sm_functions_bind(fns, "ride/geocell", geocell_state, 1, geocell_fn, &opt) != SM_OK ||
        sm_functions_bind(fns, "ride/ride", ride_state, 1, ride_fn, &opt) != SM_OK ||
        sm_functions_bind(fns, "ride/passenger", passenger_state, 1, passenger_fn, &opt) != SM_OK) {
        fprintf(stderr, "ride: cannot bind the function types\n");
        goto out;
    }
    srv = sm_server_create(fns);
    if (srv && sm_server_listen(srv, opt.listen) == SM_OK && sm_server_run(srv) == SM_OK) rc = 0;
out:
    sm_server_destroy(&srv);
    sm_functions_destroy(&fns);
    return rc;
}
