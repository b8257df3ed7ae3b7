/* tests/calendar/test_calendar_arith.c: business-hours arithmetic (server/state/calendar.c).
 *
 * Goal: business_ms and add_business_ms are exact to the millisecond for every calendar the
 * validator accepts: several intervals per day, intervals ending at midnight, weekends,
 * holidays, and offset tables with DST-like jumps forward and back.
 *
 * Method: (1) hand-computed examples (Friday afternoon to Monday, holidays, split shifts,
 * 7- and 9-hour DST days); (2) a property test against a brute-force reference: random
 * calendars (seeded, TQ_SEED reproduces) whose intervals, offsets and transitions are whole
 * minutes, so business-ness is constant on every UTC minute; the reference classifies each
 * minute of a ~6-week window independently (its own weekday/holiday/offset logic) and sums a
 * prefix array; (3) validate() error cases; (4) extreme instants (clamping, saturation).
 *
 * Invariants checked: business_ms(a, b) equals the reference; add_business_ms(s, d) = t
 * implies business_ms(s, t) == d and t is the earliest such instant (t == s for d == 0, else
 * the millisecond before t is business time); business_ms is additive over splits;
 * add_business_ms(s, business_ms(s, t)) <= t.
 */
#include "calendar.h"
#include "tq_test.h"

#include <stdbool.h>

#define MINUTE_MS INT64_C(60000)
#define HOUR_MS   INT64_C(3600000)
#define DAY_MS    INT64_C(86400000)

/* 2026-03-02T00:00:00Z, a Monday. */
#define MON_2026_03_02_MS INT64_C(1772409600000)

static int64_t ref_floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* Reference weekday by a different route than calendar.c: 1970-01-05 was a Monday (1). */
static int ref_weekday(int64_t day) {
    int64_t w = (day - 4) % 7;
    if (w < 0) {
        w += 7;
    }
    return (int)((w + 1) % 7);
}

static void cal_mon_fri(struct tq_calendar *cal, int start_minute, int end_minute) {
    tq_calendar_init_24x7(cal);
    for (int wd = 1; wd <= 5; wd++) {
        cal->interval_count[wd] = 1;
        cal->intervals[wd][0].start_minute = (uint16_t)start_minute;
        cal->intervals[wd][0].end_minute = (uint16_t)end_minute;
    }
}

static void check_valid(const struct tq_calendar *cal) {
    struct tq_error error;
    TQ_CHECK_OK(tq_calendar_validate(cal, &error), &error);
}

/* ---- 24x7 ---------------------------------------------------------------------------------- */

static void test_24x7(void) {
    struct tq_calendar cal;
    memset(&cal, 0xa5, sizeof(cal));
    tq_calendar_init_24x7(&cal);
    check_valid(&cal);
    TQ_CHECK(!tq_calendar_has_hours(&cal));
    TQ_CHECK_STR_EQ(cal.tz_name, "UTC");
    TQ_CHECK_EQ(tq_calendar_offset_s(&cal, MON_2026_03_02_MS), 0);
    TQ_CHECK_EQ(tq_calendar_business_ms(&cal, 1000, 4500), 3500);
    TQ_CHECK_EQ(tq_calendar_business_ms(&cal, 4500, 1000), 0);
    TQ_CHECK_EQ(tq_calendar_business_ms(&cal, -7, -7), 0);
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, -5000, 12345), 7345);
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, 77, 0), 77);
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, INT64_MAX - 10, 100), INT64_MAX);
    /* Offsets alone do not make business hours: still plain arithmetic. */
    cal.base_offset_s = 3600;
    cal.tz_transition_count = 1;
    cal.tz_transitions[0].at_s = 1000;
    cal.tz_transitions[0].offset_s = 7200;
    check_valid(&cal);
    TQ_CHECK_EQ(tq_calendar_offset_s(&cal, 999999), 3600);
    TQ_CHECK_EQ(tq_calendar_offset_s(&cal, 1000000), 7200);
    TQ_CHECK_EQ(tq_calendar_business_ms(&cal, 0, 2000000), 2000000);
}

/* ---- hand-computed examples ------------------------------------------------------------------ */

