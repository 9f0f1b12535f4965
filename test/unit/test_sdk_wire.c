/* The SendStream client's hand-written StreamMessage encoder (sdk-c/wire.h):
 * its bytes must equal protobuf-c's encoding of the same SendStreamRequest,
 * and protobuf-c must decode them back to the same fields. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../sdk-c/wire.h"
#include "statemesh/v1/ingress.pb-c.h"

static struct wire_msg msg(uint64_t seq, const char *type, const char *id, const char *tn,
                           const void *data, size_t len, const char *key, uint64_t delay)
{
    struct wire_msg m = {seq, type, strlen(type), id, strlen(id), tn, strlen(tn), data, len,
                         key, key ? strlen(key) : 0, delay};
    return m;
}

static void test_varint(void **state)
{
    static const uint64_t vals[] = {0, 1, 127, 128, 300, 16383, 16384, (1ull << 35) + 5, UINT64_MAX};
    uint8_t buf[16];
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        uint8_t *end = wire_put_varint(buf, vals[i]);
        size_t n = (size_t)(end - buf);
        uint64_t back = 0;
        assert_int_equal(n, wire_varint_size(vals[i]));
        for (size_t k = 0; k < n; k++) {
            back |= (uint64_t)(buf[k] & 0x7f) << (7 * k);
            assert_int_equal(buf[k] >> 7, k + 1 < n); /* continuation bits */
        }
        assert_true(back == vals[i]);
    }
    assert_int_equal(wire_varint_size(UINT64_MAX), 10);
}

static void test_same_bytes_as_protobuf_c(void **state)
{
    static uint8_t big[70000];
    struct wire_msg ms[5];
    Statemesh__V1__StreamMessage sm[5], *smp[5];
    Statemesh__V1__Address addr[5];
    Statemesh__V1__TypedValue tv[5];
    Statemesh__V1__SendStreamRequest req = STATEMESH__V1__SEND_STREAM_REQUEST__INIT;
    Statemesh__V1__SendStreamRequest *back;
    uint8_t *mine, *theirs, *p;
    size_t total = 0, n;

    for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 7);
    ms[0] = msg(1, "ns/f", "a", "statemesh/string", "hi", 2, NULL, 0);
    ms[1] = msg(2, "ns/f", "id with \xc3\xa9", "statemesh/json", "{\"k\":1}", 7, "key-1", 1500);
    ms[2] = msg(300, "ns/f", "b", "statemesh/bytes", NULL, 0, NULL, 0);        /* empty value */
    ms[3] = msg((1ull << 40) + 1, "x/y", "c", "user/t", big, sizeof big, "", 0); /* big: long varints */
    ms[4] = msg(5, "x/y", "d", "statemesh/int64", "\x01\0\0\0\0\0\0\0", 8, NULL, UINT64_MAX);

    for (int i = 0; i < 5; i++) total += wire_stream_message_size(&ms[i]);
    mine = malloc(total);
    assert_non_null(mine);
    p = mine;
    for (int i = 0; i < 5; i++) {
        uint8_t *q = wire_put_stream_message(p, &ms[i]);
        assert_int_equal((size_t)(q - p), wire_stream_message_size(&ms[i]));
        p = q;
    }

    for (int i = 0; i < 5; i++) {
        statemesh__v1__stream_message__init(&sm[i]);
        statemesh__v1__address__init(&addr[i]);
        statemesh__v1__typed_value__init(&tv[i]);
        addr[i].type = (char *)ms[i].type;
        addr[i].id = (char *)ms[i].id;
        tv[i].typename_ = (char *)ms[i].typename;
        tv[i].value.data = (uint8_t *)ms[i].data;
        tv[i].value.len = ms[i].data_len;
        sm[i].seq = ms[i].seq;
        sm[i].target = &addr[i];
        sm[i].argument = &tv[i];
        if (ms[i].key) sm[i].idempotency_key = (char *)ms[i].key;
        sm[i].delay_ms = ms[i].delay_ms;
        smp[i] = &sm[i];
    }
    req.n_messages = 5;
    req.messages = smp;
    n = statemesh__v1__send_stream_request__get_packed_size(&req);
    assert_int_equal(n, total);
    theirs = malloc(n);
    assert_non_null(theirs);
    statemesh__v1__send_stream_request__pack(&req, theirs);
    assert_memory_equal(mine, theirs, n);

    back = statemesh__v1__send_stream_request__unpack(NULL, total, mine);
    assert_non_null(back);
    assert_int_equal(back->n_messages, 5);
    assert_true(back->messages[3]->seq == (1ull << 40) + 1);
    assert_string_equal(back->messages[1]->target->id, "id with \xc3\xa9");
    assert_string_equal(back->messages[1]->idempotency_key, "key-1");
    assert_int_equal(back->messages[1]->delay_ms, 1500);
    assert_int_equal(back->messages[2]->argument->value.len, 0);
    assert_string_equal(back->messages[2]->argument->typename_, "statemesh/bytes");
    assert_int_equal(back->messages[3]->argument->value.len, sizeof big);
    assert_memory_equal(back->messages[3]->argument->value.data, big, sizeof big);
    assert_true(back->messages[4]->delay_ms == UINT64_MAX);
    statemesh__v1__send_stream_request__free_unpacked(back, NULL);
    free(mine);
    free(theirs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_varint),
        cmocka_unit_test(test_same_bytes_as_protobuf_c),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
