/* endpoint — see endpoint.h for the state diagram and the contract. */
#include "endpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "dispatch.h"
#include "statemesh/v1/function.pb-c.h"
#include "server.h"
#include "wire.h"

#define DESCRIBE_TIMEOUT_MS 2000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define SWEEP_INTERVAL_MS 1000

static void connect_now(void *arg);
static void sweep(void *arg);
static void kick(void *arg);
static void flush_embedded(struct endpoint *ep);
static int start_embedded(struct endpoint *ep);

int ep_init(struct endpoint *ep, struct server *s, const struct cfg_endpoint *cfg, int index)
{
    uint32_t n = (uint32_t)cfg->max_in_flight;
    memset(ep, 0, sizeof *ep);
    ep->srv = s;
    ep->cfg = cfg;
    ep->index = index;
    ep->state = EP_DOWN;
    ep->slots = calloc(n, sizeof *ep->slots);
    ep->free_slots = calloc(n, sizeof *ep->free_slots);
    ep->answers = sm_arena_create();
    if (!ep->slots || !ep->free_slots || !ep->answers) return -1;
    for (uint32_t i = 0; i < n; i++) ep->free_slots[i] = n - 1 - i;
    ep->nfree = n;
    ep->backoff_ms = BACKOFF_MIN_MS;
    if (cfg->mode != CFG_MODE_EMBEDDED) {
        ep->nstreams = cfg->streams > 0 ? cfg->streams : 1;
        ep->streams = calloc((size_t)ep->nstreams, sizeof *ep->streams);
        if (!ep->streams) return -1;
        for (int i = 0; i < ep->nstreams; i++) {
            ep->streams[i].ep = ep;
            ep->streams[i].index = i;
        }
    }
    timer_init(&ep->reconnect, connect_now, ep);
    timer_init(&ep->sweep, sweep, ep);
    timer_init(&ep->kick, kick, ep);
    return 0;
}

static void free_types(struct endpoint *ep)
{
    for (size_t i = 0; i < ep->ntypes; i++) {
        struct ftype *ft = &ep->types[i];
        for (size_t k = 0; k < ft->nspecs; k++) {
            free(ft->spec_names[k]);
            free(ft->spec_types[k]);
        }
        free(ft->spec_names);
        free(ft->spec_types);
        free(ft->spec_ttl_write);
        free(ft->spec_ttl_invoke);
        free(ft->name);
    }
    free(ep->types);
    ep->types = NULL;
    ep->ntypes = 0;
}

void ep_cleanup(struct endpoint *ep)
{
    free_types(ep);
    free(ep->slots);
    free(ep->free_slots);
    free(ep->frame);
    for (int i = 0; i < ep->nstreams; i++) free(ep->streams[i].frame);
    free(ep->streams);
    ep->streams = NULL;
    ep->nstreams = 0;
    ep->slots = NULL;
    ep->free_slots = NULL;
    ep->frame = NULL;
    rpc_channel_destroy(&ep->ch);
    for (int i = 0; i < EP_MAX_RETIRED; i++)   /* idle once ep_closed(); else left to exit */
        if (ep->retired[i] && rpc_channel_calls(ep->retired[i]) == 0)
            rpc_channel_destroy(&ep->retired[i]);
    emb_unload(&ep->module);
    sm_arena_destroy(&ep->answers);
}

struct ftype *ep_find_type(struct endpoint *ep, const char *type)
{
    for (size_t i = 0; i < ep->ntypes; i++)
        if (strcmp(ep->types[i].name, type) == 0) return &ep->types[i];
    return NULL;
}

int ep_rejects_type(struct endpoint *ep, const char *type)
{
    return ep->described && ep_find_type(ep, type) == NULL;
}

