/*
 * cli_savepoint — `statemesh savepoint create | verify | inspect` (cli.h;
 * docs/savepoints.md).
 *
 *   savepoint create DIR [--ranges N] [--json]
 *       the runtime writes DIR (a relative DIR is made absolute against the
 *       CLI's working directory: the path is on the runtime's machine);
 *       progress on stderr about once a second; then "savepoint DIR:
 *       N records, B bytes, F files, S s" (--json: its MANIFEST.json).
 *   savepoint verify DIR
 *       offline: reads every file, checks block CRCs, record counts and
 *       sha256; "ok DIR: N records in F files (B bytes)" or the damage
 *       (file and offset) on stderr with exit 1.
 *   savepoint inspect DIR [--json]
 *       offline: verifies like verify, then prints the manifest's facts,
 *       counts per kind, per function type and per file.
 *   savepoint export DIR --jsonl ..., savepoint from-jsonl FILE DIR ...
 *       JSON lines, offline: cli_jsonl.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "savepoint.h"
#include "spcluster.h"
#include "statemesh/client.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- create ---- */

struct create_ctx {
    const struct args *a;
    double last;
};

static int on_progress(void *udata, const sm_savepoint_progress *p)
{
    struct create_ctx *cx = udata;
    double secs = (double)p->elapsed_ms / 1000.0;

    if (p->done) {
        if (cx->a->json) {
            fputs(p->manifest_json, stdout);
        } else {
            printf("savepoint %s: %" PRIu64 " records, %" PRIu64 " bytes, %u files, %.1f s\n",
                   p->path, p->records, p->bytes, p->files, secs);
        }
        return 0;
    }
    if (now_s() - cx->last >= 1.0) {
        cx->last = now_s();
        fprintf(stderr, "savepoint: %" PRIu64 " records, %.1f MB, %u/%u files, %.1f MB/s\n",
                p->records, (double)p->bytes / 1e6, p->files_done, p->files,
                secs > 0 ? (double)p->bytes / 1e6 / secs : 0.0);
    }
    return 0;
}

static int cmd_create(sm_client *c, const struct args *a)
{
    char path[PATH_MAX + 2], cwd[PATH_MAX];
    struct create_ctx cx = {a, now_s()};
    sm_error err;
    const char *dir;
    int rc;

    if (a->npos != 3) return usage_error("savepoint create needs DIR (a new directory)");
    dir = a->pos[2];
    if (!*dir) return usage_error("savepoint create needs a non-empty DIR");
    if (dir[0] == '/') {
        snprintf(path, sizeof path, "%s", dir);
    } else {
        if (!getcwd(cwd, sizeof cwd)) return usage_error("cannot read the working directory");
        if ((size_t)snprintf(path, sizeof path, "%s/%s", cwd, dir) >= sizeof path)
            return usage_error("savepoint path too long");
    }
    while (strlen(path) > 1 && path[strlen(path) - 1] == '/') path[strlen(path) - 1] = '\0';
    rc = sm_client_create_savepoint(c, path, a->has_ranges ? (uint32_t)a->ranges : 0,
                                    on_progress, &cx, &err);
    if (rc == SM_EINVAL) return usage_error("%s", err.message);
    if (rc != SM_OK) return rpc_error("savepoint create", &err, a->address);
    return 0;
}

/* ---- verify ---- */

static void on_file(void *arg, const struct sp_file *f, uint64_t records, uint64_t bytes)
{
    double *last = arg;
    (void)f;
    if (now_s() - *last >= 1.0) {
        *last = now_s();
        fprintf(stderr, "verify: %" PRIu64 " records, %.1f MB checked\n", records,
                (double)bytes / 1e6);
    }
}

static int cmd_verify(const struct args *a)
{
    struct sp_manifest m;
    char err[1500];
    double last = now_s();

    if (a->npos != 3) return usage_error("savepoint verify needs DIR");
    if (spc_is_cluster(a->pos[2])) {
        struct spc_manifest cm;
        if (spc_verify(a->pos[2], &cm, on_file, &last, err, sizeof err) != 0) {
            fprintf(stderr, "statemesh: savepoint verify: %s\n", err);
            return EXIT_RPC;
        }
        printf("ok %s: cluster savepoint of %s, %" PRIu64 " records from %zu node%s (%" PRIu64
               " bytes), checksums match\n", a->pos[2], cm.cluster, cm.records, cm.nnodes,
               cm.nnodes == 1 ? "" : "s", cm.bytes);
        spc_manifest_free(&cm);
        return 0;
    }
    if (sp_verify(a->pos[2], &m, on_file, &last, err, sizeof err) != 0) {
        fprintf(stderr, "statemesh: savepoint verify: %s\n", err);
        return EXIT_RPC;
    }
    printf("ok %s: %" PRIu64 " records in %zu files (%" PRIu64 " bytes), checksums match\n",
           a->pos[2], m.records, m.nfiles, m.bytes);
    sp_manifest_free(&m);
    return 0;
}

