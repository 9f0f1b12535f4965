/*
 * testfn — a function server for the integration tests.
 *
 *   testfn [--listen ADDR] [--slow-ms N] [--ttl-ms N]
 *
 *   --listen ADDR   unix:/path.sock or host:port (port 0 picks a free port; the
 *                   log line event=fn.listen shows it). Default
 *                   unix:/tmp/statemesh-testfn.sock.
 *   --slow-ms N     how long test/slow sleeps per batch (default 200).
 *   --ttl-ms N      the state TTL of test/ttl (default 1000).
 *   --tls-cert F --tls-key F [--tls-ca F] [--require-client-cert]
 *                   serve host:port over TLS (mTLS with the last two).
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
 *   test/trace    no state. Replies the invocation's W3C trace id
 *                 (statemesh/string, 32 hex digits; "" when not traced).
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
 *
 *   test/effects  no state. Message: statemesh/string, commands separated by
 *                 ';', words by single spaces; any other typename or an
 *                 unknown command fails. Replies "ok" (statemesh/string)
 *                 after running all of them:
 *                   after MS TYPE ID [TOKEN]  delayed message statemesh/int64 1
 *                                             to (TYPE, ID) after MS ms,
 *                                             cancellable with TOKEN
 *                   cancel TOKEN              cancels it
 *                   egress NAME TEXT          egress record statemesh/string
 *                                             TEXT (the rest of the command)
 *                   fail                      fails the batch (after the others:
 *                                             nothing of the batch is applied)
 *                 E.g. "after 500 test/counter c1 t1;egress log hello".
 *
 *   test/store    state typename and hex (statemesh/string). Message: anything.
 *                 Stores the message's typename and its bytes in lowercase hex,
 *                 and replies "TYPENAME HEX" (statemesh/string), so tests can
 *                 check exactly how a client encoded a value.
 *
 *   test/ttl      state w (statemesh/string, expires --ttl-ms after write) and
 *                 i (statemesh/string, expires --ttl-ms after the last
 *                 invocation). Message: statemesh/string "set" (w = i = "x"),
 *                 anything else only reads. Replies "w=<w|->,i=<i|->"
 *                 (statemesh/string; "-" = absent), after a "set" the new values.
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

/* test/trace: replies the invocation's trace id ("" when not traced). */
static int trace(sm_ctx *ctx, const sm_value *msg, void *udata)
{
    const char *t = sm_ctx_trace_id(ctx);
    (void)msg;
    (void)udata;
    return sm_reply_string(ctx, t ? t : "");
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

/* Splits the next ' '-separated word off *p (NUL-terminates it); NULL at the end. */
static char *word(char **p)
{
    char *w = *p, *sp;
    if (!w || !*w) return NULL;
    sp = strchr(w, ' ');
    if (sp) {
        *sp = '\0';
        *p = sp + 1;
    } else {
        *p = NULL;
    }
    return w;
}

static int effects(sm_ctx *ctx, const sm_value *msg, void *udata)
{
    const char *s;
    size_t len;
    char *buf, *save = NULL, *cmd;
    int failed = 0;

    if (sm_value_as_string(msg, &s, &len) != SM_OK)
        return sm_fail(ctx, "test/effects wants statemesh/string, got %s", msg->typename);
    if (!(buf = sm_ctx_alloc(ctx, len + 1))) return sm_fail(ctx, "out of memory");
    memcpy(buf, s, len);
    buf[len] = '\0';
    for (cmd = strtok_r(buf, ";", &save); cmd; cmd = strtok_r(NULL, ";", &save)) {
        char *rest = cmd, *verb = word(&rest);
        if (verb && strcmp(verb, "after") == 0) {
            char *ms = word(&rest), *type = word(&rest), *id = word(&rest), *token = word(&rest);
            char *end;
            unsigned long long delay = ms ? strtoull(ms, &end, 10) : 0;
            if (!ms || *end || !type || !id || rest)
                return sm_fail(ctx, "test/effects: after MS TYPE ID [TOKEN], got '%s'", cmd);
            if (sm_send_after_int64(ctx, delay, type, id, 1, token) < 0) return -1;
        } else if (verb && strcmp(verb, "cancel") == 0) {
            char *token = word(&rest);
            if (!token || rest) return sm_fail(ctx, "test/effects: cancel TOKEN");
            if (sm_cancel_delayed(ctx, token) < 0) return -1;
        } else if (verb && strcmp(verb, "egress") == 0) {
            char *name = word(&rest);
            if (!name || !rest) return sm_fail(ctx, "test/effects: egress NAME TEXT");
            if (sm_send_egress_string(ctx, name, rest) < 0) return -1;
        } else if (verb && strcmp(verb, "fail") == 0) {
            failed = 1;
        } else {
            return sm_fail(ctx, "test/effects: unknown command '%s'", verb ? verb : "");
        }
    }
    if (failed) return sm_fail(ctx, "test/effects: fail");
    return sm_reply_string(ctx, "ok");
}

static int store(sm_ctx *ctx, const sm_value *msg, void *udata)
{
    size_t tl = strlen(msg->typename);
    char *hex = sm_ctx_alloc(ctx, 2 * msg->len + 1), *reply = sm_ctx_alloc(ctx, tl + 2 * msg->len + 2);
    if (!hex || !reply) return sm_fail(ctx, "out of memory");
    for (size_t i = 0; i < msg->len; i++) snprintf(hex + 2 * i, 3, "%02x", msg->data[i]);
    hex[2 * msg->len] = '\0';
    if (sm_state_set_string(ctx, "typename", msg->typename) < 0) return -1;
    if (sm_state_set_string(ctx, "hex", hex) < 0) return -1;
    snprintf(reply, tl + 2 * msg->len + 2, "%s %s", msg->typename, hex);
    return sm_reply_string(ctx, reply);
}

static int ttl(sm_ctx *ctx, const sm_value *msg, void *udata)
{
    const char *w, *i;
    size_t wn, in;
    char *out;
    int rw, ri;

    if (sm_value_as_string(msg, &w, &wn) == SM_OK && wn == 3 && memcmp(w, "set", 3) == 0) {
        if (sm_state_set_string(ctx, "w", "x") < 0 || sm_state_set_string(ctx, "i", "x") < 0)
            return -1;
    }
    if ((rw = sm_state_get_string(ctx, "w", &w, &wn)) < 0) return -1;
    if ((ri = sm_state_get_string(ctx, "i", &i, &in)) < 0) return -1;
    if (!(out = sm_ctx_alloc(ctx, wn + in + 16))) return sm_fail(ctx, "out of memory");
    snprintf(out, wn + in + 16, "w=%.*s,i=%.*s", rw == SM_ABSENT ? 1 : (int)wn,
             rw == SM_ABSENT ? "-" : w, ri == SM_ABSENT ? 1 : (int)in, ri == SM_ABSENT ? "-" : i);
    return sm_reply_string(ctx, out);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: testfn [--listen unix:/path.sock|host:port] [--slow-ms N] [--ttl-ms N]\n"
               "              [--tls-cert F --tls-key F [--tls-ca F [--require-client-cert]]]\n"
               "Serves test/counter, test/echo, test/slow, test/forward, test/fail,\n"
               "test/order, test/effects, test/store and test/ttl; see the top of test/fn/testfn.c\n"
               "for their exact behaviour.\n");
}

