/*
 * statemeshd — the statemesh runtime.
 *
 *   statemeshd -c statemesh.conf        run
 *   statemeshd --check-config FILE      validate and exit (0 ok, 2 errors)
 *   statemeshd --repair -c FILE         LevelDB's repair of the store, then exit
 *                                       (docs/operations-disk.md: it may lose data)
 *
 * Exit codes: 0 clean stop (or --repair done); 1 cannot start (listen,
 * endpoints, data dir locked...); 2 usage or configuration error, or the
 * cluster refuses this node (docs/cluster.md);
 * EXIT_STORAGE (3) the store cannot be used: it refused to open (corrupt,
 * not enough free space, unreadable), or a checkpoint write failed while
 * running (disk full, I/O error). On a failed write the loop stops at once:
 * nothing of the failed checkpoint is acknowledged, calls in progress are
 * cancelled, and `event=runtime.storage_failed` is the last error logged.
 *
 * Start-up: config (refuse on any error) -> data dir lock -> store ->
 * recovery (queues rebuilt from the inbox keys) -> cluster join (with a
 * `cluster` group: cluster.h) -> ingress -> endpoints ->
 * `runtime.ready`. Then one event loop (DESIGN §9):
 *
 *   wait for a completion (deadline: next timer, <= 100 ms) and drain the rest
 *   -> run due timers -> look at signals -> commit the checkpoint -> dispatch
 *
 * Memory: glibc's malloc would give each of gRPC's and LevelDB's threads its
 * own arena; the freed parts of those arenas (gRPC's read buffers above
 * all) stay resident, so concurrent SendStreams cost ~15 MB more than their
 * data. malloc_setup() keeps one arena and sends buffers of 256 KiB and
 * more to mmap, which gives them back on free; the ingress trims the heap
 * after large frees (ingress.c). MALLOC_ARENA_MAX or GLIBC_TUNABLES in the
 * environment leave glibc's own choices in place. The bound this keeps is
 * in docs/limits.md ("The memory bound").
 *
 * SIGHUP re-reads the TLS files of runtime.tls and endpoints[].tls (tls.h)
 * and the token files of runtime.auth (auth.h); nothing else is reloaded.
 *
 * Shutdown on SIGTERM/SIGINT: stop accepting and dispatching, wait up to
 * DRAIN_MS for in-flight batches, commit the final checkpoint (which releases
 * the last acks and replies), close streams and calls, exit 0. Queued messages
 * stay on disk for the next start.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "address.h"
#include "clusterctl.h"
#include "clustersp.h"
#include "deadletter.h"
#include "dispatch.h"
#include "server.h"
#include "spcluster.h"
#include "spcreate.h"
#include "sprestore.h"
#include "statemesh/version.h"
#include "statemesh/v1/storage.pb-c.h"

#define DRAIN_MS 5000
#define CLOSE_MS 3000
#define LOOP_MAX_WAIT_MS 100
#define EVENTS_PER_ITERATION 1024
#define HOUSEKEEPING_MS 1000
#define DISPATCH_ROUNDS 8
#define EXIT_STORAGE 3
#define MALLOC_ARENAS 1
#define MALLOC_MMAP_BYTES (256 * 1024)

/* See "Memory" at the top. Before any thread starts. */
static void malloc_setup(void)
{
    if (getenv("MALLOC_ARENA_MAX") || getenv("GLIBC_TUNABLES")) return;
    mallopt(M_ARENA_MAX, MALLOC_ARENAS);
    mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_BYTES);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: statemeshd -c FILE            run the runtime with this configuration\n"
            "       statemeshd --check-config FILE  validate a configuration and exit\n"
            "       statemeshd --repair -c FILE     repair a damaged store (LevelDB's repair; it\n"
            "                                       may lose data: docs/operations-disk.md)\n"
            "       statemeshd --from-savepoint DIR [--key-groups A-B] -c FILE\n"
            "                                       restore a savepoint into an empty data dir,\n"
            "                                       then run (docs/savepoints.md); a cluster\n"
            "                                       savepoint: the key groups etcd assigns\n"
            "                                       this node (docs/cluster.md, Rescaling)\n"
            "       statemeshd --cluster-assign ID1,ID2,... -c FILE\n"
            "                                       with every node stopped: even key-group\n"
            "                                       ranges over these nodes, new epochs\n"
            "       statemeshd --help | --version\n");
}

