/* Protocol round trips: the runtime's hand-built ToFunction frames
 * (endpoint.c concatenates encoded batches) decode as ordinary protobuf, and
 * the storage and ingress messages survive pack/unpack. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "endpoint.h"
#include "rpc.h"
#include "statemesh/v1/function.pb-c.h"
#include "statemesh/v1/ingress.pb-c.h"
#include "statemesh/v1/storage.pb-c.h"

static uint8_t *pack_batch(uint64_t id, const char *target_id, int ninv, size_t arglen, size_t *len)
{
    Statemesh__V1__BatchRequest b = STATEMESH__V1__BATCH_REQUEST__INIT;
    Statemesh__V1__Address t = STATEMESH__V1__ADDRESS__INIT;
    Statemesh__V1__Invocation inv[8], *invp[8];
    Statemesh__V1__TypedValue arg[8];
    uint8_t *payload = malloc(arglen + 1);
    uint8_t *out;

    memset(payload, 'x', arglen);
    t.type = "ns/fn";
    t.id = (char *)target_id;
    for (int i = 0; i < ninv; i++) {
        statemesh__v1__invocation__init(&inv[i]);
        statemesh__v1__typed_value__init(&arg[i]);
        arg[i].typename_ = "statemesh/bytes";
        arg[i].value.data = payload;
        arg[i].value.len = arglen;
        inv[i].argument = &arg[i];
        invp[i] = &inv[i];
    }
    b.batch_id = id;
    b.target = &t;
    b.n_invocations = (size_t)ninv;
    b.invocations = invp;
    out = rpc_pack(&b.base, len);
    free(payload);
    return out;
}

static void test_coalesced_frame_decodes(void **state)
{
    (void)state;
    struct endpoint ep;
    struct ep_stream st;
    /* Sizes chosen so varint lengths of 1, 2 and 3 bytes all occur. */
    size_t sizes[] = {0, 10, 200, 70000};
    char id[16];

    memset(&ep, 0, sizeof ep);
    memset(&st, 0, sizeof st);
    st.ep = &ep;
    ep.streams = &st;           /* one stream; the batch goes to cur_stream 0 */
    ep.nstreams = 1;
    for (int i = 0; i < 4; i++) {
        size_t len;
        snprintf(id, sizeof id, "a%d", i);
        uint8_t *b = pack_batch((uint64_t)i + ((uint64_t)7 << 32), id, i + 1, sizes[i], &len);
        ep_append(&ep, b, len);
        free(b);
    }
    Statemesh__V1__ToFunction *tf = statemesh__v1__to_function__unpack(NULL, st.frame_len, st.frame);
    assert_non_null(tf);
    assert_int_equal(tf->n_batches, 4);
    for (int i = 0; i < 4; i++) {
        snprintf(id, sizeof id, "a%d", i);
        assert_int_equal(tf->batches[i]->batch_id, (uint64_t)i + ((uint64_t)7 << 32));
        assert_string_equal(tf->batches[i]->target->id, id);
        assert_int_equal(tf->batches[i]->n_invocations, i + 1);
        assert_int_equal(tf->batches[i]->invocations[0]->argument->value.len, sizes[i]);
    }
    statemesh__v1__to_function__free_unpacked(tf, NULL);
    free(st.frame);
}

static void test_stored_message_round_trip(void **state)
{
    (void)state;
    Statemesh__V1__StoredMessage sm = STATEMESH__V1__STORED_MESSAGE__INIT;
    Statemesh__V1__Address caller = STATEMESH__V1__ADDRESS__INIT;
    Statemesh__V1__TypedValue arg = STATEMESH__V1__TYPED_VALUE__INIT;
    size_t len;

    caller.type = "example/user";
    caller.id = "al\xc3\xaf" "ce";
    arg.typename_ = "statemesh/int64";
    arg.value.data = (uint8_t *)"\x01\0\0\0\0\0\0\0";
    arg.value.len = 8;
    sm.caller = &caller;
    sm.argument = &arg;
    uint8_t *buf = rpc_pack(&sm.base, &len);
    Statemesh__V1__StoredMessage *back = statemesh__v1__stored_message__unpack(NULL, len, buf);
    assert_non_null(back);
    assert_string_equal(back->caller->id, "al\xc3\xaf" "ce");
    assert_string_equal(back->argument->typename_, "statemesh/int64");
    assert_memory_equal(back->argument->value.data, "\x01\0\0\0\0\0\0\0", 8);
    statemesh__v1__stored_message__free_unpacked(back, NULL);
    free(buf);

    /* From the ingress: no caller. */
    sm.caller = NULL;
    buf = rpc_pack(&sm.base, &len);
    back = statemesh__v1__stored_message__unpack(NULL, len, buf);
    assert_null(back->caller);
    statemesh__v1__stored_message__free_unpacked(back, NULL);
    free(buf);
}

static void test_garbage_is_rejected(void **state)
{
    (void)state;
    /* A length-delimited field claiming more bytes than exist. */
    const uint8_t bad[] = {0x0a, 0x7f, 0x01, 0x02};
    assert_null(statemesh__v1__from_function__unpack(NULL, sizeof bad, bad));
    assert_null(statemesh__v1__send_request__unpack(NULL, sizeof bad, bad));
}

static void test_batch_response_oneof(void **state)
{
    (void)state;
    Statemesh__V1__FromFunction f = STATEMESH__V1__FROM_FUNCTION__INIT;
    Statemesh__V1__BatchResponse r = STATEMESH__V1__BATCH_RESPONSE__INIT, *rp = &r;
    Statemesh__V1__Failure fail = STATEMESH__V1__FAILURE__INIT;
    size_t len;

    fail.message = "boom";
    r.batch_id = 42;
    r.outcome_case = STATEMESH__V1__BATCH_RESPONSE__OUTCOME_FAILURE;
    r.failure = &fail;
    f.n_responses = 1;
    f.responses = &rp;
    uint8_t *buf = rpc_pack(&f.base, &len);
    Statemesh__V1__FromFunction *back = statemesh__v1__from_function__unpack(NULL, len, buf);
    assert_non_null(back);
    assert_int_equal(back->responses[0]->outcome_case, STATEMESH__V1__BATCH_RESPONSE__OUTCOME_FAILURE);
    assert_string_equal(back->responses[0]->failure->message, "boom");
    statemesh__v1__from_function__free_unpacked(back, NULL);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_coalesced_frame_decodes),
        cmocka_unit_test(test_stored_message_round_trip),
        cmocka_unit_test(test_garbage_is_rejected),
        cmocka_unit_test(test_batch_response_oneof),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
