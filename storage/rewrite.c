/* storage/rewrite.c: the rewrite of one sealed segment (redaction and/or zstd compression),
 * split so that the heavy part can run on a helper thread.
 *
 * A rewrite has three steps:
 *   1. tq_log_rewrite_begin (the thread that owns the log): copies what the rewrite needs out
 *      of the segment table (path, logical size, LSN range, form, the segment size) into a
 *      struct tq_log_rewrite. Refuses the tail, a segment with records not yet durable and a
 *      read-only log (TQ_ERR_FAILED_PRECONDITION).
 *   2. tq_log_rewrite_write (any thread; touches no tq_log state): opens the segment by its own
 *      descriptor, reads its batches (inflating a .zseg), verifies every batch, zeroes and flags
 *      the listed records (TQ_RECORD_REDACTED, length and payload hash kept: the batch checksum
 *      covers (len, type, payload_hash), docs/log-format.md "Redaction"), and writes the new
 *      image as <final>.tmp, fsync, rename onto <final>, fsync dir; when a plain .seg became a
 *      .zseg, the .seg is then removed and the directory fsynced again. From here on the disk
 *      holds the new image; the handle still reads the old inode (the same batches, with the
 *      same hashes), which stays valid until install closes it.
 *   3. tq_log_rewrite_install (the owning thread): points the segment at the new file (fd,
 *      path, form, block index) and drops the shared read cursor. No disk I/O beyond open().
 * Why the rename is in step 2 and not in install: the owning thread never opens, renames or
 * removes a sealed segment by name (only open and recovery do, and maintenance, which is this
 * code), so moving the file under it is safe, and the blocking parts (fsyncs) stay off the
 * event loop.
 * Crash safety: each file change is one atomic rename, so a segment is at every instant either
 * its old or its new image. A .seg next to a .zseg of the same segment resolves to the .zseg
 * at open (the new image) and the .seg is removed then. A leftover .tmp is removed at open.
 * Memory: one segment's logical image (at most segment_bytes_max) plus its compressed form.
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

/* Reads and writes go in chunks of this size so the I/O budget callback can pace them. */
#define REWRITE_CHUNK_BYTES (1u << 20)

struct tq_log_rewrite {
    uint64_t lsn_first, lsn_last;
    uint64_t raw_bytes;         /* logical end of the last batch */
    uint64_t segment_bytes_max; /* plain segments are preallocated to this */
    bool compressed;            /* the current form */
    uint32_t seg_index;         /* in the owner's table when begun (checked at install) */
    char *path;                 /* current file */
    char *log_dir;
    bool recycle;       /* keep a replaced .seg for reuse (options.recycle_segments_max) */
    char *recycle_path; /* DIR/log/recycle.<lsn> once the replaced .seg was renamed there */
    /* filled by write */
    bool written;
    bool out_compressed;
    char *out_path;
    struct tq_zseg_block *blocks; /* the new .zseg's index (out_compressed) */
    uint32_t block_count;
};

static char *str_dup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = tq_xalloc(n);
    memcpy(p, s, n);
    return p;
}

static void str_release(char *s) {
    if (s != NULL) tq_free(s, strlen(s) + 1);
}

void tq_log_rewrite_free(struct tq_log_rewrite *rw) {
    if (rw == NULL) return;
    str_release(rw->path);
    str_release(rw->log_dir);
    str_release(rw->out_path);
    str_release(rw->recycle_path); /* not installed: the file stays for the next open's pool */
    if (rw->blocks != NULL) tq_free(rw->blocks, rw->block_count * sizeof(*rw->blocks));
    tq_free(rw, sizeof(*rw));
}

static int32_t seg_find(const struct tq_log *log, uint64_t segment_lsn) {
    for (uint32_t i = 0; i < log->seg_count; i++) {
        if (log->segs[i].lsn_first == segment_lsn) return (int32_t)i;
    }
    return -1;
}

