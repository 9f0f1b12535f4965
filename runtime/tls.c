/*
 * tls — PEM files checked with OpenSSL's libcrypto (the library gRPC itself
 * links), handed to gRPC as strings. See tls.h for the contract.
 *
 * Reload: gRPC calls fetch() before each new handshake on a listener. Each
 * tls_server_credentials() gets its own `struct tls_view` remembering the
 * generation it last handed out, so fetch() answers NEW exactly once per
 * generation and per listener (the first call, at bind time, must be NEW:
 * gRPC refuses a listener whose fetcher has nothing). Views live as long as
 * the tls_server, which outlives the gRPC server.
 */
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define TLS_MAX_VIEWS 4

struct pems {
    char *cert, *key, *ca;      /* NUL-terminated PEM text; ca may be NULL */
};

struct tls_view {
    struct tls_server *ts;
    unsigned long given;        /* generation last handed to gRPC, 0 = none */
};

struct tls_server {
    struct cfg_tls cfg;         /* own copy of the paths */
    pthread_mutex_t mu;         /* guards cur and gen (fetch runs on gRPC threads) */
    struct pems cur;
    unsigned long gen;          /* >= 1 */
    struct tls_view views[TLS_MAX_VIEWS];
    int n_views;
};

static void say(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    if (!why || !whylen) return;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

static void free_secret(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

static void pems_cleanup(struct pems *p)
{
    free(p->cert);
    free_secret(p->key);
    free(p->ca);
    memset(p, 0, sizeof *p);
}

/* The whole file as a NUL-terminated string (caller frees), or NULL. */
static char *read_pem(const char *path, char *why, size_t whylen)
{
    struct stat st;
    char *buf = NULL;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        say(why, whylen, "%s: cannot read: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        say(why, whylen, "%s: not a regular file", path);
        goto fail;
    }
    if (st.st_size > TLS_MAX_PEM_BYTES) {
        say(why, whylen, "%s: %lld bytes, over the limit of %d for a PEM file", path,
            (long long)st.st_size, TLS_MAX_PEM_BYTES);
        goto fail;
    }
    if (!(buf = malloc((size_t)st.st_size + 1))) {
        say(why, whylen, "%s: out of memory", path);
        goto fail;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            say(why, whylen, "%s: cannot read: %s", path, n < 0 ? strerror(errno) : "file shrank");
            goto fail;
        }
        got += (size_t)n;
    }
    buf[got] = '\0';
    if (got == 0 || strlen(buf) != got) {
        say(why, whylen, "%s: %s", path, got ? "holds NUL bytes: not a PEM file" : "is empty");
        goto fail;
    }
    close(fd);
    return buf;
fail:
    free_secret(buf);
    close(fd);
    return NULL;
}

/* The first certificate of a PEM text, or NULL. */
static X509 *first_cert(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    ERR_clear_error();
    return x;
}

static EVP_PKEY *private_key(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    ERR_clear_error();
    return k;
}

/* Reads and checks the files of t into *p. Returns NULL or the setting at
 * fault (see tls_check). */
static const char *load(const struct cfg_tls *t, int server, struct pems *p, char *why,
                        size_t whylen)
{
    X509 *cert = NULL, *ca = NULL;
    EVP_PKEY *key = NULL;
    const char *bad = NULL;

    memset(p, 0, sizeof *p);
    if (server && !t->cert) {
        say(why, whylen, "missing; a TLS listener needs its certificate, e.g. cert = \"server.crt\"");
        return "cert";
    }
    if (server && !t->key) {
        say(why, whylen, "missing; a TLS listener needs its private key, e.g. key = \"server.key\"");
        return "key";
    }
    if (!server && !t->ca) {
        say(why, whylen, "missing; give the CA that signed the server's certificate, e.g. "
            "ca = \"ca.crt\" (the system's public roots are never used)");
        return "ca";
    }
    if (!server && (!t->cert) != (!t->key)) {
        say(why, whylen, "cert and key go together (a client certificate for mTLS needs both)");
        return t->cert ? "key" : "cert";
    }
    if (server && t->require_client_cert && !t->ca) {
        say(why, whylen, "needs ca = \"...\": the CA that client certificates are verified against");
        return "require_client_cert";
    }
    if (t->ca) {
        if (!(p->ca = read_pem(t->ca, why, whylen))) return "ca";
        if (!(ca = first_cert(p->ca))) {
            say(why, whylen, "%s: no PEM certificate in it (\"-----BEGIN CERTIFICATE-----\")", t->ca);
            bad = "ca";
            goto out;
        }
    }
    if (t->cert) {
        if (!(p->cert = read_pem(t->cert, why, whylen))) {
            bad = "cert";
            goto out;
        }
        if (!(cert = first_cert(p->cert))) {
            say(why, whylen, "%s: no PEM certificate in it (\"-----BEGIN CERTIFICATE-----\")",
                t->cert);
            bad = "cert";
            goto out;
        }
        if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0) {
            say(why, whylen, "%s: the certificate has expired", t->cert);
            bad = "cert";
            goto out;
        }
        if (!(p->key = read_pem(t->key, why, whylen))) {
            bad = "key";
            goto out;
        }
        if (!(key = private_key(p->key))) {
            say(why, whylen, "%s: no PEM private key in it (or it is encrypted: statemesh reads "
                "unencrypted keys only)", t->key);
            bad = "key";
            goto out;
        }
        if (X509_check_private_key(cert, key) != 1) {
            ERR_clear_error();
            say(why, whylen, "%s: does not match the certificate in %s", t->key, t->cert);
            bad = "key";
            goto out;
        }
    }
out:
    X509_free(cert);
    X509_free(ca);
    EVP_PKEY_free(key);
    if (bad) pems_cleanup(p);
    return bad;
}

