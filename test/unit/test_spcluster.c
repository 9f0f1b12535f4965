/* Unit tests for runtime/spcluster.c (CLUSTER.json written, read back and
 * refused when damaged) and clusterctl_parse_nodes (the node list of
 * `statemeshd --cluster-assign`). The barrier and the rescale against real
 * nodes and etcd: test/integration/test_cluster_savepoint.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "clusterctl.h"
#include "spcluster.h"
#include "sprestore.h"
#include "statemesh/v1/storage.pb-c.h"
#include "store.h"

static void make_dir(char *dir, size_t n)
{
    snprintf(dir, n, "/tmp/sm-spcluster-XXXXXX");
    assert_non_null(mkdtemp(dir));
}

static void remove_manifest(const char *dir)
{
    char p[300];
    snprintf(p, sizeof p, "%s/%s", dir, SPC_MANIFEST);
    unlink(p);
    rmdir(dir);
}

static void write_text(const char *dir, const char *text)
{
    char p[300];
    FILE *f;
    snprintf(p, sizeof p, "%s/%s", dir, SPC_MANIFEST);
    unlink(p);
    assert_non_null(f = fopen(p, "w"));
    fputs(text, f);
    fclose(f);
}

static void manifest_round_trip(void **state)
{
    char dir[64], err[600];
    struct spc_node nodes[2] = {{.id = "n-0", .nranges = 1, .first = {0}, .last = {2047},
                                 .records = 10, .bytes = 100},
                                {.id = "n-1", .nranges = 2, .first = {2048, 3000},
                                 .last = {2999, 4095}, .records = 5, .bytes = 50}};
    struct spc_manifest m = {.format_version = 1, .cluster = "c1", .id = "n-0-17",
                             .statemesh_version = "0.1.0", .key_groups = 4096,
                             .created_at_ms = 1796527480141, .cut_at_ms = 1796527479836,
                             .pause_ms = 51, .revision = 9, .records = 15, .bytes = 150,
                             .nodes = nodes, .nnodes = 2};
    struct spc_manifest r;

    (void)state;
    make_dir(dir, sizeof dir);
    assert_false(spc_is_cluster(dir));
    assert_int_equal(spc_manifest_write(dir, &m, err, sizeof err), 0);
    assert_true(spc_is_cluster(dir));
    assert_int_equal(spc_manifest_write(dir, &m, err, sizeof err), -1);   /* never overwrites */
    assert_int_equal(spc_manifest_read(dir, &r, err, sizeof err), 0);
    assert_string_equal(r.cluster, "c1");
    assert_string_equal(r.id, "n-0-17");
    assert_int_equal(r.key_groups, 4096);
    assert_int_equal(r.cut_at_ms, 1796527479836);
    assert_int_equal(r.pause_ms, 51);
    assert_int_equal(r.revision, 9);
    assert_int_equal(r.records, 15);
    assert_int_equal(r.nnodes, 2);
    assert_string_equal(r.nodes[1].id, "n-1");
    assert_int_equal(r.nodes[1].nranges, 2);
    assert_int_equal(r.nodes[1].first[1], 3000);
    assert_int_equal(r.nodes[1].last[1], 4095);
    assert_int_equal(r.nodes[1].bytes, 50);
    spc_manifest_free(&r);
    /* the parts are missing: verify names the node */
    assert_int_equal(spc_verify(dir, &r, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "node n-0: "));
    remove_manifest(dir);
}

