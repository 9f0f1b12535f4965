/* Unit tests for runtime/histo.c (bucket edges, cumulative counts) and
 * metrics_parse_addr (runtime/metrics.c): what runtime.metrics accepts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "histo.h"
#include "metrics.h"

static void test_bucket_edges(void **state)
{
    (void)state;
    struct histo h;
    memset(&h, 0, sizeof h);
    histo_observe(&h, -5);                        /* counts as 0: first bucket */
    histo_observe(&h, histo_bound_ns(0));         /* on the bound: that bucket (le) */
    histo_observe(&h, histo_bound_ns(0) + 1);     /* just above: the next */
    histo_observe(&h, histo_bound_ns(HISTO_BUCKETS - 1));
    histo_observe(&h, histo_bound_ns(HISTO_BUCKETS - 1) + 1);   /* +Inf only */
    assert_int_equal(h.count, 5);
    assert_int_equal(h.counts[0], 2);
    assert_int_equal(h.counts[1], 1);
    assert_int_equal(h.counts[HISTO_BUCKETS - 1], 1);
    assert_int_equal(h.counts[HISTO_BUCKETS], 1);
    assert_int_equal(histo_cumulative(&h, 0), 2);
    assert_int_equal(histo_cumulative(&h, 1), 3);
    assert_int_equal(histo_cumulative(&h, HISTO_BUCKETS - 1), 4);
    assert_int_equal(histo_cumulative(&h, HISTO_BUCKETS), 5);
    assert_true(h.sum_ns == 2 * histo_bound_ns(0) + 1 + 2 * histo_bound_ns(HISTO_BUCKETS - 1) + 1);
}

static void test_bounds_increase(void **state)
{
    (void)state;
    assert_int_equal(histo_bound_ns(0), 100000);          /* 0.1 ms */
    assert_int_equal(histo_bound_ns(HISTO_BUCKETS - 1), 10000000000LL);   /* 10 s */
    for (int i = 1; i < HISTO_BUCKETS; i++) assert_true(histo_bound_ns(i) > histo_bound_ns(i - 1));
}

static void test_addresses(void **state)
{
    (void)state;
    struct sockaddr_storage sa;
    socklen_t len;
    char err[200];

    assert_int_equal(metrics_parse_addr("127.0.0.1:9464", &sa, &len, err, sizeof err), 0);
    assert_int_equal(sa.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&sa)->sin_port), 9464);
    assert_int_equal(metrics_parse_addr("0.0.0.0:1", &sa, &len, err, sizeof err), 0);
    assert_int_equal(metrics_parse_addr("localhost:65535", &sa, &len, err, sizeof err), 0);
    assert_int_equal(ntohl(((struct sockaddr_in *)&sa)->sin_addr.s_addr), INADDR_LOOPBACK);
    assert_int_equal(metrics_parse_addr("[::1]:9464", &sa, &len, err, sizeof err), 0);
    assert_int_equal(sa.ss_family, AF_INET6);
    assert_int_equal(len, sizeof(struct sockaddr_in6));

    const char *bad[] = {"", ":9464", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
                         "127.0.0.1:+80", "127.0.0.1:80x", "127.0.0.1: 80", "host.example:80",
                         "::1:9464", "[::1:9464", "[]:80", "[127.0.0.1]:80", "1.2.3.4.5:80",
                         "127.0.0.1:99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        assert_int_equal(metrics_parse_addr(bad[i], &sa, &len, err, sizeof err), -1);
        assert_true(strlen(err) > 10);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_edges),
        cmocka_unit_test(test_bounds_increase),
        cmocka_unit_test(test_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
