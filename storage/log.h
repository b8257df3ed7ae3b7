/* storage/log.h: the append-only log (public API of tq_storage).
 *
 * Records are opaque (type, bytes); tq_storage knows nothing about tickets. A record is durable
 * only after the fdatasync that follows its batch, and every earlier batch's, has completed:
 * tq_log never reports a record acknowledged earlier (in TQ_FSYNC_ALWAYS mode). Byte layout:
 * docs/log-format.md. Ownership: payloads are copied before tq_log_append() returns. Threads: one
 * event loop owns a log; read-only handles may live in other processes.
 *
 * Data directory layout (owned by tq_storage):
 *   DIR/log/<first LSN, 20 digits>.seg       segments (sealed ones may be .zseg, compressed)
 *   DIR/snapshots/<LSN, 20 digits>.snap      state snapshots (opaque blobs)
 *   DIR/log/recycle.<LSN, 20 digits>         old files of compressed segments, kept for reuse
 *                                            as spares (recycle_segments_max; not the log)
 * LSNs start at 1 and grow by one per record. LSN 0 means "none".
 *
 * The write path plugs into the caller's io_uring (the server runs one ring for network and
 * disk): tq_log_submit() prepares SQEs on the caller's ring, the caller submits, and passes every
 * CQE whose user_data carries the log's tag (tq_log_owns_cqe) to tq_log_complete(). tq_log_sync()
 * is a blocking wrapper with a private ring, for tools and tests.
 */
#ifndef TQ_STORAGE_LOG_H
#define TQ_STORAGE_LOG_H

#include "tq_err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct io_uring;
struct io_uring_cqe;

#define TQ_SEGMENT_BYTES_DEFAULT    (64ull * 1024 * 1024)
#define TQ_RECORD_BYTES_DEFAULT_MAX (1u * 1024 * 1024)
#define TQ_BATCH_BYTES_DEFAULT_MAX  (4u * 1024 * 1024)

enum tq_fsync_mode {
    TQ_FSYNC_ALWAYS = 0,   /* default: acknowledged == durable (fdatasync completed) */
    TQ_FSYNC_INTERVAL = 1, /* fdatasync at most every interval_ms: acked == written, not synced */
    TQ_FSYNC_NONE = 2,     /* never fdatasync: for benchmarks only, a crash loses acked data */
};

struct tq_io_faults; /* test seam, storage/faults.h */

