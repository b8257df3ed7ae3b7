/* server/state/calendar.h: business-hours arithmetic for SLA clocks (pure, no tz database).
 *
 * A tenant's business hours are a set of local-time intervals per weekday, a list of holidays
 * (local dates) and a UTC-offset table for its IANA time zone. The offset table is resolved from
 * the machine's tz database OUTSIDE apply (tq_calendar_tz_load, called by the server when an
 * operator sets business hours) and written into the log record, so replay on another machine,
 * or after a tzdata update, computes exactly the same deadlines.
 *
 * All times are milliseconds since the Unix epoch (UTC). A calendar with no intervals at all
 * means "calendar time" (24x7): every function then degenerates to plain arithmetic.
 */
#ifndef TQ_STATE_CALENDAR_H
#define TQ_STATE_CALENDAR_H

#include "tq_err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TQ_CALENDAR_INTERVALS_PER_DAY_MAX 8 /* e.g. 09-12, 13-18: 8 covers split shifts */
#define TQ_CALENDAR_HOLIDAYS_MAX          366
#define TQ_CALENDAR_TZ_TRANSITIONS_MAX    512 /* ~2 per year over the covered span */
#define TQ_CALENDAR_TZ_NAME_BYTES_MAX     64

struct tq_calendar_interval {
    uint16_t start_minute; /* local minutes after midnight, 0..1439 */
    uint16_t end_minute;   /* exclusive, start < end <= 1440 */
};

struct tq_calendar_tz_transition {
    int64_t at_s;     /* UTC seconds from which offset_s applies */
    int32_t offset_s; /* local = UTC + offset_s */
};

struct tq_calendar {
    char tz_name[TQ_CALENDAR_TZ_NAME_BYTES_MAX]; /* informational, e.g. "Asia/Shanghai" */
    int32_t base_offset_s;                       /* offset before the first transition */
    uint32_t tz_transition_count;
    struct tq_calendar_tz_transition tz_transitions[TQ_CALENDAR_TZ_TRANSITIONS_MAX];
    uint8_t interval_count[7]; /* per weekday, 0 = Sunday ... 6 = Saturday */
    struct tq_calendar_interval intervals[7][TQ_CALENDAR_INTERVALS_PER_DAY_MAX];
    uint32_t holiday_count;
    int32_t holidays[TQ_CALENDAR_HOLIDAYS_MAX]; /* local dates as days since 1970-01-01, sorted */
};

/* Initialises cal to calendar time (24x7, UTC). */
void tq_calendar_init_24x7(struct tq_calendar *cal);

/* True if cal has business hours (some interval on some weekday). */
bool tq_calendar_has_hours(const struct tq_calendar *cal);

/* Validates a calendar built from untrusted input: intervals in range, sorted, not
 * overlapping (touching is allowed); holidays sorted and distinct; transitions strictly
 * increasing with |at_s| <= 2^55 / 1000; every offset within +-86399 s; counts within the
 * limits; tz_name NUL-terminated. TQ_ERR_INVALID_ARGUMENT, error->msg naming the weekday and
 * interval index, holiday index or transition index. The functions below require a calendar
 * that passed this check (they assert only the array bounds). */
TQ_NODISCARD enum tq_err tq_calendar_validate(const struct tq_calendar *cal,
                                              struct tq_error *error);

/* UTC offset in force at at_ms. */
int32_t tq_calendar_offset_s(const struct tq_calendar *cal, int64_t at_ms);

/* Business milliseconds in [from_ms, to_ms) (0 if to_ms <= from_ms). An instant is business
 * time iff its local wall-clock time (UTC + offset) lies in an interval of its local weekday
 * and its local date is not a holiday: a local time skipped by a DST change is not counted, a
 * repeated local hour counts twice. Arguments are clamped to +-2^55 ms. */
int64_t tq_calendar_business_ms(const struct tq_calendar *cal, int64_t from_ms, int64_t to_ms);

/* The earliest instant t >= start_ms with business_ms(start_ms, t) == duration_ms. With no
 * business hours this is start_ms + duration_ms. duration_ms >= 0. Returns INT64_MAX
 * ("never") when t would lie beyond 2^55 ms (or overflow int64 for 24x7). */
int64_t tq_calendar_add_business_ms(const struct tq_calendar *cal, int64_t start_ms,
                                    int64_t duration_ms);

/* Outside apply only (reads files): resolves the IANA zone tz_name from the tz database
 * (TZif files under $TZDIR, or /usr/share/zoneinfo when TZDIR is unset) and fills
 * cal->tz_name, base_offset_s (the offset in force at from_s) and the offset changes in
 * (from_s, to_s] (truncated to TQ_CALENDAR_TZ_TRANSITIONS_MAX); intervals and holidays are
 * left untouched, and cal is untouched on error. Beyond the file's last transition the
 * footer's POSIX TZ rule generates the transitions. from_s <= to_s, both within years
 * 0001..9999. Returns TQ_ERR_INVALID_ARGUMENT (bad or unknown zone name, leap-second zone,
 * bad range), TQ_ERR_CORRUPT (malformed file), TQ_ERR_IO. */
TQ_NODISCARD enum tq_err tq_calendar_tz_load(struct tq_calendar *cal, /* tz fields filled */
                                             const char *tz_name,     /* e.g. "Europe/Berlin" */
                                             int64_t from_s,          /* range start, UTC s */
                                             int64_t to_s,            /* range end (incl.) */
                                             struct tq_error *error); /* may be NULL */

/* tq_calendar_tz_load's parser, from memory (fuzzing, tests): data[0..len) is the TZif file
 * of the zone called name (copied into cal->tz_name, 1..63 bytes). Same results and errors,
 * without the file errors. Never trusts the bytes. */
TQ_NODISCARD enum tq_err tq_calendar_tz_parse(struct tq_calendar *cal, /* tz fields filled */
                                              const char *name,        /* stored in tz_name */
                                              const uint8_t *data,     /* the TZif bytes */
                                              size_t len,              /* bytes at data */
                                              int64_t from_s,          /* range start, UTC s */
                                              int64_t to_s,            /* range end (incl.) */
                                              struct tq_error *error); /* may be NULL */

#endif
