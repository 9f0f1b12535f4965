/*
 * store — statemeshd's LevelDB: key layout, checkpoint write batches, reads.
 *
 * One LevelDB per node. Keys are binary and ordered; every key of an address
 * begins with its key group so ranges of key groups can move between nodes:
 *
 *   'S' kg:u16be type '\0' id '\0' name      -> StoredState  (storage.proto)
 *   'M' kg:u16be type '\0' id '\0' seq:u64be -> StoredMessage (inbox, arrival order)
 *   'P' kg:u16be type '\0' id '\0'           -> StoredPause (the address is paused)
 *   'D' kg:u16be due_ms:u64be seq:u64be      -> StoredDelayed (wall-clock due time)
 *   'I' kg:u16be type '\0' id '\0' key        -> StoredIdempotency (key of a message to
 *                                               the address type/id)
 *   'E' egress '\0' offset:u64be             -> StoredEgress     (per node)
 *   'L' id:u64be                             -> StoredDeadLetter (per node; the value
 *                                               names the address)
 *   'J' idempotency key                      -> StoredIdempotency of format 1, which did
 *                                               not record the target (legacy, expires)
 *   'X' name                                 -> metadata (per node)
 *   'O' s:u16be d:u16be seq:u64be            -> outbox frame to another node (peer.h)
 *   'C' d:u16be s:u16be                      -> channel record of frames received (peer.h)
 *
 * So the keys of a key-group range [a, b] are one interval per kind S, M, P,
 * D, I: a savepoint (savepoint.h) exports and imports them by range. A
 * delayed message belongs to the address that owns its timer: its sender
 * (which may cancel it by token), or its target when the ingress sent it.
 *
 * DESIGN §7 also names a 'T' (sender, token) -> D index; it is not stored:
 * every D value carries its sender and token, and the runtime rebuilds the
 * token index from the D range at recovery, saving a write per message.
 *
 * kg = XXH3_64bits(type '\0' id) % STORE_KEY_GROUPS. Ids never contain NUL
 * (address.h), so "type\0id\0" is an unambiguous prefix of one address.
 * Metadata: "X format" = "2" and "X key_groups" = u32be 4096 (refuse a
 * mismatch). A store of format 1 (D without kg, I without address) is
 * upgraded in place by store_open(): D keys are rewritten under their key
 * group, I keys move to J (looked up as a fallback until they expire); the
 * last batch stamps format 2, so an interrupted upgrade resumes. Other
 * versions are refused.
 *
 * A checkpoint is one store_batch written with store_write(): atomic, and
 * durable when sync is set. The store never writes on its own.
 *
 * Errors: functions return 0 or a negative code; LevelDB's messages are
 * logged and (where an `err` out-parameter exists) copied out, never leaked
 * as leveldb-allocated strings. store_last_error() describes the last
 * failure for people: a corruption names the damaged file where it can
 * (docs/operations-disk.md).
 *
 * Disk space: store_open() refuses to open when the filesystem of `dir` has
 * less than store_min_free_bytes() available (one memtable flush; LevelDB
 * itself might still open on a full disk, only to fail the first write).
 * A write that fails later (disk full, I/O error) returns -EIO; the caller
 * must not write again (checkpoint.h).
 *
 * Fault injection for tests: if the environment variable
 * STATEMESH_FAULT_WRITE_FAIL_AFTER=N is set when the store opens, the
 * (N+1)-th store_write() and all later ones fail with -EIO.
 */
#ifndef SM_STORE_H
#define SM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define STORE_KEY_GROUPS 4096
#define STORE_FORMAT_VERSION 2

struct store;
struct store_batch;

struct store_options {
    size_t block_cache_bytes;   /* 0: 8 MiB */
    size_t write_buffer_bytes;  /* 0: 4 MiB */
    bool compression;           /* snappy */
    int max_open_files;         /* 0: LevelDB's default (1000) */
    size_t state_filter_bytes;  /* 0: no state filter (sfilter.h) */
};

