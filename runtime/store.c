/*
 * store — statemeshd's LevelDB; see store.h for the key layout and contract.
 *
 * Opening:
 *
 *   stat(dir)                       must exist and be a directory
 *   STATEMESH_FAULT_WRITE_FAIL_AFTER parsed (a bad value refuses to open)
 *   statvfs(dir)                    refuse below store_min_free_bytes() free
 *   leveldb_open(create_if_missing, paranoid_checks)
 *                                   a second open of the same dir fails here
 *                                   with LevelDB's LOCK error; a corrupt
 *                                   MANIFEST or log record refuses (without
 *                                   paranoid_checks LevelDB skips a corrupt
 *                                   log record, acknowledged writes with it)
 *   "X format" present?
 *     no,  database empty     -> new store: write X format = "1" and
 *                                X key_groups = u32be 4096 in one synced batch
 *     no,  database not empty -> refuse: not a statemesh store
 *     yes                     -> must be "1", and X key_groups must be 4096
 *
 * Keys are built on the stack (KEY_STACK bytes covers every valid address:
 * type <= 256, id <= 1024, state name <= 128) and on the heap beyond that.
 * Meta keys are 'X' followed directly by the name: "Xformat", "Xkey_groups".
 *
 * Errors at the LevelDB edge: its messages ("Corruption: block checksum
 * mismatch", "IO error: PATH: No space left on device") say what but, for
 * corruption, not where. describe() adds where: for a read or scan, the
 * table files whose key range covers the tag read (LevelDB's
 * "leveldb.sstables" property); for an open, the log LevelDB was replaying
 * (its own LOG file: "Recovering log #N") or else the MANIFEST named by
 * CURRENT. The result is kept in last_err for the loop thread's caller
 * (store_last_error()); the state filter's thread only logs.
 *
 * The store does no writing of its own after open; store_write() is the one
 * path to disk, which is also where fault injection sits: the counter of
 * store_write() calls lives in the store, so two stores in one process
 * (tests) count independently.
 */
#include "store.h"

#include <errno.h>
#include <leveldb/c.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <xxhash.h>

#include "sfilter.h"
#include "statemesh/v1/storage.pb-c.h"

#define KEY_STACK 1536
#define DELAYED_KEY_LEN 19           /* 'D' kg:2 due:8 seq:8 */
#define DELAYED_KEY_LEN_V1 17        /* 'D' due:8 seq:8 (format 1) */
#define KEY_MAX (64u * 1024)          /* longer keys on disk are treated as corrupt */
#define DEFAULT_CACHE (8u * 1024 * 1024)
#define DEFAULT_WRITE_BUFFER (4u * 1024 * 1024)
#define BLOOM_BITS 10
#define META_FORMAT "format"
#define META_KEY_GROUPS "key_groups"
#define FAULT_ENV "STATEMESH_FAULT_WRITE_FAIL_AFTER"
#define SCAN_PROGRESS_MS 5000
#define MIN_FREE_FLOOR (1u << 20)
#define HINT_REPAIR "restore a savepoint, or run `statemeshd --repair -c FILE` (it may lose or " \
                    "resurrect data: docs/operations-disk.md)"

enum filter_state { FILTER_OFF = 0, FILTER_BUILDING, FILTER_READY, FILTER_FAILED };

struct store {
    leveldb_t *db;
    leveldb_options_t *opt;
    leveldb_filterpolicy_t *bloom;     /* not owned by opt: destroyed after close */
    leveldb_cache_t *cache;            /* likewise */
    leveldb_readoptions_t *ro;         /* point reads and state scans */
    leveldb_readoptions_t *ro_bulk;    /* recovery scans: do not fill the cache */
    leveldb_writeoptions_t *wo_sync;
    leveldb_writeoptions_t *wo_nosync;
    const struct log *lg;              /* not owned; NULL = silent */
    char *dir;
    char last_err[1024];               /* describe() of the last failure; loop thread */
    bool opened;                       /* fully open: store_close() logs */
    bool fault_armed;
    unsigned long long fault_after;    /* store_write() calls that succeed */
    unsigned long long n_writes;       /* store_write() calls so far */
    /* The state filter (sfilter.h): built from the S range by a thread
     * started at open, fed by store_write(); consulted once READY. */
    struct sfilter filter;
    pthread_t scan_thread;
    bool scan_started;
    atomic_int filter_state;           /* enum filter_state */
    atomic_bool scan_stop;
    _Atomic uint64_t filter_scanned;   /* keys the scan has added */
    _Atomic int64_t filter_scan_ms;    /* how long the scan took, once READY */
    uint64_t filter_skips;             /* reads answered by the filter */
};

struct store_batch {
    leveldb_writebatch_t *wb;
    size_t count;
    size_t bytes;
    uint64_t *state_hashes;            /* filter hashes of the S keys put */
    size_t nstate, capstate;
};

/* ---- keys ----------------------------------------------------------------- */

struct key {
    char *p;
    size_t len;
    char *heap;
    char stack[KEY_STACK];
};

static void key_init(struct key *k, size_t need)
{
    k->len = 0;
    k->heap = NULL;
    k->p = k->stack;
    if (need > sizeof k->stack) {
        k->heap = malloc(need);
        if (k->heap == NULL) SM_PANIC("store: out of memory building a key");
        k->p = k->heap;
    }
}

static void key_free(struct key *k)
{
    free(k->heap);
    k->heap = NULL;
}

static void key_add(struct key *k, const void *b, size_t n)
{
    memcpy(k->p + k->len, b, n);
    k->len += n;
}

