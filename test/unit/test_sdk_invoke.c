/* Batch processing of the C SDK (sdk-c/functions.c) without gRPC: BatchRequest
 * protobufs in, BatchResponse out, through sm_functions_process. Covers the
 * semantics of protocol/statemesh/v1/function.proto: state accumulating over
 * a batch, incomplete, failure discarding everything, invocation_index on
 * messages and replies, undeclared state, typename mismatch, unknown types,
 * and that an answer lives in the arena, not in the request. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "statemesh/invoke.h"

/* ---- building requests ---- */

#define MAXN 16

struct rb {
    Statemesh__V1__BatchRequest req;
    Statemesh__V1__Address target;
    Statemesh__V1__StateValue sv[MAXN], *svp[MAXN];
    Statemesh__V1__TypedValue svv[MAXN];
    Statemesh__V1__Invocation inv[MAXN], *invp[MAXN];
    Statemesh__V1__TypedValue arg[MAXN];
    Statemesh__V1__Address caller[MAXN];
    uint8_t scalars[2 * MAXN][8];
    int nscalar;
};

static void rb_init(struct rb *b, uint64_t id, const char *type, const char *addr_id)
{
    memset(b, 0, sizeof *b);
    statemesh__v1__batch_request__init(&b->req);
    statemesh__v1__address__init(&b->target);
    b->target.type = (char *)type;
    b->target.id = (char *)addr_id;
    b->req.batch_id = id;
    b->req.target = &b->target;
    b->req.state = b->svp;
    b->req.invocations = b->invp;
}

/* A state entry; typename NULL = sent without value (absent). */
static void rb_state(struct rb *b, const char *name, const char *typename, const void *data,
                     size_t len)
{
    size_t i = b->req.n_state++;
    statemesh__v1__state_value__init(&b->sv[i]);
    b->sv[i].name = (char *)name;
    if (typename) {
        statemesh__v1__typed_value__init(&b->svv[i]);
        b->svv[i].typename_ = (char *)typename;
        b->svv[i].value.data = (uint8_t *)data;
        b->svv[i].value.len = len;
        b->sv[i].value = &b->svv[i];
    }
    b->svp[i] = &b->sv[i];
}

static void rb_state_int64(struct rb *b, const char *name, int64_t v)
{
    uint8_t *s = b->scalars[b->nscalar++];
    sm_encode_int64(v, s);
    rb_state(b, name, SM_TYPE_INT64, s, 8);
}

static Statemesh__V1__Invocation *rb_inv(struct rb *b, const char *typename, const void *data,
                                         size_t len)
{
    size_t i = b->req.n_invocations++;
    statemesh__v1__invocation__init(&b->inv[i]);
    statemesh__v1__typed_value__init(&b->arg[i]);
    b->arg[i].typename_ = (char *)typename;
    b->arg[i].value.data = (uint8_t *)data;
    b->arg[i].value.len = len;
    b->inv[i].argument = &b->arg[i];
    b->invp[i] = &b->inv[i];
    return &b->inv[i];
}

static void rb_inv_int64(struct rb *b, int64_t v)
{
    uint8_t *s = b->scalars[b->nscalar++];
    sm_encode_int64(v, s);
    rb_inv(b, SM_TYPE_INT64, s, 8);
}

static void rb_inv_string(struct rb *b, const char *s)
{
    rb_inv(b, SM_TYPE_STRING, s, strlen(s));
}

static void rb_inv_from(struct rb *b, const char *s, const char *ctype, const char *cid)
{
    Statemesh__V1__Invocation *inv = rb_inv(b, SM_TYPE_STRING, s, strlen(s));
    size_t i = b->req.n_invocations - 1;
    statemesh__v1__address__init(&b->caller[i]);
    b->caller[i].type = (char *)ctype;
    b->caller[i].id = (char *)cid;
    inv->caller = &b->caller[i];
}