static int mkdirs(const char *path)
{
    char buf[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
    return 0;
}

/* Takes the data dir's lock file; returns the fd or -1 with a message. */
static int lock_data_dir(const char *dir, char *err, size_t errlen)
{
    char path[4200], pid[32] = "";
    int fd;
    ssize_t n;

    snprintf(path, sizeof path, "%s/statemeshd.lock", dir);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        snprintf(err, errlen, "data dir %s is locked by another statemeshd (pid %s)", dir,
                 pid[0] ? pid : "unknown");
        close(fd);
        return -1;
    }
    if (ftruncate(fd, 0) == 0) {
        n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
        if (pwrite(fd, pid, (size_t)n, 0) < 0) { /* the lock is what matters */ }
    }
    return fd;
}

struct recover_ctx {
    struct server *s;
    long skipped;
    int64_t count;
    long paused;
};

static int recover_one(void *arg, const char *type, const char *id, uint64_t seq,
                       const uint8_t *val, size_t len)
{
    struct recover_ctx *rc = arg;
    struct server *s = rc->s;
    Statemesh__V1__StoredMessage *sm = statemesh__v1__stored_message__unpack(NULL, len, val);
    int idx = cfg_match_endpoint(&s->cfg, type);
    struct msg *m;

    if (!sm || !sm->argument) {
        LOG_ERROR(&s->log, "recovery.corrupt_message", "type=%s seq=%llu", type, (unsigned long long)seq);
        if (sm) statemesh__v1__stored_message__free_unpacked(sm, NULL);
        rc->skipped++;
        return 0;
    }
    if (idx < 0) {
        /* Kept on disk: it is delivered once a config routes its type again. */
        if (rc->skipped++ == 0)
            LOG_WARN(&s->log, "recovery.unroutable", "type=%s msg=\"no endpoint serves this type; its messages stay stored\"", type);
        statemesh__v1__stored_message__free_unpacked(sm, NULL);
        return 0;
    }
    m = msg_create(sm->caller ? sm->caller->type : NULL, sm->caller ? sm->caller->id : NULL,
                   sm->argument->typename_, sm->argument->value.data, sm->argument->value.len,
                   sm->reply_key);
    m->seq = seq;
    if (s->tracer) m->trace = trace_ctx_from_header(sm->traceparent, sm->tracestate);
    disp_recover(s, &s->endpoints[idx], type, id, m);
    rc->count++;
    statemesh__v1__stored_message__free_unpacked(sm, NULL);
    return 0;
}

/* A paused address (P key): held before its messages are queued. */
static int recover_pause(void *arg, const char *type, const char *id, const uint8_t *val,
                         size_t len)
{
    struct recover_ctx *rc = arg;
    struct server *s = rc->s;
    Statemesh__V1__StoredPause *p = statemesh__v1__stored_pause__unpack(NULL, len, val);
    int idx = cfg_match_endpoint(&s->cfg, type);
    char q[200];

    if (idx < 0) {                 /* its messages stay stored too (recover_one) */
        if (p) statemesh__v1__stored_pause__free_unpacked(p, NULL);
        return 0;
    }
    disp_recover_pause(s, &s->endpoints[idx], type, id,
                       p ? p->error : "(the pause record is unreadable)", p ? p->attempts : 0);
    LOG_WARN(&s->log, "recovery.paused", "type=%s id=%s msg=\"the address stays paused until "
             "'statemesh skip' or 'statemesh resume'\"", type, log_quote(q, sizeof q, id));
    rc->paused++;
    if (p) statemesh__v1__stored_pause__free_unpacked(p, NULL);
    return 0;
}

static int recover(struct server *s)
{
    struct recover_ctx rc = {s, 0, 0, 0};
    int64_t t0 = rpc_now_ms();
    if (store_scan_pauses(s->store, recover_pause, &rc) != 0) return -1;
    if (store_scan_messages(s->store, recover_one, &rc) != 0) return -1;
    disp_recover_done(s);
    s->stats.recovered_messages = rc.count;
    LOG_INFO(&s->log, "recovery.done", "messages=%lld addresses=%zu skipped=%ld paused=%lld "
             "next_seq=%llu ms=%lld", (long long)rc.count, s->mboxes.count, rc.skipped,
             (long long)s->stats.addresses_paused, (unsigned long long)s->next_seq,
             (long long)(rpc_now_ms() - t0));
    return 0;
}

/* The next pending SIGINT, SIGTERM or SIGHUP (blocked in every thread), or
 * 0: one system call per loop iteration. */
static int pending_signal(void)
{
    sigset_t set;
    struct timespec zero = {0, 0};
    int sig;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sig = sigtimedwait(&set, NULL, &zero);
    return sig > 0 ? sig : 0;
}

/* SIGHUP: re-read the TLS files of the ingress (tls.h) and of the endpoints
 * (ep_reload_tls). New handshakes and connections use the new ones; open
 * connections and calls are not touched. Bad files change nothing and say
 * why. */
