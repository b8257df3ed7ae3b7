/* storage/log.c: open/recovery, the group-commit write path and segment management.
 *
 * Owns the segment files of DIR/log/, the spare segment, the batch buffers and the state of
 * the batches in flight. Byte layouts: format.h and docs/log-format.md.
 *
 * Write path (one event loop owns the log). Records are staged into the open batch buffer;
 * tq_log_submit() seals the open batch (header, hashes, chain value) as soon as fewer than
 * batches_inflight_max batches are in flight, and prepares on the caller's ring one
 * IORING_OP_WRITE linked (IOSQE_IO_LINK) to one fdatasync (plus an fsync of log/ when the batch
 * is the first of a new segment). Records staged meanwhile fill another buffer and go out as
 * soon as a slot frees. Batch writes use an O_DIRECT descriptor when the file system takes it
 * (no page-cache copy); fsyncs and reads use the plain one. With options.dsync_writes the write
 * carries RWF_DSYNC and is its own sync (no linked fdatasync; the same acknowledgement rule).
 * Invariants:
 *   - batches in flight are a FIFO and are acknowledged strictly in order: batch N counts as
 *     durable only when its own write completed, its own fdatasync (issued after that write
 *     completed, by the link) succeeded, and every earlier batch is durable. An fdatasync does
 *     not cover a write still in flight, so batch N+1's sync proves nothing about batch N;
 *     the header's lsn_durable is the durable LSN when the batch was sealed (a lower bound,
 *     exact when one batch is in flight), which is what recovery's torn-tail rule needs;
 *   - an interval-mode sync group is never in flight together with a batch;
 *   - durable_lsn <= written_lsn < next_lsn, and they only grow;
 *   - a short write completes its linked syncs with -ECANCELED: the rest is written and synced
 *     again before anything is acknowledged; any other negative result is fail-stop (tq_fatal):
 *     after a failed fdatasync the kernel may have dropped the dirty pages, a retry would lie;
 *   - batches start at 4 KiB boundaries and are padded, so no write touches a page holding
 *     acknowledged bytes; a batch never spans segments (segments are sealed at submit time);
 *   - a batch is sent while another is in flight only if it or the batches in flight hold
 *     pipeline_bytes_min (below that the flush dominates: two small batches, two flushes);
 *   - a spare segment is preallocated (fallocate, then zero-filled through the ring, in idle
 *     turns and as credit earned by small batches, because overwriting written blocks makes
 *     fdatasync cheaper than converting unwritten extents);
 *     an append that would need a segment that cannot be allocated is refused with NO_SPACE
 *     before anything is staged;
 *   - with recycle_segments_max, the spare is preferably a recycled segment file (the old .seg of
 *     a compressed segment: written, synced blocks); its earlier life's batches have LSNs below
 *     the new segment's name, and recovery reads such a stale header as the end of the data,
 *     never as a batch or as evidence; a segment's end is marked (zero block) at seal and close
 *     when old bytes would follow it (seg_mark_end).
 *
 * Recovery (tq_log_open) verifies every batch and the chain, and stops at the first batch that
 * is not valid. It is a torn tail if no later batch anywhere in the log says (by lsn_durable)
 * that the lost LSN had been durable; then the tail is cut (zeroed) with one log line.
 * Otherwise it is corruption: open refuses, naming file, offset and LSN (or, with repair, cuts
 * there and says exactly what it dropped). A read-only open never cuts; when valid batches
 * follow the stop (a hole) it stops there only if they are a live writer's batches in flight
 * (read_only_hole: tail segment, bounded depth, DIR/LOCK held), else it refuses.
 */
#include "log_impl.h"

#include "faults.h"
#include "tq_alloc.h"
#include "tq_assert.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

/* Spare zero-fill: one 256 KiB write at a time, when idle or earned (zero_submit). */
#define ZERO_CHUNK_BYTES (256u << 10)
/* A batch smaller than this is "small" for the zero-fill's credit (zero_submit): bound by the
 * flush, not by bandwidth. Its own constant, not pipeline_bytes_min: with pipeline_bytes_min = 1
 * (any batch may go out beside another) no batch would earn credit, and under steady load the
 * spare would never be zeroed (every commit after the roll then converts unwritten extents). */
#define ZERO_EARN_BATCH_BYTES_MAX TQ_PIPELINE_BYTES_DEFAULT_MIN
/* Recovery: pread window when not streaming; bytes per streaming read (8 in flight, read.c);
 * largest batch the stream serves (twice the default batch_bytes_max; larger ones: pread). */
#define SCAN_WINDOW_BYTES       (4u << 20)
#define SCAN_STREAM_BYTES       (1u << 20)
#define SCAN_SLACK_BYTES        (8u << 20)
#define SPARE_NAME              "spare.seg.tmp"
#define OPEN_ZERO_BYTES         (4u << 20) /* head of a segment created at open that is zero-filled */
#define WRITERS_WAIT_MS_DEFAULT 10000 /* open waits this long for a dead writer's I/O to land */

/* ==== small helpers ==================================================================== */

