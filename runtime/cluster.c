/*
 * cluster — see cluster.h for the keyspace, the fencing rule and the
 * interface.
 *
 * The node's states and what moves it (each step is one etcd call whose
 * callback starts the next; a failed call is retried after RETRY_MS):
 *
 *   JOINING: config (create or compare) -> lease grant -> register (Txn:
 *            members/<id>, nodes/<id> on the lease) -> keepalive
 *            -> read the prefix once -> watch from header.revision + 1
 *            -> joined; campaign for controller; maybe assign ranges
 *   SERVING  --fence timer (lease deadline - TTL/10 passed)-----> FENCED
 *   FENCED   --keepalive answered in time again (deadline moved)-> SERVING
 *   SERVING/FENCED --on_lost (etcd: lease gone, or deadline passed)-> FENCED,
 *            then lease grant -> register -> SERVING (the ranges it still
 *            owns are served again; the controller key went with the old
 *            lease, so it campaigns again)
 *
 * Tables, all fed by the one read and the watch: nodes (append-only, so an
 * index stays valid; the owner table holds index + 1), ranges sorted by
 * first key group, and owner[kg] / epoch[kg] rebuilt from the ranges after
 * each change.
 */
#include "cluster.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd.h"
#include "server.h"
#include "statemesh/v1/admin.pb-c.h"
#include "store.h"

#define RETRY_MS 500
#define WARN_EVERY_MS 5000
#define CLUSTER_ID_MAX 64
#define ADVERTISE_MAX 256
#define CONFIG_VALUE "key_groups=4096 hash=xxh3_64 format=1"
#define MAX_ASSIGN_NODES 100       /* etcd's --max-txn-ops is 128 by default */

struct cnode {
    char id[CLUSTER_ID_MAX + 1];
    char advertise[ADVERTISE_MAX];
    bool alive;                    /* nodes/<id> exists */
    bool member;                   /* members/<id> exists */
};

struct crange {
    uint32_t first, last;
    uint32_t owner;                /* index + 1 into nodes */
    int64_t epoch;
};

struct cluster {
    struct server *s;
    const struct cfg_cluster *cfg;
    struct log *log;
    struct etcd_client *etcd;
    char prefix[CFG_CLUSTER_NAME_MAX + 16];
    size_t plen;
    int64_t ttl_ms;
    uint32_t self;                 /* index + 1 into nodes */
    enum cluster_state state;
    bool joined, stopping, loading;
    bool paused;                   /* cluster_paused() */
    char failed[600];
    char fence_reason[300];
    void (*retry_fn)(struct cluster *c);
    struct timer retry, fence, assign_retry;
    int64_t lease_id, granted_at, lease_deadline;
    struct etcd_keepalive *ka;
    struct etcd_watch *watch;
    int64_t revision;
    char controller[CLUSTER_ID_MAX + 1];
    bool is_controller, campaigning, assigning, waiting_logged;
    int64_t last_warn_ms;
    struct cnode *nodes;
    size_t n_nodes, cap_nodes;
    struct crange *ranges;
    size_t n_ranges, cap_ranges;
    uint32_t owner[STORE_KEY_GROUPS];
    int64_t epoch[STORE_KEY_GROUPS];
    cluster_change_fn hook;
    void *hook_arg;
    cluster_key_fn key_hook;       /* keys under the prefix this module does not use */
    void *key_hook_arg;
};

/* ---- pure helpers ---------------------------------------------------------- */

void cluster_split(uint32_t groups, uint32_t parts, uint32_t i, uint32_t *first, uint32_t *last)
{
    uint64_t g = groups, p = parts;
    *first = (uint32_t)((i * g + p - 1) / p);
    *last = (uint32_t)(((i + 1) * g - 1) / p);
}

int cluster_word(const char *val, size_t len, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name), i = 0;

    while (i < len) {
        size_t j = i;
        while (j < len && val[j] != ' ') j++;
        if (j - i > nlen && memcmp(val + i, name, nlen) == 0 && val[i + nlen] == '=') {
            size_t vlen = j - i - nlen - 1;
            if (vlen >= outlen) return -1;
            memcpy(out, val + i + nlen + 1, vlen);
            out[vlen] = '\0';
            return 0;
        }
        i = j + 1;
    }
    return -1;
}

int cluster_parse_range(const char *val, size_t len, uint32_t *end, char *owner, size_t ownlen)
{
    char num[16], *e;
    unsigned long v;

    if (cluster_word(val, len, "end", num, sizeof num) != 0 ||
        cluster_word(val, len, "owner", owner, ownlen) != 0 || !owner[0] || !num[0])
        return -1;
    v = strtoul(num, &e, 10);
    if (*e || num[0] == '-' || v >= STORE_KEY_GROUPS) return -1;
    *end = (uint32_t)v;
    return 0;
}

/* ---- tables ---------------------------------------------------------------- */

static uint32_t node_find(const struct cluster *c, const char *id, size_t len)
{
    for (size_t i = 0; i < c->n_nodes; i++)
        if (strlen(c->nodes[i].id) == len && memcmp(c->nodes[i].id, id, len) == 0)
            return (uint32_t)i + 1;
    return 0;
}

