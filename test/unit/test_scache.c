/* Unit tests for runtime/scache.c: values and known-absent, several names
 * per address, resizing values, pins, LRU eviction, accounting, growth, and
 * the lifetime of pointers returned by scache_get(). Run under SANITIZE=1
 * to turn a premature free into a failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "scache.h"

#define T "bench/counter"
#define INT64 "statemesh/int64"

static void set_i64(struct scache *c, const char *id, const char *name, int64_t n, uint64_t pin)
{
    struct sc_value v = {INT64, (const uint8_t *)&n, sizeof n, 0};
    scache_set(c, T, id, name, &v, pin);
}

static void set_bytes(struct scache *c, const char *id, const char *name, const char *type,
                      const void *data, size_t len, int64_t exp)
{
    struct sc_value v = {type, data, len, exp};
    scache_set(c, T, id, name, &v, 0);
}

static int64_t get_i64(struct scache *c, const char *id, const char *name)
{
    struct sc_value v;
    int64_t n;
    assert_int_equal(scache_get(c, T, id, name, &v), 1);
    assert_non_null(v.typename);
    assert_string_equal(v.typename, INT64);
    assert_int_equal(v.len, sizeof n);
    memcpy(&n, v.data, sizeof n);
    return n;
}

static int has(struct scache *c, const char *id, const char *name)
{
    struct sc_value v;
    return scache_get(c, T, id, name, &v);
}

static void test_get_set_absent(void **state)
{
    (void)state;
    struct scache c;
    struct sc_value v, absent = {NULL, NULL, 0, 1234};

    scache_init(&c, 1 << 20);
    assert_int_equal(scache_get(&c, T, "a", "count", &v), 0);
    assert_int_equal(c.misses, 1);
    set_i64(&c, "a", "count", 42, 0);
    assert_int_equal(get_i64(&c, "a", "count"), 42);
    assert_int_equal(c.hits, 1);
    assert_int_equal(scache_get(&c, T, "a", "other", &v), 0);     /* same address, other name */
    assert_int_equal(scache_get(&c, "bench/other", "a", "count", &v), 0);
    assert_int_equal(scache_get(&c, T, "b", "count", &v), 0);

    scache_set(&c, T, "b", "count", &absent, 0);                  /* known absent */
    assert_int_equal(scache_get(&c, T, "b", "count", &v), 1);
    assert_null(v.typename);
    assert_int_equal(v.len, 0);
    assert_int_equal(v.expires_at_ms, 1234);

    scache_set(&c, T, "a", "count", &absent, 0);                  /* a value deleted */
    assert_int_equal(scache_get(&c, T, "a", "count", &v), 1);
    assert_null(v.typename);
    set_i64(&c, "a", "count", 7, 0);                              /* and written again */
    assert_int_equal(get_i64(&c, "a", "count"), 7);
    assert_int_equal(c.count, 2);
    scache_cleanup(&c);
}

static void test_several_names(void **state)
{
    (void)state;
    struct scache c;
    struct sc_value v;
    char big[300];

    memset(big, 'x', sizeof big);
    scache_init(&c, 1 << 20);
    set_i64(&c, "a", "count", 1, 0);
    set_bytes(&c, "a", "name", "statemesh/string", "alice", 5, 0);
    set_bytes(&c, "a", "blob", "user/blob", big, sizeof big, 99);
    set_i64(&c, "a", "seen", 3, 0);
    assert_int_equal(c.count, 1);
    assert_int_equal(get_i64(&c, "a", "count"), 1);
    assert_int_equal(get_i64(&c, "a", "seen"), 3);
    assert_int_equal(scache_get(&c, T, "a", "name", &v), 1);
    assert_string_equal(v.typename, "statemesh/string");
    assert_int_equal(v.len, 5);
    assert_memory_equal(v.data, "alice", 5);
    assert_int_equal(v.expires_at_ms, 0);
    assert_int_equal(scache_get(&c, T, "a", "blob", &v), 1);
    assert_string_equal(v.typename, "user/blob");
    assert_int_equal(v.len, sizeof big);
    assert_memory_equal(v.data, big, sizeof big);
    assert_int_equal(v.expires_at_ms, 99);

    /* rewriting one (in the middle, another size) leaves the others */
    set_bytes(&c, "a", "name", "statemesh/string", "bob", 3, 0);
    set_i64(&c, "a", "count", 2, 0);
    assert_int_equal(get_i64(&c, "a", "count"), 2);
    assert_int_equal(get_i64(&c, "a", "seen"), 3);
    assert_int_equal(scache_get(&c, T, "a", "name", &v), 1);
    assert_int_equal(v.len, 3);
    assert_memory_equal(v.data, "bob", 3);
    assert_int_equal(scache_get(&c, T, "a", "blob", &v), 1);
    assert_memory_equal(v.data, big, sizeof big);
    scache_evict(&c, 0);
    scache_cleanup(&c);
}

