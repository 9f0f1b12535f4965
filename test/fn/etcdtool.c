/*
 * etcdtool — drives runtime/etcd.c against a real etcd, for
 * test/integration/test_etcd_client.py. One command per run; results are
 * lines on stdout, errors a sentence on stderr and exit status 1.
 *
 *   etcdtool ENDPOINTS put KEY VALUE            -> rev R
 *   etcdtool ENDPOINTS get KEY                  -> kv KEY VALUE MOD_REV (each), rev R
 *   etcdtool ENDPOINTS getp PREFIX              -> the same, every key with PREFIX
 *   etcdtool ENDPOINTS del KEY                  -> deleted N rev R
 *   etcdtool ENDPOINTS cas KEY VALUE EXPECT     -> ok rev R | conflict mod M
 *   etcdtool ENDPOINTS lease TTL KEY VALUE HOLD_MS
 *        grants a TTL s lease, puts KEY bound to it, keeps it alive for
 *        HOLD_MS (deadline lines: ms left), then exits without revoking it;
 *        exit 1 (after "lost WHY") as soon as the lease is lost.
 *   etcdtool ENDPOINTS watch PREFIX FROM_REV COUNT TIMEOUT_MS
 *        -> ev PUT|DELETE KEY VALUE MOD_REV per event until COUNT; exit 3 on timeout
 *   etcdtool ENDPOINTS writeloop PREFIX N [TIMEOUT_MS]
 *        puts PREFIX%06d=i for i < N in order, retrying each until it succeeds
 *        (each attempt bounded by TIMEOUT_MS, default etcd.h's)
 *        -> wrote N maxgap_ms G retries K
 *
 * $ETCDTOOL_TLS_CA (and _CERT, _KEY): TLS, ENDPOINTS are https://host:port.
 */
#include <grpc/grpc.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd.h"
#include "log.h"
#include "tls.h"
#include "rpc.h"
#include "timer.h"

struct tool {
    struct log log;
    struct rpc_loop loop;
    struct timer_heap timers;
    struct etcd_client *c;
    int done, failed;
    const char *key;
    size_t count, want;
    int64_t lease, ttl, granted_at, deadline;
    int lost, quiet;
};

static void run(struct tool *t, int64_t until_ms)
{
    while (!t->done && rpc_now_ms() < until_ms) {
        int64_t now = rpc_now_ms(), wait = now + 50, due = timer_next_due(&t->timers);
        if (due < wait) wait = due;
        if (until_ms < wait) wait = until_ms;
        rpc_loop_next(&t->loop, wait);
        timer_run_due(&t->timers, rpc_now_ms());
    }
}

static void print_kvs(const struct etcd_result *r)
{
    for (size_t i = 0; i < r->n_kvs; i++)
        printf("kv %.*s %.*s %" PRId64 "\n", (int)r->kvs[i]->key.len, (char *)r->kvs[i]->key.data,
               (int)r->kvs[i]->value.len, (char *)r->kvs[i]->value.data, r->kvs[i]->mod_revision);
}

static void on_done(void *arg, const struct etcd_result *r)
{
    struct tool *t = arg;
    t->done = 1;
    if (r->status != RPC_OK) {
        fprintf(stderr, "etcdtool: %s\n", r->error);
        t->failed = 1;
        return;
    }
    if (t->quiet) return;
    print_kvs(r);
    if (r->txn) {
        if (r->succeeded) printf("ok rev %" PRId64 "\n", r->revision);
        else printf("conflict mod %" PRId64 "\n", r->n_kvs ? r->kvs[0]->mod_revision : 0);
    } else if (r->lease_id) {
        t->lease = r->lease_id;
        t->ttl = r->ttl;
        printf("lease %" PRId64 " ttl %" PRId64 "\n", r->lease_id, r->ttl);
    } else {
        if (r->deleted) printf("deleted %" PRId64 " ", r->deleted);
        printf("rev %" PRId64 "\n", r->revision);
    }
    fflush(stdout);
}

static void ka_deadline(void *arg, int64_t deadline_ms)
{
    struct tool *t = arg;
    t->deadline = deadline_ms;
    printf("deadline %" PRId64 "\n", deadline_ms - rpc_now_ms());
    fflush(stdout);
}

static void ka_lost(void *arg, const char *why)
{
    struct tool *t = arg;
    t->lost = 1;
    t->done = 1;            /* ends the hold early */
    printf("lost %s\n", why);
    fflush(stdout);
}

static void w_event(void *arg, const Mvccpb__Event *ev)
{
    struct tool *t = arg;
    printf("ev %s %.*s %.*s %" PRId64 "\n", ev->type == MVCCPB__EVENT__EVENT_TYPE__DELETE ? "DELETE" : "PUT",
           (int)ev->kv->key.len, (char *)ev->kv->key.data, (int)ev->kv->value.len,
           (char *)ev->kv->value.data, ev->kv->mod_revision);
    fflush(stdout);
    if (++t->count >= t->want) t->done = 1;
}

static void w_error(void *arg, const char *why)
{
    struct tool *t = arg;
    fprintf(stderr, "etcdtool: %s\n", why);
    t->failed = 1;
    t->done = 1;
}

static int usage(void)
{
    fprintf(stderr, "usage: etcdtool ENDPOINTS put|get|getp|del|cas|lease|watch|writeloop ARGS...\n");
    return 2;
}

