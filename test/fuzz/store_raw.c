/*
 * store_raw — test-only access to the LevelDB behind a struct store, for
 * fuzz_storage.c: write any key (the store's API only writes well-formed
 * ones) and wipe the database back to its metadata between inputs.
 *
 * It includes runtime/store.c to reach `struct store` (h2o's way of testing
 * statics; the Makefile links this object instead of store.o), so the
 * harness runs the real store code around these two helpers.
 */
#include "../../runtime/store.c"

#include "store_raw.h"

void store_raw_put(struct store *s, const void *key, size_t klen, const void *val, size_t vlen)
{
    char *lerr = NULL;
    leveldb_put(s->db, s->wo_nosync, key, klen, val, vlen, &lerr);
    if (lerr) {
        fprintf(stderr, "store_raw_put: %s\n", lerr);
        abort();
    }
}

/* The keys present when the fuzzer started (the X metadata store_open
 * wrote), restored by every wipe. */
struct snapshot {
    char **k, **v;
    size_t *kl, *vl, n;
};

static void snap_take(struct store *s, struct snapshot *sn)
{
    leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ro);
    memset(sn, 0, sizeof *sn);
    for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t kl, vl;
        const char *k = leveldb_iter_key(it, &kl), *v = leveldb_iter_value(it, &vl);
        sn->k = realloc(sn->k, (sn->n + 1) * sizeof *sn->k);
        sn->v = realloc(sn->v, (sn->n + 1) * sizeof *sn->v);
        sn->kl = realloc(sn->kl, (sn->n + 1) * sizeof *sn->kl);
        sn->vl = realloc(sn->vl, (sn->n + 1) * sizeof *sn->vl);
        if (!sn->k || !sn->v || !sn->kl || !sn->vl) abort();
        sn->k[sn->n] = malloc(kl + 1);
        sn->v[sn->n] = malloc(vl + 1);
        if (!sn->k[sn->n] || !sn->v[sn->n]) abort();
        memcpy(sn->k[sn->n], k, kl);
        memcpy(sn->v[sn->n], v, vl);
        sn->kl[sn->n] = kl;
        sn->vl[sn->n] = vl;
        sn->n++;
    }
    leveldb_iter_destroy(it);
}

void store_raw_wipe(struct store *s, struct store_raw_state *st)
{
    struct snapshot *sn = st->snap;
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    leveldb_iterator_t *it;
    char *lerr = NULL;

    if (!sn) {
        if (!(sn = st->snap = malloc(sizeof *sn))) abort();
        snap_take(s, sn);
    }
    it = leveldb_create_iterator(s->db, s->ro);
    for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t kl;
        const char *k = leveldb_iter_key(it, &kl);
        leveldb_writebatch_delete(wb, k, kl);
    }
    leveldb_iter_destroy(it);
    for (size_t i = 0; i < sn->n; i++)
        leveldb_writebatch_put(wb, sn->k[i], sn->kl[i], sn->v[i], sn->vl[i]);
    leveldb_write(s->db, s->wo_nosync, wb, &lerr);
    leveldb_writebatch_destroy(wb);
    if (lerr) {
        fprintf(stderr, "store_raw_wipe: %s\n", lerr);
        abort();
    }
    /* Deleted keys stay as tombstones that every scan steps over; compact
     * them away now and then so the fuzzer does not slow down over time. */
    if (++st->wipes % 64 == 0) leveldb_compact_range(s->db, NULL, 0, NULL, 0);
}

void store_raw_state_free(struct store_raw_state *st)
{
    struct snapshot *sn = st->snap;
    if (!sn) return;
    for (size_t i = 0; i < sn->n; i++) {
        free(sn->k[i]);
        free(sn->v[i]);
    }
    free(sn->k);
    free(sn->v);
    free(sn->kl);
    free(sn->vl);
    free(sn);
    st->snap = NULL;
}
