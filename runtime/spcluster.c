/* spcluster — see spcluster.h. */
#include "spcluster.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "statemesh/json.h"

#define SPC_MANIFEST_MAX (4u << 20)

bool spc_is_cluster(const char *dir)
{
    char p[4200];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, SPC_MANIFEST);
    return stat(p, &st) == 0;
}

void spc_manifest_free(struct spc_manifest *m)
{
    free(m->nodes);
    m->nodes = NULL;
    m->nnodes = 0;
}

static void iso_time(int64_t ms, char *out, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

int spc_manifest_write(const char *dir, const struct spc_manifest *m, char *err, size_t errlen)
{
    char path[4200], when[64], cut[64], q1[200], q2[400], q3[100];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, SPC_MANIFEST);
    if ((f = fopen(path, "wx")) == NULL) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    iso_time(m->created_at_ms, when, sizeof when);
    iso_time(m->cut_at_ms, cut, sizeof cut);
    sm_json_quote(q1, sizeof q1, m->cluster, strlen(m->cluster));
    sm_json_quote(q2, sizeof q2, m->id, strlen(m->id));
    sm_json_quote(q3, sizeof q3, m->statemesh_version, strlen(m->statemesh_version));
    fprintf(f, "{\n  \"format\": \"statemesh-cluster-savepoint\",\n  \"format_version\": %d,\n"
            "  \"cluster\": %s,\n  \"id\": %s,\n  \"statemesh_version\": %s,\n"
            "  \"key_groups\": %" PRIu32 ",\n  \"created_at\": \"%s\",\n"
            "  \"created_at_ms\": %" PRId64 ",\n  \"cut_at\": \"%s\",\n  \"cut_at_ms\": %" PRId64
            ",\n  \"pause_ms\": %" PRId64 ",\n  \"topology_revision\": %" PRId64 ",\n"
            "  \"records\": %" PRIu64 ",\n  \"bytes\": %" PRIu64 ",\n  \"nodes\": [\n",
            m->format_version, q1, q2, q3, m->key_groups, when, m->created_at_ms, cut,
            m->cut_at_ms, m->pause_ms, m->revision, m->records, m->bytes);
    for (size_t i = 0; i < m->nnodes; i++) {
        const struct spc_node *n = &m->nodes[i];
        sm_json_quote(q1, sizeof q1, n->id, strlen(n->id));
        fprintf(f, "    {\"node\": %s, \"dir\": %s, \"key_groups\": [", q1, q1);
        for (uint32_t r = 0; r < n->nranges; r++)
            fprintf(f, "%s[%" PRIu32 ", %" PRIu32 "]", r ? ", " : "", n->first[r], n->last[r]);
        fprintf(f, "], \"records\": %" PRIu64 ", \"bytes\": %" PRIu64 "}%s\n", n->records,
                n->bytes, i + 1 < m->nnodes ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    return sp_json_file_close(f, path, err, errlen);
}

/* A node id is a sub-directory name: [A-Za-z0-9_.-], not starting with '.'. */
static bool plain_id(const char *id)
{
    if (!id[0] || id[0] == '.') return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '.' || *p == '-'))
            return false;
    return true;
}

