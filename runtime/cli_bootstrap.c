/*
 * cli_bootstrap — `statemesh bootstrap FILE|- [--mode create-only|overwrite]
 * [--dry-run] [--batch N] [--json]` (cli.h; docs/savepoints.md#bootstrap).
 *
 * Reads JSON lines of addresses' application data (spjsonl.h), one address
 * per line, and loads them into the running runtime with Admin Bootstrap
 * (sm_client_bootstrap), --batch lines per request (default 1000).
 *
 * Pipelined: the main thread reads lines into batches; BOOT_WORKERS threads
 * each parse a batch (spj_parse_line), encode its entries and send it, so
 * several requests are in flight while the next lines are parsed. The
 * queue between them is bounded (BOOT_QUEUE batches): memory does not grow
 * with the file.
 *
 * Output: a line that cannot be parsed, or that the runtime refuses
 * (INVALID), is reported on stderr as "FILE:LINE: why" (stdin: "-") and the
 * rest is still loaded; batches are reported as they complete, so such
 * lines may appear out of order. Progress (lines, lines/s) on stderr about
 * once a second when it takes longer. Last, the summary on stdout:
 * "loaded N, already loaded N, exists N, invalid N (L lines, S s, R lines/s)"
 * (--json: {"lines":L,"loaded":N,"already_loaded":N,"exists":N,"invalid":N,
 * "seconds":S,"dry_run":B}).
 *
 * A request the runtime cannot take in one message (RESOURCE_EXHAUSTED) is
 * split in two and sent again, down to one line; a line still too large is
 * INVALID. An overloaded runtime (UNAVAILABLE "overloaded") is retried with
 * a pause for up to a minute. Any other RPC failure stops the load.
 *
 * Exit status: 0 every line was loaded or already loaded; 4 some lines
 * were not loaded (invalid or exists: see stderr), the others were; 1 the
 * runtime refused or failed a request (some lines may not have been sent);
 * 2 usage error (bad arguments, FILE unreadable).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "spjsonl.h"
#include "statemesh/client.h"

#define BOOT_WORKERS 4
#define BOOT_QUEUE (2 * BOOT_WORKERS)
#define BOOT_BATCH_DEFAULT 1000
#define BOOT_BATCH_BYTES ((size_t)2 << 20)   /* text per batch; the request stays below 4 MiB */
#define EXIT_PARTIAL 4

struct line {
    uint64_t no;               /* 1-based line number */
    size_t off, len;           /* in the batch's text */
};

struct batch {
    struct batch *next;
    char *text;
    size_t tlen, tcap;
    struct line *lines;
    size_t n, cap;
};

struct boot {
    sm_client *c;
    const struct args *a;
    const char *file;          /* as printed in errors */
    sm_bootstrap_mode mode;
    bool dry_run;
    int timeout_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct batch *head, *tail; /* queued batches */
    size_t queued;
    bool eof, failed;
    /* results */
    uint64_t lines, loaded, already, exists, invalid;
    double t0, last_progress;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void batch_free(struct batch *b)
{
    if (!b) return;
    free(b->text);
    free(b->lines);
    free(b);
}

static int batch_add(struct batch *b, uint64_t no, const char *line, size_t len)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        struct line *l = realloc(b->lines, cap * sizeof *l);
        if (!l) return -1;
        b->lines = l;
        b->cap = cap;
    }
    if (b->tlen + len + 1 > b->tcap) {
        size_t cap = b->tcap ? b->tcap : 65536;
        char *t;
        while (cap < b->tlen + len + 1) cap *= 2;
        if (!(t = realloc(b->text, cap))) return -1;
        b->text = t;
        b->tcap = cap;
    }
    memcpy(b->text + b->tlen, line, len);
    b->text[b->tlen + len] = '\0';
    b->lines[b->n++] = (struct line){no, b->tlen, len};
    b->tlen += len + 1;
    return 0;
}

