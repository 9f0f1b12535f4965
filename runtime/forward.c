/* forward — see forward.h.
 *
 * Life of a forwarded call:
 *
 *   fwd_unary: not served here -> owner known, alive, not us, call not
 *   already forwarded? -- no --> fwd_refuse (UNAVAILABLE + owner metadata)
 *        | yes
 *        v
 *   peer channel (made on first use) -> rpc_unary_forward -> FLYING
 *        |                                     |
 *        | client goes away (on_client_gone):  |
 *        | fc->call = NULL, cancel the forward |
 *        v                                     v
 *   on_done: the client still there? answer it with the owner's status,
 *   response and x-statemesh-* metadata; unlink and free the fcall.
 */
#include "forward.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc.h"
#include "server.h"
#include "statemesh/v1/ingress.pb-c.h"

/* A node's advertise address fits in this (config.c checks host:port). */
#define FWD_NAME_MAX 256

struct peer {
    char node_id[FWD_NAME_MAX];   /* "" once retired (its advertise changed) */
    char target[FWD_NAME_MAX];
    struct rpc_channel *ch;
};

struct fcall {
    struct forward *f;
    struct rpc_call *call;        /* NULL once the client went away */
    struct rpc_ucall *u;
    char owner[FWD_NAME_MAX], owner_addr[FWD_NAME_MAX];
    struct fcall *prev, *next;
};

struct fwd_stream {
    struct forward *f;
    struct rpc_stream *rs;
    struct fwd_stream_callbacks cb;
    void *arg;                    /* NULL once closed by the client side */
    char node[FWD_NAME_MAX];
    uint64_t *seqs;               /* sent or queued, not yet acknowledged: a FIFO */
    size_t head, n, cap;
    uint8_t *out;                 /* queued SendStreamRequest bytes (field 1 entries) */
    size_t outlen, outcap;
    struct fwd_stream *prev, *next;
};

struct forward {
    struct server *s;
    struct peer *peers;
    size_t npeers;
    struct fcall *calls;
    size_t ncalls;
    struct fwd_stream *streams;   /* forwarded SendStreams, until gRPC is done with them */
    size_t nstreams;              /* their streams and the fan-ins' source streams */
    struct fanin *fanins;         /* Subscribe fan-ins (see the end of the file) */
};

int fwd_create(struct forward **out, struct server *s)
{
    struct forward *f = calloc(1, sizeof *f);
    if (!f) return -1;
    f->s = s;
    *out = f;
    return 0;
}

/* Destroys retired channels whose calls are over. */
static void reap_peers(struct forward *f)
{
    size_t j = 0;
    for (size_t i = 0; i < f->npeers; i++) {
        if (!f->peers[i].node_id[0] && rpc_channel_calls(f->peers[i].ch) == 0) {
            rpc_channel_destroy(&f->peers[i].ch);
            continue;
        }
        f->peers[j++] = f->peers[i];
    }
    f->npeers = j;
}

/* The channel to node `id` at `target`, made on first use; NULL with a
 * sentence in why. */
static struct rpc_channel *peer_channel(struct forward *f, const char *id, const char *target,
                                        char *why, size_t whylen)
{
    struct server *s = f->s;
    struct rpc_channel_options co;
    struct peer *np, *p = NULL;
    int rc;

    reap_peers(f);
    for (size_t i = 0; i < f->npeers; i++)
        if (strcmp(f->peers[i].node_id, id) == 0) {
            if (strcmp(f->peers[i].target, target) == 0) return f->peers[i].ch;
            f->peers[i].node_id[0] = '\0';            /* moved: retire the old channel */
        }
    if (strlen(id) >= FWD_NAME_MAX || strlen(target) >= FWD_NAME_MAX) {
        snprintf(why, whylen, "node %.100s has an address too long to forward to", id);
        return NULL;
    }
    memset(&co, 0, sizeof co);
    co.keepalive_ms = 10000;
    if (s->tls && !(co.creds = tls_channel_credentials(&s->cfg.tls, why, whylen))) return NULL;
    np = realloc(f->peers, (f->npeers + 1) * sizeof *np);
    if (!np) abort();
    f->peers = np;
    p = &f->peers[f->npeers];
    memset(p, 0, sizeof *p);
    rc = rpc_channel_create(&p->ch, &s->loop, target, &co);
    if (co.creds) grpc_channel_credentials_release(co.creds);
    if (rc != 0) {
        snprintf(why, whylen, "cannot create a channel to node %s at %s", id, target);
        return NULL;
    }
    snprintf(p->node_id, sizeof p->node_id, "%s", id);
    snprintf(p->target, sizeof p->target, "%s", target);
    f->npeers++;
    return p->ch;
}