static int read_node(const char *path, const sm_json *e, struct spc_node *n, uint32_t groups,
                     size_t i, char *err, size_t errlen)
{
    sm_json kgs, r, a, b;
    sm_json_iter it, ri;
    size_t nl = 0;
    int64_t lo, hi;

    if (e->kind != SM_JSON_OBJECT ||
        sm_json_get_string(e, "node", n->id, sizeof n->id, &nl) != SM_OK || !plain_id(n->id) ||
        sp_json_get_u64(e, "records", &n->records) != 0 || sp_json_get_u64(e, "bytes", &n->bytes) != 0 ||
        sm_json_get(e, "key_groups", &kgs) != SM_OK || kgs.kind != SM_JSON_ARRAY ||
        sm_json_iter_init(&it, &kgs) != SM_OK) {
        snprintf(err, errlen, "%s: node entry %zu: needs \"node\" (an id of [A-Za-z0-9_.-]), "
                 "\"key_groups\" (a list of [first, last]), \"records\" and \"bytes\"", path,
                 i + 1);
        return -1;
    }
    while (sm_json_iter_next(&it, NULL, &r) == SM_OK) {
        if (n->nranges == SPC_MAX_RANGES || r.kind != SM_JSON_ARRAY ||
            sm_json_iter_init(&ri, &r) != SM_OK || sm_json_iter_next(&ri, NULL, &a) != SM_OK ||
            sm_json_iter_next(&ri, NULL, &b) != SM_OK || sm_json_int64(&a, &lo) != SM_OK ||
            sm_json_int64(&b, &hi) != SM_OK || lo < 0 || hi < lo || hi >= (int64_t)groups) {
            snprintf(err, errlen, "%s: node %s: \"key_groups\" must be at most %d ranges [first, "
                     "last] within 0..%" PRIu32, path, n->id, SPC_MAX_RANGES, groups - 1);
            return -1;
        }
        n->first[n->nranges] = (uint32_t)lo;
        n->last[n->nranges++] = (uint32_t)hi;
    }
    return 0;
}

int spc_manifest_read(const char *dir, struct spc_manifest *m, char *err, size_t errlen)
{
    char path[4200], fmt[64];
    sm_json doc, nodes, e;
    sm_json_iter it;
    struct stat st;
    char *text = NULL;
    FILE *f = NULL;
    int64_t v;
    int rc = -1;

    memset(m, 0, sizeof *m);
    snprintf(path, sizeof path, "%s/%s", dir, SPC_MANIFEST);
    if ((f = fopen(path, "rb")) == NULL) {
        snprintf(err, errlen, "%s: %s (not a complete cluster savepoint: CLUSTER.json is "
                 "written last)", path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &st) != 0 || st.st_size <= 0 || (uint64_t)st.st_size > SPC_MANIFEST_MAX) {
        snprintf(err, errlen, "%s: empty or larger than %u bytes", path, SPC_MANIFEST_MAX);
        goto out;
    }
    if (!(text = malloc((size_t)st.st_size)) || fread(text, 1, (size_t)st.st_size, f) !=
                                                    (size_t)st.st_size) {
        snprintf(err, errlen, "%s: cannot read it", path);
        goto out;
    }
    if (sm_json_parse(text, (size_t)st.st_size, &doc) != SM_OK || doc.kind != SM_JSON_OBJECT) {
        snprintf(err, errlen, "%s: not a JSON object", path);
        goto out;
    }
    if (sm_json_get_string(&doc, "format", fmt, sizeof fmt, NULL) != SM_OK ||
        strcmp(fmt, "statemesh-cluster-savepoint") != 0) {
        snprintf(err, errlen, "%s: \"format\" is not \"statemesh-cluster-savepoint\"", path);
        goto out;
    }
    if (sm_json_get_int64(&doc, "format_version", &v) != SM_OK || v != SPC_FORMAT_VERSION) {
        snprintf(err, errlen, "%s: cluster savepoint format version missing or not %d", path,
                 SPC_FORMAT_VERSION);
        goto out;
    }
    m->format_version = (int)v;
    if (sm_json_get_string(&doc, "cluster", m->cluster, sizeof m->cluster, NULL) != SM_OK ||
        sm_json_get_string(&doc, "id", m->id, sizeof m->id, NULL) != SM_OK ||
        sm_json_get_int64(&doc, "key_groups", &v) != SM_OK || v < 1 || v > 65536 ||
        sp_json_get_u64(&doc, "records", &m->records) != 0 || sp_json_get_u64(&doc, "bytes", &m->bytes) != 0) {
        snprintf(err, errlen, "%s: needs \"cluster\", \"id\", \"key_groups\" (1..65536), "
                 "\"records\" and \"bytes\"", path);
        goto out;
    }
    m->key_groups = (uint32_t)v;
    if (sm_json_get_string(&doc, "statemesh_version", m->statemesh_version,
                           sizeof m->statemesh_version, NULL) != SM_OK)
        snprintf(m->statemesh_version, sizeof m->statemesh_version, "unknown");
    if (sm_json_get_int64(&doc, "created_at_ms", &m->created_at_ms) != SM_OK) m->created_at_ms = 0;
    if (sm_json_get_int64(&doc, "cut_at_ms", &m->cut_at_ms) != SM_OK) m->cut_at_ms = 0;
    if (sm_json_get_int64(&doc, "pause_ms", &m->pause_ms) != SM_OK) m->pause_ms = 0;
    if (sm_json_get_int64(&doc, "topology_revision", &m->revision) != SM_OK) m->revision = 0;
    if (sm_json_get(&doc, "nodes", &nodes) != SM_OK || nodes.kind != SM_JSON_ARRAY ||
        sm_json_iter_init(&it, &nodes) != SM_OK) {
        snprintf(err, errlen, "%s: \"nodes\" is missing or not an array", path);
        goto out;
    }
    while (sm_json_iter_next(&it, NULL, &e) == SM_OK) {
        struct spc_node *n;
        if (m->nnodes == SPC_MAX_NODES) {
            snprintf(err, errlen, "%s: more than %d nodes", path, SPC_MAX_NODES);
            goto out;
        }
        if (!(n = realloc(m->nodes, (m->nnodes + 1) * sizeof *n))) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        m->nodes = n;
        n = &m->nodes[m->nnodes];
        memset(n, 0, sizeof *n);
        if (read_node(path, &e, n, m->key_groups, m->nnodes, err, errlen) != 0) goto out;
        for (size_t j = 0; j < m->nnodes; j++)
            if (strcmp(m->nodes[j].id, n->id) == 0) {
                snprintf(err, errlen, "%s: node %s is listed twice", path, n->id);
                goto out;
            }
        m->nnodes++;
    }
    if (m->nnodes == 0) {
        snprintf(err, errlen, "%s: lists no node", path);
        goto out;
    }
    rc = 0;
out:
    if (rc != 0) spc_manifest_free(m);
    free(text);
    fclose(f);
    return rc;
}