void ep_add_specs(struct endpoint *ep, struct ftype *ft, const Statemesh__V1__StateSpec *spec)
{
    size_t n = ft->nspecs + 1;
    char **names = realloc(ft->spec_names, n * sizeof *names);
    char **types;
    uint64_t *w, *v;
    (void)ep;
    if (!names) abort();
    ft->spec_names = names;
    types = realloc(ft->spec_types, n * sizeof *types);
    if (!types) abort();
    ft->spec_types = types;
    w = realloc(ft->spec_ttl_write, n * sizeof *w);
    if (!w) abort();
    ft->spec_ttl_write = w;
    v = realloc(ft->spec_ttl_invoke, n * sizeof *v);
    if (!v) abort();
    ft->spec_ttl_invoke = v;
    ft->spec_names[ft->nspecs] = strdup(spec->name);
    ft->spec_types[ft->nspecs] = strdup(spec->typename_);
    ft->spec_ttl_write[ft->nspecs] = spec->expire_after_write_ms;
    ft->spec_ttl_invoke[ft->nspecs] = spec->expire_after_invoke_ms;
    if (spec->expire_after_invoke_ms) ft->has_invoke_ttl = 1;
    ft->nspecs++;
}

/* ---- slots ---------------------------------------------------------------- */

/* The next stream a batch may go to (round robin over open streams that are
 * not draining and whose frame has room), or -1. */
static int pick_stream(const struct endpoint *ep)
{
    for (int k = 0; k < ep->nstreams; k++) {
        int i = (ep->next_stream + k) % ep->nstreams;
        const struct ep_stream *st = &ep->streams[i];
        if (st->rs && !st->draining && st->frame_len < EP_MAX_FRAME_BYTES) return i;
    }
    return -1;
}

uint64_t ep_reserve(struct endpoint *ep, struct mbox *mb)
{
    uint32_t slot = ep->free_slots[--ep->nfree];
    struct ep_slot *sl = &ep->slots[slot];
    sl->mb = mb;
    sl->gen++;
    sl->deadline_ms = rpc_now_ms() + ep->cfg->invocation_timeout_ms;
    if (ep->srv->metrics) sl->sent_ns = rpc_now_ns();
    sl->stream = -1;
    if (!ep->module) {
        int i = pick_stream(ep);
        sl->stream = i;
        ep->cur_stream = i;
        ep->streams[i].inflight++;
        ep->next_stream = (i + 1) % ep->nstreams;
    }
    ep->inflight++;
    return ((uint64_t)sl->gen << 32) | slot;
}

static void release_slot(struct endpoint *ep, uint32_t slot)
{
    struct ep_slot *sl = &ep->slots[slot];
    if (sl->stream >= 0) {
        struct ep_stream *st = &ep->streams[sl->stream];
        st->inflight--;
        if (st->draining && st->inflight == 0 && st->rs) rpc_stream_cancel(st->rs);
    }
    sl->mb = NULL;
    ep->free_slots[ep->nfree++] = slot;
    ep->inflight--;
}

/* Returns the in-flight batches sent on `stream` (-1: all) to their
 * addresses, to be sent again. */
static void return_batches(struct endpoint *ep, int stream, int failed, const char *why)
{
    uint32_t n = (uint32_t)ep->cfg->max_in_flight;
    for (uint32_t i = 0; i < n && ep->inflight; i++) {
        struct mbox *mb = ep->slots[i].mb;
        if (!mb || (stream >= 0 && ep->slots[i].stream != stream)) continue;
        release_slot(ep, i);
        disp_on_lost(ep->srv, mb, failed, why);
    }
}

static void return_all(struct endpoint *ep, int failed, const char *why)
{
    return_batches(ep, -1, failed, why);
    ep->frame_len = 0;           /* its batches were all in slots */
    for (int i = 0; i < ep->nstreams; i++) ep->streams[i].frame_len = 0;
}

int ep_has_capacity(const struct endpoint *ep)
{
    if (ep->state != EP_UP || ep->nfree == 0) return 0;
    return ep->module ? ep->frame_len < EP_MAX_FRAME_BYTES : pick_stream(ep) >= 0;
}