void tq_log_line(const struct tq_log *log, const char *fmt, ...) {
    char line[TQ_ERROR_MSG_BYTES_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (log->opt.log_line != NULL) {
        log->opt.log_line(log->opt.log_line_ctx, line);
    } else {
        fprintf(stderr, "ticketq: storage: %s\n", line);
    }
}

static char *path_join(const char *a, const char *b) {
    size_t n = strlen(a) + 1 + strlen(b) + 1;
    char *p = tq_xalloc(n);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

static void str_free(char *s) {
    if (s != NULL) tq_free(s, strlen(s) + 1);
}

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int tq_log_blocking_fsync(struct tq_log *log, int fd, const char *path) {
    uint64_t seq = 0;
    if (log->opt.faults != NULL) {
        uint32_t short_len;
        int injected = tq_io_faults_on_op(log->opt.faults, TQ_IO_OP_FSYNC, 0, &short_len);
        if (injected < 0) return injected;
        seq = tq_io_faults_seq(log->opt.faults);
    }
    if (fsync(fd) != 0) return -errno;
    if (log->opt.faults != NULL) tq_io_faults_on_synced(log->opt.faults, path, seq);
    return 0;
}

static void seg_free(struct tq_seg *seg) {
    if (seg->fd >= 0) close(seg->fd);
    if (seg->wfd >= 0) close(seg->wfd);
    str_free(seg->path);
    if (seg->blocks != NULL) tq_free(seg->blocks, seg->block_count * sizeof(*seg->blocks));
    memset(seg, 0, sizeof(*seg));
    seg->fd = -1;
    seg->wfd = -1;
}

static struct tq_seg *seg_push(struct tq_log *log) {
    if (log->seg_count == log->seg_cap) {
        uint32_t cap = log->seg_cap == 0 ? 16 : log->seg_cap * 2;
        log->segs =
            tq_xrealloc(log->segs, log->seg_cap * sizeof(*log->segs), cap * sizeof(*log->segs));
        log->seg_cap = cap;
    }
    struct tq_seg *seg = &log->segs[log->seg_count++];
    memset(seg, 0, sizeof(*seg));
    seg->fd = -1;
    seg->wfd = -1;
    return seg;
}

static void ref_push(struct tq_log *log, const struct tq_batch_ref *ref) {
    if (log->ref_count == log->ref_cap) {
        uint64_t cap = log->ref_cap == 0 ? 1024 : log->ref_cap * 2;
        log->refs =
            tq_xrealloc(log->refs, log->ref_cap * sizeof(*log->refs), cap * sizeof(*log->refs));
        log->ref_cap = cap;
    }
    if (log->ref_count > 0) {
        TQ_ASSERT(log->refs[log->ref_count - 1].lsn_first < ref->lsn_first);
    }
    log->refs[log->ref_count++] = *ref;
}

static char *seg_name(const char *log_dir, uint64_t lsn, const char *ext) {
    char name[64];
    snprintf(name, sizeof(name), "%020" PRIu64 ".%s", lsn, ext);
    return path_join(log_dir, name);
}

/* Parses "<20 digits>.seg" / ".zseg". Returns the LSN or 0. */
static uint64_t parse_seg_name(const char *name, bool *compressed) {
    size_t n = strlen(name);
    if (n < 24) return 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9') return 0;
    }
    if (strcmp(name + 20, ".seg") == 0) {
        *compressed = false;
    } else if (strcmp(name + 20, ".zseg") == 0) {
        *compressed = true;
    } else {
        return 0;
    }
    return strtoull(name, NULL, 10);
}

/* ==== the spare segment ================================================================ */

static uint64_t file_size(int fd);
static bool block_is_zero(const uint8_t *p, size_t n);

void tq_log_recycle_add(struct tq_log *log, char *path) {
    TQ_ASSERT(path != NULL);
    TQ_ASSERT(!log->opt.read_only);
    if (log->recycle_count >= log->opt.recycle_segments_max) {
        unlink(path); /* not part of the log: no directory fsync needed */
        str_free(path);
        return;
    }
    log->recycle_paths[log->recycle_count++] = path;
}

/* Makes the spare out of a recycled segment file, if the pool has one that no reader holds.
 * A read-only handle (another process: verify, replay, backup) may still read the file by the
 * descriptor it opened while it was a segment; such handles hold an OFD read lock on it
 * (segments_load), so a file whose write lock is refused is removed instead of overwritten
 * (the reader keeps its inode). Returns true when the spare is ready. */
static bool spare_from_pool(struct tq_log *log) {
    TQ_ASSERT(!log->spare_ready && log->spare_fd < 0);
    TQ_ASSERT(log->recycle_count <= TQ_RECYCLE_SEGMENTS_MAX);
    while (log->recycle_count > 0) {
        char *path = log->recycle_paths[--log->recycle_count];
        log->recycle_paths[log->recycle_count] = NULL;
        int fd = open(path, O_RDWR | O_CLOEXEC);
        bool ok = fd >= 0 && file_size(fd) == log->opt.segment_bytes_max;
        struct flock lk = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
        if (ok && fcntl(fd, F_OFD_SETLK, &lk) != 0) ok = false; /* a reader holds it */
        if (ok) {
            lk.l_type = F_UNLCK; /* readers of the segment it becomes may lock it again */
            (void)fcntl(fd, F_OFD_SETLK, &lk);
            ok = rename(path, log->spare_path) == 0;
        }
        if (!ok) {
            if (fd >= 0) close(fd);
            unlink(path);
            str_free(path);
            continue;
        }
        str_free(path);
        log->spare_fd = fd;
        log->spare_ready = true;
        log->spare_recycled = true;
        log->no_space = false;
        /* Every block of it was written and synced in its earlier life (batches, or the zero
         * fill, or at worst fallocated zeros that were never written: correct either way). */
        log->spare_zeroed = log->opt.segment_bytes_max;
        log->zero_credit = 0;
        log->zero_done = true;
        return true;
    }
    return false;
}

/* Creates and preallocates the spare segment. Returns TQ_OK, or TQ_ERR_NO_SPACE / TQ_ERR_IO
 * (and sets log->no_space for ENOSPC). */
static enum tq_err spare_prepare(struct tq_log *log, struct tq_error *error) {
    TQ_ASSERT(!log->spare_ready);
    TQ_ASSERT(!log->opt.read_only);
    if (spare_from_pool(log)) return TQ_OK;
    log->spare_recycled = false;
    int fd = open(log->spare_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return tq_error_set(error, TQ_ERR_IO, "create %s: %s", log->spare_path, strerror(errno));
    }
    int rc = 0;
    if (log->opt.faults != NULL) {
        uint32_t short_len;
        rc = tq_io_faults_on_op(log->opt.faults, TQ_IO_OP_PREALLOC, 0, &short_len);
    }
    if (rc == 0) rc = -posix_fallocate(fd, 0, (off_t)log->opt.segment_bytes_max);
    if (rc != 0) {
        close(fd);
        unlink(log->spare_path);
        if (rc == -ENOSPC) {
            log->no_space = true;
            return tq_error_set(error, TQ_ERR_NO_SPACE,
                                "no space to preallocate a %" PRIu64 "-byte segment in %s",
                                log->opt.segment_bytes_max, log->log_dir);
        }
        return tq_error_set(error, TQ_ERR_IO, "fallocate %s: %s", log->spare_path, strerror(-rc));
    }
    log->spare_fd = fd;
    log->spare_ready = true;
    log->no_space = false;
    log->spare_zeroed = 0;
    log->zero_credit = 0;
    log->zero_done = log->opt.spare_no_prezero;
    return TQ_OK;
}

/* ==== ring plumbing ==================================================================== */

/* user_data: tag (8 bits) | op (8 bits) | unit slot + 1 (8 bits; 0 = not a batch) | sequence. */
static uint64_t op_user_data(struct tq_log *log, enum tq_log_op op, unsigned slot_plus1) {
    log->op_seq++;
    return ((uint64_t)log->opt.ring_tag << 56) | ((uint64_t)op << 48) |
           ((uint64_t)slot_plus1 << 40) | (log->op_seq & 0xffffffffffull);
}

static struct io_uring_sqe *get_sqe(struct tq_log *log, struct io_uring *ring) {
    /* All of a log's SQEs in flight are on one ring (a CQE must come back where it is awaited). */
    TQ_ASSERT(log->ops_inflight == 0 || log->ops_ring == ring);
    log->ops_ring = ring;
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (sqe == NULL) {
        io_uring_submit(ring);
        sqe = io_uring_get_sqe(ring);
    }
    TQ_ASSERT(sqe != NULL);
    return sqe;
}

/* Makes sure count SQEs can be prepared without a submit in between (a linked chain must not
 * be split across submits). */
static void reserve_sqes(struct io_uring *ring, unsigned count) {
    if (io_uring_sq_space_left(ring) < count) io_uring_submit(ring);
    TQ_ASSERT(io_uring_sq_space_left(ring) >= count);
}

/* Asks the seam about one op and records in (set, res) the override to apply at its
 * completion (per unit for batch ops: several batches may be in flight). */
static void op_fault(struct tq_log *log, bool *set, int32_t *res_out, enum tq_io_op_kind kind,
                     uint32_t len) {
    *set = false;
    if (log->opt.faults == NULL) return;
    uint32_t short_len = 0;
    int res = tq_io_faults_on_op(log->opt.faults, kind, len, &short_len);
    if (res < 0) {
        *set = true;
        *res_out = res;
    } else if (short_len > 0) {
        *set = true;
        *res_out = (int32_t)short_len;
    }
}

/* Prepares an fsync; unit is NULL for the ops of the interval sync group and the spare. */
static void prep_fsync(struct tq_log *log, struct io_uring *ring, struct tq_log_unit *unit,
                       enum tq_log_op op, int fd, bool datasync, bool linked) {
    unsigned slot_plus1 = 0;
    if (unit != NULL) {
        op_fault(log, &unit->override_set[op], &unit->override_res[op], TQ_IO_OP_FSYNC, 0);
        slot_plus1 = (unsigned)(unit - log->units) + 1u;
    } else {
        op_fault(log, &log->override_set[op], &log->override_res[op], TQ_IO_OP_FSYNC, 0);
    }
    struct io_uring_sqe *sqe = get_sqe(log, ring);
    io_uring_prep_fsync(sqe, fd, datasync ? IORING_FSYNC_DATASYNC : 0);
    if (linked) sqe->flags |= IOSQE_IO_LINK;
    io_uring_sqe_set_data64(sqe, op_user_data(log, op, slot_plus1));
    log->ops_inflight++;
}

/* The fd batch writes go through: a separate description of the segment, O_DIRECT when the file
 * system takes it (batches are 4 KiB-aligned in memory, on disk and in length), holding an
 * exclusive flock. The lock lives as long as the description, and a write in flight holds a
 * reference to it: a writer killed with writes in flight keeps its locks until the kernel has
 * finished them, and tq_log_open waits for that (writers_wait) before it reads the tail. */
static int seg_write_fd(struct tq_log *log, struct tq_seg *seg) {
    if (seg->wfd >= 0) return seg->wfd;
    int fd = -1;
    if (!log->opt.buffered_writes) fd = open(seg->path, O_WRONLY | O_DIRECT | O_CLOEXEC);
    seg->wfd_direct = fd >= 0;
    if (fd < 0) fd = open(seg->path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) tq_fatal("open %s for writing: %s", seg->path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        tq_fatal("lock %s: %s (another process is writing this log)", seg->path, strerror(errno));
    }
    seg->wfd = fd;
    return fd;
}

/* Prepares the write of the unwritten rest of a unit's batch and its syncs. */
static unsigned batch_prep_chain(struct tq_log *log, struct io_uring *ring, struct tq_log_unit *u) {
    TQ_ASSERT(u->done < u->bytes);
    struct tq_seg *seg = &log->segs[u->seg];
    bool always = log->opt.fsync_mode == TQ_FSYNC_ALWAYS;
    TQ_ASSERT(!u->dsync || always);
    /* ALWAYS: write -> fdatasync (dsync: one RWF_DSYNC write), then maybe -> fsync(log/) */
    unsigned count = always ? 1u + (u->dsync ? 0u : 1u) + (u->dirsync ? 1u : 0u) : 1u;
    reserve_sqes(ring, count);

    int wfd = seg_write_fd(log, seg);
    if (seg->wfd_direct) {
        /* O_DIRECT needs aligned offsets: after a short write, rewrite from the last 4 KiB
         * boundary (bytes of this same, unacknowledged batch). */
        u->done -= u->done % TQ_BATCH_ALIGN_BYTES;
    }
    uint32_t len = u->bytes - u->done;
    uint64_t offset = u->offset + u->done;
    op_fault(log, &u->override_set[TQ_LOG_OP_WRITE], &u->override_res[TQ_LOG_OP_WRITE],
             TQ_IO_OP_WRITE, len);
    if (u->dsync) {
        /* The write is also the sync: the seam counts (and may fail) it as one, and the write's
         * completion applies that verdict (tq_log_complete). */
        op_fault(log, &u->override_set[TQ_LOG_OP_FSYNC], &u->override_res[TQ_LOG_OP_FSYNC],
                 TQ_IO_OP_FSYNC, 0);
    }
    if (log->opt.faults != NULL) {
        tq_io_faults_on_write(log->opt.faults, seg->path, seg->fd, offset, len);
        u->sync_seq = tq_io_faults_seq(log->opt.faults);
    }
    unsigned slot_plus1 = (unsigned)(u - log->units) + 1u;
    struct io_uring_sqe *sqe = get_sqe(log, ring);
    io_uring_prep_write(sqe, wfd, log->bufs[u->buf].mem + u->done, len, offset);
    if (u->dsync) sqe->rw_flags = RWF_DSYNC;
    if (always && count > 1) sqe->flags |= IOSQE_IO_LINK;
    io_uring_sqe_set_data64(sqe, op_user_data(log, TQ_LOG_OP_WRITE, slot_plus1));
    log->ops_inflight++;
    if (always && !u->dsync) {
        prep_fsync(log, ring, u, TQ_LOG_OP_FSYNC, seg->fd, true, u->dirsync);
    }
    if (always && u->dirsync) {
        prep_fsync(log, ring, u, TQ_LOG_OP_DIRSYNC, log->log_dir_fd, false, false);
    }
    u->pending = count;
    u->failed_link = false;
    return count;
}

/* The fd the spare's zero-fill writes go through: an O_DIRECT description when the file system
 * takes it, so the zeros never sit dirty in the page cache for the spare's final fdatasync to
 * flush in one go (64 MiB took 33-37 ms here and stalled the batch fdatasyncs beside it,
 * docs/performance-server.md); that sync then only commits the extent conversions. */
static int spare_zero_fd(struct tq_log *log) {
    if (log->spare_dfd == -1) {
        log->spare_dfd = -2;
        if (!log->opt.buffered_writes && log->opt.segment_bytes_max % TQ_BATCH_ALIGN_BYTES == 0) {
            int fd = open(log->spare_path, O_WRONLY | O_DIRECT | O_CLOEXEC);
            if (fd >= 0) log->spare_dfd = fd;
        }
    }
    bool aligned =
        log->spare_zeroed % TQ_BATCH_ALIGN_BYTES == 0; /* after a short write: buffered */
    return log->spare_dfd >= 0 && aligned ? log->spare_dfd : log->spare_fd;
}

static void spare_dfd_close(struct tq_log *log) {
    if (log->spare_dfd >= 0) close(log->spare_dfd);
    log->spare_dfd = -1;
}

/* Makes the 4 KiB block at end (where the data of seg ends) read as the end of its data: zeros
 * or a stale batch header. Only a recycled file can hold anything else there (its earlier
 * life's bytes from the middle of one of its batches, which recovery cannot tell from a torn
 * batch); that block is overwritten with zeros and synced. Blocking, once per segment: when it
 * is sealed (before the next segment exists, so no later batch can be acknowledged while the
 * mark is not durable) and at close. Returns 0 or a negative errno. */
static int seg_mark_end(struct tq_log *log, struct tq_seg *seg, uint64_t end) {
    TQ_ASSERT(!seg->compressed);
    TQ_ASSERT(end % TQ_BATCH_ALIGN_BYTES == 0);
    if (end + TQ_BATCH_ALIGN_BYTES > file_size(seg->fd)) return 0;
    _Alignas(8) uint8_t block[TQ_BATCH_ALIGN_BYTES];
    ssize_t got = pread(seg->fd, block, sizeof(block), (off_t)end);
    if (got != (ssize_t)sizeof(block)) return got < 0 ? -errno : -EIO;
    if (block_is_zero(block, sizeof(block))) return 0;
    struct tq_batch_header h;
    char why[8];
    enum tq_batch_check check = tq_batch_check(block, sizeof(block), false, &h, why, sizeof(why));
    if ((check == TQ_BATCH_VALID || check == TQ_BATCH_TRUNCATED) &&
        tq_batch_header_stale(&h, seg->lsn_first)) {
        return 0;
    }
    if (log->opt.faults != NULL) {
        tq_io_faults_on_write(log->opt.faults, seg->path, seg->fd, end, sizeof(block));
    }
    memset(block, 0, sizeof(block));
    ssize_t put = pwrite(seg->fd, block, sizeof(block), (off_t)end);
    if (put != (ssize_t)sizeof(block)) return put < 0 ? -errno : -EIO;
    return tq_log_blocking_fsync(log, seg->fd, seg->path);
}

/* Seals the tail segment and makes the spare the new tail, named after lsn_first. */
static void segment_roll(struct tq_log *log, uint64_t lsn_first) {
    TQ_ASSERT(log->spare_ready);
    TQ_ASSERT(log->tail_offset > 0);
    uint32_t old = log->seg_count - 1;
    int mark = seg_mark_end(log, &log->segs[old], log->tail_offset);
    if (mark < 0) {
        tq_fatal("end mark of %s at offset %" PRIu64 " (sealing before lsn %" PRIu64 "): %s",
                 log->segs[old].path, log->tail_offset, lsn_first, strerror(-mark));
    }
    /* Interval mode: the sealed segment needs one more fdatasync if anything submitted to it
     * is not durable yet (written or still in flight). */
    if (log->opt.fsync_mode == TQ_FSYNC_INTERVAL && log->segs[old].lsn_last > log->durable_lsn) {
        log->prev_unsynced_seg = old;
    }
    char *path = seg_name(log->log_dir, lsn_first, "seg");
    if (rename(log->spare_path, path) != 0) {
        tq_fatal("rename %s -> %s (lsn %" PRIu64 "): %s", log->spare_path, path, lsn_first,
                 strerror(errno));
    }
    struct tq_seg *seg = seg_push(log);
    seg->lsn_first = lsn_first;
    seg->lsn_last = lsn_first - 1;
    seg->path = path;
    seg->fd = log->spare_fd;
    log->spare_fd = -1;
    spare_dfd_close(log);
    log->spare_ready = false;
    log->tail_offset = 0;
    log->dir_sync_needed = true;
    struct tq_error error;
    if (spare_prepare(log, &error) != TQ_OK) {
        tq_log_line(log, "spare segment not prepared: %s", error.msg);
    }
}

/* Batch buffers of at least half a huge page are 2 MiB-aligned and ask for transparent huge
 * pages over their size rounded to the nearest whole huge page (a 1.5 MiB buffer gets one, the
 * default 4 MiB + 4 KiB gets two and a small page): an O_DIRECT write from physically contiguous
 * 2 MiB runs leaves the block layer in fewer, larger requests (from 4 KiB pages a write is cut
 * at the device's segment limit, 254 pages per request here: ~450 KiB requests against ~1.1 MiB;
 * +30-45% durable bandwidth for 64 KiB x 256, docs/performance-storage.md 2026-12-03 14:42). */

static void buf_alloc(struct tq_batch_buf *buf, uint32_t batch_bytes_max) {
    buf->cap = (size_t)tq_batch_disk_bytes(batch_bytes_max);
    size_t huge = (buf->cap + TQ_HUGE_PAGE_BYTES / 2) / TQ_HUGE_PAGE_BYTES * TQ_HUGE_PAGE_BYTES;
    size_t align = huge > 0 ? TQ_HUGE_PAGE_BYTES : TQ_BATCH_ALIGN_BYTES;
    buf->raw_bytes = (huge > buf->cap ? huge : buf->cap) + align;
    buf->raw = tq_xalloc(buf->raw_bytes);
    uintptr_t mask = (uintptr_t)align - 1;
    uintptr_t a = ((uintptr_t)buf->raw + mask) & ~mask;
    buf->mem = buf->raw + (a - (uintptr_t)buf->raw);
    TQ_ASSERT(((uintptr_t)buf->mem % TQ_BATCH_ALIGN_BYTES) == 0);
    /* Advice only: without THP (or with it off) the buffer is plain pages. */
    if (huge > 0) (void)madvise(buf->mem, huge, MADV_HUGEPAGE);
}

/* Picks a buffer no unit owns as the new open batch (allocated on first use). */
static void open_next_buf(struct tq_log *log) {
    for (unsigned i = 0; i < TQ_LOG_BUFS_MAX; i++) {
        struct tq_batch_buf *b = &log->bufs[i];
        if (b->busy) continue;
        if (b->mem == NULL) buf_alloc(b, log->opt.batch_bytes_max);
        log->open_buf = i;
        b->area_bytes = 0;
        b->record_count = 0;
        b->lsn_first = log->next_lsn;
        return;
    }
    TQ_ASSERT(false && "no free batch buffer");
}

/* CLOCK_MONOTONIC in microseconds (on_batch_acked's submit-to-acknowledgement time). */
static uint64_t mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Seals the open batch and prepares its I/O as a new unit. Returns the number of SQEs. */
static unsigned batch_submit(struct tq_log *log, struct io_uring *ring, uint64_t stamp_us) {
    struct tq_batch_buf *buf = &log->bufs[log->open_buf];
    TQ_ASSERT(buf->record_count > 0);
    TQ_ASSERT(log->unit_count < log->units_max && !log->sync_inflight);
    uint64_t disk = tq_batch_disk_bytes(buf->area_bytes);
    TQ_ASSERT(disk <= buf->cap);
    if (log->tail_offset + disk > log->opt.segment_bytes_max) {
        segment_roll(log, buf->lsn_first);
    }
    /* lsn_durable is what is durable now: with batches in flight it can lag behind the
     * previous batch; it only has to be a true lower bound (recovery's torn-tail evidence). */
    struct tq_batch_header h = {
        .magic = TQ_BATCH_MAGIC,
        .version = TQ_FORMAT_VERSION,
        .lsn_first = buf->lsn_first,
        .lsn_durable = log->durable_lsn,
        .commit_us = stamp_us,
        .record_count = buf->record_count,
        .area_bytes = buf->area_bytes,
        .area_hash = tq_batch_area_hash(buf->mem + TQ_BATCH_HEADER_BYTES, buf->area_bytes),
        .chain_prev = log->chain_head,
    };
    TQ_ASSERT(h.lsn_durable < h.lsn_first);
    tq_batch_header_seal(&h);
    memcpy(buf->mem, &h, sizeof(h));
    memset(buf->mem + TQ_BATCH_HEADER_BYTES + buf->area_bytes, 0,
           disk - TQ_BATCH_HEADER_BYTES - buf->area_bytes);
    log->chain_head = h.header_hash;

    uint32_t seg_index = log->seg_count - 1;
    struct tq_seg *seg = &log->segs[seg_index];
    struct tq_batch_ref ref = {
        .lsn_first = h.lsn_first,
        .offset = log->tail_offset,
        .seg_index = seg_index,
        .disk_bytes = (uint32_t)disk,
        .record_count = h.record_count,
    };
    ref_push(log, &ref);
    if (log->lsn_first == 0) log->lsn_first = h.lsn_first;
    seg->lsn_last = h.lsn_first + h.record_count - 1;
    seg->bytes_used = log->tail_offset + disk;

    unsigned slot = (log->unit_head + log->unit_count) % TQ_LOG_UNITS_MAX;
    struct tq_log_unit *u = &log->units[slot];
    memset(u, 0, sizeof(*u));
    log->unit_count++;
    u->buf = log->open_buf;
    u->seg = seg_index;
    u->offset = log->tail_offset;
    u->bytes = (uint32_t)disk;
    u->lsn_last = seg->lsn_last;
    u->records = h.record_count;
    if (log->opt.on_batch_acked != NULL) u->submit_mono_us = mono_us();
    u->dirsync = log->dir_sync_needed && log->opt.fsync_mode == TQ_FSYNC_ALWAYS;
    u->dsync = log->opt.dsync_writes && log->opt.fsync_mode == TQ_FSYNC_ALWAYS;
    buf->busy = true;
    log->tail_offset += disk;
    log->bytes_submitted += disk;
    /* A small batch leaves the disk idle for most of its round trip (the flush dominates):
     * earn as many zero-fill bytes for the spare as it wrote (zero_submit). */
    if (disk < ZERO_EARN_BATCH_BYTES_MAX && log->spare_ready && !log->zero_done) {
        log->zero_credit += disk;
    }
    open_next_buf(log);
    return batch_prep_chain(log, ring, u);
}

/* Interval mode: fdatasync the tail (and a just-sealed segment, and log/ if needed). Only when
 * no batch is in flight: the sync then covers every write it is credited with. */
static unsigned sync_submit(struct tq_log *log, struct io_uring *ring) {
    TQ_ASSERT(log->unit_count == 0 && !log->sync_inflight);
    TQ_ASSERT(log->written_lsn > log->durable_lsn);
    unsigned count =
        1u + (log->prev_unsynced_seg >= 0 ? 1u : 0u) + (log->dir_sync_needed ? 1u : 0u);
    reserve_sqes(ring, count);
    log->sync_inflight = true;
    log->sync_target_lsn = log->written_lsn;
    log->sync_seq = log->opt.faults != NULL ? tq_io_faults_seq(log->opt.faults) : 0;
    log->sync_pending = count;
    prep_fsync(log, ring, NULL, TQ_LOG_OP_FSYNC, log->segs[log->seg_count - 1].fd, true, false);
    if (log->prev_unsynced_seg >= 0) {
        prep_fsync(log, ring, NULL, TQ_LOG_OP_PREVSYNC, log->segs[log->prev_unsynced_seg].fd, true,
                   false);
    }
    if (log->dir_sync_needed) {
        prep_fsync(log, ring, NULL, TQ_LOG_OP_DIRSYNC, log->log_dir_fd, false, false);
    }
    log->last_sync_us = now_us();
    return count;
}

/* One zero-fill write (or the final fdatasync) of the spare, if one is due. Only from
 * tq_log_submit, and either when the log is idle (nothing in flight, nothing staged after the
 * caller's turn) or when small batches have earned it (zero_credit: one zero byte per byte of
 * batches below ZERO_EARN_BATCH_BYTES_MAX). Large batches earn nothing: they are bandwidth-bound
 * and zero-filling doubles the bytes written; small ones are flush-bound, the disk has bandwidth to
 * spare, and their fdatasync is 30-45% faster on written blocks (docs/performance-storage.md).
 * At 1:1 the spare is zeroed about when the tail is full. A spare that is not fully zeroed is
 * still correct, only its fdatasyncs are slower. */
static unsigned zero_submit(struct tq_log *log, struct io_uring *ring) {
    if (!log->spare_ready || log->zero_done || log->zero_inflight) return 0;
    bool idle =
        log->unit_count == 0 && !log->sync_inflight && log->bufs[log->open_buf].record_count == 0;
    bool earned = !log->sync_inflight && log->zero_credit >= ZERO_CHUNK_BYTES;
    if (!idle && !earned) return 0;
    if (!idle) log->zero_credit -= ZERO_CHUNK_BYTES;
    reserve_sqes(ring, 1);
    log->zero_inflight = true;
    if (log->spare_zeroed >= log->opt.segment_bytes_max) {
        prep_fsync(log, ring, NULL, TQ_LOG_OP_ZEROSYNC, log->spare_fd, true, false);
        return 1;
    }
    uint64_t rest = log->opt.segment_bytes_max - log->spare_zeroed;
    uint32_t len = rest < ZERO_CHUNK_BYTES ? (uint32_t)rest : ZERO_CHUNK_BYTES;
    op_fault(log, &log->override_set[TQ_LOG_OP_ZERO], &log->override_res[TQ_LOG_OP_ZERO],
             TQ_IO_OP_WRITE, len);
    struct io_uring_sqe *sqe = get_sqe(log, ring);
    io_uring_prep_write(sqe, spare_zero_fd(log), log->zero_buf, len, log->spare_zeroed);
    io_uring_sqe_set_data64(sqe, op_user_data(log, TQ_LOG_OP_ZERO, 0));
    log->ops_inflight++;
    return 1;
}

static bool sync_due(const struct tq_log *log, uint64_t now) {
    return log->opt.fsync_mode == TQ_FSYNC_INTERVAL && log->written_lsn > log->durable_lsn &&
           now >= log->last_sync_us + (uint64_t)log->opt.fsync_interval_ms * 1000u;
}

/* Whether the open batch may go out now as far as pipelining goes: when nothing is in flight,
 * or when it or the batches in flight hold pipeline_bytes_min. Only a small batch behind only
 * small batches waits (it grows meanwhile): those are bound by the flush, and a second one in
 * flight would cost a second flush for few records. Behind a large batch one more flush is
 * hidden by the transfer. */
static bool pipeline_ok(const struct tq_log *log, const struct tq_batch_buf *buf) {
    if (log->unit_count == 0 || buf->area_bytes >= log->opt.pipeline_bytes_min) return true;
    uint64_t inflight_bytes = 0;
    for (unsigned i = 0; i < log->unit_count; i++) {
        inflight_bytes += log->units[(log->unit_head + i) % TQ_LOG_UNITS_MAX].bytes;
    }
    return inflight_bytes >= log->opt.pipeline_bytes_min;
}

/* Starts whatever is due: the open batch if a unit slot is free and pipeline_ok (an interval
 * sync that is due first waits for the batches in flight), then, with allow_zero, a spare
 * zero-fill write. */
static unsigned log_kick(struct tq_log *log, struct io_uring *ring, uint64_t now, bool allow_zero) {
    unsigned n = 0;
    if (!log->sync_inflight) {
        struct tq_batch_buf *buf = &log->bufs[log->open_buf];
        /* A batch bound for the spare must wait for a zero write still landing in it. */
        bool needs_roll =
            buf->record_count > 0 &&
            log->tail_offset + tq_batch_disk_bytes(buf->area_bytes) > log->opt.segment_bytes_max;
        if (sync_due(log, now)) {
            if (log->unit_count == 0) n += sync_submit(log, ring);
        } else if (buf->record_count > 0 && log->unit_count < log->units_max &&
                   pipeline_ok(log, buf) && !(needs_roll && log->zero_inflight)) {
            n += batch_submit(log, ring, now);
        }
    }
    if (allow_zero) n += zero_submit(log, ring);
    return n;
}

unsigned tq_log_submit(struct tq_log *log, struct io_uring *ring, uint64_t now) {
    TQ_ASSERT(ring != NULL);
    if (log->opt.read_only) return 0;
    return log_kick(log, ring, now, true);
}

bool tq_log_owns_cqe(const struct tq_log *log, const struct io_uring_cqe *cqe) {
    return (cqe->user_data >> 56) == log->opt.ring_tag;
}

static const char *op_name(enum tq_log_op op) {
    switch (op) {
    case TQ_LOG_OP_WRITE: return "write";
    case TQ_LOG_OP_FSYNC: return "fdatasync";
    case TQ_LOG_OP_DIRSYNC: return "fsync(dir)";
    case TQ_LOG_OP_PREVSYNC: return "fdatasync(sealed)";
    case TQ_LOG_OP_ZERO: return "zero-fill write";
    case TQ_LOG_OP_ZEROSYNC: return "fdatasync(spare)";
    case TQ_LOG_OP_COUNT: break;
    }
    return "?";
}

/* The interval sync group has all its CQEs: everything written before it is durable. */
static void sync_finish(struct tq_log *log) {
    log->sync_inflight = false;
    TQ_ASSERT(log->sync_target_lsn >= log->durable_lsn);
    log->durable_lsn = log->sync_target_lsn;
    log->prev_unsynced_seg = -1;
    log->dir_sync_needed = false;
    if (log->opt.faults != NULL) {
        for (uint32_t i = 0; i < log->seg_count; i++) {
            tq_io_faults_on_synced(log->opt.faults, log->segs[i].path, log->sync_seq);
        }
    }
}

/* A unit's chain has all its CQEs: resubmit the rest of a short write, or mark it complete. */
static void unit_chain_done(struct tq_log *log, struct io_uring *ring, struct tq_log_unit *u) {
    if (u->done < u->bytes) {
        batch_prep_chain(log, ring, u); /* short write: the rest, then the sync, again */
        return;
    }
    if (u->failed_link) {
        tq_fatal("%s: sync cancelled after a complete write (lsn %" PRIu64 ")",
                 log->segs[u->seg].path, u->lsn_last);
    }
    u->complete = true;
}

/* Acknowledges complete units in submission order: a batch counts only once every earlier
 * batch is complete too (an fdatasync does not cover writes that were still in flight). */
static void units_retire(struct tq_log *log) {
    while (log->unit_count > 0 && log->units[log->unit_head].complete) {
        struct tq_log_unit *u = &log->units[log->unit_head];
        struct tq_seg *seg = &log->segs[u->seg];
        TQ_ASSERT(u->lsn_last > log->written_lsn);
        log->written_lsn = u->lsn_last;
        seg->bytes_written = u->offset + u->bytes;
        if (log->opt.fsync_mode == TQ_FSYNC_ALWAYS) {
            TQ_ASSERT(u->lsn_last > log->durable_lsn);
            log->durable_lsn = u->lsn_last;
            if (u->dirsync && u->seg == log->seg_count - 1) log->dir_sync_needed = false;
            if (log->opt.faults != NULL) {
                tq_io_faults_on_synced(log->opt.faults, seg->path, u->sync_seq + 1);
            }
        }
        if (log->opt.on_batch_acked != NULL) {
            log->opt.on_batch_acked(log->opt.on_batch_acked_ctx, u->records,
                                    mono_us() - u->submit_mono_us);
        }
        log->bufs[u->buf].busy = false;
        log->unit_head = (log->unit_head + 1) % TQ_LOG_UNITS_MAX;
        log->unit_count--;
        /* A sealed segment no batch in flight writes to any more: drop its O_DIRECT fd. */
        bool later_same_seg = log->unit_count > 0 && log->units[log->unit_head].seg == u->seg;
        if (u->seg + 1 < log->seg_count && !later_same_seg && seg->wfd >= 0) {
            close(seg->wfd);
            seg->wfd = -1;
        }
    }
}

void tq_log_complete(struct tq_log *log, struct io_uring *ring, const struct io_uring_cqe *cqe) {
    TQ_ASSERT(tq_log_owns_cqe(log, cqe));
    TQ_ASSERT(log->ops_inflight > 0);
    log->ops_inflight--;
    enum tq_log_op op = (enum tq_log_op)((cqe->user_data >> 48) & 0xff);
    unsigned slot_plus1 = (unsigned)((cqe->user_data >> 40) & 0xff);
    TQ_ASSERT(op >= TQ_LOG_OP_WRITE && op < TQ_LOG_OP_COUNT);
    TQ_ASSERT(slot_plus1 <= TQ_LOG_UNITS_MAX);
    struct tq_log_unit *u = slot_plus1 > 0 ? &log->units[slot_plus1 - 1] : NULL;
    bool *override_set = u != NULL ? u->override_set : log->override_set;
    int32_t *override_res = u != NULL ? u->override_res : log->override_res;
    int32_t res = cqe->res;
    if (override_set[op]) {
        /* The faults seam: a short write really wrote everything, but reports half and
         * cancels its linked syncs, exactly as the kernel would after a short write. */
        if (op == TQ_LOG_OP_WRITE && override_res[op] > 0 && res >= 0) {
            override_set[TQ_LOG_OP_FSYNC] = true;
            override_res[TQ_LOG_OP_FSYNC] = -ECANCELED;
            override_set[TQ_LOG_OP_DIRSYNC] = true;
            override_res[TQ_LOG_OP_DIRSYNC] = -ECANCELED;
        }
        if (op == TQ_LOG_OP_ZERO || res >= 0) res = override_res[op];
        override_set[op] = false;
    }
    if (op == TQ_LOG_OP_WRITE && u != NULL && u->dsync && override_set[TQ_LOG_OP_FSYNC]) {
        /* A dsync write is its own sync: an injected sync failure fails the write (after a
         * short write, the -ECANCELED set just above only means "no verdict": the rest of the
         * batch is written again with its own). */
        if (override_res[TQ_LOG_OP_FSYNC] != -ECANCELED && res >= 0) {
            res = override_res[TQ_LOG_OP_FSYNC];
        }
        override_set[TQ_LOG_OP_FSYNC] = false;
    }
    if (op == TQ_LOG_OP_ZERO || op == TQ_LOG_OP_ZEROSYNC) {
        TQ_ASSERT(log->zero_inflight);
        log->zero_inflight = false;
        if (res < 0) tq_fatal("%s %s: %s", op_name(op), log->spare_path, strerror(-res));
        if (op == TQ_LOG_OP_ZEROSYNC) {
            log->zero_done = true;
        } else if (log->spare_ready) {
            log->spare_zeroed += (uint32_t)res;
        }
        if (res == 0 && op == TQ_LOG_OP_ZERO) tq_fatal("zero-length write to %s", log->spare_path);
        /* the next chunk waits for an idle submit */
        log_kick(log, ring, now_us(), false);
        return;
    }
    if (u == NULL) {
        /* The interval sync group. */
        TQ_ASSERT(log->sync_inflight && log->sync_pending > 0);
        if (res < 0) {
            const char *path = op == TQ_LOG_OP_DIRSYNC ? log->log_dir
                               : op == TQ_LOG_OP_PREVSYNC && log->prev_unsynced_seg >= 0
                                   ? log->segs[log->prev_unsynced_seg].path
                                   : log->segs[log->seg_count - 1].path;
            tq_fatal("%s %s (lsn %" PRIu64 "): %s", op_name(op), path, log->sync_target_lsn,
                     strerror(-res));
        }
        if (--log->sync_pending == 0) {
            sync_finish(log);
            log_kick(log, ring, now_us(), false);
        }
        return;
    }
    TQ_ASSERT(log->unit_count > 0 && u->pending > 0 && !u->complete);
    const char *path = log->segs[u->seg].path;
    if (op == TQ_LOG_OP_WRITE) {
        if (res <= 0) {
            tq_fatal("write %s at offset %" PRIu64 " (lsn %" PRIu64 "): %s", path,
                     u->offset + u->done, u->lsn_last, res == 0 ? "wrote nothing" : strerror(-res));
        }
        TQ_ASSERT((uint32_t)res <= u->bytes - u->done);
        u->done += (uint32_t)res;
    } else if (res == -ECANCELED && u->done < u->bytes) {
        u->failed_link = true; /* expected after a short write */
    } else if (res < 0) {
        /* Fail-stop: after a failed fdatasync the kernel may have dropped the dirty pages; a
         * retry could succeed and lie. Later batches in flight are never acknowledged. */
        tq_fatal("%s %s (lsn %" PRIu64 "): %s", op_name(op),
                 op == TQ_LOG_OP_DIRSYNC ? log->log_dir : path, u->lsn_last, strerror(-res));
    }
    if (--u->pending == 0) {
        unit_chain_done(log, ring, u);
        units_retire(log);
        log_kick(log, ring, now_us(), false);
    }
}

uint64_t tq_log_acked_lsn(const struct tq_log *log) {
    return log->opt.fsync_mode == TQ_FSYNC_ALWAYS ? log->durable_lsn : log->written_lsn;
}

uint64_t tq_log_durable_lsn(const struct tq_log *log) {
    return log->durable_lsn;
}
uint64_t tq_log_next_lsn(const struct tq_log *log) {
    return log->next_lsn;
}
uint64_t tq_log_chain_head(const struct tq_log *log) {
    return log->chain_head;
}
unsigned tq_log_batches_inflight(const struct tq_log *log) {
    return log->unit_count;
}
bool tq_log_idle(const struct tq_log *log) {
    return log->ops_inflight == 0;
}

int tq_log_timeout_ms(const struct tq_log *log, uint64_t now) {
    /* Spare zero-fill runs one chunk per idle tq_log_submit: wake an idle loop every 1 ms
     * until it is done (64 MiB / 256 KiB = 256 wake-ups once per segment). */
    bool zero_due = log->spare_ready && !log->zero_done && !log->zero_inflight;
    if (log->opt.fsync_mode != TQ_FSYNC_INTERVAL || log->written_lsn <= log->durable_lsn ||
        log->sync_inflight) {
        return zero_due ? 1 : -1;
    }
    uint64_t due = log->last_sync_us + (uint64_t)log->opt.fsync_interval_ms * 1000u;
    if (now >= due) return 0;
    int ms = (int)((due - now + 999u) / 1000u);
    return zero_due && ms > 1 ? 1 : ms;
}

/* ==== append ============================================================================ */

/* Whether a record of rec_bytes area bytes added to the open batch needs the spare segment. */
static bool needs_spare(const struct tq_log *log, uint32_t rec_bytes) {
    const struct tq_batch_buf *buf = &log->bufs[log->open_buf];
    uint64_t disk = tq_batch_disk_bytes(buf->area_bytes + rec_bytes);
    return log->tail_offset + disk > log->opt.segment_bytes_max;
}

bool tq_log_can_append(const struct tq_log *log, uint32_t len) {
    if (log->opt.read_only || len > log->opt.record_bytes_max) return false;
    uint32_t rec_bytes = tq_record_area_bytes(len);
    if (log->bufs[log->open_buf].area_bytes + (uint64_t)rec_bytes > log->opt.batch_bytes_max) {
        return false;
    }
    if (needs_spare(log, rec_bytes) && !log->spare_ready) return false;
    return true;
}

enum tq_err tq_log_append(struct tq_log *log, uint16_t type, const void *payload, uint32_t len,
                          uint64_t *lsn_out, struct tq_error *error) {
    if (log->opt.read_only) {
        return tq_error_set(error, TQ_ERR_UNAVAILABLE, "log %s is open read-only", log->dir);
    }
    if (type == 0) return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT, "record type 0 is reserved");
    if (len > log->opt.record_bytes_max) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                            "record of %u bytes exceeds record_bytes_max %u", len,
                            log->opt.record_bytes_max);
    }
    if (len > 0 && payload == NULL) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT, "payload is NULL");
    }
    struct tq_batch_buf *buf = &log->bufs[log->open_buf];
    uint32_t rec_bytes = tq_record_area_bytes(len);
    if (buf->area_bytes + (uint64_t)rec_bytes > log->opt.batch_bytes_max) {
        return tq_error_set(error, TQ_ERR_RESOURCE_EXHAUSTED,
                            "batch full: %u + %u bytes exceeds batch_bytes_max %u (wait for the "
                            "batch in flight)",
                            buf->area_bytes, rec_bytes, log->opt.batch_bytes_max);
    }
    if (needs_spare(log, rec_bytes) && !log->spare_ready) {
        enum tq_err err = spare_prepare(log, error);
        if (err != TQ_OK) return err;
    }
    /* Validated: from here on nothing fails. */
    struct tq_record_header rec = {
        .len = len,
        .type = type,
        .flags = 0,
        .payload_hash = XXH3_64bits(payload, len),
    };
    uint8_t *p = buf->mem + TQ_BATCH_HEADER_BYTES + buf->area_bytes;
    memcpy(p, &rec, sizeof(rec));
    if (len > 0) memcpy(p + sizeof(rec), payload, len);
    memset(p + sizeof(rec) + len, 0, rec_bytes - sizeof(rec) - len);
    if (buf->record_count == 0) buf->lsn_first = log->next_lsn;
    TQ_ASSERT(buf->lsn_first + buf->record_count == log->next_lsn);
    buf->area_bytes += rec_bytes;
    buf->record_count++;
    *lsn_out = log->next_lsn++;
    return TQ_OK;
}

