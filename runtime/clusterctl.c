/* clusterctl — see clusterctl.h. */
#include "clusterctl.h"

#include <grpc/grpc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "etcd.h"
#include "rpc.h"
#include "store.h"
#include "timer.h"

#define WAIT_MS 15000

/* A private loop and etcd client for a few synchronous calls. */
struct ctl {
    struct rpc_loop loop;
    struct timer_heap timers;
    struct etcd_client *etcd;
    char prefix[CFG_CLUSTER_NAME_MAX + 16];
    size_t plen;
    int done;
    /* the last answer, copied */
    int status, succeeded;
    char error[600];
    int64_t revision;
    size_t n;
    char **keys, **vals;
    int64_t *mods, *leases;
};

static void ctl_clear(struct ctl *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->keys[i]);
        free(t->vals[i]);
    }
    free(t->keys);
    free(t->vals);
    free(t->mods);
    free(t->leases);
    t->keys = t->vals = NULL;
    t->mods = t->leases = NULL;
    t->n = 0;
}

static char *dup_n(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        if (n) memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static void on_done(void *arg, const struct etcd_result *r)
{
    struct ctl *t = arg;
    ctl_clear(t);
    t->done = 1;
    t->status = r->status;
    t->succeeded = r->succeeded;
    t->revision = r->revision;
    snprintf(t->error, sizeof t->error, "%s", r->error ? r->error : "");
    if (r->status != RPC_OK || !r->n_kvs) return;
    t->keys = calloc(r->n_kvs, sizeof *t->keys);
    t->vals = calloc(r->n_kvs, sizeof *t->vals);
    t->mods = calloc(r->n_kvs, sizeof *t->mods);
    t->leases = calloc(r->n_kvs, sizeof *t->leases);
    if (!t->keys || !t->vals || !t->mods || !t->leases) {
        t->status = RPC_RESOURCE_EXHAUSTED;
        snprintf(t->error, sizeof t->error, "out of memory");
        return;
    }
    for (size_t i = 0; i < r->n_kvs; i++) {
        t->keys[i] = dup_n(r->kvs[i]->key.data, r->kvs[i]->key.len);
        t->vals[i] = dup_n(r->kvs[i]->value.data, r->kvs[i]->value.len);
        t->mods[i] = r->kvs[i]->mod_revision;
        t->leases[i] = r->kvs[i]->lease;
        t->n++;
        if (!t->keys[i] || !t->vals[i]) {
            t->status = RPC_RESOURCE_EXHAUSTED;
            snprintf(t->error, sizeof t->error, "out of memory");
            return;
        }
    }
}

static int ctl_wait(struct ctl *t, char *err, size_t errlen)
{
    int64_t until = rpc_now_ms() + WAIT_MS;
    while (!t->done && rpc_now_ms() < until) {
        int64_t wait = rpc_now_ms() + 50, due = timer_next_due(&t->timers);
        rpc_loop_next(&t->loop, due < wait ? due : wait);
        timer_run_due(&t->timers, rpc_now_ms());
    }
    if (!t->done) {
        snprintf(err, errlen, "etcd (%s) did not answer within %d ms", etcd_client_endpoint(t->etcd),
                 WAIT_MS);
        return -1;
    }
    t->done = 0;
    if (t->status != RPC_OK) {
        snprintf(err, errlen, "etcd: %s", t->error);
        return -1;
    }
    return 0;
}

static int ctl_open(struct ctl *t, const struct cfg *cfg, const struct log *lg, char *err,
                    size_t errlen)
{
    char e[600];
    memset(t, 0, sizeof *t);
    if (!cfg->cluster.enabled) {
        snprintf(err, errlen, "%s has no cluster group", cfg->path);
        return -1;
    }
    grpc_init();
    if (rpc_loop_init(&t->loop, (struct log *)lg) != 0) {
        snprintf(err, errlen, "cannot start gRPC");
        grpc_shutdown_blocking();
        return -1;
    }
    if (etcd_client_create_tls(&t->etcd, &t->loop, &t->timers, cfg->cluster.etcd,
                               &cfg->cluster.etcd_tls, e, sizeof e) != 0) {
        snprintf(err, errlen, "cluster.etcd: %s", e);
        rpc_loop_cleanup(&t->loop);
        grpc_shutdown_blocking();
        return -1;
    }
    t->plen = (size_t)snprintf(t->prefix, sizeof t->prefix, "/statemesh/%s/", cfg->cluster.name);
    return 0;
}

static void ctl_close(struct ctl *t)
{
    int64_t until = rpc_now_ms() + 2000;
    while (!etcd_client_idle(t->etcd) && rpc_now_ms() < until) {
        rpc_loop_next(&t->loop, rpc_now_ms() + 50);
        timer_run_due(&t->timers, rpc_now_ms());
    }
    etcd_client_destroy(&t->etcd);
    timer_heap_cleanup(&t->timers);
    rpc_loop_cleanup(&t->loop);
    ctl_clear(t);
    grpc_shutdown_blocking();
}

/* Reads every key under prefix + sub. */
static int ctl_read(struct ctl *t, const char *sub, char *err, size_t errlen)
{
    char k[200];
    uint8_t end[200];
    size_t kl = (size_t)snprintf(k, sizeof k, "%s%s", t->prefix, sub);
    size_t el = etcd_prefix_end(k, kl, end);
    etcd_range(t->etcd, k, kl, end, el, on_done, t);
    return ctl_wait(t, err, errlen);
}

static int id_ok(const char *id, size_t n)
{
    if (n == 0 || n > CFG_CLUSTER_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = id[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-'))
            return 0;
    }
    return 1;
}

int clusterctl_parse_nodes(const char *csv, char ids[][65], size_t max, char *err, size_t errlen)
{
    size_t n = 0;
    const char *p = csv;

    for (;;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (!id_ok(p, l)) {
            snprintf(err, errlen, "--cluster-assign: '%.*s' is not a node id (1..%d characters "
                     "of [A-Za-z0-9_.-], as cluster.node_id; the list is ID1,ID2,...)",
                     (int)(l > 80 ? 80 : l), p, CFG_CLUSTER_NAME_MAX);
            return -1;
        }
        if (n == max) {
            snprintf(err, errlen, "--cluster-assign: at most %zu nodes", max);
            return -1;
        }
        memcpy(ids[n], p, l);
        ids[n][l] = '\0';
        for (size_t j = 0; j < n; j++)
            if (strcmp(ids[j], ids[n]) == 0) {
                snprintf(err, errlen, "--cluster-assign: node %s is listed twice", ids[n]);
                return -1;
            }
        n++;
        if (!e) break;
        p = e + 1;
    }
    return (int)n;
}

int clusterctl_assign(const struct cfg *cfg, const char *nodes_csv, const struct log *lg,
                      char *out, size_t outlen, char *err, size_t errlen)
{
    char ids[CLUSTERCTL_MAX_NODES][65];
    struct ctl t;
    int n = clusterctl_parse_nodes(nodes_csv, ids, CLUSTERCTL_MAX_NODES, err, errlen);
    char running[400] = "", keys[CLUSTERCTL_MAX_NODES][128], vals[CLUSTERCTL_MAX_NODES][100];
    char **old_keys = NULL, ckey[128];
    int64_t *old_mods = NULL;
    size_t n_old = 0, o = 0, nd = 0;
    Etcdserverpb__Compare cmp[CLUSTERCTL_MAX_NODES * 2 + 2], *cmps[CLUSTERCTL_MAX_NODES * 2 + 2];
    Etcdserverpb__PutRequest put[CLUSTERCTL_MAX_NODES];
    Etcdserverpb__DeleteRangeRequest del[CLUSTERCTL_MAX_NODES * 2];
    Etcdserverpb__RequestOp op[CLUSTERCTL_MAX_NODES * 3], *ops[CLUSTERCTL_MAX_NODES * 3];
    Etcdserverpb__TxnRequest q = ETCDSERVERPB__TXN_REQUEST__INIT;
    size_t nc = 0, no = 0;
    int rc = -1;

    if (n < 0) return -1;
    if (ctl_open(&t, cfg, lg, err, errlen) != 0) return -1;
    /* 1. no node may run: an offline step */
    if (ctl_read(&t, "nodes/", err, errlen) != 0) goto out;
    for (size_t i = 0; i < t.n; i++)
        if (o < sizeof running - 80)
            o += (size_t)snprintf(running + o, sizeof running - o, "%s%s", o ? ", " : "",
                                  t.keys[i] + t.plen + 6);
    if (t.n) {
        snprintf(err, errlen, "node(s) %s of cluster %s are running (registered under %snodes/): "
                 "stop every node before assigning ranges (an offline rescale: docs/cluster.md)",
                 running, cfg->cluster.name, t.prefix);
        goto out;
    }
    /* 2. the ranges as they are: the Txn compares them */
    if (ctl_read(&t, "ranges/", err, errlen) != 0) goto out;
    if (t.n > CLUSTERCTL_MAX_NODES * 2) {
        snprintf(err, errlen, "etcd holds %zu ranges for cluster %s; at most %d can be replaced "
                 "in one Txn", t.n, cfg->cluster.name, CLUSTERCTL_MAX_NODES * 2);
        goto out;
    }
    n_old = t.n;
    old_keys = t.keys;
    old_mods = t.mods;
    t.keys = NULL;
    t.mods = NULL;
    for (size_t i = 0; i < n_old; i++) free(t.vals[i]);
    free(t.vals);
    free(t.leases);
    t.vals = NULL;
    t.leases = NULL;
    t.n = 0;
    /* 3. one Txn: ranges unchanged, no controller; put the new, delete the rest */
    snprintf(ckey, sizeof ckey, "%scontroller", t.prefix);
    etcdserverpb__compare__init(&cmp[nc]);
    cmp[nc].result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
    cmp[nc].target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE;
    cmp[nc].key = (ProtobufCBinaryData){strlen(ckey), (uint8_t *)ckey};
    cmp[nc].target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
    cmp[nc].create_revision = 0;
    cmps[nc] = &cmp[nc];
    nc++;
    for (size_t i = 0; i < n_old; i++) {
        etcdserverpb__compare__init(&cmp[nc]);
        cmp[nc].result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
        cmp[nc].target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD;
        cmp[nc].key = (ProtobufCBinaryData){strlen(old_keys[i]), (uint8_t *)old_keys[i]};
        cmp[nc].target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
        cmp[nc].mod_revision = old_mods[i];
        cmps[nc] = &cmp[nc];
        nc++;
    }
    o = 0;
    for (int i = 0; i < n; i++) {
        uint32_t first, last;
        int kl, vl;
        cluster_split(STORE_KEY_GROUPS, (uint32_t)n, (uint32_t)i, &first, &last);
        kl = snprintf(keys[i], sizeof keys[i], "%sranges/%04u", t.prefix, first);
        vl = snprintf(vals[i], sizeof vals[i], "end=%u owner=%s", last, ids[i]);
        etcdserverpb__put_request__init(&put[i]);
        put[i].key = (ProtobufCBinaryData){(size_t)kl, (uint8_t *)keys[i]};
        put[i].value = (ProtobufCBinaryData){(size_t)vl, (uint8_t *)vals[i]};
        etcdserverpb__request_op__init(&op[no]);
        op[no].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
        op[no].request_put = &put[i];
        ops[no] = &op[no];
        no++;
        if (o < outlen)
            o += (size_t)snprintf(out + o, outlen - o, "range %u-%u %s\n", first, last, ids[i]);
    }
    for (size_t i = 0; i < n_old; i++) {
        int kept = 0;
        for (int j = 0; j < n; j++) kept |= strcmp(keys[j], old_keys[i]) == 0;
        if (kept) continue;
        etcdserverpb__delete_range_request__init(&del[nd]);
        del[nd].key = (ProtobufCBinaryData){strlen(old_keys[i]), (uint8_t *)old_keys[i]};
        etcdserverpb__request_op__init(&op[no]);
        op[no].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
        op[no].request_delete_range = &del[nd++];
        ops[no] = &op[no];
        no++;
    }
    q.n_compare = nc;
    q.compare = cmps;
    q.n_success = no;
    q.success = ops;
    etcd_txn(t.etcd, &q, on_done, &t);
    if (ctl_wait(&t, err, errlen) != 0) goto out;
    if (!t.succeeded) {
        snprintf(err, errlen, "the ranges of cluster %s changed or a node started while "
                 "assigning (etcd's compare failed); nothing written: stop every node and run "
                 "it again", cfg->cluster.name);
        goto out;
    }
    if (o < outlen)
        snprintf(out + o, outlen - o, "cluster %s: %d range(s) assigned at revision %lld (the "
                 "epoch of every range)\n", cfg->cluster.name, n, (long long)t.revision);
    rc = 0;
out:
    for (size_t i = 0; i < n_old; i++) free(old_keys[i]);
    free(old_keys);
    free(old_mods);
    ctl_close(&t);
    return rc;
}

int clusterctl_owned(const struct cfg *cfg, uint8_t *want, const struct log *lg, char *err,
                     size_t errlen)
{
    struct ctl t;
    char owners[400] = "", owner[80];
    size_t o = 0, owned = 0;
    int rc = -1;

    memset(want, 0, STORE_KEY_GROUPS);
    if (ctl_open(&t, cfg, lg, err, errlen) != 0) return -1;
    if (ctl_read(&t, "ranges/", err, errlen) != 0) goto out;
    if (t.n == 0) {
        snprintf(err, errlen, "cluster %s has no key-group ranges in etcd (%sranges/): assign "
                 "them first with `statemeshd --cluster-assign ID1,ID2,... -c FILE` "
                 "(docs/cluster.md, \"Rescaling\")", cfg->cluster.name, t.prefix);
        goto out;
    }
    for (size_t i = 0; i < t.n; i++) {
        uint32_t end;
        unsigned long first = strtoul(t.keys[i] + t.plen + 7, NULL, 10);
        if (cluster_parse_range(t.vals[i], strlen(t.vals[i]), &end, owner, sizeof owner) != 0 ||
            first > end) {
            snprintf(err, errlen, "etcd's %s is not a range (\"end=N owner=ID\"): %.100s",
                     t.keys[i], t.vals[i]);
            goto out;
        }
        if (!strstr(owners, owner) && o < sizeof owners - 80)
            o += (size_t)snprintf(owners + o, sizeof owners - o, "%s%s", o ? "," : "", owner);
        if (strcmp(owner, cfg->cluster.node_id) != 0) continue;
        for (uint32_t g = (uint32_t)first; g <= end; g++) want[g] = 1;
        owned += end - first + 1;
    }
    if (!owned) {
        snprintf(err, errlen, "node %s owns no key group in cluster %s (owners: %s): list it in "
                 "`statemeshd --cluster-assign`, or start it without --from-savepoint",
                 cfg->cluster.node_id, cfg->cluster.name, owners);
        goto out;
    }
    LOG_INFO(lg, "restore.owned", "cluster=%s node=%s key_groups=%zu revision=%lld",
             cfg->cluster.name, cfg->cluster.node_id, owned, (long long)t.revision);
    rc = 0;
out:
    ctl_close(&t);
    return rc;
}
