/* spcreate — see spcreate.h. */
#include "spcreate.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "savepoint.h"
#include "server.h"
#include "statemesh/v1/admin.pb-c.h"
#include "statemesh/version.h"
#include "wire.h"

#define TICK_MS 250
#define LOG_EVERY_MS 5000
#define PATH_MAX_LEN 3000
#define FAULT_SLEEP_ENV "STATEMESH_FAULT_SAVEPOINT_SLEEP_US"
#define FAULT_SLEEP_MAX 10000000u
#define WRITER_NICE 10             /* the writer yields the CPU to the loop */

struct spjob {
    struct server *s;
    struct rpc_scall *call;        /* NULL once the client is gone */
    spcreate_done_fn done_fn;      /* a local job (spcreate_local): told the result */
    void *done_arg;
    struct store_snapshot *snap;
    pthread_t thread;
    bool thread_started;
    char *path, *tmp;
    unsigned nranges;
    struct timer tick;
    int64_t t0, last_log;
    bool sending;                  /* a progress message is in flight */
    char *final;                   /* written, the manifest: the last message waits for
                                    * the progress message in flight (on_writable) */
    /* shared with the thread */
    _Atomic uint64_t records, bytes;
    atomic_uint files_done;
    atomic_bool cancel, done;
    /* written by the thread before `done` */
    int rc;
    char err[1200];
    struct sp_manifest m;
};

/* ---- the writer thread ---------------------------------------------------------- */

struct scan {
    struct spjob *j;
    struct sp_writer *w;
    int kg_check;                  /* the node file: skip X format / key_groups */
    char err[1100];
};

/* The fault knob (spcreate.h): sleeps in slices of at most 10 ms, so a
 * cancel is seen soon. */
static void fault_sleep(struct spjob *j)
{
    uint32_t left = j->s->sp_fault_sleep_us;
    while (left && !atomic_load_explicit(&j->cancel, memory_order_relaxed)) {
        uint32_t us = left < 10000 ? left : 10000;
        struct timespec ts = {0, (long)us * 1000};
        nanosleep(&ts, NULL);
        left -= us;
    }
}

static int put_one(void *arg, const char *key, size_t klen, const uint8_t *val, size_t vlen)
{
    struct scan *sc = arg;
    if (atomic_load_explicit(&sc->j->cancel, memory_order_relaxed)) {
        snprintf(sc->err, sizeof sc->err, "cancelled");
        return 1;
    }
    if (sc->kg_check && klen > 0 && key[0] == 'X' &&
        ((klen == 7 && memcmp(key, "Xformat", 7) == 0) ||
         (klen == 11 && memcmp(key, "Xkey_groups", 11) == 0)))
        return 0;                  /* the manifest carries these */
    uint64_t blocks = sp_writer_blocks(sc->w);
    if (sp_writer_add(sc->w, key, klen, val, vlen, sc->err, sizeof sc->err) != 0) return 1;
    if (sp_writer_blocks(sc->w) != blocks) fault_sleep(sc->j);
    atomic_fetch_add_explicit(&sc->j->records, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&sc->j->bytes, klen + vlen, memory_order_relaxed);
    return 0;
}

/* Scans [lo, hi) of the snapshot into the writer. */
static int scan_range(struct spjob *j, struct scan *sc, const uint8_t *lo, size_t lolen,
                      const uint8_t *hi, size_t hilen)
{
    char err[1100];
    int rc = store_snapshot_scan(j->s->store, j->snap, lo, lolen, hi, hilen, put_one, sc, err,
                                 sizeof err);
    if (rc < 0) snprintf(sc->err, sizeof sc->err, "%s", err);
    return rc;
}