/* ==== blocking wrapper ================================================================== */

enum tq_err tq_log_sync(struct tq_log *log, struct tq_error *error) {
    if (log->opt.read_only) return TQ_OK;
    if (log->private_ring == NULL) {
        log->private_ring = tq_xalloc(sizeof(*log->private_ring));
        int rc = io_uring_queue_init(64, log->private_ring, 0);
        if (rc < 0) {
            tq_free(log->private_ring, sizeof(*log->private_ring));
            log->private_ring = NULL;
            return tq_error_set(error, TQ_ERR_IO, "io_uring_queue_init: %s", strerror(-rc));
        }
    }
    struct io_uring *ring = log->private_ring;
    if (log->ops_inflight > 0 && log->ops_ring != ring) {
        return tq_error_set(error, TQ_ERR_FAILED_PRECONDITION,
                            "tq_log_sync: %u operations in flight on the caller's ring; reap them "
                            "first (tq_log_idle)",
                            log->ops_inflight);
    }
    uint64_t target = log->next_lsn - 1;
    for (;;) {
        log_kick(log, ring, now_us(), false);
        io_uring_submit(ring);
        if (tq_log_acked_lsn(log) >= target && log->ops_inflight == 0) break;
        TQ_ASSERT(log->ops_inflight > 0);
        struct io_uring_cqe *cqe;
        int rc = io_uring_wait_cqe(ring, &cqe);
        if (rc == -EINTR) continue;
        if (rc < 0) tq_fatal("io_uring_wait_cqe: %s", strerror(-rc));
        tq_log_complete(log, ring, cqe);
        io_uring_cqe_seen(ring, cqe);
    }
    return TQ_OK;
}

