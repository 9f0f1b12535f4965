/* Unit tests for the pure parts of runtime/cluster.c: the Flink-style range
 * split and the parsing of the values kept in etcd. The control plane
 * against a real etcd: test/integration/test_cluster.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cluster.h"
#include "store.h"

static void split_even_contiguous(void **state)
{
    uint32_t first, last;

    (void)state;
    cluster_split(4096, 3, 0, &first, &last);
    assert_int_equal(first, 0);
    assert_int_equal(last, 1365);
    cluster_split(4096, 3, 1, &first, &last);
    assert_int_equal(first, 1366);
    assert_int_equal(last, 2730);
    cluster_split(4096, 3, 2, &first, &last);
    assert_int_equal(first, 2731);
    assert_int_equal(last, 4095);
    cluster_split(4096, 1, 0, &first, &last);
    assert_int_equal(first, 0);
    assert_int_equal(last, 4095);
    /* every count: the ranges tile 0..groups-1 and differ by at most one */
    for (uint32_t p = 1; p <= 100; p++) {
        uint32_t next = 0, min = UINT32_MAX, max = 0;
        for (uint32_t i = 0; i < p; i++) {
            cluster_split(STORE_KEY_GROUPS, p, i, &first, &last);
            assert_int_equal(first, next);
            assert_true(last >= first);
            if (last - first + 1 < min) min = last - first + 1;
            if (last - first + 1 > max) max = last - first + 1;
            next = last + 1;
        }
        assert_int_equal(next, STORE_KEY_GROUPS);
        assert_true(max - min <= 1);
    }
}

static void range_values(void **state)
{
    char owner[65];
    uint32_t end = 0;
    const char *v;

    (void)state;
    v = "end=1365 owner=n-0";
    assert_int_equal(cluster_parse_range(v, strlen(v), &end, owner, sizeof owner), 0);
    assert_int_equal(end, 1365);
    assert_string_equal(owner, "n-0");
    v = "owner=n-2 state=active end=4095";           /* any order, unknown words ignored */
    assert_int_equal(cluster_parse_range(v, strlen(v), &end, owner, sizeof owner), 0);
    assert_int_equal(end, 4095);
    assert_string_equal(owner, "n-2");
    v = "end=1365 owner=n-0garbage";                  /* length-bounded: no NUL needed */
    assert_int_equal(cluster_parse_range(v, 18, &end, owner, sizeof owner), 0);
    assert_string_equal(owner, "n-0");
    static const char *bad[] = {"", "end=12", "owner=a", "end=4096 owner=a", "end=-1 owner=a",
                                "end=1x owner=a", "end= owner=a", "end=1 owner=", "endx=1 owner=a"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(cluster_parse_range(bad[i], strlen(bad[i]), &end, owner, sizeof owner), -1);
    v = "end=1 owner=0123456789";                     /* too long for the buffer */
    assert_int_equal(cluster_parse_range(v, strlen(v), &end, owner, 5), -1);
}

static void words(void **state)
{
    char out[32];
    const char *v = "key_groups=4096 hash=xxh3_64 format=1";

    (void)state;
    assert_int_equal(cluster_word(v, strlen(v), "hash", out, sizeof out), 0);
    assert_string_equal(out, "xxh3_64");
    assert_int_equal(cluster_word(v, strlen(v), "format", out, sizeof out), 0);
    assert_string_equal(out, "1");
    assert_int_equal(cluster_word(v, strlen(v), "key", out, sizeof out), -1);   /* whole names */
    assert_int_equal(cluster_word(v, strlen(v), "groups", out, sizeof out), -1);
    assert_int_equal(cluster_word(v, strlen(v), "key_groups", out, 4), -1);     /* too long */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(split_even_contiguous),
        cmocka_unit_test(range_values),
        cmocka_unit_test(words),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
