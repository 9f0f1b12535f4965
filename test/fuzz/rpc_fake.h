/*
 * rpc_fake — runtime/rpc.h without gRPC, for the fuzz harnesses that drive
 * the ingress and admin handlers (fuzz_ingress.c).
 *
 * The server half records what the modules register (rpc_server_add_unary,
 * rpc_server_add_stream) so a harness can call a method's handler by its
 * gRPC name, with request bytes as gRPC would hand them over, and see how
 * the call was answered. A unary call is answered at most once; a second
 * answer, an answer after the call was cancelled, a stream message after
 * rpc_scall_finish or a send while not writable abort (a libFuzzer crash).
 * Sends complete when the harness says so (rpc_fake_drive), as gRPC's
 * completion queue would. The client half (endpoint channels) is not
 * available: creating a channel or stream fails.
 *
 * rpc_pack and rpc_status_name behave as rpc.c's; rpc_now_ms reads the
 * monotonic clock.
 */
#ifndef SM_FUZZ_RPC_FAKE_H
#define SM_FUZZ_RPC_FAKE_H

#include <stddef.h>
#include <stdint.h>

#include "rpc.h"

/* What became of a unary call. */
struct rpc_fake_answer {
    int answered;              /* 1 after rpc_call_reply/_raw/_error */
    int code;                  /* RPC_OK or the error */
    char msg[1024];            /* the error message ("" on OK) */
    size_t reply_len;          /* bytes of the OK answer */
};

/* Calls the unary method `method` with req..len. Returns 0 and fills *out
 * once the handler has returned (answered, or held by the module: then
 * out->answered is 0 until rpc_fake_answers_pending() shows otherwise),
 * -1 if no such unary method is registered. */
int rpc_fake_unary(struct rpc_server *srv, const char *method, const uint8_t *req, size_t len,
                   struct rpc_fake_answer *out);

/* Opens a call of the stream method `method`; each of the nframes frames
 * is delivered once the module reads (rpc_scall_read), then the half-close
 * (when `half_close`). Sends complete in between. Returns 0, -1 if no such
 * stream method. *finished: the module ended the call (code in *code). */
int rpc_fake_stream(struct rpc_server *srv, const char *method, const uint8_t *const *frames,
                    const size_t *lens, size_t nframes, int half_close, int *finished,
                    int *code);

/* Completes sends and delivers pending reads of the open stream calls
 * until nothing moves (at most `rounds` rounds). */
void rpc_fake_drive(struct rpc_server *srv, int rounds);

/* Unary calls held by a module (not yet answered). */
size_t rpc_fake_held(const struct rpc_server *srv);

#endif