/* The node's index + 1, added when absent; 0 if the id is unusable. */
static uint32_t node_get(struct cluster *c, const char *id, size_t len)
{
    uint32_t k = node_find(c, id, len);
    struct cnode *n;

    if (k) return k;
    if (len == 0 || len > CLUSTER_ID_MAX || c->n_nodes >= 4 * STORE_KEY_GROUPS) return 0;
    if (c->n_nodes == c->cap_nodes) {
        size_t cap = c->cap_nodes ? 2 * c->cap_nodes : 8;
        struct cnode *p = realloc(c->nodes, cap * sizeof *p);
        if (!p) return 0;
        c->nodes = p;
        c->cap_nodes = cap;
    }
    n = &c->nodes[c->n_nodes++];
    memset(n, 0, sizeof *n);
    memcpy(n->id, id, len);
    return (uint32_t)c->n_nodes;
}

static void rebuild_owners(struct cluster *c)
{
    memset(c->owner, 0, sizeof c->owner);
    memset(c->epoch, 0, sizeof c->epoch);
    for (size_t i = 0; i < c->n_ranges; i++)
        for (uint32_t kg = c->ranges[i].first; kg <= c->ranges[i].last; kg++) {
            c->owner[kg] = c->ranges[i].owner;
            c->epoch[kg] = c->ranges[i].epoch;
        }
}

static void range_put(struct cluster *c, uint32_t first, uint32_t last, uint32_t owner,
                      int64_t epoch)
{
    size_t i = 0;
    while (i < c->n_ranges && c->ranges[i].first < first) i++;
    if (i < c->n_ranges && c->ranges[i].first == first) {
        c->ranges[i].last = last;
        c->ranges[i].owner = owner;
        c->ranges[i].epoch = epoch;
        return;
    }
    if (c->n_ranges == c->cap_ranges) {
        size_t cap = c->cap_ranges ? 2 * c->cap_ranges : 16;
        struct crange *p = realloc(c->ranges, cap * sizeof *p);
        if (!p) return;
        c->ranges = p;
        c->cap_ranges = cap;
    }
    memmove(&c->ranges[i + 1], &c->ranges[i], (c->n_ranges - i) * sizeof *c->ranges);
    c->ranges[i] = (struct crange){first, last, owner, epoch};
    c->n_ranges++;
}

static void range_delete(struct cluster *c, uint32_t first)
{
    for (size_t i = 0; i < c->n_ranges; i++)
        if (c->ranges[i].first == first) {
            memmove(&c->ranges[i], &c->ranges[i + 1], (c->n_ranges - i - 1) * sizeof *c->ranges);
            c->n_ranges--;
            return;
        }
}

static void notify(struct cluster *c)
{
    if (c->hook) c->hook(c->hook_arg);
}

/* etcd could not be reached: one warning per WARN_EVERY_MS. */
static void warn_etcd(struct cluster *c, const char *step, const char *why)
{
    int64_t now = rpc_now_ms();
    char q[700];
    if (now - c->last_warn_ms < WARN_EVERY_MS) return;
    c->last_warn_ms = now;
    LOG_WARN(c->log, "cluster.etcd_failed", "step=%s err=%s msg=\"retrying every %d ms\"", step,
             log_quote(q, sizeof q, why), RETRY_MS);
}

static void retry_later(struct cluster *c, void (*fn)(struct cluster *))
{
    if (c->stopping) return;
    c->retry_fn = fn;
    timer_start(&c->s->timers, &c->retry, rpc_now_ms() + RETRY_MS);
}

static void on_retry(void *arg)
{
    struct cluster *c = arg;
    void (*fn)(struct cluster *) = c->retry_fn;
    c->retry_fn = NULL;
    if (fn && !c->stopping) fn(c);
}

static size_t key_of(const struct cluster *c, char *out, size_t outlen, const char *rest)
{
    int n = snprintf(out, outlen, "%s%s", c->prefix, rest);
    return n < 0 ? 0 : (size_t)n >= outlen ? outlen - 1 : (size_t)n;
}

/* ---- fencing --------------------------------------------------------------- */

static int64_t serving_until(const struct cluster *c)
{
    return c->lease_deadline ? c->lease_deadline - c->ttl_ms / 10 : 0;
}

/* Serving by the clock: completions are handled before the loop runs the
 * fence timer, so the state alone may be a moment late. */
static bool lease_ok(const struct cluster *c)
{
    return c->state == CLUSTER_SERVING && c->ka && rpc_now_ms() < serving_until(c);
}

static void set_serving(struct cluster *c)
{
    if (c->state == CLUSTER_SERVING) return;
    LOG_INFO(c->log, "cluster.serving", "node=%s lease=%" PRIx64 " was=%s", c->cfg->node_id,
             (uint64_t)c->lease_id, c->state == CLUSTER_FENCED ? "fenced" : "joining");
    c->state = CLUSTER_SERVING;
    c->fence_reason[0] = '\0';
    notify(c);
}

static void set_fenced(struct cluster *c, const char *why)
{
    char q[400];
    if (c->state == CLUSTER_FENCED) return;
    c->state = CLUSTER_FENCED;
    snprintf(c->fence_reason, sizeof c->fence_reason, "%s", why);
    LOG_WARN(c->log, "cluster.fenced", "node=%s reason=%s msg=\"this node stops serving its "
             "ranges until it is registered again\"", c->cfg->node_id,
             log_quote(q, sizeof q, why));
    notify(c);
}

