/*
 * bench_functions — the function types of the benchmark (make bench), one
 * handler file built into both of the C function modes:
 *
 *   build/test/bench/benchfn         C sidecar: benchfn.c serves them over gRPC
 *   build/test/bench/libcounter.so   embedded module: counter_module.c binds
 *                                    them inside statemeshd
 *
 * The Python sidecar, test/bench/bench_fn.py, implements the same two types
 * with the same behaviour, so every mode runs the same workload:
 *
 *   bench/counter  state n (statemesh/int64, absent = 0). Message:
 *                  statemesh/int64 k; n += k, then replies n
 *                  (statemesh/int64) to messages from the ingress (a
 *                  function cannot tell whether a Call waits; the runtime
 *                  drops replies to Send/SendStream messages).
 *
 *   bench/greeter  state n (statemesh/int64, absent = 0). Any message:
 *                  n += 1, then replies "Hello <id> #<n>" (statemesh/string).
 *                  The state makes a Call's effect checkable: after the run
 *                  n equals the number of acknowledged calls to the address.
 */
#ifndef BENCH_FUNCTIONS_H
#define BENCH_FUNCTIONS_H

#include "statemesh/function.h"

#define BENCH_COUNTER_TYPE "bench/counter"
#define BENCH_GREETER_TYPE "bench/greeter"
#define BENCH_STATE "n"

/* Binds bench/counter and bench/greeter into fns. Returns SM_OK or the
 * first error of sm_functions_bind. */
int bench_bind(sm_functions *fns) SM_WARN_UNUSED;

#endif
