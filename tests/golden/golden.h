/* tests/golden/golden.h: the contents of the committed golden log (tests/golden/log-v1/).
 *
 * Shared by the generator (tests/storage/golden_gen.c) and the test (test_golden.c). Frozen:
 * the golden directory was written once by format version 1; every later version must open it
 * and find exactly these records, so this function must never change.
 */
#ifndef TQ_GOLDEN_H
#define TQ_GOLDEN_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define GOLDEN_RECORDS       300u
#define GOLDEN_SNAPSHOT_LSN  120u
#define GOLDEN_SNAPSHOT_BLOB "golden snapshot of format v1 at lsn 120"
#define GOLDEN_SEGMENT_BYTES (32u * 1024)
#define GOLDEN_BATCH_BYTES   (16u * 1024)
#define GOLDEN_RECORD_BYTES  (4u * 1024)
#define GOLDEN_PER_BATCH     7u /* records per batch (a sync every 7 records) */

static inline uint16_t golden_type(uint64_t lsn) {
    return (uint16_t)(1 + lsn % 5);
}

/* Payload of record lsn: a text line then a byte pattern; lengths 0..~2100. */
static inline uint32_t golden_payload(uint64_t lsn, uint8_t *out) {
    if (lsn % 37 == 0) return 0;
    int n = snprintf((char *)out, 128, "golden record %llu of ticketq log format v1;",
                     (unsigned long long)lsn);
    uint32_t len = (uint32_t)n + (uint32_t)((lsn * 2654435761u) % 2048u);
    for (uint32_t i = (uint32_t)n; i < len; i++)
        out[i] = (uint8_t)((lsn + i * 31u) & 0xff);
    return len;
}

#endif
