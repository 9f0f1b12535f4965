/*
 * greeter — the statemesh hello-world, as a C function server.
 *
 *   greeter [--listen unix:/path.sock | host:port]
 *           [--tls-cert FILE --tls-key FILE [--tls-ca FILE --require-client-cert]]
 *           (default unix:/tmp/statemesh-greeter.sock)
 *
 * With --tls-cert and --tls-key a host:port listen serves TLS; with
 * --tls-ca and --require-client-cert it admits only clients (the runtime)
 * with a certificate signed by that CA (mTLS). examples/kubernetes/remote.yaml runs it that way.
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
    sm_tls_options tls = {0};
    sm_functions *fns = NULL;
    sm_server *srv = NULL;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen = argv[++i];
        } else if (strcmp(argv[i], "--tls-cert") == 0 && i + 1 < argc) {
            tls.cert_file = argv[++i];
        } else if (strcmp(argv[i], "--tls-key") == 0 && i + 1 < argc) {
            tls.key_file = argv[++i];
        } else if (strcmp(argv[i], "--tls-ca") == 0 && i + 1 < argc) {
            tls.ca_file = argv[++i];
        } else if (strcmp(argv[i], "--require-client-cert") == 0) {
            tls.require_client_cert = 1;
        } else {
            fprintf(stderr, "usage: greeter [--listen unix:/path.sock|host:port]\n"
                            "               [--tls-cert FILE --tls-key FILE"
                            " [--tls-ca FILE --require-client-cert]]\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    if (!tls.cert_file != !tls.key_file || ((tls.ca_file || tls.require_client_cert) && !tls.cert_file)
        || (tls.require_client_cert && !tls.ca_file)) {
        fprintf(stderr, "greeter: --tls-cert and --tls-key go together; --tls-ca needs them;"
                        " --require-client-cert needs --tls-ca\n");
        return 2;
    }

    fns = sm_functions_create();
    if (!fns || greeter_bind(fns) != SM_OK) {
        fprintf(stderr, "greeter: cannot bind function types\n");
        goto out;
    }
    srv = sm_server_create(fns);
    if (srv && tls.cert_file && sm_server_set_tls(srv, &tls) != SM_OK) goto out;
    if (srv && sm_server_listen(srv, listen) == SM_OK && sm_server_run(srv) == SM_OK) rc = 0;
out:
    sm_server_destroy(&srv);
    sm_functions_destroy(&fns);
    return rc;
}