static void frame_append(uint8_t **frame, size_t *flen, size_t *fcap, const uint8_t *batch,
                         size_t len)
{
    size_t need = *flen + len + 11;
    if (need > *fcap) {
        size_t cap = *fcap ? *fcap : 4096;
        uint8_t *f;
        while (cap < need) cap *= 2;
        f = realloc(*frame, cap);
        if (!f) abort();
        *frame = f;
        *fcap = cap;
    }
    /* ToFunction.batches is field 1, wire type 2: tag, varint length, body. */
    (*frame)[(*flen)++] = 0x0a;
    for (size_t v = len;; v >>= 7) {
        if (v < 0x80) {
            (*frame)[(*flen)++] = (uint8_t)v;
            break;
        }
        (*frame)[(*flen)++] = (uint8_t)(v | 0x80);
    }
    memcpy(*frame + *flen, batch, len);
    *flen += len;
}

/* Makes room for a batch of `len` bytes at the end of a frame, writes its
 * tag and length, and returns where the body goes. */
static uint8_t *frame_reserve(uint8_t **frame, size_t *flen, size_t *fcap, size_t len)
{
    size_t need = *flen + len + 11;
    if (need > *fcap) {
        size_t cap = *fcap ? *fcap : 4096;
        uint8_t *f;
        while (cap < need) cap *= 2;
        f = realloc(*frame, cap);
        if (!f) abort();
        *frame = f;
        *fcap = cap;
    }
    (*frame)[(*flen)++] = 0x0a;          /* ToFunction.batches: field 1, wire type 2 */
    for (size_t v = len;; v >>= 7) {
        if (v < 0x80) {
            (*frame)[(*flen)++] = (uint8_t)v;
            break;
        }
        (*frame)[(*flen)++] = (uint8_t)(v | 0x80);
    }
    *flen += len;
    return *frame + *flen - len;
}

void ep_append_message(struct endpoint *ep, const ProtobufCMessage *req)
{
    size_t len = protobuf_c_message_get_packed_size(req);
    uint8_t *at;
    if (ep->module) {
        at = frame_reserve(&ep->frame, &ep->frame_len, &ep->frame_cap, len);
    } else {
        struct ep_stream *st = &ep->streams[ep->cur_stream];
        at = frame_reserve(&st->frame, &st->frame_len, &st->frame_cap, len);
    }
    protobuf_c_message_pack(req, at);
}

void ep_append(struct endpoint *ep, const uint8_t *batch, size_t len)
{
    struct ep_stream *st;
    if (ep->module) {
        frame_append(&ep->frame, &ep->frame_len, &ep->frame_cap, batch, len);
        return;
    }
    st = &ep->streams[ep->cur_stream];
    frame_append(&st->frame, &st->frame_len, &st->frame_cap, batch, len);
}

static void flush_stream(struct ep_stream *st)
{
    if (!st->frame_len || !st->rs || !rpc_stream_writable(st->rs)) return;
    rpc_stream_send(st->rs, st->frame, st->frame_len);
    st->frame = NULL;
    st->frame_len = st->frame_cap = 0;
}

void ep_flush(struct endpoint *ep)
{
    if (ep->module) {
        flush_embedded(ep);
        return;
    }
    for (int i = 0; i < ep->nstreams; i++) flush_stream(&ep->streams[i]);
}

/* ---- connection ----------------------------------------------------------- */

static void schedule_reconnect(struct endpoint *ep, int64_t delay_ms)
{
    struct server *s = ep->srv;
    if (ep->nopen == 0) ep->state = EP_DOWN;
    if (s->stopping) return;
    timer_start(&s->timers, &ep->reconnect, rpc_now_ms() + delay_ms);
}

static void connect_failed(struct endpoint *ep, const char *why)
{
    char q[600];
    ep->failures++;
    /* Log the first failure and then every 30th, so a missing server is
     * visible without flooding the log. */
    if (ep->failures == 1 || ep->failures % 30 == 0)
        LOG_WARN(&ep->srv->log, "endpoint.unreachable", "target=%s attempts=%u error=%s%s",
                 ep->cfg->target, ep->failures, log_quote(q, sizeof q, why),
                 ep->cfg->tls.on ? " tls=on hint=\"the server's certificate must be signed by "
                                   "tls.ca and name the target; a server that wants a client "
                                   "certificate closes the connection without a good tls.cert\""
                                 : "");
    schedule_reconnect(ep, ep->backoff_ms);
    ep->backoff_ms *= 2;
    if (ep->backoff_ms > BACKOFF_MAX_MS) ep->backoff_ms = BACKOFF_MAX_MS;
}

