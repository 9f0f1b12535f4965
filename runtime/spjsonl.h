/*
 * spjsonl — JSON lines of addresses' application data (docs/savepoints.md
 * "JSON lines"), shared by `statemesh savepoint export --jsonl`,
 * `statemesh savepoint from-jsonl` and `statemesh bootstrap`.
 *
 * One line is one address (Statemesh__V1__AddressData, admin.proto):
 *
 *   {"type":"T","id":"I",
 *    "state":{"NAME":{"typename":"…","value":…,"expires_at_ms":N}, …},
 *    "messages":[{"typename":"…","value":…,"caller":{"type":"…","id":"…"}}, …],
 *    "delayed":[{"due_at_ms":N,"typename":"…","value":…,
 *                "target":{"type":"…","id":"…"},"token":"…","from_ingress":true}, …]}
 *
 * Values are written as `statemesh send --stdin` reads them: "value" for
 * the built-in scalar, string and JSON types, "hex" (lowercase) for bytes
 * and user types. Optional members (expires_at_ms 0, caller, target,
 * token "", from_ingress false, empty state/messages/delayed) are left
 * out when writing and default when reading. Writing is canonical: members
 * in the order above, state names in byte order, no blanks, so the same
 * data always gives the same line.
 *
 * Reading checks everything the runtime would refuse (address.h rules for
 * type and id, state names, typenames, UTF-8 without NUL) and unknown or
 * duplicated members, and names what is wrong ("state \"n\": value is not
 * an int64"). Lines are at most SPJ_MAX_LINE bytes.
 *
 * Errors: functions return 0 or -1 with a sentence in `err`.
 */
#ifndef SM_SPJSONL_H
#define SM_SPJSONL_H

#include <stddef.h>
#include <stdio.h>

#include "statemesh/v1/admin.pb-c.h"

#define SPJ_MAX_LINE ((size_t)64 << 20)

/* Parses one line (without its '\n') into a newly allocated *out; free it
 * with spj_free(). */
int spj_parse_line(const char *line, size_t len, Statemesh__V1__AddressData **out /* OUT */,
                   char *err, size_t errlen) __attribute__((warn_unused_result));
void spj_free(Statemesh__V1__AddressData *d);

/* Writes d as one canonical line ending in '\n'. Returns 0, or -1 when f
 * fails (errno). */
int spj_write_line(FILE *f, const Statemesh__V1__AddressData *d)
    __attribute__((warn_unused_result));

#endif
