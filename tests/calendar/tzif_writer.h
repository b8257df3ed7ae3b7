/* tests/calendar/tzif_writer.h: builds TZif files in memory for the calendar tests.
 *
 * Goal: exercise tq_calendar_tz_parse on files whose content the test controls (v1-only,
 * v2+ with or without explicit transitions, any footer), independent of the machine's tzdata.
 * Method: a direct transcription of the layout in tzfile(5) / RFC 8536 section 3; each type
 * gets a 4-byte designation "Tnn" so desigidx is always valid. v2+ files carry an empty-ish
 * v1 block (no transitions, one type), as "slim" tzdata files do.
 */
#ifndef TQ_TEST_TZIF_WRITER_H
#define TQ_TEST_TZIF_WRITER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define TZIF_TEST_TRANSITIONS_MAX 2048
#define TZIF_TEST_TYPES_MAX       16
#define TZIF_TEST_BYTES_MAX       65536

struct tzif_spec {
    char version; /* 0 (v1 only) or '2', '3', '4' */
    uint32_t timecnt;
    int64_t times[TZIF_TEST_TRANSITIONS_MAX];
    uint8_t type_index[TZIF_TEST_TRANSITIONS_MAX];
    uint32_t typecnt;
    int32_t utoff[TZIF_TEST_TYPES_MAX];
    uint8_t isdst[TZIF_TEST_TYPES_MAX];
    const char *footer; /* v2+: the POSIX TZ string, "" for none */
};

static inline size_t tzif_put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return 4;
}

static inline size_t tzif_put64(uint8_t *p, uint64_t v) {
    tzif_put32(p, (uint32_t)(v >> 32));
    tzif_put32(p + 4, (uint32_t)v);
    return 8;
}

static inline size_t tzif_header(uint8_t *p, char version, uint32_t timecnt, uint32_t typecnt,
                                 uint32_t charcnt) {
    memset(p, 0, 44);
    memcpy(p, "TZif", 4);
    p[4] = (uint8_t)version;
    tzif_put32(p + 20, typecnt); /* isutcnt */
    tzif_put32(p + 24, typecnt); /* isstdcnt */
    tzif_put32(p + 28, 0);       /* leapcnt */
    tzif_put32(p + 32, timecnt);
    tzif_put32(p + 36, typecnt);
    tzif_put32(p + 40, charcnt);
    return 44;
}

/* Data block of s with time_bytes-wide times. */
static inline size_t tzif_block(uint8_t *p, const struct tzif_spec *s, unsigned time_bytes) {
    size_t n = 0;
    for (uint32_t i = 0; i < s->timecnt; i++) {
        n += time_bytes == 8 ? tzif_put64(p + n, (uint64_t)s->times[i])
                             : tzif_put32(p + n, (uint32_t)(int32_t)s->times[i]);
    }
    for (uint32_t i = 0; i < s->timecnt; i++) {
        p[n++] = s->type_index[i];
    }
    for (uint32_t i = 0; i < s->typecnt; i++) {
        n += tzif_put32(p + n, (uint32_t)s->utoff[i]);
        p[n++] = s->isdst[i];
        p[n++] = (uint8_t)(i * 4);
    }
    for (uint32_t i = 0; i < s->typecnt; i++) {
        char abbr[5];
        snprintf(abbr, sizeof(abbr), "T%02u", i % 100);
        memcpy(p + n, abbr, 4);
        n += 4;
    }
    for (uint32_t i = 0; i < s->typecnt; i++) {
        p[n++] = 0; /* isstd */
    }
    for (uint32_t i = 0; i < s->typecnt; i++) {
        p[n++] = 0; /* isut */
    }
    return n;
}

/* Writes the TZif file for s into out (TZIF_TEST_BYTES_MAX); returns its length. */
static inline size_t tzif_write(uint8_t *out, const struct tzif_spec *s) {
    size_t n = 0;
    if (s->version == 0) {
        n += tzif_header(out, 0, s->timecnt, s->typecnt, s->typecnt * 4);
        n += tzif_block(out + n, s, 4);
        return n;
    }
    struct tzif_spec v1;
    memset(&v1, 0, sizeof(v1));
    v1.typecnt = 1;
    v1.utoff[0] = s->utoff[0];
    n += tzif_header(out, s->version, 0, 1, 4);
    n += tzif_block(out + n, &v1, 4);
    n += tzif_header(out + n, s->version, s->timecnt, s->typecnt, s->typecnt * 4);
    n += tzif_block(out + n, s, 8);
    out[n++] = '\n';
    size_t footer_len = strlen(s->footer);
    memcpy(out + n, s->footer, footer_len);
    n += footer_len;
    out[n++] = '\n';
    return n;
}

#endif
