/*
 * client — blocking ingress/admin client (statemesh/client.h): the client
 * object and the unary RPCs. The streams are in send_stream.c and
 * subscribe.c.
 *
 * One channel and one pluck completion queue per client. Each RPC is a
 * single batch of the six unary client operations; the caller's thread
 * plucks its completion. The call's deadline bounds the wait, so pluck
 * itself waits forever. Teardown order: every call is unref'd before it
 * returns, then channel, then CQ shutdown + drain, then grpc_shutdown.
 */
#include "client_internal.h"
#include "tls_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "statemesh/v1/admin.pb-c.h"
#include "statemesh/v1/ingress.pb-c.h"

#define MAX_RECV_BYTES (64 << 20)

static const char *const code_names[] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED"};

const char *sm_status_code_name(int code)
{
    if (code < 0 || code > 16) return "UNKNOWN_STATUS";
    return code_names[code];
}

int sm__set_err(sm_error *err, int code, int rc, const char *fmt, ...)
{
    va_list ap;
    if (err) {
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* tls NULL: plaintext. */
static sm_client *client_create(const char *target, const struct sm__tls_pems *tls)
{
    sm_client *c = calloc(1, sizeof *c);
    grpc_arg args[2];
    grpc_channel_args ch_args = {2, args};
    grpc_channel_credentials *creds;

    if (!c) return NULL;
    c->target = strdup(target && *target ? target : SM_DEFAULT_INGRESS);
    if (!c->target) {
        free(c);
        return NULL;
    }
    grpc_init();
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = MAX_RECV_BYTES;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[1].value.integer = -1;
    creds = tls ? sm__tls_channel_credentials(tls) : grpc_insecure_credentials_create();
    c->ch = grpc_channel_create(c->target, creds, &ch_args);
    grpc_channel_credentials_release(creds);
    c->cq = grpc_completion_queue_create_for_pluck(NULL);
    {
        const char *env = getenv("STATEMESH_TOKEN");
        if (env && *env && sm_client_set_token(c, env, NULL) != SM_OK) {
            /* an unusable $STATEMESH_TOKEN: no token; the runtime says UNAUTHENTICATED */
        }
    }
    return c;
}

static void auth_clear(sm_client *c)
{
    if (!c->has_auth) return;
    grpc_slice_unref(c->auth.key);
    grpc_slice_unref(c->auth.value);
    c->has_auth = 0;
}

int sm_client_set_token(sm_client *c, const char *token, sm_error *err)
{
    static const char scheme[] = "Bearer ";
    size_t n;
    char *v;

    if (!c) return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "client is NULL");
    if (!token || !*token) {
        auth_clear(c);
        return SM_OK;
    }
    n = strlen(token);
    if (n > SM_MAX_TOKEN_LEN)
        return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL,
                           "token is %zu bytes, over %d", n, SM_MAX_TOKEN_LEN);
    for (size_t i = 0; i < n; i++)
        if (token[i] <= ' ' || token[i] > '~')
            return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL,
                               "token must be printable ASCII without spaces");
    if (!(v = malloc(sizeof scheme + n)))
        return sm__set_err(err, GRPC_STATUS_RESOURCE_EXHAUSTED, SM_ENOMEM, "out of memory");
    memcpy(v, scheme, sizeof scheme - 1);
    memcpy(v + sizeof scheme - 1, token, n + 1);
    auth_clear(c);
    memset(&c->auth, 0, sizeof c->auth);
    c->auth.key = grpc_slice_from_static_string("authorization");
    c->auth.value = grpc_slice_from_copied_string(v);
    c->has_auth = 1;
    memset(v, 0, sizeof scheme + n);
    free(v);
    return SM_OK;
}

void sm__auth_md(sm_client *c, grpc_op *op)
{
    if (!c->has_auth) return;
    op->data.send_initial_metadata.count = 1;
    op->data.send_initial_metadata.metadata = &c->auth;
}

sm_client *sm_client_create(const char *target)
{
    return client_create(target, NULL);
}

sm_client *sm_client_create_tls(const char *target, const sm_tls_options *tls, sm_error *err)
{
    struct sm__tls_pems p;
    char why[600];
    sm_client *c;

    if (!tls) return client_create(target, NULL);
    if (sm__tls_read(tls, 0, &p, why, sizeof why) != 0) {
        sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "%s", why);
        return NULL;
    }
    c = client_create(target, &p);
    sm__tls_pems_cleanup(&p);
    if (!c) sm__set_err(err, GRPC_STATUS_RESOURCE_EXHAUSTED, SM_ENOMEM, "out of memory");
    return c;
}

const char *sm_client_target(const sm_client *c)
{
    return c ? c->target : NULL;
}