static void test_examples(void) {
    struct tq_calendar cal;
    cal_mon_fri(&cal, 9 * 60, 17 * 60);
    check_valid(&cal);
    TQ_CHECK(tq_calendar_has_hours(&cal));
    int64_t mon = MON_2026_03_02_MS;
    int64_t fri = mon + 4 * DAY_MS;
    /* One full week: 5 x 8 h. */
    TQ_CHECK_EQ(tq_calendar_business_ms(&cal, mon, mon + 7 * DAY_MS), 40 * HOUR_MS);
    /* Friday 16:00 + 2 h = Monday 10:00. */
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, fri + 16 * HOUR_MS, 2 * HOUR_MS),
                mon + 7 * DAY_MS + 10 * HOUR_MS);
    /* Exactly to the end of the day stays on Friday (earliest instant). */
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, fri + 16 * HOUR_MS, HOUR_MS), fri + 17 * HOUR_MS);
    /* Starting on Saturday counts from Monday 09:00; 1 ms -> 09:00:00.001. */
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, fri + DAY_MS + 5 * HOUR_MS, 1),
                mon + 7 * DAY_MS + 9 * HOUR_MS + 1);
    /* 5 business days from Monday 09:00 is Friday 17:00; one more ms is next Monday. */
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, mon + 9 * HOUR_MS, 40 * HOUR_MS),
                fri + 17 * HOUR_MS);
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, mon + 9 * HOUR_MS, 40 * HOUR_MS + 1),
                mon + 7 * DAY_MS + 9 * HOUR_MS + 1);
    /* 52 weeks ahead (week jumps). */
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, mon + 9 * HOUR_MS, 52 * 40 * HOUR_MS),
                fri + 51 * 7 * DAY_MS + 17 * HOUR_MS);

    /* A holiday on Wednesday 2026-03-04: the week has 32 h and Tuesday 16:00 + 2 h lands on
     * Thursday 10:00. */
    cal.holiday_count = 1;
    cal.holidays[0] = (int32_t)(mon / DAY_MS + 2);
    check_valid(&cal);
    TQ_CHECK_EQ(tq_calendar_business_ms(&cal, mon, mon + 7 * DAY_MS), 32 * HOUR_MS);
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, mon + DAY_MS + 16 * HOUR_MS, 2 * HOUR_MS),
                mon + 3 * DAY_MS + 10 * HOUR_MS);
    /* Holidays inside a long span are skipped exactly once: 10 x 40 h from Monday 00:00
     * would end on the 10th Friday at 17:00; the holiday pushes it a day to the 11th Monday. */
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, mon, 10 * 40 * HOUR_MS),
                mon + 10 * 7 * DAY_MS + 17 * HOUR_MS);

    /* Split shifts, and a night shift over midnight: Mon 09-12, 13-18; Fri 22-24, Sat 00-02. */
    tq_calendar_init_24x7(&cal);
    cal.interval_count[1] = 2;
    cal.intervals[1][0] = (struct tq_calendar_interval){9 * 60, 12 * 60};
    cal.intervals[1][1] = (struct tq_calendar_interval){13 * 60, 18 * 60};
    cal.interval_count[5] = 1;
    cal.intervals[5][0] = (struct tq_calendar_interval){22 * 60, 1440};
    cal.interval_count[6] = 1;
    cal.intervals[6][0] = (struct tq_calendar_interval){0, 2 * 60};
    check_valid(&cal);
    TQ_CHECK_EQ(tq_calendar_business_ms(&cal, mon, mon + 7 * DAY_MS), 12 * HOUR_MS);
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, mon + 11 * HOUR_MS, 2 * HOUR_MS),
                mon + 14 * HOUR_MS);
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, mon + 11 * HOUR_MS, HOUR_MS), mon + 12 * HOUR_MS);
    /* Monday 17:00 + 3 h: 1 h Monday, 2 h Friday night, lands exactly at Saturday 00:00. */
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, mon + 17 * HOUR_MS, 3 * HOUR_MS),
                mon + 5 * DAY_MS);
    TQ_CHECK_EQ(
        tq_calendar_business_ms(&cal, mon + 4 * DAY_MS + 23 * HOUR_MS, mon + 5 * DAY_MS + HOUR_MS),
        2 * HOUR_MS);
    /* The same night shift at UTC+08:00 (Asia/Shanghai-like, no transitions). */
    cal.base_offset_s = 8 * 3600;
    check_valid(&cal);
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, mon + 17 * HOUR_MS - 8 * HOUR_MS, 3 * HOUR_MS),
                mon + 5 * DAY_MS - 8 * HOUR_MS);
}

