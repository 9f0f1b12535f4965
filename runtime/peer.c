/*
 * peer — see peer.h.
 *
 * Sending side. Every channel (s, d) with frames not yet acknowledged is in
 * `active`. A frame is durable once the checkpoint it was put into has
 * committed (f->gen <= ckpt.generation). peer_pump() runs after every
 * commit, ack, stream event, ownership change and every PUMP_MS: for each
 * active channel whose source key group this node serves, it finds the
 * owner of d, the link (one outbound stream) to that node, and appends the
 * channel's next durable frames, up to PEER_WINDOW past the last ack, into
 * the link's next PeerFrames message. A link is one bidi stream:
 *
 *   DOWN --open--> UP --closed (peer down, error, our cancel)--> DOWN
 *     ^                                                           |
 *     +-------------- backoff timer (100 ms .. 5 s) --------------+
 *
 * When a stream closes, every channel it carried goes back to its last ack
 * (go-back-N) and is sent again on the next stream to whoever owns d then;
 * the receiver's channel table drops what it had already applied.
 * Answers: OK advances the ack and deletes the O keys; RETRY, NOT_OWNER,
 * INVALID and REJECTED rewind the channel and hold it back for a while
 * (the watch in cluster.c meanwhile tells who owns d now); GAP rewinds it.
 *
 * Receiving side. Each inbound stream (struct pin) reads one PeerFrames at
 * a time, judges every frame by the rule in peer.h against the channel
 * table (in memory, loaded from C keys at start, written through the open
 * checkpoint), and queues one answer per frame tagged with the checkpoint
 * generation that makes it true; answers leave in order after that commit.
 * It stops reading while PIN_MAX_ANSWERS answers wait.
 */
#include "peer.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "address.h"
#include "idem.h"
#include "server.h"
#include "statemesh/v1/peer.pb-c.h"

#define PEER_WINDOW 1024            /* unacked frames in flight per channel */
#define SEND_FRAMES_MAX 512         /* frames per PeerFrames message */
#define SEND_BYTES_MAX (256u << 10) /* bytes per PeerFrames message (at least one frame) */
#define PIN_MAX_ANSWERS 8192
#define ANSWERS_PER_MESSAGE 1024
#define PUMP_MS 250
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define HOLD_RETRY_MS 200
#define HOLD_NOT_OWNER_MS 500
#define HOLD_BAD_MS 5000
#define NBUCKETS 4096

struct pframe {
    struct pframe *next;
    uint64_t seq;
    uint64_t gen;                  /* durable once ckpt.generation >= gen */
    int kind;                      /* PeerKind */
    size_t len;
    uint8_t data[];                /* payload */
};

struct plink;

struct pchan {                     /* sending channel (s, d) */
    struct pchan *hnext, *anext;
    uint16_t s, d;
    uint64_t last_seq;             /* last assigned */
    uint64_t acked;                /* highest acknowledged */
    uint64_t sent;                 /* highest sent on `link` */
    struct pframe *head, *tail;    /* unacked, seq order */
    size_t n;
    struct plink *link;            /* the stream its frames in flight went on */
    int64_t hold_until;            /* send nothing before (rpc_now_ms) */
    int active;
};

struct rchan {                     /* receiving channel: C d s */
    struct rchan *hnext;
    uint16_t d, s;
    int64_t epoch;
    uint64_t last;
};

struct plink {                     /* one outbound stream to a node */
    struct plink *next;
    struct peer *p;
    char *node_id;
    char *target;
    struct rpc_channel *ch;
    struct rpc_stream *st;         /* NULL: down */
    int64_t backoff_ms;
    struct timer reconnect;
    int waiting;                   /* reconnect timer armed */
};

struct pans {                      /* one answer waiting for its checkpoint */
    uint64_t gen;
    Statemesh__V1__PeerAckStatus status;
    uint16_t d, s;
    uint64_t seq, expected;
    int64_t revision;
    char reason[200];
};

struct pin {                       /* one inbound stream */
    struct pin *next, **pprev;
    struct peer *p;
    struct rpc_scall *c;
    struct pans *a;
    size_t n, cap;
    int half_closed;
    int reading;
    int finished;
};

struct peer {
    struct server *s;
    uint64_t boot;                 /* this incarnation (Call ids are per process) */
    struct pchan *chans[NBUCKETS];
    struct rchan *rchans[NBUCKETS];
    struct pchan *active;          /* channels with unacked frames */
    struct plink *links;
    struct pin *pins;
    struct timer pump;
    uint64_t frames;               /* in the outbox */
    int stopping;
};

/* ---- keys ---------------------------------------------------------------- */

static void be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
}

static void okey(uint8_t k[13], uint16_t s, uint16_t d, uint64_t seq)
{
    k[0] = 'O';
    be16(k + 1, s);
    be16(k + 3, d);
    be64(k + 5, seq);
}

static void ckey(uint8_t k[5], uint16_t d, uint16_t s)
{
    k[0] = 'C';
    be16(k + 1, d);
    be16(k + 3, s);
}

/* ---- tables -------------------------------------------------------------- */

static size_t hash2(uint16_t a, uint16_t b)
{
    return ((size_t)a * 4099u + b) % NBUCKETS;
}

static struct pchan *chan_get(struct peer *p, uint16_t s, uint16_t d, int create)
{
    struct pchan **b = &p->chans[hash2(s, d)], *c;
    for (c = *b; c; c = c->hnext)
        if (c->s == s && c->d == d) return c;
    if (!create) return NULL;
    if (!(c = calloc(1, sizeof *c))) abort();
    c->s = s;
    c->d = d;
    c->hnext = *b;
    *b = c;
    return c;
}

static void chan_activate(struct peer *p, struct pchan *c)
{
    if (c->active) return;
    c->active = 1;
    c->anext = p->active;
    p->active = c;
}

