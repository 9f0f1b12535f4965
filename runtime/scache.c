/* scache — see scache.h.
 *
 * One block per address. An entry is a single malloc'd block holding its
 * key and every state slot, values inline:
 *
 *   struct sc_entry | type '\0' id '\0' | pad to 4 | slot | slot | ...
 *   slot: struct sc_slot | [expires_at_ms, 8 B, if SLOT_EXP]
 *         | [name '\0', if spilled] | [typename '\0', if spilled]
 *         | value bytes | pad to 4
 *
 * A counter ("bench/counter", id "12345", state "count", an int64) is a
 * 72-byte block, an 80-byte glibc chunk.
 *
 * Names and typenames come from a small set: they are interned in c->strs
 * (ids 1 .. STR_MAX, refcounted by the slots that use them; id 0 in the
 * type field is "known absent"). Should the table ever be full (STR_MAX
 * distinct strings in use), a slot stores the string inline instead
 * (STR_SPILL), so a set never fails.
 *
 * Pointer lifetime (scache.h: pointers from scache_get() stay valid until
 * the next scache_evict()). Nothing a caller may hold is freed before then:
 *   - a set that keeps the slot's layout (same value length, same expiry
 *     presence, same spilled strings) rewrites it in place;
 *   - any other change (new slot, other length) copies the entry to a new
 *     block, relinks that in the hash chain and the LRU list, and puts the
 *     old block on c->retired, freed by the next scache_evict();
 *   - an interned string whose count drops to 0 goes on the pending list
 *     (c->str_pending) and is freed by the next scache_evict() unless a set
 *     took it up again.
 *
 * Accounting: c->bytes is what the cache holds in malloc'd memory, each
 * block counted as the glibc chunk it occupies (alloc_cost): live and
 * retired entries, the bucket array, the intern table and its strings.
 */
#include "scache.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

struct sc_entry {
    struct sc_entry *hnext;        /* hash chain; once retired: next retired block */
    struct sc_entry *prev, *next;  /* LRU */
    uint64_t pin_gen;              /* 0 or the generation of its last write */
    uint16_t klen;
    uint16_t nslots;
    char key[];                    /* type '\0' id '\0', then the slots */
};

struct sc_slot {
    uint16_t name;                 /* interned id, or STR_SPILL */
    uint16_t type;                 /* 0: absent; interned id, or STR_SPILL */
    uint32_t len;                  /* value length | SLOT_EXP */
};

struct sc_str {
    char *s;                       /* NULL: id free */
    uint32_t refs;                 /* slots naming it */
    uint32_t hash;
    uint16_t next;                 /* bucket chain, or free list */
    uint16_t pending_next;         /* pending list, when pending */
    uint8_t pending;
};

#define STR_SPILL 0xFFFFu
#define STR_MAX 0xFFFEu
#define SLOT_EXP 0x80000000u
#define LEN_MAX 0x7FFFFFFFu
#define MIN_BUCKETS 1024
/* Keys of valid addresses are at most 1 + 256 + 1 + 1024 + 1 bytes. */
#define KEY_MAX 1300

/* The chunk glibc malloc uses for n bytes on 64-bit: n plus an 8-byte
 * header, rounded up to 16, at least 32. */
static size_t alloc_cost(size_t n)
{
    size_t c = (n + 8 + 15) & ~(size_t)15;
    return c < 32 ? 32 : c;
}

static size_t array_cost(size_t n, size_t size)
{
    return n ? alloc_cost(n * size) : 0;
}

static size_t align4(size_t n)
{
    return (n + 3) & ~(size_t)3;
}

void scache_init(struct scache *c, size_t budget)
{
    memset(c, 0, sizeof *c);
    c->budget = budget;
}

/* ---- interned strings ---------------------------------------------------- */

static uint32_t str_hash(const char *s)
{
    return (uint32_t)XXH3_64bits(s, strlen(s));
}

static void str_rehash(struct scache *c, size_t n)
{
    uint16_t *b = calloc(n, sizeof *b);
    if (!b) abort();
    for (size_t id = 1; id <= c->nstrs; id++) {
        struct sc_str *st = &c->strs[id];
        if (!st->s) continue;
        st->next = b[st->hash & (n - 1)];
        b[st->hash & (n - 1)] = (uint16_t)id;
    }
    c->bytes -= array_cost(c->nstr_buckets, sizeof *b);
    c->bytes += array_cost(n, sizeof *b);
    free(c->str_buckets);
    c->str_buckets = b;
    c->nstr_buckets = n;
}