/* ==== recovery ========================================================================== */

static int cmp_seg(const void *a, const void *b) {
    const struct tq_seg *x = a, *y = b;
    return x->lsn_first < y->lsn_first ? -1 : x->lsn_first > y->lsn_first;
}

static uint64_t file_size(int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0) return 0;
    return (uint64_t)st.st_size;
}

/* Logical size of a segment: the file size, or the raw size of a compressed one. */
static uint64_t seg_logical_size(const struct tq_seg *seg) {
    if (seg->compressed) {
        return seg->block_count == 0 ? 0
                                     : seg->blocks[seg->block_count - 1].raw_offset +
                                           seg->blocks[seg->block_count - 1].raw_bytes;
    }
    return file_size(seg->fd);
}

/* Lists DIR/log, opens every segment (sorted by first LSN). */
static enum tq_err segments_load(struct tq_log *log, struct tq_error *error) {
    DIR *d = opendir(log->log_dir);
    if (d == NULL)
        return tq_error_set(error, TQ_ERR_IO, "opendir %s: %s", log->log_dir, strerror(errno));
    struct dirent *de;
    enum tq_err err = TQ_OK;
    while ((de = readdir(d)) != NULL) {
        bool compressed = false;
        uint64_t lsn = parse_seg_name(de->d_name, &compressed);
        if (lsn == 0 && !log->opt.read_only &&
            strncmp(de->d_name, TQ_RECYCLE_PREFIX, strlen(TQ_RECYCLE_PREFIX)) == 0) {
            /* a recycled segment file (never part of the log): to the pool, or removed */
            tq_log_recycle_add(log, path_join(log->log_dir, de->d_name));
            continue;
        }
        if (lsn == 0) {
            size_t n = strlen(de->d_name);
            if (!log->opt.read_only && n > 4 && strcmp(de->d_name + n - 4, ".tmp") == 0) {
                char *p = path_join(log->log_dir, de->d_name);
                unlink(p); /* a spare or an unfinished compression: never part of the log */
                str_free(p);
            }
            continue;
        }
        struct tq_seg *seg = seg_push(log);
        seg->lsn_first = lsn;
        seg->lsn_last = lsn - 1;
        seg->compressed = compressed;
        seg->path = path_join(log->log_dir, de->d_name);
    }
    closedir(d);
    if (log->seg_count > 1) qsort(log->segs, log->seg_count, sizeof(*log->segs), cmp_seg);
    /* A .seg next to its .zseg: the compression finished (the .zseg was renamed into place
     * after its fsync) but the old file was not removed yet. */
    for (uint32_t i = 0; i + 1 < log->seg_count; i++) {
        struct tq_seg *a = &log->segs[i], *b = &log->segs[i + 1];
        if (a->lsn_first == b->lsn_first) {
            struct tq_seg *plain = a->compressed ? b : a;
            if (!log->opt.read_only) unlink(plain->path);
            seg_free(plain);
            memmove(plain, plain + 1,
                    (size_t)(log->segs + log->seg_count - plain - 1) * sizeof(*plain));
            log->seg_count--;
            i--;
        }
    }
    for (uint32_t i = 0; i < log->seg_count && err == TQ_OK; i++) {
        struct tq_seg *seg = &log->segs[i];
        int flags = (log->opt.read_only || seg->compressed) ? O_RDONLY : O_RDWR;
        seg->fd = open(seg->path, flags | O_CLOEXEC);
        if (seg->fd < 0) {
            err = tq_error_set(error, TQ_ERR_IO, "open %s: %s", seg->path, strerror(errno));
        } else if (seg->compressed) {
            err = tq_zseg_load(seg, error);
        } else if (log->opt.read_only) {
            /* Tells the writer not to recycle this file while we may read it (spare_from_pool).
             * Best effort: refused only while the writer itself checks the file. */
            struct flock lk = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
            (void)fcntl(seg->fd, F_OFD_SETLK, &lk);
        }
    }
    return err;
}