static void test_replace_sizes_types_expiry(void **state)
{
    (void)state;
    struct scache c;
    struct sc_value v;
    static const size_t sizes[] = {8, 100, 3, 0, 4000, 8, 8, 1};
    char buf[4000];

    scache_init(&c, 1 << 20);
    set_i64(&c, "z", "other", 5, 0);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        const char *type = i % 2 ? "user/odd" : "user/even";
        int64_t exp = i % 3 ? (int64_t)(1000 + i) : 0;
        memset(buf, 'a' + (int)i, sizeof buf);
        set_bytes(&c, "a", "v", type, buf, sizes[i], exp);
        assert_int_equal(scache_get(&c, T, "a", "v", &v), 1);
        assert_string_equal(v.typename, type);
        assert_int_equal(v.len, sizes[i]);
        if (sizes[i]) assert_memory_equal(v.data, buf, sizes[i]);
        assert_int_equal(v.expires_at_ms, exp);
        if (i % 3 == 2) scache_evict(&c, 0);
    }
    assert_int_equal(get_i64(&c, "z", "other"), 5);
    assert_int_equal(c.count, 2);
    scache_cleanup(&c);
}

static void test_pins_follow_the_generation(void **state)
{
    (void)state;
    struct scache c;

    scache_init(&c, 0);                      /* nothing unpinned survives an evict */
    set_i64(&c, "p", "count", 1, 5);
    set_i64(&c, "q", "count", 1, 0);
    set_i64(&c, "r", "count", 1, 3);
    set_i64(&c, "r", "count", 2, 7);         /* a later write raises the pin */
    set_i64(&c, "r", "count", 3, 0);         /* a read-through (0) does not lower it */
    scache_evict(&c, 4);
    assert_false(has(&c, "q", "count"));
    assert_int_equal(get_i64(&c, "p", "count"), 1);
    assert_int_equal(get_i64(&c, "r", "count"), 3);
    scache_evict(&c, 5);
    assert_false(has(&c, "p", "count"));
    assert_int_equal(get_i64(&c, "r", "count"), 3);
    scache_evict(&c, 7);
    assert_false(has(&c, "r", "count"));
    assert_int_equal(c.count, 0);
    scache_cleanup(&c);
}

static void test_lru_order_under_budget(void **state)
{
    (void)state;
    struct scache c;
    char id[16];

    scache_init(&c, (size_t)1 << 30);
    for (int i = 0; i < 4; i++) {
        snprintf(id, sizeof id, "%d", i);
        set_i64(&c, id, "count", i, 0);
    }
    scache_evict(&c, 0);
    c.budget = c.bytes;                      /* exactly these four fit */
    assert_int_equal(get_i64(&c, "0", "count"), 0);      /* 0 is now the most recent */
    set_i64(&c, "2", "count", 22, 0);                    /* so is 2: LRU 1, 3, 0, 2 */
    set_i64(&c, "4", "count", 4, 0);
    scache_evict(&c, 0);
    assert_int_equal(c.count, 4);
    assert_false(has(&c, "1", "count"));
    set_i64(&c, "5", "count", 5, 0);
    set_i64(&c, "6", "count", 6, 0);
    scache_evict(&c, 0);
    assert_false(has(&c, "3", "count"));
    assert_false(has(&c, "0", "count"));
    assert_int_equal(get_i64(&c, "2", "count"), 22);
    assert_int_equal(get_i64(&c, "4", "count"), 4);
    assert_int_equal(get_i64(&c, "5", "count"), 5);
    assert_int_equal(get_i64(&c, "6", "count"), 6);
    assert_true(c.bytes <= c.budget);
    scache_cleanup(&c);
}

static void test_accounting(void **state)
{
    (void)state;
    struct scache c;
    size_t base, one;
    char id[16], big[1000];

    scache_init(&c, (size_t)1 << 30);
    assert_int_equal(c.bytes, 0);
    set_i64(&c, "12345", "count", 1, 0);
    scache_evict(&c, 0);
    base = c.bytes;
    set_i64(&c, "12346", "count", 1, 0);
    one = c.bytes - base;
    /* one allocation for a counter: 72 bytes, an 80-byte chunk */
    assert_int_equal(one, 80);
    set_i64(&c, "12346", "count", 2, 0);     /* same size: in place */
    assert_int_equal(c.bytes - base, one);

    memset(big, 'b', sizeof big);
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof id, "%d", i);
        set_i64(&c, id, "count", i, (uint64_t)(i % 3));
        set_bytes(&c, id, "blob", i % 2 ? "user/a" : "user/b", big, (size_t)(i % 1000), i);
        if (i % 7 == 0) set_bytes(&c, id, "blob", NULL, NULL, 0, 0);
    }
    assert_true(c.bytes > 5000 * 100);
    c.budget = 0;
    scache_evict(&c, 2);
    assert_int_equal(c.count, 0);
    assert_null(c.head);
    assert_null(c.tail);
    /* what stays: the smallest bucket array and the intern table's arrays */
    assert_true(c.bytes < 10000);
    scache_cleanup(&c);
}

