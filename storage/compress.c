/* storage/compress.c: compressed sealed segments (.zseg).
 *
 * A .zseg holds the exact bytes of a sealed segment's batches (logical offsets unchanged, so
 * the sparse index and the hash chain are untouched) as independent zstd frames of whole
 * batches, then a block index, then a 64-byte footer (struct tq_zseg_footer, log_impl.h):
 *   [frame 0][frame 1]...[index: block_count x {raw_offset u64, file_offset u64, raw_bytes u32,
 *   comp_bytes u32}][footer]
 * Each frame carries zstd's content checksum; the batch checksums inside still verify the
 * original bytes after inflation, so compression never weakens verification. Reading one record
 * inflates one block (TQ_ZSEG_BLOCK_BYTES_TARGET of batches), never the whole segment.
 * The rewrite is atomic: .zseg.tmp, fsync, rename, fsync dir, then the .seg is removed (a crash
 * in between leaves both; open keeps the .zseg and removes the .seg). The writer (block size,
 * level, the atomic replace) is storage/rewrite.c, shared with redaction; this file reads.
 */
#include "log_impl.h"

#include "tq_alloc.h"
#include "tq_assert.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

static uint64_t footer_hash(const struct tq_zseg_footer *f) {
    return XXH3_64bits(f, offsetof(struct tq_zseg_footer, footer_hash));
}

enum tq_err tq_zseg_load(struct tq_seg *seg, struct tq_error *error) {
    TQ_ASSERT(seg->compressed);
    TQ_ASSERT(seg->fd >= 0);
    struct stat st;
    if (fstat(seg->fd, &st) != 0)
        return tq_error_set(error, TQ_ERR_IO, "stat %s: %s", seg->path, strerror(errno));
    uint64_t size = (uint64_t)st.st_size;
    struct tq_zseg_footer f;
    if (size < sizeof(f) ||
        pread(seg->fd, &f, sizeof(f), (off_t)(size - sizeof(f))) != (ssize_t)sizeof(f)) {
        return tq_error_set(error, TQ_ERR_CORRUPT,
                            "corrupt log: %s offset %" PRIu64
                            ": compressed segment too short for its footer",
                            seg->path, size);
    }
    uint64_t index_bytes = (uint64_t)f.block_count * sizeof(struct tq_zseg_block);
    if (f.magic != TQ_ZSEG_MAGIC || f.version != TQ_FORMAT_VERSION ||
        footer_hash(&f) != f.footer_hash || f.lsn_first != seg->lsn_first ||
        f.index_offset + index_bytes != size - sizeof(f)) {
        return tq_error_set(error, TQ_ERR_CORRUPT,
                            "corrupt log: %s offset %" PRIu64 " (lsn %" PRIu64
                            "): bad compressed-segment footer",
                            seg->path, size - sizeof(f), seg->lsn_first);
    }
    struct tq_zseg_block *blocks = tq_xalloc(index_bytes > 0 ? (size_t)index_bytes : 1);
    if (index_bytes > 0 && pread(seg->fd, blocks, (size_t)index_bytes, (off_t)f.index_offset) !=
                               (ssize_t)index_bytes) {
        tq_free(blocks, index_bytes > 0 ? (size_t)index_bytes : 1);
        return tq_error_set(error, TQ_ERR_IO, "read index of %s: %s", seg->path, strerror(errno));
    }
    bool ok = XXH3_64bits(blocks, (size_t)index_bytes) == f.index_hash;
    uint64_t raw_end = 0;
    for (uint32_t i = 0; ok && i < f.block_count; i++) {
        const struct tq_zseg_block *b = &blocks[i];
        ok = b->raw_offset == raw_end && b->file_offset + b->comp_bytes <= f.index_offset &&
             b->raw_bytes > 0 && b->raw_bytes <= TQ_BATCH_AREA_BYTES_HARD_MAX;
        raw_end = b->raw_offset + b->raw_bytes;
    }
    if (!ok || raw_end != f.raw_bytes) {
        tq_free(blocks, index_bytes > 0 ? (size_t)index_bytes : 1);
        return tq_error_set(error, TQ_ERR_CORRUPT,
                            "corrupt log: %s offset %" PRIu64 " (lsn %" PRIu64
                            "): bad compressed-segment block index",
                            seg->path, f.index_offset, seg->lsn_first);
    }
    if (index_bytes == 0) {
        tq_free(blocks, 1);
        blocks = NULL;
    }
    seg->blocks = blocks;
    seg->block_count = f.block_count;
    return TQ_OK;
}

enum tq_err tq_log_compress_segment(struct tq_log *log, uint64_t segment_lsn,
                                    struct tq_compress_stats *stats, struct tq_error *error) {
    int64_t si = -1;
    for (uint32_t i = 0; i < log->seg_count; i++) {
        if (log->segs[i].lsn_first == segment_lsn) si = i;
    }
    if (si >= 0 && log->segs[si].compressed) {
        return tq_error_set(error, TQ_ERR_FAILED_PRECONDITION, "segment %s is compressed already",
                            log->segs[si].path);
    }
    /* The work is the rewrite of storage/rewrite.c, all three steps on this thread. */
    struct tq_log_rewrite *rw = NULL;
    enum tq_err err = tq_log_rewrite_begin(log, segment_lsn, &rw, error);
    if (err != TQ_OK) return err;
    struct tq_log_rewrite_options o = {.compress = true};
    struct tq_log_rewrite_stats rs;
    err = tq_log_rewrite_write(rw, &o, &rs, error);
    if (err == TQ_OK) {
        TQ_ASSERT(rs.rewritten);
        tq_log_rewrite_install(log, rw);
        TQ_ASSERT(log->segs[si].compressed);
    }
    tq_log_rewrite_free(rw);
    if (err == TQ_OK && stats != NULL) {
        stats->raw_bytes = rs.raw_bytes;
        stats->payload_bytes = rs.payload_bytes;
        stats->compressed_bytes = rs.bytes_after;
        stats->blocks = rs.blocks;
    }
    return err;
}
