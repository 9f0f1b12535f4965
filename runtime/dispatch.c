/*
 * dispatch — see dispatch.h.
 *
 * The life of an address (struct mbox), one batch in flight at a time:
 *
 *             disp_accept / disp_recover
 *   (absent) ---------------------------> IDLE --push ready--> READY
 *                                                                |
 *                          disp_run: take <= max_batch (isolating: 1)
 *                                                                v
 *   READY <--incomplete (specs added)------------------------ INFLIGHT
 *   READY <--stream lost: batch back at the head------------/ | | |
 *   READY <--failed, >1 message: isolate them (one at a time)-/  | |
 *   BACKOFF <--failed, 1 message: attempts++ ------------------/  |
 *      | retry timer (endpoint backoff)                           | result
 *      v            or resume                                     v
 *    READY                                PARKED (effects in the open checkpoint)
 *      ^                                                          ^     |
 *      | resume      attempts = max_attempts:                     |     |
 *   PAUSED <-------- on_exhausted = pause (P key)     dead_letter,|     |
 *      |                                           or skip -------+     |
 *      +--skip (head to dead letters)-----------------------------+     |
 *                        ckpt_commit, then the loop (main.c) -> disp_unpark
 *                                   queue non-empty: READY;  empty: removed
 *
 * Operator state writes (disp_state_op) are applied in any state but
 * INFLIGHT; an INFLIGHT address keeps them (mb->ops) until its batch is
 * answered, failed or lost, so they never overlap an invocation.
 *
 * New messages for an address in any state are appended to its queue; only
 * IDLE addresses move to READY on arrival, so a message arriving while a batch
 * is in flight waits and goes out with the next batch (guarantee 1). Parking
 * until the checkpoint commits means the next batch reads committed state
 * from the store, so no state overlay is needed.
 */
#include "dispatch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "deadletter.h"
#include "scache.h"
#include "endpoint.h"
#include "server.h"
#include "statemesh/v1/admin.pb-c.h"
#include "statemesh/v1/storage.pb-c.h"
#include "store.h"

#define RETRY_INITIAL_MS 100
#define RETRY_MAX_MS 10000

static void make_ready(struct mbox *mb)
{
    mb->state = MBOX_READY;
    mbox_list_push(&mb->ep->ready, mb);
}

static void on_retry_timer(void *arg)
{
    struct mbox *mb = arg;
    if (mb->state == MBOX_BACKOFF) make_ready(mb);
}

static struct mbox *enqueue(struct server *s, struct endpoint *ep, const char *type,
                            const char *id, struct msg *m)
{
    struct mbox *mb = mbox_get(&s->mboxes, type, id, ep);
    if (m->trace) m->trace->enqueued_ns = trace_now_ns();
    mbox_push(mb, m);
    s->stats.queued_messages++;
    s->stats.queued_bytes += (int64_t)msg_footprint(m);
    if (mb->state == MBOX_IDLE) make_ready(mb);
    return mb;
}

void disp_accept(struct server *s, struct endpoint *ep, const char *type, const char *id,
                 struct msg *m)
{
    int64_t now = rpc_now_ms();
    m->seq = s->next_seq++;
    ckpt_touch(&s->ckpt, now);
    ckpt_pending_add(&s->ckpt, m, enqueue(s, ep, type, id, m), now);
}

void disp_recover(struct server *s, struct endpoint *ep, const char *type, const char *id,
                  struct msg *m)
{
    if (m->seq >= s->next_seq) s->next_seq = m->seq + 1;
    enqueue(s, ep, type, id, m);
}

/* ---- failures ------------------------------------------------------------
 *
 * A failed batch (failure answer, invalid result, timeout, garbage) is
 * handled by fail_batch():
 *   - several messages: none of them is blamed yet. They go back to the head
 *     of the queue and the next `isolate` of them are sent one at a time, at
 *     once, so the ones before the failing message are applied and the
 *     failing one is found (guarantee 7);
 *   - one message: it is the failing one. attempts++, the error is kept for
 *     Inspect, and it is retried after the endpoint's backoff; the messages
 *     behind it wait (per-sender order). After retry.max_attempts it goes to
 *     dead letters alone (on_exhausted = dead_letter), or the address pauses
 *     (on_exhausted = pause) until an operator runs skip or resume.
 * The counters addresses_retrying (attempts > 0, not paused) and
 * addresses_paused follow these transitions.
 */

static void set_error(struct mbox *mb, const char *why)
{
    struct mbox_fail *f = mbox_fail(mb);
    free(f->last_error);
    f->last_error = strdup(why);
    if (!f->last_error) abort();
    f->last_error_ms = timer_wall_ms();
}

/* The head message is no longer failing (applied, buried, skipped). */
static void clear_failure(struct server *s, struct mbox *mb)
{
    if (mb->attempts) {
        if (mb->state != MBOX_PAUSED) s->stats.addresses_retrying--;
        mb->attempts = 0;
    }
    if (mb->fail) {
        free(mb->fail->last_error);
        mb->fail->last_error = NULL;
        mb->fail->retry_at_ms = 0;
    }
}

/* Writes the pause record of mb into the open checkpoint. */
static void put_pause(struct server *s, struct mbox *mb)
{
    Statemesh__V1__StoredPause p = STATEMESH__V1__STORED_PAUSE__INIT;
    uint8_t *buf;
    size_t len;
    p.error = mb->fail && mb->fail->last_error ? mb->fail->last_error : "";
    p.attempts = mb->attempts;
    p.paused_at_ms = timer_wall_ms();
    buf = rpc_pack(&p.base, &len);
    store_batch_put_pause(s->ckpt.batch, mb->type, mb->id, buf, len);
    free(buf);
    ckpt_touch(&s->ckpt, rpc_now_ms());
}

static void pause_address(struct server *s, struct mbox *mb, const char *why)
{
    char q[600];
    mbox_return_batch(mb);
    s->stats.addresses_retrying--;
    s->stats.addresses_paused++;
    mb->state = MBOX_PAUSED;
    put_pause(s, mb);
    LOG_ERROR(&s->log, "address.paused", "type=%s id=%s attempts=%u reason=%s msg=\"retries "
              "exhausted; the address waits for 'statemesh skip' or 'statemesh resume'\"",
              mb->type, log_quote(q, 120, mb->id), mb->attempts,
              log_quote(q + 120, sizeof q - 120, why));
}

