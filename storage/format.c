/* storage/format.c: encoding and validation of batches and records (layout: format.h).
 *
 * Owns the only code that interprets batch bytes. Invariants checked here:
 *   - a batch is accepted only if magic, version, header checksum, area length and every record
 *     (length walk, non-zero type, known flags, payload checksum unless redacted) and the area
 *     checksum all agree; the walk must end exactly at area_bytes;
 *   - nothing read from disk is asserted on: every field is range-checked before use, so this
 *     file is safe on arbitrary bytes (it is the decoder the fuzz and corruption tests hit).
 * The area checksum covers (len, type, payload_hash) of each record rather than the raw payload
 * so that compaction can zero one record's payload (right to erasure) without changing the
 * batch's header, its chain value or any later batch: the payload's own hash is kept.
 */
#include "format.h"

#include "log.h"
#include "tq_assert.h"

#include <stdio.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

uint64_t tq_batch_header_hash(const struct tq_batch_header *h) {
    return XXH3_64bits(h, offsetof(struct tq_batch_header, header_hash));
}

void tq_batch_header_seal(struct tq_batch_header *h) {
    TQ_ASSERT(h->magic == TQ_BATCH_MAGIC);
    TQ_ASSERT(h->record_count > 0);
    h->header_hash = tq_batch_header_hash(h);
}

/* Adds one record's digest (its header with flags zeroed) to the area hash state. */
static void area_hash_add(XXH3_state_t *state, const struct tq_record_header *rec) {
    struct tq_record_header digest = *rec;
    digest.flags = 0;
    XXH3_64bits_update(state, &digest, sizeof(digest));
}

uint64_t tq_batch_area_hash(const uint8_t *area, uint32_t area_bytes) {
    XXH3_state_t state;
    XXH3_64bits_reset(&state);
    uint32_t offset = 0;
    struct tq_record_header rec;
    const uint8_t *payload;
    while (tq_batch_record_next(area, area_bytes, &offset, &rec, &payload)) {
        area_hash_add(&state, &rec);
    }
    TQ_ASSERT(offset == area_bytes);
    return XXH3_64bits_digest(&state);
}

bool tq_batch_record_next(const uint8_t *area, uint32_t area_bytes, uint32_t *offset_io,
                          struct tq_record_header *rec, const uint8_t **payload) {
    uint32_t offset = *offset_io;
    if (offset >= area_bytes || area_bytes - offset < TQ_RECORD_HEADER_BYTES) return false;
    memcpy(rec, area + offset, sizeof(*rec));
    uint64_t step = tq_record_area_bytes(rec->len);
    if (rec->len > area_bytes || step > (uint64_t)(area_bytes - offset)) return false;
    *payload = area + offset + TQ_RECORD_HEADER_BYTES;
    *offset_io = offset + (uint32_t)step;
    return true;
}

static bool all_zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0) return false;
    }
    return true;
}

enum tq_batch_check tq_batch_check(const uint8_t *p, uint64_t avail, bool verify_area,
                                   struct tq_batch_header *out, char *why, size_t why_bytes) {
    return tq_batch_check_level(p, avail, verify_area ? TQ_CHECK_FULL : TQ_CHECK_HEADER, out, why,
                                why_bytes);
}