const char *ep_name(const struct endpoint *ep)
{
    return ep->cfg->target ? ep->cfg->target : ep->cfg->library ? ep->cfg->library : "?";
}

/* One batch's answer, from a stream message or from an embedded module. */
static void deliver_checked(struct endpoint *ep, const Statemesh__V1__BatchResponse *r,
                            const char *invalid);

static void deliver(struct endpoint *ep, const Statemesh__V1__BatchResponse *r)
{
    deliver_checked(ep, r, NULL);
}

/* invalid != NULL: the answer is unusable for that reason (the batch fails). */
static void deliver_checked(struct endpoint *ep, const Statemesh__V1__BatchResponse *r,
                            const char *invalid)
{
    uint32_t nslots = (uint32_t)ep->cfg->max_in_flight;
    uint32_t slot = (uint32_t)(r->batch_id & 0xffffffffu);
    uint32_t gen = (uint32_t)(r->batch_id >> 32);
    struct mbox *mb;

    if (slot >= nslots || !ep->slots[slot].mb || ep->slots[slot].gen != gen) {
        LOG_WARN(&ep->srv->log, "endpoint.unknown_batch", "target=%s batch_id=%llu", ep_name(ep),
                 (unsigned long long)r->batch_id);
        return;
    }
    mb = ep->slots[slot].mb;
    if (ep->srv->metrics)
        metrics_batch_round_trip(ep->srv->metrics, ep->index, rpc_now_ns() - ep->slots[slot].sent_ns);
    release_slot(ep, slot);
    if (invalid) {
        ep->srv->stats.invalid_results++;
        disp_on_lost(ep->srv, mb, 1, invalid);
        return;
    }
    disp_on_response(ep->srv, ep, mb, r);
}

/* Each answer's strings are checked in its own bytes (wire_check_strings:
 * UTF-8, no NUL), so one bad answer fails only its own batch, never the
 * others of the same stream message. Any conforming encoding is accepted
 * (explicit default values, repeated fields split, any field order). */
static void deliver_all(struct endpoint *ep, const Statemesh__V1__FromFunction *f,
                        const uint8_t *data, size_t len)
{
    size_t pos = 0, k = 0, blen;
    const uint8_t *body;
    uint32_t field;
    char why[300], msg[400];

    while (k < f->n_responses && wire_next(data, len, &pos, &field, &body, &blen) == 1) {
        const Statemesh__V1__BatchResponse *r;
        if (field != 1) continue;                  /* field 1: responses, in order */
        r = f->responses[k++];
        if (wire_check_strings(&statemesh__v1__batch_response__descriptor, body, blen, why,
                               sizeof why) != 0) {
            snprintf(msg, sizeof msg, "invalid result: %s", why);
            deliver_checked(ep, r, msg);
        } else {
            deliver(ep, r);
        }
    }
    for (; k < f->n_responses; k++) deliver(ep, f->responses[k]);
}

static void on_message(void *arg, const uint8_t *data, size_t len)
{
    struct ep_stream *st = arg;
    struct endpoint *ep = st->ep;
    struct server *s = ep->srv;
    ProtobufCAllocator pba = wire_arena_allocator(ep->answers);
    Statemesh__V1__FromFunction *f = statemesh__v1__from_function__unpack(&pba, len, data);

    if (!f) {
        sm_arena_reset(ep->answers);
        LOG_ERROR(&s->log, "endpoint.garbage", "target=%s stream=%d bytes=%zu msg=\"answer is not a FromFunction message; resetting the stream\"",
                  ep->cfg->target, st->index, len);
        st->poisoned = 1;
        rpc_stream_cancel(st->rs);
        return;
    }
    deliver_all(ep, f, data, len);
    sm_arena_reset(ep->answers);
}

static void on_writable(void *arg)
{
    flush_stream(arg);
}

static int open_stream(struct ep_stream *st);

