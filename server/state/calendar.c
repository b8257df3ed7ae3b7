/* server/state/calendar.c: business-hours arithmetic for SLA clocks, and the TZif loader.
 *
 * What it owns. Two halves with one contract (calendar.h):
 *   1. Pure arithmetic over a struct tq_calendar (weekly local intervals, holidays as local
 *      dates, a table of UTC-offset transitions): offset_s, business_ms, add_business_ms.
 *      Called inside apply, so it reads nothing but its arguments and allocates nothing.
 *   2. tq_calendar_tz_load / tq_calendar_tz_parse: resolve an IANA zone from a TZif file
 *      (tzfile(5), RFC 8536: v1 32-bit block, v2+ 64-bit block and POSIX-TZ footer) into the
 *      offset table. Called only OUTSIDE apply, when an operator sets business hours; the
 *      resulting table is written into the log record, so replay never reads the tz database.
 *
 * Semantics (docs/business-hours.md). An instant t (UTC ms) is business time iff its local
 * wall-clock time t + offset(t) falls inside an interval of its local weekday and its local
 * date is not a holiday. Hence a local time that never occurs (spring forward) is skipped and a
 * local hour that occurs twice (fall back) counts twice in real time.
 *
 * Method. The UTC axis is cut at the transitions into segments of constant offset; inside a
 * segment local time is UTC shifted by a constant, so business time there is the measure of
 * the local business set over a shifted range. That measure is computed in O(1) from a weekly
 * cumulative sum (whole weeks * business-ms-per-week + prefix over weekdays + partial day),
 * minus the holidays that fall inside the range (binary search, then one step per holiday).
 * add_business_ms walks segment by segment (each one measured in O(1 + holidays in it)); in
 * the segment that contains the answer it walks day by day, jumping whole weeks at once when
 * no holiday lies in between, so a 5-day target costs a handful of interval steps and a
 * one-year target a few dozen, never minute steps.
 *
 * Invariants. The arithmetic requires a calendar that passed tq_calendar_validate (intervals
 * sorted and disjoint within 0..1440, holidays strictly increasing, transitions strictly
 * increasing, |offsets| < 1 day, |at_s| bounded); it asserts the cheap parts (counts within
 * the array bounds) on every call. Instants are meaningful within +-CAL_MS_ABS_MAX (2^55 ms,
 * about 1.1 million years): business_ms clamps its arguments there and add_business_ms returns
 * INT64_MAX ("never") when the answer lies beyond it; this keeps every product below 2^63.
 *
 * The TZif parser never trusts the file: every count is checked against the bytes present
 * before anything is read, every index and offset is range-checked, and the result is built in
 * scratch space and copied into the calendar only on success (validate first, then mutate).
 */
#include "calendar.h"

#include "tq_alloc.h"
#include "tq_assert.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ==== units and limits ======================================================================= */

#define MINUTE_MS     INT64_C(60000)
#define DAY_S         INT64_C(86400)
#define DAY_MS        INT64_C(86400000)
#define DAY_MINUTES   1440
#define WEEK_DAYS     7
#define EPOCH_WEEKDAY 4 /* 1970-01-01 was a Thursday (0 = Sunday) */

/* Instants (ms) the arithmetic is defined for: 2^55 ms is ~1.1 million years, far beyond any
 * SLA, and small enough that day, week and offset arithmetic never approaches 2^63. */
#define CAL_MS_ABS_MAX   (INT64_C(1) << 55)
#define CAL_DAY_ABS_MAX  (CAL_MS_ABS_MAX / DAY_MS)
#define CAL_AT_S_ABS_MAX (CAL_MS_ABS_MAX / 1000)

/* Real zones stay within -12h..+14h (LMT offsets within +-16h); a bound below one day keeps
 * "local date" within one day of the UTC date. */
#define CAL_OFFSET_S_ABS_MAX (DAY_S - 1)

/* tz_load range: years 0001..9999, so civil-date arithmetic on it is plain int64. */
#define TZ_S_MIN INT64_C(-62135596800) /* 0001-01-01T00:00:00Z */
#define TZ_S_MAX INT64_C(253402300799) /* 9999-12-31T23:59:59Z */

/* Largest TZif file accepted: real ones are under 4 KiB (a fat Europe zone is ~2.3 KiB). */
#define TZIF_BYTES_MAX      (256 * 1024)
#define TZIF_HEADER_BYTES   44
#define TZIF_TYPES_MAX      256 /* type indices are one byte (tzcode's TZ_MAX_TYPES) */
#define TZ_FOOTER_BYTES_MAX 256 /* real footers are under 40 bytes */
#define TZ_RULE_HOURS_MAX   167 /* RFC 8536 section 3.3.1: rule times -167..167 hours */
#define TZ_OFFSET_HOURS_MAX 24  /* POSIX offsets hh 0..24 */

static const char *const weekday_names[WEEK_DAYS] = {
    "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
};

/* ==== small integer helpers =================================================================== */

static int64_t floor_div(int64_t a, int64_t b) {
    TQ_ASSERT(b > 0);
    int64_t q = a / b;
    if (a % b != 0 && a < 0) {
        q--;
    }
    return q;
}

static int64_t min_i64(int64_t a, int64_t b) {
    return a < b ? a : b;
}
static int64_t max_i64(int64_t a, int64_t b) {
    return a > b ? a : b;
}

/* Weekday (0 = Sunday) of the day `day` days after 1970-01-01. */
static unsigned weekday_of(int64_t day) {
    int64_t w = (day + EPOCH_WEEKDAY) % WEEK_DAYS;
    if (w < 0) {
        w += WEEK_DAYS;
    }
    return (unsigned)w;
}

/* Days since 1970-01-01 of the proleptic Gregorian date y-m-d (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    TQ_ASSERT(m >= 1 && m <= 12);
    TQ_ASSERT(d >= 1 && d <= 31);
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t mp = (int64_t)((m + 9) % 12);
    int64_t doy = (153 * mp + 2) / 5 + (int64_t)d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The proleptic Gregorian year containing day `day` (days since 1970-01-01). */
static int64_t year_from_days(int64_t day) {
    int64_t z = day + 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    return yoe + era * 400 + (mp >= 10 ? 1 : 0);
}

