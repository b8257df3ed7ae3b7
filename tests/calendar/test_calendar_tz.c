/* tests/calendar/test_calendar_tz.c: tq_calendar_tz_load on the machine's tz database.
 *
 * Goal: real IANA zones load into offset tables that agree with glibc, including after the
 * last explicit transition of "fat" files (2037), where the footer rule takes over; business
 * hours on real DST days come out at 7 and 9 hours, weekends and the southern hemisphere work.
 *
 * Method: load each zone for 2000..2100 (and narrower ranges), and compare with glibc
 * (TZ=":zone" + tzset + localtime_r's tm_gmtoff; an oracle allowed in tests only) at every
 * transition (both sides), at every segment midpoint and on a scan with a random phase (seeded,
 * TQ_SEED reproduces). Known instants are pinned (Berlin 2026-03-29T01:00:00Z, ...).
 * Needs /usr/share/zoneinfo (or $TZDIR): exits 77 (skip) without it.
 *
 * Invariants checked: table == glibc on the loaded range; base_offset_s is the offset at
 * from_s; the table passes tq_calendar_validate; business arithmetic on loaded tables matches
 * hand-computed wall-clock expectations.
 */
#include "calendar.h"
#include "tq_assert.h"
#include "tq_test.h"

#include <ftw.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

#define HOUR_MS INT64_C(3600000)
#define DAY_MS  INT64_C(86400000)
#define Y2000_S INT64_C(946684800)
#define Y2100_S INT64_C(4102444800)

static struct tq_calendar cal;

static void load(const char *zone, int64_t from_s, int64_t to_s) {
    struct tq_error error;
    TQ_CHECK_OK(tq_calendar_tz_load(&cal, zone, from_s, to_s, &error), &error);
    TQ_CHECK_OK(tq_calendar_validate(&cal, &error), &error);
    TQ_CHECK_STR_EQ(cal.tz_name, zone);
    char tz[80];
    snprintf(tz, sizeof(tz), ":%s", zone);
    TQ_CHECK_EQ(setenv("TZ", tz, 1), 0);
    tzset();
}

static int32_t oracle_offset(int64_t t_s) {
    time_t t = (time_t)t_s;
    struct tm tm;
    TQ_CHECK(localtime_r(&t, &tm) != NULL);
    return (int32_t)tm.tm_gmtoff;
}

static void check_against_oracle(int64_t from_s, int64_t to_s, uint64_t *rng) {
    TQ_CHECK_EQ(cal.base_offset_s, oracle_offset(from_s));
    int64_t prev_s = from_s;
    for (uint32_t i = 0; i < cal.tz_transition_count; i++) {
        int64_t at = cal.tz_transitions[i].at_s;
        TQ_CHECK_GT(at, from_s);
        TQ_CHECK_LE(at, to_s);
        TQ_CHECK_EQ(oracle_offset(at), cal.tz_transitions[i].offset_s);
        TQ_CHECK_EQ(oracle_offset(at - 1), tq_calendar_offset_s(&cal, (at - 1) * 1000));
        int64_t mid = prev_s + (at - prev_s) / 2;
        TQ_CHECK_EQ(oracle_offset(mid), tq_calendar_offset_s(&cal, mid * 1000));
        prev_s = at;
    }
    const int64_t step_s = 86400 + 3607; /* drifts through every hour of the day */
    for (int64_t t = from_s + (int64_t)tq_test_rand_below(rng, step_s); t <= to_s; t += step_s) {
        TQ_CHECK_EQ(oracle_offset(t), tq_calendar_offset_s(&cal, t * 1000));
    }
}

