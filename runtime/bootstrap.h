/*
 * bootstrap — Admin Bootstrap: loading addresses' application data into a
 * running runtime (docs/savepoints.md#bootstrap; `statemesh bootstrap`).
 *
 * A request carries up to BOOT_MAX_ENTRIES AddressData entries (admin.proto;
 * its bytes are bounded by the ingress's largest message). Each entry is
 * checked first (address.h rules, a type some endpoint serves, state names,
 * typenames, values up to runtime.max_message_bytes, the typename a function
 * declares for a state, delayed targets and tokens); a bad one is INVALID
 * with a sentence and does not stop the others.
 *
 * A valid entry is applied to its address like a message (dispatch.h,
 * disp_address_op): never while a batch of the address is in flight, all of
 * it in one checkpoint, exactly once:
 *   - ALREADY_LOADED when this very entry was loaded before: an
 *     idempotency record (I kg type id "bootstrap:" XXH3-128 of the entry's
 *     bytes, hex; idem.h, kept runtime.idempotency_retention_hours) is
 *     written with each loaded entry, and looked up in the open checkpoint's
 *     keys, then the state filter, then the store;
 *   - CREATE_ONLY: EXISTS when the address has (unexpired) state;
 *     OVERWRITE: every state value of the address is deleted first;
 *   - then its state values are written (with their own expires_at_ms),
 *     its messages appended to its inbox (dispatched afterwards, in order),
 *     its delayed messages registered as timers it owns.
 * The call is answered once the checkpoint holding every entry of the
 * request is durable. dry_run decides the same outcomes and applies
 * nothing (answered at once).
 *
 * Speed: an address the state filter has never seen needs no read at all
 * (store_no_state, store_no_idem); the request's entries are decoded one
 * by one from the request's bytes, which are also what is hashed.
 */
#ifndef SM_BOOTSTRAP_H
#define SM_BOOTSTRAP_H

#include <stddef.h>
#include <stdint.h>

#define BOOT_MAX_ENTRIES 10000

struct rpc_server;
struct server;

/* Idempotency keys of entries loaded into checkpoints not yet committed
 * (the store does not answer for them yet). Part of struct server. */
struct boot_keys {
    uint64_t *v;               /* pairs (low, high) of XXH3-128; (0, 0) empty */
    size_t cap, n;             /* slots, used */
    uint64_t gen;              /* the checkpoint generation that holds them */
};

/* Adds Bootstrap to `rpc`. Returns 0 or -1. */
int boot_register(struct rpc_server *rpc, struct server *s) __attribute__((warn_unused_result));
void boot_cleanup(struct server *s);

#endif
