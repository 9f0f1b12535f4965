/*
 * metrics — see metrics.h for the threading design (a snapshot published by
 * the loop under one mutex, read by libmicrohttpd's thread).
 *
 * A view is everything one scrape shows. There are three: `live` (the loop's
 * own histograms and method names; the scalar values are read from the
 * server when publishing), `shared` (the last published copy, under `mu`)
 * and `render` (the HTTP thread's private copy, formatted outside the lock).
 * Each view's per-endpoint and per-egress arrays are allocated once, in
 * metrics_create, with the counts the configuration fixes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <microhttpd.h>

#include "histo.h"
#include "metrics.h"
#include "server.h"
#include "statemesh/version.h"

#define NCODES 17                     /* gRPC status codes 0..16 */
#define NAME_MAX_LEN 128              /* label values kept (longer: truncated) */
#define OTHER_METHOD METRICS_MAX_METHODS   /* row for unknown or surplus methods */

struct ep_view {
    char endpoint[NAME_MAX_LEN];      /* target or library */
    char functions[NAME_MAX_LEN];
    int64_t in_flight;
    int up;
    struct histo round_trip;
};

struct egress_view {
    char name[NAME_MAX_LEN];
    int64_t records;                  /* committed offset: records ever committed */
    int64_t retained;
};

struct method_view {
    char service[NAME_MAX_LEN];
    char method[NAME_MAX_LEN];
    struct histo by_code[NCODES];
};

struct view {
    struct stats stats;
    int64_t cache_hits, cache_misses, cache_bytes;
    struct histo checkpoint;
    size_t n_eps, n_egresses;
    struct ep_view *eps;
    struct egress_view *egresses;
    int n_methods;                    /* named rows in methods[] */
    struct method_view methods[METRICS_MAX_METHODS + 1];   /* + OTHER_METHOD */
};

struct metrics {
    struct MHD_Daemon *daemon;
    int64_t next_publish_ms;          /* loop only */
    struct view live;                 /* loop only */
    pthread_mutex_t mu;               /* guards shared and ready */
    struct view shared;
    int ready;
    int stopping;                     /* readyz: why not ready */
    struct view render;               /* HTTP thread only */
};

/* ---- address -------------------------------------------------------------- */

int metrics_parse_addr(const char *addr, struct sockaddr_storage *sa, socklen_t *salen,
                       char *err, size_t errlen)
{
    char host[64];
    const char *colon, *h = addr;
    size_t hlen;
    char *end;
    long port;

    memset(sa, 0, sizeof *sa);
    colon = strrchr(addr, ':');
    if (!colon || colon == addr) {
        snprintf(err, errlen, "expected host:port, e.g. \"127.0.0.1:9464\"");
        return -1;
    }
    hlen = (size_t)(colon - addr);
    if (addr[0] == '[') {
        if (hlen < 3 || addr[hlen - 1] != ']') {
            snprintf(err, errlen, "an IPv6 host goes in brackets, e.g. \"[::1]:9464\"");
            return -1;
        }
        h = addr + 1;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof host) {
        snprintf(err, errlen, "expected host:port, e.g. \"127.0.0.1:9464\"");
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || *end || errno || port < 1 || port > 65535) {
        snprintf(err, errlen, "the port must be a number 1..65535");
        return -1;
    }
    if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
    if (h == addr) {
        struct sockaddr_in *in = (struct sockaddr_in *)sa;
        if (inet_pton(AF_INET, host, &in->sin_addr) != 1) {
            snprintf(err, errlen, "the host must be an IPv4 address, [IPv6] or localhost "
                     "(no name lookups)");
            return -1;
        }
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        *salen = sizeof *in;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1) {
            snprintf(err, errlen, "the host in brackets must be an IPv6 address");
            return -1;
        }
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *salen = sizeof *in6;
    }
    return 0;
}

/* ---- views ------------------------------------------------------------------ */

static void copy_name(char *dst, const char *src)
{
    snprintf(dst, NAME_MAX_LEN, "%s", src ? src : "");
}

