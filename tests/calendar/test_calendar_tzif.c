/* tests/calendar/test_calendar_tzif.c: the TZif parser and POSIX TZ footer rules on
 * synthetic files (needs no /usr/share/zoneinfo).
 *
 * Goal: tq_calendar_tz_parse/tz_load turn any well-formed TZif file into the exact offset
 * table, generate footer-rule transitions exactly like glibc does, reject bad zone names
 * before touching the file system, and reject malformed bytes without crashing.
 *
 * Method: files are built in memory (tzif_writer.h) and, for tz_load, written into a
 * temporary $TZDIR. Footer rules are random POSIX TZ strings (M, J and n date forms, optional
 * /time, default and explicit DST offsets; seeded, TQ_SEED reproduces) checked against glibc:
 * setenv("TZ", rule) + tzset + localtime_r's tm_gmtoff is the oracle (allowed in tests only).
 * Corruption: every truncation, targeted bad counts, and random byte mutations.
 *
 * Invariants checked: offsets equal the oracle at every generated transition (both sides)
 * and at sampled instants; a parsed table always passes tq_calendar_validate; on any error
 * the calendar is left byte-for-byte untouched; errors are INVALID_ARGUMENT or CORRUPT.
 */
/* The rule strings built below always fit their buffers (at most ~30 bytes); gcc's -O2
 * format-truncation analysis cannot see the callers' sizes and would fail a -Werror release build.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif
#include "calendar.h"
#include "tq_assert.h"
#include "tq_test.h"
#include "tzif_writer.h"

#include <errno.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define Y2000_S INT64_C(946684800)
#define Y2100_S INT64_C(4102444800)

static uint8_t file_buf[TZIF_TEST_BYTES_MAX];
static struct tzif_spec spec;
static struct tq_calendar cal;

/* ---- glibc oracle ---------------------------------------------------------------------------- */

static void oracle_set(const char *tz) {
    TQ_CHECK(setenv("TZ", tz, 1) == 0);
    tzset();
}

static int32_t oracle_offset(int64_t t_s) {
    time_t t = (time_t)t_s;
    struct tm tm;
    TQ_CHECK(localtime_r(&t, &tm) != NULL);
    return (int32_t)tm.tm_gmtoff;
}

/* Offsets of cal equal the oracle's on [from_s, to_s]: exactly at and just before every
 * transition, at every segment midpoint, and on a scan with a random phase. */
static void check_against_oracle(const struct tq_calendar *c, int64_t from_s, int64_t to_s,
                                 uint64_t *rng, int64_t scan_step_s) {
    TQ_CHECK_EQ(c->base_offset_s, oracle_offset(from_s));
    int64_t prev_s = from_s;
    for (uint32_t i = 0; i < c->tz_transition_count; i++) {
        int64_t at = c->tz_transitions[i].at_s;
        TQ_CHECK_GT(at, from_s);
        TQ_CHECK_LE(at, to_s);
        TQ_CHECK_EQ(oracle_offset(at), c->tz_transitions[i].offset_s);
        TQ_CHECK_EQ(oracle_offset(at - 1), tq_calendar_offset_s(c, (at - 1) * 1000));
        int64_t mid = prev_s + (at - prev_s) / 2;
        TQ_CHECK_EQ(oracle_offset(mid), tq_calendar_offset_s(c, mid * 1000));
        prev_s = at;
    }
    for (int64_t t = from_s + (int64_t)tq_test_rand_below(rng, (uint64_t)scan_step_s); t <= to_s;
         t += scan_step_s) {
        if (oracle_offset(t) != tq_calendar_offset_s(c, t * 1000)) {
            fprintf(stderr, "offset mismatch at %lld (%s)\n", (long long)t, c->tz_name);
        }
        TQ_CHECK_EQ(oracle_offset(t), tq_calendar_offset_s(c, t * 1000));
    }
}

static void check_parse_ok(const char *name, size_t len, int64_t from_s, int64_t to_s) {
    struct tq_error error;
    TQ_CHECK_OK(tq_calendar_tz_parse(&cal, name, file_buf, len, from_s, to_s, &error), &error);
    TQ_CHECK_OK(tq_calendar_validate(&cal, &error), &error);
    TQ_CHECK_STR_EQ(cal.tz_name, name);
}

