/*
 * admin — see admin.h.
 *
 * Reads (GetState, Stats, ListDeadLetters, Inspect, ListStuck, Health)
 * answer at once from the store's committed data and the loop's memory.
 * Changes (Skip, Resume, ReplayDeadLetters, DropDeadLetters; the dead
 * letters themselves are deadletter.c's) put their effects in the open
 * checkpoint and hold the call until it is durable (ingress_hold), so an
 * answered action survives kill -9 and an unanswered one may or may not
 * have happened, like any other write.
 */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "bootstrap.h"
#include "clustersp.h"
#include "deadletter.h"
#include "dispatch.h"
#include "grpc/health/v1/health.pb-c.h"
#include "rpc.h"
#include "server.h"
#include "state_admin.h"
#include "spcreate.h"
#include "statemesh/v1/admin.pb-c.h"
#include "statemesh/v1/storage.pb-c.h"
#include "wire.h"

#define STUCK_DEFAULT 1000
#define STUCK_MAX 100000

/* Checks every string field of a request (desc) like the ingress does:
 * valid UTF-8 without NUL. Returns 0, or -1 after answering
 * INVALID_ARGUMENT. */
static int check_strings(struct rpc_call *call, const ProtobufCMessageDescriptor *desc,
                         const uint8_t *req, size_t len)
{
    char why[300];
    if (wire_check_strings(desc, req, len, why, sizeof why) == 0) return 0;
    rpc_call_error(call, RPC_INVALID_ARGUMENT, "invalid request: %s", why);
    return -1;
}

/* Packs resp and holds the call until the open checkpoint, which holds the
 * effects of the action, is durable (force: commit it without waiting for
 * more work). */
static void reply_when_durable(struct server *s, struct rpc_call *call, const ProtobufCMessage *resp,
                               int force)
{
    size_t len;
    uint8_t *buf = rpc_pack(resp, &len);
    ckpt_add_raw(&s->ckpt, ingress_hold(s->ingress, call), buf, len);
    if (force) s->ckpt.forced = 1;
    ckpt_touch(&s->ckpt, rpc_now_ms());
}

/* ---- GetState, Stats, Health ------------------------------------------------ */

struct state_list {
    Statemesh__V1__StateValue **v;
    Statemesh__V1__StoredState **stored;
    size_t n, cap;
    int corrupt;
};

static int collect_state(void *arg, const char *name, const uint8_t *val, size_t len)
{
    struct state_list *l = arg;
    Statemesh__V1__StoredState *st = statemesh__v1__stored_state__unpack(NULL, len, val);
    Statemesh__V1__StateValue *sv;
    if (!st) {
        l->corrupt = 1;
        return 0;
    }
    if (st->expires_at_ms && st->expires_at_ms <= timer_wall_ms()) {   /* state TTL */
        statemesh__v1__stored_state__free_unpacked(st, NULL);
        return 0;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        void *a = realloc(l->v, cap * sizeof *l->v), *b;
        if (!a) abort();
        l->v = a;
        b = realloc(l->stored, cap * sizeof *l->stored);
        if (!b) abort();
        l->stored = b;
        l->cap = cap;
    }
    sv = malloc(sizeof *sv);
    if (!sv) abort();
    statemesh__v1__state_value__init(sv);
    sv->name = strdup(name);
    sv->value = st->value;
    l->v[l->n] = sv;
    l->stored[l->n] = st;
    l->n++;
    return 0;
}

