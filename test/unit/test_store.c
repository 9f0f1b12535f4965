/* Unit tests for runtime/store.c. Each test works in its own mkdtemp()
 * directory under /tmp and removes it. The on-disk key layout promised by
 * store.h is checked by reading the database back with the raw LevelDB API. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <leveldb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <xxhash.h>

#include "statemesh/v1/storage.pb-c.h"
#include "store.h"

#define FAULT_ENV "STATEMESH_FAULT_WRITE_FAIL_AFTER"

/* ---- fixture: a fresh directory and a log captured in memory ------------------ */

struct fx {
    char dir[64];
    char *logbuf;
    size_t loglen;
    struct log lg;
    struct store *s;
};

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof *fx);

    assert_non_null(fx);
    strcpy(fx->dir, "/tmp/sm_test_store.XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    fx->lg.level = LOG_LEVEL_DEBUG;
    fx->lg.out = open_memstream(&fx->logbuf, &fx->loglen);
    assert_non_null(fx->lg.out);
    unsetenv(FAULT_ENV);
    *state = fx;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    struct fx *fx = *state;

    store_close(&fx->s);
    nftw(fx->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    fclose(fx->lg.out);
    free(fx->logbuf);
    free(fx);
    unsetenv(FAULT_ENV);
    return 0;
}

static void open_ok(struct fx *fx)
{
    char err[512];
    struct store_options opt = {.compression = true};

    err[0] = '\0';
    if (store_open(&fx->s, fx->dir, &opt, &fx->lg, err, sizeof err) != 0) {
        print_error("store_open: %s\n", err);
        fail();
    }
    assert_non_null(fx->s);
}

static const char *log_text(struct fx *fx)
{
    fflush(fx->lg.out);
    return fx->logbuf ? fx->logbuf : "";
}

static void write_ok(struct store *s, struct store_batch *b, bool sync)
{
    assert_int_equal(store_write(s, b, sync), 0);
    store_batch_clear(b);
}

static void put_state_str(struct store *s, const char *type, const char *id, const char *name,
                          const char *val)
{
    struct store_batch *b = store_batch_create();
    store_batch_put_state(b, type, id, name, val, strlen(val));
    write_ok(s, b, false);
    store_batch_destroy(&b);
}

static void assert_state(struct store *s, const char *type, const char *id, const char *name,
                         const char *want /* NULL: absent */)
{
    uint8_t *v = (uint8_t *)"sentinel";
    size_t len = 99;
    int rc = store_get_state(s, type, id, name, &v, &len);

    if (want == NULL) {
        assert_int_equal(rc, 1);
        return;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(v, want, len);
    free(v);
}

/* ---- key groups ---------------------------------------------------------------- */

static void key_group_stable_and_in_range(void **state)
{
    static const char hashed[] = "example/greeter\0alice";   /* type '\0' id */
    unsigned char seen[STORE_KEY_GROUPS] = {0};
    int distinct = 0;

    (void)state;
    /* The definition in store.h, computed independently. */
    assert_int_equal(store_key_group("example/greeter", "alice"),
                     XXH3_64bits(hashed, sizeof hashed - 1) % STORE_KEY_GROUPS);
    /* Pinned: the on-disk layout depends on it never changing. */
    assert_int_equal(store_key_group("example/greeter", "alice"), 3730);
    assert_int_equal(store_key_group("example/greeter", "alice"),
                     store_key_group("example/greeter", "alice"));
    /* The separator matters: ("a/b", "cd") and ("a/bc", "d") differ. */
    assert_int_not_equal(store_key_group("a/b", "cd"), store_key_group("a/bc", "d"));

    for (int i = 0; i < 20000; i++) {
        char id[32];
        uint16_t kg;
        snprintf(id, sizeof id, "user-%d", i);
        kg = store_key_group("example/greeter", id);
        assert_true(kg < STORE_KEY_GROUPS);
        if (!seen[kg]) distinct++;
        seen[kg] = 1;
    }
    /* 20000 ids over 4096 groups: expect ~4065 distinct; a broken hash would not. */
    assert_true(distinct > 3900);
}

/* ---- states --------------------------------------------------------------------- */

struct names {
    char got[16][32];
    int n;
    int stop_after;
};

static int collect_state(void *arg, const char *name, const uint8_t *val, size_t len)
{
    struct names *ns = arg;
    assert_true(ns->n < 16);
    snprintf(ns->got[ns->n], sizeof ns->got[0], "%s=%.*s", name, (int)len, (const char *)val);
    ns->n++;
    return ns->stop_after && ns->n >= ns->stop_after;
}

static void put_get_delete_state(void **state)
{
    struct fx *fx = *state;
    struct store_batch *b;
    struct names ns = {0};
    uint8_t *v = NULL;
    size_t len = 1;

    open_ok(fx);
    assert_state(fx->s, "example/greeter", "alice", "count", NULL);
    put_state_str(fx->s, "example/greeter", "alice", "count", "1");
    assert_state(fx->s, "example/greeter", "alice", "count", "1");
    put_state_str(fx->s, "example/greeter", "alice", "count", "22");     /* overwrite */
    assert_state(fx->s, "example/greeter", "alice", "count", "22");
    /* Same name, neighbouring addresses: no bleeding. */
    assert_state(fx->s, "example/greeter", "alic", "count", NULL);
    assert_state(fx->s, "example/greeter", "alicex", "count", NULL);
    assert_state(fx->s, "example/greeterx", "alice", "count", NULL);

    /* An empty value is a value, not an absence. */
    b = store_batch_create();
    store_batch_put_state(b, "example/greeter", "alice", "empty", NULL, 0);
    write_ok(fx->s, b, true);
    assert_int_equal(store_get_state(fx->s, "example/greeter", "alice", "empty", &v, &len), 0);
    assert_int_equal(len, 0);
    assert_non_null(v);
    free(v);

    /* Scans: name order, only this address, early stop. */
    put_state_str(fx->s, "example/greeter", "alice", "b_name", "B");
    put_state_str(fx->s, "example/greeter", "alice", "a_name", "A");
    put_state_str(fx->s, "example/greeter", "alicex", "zzz", "other address");
    put_state_str(fx->s, "example/greeter", "ali", "aaa", "other address");
    assert_int_equal(store_scan_states(fx->s, "example/greeter", "alice", collect_state, &ns), 0);
    assert_int_equal(ns.n, 4);
    assert_string_equal(ns.got[0], "a_name=A");
    assert_string_equal(ns.got[1], "b_name=B");
    assert_string_equal(ns.got[2], "count=22");
    assert_string_equal(ns.got[3], "empty=");
    memset(&ns, 0, sizeof ns);
    ns.stop_after = 2;
    assert_int_equal(store_scan_states(fx->s, "example/greeter", "alice", collect_state, &ns), 0);
    assert_int_equal(ns.n, 2);
    memset(&ns, 0, sizeof ns);
    assert_int_equal(store_scan_states(fx->s, "example/greeter", "nobody", collect_state, &ns), 0);
    assert_int_equal(ns.n, 0);

    /* Delete. */
    store_batch_delete_state(b, "example/greeter", "alice", "count");
    store_batch_delete_state(b, "example/greeter", "alice", "never-existed");
    assert_int_equal(store_batch_count(b), 2);
    write_ok(fx->s, b, true);
    assert_state(fx->s, "example/greeter", "alice", "count", NULL);
    assert_state(fx->s, "example/greeter", "alice", "a_name", "A");
    store_batch_destroy(&b);
    assert_null(b);
    store_batch_destroy(&b);                                 /* NULL-safe */
}

/* ---- messages and key layout ----------------------------------------------------- */

#define N_TYPES 2
#define N_IDS 6
#define N_SEQS 5

static const char *const types[N_TYPES] = {"t/x", "t/xy"};
static const char *const ids[N_IDS] = {"a", "ab", "abc", "a b", "b", "\xc3\xa9t\xc3\xa9"};
/* Crosses byte boundaries so that only big-endian keys sort numerically. */
static const uint64_t seqs[N_SEQS] = {1ull << 40, 255, 1, 65536, 256};

struct scan {
    char last_type[16], last_id[16];
    uint64_t last_seq;
    int started;
    int runs;                /* address changes seen */
    int n;
    char done[N_TYPES * N_IDS][40];
    int n_done;
    int stop_after;
};

static int collect_message(void *arg, const char *type, const char *id, uint64_t seq,
                           const uint8_t *val, size_t len)
{
    struct scan *sc = arg;
    char want[64], addr[40];

    snprintf(want, sizeof want, "%s|%s|%llu", type, id, (unsigned long long)seq);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(val, want, len);
    snprintf(addr, sizeof addr, "%s|%s", type, id);
    if (!sc->started || strcmp(type, sc->last_type) != 0 || strcmp(id, sc->last_id) != 0) {
        /* A new address: it must not have appeared before (contiguity). */
        for (int i = 0; i < sc->n_done; i++) assert_string_not_equal(sc->done[i], addr);
        strcpy(sc->done[sc->n_done++], addr);
        strcpy(sc->last_type, type);
        strcpy(sc->last_id, id);
        sc->runs++;
        sc->started = 1;
    } else {
        assert_true(seq > sc->last_seq);                    /* seq order within an address */
    }
    sc->last_seq = seq;
    sc->n++;
    return sc->stop_after && sc->n >= sc->stop_after;
}

static void put_messages(struct store *s)
{
    struct store_batch *b = store_batch_create();

    for (int q = 0; q < N_SEQS; q++)
        for (int t = 0; t < N_TYPES; t++)
            for (int i = 0; i < N_IDS; i++) {
                char val[64];
                snprintf(val, sizeof val, "%s|%s|%llu", types[t], ids[i],
                         (unsigned long long)seqs[q]);
                store_batch_put_message(b, types[t], ids[i], seqs[q], val, strlen(val));
            }
    assert_int_equal(store_batch_count(b), N_SEQS * N_TYPES * N_IDS);
    assert_true(store_batch_bytes(b) > 0);
    write_ok(s, b, true);
    store_batch_destroy(&b);
}

static void messages_scan_in_order(void **state)
{
    struct fx *fx = *state;
    struct scan sc = {0};
    struct store_batch *b;

    open_ok(fx);
    /* States interleave with messages in key space only by tag: ignored by the scan. */
    put_state_str(fx->s, "t/x", "a", "s", "state value");
    put_messages(fx->s);
    assert_int_equal(store_scan_messages(fx->s, collect_message, &sc), 0);
    assert_int_equal(sc.n, N_SEQS * N_TYPES * N_IDS);
    assert_int_equal(sc.runs, N_TYPES * N_IDS);

    /* Early stop. */
    memset(&sc, 0, sizeof sc);
    sc.stop_after = 3;
    assert_int_equal(store_scan_messages(fx->s, collect_message, &sc), 0);
    assert_int_equal(sc.n, 3);

    /* Consumed messages disappear. */
    b = store_batch_create();
    for (int t = 0; t < N_TYPES; t++)
        for (int i = 0; i < N_IDS; i++) store_batch_delete_message(b, types[t], ids[i], seqs[1]);
    write_ok(fx->s, b, true);
    store_batch_destroy(&b);
    memset(&sc, 0, sizeof sc);
    assert_int_equal(store_scan_messages(fx->s, collect_message, &sc), 0);
    assert_int_equal(sc.n, (N_SEQS - 1) * N_TYPES * N_IDS);
}

static void on_disk_layout(void **state)
{
    struct fx *fx = *state;
    leveldb_options_t *o;
    leveldb_readoptions_t *ro;
    leveldb_iterator_t *it;
    leveldb_t *db;
    char *lerr = NULL;
    int n_m = 0, n_s = 0, n_x = 0;

    open_ok(fx);
    put_state_str(fx->s, "t/x", "ab", "count", "7");
    put_messages(fx->s);
    store_close(&fx->s);
    assert_null(fx->s);

    o = leveldb_options_create();
    db = leveldb_open(o, fx->dir, &lerr);
    assert_null(lerr);
    ro = leveldb_readoptions_create();
    it = leveldb_create_iterator(db, ro);
    for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = leveldb_iter_key(it, &klen);
        const char *v = leveldb_iter_value(it, &vlen);

        if (k[0] == 'X') {
            n_x++;
            if (klen == 7 && memcmp(k, "Xformat", 7) == 0) {
                assert_int_equal(vlen, 1);
                assert_memory_equal(v, "2", 1);
            } else {
                assert_int_equal(klen, 11);
                assert_memory_equal(k, "Xkey_groups", 11);
                assert_int_equal(vlen, 4);
                assert_memory_equal(v, "\0\0\x10\0", 4);           /* u32be 4096 */
            }
        } else if (k[0] == 'S') {
            static const char rest[] = "t/x\0ab\0count";
            uint16_t kg = store_key_group("t/x", "ab");
            n_s++;
            assert_int_equal(klen, 3 + sizeof rest - 1);
            assert_int_equal((uint8_t)k[1], kg >> 8);
            assert_int_equal((uint8_t)k[2], kg & 0xff);
            assert_memory_equal(k + 3, rest, sizeof rest - 1);
        } else {
            char type[16], id[16];
            uint64_t seq = 0;
            uint16_t kg;
            const char *p = k + 3;

            assert_int_equal(k[0], 'M');
            n_m++;
            snprintf(type, sizeof type, "%s", p);
            p += strlen(type) + 1;
            snprintf(id, sizeof id, "%s", p);
            p += strlen(id) + 1;
            assert_int_equal(k + klen - p, 8);
            for (int i = 0; i < 8; i++) seq = (seq << 8) | (uint8_t)p[i];
            kg = store_key_group(type, id);
            assert_int_equal((uint8_t)k[1], kg >> 8);
            assert_int_equal((uint8_t)k[2], kg & 0xff);
            assert_true(seq == seqs[0] || seq == seqs[1] || seq == seqs[2] || seq == seqs[3] ||
                        seq == seqs[4]);
        }
    }
    leveldb_iter_get_error(it, &lerr);
    assert_null(lerr);
    leveldb_iter_destroy(it);
    leveldb_readoptions_destroy(ro);
    leveldb_close(db);
    leveldb_options_destroy(o);
    assert_int_equal(n_x, 2);
    assert_int_equal(n_s, 1);
    assert_int_equal(n_m, N_SEQS * N_TYPES * N_IDS);
}

/* ---- batches, persistence -------------------------------------------------------- */

static void batch_atomicity(void **state)
{
    struct fx *fx = *state;
    struct store_batch *b;
    struct scan sc = {0};

    open_ok(fx);
    b = store_batch_create();
    assert_non_null(b);
    assert_int_equal(store_batch_count(b), 0);
    assert_int_equal(store_batch_bytes(b), 0);
    store_batch_put_state(b, "example/greeter", "bob", "count", "1", 1);
    store_batch_put_message(b, "example/greeter", "bob", 1, "hi", 2);
    store_batch_put_meta(b, "note", "x", 1);
    assert_int_equal(store_batch_count(b), 3);
    assert_true(store_batch_bytes(b) >= 4);

    /* Not written: invisible. */
    assert_state(fx->s, "example/greeter", "bob", "count", NULL);
    assert_int_equal(store_scan_messages(fx->s, collect_message, &sc), 0);
    assert_int_equal(sc.n, 0);

    /* Cleared: nothing left to write. */
    store_batch_clear(b);
    assert_int_equal(store_batch_count(b), 0);
    assert_int_equal(store_batch_bytes(b), 0);
    assert_int_equal(store_write(fx->s, b, true), 0);
    assert_state(fx->s, "example/greeter", "bob", "count", NULL);

    /* Written: all of it. store_write does not clear the batch. */
    store_batch_put_state(b, "example/greeter", "bob", "count", "1", 1);
    store_batch_put_state(b, "example/greeter", "bob", "name", "Bob", 3);
    assert_int_equal(store_write(fx->s, b, true), 0);
    assert_int_equal(store_batch_count(b), 2);
    assert_state(fx->s, "example/greeter", "bob", "count", "1");
    assert_state(fx->s, "example/greeter", "bob", "name", "Bob");
    store_batch_destroy(&b);
}

static void reopen_persists(void **state)
{
    struct fx *fx = *state;
    struct store_batch *b;
    struct scan sc = {0};
    uint8_t *v;
    size_t len;

    open_ok(fx);
    b = store_batch_create();
    store_batch_put_state(b, "example/greeter", "carol", "count", "3", 1);
    store_batch_put_meta(b, "next_seq", "\0\0\0\0\0\0\0\x2a", 8);
    write_ok(fx->s, b, true);
    store_batch_destroy(&b);
    put_messages(fx->s);
    store_close(&fx->s);
    assert_null(fx->s);
    store_close(&fx->s);                                     /* NULL-safe */

    open_ok(fx);
    assert_state(fx->s, "example/greeter", "carol", "count", "3");
    assert_int_equal(store_get_meta(fx->s, "next_seq", &v, &len), 0);
    assert_int_equal(len, 8);
    assert_memory_equal(v, "\0\0\0\0\0\0\0\x2a", 8);
    free(v);
    assert_int_equal(store_get_meta(fx->s, "format", &v, &len), 0);
    assert_int_equal(len, 1);
    assert_memory_equal(v, "2", 1);
    free(v);
    assert_int_equal(store_get_meta(fx->s, "absent", &v, &len), 1);
    assert_int_equal(store_scan_messages(fx->s, collect_message, &sc), 0);
    assert_int_equal(sc.n, N_SEQS * N_TYPES * N_IDS);
    assert_non_null(strstr(log_text(fx), "event=store.open"));
    assert_non_null(strstr(log_text(fx), "created=1"));
    assert_non_null(strstr(log_text(fx), "created=0"));
}

/* ---- refusals --------------------------------------------------------------------- */

static void set_meta_and_close(struct fx *fx, const char *name, const void *val, size_t len)
{
    struct store_batch *b = store_batch_create();
    store_batch_put_meta(b, name, val, len);
    write_ok(fx->s, b, true);
    store_batch_destroy(&b);
    store_close(&fx->s);
}

static void metadata_mismatch_refused(void **state)
{
    struct fx *fx = *state;
    char err[512], want[256];
    struct store *s = (struct store *)(uintptr_t)1;       /* must be reset to NULL */

    open_ok(fx);
    set_meta_and_close(fx, "format", "3", 1);
    assert_int_equal(store_open(&s, fx->dir, NULL, &fx->lg, err, sizeof err), -1);
    assert_null(s);
    snprintf(want, sizeof want,
             "the store in %s has format version \"3\"; this statemeshd reads versions 1 "
             "(upgraded in place) and 2", fx->dir);
    assert_string_equal(err, want);
    assert_non_null(strstr(log_text(fx), "event=store.open_failed"));

    /* Back to format 1, but another key-group count. */
    {
        leveldb_options_t *o = leveldb_options_create();
        leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
        char *lerr = NULL;
        leveldb_t *db = leveldb_open(o, fx->dir, &lerr);
        assert_null(lerr);
        leveldb_put(db, wo, "Xformat", 7, "1", 1, &lerr);
        assert_null(lerr);
        leveldb_put(db, wo, "Xkey_groups", 11, "\0\0\x04\0", 4, &lerr);   /* 1024 */
        assert_null(lerr);
        leveldb_close(db);
        leveldb_writeoptions_destroy(wo);
        leveldb_options_destroy(o);
    }
    assert_int_equal(store_open(&s, fx->dir, NULL, NULL, err, sizeof err), -1);
    snprintf(want, sizeof want, "the store in %s was created with 1024 key groups; "
             "this statemeshd uses 4096 and cannot read it", fx->dir);
    assert_string_equal(err, want);
    /* Refused before any upgrade: still format 1. */
    {
        leveldb_options_t *o = leveldb_options_create();
        leveldb_readoptions_t *ro = leveldb_readoptions_create();
        char *lerr = NULL, *val;
        size_t vlen;
        leveldb_t *db = leveldb_open(o, fx->dir, &lerr);
        assert_null(lerr);
        val = leveldb_get(db, ro, "Xformat", 7, &vlen, &lerr);
        assert_non_null(val);
        assert_int_equal(vlen, 1);
        assert_int_equal(val[0], '1');
        leveldb_free(val);
        leveldb_close(db);
        leveldb_readoptions_destroy(ro);
        leveldb_options_destroy(o);
    }
}

static void foreign_database_refused(void **state)
{
    struct fx *fx = *state;
    leveldb_options_t *o = leveldb_options_create();
    leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
    char *lerr = NULL;
    char err[512];
    leveldb_t *db;

    leveldb_options_set_create_if_missing(o, 1);
    db = leveldb_open(o, fx->dir, &lerr);
    assert_null(lerr);
    leveldb_put(db, wo, "hello", 5, "world", 5, &lerr);
    assert_null(lerr);
    leveldb_close(db);
    leveldb_writeoptions_destroy(wo);
    leveldb_options_destroy(o);

    assert_int_equal(store_open(&fx->s, fx->dir, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "without statemesh metadata"));
}

static int count_message(void *arg, const char *type, const char *id, uint64_t seq,
                         const uint8_t *val, size_t len)
{
    (void)type, (void)id, (void)seq, (void)val, (void)len;
    (*(int *)arg)++;
    return 0;
}

/* Recovery does not guess: a key in the M range that does not parse fails the scan. */
static void corrupt_message_key(void **state)
{
    struct fx *fx = *state;
    leveldb_options_t *o = leveldb_options_create();
    leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
    char *lerr = NULL;
    leveldb_t *db;
    int n = 0;

    open_ok(fx);
    put_messages(fx->s);
    store_close(&fx->s);
    db = leveldb_open(o, fx->dir, &lerr);
    assert_null(lerr);
    leveldb_put(db, wo, "M\xff\xfft/x\0no-seq", 13, "v", 1, &lerr);   /* after all others */
    assert_null(lerr);
    leveldb_close(db);
    leveldb_writeoptions_destroy(wo);
    leveldb_options_destroy(o);

    open_ok(fx);
    assert_int_equal(store_scan_messages(fx->s, count_message, &n), -EIO);
    assert_int_equal(n, N_SEQS * N_TYPES * N_IDS);
    assert_non_null(strstr(log_text(fx), "event=store.corrupt_key"));
}

static void missing_dir_refused(void **state)
{
    struct fx *fx = *state;
    char err[512], dir[128], want[256];

    snprintf(dir, sizeof dir, "%s/nope", fx->dir);
    assert_int_equal(store_open(&fx->s, dir, NULL, NULL, err, sizeof err), -1);
    assert_null(fx->s);
    snprintf(want, sizeof want, "cannot open store in %s: No such file or directory", dir);
    assert_string_equal(err, want);
}

static void second_open_fails(void **state)
{
    struct fx *fx = *state;
    struct store *s2 = NULL;
    char err[512], want[256];

    open_ok(fx);
    assert_int_equal(store_open(&s2, fx->dir, NULL, &fx->lg, err, sizeof err), -1);
    assert_null(s2);
    snprintf(want, sizeof want, "cannot open store in %s: IO error: lock ", fx->dir);
    assert_memory_equal(err, want, strlen(want));
    assert_non_null(strstr(err, "already held by process"));
    /* The first store is unaffected. */
    put_state_str(fx->s, "a/b", "c", "d", "e");
    assert_state(fx->s, "a/b", "c", "d", "e");
}

/* ---- fault injection ------------------------------------------------------------- */

static void fault_injection(void **state)
{
    struct fx *fx = *state;
    struct store_batch *b;
    char err[512];

    setenv(FAULT_ENV, "2", 1);
    open_ok(fx);                 /* the metadata written at open does not count */
    unsetenv(FAULT_ENV);         /* read at open: changing it later changes nothing */
    assert_non_null(strstr(log_text(fx), "event=store.fault_injection write_fail_after=2"));

    b = store_batch_create();
    store_batch_put_state(b, "f/t", "x", "n", "1", 1);
    assert_int_equal(store_write(fx->s, b, false), 0);            /* 1st */
    store_batch_clear(b);
    store_batch_put_state(b, "f/t", "x", "n", "2", 1);
    assert_int_equal(store_write(fx->s, b, true), 0);             /* 2nd */
    store_batch_clear(b);
    store_batch_put_state(b, "f/t", "x", "n", "3", 1);
    assert_int_equal(store_write(fx->s, b, true), -EIO);          /* 3rd = N+1 */
    assert_int_equal(store_write(fx->s, b, false), -EIO);         /* and later */
    assert_state(fx->s, "f/t", "x", "n", "2");                    /* nothing applied */
    assert_non_null(strstr(log_text(fx), "event=store.write_failed"));
    store_batch_destroy(&b);
    store_close(&fx->s);

    /* Without the variable, writes are unlimited again. */
    open_ok(fx);
    b = store_batch_create();
    for (int i = 0; i < 5; i++) {
        store_batch_put_state(b, "f/t", "x", "n", "4", 1);
        assert_int_equal(store_write(fx->s, b, false), 0);
    }
    store_batch_destroy(&b);
    store_close(&fx->s);

    /* N = 0: the very first write fails. A bad value refuses to open. */
    setenv(FAULT_ENV, "0", 1);
    open_ok(fx);
    b = store_batch_create();
    store_batch_put_state(b, "f/t", "x", "n", "5", 1);
    assert_int_equal(store_write(fx->s, b, true), -EIO);
    store_batch_destroy(&b);
    assert_state(fx->s, "f/t", "x", "n", "4");
    store_close(&fx->s);

    setenv(FAULT_ENV, "two", 1);
    assert_int_equal(store_open(&fx->s, fx->dir, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, FAULT_ENV "=two: expected a non-negative integer"));
    setenv(FAULT_ENV, "-1", 1);
    assert_int_equal(store_open(&fx->s, fx->dir, NULL, NULL, err, sizeof err), -1);
    unsetenv(FAULT_ENV);
}


/* ---- delayed, egress, dead letters, sweeps ------------------------------------------ */

struct u64s {
    uint64_t v[64];
    int n;
};

static int collect_delayed(void *arg, uint16_t kg, int64_t due_ms, uint64_t seq,
                           const uint8_t *val, size_t len)
{
    struct u64s *u = arg;
    (void)val;
    (void)len;
    u->v[u->n++] = ((uint64_t)kg << 56) + (uint64_t)due_ms * 1000 + seq;
    return 0;
}

static int collect_offset(void *arg, uint64_t off, const uint8_t *val, size_t len)
{
    struct u64s *u = arg;
    assert_int_equal(len, 1);
    assert_int_equal(val[0], (uint8_t)off);
    u->v[u->n++] = off;
    return 0;
}

static void delayed_due_order_and_point_reads(void **state)
{
    struct fx *fx = *state;
    struct store_batch *b = store_batch_create();
    struct u64s u = {{0}, 0};
    uint8_t *v;
    size_t len;

    open_ok(fx);
    store_batch_put_delayed(b, 7, 5000, 7, "a", 1);
    store_batch_put_delayed(b, 7, 300, 9, "b", 1);
    store_batch_put_delayed(b, 7, 300, 2, "c", 1);
    store_batch_put_delayed(b, 7, 1LL << 40, 1, "d", 1);   /* big-endian: ordered beyond 32 bits */
    store_batch_put_delayed(b, 2, 9000, 1, "e", 1);        /* key group first, then due time */
    write_ok(fx->s, b, false);
    assert_int_equal(store_scan_delayed(fx->s, collect_delayed, &u), 0);
    assert_int_equal(u.n, 5);
    assert_int_equal(u.v[0], (2ULL << 56) + 9000 * 1000 + 1);
    assert_int_equal(u.v[1], (7ULL << 56) + 300 * 1000 + 2);
    assert_int_equal(u.v[2], (7ULL << 56) + 300 * 1000 + 9);
    assert_int_equal(u.v[3], (7ULL << 56) + 5000 * 1000 + 7);
    assert_int_equal(store_get_delayed(fx->s, 7, 300, 9, &v, &len), 0);
    assert_memory_equal(v, "b", 1);
    free(v);
    assert_int_equal(store_get_delayed(fx->s, 2, 300, 9, &v, &len), 1);   /* another group */
    store_batch_delete_delayed(b, 7, 300, 9);
    write_ok(fx->s, b, false);
    assert_int_equal(store_get_delayed(fx->s, 7, 300, 9, &v, &len), 1);
    store_batch_destroy(&b);
}

static void egress_bounds_and_ranges(void **state)
{
    struct fx *fx = *state;
    struct store_batch *b = store_batch_create();
    struct u64s u = {{0}, 0};
    uint64_t first = 0, last = 0;
    uint8_t one;

    open_ok(fx);
    assert_int_equal(store_egress_bounds(fx->s, "ev", &first, &last), 1);   /* empty */
    for (uint64_t off = 1; off <= 10; off++) {
        one = (uint8_t)off;
        store_batch_put_egress(b, "ev", off, &one, 1);
        store_batch_put_egress(b, "ev2", off, &one, 1);    /* a name that extends "ev" */
        store_batch_put_egress(b, "e", off + 100, &one, 1);
    }
    write_ok(fx->s, b, false);
    assert_int_equal(store_egress_bounds(fx->s, "ev", &first, &last), 0);
    assert_int_equal(first, 1);
    assert_int_equal(last, 10);
    assert_int_equal(store_egress_bounds(fx->s, "e", &first, &last), 0);
    assert_int_equal(first, 101);
    assert_int_equal(last, 110);
    assert_int_equal(store_scan_egress(fx->s, "ev", 7, collect_offset, &u), 0);
    assert_int_equal(u.n, 4);
    assert_int_equal(u.v[0], 7);
    assert_int_equal(u.v[3], 10);
    store_batch_delete_egress(b, "ev", 1);
    store_batch_delete_egress(b, "ev", 2);
    write_ok(fx->s, b, false);
    assert_int_equal(store_egress_bounds(fx->s, "ev", &first, &last), 0);
    assert_int_equal(first, 3);
    assert_int_equal(store_egress_bounds(fx->s, "nothing", &first, &last), 1);
    store_batch_destroy(&b);
}

static int collect_dl(void *arg, uint64_t id, const uint8_t *val, size_t len)
{
    struct u64s *u = arg;
    (void)val;
    (void)len;
    u->v[u->n++] = id;
    return u->n == 2;        /* stop after two */
}

static void deadletters_page_by_id(void **state)
{
    struct fx *fx = *state;
    struct store_batch *b = store_batch_create();
    struct u64s u = {{0}, 0};

    open_ok(fx);
    store_batch_put_deadletter(b, 300, "x", 1);
    store_batch_put_deadletter(b, 5, "x", 1);
    store_batch_put_deadletter(b, 70, "x", 1);
    store_batch_put_meta(b, "zzz", "m", 1);                 /* other ranges are not listed */
    write_ok(fx->s, b, false);
    assert_int_equal(store_scan_deadletters(fx->s, 0, collect_dl, &u), 0);
    assert_int_equal(u.n, 2);
    assert_int_equal(u.v[0], 5);
    assert_int_equal(u.v[1], 70);
    u.n = 0;
    assert_int_equal(store_scan_deadletters(fx->s, 70, collect_dl, &u), 0);
    assert_int_equal(u.n, 1);
    assert_int_equal(u.v[0], 300);
    store_batch_destroy(&b);
}

struct swept {
    int n;
    char type[32], id[32];
};

static int sweep_count(void *arg, const char *key, size_t klen, const uint8_t *val, size_t len)
{
    struct swept *w = arg;
    char buf[128];
    const char *type, *id;
    (void)val;
    (void)len;
    assert_int_equal(store_state_key_address(key, klen, buf, &type, &id), 0);
    snprintf(w->type, sizeof w->type, "%s", type);
    snprintf(w->id, sizeof w->id, "%s", id);
    w->n++;
    return 0;
}

static void sweep_visits_a_slice_and_wraps(void **state)
{
    struct fx *fx = *state;
    struct store_cursor cur = {NULL, 0};
    struct swept w = {0, "", ""};

    open_ok(fx);
    for (int i = 0; i < 5; i++) {
        char id[8];
        snprintf(id, sizeof id, "u%d", i);
        put_state_str(fx->s, "t/x", id, "n", "v");
    }
    assert_int_equal(store_sweep(fx->s, 'S', &cur, 3, sweep_count, &w), 0);
    assert_int_equal(w.n, 3);
    assert_non_null(cur.key);
    assert_string_equal(w.type, "t/x");
    assert_int_equal(w.id[0], 'u');
    assert_int_equal(store_sweep(fx->s, 'S', &cur, 3, sweep_count, &w), 0);
    assert_int_equal(w.n, 5);                 /* the other two, then the end */
    assert_null(cur.key);                     /* wrapped */
    assert_int_equal(store_sweep(fx->s, 'S', &cur, 100, sweep_count, &w), 0);
    assert_int_equal(w.n, 10);
    store_cursor_free(&cur);
    assert_int_equal(store_state_key_address("Xabc", 4, (char[8]){0}, &(const char *){0},
                                             &(const char *){0}), -1);
}


/* ---- the state filter ----------------------------------------------------------- */

static void open_filtered(struct fx *fx, size_t filter_bytes)
{
    char err[512];
    struct store_options opt = {.compression = true, .state_filter_bytes = filter_bytes};

    err[0] = '\0';
    if (store_open(&fx->s, fx->dir, &opt, &fx->lg, err, sizeof err) != 0) {
        print_error("store_open: %s\n", err);
        fail();
    }
}

static void wait_filter_ready(struct store *s)
{
    struct store_filter_stats fs;
    for (int i = 0; i < 2000; i++) {
        store_filter_stats(s, &fs);
        if (fs.ready) return;
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fail_msg("the state filter's scan did not finish in 10 s");
}

#define FILTER_KEYS 20000

/* The filter, rebuilt at open from what is on disk and fed by every later
 * write, never answers "absent" for a key that exists, and answers most
 * reads of keys that never existed without LevelDB. */
static void state_filter_never_hides_state(void **state)
{
    struct fx *fx = *state;
    struct store_batch *b = store_batch_create();
    struct store_filter_stats fs;
    char id[32];

    open_ok(fx);                                   /* no filter */
    store_filter_stats(fx->s, &fs);
    assert_int_equal(fs.bytes, 0);
    for (int i = 0; i < FILTER_KEYS; i++) {
        snprintf(id, sizeof id, "u%d", i);
        store_batch_put_state(b, "t/x", id, "n", id, strlen(id));
    }
    write_ok(fx->s, b, false);
    store_close(&fx->s);

    open_filtered(fx, 64 * 1024);                  /* 26 bits per key */
    /* Reads during the scan go to LevelDB: still right. */
    assert_state(fx->s, "t/x", "u7", "n", "u7");
    assert_state(fx->s, "t/x", "never", "n", NULL);
    wait_filter_ready(fx->s);
    store_filter_stats(fx->s, &fs);
    assert_int_equal(fs.scanned, FILTER_KEYS);
    assert_int_equal(fs.bytes, 64 * 1024);
    for (int i = 0; i < FILTER_KEYS; i++) {
        snprintf(id, sizeof id, "u%d", i);
        assert_state(fx->s, "t/x", id, "n", id);
        assert_state(fx->s, "t/x", id, "other", NULL);
    }
    store_filter_stats(fx->s, &fs);
    assert_true(fs.skips >= FILTER_KEYS * 99 / 100);

    /* Written after the scan: found at once, before and after a reopen. */
    put_state_str(fx->s, "t/x", "late", "n", "v1");
    assert_state(fx->s, "t/x", "late", "n", "v1");
    store_batch_delete_state(b, "t/x", "u1", "n");
    write_ok(fx->s, b, false);
    assert_state(fx->s, "t/x", "u1", "n", NULL);
    store_close(&fx->s);
    open_filtered(fx, 64 * 1024);
    wait_filter_ready(fx->s);
    assert_state(fx->s, "t/x", "late", "n", "v1");
    assert_state(fx->s, "t/x", "u2", "n", "u2");
    assert_state(fx->s, "t/x", "u1", "n", NULL);
    assert_non_null(strstr(log_text(fx), "event=store.state_filter_ready keys=20000"));
    store_batch_destroy(&b);
}

/* Bootstrap's questions (store_no_state, store_no_idem): an address with a
 * state value or an idempotency record on disk, or written later, is never
 * "new"; most addresses and keys that never existed are, without LevelDB. */
static void state_filter_knows_addresses_and_idem_keys(void **state)
{
    struct fx *fx = *state;
    struct store_batch *b = store_batch_create();
    int fresh_state = 0, fresh_idem = 0;
    char id[32];

    open_ok(fx);                                   /* no filter: never "new" */
    assert_false(store_no_state(fx->s, "t/x", "nobody"));
    assert_false(store_no_idem(fx->s, "t/x", "nobody", "k"));
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof id, "a%d", i);
        store_batch_put_state(b, "t/x", id, "n", "v", 1);
        snprintf(id, sizeof id, "b%d", i);         /* a record, no state */
        store_batch_put_idem(b, "t/x", id, "bootstrap:k", "", 0);
    }
    write_ok(fx->s, b, false);
    store_close(&fx->s);

    open_filtered(fx, 64 * 1024);
    wait_filter_ready(fx->s);
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof id, "a%d", i);
        assert_false(store_no_state(fx->s, "t/x", id));
        snprintf(id, sizeof id, "b%d", i);
        assert_false(store_no_state(fx->s, "t/x", id));
        assert_false(store_no_idem(fx->s, "t/x", id, "bootstrap:k"));
        fresh_idem += store_no_idem(fx->s, "t/x", id, "bootstrap:other");
        snprintf(id, sizeof id, "c%d", i);
        fresh_state += store_no_state(fx->s, "t/x", id);
        fresh_state += store_no_state(fx->s, "t/other", id);
    }
    assert_true(fresh_state >= 2000 * 99 / 100);
    assert_true(fresh_idem >= 1000 * 99 / 100);

    /* Written after the scan, by name or raw (a restore): known at once. */
    store_batch_clear(b);
    store_batch_put_idem(b, "t/x", "c1", "bootstrap:k", "", 0);
    store_batch_put_state(b, "t/x", "c2", "n", "v", 1);
    write_ok(fx->s, b, false);
    assert_false(store_no_state(fx->s, "t/x", "c1"));
    assert_false(store_no_idem(fx->s, "t/x", "c1", "bootstrap:k"));
    assert_false(store_no_state(fx->s, "t/x", "c2"));
    store_close(&fx->s);
    open_filtered(fx, 64 * 1024);
    wait_filter_ready(fx->s);
    assert_false(store_no_state(fx->s, "t/x", "c1"));
    assert_false(store_no_idem(fx->s, "t/x", "c1", "bootstrap:k"));
    assert_false(store_no_state(fx->s, "t/x", "c2"));
    store_batch_destroy(&b);
}

