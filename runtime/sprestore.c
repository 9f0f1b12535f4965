/* sprestore — see sprestore.h. */
#include "sprestore.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "savepoint.h"
#include "spcluster.h"

#define MARKER "restore_incomplete"
#define BATCH_BYTES (4u << 20)

/* The dead-letter ids imported so far (a cluster restore merges several
 * nodes' dead letters, whose ids each node numbered on its own): open
 * addressing over non-zero ids. */
struct idset {
    uint64_t *v;
    size_t cap, n;
    uint64_t max;                  /* the largest id seen, imported or not */
};

struct import {
    struct store *st;
    struct store_batch *b;
    uint32_t sp_groups;            /* the savepoint's key-group count */
    const uint8_t *want;           /* [STORE_KEY_GROUPS]: 1 = import this group */
    bool node_records;             /* import E, J, X (with group 0 or always) */
    struct idset *dl;              /* cluster restore: dead-letter ids in use, else NULL */
    uint64_t renumbered;
    /* cluster restore: the part being read and what it owned at the cut. A
     * queued message (M) under a key group its node did not own was held
     * there for another node; pass 1 imports the rest and finds the largest
     * sequence number, pass 2 appends the held ones after it, so they never
     * overwrite the owner's messages with the same sequence number. */
    const struct spc_node *part;
    int pass;
    uint64_t seq_max, held;
    bool part_held;
    uint64_t imported, skipped;
    char err[600];
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t get_u64be(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
}

static bool idset_has(const struct idset *d, uint64_t id)
{
    if (!d->cap) return false;
    for (size_t i = (size_t)(id * 0x9E3779B97F4A7C15ull) & (d->cap - 1);; i = (i + 1) & (d->cap - 1)) {
        if (d->v[i] == id) return true;
        if (!d->v[i]) return false;
    }
}

static int idset_add(struct idset *d, uint64_t id)
{
    if (2 * (d->n + 1) > d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 1024;
        uint64_t *old = d->v, *v = calloc(cap, sizeof *v);
        size_t ocap = d->cap;
        if (!v) return -1;
        d->v = v;
        d->cap = cap;
        d->n = 0;
        for (size_t i = 0; i < ocap; i++)
            if (old[i]) (void)idset_add(d, old[i]);
        free(old);
    }
    for (size_t i = (size_t)(id * 0x9E3779B97F4A7C15ull) & (d->cap - 1);; i = (i + 1) & (d->cap - 1))
        if (!d->v[i]) {
            d->v[i] = id;
            d->n++;
            return 0;
        }
}

/* A dead letter of a cluster restore: its id, or a fresh one when another
 * node's dead letter imported before has it. Returns 0, or -1. */
static int dl_unique(struct import *im, uint8_t *key)
{
    uint64_t id = get_u64be(key + 1);
    if (id > im->dl->max) im->dl->max = id;
    if (!id || idset_has(im->dl, id)) {
        id = ++im->dl->max;
        for (int i = 0; i < 8; i++) key[1 + i] = (uint8_t)(id >> (56 - 8 * i));
        im->renumbered++;
    }
    return idset_add(im->dl, id);
}

static bool part_owns(const struct spc_node *n, uint32_t kg)
{
    for (uint32_t r = 0; r < n->nranges; r++)
        if (kg >= n->first[r] && kg <= n->last[r]) return true;
    return false;
}

static int import_one(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
    struct import *im = arg;
    int kg;
    uint8_t stack[1600], *k = (uint8_t *)key;
    bool renumber = false;

    if (im->part && key[0] == 'M' && klen > 11) {
        bool held = !part_owns(im->part, (uint32_t)(key[1] << 8 | key[2]));
        if (im->pass == 1) {
            uint64_t seq = get_u64be(key + klen - 8);
            if (seq > im->seq_max) im->seq_max = seq;
            if (held) {
                im->held++;
                im->part_held = true;
                return 0;
            }
        } else if (!held) {
            return 0;
        } else {
            renumber = true;
        }
    } else if (im->pass == 2) {
        return 0;
    }
    if (strchr("SMPID", key[0])) {
        if (klen < 3) goto bad;
        kg = im->sp_groups == STORE_KEY_GROUPS && key[0] != 'D'
                 ? (key[1] << 8 | key[2])
                 : sp_record_key_group(key, klen, val, vlen, STORE_KEY_GROUPS);
        if (kg < 0) goto bad;
        if (kg != (key[1] << 8 | key[2])) {                  /* re-key */
            k = klen <= sizeof stack ? stack : malloc(klen);
            if (!k) {
                snprintf(im->err, sizeof im->err, "out of memory");
                return -1;
            }
            memcpy(k, key, klen);
            k[1] = (uint8_t)(kg >> 8);
            k[2] = (uint8_t)kg;
        }
        if (renumber && im->want[kg]) {                     /* after the owner's messages */
            uint64_t seq = ++im->seq_max;
            if (k == key) {
                if (!(k = klen <= sizeof stack ? stack : malloc(klen))) {
                    snprintf(im->err, sizeof im->err, "out of memory");
                    return -1;
                }
                memcpy(k, key, klen);
            }
            for (int i = 0; i < 8; i++) k[klen - 8 + i] = (uint8_t)(seq >> (56 - 8 * i));
        }
    } else if (key[0] == 'O' || key[0] == 'C') {
        /* outbox and channel records (peer.h) name key groups of the count
         * they were written with: they cannot be re-keyed to another one */
        kg = im->sp_groups == STORE_KEY_GROUPS
                 ? sp_record_key_group(key, klen, val, vlen, STORE_KEY_GROUPS) : -3;
        if (kg == -2) goto bad;
        if (kg == -3) {                /* skipped */
            im->skipped++;
            return 0;
        }
    } else if (key[0] == 'L') {
        kg = sp_record_key_group(key, klen, val, vlen, STORE_KEY_GROUPS);
        if (kg < 0) goto bad;
        if (im->dl && im->want[kg] && klen == 9) {
            memcpy(stack, key, klen);
            k = stack;
            if (dl_unique(im, k) != 0) {
                snprintf(im->err, sizeof im->err, "out of memory");
                return -1;
            }
        }
    } else if (key[0] == 'E' || key[0] == 'J' || key[0] == 'X') {
        /* node records go with group 0, or in a cluster restore with the
         * node of the same id; a node's identity stays with its data dir */
        kg = 0;
        if (key[0] == 'X' && ((klen == 13 && memcmp(key, "Xcluster_name", 13) == 0) ||
                              (klen == 13 && memcmp(key, "Xcluster_node", 13) == 0))) {
            im->skipped++;
            return 0;
        }
        if (!im->node_records) {
            im->skipped++;
            return 0;
        }
    } else {
        goto bad;
    }
    if (key[0] != 'E' && key[0] != 'J' && key[0] != 'X' && !im->want[kg]) {
        im->skipped++;
    } else {
        store_batch_put_raw(im->b, k, klen, val, vlen);
        im->imported++;
    }
    if (k != key && k != stack) free(k);
    if (store_batch_bytes(im->b) >= BATCH_BYTES) {
        if (store_write(im->st, im->b, false) != 0) {
            snprintf(im->err, sizeof im->err, "%s", store_last_error(im->st));
            return -1;
        }
        store_batch_clear(im->b);
    }
    return 0;
bad:
    snprintf(im->err, sizeof im->err, "a record of kind '%c' names no valid address",
             key[0] >= 0x20 && key[0] < 0x7f ? key[0] : '?');
    return -1;
}

static int dir_empty(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int empty = 1;
    if (!d) return errno == ENOENT ? 1 : -1;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
    closedir(d);
    return empty;
}

static void on_verified(void *arg, const struct sp_file *f, uint64_t records, uint64_t bytes)
{
    const struct log *lg = arg;
    LOG_INFO(lg, "restore.verified_file", "file=%s records=%" PRIu64 " total_records=%" PRIu64
             " total_bytes=%" PRIu64, f->name, f->records, records, bytes);
}

/* True when file f holds a key group of the set (or is the node file). */
static bool file_wanted(const struct sp_manifest *m, const struct sp_file *f, const uint8_t *want)
{
    if (m->key_groups != STORE_KEY_GROUPS || f->kg_first < 0) return true;   /* re-keyed: read all */
    for (int g = f->kg_first; g <= f->kg_last; g++)
        if (want[g]) return true;
    return false;
}

/* Imports the wanted records of one (verified) savepoint directory. */
static int import_dir(struct import *im, const char *dir, const struct sp_manifest *m, char *err,
                      size_t errlen)
{
    char serr[1500];
    im->sp_groups = m->key_groups;
    for (size_t i = 0; i < m->nfiles; i++) {
        const struct sp_file *f = &m->files[i];
        if (!file_wanted(m, f, im->want)) continue;
        if (sp_read_file(dir, f, import_one, im, serr, sizeof serr) != 0) {
            snprintf(err, errlen, "restore of %s failed in %s: %s", dir, f->name,
                     im->err[0] ? im->err : serr);
            return -1;
        }
    }
    return 0;
}

/* Opens the store and writes the marker. */
static int import_begin(struct import *im, const char *spdir, const char *dbdir,
                        const struct store_options *so, const struct log *lg, char *err,
                        size_t errlen)
{
    char serr[1500];
    if (store_open(&im->st, dbdir, so, lg, serr, sizeof serr) != 0) {
        snprintf(err, errlen, "%s", serr);
        return -1;
    }
    if (!(im->b = store_batch_create())) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    store_batch_put_meta(im->b, MARKER, spdir, strlen(spdir));
    if (store_write(im->st, im->b, true) != 0) {
        snprintf(err, errlen, "%s", store_last_error(im->st));
        return -1;
    }
    store_batch_clear(im->b);
    return 0;
}

/* The last, synced batch: the marker goes, restored_from is recorded. */
static int import_end(struct import *im, const char *spdir, char *err, size_t errlen)
{
    store_batch_delete_raw(im->b, "X" MARKER, strlen("X" MARKER));
    store_batch_put_meta(im->b, "restored_from", spdir, strlen(spdir));
    if (store_write(im->st, im->b, true) != 0) {
        snprintf(err, errlen, "%s", store_last_error(im->st));
        return -1;
    }
    return 0;
}

static void log_done(const struct log *lg, const char *q, const struct import *im, int64_t t0,
                     int64_t verify_ms)
{
    int64_t ms = mono_ms() - t0;
    int64_t ims = ms - verify_ms;
    LOG_INFO(lg, "restore.done", "savepoint=%s records=%" PRIu64 " skipped=%" PRIu64
             " ms=%lld verify_ms=%lld records_per_s=%.0f import_records_per_s=%.0f", q,
             im->imported, im->skipped, (long long)ms, (long long)verify_ms,
             ms > 0 ? (double)(im->imported + im->skipped) * 1000.0 / (double)ms : 0.0,
             ims > 0 ? (double)(im->imported + im->skipped) * 1000.0 / (double)ims : 0.0);
}

static int check_empty(const char *dbdir, char *err, size_t errlen)
{
    int e = dir_empty(dbdir);
    if (e == 1) return 0;
    snprintf(err, errlen, "%s %s; --from-savepoint restores only into an empty data dir "
             "(move the data dir away or set runtime.data_dir to a new one)", dbdir,
             e < 0 ? "cannot be read" : "already holds a store");
    return -1;
}

int sprestore_run(const char *spdir, const char *dbdir, const struct store_options *so,
                  int kg_first, int kg_last, const struct log *lg, char *err, size_t errlen)
{
    struct sp_manifest m;
    struct import im = {0};
    uint8_t want[STORE_KEY_GROUPS];
    char q[4200], serr[1500];
    int64_t t0 = mono_ms(), verify_ms = 0;
    int rc = -1;

    if (check_empty(dbdir, err, errlen) != 0) return -1;
    if (spc_is_cluster(spdir)) {
        snprintf(err, errlen, "%s is a cluster savepoint (CLUSTER.json): restore it on the nodes "
                 "of a cluster, whose configuration has a cluster group, after `statemeshd "
                 "--cluster-assign` (docs/cluster.md, \"Rescaling\")", spdir);
        return -1;
    }
    LOG_INFO(lg, "restore.verify", "savepoint=%s", log_quote(q, sizeof q, spdir));
    if (sp_verify(spdir, &m, on_verified, (void *)lg, serr, sizeof serr) != 0) {
        snprintf(err, errlen, "savepoint %s does not verify, nothing restored: %s", spdir, serr);
        return -1;
    }
    verify_ms = mono_ms() - t0;
    if (m.store_format > STORE_FORMAT_VERSION) {
        snprintf(err, errlen, "savepoint %s holds store format %d; this statemeshd reads up to %d",
                 spdir, m.store_format, STORE_FORMAT_VERSION);
        goto out;
    }
    for (int g = 0; g < STORE_KEY_GROUPS; g++) want[g] = g >= kg_first && g <= kg_last;
    im.want = want;
    im.node_records = want[0];
    if (import_begin(&im, spdir, dbdir, so, lg, err, errlen) != 0) goto out;
    LOG_INFO(lg, "restore.start", "savepoint=%s key_groups=%d-%d savepoint_key_groups=%" PRIu32
             " records=%" PRIu64 "%s", q, kg_first, kg_last, m.key_groups, m.records,
             m.key_groups != STORE_KEY_GROUPS ? " rekey=1" : "");
    if (import_dir(&im, spdir, &m, err, errlen) != 0 || import_end(&im, spdir, err, errlen) != 0)
        goto out;
    log_done(lg, q, &im, t0, verify_ms);
    rc = 0;
out:
    store_batch_destroy(&im.b);
    store_close(&im.st);
    sp_manifest_free(&m);
    return rc;
}

/* The cluster manifest, every node's manifest and totals, and every file
 * this node will read (not the other nodes' key groups). */
static int verify_wanted(const char *spdir, struct spc_manifest *cm, const uint8_t *want,
                         const struct log *lg, char *err, size_t errlen)
{
    char sub[4200], e[1500];
    uint64_t records = 0, bytes = 0;

    if (spc_manifest_read(spdir, cm, err, errlen) != 0) return -1;
    for (size_t i = 0; i < cm->nnodes; i++) {
        struct sp_manifest m;
        snprintf(sub, sizeof sub, "%s/%s", spdir, cm->nodes[i].id);
        if (sp_manifest_read(sub, &m, e, sizeof e) != 0) {
            snprintf(err, errlen, "node %s: %.1200s", cm->nodes[i].id, e);
            goto bad;
        }
        if (m.records != cm->nodes[i].records || m.bytes != cm->nodes[i].bytes) {
            snprintf(err, errlen, "node %s: its MANIFEST.json and CLUSTER.json disagree on its "
                     "records or bytes (damaged or mixed up)", cm->nodes[i].id);
            sp_manifest_free(&m);
            goto bad;
        }
        for (size_t f = 0; f < m.nfiles; f++) {
            if (!file_wanted(&m, &m.files[f], want)) continue;
            if (sp_read_file(sub, &m.files[f], NULL, NULL, e, sizeof e) != 0) {
                snprintf(err, errlen, "node %s: %.1200s", cm->nodes[i].id, e);
                sp_manifest_free(&m);
                goto bad;
            }
            LOG_INFO(lg, "restore.verified_file", "node=%s file=%s records=%" PRIu64,
                     cm->nodes[i].id, m.files[f].name, m.files[f].records);
        }
        records += m.records;
        bytes += m.bytes;
        sp_manifest_free(&m);
    }
    if (records == cm->records && bytes == cm->bytes) return 0;
    snprintf(err, errlen, "%s/%s: the nodes hold %" PRIu64 " records but the total says %" PRIu64,
             spdir, SPC_MANIFEST, records, cm->records);
bad:
    spc_manifest_free(cm);
    return -1;
}

int sprestore_run_cluster(const char *spdir, const char *dbdir, const struct store_options *so,
                          const uint8_t *want, const char *node_id, const struct log *lg,
                          char *err, size_t errlen)
{
    struct spc_manifest cm;
    struct import im = {0};
    struct idset dl = {0};
    bool held_in[SPC_MAX_NODES] = {false};
    char q[4200], serr[1500], sub[4200];
    int64_t t0 = mono_ms(), verify_ms = 0;
    uint32_t groups = 0;
    int rc = -1;

    if (check_empty(dbdir, err, errlen) != 0) return -1;
    for (int g = 0; g < STORE_KEY_GROUPS; g++) groups += want[g];
    LOG_INFO(lg, "restore.verify", "savepoint=%s cluster=1", log_quote(q, sizeof q, spdir));
    if (verify_wanted(spdir, &cm, want, lg, serr, sizeof serr) != 0) {
        snprintf(err, errlen, "cluster savepoint %s does not verify, nothing restored: %s", spdir,
                 serr);
        return -1;
    }
    verify_ms = mono_ms() - t0;
    im.want = want;
    im.dl = &dl;
    if (import_begin(&im, spdir, dbdir, so, lg, err, errlen) != 0) goto out;
    LOG_INFO(lg, "restore.start", "savepoint=%s cluster=1 node=%s key_groups_owned=%" PRIu32
             " savepoint_nodes=%zu records=%" PRIu64, q, node_id, groups, cm.nnodes, cm.records);
    im.pass = 1;
again:
    for (size_t i = 0; i < cm.nnodes; i++) {
        struct sp_manifest m;
        if (im.pass == 2 && !held_in[i]) continue;
        snprintf(sub, sizeof sub, "%s/%s", spdir, cm.nodes[i].id);
        if (sp_manifest_read(sub, &m, serr, sizeof serr) != 0) {
            snprintf(err, errlen, "%s", serr);
            goto out;
        }
        if (m.store_format > STORE_FORMAT_VERSION) {
            snprintf(err, errlen, "savepoint %s holds store format %d; this statemeshd reads up "
                     "to %d", sub, m.store_format, STORE_FORMAT_VERSION);
            sp_manifest_free(&m);
            goto out;
        }
        /* egress logs and metadata stay with the node of the same id */
        im.node_records = strcmp(cm.nodes[i].id, node_id) == 0;
        if (!im.node_records && im.pass == 1)
            LOG_INFO(lg, "restore.node_records_skipped", "from=%s msg=\"egress logs and node "
                     "metadata of another node stay with that node\"", cm.nodes[i].id);
        im.part = &cm.nodes[i];
        im.part_held = false;
        rc = import_dir(&im, sub, &m, err, errlen);
        held_in[i] = im.part_held;
        sp_manifest_free(&m);
        if (rc != 0) goto out;
        rc = -1;
    }
    if (im.pass == 1 && im.held) {
        LOG_INFO(lg, "restore.held_messages", "count=%" PRIu64 " msg=\"messages held on a node "
                 "for another node's address go after the owner's queue\"", im.held);
        im.pass = 2;
        goto again;
    }
    if (import_end(&im, spdir, err, errlen) != 0) goto out;
    if (im.renumbered)
        LOG_WARN(lg, "restore.dead_letters_renumbered", "count=%" PRIu64 " msg=\"dead letters "
                 "of different nodes had the same id; the later ones got new ids\"",
                 im.renumbered);
    log_done(lg, q, &im, t0, verify_ms);
    rc = 0;
out:
    store_batch_destroy(&im.b);
    store_close(&im.st);
    spc_manifest_free(&cm);
    free(dl.v);
    return rc;
}

int sprestore_check(struct store *s, char *err, size_t errlen)
{
    uint8_t *v;
    size_t len;
    int r = store_get_meta(s, MARKER, &v, &len);
    if (r < 0) {
        snprintf(err, errlen, "%s", store_last_error(s));
        return -1;
    }
    if (r == 1) return 0;
    snprintf(err, errlen, "the store holds an interrupted restore of %.*s; remove the data "
             "dir's store directory and run the restore again", (int)(len > 2000 ? 2000 : len),
             (const char *)v);
    free(v);
    return -1;
}