static void test_many_addresses(void **state)
{
    (void)state;
    struct scache c;
    char id[16];
    const int n = 200000;

    scache_init(&c, (size_t)1 << 30);
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof id, "addr-%d", i);
        set_i64(&c, id, "count", i, 0);
        if (i % 1000 == 0) scache_evict(&c, 0);
    }
    assert_int_equal(c.count, n);
    assert_true(c.nbuckets >= (size_t)n);
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof id, "addr-%d", i);
        assert_int_equal(get_i64(&c, id, "count"), i);
    }
    assert_int_equal(c.hits, n);
    /* each counter costs its block plus its share of the bucket array */
    assert_true(c.bytes / (size_t)n < 112);
    c.budget = 0;
    scache_evict(&c, 0);
    assert_int_equal(c.count, 0);
    assert_true(c.nbuckets <= 1024);         /* the table shrank back */
    set_i64(&c, "again", "count", 9, 0);
    assert_int_equal(get_i64(&c, "again", "count"), 9);
    scache_cleanup(&c);
}

/* scache.h: pointers from scache_get() stay valid until the next
 * scache_evict(). Every kind of set that moves or drops memory happens
 * here between a get and the use of its pointers; ASan fails the test if
 * any of that memory was freed early. Reads go through memcmp/strcmp, which
 * ASan sees (cmocka's assert_memory_equal runs uninstrumented). */
static void test_get_pointers_live_until_evict(void **state)
{
    (void)state;
    struct scache c;
    struct sc_value v1, v2, v3, w;
    char big[500], type[32];
    int64_t one = 1;

    memset(big, 'q', sizeof big);
    scache_init(&c, 0);
    set_bytes(&c, "a", "first", "user/only-here", "12345678", 8, 0);
    set_bytes(&c, "a", "second", "user/second", "abc", 3, 0);
    assert_int_equal(scache_get(&c, T, "a", "first", &v1), 1);
    assert_int_equal(scache_get(&c, T, "a", "second", &v2), 1);

    /* another name appended (the entry moves) */
    set_i64(&c, "a", "third", 1, 0);
    /* the first value replaced by a bigger one of another type: the old
     * typename loses its last user */
    set_bytes(&c, "a", "first", "user/other", big, sizeof big, 5);
    /* and the second by a smaller one */
    set_bytes(&c, "a", "second", "user/second", "x", 1, 0);
    assert_string_equal(v1.typename, "user/only-here");
    assert_int_equal(memcmp(v1.data, "12345678", 8), 0);
    assert_string_equal(v2.typename, "user/second");
    assert_int_equal(memcmp(v2.data, "abc", 3), 0);

    /* a value set from the cache's own bytes, same size and bigger */
    assert_int_equal(scache_get(&c, T, "a", "first", &v3), 1);
    scache_set(&c, T, "a", "first", &v3, 0);
    assert_int_equal(scache_get(&c, T, "a", "first", &w), 1);
    assert_int_equal(w.len, sizeof big);
    assert_int_equal(memcmp(w.data, big, sizeof big), 0);
    snprintf(type, sizeof type, "%s", v3.typename);
    w.len = 8;
    set_bytes(&c, "b", "x", w.typename, w.data, w.len, 0);    /* another entry, from a */
    assert_int_equal(scache_get(&c, T, "b", "x", &w), 1);
    assert_string_equal(w.typename, type);
    assert_int_equal(memcmp(w.data, big, 8), 0);

    /* an entry deleted (known absent) while its value is held */
    assert_int_equal(scache_get(&c, T, "a", "third", &v3), 1);
    set_bytes(&c, "a", "third", NULL, NULL, 0, 0);
    assert_int_equal(v3.len, sizeof one);
    assert_int_equal(memcmp(v3.data, &one, sizeof one), 0);
    assert_string_equal(v3.typename, INT64);

    scache_evict(&c, 0);                     /* now they may go */
    assert_int_equal(c.count, 0);
    scache_cleanup(&c);
}

/* More distinct typenames than the intern table takes: the rest are
 * stored inline, and everything still reads back. */
