/*
 * tls_internal — the PEM files of an sm_tls_options, read (tls.c), and the
 * gRPC credentials made from them; internal to libstatemesh.
 */
#ifndef STATEMESH_TLS_INTERNAL_H
#define STATEMESH_TLS_INTERNAL_H

#include <stddef.h>

#include <grpc/grpc_security.h>

#include "statemesh/tls.h"

struct sm__tls_pems {
    char *ca, *cert, *key;     /* NUL-terminated PEM text or NULL; owned */
    int require_client_cert;
};

/* Reads o's files (server: cert and key required; client: ca required).
 * 0, or -1 with `why` naming the file and the problem; *p owns the texts. */
int sm__tls_read(const sm_tls_options *o, int server, struct sm__tls_pems *p, char *why,
                 size_t len);
void sm__tls_pems_cleanup(struct sm__tls_pems *p);
/* New credentials (caller releases); gRPC copies the strings. */
grpc_channel_credentials *sm__tls_channel_credentials(const struct sm__tls_pems *p);
grpc_server_credentials *sm__tls_server_credentials(const struct sm__tls_pems *p);

#endif
