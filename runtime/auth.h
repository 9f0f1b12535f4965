/*
 * auth — bearer tokens and roles for every RPC of the ingress and admin
 * listeners (docs/security.md).
 *
 * A token file holds one token: the token itself (16..4096 printable ASCII
 * bytes, no spaces; one trailing "\n" or "\r\n" is dropped) or its hash as
 * "sha256:<64 hex digits>" (hashed at rest). Each file has a role:
 *
 *   client   Ingress: Send, Call, SendStream, Subscribe
 *   metrics  Admin/Stats only (read-only counters)
 *   admin    everything (client and metrics included)
 *
 * Certificates may stand for tokens (runtime.auth.certificates): an entry
 * { identity; role; } gives its role to a call that carries NO
 * `authorization` metadata and comes with a client certificate the server
 * verified (mTLS) whose identity — one of its subject alternative names, or
 * its common name when it has none (rpc_call_peer_identity) — equals
 * `identity` exactly. A call that sends a token is judged by the token
 * alone. A certificate matching several entries has the rights of each.
 *
 * grpc.health.v1.Health/Check needs no token (probes carry none; it tells
 * only SERVING or NOT_SERVING). Any other method needs the admin role.
 *
 * Invariants:
 *  - Only the SHA-256 of each token is held in memory; a presented token is
 *    hashed and compared with every configured hash in constant time (no
 *    early exit), so neither timing nor the answer tells which part is wrong.
 *  - No two token files hold the same token (that would make a role
 *    ambiguous); a file readable or writable by "others" is refused when it
 *    holds a token in clear, and any token file writable by others is
 *    refused (anyone could add a token).
 *  - A refused call is answered before its request is read:
 *    UNAUTHENTICATED "invalid or missing token" whatever is wrong with the
 *    token (missing, not "Bearer ...", unknown), PERMISSION_DENIED when a
 *    valid token's role does not allow the method.
 *  - A reload (SIGHUP) reads every file first and swaps the table only when
 *    all of them are valid: a bad file changes nothing.
 */
#ifndef SM_AUTH_H
#define SM_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_HASH_BYTES 32
#define AUTH_TOKEN_MIN 16
#define AUTH_TOKEN_MAX 4096

enum auth_role { AUTH_ROLE_CLIENT = 1, AUTH_ROLE_METRICS = 2, AUTH_ROLE_ADMIN = 3 };

/* What a method needs. */
enum auth_class { AUTH_OPEN = 0, AUTH_CLIENT, AUTH_METRICS, AUTH_ADMIN };

struct auth_entry {
    uint8_t hash[AUTH_HASH_BYTES];
    enum auth_role role;
};

/* The token files of runtime.auth.tokens (config.h keeps the same list). */
struct auth_source {
    char *path;                 /* resolved (the config owns it) */
    enum auth_role role;
};

/* runtime.auth.certificates (config.h keeps the list). */
struct auth_cert {
    char *identity;             /* a SAN or CN, exactly (the config owns it) */
    enum auth_role role;
};

struct auth {
    struct auth_entry *entries; /* NULL/0 when no token files */
    size_t n;
    const struct auth_cert *certs; /* borrowed from the config, NULL/0: none */
    size_t n_certs;
    bool enabled;
};

/* Bits of a set of roles (auth_cert_roles, auth_check). */
#define AUTH_ROLE_BIT(r) (1u << (unsigned)(r))

/* "client" / "metrics" / "admin" -> role. Returns 0 or -1. */
int auth_role_parse(const char *s, enum auth_role *out /* OUT */);
const char *auth_role_name(enum auth_role r);

/* Reads one token file and hashes its token (or decodes its sha256: line).
 * Returns 0, or -1 with a sentence in err ("is empty", "is readable by
 * other users (mode 0644); chmod 600 it", ...), not naming the file. */
int auth_read_token_file(const char *path, uint8_t hash[AUTH_HASH_BYTES] /* OUT */, char *err,
                         size_t errlen) __attribute__((warn_unused_result));

/* Builds a table from `n` token files (n >= 1) into *a (whatever tokens *a
 * held are released on success only; its certs stay). Returns 0, or -1 with
 * "PATH: why" in err. */
int auth_load(struct auth *a, const struct auth_source *src, size_t n, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void auth_cleanup(struct auth *a);

/* SHA-256 of `len` bytes (OpenSSL's libcrypto, which gRPC links anyway). */
void auth_sha256(const void *data, size_t len, uint8_t out[AUTH_HASH_BYTES] /* OUT */);

/* The class of a full method name ("/statemesh.v1.Ingress/Send"). */
enum auth_class auth_method_class(const char *method);

/* The roles (AUTH_ROLE_BIT set) of the certificate entries whose identity
 * is the `len` bytes at `identity`; 0 when none. */
unsigned auth_cert_roles(const struct auth *a, const char *identity, size_t len);

/* Checks an `authorization` metadata value (NULL: none sent) for `method`;
 * cert_roles: the roles the call's verified client certificate maps to
 * (auth_cert_roles over its identities), used only when value is NULL.
 * Returns 0 (allowed), 16 (UNAUTHENTICATED) or 7 (PERMISSION_DENIED), with
 * *msg set to the static sentence to answer with. Auth off: always 0. */
int auth_check(const struct auth *a, const char *method, const char *value, size_t len,
               unsigned cert_roles, const char **msg /* OUT */);

/* 1 if a listen address is reachable from this host only (127.0.0.0/8,
 * [::1], localhost, unix sockets). */
int auth_address_is_local(const char *addr);

#endif
