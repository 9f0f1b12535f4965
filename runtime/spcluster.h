/*
 * spcluster — the cluster savepoint's directory (docs/savepoints.md,
 * "Cluster savepoints"): one sub-directory per node, each a complete
 * single-node savepoint (savepoint.h) of that node's store at the cluster's
 * consistent cut, and CLUSTER.json, written last, that lists them:
 *
 *   DIR/CLUSTER.json    format "statemesh-cluster-savepoint", version 1, the
 *                       cluster name, the savepoint id, key-group count, the
 *                       cut's time, how long the barrier held the cluster
 *                       paused, the etcd revision of the topology, and per
 *                       node its sub-directory, the key-group ranges it
 *                       owned at the cut, its records and bytes
 *   DIR/<node-id>/      MANIFEST.json + range files + node.smsp
 *
 * Each node's sub-savepoint tiles all key groups (the format requires it);
 * the files of groups it did not own are empty. A restore on a node of any
 * new cluster imports, from every sub-directory, only the range files that
 * hold groups it will own (sprestore.h), so it reads no other node's data.
 *
 * No server state: the runtime (clustersp.c, sprestore.c) and the CLI
 * (`savepoint verify|inspect`) share it. Errors: 0 or -1 with a sentence.
 */
#ifndef SM_SPCLUSTER_H
#define SM_SPCLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "savepoint.h"

#define SPC_MANIFEST "CLUSTER.json"
#define SPC_FORMAT_VERSION 1
#define SPC_MAX_NODES 128
#define SPC_MAX_RANGES 64          /* per node */

struct spc_node {
    char id[65];                   /* node id = its sub-directory's name */
    uint32_t nranges;
    uint32_t first[SPC_MAX_RANGES], last[SPC_MAX_RANGES];   /* owned at the cut */
    uint64_t records, bytes;
};

struct spc_manifest {
    int format_version;
    char cluster[65];
    char id[160];
    char statemesh_version[32];
    uint32_t key_groups;
    int64_t created_at_ms, cut_at_ms, pause_ms, revision;
    uint64_t records, bytes;
    struct spc_node *nodes;
    size_t nnodes;
};

/* True when DIR holds a CLUSTER.json (complete or not, it is no single-node
 * savepoint). */
bool spc_is_cluster(const char *dir);
void spc_manifest_free(struct spc_manifest *m);
/* Writes DIR/CLUSTER.json (fsync'd). */
int spc_manifest_write(const char *dir, const struct spc_manifest *m, char *err, size_t errlen)
    __attribute__((warn_unused_result));
int spc_manifest_read(const char *dir, struct spc_manifest *m /* OUT */, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* Reads CLUSTER.json and verifies every node's sub-savepoint (sp_verify),
 * and that its records and bytes are what CLUSTER.json says. */
int spc_verify(const char *dir, struct spc_manifest *m /* OUT */, sp_progress_fn progress,
               void *parg, char *err, size_t errlen) __attribute__((warn_unused_result));

#endif