/* Berlin-like table: CET (+1) with CEST (+2) from 2026-03-29 01:00Z to 2026-10-25 01:00Z. */
static void test_dst_days(void) {
    const int64_t spring_s = INT64_C(1774746000); /* 2026-03-29T01:00:00Z */
    const int64_t autumn_s = INT64_C(1792890000); /* 2026-10-25T01:00:00Z */
    struct tq_calendar cal;
    tq_calendar_init_24x7(&cal);
    cal.base_offset_s = 3600;
    cal.tz_transition_count = 2;
    cal.tz_transitions[0] = (struct tq_calendar_tz_transition){spring_s, 7200};
    cal.tz_transitions[1] = (struct tq_calendar_tz_transition){autumn_s, 3600};
    /* Sundays 00:00-06:00 local: both changes happen inside the interval. */
    cal.interval_count[0] = 1;
    cal.intervals[0][0] = (struct tq_calendar_interval){0, 6 * 60};
    check_valid(&cal);
    int64_t spring_day_local0 = spring_s * 1000 - 2 * HOUR_MS; /* 00:00 CET in UTC */
    TQ_CHECK_EQ(tq_calendar_offset_s(&cal, spring_s * 1000 - 1), 3600);
    TQ_CHECK_EQ(tq_calendar_offset_s(&cal, spring_s * 1000), 7200);
    /* 02:00-03:00 never happens: 5 real hours. */
    TQ_CHECK_EQ(
        tq_calendar_business_ms(&cal, spring_day_local0 - HOUR_MS, spring_day_local0 + DAY_MS),
        5 * HOUR_MS);
    /* 06:00 CEST = 04:00Z is the end: 2 h before the change + 3 h after. */
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, spring_day_local0, 5 * HOUR_MS),
                spring_s * 1000 + 3 * HOUR_MS);
    /* 02:00-03:00 happens twice: 7 real hours. 00:00 CEST = 22:00Z the day before. */
    int64_t autumn_day_local0 = autumn_s * 1000 - 3 * HOUR_MS;
    TQ_CHECK_EQ(
        tq_calendar_business_ms(&cal, autumn_day_local0 - HOUR_MS, autumn_day_local0 + DAY_MS),
        7 * HOUR_MS);
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, autumn_day_local0, 7 * HOUR_MS),
                autumn_s * 1000 + 4 * HOUR_MS);
    /* During the repeated hour the clock keeps counting. */
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, autumn_s * 1000 - 30 * MINUTE_MS, HOUR_MS),
                autumn_s * 1000 + 30 * MINUTE_MS);

    /* A change at 12:00 local inside 09:00-17:00: 7 and 9 real hours (the brief's example). */
    tq_calendar_init_24x7(&cal);
    int64_t day = MON_2026_03_02_MS; /* a Monday, UTC+0 before */
    cal.tz_transition_count = 2;
    cal.tz_transitions[0] = (struct tq_calendar_tz_transition){(day + 12 * HOUR_MS) / 1000, 3600};
    cal.tz_transitions[1] =
        (struct tq_calendar_tz_transition){(day + 7 * DAY_MS + 11 * HOUR_MS) / 1000, 0};
    cal.interval_count[1] = 1;
    cal.intervals[1][0] = (struct tq_calendar_interval){9 * 60, 17 * 60};
    check_valid(&cal);
    TQ_CHECK_EQ(tq_calendar_business_ms(&cal, day, day + DAY_MS), 7 * HOUR_MS);
    TQ_CHECK_EQ(tq_calendar_business_ms(&cal, day + 7 * DAY_MS, day + 8 * DAY_MS), 9 * HOUR_MS);
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, day, 7 * HOUR_MS), day + 16 * HOUR_MS);
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, day + 7 * DAY_MS, 9 * HOUR_MS),
                day + 7 * DAY_MS + 17 * HOUR_MS);
}

/* ---- validate ----------------------------------------------------------------------------------
 */

static void expect_invalid(const struct tq_calendar *cal, const char *needle) {
    struct tq_error error;
    tq_error_clear(&error);
    TQ_CHECK_ERR(tq_calendar_validate(cal, &error), TQ_ERR_INVALID_ARGUMENT, &error);
    TQ_CHECK_EQ(error.code, TQ_ERR_INVALID_ARGUMENT);
    if (strstr(error.msg, needle) == NULL) {
        fprintf(stderr, "message \"%s\" lacks \"%s\"\n", error.msg, needle);
        TQ_CHECK(false);
    }
}

