/* bench functions — see bench_functions.h. */
#include "bench_functions.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int counter(sm_ctx *ctx, const sm_value *msg, void *udata)
{
    int64_t n, k;
    (void)udata;
    if (sm_value_as_int64(msg, &k) != SM_OK)
        return sm_fail(ctx, BENCH_COUNTER_TYPE " wants statemesh/int64, got %s", msg->typename);
    if (sm_state_get_int64(ctx, BENCH_STATE, &n) < 0) return -1;
    if (sm_state_set_int64(ctx, BENCH_STATE, n + k) < 0) return -1;
    /* Reply the new value so loadgen can Call the counter. The function
     * cannot tell whether a Call is pending (the protocol does not say), so
     * every message from the ingress (no caller) gets one; the runtime drops
     * replies nobody waits for. */
    if (!sm_ctx_caller(ctx)) return sm_reply_int64(ctx, n + k) < 0 ? -1 : 0;
    return 0;
}

static int greeter(sm_ctx *ctx, const sm_value *msg, void *udata)
{
    const char *id = sm_ctx_self(ctx)->id;
    size_t size = strlen(id) + 32;
    char *greeting = sm_ctx_alloc(ctx, size);
    int64_t n;
    (void)msg;
    (void)udata;

    if (!greeting) return sm_fail(ctx, "out of memory");
    if (sm_state_get_int64(ctx, BENCH_STATE, &n) < 0) return -1;
    n++;
    if (sm_state_set_int64(ctx, BENCH_STATE, n) < 0) return -1;
    snprintf(greeting, size, "Hello %s #%" PRId64, id, n);
    return sm_reply_string(ctx, greeting);
}

int bench_bind(sm_functions *fns)
{
    static const sm_state_spec specs[] = {SM_STATE(BENCH_STATE, SM_TYPE_INT64)};
    int rc = sm_functions_bind(fns, BENCH_COUNTER_TYPE, specs, 1, counter, NULL);
    if (rc != SM_OK) return rc;
    return sm_functions_bind(fns, BENCH_GREETER_TYPE, specs, 1, greeter, NULL);
}
