/*
 * wire — walking protobuf wire bytes without decoding them.
 *
 * protobuf-c hands strings over NUL-terminated, so a string with a NUL byte
 * inside silently shrinks to its prefix (an id "a\0b" would address "a").
 * The ingress and the endpoint compare decoded strings with their raw
 * length-delimited fields to refuse such input; this is the one walker they
 * share. Only length-delimited fields are returned; varint, 32- and 64-bit
 * fields are skipped; groups (wire types 3, 4) count as malformed.
 *
 * Also the allocator that decodes a message into an sm_arena (SDK): the
 * hot decoders (SendStream requests, function answers, embedded frames)
 * use it and drop the message with one sm_arena_reset() instead of a
 * free() per field.
 */
#ifndef SM_WIRE_H
#define SM_WIRE_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "statemesh/invoke.h"

/* The next length-delimited field of bytes p..n at or after *pos: returns 1
 * with its number and body (and advances *pos past it), 0 at the end, -1 if
 * the bytes are malformed. */
int wire_next(const uint8_t *p, size_t n, size_t *pos, uint32_t *field, const uint8_t **body,
              size_t *blen);
/* The last occurrence of length-delimited `field` (the one a decoder keeps).
 * Returns 1 found, 0 absent or malformed. */
int wire_find(const uint8_t *p, size_t n, uint32_t field, const uint8_t **body, size_t *blen);

/* Checks every field that `desc` declares as `string`, in the raw bytes
 * p..n and recursively in its sub-messages (by their descriptors): each
 * must be valid UTF-8 without a NUL byte, as proto3 requires and as every
 * conforming parser (Python, Java, Go, protobufjs) enforces. protobuf-c
 * does neither, and hands a string with a NUL over as its prefix. The walk
 * reads the wire as it came, so any conforming encoding passes (explicit
 * default values, field order, repeated occurrences). Unknown fields and
 * bytes fields are skipped. Returns 0 when clean; -1 with a message such
 * as "target.id is not valid UTF-8" in `why` (bytes p..n malformed: "the
 * message is malformed"). Nesting deeper than 32 levels is refused. */
int wire_check_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t n,
                       char *why, size_t whylen);

/* A protobuf-c allocator drawing from `a` (frees are no-ops). */
ProtobufCAllocator wire_arena_allocator(sm_arena *a);

#endif
