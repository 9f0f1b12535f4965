/*
 * idem — idempotency keys for Send, Call and SendStream.
 *
 * A key is scoped to the address its message goes to: the same key sent to
 * two addresses is two keys. A new key is stored (I kg type id key,
 * StoredIdempotency; store.h) in the same checkpoint as
 * the message it accepted, so after a crash either both exist or neither:
 * a client that retries a failed request with the same key has it applied
 * exactly once. Keys not yet committed, and Call keys with callers waiting
 * for the reply, live in an in-memory table (the store sees committed data
 * only); everything else is looked up in the store.
 *
 * Calls: the message carries idem_reply_key() as its reply_key (persisted in its M
 * key and inherited by the messages it causes); the first reply in the chain
 * is stored under the key, in the checkpoint of the result that produced it,
 * and released to every caller waiting with that key. A repeated Call gets
 * the stored reply, or waits for it.
 *
 * Records expire after runtime.idempotency_retention_hours; a background
 * sweep deletes them (an expired key is new again).
 */
#ifndef SM_IDEM_H
#define SM_IDEM_H

#include <stddef.h>
#include <stdint.h>

#define IDEM_KEY_MAX 256

struct idem;

struct idem_table {
    struct idem **buckets;
    size_t nbuckets, count;
    struct idem *fresh;        /* entries to review after the next commit */
};

struct server;

enum idem_outcome {
    IDEM_NEW,                  /* not seen: accept the message, then idem_remember() */
    IDEM_DUPLICATE,            /* seen: the ack/reply has been arranged */
    IDEM_CONFLICT,             /* a Call repeats a key used by a Send */
    IDEM_ERROR                 /* storage error (logged) */
};

/* Looks `key` up for a Send (call_id = the pending Send, acked after the
 * next checkpoint; 0 = no ack wanted, e.g. SendStream) or a Call (call_id
 * gets the stored reply, now or when it is produced). */
enum idem_outcome idem_check(struct server *s, const char *type, const char *id, const char *key,
                             int is_call, uint64_t call_id);
/* Records a new key of a message to type/id in the open checkpoint. */
void idem_remember(struct server *s, const char *type, const char *id, const char *key,
                   int is_call);
/* The reply_key a Call to type/id with `key` carries (malloc'd): it names
 * the record its reply is stored in. */
char *idem_reply_key(const char *type, const char *id, const char *key);
/* The key group of the address a reply_key names, or -1 (a legacy key
 * without address, or malformed). */
int idem_reply_key_kg(const char *reply_key);
/* A function replied to an invocation whose message carries reply_key. */
void idem_reply(struct server *s, const char *reply_key, const char *typename,
                const uint8_t *data, size_t len);
/* Start-up: notes whether a store upgraded from format 1 still holds
 * records without an address (J keys), consulted after a miss until they
 * expire. Returns 0 or -1 (storage error). */
int idem_open(struct server *s);
/* After a checkpoint: drops entries the store now answers for. */
void idem_after_commit(struct server *s);
/* Deletes expired records (a slice of the I range per call). */
void idem_sweep(struct server *s);
void idem_cleanup(struct server *s);

#endif
