/*
 * json — strict JSON views (statemesh/json.h).
 *
 * Everything works on a cursor [p, end) over the caller's text. skip_value()
 * is the one recursive-descent validator: it checks the grammar of one value
 * and moves past it; parsing, iteration and lookups are built on it, so a
 * view made by hand is checked as it is read. String contents are decoded
 * by next_unit(), one source character (raw byte or escape) at a time, which
 * serves both unescaping into a buffer and comparing without one.
 */
#include "statemesh/json.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct cur {
    const char *p, *end;
};

static void ws(struct cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int hexval(char h)
{
    if (h >= '0' && h <= '9') return h - '0';
    if (h >= 'a' && h <= 'f') return h - 'a' + 10;
    if (h >= 'A' && h <= 'F') return h - 'A' + 10;
    return -1;
}

static int skip_string(struct cur *c)
{
    if (c->p >= c->end || *c->p != '"') return -1;
    c->p++;
    while (c->p < c->end && *c->p != '"') {
        unsigned char ch = (unsigned char)*c->p++;
        if (ch < 0x20) return -1;
        if (ch != '\\') continue;
        if (c->p >= c->end) return -1;
        ch = (unsigned char)*c->p++;
        if (ch == 'u') {
            if (c->end - c->p < 4) return -1;
            for (int i = 0; i < 4; i++)
                if (hexval(c->p[i]) < 0) return -1;
            c->p += 4;
        } else if (!memchr("\"\\/bfnrt", ch, 8)) {
            return -1;
        }
    }
    if (c->p >= c->end) return -1;
    c->p++;
    return 0;
}

static int digits(struct cur *c)
{
    const char *s = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') c->p++;
    return c->p > s ? 0 : -1;
}

static int skip_number(struct cur *c)
{
    if (c->p < c->end && *c->p == '-') c->p++;
    if (c->p < c->end && *c->p == '0') c->p++;
    else if (c->p >= c->end || *c->p < '1' || *c->p > '9' || digits(c)) return -1;
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (digits(c)) return -1;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-')) c->p++;
        if (digits(c)) return -1;
    }
    return 0;
}

static int skip_lit(struct cur *c, const char *lit, size_t n)
{
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0) return -1;
    c->p += n;
    return 0;
}

static sm_json_kind kind_at(const char *p)
{
    switch (*p) {
    case 'n': return SM_JSON_NULL;
    case 'f': return SM_JSON_FALSE;
    case 't': return SM_JSON_TRUE;
    case '"': return SM_JSON_STRING;
    case '[': return SM_JSON_ARRAY;
    case '{': return SM_JSON_OBJECT;
    default: return SM_JSON_NUMBER;
    }
}

static int skip_value(struct cur *c, int depth)
{
    if (c->p >= c->end) return -1;
    switch (*c->p) {
    case '"': return skip_string(c);
    case 'n': return skip_lit(c, "null", 4);
    case 't': return skip_lit(c, "true", 4);
    case 'f': return skip_lit(c, "false", 5);
    case '[':
    case '{': {
        char close = *c->p == '[' ? ']' : '}';
        if (depth >= SM_JSON_MAX_DEPTH) return -1;
        c->p++;
        ws(c);
        if (c->p < c->end && *c->p == close) {
            c->p++;
            return 0;
        }
        for (;;) {
            if (close == '}') {
                if (skip_string(c)) return -1;
                ws(c);
                if (c->p >= c->end || *c->p++ != ':') return -1;
                ws(c);
            }
            if (skip_value(c, depth + 1)) return -1;
            ws(c);
            if (c->p >= c->end) return -1;
            if (*c->p == close) {
                c->p++;
                return 0;
            }
            if (*c->p++ != ',') return -1;
            ws(c);
        }
    }
    default: return skip_number(c);
    }
}

int sm_json_parse(const char *text, size_t len, sm_json *out)
{
    struct cur c = {text, text + len};
    const char *start;

    if (!out) return SM_EINVAL;
    out->p = NULL;
    out->len = 0;
    out->kind = SM_JSON_INVALID;
    if (!text || !sm_utf8_valid(text, len)) return SM_EVALUE;
    ws(&c);
    start = c.p;
    if (skip_value(&c, 0)) return SM_EVALUE;
    out->p = start;
    out->len = (size_t)(c.p - start);
    ws(&c);
    if (c.p != c.end) {
        out->p = NULL;
        out->len = 0;
        return SM_EVALUE;
    }
    out->kind = kind_at(start);
    return SM_OK;
}

bool sm_json_valid(const char *text, size_t len)
{
    sm_json v;
    return sm_json_parse(text, len, &v) == SM_OK;
}

/* ---- objects and arrays ---- */

int sm_json_iter_init(sm_json_iter *it, const sm_json *v)
{
    if (!it || !v || !v->p) return SM_EINVAL;
    if (v->len < 2 || (v->kind != SM_JSON_ARRAY && v->kind != SM_JSON_OBJECT)) return SM_ETYPE;
    it->object = v->kind == SM_JSON_OBJECT;
    if (v->p[0] != (it->object ? '{' : '[')) return SM_ETYPE;
    it->p = v->p + 1;
    it->end = v->p + v->len;
    it->first = true;
    return SM_OK;
}

