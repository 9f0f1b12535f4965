/* Unit tests of runtime/spjsonl.c and valjson.c: canonical lines read and
 * written back byte for byte, other spellings of the same data written
 * canonically, decoded values, and every refusal with its reason. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spjsonl.h"
#include "statemesh/value.h"

/* Parses line and writes it back; returns the malloc'd output. */
static char *rewrite(const char *line)
{
    Statemesh__V1__AddressData *d = NULL;
    char err[512], *buf = NULL;
    size_t n = 0;
    FILE *f;
    if (spj_parse_line(line, strlen(line), &d, err, sizeof err) != 0) fail_msg("%s: %s", line, err);
    assert_non_null(d);
    f = open_memstream(&buf, &n);
    assert_non_null(f);
    assert_int_equal(spj_write_line(f, d), 0);
    assert_int_equal(fclose(f), 0);
    spj_free(d);
    return buf;
}

/* Canonical lines come back byte for byte. */
static void canonical_lines_round_trip(void **state)
{
    static const char *const lines[] = {
        "{\"type\":\"ns/a\",\"id\":\"1\"}",
        "{\"type\":\"ns/a\",\"id\":\"x y\",\"state\":{\"n\":{\"typename\":\"statemesh/int64\",\"value\":-9223372036854775808}}}",
        "{\"type\":\"ns/a\",\"id\":\"é\\\"\\\\\\n\\u0001\","
        "\"state\":{"
        "\"a\":{\"typename\":\"statemesh/float64\",\"value\":0.1},"
        "\"b\":{\"typename\":\"statemesh/float64\",\"value\":-0},"
        "\"c\":{\"typename\":\"statemesh/float64\",\"value\":1e+300},"
        "\"d\":{\"typename\":\"statemesh/float64\",\"value\":\"NaN\"},"
        "\"e\":{\"typename\":\"statemesh/float64\",\"value\":\"-Infinity\"},"
        "\"f\":{\"typename\":\"statemesh/bool\",\"value\":false},"
        "\"g\":{\"typename\":\"statemesh/string\",\"value\":\"hé\\t\\u007f\"},"
        "\"h\":{\"typename\":\"statemesh/json\",\"value\":{\"k\":[1,2.5,null,\"s\"]}},"
        "\"i\":{\"typename\":\"statemesh/bytes\",\"hex\":\"00ff10\"},"
        "\"j\":{\"typename\":\"ex/thing\",\"hex\":\"\"},"
        "\"k\":{\"typename\":\"statemesh/json\",\"hex\":\"7b\"},"
        "\"l\":{\"typename\":\"statemesh/int64\",\"hex\":\"0102\",\"expires_at_ms\":1700000000000},"
        "\"m\":{\"typename\":\"statemesh/string\",\"hex\":\"6100\"},"
        "\"n\":{\"typename\":\"plain\",\"hex\":\"ab\"}},"
        "\"messages\":[{\"typename\":\"statemesh/string\",\"value\":\"first\"},"
        "{\"typename\":\"statemesh/int64\",\"value\":2,\"caller\":{\"type\":\"ns/b\",\"id\":\"7\"}}],"
        "\"delayed\":[{\"due_at_ms\":5,\"typename\":\"statemesh/bool\",\"value\":true,\"from_ingress\":true},"
        "{\"due_at_ms\":6,\"typename\":\"statemesh/int64\",\"value\":1,\"target\":{\"type\":\"ns/b\",\"id\":\"7\"},"
        "\"token\":\"t1\"},"
        "{\"due_at_ms\":0,\"typename\":\"statemesh/json\",\"value\":[]}]}",
    };
    (void)state;
    for (size_t i = 0; i < sizeof lines / sizeof *lines; i++) {
        char *out = rewrite(lines[i]);
        size_t n = strlen(lines[i]);
        assert_int_equal(strlen(out), n + 1);
        assert_memory_equal(out, lines[i], n);
        assert_int_equal(out[n], '\n');
        free(out);
    }
}

