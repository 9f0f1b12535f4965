/* timer — see timer.h. */
#include "timer.h"

#include <stdlib.h>
#include <time.h>

int64_t timer_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void timer_init(struct timer *t, void (*fn)(void *arg), void *arg)
{
    t->due_ms = 0;
    t->fn = fn;
    t->arg = arg;
    t->heap_index = SIZE_MAX;
}

void timer_heap_cleanup(struct timer_heap *h)
{
    for (size_t i = 0; i < h->len; i++) h->items[i]->heap_index = SIZE_MAX;
    free(h->items);
    h->items = NULL;
    h->len = h->cap = 0;
}

int timer_armed(const struct timer *t) { return t->heap_index != SIZE_MAX; }

static void place(struct timer_heap *h, size_t i, struct timer *t)
{
    h->items[i] = t;
    t->heap_index = i;
}

static void sift_up(struct timer_heap *h, size_t i)
{
    struct timer *t = h->items[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h->items[parent]->due_ms <= t->due_ms) break;
        place(h, i, h->items[parent]);
        i = parent;
    }
    place(h, i, t);
}

static void sift_down(struct timer_heap *h, size_t i)
{
    struct timer *t = h->items[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        int64_t best = t->due_ms;
        if (l < h->len && h->items[l]->due_ms < best) { m = l; best = h->items[l]->due_ms; }
        if (r < h->len && h->items[r]->due_ms < best) m = r;
        if (m == i) break;
        place(h, i, h->items[m]);
        i = m;
    }
    place(h, i, t);
}

void timer_stop(struct timer_heap *h, struct timer *t)
{
    size_t i = t->heap_index;
    struct timer *last;
    if (i == SIZE_MAX) return;
    t->heap_index = SIZE_MAX;
    last = h->items[--h->len];
    if (i == h->len) return;
    place(h, i, last);
    sift_up(h, i);
    sift_down(h, last->heap_index);
}

void timer_start(struct timer_heap *h, struct timer *t, int64_t due_ms)
{
    timer_stop(h, t);
    if (h->len == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct timer **items = realloc(h->items, cap * sizeof *items);
        if (!items) abort();
        h->items = items;
        h->cap = cap;
    }
    t->due_ms = due_ms;
    place(h, h->len++, t);
    sift_up(h, t->heap_index);
}

int64_t timer_next_due(const struct timer_heap *h)
{
    return h->len ? h->items[0]->due_ms : INT64_MAX;
}

int timer_run_due(struct timer_heap *h, int64_t now_ms)
{
    int n = 0;
    while (h->len && h->items[0]->due_ms <= now_ms) {
        struct timer *t = h->items[0];
        timer_stop(h, t);
        t->fn(t->arg);
        n++;
    }
    return n;
}
