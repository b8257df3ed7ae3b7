/* tests/bench/test_hist.c: the latency histogram against a sorted-array oracle.
 *
 * Method: record random values (log-uniform over 1 ns .. 100 s, plus a band of small exact
 * values), sort a copy, and compare every reported percentile with the oracle's value at the
 * same rank (ceil(p/100 * n)); merge two halves and compare with the whole.
 * Invariants checked: buckets tile the value range with no gap or overlap and relative width
 * <= 1/128; percentiles are within 1% of the oracle; min/max/count are exact; merge is exact;
 * reset empties.
 */
#include "hist.h"

#include "tq_alloc.h"
#include "tq_test.h"

#include <math.h>

#define VALUES 200000u

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t random_value(uint64_t *rng) {
    if (tq_test_rand_below(rng, 10) == 0) return tq_test_rand_below(rng, 300);
    double exp10 = (double)tq_test_rand_below(rng, 1000000) / 1000000.0 * 11.0; /* 1..1e11 */
    return (uint64_t)pow(10.0, exp10);
}

static void check_layout(void) {
    uint64_t prev_hi = 0;
    for (uint32_t i = 0; i < TQ_HIST_BUCKETS; i++) {
        uint64_t lo, hi;
        tq_hist_bucket_range(i, &lo, &hi);
        TQ_CHECK_UINT_OP(lo, <=, hi);
        if (i > 0) TQ_CHECK_UEQ(lo, prev_hi + 1);
        if (lo >= TQ_HIST_EXACT_MAX) TQ_CHECK_UINT_OP((hi - lo + 1) * 128, <=, lo);
        TQ_CHECK_UEQ(tq_hist_bucket_index(lo), i);
        TQ_CHECK_UEQ(tq_hist_bucket_index(hi), i);
        prev_hi = hi;
    }
    TQ_CHECK_UEQ(prev_hi, TQ_HIST_VALUE_MAX);
    TQ_CHECK_UEQ(tq_hist_bucket_index(UINT64_MAX), TQ_HIST_BUCKETS - 1);
    /* 60 s in ns is inside the range, not clamped. */
    TQ_CHECK_UINT_OP(tq_hist_bucket_index(60000000000ull), <, TQ_HIST_BUCKETS - 1);
}

static void check_percentiles(const struct tq_hist *h, uint64_t *sorted, size_t n) {
    static const double ps[] = {0.001, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100};
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
        size_t rank = (size_t)ceil(ps[i] / 100.0 * (double)n);
        if (rank == 0) rank = 1;
        uint64_t want = sorted[rank - 1];
        uint64_t got = tq_hist_percentile(h, ps[i]);
        double err = fabs((double)got - (double)want);
        if (err > (double)want * 0.01) {
            fprintf(stderr, "p%g: got %llu want %llu\n", ps[i], (unsigned long long)got,
                    (unsigned long long)want);
        }
        TQ_CHECK(err <= (double)want * 0.01);
    }
    TQ_CHECK_UEQ(tq_hist_percentile(h, 100.0), sorted[n - 1]);
    TQ_CHECK_UEQ(h->min, sorted[0]);
    TQ_CHECK_UEQ(h->max, sorted[n - 1]);
    TQ_CHECK_UEQ(h->count, n);
}

int main(void) {
    uint64_t rng = tq_test_seed("test_bench_hist");
    check_layout();

    struct tq_hist *whole = tq_xalloc(sizeof(*whole));
    struct tq_hist *a = tq_xalloc(sizeof(*a));
    struct tq_hist *b = tq_xalloc(sizeof(*b));
    tq_hist_reset(whole);
    tq_hist_reset(a);
    tq_hist_reset(b);
    TQ_CHECK_UEQ(tq_hist_percentile(whole, 50.0), 0);
    TQ_CHECK(tq_hist_mean(whole) == 0.0);

    uint64_t *values = tq_xcalloc(VALUES, sizeof(*values));
    double sum = 0;
    for (size_t i = 0; i < VALUES; i++) {
        values[i] = random_value(&rng);
        sum += (double)values[i];
        tq_hist_record(whole, values[i]);
        tq_hist_record(i % 3 == 0 ? a : b, values[i]);
    }
    TQ_CHECK(fabs(tq_hist_mean(whole) - sum / VALUES) <= 1e-6 * (sum / VALUES));
    qsort(values, VALUES, sizeof(*values), cmp_u64);
    check_percentiles(whole, values, VALUES);

    /* Merge of the two halves is exactly the whole. */
    tq_hist_merge(a, b);
    TQ_CHECK_UEQ(a->count, whole->count);
    TQ_CHECK_UEQ(a->min, whole->min);
    TQ_CHECK_UEQ(a->max, whole->max);
    TQ_CHECK_MEM_EQ(a->buckets, whole->buckets, sizeof(a->buckets));
    check_percentiles(a, values, VALUES);

    /* A small sample: exact values below 256 are reported exactly. */
    tq_hist_reset(a);
    TQ_CHECK_UEQ(a->count, 0);
    for (uint64_t v = 1; v <= 100; v++)
        tq_hist_record(a, v);
    TQ_CHECK_UEQ(tq_hist_percentile(a, 50.0), 50);
    TQ_CHECK_UEQ(tq_hist_percentile(a, 99.0), 99);
    TQ_CHECK_UEQ(tq_hist_percentile(a, 1.0), 1);

    /* Merging an empty histogram changes nothing. */
    tq_hist_reset(b);
    tq_hist_merge(a, b);
    TQ_CHECK_UEQ(a->count, 100);
    TQ_CHECK_UEQ(a->min, 1);

    tq_free(values, VALUES * sizeof(*values));
    tq_free(whole, sizeof(*whole));
    tq_free(a, sizeof(*a));
    tq_free(b, sizeof(*b));
    printf("test_bench_hist: ok\n");
    return 0;
}
