/*
 * etcd — the etcd v3 client (contract in etcd.h).
 *
 * A unary call keeps its request encoded (so a retry on the next endpoint
 * sends the same bytes) and lives until its callback has run. Keepalives and
 * watches own at most one stream; they are freed once the caller has released
 * them and their stream has closed. c->pending counts every call and stream
 * in flight (etcd_client_idle).
 */
#include "etcd.h"
#include "tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REOPEN_MS 150
#define KA_RING 8
#define RETRY_ROUND_MS 200   /* before the second round over the endpoints */

struct etcd_client {
    struct rpc_loop *loop;
    struct timer_heap *timers;
    int n_ep, cur;
    int64_t timeout_ms;
    char *ep[ETCD_MAX_ENDPOINTS];
    struct rpc_channel *ch[ETCD_MAX_ENDPOINTS];
    long pending;
};

/* ---- client ------------------------------------------------------------ */

static void set_err(char *err, size_t errlen, const char *msg, const char *what)
{
    if (err && errlen) snprintf(err, errlen, "etcd endpoints: %s: '%s'", msg, what);
}

int etcd_client_create(struct etcd_client **out, struct rpc_loop *loop, struct timer_heap *timers,
                       const char *endpoints, char *err, size_t errlen)
{
    return etcd_client_create_tls(out, loop, timers, endpoints, NULL, err, errlen);
}

int etcd_client_create_tls(struct etcd_client **out, struct rpc_loop *loop,
                           struct timer_heap *timers, const char *endpoints,
                           const struct cfg_tls *tls, char *err, size_t errlen)
{
    struct etcd_client *c;
    const char *p = endpoints;
    struct rpc_channel_options co = {0, 0, NULL};
    char why[1200];

    *out = NULL;
    if (!endpoints || !*endpoints) {
        set_err(err, errlen, "the list is empty", "");
        return -1;
    }
    if (tls && tls->on && !(co.creds = tls_channel_credentials(tls, why, sizeof why))) {
        if (err && errlen) snprintf(err, errlen, "etcd %s", why);
        return -1;
    }
    if (!(c = calloc(1, sizeof *c))) {
        set_err(err, errlen, "out of memory", endpoints);
        if (co.creds) grpc_channel_credentials_release(co.creds);
        return -1;
    }
    c->loop = loop;
    c->timers = timers;
    c->timeout_ms = ETCD_CALL_TIMEOUT_MS;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char one[256], *target;
        const char *colon;

        if (n == 0 || n >= sizeof one) {
            set_err(err, errlen, n ? "an endpoint is too long" : "an endpoint is empty", endpoints);
            goto fail;
        }
        memcpy(one, p, n);
        one[n] = '\0';
        target = one;
        if (strncmp(target, "https://", 8) == 0) {
            if (!co.creds) {
                set_err(err, errlen, "https needs a tls group (at least its ca)", one);
                goto fail;
            }
            target += 8;
        } else if (co.creds) {
            set_err(err, errlen, "with tls every endpoint is https://host:port", one);
            goto fail;
        }
        if (strncmp(target, "http://", 7) == 0) target += 7;
        if (target[0] && target[strlen(target) - 1] == '/') target[strlen(target) - 1] = '\0';
        colon = strrchr(target, ':');
        if (!colon || colon == target || !colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
            strchr(target, '/')) {
            set_err(err, errlen, "an endpoint must be http://host:port or host:port", one);
            goto fail;
        }
        if (c->n_ep == ETCD_MAX_ENDPOINTS) {
            set_err(err, errlen, "more than 16 endpoints", endpoints);
            goto fail;
        }
        if (!(c->ep[c->n_ep] = strdup(target)) ||
            rpc_channel_create(&c->ch[c->n_ep], loop, target, &co) != 0) {
            free(c->ep[c->n_ep]);
            c->ep[c->n_ep] = NULL;
            set_err(err, errlen, "cannot create a gRPC channel", one);
            goto fail;
        }
        c->n_ep++;
        p += n;
        if (*p == ',') p++;
    }
    if (co.creds) grpc_channel_credentials_release(co.creds);   /* channels hold their own */
    *out = c;
    return 0;
