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
#include <unistd.h>

#include <cmocka.h>

#include "clusterctl.h"
#include "spcluster.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(manifest_round_trip),
        cmocka_unit_test(manifest_refusals),
        cmocka_unit_test(parse_nodes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