static int write_file(struct spjob *j, unsigned i, struct sp_file *info)
{
    struct scan sc = {.j = j};
    char name[64];
    int rc = -1;

    if (i < j->nranges) {
        sp_range(STORE_KEY_GROUPS, i, j->nranges, &info->kg_first, &info->kg_last);
        snprintf(name, sizeof name, "kg-%04d-%04d.smsp", info->kg_first, info->kg_last);
    } else {
        info->kg_first = info->kg_last = -1;
        snprintf(name, sizeof name, "%s", SP_NODE_FILE);
    }
    if (sp_writer_open(&sc.w, j->tmp, name, sc.err, sizeof sc.err) != 0) goto out;
    if (i < j->nranges) {
        static const char kinds[] = "CDIMOPS";         /* key order */
        for (const char *k = kinds; *k; k++) {
            uint8_t lo[3] = {(uint8_t)*k, (uint8_t)(info->kg_first >> 8), (uint8_t)info->kg_first};
            uint8_t hi[3] = {(uint8_t)*k, (uint8_t)((info->kg_last + 1) >> 8),
                             (uint8_t)(info->kg_last + 1)};
            if (scan_range(j, &sc, lo, 3, hi, 3) != 0) goto out;
        }
    } else {
        static const char kinds[] = "EJLX";
        sc.kg_check = 1;
        for (const char *k = kinds; *k; k++) {
            uint8_t lo = (uint8_t)*k, hi = (uint8_t)(*k + 1);
            if (scan_range(j, &sc, &lo, 1, &hi, 1) != 0) goto out;
        }
    }
    if (sp_writer_finish(&sc.w, info, sc.err, sizeof sc.err) != 0) goto out;
    fault_sleep(j);
    if (atomic_load(&j->cancel)) {
        snprintf(sc.err, sizeof sc.err, "cancelled");
        goto out;
    }
    rc = 0;
out:
    sp_writer_abort(&sc.w);
    if (rc != 0) snprintf(j->err, sizeof j->err, "%s", sc.err);
    return rc;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;
    if (fd < 0) return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

static void parent_of(const char *path, char *out, size_t n)
{
    const char *slash = strrchr(path, '/');
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    snprintf(out, n, "%.*s", (int)len, path);
}

/* Removes a partial directory (plain files only, as written here). */
static void remove_partial(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[PATH_MAX_LEN + 300];

    if (!d) return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void *writer_main(void *arg)
{
    struct spjob *j = arg;
    unsigned nfiles = j->nranges + 1;
    char parent[PATH_MAX_LEN + 1];

    j->rc = -1;
    /* A savepoint is background work: on a busy machine the loop (ingress,
     * checkpoints) gets the CPU first. Linux nice is per thread; failing to
     * lower it only costs ingest throughput during the savepoint. */
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), WRITER_NICE);
    j->m.files = calloc(nfiles, sizeof *j->m.files);
    if (!j->m.files) {
        snprintf(j->err, sizeof j->err, "out of memory");
        goto out;
    }
    for (unsigned i = 0; i < nfiles; i++) {
        if (write_file(j, i, &j->m.files[i]) != 0) goto out;
        j->m.nfiles++;
        j->m.records += j->m.files[i].records;
        j->m.bytes += j->m.files[i].bytes;
        atomic_fetch_add(&j->files_done, 1);
    }
    j->m.created_at_ms = timer_wall_ms();
    if (sp_manifest_write(j->tmp, &j->m, j->err, sizeof j->err) != 0) goto out;
    parent_of(j->path, parent, sizeof parent);
    if (fsync_dir(j->tmp) != 0 || rename(j->tmp, j->path) != 0 || fsync_dir(parent) != 0) {
        snprintf(j->err, sizeof j->err, "cannot move %s to %s: %s", j->tmp, j->path,
                 strerror(errno));
        goto out;
    }
    j->rc = 0;
out:
    if (j->rc != 0) remove_partial(j->tmp);
    atomic_store(&j->done, true);
    return NULL;
}

/* ---- the loop side ----------------------------------------------------------- */

static void send_progress(struct spjob *j, bool done, const char *manifest)
{
    Statemesh__V1__SavepointProgress p = STATEMESH__V1__SAVEPOINT_PROGRESS__INIT;
    uint8_t *buf;
    size_t len;

    if (!j->call || j->sending || !rpc_scall_writable(j->call)) return;
    p.records = atomic_load(&j->records);
    p.bytes = atomic_load(&j->bytes);
    p.files_done = atomic_load(&j->files_done);
    p.files = j->nranges + 1;
    p.elapsed_ms = rpc_now_ms() - j->t0;
    p.done = done;
    if (done) {
        p.path = j->path;
        p.manifest_json = (char *)(manifest ? manifest : "");
    }
    buf = rpc_pack(&p.base, &len);
    if (rpc_scall_send(j->call, buf, len) == 0) j->sending = true;
}