struct tq_log_options {
    const char *dir;            /* data directory; created if missing (not in read_only) */
    uint64_t segment_bytes_max; /* seal threshold; 0 = TQ_SEGMENT_BYTES_DEFAULT */
    uint32_t record_bytes_max;  /* 0 = TQ_RECORD_BYTES_DEFAULT_MAX */
    /* 0 = TQ_BATCH_BYTES_DEFAULT_MAX. Each batch buffer (up to batches_inflight_max + 1,
     * allocated on first use) of 1 MiB or more is backed by transparent huge pages where the
     * system has them (madvise): fewer, larger disk requests, but a used buffer keeps at least
     * one whole 2 MiB page resident even for small batches. */
    uint32_t batch_bytes_max;
    enum tq_fsync_mode fsync_mode;
    uint32_t fsync_interval_ms;  /* TQ_FSYNC_INTERVAL only */
    bool read_only;              /* no writes, no tail cut: stop at the last valid batch */
    bool repair;                 /* cut at the first bad batch instead of refusing to open */
    uint8_t ring_tag;            /* top byte of user_data of this log's SQEs (non-zero) */
    struct tq_io_faults *faults; /* NULL in production */
    /* One line per notable recovery event (torn tail cut, repair); NULL: stderr. */
    void (*log_line)(void *ctx, const char *line);
    void *log_line_ctx;
    /* Skip zero-filling the preallocated spare segment through the ring (it is fallocated
     * either way; zero-filling, in idle turns and paid for by small batches, makes each later
     * fdatasync cheaper: docs/log-format.md, "Preallocation"). */
    bool spare_no_prezero;
    /* Batches in flight at once (write+fdatasync chains; acks stay in order, each waits for
     * every earlier batch's fdatasync): 0 = TQ_BATCHES_INFLIGHT_DEFAULT, at most
     * TQ_BATCHES_INFLIGHT_MAX. Each costs one batch buffer (batch_bytes_max). */
    uint32_t batches_inflight_max;
    /* A batch is submitted while another one is still in flight only if its records fill at
     * least this many bytes (0 = TQ_PIPELINE_BYTES_DEFAULT_MIN; 1 = any batch). Below it the
     * fdatasync dominates a batch's cost and a second, concurrent batch means a second flush
     * for few records; waiting merges them into one (docs/performance-storage.md, 2026-12-03). */
    uint32_t pipeline_bytes_min;
    /* Write batches through the page cache instead of O_DIRECT (O_DIRECT is used when the
     * file system supports it: no page-cache copy; docs/performance-storage.md). Recovery then
     * reads through the page cache too (where such a writer left the log), else O_DIRECT. */
    bool buffered_writes;
    /* ALWAYS mode: make each batch durable with the write itself (RWF_DSYNC: a FUA write where
     * the disk has FUA, else the kernel's own flush after the write) instead of a write linked
     * to a separate fdatasync. Same guarantee (a batch is acknowledged only after its write
     * completed durably and every earlier batch is acknowledged); measured against the linked
     * fdatasync in docs/performance-storage.md (2026-12-03, "O_DIRECT and RWF_DSYNC"). */
    bool dsync_writes;
    /* How long a writable open waits for another writer's lock on a segment (a killed writer's
     * writes still landing) before failing with TQ_ERR_UNAVAILABLE; 0 = 10000 ms. */
    uint32_t writers_wait_ms;
    /* Snapshots kept by tq_log_snapshot_write: once a new one is durable, all but the newest
     * snapshots_kept are deleted. 0 = TQ_SNAPSHOTS_KEPT_DEFAULT, at most TQ_SNAPSHOTS_KEPT_MAX. */
    uint32_t snapshots_kept;
    /* Segment recycling (docs/log-format.md, "Recycled segments"; off when 0): a plain segment
     * replaced by its compressed form is renamed to DIR/log/recycle.<its first LSN> instead of
     * removed, and the next spare segment is made of it (its blocks are written and synced, so
     * batches written into it skip the unwritten-extent conversion). At most this many such files
     * are kept (<= TQ_RECYCLE_SEGMENTS_MAX); each holds segment_bytes_max of disk that compaction
     * would otherwise have freed, which is why it is off unless asked for. */
    uint32_t recycle_segments_max;
    /* Called once per batch as it is acknowledged (retired in order), from tq_log_complete:
     * its record count and the microseconds from its submission to its acknowledgement
     * (CLOCK_MONOTONIC). For metrics; NULL: not called. */
    void (*on_batch_acked)(void *ctx, uint32_t records, uint64_t submit_to_ack_us);
    void *on_batch_acked_ctx;
};

#define TQ_RECYCLE_SEGMENTS_MAX 64u
#define TQ_RECYCLE_PREFIX       "recycle." /* DIR/log/recycle.<20-digit LSN> */

#define TQ_SNAPSHOTS_KEPT_DEFAULT 2u
#define TQ_SNAPSHOTS_KEPT_MAX     32u

/* 4 since 2026-12-03: with pipeline_bytes_min keeping small batches from splitting, 4 in flight
 * was the fastest depth for large records (16-64 KiB x 256 appenders, docs/performance-storage.md);
 * buffers are allocated on first use, so flush-bound loads still use two. */
#define TQ_BATCHES_INFLIGHT_DEFAULT 4u
#define TQ_BATCHES_INFLIGHT_MAX     4u
/* 512 KiB: the bytes this disk writes (2.2-2.7 GB/s) in the time of one flush (0.15-0.2 ms). */
#define TQ_PIPELINE_BYTES_DEFAULT_MIN (512u * 1024)

#define TQ_LOG_RING_TAG_DEFAULT 0x4cu /* used when options.ring_tag is 0 */

struct tq_log_recovery {
    uint64_t lsn_first;    /* first LSN present in the log (0: empty) */
    uint64_t lsn_last;     /* last valid LSN after recovery (0: empty) */
    uint64_t snapshot_lsn; /* LSN covered by the newest valid snapshot (0: none) */
    uint64_t segments;
    uint64_t batches_scanned;
    uint64_t records_scanned;
    uint64_t bytes_scanned;
    uint64_t torn_bytes_cut; /* bytes of a torn last batch that were cut */
    uint64_t repair_records_dropped;
    double seconds;
};

