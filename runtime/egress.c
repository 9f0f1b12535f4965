/* egress — see egress.h. */
#include "egress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc.h"
#include "server.h"
#include "statemesh/v1/ingress.pb-c.h"
#include "statemesh/v1/storage.pb-c.h"

#define SUB_MAX_RECORDS 512
#define SUB_MAX_BYTES (1u << 20)

struct egress_sub {
    struct server *s;
    struct rpc_scall *c;
    struct egress_sub *next;
    int log;                   /* -1 until the request arrived */
    uint64_t pos;              /* next offset to send */
    int follow;
};

static void meta_name(char *buf, size_t n, const char *egress)
{
    snprintf(buf, n, "egress.%s.next", egress);
}


static void put_u64be(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

int egress_open(struct server *s)
{
    s->egresses = calloc(s->cfg.n_egresses + 1, sizeof *s->egresses);
    if (!s->egresses) abort();
    s->n_egresses = s->cfg.n_egresses;
    for (size_t i = 0; i < s->n_egresses; i++) {
        struct egress_log *l = &s->egresses[i];
        char name[200];
        uint8_t *val;
        size_t len;
        uint64_t first = 0, last = 0;
        int rc;

        l->cfg = &s->cfg.egresses[i];
        l->next = 1;
        meta_name(name, sizeof name, l->cfg->name);
        rc = store_get_meta(s->store, name, &val, &len);
        if (rc < 0) return -1;
        if (rc == 0) {
            int ok = len == 8;
            if (ok) {
                l->next = 0;
                for (int k = 0; k < 8; k++) l->next = l->next << 8 | val[k];
            }
            free(val);
            if (!ok) {
                LOG_ERROR(&s->log, "egress.corrupt", "egress=%s msg=\"bad next-offset metadata\"",
                          l->cfg->name);
                return -1;
            }
        }
        rc = store_egress_bounds(s->store, l->cfg->name, &first, &last);
        if (rc < 0) return -1;
        if (rc == 0) {
            if (last + 1 > l->next) l->next = last + 1;
            l->first = first;
        } else {
            l->first = l->next;
        }
        l->committed = l->next;
        LOG_INFO(&s->log, "egress.open", "egress=%s first=%llu next=%llu", l->cfg->name,
                 (unsigned long long)l->first, (unsigned long long)l->next);
    }
    return 0;
}

void egress_append(struct server *s, int idx, const char *src_type, const char *src_id,
                   const Statemesh__V1__TypedValue *v)
{
    struct egress_log *l = &s->egresses[idx];
    Statemesh__V1__StoredEgress rec = STATEMESH__V1__STORED_EGRESS__INIT;
    Statemesh__V1__Address src = STATEMESH__V1__ADDRESS__INIT;
    uint8_t *buf;
    size_t len;

    src.type = (char *)src_type;
    src.id = (char *)src_id;
    rec.source = &src;
    rec.timestamp_ms = timer_wall_ms();
    rec.value = (Statemesh__V1__TypedValue *)v;
    buf = rpc_pack(&rec.base, &len);
    store_batch_put_egress(s->ckpt.batch, l->cfg->name, l->next++, buf, len);
    free(buf);
    l->dirty = 1;
    s->stats.egress_records++;
}

void egress_before_commit(struct server *s)
{
    for (size_t i = 0; i < s->n_egresses; i++) {
        struct egress_log *l = &s->egresses[i];
        char name[200];
        uint8_t be[8];
        if (!l->dirty) continue;
        meta_name(name, sizeof name, l->cfg->name);
        put_u64be(be, l->next);
        store_batch_put_meta(s->ckpt.batch, name, be, 8);
        l->dirty = 0;
    }
}

/* ---- subscribers ------------------------------------------------------------ */

static void sub_unlink(struct egress_sub *sub)
{
    struct egress_sub **pp;
    if (sub->log < 0) return;
    for (pp = &sub->s->egresses[sub->log].subs; *pp; pp = &(*pp)->next)
        if (*pp == sub) {
            *pp = sub->next;
            break;
        }
    sub->log = -1;
}

static void sub_end(struct egress_sub *sub, int code, const char *msg)
{
    sub_unlink(sub);
    sub->s->stats.subscribers--;
    rpc_scall_finish(sub->c, code, "%s", msg);
    free(sub);
}

struct collect {
    const char *node;          /* cluster: this node's id on every record */
    Statemesh__V1__SubscribeResponse resp;
    Statemesh__V1__EgressEntry *e, **ep;
    Statemesh__V1__StoredEgress **stored;
    size_t n, bytes;
    uint64_t expect, limit;
    int gap, corrupt;
};

static int collect_one(void *arg, uint64_t offset, const uint8_t *val, size_t len)
{
    struct collect *c = arg;
    Statemesh__V1__StoredEgress *st;
    if (offset >= c->limit) return 1;
    if (offset != c->expect) {
        c->gap = 1;
        return 1;
    }
    st = statemesh__v1__stored_egress__unpack(NULL, len, val);
    if (!st) {
        c->corrupt = 1;
        return 1;
    }
    statemesh__v1__egress_entry__init(&c->e[c->n]);
    c->e[c->n].offset = offset;
    c->e[c->n].timestamp_ms = st->timestamp_ms;
    c->e[c->n].source = st->source;
    c->e[c->n].value = st->value;
    if (c->node) c->e[c->n].node = (char *)c->node;
    c->ep[c->n] = &c->e[c->n];
    c->stored[c->n] = st;
    c->n++;
    c->expect++;
    c->bytes += len;
    return c->n >= SUB_MAX_RECORDS || c->bytes >= SUB_MAX_BYTES;
}

static void trimmed(struct egress_sub *sub, const struct egress_log *l, uint64_t pos)
{
    char msg[400];
    snprintf(msg, sizeof msg,
             "offset %llu of egress %s was trimmed by retention; the oldest retained offset is %llu",
             (unsigned long long)pos, l->cfg->name, (unsigned long long)l->first);
    sub_end(sub, RPC_OUT_OF_RANGE, msg);
}

/* Sends what the subscriber can have now; ends it when done or wrong. */
static void sub_pump(struct egress_sub *sub)
{
    struct server *s = sub->s;
    struct egress_log *l = &s->egresses[sub->log];
    struct collect c;
    uint8_t *buf;
    size_t len;
    int rc;

    if (!rpc_scall_writable(sub->c)) return;
    if (sub->pos < l->first) {
        trimmed(sub, l, sub->pos);
        return;
    }
    if (sub->pos >= l->committed) {
        if (!sub->follow) sub_end(sub, RPC_OK, "");
        return;
    }
    memset(&c, 0, sizeof c);
    c.e = calloc(SUB_MAX_RECORDS, sizeof *c.e);
    c.ep = calloc(SUB_MAX_RECORDS, sizeof *c.ep);
    c.stored = calloc(SUB_MAX_RECORDS, sizeof *c.stored);
    if (!c.e || !c.ep || !c.stored) abort();
    c.expect = sub->pos;
    c.limit = l->committed;
    c.node = s->cluster ? cluster_node_id(s->cluster) : NULL;
    rc = store_scan_egress(s->store, l->cfg->name, sub->pos, collect_one, &c);
    if (rc < 0 || c.corrupt) {
        sub_end(sub, RPC_INTERNAL, "cannot read the egress from the store (see the runtime log)");
    } else if (c.gap || c.n == 0) {
        trimmed(sub, l, c.expect);
    } else {
        statemesh__v1__subscribe_response__init(&c.resp);
        c.resp.n_records = c.n;
        c.resp.records = c.ep;
        buf = rpc_pack(&c.resp.base, &len);
        sub->pos = c.expect;
        rpc_scall_send(sub->c, buf, len);
    }
    for (size_t i = 0; i < c.n; i++) statemesh__v1__stored_egress__free_unpacked(c.stored[i], NULL);
    free(c.e);
    free(c.ep);
    free(c.stored);
}

static void sub_on_message(void *arg, struct rpc_scall *call, const uint8_t *data, size_t len)
{
    struct egress_sub *sub = arg;
    struct server *s = sub->s;
    Statemesh__V1__SubscribeRequest *r;
    struct egress_log *l;
    int idx;

    if (sub->log >= 0) return;        /* only the first message counts */
    if (!data) {
        sub_end(sub, RPC_INVALID_ARGUMENT, "stream closed before a SubscribeRequest");
        return;
    }
    r = statemesh__v1__subscribe_request__unpack(NULL, len, data);
    if (!r) {
        sub_end(sub, RPC_INVALID_ARGUMENT, "request is not a valid SubscribeRequest");
        return;
    }
    idx = cfg_find_egress(&s->cfg, r->egress);
    if (idx < 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "no egress named '%.128s' is configured", r->egress);
        sub_end(sub, RPC_NOT_FOUND, msg);
        statemesh__v1__subscribe_request__free_unpacked(r, NULL);
        return;
    }
    if (s->cluster && !rpc_scall_has_metadata(call, "x-statemesh-forwarded")) {
        /* Every node's log, fanned in (forward.h); the call is its now. */
        fwd_subscribe(s, call, r);
        s->stats.subscribers--;
        free(sub);
        statemesh__v1__subscribe_request__free_unpacked(r, NULL);
        return;
    }
    l = &s->egresses[idx];
    sub->follow = r->follow;
    switch (r->start) {
    case STATEMESH__V1__SUBSCRIBE_REQUEST__START__LATEST: sub->pos = l->committed; break;
    case STATEMESH__V1__SUBSCRIBE_REQUEST__START__EARLIEST: sub->pos = l->first; break;
    default:
        sub->pos = r->from_offset;
        for (size_t i = 0; s->cluster && i < r->n_node_offsets; i++)
            if (strcmp(r->node_offsets[i]->node, cluster_node_id(s->cluster)) == 0)
                sub->pos = r->node_offsets[i]->offset;
        if (!sub->pos) sub->pos = l->first;
        break;
    }
    statemesh__v1__subscribe_request__free_unpacked(r, NULL);
    sub->log = idx;
    sub->next = l->subs;
    l->subs = sub;
    sub_pump(sub);
}

