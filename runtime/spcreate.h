/*
 * spcreate — Admin.CreateSavepoint: a savepoint written online.
 *
 * The request is checked on the loop thread (path absolute, not there yet,
 * parent a directory; no other savepoint running), which then takes a
 * LevelDB snapshot — between two checkpoints, so the cut holds exactly the
 * checkpoints committed so far: every acknowledged input with all of its
 * effects, and nothing half-applied — and hands it to one writer thread.
 * The thread writes the range files and node.smsp (savepoint.h) into
 * PATH.partial-PID, then MANIFEST.json, fsyncs, and renames the directory
 * to PATH: a savepoint either is complete under its name or is not there.
 * The loop streams progress every 250 ms and the result at the end. The
 * writer thread runs at nice 10, so that on a busy machine the loop keeps
 * serving at close to its full rate while a savepoint is written.
 *
 * Cancelled (the client went away, the runtime shuts down, or a write
 * failed): the thread stops and the partial directory is removed. A
 * partial directory left by a kill -9 has no manifest (never verifies) and
 * is removed by the next savepoint written to the same PATH.
 *
 * Test-only fault knob: STATEMESH_FAULT_SAVEPOINT_SLEEP_US=N (0..10000000)
 * in statemeshd's environment makes the writer thread sleep N microseconds
 * after each block it writes and after each file's end, so that tests can
 * act while a savepoint is being written (kill -9, cancel, load). Read once
 * at start (spcreate_config); a bad value refuses to start. Never set it in
 * production.
 */
#ifndef SM_SPCREATE_H
#define SM_SPCREATE_H

#include <stddef.h>

struct rpc_server;
struct server;
struct sp_manifest;

/* Reads the fault knob into s->sp_fault_sleep_us: 0, or -1 with a
 * sentence in err for a bad value. */
int spcreate_config(struct server *s, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* Adds Admin.CreateSavepoint to `rpc`. Returns 0 or -1. */
int spcreate_register(struct rpc_server *rpc, struct server *s)
    __attribute__((warn_unused_result));
/* A local job: how it ended, on the loop. rc 0: m is the written
 * manifest (borrowed for the call); -1: err says why (the partial
 * directory is gone). */
typedef void (*spcreate_done_fn)(void *arg, int rc, const char *err, const struct sp_manifest *m);
/* Writes a savepoint of this node's store to PATH (absolute, new, parent
 * existing) with no client: the cluster savepoint's per-node part
 * (clustersp.h). The LevelDB snapshot — the cut — is taken before this
 * returns 0; fn runs once when the files are written or failed. -1 with a
 * sentence in err: nothing started (another savepoint is running, ...). */
int spcreate_local(struct server *s, const char *path, unsigned nranges, spcreate_done_fn fn,
                   void *arg, char *err, size_t errlen) __attribute__((warn_unused_result));
/* Cancels a running local job without calling its fn. */
void spcreate_cancel_local(struct server *s);
/* Shutdown: stops a running savepoint and waits for its thread. */
void spcreate_shutdown(struct server *s);

#endif
