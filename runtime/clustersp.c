/*
 * clustersp — see clustersp.h for the barrier's keys, phases and bounds.
 *
 * A participant (every node):
 *
 *   idle --main key, phase=pause, this node listed--> PAUSING (dispatch paused)
 *   PAUSING --nothing in flight or parked--> put paused/<me> --> PAUSED
 *   PAUSED --phase=snapshot--> snapshot taken (the cut), dispatch resumes,
 *            the part is written --> put done/<me>
 *   any --main key deleted (finished, aborted, coordinator's lease gone)-->
 *            idle: dispatch resumes, a part still being written is cancelled
 *   PAUSING/PAUSED --max_pause_ms passed--> resumes by itself (expired: the
 *            snapshot phase of this savepoint is answered ok=0)
 *
 * The coordinator (the node called) ticks every TICK_MS: PAUSE until every
 * listed node has put paused/, then SNAPSHOT until every one has put done/;
 * a listed node whose lease goes, a failed part, the pause timeout or the
 * client going away abort. One savepoint at a time per node.
 */
#include "clustersp.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "etcd.h"
#include "savepoint.h"
#include "server.h"
#include "spcluster.h"
#include "spcreate.h"
#include "statemesh/v1/admin.pb-c.h"
#include "statemesh/version.h"
#include "wire.h"

#define TICK_MS 50
#define DRAIN_POLL_MS 20
#define DEFAULT_PAUSE_TIMEOUT_MS 10000u
#define MAX_PAUSE_TIMEOUT_MS 600000u
#define EXTRA_PAUSE_MS 5000
#define PATH_MAX_LEN 3000
#define VAL_MAX (PATH_MAX_LEN + SPC_MAX_NODES * 70 + 200)
#define FAILPOINT_ENV "STATEMESH_FAILPOINT_CLUSTERSP"

enum { PH_PAUSE = 1, PH_SNAPSHOT = 2 };

struct cnode_sp {
    char id[65];
    uint32_t nranges;
    uint32_t first[SPC_MAX_RANGES], last[SPC_MAX_RANGES];
    bool paused, done, failed;
    uint64_t records, bytes;
    int64_t write_ms;
    char err[500];
};

struct coord {
    struct rpc_call *call;         /* NULL once the client has gone */
    char id[160];
    char path[PATH_MAX_LEN + 1], partial[PATH_MAX_LEN + 200];
    unsigned ranges;
    uint32_t pause_timeout_ms;
    int phase;
    int64_t t0, pause_ms, cut_at_wall, revision;
    struct cnode_sp *nodes;
    size_t n;
    struct timer tick;
    bool finishing;
};

struct clustersp {
    struct server *s;
    struct cluster *c;
    char failpoint[32];
    /* participant */
    bool active, paused, reported, snapshot_started, part_running, expired;
    char id[160];
    char path[PATH_MAX_LEN + 200];
    unsigned ranges;
    int64_t paused_at, cut_at, max_pause_ms;
    struct timer drain, safety, retry;
    char done_val[700];            /* retried until put */
    /* A barrier put while this node still took part in another one (whose
     * key had not gone yet: its coordinator died and its lease has not
     * expired): started when that one's key goes. "id" then the value. */
    char *pending;                 /* NULL: none */
    size_t pending_idlen, pending_vlen;
    /* coordinator */
    struct coord *co;
};

/* ---- small helpers ----------------------------------------------------------- */

static void failpoint(struct clustersp *sp, const char *step)
{
    if (strcmp(sp->failpoint, step) != 0) return;
    LOG_ERROR(&sp->s->log, "clustersp.failpoint", "step=%s msg=\"aborting (test-only %s)\"",
              step, FAILPOINT_ENV);
    abort();
}

static size_t sp_key(const struct clustersp *sp, char *out, size_t n, const char *id,
                     const char *sub, const char *node)
{
    int k = snprintf(out, n, "%ssavepoints/%s%s%s%s", cluster_prefix(sp->c), id, sub ? "/" : "",
                     sub ? sub : "", node ? node : "");
    return k < 0 ? 0 : (size_t)k >= n ? n - 1 : (size_t)k;
}

static void ignore_result(void *arg, const struct etcd_result *r)
{
    (void)arg;
    (void)r;
}