/* " trace_id=<32 hex>" for log lines about a traced message, else "". */
static const char *trace_log(const struct msg *m, char buf[48])
{
    buf[0] = '\0';
    if (m && m->trace) {
        memcpy(buf, " trace_id=", 10);
        trace_id_hex(m->trace->trace_id, buf + 10);
    }
    return buf;
}

static void fail_batch(struct server *s, struct mbox *mb, const char *why)
{
    const struct cfg_retry *rp = &mb->ep->cfg->retry;
    double d = rp->initial_backoff_ms > 0 ? rp->initial_backoff_ms : RETRY_INITIAL_MS;
    double max = rp->max_backoff_ms > 0 ? rp->max_backoff_ms : RETRY_MAX_MS;
    int64_t delay;
    char q[600], tl[48];

    s->stats.batches_failed++;
    set_error(mb, why);
    if (mb->nbatch > 1) {
        mbox_fail(mb)->isolate = mb->nbatch;
        LOG_WARN(&s->log, "batch.isolate", "type=%s id=%s messages=%u reason=%s msg=\"sending "
                 "them one at a time to find the failing one\"", mb->type,
                 log_quote(q, 120, mb->id), mb->nbatch, log_quote(q + 120, sizeof q - 120, why));
        mbox_return_batch(mb);
        s->stats.batches_retried++;
        make_ready(mb);
        return;
    }
    if (mb->attempts++ == 0) s->stats.addresses_retrying++;
    if (rp->max_attempts > 0 && mb->attempts >= (uint32_t)rp->max_attempts) {
        if (mb->fail) mb->fail->isolate = 0;
        if (rp->pause_on_exhausted) {
            pause_address(s, mb, why);
            return;
        }
        dl_bury(s, mb, why);
        clear_failure(s, mb);
        return;
    }
    mbox_return_batch(mb);
    s->stats.batches_retried++;
    for (uint32_t i = 1; i < mb->attempts && d < max; i++) d *= rp->multiplier > 1.0 ? rp->multiplier : 2.0;
    delay = (int64_t)(d < max ? d : max);
    LOG_WARN(&s->log, "message.retry", "type=%s id=%s attempt=%u max_attempts=%d retry_in_ms=%lld "
             "reason=%s%s", mb->type, log_quote(q, 120, mb->id), mb->attempts, rp->max_attempts,
             (long long)delay, log_quote(q + 120, sizeof q - 120, why), trace_log(mb->head, tl));
    mb->state = MBOX_BACKOFF;
    mb->fail->retry_at_ms = timer_wall_ms() + delay;
    mb->retry.fn = on_retry_timer;
    mb->retry.arg = mb;
    timer_start(&s->timers, &mb->retry, rpc_now_ms() + delay);
}

static void on_lost(struct server *s, struct mbox *mb, int failed, const char *why)
{
    if (failed) {
        fail_batch(s, mb, why);
        return;
    }
    mbox_return_batch(mb);
    s->stats.batches_resent++;
    make_ready(mb);
}

int disp_skip(struct server *s, struct mbox *mb, const char *why, uint64_t *dead_letter_id)
{
    if (mb->state != MBOX_PAUSED && mb->state != MBOX_BACKOFF) return -1;
    if (mb->state == MBOX_BACKOFF) timer_stop(&s->timers, &mb->retry);
    else {
        store_batch_delete_pause(s->ckpt.batch, mb->type, mb->id);
        s->stats.addresses_paused--;
        s->stats.addresses_retrying++;      /* clear_failure below takes it off */
    }
    mb->state = MBOX_INFLIGHT;
    mbox_take_batch(mb, 1);
    *dead_letter_id = s->next_seq;
    dl_bury(s, mb, why);                    /* parks mb until the checkpoint */
    clear_failure(s, mb);
    if (mb->fail) mb->fail->isolate = 0;
    return 0;
}

int disp_resume(struct server *s, struct mbox *mb)
{
    char q[200];
    if (mb->state == MBOX_PAUSED) {
        store_batch_delete_pause(s->ckpt.batch, mb->type, mb->id);
        ckpt_touch(&s->ckpt, rpc_now_ms());
        s->stats.addresses_paused--;
        s->stats.addresses_retrying++;
    } else if (mb->state == MBOX_BACKOFF) {
        timer_stop(&s->timers, &mb->retry);
    } else {
        return -1;
    }
    LOG_INFO(&s->log, "address.resumed", "type=%s id=%s attempts=%u", mb->type,
             log_quote(q, sizeof q, mb->id), mb->attempts);
    mb->state = MBOX_BACKOFF;               /* for clear_failure's accounting */
    clear_failure(s, mb);
    make_ready(mb);
    return 0;
}

void disp_recover_pause(struct server *s, struct endpoint *ep, const char *type, const char *id,
                        const char *error, uint32_t attempts)
{
    struct mbox *mb = mbox_get(&s->mboxes, type, id, ep);
    if (mb->state == MBOX_PAUSED) return;
    mb->state = MBOX_PAUSED;               /* disp_recover queues without making it ready */
    mb->attempts = attempts ? attempts : 1;
    set_error(mb, error);
    s->stats.addresses_paused++;
}

static int drop_empty_pause(void *arg, struct mbox *mb)
{
    struct mbox **list = arg;
    if (mb->state == MBOX_PAUSED && mb->nqueued == 0) {
        mb->lnext = *list;
        *list = mb;
    }
    return 0;
}

void disp_recover_done(struct server *s)
{
    struct mbox *empty = NULL, *next;
    mbox_each(&s->mboxes, drop_empty_pause, &empty);
    for (; empty; empty = next) {
        next = empty->lnext;
        empty->lnext = NULL;
        store_batch_delete_pause(s->ckpt.batch, empty->type, empty->id);  /* nothing to hold */
        ckpt_touch(&s->ckpt, rpc_now_ms());
        s->stats.addresses_paused--;
        empty->state = MBOX_IDLE;
        mbox_remove(&s->mboxes, empty);
    }
}

void disp_unpark(struct server *s, struct mbox *mb)
{
    if (mb->nqueued) {
        make_ready(mb);
    } else {
        mb->state = MBOX_IDLE;
        mbox_remove(&s->mboxes, mb);
    }
}