static bool is_leap_year(int64_t y) {
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned month_days(int64_t y, unsigned m) {
    static const unsigned days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    TQ_ASSERT(m >= 1 && m <= 12);
    return days[m - 1] + (m == 2 && is_leap_year(y) ? 1u : 0u);
}

/* ==== calendar basics ========================================================================= */

void tq_calendar_init_24x7(struct tq_calendar *cal) {
    TQ_ASSERT(cal != NULL);
    memset(cal, 0, sizeof(*cal));
    memcpy(cal->tz_name, "UTC", sizeof("UTC"));
    TQ_ASSERT(!tq_calendar_has_hours(cal));
}

bool tq_calendar_has_hours(const struct tq_calendar *cal) {
    TQ_ASSERT(cal != NULL);
    for (unsigned wd = 0; wd < WEEK_DAYS; wd++) {
        if (cal->interval_count[wd] > 0) {
            return true;
        }
    }
    return false;
}

static enum tq_err validate_intervals(const struct tq_calendar *cal, struct tq_error *error) {
    for (unsigned wd = 0; wd < WEEK_DAYS; wd++) {
        const char *day_name = weekday_names[wd];
        if (cal->interval_count[wd] > TQ_CALENDAR_INTERVALS_PER_DAY_MAX) {
            return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                                "weekday %u (%s): %u intervals exceed the limit of %d", wd,
                                day_name, cal->interval_count[wd],
                                TQ_CALENDAR_INTERVALS_PER_DAY_MAX);
        }
        for (unsigned i = 0; i < cal->interval_count[wd]; i++) {
            const struct tq_calendar_interval *iv = &cal->intervals[wd][i];
            if (iv->start_minute >= DAY_MINUTES) {
                return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                                    "weekday %u (%s) interval %u: start_minute %u out of range "
                                    "0..1439",
                                    wd, day_name, i, iv->start_minute);
            }
            if (iv->end_minute > DAY_MINUTES || iv->end_minute <= iv->start_minute) {
                return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                                    "weekday %u (%s) interval %u: end_minute %u must be in "
                                    "start_minute+1..1440 (start_minute %u)",
                                    wd, day_name, i, iv->end_minute, iv->start_minute);
            }
            if (i > 0 && cal->intervals[wd][i - 1].end_minute > iv->start_minute) {
                return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                                    "weekday %u (%s) interval %u: starts at minute %u, before "
                                    "interval %u ends (minute %u): intervals must be sorted and "
                                    "must not overlap",
                                    wd, day_name, i, iv->start_minute, i - 1,
                                    cal->intervals[wd][i - 1].end_minute);
            }
        }
    }
    return TQ_OK;
}

static enum tq_err validate_tz(const struct tq_calendar *cal, struct tq_error *error) {
    if (memchr(cal->tz_name, '\0', sizeof(cal->tz_name)) == NULL) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                            "tz_name is not NUL-terminated "
                            "within %d bytes",
                            TQ_CALENDAR_TZ_NAME_BYTES_MAX);
    }
    if (cal->base_offset_s < -CAL_OFFSET_S_ABS_MAX || cal->base_offset_s > CAL_OFFSET_S_ABS_MAX) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                            "base_offset_s %d out of range -86399..86399", cal->base_offset_s);
    }
    if (cal->tz_transition_count > TQ_CALENDAR_TZ_TRANSITIONS_MAX) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                            "tz_transition_count %u exceeds the limit of %d",
                            cal->tz_transition_count, TQ_CALENDAR_TZ_TRANSITIONS_MAX);
    }
    for (uint32_t i = 0; i < cal->tz_transition_count; i++) {
        const struct tq_calendar_tz_transition *tr = &cal->tz_transitions[i];
        if (tr->at_s < -CAL_AT_S_ABS_MAX || tr->at_s > CAL_AT_S_ABS_MAX) {
            return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                                "tz transition %u: at_s %lld out of range +-%lld", i,
                                (long long)tr->at_s, (long long)CAL_AT_S_ABS_MAX);
        }
        if (tr->offset_s < -CAL_OFFSET_S_ABS_MAX || tr->offset_s > CAL_OFFSET_S_ABS_MAX) {
            return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                                "tz transition %u: offset_s %d out of range -86399..86399", i,
                                tr->offset_s);
        }
        if (i > 0 && tr->at_s <= cal->tz_transitions[i - 1].at_s) {
            return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                                "tz transition %u: at_s %lld not after transition %u (%lld): "
                                "transitions must be strictly increasing",
                                i, (long long)tr->at_s, i - 1,
                                (long long)cal->tz_transitions[i - 1].at_s);
        }
    }
    return TQ_OK;
}

enum tq_err tq_calendar_validate(const struct tq_calendar *cal, struct tq_error *error) {
    TQ_ASSERT(cal != NULL);
    enum tq_err err = validate_tz(cal, error);
    if (err != TQ_OK) {
        return err;
    }
    err = validate_intervals(cal, error);
    if (err != TQ_OK) {
        return err;
    }
    if (cal->holiday_count > TQ_CALENDAR_HOLIDAYS_MAX) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                            "holiday_count %u exceeds the limit of %d", cal->holiday_count,
                            TQ_CALENDAR_HOLIDAYS_MAX);
    }
    for (uint32_t i = 1; i < cal->holiday_count; i++) {
        if (cal->holidays[i] <= cal->holidays[i - 1]) {
            return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                                "holiday %u (day %d) not after holiday %u (day %d): holidays "
                                "must be sorted and distinct",
                                i, cal->holidays[i], i - 1, cal->holidays[i - 1]);
        }
    }
    tq_error_clear(error);
    return TQ_OK;
}

/* Asserts the cheap structural part of validity: every count within its array. */
static void assert_bounds(const struct tq_calendar *cal) {
    TQ_ASSERT(cal != NULL);
    TQ_ASSERT(cal->tz_transition_count <= TQ_CALENDAR_TZ_TRANSITIONS_MAX);
    TQ_ASSERT(cal->holiday_count <= TQ_CALENDAR_HOLIDAYS_MAX);
    for (unsigned wd = 0; wd < WEEK_DAYS; wd++) {
        TQ_ASSERT(cal->interval_count[wd] <= TQ_CALENDAR_INTERVALS_PER_DAY_MAX);
    }
}

