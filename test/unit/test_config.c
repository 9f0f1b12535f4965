/* Unit tests for runtime/config.c. Run from the repository root (make unit):
 * the config files live in test/unit/configs/ and the expected messages name
 * them by that relative path. Temporary files go to a mkdtemp() directory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"

#define CONFIGS "test/unit/configs/"

/* ---- helpers ---------------------------------------------------------------- */

static int count_lines(const char *s)
{
    int n = s[0] ? 1 : 0;
    for (; *s; s++)
        if (*s == '\n') n++;
    return n;
}

/* Fails unless one line of err starts with `prefix`. */
static void assert_error(const char *err, const char *prefix)
{
    size_t plen = strlen(prefix);
    const char *line = err;

    while (line && *line) {
        if (strncmp(line, prefix, plen) == 0) return;
        line = strchr(line, '\n');
        if (line) line++;
    }
    print_error("expected a line starting with\n  %s\nin:\n%s\n", prefix, err);
    fail();
}

static int load_expect_fail(const char *path, char *err, size_t errlen)
{
    struct cfg c;
    int rc = cfg_load(path, &c, err, errlen);
    assert_int_equal(rc, -1);
    /* Nothing partially applied: nothing to clean up. */
    assert_null(c.path);
    assert_null(c.data_dir);
    assert_null(c.ingress);
    assert_null(c.endpoints);
    assert_int_equal(c.n_endpoints, 0);
    assert_null(c.egresses);
    assert_int_equal(c.n_egresses, 0);
    return count_lines(err);
}

struct tmp {
    char dir[64];
    char path[128];
};

