/* storage/read.c: readers of the log: segment cursors, read by LSN, iterators.
 *
 * Owns struct tq_seg_cursor (a read window over one segment: pread of large blocks for .seg,
 * one inflated zstd block for .zseg; for the recovery scan, a stream of O_DIRECT reads kept in
 * flight on a private ring, struct tq_scan_stream) and struct tq_log_iter. Invariants:
 *   - a reader never returns a record above tq_log_acked_lsn, and never reads past the end of
 *     the last completed write of a segment (bytes_written), so a window never caches bytes of
 *     a batch still in flight;
 *   - every batch is fully verified (header, area and payload checksums) each time a reader
 *     enters it: a bit that rots after open is reported as TQ_ERR_CORRUPT naming file, offset and
 *     LSN, never returned as data.
 * Lookups use the sparse index built at open and extended at submit: one entry per batch.
 */
#include "log_impl.h"

#include "tq_alloc.h"
#include "tq_assert.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#define READ_WINDOW_BYTES  (1u << 20)  /* iterators: sequential, read ahead 1 MiB */
#define POINT_WINDOW_BYTES (16u << 10) /* tq_log_read: at least the batch, at least 16 KiB */

/* ==== streaming scan (recovery) ======================================================== */

/* Reads in flight during a recovery scan: TQ_SCAN_DEPTH windows of io->window bytes (8 x 1 MiB),
 * enough to keep the disk queue busy while the window already read is hashed, and small enough
 * that the first bytes of a segment arrive early (a segment's reads start together: 4 x 4 MiB
 * made the first window wait for all four; docs/performance-storage.md, 2026-12-03).
 *
 * Memory: [slack][window 0][window 1]...[window DEPTH-1], window k of the segment in slot
 * k % DEPTH. Consecutive windows are contiguous in memory except at the wrap from the last slot
 * to the first; only there the unread rest of the region (the start of a batch straddling the
 * wrap, at most the slack) is copied in front of slot 0. A request larger than the slack falls
 * back to pread. */
#define STREAM_DEPTH TQ_SCAN_DEPTH

struct tq_scan_stream {
    struct io_uring *ring;
    int fd; /* O_DIRECT descriptor (own), or the segment's fd (not own) */
    bool fd_own;
    size_t window;     /* bytes per read, multiple of TQ_BATCH_ALIGN_BYTES */
    size_t slack;      /* bytes in front of slot 0 */
    uint8_t *base;     /* slot 0 (the scan's buffer, struct tq_scan_io: not own) */
    uint64_t limit;    /* logical end: nothing at or past it is returned */
    uint64_t k_first;  /* lowest window still held (read or in flight) */
    uint64_t k_end;    /* windows [k_first, k_end) are read and in the region */
    uint64_t k_submit; /* next window to submit; [k_end, k_submit) in flight or done */
    int32_t res[STREAM_DEPTH];
    bool done[STREAM_DEPTH];
    unsigned inflight;  /* reads whose CQE was not reaped */
    uint64_t cur_start; /* the region [cur_start, cur_end) is contiguous at cur_p */
    uint64_t cur_end;
    uint8_t *cur_p;
    bool failed; /* the request does not fit the pattern: the caller falls back to pread */
};

static uint8_t *slot_mem(const struct tq_scan_stream *s, uint64_t k) {
    return s->base + (size_t)(k % STREAM_DEPTH) * s->window;
}

static void stream_submit_more(struct tq_scan_stream *s) {
    unsigned submitted = 0;
    while (s->k_submit - s->k_first < STREAM_DEPTH && s->k_submit * s->window < s->limit) {
        uint64_t off = s->k_submit * s->window;
        uint64_t rest = s->limit - off;
        size_t len = rest < s->window ? (size_t)rest : s->window;
        /* O_DIRECT wants whole blocks; past the end of the file a read just comes back short */
        len = (len + TQ_BATCH_ALIGN_BYTES - 1) & ~(size_t)(TQ_BATCH_ALIGN_BYTES - 1);
        struct io_uring_sqe *sqe = io_uring_get_sqe(s->ring);
        if (sqe == NULL) break;
        io_uring_prep_read(sqe, s->fd, slot_mem(s, s->k_submit), (unsigned)len, off);
        io_uring_sqe_set_data64(sqe, s->k_submit % STREAM_DEPTH);
        s->done[s->k_submit % STREAM_DEPTH] = false;
        s->k_submit++;
        s->inflight++;
        submitted++;
    }
    if (submitted > 0) io_uring_submit(s->ring);
}