static void arm_fence(struct cluster *c)
{
    timer_start(&c->s->timers, &c->fence, serving_until(c));
}

static void on_fence_timer(void *arg)
{
    struct cluster *c = arg;
    if (c->state == CLUSTER_SERVING && rpc_now_ms() >= serving_until(c))
        set_fenced(c, "the lease was not renewed in time (etcd unreachable or without quorum, "
                   "or this process stalled)");
    else if (c->state == CLUSTER_SERVING)
        arm_fence(c);
}

/* ---- joining ---------------------------------------------------------------- */

static void join_config(struct cluster *c);
static void join_lease(struct cluster *c);
static void load(struct cluster *c);
static void campaign(struct cluster *c);
static void maybe_assign(struct cluster *c);

static void on_config(void *arg, const struct etcd_result *r)
{
    struct cluster *c = arg;
    char have[32];
    const Mvccpb__KeyValue *kv;

    if (c->stopping) return;
    if (r->status != RPC_OK) {
        warn_etcd(c, "config", r->error);
        retry_later(c, join_config);
        return;
    }
    if (!r->succeeded) {
        kv = r->n_kvs ? r->kvs[0] : NULL;
        if (!kv) {            /* deleted in between: try again */
            retry_later(c, join_config);
            return;
        }
        const char *v = (const char *)kv->value.data;
        size_t n = kv->value.len;
        if (cluster_word(v, n, "key_groups", have, sizeof have) != 0 ||
            strtoul(have, NULL, 10) != STORE_KEY_GROUPS) {
            snprintf(c->failed, sizeof c->failed, "etcd's %sconfig says key_groups=%s but this "
                     "node stores %d key groups: it cannot join cluster %s (a cluster's key-group "
                     "count never changes)", c->prefix,
                     cluster_word(v, n, "key_groups", have, sizeof have) == 0 ? have : "(missing)",
                     STORE_KEY_GROUPS, c->cfg->name);
            return;
        }
        if (cluster_word(v, n, "hash", have, sizeof have) != 0 || strcmp(have, "xxh3_64") != 0) {
            snprintf(c->failed, sizeof c->failed, "etcd's %sconfig says hash=%s but this node "
                     "hashes addresses with xxh3_64: it cannot join cluster %s", c->prefix,
                     cluster_word(v, n, "hash", have, sizeof have) == 0 ? have : "(missing)",
                     c->cfg->name);
            return;
        }
    }
    join_lease(c);
}

static void join_config(struct cluster *c)
{
    char key[128];
    size_t klen = key_of(c, key, sizeof key, "config");
    etcd_cas(c->etcd, key, klen, CONFIG_VALUE, strlen(CONFIG_VALUE), 0, 0, on_config, c);
}

static void on_keepalive_deadline(void *arg, int64_t deadline_ms)
{
    struct cluster *c = arg;
    c->lease_deadline = deadline_ms;
    if (c->stopping || !c->ka) return;
    if (c->state == CLUSTER_FENCED && rpc_now_ms() < serving_until(c)) set_serving(c);
    if (c->state == CLUSTER_SERVING) arm_fence(c);
}

static void on_keepalive_lost(void *arg, const char *why)
{
    struct cluster *c = arg;
    char reason[300];

    if (c->stopping) return;
    snprintf(reason, sizeof reason, "lease lost: %s", why);
    if (c->ka) etcd_keepalive_stop(c->ka);
    c->ka = NULL;
    c->lease_deadline = 0;
    c->is_controller = false;
    timer_stop(&c->s->timers, &c->fence);
    set_fenced(c, reason);
    join_lease(c);             /* register again with a new lease */
}

static void on_register(void *arg, const struct etcd_result *r)
{
    struct cluster *c = arg;
    static const struct etcd_keepalive_callbacks cb = {on_keepalive_deadline, on_keepalive_lost};

    if (c->stopping) return;
    if (r->status != RPC_OK) {
        warn_etcd(c, "register", r->error);
        retry_later(c, join_lease);      /* the lease may be gone by then */
        return;
    }
    c->lease_deadline = c->granted_at + c->ttl_ms;
    if (!(c->ka = etcd_keepalive_start(c->etcd, c->lease_id, c->ttl_ms / 1000, c->granted_at,
                                       &cb, c))) {
        retry_later(c, join_lease);
        return;
    }
    LOG_INFO(c->log, "cluster.registered", "node=%s advertise=%s lease=%" PRIx64 " ttl_ms=%lld",
             c->cfg->node_id, c->cfg->advertise, (uint64_t)c->lease_id, (long long)c->ttl_ms);
    if (rpc_now_ms() >= serving_until(c)) return;    /* too late: on_lost comes */
    if (c->joined) {
        set_serving(c);
        arm_fence(c);
        campaign(c);
    } else {
        load(c);
    }
}

