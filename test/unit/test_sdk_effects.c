/* The effects a handler produces besides state, messages and replies
 * (sdk-c/functions.c): delayed messages, cancellations, egress records, and
 * state TTLs in Describe / Incomplete. Every test runs a BatchRequest
 * through sm_functions_process, packs the BatchResponse with protobuf-c and
 * unpacks it again, so what is checked is the encoded Result the runtime
 * would receive. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "statemesh/invoke.h"

#define MAXN 8

/* ---- a request with string invocations ---- */

struct rb {
    Statemesh__V1__BatchRequest req;
    Statemesh__V1__Address target;
    Statemesh__V1__StateValue sv[MAXN], *svp[MAXN];
    Statemesh__V1__Invocation inv[MAXN], *invp[MAXN];
    Statemesh__V1__TypedValue arg[MAXN];
};

static void rb_init(struct rb *b, const char *type)
{
    memset(b, 0, sizeof *b);
    statemesh__v1__batch_request__init(&b->req);
    statemesh__v1__address__init(&b->target);
    b->target.type = (char *)type;
    b->target.id = (char *)"me";
    b->req.batch_id = 5;
    b->req.target = &b->target;
    b->req.state = b->svp;
    b->req.invocations = b->invp;
}

static void rb_absent_state(struct rb *b, const char *name)
{
    size_t i = b->req.n_state++;
    statemesh__v1__state_value__init(&b->sv[i]);
    b->sv[i].name = (char *)name;
    b->svp[i] = &b->sv[i];
}

static void rb_inv(struct rb *b, const char *s)
{
    size_t i = b->req.n_invocations++;
    statemesh__v1__invocation__init(&b->inv[i]);
    statemesh__v1__typed_value__init(&b->arg[i]);
    b->arg[i].typename_ = (char *)SM_TYPE_STRING;
    b->arg[i].value.data = (uint8_t *)s;
    b->arg[i].value.len = strlen(s);
    b->inv[i].argument = &b->arg[i];
    b->invp[i] = &b->inv[i];
}

/* ---- fixture ---- */

struct fix {
    sm_functions *fns;
    sm_arena *arena;
    int rcs[16];   /* return codes of the SDK calls of the last invocation */
    int nrc;
};

/* Runs the ';'-separated commands of the message, recording each SDK call's
 * return code in f->rcs (the handler then returns 0: the SDK alone decides
 * whether the batch failed):
 *   delay            sm_send_after_string(1500, other/fn d1, "later", no token)
 *   tok:T            sm_send_after_int64(250, other/fn d2, 42, token T)
 *   cancel:T         sm_cancel_delayed(T)
 *   egress           sm_send_egress_json("events", {"a":1})
 *   egress-s         sm_send_egress_string("events.v2", "text")
 *   egress:NAME      sm_send_egress_int64(NAME, 7)
 *   fail             sm_fail
 *   long-token       a 257-byte token      max-token   a 256-byte token
 *   empty-token      ""                    utf8-token  "\xff\xfe"
 *   null-cancel      sm_cancel_delayed(NULL)
 *   long-egress      129-byte egress name  max-egress  128-byte name
 *   null-egress      sm_send_egress(NULL name)
 *   null-value       sm_send_egress("events", NULL)
 *   big-delay        delay SM_MAX_DELAY_MS + 1   max-delay  SM_MAX_DELAY_MS
 *   bad-target       sm_send_after to "noslash"
 *   bad-value        sm_send_after with an invalid statemesh/bool
 *   set              sm_state_set_int64("n", 1) (types that declare n) */