static void reload_auth(struct server *s);

static void reload(struct server *s)
{
    char err[1200], q[1300];

    for (size_t i = 0; i < s->n_endpoints && !s->stopping; i++) {
        if (!s->cfg.endpoints[i].tls.on) continue;
        if (ep_reload_tls(&s->endpoints[i], err, sizeof err) != 0)
            LOG_ERROR(&s->log, "tls.reload_failed", "endpoint=%s error=%s msg=\"keeping the "
                      "previous certificates\"", s->cfg.endpoints[i].target,
                      log_quote(q, sizeof q, err));
        else
            LOG_INFO(&s->log, "tls.reloaded", "endpoint=%s", s->cfg.endpoints[i].target);
    }
    if (!s->tls) {
        LOG_INFO(&s->log, "runtime.reload", "msg=\"SIGHUP: no runtime.tls to reload\"");
    } else if (tls_server_reload(s->tls, err, sizeof err) != 0) {
        LOG_ERROR(&s->log, "tls.reload_failed", "error=%s msg=\"keeping the previous "
                  "certificate\"", log_quote(q, sizeof q, err));
    } else {
        LOG_INFO(&s->log, "tls.reloaded", "cert=%s", log_quote(q, sizeof q, s->cfg.tls.cert));
    }
    reload_auth(s);
}

/* SIGHUP, after the TLS files: re-read the token files. A bad file keeps
 * the tokens in force (auth.h). */
static void reload_auth(struct server *s)
{
    char err[1024], q[1100];

    if (!s->auth.enabled || !s->cfg.n_auth_tokens) {
        LOG_INFO(&s->log, "runtime.sighup", "msg=\"nothing to reload (no token files)\"");
    } else if (auth_load(&s->auth, s->cfg.auth_tokens, s->cfg.n_auth_tokens, err, sizeof err) != 0) {
        LOG_ERROR(&s->log, "auth.reload_failed", "err=%s msg=\"the tokens in force stay\"",
                  log_quote(q, sizeof q, err));
    } else {
        LOG_INFO(&s->log, "auth.reloaded", "tokens=%zu", s->auth.n);
    }
}

/* Once a second: egress retention, expired state and idempotency records. */
static void housekeeping(void *arg)
{
    struct server *s = arg;
    if (!s->stopping) {
        egress_trim(s);
        disp_sweep_expired(s);
        idem_sweep(s);
    }
    timer_start(&s->timers, &s->housekeeping, rpc_now_ms() + HOUSEKEEPING_MS);
}

/* The cluster's change hook: ownership or fencing changed, so the
 * addresses dispatch held back get another look. */
static void on_cluster_change(void *arg)
{
    disp_release_held(arg);
    peer_kick(arg);
}

/* Joins the cluster before the ingress opens (cluster.h). Returns 0 once
 * joined, 1 when asked to stop, -1 when joining is impossible. */
static int cluster_join(struct server *s)
{
    const char *why;

    cluster_set_change_hook(s->cluster, on_cluster_change, s);
    cluster_start(s->cluster);
    while (!cluster_joined(s->cluster)) {
        int64_t deadline = rpc_now_ms() + LOOP_MAX_WAIT_MS, due = timer_next_due(&s->timers);
        if ((why = cluster_failed(s->cluster)) != NULL) {
            char q[1200];
            LOG_ERROR(&s->log, "cluster.refused", "err=%s", log_quote(q, sizeof q, why));
            fprintf(stderr, "statemeshd: %s; not starting\n", why);
            return -1;
        }
        int sig = pending_signal();
        if (sig == SIGINT || sig == SIGTERM) return 1;
        if (sig == SIGHUP) reload(s);
        rpc_loop_next(&s->loop, due < deadline ? due : deadline);
        timer_run_due(&s->timers, rpc_now_ms());
    }
    return 0;
}

/* A checkpoint write failed (checkpoint.h): stop now, commit nothing more. */
/* One checkpoint and, once it is durable, the after-commit phases in their
 * order (Redis's beforeSleep): release acks and replies, un-park addresses,
 * wake egress subscribers, answer idempotent duplicates, ack SendStreams.
 * Arrows point down: the checkpoint calls none of these modules. Returns 0
 * or -EIO (storage failure: stop). */