static char *read_manifest(const char *dir)
{
    char p[PATH_MAX_LEN + 100];
    FILE *f;
    char *text = NULL;
    size_t len = 0;
    long n;

    snprintf(p, sizeof p, "%s/%s", dir, SP_MANIFEST);
    if ((f = fopen(p, "rb")) == NULL) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && n < (16L << 20) &&
        fseek(f, 0, SEEK_SET) == 0 && (text = malloc((size_t)n + 1)) != NULL) {
        len = fread(text, 1, (size_t)n, f);
        text[len] = '\0';
    }
    fclose(f);
    return text;
}

static void job_free(struct spjob *j)
{
    sp_manifest_free(&j->m);
    free(j->path);
    free(j->tmp);
    free(j);
}

/* Sends the last message (done, the manifest) and ends the call OK. */
static void send_final(struct spjob *j, const char *manifest)
{
    j->sending = false;
    send_progress(j, true, manifest);
    rpc_scall_finish(j->call, RPC_OK, "savepoint written");
    j->call = NULL;
}

/* The thread is done: report, clean up. */
static void job_finish(struct spjob *j)
{
    struct server *s = j->s;
    int64_t ms = rpc_now_ms() - j->t0;
    char q[PATH_MAX_LEN + 10], qe[1300];

    pthread_join(j->thread, NULL);
    store_snapshot_release(s->store, &j->snap);
    log_quote(q, sizeof q, j->path);
    if (j->rc == 0) {
        char *manifest = read_manifest(j->path);
        double mb = (double)j->m.bytes / 1e6;
        LOG_INFO(&s->log, "savepoint.done", "path=%s records=%" PRIu64 " bytes=%" PRIu64
                 " files=%zu ms=%lld records_per_s=%.0f mb_per_s=%.1f", q, j->m.records,
                 j->m.bytes, j->m.nfiles, (long long)ms,
                 ms > 0 ? (double)j->m.records * 1000.0 / (double)ms : 0.0,
                 ms > 0 ? mb * 1000.0 / (double)ms : 0.0);
        if (j->done_fn) j->done_fn(j->done_arg, 0, NULL, &j->m);
        if (j->call && !rpc_scall_writable(j->call)) {
            /* A progress message is in flight: the last one (done, the
             * manifest) goes when it completes, then the call ends. The job
             * lives until then; s->savepoint keeps the next one waiting. */
            j->final = manifest ? manifest : strdup("");
            if (j->final) return;
        } else if (j->call) {
            send_final(j, manifest);
        }
        free(manifest);
    } else {
        bool cancelled = atomic_load(&j->cancel);
        LOG_WARN(&s->log, cancelled ? "savepoint.cancelled" : "savepoint.failed",
                 "path=%s err=%s", q, log_quote(qe, sizeof qe, j->err));
        if (j->done_fn) j->done_fn(j->done_arg, -1, j->err, NULL);
        if (j->call)
            rpc_scall_finish(j->call, cancelled ? RPC_CANCELLED : RPC_INTERNAL,
                             "savepoint %s not written: %s", j->path, j->err);
    }
    s->savepoint = NULL;
    job_free(j);
}

static void on_tick(void *arg)
{
    struct spjob *j = arg;
    struct server *s = j->s;

    if (atomic_load(&j->done)) {
        job_finish(j);
        return;
    }
    send_progress(j, false, NULL);
    if (rpc_now_ms() - j->last_log >= LOG_EVERY_MS) {
        int64_t ms = rpc_now_ms() - j->t0;
        j->last_log = rpc_now_ms();
        LOG_INFO(&s->log, "savepoint.progress", "records=%" PRIu64 " bytes=%" PRIu64
                 " files_done=%u files=%u seconds=%lld", atomic_load(&j->records),
                 atomic_load(&j->bytes), atomic_load(&j->files_done), j->nranges + 1,
                 (long long)(ms / 1000));
    }
    timer_start(&s->timers, &j->tick, rpc_now_ms() + TICK_MS);
}