static void on_closed(void *arg, int status, const char *details)
{
    struct ep_stream *st = arg;
    struct endpoint *ep = st->ep;
    struct server *s = ep->srv;
    char q[600];
    int failed = st->poisoned, rotated = st->draining && !failed;

    st->rs = NULL;
    st->poisoned = 0;
    st->draining = 0;
    ep->nopen--;
    if (!s->stopping && !rotated)
        LOG_WARN(&s->log, "endpoint.stream_closed", "target=%s stream=%d status=%s details=%s "
                 "inflight=%u streams_open=%d", ep->cfg->target, st->index,
                 rpc_status_name(status), log_quote(q, sizeof q, details), st->inflight, ep->nopen);
    return_batches(ep, st->index, failed, failed ? "function server sent garbage" : "stream closed");
    st->frame_len = 0;           /* its batches were all in slots */
    if (s->stopping) return;
    if (rotated && open_stream(st) == 0) return;
    if (ep->nopen == 0) {
        schedule_reconnect(ep, failed ? ep->backoff_ms : BACKOFF_MIN_MS);
        if (failed && ep->backoff_ms < BACKOFF_MAX_MS) ep->backoff_ms *= 2;
    } else if (!timer_armed(&ep->reconnect) && !ep->describe_pending) {
        /* Others still serve: re-Describe, then reopen the missing streams. */
        timer_start(&s->timers, &ep->reconnect, rpc_now_ms() + BACKOFF_MIN_MS);
    }
}

static int open_stream(struct ep_stream *st)
{
    static const struct rpc_stream_callbacks cb = {on_message, on_writable, on_closed};
    struct endpoint *ep = st->ep;
    if (rpc_stream_open(&st->rs, ep->ch, "/statemesh.v1.FunctionService/Invoke", &cb, st) != 0) {
        st->rs = NULL;
        return -1;
    }
    st->opened_ms = rpc_now_ms();
    st->draining = 0;
    ep->nopen++;
    return 0;
}

static const char *check_describe(struct endpoint *ep, const Statemesh__V1__DescribeResponse *d,
                                  char *why, size_t whylen)
{
    for (size_t i = 0; i < d->n_functions; i++) {
        const Statemesh__V1__FunctionSpec *fs = d->functions[i];
        const char *e = addr_check_type(fs->type, strlen(fs->type));
        if (e) {
            snprintf(why, whylen, "Describe lists an invalid function type: %s", e);
            return why;
        }
        for (size_t k = 0; k < fs->n_states; k++) {
            e = addr_check_state_name(fs->states[k]->name, strlen(fs->states[k]->name));
            if (e || !fs->states[k]->typename_[0]) {
                snprintf(why, whylen, "Describe lists an invalid state spec for %s: %s", fs->type,
                         e ? e : "empty typename");
                return why;
            }
            if (fs->states[k]->expire_after_write_ms && fs->states[k]->expire_after_invoke_ms) {
                snprintf(why, whylen, "Describe: state %s of %s sets both expire_after_write_ms "
                         "and expire_after_invoke_ms; at most one may be set",
                         fs->states[k]->name, fs->type);
                return why;
            }
        }
    }
    (void)ep;
    return NULL;
}

/* Replaces the served types with those of a Describe answer that this
 * endpoint is routed (others are logged and ignored); `list` gets their
 * names, comma-separated, for the log. */
static void install_types(struct endpoint *ep, const Statemesh__V1__DescribeResponse *d,
                          char *list, size_t listlen)
{
    struct server *s = ep->srv;
    size_t used = 0;

    free_types(ep);
    list[0] = '\0';
    ep->types = calloc(d->n_functions + 1, sizeof *ep->types);
    if (!ep->types) abort();
    for (size_t i = 0; i < d->n_functions; i++) {
        const Statemesh__V1__FunctionSpec *fs = d->functions[i];
        struct ftype *ft;
        if (!addr_pattern_match(ep->cfg->functions, fs->type) ||
            cfg_match_endpoint(&s->cfg, fs->type) != ep->index) {
            LOG_WARN(&s->log, "endpoint.type_ignored", "target=%s type=%s msg=\"routed to another endpoint by the config\"",
                     ep_name(ep), fs->type);
            continue;
        }
        ft = &ep->types[ep->ntypes++];
        ft->name = strdup(fs->type);
        for (size_t k = 0; k < fs->n_states; k++)
            ep_add_specs(ep, ft, fs->states[k]);
        if (used + strlen(fs->type) + 2 < listlen)
            used += (size_t)snprintf(list + used, listlen - used, "%s%s", used ? "," : "",
                                     fs->type);
    }
    ep->described = 1;
}