static struct rchan *rchan_get(struct peer *p, uint16_t d, uint16_t s, int create)
{
    struct rchan **b = &p->rchans[hash2(d, s)], *c;
    for (c = *b; c; c = c->hnext)
        if (c->d == d && c->s == s) return c;
    if (!create) return NULL;
    if (!(c = calloc(1, sizeof *c))) abort();
    c->d = d;
    c->s = s;
    c->hnext = *b;
    *b = c;
    return c;
}

static struct pframe *frame_new(uint64_t seq, uint64_t gen, int kind, const uint8_t *data,
                                size_t len)
{
    struct pframe *f = malloc(sizeof *f + (len ? len : 1));
    if (!f) abort();
    f->next = NULL;
    f->seq = seq;
    f->gen = gen;
    f->kind = kind;
    f->len = len;
    if (len) memcpy(f->data, data, len);
    return f;
}

static void chan_append(struct peer *p, struct pchan *c, struct pframe *f)
{
    if (c->tail) c->tail->next = f;
    else c->head = f;
    c->tail = f;
    c->n++;
    p->frames++;
    /* the outbox is memory held for messages: it counts toward
     * runtime.max_queued_bytes, so the ingress pushes back while it is full */
    p->s->stats.queued_bytes += (int64_t)(sizeof *f + f->len);
    chan_activate(p, c);
}

/* ---- start-up: O and C keys ----------------------------------------------- */

struct load {
    struct peer *p;
    char err[300];
};

static int load_one(void *arg, const char *key, size_t klen, const uint8_t *val, size_t len)
{
    struct load *l = arg;
    const uint8_t *k = (const uint8_t *)key;
    if (k[0] == 'C') {
        struct rchan *r;
        if (klen != 5 || len != 16) {
            snprintf(l->err, sizeof l->err, "malformed channel record (C key of %zu bytes, value "
                     "of %zu)", klen, len);
            return -1;
        }
        r = rchan_get(l->p, rd16(k + 1), rd16(k + 3), 1);
        r->epoch = (int64_t)rd64(val);
        r->last = rd64(val + 8);
        return 0;
    }
    if (klen != 13) {
        snprintf(l->err, sizeof l->err, "malformed outbox record (O key of %zu bytes)", klen);
        return -1;
    }
    {
        struct pchan *c = chan_get(l->p, rd16(k + 1), rd16(k + 3), 1);
        uint64_t seq = rd64(k + 5);
        Statemesh__V1__PeerFrame *pf;
        if (seq == 0) {
            if (len != 8) {
                snprintf(l->err, sizeof l->err, "malformed outbox counter");
                return -1;
            }
            c->last_seq = rd64(val);
            if (!c->head) c->acked = c->sent = c->last_seq;
            return 0;
        }
        pf = statemesh__v1__peer_frame__unpack(NULL, len, val);
        if (!pf) {
            snprintf(l->err, sizeof l->err, "outbox frame %u->%u seq %llu does not decode",
                     c->s, c->d, (unsigned long long)seq);
            return -1;
        }
        if (!c->head) c->acked = c->sent = seq - 1;
        chan_append(l->p, c, frame_new(seq, 0, (int)pf->kind, pf->payload.data, pf->payload.len));
        statemesh__v1__peer_frame__free_unpacked(pf, NULL);
    }
    return 0;
}

static void on_pump_timer(void *arg);

int peer_create(struct peer **out, struct server *s, char *err, size_t errlen)
{
    struct peer *p = calloc(1, sizeof *p);
    struct store_snapshot *snap;
    struct load l;
    int rc = -1;

    if (!p) abort();
    p->s = s;
    if (s->cfg.tls.on && !s->cfg.tls.ca) {
        snprintf(err, errlen, "runtime.tls has no ca: in a cluster the nodes connect to each "
                 "other with TLS and verify each other's certificate with runtime.tls.ca "
                 "(docs/security.md); set it, not starting");
        free(p);
        return -1;
    }
    if (s->auth.enabled) {
        bool mapped = false;
        for (size_t i = 0; i < s->auth.n_certs; i++)
            mapped |= s->auth.certs[i].role == AUTH_ROLE_PEER ||
                      s->auth.certs[i].role == AUTH_ROLE_ADMIN;
        if (!mapped)
            LOG_WARN(&s->log, "peer.auth", "msg=\"runtime.auth is set but no entry of "
                     "runtime.auth.certificates has the role peer: nodes send no token, so the "
                     "other nodes' frames are refused and messages between nodes wait in the "
                     "outboxes (docs/security.md#nodes-of-a-cluster)\"");
    }
    if (getrandom(&p->boot, sizeof p->boot, 0) != (ssize_t)sizeof p->boot)
        p->boot = (uint64_t)rpc_now_ns() ^ ((uint64_t)timer_wall_ms() << 20);
    timer_init(&p->pump, on_pump_timer, p);
    memset(&l, 0, sizeof l);
    l.p = p;
    if (!(snap = store_snapshot_take(s->store))) abort();
    {
        uint8_t lo = 'C', hi = 'D', olo = 'O', ohi = 'P';
        char serr[1100] = "";
        if (store_snapshot_scan(s->store, snap, &lo, 1, &hi, 1, load_one, &l, serr, sizeof serr) != 0 ||
            store_snapshot_scan(s->store, snap, &olo, 1, &ohi, 1, load_one, &l, serr, sizeof serr) != 0) {
            snprintf(err, errlen, "cannot read the peer outbox and channel table: %s",
                     l.err[0] ? l.err : serr);
            goto out;
        }
    }
    /* The counter key (seq 0) sorts before the frames: a channel whose
     * frames were read set acked/sent from its first frame. */
    rc = 0;
out:
    store_snapshot_release(s->store, &snap);
    if (rc != 0) {
        p->active = NULL;
        peer_destroy(&p);
        return -1;
    }
    if (p->frames)
        LOG_INFO(&s->log, "peer.outbox_recovered", "frames=%llu", (unsigned long long)p->frames);
    timer_start(&s->timers, &p->pump, rpc_now_ms() + PUMP_MS);
    *out = p;
    return 0;
}