void sm_client_destroy(sm_client **pc)
{
    sm_client *c;
    if (!pc || !*pc) return;
    c = *pc;
    grpc_channel_destroy(c->ch);
    grpc_completion_queue_shutdown(c->cq);
    while (grpc_completion_queue_pluck(c->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
               .type != GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(c->cq);
    auth_clear(c);
    grpc_shutdown_blocking(); /* joins gRPC threads: clean exit under valgrind */
    free(c->target);
    free(c);
    *pc = NULL;
}

/* Makes one unary RPC. On SM_OK, *resp is the unpacked response (caller
 * frees with protobuf_c_message_free_unpacked). */
static int unary_slice(sm_client *c, const char *method, grpc_slice s,
                       const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                       int timeout_ms, sm_error *err);

static int unary(sm_client *c, const char *method, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                 int timeout_ms, sm_error *err)
{
    grpc_slice s = grpc_slice_malloc(protobuf_c_message_get_packed_size(req));
    protobuf_c_message_pack(req, GRPC_SLICE_START_PTR(s));
    return unary_slice(c, method, s, resp_desc, resp, timeout_ms, err);
}

/* unary() with the request already encoded in s (consumed). */
static int unary_slice(sm_client *c, const char *method, grpc_slice s,
                       const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                       int timeout_ms, sm_error *err)
{
    grpc_metadata_array md_init, md_trail;
    grpc_byte_buffer *send_bb, *recv_bb = NULL;
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    const char *error_string = NULL;
    grpc_op ops[6];
    grpc_call *call;
    grpc_event ev;
    gpr_timespec deadline;
    int rc = SM_OK;
    int tag_mem;
    void *tag = &tag_mem;

    *resp = NULL;
    send_bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);

    deadline = timeout_ms > 0 ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                             gpr_time_from_millis(timeout_ms, GPR_TIMESPAN))
                              : gpr_inf_future(GPR_CLOCK_REALTIME);
    call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq,
                                    grpc_slice_from_static_string(method), NULL, deadline, NULL);
    grpc_metadata_array_init(&md_init);
    grpc_metadata_array_init(&md_trail);
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send_bb;
    sm__auth_md(c, &ops[0]);
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &md_init;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv_bb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &md_trail;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    ops[5].data.recv_status_on_client.error_string = &error_string;

    if (grpc_call_start_batch(call, ops, 6, tag, NULL) != GRPC_CALL_OK) {
        rc = sm__set_err(err, GRPC_STATUS_INTERNAL, SM_ERPC, "cannot start the call");
        goto out;
    }
    ev = grpc_completion_queue_pluck(c->cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type != GRPC_OP_COMPLETE) {
        rc = sm__set_err(err, GRPC_STATUS_INTERNAL, SM_ERPC, "completion queue failed");
        goto out;
    }
    if (status != GRPC_STATUS_OK) {
        rc = sm__status_err(err, status, details, NULL);
        goto out;
    }
    if (!recv_bb) {
        rc = sm__set_err(err, GRPC_STATUS_INTERNAL, SM_ERPC, "empty response from %s", c->target);
        goto out;
    } else {
        grpc_byte_buffer_reader r;
        grpc_slice all;
        if (!grpc_byte_buffer_reader_init(&r, recv_bb)) {
            rc = sm__set_err(err, GRPC_STATUS_INTERNAL, SM_ERPC, "cannot decompress response");
            goto out;
        }
        all = grpc_byte_buffer_reader_readall(&r);
        grpc_byte_buffer_reader_destroy(&r);
        *resp = protobuf_c_message_unpack(resp_desc, NULL, GRPC_SLICE_LENGTH(all),
                                          GRPC_SLICE_START_PTR(all));
        grpc_slice_unref(all);
        if (!*resp) rc = sm__set_err(err, GRPC_STATUS_INTERNAL, SM_ERPC, "malformed response");
    }
    if (rc == SM_OK && err) {
        err->code = 0;
        err->message[0] = '\0';
    }
out:
    grpc_byte_buffer_destroy(send_bb);
    if (recv_bb) grpc_byte_buffer_destroy(recv_bb);
    grpc_metadata_array_destroy(&md_init);
    grpc_metadata_array_destroy(&md_trail);
    grpc_slice_unref(details);
    gpr_free((void *)error_string);
    grpc_call_unref(call);
    return rc;
}

int sm__status_err(sm_error *err, grpc_status_code status, grpc_slice details, const char *prefix)
{
    char *d = grpc_slice_to_c_string(details);
    sm__set_err(err, (int)status, SM_ERPC, "%s%s", prefix ? prefix : "",
                d && *d ? d : sm_status_code_name(status));
    gpr_free(d);
    return SM_ERPC;
}

int sm__check_key(const char *key, sm_error *err)
{
    size_t n = key ? strlen(key) : 0;
    if (n > SM_MAX_IDEMPOTENCY_KEY_LEN)
        return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL,
                           "idempotency key is %zu bytes, at most %d allowed", n,
                           SM_MAX_IDEMPOTENCY_KEY_LEN);
    if (n && !sm_utf8_valid(key, n))
        return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL,
                           "idempotency key is not valid UTF-8");
    return SM_OK;
}

int sm__check_delay(uint64_t delay_ms, sm_error *err)
{
    if (delay_ms > SM_MAX_DELAY_MS)
        return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL,
                           "delay of %llu ms is above the maximum of %llu ms (365 days)",
                           (unsigned long long)delay_ms, (unsigned long long)SM_MAX_DELAY_MS);
    return SM_OK;
}

