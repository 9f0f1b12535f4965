/*
 * subscribe — the Subscribe client (statemesh/client.h): reads an egress
 * over one server-streaming gRPC call on its own NEXT completion queue.
 *
 *   open:  {SEND_INITIAL_METADATA, SEND_MESSAGE(request), SEND_CLOSE_FROM_CLIENT,
 *           RECV_INITIAL_METADATA}                 -> t_start
 *          {RECV_STATUS_ON_CLIENT}                 -> t_status
 *          {RECV_MESSAGE}                          -> t_recv
 *   next:  hand out the records of the current SubscribeResponse one by one;
 *          when it is used up, free it and post the next RECV_MESSAGE;
 *          recv NULL = the runtime ended the stream: wait for the status,
 *          OK -> SM_ABSENT, else the status mapped to a clear message.
 *
 * `pending` counts operations in flight; close cancels the call if it is
 * not over and waits for them before releasing anything.
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
#include "statemesh/v1/ingress.pb-c.h"

#define MAX_EGRESS_NAME 128

struct sm_subscription {
    sm_client *client;
    char egress[MAX_EGRESS_NAME + 1];
    sm_egress_start start;
    uint64_t from_offset;
    grpc_completion_queue *cq;
    grpc_call *call;
    int t_start, t_recv, t_status; /* tags: their addresses */
    int pending;
    bool recv_inflight, recv_done, status_done;
    grpc_byte_buffer *send_bb, *recv_bb;
    grpc_metadata_array md_init, md_trail;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
    Statemesh__V1__SubscribeResponse *resp; /* the message being handed out */
    size_t next;                            /* its next record */
    bool failed;
    sm_error failure;
};

static bool valid_egress(const char *s)
{
    size_t n = 0;
    if (!s) return false;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= MAX_EGRESS_NAME) return false;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return n > 0;
}

static void post_recv(sm_subscription *sub)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &sub->recv_bb;
    if (grpc_call_start_batch(sub->call, &op, 1, &sub->t_recv, NULL) != GRPC_CALL_OK) {
        sub->recv_done = true;
        if (!sub->failed) {
            sub->failed = true;
            sm__set_err(&sub->failure, GRPC_STATUS_INTERNAL, SM_ERPC,
                        "cannot post a receive on the subscription");
        }
        return;
    }
    sub->recv_inflight = true;
    sub->pending++;
}

/* The final status, as a clear error (or nothing for OK). */
static void on_status(sm_subscription *sub)
{
    char *d;
    const char *det;
    sm_error *e = &sub->failure;

    sub->status_done = true;
    if (sub->status == GRPC_STATUS_OK || sub->failed) return;
    sub->failed = true;
    d = grpc_slice_to_c_string(sub->details);
    det = d && *d ? d : sm_status_code_name(sub->status);
    switch (sub->status) {
    case GRPC_STATUS_NOT_FOUND:
        sm__set_err(e, sub->status, SM_ERPC,
                    "no egress named '%s' (egresses are declared in the runtime's config; "
                    "runtime: %.700s)",
                    sub->egress, det);
        break;
    case GRPC_STATUS_OUT_OF_RANGE:
        sm__set_err(e, sub->status, SM_ERPC,
                    "egress '%s': offset %llu is no longer retained (trimmed by retention); start "
                    "from the earliest retained record instead (runtime: %.600s)",
                    sub->egress, (unsigned long long)sub->from_offset, det);
        break;
    case GRPC_STATUS_UNAVAILABLE:
        sm__set_err(e, sub->status, SM_ERPC,
                    "runtime not reachable at %.200s or shutting down: %.700s",
                    sub->client->target, det);
        break;
    case GRPC_STATUS_UNIMPLEMENTED:
        sm__set_err(e, sub->status, SM_ERPC,
                    "the runtime at %.200s does not serve Subscribe (older version?)",
                    sub->client->target);
        break;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        sm__set_err(e, sub->status, SM_ERPC, "subscription to egress '%s' timed out: %.700s",
                    sub->egress, det);
        break;
    default:
        sm__set_err(e, sub->status, SM_ERPC, "subscription to egress '%s': %.800s", sub->egress,
                    det);
    }
    gpr_free(d);
}