const char *tls_check(const struct cfg_tls *t, int server, char *why, size_t whylen)
{
    struct pems p;
    const char *bad = load(t, server, &p, why, whylen);
    pems_cleanup(&p);
    return bad;
}

static char *dup_or_null(const char *s, int *fail)
{
    char *d;
    if (!s) return NULL;
    if (!(d = strdup(s))) *fail = 1;
    return d;
}

void tls_cfg_cleanup(struct cfg_tls *t)
{
    free(t->cert);
    free(t->key);
    free(t->ca);
    memset(t, 0, sizeof *t);
}

/* ---- server ---- */

int tls_server_create(struct tls_server **out, const struct cfg_tls *t, char *err, size_t errlen)
{
    struct tls_server *ts = calloc(1, sizeof *ts);
    const char *bad;
    char why[1024];
    int fail = 0;

    *out = NULL;
    if (!ts) {
        say(err, errlen, "out of memory");
        return -1;
    }
    ts->cfg.on = true;
    ts->cfg.cert = dup_or_null(t->cert, &fail);
    ts->cfg.key = dup_or_null(t->key, &fail);
    ts->cfg.ca = dup_or_null(t->ca, &fail);
    ts->cfg.require_client_cert = t->require_client_cert;
    pthread_mutex_init(&ts->mu, NULL);
    if (fail) {
        say(err, errlen, "out of memory");
        goto fail;
    }
    if ((bad = load(&ts->cfg, 1, &ts->cur, why, sizeof why)) != NULL) {
        say(err, errlen, "tls.%s: %s", bad, why);
        goto fail;
    }
    ts->gen = 1;
    *out = ts;
    return 0;
fail:
    tls_server_destroy(&ts);
    return -1;
}

static grpc_ssl_certificate_config_reload_status fetch(void *user,
                                                       grpc_ssl_server_certificate_config **config)
{
    struct tls_view *v = user;
    struct tls_server *ts = v->ts;
    grpc_ssl_certificate_config_reload_status st = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;

    pthread_mutex_lock(&ts->mu);
    if (v->given != ts->gen) {
        grpc_ssl_pem_key_cert_pair pair = {ts->cur.key, ts->cur.cert};
        /* gRPC copies the strings. Its reload path asserts that there are
         * roots (gRPC 1.51, ssl_security_connector.cc); without a ca no
         * client certificate is requested, so the server's own certificate
         * stands in and is never used. */
        *config = grpc_ssl_server_certificate_config_create(ts->cur.ca ? ts->cur.ca : ts->cur.cert,
                                                            &pair, 1);
        if (*config) {
            v->given = ts->gen;
            st = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
        } else {
            st = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
        }
    }
    pthread_mutex_unlock(&ts->mu);
    return st;
}

grpc_server_credentials *tls_server_credentials(struct tls_server *ts)
{
    grpc_ssl_client_certificate_request_type req;
    grpc_ssl_server_credentials_options *o;
    struct tls_view *v;

    if (ts->n_views == TLS_MAX_VIEWS) return NULL;
    v = &ts->views[ts->n_views++];
    v->ts = ts;
    v->given = 0;
    req = ts->cfg.require_client_cert ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
          : ts->cfg.ca                ? GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY
                                      : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
    o = grpc_ssl_server_credentials_create_options_using_config_fetcher(req, fetch, v);
    return o ? grpc_ssl_server_credentials_create_with_options(o) : NULL;  /* takes o */
}

int tls_server_reload(struct tls_server *ts, char *err, size_t errlen)
{
    struct pems fresh, old;
    const char *bad;
    char why[1024];

    if ((bad = load(&ts->cfg, 1, &fresh, why, sizeof why)) != NULL) {
        say(err, errlen, "tls.%s: %s", bad, why);
        return -1;
    }
    pthread_mutex_lock(&ts->mu);
    old = ts->cur;
    ts->cur = fresh;
    ts->gen++;
    pthread_mutex_unlock(&ts->mu);
    pems_cleanup(&old);
    return 0;
}

void tls_server_destroy(struct tls_server **tsp)
{
    struct tls_server *ts = *tsp;
    if (!ts) return;
    pems_cleanup(&ts->cur);
    tls_cfg_cleanup(&ts->cfg);
    pthread_mutex_destroy(&ts->mu);
    free(ts);
    *tsp = NULL;
}

/* ---- client ---- */

grpc_channel_credentials *tls_channel_credentials(const struct cfg_tls *t, char *err, size_t errlen)
{
    struct pems p;
    const char *bad;
    char why[1024];
    grpc_ssl_pem_key_cert_pair pair;
    grpc_channel_credentials *creds;

    if ((bad = load(t, 0, &p, why, sizeof why)) != NULL) {
        say(err, errlen, "tls.%s: %s", bad, why);
        return NULL;
    }
    pair.private_key = p.key;
    pair.cert_chain = p.cert;
    creds = grpc_ssl_credentials_create(p.ca, p.cert ? &pair : NULL, NULL, NULL);
    pems_cleanup(&p);
    if (!creds) say(err, errlen, "gRPC refused the TLS credentials");
    return creds;
}