static void join_register(struct cluster *c)
{
    char mkey[160], nkey[160], val[ADVERTISE_MAX + 16];
    size_t mlen, nlen, vlen;
    Etcdserverpb__PutRequest pm = ETCDSERVERPB__PUT_REQUEST__INIT;
    Etcdserverpb__PutRequest pn = ETCDSERVERPB__PUT_REQUEST__INIT;
    Etcdserverpb__RequestOp om = ETCDSERVERPB__REQUEST_OP__INIT, on = ETCDSERVERPB__REQUEST_OP__INIT;
    Etcdserverpb__RequestOp *ops[2] = {&om, &on};
    Etcdserverpb__TxnRequest q = ETCDSERVERPB__TXN_REQUEST__INIT;

    snprintf(mkey, sizeof mkey, "%smembers/%s", c->prefix, c->cfg->node_id);
    snprintf(nkey, sizeof nkey, "%snodes/%s", c->prefix, c->cfg->node_id);
    mlen = strlen(mkey);
    nlen = strlen(nkey);
    vlen = (size_t)snprintf(val, sizeof val, "advertise=%s", c->cfg->advertise);
    pm.key = (ProtobufCBinaryData){mlen, (uint8_t *)mkey};
    pm.value = (ProtobufCBinaryData){vlen, (uint8_t *)val};
    pn.key = (ProtobufCBinaryData){nlen, (uint8_t *)nkey};
    pn.value = pm.value;
    pn.lease = c->lease_id;
    om.request_case = on.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    om.request_put = &pm;
    on.request_put = &pn;
    q.n_success = 2;
    q.success = ops;
    etcd_txn(c->etcd, &q, on_register, c);
}

static void on_lease(void *arg, const struct etcd_result *r)
{
    struct cluster *c = arg;
    if (c->stopping) return;
    if (r->status != RPC_OK) {
        warn_etcd(c, "lease", r->error);
        retry_later(c, join_lease);
        return;
    }
    c->lease_id = r->lease_id;
    join_register(c);
}

static void join_lease(struct cluster *c)
{
    c->granted_at = rpc_now_ms();
    etcd_lease_grant(c->etcd, c->ttl_ms / 1000, on_lease, c);
}

/* ---- the table: one read, then the watch --------------------------------- */

/* Applies one key (PUT: kv set; DELETE: value ignored). Returns 1 when the
 * ranges changed. */
static int apply(struct cluster *c, const Mvccpb__KeyValue *kv, int is_put)
{
    const char *k = (const char *)kv->key.data;
    size_t klen = kv->key.len;
    const char *v = (const char *)kv->value.data;
    size_t vlen = kv->value.len;
    char adv[ADVERTISE_MAX], owner[CLUSTER_ID_MAX + 1];
    uint32_t idx, end;

    if (klen < c->plen || memcmp(k, c->prefix, c->plen) != 0) return 0;
    k += c->plen;
    klen -= c->plen;
    if (klen > 6 && memcmp(k, "nodes/", 6) == 0) {
        if (!(idx = node_get(c, k + 6, klen - 6))) return 0;
        c->nodes[idx - 1].alive = is_put;
        if (is_put && cluster_word(v, vlen, "advertise", adv, sizeof adv) == 0)
            memcpy(c->nodes[idx - 1].advertise, adv, sizeof adv);
        return 0;
    }
    if (klen > 8 && memcmp(k, "members/", 8) == 0) {
        if (!(idx = node_get(c, k + 8, klen - 8))) return 0;
        c->nodes[idx - 1].member = is_put;
        if (is_put && cluster_word(v, vlen, "advertise", adv, sizeof adv) == 0)
            memcpy(c->nodes[idx - 1].advertise, adv, sizeof adv);
        return 0;
    }
    if (klen == 10 && memcmp(k, "controller", 10) == 0) {
        c->controller[0] = '\0';
        c->is_controller = false;
        if (is_put && vlen <= CLUSTER_ID_MAX) {
            memcpy(c->controller, v, vlen);
            c->controller[vlen] = '\0';
            c->is_controller = strcmp(c->controller, c->cfg->node_id) == 0 &&
                               kv->lease == c->lease_id && c->ka != NULL;
        }
        return 0;
    }
    if (klen == 11 && memcmp(k, "ranges/", 7) == 0) {
        char num[5];
        char *e;
        unsigned long first;
        memcpy(num, k + 7, 4);
        num[4] = '\0';
        first = strtoul(num, &e, 10);
        if (*e || first >= STORE_KEY_GROUPS) return 0;
        if (!is_put) {
            range_delete(c, (uint32_t)first);
            return 1;
        }
        if (cluster_parse_range(v, vlen, &end, owner, sizeof owner) != 0 || end < first ||
            !(idx = node_get(c, owner, strlen(owner)))) {
            char q[400], shown[151];
            size_t n = vlen < 150 ? vlen : 150;
            memcpy(shown, v, n);
            shown[n] = '\0';
            LOG_WARN(c->log, "cluster.bad_range", "first=%lu value=%s msg=\"ignored\"", first,
                     log_quote(q, sizeof q, shown));
            return 0;
        }
        range_put(c, (uint32_t)first, end, idx, kv->mod_revision);
        return 1;
    }
    if (c->key_hook) c->key_hook(c->key_hook_arg, k, klen, v, vlen, is_put);
    return 0;
}

static void on_watch_event(void *arg, const Mvccpb__Event *ev)
{
    struct cluster *c = arg;
    int changed;

    if (c->stopping || !ev->kv) return;
    changed = apply(c, ev->kv, ev->type == MVCCPB__EVENT__EVENT_TYPE__PUT);
    if (ev->kv->mod_revision > c->revision) c->revision = ev->kv->mod_revision;
    if (changed) {
        rebuild_owners(c);
        LOG_INFO(c->log, "cluster.ranges", "ranges=%zu revision=%lld", c->n_ranges,
                 (long long)c->revision);
        notify(c);
    }
    if (!c->controller[0]) campaign(c);
    maybe_assign(c);
}