/* ---- footer rules vs glibc ---------------------------------------------------------------------
 */

/* A random rule date in Jan 2 .. Dec 30 (glibc decides by the UTC year of t, tzcode by the
 * local year: they agree only away from New Year) with an optional /time in 0..23:59:59.
 * *doy_out is the approximate day of the year (within a week). */
static void random_rule_date(uint64_t *rng, char *out, size_t size, int *doy_out) {
    char date[32];
    switch (tq_test_rand_below(rng, 3)) {
    case 0: {
        unsigned m = (unsigned)(2 + tq_test_rand_below(rng, 10));
        unsigned w = (unsigned)(1 + tq_test_rand_below(rng, 5));
        snprintf(date, sizeof(date), "M%u.%u.%u", m, w, (unsigned)tq_test_rand_below(rng, 7));
        *doy_out = (int)((m - 1) * 304 / 10 + (w - 1) * 7 + 3);
        break;
    }
    case 1: {
        unsigned n = (unsigned)(2 + tq_test_rand_below(rng, 362));
        snprintf(date, sizeof(date), "J%u", n);
        *doy_out = (int)n;
        break;
    }
    default: {
        unsigned n = (unsigned)(1 + tq_test_rand_below(rng, 362));
        snprintf(date, sizeof(date), "%u", n);
        *doy_out = (int)n + 1;
        break;
    }
    }
    switch (tq_test_rand_below(rng, 4)) {
    case 0: snprintf(out, size, "%s", date); break;
    case 1: snprintf(out, size, "%s/%u", date, (unsigned)tq_test_rand_below(rng, 24)); break;
    case 2:
        snprintf(out, size, "%s/%u:%02u", date, (unsigned)tq_test_rand_below(rng, 24),
                 (unsigned)tq_test_rand_below(rng, 60));
        break;
    default:
        snprintf(out, size, "%s/%02u:%02u:%02u", date, (unsigned)tq_test_rand_below(rng, 24),
                 (unsigned)tq_test_rand_below(rng, 60), (unsigned)tq_test_rand_below(rng, 60));
        break;
    }
}

static void random_posix_offset(uint64_t *rng, char *out, size_t size) {
    int hours = (int)tq_test_rand_below(rng, 25) - 12;
    unsigned minutes =
        tq_test_rand_below(rng, 3) == 0 ? (unsigned)tq_test_rand_below(rng, 4) * 15 : 0;
    if (minutes != 0) {
        snprintf(out, size, "%s%d:%02u", hours < 0 ? "-" : (tq_test_rand_below(rng, 2) ? "+" : ""),
                 hours < 0 ? -hours : hours, minutes);
    } else {
        snprintf(out, size, "%d", hours);
    }
}

static void random_rule(uint64_t *rng, char *out, size_t size) {
    char std_off[16];
    char dst_off[24] = "";
    char start[32];
    char end[32];
    random_posix_offset(rng, std_off, sizeof(std_off));
    if (tq_test_rand_below(rng, 2) == 0) {
        random_posix_offset(rng, dst_off, sizeof(dst_off));
    }
    if (tq_test_rand_below(rng, 8) == 0) {
        snprintf(out, size, "%s%s", tq_test_rand_below(rng, 2) ? "<+0530>" : "ABC", std_off);
        return;
    }
    /* Start and end at least two weeks apart, so their order is the same every year (when
     * it flips, e.g. "M5.3.3,M5.3.2", glibc's per-year reading and the chronological one
     * that tzcode and calendar.c use legitimately differ; no real zone does that). */
    int start_doy = 0;
    int end_doy = 0;
    do {
        random_rule_date(rng, start, sizeof(start), &start_doy);
        random_rule_date(rng, end, sizeof(end), &end_doy);
    } while (abs(start_doy - end_doy) < 14);
    snprintf(out, size, "%s%s%s%s,%s,%s", tq_test_rand_below(rng, 2) ? "STD" : "<-03>", std_off,
             tq_test_rand_below(rng, 2) ? "DST" : "<+04>", dst_off, start, end);
}

/* A v2+ file with no explicit transition (like a slim file for a zone defined only by its
 * rule, or any zone past its last transition): the footer decides everything. */
