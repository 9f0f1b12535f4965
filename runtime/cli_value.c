/*
 * cli_value — the values of the `statemesh` CLI: --type names, VALUE text
 * encoded as a typename says, and values, ids and times printed as text or
 * JSON (the output formats are described in cli.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "statemesh/client.h"
#include "statemesh/json.h"

/* ---- output helpers ---- */

static void put_hex(FILE *f, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) fprintf(f, "%02x", p[i]);
}

/* ---- values ---- */

int gbuf_reserve(struct gbuf *b, size_t n)
{
    uint8_t *np;
    if (n <= b->cap) return 0;
    if (n > MAX_LINE + 64 || !(np = realloc(b->p, n))) return -1;
    b->p = np;
    b->cap = n;
    return 0;
}

/* Encodes command-line text as vt says; hex input is decoded into *store.
 * Returns 0, or -1 with the reason in why. */
static int encode_text(const struct vtype *vt, const char *text, sm_value *out,
                       uint8_t scalar[8], struct gbuf *store, char *why, size_t whysz)
{
    size_t len = strlen(text);
    char *end;

    switch (vt->kind) {
    case VK_STRING:
        if (!sm_utf8_valid(text, len)) return snprintf(why, whysz, "VALUE is not valid UTF-8"), -1;
        *out = sm_value_string(text);
        return 0;
    case VK_INT64: {
        long long v;
        errno = 0;
        v = strtoll(text, &end, 10);
        if (!*text || *end || errno == ERANGE)
            return snprintf(why, whysz, "VALUE '%.100s' is not a 64-bit integer", text), -1;
        *out = sm_value_int64((int64_t)v, scalar);
        return 0;
    }
    case VK_FLOAT64: {
        double v = strtod(text, &end);
        if (!*text || *end) return snprintf(why, whysz, "VALUE '%.100s' is not a number", text), -1;
        *out = sm_value_float64(v, scalar);
        return 0;
    }
    case VK_BOOL:
        if (strcmp(text, "true") == 0 || strcmp(text, "1") == 0) *out = sm_value_bool(true, scalar);
        else if (strcmp(text, "false") == 0 || strcmp(text, "0") == 0)
            *out = sm_value_bool(false, scalar);
        else return snprintf(why, whysz, "VALUE '%.100s' is not true, false, 1 or 0", text), -1;
        return 0;
    case VK_JSON:
        if (!sm_json_valid(text, len))
            return snprintf(why, whysz, "VALUE is not valid JSON: %.200s", text), -1;
        *out = sm_value_json(text);
        return 0;
    case VK_BYTES:
    case VK_USER:
        if (gbuf_reserve(store, len / 2 + 1)) return snprintf(why, whysz, "out of memory"), -1;
        if (valjson_unhex(text, len, store->p))
            return snprintf(why, whysz, "VALUE must be hex (an even number of digits): %.200s",
                            text), -1;
        *out = sm_value_make(vt->typename, store->p, len / 2);
        return 0;
    }
    return -1;
}

/* The command-line VALUE encoded by --type; a bad one is a usage error. */
int encode_arg(const char *type, const char *text, sm_value *out, uint8_t scalar[8],
                      struct gbuf *store)
{
    struct vtype vt;
    char why[400];
    if (valjson_resolve_type(type ? type : "string", &vt))
        return usage_error("unknown --type '%s' (" TYPE_NAMES ")", type);
    if (encode_text(&vt, text, out, scalar, store, why, sizeof why)) return usage_error("%s", why);
    return 0;
}

/* Text form of a value. `quote_strings` for line-oriented output. */
void print_value(FILE *f, const sm_value *v, int quote_strings, int with_typename)
{
    int64_t i;
    double d;
    bool b;
    const char *s;
    size_t n;

    if (!v->typename || !*v->typename) {
        fputs(quote_strings ? "(none)" : "", f); /* a Call answered without a value */
    } else if (sm_value_as_int64(v, &i) == SM_OK) {
        fprintf(f, "%" PRId64, i);
    } else if (sm_value_as_float64(v, &d) == SM_OK) {
        valjson_put_double(f, d);
    } else if (sm_value_as_bool(v, &b) == SM_OK) {
        fputs(b ? "true" : "false", f);
    } else if (sm_value_as_string(v, &s, &n) == SM_OK) {
        if (quote_strings) valjson_put_string(f, s, n);
        else fwrite(s, 1, n, f);
    } else if (sm_value_as_json(v, &s, &n) == SM_OK) {
        fwrite(s, 1, n, f);
    } else {
        if (with_typename && !sm_value_is(v, SM_TYPE_BYTES)) fprintf(f, "%s ", v->typename);
        put_hex(f, v->data, v->len);
    }
}

void put_time(FILE *f, int64_t ms)
{
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    struct tm tm;
    char buf[32];
    if (!gmtime_r(&secs, &tm) || !strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm)) {
        fprintf(f, "@%" PRId64, ms);
        return;
    }
    fprintf(f, "%s.%03dZ", buf, (int)(ms - (int64_t)secs * 1000));
}

void put_id(FILE *f, const char *id)
{
    size_t n = strlen(id);
    bool quote = n == 0;
    for (size_t i = 0; i < n && !quote; i++) {
        unsigned char ch = (unsigned char)id[i];
        quote = ch <= ' ' || ch == '"' || ch == 0x7f;
    }
    if (quote) valjson_put_string(f, id, n);
    else fputs(id, f);
}

/* JSON text on one line: newlines can only be whitespace between tokens. */
static void put_json_oneline(FILE *f, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) fputc(s[i] == '\n' || s[i] == '\r' ? ' ' : s[i], f);
}

/* A value on one line of text output: JSON as its text on one line, the
 * rest as print_value (strings quoted, user types "TYPENAME HEX"). */
void print_value_line(FILE *f, const sm_value *v)
{
    const char *s;
    size_t n;
    if (sm_value_as_json(v, &s, &n) == SM_OK) put_json_oneline(f, s, n);
    else print_value(f, v, 1, 1);
}

void put_address_json(FILE *f, const char *type, const char *id)
{
    fputs("{\"type\":", f);
    valjson_put_string(f, type, strlen(type));
    fputs(",\"id\":", f);
    valjson_put_string(f, id, strlen(id));
    fputc('}', f);
}
