/*
 * histo — see histo.h. The bounds are the usual Prometheus latency ladder,
 * in nanoseconds so that observing never converts to floating point.
 */
#include "histo.h"

static const int64_t bounds_ns[HISTO_BUCKETS] = {
    100000LL,     250000LL,     500000LL,     1000000LL,    /* 0.1 ms .. 1 ms */
    2500000LL,    5000000LL,    10000000LL,   25000000LL,   /* .. 25 ms */
    50000000LL,   100000000LL,  250000000LL,  500000000LL,  /* .. 0.5 s */
    1000000000LL, 2500000000LL, 5000000000LL, 10000000000LL /* .. 10 s */
};

int64_t histo_bound_ns(int i)
{
    return bounds_ns[i];
}

void histo_observe(struct histo *h, int64_t ns)
{
    int i = 0;
    if (ns < 0) ns = 0;
    while (i < HISTO_BUCKETS && ns > bounds_ns[i]) i++;
    h->counts[i]++;
    h->count++;
    h->sum_ns += ns;
}

uint64_t histo_cumulative(const struct histo *h, int i)
{
    uint64_t n = 0;
    for (int k = 0; k <= i && k <= HISTO_BUCKETS; k++) n += h->counts[k];
    return n;
}
