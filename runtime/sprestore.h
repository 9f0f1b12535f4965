/*
 * sprestore — `statemeshd --from-savepoint DIR [--key-groups A-B]`: loads a
 * savepoint (savepoint.h) into an empty store before the runtime starts.
 *
 *   1. the store directory must be absent or empty (a restore never merges
 *      into data);
 *   2. the whole savepoint is verified first (manifest, block CRCs, record
 *      counts, sha256): a damaged one is refused before anything is written;
 *   3. a marker "X restore_incomplete" is written and synced, then the
 *      records in batches, then one synced batch removes the marker and
 *      records "X restored_from". A runtime refuses to start on a store
 *      that still has the marker (sprestore_check): an interrupted restore
 *      is never mistaken for data.
 *
 * Records are re-keyed when the savepoint's key-group count differs from
 * the store's (every record names its address). With a key-group set only
 * the records of those groups are imported (the cluster's rescaling);
 * dead letters go with their address's group, and the node's records
 * (egress logs, legacy idempotency records, metadata) with group 0.
 */
#ifndef SM_SPRESTORE_H
#define SM_SPRESTORE_H

#include "log.h"
#include "store.h"

/* kg_first..kg_last: the key groups to import (0..STORE_KEY_GROUPS-1 for
 * all). Returns 0, or -1 with a sentence in err. */
int sprestore_run(const char *spdir, const char *dbdir, const struct store_options *so,
                  int kg_first, int kg_last, const struct log *lg, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* A cluster savepoint (spcluster.h) into one node of a cluster: verifies
 * all of it, then imports from every node's sub-directory the records of
 * the key groups with want[kg] != 0 (STORE_KEY_GROUPS entries: the groups
 * this node owns in etcd's ranges/), reading only the range files that
 * hold some of them; egress logs and metadata only from the sub-directory
 * named node_id (a node removed by a rescale leaves its egress logs
 * behind: docs/cluster.md). Dead letters of different parts with the same
 * id (each node numbers its own) get new ids above the largest one seen;
 * messages a part's node held for a key group it did not own go after
 * the owner's, with sequence numbers above every one imported.
 * Returns 0, or -1 with a sentence in err. */
int sprestore_run_cluster(const char *spdir, const char *dbdir, const struct store_options *so,
                          const uint8_t *want, const char *node_id, const struct log *lg,
                          char *err, size_t errlen) __attribute__((warn_unused_result));
/* After store_open: -1 (message in err) if the store holds an interrupted
 * restore, else 0. */
int sprestore_check(struct store *s, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#endif
