/*
 * arena — bump allocator for batch answers; see statemesh/invoke.h.
 *
 * A list of chunks, newest first. Allocations are carved from the newest
 * chunk; when it is full a new chunk of max(CHUNK, request) bytes is added.
 * Reset frees every chunk but the first-created one, which is reused, so a
 * server that resets after each batch usually never calls malloc here.
 */
#include "statemesh/invoke.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK ((size_t)64 * 1024)
#define ALIGN 16

struct chunk {
    struct chunk *next;
    size_t size;    /* usable bytes after the header */
    size_t used;
    _Alignas(ALIGN) unsigned char mem[];
};

struct sm_arena {
    struct chunk *head;   /* newest */
    struct chunk *base;   /* the oldest chunk, kept by reset */
    size_t total;         /* bytes of all chunks, for the cap */
    size_t handed;        /* bytes handed out since reset */
};

static struct chunk *chunk_new(size_t size)
{
    struct chunk *c = malloc(sizeof *c + size);
    if (!c) return NULL;
    c->next = NULL;
    c->size = size;
    c->used = 0;
    return c;
}

sm_arena *sm_arena_create(void)
{
    sm_arena *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->base = a->head = chunk_new(CHUNK);
    if (!a->head) {
        free(a);
        return NULL;
    }
    a->total = CHUNK;
    return a;
}

void *sm_arena_alloc(sm_arena *a, size_t n)
{
    struct chunk *c = a->head;
    size_t need = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    void *p;

    if (n == 0) need = ALIGN;
    if (need < n) return NULL; /* overflow */
    if (c->size - c->used < need) {
        size_t size = need > CHUNK ? need : CHUNK;
        if (size > SM_ARENA_CAP || a->total > SM_ARENA_CAP - size) return NULL;
        c = chunk_new(size);
        if (!c) return NULL;
        c->next = a->head;
        a->head = c;
        a->total += size;
    }
    p = c->mem + c->used;
    c->used += need;
    a->handed += need;
    return p;
}

char *sm_arena_strdup(sm_arena *a, const char *s)
{
    return sm_arena_memdup(a, s, strlen(s) + 1);
}

void *sm_arena_memdup(sm_arena *a, const void *p, size_t n)
{
    void *q = sm_arena_alloc(a, n);
    if (q && n) memcpy(q, p, n);
    return q;
}

void sm_arena_reset(sm_arena *a)
{
    struct chunk *c = a->head;
    while (c != a->base) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = a->base;
    a->base->used = 0;
    a->total = a->base->size;
    a->handed = 0;
}

size_t sm_arena_used(const sm_arena *a)
{
    return a->handed;
}

void sm_arena_destroy(sm_arena **pa)
{
    if (!pa || !*pa) return;
    sm_arena_reset(*pa);
    free((*pa)->base);
    free(*pa);
    *pa = NULL;
}
