/*
 * savepoint — Admin.CreateSavepoint from the client (statemesh/client.h):
 * one server-streaming call on its own NEXT completion queue, read to the
 * end; every SavepointProgress goes to the caller's callback.
 *
 *   {SEND_INITIAL_METADATA, SEND_MESSAGE, SEND_CLOSE_FROM_CLIENT,
 *    RECV_INITIAL_METADATA}                  -> t_start
 *   {RECV_STATUS_ON_CLIENT}                  -> t_status
 *   {RECV_MESSAGE}*                          -> t_recv, until the stream ends
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "client_internal.h"
#include "statemesh/v1/admin.pb-c.h"

struct spcall {
    grpc_completion_queue *cq;
    grpc_call *call;
    int t_start, t_recv, t_status;
    int pending;
    grpc_byte_buffer *send_bb, *recv_bb;
    grpc_metadata_array md_init, md_trail;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
    bool recv_inflight, recv_done, status_done;
};

/* Waits for one completion: 0 if none can come, else 1 with *got set to
 * the received message when it was the RECV_MESSAGE batch that completed
 * (ownership moves to the caller; NULL at the end of the stream). The
 * buffer is taken only from that completion: gRPC may fill recv_bb before
 * the event of its batch is dequeued, so looking at it after another
 * batch's event would take the message early and then see the real
 * completion as the end of the stream (the call then hung: the status
 * never comes while messages are left unread). */
static int wait_one(struct spcall *sc, grpc_byte_buffer **got)
{
    grpc_event ev = grpc_completion_queue_next(sc->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    *got = NULL;
    if (ev.type != GRPC_OP_COMPLETE) return 0;
    sc->pending--;
    if (ev.tag == &sc->t_recv) {
        sc->recv_inflight = false;
        if (ev.success && sc->recv_bb) *got = sc->recv_bb;
        else sc->recv_done = true;
        if (!ev.success && sc->recv_bb) grpc_byte_buffer_destroy(sc->recv_bb);
        sc->recv_bb = NULL;
    } else if (ev.tag == &sc->t_status) {
        sc->status_done = true;
    }
    return 1;
}

static int post_recv(struct spcall *sc)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &sc->recv_bb;
    if (grpc_call_start_batch(sc->call, &op, 1, &sc->t_recv, NULL) != GRPC_CALL_OK) return -1;
    sc->recv_inflight = true;
    sc->pending++;
    return 0;
}

