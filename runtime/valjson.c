/* valjson — see valjson.h. */
#include "valjson.h"

#include <math.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

int valjson_resolve_type(const char *name, struct vtype *out)
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

static int hexdigit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int valjson_unhex(const char *text, size_t len, uint8_t *out)
{
    if (len % 2) return -1;
    for (size_t i = 0; i < len / 2; i++) {
        int hi = hexdigit(text[2 * i]), lo = hexdigit(text[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

#define WHY(...) (snprintf(why, whylen, __VA_ARGS__), -1)

int valjson_decode(const struct vtype *vt, const sm_json *v, bool hex, uint8_t *out,
                   size_t *outlen, char *why, size_t whylen)
{
    size_t n;

    if (hex) {
        /* the digits are ASCII: the string's text between its quotes */
        if (v->kind != SM_JSON_STRING || valjson_unhex(v->p + 1, v->len - 2, out))
            return WHY("must be a string of hex digits (an even number) for typename %s",
                       vt->typename);
        *outlen = (v->len - 2) / 2;
        return 0;
    }
    switch (vt->kind) {
    case VK_JSON:
        memcpy(out, v->p, v->len);
        *outlen = v->len;
        return 0;
    case VK_STRING:
        if (v->kind != SM_JSON_STRING ||
            sm_json_string(v, (char *)out, v->len + SM_SCALAR_SIZE, &n) != SM_OK)
            return WHY("must be a JSON string (no \\u0000) for typename %s", vt->typename);
        *outlen = n;
        return 0;
    case VK_INT64: {
        int64_t x;
        if (sm_json_int64(v, &x) != SM_OK)
            return WHY("must be a 64-bit integer for typename %s", vt->typename);
        sm_encode_int64(x, out);
        *outlen = 8;
        return 0;
    }
    case VK_FLOAT64: {
        double x;
        if (sm_json_string_eq(v, "NaN")) x = NAN;
        else if (sm_json_string_eq(v, "Infinity")) x = INFINITY;
        else if (sm_json_string_eq(v, "-Infinity")) x = -INFINITY;
        else if (sm_json_double(v, &x) != SM_OK)
            return WHY("must be a number (or \"NaN\", \"Infinity\", \"-Infinity\") for typename %s",
                       vt->typename);
        sm_encode_float64(x, out);
        *outlen = 8;
        return 0;
    }
    case VK_BOOL: {
        bool x;
        if (sm_json_bool(v, &x) != SM_OK)
            return WHY("must be true or false for typename %s", vt->typename);
        out[0] = x ? 1 : 0;
        *outlen = 1;
        return 0;
    }
    case VK_BYTES:
    case VK_USER:
        return valjson_decode(vt, v, true, out, outlen, why, whylen);
    }
    return WHY("unknown kind");
}

void valjson_put_string(FILE *f, const char *s, size_t len)
{
    size_t i = 0;
    fputc('"', f);
    while (i < len) {
        size_t run = i;
        unsigned char ch;
        while (run < len && (ch = (unsigned char)s[run]) >= 0x20 && ch != 0x7f && ch != '"' &&
               ch != '\\')
            run++;
        if (run > i) fwrite(s + i, 1, run - i, f);   /* plain bytes in one go */
        if (run == len) break;
        ch = (unsigned char)s[run];
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch == '\n') fputs("\\n", f);
        else if (ch == '\t') fputs("\\t", f);
        else if (ch == '\r') fputs("\\r", f);
        else fprintf(f, "\\u%04x", ch);
        i = run + 1;
    }
    fputc('"', f);
}

void valjson_put_double(FILE *f, double d)
{
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) break;
    }
    fputs(buf, f);
}

static void put_hex(FILE *f, const uint8_t *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    char buf[512];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        buf[k++] = digits[p[i] >> 4];
        buf[k++] = digits[p[i] & 15];
        if (k == sizeof buf) fwrite(buf, 1, k, f), k = 0;
    }
    if (k) fwrite(buf, 1, k, f);
}

void valjson_put(FILE *f, const sm_value *v, bool oneline)
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
    valjson_put_string(f, v->typename, strlen(v->typename));
    if (sm_value_as_int64(v, &i) == SM_OK) {
        fprintf(f, ",\"value\":%" PRId64, i);
    } else if (sm_value_as_float64(v, &d) == SM_OK) {
        fputs(",\"value\":", f);
        if (isfinite(d)) valjson_put_double(f, d);
        else fprintf(f, "\"%s\"", isnan(d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity");
    } else if (sm_value_as_bool(v, &b) == SM_OK) {
        fprintf(f, ",\"value\":%s", b ? "true" : "false");
    } else if (sm_value_as_string(v, &s, &n) == SM_OK && !memchr(s, '\0', n)) {
        fputs(",\"value\":", f);
        valjson_put_string(f, s, n);
    } else if (sm_value_as_json(v, &s, &n) == SM_OK && sm_json_valid(s, n)) {
        fputs(",\"value\":", f);
        for (size_t k = 0; k < n;) {        /* runs without line breaks in one go */
            size_t run = k;
            while (run < n && (!oneline || (s[run] != '\n' && s[run] != '\r'))) run++;
            fwrite(s + k, 1, run - k, f);
            if (run < n) fputc(' ', f);
            k = run + 1;
        }
    } else {
        fputs(",\"hex\":\"", f);
        put_hex(f, v->data, v->len);
        fputc('"', f);
    }
}
