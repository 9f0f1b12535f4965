/* Unit tests for runtime/tls.c: what tls_check() says about each kind of bad
 * file, and the reload bookkeeping of the certificate-config fetcher (each
 * listener gets every generation exactly once; a failed reload changes
 * nothing). Certificates are made with the openssl command in a temp dir.
 * The handshakes themselves: test/integration/test_tls.py. Includes tls.c
 * to reach fetch() and the views. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <grpc/grpc.h>

#include "../../runtime/tls.c"

static char dir[64];

static void sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (system(cmd) != 0) fail_msg("failed: %s", cmd);
}

/* dir/name in one of 8 rotating buffers: use it at once or copy it. */
static char *path(const char *name)
{
    static char buf[8][256];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, 256, "%s/%s", dir, name);
    return p;
}

#define EC "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/sm-tlsunit-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    sh("cd %s && openssl req -x509 " EC " -keyout ca.key -out ca.crt -days 2 -subj /CN=ca "
       ">/dev/null 2>&1", dir);
    for (int i = 0; i < 3; i++) {
        static const char *const name[] = {"a", "b", "old"};
        sh("cd %s && openssl req " EC " -keyout %s.key -out %s.csr -subj /CN=%s >/dev/null 2>&1 && "
           "printf 'subjectAltName=IP:127.0.0.1\\n' > ext && openssl x509 -req -in %s.csr "
           "-CA ca.crt -CAkey ca.key -set_serial %d -days %d -extfile ext -out %s.crt "
           ">/dev/null 2>&1", dir, name[i], name[i], name[i], name[i], i + 1, i == 2 ? 0 : 2,
           name[i]);
    }
    sh("cd %s && printf 'no pem here\\n' > junk.crt && : > empty.crt && mkdir sub && "
       "truncate -s 2M big.crt", dir);
    sleep(1);   /* old.crt (-days 0) has expired now */
    grpc_init();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    grpc_shutdown_blocking();
    sh("rm -rf %s", dir);
    return 0;
}

static void expect_bad(struct cfg_tls t, int server, const char *setting, const char *words)
{
    char why[1200] = "";
    const char *bad = tls_check(&t, server, why, sizeof why);
    if (!bad || strcmp(bad, setting) != 0 || !strstr(why, words))
        fail_msg("want %s: ...%s...; got %s: %s", setting, words, bad ? bad : "(ok)", why);
}

static void test_check(void **state)
{
    char why[1200];
    struct cfg_tls good = {true, path("a.crt"), path("a.key"), path("ca.crt"), true};
    struct cfg_tls client = {true, NULL, NULL, path("ca.crt"), false};
    (void)state;

    assert_null(tls_check(&good, 1, why, sizeof why));
    assert_null(tls_check(&client, 0, why, sizeof why));
    expect_bad((struct cfg_tls){true, path("a.crt"), NULL, NULL, false}, 1, "key", "missing");
    expect_bad((struct cfg_tls){true, NULL, path("a.key"), NULL, false}, 1, "cert", "missing");
    expect_bad((struct cfg_tls){true, path("a.crt"), path("b.key"), NULL, false}, 1, "key",
               "does not match the certificate in");
    expect_bad((struct cfg_tls){true, path("nope.crt"), path("a.key"), NULL, false}, 1, "cert",
               "cannot read: No such file");
    expect_bad((struct cfg_tls){true, path("junk.crt"), path("a.key"), NULL, false}, 1, "cert",
               "no PEM certificate");
    expect_bad((struct cfg_tls){true, path("empty.crt"), path("a.key"), NULL, false}, 1, "cert",
               "is empty");
    expect_bad((struct cfg_tls){true, path("big.crt"), path("a.key"), NULL, false}, 1, "cert",
               "over the limit");
    expect_bad((struct cfg_tls){true, path("sub"), path("a.key"), NULL, false}, 1, "cert",
               "not a regular file");
    expect_bad((struct cfg_tls){true, path("a.crt"), path("a.crt"), NULL, false}, 1, "key",
               "no PEM private key");
    expect_bad((struct cfg_tls){true, path("old.crt"), path("old.key"), NULL, false}, 1, "cert",
               "has expired");
    expect_bad((struct cfg_tls){true, path("a.crt"), path("a.key"), NULL, true}, 1,
               "require_client_cert", "needs ca");
    expect_bad((struct cfg_tls){true, path("a.crt"), path("a.key"), path("junk.crt"), false}, 1,
               "ca", "no PEM certificate");
    expect_bad((struct cfg_tls){true, NULL, NULL, NULL, false}, 0, "ca", "missing");
    expect_bad((struct cfg_tls){true, path("a.crt"), NULL, path("ca.crt"), false}, 0, "key",
               "go together");
    expect_bad((struct cfg_tls){true, path("a.crt"), path("b.key"), path("ca.crt"), false}, 0,
               "key", "does not match");
}