static int view_init(struct view *v, const struct server *s)
{
    memset(v, 0, sizeof *v);
    v->n_eps = s->cfg.n_endpoints;
    v->n_egresses = s->cfg.n_egresses;
    v->eps = calloc(v->n_eps + 1, sizeof *v->eps);
    v->egresses = calloc(v->n_egresses + 1, sizeof *v->egresses);
    if (!v->eps || !v->egresses) return -1;
    for (size_t i = 0; i < v->n_eps; i++) {
        const struct cfg_endpoint *c = &s->cfg.endpoints[i];
        copy_name(v->eps[i].endpoint, c->target ? c->target : c->library);
        copy_name(v->eps[i].functions, c->functions);
    }
    for (size_t i = 0; i < v->n_egresses; i++) copy_name(v->egresses[i].name, s->cfg.egresses[i].name);
    copy_name(v->methods[OTHER_METHOD].service, "other");
    copy_name(v->methods[OTHER_METHOD].method, "other");
    return 0;
}

static void view_cleanup(struct view *v)
{
    free(v->eps);
    free(v->egresses);
    v->eps = NULL;
    v->egresses = NULL;
}

/* dst = src; both made by view_init for the same server. */
static void view_copy(struct view *dst, const struct view *src)
{
    struct ep_view *eps = dst->eps;
    struct egress_view *egs = dst->egresses;
    memcpy(dst, src, sizeof *dst);
    dst->eps = eps;
    dst->egresses = egs;
    memcpy(eps, src->eps, src->n_eps * sizeof *eps);
    memcpy(egs, src->egresses, src->n_egresses * sizeof *egs);
}

/* ---- rendering (HTTP thread) ------------------------------------------------- */

struct text {
    char *buf;
    size_t len, cap;
    int full;                         /* METRICS_MAX_TEXT reached */
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (t->full) return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        if (t->cap * 2 > METRICS_MAX_TEXT) {
            t->full = 1;
            return;
        }
        char *nb = realloc(t->buf, t->cap * 2);
        if (!nb) {
            t->full = 1;
            return;
        }
        t->buf = nb;
        t->cap *= 2;
    }
}

/* A label value with \, " and newline escaped (text format 0.0.4). */
static const char *esc(char *out, size_t size, const char *in)
{
    size_t o = 0;
    for (; *in && o + 3 < size; in++) {
        if (*in == '\\' || *in == '"') {
            out[o++] = '\\';
            out[o++] = *in;
        } else if (*in == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *in;
        }
    }
    out[o] = '\0';
    return out;
}

static void head(struct text *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void scalar(struct text *t, const char *name, const char *type, const char *help,
                   int64_t v)
{
    head(t, name, type, help);
    put(t, "%s %lld\n", name, (long long)v);
}

/* One histogram's series; `labels` is "" or `a="x",b="y"` (no braces). */
static void histo_series(struct text *t, const char *name, const char *labels,
                         const struct histo *h)
{
    const char *sep = labels[0] ? "," : "";
    for (int i = 0; i < HISTO_BUCKETS; i++) {
        int64_t b = histo_bound_ns(i);
        put(t, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, (double)b / 1e9,
            (unsigned long long)histo_cumulative(h, i));
    }
    put(t, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)h->count);
    put(t, "%s_sum%s%s%s %.9f\n", name, labels[0] ? "{" : "", labels, labels[0] ? "}" : "",
        (double)h->sum_ns / 1e9);
    put(t, "%s_count%s%s%s %llu\n", name, labels[0] ? "{" : "", labels, labels[0] ? "}" : "",
        (unsigned long long)h->count);
}