static void tmp_write(struct tmp *t, const char *text)
{
    FILE *f;

    strcpy(t->dir, "/tmp/sm_test_config.XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof t->path, "%s/statemesh.conf", t->dir);
    f = fopen(t->path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void tmp_remove(struct tmp *t)
{
    unlink(t->path);
    rmdir(t->dir);
}

/* Writes `len` bytes of `text` as `name` in t's directory. */
static void tmp_add(const struct tmp *t, const char *name, const char *text, size_t len)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", t->dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

static void tmp_unlink(const struct tmp *t, const char *name)
{
    char path[256];

    snprintf(path, sizeof path, "%s/%s", t->dir, name);
    unlink(path);
    rmdir(path);
}

/* ---- good files ------------------------------------------------------------- */

static void good_config_all_settings(void **state)
{
    struct cfg c;
    char err[4096];
    const struct cfg_endpoint *ep;

    (void)state;
    assert_int_equal(cfg_load(CONFIGS "good.conf", &c, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_string_equal(c.path, CONFIGS "good.conf");
    assert_string_equal(c.data_dir, CONFIGS "state");     /* relative to the file */
    assert_string_equal(c.ingress, "0.0.0.0:7071");
    assert_int_equal(c.log_level, LOG_LEVEL_DEBUG);
    assert_int_equal(c.max_message_bytes, 1048576);
    assert_int_equal(c.checkpoint_interval_ms, 250);
    assert_false(c.checkpoint_sync);
    assert_true(c.max_queued_bytes == (size_t)64 << 30);    /* 64-bit, L suffix */
    assert_int_equal(c.idempotency_retention_hours, 8760);
    assert_int_equal(c.n_endpoints, 7);

    ep = &c.endpoints[0];
    assert_string_equal(ep->functions, "example/*");
    assert_string_equal(ep->target, "unix:/tmp/greeter.sock");
    assert_null(ep->library);
    assert_int_equal(ep->mode, CFG_MODE_SIDECAR);
    assert_int_equal(ep->max_batch, 50);
    assert_int_equal(ep->max_in_flight, 20);
    assert_int_equal(ep->streams, 2);
    assert_int_equal(ep->invocation_timeout_ms, 100);       /* lower bounds */
    assert_int_equal(ep->keepalive_ms, 0);                  /* off */
    assert_int_equal(ep->retry.initial_backoff_ms, 5);
    assert_true(ep->retry.multiplier == 1.5);
    assert_int_equal(ep->retry.max_backoff_ms, 5);          /* == initial is fine */
    assert_int_equal(ep->retry.max_attempts, 7);
    assert_true(ep->retry.pause_on_exhausted);
    assert_int_equal(ep->line, 12);

    ep = &c.endpoints[1];
    assert_string_equal(ep->functions, "example/special");
    assert_string_equal(ep->target, "[::1]:9000");
    assert_int_equal(ep->max_batch, 1000);                  /* defaults */
    assert_int_equal(ep->max_in_flight, 1000);
    assert_int_equal(ep->streams, 1);
    assert_int_equal(ep->line, 22);

    ep = &c.endpoints[2];
    assert_string_equal(ep->target, "unix-abstract:statemesh-cart");
    assert_int_equal(ep->max_batch, 100000);                /* upper bounds */
    assert_int_equal(ep->max_in_flight, 1000000);
    assert_int_equal(ep->invocation_timeout_ms, 3600000);
    assert_int_equal(ep->keepalive_ms, 3600000);

    assert_string_equal(c.endpoints[3].functions, "big/*");
    assert_string_equal(c.endpoints[3].target, "fn.svc.local:65535");

    ep = &c.endpoints[4];
    assert_int_equal(ep->mode, CFG_MODE_REMOTE);
    assert_string_equal(ep->target, "dns:///greeter.default.svc.cluster.local:7000");
    assert_int_equal(ep->streams, 4);                       /* remote default */
    assert_int_equal(ep->keepalive_ms, 1000);
    assert_int_equal(ep->retry.initial_backoff_ms, 100);
    assert_true(ep->retry.multiplier == 10.0);              /* an integer literal */
    assert_int_equal(ep->retry.max_backoff_ms, 3600000);
    assert_int_equal(ep->retry.max_attempts, 1000000);

    ep = &c.endpoints[5];
    assert_int_equal(ep->mode, CFG_MODE_REMOTE);
    assert_string_equal(ep->target, "ipv4:10.0.0.1:7000,10.0.0.2:7001");
    assert_int_equal(ep->streams, 64);

    ep = &c.endpoints[6];
    assert_int_equal(ep->mode, CFG_MODE_EMBEDDED);
    assert_null(ep->target);
    assert_string_equal(ep->library, CONFIGS "lib/libdummy.so");   /* relative to the file */
    assert_int_equal(ep->streams, 1);
    assert_int_equal(ep->max_batch, 1);

    assert_int_equal(c.n_egresses, 3);
    assert_string_equal(c.egresses[0].name, "receipts");
    assert_true(c.egresses[0].retention_records == 1000000);
    assert_int_equal(c.egresses[0].retention_hours, 0);
    assert_int_equal(c.egresses[0].line, 53);
    assert_string_equal(c.egresses[1].name, "audit.log-v2_x");
    assert_true(c.egresses[1].retention_records == 1LL << 62);   /* no L: re-read literal */
    assert_int_equal(c.egresses[1].retention_hours, 87600);
    assert_string_equal(c.egresses[2].name, "defaults");
    assert_true(c.egresses[2].retention_records == 0);
    assert_int_equal(c.egresses[2].retention_hours, 168);

    assert_int_equal(cfg_find_egress(&c, "receipts"), 0);
    assert_int_equal(cfg_find_egress(&c, "audit.log-v2_x"), 1);
    assert_int_equal(cfg_find_egress(&c, "defaults"), 2);
    assert_int_equal(cfg_find_egress(&c, "Receipts"), -1);
    assert_int_equal(cfg_find_egress(&c, ""), -1);

    cfg_cleanup(&c);
    assert_null(c.endpoints);
    assert_null(c.egresses);
    cfg_cleanup(&c);                                        /* idempotent */
}

static void defaults(void **state)
{
    struct cfg c;
    char err[1024];

    (void)state;
    assert_int_equal(cfg_load(CONFIGS "minimal.conf", &c, err, sizeof err), 0);
    assert_string_equal(c.data_dir, CONFIGS "data");
    assert_string_equal(c.ingress, "127.0.0.1:7070");
    assert_int_equal(c.log_level, LOG_LEVEL_INFO);
    assert_int_equal(c.max_message_bytes, 4 * 1024 * 1024);
    assert_int_equal(c.checkpoint_interval_ms, 0);
    assert_true(c.checkpoint_sync);
    assert_int_equal(c.max_queued_bytes, 16 * 1024 * 1024);
    assert_int_equal(c.idempotency_retention_hours, 24);
    assert_int_equal(c.max_streams_per_connection, 1000);
    assert_int_equal(c.max_calls, 10000);
    assert_true(c.state_cache_bytes == (size_t)8 << 20);
    assert_true(c.state_filter_bytes == (size_t)8 << 20);
    assert_true(c.storage_block_cache_bytes == (size_t)8 << 20);
    assert_true(c.storage_write_buffer_bytes == (size_t)4 << 20);
    assert_true(c.storage_compression);
    assert_int_equal(c.storage_max_open_files, 1000);
    assert_int_equal(c.n_endpoints, 0);
    assert_null(c.endpoints);
    assert_int_equal(c.n_egresses, 0);
    assert_null(c.egresses);
    assert_int_equal(cfg_find_egress(&c, "x"), -1);
    cfg_cleanup(&c);
}

/* Defaults of every per-endpoint setting, for each mode. */
static void endpoint_defaults(void **state)
{
    struct tmp t;
    struct cfg c;
    char err[1024], lib[256];
    FILE *f;

    (void)state;
    tmp_write(&t, "endpoints = (\n"
                  "  { functions = \"s/*\"; target = \"unix:/tmp/s.sock\"; },\n"
                  "  { functions = \"r/*\"; target = \"fn:1\"; mode = \"remote\"; },\n"
                  "  { functions = \"e/*\"; library = \"libe.so\"; mode = \"embedded\"; }\n"
                  ");\n");
    snprintf(lib, sizeof lib, "%s/libe.so", t.dir);
    f = fopen(lib, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(cfg_load(t.path, &c, err, sizeof err), 0);
    assert_int_equal(c.n_endpoints, 3);
    for (size_t i = 0; i < 3; i++) {
        const struct cfg_endpoint *ep = &c.endpoints[i];
        assert_int_equal(ep->max_batch, 1000);
        assert_int_equal(ep->max_in_flight, 1000);
        assert_int_equal(ep->invocation_timeout_ms, 30000);
        assert_int_equal(ep->keepalive_ms, 10000);
        assert_int_equal(ep->retry.initial_backoff_ms, 100);
        assert_true(ep->retry.multiplier == 2.0);
        assert_int_equal(ep->retry.max_backoff_ms, 10000);
        assert_int_equal(ep->retry.max_attempts, 13);        /* finite: ~63 s */
        assert_false(ep->retry.pause_on_exhausted);
        assert_int_equal(ep->line, (int)i + 2);
    }
    assert_int_equal(c.endpoints[0].mode, CFG_MODE_SIDECAR);
    assert_int_equal(c.endpoints[0].streams, 1);
    assert_null(c.endpoints[0].library);
    assert_int_equal(c.endpoints[1].mode, CFG_MODE_REMOTE);
    assert_int_equal(c.endpoints[1].streams, 4);
    assert_string_equal(c.endpoints[1].target, "fn:1");
    assert_int_equal(c.endpoints[2].mode, CFG_MODE_EMBEDDED);
    assert_int_equal(c.endpoints[2].streams, 1);
    assert_null(c.endpoints[2].target);
    assert_string_equal(c.endpoints[2].library, lib);       /* config dir + name */
    cfg_cleanup(&c);
    unlink(lib);
    tmp_remove(&t);
}

static void empty_endpoints_and_paths(void **state)
{
    struct tmp t;
    struct cfg c;
    char err[1024], want[256];

    (void)state;
    tmp_write(&t, "runtime = { data_dir = \"./db/../db2\"; };\nendpoints = ();\n");
    assert_int_equal(cfg_load(t.path, &c, err, sizeof err), 0);
    assert_int_equal(c.n_endpoints, 0);
    snprintf(want, sizeof want, "%s/db/../db2", t.dir);
    assert_string_equal(c.data_dir, want);
    cfg_cleanup(&c);
    tmp_remove(&t);

    tmp_write(&t, "runtime = { data_dir = \"/var/lib/statemesh\"; ingress = \"unix:rel.sock\"; };\n"
                  "endpoints = [];\n");
    assert_int_equal(cfg_load(t.path, &c, err, sizeof err), 0);
    assert_string_equal(c.data_dir, "/var/lib/statemesh");   /* absolute: unchanged */
    assert_string_equal(c.ingress, "unix:rel.sock");
    cfg_cleanup(&c);
    tmp_remove(&t);

    tmp_write(&t, "runtime = { data_dir = \".\"; };\n");
    assert_int_equal(cfg_load(t.path, &c, err, sizeof err), 0);
    assert_string_equal(c.data_dir, t.dir);
    cfg_cleanup(&c);
    tmp_remove(&t);
}

static void include_relative_to_file(void **state)
{
    struct cfg c;
    char err[1024];

    (void)state;
    assert_int_equal(cfg_load(CONFIGS "include.conf", &c, err, sizeof err), 0);
    assert_string_equal(c.data_dir, "/var/lib/statemesh");
    assert_int_equal(c.n_endpoints, 1);
    assert_string_equal(c.endpoints[0].functions, "inc/*");
    assert_int_equal(c.endpoints[0].max_batch, 7);
    cfg_cleanup(&c);

    /* Errors inside an included file name that file, as a usable path. A
     * 33-bit literal that libconfig wraps to 1 (valid!) is still refused. */
    assert_int_equal(load_expect_fail(CONFIGS "include_bad.conf", err, sizeof err), 2);
    assert_error(err, CONFIGS "include_bad.inc:4: endpoints[0].max_batch: -7 is out of range");
    assert_error(err, CONFIGS "include_bad.inc:5: endpoints[0].max_in_flight: "
                      "4294967297 is out of range; must be 1..1000000");
}

/* ---- ${VAR} expansion --------------------------------------------------------- */

static void env_expansion(void **state)
{
    struct tmp t;
    struct cfg c;
    char err[1024];

    (void)state;
    setenv("SM_TEST_DATA", "/srv/sm", 1);
    setenv("SM_TEST_HOST", "127.0.0.2", 1);
    setenv("SM_TEST_EMPTY", "", 1);
    unsetenv("SM_TEST_PORT");
    unsetenv("SM_TEST_NS");
    tmp_write(&t,
              "runtime = {\n"
              "  data_dir = \"${SM_TEST_DATA}/db\";\n"
              "  ingress = \"${SM_TEST_HOST}:${SM_TEST_PORT:-7171}\";\n"
              "  log_level = \"${SM_TEST_EMPTY:-warn}\";\n"
              "};\n"
              "endpoints = ( {\n"
              "  functions = \"${SM_TEST_NS:-example}/*\";\n"
              "  target = \"unix:${SM_TEST_DATA}/fn$1.sock${SM_TEST_EMPTY}\";\n"
              "} );\n");
    assert_int_equal(cfg_load(t.path, &c, err, sizeof err), 0);
    assert_string_equal(c.data_dir, "/srv/sm/db");
    assert_string_equal(c.ingress, "127.0.0.2:7171");
    assert_int_equal(c.log_level, LOG_LEVEL_WARN);       /* :- also covers set-but-empty */
    assert_string_equal(c.endpoints[0].functions, "example/*");
    assert_string_equal(c.endpoints[0].target, "unix:/srv/sm/fn$1.sock"); /* lone $ literal */
    cfg_cleanup(&c);
    tmp_remove(&t);
    unsetenv("SM_TEST_DATA");
    unsetenv("SM_TEST_HOST");
    unsetenv("SM_TEST_EMPTY");
}

static void env_expansion_errors(void **state)
{
    struct tmp t;
    char err[2048], want[256];

    (void)state;
    unsetenv("SM_TEST_UNSET");
    setenv("SM_TEST_HOST", "h", 1);
    tmp_write(&t,
              "runtime = {\n"
              "  ingress = \"${SM_TEST_UNSET}:7070\";\n"
              "  data_dir = \"${SM_TEST_HOST\";\n"
              "  log_level = \"${1X}\";\n"
              "};\n");
    assert_int_equal(load_expect_fail(t.path, err, sizeof err), 3);
    snprintf(want, sizeof want,
             "%s:2: runtime.ingress: environment variable SM_TEST_UNSET is not set", t.path);
    assert_error(err, want);
    snprintf(want, sizeof want, "%s:3: runtime.data_dir: unterminated \"${\"", t.path);
    assert_error(err, want);
    snprintf(want, sizeof want, "%s:4: runtime.log_level: bad variable reference", t.path);
    assert_error(err, want);
    tmp_remove(&t);
    unsetenv("SM_TEST_HOST");
}

/* ---- cluster ---------------------------------------------------------------------- */

static void cluster_group(void **state)
{
    struct tmp t;
    struct cfg c;
    char err[1024];

    (void)state;
    setenv("SM_TEST_ORDINAL", "2", 1);
    tmp_write(&t,
              "runtime = { ingress = \"127.0.0.1:7072\"; };\n"
              "cluster = {\n"
              "  name = \"c1\";\n"
              "  node_id = \"n-${SM_TEST_ORDINAL}\";\n"
              "  etcd = [\"http://127.0.0.1:2379\", \"10.0.0.1:2379/\"];\n"
              "  initial_nodes = 3;\n"
              "};\n");
    assert_int_equal(cfg_load(t.path, &c, err, sizeof err), 0);
    assert_true(c.cluster.enabled);
    assert_string_equal(c.cluster.name, "c1");
    assert_string_equal(c.cluster.node_id, "n-2");
    assert_string_equal(c.cluster.advertise, "127.0.0.1:7072");  /* default: the ingress */
    assert_string_equal(c.cluster.etcd, "http://127.0.0.1:2379,10.0.0.1:2379/");
    assert_int_equal(c.cluster.lease_ttl_ms, 5000);
    assert_int_equal(c.cluster.initial_nodes, 3);
    cfg_cleanup(&c);
    tmp_remove(&t);
    unsetenv("SM_TEST_ORDINAL");

    /* no cluster group: alone, as before */
    tmp_write(&t, "runtime = { ingress = \"127.0.0.1:7072\"; };\n");
    assert_int_equal(cfg_load(t.path, &c, err, sizeof err), 0);
    assert_false(c.cluster.enabled);
    assert_null(c.cluster.name);
    cfg_cleanup(&c);
    tmp_remove(&t);
}

static void cluster_errors(void **state)
{
    struct tmp t;
    char err[4096], want[300];

    (void)state;
    unsetenv("SM_TEST_UNSET");
    tmp_write(&t,
              "runtime = { ingress = \"unix:/tmp/x.sock\"; };\n"
              "cluster = {\n"
              "  name = \"a b\";\n"
              "  node_id = \"n-${SM_TEST_UNSET}\";\n"
              "  etcd = [\"https://h:1\", \"h\"];\n"
              "  lease_ttl_ms = 1500;\n"
              "};\n");
    assert_int_equal(load_expect_fail(t.path, err, sizeof err), 7);
    snprintf(want, sizeof want, "%s:3: cluster.name: bad cluster name \"a b\"", t.path);
    assert_error(err, want);
    snprintf(want, sizeof want, "%s:4: cluster.node_id: environment variable SM_TEST_UNSET is "
             "not set", t.path);
    assert_error(err, want);
    snprintf(want, sizeof want, "%s:5: cluster.etcd: https:// needs cluster.etcd_tls", t.path);
    assert_error(err, want);
    snprintf(want, sizeof want, "%s:5: cluster.etcd[1]: bad etcd endpoint \"h\": must be "
             "http://host:port", t.path);
    assert_error(err, want);
    snprintf(want, sizeof want, "%s:6: cluster.lease_ttl_ms: 1500 is not whole seconds", t.path);
    assert_error(err, want);
    snprintf(want, sizeof want, "%s:2: cluster.initial_nodes: missing", t.path);
    assert_error(err, want);
    tmp_remove(&t);

    /* the ingress is a unix socket and no advertise: say where to reach the node */
    tmp_write(&t,
              "runtime = { ingress = \"unix:/tmp/x.sock\"; };\n"
              "cluster = { name = \"c\"; node_id = \"n\"; etcd = [\"h:1\"]; initial_nodes = 1; };\n");
    assert_int_equal(load_expect_fail(t.path, err, sizeof err), 1);
    snprintf(want, sizeof want, "%s:2: cluster.advertise: missing: the ingress", t.path);
    assert_error(err, want);
    tmp_remove(&t);
}

/* ---- bad files ------------------------------------------------------------------ */

static void syntax_error(void **state)
{
    char err[1024];

    (void)state;
    /* libconfig's own report: "bad_syntax.conf:4: syntax error". */
    assert_int_equal(load_expect_fail(CONFIGS "bad_syntax.conf", err, sizeof err), 3);
    assert_string_equal(err, CONFIGS "bad_syntax.conf:4: syntax error near '=': one '=' too many?\n"
                             "      log_level = = \"info\";\n"
                             "                  ^");
}

/* Loads `text` and expects exactly one syntax error: "PATH:LINE: MSG", then
 * line LINE of the text indented by four, then a caret line with '^' at
 * `col` followed by caret_len - 1 '~'. */
static void expect_syntax(const char *text, unsigned line, const char *msg, size_t col,
                          size_t caret_len)
{
    struct tmp t;
    char err[2048], want[2048], src[512], caret[512];
    const char *b = text, *e;
    size_t o = 0;

    for (unsigned i = 1; i < line; i++) b = strchr(b, '\n') + 1;
    e = strchr(b, '\n');
    if (e == NULL) e = b + strlen(b);
    snprintf(src, sizeof src, "%.*s", (int)(e - b), b);
    memset(caret, ' ', col);
    o = col;
    caret[o++] = '^';
    for (size_t i = 1; i < caret_len; i++) caret[o++] = '~';
    caret[o] = '\0';

    tmp_write(&t, text);
    assert_int_equal(load_expect_fail(t.path, err, sizeof err), 3);
    snprintf(want, sizeof want, "%s:%u: %s\n    %s\n    %s", t.path, line, msg, src, caret);
    if (strcmp(err, want) != 0) {
        print_error("config:\n%s\nexpected:\n%s\ngot:\n%s\n", text, want, err);
        fail();
    }
    tmp_remove(&t);
}

/* libconfig says "syntax error" at the line its scanner had reached; the
 * message must say where the mistake is and what it probably is. */
static void syntax_errors_located(void **state)
{
    static const char two_endpoints[] =
        "endpoints = (\n"
        "  { functions = \"a/*\"; target = \"unix:/tmp/a.sock\"; }\n"
        "  { functions = \"b/*\"; target = \"unix:/tmp/b.sock\"; }\n"
        ");\n";

    (void)state;
    /* missing ',' between list elements: libconfig says line 3 */
    expect_syntax(two_endpoints, 2, "syntax error near '{': missing ',' at the end of line 2?",
                  strlen("  { functions = \"a/*\"; target = \"unix:/tmp/a.sock\"; }"), 1);
    /* unbalanced: libconfig says the end of the file */
    expect_syntax("runtime = {\n  log_level = \"info\";\nendpoints = ();\n", 1,
                  "syntax error near '{': this '{' is never closed; missing '}' before line 3?",
                  10, 1);
    expect_syntax("runtime = {\n  log_level = \"info\";\n", 1,
                  "syntax error near '{': this '{' is never closed; missing '}' at the end of "
                  "the file?", 10, 1);
    expect_syntax("endpoints = (\n  { functions = \"a/*\"; target = \"unix:/a\"; }\n", 1,
                  "syntax error near '(': this '(' is never closed; missing ')' at the end of "
                  "the file?", 12, 1);
    expect_syntax("runtime = { log_level = \"info\"; };\n};\n", 2,
                  "syntax error near '}': nothing to close here; one '}' too many?", 0, 1);
    expect_syntax("runtime = {\n  log_level = \"info\";\n);\n", 3,
                  "syntax error near ')': it does not close the '{' on line 1; missing '}' "
                  "before it?", 0, 1);
    /* unterminated string: libconfig says line 5 */
    expect_syntax("runtime = {\n  data_dir = \"./data;\n  log_level = \"info\";\n};\n", 2,
                  "syntax error near '\"./data;': this string is not closed on its line; "
                  "missing '\"' at the end of line 2?", 13, 8);
    expect_syntax("runtime = {\n  data_dir = \"./data;\n};\n", 2,
                  "syntax error near '\"./data;': this string is not closed on its line; "
                  "missing '\"' at the end of line 2?", 13, 8);
    /* bad tokens */
    expect_syntax("runtime = {\n  max_message_bytes = 10x;\n};\n", 2,
                  "syntax error near '10x': not a number", 22, 3);
    expect_syntax("runtime = {\n  data_dir = ${HOME};\n};\n", 2,
                  "syntax error near '${HOME}': not a value; write it as a string in double "
                  "quotes, e.g. \"${VAR}\"", 13, 7);
    expect_syntax("runtime = { log_level = 'info'; };\n", 1,
                  "syntax error near ''info'': strings take double quotes", 24, 6);
    expect_syntax("runtime = { log_level = info; };\n", 1,
                  "syntax error near 'info': expected a value; strings take double quotes: "
                  "\"info\"", 24, 4);
    expect_syntax("runtime = { log_level = \"info\" 5; };\n", 1,
                  "syntax error near '5': expected ';' or the next setting's name", 31, 1);
    /* garbage at the end: libconfig says line 3, the end of the file */
    expect_syntax("runtime = { log_level = \"info\"; };\ngarbage\n", 2,
                  "syntax error near 'garbage': a setting name must be followed by '=' and a "
                  "value", 0, 7);
    expect_syntax("runtime = { log_level = \"info\"; }; 42\n", 1,
                  "syntax error near '42': expected a setting name (NAME = VALUE;)", 35, 2);
    /* libconfig 1.5 wants a newline after a line comment, even the last one */
    expect_syntax("runtime = { log_level = \"info\"; }; # done", 1,
                  "syntax error near '# done': a comment on the last line needs a newline "
                  "after it (libconfig 1.5); end the file with a newline", 35, 6);
    /* punctuation */
    expect_syntax("runtime {\n  log_level = \"info\";\n};\n", 1,
                  "syntax error near '{': missing '=' after 'runtime'?", 8, 1);
    expect_syntax("runtime = { log_level = \"info\";; };\n", 1,
                  "syntax error near ';': one ';' too many?", 31, 1);
    expect_syntax("runtime = { max_message_bytes = ; };\n", 1,
                  "syntax error near ';': missing value after 'max_message_bytes ='", 32, 1);
    expect_syntax("endpoints = ( { functions = \"a/*\"; target = \"unix:/a\"; }, );\n", 1,
                  "syntax error near ',': no ',' after the last element", 56, 1);
    expect_syntax("endpoints = ( { functions = \"a/*\"; target = \"unix:/a\"; }; );\n", 1,
                  "syntax error near ';': the elements of a list ( ) are separated by ','", 56, 1);
    expect_syntax("x = [ { } ];\n", 1,
                  "syntax error near '{': an array [ ] holds numbers, strings or booleans only; "
                  "use a list ( ) for groups, lists or arrays", 6, 1);
}

/* A long line is shown as a window around the caret. */
static void syntax_error_long_line(void **state)
{
    struct tmp t;
    char text[512], err[2048];
    const char *src, *caret, *bad;

    (void)state;
    snprintf(text, sizeof text, "runtime = { data_dir = \"%0150d\"; log_level = = \"info\"; };\n", 0);
    tmp_write(&t, text);
    assert_int_equal(load_expect_fail(t.path, err, sizeof err), 3);
    src = strchr(err, '\n') + 1;
    caret = strchr(src, '\n') + 1;
    assert_memory_equal(src, "    ...", 7);
    bad = strstr(src, "= = ");
    assert_non_null(bad);
    assert_true(bad + 2 - src < caret - src);
    assert_int_equal(strspn(caret, " "), (size_t)(bad + 2 - src));
    assert_int_equal(caret[bad + 2 - src], '^');
    tmp_remove(&t);
}

/* A syntax error in an @included file names that file. */
static void syntax_error_in_include(void **state)
{
    struct tmp t;
    char err[2048], want[1024];

    (void)state;
    tmp_write(&t, "runtime = { log_level = \"info\"; };\n@include \"eps.inc\"\n");
    tmp_add(&t, "eps.inc", "endpoints = (\n  { functions = \"a/*\" target = = \"unix:/a\"; }\n);\n",
            62);
    assert_int_equal(load_expect_fail(t.path, err, sizeof err), 3);
    snprintf(want, sizeof want, "%s/eps.inc:2: syntax error near '=': one '=' too many?", t.dir);
    assert_error(err, want);
    tmp_unlink(&t, "eps.inc");
    tmp_remove(&t);
}

/* An @include that cannot be read names the including file, its line and
 * the path tried; every such problem is listed. */
static void include_errors(void **state)
{
    struct tmp t;
    char err[2048], want[1024], sub[200];

    (void)state;
    tmp_write(&t, "runtime = { log_level = \"info\"; };\n"
                  "@include \"nope.inc\"\n"
                  "@include \"sub\"\n"
                  "@include \"a.inc\"\n");
    snprintf(sub, sizeof sub, "%s/sub", t.dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    tmp_add(&t, "a.inc", "# nested: resolved against the main file's directory too\n"
                         "@include \"b.inc\"\n", 74);
    assert_int_equal(load_expect_fail(t.path, err, sizeof err), 3);
    snprintf(want, sizeof want, "%s:2: @include \"nope.inc\": %s/nope.inc: cannot read: No such "
             "file or directory", t.path, t.dir);
    assert_error(err, want);
    snprintf(want, sizeof want, "%s:3: @include \"sub\": %s/sub: is a directory, not a file",
             t.path, t.dir);
    assert_error(err, want);
    snprintf(want, sizeof want, "%s/a.inc:2: @include \"b.inc\": %s/b.inc: cannot read: No such "
             "file or directory", t.dir, t.dir);
    assert_error(err, want);
    tmp_unlink(&t, "a.inc");
    tmp_unlink(&t, "sub");
    tmp_remove(&t);

    /* a file that includes itself; an absolute path (libconfig 1.5 would
     * put the include directory in front of it) */
    tmp_write(&t, "@include \"statemesh.conf\"\n");
    assert_int_equal(load_expect_fail(t.path, err, sizeof err), 1);
    snprintf(want, sizeof want, "%s:1: @include \"statemesh.conf\": includes nest more than 10 "
             "deep (does a file include itself?)", t.path);
    assert_string_equal(err, want);
    tmp_remove(&t);
    tmp_write(&t, "@include \"/etc/hostname\"\n");
    assert_int_equal(load_expect_fail(t.path, err, sizeof err), 1);
    snprintf(want, sizeof want, "%s:1: @include \"/etc/hostname\": absolute paths are not "
             "supported; write the path relative to %s", t.path, t.dir);
    assert_error(err, want);
    tmp_remove(&t);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* libconfig 1.5 takes > 20 s on a 10 MiB string: refused before parsing.
 * The time bound is a hang guard, not a benchmark. */
static void size_limits(void **state)
{
    struct tmp t;
    char err[1024], want[512];
    size_t big = 10u << 20, n;
    char *text = malloc(big + 64);
    double t0;

    (void)state;
    assert_non_null(text);
    n = (size_t)sprintf(text, "runtime = { data_dir = \"");
    memset(text + n, 'x', big);
    n += big;
    n += (size_t)sprintf(text + n, "\"; };\n");
    tmp_write(&t, "");
    tmp_add(&t, "statemesh.conf", text, n);
    t0 = now_s();
    assert_int_equal(load_expect_fail(t.path, err, sizeof err), 1);
    assert_true(now_s() - t0 < 2.0);
    snprintf(want, sizeof want, "%s: config file is %zu bytes, over the limit of %u", t.path, n,
             CFG_MAX_FILE_BYTES);
    assert_string_equal(err, want);

    /* exactly the limit is fine (short comment lines: fast to parse), one more byte is not */
    for (n = 0; n < CFG_MAX_FILE_BYTES; n += 64) {
        memset(text + n, '#', 63);
        text[n + 63] = '\n';
    }
    tmp_add(&t, "statemesh.conf", text, CFG_MAX_FILE_BYTES);
    {
        struct cfg c;
        assert_int_equal(cfg_load(t.path, &c, err, sizeof err), 0);
        cfg_cleanup(&c);
    }
    text[CFG_MAX_FILE_BYTES] = '\n';
    tmp_add(&t, "statemesh.conf", text, CFG_MAX_FILE_BYTES + 1);
    assert_int_equal(load_expect_fail(t.path, err, sizeof err), 1);
    snprintf(want, sizeof want, "%s: config file is %u bytes, over the limit of %u", t.path,
             CFG_MAX_FILE_BYTES + 1, CFG_MAX_FILE_BYTES);
    assert_string_equal(err, want);

    /* the limit covers the included files together, each as often as included */
    tmp_add(&t, "half.inc", text, 600u << 10);
    tmp_add(&t, "statemesh.conf", "@include \"half.inc\"\n@include \"half.inc\"\n", 40);
    assert_int_equal(load_expect_fail(t.path, err, sizeof err), 1);
    snprintf(want, sizeof want, "%s:2: @include \"half.inc\": %s/half.inc: is %u bytes; with the "
             "%u bytes read before it the configuration is over the limit of %u bytes", t.path,
             t.dir, 600u << 10, 40 + (600u << 10), CFG_MAX_FILE_BYTES);
    assert_string_equal(err, want);
    tmp_unlink(&t, "half.inc");

    /* one string literal over 64 KiB, in a small file */
    n = (size_t)sprintf(text, "runtime = { data_dir = \"");
    memset(text + n, 'x', 100000);
    n += 100000;
    n += (size_t)sprintf(text + n, "\"; };\n");
    tmp_add(&t, "statemesh.conf", text, n);
    assert_int_equal(load_expect_fail(t.path, err, sizeof err), 1);
    snprintf(want, sizeof want, "%s:1: string literal is 100002 bytes, over the limit of 65536",
             t.path);
    assert_string_equal(err, want);

    /* a NUL byte: libconfig would stop reading there */
    tmp_add(&t, "statemesh.conf", "runtime = {};\nendpoints = (\0);\n", 30);
    assert_int_equal(load_expect_fail(t.path, err, sizeof err), 1);
    snprintf(want, sizeof want, "%s:2: contains a NUL byte; a config file is text", t.path);
    assert_string_equal(err, want);
    tmp_remove(&t);
    free(text);
}

/* Decision (config.h): an empty file, or no endpoints, is a valid
 * configuration; statemeshd starts and warns. */
static void empty_config(void **state)
{
    static const char *texts[] = {"", "\n\n", "# nothing here yet\n/* still nothing */\n",
                                  "runtime = { log_level = \"warn\"; };\n"};
    struct tmp t;
    struct cfg c;
    char err[1024], want[256];

    (void)state;
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        tmp_write(&t, texts[i]);
        assert_int_equal(cfg_load(t.path, &c, err, sizeof err), 0);
        assert_string_equal(err, "");
        assert_int_equal(c.n_endpoints, 0);
        assert_null(c.endpoints);
        assert_int_equal(c.n_egresses, 0);
        assert_string_equal(c.ingress, "127.0.0.1:7070");
        snprintf(want, sizeof want, "%s/data", t.dir);
        assert_string_equal(c.data_dir, want);
        cfg_cleanup(&c);
        tmp_remove(&t);
    }
}

static void unknown_settings(void **state)
{
    char err[4096];

    (void)state;
    assert_int_equal(load_expect_fail(CONFIGS "bad_unknown.conf", err, sizeof err), 6);
    assert_error(err, CONFIGS "bad_unknown.conf:3: runtime.datadir: unknown setting; "
                      "expected one of: data_dir, ingress, log_level, max_message_bytes, "
                      "checkpoint, max_queued_bytes, idempotency_retention_hours");
    assert_error(err, CONFIGS "bad_unknown.conf:4: runtime.checkpoint.fsync: unknown setting; "
                      "expected one of: interval_ms, sync");
    assert_error(err, CONFIGS "bad_unknown.conf:6: egress: unknown setting; expected one of: "
                      "runtime, endpoints, egresses, cluster");
    assert_error(err, CONFIGS "bad_unknown.conf:10: endpoints[0].retries: unknown setting; "
                      "expected one of: functions, mode, target, library, streams, max_batch, "
                      "max_in_flight, invocation_timeout_ms, keepalive_ms, retry");
    assert_error(err, CONFIGS "bad_unknown.conf:11: endpoints[0].retry.attempts: unknown "
                      "setting; expected one of: initial_backoff_ms, multiplier, "
                      "max_backoff_ms, max_attempts");
    assert_error(err, CONFIGS "bad_unknown.conf:14: egresses[0].retention: unknown setting; "
                      "expected one of: name, retention_records, retention_hours");
}

static void wrong_types(void **state)
{
    char err[4096];

    (void)state;
    assert_int_equal(load_expect_fail(CONFIGS "bad_type.conf", err, sizeof err), 6);
    assert_error(err, CONFIGS "bad_type.conf:2: runtime.data_dir: expected a string");
    assert_error(err, CONFIGS "bad_type.conf:3: runtime.ingress: expected a string");
    assert_error(err, CONFIGS "bad_type.conf:5: runtime.max_message_bytes: expected an integer, "
                      "got a string");
    assert_error(err, CONFIGS "bad_type.conf:6: runtime.checkpoint.interval_ms: expected an integer");
    assert_error(err, CONFIGS "bad_type.conf:6: runtime.checkpoint.sync: expected true or false");
    assert_error(err, CONFIGS "bad_type.conf:11: endpoints[0].max_batch: expected an integer, "
                      "got a boolean");

    assert_int_equal(load_expect_fail(CONFIGS "bad_type2.conf", err, sizeof err), 2);
    assert_error(err, CONFIGS "bad_type2.conf:1: runtime: expected a group");
    assert_error(err, CONFIGS "bad_type2.conf:2: endpoints: expected a list");
}

static void out_of_range(void **state)
{
    char err[4096];

    (void)state;
    assert_int_equal(load_expect_fail(CONFIGS "bad_range.conf", err, sizeof err), 8);
    assert_error(err, CONFIGS "bad_range.conf:2: runtime.max_message_bytes: 1023 is out of range; "
                      "must be 1024..67108864");
    /* 4294967296 reads as 0 in libconfig 1.5, which would be valid: refused. */
    assert_error(err, CONFIGS "bad_range.conf:4: runtime.checkpoint.interval_ms: 4294967296 is "
                      "out of range; must be 0..60000");
    assert_error(err, CONFIGS "bad_range.conf:10: endpoints[0].max_batch: 0 is out of range");
    assert_error(err, CONFIGS "bad_range.conf:11: endpoints[0].max_in_flight: 1000001 is out");
    assert_error(err, CONFIGS "bad_range.conf:15: endpoints[1].max_batch: 100001 is out");
    assert_error(err, CONFIGS "bad_range.conf:16: endpoints[1].max_in_flight: 3000000000 is out");
    assert_error(err, CONFIGS "bad_range.conf:20: endpoints[2].max_batch: 9999999999 is out");
    assert_error(err, CONFIGS "bad_range.conf:21: endpoints[2].max_in_flight: -1 is out");
}

/* libconfig 1.5 wraps integer literals beyond 32 bits written without L; the
 * wrapped values here (0, 1024, 1) would all be in range. */
static void wrapped_integer_literals(void **state)
{
    struct tmp t;
    char err[2048], want[256];

    (void)state;
    tmp_write(&t,
              "runtime = { checkpoint = { interval_ms = 4294967296; sync = true; };"
              " max_message_bytes = 0x100000400; };\n"
              "endpoints = ( { functions = \"a/*\"; target = \"unix:/max_batch = 5\";"
              " max_batch = 4294967297; max_in_flight = 4294967296L; } );\n");
    assert_int_equal(load_expect_fail(t.path, err, sizeof err), 4);
    snprintf(want, sizeof want, "%s:1: runtime.checkpoint.interval_ms: 4294967296 is out", t.path);
    assert_error(err, want);
    snprintf(want, sizeof want, "%s:1: runtime.max_message_bytes: 4294968320 is out", t.path);
    assert_error(err, want);
    snprintf(want, sizeof want, "%s:2: endpoints[0].max_batch: 4294967297 is out", t.path);
    assert_error(err, want);
    snprintf(want, sizeof want, "%s:2: endpoints[0].max_in_flight: 4294967296 is out", t.path);
    assert_error(err, want);
    tmp_remove(&t);
}

static void bad_targets(void **state)
{
    char err[8192];

    (void)state;
    assert_int_equal(load_expect_fail(CONFIGS "bad_target.conf", err, sizeof err), 10);
    assert_error(err, CONFIGS "bad_target.conf:1: runtime.ingress: \"localhost\" is not a valid");
    assert_error(err, CONFIGS "bad_target.conf:3: endpoints[0].target: \"localhost:0\" is not a "
                      "valid address: port 0 is out of range 1..65535");
    assert_error(err, CONFIGS "bad_target.conf:4: endpoints[1].target: \"localhost:70000\" is not "
                      "a valid address: port 70000 is out of range 1..65535");
    assert_error(err, CONFIGS "bad_target.conf:5: endpoints[2].target: \"localhost:http\"");
    assert_error(err, CONFIGS "bad_target.conf:6: endpoints[3].target: \"unix:\"");
    assert_error(err, CONFIGS "bad_target.conf:7: endpoints[4].target: \"dns:///fn.svc:7000\"");
    assert_error(err, CONFIGS "bad_target.conf:8: endpoints[5].target: \"::1:80\"");
    assert_error(err, CONFIGS "bad_target.conf:9: endpoints[6].target: \":8080\"");
    assert_error(err, CONFIGS "bad_target.conf:10: endpoints[7].target: \"unix-abstract:\"");
    assert_error(err, CONFIGS "bad_target.conf:11: endpoints[8].target: \"\" is not a valid");
}

static void long_unix_path(void **state)
{
    struct tmp t;
    char text[512], err[1024], want[256];
    char path[120];

    (void)state;
    memset(path, 'p', sizeof path - 1);
    path[0] = '/';
    path[sizeof path - 1] = '\0';                           /* 119 bytes > 107 */
    snprintf(text, sizeof text, "runtime = { ingress = \"unix:%s\"; };\n", path);
    tmp_write(&t, text);
    assert_int_equal(load_expect_fail(t.path, err, sizeof err), 1);
    snprintf(want, sizeof want, "%s:1: runtime.ingress: ", t.path);
    assert_error(err, want);
    assert_non_null(strstr(err, "unix socket path is longer than 107 bytes"));
    tmp_remove(&t);
}

static void bad_patterns(void **state)
{
    char err[4096];

    (void)state;
    assert_int_equal(load_expect_fail(CONFIGS "bad_pattern.conf", err, sizeof err), 6);
    assert_error(err, CONFIGS "bad_pattern.conf:2: endpoints[0].functions: bad pattern \"example\"");
    assert_error(err, CONFIGS "bad_pattern.conf:3: endpoints[1].functions: bad pattern \"example/x*\"");
    assert_error(err, CONFIGS "bad_pattern.conf:4: endpoints[2].functions: bad pattern \"*\"");
    assert_error(err, CONFIGS "bad_pattern.conf:5: endpoints[3].functions: bad pattern \"ex ample/*\"");
    assert_error(err, CONFIGS "bad_pattern.conf:6: endpoints[4].functions: missing");
    assert_error(err, CONFIGS "bad_pattern.conf:7: endpoints[5].target: missing");
}

static void duplicate_pattern(void **state)
{
    char err[1024];

    (void)state;
    assert_int_equal(load_expect_fail(CONFIGS "dup_pattern.conf", err, sizeof err), 1);
    assert_string_equal(err, CONFIGS "dup_pattern.conf:8: endpoints[2].functions: pattern "
                             "\"example/*\" is already served by endpoints[0] (line 2); "
                             "each pattern may appear once");
}

static void bad_mode(void **state)
{
    char err[2048];

    (void)state;
    assert_int_equal(load_expect_fail(CONFIGS "bad_mode.conf", err, sizeof err), 3);
    assert_error(err, CONFIGS "bad_mode.conf:2: endpoints[0].mode: unknown mode \"Remote\"; "
                      "use sidecar, remote or embedded");
    assert_error(err, CONFIGS "bad_mode.conf:3: endpoints[1].mode: unknown mode \"bogus\"; "
                      "use sidecar, remote or embedded");
    assert_error(err, CONFIGS "bad_mode.conf:4: endpoints[2].mode: expected a string in double "
                      "quotes, got an integer");
}

static void remote_targets(void **state)
{
    struct cfg c;
    char err[2048];
    static const char *const want[] = {
        "dns:///fn.svc.cluster.local:7000", "dns:fn.svc:7000", "ipv4:10.0.0.1:7000",
        "ipv4:10.0.0.1:7000,10.0.0.2:7000,127.0.0.1:1", "ipv6:[fd00::1]:7000",
        "ipv6:[fd00::1]:7000,[::ffff:10.0.0.1]:65535", "fn.svc:7000", "[::1]:7000",
        "dns:///[::1]:7000",
    };

    (void)state;
    assert_int_equal(cfg_load(CONFIGS "good_remote.conf", &c, err, sizeof err), 0);
    assert_int_equal(c.n_endpoints, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < c.n_endpoints; i++) {
        assert_int_equal(c.endpoints[i].mode, CFG_MODE_REMOTE);
        assert_string_equal(c.endpoints[i].target, want[i]);
        assert_int_equal(c.endpoints[i].streams, i == 8 ? 1 : 4);
    }
    cfg_cleanup(&c);
}

static void bad_remote_targets(void **state)
{
    char err[8192];

    (void)state;
    assert_int_equal(load_expect_fail(CONFIGS "bad_remote_target.conf", err, sizeof err), 15);
#define BRT CONFIGS "bad_remote_target.conf:"
    assert_error(err, BRT "3: endpoints[0].target: \"unix:/tmp/a.sock\" is not a valid address: "
                          "a unix socket is local: use mode = \"sidecar\" for it");
    assert_error(err, BRT "4: endpoints[1].target: \"dns://8.8.8.8/fn.svc:7000\" is not a valid "
                          "address: a DNS server authority (dns://SERVER/...) is not supported; "
                          "write dns:///host:port");
    assert_error(err, BRT "5: endpoints[2].target: \"dns:///fn.svc\" is not a valid address: "
                          "expected host:port");
    assert_error(err, BRT "6: endpoints[3].target: \"dns:///fn.svc:0\" is not a valid address: "
                          "port 0 is out of range 1..65535");
    assert_error(err, BRT "7: endpoints[4].target: \"ipv4:10.0.0:7000\" is not a valid address: "
                          "expected an IPv4 address and a port: ipv4:10.0.0.1:7000");
    assert_error(err, BRT "8: endpoints[5].target: \"ipv4:10.0.0.1:7000,\" is not a valid "
                          "address: empty entry in the address list (a stray ',')");
    assert_error(err, BRT "9: endpoints[6].target: \"ipv4:256.0.0.1:7000\" is not a valid "
                          "address: expected an IPv4 address");
    assert_error(err, BRT "10: endpoints[7].target: \"ipv6:::1:7000\" is not a valid address: "
                          "expected a bracketed IPv6 address and a port: ipv6:[fd00::1]:7000");
    assert_error(err, BRT "11: endpoints[8].target: \"ipv6:[::1]:70000\" is not a valid "
                          "address: port 70000 is out of range 1..65535");
    assert_error(err, BRT "12: endpoints[9].target: \"fn.svc\" is not a valid address: expected "
                          "dns:///host:port, dns:host:port, ipv4:a.b.c.d:port[,...], "
                          "ipv6:[addr]:port[,...] or host:port");
    assert_error(err, BRT "13: endpoints[10].target: \"ipv4:\" is not a valid address: ipv4: "
                          "needs at least one address");
    assert_error(err, BRT "14: endpoints[11].target: missing; say where the function servers "
                          "are, e.g. target = \"dns:///greeter.default.svc.cluster.local:7000\"");
    assert_error(err, BRT "15: endpoints[12].target: \"dns:///fn.svc:7000\" is not a valid "
                          "address: dns:, ipv4: and ipv6: targets need mode = \"remote\"");
    assert_error(err, BRT "16: endpoints[13].target: \"ipv4:127.0.0.1:7000\" is not a valid "
                          "address: dns:, ipv4: and ipv6: targets need mode = \"remote\"");
    assert_error(err, BRT "18: runtime.ingress: \"dns:///0.0.0.0:7070\" is not a valid address: "
                          "the ingress listens on host:port or unix:/path");
#undef BRT
}

static void bad_embedded(void **state)
{
    char err[8192];

    (void)state;
    assert_int_equal(load_expect_fail(CONFIGS "bad_embedded.conf", err, sizeof err), 10);
#define BE CONFIGS "bad_embedded.conf:"
    assert_error(err, BE "3: endpoints[0].library: missing; embedded mode loads a shared "
                         "library, e.g. library = \"lib/libgreeter.so\"");
    assert_error(err, BE "5: endpoints[1].target: not used in embedded mode (the library is "
                         "loaded in-process); remove it, or set another mode");
    assert_error(err, BE "5: endpoints[1].streams: not used in embedded mode (there is no "
                         "connection); remove it");
    assert_error(err, BE "5: endpoints[1].keepalive_ms: not used in embedded mode");
    assert_error(err, BE "6: endpoints[2].library: only for mode = \"embedded\" (this endpoint "
                         "is sidecar); remove it, or set mode = \"embedded\" and drop target");
    assert_error(err, BE "7: endpoints[3].library: only for mode = \"embedded\" (this endpoint "
                         "is remote)");
    assert_error(err, BE "8: endpoints[4].library: \"" CONFIGS "lib/nosuch.so\": No such file "
                         "or directory (relative paths start at the config file's directory)");
    assert_error(err, BE "9: endpoints[5].library: \"" CONFIGS "lib\" is not a regular file");
    assert_error(err, BE "10: endpoints[6].library: must not be empty");
    assert_error(err, BE "11: endpoints[7].library: expected a string in double quotes, got an "
                         "integer");
#undef BE
}

static void bad_retry(void **state)
{
    char err[8192];

    (void)state;
    assert_int_equal(load_expect_fail(CONFIGS "bad_retry.conf", err, sizeof err), 12);
#define BR CONFIGS "bad_retry.conf:"
    assert_error(err, BR "4: endpoints[0].retry.initial_backoff_ms: 0 is out of range; must be "
                         "1..3600000");
    assert_error(err, BR "4: endpoints[0].retry.multiplier: 0.5 is out of range; must be "
                         "1.0..10.0");
    assert_error(err, BR "4: endpoints[0].retry.max_backoff_ms: 3600001 is out of range; must "
                         "be 1..3600000");
    assert_error(err, BR "4: endpoints[0].retry.max_attempts: -1 is out of range; must be "
                         "0..1000000");
    assert_error(err, BR "7: endpoints[1].retry.multiplier: expected a number such as 2.0, got "
                         "a string");
    assert_error(err, BR "7: endpoints[1].retry.max_attempts: 1000001 is out of range");
    assert_error(err, BR "11: endpoints[2].retry.max_backoff_ms: 499 is below "
                         "initial_backoff_ms (500); must be >= it");
    assert_error(err, BR "14: endpoints[3].retry.initial_backoff_ms: 20000 is above the default "
                         "max_backoff_ms (10000); raise max_backoff_ms too");
    assert_error(err, BR "16: endpoints[4].retry: expected a group { initial_backoff_ms = ...; "
                         "multiplier = ...; max_backoff_ms = ...; max_attempts = ...; }, got an "
                         "integer");
    assert_error(err, BR "17: endpoints[5].retry.multiplier: 11 is out of range; must be "
                         "1.0..10.0");
    assert_error(err, BR "18: endpoints[6].retry.multiplier: 10.5 is out of range");
    assert_error(err, BR "19: endpoints[7].retry.on_exhausted: unknown value \"never\"; use "
                         "\"dead_letter\" or \"pause\"");
#undef BR
}

static void bad_endpoint_ranges(void **state)
{
    char err[8192];

    (void)state;
    assert_int_equal(load_expect_fail(CONFIGS "bad_endpoint_range.conf", err, sizeof err), 9);
#define BER CONFIGS "bad_endpoint_range.conf:"
    assert_error(err, BER "4: endpoints[0].streams: 0 is out of range; must be 1..64");
    assert_error(err, BER "5: endpoints[0].invocation_timeout_ms: 99 is out of range; must be "
                          "100..3600000");
    assert_error(err, BER "6: endpoints[0].keepalive_ms: 999 is out of range; must be 0 (off) "
                          "or 1000..3600000");
    assert_error(err, BER "9: endpoints[1].streams: 65 is out of range; must be 1..64");
    assert_error(err, BER "10: endpoints[1].invocation_timeout_ms: 3600001 is out of range");
    assert_error(err, BER "11: endpoints[1].keepalive_ms: 3600001 is out of range; must be 0 "
                          "(off) or 1000..3600000");
    assert_error(err, BER "14: endpoints[2].streams: expected an integer, got a string");
    assert_error(err, BER "15: endpoints[2].invocation_timeout_ms: expected an integer, got a "
                          "floating-point number");
    assert_error(err, BER "16: endpoints[2].keepalive_ms: -1 is out of range; must be 0 (off) "
                          "or 1000..3600000");
#undef BER
}

static void bad_runtime_limits(void **state)
{
    char err[2048];

    (void)state;
    assert_int_equal(load_expect_fail(CONFIGS "bad_runtime_limits.conf", err, sizeof err), 4);
    assert_error(err, CONFIGS "bad_runtime_limits.conf:3: runtime.max_queued_bytes: 1048575 is "
                      "out of range; must be 1048576..68719476736");
    assert_error(err, CONFIGS "bad_runtime_limits.conf:4: runtime.idempotency_retention_hours: "
                      "0 is out of range; must be 1..8760");
    assert_error(err, CONFIGS "bad_runtime_limits.conf:5: runtime.max_streams_per_connection: "
                      "0 is out of range; must be 1..1000000");
    assert_error(err, CONFIGS "bad_runtime_limits.conf:6: runtime.max_calls: "
                      "1000001 is out of range; must be 1..1000000");
}

/* runtime.storage: every setting, a 64-bit block cache, and each kind of
 * mistake with its FILE:LINE. */
static void storage_settings(void **state)
{
    struct tmp t;
    struct cfg c;
    char err[2048];

    (void)state;
    tmp_write(&t, "runtime = {\n  storage = { block_cache_bytes = 17179869184;\n"
                  "    write_buffer_bytes = 1048576; compression = false;\n"
                  "    max_open_files = 64; };\n};\n");
    assert_int_equal(cfg_load(t.path, &c, err, sizeof err), 0);
    assert_true(c.storage_block_cache_bytes == (size_t)16 << 30);
    assert_true(c.storage_write_buffer_bytes == (size_t)1 << 20);
    assert_false(c.storage_compression);
    assert_int_equal(c.storage_max_open_files, 64);
    cfg_cleanup(&c);
    tmp_remove(&t);

    tmp_write(&t, "runtime = {\n  storage = {\n    block_cache_bytes = 1000;\n"
                  "    write_buffer_bytes = 2147483647;\n    compression = 1;\n"
                  "    max_open_files = 5;\n    bloom = 10;\n  };\n};\n");
    assert_int_equal(cfg_load(t.path, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, ":3: runtime.storage.block_cache_bytes: 1000 is out of range; "
                                "must be 1048576..68719476736"));
    assert_non_null(strstr(err, ":4: runtime.storage.write_buffer_bytes: 2147483647 is out of "
                                "range; must be 1048576..1073741824"));
    assert_non_null(strstr(err, ":5: runtime.storage.compression:"));
    assert_non_null(strstr(err, ":6: runtime.storage.max_open_files: 5 is out of range; "
                                "must be 20..100000"));
    assert_non_null(strstr(err, ":7: runtime.storage.bloom: unknown setting"));
    tmp_remove(&t);

    tmp_write(&t, "runtime = { storage = 5; };\n");
    assert_int_equal(cfg_load(t.path, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, ":1: runtime.storage: expected a group"));
    tmp_remove(&t);
}

/* max_queued_bytes is a size_t up to 64 GiB: literals past 32 bits with or
 * without the L suffix, both bounds, and the wrong types. */
static void queued_bytes_64bit(void **state)
{
    struct tmp t;
    struct cfg c;
    char err[2048], want[256];

    (void)state;
    tmp_write(&t, "runtime = { max_queued_bytes = 68719476736; idempotency_retention_hours = 1; "
                  "state_cache_bytes = 0; state_filter_bytes = 0; };\n");
    assert_int_equal(cfg_load(t.path, &c, err, sizeof err), 0);   /* libconfig reads 0 */
    assert_true(c.max_queued_bytes == (size_t)64 << 30);
    assert_int_equal(c.idempotency_retention_hours, 1);
    assert_true(c.state_cache_bytes == 0);
    assert_true(c.state_filter_bytes == 0);
    cfg_cleanup(&c);
    tmp_remove(&t);

    tmp_write(&t, "runtime = { state_filter_bytes = 4294967296; };\n");   /* 4 GiB */
    assert_int_equal(cfg_load(t.path, &c, err, sizeof err), 0);
    assert_true(c.state_filter_bytes == (size_t)4 << 30);
    cfg_cleanup(&c);
    tmp_remove(&t);

    tmp_write(&t, "runtime = {\n  state_filter_bytes = -1;\n};\n");
    assert_int_equal(cfg_load(t.path, &c, err, sizeof err), -1);
    snprintf(want, sizeof want, ":2: runtime.state_filter_bytes: -1 is out of range; ");
    assert_non_null(strstr(err, want));
    tmp_remove(&t);

    tmp_write(&t, "runtime = { max_queued_bytes = 8589934592; };\n");      /* 8 GiB */
    assert_int_equal(cfg_load(t.path, &c, err, sizeof err), 0);
    assert_true(c.max_queued_bytes == (size_t)8 << 30);
    cfg_cleanup(&c);
    tmp_remove(&t);

    tmp_write(&t, "runtime = { max_queued_bytes = 0x100000; };\n");        /* 1 MiB, hex */
    assert_int_equal(cfg_load(t.path, &c, err, sizeof err), 0);
    assert_int_equal(c.max_queued_bytes, 1048576);
    cfg_cleanup(&c);
    tmp_remove(&t);

    tmp_write(&t, "runtime = {\n  max_queued_bytes = 68719476737L;\n"
                  "  idempotency_retention_hours = 8761;\n};\n");
    assert_int_equal(load_expect_fail(t.path, err, sizeof err), 2);
    snprintf(want, sizeof want, "%s:2: runtime.max_queued_bytes: 68719476737 is out of range; "
             "must be 1048576..68719476736", t.path);
    assert_error(err, want);
    snprintf(want, sizeof want, "%s:3: runtime.idempotency_retention_hours: 8761 is out of "
             "range; must be 1..8760", t.path);
    assert_error(err, want);
    tmp_remove(&t);

    tmp_write(&t, "runtime = {\n  max_queued_bytes = 4294967296;\n"          /* wraps to 0 */
                  "  idempotency_retention_hours = 4294967320;\n};\n");     /* wraps to 24 */
    assert_int_equal(load_expect_fail(t.path, err, sizeof err), 1);
    snprintf(want, sizeof want, "%s:3: runtime.idempotency_retention_hours: 4294967320 is out of "
             "range", t.path);
    assert_error(err, want);
    tmp_remove(&t);

    tmp_write(&t, "runtime = {\n  max_queued_bytes = \"256MB\";\n"
                  "  idempotency_retention_hours = 1.5;\n};\n");
    assert_int_equal(load_expect_fail(t.path, err, sizeof err), 2);
    snprintf(want, sizeof want, "%s:2: runtime.max_queued_bytes: expected an integer, got a "
             "string", t.path);
    assert_error(err, want);
    snprintf(want, sizeof want, "%s:3: runtime.idempotency_retention_hours: expected an "
             "integer, got a floating-point number", t.path);
    assert_error(err, want);
    tmp_remove(&t);
}

static void bad_egresses(void **state)
{
    char err[8192];

    (void)state;
    assert_int_equal(load_expect_fail(CONFIGS "bad_egress.conf", err, sizeof err), 11);
#define BEG CONFIGS "bad_egress.conf:"
    assert_error(err, BEG "4: egresses[1].name: bad egress name \"has space\": use 1..128 "
                          "characters of [A-Za-z0-9_.-]");
    assert_error(err, BEG "5: egresses[2].name: bad egress name \"\"");
    assert_error(err, BEG "6: egresses[3].name: missing; name the egress, e.g. name = "
                          "\"receipts\"");
    assert_error(err, BEG "7: egresses[4].name: egress \"ok\" is already declared by "
                          "egresses[0] (line 3); names must be unique");
    assert_error(err, BEG "8: egresses[5].retention_records: -1 is out of range; must be "
                          "0..4611686018427387904");
    assert_error(err, BEG "8: egresses[5].retention_hours: 87601 is out of range; must be "
                          "0..87600");
    assert_error(err, BEG "9: egresses[6].retention_records: 4611686018427387905 is out of range");
    assert_error(err, BEG "9: egresses[6].retention_hours: expected an integer, got a string");
    assert_error(err, BEG "10: egresses[7].name: expected a string in double quotes, got an "
                          "integer");
    assert_non_null(strstr(err, "egresses[8]: expected a group { name = \"...\"; }, got a "
                                "string"));
    assert_error(err, BEG "12: egresses[9].size: unknown setting; expected one of: name, "
                          "retention_records, retention_hours");
#undef BEG

    assert_int_equal(load_expect_fail(CONFIGS "bad_egress_type.conf", err, sizeof err), 1);
    assert_string_equal(err, CONFIGS "bad_egress_type.conf:1: egresses: expected a list "
                             "( { name = \"...\"; }, ... ), got a group { ... }");
}

/* Egress names up to 128 bytes; empty lists; several elements on one line
 * whose same-named integers wrap differently. */
static void egress_edges(void **state)
{
    struct tmp t;
    struct cfg c;
    char text[1024], err[2048], want[256], name[130];

    (void)state;
    memset(name, 'n', 128);
    name[128] = '\0';
    snprintf(text, sizeof text, "egresses = ( { name = \"%s\"; } );\n", name);
    tmp_write(&t, text);
    assert_int_equal(cfg_load(t.path, &c, err, sizeof err), 0);
    assert_string_equal(c.egresses[0].name, name);
    assert_int_equal(cfg_find_egress(&c, name), 0);
    cfg_cleanup(&c);
    tmp_remove(&t);

    name[128] = 'n';
    name[129] = '\0';
    snprintf(text, sizeof text, "egresses = ( { name = \"%s\"; } );\n", name);
    tmp_write(&t, text);
    assert_int_equal(load_expect_fail(t.path, err, sizeof err), 1);
    assert_non_null(strstr(err, "egresses[0].name: bad egress name"));
    tmp_remove(&t);

    tmp_write(&t, "egresses = ();\n");
    assert_int_equal(cfg_load(t.path, &c, err, sizeof err), 0);
    assert_int_equal(c.n_egresses, 0);
    cfg_cleanup(&c);
    tmp_remove(&t);
    tmp_write(&t, "egresses = [];\n");
    assert_int_equal(cfg_load(t.path, &c, err, sizeof err), 0);
    assert_int_equal(c.n_egresses, 0);
    cfg_cleanup(&c);
    tmp_remove(&t);

    tmp_write(&t, "egresses = ( { name = \"a\"; retention_hours = 5; }, "
                  "{ name = \"b\"; retention_hours = 4294967296; }, "
                  "{ name = \"c\"; retention_hours = 6; } );\n");
    assert_int_equal(load_expect_fail(t.path, err, sizeof err), 1);
    snprintf(want, sizeof want, "%s:1: egresses[1].retention_hours: 4294967296 is out of range",
             t.path);
    assert_error(err, want);
    tmp_remove(&t);
}

static void missing_file(void **state)
{
    char err[1024];

    (void)state;
    assert_int_equal(load_expect_fail(CONFIGS "does-not-exist.conf", err, sizeof err), 1);
    assert_string_equal(err, CONFIGS "does-not-exist.conf: cannot read: No such file or directory");
    assert_int_equal(load_expect_fail("test/unit/configs", err, sizeof err), 1);
    assert_string_equal(err, "test/unit/configs: cannot read: Is a directory");
}

static void several_errors_at_once(void **state)
{
    char err[4096];

    (void)state;
    assert_int_equal(load_expect_fail(CONFIGS "bad_many.conf", err, sizeof err), 7);
    assert_error(err, CONFIGS "bad_many.conf:3: runtime.log_level: unknown level \"verbose\"; "
                      "use debug, info, warn or error");
    assert_error(err, CONFIGS "bad_many.conf:4: runtime.max_message_bytes: 0 is out of range");
    assert_error(err, CONFIGS "bad_many.conf:5: runtime.colour: unknown setting");
    assert_error(err, CONFIGS "bad_many.conf:9: endpoints[0].target: not used in embedded mode");
    assert_error(err, CONFIGS "bad_many.conf:8: endpoints[0].library: missing");
    assert_error(err, CONFIGS "bad_many.conf:12: endpoints[1].functions: pattern \"example/*\" "
                      "is already served by endpoints[0] (line 8)");
    assert_error(err, CONFIGS "bad_many.conf:13: endpoints[1].target: \"nowhere\" is not a valid");
}

static void error_buffer_truncated(void **state)
{
    struct cfg c;
    char err[32];

    (void)state;
    memset(err, 'x', sizeof err);
    assert_int_equal(cfg_load(CONFIGS "bad_many.conf", &c, err, sizeof err), -1);
    assert_int_equal(strlen(err), sizeof err - 1);
    assert_memory_equal(err, CONFIGS "bad_many.conf:3:", 31);
    assert_int_equal(cfg_load(CONFIGS "bad_many.conf", &c, NULL, 0), -1);
    assert_int_equal(cfg_load(CONFIGS "good.conf", &c, NULL, 0), 0);
    cfg_cleanup(&c);
}

/* ---- matching ------------------------------------------------------------------- */

static void match_precedence(void **state)
{
    struct cfg_endpoint eps[3] = {
        {.functions = "example/*"},
        {.functions = "example/special"},
        {.functions = "other/x"},
    };
    struct cfg_endpoint rev[2] = {
        {.functions = "example/special"},
        {.functions = "example/*"},
    };
    struct cfg c = {.endpoints = eps, .n_endpoints = 3};

    (void)state;
    assert_int_equal(cfg_match_endpoint(&c, "example/special"), 1);  /* exact beats wildcard */
    assert_int_equal(cfg_match_endpoint(&c, "example/greeter"), 0);
    assert_int_equal(cfg_match_endpoint(&c, "example/specialx"), 0);
    assert_int_equal(cfg_match_endpoint(&c, "other/x"), 2);
    assert_int_equal(cfg_match_endpoint(&c, "other/y"), -1);
    assert_int_equal(cfg_match_endpoint(&c, "examplex/y"), -1);
    assert_int_equal(cfg_match_endpoint(&c, "example2/greeter"), -1);

    c.endpoints = rev;
    c.n_endpoints = 2;
    assert_int_equal(cfg_match_endpoint(&c, "example/special"), 0);
    assert_int_equal(cfg_match_endpoint(&c, "example/greeter"), 1);

    c.n_endpoints = 0;
    assert_int_equal(cfg_match_endpoint(&c, "example/greeter"), -1);
}

/* A NUL byte in the file: libconfig 1.5 exits the process on one inside an
 * @include path (found by test/fuzz/fuzz_config.c) and cuts strings at it
 * elsewhere; cfg_load refuses the file with the line. */
static void nul_byte_refused(void **state)
{
    static const char *const texts[] = {"x = 1;\n@include \"\0a.inc\"\n",
                                        "runtime = {\n  data_dir = \"a\0b\"; };\n"};
    static const size_t lens[] = {25, 35};
    static const char *const want[] = {":2: contains a NUL byte", ":2: contains a NUL byte"};
    char err[1024];
    (void)state;
    for (int i = 0; i < 2; i++) {
        struct tmp t;
        FILE *f;
        tmp_write(&t, "");
        f = fopen(t.path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(texts[i], 1, lens[i], f), lens[i]);
        fclose(f);
        assert_int_equal(load_expect_fail(t.path, err, sizeof err), 1);
        assert_non_null(strstr(err, want[i]));
        tmp_remove(&t);
    }
}

static void match_loaded_config(void **state)
{
    struct cfg c;
    char err[1024];

    (void)state;
    assert_int_equal(cfg_load(CONFIGS "good.conf", &c, err, sizeof err), 0);
    assert_int_equal(cfg_match_endpoint(&c, "example/special"), 1);
    assert_int_equal(cfg_match_endpoint(&c, "example/greeter"), 0);
    assert_int_equal(cfg_match_endpoint(&c, "shop/cart"), 2);
    assert_int_equal(cfg_match_endpoint(&c, "shop/other"), -1);
    assert_int_equal(cfg_match_endpoint(&c, "big/thing"), 3);
    cfg_cleanup(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_config_all_settings),
        cmocka_unit_test(defaults),
        cmocka_unit_test(endpoint_defaults),
        cmocka_unit_test(empty_endpoints_and_paths),
        cmocka_unit_test(include_relative_to_file),
        cmocka_unit_test(env_expansion),
        cmocka_unit_test(nul_byte_refused),
        cmocka_unit_test(env_expansion_errors),
        cmocka_unit_test(cluster_group),
        cmocka_unit_test(cluster_errors),
        cmocka_unit_test(syntax_error),
        cmocka_unit_test(syntax_errors_located),
        cmocka_unit_test(syntax_error_long_line),
        cmocka_unit_test(syntax_error_in_include),
        cmocka_unit_test(include_errors),
        cmocka_unit_test(size_limits),
        cmocka_unit_test(empty_config),
        cmocka_unit_test(unknown_settings),
        cmocka_unit_test(wrong_types),
        cmocka_unit_test(out_of_range),
        cmocka_unit_test(wrapped_integer_literals),
        cmocka_unit_test(bad_targets),
        cmocka_unit_test(long_unix_path),
        cmocka_unit_test(bad_patterns),
        cmocka_unit_test(duplicate_pattern),
        cmocka_unit_test(bad_mode),
        cmocka_unit_test(remote_targets),
        cmocka_unit_test(bad_remote_targets),
        cmocka_unit_test(bad_embedded),
        cmocka_unit_test(bad_retry),
        cmocka_unit_test(bad_endpoint_ranges),
        cmocka_unit_test(bad_runtime_limits),
        cmocka_unit_test(queued_bytes_64bit),
        cmocka_unit_test(storage_settings),
        cmocka_unit_test(bad_egresses),
        cmocka_unit_test(egress_edges),
        cmocka_unit_test(missing_file),
        cmocka_unit_test(several_errors_at_once),
        cmocka_unit_test(error_buffer_truncated),
        cmocka_unit_test(match_precedence),
        cmocka_unit_test(match_loaded_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
