/* storage/redact.c: physical removal of record payloads from a sealed segment (erasure).
 *
 * Owns tq_log_redact_segment(), the primitive a compactor uses for the right to erasure. The
 * segment is rewritten into <name>.tmp with the named records' payload bytes zeroed and their
 * TQ_RECORD_REDACTED flag set, then fsync, rename over the original, fsync dir. Nothing else
 * changes: record lengths, payload hashes, offsets, batch headers and the hash chain are the
 * same bytes, because the batch checksum covers (len, type, payload_hash) of each record, not
 * the payload (format.h). Invariant: every batch of the result passes tq_batch_check, which
 * requires a redacted payload to be all zeros.
 */
#include "log_impl.h"

#include "tq_alloc.h"
#include "tq_assert.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static bool lsn_listed(const uint64_t *lsns, size_t count, uint64_t lsn) {
    for (size_t i = 0; i < count; i++) {
        if (lsns[i] == lsn) return true;
    }
    return false;
}

enum tq_err tq_log_redact_segment(struct tq_log *log, uint64_t segment_lsn, const uint64_t *lsns,
                                  size_t count, uint64_t *redacted_out, struct tq_error *error) {
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
    uint64_t size = seg->bytes_written;
    uint8_t *image = tq_alloc(size > 0 ? (size_t)size : 1);
    if (image == NULL) return tq_error_set(error, TQ_ERR_RESOURCE_EXHAUSTED, "out of memory");
    enum tq_err err = TQ_OK;
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", seg->path);
    int fd = -1;
    uint64_t redacted = 0;
    if (pread(seg->fd, image, (size_t)size, 0) != (ssize_t)size) {
        err = tq_error_set(error, TQ_ERR_IO, "read %s: %s", seg->path, strerror(errno));
        goto done;
    }
    for (uint64_t off = 0; off < size;) {
        struct tq_batch_header h;
        char why[200];
        if (tq_batch_check(image + off, size - off, true, &h, why, sizeof(why)) != TQ_BATCH_VALID) {
            err = tq_error_set(error, TQ_ERR_CORRUPT, "corrupt log: %s offset %" PRIu64 ": %s",
                               seg->path, off, why);
            goto done;
        }
        uint8_t *area = image + off + TQ_BATCH_HEADER_BYTES;
        uint32_t walk = 0;
        struct tq_record_header rh;
        const uint8_t *payload;
        for (uint64_t lsn = h.lsn_first;
             tq_batch_record_next(area, h.area_bytes, &walk, &rh, &payload); lsn++) {
            if (!lsn_listed(lsns, count, lsn) || (rh.flags & TQ_RECORD_REDACTED) != 0 ||
                rh.len == 0) {
                continue;
            }
            uint8_t *rec = area + (payload - area) - TQ_RECORD_HEADER_BYTES;
            rh.flags |= TQ_RECORD_REDACTED;
            memcpy(rec, &rh, sizeof(rh));
            memset(rec + TQ_RECORD_HEADER_BYTES, 0, rh.len);
            redacted++;
        }
        TQ_ASSERT(tq_batch_check(image + off, size - off, true, &h, why, sizeof(why)) ==
                  TQ_BATCH_VALID);
        off += tq_batch_disk_bytes(h.area_bytes);
    }
    fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || posix_fallocate(fd, 0, (off_t)log->opt.segment_bytes_max) != 0 ||
        pwrite(fd, image, (size_t)size, 0) != (ssize_t)size) {
        err = tq_error_set(error, errno == ENOSPC ? TQ_ERR_NO_SPACE : TQ_ERR_IO, "write %s: %s",
                           tmp, strerror(errno));
        goto done;
    }
    int rc = tq_log_blocking_fsync(log, fd, tmp);
    if (rc < 0) {
        err = tq_error_set(error, TQ_ERR_IO, "fsync %s: %s", tmp, strerror(-rc));
        goto done;
    }
    if (rename(tmp, seg->path) != 0) {
        err = tq_error_set(error, TQ_ERR_IO, "rename %s: %s", tmp, strerror(errno));
        goto done;
    }
    rc = tq_log_blocking_fsync(log, log->log_dir_fd, log->log_dir);
    if (rc < 0) tq_fatal("fsync %s after redacting %s: %s", log->log_dir, seg->path, strerror(-rc));
    close(seg->fd);
    seg->fd = fd;
    fd = -1;
    if (log->read_cursor.bound && log->read_cursor.seg_index == si)
        tq_cursor_free(&log->read_cursor);
    if (redacted_out != NULL) *redacted_out = redacted;
done:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    tq_free(image, size > 0 ? (size_t)size : 1);
    return err;
}