static void on_recv(sm_subscription *sub, bool ok)
{
    grpc_byte_buffer_reader r;
    grpc_slice all;

    sub->recv_inflight = false;
    if (!ok || !sub->recv_bb) {
        sub->recv_done = true;
        return;
    }
    if (!grpc_byte_buffer_reader_init(&r, sub->recv_bb)) {
        all = grpc_empty_slice();
    } else {
        all = grpc_byte_buffer_reader_readall(&r);
        grpc_byte_buffer_reader_destroy(&r);
    }
    grpc_byte_buffer_destroy(sub->recv_bb);
    sub->recv_bb = NULL;
    sub->resp = statemesh__v1__subscribe_response__unpack(NULL, GRPC_SLICE_LENGTH(all),
                                                          GRPC_SLICE_START_PTR(all));
    grpc_slice_unref(all);
    sub->next = 0;
    if (!sub->resp && !sub->failed) {
        sub->failed = true;
        sm__set_err(&sub->failure, GRPC_STATUS_INTERNAL, SM_ERPC,
                    "malformed records from the runtime on egress '%s'", sub->egress);
        grpc_call_cancel(sub->call, NULL);
    }
}

static int wait_event(sm_subscription *sub, gpr_timespec deadline)
{
    grpc_event ev = grpc_completion_queue_next(sub->cq, deadline, NULL);
    if (ev.type != GRPC_OP_COMPLETE) return 0;
    sub->pending--;
    if (ev.tag == &sub->t_recv) on_recv(sub, ev.success);
    else if (ev.tag == &sub->t_status) on_status(sub);
    else if (ev.tag == &sub->t_start) {
        grpc_byte_buffer_destroy(sub->send_bb);
        sub->send_bb = NULL;
    }
    return 1;
}

int sm_subscription_open(sm_client *c, const sm_subscribe_options *opts, sm_subscription **out,
                         sm_error *err)
{
    Statemesh__V1__SubscribeRequest req = STATEMESH__V1__SUBSCRIBE_REQUEST__INIT;
    sm_subscription *sub;
    grpc_slice slice;
    grpc_op ops[4];
    gpr_timespec deadline;

    if (!out) return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "no output");
    *out = NULL;
    if (!c || !opts) return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "no client or options");
    if (!valid_egress(opts->egress))
        return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL,
                           "egress name '%.128s' is not [A-Za-z0-9_.-]{1,128}",
                           opts->egress ? opts->egress : "(null)");
    if (opts->start != SM_EGRESS_FROM_OFFSET && opts->start != SM_EGRESS_EARLIEST &&
        opts->start != SM_EGRESS_LATEST)
        return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "unknown start position %d",
                           (int)opts->start);
    if (!(sub = calloc(1, sizeof *sub)))
        return sm__set_err(err, GRPC_STATUS_RESOURCE_EXHAUSTED, SM_ENOMEM, "out of memory");
    sub->client = c;
    strcpy(sub->egress, opts->egress);
    sub->start = opts->start;
    sub->from_offset = opts->from_offset;
    sub->details = grpc_empty_slice();
    grpc_metadata_array_init(&sub->md_init);
    grpc_metadata_array_init(&sub->md_trail);

    req.egress = sub->egress;
    req.start = (Statemesh__V1__SubscribeRequest__Start)opts->start;
    req.from_offset = opts->start == SM_EGRESS_FROM_OFFSET ? opts->from_offset : 0;
    req.follow = opts->follow;
    slice = grpc_slice_malloc(statemesh__v1__subscribe_request__get_packed_size(&req));
    statemesh__v1__subscribe_request__pack(&req, GRPC_SLICE_START_PTR(slice));
    sub->send_bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);

    deadline = opts->timeout_ms > 0
                   ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                  gpr_time_from_millis(opts->timeout_ms, GPR_TIMESPAN))
                   : gpr_inf_future(GPR_CLOCK_REALTIME);
    sub->cq = grpc_completion_queue_create_for_next(NULL);
    sub->call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, sub->cq,
                                         grpc_slice_from_static_string("/statemesh.v1.Ingress/Subscribe"),
                                         NULL, deadline, NULL);
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = sub->send_bb;
    sm__auth_md(c, &ops[0]);
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &sub->md_init;
    if (grpc_call_start_batch(sub->call, ops, 4, &sub->t_start, NULL) != GRPC_CALL_OK) goto fail;
    sub->pending++;
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[0].data.recv_status_on_client.trailing_metadata = &sub->md_trail;
    ops[0].data.recv_status_on_client.status = &sub->status;
    ops[0].data.recv_status_on_client.status_details = &sub->details;
    ops[0].data.recv_status_on_client.error_string = &sub->error_string;
    if (grpc_call_start_batch(sub->call, ops, 1, &sub->t_status, NULL) != GRPC_CALL_OK) goto fail;
    sub->pending++;
    post_recv(sub);
    if (sub->failed) goto fail;
    *out = sub;
    return SM_OK;
