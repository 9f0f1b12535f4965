/* Unit tests for runtime/address.c: function types, ids, state names and
 * endpoint patterns (DESIGN.md section 1). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "address.h"

#define OK(fn, s) assert_null(fn((s), strlen(s)))
#define BAD(fn, s) assert_non_null(fn((s), strlen(s)))

static void types(void **state)
{
    char t[ADDR_MAX_TYPE + 2];

    (void)state;
    OK(addr_check_type, "example/greeter");
    OK(addr_check_type, "a/b");
    OK(addr_check_type, "Ns-1_.x/Name.2-_");

    BAD(addr_check_type, "");
    BAD(addr_check_type, "greeter");
    BAD(addr_check_type, "/greeter");
    BAD(addr_check_type, "example/");
    BAD(addr_check_type, "/");
    BAD(addr_check_type, "a/b/c");
    BAD(addr_check_type, "ex ample/greeter");
    BAD(addr_check_type, "example/gr\xc3\xa9" "eter");
    BAD(addr_check_type, "example/*");
    BAD(addr_check_type, "example:greeter");
    assert_non_null(addr_check_type(NULL, 0));
    assert_string_equal(addr_check_type("greeter", 7),
                        "function type must be namespace/name, e.g. example/greeter");

    /* Length is explicit: a valid prefix of a longer buffer is checked alone. */
    assert_null(addr_check_type("a/bc d", 4));
    /* An embedded NUL is not a name character. */
    assert_non_null(addr_check_type("a/b\0c", 5));

    /* 256 bytes is the limit. */
    memset(t, 'x', sizeof t);
    t[1] = '/';
    assert_null(addr_check_type(t, ADDR_MAX_TYPE));
    assert_non_null(addr_check_type(t, ADDR_MAX_TYPE + 1));
}

static void ids(void **state)
{
    char id[ADDR_MAX_ID + 1];

    (void)state;
    OK(addr_check_id, "alice");
    OK(addr_check_id, "x");
    OK(addr_check_id, "with spaces / slashes * and \"quotes\"");
    OK(addr_check_id, "\xc3\xa9t\xc3\xa9");                  /* é (2 bytes) */
    OK(addr_check_id, "\xe2\x82\xac");                       /* € (3 bytes) */
    OK(addr_check_id, "\xf0\x9f\x98\x80");                   /* 😀 (4 bytes) */
    OK(addr_check_id, "\xf4\x8f\xbf\xbf");                   /* U+10FFFF */
    OK(addr_check_id, "\xef\xbf\xbf");                       /* U+FFFF */

    /* Empty, NUL. */
    assert_string_equal(addr_check_id("", 0), "id is empty");
    assert_non_null(addr_check_id(NULL, 0));
    assert_string_equal(addr_check_id("a\0b", 3), "id contains a NUL byte");
    assert_string_equal(addr_check_id("\0", 1), "id contains a NUL byte");

    /* Invalid UTF-8. */
    assert_string_equal(addr_check_id("\xff", 1), "id is not valid UTF-8");
    BAD(addr_check_id, "\x80");                              /* lone continuation */
    BAD(addr_check_id, "a\xc3");                             /* truncated 2-byte */
    BAD(addr_check_id, "\xe2\x82");                          /* truncated 3-byte */
    BAD(addr_check_id, "\xf0\x9f\x98");                      /* truncated 4-byte */
    BAD(addr_check_id, "\xc3\x28");                          /* bad continuation */
    BAD(addr_check_id, "\xc0\xaf");                          /* overlong '/' */
    BAD(addr_check_id, "\xc1\xbf");                          /* overlong */
    BAD(addr_check_id, "\xe0\x80\xaf");                      /* overlong 3-byte */
    BAD(addr_check_id, "\xf0\x80\x80\xaf");                  /* overlong 4-byte */
    BAD(addr_check_id, "\xed\xa0\x80");                      /* surrogate U+D800 */
    BAD(addr_check_id, "\xed\xbf\xbf");                      /* surrogate U+DFFF */
    BAD(addr_check_id, "\xf4\x90\x80\x80");                  /* U+110000 */
    BAD(addr_check_id, "\xf5\x80\x80\x80");
    BAD(addr_check_id, "\xf8\x88\x80\x80\x80");              /* 5-byte form */
    /* A multi-byte character cut by the explicit length. */
    assert_non_null(addr_check_id("\xe2\x82\xac", 2));

    /* 1024 bytes is the limit, 1025 is not. */
    memset(id, 'a', sizeof id);
    assert_null(addr_check_id(id, ADDR_MAX_ID));
    assert_string_equal(addr_check_id(id, ADDR_MAX_ID + 1), "id is longer than 1024 bytes");
    /* 341 x € (3 bytes) + 'a' = 1024 bytes. */
    for (int i = 0; i < 341; i++) memcpy(id + 3 * i, "\xe2\x82\xac", 3);
    id[1023] = 'a';
    assert_null(addr_check_id(id, ADDR_MAX_ID));
    /* A character straddling the 1024th byte is cut: invalid, not overlong. */
    memcpy(id + 1022, "\xe2\x82", 2);
    assert_non_null(addr_check_id(id, ADDR_MAX_ID));
}