/* ---- building batches ---------------------------------------------------- */

struct batch_build {
    Statemesh__V1__BatchRequest req;
    Statemesh__V1__Address target;
    Statemesh__V1__StateValue *sv, **svp;   /* in s->scratch */
    Statemesh__V1__TypedValue *tv;     /* values point into the state cache */
    size_t nstate;
};

#define GROW(p, cap_needed)                                                   \
    do {                                                                      \
        void *np_ = realloc((p), (cap_needed) * sizeof *(p));                 \
        if (!np_) abort();                                                    \
        (p) = np_;                                                            \
    } while (0)

static void scratch_states(struct disp_scratch *sc, size_t n)
{
    if (n <= sc->cap_state) return;
    GROW(sc->sv, n);
    GROW(sc->svp, n);
    GROW(sc->tv, n);
    sc->cap_state = n;
}

static void scratch_invocations(struct disp_scratch *sc, size_t n)
{
    if (n <= sc->cap_inv) return;
    GROW(sc->inv, n);
    GROW(sc->invp, n);
    GROW(sc->callers, n);
    GROW(sc->args, n);
    GROW(sc->msgs, n);
    sc->cap_inv = n;
}

void disp_cleanup(struct server *s)
{
    struct disp_scratch *sc = &s->scratch;
    free(sc->tp);
    free(sc->sv);
    free(sc->svp);
    free(sc->tv);
    free(sc->inv);
    free(sc->invp);
    free(sc->callers);
    free(sc->args);
    free(sc->msgs);
    memset(sc, 0, sizeof *sc);
}

/* The latest value of one state of an address: from the state cache (which
 * holds uncommitted writes), else from the store, then cached. Returns 0
 * with *v filled (v->typename NULL: absent), or -1 with `why` set. */
static int state_lookup(struct server *s, const char *type, const char *id, const char *name,
                        struct sc_value *v, char *why, size_t whylen)
{
    Statemesh__V1__StoredState *st;
    struct sc_value nv = {NULL, NULL, 0, 0};
    uint8_t *val;
    size_t len;
    int rc;

    if (scache_get(&s->scache, type, id, name, v)) return 0;
    rc = store_get_state(s->store, type, id, name, &val, &len);
    if (rc < 0) {
        snprintf(why, whylen, "cannot read state '%s' from the store", name);
        return -1;
    }
    if (rc == 0) {
        st = statemesh__v1__stored_state__unpack(NULL, len, val);
        free(val);
        if (!st) {
            snprintf(why, whylen, "stored state '%s' is corrupt", name);
            return -1;
        }
        if (st->value) {
            nv.typename = st->value->typename_;
            nv.data = st->value->value.data;
            nv.len = st->value->value.len;
            nv.expires_at_ms = st->expires_at_ms;
        }
        scache_set(&s->scache, type, id, name, &nv, 0);
        statemesh__v1__stored_state__free_unpacked(st, NULL);
    } else {
        scache_set(&s->scache, type, id, name, &nv, 0);
    }
    if (!scache_get(&s->scache, type, id, name, v)) {
        snprintf(why, whylen, "state cache lost '%s'", name);
        return -1;
    }
    return 0;
}

/* Reads the declared state of mb. Returns 0, or -1 with `why` set. */
static int read_state(struct server *s, struct mbox *mb, const struct ftype *ft,
                      struct batch_build *b, char *why, size_t whylen)
{
    int64_t now = timer_wall_ms();
    b->nstate = ft->nspecs;
    scratch_states(&s->scratch, ft->nspecs + 1);
    b->sv = s->scratch.sv;
    b->svp = s->scratch.svp;
    b->tv = s->scratch.tv;
    for (size_t i = 0; i < ft->nspecs; i++) {
        struct sc_value v;
        statemesh__v1__state_value__init(&b->sv[i]);
        b->sv[i].name = ft->spec_names[i];
        b->svp[i] = &b->sv[i];
        if (state_lookup(s, mb->type, mb->id, ft->spec_names[i], &v, why, whylen) != 0)
            return -1;
        if (!v.typename || (v.expires_at_ms && v.expires_at_ms <= now)) continue;
        statemesh__v1__typed_value__init(&b->tv[i]);
        b->tv[i].typename_ = (char *)v.typename;
        b->tv[i].value.data = (uint8_t *)v.data;
        b->tv[i].value.len = v.len;
        b->sv[i].value = &b->tv[i];
    }
    return 0;
}

static void run_ops(struct server *s, struct mbox *mb);

/* ---- tracing (trace.h) ----------------------------------------------------
 *
 * A traced message gets its invocation span id when it is sent (a resent
 * or retried message a new one); its queue span (enqueued .. sent) is
 * recorded then, its invocation span (sent .. answered) when the batch
 * ends, and its checkpoint span (applied .. durable) by the loop after the
 * commit (tracer_checkpoint_done). Only sampled contexts record spans. */
static void trace_invocation(struct server *s, struct mbox *mb, struct msg *m,
                             Statemesh__V1__Invocation *inv, size_t i, size_t n)
{
    struct disp_scratch *sc = &s->scratch;
    struct trace_ctx *tc = m->trace;
    char *tp;

    if (!s->tracer) return;
    if (sc->cap_tp < n) {
        char *p = realloc(sc->tp, n * (TRACE_PARENT_LEN + 1));
        if (!p) abort();
        sc->tp = p;
        sc->cap_tp = n;
    }
    tracer_new_span_id(s->tracer, tc->span_id);
    tc->sent_ns = trace_now_ns();
    if (tc->flags & TRACE_FLAG_SAMPLED) {
        struct trace_span sp;
        uint8_t qid[8];
        tracer_new_span_id(s->tracer, qid);
        trace_span_init(&sp, tc->trace_id, qid, tc->parent_id, tc->flags, TRACE_INTERNAL,
                        "statemesh.queue", tc->enqueued_ns, tc->sent_ns);
        trace_span_address(&sp, mb->type, mb->id);
        tracer_emit(s->tracer, &sp);
    }
    tp = sc->tp + i * (TRACE_PARENT_LEN + 1);
    trace_format(tc->trace_id, tc->span_id, tc->flags, tp);
    inv->traceparent = tp;
    if (tc->state[0]) inv->tracestate = tc->state;
}