/* Waits until no other description holds the write lock of a plain segment (seg_write_fd): a
 * writer that was killed may still have O_DIRECT or io-wq writes in flight in the kernel for a
 * few milliseconds after its death; recovering (and cutting, and writing new batches) before
 * they land would let a stale, unacknowledged batch overwrite new, acknowledged ones. A live
 * writer never lets go: after options.writers_wait_ms this fails with TQ_ERR_UNAVAILABLE. */
static enum tq_err writers_wait(struct tq_log *log, struct tq_error *error) {
    for (uint32_t i = 0; i < log->seg_count; i++) {
        const struct tq_seg *seg = &log->segs[i];
        if (seg->compressed) continue;
        int fd = open(seg->path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
            return tq_error_set(error, TQ_ERR_IO, "open %s: %s", seg->path, strerror(errno));
        int waited_ms = 0;
        while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            if ((errno != EWOULDBLOCK && errno != EINTR) ||
                waited_ms >= (int)log->opt.writers_wait_ms) {
                int e = errno;
                close(fd);
                return tq_error_set(error, e == EWOULDBLOCK ? TQ_ERR_UNAVAILABLE : TQ_ERR_IO,
                                    "%s is locked by another writer of this log (waited %d ms): %s",
                                    seg->path, waited_ms, strerror(e));
            }
            struct timespec ts = {.tv_sec = 0, .tv_nsec = 1000000};
            nanosleep(&ts, NULL);
            waited_ms++;
        }
        close(fd); /* releases the probe's lock */
    }
    return TQ_OK;
}

struct scan_stop {
    bool stopped;
    uint32_t seg_index;
    uint64_t offset;
    uint64_t lsn; /* the LSN expected at the stop */
    enum tq_batch_check check;
    bool batch_is_evidence; /* the batch at the stop is valid but mislinked: it testifies too */
    char why[200];
};

