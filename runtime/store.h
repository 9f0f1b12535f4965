/*
 * store — statemeshd's LevelDB: key layout, checkpoint write batches, reads.
 *
 * One LevelDB per node. Keys are binary and ordered; every key of an address
 * begins with its key group so ranges of key groups can move between nodes:
 *
 *   'S' kg:u16be type '\0' id '\0' name      -> StoredState  (storage.proto)
 *   'M' kg:u16be type '\0' id '\0' seq:u64be -> StoredMessage (inbox, arrival order)
 *   'X' name                                 -> metadata
 *
 * kg = XXH3_64bits(type '\0' id) % STORE_KEY_GROUPS. Ids never contain NUL
 * (address.h), so "type\0id\0" is an unambiguous prefix of one address.
 * Metadata: "X format" = "1" (refuse to open other versions),
 * "X key_groups" = u32be 4096 (refuse a mismatch).
 *
 * A checkpoint is one store_batch written with store_write(): atomic, and
 * durable when sync is set. The store never writes on its own.
 *
 * Errors: functions return 0 or a negative code; LevelDB's messages are
 * logged and (where an `err` out-parameter exists) copied out, never leaked
 * as leveldb-allocated strings.
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
#define STORE_FORMAT_VERSION 1

struct store;
struct store_batch;

struct store_options {
    size_t block_cache_bytes;   /* 0: 32 MiB */
    size_t write_buffer_bytes;  /* 0: 16 MiB */
    bool compression;           /* snappy */
};

uint16_t store_key_group(const char *type, const char *id);

/* Opens (creating if needed) the database in `dir`, which must exist.
 * On failure returns -1 and a message in err. */
int store_open(struct store **out /* OUT, owned */, const char *dir,
               const struct store_options *opt, const struct log *lg,
               char *err, size_t errlen) __attribute__((warn_unused_result));
void store_close(struct store **sp);          /* sets *sp = NULL */

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

/* Writes the batch atomically (fsync'd when sync). Does not clear it.
 * Returns 0 or -EIO (message logged). */
int store_write(struct store *s, struct store_batch *b, bool sync)
    __attribute__((warn_unused_result));

/* ---- reads (committed data only) ---- */

/* One state value. Returns 0 and a malloc'd copy in *val (caller frees),
 * 1 if absent, or -EIO. */
int store_get_state(struct store *s, const char *type, const char *id, const char *name,
                    uint8_t **val /* OUT */, size_t *len /* OUT */)
    __attribute__((warn_unused_result));

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

/* Metadata. Returns 0 (malloc'd *val), 1 absent, -EIO. */
int store_get_meta(struct store *s, const char *name, uint8_t **val /* OUT */, size_t *len /* OUT */)
    __attribute__((warn_unused_result));

#endif
