/* greeter functions — see greeter_functions.h. */
#include "greeter_functions.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int json_escape(char *out, size_t size, const char *s);
static int json_member(const char *json, size_t len, const char *key, char *out, size_t size);

/* example/user: count the visit, tell the greeter. */
static int user(sm_ctx *ctx, const sm_value *message, void *udata)
{
    const char *name = sm_ctx_self(ctx)->id;
    size_t size = strlen(name) * 6 + 64;
    char *json = sm_ctx_alloc(ctx, size);
    int64_t visits;
    int n;

    if (sm_state_get_int64(ctx, "visits", &visits) < 0) return -1;
    visits++;
    if (sm_state_set_int64(ctx, "visits", visits) < 0) return -1;

    if (!json) return sm_fail(ctx, "out of memory");
    n = snprintf(json, size, "{\"name\":");
    n += json_escape(json + n, size - (size_t)n, name);
    snprintf(json + n, size - (size_t)n, ",\"visits\":%" PRId64 "}", visits);
    return sm_send_json(ctx, "example/greeter", name, json);
}

/* example/greeter: build the greeting and reply to the original caller. */
static int greeter(sm_ctx *ctx, const sm_value *message, void *udata)
{
    const char *json;
    size_t len, size;
    char *name, visits[32], *greeting;

    if (sm_value_as_json(message, &json, &len) != SM_OK)
        return sm_fail(ctx, "example/greeter wants statemesh/json, got %s", message->typename);
    size = len + 1;
    name = sm_ctx_alloc(ctx, size);
    greeting = sm_ctx_alloc(ctx, size + 64);
    if (!name || !greeting) return sm_fail(ctx, "out of memory");
    if (json_member(json, len, "name", name, size) != 0 ||
        json_member(json, len, "visits", visits, sizeof visits) != 0)
        return sm_fail(ctx, "example/greeter wants {\"name\": string, \"visits\": number}");
    snprintf(greeting, size + 64, "Hello %s, you are visitor #%s", name, visits);
    return sm_reply_string(ctx, greeting);
}

int greeter_bind(sm_functions *fns)
{
    static const sm_state_spec user_state[] = {SM_STATE("visits", SM_TYPE_INT64)};
    int rc = sm_functions_bind(fns, "example/user", user_state, 1, user, NULL);
    if (rc != SM_OK) return rc;
    return sm_functions_bind(fns, "example/greeter", NULL, 0, greeter, NULL);
}

/* ---- JSON helpers: just enough for the flat objects of this example ---- */

/* Writes s as a JSON string literal; returns the bytes written (size must be
 * at least 6 * strlen(s) + 3). */
static int json_escape(char *out, size_t size, const char *s)
{
    size_t o = 0;
    out[o++] = '"';
    for (; *s && o + 8 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, size - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    return (int)o;
}

struct cursor {
    const char *p, *end;
};

static void skip_ws(struct cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int hex4(const char *p, unsigned *out)
{
    *out = 0;
    for (int i = 0; i < 4; i++) {
        char h = p[i];
        unsigned d = h >= '0' && h <= '9' ? (unsigned)(h - '0')
                     : h >= 'a' && h <= 'f' ? (unsigned)(h - 'a' + 10)
                     : h >= 'A' && h <= 'F' ? (unsigned)(h - 'A' + 10) : 16;
        if (d == 16) return -1;
        *out = *out * 16 + d;
    }
    return 0;
}

/* Appends code point cp to out as UTF-8. */
static int put_utf8(char *out, size_t size, size_t *o, unsigned cp)
{
    unsigned char b[4];
    size_t n = 0;
    if (cp < 0x80) {
        b[n++] = (unsigned char)cp;
    } else if (cp < 0x800) {
        b[n++] = (unsigned char)(0xc0 | cp >> 6);
        b[n++] = (unsigned char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        b[n++] = (unsigned char)(0xe0 | cp >> 12);
        b[n++] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        b[n++] = (unsigned char)(0x80 | (cp & 0x3f));
    } else {
        b[n++] = (unsigned char)(0xf0 | cp >> 18);
        b[n++] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        b[n++] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        b[n++] = (unsigned char)(0x80 | (cp & 0x3f));
    }
    if (*o + n >= size) return -1;
    memcpy(out + *o, b, n);
    *o += n;
    return 0;
}

/* Reads a string literal at c->p, unescaped into out (skipped if out is NULL). */
static int read_string(struct cursor *c, char *out, size_t size)
{
    size_t o = 0;
    if (c->p >= c->end || *c->p++ != '"') return -1;
    while (c->p < c->end && *c->p != '"') {
        unsigned char ch = (unsigned char)*c->p++;
        unsigned cp;
        if (ch != '\\') { /* raw byte, copied as is */
            if (out && o + 1 >= size) return -1;
            if (out) out[o++] = (char)ch;
            continue;
        }
        if (c->p >= c->end) return -1;
        switch (*c->p++) {
        case 'n': cp = '\n'; break;
        case 't': cp = '\t'; break;
        case 'r': cp = '\r'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'u':
            if (c->end - c->p < 4 || hex4(c->p, &cp)) return -1;
            c->p += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) { /* surrogate pair */
                unsigned lo;
                if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u' ||
                    hex4(c->p + 2, &lo) || lo < 0xdc00 || lo > 0xdfff)
                    return -1;
                c->p += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            break;
        default: return -1;
        }
        if (out && put_utf8(out, size, &o, cp) != 0) return -1;
    }
    if (c->p >= c->end) return -1;
    c->p++;
    if (out) out[o] = '\0';
    return 0;
}

/* Finds member `key` of the top-level object and copies its value into out:
 * strings unescaped, numbers as written. Nested values are not supported.
 * Returns 0 if found, -1 otherwise. */
static int json_member(const char *json, size_t len, const char *key, char *out, size_t size)
{
    struct cursor c = {json, json + len};
    skip_ws(&c);
    if (c.p >= c.end || *c.p++ != '{') return -1;
    for (;;) {
        char k[64];
        int match;
        skip_ws(&c);
        if (read_string(&c, k, sizeof k) != 0) return -1;
        match = strcmp(k, key) == 0;
        skip_ws(&c);
        if (c.p >= c.end || *c.p++ != ':') return -1;
        skip_ws(&c);
        if (c.p < c.end && *c.p == '"') {
            if (read_string(&c, match ? out : NULL, size) != 0) return -1;
        } else {
            const char *start = c.p;
            while (c.p < c.end && strchr("+-.0123456789eE", *c.p)) c.p++;
            if (c.p == start || (size_t)(c.p - start) >= size) return -1;
            if (match) {
                memcpy(out, start, (size_t)(c.p - start));
                out[c.p - start] = '\0';
            }
        }
        if (match) return 0;
        skip_ws(&c);
        if (c.p >= c.end || *c.p++ != ',') return -1;
    }
}
