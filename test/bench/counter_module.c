/*
 * The benchmark's functions (bench_functions.h) as an embedded module
 * (runtime/embedded.h): the driver's embedded runs load
 * build/test/bench/libcounter.so into statemeshd, so bench/counter and
 * bench/greeter run on the runtime's event-loop thread, with no function
 * server process and no socket in between.
 */
#include "bench_functions.h"
#include "statemesh/invoke.h"

/* Lets statemeshd refuse a module built against another SDK version. */
const char statemesh_module_sdk_version[] = SM_SDK_VERSION;

int statemesh_module_init(sm_functions *fns);

int statemesh_module_init(sm_functions *fns)
{
    return bench_bind(fns);
}
