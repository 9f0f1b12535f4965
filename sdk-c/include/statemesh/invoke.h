/*
 * statemesh/invoke.h — batch processing without gRPC.
 *
 * The core of the SDK as a pure function: one BatchRequest in, one
 * BatchResponse out, using the handlers bound in an sm_functions registry.
 * The gRPC server (statemesh/function.h) is a thin loop around it; the
 * runtime's embedded mode and the unit tests call it directly.
 *
 * Memory: every pointer the SDK stores in a response points into an
 * `sm_arena` the caller provides, never into the request, so the response
 * stays valid after the request is freed, until the arena is reset or
 * destroyed. An arena is a bump allocator: many small allocations, one
 * reset. Its total size is capped (SM_ARENA_CAP); hitting the cap makes the
 * allocation fail like out-of-memory.
 *
 * Threads: sm_functions_process only reads the registry, so several threads
 * may process batches concurrently, each with its own arena.
 *
 * Embedded mode (proposal): a shared library built with the SDK exports
 *     int statemesh_module_init(sm_functions *fns);
 * which binds its types into a registry the runtime created; the runtime then
 * calls sm_functions_describe and sm_functions_process in-process.
 */
#ifndef STATEMESH_INVOKE_H
#define STATEMESH_INVOKE_H

#include <stddef.h>

#include "statemesh/function.h"
#include "statemesh/version.h"
#include "statemesh/v1/function.pb-c.h"

#define SM_ARENA_CAP ((size_t)1 << 30) /* 1 GiB per arena */

typedef struct sm_arena sm_arena;

/* Returns a new arena (caller owns; sm_arena_destroy), or NULL. */
sm_arena *sm_arena_create(void);
/* n bytes, 16-byte aligned, owned by the arena; NULL on OOM or past the cap. */
void *sm_arena_alloc(sm_arena *a, size_t n);
/* Copies of a string / a byte range into the arena; NULL on OOM.
 * sm_arena_memdup(a, NULL, 0) returns a valid non-NULL pointer. */
char *sm_arena_strdup(sm_arena *a, const char *s);
void *sm_arena_memdup(sm_arena *a, const void *p, size_t n);
/* Frees everything allocated since creation (keeps one chunk for reuse). */
void sm_arena_reset(sm_arena *a);
/* Bytes handed out since the last reset. */
size_t sm_arena_used(const sm_arena *a);
void sm_arena_destroy(sm_arena **pa);

/* Runs one batch through the handler bound to req->target->type and fills
 * *out (any previous content is overwritten, not freed) with exactly one of:
 *   result      the final state mutations (one per written state, in
 *               declaration order), outgoing messages and replies, each
 *               tagged with the index of the invocation that produced it,
 *               delayed messages and egress records in call order, and
 *               the cancellations (one per token);
 *   incomplete  the declared specs for which req->state has no entry
 *               (no handler runs);
 *   failure     the first error: handler failure or misuse, or "function
 *               type X not served here", or a batch without target.
 * out->batch_id = req->batch_id. `req` is only read during the call.
 * Returns SM_OK (the outcome is in *out) or SM_ENOMEM (the arena could not
 * hold the answer; *out is then unspecified). */
int sm_functions_process(const sm_functions *fns, const Statemesh__V1__BatchRequest *req,
                         sm_arena *arena, Statemesh__V1__BatchResponse *out /* OUT */)
    SM_WARN_UNUSED;

/* Fills *out with the types served and their state specs (with their TTLs),
 * sorted by type, with sdk = "statemesh-c/<version>". Everything is allocated in `arena`.
 * Returns SM_OK or SM_ENOMEM. */
int sm_functions_describe(const sm_functions *fns, sm_arena *arena,
                          Statemesh__V1__DescribeResponse *out /* OUT */) SM_WARN_UNUSED;

/* Number of bound types. */
size_t sm_functions_count(const sm_functions *fns);

/* The SDK version, SM_VERSION of statemesh/version.h (generated from the
 * tree's VERSION file). */
#define SM_SDK_VERSION SM_VERSION

#endif