static int commit(struct server *s)
{
    struct ckpt *ck = &s->ckpt;
    struct mbox *mb;
    int rc;

    if (ckpt_dirty(ck)) egress_before_commit(s);   /* egress offsets join the group */
    if ((rc = ckpt_commit(s)) <= 0) return rc;
    tracer_checkpoint_done(s->tracer);
    for (size_t i = 0; i < ck->nacks; i++) ingress_complete(s->ingress, &ck->acks[i]);
    ckpt_released(ck);
    while ((mb = mbox_list_pop(&ck->parked)) != NULL) disp_unpark(s, mb);
    egress_after_commit(s);
    idem_after_commit(s);
    peer_after_commit(s);              /* peer answers, then the outbox's new frames */
    if (s->ingress) ingress_after_commit(s->ingress);
    return 0;
}

static int storage_failed(struct server *s)
{
    char q[1200];
    LOG_ERROR(&s->log, "runtime.storage_failed", "exit_code=%d err=%s msg=\"stopping: the "
              "last checkpoint was not written and is not acknowledged; start again once the "
              "disk has space / the I/O error is fixed (docs/operations-disk.md)\"",
              EXIT_STORAGE, log_quote(q, sizeof q, store_last_error(s->store)));
    return -1;
}

/* Returns 0 after a clean stop, -1 after a storage failure. */
static int run_loop(struct server *s)
{
    int64_t drain_until = 0, close_until = 0;
    enum { RUNNING, DRAINING, CLOSING } phase = RUNNING;

    for (;;) {
        int64_t now = rpc_now_ms();
        int64_t deadline = now + LOOP_MAX_WAIT_MS;
        int64_t due = timer_next_due(&s->timers);
        int rc, sig;

        if (due < deadline) deadline = due;
        if (s->cfg.checkpoint_interval_ms > 0 && s->ckpt.opened_ms &&
            s->ckpt.opened_ms + s->cfg.checkpoint_interval_ms < deadline)
            deadline = s->ckpt.opened_ms + s->cfg.checkpoint_interval_ms;
        due = ckpt_pending_deadline(&s->ckpt);
        if (due < deadline) deadline = due;
        rc = rpc_loop_next(&s->loop, deadline);
        for (int i = 0; rc == 1 && i < EVENTS_PER_ITERATION; i++)
            rc = rpc_loop_next(&s->loop, 0);
        now = rpc_now_ms();
        timer_run_due(&s->timers, now);
        sig = pending_signal();
        if (sig == SIGHUP) reload(s);
        if (phase == RUNNING && (sig == SIGINT || sig == SIGTERM)) {
            LOG_INFO(&s->log, "runtime.stopping", "queued_messages=%lld pending_calls=%zu",
                     (long long)s->stats.queued_messages, ingress_pending(s->ingress));
            s->stopping = 1;
            metrics_set_ready(s, 0);
            ingress_shutdown(s->ingress);
            phase = DRAINING;
            drain_until = now + DRAIN_MS;
        }
        /* Dispatch before committing, so function servers work while the
         * checkpoint is written (the state cache gives the next batch of a
         * pipelined address its uncommitted state). An embedded module
         * answers inside disp_run: a few rounds let a busy address run
         * several batches per checkpoint. Then commit, then dispatch what the
         * commit un-parked. */
        for (int r = 0; r < DISPATCH_ROUNDS && disp_run(s) > 0; r++)
            ;
        if (phase != RUNNING ? ckpt_dirty(&s->ckpt)
                             : ckpt_due(&s->ckpt, now) &&
                                   (s->cfg.checkpoint_interval_ms == 0 ||
                                    now >= s->ckpt.opened_ms + s->cfg.checkpoint_interval_ms))
            if (commit(s) != 0) return storage_failed(s);
        disp_run(s);
        ingress_poll_streams(s->ingress);
        if (s->tracer) {
            s->stats.spans_exported = tracer_exported(s->tracer);
            s->stats.spans_dropped = tracer_dropped(s->tracer);
        }
        metrics_publish(s, 0);

        if (phase == DRAINING) {
            uint32_t inflight = 0;
            for (size_t i = 0; i < s->n_endpoints; i++) inflight += s->endpoints[i].inflight;
            if (inflight == 0 || now >= drain_until) {
                if (commit(s) != 0) return storage_failed(s);
                for (size_t i = 0; i < s->n_endpoints; i++) ep_stop(&s->endpoints[i]);
                ingress_cancel_all(s->ingress);
                fwd_cancel_all(s->fwd);
                peer_stop(s->peer);
                phase = CLOSING;
                close_until = now + CLOSE_MS;
            }
        } else if (phase == CLOSING) {
            int closed = ingress_done(s->ingress) && fwd_idle(s->fwd) && peer_idle(s->peer);
            for (size_t i = 0; i < s->n_endpoints; i++) closed &= ep_closed(&s->endpoints[i]);
            if (closed) return 0;
            if (now >= close_until) {
                LOG_WARN(&s->log, "runtime.close_timeout", "msg=\"calls still open after %d ms\"", CLOSE_MS);
                return 0;
            }
        }
    }
}

