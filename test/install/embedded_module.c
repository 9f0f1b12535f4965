/*
 * embedded_module — an out-of-tree embedded module (runtime/embedded.h),
 * built against an installed statemesh with its headers only: the module
 * leaves the SDK's symbols undefined and statemeshd provides them
 * (test/integration/test_install.py):
 *
 *     cc -std=c11 -Wall -Wextra -Werror -shared -fPIC embedded_module.c \
 *        -o liboot.so $(pkg-config --cflags statemesh)
 *
 *   oot/embedded   state n (statemesh/int64): adds the int64 message to n and
 *                  replies "embedded ID #N (sdk VERSION)".
 */
#include <inttypes.h>
#include <stdio.h>

#include <statemesh/function.h>
#include <statemesh/invoke.h>

const char statemesh_module_sdk_version[] = SM_SDK_VERSION;

int statemesh_module_init(sm_functions *fns);

static int embedded(sm_ctx *ctx, const sm_value *message, void *udata)
{
    char text[256];
    int64_t n, add;

    (void)udata;
    if (sm_value_as_int64(message, &add) != SM_OK) return sm_fail(ctx, "want statemesh/int64");
    if (sm_state_get_int64(ctx, "n", &n) < 0) return -1; /* SM_ABSENT: n = 0 */
    n += add;
    if (sm_state_set_int64(ctx, "n", n) != SM_OK) return -1;
    snprintf(text, sizeof text, "embedded %s #%" PRId64 " (sdk %s)", sm_ctx_self(ctx)->id, n,
             SM_SDK_VERSION);
    return sm_reply_string(ctx, text);
}

int statemesh_module_init(sm_functions *fns)
{
    static const sm_state_spec specs[] = {SM_STATE("n", SM_TYPE_INT64)};
    return sm_functions_bind(fns, "oot/embedded", specs, 1, embedded, NULL);
}
