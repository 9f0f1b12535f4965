/* state_admin — see state_admin.h. */
#include "state_admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "dispatch.h"
#include "rpc.h"
#include "server.h"
#include "statemesh/v1/admin.pb-c.h"
#include "statemesh/v1/storage.pb-c.h"
#include "wire.h"

#define LIST_DEFAULT 1000
#define LIST_MAX 10000
#define LIST_SCAN_KEYS 100000      /* state keys visited per ListState at most */
#define TYPENAME_MAX 256

/* ---- ListState ------------------------------------------------------------ */

struct list_walk {
    int64_t now;
    char **ids;                    /* listed, malloc'd */
    size_t n, limit;
    size_t visited;
    char *cur;                     /* the id being walked (no live value yet) */
    char *last;                    /* the last id walked to its end: the cursor */
    int more;
};

static void walked(struct list_walk *w)
{
    free(w->last);
    w->last = w->cur;
    w->cur = NULL;
}

static int list_one(void *arg, const char *id, const char *name, const uint8_t *val, size_t len)
{
    struct list_walk *w = arg;
    Statemesh__V1__StoredState *st;
    int live;
    (void)name;

    if (!w->cur || strcmp(w->cur, id) != 0) {          /* a new id */
        if (w->cur) walked(w);                         /* all its values expired */
        if (w->n >= w->limit || w->visited >= LIST_SCAN_KEYS) {
            w->more = 1;
            return STORE_LIST_STOP;
        }
        if (!(w->cur = strdup(id))) abort();
    }
    w->visited++;
    /* An expired value is absent (as for GetState); one that cannot be
     * decoded is there all the same. */
    st = statemesh__v1__stored_state__unpack(NULL, len, val);
    live = !st || !(st->expires_at_ms && st->expires_at_ms <= w->now);
    if (st) statemesh__v1__stored_state__free_unpacked(st, NULL);
    if (!live) return STORE_LIST_NEXT;
    w->ids[w->n++] = w->cur;
    if (!(w->cur = strdup(id))) abort();
    walked(w);
    return STORE_LIST_SKIP_ID;
}

static void on_list_state(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    struct server *s = arg;
    Statemesh__V1__ListStateRequest *r = statemesh__v1__list_state_request__unpack(NULL, len, req);
    Statemesh__V1__ListStateResponse resp = STATEMESH__V1__LIST_STATE_RESPONSE__INIT;
    struct list_walk w;
    char why[300];
    const char *e;

    memset(&w, 0, sizeof w);
    if (!r) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "request is not a valid ListStateRequest");
        return;
    }
    if (wire_check_strings(&statemesh__v1__list_state_request__descriptor, req, len, why,
                           sizeof why) != 0) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "invalid request: %s", why);
        goto out;
    }
    if ((e = addr_check_type(r->type, strlen(r->type))) != NULL) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "invalid type: %s", e);
        goto out;
    }
    if (strlen(r->prefix) > ADDR_MAX_ID) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "prefix is %zu bytes, longer than an id can be "
                       "(%d)", strlen(r->prefix), ADDR_MAX_ID);
        goto out;
    }
    if (r->after_id[0] && (e = addr_check_id(r->after_id, strlen(r->after_id))) != NULL) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "invalid after_id: %s", e);
        goto out;
    }
    w.now = timer_wall_ms();
    w.limit = r->limit == 0 ? LIST_DEFAULT : r->limit > LIST_MAX ? LIST_MAX : r->limit;
    w.ids = calloc(w.limit, sizeof *w.ids);
    if (!w.ids) abort();
    if (store_list_states(s->store, r->type, r->prefix, r->after_id[0] ? r->after_id : NULL,
                          list_one, &w) != 0) {
        rpc_call_error(call, RPC_INTERNAL, "cannot read state from the store (see the runtime log)");
        goto out;
    }
    resp.n_ids = w.n;
    resp.ids = w.ids;
    resp.more = w.more;
    resp.next_after_id = w.more && w.last ? w.last : "";
    rpc_call_reply(call, &resp.base);
out:
    for (size_t i = 0; i < w.n; i++) free(w.ids[i]);
    free(w.ids);
    free(w.cur);
    free(w.last);
    statemesh__v1__list_state_request__free_unpacked(r, NULL);
}

/* ---- SetState, DeleteState ------------------------------------------------ */

/* Checks the address and the state name (name "" allowed when all_ok) of a
 * write, and finds its endpoint. Returns it, or NULL after answering. */