static bool block_is_zero(const uint8_t *p, size_t n) {
    static const uint8_t zeros[TQ_BATCH_ALIGN_BYTES];
    while (n > 0) {
        size_t k = n < sizeof(zeros) ? n : sizeof(zeros);
        if (memcmp(p, zeros, k) != 0) return false;
        p += k;
        n -= k;
    }
    return true;
}

/* After a stop at (seg i, offset): looks for later evidence. *durable_max gets the highest
 * lsn_durable of any valid batch header found later, *lsn_max the highest LSN seen there, and
 * *nonzero_end the end of what a cut at the stop must zero in segment i: every later valid batch
 * of it and every non-zero 4 KiB block after offset. Stale headers (tq_batch_header_stale: an
 * earlier life of a recycled file) are neither batches nor evidence; once one is seen in
 * segment i, that segment is a recycled file and its non-zero blocks that are not valid batches
 * are taken for stale bytes too (only the block at the stop itself still counts): a recycled
 * file is never all zeros after its data. Only segment i is looked at when this_seg_only. */
static enum tq_err scan_evidence(struct tq_log *log, const struct scan_stop *stop,
                                 bool this_seg_only, struct tq_scan_io *scan_io,
                                 uint64_t *durable_max, uint64_t *lsn_max, uint64_t *nonzero_end,
                                 bool *later_in_seg, uint64_t *batches_after,
                                 struct tq_error *error) {
    *durable_max = 0;
    *lsn_max = 0;
    *nonzero_end = stop->offset;
    *later_in_seg = false;
    *batches_after = 0;
    uint64_t junk_end = stop->offset; /* end of the last non-zero non-batch block after the stop */
    bool stale_seen = false;
    uint32_t seg_end = this_seg_only ? stop->seg_index + 1 : log->seg_count;
    for (uint32_t i = stop->seg_index; i < seg_end; i++) {
        const struct tq_seg *seg = &log->segs[i];
        bool stop_seg = i == stop->seg_index;
        struct tq_seg_cursor c;
        tq_cursor_init(&c, seg);
        uint64_t size = seg_logical_size(seg);
        uint64_t off = stop_seg ? stop->offset : 0;
        /* the rest of a segment can be tens of MiB of written zeros: read it streaming too */
        tq_cursor_stream(&c, scan_io, off, size);
        enum tq_err err = TQ_OK;
        while (off < size) {
            const uint8_t *p;
            size_t avail;
            err = tq_cursor_get(&c, off, TQ_BATCH_ALIGN_BYTES, size, &p, &avail, error);
            if (err != TQ_OK) break;
            if (avail > TQ_BATCH_ALIGN_BYTES) avail = TQ_BATCH_ALIGN_BYTES;
            uint64_t step = TQ_BATCH_ALIGN_BYTES;
            struct tq_batch_header h;
            char why[160];
            uint32_t magic = 0;
            if (avail >= sizeof(magic)) memcpy(&magic, p, sizeof(magic));
            bool at_stop = stop_seg && off == stop->offset;
            bool batch = false;
            if (magic == TQ_BATCH_MAGIC) {
                enum tq_batch_check check = tq_batch_check(p, avail, false, &h, why, sizeof(why));
                if (check == TQ_BATCH_VALID || check == TQ_BATCH_TRUNCATED) {
                    if (tq_batch_header_stale(&h, seg->lsn_first)) {
                        if (stop_seg) stale_seen = true;
                        off += step;
                        continue;
                    }
                    batch = !at_stop || stop->batch_is_evidence;
                }
            }
            if (batch) {
                if (h.lsn_durable > *durable_max) *durable_max = h.lsn_durable;
                uint64_t last = h.lsn_first + h.record_count - 1;
                if (last > *lsn_max) *lsn_max = last;
                (*batches_after)++;
                if (stop_seg) *later_in_seg = true;
                step = tq_batch_disk_bytes(h.area_bytes);
                if (stop_seg) *nonzero_end = off + step < size ? off + step : size;
            } else if (stop_seg && !block_is_zero(p, avail)) {
                if (at_stop) {
                    *nonzero_end = off + avail;
                } else {
                    junk_end = off + avail;
                }
            }
            off += step;
        }
        tq_cursor_free(&c);
        if (err != TQ_OK) return err;
    }
    if (!stale_seen && junk_end > *nonzero_end) *nonzero_end = junk_end;
    return TQ_OK;
}

/* Cuts the log at (seg i, offset): zeroes [offset, nonzero_end) of segment i, removes later
 * segments. Blocking, done at open only. */
static enum tq_err cut_at(struct tq_log *log, uint32_t seg_index, uint64_t offset,
                          uint64_t nonzero_end, struct tq_error *error) {
    struct tq_seg *seg = &log->segs[seg_index];
    if (seg->compressed) {
        return tq_error_set(error, TQ_ERR_CORRUPT, "%s: cannot cut inside a compressed segment",
                            seg->path);
    }
    if (nonzero_end > offset) {
        uint64_t len = nonzero_end - offset;
        uint8_t *zeros = tq_xcalloc(1, (size_t)len);
        ssize_t put = pwrite(seg->fd, zeros, (size_t)len, (off_t)offset);
        tq_free(zeros, (size_t)len);
        if (put != (ssize_t)len) {
            return tq_error_set(error, TQ_ERR_IO, "zero torn tail of %s: %s", seg->path,
                                strerror(errno));
        }
        int rc = tq_log_blocking_fsync(log, seg->fd, seg->path);
        if (rc < 0) return tq_error_set(error, TQ_ERR_IO, "fsync %s: %s", seg->path, strerror(-rc));
    }
    bool removed = false;
    while (log->seg_count > seg_index + 1) {
        struct tq_seg *last = &log->segs[log->seg_count - 1];
        unlink(last->path);
        seg_free(last);
        log->seg_count--;
        removed = true;
    }
    if (removed) {
        int rc = tq_log_blocking_fsync(log, log->log_dir_fd, log->log_dir);
        if (rc < 0)
            return tq_error_set(error, TQ_ERR_IO, "fsync %s: %s", log->log_dir, strerror(-rc));
    }
    return TQ_OK;
}

/* Verifies every segment and batch, builds the index. Fills stop on the first bad place. */
static enum tq_err scan_all(struct tq_log *log, struct tq_log_recovery *rec, struct scan_stop *stop,
                            struct tq_scan_io *scan_io, struct tq_error *error) {
    uint64_t expected = 0;
    uint64_t chain = 0;
    bool have_chain = false;
    for (uint32_t i = 0; i < log->seg_count; i++) {
        struct tq_seg *seg = &log->segs[i];
        if (i == 0) expected = seg->lsn_first;
        if (seg->lsn_first != expected) {
            stop->stopped = true;
            stop->seg_index = i;
            stop->offset = 0;
            stop->lsn = expected;
            stop->check = TQ_BATCH_BAD_HEADER;
            stop->batch_is_evidence = true;
            snprintf(stop->why, sizeof(stop->why),
                     "segment starts at LSN %" PRIu64 " but LSN %" PRIu64
                     " was expected (missing, swapped or renamed segment)",
                     seg->lsn_first, expected);
            return TQ_OK;
        }
        struct tq_seg_cursor c;
        tq_cursor_init(&c, seg);
        c.window_bytes = SCAN_WINDOW_BYTES;
        uint64_t size = seg_logical_size(seg);
        uint64_t off = 0;
        enum tq_err err = TQ_OK;
        /* Keep several O_DIRECT reads in flight while the windows already read are hashed
         * (no page-cache copy; cold recovery is bound by the disk, not by XXH3). */
        tq_cursor_stream(&c, scan_io, 0, size);
        while (off < size) {
            const uint8_t *p;
            size_t avail;
            err = tq_cursor_get(&c, off, TQ_BATCH_HEADER_BYTES, size, &p, &avail, error);
            if (err != TQ_OK) break;
            struct tq_batch_header h;
            enum tq_batch_check check =
                tq_batch_check(p, avail, false, &h, stop->why, sizeof(stop->why));
            if ((check == TQ_BATCH_VALID || check == TQ_BATCH_TRUNCATED) &&
                tq_batch_header_stale(&h, seg->lsn_first)) {
                /* an earlier life of a recycled file: the end of this segment's data, as zeros */
                snprintf(stop->why, sizeof(stop->why),
                         "stale batch (LSN %" PRIu64 ", below the segment's first LSN) where a "
                         "batch header was expected",
                         h.lsn_first);
                check = TQ_BATCH_ZERO;
            } else if (check == TQ_BATCH_VALID || check == TQ_BATCH_TRUNCATED) {
                /* TRUNCATED may only mean the batch is larger than the window read so far */
                size_t want = TQ_BATCH_HEADER_BYTES + (size_t)h.area_bytes;
                err = tq_cursor_get(&c, off, want, size, &p, &avail, error);
                if (err != TQ_OK) break;
                check = tq_batch_check(p, avail, true, &h, stop->why, sizeof(stop->why));
            }
            bool mislinked = false;
            if (check == TQ_BATCH_VALID && h.lsn_first != expected) {
                mislinked = true;
                check = TQ_BATCH_BAD_HEADER;
                snprintf(stop->why, sizeof(stop->why),
                         "batch has LSN %" PRIu64 ", LSN %" PRIu64 " expected (chain break)",
                         h.lsn_first, expected);
            } else if (check == TQ_BATCH_VALID && have_chain && h.chain_prev != chain) {
                mislinked = true;
                check = TQ_BATCH_BAD_HEADER;
                snprintf(stop->why, sizeof(stop->why),
                         "hash chain break: batch links to %016" PRIx64 ", previous is %016" PRIx64,
                         h.chain_prev, chain);
            }
            if (check != TQ_BATCH_VALID) {
                if (check == TQ_BATCH_ZERO && i + 1 < log->seg_count) {
                    /* the normal end of a sealed segment, if nothing valid follows in it */
                    struct scan_stop probe = {.seg_index = i, .offset = off, .lsn = expected};
                    uint64_t dmax, lmax, nz, after;
                    bool later;
                    /* the probe streams through scan_io: this cursor's reads must be done */
                    tq_cursor_free(&c);
                    tq_cursor_init(&c, seg);
                    err = scan_evidence(log, &probe, true, scan_io, &dmax, &lmax, &nz, &later,
                                        &after, error);
                    if (err != TQ_OK) break;
                    if (!later) break;
                }
                stop->stopped = true;
                stop->seg_index = i;
                stop->offset = off;
                stop->lsn = expected;
                stop->check = check;
                stop->batch_is_evidence = mislinked;
                tq_cursor_free(&c);
                return TQ_OK;
            }
            if (off == 0 && h.lsn_first != seg->lsn_first) {
                /* cannot happen: expected == seg->lsn_first was checked above */
                TQ_UNREACHABLE();
            }
            struct tq_batch_ref ref = {
                .lsn_first = h.lsn_first,
                .offset = off,
                .seg_index = i,
                .disk_bytes = (uint32_t)tq_batch_disk_bytes(h.area_bytes),
                .record_count = h.record_count,
            };
            ref_push(log, &ref);
            if (log->lsn_first == 0) log->lsn_first = h.lsn_first;
            expected = h.lsn_first + h.record_count;
            chain = h.header_hash;
            have_chain = true;
            seg->lsn_last = expected - 1;
            off += ref.disk_bytes;
            seg->bytes_used = off;
            seg->bytes_written = off;
            rec->batches_scanned++;
            rec->records_scanned += h.record_count;
            rec->bytes_scanned += ref.disk_bytes;
        }
        tq_cursor_free(&c);
        if (err != TQ_OK) return err;
    }
    log->next_lsn = expected == 0 ? 1 : expected;
    log->chain_head = chain;
    return TQ_OK;
}

