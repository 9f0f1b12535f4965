/*
 * deadletter — the durable store of messages that could not be processed.
 *
 * When a message has failed its endpoint's retry.max_attempts times (alone:
 * dispatch isolates the failing message of a batch first), or an operator
 * skips it, it moves, in one checkpoint, from the address's inbox (M key) to
 * dead letters (L key: StoredDeadLetter with the last error), and the
 * address goes on with its next messages. A pending Call in the batch gets
 * ABORTED with the error. Admin.ListDeadLetters pages through them;
 * ReplayDeadLetters moves them back into their targets' inboxes (after what
 * is queued there) and DropDeadLetters deletes them, each in one checkpoint,
 * answered once it is durable. CLI: `statemesh deadletters list|replay|drop`.
 */
#ifndef SM_DEADLETTER_H
#define SM_DEADLETTER_H

#include <stddef.h>
#include <stdint.h>

struct server;
struct mbox;
struct rpc_call;

/* Counts stored dead letters, moves next_seq past their ids. 0 or -1. */
int dl_open(struct server *s);
/* Moves the in-flight batch of mb to dead letters (open checkpoint) and
 * parks mb until that checkpoint commits. mb->attempts is recorded, not
 * reset (dispatch owns it). */
void dl_bury(struct server *s, struct mbox *mb, const char *error);
/* Admin methods. */
void dl_on_list(void *arg, struct rpc_call *call, const uint8_t *req, size_t len);
void dl_on_replay(void *arg, struct rpc_call *call, const uint8_t *req, size_t len);
void dl_on_drop(void *arg, struct rpc_call *call, const uint8_t *req, size_t len);

#endif
