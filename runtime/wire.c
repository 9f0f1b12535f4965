/* wire — see wire.h. */
#include "wire.h"

#include <stdio.h>
#include <string.h>

#include "address.h"

#define WIRE_MAX_DEPTH 32

/* Reads a varint at *i; returns 0 if the bytes end inside it. */
static int varint(const uint8_t *p, size_t n, size_t *i, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; *i < n && shift < 64; shift += 7) {
        uint8_t b = p[(*i)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return 1;
    }
    return 0;
}

int wire_next(const uint8_t *p, size_t n, size_t *pos, uint32_t *field, const uint8_t **body,
              size_t *blen)
{
    size_t i = *pos;
    while (i < n) {
        uint64_t key, v;
        if (!varint(p, n, &i, &key)) return -1;
        switch (key & 7) {
        case 0:
            if (!varint(p, n, &i, &v)) return -1;
            break;
        case 1:
            if (n - i < 8) return -1;
            i += 8;
            break;
        case 5:
            if (n - i < 4) return -1;
            i += 4;
            break;
        case 2:
            if (!varint(p, n, &i, &v) || v > n - i) return -1;
            *field = (uint32_t)(key >> 3);
            *body = p + i;
            *blen = (size_t)v;
            *pos = i + (size_t)v;
            return 1;
        default:
            return -1;
        }
    }
    *pos = i;
    return 0;
}

int wire_find(const uint8_t *p, size_t n, uint32_t field, const uint8_t **body, size_t *blen)
{
    size_t pos = 0;
    uint32_t f;
    const uint8_t *b;
    size_t bl;
    int rc, found = 0;

    while ((rc = wire_next(p, n, &pos, &f, &b, &bl)) == 1)
        if (f == field) {
            *body = b;
            *blen = bl;
            found = 1;
        }
    return rc == 0 && found;
}

/* Appends ".name" (or "name" at the start) to path[0..at), truncated to
 * pathlen like snprintf would; no formatting on this per-field path. */
static void path_add(char *path, size_t at, size_t pathlen, const char *name)
{
    size_t room = pathlen - at - 1, k = 0;
    if (at && k < room) path[at + k++] = '.';
    for (; *name && k < room; name++) path[at + k++] = *name;
    path[at + k] = '\0';
}

/* path: the dotted field names leading here, for the message. */
static int check_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t n,
                         int depth, char *path, size_t pathlen, char *why, size_t whylen)
{
    size_t pos = 0, at = strlen(path);
    uint32_t field;
    const uint8_t *body;
    size_t blen;
    int rc;

    if (depth > WIRE_MAX_DEPTH) {
        snprintf(why, whylen, "%s is nested more than %d levels deep", at ? path : "the message",
                 WIRE_MAX_DEPTH);
        return -1;
    }
    while ((rc = wire_next(p, n, &pos, &field, &body, &blen)) == 1) {
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(desc, field);
        if (!f) continue;
        if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
        path_add(path, at, pathlen, f->name);
        if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            if (check_strings(f->descriptor, body, blen, depth + 1, path, pathlen, why, whylen))
                return -1;
        } else if (memchr(body, 0, blen)) {
            snprintf(why, whylen, "%s contains a NUL byte", path);
            return -1;
        } else if (!addr_utf8_ok(body, blen)) {
            snprintf(why, whylen, "%s is not valid UTF-8", path);
            return -1;
        }
        path[at] = 0;
    }
    if (rc < 0) {
        snprintf(why, whylen, "%s is malformed", at ? path : "the message");
        return -1;
    }
    return 0;
}

int wire_check_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t n,
                       char *why, size_t whylen)
{
    char path[256] = "";
    return check_strings(desc, p, n, 0, path, sizeof path, why, whylen);
}

static void *arena_alloc(void *arena, size_t size)
{
    return sm_arena_alloc(arena, size);
}

static void arena_free(void *arena, void *p)
{
    (void)arena;
    (void)p;
}

ProtobufCAllocator wire_arena_allocator(sm_arena *a)
{
    ProtobufCAllocator pa = {arena_alloc, arena_free, a};
    return pa;
}