/* A filter far too small for its keys is slow, never wrong. */
static void state_filter_overfull_stays_correct(void **state)
{
    struct fx *fx = *state;
    struct store_batch *b = store_batch_create();
    struct store_filter_stats fs;
    char id[32];

    open_filtered(fx, 64);                         /* one block */
    wait_filter_ready(fx->s);
    for (int i = 0; i < 2000; i++) {
        snprintf(id, sizeof id, "k%d", i);
        store_batch_put_state(b, "t/y", id, "n", id, strlen(id));
    }
    write_ok(fx->s, b, true);
    for (int i = 0; i < 2000; i++) {
        snprintf(id, sizeof id, "k%d", i);
        assert_state(fx->s, "t/y", id, "n", id);
    }
    store_filter_stats(fx->s, &fs);
    assert_int_equal(fs.bytes, 64);
    assert_true(fs.skips < 20);                    /* saturated: LevelDB answers */
    store_batch_destroy(&b);
}

/* Closing while the scan runs stops it; nothing leaks (ASan, valgrind). */
static void state_filter_close_during_scan(void **state)
{
    struct fx *fx = *state;
    struct store_batch *b = store_batch_create();
    char id[32];

    open_ok(fx);
    for (int i = 0; i < 100000; i++) {
        snprintf(id, sizeof id, "c%d", i);
        store_batch_put_state(b, "t/z", id, "n", "v", 1);
    }
    write_ok(fx->s, b, false);
    store_close(&fx->s);
    for (int round = 0; round < 5; round++) {
        open_filtered(fx, 1 << 20);
        assert_state(fx->s, "t/z", "c99999", "n", "v");
        store_close(&fx->s);
    }
    store_batch_destroy(&b);
}