/* Takes a reference to s, interning it if new. Returns its id, or
 * STR_SPILL when the table is full (the caller stores s inline). */
static uint16_t str_ref(struct scache *c, const char *s)
{
    uint32_t h = str_hash(s);
    uint16_t id;
    struct sc_str *st;

    if (c->nstr_buckets)
        for (id = c->str_buckets[h & (c->nstr_buckets - 1)]; id; id = c->strs[id].next)
            if (c->strs[id].hash == h && strcmp(c->strs[id].s, s) == 0) {
                c->strs[id].refs++;
                return id;
            }
    if (c->str_free) {
        id = c->str_free;
        c->str_free = c->strs[id].next;
    } else {
        if (c->nstrs == STR_MAX) return STR_SPILL;
        if (c->nstrs + 1 >= c->strs_cap) {
            size_t n = c->strs_cap ? c->strs_cap * 2 : 16;
            struct sc_str *a;
            if (n > STR_MAX + 1) n = STR_MAX + 1;
            a = realloc(c->strs, n * sizeof *a);
            if (!a) abort();
            memset(a + c->strs_cap, 0, (n - c->strs_cap) * sizeof *a);
            c->bytes -= array_cost(c->strs_cap, sizeof *a);
            c->bytes += array_cost(n, sizeof *a);
            c->strs = a;
            c->strs_cap = n;
        }
        id = (uint16_t)++c->nstrs;
    }
    st = &c->strs[id];
    memset(st, 0, sizeof *st);
    st->s = strdup(s);
    if (!st->s) abort();
    st->refs = 1;
    st->hash = h;
    c->bytes += alloc_cost(strlen(s) + 1);
    c->nstrs_live++;
    if (c->nstrs_live > c->nstr_buckets) str_rehash(c, c->nstr_buckets ? c->nstr_buckets * 2 : 16);
    else {
        st->next = c->str_buckets[h & (c->nstr_buckets - 1)];
        c->str_buckets[h & (c->nstr_buckets - 1)] = id;
    }
    return id;
}

/* Drops a reference; an unused string waits on the pending list for the
 * next scache_evict() (a scache_get() pointer may still name it). */
static void str_unref(struct scache *c, uint16_t id)
{
    struct sc_str *st;
    if (id == 0 || id == STR_SPILL) return;
    st = &c->strs[id];
    assert(st->refs > 0);
    if (--st->refs == 0 && !st->pending) {
        st->pending = 1;
        st->pending_next = c->str_pending;
        c->str_pending = id;
    }
}

static void str_free_pending(struct scache *c)
{
    uint16_t id = c->str_pending, next;
    for (; id; id = next) {
        struct sc_str *st = &c->strs[id];
        uint16_t *pp;
        next = st->pending_next;
        st->pending = 0;
        if (st->refs) continue;                     /* taken up again */
        for (pp = &c->str_buckets[st->hash & (c->nstr_buckets - 1)]; *pp != id;
             pp = &c->strs[*pp].next)
            ;
        *pp = st->next;
        c->bytes -= alloc_cost(strlen(st->s) + 1);
        free(st->s);
        st->s = NULL;
        st->next = c->str_free;
        c->str_free = id;
        c->nstrs_live--;
    }
    c->str_pending = 0;
}

/* ---- slots --------------------------------------------------------------- */

/* A slot to write: ids, the strings behind STR_SPILL ids, the value. */
struct slot_src {
    uint16_t name, type;
    const char *name_s, *type_s;
    int64_t expires_at_ms;
    const uint8_t *data;
    uint32_t len;
};

static struct sc_slot *first_slot(const struct sc_entry *e)
{
    return (struct sc_slot *)((char *)e + align4(offsetof(struct sc_entry, key) + e->klen));
}

static size_t slot_len(const struct sc_slot *sl)
{
    return sl->len & LEN_MAX;
}

static const char *slot_strings(const struct sc_slot *sl)
{
    return (const char *)(sl + 1) + (sl->len & SLOT_EXP ? sizeof(int64_t) : 0);
}

