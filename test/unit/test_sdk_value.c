/* Typed value codecs of the C SDK (sdk-c/value.c): the shared test vectors
 * in test/vectors/types.json (encode and decode, both directions, and the
 * byte strings every decoder must reject), wrong-typename errors, UTF-8
 * checks and owned values.
 *
 * The vectors file is found through $STATEMESH_VECTORS, else by looking for
 * test/vectors/types.json in the current directory and up to four parents
 * (make unit runs from the repository root). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "statemesh/value.h"

/* ---- a small JSON reader, enough for the vectors file ---- */

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jv {
    enum jtype t;
    bool b;
    char *s;             /* J_NUM: the number's text; J_STR: bytes (NUL added) */
    size_t len;
    struct jv *items;    /* J_ARR, J_OBJ values */
    char **keys;         /* J_OBJ */
    size_t n;
};

struct jp {
    const char *p, *end;
};

static void jfree(struct jv *v)
{
    free(v->s);
    for (size_t i = 0; i < v->n; i++) {
        jfree(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
}

static void jws(struct jp *p)
{
    while (p->p < p->end && (*p->p == ' ' || *p->p == '\n' || *p->p == '\t' || *p->p == '\r'))
        p->p++;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int put_utf8(char *out, size_t *o, unsigned cp)
{
    if (cp < 0x80) out[(*o)++] = (char)cp;
    else if (cp < 0x800) {
        out[(*o)++] = (char)(0xc0 | cp >> 6);
        out[(*o)++] = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        out[(*o)++] = (char)(0xe0 | cp >> 12);
        out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[(*o)++] = (char)(0x80 | (cp & 0x3f));
    } else {
        out[(*o)++] = (char)(0xf0 | cp >> 18);
        out[(*o)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
        out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[(*o)++] = (char)(0x80 | (cp & 0x3f));
    }
    return 0;
}

static int u4(const char *s, unsigned *cp)
{
    *cp = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(s[i]);
        if (h < 0) return -1;
        *cp = *cp * 16 + (unsigned)h;
    }
    return 0;
}

static int jstring(struct jp *p, char **out, size_t *len)
{
    const char *start;
    size_t o = 0;
    char *buf;

    if (p->p >= p->end || *p->p != '"') return -1;
    start = ++p->p;
    while (p->p < p->end && *p->p != '"') p->p += *p->p == '\\' ? 2 : 1;
    if (p->p >= p->end) return -1;
    buf = malloc((size_t)(p->p - start) + 1);
    for (const char *s = start; s < p->p;) {
        if (*s != '\\') {
            buf[o++] = *s++;
            continue;
        }
        s++;
        switch (*s++) {
        case 'n': buf[o++] = '\n'; break;
        case 't': buf[o++] = '\t'; break;
        case 'r': buf[o++] = '\r'; break;
        case 'b': buf[o++] = '\b'; break;
        case 'f': buf[o++] = '\f'; break;
        case '/': buf[o++] = '/'; break;
        case '"': buf[o++] = '"'; break;
        case '\\': buf[o++] = '\\'; break;
        case 'u': {
            unsigned cp, lo;
            if (u4(s, &cp)) goto bad;
            s += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (s[0] != '\\' || s[1] != 'u' || u4(s + 2, &lo)) goto bad;
                s += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            put_utf8(buf, &o, cp);
            break;
        }
        default: goto bad;
        }
    }
    buf[o] = '\0';
    p->p++;
    *out = buf;
    *len = o;
    return 0;
bad:
    free(buf);
    return -1;
}

static int jvalue(struct jp *p, struct jv *v)
{
    memset(v, 0, sizeof *v);
    jws(p);
    if (p->p >= p->end) return -1;
    if (*p->p == '"') {
        v->t = J_STR;
        return jstring(p, &v->s, &v->len);
    }
    if (*p->p == '{' || *p->p == '[') {
        int obj = *p->p == '{';
        char close = obj ? '}' : ']';
        v->t = obj ? J_OBJ : J_ARR;
        p->p++;
        jws(p);
        if (p->p < p->end && *p->p == close) {
            p->p++;
            return 0;
        }
        for (;;) {
            v->items = realloc(v->items, (v->n + 1) * sizeof *v->items);
            if (obj) {
                size_t kl;
                v->keys = realloc(v->keys, (v->n + 1) * sizeof *v->keys);
                jws(p);
                if (jstring(p, &v->keys[v->n], &kl)) return -1;
                jws(p);
                if (p->p >= p->end || *p->p++ != ':') {
                    free(v->keys[v->n]);
                    return -1;
                }
            }
            if (jvalue(p, &v->items[v->n])) {
                if (obj) free(v->keys[v->n]);
                return -1;
            }
            v->n++;
            jws(p);
            if (p->p < p->end && *p->p == ',') {
                p->p++;
                continue;
            }
            if (p->p < p->end && *p->p++ == close) return 0;
            return -1;
        }
    }
    if (p->end - p->p >= 4 && memcmp(p->p, "true", 4) == 0) {
        v->t = J_BOOL;
        v->b = true;
        p->p += 4;
        return 0;
    }
    if (p->end - p->p >= 5 && memcmp(p->p, "false", 5) == 0) {
        v->t = J_BOOL;
        p->p += 5;
        return 0;
    }
    if (p->end - p->p >= 4 && memcmp(p->p, "null", 4) == 0) {
        p->p += 4;
        return 0;
    }
    {
        const char *s = p->p;
        while (p->p < p->end && strchr("+-.0123456789eE", *p->p) && *p->p) p->p++;
        if (p->p == s) return -1;
        v->t = J_NUM;
        v->len = (size_t)(p->p - s);
        v->s = malloc(v->len + 1);
        memcpy(v->s, s, v->len);
        v->s[v->len] = '\0';
        return 0;
    }
}

static const struct jv *jget(const struct jv *obj, const char *key)
{
    for (size_t i = 0; obj->t == J_OBJ && i < obj->n; i++)
        if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
    return NULL;
}

/* ---- loading the vectors ---- */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

static int load_vectors(void **state)
{
    const char *env = getenv("STATEMESH_VECTORS");
    char path[512] = "";
    char *text = NULL;
    size_t len = 0;
    struct jv *doc = calloc(1, sizeof *doc);
    struct jp p;

    if (env && *env) {
        snprintf(path, sizeof path, "%s", env);
        text = read_file(path, &len);
    } else {
        for (int up = 0; up <= 4 && !text; up++) {
            size_t o = 0;
            for (int i = 0; i < up; i++) o += (size_t)snprintf(path + o, sizeof path - o, "../");
            snprintf(path + o, sizeof path - o, "test/vectors/types.json");
            text = read_file(path, &len);
        }
    }
    if (!text) {
        fprintf(stderr, "cannot find test/vectors/types.json (set STATEMESH_VECTORS)\n");
        free(doc);
        return -1;
    }
    p.p = text;
    p.end = text + len;
    if (jvalue(&p, doc) != 0 || doc->t != J_OBJ) {
        fprintf(stderr, "%s: not valid JSON\n", path);
        jfree(doc);
        free(doc);
        free(text);
        return -1;
    }
    free(text);
    *state = doc;
    return 0;
}

static int free_vectors(void **state)
{
    if (!*state) return 0;
    jfree(*state);
    free(*state);
    return 0;
}

static size_t unhex(const char *hex, uint8_t *out)
{
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) out[i] = (uint8_t)(hexval(hex[2 * i]) * 16 + hexval(hex[2 * i + 1]));
    return n;
}

/* ---- tests ---- */

static void test_vectors(void **state)
{
    const struct jv *doc = *state, *vs = jget(doc, "vectors");
    int counts[6] = {0};

    assert_non_null(vs);
    assert_int_equal(vs->t, J_ARR);
    assert_true(vs->n >= 30);
    for (size_t i = 0; i < vs->n; i++) {
        const struct jv *v = &vs->items[i];
        const char *tn = jget(v, "typename")->s;
        const struct jv *val = jget(v, "value");
        const char *hex = jget(v, "hex")->s;
        uint8_t want[256], buf[SM_SCALAR_SIZE];
        size_t wlen = unhex(hex, want);
        sm_value enc, dec = {tn, wlen ? want : NULL, wlen};

        assert_int_equal(sm_value_validate(&dec), SM_OK);
        if (strcmp(tn, SM_TYPE_INT64) == 0) {
            int64_t x = strtoll(val->s, NULL, 10), got;
            enc = sm_value_int64(x, buf);
            assert_int_equal(sm_value_as_int64(&dec, &got), SM_OK);
            assert_true(got == x);
            counts[0]++;
        } else if (strcmp(tn, SM_TYPE_FLOAT64) == 0) {
            double x, got;
            if (val->t == J_STR)
                x = strcmp(val->s, "NaN") == 0 ? NAN : strcmp(val->s, "Infinity") == 0 ? INFINITY
                                                                                      : -INFINITY;
            else
                x = strtod(val->s, NULL);
            enc = sm_value_float64(x, buf);
            assert_int_equal(sm_value_as_float64(&dec, &got), SM_OK);
            if (isnan(x)) assert_true(isnan(got));
            else assert_memory_equal(&got, &x, sizeof x); /* bit-exact, keeps -0.0 */
            counts[1]++;
        } else if (strcmp(tn, SM_TYPE_BOOL) == 0) {
            bool got;
            enc = sm_value_bool(val->b, buf);
            assert_int_equal(sm_value_as_bool(&dec, &got), SM_OK);
            assert_int_equal(got, val->b);
            counts[2]++;
        } else if (strcmp(tn, SM_TYPE_STRING) == 0 || strcmp(tn, SM_TYPE_JSON) == 0) {
            const char *s;
            size_t n;
            int json = strcmp(tn, SM_TYPE_JSON) == 0;
            enc = json ? sm_value_make(SM_TYPE_JSON, val->s, val->len)
                       : sm_value_string_n(val->s, val->len);
            assert_int_equal(json ? sm_value_as_json(&dec, &s, &n) : sm_value_as_string(&dec, &s, &n),
                             SM_OK);
            assert_int_equal(n, val->len);
            assert_memory_equal(s, val->s, n);
            counts[json ? 4 : 3]++;
        } else if (strcmp(tn, SM_TYPE_BYTES) == 0) {
            uint8_t raw[256];
            size_t rl = unhex(val->s, raw);
            const uint8_t *d;
            size_t n;
            enc = sm_value_bytes(raw, rl);
            assert_int_equal(sm_value_as_bytes(&dec, &d, &n), SM_OK);
            assert_int_equal(n, rl);
            if (n) assert_memory_equal(d, raw, n);
            assert_int_equal(enc.len, wlen);
            if (wlen) assert_memory_equal(enc.data, want, wlen);
            counts[5]++;
            continue;
        } else {
            fail_msg("unknown typename %s in vectors", tn);
            continue;
        }
        assert_string_equal(enc.typename, tn);
        assert_int_equal(enc.len, wlen);
        if (wlen) assert_memory_equal(enc.data, want, wlen);
    }
    for (int k = 0; k < 6; k++) assert_true(counts[k] > 0); /* every built-in is covered */
}

static void test_invalid_vectors(void **state)
{
    const struct jv *doc = *state, *inv = jget(doc, "invalid");

    assert_non_null(inv);
    assert_true(inv->n > 0);
    for (size_t i = 0; i < inv->n; i++) {
        const char *tn = jget(&inv->items[i], "typename")->s;
        uint8_t bytes[64], buf8[8];
        size_t n = unhex(jget(&inv->items[i], "hex")->s, bytes);
        sm_value v = {tn, n ? bytes : NULL, n};
        int64_t i64;
        double d;
        bool b;
        const char *s;
        size_t len;
        int rc;

        (void)buf8;
        assert_int_equal(sm_value_validate(&v), SM_EVALUE);
        if (strcmp(tn, SM_TYPE_INT64) == 0) rc = sm_value_as_int64(&v, &i64);
        else if (strcmp(tn, SM_TYPE_FLOAT64) == 0) rc = sm_value_as_float64(&v, &d);
        else if (strcmp(tn, SM_TYPE_BOOL) == 0) rc = sm_value_as_bool(&v, &b);
        else if (strcmp(tn, SM_TYPE_STRING) == 0) rc = sm_value_as_string(&v, &s, &len);
        else rc = sm_value_as_json(&v, &s, &len);
        if (rc != SM_EVALUE) fail_msg("%s %s: expected SM_EVALUE, got %d", tn,
                                      jget(&inv->items[i], "why")->s, rc);
    }
}

static void test_wrong_typename(void **state)
{
    uint8_t buf[SM_SCALAR_SIZE];
    sm_value i = sm_value_int64(7, buf);
    sm_value s = sm_value_string("7");
    int64_t x = 42;
    double d = 1.5;
    bool b = true;
    const char *str = "unchanged";
    const uint8_t *data = NULL;
    size_t len = 99;

    assert_int_equal(sm_value_as_float64(&i, &d), SM_ETYPE);
    assert_true(d == 1.5); /* outputs untouched on error */
    assert_int_equal(sm_value_as_bool(&i, &b), SM_ETYPE);
    assert_int_equal(sm_value_as_string(&i, &str, &len), SM_ETYPE);
    assert_string_equal(str, "unchanged");
    assert_int_equal(sm_value_as_json(&s, &str, &len), SM_ETYPE);
    assert_int_equal(sm_value_as_bytes(&s, &data, &len), SM_ETYPE);
    assert_int_equal(sm_value_as_int64(&s, &x), SM_ETYPE);
    assert_int_equal(x, 42);
    assert_int_equal(len, 99);
    assert_int_equal(sm_value_as_int64(NULL, &x), SM_EINVAL);

    sm_value user = sm_value_make("example/Thing", "\x01\x02", 2);
    assert_int_equal(sm_value_validate(&user), SM_OK);
    assert_true(sm_value_is(&user, "example/Thing"));
    assert_false(sm_value_is(&user, SM_TYPE_BYTES));
    sm_value nameless = sm_value_make("", "x", 1);
    assert_int_equal(sm_value_validate(&nameless), SM_EINVAL);
    sm_value nodata = sm_value_make(SM_TYPE_BYTES, NULL, 3);
    assert_int_equal(sm_value_validate(&nodata), SM_EINVAL);
}

static void test_utf8(void **state)
{
    assert_true(sm_utf8_valid("", 0));
    assert_true(sm_utf8_valid("plain ascii", 11));
    assert_true(sm_utf8_valid("\xc3\xa9", 2));           /* é */
    assert_true(sm_utf8_valid("\xef\xbf\xbf", 3));       /* U+FFFF */
    assert_true(sm_utf8_valid("\xf4\x8f\xbf\xbf", 4));   /* U+10FFFF */
    assert_false(sm_utf8_valid("\xe0\x80\xaf", 3));      /* overlong */
    assert_false(sm_utf8_valid("\xf0\x9f\x98", 3));      /* truncated */
    assert_false(sm_utf8_valid("\x80", 1));              /* lone continuation */
    assert_false(sm_utf8_valid("a\xc3", 2));
}

static void test_value_buf(void **state)
{
    sm_value_buf b = SM_VALUE_BUF_INIT;
    sm_value v = sm_value_string("hello");
    char raw[3] = {'a', 'b', 'c'};

    assert_int_equal(sm_value_buf_set(&b, &v), SM_OK);
    assert_string_equal(b.value.typename, SM_TYPE_STRING);
    assert_int_equal(b.value.len, 5);
    assert_string_equal((const char *)b.value.data, "hello"); /* NUL after data */
    v = sm_value_make("x/y", raw, 3);
    assert_int_equal(sm_value_buf_set(&b, &v), SM_OK); /* replaces and frees */
    assert_int_equal(b.value.len, 3);
    assert_int_equal(b.value.data[3], 0);
    sm_value_buf_cleanup(&b);
    assert_null(b.value.typename);
    sm_value_buf_cleanup(&b); /* idempotent */
}

static void test_strerror(void **state)
{
    for (int rc = -12; rc <= 2; rc++) assert_non_null(sm_strerror(rc));
    assert_string_equal(sm_strerror(SM_EUNDECLARED), "undeclared state");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_invalid_vectors),
        cmocka_unit_test(test_wrong_typename),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_value_buf),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, load_vectors, free_vectors);
}