static void test_footer_rules(uint64_t seed) {
    uint64_t rng = seed ^ 0x9e3779b9u;
    char rule[128];
    for (int i = 0; i < 120; i++) {
        random_rule(&rng, rule, sizeof(rule));
        memset(&spec, 0, sizeof(spec));
        spec.version = (char)('2' + tq_test_rand_below(&rng, 3));
        spec.typecnt = 1;
        spec.footer = rule;
        size_t len = tzif_write(file_buf, &spec);
        int64_t from_s = Y2000_S + (int64_t)tq_test_rand_below(&rng, 40ull * 365 * 86400);
        int64_t to_s = from_s + 30 * 365 * 86400;
        check_parse_ok("Test/Rule", len, from_s, to_s);
        oracle_set(rule);
        check_against_oracle(&cal, from_s, to_s, &rng, 5 * 86400 + 3617);
        if (strchr(rule, ',') != NULL && cal.tz_transition_count < 50) {
            /* Two changes a year, unless both offsets are equal. */
            TQ_CHECK(cal.tz_transition_count == 0);
        }
    }
}

/* Explicit transitions first, then the footer after the last one (a fat file past 2037). */
static void test_explicit_then_footer(uint64_t seed) {
    uint64_t rng = seed ^ 0x7f4a7c15u;
    const char *rules[] = {
        "CET-1CEST,M3.5.0,M10.5.0/3",           "EST5EDT,M3.2.0,M11.1.0",
        "AEST-10AEDT,M10.1.0,M4.1.0/3",         "<-04>4<-03>,M9.1.6/24,M4.1.6/24",
        "IST-1GMT0,M10.5.0,M3.5.0/1",           "NZST-12NZDT,M9.5.0,M4.1.0/3",
        "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0",
    };
    for (size_t r = 0; r < TQ_ARRAY_COUNT(rules); r++) {
        oracle_set(rules[r]);
        /* Explicit transitions = the rule's own changes in 1990..2010 (found by scanning the
         * oracle hourly, then bisecting to the second), ending on a change. */
        memset(&spec, 0, sizeof(spec));
        spec.version = '3';
        spec.footer = rules[r];
        spec.typecnt = 0;
        int64_t end_s = INT64_C(1262304000); /* 2010-01-01 */
        int32_t prev = oracle_offset(INT64_C(631152000));
        spec.utoff[spec.typecnt++] = prev;
        for (int64_t t = INT64_C(631152000); t < end_s; t += 3600) {
            int32_t now = oracle_offset(t + 3600);
            if (now == prev) {
                continue;
            }
            int64_t lo = t;
            int64_t hi = t + 3600;
            while (hi - lo > 1) {
                int64_t mid = lo + (hi - lo) / 2;
                if (oracle_offset(mid) == prev) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            uint8_t type = 0;
            while (type < spec.typecnt && spec.utoff[type] != now) {
                type++;
            }
            if (type == spec.typecnt) {
                spec.utoff[spec.typecnt++] = now;
            }
            spec.times[spec.timecnt] = hi;
            spec.type_index[spec.timecnt++] = type;
            prev = now;
        }
        TQ_CHECK_GT(spec.timecnt, 30);
        size_t len = tzif_write(file_buf, &spec);
        /* Ranges before, across and after the last explicit transition. */
        int64_t ranges[][2] = {
            {INT64_C(700000000), INT64_C(1100000000)},
            {INT64_C(1100000000), INT64_C(1600000000)},
            {INT64_C(1500000000), Y2100_S},
        };
        for (size_t k = 0; k < TQ_ARRAY_COUNT(ranges); k++) {
            check_parse_ok("Test/Explicit", len, ranges[k][0], ranges[k][1]);
            check_against_oracle(&cal, ranges[k][0], ranges[k][1], &rng, 86400 * 3 + 1);
        }
    }
}

/* Known values for rule forms beyond POSIX (RFC 8536 3.3.1 extensions) and the J/n forms. */
static void test_rule_known_values(void) {
    /* America/Nuuk since 2023: DST starts at -01:00 local on the last Sunday of March.
     * 2030-03-31 is a Sunday: -01:00 at -02 on Mar 31 = Mar 30 23:00 local = Mar 31 01:00Z. */
    memset(&spec, 0, sizeof(spec));
    spec.version = '3';
    spec.typecnt = 1;
    spec.utoff[0] = -7200;
    spec.footer = "<-02>2<-01>,M3.5.0/-1,M10.5.0/0";
    size_t len = tzif_write(file_buf, &spec);
    check_parse_ok("America/Nuuk", len, INT64_C(1893456000), INT64_C(1924991999)); /* 2030 */
    TQ_CHECK_EQ(cal.base_offset_s, -7200);
    TQ_CHECK_EQ(cal.tz_transition_count, 2);
    TQ_CHECK_EQ(cal.tz_transitions[0].at_s, INT64_C(1901149200)); /* 2030-03-31T01:00:00Z */
    TQ_CHECK_EQ(cal.tz_transitions[0].offset_s, -3600);
    /* Oct 27 2030 (last Sunday) 00:00 local -01 = 01:00Z. */
    TQ_CHECK_EQ(cal.tz_transitions[1].at_s, INT64_C(1919293200));
    TQ_CHECK_EQ(cal.tz_transitions[1].offset_s, -7200);

    /* DST all year (RFC 8536 example): no transition at all, always -04. */
    spec.footer = "EST5EDT,0/0,J365/25";
    len = tzif_write(file_buf, &spec);
    check_parse_ok("Test/AllYearDst", len, Y2000_S, Y2100_S);
    TQ_CHECK_EQ(cal.base_offset_s, -4 * 3600);
    TQ_CHECK_EQ(cal.tz_transition_count, 0);

    /* Jn never counts Feb 29; n does. J60 = Mar 1, 59 = Feb 29 in 2028 (leap) and Mar 1 in
     * 2027. Changes at 02:00 local UTC+0 -> UTC+1. */
    spec.utoff[0] = 0;
    spec.footer = "AAA0BBB,J60,J300";
    len = tzif_write(file_buf, &spec);
    check_parse_ok("Test/J", len, INT64_C(1830297600), INT64_C(1830297600) + 400 * 86400);
    TQ_CHECK_EQ(cal.tz_transitions[0].at_s, INT64_C(1835488800)); /* 2028-03-01T02:00Z */
    spec.footer = "AAA0BBB,59,300";
    len = tzif_write(file_buf, &spec);
    check_parse_ok("Test/n", len, INT64_C(1830297600), INT64_C(1830297600) + 400 * 86400);
    TQ_CHECK_EQ(cal.tz_transitions[0].at_s, INT64_C(1835402400)); /* 2028-02-29T02:00Z */
    check_parse_ok("Test/n", len, INT64_C(1798761600), INT64_C(1798761600) + 200 * 86400);
    TQ_CHECK_EQ(cal.tz_transitions[0].at_s, INT64_C(1803866400)); /* 2027-03-01T02:00Z */

    /* No-DST footer after explicit transitions; and a rule-less DST zone (US default). */
    spec.footer = "<+08>-8";
    len = tzif_write(file_buf, &spec);
    check_parse_ok("Test/Fixed", len, Y2000_S, Y2100_S);
    TQ_CHECK_EQ(cal.base_offset_s, 8 * 3600);
    TQ_CHECK_EQ(cal.tz_transition_count, 0);
    spec.footer = "EST5EDT";
    len = tzif_write(file_buf, &spec);
    check_parse_ok("Test/Default", len, INT64_C(1767225600), INT64_C(1798761599)); /* 2026 */
    TQ_CHECK_EQ(cal.tz_transition_count, 2);
    TQ_CHECK_EQ(cal.tz_transitions[0].at_s, INT64_C(1772953200)); /* 2026-03-08T07:00Z */
    TQ_CHECK_EQ(cal.tz_transitions[1].at_s, INT64_C(1793512800)); /* 2026-11-01T06:00Z */

    /* A long range is truncated at the table size, and what is kept is still right. */
    spec.footer = "CET-1CEST,M3.5.0,M10.5.0/3";
    len = tzif_write(file_buf, &spec);
    check_parse_ok("Test/Long", len, Y2000_S, INT64_C(32503680000)); /* 2000..3000 */
    TQ_CHECK_EQ(cal.tz_transition_count, TQ_CALENDAR_TZ_TRANSITIONS_MAX);
    uint64_t rng = 1;
    oracle_set(spec.footer);
    check_against_oracle(&cal, Y2000_S, cal.tz_transitions[TQ_CALENDAR_TZ_TRANSITIONS_MAX - 1].at_s,
                         &rng, 86400 * 7 + 5);
}

/* v1-only files (version byte 0) and explicit tables: coalescing of isdst-only changes,
 * offsets before the first transition, ranges before/after all transitions. */
static void test_v1_and_explicit(uint64_t seed) {
    uint64_t rng = seed ^ 0x1234567u;
    for (int iter = 0; iter < 200; iter++) {
        memset(&spec, 0, sizeof(spec));
        spec.version = tq_test_rand_below(&rng, 2) ? 0 : '2';
        spec.footer = "";
        spec.typecnt = (uint32_t)(1 + tq_test_rand_below(&rng, 5));
        for (uint32_t i = 0; i < spec.typecnt; i++) {
            spec.utoff[i] = (int32_t)(((int64_t)tq_test_rand_below(&rng, 9) - 4) * 1800);
            spec.isdst[i] = (uint8_t)tq_test_rand_below(&rng, 2);
        }
        spec.timecnt = (uint32_t)tq_test_rand_below(&rng, 40);
        int64_t t = INT64_C(-1000000000) + (int64_t)tq_test_rand_below(&rng, 1000000);
        for (uint32_t i = 0; i < spec.timecnt; i++) {
            t += 1 + (int64_t)tq_test_rand_below(&rng, 100000000);
            spec.times[i] = t;
            spec.type_index[i] = (uint8_t)tq_test_rand_below(&rng, spec.typecnt);
        }
        size_t len = tzif_write(file_buf, &spec);
        int64_t from_s = INT64_C(-1500000000) + (int64_t)tq_test_rand_below(&rng, 4000000000u);
        int64_t to_s = from_s + (int64_t)tq_test_rand_below(&rng, 3000000000u);
        check_parse_ok("Test/Explicit", len, from_s, to_s);
        /* Reference: type 0 before the first transition, else the last transition's type. */
        for (int q = 0; q < 200; q++) {
            int64_t at = from_s + (int64_t)tq_test_rand_below(&rng, (uint64_t)(to_s - from_s + 1));
            if (q < (int)spec.timecnt && spec.times[q] >= from_s && spec.times[q] <= to_s) {
                at = spec.times[q] - (q % 2);
            }
            int32_t expect = spec.utoff[0];
            for (uint32_t i = 0; i < spec.timecnt && spec.times[i] <= at; i++) {
                expect = spec.utoff[spec.type_index[i]];
            }
            TQ_CHECK_EQ(tq_calendar_offset_s(&cal, at * 1000), expect);
        }
        for (uint32_t i = 0; i < cal.tz_transition_count; i++) {
            int32_t before = i == 0 ? cal.base_offset_s : cal.tz_transitions[i - 1].offset_s;
            TQ_CHECK_NE(cal.tz_transitions[i].offset_s, before); /* coalesced */
        }
    }
}

/* ---- names and $TZDIR -------------------------------------------------------------------------
 */

static void expect_load_error(const char *name, enum tq_err code, const char *needle) {
    struct tq_error error;
    struct tq_calendar before;
    memcpy(&before, &cal, sizeof(cal));
    TQ_CHECK_ERR(tq_calendar_tz_load(&cal, name, Y2000_S, Y2100_S, &error), code, &error);
    TQ_CHECK_MEM_EQ(&before, &cal, sizeof(cal));
    if (needle != NULL && strstr(error.msg, needle) == NULL) {
        fprintf(stderr, "message \"%s\" lacks \"%s\"\n", error.msg, needle);
        TQ_CHECK(false);
    }
}

static void write_file(const char *path, const uint8_t *data, size_t len) {
    FILE *f = fopen(path, "wb");
    TQ_CHECK(f != NULL);
    TQ_CHECK_EQ(fwrite(data, 1, len, f), len);
    TQ_CHECK_EQ(fclose(f), 0);
}

static void test_names_and_tzdir(void) {
    char dir[] = "/tmp/tq_calendar_tzdir.XXXXXX";
    TQ_CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof(path), "%s/Test", dir);
    TQ_CHECK_EQ(mkdir(path, 0700), 0);
    TQ_CHECK_EQ(setenv("TZDIR", dir, 1), 0);

    memset(&spec, 0, sizeof(spec));
    spec.version = '2';
    spec.typecnt = 2;
    spec.utoff[0] = 3600;
    spec.utoff[1] = 7200;
    spec.timecnt = 1;
    spec.times[0] = INT64_C(1000000000);
    spec.type_index[0] = 1;
    spec.footer = "<+02>-2";
    size_t len = tzif_write(file_buf, &spec);
    snprintf(path, sizeof(path), "%s/Test/Zone_1+x-y", dir);
    write_file(path, file_buf, len);

    struct tq_error error;
    tq_calendar_init_24x7(&cal);
    cal.interval_count[2] = 1;
    cal.intervals[2][0] = (struct tq_calendar_interval){60, 120};
    cal.holiday_count = 1;
    cal.holidays[0] = 12345;
    TQ_CHECK_OK(tq_calendar_tz_load(&cal, "Test/Zone_1+x-y", 900000000, 1100000000, &error),
                &error);
    TQ_CHECK_STR_EQ(cal.tz_name, "Test/Zone_1+x-y");
    TQ_CHECK_EQ(cal.base_offset_s, 3600);
    TQ_CHECK_EQ(cal.tz_transition_count, 1);
    TQ_CHECK_EQ(cal.tz_transitions[0].at_s, 1000000000);
    TQ_CHECK_EQ(cal.tz_transitions[0].offset_s, 7200);
    TQ_CHECK_EQ(cal.interval_count[2], 1); /* business hours untouched */
    TQ_CHECK_EQ(cal.holidays[0], 12345);

    expect_load_error("Test/Missing", TQ_ERR_INVALID_ARGUMENT, "Test/Missing");
    expect_load_error("Test", TQ_ERR_INVALID_ARGUMENT, "\"Test\"");
    expect_load_error("../Test/Zone_1+x-y", TQ_ERR_INVALID_ARGUMENT, "..");
    expect_load_error("Test/../Test/Zone_1+x-y", TQ_ERR_INVALID_ARGUMENT, "..");
    expect_load_error("/etc/passwd", TQ_ERR_INVALID_ARGUMENT, "leading '/'");
    expect_load_error("Test/Zone 1", TQ_ERR_INVALID_ARGUMENT, "character 9");
    expect_load_error("Test/Zone.1", TQ_ERR_INVALID_ARGUMENT, "[A-Za-z0-9/_+-]");
    expect_load_error("Test\\Zone", TQ_ERR_INVALID_ARGUMENT, NULL);
    expect_load_error("", TQ_ERR_INVALID_ARGUMENT, NULL);
    char long_name[80];
    memset(long_name, 'A', sizeof(long_name));
    long_name[TQ_CALENDAR_TZ_NAME_BYTES_MAX] = '\0';
    expect_load_error(long_name, TQ_ERR_INVALID_ARGUMENT, NULL);
    long_name[TQ_CALENDAR_TZ_NAME_BYTES_MAX - 1] = '\0'; /* 63 bytes: allowed, but missing */
    expect_load_error(long_name, TQ_ERR_INVALID_ARGUMENT, "unknown time zone");
    /* Bad ranges. */
    struct tq_calendar before;
    memcpy(&before, &cal, sizeof(cal));
    TQ_CHECK_ERR(tq_calendar_tz_load(&cal, "Test/Zone_1+x-y", 10, 9, &error),
                 TQ_ERR_INVALID_ARGUMENT, &error);
    TQ_CHECK_ERR(tq_calendar_tz_load(&cal, "Test/Zone_1+x-y", INT64_MIN, 9, &error),
                 TQ_ERR_INVALID_ARGUMENT, &error);
    TQ_CHECK_ERR(tq_calendar_tz_load(&cal, "Test/Zone_1+x-y", 0, INT64_MAX, &error),
                 TQ_ERR_INVALID_ARGUMENT, &error);
    TQ_CHECK_MEM_EQ(&before, &cal, sizeof(cal));
    /* A corrupt file through the loader. */
    write_file(path, file_buf, len - 1);
    expect_load_error("Test/Zone_1+x-y", TQ_ERR_CORRUPT, "footer");

    TQ_CHECK_EQ(unlink(path), 0);
    snprintf(path, sizeof(path), "%s/Test", dir);
    TQ_CHECK_EQ(rmdir(path), 0);
    TQ_CHECK_EQ(rmdir(dir), 0);
    TQ_CHECK_EQ(unsetenv("TZDIR"), 0);
}

