/* bench/hist.c: log-linear latency histogram (see hist.h for the contract).
 *
 * Bucket layout. Values v < 256 have their own bucket (index v). A larger v has its most
 * significant bit at position msb (8..40); the 7 bits below the msb select one of 128 equal
 * sub-buckets of the band [2^msb, 2^(msb+1)):
 *     shift = msb - 7, sub = v >> shift (128..255), index = 256 + (msb - 8) * 128 + (sub - 128)
 * so a bucket spans 2^shift values and its relative width is 1/sub <= 1/128. Reporting the
 * midpoint halves that: the error of any percentile is below 0.4%, inside the 1% the bench
 * promises. Invariants: sum(buckets) == count; min <= max when count > 0.
 *
 * Why not HdrHistogram itself: it is not a Debian dependency of ours, and this is 100 lines.
 */
#include "hist.h"

#include "tq_assert.h"

#include <math.h>
#include <string.h>

_Static_assert(TQ_HIST_EXACT_MAX == 256, "bucket layout assumes 8 exact bits");
_Static_assert(TQ_HIST_VALUE_MAX >> (TQ_HIST_SUB_BITS + TQ_HIST_BANDS) == 1, "bands cover max");

void tq_hist_reset(struct tq_hist *hist) {
    memset(hist, 0, sizeof(*hist));
    hist->min = UINT64_MAX;
}

uint32_t tq_hist_bucket_index(uint64_t value) {
    if (value > TQ_HIST_VALUE_MAX) value = TQ_HIST_VALUE_MAX;
    if (value < TQ_HIST_EXACT_MAX) return (uint32_t)value;
    uint32_t msb = 63u - (uint32_t)__builtin_clzll(value);
    TQ_ASSERT(msb >= 8 && msb < 8 + TQ_HIST_BANDS);
    uint32_t shift = msb - TQ_HIST_SUB_BITS;
    uint32_t sub = (uint32_t)(value >> shift);
    TQ_ASSERT(sub >= TQ_HIST_SUB_BUCKETS && sub < 2 * TQ_HIST_SUB_BUCKETS);
    return TQ_HIST_EXACT_MAX + (msb - 8) * TQ_HIST_SUB_BUCKETS + (sub - TQ_HIST_SUB_BUCKETS);
}

void tq_hist_bucket_range(uint32_t index, uint64_t *lo, uint64_t *hi) {
    TQ_ASSERT(index < TQ_HIST_BUCKETS);
    if (index < TQ_HIST_EXACT_MAX) {
        *lo = index;
        *hi = index;
        return;
    }
    uint32_t band = (index - TQ_HIST_EXACT_MAX) / TQ_HIST_SUB_BUCKETS;
    uint32_t sub = (index - TQ_HIST_EXACT_MAX) % TQ_HIST_SUB_BUCKETS + TQ_HIST_SUB_BUCKETS;
    uint32_t shift = band + 8 - TQ_HIST_SUB_BITS;
    *lo = (uint64_t)sub << shift;
    *hi = (((uint64_t)sub + 1) << shift) - 1;
}

void tq_hist_record(struct tq_hist *hist, uint64_t value) {
    hist->buckets[tq_hist_bucket_index(value)]++;
    hist->count++;
    hist->sum += (double)value;
    if (value < hist->min) hist->min = value;
    if (value > hist->max) hist->max = value;
}

void tq_hist_merge(struct tq_hist *dst, const struct tq_hist *src) {
    TQ_ASSERT(dst != src);
    if (src->count == 0) return;
    for (uint32_t i = 0; i < TQ_HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min) dst->min = src->min;
    if (src->max > dst->max) dst->max = src->max;
}

uint64_t tq_hist_percentile(const struct tq_hist *hist, double p) {
    if (hist->count == 0) return 0;
    if (p >= 100.0) return hist->max;
    TQ_ASSERT(p > 0.0);
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)hist->count);
    if (rank == 0) rank = 1;
    if (rank > hist->count) rank = hist->count;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < TQ_HIST_BUCKETS; i++) {
        seen += hist->buckets[i];
        if (seen >= rank) {
            uint64_t lo, hi;
            tq_hist_bucket_range(i, &lo, &hi);
            uint64_t mid = lo + (hi - lo) / 2;
            if (mid < hist->min) mid = hist->min;
            if (mid > hist->max) mid = hist->max;
            return mid;
        }
    }
    TQ_UNREACHABLE();
}

double tq_hist_mean(const struct tq_hist *hist) {
    return hist->count == 0 ? 0.0 : hist->sum / (double)hist->count;
}
