/*
 * cli_jsonl — savepoints as JSON lines (spjsonl.h; docs/savepoints.md
 * "JSON lines"), offline, without a runtime:
 *
 *   savepoint export DIR --jsonl [--type T] [--out FILE]
 *   savepoint from-jsonl FILE|- DIR [--key-groups N] [--ranges N]
 *
 * Export. The savepoint is verified first (sp_verify), then each range file
 * is read with three cursors (savepoint.h), one per kind: S (state) and M
 * (queued messages) keys are ordered by key group, then by "type NUL id",
 * so they merge directly; D (delayed) keys are ordered by key group and
 * due time and name their owner in the value, so the D records of one key
 * group are held and sorted by owner. Lines come out by range file, key
 * group, then address bytes; memory is one key group's delayed messages
 * plus one address, whatever the savepoint's size. P, I, L, E, J and X
 * records (pauses, idempotency, dead letters, egress, metadata) are not
 * application data and are not exported.
 *
 * From JSON lines. Each line becomes store records (S, M, D with sequence
 * numbers in line order, and an 'A' record per address that only serves
 * to find addresses given twice). Records are sorted externally: runs of
 * at most RUN_BYTES are sorted in memory and spilled into the work
 * directory, then merged in key order into the range files, so memory
 * does not grow with the input. 'A' sorts before every stored kind, so a
 * duplicate address is found before a record file is written. The work
 * directory is DIR.partial-PID; it becomes DIR (rename) only once the
 * manifest is written and synced; on any error it is removed.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "cli.h"
#include "savepoint.h"
#include "spjsonl.h"
#include "statemesh/v1/storage.pb-c.h"
#include "statemesh/version.h"

#define MAX_REPORTED 100            /* line errors printed; then only counted */
#define RUN_BYTES ((size_t)32 << 20) /* one sorted run of from-jsonl */
#define STORE_FORMAT 2              /* store.h STORE_FORMAT_VERSION */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ==== export =================================================================== */

/* One kind of one range file, record by record. */
struct head {
    struct sp_cursor *c;
    char kind;
    bool live;                      /* k, v: the current record of the kind */
    const uint8_t *k, *v;
    size_t kl, vl;
    int kg;
    size_t alen;                    /* S, M: length of "type\0id\0" after the 3-byte prefix */
};

static int head_next(struct head *h, char *err, size_t errlen)
{
    for (;;) {
        int r = sp_cursor_next(h->c, &h->k, &h->kl, &h->v, &h->vl, err, errlen);
        if (r < 0) return -1;
        if (r == 0 || h->k[0] > h->kind) {
            h->live = false;
            return 0;
        }
        if (h->k[0] < h->kind) continue;
        if (h->kl < 3) {
            snprintf(err, errlen, "a '%c' record with a short key", h->kind);
            return -1;
        }
        h->kg = h->k[1] << 8 | h->k[2];
        if (h->kind != 'D') {
            const char *t, *i;
            size_t tl, il;
            if (sp_key_address(h->k, h->kl, &t, &tl, &i, &il) != 0) {
                snprintf(err, errlen, "a '%c' record names no valid address", h->kind);
                return -1;
            }
            h->alen = tl + 1 + il + 1;
        }
        h->live = true;
        return 0;
    }
}

/* A delayed message of the current key group, with its owner. */
struct dent {
    char *addr;                     /* "type\0id\0" */
    size_t alen;
    int64_t due;
    uint64_t seq;
    Statemesh__V1__StoredDelayed *sd;
};

static int addr_cmp(const void *a, size_t al, const void *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    return c ? c : (al > bl) - (al < bl);
}

