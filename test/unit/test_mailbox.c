/* Unit tests for runtime/mailbox.c: queues, batching, the address table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mailbox.h"

static struct msg *mk(const char *text, uint64_t seq)
{
    struct msg *m = msg_create(NULL, NULL, "statemesh/string", (const uint8_t *)text, strlen(text), NULL);
    m->seq = seq;
    return m;
}

static void test_msg_create_copies_everything(void **state)
{
    (void)state;
    char data[] = {'a', 0, 'b'};
    struct msg *m = msg_create("ns/caller", "c1", "user/type", (const uint8_t *)data, sizeof data,
                               "key-1");
    data[0] = 'z';
    assert_string_equal(m->reply_key, "key-1");
    assert_string_equal(m->caller_type, "ns/caller");
    assert_string_equal(m->caller_id, "c1");
    assert_string_equal(m->typename, "user/type");
    assert_int_equal(m->len, 3);
    assert_memory_equal(m->data, "a\0b", 3);
    assert_true(msg_footprint(m) >= sizeof *m + 3);
    msg_destroy(m);

    m = msg_create(NULL, NULL, "t", NULL, 0, "");
    assert_null(m->caller_type);
    assert_null(m->reply_key);                  /* "" = none */
    assert_int_equal(m->len, 0);
    msg_destroy(m);
}

static void test_batch_takes_in_order_and_returns_to_head(void **state)
{
    (void)state;
    struct mbox_table t;
    struct mbox *mb;
    char buf[16];

    mbox_table_init(&t);
    mb = mbox_get(&t, "ns/f", "id", NULL);
    for (int i = 0; i < 5; i++) {
        snprintf(buf, sizeof buf, "m%d", i);
        mbox_push(mb, mk(buf, (uint64_t)i));
    }
    assert_int_equal(mb->nqueued, 5);
    assert_int_equal(mbox_take_batch(mb, 3), 3);
    assert_int_equal(mb->nbatch, 3);
    assert_int_equal(mb->nqueued, 2);
    assert_int_equal(mbox_batch_at(mb, 0)->seq, 0);
    assert_int_equal(mbox_batch_at(mb, 2)->seq, 2);
    assert_null(mbox_batch_at(mb, 3));

    /* A message arriving while the batch is out queues behind the rest. */
    mbox_push(mb, mk("late", 5));
    mbox_return_batch(mb);
    assert_int_equal(mb->nqueued, 6);
    assert_int_equal(mb->nbatch, 0);
    uint64_t expect = 0;
    for (struct msg *m = mb->head; m; m = m->next) assert_int_equal(m->seq, expect++);
    assert_int_equal(mb->tail->seq, 5);

    /* Take everything, drop it: the queue is empty and reusable. */
    assert_int_equal(mbox_take_batch(mb, 100), 6);
    assert_null(mb->head);
    assert_null(mb->tail);
    mbox_drop_batch(mb);
    assert_int_equal(mbox_take_batch(mb, 100), 0);
    mbox_push(mb, mk("again", 7));
    assert_ptr_equal(mb->head, mb->tail);
    mbox_table_cleanup(&t);
}

static void test_return_batch_into_empty_queue_sets_tail(void **state)
{
    (void)state;
    struct mbox_table t;
    mbox_table_init(&t);
    struct mbox *mb = mbox_get(&t, "ns/f", "x", NULL);
    mbox_push(mb, mk("a", 1));
    mbox_push(mb, mk("b", 2));
    mbox_take_batch(mb, 10);
    mbox_return_batch(mb);
    assert_int_equal(mb->tail->seq, 2);
    mbox_push(mb, mk("c", 3));
    assert_int_equal(mb->tail->seq, 3);
    assert_int_equal(mb->nqueued, 3);
    mbox_table_cleanup(&t);
}

/* After a burst of addresses the bucket array shrinks back, and every
 * remaining mbox is still found. */
static void test_table_shrinks_after_burst(void **state)
{
    (void)state;
    struct mbox_table t;
    char id[32];
    const int n = 100000, keep = 100;

    mbox_table_init(&t);
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof id, "id-%d", i);
        mbox_get(&t, "ns/f", id, NULL);
    }
    assert_true(t.nbuckets >= (size_t)n);
    for (int i = keep; i < n; i++) {
        snprintf(id, sizeof id, "id-%d", i);
        mbox_remove(&t, mbox_find(&t, "ns/f", id));
    }
    assert_int_equal(t.count, keep);
    assert_int_equal(t.nbuckets, 1024);
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof id, "id-%d", i);
        if (i < keep) assert_non_null(mbox_find(&t, "ns/f", id));
        else assert_null(mbox_find(&t, "ns/f", id));
    }
    mbox_table_cleanup(&t);
}

static void test_table_grows_and_finds(void **state)
{
    (void)state;
    struct mbox_table t;
    char id[32];
    const int n = 20000;

    mbox_table_init(&t);
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof id, "id-%d", i);
        mbox_get(&t, "ns/f", id, NULL);
    }
    assert_int_equal(t.count, n);
    assert_true(t.nbuckets >= (size_t)n);
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof id, "id-%d", i);
        struct mbox *mb = mbox_find(&t, "ns/f", id);
        assert_non_null(mb);
        assert_string_equal(mb->id, id);
        assert_ptr_equal(mbox_get(&t, "ns/f", id, NULL), mb);
    }
    /* type and id are distinct components: "a/b"+"c" differs from "a/bc"+"". */
    assert_null(mbox_find(&t, "ns/fid-1", ""));
    assert_null(mbox_find(&t, "ns/g", "id-1"));
    for (int i = 0; i < n; i += 2) {
        snprintf(id, sizeof id, "id-%d", i);
        mbox_remove(&t, mbox_find(&t, "ns/f", id));
    }
    assert_int_equal(t.count, n / 2);
    assert_null(mbox_find(&t, "ns/f", "id-0"));
    assert_non_null(mbox_find(&t, "ns/f", "id-1"));
    mbox_table_cleanup(&t);
}

static void test_list_fifo(void **state)
{
    (void)state;
    struct mbox_table t;
    struct mbox_list l = {0};
    mbox_table_init(&t);
    struct mbox *a = mbox_get(&t, "ns/f", "a", NULL), *b = mbox_get(&t, "ns/f", "b", NULL);
    assert_null(mbox_list_pop(&l));
    mbox_list_push(&l, a);
    mbox_list_push(&l, b);
    assert_int_equal(l.len, 2);
    assert_ptr_equal(mbox_list_pop(&l), a);
    assert_ptr_equal(mbox_list_pop(&l), b);
    assert_null(mbox_list_pop(&l));
    assert_null(l.tail);
    mbox_list_push(&l, b);
    assert_ptr_equal(l.head, b);
    mbox_table_cleanup(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msg_create_copies_everything),
        cmocka_unit_test(test_batch_takes_in_order_and_returns_to_head),
        cmocka_unit_test(test_return_batch_into_empty_queue_sets_tail),
        cmocka_unit_test(test_table_grows_and_finds),
        cmocka_unit_test(test_table_shrinks_after_burst),
        cmocka_unit_test(test_list_fifo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