static void put_u16be(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_u64be(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

static uint64_t get_u64be(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

static uint32_t get_u32be(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

uint16_t store_key_group(const char *type, const char *id)
{
    size_t tl = strlen(type), il = strlen(id);
    struct key k;
    uint16_t kg;

    key_init(&k, tl + 1 + il);
    key_add(&k, type, tl);
    key_add(&k, "", 1);
    key_add(&k, id, il);
    kg = (uint16_t)(XXH3_64bits(k.p, k.len) % STORE_KEY_GROUPS);
    key_free(&k);
    return kg;
}

/* tag kg type '\0' id '\0' followed by `extra` bytes still to be added. */
static void key_address(struct key *k, char tag, const char *type, const char *id, size_t extra)
{
    size_t tl = strlen(type), il = strlen(id);
    uint8_t kg[2];

    key_init(k, 1 + 2 + tl + 1 + il + 1 + extra);
    put_u16be(kg, store_key_group(type, id));
    key_add(k, &tag, 1);
    key_add(k, kg, 2);
    key_add(k, type, tl);
    key_add(k, "", 1);
    key_add(k, id, il);
    key_add(k, "", 1);
}

static void key_state(struct key *k, const char *type, const char *id, const char *name)
{
    size_t nl = strlen(name);
    key_address(k, 'S', type, id, nl);
    key_add(k, name, nl);
}

static void key_message(struct key *k, const char *type, const char *id, uint64_t seq)
{
    uint8_t be[8];
    put_u64be(be, seq);
    key_address(k, 'M', type, id, 8);
    key_add(k, be, 8);
}

static void key_pause(struct key *k, const char *type, const char *id)
{
    key_address(k, 'P', type, id, 0);
}

static void key_delayed(struct key *k, uint16_t kg, int64_t due_ms, uint64_t seq)
{
    uint8_t be[18];
    put_u16be(be, kg);
    put_u64be(be + 2, (uint64_t)due_ms);
    put_u64be(be + 10, seq);
    key_init(k, 1 + sizeof be);
    key_add(k, "D", 1);
    key_add(k, be, sizeof be);
}

static void key_egress(struct key *k, const char *egress, uint64_t offset)
{
    size_t nl = strlen(egress);
    uint8_t be[8];
    put_u64be(be, offset);
    key_init(k, 1 + nl + 1 + 8);
    key_add(k, "E", 1);
    key_add(k, egress, nl);
    key_add(k, "", 1);
    key_add(k, be, 8);
}

static void key_idem(struct key *k, const char *type, const char *id, const char *ikey)
{
    size_t nl = strlen(ikey);
    key_address(k, 'I', type, id, nl);
    key_add(k, ikey, nl);
}

static void key_legacy_idem(struct key *k, const char *ikey)
{
    size_t nl = strlen(ikey);
    key_init(k, 1 + nl);
    key_add(k, "J", 1);
    key_add(k, ikey, nl);
}

static void key_deadletter(struct key *k, uint64_t id)
{
    uint8_t be[8];
    put_u64be(be, id);
    key_init(k, 9);
    key_add(k, "L", 1);
    key_add(k, be, 8);
}

static void key_meta(struct key *k, const char *name)
{
    size_t nl = strlen(name);
    key_init(k, 1 + nl);
    key_add(k, "X", 1);
    key_add(k, name, nl);
}

/* ---- errors --------------------------------------------------------------- */

static void log_failure(const struct store *s, const char *event, const char *msg)
{
    char qdir[512], qerr[1024];

    if (s->lg == NULL) return;
    LOG_ERROR(s->lg, event, "dir=%s err=%s", log_quote(qdir, sizeof qdir, s->dir),
              log_quote(qerr, sizeof qerr, msg));
}

/* Appends the table files whose key range covers keys starting with `tag`
 * to out (comma-separated); "" when none or unknown. The property reads
 *   " 5:2227['M\x00...' @ 1 : 1 .. 'X...' @ 300 : 1]"  per file. */
static void tables_for_tag(struct store *s, char tag, char *out, size_t outlen)
{
    char *p = leveldb_property_value(s->db, "leveldb.sstables");
    size_t used = 0;

    out[0] = '\0';
    for (char *line = p, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        unsigned long long num, size;
        char lo, hi;
        const char *dots;
        int n;

        nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        if (sscanf(line, " %llu:%llu['%c", &num, &size, &lo) != 3) continue;
        if ((dots = strstr(line, " .. '")) == NULL || (hi = dots[5]) == '\0') continue;
        if (tag < lo || tag > hi) continue;
        n = snprintf(out + used, outlen - used, "%s%06llu.ldb", used ? "," : "", num);
        if (n < 0 || (size_t)n >= outlen - used) break;
        used += (size_t)n;
    }
    if (p) leveldb_free(p);
}

/* After leveldb_open failed on a corruption: the file LevelDB was reading.
 * Its LOG says "Recovering log #N" before replaying a log; without such a
 * line the version set (the MANIFEST named by CURRENT) failed. Best effort. */
static void open_corrupt_file(const char *dir, char *out, size_t outlen)
{
    char path[4200], line[512];
    unsigned long long num = 0;
    bool log_seen = false;
    FILE *f;

    out[0] = '\0';
    snprintf(path, sizeof path, "%s/LOG", dir);
    if ((f = fopen(path, "r")) != NULL) {
        while (fgets(line, sizeof line, f)) {
            const char *r = strstr(line, "Recovering log #");
            if (r && sscanf(r, "Recovering log #%llu", &num) == 1) log_seen = true;
        }
        fclose(f);
    }
    if (log_seen) {
        snprintf(out, outlen, "%06llu.log", num);
        return;
    }
    snprintf(path, sizeof path, "%s/CURRENT", dir);
    if ((f = fopen(path, "r")) != NULL) {
        if (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\r\n")] = '\0';
            snprintf(out, outlen, "%.200s", line);
        }
        fclose(f);
    }
}

/* Translates a LevelDB error into s->last_err (see the top of the file).
 * tag: the key kind being read, 0 = opening, -1 = unknown/writing. */
static void describe(struct store *s, const char *lerr, int tag, char *files, size_t flen)
{
    files[0] = '\0';
    if (strncmp(lerr, "Corruption", 10) != 0) {
        snprintf(s->last_err, sizeof s->last_err, "the store in %s failed: %s", s->dir, lerr);
        return;
    }
    if (tag == 0) open_corrupt_file(s->dir, files, flen);
    else if (tag > 0 && s->db) tables_for_tag(s, (char)tag, files, flen);
    snprintf(s->last_err, sizeof s->last_err, "the store in %s is corrupt%s%s (LevelDB: %s); %s",
             s->dir, files[0] ? ": damaged file " : "", files, lerr, HINT_REPAIR);
}

/* Logs a LevelDB error string, records it for store_last_error() and
 * releases it. Loop thread only (see filter_scan for the other). */
static void ldb_failure(struct store *s, const char *event, char **lerr, int tag)
{
    char files[256], qdir[512], qerr[1024], qfiles[300];

    describe(s, *lerr, tag, files, sizeof files);
    if (s->lg != NULL) {
        if (files[0])
            LOG_ERROR(s->lg, event, "dir=%s err=%s files=%s", log_quote(qdir, sizeof qdir, s->dir),
                      log_quote(qerr, sizeof qerr, *lerr), log_quote(qfiles, sizeof qfiles, files));
        else
            log_failure(s, event, *lerr);
    }
    leveldb_free(*lerr);
    *lerr = NULL;
}

const char *store_last_error(const struct store *s)
{
    return s->last_err[0] ? s->last_err : "no error recorded";
}

size_t store_min_free_bytes(const struct store_options *opt)
{
    size_t wb = opt && opt->write_buffer_bytes ? opt->write_buffer_bytes : DEFAULT_WRITE_BUFFER;
    return wb > MIN_FREE_FLOOR ? wb : MIN_FREE_FLOOR;
}

/* ---- batches -------------------------------------------------------------- */

struct store_batch *store_batch_create(void)
{
    struct store_batch *b = calloc(1, sizeof *b);
    if (b == NULL) return NULL;
    b->wb = leveldb_writebatch_create();
    return b;
}

void store_batch_destroy(struct store_batch **bp)
{
    if (bp == NULL || *bp == NULL) return;
    leveldb_writebatch_destroy((*bp)->wb);
    free((*bp)->state_hashes);
    free(*bp);
    *bp = NULL;
}

void store_batch_clear(struct store_batch *b)
{
    leveldb_writebatch_clear(b->wb);
    b->count = 0;
    b->bytes = 0;
    b->nstate = 0;
}

size_t store_batch_count(const struct store_batch *b) { return b->count; }
size_t store_batch_bytes(const struct store_batch *b) { return b->bytes; }

static void batch_put(struct store_batch *b, struct key *k, const void *val, size_t len)
{
    leveldb_writebatch_put(b->wb, k->p, k->len, val ? (const char *)val : "", len);
    b->count++;
    b->bytes += k->len + len;
    key_free(k);
}

static void batch_delete(struct store_batch *b, struct key *k)
{
    leveldb_writebatch_delete(b->wb, k->p, k->len);
    b->count++;
    b->bytes += k->len;
    key_free(k);
}

/* The state filter (sfilter.h) holds the hash of every S key, of every
 * I key, and of the address marker of each (the S key prefix 'S' kg type
 * '\0' id '\0', no real key since names are never empty): "this address
 * may have had state or idempotency records". The hashes of a
 * batch's keys are added by store_write(). */
static void batch_filter_add(struct store_batch *b, uint64_t hash)
{
    if (b->nstate == b->capstate) {
        size_t cap = b->capstate ? b->capstate * 2 : 256;
        uint64_t *h = realloc(b->state_hashes, cap * sizeof *h);
        if (h == NULL) SM_PANIC("store: out of memory in a checkpoint batch");
        b->state_hashes = h;
        b->capstate = cap;
    }
    b->state_hashes[b->nstate++] = hash;
}

/* Length of the address part ('S' kg type '\0' id '\0') of an S key, 0 if
 * malformed. */
static size_t state_key_prefix(const char *k, size_t klen)
{
    const char *a, *b;
    if (klen < 3) return 0;
    a = memchr(k + 3, '\0', klen - 3);
    if (!a) return 0;
    b = memchr(a + 1, '\0', klen - (size_t)(a + 1 - k));
    return b ? (size_t)(b + 1 - k) : 0;
}

/* The hash of the address marker of an S or I key (0 if malformed). */
static uint64_t marker_hash(const char *k, size_t klen)
{
    size_t pl = state_key_prefix(k, klen);
    char stack[512], *buf;
    uint64_t h;
    if (!pl) return 0;
    if (k[0] == 'S') return sfilter_hash(k, pl);
    buf = pl <= sizeof stack ? stack : malloc(pl);
    if (!buf) SM_PANIC("store: out of memory");
    memcpy(buf, k, pl);
    buf[0] = 'S';
    h = sfilter_hash(buf, pl);
    if (buf != stack) free(buf);
    return h;
}

void store_batch_put_state(struct store_batch *b, const char *type, const char *id,
                           const char *name, const void *val, size_t len)
{
    struct key k;
    key_state(&k, type, id, name);
    batch_filter_add(b, sfilter_hash(k.p, k.len));
    batch_filter_add(b, sfilter_hash(k.p, k.len - strlen(name)));    /* the address marker */
    batch_put(b, &k, val, len);
}

void store_batch_delete_state(struct store_batch *b, const char *type, const char *id,
                              const char *name)
{
    struct key k;
    key_state(&k, type, id, name);
    batch_delete(b, &k);
}

void store_batch_put_message(struct store_batch *b, const char *type, const char *id,
                             uint64_t seq, const void *val, size_t len)
{
    struct key k;
    key_message(&k, type, id, seq);
    batch_put(b, &k, val, len);
}

void store_batch_delete_message(struct store_batch *b, const char *type, const char *id,
                                uint64_t seq)
{
    struct key k;
    key_message(&k, type, id, seq);
    batch_delete(b, &k);
}

void store_batch_put_pause(struct store_batch *b, const char *type, const char *id,
                           const void *val, size_t len)
{
    struct key k;
    key_pause(&k, type, id);
    batch_put(b, &k, val, len);
}

void store_batch_delete_pause(struct store_batch *b, const char *type, const char *id)
{
    struct key k;
    key_pause(&k, type, id);
    batch_delete(b, &k);
}

void store_batch_put_meta(struct store_batch *b, const char *name, const void *val, size_t len)
{
    struct key k;
    key_meta(&k, name);
    batch_put(b, &k, val, len);
}

void store_batch_put_delayed(struct store_batch *b, uint16_t kg, int64_t due_ms, uint64_t seq,
                             const void *val, size_t len)
{
    struct key k;
    key_delayed(&k, kg, due_ms, seq);
    batch_put(b, &k, val, len);
}

void store_batch_delete_delayed(struct store_batch *b, uint16_t kg, int64_t due_ms, uint64_t seq)
{
    struct key k;
    key_delayed(&k, kg, due_ms, seq);
    batch_delete(b, &k);
}

void store_batch_put_egress(struct store_batch *b, const char *egress, uint64_t offset,
                            const void *val, size_t len)
{
    struct key k;
    key_egress(&k, egress, offset);
    batch_put(b, &k, val, len);
}

void store_batch_delete_egress(struct store_batch *b, const char *egress, uint64_t offset)
{
    struct key k;
    key_egress(&k, egress, offset);
    batch_delete(b, &k);
}

void store_batch_put_idem(struct store_batch *b, const char *type, const char *id,
                          const char *ikey, const void *val, size_t len)
{
    struct key k, m;
    key_address(&m, 'S', type, id, 0);                 /* the address marker too */
    batch_filter_add(b, sfilter_hash(m.p, m.len));
    key_free(&m);
    key_idem(&k, type, id, ikey);
    batch_filter_add(b, sfilter_hash(k.p, k.len));
    batch_put(b, &k, val, len);
}

void store_batch_put_legacy_idem(struct store_batch *b, const char *ikey, const void *val,
                                 size_t len)
{
    struct key k;
    key_legacy_idem(&k, ikey);
    batch_put(b, &k, val, len);
}

void store_batch_put_deadletter(struct store_batch *b, uint64_t id, const void *val, size_t len)
{
    struct key k;
    key_deadletter(&k, id);
    batch_put(b, &k, val, len);
}

void store_batch_delete_deadletter(struct store_batch *b, uint64_t id)
{
    struct key k;
    key_deadletter(&k, id);
    batch_delete(b, &k);
}

void store_batch_put_raw(struct store_batch *b, const void *key, size_t klen, const void *val,
                         size_t len)
{
    struct key k;
    key_init(&k, klen);
    key_add(&k, key, klen);
    if (klen && (k.p[0] == 'S' || k.p[0] == 'I')) {   /* keep the state filter complete */
        uint64_t mh = marker_hash(k.p, k.len);
        batch_filter_add(b, sfilter_hash(k.p, k.len));
        if (mh) batch_filter_add(b, mh);
    }
    batch_put(b, &k, val, len);
}

void store_batch_delete_raw(struct store_batch *b, const void *key, size_t klen)
{
    leveldb_writebatch_delete(b->wb, key, klen);
    b->count++;
    b->bytes += klen;
}

int store_write(struct store *s, struct store_batch *b, bool sync)
{
    char *lerr = NULL;

    s->n_writes++;
    if (s->fault_armed && s->n_writes > s->fault_after) {
        log_failure(s, "store.write_failed", "injected fault (" FAULT_ENV ")");
        snprintf(s->last_err, sizeof s->last_err, "the store in %s failed: injected fault (%s)",
                 s->dir, FAULT_ENV);
        return -EIO;
    }
    /* Before the write, so no read can find the key on disk but not here;
     * if the write fails the extra bits are harmless false positives. */
    for (size_t i = 0; i < b->nstate; i++) sfilter_add(&s->filter, b->state_hashes[i]);
    leveldb_write(s->db, sync ? s->wo_sync : s->wo_nosync, b->wb, &lerr);
    if (lerr) {
        ldb_failure(s, "store.write_failed", &lerr, -1);
        return -EIO;
    }
    return 0;
}

/* ---- reads ---------------------------------------------------------------- */

/* Point read of key k (consumed). 0 + malloc'd copy, 1 absent, <0 error. */
static int get_key(struct store *s, struct key *k, uint8_t **val, size_t *len)
{
    char *lerr = NULL;
    size_t vlen = 0;
    char *v;
    int rc;

    *val = NULL;
    *len = 0;
    char tag = k->len ? k->p[0] : 0;

    v = leveldb_get(s->db, s->ro, k->p, k->len, &vlen, &lerr);
    key_free(k);
    if (lerr) {
        ldb_failure(s, "store.read_failed", &lerr, tag);
        return -EIO;
    }
    if (v == NULL) return 1;
    rc = 0;
    *val = malloc(vlen ? vlen : 1);
    if (*val == NULL) {
        rc = -ENOMEM;
    } else {
        memcpy(*val, v, vlen);
        *len = vlen;
    }
    leveldb_free(v);
    return rc;
}

int store_get_state(struct store *s, const char *type, const char *id, const char *name,
                    uint8_t **val, size_t *len)
{
    struct key k;
    key_state(&k, type, id, name);
    if (atomic_load_explicit(&s->filter_state, memory_order_acquire) == FILTER_READY &&
        !sfilter_may_contain(&s->filter, sfilter_hash(k.p, k.len))) {
        key_free(&k);
        *val = NULL;
        *len = 0;
        s->filter_skips++;
        return 1;
    }
    return get_key(s, &k, val, len);
}

static bool filter_says_absent(struct store *s, const char *key, size_t len)
{
    return atomic_load_explicit(&s->filter_state, memory_order_acquire) == FILTER_READY &&
           !sfilter_may_contain(&s->filter, sfilter_hash(key, len));
}

bool store_no_state(struct store *s, const char *type, const char *id)
{
    struct key k;
    bool absent;
    key_address(&k, 'S', type, id, 0);
    absent = filter_says_absent(s, k.p, k.len);
    key_free(&k);
    if (absent) s->filter_skips++;
    return absent;
}

bool store_no_idem(struct store *s, const char *type, const char *id, const char *ikey)
{
    struct key k;
    bool absent;
    key_idem(&k, type, id, ikey);
    absent = filter_says_absent(s, k.p, k.len);
    key_free(&k);
    if (absent) s->filter_skips++;
    return absent;
}

void store_filter_stats(const struct store *s, struct store_filter_stats *out)
{
    int st = atomic_load_explicit(&s->filter_state, memory_order_acquire);
    out->bytes = sfilter_bytes(&s->filter);
    out->ready = st == FILTER_READY;
    out->scanned = atomic_load_explicit(&s->filter_scanned, memory_order_relaxed);
    out->scan_ms = st == FILTER_READY ? atomic_load_explicit(&s->filter_scan_ms, memory_order_relaxed) : 0;
    out->skips = s->filter_skips;
}

int store_get_meta(struct store *s, const char *name, uint8_t **val, size_t *len)
{
    struct key k;
    key_meta(&k, name);
    return get_key(s, &k, val, len);
}

/* Reusable NUL-terminated copy buffer for keys handed to callbacks. */
struct scratch {
    char *p;
    size_t cap;
};

static char *scratch_copy(struct scratch *sc, const char *b, size_t n)
{
    if (n + 1 > sc->cap) {
        size_t cap = sc->cap ? sc->cap : 256;
        char *np;
        while (cap < n + 1) cap *= 2;
        np = realloc(sc->p, cap);
        if (np == NULL) return NULL;
        sc->p = np;
        sc->cap = cap;
    }
    memcpy(sc->p, b, n);
    sc->p[n] = '\0';
    return sc->p;
}

/* Checks the iterator for an error after a scan of the `tag` range;
 * destroys it. */
static int iter_finish(struct store *s, leveldb_iterator_t *it, int rc, char tag)
{
    char *lerr = NULL;

    leveldb_iter_get_error(it, &lerr);
    if (lerr) {
        ldb_failure(s, "store.scan_failed", &lerr, tag);
        if (rc == 0) rc = -EIO;
    }
    leveldb_iter_destroy(it);
    return rc;
}

int store_scan_states(struct store *s, const char *type, const char *id, store_state_fn fn,
                      void *arg)
{
    struct key prefix;
    struct scratch name = {0};
    leveldb_iterator_t *it;
    int rc = 0;

    key_address(&prefix, 'S', type, id, 0);
    it = leveldb_create_iterator(s->db, s->ro);
    for (leveldb_iter_seek(it, prefix.p, prefix.len); leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = leveldb_iter_key(it, &klen);
        const char *v;
        const char *n;

        if (klen < prefix.len || memcmp(k, prefix.p, prefix.len) != 0) break;
        v = leveldb_iter_value(it, &vlen);
        n = scratch_copy(&name, k + prefix.len, klen - prefix.len);
        if (n == NULL) {
            rc = -ENOMEM;
            break;
        }
        if (fn(arg, n, (const uint8_t *)v, vlen) != 0) break;
    }
    key_free(&prefix);
    free(name.p);
    return iter_finish(s, it, rc, 'S');
}

int store_scan_messages(struct store *s, store_message_fn fn, void *arg)
{
    struct scratch buf = {0};
    leveldb_iterator_t *it;
    int rc = 0;

    it = leveldb_create_iterator(s->db, s->ro_bulk);
    for (leveldb_iter_seek(it, "M", 1); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = leveldb_iter_key(it, &klen);
        const char *v, *type_end, *id_end;
        char *copy;

        if (klen == 0 || k[0] != 'M') break;
        /* 'M' kg:2 type '\0' id '\0' seq:8 */
        type_end = klen > KEY_MAX || klen < 3 + 2 + 2 + 8 ? NULL
                                                         : memchr(k + 3, '\0', klen - 3 - 8);
        id_end = type_end ? memchr(type_end + 1, '\0', (size_t)(k + klen - 8 - (type_end + 1)))
                          : NULL;
        if (type_end == NULL || id_end == NULL || id_end != k + klen - 9) {
            log_failure(s, "store.corrupt_key", "malformed message key in the M range");
            rc = -EIO;
            break;
        }
        copy = scratch_copy(&buf, k, klen);
        if (copy == NULL) {
            rc = -ENOMEM;
            break;
        }
        v = leveldb_iter_value(it, &vlen);
        if (fn(arg, copy + 3, copy + (type_end + 1 - k), get_u64be((const uint8_t *)k + klen - 8),
               (const uint8_t *)v, vlen) != 0)
            break;
    }
    free(buf.p);
    return iter_finish(s, it, rc, 'M');
}

int store_scan_pauses(struct store *s, store_pause_fn fn, void *arg)
{
    struct scratch buf = {0};
    leveldb_iterator_t *it;
    int rc = 0;

    it = leveldb_create_iterator(s->db, s->ro_bulk);
    for (leveldb_iter_seek(it, "P", 1); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = leveldb_iter_key(it, &klen);
        const char *v, *type_end;
        char *copy;

        if (klen == 0 || k[0] != 'P') break;
        /* 'P' kg:2 type '\0' id '\0' */
        type_end = klen > KEY_MAX || klen < 3 + 2 + 2 ? NULL : memchr(k + 3, '\0', klen - 3);
        if (type_end == NULL || k[klen - 1] != '\0' || type_end + 1 >= k + klen - 1 ||
            memchr(type_end + 1, '\0', (size_t)(k + klen - 1 - (type_end + 1)))) {
            log_failure(s, "store.corrupt_key", "malformed pause key in the P range");
            rc = -EIO;
            break;
        }
        copy = scratch_copy(&buf, k, klen);
        if (copy == NULL) {
            rc = -ENOMEM;
            break;
        }
        v = leveldb_iter_value(it, &vlen);
        if (fn(arg, copy + 3, copy + (type_end + 1 - k), (const uint8_t *)v, vlen) != 0) break;
    }
    free(buf.p);
    return iter_finish(s, it, rc, 'P');
}

int store_get_delayed(struct store *s, uint16_t kg, int64_t due_ms, uint64_t seq, uint8_t **val,
                      size_t *len)
{
    struct key k;
    key_delayed(&k, kg, due_ms, seq);
    return get_key(s, &k, val, len);
}

int store_get_idem(struct store *s, const char *type, const char *id, const char *ikey,
                   uint8_t **val, size_t *len)
{
    struct key k;
    key_idem(&k, type, id, ikey);
    return get_key(s, &k, val, len);
}

int store_get_legacy_idem(struct store *s, const char *ikey, uint8_t **val, size_t *len)
{
    struct key k;
    key_legacy_idem(&k, ikey);
    return get_key(s, &k, val, len);
}

int store_has_kind(struct store *s, char tag)
{
    leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ro_bulk);
    int found = 0;

    leveldb_iter_seek(it, &tag, 1);
    if (leveldb_iter_valid(it)) {
        size_t klen;
        const char *k = leveldb_iter_key(it, &klen);
        found = klen > 0 && k[0] == tag;
    }
    return iter_finish(s, it, found, tag);
}

int store_scan_delayed(struct store *s, store_delayed_fn fn, void *arg)
{
    leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ro_bulk);
    int rc = 0;

    for (leveldb_iter_seek(it, "D", 1); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = leveldb_iter_key(it, &klen);
        const char *v;
        if (klen == 0 || k[0] != 'D') break;
        if (klen != DELAYED_KEY_LEN) {
            log_failure(s, "store.corrupt_key", "malformed key in the D range");
            rc = -EIO;
            break;
        }
        v = leveldb_iter_value(it, &vlen);
        if (fn(arg, (uint16_t)(((uint8_t)k[1] << 8) | (uint8_t)k[2]),
               (int64_t)get_u64be((const uint8_t *)k + 3), get_u64be((const uint8_t *)k + 11),
               (const uint8_t *)v, vlen) != 0)
            break;
    }
    return iter_finish(s, it, rc, 'D');
}

int store_scan_deadletters(struct store *s, uint64_t after_id, store_deadletter_fn fn, void *arg)
{
    struct key start;
    leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ro_bulk);
    int rc = 0;

    key_deadletter(&start, after_id == UINT64_MAX ? after_id : after_id + 1);
    for (leveldb_iter_seek(it, start.p, start.len); leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = leveldb_iter_key(it, &klen);
        const char *v;
        if (klen == 0 || k[0] != 'L') break;
        if (klen != 9) {
            log_failure(s, "store.corrupt_key", "malformed key in the L range");
            rc = -EIO;
            break;
        }
        v = leveldb_iter_value(it, &vlen);
        if (fn(arg, get_u64be((const uint8_t *)k + 1), (const uint8_t *)v, vlen) != 0) break;
    }
    key_free(&start);
    return iter_finish(s, it, rc, 'L');
}

int store_scan_egress(struct store *s, const char *egress, uint64_t from_offset,
                      store_egress_fn fn, void *arg)
{
    struct key start;
    size_t plen = 1 + strlen(egress) + 1;
    leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ro_bulk);
    int rc = 0;

    key_egress(&start, egress, from_offset);
    for (leveldb_iter_seek(it, start.p, start.len); leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = leveldb_iter_key(it, &klen);
        const char *v;
        if (klen != plen + 8 || memcmp(k, start.p, plen) != 0) break;
        v = leveldb_iter_value(it, &vlen);
        if (fn(arg, get_u64be((const uint8_t *)k + plen), (const uint8_t *)v, vlen) != 0) break;
    }
    key_free(&start);
    return iter_finish(s, it, rc, 'E');
}