/* ---- inspect ---- */

enum { K_STATE, K_ADDRESSES, K_QUEUED, K_PAUSED, K_DELAYED, K_IDEM, K_DEADLETTERS, K_EGRESS,
       K_LEGACY, K_META, K_N };
static const char *const kind_names[K_N] = {"state_values", "addresses_with_state",
                                            "queued_messages", "paused_addresses",
                                            "delayed_messages", "idempotency_records",
                                            "dead_letters", "egress_records",
                                            "legacy_idempotency_records", "metadata"};

struct tcount {
    char *type;
    uint64_t n[K_N];
};

struct census {
    uint64_t total[K_N];
    struct tcount *types;
    size_t ntypes;
    char last_addr[1400];          /* the last S address counted (type \0 id) */
    size_t last_len;
    uint32_t key_groups;
};

static struct tcount *type_slot(struct census *c, const char *type, size_t tlen)
{
    for (size_t i = 0; i < c->ntypes; i++)
        if (strlen(c->types[i].type) == tlen && memcmp(c->types[i].type, type, tlen) == 0)
            return &c->types[i];
    struct tcount *t = realloc(c->types, (c->ntypes + 1) * sizeof *t);
    if (!t) return NULL;
    c->types = t;
    t = &c->types[c->ntypes++];
    memset(t, 0, sizeof *t);
    if (!(t->type = strndup(type, tlen))) {
        c->ntypes--;
        return NULL;
    }
    return t;
}

static int count_record(void *arg, const uint8_t *key, size_t klen, const uint8_t *val,
                        size_t vlen)
{
    struct census *c = arg;
    const char *type = NULL, *id;
    size_t tlen = 0, ilen;
    struct tcount *t = NULL;
    int kind;

    switch (key[0]) {
    case 'S': kind = K_STATE; break;
    case 'M': kind = K_QUEUED; break;
    case 'P': kind = K_PAUSED; break;
    case 'I': kind = K_IDEM; break;
    case 'D': kind = K_DELAYED; break;
    case 'L': kind = K_DEADLETTERS; break;
    case 'E': kind = K_EGRESS; break;
    case 'J': kind = K_LEGACY; break;
    default: kind = K_META; break;
    }
    c->total[kind]++;
    if (sp_key_address(key, klen, &type, &tlen, &id, &ilen) == 0) {
        t = type_slot(c, type, tlen);
        if (t) t->n[kind]++;
        if (kind == K_STATE && (tlen + 1 + ilen != c->last_len ||
                                memcmp(c->last_addr, type, tlen + 1 + ilen) != 0)) {
            c->total[K_ADDRESSES]++;
            if (t) t->n[K_ADDRESSES]++;
            if (tlen + 1 + ilen <= sizeof c->last_addr) {
                memcpy(c->last_addr, type, tlen + 1 + ilen);
                c->last_len = tlen + 1 + ilen;
            }
        }
    }
    (void)val;
    (void)vlen;
    return 0;
}

static void put_counts(const uint64_t *n, bool json)
{
    bool first = true;
    for (int k = 0; k < K_N; k++) {
        if (!n[k]) continue;
        if (json) printf("%s\"%s\":%" PRIu64, first ? "" : ",", kind_names[k], n[k]);
        else printf("%s%s=%" PRIu64, first ? "" : " ", kind_names[k], n[k]);
        first = false;
    }
}