static void on_describe(void *arg, int status, const char *details, const uint8_t *resp,
                        size_t len)
{
    struct endpoint *ep = arg;
    struct server *s = ep->srv;
    Statemesh__V1__DescribeResponse *d;
    char why[600], list[1024];
    const char *e;
    int opened = 0, was_up = ep->state == EP_UP;

    ep->describe_pending = 0;
    if (s->stopping) {
        if (ep->nopen == 0) ep->state = EP_DOWN;
        return;
    }
    if (status != RPC_OK) {
        snprintf(why, sizeof why, "Describe: %s: %s", rpc_status_name(status), details);
        connect_failed(ep, why);
        return;
    }
    d = statemesh__v1__describe_response__unpack(NULL, len, resp);
    if (!d) {
        connect_failed(ep, "Describe answer is not a DescribeResponse");
        return;
    }
    if ((e = check_describe(ep, d, why, sizeof why)) != NULL) {
        statemesh__v1__describe_response__free_unpacked(d, NULL);
        connect_failed(ep, e);
        return;
    }
    install_types(ep, d, list, sizeof list);
    statemesh__v1__describe_response__free_unpacked(d, NULL);

    for (int i = 0; i < ep->nstreams; i++)
        if (!ep->streams[i].rs && open_stream(&ep->streams[i]) == 0) opened++;
    if (ep->nopen == 0) {
        connect_failed(ep, "cannot open the Invoke stream");
        return;
    }
    ep->state = EP_UP;
    if (!was_up)
        LOG_INFO(&s->log, "endpoint.up", "target=%s types=%s streams=%d after_attempts=%u",
                 ep->cfg->target, list[0] ? list : "none", ep->nopen, ep->failures + 1);
    else if (opened)
        LOG_INFO(&s->log, "endpoint.streams_reopened", "target=%s types=%s streams=%d",
                 ep->cfg->target, list[0] ? list : "none", ep->nopen);
    ep->failures = 0;
    ep->backoff_ms = BACKOFF_MIN_MS;
}

static void connect_now(void *arg)
{
    struct endpoint *ep = arg;
    Statemesh__V1__DescribeRequest req = STATEMESH__V1__DESCRIBE_REQUEST__INIT;
    if (ep->srv->stopping || ep->describe_pending) return;
    if (ep->state == EP_UP && ep->nopen == ep->nstreams) return;
    if (ep->state == EP_DOWN) ep->state = EP_DESCRIBING;
    if (rpc_unary_start(ep->ch, "/statemesh.v1.FunctionService/Describe", &req.base,
                        DESCRIBE_TIMEOUT_MS, on_describe, ep) != 0) {
        connect_failed(ep, "cannot start Describe");
        return;
    }
    ep->describe_pending = 1;
}

/* Timeouts are noticed within a quarter of their length (at most 1 s late). */
static int64_t sweep_interval(const struct endpoint *ep)
{
    int64_t q = ep->cfg->invocation_timeout_ms / 4;
    return q < SWEEP_INTERVAL_MS ? (q > 10 ? q : 10) : SWEEP_INTERVAL_MS;
}

/* Remote mode: drains the oldest stream past EP_STREAM_MAX_AGE_MS (one at a
 * time, only while all are open) so that a reopened stream can land on a
 * backend that appeared since. */