fail:
    if (co.creds) grpc_channel_credentials_release(co.creds);
    etcd_client_destroy(&c);
    return -1;
}

int etcd_client_idle(const struct etcd_client *c) { return c->pending == 0; }

void etcd_client_destroy(struct etcd_client **cp)
{
    struct etcd_client *c = *cp;
    if (!c) return;
    if (c->pending) SM_PANIC("etcd_client_destroy with calls or streams alive");
    for (int i = 0; i < c->n_ep; i++) {
        rpc_channel_destroy(&c->ch[i]);
        free(c->ep[i]);
    }
    free(c);
    *cp = NULL;
}

void etcd_client_set_timeout(struct etcd_client *c, int64_t ms)
{
    c->timeout_ms = ms > 0 ? ms : ETCD_CALL_TIMEOUT_MS;
}

const char *etcd_client_endpoint(const struct etcd_client *c) { return c->ep[c->cur]; }

size_t etcd_prefix_end(const void *prefix, size_t plen, uint8_t *out)
{
    const uint8_t *p = prefix;
    size_t n = plen;
    while (n > 0 && p[n - 1] == 0xff) n--;
    if (n == 0) {
        out[0] = 0;     /* every key from the prefix on */
        return 1;
    }
    memcpy(out, p, n);
    out[n - 1]++;
    return n;
}

/* ---- unary calls ------------------------------------------------------- */

enum ukind { U_RANGE, U_PUT, U_DELETE, U_TXN, U_CAS, U_GRANT, U_REVOKE };

static const struct {
    const char *method, *what;
    const ProtobufCMessageDescriptor *req, *resp;
} UKIND[] = {
    [U_RANGE] = {"/etcdserverpb.KV/Range", "Range", &etcdserverpb__range_request__descriptor,
                 &etcdserverpb__range_response__descriptor},
    [U_PUT] = {"/etcdserverpb.KV/Put", "Put", &etcdserverpb__put_request__descriptor,
               &etcdserverpb__put_response__descriptor},
    [U_DELETE] = {"/etcdserverpb.KV/DeleteRange", "DeleteRange",
                  &etcdserverpb__delete_range_request__descriptor,
                  &etcdserverpb__delete_range_response__descriptor},
    [U_TXN] = {"/etcdserverpb.KV/Txn", "Txn", &etcdserverpb__txn_request__descriptor,
               &etcdserverpb__txn_response__descriptor},
    [U_CAS] = {"/etcdserverpb.KV/Txn", "compare-and-swap Txn",
               &etcdserverpb__txn_request__descriptor, &etcdserverpb__txn_response__descriptor},
    [U_GRANT] = {"/etcdserverpb.Lease/LeaseGrant", "LeaseGrant",
                 &etcdserverpb__lease_grant_request__descriptor,
                 &etcdserverpb__lease_grant_response__descriptor},
    [U_REVOKE] = {"/etcdserverpb.Lease/LeaseRevoke", "LeaseRevoke",
                  &etcdserverpb__lease_revoke_request__descriptor,
                  &etcdserverpb__lease_revoke_response__descriptor},
};

struct ucall {
    struct etcd_client *c;
    enum ukind kind;
    uint8_t *req;
    size_t req_len;
    int ep, tries;
    etcd_done_fn done;
    void *arg;
    struct timer t_fail;        /* reports a failure to start, from the loop */
    char err[512];
};

static void ucall_finish(struct ucall *u, const struct etcd_result *r)
{
    u->done(u->arg, r);
    u->c->pending--;
    free(u->req);
    free(u);
}

static void ucall_fail_later(void *arg)
{
    struct ucall *u = arg;
    struct etcd_result r = {.status = RPC_INTERNAL, .error = u->err};
    ucall_finish(u, &r);
}

static void ucall_done(void *arg, int status, const char *details, const uint8_t *resp, size_t len);
static void ucall_attempt(struct ucall *u);

static void ucall_retry_later(void *arg) { ucall_attempt(arg); }