/* ---- state listing (store_list_states) ------------------------------------- */

#define NLIST 6000

struct listed {
    char (*ids)[16];
    int n, max;
    int keys;                      /* keys visited */
    int mode;                      /* what the callback returns after an id */
};

static int list_cb(void *arg, const char *id, const char *name, const uint8_t *val, size_t len)
{
    struct listed *l = arg;
    (void)name;
    (void)val;
    (void)len;
    l->keys++;
    if (l->n && strcmp(l->ids[l->n - 1], id) == 0) return STORE_LIST_NEXT;   /* same id */
    if (l->n == l->max) return STORE_LIST_STOP;
    snprintf(l->ids[l->n++], sizeof l->ids[0], "%s", id);
    return l->mode;
}

static int key_cmp(const void *a, const void *b)
{
    const char *x = a, *y = b;
    unsigned gx = store_key_group("t/x", x), gy = store_key_group("t/x", y);
    return gx != gy ? (gx < gy ? -1 : 1) : strcmp(x, y);
}

static void list_states_in_key_order(void **state)
{
    struct fx *fx = *state;
    struct store_batch *b = store_batch_create();
    static char want[NLIST][16];
    struct listed l = {0};
    int nwant = 0;

    open_ok(fx);
    /* NLIST ids over 4096 key groups: many groups hold several ids, some
     * ids are prefixes of others ("k1", "k10", "k100"); two names each;
     * neighbouring types must not show up. */
    for (int i = 0; i < NLIST; i++) {
        snprintf(want[i], sizeof want[0], "k%d", i);
        store_batch_put_state(b, "t/x", want[i], "a", "1", 1);
        store_batch_put_state(b, "t/x", want[i], "b", "2", 1);
        store_batch_put_state(b, "t/xy", want[i], "a", "1", 1);
        store_batch_put_state(b, "t/w", want[i], "a", "1", 1);
    }
    store_batch_put_message(b, "t/x", "m-only", 1, "m", 1);       /* not state */
    write_ok(fx->s, b, false);
    qsort(want, NLIST, sizeof want[0], key_cmp);

    l.ids = calloc(NLIST, sizeof *l.ids);
    assert_non_null(l.ids);
    l.max = NLIST;
    l.mode = STORE_LIST_SKIP_ID;
    assert_int_equal(store_list_states(fx->s, "t/x", "", NULL, list_cb, &l), 0);
    assert_int_equal(l.n, NLIST);
    for (int i = 0; i < NLIST; i++) assert_string_equal(l.ids[i], want[i]);
    assert_int_equal(l.keys, NLIST);                  /* one key per id: the rest skipped */

    /* NEXT visits every key; same ids */
    memset(&l.n, 0, sizeof l - offsetof(struct listed, n));
    l.max = NLIST;
    l.mode = STORE_LIST_NEXT;
    assert_int_equal(store_list_states(fx->s, "t/x", "", NULL, list_cb, &l), 0);
    assert_int_equal(l.n, NLIST);
    assert_int_equal(l.keys, 2 * NLIST);

    /* after_id: the listing goes on right after it, wherever it is */
    for (int i = 0; i < NLIST; i += 97) {
        memset(&l.n, 0, sizeof l - offsetof(struct listed, n));
        l.max = 3;
        l.mode = STORE_LIST_SKIP_ID;
        assert_int_equal(store_list_states(fx->s, "t/x", "", want[i], list_cb, &l), 0);
        for (int k = 0; k < l.n; k++) assert_string_equal(l.ids[k], want[i + 1 + k]);
        assert_int_equal(l.n, i + 3 < NLIST ? 3 : NLIST - 1 - i);
    }
    /* an after_id that holds no state is a position all the same */
    memset(&l.n, 0, sizeof l - offsetof(struct listed, n));
    l.max = NLIST;
    l.mode = STORE_LIST_SKIP_ID;
    assert_int_equal(store_list_states(fx->s, "t/x", "", "nope", list_cb, &l), 0);
    nwant = 0;
    for (int i = 0; i < NLIST; i++) nwant += key_cmp(want[i], "nope") > 0;
    assert_int_equal(l.n, nwant);

    /* prefix: only those ids, same order; with after_id */
    memset(&l.n, 0, sizeof l - offsetof(struct listed, n));
    l.max = NLIST;
    assert_int_equal(store_list_states(fx->s, "t/x", "k12", NULL, list_cb, &l), 0);
    nwant = 0;
    for (int i = 0; i < NLIST; i++)
        if (strncmp(want[i], "k12", 3) == 0) assert_string_equal(l.ids[nwant++], want[i]);
    assert_int_equal(l.n, nwant);
    assert_int_equal(nwant, 111);                     /* k12, k120..k129, k1200..k1299 */
    {
        int n1 = l.n, at = n1 / 2;
        char (*first)[16] = malloc((size_t)n1 * sizeof *first);
        assert_non_null(first);
        memcpy(first, l.ids, (size_t)n1 * sizeof *first);
        memset(&l.n, 0, sizeof l - offsetof(struct listed, n));
        l.max = NLIST;
        assert_int_equal(store_list_states(fx->s, "t/x", "k12", first[at], list_cb, &l), 0);
        assert_int_equal(l.n, n1 - at - 1);
        for (int k = 0; k < l.n; k++) assert_string_equal(l.ids[k], first[at + 1 + k]);
        free(first);
    }
    memset(&l.n, 0, sizeof l - offsetof(struct listed, n));
    assert_int_equal(store_list_states(fx->s, "t/none", "", NULL, list_cb, &l), 0);
    assert_int_equal(l.n, 0);
    free(l.ids);
    store_batch_destroy(&b);
}

