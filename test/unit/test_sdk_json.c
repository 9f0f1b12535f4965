/* JSON views of the C SDK (sdk-c/json.c, statemesh/json.h): strict
 * validation, lookups, iteration, scalar readers, unescaping and quoting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "statemesh/json.h"

static sm_json parse_ok(const char *text)
{
    sm_json v;
    if (sm_json_parse(text, strlen(text), &v) != SM_OK) fail_msg("rejected: %s", text);
    return v;
}

static void test_valid_and_invalid(void **state)
{
    static const char *good[] = {
        "0", "-0", "1.5e+10", "-12.25E-3", "\"\"", "\"a\\u00e9\\ud83d\\ude00\"", "true", "false",
        "null", "[]", "{}", " [1, [2, {\"a\": null}]] ", "{\"a\":1,\"a\":2}", "\"h\xc3\xa9\"",
        "\n\t{\"k\" : [ ] }\r\n",
    };
    static const char *bad[] = {
        "", " ", "01", "1.", ".5", "-", "1e", "+1", "tru", "nul", "True", "NaN", "Infinity",
        "[1,]", "{\"a\":1,}", "{a:1}", "{\"a\" 1}", "[1 2]", "\"unterminated", "\"bad \\x\"",
        "\"ctl \x01\"", "\"\\u12\"", "1 2", "{} x", "[", "{\"a\":", "'s'", "// c\n1",
        "\"\xff\"", /* invalid UTF-8 */
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        if (!sm_json_valid(good[i], strlen(good[i]))) fail_msg("rejected good %s", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (sm_json_valid(bad[i], strlen(bad[i]))) fail_msg("accepted bad '%s'", bad[i]);
    assert_false(sm_json_valid(NULL, 0));
}

static void test_depth_limit(void **state)
{
    char buf[2 * (SM_JSON_MAX_DEPTH + 2) + 1];
    size_t n;
    for (size_t depth = SM_JSON_MAX_DEPTH; depth <= SM_JSON_MAX_DEPTH + 1; depth++) {
        n = 0;
        for (size_t i = 0; i < depth; i++) buf[n++] = '[';
        for (size_t i = 0; i < depth; i++) buf[n++] = ']';
        buf[n] = '\0';
        assert_int_equal(sm_json_valid(buf, n), depth == SM_JSON_MAX_DEPTH);
    }
}

static void test_parse_view_and_kinds(void **state)
{
    sm_json v = parse_ok("  {\"a\": [1, 2]}  ");
    assert_int_equal(v.kind, SM_JSON_OBJECT);
    assert_int_equal(v.len, 13); /* without the surrounding spaces */
    assert_memory_equal(v.p, "{\"a\": [1, 2]}", 13);
    assert_int_equal(parse_ok("\"s\"").kind, SM_JSON_STRING);
    assert_int_equal(parse_ok("-3").kind, SM_JSON_NUMBER);
    assert_int_equal(parse_ok("true").kind, SM_JSON_TRUE);
    assert_int_equal(parse_ok("false").kind, SM_JSON_FALSE);
    assert_int_equal(parse_ok("null").kind, SM_JSON_NULL);
    assert_int_equal(parse_ok("[]").kind, SM_JSON_ARRAY);
    assert_int_equal(sm_json_parse("[", 1, &v), SM_EVALUE);
    assert_int_equal(v.kind, SM_JSON_INVALID);
    assert_null(v.p);
}

