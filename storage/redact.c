/* storage/redact.c: physical removal of record payloads from a sealed segment (erasure).
 *
 * Owns tq_log_redact_segment(), the primitive a compactor uses for the right to erasure. The
 * segment is rewritten into <name>.tmp with the named records' payload bytes zeroed and their
 * TQ_RECORD_REDACTED flag set, then fsync, rename over the original, fsync dir (the writer is
 * storage/rewrite.c, which a helper thread can also drive in steps). Nothing else
 * changes: record lengths, payload hashes, offsets, batch headers and the hash chain are the
 * same bytes, because the batch checksum covers (len, type, payload_hash) of each record, not
 * the payload (format.h). Invariant: every batch of the result passes tq_batch_check, which
 * requires a redacted payload to be all zeros.
 */
#include "log_impl.h"

#include "tq_alloc.h"
#include "tq_assert.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int u64_cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

enum tq_err tq_log_redact_segment(struct tq_log *log, uint64_t segment_lsn, const uint64_t *lsns,
                                  size_t count, uint64_t *redacted_out, struct tq_error *error) {
    TQ_ASSERT(log != NULL);
    TQ_ASSERT(count == 0 || lsns != NULL);
    for (uint32_t i = 0; i < log->seg_count; i++) {
        if (log->segs[i].lsn_first == segment_lsn && log->segs[i].compressed) {
            return tq_error_set(error, TQ_ERR_FAILED_PRECONDITION,
                                "segment %s is not a sealed, durable, uncompressed segment",
                                log->segs[i].path);
        }
    }
    /* The work is the rewrite of storage/rewrite.c, all three steps on this thread; it wants
     * the LSNs sorted. */
    struct tq_log_rewrite *rw = NULL;
    enum tq_err err = tq_log_rewrite_begin(log, segment_lsn, &rw, error);
    if (err != TQ_OK) return err;
    uint64_t *sorted = tq_xalloc(count > 0 ? count * sizeof(uint64_t) : 1);
    if (count > 0) memcpy(sorted, lsns, count * sizeof(uint64_t));
    qsort(sorted, count, sizeof(uint64_t), u64_cmp);
    struct tq_log_rewrite_options o = {.lsns = sorted, .count = count};
    struct tq_log_rewrite_stats rs;
    err = tq_log_rewrite_write(rw, &o, &rs, error);
    if (err == TQ_OK) tq_log_rewrite_install(log, rw);
    tq_log_rewrite_free(rw);
    tq_free(sorted, count > 0 ? count * sizeof(uint64_t) : 1);
    if (err == TQ_OK && redacted_out != NULL) *redacted_out = rs.records_redacted;
    return err;
}