int store_egress_bounds(struct store *s, const char *egress, uint64_t *first, uint64_t *last)
{
    struct key k;
    size_t plen = 1 + strlen(egress) + 1;
    leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ro);
    int rc = 1;
    size_t klen;
    const char *kp;

    key_egress(&k, egress, 0);
    leveldb_iter_seek(it, k.p, k.len);
    if (leveldb_iter_valid(it)) {
        kp = leveldb_iter_key(it, &klen);
        if (klen == plen + 8 && memcmp(kp, k.p, plen) == 0) {
            *first = get_u64be((const uint8_t *)kp + plen);
            key_free(&k);
            key_egress(&k, egress, UINT64_MAX);
            leveldb_iter_seek(it, k.p, k.len);
            if (leveldb_iter_valid(it)) {
                kp = leveldb_iter_key(it, &klen);
                if (klen == plen + 8 && memcmp(kp, k.p, plen) == 0) {
                    *last = UINT64_MAX;   /* the last possible key itself */
                    rc = 0;
                } else {
                    leveldb_iter_prev(it);
                }
            } else {
                leveldb_iter_seek_to_last(it);
            }
            if (rc != 0 && leveldb_iter_valid(it)) {
                kp = leveldb_iter_key(it, &klen);
                if (klen == plen + 8 && memcmp(kp, k.p, plen) == 0) {
                    *last = get_u64be((const uint8_t *)kp + plen);
                    rc = 0;
                }
            }
        }
    }
    key_free(&k);
    return iter_finish(s, it, rc, 'E');
}