int spc_verify(const char *dir, struct spc_manifest *m, sp_progress_fn progress, void *parg,
               char *err, size_t errlen)
{
    char sub[4200], e[1500];
    uint64_t records = 0, bytes = 0;

    if (spc_manifest_read(dir, m, err, errlen) != 0) return -1;
    for (size_t i = 0; i < m->nnodes; i++) {
        struct sp_manifest sm;
        snprintf(sub, sizeof sub, "%s/%s", dir, m->nodes[i].id);
        if (sp_verify(sub, &sm, progress, parg, e, sizeof e) != 0) {
            snprintf(err, errlen, "node %s: %s", m->nodes[i].id, e);
            goto bad;
        }
        if (sm.records != m->nodes[i].records || sm.bytes != m->nodes[i].bytes ||
            sm.key_groups != m->key_groups) {
            snprintf(err, errlen, "node %s: its MANIFEST.json says %" PRIu64 " records, %" PRIu64
                     " bytes, %" PRIu32 " key groups but CLUSTER.json says %" PRIu64 ", %" PRIu64
                     ", %" PRIu32 " (damaged or mixed up)", m->nodes[i].id, sm.records, sm.bytes,
                     sm.key_groups, m->nodes[i].records, m->nodes[i].bytes, m->key_groups);
            sp_manifest_free(&sm);
            goto bad;
        }
        sp_manifest_free(&sm);
        records += m->nodes[i].records;
        bytes += m->nodes[i].bytes;
    }
    if (records != m->records || bytes != m->bytes) {
        snprintf(err, errlen, "%s/%s: the nodes hold %" PRIu64 " records, %" PRIu64 " bytes but "
                 "the totals say %" PRIu64 ", %" PRIu64, dir, SPC_MANIFEST, records, bytes,
                 m->records, m->bytes);
        goto bad;
    }
    return 0;
bad:
    spc_manifest_free(m);
    return -1;
}
