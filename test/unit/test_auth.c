/* Unit tests for runtime/auth.c: SHA-256, token files, method classes and
 * the token check (docs/security.md). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "rpc.h"

static void hex(const uint8_t *h, char *out)
{
    for (int i = 0; i < AUTH_HASH_BYTES; i++) sprintf(out + 2 * i, "%02x", h[i]);
}

static void sha256_vectors(void **state)
{
    uint8_t h[AUTH_HASH_BYTES];
    char s[2 * AUTH_HASH_BYTES + 1];

    (void)state;
    auth_sha256("", 0, h);
    hex(h, s);
    assert_string_equal(s, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    auth_sha256("abc", 3, h);
    hex(h, s);
    assert_string_equal(s, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

/* Writes `text` to a temporary file with `mode`; returns its path (static). */
static const char *tmpfile_with(const char *text, mode_t mode)
{
    static char path[64];
    int fd;
    snprintf(path, sizeof path, "/tmp/sm-auth-unit-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
    return path;
}

static void token_files(void **state)
{
    uint8_t h[AUTH_HASH_BYTES], want[AUTH_HASH_BYTES];
    char err[512];
    const char *p;

    (void)state;
    p = tmpfile_with("0123456789abcdef\n", 0600);
    assert_int_equal(auth_read_token_file(p, h, err, sizeof err), 0);
    auth_sha256("0123456789abcdef", 16, want);
    assert_memory_equal(h, want, AUTH_HASH_BYTES);
    unlink(p);

    p = tmpfile_with("0123456789abcdef\r\n", 0400);     /* CRLF stripped too */
    assert_int_equal(auth_read_token_file(p, h, err, sizeof err), 0);
    assert_memory_equal(h, want, AUTH_HASH_BYTES);
    unlink(p);

    p = tmpfile_with("sha256:9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08",
                     0644);                             /* hashed: may be world-readable */
    assert_int_equal(auth_read_token_file(p, h, err, sizeof err), 0);
    auth_sha256("test", 4, want);
    assert_memory_equal(h, want, AUTH_HASH_BYTES);
    unlink(p);

    p = tmpfile_with("", 0600);
    assert_int_equal(auth_read_token_file(p, h, err, sizeof err), -1);
    assert_non_null(strstr(err, "is empty"));
    unlink(p);
    p = tmpfile_with("\n", 0600);
    assert_int_equal(auth_read_token_file(p, h, err, sizeof err), -1);
    unlink(p);
    p = tmpfile_with("short\n", 0600);
    assert_int_equal(auth_read_token_file(p, h, err, sizeof err), -1);
    assert_non_null(strstr(err, "at least 16"));
    unlink(p);
    p = tmpfile_with("0123456789abcdef\n", 0644);
    assert_int_equal(auth_read_token_file(p, h, err, sizeof err), -1);
    assert_non_null(strstr(err, "mode 0644"));
    unlink(p);
    p = tmpfile_with("0123456789abcdef\n\n", 0600);
    assert_int_equal(auth_read_token_file(p, h, err, sizeof err), -1);
    unlink(p);
    p = tmpfile_with("0123456789 abcdef", 0600);
    assert_int_equal(auth_read_token_file(p, h, err, sizeof err), -1);
    unlink(p);
    p = tmpfile_with("sha256:abcd", 0600);
    assert_int_equal(auth_read_token_file(p, h, err, sizeof err), -1);
    unlink(p);
    p = tmpfile_with("sha256:" "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a0g",
                     0600);
    assert_int_equal(auth_read_token_file(p, h, err, sizeof err), -1);
    unlink(p);
    assert_int_equal(auth_read_token_file("/nonexistent/x.token", h, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot read"));
    assert_int_equal(auth_read_token_file("/tmp", h, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a regular file"));
}

static void method_classes(void **state)
{
    (void)state;
    assert_int_equal(auth_method_class("/statemesh.v1.Ingress/Send"), AUTH_CLIENT);
    assert_int_equal(auth_method_class("/statemesh.v1.Ingress/Subscribe"), AUTH_CLIENT);
    assert_int_equal(auth_method_class("/statemesh.v1.Admin/Stats"), AUTH_METRICS);
    assert_int_equal(auth_method_class("/statemesh.v1.Admin/SetState"), AUTH_ADMIN);
    assert_int_equal(auth_method_class("/grpc.health.v1.Health/Check"), AUTH_OPEN);
    assert_int_equal(auth_method_class("/grpc.health.v1.Health/Watch"), AUTH_ADMIN);
    assert_int_equal(auth_method_class("/x.Unknown/Method"), AUTH_ADMIN);
    assert_int_equal(auth_method_class(""), AUTH_ADMIN);
}

static int check(const struct auth *a, const char *method, const char *value)
{
    const char *msg;
    return auth_check(a, method, value, value ? strlen(value) : 0, 0, &msg);
}

static void checks(void **state)
{
    struct auth a = {0};
    struct auth_entry e[3];

    (void)state;
    /* off: everything passes */
    assert_int_equal(check(&a, "/statemesh.v1.Admin/SetState", NULL), 0);
    auth_sha256("admin-token-0123456", 19, e[0].hash);
    e[0].role = AUTH_ROLE_ADMIN;
    auth_sha256("client-token-012345", 19, e[1].hash);
    e[1].role = AUTH_ROLE_CLIENT;
    auth_sha256("metrics-token-01234", 19, e[2].hash);
    e[2].role = AUTH_ROLE_METRICS;
    a.entries = e;
    a.n = 3;
    a.enabled = true;

    assert_int_equal(check(&a, "/grpc.health.v1.Health/Check", NULL), 0);
    assert_int_equal(check(&a, "/statemesh.v1.Ingress/Send", NULL), RPC_UNAUTHENTICATED);
    assert_int_equal(check(&a, "/statemesh.v1.Ingress/Send", "Bearer nope-nope-nope"),
                     RPC_UNAUTHENTICATED);
    assert_int_equal(check(&a, "/statemesh.v1.Ingress/Send", "client-token-012345"),
                     RPC_UNAUTHENTICATED);
    assert_int_equal(check(&a, "/statemesh.v1.Ingress/Send", "Bearer client-token-012345"), 0);
    assert_int_equal(check(&a, "/statemesh.v1.Ingress/Send", "bearer   client-token-012345"), 0);
    assert_int_equal(check(&a, "/statemesh.v1.Ingress/Send", "Bearer admin-token-0123456"), 0);
    assert_int_equal(check(&a, "/statemesh.v1.Ingress/Send", "Bearer metrics-token-01234"),
                     RPC_PERMISSION_DENIED);
    assert_int_equal(check(&a, "/statemesh.v1.Admin/Stats", "Bearer metrics-token-01234"), 0);
    assert_int_equal(check(&a, "/statemesh.v1.Admin/Stats", "Bearer client-token-012345"),
                     RPC_PERMISSION_DENIED);
    assert_int_equal(check(&a, "/statemesh.v1.Admin/Stats", "Bearer admin-token-0123456"), 0);
    assert_int_equal(check(&a, "/statemesh.v1.Admin/Skip", "Bearer client-token-012345"),
                     RPC_PERMISSION_DENIED);
    assert_int_equal(check(&a, "/statemesh.v1.Admin/Skip", "Bearer metrics-token-01234"),
                     RPC_PERMISSION_DENIED);
    assert_int_equal(check(&a, "/statemesh.v1.Admin/Skip", "Bearer admin-token-0123456"), 0);
    assert_int_equal(check(&a, "/statemesh.v1.Admin/Skip", "Bearer "), RPC_UNAUTHENTICATED);
    assert_int_equal(check(&a, "/statemesh.v1.Admin/Skip", "Bearer"), RPC_UNAUTHENTICATED);
    /* a value that is a prefix or an extension of a token */
    assert_int_equal(check(&a, "/statemesh.v1.Admin/Skip", "Bearer admin-token-012345"),
                     RPC_UNAUTHENTICATED);
    assert_int_equal(check(&a, "/statemesh.v1.Admin/Skip", "Bearer admin-token-01234567"),
                     RPC_UNAUTHENTICATED);
}

static int check_cert(const struct auth *a, const char *method, const char *value,
                      const char *identity)
{
    const char *msg;
    unsigned roles = auth_cert_roles(a, identity, identity ? strlen(identity) : 0);
    return auth_check(a, method, value, value ? strlen(value) : 0, roles, &msg);
}

static void certificates(void **state)
{
    struct auth a = {0};
    struct auth_entry e[1];
    struct auth_cert c[3] = {{(char *)"spiffe://sm/ops", AUTH_ROLE_ADMIN},
                             {(char *)"app.example", AUTH_ROLE_CLIENT},
                             {(char *)"prom.example", AUTH_ROLE_METRICS}};

    (void)state;
    auth_sha256("client-token-012345", 19, e[0].hash);
    e[0].role = AUTH_ROLE_CLIENT;
    a.entries = e;
    a.n = 1;
    a.certs = c;
    a.n_certs = 3;
    a.enabled = true;

    assert_int_equal(auth_cert_roles(&a, "app.example", 11), AUTH_ROLE_BIT(AUTH_ROLE_CLIENT));
    assert_int_equal(auth_cert_roles(&a, "app.example", 10), 0);    /* a prefix is not it */
    assert_int_equal(auth_cert_roles(&a, "APP.EXAMPLE", 11), 0);    /* exact bytes */
    assert_int_equal(auth_cert_roles(&a, NULL, 0), 0);
    /* no token: the certificate's role */
    assert_int_equal(check_cert(&a, "/statemesh.v1.Ingress/Send", NULL, "app.example"), 0);
    assert_int_equal(check_cert(&a, "/statemesh.v1.Admin/Skip", NULL, "app.example"),
                     RPC_PERMISSION_DENIED);
    assert_int_equal(check_cert(&a, "/statemesh.v1.Admin/Skip", NULL, "spiffe://sm/ops"), 0);
    assert_int_equal(check_cert(&a, "/statemesh.v1.Admin/Skip", NULL, "other.example"),
                     RPC_UNAUTHENTICATED);
    assert_int_equal(check_cert(&a, "/statemesh.v1.Ingress/Send", NULL, NULL), RPC_UNAUTHENTICATED);
    /* a token is judged alone: a wrong one fails even with the ops certificate */
    assert_int_equal(check_cert(&a, "/statemesh.v1.Admin/Skip", "Bearer nope-nope-nope",
                                "spiffe://sm/ops"), RPC_UNAUTHENTICATED);
    assert_int_equal(check_cert(&a, "/statemesh.v1.Admin/Skip", "Bearer client-token-012345",
                                "spiffe://sm/ops"), RPC_PERMISSION_DENIED);
    /* two matching entries: the rights of each, not more (client + metrics is not admin) */
    {
        const char *msg;
        unsigned both = AUTH_ROLE_BIT(AUTH_ROLE_CLIENT) | AUTH_ROLE_BIT(AUTH_ROLE_METRICS);
        assert_int_equal(auth_check(&a, "/statemesh.v1.Ingress/Send", NULL, 0, both, &msg), 0);
        assert_int_equal(auth_check(&a, "/statemesh.v1.Admin/Stats", NULL, 0, both, &msg), 0);
        assert_int_equal(auth_check(&a, "/statemesh.v1.Admin/Skip", NULL, 0, both, &msg),
                         RPC_PERMISSION_DENIED);
    }
}

static void load_refuses_duplicates(void **state)
{
    struct auth a = {0};
    struct auth_source src[2];
    char p1[64], p2[64], err[1024];

    (void)state;
    snprintf(p1, sizeof p1, "%s", tmpfile_with("same-token-0123456789", 0600));
    snprintf(p2, sizeof p2, "%s", tmpfile_with("same-token-0123456789\n", 0600));
    src[0] = (struct auth_source){p1, AUTH_ROLE_ADMIN};
    src[1] = (struct auth_source){p2, AUTH_ROLE_CLIENT};
    assert_int_equal(auth_load(&a, src, 2, err, sizeof err), -1);
    assert_non_null(strstr(err, "same token"));
    assert_false(a.enabled);
    assert_int_equal(auth_load(&a, src, 1, err, sizeof err), 0);
    assert_true(a.enabled);
    assert_int_equal(a.n, 1);
    /* a failed reload keeps what is in force */
    unlink(p1);
    assert_int_equal(auth_load(&a, src, 1, err, sizeof err), -1);
    assert_true(a.enabled);
    assert_int_equal(a.n, 1);
    auth_cleanup(&a);
    assert_false(a.enabled);
    unlink(p2);
}

static void local_addresses(void **state)
{
    (void)state;
    assert_true(auth_address_is_local("127.0.0.1:7070"));
    assert_true(auth_address_is_local("[::1]:7070"));
    assert_true(auth_address_is_local("localhost:7070"));
    assert_true(auth_address_is_local("unix:/tmp/s.sock"));
    assert_false(auth_address_is_local("0.0.0.0:7070"));
    assert_false(auth_address_is_local("[::]:7070"));
    assert_false(auth_address_is_local("10.0.0.1:7070"));
    assert_false(auth_address_is_local("myhost:7070"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sha256_vectors),   cmocka_unit_test(token_files),
        cmocka_unit_test(method_classes),   cmocka_unit_test(checks),
        cmocka_unit_test(certificates),
        cmocka_unit_test(load_refuses_duplicates), cmocka_unit_test(local_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