static void ucall_attempt(struct ucall *u)
{
    struct etcd_client *c = u->c;
    ProtobufCMessage *m = protobuf_c_message_unpack(UKIND[u->kind].req, NULL, u->req_len, u->req);
    int rc = m ? rpc_unary_start(c->ch[u->ep], UKIND[u->kind].method, m, c->timeout_ms,
                                 ucall_done, u)
               : -1;
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    if (rc != 0) {
        snprintf(u->err, sizeof u->err, "etcd %s via %s could not start (out of memory)",
                 UKIND[u->kind].what, c->ep[u->ep]);
        timer_init(&u->t_fail, ucall_fail_later, u);
        timer_start(c->timers, &u->t_fail, 0);
    }
}

static void ucall_done(void *arg, int status, const char *details, const uint8_t *resp, size_t len)
{
    struct ucall *u = arg;
    struct etcd_client *c = u->c;
    struct etcd_result r = {.status = status, .error = ""};
    ProtobufCMessage *m;

    if (status == RPC_UNAVAILABLE && ++u->tries < 2 * c->n_ep) {
        u->ep = (u->ep + 1) % c->n_ep;       /* fail over */
        if (u->tries == c->n_ep) {            /* a second round, after a pause */
            timer_init(&u->t_fail, ucall_retry_later, u);
            timer_start(c->timers, &u->t_fail, rpc_now_ms() + RETRY_ROUND_MS);
        } else {
            ucall_attempt(u);
        }
        return;
    }
    if (status != RPC_OK) {
        snprintf(u->err, sizeof u->err, "etcd %s via %s failed: %s (%s)%s", UKIND[u->kind].what,
                 c->ep[u->ep], details && *details ? details : "no details",
                 rpc_status_name(status),
                 status == RPC_UNAVAILABLE && c->n_ep > 1 ? "; every endpoint was tried twice" : "");
        r.error = u->err;
        ucall_finish(u, &r);
        return;
    }
    c->cur = u->ep;
    m = protobuf_c_message_unpack(UKIND[u->kind].resp, NULL, len, resp);
    if (!m) {
        snprintf(u->err, sizeof u->err, "etcd %s via %s: the answer (%zu bytes) does not decode",
                 UKIND[u->kind].what, c->ep[u->ep], len);
        r.status = RPC_INTERNAL;
        r.error = u->err;
        ucall_finish(u, &r);
        return;
    }
    switch (u->kind) {
    case U_RANGE: {
        Etcdserverpb__RangeResponse *x = (void *)m;
        r.revision = x->header ? x->header->revision : 0;
        r.n_kvs = x->n_kvs;
        r.kvs = x->kvs;
        break;
    }
    case U_PUT: {
        Etcdserverpb__PutResponse *x = (void *)m;
        r.revision = x->header ? x->header->revision : 0;
        break;
    }
    case U_DELETE: {
        Etcdserverpb__DeleteRangeResponse *x = (void *)m;
        r.revision = x->header ? x->header->revision : 0;
        r.deleted = x->deleted;
        break;
    }
    case U_TXN:
    case U_CAS: {
        Etcdserverpb__TxnResponse *x = (void *)m;
        r.revision = x->header ? x->header->revision : 0;
        r.succeeded = x->succeeded;
        r.txn = x;
        if (u->kind == U_CAS && !x->succeeded && x->n_responses == 1 &&
            x->responses[0]->response_case == ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE) {
            r.n_kvs = x->responses[0]->response_range->n_kvs;
            r.kvs = x->responses[0]->response_range->kvs;
        }
        break;
    }
    case U_GRANT: {
        Etcdserverpb__LeaseGrantResponse *x = (void *)m;
        r.revision = x->header ? x->header->revision : 0;
        r.lease_id = x->id;
        r.ttl = x->ttl;
        if (x->error && *x->error) {
            snprintf(u->err, sizeof u->err, "etcd LeaseGrant via %s refused: %s", c->ep[u->ep],
                     x->error);
            r.status = RPC_UNKNOWN;
            r.error = u->err;
        }
        break;
    }
    case U_REVOKE: {
        Etcdserverpb__LeaseRevokeResponse *x = (void *)m;
        r.revision = x->header ? x->header->revision : 0;
        break;
    }
    }
    ucall_finish(u, &r);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void ucall_start(struct etcd_client *c, enum ukind kind, const ProtobufCMessage *req,
                        etcd_done_fn done, void *arg)
{
    struct ucall *u = calloc(1, sizeof *u);
    if (!u) SM_PANIC("etcd: out of memory");
    u->c = c;
    u->kind = kind;
    u->ep = c->cur;
    u->done = done;
    u->arg = arg;
    u->req = rpc_pack(req, &u->req_len);
    c->pending++;
    ucall_attempt(u);
}

#define BIN(p, n) ((ProtobufCBinaryData){.len = (n), .data = (uint8_t *)(p)})

void etcd_range(struct etcd_client *c, const void *key, size_t klen, const void *range_end,
                size_t relen, etcd_done_fn done, void *arg)
{
    Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
    q.key = BIN(key, klen);
    if (range_end) q.range_end = BIN(range_end, relen);
    ucall_start(c, U_RANGE, &q.base, done, arg);
}

void etcd_put(struct etcd_client *c, const void *key, size_t klen, const void *val, size_t vlen,
              int64_t lease, etcd_done_fn done, void *arg)
{
    Etcdserverpb__PutRequest q = ETCDSERVERPB__PUT_REQUEST__INIT;
    q.key = BIN(key, klen);
    q.value = BIN(val, vlen);
    q.lease = lease;
    ucall_start(c, U_PUT, &q.base, done, arg);
}

void etcd_delete(struct etcd_client *c, const void *key, size_t klen, const void *range_end,
                 size_t relen, etcd_done_fn done, void *arg)
{
    Etcdserverpb__DeleteRangeRequest q = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    q.key = BIN(key, klen);
    if (range_end) q.range_end = BIN(range_end, relen);
    ucall_start(c, U_DELETE, &q.base, done, arg);
}

void etcd_cas(struct etcd_client *c, const void *key, size_t klen, const void *val, size_t vlen,
              int64_t expect_mod_rev, int64_t lease, etcd_done_fn done, void *arg)
{
    Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT, *cmps[1] = {&cmp};
    Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
    Etcdserverpb__RangeRequest get = ETCDSERVERPB__RANGE_REQUEST__INIT;
    Etcdserverpb__RequestOp ok = ETCDSERVERPB__REQUEST_OP__INIT, *oks[1] = {&ok};
    Etcdserverpb__RequestOp ko = ETCDSERVERPB__REQUEST_OP__INIT, *kos[1] = {&ko};
    Etcdserverpb__TxnRequest q = ETCDSERVERPB__TXN_REQUEST__INIT;

    cmp.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
    cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD;
    cmp.key = BIN(key, klen);
    cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
    cmp.mod_revision = expect_mod_rev;
    put.key = BIN(key, klen);
    put.value = BIN(val, vlen);
    put.lease = lease;
    ok.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    ok.request_put = &put;
    get.key = BIN(key, klen);
    ko.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
    ko.request_range = &get;
    q.n_compare = 1;
    q.compare = cmps;
    q.n_success = 1;
    q.success = oks;
    q.n_failure = 1;
    q.failure = kos;
    ucall_start(c, U_CAS, &q.base, done, arg);
}

void etcd_txn(struct etcd_client *c, const Etcdserverpb__TxnRequest *req, etcd_done_fn done,
              void *arg)
{
    ucall_start(c, U_TXN, &req->base, done, arg);
}

void etcd_lease_grant(struct etcd_client *c, int64_t ttl_s, etcd_done_fn done, void *arg)
{
    Etcdserverpb__LeaseGrantRequest q = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
    q.ttl = ttl_s;
    ucall_start(c, U_GRANT, &q.base, done, arg);
}

void etcd_lease_revoke(struct etcd_client *c, int64_t lease_id, etcd_done_fn done, void *arg)
{
    Etcdserverpb__LeaseRevokeRequest q = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
    q.id = lease_id;
    ucall_start(c, U_REVOKE, &q.base, done, arg);
}

/* ---- lease keepalive --------------------------------------------------- */

struct etcd_keepalive {
    struct etcd_client *c;
    int64_t id, ttl_ms, deadline;
    struct etcd_keepalive_callbacks cb;
    void *arg;
    struct rpc_stream *s;
    int ep, released, lost, want_send;
    int64_t sent[KA_RING];      /* send times of unanswered keepalives */
    unsigned sent_head, sent_n;
    struct timer t_send, t_deadline, t_reopen;
};

static void ka_maybe_free(struct etcd_keepalive *k)
{
    if (k->released && !k->s) {
        timer_stop(k->c->timers, &k->t_send);
        timer_stop(k->c->timers, &k->t_deadline);
        timer_stop(k->c->timers, &k->t_reopen);
        free(k);
    }
}

static void ka_lose(struct etcd_keepalive *k, const char *why)
{
    if (k->lost || k->released) return;
    k->lost = 1;
    timer_stop(k->c->timers, &k->t_send);
    timer_stop(k->c->timers, &k->t_deadline);
    timer_stop(k->c->timers, &k->t_reopen);
    if (k->s) rpc_stream_cancel(k->s);
    k->cb.on_lost(k->arg, why);
}

static void ka_send(struct etcd_keepalive *k)
{
    Etcdserverpb__LeaseKeepAliveRequest q = ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
    uint8_t *data;
    size_t len;

    if (!k->s || !rpc_stream_writable(k->s)) {
        k->want_send = 1;
        return;
    }
    k->want_send = 0;
    q.id = k->id;
    data = rpc_pack(&q.base, &len);
    if (rpc_stream_send(k->s, data, len) != 0) return;
    if (k->sent_n == KA_RING) {     /* forget the oldest: deadlines stay conservative */
        k->sent_head = (k->sent_head + 1) % KA_RING;
        k->sent_n--;
    }
    k->sent[(k->sent_head + k->sent_n++) % KA_RING] = rpc_now_ms();
}

static void ka_on_send_timer(void *arg)
{
    struct etcd_keepalive *k = arg;
    ka_send(k);
    timer_start(k->c->timers, &k->t_send, rpc_now_ms() + k->ttl_ms / 3);
}

static void ka_on_deadline(void *arg)
{
    struct etcd_keepalive *k = arg;
    char why[200];
    snprintf(why, sizeof why,
             "lease %lld: no keepalive answer before its deadline (etcd unreachable or without "
             "quorum)", (long long)k->id);
    ka_lose(k, why);
}

static void ka_on_message(void *arg, const uint8_t *data, size_t len)
{
    struct etcd_keepalive *k = arg;
    Etcdserverpb__LeaseKeepAliveResponse *m;
    char why[200];
    int64_t sent_at;

    if (k->lost || k->released) return;
    m = etcdserverpb__lease_keep_alive_response__unpack(NULL, len, data);
    if (!m) {
        snprintf(why, sizeof why, "lease %lld: a keepalive answer does not decode", (long long)k->id);
        ka_lose(k, why);
        return;
    }
    if (m->ttl <= 0) {
        snprintf(why, sizeof why, "lease %lld: etcd says it has expired or was revoked",
                 (long long)k->id);
        etcdserverpb__lease_keep_alive_response__free_unpacked(m, NULL);
        ka_lose(k, why);
        return;
    }
    if (k->sent_n) {
        sent_at = k->sent[k->sent_head];
        k->sent_head = (k->sent_head + 1) % KA_RING;
        k->sent_n--;
        if (sent_at + m->ttl * 1000 > k->deadline) {
            k->deadline = sent_at + m->ttl * 1000;
            timer_start(k->c->timers, &k->t_deadline, k->deadline);
            k->cb.on_deadline(k->arg, k->deadline);
        }
    }
    etcdserverpb__lease_keep_alive_response__free_unpacked(m, NULL);
}

static void ka_on_writable(void *arg)
{
    struct etcd_keepalive *k = arg;
    if (k->want_send && !k->lost && !k->released) ka_send(k);
}

static void ka_open(struct etcd_keepalive *k);

static void ka_on_closed(void *arg, int status, const char *details)
{
    struct etcd_keepalive *k = arg;
    k->s = NULL;
    k->c->pending--;
    k->sent_n = 0;
    if (!k->released && !k->lost) {     /* broken: try the next endpoint soon */
        k->ep = (k->ep + 1) % k->c->n_ep;
        timer_start(k->c->timers, &k->t_reopen, rpc_now_ms() + REOPEN_MS);
    }
    ka_maybe_free(k);
}

static void ka_reopen_timer(void *arg) { ka_open(arg); }

static void ka_open(struct etcd_keepalive *k)
{
    static const struct rpc_stream_callbacks cb = {ka_on_message, ka_on_writable, ka_on_closed};
    if (rpc_stream_open(&k->s, k->c->ch[k->ep], "/etcdserverpb.Lease/LeaseKeepAlive", &cb, k) != 0) {
        k->s = NULL;
        timer_start(k->c->timers, &k->t_reopen, rpc_now_ms() + REOPEN_MS);
        return;
    }
    k->c->pending++;
    ka_send(k);
}

struct etcd_keepalive *etcd_keepalive_start(struct etcd_client *c, int64_t lease_id,
                                            int64_t ttl_s, int64_t granted_at_ms,
                                            const struct etcd_keepalive_callbacks *cb, void *arg)
{
    struct etcd_keepalive *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    k->c = c;
    k->id = lease_id;
    k->ttl_ms = (ttl_s > 0 ? ttl_s : 1) * 1000;
    k->deadline = granted_at_ms + k->ttl_ms;
    k->cb = *cb;
    k->arg = arg;
    k->ep = c->cur;
    timer_init(&k->t_send, ka_on_send_timer, k);
    timer_init(&k->t_deadline, ka_on_deadline, k);
    timer_init(&k->t_reopen, ka_reopen_timer, k);
    timer_start(c->timers, &k->t_deadline, k->deadline);
    timer_start(c->timers, &k->t_send, rpc_now_ms() + k->ttl_ms / 3);
    ka_open(k);
    return k;
}

void etcd_keepalive_stop(struct etcd_keepalive *k)
{
    if (!k) return;
    k->released = 1;
    timer_stop(k->c->timers, &k->t_send);
    timer_stop(k->c->timers, &k->t_deadline);
    timer_stop(k->c->timers, &k->t_reopen);
    if (k->s) rpc_stream_cancel(k->s);
    ka_maybe_free(k);
}

/* ---- watch ------------------------------------------------------------- */

struct etcd_watch {
    struct etcd_client *c;
    uint8_t *prefix, *range_end;
    size_t plen, relen;
    int64_t next_rev;           /* 0: from "now" (not yet known) */
    int prev_kv, ep, released, failed;
    struct etcd_watch_callbacks cb;
    void *arg;
    struct rpc_stream *s;
    struct timer t_reopen;
};

static void w_maybe_free(struct etcd_watch *w)
{
    if (w->released && !w->s) {
        timer_stop(w->c->timers, &w->t_reopen);
        free(w->prefix);
        free(w->range_end);
        free(w);
    }
}

static void w_fail(struct etcd_watch *w, const char *why)
{
    if (w->failed || w->released) return;
    w->failed = 1;
    timer_stop(w->c->timers, &w->t_reopen);
    if (w->s) rpc_stream_cancel(w->s);
    w->cb.on_error(w->arg, why);
}

static void w_on_message(void *arg, const uint8_t *data, size_t len)
{
    struct etcd_watch *w = arg;
    Etcdserverpb__WatchResponse *m;
    char why[300];
    int64_t last = 0;

    if (w->failed || w->released) return;
    m = etcdserverpb__watch_response__unpack(NULL, len, data);
    if (!m) {
        w_fail(w, "watch: an answer from etcd does not decode");
        return;
    }
    if (m->compact_revision > 0 || m->canceled) {
        if (m->compact_revision > 0)
            snprintf(why, sizeof why,
                     "watch from revision %lld: etcd has compacted its history up to revision %lld",
                     (long long)w->next_rev, (long long)m->compact_revision);
        else
            snprintf(why, sizeof why, "watch: etcd cancelled it: %s",
                     m->cancel_reason && *m->cancel_reason ? m->cancel_reason : "no reason given");
        etcdserverpb__watch_response__free_unpacked(m, NULL);
        w_fail(w, why);
        return;
    }
    if (m->created && w->next_rev == 0 && m->header) w->next_rev = m->header->revision + 1;
    for (size_t i = 0; i < m->n_events && !w->failed && !w->released; i++) {
        const Mvccpb__Event *ev = m->events[i];
        if (!ev->kv || ev->kv->mod_revision < w->next_rev) continue;   /* seen before a reopen */
        last = ev->kv->mod_revision;
        w->cb.on_event(w->arg, ev);
    }
    /* etcd sends every event of a revision in one answer */
    if (last) w->next_rev = last + 1;
    etcdserverpb__watch_response__free_unpacked(m, NULL);
}

static void w_on_writable(void *arg) { (void)arg; }

static void w_open(struct etcd_watch *w);

static void w_on_closed(void *arg, int status, const char *details)
{
    struct etcd_watch *w = arg;
    char why[300];
    w->s = NULL;
    w->c->pending--;
    if (!w->released && !w->failed) {
        if (status == RPC_UNIMPLEMENTED || status == RPC_INVALID_ARGUMENT ||
            status == RPC_PERMISSION_DENIED || status == RPC_UNAUTHENTICATED ||
            status == RPC_FAILED_PRECONDITION || status == RPC_OUT_OF_RANGE) {
            snprintf(why, sizeof why, "watch via %s: etcd ended it: %s (%s)", w->c->ep[w->ep],
                     details && *details ? details : "no details", rpc_status_name(status));
            w_fail(w, why);
        } else {
            w->ep = (w->ep + 1) % w->c->n_ep;
            timer_start(w->c->timers, &w->t_reopen, rpc_now_ms() + REOPEN_MS);
        }
    }
    w_maybe_free(w);
}

static void w_reopen_timer(void *arg) { w_open(arg); }

static void w_open(struct etcd_watch *w)
{
    static const struct rpc_stream_callbacks cb = {w_on_message, w_on_writable, w_on_closed};
    Etcdserverpb__WatchRequest q = ETCDSERVERPB__WATCH_REQUEST__INIT;
    Etcdserverpb__WatchCreateRequest cr = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    uint8_t *data;
    size_t len;

    if (rpc_stream_open(&w->s, w->c->ch[w->ep], "/etcdserverpb.Watch/Watch", &cb, w) != 0) {
        w->s = NULL;
        timer_start(w->c->timers, &w->t_reopen, rpc_now_ms() + REOPEN_MS);
        return;
    }
    w->c->pending++;
    cr.key = BIN(w->prefix, w->plen);
    cr.range_end = BIN(w->range_end, w->relen);
    cr.start_revision = w->next_rev;
    cr.prev_kv = w->prev_kv;
    q.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
    q.create_request = &cr;
    data = rpc_pack(&q.base, &len);
    if (rpc_stream_send(w->s, data, len) != 0) rpc_stream_cancel(w->s);   /* reopens */
}

struct etcd_watch *etcd_watch_start(struct etcd_client *c, const void *prefix, size_t plen,
                                    int64_t start_revision, int prev_kv,
                                    const struct etcd_watch_callbacks *cb, void *arg)
{
    struct etcd_watch *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->prefix = malloc(plen ? plen : 1);
    w->range_end = malloc(plen ? plen : 1);
    if (!w->prefix || !w->range_end) {
        free(w->prefix);
        free(w->range_end);
        free(w);
        return NULL;
    }
    if (plen) memcpy(w->prefix, prefix, plen);
    else w->prefix[0] = 0;
    w->plen = plen ? plen : 1;       /* the empty prefix: every key, from "\0" */
    w->relen = etcd_prefix_end(prefix, plen, w->range_end);
    w->c = c;
    w->next_rev = start_revision > 0 ? start_revision : 0;
    w->prev_kv = prev_kv;
    w->cb = *cb;
    w->arg = arg;
    w->ep = c->cur;
    timer_init(&w->t_reopen, w_reopen_timer, w);
    w_open(w);
    return w;
}

void etcd_watch_stop(struct etcd_watch *w)
{
    if (!w) return;
    w->released = 1;
    timer_stop(w->c->timers, &w->t_reopen);
    if (w->s) rpc_stream_cancel(w->s);
    w_maybe_free(w);
}