/* Deletes the main key and everything under it. */
static void delete_keys(struct clustersp *sp, const char *id)
{
    char k[400];
    uint8_t end[400];
    size_t kl = sp_key(sp, k, sizeof k, id, NULL, NULL), el;
    etcd_delete(cluster_etcd(sp->c), k, kl, NULL, 0, ignore_result, NULL);
    if (kl + 2 > sizeof k) return;                 /* cannot happen: ids are short */
    k[kl] = '/';
    k[++kl] = '\0';
    el = etcd_prefix_end(k, kl, end);
    etcd_delete(cluster_etcd(sp->c), k, kl, end, el, ignore_result, NULL);
}

/* Removes DIR and what it holds, two levels deep (a cluster savepoint). */
static void remove_tree(const char *dir, int depth)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[PATH_MAX_LEN + 600];
    struct stat st;

    if (!d) return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (depth > 0 && lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(p, depth - 1);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;
    if (fd < 0) return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

/* ---- participant ---------------------------------------------------------------- */

static void resume(struct clustersp *sp, const char *why)
{
    if (!sp->paused) return;
    sp->paused = false;
    cluster_set_paused(sp->c, false);
    timer_stop(&sp->s->timers, &sp->drain);
    timer_stop(&sp->s->timers, &sp->safety);
    LOG_INFO(&sp->s->log, "clustersp.resumed", "id=%s paused_ms=%lld why=%s", sp->id,
             (long long)(rpc_now_ms() - sp->paused_at), why);
}

static void participant_end(struct clustersp *sp, const char *why)
{
    if (!sp->active) return;
    resume(sp, why);
    if (sp->part_running) {
        spcreate_cancel_local(sp->s);
        sp->part_running = false;
        LOG_WARN(&sp->s->log, "clustersp.part_cancelled", "id=%s why=%s", sp->id, why);
    }
    timer_stop(&sp->s->timers, &sp->retry);
    sp->active = false;
    sp->id[0] = '\0';
}

static void put_done(struct clustersp *sp);

static void on_done_put(void *arg, const struct etcd_result *r)
{
    struct clustersp *sp = arg;
    if (!sp->active || !sp->done_val[0]) return;
    if (r->status == RPC_OK) {
        sp->done_val[0] = '\0';
        return;
    }
    timer_start(&sp->s->timers, &sp->retry, rpc_now_ms() + 200);
}

static void put_done(struct clustersp *sp)
{
    char k[400];
    size_t kl = sp_key(sp, k, sizeof k, sp->id, "done/", cluster_node_id(sp->c));
    etcd_put(cluster_etcd(sp->c), k, kl, sp->done_val, strlen(sp->done_val), cluster_lease(sp->c),
             on_done_put, sp);
}

static void on_retry(void *arg)
{
    struct clustersp *sp = arg;
    if (sp->active && sp->done_val[0]) put_done(sp);
}

static void report_done(struct clustersp *sp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void report_done(struct clustersp *sp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sp->done_val, sizeof sp->done_val, fmt, ap);
    va_end(ap);
    put_done(sp);
}

static void on_part_done(void *arg, int rc, const char *err, const struct sp_manifest *m)
{
    struct clustersp *sp = arg;
    char q[700];
    sp->part_running = false;
    if (!sp->active) return;
    if (rc == 0) {
        LOG_INFO(&sp->s->log, "clustersp.part_written", "id=%s records=%" PRIu64 " bytes=%"
                 PRIu64, sp->id, m->records, m->bytes);
        report_done(sp, "ok=1 records=%" PRIu64 " bytes=%" PRIu64 " write_ms=%lld", m->records,
                    m->bytes, (long long)(rpc_now_ms() - sp->cut_at));
    } else {
        LOG_WARN(&sp->s->log, "clustersp.part_failed", "id=%s err=%s", sp->id,
                 log_quote(q, sizeof q, err));
        report_done(sp, "ok=0 error=%s", err);
    }
}

static void take_snapshot(struct clustersp *sp)
{
    char sub[PATH_MAX_LEN + 300], err[600];

    sp->snapshot_started = true;
    if (sp->expired || !sp->paused) {
        report_done(sp, "ok=0 error=node %s had resumed: it stayed paused longer than %lld ms",
                    cluster_node_id(sp->c), (long long)sp->max_pause_ms);
        return;
    }
    snprintf(sub, sizeof sub, "%s/%s", sp->path, cluster_node_id(sp->c));
    if (spcreate_local(sp->s, sub, sp->ranges, on_part_done, sp, err, sizeof err) != 0) {
        resume(sp, "snapshot_failed");
        report_done(sp, "ok=0 error=node %s: %s", cluster_node_id(sp->c), err);
        return;
    }
    sp->part_running = true;
    sp->cut_at = rpc_now_ms();
    LOG_INFO(&sp->s->log, "clustersp.cut", "id=%s paused_ms=%lld", sp->id,
             (long long)(rpc_now_ms() - sp->paused_at));
    failpoint(sp, "after_cut");
    resume(sp, "cut_taken");
}

static void on_paused_put(void *arg, const struct etcd_result *r)
{
    struct clustersp *sp = arg;
    if (!sp->active || !sp->paused) return;
    if (r->status != RPC_OK) {
        timer_start(&sp->s->timers, &sp->drain, rpc_now_ms() + 200);
        return;
    }
    sp->reported = true;
    LOG_INFO(&sp->s->log, "clustersp.paused", "id=%s drain_ms=%lld", sp->id,
             (long long)(rpc_now_ms() - sp->paused_at));
    failpoint(sp, "after_paused");
}

/* Paused: waits until no batch is in flight and no answered one waits for
 * its checkpoint, then reports. */
static void on_drain(void *arg)
{
    struct clustersp *sp = arg;
    struct server *s = sp->s;
    uint32_t inflight = 0;
    char k[400];
    size_t kl;

    if (!sp->active || !sp->paused || sp->reported) return;
    for (size_t i = 0; i < s->n_endpoints; i++) inflight += s->endpoints[i].inflight;
    if (inflight || s->ckpt.parked.len) {
        timer_start(&s->timers, &sp->drain, rpc_now_ms() + DRAIN_POLL_MS);
        return;
    }
    failpoint(sp, "before_paused");
    kl = sp_key(sp, k, sizeof k, sp->id, "paused/", cluster_node_id(sp->c));
    etcd_put(cluster_etcd(sp->c), k, kl, "", 0, cluster_lease(sp->c), on_paused_put, sp);
}

static void on_safety(void *arg)
{
    struct clustersp *sp = arg;
    if (!sp->active || !sp->paused) return;
    sp->expired = true;
    LOG_WARN(&sp->s->log, "clustersp.pause_expired", "id=%s max_pause_ms=%lld msg=\"resuming "
             "without the coordinator's word; this savepoint will fail\"", sp->id,
             (long long)sp->max_pause_ms);
    resume(sp, "pause_expired");
}

/* "nodes=a,b,c" lists this node? */
static bool listed(const char *nodes, const char *me)
{
    size_t ml = strlen(me);
    for (const char *p = nodes; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == ml && memcmp(p, me, l) == 0) return true;
        if (!e) break;
        p = e + 1;
    }
    return false;
}

