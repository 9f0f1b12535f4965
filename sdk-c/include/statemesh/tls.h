/*
 * statemesh/tls.h — TLS and mTLS options of the C SDK's function servers
 * (sm_server_set_tls, statemesh/function.h) and ingress clients
 * (sm_client_create_tls, statemesh/client.h). docs/security.md, "TLS and
 * mTLS", has the whole picture.
 *
 *     sm_tls_options tls = {.ca_file = "ca.crt", .cert_file = "fn.crt",
 *                           .key_file = "fn.key", .require_client_cert = 1};
 *     if (sm_server_set_tls(srv, &tls) != SM_OK) ...     // before sm_server_listen
 *
 * The files are PEM, read once, when the options are given; the strings of
 * the struct are only read during that call. A client always verifies the
 * server against ca_file (the system's public roots are never used); the
 * server's certificate must name the address dialled in its subject
 * alternative names (IP:127.0.0.1, DNS:fn.example.svc, ...).
 */
#ifndef STATEMESH_TLS_H
#define STATEMESH_TLS_H

typedef struct sm_tls_options {
    const char *ca_file;      /* client: required, the CA of the server's certificate;
                               * server: the CA client certificates are verified against */
    const char *cert_file;    /* server: required; client: optional (mTLS), with key_file */
    const char *key_file;     /* unencrypted private key of cert_file */
    int require_client_cert;  /* server only: refuse clients without a certificate
                               * signed by ca_file (mTLS; needs ca_file) */
} sm_tls_options;

#endif