/* ---- upgrade from format 1 ------------------------------------------------------------ */

static void raw_put(leveldb_t *db, const void *k, size_t kl, const void *v, size_t vl)
{
    leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
    char *lerr = NULL;
    leveldb_put(db, wo, k, kl, v, vl, &lerr);
    assert_null(lerr);
    leveldb_writeoptions_destroy(wo);
}

static uint8_t *pack_delayed(const char *ttype, const char *tid, const char *ctype,
                             const char *cid, size_t *len)
{
    Statemesh__V1__StoredDelayed sd = STATEMESH__V1__STORED_DELAYED__INIT;
    Statemesh__V1__Address t = STATEMESH__V1__ADDRESS__INIT, c = STATEMESH__V1__ADDRESS__INIT;
    uint8_t *buf;
    t.type = (char *)ttype;
    t.id = (char *)tid;
    sd.target = &t;
    if (ctype) {
        c.type = (char *)ctype;
        c.id = (char *)cid;
        sd.caller = &c;
    }
    *len = statemesh__v1__stored_delayed__get_packed_size(&sd);
    buf = malloc(*len + 1);
    statemesh__v1__stored_delayed__pack(&sd, buf);
    return buf;
}

/* A format-1 store (as the release before format 2 wrote it): D keys
 * without key group, I keys without address, a reply key in a message. */