/* Reaps CQEs until window k's read is done. Returns false on a ring error. */
static bool stream_wait(struct tq_scan_stream *s, uint64_t k) {
    unsigned slot = (unsigned)(k % STREAM_DEPTH);
    while (!s->done[slot]) {
        TQ_ASSERT(s->inflight > 0);
        struct io_uring_cqe *cqe;
        int rc = io_uring_wait_cqe(s->ring, &cqe);
        if (rc == -EINTR) continue;
        if (rc < 0) return false;
        uint64_t done_slot = io_uring_cqe_get_data64(cqe);
        TQ_ASSERT(done_slot < STREAM_DEPTH);
        s->res[done_slot] = cqe->res;
        s->done[done_slot] = true;
        s->inflight--;
        io_uring_cqe_seen(s->ring, cqe);
    }
    return true;
}

static void stream_free(struct tq_scan_stream *s) {
    /* The buffer may be reused only once the kernel is done with it. */
    while (s->inflight > 0) {
        struct io_uring_cqe *cqe;
        int rc = io_uring_wait_cqe(s->ring, &cqe);
        if (rc == -EINTR) continue;
        if (rc < 0) tq_fatal("io_uring_wait_cqe (scan): %s", strerror(-rc));
        s->inflight--;
        io_uring_cqe_seen(s->ring, cqe);
    }
    if (s->fd_own) close(s->fd);
    tq_free(s, sizeof(*s));
}

void tq_scan_io_init(struct tq_scan_io *io, size_t window, size_t slack) {
    TQ_ASSERT(window > 0 && window % TQ_BATCH_ALIGN_BYTES == 0);
    TQ_ASSERT(slack % TQ_BATCH_ALIGN_BYTES == 0);
    memset(io, 0, sizeof(*io));
    io->window = window;
    io->slack = slack;
    struct io_uring *ring = tq_xalloc(sizeof(*ring));
    if (io_uring_queue_init(2 * STREAM_DEPTH, ring, 0) != 0) {
        tq_free(ring, sizeof(*ring));
        return;
    }
    io->ring = ring;
    io->mem_bytes = io->slack + STREAM_DEPTH * window;
    /* 2 MiB-aligned and backed by transparent huge pages where available: an O_DIRECT read of a
     * 1 MiB window then lands in one physically contiguous run (one block request instead of
     * two at this disk's 254-segment limit), as the writer's batch buffers do (log.c). */
    if (posix_memalign((void **)&io->mem, TQ_HUGE_PAGE_BYTES, io->mem_bytes) != 0) {
        io->mem = NULL;
        tq_scan_io_free(io);
        return;
    }
    (void)madvise(io->mem, io->mem_bytes - io->mem_bytes % TQ_HUGE_PAGE_BYTES, MADV_HUGEPAGE);
}

void tq_scan_io_free(struct tq_scan_io *io) {
    if (io->mem != NULL) free(io->mem);
    io->mem = NULL;
    if (io->ring != NULL) {
        io_uring_queue_exit(io->ring);
        tq_free(io->ring, sizeof(*io->ring));
    }
    io->ring = NULL;
}

void tq_cursor_stream(struct tq_seg_cursor *c, struct tq_scan_io *io, uint64_t start,
                      uint64_t limit) {
    TQ_ASSERT(c->stream == NULL && c->win_len == 0);
    if (c->seg->compressed || io == NULL || io->ring == NULL || start >= limit) return;
    struct tq_scan_stream *s = tq_xcalloc(1, sizeof(*s));
    s->ring = io->ring;
    s->window = io->window;
    s->slack = io->slack;
    s->base = io->mem + io->slack;
    s->limit = limit;
    s->k_first = start / s->window;
    s->k_end = s->k_first;
    s->k_submit = s->k_first;
    s->fd = io->buffered ? -1 : open(c->seg->path, O_RDONLY | O_DIRECT | O_CLOEXEC);
    s->fd_own = s->fd >= 0;
    if (s->fd < 0) s->fd = c->seg->fd; /* no O_DIRECT here (tmpfs): still several in flight */
    c->stream = s;
    stream_submit_more(s);
}

/* Makes [offset, offset+want) contiguous from the stream. Returns TQ_OK with *p, *avail (short
 * only at the limit), or TQ_ERR_IO; sets s->failed (the caller falls back to pread) when the
 * request does not fit the pattern (offsets never go back, want <= slack). */