static void state_names(void **state)
{
    char n[ADDR_MAX_STATE_NAME + 1];

    (void)state;
    OK(addr_check_state_name, "count");
    OK(addr_check_state_name, "seen_2.v-1");
    BAD(addr_check_state_name, "");
    BAD(addr_check_state_name, "a/b");
    BAD(addr_check_state_name, "with space");
    BAD(addr_check_state_name, "\xc3\xa9");
    assert_non_null(addr_check_state_name("a\0b", 3));
    memset(n, 'n', sizeof n);
    assert_null(addr_check_state_name(n, ADDR_MAX_STATE_NAME));
    assert_non_null(addr_check_state_name(n, ADDR_MAX_STATE_NAME + 1));
}

static void patterns(void **state)
{
    (void)state;
    OK(addr_check_pattern, "ns/*");
    OK(addr_check_pattern, "example/greeter");
    OK(addr_check_pattern, "a-b.c_d/*");

    BAD(addr_check_pattern, "");
    BAD(addr_check_pattern, "*");
    BAD(addr_check_pattern, "/*");
    BAD(addr_check_pattern, "*/*");
    BAD(addr_check_pattern, "ns/**");
    BAD(addr_check_pattern, "ns/x*");
    BAD(addr_check_pattern, "ns/*x");
    BAD(addr_check_pattern, "ns");
    BAD(addr_check_pattern, "n s/*");
    BAD(addr_check_pattern, "a/b/*");
    assert_non_null(addr_check_pattern(NULL, 0));
}

static void pattern_matching(void **state)
{
    (void)state;
    assert_true(addr_pattern_match("ns/*", "ns/x"));
    assert_true(addr_pattern_match("ns/*", "ns/greeter.v2"));
    assert_false(addr_pattern_match("ns/*", "ns2/x"));
    assert_false(addr_pattern_match("ns/*", "nsx/y"));
    assert_false(addr_pattern_match("ns/*", "n/x"));
    assert_false(addr_pattern_match("ns/*", "xns/x"));
    assert_false(addr_pattern_match("ns/*", "ns/x/y"));

    assert_true(addr_pattern_match("ns/a", "ns/a"));
    assert_false(addr_pattern_match("ns/a", "ns/ab"));
    assert_false(addr_pattern_match("ns/ab", "ns/a"));
    assert_false(addr_pattern_match("ns/a", "ns2/a"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(types),
        cmocka_unit_test(ids),
        cmocka_unit_test(state_names),
        cmocka_unit_test(patterns),
        cmocka_unit_test(pattern_matching),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