static void owner_md(const struct cluster_owner *o, const char **md, size_t *nmd)
{
    md[0] = "x-statemesh-owner";
    md[1] = o->node_id;
    md[2] = "x-statemesh-owner-address";
    md[3] = o->advertise;
    *nmd = o->advertise[0] ? 2 : 1;
}

void fwd_refuse(struct server *s, struct rpc_call *call, uint32_t kg)
{
    struct cluster_owner o = {0};
    const char *md[4];
    size_t nmd = 0;
    char why[600];

    cluster_explain(s->cluster, kg, why, sizeof why);
    cluster_owner(s->cluster, kg, &o);
    if (o.node_id) owner_md(&o, md, &nmd);
    rpc_call_error_md(call, RPC_UNAVAILABLE, md, nmd, "%s", why);
}

static void fcall_free(struct fcall *fc)
{
    struct forward *f = fc->f;
    if (fc->prev) fc->prev->next = fc->next;
    else f->calls = fc->next;
    if (fc->next) fc->next->prev = fc->prev;
    f->ncalls--;
    free(fc);
}

static void on_client_gone(void *arg, struct rpc_call *call)
{
    struct fcall *fc = arg;
    (void)call;
    fc->call = NULL;
    rpc_unary_cancel(fc->u);
}

static void on_done(void *arg, int status, const char *details, const uint8_t *resp, size_t len,
                    const char *const *md, size_t nmd)
{
    struct fcall *fc = arg;
    struct rpc_call *call = fc->call;

    if (call) {
        rpc_call_set_cancel(call, NULL, NULL);
        if (nmd) {                 /* the owner says who owns it (it may be another node now) */
            rpc_call_add_trailer(call, md, nmd);
        } else {
            const char *ours[4] = {"x-statemesh-owner", fc->owner, "x-statemesh-owner-address",
                                   fc->owner_addr};
            rpc_call_add_trailer(call, ours, 2);
        }
        if (status == RPC_OK) {
            uint8_t *copy = malloc(len ? len : 1);
            if (!copy) abort();
            if (len) memcpy(copy, resp, len);
            rpc_call_reply_raw(call, copy, len);
        } else if (status == RPC_UNAVAILABLE && !nmd) {
            /* the owner could not be reached: say which, and that a retry may work */
            rpc_call_error(call, status, "forwarding to node %s at %s, the owner of this address, "
                           "failed: %s; retry", fc->owner, fc->owner_addr, details);
        } else {
            rpc_call_error(call, status, "%s", details);
        }
    }
    fcall_free(fc);
}