/* ---- sending side: the outbox ---------------------------------------------- */

bool peer_remote(const struct server *s, uint32_t kg)
{
    struct cluster_owner o;
    if (!s->cluster || !s->peer) return false;
    cluster_owner(s->cluster, kg, &o);
    return o.node_id && strcmp(o.node_id, cluster_node_id(s->cluster)) != 0;
}

/* Puts the next frame of (src, dst) into the open checkpoint. */
static void outbox_put(struct server *s, uint16_t src, uint16_t dst, int kind, uint8_t *payload,
                       size_t len)
{
    struct peer *p = s->peer;
    struct pchan *c = chan_get(p, src, dst, 1);
    Statemesh__V1__PeerFrame pf = STATEMESH__V1__PEER_FRAME__INIT;
    uint8_t key[13], cnt[8], *buf;
    size_t blen;

    if (!c->head && c->acked == c->last_seq) c->sent = c->acked;
    c->last_seq++;
    pf.src_kg = src;
    pf.dst_kg = dst;
    pf.seq = c->last_seq;
    pf.first = c->last_seq == 1;
    pf.kind = (Statemesh__V1__PeerKind)kind;
    pf.payload.data = payload;
    pf.payload.len = len;
    buf = rpc_pack(&pf.base, &blen);
    okey(key, src, dst, c->last_seq);
    store_batch_put_raw(s->ckpt.batch, key, sizeof key, buf, blen);
    free(buf);
    okey(key, src, dst, 0);
    be64(cnt, c->last_seq);
    store_batch_put_raw(s->ckpt.batch, key, sizeof key, cnt, sizeof cnt);
    chan_append(p, c, frame_new(c->last_seq, s->ckpt.generation + 1, kind, payload, len));
    ckpt_touch(&s->ckpt, rpc_now_ms());
}

void peer_out_message(struct server *s, uint32_t src_kg, bool delayed, const char *type,
                      const char *id, const char *caller_type, const char *caller_id,
                      const char *typename, const uint8_t *data, size_t len,
                      const struct msg *cause)
{
    Statemesh__V1__PeerMessage pm = STATEMESH__V1__PEER_MESSAGE__INIT;
    Statemesh__V1__Address target = STATEMESH__V1__ADDRESS__INIT;
    Statemesh__V1__Address caller = STATEMESH__V1__ADDRESS__INIT;
    Statemesh__V1__TypedValue arg = STATEMESH__V1__TYPED_VALUE__INIT;
    uint8_t *buf;
    size_t blen;

    target.type = (char *)type;
    target.id = (char *)id;
    pm.target = &target;
    if (caller_type) {
        caller.type = (char *)caller_type;
        caller.id = (char *)caller_id;
        pm.caller = &caller;
    }
    arg.typename_ = (char *)typename;
    arg.value.data = (uint8_t *)data;
    arg.value.len = len;
    pm.argument = &arg;
    if (cause) {
        if (cause->reply_key) pm.reply_key = (char *)cause->reply_key;
        if (cause->call_id) {
            pm.call_id = cause->call_id;
            pm.call_kg = cause->call_kg1 ? cause->call_kg1 - 1 : src_kg;
            pm.call_boot = cause->call_kg1 ? cause->call_boot : s->peer->boot;
        }
    }
    buf = rpc_pack(&pm.base, &blen);
    outbox_put(s, (uint16_t)src_kg, store_key_group(type, id),
               delayed ? STATEMESH__V1__PEER_KIND__PEER_KIND_DELAYED
                       : STATEMESH__V1__PEER_KIND__PEER_KIND_MESSAGE, buf, blen);
    free(buf);
}

int peer_reply(struct server *s, uint32_t src_kg, const struct msg *cause, const char *typename,
               const uint8_t *data, size_t len)
{
    Statemesh__V1__PeerReply pr = STATEMESH__V1__PEER_REPLY__INIT;
    Statemesh__V1__TypedValue v = STATEMESH__V1__TYPED_VALUE__INIT;
    int remote_call = cause->call_id && cause->call_kg1;
    int rk_kg = cause->reply_key ? idem_reply_key_kg(cause->reply_key) : -1;
    int rk_remote = rk_kg >= 0 && peer_remote(s, (uint32_t)rk_kg);
    uint8_t *buf;
    size_t blen;
    uint32_t dst;

    if (!s->peer || (!remote_call && !rk_remote)) return 0;
    v.typename_ = (char *)typename;
    v.value.data = (uint8_t *)data;
    v.value.len = len;
    pr.value = &v;
    if (rk_remote) {
        dst = (uint32_t)rk_kg;
        pr.reply_key = (char *)cause->reply_key;
    } else {
        dst = cause->call_kg1 - 1;
        if (cause->reply_key) idem_reply(s, cause->reply_key, typename, data, len);
    }
    if (remote_call) {
        pr.call_id = cause->call_id;
        pr.call_boot = cause->call_boot;
        dst = cause->call_kg1 - 1;
        if (rk_remote && (uint32_t)rk_kg != dst) {
            /* the record and the Call live on two nodes: two frames */
            Statemesh__V1__PeerReply only = pr;
            only.call_id = 0;
            only.call_boot = 0;
            buf = rpc_pack(&only.base, &blen);
            outbox_put(s, (uint16_t)src_kg, (uint16_t)rk_kg, STATEMESH__V1__PEER_KIND__PEER_KIND_REPLY,
                       buf, blen);
            free(buf);
            pr.reply_key = (char *)"";
        }
    } else if (cause->call_id) {
        ckpt_add_reply(&s->ckpt, cause->call_id, typename, data, len);
        s->stats.replies++;
    }
    buf = rpc_pack(&pr.base, &blen);
    outbox_put(s, (uint16_t)src_kg, (uint16_t)dst, STATEMESH__V1__PEER_KIND__PEER_KIND_REPLY, buf,
               blen);
    free(buf);
    return 1;
}