/* The batch in flight ended: records the invocation span of each of its
 * sampled messages. why: NULL when answered, else the failure. */
static void trace_batch_end(struct server *s, struct mbox *mb, const char *why)
{
    int64_t now = 0;
    for (struct msg *m = mb->batch; m; m = m->next) {
        struct trace_ctx *tc = m->trace;
        struct trace_span sp;
        if (!tc || !tc->sent_ns) continue;
        if (!now) now = trace_now_ns();
        if (tc->flags & TRACE_FLAG_SAMPLED) {
            trace_span_init(&sp, tc->trace_id, tc->span_id, tc->parent_id, tc->flags, TRACE_CLIENT,
                            "statemesh.invoke", tc->sent_ns, now);
            trace_span_address(&sp, mb->type, mb->id);
            sp.count = mb->nbatch;
            if (why) {
                sp.error = 1;
                snprintf(sp.status, sizeof sp.status, "%s", why);
            }
            tracer_emit(s->tracer, &sp);
        }
        tc->enqueued_ns = now;     /* a retry's queue span starts here */
    }
}

static void dispatch_one(struct server *s, struct endpoint *ep, struct mbox *mb)
{
    struct ftype *ft = ep_find_type(ep, mb->type);
    struct disp_scratch *sc = &s->scratch;
    struct batch_build b;
    int64_t now;
    char why[256];
    uint32_t n;
    struct msg *m;
    size_t i;

    if (mb->ops) run_ops(s, mb);            /* operator writes go first */
    n = mbox_take_batch(mb, mb->fail && mb->fail->isolate ? 1 : (uint32_t)ep->cfg->max_batch);
    mb->state = MBOX_INFLIGHT;
    if (!ft) {
        snprintf(why, sizeof why, "function type %s is not served by endpoint %s", mb->type,
                 ep_name(ep));
        fail_batch(s, mb, why);
        return;
    }
    /* Every string sent must be UTF-8, or a conforming decoder on the other
     * side refuses the whole stream message, with the batches of other
     * addresses in it. The ingress and remote answers are checked on the
     * wire; this catches what came another way (an embedded module's
     * messages, a store written by an older release). */
    for (m = mb->batch; m; m = m->next)
        if (!addr_utf8_ok((const unsigned char *)m->typename, strlen(m->typename))) {
            fail_batch(s, mb, "the message's typename is not valid UTF-8; no function server "
                              "can decode it");
            return;
        }
    memset(&b, 0, sizeof b);
    if (read_state(s, mb, ft, &b, why, sizeof why) != 0) {
        fail_batch(s, mb, why);
        return;
    }
    statemesh__v1__batch_request__init(&b.req);
    statemesh__v1__address__init(&b.target);
    b.target.type = (char *)mb->type;
    b.target.id = (char *)mb->id;
    scratch_invocations(sc, n);
    for (i = 0, m = mb->batch; m; m = m->next, i++) {
        statemesh__v1__invocation__init(&sc->inv[i]);
        statemesh__v1__typed_value__init(&sc->args[i]);
        sc->args[i].typename_ = (char *)m->typename;
        sc->args[i].value.data = (uint8_t *)m->data;
        sc->args[i].value.len = m->len;
        sc->inv[i].argument = &sc->args[i];
        if (m->caller_type) {
            statemesh__v1__address__init(&sc->callers[i]);
            sc->callers[i].type = (char *)m->caller_type;
            sc->callers[i].id = (char *)m->caller_id;
            sc->inv[i].caller = &sc->callers[i];
        }
        if (m->trace) trace_invocation(s, mb, m, &sc->inv[i], i, n);
        sc->invp[i] = &sc->inv[i];
    }
    b.req.target = &b.target;
    b.req.n_state = b.nstate;
    b.req.state = b.svp;
    b.req.n_invocations = n;
    b.req.invocations = sc->invp;
    b.req.batch_id = ep_reserve(ep, mb);
    for (m = mb->batch, now = rpc_now_ms(); m; m = m->next) ckpt_msg_dispatched(&s->ckpt, m, now);
    ep_append_message(ep, &b.req.base);
    s->stats.batches_sent++;
}

int disp_run(struct server *s)
{
    int n = 0;
    if (s->stopping) return 0;
    if (cluster_paused(s->cluster)) return 0;   /* a cluster savepoint's barrier (clustersp.h) */
    for (size_t i = 0; i < s->n_endpoints; i++) {
        struct endpoint *ep = &s->endpoints[i];
        struct mbox *mb;
        if (ep->state != EP_UP) continue;
        while (ep_has_capacity(ep) && (mb = mbox_list_pop(&ep->ready)) != NULL) {
            if (mb->state != MBOX_READY) continue;     /* stale entry */
            if (s->cluster && !cluster_serves(s->cluster, store_key_group(mb->type, mb->id))) {
                mbox_list_push(&s->held, mb);          /* fenced, or not ours */
                continue;
            }
            dispatch_one(s, ep, mb);
            n++;
        }
        ep_flush(ep);
    }
    scache_evict(&s->scache, s->ckpt.generation);
    return n;
}

void disp_release_held(struct server *s)
{
    struct mbox *mb;
    while ((mb = mbox_list_pop(&s->held)) != NULL)
        if (mb->state == MBOX_READY) mbox_list_push(&mb->ep->ready, mb);
}

/* ---- answers ------------------------------------------------------------- */

static int spec_index(const struct ftype *ft, const char *name)
{
    for (size_t i = 0; i < ft->nspecs; i++)
        if (strcmp(ft->spec_names[i], name) == 0) return (int)i;
    return -1;
}

/* Checks a whole result before anything is applied. Returns NULL or a
 * message in `why`. */