static void rotate(struct endpoint *ep, int64_t now)
{
    struct ep_stream *due = NULL;
    if (ep->nstreams < 2 || ep->nopen < ep->nstreams) return;
    for (int i = 0; i < ep->nstreams; i++) {
        struct ep_stream *st = &ep->streams[i];
        int64_t age = st->rotations ? EP_STREAM_MAX_AGE_MS : EP_STREAM_FIRST_AGE_MS;
        if (st->draining) return;
        if (now - st->opened_ms >= age && (!due || st->opened_ms < due->opened_ms)) due = st;
    }
    if (!due) return;
    due->draining = 1;
    due->rotations++;
    LOG_DEBUG(&ep->srv->log, "endpoint.stream_rotate", "target=%s stream=%d inflight=%u",
              ep->cfg->target, due->index, due->inflight);
    if (due->inflight == 0) rpc_stream_cancel(due->rs);
}

static void sweep(void *arg)
{
    struct endpoint *ep = arg;
    struct server *s = ep->srv;
    uint32_t n = (uint32_t)ep->cfg->max_in_flight;
    int64_t now = rpc_now_ms();
    char why[128];

    for (int i = 0; i < EP_MAX_RETIRED; i++)
        if (ep->retired[i] && rpc_channel_calls(ep->retired[i]) == 0)
            rpc_channel_destroy(&ep->retired[i]);

    for (uint32_t i = 0; i < n && ep->inflight; i++) {
        struct mbox *mb = ep->slots[i].mb;
        if (!mb || ep->slots[i].deadline_ms > now) continue;
        release_slot(ep, i);
        snprintf(why, sizeof why, "no answer within %d ms (invocation_timeout_ms)",
                 ep->cfg->invocation_timeout_ms);
        disp_on_lost(s, mb, 1, why);
    }
    if (ep->cfg->mode == CFG_MODE_REMOTE) rotate(ep, now);
    if (!s->stopping) timer_start(&s->timers, &ep->sweep, now + sweep_interval(ep));
}

int ep_start(struct endpoint *ep)
{
    struct server *s = ep->srv;
    struct rpc_channel_options co = {ep->cfg->mode == CFG_MODE_REMOTE, ep->cfg->keepalive_ms, NULL};
    int rc;

    if (ep->cfg->mode == CFG_MODE_EMBEDDED) return start_embedded(ep);
    /* TLS (tls.h): the files were checked at config load; read them again
     * here, as they are now. */
    if (ep->cfg->tls.on &&
        !(co.creds = tls_channel_credentials(&ep->cfg->tls, ep->error, sizeof ep->error))) {
        char q[700];
        LOG_ERROR(&s->log, "endpoint.tls", "target=%s error=%s", ep->cfg->target,
                  log_quote(q, sizeof q, ep->error));
        return -1;
    }
    rc = rpc_channel_create(&ep->ch, &s->loop, ep->cfg->target, &co);
    if (co.creds) grpc_channel_credentials_release(co.creds);
    if (rc != 0) {
        LOG_ERROR(&s->log, "endpoint.bad_target", "target=%s", ep->cfg->target);
        return -1;
    }
    timer_start(&s->timers, &ep->sweep, rpc_now_ms() + sweep_interval(ep));
    connect_now(ep);
    return 0;
}

int ep_reload_tls(struct endpoint *ep, char *err, size_t errlen)
{
    struct server *s = ep->srv;
    struct rpc_channel_options co = {ep->cfg->mode == CFG_MODE_REMOTE, ep->cfg->keepalive_ms, NULL};
    struct rpc_channel *fresh = NULL;
    int slot = -1, rc;

    if (!ep->cfg->tls.on || !ep->ch) return 0;
    for (int i = 0; i < EP_MAX_RETIRED; i++) {
        if (ep->retired[i] && rpc_channel_calls(ep->retired[i]) == 0)
            rpc_channel_destroy(&ep->retired[i]);
        if (!ep->retired[i] && slot < 0) slot = i;
    }
    if (slot < 0) {
        snprintf(err, errlen, "%d earlier connections still carry streams; try again once "
                 "they are closed", EP_MAX_RETIRED);
        return -1;
    }
    if (!(co.creds = tls_channel_credentials(&ep->cfg->tls, err, errlen))) return -1;
    rc = rpc_channel_create(&fresh, &s->loop, ep->cfg->target, &co);
    grpc_channel_credentials_release(co.creds);
    if (rc != 0) {
        snprintf(err, errlen, "cannot create a channel to %s", ep->cfg->target);
        return -1;
    }
    ep->retired[slot] = ep->ch;
    ep->ch = fresh;
    return 0;
}