static void test_get_and_scalars(void **state)
{
    const char *text = "{\"name\":\"Ann \\\"A\\\"\",\"n\":-42,\"big\":9223372036854775807,"
                       "\"over\":9223372036854775808,\"f\":2.5e3,\"frac\":3.0,\"ok\":true,"
                       "\"no\":false,\"nil\":null,\"nested\":{\"name\":\"inner\"},"
                       "\"esc\\u0061ped\":1}";
    sm_json doc = parse_ok(text), v;
    char buf[32];
    size_t len;
    int64_t i;
    double d;
    bool b;

    assert_int_equal(sm_json_get_string(&doc, "name", buf, sizeof buf, &len), SM_OK);
    assert_string_equal(buf, "Ann \"A\"");
    assert_int_equal(len, 7);
    assert_int_equal(sm_json_get_int64(&doc, "n", &i), SM_OK);
    assert_int_equal(i, -42);
    assert_int_equal(sm_json_get_int64(&doc, "big", &i), SM_OK);
    assert_true(i == INT64_MAX);
    assert_int_equal(sm_json_get_int64(&doc, "over", &i), SM_EVALUE);
    assert_int_equal(sm_json_get_int64(&doc, "frac", &i), SM_EVALUE);
    assert_int_equal(sm_json_get_int64(&doc, "name", &i), SM_ETYPE);
    assert_int_equal(sm_json_get(&doc, "f", &v), SM_OK);
    assert_int_equal(sm_json_double(&v, &d), SM_OK);
    assert_true(d == 2500.0);
    assert_int_equal(sm_json_get_bool(&doc, "ok", &b), SM_OK);
    assert_true(b);
    assert_int_equal(sm_json_get_bool(&doc, "no", &b), SM_OK);
    assert_false(b);
    assert_int_equal(sm_json_get_bool(&doc, "n", &b), SM_ETYPE);
    assert_int_equal(sm_json_get(&doc, "nil", &v), SM_OK);
    assert_true(sm_json_is_null(&v));
    assert_int_equal(sm_json_get(&doc, "missing", &v), SM_ABSENT);
    /* top-level lookup only: "name" of the nested object is not found first */
    assert_int_equal(sm_json_get(&doc, "nested", &v), SM_OK);
    assert_int_equal(v.kind, SM_JSON_OBJECT);
    assert_int_equal(sm_json_get_string(&v, "name", buf, sizeof buf, NULL), SM_OK);
    assert_string_equal(buf, "inner");
    /* keys are compared unescaped */
    assert_int_equal(sm_json_get_int64(&doc, "escaped", &i), SM_OK);
    assert_int_equal(i, 1);
    /* not an object */
    v = parse_ok("[1]");
    assert_int_equal(sm_json_get(&v, "a", &v), SM_ETYPE);
    v = parse_ok("1e400");
    assert_int_equal(sm_json_double(&v, &d), SM_EVALUE);
}

static void test_iterate(void **state)
{
    sm_json arr = parse_ok("[\"a\", 2, [3], {\"k\": \"v\"}]"), obj = parse_ok("{\"x\":1,\"y\":[]}");
    sm_json_iter it;
    sm_json k, v;
    int64_t i;
    int n = 0;

    assert_int_equal(sm_json_iter_init(&it, &arr), SM_OK);
    while (sm_json_iter_next(&it, NULL, &v) == SM_OK) {
        static const sm_json_kind kinds[] = {SM_JSON_STRING, SM_JSON_NUMBER, SM_JSON_ARRAY,
                                             SM_JSON_OBJECT};
        assert_true(n < 4);
        assert_int_equal(v.kind, kinds[n]);
        n++;
    }
    assert_int_equal(n, 4);
    assert_int_equal(sm_json_iter_next(&it, NULL, &v), SM_ABSENT); /* stays at the end */

    assert_int_equal(sm_json_iter_init(&it, &obj), SM_OK);
    assert_int_equal(sm_json_iter_next(&it, &k, &v), SM_OK);
    assert_true(sm_json_string_eq(&k, "x"));
    assert_int_equal(sm_json_int64(&v, &i), SM_OK);
    assert_int_equal(i, 1);
    assert_int_equal(sm_json_iter_next(&it, &k, &v), SM_OK);
    assert_true(sm_json_string_eq(&k, "y"));
    assert_false(sm_json_string_eq(&k, "yy"));
    assert_false(sm_json_string_eq(&k, ""));
    assert_int_equal(v.kind, SM_JSON_ARRAY);
    assert_int_equal(sm_json_iter_next(&it, &k, &v), SM_ABSENT);

    v = parse_ok("[]");
    assert_int_equal(sm_json_iter_init(&it, &v), SM_OK);
    assert_int_equal(sm_json_iter_next(&it, NULL, &v), SM_ABSENT);
    v = parse_ok("\"s\"");
    assert_int_equal(sm_json_iter_init(&it, &v), SM_ETYPE);

    /* a hand-made view of malformed text is caught while iterating */
    v.p = "[1,,2]";
    v.len = 6;
    v.kind = SM_JSON_ARRAY;
    assert_int_equal(sm_json_iter_init(&it, &v), SM_OK);
    assert_int_equal(sm_json_iter_next(&it, NULL, &k), SM_OK);
    assert_int_equal(sm_json_iter_next(&it, NULL, &k), SM_EVALUE);
}