static void on_watch_error(void *arg, const char *why)
{
    struct cluster *c = arg;
    char q[400];
    LOG_WARN(c->log, "cluster.watch_ended", "err=%s msg=\"reading the topology again\"",
             log_quote(q, sizeof q, why));
    if (c->watch) etcd_watch_stop(c->watch);
    c->watch = NULL;
    if (!c->stopping && !c->loading) load(c);
}

static void on_load(void *arg, const struct etcd_result *r)
{
    struct cluster *c = arg;
    static const struct etcd_watch_callbacks cb = {on_watch_event, on_watch_error};

    c->loading = false;
    if (c->stopping) return;
    if (r->status != RPC_OK) {
        warn_etcd(c, "load", r->error);
        c->loading = true;
        retry_later(c, load);
        return;
    }
    for (size_t i = 0; i < c->n_nodes; i++) c->nodes[i].alive = c->nodes[i].member = false;
    c->n_ranges = 0;
    c->controller[0] = '\0';
    c->is_controller = false;
    for (size_t i = 0; i < r->n_kvs; i++) apply(c, r->kvs[i], 1);
    rebuild_owners(c);
    c->revision = r->revision;
    if (!(c->watch = etcd_watch_start(c->etcd, c->prefix, c->plen, r->revision + 1, 0, &cb, c))) {
        c->loading = true;
        retry_later(c, load);
        return;
    }
    LOG_INFO(c->log, "cluster.topology", "nodes=%zu ranges=%zu controller=%s revision=%lld",
             c->n_nodes, c->n_ranges, c->controller[0] ? c->controller : "-",
             (long long)r->revision);
    if (!c->joined) {
        c->joined = true;
        if (c->ka && rpc_now_ms() < serving_until(c)) {
            set_serving(c);
            arm_fence(c);
        }
    }
    notify(c);
    campaign(c);
    maybe_assign(c);
}

static void load(struct cluster *c)
{
    uint8_t end[sizeof c->prefix];
    size_t elen = etcd_prefix_end(c->prefix, c->plen, end);
    c->loading = true;
    etcd_range(c->etcd, c->prefix, c->plen, end, elen, on_load, c);
}

/* ---- controller ------------------------------------------------------------- */

static void on_campaign(void *arg, const struct etcd_result *r)
{
    struct cluster *c = arg;
    c->campaigning = false;
    if (c->stopping) return;
    if (r->status != RPC_OK) {
        warn_etcd(c, "campaign", r->error);
        timer_start(&c->s->timers, &c->assign_retry, rpc_now_ms() + RETRY_MS);
        return;
    }
    if (r->succeeded) {
        snprintf(c->controller, sizeof c->controller, "%s", c->cfg->node_id);
        c->is_controller = true;
        LOG_INFO(c->log, "cluster.controller", "node=%s revision=%lld", c->cfg->node_id,
                 (long long)r->revision);
        maybe_assign(c);
    }
}

static void campaign(struct cluster *c)
{
    char key[128];
    size_t klen = key_of(c, key, sizeof key, "controller");
    Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT, *cmps[1] = {&cmp};
    Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
    Etcdserverpb__RequestOp op = ETCDSERVERPB__REQUEST_OP__INIT, *ops[1] = {&op};
    Etcdserverpb__TxnRequest q = ETCDSERVERPB__TXN_REQUEST__INIT;

    if (!c->joined || c->stopping || c->campaigning || c->controller[0] || !lease_ok(c))
        return;
    cmp.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
    cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE;
    cmp.key = (ProtobufCBinaryData){klen, (uint8_t *)key};
    cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
    cmp.create_revision = 0;
    put.key = cmp.key;
    put.value = (ProtobufCBinaryData){strlen(c->cfg->node_id), (uint8_t *)c->cfg->node_id};
    put.lease = c->lease_id;
    op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    op.request_put = &put;
    q.n_compare = 1;
    q.compare = cmps;
    q.n_success = 1;
    q.success = ops;
    c->campaigning = true;
    etcd_txn(c->etcd, &q, on_campaign, c);
}

static void on_assign(void *arg, const struct etcd_result *r)
{
    struct cluster *c = arg;
    c->assigning = false;
    if (c->stopping) return;
    if (r->status != RPC_OK) {
        warn_etcd(c, "assign", r->error);
        timer_start(&c->s->timers, &c->assign_retry, rpc_now_ms() + RETRY_MS);
        return;
    }
    if (r->succeeded)
        LOG_INFO(c->log, "cluster.assigned", "revision=%lld msg=\"first range assignment "
                 "written\"", (long long)r->revision);
    /* else: the controller changed or ranges exist; the watch says what */
}

static int by_id(const void *a, const void *b)
{
    return strcmp((*(const struct cnode *const *)a)->id, (*(const struct cnode *const *)b)->id);
}

/* The first assignment: contiguous even ranges over the alive nodes, in
 * one Txn guarded by this node's controller key (same lease, still ours)
 * and by every range key being absent. */