static void spcall_close(struct spcall *sc)
{
    if (sc->call) {
        if (!(sc->status_done && sc->recv_done)) grpc_call_cancel(sc->call, NULL);
        grpc_byte_buffer *bb;
        while (sc->pending && wait_one(sc, &bb))
            if (bb) grpc_byte_buffer_destroy(bb);
        grpc_call_unref(sc->call);
    }
    if (sc->cq) {
        grpc_completion_queue_shutdown(sc->cq);
        while (grpc_completion_queue_next(sc->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
               GRPC_QUEUE_SHUTDOWN) {
        }
        grpc_completion_queue_destroy(sc->cq);
    }
    if (sc->send_bb) grpc_byte_buffer_destroy(sc->send_bb);
    if (sc->recv_bb) grpc_byte_buffer_destroy(sc->recv_bb);
    grpc_metadata_array_destroy(&sc->md_init);
    grpc_metadata_array_destroy(&sc->md_trail);
    grpc_slice_unref(sc->details);
    gpr_free((void *)sc->error_string);
}

int sm_client_create_savepoint(sm_client *c, const char *path, uint32_t ranges,
                               sm_savepoint_fn fn, void *udata, sm_error *err)
{
    Statemesh__V1__CreateSavepointRequest req = STATEMESH__V1__CREATE_SAVEPOINT_REQUEST__INIT;
    struct spcall sc;
    grpc_slice slice;
    grpc_op ops[4];
    int rc = SM_OK;
    bool stopped = false;

    if (!c || !path) return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "no client or path");
    if (path[0] != '/')
        return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL,
                           "savepoint path '%.300s' must be absolute (a path on the runtime's "
                           "machine)", path);
    memset(&sc, 0, sizeof sc);
    sc.details = grpc_empty_slice();
    grpc_metadata_array_init(&sc.md_init);
    grpc_metadata_array_init(&sc.md_trail);
    req.path = (char *)path;
    req.ranges = ranges;
    slice = grpc_slice_malloc(statemesh__v1__create_savepoint_request__get_packed_size(&req));
    statemesh__v1__create_savepoint_request__pack(&req, GRPC_SLICE_START_PTR(slice));
    sc.send_bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    sc.cq = grpc_completion_queue_create_for_next(NULL);
    sc.call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, sc.cq,
                                       grpc_slice_from_static_string(
                                           "/statemesh.v1.Admin/CreateSavepoint"),
                                       NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY;
    sm__auth_md(c, &ops[0]);
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = sc.send_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &sc.md_init;
    if (grpc_call_start_batch(sc.call, ops, 4, &sc.t_start, NULL) != GRPC_CALL_OK) goto fail;
    sc.pending++;
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[0].data.recv_status_on_client.trailing_metadata = &sc.md_trail;
    ops[0].data.recv_status_on_client.status = &sc.status;
    ops[0].data.recv_status_on_client.status_details = &sc.details;
    ops[0].data.recv_status_on_client.error_string = &sc.error_string;
    if (grpc_call_start_batch(sc.call, ops, 1, &sc.t_status, NULL) != GRPC_CALL_OK) goto fail;
    sc.pending++;
    if (post_recv(&sc) != 0) goto fail;
    while (!(sc.recv_done && sc.status_done)) {
        grpc_byte_buffer *bb;
        if (!wait_one(&sc, &bb)) goto fail;
        if (bb) {
            grpc_byte_buffer_reader r;
            grpc_slice all = grpc_empty_slice();
            Statemesh__V1__SavepointProgress *p;
            if (grpc_byte_buffer_reader_init(&r, bb)) {
                all = grpc_byte_buffer_reader_readall(&r);
                grpc_byte_buffer_reader_destroy(&r);
            }
            grpc_byte_buffer_destroy(bb);
            p = statemesh__v1__savepoint_progress__unpack(NULL, GRPC_SLICE_LENGTH(all),
                                                          GRPC_SLICE_START_PTR(all));
            grpc_slice_unref(all);
            if (p && fn && !stopped) {
                sm_savepoint_progress sp = {p->records, p->bytes, p->files_done, p->files,
                                            p->elapsed_ms, p->done, p->path ? p->path : "",
                                            p->manifest_json ? p->manifest_json : ""};
                if (fn(udata, &sp) != 0) {
                    stopped = true;
                    grpc_call_cancel(sc.call, NULL);
                }
            }
            if (p) statemesh__v1__savepoint_progress__free_unpacked(p, NULL);
        }
        if (!sc.recv_done && !sc.recv_inflight && post_recv(&sc) != 0) sc.recv_done = true;
    }
    if (stopped) {
        rc = sm__set_err(err, GRPC_STATUS_CANCELLED, SM_ERPC, "savepoint cancelled by the caller");
    } else if (sc.status != GRPC_STATUS_OK) {
        char *d = grpc_slice_to_c_string(sc.details);
        if (sc.status == GRPC_STATUS_UNAVAILABLE)
            rc = sm__set_err(err, sc.status, SM_ERPC, "runtime not reachable at %.200s or shutting "
                             "down: %.700s", c->target, d && *d ? d : "unavailable");
        else if (sc.status == GRPC_STATUS_UNIMPLEMENTED)
            rc = sm__set_err(err, sc.status, SM_ERPC, "the runtime at %.200s does not serve "
                             "CreateSavepoint (older version?)", c->target);
        else
            rc = sm__set_err(err, sc.status, SM_ERPC, "%.900s",
                             d && *d ? d : sm_status_code_name(sc.status));
        gpr_free(d);
    } else if (err) {
        err->code = 0;
        err->message[0] = '\0';
    }
    spcall_close(&sc);
    return rc;
fail:
    spcall_close(&sc);
    return sm__set_err(err, GRPC_STATUS_INTERNAL, SM_ERPC, "cannot run the CreateSavepoint call");
}