/* ---- results ---- */

static void line_error(struct boot *bt, uint64_t no, const char *why)
{
    fprintf(stderr, "%s:%" PRIu64 ": %s\n", bt->file, no, why);
}

static void progress(struct boot *bt)   /* under mu */
{
    double t = now_s();
    if (t - bt->last_progress < 1.0) return;
    bt->last_progress = t;
    fprintf(stderr, "statemesh: bootstrap: %" PRIu64 " lines, %.0f lines/s\n", bt->lines,
            (double)bt->lines / (t - bt->t0));
}

/* ---- one request ---- */

struct entry {
    uint64_t no;
    uint8_t *bytes;
    size_t len;
};

/* Sends entries e[0..n) and records their outcomes (under mu). Returns 0,
 * or -1 when the load must stop (reported). */
static int send_entries(struct boot *bt, struct entry *e, size_t n)
{
    const void **ptrs;
    size_t *lens;
    sm_bootstrap_results r;
    sm_error err;
    int rc, tries = 0;

    if (n == 0) return 0;
    ptrs = malloc(n * sizeof *ptrs);
    lens = malloc(n * sizeof *lens);
    if (!ptrs || !lens) {
        free(ptrs);
        free(lens);
        fprintf(stderr, "statemesh: out of memory\n");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        ptrs[i] = e[i].bytes;
        lens[i] = e[i].len;
    }
    for (;;) {
        rc = sm_client_bootstrap(bt->c, (const void *const *)ptrs, lens, n, bt->mode, bt->dry_run,
                                 bt->timeout_ms, &r, &err);
        if (rc == SM_OK || err.code != 14 /* UNAVAILABLE */ || !strstr(err.message, "overloaded") ||
            ++tries > 600)
            break;
        usleep(100 * 1000);
    }
    free(ptrs);
    free(lens);
    if (rc != SM_OK && err.code == 8 /* RESOURCE_EXHAUSTED */) {
        if (n > 1) {                               /* too large for one request: halve */
            size_t h = n / 2;
            return send_entries(bt, e, h) != 0 ? -1 : send_entries(bt, e + h, n - h);
        }
        pthread_mutex_lock(&bt->mu);
        {
            char why[1200];
            snprintf(why, sizeof why, "the entry (%zu bytes) is larger than the runtime takes "
                     "in one request: %s", e[0].len, err.message);
            line_error(bt, e[0].no, why);
        }
        bt->invalid++;
        pthread_mutex_unlock(&bt->mu);
        return 0;
    }
    if (rc != SM_OK) {
        pthread_mutex_lock(&bt->mu);
        if (!bt->failed) {
            bt->failed = true;
            fprintf(stderr, "statemesh: bootstrap stopped at %s:%" PRIu64 ": ", bt->file, e[0].no);
            rpc_error("bootstrap", &err, bt->a->address);
        }
        pthread_cond_broadcast(&bt->cv);
        pthread_mutex_unlock(&bt->mu);
        return -1;
    }
    pthread_mutex_lock(&bt->mu);
    for (size_t i = 0; i < n; i++) {
        switch (r.outcomes[i]) {
        case SM_BOOT_LOADED: bt->loaded++; break;
        case SM_BOOT_ALREADY_LOADED: bt->already++; break;
        case SM_BOOT_EXISTS:
            bt->exists++;
            line_error(bt, e[i].no, "the address already has state (--mode create-only): not "
                                    "loaded");
            break;
        default:
            bt->invalid++;
            line_error(bt, e[i].no, r.errors[i]);
            break;
        }
    }
    pthread_mutex_unlock(&bt->mu);
    sm_bootstrap_results_cleanup(&r);
    return 0;
}