/* ==== offset segments ========================================================================= */

/* Index of the constant-offset segment containing at_ms: the number of transitions with
 * at_s * 1000 <= at_ms. Segment i runs from transition i-1 (or -inf) to transition i (or +inf).
 * Compares in seconds (at_s <= floor(at_ms / 1000)) so no product can overflow. */
static uint32_t segment_index(const struct tq_calendar *cal, int64_t at_ms) {
    int64_t at_s = floor_div(at_ms, 1000);
    uint32_t lo = 0;
    uint32_t hi = cal->tz_transition_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (cal->tz_transitions[mid].at_s <= at_s) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    TQ_ASSERT(lo <= cal->tz_transition_count);
    return lo;
}

static int64_t segment_offset_ms(const struct tq_calendar *cal, uint32_t index) {
    TQ_ASSERT(index <= cal->tz_transition_count);
    int32_t offset_s = index == 0 ? cal->base_offset_s : cal->tz_transitions[index - 1].offset_s;
    return (int64_t)offset_s * 1000;
}

int32_t tq_calendar_offset_s(const struct tq_calendar *cal, int64_t at_ms) {
    assert_bounds(cal);
    uint32_t index = segment_index(cal, at_ms);
    return index == 0 ? cal->base_offset_s : cal->tz_transitions[index - 1].offset_s;
}

/* ==== local business measure ================================================================== */

/* Per-call summary of the weekly pattern (56 additions; cheaper than any cache invalidation). */
struct week {
    int64_t day_ms[WEEK_DAYS];        /* business ms of a weekday, 0 = Sunday */
    int64_t prefix_ms[WEEK_DAYS + 1]; /* business ms of the first k days of an epoch-aligned
                                       * week (weeks start on Thursdays, like day 0) */
    int64_t week_ms;                  /* business ms of a whole week without holidays */
};

static void week_init(const struct tq_calendar *cal, struct week *wk) {
    wk->week_ms = 0;
    for (unsigned wd = 0; wd < WEEK_DAYS; wd++) {
        int64_t sum = 0;
        for (unsigned i = 0; i < cal->interval_count[wd]; i++) {
            const struct tq_calendar_interval *iv = &cal->intervals[wd][i];
            TQ_ASSERT(iv->end_minute > iv->start_minute);
            sum += (int64_t)(iv->end_minute - iv->start_minute) * MINUTE_MS;
        }
        wk->day_ms[wd] = sum;
        wk->week_ms += sum;
    }
    wk->prefix_ms[0] = 0;
    for (unsigned k = 0; k < WEEK_DAYS; k++) {
        wk->prefix_ms[k + 1] = wk->prefix_ms[k] + wk->day_ms[(k + EPOCH_WEEKDAY) % WEEK_DAYS];
    }
    TQ_ASSERT(wk->prefix_ms[WEEK_DAYS] == wk->week_ms);
}

/* Business ms of weekday wd within local time-of-day [0, r_ms), 0 <= r_ms <= DAY_MS. */
static int64_t day_partial_ms(const struct tq_calendar *cal, unsigned wd, int64_t r_ms) {
    TQ_ASSERT(r_ms >= 0 && r_ms <= DAY_MS);
    int64_t sum = 0;
    for (unsigned i = 0; i < cal->interval_count[wd]; i++) {
        int64_t s = (int64_t)cal->intervals[wd][i].start_minute * MINUTE_MS;
        int64_t e = (int64_t)cal->intervals[wd][i].end_minute * MINUTE_MS;
        if (r_ms <= s) {
            break;
        }
        sum += min_i64(r_ms, e) - s;
    }
    return sum;
}

/* Business ms (ignoring holidays) in local [0, x) counted from local midnight of day 0; signed,
 * so local_cum(b) - local_cum(a) is the measure of [a, b) for any a <= b. */
static int64_t local_cum(const struct tq_calendar *cal, const struct week *wk, int64_t x) {
    int64_t day = floor_div(x, DAY_MS);
    int64_t r = x - day * DAY_MS;
    int64_t q = floor_div(day, WEEK_DAYS);
    int64_t k = day - q * WEEK_DAYS;
    TQ_ASSERT(k >= 0 && k < WEEK_DAYS);
    return q * wk->week_ms + wk->prefix_ms[k] + day_partial_ms(cal, weekday_of(day), r);
}

