/* storage/log_impl.h: the private state of struct tq_log, shared by the files of tq_storage.
 *
 * Not installed, not included outside storage/ (tests of internals include it on purpose).
 * See log.c for the write path and recovery, read.c for readers, compress.c and snapshot.c.
 */
#ifndef TQ_STORAGE_LOG_IMPL_H
#define TQ_STORAGE_LOG_IMPL_H

#include "format.h"
#include "log.h"

#include <stdbool.h>
#include <stdint.h>

struct tq_zseg_block {
    uint64_t raw_offset;  /* logical offset in the original segment */
    uint64_t file_offset; /* where the zstd frame starts in the .zseg file */
    uint32_t raw_bytes;
    uint32_t comp_bytes;
};
_Static_assert(sizeof(struct tq_zseg_block) == 24, "log format");

/* Trailer of a .zseg file (its last 64 bytes). */
struct tq_zseg_footer {
    uint32_t magic; /* TQ_ZSEG_MAGIC */
    uint16_t version;
    uint16_t flags;
    uint64_t lsn_first; /* the original segment's first LSN (= file name) */
    uint64_t lsn_last;
    uint64_t raw_bytes; /* logical end of the last batch */
    uint32_t block_count;
    uint32_t reserved;
    uint64_t index_offset; /* block_count entries of struct tq_zseg_block */
    uint64_t index_hash;   /* XXH3 of the index entries */
    uint64_t footer_hash;  /* XXH3 of bytes 0..55 */
};
_Static_assert(sizeof(struct tq_zseg_footer) == 64, "log format");

struct tq_seg {
    uint64_t lsn_first;     /* from the file name */
    uint64_t lsn_last;      /* last LSN in it; lsn_first - 1 when empty */
    uint64_t bytes_used;    /* logical end of the last submitted batch */
    uint64_t bytes_written; /* logical end of the last batch whose write completed */
    char *path;
    int fd;          /* reads, fsyncs, fault seam (buffered) */
    int wfd;         /* batch writes (O_DIRECT when supported), flock'ed LOCK_EX; -1 */
    bool wfd_direct; /* wfd was opened with O_DIRECT */
    bool compressed;
    struct tq_zseg_block *blocks; /* compressed only */
    uint32_t block_count;
};

/* One entry per batch: the sparse index LSN -> (segment, offset). */
struct tq_batch_ref {
    uint64_t lsn_first;
    uint64_t offset; /* logical offset in its segment */
    uint32_t seg_index;
    uint32_t disk_bytes; /* header + area + padding */
    uint32_t record_count;
    uint32_t reserved;
};

struct tq_scan_stream; /* read.c */

/* The recovery scan's reads in flight: a private ring and the buffers, shared by the cursors
 * of one scan (one segment after the other) so they are allocated and faulted in once. */
#define TQ_SCAN_DEPTH 8u
struct tq_scan_io {
    struct io_uring *ring; /* NULL: io_uring unavailable, plain preads */
    size_t window;         /* bytes per read */
    size_t slack;          /* largest contiguous request */
    bool buffered;         /* read through the page cache (options.buffered_writes: the writer
                            * leaves the log cached there); else O_DIRECT */
    uint8_t *mem;          /* slack + TQ_SCAN_DEPTH * window bytes, 4 KiB-aligned */
    size_t mem_bytes;
};

/* A read window over one segment (plain: pread; compressed: one inflated block). */
struct tq_seg_cursor {
    const struct tq_seg *seg; /* refreshed from seg_index before use: log->segs may move */
    uint32_t seg_index;
    bool bound;
    uint8_t *buf;
    size_t cap;
    uint64_t win_offset;
    size_t win_len;
    /* The window is one inflated block (whole batches). Kept per window, not read from seg:
     * online compaction may turn the segment into a .zseg while a plain window is cached. */
    bool win_whole_batches;
    size_t window_bytes; /* plain segments: bytes read per refill (0: 1 MiB) */
    /* compressed: scratch for the frame bytes */
    uint8_t *zbuf;
    size_t zcap;
    /* Recovery scan of a plain segment: several O_DIRECT reads in flight (read.c); NULL for
     * every other reader. */
    struct tq_scan_stream *stream;
};