uint16_t store_key_group(const char *type, const char *id);

/* Opens (creating if needed) the database in `dir`, which must exist.
 * On failure returns -1 and a message in err. */
int store_open(struct store **out /* OUT, owned */, const char *dir,
               const struct store_options *opt, const struct log *lg,
               char *err, size_t errlen) __attribute__((warn_unused_result));
void store_close(struct store **sp);          /* sets *sp = NULL */

/* The free space store_open() requires: the write buffer (opt->
 * write_buffer_bytes or its default), at least 1 MiB. */
size_t store_min_free_bytes(const struct store_options *opt);

/* A sentence describing the last read/write/scan failure (borrowed; valid
 * until the next store call). */
const char *store_last_error(const struct store *s);

/* LevelDB's repair (leveldb_repair_db) of the closed database in `dir`:
 * rebuilds its MANIFEST from the table and log files, keeping the records it
 * can read and dropping the rest. The caller holds the data dir's lock. May
 * lose data and bring deleted keys back (docs/operations-disk.md). Returns 0,
 * or -1 with a message in err. */
int store_repair(const char *dir, const struct store_options *opt, const struct log *lg,
                 char *err, size_t errlen) __attribute__((warn_unused_result));

/* ---- checkpoint batches ---- */
struct store_batch *store_batch_create(void);
void store_batch_destroy(struct store_batch **bp);
void store_batch_clear(struct store_batch *b);
size_t store_batch_count(const struct store_batch *b);   /* operations since clear */
size_t store_batch_bytes(const struct store_batch *b);   /* approximate payload */

void store_batch_put_state(struct store_batch *b, const char *type, const char *id,
                           const char *name, const void *val, size_t len);
void store_batch_delete_state(struct store_batch *b, const char *type, const char *id,
                              const char *name);
void store_batch_put_message(struct store_batch *b, const char *type, const char *id,
                             uint64_t seq, const void *val, size_t len);
void store_batch_delete_message(struct store_batch *b, const char *type, const char *id,
                                uint64_t seq);
void store_batch_put_meta(struct store_batch *b, const char *name, const void *val, size_t len);
void store_batch_put_pause(struct store_batch *b, const char *type, const char *id,
                           const void *val, size_t len);
void store_batch_delete_pause(struct store_batch *b, const char *type, const char *id);

/* kg: store_key_group() of the timer's owner (see the top). */
void store_batch_put_delayed(struct store_batch *b, uint16_t kg, int64_t due_ms, uint64_t seq,
                             const void *val, size_t len);
void store_batch_delete_delayed(struct store_batch *b, uint16_t kg, int64_t due_ms, uint64_t seq);
void store_batch_put_egress(struct store_batch *b, const char *egress, uint64_t offset,
                            const void *val, size_t len);
void store_batch_delete_egress(struct store_batch *b, const char *egress, uint64_t offset);
/* An idempotency key of a message to type/id. */
void store_batch_put_idem(struct store_batch *b, const char *type, const char *id,
                          const char *key, const void *val, size_t len);
/* A record of a store upgraded from format 1 ('J': the key only). */
void store_batch_put_legacy_idem(struct store_batch *b, const char *key, const void *val,
                                 size_t len);
void store_batch_put_deadletter(struct store_batch *b, uint64_t id, const void *val, size_t len);
void store_batch_delete_deadletter(struct store_batch *b, uint64_t id);
/* Puts a key as it is (a restore, savepoint.h); keeps the state filter
 * complete for S keys. */
void store_batch_put_raw(struct store_batch *b, const void *key, size_t klen, const void *val,
                         size_t len);
/* Deletes a key returned by store_sweep(). */
void store_batch_delete_raw(struct store_batch *b, const void *key, size_t klen);

/* Writes the batch atomically (fsync'd when sync). Does not clear it.
 * Returns 0 or -EIO (message logged). */