static void test_zones_vs_glibc(uint64_t seed) {
    uint64_t rng = seed;
    const char *zones[] = {
        "Europe/Berlin",     "America/New_York",    "Asia/Shanghai",
        "Australia/Sydney",  "Australia/Lord_Howe", "Europe/Dublin",
        "America/Sao_Paulo", "Asia/Kolkata",        "Asia/Kathmandu",
        "Pacific/Chatham",   "America/St_Johns",    "Antarctica/Troll",
        "America/Santiago",  "Africa/Casablanca",   "UTC",
        "Etc/GMT+5",
    };
    for (size_t i = 0; i < TQ_ARRAY_COUNT(zones); i++) {
        load(zones[i], Y2000_S, Y2100_S);
        check_against_oracle(Y2000_S, Y2100_S, &rng);
        /* A random narrower window, possibly entirely in the footer's years. */
        int64_t from_s = Y2000_S + (int64_t)tq_test_rand_below(&rng, 80ull * 365 * 86400);
        int64_t to_s = from_s + (int64_t)tq_test_rand_below(&rng, 20ull * 365 * 86400);
        load(zones[i], from_s, to_s);
        check_against_oracle(from_s, to_s, &rng);
    }
    /* Far beyond any explicit transition (fat files stop in 2037). */
    load("Europe/Berlin", INT64_C(7258118400), INT64_C(7573651200)); /* 2200..2210 */
    TQ_CHECK_EQ(cal.tz_transition_count, 20);
    check_against_oracle(INT64_C(7258118400), INT64_C(7573651200), &rng);
}

static void test_known_instants(void) {
    load("Europe/Berlin", INT64_C(1767225600), INT64_C(1798761599)); /* 2026 */
    TQ_CHECK_EQ(cal.base_offset_s, 3600);
    TQ_CHECK_EQ(cal.tz_transition_count, 2);
    TQ_CHECK_EQ(cal.tz_transitions[0].at_s, INT64_C(1774746000)); /* 2026-03-29T01:00:00Z */
    TQ_CHECK_EQ(cal.tz_transitions[0].offset_s, 7200);
    TQ_CHECK_EQ(cal.tz_transitions[1].at_s, INT64_C(1792890000)); /* 2026-10-25T01:00:00Z */
    TQ_CHECK_EQ(cal.tz_transitions[1].offset_s, 3600);

    load("America/New_York", INT64_C(1767225600), INT64_C(1798761599));
    TQ_CHECK_EQ(cal.base_offset_s, -5 * 3600);
    TQ_CHECK_EQ(cal.tz_transition_count, 2);
    TQ_CHECK_EQ(cal.tz_transitions[0].at_s, INT64_C(1772953200)); /* 2026-03-08T07:00:00Z */
    TQ_CHECK_EQ(cal.tz_transitions[0].offset_s, -4 * 3600);
    TQ_CHECK_EQ(cal.tz_transitions[1].at_s, INT64_C(1793512800)); /* 2026-11-01T06:00:00Z */

    /* Southern hemisphere: DST ends in April, starts in October. */
    load("Australia/Sydney", INT64_C(1767225600), INT64_C(1798761599));
    TQ_CHECK_EQ(cal.base_offset_s, 11 * 3600);
    TQ_CHECK_EQ(cal.tz_transition_count, 2);
    TQ_CHECK_EQ(cal.tz_transitions[0].at_s, INT64_C(1775318400)); /* 2026-04-04T16:00:00Z */
    TQ_CHECK_EQ(cal.tz_transitions[0].offset_s, 10 * 3600);
    TQ_CHECK_EQ(cal.tz_transitions[1].at_s, INT64_C(1791043200)); /* 2026-10-03T16:00:00Z */
    TQ_CHECK_EQ(cal.tz_transitions[1].offset_s, 11 * 3600);

    load("Asia/Shanghai", Y2000_S, Y2100_S);
    TQ_CHECK_EQ(cal.base_offset_s, 8 * 3600);
    TQ_CHECK_EQ(cal.tz_transition_count, 0);

    /* Berlin 2040 comes from the footer rule in a fat file: last Sunday of March. */
    load("Europe/Berlin", INT64_C(2208988800), INT64_C(2240611199)); /* 2040 */
    TQ_CHECK_EQ(cal.tz_transition_count, 2);
    TQ_CHECK_EQ(cal.tz_transitions[0].at_s, INT64_C(2216250000)); /* 2040-03-25T01:00:00Z */
}