static void clear_pending(struct clustersp *sp)
{
    free(sp->pending);
    sp->pending = NULL;
}

static void keep_pending(struct clustersp *sp, const char *id, size_t idlen, const char *v,
                         size_t vlen)
{
    char *copy = malloc(idlen + vlen + 1);
    if (!copy) return;               /* the coordinator's pause timeout then says so */
    memcpy(copy, id, idlen);
    memcpy(copy + idlen, v, vlen);
    clear_pending(sp);
    sp->pending = copy;
    sp->pending_idlen = idlen;
    sp->pending_vlen = vlen;
    LOG_INFO(&sp->s->log, "clustersp.queued", "id=%.*s behind=%s", (int)idlen, id, sp->id);
}

static void on_main_key(struct clustersp *sp, const char *id, size_t idlen, const char *v,
                        size_t vlen, int is_put);

static void start_pending(struct clustersp *sp)
{
    char *p = sp->pending;
    if (!p || sp->active) return;
    sp->pending = NULL;
    on_main_key(sp, p, sp->pending_idlen, p + sp->pending_idlen, sp->pending_vlen, 1);
    free(p);
}

static void on_main_key(struct clustersp *sp, const char *id, size_t idlen, const char *v,
                        size_t vlen, int is_put)
{
    char phase[16], nodes[SPC_MAX_NODES * 70], num[24];
    const char *pp;

    if (!is_put) {
        if (sp->pending && sp->pending_idlen == idlen && memcmp(sp->pending, id, idlen) == 0)
            clear_pending(sp);
        if (sp->active && strlen(sp->id) == idlen && memcmp(sp->id, id, idlen) == 0) {
            participant_end(sp, "barrier_ended");
            start_pending(sp);
        }
        return;
    }
    if (idlen >= sizeof sp->id || cluster_word(v, vlen, "phase", phase, sizeof phase) != 0 ||
        cluster_word(v, vlen, "nodes", nodes, sizeof nodes) != 0 ||
        !listed(nodes, cluster_node_id(sp->c)))
        return;
    if (sp->active) {
        if (strlen(sp->id) != idlen || memcmp(sp->id, id, idlen) != 0) {     /* one at a time */
            if (strcmp(phase, "pause") == 0) keep_pending(sp, id, idlen, v, vlen);
            return;
        }
        if (strcmp(phase, "snapshot") == 0 && !sp->snapshot_started) take_snapshot(sp);
        return;
    }
    if (strcmp(phase, "pause") != 0) return;          /* joined late: not part of it */
    pp = memmem(v, vlen, " path=", 6);
    if (!pp || (size_t)(v + vlen - (pp + 6)) >= sizeof sp->path) return;
    memset(sp->path, 0, sizeof sp->path);
    memcpy(sp->path, pp + 6, (size_t)(v + vlen - (pp + 6)));
    memcpy(sp->id, id, idlen);
    sp->id[idlen] = '\0';
    sp->ranges = cluster_word(v, vlen, "ranges", num, sizeof num) == 0 ? (unsigned)atoi(num) : 0;
    sp->max_pause_ms = cluster_word(v, vlen, "max_pause_ms", num, sizeof num) == 0
                           ? atoll(num) : DEFAULT_PAUSE_TIMEOUT_MS + EXTRA_PAUSE_MS;
    sp->active = sp->paused = true;
    sp->reported = sp->snapshot_started = sp->part_running = sp->expired = false;
    sp->done_val[0] = '\0';
    sp->paused_at = rpc_now_ms();
    cluster_set_paused(sp->c, true);
    LOG_INFO(&sp->s->log, "clustersp.pausing", "id=%s", sp->id);
    timer_start(&sp->s->timers, &sp->drain, rpc_now_ms());
    timer_start(&sp->s->timers, &sp->safety, rpc_now_ms() + sp->max_pause_ms);
}

