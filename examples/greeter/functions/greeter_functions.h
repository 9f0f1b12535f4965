/*
 * greeter functions — the handlers of the greeter example, shared by its two
 * builds (no code is duplicated between them):
 *
 *   build/examples/greeter/greeter        a function server (sidecar/remote):
 *                                         greeter.c serves them over gRPC
 *   build/examples/greeter/libgreeter.so  an embedded module: module.c binds
 *                                         them inside statemeshd
 *
 *   example/user     state visits (statemesh/int64). Any message counts one
 *                    visit and sends {"name": "<id>", "visits": <n>}
 *                    (statemesh/json) to example/greeter with the same id.
 *   example/greeter  no state. Replies "Hello <name>, you are visitor #<n>"
 *                    (statemesh/string) to the Call that started the chain.
 */
#ifndef GREETER_FUNCTIONS_H
#define GREETER_FUNCTIONS_H

#include "statemesh/function.h"

/* Binds example/user and example/greeter into `fns`. Returns SM_OK or the
 * first error of sm_functions_bind. */
int greeter_bind(sm_functions *fns) SM_WARN_UNUSED;

#endif
