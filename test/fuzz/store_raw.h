/*
 * store_raw — test-only helpers for fuzz_storage.c (see store_raw.c):
 * raw writes into the store's LevelDB and a wipe back to the metadata the
 * store had when the first wipe ran.
 */
#ifndef SM_FUZZ_STORE_RAW_H
#define SM_FUZZ_STORE_RAW_H

#include <stddef.h>

struct store;

struct store_raw_state {
    void *snap;                 /* the keys to restore, taken by the first wipe */
    unsigned long wipes;
};

void store_raw_put(struct store *s, const void *key, size_t klen, const void *val, size_t vlen);
void store_raw_wipe(struct store *s, struct store_raw_state *st);
void store_raw_state_free(struct store_raw_state *st);

#endif