static void set_mon_fri(int start_minute, int end_minute) {
    for (int wd = 0; wd < 7; wd++) {
        cal.interval_count[wd] = 0;
    }
    for (int wd = 1; wd <= 5; wd++) {
        cal.interval_count[wd] = 1;
        cal.intervals[wd][0].start_minute = (uint16_t)start_minute;
        cal.intervals[wd][0].end_minute = (uint16_t)end_minute;
    }
}

static void test_business_on_real_zones(void) {
    struct tq_error error;
    load("Europe/Berlin", Y2000_S, Y2100_S);
    set_mon_fri(9 * 60, 17 * 60);
    TQ_CHECK_OK(tq_calendar_validate(&cal, &error), &error);
    /* Friday 2026-03-27 16:00 CET (15:00Z) + 2 h = Monday 2026-03-30 10:00 CEST (08:00Z). */
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, INT64_C(1774623600000), 2 * HOUR_MS),
                INT64_C(1774857600000));
    /* Monday 09:00 CET (2026-03-23T08:00Z) to Monday 09:00 CEST (2026-03-30T07:00Z) is 40 h
     * although only 7 x 24 - 1 real hours pass: the jump is on a Sunday night. */
    TQ_CHECK_EQ(tq_calendar_business_ms(&cal, INT64_C(1774252800000), INT64_C(1774854000000)),
                40 * HOUR_MS);

    /* New York, Sundays 00:00-06:00 local: 5 real hours on 2026-03-08, 7 on 2026-11-01. */
    load("America/New_York", Y2000_S, Y2100_S);
    for (int wd = 0; wd < 7; wd++) {
        cal.interval_count[wd] = 0;
    }
    cal.interval_count[0] = 1;
    cal.intervals[0][0] = (struct tq_calendar_interval){0, 6 * 60};
    TQ_CHECK_OK(tq_calendar_validate(&cal, &error), &error);
    int64_t mar8_local0 = INT64_C(1772946000000); /* 2026-03-08T00:00 EST = 05:00Z */
    int64_t nov1_local0 = INT64_C(1793505600000); /* 2026-11-01T00:00 EDT = 04:00Z */
    TQ_CHECK_EQ(tq_calendar_business_ms(&cal, mar8_local0, mar8_local0 + DAY_MS), 5 * HOUR_MS);
    TQ_CHECK_EQ(tq_calendar_business_ms(&cal, nov1_local0, nov1_local0 + DAY_MS), 7 * HOUR_MS);
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, nov1_local0, 7 * HOUR_MS),
                nov1_local0 + 7 * HOUR_MS);
    /* A Sunday-only calendar across a year of New York: 52 or 53 Sundays x 6 h, +-1 h. */
    int64_t year_ms = tq_calendar_business_ms(&cal, INT64_C(1767225600000), INT64_C(1798761600000));
    TQ_CHECK_EQ(year_ms, 52 * 6 * HOUR_MS); /* 2026 has 52 Sundays; -1 h +1 h cancel */

    /* Sydney, Mon-Fri 09:00-17:00 in the week DST ends (Sunday 2026-04-05): 40 h. */
    load("Australia/Sydney", Y2000_S, Y2100_S);
    set_mon_fri(9 * 60, 17 * 60);
    TQ_CHECK_OK(tq_calendar_validate(&cal, &error), &error);
    int64_t mon_local9 = INT64_C(1775430000000); /* 2026-04-06T09:00 AEST = 2026-04-05T23:00Z */
    TQ_CHECK_EQ(tq_calendar_add_business_ms(&cal, mon_local9, 40 * HOUR_MS),
                mon_local9 + 4 * DAY_MS + 8 * HOUR_MS);
    TQ_CHECK_EQ(tq_calendar_business_ms(&cal, mon_local9 - DAY_MS, mon_local9), 0);
}