struct tq_log_record {
    uint64_t lsn;
    uint64_t commit_us;     /* the batch's commit timestamp (µs since the Unix epoch) */
    uint16_t type;          /* caller-defined; 0 is reserved */
    uint16_t flags;         /* TQ_RECORD_REDACTED, ... */
    uint32_t len;           /* payload bytes (0 when redacted) */
    const uint8_t *payload; /* valid until the next call on the same reader/iterator */
};

#define TQ_RECORD_REDACTED 0x0001u /* payload physically removed by compaction; hash kept */

struct tq_log;

/* Opens (and recovers) the log in options->dir. Verifies every batch checksum and the hash
 * chain from the newest snapshot on (all of it if there is none); cuts a torn tail (one line to
 * log_line); refuses corruption elsewhere with TQ_ERR_CORRUPT and a message naming the segment
 * file, byte offset and LSN. A writable open first waits (writers_wait_ms) until no other
 * process holds a segment's write lock (a killed writer's last writes still landing); a live
 * second writer gives TQ_ERR_UNAVAILABLE. A read-only open never cuts: it stops at a torn tail,
 * and at a hole (valid batches after a bad one) only if a live writer holds DIR/LOCK and the
 * hole is its batches in flight (docs/log-format.md, "Readers beside a live writer"), else
 * TQ_ERR_CORRUPT. Returns TQ_OK, TQ_ERR_CORRUPT, TQ_ERR_IO,
 * TQ_ERR_INVALID_ARGUMENT, TQ_ERR_UNAVAILABLE.
 * recovery may be NULL. On success the caller owns *log_out (tq_log_close). */
TQ_NODISCARD enum tq_err tq_log_open(const struct tq_log_options *options, struct tq_log **log_out,
                                     struct tq_log_recovery *recovery, struct tq_error *error);
/* Closes the log. Staged but unsubmitted records are dropped (never acknowledged). The caller
 * must first reap every CQE of the log (tq_log_idle() is true; asserted). In INTERVAL mode the
 * written tail is fdatasync'ed before closing. */
void tq_log_close(struct tq_log *log);

/* ---- append path --------------------------------------------------------------------- */

/* True if a record of len payload bytes can be staged now without error: it fits the limits,
 * the batch buffer has room and the disk has room (a spare segment is preallocated ahead). The
 * server asks this before applying a mutation, so a mutation is never applied and then refused
 * by the log. */
bool tq_log_can_append(const struct tq_log *log, uint32_t len);

/* Stages one record into the open batch (copies payload) and returns its LSN in *lsn_out.
 * Returns TQ_ERR_INVALID_ARGUMENT (type 0, len > record_bytes_max), TQ_ERR_RESOURCE_EXHAUSTED
 * (batch buffer full: wait for the in-flight batch), TQ_ERR_NO_SPACE (disk full: reads keep
 * working), TQ_ERR_UNAVAILABLE (read-only handle). Nothing is staged on error. */
TQ_NODISCARD enum tq_err tq_log_append(struct tq_log *log, uint16_t type, const void *payload,
                                       uint32_t len, uint64_t *lsn_out, struct tq_error *error);

/* Prepares SQEs on ring for the staged records if fewer than batches_inflight_max batches are
 * in flight (group commit: one write linked to one fdatasync per batch; never IOSQE_IO_DRAIN),
 * or for a due interval sync (once no batch is in flight). Batches are acknowledged strictly in
 * order, each only after its own fdatasync and every earlier batch's. Returns the number of SQEs
 * prepared; the caller calls io_uring_submit. now_us stamps the batch. */
unsigned tq_log_submit(struct tq_log *log, struct io_uring *ring, uint64_t now_us);

/* Batches (write+fdatasync chains) submitted and not yet acknowledged. */
unsigned tq_log_batches_inflight(const struct tq_log *log);

/* True if cqe was produced by an SQE of this log (user_data's top byte is options.ring_tag). */
bool tq_log_owns_cqe(const struct tq_log *log, const struct io_uring_cqe *cqe);

/* Consumes one CQE owned by the log. A short write is finished, then synced; a write or
 * fdatasync error is fail-stop (tq_fatal naming errno, file and LSN). May prepare SQEs. */
void tq_log_complete(struct tq_log *log, struct io_uring *ring, const struct io_uring_cqe *cqe);

/* Highest LSN the caller may acknowledge: durable in ALWAYS mode; written (not yet synced) in
 * INTERVAL and NONE mode. All LSNs <= it are acknowledged too. */
