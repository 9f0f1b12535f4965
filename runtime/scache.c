/* scache — see scache.h. */
#include "scache.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

struct sc_slot {
    char *name;
    char *typename;            /* NULL: absent */
    uint8_t *data;
    size_t len;
    int64_t expires_at_ms;
};

struct sc_entry {
    struct sc_entry *hnext, *prev, *next;
    uint64_t hash;
    uint64_t pin_gen;          /* 0 or the generation of its last write */
    struct sc_slot *slots;
    size_t nslots;
    size_t bytes;
    size_t klen;
    char key[];                /* type '\0' id '\0' */
};

#define ENTRY_OVERHEAD 96
#define SLOT_OVERHEAD 48

void scache_init(struct scache *c, size_t budget)
{
    memset(c, 0, sizeof *c);
    c->budget = budget;
}

static void slot_clear(struct sc_slot *sl)
{
    free(sl->typename);
    free(sl->data);
    sl->typename = NULL;
    sl->data = NULL;
    sl->len = 0;
}

static void entry_free(struct sc_entry *e)
{
    for (size_t i = 0; i < e->nslots; i++) {
        slot_clear(&e->slots[i]);
        free(e->slots[i].name);
    }
    free(e->slots);
    free(e);
}

void scache_cleanup(struct scache *c)
{
    struct sc_entry *e = c->head, *next;
    for (; e; e = next) {
        next = e->next;
        entry_free(e);
    }
    free(c->buckets);
    memset(c, 0, sizeof *c);
}

static size_t make_key(char *buf, const char *type, const char *id)
{
    size_t tl = strlen(type), il = strlen(id);
    if (buf) {
        memcpy(buf, type, tl + 1);
        memcpy(buf + tl + 1, id, il + 1);
    }
    return tl + il + 2;
}

static void lru_unlink(struct scache *c, struct sc_entry *e)
{
    if (e->prev) e->prev->next = e->next;
    else c->head = e->next;
    if (e->next) e->next->prev = e->prev;
    else c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_front(struct scache *c, struct sc_entry *e)
{
    e->next = c->head;
    e->prev = NULL;
    if (c->head) c->head->prev = e;
    c->head = e;
    if (!c->tail) c->tail = e;
}

static struct sc_entry *find(struct scache *c, const char *type, const char *id, uint64_t *hash,
                             char *key, size_t *klen)
{
    struct sc_entry *e;
    *klen = make_key(key, type, id);
    *hash = XXH3_64bits(key, *klen);
    if (!c->nbuckets) return NULL;
    for (e = c->buckets[*hash & (c->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == *hash && e->klen == *klen && memcmp(e->key, key, *klen) == 0) return e;
    return NULL;
}

static void grow(struct scache *c)
{
    size_t n = c->nbuckets ? c->nbuckets * 2 : 1024;
    struct sc_entry **b = calloc(n, sizeof *b);
    if (!b) abort();
    for (size_t i = 0; i < c->nbuckets; i++) {
        struct sc_entry *e = c->buckets[i], *next;
        for (; e; e = next) {
            next = e->hnext;
            e->hnext = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = n;
}

/* Keys of valid addresses are at most 1 + 256 + 1 + 1024 + 1 bytes. */
#define KEY_MAX 1300

int scache_get(struct scache *c, const char *type, const char *id, const char *name,
               struct sc_value *v)
{
    char key[KEY_MAX];
    uint64_t hash;
    size_t klen;
    struct sc_entry *e;

    if (make_key(NULL, type, id) > sizeof key) return 0;
    e = find(c, type, id, &hash, key, &klen);
    if (e) {
        for (size_t i = 0; i < e->nslots; i++) {
            const struct sc_slot *sl = &e->slots[i];
            if (strcmp(sl->name, name) != 0) continue;
            v->typename = sl->typename;
            v->data = sl->data;
            v->len = sl->len;
            v->expires_at_ms = sl->expires_at_ms;
            if (e != c->head) {
                lru_unlink(c, e);
                lru_front(c, e);
            }
            c->hits++;
            return 1;
        }
    }
    c->misses++;
    return 0;
}

void scache_set(struct scache *c, const char *type, const char *id, const char *name,
                const struct sc_value *v, uint64_t pin_gen)
{
    char key[KEY_MAX];
    uint64_t hash;
    size_t klen, i;
    struct sc_entry *e;
    struct sc_slot *sl;

    if (make_key(NULL, type, id) > sizeof key) return;
    e = find(c, type, id, &hash, key, &klen);
    if (!e) {
        e = calloc(1, sizeof *e + klen);
        if (!e) abort();
        memcpy(e->key, key, klen);
        e->klen = klen;
        e->hash = hash;
        e->bytes = ENTRY_OVERHEAD + klen;
        if (c->count + 1 > c->nbuckets) grow(c);
        e->hnext = c->buckets[hash & (c->nbuckets - 1)];
        c->buckets[hash & (c->nbuckets - 1)] = e;
        c->count++;
        c->bytes += e->bytes;
        lru_front(c, e);
    } else if (e != c->head) {
        lru_unlink(c, e);
        lru_front(c, e);
    }
    for (i = 0; i < e->nslots; i++)
        if (strcmp(e->slots[i].name, name) == 0) break;
    if (i == e->nslots) {
        struct sc_slot *s = realloc(e->slots, (e->nslots + 1) * sizeof *s);
        if (!s) abort();
        e->slots = s;
        memset(&s[i], 0, sizeof s[i]);
        s[i].name = strdup(name);
        if (!s[i].name) abort();
        e->nslots++;
        e->bytes += SLOT_OVERHEAD + strlen(name);
        c->bytes += SLOT_OVERHEAD + strlen(name);
    }
    sl = &e->slots[i];
    e->bytes -= sl->len + (sl->typename ? strlen(sl->typename) : 0);
    c->bytes -= sl->len + (sl->typename ? strlen(sl->typename) : 0);
    sl->expires_at_ms = v->expires_at_ms;
    if (!v->typename) {
        slot_clear(sl);
    } else {
        /* The common case rewrites a value of the same type and size
         * (a counter): keep the buffers. */
        if (!sl->typename || strcmp(sl->typename, v->typename) != 0) {
            free(sl->typename);
            sl->typename = strdup(v->typename);
            if (!sl->typename) abort();
        }
        if (!sl->data || sl->len != v->len) {
            free(sl->data);
            sl->data = malloc(v->len ? v->len : 1);
            if (!sl->data) abort();
        }
        if (v->len) memcpy(sl->data, v->data, v->len);
        sl->len = v->len;
        e->bytes += sl->len + strlen(sl->typename);
        c->bytes += sl->len + strlen(sl->typename);
    }
    if (pin_gen > e->pin_gen) e->pin_gen = pin_gen;
}

void scache_evict(struct scache *c, uint64_t committed_gen)
{
    struct sc_entry *e = c->tail, *prev;
    while (e && c->bytes > c->budget) {
        prev = e->prev;
        if (e->pin_gen <= committed_gen) {          /* pinned writes are committed */
            struct sc_entry **pp = &c->buckets[e->hash & (c->nbuckets - 1)];
            while (*pp != e) pp = &(*pp)->hnext;
            *pp = e->hnext;
            lru_unlink(c, e);
            c->bytes -= e->bytes;
            c->count--;
            entry_free(e);
        }
        e = prev;
    }
}
