/*
 * histo — fixed-bucket latency histograms for the metrics endpoint.
 *
 * A histogram is a plain struct of counters with one fixed set of bucket
 * bounds (HISTO_BOUNDS_NS, 100 µs .. 10 s, roughly 1-2.5-5 per decade),
 * shared by every histogram so that dashboards can compare them. Observing
 * costs a short scan over 16 integers and three increments: no allocation,
 * no lock, no floating point. Buckets are kept per bucket (not cumulative);
 * the renderer (metrics.c) makes them cumulative, as Prometheus wants.
 *
 * Invariants: counts[i] is the number of observations v with
 * bound[i-1] < v <= bound[i] (counts[HISTO_BUCKETS]: above the last bound);
 * count == sum of counts[]; sum_ns is the sum of the observed values.
 *
 * Threading: a histogram belongs to one thread (the event loop). Another
 * thread reads a copy that the owner made (metrics.c publishes under a mutex).
 */
#ifndef SM_HISTO_H
#define SM_HISTO_H

#include <stdint.h>

#define HISTO_BUCKETS 16      /* finite bounds; one more counter for +Inf */

struct histo {
    uint64_t counts[HISTO_BUCKETS + 1];
    uint64_t count;
    int64_t sum_ns;
};

/* The upper bound of bucket i (0 <= i < HISTO_BUCKETS), in nanoseconds. */
int64_t histo_bound_ns(int i);
/* Records one observation; negative values count as 0. */
void histo_observe(struct histo *h, int64_t ns);
/* The number of observations <= bucket i's bound (i == HISTO_BUCKETS: all). */
uint64_t histo_cumulative(const struct histo *h, int i);

#endif
