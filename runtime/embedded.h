/*
 * embedded — function types served in-process by a shared library
 * (an endpoint with mode = "embedded"; library = "path/libfoo.so").
 *
 * THE MODULE CONTRACT. A module is a shared library built with the C SDK's
 * headers (statemesh/function.h) that exports
 *
 *     int statemesh_module_init(sm_functions *fns);            required
 *     void statemesh_module_fini(void);                        optional
 *     const char statemesh_module_sdk_version[];               optional
 *
 * statemeshd creates an empty registry and calls statemesh_module_init once
 * per endpoint that names the library; init binds its function types with
 * the ordinary sm_functions_bind() and returns 0 (anything else refuses the
 * start, and so does binding no type at all). The handlers are the same as
 * in a function server: the greeter example builds one handler file into
 * both build/examples/greeter/greeter (sidecar) and libgreeter.so. If the
 * module defines statemesh_module_sdk_version (= SM_SDK_VERSION from
 * statemesh/invoke.h), it must equal the runtime's SDK version. fini, if
 * present, runs at shutdown once per successful init, after that init's
 * registry is destroyed and before the library is unloaded. A library named
 * by two endpoints is loaded once (dlopen counts references) and inited
 * twice, so a module should keep no global state of its own. The library is loaded with dlopen(RTLD_NOW |
 * RTLD_LOCAL), so an undefined symbol fails the start, not a later call.
 *
 *     #include <statemesh/function.h>
 *     #include <statemesh/invoke.h>
 *     const char statemesh_module_sdk_version[] = SM_SDK_VERSION;
 *     int statemesh_module_init(sm_functions *fns) {
 *         return sm_functions_bind(fns, "example/hello", NULL, 0, hello, NULL);
 *     }
 *
 *     cc -shared -fPIC -o libhello.so hello.c      (no -lstatemesh: see below)
 *
 * LINKING. One copy of the SDK lives in the process: statemeshd links
 * libstatemesh whole and exports its sm_* (and generated statemesh__v1__*)
 * symbols to modules (-Wl,--export-dynamic-symbol); a module leaves them
 * undefined and the dynamic linker binds them to the runtime's copy. So the
 * registry, its memory and the batch encoding are the runtime's own; there is
 * no second SDK whose version or allocator could disagree. A module that
 * linked libstatemesh.a in as well would work only by accident: don't.
 * Under ASan (make SANITIZE=1) build modules with the same flags; the
 * sanitizer runtime is shared the same way.
 *
 * WHAT RUNS WHERE. Batches go through the same path as for a function
 * server: dispatch builds encoded BatchRequests into the endpoint's frame;
 * at flush the endpoint hands the frame to emb_process(), which decodes it,
 * runs sm_functions_process() for each batch and passes each BatchResponse
 * to the endpoint's answer callback (disp_on_response for results), one
 * batch after another, synchronously, on the event-loop thread.
 *
 * TRADE-OFFS (say them to users, docs/c-sdk.md "Embedded modules"):
 *   + the fastest path: no socket, no HTTP/2, no second process, no copy of
 *     the answer (the responses are read where the SDK built them);
 *   - the module shares the runtime's address space and its one thread: a
 *     crash in a handler kills statemeshd (restart recovers: nothing
 *     acknowledged is lost, in-flight batches are re-run), a handler that
 *     blocks or sleeps stalls every ingress call, checkpoint and endpoint;
 *     invocation_timeout_ms cannot interrupt it. Handlers must be short, pure
 *     computations over their state and message (exactly what the SDK
 *     allows: no I/O is needed to produce an answer);
 *   - a module is trusted code with the runtime's privileges;
 *   - upgrading a module means restarting statemeshd.
 *
 * All functions run on the event-loop thread. Errors: int status, 0 = OK,
 * -1 = failure with a message in the caller's buffer.
 */
#ifndef SM_EMBEDDED_H
#define SM_EMBEDDED_H

#include <stddef.h>
#include <stdint.h>

#include "statemesh/v1/function.pb-c.h"

#define EMB_INIT_SYMBOL "statemesh_module_init"
#define EMB_FINI_SYMBOL "statemesh_module_fini"
#define EMB_VERSION_SYMBOL "statemesh_module_sdk_version"

struct emb_module;

/* Loads the library at `path`, checks its symbols and runs its init into a
 * fresh registry. Returns 0 and *out (caller owns; emb_unload), or -1 with
 * a message naming the path (and dlerror()) in err; nothing stays loaded. */
int emb_load(struct emb_module **out /* OUT */, const char *path, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Destroys the registry, runs the module's fini, unloads the library and
 * sets *pm to NULL. NULL / *pm == NULL: no-op. */
void emb_unload(struct emb_module **pm);

/* The types the module bound and their state specs, as a Describe answer.
 * Owned by the module; valid until the next emb_describe/emb_process.
 * NULL when out of memory. */
const Statemesh__V1__DescribeResponse *emb_describe(struct emb_module *m);

/* Receives each batch's answer: `resp` (borrowed for the call) or, when the
 * module could not produce one (out of memory), NULL and a reason. */
typedef void (*emb_answer_fn)(void *arg, uint64_t batch_id,
                              const Statemesh__V1__BatchResponse *resp, const char *why);

/* Runs every batch of one encoded ToFunction message, in order, and calls
 * `answer` exactly once per batch before returning. `frame` is only read.
 * Returns 0, or -1 (no answer given) if the frame does not decode or if
 * called again from inside an answer. */
int emb_process(struct emb_module *m, const uint8_t *frame, size_t len, emb_answer_fn answer,
                void *arg) __attribute__((warn_unused_result));

#endif