static int dent_cmp(const void *x, const void *y)
{
    const struct dent *a = x, *b = y;
    int c = addr_cmp(a->addr, a->alen, b->addr, b->alen);
    if (c) return c;
    if (a->due != b->due) return a->due < b->due ? -1 : 1;
    return (a->seq > b->seq) - (a->seq < b->seq);
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

struct exporter {
    const char *type;               /* --type: only this function type */
    FILE *out;
    struct dent *d;
    size_t nd, dcap;
    uint64_t addresses, states, messages, delayed;
    char err[1500];
};

static void free_dents(struct exporter *x)
{
    for (size_t i = 0; i < x->nd; i++) {
        free(x->d[i].addr);
        if (x->d[i].sd) statemesh__v1__stored_delayed__free_unpacked(x->d[i].sd, NULL);
    }
    x->nd = 0;
}

/* Reads the D records of key group kg from hd into x->d, sorted by owner. */
static int load_delayed(struct exporter *x, struct head *hd, int kg)
{
    free_dents(x);
    while (hd->live && hd->kg == kg) {
        Statemesh__V1__StoredDelayed *sd;
        const Statemesh__V1__Address *own;
        struct dent *e;
        if (hd->kl != 19 ||
            !(sd = statemesh__v1__stored_delayed__unpack(NULL, hd->vl, hd->v))) {
            snprintf(x->err, sizeof x->err, "a delayed message record does not decode");
            return -1;
        }
        own = sd->caller ? sd->caller : sd->target;
        if (!own || !sd->argument) {
            statemesh__v1__stored_delayed__free_unpacked(sd, NULL);
            snprintf(x->err, sizeof x->err, "a delayed message record names no address");
            return -1;
        }
        if (x->nd == x->dcap) {
            size_t ncap = x->dcap ? x->dcap * 2 : 64;
            struct dent *nd = realloc(x->d, ncap * sizeof *nd);
            if (!nd) {
                statemesh__v1__stored_delayed__free_unpacked(sd, NULL);
                snprintf(x->err, sizeof x->err, "out of memory");
                return -1;
            }
            x->d = nd;
            x->dcap = ncap;
        }
        e = &x->d[x->nd];
        e->alen = strlen(own->type) + 1 + strlen(own->id) + 1;
        if (!(e->addr = malloc(e->alen))) {
            statemesh__v1__stored_delayed__free_unpacked(sd, NULL);
            snprintf(x->err, sizeof x->err, "out of memory");
            return -1;
        }
        memcpy(e->addr, own->type, strlen(own->type) + 1);
        memcpy(e->addr + strlen(own->type) + 1, own->id, strlen(own->id) + 1);
        e->due = (int64_t)get_be64(hd->k + 3);
        e->seq = get_be64(hd->k + 11);
        e->sd = sd;
        x->nd++;
        if (head_next(hd, x->err, sizeof x->err) != 0) return -1;
    }
    if (x->nd > 1) qsort(x->d, x->nd, sizeof *x->d, dent_cmp);
    return 0;
}

/* Grows a repeated field by one slot. */
static int grow(void **arr, size_t n)
{
    if ((n & (n - 1)) == 0) { /* 0, 1, 2, 4, ...: double */
        void *np = realloc(*arr, (n ? n * 2 : 1) * sizeof(void *));
        if (!np) return -1;
        *arr = np;
    }
    return 0;
}

/* Builds and writes the line of address addr (alen bytes "type\0id\0") from
 * the heads and the delayed messages at *di. */
static int export_address(struct exporter *x, struct head *hs, struct head *hm, size_t *di,
                          int kg, const char *addr, size_t alen)
{
    Statemesh__V1__AddressData *d = calloc(1, sizeof *d);
    size_t tl = strlen(addr);
    bool keep;
    int rc = -1;

    if (d) statemesh__v1__address_data__init(d);
    if (!d || !(d->address = calloc(1, sizeof *d->address))) {
        free(d);
        snprintf(x->err, sizeof x->err, "out of memory");
        return -1;
    }
    statemesh__v1__address__init(d->address);
    d->address->type = d->address->id = NULL;
    if (!(d->address->type = strdup(addr)) || !(d->address->id = strdup(addr + tl + 1))) goto oom;
    keep = !x->type || strcmp(x->type, addr) == 0;

    while (hs->live && hs->kg == kg && addr_cmp(hs->k + 3, hs->alen, addr, alen) == 0) {
        Statemesh__V1__StoredState *ss;
        Statemesh__V1__AddressState *st;
        size_t nl = hs->kl - 3 - alen;
        if (keep) {
            if (!(ss = statemesh__v1__stored_state__unpack(NULL, hs->vl, hs->v)) || !ss->value) {
                if (ss) statemesh__v1__stored_state__free_unpacked(ss, NULL);
                snprintf(x->err, sizeof x->err, "a state record of %s/%s does not decode",
                         d->address->type, d->address->id);
                goto out;
            }
            if (grow((void **)&d->state, d->n_state) != 0 || !(st = malloc(sizeof *st))) {
                statemesh__v1__stored_state__free_unpacked(ss, NULL);
                goto oom;
            }
            statemesh__v1__address_state__init(st);
            st->value = ss->value;
            st->expires_at_ms = ss->expires_at_ms;
            ss->value = NULL;
            statemesh__v1__stored_state__free_unpacked(ss, NULL);
            d->state[d->n_state++] = st;
            if (!(st->name = malloc(nl + 1))) goto oom;
            memcpy(st->name, hs->k + 3 + alen, nl);
            st->name[nl] = '\0';
            x->states++;
        }
        if (head_next(hs, x->err, sizeof x->err) != 0) goto out;
    }
    while (hm->live && hm->kg == kg && addr_cmp(hm->k + 3, hm->alen, addr, alen) == 0) {
        Statemesh__V1__StoredMessage *sm;
        Statemesh__V1__AddressMessage *m;
        if (keep) {
            if (!(sm = statemesh__v1__stored_message__unpack(NULL, hm->vl, hm->v)) || !sm->argument) {
                if (sm) statemesh__v1__stored_message__free_unpacked(sm, NULL);
                snprintf(x->err, sizeof x->err, "a queued message record of %s/%s does not decode",
                         d->address->type, d->address->id);
                goto out;
            }
            if (grow((void **)&d->messages, d->n_messages) != 0 || !(m = malloc(sizeof *m))) {
                statemesh__v1__stored_message__free_unpacked(sm, NULL);
                goto oom;
            }
            statemesh__v1__address_message__init(m);
            m->argument = sm->argument;
            m->caller = sm->caller;
            sm->argument = NULL;
            sm->caller = NULL;
            statemesh__v1__stored_message__free_unpacked(sm, NULL);
            d->messages[d->n_messages++] = m;
            x->messages++;
        }
        if (head_next(hm, x->err, sizeof x->err) != 0) goto out;
    }
    while (*di < x->nd && addr_cmp(x->d[*di].addr, x->d[*di].alen, addr, alen) == 0) {
        struct dent *e = &x->d[(*di)++];
        Statemesh__V1__AddressDelayed *m;
        if (!keep) continue;
        if (grow((void **)&d->delayed, d->n_delayed) != 0 || !(m = malloc(sizeof *m))) goto oom;
        statemesh__v1__address_delayed__init(m);
        d->delayed[d->n_delayed++] = m;
        m->due_at_ms = e->due;
        m->argument = e->sd->argument;
        e->sd->argument = NULL;
        m->token = e->sd->token;
        e->sd->token = NULL;
        m->from_ingress = e->sd->caller == NULL;
        if (!m->from_ingress) {
            m->target = e->sd->target;
            e->sd->target = NULL;
        }
        x->delayed++;
    }
    if (keep) {
        x->addresses++;
        if (spj_write_line(x->out, d) != 0) {
            snprintf(x->err, sizeof x->err, "cannot write: %s", strerror(errno));
            goto out;
        }
    }
    rc = 0;
    goto out;
oom:
    snprintf(x->err, sizeof x->err, "out of memory");
out:
    spj_free(d);
    return rc;
}

static int export_file(struct exporter *x, const char *dir, const struct sp_file *f)
{
    struct head h[3] = {{.kind = 'D'}, {.kind = 'M'}, {.kind = 'S'}};
    struct head *hd = &h[0], *hm = &h[1], *hs = &h[2];
    int rc = -1;

    for (int i = 0; i < 3; i++)
        if (sp_cursor_open(&h[i].c, dir, f, x->err, sizeof x->err) != 0 ||
            head_next(&h[i], x->err, sizeof x->err) != 0)
            goto out;
    for (;;) {
        int kg = -1;
        size_t di = 0;
        for (int i = 0; i < 3; i++)
            if (h[i].live && (kg < 0 || h[i].kg < kg)) kg = h[i].kg;
        if (kg < 0) break;
        if (load_delayed(x, hd, kg) != 0) goto out;
        for (;;) {
            const char *addr = NULL;
            size_t alen = 0;
            char *copy;
            int r;
            if (hs->live && hs->kg == kg) addr = (const char *)hs->k + 3, alen = hs->alen;
            if (hm->live && hm->kg == kg &&
                (!addr || addr_cmp(hm->k + 3, hm->alen, addr, alen) < 0))
                addr = (const char *)hm->k + 3, alen = hm->alen;
            if (di < x->nd && (!addr || addr_cmp(x->d[di].addr, x->d[di].alen, addr, alen) < 0))
                addr = x->d[di].addr, alen = x->d[di].alen;
            if (!addr) break;
            if (!(copy = malloc(alen))) {      /* the heads move on under it */
                snprintf(x->err, sizeof x->err, "out of memory");
                goto out;
            }
            memcpy(copy, addr, alen);
            r = export_address(x, hs, hm, &di, kg, copy, alen);
            free(copy);
            if (r != 0) goto out;
        }
    }
    rc = 0;
out:
    free_dents(x);
    for (int i = 0; i < 3; i++) sp_cursor_close(&h[i].c);
    return rc;
}

static int cmp_files(const void *a, const void *b)
{
    const struct sp_file *x = *(const struct sp_file *const *)a, *y = *(const struct sp_file *const *)b;
    return (x->kg_first > y->kg_first) - (x->kg_first < y->kg_first);
}

int cmd_savepoint_export(const struct args *a)
{
    struct exporter x;
    struct sp_manifest m;
    const struct sp_file **files = NULL;
    const char *dir;
    double t0 = now_s(), el;
    size_t nf = 0;
    int rc = EXIT_RPC;

    if (a->npos != 3) return usage_error("savepoint export needs DIR");
    if (!a->jsonl) return usage_error("savepoint export needs --jsonl (the one format it writes)");
    if (a->type && addr_check_type(a->type, strlen(a->type)))
        return usage_error("--type wants a function type NS/NAME, got '%s'", a->type);
    dir = a->pos[2];
    memset(&x, 0, sizeof x);
    x.type = a->type;
    if (sp_verify(dir, &m, NULL, NULL, x.err, sizeof x.err) != 0) {
        fprintf(stderr, "statemesh: savepoint export: %s\n", x.err);
        return EXIT_RPC;
    }
    if (a->out) {
        if (!(x.out = fopen(a->out, "w"))) {
            fprintf(stderr, "statemesh: savepoint export: %s: %s\n", a->out, strerror(errno));
            goto out;
        }
    } else {
        x.out = stdout;
    }
    if (!(files = calloc(m.nfiles ? m.nfiles : 1, sizeof *files))) goto out;
    for (size_t i = 0; i < m.nfiles; i++)
        if (m.files[i].kg_first >= 0) files[nf++] = &m.files[i];
    qsort(files, nf, sizeof *files, cmp_files);
    for (size_t i = 0; i < nf; i++) {
        if (export_file(&x, dir, files[i]) != 0) {
            fprintf(stderr, "statemesh: savepoint export: %s: %s\n", files[i]->name, x.err);
            goto out;
        }
    }
    if (fflush(x.out) != 0 || ferror(x.out)) {
        fprintf(stderr, "statemesh: savepoint export: cannot write %s: %s\n",
                a->out ? a->out : "stdout", strerror(errno));
        goto out;
    }
    el = now_s() - t0;
    fprintf(stderr, "export %s: %" PRIu64 " addresses (%" PRIu64 " state values, %" PRIu64
            " queued, %" PRIu64 " delayed messages) in %.2f s (%.0f addresses/s)\n", dir,
            x.addresses, x.states, x.messages, x.delayed, el, el > 0 ? (double)x.addresses / el : 0.0);
    rc = 0;
out:
    if (x.out && x.out != stdout && fclose(x.out) != 0 && rc == 0) {
        fprintf(stderr, "statemesh: savepoint export: cannot write %s: %s\n", a->out,
                strerror(errno));
        rc = EXIT_RPC;
    }
    if (rc != 0 && a->out) unlink(a->out);      /* no half file under the name */
    free(x.d);
    free(files);
    sp_manifest_free(&m);
    return rc;
}

/* ==== from-jsonl =============================================================== */

/* Lines of a stream, at most SPJ_MAX_LINE bytes each. */
struct lreader {
    FILE *f;
    char *buf;
    size_t cap, start, end;
    bool eof;
};

/* The next line (without "\n" or "\r\n"). Returns 1, 0 at the end, -1 on a
 * read error (errno), -2 for a line longer than SPJ_MAX_LINE (skipped). */
static int next_line(struct lreader *r, char **line, size_t *len)
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
            return too_long ? -2 : 1;
        }
        if (r->eof) return too_long ? -2 : 0;
        if (r->start > 0) {
            memmove(r->buf, r->buf + r->start, r->end - r->start);
            r->end -= r->start;
            r->start = 0;
        }
        if (r->end > SPJ_MAX_LINE) { /* drop what we have of the long line */
            too_long = true;
            r->start = r->end = 0;
        }
        if (r->cap - r->end < 65536) {
            size_t cap = r->cap ? r->cap * 2 : 1 << 20;
            char *nb;
            if (cap > SPJ_MAX_LINE + 131072) cap = SPJ_MAX_LINE + 131072;
            if (cap <= r->cap || !(nb = realloc(r->buf, cap))) {
                errno = ENOMEM;
                return -1;
            }
            r->buf = nb;
            r->cap = cap;
        }
        {
            size_t got = fread(r->buf + r->end, 1, r->cap - r->end, r->f);
            r->end += got;
            if (got == 0) {
                if (ferror(r->f)) return -1;
                r->eof = true;
            }
        }
    }
}