/* ---- coordinator ------------------------------------------------------------------- */

static void coord_sub_key(struct clustersp *sp, const char *rest, size_t len, const char *v,
                          size_t vlen, int is_put);

static void on_key(void *arg, const char *key, size_t klen, const char *v, size_t vlen, int is_put)
{
    struct clustersp *sp = arg;
    const char *slash;

    if (klen <= 11 || memcmp(key, "savepoints/", 11) != 0) return;
    key += 11;
    klen -= 11;
    slash = memchr(key, '/', klen);
    if (!slash)
        on_main_key(sp, key, klen, v, vlen, is_put);
    else
        coord_sub_key(sp, key, klen, v, vlen, is_put);
}

static void coord_free(struct clustersp *sp)
{
    struct coord *co = sp->co;
    if (!co) return;
    timer_stop(&sp->s->timers, &co->tick);
    free(co->nodes);
    free(co);
    sp->co = NULL;
}

static void coord_abort(struct clustersp *sp, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void coord_abort(struct clustersp *sp, int code, const char *fmt, ...)
{
    struct coord *co = sp->co;
    char why[1200], q[1300];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    LOG_WARN(&sp->s->log, "clustersp.aborted", "id=%s err=%s", co->id, log_quote(q, sizeof q, why));
    delete_keys(sp, co->id);
    if (sp->active && strcmp(sp->id, co->id) == 0) participant_end(sp, "aborted");
    remove_tree(co->partial, 2);
    if (co->call)
        rpc_call_error(co->call, code, "cluster savepoint %.300s not written: %s; every node "
                       "has resumed", co->path, why);
    co->call = NULL;
    coord_free(sp);
}

static struct cnode_sp *coord_node(struct coord *co, const char *id, size_t len)
{
    for (size_t i = 0; i < co->n; i++)
        if (strlen(co->nodes[i].id) == len && memcmp(co->nodes[i].id, id, len) == 0)
            return &co->nodes[i];
    return NULL;
}

static void coord_sub_key(struct clustersp *sp, const char *rest, size_t len, const char *v,
                          size_t vlen, int is_put)
{
    struct coord *co = sp->co;
    size_t idl = strlen(co ? co->id : "");
    struct cnode_sp *n;
    char num[24];
    const char *ep;

    if (!co || !is_put || len <= idl + 1 || memcmp(rest, co->id, idl) != 0 || rest[idl] != '/')
        return;
    rest += idl + 1;
    len -= idl + 1;
    if (len > 7 && memcmp(rest, "paused/", 7) == 0) {
        if ((n = coord_node(co, rest + 7, len - 7)) != NULL) n->paused = true;
        timer_start(&sp->s->timers, &co->tick, rpc_now_ms());    /* look now, not next tick */
    } else if (len > 5 && memcmp(rest, "done/", 5) == 0) {
        if ((n = coord_node(co, rest + 5, len - 5)) == NULL || n->done) return;
        n->done = true;
        if (cluster_word(v, vlen, "ok", num, sizeof num) == 0 && strcmp(num, "1") == 0) {
            if (cluster_word(v, vlen, "records", num, sizeof num) == 0)
                n->records = strtoull(num, NULL, 10);
            if (cluster_word(v, vlen, "bytes", num, sizeof num) == 0)
                n->bytes = strtoull(num, NULL, 10);
            if (cluster_word(v, vlen, "write_ms", num, sizeof num) == 0)
                n->write_ms = atoll(num);
        } else {
            n->failed = true;
            ep = memmem(v, vlen, "error=", 6);
            snprintf(n->err, sizeof n->err, "%.*s", ep ? (int)(v + vlen - ep - 6) : 7,
                     ep ? ep + 6 : "unknown");
        }
        timer_start(&sp->s->timers, &co->tick, rpc_now_ms());
    }
}

static void coord_finish(struct clustersp *sp)
{
    struct coord *co = sp->co;
    struct spc_manifest m = {0};
    char err[1200], parent[PATH_MAX_LEN + 1], q[PATH_MAX_LEN + 10];
    Statemesh__V1__ClusterSavepointResponse resp = STATEMESH__V1__CLUSTER_SAVEPOINT_RESPONSE__INIT;
    Statemesh__V1__ClusterSavepointNode *rn = NULL, **rp = NULL;
    char (*kgs)[SPC_MAX_RANGES * 12] = NULL;
    const char *slash;

    m.format_version = SPC_FORMAT_VERSION;
    snprintf(m.cluster, sizeof m.cluster, "%s", sp->s->cfg.cluster.name);
    snprintf(m.id, sizeof m.id, "%s", co->id);
    snprintf(m.statemesh_version, sizeof m.statemesh_version, "%s", SM_VERSION);
    m.key_groups = STORE_KEY_GROUPS;
    m.created_at_ms = timer_wall_ms();
    m.cut_at_ms = co->cut_at_wall;
    m.pause_ms = co->pause_ms;
    m.revision = co->revision;
    m.nnodes = co->n;
    if (!(m.nodes = calloc(co->n, sizeof *m.nodes)) || !(rn = calloc(co->n, sizeof *rn)) ||
        !(rp = calloc(co->n, sizeof *rp)) || !(kgs = calloc(co->n, sizeof *kgs))) {
        snprintf(err, sizeof err, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < co->n; i++) {
        const struct cnode_sp *n = &co->nodes[i];
        size_t o = 0;
        snprintf(m.nodes[i].id, sizeof m.nodes[i].id, "%s", n->id);
        m.nodes[i].nranges = n->nranges;
        memcpy(m.nodes[i].first, n->first, sizeof n->first);
        memcpy(m.nodes[i].last, n->last, sizeof n->last);
        m.nodes[i].records = n->records;
        m.nodes[i].bytes = n->bytes;
        m.records += n->records;
        m.bytes += n->bytes;
        for (uint32_t r = 0; r < n->nranges && o < sizeof kgs[i]; r++)
            o += (size_t)snprintf(kgs[i] + o, sizeof kgs[i] - o, "%s%u-%u", r ? "," : "",
                                  n->first[r], n->last[r]);
        statemesh__v1__cluster_savepoint_node__init(&rn[i]);
        rn[i].node_id = (char *)n->id;
        rn[i].records = n->records;
        rn[i].bytes = n->bytes;
        rn[i].key_groups = kgs[i];
        rn[i].write_ms = n->write_ms;
        rp[i] = &rn[i];
    }
    if (spc_manifest_write(co->partial, &m, err, sizeof err) != 0) goto fail;
    slash = strrchr(co->path, '/');
    snprintf(parent, sizeof parent, "%.*s", slash == co->path ? 1 : (int)(slash - co->path),
             co->path);
    if (fsync_dir(co->partial) != 0 || rename(co->partial, co->path) != 0 ||
        fsync_dir(parent) != 0) {
        snprintf(err, sizeof err, "cannot move %.300s to %.300s: %s", co->partial, co->path,
                 strerror(errno));
        goto fail;
    }
    delete_keys(sp, co->id);
    LOG_INFO(&sp->s->log, "clustersp.done", "id=%s path=%s nodes=%zu records=%" PRIu64
             " bytes=%" PRIu64 " pause_ms=%lld ms=%lld", co->id, log_quote(q, sizeof q, co->path),
             co->n, m.records, m.bytes, (long long)co->pause_ms,
             (long long)(rpc_now_ms() - co->t0));
    if (co->call) {
        resp.path = co->path;
        resp.id = co->id;
        resp.pause_ms = co->pause_ms;
        resp.elapsed_ms = rpc_now_ms() - co->t0;
        resp.records = m.records;
        resp.bytes = m.bytes;
        resp.n_nodes = co->n;
        resp.nodes = rp;
        rpc_call_reply(co->call, &resp.base);
        co->call = NULL;
    }
    coord_free(sp);
    goto out;
fail:
    coord_abort(sp, RPC_INTERNAL, "%s", err);
out:
    spc_manifest_free(&m);
    free(rn);
    free(rp);
    free(kgs);
}

static void put_phase(struct clustersp *sp, const char *phase, etcd_done_fn done);

static void on_phase_put(void *arg, const struct etcd_result *r)
{
    struct clustersp *sp = arg;
    if (!sp->co) return;
    if (r->status != RPC_OK)
        coord_abort(sp, RPC_UNAVAILABLE, "etcd refused the barrier's key: %s", r->error);
}

static void on_tick(void *arg)
{
    struct clustersp *sp = arg;
    struct coord *co = sp->co;
    int64_t now = rpc_now_ms();
    char late[400];
    size_t o = 0;
    bool all = true;

    if (!co) return;
    for (size_t i = 0; i < co->n; i++) {
        struct cnode_sp *n = &co->nodes[i];
        if (n->failed) {
            coord_abort(sp, RPC_INTERNAL, "node %s failed to write its part: %s", n->id, n->err);
            return;
        }
        if (!cluster_node_alive(sp->c, n->id) && !(co->phase == PH_SNAPSHOT && n->done)) {
            coord_abort(sp, RPC_UNAVAILABLE, "node %s went down during the barrier (its lease "
                        "is gone)", n->id);
            return;
        }
        if (co->phase == PH_PAUSE ? !n->paused : !n->done) {
            all = false;
            if (o < sizeof late - 80)
                o += (size_t)snprintf(late + o, sizeof late - o, "%s%s", o ? "," : "", n->id);
        }
    }
    if (co->phase == PH_PAUSE && all) {
        co->phase = PH_SNAPSHOT;
        co->pause_ms = now - co->t0;
        co->cut_at_wall = timer_wall_ms();
        co->revision = cluster_revision(sp->c);
        LOG_INFO(&sp->s->log, "clustersp.all_paused", "id=%s nodes=%zu pause_ms=%lld", co->id,
                 co->n, (long long)co->pause_ms);
        put_phase(sp, "snapshot", on_phase_put);
    } else if (co->phase == PH_SNAPSHOT && all) {
        coord_finish(sp);
        return;
    } else if (co->phase == PH_PAUSE && now - co->t0 > co->pause_timeout_ms) {
        coord_abort(sp, RPC_ABORTED, "node(s) %s did not pause within %u ms (a batch "
                    "in flight not answered, or the node stalled)", late, co->pause_timeout_ms);
        return;
    }
    timer_start(&sp->s->timers, &co->tick, now + TICK_MS);
}

static void put_phase(struct clustersp *sp, const char *phase, etcd_done_fn done)
{
    struct coord *co = sp->co;
    char k[400], *v = malloc(VAL_MAX);
    size_t kl = sp_key(sp, k, sizeof k, co->id, NULL, NULL), o;

    if (!v) {
        coord_abort(sp, RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    o = (size_t)snprintf(v, VAL_MAX, "phase=%s ranges=%u max_pause_ms=%u nodes=", phase,
                         co->ranges, co->pause_timeout_ms + EXTRA_PAUSE_MS);
    for (size_t i = 0; i < co->n; i++)
        o += (size_t)snprintf(v + o, VAL_MAX - o, "%s%s", i ? "," : "", co->nodes[i].id);
    o += (size_t)snprintf(v + o, VAL_MAX - o, " path=%s", co->partial);
    etcd_put(cluster_etcd(sp->c), k, kl, v, o, cluster_lease(sp->c), done, sp);
    free(v);
}

static void on_cancel(void *arg, struct rpc_call *call)
{
    struct clustersp *sp = arg;
    (void)call;
    if (!sp->co) return;
    sp->co->call = NULL;
    coord_abort(sp, RPC_CANCELLED, "the client went away");
}

static void on_request(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    struct server *s = arg;
    struct clustersp *sp = s->clustersp;
    Statemesh__V1__ClusterSavepointRequest *r = NULL;
    struct coord *co = NULL;
    char bad[200], parent[PATH_MAX_LEN + 1], q[PATH_MAX_LEN + 10];
    const char *slash;
    struct stat st;
    size_t pl;

    if (wire_check_strings(&statemesh__v1__cluster_savepoint_request__descriptor, req, len, bad,
                           sizeof bad) ||
        !(r = statemesh__v1__cluster_savepoint_request__unpack(NULL, len, req))) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "request is not a valid ClusterSavepointRequest");
        return;
    }
    pl = strlen(r->path);
    if (!sp) {
        rpc_call_error(call, RPC_FAILED_PRECONDITION, "this runtime is not in a cluster (no "
                       "cluster group): use `statemesh savepoint create`");
        goto out;
    }
    if (pl == 0 || r->path[0] != '/' || pl > PATH_MAX_LEN || strcmp(r->path, "/") == 0 ||
        r->path[pl - 1] == '/') {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "savepoint path must be an absolute path of a "
                       "new directory on a file system every node shares (got \"%.300s\")",
                       r->path);
        goto out;
    }
    if (r->ranges > STORE_KEY_GROUPS || r->pause_timeout_ms > MAX_PAUSE_TIMEOUT_MS) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "ranges must be 1..%d (0 = %d) and "
                       "pause_timeout_ms at most %u (0 = %u)", STORE_KEY_GROUPS, SP_DEFAULT_RANGES,
                       MAX_PAUSE_TIMEOUT_MS, DEFAULT_PAUSE_TIMEOUT_MS);
        goto out;
    }
    if (s->stopping || cluster_state(sp->c) != CLUSTER_SERVING || !cluster_lease(sp->c)) {
        rpc_call_error(call, RPC_UNAVAILABLE, "node %s is not serving (%s); ask another node or "
                       "retry", cluster_node_id(sp->c), s->stopping ? "shutting down" : "fenced "
                       "or joining");
        goto out;
    }
    if (sp->co || sp->active || s->savepoint) {
        rpc_call_error(call, RPC_FAILED_PRECONDITION, "a savepoint is being taken on node %s "
                       "(%s); one at a time", cluster_node_id(sp->c),
                       sp->co ? sp->co->id : sp->active ? sp->id : "a single-node savepoint");
        goto out;
    }
    slash = strrchr(r->path, '/');
    snprintf(parent, sizeof parent, "%.*s", slash == r->path ? 1 : (int)(slash - r->path), r->path);
    if (stat(parent, &st) != 0 || !S_ISDIR(st.st_mode)) {
        rpc_call_error(call, RPC_FAILED_PRECONDITION, "the parent directory of the savepoint, "
                       "%.300s, does not exist on node %s's machine", parent,
                       cluster_node_id(sp->c));
        goto out;
    }
    if (lstat(r->path, &st) == 0) {
        rpc_call_error(call, RPC_ALREADY_EXISTS, "%.300s already exists; a savepoint is written "
                       "to a new directory", r->path);
        goto out;
    }
    if (cluster_range_count(sp->c) == 0) {
        rpc_call_error(call, RPC_FAILED_PRECONDITION, "cluster %s has no ranges assigned yet: "
                       "nothing to save", s->cfg.cluster.name);
        goto out;
    }
    if (!(co = calloc(1, sizeof *co)) ||
        !(co->nodes = calloc(cluster_range_count(sp->c), sizeof *co->nodes))) {
        free(co);
        rpc_call_error(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < cluster_range_count(sp->c); i++) {
        uint32_t first, last;
        const char *owner;
        struct cnode_sp *n;
        cluster_range(sp->c, i, &first, &last, &owner);
        if (!cluster_node_alive(sp->c, owner)) {
            rpc_call_error(call, RPC_UNAVAILABLE, "node %s, owner of key groups %u-%u, is down: "
                           "a cluster savepoint needs every owner of a range", owner, first, last);
            free(co->nodes);
            free(co);
            goto out;
        }
        if (!(n = coord_node(co, owner, strlen(owner)))) {
            n = &co->nodes[co->n++];
            snprintf(n->id, sizeof n->id, "%s", owner);
        }
        if (n->nranges < SPC_MAX_RANGES) {
            n->first[n->nranges] = first;
            n->last[n->nranges++] = last;
        }
    }
    co->call = call;
    co->t0 = rpc_now_ms();
    co->phase = PH_PAUSE;
    co->ranges = r->ranges ? r->ranges : SP_DEFAULT_RANGES;
    co->pause_timeout_ms = r->pause_timeout_ms ? r->pause_timeout_ms : DEFAULT_PAUSE_TIMEOUT_MS;
    snprintf(co->id, sizeof co->id, "%s-%lld", cluster_node_id(sp->c), (long long)timer_wall_ms());
    snprintf(co->path, sizeof co->path, "%s", r->path);
    snprintf(co->partial, sizeof co->partial, "%s.partial-%s", r->path, co->id);
    if (mkdir(co->partial, 0755) != 0) {
        rpc_call_error(call, errno == ENOSPC ? RPC_RESOURCE_EXHAUSTED : RPC_FAILED_PRECONDITION,
                       "cannot create %.300s: %s", co->partial, strerror(errno));
        free(co->nodes);
        free(co);
        goto out;
    }
    sp->co = co;
    timer_init(&co->tick, on_tick, sp);
    rpc_call_set_cancel(call, on_cancel, sp);
    LOG_INFO(&s->log, "clustersp.start", "id=%s path=%s nodes=%zu pause_timeout_ms=%u", co->id,
             log_quote(q, sizeof q, co->path), co->n, co->pause_timeout_ms);
    put_phase(sp, "pause", on_phase_put);
    if (sp->co) timer_start(&s->timers, &co->tick, rpc_now_ms() + TICK_MS);
out:
    statemesh__v1__cluster_savepoint_request__free_unpacked(r, NULL);
}