static void write_v1_store(struct fx *fx, bool half_done)
{
    leveldb_options_t *o = leveldb_options_create();
    char *lerr = NULL;
    leveldb_t *db;
    uint8_t *v;
    size_t vl;
    uint8_t dkey[17] = {'D'};

    leveldb_options_set_create_if_missing(o, 1);
    db = leveldb_open(o, fx->dir, &lerr);
    assert_null(lerr);
    raw_put(db, "Xformat", 7, "1", 1);
    raw_put(db, "Xkey_groups", 11, "\0\0\x10\0", 4);
    dkey[8] = 100;                        /* due 100, seq 1: from the ingress to t/x ab */
    dkey[16] = 1;
    v = pack_delayed("t/x", "ab", NULL, NULL, &vl);
    raw_put(db, dkey, sizeof dkey, v, vl);
    free(v);
    dkey[8] = 200;                        /* due 200, seq 2: sent by t/y cd to t/x ab */
    dkey[16] = 2;
    v = pack_delayed("t/x", "ab", "t/y", "cd", &vl);
    raw_put(db, dkey, sizeof dkey, v, vl);
    free(v);
    raw_put(db, "Ikey-1", 6, "\x08\x01", 2);
    {
        Statemesh__V1__StoredMessage sm = STATEMESH__V1__STORED_MESSAGE__INIT;
        uint8_t buf[64];
        size_t n;
        uint8_t mkey[3 + 7 + 8] = {'M'};
        uint16_t kg = store_key_group("t/x", "ab");
        sm.reply_key = "call-key";
        n = statemesh__v1__stored_message__pack(&sm, buf);
        mkey[1] = (uint8_t)(kg >> 8);
        mkey[2] = (uint8_t)kg;
        memcpy(mkey + 3, "t/x\0ab\0", 7);
        mkey[17] = 5;
        raw_put(db, mkey, sizeof mkey, buf, n);
    }
    if (half_done) {                      /* an interrupted upgrade: one D key converted */
        uint8_t k2[19] = {'D', 0, 9};
        k2[10] = 50;
        k2[18] = 3;
        raw_put(db, k2, sizeof k2, "x", 1);
        raw_put(db, "Jkey-0", 6, "\x08\x01", 2);
    }
    leveldb_close(db);
    leveldb_options_destroy(o);
}