/* Index of the first holiday >= day (holiday_count if none). */
static uint32_t holiday_lower_bound(const struct tq_calendar *cal, int64_t day) {
    uint32_t lo = 0;
    uint32_t hi = cal->holiday_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if ((int64_t)cal->holidays[mid] < day) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* Business ms in local [a, b), holidays excluded. O(1 + log H + holidays inside). */
static int64_t local_business_ms(const struct tq_calendar *cal, const struct week *wk, int64_t a,
                                 int64_t b) {
    TQ_ASSERT(a <= b);
    int64_t total = local_cum(cal, wk, b) - local_cum(cal, wk, a);
    int64_t day_last = floor_div(b, DAY_MS);
    for (uint32_t i = holiday_lower_bound(cal, floor_div(a, DAY_MS));
         i < cal->holiday_count && (int64_t)cal->holidays[i] <= day_last; i++) {
        int64_t h = cal->holidays[i];
        int64_t h_start = h * DAY_MS;
        int64_t lo = max_i64(a, h_start);
        int64_t hi = min_i64(b, h_start + DAY_MS);
        if (lo < hi) {
            unsigned wd = weekday_of(h);
            total -= day_partial_ms(cal, wd, hi - h_start) - day_partial_ms(cal, wd, lo - h_start);
        }
    }
    TQ_ASSERT(total >= 0);
    return total;
}

/* The earliest local x >= a with local_business_ms(a, x) == rem (rem > 0): walks day by day,
 * jumping whole weeks while no holiday lies in between. Returns INT64_MAX if x would lie
 * beyond CAL_MS_ABS_MAX. Terminates because week_ms > 0 and holidays are finite. */
static int64_t local_advance(const struct tq_calendar *cal, const struct week *wk, int64_t a,
                             int64_t rem) {
    TQ_ASSERT(rem > 0);
    TQ_ASSERT(wk->week_ms > 0);
    int64_t day = floor_div(a, DAY_MS);
    int64_t r = a - day * DAY_MS;
    uint32_t hi = holiday_lower_bound(cal, day);
    for (;;) {
        if (day > CAL_DAY_ABS_MAX) {
            return INT64_MAX;
        }
        while (hi < cal->holiday_count && (int64_t)cal->holidays[hi] < day) {
            hi++;
        }
        if (r == 0 && rem > wk->week_ms) {
            /* Jump whole weeks, leaving 0 < rem <= week_ms, but never over a holiday. */
            int64_t weeks = (rem - 1) / wk->week_ms;
            if (hi < cal->holiday_count) {
                weeks = min_i64(weeks, ((int64_t)cal->holidays[hi] - day) / WEEK_DAYS);
            }
            if (weeks > (CAL_DAY_ABS_MAX - day) / WEEK_DAYS) {
                return INT64_MAX;
            }
            day += weeks * WEEK_DAYS;
            rem -= weeks * wk->week_ms;
        }
        bool holiday = hi < cal->holiday_count && (int64_t)cal->holidays[hi] == day;
        if (!holiday) {
            unsigned wd = weekday_of(day);
            for (unsigned i = 0; i < cal->interval_count[wd]; i++) {
                int64_t s = (int64_t)cal->intervals[wd][i].start_minute * MINUTE_MS;
                int64_t e = (int64_t)cal->intervals[wd][i].end_minute * MINUTE_MS;
                if (e <= r) {
                    continue;
                }
                int64_t from = max_i64(s, r);
                if (e - from >= rem) {
                    return day * DAY_MS + from + rem;
                }
                rem -= e - from;
            }
        }
        day++;
        r = 0;
    }
}

/* ==== business arithmetic ===================================================================== */

int64_t tq_calendar_business_ms(const struct tq_calendar *cal, int64_t from_ms, int64_t to_ms) {
    assert_bounds(cal);
    from_ms = max_i64(min_i64(from_ms, CAL_MS_ABS_MAX), -CAL_MS_ABS_MAX);
    to_ms = max_i64(min_i64(to_ms, CAL_MS_ABS_MAX), -CAL_MS_ABS_MAX);
    if (to_ms <= from_ms) {
        return 0;
    }
    if (!tq_calendar_has_hours(cal)) {
        return to_ms - from_ms;
    }
    struct week wk;
    week_init(cal, &wk);
    int64_t total = 0;
    int64_t t = from_ms;
    for (uint32_t index = segment_index(cal, from_ms);; index++) {
        int64_t end =
            index < cal->tz_transition_count ? cal->tz_transitions[index].at_s * 1000 : INT64_MAX;
        TQ_ASSERT(end > t);
        int64_t hi = min_i64(to_ms, end);
        int64_t offset_ms = segment_offset_ms(cal, index);
        total += local_business_ms(cal, &wk, t + offset_ms, hi + offset_ms);
        if (hi == to_ms) {
            break;
        }
        t = hi;
    }
    TQ_ASSERT(total >= 0 && total <= to_ms - from_ms);
    return total;
}

int64_t tq_calendar_add_business_ms(const struct tq_calendar *cal, int64_t start_ms,
                                    int64_t duration_ms) {
    assert_bounds(cal);
    TQ_ASSERT(duration_ms >= 0);
    if (duration_ms == 0) {
        return start_ms;
    }
    if (!tq_calendar_has_hours(cal)) {
        return start_ms > INT64_MAX - duration_ms ? INT64_MAX : start_ms + duration_ms;
    }
    if (start_ms >= CAL_MS_ABS_MAX) {
        return INT64_MAX;
    }
    start_ms = max_i64(start_ms, -CAL_MS_ABS_MAX);
    struct week wk;
    week_init(cal, &wk);
    int64_t t = start_ms;
    int64_t rem = duration_ms;
    for (uint32_t index = segment_index(cal, start_ms);; index++) {
        int64_t offset_ms = segment_offset_ms(cal, index);
        int64_t end = INT64_MAX;
        if (index < cal->tz_transition_count) {
            /* The answer lies in this segment iff the segment holds at least rem. */
            end = cal->tz_transitions[index].at_s * 1000;
            TQ_ASSERT(end > t);
            int64_t avail = local_business_ms(cal, &wk, t + offset_ms, end + offset_ms);
            if (avail < rem) {
                rem -= avail;
                t = end;
                continue;
            }
        }
        int64_t x = local_advance(cal, &wk, t + offset_ms, rem);
        if (x == INT64_MAX) {
            return INT64_MAX;
        }
        TQ_ASSERT(x - offset_ms > t);
        TQ_ASSERT(end == INT64_MAX || x - offset_ms <= end);
        return x - offset_ms;
    }
}

/* ==== POSIX TZ footer rules ================================================================== */

/* One end of a DST rule: a date form and a local time of day (seconds, may be negative or
 * exceed 24h in v3+ files). */
struct tz_rule_date {
    char kind;        /* 'J': Jn (1..365, Feb 29 never counted); 'D': n (0..365); 'M': Mm.w.d */
    unsigned day;     /* Jn / n */
    unsigned month;   /* Mm.w.d: 1..12 */
    unsigned week;    /* 1..5, 5 = last */
    unsigned weekday; /* 0..6, 0 = Sunday */
    int64_t time_s;   /* local time of day of the change; default 02:00:00 */
};

struct tz_rule {
    int32_t std_offset_s; /* local = UTC + offset (POSIX writes the opposite sign) */
    int32_t dst_offset_s;
    bool has_dst;
    struct tz_rule_date start; /* std -> dst, at local standard time */
    struct tz_rule_date end;   /* dst -> std, at local daylight time */
};

static bool is_alpha(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}
static bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

/* Zone abbreviation: 3+ letters, or <...> with 3+ of [A-Za-z0-9+-]. */
static bool parse_tz_abbr(const char **p) {
    const char *s = *p;
    size_t n = 0;
    if (*s == '<') {
        s++;
        while (is_alpha(s[n]) || is_digit(s[n]) || s[n] == '+' || s[n] == '-') {
            n++;
        }
        if (s[n] != '>' || n < 3) {
            return false;
        }
        *p = s + n + 1;
        return true;
    }
    while (is_alpha(s[n])) {
        n++;
    }
    if (n < 3) {
        return false;
    }
    *p = s + n;
    return true;
}

/* Unsigned decimal number in [min, max]; stops reading once above max (no overflow). */
static bool parse_tz_number(const char **p, unsigned min, unsigned max, unsigned *out) {
    const char *s = *p;
    unsigned long v = 0;
    if (!is_digit(*s)) {
        return false;
    }
    while (is_digit(*s)) {
        v = v * 10 + (unsigned long)(*s - '0');
        if (v > max) {
            return false;
        }
        s++;
    }
    if (v < min) {
        return false;
    }
    *p = s;
    *out = (unsigned)v;
    return true;
}

/* [+-]h[h][:mm[:ss]] as signed seconds, hours <= hours_max. */
static bool parse_tz_hms(const char **p, unsigned hours_max, int64_t *out) {
    const char *s = *p;
    int64_t sign = 1;
    if (*s == '+' || *s == '-') {
        sign = *s == '-' ? -1 : 1;
        s++;
    }
    unsigned h = 0;
    unsigned m = 0;
    unsigned sec = 0;
    if (!parse_tz_number(&s, 0, hours_max, &h)) {
        return false;
    }
    if (*s == ':') {
        s++;
        if (!parse_tz_number(&s, 0, 59, &m)) {
            return false;
        }
        if (*s == ':') {
            s++;
            if (!parse_tz_number(&s, 0, 59, &sec)) {
                return false;
            }
        }
    }
    *p = s;
    *out = sign * ((int64_t)h * 3600 + (int64_t)m * 60 + (int64_t)sec);
    return true;
}

static bool parse_tz_rule_date(const char **p, struct tz_rule_date *date) {
    const char *s = *p;
    memset(date, 0, sizeof(*date));
    if (*s == 'J') {
        s++;
        date->kind = 'J';
        if (!parse_tz_number(&s, 1, 365, &date->day)) {
            return false;
        }
    } else if (*s == 'M') {
        s++;
        date->kind = 'M';
        if (!parse_tz_number(&s, 1, 12, &date->month) || *s++ != '.' ||
            !parse_tz_number(&s, 1, 5, &date->week) || *s++ != '.' ||
            !parse_tz_number(&s, 0, 6, &date->weekday)) {
            return false;
        }
    } else {
        date->kind = 'D';
        if (!parse_tz_number(&s, 0, 365, &date->day)) {
            return false;
        }
    }
    date->time_s = 2 * 3600;
    if (*s == '/') {
        s++;
        if (!parse_tz_hms(&s, TZ_RULE_HOURS_MAX, &date->time_s)) {
            return false;
        }
    }
    *p = s;
    return true;
}

static bool offset_in_range(int64_t offset_s) {
    return offset_s >= -CAL_OFFSET_S_ABS_MAX && offset_s <= CAL_OFFSET_S_ABS_MAX;
}

/* Parses a POSIX TZ string (a TZif footer), e.g. "CET-1CEST,M3.5.0,M10.5.0/3". A DST zone
 * without rules gets tzcode's default, the US rules "M3.2.0,M11.1.0". */
static bool parse_tz_rule(const char *s, struct tz_rule *rule) {
    memset(rule, 0, sizeof(*rule));
    int64_t posix_s = 0;
    if (!parse_tz_abbr(&s) || !parse_tz_hms(&s, TZ_OFFSET_HOURS_MAX, &posix_s)) {
        return false;
    }
    if (!offset_in_range(-posix_s)) {
        return false;
    }
    rule->std_offset_s = (int32_t)-posix_s;
    if (*s == '\0') {
        return true;
    }
    rule->has_dst = true;
    if (!parse_tz_abbr(&s)) {
        return false;
    }
    int64_t dst_offset_s = (int64_t)rule->std_offset_s + 3600;
    if (*s != ',' && *s != '\0') {
        if (!parse_tz_hms(&s, TZ_OFFSET_HOURS_MAX, &posix_s)) {
            return false;
        }
        dst_offset_s = -posix_s;
    }
    if (!offset_in_range(dst_offset_s)) {
        return false;
    }
    rule->dst_offset_s = (int32_t)dst_offset_s;
    const char *rules = ",M3.2.0,M11.1.0";
    if (*s == ',') {
        rules = s;
    } else if (*s != '\0') {
        return false;
    }
    if (*rules++ != ',' || !parse_tz_rule_date(&rules, &rule->start) || *rules++ != ',' ||
        !parse_tz_rule_date(&rules, &rule->end)) {
        return false;
    }
    return *rules == '\0';
}

/* Local date (days since 1970-01-01) on which date falls in year y. */
static int64_t tz_rule_day(const struct tz_rule_date *date, int64_t y) {
    int64_t jan1 = days_from_civil(y, 1, 1);
    switch (date->kind) {
    case 'J': return jan1 + date->day - 1 + (is_leap_year(y) && date->day >= 60 ? 1 : 0);
    case 'D': return jan1 + date->day;
    case 'M': {
        int64_t first = days_from_civil(y, date->month, 1);
        unsigned wd_first = weekday_of(first);
        int64_t day = first + (int64_t)((date->weekday + WEEK_DAYS - wd_first) % WEEK_DAYS) +
                      (int64_t)(date->week - 1) * WEEK_DAYS;
        while (day >= first + month_days(y, date->month)) {
            day -= WEEK_DAYS; /* week 5 = the last such weekday of the month */
        }
        return day;
    }
    default: TQ_UNREACHABLE();
    }
}

/* ==== transition table builder ================================================================ */

/* Consumes a chronological stream of (at_s, offset) events from -infinity and keeps what the
 * calendar needs: the offset in force at from_s, and the offset changes in (from_s, to_s]. */
struct tz_builder {
    int64_t from_s;
    int64_t to_s;
    int32_t base_offset_s;
    uint32_t count;
    bool done; /* an event after to_s was seen, or the table is full */
    struct tq_calendar_tz_transition list[TQ_CALENDAR_TZ_TRANSITIONS_MAX];
};

static void builder_event(struct tz_builder *b, int64_t at_s, int32_t offset_s) {
    if (b->done) {
        return;
    }
    if (b->count == 0 && at_s <= b->from_s) {
        b->base_offset_s = offset_s;
        return;
    }
    if (at_s > b->to_s) {
        b->done = true;
        return;
    }
    if (b->count > 0 && at_s <= b->list[b->count - 1].at_s) {
        /* Same instant (or a rule whose years interleave): the later event wins. */
        b->list[b->count - 1].offset_s = offset_s;
        int32_t before = b->count >= 2 ? b->list[b->count - 2].offset_s : b->base_offset_s;
        if (before == offset_s) {
            b->count--;
        }
        return;
    }
    int32_t current = b->count > 0 ? b->list[b->count - 1].offset_s : b->base_offset_s;
    if (offset_s == current) {
        return; /* an isdst/abbreviation-only change: no effect on local time */
    }
    if (b->count == TQ_CALENDAR_TZ_TRANSITIONS_MAX) {
        b->done = true; /* truncated, as the contract says */
        return;
    }
    b->list[b->count].at_s = at_s;
    b->list[b->count].offset_s = offset_s;
    b->count++;
}

/* Feeds the footer rule's transitions after after_s (exclusive) up to the builder's to_s. */
static void builder_footer(struct tz_builder *b, const struct tz_rule *rule, bool have_explicit,
                           int64_t after_s) {
    if (!rule->has_dst) {
        builder_event(b, have_explicit ? after_s + 1 : INT64_MIN, rule->std_offset_s);
        return;
    }
    if (!have_explicit) {
        builder_event(b, INT64_MIN, rule->std_offset_s);
    }
    int64_t first_s = have_explicit ? max_i64(after_s, b->from_s) : b->from_s;
    int64_t year_first = year_from_days(floor_div(first_s, DAY_S)) - 1;
    int64_t year_last = year_from_days(floor_div(b->to_s, DAY_S)) + 1;
    for (int64_t y = year_first; y <= year_last && !b->done; y++) {
        int64_t start_s =
            tz_rule_day(&rule->start, y) * DAY_S + rule->start.time_s - rule->std_offset_s;
        int64_t end_s = tz_rule_day(&rule->end, y) * DAY_S + rule->end.time_s - rule->dst_offset_s;
        /* Chronological; at a tie the end goes first so "DST all year" stays DST. */
        int64_t at[2] = {start_s, end_s};
        int32_t offset[2] = {rule->dst_offset_s, rule->std_offset_s};
        if (end_s <= start_s) {
            at[0] = end_s;
            at[1] = start_s;
            offset[0] = rule->std_offset_s;
            offset[1] = rule->dst_offset_s;
        }
        for (unsigned i = 0; i < 2; i++) {
            if (!have_explicit || at[i] > after_s) {
                builder_event(b, at[i], offset[i]);
            }
        }
    }
}

/* ==== TZif parsing =============================================================================
 */

struct tzif_header {
    uint8_t version; /* 0 for v1, else '2', '3', '4', ... */
    uint32_t isutcnt;
    uint32_t isstdcnt;
    uint32_t leapcnt;
    uint32_t timecnt;
    uint32_t typecnt;
    uint32_t charcnt;
};

static uint32_t read_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static int64_t read_be64(const uint8_t *p) {
    uint64_t v = (uint64_t)read_be32(p) << 32 | read_be32(p + 4);
    return (int64_t)v; /* two's complement, as RFC 8536 specifies */
}

static int64_t read_time(const uint8_t *p, unsigned time_bytes) {
    return time_bytes == 8 ? read_be64(p) : (int64_t)(int32_t)read_be32(p);
}

/* Bytes of the data block described by h with time_bytes-wide times (fits: counts < 2^32). */
static uint64_t tzif_block_bytes(const struct tzif_header *h, unsigned time_bytes) {
    return (uint64_t)h->timecnt * time_bytes + h->timecnt + (uint64_t)h->typecnt * 6 + h->charcnt +
           (uint64_t)h->leapcnt * (time_bytes + 4) + h->isstdcnt + h->isutcnt;
}

static enum tq_err tzif_header_parse(const uint8_t *data, size_t len, size_t at, const char *name,
                                     struct tzif_header *h, struct tq_error *error) {
    if (len - at < TZIF_HEADER_BYTES) {
        return tq_error_set(error, TQ_ERR_CORRUPT,
                            "time zone %s: TZif header at byte %zu "
                            "truncated (%zu bytes left)",
                            name, at, len - at);
    }
    const uint8_t *p = data + at;
    if (memcmp(p, "TZif", 4) != 0) {
        return tq_error_set(error, TQ_ERR_CORRUPT, "time zone %s: no TZif magic at byte %zu", name,
                            at);
    }
    h->version = p[4];
    if (h->version != 0 && (h->version < '2' || h->version > '9')) {
        return tq_error_set(error, TQ_ERR_CORRUPT,
                            "time zone %s: unknown TZif version byte "
                            "0x%02x",
                            name, h->version);
    }
    h->isutcnt = read_be32(p + 20);
    h->isstdcnt = read_be32(p + 24);
    h->leapcnt = read_be32(p + 28);
    h->timecnt = read_be32(p + 32);
    h->typecnt = read_be32(p + 36);
    h->charcnt = read_be32(p + 40);
    return TQ_OK;
}

/* Checks the counts and contents of the block at data[at..] (time_bytes 4 or 8) and feeds its
 * transitions to the builder. Sets *last_s to the last transition time (if timecnt > 0). */
static enum tq_err tzif_block_parse(const uint8_t *data, size_t len, size_t at,
                                    const struct tzif_header *h, unsigned time_bytes,
                                    const char *name, struct tz_builder *b, int64_t *last_s,
                                    struct tq_error *error) {
    if (h->typecnt == 0 || h->typecnt > TZIF_TYPES_MAX) {
        return tq_error_set(error, TQ_ERR_CORRUPT, "time zone %s: typecnt %u not in 1..%d", name,
                            h->typecnt, TZIF_TYPES_MAX);
    }
    if ((h->isutcnt != 0 && h->isutcnt != h->typecnt) ||
        (h->isstdcnt != 0 && h->isstdcnt != h->typecnt)) {
        return tq_error_set(error, TQ_ERR_CORRUPT,
                            "time zone %s: isutcnt %u / isstdcnt %u must "
                            "be 0 or typecnt %u",
                            name, h->isutcnt, h->isstdcnt, h->typecnt);
    }
    if (h->leapcnt != 0) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                            "time zone %s: leap-second zones "
                            "(\"right/\") are not supported",
                            name);
    }
    TQ_ASSERT(at <= len);
    if (tzif_block_bytes(h, time_bytes) > len - at) {
        return tq_error_set(error, TQ_ERR_CORRUPT,
                            "time zone %s: data block at byte %zu needs "
                            "%llu bytes, %zu present",
                            name, at, (unsigned long long)tzif_block_bytes(h, time_bytes),
                            len - at);
    }
    const uint8_t *times = data + at;
    const uint8_t *indices = times + (size_t)h->timecnt * time_bytes;
    const uint8_t *types = indices + h->timecnt;
    int32_t type_offset_s[TZIF_TYPES_MAX];
    for (uint32_t i = 0; i < h->typecnt; i++) {
        const uint8_t *tt = types + (size_t)i * 6;
        int32_t utoff = (int32_t)read_be32(tt);
        if (!offset_in_range(utoff) || tt[4] > 1 || tt[5] >= h->charcnt) {
            return tq_error_set(error, TQ_ERR_CORRUPT,
                                "time zone %s: time type %u invalid "
                                "(utoff %d, isdst %u, desigidx %u, charcnt %u)",
                                name, i, utoff, tt[4], tt[5], h->charcnt);
        }
        type_offset_s[i] = utoff;
    }
    for (uint32_t i = 0; i < h->timecnt; i++) {
        if (indices[i] >= h->typecnt) {
            return tq_error_set(error, TQ_ERR_CORRUPT,
                                "time zone %s: transition %u names type "
                                "%u of %u",
                                name, i, indices[i], h->typecnt);
        }
        if (i > 0 && read_time(times + (size_t)i * time_bytes, time_bytes) <=
                         read_time(times + (size_t)(i - 1) * time_bytes, time_bytes)) {
            return tq_error_set(error, TQ_ERR_CORRUPT,
                                "time zone %s: transition %u not after "
                                "transition %u",
                                name, i, i - 1);
        }
    }
    /* Validated; now feed the builder. Type 0 is in force before the first transition. */
    builder_event(b, INT64_MIN, type_offset_s[0]);
    for (uint32_t i = 0; i < h->timecnt; i++) {
        int64_t t = read_time(times + (size_t)i * time_bytes, time_bytes);
        builder_event(b, t, type_offset_s[indices[i]]);
        *last_s = t;
    }
    return TQ_OK;
}