static void render(struct text *t, const struct view *v)
{
    const struct stats *st = &v->stats;
    char a[300], b[300], l[800];

    head(t, "statemesh_build_info", "gauge", "Always 1; the version of this statemeshd.");
    put(t, "statemesh_build_info{version=\"%s\"} 1\n", esc(a, sizeof a, SM_VERSION));

#define C(name, help, val) scalar(t, "statemesh_" name, "counter", help, val)
#define G(name, help, val) scalar(t, "statemesh_" name, "gauge", help, val)
    C("messages_received_total", "Messages accepted at the ingress (durable when acknowledged).",
      st->messages_received);
    C("messages_produced_total", "Messages sent by functions to other addresses.",
      st->messages_produced);
    C("messages_delivered_total", "Messages consumed by committed function results.",
      st->messages_delivered);
    C("messages_dead_lettered_total", "Messages moved to the dead-letter store.",
      st->dead_lettered);
    C("messages_rejected_total", "Send/Call refused because the queues were full.",
      st->rejected_overloaded);
    C("replies_total", "Replies to callers produced by functions.", st->replies);
    G("queued_messages", "Messages waiting or in flight.", st->queued_messages);
    G("queued_bytes", "Memory held by queued messages, in bytes.", st->queued_bytes);
    G("dead_letters", "Messages stored in the dead-letter store.", st->dead_letters);
    C("batches_sent_total", "Invocation batches sent to function servers.", st->batches_sent);
    C("batches_failed_total", "Batches that failed (function error, timeout, invalid answer).",
      st->batches_failed);
    C("batches_retried_total", "Failed batches scheduled for another attempt.",
      st->batches_retried);
    C("batches_resent_total", "Batches sent again after their stream was lost.",
      st->batches_resent);
    C("batches_incomplete_total", "Batches answered 'incomplete' (missing state specs).",
      st->batches_incomplete);
    C("invalid_results_total", "Function answers that were unusable.", st->invalid_results);
    G("addresses_retrying", "Addresses whose head message failed and waits for a retry.",
      st->addresses_retrying);
    G("addresses_paused", "Addresses paused after their retries ran out.", st->addresses_paused);
    C("checkpoints_total", "Checkpoints written.", st->checkpoints);
    C("checkpoint_operations_total", "Store operations written by checkpoints.",
      st->checkpoint_ops);
    C("state_cache_hits_total", "State reads answered from the state cache.", v->cache_hits);
    C("state_cache_misses_total", "State reads that went to the store.", v->cache_misses);
    G("state_cache_bytes", "Memory held by the state cache, in bytes.", v->cache_bytes);
    G("delayed_messages", "Delayed messages waiting for their time.", st->delayed_pending);
    C("delayed_fired_total", "Delayed messages delivered at their time.", st->delayed_fired);
    C("idempotent_duplicates_total", "Requests answered from an idempotency record.",
      st->idempotent_duplicates);
    G("subscribers", "Egress subscriptions open.", st->subscribers);
    G("send_streams", "SendStream calls open.", st->send_streams);
    C("spans_exported_total", "Trace spans the OTLP collector accepted (runtime.tracing).",
      st->spans_exported);
    C("spans_dropped_total", "Trace spans dropped: export queue full or export failed.",
      st->spans_dropped);
#undef C
#undef G

    head(t, "statemesh_endpoint_up", "gauge", "1 while the endpoint has an Invoke stream open.");
    for (size_t i = 0; i < v->n_eps; i++)
        put(t, "statemesh_endpoint_up{endpoint=\"%s\",functions=\"%s\"} %d\n",
            esc(a, sizeof a, v->eps[i].endpoint), esc(b, sizeof b, v->eps[i].functions),
            v->eps[i].up);
    head(t, "statemesh_endpoint_in_flight_batches", "gauge", "Batches sent and not yet answered.");
    for (size_t i = 0; i < v->n_eps; i++)
        put(t, "statemesh_endpoint_in_flight_batches{endpoint=\"%s\",functions=\"%s\"} %lld\n",
            esc(a, sizeof a, v->eps[i].endpoint), esc(b, sizeof b, v->eps[i].functions),
            (long long)v->eps[i].in_flight);
    head(t, "statemesh_batch_round_trip_seconds", "histogram",
         "From a batch's dispatch to its answer, per endpoint.");
    for (size_t i = 0; i < v->n_eps; i++) {
        snprintf(l, sizeof l, "endpoint=\"%s\",functions=\"%s\"",
                 esc(a, sizeof a, v->eps[i].endpoint), esc(b, sizeof b, v->eps[i].functions));
        histo_series(t, "statemesh_batch_round_trip_seconds", l, &v->eps[i].round_trip);
    }

    head(t, "statemesh_checkpoint_duration_seconds", "histogram",
         "A checkpoint's store write, with its fsync when checkpoint.sync is on.");
    histo_series(t, "statemesh_checkpoint_duration_seconds", "", &v->checkpoint);

    head(t, "statemesh_egress_records_total", "counter",
         "Records committed to the egress since it was created.");
    for (size_t i = 0; i < v->n_egresses; i++)
        put(t, "statemesh_egress_records_total{egress=\"%s\"} %lld\n",
            esc(a, sizeof a, v->egresses[i].name), (long long)v->egresses[i].records);
    head(t, "statemesh_egress_retained_records", "gauge", "Records the egress holds now.");
    for (size_t i = 0; i < v->n_egresses; i++)
        put(t, "statemesh_egress_retained_records{egress=\"%s\"} %lld\n",
            esc(a, sizeof a, v->egresses[i].name), (long long)v->egresses[i].retained);

    head(t, "statemesh_ingress_request_duration_seconds", "histogram",
         "gRPC calls served (ingress and admin), per method and status code; streams: "
         "their whole life.");
    for (int m = 0; m <= METRICS_MAX_METHODS; m++) {
        if (m >= v->n_methods && m != OTHER_METHOD) continue;
        for (int c = 0; c < NCODES; c++) {
            const struct histo *h = &v->methods[m].by_code[c];
            if (h->count == 0) continue;
            snprintf(l, sizeof l, "service=\"%s\",method=\"%s\",code=\"%s\"",
                     esc(a, sizeof a, v->methods[m].service), esc(b, sizeof b, v->methods[m].method),
                     rpc_status_name(c));
            histo_series(t, "statemesh_ingress_request_duration_seconds", l, h);
        }
    }
}

