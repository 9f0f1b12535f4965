/*
 * store_raw — test-only access to the LevelDB behind a struct store, for
 * fuzz_storage.c: write any key (the store's API only writes well-formed
 * ones) and take the database back to its metadata after each input.
 *
 * It includes runtime/store.c to reach `struct store` (h2o's way of testing
 * statics; the Makefile links this object instead of store.o), so the
 * harness runs the real store code around these two helpers.
 */
#include "../../runtime/store.c"

#include "store_raw.h"

/* The keys present when the fuzzer started (the X metadata store_open
 * wrote), restored after every input. */
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

static void write_batch(struct store *s, leveldb_writebatch_t *wb, const char *what)
{
    char *lerr = NULL;
    leveldb_write(s->db, s->wo_nosync, wb, &lerr);
    if (lerr) {
        fprintf(stderr, "%s: %s\n", what, lerr);
        abort();
    }
}

void store_raw_begin(struct store *s, struct store_raw_state *st)
{
    if (!st->snap) {
        if (!(st->snap = malloc(sizeof(struct snapshot)))) abort();
        snap_take(s, st->snap);
    }
    if (!(st->wb = leveldb_writebatch_create())) abort();
}

void store_raw_put(struct store_raw_state *st, const void *key, size_t klen, const void *val,
                   size_t vlen)
{
    leveldb_writebatch_put(st->wb, key, klen, val, vlen);
}

void store_raw_delete(struct store_raw_state *st, const void *key, size_t klen)
{
    leveldb_writebatch_delete(st->wb, key, klen);
}

void store_raw_commit(struct store *s, struct store_raw_state *st)
{
    write_batch(s, st->wb, "store_raw_commit");
    leveldb_writebatch_clear(st->wb);
}

void store_raw_end(struct store *s, struct store_raw_state *st)
{
    struct snapshot *sn = st->snap;
    for (size_t i = 0; i < sn->n; i++)
        leveldb_writebatch_put(st->wb, sn->k[i], sn->kl[i], sn->v[i], sn->vl[i]);
    write_batch(s, st->wb, "store_raw_end");
    leveldb_writebatch_destroy(st->wb);
    st->wb = NULL;
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