int sm__check_target(const char *type, const char *id, const sm_value *v, sm_error *err)
{
    if (!type || !*type)
        return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "function type is empty");
    if (!id || !*id)
        return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "id is empty");
    if (v && (!v->typename || !*v->typename || (!v->data && v->len)))
        return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL,
                       "value has no typename or no data");
    return SM_OK;
}

/* Fills addr/tv as views of the arguments (nothing is copied). */
static void fill_request(Statemesh__V1__Address *addr, Statemesh__V1__TypedValue *tv,
                         const char *type, const char *id, const sm_value *v)
{
    statemesh__v1__address__init(addr);
    statemesh__v1__typed_value__init(tv);
    addr->type = (char *)type;
    addr->id = (char *)id;
    tv->typename_ = (char *)v->typename;
    tv->value.data = (uint8_t *)v->data;
    tv->value.len = v->len;
}

int sm_client_send(sm_client *c, const char *type, const char *id, const sm_value *v,
                   int timeout_ms, sm_error *err)
{
    return sm_client_send_opts(c, type, id, v, NULL, timeout_ms, err);
}

int sm_client_send_opts(sm_client *c, const char *type, const char *id, const sm_value *v,
                        const sm_send_options *opts, int timeout_ms, sm_error *err)
{
    Statemesh__V1__SendRequest req = STATEMESH__V1__SEND_REQUEST__INIT;
    Statemesh__V1__Address addr;
    Statemesh__V1__TypedValue tv;
    ProtobufCMessage *resp;
    int rc;

    if (!c || !v) return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "no client or value");
    if ((rc = sm__check_target(type, id, v, err))) return rc;
    if (opts && ((rc = sm__check_key(opts->idempotency_key, err)) ||
                 (rc = sm__check_delay(opts->delay_ms, err))))
        return rc;
    fill_request(&addr, &tv, type, id, v);
    req.target = &addr;
    req.argument = &tv;
    if (opts && opts->idempotency_key) req.idempotency_key = (char *)opts->idempotency_key;
    if (opts) req.delay_ms = opts->delay_ms;
    rc = unary(c, "/statemesh.v1.Ingress/Send", &req.base, &statemesh__v1__send_response__descriptor,
               &resp, timeout_ms, err);
    if (resp) protobuf_c_message_free_unpacked(resp, NULL);
    return rc;
}

int sm_client_call(sm_client *c, const char *type, const char *id, const sm_value *v,
                   int timeout_ms, sm_value_buf *reply, sm_error *err)
{
    return sm_client_call_opts(c, type, id, v, NULL, timeout_ms, reply, err);
}

int sm_client_call_opts(sm_client *c, const char *type, const char *id, const sm_value *v,
                        const sm_call_options *opts, int timeout_ms, sm_value_buf *reply,
                        sm_error *err)
{
    Statemesh__V1__CallRequest req = STATEMESH__V1__CALL_REQUEST__INIT;
    Statemesh__V1__Address addr;
    Statemesh__V1__TypedValue tv;
    Statemesh__V1__CallResponse *resp;
    int rc;

    if (!c || !v || !reply)
        return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "no client, value or reply");
    if ((rc = sm__check_target(type, id, v, err))) return rc;
    if (opts && (rc = sm__check_key(opts->idempotency_key, err))) return rc;
    fill_request(&addr, &tv, type, id, v);
    req.target = &addr;
    req.argument = &tv;
    if (opts && opts->idempotency_key) req.idempotency_key = (char *)opts->idempotency_key;
    rc = unary(c, "/statemesh.v1.Ingress/Call", &req.base, &statemesh__v1__call_response__descriptor,
               (ProtobufCMessage **)&resp, timeout_ms, err);
    if (rc != SM_OK) return rc;
    if (!resp->reply) {
        sm_value empty = {"", NULL, 0};
        rc = sm_value_buf_set(reply, &empty);
    } else {
        sm_value rv = {resp->reply->typename_, resp->reply->value.data, resp->reply->value.len};
        rc = sm_value_buf_set(reply, &rv);
    }
    if (rc != SM_OK) sm__set_err(err, GRPC_STATUS_RESOURCE_EXHAUSTED, rc, "out of memory");
    statemesh__v1__call_response__free_unpacked(resp, NULL);
    return rc;
}

/* ---- Admin answers: a struct with items over the unpacked response ---- */

/* Zeroes *out (size bytes) before an Admin call fills it. Returns SM_OK,
 * or SM_EINVAL without a client or output. */
static int answer_begin(sm_client *c, void *out, size_t size, sm_error *err)
{
    if (!c || !out)
        return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "no client or output");
    memset(out, 0, size);
    return SM_OK;
}

/* The items of an answer: n (at least one) zeroed items of size bytes,
 * owned by the caller. NULL when out of memory, after freeing resp. */
static void *answer_items(ProtobufCMessage *resp, size_t n, size_t size)
{
    void *items = calloc(n ? n : 1, size);
    if (!items) protobuf_c_message_free_unpacked(resp, NULL);
    return items;
}

static int no_memory(sm_error *err)
{
    return sm__set_err(err, GRPC_STATUS_RESOURCE_EXHAUSTED, SM_ENOMEM, "out of memory");
}

