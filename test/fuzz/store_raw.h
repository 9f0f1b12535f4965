/*
 * store_raw — test-only helpers for fuzz_storage.c (see store_raw.c):
 * raw writes into the store's LevelDB, in one write batch per input, and
 * the way back to the metadata the store had before the first input.
 */
#ifndef SM_FUZZ_STORE_RAW_H
#define SM_FUZZ_STORE_RAW_H

#include <stddef.h>

struct store;

struct store_raw_state {
    void *snap;                 /* the keys to restore, taken by the first begin */
    void *wb;                   /* this input's write batch */
    unsigned long wipes;
};

/* Per input, everything allocated is freed again (libFuzzer runs a full
 * leak scan after any input whose mallocs and frees do not balance):
 *   store_raw_begin; store_raw_put...; store_raw_commit   (one write)
 *   ... the runtime reads the store ...
 *   store_raw_delete of every key put; store_raw_end       (one write: the
 *   deletes and the snapshot's keys put back)
 * The store writes nothing of its own after open (store.c) and the harness
 * commits no checkpoint, so the keys put are all that changed. */
void store_raw_begin(struct store *s, struct store_raw_state *st);
void store_raw_put(struct store_raw_state *st, const void *key, size_t klen, const void *val,
                   size_t vlen);
void store_raw_commit(struct store *s, struct store_raw_state *st);
void store_raw_delete(struct store_raw_state *st, const void *key, size_t klen);
void store_raw_end(struct store *s, struct store_raw_state *st);
void store_raw_state_free(struct store_raw_state *st);

#endif