int store_sweep(struct store *s, char tag, struct store_cursor *cur, size_t max,
                store_raw_fn fn, void *arg)
{
    leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ro_bulk);
    size_t n = 0;
    int rc = 0;

    if (cur->key) {
        leveldb_iter_seek(it, cur->key, cur->len);
        if (leveldb_iter_valid(it)) {
            size_t klen;
            const char *k = leveldb_iter_key(it, &klen);
            if (klen == cur->len && memcmp(k, cur->key, klen) == 0) leveldb_iter_next(it);
        }
    } else {
        leveldb_iter_seek(it, &tag, 1);
    }
    for (; n < max && leveldb_iter_valid(it); leveldb_iter_next(it), n++) {
        size_t klen, vlen;
        const char *k = leveldb_iter_key(it, &klen);
        const char *v;
        char *copy;
        if (klen == 0 || k[0] != tag) break;
        copy = realloc(cur->key, klen);
        if (!copy) {
            rc = -ENOMEM;
            break;
        }
        memcpy(copy, k, klen);
        cur->key = copy;
        cur->len = klen;
        v = leveldb_iter_value(it, &vlen);
        if (fn(arg, k, klen, (const uint8_t *)v, vlen) != 0) break;
    }
    if (n < max && rc == 0) store_cursor_free(cur);     /* end of range: wrap */
    return iter_finish(s, it, rc, tag);
}