fail:
    sm_subscription_close(&sub);
    return sm__set_err(err, GRPC_STATUS_INTERNAL, SM_ERPC, "cannot start the Subscribe call");
}

int sm_subscription_next(sm_subscription *sub, int wait_ms, sm_egress_record *rec, sm_error *err)
{
    gpr_timespec deadline =
        wait_ms < 0 ? gpr_inf_future(GPR_CLOCK_MONOTONIC)
                    : gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                   gpr_time_from_millis(wait_ms, GPR_TIMESPAN));

    if (!sub || !rec) return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "no subscription or output");
    for (;;) {
        if (sub->failed) {
            if (err) *err = sub->failure;
            return SM_ERPC;
        }
        if (sub->resp && sub->next < sub->resp->n_records) {
            const Statemesh__V1__EgressEntry *e = sub->resp->records[sub->next++];
            rec->offset = e->offset;
            rec->timestamp_ms = e->timestamp_ms;
            rec->source_type = e->source && e->source->type ? e->source->type : "";
            rec->source_id = e->source && e->source->id ? e->source->id : "";
            rec->node = e->node ? e->node : "";
            if (e->value) {
                rec->value.typename = e->value->typename_ ? e->value->typename_ : "";
                rec->value.data = e->value->value.data;
                rec->value.len = e->value->value.len;
            } else {
                rec->value.typename = "";
                rec->value.data = NULL;
                rec->value.len = 0;
            }
            sub->from_offset = e->offset + 1; /* for the OUT_OF_RANGE message of a resume */
            return SM_OK;
        }
        if (sub->resp) {
            statemesh__v1__subscribe_response__free_unpacked(sub->resp, NULL);
            sub->resp = NULL;
        }
        if (!sub->recv_inflight && !sub->recv_done) post_recv(sub);
        if (sub->recv_done && sub->status_done) {
            if (sub->failed) continue;
            if (err) {
                err->code = 0;
                err->message[0] = '\0';
            }
            return SM_ABSENT;
        }
        if (!sub->pending || !wait_event(sub, deadline)) {
            if (!sub->pending) { /* cannot happen: recv or status is always in flight here */
                sub->failed = true;
                sm__set_err(&sub->failure, GRPC_STATUS_INTERNAL, SM_ERPC, "subscription stalled");
                continue;
            }
            if (err) {
                err->code = 0;
                err->message[0] = '\0';
            }
            return SM_AGAIN;
        }
    }
}

void sm_subscription_close(sm_subscription **psub)
{
    sm_subscription *sub;
    if (!psub || !*psub) return;
    sub = *psub;
    if (sub->call) {
        if (!(sub->status_done && sub->recv_done)) grpc_call_cancel(sub->call, NULL);
        while (sub->pending && wait_event(sub, gpr_inf_future(GPR_CLOCK_MONOTONIC))) {
        }
        grpc_call_unref(sub->call);
    }
    if (sub->cq) {
        grpc_completion_queue_shutdown(sub->cq);
        while (grpc_completion_queue_next(sub->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
               GRPC_QUEUE_SHUTDOWN) {
        }
        grpc_completion_queue_destroy(sub->cq);
    }
    if (sub->resp) statemesh__v1__subscribe_response__free_unpacked(sub->resp, NULL);
    if (sub->send_bb) grpc_byte_buffer_destroy(sub->send_bb);
    if (sub->recv_bb) grpc_byte_buffer_destroy(sub->recv_bb);
    grpc_metadata_array_destroy(&sub->md_init);
    grpc_metadata_array_destroy(&sub->md_trail);
    grpc_slice_unref(sub->details);
    gpr_free((void *)sub->error_string);
    free(sub);
    *psub = NULL;
}

int sm_client_subscribe(sm_client *c, const sm_subscribe_options *opts, sm_egress_fn fn,
                        void *udata, sm_error *err)
{
    sm_subscription *sub;
    sm_egress_record rec;
    int rc;

    if (!fn) return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "no callback");
    if ((rc = sm_subscription_open(c, opts, &sub, err)) != SM_OK) return rc;
    while ((rc = sm_subscription_next(sub, -1, &rec, err)) == SM_OK)
        if (fn(udata, &rec) != 0) break;
    sm_subscription_close(&sub);
    return rc == SM_ABSENT ? SM_OK : rc;
}