static void test_validate(void) {
    struct tq_calendar cal;
    cal_mon_fri(&cal, 540, 1020);
    check_valid(&cal);

    cal.intervals[2][0].start_minute = 1440;
    cal.intervals[2][0].end_minute = 1440;
    expect_invalid(&cal, "weekday 2 (Tuesday) interval 0: start_minute 1440");
    cal_mon_fri(&cal, 540, 1020);
    cal.intervals[3][0].end_minute = 1441;
    expect_invalid(&cal, "weekday 3 (Wednesday) interval 0: end_minute 1441");
    cal_mon_fri(&cal, 540, 540);
    expect_invalid(&cal, "weekday 1 (Monday) interval 0: end_minute 540");
    cal_mon_fri(&cal, 540, 1020);
    cal.interval_count[4] = 2;
    cal.intervals[4][1] = (struct tq_calendar_interval){600, 700}; /* overlaps 540-1020 */
    expect_invalid(&cal, "weekday 4 (Thursday) interval 1: starts at minute 600");
    cal.intervals[4][1] = (struct tq_calendar_interval){100, 200}; /* unsorted */
    expect_invalid(&cal, "weekday 4 (Thursday) interval 1");
    cal.intervals[4][1] = (struct tq_calendar_interval){1020, 1440}; /* touching is fine */
    check_valid(&cal);
    cal.interval_count[6] = TQ_CALENDAR_INTERVALS_PER_DAY_MAX + 1;
    expect_invalid(&cal, "weekday 6 (Saturday): 9 intervals exceed");

    cal_mon_fri(&cal, 540, 1020);
    cal.holiday_count = 3;
    cal.holidays[0] = 20000;
    cal.holidays[1] = 20005;
    cal.holidays[2] = 20005;
    expect_invalid(&cal, "holiday 2 (day 20005) not after holiday 1");
    cal.holidays[2] = 20001;
    expect_invalid(&cal, "holiday 2 (day 20001)");
    cal.holidays[2] = 20006;
    check_valid(&cal);
    cal.holiday_count = TQ_CALENDAR_HOLIDAYS_MAX + 1;
    expect_invalid(&cal, "holiday_count 367 exceeds");

    cal_mon_fri(&cal, 540, 1020);
    cal.tz_transition_count = 2;
    cal.tz_transitions[0] = (struct tq_calendar_tz_transition){1000, 3600};
    cal.tz_transitions[1] = (struct tq_calendar_tz_transition){1000, 0};
    expect_invalid(&cal, "tz transition 1: at_s 1000 not after transition 0");
    cal.tz_transitions[1].at_s = 999;
    expect_invalid(&cal, "strictly increasing");
    cal.tz_transitions[1].at_s = 2000;
    check_valid(&cal);
    cal.tz_transitions[1].offset_s = 86400;
    expect_invalid(&cal, "tz transition 1: offset_s 86400 out of range");
    cal.tz_transitions[1].offset_s = 0;
    cal.tz_transitions[0].at_s = INT64_MIN;
    expect_invalid(&cal, "tz transition 0: at_s");
    cal.tz_transitions[0].at_s = 1000;
    cal.base_offset_s = -90000;
    expect_invalid(&cal, "base_offset_s -90000");
    cal.base_offset_s = 0;
    cal.tz_transition_count = TQ_CALENDAR_TZ_TRANSITIONS_MAX + 1;
    expect_invalid(&cal, "tz_transition_count 513 exceeds");
    cal.tz_transition_count = 0;
    memset(cal.tz_name, 'x', sizeof(cal.tz_name));
    expect_invalid(&cal, "tz_name is not NUL-terminated");
}

/* ---- property test against a brute-force reference ----------------------------------------------
 */

#define WINDOW_MINUTES (42 * 1440) /* six weeks: long enough for week jumps and holidays */

struct reference {
    int64_t window_ms; /* first instant of the window (minute-aligned) */
    bool business[WINDOW_MINUTES];
    int64_t prefix[WINDOW_MINUTES + 1]; /* business minutes before minute m */
};

static int32_t ref_offset_s(const struct tq_calendar *cal, int64_t t_ms) {
    int32_t offset_s = cal->base_offset_s;
    for (uint32_t i = 0; i < cal->tz_transition_count; i++) {
        if (cal->tz_transitions[i].at_s * 1000 <= t_ms) {
            offset_s = cal->tz_transitions[i].offset_s;
        }
    }
    return offset_s;
}