static void test_unescape(void **state)
{
    sm_json v = parse_ok("\"a\\n\\t\\\"\\\\\\/\\u00e9\\u20ac\\ud83d\\ude00\"");
    char buf[64], tiny[4];
    size_t len = 0;

    assert_int_equal(sm_json_string(&v, buf, sizeof buf, &len), SM_OK);
    assert_string_equal(buf, "a\n\t\"\\/\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    assert_int_equal(len, strlen(buf));
    /* too small: SM_ENOMEM, the needed length, a NUL-terminated whole-character prefix */
    assert_int_equal(sm_json_string(&v, tiny, sizeof tiny, &len), SM_ENOMEM);
    assert_int_equal(len, strlen(buf));
    assert_string_equal(tiny, "a\n\t");
    assert_int_equal(sm_json_string(&v, NULL, 0, &len), SM_ENOMEM); /* measure only */
    assert_int_equal(len, strlen(buf));
    v = parse_ok("\"x\\u00e9\"");
    assert_int_equal(sm_json_string(&v, tiny, 3, &len), SM_ENOMEM); /* é needs 2 bytes */
    assert_string_equal(tiny, "x");

    /* lone surrogates and NUL cannot become a C string */
    v = parse_ok("\"\\ud83d\"");
    assert_int_equal(sm_json_string(&v, buf, sizeof buf, NULL), SM_EVALUE);
    v = parse_ok("\"\\ude00x\"");
    assert_int_equal(sm_json_string(&v, buf, sizeof buf, NULL), SM_EVALUE);
    v = parse_ok("\"a\\u0000b\"");
    assert_int_equal(sm_json_string(&v, buf, sizeof buf, NULL), SM_EVALUE);
    v = parse_ok("12");
    assert_int_equal(sm_json_string(&v, buf, sizeof buf, NULL), SM_ETYPE);
}

static void test_quote(void **state)
{
    char buf[64], small[5];
    const char *s = "a\"b\\c\nd\x01\xc3\xa9";
    size_t n = sm_json_quote(buf, sizeof buf, s, strlen(s));
    sm_json v;
    char back[64];

    assert_string_equal(buf, "\"a\\\"b\\\\c\\nd\\u0001\xc3\xa9\"");
    assert_int_equal(n, strlen(buf));
    /* round trip */
    assert_int_equal(sm_json_parse(buf, n, &v), SM_OK);
    assert_int_equal(sm_json_string(&v, back, sizeof back, NULL), SM_OK);
    assert_string_equal(back, s);
    /* snprintf-style truncation */
    assert_int_equal(sm_json_quote(small, sizeof small, "abcdef", 6), 8);
    assert_string_equal(small, "\"abc");
    assert_int_equal(sm_json_quote(NULL, 0, "ab", 2), 4);
    assert_int_equal(sm_json_quote(buf, sizeof buf, "", 0), 2);
    assert_string_equal(buf, "\"\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_and_invalid),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_parse_view_and_kinds),
        cmocka_unit_test(test_get_and_scalars),
        cmocka_unit_test(test_iterate),
        cmocka_unit_test(test_unescape),
        cmocka_unit_test(test_quote),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