void store_cursor_free(struct store_cursor *cur)
{
    free(cur->key);
    cur->key = NULL;
    cur->len = 0;
}

int store_state_key_address(const char *key, size_t klen, char *buf, const char **type,
                            const char **id)
{
    const char *te, *ie;
    if (klen < 3 + 2 + 2 || key[0] != 'S') return -1;
    memcpy(buf, key, klen);
    buf[klen] = '\0';
    te = memchr(buf + 3, '\0', klen - 3);
    if (!te || te + 1 >= buf + klen) return -1;
    ie = memchr(te + 1, '\0', (size_t)(buf + klen - (te + 1)));
    if (!ie || ie == te + 1) return -1;
    *type = buf + 3;
    *id = te + 1;
    return 0;
}

/* ---- snapshots ------------------------------------------------------------- */

struct store_snapshot {
    const leveldb_snapshot_t *snap;
    leveldb_readoptions_t *ro;
};

struct store_snapshot *store_snapshot_take(struct store *s)
{
    struct store_snapshot *sn = calloc(1, sizeof *sn);
    if (!sn) return NULL;
    sn->snap = leveldb_create_snapshot(s->db);
    sn->ro = leveldb_readoptions_create();
    leveldb_readoptions_set_verify_checksums(sn->ro, 1);
    leveldb_readoptions_set_fill_cache(sn->ro, 0);
    leveldb_readoptions_set_snapshot(sn->ro, sn->snap);
    return sn;
}

void store_snapshot_release(struct store *s, struct store_snapshot **snp)
{
    struct store_snapshot *sn = *snp;
    if (!sn) return;
    leveldb_readoptions_destroy(sn->ro);
    leveldb_release_snapshot(s->db, sn->snap);
    free(sn);
    *snp = NULL;
}

int store_snapshot_scan(struct store *s, const struct store_snapshot *sn, const void *lo,
                        size_t lolen, const void *hi, size_t hilen, store_raw_fn fn, void *arg,
                        char *err, size_t errlen)
{
    leveldb_iterator_t *it = leveldb_create_iterator(s->db, sn->ro);
    char *lerr = NULL;
    int rc = 0;

    for (leveldb_iter_seek(it, lo, lolen); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t klen, vlen, n;
        const char *k = leveldb_iter_key(it, &klen);
        const char *v;
        if (hi) {
            n = klen < hilen ? klen : hilen;
            int c = memcmp(k, hi, n);
            if (c > 0 || (c == 0 && klen >= hilen)) break;
        }
        v = leveldb_iter_value(it, &vlen);
        if ((rc = fn(arg, k, klen, (const uint8_t *)v, vlen)) != 0) break;
    }
    leveldb_iter_get_error(it, &lerr);
    leveldb_iter_destroy(it);
    if (lerr) {
        snprintf(err, errlen, "reading the store in %s failed: %s", s->dir, lerr);
        leveldb_free(lerr);
        return -EIO;
    }
    return rc;
}

/* ---- the state filter's startup scan --------------------------------------- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Adds every S key on disk (and its address marker), then every I key, to the
 * filter, then marks it READY. Keys written
 * meanwhile are added by store_write(); the iterator sees the database as
 * of its creation, and every later write goes through store_write(), so
 * together they cover every key. Stops early (the filter stays unused)
 * when the store closes or the scan fails. */
static void *filter_scan(void *arg)
{
    struct store *s = arg;
    leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ro_bulk);
    int64_t t0 = mono_ms(), last = t0;
    uint64_t n = 0;
    char *lerr = NULL;
    static const char tags[2] = {'S', 'I'};
    bool stopped = false;
    size_t plen = 0;
    char prev[3 + 2 * 1100];             /* the last address marker added */

    for (int t = 0; t < 2 && !stopped; t++) {
        for (leveldb_iter_seek(it, &tags[t], 1); leveldb_iter_valid(it); leveldb_iter_next(it)) {
            size_t klen, pl;
            const char *k = leveldb_iter_key(it, &klen);
            if (klen == 0 || k[0] != tags[t]) break;
            sfilter_add(&s->filter, sfilter_hash(k, klen));
            if ((pl = state_key_prefix(k, klen)) != 0 &&
                !(pl == plen && prev[0] == k[0] && memcmp(prev + 1, k + 1, pl - 1) == 0)) {
                sfilter_add(&s->filter, marker_hash(k, klen));
                plen = pl <= sizeof prev ? pl : 0;
                if (plen) memcpy(prev, k, pl);
            }
            if ((++n & 4095) != 0) continue;
            atomic_store_explicit(&s->filter_scanned, n, memory_order_relaxed);
            if (atomic_load(&s->scan_stop)) {
                stopped = true;
                break;
            }
            if (mono_ms() - last >= SCAN_PROGRESS_MS) {
                last = mono_ms();
                LOG_INFO(s->lg, "store.state_filter_progress", "keys=%llu seconds=%lld",
                         (unsigned long long)n, (long long)((last - t0) / 1000));
            }
        }
    }
    leveldb_iter_get_error(it, &lerr);
    leveldb_iter_destroy(it);
    atomic_store_explicit(&s->filter_scanned, n, memory_order_relaxed);
    if (lerr) {
        log_failure(s, "store.state_filter_failed", lerr);     /* not ldb_failure: other thread */
        leveldb_free(lerr);
        LOG_WARN(s->lg, "store.state_filter_off", "reason=\"scan failed\" effect=\"%s\"",
                 "every state read goes to LevelDB");
        atomic_store_explicit(&s->filter_state, FILTER_FAILED, memory_order_release);
    } else if (!stopped) {
        int64_t ms = mono_ms() - t0;
        atomic_store_explicit(&s->filter_scan_ms, ms, memory_order_relaxed);
        atomic_store_explicit(&s->filter_state, FILTER_READY, memory_order_release);
        LOG_INFO(s->lg, "store.state_filter_ready", "keys=%llu ms=%lld bytes=%zu",
                 (unsigned long long)n, (long long)ms, sfilter_bytes(&s->filter));
    }
    return NULL;
}

