/*
 * address — validation of function types, ids and state names (DESIGN §1).
 *
 *   function type  "namespace/name", both parts [A-Za-z0-9_.-]+, total <= 256 bytes
 *   id             1..1024 bytes of valid UTF-8 without NUL
 *   state name     [A-Za-z0-9_.-]+, <= 128 bytes
 *
 * Each check returns NULL when valid, else a static message fit for a client
 * ("function type must be namespace/name"). Lengths are explicit: protobuf
 * strings are NUL-terminated but ids may be checked before copying.
 */
#ifndef SM_ADDRESS_H
#define SM_ADDRESS_H

#include <stddef.h>

#define ADDR_MAX_TYPE 256
#define ADDR_MAX_ID 1024
#define ADDR_MAX_STATE_NAME 128

const char *addr_check_type(const char *type, size_t len);
const char *addr_check_id(const char *id, size_t len);
const char *addr_check_state_name(const char *name, size_t len);
/* 1 if s..len is strict UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
int addr_utf8_ok(const unsigned char *s, size_t len);

/* A function-type pattern as used in config: "ns/name" or "ns/*". */
const char *addr_check_pattern(const char *pattern, size_t len);
/* 1 if `type` matches `pattern` (exact, or same namespace for "ns/*"). */
int addr_pattern_match(const char *pattern, const char *type);

#endif