enum tq_err tq_log_rewrite_begin(struct tq_log *log, uint64_t segment_lsn,
                                 struct tq_log_rewrite **rw_out, struct tq_error *error) {
    TQ_ASSERT(log != NULL && rw_out != NULL);
    *rw_out = NULL;
    int32_t si = seg_find(log, segment_lsn);
    if (si < 0) {
        return tq_error_set(error, TQ_ERR_NOT_FOUND, "no segment starts at lsn %" PRIu64,
                            segment_lsn);
    }
    const struct tq_seg *seg = &log->segs[si];
    if (log->opt.read_only || (uint32_t)si + 1 == log->seg_count ||
        seg->lsn_last > tq_log_durable_lsn(log) || seg->lsn_last < seg->lsn_first) {
        return tq_error_set(error, TQ_ERR_FAILED_PRECONDITION,
                            "segment %s is not a sealed, durable, non-empty segment", seg->path);
    }
    struct tq_log_rewrite *rw = tq_xalloc(sizeof(*rw));
    memset(rw, 0, sizeof(*rw));
    rw->lsn_first = seg->lsn_first;
    rw->lsn_last = seg->lsn_last;
    rw->compressed = seg->compressed;
    rw->raw_bytes = seg->compressed
                        ? (seg->block_count == 0 ? 0
                                                 : seg->blocks[seg->block_count - 1].raw_offset +
                                                       seg->blocks[seg->block_count - 1].raw_bytes)
                        : seg->bytes_written;
    rw->segment_bytes_max = log->opt.segment_bytes_max;
    rw->seg_index = (uint32_t)si;
    rw->path = str_dup(seg->path);
    rw->log_dir = str_dup(log->log_dir);
    rw->recycle = log->opt.recycle_segments_max > 0;
    *rw_out = rw;
    return TQ_OK;
}

/* ---- step 2: on any thread ------------------------------------------------------------ */

struct rw_io {
    const struct tq_log_rewrite_options *o;
    struct tq_log_rewrite_stats *stats;
};

static void io_account(struct rw_io *io, uint64_t bytes, bool is_write) {
    if (is_write) {
        io->stats->bytes_written += bytes;
    } else {
        io->stats->bytes_read += bytes;
    }
    if (io->o->io_done != NULL) io->o->io_done(io->o->io_ctx, bytes);
}

static enum tq_err pread_all(struct rw_io *io, int fd, uint8_t *buf, uint64_t len, uint64_t offset,
                             const char *path, struct tq_error *error) {
    uint64_t done = 0;
    while (done < len) {
        size_t want = len - done > REWRITE_CHUNK_BYTES ? REWRITE_CHUNK_BYTES : (size_t)(len - done);
        ssize_t got = pread(fd, buf + done, want, (off_t)(offset + done));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            return tq_error_set(error, got < 0 ? TQ_ERR_IO : TQ_ERR_CORRUPT,
                                "read %s at offset %" PRIu64 ": %s", path, offset + done,
                                got < 0 ? strerror(errno) : "short file");
        }
        done += (uint64_t)got;
        io_account(io, (uint64_t)got, false);
    }
    return TQ_OK;
}

static enum tq_err pwrite_all(struct rw_io *io, int fd, const uint8_t *buf, uint64_t len,
                              uint64_t offset, const char *path, struct tq_error *error) {
    uint64_t done = 0;
    while (done < len) {
        size_t want = len - done > REWRITE_CHUNK_BYTES ? REWRITE_CHUNK_BYTES : (size_t)(len - done);
        ssize_t put = pwrite(fd, buf + done, want, (off_t)(offset + done));
        if (put < 0 && errno == EINTR) continue;
        if (put <= 0) {
            return tq_error_set(error, errno == ENOSPC ? TQ_ERR_NO_SPACE : TQ_ERR_IO,
                                "write %s: %s", path, strerror(errno));
        }
        done += (uint64_t)put;
        io_account(io, (uint64_t)put, true);
    }
    return TQ_OK;
}

