/* Unit tests for runtime/etcd.c without an etcd: prefix ends, endpoint
 * lists, and the wire tags of our etcd .proto (etcd's field numbers). The
 * client against a real etcd: test/integration/test_etcd_client.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <grpc/grpc.h>

#include "etcd.h"

static void test_prefix_end(void **state)
{
    uint8_t out[8];
    size_t n = etcd_prefix_end("/sm/a", 5, out);
    assert_int_equal(n, 5);
    assert_memory_equal(out, "/sm/b", 5);
    n = etcd_prefix_end("a\xff\xff", 3, out);       /* trailing 0xff: carry */
    assert_int_equal(n, 1);
    assert_int_equal(out[0], 'b');
    n = etcd_prefix_end("\xff", 1, out);            /* no end: every key from it */
    assert_int_equal(n, 1);
    assert_int_equal(out[0], 0);
    n = etcd_prefix_end("", 0, out);
    assert_int_equal(n, 1);
    assert_int_equal(out[0], 0);
}

static void test_endpoint_lists(void **state)
{
    static const struct {
        const char *list, *err;
    } cases[] = {
        {"http://127.0.0.1:2379", NULL},
        {"127.0.0.1:2379,http://127.0.0.1:2380/", NULL},
        {"", "the list is empty"},
        {"https://127.0.0.1:2379", "https needs a tls group"},
        {"127.0.0.1", "must be http://host:port"},
        {"http://127.0.0.1:x", "must be http://host:port"},
        {"http://127.0.0.1:1/path", "must be http://host:port"},
        {":2379", "must be http://host:port"},
        {"a:1,,b:2", "an endpoint is empty"},
        {"a:1,", NULL},
    };
    struct log lg = {LOG_LEVEL_ERROR, stderr};
    struct rpc_loop loop;
    struct timer_heap timers = {0};

    grpc_init();
    assert_int_equal(rpc_loop_init(&loop, &lg), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct etcd_client *c = (void *)1;
        char err[300] = "";
        int rc = etcd_client_create(&c, &loop, &timers, cases[i].list, err, sizeof err);
        if (cases[i].err) {
            assert_int_equal(rc, -1);
            assert_null(c);
            assert_non_null(strstr(err, cases[i].err));
        } else {
            assert_int_equal(rc, 0);
            assert_true(etcd_client_idle(c));
            /* the first endpoint, without its scheme */
            assert_string_equal(etcd_client_endpoint(c), i == 9 ? "a:1" : "127.0.0.1:2379");
            etcd_client_destroy(&c);
            assert_null(c);
        }
    }
    timer_heap_cleanup(&timers);
    rpc_loop_cleanup(&loop);
    grpc_shutdown_blocking();
}

/* etcd's field numbers, as wire tags (field << 3 | wire type). */
static void test_wire_tags(void **state)
{
    uint8_t buf[64];
    size_t n;

    Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
    put.key = (ProtobufCBinaryData){1, (uint8_t *)"k"};
    put.value = (ProtobufCBinaryData){1, (uint8_t *)"v"};
    put.lease = 5;
    n = etcdserverpb__put_request__pack(&put, buf);
    assert_int_equal(n, 8);
    assert_memory_equal(buf, "\x0a\x01k\x12\x01v\x18\x05", 8);

    Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
    cmp.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL;   /* 3 */
    cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD;         /* 2 */
    cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
    cmp.mod_revision = 7;
    n = etcdserverpb__compare__pack(&cmp, buf);
    assert_int_equal(n, 6);
    assert_memory_equal(buf, "\x08\x03\x10\x02\x30\x07", 6);

    Etcdserverpb__WatchCreateRequest wc = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    wc.start_revision = 9;
    wc.prev_kv = 1;
    n = etcdserverpb__watch_create_request__pack(&wc, buf);
    assert_int_equal(n, 4);
    assert_memory_equal(buf, "\x18\x09\x30\x01", 4);

    /* WatchResponse.events = 11 (tag 0x5a); Event.kv = 2; KeyValue.mod_revision = 3 */
    static const uint8_t wr[] = {0x5a, 0x06, 0x08, 0x01, 0x12, 0x02, 0x18, 0x04};
    Etcdserverpb__WatchResponse *m = etcdserverpb__watch_response__unpack(NULL, sizeof wr, wr);
    assert_non_null(m);
    assert_int_equal(m->n_events, 1);
    assert_int_equal(m->events[0]->type, MVCCPB__EVENT__EVENT_TYPE__DELETE);
    assert_int_equal(m->events[0]->kv->mod_revision, 4);
    etcdserverpb__watch_response__free_unpacked(m, NULL);

    /* LeaseKeepAliveResponse: ID = 2, TTL = 3 */
    static const uint8_t ka[] = {0x10, 0x2a, 0x18, 0x05};
    Etcdserverpb__LeaseKeepAliveResponse *k = etcdserverpb__lease_keep_alive_response__unpack(NULL, sizeof ka, ka);
    assert_non_null(k);
    assert_int_equal(k->id, 42);
    assert_int_equal(k->ttl, 5);
    etcdserverpb__lease_keep_alive_response__free_unpacked(k, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefix_end),
        cmocka_unit_test(test_endpoint_lists),
        cmocka_unit_test(test_wire_tags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
