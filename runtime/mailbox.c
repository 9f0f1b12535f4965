/* mailbox — see mailbox.h. */
#include "mailbox.h"
#include "trace.h"

#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#define MBOX_MIN_BUCKETS 1024

struct msg *msg_create(const char *caller_type, const char *caller_id, const char *typename,
                       const uint8_t *data, size_t len, const char *reply_key)
{
    size_t ctl = caller_type ? strlen(caller_type) + 1 : 0;
    size_t cil = caller_id ? strlen(caller_id) + 1 : 0;
    size_t tnl = strlen(typename) + 1;
    size_t rkl = reply_key && reply_key[0] ? strlen(reply_key) + 1 : 0;
    struct msg *m = malloc(sizeof *m + ctl + cil + tnl + rkl + len);
    char *p;

    if (!m) abort();
    memset(m, 0, sizeof *m);
    p = (char *)(m + 1);
    if (caller_type) {
        memcpy(p, caller_type, ctl);
        m->caller_type = p;
        p += ctl;
    }
    if (caller_id) {
        memcpy(p, caller_id, cil);
        m->caller_id = p;
        p += cil;
    }
    memcpy(p, typename, tnl);
    m->typename = p;
    p += tnl;
    if (rkl) {
        memcpy(p, reply_key, rkl);
        m->reply_key = p;
        p += rkl;
    }
    if (len) memcpy(p, data, len);
    m->data = (const uint8_t *)p;
    m->len = len;
    return m;
}

void msg_destroy(struct msg *m)
{
    free(m->trace);
    free(m);
}

struct mbox_op *mbox_op_fn(void (*fn)(struct server *s, struct mbox *mb, void *arg),
                           void (*drop)(void *arg), void *arg)
{
    struct mbox_op *op = calloc(1, sizeof *op);
    if (!op) abort();
    op->fn = fn;
    op->drop = drop;
    op->arg = arg;
    return op;
}

struct mbox_op *mbox_op_create(uint64_t call_id, const char *name, const char *typename,
                               const uint8_t *data, size_t len)
{
    size_t nl = name ? strlen(name) + 1 : 0, tl = typename ? strlen(typename) + 1 : 0;
    struct mbox_op *op = malloc(sizeof *op + nl + tl + len);
    char *p;

    if (!op) abort();
    memset(op, 0, sizeof *op);
    op->call_id = call_id;
    p = (char *)(op + 1);
    if (name) {
        memcpy(p, name, nl);
        op->name = p;
        p += nl;
    }
    if (typename) {
        memcpy(p, typename, tl);
        op->typename = p;
        p += tl;
    }
    if (len) memcpy(p, data, len);
    op->data = (const uint8_t *)p;
    op->len = len;
    return op;
}

size_t msg_footprint(const struct msg *m)
{
    return sizeof *m + (m->caller_type ? strlen(m->caller_type) + strlen(m->caller_id) + 2 : 0) +
           strlen(m->typename) + 1 + (m->reply_key ? strlen(m->reply_key) + 1 : 0) + m->len +
           (m->trace ? sizeof *m->trace + strlen(m->trace->state) + 1 : 0);
}

static uint64_t addr_hash(const char *type, const char *id)
{
    char buf[2048];
    size_t tl = strlen(type) + 1, il = strlen(id);
    uint64_t h;
    char *p = buf;

    if (tl + il > sizeof buf && !(p = malloc(tl + il))) abort();
    memcpy(p, type, tl);
    memcpy(p + tl, id, il);
    h = XXH3_64bits(p, tl + il);
    if (p != buf) free(p);
    return h;
}

void mbox_table_init(struct mbox_table *t)
{
    t->nbuckets = MBOX_MIN_BUCKETS;
    t->buckets = calloc(t->nbuckets, sizeof *t->buckets);
    if (!t->buckets) abort();
    t->count = 0;
}

static void free_chain(struct msg *m)
{
    while (m) {
        struct msg *next = m->next;
        msg_destroy(m);
        m = next;
    }
}

static void free_ops(struct mbox *mb)
{
    while (mb->ops) {
        struct mbox_op *next = mb->ops->next;
        if (mb->ops->drop) mb->ops->drop(mb->ops->arg);
        free(mb->ops);
        mb->ops = next;
    }
}

static void free_fail(struct mbox *mb)
{
    if (!mb->fail) return;
    free(mb->fail->last_error);
    free(mb->fail);
    mb->fail = NULL;
}

struct mbox_fail *mbox_fail(struct mbox *mb)
{
    if (!mb->fail && !(mb->fail = calloc(1, sizeof *mb->fail))) abort();
    return mb->fail;
}

void mbox_each(const struct mbox_table *t, int (*fn)(void *arg, struct mbox *mb), void *arg)
{
    for (size_t i = 0; i < t->nbuckets; i++)
        for (struct mbox *mb = t->buckets[i]; mb; mb = mb->hnext)
            if (fn(arg, mb)) return;
}