int store_write(struct store *s, struct store_batch *b, bool sync)
    __attribute__((warn_unused_result));

/* ---- reads (committed data only) ---- */

/* One state value. Returns 0 and a malloc'd copy in *val (caller frees),
 * 1 if absent, or -EIO. With a state filter (store_options), a key the
 * filter has never seen is absent without a LevelDB read, once the filter's
 * startup scan of the S range (a thread started by store_open) is done. */
int store_get_state(struct store *s, const char *type, const char *id, const char *name,
                    uint8_t **val /* OUT */, size_t *len /* OUT */)
    __attribute__((warn_unused_result));

/* Bootstrap's fast answers from the state filter, once its startup scan is
 * done (false before, or without a filter): true when no state key and no
 * idempotency record of the address was ever written (so it has neither),
 * resp. when no idempotency record type/id/key was ever written. false:
 * maybe; read the store. */
bool store_no_state(struct store *s, const char *type, const char *id);
bool store_no_idem(struct store *s, const char *type, const char *id, const char *key);

struct store_filter_stats {
    size_t bytes;               /* 0: no filter */
    bool ready;                 /* the startup scan is done: reads use it */
    uint64_t scanned;           /* keys the startup scan has added */
    int64_t scan_ms;            /* how long the scan took (when ready) */
    uint64_t skips;             /* state reads it answered "absent" */
};
void store_filter_stats(const struct store *s, struct store_filter_stats *out /* OUT */);

/* Calls fn for every state value of the address in name order; `val` is
 * borrowed for the duration of the call. fn returns non-zero to stop.
 * Returns 0, or -EIO. */
typedef int (*store_state_fn)(void *arg, const char *name, const uint8_t *val, size_t len);
int store_scan_states(struct store *s, const char *type, const char *id,
                      store_state_fn fn, void *arg) __attribute__((warn_unused_result));

/* Recovery: calls fn for every queued message of every address, in key order
 * (so per address in seq order). Strings and value are borrowed. */
typedef int (*store_message_fn)(void *arg, const char *type, const char *id, uint64_t seq,
                                const uint8_t *val, size_t len);
int store_scan_messages(struct store *s, store_message_fn fn, void *arg)
    __attribute__((warn_unused_result));

/* Recovery: every paused address (P keys); strings and value borrowed. */
typedef int (*store_pause_fn)(void *arg, const char *type, const char *id, const uint8_t *val,
                              size_t len);
int store_scan_pauses(struct store *s, store_pause_fn fn, void *arg)
    __attribute__((warn_unused_result));

/* Delayed messages in due order (recovery). */
/* Delayed messages in key order: by key group, then due time (recovery;
 * the runtime's timer heap orders them across groups). */
typedef int (*store_delayed_fn)(void *arg, uint16_t kg, int64_t due_ms, uint64_t seq,
                                const uint8_t *val, size_t len);
int store_scan_delayed(struct store *s, store_delayed_fn fn, void *arg)
    __attribute__((warn_unused_result));
int store_get_delayed(struct store *s, uint16_t kg, int64_t due_ms, uint64_t seq,
                      uint8_t **val /* OUT */, size_t *len /* OUT */)
    __attribute__((warn_unused_result));

/* Egress records of `egress` from `from_offset` on, in offset order; fn
 * returns non-zero to stop. Returns 0 or -EIO. */
typedef int (*store_egress_fn)(void *arg, uint64_t offset, const uint8_t *val, size_t len);
int store_scan_egress(struct store *s, const char *egress, uint64_t from_offset,
                      store_egress_fn fn, void *arg) __attribute__((warn_unused_result));
/* First and last stored offsets. Returns 0, 1 when the egress has no
 * records, -EIO. */
int store_egress_bounds(struct store *s, const char *egress, uint64_t *first /* OUT */,
                        uint64_t *last /* OUT */) __attribute__((warn_unused_result));

