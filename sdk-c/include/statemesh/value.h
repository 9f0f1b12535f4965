/*
 * statemesh/value.h — typed values and the SDK's status codes.
 *
 * Every message, state value and reply in statemesh is a typed value: a
 * typename plus bytes. An `sm_value` is a *view*: it never owns what it
 * points to. The built-in typenames have fixed byte encodings, defined in
 * protocol/statemesh/v1/types.proto and checked by test/vectors/types.json:
 *
 *   statemesh/bool     1 byte: 0x00 = false, 0x01 = true (anything else is invalid)
 *   statemesh/int64    8 bytes, two's complement, little-endian
 *   statemesh/float64  8 bytes, IEEE-754 binary64, little-endian
 *   statemesh/string   UTF-8 text, no terminator
 *   statemesh/bytes    the bytes themselves
 *   statemesh/json     UTF-8 JSON text (RFC 8259), no terminator
 *
 * Any other non-empty typename is a user type whose bytes are opaque.
 *
 * Invariants:
 *   - `data` may be NULL only when `len` is 0.
 *   - `data` is NOT NUL-terminated in general: print strings with "%.*s".
 *   - the decoders never allocate; the encoders of fixed-size types write
 *     into a caller-supplied buffer of SM_SCALAR_SIZE bytes, which must
 *     outlive the returned view.
 *
 * JSON values are checked for valid UTF-8 only, not for JSON syntax.
 *
 * Note: the field is named `typename` as the protocol calls it, so this
 * header is C only (typename is a C++ keyword).
 */
#ifndef STATEMESH_VALUE_H
#define STATEMESH_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __GNUC__
#define SM_WARN_UNUSED __attribute__((warn_unused_result))
#define SM_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define SM_WARN_UNUSED
#define SM_PRINTF(f, a)
#endif

/* ---- status codes: 0 = OK, positive = OK with a note, negative = error ---- */

enum sm_status {
    SM_OK = 0,
    SM_ABSENT = 1,        /* state lookup: the value is absent (defaults filled in);
                             iteration: no more items */
    SM_AGAIN = 2,         /* nothing arrived within the wait; try again later */
    SM_EINVAL = -1,       /* bad argument: NULL, malformed address or name, ... */
    SM_ETYPE = -2,        /* the value's typename is not the one required */
    SM_EVALUE = -3,       /* the bytes are not a valid encoding of the typename */
    SM_EUNDECLARED = -4,  /* state name not declared for this function type */
    SM_ENOMEM = -5,       /* out of memory, or a size cap was hit */
    SM_EFAILED = -6,      /* the batch has failed (sm_fail or an earlier error) */
    SM_EEXIST = -7,       /* already bound, or the address is in use */
    SM_ESYS = -8,         /* operating system or gRPC set-up error (logged) */
    SM_ERPC = -9,         /* an RPC failed: see the sm_error filled in */
    SM_ESTATE = -10       /* the call is not allowed in the object's current state */
};

/* Longest delay of a delayed message (function.proto) or of an ingress Send
 * with a delay: 365 days. */
#define SM_MAX_DELAY_MS ((uint64_t)365 * 24 * 3600 * 1000)

/* A static, human-readable name for a status code ("undeclared state"). */
const char *sm_strerror(int rc);

/* ---- typed values ---- */

#define SM_TYPE_BOOL    "statemesh/bool"
#define SM_TYPE_INT64   "statemesh/int64"
#define SM_TYPE_FLOAT64 "statemesh/float64"
#define SM_TYPE_STRING  "statemesh/string"
#define SM_TYPE_BYTES   "statemesh/bytes"
#define SM_TYPE_JSON    "statemesh/json"

/* Size of the buffer the scalar encoders need. */
#define SM_SCALAR_SIZE 8

typedef struct sm_value {
    const char *typename;   /* NUL-terminated, non-empty */
    const uint8_t *data;    /* len bytes, not NUL-terminated */
    size_t len;
} sm_value;

/* 1 if v's typename equals `typename`, else 0 (also for NULL v). */
bool sm_value_is(const sm_value *v, const char *typename);

/* Checks a value: non-empty typename and, for a built-in typename, a valid
 * encoding (length, bool byte, UTF-8). Returns SM_OK, SM_EINVAL (no
 * typename, or data NULL with len > 0) or SM_EVALUE. */
int sm_value_validate(const sm_value *v) SM_WARN_UNUSED;

/* ---- encoders: return a view; nothing is allocated ----
 * The fixed-size encoders write into `buf` (SM_SCALAR_SIZE bytes, owned by
 * the caller); the others point at the caller's data. */
sm_value sm_value_make(const char *typename, const void *data, size_t len);
sm_value sm_value_int64(int64_t v, uint8_t buf[SM_SCALAR_SIZE]);
sm_value sm_value_float64(double v, uint8_t buf[SM_SCALAR_SIZE]);
sm_value sm_value_bool(bool v, uint8_t buf[SM_SCALAR_SIZE]);
sm_value sm_value_string(const char *s);                /* strlen(s) bytes */
sm_value sm_value_string_n(const char *s, size_t len);
sm_value sm_value_json(const char *json);               /* strlen(json) bytes */
sm_value sm_value_bytes(const void *data, size_t len);

/* Raw little-endian codecs used by the above. */
void sm_encode_int64(int64_t v, uint8_t out[8]);
int64_t sm_decode_int64(const uint8_t in[8]);
void sm_encode_float64(double v, uint8_t out[8]);
double sm_decode_float64(const uint8_t in[8]);

/* ---- decoders ----
 * Each checks the typename (SM_ETYPE if different) and the encoding
 * (SM_EVALUE if invalid), and writes its outputs only on SM_OK.
 * String/json/bytes outputs point into v->data (not NUL-terminated) and are
 * valid as long as the value's storage is. */
int sm_value_as_int64(const sm_value *v, int64_t *out /* OUT */) SM_WARN_UNUSED;
int sm_value_as_float64(const sm_value *v, double *out /* OUT */) SM_WARN_UNUSED;
int sm_value_as_bool(const sm_value *v, bool *out /* OUT */) SM_WARN_UNUSED;
int sm_value_as_string(const sm_value *v, const char **s /* OUT */,
                       size_t *len /* OUT */) SM_WARN_UNUSED;
int sm_value_as_json(const sm_value *v, const char **s /* OUT */,
                     size_t *len /* OUT */) SM_WARN_UNUSED;
int sm_value_as_bytes(const sm_value *v, const uint8_t **data /* OUT */,
                      size_t *len /* OUT */) SM_WARN_UNUSED;

/* 1 if [s, s+len) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool sm_utf8_valid(const void *s, size_t len);

/* ---- an owned value (e.g. a Call reply) ---- */

typedef struct sm_value_buf {
    sm_value value;   /* points into `storage_`; typename NULL when empty */
    void *storage_;   /* private: one heap block, owned by this struct */
} sm_value_buf;

#define SM_VALUE_BUF_INIT {{NULL, NULL, 0}, NULL}

/* Makes b an owned copy of v (replacing and freeing what b held). The
 * copied data is followed by a NUL byte not counted in len, so string and
 * json values may be printed with "%s". Returns SM_OK or SM_ENOMEM. */
int sm_value_buf_set(sm_value_buf *b, const sm_value *v) SM_WARN_UNUSED;
/* Frees what b owns and resets it to SM_VALUE_BUF_INIT. b may be empty. */
void sm_value_buf_cleanup(sm_value_buf *b);

#endif
