/* wire — see wire.h. */
#include "wire.h"

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