/* Extracts the footer "\n<TZ string>\n" at data[at..] into buf (NUL-terminated). */
static enum tq_err tzif_footer_parse(const uint8_t *data, size_t len, size_t at, const char *name,
                                     char *buf, size_t buf_size, struct tq_error *error) {
    TQ_ASSERT(at <= len);
    TQ_ASSERT(buf_size > 0);
    if (len - at < 2 || data[at] != '\n') {
        return tq_error_set(error, TQ_ERR_CORRUPT, "time zone %s: footer missing at byte %zu", name,
                            at);
    }
    const uint8_t *s = data + at + 1;
    size_t avail = len - at - 1;
    const uint8_t *nl = memchr(s, '\n', avail);
    if (nl == NULL) {
        return tq_error_set(error, TQ_ERR_CORRUPT, "time zone %s: footer not terminated", name);
    }
    size_t n = (size_t)(nl - s);
    if (n >= buf_size || memchr(s, '\0', n) != NULL) {
        return tq_error_set(error, TQ_ERR_CORRUPT, "time zone %s: footer of %zu bytes invalid",
                            name, n);
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    return TQ_OK;
}

/* Parses the v2+ footer at data[at..] and, if it holds a rule, feeds the rule's transitions
 * after last_s (the last explicit transition, when have_explicit) to the builder. */
static enum tq_err tzif_footer_apply(const uint8_t *data, size_t len, size_t at, const char *name,
                                     bool have_explicit, int64_t last_s, struct tz_builder *b,
                                     struct tq_error *error) {
    char footer[TZ_FOOTER_BYTES_MAX];
    enum tq_err err = tzif_footer_parse(data, len, at, name, footer, sizeof(footer), error);
    if (err != TQ_OK) {
        return err;
    }
    if (footer[0] == '\0') {
        return TQ_OK; /* no rule: the last explicit offset stays in force */
    }
    struct tz_rule rule;
    if (!parse_tz_rule(footer, &rule)) {
        return tq_error_set(error, TQ_ERR_CORRUPT,
                            "time zone %s: footer TZ string \"%s\" "
                            "invalid or unsupported",
                            name, footer);
    }
    if (!have_explicit || last_s < b->to_s) {
        builder_footer(b, &rule, have_explicit, last_s);
    }
    return TQ_OK;
}

enum tq_err tq_calendar_tz_parse(struct tq_calendar *cal, const char *name, const uint8_t *data,
                                 size_t len, int64_t from_s, int64_t to_s, struct tq_error *error) {
    TQ_ASSERT(cal != NULL);
    TQ_ASSERT(name != NULL);
    TQ_ASSERT(data != NULL || len == 0);
    size_t name_len = strlen(name);
    if (name_len == 0 || name_len >= TQ_CALENDAR_TZ_NAME_BYTES_MAX) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                            "time zone name of %zu bytes (must "
                            "be 1..%d)",
                            name_len, TQ_CALENDAR_TZ_NAME_BYTES_MAX - 1);
    }
    if (from_s < TZ_S_MIN || to_s > TZ_S_MAX || from_s > to_s) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                            "time zone range [%lld, %lld] "
                            "invalid (years 0001..9999, from <= to)",
                            (long long)from_s, (long long)to_s);
    }
    struct tz_builder *b = tq_calloc(1, sizeof(*b));
    if (b == NULL) {
        return tq_error_set(error, TQ_ERR_RESOURCE_EXHAUSTED, "out of memory loading %s", name);
    }
    b->from_s = from_s;
    b->to_s = to_s;
    struct tzif_header h;
    enum tq_err err = tzif_header_parse(data, len, 0, name, &h, error);
    if (err != TQ_OK) {
        goto done;
    }
    size_t at = TZIF_HEADER_BYTES;
    unsigned time_bytes = 4;
    if (h.version != 0) {
        /* v2+: skip the v1 block (its bytes must be present) and use the 64-bit block. */
        uint64_t v1_bytes = tzif_block_bytes(&h, 4);
        if (v1_bytes > len - at) {
            err = tq_error_set(error, TQ_ERR_CORRUPT,
                               "time zone %s: v1 block needs %llu bytes, "
                               "%zu present",
                               name, (unsigned long long)v1_bytes, len - at);
            goto done;
        }
        at += (size_t)v1_bytes;
        err = tzif_header_parse(data, len, at, name, &h, error);
        if (err != TQ_OK) {
            goto done;
        }
        at += TZIF_HEADER_BYTES;
        time_bytes = 8;
    }
    int64_t last_s = INT64_MIN;
    err = tzif_block_parse(data, len, at, &h, time_bytes, name, b, &last_s, error);
    if (err != TQ_OK) {
        goto done;
    }
    if (time_bytes == 8) {
        err = tzif_footer_apply(data, len, at + (size_t)tzif_block_bytes(&h, 8), name,
                                h.timecnt > 0, last_s, b, error);
        if (err != TQ_OK) {
            goto done;
        }
    }
    /* Success: only now touch the calendar (its intervals and holidays stay as they are). */
    memset(cal->tz_name, 0, sizeof(cal->tz_name));
    memcpy(cal->tz_name, name, name_len);
    cal->base_offset_s = b->base_offset_s;
    cal->tz_transition_count = b->count;
    memcpy(cal->tz_transitions, b->list, b->count * sizeof(b->list[0]));
    tq_error_clear(error);
