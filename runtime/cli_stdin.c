/*
 * cli_stdin — `statemesh send --stdin`: JSON lines over one SendStream,
 * with progress on stderr (the line format is described in cli.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "statemesh/json.h"

#define STDIN_FINISH_TIMEOUT_MS 60000
#define MAX_REPORTED 100 /* per kind of line error; then only counted */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Lines of fd 0, read in large chunks; `idle` runs before a read would block. */
struct reader {
    char *buf;
    size_t cap, start, end;
    bool eof;
};

struct feeder; /* the send --stdin state, below */
static void feeder_idle(struct feeder *fd);

/* The next line (without "\n" or "\r\n") in *line/*len. Returns 1, 0 at the
 * end of input, -1 on a read error (errno), -2 for a line longer than
 * MAX_LINE (skipped). */
static int read_line(struct reader *r, struct feeder *fd, char **line, size_t *len)
{
    bool too_long = false;
    for (;;) {
        char *nl = r->end > r->start ? memchr(r->buf + r->start, '\n', r->end - r->start) : NULL;
        if (nl || (r->eof && r->end > r->start)) {
            size_t n = nl ? (size_t)(nl - (r->buf + r->start)) : r->end - r->start;
            *line = r->buf + r->start;
            r->start += n + (nl ? 1 : 0);
            if (n && (*line)[n - 1] == '\r') n--;
            *len = n;
            if (too_long) return -2;
            return 1;
        }
        if (r->eof) return too_long ? -2 : 0;
        if (r->start > 0) { /* keep the partial line at the front */
            memmove(r->buf, r->buf + r->start, r->end - r->start);
            r->end -= r->start;
            r->start = 0;
        }
        if (r->end - r->start >= MAX_LINE) { /* drop what we have of the long line */
            too_long = true;
            r->start = r->end = 0;
        }
        if (r->cap - r->end < 65536) {
            size_t cap = r->cap ? r->cap * 2 : 1 << 20;
            char *nb;
            if (cap > MAX_LINE + 65536) cap = MAX_LINE + 65536;
            if (cap <= r->cap || !(nb = realloc(r->buf, cap))) {
                errno = ENOMEM;
                return -1;
            }
            r->buf = nb;
            r->cap = cap;
        }
        {
            struct pollfd p = {0, POLLIN, 0};
            if (poll(&p, 1, 0) == 0) feeder_idle(fd); /* input would block: flush, acks */
        }
        for (;;) {
            ssize_t got = read(0, r->buf + r->end, r->cap - r->end);
            if (got > 0) {
                r->end += (size_t)got;
                break;
            }
            if (got == 0) {
                r->eof = true;
                break;
            }
            if (errno != EINTR) return -1;
        }
    }
}

struct feeder {
    sm_send_stream *st;
    const struct args *a;
    struct stdin_parser parser;     /* its default typename: --type */
    uint64_t *line_of;              /* line number of seq, at seq % window */
    size_t window;
    unsigned long lineno;
    unsigned long malformed, reported_malformed, reported_rejected;
    bool tty, progress_shown;
    double t0, last_progress;
};

static void show_progress(struct feeder *fd, bool force)
{
    sm_send_stream_progress p;
    double t = now_s(), el;
    if (fd->a->quiet) return;
    if (!force && t - fd->last_progress < (fd->tty ? 0.25 : 5.0)) return;
    fd->last_progress = t;
    el = t - fd->t0;
    sm_send_stream_get_progress(fd->st, &p);
    fprintf(stderr, "%sstatemesh: sent %" PRIu64 ", acknowledged %" PRIu64 ", rejected %" PRIu64
                    ", %.0f msg/s%s",
            fd->tty ? "\r" : "", p.pushed, p.committed_through, p.rejected,
            el > 0 ? (double)p.pushed / el : 0.0, fd->tty ? "   " : "\n");
    fd->progress_shown = true;
}

/* Input is idle: send the partial batch, then wait for input while
 * handling acks and showing progress. */
static void feeder_idle(struct feeder *fd)
{
    sm_error err;
    struct pollfd p = {0, POLLIN, 0};
    if (sm_send_stream_flush(fd->st, &err) != SM_OK) return; /* reported by the next push */
    while (poll(&p, 1, 0) == 0) {
        if (sm_send_stream_poll(fd->st, 100, &err) != SM_OK) return;
        show_progress(fd, false);
    }
}