static void maybe_assign(struct cluster *c)
{
    struct cnode *alive[MAX_ASSIGN_NODES];
    size_t n = 0;
    char ckey[128], keys[MAX_ASSIGN_NODES][128], vals[MAX_ASSIGN_NODES][CLUSTER_ID_MAX + 32];
    Etcdserverpb__Compare cmp[MAX_ASSIGN_NODES + 1], *cmps[MAX_ASSIGN_NODES + 1];
    Etcdserverpb__PutRequest put[MAX_ASSIGN_NODES];
    Etcdserverpb__RequestOp op[MAX_ASSIGN_NODES], *ops[MAX_ASSIGN_NODES];
    Etcdserverpb__TxnRequest q = ETCDSERVERPB__TXN_REQUEST__INIT;
    size_t cklen;

    if (!c->is_controller || c->n_ranges || c->assigning || c->stopping || !lease_ok(c)) return;
    for (size_t i = 0; i < c->n_nodes && n < MAX_ASSIGN_NODES; i++)
        if (c->nodes[i].alive) alive[n++] = &c->nodes[i];
    if (n < (size_t)c->cfg->initial_nodes) {
        if (!c->waiting_logged)
            LOG_INFO(c->log, "cluster.waiting_for_nodes", "alive=%zu initial_nodes=%d", n,
                     c->cfg->initial_nodes);
        c->waiting_logged = true;
        return;
    }
    qsort(alive, n, sizeof *alive, by_id);
    cklen = key_of(c, ckey, sizeof ckey, "controller");
    etcdserverpb__compare__init(&cmp[0]);
    cmp[0].result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
    cmp[0].target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE;
    cmp[0].key = (ProtobufCBinaryData){cklen, (uint8_t *)ckey};
    cmp[0].target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE;
    cmp[0].lease = c->lease_id;
    cmps[0] = &cmp[0];
    for (size_t i = 0; i < n; i++) {
        uint32_t first, last;
        int kl, vl;
        cluster_split(STORE_KEY_GROUPS, (uint32_t)n, (uint32_t)i, &first, &last);
        kl = snprintf(keys[i], sizeof keys[i], "%sranges/%04u", c->prefix, first);
        vl = snprintf(vals[i], sizeof vals[i], "end=%u owner=%s", last, alive[i]->id);
        etcdserverpb__compare__init(&cmp[i + 1]);
        cmp[i + 1].result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
        cmp[i + 1].target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE;
        cmp[i + 1].key = (ProtobufCBinaryData){(size_t)kl, (uint8_t *)keys[i]};
        cmp[i + 1].target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
        cmp[i + 1].create_revision = 0;
        cmps[i + 1] = &cmp[i + 1];
        etcdserverpb__put_request__init(&put[i]);
        put[i].key = cmp[i + 1].key;
        put[i].value = (ProtobufCBinaryData){(size_t)vl, (uint8_t *)vals[i]};
        etcdserverpb__request_op__init(&op[i]);
        op[i].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
        op[i].request_put = &put[i];
        ops[i] = &op[i];
    }
    q.n_compare = n + 1;
    q.compare = cmps;
    q.n_success = n;
    q.success = ops;
    c->assigning = true;
    LOG_INFO(c->log, "cluster.assigning", "nodes=%zu key_groups=%d", n, STORE_KEY_GROUPS);
    etcd_txn(c->etcd, &q, on_assign, c);
}

static void on_assign_retry(void *arg)
{
    struct cluster *c = arg;
    if (c->stopping) return;
    campaign(c);
    maybe_assign(c);
}

/* ---- life ------------------------------------------------------------------ */

/* The node id and cluster name kept in the store (X meta). */
static int check_store_identity(struct server *s, const struct cfg_cluster *cc, char *err,
                                size_t errlen)
{
    static const char *names[2] = {"cluster_name", "cluster_node"};
    const char *want[2] = {cc->name, cc->node_id};
    struct store_batch *b = NULL;
    int missing = 0, rc = 0;

    for (int i = 0; i < 2; i++) {
        uint8_t *val = NULL;
        size_t len = 0;
        int r = store_get_meta(s->store, names[i], &val, &len);
        if (r < 0) {
            snprintf(err, errlen, "cannot read the store's cluster identity: %s",
                     store_last_error(s->store));
            return -1;
        }
        if (r == 1) {
            missing = 1;
            continue;
        }
        if (len != strlen(want[i]) || memcmp(val, want[i], len) != 0) {
            snprintf(err, errlen, "the data dir %s belongs to %s '%.*s', but the configuration "
                     "says cluster.%s = \"%s\": refusing to start (a node keeps its identity "
                     "with its data; use the old value, or another data dir)", s->cfg.data_dir,
                     i ? "node" : "cluster", (int)(len > 64 ? 64 : len), (const char *)val,
                     i ? "node_id" : "name", want[i]);
            free(val);
            return -1;
        }
        free(val);
    }
    if (!missing) return 0;
    if (!(b = store_batch_create())) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < 2; i++) store_batch_put_meta(b, names[i], want[i], strlen(want[i]));
    if (store_write(s->store, b, true) != 0) {
        snprintf(err, errlen, "cannot write the node id into the store: %s",
                 store_last_error(s->store));
        rc = -1;
    }
    store_batch_destroy(&b);
    return rc;
}