uint64_t tq_log_acked_lsn(const struct tq_log *log);
/* Highest LSN known durable (fdatasync completed for it and everything before). */
uint64_t tq_log_durable_lsn(const struct tq_log *log);
/* The chain value (header checksum) of the last batch submitted: the "chain head" an auditor
 * can write down; every earlier batch is bound to it (docs/log-format.md). 0 for an empty log. */
uint64_t tq_log_chain_head(const struct tq_log *log);
/* LSN the next staged record will get. */
uint64_t tq_log_next_lsn(const struct tq_log *log);
/* Bytes of the batches submitted since the log was opened, as they lie in the segments (header,
 * records and padding to 4 KiB): a monotone position in the log's byte stream, for policies that
 * weigh the log's growth (server/snapshot.c, --snapshot-growth). Never goes back, not even when
 * compaction shrinks or drops segments. */
uint64_t tq_log_bytes_submitted(const struct tq_log *log);
/* Bytes (counted as tq_log_bytes_submitted counts them) of the batches submitted after the one
 * that holds lsn: what a recovery from a snapshot at lsn would read. Every batch in the log when
 * lsn is 0 or older than the log's first LSN; 0 when lsn is not in a submitted batch yet.
 * O(batches after lsn); for start-up, not for every turn. */
uint64_t tq_log_bytes_after(const struct tq_log *log, uint64_t lsn);
/* Milliseconds until the log wants tq_log_submit called again (interval sync, or 1 while the
 * spare segment is being zero-filled in idle time), or -1. */
int tq_log_timeout_ms(const struct tq_log *log, uint64_t now_us);

/* True when no SQE of the log is in flight (the caller may close it or stop its ring). */
bool tq_log_idle(const struct tq_log *log);

/* Blocking convenience: submits everything staged on a private ring and waits until it is
 * acknowledged. For tools and tests; the server never calls it. Returns TQ_ERR_FAILED_PRECONDITION
 * if SQEs of the log are in flight on another ring (one ring at a time per log). */
TQ_NODISCARD enum tq_err tq_log_sync(struct tq_log *log, struct tq_error *error);

/* ---- reads ----------------------------------------------------------------------------- */

/* Reads the record with this LSN (must be <= tq_log_acked_lsn). Payload is copied to buf (cap
 * bytes) and record->payload points into buf. Returns TQ_ERR_NOT_FOUND, TQ_ERR_RESOURCE_EXHAUSTED
 * (record->len tells the size needed), TQ_ERR_CORRUPT, TQ_ERR_IO. */
TQ_NODISCARD enum tq_err tq_log_read(struct tq_log *log, uint64_t lsn, struct tq_log_record *record,
                                     void *buf, size_t cap, struct tq_error *error);

struct tq_log_iter;
/* Iterates from lsn_from (inclusive; 0 or below the first LSN = from the start) to the
 * acknowledged end at the time of each next call. */
TQ_NODISCARD enum tq_err tq_log_iter_open(struct tq_log *log, uint64_t lsn_from,
                                          struct tq_log_iter **iter_out, struct tq_error *error);
/* TQ_OK and the next record; TQ_ERR_NOT_FOUND at the end; TQ_ERR_CORRUPT naming file/offset/LSN. */
TQ_NODISCARD enum tq_err tq_log_iter_next(struct tq_log_iter *iter, struct tq_log_record *record,
                                          struct tq_error *error);
void tq_log_iter_close(struct tq_log_iter *iter);

/* ---- maintenance ----------------------------------------------------------------------- */

/* Rewrites the sealed segment whose first LSN is segment_lsn as DIR/log/<lsn>.zseg: zstd blocks
 * of whole batches (independently decompressible, block index at the end), atomically (temp
 * file, fsync, rename, fsync dir, unlink the .seg, fsync dir). Reads, iteration and recovery
 * work on both forms; batch checksums still verify the original bytes. Blocking. Returns
 * TQ_ERR_NOT_FOUND (no such segment), TQ_ERR_FAILED_PRECONDITION (the tail segment or already
 * compressed), TQ_ERR_IO, TQ_ERR_NO_SPACE, TQ_ERR_CORRUPT. stats may be NULL. */
