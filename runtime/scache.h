/*
 * scache — the state cache: recent state values of addresses, in memory.
 *
 * Two jobs:
 *   1. Reads: a batch's declared state comes from here when known (a value
 *      or "known absent"), so a busy address costs no LevelDB read.
 *   2. Pipelining: a result's writes enter the cache *pinned* with the
 *      generation of the checkpoint that holds them; an address can then be
 *      dispatched again before that checkpoint commits, its next batch
 *      reading the uncommitted values here (checkpoints are totally ordered,
 *      so its next result lands in the same or a later checkpoint).
 *
 * Entries are per address (LRU order); the budget (runtime.state_cache_bytes)
 * bounds the unpinned ones; pinned entries stay until their checkpoint is
 * committed, whatever the budget. Values carry their expiry (state TTL);
 * callers filter expired ones.
 *
 * Pointers returned by scache_get() stay valid until the next
 * scache_evict(): memory is only freed there. A set of the same name may
 * rewrite a value of the same size in place (a held pointer then sees the
 * new bytes): copy a value first to keep the old one.
 *
 * Each address is one malloc'd block (key, names, values inline; names and
 * typenames interned); `bytes` counts the malloc chunks really held.
 */
#ifndef SM_SCACHE_H
#define SM_SCACHE_H

#include <stddef.h>
#include <stdint.h>

struct sc_entry;
struct sc_str;

struct sc_value {
    const char *typename;      /* NULL: known absent */
    const uint8_t *data;
    size_t len;
    int64_t expires_at_ms;     /* 0: never */
};

struct scache {
    struct sc_entry **buckets;
    size_t nbuckets, count;
    struct sc_entry *head, *tail;   /* LRU: head = most recent */
    size_t bytes, budget;           /* bytes: malloc'd memory held, chunk overhead included */
    int64_t hits, misses;
    /* private to scache.c */
    struct sc_entry *retired;       /* blocks replaced since the last scache_evict() */
    struct sc_str *strs;            /* interned names and typenames, by id (0 unused) */
    uint16_t *str_buckets;
    size_t nstrs, nstrs_live, strs_cap, nstr_buckets;
    uint16_t str_free, str_pending; /* free ids; unused strings to free at the next evict */
};

void scache_init(struct scache *c, size_t budget);
void scache_cleanup(struct scache *c);
/* 1 known (a value, or known absent: v->typename == NULL), 0 unknown. */
int scache_get(struct scache *c, const char *type, const char *id, const char *name,
               struct sc_value *v /* OUT */);
/* Records a value (typename NULL: absent). pin_gen > 0: written by a result
 * in that checkpoint generation, kept until it is committed. */
void scache_set(struct scache *c, const char *type, const char *id, const char *name,
                const struct sc_value *v, uint64_t pin_gen);
/* Frees least recently used, unpinned entries beyond the budget. */
void scache_evict(struct scache *c, uint64_t committed_gen);
/* Calls fn with the name of every state the cache knows of the address
 * (values and known absences, committed or not). fn must not change the
 * cache. */
void scache_names(struct scache *c, const char *type, const char *id,
                  void (*fn)(void *arg, const char *name), void *arg);

#endif