/* Frees an answer's unpacked response (msg, may be NULL) and items. */
static void answer_free(void *msg, void *items)
{
    if (msg) protobuf_c_message_free_unpacked(msg, NULL);
    free(items);
}

int sm_client_get_state(sm_client *c, const char *type, const char *id, const char *name,
                        int timeout_ms, sm_state_list *out, sm_error *err)
{
    Statemesh__V1__GetStateRequest req = STATEMESH__V1__GET_STATE_REQUEST__INIT;
    Statemesh__V1__Address addr = STATEMESH__V1__ADDRESS__INIT;
    Statemesh__V1__GetStateResponse *resp;
    int rc;

    if ((rc = answer_begin(c, out, sizeof *out, err))) return rc;
    if ((rc = sm__check_target(type, id, NULL, err))) return rc;
    addr.type = (char *)type;
    addr.id = (char *)id;
    req.address = &addr;
    if (name) req.name = (char *)name;
    rc = unary(c, "/statemesh.v1.Admin/GetState", &req.base,
               &statemesh__v1__get_state_response__descriptor, (ProtobufCMessage **)&resp,
               timeout_ms, err);
    if (rc != SM_OK) return rc;
    if (!(out->items = answer_items(&resp->base, resp->n_values, sizeof *out->items)))
        return no_memory(err);
    for (size_t i = 0; i < resp->n_values; i++) {
        const Statemesh__V1__StateValue *sv = resp->values[i];
        sm_named_value *nv = &out->items[i];
        nv->name = sv->name;
        if (sv->value) {
            nv->value.typename = sv->value->typename_;
            nv->value.data = sv->value->value.data;
            nv->value.len = sv->value->value.len;
        }
    }
    out->n = resp->n_values;
    out->queued_messages = resp->queued_messages;
    out->in_flight = resp->in_flight;
    out->msg_ = resp;
    return SM_OK;
}

void sm_state_list_cleanup(sm_state_list *l)
{
    if (!l) return;
    answer_free(l->msg_, l->items);
    memset(l, 0, sizeof *l);
}

int sm_client_stats(sm_client *c, int timeout_ms, sm_stats *out, sm_error *err)
{
    Statemesh__V1__StatsRequest req = STATEMESH__V1__STATS_REQUEST__INIT;
    Statemesh__V1__StatsResponse *resp;
    int rc;

    if ((rc = answer_begin(c, out, sizeof *out, err))) return rc;
    rc = unary(c, "/statemesh.v1.Admin/Stats", &req.base, &statemesh__v1__stats_response__descriptor,
               (ProtobufCMessage **)&resp, timeout_ms, err);
    if (rc != SM_OK) return rc;
    if (!(out->items = answer_items(&resp->base, resp->n_stats, sizeof *out->items)))
        return no_memory(err);
    for (size_t i = 0; i < resp->n_stats; i++) {
        out->items[i].name = resp->stats[i]->name;
        out->items[i].value = resp->stats[i]->value;
    }
    out->n = resp->n_stats;
    out->msg_ = resp;
    return SM_OK;
}

void sm_stats_cleanup(sm_stats *s)
{
    if (!s) return;
    answer_free(s->msg_, s->items);
    memset(s, 0, sizeof *s);
}

int sm_client_get_topology(sm_client *c, int timeout_ms, sm_topology *out, sm_error *err)
{
    Statemesh__V1__GetTopologyRequest req = STATEMESH__V1__GET_TOPOLOGY_REQUEST__INIT;
    Statemesh__V1__GetTopologyResponse *resp;
    int rc;

    if ((rc = answer_begin(c, out, sizeof *out, err))) return rc;
    rc = unary(c, "/statemesh.v1.Admin/GetTopology", &req.base,
               &statemesh__v1__get_topology_response__descriptor, (ProtobufCMessage **)&resp,
               timeout_ms, err);
    if (rc != SM_OK) return rc;
    if (!(out->nodes = answer_items(&resp->base, resp->n_nodes, sizeof *out->nodes)))
        return no_memory(err);
    if (!(out->ranges = calloc(resp->n_ranges ? resp->n_ranges : 1, sizeof *out->ranges))) {
        answer_free(resp, out->nodes);
        out->nodes = NULL;
        return no_memory(err);
    }
    out->cluster = resp->cluster;
    out->cluster_name = resp->cluster_name;
    out->node_id = resp->node_id;
    out->controller = resp->controller;
    out->state = resp->state;
    out->fencing_reason = resp->fencing_reason;
    out->revision = resp->revision;
    out->key_groups = resp->key_groups;
    for (size_t i = 0; i < resp->n_nodes; i++) {
        out->nodes[i].id = resp->nodes[i]->id;
        out->nodes[i].advertise = resp->nodes[i]->advertise;
        out->nodes[i].alive = resp->nodes[i]->alive;
        out->nodes[i].lease_ttl_left_ms = resp->nodes[i]->lease_ttl_left_ms;
        out->nodes[i].outbox_frames = resp->nodes[i]->outbox_frames;
    }
    for (size_t i = 0; i < resp->n_ranges; i++) {
        out->ranges[i].first = resp->ranges[i]->first;
        out->ranges[i].last = resp->ranges[i]->last;
        out->ranges[i].owner = resp->ranges[i]->owner;
        out->ranges[i].epoch = resp->ranges[i]->epoch;
    }
    out->n_nodes = resp->n_nodes;
    out->n_ranges = resp->n_ranges;
    out->msg_ = resp;
    return SM_OK;
}