/* A read-only open's stop with valid batches after it (a hole): the end of the readable log
 * only if it is the live writer's batches in flight, else damage. Returns TQ_OK (the reader
 * stops there, one line to log_line) or TQ_ERR_CORRUPT naming file, offset, LSN and which
 * condition failed. The conditions, each necessary (docs/log-format.md, "Readers beside a
 * live writer"):
 *   - in the tail: the stop is in the last segment, or in the one before it (the writer rolled
 *     to a new segment while that segment's last batch was still in flight);
 *   - shallow: at most TQ_BATCHES_INFLIGHT_MAX - 1 valid batches follow (the writer never has
 *     more than TQ_BATCHES_INFLIGHT_MAX in flight, the missing one included);
 *   - torn: no later batch says (by lsn_durable) that the missing LSN had been durable;
 *   - live: a process holds DIR/LOCK right now (tq_log_dir_locked; probed last, it is the one
 *     condition that can change while we look). */
static enum tq_err read_only_hole(struct tq_log *log, const struct scan_stop *stop, bool torn,
                                  uint64_t batches_after, uint64_t lsn_max,
                                  struct tq_error *error) {
    TQ_ASSERT(log->opt.read_only);
    TQ_ASSERT(batches_after > 0);
    const char *path = log->segs[stop->seg_index].path;
    const char *why_not = NULL;
    if (stop->seg_index + 2 < log->seg_count) {
        why_not = "it is not in the tail segment";
    } else if (batches_after > TQ_BATCHES_INFLIGHT_MAX - 1) {
        why_not = "more valid batches follow than a writer keeps in flight";
    } else if (!torn) {
        why_not = "a later batch shows it was durable";
    } else if (!tq_log_dir_locked(log->dir)) {
        why_not = "no live writer holds " TQ_LOG_LOCK_NAME;
    }
    if (why_not != NULL && tq_log_dir_locked(log->dir)) log->live_race = true; /* read again */
    if (why_not == NULL) {
        tq_log_line(log,
                    "live tail: stopped at LSN %" PRIu64 ", offset %" PRIu64 " of %s: a live "
                    "writer holds %s/" TQ_LOG_LOCK_NAME " and has batches in flight",
                    stop->lsn - 1, stop->offset, path, log->dir);
        return TQ_OK;
    }
    return tq_error_set(error, TQ_ERR_CORRUPT,
                        "corrupt log: %s offset %" PRIu64 " (lsn %" PRIu64 "): %s; %" PRIu64
                        " valid batch(es) up to LSN %" PRIu64 " follow: damage, not a live "
                        "writer's batches in flight (%s; refusing to open)",
                        path, stop->offset, stop->lsn, stop->why, batches_after, lsn_max, why_not);
}

/* Decides what a stop means: a torn tail (cut), corruption (refuse) or repair (cut, loudly).
 * A read-only open never cuts: it stops at a torn tail, at a live writer's hole
 * (read_only_hole) or, with repair, at any damage. */
static enum tq_err recover_stop(struct tq_log *log, const struct scan_stop *stop,
                                struct tq_log_recovery *rec, struct tq_scan_io *scan_io,
                                struct tq_error *error) {
    uint64_t durable_max, lsn_max, nonzero_end, batches_after;
    bool later_in_seg;
    enum tq_err err = scan_evidence(log, stop, false, scan_io, &durable_max, &lsn_max, &nonzero_end,
                                    &later_in_seg, &batches_after, error);
    if (err != TQ_OK) return err;
    const char *path = log->segs[stop->seg_index].path;
    bool clean_end = stop->check == TQ_BATCH_ZERO && stop->seg_index + 1 == log->seg_count &&
                     lsn_max == 0 && nonzero_end <= stop->offset;
    if (clean_end) return TQ_OK;
    bool torn = durable_max < stop->lsn && stop->offset % TQ_BATCH_ALIGN_BYTES == 0;
    if (log->opt.read_only && batches_after > 0) {
        err = read_only_hole(log, stop, torn, batches_after, lsn_max, error);
        if (err == TQ_OK || !log->opt.repair) return err;
    }
    if (!torn && !log->opt.repair) {
        return tq_error_set(error, TQ_ERR_CORRUPT,
                            "corrupt log: %s offset %" PRIu64 " (lsn %" PRIu64 "): %s; later "
                            "batches show LSN %" PRIu64 " was durable (refusing to open; repair "
                            "would drop LSNs %" PRIu64 "..%" PRIu64 ")",
                            path, stop->offset, stop->lsn, stop->why, durable_max, stop->lsn,
                            lsn_max > stop->lsn ? lsn_max : stop->lsn);
    }
    uint64_t dropped_last = lsn_max >= stop->lsn ? lsn_max : stop->lsn - 1;
    uint64_t files = log->seg_count - stop->seg_index - 1;
    if (log->opt.read_only) {
        tq_log_line(
            log, "%s %s offset %" PRIu64 " (lsn %" PRIu64 "): %s; read-only: stopping there",
            torn ? "torn tail at" : "corruption at", path, stop->offset, stop->lsn, stop->why);
        return TQ_OK;
    }
    rec->torn_bytes_cut = nonzero_end > stop->offset ? nonzero_end - stop->offset : 0;
    if (!torn)
        rec->repair_records_dropped = dropped_last >= stop->lsn ? dropped_last - stop->lsn + 1 : 0;
    tq_log_line(log,
                "%s: cut %s at offset %" PRIu64 " (lsn %" PRIu64 "): %s; dropped %" PRIu64
                " bytes there, LSNs %" PRIu64 "..%" PRIu64 ", %" PRIu64 " later segment file(s)",
                torn ? "torn tail" : "REPAIR", path, stop->offset, stop->lsn, stop->why,
                rec->torn_bytes_cut, stop->lsn, dropped_last, files);
    return cut_at(log, stop->seg_index, stop->offset, nonzero_end, error);
}

/* Creates the tail segment named lsn (preallocated) and fsyncs log/. */
static enum tq_err segment_create(struct tq_log *log, uint64_t lsn, struct tq_error *error) {
    if (!log->spare_ready) {
        enum tq_err err = spare_prepare(log, error);
        if (err != TQ_OK) return err;
    }
    char *path = seg_name(log->log_dir, lsn, "seg");
    if (rename(log->spare_path, path) != 0) {
        enum tq_err err = tq_error_set(error, TQ_ERR_IO, "rename to %s: %s", path, strerror(errno));
        str_free(path);
        return err;
    }
    struct tq_seg *seg = seg_push(log);
    seg->lsn_first = lsn;
    seg->lsn_last = lsn - 1;
    seg->path = path;
    seg->fd = log->spare_fd;
    log->spare_fd = -1;
    spare_dfd_close(log);
    log->spare_ready = false;
    if (!log->opt.spare_no_prezero && !log->zero_done) {
        /* Opening is the one moment a blocking zero-fill costs nobody a round trip, but a
         * fresh 64 MiB segment would add ~0.1-0.3 s to every first start: zero only its head
         * (the rest stays fallocated: correct, slower fdatasyncs until the next segment). */
        uint64_t end = log->opt.segment_bytes_max < OPEN_ZERO_BYTES ? log->opt.segment_bytes_max
                                                                    : OPEN_ZERO_BYTES;
        for (uint64_t off = log->spare_zeroed; off < end; off += ZERO_CHUNK_BYTES) {
            uint64_t rest = end - off;
            size_t len = rest < ZERO_CHUNK_BYTES ? (size_t)rest : ZERO_CHUNK_BYTES;
            if (pwrite(seg->fd, log->zero_buf, len, (off_t)off) != (ssize_t)len) {
                return tq_error_set(error, errno == ENOSPC ? TQ_ERR_NO_SPACE : TQ_ERR_IO,
                                    "zero-fill %s: %s", path, strerror(errno));
            }
        }
        int zrc = tq_log_blocking_fsync(log, seg->fd, path);
        if (zrc < 0) return tq_error_set(error, TQ_ERR_IO, "fsync %s: %s", path, strerror(-zrc));
    }
    int rc = tq_log_blocking_fsync(log, log->log_dir_fd, log->log_dir);
    if (rc < 0) return tq_error_set(error, TQ_ERR_IO, "fsync %s: %s", log->log_dir, strerror(-rc));
    return TQ_OK;
}

static enum tq_err options_check(struct tq_log_options *o, struct tq_error *error) {
    if (o->dir == NULL || o->dir[0] == '\0') {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT, "options.dir is required");
    }
    if (o->segment_bytes_max == 0) o->segment_bytes_max = TQ_SEGMENT_BYTES_DEFAULT;
    if (o->record_bytes_max == 0) o->record_bytes_max = TQ_RECORD_BYTES_DEFAULT_MAX;
    if (o->batch_bytes_max == 0) o->batch_bytes_max = TQ_BATCH_BYTES_DEFAULT_MAX;
    if (o->ring_tag == 0) o->ring_tag = TQ_LOG_RING_TAG_DEFAULT;
    if (o->batches_inflight_max == 0) o->batches_inflight_max = TQ_BATCHES_INFLIGHT_DEFAULT;
    if (o->writers_wait_ms == 0) o->writers_wait_ms = WRITERS_WAIT_MS_DEFAULT;
    if (o->recycle_segments_max > TQ_RECYCLE_SEGMENTS_MAX) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT, "recycle_segments_max %u exceeds %u",
                            o->recycle_segments_max, TQ_RECYCLE_SEGMENTS_MAX);
    }
    if (o->batches_inflight_max > TQ_BATCHES_INFLIGHT_MAX) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT, "batches_inflight_max %u exceeds %u",
                            o->batches_inflight_max, TQ_BATCHES_INFLIGHT_MAX);
    }
    if (o->batch_bytes_max % 8 != 0 || o->batch_bytes_max > TQ_BATCH_AREA_BYTES_HARD_MAX) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                            "batch_bytes_max %u must be a multiple of 8 and <= %u",
                            o->batch_bytes_max, TQ_BATCH_AREA_BYTES_HARD_MAX);
    }
    if ((uint64_t)tq_record_area_bytes(o->record_bytes_max) > o->batch_bytes_max) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                            "record_bytes_max %u (+%u header) exceeds batch_bytes_max %u",
                            o->record_bytes_max, TQ_RECORD_HEADER_BYTES, o->batch_bytes_max);
    }
    if (o->segment_bytes_max % TQ_BATCH_ALIGN_BYTES != 0 ||
        o->segment_bytes_max < tq_batch_disk_bytes(o->batch_bytes_max)) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                            "segment_bytes_max %" PRIu64 " must be a multiple of %u and hold one "
                            "full batch (%" PRIu64 " bytes)",
                            o->segment_bytes_max, TQ_BATCH_ALIGN_BYTES,
                            tq_batch_disk_bytes(o->batch_bytes_max));
    }
    if (o->pipeline_bytes_min == 0) o->pipeline_bytes_min = TQ_PIPELINE_BYTES_DEFAULT_MIN;
    /* A full batch must always be allowed to pipeline (after batch_bytes_max is checked). */
    if (o->pipeline_bytes_min > o->batch_bytes_max / 2)
        o->pipeline_bytes_min = o->batch_bytes_max / 2;
    if (o->fsync_mode == TQ_FSYNC_INTERVAL && o->fsync_interval_ms == 0) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                            "fsync interval mode needs interval_ms > 0");
    }
    if (o->fsync_mode != TQ_FSYNC_ALWAYS && o->fsync_mode != TQ_FSYNC_INTERVAL &&
        o->fsync_mode != TQ_FSYNC_NONE) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT, "unknown fsync mode %d",
                            (int)o->fsync_mode);
    }
    return TQ_OK;
}