static int64_t i64(const Statemesh__V1__TypedValue *tv)
{
    assert_non_null(tv);
    assert_string_equal(tv->typename_, SM_TYPE_INT64);
    assert_int_equal(tv->value.len, 8);
    return sm_decode_int64(tv->value.data);
}

/* ---- fixture: a registry with the handlers below, and an arena ---- */

struct fix {
    sm_functions *fns;
    sm_arena *arena;
    int calls;           /* handler invocations, across handlers */
};

static int counter(sm_ctx *ctx, const sm_value *msg, void *udata)
{
    struct fix *f = udata;
    int64_t n, k;
    f->calls++;
    if (sm_value_as_int64(msg, &k) != SM_OK) return sm_fail(ctx, "counter wants int64");
    if (sm_state_get_int64(ctx, "n", &n) < 0) return -1;
    if (sm_state_set_int64(ctx, "n", n + k) < 0) return -1;
    return sm_reply_int64(ctx, n + k);
}

/* Message string commands: "set X", "del", "send", "fail", "undeclared",
 * "wrongtype", "ret7", "badsend", "ignore-undeclared", "caller". */
static int scripted(sm_ctx *ctx, const sm_value *msg, void *udata)
{
    struct fix *f = udata;
    const char *s;
    size_t len;
    char cmd[64];

    f->calls++;
    if (sm_value_as_string(msg, &s, &len) != SM_OK || len >= sizeof cmd) return sm_fail(ctx, "bad");
    memcpy(cmd, s, len);
    cmd[len] = '\0';
    if (strncmp(cmd, "set ", 4) == 0) return sm_state_set_string(ctx, "text", cmd + 4);
    if (strcmp(cmd, "append") == 0) {
        const char *old;
        size_t n;
        char buf[128];
        if (sm_state_get_string(ctx, "text", &old, &n) < 0) return -1;
        snprintf(buf, sizeof buf, "%.*s+", (int)n, old);
        return sm_state_set_string(ctx, "text", buf);
    }
    if (strcmp(cmd, "del") == 0) return sm_state_delete(ctx, "text");
    if (strcmp(cmd, "send") == 0) {
        char id[32];
        snprintf(id, sizeof id, "to-%zu", sm_ctx_invocation_index(ctx));
        if (sm_send_string(ctx, "other/fn", id, "payload") < 0) return -1;
        return sm_reply_string(ctx, id);
    }
    if (strcmp(cmd, "fail") == 0) return sm_fail(ctx, "scripted failure at %zu", sm_ctx_invocation_index(ctx));
    if (strcmp(cmd, "undeclared") == 0) {
        int64_t x;
        int rc = sm_state_get_int64(ctx, "nope", &x);
        assert_int_equal(rc, SM_EUNDECLARED);
        return 0; /* ignores the error: the batch must fail anyway */
    }
    if (strcmp(cmd, "wrongtype") == 0) {
        int rc = sm_state_set_int64(ctx, "text", 5);
        assert_int_equal(rc, SM_ETYPE);
        return 0;
    }
    if (strcmp(cmd, "ret7") == 0) return 7;
    if (strcmp(cmd, "badsend") == 0) return sm_send_string(ctx, "no-slash", "x", "y");
    if (strcmp(cmd, "caller") == 0) {
        const sm_address *c = sm_ctx_caller(ctx);
        char buf[128];
        snprintf(buf, sizeof buf, "%s|%s|%s", c ? c->type : "ingress", c ? c->id : "-",
                 sm_ctx_self(ctx)->id);
        return sm_reply_string(ctx, buf);
    }
    return sm_fail(ctx, "unknown command %s", cmd);
}

