/*
 * sfilter — the state filter: "this state key was never written" in memory.
 *
 * A message to a new address reads that address's declared state first.
 * LevelDB answers "absent" only after a memtable search and a table lookup
 * per level (table cache, index block, its own bloom filter): 3-5 us, about
 * a third of the loop's time at a million addresses. The filter answers the
 * same question in one cache line.
 *
 * It is a blocked bloom filter over 64-bit hashes of state keys: each hash
 * selects one 64-byte block and sets SFILTER_PROBES bits in it. It never
 * forgets (deleted keys stay, as false positives), and a false positive
 * only costs the LevelDB read that would have happened anyway; a false
 * negative would lose state, so every key that can exist must be added
 * before the filter is consulted for it (store.c: the startup scan adds
 * what is on disk, store_write() adds what is written afterwards).
 *
 * The bits are atomics so that the startup scan thread and the loop may
 * add concurrently; the loop reads them. Size is fixed at init: with m bits
 * for n keys the false-positive rate is about (1 - e^(-4n/m))^4, i.e. ~5 %
 * at 6.7 bits per key (10M keys in 8 MiB), ~0.1 % at 67.
 */
#ifndef SM_SFILTER_H
#define SM_SFILTER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SFILTER_BLOCK_WORDS 8           /* 64-byte blocks: one cache line */
#define SFILTER_PROBES 4

struct sfilter {
    void *raw;                          /* the allocation */
    _Atomic uint64_t *words;            /* nblocks * SFILTER_BLOCK_WORDS; NULL: off */
    uint64_t nblocks;
};

/* Sizes the filter to `bytes` (rounded down to whole blocks; below one
 * block: off). Returns 0, or -1 when out of memory (the filter is off). */
int sfilter_init(struct sfilter *f, size_t bytes);
void sfilter_free(struct sfilter *f);
static inline bool sfilter_on(const struct sfilter *f) { return f->words != NULL; }
size_t sfilter_bytes(const struct sfilter *f);

/* The hash of a key, as sfilter_add() and sfilter_may_contain() take it. */
uint64_t sfilter_hash(const void *key, size_t len);
void sfilter_add(struct sfilter *f, uint64_t h);
/* false: the key was never added. true: it may have been. */
bool sfilter_may_contain(const struct sfilter *f, uint64_t h);

#endif
