/*
 * tls — reads the PEM files of an sm_tls_options (statemesh/tls.h) for the
 * function server and the ingress client. The library links no TLS code
 * of its own: gRPC checks the PEMs when it builds its credentials; here we
 * only make sure each file is there, small, and looks like what it should
 * be, so that the common mistakes get a sentence naming the file.
 */
#include "tls_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_PEM_BYTES (1024 * 1024)

static void say(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *why, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
}

/* The file as a NUL-terminated string holding `marker`, or NULL. */
static char *read_pem(const char *what, const char *path, const char *marker, char *why,
                      size_t len)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    char *buf = NULL;
    size_t n;

    if (!f) {
        say(why, len, "%s %s: cannot read: %s", what, path, strerror(errno));
        return NULL;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_PEM_BYTES) {
        say(why, len, "%s %s: not a regular file of at most %d bytes", what, path, MAX_PEM_BYTES);
        goto fail;
    }
    if (!(buf = malloc((size_t)st.st_size + 1))) {
        say(why, len, "out of memory");
        goto fail;
    }
    n = fread(buf, 1, (size_t)st.st_size, f);
    buf[n] = '\0';
    if (strlen(buf) != n || !strstr(buf, marker)) {
        say(why, len, "%s %s: no PEM %s in it", what, path, marker);
        goto fail;
    }
    fclose(f);
    return buf;
fail:
    if (buf) memset(buf, 0, (size_t)st.st_size);
    free(buf);
    fclose(f);
    return NULL;
}

void sm__tls_pems_cleanup(struct sm__tls_pems *p)
{
    free(p->ca);
    free(p->cert);
    if (p->key) memset(p->key, 0, strlen(p->key));
    free(p->key);
    memset(p, 0, sizeof *p);
}

int sm__tls_read(const sm_tls_options *o, int server, struct sm__tls_pems *p, char *why,
                 size_t len)
{
    memset(p, 0, sizeof *p);
    p->require_client_cert = o->require_client_cert != 0;
    if (server && (!o->cert_file || !o->key_file)) {
        say(why, len, "a TLS server needs cert_file and key_file");
        return -1;
    }
    if (!server && !o->ca_file) {
        say(why, len, "TLS needs ca_file: the CA that signed the server's certificate");
        return -1;
    }
    if (!server && (!o->cert_file) != (!o->key_file)) {
        say(why, len, "cert_file and key_file go together (a client certificate needs both)");
        return -1;
    }
    if (server && o->require_client_cert && !o->ca_file) {
        say(why, len, "require_client_cert needs ca_file: the CA client certificates are "
            "verified against");
        return -1;
    }
    if (o->ca_file && !(p->ca = read_pem("ca_file", o->ca_file, "CERTIFICATE", why, len)))
        goto fail;
    if (o->cert_file &&
        (!(p->cert = read_pem("cert_file", o->cert_file, "CERTIFICATE", why, len)) ||
         !(p->key = read_pem("key_file", o->key_file, "PRIVATE KEY", why, len))))
        goto fail;
    return 0;
fail:
    sm__tls_pems_cleanup(p);
    return -1;
}

grpc_channel_credentials *sm__tls_channel_credentials(const struct sm__tls_pems *p)
{
    grpc_ssl_pem_key_cert_pair pair = {p->key, p->cert};
    return grpc_ssl_credentials_create(p->ca, p->cert ? &pair : NULL, NULL, NULL);
}

grpc_server_credentials *sm__tls_server_credentials(const struct sm__tls_pems *p)
{
    grpc_ssl_pem_key_cert_pair pair = {p->key, p->cert};
    grpc_ssl_client_certificate_request_type req =
        p->require_client_cert ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
        : p->ca                ? GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY
                               : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
    return grpc_ssl_server_credentials_create_ex(p->ca, &pair, 1, req, NULL);
}
