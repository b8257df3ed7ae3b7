/* storage/format.h: the on-disk layouts of tq_storage (internal header).
 *
 * Every layout here is little-endian, naturally aligned and pinned by _Static_assert; the prose
 * version with the rationale is docs/log-format.md. The structs are memcpy'd to and from disk,
 * which is only correct on a little-endian host (asserted below): a big-endian port must add
 * byte swaps in format.c and nowhere else.
 *
 * Batch (starts at a 4 KiB boundary of its segment, padded with zeros to a 4 KiB multiple):
 *   off size field
 *     0    4 magic          TQ_BATCH_MAGIC ("TQB1")
 *     4    2 version        TQ_FORMAT_VERSION
 *     6    2 flags          0 (reserved)
 *     8    8 lsn_first      LSN of the first record
 *    16    8 lsn_durable    every LSN <= this was durable when the batch was built
 *    24    8 commit_us      commit timestamp, µs since the Unix epoch
 *    32    4 record_count   >= 1
 *    36    4 area_bytes     bytes of records after the header (multiple of 8)
 *    40    8 area_hash      XXH3-64 over each record header with flags zeroed (16 B each)
 *    48    8 chain_prev     header_hash of the previous batch in the log (0: first batch)
 *    56    8 header_hash    XXH3-64 of bytes 0..55; the batch's chain value
 * Record (8-byte aligned inside the area):
 *     0    4 len            original payload length (kept when redacted)
 *     4    2 type           caller-defined, never 0
 *     6    2 flags          TQ_RECORD_REDACTED: payload bytes zeroed, hash kept
 *     8    8 payload_hash   XXH3-64 of the original payload
 *    16  len payload, then zero padding to a multiple of 8
 */
#ifndef TQ_STORAGE_FORMAT_H
#define TQ_STORAGE_FORMAT_H

#include "tq_err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "log format: little-endian host only");

#define TQ_BATCH_MAGIC         0x31425154u /* "TQB1" read as little-endian bytes */
#define TQ_ZSEG_MAGIC          0x3153475au /* "ZGS1" */
#define TQ_SNAP_MAGIC          0x31504e53u /* "SNP1" */
#define TQ_FORMAT_VERSION      1u
#define TQ_BATCH_HEADER_BYTES  64u
#define TQ_RECORD_HEADER_BYTES 16u
/* Batches start on 4 KiB boundaries so a batch write never rewrites a page (or sector) that
 * holds acknowledged bytes of an earlier batch (docs/log-format.md, "Partial sectors"). */
#define TQ_BATCH_ALIGN_BYTES 4096u
/* Hard ceiling on area_bytes read from disk, independent of options: 1 GiB. */
#define TQ_BATCH_AREA_BYTES_HARD_MAX (1u << 30)

struct tq_batch_header {
    uint32_t magic;
    uint16_t version;
    uint16_t flags;
    uint64_t lsn_first;
    uint64_t lsn_durable;
    uint64_t commit_us;
    uint32_t record_count;
    uint32_t area_bytes;
    uint64_t area_hash;
    uint64_t chain_prev;
    uint64_t header_hash;
};
_Static_assert(sizeof(struct tq_batch_header) == TQ_BATCH_HEADER_BYTES, "log format");
_Static_assert(offsetof(struct tq_batch_header, lsn_first) == 8, "log format");
_Static_assert(offsetof(struct tq_batch_header, record_count) == 32, "log format");
_Static_assert(offsetof(struct tq_batch_header, header_hash) == 56, "log format");

struct tq_record_header {
    uint32_t len;
    uint16_t type;
    uint16_t flags;
    uint64_t payload_hash;
};
_Static_assert(sizeof(struct tq_record_header) == TQ_RECORD_HEADER_BYTES, "log format");
_Static_assert(offsetof(struct tq_record_header, payload_hash) == 8, "log format");

/* Outcome of checking one batch image. */
enum tq_batch_check {
    TQ_BATCH_VALID = 0,
    TQ_BATCH_ZERO,       /* the header is all zeros: nothing was ever written here */
    TQ_BATCH_BAD_HEADER, /* magic/version/header checksum/field ranges wrong */
    TQ_BATCH_TRUNCATED,  /* header valid but its area runs past the bytes available */
    TQ_BATCH_BAD_AREA,   /* area checksum, a payload checksum or the record walk failed */
};

static inline uint64_t tq_round_up(uint64_t n, uint64_t align) {
    return (n + align - 1) / align * align;
}

/* Bytes a batch with area_bytes of records occupies on disk (header + area + padding). */
static inline uint64_t tq_batch_disk_bytes(uint32_t area_bytes) {
    return tq_round_up((uint64_t)TQ_BATCH_HEADER_BYTES + area_bytes, TQ_BATCH_ALIGN_BYTES);
}

/* Bytes a record with len payload bytes occupies in the area (header + payload + padding). */
static inline uint32_t tq_record_area_bytes(uint32_t len) {
    return (uint32_t)tq_round_up((uint64_t)TQ_RECORD_HEADER_BYTES + len, 8);
}

/* Computes and stores header_hash of h (over bytes 0..55). */
void tq_batch_header_seal(struct tq_batch_header *h);
/* The XXH3 of a header's first 56 bytes. */
uint64_t tq_batch_header_hash(const struct tq_batch_header *h);
/* Computes area_hash over area (area_bytes, well-formed: the caller built it). */
uint64_t tq_batch_area_hash(const uint8_t *area, uint32_t area_bytes);

/* Checks the batch image at p (avail bytes readable). Copies the header to *out when it is
 * readable. On anything but TQ_BATCH_VALID, why (why_bytes) gets a one-line reason. Only the
 * header is checked when verify_area is false. Never trusts a byte: safe on garbage. */
enum tq_batch_check tq_batch_check(const uint8_t *p, uint64_t avail, bool verify_area,
                                   struct tq_batch_header *out, char *why, size_t why_bytes);

enum tq_check_level {
    TQ_CHECK_HEADER = 0,  /* header only (and that the area fits in avail) */
    TQ_CHECK_RECORDS = 1, /* + the record walk, padding and area hash, not the payload hashes */
    TQ_CHECK_FULL = 2,    /* + every payload hash: what recovery and compaction use */
};
/* tq_batch_check with a level: point reads use TQ_CHECK_RECORDS and then verify only the
 * payload they return, so reading one record of a 4 MiB batch does not hash 4 MiB. */
enum tq_batch_check tq_batch_check_level(const uint8_t *p, uint64_t avail,
                                         enum tq_check_level level, struct tq_batch_header *out,
                                         char *why, size_t why_bytes);

/* A batch header whose checksum holds but whose LSN is below the first LSN of the segment it is
 * found in: left in a recycled segment file by that file's earlier life (docs/log-format.md,
 * "Recycled segments"). It marks the end of the segment's data, never a batch and never
 * evidence. Only meaningful for a header tq_batch_check found VALID or TRUNCATED. */
static inline bool tq_batch_header_stale(const struct tq_batch_header *h, uint64_t seg_lsn_first) {
    return h->lsn_first < seg_lsn_first;
}

/* Walks the records of a verified batch: on return *rec is the header of record index and
 * *payload its bytes. Returns false if index >= record_count. offset_io carries the walk state
 * (start at 0, pass back unchanged). */
bool tq_batch_record_next(const uint8_t *area, uint32_t area_bytes, uint32_t *offset_io,
                          struct tq_record_header *rec, const uint8_t **payload);

#endif