/* A sorted run being built in memory: records [u32 klen][u32 vlen][u64 line]
 * key value in the arena, and an entry per record: its offset and its key's
 * first 8 bytes (big-endian, zero-padded). */
struct ent {
    uint64_t pfx;
    size_t off;
};

struct run {
    uint8_t *arena;
    size_t used, cap;
    struct ent *ents;
    size_t n, ecap;
};

/* A spilled run read back. */
struct rreader {
    FILE *f;
    uint8_t *rec;                   /* the current record as in the arena */
    size_t cap;
    bool live;
};

struct builder {
    const char *file;               /* the input's name for messages */
    char tmp[4200];
    uint32_t key_groups;
    unsigned ranges;
    struct run run;
    unsigned nruns;
    uint64_t seq;                   /* M and D sequence numbers, in line order */
    uint64_t addresses, lines, errors;
    struct sp_writer **w;           /* per range */
    struct sp_file *info;           /* per range, then node.smsp */
    int *range_of;                  /* key group -> range */
    uint8_t *val;                   /* packing buffer */
    size_t vcap;
    char err[9000];
};

static void line_error(struct builder *b, uint64_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void line_error(struct builder *b, uint64_t line, const char *fmt, ...)
{
    va_list ap;
    if (++b->errors > MAX_REPORTED) {
        if (b->errors == MAX_REPORTED + 1)
            fprintf(stderr, "statemesh: %s: more errors; only counting them now\n", b->file);
        return;
    }
    fprintf(stderr, "statemesh: %s:%" PRIu64 ": ", b->file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static int rec_cmp(const uint8_t *a, const uint8_t *b)
{
    uint32_t al = rd32(a), bl = rd32(b);
    int c = addr_cmp(a + 16, al, b + 16, bl);
    uint64_t la, lb;
    if (c) return c;
    memcpy(&la, a + 8, 8);
    memcpy(&lb, b + 8, 8);
    return (la > lb) - (la < lb);
}

/* The first 8 key bytes decide most comparisons without touching the arena. */
static int ent_cmp(const void *x, const void *y, void *arena)
{
    const struct ent *a = x, *b = y;
    if (a->pfx != b->pfx) return a->pfx < b->pfx ? -1 : 1;
    return rec_cmp((const uint8_t *)arena + a->off, (const uint8_t *)arena + b->off);
}

/* Sorts the run and writes it to tmp/run-N. */
static int spill(struct builder *b)
{
    char path[4300];
    FILE *f;
    struct run *r = &b->run;

    if (r->n == 0) return 0;
    qsort_r(r->ents, r->n, sizeof *r->ents, ent_cmp, r->arena);
    snprintf(path, sizeof path, "%s/run-%u.tmp", b->tmp, b->nruns);
    if (!(f = fopen(path, "wb"))) {
        snprintf(b->err, sizeof b->err, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < r->n; i++) {
        const uint8_t *p = r->arena + r->ents[i].off;
        fwrite(p, 1, 16 + (size_t)rd32(p) + rd32(p + 4), f);
    }
    if (fclose(f) != 0) {
        snprintf(b->err, sizeof b->err, "cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    b->nruns++;
    r->used = r->n = 0;
    return 0;
}

static int add_record(struct builder *b, const uint8_t *key, size_t klen, const void *val,
                      size_t vlen, uint64_t line)
{
    struct run *r = &b->run;
    size_t need = 16 + klen + vlen;
    uint32_t k32 = (uint32_t)klen, v32 = (uint32_t)vlen;

    if (r->used + need > r->cap && r->used > 0 && spill(b) != 0) return -1;
    if (need > r->cap) {
        size_t cap = need > RUN_BYTES ? need : RUN_BYTES;
        uint8_t *na = realloc(r->arena, cap);
        if (!na) return snprintf(b->err, sizeof b->err, "out of memory"), -1;
        r->arena = na;
        r->cap = cap;
    }
    if (r->n == r->ecap) {
        size_t ncap = r->ecap ? r->ecap * 2 : 65536;
        struct ent *ne = realloc(r->ents, ncap * sizeof *ne);
        if (!ne) return snprintf(b->err, sizeof b->err, "out of memory"), -1;
        r->ents = ne;
        r->ecap = ncap;
    }
    r->ents[r->n].off = r->used;
    r->ents[r->n].pfx = 0;
    for (size_t i = 0; i < 8; i++) r->ents[r->n].pfx = r->ents[r->n].pfx << 8 | (i < klen ? key[i] : 0);
    r->n++;
    memcpy(r->arena + r->used, &k32, 4);
    memcpy(r->arena + r->used + 4, &v32, 4);
    memcpy(r->arena + r->used + 8, &line, 8);
    memcpy(r->arena + r->used + 16, key, klen);
    if (vlen) memcpy(r->arena + r->used + 16 + klen, val, vlen);
    r->used += need;
    return 0;
}

/* Packs msg into b->val. */
static int pack(struct builder *b, const ProtobufCMessage *msg, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (n > b->vcap) {
        uint8_t *nv = realloc(b->val, n);
        if (!nv) return snprintf(b->err, sizeof b->err, "out of memory"), -1;
        b->val = nv;
        b->vcap = n;
    }
    *len = protobuf_c_message_pack(msg, b->val);
    return 0;
}

/* The records of one parsed line. Returns 0, 1 for a refused line (reported)
 * or -1 on a failure (b->err). */
static int add_line(struct builder *b, const Statemesh__V1__AddressData *d, uint64_t line)
{
    const char *type = d->address->type, *id = d->address->id;
    size_t tl = strlen(type), il = strlen(id), alen = tl + 1 + il + 1, vlen;
    uint32_t kg = sp_key_group_of(type, tl, id, il, b->key_groups);
    uint8_t key[3 + ADDR_MAX_TYPE + ADDR_MAX_ID + ADDR_MAX_STATE_NAME + 16];

    for (size_t i = 0; i < d->n_delayed; i++)   /* the runtime keeps one timer per token */
        for (size_t j = 0; j < i && d->delayed[i]->token[0]; j++)
            if (strcmp(d->delayed[i]->token, d->delayed[j]->token) == 0) {
                line_error(b, line, "delayed[%zu]: token \"%.100s\" is also delayed[%zu]'s", i,
                           d->delayed[i]->token, j);
                return 1;
            }
    if (b->errors) return 0;                     /* nothing is built once a line is refused */
    key[1] = (uint8_t)(kg >> 8);
    key[2] = (uint8_t)kg;
    memcpy(key + 3, type, tl + 1);
    memcpy(key + 3 + tl + 1, id, il + 1);
    key[0] = 'A';
    if (add_record(b, key, 3 + alen, NULL, 0, line) != 0) return -1;
    for (size_t i = 0; i < d->n_state; i++) {
        Statemesh__V1__StoredState ss = STATEMESH__V1__STORED_STATE__INIT;
        size_t nl = strlen(d->state[i]->name);
        ss.value = d->state[i]->value;
        ss.expires_at_ms = d->state[i]->expires_at_ms;
        key[0] = 'S';
        memcpy(key + 3 + alen, d->state[i]->name, nl);
        if (pack(b, &ss.base, &vlen) != 0 || add_record(b, key, 3 + alen + nl, b->val, vlen, line) != 0)
            return -1;
    }
    for (size_t i = 0; i < d->n_messages; i++) {
        Statemesh__V1__StoredMessage sm = STATEMESH__V1__STORED_MESSAGE__INIT;
        sm.caller = d->messages[i]->caller;
        sm.argument = d->messages[i]->argument;
        key[0] = 'M';
        put_be64(key + 3 + alen, b->seq++);
        if (pack(b, &sm.base, &vlen) != 0 || add_record(b, key, 3 + alen + 8, b->val, vlen, line) != 0)
            return -1;
    }
    for (size_t i = 0; i < d->n_delayed; i++) {
        const Statemesh__V1__AddressDelayed *e = d->delayed[i];
        Statemesh__V1__StoredDelayed sd = STATEMESH__V1__STORED_DELAYED__INIT;
        uint8_t dkey[19];
        sd.argument = e->argument;
        sd.token = e->token;
        sd.target = e->target ? e->target : d->address;
        sd.caller = e->from_ingress ? NULL : d->address;
        dkey[0] = 'D';
        dkey[1] = (uint8_t)(kg >> 8);
        dkey[2] = (uint8_t)kg;
        put_be64(dkey + 3, (uint64_t)e->due_at_ms);
        put_be64(dkey + 11, b->seq++);
        if (pack(b, &sd.base, &vlen) != 0 || add_record(b, dkey, sizeof dkey, b->val, vlen, line) != 0)
            return -1;
    }
    b->addresses++;
    return 0;
}

static int rr_next(struct rreader *r)
{
    uint8_t hdr[16];
    size_t n;
    if (fread(hdr, 1, 16, r->f) != 16) {
        r->live = false;
        return ferror(r->f) ? -1 : 0;
    }
    n = 16 + (size_t)rd32(hdr) + rd32(hdr + 4);
    if (n > r->cap) {
        uint8_t *nr = realloc(r->rec, n);
        if (!nr) return -1;
        r->rec = nr;
        r->cap = n;
    }
    memcpy(r->rec, hdr, 16);
    if (fread(r->rec + 16, 1, n - 16, r->f) != n - 16) return -1;
    r->live = true;
    return 0;
}

/* Merges the runs into the range files; reports duplicate addresses. */
static int merge(struct builder *b)
{
    struct rreader *rr = calloc(b->nruns ? b->nruns : 1, sizeof *rr);
    uint8_t *prev_a = NULL;
    size_t prev_len = 0;
    uint64_t prev_line = 0;
    int rc = -1;

    if (!rr) return snprintf(b->err, sizeof b->err, "out of memory"), -1;
    if (!(prev_a = malloc(3 + ADDR_MAX_TYPE + ADDR_MAX_ID + 2))) goto oom;
    for (unsigned i = 0; i < b->nruns; i++) {
        char path[4300];
        snprintf(path, sizeof path, "%s/run-%u.tmp", b->tmp, i);
        if (!(rr[i].f = fopen(path, "rb")) || rr[i].f == NULL || setvbuf(rr[i].f, NULL, _IOFBF, 1 << 16) ||
            rr_next(&rr[i]) != 0) {
            snprintf(b->err, sizeof b->err, "cannot read %s: %s", path, strerror(errno));
            goto out;
        }
    }
    for (;;) {
        struct rreader *m = NULL;
        const uint8_t *rec, *key;
        uint32_t kl, vl;
        uint64_t line;
        for (unsigned i = 0; i < b->nruns; i++)
            if (rr[i].live && (!m || rec_cmp(rr[i].rec, m->rec) < 0)) m = &rr[i];
        if (!m) break;
        rec = m->rec;
        kl = rd32(rec);
        vl = rd32(rec + 4);
        memcpy(&line, rec + 8, 8);
        key = rec + 16;
        if (key[0] == 'A') {
            if (prev_len == kl && memcmp(prev_a, key, kl) == 0) {
                const char *t = (const char *)key + 3;
                line_error(b, line, "address %s/%s is also on line %" PRIu64
                           " (give each address once)", t, t + strlen(t) + 1, prev_line);
            } else {
                memcpy(prev_a, key, kl);
                prev_len = kl;
                prev_line = line;
            }
        } else {
            int r = b->range_of[key[1] << 8 | key[2]];
            if (b->errors) goto out_errors;
            if (sp_writer_add(b->w[r], key, kl, rec + 16 + kl, vl, b->err, sizeof b->err) != 0)
                goto out;
        }
        if (rr_next(m) != 0) {
            snprintf(b->err, sizeof b->err, "cannot read a sorted run: %s", strerror(errno));
            goto out;
        }
    }
out_errors:
    rc = 0;
    goto out;
oom:
    snprintf(b->err, sizeof b->err, "out of memory");
out:
    for (unsigned i = 0; i < b->nruns; i++) {
        char path[4300];
        if (rr[i].f) fclose(rr[i].f);
        free(rr[i].rec);
        snprintf(path, sizeof path, "%s/run-%u.tmp", b->tmp, i);
        unlink(path);
    }
    free(rr);
    free(prev_a);
    return rc;
}

/* Removes the work directory (the files written here only). */
static void remove_tmp(struct builder *b)
{
    char path[4300];
    for (unsigned i = 0; i < b->nruns; i++) {
        snprintf(path, sizeof path, "%s/run-%u.tmp", b->tmp, i);
        unlink(path);
    }
    for (unsigned i = 0; b->info && i <= b->ranges; i++) {
        if (!b->info[i].name[0]) continue;
        snprintf(path, sizeof path, "%s/%s", b->tmp, b->info[i].name);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/%s", b->tmp, SP_MANIFEST);
    unlink(path);
    rmdir(b->tmp);
}

static int fsync_path(const char *p)
{
    int fd = open(p, O_RDONLY | O_CLOEXEC), rc;
    if (fd < 0) return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Opens the range writers (their names and ranges in b->info). */
static int open_writers(struct builder *b)
{
    if (!(b->w = calloc(b->ranges + 1, sizeof *b->w)) ||
        !(b->info = calloc(b->ranges + 1, sizeof *b->info)) ||
        !(b->range_of = calloc(b->key_groups, sizeof *b->range_of)))
        return snprintf(b->err, sizeof b->err, "out of memory"), -1;
    for (unsigned i = 0; i <= b->ranges; i++) {
        char name[64];
        int first = -1, last = -1;
        if (i < b->ranges) {
            sp_range(b->key_groups, i, b->ranges, &first, &last);
            for (int g = first; g <= last; g++) b->range_of[g] = (int)i;
            snprintf(name, sizeof name, b->key_groups > 10000 ? "kg-%05d-%05d.smsp" : "kg-%04d-%04d.smsp",
                     first, last);
        } else {
            snprintf(name, sizeof name, "%s", SP_NODE_FILE);
        }
        if (sp_writer_open(&b->w[i], b->tmp, name, b->err, sizeof b->err) != 0) return -1;
        snprintf(b->info[i].name, sizeof b->info[i].name, "%s", name);
        b->info[i].kg_first = first;
        b->info[i].kg_last = last;
    }
    return 0;
}

static int finish(struct builder *b, const char *dir)
{
    struct sp_manifest m;
    memset(&m, 0, sizeof m);
    for (unsigned i = 0; i <= b->ranges; i++) {
        int first = b->info[i].kg_first, last = b->info[i].kg_last;
        if (sp_writer_finish(&b->w[i], &b->info[i], b->err, sizeof b->err) != 0) return -1;
        b->info[i].kg_first = first;
        b->info[i].kg_last = last;
        m.records += b->info[i].records;
        m.bytes += b->info[i].bytes;
    }
    m.format_version = SP_FORMAT_VERSION;
    snprintf(m.statemesh_version, sizeof m.statemesh_version, "%s", SM_VERSION);
    m.store_format = STORE_FORMAT;
    m.key_groups = b->key_groups;
    m.created_at_ms = m.cut.taken_at_ms = wall_ms();
    m.files = b->info;
    m.nfiles = b->ranges + 1;
    if (sp_manifest_write(b->tmp, &m, b->err, sizeof b->err) != 0) return -1;
    if (fsync_path(b->tmp) != 0 || rename(b->tmp, dir) != 0) {
        snprintf(b->err, sizeof b->err, "cannot rename %s to %s: %s", b->tmp, dir, strerror(errno));
        return -1;
    }
    {
        char parent[4200], *slash;
        snprintf(parent, sizeof parent, "%s", dir);
        slash = strrchr(parent, '/');
        if (slash == parent) slash[1] = '\0';
        else if (slash) *slash = '\0';
        else snprintf(parent, sizeof parent, ".");
        (void)fsync_path(parent);
    }
    return 0;
}

int cmd_savepoint_from_jsonl(const struct args *a)
{
    struct builder b;
    struct lreader r;
    struct stat sb;
    const char *in, *dir;
    char *line;
    size_t len;
    double t0 = now_s(), el;
    int lr, rc = EXIT_RPC;
    bool made = false;

    if (a->npos != 4) return usage_error("savepoint from-jsonl needs FILE (or - for stdin) and DIR");
    in = a->pos[2];
    dir = a->pos[3];
    memset(&b, 0, sizeof b);
    memset(&r, 0, sizeof r);
    b.key_groups = a->has_key_groups ? (uint32_t)a->key_groups : 4096;
    b.ranges = a->has_ranges ? (unsigned)a->ranges : SP_DEFAULT_RANGES;
    if (b.ranges > b.key_groups)
        return usage_error("--ranges %u is more than the %u key groups", b.ranges, b.key_groups);
    if (!*dir) return usage_error("savepoint from-jsonl needs a non-empty DIR");
    if (stat(dir, &sb) == 0 || errno != ENOENT)
        return fprintf(stderr, "statemesh: savepoint from-jsonl: %s already exists (give a new "
                       "directory)\n", dir), EXIT_RPC;
    b.file = strcmp(in, "-") == 0 ? "stdin" : in;
    b.seq = 1;
    if (strcmp(in, "-") == 0) r.f = stdin;
    else if (!(r.f = fopen(in, "rb"))) {
        fprintf(stderr, "statemesh: savepoint from-jsonl: %s: %s\n", in, strerror(errno));
        return EXIT_RPC;
    }
    snprintf(b.tmp, sizeof b.tmp, "%s.partial-%ld", dir, (long)getpid());
    if (mkdir(b.tmp, 0755) != 0) {
        fprintf(stderr, "statemesh: savepoint from-jsonl: cannot create %s: %s\n", b.tmp,
                strerror(errno));
        goto out;
    }
    made = true;

    while ((lr = next_line(&r, &line, &len)) != 0) {
        Statemesh__V1__AddressData *d;
        char why[600];
        size_t i = 0;
        b.lines++;
        if (lr == -1) {
            snprintf(b.err, sizeof b.err, "reading %s: %s", b.file, strerror(errno));
            goto fail;
        }
        if (lr == -2) {
            line_error(&b, b.lines, "line longer than %zu bytes", SPJ_MAX_LINE);
            continue;
        }
        while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
        if (i == len) continue; /* blank */
        if (spj_parse_line(line, len, &d, why, sizeof why) != 0) {
            line_error(&b, b.lines, "%s", why);
            continue;
        }
        if (add_line(&b, d, b.lines) < 0) {
            spj_free(d);
            goto fail;
        }
        spj_free(d);
    }
    if (!b.errors) {
        if (spill(&b) != 0) goto fail;
        free(b.run.arena);
        free(b.run.ents);
        memset(&b.run, 0, sizeof b.run);
        if (open_writers(&b) != 0 || merge(&b) != 0) goto fail;
    }
    if (b.errors) {
        fprintf(stderr, "statemesh: savepoint from-jsonl: %" PRIu64 " bad line%s in %s; nothing "
                "written\n", b.errors, b.errors == 1 ? "" : "s", b.file);
        goto out;
    }
    if (finish(&b, dir) != 0) goto fail;
    made = false;
    el = now_s() - t0;
    {
        uint64_t records = 0, bytes = 0;
        for (unsigned i = 0; i <= b.ranges; i++) records += b.info[i].records, bytes += b.info[i].bytes;
        printf("savepoint %s: %" PRIu64 " addresses, %" PRIu64 " records, %" PRIu64 " bytes, %u files, "
               "%.2f s (%.0f addresses/s)\n", dir, b.addresses, records, bytes, b.ranges + 1, el,
               el > 0 ? (double)b.addresses / el : 0.0);
    }
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "statemesh: savepoint from-jsonl: %s\n", b.err);
out:
    if (b.w)
        for (unsigned i = 0; i <= b.ranges; i++) sp_writer_abort(&b.w[i]);
    if (made) remove_tmp(&b);
    if (r.f && r.f != stdin) fclose(r.f);
    free(r.buf);
    free(b.run.arena);
    free(b.run.ents);
    free(b.w);
    free(b.info);
    free(b.range_of);
    free(b.val);
    return rc;
}