/* ---- HTTP (HTTP thread) ------------------------------------------------------ */

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type,
                             char *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    enum MHD_Result rc;
    if (!r) {
        if (mode == MHD_RESPMEM_MUST_FREE) free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    if (status != MHD_HTTP_OK) MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

#define TEXT_PLAIN "text/plain; charset=utf-8"

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    struct metrics *m = cls;
    (void)version;
    (void)upload_data;
    (void)con_cls;

    *upload_data_size = 0;             /* a body is never read */
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, TEXT_PLAIN,
                     (char *)"only GET and HEAD are allowed\n", 30, MHD_RESPMEM_PERSISTENT);
    if (strcmp(url, "/healthz") == 0)
        return reply(conn, MHD_HTTP_OK, TEXT_PLAIN, (char *)"ok\n", 3, MHD_RESPMEM_PERSISTENT);
    if (strcmp(url, "/readyz") == 0) {
        int ready, stopping;
        pthread_mutex_lock(&m->mu);
        ready = m->ready;
        stopping = m->stopping;
        pthread_mutex_unlock(&m->mu);
        if (ready)
            return reply(conn, MHD_HTTP_OK, TEXT_PLAIN, (char *)"ready\n", 6, MHD_RESPMEM_PERSISTENT);
        if (stopping)
            return reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, TEXT_PLAIN,
                         (char *)"not ready: stopping\n", 20, MHD_RESPMEM_PERSISTENT);
        return reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, TEXT_PLAIN,
                     (char *)"not ready: starting (store and recovery)\n", 41,
                     MHD_RESPMEM_PERSISTENT);
    }
    if (strcmp(url, "/metrics") == 0) {
        struct text t = {malloc(64 * 1024), 0, 64 * 1024, 0};
        if (!t.buf) return MHD_NO;
        pthread_mutex_lock(&m->mu);
        view_copy(&m->render, &m->shared);
        pthread_mutex_unlock(&m->mu);
        render(&t, &m->render);
        if (t.full) {
            free(t.buf);
            return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, TEXT_PLAIN,
                         (char *)"metrics text too large\n", 23, MHD_RESPMEM_PERSISTENT);
        }
        return reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", t.buf, t.len,
                     MHD_RESPMEM_MUST_FREE);
    }
    return reply(conn, MHD_HTTP_NOT_FOUND, TEXT_PLAIN,
                 (char *)"not found: try /metrics, /healthz or /readyz\n", 45,
                 MHD_RESPMEM_PERSISTENT);
}

/* ---- lifecycle ------------------------------------------------------------------- */

static int listen_on(const char *addr, int *fd_out, int *v6, char *err, size_t errlen)
{
    struct sockaddr_storage sa;
    socklen_t salen;
    char why[200];
    int fd, one = 1;

    if (metrics_parse_addr(addr, &sa, &salen, why, sizeof why) != 0) {
        snprintf(err, errlen, "runtime.metrics \"%s\": %s", addr, why);
        return -1;
    }
    fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&sa, salen) != 0 || listen(fd, 64) != 0) {
        snprintf(err, errlen, "cannot listen on %s for runtime.metrics: %s", addr, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    *fd_out = fd;
    *v6 = sa.ss_family == AF_INET6;
    return 0;
}

int metrics_create(struct metrics **out, const struct server *s, char *err, size_t errlen)
{
    struct metrics *m = calloc(1, sizeof *m);
    int fd = -1, v6 = 0;

    *out = NULL;
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&m->mu, NULL);
    if (view_init(&m->live, s) != 0 || view_init(&m->shared, s) != 0 ||
        view_init(&m->render, s) != 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (listen_on(s->cfg.metrics, &fd, &v6, err, errlen) != 0) goto fail;
    m->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                                     (v6 ? MHD_USE_IPv6 : 0),
                                 0, NULL, NULL, on_request, m,
                                 MHD_OPTION_LISTEN_SOCKET, fd,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_MAX_CONNECTIONS,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_TIMEOUT_S,
                                 MHD_OPTION_END);
    if (!m->daemon) {
        close(fd);
        snprintf(err, errlen, "cannot start the HTTP server for runtime.metrics on %s",
                 s->cfg.metrics);
        goto fail;
    }
    *out = m;
    return 0;
fail:
    metrics_destroy(&m);
    return -1;
}