int sm_json_iter_next(sm_json_iter *it, sm_json *key, sm_json *value)
{
    struct cur c = {it->p, it->end};
    const char *start;

    ws(&c);
    if (c.p >= c.end) return SM_EVALUE;
    if (*c.p == (it->object ? '}' : ']')) return SM_ABSENT;
    if (!it->first) {
        if (*c.p++ != ',') return SM_EVALUE;
        ws(&c);
    }
    if (it->object) {
        start = c.p;
        if (skip_string(&c)) return SM_EVALUE;
        if (key) {
            key->p = start;
            key->len = (size_t)(c.p - start);
            key->kind = SM_JSON_STRING;
        }
        ws(&c);
        if (c.p >= c.end || *c.p++ != ':') return SM_EVALUE;
        ws(&c);
    }
    start = c.p;
    if (skip_value(&c, 1)) return SM_EVALUE;
    value->p = start;
    value->len = (size_t)(c.p - start);
    value->kind = kind_at(start);
    it->p = c.p;
    it->first = false;
    return SM_OK;
}

int sm_json_get(const sm_json *obj, const char *key, sm_json *out)
{
    sm_json_iter it;
    sm_json k, v;
    int rc;

    if (!obj || !key || !out) return SM_EINVAL;
    if (obj->kind != SM_JSON_OBJECT) return SM_ETYPE;
    if ((rc = sm_json_iter_init(&it, obj)) != SM_OK) return rc;
    while ((rc = sm_json_iter_next(&it, &k, &v)) == SM_OK) {
        if (sm_json_string_eq(&k, key)) {
            *out = v;
            return SM_OK;
        }
    }
    return rc;
}

/* ---- strings ---- */

static size_t put_utf8(uint8_t out[4], uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xc0 | cp >> 6);
        out[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xe0 | cp >> 12);
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (uint8_t)(0xf0 | cp >> 18);
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

static uint32_t hex4(const char *p)
{
    return (uint32_t)(hexval(p[0]) << 12 | hexval(p[1]) << 8 | hexval(p[2]) << 4 | hexval(p[3]));
}

/* Decodes the string character at c->p into out (1..4 bytes, *n).
 * Returns 1, 0 at the closing quote (consumed), -1 if malformed. */
static int next_unit(struct cur *c, uint8_t out[4], size_t *n)
{
    unsigned char ch;
    uint32_t cp;

    if (c->p >= c->end) return -1;
    ch = (unsigned char)*c->p++;
    if (ch == '"') return 0;
    if (ch < 0x20) return -1;
    if (ch != '\\') {
        out[0] = ch;
        *n = 1;
        return 1;
    }
    if (c->p >= c->end) return -1;
    switch (*c->p++) {
    case '"': cp = '"'; break;
    case '\\': cp = '\\'; break;
    case '/': cp = '/'; break;
    case 'b': cp = '\b'; break;
    case 'f': cp = '\f'; break;
    case 'n': cp = '\n'; break;
    case 'r': cp = '\r'; break;
    case 't': cp = '\t'; break;
    case 'u':
        if (c->end - c->p < 4 || hexval(c->p[0]) < 0 || hexval(c->p[1]) < 0 ||
            hexval(c->p[2]) < 0 || hexval(c->p[3]) < 0)
            return -1;
        cp = hex4(c->p);
        c->p += 4;
        if (cp == 0 || (cp >= 0xdc00 && cp <= 0xdfff)) return -1;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            uint32_t lo;
            if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u' || hexval(c->p[2]) < 0 ||
                hexval(c->p[3]) < 0 || hexval(c->p[4]) < 0 || hexval(c->p[5]) < 0)
                return -1;
            lo = hex4(c->p + 2);
            if (lo < 0xdc00 || lo > 0xdfff) return -1;
            c->p += 6;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        }
        break;
    default: return -1;
    }
    *n = put_utf8(out, cp);
    return 1;
}

static int string_cursor(const sm_json *v, struct cur *c)
{
    if (!v || !v->p || v->kind != SM_JSON_STRING || v->len < 2 || v->p[0] != '"')
        return SM_ETYPE;
    c->p = v->p + 1;
    c->end = v->p + v->len;
    return SM_OK;
}

int sm_json_string(const sm_json *v, char *buf, size_t size, size_t *len)
{
    struct cur c;
    uint8_t u[4];
    size_t n, total = 0;
    int r, rc = string_cursor(v, &c);

    if (rc) return rc;
    if (!buf) size = 0;
    while ((r = next_unit(&c, u, &n)) == 1) {
        if (total + n < size) memcpy(buf + total, u, n);
        else if (total < size) size = total + 1; /* stop writing; keep a whole prefix */
        total += n;
    }
    if (r < 0 || c.p != c.end) return SM_EVALUE;
    if (len) *len = total;
    if (total + 1 > size) {
        if (size) buf[size - 1] = '\0';
        return SM_ENOMEM;
    }
    buf[total] = '\0';
    return SM_OK;
}