static int check_config(const char *path)
{
    struct cfg cfg;
    char err[16384];
    if (cfg_load(path, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "%s", err);
        if (err[0] && err[strlen(err) - 1] != '\n') fputc('\n', stderr);
        return 2;
    }
    printf("%s: ok (%zu endpoints, data_dir %s, ingress %s", path, cfg.n_endpoints,
           cfg.data_dir, cfg.ingress);
    if (cfg.cluster.enabled)
        printf(", cluster %s node %s advertise %s", cfg.cluster.name, cfg.cluster.node_id,
               cfg.cluster.advertise);
    printf(")\n");
    cfg_cleanup(&cfg);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"check-config", required_argument, NULL, 'C'},
        {"repair", no_argument, NULL, 'R'}, {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'}, {"from-savepoint", required_argument, NULL, 'F'},
        {"key-groups", required_argument, NULL, 'K'},
        {"cluster-assign", required_argument, NULL, 'A'}, {NULL, 0, NULL, 0}};
    struct server s;
    const char *config = NULL;
    char err[16384], dbdir[4200];
    struct store_options so = {0, 0, true, 0, 0};
    sigset_t set;
    int c, rc = 1, grpc_up = 0, repair = 0, kg_first = 0, kg_last = STORE_KEY_GROUPS - 1;
    const char *from_savepoint = NULL, *key_groups = NULL, *assign = NULL;

    while ((c = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'C': return check_config(optarg);
        case 'R': repair = 1; break;
        case 'F': from_savepoint = optarg; break;
        case 'K': key_groups = optarg; break;
        case 'A': assign = optarg; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("statemeshd %s\n", SM_VERSION); return 0;
        default:   /* getopt_long has said what is wrong */
            fprintf(stderr, "run 'statemeshd --help' for usage\n");
            return 2;
        }
    }
    if (!config || optind != argc) {
        if (optind != argc)
            fprintf(stderr, "statemeshd: unexpected argument '%s'\n", argv[optind]);
        else
            fprintf(stderr, "statemeshd: no configuration file (-c FILE)\n");
        fprintf(stderr, "run 'statemeshd --help' for usage\n");
        return 2;
    }
    if (key_groups) {
        char *end;
        long a = strtol(key_groups, &end, 10), b = a;
        if (*end == '-') b = strtol(end + 1, &end, 10);
        if (!from_savepoint || *end || end == key_groups || a < 0 || b < a ||
            b >= STORE_KEY_GROUPS) {
            fprintf(stderr, "statemeshd: --key-groups wants A-B within 0-%d (with "
                    "--from-savepoint), got '%s'\n", STORE_KEY_GROUPS - 1, key_groups);
            return 2;
        }
        kg_first = (int)a;
        kg_last = (int)b;
    }
    if (from_savepoint && repair) {
        fprintf(stderr, "statemeshd: --repair and --from-savepoint do not go together\n");
        return 2;
    }

    malloc_setup();
    memset(&s, 0, sizeof s);
    s.lock_fd = -1;
    s.log.level = LOG_LEVEL_INFO;
    s.log.out = stderr;
    if (cfg_load(config, &s.cfg, err, sizeof err) != 0) {
        fprintf(stderr, "statemeshd: invalid configuration, not starting:\n%s", err);
        if (err[0] && err[strlen(err) - 1] != '\n') fputc('\n', stderr);
        return 2;
    }
    s.log.level = s.cfg.log_level;
    if (s.cfg.n_auth_tokens &&
        auth_load(&s.auth, s.cfg.auth_tokens, s.cfg.n_auth_tokens, err, sizeof err) != 0) {
        fprintf(stderr, "statemeshd: invalid configuration, not starting:\n%s: runtime.auth: %s\n",
                config, err);
        cfg_cleanup(&s.cfg);
        return 2;
    }
    if (s.cfg.n_auth_certs) {                /* certificates stand for tokens (auth.h) */
        s.auth.certs = s.cfg.auth_certs;
        s.auth.n_certs = s.cfg.n_auth_certs;
        s.auth.enabled = true;
    }
    if (spcreate_config(&s, err, sizeof err) != 0 || clustersp_config(&s, err, sizeof err) != 0) {
        fprintf(stderr, "statemeshd: %s, not starting\n", err);
        cfg_cleanup(&s.cfg);
        return 2;
    }
    if (assign) {                  /* an offline step: no data dir, no runtime */
        char summary[8192] = "";
        rc = from_savepoint || repair ? -1
             : clusterctl_assign(&s.cfg, assign, &s.log, summary, sizeof summary, err, sizeof err);
        if (rc == 0)
            fputs(summary, stdout);
        else
            fprintf(stderr, "statemeshd: %s\n", from_savepoint || repair
                    ? "--cluster-assign goes alone with -c FILE" : err);
        cfg_cleanup(&s.cfg);
        return rc == 0 ? 0 : 2;
    }

    /* Block the stop signals before gRPC starts its threads, so they stay
     * pending for the loop's sigtimedwait instead of killing a thread. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);       /* reload, see reload() */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (mkdirs(s.cfg.data_dir) != 0) {
        LOG_ERROR(&s.log, "runtime.data_dir", "dir=%s error=\"%s\"", s.cfg.data_dir, strerror(errno));
        fprintf(stderr, "statemeshd: cannot create data dir %s: %s\n", s.cfg.data_dir, strerror(errno));
        goto out;
    }
    if ((s.lock_fd = lock_data_dir(s.cfg.data_dir, err, sizeof err)) < 0) {
        fprintf(stderr, "statemeshd: %s\n", err);
        goto out;
    }
    /* Before the store opens: /readyz answers 503 through a long recovery. */
    if (s.cfg.metrics && !repair) {
        if (metrics_create(&s.metrics, &s, err, sizeof err) != 0) {
            fprintf(stderr, "statemeshd: %s; not starting\n", err);
            goto out;
        }
        LOG_INFO(&s.log, "metrics.listening", "addr=%s paths=/metrics,/healthz,/readyz", s.cfg.metrics);
    }
    so.block_cache_bytes = s.cfg.storage_block_cache_bytes;
    so.write_buffer_bytes = s.cfg.storage_write_buffer_bytes;
    so.compression = s.cfg.storage_compression;
    so.max_open_files = s.cfg.storage_max_open_files;
    so.state_filter_bytes = s.cfg.state_filter_bytes;
    snprintf(dbdir, sizeof dbdir, "%s/store", s.cfg.data_dir);
    if (repair) {
        if (store_repair(dbdir, &so, &s.log, err, sizeof err) != 0) {
            fprintf(stderr, "statemeshd: %s\n", err);
            rc = EXIT_STORAGE;
        } else {
            fprintf(stderr, "statemeshd: repaired the store in %s; what LevelDB could not read "
                    "is gone and deleted records may be back (docs/operations-disk.md)\n", dbdir);
            rc = 0;
        }
        goto out;
    }
    if (from_savepoint && spc_is_cluster(from_savepoint) && s.cfg.cluster.enabled) {
        /* a cluster savepoint: the key groups this node owns in etcd now
         * (statemeshd --cluster-assign), imported before it joins */
        uint8_t want[STORE_KEY_GROUPS];
        if (key_groups) {
            fprintf(stderr, "statemeshd: --key-groups does not go with a cluster savepoint: the "
                    "node imports the key groups etcd assigns it\n");
            rc = 2;
            goto out;
        }
        if (clusterctl_owned(&s.cfg, want, &s.log, err, sizeof err) != 0) {
            fprintf(stderr, "statemeshd: %s\n", err);
            rc = 2;
            goto out;
        }
        if (mkdirs(dbdir) != 0 ||
            sprestore_run_cluster(from_savepoint, dbdir, &so, want, s.cfg.cluster.node_id, &s.log,
                                  err, sizeof err) != 0) {
            fprintf(stderr, "statemeshd: %s\n", err);
            rc = EXIT_STORAGE;
            goto out;
        }
    } else if (from_savepoint &&
        (mkdirs(dbdir) != 0 ||
         sprestore_run(from_savepoint, dbdir, &so, kg_first, kg_last, &s.log, err, sizeof err) != 0)) {
        fprintf(stderr, "statemeshd: %s\n", err);
        rc = EXIT_STORAGE;
        goto out;
    }
    if (mkdirs(dbdir) != 0 || store_open(&s.store, dbdir, &so, &s.log, err, sizeof err) != 0 ||
        sprestore_check(s.store, err, sizeof err) != 0) {
        fprintf(stderr, "statemeshd: %s\n", err);
        rc = EXIT_STORAGE;
        goto out;
    }
    ckpt_init(&s.ckpt);
    scache_init(&s.scache, s.cfg.state_cache_bytes);
    mbox_table_init(&s.mboxes);
    s.next_seq = 1;

    grpc_init();
    grpc_up = 1;
    if (rpc_loop_init(&s.loop, &s.log) != 0) goto out;
    if (s.cfg.tracing.on) {        /* before recovery: recovered messages keep their trace */
        if (tracer_create(&s.tracer, &s.cfg.tracing, &s.loop, &s.timers, &s.log, err,
                          sizeof err) != 0) {
            fprintf(stderr, "statemeshd: runtime.%s; not starting\n", err);
            goto out;
        }
        LOG_INFO(&s.log, "tracing.on", "otlp=%s sample_ratio=%g tls=%s", s.cfg.tracing.otlp,
                 s.cfg.tracing.sample_ratio, s.cfg.tracing.tls.on ? "on" : "off");
    }
    s.n_endpoints = s.cfg.n_endpoints;
    s.endpoints = calloc(s.n_endpoints + 1, sizeof *s.endpoints);
    if (!s.endpoints) goto out;
    for (size_t i = 0; i < s.n_endpoints; i++)
        if (ep_init(&s.endpoints[i], &s, &s.cfg.endpoints[i], (int)i) != 0) goto out;
    if (egress_open(&s) != 0 || recover(&s) != 0 || delayed_recover(&s) != 0 || dl_open(&s) != 0 ||
        idem_open(&s) != 0) {
        fprintf(stderr, "statemeshd: recovery failed, not starting: %s\n",
                store_last_error(s.store));
        rc = EXIT_STORAGE;
        goto out;
    }
    if (s.cfg.cluster.enabled) {
        int j;
        if (peer_create(&s.peer, &s, err, sizeof err) != 0) {
            fprintf(stderr, "statemeshd: %s\n", err);
            rc = EXIT_STORAGE;
            goto out;
        }
        if (cluster_create(&s.cluster, &s, err, sizeof err) != 0) {
            fprintf(stderr, "statemeshd: %s\n", err);
            rc = 2;
            goto out;
        }
        if (clustersp_create(&s) != 0) {
            fprintf(stderr, "statemeshd: out of memory\n");
            goto out;
        }
        if ((j = cluster_join(&s)) != 0) {
            rc = j > 0 ? 0 : 2;
            goto out;
        }
        if (fwd_create(&s.fwd, &s) != 0) goto out;
    }
    timer_init(&s.housekeeping, housekeeping, &s);
    timer_start(&s.timers, &s.housekeeping, rpc_now_ms() + HOUSEKEEPING_MS);
    if (s.cfg.tls.on && tls_server_create(&s.tls, &s.cfg.tls, err, sizeof err) != 0) {
        fprintf(stderr, "statemeshd: runtime.%s; not starting\n", err);
        goto out;
    }
    if (s.tls)
        LOG_INFO(&s.log, "tls.ingress", "cert=%s client_cert=%s", s.cfg.tls.cert,
                 s.cfg.tls.require_client_cert ? "required" : s.cfg.tls.ca ? "optional" : "none");
    if (ingress_create(&s.ingress, &s) != 0 || ingress_start(s.ingress, s.cfg.ingress) != 0) {
        fprintf(stderr, "statemeshd: cannot listen on %s%s%s (address in use or invalid)\n",
                s.cfg.ingress, s.cfg.admin ? " or " : "", s.cfg.admin ? s.cfg.admin : "");
        goto out;
    }
    for (size_t i = 0; i < s.n_endpoints; i++)
        if (ep_start(&s.endpoints[i]) != 0) {
            if (s.cfg.endpoints[i].mode == CFG_MODE_EMBEDDED)       /* embedded: why it failed */
                fprintf(stderr, "statemeshd: endpoints[%zu]: %s; not starting\n", i,
                        s.endpoints[i].error);
            else if (s.endpoints[i].error[0])                     /* TLS files */
                fprintf(stderr, "statemeshd: endpoints[%zu].%s; not starting\n", i,
                        s.endpoints[i].error);
            else
                fprintf(stderr, "statemeshd: endpoint %s: invalid target\n", s.cfg.endpoints[i].target);
            goto out;
        }
    if (!s.auth.enabled && (!auth_address_is_local(s.cfg.ingress) ||
                            (s.cfg.admin && !auth_address_is_local(s.cfg.admin))))
        LOG_WARN(&s.log, "auth.open", "ingress=%s admin=%s msg=\"no runtime.auth: anyone who "
                 "can reach these addresses may call every RPC, admin included "
                 "(docs/security.md)\"", s.cfg.ingress, s.cfg.admin ? s.cfg.admin : "ingress");
    if (s.n_endpoints == 0)
        LOG_WARN(&s.log, "runtime.no_endpoints", "msg=\"no endpoints configured: every message will be refused\"");
    LOG_INFO(&s.log, "runtime.ready", "ingress=%s admin=%s auth=%s data_dir=%s endpoints=%zu "
             "pid=%ld", s.cfg.ingress, s.cfg.admin ? s.cfg.admin : "ingress",
             !s.auth.enabled ? "off" : !s.auth.n ? "certificates"
                 : s.auth.n_certs ? "tokens+certificates" : "tokens", s.cfg.data_dir, s.n_endpoints, (long)getpid());
    metrics_set_ready(&s, 1);

    if (run_loop(&s) != 0) {
        rc = EXIT_STORAGE;
        goto out;
    }
    LOG_INFO(&s.log, "runtime.stopped", "checkpoints=%lld queued_messages=%lld",
             (long long)s.stats.checkpoints, (long long)s.stats.queued_messages);
    rc = 0;