static void on_get_state(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    struct server *s = arg;
    Statemesh__V1__GetStateRequest *r = statemesh__v1__get_state_request__unpack(NULL, len, req);
    Statemesh__V1__GetStateResponse resp = STATEMESH__V1__GET_STATE_RESPONSE__INIT;
    struct state_list l = {0};
    const char *e;
    struct mbox *mb;
    int rc = 0;

    if (!r) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "request is not a valid GetStateRequest");
        return;
    }
    if (!r->address) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "address is missing");
        goto out;
    }
    if (check_strings(call, &statemesh__v1__get_state_request__descriptor, req, len) != 0)
        goto out;
    if ((e = addr_check_type(r->address->type, strlen(r->address->type))) ||
        (e = addr_check_id(r->address->id, strlen(r->address->id))) ||
        (r->name[0] && (e = addr_check_state_name(r->name, strlen(r->name))))) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "%s", e);
        goto out;
    }
    if (fwd_unary(s, call, "/statemesh.v1.Admin/GetState", req, len, r->address->type,
                  r->address->id))
        goto out;                  /* another node owns it (forward.h) */
    if (r->name[0]) {
        uint8_t *val;
        size_t vlen;
        rc = store_get_state(s->store, r->address->type, r->address->id, r->name, &val, &vlen);
        if (rc == 0) {
            collect_state(&l, r->name, val, vlen);
            free(val);
        }
    } else {
        rc = store_scan_states(s->store, r->address->type, r->address->id, collect_state, &l);
    }
    if (rc < 0 || l.corrupt) {
        rpc_call_error(call, RPC_INTERNAL, "cannot read state from the store (see the runtime log)");
        goto out;
    }
    resp.n_values = l.n;
    resp.values = l.v;
    mb = mbox_find(&s->mboxes, r->address->type, r->address->id);
    if (mb) {
        resp.queued_messages = mb->nqueued + mb->nbatch;
        resp.in_flight = mb->state == MBOX_INFLIGHT;
    }
    rpc_call_reply(call, &resp.base);
out:
    for (size_t i = 0; i < l.n; i++) {
        free(l.v[i]->name);
        free(l.v[i]);
        statemesh__v1__stored_state__free_unpacked(l.stored[i], NULL);
    }
    free(l.v);
    free(l.stored);
    statemesh__v1__get_state_request__free_unpacked(r, NULL);
}

static void on_stats(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    struct server *s = arg;
    const struct stats *st = &s->stats;
    int64_t up = 0;
    struct { const char *name; int64_t value; } rows[64];
    Statemesh__V1__Stat stats[64], *sp[64];
    struct store_filter_stats fs;
    Statemesh__V1__StatsResponse resp = STATEMESH__V1__STATS_RESPONSE__INIT;
    size_t n = 0;
    (void)req;
    (void)len;

    for (size_t i = 0; i < s->n_endpoints; i++) up += s->endpoints[i].state == EP_UP;
    store_filter_stats(s->store, &fs);
#define ROW(k, v) rows[n].name = (k), rows[n].value = (int64_t)(v), n++
    ROW("messages_received", st->messages_received);
    ROW("messages_produced", st->messages_produced);
    ROW("messages_delivered", st->messages_delivered);
    ROW("queued_messages", st->queued_messages);
    ROW("recovered_messages", st->recovered_messages);
    ROW("batches_sent", st->batches_sent);
    ROW("batches_failed", st->batches_failed);
    ROW("batches_incomplete", st->batches_incomplete);
    ROW("batches_resent", st->batches_resent);
    ROW("batches_retried", st->batches_retried);
    ROW("invalid_results", st->invalid_results);
    ROW("replies", st->replies);
    ROW("checkpoints", st->checkpoints);
    ROW("checkpoint_ops", st->checkpoint_ops);
    ROW("active_addresses", s->mboxes.count);
    ROW("pending_calls", ingress_pending(s->ingress));
    ROW("endpoints", s->n_endpoints);
    ROW("endpoints_up", up);
    ROW("queued_bytes", st->queued_bytes + (int64_t)s->mboxes.bytes);
    ROW("rejected_overloaded", st->rejected_overloaded);
    ROW("delayed_pending", st->delayed_pending);
    ROW("delayed_fired", st->delayed_fired);
    ROW("delayed_cancelled", st->delayed_cancelled);
    ROW("delayed_dropped", st->delayed_dropped);
    ROW("egress_records", st->egress_records);
    ROW("egress_trimmed", st->egress_trimmed);
    ROW("subscribers", st->subscribers);
    ROW("idempotent_duplicates", st->idempotent_duplicates);
    ROW("idempotency_expired", st->idempotency_expired);
    ROW("states_expired", st->states_expired);
    ROW("send_streams", st->send_streams);
    ROW("dead_letters", st->dead_letters);
    ROW("dead_lettered", st->dead_lettered);
    ROW("addresses_retrying", st->addresses_retrying);
    ROW("addresses_paused", st->addresses_paused);
    ROW("bootstrap_loaded", st->bootstrap_loaded);
    ROW("bootstrap_already_loaded", st->bootstrap_already);
    ROW("spans_exported", st->spans_exported);
    ROW("spans_dropped", st->spans_dropped);
    ROW("state_cache_bytes", s->scache.bytes);
    ROW("state_cache_entries", s->scache.count);
    ROW("state_cache_hits", s->scache.hits);
    ROW("state_cache_misses", s->scache.misses);
    ROW("state_filter_bytes", fs.bytes);
    ROW("state_filter_ready", fs.ready);
    ROW("state_filter_scanned", fs.scanned);
    ROW("state_filter_scan_ms", fs.scan_ms);
    ROW("state_filter_skips", fs.skips);
    if (s->cluster) {
        ROW("forwarded_calls", st->forwarded);
        ROW("forwarding_calls", fwd_pending(s->fwd));
    }
#undef ROW
    for (size_t i = 0; i < n; i++) {
        statemesh__v1__stat__init(&stats[i]);
        stats[i].name = (char *)rows[i].name;
        stats[i].value = rows[i].value;
        sp[i] = &stats[i];
    }
    resp.n_stats = n;
    resp.stats = sp;
    rpc_call_reply(call, &resp.base);
}