/* Parses, encodes and sends one batch. */
static int run_batch(struct boot *bt, struct batch *b)
{
    struct entry *e = calloc(b->n ? b->n : 1, sizeof *e);
    size_t n = 0;
    char why[512];
    int rc;

    if (!e) {
        fprintf(stderr, "statemesh: out of memory\n");
        return -1;
    }
    for (size_t i = 0; i < b->n; i++) {
        Statemesh__V1__AddressData *d;
        const struct line *l = &b->lines[i];
        if (spj_parse_line(b->text + l->off, l->len, &d, why, sizeof why) != 0) {
            pthread_mutex_lock(&bt->mu);
            line_error(bt, l->no, why);
            bt->invalid++;
            pthread_mutex_unlock(&bt->mu);
            continue;
        }
        e[n].no = l->no;
        e[n].len = statemesh__v1__address_data__get_packed_size(d);
        e[n].bytes = malloc(e[n].len ? e[n].len : 1);
        if (!e[n].bytes) {
            spj_free(d);
            rc = -1;
            goto out;
        }
        statemesh__v1__address_data__pack(d, e[n].bytes);
        spj_free(d);
        n++;
    }
    rc = send_entries(bt, e, n);
out:
    for (size_t i = 0; i < n; i++) free(e[i].bytes);
    free(e);
    pthread_mutex_lock(&bt->mu);
    bt->lines += b->n;
    progress(bt);
    pthread_mutex_unlock(&bt->mu);
    return rc;
}

static void *worker(void *arg)
{
    struct boot *bt = arg;
    for (;;) {
        struct batch *b;
        pthread_mutex_lock(&bt->mu);
        while (!bt->head && !bt->eof && !bt->failed) pthread_cond_wait(&bt->cv, &bt->mu);
        if (bt->failed || !bt->head) {
            pthread_mutex_unlock(&bt->mu);
            return NULL;
        }
        b = bt->head;
        bt->head = b->next;
        if (!bt->head) bt->tail = NULL;
        bt->queued--;
        pthread_cond_broadcast(&bt->cv);
        pthread_mutex_unlock(&bt->mu);
        if (run_batch(bt, b) != 0) {
            pthread_mutex_lock(&bt->mu);
            bt->failed = true;
            pthread_cond_broadcast(&bt->cv);
            pthread_mutex_unlock(&bt->mu);
        }
        batch_free(b);
    }
}

/* Queues b for the workers (waits while the queue is full). false: stop. */
static bool enqueue(struct boot *bt, struct batch *b)
{
    pthread_mutex_lock(&bt->mu);
    while (bt->queued >= BOOT_QUEUE && !bt->failed) pthread_cond_wait(&bt->cv, &bt->mu);
    if (bt->failed) {
        pthread_mutex_unlock(&bt->mu);
        batch_free(b);
        return false;
    }
    if (bt->tail) bt->tail->next = b;
    else bt->head = b;
    bt->tail = b;
    bt->queued++;
    pthread_cond_broadcast(&bt->cv);
    pthread_mutex_unlock(&bt->mu);
    return true;
}