/* One fetch: returns the status, frees the config it handed out. */
static grpc_ssl_certificate_config_reload_status fetch_once(struct tls_view *v)
{
    grpc_ssl_server_certificate_config *cfg = NULL;
    grpc_ssl_certificate_config_reload_status st = fetch(v, &cfg);
    if (st == GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW) {
        assert_non_null(cfg);
        grpc_ssl_server_certificate_config_destroy(cfg);
    } else {
        assert_null(cfg);
    }
    return st;
}

static void test_reload_generations(void **state)
{
    char crt[256], key[256];
    struct cfg_tls t = {true, crt, key, NULL, false};
    struct tls_server *ts = NULL;
    grpc_server_credentials *c1, *c2;
    char err[1200];
    (void)state;

    snprintf(crt, sizeof crt, "%s", path("live.crt"));   /* path()'s buffers rotate */
    snprintf(key, sizeof key, "%s", path("live.key"));
    sh("cp %s %s && cp %s %s", path("a.crt"), crt, path("a.key"), key);
    assert_int_equal(tls_server_create(&ts, &t, err, sizeof err), 0);
    assert_non_null(c1 = tls_server_credentials(ts));
    assert_non_null(c2 = tls_server_credentials(ts));
    /* Each listener's first fetch is NEW, then UNCHANGED until a reload. */
    assert_int_equal(fetch_once(&ts->views[0]), GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW);
    assert_int_equal(fetch_once(&ts->views[0]), GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED);
    assert_int_equal(fetch_once(&ts->views[1]), GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW);
    /* A good reload: NEW once more for each. */
    sh("cp %s %s && cp %s %s", path("b.crt"), crt, path("b.key"), key);
    assert_int_equal(tls_server_reload(ts, err, sizeof err), 0);
    assert_non_null(strstr(ts->cur.cert, "BEGIN CERTIFICATE"));
    assert_int_equal(fetch_once(&ts->views[0]), GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW);
    assert_int_equal(fetch_once(&ts->views[0]), GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED);
    /* A bad one (the key of another certificate): refused, nothing changes. */
    sh("cp %s %s", path("a.key"), key);
    assert_int_equal(tls_server_reload(ts, err, sizeof err), -1);
    assert_non_null(strstr(err, "tls.key: "));
    assert_non_null(strstr(err, "does not match"));
    assert_int_equal(ts->gen, 2);
    assert_int_equal(fetch_once(&ts->views[0]), GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED);
    assert_int_equal(fetch_once(&ts->views[1]), GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW);
    grpc_server_credentials_release(c1);
    grpc_server_credentials_release(c2);
    tls_server_destroy(&ts);
    assert_null(ts);
    /* A bad file at creation: no server, a sentence. */
    assert_int_equal(tls_server_create(&ts, &t, err, sizeof err), -1);
    assert_null(ts);
    assert_non_null(strstr(err, "does not match"));
}

static void test_channel_credentials(void **state)
{
    struct cfg_tls t = {true, path("a.crt"), path("a.key"), path("ca.crt"), false};
    grpc_channel_credentials *c;
    char err[1200] = "";
    (void)state;

    assert_non_null(c = tls_channel_credentials(&t, err, sizeof err));
    grpc_channel_credentials_release(c);
    t.ca = path("nope.crt");
    assert_null(tls_channel_credentials(&t, err, sizeof err));
    assert_non_null(strstr(err, "tls.ca: "));
    assert_non_null(strstr(err, "nope.crt: cannot read"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_reload_generations),
        cmocka_unit_test(test_channel_credentials),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