/* The segment's logical image (rw->raw_bytes) into *image_out (tq_free, raw_bytes or 1). */
static enum tq_err image_load(struct rw_io *io, const struct tq_log_rewrite *rw,
                              uint8_t **image_out, struct tq_error *error) {
    int fd = open(rw->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return tq_error_set(error, TQ_ERR_IO, "open %s: %s", rw->path, strerror(errno));
    size_t cap = rw->raw_bytes > 0 ? (size_t)rw->raw_bytes : 1;
    uint8_t *image = tq_alloc(cap);
    enum tq_err err = TQ_OK;
    if (image == NULL) {
        err = tq_error_set(error, TQ_ERR_RESOURCE_EXHAUSTED, "out of memory for %s", rw->path);
    } else if (!rw->compressed) {
        err = pread_all(io, fd, image, rw->raw_bytes, 0, rw->path, error);
    } else {
        /* A private view of the .zseg: its own descriptor and block index. */
        struct tq_seg seg;
        memset(&seg, 0, sizeof(seg));
        seg.lsn_first = rw->lsn_first;
        seg.compressed = true;
        seg.fd = fd;
        seg.wfd = -1;
        seg.path = rw->path;
        err = tq_zseg_load(&seg, error);
        uint8_t *zbuf = NULL;
        size_t zcap = 0;
        for (uint32_t b = 0; err == TQ_OK && b < seg.block_count; b++) {
            const struct tq_zseg_block *blk = &seg.blocks[b];
            if (blk->raw_offset + blk->raw_bytes > rw->raw_bytes) {
                err = tq_error_set(error, TQ_ERR_CORRUPT,
                                   "corrupt log: %s: block %" PRIu32 " beyond the segment's end",
                                   rw->path, b);
                break;
            }
            if (zcap < blk->comp_bytes) {
                if (zbuf != NULL) tq_free(zbuf, zcap);
                zcap = blk->comp_bytes;
                zbuf = tq_xalloc(zcap);
            }
            err = pread_all(io, fd, zbuf, blk->comp_bytes, blk->file_offset, rw->path, error);
            if (err != TQ_OK) break;
            size_t out =
                ZSTD_decompress(image + blk->raw_offset, blk->raw_bytes, zbuf, blk->comp_bytes);
            if (ZSTD_isError(out) || out != blk->raw_bytes) {
                err = tq_error_set(error, TQ_ERR_CORRUPT,
                                   "corrupt log: %s offset %" PRIu64 " (compressed block %" PRIu32
                                   "): %s",
                                   rw->path, blk->file_offset, b,
                                   ZSTD_isError(out) ? ZSTD_getErrorName(out) : "wrong size");
            }
        }
        if (zbuf != NULL) tq_free(zbuf, zcap);
        if (seg.blocks != NULL) tq_free(seg.blocks, seg.block_count * sizeof(*seg.blocks));
    }
    close(fd);
    if (err != TQ_OK) {
        if (image != NULL) tq_free(image, cap);
        return err;
    }
    *image_out = image;
    return TQ_OK;
}

static bool lsn_listed(const uint64_t *lsns, size_t count, uint64_t lsn) {
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (lsns[mid] == lsn) return true;
        if (lsns[mid] < lsn) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return false;
}

/* Verifies every batch of the image and redacts the listed records in place. */
static enum tq_err image_redact(const struct tq_log_rewrite *rw, uint8_t *image,
                                const struct tq_log_rewrite_options *o, uint64_t *redacted_out,
                                uint64_t *payload_bytes, struct tq_error *error) {
    uint64_t redacted = 0, lsn_next = rw->lsn_first;
    for (uint64_t off = 0; off < rw->raw_bytes;) {
        struct tq_batch_header h;
        char why[200];
        if (tq_batch_check(image + off, rw->raw_bytes - off, true, &h, why, sizeof(why)) !=
            TQ_BATCH_VALID) {
            return tq_error_set(error, TQ_ERR_CORRUPT, "corrupt log: %s offset %" PRIu64 ": %s",
                                rw->path, off, why);
        }
        if (h.lsn_first != lsn_next) {
            return tq_error_set(error, TQ_ERR_CORRUPT,
                                "corrupt log: %s offset %" PRIu64 ": batch starts at lsn %" PRIu64
                                ", expected %" PRIu64,
                                rw->path, off, h.lsn_first, lsn_next);
        }
        uint8_t *area = image + off + TQ_BATCH_HEADER_BYTES;
        uint32_t walk = 0;
        struct tq_record_header rh;
        const uint8_t *payload;
        bool changed = false;
        for (uint64_t lsn = h.lsn_first;
             tq_batch_record_next(area, h.area_bytes, &walk, &rh, &payload); lsn++) {
            *payload_bytes += rh.len;
            if ((rh.flags & TQ_RECORD_REDACTED) != 0 || rh.len == 0 ||
                !lsn_listed(o->lsns, o->count, lsn)) {
                continue;
            }
            uint8_t *rec = area + (payload - area) - TQ_RECORD_HEADER_BYTES;
            rh.flags |= TQ_RECORD_REDACTED;
            memcpy(rec, &rh, sizeof(rh));
            memset(rec + TQ_RECORD_HEADER_BYTES, 0, rh.len);
            redacted++;
            changed = true;
        }
        /* The rewrite must pass the same check recovery applies, with the same header. */
        if (changed) {
            TQ_ASSERT(tq_batch_check(image + off, rw->raw_bytes - off, true, &h, why,
                                     sizeof(why)) == TQ_BATCH_VALID);
        }
        lsn_next = h.lsn_first + h.record_count;
        off += tq_batch_disk_bytes(h.area_bytes);
    }
    if (lsn_next != rw->lsn_last + 1) {
        return tq_error_set(error, TQ_ERR_CORRUPT,
                            "corrupt log: %s ends at lsn %" PRIu64 ", the index says %" PRIu64,
                            rw->path, lsn_next - 1, rw->lsn_last);
    }
    *redacted_out = redacted;
    return TQ_OK;
}

/* 256 KiB of batches per block: large enough for a good ratio on small support messages
 * (measured: docs/performance-storage.md), small enough that one read inflates < 1 ms. */
#define ZSEG_BLOCK_BYTES_TARGET (256u * 1024)
#define ZSEG_LEVEL              3

static uint64_t zseg_footer_hash(const struct tq_zseg_footer *f) {
    return XXH3_64bits(f, offsetof(struct tq_zseg_footer, footer_hash));
}

/* Writes the image as a .zseg body (blocks of whole batches, index, footer) to fd. */
static enum tq_err zseg_write(struct rw_io *io, struct tq_log_rewrite *rw, const uint8_t *image,
                              int fd, const char *tmp, struct tq_error *error) {
    uint32_t cap = 64, count = 0;
    struct tq_zseg_block *blocks = tq_xalloc(cap * sizeof(*blocks));
    size_t comp_cap = ZSTD_compressBound(ZSEG_BLOCK_BYTES_TARGET + TQ_BATCH_ALIGN_BYTES);
    uint8_t *comp = tq_xalloc(comp_cap);
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    TQ_ASSERT(cctx != NULL);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, ZSEG_LEVEL);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
    enum tq_err err = TQ_OK;
    uint64_t file_off = 0;
    for (uint64_t start = 0; start < rw->raw_bytes && err == TQ_OK;) {
        /* Gather whole batches (verified by image_redact) into one block. */
        uint64_t used = 0;
        while (start + used < rw->raw_bytes) {
            struct tq_batch_header h;
            memcpy(&h, image + start + used, sizeof(h));
            uint64_t disk = tq_batch_disk_bytes(h.area_bytes);
            if (used > 0 && used + disk > ZSEG_BLOCK_BYTES_TARGET) break;
            used += disk;
        }
        TQ_ASSERT(used > 0 && start + used <= rw->raw_bytes);
        size_t bound = ZSTD_compressBound((size_t)used);
        if (comp_cap < bound) {
            tq_free(comp, comp_cap);
            comp_cap = bound;
            comp = tq_xalloc(comp_cap);
        }
        size_t n = ZSTD_compress2(cctx, comp, comp_cap, image + start, (size_t)used);
        TQ_ASSERT(!ZSTD_isError(n));
        err = pwrite_all(io, fd, comp, n, file_off, tmp, error);
        if (count == cap) {
            blocks = tq_xrealloc(blocks, cap * sizeof(*blocks), 2 * cap * sizeof(*blocks));
            cap *= 2;
        }
        blocks[count++] = (struct tq_zseg_block){.raw_offset = start,
                                                 .file_offset = file_off,
                                                 .raw_bytes = (uint32_t)used,
                                                 .comp_bytes = (uint32_t)n};
        file_off += n;
        start += used;
    }
    ZSTD_freeCCtx(cctx);
    tq_free(comp, comp_cap);
    size_t index_bytes = count * sizeof(*blocks);
    struct tq_zseg_footer f = {
        .magic = TQ_ZSEG_MAGIC,
        .version = TQ_FORMAT_VERSION,
        .lsn_first = rw->lsn_first,
        .lsn_last = rw->lsn_last,
        .raw_bytes = rw->raw_bytes,
        .block_count = count,
        .index_offset = file_off,
        .index_hash = XXH3_64bits(blocks, index_bytes),
    };
    f.footer_hash = zseg_footer_hash(&f);
    if (err == TQ_OK)
        err = pwrite_all(io, fd, (const uint8_t *)blocks, index_bytes, file_off, tmp, error);
    if (err == TQ_OK) {
        err =
            pwrite_all(io, fd, (const uint8_t *)&f, sizeof(f), file_off + index_bytes, tmp, error);
    }
    if (err != TQ_OK) {
        tq_free(blocks, cap * sizeof(*blocks));
        return err;
    }
    rw->blocks = tq_xrealloc(blocks, cap * sizeof(*blocks), count * sizeof(*blocks));
    rw->block_count = count;
    return TQ_OK;
}