int fwd_unary(struct server *s, struct rpc_call *call, const char *method, const uint8_t *req,
              size_t len, const char *type, const char *id)
{
    struct forward *f = s->fwd;
    struct cluster_owner o = {0};
    struct rpc_channel *ch;
    struct fcall *fc;
    const char *self, *md[2];
    uint32_t kg;
    int64_t left;
    char why[600];

    if (!s->cluster) return 0;
    kg = store_key_group(type, id);
    cluster_owner(s->cluster, kg, &o);
    if (cluster_serves(s->cluster, kg)) {
        const char *omd[4];
        size_t nmd;
        owner_md(&o, omd, &nmd);
        rpc_call_add_trailer(call, omd, nmd);
        return 0;
    }
    self = cluster_node_id(s->cluster);
    if (!f || !o.node_id || !o.alive || !o.advertise[0] || strcmp(o.node_id, self) == 0 ||
        s->stopping || rpc_call_has_metadata(call, "x-statemesh-forwarded")) {
        fwd_refuse(s, call, kg);
        return 1;
    }
    if (!(ch = peer_channel(f, o.node_id, o.advertise, why, sizeof why))) {
        const char *omd[4];
        size_t nmd;
        owner_md(&o, omd, &nmd);
        rpc_call_error_md(call, RPC_UNAVAILABLE, omd, nmd, "%s", why);
        return 1;
    }
    fc = calloc(1, sizeof *fc);
    if (!fc) abort();
    fc->f = f;
    fc->call = call;
    snprintf(fc->owner, sizeof fc->owner, "%s", o.node_id);
    snprintf(fc->owner_addr, sizeof fc->owner_addr, "%s", o.advertise);
    left = rpc_call_deadline_ms(call);
    md[0] = "x-statemesh-forwarded";
    md[1] = self;
    if (rpc_unary_forward(&fc->u, ch, method, call, req, len, md, 1,
                          left == INT64_MAX ? -1 : left > 0 ? left : 1, on_done, fc) != 0) {
        free(fc);
        rpc_call_error(call, RPC_INTERNAL, "cannot start forwarding to node %s", o.node_id);
        return 1;
    }
    fc->next = f->calls;
    if (fc->next) fc->next->prev = fc;
    f->calls = fc;
    f->ncalls++;
    rpc_call_set_cancel(call, on_client_gone, fc);
    s->stats.forwarded++;
    return 1;
}

static void fanin_end_all(struct forward *f);

size_t fwd_pending(const struct forward *f) { return f ? f->ncalls + f->nstreams : 0; }

void fwd_cancel_all(struct forward *f)
{
    if (!f) return;
    for (struct fcall *fc = f->calls; fc; fc = fc->next) rpc_unary_cancel(fc->u);
    for (struct fwd_stream *fs = f->streams; fs; fs = fs->next) rpc_stream_cancel(fs->rs);
    fanin_end_all(f);
}

int fwd_idle(const struct forward *f) { return !f || (f->ncalls == 0 && f->nstreams == 0); }

void fwd_destroy(struct forward **fp)
{
    struct forward *f = *fp;
    if (!f) return;
    if (f->ncalls || f->nstreams) SM_PANIC("fwd_destroy with forwarded calls alive");
    for (size_t i = 0; i < f->npeers; i++) rpc_channel_destroy(&f->peers[i].ch);
    free(f->peers);
    free(f);
    *fp = NULL;
}

/* ---- SendStream ------------------------------------------------------------ */


static void fst_flush(struct fwd_stream *fs)
{
    if (!fs->outlen || !rpc_stream_writable(fs->rs)) return;
    (void)rpc_stream_send(fs->rs, fs->out, fs->outlen);   /* the buffer is rpc's now */
    fs->out = NULL;
    fs->outlen = fs->outcap = 0;
}

static void fst_on_message(void *arg, const uint8_t *data, size_t len)
{
    struct fwd_stream *fs = arg;
    Statemesh__V1__SendStreamResponse *r;

    if (!fs->arg) return;
    r = statemesh__v1__send_stream_response__unpack(NULL, len, data);
    if (!r) {
        rpc_stream_cancel(fs->rs);
        return;
    }
    for (size_t i = 0; i < r->n_errors && fs->arg; i++)
        fs->cb.on_error(fs->arg, r->errors[i]->seq, r->errors[i]->code, r->errors[i]->message);
    while (fs->n && fs->seqs[fs->head] <= r->committed_through) {
        fs->head++;
        fs->n--;
    }
    if (fs->n == 0) fs->head = 0;
    statemesh__v1__send_stream_response__free_unpacked(r, NULL);
    if (fs->arg) fs->cb.on_ack(fs->arg, fs);
}