uint64_t peer_outbox_depth(const struct peer *p, const char *node_id)
{
    uint64_t n = 0;
    if (!p) return 0;
    if (!node_id) return p->frames;
    for (const struct pchan *c = p->active; c; c = c->anext) {
        struct cluster_owner o;
        cluster_owner(p->s->cluster, c->d, &o);
        if (o.node_id && strcmp(o.node_id, node_id) == 0) n += c->n;
    }
    return n;
}

/* ---- sending side: links -------------------------------------------------- */

static void pump(struct peer *p);
static int link_open(struct plink *l);

static void on_pump_timer(void *arg)
{
    struct peer *p = arg;
    pump(p);
    if (!p->stopping) timer_start(&p->s->timers, &p->pump, rpc_now_ms() + PUMP_MS);
}

static void on_reconnect(void *arg)
{
    struct plink *l = arg;
    l->waiting = 0;
    pump(l->p);
}

/* Every channel that went out on l goes back to its last ack. */
static void rewind_link(struct peer *p, struct plink *l)
{
    for (struct pchan *c = p->active; c; c = c->anext)
        if (c->link == l) {
            c->sent = c->acked;
            c->link = NULL;
        }
}

static struct pchan *chan_for_ack(struct peer *p, uint32_t s, uint32_t d)
{
    if (s >= STORE_KEY_GROUPS || d >= STORE_KEY_GROUPS) return NULL;
    return chan_get(p, (uint16_t)s, (uint16_t)d, 0);
}

static void ack_ok(struct peer *p, struct pchan *c, uint64_t seq)
{
    struct server *s = p->s;
    if (seq <= c->acked || seq > c->sent) return;   /* old, or not sent on this stream */
    while (c->head && c->head->seq <= seq) {
        struct pframe *f = c->head;
        uint8_t key[13];
        okey(key, c->s, c->d, f->seq);
        store_batch_delete_raw(s->ckpt.batch, key, sizeof key);
        c->head = f->next;
        if (!c->head) c->tail = NULL;
        c->n--;
        p->frames--;
        s->stats.queued_bytes -= (int64_t)(sizeof *f + f->len);
        free(f);
    }
    c->acked = seq;
    ckpt_touch(&s->ckpt, rpc_now_ms());
}

static void hold(struct pchan *c, int64_t ms)
{
    c->sent = c->acked;
    c->link = NULL;
    c->hold_until = rpc_now_ms() + ms;
}

static void on_acks(void *arg, const uint8_t *data, size_t len)
{
    struct plink *l = arg;
    struct peer *p = l->p;
    struct server *s = p->s;
    Statemesh__V1__PeerAcks *a = statemesh__v1__peer_acks__unpack(NULL, len, data);
    char q[300];

    if (!a) {
        LOG_WARN(&s->log, "peer.bad_answer", "node=%s msg=\"the peer's answer does not decode; "
                 "reconnecting\"", l->node_id);
        if (l->st) rpc_stream_cancel(l->st);
        return;
    }
    l->backoff_ms = BACKOFF_MIN_MS;
    for (size_t i = 0; i < a->n_acks; i++) {
        const Statemesh__V1__PeerAck *k = a->acks[i];
        struct pchan *c = chan_for_ack(p, k->src_kg, k->dst_kg);
        if (!c || c->link != l) continue;              /* stale answer of an older stream */
        switch (k->status) {
        case STATEMESH__V1__PEER_ACK_STATUS__PEER_ACK_OK:
            ack_ok(p, c, k->seq);
            break;
        case STATEMESH__V1__PEER_ACK_STATUS__PEER_ACK_GAP:
            if (k->expected_seq > 0 && k->expected_seq - 1 > c->acked && k->expected_seq - 1 <= c->sent)
                ack_ok(p, c, k->expected_seq - 1);     /* it has them: they were applied */
            if (c->sent > c->acked) hold(c, 0);
            break;
        case STATEMESH__V1__PEER_ACK_STATUS__PEER_ACK_RETRY:
            hold(c, HOLD_RETRY_MS);
            break;
        case STATEMESH__V1__PEER_ACK_STATUS__PEER_ACK_NOT_OWNER:
            LOG_DEBUG(&s->log, "peer.not_owner", "node=%s kg=%u revision=%lld", l->node_id,
                      k->dst_kg, (long long)k->revision);
            hold(c, HOLD_NOT_OWNER_MS);
            break;
        default:
            LOG_ERROR(&s->log, "peer.refused", "node=%s src_kg=%u dst_kg=%u seq=%llu status=%d "
                      "reason=%s msg=\"the frame is kept and offered again in %d ms\"", l->node_id,
                      k->src_kg, k->dst_kg, (unsigned long long)k->seq, (int)k->status,
                      log_quote(q, sizeof q, k->reason), HOLD_BAD_MS);
            hold(c, HOLD_BAD_MS);
            break;
        }
    }
    statemesh__v1__peer_acks__free_unpacked(a, NULL);
    pump(p);
}

static void on_link_writable(void *arg)
{
    struct plink *l = arg;
    pump(l->p);
}

static void on_link_closed(void *arg, int status, const char *details)
{
    struct plink *l = arg;
    struct peer *p = l->p;
    char q[300];

    l->st = NULL;
    rewind_link(p, l);
    if (p->stopping) return;
    if (l->backoff_ms == BACKOFF_MIN_MS)          /* once per outage, then at debug level */
        LOG_INFO(&p->s->log, "peer.link_down", "node=%s target=%s status=%s details=%s "
                 "retry_in_ms=%lld", l->node_id, l->target, rpc_status_name(status),
                 log_quote(q, sizeof q, details), (long long)l->backoff_ms);
    else
        LOG_DEBUG(&p->s->log, "peer.link_down", "node=%s target=%s status=%s retry_in_ms=%lld",
                  l->node_id, l->target, rpc_status_name(status), (long long)l->backoff_ms);
    l->waiting = 1;
    timer_start(&p->s->timers, &l->reconnect, rpc_now_ms() + l->backoff_ms);
    if (l->backoff_ms < BACKOFF_MAX_MS) l->backoff_ms *= 2;
}