/* A cluster savepoint: the census over every node's part. */
static int inspect_cluster(const struct args *a)
{
    struct spc_manifest cm;
    struct census c = {0};
    char err[1500], sub[PATH_MAX + 100];
    double last = now_s();
    int rc = EXIT_RPC;

    if (spc_verify(a->pos[2], &cm, on_file, &last, err, sizeof err) != 0) {
        fprintf(stderr, "statemesh: savepoint inspect: %s\n", err);
        return EXIT_RPC;
    }
    c.key_groups = cm.key_groups;
    for (size_t i = 0; i < cm.nnodes; i++) {
        struct sp_manifest m;
        snprintf(sub, sizeof sub, "%s/%s", a->pos[2], cm.nodes[i].id);
        if (sp_manifest_read(sub, &m, err, sizeof err) != 0) {
            fprintf(stderr, "statemesh: savepoint inspect: %s\n", err);
            goto out;
        }
        for (size_t f = 0; f < m.nfiles; f++)
            if (sp_read_file(sub, &m.files[f], count_record, &c, err, sizeof err) != 0) {
                fprintf(stderr, "statemesh: savepoint inspect: %s\n", err);
                sp_manifest_free(&m);
                goto out;
            }
        sp_manifest_free(&m);
    }
    if (a->json) {
        printf("{\"path\":");
        valjson_put_string(stdout, a->pos[2], strlen(a->pos[2]));
        printf(",\"cluster\":");
        valjson_put_string(stdout, cm.cluster, strlen(cm.cluster));
        printf(",\"id\":");
        valjson_put_string(stdout, cm.id, strlen(cm.id));
        printf(",\"key_groups\":%" PRIu32 ",\"cut_at_ms\":%" PRId64 ",\"pause_ms\":%" PRId64
               ",\"records\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"totals\":{", cm.key_groups,
               cm.cut_at_ms, cm.pause_ms, cm.records, cm.bytes);
        put_counts(c.total, true);
        printf("},\"types\":{");
        for (size_t i = 0; i < c.ntypes; i++) {
            if (i) putchar(',');
            valjson_put_string(stdout, c.types[i].type, strlen(c.types[i].type));
            printf(":{");
            put_counts(c.types[i].n, true);
            putchar('}');
        }
        printf("},\"nodes\":[");
        for (size_t i = 0; i < cm.nnodes; i++) {
            printf("%s{\"node\":\"%s\",\"key_groups\":[", i ? "," : "", cm.nodes[i].id);
            for (uint32_t r = 0; r < cm.nodes[i].nranges; r++)
                printf("%s[%" PRIu32 ",%" PRIu32 "]", r ? "," : "", cm.nodes[i].first[r],
                       cm.nodes[i].last[r]);
            printf("],\"records\":%" PRIu64 ",\"bytes\":%" PRIu64 "}", cm.nodes[i].records,
                   cm.nodes[i].bytes);
        }
        printf("]}\n");
    } else {
        printf("cluster savepoint %s of cluster %s (id %s)\n", a->pos[2], cm.cluster, cm.id);
        printf("  %" PRIu32 " key groups, cut at %" PRId64 " ms (Unix) after a pause of %" PRId64
               " ms\n", cm.key_groups, cm.cut_at_ms, cm.pause_ms);
        printf("  %" PRIu64 " records, %" PRIu64 " bytes from %zu nodes, checksums match\n",
               cm.records, cm.bytes, cm.nnodes);
        printf("totals: ");
        put_counts(c.total, false);
        printf("\n");
        for (size_t i = 0; i < c.ntypes; i++) {
            printf("type %s: ", c.types[i].type);
            put_counts(c.types[i].n, false);
            printf("\n");
        }
        for (size_t i = 0; i < cm.nnodes; i++) {
            printf("node %s (key groups", cm.nodes[i].id);
            for (uint32_t r = 0; r < cm.nodes[i].nranges; r++)
                printf("%s%" PRIu32 "-%" PRIu32, r ? "," : " ", cm.nodes[i].first[r],
                       cm.nodes[i].last[r]);
            printf("): %" PRIu64 " records, %" PRIu64 " bytes in %s/%s\n", cm.nodes[i].records,
                   cm.nodes[i].bytes, a->pos[2], cm.nodes[i].id);
        }
    }
    rc = 0;
out:
    for (size_t i = 0; i < c.ntypes; i++) free(c.types[i].type);
    free(c.types);
    spc_manifest_free(&cm);
    return rc;
}