static void test_intern_table_full(void **state)
{
    (void)state;
    struct scache c;
    struct sc_value v;
    char id[16], type[32];
    const int n = 70000;

    scache_init(&c, (size_t)1 << 30);
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof id, "%d", i);
        snprintf(type, sizeof type, "user/t%d", i);
        set_bytes(&c, id, "v", type, id, strlen(id), i % 2 ? 0 : 10);
    }
    set_bytes(&c, "0", "w", "user/t69999", "w", 1, 0);
    set_bytes(&c, "69999", "w", "user/t0", "w", 1, 0);
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof id, "%d", i);
        snprintf(type, sizeof type, "user/t%d", i);
        assert_int_equal(scache_get(&c, T, id, "v", &v), 1);
        assert_string_equal(v.typename, type);
        assert_int_equal(v.len, strlen(id));
        assert_memory_equal(v.data, id, v.len);
        assert_int_equal(v.expires_at_ms, i % 2 ? 0 : 10);
    }
    assert_int_equal(scache_get(&c, T, "0", "w", &v), 1);
    assert_string_equal(v.typename, "user/t69999");
    /* rewrites between spilled and interned */
    set_bytes(&c, "69999", "v", "user/t1", "z", 1, 0);
    set_bytes(&c, "1", "v", "user/t69998", "zz", 2, 0);
    assert_int_equal(scache_get(&c, T, "69999", "v", &v), 1);
    assert_string_equal(v.typename, "user/t1");
    assert_int_equal(scache_get(&c, T, "1", "v", &v), 1);
    assert_string_equal(v.typename, "user/t69998");
    assert_memory_equal(v.data, "zz", 2);
    c.budget = 0;
    scache_evict(&c, 0);
    assert_int_equal(c.count, 0);
    assert_true(c.bytes < 2000000);          /* the strings went; arrays stay */
    set_bytes(&c, "x", "v", "user/fresh", "1", 1, 0);   /* ids are reused */
    assert_int_equal(scache_get(&c, T, "x", "v", &v), 1);
    assert_string_equal(v.typename, "user/fresh");
    scache_cleanup(&c);
}

/* Random sets, deletes and gets against a plain table. */
#define M_ADDR 40
#define M_NAMES 4
struct model {
    int known;
    int present;
    char type[16];
    uint8_t data[64];
    size_t len;
    int64_t exp;
};

static void test_random_against_model(void **state)
{
    (void)state;
    static const char *names[M_NAMES] = {"count", "name", "a-longer-state-name", "x"};
    static const char *types[] = {"t/a", "t/bb", "statemesh/int64", "user/some-longer-type"};
    struct model m[M_ADDR][M_NAMES];
    struct scache c;
    uint64_t x = 12345;
    char id[16];

    memset(m, 0, sizeof m);
    scache_init(&c, (size_t)1 << 30);
    for (int step = 0; step < 200000; step++) {
        int a, k, op;
        struct sc_value v;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        a = (int)(x % M_ADDR);
        k = (int)((x >> 8) % M_NAMES);
        op = (int)((x >> 16) % 8);
        snprintf(id, sizeof id, "id%d", a);
        if (op < 3) {
            struct model *e = &m[a][k];
            e->known = e->present = 1;
            snprintf(e->type, sizeof e->type, "%s", types[(x >> 24) % 4]);
            e->len = (size_t)((x >> 32) % 65);
            if ((x >> 40) % 3 == 0) e->len = 8;
            for (size_t i = 0; i < e->len; i++) e->data[i] = (uint8_t)(x >> (i % 56));
            e->exp = (x >> 48) % 2 ? (int64_t)step : 0;
            set_bytes(&c, id, names[k], e->type, e->data, e->len, e->exp);
        } else if (op == 3) {
            m[a][k].known = 1;
            m[a][k].present = 0;
            m[a][k].exp = 0;
            set_bytes(&c, id, names[k], NULL, NULL, 0, 0);
        } else if (op == 4) {
            scache_evict(&c, 0);
        } else {
            struct model *e = &m[a][k];
            int r = scache_get(&c, T, id, names[k], &v);
            assert_int_equal(r, e->known);
            if (!r) continue;
            if (!e->present) {
                assert_null(v.typename);
                continue;
            }
            assert_string_equal(v.typename, e->type);
            assert_int_equal(v.len, e->len);
            if (e->len) assert_memory_equal(v.data, e->data, e->len);
            assert_int_equal(v.expires_at_ms, e->exp);
        }
    }
    assert_true(c.count <= M_ADDR);
    scache_cleanup(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_set_absent),
        cmocka_unit_test(test_several_names),
        cmocka_unit_test(test_replace_sizes_types_expiry),
        cmocka_unit_test(test_pins_follow_the_generation),
        cmocka_unit_test(test_lru_order_under_budget),
        cmocka_unit_test(test_accounting),
        cmocka_unit_test(test_many_addresses),
        cmocka_unit_test(test_get_pointers_live_until_evict),
        cmocka_unit_test(test_intern_table_full),
        cmocka_unit_test(test_random_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