static enum tq_err stream_get(struct tq_seg_cursor *c, uint64_t offset, size_t want,
                              const uint8_t **p, size_t *avail, struct tq_error *error) {
    struct tq_scan_stream *s = c->stream;
    bool region = s->k_end > s->k_first;
    if (want > s->slack || want > (STREAM_DEPTH - 1) * s->window ||
        (region && (offset < s->cur_start || offset > s->cur_end)) ||
        (!region && (offset < s->k_first * s->window || offset >= (s->k_first + 1) * s->window))) {
        s->failed = true;
        return TQ_OK;
    }
    for (;;) {
        if (region && (offset + want <= s->cur_end || s->cur_end >= s->limit)) {
            *p = s->cur_p + (offset - s->cur_start);
            *avail = (size_t)(s->cur_end - offset);
            return TQ_OK;
        }
        /* Windows wholly below offset are not needed any more: read further ahead into them. */
        while (s->k_first < s->k_end && (s->k_first + 1) * s->window <= offset) {
            s->k_first++;
        }
        stream_submit_more(s);
        uint64_t k = s->k_end;
        if (k >= s->k_submit || !stream_wait(s, k)) {
            s->failed = true;
            return TQ_OK;
        }
        int32_t res = s->res[k % STREAM_DEPTH];
        if (res < 0) {
            return tq_error_set(error, TQ_ERR_IO, "read %s at offset %" PRIu64 ": %s", c->seg->path,
                                k * s->window, strerror(-res));
        }
        /* A read that ends short of the window (or of the limit, the file size) is not taken
         * for the end of the file: the pread path re-reads and loops, as for any reader. */
        uint64_t end = k * s->window + (uint64_t)res;
        uint64_t expect_end = (k + 1) * s->window < s->limit ? (k + 1) * s->window : s->limit;
        if (end < expect_end) {
            s->failed = true;
            return TQ_OK;
        }
        uint8_t *mem = slot_mem(s, k);
        if (!region) {
            s->cur_start = k * s->window;
            s->cur_p = mem;
        } else if (k % STREAM_DEPTH == 0) {
            /* The wrap: the rest of the region goes in front of slot 0 (below offset nothing
             * is needed); every older window is free. */
            size_t keep = (size_t)(s->cur_end - offset);
            TQ_ASSERT(keep < want && keep <= s->slack);
            memmove(mem - keep, s->cur_p + (offset - s->cur_start), keep);
            s->cur_start = offset;
            s->cur_p = mem - keep;
            s->k_first = k;
        }
        TQ_ASSERT(s->cur_end == k * s->window || !region);
        s->k_end = k + 1;
        region = true;
        s->cur_end = end < s->limit ? end : s->limit;
    }
}

void tq_cursor_init(struct tq_seg_cursor *c, const struct tq_seg *seg) {
    memset(c, 0, sizeof(*c));
    c->seg = seg;
}

void tq_cursor_free(struct tq_seg_cursor *c) {
    if (c->stream != NULL) stream_free(c->stream);
    c->stream = NULL;
    if (c->buf != NULL) tq_free(c->buf, c->cap);
    if (c->zbuf != NULL) tq_free(c->zbuf, c->zcap);
    c->buf = NULL;
    c->zbuf = NULL;
    c->cap = 0;
    c->zcap = 0;
    c->win_len = 0;
}

static void ensure_cap(uint8_t **buf, size_t *cap, size_t want) {
    if (*cap >= want) return;
    if (*buf != NULL) tq_free(*buf, *cap);
    *buf = tq_xalloc(want);
    *cap = want;
}