static void filter_start(struct store *s, size_t bytes)
{
    int rc;

    if (bytes == 0) return;
    if (sfilter_init(&s->filter, bytes) != 0) {
        LOG_WARN(s->lg, "store.state_filter_off", "reason=\"out of memory\" bytes=%zu", bytes);
        return;
    }
    if (!sfilter_on(&s->filter)) return;
    atomic_store(&s->filter_state, FILTER_BUILDING);
    rc = pthread_create(&s->scan_thread, NULL, filter_scan, s);
    if (rc != 0) {
        LOG_WARN(s->lg, "store.state_filter_off", "reason=\"cannot start the scan: %s\"",
                 strerror(rc));
        atomic_store(&s->filter_state, FILTER_FAILED);
        return;
    }
    s->scan_started = true;
}

/* ---- open / close --------------------------------------------------------- */

void store_close(struct store **sp)
{
    struct store *s;

    if (sp == NULL || *sp == NULL) return;
    s = *sp;
    if (s->scan_started) {
        atomic_store(&s->scan_stop, true);
        pthread_join(s->scan_thread, NULL);
    }
    if (s->db) leveldb_close(s->db);
    if (s->opt) leveldb_options_destroy(s->opt);
    if (s->bloom) leveldb_filterpolicy_destroy(s->bloom);
    if (s->cache) leveldb_cache_destroy(s->cache);
    if (s->ro) leveldb_readoptions_destroy(s->ro);
    if (s->ro_bulk) leveldb_readoptions_destroy(s->ro_bulk);
    if (s->wo_sync) leveldb_writeoptions_destroy(s->wo_sync);
    if (s->wo_nosync) leveldb_writeoptions_destroy(s->wo_nosync);
    if (s->opened) {
        char qdir[512];
        LOG_INFO(s->lg, "store.close", "dir=%s n_writes=%llu",
                 log_quote(qdir, sizeof qdir, s->dir), s->n_writes);
    }
    sfilter_free(&s->filter);
    free(s->dir);
    free(s);
    *sp = NULL;
}

static int parse_fault_env(struct store *s, char *err, size_t errlen)
{
    const char *v = getenv(FAULT_ENV);
    char *end;

    if (v == NULL || v[0] == '\0') return 0;
    errno = 0;
    s->fault_after = strtoull(v, &end, 10);
    if (v[0] < '0' || v[0] > '9' || *end != '\0' || errno == ERANGE) {
        snprintf(err, errlen, "%s=%.40s: expected a non-negative integer (the number of "
                 "store writes that succeed before all later ones fail)", FAULT_ENV, v);
        return -1;
    }
    s->fault_armed = true;
    LOG_WARN(s->lg, "store.fault_injection", "write_fail_after=%llu", s->fault_after);
    return 0;
}

/* Describes a metadata value for a message: itself if short and printable. */
static const char *meta_shown(char *buf, size_t size, const uint8_t *v, size_t len)
{
    if (len == 0 || len > 16) return "unrecognised";
    for (size_t i = 0; i < len; i++)
        if (v[i] < 0x20 || v[i] > 0x7e) return "unrecognised";
    snprintf(buf, size, "\"%.*s\"", (int)len, (const char *)v);
    return buf;
}

/* A format-1 reply key (an idempotency key) marked as such ("\x02" key,
 * idem.h), in a new malloc'd *rk. Returns 0, or 1 if already marked (an
 * interrupted upgrade). */
static int legacy_reply_key(char **rk)
{
    size_t n = strlen(*rk);
    char *p;

    if ((*rk)[0] == '\x02') return 1;
    if ((p = malloc(n + 2)) == NULL) SM_PANIC("store: out of memory upgrading the store");
    p[0] = '\x02';
    memcpy(p + 1, *rk, n + 1);
    *rk = p;
    return 0;
}

/* Format 1 -> 2 (store.h): D keys gain the key group of the address that
 * owns the timer (the sender, else the target), I keys of format 1 (no
 * target address recorded) move to the legacy J range. Converted in batches
 * from one iterator (a snapshot); the last batch stamps format 2 and is
 * synced. Interrupted and run again, it converts what is left: format-2 D
 * keys are told apart by their length, and no format-2 I key exists before
 * the stamp. Reply keys (the idempotency key a Call's reply is stored
 * under) in queued messages and dead letters get the legacy mark "\x02"
 * (idem.h); a key that has it was converted by an earlier run. */