static int cmd_inspect_savepoint(const struct args *a)
{
    struct sp_manifest m;
    struct census c = {0};
    char err[1500];
    uint64_t *per_file;
    int rc = EXIT_RPC;

    if (a->npos != 3) return usage_error("savepoint inspect needs DIR");
    if (spc_is_cluster(a->pos[2])) return inspect_cluster(a);
    if (sp_manifest_read(a->pos[2], &m, err, sizeof err) != 0) {
        fprintf(stderr, "statemesh: savepoint inspect: %s\n", err);
        return EXIT_RPC;
    }
    per_file = calloc(m.nfiles ? m.nfiles : 1, sizeof *per_file);
    if (!per_file) goto out;
    c.key_groups = m.key_groups;
    for (size_t i = 0; i < m.nfiles; i++)
        if (sp_read_file(a->pos[2], &m.files[i], count_record, &c, err, sizeof err) != 0) {
            fprintf(stderr, "statemesh: savepoint inspect: %s\n", err);
            goto out;
        }
    if (a->json) {
        printf("{\"path\":");
        valjson_put_string(stdout, a->pos[2], strlen(a->pos[2]));
        printf(",\"statemesh_version\":");
        valjson_put_string(stdout, m.statemesh_version, strlen(m.statemesh_version));
        printf(",\"key_groups\":%" PRIu32 ",\"created_at_ms\":%" PRId64 ",\"cut_taken_at_ms\":%"
               PRId64 ",\"records\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"totals\":{",
               m.key_groups, m.created_at_ms, m.cut.taken_at_ms, m.records, m.bytes);
        put_counts(c.total, true);
        printf("},\"types\":{");
        for (size_t i = 0; i < c.ntypes; i++) {
            if (i) putchar(',');
            valjson_put_string(stdout, c.types[i].type, strlen(c.types[i].type));
            putchar(':');
            putchar('{');
            put_counts(c.types[i].n, true);
            putchar('}');
        }
        printf("},\"files\":[");
        for (size_t i = 0; i < m.nfiles; i++) {
            const struct sp_file *f = &m.files[i];
            printf("%s{\"name\":\"%s\",\"key_groups\":", i ? "," : "", f->name);
            if (f->kg_first < 0) printf("null");
            else printf("[%d,%d]", f->kg_first, f->kg_last);
            printf(",\"records\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"sha256\":\"%s\"}",
                   f->records, f->bytes, f->sha256);
        }
        printf("]}\n");
    } else {
        printf("savepoint %s\n", a->pos[2]);
        printf("  statemesh %s, store format %d, %" PRIu32 " key groups\n", m.statemesh_version,
               m.store_format, m.key_groups);
        printf("  cut taken at %" PRId64 " ms (Unix), complete at %" PRId64 " ms\n",
               m.cut.taken_at_ms, m.created_at_ms);
        printf("  %" PRIu64 " records, %" PRIu64 " bytes in %zu files, checksums match\n",
               m.records, m.bytes, m.nfiles);
        printf("totals: ");
        put_counts(c.total, false);
        printf("\n");
        for (size_t i = 0; i < c.ntypes; i++) {
            printf("type %s: ", c.types[i].type);
            put_counts(c.types[i].n, false);
            printf("\n");
        }
        for (size_t i = 0; i < m.nfiles; i++) {
            const struct sp_file *f = &m.files[i];
            if (f->kg_first < 0)
                printf("file %s (node records): %" PRIu64 " records, %" PRIu64 " bytes\n",
                       f->name, f->records, f->bytes);
            else
                printf("file %s (key groups %d-%d): %" PRIu64 " records, %" PRIu64 " bytes\n",
                       f->name, f->kg_first, f->kg_last, f->records, f->bytes);
        }
    }
    rc = 0;
out:
    for (size_t i = 0; i < c.ntypes; i++) free(c.types[i].type);
    free(c.types);
    free(per_file);
    sp_manifest_free(&m);
    return rc;
}

int cmd_savepoint(sm_client *c, const struct args *a)
{
    const char *sub = a->npos >= 2 ? a->pos[1] : "";
    bool export = strcmp(sub, "export") == 0, from = strcmp(sub, "from-jsonl") == 0;
    if ((a->jsonl || a->out || a->type) && !export)
        return usage_error("--jsonl, --out and --type only apply to savepoint export");
    if (a->has_key_groups && !from)
        return usage_error("--key-groups only applies to savepoint from-jsonl");
    if (a->json && (export || from)) return usage_error("--json does not apply to savepoint %s", sub);
    if (strcmp(sub, "create") == 0) return cmd_create(c, a);
    if (from) return cmd_savepoint_from_jsonl(a);
    if (a->has_ranges) return usage_error("--ranges only applies to savepoint create and from-jsonl");
    if (strcmp(sub, "verify") == 0) return cmd_verify(a);
    if (strcmp(sub, "inspect") == 0) return cmd_inspect_savepoint(a);
    if (export) return cmd_savepoint_export(a);
    return usage_error("savepoint needs a subcommand: create, verify, inspect, export or from-jsonl");
}