int cluster_create(struct cluster **out, struct server *s, char *err, size_t errlen)
{
    const struct cfg_cluster *cc = &s->cfg.cluster;
    struct cluster *c;
    char e[300];

    *out = NULL;
    if (check_store_identity(s, cc, err, errlen) != 0) return -1;
    if (!(c = calloc(1, sizeof *c))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->s = s;
    c->cfg = cc;
    c->log = &s->log;
    c->ttl_ms = cc->lease_ttl_ms;
    c->plen = (size_t)snprintf(c->prefix, sizeof c->prefix, "/statemesh/%s/", cc->name);
    timer_init(&c->retry, on_retry, c);
    timer_init(&c->fence, on_fence_timer, c);
    timer_init(&c->assign_retry, on_assign_retry, c);
    if (etcd_client_create_tls(&c->etcd, &s->loop, &s->timers, cc->etcd, &cc->etcd_tls, e,
                               sizeof e) != 0) {
        snprintf(err, errlen, "cluster.etcd: %s", e);
        free(c);
        return -1;
    }
    if (!(c->self = node_get(c, cc->node_id, strlen(cc->node_id)))) {
        etcd_client_destroy(&c->etcd);
        free(c);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(c->nodes[c->self - 1].advertise, ADVERTISE_MAX, "%s", cc->advertise);
    *out = c;
    return 0;
}

void cluster_set_change_hook(struct cluster *c, cluster_change_fn fn, void *arg)
{
    c->hook = fn;
    c->hook_arg = arg;
}

void cluster_set_key_hook(struct cluster *c, cluster_key_fn fn, void *arg)
{
    c->key_hook = fn;
    c->key_hook_arg = arg;
}

struct etcd_client *cluster_etcd(const struct cluster *c) { return c->etcd; }
const char *cluster_prefix(const struct cluster *c) { return c->prefix; }
int64_t cluster_lease(const struct cluster *c) { return c->ka ? c->lease_id : 0; }
int64_t cluster_revision(const struct cluster *c) { return c->revision; }

size_t cluster_range_count(const struct cluster *c) { return c->n_ranges; }

void cluster_range(const struct cluster *c, size_t i, uint32_t *first, uint32_t *last,
                   const char **owner)
{
    *first = c->ranges[i].first;
    *last = c->ranges[i].last;
    *owner = c->nodes[c->ranges[i].owner - 1].id;
}

bool cluster_node_alive(const struct cluster *c, const char *id)
{
    uint32_t k = node_find(c, id, strlen(id));
    return k && c->nodes[k - 1].alive;
}

void cluster_start(struct cluster *c)
{
    LOG_INFO(c->log, "cluster.joining", "cluster=%s node=%s advertise=%s etcd=%s "
             "lease_ttl_ms=%lld initial_nodes=%d", c->cfg->name, c->cfg->node_id,
             c->cfg->advertise, c->cfg->etcd, (long long)c->ttl_ms, c->cfg->initial_nodes);
    join_config(c);
}

bool cluster_joined(const struct cluster *c) { return c->joined; }
const char *cluster_failed(const struct cluster *c) { return c->failed[0] ? c->failed : NULL; }
enum cluster_state cluster_state(const struct cluster *c) { return c->state; }
const char *cluster_node_id(const struct cluster *c) { return c->cfg->node_id; }

int64_t cluster_lease_valid_until(const struct cluster *c)
{
    return c->state == CLUSTER_SERVING ? serving_until(c) : 0;
}

bool cluster_serves(const struct cluster *c, uint32_t kg)
{
    return kg < STORE_KEY_GROUPS && c->owner[kg] == c->self && lease_ok(c);
}

bool cluster_paused(const struct cluster *c)
{
    return c && c->paused;
}

void cluster_set_paused(struct cluster *c, bool paused)
{
    c->paused = paused;
}

void cluster_owner(const struct cluster *c, uint32_t kg, struct cluster_owner *out)
{
    memset(out, 0, sizeof *out);
    if (kg >= STORE_KEY_GROUPS || !c->owner[kg]) return;
    const struct cnode *n = &c->nodes[c->owner[kg] - 1];
    out->node_id = n->id;
    out->advertise = n->advertise;
    out->epoch = c->epoch[kg];
    out->alive = n->alive;
}

void cluster_explain(const struct cluster *c, uint32_t kg, char *why, size_t whylen)
{
    struct cluster_owner o;

    cluster_owner(c, kg, &o);
    if (!o.node_id)
        snprintf(why, whylen, "key group %u has no owner yet: the cluster waits for %d nodes "
                 "to assign ranges (statemesh cluster status); retry", kg, c->cfg->initial_nodes);
    else if (c->owner[kg] != c->self)
        snprintf(why, whylen, "key group %u is owned by node %s at %s%s, not by this node %s; "
                 "%s", kg, o.node_id, o.advertise[0] ? o.advertise : "(unknown address)",
                 o.alive ? "" : " (down at the moment)", c->cfg->node_id,
                 o.alive ? "a call forwarded once is not forwarded again: send it there or retry"
                         : "retry once it is back");
    else
        snprintf(why, whylen, "node %s is fenced (%s): it serves key group %u again once it is "
                 "registered in etcd; retry", c->cfg->node_id,
                 c->fence_reason[0] ? c->fence_reason
                 : c->state == CLUSTER_JOINING ? "joining the cluster" : "its lease is about to expire",
                 kg);
}

static void on_revoked(void *arg, const struct etcd_result *r)
{
    struct cluster *c = arg;
    char q[400];
    if (r->status == RPC_OK)
        LOG_INFO(c->log, "cluster.left", "node=%s msg=\"lease revoked\"", c->cfg->node_id);
    else
        LOG_WARN(c->log, "cluster.leave_failed", "node=%s err=%s msg=\"the lease expires by "
                 "itself\"", c->cfg->node_id, log_quote(q, sizeof q, r->error));
}

void cluster_stop(struct cluster *c)
{
    if (!c || c->stopping) return;
    c->stopping = true;
    if (c->ka && c->lease_id) {
        etcd_client_set_timeout(c->etcd, 1000);
        etcd_lease_revoke(c->etcd, c->lease_id, on_revoked, c);
    }
    timer_stop(&c->s->timers, &c->retry);
    timer_stop(&c->s->timers, &c->fence);
    timer_stop(&c->s->timers, &c->assign_retry);
    if (c->watch) etcd_watch_stop(c->watch);
    c->watch = NULL;
    if (c->ka) {
        etcd_keepalive_stop(c->ka);
        c->ka = NULL;
    }
}

bool cluster_idle(const struct cluster *c) { return !c || etcd_client_idle(c->etcd); }

void cluster_destroy(struct cluster **cp)
{
    struct cluster *c = *cp;
    if (!c) return;
    cluster_stop(c);
    etcd_client_destroy(&c->etcd);
    free(c->nodes);
    free(c->ranges);
    free(c);
    *cp = NULL;
}

/* ---- GetTopology ------------------------------------------------------------ */

static const char *state_word(enum cluster_state st)
{
    return st == CLUSTER_SERVING ? "serving" : st == CLUSTER_FENCED ? "fenced" : "joining";
}

static void on_get_topology(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    struct server *s = arg;
    struct cluster *c = s->cluster;
    Statemesh__V1__GetTopologyRequest *r = statemesh__v1__get_topology_request__unpack(NULL, len, req);
    Statemesh__V1__GetTopologyResponse resp = STATEMESH__V1__GET_TOPOLOGY_RESPONSE__INIT;
    Statemesh__V1__TopologyNode *nodes = NULL, **np = NULL;
    Statemesh__V1__TopologyRange *ranges = NULL, **rp = NULL;
    struct cnode **sorted = NULL;

    if (!r) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "request is not a valid GetTopologyRequest");
        return;
    }
    statemesh__v1__get_topology_request__free_unpacked(r, NULL);
    if (!c) {
        rpc_call_reply(call, &resp.base);      /* cluster = false */
        return;
    }
    resp.cluster = 1;
    resp.cluster_name = (char *)c->cfg->name;
    resp.node_id = (char *)c->cfg->node_id;
    resp.controller = c->controller;
    resp.state = (char *)state_word(c->state);
    resp.fencing_reason = c->fence_reason;
    resp.revision = c->revision;
    resp.key_groups = STORE_KEY_GROUPS;
    nodes = calloc(c->n_nodes + 1, sizeof *nodes);
    np = calloc(c->n_nodes + 1, sizeof *np);
    sorted = calloc(c->n_nodes + 1, sizeof *sorted);
    ranges = calloc(c->n_ranges + 1, sizeof *ranges);
    rp = calloc(c->n_ranges + 1, sizeof *rp);
    if (!nodes || !np || !sorted || !ranges || !rp) {
        rpc_call_error(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < c->n_nodes; i++) sorted[i] = &c->nodes[i];
    qsort(sorted, c->n_nodes, sizeof *sorted, by_id);
    for (size_t i = 0; i < c->n_nodes; i++) {
        const struct cnode *n = sorted[i];
        bool self = n == &c->nodes[c->self - 1];
        statemesh__v1__topology_node__init(&nodes[i]);
        nodes[i].id = (char *)n->id;
        nodes[i].advertise = (char *)n->advertise;
        nodes[i].alive = n->alive;
        nodes[i].lease_ttl_left_ms = -1;
        nodes[i].outbox_frames = peer_outbox_depth(s->peer, n->id);
        if (self) {
            int64_t left = c->lease_deadline ? c->lease_deadline - rpc_now_ms() : 0;
            nodes[i].lease_ttl_left_ms = left > 0 && c->ka ? left : 0;
        }
        np[i] = &nodes[i];
    }
    for (size_t i = 0; i < c->n_ranges; i++) {
        statemesh__v1__topology_range__init(&ranges[i]);
        ranges[i].first = c->ranges[i].first;
        ranges[i].last = c->ranges[i].last;
        ranges[i].owner = c->nodes[c->ranges[i].owner - 1].id;
        ranges[i].epoch = c->ranges[i].epoch;
        rp[i] = &ranges[i];
    }
    resp.n_nodes = c->n_nodes;
    resp.nodes = np;
    resp.n_ranges = c->n_ranges;
    resp.ranges = rp;
    rpc_call_reply(call, &resp.base);
out:
    free(nodes);
    free(np);
    free(sorted);
    free(ranges);
    free(rp);
}

int cluster_register(struct rpc_server *rpc, struct server *s)
{
    return rpc_server_add_unary(rpc, "/statemesh.v1.Admin/GetTopology", on_get_topology, s);
}