static int link_open(struct plink *l)
{
    static const struct rpc_stream_callbacks cb = {on_acks, on_link_writable, on_link_closed};
    struct server *s = l->p->s;
    if (!l->ch) {
        struct rpc_channel_options co = {0};
        int rc;
        co.keepalive_ms = 10000;
        if (s->cfg.tls.on) {
            /* the runtime's CA verifies the other node; its own pair is our identity */
            struct cfg_tls t = {true, s->cfg.tls.cert, s->cfg.tls.key, s->cfg.tls.ca, false};
            char why[600], q[700];
            if (!(co.creds = tls_channel_credentials(&t, why, sizeof why))) {
                LOG_ERROR(&s->log, "peer.tls", "node=%s err=%s", l->node_id,
                          log_quote(q, sizeof q, why));
                return -1;
            }
        }
        rc = rpc_channel_create(&l->ch, &s->loop, l->target, &co);
        if (co.creds) grpc_channel_credentials_release(co.creds);
        if (rc != 0) return -1;
    }
    if (rpc_stream_open(&l->st, l->ch, "/statemesh.v1.Peer/Deliver", &cb, l) != 0) {
        l->st = NULL;
        return -1;
    }
    return 0;
}

static struct plink *link_for(struct peer *p, const struct cluster_owner *o)
{
    struct plink *l;
    for (l = p->links; l; l = l->next)
        if (strcmp(l->node_id, o->node_id) == 0) break;
    if (l && strcmp(l->target, o->advertise) != 0 && !l->st && !l->waiting &&
        (!l->ch || rpc_channel_calls(l->ch) == 0)) {
        /* the node moved: a new channel to its new address */
        if (l->ch) rpc_channel_destroy(&l->ch);
        free(l->target);
        if (!(l->target = strdup(o->advertise))) abort();
    }
    if (l) return l;
    if (!(l = calloc(1, sizeof *l))) abort();
    l->p = p;
    if (!(l->node_id = strdup(o->node_id)) || !(l->target = strdup(o->advertise))) abort();
    l->backoff_ms = BACKOFF_MIN_MS;
    timer_init(&l->reconnect, on_reconnect, l);
    l->next = p->links;
    p->links = l;
    return l;
}

/* Appends c's next durable frames for l to fr (up to the limits). */
static void take_frames(struct peer *p, struct pchan *c, struct plink *l, int64_t epoch,
                        Statemesh__V1__PeerFrame **fv, Statemesh__V1__PeerFrame *fs, size_t *n,
                        size_t *bytes)
{
    uint64_t gen = p->s->ckpt.generation;
    for (struct pframe *f = c->head; f && *n < SEND_FRAMES_MAX; f = f->next) {
        Statemesh__V1__PeerFrame *x;
        if (f->seq <= c->sent) continue;
        if (f->gen > gen || f->seq > c->acked + PEER_WINDOW) break;
        if (*n > 0 && *bytes + f->len > SEND_BYTES_MAX) break;
        x = &fs[*n];
        statemesh__v1__peer_frame__init(x);
        x->src_kg = c->s;
        x->src_epoch = epoch;
        x->dst_kg = c->d;
        x->seq = f->seq;
        x->first = f->seq == 1;
        x->kind = (Statemesh__V1__PeerKind)f->kind;
        x->payload.data = f->data;
        x->payload.len = f->len;
        fv[*n] = x;
        (*n)++;
        *bytes += f->len + 32;
        c->sent = f->seq;
        c->link = l;
    }
}

static void pump(struct peer *p)
{
    struct server *s = p->s;
    Statemesh__V1__PeerFrame **fv, *fs;
    int64_t now = rpc_now_ms();
    struct pchan **cp;

    if (p->stopping || !s->cluster || cluster_paused(s->cluster)) return;
    /* drop channels that are fully acknowledged from the active list */
    for (cp = &p->active; *cp;) {
        struct pchan *c = *cp;
        if (!c->head) {
            *cp = c->anext;
            c->active = 0;
            c->link = NULL;
            continue;
        }
        cp = &c->anext;
    }
    fs = calloc(SEND_FRAMES_MAX, sizeof *fs);
    fv = calloc(SEND_FRAMES_MAX, sizeof *fv);
    if (!fs || !fv) abort();
    for (;;) {
        struct plink *target = NULL;
        size_t n = 0, bytes = 0;
        for (struct pchan *c = p->active; c; c = c->anext) {
            struct cluster_owner so, o;
            struct plink *l;
            if (c->hold_until > now || !c->head) continue;
            if (c->head->gen > s->ckpt.generation) continue;
            if (!cluster_serves(s->cluster, c->s)) continue;       /* fenced, or no longer ours */
            cluster_owner(s->cluster, c->d, &o);
            if (!o.node_id || !o.advertise[0] || !o.alive) continue;
            l = link_for(p, &o);
            if (c->link && c->link != l) {                          /* re-routed */
                c->sent = c->acked;
                c->link = NULL;
            }
            if (!l->st) {
                if (!l->waiting && link_open(l) != 0) {
                    l->waiting = 1;
                    timer_start(&s->timers, &l->reconnect, now + l->backoff_ms);
                }
                continue;
            }
            if (!rpc_stream_writable(l->st)) continue;
            if (target && l != target) continue;
            target = l;
            cluster_owner(s->cluster, c->s, &so);
            take_frames(p, c, l, so.epoch, fv, fs, &n, &bytes);
            if (n >= SEND_FRAMES_MAX || bytes >= SEND_BYTES_MAX) break;
        }
        if (n == 0) break;
        {
            Statemesh__V1__PeerFrames m = STATEMESH__V1__PEER_FRAMES__INIT;
            uint8_t *buf;
            size_t blen;
            m.src_node = (char *)cluster_node_id(s->cluster);
            m.n_frames = n;
            m.frames = fv;
            buf = rpc_pack(&m.base, &blen);
            if (rpc_stream_send(target->st, buf, blen) != 0) rewind_link(p, target);
        }
    }
    free(fs);
    free(fv);
}

