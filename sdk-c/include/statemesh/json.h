/*
 * statemesh/json.h — just enough JSON for function handlers and tools:
 * a strict validator, read-only views into JSON text (look up a member,
 * iterate an array or object, read a string/number/bool), and quoting a
 * string for JSON text you build yourself.
 *
 *     // message: {"cell": "c12", "seats": 3}
 *     const char *text; size_t len;
 *     sm_json doc, cell;
 *     char buf[64];
 *     int64_t seats;
 *     if (sm_value_as_json(message, &text, &len) != SM_OK ||
 *         sm_json_parse(text, len, &doc) != SM_OK ||
 *         sm_json_get(&doc, "cell", &cell) != SM_OK ||
 *         sm_json_string(&cell, buf, sizeof buf, NULL) != SM_OK)
 *         return sm_fail(ctx, "want {\"cell\": string}");
 *     if (sm_json_get_int64(&doc, "seats", &seats) == SM_ABSENT) seats = 1;
 *
 * An `sm_json` is a *view*: it points into the caller's text (never copied,
 * never NUL-terminated) and is valid as long as that text is. Nothing in
 * this module allocates, except sm_json_double for numbers of more than 255
 * characters.
 *
 * Strictness: RFC 8259 — one value per text, no comments, no trailing
 * commas, no leading zeros, no NaN/Infinity; text must be valid UTF-8;
 * nesting deeper than SM_JSON_MAX_DEPTH is rejected. Duplicate object keys
 * are accepted (sm_json_get returns the first).
 *
 * Status codes (statemesh/value.h): SM_OK; SM_ABSENT (member not there,
 * end of iteration); SM_ETYPE (the value is of another kind); SM_EVALUE
 * (malformed JSON, number out of range, string with a lone surrogate
 * escape); SM_ENOMEM (output buffer too small); SM_EINVAL (NULL argument).
 */
#ifndef STATEMESH_JSON_H
#define STATEMESH_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "statemesh/value.h"

#define SM_JSON_MAX_DEPTH 256

typedef enum sm_json_kind {
    SM_JSON_INVALID = 0,
    SM_JSON_NULL,
    SM_JSON_FALSE,
    SM_JSON_TRUE,
    SM_JSON_NUMBER,
    SM_JSON_STRING,
    SM_JSON_ARRAY,
    SM_JSON_OBJECT
} sm_json_kind;

/* The text of one JSON value, e.g. `"a\n"` (with its quotes) or `[1, 2]`. */
typedef struct sm_json {
    const char *p;
    size_t len;
    sm_json_kind kind;
} sm_json;

/* Parses `text` (len bytes) as exactly one JSON value with optional
 * whitespace around it. On SM_OK *out views the value (without the
 * whitespace); on SM_EVALUE *out is {NULL, 0, SM_JSON_INVALID}. */
int sm_json_parse(const char *text, size_t len, sm_json *out /* OUT */) SM_WARN_UNUSED;

/* 1 if sm_json_parse would succeed. */
bool sm_json_valid(const char *text, size_t len);

/* ---- objects and arrays ---- */

typedef struct sm_json_iter {
    const char *p, *end;   /* private */
    bool object, first;    /* private */
} sm_json_iter;

/* Starts iterating the members of an object or the elements of an array.
 * Returns SM_OK or SM_ETYPE (v is neither). */
int sm_json_iter_init(sm_json_iter *it, const sm_json *v) SM_WARN_UNUSED;

/* The next element (arrays; *key untouched) or member (objects; *key views
 * the key as a SM_JSON_STRING, read it with sm_json_string or compare it
 * with sm_json_string_eq). key may be NULL. Returns SM_OK, SM_ABSENT after
 * the last one, or SM_EVALUE if the text is malformed. */
int sm_json_iter_next(sm_json_iter *it, sm_json *key /* OUT, may be NULL */,
                      sm_json *value /* OUT */) SM_WARN_UNUSED;

/* The member `key` of an object (the first one if repeated). Returns SM_OK,
 * SM_ABSENT, SM_ETYPE (obj is not an object) or SM_EVALUE. */
int sm_json_get(const sm_json *obj, const char *key, sm_json *out /* OUT */) SM_WARN_UNUSED;

/* ---- scalars ---- */

/* Unescapes a JSON string into buf (NUL-terminated UTF-8). *len (may be
 * NULL) gets the unescaped length even when buf is too small; size 0 / buf
 * NULL only measures. Returns SM_OK, SM_ETYPE, SM_EVALUE (bad escape,
 * lone surrogate, "\u0000" — which a C string cannot hold) or SM_ENOMEM
 * (size < length + 1; buf then holds a truncated prefix). */
int sm_json_string(const sm_json *v, char *buf, size_t size,
                   size_t *len /* OUT, may be NULL */) SM_WARN_UNUSED;

/* 1 if v is a string whose unescaped value equals the NUL-terminated s. */
bool sm_json_string_eq(const sm_json *v, const char *s);

/* An integer number (no fraction or exponent: "3.0" and "1e2" are SM_EVALUE)
 * within int64_t. Returns SM_OK, SM_ETYPE or SM_EVALUE. */
int sm_json_int64(const sm_json *v, int64_t *out /* OUT */) SM_WARN_UNUSED;
/* Any number, as the nearest double (SM_EVALUE if it overflows to infinity). */
int sm_json_double(const sm_json *v, double *out /* OUT */) SM_WARN_UNUSED;
int sm_json_bool(const sm_json *v, bool *out /* OUT */) SM_WARN_UNUSED;
bool sm_json_is_null(const sm_json *v);

/* Shorthands: sm_json_get + the typed reader. SM_ABSENT when the member is
 * missing (outputs untouched); a member of the wrong kind is SM_ETYPE. */
int sm_json_get_string(const sm_json *obj, const char *key, char *buf, size_t size,
                       size_t *len /* OUT, may be NULL */) SM_WARN_UNUSED;
int sm_json_get_int64(const sm_json *obj, const char *key, int64_t *out /* OUT */) SM_WARN_UNUSED;
int sm_json_get_bool(const sm_json *obj, const char *key, bool *out /* OUT */) SM_WARN_UNUSED;

/* ---- writing ---- */

/* Writes s (len bytes of UTF-8, copied as is) as a JSON string literal with
 * its quotes, escaping '"', '\\' and control characters, snprintf-style:
 * at most size - 1 bytes plus a NUL (nothing if size is 0). Returns the
 * length of the full literal (excluding the NUL), at most 6 * len + 2. */
size_t sm_json_quote(char *out, size_t size, const char *s, size_t len);

#endif
