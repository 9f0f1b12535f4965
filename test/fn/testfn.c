/*
 * testfn — a function server for the integration tests.
 *
 *   testfn [--listen ADDR] [--slow-ms N]
 *
 *   --listen ADDR   unix:/path.sock or host:port (port 0 picks a free port; the
 *                   log line event=fn.listen shows it). Default
 *                   unix:/tmp/statemesh-testfn.sock.
 *   --slow-ms N     how long test/slow sleeps per batch (default 200).
 *
 * Runs until SIGINT/SIGTERM. Logs logfmt lines to stderr
 * ($STATEMESH_LOG_LEVEL=debug for more). Exit 0 after a clean shutdown,
 * 1 if it cannot listen, 2 on a usage error.
 *
 * Function types — exact behaviour ("fails" = the batch answers `failure`,
 * nothing of it is applied and the runtime retries it):
 *
 *   test/counter  state n (statemesh/int64, absent = 0).
 *                 Message: statemesh/int64 k; any other typename fails.
 *                 n += k, then replies the new n (statemesh/int64).
 *
 *   test/echo     no state. Replies the message unchanged (same typename,
 *                 same bytes).
 *
 *   test/slow     state batches (int64) and max_batch (int64), absent = 0.
 *                 Message: anything (ignored). On the first invocation of each
 *                 batch it sleeps --slow-ms, sets batches += 1 and
 *                 max_batch = max(max_batch, size of this batch). Replies the
 *                 size of this batch (statemesh/int64) to every invocation.
 *                 The sleep blocks the whole server (one thread), so messages
 *                 queue up in the runtime and later batches grow.
 *
 *   test/forward  no state. Message: statemesh/string "TYPE ID" (split at the
 *                 first space; ID is the rest and may contain spaces); any
 *                 other typename or a string without a space fails.
 *                 Sends statemesh/int64 1 to (TYPE, ID) and replies nothing,
 *                 so a Call to test/forward whose target is test/counter is
 *                 answered by test/counter (its new n).
 *
 *   test/fail     no state. Always fails, with the message
 *                 "test/fail always fails".
 *
 *   test/order    state seen (statemesh/string, absent = "").
 *                 Message: statemesh/string s; any other typename fails.
 *                 seen = seen + s + ",", then replies the new seen
 *                 (statemesh/string), so the order of arrival can be checked.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "statemesh/function.h"

struct options {
    const char *listen;
    long slow_ms;
};

static int counter(sm_ctx *ctx, const sm_value *msg, void *udata)
{
    int64_t n, k;
    if (sm_value_as_int64(msg, &k) != SM_OK)
        return sm_fail(ctx, "test/counter wants statemesh/int64, got %s", msg->typename);
    if (sm_state_get_int64(ctx, "n", &n) < 0) return -1;
    n += k;
    if (sm_state_set_int64(ctx, "n", n) < 0) return -1;
    return sm_reply_int64(ctx, n);
}

static int echo(sm_ctx *ctx, const sm_value *msg, void *udata)
{
    return sm_reply(ctx, msg);
}

static int slow(sm_ctx *ctx, const sm_value *msg, void *udata)
{
    const struct options *opt = udata;
    int64_t size = (int64_t)sm_ctx_batch_size(ctx);

    if (sm_ctx_invocation_index(ctx) == 0) {
        int64_t batches, max_batch;
        struct timespec ts = {opt->slow_ms / 1000, (opt->slow_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
        if (sm_state_get_int64(ctx, "batches", &batches) < 0) return -1;
        if (sm_state_get_int64(ctx, "max_batch", &max_batch) < 0) return -1;
        if (sm_state_set_int64(ctx, "batches", batches + 1) < 0) return -1;
        if (size > max_batch && sm_state_set_int64(ctx, "max_batch", size) < 0) return -1;
    }
    return sm_reply_int64(ctx, size);
}

static int forward(sm_ctx *ctx, const sm_value *msg, void *udata)
{
    const char *s, *space;
    size_t len;
    char *type, *id;

    if (sm_value_as_string(msg, &s, &len) != SM_OK)
        return sm_fail(ctx, "test/forward wants statemesh/string \"TYPE ID\", got %s",
                       msg->typename);
    space = memchr(s, ' ', len);
    if (!space || space == s || space + 1 == s + len)
        return sm_fail(ctx, "test/forward wants \"TYPE ID\", got \"%.*s\"", (int)len, s);
    type = sm_ctx_alloc(ctx, (size_t)(space - s) + 1);
    id = sm_ctx_alloc(ctx, (size_t)(s + len - space));
    if (!type || !id) return sm_fail(ctx, "out of memory");
    memcpy(type, s, (size_t)(space - s));
    type[space - s] = '\0';
    memcpy(id, space + 1, (size_t)(s + len - space - 1));
    id[s + len - space - 1] = '\0';
    return sm_send_int64(ctx, type, id, 1);
}

static int fail(sm_ctx *ctx, const sm_value *msg, void *udata)
{
    return sm_fail(ctx, "test/fail always fails");
}

static int order(sm_ctx *ctx, const sm_value *msg, void *udata)
{
    const char *seen, *s;
    size_t seen_len, len;
    char *next;

    if (sm_value_as_string(msg, &s, &len) != SM_OK)
        return sm_fail(ctx, "test/order wants statemesh/string, got %s", msg->typename);
    if (sm_state_get_string(ctx, "seen", &seen, &seen_len) < 0) return -1;
    next = sm_ctx_alloc(ctx, seen_len + len + 1);
    if (!next) return sm_fail(ctx, "out of memory");
    memcpy(next, seen, seen_len);
    memcpy(next + seen_len, s, len);
    next[seen_len + len] = ',';
    sm_value v = sm_value_string_n(next, seen_len + len + 1);
    if (sm_state_set(ctx, "seen", &v) < 0) return -1;
    return sm_reply(ctx, &v);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: testfn [--listen unix:/path.sock|host:port] [--slow-ms N]\n"
               "Serves test/counter, test/echo, test/slow, test/forward, test/fail and\n"
               "test/order; see the top of test/fn/testfn.c for their exact behaviour.\n");
}

int main(int argc, char **argv)
{
    static const sm_state_spec counter_specs[] = {{"n", SM_TYPE_INT64}};
    static const sm_state_spec slow_specs[] = {{"batches", SM_TYPE_INT64},
                                               {"max_batch", SM_TYPE_INT64}};
    static const sm_state_spec order_specs[] = {{"seen", SM_TYPE_STRING}};
    struct options opt = {"unix:/tmp/statemesh-testfn.sock", 200};
    sm_functions *fns = NULL;
    sm_server *srv = NULL;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            opt.listen = argv[++i];
        } else if (strcmp(argv[i], "--slow-ms") == 0 && i + 1 < argc) {
            char *end;
            opt.slow_ms = strtol(argv[++i], &end, 10);
            if (*end || opt.slow_ms < 0 || opt.slow_ms > 3600000) {
                fprintf(stderr, "testfn: --slow-ms wants 0..3600000 milliseconds\n");
                return 2;
            }
        } else {
            fprintf(stderr, "testfn: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    fns = sm_functions_create();
    if (!fns || sm_functions_bind(fns, "test/counter", counter_specs, 1, counter, NULL) ||
        sm_functions_bind(fns, "test/echo", NULL, 0, echo, NULL) ||
        sm_functions_bind(fns, "test/slow", slow_specs, 2, slow, &opt) ||
        sm_functions_bind(fns, "test/forward", NULL, 0, forward, NULL) ||
        sm_functions_bind(fns, "test/fail", NULL, 0, fail, NULL) ||
        sm_functions_bind(fns, "test/order", order_specs, 1, order, NULL)) {
        fprintf(stderr, "testfn: cannot bind the function types\n");
        goto out;
    }
    if (!(srv = sm_server_create(fns))) goto out;
    if (sm_server_listen(srv, opt.listen) != SM_OK) goto out; /* the reason is logged */
    if (sm_server_run(srv) != SM_OK) goto out;
    rc = 0;
out:
    sm_server_destroy(&srv);
    sm_functions_destroy(&fns);
    return rc;
}