/* ---- corrupt bytes ------------------------------------------------------------------------------
 */

/* Parses data and checks the invariants that hold for any input. Returns the code. */
static enum tq_err parse_any(const uint8_t *data, size_t len) {
    struct tq_error error;
    struct tq_calendar before;
    memcpy(&before, &cal, sizeof(cal));
    enum tq_err err = tq_calendar_tz_parse(&cal, "Test/Fuzz", data, len, Y2000_S, Y2100_S, &error);
    if (err == TQ_OK) {
        TQ_CHECK_OK(tq_calendar_validate(&cal, &error), &error);
    } else {
        TQ_CHECK(err == TQ_ERR_CORRUPT || err == TQ_ERR_INVALID_ARGUMENT);
        TQ_CHECK_EQ(error.code, err);
        TQ_CHECK(error.msg[0] != '\0');
        TQ_CHECK_MEM_EQ(&before, &cal, sizeof(cal));
    }
    return err;
}

static void expect_corrupt(const uint8_t *data, size_t len, const char *what) {
    enum tq_err err = parse_any(data, len);
    if (err != TQ_ERR_CORRUPT) {
        fprintf(stderr, "%s: expected corrupt, got %d\n", what, (int)err);
        TQ_CHECK(false);
    }
}

static void test_corrupt(uint64_t seed) {
    static uint8_t copy[TZIF_TEST_BYTES_MAX];
    static uint8_t exact[TZIF_TEST_BYTES_MAX];
    memset(&spec, 0, sizeof(spec));
    spec.version = '2';
    spec.typecnt = 3;
    spec.utoff[0] = 3208;
    spec.utoff[1] = 3600;
    spec.utoff[2] = 7200;
    spec.isdst[2] = 1;
    spec.timecnt = 60;
    for (uint32_t i = 0; i < spec.timecnt; i++) {
        spec.times[i] = INT64_C(-2422054408) + (int64_t)i * 15778800;
        spec.type_index[i] = (uint8_t)(i == 0 ? 1 : 1 + i % 2);
    }
    spec.footer = "CET-1CEST,M3.5.0,M10.5.0/3";
    size_t len = tzif_write(file_buf, &spec);
    memcpy(exact, file_buf, len);
    tq_calendar_init_24x7(&cal);
    TQ_CHECK_EQ(parse_any(exact, len), TQ_OK);

    /* Every truncation. */
    for (size_t n = 0; n < len; n++) {
        memcpy(copy, exact, n); /* an exact-size heap copy would be better for ASan; see below */
        expect_corrupt(copy, n, "truncated");
    }
    /* Each truncation again in an exactly sized heap buffer, so ASan sees any over-read. */
    for (size_t n = 0; n < len; n += 7) {
        uint8_t *heap = malloc(n == 0 ? 1 : n);
        TQ_CHECK(heap != NULL);
        memcpy(heap, exact, n);
        expect_corrupt(heap, n, "truncated (heap)");
        free(heap);
    }

    /* Targeted bad fields in the v2 header (at 44 + v1 block) and data. */
    size_t v1_block = 1 * 6 + 4 + 1 + 1; /* slim v1: one type, "T00\0", isstd, isut */
    size_t h2 = 44 + v1_block;
    struct {
        size_t at;
        uint32_t value;
        const char *what;
    } fields[] = {
        {h2 + 36, 0, "typecnt 0"},
        {h2 + 36, 300, "typecnt 300"},
        {h2 + 32, 0xffffffffu, "timecnt huge"},
        {h2 + 32, 61, "timecnt + 1"},
        {h2 + 40, 0x7fffffffu, "charcnt huge"},
        {h2 + 20, 2, "isutcnt mismatch"},
        {h2 + 24, 1, "isstdcnt mismatch"},
        {36, 0xffffffffu, "v1 typecnt huge"},
        {32, 0x10000000u, "v1 timecnt huge"},
        {h2 + 44, 0x7fffffffu, "first time after second"},
    };
    for (size_t i = 0; i < TQ_ARRAY_COUNT(fields); i++) {
        memcpy(copy, exact, len);
        tzif_put32(copy + fields[i].at, fields[i].value);
        expect_corrupt(copy, len, fields[i].what);
    }
    size_t types_at = h2 + 44 + spec.timecnt * 9;
    memcpy(copy, exact, len);
    copy[h2 + 44 + spec.timecnt * 8] = 3; /* type index out of range */
    expect_corrupt(copy, len, "type index");
    memcpy(copy, exact, len);
    tzif_put32(copy + types_at, 0x80000000u); /* utoff INT32_MIN */
    expect_corrupt(copy, len, "utoff");
    memcpy(copy, exact, len);
    copy[types_at + 4] = 2; /* isdst */
    expect_corrupt(copy, len, "isdst");
    memcpy(copy, exact, len);
    copy[types_at + 5] = 200; /* desigidx */
    expect_corrupt(copy, len, "desigidx");
    memcpy(copy, exact, len);
    copy[0] = 'X';
    expect_corrupt(copy, len, "magic");
    memcpy(copy, exact, len);
    copy[4] = '1';
    expect_corrupt(copy, len, "version");
    memcpy(copy, exact, len);
    copy[len - 2] = '\0'; /* NUL inside the footer */
    expect_corrupt(copy, len, "footer NUL");
    const char *bad_footers[] = {
        "XYZ",
        "CE-1",
        "CET-1CEST,M3.5.0",
        "CET-1CEST,M13.5.0,M10.5.0",
        "CET-1CEST,M3.6.0,M10.5.0",
        "CET-1CEST,M3.5.7,M10.5.0",
        "CET-1CEST,J0,J300",
        "CET-1CEST,J366,J300",
        "CET-1CEST,366,300",
        "CET-25",
        "CET-1CEST,M3.5.0/168,M10.5.0",
        "<AB>3",
        "<ABC3",
        "CET-1:60",
        "CET-1CEST,M3.5.0,M10.5.0x",
        "CET99999999999999999999",
    };
    for (size_t i = 0; i < TQ_ARRAY_COUNT(bad_footers); i++) {
        spec.footer = bad_footers[i];
        size_t n = tzif_write(copy, &spec);
        expect_corrupt(copy, n, bad_footers[i]);
    }
    spec.footer = "CET-1CEST,M3.5.0,M10.5.0/3";
    /* A leap-second ("right/") file is refused as unsupported, not as corrupt. */
    memcpy(copy, exact, len);
    tzif_put32(copy + h2 + 28, 1);
    memcpy(copy + len, "\0\0\0\0\0\0\0\0\0\0\0\0", 12);
    TQ_CHECK_ERR(parse_any(copy, len + 12), TQ_ERR_INVALID_ARGUMENT, NULL);

    /* Random mutations: flips, overwrites, and count fields set to small or huge values. */
    uint64_t rng = seed ^ 0xabcdef12u;
    int ok = 0;
    for (int iter = 0; iter < 30000; iter++) {
        size_t n = len;
        memcpy(copy, exact, len);
        unsigned edits = 1 + (unsigned)tq_test_rand_below(&rng, 4);
        for (unsigned e = 0; e < edits; e++) {
            size_t at = (size_t)tq_test_rand_below(&rng, n);
            switch (tq_test_rand_below(&rng, 4)) {
            case 0: copy[at] ^= (uint8_t)(1u << tq_test_rand_below(&rng, 8)); break;
            case 1: copy[at] = (uint8_t)tq_test_rand(&rng); break;
            case 2: {
                size_t field = (tq_test_rand_below(&rng, 2) ? h2 : 0) + 20 +
                               4 * (size_t)tq_test_rand_below(&rng, 6);
                tzif_put32(copy + field, (uint32_t)tq_test_rand_below(&rng, 80));
                break;
            }
            default: n = (size_t)tq_test_rand_below(&rng, n) + 1; break;
            }
        }
        ok += parse_any(copy, n) == TQ_OK;
    }
    printf("test_calendar_tzif: %d of 30000 mutated files parsed\n", ok);
}

int main(void) {
    uint64_t seed = tq_test_seed("test_calendar_tzif");
    test_names_and_tzdir();
    test_v1_and_explicit(seed);
    test_rule_known_values();
    test_footer_rules(seed);
    test_explicit_then_footer(seed);
    test_corrupt(seed);
    printf("test_calendar_tzif: ok\n");
    return 0;
}