static int upgrade_v1(struct store *s, char *err, size_t errlen)
{
    leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ro_bulk);
    struct store_batch *b = store_batch_create();
    unsigned long long n_delayed = 0, n_idem = 0, n_reply = 0;
    int64_t t0 = mono_ms();
    char *lerr = NULL;
    int rc = 0;

    if (b == NULL) SM_PANIC("store: out of memory upgrading the store");
    LOG_WARN(s->lg, "store.upgrade_start", "from=1 to=%d msg=\"rewriting delayed-message and "
             "idempotency keys under their key groups\"", STORE_FORMAT_VERSION);
    for (leveldb_iter_seek(it, "D", 1); rc == 0 && leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = leveldb_iter_key(it, &klen);
        const char *v;
        Statemesh__V1__StoredDelayed *sd;
        const Statemesh__V1__Address *owner;
        uint16_t kg = 0;
        struct key nk;

        if (klen == 0 || k[0] != 'D') break;
        if (klen == DELAYED_KEY_LEN) continue;            /* converted by an earlier run */
        if (klen != DELAYED_KEY_LEN_V1) {
            snprintf(err, errlen, "the store in %s has a malformed key in the D range; %s",
                     s->dir, HINT_REPAIR);
            rc = -1;
            break;
        }
        v = leveldb_iter_value(it, &vlen);
        sd = statemesh__v1__stored_delayed__unpack(NULL, vlen, (const uint8_t *)v);
        owner = sd ? (sd->caller ? sd->caller : sd->target) : NULL;
        if (owner && owner->type && owner->id) kg = store_key_group(owner->type, owner->id);
        if (sd) statemesh__v1__stored_delayed__free_unpacked(sd, NULL);
        key_delayed(&nk, kg, (int64_t)get_u64be((const uint8_t *)k + 1),
                    get_u64be((const uint8_t *)k + 9));
        batch_put(b, &nk, v, vlen);
        store_batch_delete_raw(b, k, klen);
        n_delayed++;
        if (b->count >= 20000) {
            if (store_write(s, b, false) != 0) rc = -1;
            store_batch_clear(b);
        }
    }
    for (leveldb_iter_seek(it, "I", 1); rc == 0 && leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = leveldb_iter_key(it, &klen);
        const char *v;
        struct key nk;

        if (klen == 0 || k[0] != 'I') break;
        v = leveldb_iter_value(it, &vlen);
        key_init(&nk, klen);
        key_add(&nk, "J", 1);
        key_add(&nk, k + 1, klen - 1);
        batch_put(b, &nk, v, vlen);
        store_batch_delete_raw(b, k, klen);
        n_idem++;
        if (b->count >= 20000) {
            if (store_write(s, b, false) != 0) rc = -1;
            store_batch_clear(b);
        }
    }
    for (leveldb_iter_seek(it, "L", 1); rc == 0 && leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = leveldb_iter_key(it, &klen);
        const char *v;
        Statemesh__V1__StoredDeadLetter *dl;

        if (klen == 0 || k[0] != 'L') break;
        v = leveldb_iter_value(it, &vlen);
        dl = statemesh__v1__stored_dead_letter__unpack(NULL, vlen, (const uint8_t *)v);
        if (dl && dl->reply_key && dl->reply_key[0]) {
            char *old = dl->reply_key;
            if (legacy_reply_key(&dl->reply_key) == 0) {
                size_t n = statemesh__v1__stored_dead_letter__get_packed_size(dl);
                uint8_t *buf = malloc(n ? n : 1);
                if (!buf) SM_PANIC("store: out of memory upgrading the store");
                statemesh__v1__stored_dead_letter__pack(dl, buf);
                leveldb_writebatch_put(b->wb, k, klen, (const char *)buf, n);
                b->count++;
                free(buf);
                free(dl->reply_key);
                n_reply++;
            }
            dl->reply_key = old;
        }
        if (dl) statemesh__v1__stored_dead_letter__free_unpacked(dl, NULL);
        if (b->count >= 20000) {
            if (store_write(s, b, false) != 0) rc = -1;
            store_batch_clear(b);
        }
    }
    for (leveldb_iter_seek(it, "M", 1); rc == 0 && leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = leveldb_iter_key(it, &klen);
        const char *v;
        Statemesh__V1__StoredMessage *sm;

        if (klen == 0 || k[0] != 'M') break;
        v = leveldb_iter_value(it, &vlen);
        sm = statemesh__v1__stored_message__unpack(NULL, vlen, (const uint8_t *)v);
        if (sm && sm->reply_key && sm->reply_key[0]) {
            char *old = sm->reply_key;
            if (legacy_reply_key(&sm->reply_key) == 0) {
                size_t n = statemesh__v1__stored_message__get_packed_size(sm);
                uint8_t *buf = malloc(n ? n : 1);
                if (!buf) SM_PANIC("store: out of memory upgrading the store");
                statemesh__v1__stored_message__pack(sm, buf);
                leveldb_writebatch_put(b->wb, k, klen, (const char *)buf, n);
                b->count++;
                free(buf);
                free(sm->reply_key);
                n_reply++;
            }
            sm->reply_key = old;
        }
        if (sm) statemesh__v1__stored_message__free_unpacked(sm, NULL);
        if (b->count >= 20000) {
            if (store_write(s, b, false) != 0) rc = -1;
            store_batch_clear(b);
        }
    }
    leveldb_iter_get_error(it, &lerr);
    leveldb_iter_destroy(it);
    if (lerr) {
        describe(s, lerr, 'D', (char[256]){0}, 256);
        snprintf(err, errlen, "cannot upgrade: %.900s", s->last_err);
        leveldb_free(lerr);
        rc = -1;
    }
    if (rc == 0) {
        char ver = '0' + STORE_FORMAT_VERSION;
        store_batch_put_meta(b, META_FORMAT, &ver, 1);
        if (store_write(s, b, true) != 0) rc = -1;
    }
    if (rc != 0 && err[0] == '\0')
        snprintf(err, errlen, "cannot upgrade the store: %.900s", s->last_err);
    store_batch_destroy(&b);
    if (rc == 0)
        LOG_INFO(s->lg, "store.upgraded", "from=1 to=%d delayed=%llu idempotency=%llu "
                 "reply_keys=%llu ms=%lld", STORE_FORMAT_VERSION, n_delayed, n_idem, n_reply,
                 (long long)(mono_ms() - t0));
    return rc;
}

/* New store: stamp it. Existing: check format version and key-group count. */
static int check_meta(struct store *s, bool *created, char *err, size_t errlen)
{
    uint8_t *v = NULL;
    size_t len = 0;
    char shown[32];
    int rc = -1, r;

    *created = false;
    r = store_get_meta(s, META_FORMAT, &v, &len);
    if (r < 0) {
        snprintf(err, errlen, "cannot read the metadata: %.900s", s->last_err);
        goto out;
    }
    if (r == 1) {
        leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ro);
        struct store_batch *b;
        uint8_t kg[4] = {0, 0, (uint8_t)(STORE_KEY_GROUPS >> 8), (uint8_t)STORE_KEY_GROUPS};
        char *lerr = NULL;
        bool empty;

        leveldb_iter_seek_to_first(it);
        empty = !leveldb_iter_valid(it);
        if (iter_finish(s, it, 0, -1) != 0) {
            snprintf(err, errlen, "cannot read the store: %.900s", s->last_err);
            goto out;
        }
        if (!empty) {
            snprintf(err, errlen, "%s holds a LevelDB database without statemesh metadata "
                     "(no \"X" META_FORMAT "\" key); refusing to use it", s->dir);
            goto out;
        }
        b = store_batch_create();
        if (b == NULL) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        store_batch_put_meta(b, META_FORMAT, (char[]){'0' + STORE_FORMAT_VERSION}, 1);
        store_batch_put_meta(b, META_KEY_GROUPS, kg, sizeof kg);
        leveldb_write(s->db, s->wo_sync, b->wb, &lerr);
        store_batch_destroy(&b);
        if (lerr) {
            snprintf(err, errlen, "cannot initialise the store in %s: %s", s->dir, lerr);
            ldb_failure(s, "store.write_failed", &lerr, -1);
            goto out;
        }
        *created = true;
        rc = 0;
        goto out;
    }
    {
        bool v1 = len == 1 && v[0] == '1';
        if (!v1 && (len != 1 || v[0] != '0' + STORE_FORMAT_VERSION)) {
            snprintf(err, errlen, "the store in %s has format version %s; this statemeshd reads "
                     "versions 1 (upgraded in place) and %d", s->dir,
                     meta_shown(shown, sizeof shown, v, len), STORE_FORMAT_VERSION);
            goto out;
        }
        free(v);
        v = NULL;
        r = store_get_meta(s, META_KEY_GROUPS, &v, &len);
        if (r < 0) {
            snprintf(err, errlen, "cannot read the metadata: %.900s", s->last_err);
            goto out;
        }
        if (r == 1 || len != 4) {
            snprintf(err, errlen, "the store in %s has %s key-group count (\"X" META_KEY_GROUPS
                     "\"); it is damaged or not a statemesh store", s->dir,
                     r == 1 ? "no" : "a malformed");
            goto out;
        }
        if (get_u32be(v) != STORE_KEY_GROUPS) {
            snprintf(err, errlen, "the store in %s was created with %u key groups; this statemeshd "
                     "uses %d and cannot read it", s->dir, get_u32be(v), STORE_KEY_GROUPS);
            goto out;
        }
        if (v1 && upgrade_v1(s, err, errlen) != 0) goto out;
    }
    rc = 0;
out:
    free(v);
    return rc;
}

/* Refuses a filesystem with less than `need` bytes available (see store.h). */
static int check_free_space(const char *dir, size_t need, char *why, size_t whylen)
{
    struct statvfs sv;
    unsigned long long avail;

    if (statvfs(dir, &sv) != 0) return 0;       /* cannot tell: LevelDB will say */
    avail = (unsigned long long)sv.f_bavail * sv.f_frsize;
    if (avail >= need) return 0;
    snprintf(why, whylen, "not enough free space for the store in %s: %llu bytes free on its "
             "filesystem, %zu needed to start (one memtable flush: storage.write_buffer_bytes); "
             "free some space and start again", dir, avail, need);
    return -1;
}