/* Finds the block of a compressed segment holding logical offset, or -1. */
static int64_t zblock_find(const struct tq_seg *seg, uint64_t offset) {
    int64_t lo = 0, hi = (int64_t)seg->block_count - 1, found = -1;
    while (lo <= hi) {
        int64_t mid = (lo + hi) / 2;
        if (seg->blocks[mid].raw_offset <= offset) {
            found = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    if (found < 0) return -1;
    const struct tq_zseg_block *b = &seg->blocks[found];
    return offset < b->raw_offset + b->raw_bytes ? found : -1;
}

static enum tq_err cursor_fill_z(struct tq_seg_cursor *c, uint64_t offset, struct tq_error *error) {
    const struct tq_seg *seg = c->seg;
    int64_t bi = zblock_find(seg, offset);
    if (bi < 0) {
        c->win_offset = offset;
        c->win_len = 0;
        return TQ_OK;
    }
    const struct tq_zseg_block *b = &seg->blocks[bi];
    ensure_cap(&c->zbuf, &c->zcap, b->comp_bytes);
    ensure_cap(&c->buf, &c->cap, b->raw_bytes);
    ssize_t got = pread(seg->fd, c->zbuf, b->comp_bytes, (off_t)b->file_offset);
    if (got != (ssize_t)b->comp_bytes) {
        return tq_error_set(error, got < 0 ? TQ_ERR_IO : TQ_ERR_CORRUPT,
                            "%s: read of block %" PRId64 " at offset %" PRIu64 " failed: %s",
                            seg->path, bi, b->file_offset, got < 0 ? strerror(errno) : "short");
    }
    size_t out = ZSTD_decompress(c->buf, b->raw_bytes, c->zbuf, b->comp_bytes);
    if (ZSTD_isError(out) || out != b->raw_bytes) {
        c->win_len = 0;
        return tq_error_set(error, TQ_ERR_CORRUPT,
                            "corrupt log: %s offset %" PRIu64 " (compressed block %" PRId64
                            " of logical offset %" PRIu64 "): %s",
                            seg->path, b->file_offset, bi, b->raw_offset,
                            ZSTD_isError(out) ? ZSTD_getErrorName(out) : "wrong inflated size");
    }
    c->win_offset = b->raw_offset;
    c->win_len = b->raw_bytes;
    c->win_whole_batches = true;
    return TQ_OK;
}

enum tq_err tq_cursor_get(struct tq_seg_cursor *c, uint64_t offset, size_t want, uint64_t limit,
                          const uint8_t **p, size_t *avail, struct tq_error *error) {
    TQ_ASSERT(c->seg != NULL);
    TQ_ASSERT(want > 0);
    if (c->stream != NULL) {
        enum tq_err err = stream_get(c, offset, want, p, avail, error);
        if (err != TQ_OK || !c->stream->failed) return err;
        stream_free(c->stream); /* an unusual request: plain preads from here on */
        c->stream = NULL;
    }
    if (c->win_len > 0 && offset >= c->win_offset &&
        (offset + want <= c->win_offset + c->win_len ||
         (c->win_whole_batches && offset < c->win_offset + c->win_len))) {
        *p = c->buf + (offset - c->win_offset);
        *avail = (size_t)(c->win_offset + c->win_len - offset);
        return TQ_OK;
    }
    if (c->seg->compressed) {
        enum tq_err err = cursor_fill_z(c, offset, error);
        if (err != TQ_OK) return err;
    } else {
        size_t window = c->window_bytes != 0 ? c->window_bytes : READ_WINDOW_BYTES;
        size_t len = want > window ? want : window;
        if (offset >= limit) {
            len = 0;
        } else if (offset + len > limit) {
            len = (size_t)(limit - offset);
        }
        ensure_cap(&c->buf, &c->cap, len > 0 ? len : 1);
        size_t done = 0;
        while (done < len) {
            ssize_t got = pread(c->seg->fd, c->buf + done, len - done, (off_t)(offset + done));
            if (got < 0 && errno == EINTR) continue;
            if (got < 0) {
                c->win_len = 0;
                return tq_error_set(error, TQ_ERR_IO, "read %s at offset %" PRIu64 ": %s",
                                    c->seg->path, offset + done, strerror(errno));
            }
            if (got == 0) break;
            done += (size_t)got;
        }
        c->win_offset = offset;
        c->win_len = done;
        c->win_whole_batches = false;
    }
    if (offset < c->win_offset || offset >= c->win_offset + c->win_len) {
        *p = c->buf;
        *avail = 0;
        return TQ_OK;
    }
    *p = c->buf + (offset - c->win_offset);
    *avail = (size_t)(c->win_offset + c->win_len - offset);
    return TQ_OK;
}

int64_t tq_log_ref_find(const struct tq_log *log, uint64_t lsn) {
    int64_t lo = 0, hi = (int64_t)log->ref_count - 1, found = -1;
    while (lo <= hi) {
        int64_t mid = (lo + hi) / 2;
        if (log->refs[mid].lsn_first <= lsn) {
            found = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    if (found < 0) return -1;
    const struct tq_batch_ref *r = &log->refs[found];
    return lsn < r->lsn_first + r->record_count ? found : -1;
}

uint64_t tq_log_bytes_submitted(const struct tq_log *log) {
    return log->bytes_submitted;
}

uint64_t tq_log_bytes_after(const struct tq_log *log, uint64_t lsn) {
    uint64_t start = 0;
    if (lsn != 0 && log->lsn_first != 0 && lsn >= log->lsn_first) {
        int64_t ri = tq_log_ref_find(log, lsn);
        if (ri < 0) return 0; /* staged, not submitted (or past the end) */
        start = (uint64_t)ri + 1;
    }
    TQ_ASSERT(start <= log->ref_count);
    uint64_t bytes = 0;
    for (uint64_t i = start; i < log->ref_count; i++)
        bytes += log->refs[i].disk_bytes;
    return bytes;
}

/* Loads and verifies the batch of ref through cursor c (level: TQ_CHECK_FULL for iterators,
 * TQ_CHECK_RECORDS for point reads, which then check their one payload); *area_out points at
 * its records. */
static enum tq_err batch_load(const struct tq_log *log, struct tq_seg_cursor *c,
                              const struct tq_batch_ref *ref, enum tq_check_level level,
                              struct tq_batch_header *h, const uint8_t **area_out,
                              struct tq_error *error) {
    const struct tq_seg *seg = &log->segs[ref->seg_index];
    if (!c->bound || c->seg_index != ref->seg_index) {
        tq_cursor_free(c);
        tq_cursor_init(c, seg);
        c->seg_index = ref->seg_index;
        c->bound = true;
        /* Point reads are random (message bodies by LSN): read the batch, not 1 MiB. */
        if (c == &log->read_cursor) c->window_bytes = POINT_WINDOW_BYTES;
    }
    c->seg = seg;
    uint64_t limit = seg->compressed ? UINT64_MAX : seg->bytes_written;
    const uint8_t *p;
    size_t avail;
    enum tq_err err = tq_cursor_get(c, ref->offset, ref->disk_bytes, limit, &p, &avail, error);
    if (err != TQ_OK) return err;
    char why[200];
    enum tq_batch_check check = tq_batch_check_level(p, avail, level, h, why, sizeof(why));
    if (check == TQ_BATCH_VALID &&
        (h->lsn_first != ref->lsn_first || h->record_count != ref->record_count)) {
        snprintf(why, sizeof(why), "batch is not the one indexed (lsn %" PRIu64 ")", h->lsn_first);
        check = TQ_BATCH_BAD_HEADER;
    }
    if (check != TQ_BATCH_VALID) {
        return tq_error_set(error, TQ_ERR_CORRUPT,
                            "corrupt log: %s offset %" PRIu64 " (lsn %" PRIu64 "): %s", seg->path,
                            ref->offset, ref->lsn_first, why);
    }
    *area_out = p + TQ_BATCH_HEADER_BYTES;
    return TQ_OK;
}

static void record_fill(struct tq_log_record *record, uint64_t lsn, const struct tq_batch_header *h,
                        const struct tq_record_header *rh, const uint8_t *payload) {
    record->lsn = lsn;
    record->commit_us = h->commit_us;
    record->type = rh->type;
    record->flags = rh->flags;
    bool redacted = (rh->flags & TQ_RECORD_REDACTED) != 0;
    record->len = redacted ? 0 : rh->len;
    record->payload = redacted ? NULL : payload;
}

enum tq_err tq_log_read(struct tq_log *log, uint64_t lsn, struct tq_log_record *record, void *buf,
                        size_t cap, struct tq_error *error) {
    TQ_ASSERT(record != NULL);
    if (lsn == 0 || lsn > tq_log_acked_lsn(log)) {
        return tq_error_set(error, TQ_ERR_NOT_FOUND,
                            "lsn %" PRIu64 " is not in the log (acked end %" PRIu64 ")", lsn,
                            tq_log_acked_lsn(log));
    }
    int64_t ri = tq_log_ref_find(log, lsn);
    if (ri < 0) {
        return tq_error_set(error, TQ_ERR_NOT_FOUND,
                            "lsn %" PRIu64 " is not in the log (first %" PRIu64 ")", lsn,
                            log->lsn_first);
    }
    const struct tq_batch_ref *ref = &log->refs[ri];
    struct tq_batch_header h;
    const uint8_t *area;
    enum tq_err err = batch_load(log, &log->read_cursor, ref, TQ_CHECK_RECORDS, &h, &area, error);
    if (err != TQ_OK) return err;
    uint32_t offset = 0;
    struct tq_record_header rh;
    const uint8_t *payload = NULL;
    for (uint64_t i = ref->lsn_first; i <= lsn; i++) {
        bool ok = tq_batch_record_next(area, h.area_bytes, &offset, &rh, &payload);
        TQ_ASSERT(ok); /* the batch was verified: the walk cannot fail */
    }
    bool redacted = (rh.flags & TQ_RECORD_REDACTED) != 0;
    bool intact = true;
    if (redacted) {
        for (uint32_t i = 0; i < rh.len; i++)
            intact = intact && payload[i] == 0;
    } else {
        intact = XXH3_64bits(payload, rh.len) == rh.payload_hash;
    }
    if (!intact) {
        const struct tq_seg *seg = &log->segs[ref->seg_index];
        return tq_error_set(error, TQ_ERR_CORRUPT,
                            "corrupt log: %s offset %" PRIu64 " (lsn %" PRIu64
                            "): payload checksum mismatch",
                            seg->path, ref->offset, lsn);
    }
    record_fill(record, lsn, &h, &rh, payload);
    if (record->len > cap) {
        return tq_error_set(error, TQ_ERR_RESOURCE_EXHAUSTED,
                            "record %" PRIu64 " has %u bytes, "
                            "buffer %zu",
                            lsn, record->len, cap);
    }
    if (record->len > 0) memcpy(buf, payload, record->len);
    record->payload = record->len > 0 ? buf : NULL;
    return TQ_OK;
}

/* ==== iterators ========================================================================= */

struct tq_log_iter {
    struct tq_log *log;
    uint64_t next_lsn;
    int64_t ref_index; /* batch being walked, or -1 */
    struct tq_batch_header h;
    const uint8_t *area;
    uint32_t walk_offset;
    uint64_t walk_lsn; /* LSN of the record the walk offset points at */
    struct tq_seg_cursor cursor;
};

enum tq_err tq_log_iter_open(struct tq_log *log, uint64_t lsn_from, struct tq_log_iter **iter_out,
                             struct tq_error *error) {
    (void)error;
    struct tq_log_iter *it = tq_xcalloc(1, sizeof(*it));
    it->log = log;
    it->next_lsn = lsn_from < log->lsn_first || lsn_from == 0 ? log->lsn_first : lsn_from;
    if (it->next_lsn == 0) it->next_lsn = 1;
    it->ref_index = -1;
    *iter_out = it;
    return TQ_OK;
}

enum tq_err tq_log_iter_next(struct tq_log_iter *it, struct tq_log_record *record,
                             struct tq_error *error) {
    struct tq_log *log = it->log;
    if (it->next_lsn > tq_log_acked_lsn(log)) {
        return tq_error_set(error, TQ_ERR_NOT_FOUND, "end of log at lsn %" PRIu64,
                            it->next_lsn - 1);
    }
    if (it->ref_index < 0 || it->next_lsn >= it->h.lsn_first + it->h.record_count ||
        it->next_lsn < it->walk_lsn) {
        int64_t ri;
        if (it->ref_index >= 0 && (uint64_t)it->ref_index + 1 < log->ref_count &&
            log->refs[it->ref_index + 1].lsn_first == it->next_lsn) {
            ri = it->ref_index + 1;
        } else {
            ri = tq_log_ref_find(log, it->next_lsn);
        }
        if (ri < 0) {
            return tq_error_set(error, TQ_ERR_NOT_FOUND, "lsn %" PRIu64 " not in the log",
                                it->next_lsn);
        }
        enum tq_err err =
            batch_load(log, &it->cursor, &log->refs[ri], TQ_CHECK_FULL, &it->h, &it->area, error);
        if (err != TQ_OK) {
            it->ref_index = -1;
            return err;
        }
        it->ref_index = ri;
        it->walk_offset = 0;
        it->walk_lsn = it->h.lsn_first;
    }
    struct tq_record_header rh;
    const uint8_t *payload = NULL;
    while (it->walk_lsn <= it->next_lsn) {
        bool ok = tq_batch_record_next(it->area, it->h.area_bytes, &it->walk_offset, &rh, &payload);
        TQ_ASSERT(ok);
        it->walk_lsn++;
    }
    record_fill(record, it->next_lsn, &it->h, &rh, payload);
    it->next_lsn++;
    return TQ_OK;
}

void tq_log_iter_close(struct tq_log_iter *it) {
    if (it == NULL) return;
    tq_cursor_free(&it->cursor);
    tq_free(it, sizeof(*it));
}

size_t tq_log_segments(const struct tq_log *log, uint64_t *lsns, size_t cap) {
    size_t n = 0;
    for (uint32_t i = 0; i < log->seg_count && n < cap; i++)
        lsns[n++] = log->segs[i].lsn_first;
    return n;
}