static void on_health(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    struct server *s = arg;
    Grpc__Health__V1__HealthCheckRequest *r = grpc__health__v1__health_check_request__unpack(NULL, len, req);
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

    if (!r) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "request is not a valid HealthCheckRequest");
        return;
    }
    if (r->service[0] && strcmp(r->service, "statemesh.v1.Ingress") != 0 &&
        strcmp(r->service, "statemesh.v1.Admin") != 0) {
        rpc_call_error(call, RPC_NOT_FOUND, "unknown service %s", r->service);
    } else {
        resp.status = s->stopping ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
                                      : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        rpc_call_reply(call, &resp.base);
    }
    grpc__health__v1__health_check_request__free_unpacked(r, NULL);
}

/* ---- dead letters: List, Replay, Drop --------------------------------------- */

static void on_list_deadletters(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    struct server *s = arg;
    Statemesh__V1__ListDeadLettersRequest *r;
    Statemesh__V1__ListDeadLettersResponse resp = STATEMESH__V1__LIST_DEAD_LETTERS_RESPONSE__INIT;
    struct dl_page page;

    if (check_strings(call, &statemesh__v1__list_dead_letters_request__descriptor, req, len) != 0)
        return;
    if (!(r = statemesh__v1__list_dead_letters_request__unpack(NULL, len, req))) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "request is not a valid ListDeadLettersRequest");
        return;
    }
    if (dl_list(s, r->type, r->after_id, r->limit, &page) != 0) {
        rpc_call_error(call, RPC_INTERNAL, "cannot read dead letters (see the runtime log)");
    } else {
        resp.n_dead_letters = page.n;
        resp.dead_letters = page.items;
        resp.total = (uint64_t)s->stats.dead_letters;
        rpc_call_reply(call, &resp.base);
    }
    dl_page_cleanup(&page);
    statemesh__v1__list_dead_letters_request__free_unpacked(r, NULL);
}

/* A replayed dead letter goes back to its target like a new message from
 * its original caller (after what is queued there). */
static int requeue(void *arg, const Statemesh__V1__StoredDeadLetter *d)
{
    struct server *s = arg;
    int idx = cfg_match_endpoint(&s->cfg, d->target->type);
    struct msg *m;
    if (idx < 0) return -1;
    m = msg_create(d->caller ? d->caller->type : NULL, d->caller ? d->caller->id : NULL,
                   d->argument->typename_, d->argument->value.data, d->argument->value.len,
                   d->reply_key);
    disp_accept(s, &s->endpoints[idx], d->target->type, d->target->id, m);
    return 0;
}