int sm_client_cluster_savepoint(sm_client *c, const char *path, uint32_t ranges,
                                uint32_t pause_timeout_ms, int timeout_ms,
                                sm_cluster_savepoint *out, sm_error *err)
{
    Statemesh__V1__ClusterSavepointRequest req = STATEMESH__V1__CLUSTER_SAVEPOINT_REQUEST__INIT;
    Statemesh__V1__ClusterSavepointResponse *resp;
    int rc;

    if ((rc = answer_begin(c, out, sizeof *out, err))) return rc;
    req.path = (char *)path;
    req.ranges = ranges;
    req.pause_timeout_ms = pause_timeout_ms;
    rc = unary(c, "/statemesh.v1.Admin/ClusterSavepoint", &req.base,
               &statemesh__v1__cluster_savepoint_response__descriptor,
               (ProtobufCMessage **)&resp, timeout_ms, err);
    if (rc != SM_OK) return rc;
    if (!(out->nodes = answer_items(&resp->base, resp->n_nodes, sizeof *out->nodes)))
        return no_memory(err);
    out->path = resp->path;
    out->id = resp->id;
    out->pause_ms = resp->pause_ms;
    out->elapsed_ms = resp->elapsed_ms;
    out->records = resp->records;
    out->bytes = resp->bytes;
    for (size_t i = 0; i < resp->n_nodes; i++) {
        out->nodes[i].node_id = resp->nodes[i]->node_id;
        out->nodes[i].key_groups = resp->nodes[i]->key_groups;
        out->nodes[i].records = resp->nodes[i]->records;
        out->nodes[i].bytes = resp->nodes[i]->bytes;
        out->nodes[i].write_ms = resp->nodes[i]->write_ms;
    }
    out->n_nodes = resp->n_nodes;
    out->msg_ = resp;
    return SM_OK;
}

void sm_cluster_savepoint_cleanup(sm_cluster_savepoint *r)
{
    if (!r) return;
    answer_free(r->msg_, r->nodes);
    memset(r, 0, sizeof *r);
}

void sm_topology_cleanup(sm_topology *t)
{
    if (!t) return;
    free(t->ranges);
    answer_free(t->msg_, t->nodes);
    memset(t, 0, sizeof *t);
}

/* ---- dead letters ---- */

#define MAX_TYPE_LEN 256 /* as the runtime's ADDR_MAX_TYPE */

static bool type_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '.' || ch == '-';
}

/* type NULL or "" = any; else "namespace/name", both [A-Za-z0-9_.-]+. The
 * same rule as the function registry's (functions.c), with a message. */
static int check_type_filter(const char *type, sm_error *err)
{
    const char *slash;
    size_t n;

    if (!type || !*type) return SM_OK;
    n = strlen(type);
    slash = strchr(type, '/');
    if (n > MAX_TYPE_LEN || !slash || slash == type || !slash[1]) goto bad;
    for (const char *p = type; *p; p++)
        if (p != slash && !type_char(*p)) goto bad;
    return SM_OK;
bad:
    return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL,
                       "function type '%.256s' is not namespace/name ([A-Za-z0-9_.-]+ each, "
                       "at most %d bytes)", type, MAX_TYPE_LEN);
}

int sm_client_list_deadletters(sm_client *c, const char *type, uint64_t after_id, uint32_t limit,
                               int timeout_ms, sm_deadletters *out, sm_error *err)
{
    Statemesh__V1__ListDeadLettersRequest req = STATEMESH__V1__LIST_DEAD_LETTERS_REQUEST__INIT;
    Statemesh__V1__ListDeadLettersResponse *resp;
    int rc;

    if ((rc = answer_begin(c, out, sizeof *out, err))) return rc;
    if ((rc = check_type_filter(type, err))) return rc;
    if (type) req.type = (char *)type;
    req.after_id = after_id;
    req.limit = limit;
    rc = unary(c, "/statemesh.v1.Admin/ListDeadLetters", &req.base,
               &statemesh__v1__list_dead_letters_response__descriptor, (ProtobufCMessage **)&resp,
               timeout_ms, err);
    if (rc != SM_OK) return rc;
    if (!(out->items = answer_items(&resp->base, resp->n_dead_letters, sizeof *out->items)))
        return no_memory(err);
    for (size_t i = 0; i < resp->n_dead_letters; i++) {
        const Statemesh__V1__DeadLetter *d = resp->dead_letters[i];
        sm_deadletter *o = &out->items[i];
        o->id = d->id;
        o->target_type = d->target ? d->target->type : "";
        o->target_id = d->target ? d->target->id : "";
        if (d->caller) {
            o->caller_type = d->caller->type;
            o->caller_id = d->caller->id;
        }
        if (d->argument) {
            o->argument.typename = d->argument->typename_;
            o->argument.data = d->argument->value.data;
            o->argument.len = d->argument->value.len;
        }
        o->error = d->error;
        o->attempts = d->attempts;
        o->failed_at_ms = d->failed_at_ms;
    }
    out->n = resp->n_dead_letters;
    out->total = resp->total;
    out->msg_ = resp;
    return SM_OK;
}