static const char *validate(struct server *s, struct endpoint *ep, const struct ftype *ft,
                            const struct mbox *mb, const Statemesh__V1__Result *r, char *why,
                            size_t whylen)
{
    size_t max = s->cfg.max_message_bytes;
    const char *e;

    for (size_t i = 0; i < r->n_state_mutations; i++) {
        const Statemesh__V1__StateMutation *mu = r->state_mutations[i];
        int k = spec_index(ft, mu->name);
        if (k < 0) {
            snprintf(why, whylen, "mutation of undeclared state '%.128s'", mu->name);
            return why;
        }
        if (mu->kind == STATEMESH__V1__STATE_MUTATION__KIND__DELETE) continue;
        if (mu->kind != STATEMESH__V1__STATE_MUTATION__KIND__MODIFY) {
            snprintf(why, whylen, "mutation of '%s' has unknown kind %d", mu->name, (int)mu->kind);
            return why;
        }
        if (!mu->value) {
            snprintf(why, whylen, "MODIFY of '%s' without a value", mu->name);
            return why;
        }
        if (strcmp(mu->value->typename_, ft->spec_types[k]) != 0) {
            snprintf(why, whylen, "state '%s' is declared as %s but the mutation carries %.128s",
                     mu->name, ft->spec_types[k], mu->value->typename_);
            return why;
        }
        if (mu->value->value.len > max) {
            snprintf(why, whylen, "value of state '%s' is %zu bytes, over max_message_bytes %zu",
                     mu->name, mu->value->value.len, max);
            return why;
        }
    }
    for (size_t i = 0; i < r->n_outgoing_messages; i++) {
        const Statemesh__V1__OutgoingMessage *o = r->outgoing_messages[i];
        int idx;
        if (!o->target) return "outgoing message without a target";
        if ((e = addr_check_type(o->target->type, strlen(o->target->type))) ||
            (e = addr_check_id(o->target->id, strlen(o->target->id)))) {
            snprintf(why, whylen, "outgoing message to an invalid address: %s", e);
            return why;
        }
        idx = cfg_match_endpoint(&s->cfg, o->target->type);
        if (idx < 0 || ep_rejects_type(&s->endpoints[idx], o->target->type)) {
            snprintf(why, whylen, "outgoing message to function type %.256s, which no endpoint serves",
                     o->target->type);
            return why;
        }
        if (!o->argument || !o->argument->typename_[0]) return "outgoing message without a typed argument";
        if (o->argument->value.len > max) {
            snprintf(why, whylen, "outgoing message of %zu bytes, over max_message_bytes %zu",
                     o->argument->value.len, max);
            return why;
        }
        if (o->invocation_index >= mb->nbatch) return "outgoing message with invocation_index out of range";
    }
    for (size_t i = 0; i < r->n_delayed_messages; i++) {
        const Statemesh__V1__DelayedMessage *d = r->delayed_messages[i];
        size_t tl;
        int idx;
        if (!d->target) return "delayed message without a target";
        if ((e = addr_check_type(d->target->type, strlen(d->target->type))) ||
            (e = addr_check_id(d->target->id, strlen(d->target->id)))) {
            snprintf(why, whylen, "delayed message to an invalid address: %s", e);
            return why;
        }
        idx = cfg_match_endpoint(&s->cfg, d->target->type);
        if (idx < 0 || ep_rejects_type(&s->endpoints[idx], d->target->type)) {
            snprintf(why, whylen, "delayed message to function type %.256s, which no endpoint serves",
                     d->target->type);
            return why;
        }
        if (!d->argument || !d->argument->typename_[0]) return "delayed message without a typed argument";
        if (d->argument->value.len > max) {
            snprintf(why, whylen, "delayed message of %zu bytes, over max_message_bytes %zu",
                     d->argument->value.len, max);
            return why;
        }
        if (d->delay_ms > (uint64_t)DELAYED_MAX_MS) {
            snprintf(why, whylen, "delay of %llu ms is over the maximum of 365 days",
                     (unsigned long long)d->delay_ms);
            return why;
        }
        tl = strlen(d->cancellation_token);
        if (tl > DELAYED_TOKEN_MAX) return "cancellation token longer than 256 bytes";
        if (tl == 0) continue;
        for (size_t k = 0; k < i; k++)
            if (strcmp(r->delayed_messages[k]->cancellation_token, d->cancellation_token) == 0) {
                snprintf(why, whylen, "cancellation token '%.256s' is used twice in one result",
                         d->cancellation_token);
                return why;
            }
        if (delayed_pending(s, mb->type, mb->id, d->cancellation_token)) {
            int cancelled = 0;
            for (size_t k = 0; k < r->n_cancellations && !cancelled; k++)
                cancelled = strcmp(r->cancellations[k]->token, d->cancellation_token) == 0;
            if (!cancelled) {
                snprintf(why, whylen, "cancellation token '%.256s' is still pending for this "
                         "address; cancel it first or use another token", d->cancellation_token);
                return why;
            }
        }
    }
    for (size_t i = 0; i < r->n_cancellations; i++)
        if (strlen(r->cancellations[i]->token) > DELAYED_TOKEN_MAX)
            return "cancellation token longer than 256 bytes";
    for (size_t i = 0; i < r->n_egress_records; i++) {
        const Statemesh__V1__EgressRecord *g = r->egress_records[i];
        if (cfg_find_egress(&s->cfg, g->egress) < 0) {
            snprintf(why, whylen, "egress record for '%.128s', which is not a configured egress",
                     g->egress);
            return why;
        }
        if (!g->value || !g->value->typename_[0]) return "egress record without a typed value";
        if (g->value->value.len > max) {
            snprintf(why, whylen, "egress record of %zu bytes, over max_message_bytes %zu",
                     g->value->value.len, max);
            return why;
        }
    }
    for (size_t i = 0; i < r->n_replies; i++) {
        const Statemesh__V1__Reply *rp = r->replies[i];
        if (rp->invocation_index >= mb->nbatch) return "reply with invocation_index out of range";
        if (!rp->value || !rp->value->typename_[0]) return "reply without a typed value";
        if (rp->value->value.len > max) return "reply larger than max_message_bytes";
    }
    (void)ep;
    return NULL;
}

/* Writes one state value into the open checkpoint and the state cache
 * (pinned until that checkpoint commits). v NULL: delete. */
static void put_state(struct server *s, const struct mbox *mb, const char *name,
                      const Statemesh__V1__TypedValue *v, int64_t expires_at_ms)
{
    struct sc_value cv = {NULL, NULL, 0, 0};
    if (v) {
        Statemesh__V1__StoredState st = STATEMESH__V1__STORED_STATE__INIT;
        size_t len;
        uint8_t *buf;
        st.value = (Statemesh__V1__TypedValue *)v;
        st.expires_at_ms = expires_at_ms;
        buf = rpc_pack(&st.base, &len);
        store_batch_put_state(s->ckpt.batch, mb->type, mb->id, name, buf, len);
        free(buf);
        cv.typename = v->typename_;
        cv.data = v->value.data;
        cv.len = v->value.len;
        cv.expires_at_ms = expires_at_ms;
    } else {
        store_batch_delete_state(s->ckpt.batch, mb->type, mb->id, name);
    }
    scache_set(&s->scache, mb->type, mb->id, name, &cv, s->ckpt.generation + 1);
}