/* ReplayDeadLetters (replay = 1) or DropDeadLetters. */
static void act_deadletters(struct server *s, struct rpc_call *call, const uint8_t *req, size_t len,
                            int replay)
{
    Statemesh__V1__DeadLetterSelector *sel;
    Statemesh__V1__DeadLetterActionResponse resp = STATEMESH__V1__DEAD_LETTER_ACTION_RESPONSE__INIT;
    uint64_t count = 0, unroutable = 0;
    int rc;

    if (check_strings(call, &statemesh__v1__dead_letter_selector__descriptor, req, len) != 0)
        return;
    if (!(sel = statemesh__v1__dead_letter_selector__unpack(NULL, len, req))) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "request is not a valid DeadLetterSelector");
        return;
    }
    if (!sel->all && sel->n_ids == 0) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "name dead letter ids, or select all");
        goto out;
    }
    if (s->stopping) {
        rpc_call_error(call, RPC_UNAVAILABLE, "statemeshd is shutting down");
        goto out;
    }
    rc = replay ? dl_replay(s, sel, requeue, s, &count, &unroutable) : dl_drop(s, sel, &count);
    if (rc != 0) {
        rpc_call_error(call, RPC_INTERNAL, "cannot read dead letters (see the runtime log)");
        goto out;
    }
    LOG_INFO(&s->log, replay ? "deadletters.replayed" : "deadletters.dropped",
             "count=%llu unroutable=%llu", (unsigned long long)count, (unsigned long long)unroutable);
    resp.count = count;
    reply_when_durable(s, call, &resp.base, 0);
out:
    statemesh__v1__dead_letter_selector__free_unpacked(sel, NULL);
}

static void on_replay_deadletters(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    act_deadletters(arg, call, req, len, 1);
}

static void on_drop_deadletters(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    act_deadletters(arg, call, req, len, 0);
}

/* ---- failure handling: Inspect, ListStuck, Skip, Resume ------------------ */

/* Checks an admin request naming one address (field 1 of desc). Returns 0,
 * or -1 after answering INVALID_ARGUMENT. */
static int check_address(struct rpc_call *call, const ProtobufCMessageDescriptor *desc,
                         const uint8_t *req, size_t len, const Statemesh__V1__Address *a)
{
    const char *e;
    if (check_strings(call, desc, req, len) != 0) return -1;
    if (!a) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "address is missing");
        return -1;
    }
    if ((e = addr_check_type(a->type, strlen(a->type))) ||
        (e = addr_check_id(a->id, strlen(a->id)))) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "invalid address: %s", e);
        return -1;
    }
    return 0;
}

/* Storage for one AddressStatus and what it points to (borrowed from mb). */
struct status_buf {
    Statemesh__V1__AddressStatus st;
    Statemesh__V1__Address addr, caller;
    Statemesh__V1__TypedValue head;
};

static Statemesh__V1__AddressStatus__Phase phase_of(const struct mbox *mb)
{
    switch (mb->state) {
    case MBOX_PAUSED: return STATEMESH__V1__ADDRESS_STATUS__PHASE__PAUSED;
    case MBOX_BACKOFF: return STATEMESH__V1__ADDRESS_STATUS__PHASE__RETRYING;
    case MBOX_INFLIGHT: return STATEMESH__V1__ADDRESS_STATUS__PHASE__IN_FLIGHT;
    default: return mb->nqueued ? STATEMESH__V1__ADDRESS_STATUS__PHASE__QUEUED
                                : STATEMESH__V1__ADDRESS_STATUS__PHASE__IDLE;
    }
}

static void fill_status(struct status_buf *b, const struct mbox *mb)
{
    const struct msg *h = mb->batch ? mb->batch : mb->head;
    statemesh__v1__address_status__init(&b->st);
    statemesh__v1__address__init(&b->addr);
    b->addr.type = (char *)mb->type;
    b->addr.id = (char *)mb->id;
    b->st.address = &b->addr;
    b->st.phase = phase_of(mb);
    b->st.queued_messages = mb->nqueued + mb->nbatch;
    b->st.in_flight_messages = mb->state == MBOX_INFLIGHT ? mb->nbatch : 0;
    b->st.attempts = mb->attempts;
    b->st.max_attempts = (uint32_t)mb->ep->cfg->retry.max_attempts;
    if (mb->fail) {
        b->st.next_retry_at_ms = mb->state == MBOX_BACKOFF ? mb->fail->retry_at_ms : 0;
        b->st.last_error = mb->fail->last_error ? mb->fail->last_error : "";
        b->st.last_error_at_ms = mb->fail->last_error ? mb->fail->last_error_ms : 0;
        b->st.isolating = mb->fail->isolate > 0;
    }
    if (h) {
        statemesh__v1__typed_value__init(&b->head);
        statemesh__v1__address__init(&b->caller);
        b->st.head = &b->head;
        b->st.head_caller = ckpt_msg_fields(h, &b->caller, &b->head);
    }
}

