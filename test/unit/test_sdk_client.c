/* The ingress client's local checks and failure paths (sdk-c/client.c,
 * send_stream.c, subscribe.c), without a runtime: bad arguments are refused
 * before any RPC with INVALID_ARGUMENT, and a SendStream or Subscribe to an
 * address where nothing listens fails with UNAVAILABLE and a clear message;
 * so do the dead-letter calls (their answers are tested against the runtime
 * in test/integration/test_cli_deadletters.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "statemesh/client.h"

#define NOWHERE "127.0.0.1:1" /* connection refused */

static int setup(void **state)
{
    sm_client *c = sm_client_create(NOWHERE);
    assert_non_null(c);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    sm_client *c = *state;
    sm_client_destroy(&c);
    assert_null(c);
    return 0;
}

static void expect_einval(int rc, const sm_error *err, const char *needle)
{
    assert_int_equal(rc, SM_EINVAL);
    assert_int_equal(err->code, 3); /* INVALID_ARGUMENT */
    if (!strstr(err->message, needle)) fail_msg("'%s' lacks '%s'", err->message, needle);
}

static void test_send_and_call_options_checked_locally(void **state)
{
    sm_client *c = *state;
    sm_value v = sm_value_string("x");
    sm_value_buf reply = SM_VALUE_BUF_INIT;
    char long_key[300];
    sm_error err;
    sm_send_options so = {NULL, 0};
    sm_call_options co = {NULL};

    memset(long_key, 'k', 257);
    long_key[257] = '\0';
    so.idempotency_key = long_key;
    expect_einval(sm_client_send_opts(c, "a/b", "x", &v, &so, 1000, &err), &err,
                  "idempotency key is 257 bytes, at most 256");
    so.idempotency_key = "\xff";
    expect_einval(sm_client_send_opts(c, "a/b", "x", &v, &so, 1000, &err), &err, "not valid UTF-8");
    so.idempotency_key = NULL;
    so.delay_ms = SM_MAX_DELAY_MS + 1;
    expect_einval(sm_client_send_opts(c, "a/b", "x", &v, &so, 1000, &err), &err,
                  "above the maximum");
    expect_einval(sm_client_send_opts(c, "", "x", &v, NULL, 1000, &err), &err, "function type is empty");
    expect_einval(sm_client_send_opts(c, "a/b", "", &v, NULL, 1000, &err), &err, "id is empty");
    co.idempotency_key = long_key;
    expect_einval(sm_client_call_opts(c, "a/b", "x", &v, &co, 1000, &reply, &err), &err,
                  "idempotency key");
    assert_null(reply.value.typename);

    /* valid options reach the network: UNAVAILABLE here */
    so.delay_ms = SM_MAX_DELAY_MS;
    so.idempotency_key = "k";
    assert_int_equal(sm_client_send_opts(c, "a/b", "x", &v, &so, 5000, &err), SM_ERPC);
    assert_int_equal(err.code, 14);
}

static void test_send_stream_bad_arguments_keep_the_stream(void **state)
{
    sm_client *c = *state;
    sm_send_stream_options o;
    sm_send_stream *s = NULL;
    sm_send_stream_progress p;
    sm_value v = sm_value_string("x"), bad = {NULL, NULL, 0};
    sm_send_options so = {"", 5};
    uint64_t seq = 0;
    sm_error err;

    memset(&o, 0, sizeof o);
    o.batch_messages = 65537;
    expect_einval(sm_send_stream_open(c, &o, &s, &err), &err, "stream options out of range");
    assert_null(s);
    assert_int_equal(sm_send_stream_open(c, NULL, &s, &err), SM_OK);

    expect_einval(sm_send_stream_push(s, "", "x", &v, NULL, &seq, &err), &err, "function type is empty");
    expect_einval(sm_send_stream_push(s, "a/b", "x", &bad, NULL, &seq, &err), &err, "no typename");
    expect_einval(sm_send_stream_push(s, "a/b", "\xc3", &v, NULL, &seq, &err), &err, "not valid UTF-8");
    so.delay_ms = SM_MAX_DELAY_MS + 1;
    expect_einval(sm_send_stream_push(s, "a/b", "x", &v, &so, &seq, &err), &err, "above the maximum");
    sm_send_stream_get_progress(s, &p);
    assert_int_equal(p.pushed, 0);

    /* "" key = none; seqs count from 1 */
    so.delay_ms = 5;
    assert_int_equal(sm_send_stream_push(s, "a/b", "x", &v, &so, &seq, &err), SM_OK);
    assert_int_equal(seq, 1);
    assert_int_equal(sm_send_stream_push(s, "a/b", "y", &v, NULL, &seq, &err), SM_OK);
    assert_int_equal(seq, 2);
    sm_send_stream_get_progress(s, &p);
    assert_int_equal(p.pushed, 2);
    assert_int_equal(p.sent, 0); /* still in the batch being filled */
    assert_int_equal(p.committed_through, 0);
    sm_send_stream_destroy(&s); /* without finish: cancelled, nothing leaks */
    assert_null(s);
}

