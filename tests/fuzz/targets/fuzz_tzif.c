/* tests/fuzz/targets/fuzz_tzif.c: libFuzzer target for the TZif parser (server/state/calendar.c).
 *
 * Goal: tq_calendar_tz_parse never crashes, never reads outside its input and never returns a
 * table the arithmetic would choke on, whatever the bytes (it parses files an operator may
 * point TZDIR at). Method: the input is the whole file; the first byte, when present, also
 * picks one of a few ranges so both the explicit-transition and the footer-rule paths run.
 * Invariants checked: the result is OK, CORRUPT or INVALID_ARGUMENT; on OK the calendar
 * passes tq_calendar_validate and offset/business arithmetic on it runs; on error the
 * calendar is untouched.
 *
 * Built only with -DTQ_FUZZ=ON (clang, -fsanitize=fuzzer,address,undefined); link with
 * server/state/calendar.c and tq_common. Seeds: any file under /usr/share/zoneinfo.
 */
#ifdef TQ_FUZZ

#include "calendar.h"
#include "tq_assert.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const int64_t ranges[4][2] = {
        {INT64_C(946684800), INT64_C(4102444800)},      /* 2000..2100 */
        {INT64_C(-2208988800), INT64_C(0)},             /* 1900..1970 */
        {INT64_C(2145916800), INT64_C(2240611199)},     /* 2038..2040: footer years */
        {INT64_C(-62135596800), INT64_C(253402300799)}, /* everything: truncation */
    };
    static struct tq_calendar cal;
    static struct tq_calendar before;
    size_t pick = size > 0 ? data[0] % 4 : 0;
    tq_calendar_init_24x7(&cal);
    cal.interval_count[1] = 1;
    cal.intervals[1][0].start_minute = 540;
    cal.intervals[1][0].end_minute = 1020;
    memcpy(&before, &cal, sizeof(cal));

    /* An exactly sized copy, so ASan catches any over-read. */
    uint8_t *copy = malloc(size > 0 ? size : 1);
    TQ_ASSERT(copy != NULL);
    if (size > 0) {
        memcpy(copy, data, size);
    }
    struct tq_error error;
    enum tq_err err = tq_calendar_tz_parse(&cal, "Fuzz/Zone", copy, size, ranges[pick][0],
                                           ranges[pick][1], &error);
    free(copy);
    if (err == TQ_OK) {
        TQ_ASSERT(tq_calendar_validate(&cal, &error) == TQ_OK);
        int64_t from_ms = ranges[pick][0] * 1000;
        int64_t t = tq_calendar_add_business_ms(&cal, from_ms, 40 * INT64_C(3600000));
        TQ_ASSERT(tq_calendar_business_ms(&cal, from_ms, t) == 40 * INT64_C(3600000));
        (void)tq_calendar_offset_s(&cal, from_ms);
    } else {
        TQ_ASSERT(err == TQ_ERR_CORRUPT || err == TQ_ERR_INVALID_ARGUMENT);
        TQ_ASSERT(memcmp(&before, &cal, sizeof(cal)) == 0);
    }
    return 0;
}

#else
typedef int tq_fuzz_tzif_disabled; /* ISO C forbids an empty translation unit */
#endif /* TQ_FUZZ */
