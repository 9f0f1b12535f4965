/* Unit tests for runtime/timer.c: ordering, re-arming, stopping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "timer.h"

struct rec {
    int order[64];
    int n;
};

struct ctx {
    struct rec *rec;
    int id;
    struct timer t;
};

static void fire(void *arg)
{
    struct ctx *c = arg;
    c->rec->order[c->rec->n++] = c->id;
}

static void test_fires_in_due_order(void **state)
{
    (void)state;
    struct timer_heap h = {0};
    struct rec rec = {{0}, 0};
    struct ctx c[10];
    int64_t due[10] = {50, 10, 90, 30, 70, 20, 80, 40, 60, 0};

    for (int i = 0; i < 10; i++) {
        c[i].rec = &rec;
        c[i].id = (int)due[i];
        timer_init(&c[i].t, fire, &c[i]);
        timer_start(&h, &c[i].t, due[i]);
    }
    assert_int_equal(timer_next_due(&h), 0);
    timer_stop(&h, &c[4].t);             /* 70 */
    timer_start(&h, &c[2].t, 5);         /* 90 -> 5 */
    assert_false(timer_armed(&c[4].t));
    assert_int_equal(timer_run_due(&h, 45), 6);
    int expect1[] = {0, 5, 10, 20, 30, 40};
    for (int i = 0; i < 6; i++) assert_int_equal(rec.order[i], expect1[i] == 5 ? 90 : expect1[i]);
    assert_int_equal(timer_next_due(&h), 50);
    assert_int_equal(timer_run_due(&h, 1000), 3);
    assert_int_equal(timer_next_due(&h), INT64_MAX);
    timer_heap_cleanup(&h);
}

static void test_random_against_sorted(void **state)
{
    (void)state;
    struct timer_heap h = {0};
    struct rec rec = {{0}, 0};
    struct ctx c[64];
    srand(7);
    for (int i = 0; i < 64; i++) {
        c[i].rec = &rec;
        c[i].id = i;
        timer_init(&c[i].t, fire, &c[i]);
        timer_start(&h, &c[i].t, rand() % 1000);
    }
    for (int i = 0; i < 64; i += 3) timer_stop(&h, &c[i].t);
    timer_run_due(&h, 1000);
    for (int i = 1; i < rec.n; i++)
        assert_true(c[rec.order[i - 1]].t.due_ms <= c[rec.order[i]].t.due_ms);
    assert_int_equal(rec.n, 64 - 22);
    timer_heap_cleanup(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fires_in_due_order),
        cmocka_unit_test(test_random_against_sorted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
