/* bench/hist.h: a latency histogram for ticketq-bench (HdrHistogram-like, log-linear).
 *
 * Values are unsigned integers in any unit (the bench records nanoseconds). Values below
 * TQ_HIST_EXACT_MAX are counted exactly; above, each power-of-two band is cut into
 * TQ_HIST_SUB_BUCKETS equal buckets, so a reported value is within 1/(2 * TQ_HIST_SUB_BUCKETS)
 * (0.4%) of a recorded one. The range covers 1 us .. 60 s in nanoseconds with room to spare
 * (TQ_HIST_VALUE_MAX ~ 18 minutes); larger values are clamped into the last bucket but the
 * exact maximum is kept. The struct is fixed-size: recording never allocates.
 */
#ifndef TQ_BENCH_HIST_H
#define TQ_BENCH_HIST_H

#include <stdint.h>

#define TQ_HIST_SUB_BITS    7 /* 128 buckets per band: <1% error */
#define TQ_HIST_SUB_BUCKETS (1u << TQ_HIST_SUB_BITS)
#define TQ_HIST_EXACT_MAX   (2u * TQ_HIST_SUB_BUCKETS) /* 0..255 are exact */
#define TQ_HIST_BANDS       33                         /* bands for msb 8..40 */
#define TQ_HIST_BUCKETS     (TQ_HIST_EXACT_MAX + TQ_HIST_BANDS * TQ_HIST_SUB_BUCKETS)
#define TQ_HIST_VALUE_MAX   ((1ull << 41) - 1) /* ~2199 s in ns */

struct tq_hist {
    uint64_t count;
    uint64_t min; /* exact; UINT64_MAX when empty */
    uint64_t max; /* exact; 0 when empty */
    double sum;   /* for the mean */
    uint64_t buckets[TQ_HIST_BUCKETS];
};

/* Empties the histogram (also the initialiser: a zeroed struct is NOT valid, call this). */
void tq_hist_reset(struct tq_hist *hist);

/* Counts one value. O(1), no allocation. */
void tq_hist_record(struct tq_hist *hist, uint64_t value);

/* Adds every count of src into dst (src unchanged). */
void tq_hist_merge(struct tq_hist *dst, const struct tq_hist *src);

/* The value at percentile p (0 < p <= 100): the smallest recorded value v such that at least
 * ceil(p/100 * count) values are <= v, up to the bucket resolution (the midpoint of its bucket,
 * clamped to [min, max]). p >= 100 returns the exact max. Returns 0 for an empty histogram. */
uint64_t tq_hist_percentile(const struct tq_hist *hist, double p);

/* Mean of recorded values (0 when empty). */
double tq_hist_mean(const struct tq_hist *hist);

/* Bucket index of a value and the inclusive range [lo, hi] of values a bucket holds; exposed
 * for tests. */
uint32_t tq_hist_bucket_index(uint64_t value);
void tq_hist_bucket_range(uint32_t index, uint64_t *lo, uint64_t *hi);

#endif
