/* target — see target.h. */
#include "target.h"

#include <stdio.h>
#include <string.h>

static int host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '-' || c == '_';
}

static int has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* NULL if `port` (up to `end`) is a decimal 1..65535, else why not. */
static const char *check_port(const char *port, const char *end, char *why, size_t whylen)
{
    long pv = 0;

    if (port == end) return "port is missing (host:port)";
    for (const char *p = port; p < end; p++) {
        if (*p < '0' || *p > '9') return "port must be a number 1..65535";
        if (pv <= 65535) pv = pv * 10 + (*p - '0');
    }
    if (pv < 1 || pv > 65535) {
        snprintf(why, whylen, "port %.*s is out of range 1..65535",
                 (int)(end - port > 20 ? 20 : end - port), port);
        return why;
    }
    return NULL;
}

/* NULL if [t, end) is "host:port" or "[IPv6]:port", else why not. */
static const char *check_host_port(const char *t, const char *end, char *why, size_t whylen)
{
    const char *colon = NULL;
    size_t hlen;

    for (const char *p = t; p < end; p++)
        if (*p == ':') colon = p;
    if (colon == NULL) return "expected host:port";
    if (t[0] == '[') {
        if (colon == t || colon[-1] != ']')
            return "an IPv6 address needs brackets and a port: [::1]:7070";
        for (const char *p = t + 1; p < colon - 1; p++)
            if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') ||
                  (*p >= 'A' && *p <= 'F') || *p == ':' || *p == '.'))
                return "bad character in the bracketed IPv6 address";
        hlen = (size_t)(colon - 1 - (t + 1));
    } else {
        for (const char *p = t; p < colon; p++) {
            if (*p == ':')
                return "unknown scheme or bad host (write IPv6 addresses as [::1]:7070)";
            if (!host_char(*p)) return "bad character in the host name";
        }
        hlen = (size_t)(colon - t);
    }
    if (hlen == 0) return "host is empty (use 0.0.0.0:PORT or 127.0.0.1:PORT)";
    return check_port(colon + 1, end, why, whylen);
}

/* NULL if [t, end) is a dotted-quad IPv4 address and a port. */
static const char *check_ipv4_port(const char *t, const char *end, char *why, size_t whylen)
{
    const char *p = t;

    for (int octet = 0; octet < 4; octet++) {
        int v = 0, digits = 0;
        while (p < end && *p >= '0' && *p <= '9' && digits < 4) {
            v = v * 10 + (*p++ - '0');
            digits++;
        }
        if (digits == 0 || digits > 3 || v > 255)
            return "expected an IPv4 address and a port: ipv4:10.0.0.1:7000";
        if (p >= end || *p != (octet < 3 ? '.' : ':'))
            return "expected an IPv4 address and a port: ipv4:10.0.0.1:7000";
        p++;
    }
    return check_port(p, end, why, whylen);
}

/* NULL if [t, end) is "[IPv6]:port". */
static const char *check_ipv6_port(const char *t, const char *end, char *why, size_t whylen)
{
    const char *close = memchr(t, ']', (size_t)(end - t));
    int colons = 0;

    if (t == end || t[0] != '[' || close == NULL || close + 1 >= end || close[1] != ':')
        return "expected a bracketed IPv6 address and a port: ipv6:[fd00::1]:7000";
    for (const char *p = t + 1; p < close; p++) {
        if (*p == ':') colons++;
        else if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') ||
                   (*p >= 'A' && *p <= 'F') || *p == '.'))
            return "bad character in the bracketed IPv6 address";
    }
    if (colons < 2) return "expected a bracketed IPv6 address and a port: ipv6:[fd00::1]:7000";
    return check_port(close + 2, end, why, whylen);
}

/* "ipv4:" / "ipv6:" address lists: one or more entries separated by ','. */
static const char *check_address_list(const char *list, int v6, char *why, size_t whylen)
{
    const char *p = list;

    if (*p == '\0')
        return v6 ? "ipv6: needs at least one address: ipv6:[fd00::1]:7000"
                  : "ipv4: needs at least one address: ipv4:10.0.0.1:7000";
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        const char *bad;
        if (p == end) return "empty entry in the address list (a stray ',')";
        bad = v6 ? check_ipv6_port(p, end, why, whylen) : check_ipv4_port(p, end, why, whylen);
        if (bad) return bad;
        if (!comma) return NULL;
        p = comma + 1;
    }
}

static const char *check_unix(const char *t, char *why, size_t whylen)
{
    if (has_prefix(t, "unix-abstract:")) {
        if (t[14] == '\0') return "unix-abstract: needs a name, e.g. unix-abstract:statemesh";
        if (strlen(t + 14) > TARGET_SUN_PATH_MAX - 1) {
            snprintf(why, whylen, "abstract socket name is longer than %d bytes",
                     TARGET_SUN_PATH_MAX - 1);
            return why;
        }
        return NULL;
    }
    t += 5;                                          /* "unix:" */
    if (strncmp(t, "//", 2) == 0) {
        if (t[2] != '/') return "unix:// must be followed by an absolute path: unix:///path";
        t += 2;
    }
    if (*t == '\0') return "unix: needs a socket path, e.g. unix:/run/fn.sock";
    if (strlen(t) > TARGET_SUN_PATH_MAX) {
        snprintf(why, whylen, "unix socket path is longer than %d bytes", TARGET_SUN_PATH_MAX);
        return why;
    }
    return NULL;
}

const char *target_check(const char *t, enum target_kind kind, char *why, size_t whylen)
{
    int is_unix = has_prefix(t, "unix:") || has_prefix(t, "unix-abstract:");
    int is_remote_scheme = has_prefix(t, "dns:") || has_prefix(t, "ipv4:") || has_prefix(t, "ipv6:");

    if (kind == TARGET_REMOTE) {
        if (is_unix) return "a unix socket is local: use mode = \"sidecar\" for it";
        if (has_prefix(t, "dns:///")) return check_host_port(t + 7, t + strlen(t), why, whylen);
        if (has_prefix(t, "dns://"))
            return "a DNS server authority (dns://SERVER/...) is not supported; "
                   "write dns:///host:port";
        if (has_prefix(t, "dns:")) return check_host_port(t + 4, t + strlen(t), why, whylen);
        if (has_prefix(t, "ipv4:")) return check_address_list(t + 5, 0, why, whylen);
        if (has_prefix(t, "ipv6:")) return check_address_list(t + 5, 1, why, whylen);
        if (strchr(t, ':') == NULL || (t[0] != '[' && strchr(t, ':') != strrchr(t, ':')))
            return "expected dns:///host:port, dns:host:port, ipv4:a.b.c.d:port[,...], "
                   "ipv6:[addr]:port[,...] or host:port";
        return check_host_port(t, t + strlen(t), why, whylen);
    }
    if (is_unix) return check_unix(t, why, whylen);
    if (is_remote_scheme)
        return kind == TARGET_LISTEN
                   ? "the ingress listens on host:port or unix:/path"
                   : "dns:, ipv4: and ipv6: targets need mode = \"remote\"";
    if (strchr(t, ':') == NULL)
        return "expected unix:/path/to.sock, unix-abstract:name or host:port";
    if (t[0] != '[' && strchr(t, ':') != strrchr(t, ':'))
        return "unknown scheme or bad host (write IPv6 addresses as [::1]:7070; "
               "supported: unix:/path, unix-abstract:name, host:port)";
    return check_host_port(t, t + strlen(t), why, whylen);
}