static void on_inspect(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    struct server *s = arg;
    Statemesh__V1__InspectRequest *r = statemesh__v1__inspect_request__unpack(NULL, len, req);
    Statemesh__V1__InspectResponse resp = STATEMESH__V1__INSPECT_RESPONSE__INIT;
    struct status_buf b;
    struct mbox *mb;

    if (!r) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "request is not a valid InspectRequest");
        return;
    }
    if (check_address(call, &statemesh__v1__inspect_request__descriptor, req, len, r->address) == 0 &&
        !fwd_unary(s, call, "/statemesh.v1.Admin/Inspect", req, len, r->address->type,
                   r->address->id)) {
        mb = mbox_find(&s->mboxes, r->address->type, r->address->id);
        if (mb) {
            fill_status(&b, mb);
        } else {               /* nothing queued: IDLE, only the address */
            statemesh__v1__address_status__init(&b.st);
            b.st.address = r->address;
            b.st.max_attempts = 0;
        }
        resp.status = &b.st;
        rpc_call_reply(call, &resp.base);
    }
    statemesh__v1__inspect_request__free_unpacked(r, NULL);
}

struct stuck_list {
    const char *type;
    struct status_buf *bufs;
    Statemesh__V1__AddressStatus **out;
    size_t n, limit;
};

static int collect_stuck(void *arg, struct mbox *mb)
{
    struct stuck_list *l = arg;
    if (mb->state != MBOX_PAUSED && mb->attempts == 0) return 0;
    if (l->type[0] && strcmp(l->type, mb->type) != 0) return 0;
    fill_status(&l->bufs[l->n], mb);
    l->out[l->n] = &l->bufs[l->n].st;
    return ++l->n >= l->limit;
}

static void on_list_stuck(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    struct server *s = arg;
    Statemesh__V1__ListStuckRequest *r = statemesh__v1__list_stuck_request__unpack(NULL, len, req);
    Statemesh__V1__ListStuckResponse resp = STATEMESH__V1__LIST_STUCK_RESPONSE__INIT;
    struct stuck_list l;

    if (!r) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "request is not a valid ListStuckRequest");
        return;
    }
    if (check_strings(call, &statemesh__v1__list_stuck_request__descriptor, req, len) != 0) {
        statemesh__v1__list_stuck_request__free_unpacked(r, NULL);
        return;
    }
    memset(&l, 0, sizeof l);
    l.type = r->type;
    l.limit = r->limit == 0 ? STUCK_DEFAULT : r->limit > STUCK_MAX ? STUCK_MAX : r->limit;
    /* at most as many as there are: retrying + paused addresses */
    if ((int64_t)l.limit > s->stats.addresses_retrying + s->stats.addresses_paused)
        l.limit = (size_t)(s->stats.addresses_retrying + s->stats.addresses_paused);
    if (l.limit) {
        l.bufs = calloc(l.limit, sizeof *l.bufs);
        l.out = calloc(l.limit, sizeof *l.out);
        if (!l.bufs || !l.out) abort();
        mbox_each(&s->mboxes, collect_stuck, &l);
    }
    resp.n_addresses = l.n;
    resp.addresses = l.out;
    resp.retrying = (uint64_t)s->stats.addresses_retrying;
    resp.paused = (uint64_t)s->stats.addresses_paused;
    rpc_call_reply(call, &resp.base);
    free(l.bufs);
    free(l.out);
    statemesh__v1__list_stuck_request__free_unpacked(r, NULL);
}

static const char *state_word(const struct mbox *mb)
{
    switch (mb->state) {
    case MBOX_INFLIGHT: return "its head message is being invoked right now; try again in a moment";
    case MBOX_PARKED: return "its last result is being committed; try again in a moment";
    default: return mb->nqueued ? "it is not retrying or paused (its messages are being processed)"
                                : "it has no queued messages";
    }
}

