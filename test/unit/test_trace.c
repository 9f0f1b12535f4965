/* Unit tests for runtime/trace.c: W3C traceparent parsing and formatting,
 * contexts, sampling, and the bounded export ring against a closed port. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "log.h"
#include "rpc.h"
#include "timer.h"
#include "trace.h"

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define SID "00f067aa0ba902b7"

static int parse(const char *s)
{
    uint8_t t[16], sp[8], f;
    return trace_parse(s, strlen(s), t, sp, &f);
}

static void test_parse_valid_and_roundtrip(void **state)
{
    uint8_t t[16], sp[8], f = 0;
    char out[TRACE_PARENT_LEN + 1], hex[33];
    const char *tp = "00-" TID "-" SID "-01";
    (void)state;
    assert_int_equal(trace_parse(tp, strlen(tp), t, sp, &f), 0);
    assert_int_equal(f, 1);
    trace_format(t, sp, f, out);
    assert_string_equal(out, tp);
    trace_id_hex(t, hex);
    assert_string_equal(hex, TID);
    /* A later version may be longer; its extra fields are ignored. */
    assert_int_equal(parse("01-" TID "-" SID "-00-whatever"), 0);
    assert_int_equal(parse("01-" TID "-" SID "-00"), 0);
}

static void test_parse_rejects_malformed(void **state)
{
    static const char *bad[] = {
        "", "00", "garbage",
        "00-" TID "-" SID "-01 ",                      /* version 00: exactly 55 */
        "00-" TID "-" SID "-1",
        "00-00000000000000000000000000000000-" SID "-01",  /* all-zero trace id */
        "00-" TID "-0000000000000000-01",              /* all-zero span id */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-" SID "-01",  /* upper case */
        "ff-" TID "-" SID "-01",                       /* version ff */
        "0g-" TID "-" SID "-01",
        "00_" TID "-" SID "-01",
        "00-" TID "_" SID "-01",
        "00-" TID "-" SID "_01",
        "00-" TID "-" SID "-zz",
        "01-" TID "-" SID "-01x",                      /* extra fields start with '-' */
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) assert_int_equal(parse(bad[i]), -1);
    assert_int_equal(trace_parse(NULL, 0, NULL, NULL, NULL), -1);
}

static void test_state_and_contexts(void **state)
{
    struct trace_ctx *c, *k;
    char big[TRACE_STATE_MAX + 2];
    (void)state;
    assert_true(trace_state_ok("a=1,b=2", 7));
    assert_false(trace_state_ok("a=\n", 3));
    memset(big, 'x', sizeof big);
    assert_false(trace_state_ok(big, sizeof big));
    c = trace_ctx_from_header("00-" TID "-" SID "-01", "vendor=1");
    assert_non_null(c);
    assert_string_equal(c->state, "vendor=1");
    memset(c->span_id, 7, 8);
    k = trace_ctx_child(c);
    assert_memory_equal(k->trace_id, c->trace_id, 16);
    assert_memory_equal(k->parent_id, c->span_id, 8);
    assert_int_equal(k->flags, 1);
    assert_string_equal(k->state, "vendor=1");
    free(k);
    free(c);
    assert_null(trace_ctx_from_header("", NULL));
    assert_null(trace_ctx_from_header("nope", NULL));
    c = trace_ctx_from_header("00-" TID "-" SID "-00", "bad\x01state");
    assert_non_null(c);
    assert_string_equal(c->state, "");           /* an unusable tracestate is dropped */
    free(c);
}

/* The ring: full drops and counts; an export to a closed port fails and
 * counts its spans as dropped; ids are never zero; ratio 0 never samples. */
static void test_tracer_ring_and_export_failure(void **state)
{
    struct log lg = {LOG_LEVEL_ERROR, stderr};
    struct rpc_loop loop;
    struct timer_heap timers = {0};
    struct cfg_tracing cfg = {0};
    struct tracer *t = NULL;
    struct trace_span sp;
    uint8_t tid[16], sid[8], zero[16] = {0};
    char err[256];
    (void)state;

    grpc_init();
    assert_int_equal(rpc_loop_init(&loop, &lg), 0);
    cfg.on = true;
    cfg.otlp = (char *)"127.0.0.1:1";
    cfg.sample_ratio = 0.0;
    assert_int_equal(tracer_create(&t, &cfg, &loop, &timers, &lg, err, sizeof err), 0);
    for (int i = 0; i < 1000; i++) assert_false(tracer_sample(t));
    for (int i = 0; i < 1000; i++) {
        tracer_new_trace_id(t, tid);
        tracer_new_span_id(t, sid);
        assert_memory_not_equal(tid, zero, 16);
        assert_memory_not_equal(sid, zero, 8);
    }
    trace_span_init(&sp, tid, sid, NULL, TRACE_FLAG_SAMPLED, TRACE_SERVER, "x", 1, 2);
    /* The first full batch leaves at once (an export in flight), then the
     * ring fills up. */
    for (int i = 0; i < TRACE_QUEUE_SPANS + TRACE_EXPORT_MAX + 10; i++) tracer_emit(t, &sp);
    assert_false(tracer_idle(t));
    assert_int_equal(tracer_dropped(t), 10);
    for (int i = 0; i < 200 && !tracer_idle(t); i++) rpc_loop_next(&loop, rpc_now_ms() + 50);
    assert_true(tracer_idle(t));                 /* failed: its spans count as dropped */
    assert_int_equal(tracer_dropped(t), 10 + TRACE_EXPORT_MAX);
    tracer_stop(t);                              /* one last Export of TRACE_EXPORT_MAX */
    for (int i = 0; i < 200 && !tracer_idle(t); i++) rpc_loop_next(&loop, rpc_now_ms() + 50);
    assert_true(tracer_idle(t));
    assert_int_equal(tracer_exported(t), 0);
    assert_int_equal(tracer_dropped(t), 10 + 2 * TRACE_EXPORT_MAX);
    tracer_emit(t, &sp);                         /* stopped: dropped */
    assert_int_equal(tracer_dropped(t), 11 + 2 * TRACE_EXPORT_MAX);
    tracer_destroy(&t);
    assert_null(t);
    rpc_loop_cleanup(&loop);
    timer_heap_cleanup(&timers);
    grpc_shutdown_blocking();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid_and_roundtrip),
        cmocka_unit_test(test_parse_rejects_malformed),
        cmocka_unit_test(test_state_and_contexts),
        cmocka_unit_test(test_tracer_ring_and_export_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