static enum tq_err make_dir(const char *path, struct tq_error *error) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        return tq_error_set(error, TQ_ERR_IO, "mkdir %s: %s", path, strerror(errno));
    }
    return TQ_OK;
}

static enum tq_err log_open_once(const struct tq_log_options *options, struct tq_log **log_out,
                                 struct tq_log_recovery *recovery, struct tq_error *error,
                                 bool *live_race) {
    TQ_ASSERT(options != NULL);
    TQ_ASSERT(log_out != NULL);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct tq_log_recovery rec_local;
    struct tq_log_recovery *rec = recovery != NULL ? recovery : &rec_local;
    memset(rec, 0, sizeof(*rec));
    struct tq_log_options opt = *options;
    enum tq_err err = options_check(&opt, error);
    if (err != TQ_OK) return err;

    struct tq_log *log = tq_xcalloc(1, sizeof(*log));
    log->opt = opt;
    log->units_max = opt.batches_inflight_max;
    log->dir = tq_strdup(opt.dir);
    log->opt.dir = log->dir;
    log->log_dir = path_join(log->dir, "log");
    log->snap_dir = path_join(log->dir, "snapshots");
    log->spare_path = path_join(log->log_dir, SPARE_NAME);
    log->log_dir_fd = -1;
    log->spare_fd = -1;
    log->spare_dfd = -1;
    log->prev_unsynced_seg = -1;
    log->next_lsn = 1;
    log->last_sync_us = now_us();

    if (!opt.read_only) {
        if ((err = make_dir(log->dir, error)) != TQ_OK) goto fail;
        if ((err = make_dir(log->log_dir, error)) != TQ_OK) goto fail;
        if ((err = make_dir(log->snap_dir, error)) != TQ_OK) goto fail;
    }
    log->log_dir_fd = open(log->log_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (log->log_dir_fd < 0) {
        err = tq_error_set(error, errno == ENOENT ? TQ_ERR_NOT_FOUND : TQ_ERR_IO, "open %s: %s",
                           log->log_dir, strerror(errno));
        goto fail;
    }
    if ((err = segments_load(log, error)) != TQ_OK) goto fail;
    if (!opt.read_only && (err = writers_wait(log, error)) != TQ_OK) goto fail;

    struct scan_stop stop = {0};
    /* A private ring and buffers for the scan's reads in flight (or plain preads) */
    struct tq_scan_io scan_io;
    tq_scan_io_init(&scan_io, SCAN_STREAM_BYTES, SCAN_SLACK_BYTES);
    scan_io.buffered = opt.buffered_writes;
    err = scan_all(log, rec, &stop, &scan_io, error);
    if (err == TQ_OK && stop.stopped) {
        log->next_lsn = stop.lsn;
        err = recover_stop(log, &stop, rec, &scan_io, error);
    }
    tq_scan_io_free(&scan_io);
    if (err != TQ_OK) goto fail;
    if (stop.stopped) {
        /* the chain head is the last valid batch's; recompute from the index */
        if (log->ref_count > 0) {
            const struct tq_batch_ref *last = &log->refs[log->ref_count - 1];
            struct tq_seg_cursor c;
            tq_cursor_init(&c, &log->segs[last->seg_index]);
            const uint8_t *p;
            size_t avail;
            err = tq_cursor_get(&c, last->offset, TQ_BATCH_HEADER_BYTES, UINT64_MAX, &p, &avail,
                                error);
            if (err == TQ_OK) {
                struct tq_batch_header h;
                memcpy(&h, p, sizeof(h));
                log->chain_head = h.header_hash;
            }
            tq_cursor_free(&c);
            if (err != TQ_OK) goto fail;
        } else {
            log->chain_head = 0;
        }
        /* Segments past the stop are dropped from the in-memory view (read_only keeps files). */
        while (log->seg_count > stop.seg_index + 1) {
            seg_free(&log->segs[log->seg_count - 1]);
            log->seg_count--;
        }
        if (log->seg_count > 0 && stop.offset == 0 &&
            log->segs[log->seg_count - 1].lsn_first != stop.lsn) {
            /* the stop was at offset 0 of a segment whose name is wrong: nothing of it is kept */
            struct tq_seg *bad = &log->segs[log->seg_count - 1];
            if (!log->opt.read_only) unlink(bad->path);
            seg_free(bad);
            log->seg_count--;
        }
    }
    log->written_lsn = log->next_lsn - 1;
    log->durable_lsn = log->next_lsn - 1;
    rec->lsn_first = log->lsn_first;
    rec->lsn_last = log->next_lsn - 1;
    rec->segments = log->seg_count;

    if (!opt.read_only) {
        log->zero_raw = tq_xcalloc(1, ZERO_CHUNK_BYTES + TQ_BATCH_ALIGN_BYTES);
        uintptr_t mask = (uintptr_t)TQ_BATCH_ALIGN_BYTES - 1;
        log->zero_buf = (uint8_t *)(((uintptr_t)log->zero_raw + mask) & ~mask);
        open_next_buf(log);
        struct tq_seg *tail = log->seg_count > 0 ? &log->segs[log->seg_count - 1] : NULL;
        if (tail == NULL || tail->compressed ||
            tail->bytes_used + TQ_BATCH_ALIGN_BYTES > opt.segment_bytes_max) {
            if ((err = segment_create(log, log->next_lsn, error)) != TQ_OK) goto fail;
            tail = &log->segs[log->seg_count - 1];
        } else if (file_size(tail->fd) < opt.segment_bytes_max) {
            int rc = posix_fallocate(tail->fd, 0, (off_t)opt.segment_bytes_max);
            if (rc != 0) {
                err = tq_error_set(error, rc == ENOSPC ? TQ_ERR_NO_SPACE : TQ_ERR_IO,
                                   "fallocate %s: %s", tail->path, strerror(rc));
                goto fail;
            }
        }
        log->tail_offset = tail->bytes_used;
        struct tq_error spare_error;
        if (spare_prepare(log, &spare_error) != TQ_OK) {
            tq_log_line(log, "spare segment not prepared: %s", spare_error.msg);
        }
    }
    rec->snapshot_lsn = tq_snapshot_scan_latest(log);
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    rec->seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    *log_out = log;
    return TQ_OK;

fail:
    *live_race = log->live_race;
    tq_log_abandon(log);
    return err;
}

/* A read-only open beside a live writer reads the tail over some time, not at one instant: a
 * batch read as missing may have landed, and the writer moved on by several more batches, by
 * the time the later ones are read. So a hole that does not look like the writer's batches in
 * flight (read_only_hole) is read again, from the start, while a writer holds DIR/LOCK;
 * damage stays damage on every read and is reported after the last one. */
#define READ_ONLY_OPEN_TRIES 20
#define READ_ONLY_RETRY_MS   5

enum tq_err tq_log_open(const struct tq_log_options *options, struct tq_log **log_out,
                        struct tq_log_recovery *recovery, struct tq_error *error) {
    for (unsigned attempt = 1;; attempt++) {
        bool live_race = false;
        enum tq_err err = log_open_once(options, log_out, recovery, error, &live_race);
        if (err == TQ_OK || !live_race || attempt == READ_ONLY_OPEN_TRIES) return err;
        struct timespec pause = {0, READ_ONLY_RETRY_MS * 1000000L};
        nanosleep(&pause, NULL);
    }
}

void tq_log_abandon(struct tq_log *log) {
    if (log == NULL) return;
    for (uint32_t i = 0; i < log->seg_count; i++)
        seg_free(&log->segs[i]);
    if (log->segs != NULL) tq_free(log->segs, log->seg_cap * sizeof(*log->segs));
    if (log->refs != NULL) tq_free(log->refs, log->ref_cap * sizeof(*log->refs));
    for (unsigned i = 0; i < TQ_LOG_BUFS_MAX; i++) {
        if (log->bufs[i].raw != NULL) tq_free(log->bufs[i].raw, log->bufs[i].raw_bytes);
    }
    if (log->zero_raw != NULL) tq_free(log->zero_raw, ZERO_CHUNK_BYTES + TQ_BATCH_ALIGN_BYTES);
    if (log->spare_fd >= 0) close(log->spare_fd);
    spare_dfd_close(log);
    for (uint32_t i = 0; i < log->recycle_count; i++)
        str_free(log->recycle_paths[i]);
    if (log->log_dir_fd >= 0) close(log->log_dir_fd);
    if (log->private_ring != NULL) {
        io_uring_queue_exit(log->private_ring);
        tq_free(log->private_ring, sizeof(*log->private_ring));
    }
    tq_cursor_free(&log->read_cursor);
    str_free(log->dir);
    str_free(log->log_dir);
    str_free(log->snap_dir);
    str_free(log->spare_path);
    tq_free(log, sizeof(*log));
}

void tq_log_close(struct tq_log *log) {
    if (log == NULL) return;
    /* Every SQE of the log must have been reaped: its buffers are freed here. */
    TQ_ASSERT(log->ops_inflight == 0);
    TQ_ASSERT(log->unit_count == 0 && !log->sync_inflight);
    if (!log->opt.read_only && log->opt.fsync_mode == TQ_FSYNC_INTERVAL &&
        log->written_lsn > log->durable_lsn && log->seg_count > 0) {
        struct tq_seg *tail = &log->segs[log->seg_count - 1];
        if (fdatasync(tail->fd) != 0) {
            tq_fatal("fdatasync %s at close (lsn %" PRIu64 "): %s", tail->path, log->written_lsn,
                     strerror(errno));
        }
        if (log->prev_unsynced_seg >= 0 && fdatasync(log->segs[log->prev_unsynced_seg].fd) != 0) {
            tq_fatal("fdatasync %s at close: %s", log->segs[log->prev_unsynced_seg].path,
                     strerror(errno));
        }
        if (log->dir_sync_needed) fsync(log->log_dir_fd);
    }
    if (!log->opt.read_only && log->seg_count > 0 && !log->segs[log->seg_count - 1].compressed) {
        /* A recycled tail ends in an earlier life's bytes: mark its end so the next open sees a
         * clean end, not a torn batch (after a crash it is cut as one, with its log line). */
        struct tq_seg *tail = &log->segs[log->seg_count - 1];
        int rc = seg_mark_end(log, tail, log->tail_offset);
        if (rc < 0) {
            tq_log_line(log, "end mark of %s at offset %" PRIu64 " at close: %s", tail->path,
                        log->tail_offset, strerror(-rc));
        }
    }
    if (!log->opt.read_only && log->spare_ready && log->spare_recycled) {
        /* Back to the pool (open would remove a spare): the next open makes its spare of it. */
        char name[64];
        snprintf(name, sizeof(name), TQ_RECYCLE_PREFIX "%020" PRIu64, log->next_lsn);
        char *path = path_join(log->log_dir, name);
        if (rename(log->spare_path, path) != 0) unlink(log->spare_path);
        str_free(path);
    }
    tq_log_abandon(log);
}