static bool ref_is_business(const struct tq_calendar *cal, int64_t t_ms) {
    int64_t local = t_ms + (int64_t)ref_offset_s(cal, t_ms) * 1000;
    int64_t day = ref_floor_div(local, DAY_MS);
    int64_t minute = (local - day * DAY_MS) / MINUTE_MS;
    for (uint32_t i = 0; i < cal->holiday_count; i++) {
        if (cal->holidays[i] == day) {
            return false;
        }
    }
    int wd = ref_weekday(day);
    for (unsigned i = 0; i < cal->interval_count[wd]; i++) {
        if (minute >= cal->intervals[wd][i].start_minute &&
            minute < cal->intervals[wd][i].end_minute) {
            return true;
        }
    }
    return false;
}

static void ref_build(struct reference *ref, const struct tq_calendar *cal, int64_t window_ms) {
    ref->window_ms = window_ms;
    ref->prefix[0] = 0;
    for (int64_t m = 0; m < WINDOW_MINUTES; m++) {
        ref->business[m] = ref_is_business(cal, window_ms + m * MINUTE_MS);
        ref->prefix[m + 1] = ref->prefix[m] + (ref->business[m] ? 1 : 0);
    }
}

/* Business ms in [window start, x), x inside the window. */
static int64_t ref_cum(const struct reference *ref, int64_t x) {
    int64_t rel = x - ref->window_ms;
    TQ_CHECK(rel >= 0 && rel <= WINDOW_MINUTES * MINUTE_MS);
    int64_t m = rel / MINUTE_MS;
    int64_t sum = ref->prefix[m] * MINUTE_MS;
    if (m < WINDOW_MINUTES && ref->business[m]) {
        sum += rel - m * MINUTE_MS;
    }
    return sum;
}

static int64_t ref_business(const struct reference *ref, int64_t a, int64_t b) {
    return b <= a ? 0 : ref_cum(ref, b) - ref_cum(ref, a);
}

static void random_calendar(struct tq_calendar *cal, uint64_t *rng, int64_t window_ms) {
    tq_calendar_init_24x7(cal);
    bool sparse = tq_test_rand_below(rng, 4) == 0;
    do {
        for (int wd = 0; wd < 7; wd++) {
            unsigned n = (unsigned)tq_test_rand_below(rng, sparse ? 2 : 5);
            if (sparse && tq_test_rand_below(rng, 3) != 0) {
                n = 0;
            }
            /* n sorted, disjoint intervals from 2n distinct cut points (touching allowed). */
            uint16_t prev_end = 0;
            unsigned count = 0;
            for (unsigned i = 0; i < n && prev_end < 1440; i++) {
                unsigned room = 1440u - prev_end;
                uint16_t start = (uint16_t)(prev_end + (i == 0 && tq_test_rand_below(rng, 4) == 0
                                                            ? 0
                                                            : tq_test_rand_below(rng, room)));
                if (start >= 1440) {
                    break;
                }
                uint16_t end = (uint16_t)(start + 1 + tq_test_rand_below(rng, 1440u - start));
                if (tq_test_rand_below(rng, 5) == 0) {
                    end = 1440;
                }
                cal->intervals[wd][count++] = (struct tq_calendar_interval){start, end};
                prev_end = end;
            }
            cal->interval_count[wd] = (uint8_t)count;
        }
    } while (!tq_calendar_has_hours(cal));

    int64_t window_day0 = window_ms / DAY_MS;
    unsigned holidays = (unsigned)tq_test_rand_below(rng, 8);
    int32_t day = (int32_t)(window_day0 - 2);
    for (unsigned i = 0; i < holidays; i++) {
        day += (int32_t)(1 + tq_test_rand_below(rng, 9));
        cal->holidays[cal->holiday_count++] = day;
    }

    /* Offsets in quarter hours within -12h..+14h; transitions minute-aligned, some before the
     * window, some DST-like (+-1h), some arbitrary jumps. */
    cal->base_offset_s = (int32_t)(((int64_t)tq_test_rand_below(rng, 105) - 48) * 900);
    unsigned transitions = (unsigned)tq_test_rand_below(rng, 9);
    int64_t at_s = window_ms / 1000 - 3 * 86400;
    int32_t offset_s = cal->base_offset_s;
    for (unsigned i = 0; i < transitions; i++) {
        at_s += 60 * (int64_t)(1 + tq_test_rand_below(rng, 10 * 1440));
        if (tq_test_rand_below(rng, 2) == 0) {
            offset_s = offset_s + (offset_s > 0 ? -3600 : 3600);
        } else {
            offset_s = (int32_t)(((int64_t)tq_test_rand_below(rng, 105) - 48) * 900);
        }
        cal->tz_transitions[cal->tz_transition_count++] =
            (struct tq_calendar_tz_transition){at_s, offset_s};
    }
}