static void sub_on_writable(void *arg, struct rpc_scall *call)
{
    struct egress_sub *sub = arg;
    if (sub->log >= 0) sub_pump(sub);
}

static void sub_on_cancel(void *arg, struct rpc_scall *call)
{
    struct egress_sub *sub = arg;
    sub_unlink(sub);
    sub->s->stats.subscribers--;
    free(sub);
}

void egress_subscribe(void *server, struct rpc_scall *c)
{
    static const struct rpc_scall_callbacks cb = {sub_on_message, sub_on_writable, sub_on_cancel};
    struct server *s = server;
    struct egress_sub *sub = calloc(1, sizeof *sub);

    if (!sub) abort();
    sub->s = s;
    sub->c = c;
    sub->log = -1;
    s->stats.subscribers++;
    rpc_scall_set(c, &cb, sub);
    if (s->stopping) {
        sub_end(sub, RPC_UNAVAILABLE, "statemeshd is shutting down");
        return;
    }
    rpc_scall_read(c);
}

void egress_after_commit(struct server *s)
{
    for (size_t i = 0; i < s->n_egresses; i++) {
        struct egress_log *l = &s->egresses[i];
        struct egress_sub *sub, *next;
        if (l->committed == l->next) continue;
        l->committed = l->next;
        for (sub = l->subs; sub; sub = next) {
            next = sub->next;
            sub_pump(sub);
        }
    }
}