struct tq_compress_stats {
    uint64_t raw_bytes;        /* logical bytes of the segment (batches incl. padding) */
    uint64_t payload_bytes;    /* record payload bytes in it */
    uint64_t compressed_bytes; /* size of the .zseg file */
    uint32_t blocks;
};
TQ_NODISCARD enum tq_err tq_log_compress_segment(struct tq_log *log, uint64_t segment_lsn,
                                                 struct tq_compress_stats *stats,
                                                 struct tq_error *error);

/* Erasure primitive for the compactor: rewrites the sealed, uncompressed segment starting at
 * segment_lsn with the payloads of the listed LSNs (count entries; LSNs outside the segment are
 * ignored) physically zeroed and flagged TQ_RECORD_REDACTED, atomically (temp file, fsync,
 * rename, fsync dir). Batch checksums and the hash chain are unchanged (docs/log-format.md,
 * "Redaction"). *redacted_out (may be NULL) gets the number of records redacted. Readers that
 * cached the old bytes (open iterators) may still return them until reopened. Returns
 * TQ_ERR_NOT_FOUND, TQ_ERR_FAILED_PRECONDITION, TQ_ERR_CORRUPT, TQ_ERR_IO, TQ_ERR_NO_SPACE. */
TQ_NODISCARD enum tq_err tq_log_redact_segment(struct tq_log *log, uint64_t segment_lsn,
                                               const uint64_t *lsns, size_t count,
                                               uint64_t *redacted_out, struct tq_error *error);

/* The same rewrite split in three for a helper thread (storage/rewrite.c). Redaction and
 * compression of one sealed segment in one pass:
 *   tq_log_rewrite_begin   on the thread that owns the log: captures the segment (path, size,
 *                          LSN range, form). TQ_ERR_NOT_FOUND, TQ_ERR_FAILED_PRECONDITION (the
 *                          tail, records not yet durable, read-only log, empty segment).
 *   tq_log_rewrite_write   on any thread, touching no state of the log: reads the segment by
 *                          its own descriptor, verifies every batch, redacts the listed LSNs
 *                          (sorted ascending), writes the new image (a .zseg when compress is
 *                          set or the segment was one already) to a temp file, fsync, rename,
 *                          fsync dir (and removes a replaced .seg). Nothing is written when
 *                          nothing changes (stats->rewritten false). The log keeps reading the
 *                          old inode (same batches, same hashes) until install. Returns
 *                          TQ_ERR_CORRUPT, TQ_ERR_IO, TQ_ERR_NO_SPACE, TQ_ERR_RESOURCE_EXHAUSTED;
 *                          a failed directory fsync after the rename is fail-stop.
 *   tq_log_rewrite_install on the owning thread: switches the segment table entry to the new
 *                          file and drops cached reads of it. No-op if nothing was written.
 * The caller guarantees one rewrite per segment at a time and frees every rewrite. */
struct tq_log_rewrite;
struct tq_log_rewrite_options {
    const uint64_t *lsns; /* records to redact, sorted ascending (others ignored) */
    size_t count;
    bool compress; /* write a .zseg */
    /* Called after every chunk (<= 1 MiB) read or written, on the writing thread: an I/O
     * budget sleeps here. May be NULL. */
    void (*io_done)(void *ctx, uint64_t bytes);
    void *io_ctx;
};
struct tq_log_rewrite_stats {
    bool rewritten;            /* a new image replaced the segment on disk */
    uint64_t records_redacted; /* records newly redacted */
    uint64_t bytes_read, bytes_written;
    uint64_t raw_bytes;     /* logical bytes of the segment */
    uint64_t payload_bytes; /* record payload bytes in it (after redaction) */
    uint64_t bytes_after;   /* size of the new file */
    uint32_t blocks;        /* zstd blocks of the new .zseg */
};
TQ_NODISCARD enum tq_err tq_log_rewrite_begin(struct tq_log *log, uint64_t segment_lsn,
                                              struct tq_log_rewrite **rw_out,
                                              struct tq_error *error);
TQ_NODISCARD enum tq_err tq_log_rewrite_write(struct tq_log_rewrite *rw,
                                              const struct tq_log_rewrite_options *options,
                                              struct tq_log_rewrite_stats *stats,
                                              struct tq_error *error);
void tq_log_rewrite_install(struct tq_log *log, struct tq_log_rewrite *rw);
void tq_log_rewrite_free(struct tq_log_rewrite *rw);

/* First LSN of every segment, oldest first: up to cap values into lsns; returns the count. */
size_t tq_log_segments(const struct tq_log *log, uint64_t *lsns, size_t cap);