static int collect_delayed_kg(void *arg, uint16_t kg, int64_t due_ms, uint64_t seq,
                              const uint8_t *val, size_t len)
{
    struct u64s *u = arg;
    (void)val;
    (void)len;
    u->v[u->n++] = ((uint64_t)kg << 32) | ((uint64_t)due_ms << 8) | seq;
    return 0;
}

static int collect_reply_key(void *arg, const char *type, const char *id, uint64_t seq,
                             const uint8_t *val, size_t len)
{
    Statemesh__V1__StoredMessage *sm = statemesh__v1__stored_message__unpack(NULL, len, val);
    (void)type;
    (void)id;
    (void)seq;
    assert_non_null(sm);
    snprintf(arg, 32, "%s", sm->reply_key);
    statemesh__v1__stored_message__free_unpacked(sm, NULL);
    return 0;
}

static void upgrade_from_format_1(void **state)
{
    struct fx *fx = *state;
    struct u64s u = {{0}, 0};
    char err[512], rk[32] = "";
    uint8_t *v;
    size_t len;

    for (int half = 0; half <= 1; half++) {
        nftw(fx->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        assert_int_equal(mkdir(fx->dir, 0700), 0);
        write_v1_store(fx, half);
        assert_int_equal(store_open(&fx->s, fx->dir, NULL, &fx->lg, err, sizeof err), 0);
        u.n = 0;
        assert_int_equal(store_scan_delayed(fx->s, collect_delayed_kg, &u), 0);
        assert_int_equal(u.n, 2 + half);
        {
            uint64_t want[3];
            int n = 0;
            uint16_t kx = store_key_group("t/x", "ab"), ky = store_key_group("t/y", "cd");
            if (half) want[n++] = (9ULL << 32) | (50 << 8) | 3;
            want[n++] = ((uint64_t)kx << 32) | (100 << 8) | 1;  /* the target owns it */
            want[n++] = ((uint64_t)ky << 32) | (200 << 8) | 2;  /* the sender owns it */
            if (kx > ky) {
                uint64_t t = want[n - 1];
                want[n - 1] = want[n - 2];
                want[n - 2] = t;
            }
            for (int i = 0; i < n; i++) assert_int_equal(u.v[i], want[i]);
        }
        assert_int_equal(store_has_kind(fx->s, 'I'), 0);
        assert_int_equal(store_has_kind(fx->s, 'J'), 1);
        assert_int_equal(store_get_legacy_idem(fx->s, "key-1", &v, &len), 0);
        assert_memory_equal(v, "\x08\x01", 2);
        free(v);
        assert_int_equal(store_get_meta(fx->s, "format", &v, &len), 0);
        assert_memory_equal(v, "2", 1);
        free(v);
        assert_int_equal(store_scan_messages(fx->s, collect_reply_key, rk), 0);
        assert_string_equal(rk, "\x02" "call-key");
        assert_non_null(strstr(log_text(fx), "event=store.upgraded"));
        store_close(&fx->s);
        /* Opening again changes nothing. */
        assert_int_equal(store_open(&fx->s, fx->dir, NULL, &fx->lg, err, sizeof err), 0);
        assert_int_equal(store_scan_messages(fx->s, collect_reply_key, rk), 0);
        assert_string_equal(rk, "\x02" "call-key");
        store_close(&fx->s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(key_group_stable_and_in_range),
        cmocka_unit_test_setup_teardown(put_get_delete_state, setup, teardown),
        cmocka_unit_test_setup_teardown(messages_scan_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(on_disk_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(batch_atomicity, setup, teardown),
        cmocka_unit_test_setup_teardown(reopen_persists, setup, teardown),
        cmocka_unit_test_setup_teardown(metadata_mismatch_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(foreign_database_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(upgrade_from_format_1, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupt_message_key, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_dir_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(second_open_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(fault_injection, setup, teardown),
        cmocka_unit_test_setup_teardown(delayed_due_order_and_point_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(egress_bounds_and_ranges, setup, teardown),
        cmocka_unit_test_setup_teardown(deadletters_page_by_id, setup, teardown),
        cmocka_unit_test_setup_teardown(sweep_visits_a_slice_and_wraps, setup, teardown),
        cmocka_unit_test_setup_teardown(state_filter_never_hides_state, setup, teardown),
        cmocka_unit_test_setup_teardown(state_filter_knows_addresses_and_idem_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(state_filter_overfull_stays_correct, setup, teardown),
        cmocka_unit_test_setup_teardown(state_filter_close_during_scan, setup, teardown),
        cmocka_unit_test_setup_teardown(list_states_in_key_order, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