/* ---- life ------------------------------------------------------------------------ */

static const char *const steps[] = {"before_paused", "after_paused", "after_cut", NULL};

int clustersp_config(struct server *s, char *err, size_t errlen)
{
    const char *v = getenv(FAILPOINT_ENV);
    (void)s;
    if (!v) return 0;
    for (int i = 0; steps[i]; i++)
        if (strcmp(v, steps[i]) == 0) return 0;
    snprintf(err, errlen, "%s=\"%.60s\" is not a failure point (before_paused, after_paused, "
             "after_cut; test-only)", FAILPOINT_ENV, v);
    return -1;
}

int clustersp_create(struct server *s)
{
    struct clustersp *sp = calloc(1, sizeof *sp);
    const char *v = getenv(FAILPOINT_ENV);
    if (!sp) return -1;
    sp->s = s;
    sp->c = s->cluster;
    if (v) {
        snprintf(sp->failpoint, sizeof sp->failpoint, "%s", v);
        LOG_WARN(&s->log, "clustersp.failpoint_armed", "step=%s", sp->failpoint);
    }
    timer_init(&sp->drain, on_drain, sp);
    timer_init(&sp->safety, on_safety, sp);
    timer_init(&sp->retry, on_retry, sp);
    s->clustersp = sp;
    cluster_set_key_hook(s->cluster, on_key, sp);
    return 0;
}

int clustersp_register(struct rpc_server *rpc, struct server *s)
{
    return rpc_server_add_unary(rpc, "/statemesh.v1.Admin/ClusterSavepoint", on_request, s);
}

void clustersp_shutdown(struct server *s)
{
    struct clustersp *sp = s->clustersp;
    if (!sp) return;
    if (sp->co) coord_abort(sp, RPC_UNAVAILABLE, "node %s is shutting down", cluster_node_id(sp->c));
    participant_end(sp, "shutdown");
}

void clustersp_destroy(struct server *s)
{
    struct clustersp *sp = s->clustersp;
    if (!sp) return;
    timer_stop(&s->timers, &sp->drain);
    timer_stop(&s->timers, &sp->safety);
    timer_stop(&s->timers, &sp->retry);
    coord_free(sp);
    clear_pending(sp);
    if (s->cluster) cluster_set_key_hook(s->cluster, NULL, NULL);
    free(sp);
    s->clustersp = NULL;
}
