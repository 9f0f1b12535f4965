/*
 * clusterctl — the offline steps of a rescale (docs/cluster.md,
 * "Rescaling"), run by `statemeshd -c FILE` before (or instead of) the
 * runtime: each call opens its own gRPC loop and etcd client on the
 * configuration's cluster group, does its few etcd calls and closes them.
 *
 *   clusterctl_assign     `statemeshd --cluster-assign ID1,ID2,... -c FILE`:
 *                         writes new even ranges over the given nodes (in
 *                         that order) in ONE Txn, guarded by the ranges as
 *                         read (mod_revision) and by no controller key (no
 *                         node running); refuses while any node is
 *                         registered. Every range gets a new epoch.
 *   clusterctl_owned      the key groups ranges/ gives this node: what
 *                         `--from-savepoint` imports from a cluster
 *                         savepoint, before the node joins and serves.
 *
 * Errors: 0, or -1 with a sentence in err (nothing written).
 */
#ifndef SM_CLUSTERCTL_H
#define SM_CLUSTERCTL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "log.h"

#define CLUSTERCTL_MAX_NODES 64

/* Assigns; out gets a summary line per range. */
int clusterctl_assign(const struct cfg *cfg, const char *nodes_csv, const struct log *lg,
                      char *out, size_t outlen, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* want[kg] = 1 for every key group cfg's node owns (STORE_KEY_GROUPS
 * entries). Refuses when no ranges exist or the node owns none. */
int clusterctl_owned(const struct cfg *cfg, uint8_t *want /* OUT */, const struct log *lg,
                     char *err, size_t errlen) __attribute__((warn_unused_result));
/* Checks a comma-separated node list (ids as cluster.node_id, no
 * duplicates, 1..CLUSTERCTL_MAX_NODES). Returns how many, or -1. */
int clusterctl_parse_nodes(const char *csv, char ids[][65], size_t max, char *err, size_t errlen);

#endif