static void manifest_refusals(void **state)
{
    static const struct {
        const char *text, *why;
    } cases[] = {
        {"[]", "not a JSON object"},
        {"{\"format\":\"statemesh-savepoint\",\"format_version\":1}", "\"format\" is not"},
        {"{\"format\":\"statemesh-cluster-savepoint\",\"format_version\":2}", "format version"},
        {"{\"format\":\"statemesh-cluster-savepoint\",\"format_version\":1,\"cluster\":\"c\","
         "\"id\":\"i\",\"key_groups\":4096,\"records\":0,\"bytes\":0,\"nodes\":[]}", "lists no node"},
        {"{\"format\":\"statemesh-cluster-savepoint\",\"format_version\":1,\"cluster\":\"c\","
         "\"id\":\"i\",\"key_groups\":4096,\"records\":0,\"bytes\":0,\"nodes\":[{\"node\":\"../x\","
         "\"key_groups\":[],\"records\":0,\"bytes\":0}]}", "an id of [A-Za-z0-9_.-]"},
        {"{\"format\":\"statemesh-cluster-savepoint\",\"format_version\":1,\"cluster\":\"c\","
         "\"id\":\"i\",\"key_groups\":4096,\"records\":0,\"bytes\":0,\"nodes\":[{\"node\":\"a\","
         "\"key_groups\":[[0,4096]],\"records\":0,\"bytes\":0}]}", "within 0..4095"},
        {"{\"format\":\"statemesh-cluster-savepoint\",\"format_version\":1,\"cluster\":\"c\","
         "\"id\":\"i\",\"key_groups\":4096,\"records\":0,\"bytes\":0,\"nodes\":[{\"node\":\"a\","
         "\"key_groups\":[],\"records\":0,\"bytes\":0},{\"node\":\"a\",\"key_groups\":[],"
         "\"records\":0,\"bytes\":0}]}", "listed twice"},
    };
    char dir[64], err[600];
    struct spc_manifest r;

    (void)state;
    make_dir(dir, sizeof dir);
    assert_int_equal(spc_manifest_read(dir, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a complete cluster savepoint"));
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_text(dir, cases[i].text);
        err[0] = '\0';
        assert_int_equal(spc_manifest_read(dir, &r, err, sizeof err), -1);
        if (!strstr(err, cases[i].why)) fail_msg("case %zu: %s", i, err);
        assert_null(r.nodes);
    }
    remove_manifest(dir);
}

static void parse_nodes(void **state)
{
    char ids[4][65], err[300];

    (void)state;
    assert_int_equal(clusterctl_parse_nodes("n-0,n-1,n-2", ids, 4, err, sizeof err), 3);
    assert_string_equal(ids[2], "n-2");
    assert_int_equal(clusterctl_parse_nodes("solo", ids, 4, err, sizeof err), 1);
    assert_int_equal(clusterctl_parse_nodes("", ids, 4, err, sizeof err), -1);
    assert_non_null(strstr(err, "'' is not a node id"));
    assert_int_equal(clusterctl_parse_nodes("a,b c", ids, 4, err, sizeof err), -1);
    assert_non_null(strstr(err, "'b c' is not a node id"));
    assert_int_equal(clusterctl_parse_nodes("a,b,", ids, 4, err, sizeof err), -1);
    assert_int_equal(clusterctl_parse_nodes("a,b,a", ids, 4, err, sizeof err), -1);
    assert_non_null(strstr(err, "node a is listed twice"));
    assert_int_equal(clusterctl_parse_nodes("a,b,c,d,e", ids, 4, err, sizeof err), -1);
    assert_non_null(strstr(err, "at most 4 nodes"));
}

/* An M key of test/counter/x with sequence number seq. */
static size_t message_key(uint8_t *key, uint64_t seq)
{
    uint16_t kg = store_key_group("test/counter", "x");
    size_t n = 0;
    key[n++] = 'M';
    key[n++] = (uint8_t)(kg >> 8);
    key[n++] = (uint8_t)kg;
    memcpy(key + n, "test/counter\0x\0", 15);
    n += 15;
    for (int i = 0; i < 8; i++) key[n++] = (uint8_t)(seq >> (56 - 8 * i));
    return n;
}

/* One node's part: a range file over every group holding test/counter/x's
 * message with sequence number 5 whose value is `text`, and node.smsp
 * holding one dead letter with id `id` for test/counter/<target>. */
static void write_part(const char *dir, const char *node, uint64_t id, const char *target,
                       const char *text, struct spc_node *cn)
{
    char sub[300], err[600];
    struct sp_file files[2] = {{.kg_first = 0, .kg_last = 4095}, {.kg_first = -1, .kg_last = -1}};
    struct sp_manifest m = {.format_version = SP_FORMAT_VERSION, .statemesh_version = "test",
                            .store_format = STORE_FORMAT_VERSION, .key_groups = 4096,
                            .files = files, .nfiles = 2};
    Statemesh__V1__StoredDeadLetter d = STATEMESH__V1__STORED_DEAD_LETTER__INIT;
    Statemesh__V1__Address a = STATEMESH__V1__ADDRESS__INIT;
    struct sp_writer *w;
    uint8_t key[9] = {'L'}, val[256];
    size_t vlen;

    snprintf(sub, sizeof sub, "%s/%s", dir, node);
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(sp_writer_open(&w, sub, "kg-0000-4095.smsp", err, sizeof err), 0);
    {
        uint8_t mkey[64];
        size_t mlen = message_key(mkey, 5);
        assert_int_equal(sp_writer_add(w, mkey, mlen, text, strlen(text), err, sizeof err), 0);
    }
    assert_int_equal(sp_writer_finish(&w, &files[0], err, sizeof err), 0);
    files[0].kg_first = 0;
    files[0].kg_last = 4095;
    a.type = "test/counter";
    a.id = (char *)target;
    d.target = &a;
    d.error = "boom";
    vlen = statemesh__v1__stored_dead_letter__pack(&d, val);
    for (int i = 0; i < 8; i++) key[1 + i] = (uint8_t)(id >> (56 - 8 * i));
    assert_int_equal(sp_writer_open(&w, sub, SP_NODE_FILE, err, sizeof err), 0);
    assert_int_equal(sp_writer_add(w, key, sizeof key, val, vlen, err, sizeof err), 0);
    assert_int_equal(sp_writer_finish(&w, &files[1], err, sizeof err), 0);
    files[1].kg_first = files[1].kg_last = -1;
    m.records = files[0].records + files[1].records;
    m.bytes = files[0].bytes + files[1].bytes;
    assert_int_equal(sp_manifest_write(sub, &m, err, sizeof err), 0);
    snprintf(cn->id, sizeof cn->id, "%s", node);
    cn->records = m.records;
    cn->bytes = m.bytes;
}

struct seen_messages {
    int n;
    uint64_t seq[4];
    char text[4][8];
};

static int count_message(void *arg, const char *type, const char *id, uint64_t seq,
                         const uint8_t *val, size_t len)
{
    struct seen_messages *m = arg;
    assert_string_equal(type, "test/counter");
    assert_string_equal(id, "x");
    if (m->n < 4) {
        m->seq[m->n] = seq;
        snprintf(m->text[m->n], sizeof m->text[0], "%.*s", (int)len, (const char *)val);
    }
    m->n++;
    return 0;
}

static int count_dl(void *arg, uint64_t id, const uint8_t *val, size_t len)
{
    uint64_t *ids = arg;
    (void)val;
    (void)len;
    ids[ids[0] < 4 ? ++ids[0] : 0] = id;
    return 0;
}

/* Two nodes numbered their dead letters and messages on their own: both
 * have dead letter 7 and a message with sequence number 5 for test/counter/x
 * (owned by one of them; the other held its message for it). A restore that
 * merges them keeps both of each: the dead letter under a new id, the held
 * message after the owner's. */
static void restore_merges_dead_letters_with_the_same_id(void **state)
{
    char dir[64], db[128], err[2000];
    struct spc_node nodes[2] = {{.nranges = 1, .first = {0}, .last = {2047}},
                                {.nranges = 1, .first = {2048}, .last = {4095}}};
    struct spc_manifest m = {.format_version = 1, .cluster = "c1", .id = "t",
                             .statemesh_version = "test", .key_groups = 4096, .nodes = nodes,
                             .nnodes = 2};
    struct store_options so = {0, 0, true, 0, 0};
    struct log lg = {LOG_LEVEL_ERROR, stderr};
    static uint8_t want[STORE_KEY_GROUPS];
    uint64_t ids[5] = {0};
    struct seen_messages msgs = {0};
    uint16_t kg = store_key_group("test/counter", "x");
    int owner = kg <= 2047 ? 0 : 1;
    struct store *st;

    (void)state;
    make_dir(dir, sizeof dir);
    write_part(dir, "n-0", 7, "a", owner == 0 ? "owner" : "held", &nodes[0]);
    write_part(dir, "n-1", 7, "b", owner == 1 ? "owner" : "held", &nodes[1]);
    m.records = nodes[0].records + nodes[1].records;
    m.bytes = nodes[0].bytes + nodes[1].bytes;
    assert_int_equal(spc_manifest_write(dir, &m, err, sizeof err), 0);
    memset(want, 1, sizeof want);
    snprintf(db, sizeof db, "%s/db", dir);
    assert_int_equal(mkdir(db, 0755), 0);
    if (sprestore_run_cluster(dir, db, &so, want, "n-0", &lg, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(store_open(&st, db, &so, &lg, err, sizeof err), 0);
    assert_int_equal(store_scan_deadletters(st, 0, count_dl, ids), 0);
    assert_int_equal(store_scan_messages(st, count_message, &msgs), 0);
    store_close(&st);
    assert_int_equal(msgs.n, 2);
    assert_int_equal(msgs.seq[0], 5);
    assert_string_equal(msgs.text[0], "owner");
    assert_int_equal(msgs.seq[1], 6);
    assert_string_equal(msgs.text[1], "held");
    assert_int_equal(ids[0], 2);
    assert_int_equal(ids[1], 7);
    assert_int_equal(ids[2], 8);
    /* a second restore into the same store is refused */
    assert_int_equal(sprestore_run_cluster(dir, db, &so, want, "n-0", &lg, err, sizeof err), -1);
    assert_non_null(strstr(err, "already holds a store"));
    snprintf(err, sizeof err, "rm -rf '%s'", dir);
    assert_int_equal(system(err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(manifest_round_trip),
        cmocka_unit_test(manifest_refusals),
        cmocka_unit_test(parse_nodes),
        cmocka_unit_test(restore_merges_dead_letters_with_the_same_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