void sm_deadletters_cleanup(sm_deadletters *l)
{
    if (!l) return;
    answer_free(l->msg_, l->items);
    memset(l, 0, sizeof *l);
}

/* Replay or drop (method) the selected dead letters. */
static int deadletter_action(sm_client *c, const char *method, const uint64_t *ids, size_t n,
                             bool all, const char *type, int timeout_ms, uint64_t *count,
                             sm_error *err)
{
    Statemesh__V1__DeadLetterSelector sel = STATEMESH__V1__DEAD_LETTER_SELECTOR__INIT;
    Statemesh__V1__DeadLetterActionResponse *resp;
    int rc;

    if (count) *count = 0;
    if (!c) return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "no client");
    if (n && !ids)
        return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "%zu ids but no id array", n);
    if (!n && !all)
        return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL,
                           "no dead letters selected: name their ids, or select all");
    if (n && all)
        return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL,
                           "name dead letter ids or select all, not both");
    if ((rc = check_type_filter(type, err))) return rc;
    sel.ids = (uint64_t *)ids;
    sel.n_ids = n;
    sel.all = all;
    if (type) sel.type = (char *)type;
    rc = unary(c, method, &sel.base, &statemesh__v1__dead_letter_action_response__descriptor,
               (ProtobufCMessage **)&resp, timeout_ms, err);
    if (rc != SM_OK) return rc;
    if (count) *count = resp->count;
    statemesh__v1__dead_letter_action_response__free_unpacked(resp, NULL);
    return SM_OK;
}

int sm_client_replay_deadletters(sm_client *c, const uint64_t *ids, size_t n, bool all,
                                 const char *type, int timeout_ms, uint64_t *count, sm_error *err)
{
    return deadletter_action(c, "/statemesh.v1.Admin/ReplayDeadLetters", ids, n, all, type,
                             timeout_ms, count, err);
}

int sm_client_drop_deadletters(sm_client *c, const uint64_t *ids, size_t n, bool all,
                               const char *type, int timeout_ms, uint64_t *count, sm_error *err)
{
    return deadletter_action(c, "/statemesh.v1.Admin/DropDeadLetters", ids, n, all, type,
                             timeout_ms, count, err);
}

/* ---- failure handling of an address ---- */

const char *sm_phase_name(sm_phase p)
{
    static const char *const names[] = {"idle", "queued", "in_flight", "retrying", "paused"};
    return (unsigned)p < sizeof names / sizeof *names ? names[p] : "unknown";
}

static void status_from(sm_address_status *o, const Statemesh__V1__AddressStatus *st)
{
    o->type = st->address ? st->address->type : "";
    o->id = st->address ? st->address->id : "";
    o->phase = (sm_phase)st->phase;
    o->queued_messages = st->queued_messages;
    o->in_flight_messages = st->in_flight_messages;
    o->attempts = st->attempts;
    o->max_attempts = st->max_attempts;
    o->next_retry_at_ms = st->next_retry_at_ms;
    o->last_error = st->last_error;
    o->last_error_at_ms = st->last_error_at_ms;
    o->isolating = st->isolating;
    if (st->head) {
        o->has_head = true;
        o->head.typename = st->head->typename_;
        o->head.data = st->head->value.data;
        o->head.len = st->head->value.len;
    }
    if (st->head_caller) {
        o->head_caller_type = st->head_caller->type;
        o->head_caller_id = st->head_caller->id;
    }
}

static int check_address_args(sm_client *c, const char *type, const char *id, sm_error *err)
{
    int rc;
    if (!c) return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "no client");
    if (!type || !*type || !id || !*id)
        return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "type and id are required");
    if ((rc = check_type_filter(type, err))) return rc;
    return SM_OK;
}

int sm_client_inspect(sm_client *c, const char *type, const char *id, int timeout_ms,
                      sm_address_statuses *out, sm_error *err)
{
    Statemesh__V1__InspectRequest req = STATEMESH__V1__INSPECT_REQUEST__INIT;
    Statemesh__V1__Address a = STATEMESH__V1__ADDRESS__INIT;
    Statemesh__V1__InspectResponse *resp;
    int rc;

    if (!out) return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "no output");
    memset(out, 0, sizeof *out);
    if ((rc = check_address_args(c, type, id, err))) return rc;
    a.type = (char *)type;
    a.id = (char *)id;
    req.address = &a;
    rc = unary(c, "/statemesh.v1.Admin/Inspect", &req.base,
               &statemesh__v1__inspect_response__descriptor, (ProtobufCMessage **)&resp,
               timeout_ms, err);
    if (rc != SM_OK) return rc;
    if (!resp->status) {
        statemesh__v1__inspect_response__free_unpacked(resp, NULL);
        return sm__set_err(err, GRPC_STATUS_INTERNAL, SM_ERPC, "the runtime answered no status");
    }
    if (!(out->items = answer_items(&resp->base, 1, sizeof *out->items))) return no_memory(err);
    status_from(&out->items[0], resp->status);
    out->n = 1;
    out->msg_ = resp;
    return SM_OK;
}