/* Dead letters with id > after_id in id order; fn returns non-zero to stop. */
typedef int (*store_deadletter_fn)(void *arg, uint64_t id, const uint8_t *val, size_t len);
int store_scan_deadletters(struct store *s, uint64_t after_id, store_deadletter_fn fn, void *arg)
    __attribute__((warn_unused_result));

int store_get_idem(struct store *s, const char *type, const char *id, const char *key,
                   uint8_t **val /* OUT */, size_t *len /* OUT */)
    __attribute__((warn_unused_result));
/* A format-1 record ('J', no address), for stores upgraded from format 1. */
int store_get_legacy_idem(struct store *s, const char *key, uint8_t **val /* OUT */,
                          size_t *len /* OUT */) __attribute__((warn_unused_result));
/* 1 if any key of kind `tag` exists, 0 if none, -EIO. */
int store_has_kind(struct store *s, char tag) __attribute__((warn_unused_result));

/* Background sweeps: visits up to `max` keys of kind `tag` ('S', 'I', 'J')
 * after the cursor, which advances and wraps to the start at the end of the
 * range. fn gets the raw key (for store_batch_delete_raw) and value. */
struct store_cursor {
    char *key;                 /* last key visited, malloc'd; NULL = start */
    size_t len;
};
typedef int (*store_raw_fn)(void *arg, const char *key, size_t klen, const uint8_t *val,
                            size_t len);
int store_sweep(struct store *s, char tag, struct store_cursor *cur, size_t max,
                store_raw_fn fn, void *arg) __attribute__((warn_unused_result));
void store_cursor_free(struct store_cursor *cur);
/* For an S key from store_sweep: its type and id (pointers into a copy in
 * `buf`, which must hold klen + 1 bytes). Returns 0 or -1 if malformed. */
int store_state_key_address(const char *key, size_t klen, char *buf, const char **type,
                            const char **id);

/* ---- snapshots (savepoints) ----
 * A consistent view of everything committed when it is taken (a LevelDB
 * snapshot). Take and release on the loop thread, before store_close();
 * store_snapshot_scan() may run on any thread while the loop writes. */
struct store_snapshot;
struct store_snapshot *store_snapshot_take(struct store *s);   /* NULL: out of memory */
void store_snapshot_release(struct store *s, struct store_snapshot **snap);
/* Visits the keys in [lo, hi) (hi NULL: to the end) in order; fn returns
 * non-zero to stop, which is returned. 0, or -EIO with a sentence in err
 * (store_last_error() is not touched: other threads may call this). */
int store_snapshot_scan(struct store *s, const struct store_snapshot *snap, const void *lo,
                        size_t lolen, const void *hi, size_t hilen, store_raw_fn fn, void *arg,
                        char *err, size_t errlen) __attribute__((warn_unused_result));

/* Metadata. Returns 0 (malloc'd *val), 1 absent, -EIO. */
int store_get_meta(struct store *s, const char *name, uint8_t **val /* OUT */, size_t *len /* OUT */)
    __attribute__((warn_unused_result));

/* State listing (Admin ListState): calls fn for the S keys of function type
 * `type` whose id starts with `prefix` (bytes; "" = all), in key order: key
 * group by key group from 0 (or from after_id's group), ids in byte order
 * within one. after_id (NULL: none) starts after every key of that id. fn
 * gets the id, the state name and the value (borrowed) and returns
 * STORE_LIST_NEXT (the next key), STORE_LIST_SKIP_ID (the first key of the
 * next id: one seek) or STORE_LIST_STOP. Key groups without such keys cost a
 * seek each (4096 at most). Returns 0, or -EIO. */
enum { STORE_LIST_NEXT, STORE_LIST_SKIP_ID, STORE_LIST_STOP };
typedef int (*store_list_fn)(void *arg, const char *id, const char *name, const uint8_t *val,
                             size_t len);
int store_list_states(struct store *s, const char *type, const char *prefix,
                      const char *after_id, store_list_fn fn, void *arg)
    __attribute__((warn_unused_result));

#endif