/* A job whose last message was waiting: it has gone, or the call died. */
static void job_release(struct spjob *j)
{
    j->s->savepoint = NULL;
    free(j->final);
    job_free(j);
}

static void on_writable(void *arg, struct rpc_scall *c)
{
    struct spjob *j = arg;
    (void)c;
    j->sending = false;
    if (j->final) {
        send_final(j, j->final);
        job_release(j);
    }
}

static void on_cancel(void *arg, struct rpc_scall *c)
{
    struct spjob *j = arg;
    (void)c;
    j->call = NULL;
    atomic_store(&j->cancel, true);
    if (j->final) job_release(j);  /* written; only the client is gone */
}

static void on_extra_message(void *arg, struct rpc_scall *c, const uint8_t *data, size_t len)
{
    (void)arg;
    (void)c;
    (void)data;
    (void)len;                 /* nothing more is read after the request */
}

/* Removes PATH.partial-PID directories whose process is gone. */
static void remove_stale_partials(struct server *s, const char *path)
{
    char parent[PATH_MAX_LEN + 1], p[PATH_MAX_LEN + 300], q[PATH_MAX_LEN + 310];
    const char *base = strrchr(path, '/') + 1;
    size_t bl = strlen(base);
    DIR *d;
    struct dirent *e;

    parent_of(path, parent, sizeof parent);
    if ((d = opendir(parent)) == NULL) return;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid;
        if (strncmp(e->d_name, base, bl) != 0 || strncmp(e->d_name + bl, ".partial-", 9) != 0)
            continue;
        pid = strtol(e->d_name + bl + 9, &end, 10);
        if (*end || pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno != ESRCH)) continue;
        if (pid != getpid() && kill((pid_t)pid, 0) == 0) continue;     /* still writing */
        snprintf(p, sizeof p, "%s/%s", strcmp(parent, "/") ? parent : "", e->d_name);
        remove_partial(p);
        LOG_INFO(&s->log, "savepoint.stale_removed", "path=%s", log_quote(q, sizeof q, p));
    }
    closedir(d);
}

static void refuse(struct rpc_scall *c, int code, const char *fmt, const char *a)
{
    rpc_scall_finish(c, code, fmt, a);
}