bool sm_json_string_eq(const sm_json *v, const char *s)
{
    struct cur c;
    uint8_t u[4];
    size_t n, slen, off = 0;
    int r;

    if (!s || string_cursor(v, &c) != SM_OK) return false;
    slen = strlen(s);
    while ((r = next_unit(&c, u, &n)) == 1) {
        if (off + n > slen || memcmp(s + off, u, n) != 0) return false;
        off += n;
    }
    return r == 0 && c.p == c.end && off == slen;
}

/* ---- numbers, bools, null ---- */

static int number_text(const sm_json *v)
{
    struct cur c;
    if (!v || !v->p || v->kind != SM_JSON_NUMBER) return SM_ETYPE;
    c.p = v->p;
    c.end = v->p + v->len;
    if (skip_number(&c) || c.p != c.end) return SM_EVALUE;
    return SM_OK;
}

int sm_json_int64(const sm_json *v, int64_t *out)
{
    char buf[24];
    char *end;
    long long x;
    int rc = number_text(v);

    if (rc) return rc;
    for (size_t i = 0; i < v->len; i++)
        if (v->p[i] == '.' || v->p[i] == 'e' || v->p[i] == 'E') return SM_EVALUE;
    if (v->len >= sizeof buf) return SM_EVALUE; /* more than 20 digits (and sign) */
    memcpy(buf, v->p, v->len);
    buf[v->len] = '\0';
    errno = 0;
    x = strtoll(buf, &end, 10);
    if (errno == ERANGE || *end) return SM_EVALUE;
    *out = (int64_t)x;
    return SM_OK;
}

int sm_json_double(const sm_json *v, double *out)
{
    char small[256], *buf = small;
    double d;
    int rc = number_text(v);

    if (rc) return rc;
    if (v->len >= sizeof small && !(buf = malloc(v->len + 1))) return SM_ENOMEM;
    memcpy(buf, v->p, v->len);
    buf[v->len] = '\0';
    d = strtod(buf, NULL);
    if (buf != small) free(buf);
    if (isinf(d)) return SM_EVALUE;
    *out = d;
    return SM_OK;
}

int sm_json_bool(const sm_json *v, bool *out)
{
    if (!v || !v->p) return SM_EINVAL;
    if (v->kind == SM_JSON_TRUE && v->len == 4 && memcmp(v->p, "true", 4) == 0) *out = true;
    else if (v->kind == SM_JSON_FALSE && v->len == 5 && memcmp(v->p, "false", 5) == 0) *out = false;
    else return SM_ETYPE;
    return SM_OK;
}

bool sm_json_is_null(const sm_json *v)
{
    return v && v->p && v->kind == SM_JSON_NULL && v->len == 4 && memcmp(v->p, "null", 4) == 0;
}

int sm_json_get_string(const sm_json *obj, const char *key, char *buf, size_t size, size_t *len)
{
    sm_json v;
    int rc = sm_json_get(obj, key, &v);
    return rc ? rc : sm_json_string(&v, buf, size, len);
}

int sm_json_get_int64(const sm_json *obj, const char *key, int64_t *out)
{
    sm_json v;
    int rc = sm_json_get(obj, key, &v);
    return rc ? rc : sm_json_int64(&v, out);
}

int sm_json_get_bool(const sm_json *obj, const char *key, bool *out)
{
    sm_json v;
    int rc = sm_json_get(obj, key, &v);
    return rc ? rc : sm_json_bool(&v, out);
}

/* ---- writing ---- */

size_t sm_json_quote(char *out, size_t size, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    char esc[6];

#define PUT(ch)                                  \
    do {                                         \
        if (o + 1 < size) out[o] = (char)(ch);   \
        o++;                                     \
    } while (0)

    PUT('"');
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        size_t n = 0;
        switch (ch) {
        case '"': esc[n++] = '\\'; esc[n++] = '"'; break;
        case '\\': esc[n++] = '\\'; esc[n++] = '\\'; break;
        case '\n': esc[n++] = '\\'; esc[n++] = 'n'; break;
        case '\r': esc[n++] = '\\'; esc[n++] = 'r'; break;
        case '\t': esc[n++] = '\\'; esc[n++] = 't'; break;
        case '\b': esc[n++] = '\\'; esc[n++] = 'b'; break;
        case '\f': esc[n++] = '\\'; esc[n++] = 'f'; break;
        default:
            if (ch < 0x20 || ch == 0x7f) {
                memcpy(esc, "\\u00", 4);
                esc[4] = hex[ch >> 4];
                esc[5] = hex[ch & 15];
                n = 6;
            } else {
                esc[n++] = (char)ch;
            }
        }
        for (size_t k = 0; k < n; k++) PUT(esc[k]);
    }
    PUT('"');
#undef PUT
    if (size) out[o < size ? o : size - 1] = '\0';
    return o;
}