/* Skip (skip = 1) or Resume. */
static void act(struct server *s, struct rpc_call *call, const uint8_t *req, size_t len, int skip)
{
    Statemesh__V1__AddressRequest *r = statemesh__v1__address_request__unpack(NULL, len, req);
    struct mbox *mb;
    char q[200], why[700];

    if (!r) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "request is not a valid AddressRequest");
        return;
    }
    if (check_address(call, &statemesh__v1__address_request__descriptor, req, len, r->address) != 0)
        goto out;
    if (fwd_unary(s, call, skip ? "/statemesh.v1.Admin/Skip" : "/statemesh.v1.Admin/Resume", req,
                  len, r->address->type, r->address->id))
        goto out;
    if (s->stopping) {
        rpc_call_error(call, RPC_UNAVAILABLE, "statemeshd is shutting down");
        goto out;
    }
    mb = mbox_find(&s->mboxes, r->address->type, r->address->id);
    if (!mb) {
        rpc_call_error(call, RPC_FAILED_PRECONDITION, "%s %s has no queued messages: nothing to %s",
                       r->address->type, r->address->id, skip ? "skip" : "resume");
        goto out;
    }
    if (skip) {
        Statemesh__V1__SkipResponse resp = STATEMESH__V1__SKIP_RESPONSE__INIT;
        snprintf(why, sizeof why, "skipped by an operator after %u failed attempts; last error: %s",
                 mb->attempts, mb->fail && mb->fail->last_error ? mb->fail->last_error : "(none)");
        if (disp_skip(s, mb, why, &resp.dead_letter_id) != 0) {
            rpc_call_error(call, RPC_FAILED_PRECONDITION, "cannot skip %s %s: %s", mb->type, mb->id,
                           state_word(mb));
            goto out;
        }
        LOG_WARN(&s->log, "message.skipped", "type=%s id=%s dead_letter_id=%llu", mb->type,
                 log_quote(q, sizeof q, mb->id), (unsigned long long)resp.dead_letter_id);
        reply_when_durable(s, call, &resp.base, 1);
    } else {
        Statemesh__V1__ResumeResponse resp = STATEMESH__V1__RESUME_RESPONSE__INIT;
        if (disp_resume(s, mb) != 0) {
            rpc_call_error(call, RPC_FAILED_PRECONDITION, "cannot resume %s %s: %s", mb->type,
                           mb->id, state_word(mb));
            goto out;
        }
        reply_when_durable(s, call, &resp.base, 1);
    }
out:
    statemesh__v1__address_request__free_unpacked(r, NULL);
}

static void on_skip(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    act(arg, call, req, len, 1);
}

static void on_resume(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    act(arg, call, req, len, 0);
}

/* ---- registration ----------------------------------------------------------- */

int admin_register_health(struct rpc_server *rpc, struct server *s)
{
    return rpc_server_add_unary(rpc, "/grpc.health.v1.Health/Check", on_health, s);
}

int admin_register(struct rpc_server *rpc, struct server *s)
{
    static const struct {
        const char *method;
        rpc_request_fn fn;
    } methods[] = {
        {"/statemesh.v1.Admin/GetState", on_get_state},
        {"/statemesh.v1.Admin/Stats", on_stats},
        {"/statemesh.v1.Admin/ListDeadLetters", on_list_deadletters},
        {"/statemesh.v1.Admin/ReplayDeadLetters", on_replay_deadletters},
        {"/statemesh.v1.Admin/DropDeadLetters", on_drop_deadletters},
        {"/statemesh.v1.Admin/Inspect", on_inspect},
        {"/statemesh.v1.Admin/ListStuck", on_list_stuck},
        {"/statemesh.v1.Admin/Skip", on_skip},
        {"/statemesh.v1.Admin/Resume", on_resume},
    };
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (rpc_server_add_unary(rpc, methods[i].method, methods[i].fn, s) != 0) return -1;
    if (admin_register_health(rpc, s) != 0) return -1;
    if (sadm_register(rpc, s) != 0) return -1;
    if (cluster_register(rpc, s) != 0) return -1;
    if (clustersp_register(rpc, s) != 0) return -1;
    if (boot_register(rpc, s) != 0) return -1;
    return spcreate_register(rpc, s);
}
