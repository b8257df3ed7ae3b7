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
 * in between leaves both; open keeps the .zseg and removes the .seg).
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

/* 256 KiB of batches per block: large enough for a good ratio on small support messages
 * (measured: docs/performance-storage.md), small enough that one read inflates < 1 ms. */
#define TQ_ZSEG_BLOCK_BYTES_TARGET (256u * 1024)
#define TQ_ZSEG_LEVEL              3

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

static enum tq_err write_all(int fd, const void *p, size_t len, uint64_t offset, const char *path,
                             struct tq_error *error) {
    size_t done = 0;
    while (done < len) {
        ssize_t w = pwrite(fd, (const uint8_t *)p + done, len - done, (off_t)(offset + done));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            return tq_error_set(error, errno == ENOSPC ? TQ_ERR_NO_SPACE : TQ_ERR_IO,
                                "write %s: %s", path, strerror(errno));
        }
        done += (size_t)w;
    }
    return TQ_OK;
}

enum tq_err tq_log_compress_segment(struct tq_log *log, uint64_t segment_lsn,
                                    struct tq_compress_stats *stats, struct tq_error *error) {
    uint32_t si = UINT32_MAX;
    for (uint32_t i = 0; i < log->seg_count; i++) {
        if (log->segs[i].lsn_first == segment_lsn) si = i;
    }
    if (si == UINT32_MAX) {
        return tq_error_set(error, TQ_ERR_NOT_FOUND, "no segment starts at lsn %" PRIu64,
                            segment_lsn);
    }
    struct tq_seg *seg = &log->segs[si];
    if (log->opt.read_only || si + 1 == log->seg_count || seg->compressed ||
        seg->lsn_last > tq_log_durable_lsn(log)) {
        return tq_error_set(error, TQ_ERR_FAILED_PRECONDITION,
                            "segment %s is not a sealed, durable, uncompressed segment", seg->path);
    }
    /* The batches of this segment, in order (contiguous in the index). */
    int64_t r0 = tq_log_ref_find(log, seg->lsn_first);
    if (r0 < 0 || seg->lsn_last < seg->lsn_first) {
        return tq_error_set(error, TQ_ERR_FAILED_PRECONDITION, "segment %s is empty", seg->path);
    }
    size_t tmp_len = strlen(seg->path) + 16;
    char *tmp = tq_xalloc(tmp_len);
    char *final = tq_xalloc(tmp_len);
    snprintf(final, tmp_len, "%.*s.zseg", (int)(strlen(seg->path) - 4), seg->path);
    snprintf(tmp, tmp_len, "%s.tmp", final);

    enum tq_err err = TQ_OK;
    struct tq_seg_cursor c;
    tq_cursor_init(&c, seg);
    struct tq_zseg_block *blocks = NULL;
    uint32_t block_count = 0, block_cap = 0;
    uint8_t *raw = NULL, *comp = NULL;
    size_t raw_cap = 0, comp_cap = 0;
    uint64_t file_off = 0, payload = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        err = tq_error_set(error, TQ_ERR_IO, "create %s: %s", tmp, strerror(errno));
        goto done;
    }
    for (uint64_t ri = (uint64_t)r0; ri < log->ref_count && log->refs[ri].seg_index == si;) {
        /* Gather whole batches into one block of >= the target size. */
        uint64_t start = log->refs[ri].offset;
        size_t used = 0;
        while (ri < log->ref_count && log->refs[ri].seg_index == si &&
               (used == 0 || used + log->refs[ri].disk_bytes <= TQ_ZSEG_BLOCK_BYTES_TARGET)) {
            const struct tq_batch_ref *ref = &log->refs[ri];
            TQ_ASSERT(ref->offset == start + used);
            const uint8_t *p;
            size_t avail;
            err = tq_cursor_get(&c, ref->offset, ref->disk_bytes, seg->bytes_written, &p, &avail,
                                error);
            if (err != TQ_OK) goto done;
            struct tq_batch_header h;
            char why[200];
            if (tq_batch_check(p, avail, true, &h, why, sizeof(why)) != TQ_BATCH_VALID) {
                err = tq_error_set(error, TQ_ERR_CORRUPT,
                                   "corrupt log: %s offset %" PRIu64 " (lsn %" PRIu64 "): %s",
                                   seg->path, ref->offset, ref->lsn_first, why);
                goto done;
            }
            if (raw_cap < used + ref->disk_bytes) {
                size_t cap = (used + ref->disk_bytes) * 2;
                raw = tq_xrealloc(raw, raw_cap, cap);
                raw_cap = cap;
            }
            memcpy(raw + used, p, ref->disk_bytes);
            uint32_t off = 0;
            struct tq_record_header rh;
            const uint8_t *pl;
            while (tq_batch_record_next(p + TQ_BATCH_HEADER_BYTES, h.area_bytes, &off, &rh, &pl)) {
                payload += rh.len;
            }
            used += ref->disk_bytes;
            ri++;
        }
        size_t bound = ZSTD_compressBound(used);
        if (comp_cap < bound) {
            if (comp != NULL) tq_free(comp, comp_cap);
            comp = tq_xalloc(bound);
            comp_cap = bound;
        }
        ZSTD_CCtx *cctx = ZSTD_createCCtx();
        TQ_ASSERT(cctx != NULL);
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, TQ_ZSEG_LEVEL);
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
        size_t n = ZSTD_compress2(cctx, comp, comp_cap, raw, used);
        ZSTD_freeCCtx(cctx);
        TQ_ASSERT(!ZSTD_isError(n));
        if ((err = write_all(fd, comp, n, file_off, tmp, error)) != TQ_OK) goto done;
        if (block_count == block_cap) {
            uint32_t cap = block_cap == 0 ? 64 : block_cap * 2;
            blocks = tq_xrealloc(blocks, block_cap * sizeof(*blocks), cap * sizeof(*blocks));
            block_cap = cap;
        }
        blocks[block_count++] = (struct tq_zseg_block){.raw_offset = start,
                                                       .file_offset = file_off,
                                                       .raw_bytes = (uint32_t)used,
                                                       .comp_bytes = (uint32_t)n};
        file_off += n;
    }
    size_t index_bytes = block_count * sizeof(*blocks);
    struct tq_zseg_footer f = {
        .magic = TQ_ZSEG_MAGIC,
        .version = TQ_FORMAT_VERSION,
        .lsn_first = seg->lsn_first,
        .lsn_last = seg->lsn_last,
        .raw_bytes = blocks[block_count - 1].raw_offset + blocks[block_count - 1].raw_bytes,
        .block_count = block_count,
        .index_offset = file_off,
        .index_hash = XXH3_64bits(blocks, index_bytes),
    };
    f.footer_hash = footer_hash(&f);
    if ((err = write_all(fd, blocks, index_bytes, file_off, tmp, error)) != TQ_OK) goto done;
    if ((err = write_all(fd, &f, sizeof(f), file_off + index_bytes, tmp, error)) != TQ_OK)
        goto done;
    int rc = tq_log_blocking_fsync(log, fd, tmp);
    if (rc < 0) {
        err = tq_error_set(error, TQ_ERR_IO, "fsync %s: %s", tmp, strerror(-rc));
        goto done;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, final) != 0) {
        err = tq_error_set(error, TQ_ERR_IO, "rename %s: %s", tmp, strerror(errno));
        goto done;
    }
    rc = tq_log_blocking_fsync(log, log->log_dir_fd, log->log_dir);
    if (rc < 0) tq_fatal("fsync %s after compressing %s: %s", log->log_dir, final, strerror(-rc));
    /* Switch the in-memory segment to the .zseg, then drop the .seg. */
    int zfd = open(final, O_RDONLY | O_CLOEXEC);
    if (zfd < 0) tq_fatal("open %s: %s", final, strerror(errno));
    unlink(seg->path);
    rc = tq_log_blocking_fsync(log, log->log_dir_fd, log->log_dir);
    if (rc < 0) tq_fatal("fsync %s after removing %s: %s", log->log_dir, seg->path, strerror(-rc));
    close(seg->fd);
    seg->fd = zfd;
    tq_free(seg->path, strlen(seg->path) + 1);
    seg->path = final;
    final = NULL;
    seg->compressed = true;
    blocks = tq_xrealloc(blocks, block_cap * sizeof(*blocks), block_count * sizeof(*blocks));
    block_cap = block_count;
    seg->blocks = blocks;
    seg->block_count = block_count;
    blocks = NULL;
    if (log->read_cursor.bound && log->read_cursor.seg_index == si)
        tq_cursor_free(&log->read_cursor);
    if (stats != NULL) {
        stats->raw_bytes = f.raw_bytes;
        stats->payload_bytes = payload;
        stats->compressed_bytes = f.index_offset + index_bytes + sizeof(f);
        stats->blocks = block_count;
    }
done:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    tq_cursor_free(&c);
    if (blocks != NULL) tq_free(blocks, block_cap * sizeof(*blocks));
    if (raw != NULL) tq_free(raw, raw_cap);
    if (comp != NULL) tq_free(comp, comp_cap);
    tq_free(tmp, tmp_len);
    if (final != NULL) tq_free(final, tmp_len);
    return err;
}