/* Other spellings of the same data are written canonically. */
static void other_spellings_become_canonical(void **state)
{
    static const char *const cases[][2] = {
        {" { \"id\" : \"1\" , \"type\" : \"ns/a\" , \"state\" : { } , \"messages\" : [ ] , \"delayed\":[] } ",
         "{\"type\":\"ns/a\",\"id\":\"1\"}"},
        {"{\"type\":\"ns/a\",\"id\":\"1\",\"state\":{\"z\":{\"value\":1,\"typename\":\"statemesh/int64\","
         "\"expires_at_ms\":0},\"a\":{\"typename\":\"statemesh/bytes\",\"hex\":\"ABcd\"}}}",
         "{\"type\":\"ns/a\",\"id\":\"1\",\"state\":{\"a\":{\"typename\":\"statemesh/bytes\",\"hex\":\"abcd\"},"
         "\"z\":{\"typename\":\"statemesh/int64\",\"value\":1}}}"},
        /* bytes also read from "value" (as send --stdin reads them); numbers re-spelled */
        {"{\"type\":\"ns/a\",\"id\":\"1\",\"state\":{\"b\":{\"typename\":\"statemesh/bytes\",\"value\":\"0A\"},"
         "\"f\":{\"typename\":\"statemesh/float64\",\"value\":1E2},\"s\":{\"typename\":\"statemesh/string\","
         "\"value\":\"\\u0041\\/\"},\"j\":{\"typename\":\"statemesh/json\",\"value\":{ \"a\" : 1 }}}}",
         "{\"type\":\"ns/a\",\"id\":\"1\",\"state\":{\"b\":{\"typename\":\"statemesh/bytes\",\"hex\":\"0a\"},"
         "\"f\":{\"typename\":\"statemesh/float64\",\"value\":100},\"j\":{\"typename\":\"statemesh/json\","
         "\"value\":{ \"a\" : 1 }},\"s\":{\"typename\":\"statemesh/string\",\"value\":\"A/\"}}}"},
        /* a target equal to the owner, an empty token, from_ingress false: left out */
        {"{\"type\":\"ns/a\",\"id\":\"1\",\"delayed\":[{\"token\":\"\",\"from_ingress\":false,"
         "\"target\":{\"id\":\"1\",\"type\":\"ns/a\"},\"typename\":\"statemesh/int64\",\"hex\":\"0100000000000000\","
         "\"due_at_ms\":9}]}",
         "{\"type\":\"ns/a\",\"id\":\"1\",\"delayed\":[{\"due_at_ms\":9,\"typename\":\"statemesh/int64\","
         "\"value\":1}]}"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *out = rewrite(cases[i][0]);
        size_t n = strlen(out);
        assert_true(n > 0 && out[n - 1] == '\n');
        out[n - 1] = '\0';
        assert_string_equal(out, cases[i][1]);
        free(out);
    }
}

/* What the parsed message holds. */
static void parsed_fields(void **state)
{
    const char *line =
        "{\"type\":\"ns/a\",\"id\":\"k\",\"state\":{\"n\":{\"typename\":\"statemesh/int64\",\"value\":258,"
        "\"expires_at_ms\":77},\"s\":{\"typename\":\"statemesh/string\",\"value\":\"hé\"}},"
        "\"messages\":[{\"typename\":\"statemesh/bool\",\"value\":true,\"caller\":{\"type\":\"ns/b\",\"id\":\"c\"}}],"
        "\"delayed\":[{\"due_at_ms\":12,\"typename\":\"ex/t\",\"hex\":\"beef\",\"token\":\"tok\"},"
        "{\"due_at_ms\":13,\"typename\":\"statemesh/float64\",\"value\":\"Infinity\",\"from_ingress\":true}]}";
    Statemesh__V1__AddressData *d;
    char err[256];
    (void)state;
    assert_int_equal(spj_parse_line(line, strlen(line), &d, err, sizeof err), 0);
    assert_string_equal(d->address->type, "ns/a");
    assert_string_equal(d->address->id, "k");
    assert_int_equal(d->n_state, 2);
    assert_string_equal(d->state[0]->name, "n");
    assert_string_equal(d->state[0]->value->typename_, "statemesh/int64");
    assert_int_equal(d->state[0]->value->value.len, 8);
    assert_int_equal(sm_decode_int64(d->state[0]->value->value.data), 258);
    assert_int_equal(d->state[0]->expires_at_ms, 77);
    assert_int_equal(d->state[1]->value->value.len, 3);
    assert_memory_equal(d->state[1]->value->value.data, "h\xc3\xa9", 3);
    assert_int_equal(d->n_messages, 1);
    assert_int_equal(d->messages[0]->argument->value.len, 1);
    assert_int_equal(d->messages[0]->argument->value.data[0], 1);
    assert_string_equal(d->messages[0]->caller->id, "c");
    assert_int_equal(d->n_delayed, 2);
    assert_int_equal(d->delayed[0]->due_at_ms, 12);
    assert_string_equal(d->delayed[0]->argument->typename_, "ex/t");
    assert_memory_equal(d->delayed[0]->argument->value.data, "\xbe\xef", 2);
    assert_string_equal(d->delayed[0]->token, "tok");
    assert_null(d->delayed[0]->target);
    assert_false(d->delayed[0]->from_ingress);
    assert_true(isinf(sm_decode_float64(d->delayed[1]->argument->value.data)));
    assert_true(d->delayed[1]->from_ingress);
    spj_free(d);
    spj_free(NULL);
}

/* Every refusal names what is wrong and hands back nothing. */
static void bad_lines_are_refused(void **state)
{
#define A "\"type\":\"ns/a\",\"id\":\"1\""
#define ST(x) "{" A ",\"state\":{\"n\":" x "}}"
#define MSG(x) "{" A ",\"messages\":[" x "]}"
#define DL(x) "{" A ",\"delayed\":[" x "]}"
#define I64 "\"typename\":\"statemesh/int64\",\"value\":1"
    static const char *const cases[][2] = {
        {"", "not valid JSON"},
        {"{\"type\":\"ns/a\",", "not valid JSON"},
        {"{" A "} x", "not valid JSON"},
        {"{\"type\":\"ns/a\",\"id\":\"\xff\"}", "not valid JSON"},
        {"[1]", "must be a JSON object"},
        {"{\"id\":\"1\"}", "missing \"type\""},
        {"{\"type\":\"ns/a\"}", "missing \"id\""},
        {"{" A ",\"colour\":1}", "unknown member \"colour\""},
        {"{" A ",\"id\":\"2\"}", "member \"id\" appears twice"},
        {"{\"type\":1,\"id\":\"1\"}", "\"type\" must be a string"},
        {"{\"type\":\"nons\",\"id\":\"1\"}", "type: "},
        {"{\"type\":\"ns/a\",\"id\":\"\"}", "id: "},
        {"{\"type\":\"ns/a\",\"id\":\"a\\u0000b\"}", "\"id\" holds \\u0000"},
        {"{" A ",\"state\":[]}", "\"state\" must be a JSON object"},
        {"{" A ",\"state\":{\"bad name\":{" I64 "}}}", "state \"bad name\": "},
        {"{" A ",\"state\":{\"n\":{" I64 "},\"n\":{" I64 "}}}", "state \"n\" appears twice"},
        {ST("1"), "state \"n\": must be a JSON object"},
        {ST("{\"value\":1}"), "state \"n\": missing \"typename\""},
        {ST("{\"typename\":\"statemesh/int64\"}"), "needs exactly one of \"value\" and \"hex\""},
        {ST("{" I64 ",\"hex\":\"01\"}"), "needs exactly one of \"value\" and \"hex\""},
        {ST("{" I64 ",\"ttl\":1}"), "state \"n\": unknown member \"ttl\""},
        {ST("{\"typename\":\"\",\"hex\":\"\"}"), "\"typename\" must be 1..1024 bytes"},
        {ST("{\"typename\":\"statemesh/int64\",\"value\":1.5}"),
         "state \"n\": \"value\" must be a 64-bit integer for typename statemesh/int64"},
        {ST("{\"typename\":\"statemesh/int64\",\"value\":9223372036854775808}"), "64-bit integer"},
        {ST("{\"typename\":\"statemesh/float64\",\"value\":\"x\"}"), "must be a number"},
        {ST("{\"typename\":\"statemesh/float64\",\"value\":1e999}"), "must be a number"},
        {ST("{\"typename\":\"statemesh/bool\",\"value\":1}"), "must be true or false"},
        {ST("{\"typename\":\"statemesh/string\",\"value\":1}"), "must be a JSON string"},
        {ST("{\"typename\":\"statemesh/string\",\"value\":\"a\\u0000\"}"), "must be a JSON string"},
        {ST("{\"typename\":\"statemesh/bytes\",\"hex\":\"abc\"}"), "\"hex\" must be a string of hex digits"},
        {ST("{\"typename\":\"statemesh/bytes\",\"hex\":\"zz\"}"), "hex digits"},
        {ST("{\"typename\":\"statemesh/bytes\",\"hex\":1}"), "hex digits"},
        {ST("{\"typename\":\"statemesh/bytes\",\"value\":\"x1\"}"), "\"value\" must be a string of hex"},
        {ST("{\"typename\":\"ex/t\",\"value\":1}"), "is not a built-in type: give its bytes as \"hex\""},
        {ST("{\"typename\":\"statemesh/nope\",\"value\":1}"), "is not a built-in type"},
        {ST("{" I64 ",\"expires_at_ms\":-1}"), "\"expires_at_ms\" must be an integer >= 0"},
        {ST("{" I64 ",\"expires_at_ms\":\"1\"}"), "\"expires_at_ms\" must be an integer >= 0"},
        {"{" A ",\"messages\":{}}", "\"messages\" must be a JSON array"},
        {MSG("1"), "messages[0]: must be a JSON object"},
        {MSG("{" I64 "},{\"typename\":\"statemesh/int64\",\"value\":true}"), "messages[1]: \"value\" must be"},
        {MSG("{" I64 ",\"caller\":\"x\"}"), "messages[0]: caller: must be a JSON object"},
        {MSG("{" I64 ",\"caller\":{\"type\":\"ns/b\"}}"), "messages[0]: caller: missing \"id\""},
        {MSG("{" I64 ",\"caller\":{\"type\":\"b\",\"id\":\"1\"}}"), "messages[0]: caller: type: "},
        {MSG("{" I64 ",\"caller\":{\"type\":\"ns/b\",\"id\":\"1\",\"x\":1}}"), "caller: unknown member \"x\""},
        {MSG("{" I64 ",\"due_at_ms\":1}"), "messages[0]: unknown member \"due_at_ms\""},
        {"{" A ",\"delayed\":1}", "\"delayed\" must be a JSON array"},
        {DL("{" I64 "}"), "delayed[0]: missing \"due_at_ms\""},
        {DL("{" I64 ",\"due_at_ms\":-5}"), "delayed[0]: \"due_at_ms\" must be an integer >= 0"},
        {DL("{" I64 ",\"due_at_ms\":1,\"token\":5}"), "delayed[0]: \"token\" must be a string"},
        {DL("{" I64 ",\"due_at_ms\":1,\"from_ingress\":1}"), "\"from_ingress\" must be true or false"},
        {DL("{" I64 ",\"due_at_ms\":1,\"from_ingress\":true,\"target\":{\"type\":\"ns/a\",\"id\":\"1\"}}"),
         "a message from the ingress has no \"target\""},
        {DL("{" I64 ",\"due_at_ms\":1,\"target\":{\"type\":\"ns/a\",\"id\":\"\"}}"), "delayed[0]: target: id: "},
        {DL("{" I64 ",\"due_at_ms\":1,\"caller\":{}}"), "delayed[0]: unknown member \"caller\""},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        Statemesh__V1__AddressData *d = (void *)1;
        char err[512];
        memset(err, 'x', sizeof err);
        if (spj_parse_line(cases[i][0], strlen(cases[i][0]), &d, err, sizeof err) != -1)
            fail_msg("accepted: %s", cases[i][0]);
        assert_null(d);
        if (!strstr(err, cases[i][1])) fail_msg("%s: got \"%s\", want \"%s\"", cases[i][0], err, cases[i][1]);
    }
}

static void long_values_and_limits(void **state)
{
    /* a token of 256 bytes is fine, 257 is not */
    char line[1024], tok[258], err[256];
    Statemesh__V1__AddressData *d;
    (void)state;
    memset(tok, 't', 257);
    tok[256] = '\0';
    snprintf(line, sizeof line, DL("{" I64 ",\"due_at_ms\":1,\"token\":\"%s\"}"), tok);
    assert_int_equal(spj_parse_line(line, strlen(line), &d, err, sizeof err), 0);
    spj_free(d);
    tok[256] = 't';
    tok[257] = '\0';
    snprintf(line, sizeof line, DL("{" I64 ",\"due_at_ms\":1,\"token\":\"%s\"}"), tok);
    assert_int_equal(spj_parse_line(line, strlen(line), &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "longer than 256 bytes"));
    /* over SPJ_MAX_LINE: refused on its length, before a byte is read */
    assert_int_equal(spj_parse_line("{}", SPJ_MAX_LINE + 1, &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "line longer than"));
    assert_null(d);
    /* a tiny err buffer is still NUL-terminated */
    assert_int_equal(spj_parse_line("[", 1, &d, err, 8), -1);
    assert_int_equal(strlen(err), 7);
}

/* A write that fails says so. */
static void write_failure(void **state)
{
    const char *line = "{\"type\":\"ns/a\",\"id\":\"1\"}";
    Statemesh__V1__AddressData *d;
    char err[256];
    FILE *f = fopen("/dev/full", "w");
    (void)state;
    if (!f) skip();
    setvbuf(f, NULL, _IONBF, 0);
    assert_int_equal(spj_parse_line(line, strlen(line), &d, err, sizeof err), 0);
    assert_int_equal(spj_write_line(f, d), -1);
    fclose(f);
    spj_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(canonical_lines_round_trip),
        cmocka_unit_test(other_spellings_become_canonical),
        cmocka_unit_test(parsed_fields),
        cmocka_unit_test(bad_lines_are_refused),
        cmocka_unit_test(long_values_and_limits),
        cmocka_unit_test(write_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