static void fst_on_writable(void *arg)
{
    fst_flush(arg);
}

static void fst_on_closed(void *arg, int status, const char *details)
{
    struct fwd_stream *fs = arg;
    struct forward *f = fs->f;

    if (fs->arg) {
        char why[700];
        snprintf(why, sizeof why, "forwarding to node %s ended: %s%s%s", fs->node,
                 rpc_status_name(status), details[0] ? ": " : "", details);
        fs->cb.on_closed(fs->arg, fs, fs->n, status, why);
    }
    if (fs->prev) fs->prev->next = fs->next;
    else f->streams = fs->next;
    if (fs->next) fs->next->prev = fs->prev;
    f->nstreams--;
    free(fs->seqs);
    free(fs->out);
    free(fs);
}

struct fwd_stream *fwd_stream_open(struct server *s, const char *node, const char *advertise,
                                   struct rpc_scall *from, const struct fwd_stream_callbacks *cb,
                                   void *arg, char *why, size_t whylen)
{
    static const struct rpc_stream_callbacks rcb = {fst_on_message, fst_on_writable,
                                                    fst_on_closed};
    struct forward *f = s->fwd;
    struct rpc_channel *ch;
    struct fwd_stream *fs;
    const char *md[2];

    if (!f) {
        snprintf(why, whylen, "forwarding is off");
        return NULL;
    }
    if (!(ch = peer_channel(f, node, advertise, why, whylen))) return NULL;
    fs = calloc(1, sizeof *fs);
    if (!fs) abort();
    fs->f = f;
    fs->cb = *cb;
    fs->arg = arg;
    snprintf(fs->node, sizeof fs->node, "%s", node);
    md[0] = "x-statemesh-forwarded";
    md[1] = cluster_node_id(s->cluster);
    if (rpc_stream_open_forward(&fs->rs, ch, "/statemesh.v1.Ingress/SendStream", from, md, 1,
                                &rcb, fs) != 0) {
        free(fs);
        snprintf(why, whylen, "cannot open a stream to node %s", node);
        return NULL;
    }
    fs->next = f->streams;
    if (fs->next) fs->next->prev = fs;
    f->streams = fs;
    f->nstreams++;
    return fs;
}

