/*
 * greeter — the statemesh hello-world, as a C function server.
 *
 *   greeter [--listen unix:/path.sock | host:port]
 *           (default unix:/tmp/statemesh-greeter.sock)
 *
 * Two function types talk to each other through the runtime:
 *
 *   example/user     state visits (statemesh/int64). Any message (e.g. "hi")
 *                    counts one visit and sends
 *                        {"name": "<id>", "visits": <n>}   (statemesh/json)
 *                    to example/greeter with the same id.
 *
 *   example/greeter  no state. Reads name and visits from that JSON and
 *                    replies "Hello <name>, you are visitor #<n>"
 *                    (statemesh/string).
 *
 * The reply is made by example/greeter, yet it answers the ingress Call that
 * reached example/user: the message user sends carries the index of the
 * invocation that produced it, and the runtime routes the reply along.
 *
 *   $ build/statemesh call example/user alice hi
 *   Hello alice, you are visitor #1
 *
 * The handlers live in functions/greeter_functions.c; this file only serves
 * them over gRPC. The same handlers also build into an embedded module,
 * build/examples/greeter/libgreeter.so (functions/module.c), that statemeshd
 * loads in-process (embedded.conf).
 *
 * Run it all with `make run` (examples/greeter/run.sh), or in-process with
 * `make run MODE=embedded`.
 */
#include <stdio.h>
#include <string.h>

#include "functions/greeter_functions.h"

int main(int argc, char **argv)
{
    const char *listen = "unix:/tmp/statemesh-greeter.sock";
    sm_functions *fns = NULL;
    sm_server *srv = NULL;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen = argv[++i];
        } else {
            fprintf(stderr, "usage: greeter [--listen unix:/path.sock|host:port]\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }

    fns = sm_functions_create();
    if (!fns || greeter_bind(fns) != SM_OK) {
        fprintf(stderr, "greeter: cannot bind function types\n");
        goto out;
    }
    srv = sm_server_create(fns);
    if (srv && sm_server_listen(srv, listen) == SM_OK && sm_server_run(srv) == SM_OK) rc = 0;
out:
    sm_server_destroy(&srv);
    sm_functions_destroy(&fns);
    return rc;
}
