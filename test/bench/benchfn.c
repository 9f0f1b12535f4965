/*
 * benchfn — the benchmark's C function server (the "c-sidecar" mode of
 * make bench): serves bench/counter and bench/greeter (bench_functions.h)
 * over gRPC until SIGINT/SIGTERM.
 *
 *   benchfn [--listen unix:/path.sock | host:port]
 *           (default unix:/tmp/statemesh-benchfn.sock)
 *
 * Exit 0 after a clean shutdown, 1 if it cannot listen, 2 on a usage error.
 */
#include <stdio.h>
#include <string.h>

#include "bench_functions.h"

int main(int argc, char **argv)
{
    const char *listen = "unix:/tmp/statemesh-benchfn.sock";
    sm_functions *fns = NULL;
    sm_server *srv = NULL;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen = argv[++i];
        } else {
            int help = strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0;
            fprintf(help ? stdout : stderr, "usage: benchfn [--listen unix:/path.sock|host:port]\n");
            return help ? 0 : 2;
        }
    }

    fns = sm_functions_create();
    if (!fns || bench_bind(fns) != SM_OK) {
        fprintf(stderr, "benchfn: cannot bind the function types\n");
        goto out;
    }
    srv = sm_server_create(fns);
    if (srv && sm_server_listen(srv, listen) == SM_OK && sm_server_run(srv) == SM_OK) rc = 0;
out:
    sm_server_destroy(&srv);
    sm_functions_destroy(&fns);
    return rc;
}