static int effects(sm_ctx *ctx, const sm_value *msg, void *udata)
{
    struct fix *f = udata;
    char buf[512], big[300];
    char *save = NULL, *cmd;

    f->nrc = 0;
    assert_true(msg->len < sizeof buf);
    memcpy(buf, msg->data, msg->len);
    buf[msg->len] = '\0';
    for (cmd = strtok_r(buf, ";", &save); cmd; cmd = strtok_r(NULL, ";", &save)) {
        int rc;
        if (strcmp(cmd, "delay") == 0) {
            rc = sm_send_after_string(ctx, 1500, "other/fn", "d1", "later", NULL);
        } else if (strncmp(cmd, "tok:", 4) == 0) {
            rc = sm_send_after_int64(ctx, 250, "other/fn", "d2", 42, cmd + 4);
        } else if (strncmp(cmd, "cancel:", 7) == 0) {
            rc = sm_cancel_delayed(ctx, cmd + 7);
        } else if (strcmp(cmd, "egress") == 0) {
            rc = sm_send_egress_json(ctx, "events", "{\"a\":1}");
        } else if (strcmp(cmd, "egress-s") == 0) {
            rc = sm_send_egress_string(ctx, "events.v2", "text");
        } else if (strncmp(cmd, "egress:", 7) == 0) {
            rc = sm_send_egress_int64(ctx, cmd + 7, 7);
        } else if (strcmp(cmd, "fail") == 0) {
            rc = sm_fail(ctx, "scripted failure");
        } else if (strcmp(cmd, "long-token") == 0 || strcmp(cmd, "max-token") == 0) {
            size_t n = cmd[0] == 'l' ? 257 : 256;
            memset(big, 't', n);
            big[n] = '\0';
            rc = sm_send_after_string(ctx, 1, "other/fn", "x", "v", big);
        } else if (strcmp(cmd, "empty-token") == 0) {
            rc = sm_send_after_string(ctx, 1, "other/fn", "x", "v", "");
        } else if (strcmp(cmd, "utf8-token") == 0) {
            rc = sm_cancel_delayed(ctx, "\xff\xfe");
        } else if (strcmp(cmd, "null-cancel") == 0) {
            rc = sm_cancel_delayed(ctx, NULL);
        } else if (strcmp(cmd, "long-egress") == 0 || strcmp(cmd, "max-egress") == 0) {
            size_t n = cmd[0] == 'l' ? 129 : 128;
            memset(big, 'e', n);
            big[n] = '\0';
            rc = sm_send_egress_string(ctx, big, "v");
        } else if (strcmp(cmd, "null-egress") == 0) {
            rc = sm_send_egress_string(ctx, NULL, "v");
        } else if (strcmp(cmd, "null-value") == 0) {
            rc = sm_send_egress(ctx, "events", NULL);
        } else if (strcmp(cmd, "big-delay") == 0) {
            rc = sm_send_after_string(ctx, SM_MAX_DELAY_MS + 1, "other/fn", "x", "v", NULL);
        } else if (strcmp(cmd, "max-delay") == 0) {
            rc = sm_send_after_string(ctx, SM_MAX_DELAY_MS, "other/fn", "x", "v", NULL);
        } else if (strcmp(cmd, "bad-target") == 0) {
            rc = sm_send_after_string(ctx, 1, "noslash", "x", "v", "t");
        } else if (strcmp(cmd, "bad-value") == 0) {
            sm_value v = sm_value_make(SM_TYPE_BOOL, "\x02", 1);
            rc = sm_send_after(ctx, 1, "other/fn", "x", &v, NULL);
        } else if (strcmp(cmd, "set") == 0) {
            rc = sm_state_set_int64(ctx, "n", 1);
        } else {
            fail_msg("unknown command %s", cmd);
            return -1;
        }
        f->rcs[f->nrc++] = rc;
    }
    return 0;
}