static int dir_fsync(const char *dir) {
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return -errno;
    int rc = fsync(dfd) == 0 ? 0 : -errno;
    close(dfd);
    return rc;
}

enum tq_err tq_log_rewrite_write(struct tq_log_rewrite *rw, const struct tq_log_rewrite_options *o,
                                 struct tq_log_rewrite_stats *stats, struct tq_error *error) {
    TQ_ASSERT(rw != NULL && o != NULL && stats != NULL);
    TQ_ASSERT(!rw->written);
    memset(stats, 0, sizeof(*stats));
    struct rw_io io = {o, stats};
    uint8_t *image = NULL;
    enum tq_err err = image_load(&io, rw, &image, error);
    if (err != TQ_OK) return err;
    size_t image_cap = rw->raw_bytes > 0 ? (size_t)rw->raw_bytes : 1;
    uint64_t redacted = 0;
    err = image_redact(rw, image, o, &redacted, &stats->payload_bytes, error);
    stats->records_redacted = redacted;
    rw->out_compressed = rw->compressed || o->compress;
    if (err != TQ_OK || (redacted == 0 && rw->out_compressed == rw->compressed)) {
        tq_free(image, image_cap);
        return err; /* nothing to change: no file is touched */
    }
    /* <lsn>.seg or <lsn>.zseg in log_dir; the temp file beside it. */
    size_t plen = strlen(rw->log_dir) + 40;
    rw->out_path = tq_xalloc(plen);
    snprintf(rw->out_path, plen, "%s/%020" PRIu64 ".%s", rw->log_dir, rw->lsn_first,
             rw->out_compressed ? "zseg" : "seg");
    char *tmp = tq_xalloc(plen + 8);
    snprintf(tmp, plen + 8, "%s.tmp", rw->out_path);
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        err = tq_error_set(error, errno == ENOSPC ? TQ_ERR_NO_SPACE : TQ_ERR_IO, "create %s: %s",
                           tmp, strerror(errno));
    } else if (rw->out_compressed) {
        err = zseg_write(&io, rw, image, fd, tmp, error);
    } else {
        /* A plain sealed segment keeps its preallocated size, as the writer left it. */
        if (rw->segment_bytes_max >= rw->raw_bytes &&
            posix_fallocate(fd, 0, (off_t)rw->segment_bytes_max) != 0) {
            err = tq_error_set(error, TQ_ERR_NO_SPACE, "fallocate %s: no space", tmp);
        }
        if (err == TQ_OK) err = pwrite_all(&io, fd, image, rw->raw_bytes, 0, tmp, error);
    }
    tq_free(image, image_cap);
    if (err == TQ_OK && fsync(fd) != 0) {
        err = tq_error_set(error, TQ_ERR_IO, "fsync %s: %s", tmp, strerror(errno));
    }
    if (fd >= 0) close(fd);
    if (err == TQ_OK && rename(tmp, rw->out_path) != 0) {
        err = tq_error_set(error, TQ_ERR_IO, "rename %s: %s", tmp, strerror(errno));
    }
    if (err != TQ_OK) {
        unlink(tmp);
        tq_free(tmp, plen + 8);
        return err;
    }
    tq_free(tmp, plen + 8);
    /* Past the rename a failed directory fsync leaves the on-disk layout unknown: fail-stop, as
     * every other broken durability promise of the log. */
    int rc = dir_fsync(rw->log_dir);
    if (rc < 0) tq_fatal("fsync %s after rewriting %s: %s", rw->log_dir, rw->path, strerror(-rc));
    if (strcmp(rw->out_path, rw->path) != 0) {
        /* .seg -> .zseg: the .zseg wins at open from now on; the .seg goes, renamed to
         * recycle.<lsn> when it can become a spare segment (a plain segment of the full
         * preallocated size), else removed. Either way it is no segment any more. */
        struct stat old_st;
        if (rw->recycle && !rw->compressed && stat(rw->path, &old_st) == 0 &&
            (uint64_t)old_st.st_size == rw->segment_bytes_max) {
            size_t n = strlen(rw->log_dir) + sizeof("/" TQ_RECYCLE_PREFIX) + 24;
            char *rpath = tq_xalloc(n);
            snprintf(rpath, n, "%s/" TQ_RECYCLE_PREFIX "%020" PRIu64, rw->log_dir, rw->lsn_first);
            if (rename(rw->path, rpath) == 0) {
                rw->recycle_path = str_dup(rpath);
            }
            tq_free(rpath, n);
        }
        if (rw->recycle_path == NULL && unlink(rw->path) != 0) {
            tq_fatal("unlink %s: %s", rw->path, strerror(errno));
        }
        rc = dir_fsync(rw->log_dir);
        if (rc < 0)
            tq_fatal("fsync %s after removing %s: %s", rw->log_dir, rw->path, strerror(-rc));
    }
    struct stat st;
    stats->bytes_after = stat(rw->out_path, &st) == 0 ? (uint64_t)st.st_size : 0;
    stats->raw_bytes = rw->raw_bytes;
    stats->blocks = rw->block_count;
    stats->rewritten = true;
    rw->written = true;
    return TQ_OK;
}

