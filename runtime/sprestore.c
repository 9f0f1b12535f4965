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

#define MARKER "restore_incomplete"
#define BATCH_BYTES (4u << 20)

struct import {
    struct store *st;
    struct store_batch *b;
    uint32_t sp_groups;            /* the savepoint's key-group count */
    int first, last;
    uint64_t imported, skipped;
    char err[600];
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int import_one(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
    struct import *im = arg;
    int kg;
    uint8_t stack[1600], *k = (uint8_t *)key;

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
    } else if (key[0] == 'O' || key[0] == 'C') {
        /* outbox and channel records (peer.h) name key groups of the count
         * they were written with: they cannot be re-keyed to another one */
        kg = im->sp_groups == STORE_KEY_GROUPS
                 ? sp_record_key_group(key, klen, val, vlen, STORE_KEY_GROUPS) : -3;
        if (kg == -2) goto bad;
        if (kg == -3) kg = -1;         /* skipped below */
    } else if (key[0] == 'L') {
        kg = sp_record_key_group(key, klen, val, vlen, STORE_KEY_GROUPS);
        if (kg < 0) goto bad;
    } else if (key[0] == 'E' || key[0] == 'J' || key[0] == 'X') {
        kg = 0;                                               /* node records go with group 0 */
    } else {
        goto bad;
    }
    if (kg < im->first || kg > im->last) {
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

int sprestore_run(const char *spdir, const char *dbdir, const struct store_options *so,
                  int kg_first, int kg_last, const struct log *lg, char *err, size_t errlen)
{
    struct sp_manifest m;
    struct import im = {0};
    char q[4200], serr[1500];
    int64_t t0 = mono_ms(), verify_ms = 0;
    int rc = -1, e;

    if ((e = dir_empty(dbdir)) != 1) {
        snprintf(err, errlen, "%s %s; --from-savepoint restores only into an empty data dir "
                 "(move the data dir away or set runtime.data_dir to a new one)", dbdir,
                 e < 0 ? "cannot be read" : "already holds a store");
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
    if (store_open(&im.st, dbdir, so, lg, serr, sizeof serr) != 0) {
        snprintf(err, errlen, "%s", serr);
        goto out;
    }
    im.b = store_batch_create();
    im.sp_groups = m.key_groups;
    im.first = kg_first;
    im.last = kg_last;
    store_batch_put_meta(im.b, MARKER, spdir, strlen(spdir));
    if (store_write(im.st, im.b, true) != 0) {
        snprintf(err, errlen, "%s", store_last_error(im.st));
        goto out;
    }
    store_batch_clear(im.b);
    LOG_INFO(lg, "restore.start", "savepoint=%s key_groups=%d-%d savepoint_key_groups=%" PRIu32
             " records=%" PRIu64 "%s", q, kg_first, kg_last, m.key_groups, m.records,
             m.key_groups != STORE_KEY_GROUPS ? " rekey=1" : "");
    for (size_t i = 0; i < m.nfiles; i++) {
        const struct sp_file *f = &m.files[i];
        if (m.key_groups == STORE_KEY_GROUPS && f->kg_first >= 0 &&
            (f->kg_last < kg_first || f->kg_first > kg_last))
            continue;                                         /* no group of the set */
        if (sp_read_file(spdir, f, import_one, &im, serr, sizeof serr) != 0) {
            snprintf(err, errlen, "restore of %s failed in %s: %s", spdir, f->name,
                     im.err[0] ? im.err : serr);
            goto out;
        }
    }
    store_batch_delete_raw(im.b, "X" MARKER, strlen("X" MARKER));
    store_batch_put_meta(im.b, "restored_from", spdir, strlen(spdir));
    if (store_write(im.st, im.b, true) != 0) {
        snprintf(err, errlen, "%s", store_last_error(im.st));
        goto out;
    }
    {
        int64_t ms = mono_ms() - t0;
        int64_t ims = ms - verify_ms;
        LOG_INFO(lg, "restore.done", "savepoint=%s records=%" PRIu64 " skipped=%" PRIu64
                 " ms=%lld verify_ms=%lld records_per_s=%.0f import_records_per_s=%.0f", q,
                 im.imported, im.skipped, (long long)ms, (long long)verify_ms,
                 ms > 0 ? (double)(im.imported + im.skipped) * 1000.0 / (double)ms : 0.0,
                 ims > 0 ? (double)(im.imported + im.skipped) * 1000.0 / (double)ims : 0.0);
    }
    rc = 0;
out:
    store_batch_destroy(&im.b);
    store_close(&im.st);
    sp_manifest_free(&m);
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