static int64_t rand_instant(uint64_t *rng, int64_t lo, int64_t hi) {
    TQ_CHECK(hi >= lo);
    /* Mostly arbitrary ms, sometimes on a minute or hour boundary (the edge cases). */
    int64_t t = lo + (int64_t)tq_test_rand_below(rng, (uint64_t)(hi - lo + 1));
    uint64_t k = tq_test_rand_below(rng, 4);
    if (k == 0) {
        t -= ((t % MINUTE_MS) + MINUTE_MS) % MINUTE_MS;
    } else if (k == 1) {
        t -= ((t % HOUR_MS) + HOUR_MS) % HOUR_MS;
    }
    return t < lo ? lo : t;
}

static void test_property(uint64_t seed) {
    static struct reference ref;
    uint64_t rng = seed;
    const int calendars = 160;
    const int queries = 150;
    for (int c = 0; c < calendars; c++) {
        /* A window between 1960 and 2060, starting at a random minute. */
        int64_t window_ms = (int64_t)tq_test_rand_below(&rng, 100ull * 365 * 1440) * MINUTE_MS -
                            INT64_C(10) * 365 * DAY_MS;
        struct tq_calendar cal;
        random_calendar(&cal, &rng, window_ms);
        check_valid(&cal);
        ref_build(&ref, &cal, window_ms);
        int64_t window_end = window_ms + WINDOW_MINUTES * MINUTE_MS;
        for (int q = 0; q < queries; q++) {
            int64_t a = rand_instant(&rng, window_ms, window_end);
            int64_t b = rand_instant(&rng, window_ms, window_end);
            TQ_CHECK_EQ(tq_calendar_business_ms(&cal, a, b), ref_business(&ref, a, b));
            if (a > b) {
                int64_t tmp = a;
                a = b;
                b = tmp;
            }
            /* Additive over a split point. */
            int64_t m = rand_instant(&rng, a, b);
            TQ_CHECK_EQ(tq_calendar_business_ms(&cal, a, m) + tq_calendar_business_ms(&cal, m, b),
                        tq_calendar_business_ms(&cal, a, b));

            /* add_business: any duration whose answer lies in the window. */
            int64_t start = rand_instant(&rng, window_ms, window_ms + 21 * DAY_MS);
            int64_t avail = ref_business(&ref, start, window_end);
            int64_t d = (int64_t)tq_test_rand_below(&rng, (uint64_t)avail + 1);
            if (q % 5 == 0) {
                d = (int64_t)tq_test_rand_below(&rng, 4 * HOUR_MS);
                if (d > avail) {
                    d = avail;
                }
            }
            int64_t t = tq_calendar_add_business_ms(&cal, start, d);
            TQ_CHECK_GE(t, start);
            TQ_CHECK_LE(t, window_end);
            TQ_CHECK_EQ(ref_business(&ref, start, t), d);
            if (d == 0) {
                TQ_CHECK_EQ(t, start);
            } else {
                TQ_CHECK_EQ(ref_business(&ref, t - 1, t), 1); /* earliest */
            }
            /* Round trip from the other side. */
            TQ_CHECK_LE(tq_calendar_add_business_ms(&cal, a, tq_calendar_business_ms(&cal, a, b)),
                        b);
        }
    }
}

/* Long spans (years) on realistic calendars: self-consistency across week jumps, holidays and
 * many transitions, where the brute force would be too slow. */
