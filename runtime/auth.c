/*
 * auth — see auth.h.
 *
 * Decisions recorded here:
 *  - Hashing is OpenSSL's SHA256() and the comparison CRYPTO_memcmp():
 *    gRPC already links libcrypto (pkg-config grpc names -lcrypto), so this
 *    adds no library, only libssl-dev's headers at build time.
 *  - The scheme "Bearer" is matched case-insensitively (RFC 6750 follows
 *    RFC 7235 there); one or more spaces separate it from the token. A
 *    value longer than AUTH_TOKEN_MAX + 64 bytes is refused unhashed (it
 *    cannot match; hashing it would let a client make us hash megabytes).
 *  - Every presented token is hashed once per call (one SHA-256 of a few
 *    dozen bytes, well under a microsecond) and compared with all entries;
 *    a SendStream or Subscribe is checked once, when it opens.
 *  - Token files are read through their symlinks (Kubernetes mounts
 *    secrets as links into ..data/); the mode checked is the target's.
 */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "rpc.h"

#define AUTH_FILE_MAX (AUTH_TOKEN_MAX + 2)
#define SHA_PREFIX "sha256:"

static const char MSG_UNAUTHENTICATED[] = "invalid or missing token";
static const char MSG_DENIED[] = "this token's role does not allow this method";

int auth_role_parse(const char *s, enum auth_role *out)
{
    if (strcmp(s, "client") == 0) *out = AUTH_ROLE_CLIENT;
    else if (strcmp(s, "metrics") == 0) *out = AUTH_ROLE_METRICS;
    else if (strcmp(s, "admin") == 0) *out = AUTH_ROLE_ADMIN;
    else return -1;
    return 0;
}

const char *auth_role_name(enum auth_role r)
{
    switch (r) {
    case AUTH_ROLE_CLIENT: return "client";
    case AUTH_ROLE_METRICS: return "metrics";
    case AUTH_ROLE_ADMIN: return "admin";
    }
    return "?";
}

