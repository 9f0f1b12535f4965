/*
 * target — the checks of a gRPC target written in the config: the ingress
 * address, a sidecar's address, a remote endpoint's resolver URI. Pure string
 * checks: nothing is resolved or dialled, so --check-config works on a build
 * machine for a config meant for a cluster.
 */
#ifndef SM_TARGET_H
#define SM_TARGET_H

#include <stddef.h>

#define TARGET_SUN_PATH_MAX 107     /* sizeof(sun_path) - 1 */

enum target_kind {
    TARGET_LISTEN,    /* runtime.ingress: what we bind */
    TARGET_SIDECAR,   /* a function server next to us */
    TARGET_REMOTE     /* function servers behind DNS or an address list */
};

/* NULL if `t` is a target of this kind we can dial or listen on, else why not
 * (a constant string, or `why` filled in).
 *
 *   listen, sidecar   unix:PATH, unix:///PATH, unix-abstract:NAME, HOST:PORT,
 *                     [IPv6]:PORT
 *   remote            dns:///HOST:PORT, dns:HOST:PORT, ipv4:A.B.C.D:PORT[,...],
 *                     ipv6:[ADDR]:PORT[,...], HOST:PORT, [IPv6]:PORT
 */
const char *target_check(const char *t, enum target_kind kind, char *why, size_t whylen);

#endif