/* expire_after_invoke: every invocation extends the values it did not
 * write. The address is in flight, so the store holds its latest state. */
static void refresh_invoke_ttl(struct server *s, struct mbox *mb, const struct ftype *ft,
                               const Statemesh__V1__Result *r, int64_t now)
{
    for (size_t k = 0; k < ft->nspecs; k++) {
        Statemesh__V1__TypedValue tv = STATEMESH__V1__TYPED_VALUE__INIT;
        struct sc_value v;
        char why[200];
        size_t i;
        if (!ft->spec_ttl_invoke[k]) continue;
        for (i = 0; i < r->n_state_mutations; i++)
            if (strcmp(r->state_mutations[i]->name, ft->spec_names[k]) == 0) break;
        if (i < r->n_state_mutations) continue;
        if (state_lookup(s, mb->type, mb->id, ft->spec_names[k], &v, why, sizeof why) != 0) continue;
        if (!v.typename || (v.expires_at_ms && v.expires_at_ms <= now)) continue;
        /* v points into the cache, which put_state rewrites: copy first */
        tv.typename_ = strdup(v.typename);
        tv.value.data = malloc(v.len ? v.len : 1);
        if (!tv.typename_ || !tv.value.data) abort();
        if (v.len) memcpy(tv.value.data, v.data, v.len);
        tv.value.len = v.len;
        put_state(s, mb, ft->spec_names[k], &tv, now + (int64_t)ft->spec_ttl_invoke[k]);
        free(tv.typename_);
        free(tv.value.data);
    }
}

static void apply_result(struct server *s, struct mbox *mb, const struct ftype *ft,
                         const Statemesh__V1__Result *r)
{
    struct store_batch *b = s->ckpt.batch;
    struct msg **msgs;
    const struct trace_ctx *first_traced = NULL;
    struct trace_ctx *child = NULL;
    char tp[TRACE_PARENT_LEN + 1];
    int64_t now = timer_wall_ms();
    uint32_t consumed;
    struct msg *m;
    size_t i;

    scratch_invocations(&s->scratch, mb->nbatch);
    msgs = s->scratch.msgs;
    for (i = 0, m = mb->batch; m; m = m->next, i++) msgs[i] = m;

    for (i = 0; i < r->n_state_mutations; i++) {
        const Statemesh__V1__StateMutation *mu = r->state_mutations[i];
        if (mu->kind == STATEMESH__V1__STATE_MUTATION__KIND__DELETE) {
            put_state(s, mb, mu->name, NULL, 0);
        } else {
            int k = spec_index(ft, mu->name);
            uint64_t ttl = ft->spec_ttl_write[k] ? ft->spec_ttl_write[k] : ft->spec_ttl_invoke[k];
            put_state(s, mb, mu->name, mu->value, ttl ? now + (int64_t)ttl : 0);
        }
    }
    if (ft->has_invoke_ttl) refresh_invoke_ttl(s, mb, ft, r, now);
    for (i = 0; i < mb->nbatch; i++) {
        if (msgs[i]->pending) ckpt_pending_remove(&s->ckpt, msgs[i]);   /* never written */
        else store_batch_delete_message(b, mb->type, mb->id, msgs[i]->seq);
    }
    for (i = 0; i < r->n_outgoing_messages; i++) {
        const Statemesh__V1__OutgoingMessage *o = r->outgoing_messages[i];
        int idx = cfg_match_endpoint(&s->cfg, o->target->type);
        const struct msg *cause = msgs[o->invocation_index];
        struct msg *nm;
        s->stats.messages_produced++;
        if (peer_remote(s, store_key_group(o->target->type, o->target->id))) {
            /* another node's address: through the outbox, after this checkpoint */
            peer_out_message(s, store_key_group(mb->type, mb->id), false, o->target->type,
                             o->target->id, mb->type, mb->id, o->argument->typename_,
                             o->argument->value.data, o->argument->value.len, cause);
            continue;
        }
        nm = msg_create(mb->type, mb->id, o->argument->typename_, o->argument->value.data,
                        o->argument->value.len, cause->reply_key);
        nm->call_id = cause->call_id;
        nm->call_kg1 = cause->call_kg1;
        nm->call_boot = cause->call_boot;
        if (cause->trace) nm->trace = trace_ctx_child(cause->trace);
        disp_accept(s, &s->endpoints[idx], o->target->type, o->target->id, nm);
    }
    for (i = 0; i < r->n_cancellations; i++)
        delayed_cancel(s, mb->type, mb->id, r->cancellations[i]->token);
    /* Delayed messages and egress records name no invocation: they carry the
     * context of the batch's first traced message. */
    for (i = 0; i < mb->nbatch && !first_traced; i++) first_traced = msgs[i]->trace;
    if (first_traced && r->n_delayed_messages) child = trace_ctx_child(first_traced);
    for (i = 0; i < r->n_delayed_messages; i++) {
        const Statemesh__V1__DelayedMessage *d = r->delayed_messages[i];
        delayed_add_traced(s, now + (int64_t)d->delay_ms, mb->type, mb->id, d->cancellation_token,
                           d->target->type, d->target->id, d->argument, child);
    }
    free(child);
    if (first_traced && r->n_egress_records)
        trace_format(first_traced->trace_id, first_traced->span_id, first_traced->flags, tp);
    for (i = 0; i < r->n_egress_records; i++)
        egress_append_traced(s, cfg_find_egress(&s->cfg, r->egress_records[i]->egress), mb->type,
                             mb->id, r->egress_records[i]->value, first_traced ? tp : NULL);
    for (i = 0; i < r->n_replies; i++) {
        const Statemesh__V1__Reply *rp = r->replies[i];
        const struct msg *cause = msgs[rp->invocation_index];
        if ((cause->reply_key || cause->call_kg1) &&
            peer_reply(s, store_key_group(mb->type, mb->id), cause, rp->value->typename_,
                       rp->value->value.data, rp->value->value.len))
            continue;                   /* the Call or its record lives on another node */
        if (cause->reply_key)
            idem_reply(s, cause->reply_key, rp->value->typename_, rp->value->value.data,
                       rp->value->value.len);
        if (!cause->call_id) continue;
        ckpt_add_reply(&s->ckpt, cause->call_id, rp->value->typename_, rp->value->value.data,
                       rp->value->value.len);
        s->stats.replies++;
    }
    if (first_traced)
        for (m = mb->batch; m; m = m->next)
            if (m->trace && (m->trace->flags & TRACE_FLAG_SAMPLED))
                tracer_checkpoint_wait(s->tracer, m->trace);
    consumed = mb->nbatch;
    s->stats.messages_delivered += consumed;
    s->stats.queued_messages -= consumed;
    for (m = mb->batch; m; m = m->next) s->stats.queued_bytes -= (int64_t)msg_footprint(m);
    mbox_drop_batch(mb);
    clear_failure(s, mb);
    if (mb->fail) mb->fail->isolate = mb->fail->isolate > consumed ? mb->fail->isolate - consumed : 0;
    ckpt_touch(&s->ckpt, rpc_now_ms());
    if (mb->nqueued) {
        /* Pipelined: the next batch reads this result's writes from the
         * state cache; its own result lands in this or a later checkpoint. */
        make_ready(mb);
        return;
    }
    /* Nothing queued: kept (PARKED) until the checkpoint is durable, so the
     * TTL sweep and GetState know the address is active meanwhile. */
    mb->state = MBOX_PARKED;
    mbox_list_push(&s->ckpt.parked, mb);
}