done:
    tq_free(b, sizeof(*b));
    return err;
}

/* ==== tz database files ======================================================================= */

static bool tz_name_char_ok(char c) {
    return is_alpha(c) || is_digit(c) || c == '/' || c == '_' || c == '+' || c == '-';
}

static enum tq_err tz_name_check(const char *tz_name, struct tq_error *error) {
    size_t n = strnlen(tz_name, TQ_CALENDAR_TZ_NAME_BYTES_MAX);
    if (n == 0 || n >= TQ_CALENDAR_TZ_NAME_BYTES_MAX) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                            "time zone name must be 1..%d "
                            "bytes",
                            TQ_CALENDAR_TZ_NAME_BYTES_MAX - 1);
    }
    if (tz_name[0] == '/' || strstr(tz_name, "..") != NULL) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                            "time zone name \"%s\" must be "
                            "relative (no leading '/', no \"..\")",
                            tz_name);
    }
    for (size_t i = 0; i < n; i++) {
        if (!tz_name_char_ok(tz_name[i])) {
            return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                                "time zone name \"%s\": "
                                "character %zu outside [A-Za-z0-9/_+-]",
                                tz_name, i);
        }
    }
    return TQ_OK;
}

/* Reads the regular file at path (at most TZIF_BYTES_MAX bytes) into *data_out: *len_out bytes
 * read, in an allocation of *cap_out bytes the caller frees with tq_free(data, cap). Errors:
 * TQ_ERR_INVALID_ARGUMENT (no such zone), TQ_ERR_CORRUPT (too big), TQ_ERR_IO. */