int sm_client_list_stuck(sm_client *c, const char *type, uint32_t limit, int timeout_ms,
                         sm_address_statuses *out, sm_error *err)
{
    Statemesh__V1__ListStuckRequest req = STATEMESH__V1__LIST_STUCK_REQUEST__INIT;
    Statemesh__V1__ListStuckResponse *resp;
    int rc;

    if ((rc = answer_begin(c, out, sizeof *out, err))) return rc;
    if ((rc = check_type_filter(type, err))) return rc;
    if (type) req.type = (char *)type;
    req.limit = limit;
    rc = unary(c, "/statemesh.v1.Admin/ListStuck", &req.base,
               &statemesh__v1__list_stuck_response__descriptor, (ProtobufCMessage **)&resp,
               timeout_ms, err);
    if (rc != SM_OK) return rc;
    if (!(out->items = answer_items(&resp->base, resp->n_addresses, sizeof *out->items)))
        return no_memory(err);
    for (size_t i = 0; i < resp->n_addresses; i++) status_from(&out->items[i], resp->addresses[i]);
    out->n = resp->n_addresses;
    out->retrying = resp->retrying;
    out->paused = resp->paused;
    out->msg_ = resp;
    return SM_OK;
}

void sm_address_statuses_cleanup(sm_address_statuses *l)
{
    if (!l) return;
    answer_free(l->msg_, l->items);
    memset(l, 0, sizeof *l);
}

static int address_action(sm_client *c, const char *method, const ProtobufCMessageDescriptor *rd,
                          const char *type, const char *id, int timeout_ms,
                          ProtobufCMessage **resp, sm_error *err)
{
    Statemesh__V1__AddressRequest req = STATEMESH__V1__ADDRESS_REQUEST__INIT;
    Statemesh__V1__Address a = STATEMESH__V1__ADDRESS__INIT;
    int rc;
    if ((rc = check_address_args(c, type, id, err))) return rc;
    a.type = (char *)type;
    a.id = (char *)id;
    req.address = &a;
    return unary(c, method, &req.base, rd, resp, timeout_ms, err);
}

int sm_client_skip(sm_client *c, const char *type, const char *id, int timeout_ms,
                   uint64_t *dead_letter_id, sm_error *err)
{
    Statemesh__V1__SkipResponse *resp;
    int rc = address_action(c, "/statemesh.v1.Admin/Skip", &statemesh__v1__skip_response__descriptor,
                            type, id, timeout_ms, (ProtobufCMessage **)&resp, err);
    if (rc != SM_OK) return rc;
    if (dead_letter_id) *dead_letter_id = resp->dead_letter_id;
    statemesh__v1__skip_response__free_unpacked(resp, NULL);
    return SM_OK;
}

int sm_client_resume(sm_client *c, const char *type, const char *id, int timeout_ms, sm_error *err)
{
    Statemesh__V1__ResumeResponse *resp;
    int rc = address_action(c, "/statemesh.v1.Admin/Resume",
                            &statemesh__v1__resume_response__descriptor, type, id, timeout_ms,
                            (ProtobufCMessage **)&resp, err);
    if (rc != SM_OK) return rc;
    statemesh__v1__resume_response__free_unpacked(resp, NULL);
    return SM_OK;
}

/* ---- state administration ---- */

int sm_client_state_list(sm_client *c, const char *type, const char *prefix,
                         const char *after_id, uint32_t limit, int timeout_ms,
                         sm_state_ids *out, sm_error *err)
{
    Statemesh__V1__ListStateRequest req = STATEMESH__V1__LIST_STATE_REQUEST__INIT;
    Statemesh__V1__ListStateResponse *resp;
    int rc;

    if (!c || !out)
        return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "no client or output");
    memset(out, 0, sizeof *out);
    if (!type || !*type)
        return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "function type is empty");
    if ((rc = check_type_filter(type, err))) return rc;
    req.type = (char *)type;
    if (prefix) req.prefix = (char *)prefix;
    if (after_id) req.after_id = (char *)after_id;
    req.limit = limit;
    rc = unary(c, "/statemesh.v1.Admin/ListState", &req.base,
               &statemesh__v1__list_state_response__descriptor, (ProtobufCMessage **)&resp,
               timeout_ms, err);
    if (rc != SM_OK) return rc;
    out->ids = (const char **)resp->ids;
    out->n = resp->n_ids;
    out->more = resp->more;
    out->next_after_id = resp->next_after_id;
    out->msg_ = resp;
    return SM_OK;
}

void sm_state_ids_cleanup(sm_state_ids *l)
{
    if (!l) return;
    if (l->msg_) statemesh__v1__list_state_response__free_unpacked(l->msg_, NULL);
    memset(l, 0, sizeof *l);
}