static void handle_incomplete(struct server *s, struct endpoint *ep, struct ftype *ft,
                              struct mbox *mb, const Statemesh__V1__Incomplete *inc)
{
    size_t added = 0;
    char why[300];

    for (size_t i = 0; i < inc->n_missing_states; i++) {
        const Statemesh__V1__StateSpec *sp = inc->missing_states[i];
        const char *e = addr_check_state_name(sp->name, strlen(sp->name));
        if (e || !sp->typename_[0] || (sp->expire_after_write_ms && sp->expire_after_invoke_ms)) {
            snprintf(why, sizeof why, "incomplete answer with an invalid state spec: %s",
                     e ? e : !sp->typename_[0] ? "empty typename" : "both TTLs set");
            fail_batch(s, mb, why);
            return;
        }
        if (spec_index(ft, sp->name) < 0) {
            ep_add_specs(ep, ft, sp);
            LOG_INFO(&s->log, "state.registered", "type=%s name=%s typename=%s", ft->name,
                     sp->name, sp->typename_);
            added++;
        }
    }
    s->stats.batches_incomplete++;
    if (added == 0) {
        fail_batch(s, mb, "incomplete answer names no state the runtime lacks");
        return;
    }
    mbox_return_batch(mb);
    make_ready(mb);
}

static void on_response(struct server *s, struct endpoint *ep, struct mbox *mb,
                        const Statemesh__V1__BatchResponse *resp)
{
    struct ftype *ft = ep_find_type(ep, mb->type);
    char why[512];
    const char *e;

    switch (resp->outcome_case) {
    case STATEMESH__V1__BATCH_RESPONSE__OUTCOME_RESULT:
        if (!ft) {
            fail_batch(s, mb, "result for a function type the endpoint no longer serves");
            return;
        }
        e = validate(s, ep, ft, mb, resp->result, why, sizeof why);
        if (e) {
            char msg[600];
            s->stats.invalid_results++;
            snprintf(msg, sizeof msg, "invalid result: %s", e);
            fail_batch(s, mb, msg);
            return;
        }
        apply_result(s, mb, ft, resp->result);
        return;
    case STATEMESH__V1__BATCH_RESPONSE__OUTCOME_INCOMPLETE:
        if (!ft) {
            fail_batch(s, mb, "incomplete answer for a function type the endpoint does not serve");
            return;
        }
        handle_incomplete(s, ep, ft, mb, resp->incomplete);
        return;
    case STATEMESH__V1__BATCH_RESPONSE__OUTCOME_FAILURE:
        snprintf(why, sizeof why, "function failed: %s", resp->failure->message);
        fail_batch(s, mb, why);
        return;
    default:
        fail_batch(s, mb, "answer with neither result, incomplete nor failure");
        return;
    }
}

/* ---- state TTL sweep ------------------------------------------------------ */

#define TTL_SWEEP_KEYS 2000

struct ttl_sweep {
    struct server *s;
    int64_t now;
    size_t deleted;
    char *buf;
    size_t cap;
};

static int ttl_one(void *arg, const char *key, size_t klen, const uint8_t *val, size_t len)
{
    struct ttl_sweep *w = arg;
    Statemesh__V1__StoredState *st = statemesh__v1__stored_state__unpack(NULL, len, val);
    const char *type, *id;
    int expired = st && st->expires_at_ms && st->expires_at_ms <= w->now;

    if (st) statemesh__v1__stored_state__free_unpacked(st, NULL);
    if (!expired) return 0;
    if (klen + 1 > w->cap) {
        char *b = realloc(w->buf, klen + 1);
        if (!b) abort();
        w->buf = b;
        w->cap = klen + 1;
    }
    if (store_state_key_address(key, klen, w->buf, &type, &id) != 0) return 0;
    /* An active address may have a newer value in the open checkpoint. */
    if (mbox_find(&w->s->mboxes, type, id)) return 0;
    store_batch_delete_raw(w->s->ckpt.batch, key, klen);
    w->deleted++;
    return 0;
}

void disp_sweep_expired(struct server *s)
{
    struct ttl_sweep w = {s, timer_wall_ms(), 0, NULL, 0};
    int rc = store_sweep(s->store, 'S', &s->ttl_cursor, TTL_SWEEP_KEYS, ttl_one, &w);
    free(w.buf);
    if (rc == 0 && w.deleted) {
        ckpt_touch(&s->ckpt, rpc_now_ms());
        s->stats.states_expired += (int64_t)w.deleted;
    }
}

/* ---- operator state writes ------------------------------------------------ */

struct name_list {
    char **v;
    size_t n, cap;
};

