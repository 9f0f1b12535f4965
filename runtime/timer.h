/*
 * timer — one-shot timers for the event loop (a binary min-heap).
 *
 * A `struct timer` is embedded in its owner; timer_start() on an armed timer
 * re-arms it. The loop asks timer_next_due() for its wait deadline and calls
 * timer_run_due() after every wake-up. Callbacks may start or stop any timer,
 * including their own. O(log n) start/stop, O(1) next.
 */
#ifndef SM_TIMER_H
#define SM_TIMER_H

#include <stddef.h>
#include <stdint.h>

struct timer {
    int64_t due_ms;
    void (*fn)(void *arg);
    void *arg;
    size_t heap_index;          /* SIZE_MAX when not armed */
};

struct timer_heap {
    struct timer **items;
    size_t len, cap;
};

void timer_init(struct timer *t, void (*fn)(void *arg), void *arg);
void timer_heap_cleanup(struct timer_heap *h);
void timer_start(struct timer_heap *h, struct timer *t, int64_t due_ms);
void timer_stop(struct timer_heap *h, struct timer *t);
int timer_armed(const struct timer *t);
/* Due time of the earliest timer, INT64_MAX when none. */
int64_t timer_next_due(const struct timer_heap *h);
/* Wall-clock milliseconds since the Unix epoch (durable due times, TTLs). */
int64_t timer_wall_ms(void);
/* Runs every timer due at `now_ms`; returns how many ran. */
int timer_run_due(struct timer_heap *h, int64_t now_ms);

#endif