void ep_stop(struct endpoint *ep)
{
    struct server *s = ep->srv;
    timer_stop(&s->timers, &ep->reconnect);
    timer_stop(&s->timers, &ep->sweep);
    timer_stop(&s->timers, &ep->kick);
    for (int i = 0; i < ep->nstreams; i++)
        if (ep->streams[i].rs) rpc_stream_cancel(ep->streams[i].rs);
}

int ep_closed(const struct endpoint *ep)
{
    for (int i = 0; i < ep->nstreams; i++)
        if (ep->streams[i].rs) return 0;
    return !ep->describe_pending;
}

/* ---- embedded mode (runtime/embedded.h) ------------------------------------ */

static void kick(void *arg)
{
    (void)arg;   /* being due was the point: the loop did not sleep */
}

/* A batch the module could not answer: it goes back to its address. */
static void lose(struct endpoint *ep, uint64_t batch_id, const char *why)
{
    uint32_t slot = (uint32_t)(batch_id & 0xffffffffu);
    uint32_t gen = (uint32_t)(batch_id >> 32);
    struct mbox *mb;

    if (slot >= (uint32_t)ep->cfg->max_in_flight || !ep->slots[slot].mb ||
        ep->slots[slot].gen != gen)
        return;
    mb = ep->slots[slot].mb;
    release_slot(ep, slot);
    disp_on_lost(ep->srv, mb, 1, why);
}

static void embedded_answer(void *arg, uint64_t batch_id, const Statemesh__V1__BatchResponse *r,
                            const char *why)
{
    struct endpoint *ep = arg;
    if (r) deliver(ep, r);
    else lose(ep, batch_id, why);
}

static void flush_embedded(struct endpoint *ep)
{
    struct server *s = ep->srv;
    uint8_t *frame = ep->frame;
    size_t len = ep->frame_len, cap = ep->frame_cap;

    if (!len) return;
    /* Detach the frame while the module runs, so nothing the answers cause
     * can write into it; keep the buffer for the next frame. */
    ep->frame = NULL;
    ep->frame_len = ep->frame_cap = 0;
    if (emb_process(ep->module, frame, len, embedded_answer, ep) != 0) {
        LOG_ERROR(&s->log, "endpoint.embedded_frame", "library=%s bytes=%zu msg=\"the module could not read the frame; its batches are retried\"",
                  ep->cfg->library, len);
        return_all(ep, 1, "embedded module could not read the frame");
    }
    if (ep->frame == NULL) {
        ep->frame = frame;
        ep->frame_cap = cap;
        ep->frame_len = 0;
    } else {
        free(frame);
    }
    timer_start(&s->timers, &ep->kick, rpc_now_ms());
}

static int start_embedded(struct endpoint *ep)
{
    struct server *s = ep->srv;
    const Statemesh__V1__DescribeResponse *d;
    char why[600], list[1024], q[700];
    const char *e;

    if (emb_load(&ep->module, ep->cfg->library, ep->error, sizeof ep->error) != 0) {
        LOG_ERROR(&s->log, "endpoint.embedded_load", "library=%s error=%s", ep->cfg->library,
                  log_quote(q, sizeof q, ep->error));
        return -1;
    }
    d = emb_describe(ep->module);
    e = d ? check_describe(ep, d, why, sizeof why) : "out of memory while describing the module";
    if (e) {
        snprintf(ep->error, sizeof ep->error, "embedded module %s: %s", ep->cfg->library, e);
        LOG_ERROR(&s->log, "endpoint.embedded_load", "library=%s error=%s", ep->cfg->library,
                  log_quote(q, sizeof q, ep->error));
        emb_unload(&ep->module);
        return -1;
    }
    install_types(ep, d, list, sizeof list);
    ep->state = EP_UP;
    LOG_INFO(&s->log, "endpoint.up", "mode=embedded library=%s types=%s", ep->cfg->library,
             list[0] ? list : "none");
    return 0;
}
