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

void json_put_string(FILE *f, const char *s, size_t len)
{
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch == '\n') fputs("\\n", f);
        else if (ch == '\t') fputs("\\t", f);
        else if (ch == '\r') fputs("\\r", f);
        else if (ch < 0x20 || ch == 0x7f) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

static void put_hex(FILE *f, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) fprintf(f, "%02x", p[i]);
}

/* Shortest %g form that reads back as the same double. */
static void put_double(FILE *f, double d)
{
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) break;
    }
    fputs(buf, f);
}

/* ---- values ---- */

/* Resolves a --type / "typename" name. Returns 0, or -1 for an unknown one. */
int resolve_type(const char *name, struct vtype *out)
{
    static const struct {
        const char *shortname, *typename;
        enum vkind kind;
    } builtin[] = {
        {"string", SM_TYPE_STRING, VK_STRING}, {"int64", SM_TYPE_INT64, VK_INT64},
        {"float64", SM_TYPE_FLOAT64, VK_FLOAT64}, {"bool", SM_TYPE_BOOL, VK_BOOL},
        {"json", SM_TYPE_JSON, VK_JSON}, {"bytes", SM_TYPE_BYTES, VK_BYTES},
    };
    for (size_t i = 0; i < sizeof builtin / sizeof *builtin; i++) {
        if (strcmp(name, builtin[i].shortname) == 0 || strcmp(name, builtin[i].typename) == 0) {
            out->kind = builtin[i].kind;
            out->typename = builtin[i].typename;
            return 0;
        }
    }
    if (strchr(name, '/') && strncmp(name, "statemesh/", 10) != 0 && name[0] != '/') {
        out->kind = VK_USER;
        out->typename = name;
        return 0;
    }
    return -1;
}


int gbuf_reserve(struct gbuf *b, size_t n)
{
    uint8_t *np;
    if (n <= b->cap) return 0;
    if (n > MAX_LINE + 64 || !(np = realloc(b->p, n))) return -1;
    b->p = np;
    b->cap = n;
    return 0;
}

static int hexdigit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes len hex digits into out (len / 2 bytes). Returns 0 or -1. */
int unhex(const char *text, size_t len, uint8_t *out)
{
    if (len % 2) return -1;
    for (size_t i = 0; i < len / 2; i++) {
        int hi = hexdigit(text[2 * i]), lo = hexdigit(text[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
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
        if (unhex(text, len, store->p))
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
    if (resolve_type(type ? type : "string", &vt))
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
        put_double(f, d);
    } else if (sm_value_as_bool(v, &b) == SM_OK) {
        fputs(b ? "true" : "false", f);
    } else if (sm_value_as_string(v, &s, &n) == SM_OK) {
        if (quote_strings) json_put_string(f, s, n);
        else fwrite(s, 1, n, f);
    } else if (sm_value_as_json(v, &s, &n) == SM_OK) {
        fwrite(s, 1, n, f);
    } else {
        if (with_typename && !sm_value_is(v, SM_TYPE_BYTES)) fprintf(f, "%s ", v->typename);
        put_hex(f, v->data, v->len);
    }
}

/* JSON members "typename" and "value" (or "hex") of a value. */
void print_value_json(FILE *f, const sm_value *v)
{
    int64_t i;
    double d;
    bool b;
    const char *s;
    size_t n;

    fputs("\"typename\":", f);
    if (!v->typename) {
        fputs("null,\"value\":null", f);
        return;
    }
    json_put_string(f, v->typename, strlen(v->typename));
    if (sm_value_as_int64(v, &i) == SM_OK) {
        fprintf(f, ",\"value\":%" PRId64, i);
    } else if (sm_value_as_float64(v, &d) == SM_OK) {
        fputs(",\"value\":", f);
        if (isfinite(d)) put_double(f, d);
        else fprintf(f, "\"%s\"", isnan(d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity");
    } else if (sm_value_as_bool(v, &b) == SM_OK) {
        fprintf(f, ",\"value\":%s", b ? "true" : "false");
    } else if (sm_value_as_string(v, &s, &n) == SM_OK) {
        fputs(",\"value\":", f);
        json_put_string(f, s, n);
    } else if (sm_value_as_json(v, &s, &n) == SM_OK && sm_json_valid(s, n)) {
        fputs(",\"value\":", f);
        fwrite(s, 1, n, f);
    } else {
        fputs(",\"hex\":\"", f);
        put_hex(f, v->data, v->len);
        fputc('"', f);
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

/* JSON text on one line: newlines can only be whitespace between tokens. */
static void put_json_oneline(FILE *f, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) fputc(s[i] == '\n' || s[i] == '\r' ? ' ' : s[i], f);
}

void put_id(FILE *f, const char *id)
{
    size_t n = strlen(id);
    bool quote = n == 0;
    for (size_t i = 0; i < n && !quote; i++) {
        unsigned char ch = (unsigned char)id[i];
        quote = ch <= ' ' || ch == '"' || ch == 0x7f;
    }
    if (quote) json_put_string(f, id, n);
    else fputs(id, f);
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

/* The "typename" and "value" members of a value in one-line JSON output. */
void print_value_json_line(FILE *f, const sm_value *v)
{
    const char *s;
    size_t n;
    if (sm_value_as_json(v, &s, &n) == SM_OK && sm_json_valid(s, n)) {
        fputs("\"typename\":\"" SM_TYPE_JSON "\",\"value\":", f);
        put_json_oneline(f, s, n);
    } else {
        print_value_json(f, v);
    }
}

void put_address_json(FILE *f, const char *type, const char *id)
{
    fputs("{\"type\":", f);
    json_put_string(f, type, strlen(type));
    fputs(",\"id\":", f);
    json_put_string(f, id, strlen(id));
    fputc('}', f);
}