static void line_error(struct feeder *fd, unsigned long lineno, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void line_error(struct feeder *fd, unsigned long lineno, const char *fmt, ...)
{
    va_list ap;
    fd->malformed++;
    if (++fd->reported_malformed > MAX_REPORTED) {
        if (fd->reported_malformed == MAX_REPORTED + 1)
            fprintf(stderr, "\nstatemesh: stdin: more malformed lines; only counting them now\n");
        return;
    }
    fprintf(stderr, "%sstatemesh: stdin:%lu: ", fd->tty && fd->progress_shown ? "\n" : "", lineno);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void on_rejected(void *udata, uint64_t seq, int code, const char *message)
{
    struct feeder *fd = udata;
    if (++fd->reported_rejected > MAX_REPORTED) {
        if (fd->reported_rejected == MAX_REPORTED + 1)
            fprintf(stderr, "\nstatemesh: stdin: more rejected messages; only counting them now\n");
        return;
    }
    fprintf(stderr, "%sstatemesh: stdin:%" PRIu64 ": rejected: %s: %s\n",
            fd->tty && fd->progress_shown ? "\n" : "", fd->line_of[seq % fd->window],
            sm_status_code_name(code), message);
}

/* Unescapes JSON string v into the scratch buffer at *off. */
static const char *scratch_string(struct stdin_parser *p, const sm_json *v, size_t *off, size_t *len)
{
    char *out = (char *)p->scratch.p + *off;
    size_t n;
    if (sm_json_string(v, out, p->scratch.cap - *off, &n) != SM_OK) return NULL;
    *off += n + 1;
    if (len) *len = n;
    return out;
}

#define BAD_LINE(...) (snprintf(why, whylen, __VA_ARGS__), -1)

int stdin_parse_line(struct stdin_parser *p, const char *line, size_t len, struct stdin_msg *out,
                     char *why, size_t whylen)
{
    static const char *const names[] = {"type", "id", "value", "typename", "key", "delay_ms"};
    sm_json doc, k, v, got[6];
    sm_json_iter it;
    bool have[6] = {false};
    const char *key = NULL;
    size_t off = 0;
    struct vtype vt = p->dflt;

    memset(out, 0, sizeof *out);
    if (sm_json_parse(line, len, &doc) != SM_OK)
        return BAD_LINE("not valid JSON (or not UTF-8): %.*s%s", (int)(len > 80 ? 80 : len), line,
                        len > 80 ? "..." : "");
    if (doc.kind != SM_JSON_OBJECT)
        return BAD_LINE("a line must be a JSON object {\"type\":...,\"id\":...,\"value\":...}");
    /* strings unescaped, then the value: at most 2 * len + 8 bytes */
    if (gbuf_reserve(&p->scratch, 2 * len + 64)) return BAD_LINE("out of memory");
    if (sm_json_iter_init(&it, &doc) != SM_OK) return BAD_LINE("not a JSON object");
    while (sm_json_iter_next(&it, &k, &v) == SM_OK) {
        size_t i;
        for (i = 0; i < 6 && !sm_json_string_eq(&k, names[i]); i++) {
        }
        if (i == 6)
            return BAD_LINE("unknown member %.*s (allowed: type, id, value, typename, key, delay_ms)",
                            (int)(k.len > 64 ? 64 : k.len), k.p);
        if (have[i]) return BAD_LINE("member \"%s\" appears twice", names[i]);
        have[i] = true;
        got[i] = v;
    }
    for (int i = 0; i < 3; i++)
        if (!have[i]) return BAD_LINE("missing \"%s\"", names[i]);
    for (int i = 0; i < 5; i++)
        if (i != 2 && have[i] && got[i].kind != SM_JSON_STRING)
            return BAD_LINE("\"%s\" must be a string", names[i]);
    if (!(out->type = scratch_string(p, &got[0], &off, NULL)) ||
        !(out->id = scratch_string(p, &got[1], &off, NULL)) ||
        (have[4] && !(key = scratch_string(p, &got[4], &off, NULL))))
        return BAD_LINE("a string holds an invalid escape (lone surrogate or \\u0000)");
    if (have[3]) {
        const char *tn = scratch_string(p, &got[3], &off, NULL);
        if (!tn || valjson_resolve_type(tn, &vt))
            return BAD_LINE("unknown typename %.*s (" TYPE_NAMES ")",
                            (int)(got[3].len > 80 ? 80 : got[3].len), got[3].p);
    }
    if (have[5]) {
        int64_t d;
        if (sm_json_int64(&got[5], &d) != SM_OK || d < 0 || (uint64_t)d > SM_MAX_DELAY_MS)
            return BAD_LINE("\"delay_ms\" must be an integer 0..%" PRIu64, (uint64_t)SM_MAX_DELAY_MS);
        out->opts.delay_ms = (uint64_t)d;
    }
    if (key && !*key) return BAD_LINE("\"key\" is empty (leave it out for no idempotency key)");
    out->opts.idempotency_key = key;

    {
        uint8_t *bytes = p->scratch.p + off;
        size_t n;
        char vwhy[200];
        if (valjson_decode(&vt, &got[2], vt.kind == VK_BYTES || vt.kind == VK_USER, bytes, &n,
                           vwhy, sizeof vwhy))
            return BAD_LINE("\"value\" %s", vwhy);
        out->value = sm_value_make(vt.typename, bytes, n);
    }
    return 0;
}

/* Parses and pushes one line. */
static int feed_line(struct feeder *fd, const char *line, size_t len, sm_error *err)
{
    struct stdin_msg m;
    char why[512];
    uint64_t seq;
    int rc;

    if (stdin_parse_line(&fd->parser, line, len, &m, why, sizeof why)) {
        line_error(fd, fd->lineno, "%s", why);
        return 0;
    }
    rc = sm_send_stream_push(fd->st, m.type, m.id, &m.value, &m.opts, &seq, err);
    if (rc == SM_EINVAL) {
        line_error(fd, fd->lineno, "%s", err->message);
        return 0;
    }
    if (rc != SM_OK) return rc;
    fd->line_of[seq % fd->window] = fd->lineno;
    return 0;
}

int cmd_send_stdin(sm_client *c, const struct args *a)
{
    struct feeder fd;
    struct reader r = {NULL, 0, 0, 0, false};
    sm_send_stream_options so;
    sm_send_stream_progress p;
    sm_error err;
    char *line;
    size_t len;
    double el;
    int rc = 0, st_rc = SM_OK, lr;

    if (a->npos != 1) return usage_error("send --stdin takes no TYPE ID VALUE (they come from the lines)");
    memset(&fd, 0, sizeof fd);
    fd.a = a;
    if (valjson_resolve_type(a->type ? a->type : "json", &fd.parser.dflt))
        return usage_error("unknown --type '%s' (" TYPE_NAMES ")", a->type);
    memset(&so, 0, sizeof so);
    so.window = fd.window = 65536;
    so.on_error = on_rejected;
    so.udata = &fd;
    if (!(fd.line_of = calloc(fd.window, sizeof *fd.line_of))) {
        fprintf(stderr, "statemesh: out of memory\n");
        return EXIT_RPC;
    }
    if (sm_send_stream_open(c, &so, &fd.st, &err) != SM_OK) {
        free(fd.line_of);
        return rpc_error("send --stdin", &err, a->address);
    }
    fd.tty = isatty(2);
    fd.t0 = fd.last_progress = now_s();

    while ((lr = read_line(&r, &fd, &line, &len)) != 0) {
        fd.lineno++;
        if (lr == -1) {
            fprintf(stderr, "statemesh: reading stdin: %s\n", strerror(errno));
            rc = EXIT_RPC;
            break;
        }
        if (lr == -2) {
            line_error(&fd, fd.lineno, "line longer than %zu bytes", MAX_LINE);
            continue;
        }
        while (len && (line[len - 1] == ' ' || line[len - 1] == '\t')) len--;
        {
            size_t i = 0;
            while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
            if (i == len) continue; /* blank */
        }
        if ((st_rc = feed_line(&fd, line, len, &err)) != SM_OK) break;
        if ((fd.lineno & 1023) == 0) show_progress(&fd, false);
    }
    if (st_rc == SM_OK && rc == 0)
        st_rc = sm_send_stream_finish(fd.st, a->timeout_set ? a->timeout_ms : STDIN_FINISH_TIMEOUT_MS,
                                      &err);
    sm_send_stream_get_progress(fd.st, &p);
    if (fd.progress_shown && fd.tty) fputc('\n', stderr);
    if (st_rc != SM_OK) rc = rpc_error("send --stdin", &err, a->address);
    el = now_s() - fd.t0;
    fprintf(stderr,
            "statemesh: %" PRIu64 " messages in %.2f s (%.0f msg/s): %" PRIu64 " committed, %" PRIu64
            " rejected, %" PRIu64 " unacknowledged, %lu malformed lines skipped\n",
            p.pushed, el, el > 0 ? (double)p.pushed / el : 0.0, p.committed_through - p.rejected,
            p.rejected, p.pushed - p.committed_through, fd.malformed);
    if (p.rejected || fd.malformed || p.committed_through < p.pushed) rc = EXIT_RPC;
    sm_send_stream_destroy(&fd.st);
    free(fd.line_of);
    free(fd.parser.scratch.p);
    free(r.buf);
    return rc;
}