static void test_long_spans(uint64_t seed) {
    uint64_t rng = seed ^ 0x5bd1e995u;
    for (int c = 0; c < 40; c++) {
        struct tq_calendar cal;
        cal_mon_fri(&cal, 9 * 60, 17 * 60 + (int)tq_test_rand_below(&rng, 300));
        cal.interval_count[6] = (uint8_t)tq_test_rand_below(&rng, 2);
        cal.intervals[6][0] = (struct tq_calendar_interval){10 * 60, 14 * 60};
        int64_t base_day = 20000 + (int64_t)tq_test_rand_below(&rng, 3000);
        /* ~10 holidays a year for 10 years, DST-like changes twice a year. */
        int32_t day = (int32_t)base_day;
        while (cal.holiday_count < 100) {
            day += (int32_t)(1 + tq_test_rand_below(&rng, 70));
            cal.holidays[cal.holiday_count++] = day;
        }
        cal.base_offset_s = -5 * 3600;
        for (int y = 0; y < 10; y++) {
            int64_t year_s = (base_day + y * 365) * 86400;
            cal.tz_transitions[cal.tz_transition_count++] =
                (struct tq_calendar_tz_transition){year_s + 70 * 86400 + 7 * 3600, -4 * 3600};
            cal.tz_transitions[cal.tz_transition_count++] =
                (struct tq_calendar_tz_transition){year_s + 300 * 86400 + 6 * 3600, -5 * 3600};
        }
        check_valid(&cal);
        int64_t start = base_day * DAY_MS + (int64_t)tq_test_rand_below(&rng, 400 * DAY_MS);
        for (int q = 0; q < 40; q++) {
            int64_t d = (int64_t)tq_test_rand_below(&rng, 2000 * HOUR_MS) + 1;
            int64_t t = tq_calendar_add_business_ms(&cal, start, d);
            TQ_CHECK_EQ(tq_calendar_business_ms(&cal, start, t), d);
            TQ_CHECK_EQ(tq_calendar_business_ms(&cal, t - 1, t), 1);
            int64_t m = rand_instant(&rng, start, t);
            TQ_CHECK_EQ(
                tq_calendar_business_ms(&cal, start, m) + tq_calendar_business_ms(&cal, m, t), d);
            /* Chaining: adding in two steps lands on the same instant. */
            int64_t d1 = (int64_t)tq_test_rand_below(&rng, (uint64_t)d) + 1;
            int64_t t1 = tq_calendar_add_business_ms(&cal, start, d1);
            TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, t1, d - d1), t);
        }
    }
}

/* Extreme instants: clamped or saturated, never UB (UBSan runs this). */
static void test_extremes(void) {
    struct tq_calendar cal;
    cal_mon_fri(&cal, 9 * 60, 10 * 60);
    cal.base_offset_s = 86399;
    check_valid(&cal);
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, INT64_MAX - 5, 1), INT64_MAX);
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, 0, INT64_MAX), INT64_MAX);
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, INT64_MIN, INT64_MAX), INT64_MAX);
    int64_t t = tq_calendar_add_business_ms(&cal, INT64_MIN, 1);
    TQ_CHECK_LT(t, -(INT64_C(1) << 54));
    TQ_CHECK_GT(tq_calendar_business_ms(&cal, INT64_MIN, INT64_MAX), 0);
    TQ_CHECK_EQ(tq_calendar_business_ms(&cal, INT64_MAX - 1, INT64_MAX), 0);
    TQ_CHECK_EQ(tq_calendar_offset_s(&cal, INT64_MIN), 86399);
    /* A holiday-heavy calendar: 366 consecutive holidays are skipped. */
    cal.holiday_count = TQ_CALENDAR_HOLIDAYS_MAX;
    for (int i = 0; i < TQ_CALENDAR_HOLIDAYS_MAX; i++) {
        cal.holidays[i] = 20000 + i;
    }
    cal.base_offset_s = 0;
    check_valid(&cal);
    t = tq_calendar_add_business_ms(&cal, 20000 * DAY_MS, HOUR_MS);
    TQ_CHECK_GE(t, (20000 + TQ_CALENDAR_HOLIDAYS_MAX) * DAY_MS);
    TQ_CHECK_LT(t, (20000 + TQ_CALENDAR_HOLIDAYS_MAX + 7) * DAY_MS);
    TQ_CHECK_EQ(tq_calendar_business_ms(&cal, 20000 * DAY_MS, t), HOUR_MS);
}

int main(void) {
    uint64_t seed = tq_test_seed("test_calendar_arith");
    test_24x7();
    test_examples();
    test_dst_days();
    test_validate();
    test_property(seed);
    test_long_spans(seed);
    test_extremes();
    printf("test_calendar_arith: ok\n");
    return 0;
}
