/* value — typed value codecs and status names; see statemesh/value.h. */
#include "statemesh/value.h"

#include <stdlib.h>
#include <string.h>

const char *sm_strerror(int rc)
{
    switch (rc) {
    case SM_OK: return "ok";
    case SM_ABSENT: return "absent";
    case SM_AGAIN: return "nothing yet, try again";
    case SM_EINVAL: return "invalid argument";
    case SM_ETYPE: return "wrong typename";
    case SM_EVALUE: return "invalid value encoding";
    case SM_EUNDECLARED: return "undeclared state";
    case SM_ENOMEM: return "out of memory";
    case SM_EFAILED: return "batch failed";
    case SM_EEXIST: return "already exists or in use";
    case SM_ESYS: return "system error";
    case SM_ERPC: return "rpc failed";
    case SM_ESTATE: return "not allowed now";
    default: return "unknown error";
    }
}

bool sm_value_is(const sm_value *v, const char *typename)
{
    return v && v->typename && typename && strcmp(v->typename, typename) == 0;
}

bool sm_utf8_valid(const void *s, size_t len)
{
    const uint8_t *p = s;
    size_t i = 0;

    while (i < len) {
        uint8_t c = p[i];
        size_t n;
        uint32_t cp;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (len - i - 1 < n) return false;
        for (size_t k = 1; k <= n; k++) {
            uint8_t cc = p[i + k];
            if ((cc & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000)) return false; /* overlong */
        if (cp >= 0xd800 && cp <= 0xdfff) return false;                     /* surrogate */
        if (cp > 0x10ffff) return false;
        i += n + 1;
    }
    return true;
}

int sm_value_validate(const sm_value *v)
{
    if (!v || !v->typename || !v->typename[0]) return SM_EINVAL;
    if (!v->data && v->len) return SM_EINVAL;
    if (strncmp(v->typename, "statemesh/", 10) != 0) return SM_OK;
    const char *t = v->typename + 10;
    if (strcmp(t, "int64") == 0 || strcmp(t, "float64") == 0)
        return v->len == 8 ? SM_OK : SM_EVALUE;
    if (strcmp(t, "bool") == 0)
        return v->len == 1 && v->data[0] <= 1 ? SM_OK : SM_EVALUE;
    if (strcmp(t, "string") == 0 || strcmp(t, "json") == 0)
        return sm_utf8_valid(v->data, v->len) ? SM_OK : SM_EVALUE;
    return SM_OK; /* statemesh/bytes, and names reserved for later versions */
}

/* ---- encoders ---- */

void sm_encode_int64(int64_t v, uint8_t out[8])
{
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)(u >> (8 * i));
}

int64_t sm_decode_int64(const uint8_t in[8])
{
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u |= (uint64_t)in[i] << (8 * i);
    return (int64_t)u; /* two's complement on every platform gcc targets */
}

void sm_encode_float64(double v, uint8_t out[8])
{
    uint64_t u;
    memcpy(&u, &v, 8);
    sm_encode_int64((int64_t)u, out);
}

double sm_decode_float64(const uint8_t in[8])
{
    uint64_t u = (uint64_t)sm_decode_int64(in);
    double v;
    memcpy(&v, &u, 8);
    return v;
}

sm_value sm_value_make(const char *typename, const void *data, size_t len)
{
    sm_value v = {typename, data, len};
    return v;
}

sm_value sm_value_int64(int64_t v, uint8_t buf[SM_SCALAR_SIZE])
{
    sm_encode_int64(v, buf);
    return sm_value_make(SM_TYPE_INT64, buf, 8);
}

sm_value sm_value_float64(double v, uint8_t buf[SM_SCALAR_SIZE])
{
    sm_encode_float64(v, buf);
    return sm_value_make(SM_TYPE_FLOAT64, buf, 8);
}

sm_value sm_value_bool(bool v, uint8_t buf[SM_SCALAR_SIZE])
{
    buf[0] = v ? 1 : 0;
    return sm_value_make(SM_TYPE_BOOL, buf, 1);
}

sm_value sm_value_string(const char *s)
{
    return sm_value_make(SM_TYPE_STRING, s, s ? strlen(s) : 0);
}

sm_value sm_value_string_n(const char *s, size_t len)
{
    return sm_value_make(SM_TYPE_STRING, s, len);
}

sm_value sm_value_json(const char *json)
{
    return sm_value_make(SM_TYPE_JSON, json, json ? strlen(json) : 0);
}

sm_value sm_value_bytes(const void *data, size_t len)
{
    return sm_value_make(SM_TYPE_BYTES, data, len);
}

/* ---- decoders ---- */

static int check(const sm_value *v, const char *typename)
{
    if (!v || !v->typename) return SM_EINVAL;
    if (strcmp(v->typename, typename) != 0) return SM_ETYPE;
    if (!v->data && v->len) return SM_EINVAL;
    return sm_value_validate(v);
}

int sm_value_as_int64(const sm_value *v, int64_t *out)
{
    int rc = check(v, SM_TYPE_INT64);
    if (rc == SM_OK) *out = sm_decode_int64(v->data);
    return rc;
}

int sm_value_as_float64(const sm_value *v, double *out)
{
    int rc = check(v, SM_TYPE_FLOAT64);
    if (rc == SM_OK) *out = sm_decode_float64(v->data);
    return rc;
}

int sm_value_as_bool(const sm_value *v, bool *out)
{
    int rc = check(v, SM_TYPE_BOOL);
    if (rc == SM_OK) *out = v->data[0] == 1;
    return rc;
}

static int as_text(const sm_value *v, const char *typename, const char **s, size_t *len)
{
    int rc = check(v, typename);
    if (rc == SM_OK) {
        *s = v->len ? (const char *)v->data : "";
        *len = v->len;
    }
    return rc;
}

int sm_value_as_string(const sm_value *v, const char **s, size_t *len)
{
    return as_text(v, SM_TYPE_STRING, s, len);
}

int sm_value_as_json(const sm_value *v, const char **s, size_t *len)
{
    return as_text(v, SM_TYPE_JSON, s, len);
}

int sm_value_as_bytes(const sm_value *v, const uint8_t **data, size_t *len)
{
    int rc = check(v, SM_TYPE_BYTES);
    if (rc == SM_OK) {
        *data = v->data;
        *len = v->len;
    }
    return rc;
}

/* ---- owned values ---- */

int sm_value_buf_set(sm_value_buf *b, const sm_value *v)
{
    size_t tlen, total;
    char *block;

    if (!b || !v || !v->typename || (!v->data && v->len)) return SM_EINVAL;
    tlen = strlen(v->typename);
    if (v->len > SIZE_MAX - tlen - 2) return SM_ENOMEM;
    total = tlen + 1 + v->len + 1;
    block = malloc(total);
    if (!block) return SM_ENOMEM;
    memcpy(block, v->typename, tlen + 1);
    if (v->len) memcpy(block + tlen + 1, v->data, v->len);
    block[tlen + 1 + v->len] = '\0';
    sm_value_buf_cleanup(b);
    b->storage_ = block;
    b->value.typename = block;
    b->value.data = (const uint8_t *)block + tlen + 1;
    b->value.len = v->len;
    return SM_OK;
}

void sm_value_buf_cleanup(sm_value_buf *b)
{
    if (!b) return;
    free(b->storage_);
    b->storage_ = NULL;
    b->value.typename = NULL;
    b->value.data = NULL;
    b->value.len = 0;
}