/* ---- the data-directory lock (storage/dirlock.c) ----------------------------------------- */

#define TQ_LOG_LOCK_NAME "LOCK" /* DIR/LOCK */

/* Takes the exclusive lock of data directory dir (which must exist) for a process that
 * writes it: ticketqd for its lifetime, offline tools that write (compact, restore). holder
 * names the taker in the lock file ("ticketqd"). Never waits: TQ_ERR_UNAVAILABLE with a
 * message naming the directory and the holder when another process has it; TQ_ERR_NOT_FOUND
 * (no such directory); TQ_ERR_IO. On
 * TQ_OK *fd_out holds the lock until tq_log_dir_unlock (or exit). Readers take no lock. */
TQ_NODISCARD enum tq_err tq_log_dir_lock(const char *dir, const char *holder, int *fd_out,
                                         struct tq_error *error);
void tq_log_dir_unlock(int fd);
/* True if a live process holds the lock of data directory dir right now (a running ticketqd,
 * or an offline tool writing it). Probed with a non-blocking shared flock that fails with
 * EWOULDBLOCK when a holder exists; when it succeeds it is released at once (the probe holds
 * it for microseconds; a ticketqd starting in exactly that instant is refused with "in use"
 * and starts on a retry). False when DIR/LOCK does not exist or cannot be opened. Used by
 * read-only opens to tell a live writer's batches in flight from damage. */
bool tq_log_dir_locked(const char *dir);

/* ---- snapshots ------------------------------------------------------------------------- */

/* Writes blob as the snapshot covering every record <= lsn (<= the acknowledged LSN),
 * atomically (temp file <name>.tmp, fsync, rename, fsync directory), then deletes all but the
 * newest options.snapshots_kept snapshots. Blocking. Uses plain syscalls on the snapshot
 * directory only (no ring, no segment), so a forked child of the log's owner may call it on
 * its copy of the handle (server/snapshot.c does). */
TQ_NODISCARD enum tq_err tq_log_snapshot_write(struct tq_log *log, uint64_t lsn, const void *blob,
                                               size_t len, struct tq_error *error);
/* The durability gate of a snapshot taken ahead of durability (tq_log_snapshot_write_image with
 * a gate): called once, after the temp file is written and synced and before it is renamed
 * into place. Returns true when every record <= lsn is durable (it may block until then), false
 * to abandon the snapshot (error filled). */
typedef bool (*tq_snapshot_gate_fn)(void *ctx, uint64_t lsn, struct tq_error *error);
/* Bytes before the blob in a snapshot file (its header, docs/log-format.md). */
#define TQ_SNAPSHOT_HEADER_BYTES 64u
/* As tq_log_snapshot_write, from an image: image is 4096-byte aligned, its first
 * TQ_SNAPSHOT_HEADER_BYTES are overwritten with the header, the blob follows them, and the bytes
 * after the blob up to image_cap (which must reach the next 4096-byte boundary) may be
 * overwritten with zero padding. The file is byte for byte what tq_log_snapshot_write writes;
 * it is written with O_DIRECT, so the page cache makes no copy of it, and buffered where the
 * file system refuses O_DIRECT. TQ_ERR_INVALID_ARGUMENT for an image without room, plus
 * tq_log_snapshot_write's errors.
 * With gate NULL, lsn must be acknowledged. With a gate, the snapshot may be taken ahead of
 * durability (a forked child of the log's owner, at the state's applied LSN): lsn need only
 * have been appended (< next LSN), and the rename that publishes the snapshot waits for gate.
 * When gate refuses, the temp file is removed and the gate's error returned; a crash before the
 * rename leaves only the temp file, which recovery ignores. So a *.snap file never covers a
 * record that was not durable. */
TQ_NODISCARD enum tq_err tq_log_snapshot_write_image(struct tq_log *log, uint64_t lsn, void *image,
                                                     size_t image_cap, size_t blob_bytes,
                                                     tq_snapshot_gate_fn gate, void *gate_ctx,
                                                     struct tq_error *error);
/* The newest valid snapshot: *blob_out (caller frees with tq_free(blob, len)), its LSN.
 * TQ_ERR_NOT_FOUND if there is none. */
TQ_NODISCARD enum tq_err tq_log_snapshot_latest(struct tq_log *log, void **blob_out,
                                                size_t *len_out, uint64_t *lsn_out,
                                                struct tq_error *error);

#endif
