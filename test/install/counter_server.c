/*
 * counter_server — an out-of-tree C function server, built against an
 * installed statemesh with nothing but pkg-config (test/integration/test_install.py):
 *
 *     cc -std=c11 -Wall -Wextra -Werror counter_server.c -o counter_server \
 *        $(pkg-config --cflags --libs statemesh)
 *     counter_server unix:/path.sock
 *
 *   oot/counter    state n (statemesh/int64): adds the int64 message to n and
 *                  sends n to oot/announcer with the same id.
 *   oot/announcer  replies "ID has N (sdk VERSION)" to the original Call.
 */
#include <inttypes.h>
#include <stdio.h>

#include <statemesh/function.h>
#include <statemesh/invoke.h>

static int counter(sm_ctx *ctx, const sm_value *message, void *udata)
{
    int64_t n, add;

    (void)udata;
    if (sm_value_as_int64(message, &add) != SM_OK)
        return sm_fail(ctx, "oot/counter wants statemesh/int64, got %s", message->typename);
    if (sm_state_get_int64(ctx, "n", &n) < 0) return -1; /* SM_ABSENT: n = 0 */
    n += add;
    if (sm_state_set_int64(ctx, "n", n) != SM_OK) return -1;
    return sm_send_int64(ctx, "oot/announcer", sm_ctx_self(ctx)->id, n);
}

static int announcer(sm_ctx *ctx, const sm_value *message, void *udata)
{
    char text[256];
    int64_t n;

    (void)udata;
    if (sm_value_as_int64(message, &n) != SM_OK) return sm_fail(ctx, "want statemesh/int64");
    snprintf(text, sizeof text, "%s has %" PRId64 " (sdk %s)", sm_ctx_self(ctx)->id, n,
             SM_SDK_VERSION);
    return sm_reply_string(ctx, text);
}

int main(int argc, char **argv)
{
    static const sm_state_spec specs[] = {SM_STATE("n", SM_TYPE_INT64)};
    sm_functions *fns = NULL;
    sm_server *srv = NULL;
    int rc = 1;

    if (argc != 2) {
        fprintf(stderr, "usage: counter_server unix:/path.sock|host:port\n");
        return 2;
    }
    if (!(fns = sm_functions_create()) ||
        sm_functions_bind(fns, "oot/counter", specs, 1, counter, NULL) != SM_OK ||
        sm_functions_bind(fns, "oot/announcer", NULL, 0, announcer, NULL) != SM_OK)
        goto out;
    if (!(srv = sm_server_create(fns))) goto out;
    if (sm_server_listen(srv, argv[1]) == SM_OK && sm_server_run(srv) == SM_OK) rc = 0;
out:
    sm_server_destroy(&srv);
    sm_functions_destroy(&fns);
    return rc;
}