static void on_request(void *arg, struct rpc_scall *c, const uint8_t *data, size_t len)
{
    static const struct rpc_scall_callbacks cb = {on_extra_message, on_writable, on_cancel};
    struct server *s = arg;
    Statemesh__V1__CreateSavepointRequest *r = NULL;
    struct spjob *j = NULL;
    char bad[200], parent[PATH_MAX_LEN + 1], q[PATH_MAX_LEN + 10];
    struct stat st;
    size_t pl;
    int e;

    if (!data) {
        refuse(c, RPC_INVALID_ARGUMENT, "%s", "stream closed before a CreateSavepointRequest");
        return;
    }
    if (wire_check_strings(&statemesh__v1__create_savepoint_request__descriptor, data, len, bad,
                           sizeof bad) ||
        (r = statemesh__v1__create_savepoint_request__unpack(NULL, len, data)) == NULL) {
        refuse(c, RPC_INVALID_ARGUMENT, "%s", "request is not a valid CreateSavepointRequest");
        return;
    }
    pl = strlen(r->path);
    if (pl == 0 || r->path[0] != '/' || pl > PATH_MAX_LEN || strcmp(r->path, "/") == 0 ||
        r->path[pl - 1] == '/') {
        refuse(c, RPC_INVALID_ARGUMENT, "savepoint path must be an absolute path of a new "
               "directory on the runtime's machine (got \"%.300s\")", r->path);
        goto out;
    }
    if (r->ranges > STORE_KEY_GROUPS) {
        rpc_scall_finish(c, RPC_INVALID_ARGUMENT, "ranges must be 1..%d (0 = %d)",
                         STORE_KEY_GROUPS, SP_DEFAULT_RANGES);
        goto out;
    }
    if (s->stopping) {
        refuse(c, RPC_UNAVAILABLE, "%s", "the runtime is shutting down");
        goto out;
    }
    if (s->savepoint) {
        refuse(c, RPC_FAILED_PRECONDITION, "a savepoint is being written to %.300s; one at a "
               "time", s->savepoint->path);
        goto out;
    }
    parent_of(r->path, parent, sizeof parent);
    if (stat(parent, &st) != 0 || !S_ISDIR(st.st_mode)) {
        refuse(c, RPC_FAILED_PRECONDITION, "the parent directory of the savepoint, %.300s, does "
               "not exist on the runtime's machine", parent);
        goto out;
    }
    if (lstat(r->path, &st) == 0) {
        refuse(c, RPC_ALREADY_EXISTS, "%.300s already exists; a savepoint is written to a new "
               "directory", r->path);
        goto out;
    }
    remove_stale_partials(s, r->path);
    j = calloc(1, sizeof *j);
    if (!j || !(j->path = strdup(r->path)) || !(j->tmp = malloc(pl + 40))) {
        if (j) job_free(j);
        refuse(c, RPC_RESOURCE_EXHAUSTED, "%s", "out of memory");
        goto out;
    }
    snprintf(j->tmp, pl + 40, "%s.partial-%ld", r->path, (long)getpid());
    if (mkdir(j->tmp, 0755) != 0) {
        e = errno;
        rpc_scall_finish(c, e == ENOSPC ? RPC_RESOURCE_EXHAUSTED : RPC_FAILED_PRECONDITION,
                         "cannot create %.300s: %s", j->tmp, strerror(e));
        job_free(j);
        goto out;
    }
    j->s = s;
    j->call = c;
    j->nranges = r->ranges ? r->ranges : SP_DEFAULT_RANGES;
    j->t0 = j->last_log = rpc_now_ms();
    j->m.format_version = SP_FORMAT_VERSION;
    snprintf(j->m.statemesh_version, sizeof j->m.statemesh_version, "%s", SM_VERSION);
    j->m.store_format = STORE_FORMAT_VERSION;
    j->m.key_groups = STORE_KEY_GROUPS;
    /* The cut: here, between two checkpoints (the loop writes them). */
    j->m.cut.taken_at_ms = timer_wall_ms();
    j->m.cut.checkpoint = s->ckpt.generation;
    j->snap = store_snapshot_take(s->store);
    if (!j->snap || (e = pthread_create(&j->thread, NULL, writer_main, j)) != 0) {
        if (j->snap) store_snapshot_release(s->store, &j->snap);
        remove_partial(j->tmp);
        refuse(c, RPC_RESOURCE_EXHAUSTED, "%s", "cannot start the savepoint writer");
        job_free(j);
        goto out;
    }
    j->thread_started = true;
    rpc_scall_set(c, &cb, j);
    s->savepoint = j;
    timer_init(&j->tick, on_tick, j);
    timer_start(&s->timers, &j->tick, rpc_now_ms() + TICK_MS);
    LOG_INFO(&s->log, "savepoint.start", "path=%s ranges=%u checkpoint=%llu",
             log_quote(q, sizeof q, j->path), j->nranges,
             (unsigned long long)j->m.cut.checkpoint);
out:
    if (r) statemesh__v1__create_savepoint_request__free_unpacked(r, NULL);
}

static void on_open(void *arg, struct rpc_scall *c)
{
    static const struct rpc_scall_callbacks cb = {on_request, NULL, NULL};
    rpc_scall_set(c, &cb, arg);
    rpc_scall_read(c);
}