static int cmd(struct tool *t, int argc, char **argv)
{
    const char *op = argv[2];
    int64_t forever = rpc_now_ms() + 30000;

    if (!strcmp(op, "put") && argc == 5) {
        etcd_put(t->c, argv[3], strlen(argv[3]), argv[4], strlen(argv[4]), 0, on_done, t);
    } else if (!strcmp(op, "get") && argc == 4) {
        etcd_range(t->c, argv[3], strlen(argv[3]), NULL, 0, on_done, t);
    } else if (!strcmp(op, "getp") && argc == 4) {
        uint8_t end[256];
        size_t n = strlen(argv[3]) < sizeof end ? etcd_prefix_end(argv[3], strlen(argv[3]), end) : 0;
        if (!n) return usage();
        etcd_range(t->c, argv[3], strlen(argv[3]), end, n, on_done, t);
    } else if (!strcmp(op, "del") && argc == 4) {
        etcd_delete(t->c, argv[3], strlen(argv[3]), NULL, 0, on_done, t);
    } else if (!strcmp(op, "cas") && argc == 6) {
        etcd_cas(t->c, argv[3], strlen(argv[3]), argv[4], strlen(argv[4]), atoll(argv[5]), 0,
                 on_done, t);
    } else if (!strcmp(op, "lease") && argc == 7) {
        static const struct etcd_keepalive_callbacks kcb = {ka_deadline, ka_lost};
        struct etcd_keepalive *k;
        int64_t hold = atoll(argv[6]);
        t->granted_at = rpc_now_ms();
        etcd_lease_grant(t->c, atoll(argv[3]), on_done, t);
        run(t, forever);
        if (t->failed) return 1;
        t->done = 0;
        etcd_put(t->c, argv[4], strlen(argv[4]), argv[5], strlen(argv[5]), t->lease, on_done, t);
        run(t, forever);
        if (t->failed) return 1;
        if (!(k = etcd_keepalive_start(t->c, t->lease, t->ttl, t->granted_at, &kcb, t))) return 1;
        t->done = 0;
        run(t, rpc_now_ms() + hold);
        etcd_keepalive_stop(k);
        printf("stopped lost=%d\n", t->lost);
        return t->lost;
    } else if (!strcmp(op, "watch") && argc == 7) {
        static const struct etcd_watch_callbacks wcb = {w_event, w_error};
        struct etcd_watch *w;
        t->want = (size_t)atoll(argv[5]);
        w = etcd_watch_start(t->c, argv[3], strlen(argv[3]), atoll(argv[4]), 0, &wcb, t);
        if (!w) return 1;
        run(t, rpc_now_ms() + atoll(argv[6]));
        etcd_watch_stop(w);
        if (t->failed) return 1;
        if (t->count < t->want) {
            fprintf(stderr, "etcdtool: watch saw %zu of %zu events before the timeout\n", t->count,
                    t->want);
            return 3;
        }
        return 0;
    } else if (!strcmp(op, "writeloop") && (argc == 5 || argc == 6)) {
        long n = atol(argv[4]), retries = 0;
        int64_t last = rpc_now_ms(), maxgap = 0;
        t->quiet = 1;
        if (argc == 6) etcd_client_set_timeout(t->c, atoll(argv[5]));
        for (long i = 0; i < n; i++) {
            char key[300], val[32];
            snprintf(key, sizeof key, "%s%06ld", argv[3], i);
            snprintf(val, sizeof val, "%ld", i);
            for (;;) {
                t->done = t->failed = 0;
                etcd_put(t->c, key, strlen(key), val, strlen(val), 0, on_done, t);
                run(t, INT64_MAX);
                if (!t->failed) break;
                retries++;
                t->done = 0;
                run(t, rpc_now_ms() + 20);      /* a pause before the retry */
            }
            if (rpc_now_ms() - last > maxgap) maxgap = rpc_now_ms() - last;
            last = rpc_now_ms();
        }
        printf("wrote %ld maxgap_ms %" PRId64 " retries %ld\n", n, maxgap, retries);
        return 0;
    } else {
        return usage();
    }
    run(t, forever);
    if (!t->done) {
        fprintf(stderr, "etcdtool: no answer within 30 s\n");
        return 1;
    }
    return t->failed;
}

int main(int argc, char **argv)
{
    struct tool t;
    char err[1300];
    int rc;

    if (argc < 3) return usage();
    memset(&t, 0, sizeof t);
    t.log.level = LOG_LEVEL_WARN;
    t.log.out = stderr;
    grpc_init();
    if (rpc_loop_init(&t.loop, &t.log) != 0) return 1;
    /* TLS (test_tls.py): $ETCDTOOL_TLS_CA, and _CERT/_KEY for a client certificate. */
    struct cfg_tls tls = {getenv("ETCDTOOL_TLS_CA") != NULL, getenv("ETCDTOOL_TLS_CERT"),
                          getenv("ETCDTOOL_TLS_KEY"), getenv("ETCDTOOL_TLS_CA"), false};
    if (etcd_client_create_tls(&t.c, &t.loop, &t.timers, argv[1], &tls, err, sizeof err) != 0) {
        fprintf(stderr, "etcdtool: %s\n", err);
        rc = 2;
    } else {
        rc = cmd(&t, argc, argv);
        t.done = 0;
        while (!etcd_client_idle(t.c)) {      /* let streams close */
            rpc_loop_next(&t.loop, rpc_now_ms() + 50);
            timer_run_due(&t.timers, rpc_now_ms());
        }
        etcd_client_destroy(&t.c);
    }
    timer_heap_cleanup(&t.timers);
    rpc_loop_cleanup(&t.loop);
    grpc_shutdown_blocking();
    return rc;
}
