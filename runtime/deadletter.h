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
 *
 * This is the store of dead letters, below dispatch: dispatch calls dl_bury;
 * the Admin service (admin.c) answers the RPCs with dl_list, dl_replay and
 * dl_drop, and a replay puts each message back through the admin's own
 * requeue function (to dispatch), so nothing here calls back up.
 */
#ifndef SM_DEADLETTER_H
#define SM_DEADLETTER_H

#include <stddef.h>
#include <stdint.h>

struct server;
struct mbox;
struct Statemesh__V1__DeadLetter;
struct Statemesh__V1__DeadLetterSelector;
struct Statemesh__V1__StoredDeadLetter;

/* Counts stored dead letters, moves next_seq past their ids. 0 or -1. */
int dl_open(struct server *s);
/* Moves the in-flight batch of mb to dead letters (open checkpoint) and
 * parks mb until that checkpoint commits. mb->attempts is recorded, not
 * reset (dispatch owns it). */
void dl_bury(struct server *s, struct mbox *mb, const char *error);

/* ---- list, replay, drop (for the Admin service) ---- */

/* A page of dead letters: items[i] borrows from stored[i]. */
struct dl_page {
    struct Statemesh__V1__DeadLetter **items;
    struct Statemesh__V1__StoredDeadLetter **stored;
    size_t n;
};

/* Reads the dead letters of function type `type` ("" any) with ids above
 * `after`, in id order, at most `limit` (0: 100; capped at 10000) into
 * *page; unreadable ones are left out. Returns 0, or -1 when the store
 * cannot be read. Either way free *page with dl_page_cleanup. */
int dl_list(struct server *s, const char *type, uint64_t after, uint32_t limit,
            struct dl_page *page /* OUT */) __attribute__((warn_unused_result));
void dl_page_cleanup(struct dl_page *page);

/* Puts a dead letter's message back into its target's inbox (d has its
 * target and argument; d is borrowed). Returns 0, or -1 when nothing
 * serves the target's type: the dead letter then stays. */
typedef int (*dl_requeue_fn)(void *arg, const struct Statemesh__V1__StoredDeadLetter *d);

/* The dead letters sel names (its ids, or all; of sel->type if set), in
 * the open checkpoint: dl_replay hands each to requeue and deletes those
 * it took; dl_drop deletes them (unreadable ones too). *count: how many
 * were replayed or dropped; *unroutable: how many requeue refused.
 * Returns 0, or -1 when the store cannot be read (what was done before
 * stays in the open checkpoint). */
int dl_replay(struct server *s, const struct Statemesh__V1__DeadLetterSelector *sel,
              dl_requeue_fn requeue, void *arg, uint64_t *count /* OUT */,
              uint64_t *unroutable /* OUT */) __attribute__((warn_unused_result));
int dl_drop(struct server *s, const struct Statemesh__V1__DeadLetterSelector *sel,
            uint64_t *count /* OUT */) __attribute__((warn_unused_result));

#endif