/* ---- step 3: back on the owning thread ------------------------------------------------ */

void tq_log_rewrite_install(struct tq_log *log, struct tq_log_rewrite *rw) {
    TQ_ASSERT(log != NULL && rw != NULL);
    if (!rw->written) return;
    TQ_ASSERT(rw->seg_index < log->seg_count);
    struct tq_seg *seg = &log->segs[rw->seg_index];
    /* Segments are only ever appended to the table while the log is open. */
    TQ_ASSERT(seg->lsn_first == rw->lsn_first);
    TQ_ASSERT(seg->lsn_last == rw->lsn_last);
    int fd = open(rw->out_path, (rw->out_compressed ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) tq_fatal("open %s: %s", rw->out_path, strerror(errno));
    close(seg->fd);
    seg->fd = fd;
    if (seg->wfd >= 0) {
        /* Sealed and durable: no write in flight. Its flock must go with it (a recycled file
         * becomes a spare, whose writer takes the lock again). */
        close(seg->wfd);
        seg->wfd = -1;
    }
    str_release(seg->path);
    seg->path = rw->out_path;
    rw->out_path = NULL;
    if (seg->blocks != NULL) tq_free(seg->blocks, seg->block_count * sizeof(*seg->blocks));
    seg->blocks = NULL;
    seg->block_count = 0;
    seg->compressed = rw->out_compressed;
    if (rw->out_compressed) {
        seg->blocks = rw->blocks;
        seg->block_count = rw->block_count;
        rw->blocks = NULL;
        rw->block_count = 0;
    }
    if (log->read_cursor.bound && log->read_cursor.seg_index == rw->seg_index) {
        tq_cursor_free(&log->read_cursor);
    }
    if (rw->recycle_path != NULL) {
        /* Only now: the log read the old file by seg->fd until the close above. */
        tq_log_recycle_add(log, rw->recycle_path);
        rw->recycle_path = NULL;
    }
    rw->written = false;
}