static const char *slot_name(const struct scache *c, const struct sc_slot *sl)
{
    return sl->name == STR_SPILL ? slot_strings(sl) : c->strs[sl->name].s;
}

static const char *slot_type(const struct scache *c, const struct sc_slot *sl)
{
    const char *p = slot_strings(sl);
    if (sl->type == 0) return NULL;
    if (sl->type != STR_SPILL) return c->strs[sl->type].s;
    if (sl->name == STR_SPILL) p += strlen(p) + 1;
    return p;
}

static const uint8_t *slot_data(const struct sc_slot *sl)
{
    const char *p = slot_strings(sl);
    if (sl->name == STR_SPILL) p += strlen(p) + 1;
    if (sl->type == STR_SPILL) p += strlen(p) + 1;
    return (const uint8_t *)p;
}

static int64_t slot_expires(const struct sc_slot *sl)
{
    int64_t t = 0;
    if (sl->len & SLOT_EXP) memcpy(&t, sl + 1, sizeof t);
    return t;
}

static size_t slot_span(const struct sc_slot *sl)
{
    return align4((size_t)((const char *)slot_data(sl) - (const char *)sl) + slot_len(sl));
}

static struct sc_slot *slot_next(const struct sc_slot *sl)
{
    return (struct sc_slot *)((char *)sl + slot_span(sl));
}

static size_t src_prefix(const struct slot_src *s)
{
    size_t n = sizeof(struct sc_slot) + (s->expires_at_ms ? sizeof(int64_t) : 0);
    if (s->name == STR_SPILL) n += strlen(s->name_s) + 1;
    if (s->type == STR_SPILL) n += strlen(s->type_s) + 1;
    return n;
}

static size_t src_span(const struct slot_src *s)
{
    return align4(src_prefix(s) + s->len);
}

/* memmove throughout: a rewrite in place may be handed its own bytes (a
 * value or typename just returned by scache_get()). */
static void slot_write(struct sc_slot *sl, const struct slot_src *s)
{
    char *p = (char *)(sl + 1);
    size_t n;
    sl->name = s->name;
    sl->type = s->type;
    sl->len = s->len | (s->expires_at_ms ? SLOT_EXP : 0);
    if (s->expires_at_ms) {
        memcpy(p, &s->expires_at_ms, sizeof s->expires_at_ms);
        p += sizeof s->expires_at_ms;
    }
    if (s->name == STR_SPILL) {
        n = strlen(s->name_s) + 1;
        memmove(p, s->name_s, n);
        p += n;
    }
    if (s->type == STR_SPILL) {
        n = strlen(s->type_s) + 1;
        memmove(p, s->type_s, n);
        p += n;
    }
    if (s->len) memmove(p, s->data, s->len);
}

/* ---- entries ------------------------------------------------------------- */

static size_t entry_size(const struct sc_entry *e)
{
    const struct sc_slot *sl = first_slot(e);
    for (size_t i = 0; i < e->nslots; i++) sl = slot_next(sl);
    return (size_t)((const char *)sl - (const char *)e);
}

static void entry_free(struct scache *c, struct sc_entry *e)
{
    const struct sc_slot *sl = first_slot(e);
    for (size_t i = 0; i < e->nslots; i++, sl = slot_next(sl)) {
        str_unref(c, sl->name);
        str_unref(c, sl->type);
    }
    c->bytes -= alloc_cost(entry_size(e));
    free(e);
}

static void free_retired(struct scache *c)
{
    struct sc_entry *e = c->retired, *next;
    for (; e; e = next) {
        next = e->hnext;
        c->bytes -= alloc_cost(entry_size(e));    /* its strings moved to the new block */
        free(e);
    }
    c->retired = NULL;
}

