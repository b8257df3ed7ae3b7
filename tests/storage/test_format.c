/* tests/storage/test_format.c: the batch decoder against valid, mutated and random bytes.
 *
 * Goal: tq_batch_check accepts exactly the batches the writer builds and rejects every single
 * bit flip in a batch's header or area (padding included), and never crashes or reads out of
 * bounds on arbitrary input (it is the decoder that sees disk bytes).
 * Method: build batches in memory the way log.c does (records, area hash, sealed header) with
 * seeded random records; check them; flip each bit of small batches and random bits of large
 * ones; feed random buffers and random truncations. ASan checks the bounds.
 * Invariants: VALID for built batches, never VALID after a flip, the record walk yields the
 * records appended in order, and layout constants match docs/log-format.md.
 */
#include "format.h"
#include "log.h"
#include "tq_test.h"

#include <stdbool.h>
#include <stdlib.h>
#include <xxhash.h>

static uint64_t rng;

/* Builds a batch of count records into buf; returns its disk size. */
static size_t build(uint8_t *buf, size_t cap, uint32_t count, uint32_t len_max,
                    uint64_t lsn_first) {
    memset(buf, 0, cap);
    uint32_t area = 0;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t len = (uint32_t)tq_test_rand_below(&rng, len_max + 1);
        uint8_t *p = buf + TQ_BATCH_HEADER_BYTES + area;
        for (uint32_t k = 0; k < len; k++)
            p[TQ_RECORD_HEADER_BYTES + k] = (uint8_t)tq_test_rand(&rng);
        struct tq_record_header rh = {.len = len,
                                      .type = (uint16_t)(1 + i % 9),
                                      .flags = 0,
                                      .payload_hash = XXH3_64bits(p + TQ_RECORD_HEADER_BYTES, len)};
        memcpy(p, &rh, sizeof(rh));
        area += tq_record_area_bytes(len);
    }
    struct tq_batch_header h = {.magic = TQ_BATCH_MAGIC,
                                .version = TQ_FORMAT_VERSION,
                                .lsn_first = lsn_first,
                                .lsn_durable = lsn_first - 1,
                                .commit_us = 1700000000000000ull,
                                .record_count = count,
                                .area_bytes = area,
                                .area_hash = tq_batch_area_hash(buf + TQ_BATCH_HEADER_BYTES, area),
                                .chain_prev = 0x1234};
    tq_batch_header_seal(&h);
    memcpy(buf, &h, sizeof(h));
    TQ_CHECK_LE(tq_batch_disk_bytes(area), cap);
    return (size_t)tq_batch_disk_bytes(area);
}

/* The one undetectable flip (docs/log-format.md, Redaction): the REDACTED bit of an empty
 * record changes no data. */
static bool redacted_flag_of_empty_record(const uint8_t *batch, uint32_t area_bytes, size_t bit) {
    uint32_t off = 0;
    struct tq_record_header rh;
    const uint8_t *payload;
    const uint8_t *area = batch + TQ_BATCH_HEADER_BYTES;
    while (true) {
        uint32_t at = off;
        if (!tq_batch_record_next(area, area_bytes, &off, &rh, &payload)) return false;
        size_t flag_bit = (TQ_BATCH_HEADER_BYTES + at + 6) * 8; /* bit 0 of flags */
        if (rh.len == 0 && bit == flag_bit) return true;
    }
}

int main(void) {
    rng = tq_test_seed("test_format");
    char why[200];
    struct tq_batch_header h;
    TQ_CHECK_EQ(sizeof(struct tq_batch_header), 64);
    TQ_CHECK_EQ(sizeof(struct tq_record_header), 16);
    TQ_CHECK_EQ(tq_batch_disk_bytes(0), 4096);
    TQ_CHECK_EQ(tq_batch_disk_bytes(4096 - 64 + 8), 8192);
    static uint8_t buf[1 << 20];
    /* every bit of small batches */
    for (int round = 0; round < 6; round++) {
        size_t disk = build(buf, sizeof(buf), 1 + (uint32_t)tq_test_rand_below(&rng, 5), 200, 10);
        TQ_CHECK_EQ(tq_batch_check(buf, disk, true, &h, why, sizeof(why)), TQ_BATCH_VALID);
        size_t used = TQ_BATCH_HEADER_BYTES + h.area_bytes;
        uint32_t area_bytes = h.area_bytes; /* h is overwritten by the checks below */
        for (size_t bit = 0; bit < used * 8; bit++) {
            if (redacted_flag_of_empty_record(buf, area_bytes, bit)) continue;
            buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            enum tq_batch_check c = tq_batch_check(buf, disk, true, &h, why, sizeof(why));
            if (c == TQ_BATCH_VALID) fprintf(stderr, "flip of bit %zu not detected\n", bit);
            TQ_CHECK(c != TQ_BATCH_VALID);
            buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        /* truncations: TRUNCATED (or ZERO for nothing), never VALID */
        for (size_t cut = 0; cut < used; cut += 1 + tq_test_rand_below(&rng, 40)) {
            TQ_CHECK(tq_batch_check(buf, cut, true, &h, why, sizeof(why)) != TQ_BATCH_VALID);
        }
    }
    /* large batches: walk and random flips */
    for (int round = 0; round < 20; round++) {
        uint32_t count = 1 + (uint32_t)tq_test_rand_below(&rng, 300);
        size_t disk = build(buf, sizeof(buf), count, 3000, 1000);
        TQ_CHECK_EQ(tq_batch_check(buf, disk, true, &h, why, sizeof(why)), TQ_BATCH_VALID);
        uint32_t off = 0, seen = 0;
        struct tq_record_header rh;
        const uint8_t *payload;
        while (tq_batch_record_next(buf + 64, h.area_bytes, &off, &rh, &payload)) {
            TQ_CHECK_EQ(rh.type, 1 + seen % 9);
            TQ_CHECK_UEQ(XXH3_64bits(payload, rh.len), rh.payload_hash);
            seen++;
        }
        TQ_CHECK_EQ(seen, count);
        uint64_t used_bits = (64 + (uint64_t)h.area_bytes) * 8; /* h changes below */
        for (int k = 0; k < 50; k++) {
            size_t bit = tq_test_rand_below(&rng, used_bits);
            buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            TQ_CHECK(tq_batch_check(buf, disk, true, &h, why, sizeof(why)) != TQ_BATCH_VALID);
            buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
    }
    /* random garbage, sometimes with a plausible magic */
    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)tq_test_rand_below(&rng, 512);
        uint8_t *g = malloc(n + 1);
        for (size_t i = 0; i < n; i++)
            g[i] = (uint8_t)tq_test_rand(&rng);
        if (n >= 8 && round % 2 == 0) {
            uint32_t magic = TQ_BATCH_MAGIC;
            uint16_t version = TQ_FORMAT_VERSION;
            memcpy(g, &magic, 4);
            memcpy(g + 4, &version, 2);
        }
        TQ_CHECK(tq_batch_check(g, n, true, &h, why, sizeof(why)) != TQ_BATCH_VALID);
        free(g);
    }
    printf("test_format: ok\n");
    return 0;
}