void fwd_stream_push(struct fwd_stream *fs, uint64_t seq, const uint8_t *msg, size_t len)
{
    uint8_t hdr[11];
    size_t h = 0, v = len;

    if (fs->head + fs->n == fs->cap) {
        if (fs->head) {
            memmove(fs->seqs, fs->seqs + fs->head, fs->n * sizeof *fs->seqs);
            fs->head = 0;
        } else {
            size_t cap = fs->cap ? fs->cap * 2 : 256;
            uint64_t *q = realloc(fs->seqs, cap * sizeof *q);
            if (!q) abort();
            fs->seqs = q;
            fs->cap = cap;
        }
    }
    fs->seqs[fs->head + fs->n++] = seq;
    hdr[h++] = 0x0a;                    /* SendStreamRequest.messages, length-delimited */
    do {
        hdr[h++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    if (fs->outlen + h + len > fs->outcap) {
        size_t cap = fs->outcap ? fs->outcap : 4096;
        uint8_t *o;
        while (cap < fs->outlen + h + len) cap *= 2;
        o = realloc(fs->out, cap);
        if (!o) abort();
        fs->out = o;
        fs->outcap = cap;
    }
    memcpy(fs->out + fs->outlen, hdr, h);
    if (len) memcpy(fs->out + fs->outlen + h, msg, len);
    fs->outlen += h + len;
    fs->f->s->stats.forwarded++;
    fst_flush(fs);
}

uint64_t fwd_stream_first_pending(const struct fwd_stream *fs)
{
    return fs->n ? fs->seqs[fs->head] : 0;
}

size_t fwd_stream_pending(const struct fwd_stream *fs) { return fs->n; }

const char *fwd_stream_node(const struct fwd_stream *fs) { return fs->node; }

void fwd_stream_close(struct fwd_stream *fs)
{
    fs->arg = NULL;
    rpc_stream_cancel(fs->rs);
}

/* ---- Subscribe fan-in ------------------------------------------------------
 *
 *   fwd_subscribe -> one source per owner node (itself too) -> records queue
 *   -> the client, one message at a time. A source: OPEN (stream) -> closed:
 *   OK (caught up, no follow) = DONE; UNAVAILABLE/CANCELLED while following
 *   = WAITING (timer, or the queue draining when it was paused) -> OPEN from
 *   `next`; anything else ends the fan-in. The fanin is freed once the client
 *   call is over and no source stream is open.
 */

struct fanin;

struct fsrc {
    struct fanin *fi;
    char node[FWD_NAME_MAX], target[FWD_NAME_MAX];
    uint64_t next;                /* next offset wanted; 0: the request's start */
    struct rpc_stream *rs;        /* NULL while not open */
    struct timer retry;
    unsigned done : 1, paused : 1;
};

struct qmsg {
    uint8_t *data;
    size_t len;
    struct qmsg *next;
};

struct fanin {
    struct forward *f;
    struct rpc_scall *c;          /* NULL once the client call is over */
    Statemesh__V1__SubscribeRequest *req;   /* a copy: what each source asks */
    struct fsrc *src;
    size_t nsrc, open;
    struct qmsg *qhead, *qtail;
    size_t qbytes;
    struct fanin *prev, *next;
};

static void fanin_open_src(struct fsrc *src);

static void fanin_maybe_free(struct fanin *fi)
{
    struct forward *f = fi->f;
    if (fi->c || fi->open) return;
    for (size_t i = 0; i < fi->nsrc; i++)
        if (timer_armed(&fi->src[i].retry)) timer_stop(&f->s->timers, &fi->src[i].retry);
    while (fi->qhead) {
        struct qmsg *m = fi->qhead;
        fi->qhead = m->next;
        free(m->data);
        free(m);
    }
    if (fi->prev) fi->prev->next = fi->next;
    else f->fanins = fi->next;
    if (fi->next) fi->next->prev = fi->prev;
    statemesh__v1__subscribe_request__free_unpacked(fi->req, NULL);
    free(fi->src);
    free(fi);
}

/* Ends the client call (once) and every source. */
static void fanin_end(struct fanin *fi, int code, const char *msg)
{
    if (fi->c) {
        rpc_scall_finish(fi->c, code, "%s", msg);
        fi->c = NULL;
        fi->f->s->stats.subscribers--;
    }
    for (size_t i = 0; i < fi->nsrc; i++)
        if (fi->src[i].rs) rpc_stream_cancel(fi->src[i].rs);
    fanin_maybe_free(fi);
}

/* Sends the next queued message; reopens paused sources once drained; ends
 * the call when every source is done (no follow) and all is sent. */
static void fanin_pump(struct fanin *fi)
{
    size_t done = 0;
    if (!fi->c || !rpc_scall_writable(fi->c)) return;
    if (fi->qhead) {
        struct qmsg *m = fi->qhead;
        fi->qhead = m->next;
        if (!fi->qhead) fi->qtail = NULL;
        fi->qbytes -= m->len;
        rpc_scall_send(fi->c, m->data, m->len);
        free(m);
        return;
    }
    for (size_t i = 0; i < fi->nsrc; i++) {
        struct fsrc *src = &fi->src[i];
        done += src->done;
        if (src->paused && !src->rs && fi->qbytes < FWD_SUB_QUEUE_BYTES / 2) {
            src->paused = 0;
            fanin_open_src(src);
        }
    }
    if (done == fi->nsrc) fanin_end(fi, RPC_OK, "");
}

static void src_on_message(void *arg, const uint8_t *data, size_t len)
{
    struct fsrc *src = arg;
    struct fanin *fi = src->fi;
    Statemesh__V1__SubscribeResponse *r;
    struct qmsg *m;

    if (!fi->c) return;
    r = statemesh__v1__subscribe_response__unpack(NULL, len, data);
    if (!r) {
        char msg[400];
        snprintf(msg, sizeof msg, "node %s sent an unreadable SubscribeResponse", src->node);
        fanin_end(fi, RPC_INTERNAL, msg);
        return;
    }
    if (r->n_records) src->next = r->records[r->n_records - 1]->offset + 1;
    statemesh__v1__subscribe_response__free_unpacked(r, NULL);
    m = malloc(sizeof *m);
    if (!m) abort();
    m->data = malloc(len ? len : 1);
    if (!m->data) abort();
    if (len) memcpy(m->data, data, len);
    m->len = len;
    m->next = NULL;
    if (fi->qtail) fi->qtail->next = m;
    else fi->qhead = m;
    fi->qtail = m;
    fi->qbytes += len;
    if (fi->qbytes > FWD_SUB_QUEUE_BYTES && src->rs) {
        src->paused = 1;          /* reopened from `next` once the client caught up */
        rpc_stream_cancel(src->rs);
    }
    fanin_pump(fi);
}

static void src_on_retry(void *arg)
{
    struct fsrc *src = arg;
    if (src->fi->c && !src->rs && !src->paused) fanin_open_src(src);
}

static void src_on_closed(void *arg, int status, const char *details)
{
    struct fsrc *src = arg;
    struct fanin *fi = src->fi;
    char msg[900];

    src->rs = NULL;
    fi->open--;
    fi->f->nstreams--;
    if (!fi->c) {
        fanin_maybe_free(fi);
        return;
    }
    if (status == RPC_OK) {
        src->done = 1;
        fanin_pump(fi);
        return;
    }
    if (src->paused) {
        fanin_pump(fi);
        return;
    }
    if ((status == RPC_UNAVAILABLE || status == RPC_CANCELLED || status == RPC_DEADLINE_EXCEEDED) &&
        fi->req->follow) {
        timer_start(&fi->f->s->timers, &src->retry, rpc_now_ms() + FWD_SUB_RETRY_MS);
        return;
    }
    snprintf(msg, sizeof msg, "egress of node %s: %s", src->node, details[0] ? details
             : rpc_status_name(status));
    fanin_end(fi, status, msg);
}

static void src_on_writable(void *arg)
{
    (void)arg;
}

static void fanin_open_src(struct fsrc *src)
{
    static const struct rpc_stream_callbacks cb = {src_on_message, src_on_writable,
                                                   src_on_closed};
    struct fanin *fi = src->fi;
    struct forward *f = fi->f;
    Statemesh__V1__SubscribeRequest r = *fi->req;
    Statemesh__V1__NodeOffset no = STATEMESH__V1__NODE_OFFSET__INIT, *nop = &no;
    struct rpc_channel *ch;
    const char *md[2];
    char why[600];
    uint8_t *buf;
    size_t len;

    if (!(ch = peer_channel(f, src->node, src->target, why, sizeof why))) {
        fanin_end(fi, RPC_INTERNAL, why);
        return;
    }
    if (src->next) {              /* resume where this node's records stopped */
        r.start = STATEMESH__V1__SUBSCRIBE_REQUEST__START__OFFSET;
        r.from_offset = src->next;
        no.node = src->node;
        no.offset = src->next;
        r.n_node_offsets = 1;
        r.node_offsets = &nop;
    }
    md[0] = "x-statemesh-forwarded";
    md[1] = cluster_node_id(f->s->cluster);
    if (rpc_stream_open_forward(&src->rs, ch, "/statemesh.v1.Ingress/Subscribe", fi->c, md, 1,
                                &cb, src) != 0) {
        src->rs = NULL;
        fanin_end(fi, RPC_INTERNAL, "cannot open a stream to another node");
        return;
    }
    fi->open++;
    f->nstreams++;
    buf = rpc_pack(&r.base, &len);
    rpc_stream_send(src->rs, buf, len);
}

static void fanin_on_message(void *arg, struct rpc_scall *c, const uint8_t *data, size_t len)
{
    (void)arg;
    (void)c;
    (void)data;
    (void)len;                    /* only the first message counts (read by egress.c) */
}

static void fanin_on_writable(void *arg, struct rpc_scall *c)
{
    (void)c;
    fanin_pump(arg);
}

static void fanin_on_cancel(void *arg, struct rpc_scall *c)
{
    struct fanin *fi = arg;
    (void)c;
    fi->f->s->stats.subscribers--;
    fi->c = NULL;
    fanin_end(fi, RPC_CANCELLED, "");
}

void fwd_subscribe(struct server *s, struct rpc_scall *c, const Statemesh__V1__SubscribeRequest *r)
{
    static const struct rpc_scall_callbacks cb = {fanin_on_message, fanin_on_writable,
                                                  fanin_on_cancel};
    struct forward *f = s->fwd;
    struct fanin *fi;
    uint8_t *buf;
    size_t len;

    if (!f) {
        rpc_scall_finish(c, RPC_UNAVAILABLE, "statemeshd is not serving yet");
        return;
    }
    fi = calloc(1, sizeof *fi);
    if (!fi) abort();
    fi->f = f;
    fi->c = c;
    buf = rpc_pack(&r->base, &len);            /* a private copy of the request */
    fi->req = statemesh__v1__subscribe_request__unpack(NULL, len, buf);
    free(buf);
    if (!fi->req) abort();
    /* The sources: every node that owns a range, in key-group order. */
    for (uint32_t kg = 0; kg < STORE_KEY_GROUPS; kg++) {
        struct cluster_owner o = {0};
        size_t i;
        cluster_owner(s->cluster, kg, &o);
        if (!o.node_id || !o.advertise[0] || strlen(o.node_id) >= FWD_NAME_MAX ||
            strlen(o.advertise) >= FWD_NAME_MAX)
            continue;
        for (i = 0; i < fi->nsrc && strcmp(fi->src[i].node, o.node_id) != 0; i++)
            ;
        if (i < fi->nsrc) continue;
        fi->src = realloc(fi->src, (fi->nsrc + 1) * sizeof *fi->src);
        if (!fi->src) abort();
        memset(&fi->src[fi->nsrc], 0, sizeof *fi->src);
        snprintf(fi->src[fi->nsrc].node, FWD_NAME_MAX, "%s", o.node_id);
        snprintf(fi->src[fi->nsrc].target, FWD_NAME_MAX, "%s", o.advertise);
        fi->nsrc++;
    }
    fi->next = f->fanins;
    if (fi->next) fi->next->prev = fi;
    f->fanins = fi;
    s->stats.subscribers++;
    rpc_scall_set(c, &cb, fi);
    if (fi->nsrc == 0) {
        fanin_end(fi, RPC_UNAVAILABLE, "no node owns a key-group range yet; retry");
        return;
    }
    for (size_t i = 0; i < fi->nsrc; i++) {
        fi->src[i].fi = fi;
        timer_init(&fi->src[i].retry, src_on_retry, &fi->src[i]);
    }
    for (size_t i = 0; i < fi->nsrc && fi->c; i++) fanin_open_src(&fi->src[i]);
}

static void fanin_end_all(struct forward *f)
{
    struct fanin *fi = f->fanins, *next;
    for (; fi; fi = next) {
        next = fi->next;           /* fanin_end may free fi, never another fan-in */
        fanin_end(fi, RPC_UNAVAILABLE, "statemeshd is shutting down");
    }
}
