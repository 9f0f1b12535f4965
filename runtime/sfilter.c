/* sfilter — see sfilter.h. */
#include "sfilter.h"

#include <stdlib.h>
#include <xxhash.h>

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "sfilter: calloc zeroes need lock-free 64-bit atomics");

int sfilter_init(struct sfilter *f, size_t bytes)
{
    size_t block = SFILTER_BLOCK_WORDS * sizeof(uint64_t);

    f->raw = NULL;
    f->words = NULL;
    f->nblocks = bytes / block;
    if (f->nblocks == 0) return 0;
    /* calloc, not a loop of atomic_init: its zero pages stay unmapped until
     * a key lands in them, so a small store costs little memory. An atomic
     * uint64_t is lock-free here and all-zero bits are its value 0. One
     * extra block lets the words start on a cache line. */
    f->raw = calloc(f->nblocks + 1, block);
    if (f->raw == NULL) {
        f->nblocks = 0;
        return -1;
    }
    f->words = (_Atomic uint64_t *)(((uintptr_t)f->raw + block - 1) & ~(uintptr_t)(block - 1));
    return 0;
}

void sfilter_free(struct sfilter *f)
{
    free(f->raw);
    f->raw = NULL;
    f->words = NULL;
    f->nblocks = 0;
}

size_t sfilter_bytes(const struct sfilter *f)
{
    return (size_t)f->nblocks * SFILTER_BLOCK_WORDS * sizeof(uint64_t);
}

uint64_t sfilter_hash(const void *key, size_t len) { return XXH3_64bits(key, len); }

/* The block of h: the high 32 bits scaled onto [0, nblocks) (no modulo).
 * The bits within it: 9-bit slices of a remix of h, so that they do not
 * repeat the bits that chose the block. */
static _Atomic uint64_t *block_of(const struct sfilter *f, uint64_t h)
{
    uint64_t b = ((h >> 32) * f->nblocks) >> 32;
    return &f->words[b * SFILTER_BLOCK_WORDS];
}

static uint64_t remix(uint64_t h)
{
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    return h;
}

void sfilter_add(struct sfilter *f, uint64_t h)
{
    _Atomic uint64_t *w;
    uint64_t r;

    if (!f->words) return;
    w = block_of(f, h);
    r = remix(h);
    for (int i = 0; i < SFILTER_PROBES; i++, r >>= 9) {
        unsigned bit = (unsigned)(r & 511);
        atomic_fetch_or_explicit(&w[bit >> 6], 1ULL << (bit & 63), memory_order_relaxed);
    }
}

bool sfilter_may_contain(const struct sfilter *f, uint64_t h)
{
    _Atomic uint64_t *w;
    uint64_t r;

    if (!f->words) return true;
    w = block_of(f, h);
    r = remix(h);
    for (int i = 0; i < SFILTER_PROBES; i++, r >>= 9) {
        unsigned bit = (unsigned)(r & 511);
        if (!(atomic_load_explicit(&w[bit >> 6], memory_order_relaxed) & (1ULL << (bit & 63))))
            return false;
    }
    return true;
}