static void test_send_stream_to_nowhere_breaks_clearly(void **state)
{
    sm_client *c = *state;
    sm_send_stream *s;
    sm_send_stream_progress p;
    sm_value v = sm_value_string("x");
    sm_error err;

    assert_int_equal(sm_send_stream_open(c, NULL, &s, &err), SM_OK);
    assert_int_equal(sm_send_stream_push(s, "a/b", "x", &v, NULL, NULL, &err), SM_OK);
    assert_int_equal(sm_send_stream_finish(s, 10000, &err), SM_ERPC);
    assert_int_equal(err.code, 14); /* UNAVAILABLE */
    assert_non_null(strstr(err.message, "runtime not reachable at " NOWHERE));
    sm_send_stream_get_progress(s, &p);
    assert_int_equal(p.pushed, 1);
    assert_int_equal(p.committed_through, 0);
    /* broken for good: every later call says why */
    memset(&err, 0, sizeof err);
    assert_int_equal(sm_send_stream_push(s, "a/b", "x", &v, NULL, NULL, &err), SM_ERPC);
    assert_int_equal(err.code, 14);
    assert_int_equal(sm_send_stream_flush(s, &err), SM_ERPC);
    assert_int_equal(sm_send_stream_poll(s, 0, &err), SM_ERPC);
    sm_send_stream_destroy(&s);
}

static void test_subscription_checks_and_unreachable(void **state)
{
    sm_client *c = *state;
    sm_subscribe_options o;
    sm_subscription *sub = NULL;
    sm_egress_record rec;
    char long_name[200];
    sm_error err;

    memset(&o, 0, sizeof o);
    o.egress = "has space";
    expect_einval(sm_subscription_open(c, &o, &sub, &err), &err, "egress name 'has space'");
    memset(long_name, 'e', 129);
    long_name[129] = '\0';
    o.egress = long_name;
    expect_einval(sm_subscription_open(c, &o, &sub, &err), &err, "is not [A-Za-z0-9_.-]{1,128}");
    o.egress = "log";
    o.start = (sm_egress_start)7;
    expect_einval(sm_subscription_open(c, &o, &sub, &err), &err, "unknown start position 7");
    assert_null(sub);
    expect_einval(sm_client_subscribe(c, &o, NULL, NULL, &err), &err, "no callback");

    o.start = SM_EGRESS_EARLIEST;
    assert_int_equal(sm_subscription_open(c, &o, &sub, &err), SM_OK);
    assert_int_equal(sm_subscription_next(sub, 10000, &rec, &err), SM_ERPC);
    assert_int_equal(err.code, 14);
    assert_non_null(strstr(err.message, "runtime not reachable at " NOWHERE));
    sm_subscription_close(&sub);
    assert_null(sub);
}

static void test_deadletters_checked_locally_then_unavailable(void **state)
{
    sm_client *c = *state;
    sm_deadletters l;
    uint64_t ids[2] = {4, 7}, count = 99;
    sm_error err;

    /* selectors: neither ids nor all, both, ids missing */
    expect_einval(sm_client_replay_deadletters(c, NULL, 0, false, NULL, 1000, &count, &err), &err,
                  "no dead letters selected");
    assert_int_equal(count, 0);
    expect_einval(sm_client_drop_deadletters(c, ids, 2, true, NULL, 1000, &count, &err), &err,
                  "not both");
    expect_einval(sm_client_drop_deadletters(c, NULL, 2, false, NULL, 1000, NULL, &err), &err,
                  "no id array");
    /* the type filter */
    expect_einval(sm_client_replay_deadletters(c, NULL, 0, true, "flaky", 1000, NULL, &err), &err,
                  "function type 'flaky' is not namespace/name");
    expect_einval(sm_client_drop_deadletters(c, ids, 1, false, "a/b/c", 1000, NULL, &err), &err,
                  "not namespace/name");
    expect_einval(sm_client_list_deadletters(c, "/b", 0, 10, 1000, &l, &err), &err,
                  "not namespace/name");
    assert_null(l.items);
    assert_int_equal(l.n, 0);
    expect_einval(sm_client_list_deadletters(c, NULL, 0, 10, 1000, NULL, &err), &err, "no client");
    sm_deadletters_cleanup(&l); /* cleanup of an empty result is harmless */
    sm_deadletters_cleanup(NULL);

    /* valid requests reach the network: UNAVAILABLE here */
    assert_int_equal(sm_client_list_deadletters(c, "a/b", 5, 0, 5000, &l, &err), SM_ERPC);
    assert_int_equal(err.code, 14);
    assert_null(l.items);
    assert_int_equal(sm_client_replay_deadletters(c, NULL, 0, true, "", 5000, &count, &err), SM_ERPC);
    assert_int_equal(err.code, 14);
    assert_int_equal(sm_client_drop_deadletters(c, ids, 2, false, "a/b", 5000, &count, &err), SM_ERPC);
    assert_int_equal(err.code, 14);
    assert_int_equal(count, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_send_and_call_options_checked_locally),
        cmocka_unit_test(test_send_stream_bad_arguments_keep_the_stream),
        cmocka_unit_test(test_send_stream_to_nowhere_breaks_clearly),
        cmocka_unit_test(test_subscription_checks_and_unreachable),
        cmocka_unit_test(test_deadletters_checked_locally_then_unavailable),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
