/*
 * tls — certificates for the runtime's gRPC channels (docs/security.md,
 * "TLS and mTLS").
 *
 * Three jobs, each at the edge between PEM files and the gRPC C core:
 *
 *   tls_check()      reads the files of one `tls = { ... }` group and says
 *                    in one sentence what is wrong with them: missing or
 *                    unreadable file, not PEM, no certificate, a key that
 *                    does not belong to its certificate. config.c calls it,
 *                    so statemeshd refuses to start (and --check-config
 *                    fails) on any of these.
 *   tls_server_*     the ingress's server credentials. They are built on a
 *                    gRPC certificate-config fetcher: gRPC asks it before
 *                    every new TLS handshake, and it hands out the PEMs
 *                    last loaded. tls_server_reload() (statemeshd calls it
 *                    on SIGHUP) re-reads and re-checks the files and, only
 *                    if they are good, swaps them in: connections already
 *                    open keep their session, new handshakes get the new
 *                    certificate, nothing is dropped. Bad files on reload
 *                    change nothing (the error is returned and logged).
 *   tls_channel_credentials()
 *                    client credentials for a channel to a function server
 *                    (or etcd): the group's CA (always passed: never the
 *                    system's public roots), and the cert/key pair when the
 *                    group has one (mTLS). Read when the channel is made: at
 *                    start, and for endpoints again on SIGHUP (ep_reload_tls).
 *
 * Client certificates: require_client_cert = true makes the server demand
 * one and verify it against `ca`
 * (GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY; the weaker
 * ..._REQUEST_CLIENT_CERTIFICATE_AND_VERIFY would let clients without one
 * in). With `ca` but require_client_cert = false a client certificate is
 * optional, and verified when sent; without `ca`, none is asked for.
 *
 * Threading: the fetcher runs on gRPC's threads; a tls_server's PEMs are
 * guarded by its own mutex, everything else is the loop thread's.
 */
#ifndef SM_TLS_H
#define SM_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <grpc/grpc_security.h>

/* One `tls = { cert; key; ca; require_client_cert; }` group, paths resolved
 * against the config file's directory. on = false: no group (plaintext). */
struct cfg_tls {
    bool on;
    char *cert, *key, *ca;       /* NULL when not given */
    bool require_client_cert;    /* server side only; default false */
};

/* PEM files larger than this are refused (a chain of a few certs is ~10 KiB). */
#define TLS_MAX_PEM_BYTES (1024 * 1024)

/* Checks the files of `t`. server = 1: cert and key are required,
 * require_client_cert needs ca. server = 0: ca is required, cert and key go
 * together. Returns NULL when all is well, else the name of the offending
 * setting ("cert", "key", "ca", "require_client_cert") with the reason in
 * `why` (e.g. "/etc/x.key: does not match the certificate in /etc/x.crt"). */
const char *tls_check(const struct cfg_tls *t, int server, char *why, size_t whylen);

void tls_cfg_cleanup(struct cfg_tls *t);

/* ---- server side (the ingress) ---- */

struct tls_server;

/* Loads and checks the files; the result is owned by the caller
 * (tls_server_destroy, after the gRPC server using it is destroyed). */
int tls_server_create(struct tls_server **out /* OUT */, const struct cfg_tls *t, char *err,
                      size_t errlen) __attribute__((warn_unused_result));
/* New server credentials drawing on `ts` (caller releases them). */
grpc_server_credentials *tls_server_credentials(struct tls_server *ts);
/* Re-reads the files (SIGHUP). 0: swapped in, used by the next handshakes;
 * -1: `err` says why and the previous certificate stays. */
int tls_server_reload(struct tls_server *ts, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void tls_server_destroy(struct tls_server **tsp);

/* ---- client side (function servers, etcd) ---- */

/* Credentials for a channel (caller releases), or NULL with `err` filled. */
grpc_channel_credentials *tls_channel_credentials(const struct cfg_tls *t, char *err,
                                                  size_t errlen);

#endif