int store_open(struct store **out, const char *dir, const struct store_options *opt,
               const struct log *lg, char *err, size_t errlen)
{
    static const struct store_options defaults = {0};
    struct store *s = NULL;
    char *lerr = NULL;
    char why[1024] = "";
    struct stat st;
    bool created = false;
    int rc = -1;

    *out = NULL;
    if (opt == NULL) opt = &defaults;
    if (stat(dir, &st) != 0) {
        snprintf(why, sizeof why, "cannot open store in %s: %s", dir, strerror(errno));
        goto out;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(why, sizeof why, "cannot open store in %s: not a directory", dir);
        goto out;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL || (s->dir = strdup(dir)) == NULL) {
        snprintf(why, sizeof why, "cannot open store in %s: out of memory", dir);
        goto out;
    }
    s->lg = lg;
    if (parse_fault_env(s, why, sizeof why) != 0) goto out;
    if (check_free_space(dir, store_min_free_bytes(opt), why, sizeof why) != 0) goto out;

    s->opt = leveldb_options_create();
    s->bloom = leveldb_filterpolicy_create_bloom(BLOOM_BITS);
    s->cache = leveldb_cache_create_lru(opt->block_cache_bytes ? opt->block_cache_bytes
                                                               : DEFAULT_CACHE);
    leveldb_options_set_create_if_missing(s->opt, 1);
    leveldb_options_set_paranoid_checks(s->opt, 1);
    leveldb_options_set_filter_policy(s->opt, s->bloom);
    leveldb_options_set_cache(s->opt, s->cache);
    leveldb_options_set_write_buffer_size(s->opt, opt->write_buffer_bytes
                                                      ? opt->write_buffer_bytes
                                                      : DEFAULT_WRITE_BUFFER);
    if (opt->max_open_files > 0) leveldb_options_set_max_open_files(s->opt, opt->max_open_files);
    leveldb_options_set_compression(s->opt, opt->compression ? leveldb_snappy_compression
                                                             : leveldb_no_compression);
    s->ro = leveldb_readoptions_create();
    leveldb_readoptions_set_verify_checksums(s->ro, 1);
    s->ro_bulk = leveldb_readoptions_create();
    leveldb_readoptions_set_verify_checksums(s->ro_bulk, 1);
    leveldb_readoptions_set_fill_cache(s->ro_bulk, 0);
    s->wo_sync = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(s->wo_sync, 1);
    s->wo_nosync = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(s->wo_nosync, 0);

    s->db = leveldb_open(s->opt, dir, &lerr);
    if (lerr) {
        char files[256];
        s->db = NULL;
        describe(s, lerr, 0, files, sizeof files);
        if (strncmp(lerr, "Corruption", 10) == 0)
            snprintf(why, sizeof why, "%s", s->last_err);
        else
            snprintf(why, sizeof why, "cannot open store in %s: %s", dir, lerr);
        leveldb_free(lerr);
        goto out;
    }
    if (check_meta(s, &created, why, sizeof why) != 0) goto out;
    filter_start(s, opt->state_filter_bytes);

    {
        char qdir[512];
        LOG_INFO(lg, "store.open", "dir=%s created=%d format=%d key_groups=%d",
                 log_quote(qdir, sizeof qdir, dir), created ? 1 : 0, STORE_FORMAT_VERSION,
                 STORE_KEY_GROUPS);
    }
    s->opened = true;
    *out = s;
    s = NULL;
    rc = 0;
out:
    if (rc != 0) {
        char qdir[512], qerr[1100];
        LOG_ERROR(lg, "store.open_failed", "dir=%s err=%s", log_quote(qdir, sizeof qdir, dir),
                  log_quote(qerr, sizeof qerr, why));
        if (err && errlen) snprintf(err, errlen, "%s", why);
    }
    store_close(&s);
    return rc;
}

int store_repair(const char *dir, const struct store_options *opt, const struct log *lg,
                 char *err, size_t errlen)
{
    leveldb_options_t *o;
    char *lerr = NULL;
    char qdir[512], qerr[1100];
    int64_t t0 = mono_ms();

    o = leveldb_options_create();
    /* The repairer verifies table checksums only when paranoid: without it a
     * damaged block would be kept as it is. */
    leveldb_options_set_paranoid_checks(o, 1);
    leveldb_options_set_compression(o, opt && !opt->compression ? leveldb_no_compression
                                                                  : leveldb_snappy_compression);
    LOG_WARN(lg, "store.repair_start", "dir=%s msg=\"LevelDB repair: keeps what it can read, "
             "drops the rest\"", log_quote(qdir, sizeof qdir, dir));
    leveldb_repair_db(o, dir, &lerr);
    leveldb_options_destroy(o);
    if (lerr) {
        snprintf(err, errlen, "repair of the store in %s failed: %s", dir, lerr);
        leveldb_free(lerr);
        LOG_ERROR(lg, "store.repair_failed", "dir=%s err=%s", log_quote(qdir, sizeof qdir, dir),
                  log_quote(qerr, sizeof qerr, err));
        return -1;
    }
    LOG_INFO(lg, "store.repaired", "dir=%s ms=%lld", log_quote(qdir, sizeof qdir, dir),
             (long long)(mono_ms() - t0));
    return 0;
}

/* ---- state listing (Admin ListState) --------------------------------------- */

/* 'S' kg type '\0' followed by n bytes of `tail`. */
static void key_state_type(struct key *k, uint16_t kg, const char *type, const char *tail,
                           size_t n)
{
    size_t tl = strlen(type);
    uint8_t b[2];
    char tag = 'S';

    key_init(k, 1 + 2 + tl + 1 + n);
    put_u16be(b, kg);
    key_add(k, &tag, 1);
    key_add(k, b, 2);
    key_add(k, type, tl);
    key_add(k, "", 1);
    key_add(k, tail, n);
}

int store_list_states(struct store *s, const char *type, const char *prefix,
                      const char *after_id, store_list_fn fn, void *arg)
{
    size_t pl = strlen(prefix), tl = strlen(type), al = after_id ? strlen(after_id) : 0;
    struct scratch idb = {0}, nameb = {0};
    leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ro_bulk);
    unsigned kg = after_id ? store_key_group(type, after_id) : 0;
    int rc = 0, stop = 0;

    for (; kg < STORE_KEY_GROUPS && !stop && rc == 0; kg++) {
        struct key start, skip;
        size_t base = 1 + 2 + tl + 1;     /* where the id begins */

        key_state_type(&start, (uint16_t)kg, type, prefix, pl);
        if (after_id) {
            /* the first key after every key of after_id: id '\1' (ids have
             * no NUL), unless the prefix starts later */
            struct key a;
            size_t n;
            key_state_type(&a, (uint16_t)kg, type, after_id, al + 1);
            a.p[a.len - 1] = '\1';
            n = a.len < start.len ? a.len : start.len;
            if (memcmp(a.p, start.p, n) > 0 || (memcmp(a.p, start.p, n) == 0 && a.len > start.len))
                leveldb_iter_seek(it, a.p, a.len);
            else
                leveldb_iter_seek(it, start.p, start.len);
            key_free(&a);
            after_id = NULL;
        } else {
            leveldb_iter_seek(it, start.p, start.len);
        }
        key_free(&start);
        while (leveldb_iter_valid(it)) {
            size_t klen, vlen;
            const char *k = leveldb_iter_key(it, &klen);
            const char *v, *ie, *id, *name;
            uint8_t kgb[2];
            int r;

            put_u16be(kgb, (uint16_t)kg);
            if (klen < base + pl || k[0] != 'S' || memcmp(k + 1, kgb, 2) != 0 ||
                memcmp(k + 3, type, tl) != 0 || k[3 + tl] != '\0' ||
                memcmp(k + base, prefix, pl) != 0)
                break;
            ie = memchr(k + base, '\0', klen - base);
            if (!ie) {                    /* malformed: skip it */
                leveldb_iter_next(it);
                continue;
            }
            v = leveldb_iter_value(it, &vlen);
            id = scratch_copy(&idb, k + base, (size_t)(ie - (k + base)));
            name = scratch_copy(&nameb, ie + 1, klen - (size_t)(ie + 1 - k));
            if (!id || !name) {
                rc = -ENOMEM;
                break;
            }
            r = fn(arg, id, name, (const uint8_t *)v, vlen);
            if (r == STORE_LIST_STOP) {
                stop = 1;
                break;
            }
            if (r == STORE_LIST_NEXT) {
                leveldb_iter_next(it);
                continue;
            }
            key_state_type(&skip, (uint16_t)kg, type, id, strlen(id) + 1);
            skip.p[skip.len - 1] = '\1';
            leveldb_iter_seek(it, skip.p, skip.len);
            key_free(&skip);
        }
    }
    free(idb.p);
    free(nameb.p);
    return iter_finish(s, it, rc, 'S');
}