static int setup(void **state)
{
    static const sm_state_spec counter_specs[] = {SM_STATE("n", SM_TYPE_INT64)};
    static const sm_state_spec scripted_specs[] = {SM_STATE("text", SM_TYPE_STRING),
                                                   SM_STATE("extra", SM_TYPE_INT64)};
    struct fix *f = calloc(1, sizeof *f);
    f->fns = sm_functions_create();
    f->arena = sm_arena_create();
    assert_int_equal(sm_functions_bind(f->fns, "test/counter", counter_specs, 1, counter, f), SM_OK);
    assert_int_equal(sm_functions_bind(f->fns, "test/scripted", scripted_specs, 2, scripted, f),
                     SM_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    sm_functions_destroy(&f->fns);
    assert_null(f->fns);
    sm_arena_destroy(&f->arena);
    free(f);
    return 0;
}

static Statemesh__V1__BatchResponse process(struct fix *f, struct rb *b)
{
    Statemesh__V1__BatchResponse r;
    assert_int_equal(sm_functions_process(f->fns, &b->req, f->arena, &r), SM_OK);
    assert_int_equal(r.batch_id, b->req.batch_id);
    return r;
}

/* A scripted batch with both states present and the given commands. */
static Statemesh__V1__BatchResponse run_script(struct fix *f, struct rb *b, const char *text,
                                               const char **cmds, size_t n)
{
    rb_init(b, 77, "test/scripted", "s1");
    if (text) rb_state(b, "text", SM_TYPE_STRING, text, strlen(text));
    else rb_state(b, "text", NULL, NULL, 0);
    rb_state(b, "extra", NULL, NULL, 0);
    for (size_t i = 0; i < n; i++) rb_inv_string(b, cmds[i]);
    return process(f, b);
}

/* ---- tests ---- */

static void test_state_accumulates(void **state)
{
    struct fix *f = *state;
    struct rb b;
    Statemesh__V1__BatchResponse r;

    rb_init(&b, 1, "test/counter", "a");
    rb_state_int64(&b, "n", 10);
    rb_inv_int64(&b, 1);
    rb_inv_int64(&b, 2);
    rb_inv_int64(&b, 3);
    r = process(f, &b);
    assert_int_equal(r.outcome_case, STATEMESH__V1__BATCH_RESPONSE__OUTCOME_RESULT);
    assert_int_equal(r.result->n_state_mutations, 1);
    assert_string_equal(r.result->state_mutations[0]->name, "n");
    assert_int_equal(r.result->state_mutations[0]->kind, STATEMESH__V1__STATE_MUTATION__KIND__MODIFY);
    assert_int_equal(i64(r.result->state_mutations[0]->value), 16);
    assert_int_equal(r.result->n_replies, 3);
    for (size_t i = 0; i < 3; i++) assert_int_equal(r.result->replies[i]->invocation_index, i);
    assert_int_equal(i64(r.result->replies[0]->value), 11);
    assert_int_equal(i64(r.result->replies[1]->value), 13);
    assert_int_equal(i64(r.result->replies[2]->value), 16);
    assert_int_equal(r.result->n_outgoing_messages, 0);
    sm_arena_reset(f->arena);
}

static void test_absent_state_defaults(void **state)
{
    struct fix *f = *state;
    struct rb b;
    Statemesh__V1__BatchResponse r;

    rb_init(&b, 2, "test/counter", "fresh");
    rb_state(&b, "n", NULL, NULL, 0); /* slot sent, value absent: n = 0 */
    rb_inv_int64(&b, 5);
    r = process(f, &b);
    assert_int_equal(r.outcome_case, STATEMESH__V1__BATCH_RESPONSE__OUTCOME_RESULT);
    assert_int_equal(i64(r.result->state_mutations[0]->value), 5);
    sm_arena_reset(f->arena);
}

static void test_incomplete(void **state)
{
    struct fix *f = *state;
    struct rb b;
    Statemesh__V1__BatchResponse r;
    int before = f->calls;

    rb_init(&b, 3, "test/scripted", "x");
    rb_state(&b, "extra", NULL, NULL, 0);         /* "text" is missing */
    rb_state(&b, "unknown", SM_TYPE_INT64, "12345678", 8); /* undeclared: ignored */
    rb_inv_string(&b, "set a");
    r = process(f, &b);
    assert_int_equal(r.outcome_case, STATEMESH__V1__BATCH_RESPONSE__OUTCOME_INCOMPLETE);
    assert_int_equal(r.incomplete->n_missing_states, 1);
    assert_string_equal(r.incomplete->missing_states[0]->name, "text");
    assert_string_equal(r.incomplete->missing_states[0]->typename_, SM_TYPE_STRING);
    assert_int_equal(f->calls, before); /* no handler ran */

    rb_init(&b, 4, "test/scripted", "x"); /* nothing at all: both missing, in order */
    rb_inv_string(&b, "set a");
    r = process(f, &b);
    assert_int_equal(r.outcome_case, STATEMESH__V1__BATCH_RESPONSE__OUTCOME_INCOMPLETE);
    assert_int_equal(r.incomplete->n_missing_states, 2);
    assert_string_equal(r.incomplete->missing_states[0]->name, "text");
    assert_string_equal(r.incomplete->missing_states[1]->name, "extra");
    sm_arena_reset(f->arena);
}

static void test_failure_discards_everything(void **state)
{
    struct fix *f = *state;
    struct rb b;
    const char *cmds[] = {"set a", "send", "fail", "set never"};
    int before = f->calls;
    Statemesh__V1__BatchResponse r = run_script(f, &b, "old", cmds, 4);

    assert_int_equal(r.outcome_case, STATEMESH__V1__BATCH_RESPONSE__OUTCOME_FAILURE);
    assert_string_equal(r.failure->message, "scripted failure at 2");
    assert_int_equal(f->calls - before, 3); /* invocation 3 never ran */
    sm_arena_reset(f->arena);
}

static void test_nonzero_return_fails(void **state)
{
    struct fix *f = *state;
    struct rb b;
    const char *cmds[] = {"set a", "ret7"};
    Statemesh__V1__BatchResponse r = run_script(f, &b, NULL, cmds, 2);

    assert_int_equal(r.outcome_case, STATEMESH__V1__BATCH_RESPONSE__OUTCOME_FAILURE);
    assert_non_null(strstr(r.failure->message, "returned 7"));
    assert_non_null(strstr(r.failure->message, "invocation 1 of 2"));
    sm_arena_reset(f->arena);
}

static void test_invocation_index(void **state)
{
    struct fix *f = *state;
    struct rb b;
    const char *cmds[] = {"set a", "send", "set b", "send"};
    Statemesh__V1__BatchResponse r = run_script(f, &b, NULL, cmds, 4);
    Statemesh__V1__Result *res;

    assert_int_equal(r.outcome_case, STATEMESH__V1__BATCH_RESPONSE__OUTCOME_RESULT);
    res = r.result;
    assert_int_equal(res->n_outgoing_messages, 2);
    assert_int_equal(res->outgoing_messages[0]->invocation_index, 1);
    assert_int_equal(res->outgoing_messages[1]->invocation_index, 3);
    assert_string_equal(res->outgoing_messages[0]->target->type, "other/fn");
    assert_string_equal(res->outgoing_messages[0]->target->id, "to-1");
    assert_string_equal(res->outgoing_messages[1]->target->id, "to-3");
    assert_string_equal(res->outgoing_messages[1]->argument->typename_, SM_TYPE_STRING);
    assert_int_equal(res->outgoing_messages[1]->argument->value.len, 7);
    assert_memory_equal(res->outgoing_messages[1]->argument->value.data, "payload", 7);
    assert_int_equal(res->n_replies, 2);
    assert_int_equal(res->replies[0]->invocation_index, 1);
    assert_int_equal(res->replies[1]->invocation_index, 3);
    assert_int_equal(res->n_state_mutations, 1); /* only "text" was written: last value wins */
    assert_string_equal(res->state_mutations[0]->name, "text");
    assert_int_equal(res->state_mutations[0]->value->value.len, 1);
    assert_memory_equal(res->state_mutations[0]->value->value.data, "b", 1);
    sm_arena_reset(f->arena);
}

static void test_state_seen_by_later_invocations(void **state)
{
    struct fix *f = *state;
    struct rb b;
    const char *cmds[] = {"append", "append", "del", "append", "append"};
    Statemesh__V1__BatchResponse r = run_script(f, &b, "x", cmds, 5);

    assert_int_equal(r.outcome_case, STATEMESH__V1__BATCH_RESPONSE__OUTCOME_RESULT);
    assert_int_equal(r.result->n_state_mutations, 1);
    /* x -> x+ -> x++ -> (deleted) -> + -> ++ */
    assert_int_equal(r.result->state_mutations[0]->value->value.len, 2);
    assert_memory_equal(r.result->state_mutations[0]->value->value.data, "++", 2);
    sm_arena_reset(f->arena);

    const char *cmds2[] = {"append", "del"};
    r = run_script(f, &b, "x", cmds2, 2);
    assert_int_equal(r.outcome_case, STATEMESH__V1__BATCH_RESPONSE__OUTCOME_RESULT);
    assert_int_equal(r.result->n_state_mutations, 1);
    assert_int_equal(r.result->state_mutations[0]->kind, STATEMESH__V1__STATE_MUTATION__KIND__DELETE);
    assert_null(r.result->state_mutations[0]->value);
    sm_arena_reset(f->arena);
}

static void test_undeclared_state_fails(void **state)
{
    struct fix *f = *state;
    struct rb b;
    const char *cmds[] = {"set a", "undeclared"};
    Statemesh__V1__BatchResponse r = run_script(f, &b, NULL, cmds, 2);

    assert_int_equal(r.outcome_case, STATEMESH__V1__BATCH_RESPONSE__OUTCOME_FAILURE);
    assert_non_null(strstr(r.failure->message, "state 'nope' is not declared"));
    sm_arena_reset(f->arena);
}

static void test_typename_mismatch_fails(void **state)
{
    struct fix *f = *state;
    struct rb b;
    const char *cmds[] = {"wrongtype"};
    Statemesh__V1__BatchResponse r = run_script(f, &b, NULL, cmds, 1);

    assert_int_equal(r.outcome_case, STATEMESH__V1__BATCH_RESPONSE__OUTCOME_FAILURE);
    assert_non_null(strstr(r.failure->message, "declared statemesh/string, set to statemesh/int64"));
    sm_arena_reset(f->arena);

    /* A stored value of another typename, read through a typed getter. */
    rb_init(&b, 9, "test/counter", "c");
    rb_state(&b, "n", SM_TYPE_STRING, "12", 2);
    rb_inv_int64(&b, 1);
    r = process(f, &b);
    assert_int_equal(r.outcome_case, STATEMESH__V1__BATCH_RESPONSE__OUTCOME_FAILURE);
    assert_non_null(strstr(r.failure->message, "holds statemesh/string"));
    sm_arena_reset(f->arena);
}

static void test_bad_send_target_fails(void **state)
{
    struct fix *f = *state;
    struct rb b;
    const char *cmds[] = {"badsend"};
    Statemesh__V1__BatchResponse r = run_script(f, &b, NULL, cmds, 1);

    assert_int_equal(r.outcome_case, STATEMESH__V1__BATCH_RESPONSE__OUTCOME_FAILURE);
    assert_non_null(strstr(r.failure->message, "malformed function type"));
    sm_arena_reset(f->arena);
}

static void test_not_served(void **state)
{
    struct fix *f = *state;
    struct rb b;
    Statemesh__V1__BatchResponse r;

    rb_init(&b, 5, "nope/fn", "x");
    rb_inv_string(&b, "hi");
    r = process(f, &b);
    assert_int_equal(r.outcome_case, STATEMESH__V1__BATCH_RESPONSE__OUTCOME_FAILURE);
    assert_string_equal(r.failure->message, "function type nope/fn not served here");

    rb_init(&b, 6, "x/y", "x");
    b.req.target = NULL;
    r = process(f, &b);
    assert_int_equal(r.outcome_case, STATEMESH__V1__BATCH_RESPONSE__OUTCOME_FAILURE);
    sm_arena_reset(f->arena);
}

static void test_caller_and_self(void **state)
{
    struct fix *f = *state;
    struct rb b;
    Statemesh__V1__BatchResponse r;

    rb_init(&b, 8, "test/scripted", "me");
    rb_state(&b, "text", NULL, NULL, 0);
    rb_state(&b, "extra", NULL, NULL, 0);
    rb_inv_string(&b, "caller");
    rb_inv_from(&b, "caller", "other/fn", "you");
    r = process(f, &b);
    assert_int_equal(r.outcome_case, STATEMESH__V1__BATCH_RESPONSE__OUTCOME_RESULT);
    assert_int_equal(r.result->n_replies, 2);
    assert_memory_equal(r.result->replies[0]->value->value.data, "ingress|-|me", 12);
    assert_memory_equal(r.result->replies[1]->value->value.data, "other/fn|you|me", 15);
    sm_arena_reset(f->arena);
}

/* The answer must not point into the request: pack the request, unpack it
 * on the heap, process, free the request, then read the answer. */
static void test_answer_outlives_request(void **state)
{
    struct fix *f = *state;
    struct rb b;
    const char *cmds[] = {"set hello", "send"};
    Statemesh__V1__BatchRequest *heap;
    Statemesh__V1__BatchResponse r;
    uint8_t *packed;
    size_t len;

    rb_init(&b, 10, "test/scripted", "owner");
    rb_state(&b, "text", NULL, NULL, 0);
    rb_state(&b, "extra", NULL, NULL, 0);
    for (size_t i = 0; i < 2; i++) rb_inv_string(&b, cmds[i]);
    len = statemesh__v1__batch_request__get_packed_size(&b.req);
    packed = malloc(len);
    statemesh__v1__batch_request__pack(&b.req, packed);
    heap = statemesh__v1__batch_request__unpack(NULL, len, packed);
    free(packed);
    assert_non_null(heap);
    assert_int_equal(sm_functions_process(f->fns, heap, f->arena, &r), SM_OK);
    statemesh__v1__batch_request__free_unpacked(heap, NULL);

    assert_int_equal(r.outcome_case, STATEMESH__V1__BATCH_RESPONSE__OUTCOME_RESULT);
    len = statemesh__v1__batch_response__get_packed_size(&r);
    packed = malloc(len);
    statemesh__v1__batch_response__pack(&r, packed);
    sm_arena_reset(f->arena);
    {
        Statemesh__V1__BatchResponse *back = statemesh__v1__batch_response__unpack(NULL, len, packed);
        assert_non_null(back);
        assert_int_equal(back->batch_id, 10);
        assert_string_equal(back->result->state_mutations[0]->name, "text");
        assert_memory_equal(back->result->state_mutations[0]->value->value.data, "hello", 5);
        assert_string_equal(back->result->outgoing_messages[0]->target->id, "to-1");
        statemesh__v1__batch_response__free_unpacked(back, NULL);
    }
    free(packed);
}

static void test_describe(void **state)
{
    struct fix *f = *state;
    Statemesh__V1__DescribeResponse d;

    assert_int_equal(sm_functions_describe(f->fns, f->arena, &d), SM_OK);
    assert_int_equal(d.n_functions, 2);
    assert_string_equal(d.functions[0]->type, "test/counter"); /* sorted */
    assert_string_equal(d.functions[1]->type, "test/scripted");
    assert_int_equal(d.functions[1]->n_states, 2);
    assert_string_equal(d.functions[1]->states[0]->name, "text");
    assert_string_equal(d.functions[1]->states[1]->typename_, SM_TYPE_INT64);
    assert_non_null(strstr(d.sdk, "statemesh-c/"));
    sm_arena_reset(f->arena);
}

static int noop(sm_ctx *ctx, const sm_value *msg, void *udata)
{
    return 0;
}

static void test_bind_errors(void **state)
{
    struct fix *f = *state;
    sm_state_spec dup[] = {SM_STATE("a", SM_TYPE_INT64), SM_STATE("a", SM_TYPE_STRING)};
    sm_state_spec bad_name[] = {SM_STATE("has space", SM_TYPE_INT64)};
    sm_state_spec no_typename[] = {SM_STATE("a", "")};

    assert_int_equal(sm_functions_bind(f->fns, "test/counter", NULL, 0, noop, NULL), SM_EEXIST);
    assert_int_equal(sm_functions_bind(f->fns, "noslash", NULL, 0, noop, NULL), SM_EINVAL);
    assert_int_equal(sm_functions_bind(f->fns, "a/b/c", NULL, 0, noop, NULL), SM_EINVAL);
    assert_int_equal(sm_functions_bind(f->fns, "/b", NULL, 0, noop, NULL), SM_EINVAL);
    assert_int_equal(sm_functions_bind(f->fns, "a/", NULL, 0, noop, NULL), SM_EINVAL);
    assert_int_equal(sm_functions_bind(f->fns, "a/b", dup, 2, noop, NULL), SM_EINVAL);
    assert_int_equal(sm_functions_bind(f->fns, "a/b", bad_name, 1, noop, NULL), SM_EINVAL);
    assert_int_equal(sm_functions_bind(f->fns, "a/b", no_typename, 1, noop, NULL), SM_EINVAL);
    assert_int_equal(sm_functions_bind(f->fns, "a/b", NULL, 0, NULL, NULL), SM_EINVAL);
    assert_int_equal(sm_functions_count(f->fns), 2);
}

static void test_arena(void **state)
{
    sm_arena *a = sm_arena_create();
    void *big, *p[100];

    for (int i = 0; i < 100; i++) {
        p[i] = sm_arena_alloc(a, (size_t)i * 37 + 1);
        assert_non_null(p[i]);
        assert_int_equal((uintptr_t)p[i] % 16, 0);
        memset(p[i], i, (size_t)i * 37 + 1);
    }
    big = sm_arena_alloc(a, 1 << 20); /* larger than a chunk */
    assert_non_null(big);
    memset(big, 1, 1 << 20);
    assert_true(sm_arena_used(a) >= (1 << 20));
    assert_null(sm_arena_alloc(a, SM_ARENA_CAP + 1));
    assert_non_null(sm_arena_memdup(a, NULL, 0));
    sm_arena_reset(a);
    assert_int_equal(sm_arena_used(a), 0);
    assert_string_equal(sm_arena_strdup(a, "again"), "again");
    sm_arena_destroy(&a);
    assert_null(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_accumulates),
        cmocka_unit_test(test_absent_state_defaults),
        cmocka_unit_test(test_incomplete),
        cmocka_unit_test(test_failure_discards_everything),
        cmocka_unit_test(test_nonzero_return_fails),
        cmocka_unit_test(test_invocation_index),
        cmocka_unit_test(test_state_seen_by_later_invocations),
        cmocka_unit_test(test_undeclared_state_fails),
        cmocka_unit_test(test_typename_mismatch_fails),
        cmocka_unit_test(test_bad_send_target_fails),
        cmocka_unit_test(test_not_served),
        cmocka_unit_test(test_caller_and_self),
        cmocka_unit_test(test_answer_outlives_request),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_bind_errors),
        cmocka_unit_test(test_arena),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