int sm_client_state_set(sm_client *c, const char *type, const char *id, const char *name,
                        const sm_value *v, int timeout_ms, sm_error *err)
{
    Statemesh__V1__SetStateRequest req = STATEMESH__V1__SET_STATE_REQUEST__INIT;
    Statemesh__V1__Address a = STATEMESH__V1__ADDRESS__INIT;
    Statemesh__V1__TypedValue tv = STATEMESH__V1__TYPED_VALUE__INIT;
    ProtobufCMessage *resp;
    int rc;

    if ((rc = check_address_args(c, type, id, err))) return rc;
    if (!name || !*name)
        return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "state name is empty");
    if ((rc = sm__check_target(type, id, v, err))) return rc;
    if (!v) return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "no value");
    fill_request(&a, &tv, type, id, v);
    req.address = &a;
    req.name = (char *)name;
    req.value = &tv;
    rc = unary(c, "/statemesh.v1.Admin/SetState", &req.base,
               &statemesh__v1__set_state_response__descriptor, &resp, timeout_ms, err);
    if (resp) protobuf_c_message_free_unpacked(resp, NULL);
    return rc;
}

int sm_client_state_delete(sm_client *c, const char *type, const char *id, const char *name,
                           int timeout_ms, uint32_t *deleted, sm_error *err)
{
    Statemesh__V1__DeleteStateRequest req = STATEMESH__V1__DELETE_STATE_REQUEST__INIT;
    Statemesh__V1__Address a = STATEMESH__V1__ADDRESS__INIT;
    Statemesh__V1__DeleteStateResponse *resp;
    int rc;

    if ((rc = check_address_args(c, type, id, err))) return rc;
    a.type = (char *)type;
    a.id = (char *)id;
    req.address = &a;
    if (name) req.name = (char *)name;
    rc = unary(c, "/statemesh.v1.Admin/DeleteState", &req.base,
               &statemesh__v1__delete_state_response__descriptor, (ProtobufCMessage **)&resp,
               timeout_ms, err);
    if (rc != SM_OK) return rc;
    if (deleted) *deleted = resp->deleted;
    statemesh__v1__delete_state_response__free_unpacked(resp, NULL);
    return SM_OK;
}

/* ---- bootstrap ---- */

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    do {
        p[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return n;
}

int sm_client_bootstrap(sm_client *c, const void *const *entries, const size_t *lens, size_t n,
                        sm_bootstrap_mode mode, bool dry_run, int timeout_ms,
                        sm_bootstrap_results *out, sm_error *err)
{
    Statemesh__V1__BootstrapResponse *resp;
    size_t total = 4, pos = 0;
    grpc_slice s;
    uint8_t *p;
    int rc;

    memset(out, 0, sizeof *out);
    if (!c || (n && (!entries || !lens)))
        return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "client and entries are required");
    if (mode != SM_BOOTSTRAP_CREATE_ONLY && mode != SM_BOOTSTRAP_OVERWRITE)
        return sm__set_err(err, GRPC_STATUS_INVALID_ARGUMENT, SM_EINVAL, "unknown bootstrap mode");
    for (size_t i = 0; i < n; i++) total += 1 + 10 + lens[i];
    s = grpc_slice_malloc(total);
    p = GRPC_SLICE_START_PTR(s);
    for (size_t i = 0; i < n; i++) {      /* field 1, length-delimited: the entry as it is */
        p[pos++] = 0x0a;
        pos += put_varint(p + pos, lens[i]);
        if (lens[i]) memcpy(p + pos, entries[i], lens[i]);
        pos += lens[i];
    }
    if (mode) {
        p[pos++] = 0x10;
        pos += put_varint(p + pos, (uint64_t)mode);
    }
    if (dry_run) {
        p[pos++] = 0x18;
        p[pos++] = 1;
    }
    s = grpc_slice_sub_no_ref(s, 0, pos);
    rc = unary_slice(c, "/statemesh.v1.Admin/Bootstrap", s,
                     &statemesh__v1__bootstrap_response__descriptor, (ProtobufCMessage **)&resp,
                     timeout_ms, err);
    if (rc != SM_OK) return rc;
    if (resp->n_results != n) {
        statemesh__v1__bootstrap_response__free_unpacked(resp, NULL);
        return sm__set_err(err, GRPC_STATUS_INTERNAL, SM_ERPC,
                           "the runtime answered %zu results for %zu entries", resp->n_results, n);
    }
    out->n = n;
    out->outcomes = calloc(n ? n : 1, sizeof *out->outcomes);
    out->errors = calloc(n ? n : 1, sizeof *out->errors);
    if (!out->outcomes || !out->errors) {
        free(out->outcomes);
        free(out->errors);
        statemesh__v1__bootstrap_response__free_unpacked(resp, NULL);
        memset(out, 0, sizeof *out);
        return sm__set_err(err, GRPC_STATUS_RESOURCE_EXHAUSTED, SM_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        unsigned o = (unsigned)resp->results[i]->outcome;
        out->outcomes[i] = o <= SM_BOOT_INVALID ? (sm_boot_outcome)o : SM_BOOT_INVALID;
        out->errors[i] = resp->results[i]->error;
    }
    out->msg_ = resp;
    return SM_OK;
}

void sm_bootstrap_results_cleanup(sm_bootstrap_results *r)
{
    if (!r) return;
    free(r->outcomes);
    free(r->errors);
    if (r->msg_) statemesh__v1__bootstrap_response__free_unpacked(r->msg_, NULL);
    memset(r, 0, sizeof *r);
}