out:
    peer_stop(s.peer);
    if (rc != 0 && s.ingress) {
        ingress_shutdown(s.ingress);
        ingress_cancel_all(s.ingress);
        s.stopping = 1;
        for (size_t i = 0; i < s.n_endpoints; i++)
            if (s.endpoints[i].ch) ep_stop(&s.endpoints[i]);
        for (int64_t until = rpc_now_ms() + CLOSE_MS; rpc_now_ms() < until;) {
            int closed = ingress_done(s.ingress) && peer_idle(s.peer);
            for (size_t i = 0; i < s.n_endpoints; i++) closed &= ep_closed(&s.endpoints[i]);
            if (closed) break;
            rpc_loop_next(&s.loop, rpc_now_ms() + 50);
        }
    }
    clustersp_shutdown(&s);        /* abort a barrier it coordinates, resume */
    if (s.fwd) {                   /* forwarded calls end before their channels go */
        fwd_cancel_all(s.fwd);
        for (int64_t until = rpc_now_ms() + CLOSE_MS; !fwd_idle(s.fwd) && rpc_now_ms() < until;)
            rpc_loop_next(&s.loop, rpc_now_ms() + 50);
        if (fwd_idle(s.fwd)) fwd_destroy(&s.fwd);
    }
    if (s.cluster) {               /* revoke the lease: the others see this node down now */
        cluster_stop(s.cluster);
        for (int64_t until = rpc_now_ms() + CLOSE_MS; !cluster_idle(s.cluster) && rpc_now_ms() < until;) {
            rpc_loop_next(&s.loop, rpc_now_ms() + 50);
            timer_run_due(&s.timers, rpc_now_ms());
        }
        if (cluster_idle(s.cluster)) cluster_destroy(&s.cluster);
    }
    if (s.tracer) {                /* the last spans, while the collector is there */
        tracer_stop(s.tracer);
        for (int64_t until = rpc_now_ms() + CLOSE_MS; !tracer_idle(s.tracer) && rpc_now_ms() < until;)
            rpc_loop_next(&s.loop, rpc_now_ms() + 50);
        LOG_INFO(&s.log, "tracing.stopped", "spans_exported=%lld spans_dropped=%lld",
                 (long long)tracer_exported(s.tracer), (long long)tracer_dropped(s.tracer));
        if (tracer_idle(s.tracer)) tracer_destroy(&s.tracer);
    }
    metrics_destroy(&s.metrics);
    spcreate_shutdown(&s);
    clustersp_destroy(&s);
    if (s.ingress && ingress_done(s.ingress)) ingress_destroy(&s.ingress);
    if (peer_idle(s.peer)) peer_destroy(&s.peer);
    for (size_t i = 0; s.endpoints && i < s.n_endpoints; i++) ep_cleanup(&s.endpoints[i]);
    free(s.endpoints);
    if (s.loop.cq) rpc_loop_cleanup(&s.loop);
    if (!s.ingress) tls_server_destroy(&s.tls);  /* after the ingress: its fetcher uses it */
    delayed_cleanup(&s);
    scache_cleanup(&s.scache);
    disp_cleanup(&s);
    idem_cleanup(&s);
    boot_cleanup(&s);
    store_cursor_free(&s.ttl_cursor);
    egress_close(&s);
    timer_heap_cleanup(&s.timers);
    if (s.mboxes.buckets) mbox_table_cleanup(&s.mboxes);
    if (s.ckpt.batch) ckpt_cleanup(&s.ckpt);
    store_close(&s.store);
    if (grpc_up) grpc_shutdown_blocking();   /* joins gRPC threads: clean exit under valgrind */
    if (s.lock_fd >= 0) close(s.lock_fd);
    auth_cleanup(&s.auth);
    cfg_cleanup(&s.cfg);
    return rc;
}