int cmd_bootstrap(sm_client *c, const struct args *a)
{
    struct boot bt;
    pthread_t th[BOOT_WORKERS];
    size_t nth = 0, per_batch = a->has_batch ? (size_t)a->batch : BOOT_BATCH_DEFAULT;
    struct batch *b = NULL;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    uint64_t no = 0;
    FILE *f;
    int rc = 0;
    double secs;

    if (a->npos != 2) return usage_error("bootstrap takes one FILE (or - for stdin)");
    memset(&bt, 0, sizeof bt);
    bt.c = c;
    bt.a = a;
    bt.file = a->pos[1];
    bt.dry_run = a->dry_run;
    bt.timeout_ms = a->timeout_ms;
    if (!a->mode || strcmp(a->mode, "create-only") == 0) bt.mode = SM_BOOTSTRAP_CREATE_ONLY;
    else if (strcmp(a->mode, "overwrite") == 0) bt.mode = SM_BOOTSTRAP_OVERWRITE;
    else return usage_error("--mode wants create-only or overwrite, got '%s'", a->mode);
    if (strcmp(bt.file, "-") == 0) {
        f = stdin;
    } else if (!(f = fopen(bt.file, "r"))) {
        fprintf(stderr, "statemesh: cannot read %s: %s\n", bt.file, strerror(errno));
        return EXIT_USAGE;
    }
    pthread_mutex_init(&bt.mu, NULL);
    pthread_cond_init(&bt.cv, NULL);
    bt.t0 = bt.last_progress = now_s();
    for (; nth < BOOT_WORKERS; nth++)
        if (pthread_create(&th[nth], NULL, worker, &bt) != 0) break;
    if (nth == 0) {
        fprintf(stderr, "statemesh: cannot start a thread\n");
        rc = EXIT_RPC;
        goto done;
    }
    while ((len = getline(&line, &cap, f)) >= 0) {
        size_t l = (size_t)len;
        no++;
        if (l && line[l - 1] == '\n') l--;
        if (l && line[l - 1] == '\r') l--;
        if (strspn(line, " \t") == l) continue;        /* blank */
        if (!b && !(b = calloc(1, sizeof *b))) break;
        if (l > SPJ_MAX_LINE) {
            pthread_mutex_lock(&bt.mu);
            line_error(&bt, no, "the line is longer than 64 MiB");
            bt.invalid++;
            bt.lines++;
            pthread_mutex_unlock(&bt.mu);
            continue;
        }
        if (batch_add(b, no, line, l) != 0) break;
        if (b->n >= per_batch || b->tlen >= BOOT_BATCH_BYTES) {
            if (!enqueue(&bt, b)) {
                b = NULL;
                break;
            }
            b = NULL;
        }
    }
    if (ferror(f)) {
        fprintf(stderr, "statemesh: cannot read %s: %s\n", bt.file, strerror(errno));
        pthread_mutex_lock(&bt.mu);
        bt.failed = true;
        pthread_mutex_unlock(&bt.mu);
        rc = EXIT_USAGE;
    }
    if (b && b->n && !enqueue(&bt, b)) b = NULL;
    else if (b && !b->n) batch_free(b);
    pthread_mutex_lock(&bt.mu);
    bt.eof = true;
    pthread_cond_broadcast(&bt.cv);
    pthread_mutex_unlock(&bt.mu);
done:
    for (size_t i = 0; i < nth; i++) pthread_join(th[i], NULL);
    while (bt.head) {                                  /* left after a failure */
        struct batch *nb = bt.head->next;
        batch_free(bt.head);
        bt.head = nb;
    }
    free(line);
    if (f != stdin) fclose(f);
    secs = now_s() - bt.t0;
    if (a->json) {
        printf("{\"lines\":%" PRIu64 ",\"loaded\":%" PRIu64 ",\"already_loaded\":%" PRIu64
               ",\"exists\":%" PRIu64 ",\"invalid\":%" PRIu64 ",\"seconds\":%.3f,\"dry_run\":%s}\n",
               bt.lines, bt.loaded, bt.already, bt.exists, bt.invalid, secs,
               bt.dry_run ? "true" : "false");
    } else {
        printf("%s%" PRIu64 ", already loaded %" PRIu64 ", exists %" PRIu64 ", invalid %" PRIu64
               " (%" PRIu64 " lines, %.1f s, %.0f lines/s)\n",
               bt.dry_run ? "dry run: would load " : "loaded ", bt.loaded, bt.already, bt.exists,
               bt.invalid, bt.lines, secs, secs > 0 ? (double)bt.lines / secs : 0.0);
    }
    pthread_mutex_destroy(&bt.mu);
    pthread_cond_destroy(&bt.cv);
    if (rc) return rc;
    if (bt.failed) return EXIT_RPC;
    return bt.exists || bt.invalid ? EXIT_PARTIAL : 0;
}
