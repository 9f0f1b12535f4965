/*
 * valjson — typed values as JSON members: the one encoding of values in
 * the CLI's JSON (`statemesh send --stdin` lines, `--json` output) and in
 * savepoint JSON lines (spjsonl.h).
 *
 *   {"typename":"statemesh/int64","value":42}
 *   {"typename":"statemesh/float64","value":0.1}     also "NaN", "Infinity", "-Infinity"
 *   {"typename":"statemesh/bool","value":true}
 *   {"typename":"statemesh/string","value":"héllo"}
 *   {"typename":"statemesh/json","value":{"a":[1,2]}}  the JSON text itself
 *   {"typename":"statemesh/bytes","hex":"00ff"}        bytes and user types
 *
 * Writing picks "value" whenever the bytes are a valid encoding of their
 * built-in type (a string without NUL, JSON that parses) and "hex"
 * (lowercase) otherwise, so every value is written and reads back to the
 * same bytes. Reading ("value" or hex text) takes the typename's kind.
 * No state; nothing allocates except where said.
 */
#ifndef SM_VALJSON_H
#define SM_VALJSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "statemesh/json.h"
#include "statemesh/value.h"

enum vkind { VK_STRING, VK_INT64, VK_FLOAT64, VK_BOOL, VK_JSON, VK_BYTES, VK_USER };

struct vtype {
    enum vkind kind;
    const char *typename;  /* the full typename (points at the name for user types) */
};

/* Resolves a typename or a short name (string, int64, float64, bool, json,
 * bytes). A user typename is NS/NAME outside "statemesh/". Returns 0, or -1
 * for an unknown one. */
int valjson_resolve_type(const char *name, struct vtype *out /* OUT */);

/* Decodes len hex digits (either case) into out (len / 2 bytes). Returns 0
 * or -1 (odd length, not a hex digit). */
int valjson_unhex(const char *text, size_t len, uint8_t *out /* OUT */);

/* Decodes the JSON value v as a value of vt into out, which must hold at
 * least v->len + SM_SCALAR_SIZE bytes; *outlen gets the length. `hex`: v
 * is a string of hex digits (bytes as they are, for any kind); else v is
 * read by vt's kind (a JSON value is copied as its text). Returns 0, or -1
 * with a sentence in why ("must be a 64-bit integer for typename T"). */
int valjson_decode(const struct vtype *vt, const sm_json *v, bool hex, uint8_t *out /* OUT */,
                   size_t *outlen /* OUT */, char *why, size_t whylen);

/* s[0..len) as a JSON string literal (control characters escaped, other
 * bytes as they are). */
void valjson_put_string(FILE *f, const char *s, size_t len);
/* A double in the shortest %g form that reads back as the same double. */
void valjson_put_double(FILE *f, double d);
/* The members "typename":…,"value":… (or "hex":…) of v, without braces.
 * v->typename NULL: "typename":null,"value":null. `oneline`: newlines
 * inside a JSON value become spaces (they can only be blanks). */
void valjson_put(FILE *f, const sm_value *v, bool oneline);

#endif