enum tq_batch_check tq_batch_check_level(const uint8_t *p, uint64_t avail,
                                         enum tq_check_level level, struct tq_batch_header *out,
                                         char *why, size_t why_bytes) {
    TQ_ASSERT(p != NULL);
    TQ_ASSERT(out != NULL);
    if (avail < TQ_BATCH_HEADER_BYTES) {
        snprintf(why, why_bytes, "only %llu bytes left, a batch header needs %u",
                 (unsigned long long)avail, TQ_BATCH_HEADER_BYTES);
        return all_zero(p, (size_t)avail) ? TQ_BATCH_ZERO : TQ_BATCH_TRUNCATED;
    }
    memcpy(out, p, sizeof(*out));
    if (all_zero(p, TQ_BATCH_HEADER_BYTES)) {
        snprintf(why, why_bytes, "zero bytes where a batch header was expected");
        return TQ_BATCH_ZERO;
    }
    if (out->magic != TQ_BATCH_MAGIC || out->version != TQ_FORMAT_VERSION) {
        snprintf(why, why_bytes, "bad batch magic/version (%08x/%u)", out->magic, out->version);
        return TQ_BATCH_BAD_HEADER;
    }
    if (tq_batch_header_hash(out) != out->header_hash) {
        snprintf(why, why_bytes, "batch header checksum mismatch");
        return TQ_BATCH_BAD_HEADER;
    }
    if (out->flags != 0 || out->record_count == 0 || out->area_bytes % 8 != 0 ||
        out->area_bytes > TQ_BATCH_AREA_BYTES_HARD_MAX ||
        (uint64_t)out->record_count * TQ_RECORD_HEADER_BYTES > out->area_bytes ||
        out->lsn_first == 0 || out->lsn_durable >= out->lsn_first) {
        snprintf(why, why_bytes, "batch header fields out of range (count %u, area %u)",
                 out->record_count, out->area_bytes);
        return TQ_BATCH_BAD_HEADER;
    }
    if (avail < TQ_BATCH_HEADER_BYTES + (uint64_t)out->area_bytes) {
        snprintf(why, why_bytes, "batch of %u area bytes runs past the end (%llu available)",
                 out->area_bytes, (unsigned long long)avail);
        return TQ_BATCH_TRUNCATED;
    }
    if (level == TQ_CHECK_HEADER) return TQ_BATCH_VALID;
    bool payloads = level == TQ_CHECK_FULL;

    const uint8_t *area = p + TQ_BATCH_HEADER_BYTES;
    XXH3_state_t state;
    XXH3_64bits_reset(&state);
    uint32_t offset = 0;
    uint32_t count = 0;
    struct tq_record_header rec;
    const uint8_t *payload;
    while (tq_batch_record_next(area, out->area_bytes, &offset, &rec, &payload)) {
        if (rec.type == 0 || (rec.flags & ~(uint32_t)TQ_RECORD_REDACTED) != 0) {
            snprintf(why, why_bytes, "record %u: bad type/flags (%u/%u)", count, rec.type,
                     rec.flags);
            return TQ_BATCH_BAD_AREA;
        }
        bool redacted = (rec.flags & TQ_RECORD_REDACTED) != 0;
        uint32_t pad = tq_record_area_bytes(rec.len) - TQ_RECORD_HEADER_BYTES - rec.len;
        if (!all_zero(payload + rec.len, pad)) {
            snprintf(why, why_bytes, "record %u (lsn %llu): non-zero padding", count,
                     (unsigned long long)(out->lsn_first + count));
            return TQ_BATCH_BAD_AREA;
        }
        /* A redacted payload must be all zeros: a bit flip that sets the flag is not a way
         * to lose a payload silently. */
        if (payloads && (redacted ? !all_zero(payload, rec.len)
                                  : XXH3_64bits(payload, rec.len) != rec.payload_hash)) {
            snprintf(why, why_bytes, "record %u (lsn %llu): payload checksum mismatch", count,
                     (unsigned long long)(out->lsn_first + count));
            return TQ_BATCH_BAD_AREA;
        }
        area_hash_add(&state, &rec);
        count++;
    }
    if (offset != out->area_bytes || count != out->record_count) {
        snprintf(why, why_bytes, "record walk ends at %u of %u bytes after %u of %u records",
                 offset, out->area_bytes, count, out->record_count);
        return TQ_BATCH_BAD_AREA;
    }
    if (XXH3_64bits_digest(&state) != out->area_hash) {
        snprintf(why, why_bytes, "batch area checksum mismatch");
        return TQ_BATCH_BAD_AREA;
    }
    return TQ_BATCH_VALID;
}