struct tq_batch_buf {
    uint8_t *mem; /* TQ_BATCH_ALIGN_BYTES-aligned (inside raw), cap bytes; NULL until used */
    uint8_t *raw; /* allocation (raw_bytes) */
    size_t raw_bytes;
    size_t cap;
    uint32_t area_bytes;
    uint32_t record_count;
    uint64_t lsn_first;
    bool busy; /* owned by a unit in flight */
};

/* Batches in flight at most (each: one write linked to one fdatasync), and buffers: one per
 * batch in flight plus the open one. */
#define TQ_LOG_UNITS_MAX TQ_BATCHES_INFLIGHT_MAX
#define TQ_LOG_BUFS_MAX  (TQ_LOG_UNITS_MAX + 1u)

enum tq_log_op {
    TQ_LOG_OP_WRITE = 1,
    TQ_LOG_OP_FSYNC = 2,    /* fdatasync of the tail segment (linked after the write) */
    TQ_LOG_OP_DIRSYNC = 3,  /* fsync of log/ after a segment was created */
    TQ_LOG_OP_PREVSYNC = 4, /* interval mode: fdatasync of the just-sealed segment */
    TQ_LOG_OP_ZERO = 5,     /* zero-fill of the spare segment */
    TQ_LOG_OP_ZEROSYNC = 6, /* fdatasync of the zero-filled spare */
    TQ_LOG_OP_COUNT = 7,
};

/* One batch in flight: its write (resubmitted in parts after a short write) linked to its
 * fdatasync (and an fsync of log/ for the first batch of a segment). Retired strictly in
 * submission order: a batch is acknowledged only when it and every earlier one is complete. */
struct tq_log_unit {
    unsigned buf;
    uint32_t seg;
    uint64_t offset;
    uint32_t bytes;
    uint32_t done; /* bytes whose write completed */
    uint64_t lsn_last;
    uint32_t records;        /* in this batch */
    uint64_t submit_mono_us; /* CLOCK_MONOTONIC at submission (on_batch_acked only) */
    bool dirsync;
    bool dsync;        /* the write carries RWF_DSYNC: no linked fdatasync (dsync_writes) */
    bool failed_link;  /* a CQE came back -ECANCELED after a short write */
    bool complete;     /* all CQEs consumed, written (and synced in ALWAYS mode) */
    unsigned pending;  /* CQEs still expected for the current chain */
    uint64_t sync_seq; /* faults seam sequence of its fsync */
    bool override_set[TQ_LOG_OP_COUNT];
    int32_t override_res[TQ_LOG_OP_COUNT];
};

struct tq_log {
    struct tq_log_options opt; /* dir points at dir below */
    char *dir;
    char *log_dir;
    char *snap_dir;
    int log_dir_fd;

    struct tq_seg *segs;
    uint32_t seg_count;
    uint32_t seg_cap;
    struct tq_batch_ref *refs;
    uint64_t ref_count;
    uint64_t ref_cap;

    uint64_t lsn_first; /* first LSN present (0: empty log) */
    uint64_t next_lsn;
    uint64_t written_lsn;     /* write completed (page cache) */
    uint64_t durable_lsn;     /* fdatasync completed for it and everything before */
    uint64_t chain_head;      /* header_hash of the last submitted batch */
    uint64_t tail_offset;     /* where the next batch goes in the tail segment */
    uint64_t bytes_submitted; /* disk bytes of the batches submitted since open (monotone) */

    struct tq_batch_buf bufs[TQ_LOG_BUFS_MAX];
    unsigned open_buf;

    /* Batches in flight (a FIFO of units_max slots), or one interval sync group: never both. */
    struct tq_log_unit units[TQ_LOG_UNITS_MAX];
    unsigned unit_head; /* slot of the oldest batch in flight */
    unsigned unit_count;
    unsigned units_max; /* options.batches_inflight_max, clamped */
    bool sync_inflight;
    unsigned sync_pending; /* CQEs still expected for the interval sync group */
    uint64_t sync_target_lsn;
    uint64_t sync_seq; /* faults seam sequence of the interval sync */
    bool dir_sync_needed;
    int64_t prev_unsynced_seg; /* interval mode: sealed segment with unsynced writes, or -1 */
    uint64_t last_sync_us;