int spcreate_local(struct server *s, const char *path, unsigned nranges, spcreate_done_fn fn,
                   void *arg, char *err, size_t errlen)
{
    struct spjob *j = NULL;
    size_t pl = strlen(path);
    char q[PATH_MAX_LEN + 10];
    struct stat st;

    if (s->savepoint) {
        snprintf(err, errlen, "a savepoint is being written to %.300s; one at a time",
                 s->savepoint->path);
        return -1;
    }
    if (pl == 0 || path[0] != '/' || pl > PATH_MAX_LEN || lstat(path, &st) == 0) {
        snprintf(err, errlen, "%.300s is not an absolute path of a new directory", path);
        return -1;
    }
    remove_stale_partials(s, path);
    j = calloc(1, sizeof *j);
    if (!j || !(j->path = strdup(path)) || !(j->tmp = malloc(pl + 40))) {
        if (j) job_free(j);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(j->tmp, pl + 40, "%s.partial-%ld", path, (long)getpid());
    if (mkdir(j->tmp, 0755) != 0) {
        snprintf(err, errlen, "cannot create %.300s: %s", j->tmp, strerror(errno));
        job_free(j);
        return -1;
    }
    j->s = s;
    j->done_fn = fn;
    j->done_arg = arg;
    j->nranges = nranges ? nranges : SP_DEFAULT_RANGES;
    j->t0 = j->last_log = rpc_now_ms();
    j->m.format_version = SP_FORMAT_VERSION;
    snprintf(j->m.statemesh_version, sizeof j->m.statemesh_version, "%s", SM_VERSION);
    j->m.store_format = STORE_FORMAT_VERSION;
    j->m.key_groups = STORE_KEY_GROUPS;
    j->m.cut.taken_at_ms = timer_wall_ms();
    j->m.cut.checkpoint = s->ckpt.generation;
    j->snap = store_snapshot_take(s->store);
    if (!j->snap || pthread_create(&j->thread, NULL, writer_main, j) != 0) {
        if (j->snap) store_snapshot_release(s->store, &j->snap);
        remove_partial(j->tmp);
        snprintf(err, errlen, "cannot start the savepoint writer");
        job_free(j);
        return -1;
    }
    j->thread_started = true;
    s->savepoint = j;
    timer_init(&j->tick, on_tick, j);
    timer_start(&s->timers, &j->tick, rpc_now_ms() + TICK_MS);
    LOG_INFO(&s->log, "savepoint.start", "path=%s ranges=%u checkpoint=%llu local=1",
             log_quote(q, sizeof q, j->path), j->nranges,
             (unsigned long long)j->m.cut.checkpoint);
    return 0;
}

void spcreate_cancel_local(struct server *s)
{
    struct spjob *j = s->savepoint;
    if (!j || !j->done_fn) return;
    j->done_fn = NULL;             /* the owner has gone: no callback */
    atomic_store(&j->cancel, true);
}

int spcreate_config(struct server *s, char *err, size_t errlen)
{
    const char *v = getenv(FAULT_SLEEP_ENV);
    unsigned long long n;
    char *end;

    s->sp_fault_sleep_us = 0;
    if (!v) return 0;
    errno = 0;
    n = strtoull(v, &end, 10);
    if (!*v || *end || errno || v[0] == '-' || v[0] == '+' || n > FAULT_SLEEP_MAX) {
        snprintf(err, errlen, "%s=\"%.100s\" is not a number of microseconds in 0..%u (a "
                 "test-only knob: the savepoint writer's sleep after each block)",
                 FAULT_SLEEP_ENV, v, FAULT_SLEEP_MAX);
        return -1;
    }
    s->sp_fault_sleep_us = (uint32_t)n;
    if (n) LOG_WARN(&s->log, "savepoint.fault_injection", "sleep_us_per_block=%llu", n);
    return 0;
}

int spcreate_register(struct rpc_server *rpc, struct server *s)
{
    return rpc_server_add_stream(rpc, "/statemesh.v1.Admin/CreateSavepoint", on_open, s);
}

void spcreate_shutdown(struct server *s)
{
    struct spjob *j = s->savepoint;
    if (!j) return;
    if (j->final) {                /* written; its last message was waiting */
        job_release(j);
        return;
    }
    atomic_store(&j->cancel, true);
    timer_stop(&s->timers, &j->tick);
    j->call = NULL;                /* the gRPC server is going or gone */
    job_finish(j);
}