void egress_shutdown(struct server *s)
{
    for (size_t i = 0; i < s->n_egresses; i++)
        while (s->egresses[i].subs)
            sub_end(s->egresses[i].subs, RPC_UNAVAILABLE, "statemeshd is shutting down");
}

void egress_close(struct server *s)
{
    free(s->egresses);
    s->egresses = NULL;
    s->n_egresses = 0;
}

/* ---- retention ---------------------------------------------------------------- */

struct trim {
    struct server *s;
    struct egress_log *l;
    int64_t cutoff_ms;         /* records older than this go */
    uint64_t below;            /* and every offset below this */
    size_t n;
    int stop;
};

static int trim_one(void *arg, uint64_t offset, const uint8_t *val, size_t len)
{
    struct trim *t = arg;
    int old = 0;

    if (offset >= t->l->committed || t->n >= EGRESS_TRIM_MAX) return 1;
    if (offset < t->below) {
        old = 1;
    } else if (t->cutoff_ms) {
        Statemesh__V1__StoredEgress *st = statemesh__v1__stored_egress__unpack(NULL, len, val);
        old = st && st->timestamp_ms < t->cutoff_ms;
        if (st) statemesh__v1__stored_egress__free_unpacked(st, NULL);
    }
    if (!old) return 1;
    store_batch_delete_egress(t->s->ckpt.batch, t->l->cfg->name, offset);
    t->l->first = offset + 1;
    t->n++;
    return 0;
}

void egress_trim(struct server *s)
{
    for (size_t i = 0; i < s->n_egresses; i++) {
        struct egress_log *l = &s->egresses[i];
        struct trim t = {s, l, 0, 0, 0, 0};
        if (!l->cfg->retention_records && !l->cfg->retention_hours) continue;
        if (l->first >= l->committed) continue;
        if (l->cfg->retention_records && l->committed - l->first > (uint64_t)l->cfg->retention_records)
            t.below = l->committed - (uint64_t)l->cfg->retention_records;
        if (l->cfg->retention_hours)
            t.cutoff_ms = timer_wall_ms() - (int64_t)l->cfg->retention_hours * 3600000;
        if (store_scan_egress(s->store, l->cfg->name, l->first, trim_one, &t) < 0) continue;
        if (t.n) {
            ckpt_touch(&s->ckpt, rpc_now_ms());
            s->stats.egress_trimmed += (int64_t)t.n;
            LOG_DEBUG(&s->log, "egress.trim", "egress=%s records=%zu first=%llu", l->cfg->name,
                      t.n, (unsigned long long)l->first);
        }
    }
}