static int setup(void **state)
{
    static const sm_state_spec ttl_specs[] = {
        SM_STATE_EXPIRE_AFTER_WRITE("n", SM_TYPE_INT64, 60000),
        SM_STATE_EXPIRE_AFTER_INVOKE("session", SM_TYPE_JSON, 5000),
        SM_STATE("plain", SM_TYPE_STRING),
    };
    struct fix *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->fns = sm_functions_create();
    f->arena = sm_arena_create();
    assert_int_equal(sm_functions_bind(f->fns, "test/effects", NULL, 0, effects, f), SM_OK);
    assert_int_equal(sm_functions_bind(f->fns, "test/ttl", ttl_specs, 3, effects, f), SM_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    sm_functions_destroy(&f->fns);
    sm_arena_destroy(&f->arena);
    free(f);
    return 0;
}

/* Processes b, packs the answer and returns it unpacked (caller frees with
 * statemesh__v1__batch_response__free_unpacked). */
static Statemesh__V1__BatchResponse *roundtrip(struct fix *f, struct rb *b)
{
    Statemesh__V1__BatchResponse r, *back;
    uint8_t *packed;
    size_t n;

    sm_arena_reset(f->arena);
    assert_int_equal(sm_functions_process(f->fns, &b->req, f->arena, &r), SM_OK);
    n = statemesh__v1__batch_response__get_packed_size(&r);
    packed = malloc(n ? n : 1);
    assert_non_null(packed);
    assert_int_equal(statemesh__v1__batch_response__pack(&r, packed), n);
    sm_arena_reset(f->arena); /* the unpacked copy must not depend on the arena */
    back = statemesh__v1__batch_response__unpack(NULL, n, packed);
    free(packed);
    assert_non_null(back);
    assert_int_equal(back->batch_id, 5);
    return back;
}

static Statemesh__V1__BatchResponse *run(struct fix *f, const char *cmds1, const char *cmds2)
{
    struct rb b;
    rb_init(&b, "test/effects");
    rb_inv(&b, cmds1);
    if (cmds2) rb_inv(&b, cmds2);
    return roundtrip(f, &b);
}

static const Statemesh__V1__Result *result_of(const Statemesh__V1__BatchResponse *r)
{
    if (r->outcome_case != STATEMESH__V1__BATCH_RESPONSE__OUTCOME_RESULT)
        fail_msg("expected a result, got outcome %d (%s)", r->outcome_case,
                 r->outcome_case == STATEMESH__V1__BATCH_RESPONSE__OUTCOME_FAILURE
                     ? r->failure->message
                     : "-");
    return r->result;
}

static void assert_failure(const Statemesh__V1__BatchResponse *r, const char *needle)
{
    assert_int_equal(r->outcome_case, STATEMESH__V1__BATCH_RESPONSE__OUTCOME_FAILURE);
    if (!strstr(r->failure->message, needle))
        fail_msg("failure message '%s' lacks '%s'", r->failure->message, needle);
}

/* ---- tests ---- */

static void test_delayed_cancel_egress_encoded(void **state)
{
    struct fix *f = *state;
    Statemesh__V1__BatchResponse *r = run(f, "delay;tok:t1;cancel:old;egress", "egress-s");
    const Statemesh__V1__Result *res = result_of(r);
    const Statemesh__V1__DelayedMessage *d;

    assert_int_equal(res->n_delayed_messages, 2);
    d = res->delayed_messages[0];
    assert_string_equal(d->target->type, "other/fn");
    assert_string_equal(d->target->id, "d1");
    assert_string_equal(d->argument->typename_, SM_TYPE_STRING);
    assert_int_equal(d->argument->value.len, 5);
    assert_memory_equal(d->argument->value.data, "later", 5);
    assert_int_equal(d->delay_ms, 1500);
    assert_string_equal(d->cancellation_token, "");
    d = res->delayed_messages[1];
    assert_string_equal(d->target->id, "d2");
    assert_string_equal(d->argument->typename_, SM_TYPE_INT64);
    assert_int_equal(d->argument->value.len, 8);
    assert_int_equal(sm_decode_int64(d->argument->value.data), 42);
    assert_int_equal(d->delay_ms, 250);
    assert_string_equal(d->cancellation_token, "t1");

    assert_int_equal(res->n_cancellations, 1);
    assert_string_equal(res->cancellations[0]->token, "old");

    assert_int_equal(res->n_egress_records, 2); /* in call order, across invocations */
    assert_string_equal(res->egress_records[0]->egress, "events");
    assert_string_equal(res->egress_records[0]->value->typename_, SM_TYPE_JSON);
    assert_int_equal(res->egress_records[0]->value->value.len, 7);
    assert_memory_equal(res->egress_records[0]->value->value.data, "{\"a\":1}", 7);
    assert_string_equal(res->egress_records[1]->egress, "events.v2");
    assert_string_equal(res->egress_records[1]->value->typename_, SM_TYPE_STRING);
    assert_memory_equal(res->egress_records[1]->value->value.data, "text", 4);

    assert_int_equal(res->n_outgoing_messages, 0); /* delayed ones are not plain messages */
    assert_int_equal(res->n_replies, 0);
    statemesh__v1__batch_response__free_unpacked(r, NULL);
}

static void test_nothing_extra_without_effects(void **state)
{
    struct fix *f = *state;
    Statemesh__V1__BatchResponse *r = run(f, "max-token", NULL);
    const Statemesh__V1__Result *res = result_of(r);
    assert_int_equal(res->n_delayed_messages, 1);
    assert_int_equal(strlen(res->delayed_messages[0]->cancellation_token), 256);
    assert_int_equal(res->n_cancellations, 0);
    assert_int_equal(res->n_egress_records, 0);
    statemesh__v1__batch_response__free_unpacked(r, NULL);
}

/* The runtime applies cancellations before delayed messages, so the SDK
 * must resolve send-then-cancel within a batch itself. */
static void test_cancel_in_same_batch(void **state)
{
    struct fix *f = *state;
    Statemesh__V1__BatchResponse *r;
    const Statemesh__V1__Result *res;

    /* sent by invocation 0, cancelled by invocation 1: not sent at all */
    r = run(f, "tok:t1;delay", "cancel:t1");
    res = result_of(r);
    assert_int_equal(res->n_delayed_messages, 1);
    assert_string_equal(res->delayed_messages[0]->target->id, "d1"); /* the other one stays */
    assert_int_equal(res->n_cancellations, 1);
    assert_string_equal(res->cancellations[0]->token, "t1");
    statemesh__v1__batch_response__free_unpacked(r, NULL);

    /* send, cancel, send again with the same token: one message, one cancellation */
    r = run(f, "tok:t1;cancel:t1;tok:t1;cancel:t2;cancel:t2", NULL);
    res = result_of(r);
    assert_int_equal(res->n_delayed_messages, 1);
    assert_string_equal(res->delayed_messages[0]->cancellation_token, "t1");
    assert_int_equal(res->n_cancellations, 2); /* t1 and t2, each once */
    assert_string_equal(res->cancellations[0]->token, "t1");
    assert_string_equal(res->cancellations[1]->token, "t2");
    for (int i = 0; i < f->nrc; i++) assert_int_equal(f->rcs[i], SM_OK);
    statemesh__v1__batch_response__free_unpacked(r, NULL);
}

static void test_duplicate_token_fails(void **state)
{
    struct fix *f = *state;
    Statemesh__V1__BatchResponse *r = run(f, "tok:dup", "tok:dup");
    assert_int_equal(f->rcs[0], SM_EEXIST);
    assert_failure(r, "cancellation token 'dup' is already used");
    statemesh__v1__batch_response__free_unpacked(r, NULL);
}

static void test_failure_discards_effects(void **state)
{
    struct fix *f = *state;
    Statemesh__V1__BatchResponse *r = run(f, "delay;tok:a;cancel:b;egress", "fail");
    assert_failure(r, "scripted failure");
    statemesh__v1__batch_response__free_unpacked(r, NULL);

    /* a failed effect call stops the later ones of the batch */
    r = run(f, "egress;long-egress;egress;delay", NULL);
    assert_int_equal(f->nrc, 4);
    assert_int_equal(f->rcs[0], SM_OK);
    assert_int_equal(f->rcs[1], SM_EINVAL);
    assert_int_equal(f->rcs[2], SM_EFAILED);
    assert_int_equal(f->rcs[3], SM_EFAILED);
    assert_failure(r, "egress name");
    statemesh__v1__batch_response__free_unpacked(r, NULL);
}

static void check_rejected(struct fix *f, const char *cmd, int want_rc, const char *needle)
{
    Statemesh__V1__BatchResponse *r = run(f, cmd, NULL);
    if (f->rcs[0] != want_rc) fail_msg("%s returned %d, want %d", cmd, f->rcs[0], want_rc);
    assert_failure(r, needle);
    statemesh__v1__batch_response__free_unpacked(r, NULL);
}

static void test_argument_validation(void **state)
{
    struct fix *f = *state;
    Statemesh__V1__BatchResponse *r;

    check_rejected(f, "long-token", SM_EINVAL, "token that is not 1..256 bytes");
    check_rejected(f, "empty-token", SM_EINVAL, "token that is not 1..256 bytes");
    check_rejected(f, "utf8-token", SM_EINVAL, "cancel_delayed with a token that is not");
    check_rejected(f, "null-cancel", SM_EINVAL, "cancel_delayed with a token");
    check_rejected(f, "long-egress", SM_EINVAL, "is not [A-Za-z0-9_.-]{1,128}");
    check_rejected(f, "null-egress", SM_EINVAL, "egress name '(null)'");
    check_rejected(f, "egress:has space", SM_EINVAL, "egress name 'has space'");
    check_rejected(f, "egress:a/b", SM_EINVAL, "egress name 'a/b'");
    check_rejected(f, "null-value", SM_EINVAL, "send_egress with a NULL value");
    check_rejected(f, "big-delay", SM_EINVAL, "above the maximum");
    check_rejected(f, "bad-target", SM_EINVAL, "send_after to malformed function type 'noslash'");
    check_rejected(f, "bad-value", SM_EVALUE, "send_after with an invalid value");

    /* the limits themselves are fine */
    r = run(f, "max-egress;max-delay;egress:A-z_0.9", NULL);
    result_of(r);
    assert_int_equal(r->result->n_egress_records, 2);
    assert_int_equal(strlen(r->result->egress_records[0]->egress), 128);
    assert_string_equal(r->result->egress_records[1]->egress, "A-z_0.9");
    assert_int_equal(r->result->delayed_messages[0]->delay_ms, SM_MAX_DELAY_MS);
    statemesh__v1__batch_response__free_unpacked(r, NULL);
}

static void test_ttl_in_describe(void **state)
{
    struct fix *f = *state;
    Statemesh__V1__DescribeResponse d, *back;
    const Statemesh__V1__FunctionSpec *fs;
    uint8_t *packed;
    size_t n;

    sm_arena_reset(f->arena);
    assert_int_equal(sm_functions_describe(f->fns, f->arena, &d), SM_OK);
    n = statemesh__v1__describe_response__get_packed_size(&d);
    packed = malloc(n);
    assert_non_null(packed);
    statemesh__v1__describe_response__pack(&d, packed);
    back = statemesh__v1__describe_response__unpack(NULL, n, packed);
    free(packed);
    assert_non_null(back);
    assert_int_equal(back->n_functions, 2);
    fs = back->functions[1];
    assert_string_equal(fs->type, "test/ttl");
    assert_int_equal(fs->n_states, 3);
    assert_string_equal(fs->states[0]->name, "n");
    assert_int_equal(fs->states[0]->expire_after_write_ms, 60000);
    assert_int_equal(fs->states[0]->expire_after_invoke_ms, 0);
    assert_string_equal(fs->states[1]->name, "session");
    assert_int_equal(fs->states[1]->expire_after_write_ms, 0);
    assert_int_equal(fs->states[1]->expire_after_invoke_ms, 5000);
    assert_int_equal(fs->states[2]->expire_after_write_ms, 0);
    assert_int_equal(fs->states[2]->expire_after_invoke_ms, 0);
    statemesh__v1__describe_response__free_unpacked(back, NULL);
}

/* The specs the runtime is asked to register carry the TTL too. */
static void test_ttl_in_incomplete(void **state)
{
    struct fix *f = *state;
    struct rb b;
    Statemesh__V1__BatchResponse *r;

    rb_init(&b, "test/ttl");
    rb_absent_state(&b, "plain");
    rb_inv(&b, "set");
    r = roundtrip(f, &b);
    assert_int_equal(r->outcome_case, STATEMESH__V1__BATCH_RESPONSE__OUTCOME_INCOMPLETE);
    assert_int_equal(r->incomplete->n_missing_states, 2);
    assert_string_equal(r->incomplete->missing_states[0]->name, "n");
    assert_int_equal(r->incomplete->missing_states[0]->expire_after_write_ms, 60000);
    assert_string_equal(r->incomplete->missing_states[1]->name, "session");
    assert_int_equal(r->incomplete->missing_states[1]->expire_after_invoke_ms, 5000);
    statemesh__v1__batch_response__free_unpacked(r, NULL);

    /* with every state present the handler runs; TTL changes nothing there */
    rb_absent_state(&b, "n");
    rb_absent_state(&b, "session");
    r = roundtrip(f, &b);
    result_of(r);
    assert_int_equal(r->result->n_state_mutations, 1);
    assert_string_equal(r->result->state_mutations[0]->name, "n");
    statemesh__v1__batch_response__free_unpacked(r, NULL);
}

static void test_ttl_bind_errors(void **state)
{
    struct fix *f = *state;
    sm_state_spec both[] = {{.name = "a", .typename = SM_TYPE_INT64,
                             .expire_after_write_ms = 1, .expire_after_invoke_ms = 1}};
    sm_state_spec too_long[] = {SM_STATE_EXPIRE_AFTER_WRITE("a", SM_TYPE_INT64, SM_MAX_EXPIRE_MS + 1)};
    sm_state_spec too_long2[] = {SM_STATE_EXPIRE_AFTER_INVOKE("a", SM_TYPE_INT64, SM_MAX_EXPIRE_MS + 1)};
    sm_state_spec max[] = {SM_STATE_EXPIRE_AFTER_INVOKE("a", SM_TYPE_INT64, SM_MAX_EXPIRE_MS)};

    assert_int_equal(sm_functions_bind(f->fns, "x/both", both, 1, effects, f), SM_EINVAL);
    assert_int_equal(sm_functions_bind(f->fns, "x/long", too_long, 1, effects, f), SM_EINVAL);
    assert_int_equal(sm_functions_bind(f->fns, "x/long", too_long2, 1, effects, f), SM_EINVAL);
    assert_int_equal(sm_functions_count(f->fns), 2);
    assert_int_equal(sm_functions_bind(f->fns, "x/max", max, 1, effects, f), SM_OK);
    assert_int_equal(sm_functions_count(f->fns), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delayed_cancel_egress_encoded),
        cmocka_unit_test(test_nothing_extra_without_effects),
        cmocka_unit_test(test_cancel_in_same_batch),
        cmocka_unit_test(test_duplicate_token_fails),
        cmocka_unit_test(test_failure_discards_effects),
        cmocka_unit_test(test_argument_validation),
        cmocka_unit_test(test_ttl_in_describe),
        cmocka_unit_test(test_ttl_in_incomplete),
        cmocka_unit_test(test_ttl_bind_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