void peer_kick(struct server *s)
{
    if (s->peer) pump(s->peer);
}

/* ---- receiving side -------------------------------------------------------- */

static void pin_flush(struct pin *in);

static void answer(struct pin *in, Statemesh__V1__PeerAckStatus st, const Statemesh__V1__PeerFrame *f,
                   uint64_t expected, int64_t revision, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static void answer(struct pin *in, Statemesh__V1__PeerAckStatus st, const Statemesh__V1__PeerFrame *f,
                   uint64_t expected, int64_t revision, const char *fmt, ...)
{
    struct server *s = in->p->s;
    struct pans *a;
    va_list ap;

    if (in->n == in->cap) {
        size_t cap = in->cap ? in->cap * 2 : 64;
        struct pans *na = realloc(in->a, cap * sizeof *na);
        if (!na) abort();
        in->a = na;
        in->cap = cap;
    }
    a = &in->a[in->n++];
    a->gen = s->ckpt.generation + 1;
    a->status = st;
    a->d = (uint16_t)(f->dst_kg < STORE_KEY_GROUPS ? f->dst_kg : 0xffff);
    a->s = (uint16_t)(f->src_kg < STORE_KEY_GROUPS ? f->src_kg : 0xffff);
    a->seq = f->seq;
    a->expected = expected;
    a->revision = revision;
    va_start(ap, fmt);
    vsnprintf(a->reason, sizeof a->reason, fmt, ap);
    va_end(ap);
    s->ckpt.forced = 1;                /* every answer waits for a commit */
    ckpt_touch(&s->ckpt, rpc_now_ms());
}

/* Checks and applies a MESSAGE or DELAYED payload. Returns NULL or why not. */
static const char *apply_message(struct peer *p, const Statemesh__V1__PeerFrame *f, char *why,
                                 size_t whylen)
{
    struct server *s = p->s;
    Statemesh__V1__PeerMessage *pm = statemesh__v1__peer_message__unpack(NULL, f->payload.len,
                                                                         f->payload.data);
    const char *e = NULL;
    struct msg *m;
    int idx;

    if (!pm) return "the payload is not a PeerMessage";
    if (!pm->target || !pm->argument || !pm->argument->typename_[0]) {
        e = "the message has no target or no typed argument";
        goto out;
    }
    if ((e = addr_check_type(pm->target->type, strlen(pm->target->type))) ||
        (e = addr_check_id(pm->target->id, strlen(pm->target->id)))) {
        snprintf(why, whylen, "invalid target address: %s", e);
        e = why;
        goto out;
    }
    if (pm->caller && ((e = addr_check_type(pm->caller->type, strlen(pm->caller->type))) ||
                       (e = addr_check_id(pm->caller->id, strlen(pm->caller->id))))) {
        snprintf(why, whylen, "invalid caller address: %s", e);
        e = why;
        goto out;
    }
    if (store_key_group(pm->target->type, pm->target->id) != f->dst_kg) {
        e = "the target address is not in dst_kg";
        goto out;
    }
    idx = cfg_match_endpoint(&s->cfg, pm->target->type);
    if (idx < 0 || ep_rejects_type(&s->endpoints[idx], pm->target->type)) {
        snprintf(why, whylen, "no endpoint of this node serves function type %.200s",
                 pm->target->type);
        e = why;
        goto out;
    }
    if (pm->argument->value.len > s->cfg.max_message_bytes) {
        snprintf(why, whylen, "message of %zu bytes, over max_message_bytes %zu",
                 pm->argument->value.len, s->cfg.max_message_bytes);
        e = why;
        goto out;
    }
    if (pm->call_id && pm->call_kg >= STORE_KEY_GROUPS) {
        e = "call_kg out of range";
        goto out;
    }
    if (pm->reply_key[0] && idem_reply_key_kg(pm->reply_key) < 0) {
        e = "malformed reply_key";
        goto out;
    }
    m = msg_create(pm->caller ? pm->caller->type : NULL, pm->caller ? pm->caller->id : NULL,
                   pm->argument->typename_, pm->argument->value.data, pm->argument->value.len,
                   pm->reply_key[0] ? pm->reply_key : NULL);
    if (pm->call_id) {
        m->call_id = pm->call_id;
        if (!(cluster_serves(s->cluster, pm->call_kg) && pm->call_boot == p->boot)) {
            m->call_kg1 = pm->call_kg + 1;             /* the Call waits on another node */
            m->call_boot = pm->call_boot;
        }
    }
    disp_accept(s, &s->endpoints[idx], pm->target->type, pm->target->id, m);
out:
    statemesh__v1__peer_message__free_unpacked(pm, NULL);
    return e;
}

static const char *apply_reply(struct peer *p, const Statemesh__V1__PeerFrame *f)
{
    struct server *s = p->s;
    Statemesh__V1__PeerReply *pr = statemesh__v1__peer_reply__unpack(NULL, f->payload.len,
                                                                     f->payload.data);
    const char *e = NULL;
    if (!pr) return "the payload is not a PeerReply";
    if (!pr->value || !pr->value->typename_[0]) e = "the reply has no typed value";
    else if (pr->reply_key[0] && idem_reply_key_kg(pr->reply_key) != (int)f->dst_kg)
        e = "the reply_key's address is not in dst_kg";
    if (!e) {
        if (pr->reply_key[0])
            idem_reply(s, pr->reply_key, pr->value->typename_, pr->value->value.data,
                       pr->value->value.len);
        if (pr->call_id && pr->call_boot == p->boot) {
            ckpt_add_reply(&s->ckpt, pr->call_id, pr->value->typename_, pr->value->value.data,
                           pr->value->value.len);
            s->stats.replies++;
        }
    }
    statemesh__v1__peer_reply__free_unpacked(pr, NULL);
    return e;
}

static void judge(struct pin *in, const Statemesh__V1__PeerFrame *f)
{
    struct peer *p = in->p;
    struct server *s = p->s;
    struct cluster_owner o;
    struct rchan *r;
    const char *e;
    char why[300];

    if (!s->cluster || !p) {
        answer(in, STATEMESH__V1__PEER_ACK_STATUS__PEER_ACK_INVALID, f, 0, 0,
               "this runtime is not part of a cluster");
        return;
    }
    if (f->dst_kg >= STORE_KEY_GROUPS || f->src_kg >= STORE_KEY_GROUPS || f->seq == 0) {
        answer(in, STATEMESH__V1__PEER_ACK_STATUS__PEER_ACK_INVALID, f, 0, 0,
               "key group out of range (0-%d) or seq 0", STORE_KEY_GROUPS - 1);
        return;
    }
    if (cluster_paused(s->cluster)) {
        answer(in, STATEMESH__V1__PEER_ACK_STATUS__PEER_ACK_RETRY, f, 0, 0,
               "node %s is paused by a savepoint barrier", cluster_node_id(s->cluster));
        return;
    }
    if (!cluster_serves(s->cluster, f->dst_kg)) {
        cluster_owner(s->cluster, f->dst_kg, &o);
        if (o.node_id && strcmp(o.node_id, cluster_node_id(s->cluster)) == 0)
            answer(in, STATEMESH__V1__PEER_ACK_STATUS__PEER_ACK_RETRY, f, 0, 0,
                   "node %s is fenced", o.node_id);
        else
            answer(in, STATEMESH__V1__PEER_ACK_STATUS__PEER_ACK_NOT_OWNER, f, 0, o.epoch,
                   "key group %u is owned by %s, not by %s", f->dst_kg,
                   o.node_id ? o.node_id : "nobody yet", cluster_node_id(s->cluster));
        return;
    }
    cluster_owner(s->cluster, f->src_kg, &o);
    if (o.node_id && f->src_epoch < o.epoch) {
        answer(in, STATEMESH__V1__PEER_ACK_STATUS__PEER_ACK_REJECTED, f, 0, o.epoch,
               "epoch %lld of key group %u is older than its range's epoch %lld",
               (long long)f->src_epoch, f->src_kg, (long long)o.epoch);
        return;
    }
    r = rchan_get(p, (uint16_t)f->dst_kg, (uint16_t)f->src_kg, 0);
    if (r && f->src_epoch < r->epoch) {
        answer(in, STATEMESH__V1__PEER_ACK_STATUS__PEER_ACK_REJECTED, f, 0, r->epoch,
               "epoch %lld is below the channel's epoch %lld", (long long)f->src_epoch,
               (long long)r->epoch);
        return;
    }
    if (r && f->seq <= r->last) {
        answer(in, STATEMESH__V1__PEER_ACK_STATUS__PEER_ACK_OK, f, 0, 0, "duplicate");
        return;
    }
    if (f->seq != (r ? r->last : 0) + 1 && !(f->first && f->src_epoch > (r ? r->epoch : 0))) {
        answer(in, STATEMESH__V1__PEER_ACK_STATUS__PEER_ACK_GAP, f, (r ? r->last : 0) + 1, 0,
               "expected seq %llu", (unsigned long long)((r ? r->last : 0) + 1));
        return;
    }
    switch (f->kind) {
    case STATEMESH__V1__PEER_KIND__PEER_KIND_MESSAGE:
    case STATEMESH__V1__PEER_KIND__PEER_KIND_DELAYED:
        if (s->stats.queued_bytes + (int64_t)s->mboxes.bytes >= (int64_t)s->cfg.max_queued_bytes) {
            answer(in, STATEMESH__V1__PEER_ACK_STATUS__PEER_ACK_RETRY, f, 0, 0,
                   "node %s is overloaded (runtime.max_queued_bytes)", cluster_node_id(s->cluster));
            return;
        }
        e = apply_message(p, f, why, sizeof why);
        break;
    case STATEMESH__V1__PEER_KIND__PEER_KIND_REPLY:
        e = apply_reply(p, f);
        break;
    default:
        e = "unknown frame kind";
        break;
    }
    if (e) {
        char q[400];
        LOG_WARN(&s->log, "peer.invalid_frame", "src_kg=%u dst_kg=%u seq=%llu reason=%s",
                 f->src_kg, f->dst_kg, (unsigned long long)f->seq, log_quote(q, sizeof q, e));
        answer(in, STATEMESH__V1__PEER_ACK_STATUS__PEER_ACK_INVALID, f, 0, 0, "%s", e);
        return;
    }
    {
        uint8_t key[5], val[16];
        r = rchan_get(p, (uint16_t)f->dst_kg, (uint16_t)f->src_kg, 1);
        if (f->src_epoch > r->epoch) r->epoch = f->src_epoch;
        r->last = f->seq;
        ckey(key, r->d, r->s);
        be64(val, (uint64_t)r->epoch);
        be64(val + 8, r->last);
        store_batch_put_raw(s->ckpt.batch, key, sizeof key, val, sizeof val);
    }
    answer(in, STATEMESH__V1__PEER_ACK_STATUS__PEER_ACK_OK, f, 0, 0, "applied");
}

static void pin_free(struct pin *in)
{
    if (in->pprev) {
        *in->pprev = in->next;
        if (in->next) in->next->pprev = in->pprev;
    }
    free(in->a);
    free(in);
}

static void pin_read(struct pin *in)
{
    if (in->finished || in->half_closed || in->n >= PIN_MAX_ANSWERS) return;
    rpc_scall_read(in->c);
}

static void pin_on_message(void *arg, struct rpc_scall *c, const uint8_t *data, size_t len)
{
    struct pin *in = arg;
    Statemesh__V1__PeerFrames *m;

    if (!in->p) {                      /* the runtime is shutting down */
        in->finished = 1;
        rpc_scall_finish(c, RPC_UNAVAILABLE, "the node is stopping");
        pin_free(in);
        return;
    }
    if (!data) {
        in->half_closed = 1;
        pin_flush(in);
        return;
    }
    m = statemesh__v1__peer_frames__unpack(NULL, len, data);
    if (!m) {
        in->finished = 1;
        rpc_scall_finish(in->c, RPC_INVALID_ARGUMENT, "the message is not a PeerFrames "
                         "(protocol/statemesh/v1/peer.proto)");
        pin_free(in);
        return;
    }
    for (size_t i = 0; i < m->n_frames; i++) judge(in, m->frames[i]);
    statemesh__v1__peer_frames__free_unpacked(m, NULL);
    pin_read(in);
}

/* Sends the answers whose checkpoint is durable. */
static void pin_flush(struct pin *in)
{
    struct server *s = in->p->s;
    size_t ready = 0;

    if (in->finished) return;
    while (ready < in->n && in->a[ready].gen <= s->ckpt.generation) ready++;
    if (ready > 0 && rpc_scall_writable(in->c)) {
        Statemesh__V1__PeerAcks m = STATEMESH__V1__PEER_ACKS__INIT;
        size_t n = ready < ANSWERS_PER_MESSAGE ? ready : ANSWERS_PER_MESSAGE;
        Statemesh__V1__PeerAck *av = calloc(n, sizeof *av), **ap = calloc(n, sizeof *ap);
        uint8_t *buf;
        size_t blen;
        if (!av || !ap) abort();
        for (size_t i = 0; i < n; i++) {
            statemesh__v1__peer_ack__init(&av[i]);
            av[i].dst_kg = in->a[i].d;
            av[i].src_kg = in->a[i].s;
            av[i].seq = in->a[i].seq;
            av[i].status = in->a[i].status;
            av[i].expected_seq = in->a[i].expected;
            av[i].revision = in->a[i].revision;
            av[i].reason = in->a[i].reason;
            ap[i] = &av[i];
        }
        m.n_acks = n;
        m.acks = ap;
        buf = rpc_pack(&m.base, &blen);
        free(av);
        free(ap);
        memmove(in->a, in->a + n, (in->n - n) * sizeof *in->a);
        in->n -= n;
        rpc_scall_send(in->c, buf, blen);
        pin_read(in);
        return;
    }
    if (in->half_closed && in->n == 0 && rpc_scall_writable(in->c)) {
        in->finished = 1;
        rpc_scall_finish(in->c, RPC_OK, "%s", "done");
        pin_free(in);
    }
}

static void pin_on_writable(void *arg, struct rpc_scall *c)
{
    struct pin *in = arg;
    (void)c;
    if (in->p) pin_flush(in);
}

static void pin_on_cancel(void *arg, struct rpc_scall *c)
{
    (void)c;
    pin_free(arg);
}

static void on_open(void *arg, struct rpc_scall *c)
{
    static const struct rpc_scall_callbacks cb = {pin_on_message, pin_on_writable, pin_on_cancel};
    struct server *s = arg;
    struct pin *in;

    if (!s->peer) {
        rpc_scall_finish(c, RPC_FAILED_PRECONDITION, "this runtime is not part of a cluster: it "
                         "takes no Peer frames");
        return;
    }
    if (!(in = calloc(1, sizeof *in))) abort();
    in->p = s->peer;
    in->c = c;
    in->next = s->peer->pins;
    if (in->next) in->next->pprev = &in->next;
    in->pprev = &s->peer->pins;
    s->peer->pins = in;
    rpc_scall_set(c, &cb, in);
    rpc_scall_read(c);
}

int peer_register(struct rpc_server *rpc, struct server *s)
{
    return rpc_server_add_stream(rpc, "/statemesh.v1.Peer/Deliver", on_open, s);
}

void peer_after_commit(struct server *s)
{
    struct peer *p = s->peer;
    struct pin *in, *next;
    if (!p) return;
    for (in = p->pins; in; in = next) {
        next = in->next;
        pin_flush(in);
    }
    pump(p);
}

/* ---- shutdown ------------------------------------------------------------- */

void peer_stop(struct peer *p)
{
    if (!p || p->stopping) return;
    p->stopping = 1;
    timer_stop(&p->s->timers, &p->pump);
    for (struct plink *l = p->links; l; l = l->next) {
        if (l->waiting) timer_stop(&p->s->timers, &l->reconnect);
        l->waiting = 0;
        if (l->st) rpc_stream_cancel(l->st);
    }
}

bool peer_idle(const struct peer *p)
{
    if (!p) return true;
    for (const struct plink *l = p->links; l; l = l->next)
        if (l->st || (l->ch && rpc_channel_calls(l->ch) > 0)) return false;
    return true;
}

void peer_destroy(struct peer **pp)
{
    struct peer *p = *pp;
    if (!p) return;
    timer_stop(&p->s->timers, &p->pump);
    while (p->links) {
        struct plink *l = p->links;
        p->links = l->next;
        timer_stop(&p->s->timers, &l->reconnect);
        if (l->ch) rpc_channel_destroy(&l->ch);
        free(l->node_id);
        free(l->target);
        free(l);
    }
    while (p->pins) {                  /* streams the server cancelled are gone already */
        struct pin *in = p->pins;
        in->p = NULL;
        p->pins = in->next;
        in->pprev = NULL;
        if (p->pins) p->pins->pprev = &p->pins;
    }
    for (size_t i = 0; i < NBUCKETS; i++) {
        while (p->chans[i]) {
            struct pchan *c = p->chans[i];
            p->chans[i] = c->hnext;
            while (c->head) {
                struct pframe *f = c->head;
                c->head = f->next;
                free(f);
            }
            free(c);
        }
        while (p->rchans[i]) {
            struct rchan *r = p->rchans[i];
            p->rchans[i] = r->hnext;
            free(r);
        }
    }
    free(p);
    *pp = NULL;
}