void auth_sha256(const void *data, size_t len, uint8_t out[AUTH_HASH_BYTES])
{
    SHA256(data, len, out);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int auth_read_token_file(const char *path, uint8_t hash[AUTH_HASH_BYTES], char *err,
                         size_t errlen)
{
    char buf[AUTH_FILE_MAX + 1];
    struct stat st;
    size_t len = 0;
    ssize_t r;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

    if (fd < 0) {
        snprintf(err, errlen, "cannot read: %s", strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "is not a regular file");
        close(fd);
        return -1;
    }
    while (len < sizeof buf && (r = read(fd, buf + len, sizeof buf - len)) != 0) {
        if (r < 0) {
            if (errno == EINTR) continue;
            snprintf(err, errlen, "cannot read: %s", strerror(errno));
            close(fd);
            return -1;
        }
        len += (size_t)r;
    }
    close(fd);
    if (len > AUTH_FILE_MAX) {
        snprintf(err, errlen, "is over %d bytes; a token file holds one token", AUTH_FILE_MAX);
        return -1;
    }
    if (len > 0 && buf[len - 1] == '\n') len--;
    if (len > 0 && buf[len - 1] == '\r') len--;
    buf[len] = '\0';
    if (len == 0) {
        snprintf(err, errlen, "is empty; it must hold one token");
        return -1;
    }
    for (size_t i = 0; i < len; i++)
        if (buf[i] <= ' ' || buf[i] > '~') {
            snprintf(err, errlen, "holds more than one line or a character other than printable "
                     "ASCII without spaces (byte %zu); it must hold one token", i + 1);
            return -1;
        }
    if (st.st_mode & S_IWOTH) {
        snprintf(err, errlen, "is writable by other users (mode %04o); chmod o-w it",
                 (unsigned)(st.st_mode & 07777));
        return -1;
    }
    if (strncmp(buf, SHA_PREFIX, sizeof SHA_PREFIX - 1) == 0) {
        const char *h = buf + sizeof SHA_PREFIX - 1;
        if (strlen(h) != 2 * AUTH_HASH_BYTES) {
            snprintf(err, errlen, "holds \"sha256:\" followed by %zu characters; it wants %d hex "
                     "digits (sha256sum of the token)", strlen(h), 2 * AUTH_HASH_BYTES);
            return -1;
        }
        for (int i = 0; i < AUTH_HASH_BYTES; i++) {
            int hi = hexval(h[2 * i]), lo = hexval(h[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                snprintf(err, errlen, "holds \"sha256:\" followed by a non-hex character; it "
                         "wants %d hex digits", 2 * AUTH_HASH_BYTES);
                return -1;
            }
            hash[i] = (uint8_t)(hi << 4 | lo);
        }
        OPENSSL_cleanse(buf, sizeof buf);
        return 0;
    }
    if (st.st_mode & (S_IROTH | S_IWOTH | S_IXOTH)) {
        OPENSSL_cleanse(buf, sizeof buf);
        snprintf(err, errlen, "holds a token in clear and is readable by other users (mode "
                 "%04o); chmod 600 it (or store \"sha256:<hex>\" instead)",
                 (unsigned)(st.st_mode & 07777));
        return -1;
    }
    if (len < AUTH_TOKEN_MIN) {
        OPENSSL_cleanse(buf, sizeof buf);
        snprintf(err, errlen, "holds a token of %zu bytes; a token needs at least %d (e.g. "
                 "openssl rand -hex 32)", len, AUTH_TOKEN_MIN);
        return -1;
    }
    auth_sha256(buf, len, hash);
    OPENSSL_cleanse(buf, sizeof buf);
    return 0;
}

int auth_load(struct auth *a, const struct auth_source *src, size_t n, char *err, size_t errlen)
{
    struct auth_entry *e;
    char why[512];

    if (n == 0) {
        snprintf(err, errlen, "no token files");
        return -1;
    }
    if (!(e = calloc(n, sizeof *e))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (auth_read_token_file(src[i].path, e[i].hash, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s: %s", src[i].path, why);
            free(e);
            return -1;
        }
        e[i].role = src[i].role;
        for (size_t j = 0; j < i; j++)
            if (CRYPTO_memcmp(e[j].hash, e[i].hash, AUTH_HASH_BYTES) == 0) {
                snprintf(err, errlen, "%s: holds the same token as %s; every token must be "
                         "unique", src[i].path, src[j].path);
                OPENSSL_cleanse(e, n * sizeof *e);
                free(e);
                return -1;
            }
    }
    {
        const struct auth_cert *certs = a->certs;
        size_t n_certs = a->n_certs;
        auth_cleanup(a);
        a->certs = certs;
        a->n_certs = n_certs;
    }
    a->entries = e;
    a->n = n;
    a->enabled = true;
    return 0;
}

void auth_cleanup(struct auth *a)
{
    if (a->entries) OPENSSL_cleanse(a->entries, a->n * sizeof *a->entries);
    free(a->entries);
    a->entries = NULL;
    a->n = 0;
    a->certs = NULL;
    a->n_certs = 0;
    a->enabled = false;
}

enum auth_class auth_method_class(const char *method)
{
    static const char ingress[] = "/statemesh.v1.Ingress/";
    if (strncmp(method, ingress, sizeof ingress - 1) == 0) return AUTH_CLIENT;
    if (strcmp(method, "/statemesh.v1.Admin/Stats") == 0) return AUTH_METRICS;
    if (strcmp(method, "/grpc.health.v1.Health/Check") == 0) return AUTH_OPEN;
    return AUTH_ADMIN;
}

/* Does a set of roles (AUTH_ROLE_BIT) allow a class of methods? */
static int roles_allow(unsigned roles, enum auth_class c)
{
    unsigned admin = AUTH_ROLE_BIT(AUTH_ROLE_ADMIN);
    switch (c) {
    case AUTH_OPEN: return 1;
    case AUTH_CLIENT: return (roles & (AUTH_ROLE_BIT(AUTH_ROLE_CLIENT) | admin)) != 0;
    case AUTH_METRICS: return (roles & (AUTH_ROLE_BIT(AUTH_ROLE_METRICS) | admin)) != 0;
    case AUTH_ADMIN: return (roles & admin) != 0;
    }
    return 0;
}

unsigned auth_cert_roles(const struct auth *a, const char *identity, size_t len)
{
    unsigned roles = 0;
    if (!a || !identity) return 0;
    for (size_t k = 0; k < a->n_certs; k++)
        if (strlen(a->certs[k].identity) == len && memcmp(a->certs[k].identity, identity, len) == 0)
            roles |= AUTH_ROLE_BIT(a->certs[k].role);
    return roles;
}

int auth_check(const struct auth *a, const char *method, const char *value, size_t len,
               unsigned cert_roles, const char **msg)
{
    enum auth_class cls;
    uint8_t h[AUTH_HASH_BYTES];
    unsigned roles = 0;
    size_t i = 0;

    *msg = NULL;
    if (!a || !a->enabled) return 0;
    cls = auth_method_class(method);
    if (cls == AUTH_OPEN) return 0;
    *msg = MSG_UNAUTHENTICATED;
    if (!value) {                      /* no token: a mapped certificate may stand for one */
        roles = cert_roles;
    } else {
        if (len > AUTH_TOKEN_MAX + 64 || len < 7 || strncasecmp(value, "bearer ", 7) != 0)
            return RPC_UNAUTHENTICATED;
        for (i = 6; i < len && value[i] == ' '; i++)
            ;
        if (i == len) return RPC_UNAUTHENTICATED;
        auth_sha256(value + i, len - i, h);
        for (size_t k = 0; k < a->n; k++) {
            /* no early exit: every entry is compared */
            int same = CRYPTO_memcmp(a->entries[k].hash, h, AUTH_HASH_BYTES) == 0;
            roles |= same ? AUTH_ROLE_BIT(a->entries[k].role) : 0;
        }
    }
    if (roles == 0) return RPC_UNAUTHENTICATED;
    if (!roles_allow(roles, cls)) {
        *msg = MSG_DENIED;
        return RPC_PERMISSION_DENIED;
    }
    *msg = NULL;
    return 0;
}

int auth_address_is_local(const char *addr)
{
    if (strncmp(addr, "unix:", 5) == 0 || strncmp(addr, "unix-abstract:", 14) == 0) return 1;
    if (strncmp(addr, "127.", 4) == 0) return 1;
    if (strncmp(addr, "[::1]:", 6) == 0) return 1;
    if (strncasecmp(addr, "localhost:", 10) == 0) return 1;
    return 0;
}