static struct endpoint *check_write(struct server *s, struct rpc_call *call,
                                    const ProtobufCMessageDescriptor *desc, const uint8_t *req,
                                    size_t len, const Statemesh__V1__Address *a, const char *name,
                                    int all_ok)
{
    char why[300];
    const char *e;
    int idx;

    if (wire_check_strings(desc, req, len, why, sizeof why) != 0) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "invalid request: %s", why);
        return NULL;
    }
    if (!a) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "address is missing");
        return NULL;
    }
    if ((e = addr_check_type(a->type, strlen(a->type))) ||
        (e = addr_check_id(a->id, strlen(a->id)))) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "invalid address: %s", e);
        return NULL;
    }
    if ((name[0] || !all_ok) && (e = addr_check_state_name(name, strlen(name)))) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "invalid state name: %s", e);
        return NULL;
    }
    if (s->stopping) {
        rpc_call_error(call, RPC_UNAVAILABLE, "statemeshd is shutting down");
        return NULL;
    }
    idx = cfg_match_endpoint(&s->cfg, a->type);
    if (idx < 0 || ep_rejects_type(&s->endpoints[idx], a->type)) {
        rpc_call_error(call, RPC_NOT_FOUND, "no endpoint serves function type %s", a->type);
        return NULL;
    }
    return &s->endpoints[idx];
}

static void on_set_state(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    struct server *s = arg;
    Statemesh__V1__SetStateRequest *r = statemesh__v1__set_state_request__unpack(NULL, len, req);
    const Statemesh__V1__TypedValue *v;
    struct endpoint *ep;
    struct ftype *ft;

    if (!r) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "request is not a valid SetStateRequest");
        return;
    }
    ep = check_write(s, call, &statemesh__v1__set_state_request__descriptor, req, len, r->address,
                     r->name, 0);
    if (!ep || fwd_unary(s, call, "/statemesh.v1.Admin/SetState", req, len, r->address->type,
                         r->address->id))
        goto out;
    v = r->value;
    if (!v) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "value is missing");
        goto out;
    }
    if (!v->typename_[0] || strlen(v->typename_) > TYPENAME_MAX) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "value typename must be 1..%d bytes", TYPENAME_MAX);
        goto out;
    }
    if (v->value.len > s->cfg.max_message_bytes) {
        rpc_call_error(call, RPC_RESOURCE_EXHAUSTED, "value is %zu bytes, over the limit of %zu "
                       "(runtime.max_message_bytes)", v->value.len, s->cfg.max_message_bytes);
        goto out;
    }
    /* A function that declared the state reads it with its typename. */
    if ((ft = ep_find_type(ep, r->address->type)) != NULL)
        for (size_t i = 0; i < ft->nspecs; i++)
            if (strcmp(ft->spec_names[i], r->name) == 0 &&
                strcmp(ft->spec_types[i], v->typename_) != 0) {
                rpc_call_error(call, RPC_FAILED_PRECONDITION, "%s declares state '%s' as %s, "
                               "not %s", r->address->type, r->name, ft->spec_types[i],
                               v->typename_);
                goto out;
            }
    disp_state_op(s, ep, r->address->type, r->address->id,
                  mbox_op_create(ingress_hold(s->ingress, call), r->name, v->typename_,
                                 v->value.data, v->value.len));
out:
    statemesh__v1__set_state_request__free_unpacked(r, NULL);
}

static void on_delete_state(void *arg, struct rpc_call *call, const uint8_t *req, size_t len)
{
    struct server *s = arg;
    Statemesh__V1__DeleteStateRequest *r = statemesh__v1__delete_state_request__unpack(NULL, len, req);
    struct endpoint *ep;

    if (!r) {
        rpc_call_error(call, RPC_INVALID_ARGUMENT, "request is not a valid DeleteStateRequest");
        return;
    }
    ep = check_write(s, call, &statemesh__v1__delete_state_request__descriptor, req, len,
                     r->address, r->name, 1);
    if (ep && !fwd_unary(s, call, "/statemesh.v1.Admin/DeleteState", req, len, r->address->type,
                         r->address->id))
        disp_state_op(s, ep, r->address->type, r->address->id,
                      mbox_op_create(ingress_hold(s->ingress, call), r->name[0] ? r->name : NULL,
                                     NULL, NULL, 0));
    statemesh__v1__delete_state_request__free_unpacked(r, NULL);
}

int sadm_register(struct rpc_server *rpc, struct server *s)
{
    if (rpc_server_add_unary(rpc, "/statemesh.v1.Admin/ListState", on_list_state, s) != 0 ||
        rpc_server_add_unary(rpc, "/statemesh.v1.Admin/SetState", on_set_state, s) != 0 ||
        rpc_server_add_unary(rpc, "/statemesh.v1.Admin/DeleteState", on_delete_state, s) != 0)
        return -1;
    return 0;
}