void scache_cleanup(struct scache *c)
{
    struct sc_entry *e = c->head, *next;
    free_retired(c);
    for (; e; e = next) {
        next = e->next;
        free(e);
    }
    for (size_t id = 1; id <= c->nstrs; id++) free(c->strs[id].s);
    free(c->strs);
    free(c->str_buckets);
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

static uint64_t key_hash(const char *key, size_t klen)
{
    return XXH3_64bits(key, klen);
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

static void lru_touch(struct scache *c, struct sc_entry *e)
{
    if (e != c->head) {
        lru_unlink(c, e);
        lru_front(c, e);
    }
}

/* The link that points at the entry with this key (*link NULL: none). */
static struct sc_entry **find(struct scache *c, const char *key, size_t klen, uint64_t hash)
{
    struct sc_entry **pp;
    if (!c->nbuckets) return NULL;
    for (pp = &c->buckets[hash & (c->nbuckets - 1)]; *pp; pp = &(*pp)->hnext)
        if ((*pp)->klen == klen && memcmp((*pp)->key, key, klen) == 0) break;
    return pp;
}

/* Rehashes into n buckets (a power of two). Hashes are not stored: an
 * entry is 8 bytes smaller, and a resize hashes each key once more. */
static void resize(struct scache *c, size_t n)
{
    struct sc_entry **b = calloc(n, sizeof *b);
    if (!b) abort();
    for (size_t i = 0; i < c->nbuckets; i++) {
        struct sc_entry *e = c->buckets[i], *next;
        for (; e; e = next) {
            size_t j = key_hash(e->key, e->klen) & (n - 1);
            next = e->hnext;
            e->hnext = b[j];
            b[j] = e;
        }
    }
    c->bytes -= array_cost(c->nbuckets, sizeof *b);
    c->bytes += array_cost(n, sizeof *b);
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = n;
}

static struct sc_entry *entry_add(struct scache *c, const char *key, size_t klen, uint64_t hash,
                                  const struct slot_src *src)
{
    size_t off = align4(offsetof(struct sc_entry, key) + klen);
    size_t size = off + src_span(src);
    struct sc_entry *e = malloc(size);
    if (!e) abort();
    memset(e, 0, offsetof(struct sc_entry, key));
    memcpy(e->key, key, klen);
    e->klen = (uint16_t)klen;
    e->nslots = 1;
    slot_write(first_slot(e), src);
    c->bytes += alloc_cost(size);
    if (c->count + 1 > c->nbuckets) resize(c, c->nbuckets ? c->nbuckets * 2 : MIN_BUCKETS);
    e->hnext = c->buckets[hash & (c->nbuckets - 1)];
    c->buckets[hash & (c->nbuckets - 1)] = e;
    c->count++;
    lru_front(c, e);
    return e;
}

/* Copies e into a new block with slot i replaced by src (i == nslots:
 * appended); *link points at e. The new block takes e's place in the
 * hash chain and the LRU list; e is retired until the next evict. */
static struct sc_entry *entry_rewrite(struct scache *c, struct sc_entry **link, struct sc_entry *e,
                                      size_t i, const struct slot_src *src)
{
    const struct sc_slot *sl = first_slot(e);
    size_t a, b, old = entry_size(e), span = src_span(src), size;
    struct sc_entry *ne;

    for (size_t k = 0; k < i; k++) sl = slot_next(sl);
    a = (size_t)((const char *)sl - (const char *)e);
    b = i < e->nslots ? a + slot_span(sl) : a;
    size = a + span + (old - b);
    ne = malloc(size);
    if (!ne) abort();
    memcpy(ne, e, a);
    slot_write((struct sc_slot *)((char *)ne + a), src);
    memcpy((char *)ne + a + span, (const char *)e + b, old - b);
    if (i == e->nslots) ne->nslots++;
    c->bytes += alloc_cost(size);

    *link = ne;
    if (ne->prev) ne->prev->next = ne;
    else c->head = ne;
    if (ne->next) ne->next->prev = ne;
    else c->tail = ne;
    e->hnext = c->retired;
    c->retired = e;
    return ne;
}

/* ---- API ----------------------------------------------------------------- */

int scache_get(struct scache *c, const char *type, const char *id, const char *name,
               struct sc_value *v)
{
    char key[KEY_MAX];
    size_t klen = make_key(NULL, type, id);
    struct sc_entry **link, *e = NULL;
    const struct sc_slot *sl;

    if (klen > sizeof key) return 0;
    make_key(key, type, id);
    link = find(c, key, klen, key_hash(key, klen));
    if (link) e = *link;
    sl = e ? first_slot(e) : NULL;
    for (size_t i = 0; e && i < e->nslots; i++, sl = slot_next(sl)) {
        if (strcmp(slot_name(c, sl), name) != 0) continue;
        v->typename = slot_type(c, sl);
        v->data = v->typename ? slot_data(sl) : NULL;
        v->len = slot_len(sl);
        v->expires_at_ms = slot_expires(sl);
        lru_touch(c, e);
        c->hits++;
        return 1;
    }
    c->misses++;
    return 0;
}

void scache_set(struct scache *c, const char *type, const char *id, const char *name,
                const struct sc_value *v, uint64_t pin_gen)
{
    char key[KEY_MAX];
    size_t klen = make_key(NULL, type, id), i;
    struct sc_entry **link, *e;
    struct sc_slot *sl;
    struct slot_src src;
    uint16_t old_type = 0;

    if (klen > sizeof key) return;
    assert(!v->typename || v->len <= LEN_MAX);
    make_key(key, type, id);
    uint64_t hash = key_hash(key, klen);
    link = find(c, key, klen, hash);

    src.name_s = name;
    src.type_s = v->typename;
    src.expires_at_ms = v->expires_at_ms;
    src.data = v->typename ? v->data : NULL;
    src.len = v->typename ? (uint32_t)v->len : 0;

    if (!link || !(e = *link)) {
        src.name = str_ref(c, name);
        src.type = v->typename ? str_ref(c, v->typename) : 0;
        e = entry_add(c, key, klen, hash, &src);
        goto out;
    }
    lru_touch(c, e);
    sl = first_slot(e);
    for (i = 0; i < e->nslots; i++, sl = slot_next(sl))
        if (strcmp(slot_name(c, sl), name) == 0) break;
    if (i == e->nslots) {
        assert(e->nslots < UINT16_MAX);
        src.name = str_ref(c, name);
        src.type = v->typename ? str_ref(c, v->typename) : 0;
        e = entry_rewrite(c, link, e, i, &src);
        goto out;
    }
    src.name = sl->name;
    if (v->typename && sl->type && sl->type != STR_SPILL &&
        strcmp(c->strs[sl->type].s, v->typename) == 0) {
        src.type = sl->type;                          /* same type: same reference */
    } else {
        old_type = sl->type;
        src.type = v->typename ? str_ref(c, v->typename) : 0;
    }
    /* The common case rewrites a value of the same size (a counter): in
     * place, no allocation. Only when every field keeps its offset, so
     * that bytes handed in from this very slot are not overwritten first. */
    if (src.len == slot_len(sl) && (sl->len & SLOT_EXP) == (src.expires_at_ms ? SLOT_EXP : 0) &&
        (sl->type == STR_SPILL) == (src.type == STR_SPILL) &&
        src_prefix(&src) == (size_t)((const char *)slot_data(sl) - (const char *)sl))
        slot_write(sl, &src);
    else
        e = entry_rewrite(c, link, e, i, &src);
    str_unref(c, old_type);
out:
    if (pin_gen > e->pin_gen) e->pin_gen = pin_gen;
}

void scache_evict(struct scache *c, uint64_t committed_gen)
{
    struct sc_entry *e = c->tail, *prev;
    size_t n;

    free_retired(c);
    while (e && c->bytes > c->budget) {
        prev = e->prev;
        if (e->pin_gen <= committed_gen) {          /* pinned writes are committed */
            struct sc_entry **pp = find(c, e->key, e->klen, key_hash(e->key, e->klen));
            assert(pp && *pp == e);
            *pp = e->hnext;
            lru_unlink(c, e);
            c->count--;
            entry_free(c, e);
        }
        e = prev;
    }
    str_free_pending(c);
    for (n = c->nbuckets; n > MIN_BUCKETS && c->count < n / 4; n /= 2)
        ;
    if (n != c->nbuckets) resize(c, n);
}

void scache_names(struct scache *c, const char *type, const char *id,
                  void (*fn)(void *arg, const char *name), void *arg)
{
    char key[KEY_MAX];
    size_t klen = make_key(NULL, type, id);
    struct sc_entry **link, *e = NULL;
    const struct sc_slot *sl;

    if (klen > sizeof key) return;
    make_key(key, type, id);
    link = find(c, key, klen, key_hash(key, klen));
    if (link) e = *link;
    sl = e ? first_slot(e) : NULL;
    for (size_t i = 0; e && i < e->nslots; i++, sl = slot_next(sl)) fn(arg, slot_name(c, sl));
}
