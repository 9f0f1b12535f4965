/*
 * The greeter as an embedded module (runtime/embedded.h): statemeshd loads
 * build/examples/greeter/libgreeter.so with dlopen and calls
 * statemesh_module_init with a registry of its own; the handlers then run
 * in-process, on the runtime's event-loop thread. See embedded.conf.
 */
#include "greeter_functions.h"
#include "statemesh/invoke.h"

/* Lets statemeshd refuse a module built against another SDK version. */
const char statemesh_module_sdk_version[] = SM_SDK_VERSION;

int statemesh_module_init(sm_functions *fns);

int statemesh_module_init(sm_functions *fns)
{
    return greeter_bind(fns);
}