void metrics_destroy(struct metrics **mp)
{
    struct metrics *m = *mp;
    if (!m) return;
    if (m->daemon) MHD_stop_daemon(m->daemon);   /* joins the thread, closes the socket */
    view_cleanup(&m->live);
    view_cleanup(&m->shared);
    view_cleanup(&m->render);
    pthread_mutex_destroy(&m->mu);
    free(m);
    *mp = NULL;
}

/* ---- loop thread ------------------------------------------------------------------ */

void metrics_set_ready(struct server *s, int ready)
{
    struct metrics *m = s->metrics;
    if (!m) return;
    metrics_publish(s, 1);
    pthread_mutex_lock(&m->mu);
    m->ready = ready;
    if (!ready && s->stopping) m->stopping = 1;
    pthread_mutex_unlock(&m->mu);
}

void metrics_publish(struct server *s, int force)
{
    struct metrics *m = s->metrics;
    struct view *v;
    int64_t now;

    if (!m) return;
    now = rpc_now_ms();
    if (!force && now < m->next_publish_ms) return;
    m->next_publish_ms = now + METRICS_PUBLISH_MS;
    v = &m->live;
    v->stats = s->stats;
    v->cache_hits = s->scache.hits;
    v->cache_misses = s->scache.misses;
    v->cache_bytes = (int64_t)s->scache.bytes;
    for (size_t i = 0; s->endpoints && i < v->n_eps && i < s->n_endpoints; i++) {
        v->eps[i].in_flight = s->endpoints[i].inflight;
        v->eps[i].up = s->endpoints[i].state == EP_UP;
    }
    for (size_t i = 0; s->egresses && i < v->n_egresses && i < s->n_egresses; i++) {
        v->egresses[i].records = (int64_t)s->egresses[i].committed;
        v->egresses[i].retained = (int64_t)(s->egresses[i].committed - s->egresses[i].first);
    }
    pthread_mutex_lock(&m->mu);
    view_copy(&m->shared, v);
    pthread_mutex_unlock(&m->mu);
}

static void on_rpc(void *arg, int method, int code, int64_t ns)
{
    struct metrics *m = arg;
    int row = method >= 0 && method < m->live.n_methods ? method : OTHER_METHOD;
    if (code < 0 || code >= NCODES) code = 2;   /* UNKNOWN */
    histo_observe(&m->live.methods[row].by_code[code], ns);
}

void metrics_attach_rpc(struct metrics *m, struct rpc_server *srv)
{
    int n;
    if (!m) return;
    n = rpc_server_nmethods(srv);
    if (n > METRICS_MAX_METHODS) n = METRICS_MAX_METHODS;
    for (int i = 0; i < n; i++) {
        const char *full = rpc_server_method(srv, i), *slash;
        struct method_view *mv = &m->live.methods[i];
        if (full[0] == '/') full++;
        slash = strchr(full, '/');
        if (slash) {
            snprintf(mv->service, sizeof mv->service, "%.*s", (int)(slash - full), full);
            copy_name(mv->method, slash + 1);
        } else {
            copy_name(mv->service, "");
            copy_name(mv->method, full);
        }
    }
    m->live.n_methods = n;
    rpc_server_observe(srv, on_rpc, m);
}

void metrics_batch_round_trip(struct metrics *m, int ep, int64_t ns)
{
    if (!m || ep < 0 || (size_t)ep >= m->live.n_eps) return;
    histo_observe(&m->live.eps[ep].round_trip, ns);
}

void metrics_checkpoint(struct metrics *m, int64_t ns)
{
    if (m) histo_observe(&m->live.checkpoint, ns);
}