    /* The spare segment, preallocated ahead so sealing never waits and ENOSPC shows early. */
    char *spare_path;
    int spare_fd;
    int spare_dfd; /* O_DIRECT description for its zero-fill writes: -1 not opened yet, -2 the
                    * file system refused O_DIRECT (zero-fill goes through spare_fd) */
    bool spare_ready;
    uint64_t spare_zeroed;
    uint64_t zero_credit; /* bytes of small batches since the spare was prepared, not yet
                           * matched by zero-fill writes (zero_submit) */
    bool zero_inflight;
    bool zero_done;
    uint8_t *zero_buf; /* ZERO_CHUNK_BYTES of zeros, 4 KiB-aligned inside zero_raw */
    uint8_t *zero_raw;
    bool no_space;
    bool live_race; /* read-only: a hole beside a live writer, maybe a read race (tq_log_open) */
    bool spare_recycled; /* the spare is a recycled segment file (stale batches in it) */
    /* Recycled segment files ready to become spares (paths; owned), newest last. Filled at open
     * (DIR/log/recycle.*) and by tq_log_rewrite_install, never with a file the log still reads. */
    char *recycle_paths[TQ_RECYCLE_SEGMENTS_MAX];
    uint32_t recycle_count;

    unsigned ops_inflight;     /* SQEs prepared whose CQE was not consumed yet */
    struct io_uring *ops_ring; /* the ring they were prepared on */
    uint64_t op_seq;
    bool override_set[TQ_LOG_OP_COUNT];
    int32_t override_res[TQ_LOG_OP_COUNT];

    struct io_uring *private_ring;
    struct tq_seg_cursor read_cursor;
};

/* read.c */
void tq_cursor_init(struct tq_seg_cursor *c, const struct tq_seg *seg);
void tq_cursor_free(struct tq_seg_cursor *c);
/* Switches a fresh cursor over a plain segment to streaming for a sequential scan from offset
 * start (the first request) to limit: reads of io->window bytes are kept in flight on io->ring,
 * through an O_DIRECT descriptor
 * when the file system takes one, while the caller verifies the bytes already read. The caller
 * must then ask for offsets that never go backwards and for at most window_bytes at a time;
 * anything else falls back to plain preads. io is owned by the caller and used by this cursor
 * only until tq_cursor_free (one streaming cursor per io at a time). No-op (plain preads) if the
 * segment is compressed. */
void tq_cursor_stream(struct tq_seg_cursor *c, struct tq_scan_io *io, uint64_t start,
                      uint64_t limit);
/* Sets up io for reads of window bytes (a multiple of 4 KiB) and requests of up to slack bytes
 * (larger ones fall back to pread); on failure io->ring is NULL (plain preads). */
void tq_scan_io_init(struct tq_scan_io *io, size_t window, size_t slack);
void tq_scan_io_free(struct tq_scan_io *io);
/* Makes [offset, offset+want) readable at *p, reading no further than limit (logical bytes).
 * *avail gets the bytes readable at *p (may be < want at the end). TQ_ERR_IO/TQ_ERR_CORRUPT. */
enum tq_err tq_cursor_get(struct tq_seg_cursor *c, uint64_t offset, size_t want, uint64_t limit,
                          const uint8_t **p, size_t *avail, struct tq_error *error);
/* Binary search: index of the batch ref holding lsn, or -1. */
int64_t tq_log_ref_find(const struct tq_log *log, uint64_t lsn);

/* compress.c: loads the block index of a .zseg into seg (validating it). */
enum tq_err tq_zseg_load(struct tq_seg *seg, struct tq_error *error);

/* snapshot.c: newest valid snapshot LSN for recovery reporting (0: none). */
uint64_t tq_snapshot_scan_latest(struct tq_log *log);

/* log.c */
/* Hands a recycled segment file (already renamed to DIR/log/recycle.*) to the pool; removes it
 * when the pool is full or recycling is off. Takes ownership of path. */
void tq_log_recycle_add(struct tq_log *log, char *path);
void tq_log_line(const struct tq_log *log, const char *fmt, ...) TQ_PRINTF(2, 3);
/* Blocking fsync through the faults seam. Returns 0 or a negative errno. */
int tq_log_blocking_fsync(struct tq_log *log, int fd, const char *path);

#endif