/* Every zone of the database (skipping the right/ and posix/ copies and non-TZif files):
 * loads, validates and agrees with glibc at every transition of 2000..2100 and on a coarse
 * scan. Catches zones with unusual files or footers (Casablanca, Troll, Lord_Howe, ...). */
static const char *all_zones_root;
static size_t all_zones_root_len;
static uint64_t all_zones_rng;
static unsigned all_zones_count;

static int visit_zone(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)st;
    const char *name = path + all_zones_root_len + 1;
    if (type == FTW_D && ftw->level == 1 &&
        (strcmp(name, "right") == 0 || strcmp(name, "posix") == 0)) {
        return FTW_SKIP_SUBTREE;
    }
    if (type != FTW_F || ftw->level == 0 || strlen(name) >= TQ_CALENDAR_TZ_NAME_BYTES_MAX) {
        return FTW_CONTINUE;
    }
    FILE *f = fopen(path, "rb");
    char magic[4] = {0};
    bool tzif = f != NULL && fread(magic, 1, 4, f) == 4 && memcmp(magic, "TZif", 4) == 0;
    if (f != NULL) {
        fclose(f);
    }
    if (!tzif || strcmp(name, "Factory") == 0 || strcmp(name, "posixrules") == 0) {
        return FTW_CONTINUE;
    }
    load(name, Y2000_S, Y2100_S);
    int64_t scan_from = Y2000_S;
    TQ_CHECK_EQ(cal.base_offset_s, oracle_offset(scan_from));
    for (uint32_t i = 0; i < cal.tz_transition_count; i++) {
        int64_t at = cal.tz_transitions[i].at_s;
        TQ_CHECK_EQ(oracle_offset(at), cal.tz_transitions[i].offset_s);
        TQ_CHECK_EQ(oracle_offset(at - 1), tq_calendar_offset_s(&cal, (at - 1) * 1000));
    }
    const int64_t step_s = 9 * 86400 + 3607;
    for (int64_t t = scan_from + (int64_t)tq_test_rand_below(&all_zones_rng, step_s); t <= Y2100_S;
         t += step_s) {
        if (oracle_offset(t) != tq_calendar_offset_s(&cal, t * 1000)) {
            fprintf(stderr, "%s: offset at %lld differs from glibc\n", name, (long long)t);
        }
        TQ_CHECK_EQ(oracle_offset(t), tq_calendar_offset_s(&cal, t * 1000));
    }
    all_zones_count++;
    return FTW_CONTINUE;
}

static void test_all_zones(const char *root, uint64_t seed) {
    all_zones_root = root;
    all_zones_root_len = strlen(root);
    all_zones_rng = seed ^ 0x2545f491u;
    TQ_CHECK_EQ(nftw(root, visit_zone, 16, FTW_PHYS | FTW_ACTIONRETVAL), 0);
    printf("test_calendar_tz: %u zones agree with glibc\n", all_zones_count);
    TQ_CHECK_GT(all_zones_count, 300);
}

int main(void) {
    const char *tzdir = getenv("TZDIR");
    const char *root = tzdir != NULL && tzdir[0] != '\0' ? tzdir : "/usr/share/zoneinfo";
    char probe[512];
    snprintf(probe, sizeof(probe), "%s/Europe/Berlin", root);
    if (access(probe, R_OK) != 0) {
        printf("test_calendar_tz: %s missing, skipped\n", probe);
        return TQ_TEST_SKIP;
    }
    uint64_t seed = tq_test_seed("test_calendar_tz");
    test_known_instants();
    test_zones_vs_glibc(seed);
    test_business_on_real_zones();
    test_all_zones(root, seed);
    printf("test_calendar_tz: ok\n");
    return 0;
}