static enum tq_err tz_file_read(const char *path, const char *tz_name, uint8_t **data_out,
                                size_t *len_out, size_t *cap_out, struct tq_error *error) {
    enum tq_err err = TQ_OK;
    uint8_t *data = NULL;
    size_t len = 0;
    size_t cap = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR || errno == ENAMETOOLONG) {
            return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT, "unknown time zone \"%s\" (%s)",
                                tz_name, path);
        }
        return tq_error_set(error, TQ_ERR_IO, "open %s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        err = tq_error_set(error, TQ_ERR_IO, "fstat %s: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        err = tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                           "unknown time zone \"%s\" (%s is not "
                           "a zone file)",
                           tz_name, path);
        goto fail;
    }
    if (st.st_size > TZIF_BYTES_MAX) {
        err = tq_error_set(error, TQ_ERR_CORRUPT,
                           "time zone %s: %s has %lld bytes, over the "
                           "%d-byte limit",
                           tz_name, path, (long long)st.st_size, TZIF_BYTES_MAX);
        goto fail;
    }
    cap = (size_t)st.st_size + 1; /* +1 detects growth while reading */
    data = tq_alloc(cap);
    if (data == NULL) {
        err = tq_error_set(error, TQ_ERR_RESOURCE_EXHAUSTED, "out of memory reading %s", path);
        goto fail;
    }
    while (len < cap) {
        ssize_t n = read(fd, data + len, cap - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            err = tq_error_set(error, TQ_ERR_IO, "read %s: %s", path, strerror(errno));
            goto fail;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
    }
    if (len == cap) {
        err = tq_error_set(error, TQ_ERR_IO, "%s changed size while being read", path);
        goto fail;
    }
    close(fd);
    *data_out = data;
    *len_out = len;
    *cap_out = cap;
    return TQ_OK;
fail:
    if (data != NULL) {
        tq_free(data, cap);
    }
    close(fd);
    return err;
}

enum tq_err tq_calendar_tz_load(struct tq_calendar *cal, const char *tz_name, int64_t from_s,
                                int64_t to_s, struct tq_error *error) {
    TQ_ASSERT(cal != NULL);
    TQ_ASSERT(tz_name != NULL);
    enum tq_err err = tz_name_check(tz_name, error);
    if (err != TQ_OK) {
        return err;
    }
    const char *dir = getenv("TZDIR");
    if (dir == NULL || dir[0] == '\0') {
        dir = "/usr/share/zoneinfo";
    }
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/%s", dir, tz_name);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                            "time zone path too long (TZDIR "
                            "%s)",
                            dir);
    }
    uint8_t *data = NULL;
    size_t len = 0;
    size_t cap = 0;
    err = tz_file_read(path, tz_name, &data, &len, &cap, error);
    if (err != TQ_OK) {
        return err;
    }
    err = tq_calendar_tz_parse(cal, tz_name, data, len, from_s, to_s, error);
    tq_free(data, cap);
    return err;
}