int main(int argc, char **argv)
{
    static const sm_state_spec counter_specs[] = {SM_STATE("n", SM_TYPE_INT64)};
    static const sm_state_spec slow_specs[] = {SM_STATE("batches", SM_TYPE_INT64),
                                               SM_STATE("max_batch", SM_TYPE_INT64)};
    static const sm_state_spec order_specs[] = {SM_STATE("seen", SM_TYPE_STRING)};
    static const sm_state_spec store_specs[] = {SM_STATE("typename", SM_TYPE_STRING),
                                                SM_STATE("hex", SM_TYPE_STRING)};
    struct options opt = {"unix:/tmp/statemesh-testfn.sock", 200};
    long ttl_ms = 1000;
    sm_functions *fns = NULL;
    sm_server *srv = NULL;
    sm_tls_options tls = {0};
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
        } else if (strcmp(argv[i], "--ttl-ms") == 0 && i + 1 < argc) {
            char *end;
            ttl_ms = strtol(argv[++i], &end, 10);
            if (*end || ttl_ms < 1 || ttl_ms > 86400000) {
                fprintf(stderr, "testfn: --ttl-ms wants 1..86400000 milliseconds\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--tls-cert") == 0 && i + 1 < argc) {
            tls.cert_file = argv[++i];
        } else if (strcmp(argv[i], "--tls-key") == 0 && i + 1 < argc) {
            tls.key_file = argv[++i];
        } else if (strcmp(argv[i], "--tls-ca") == 0 && i + 1 < argc) {
            tls.ca_file = argv[++i];
        } else if (strcmp(argv[i], "--require-client-cert") == 0) {
            tls.require_client_cert = 1;
        } else {
            fprintf(stderr, "testfn: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    const sm_state_spec ttl_specs[] = {
        SM_STATE_EXPIRE_AFTER_WRITE("w", SM_TYPE_STRING, (uint64_t)ttl_ms),
        SM_STATE_EXPIRE_AFTER_INVOKE("i", SM_TYPE_STRING, (uint64_t)ttl_ms)};
    fns = sm_functions_create();
    if (!fns || sm_functions_bind(fns, "test/counter", counter_specs, 1, counter, NULL) ||
        sm_functions_bind(fns, "test/echo", NULL, 0, echo, NULL) ||
        sm_functions_bind(fns, "test/trace", NULL, 0, trace, NULL) ||
        sm_functions_bind(fns, "test/slow", slow_specs, 2, slow, &opt) ||
        sm_functions_bind(fns, "test/forward", NULL, 0, forward, NULL) ||
        sm_functions_bind(fns, "test/fail", NULL, 0, fail, NULL) ||
        sm_functions_bind(fns, "test/order", order_specs, 1, order, NULL) ||
        sm_functions_bind(fns, "test/effects", NULL, 0, effects, NULL) ||
        sm_functions_bind(fns, "test/store", store_specs, 2, store, NULL) ||
        sm_functions_bind(fns, "test/ttl", ttl_specs, 2, ttl, NULL)) {
        fprintf(stderr, "testfn: cannot bind the function types\n");
        goto out;
    }
    if (!(srv = sm_server_create(fns))) goto out;
    if (tls.cert_file && sm_server_set_tls(srv, &tls) != SM_OK) goto out; /* logged */
    if (sm_server_listen(srv, opt.listen) != SM_OK) goto out; /* the reason is logged */
    if (sm_server_run(srv) != SM_OK) goto out;
    rc = 0;
out:
    sm_server_destroy(&srv);
    sm_functions_destroy(&fns);
    return rc;
}
