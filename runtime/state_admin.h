/*
 * state_admin — the Admin service's state administration (docs/state-admin.md):
 *
 *   ListState     the ids of a function type that hold state, paged, in key
 *                 order (key group, then id bytes); committed state only,
 *                 expired values count as absent
 *   SetState      write one state value of an address
 *   DeleteState   delete one or every state value of an address
 *
 * Writes are applied like a message to the address (dispatch.h,
 * disp_state_op): never while a batch of it is in flight, through the state
 * cache into the open checkpoint, exactly once; the call is held and
 * answered after that checkpoint is durable. A listing is one bounded scan
 * on the loop thread: at most `limit` ids and LIST_SCAN_KEYS visited keys
 * (plus one seek per key group) per request.
 *
 * Every request is checked like the rest of Admin (strings UTF-8 without
 * NUL, address.h rules) and refused with INVALID_ARGUMENT otherwise; a
 * value over runtime.max_message_bytes is RESOURCE_EXHAUSTED; a type no
 * endpoint serves is NOT_FOUND for writes. A refused request changes nothing.
 */
#ifndef SM_STATE_ADMIN_H
#define SM_STATE_ADMIN_H

struct rpc_server;
struct server;

/* Adds ListState, SetState and DeleteState to `rpc`. Returns 0 or -1. */
int sadm_register(struct rpc_server *rpc, struct server *s) __attribute__((warn_unused_result));

#endif
