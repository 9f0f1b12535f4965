/*
 * clustersp — the cluster savepoint (docs/savepoints.md, "Cluster
 * savepoints"): a consistent cut of every node's store through a barrier
 * in etcd, under /statemesh/<name>/savepoints/<id>. The node that gets
 * Admin.ClusterSavepoint coordinates; every node (the coordinator too) is a
 * participant that reacts to the barrier's keys, seen through cluster.c's
 * watch (cluster_set_key_hook).
 *
 *   savepoints/<id>               "phase=pause|snapshot ranges=N
 *                                  max_pause_ms=M nodes=A,B,... path=P";
 *                                  bound to the coordinator's lease
 *   savepoints/<id>/paused/<node> a participant has paused; its lease
 *   savepoints/<id>/done/<node>   "ok=1 records=R bytes=B write_ms=W" or
 *                                 "ok=0 error=..."; its lease
 *
 * Phases:
 *   1. PAUSE. The coordinator puts the key with the owners of every range
 *      (all must be alive). Each of them sets cluster_set_paused(): dispatch
 *      starts no batch (and inbound peer frames are not applied), waits until
 *      no batch is in flight and no answered one waits for its checkpoint,
 *      then puts paused/<node>.
 *   2. SNAPSHOT. Once every listed node is paused, the coordinator flips the
 *      phase. Each node takes its LevelDB snapshot at once — that is the
 *      cut, in every node while all are paused — resumes dispatch, and
 *      writes its part, PATH/<node-id>, in the background (spcreate_local),
 *      then puts done/<node>.
 *   3. The coordinator writes CLUSTER.json (spcluster.h), renames
 *      PATH.partial-<id> to PATH, deletes the keys, answers.
 *
 * Bounds: a node that does not pause within pause_timeout_ms, a listed node
 * whose lease goes (killed, stalled), a node's failure or the client going
 * away abort the savepoint: the coordinator deletes the keys (everybody
 * resumes, a running part is cancelled) and removes the partial directory;
 * nothing under PATH. If the coordinator dies, its lease-bound key goes with
 * its lease and the others resume; a participant that stays paused longer
 * than max_pause_ms (pause timeout + 5 s) resumes by itself and refuses the
 * snapshot phase of that savepoint.
 *
 * Test-only failure points: STATEMESH_FAILPOINT_CLUSTERSP=STEP makes the
 * node abort() at STEP: before_paused (drained, before reporting paused),
 * after_paused (reported), after_cut (snapshot taken, part not written).
 */
#ifndef SM_CLUSTERSP_H
#define SM_CLUSTERSP_H

#include <stddef.h>

struct server;
struct rpc_server;

/* Reads the failure point; 0 or -1 with a sentence (unknown step). */
int clustersp_config(struct server *s, char *err, size_t errlen) __attribute__((warn_unused_result));
/* With a cluster: hooks into cluster.c's keys. Call after cluster_create. */
int clustersp_create(struct server *s) __attribute__((warn_unused_result));
/* Admin.ClusterSavepoint (also without a cluster: it then refuses). */
int clustersp_register(struct rpc_server *rpc, struct server *s) __attribute__((warn_unused_result));
/* Shutdown: aborts a coordinated savepoint, resumes, cancels a part. */
void clustersp_shutdown(struct server *s);
void clustersp_destroy(struct server *s);

#endif
