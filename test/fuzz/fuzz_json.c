/*
 * fuzz_json — libFuzzer harness for the C SDK's JSON reader (sdk-c/json.c).
 *
 * The input is one JSON text. It is parsed and, when valid, walked the way a
 * handler reads a message: every array element and object member is visited
 * (recursively, up to the reader's depth limit), each string is unescaped
 * into a small and a large buffer, numbers go through sm_json_int64 and
 * sm_json_double, and a few members are looked up by name. The harness also
 * checks the reader's own promises: sm_json_valid agrees with sm_json_parse,
 * a parsed view lies inside the text, sm_json_string's measured length is
 * the same whatever the buffer size, and sm_json_quote output parses back to
 * the same string.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "statemesh/json.h"

#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) {                                                               \
            fprintf(stderr, "fuzz_json: check failed: %s (line %d)\n", #c, __LINE__); \
            abort();                                                              \
        }                                                                         \
    } while (0)

static void check_string(const sm_json *v)
{
    char small[8], big[4096];
    size_t n1 = 0, n2 = 0, n3 = 0;
    int r1 = sm_json_string(v, small, sizeof small, &n1);
    int r2 = sm_json_string(v, big, sizeof big, &n2);
    int r3 = sm_json_string(v, NULL, 0, &n3);

    if (v->kind != SM_JSON_STRING) {
        CHECK(r1 == SM_ETYPE && r2 == SM_ETYPE);
        return;
    }
    if (r2 == SM_EVALUE) {
        CHECK(r1 == SM_EVALUE && r3 == SM_EVALUE);
        return;
    }
    CHECK(n1 == n2 && n2 == n3);
    if (r2 == SM_OK) {
        char quoted[6 * sizeof big + 3];
        size_t q;
        sm_json back;
        char again[4096];
        size_t n4 = 0;

        CHECK(strlen(big) == n2);      /* "\u0000" is refused, so no NUL inside */
        CHECK(sm_json_string_eq(v, big));
        q = sm_json_quote(quoted, sizeof quoted, big, n2);
        CHECK(q < sizeof quoted);
        CHECK(sm_json_parse(quoted, q, &back) == SM_OK);
        CHECK(back.kind == SM_JSON_STRING);
        CHECK(sm_json_string(&back, again, sizeof again, &n4) == SM_OK);
        CHECK(n4 == n2 && memcmp(again, big, n2) == 0);
    }
    if (r1 == SM_OK) CHECK(n1 < sizeof small);
}

static void walk(const sm_json *v, int depth)
{
    sm_json_iter it;
    sm_json key, val, got;
    int64_t i64;
    double d;
    bool b;

    CHECK(depth <= SM_JSON_MAX_DEPTH + 1);
    switch (v->kind) {
    case SM_JSON_STRING: check_string(v); break;
    case SM_JSON_NUMBER:
        (void)sm_json_int64(v, &i64);
        (void)sm_json_double(v, &d);
        break;
    case SM_JSON_TRUE:
    case SM_JSON_FALSE: CHECK(sm_json_bool(v, &b) == SM_OK && b == (v->kind == SM_JSON_TRUE)); break;
    case SM_JSON_NULL: CHECK(sm_json_is_null(v)); break;
    case SM_JSON_ARRAY:
    case SM_JSON_OBJECT:
        CHECK(sm_json_iter_init(&it, v) == SM_OK);
        while (sm_json_iter_next(&it, &key, &val) == SM_OK) {
            if (v->kind == SM_JSON_OBJECT) check_string(&key);
            walk(&val, depth + 1);
        }
        if (v->kind == SM_JSON_OBJECT) {
            char buf[64];
            (void)sm_json_get(v, "type", &got);
            (void)sm_json_get_string(v, "id", buf, sizeof buf, NULL);
            (void)sm_json_get_int64(v, "n", &i64);
            (void)sm_json_get_bool(v, "ok", &b);
        } else {
            CHECK(sm_json_get(v, "x", &got) == SM_ETYPE);
        }
        break;
    default: CHECK(0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly `size` bytes, so ASan sees any read past the end. */
    char *text = malloc(size ? size : 1);
    sm_json doc;
    int rc;

    if (!text) return 0;
    memcpy(text, data, size);
    rc = sm_json_parse(text, size, &doc);
    CHECK(sm_json_valid(text, size) == (rc == SM_OK));
    if (rc == SM_OK) {
        CHECK(doc.p >= text && doc.p + doc.len <= text + size && doc.len > 0);
        walk(&doc, 0);
    } else {
        CHECK(rc == SM_EVALUE && doc.p == NULL && doc.kind == SM_JSON_INVALID);
    }
    free(text);
    return 0;
}