void mbox_table_cleanup(struct mbox_table *t)
{
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct mbox *mb = t->buckets[i];
        while (mb) {
            struct mbox *next = mb->hnext;
            free_chain(mb->head);
            free_chain(mb->batch);
            free_fail(mb);
            free_ops(mb);
            free(mb);
            mb = next;
        }
    }
    free(t->buckets);
    t->buckets = NULL;
    t->nbuckets = t->count = 0;
}

struct mbox *mbox_find(const struct mbox_table *t, const char *type, const char *id)
{
    uint64_t h = addr_hash(type, id);
    for (struct mbox *mb = t->buckets[h & (t->nbuckets - 1)]; mb; mb = mb->hnext)
        if (mb->hash == h && strcmp(mb->type, type) == 0 && strcmp(mb->id, id) == 0) return mb;
    return NULL;
}

/* Rehashes into n buckets (a power of two). */
static void resize(struct mbox_table *t, size_t n)
{
    struct mbox **b = calloc(n, sizeof *b);
    if (!b) abort();
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct mbox *mb = t->buckets[i];
        while (mb) {
            struct mbox *next = mb->hnext;
            mb->hnext = b[mb->hash & (n - 1)];
            b[mb->hash & (n - 1)] = mb;
            mb = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
}

struct mbox *mbox_get(struct mbox_table *t, const char *type, const char *id, struct endpoint *ep)
{
    struct mbox *mb = mbox_find(t, type, id);
    size_t tl, il;
    char *p;

    if (mb) return mb;
    if (t->count >= t->nbuckets) resize(t, t->nbuckets * 2);
    tl = strlen(type) + 1;
    il = strlen(id) + 1;
    mb = calloc(1, sizeof *mb + tl + il);
    if (!mb) abort();
    p = (char *)(mb + 1);
    memcpy(p, type, tl);
    memcpy(p + tl, id, il);
    mb->type = p;
    mb->id = p + tl;
    mb->hash = addr_hash(type, id);
    mb->ep = ep;
    mb->state = MBOX_IDLE;
    timer_init(&mb->retry, NULL, mb);
    mb->hnext = t->buckets[mb->hash & (t->nbuckets - 1)];
    t->buckets[mb->hash & (t->nbuckets - 1)] = mb;
    t->count++;
    t->bytes += sizeof *mb + tl + il;
    return mb;
}

void mbox_remove(struct mbox_table *t, struct mbox *mb)
{
    struct mbox **pp = &t->buckets[mb->hash & (t->nbuckets - 1)];
    while (*pp != mb) pp = &(*pp)->hnext;
    *pp = mb->hnext;
    t->count--;
    t->bytes -= sizeof *mb + strlen(mb->type) + strlen(mb->id) + 2;
    free_chain(mb->head);
    free_chain(mb->batch);
    free_fail(mb);
    free_ops(mb);
    free(mb);
    /* After a burst over many addresses the table shrinks with the active
     * set (halving at 1/8 full leaves it 1/4 full: no resize ping-pong). */
    if (t->nbuckets > MBOX_MIN_BUCKETS && t->count < t->nbuckets / 8)
        resize(t, t->nbuckets / 2);
}

void mbox_push(struct mbox *mb, struct msg *m)
{
    m->next = NULL;
    if (mb->tail) mb->tail->next = m;
    else mb->head = m;
    mb->tail = m;
    mb->nqueued++;
}

uint32_t mbox_take_batch(struct mbox *mb, uint32_t max)
{
    struct msg *last = NULL, *m = mb->head;
    uint32_t n = 0;
    while (m && n < max) {
        last = m;
        m = m->next;
        n++;
    }
    if (n == 0) return 0;
    mb->batch = mb->head;
    last->next = NULL;
    mb->head = m;
    if (!m) mb->tail = NULL;
    mb->nbatch = n;
    mb->nqueued -= n;
    return n;
}

void mbox_return_batch(struct mbox *mb)
{
    struct msg *last = mb->batch;
    if (!last) return;
    while (last->next) last = last->next;
    last->next = mb->head;
    if (!mb->head) mb->tail = last;
    mb->head = mb->batch;
    mb->nqueued += mb->nbatch;
    mb->batch = NULL;
    mb->nbatch = 0;
}

void mbox_drop_batch(struct mbox *mb)
{
    free_chain(mb->batch);
    mb->batch = NULL;
    mb->nbatch = 0;
}

struct msg *mbox_batch_at(const struct mbox *mb, uint32_t i)
{
    struct msg *m = mb->batch;
    while (i-- && m) m = m->next;
    return m;
}

void mbox_list_push(struct mbox_list *l, struct mbox *mb)
{
    mb->lnext = NULL;
    if (l->tail) l->tail->lnext = mb;
    else l->head = mb;
    l->tail = mb;
    l->len++;
}

struct mbox *mbox_list_pop(struct mbox_list *l)
{
    struct mbox *mb = l->head;
    if (!mb) return NULL;
    l->head = mb->lnext;
    if (!l->head) l->tail = NULL;
    mb->lnext = NULL;
    l->len--;
    return mb;
}