static void name_add(void *arg, const char *name)
{
    struct name_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v) abort();
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n++] = strdup(name))) abort();
}

static int name_add_stored(void *arg, const char *name, const uint8_t *val, size_t len)
{
    (void)val;
    (void)len;
    name_add(arg, name);
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Deletes `name` (NULL: every state the address has, committed or in the
 * open checkpoint). Returns how many values existed (unexpired), or -1 when
 * the store cannot be read (nothing changed). */
static int delete_states(struct server *s, struct mbox *mb, const char *name, int do_delete)
{
    struct name_list l = {0};
    int64_t now = timer_wall_ms();
    int count = 0;

    if (name) {
        name_add(&l, name);
    } else {
        if (store_scan_states(s->store, mb->type, mb->id, name_add_stored, &l) != 0) {
            for (size_t i = 0; i < l.n; i++) free(l.v[i]);
            free(l.v);
            return -1;
        }
        scache_names(&s->scache, mb->type, mb->id, name_add, &l);
        if (l.n > 1) qsort(l.v, l.n, sizeof *l.v, name_cmp);   /* l.v is NULL when none */
    }
    for (size_t i = 0; i < l.n; i++) {
        struct sc_value v;
        char why[200];
        if (i > 0 && strcmp(l.v[i], l.v[i - 1]) == 0) continue;
        if (state_lookup(s, mb->type, mb->id, l.v[i], &v, why, sizeof why) != 0 ||
            (v.typename && !(v.expires_at_ms && v.expires_at_ms <= now)))
            count++;
        if (do_delete) put_state(s, mb, l.v[i], NULL, 0);
    }
    for (size_t i = 0; i < l.n; i++) free(l.v[i]);
    free(l.v);
    return count;
}

static void apply_op(struct server *s, struct mbox *mb, struct mbox_op *op)
{
    const struct ftype *ft = ep_find_type(mb->ep, mb->type);
    uint8_t *buf;
    size_t blen;
    char q[400];

    if (op->fn) {
        op->fn(s, mb, op->arg);
        return;
    }
    if (op->typename) {
        Statemesh__V1__SetStateResponse resp = STATEMESH__V1__SET_STATE_RESPONSE__INIT;
        Statemesh__V1__TypedValue tv = STATEMESH__V1__TYPED_VALUE__INIT;
        int k = ft ? spec_index(ft, op->name) : -1;
        uint64_t ttl = k < 0 ? 0 : ft->spec_ttl_write[k] ? ft->spec_ttl_write[k]
                                                         : ft->spec_ttl_invoke[k];
        tv.typename_ = (char *)op->typename;
        tv.value.data = (uint8_t *)op->data;
        tv.value.len = op->len;
        put_state(s, mb, op->name, &tv, ttl ? timer_wall_ms() + (int64_t)ttl : 0);
        LOG_INFO(&s->log, "state.set", "type=%s id=%s name=%s typename=%s bytes=%zu", mb->type,
                 log_quote(q, 120, mb->id), op->name, log_quote(q + 120, sizeof q - 120,
                 op->typename), op->len);
        buf = rpc_pack(&resp.base, &blen);
    } else {
        Statemesh__V1__DeleteStateResponse resp = STATEMESH__V1__DELETE_STATE_RESPONSE__INIT;
        int n = delete_states(s, mb, op->name, 1);
        if (n < 0) {
            ckpt_add_error(&s->ckpt, op->call_id, RPC_INTERNAL,
                           "cannot read the address's state from the store (see the runtime log)");
            s->ckpt.forced = 1;
            ckpt_touch(&s->ckpt, rpc_now_ms());
            return;
        }
        resp.deleted = (uint32_t)n;
        LOG_INFO(&s->log, "state.deleted", "type=%s id=%s name=%s deleted=%d", mb->type,
                 log_quote(q, sizeof q, mb->id), op->name ? op->name : "(all)", n);
        buf = rpc_pack(&resp.base, &blen);
    }
    ckpt_add_raw(&s->ckpt, op->call_id, buf, blen);
    s->ckpt.forced = 1;
    ckpt_touch(&s->ckpt, rpc_now_ms());
}

int disp_states(struct server *s, struct mbox *mb, int do_delete)
{
    return delete_states(s, mb, NULL, do_delete);
}

void disp_put_state(struct server *s, struct mbox *mb, const char *name,
                    const Statemesh__V1__TypedValue *v, int64_t expires_at_ms)
{
    put_state(s, mb, name, v, expires_at_ms);
}

/* Applies the waiting operator writes of mb, which has no batch in flight.
 * An address that was idle stays (PARKED) until their checkpoint commits:
 * the TTL sweep and GetState then know it is active meanwhile. */
static void run_ops(struct server *s, struct mbox *mb)
{
    while (mb->ops) {
        struct mbox_op *op = mb->ops;
        mb->ops = op->next;
        apply_op(s, mb, op);
        free(op);
    }
    if (mb->state == MBOX_IDLE) {
        mb->state = MBOX_PARKED;
        mbox_list_push(&s->ckpt.parked, mb);
    }
}

void disp_state_op(struct server *s, struct endpoint *ep, const char *type, const char *id,
                   struct mbox_op *op)
{
    struct mbox *mb = mbox_get(&s->mboxes, type, id, ep);
    struct mbox_op **pp = &mb->ops;
    while (*pp) pp = &(*pp)->next;
    op->next = NULL;
    *pp = op;
    if (mb->state != MBOX_INFLIGHT) run_ops(s, mb);
}

/* The two ways a batch ends: then the writes that waited for it. */
void disp_on_response(struct server *s, struct endpoint *ep, struct mbox *mb,
                      const Statemesh__V1__BatchResponse *resp)
{
    if (s->tracer)
        trace_batch_end(s, mb, resp->outcome_case == STATEMESH__V1__BATCH_RESPONSE__OUTCOME_FAILURE
                                   ? resp->failure->message : NULL);
    on_response(s, ep, mb, resp);
    if (mb->ops && mb->state != MBOX_INFLIGHT) run_ops(s, mb);
}

void disp_on_lost(struct server *s, struct mbox *mb, int failed, const char *why)
{
    if (s->tracer) trace_batch_end(s, mb, why);
    on_lost(s, mb, failed, why);
    if (mb->ops && mb->state != MBOX_INFLIGHT) run_ops(s, mb);
}
