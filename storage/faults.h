/* storage/faults.h: the fault-injection seam of tq_storage's I/O (tests only set it).
 *
 * LD_PRELOAD tools cannot see io_uring operations, so the log routes every write, fdatasync,
 * preallocation and directory sync through this seam when tq_log_options.faults != NULL. The
 * seam decides per operation (counted from 1 in submission order, all kinds together) whether
 * to inject a fault, and the log applies it on its real code path by rewriting the CQE result
 * it consumes (a short write completes short and its linked fdatasync completes -ECANCELED,
 * exactly what the kernel does) or the return value of a blocking call. The seam also records,
 * per file, every range written since that file's last successful sync together with the bytes
 * it overwrote, so a test can simulate a power cut after abandoning the log (SQLite crash-VFS
 * style): each unsynced range is dropped (old bytes restored), kept, or torn (a random prefix at
 * 512-byte granularity kept, zeros or garbage after it).
 */
#ifndef TQ_STORAGE_FAULTS_H
#define TQ_STORAGE_FAULTS_H

#include "tq_err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tq_log;

enum tq_io_op_kind {
    TQ_IO_OP_WRITE = 1,    /* a batch write (or the rest of a short one) */
    TQ_IO_OP_FSYNC = 2,    /* an fdatasync of a segment or the directory */
    TQ_IO_OP_PREALLOC = 3, /* creating/preallocating a segment file (blocking) */
};

struct tq_io_range; /* private to faults.c */

struct tq_io_faults {
    /* Knobs (set by the test; 0/false = off). Counts are 1-based over this log's operations. */
    uint64_t short_write_at; /* the Nth write op completes short (half its length, >= 1 byte) */
    uint64_t fsync_eio_at;   /* the Nth fsync op completes with -EIO */
    uint64_t fail_op_at;     /* the Nth op of any kind fails: write/fsync -EIO, prealloc ENOSPC */
    bool enospc;             /* every preallocation fails with ENOSPC (disk full). Segments
                              * are preallocated, so this is where a full disk meets the log:
                              * appends needing a new segment are refused (TQ_ERR_NO_SPACE).
                              * A write that still fails (fail_op_at) is fail-stop. */
    bool track_unsynced;     /* record ranges for tq_io_faults_power_cut (costs a pread each) */
    /* Snapshot files (blocking writes outside the op count above). */
    int snapshot_write_errno;    /* every snapshot write fails with this errno (e.g. ENOSPC) */
    bool snapshot_direct_einval; /* opening a snapshot with O_DIRECT fails with EINVAL, as on a
                                  * file system without O_DIRECT: the buffered fallback runs */
    /* Counters (read by the test). */
    uint64_t ops; /* operations seen so far */
    uint64_t writes;
    uint64_t fsyncs;
    uint64_t injected;               /* faults injected so far */
    uint64_t snapshot_direct_writes; /* snapshot images written with O_DIRECT */
    /* Private. */
    struct tq_io_range *ranges;
    uint64_t seq;
};

enum tq_power_cut_mode {
    TQ_POWER_CUT_RANDOM = 0, /* per range: drop, keep or tear at random */
    TQ_POWER_CUT_DROP_ALL,   /* restore every unsynced range: the disk never saw them */
    TQ_POWER_CUT_KEEP_ALL,   /* every write reached the disk */
};

/* Called by the log before an operation is issued. Returns 0 (no fault) or the negative errno
 * the operation must complete with; for a write, *short_len_out (if the write is to be short)
 * gets the number of bytes the completion must report (0 when not short). */
int tq_io_faults_on_op(struct tq_io_faults *faults, enum tq_io_op_kind kind, uint32_t len,
                       uint32_t *short_len_out);
/* Records that [offset, offset+len) of path is about to be overwritten (reads the old bytes). */
void tq_io_faults_on_write(struct tq_io_faults *faults, const char *path, int fd, uint64_t offset,
                           uint32_t len);
/* Records that a sync of path completed: its ranges recorded before sync_seq are now durable. */
void tq_io_faults_on_synced(struct tq_io_faults *faults, const char *path, uint64_t sync_seq);
/* The sequence number to pass to on_synced for a sync issued now. */
uint64_t tq_io_faults_seq(struct tq_io_faults *faults);

/* Simulates a power cut on the files (call after tq_log_abandon): applies mode to every range
 * written since its file's last successful sync, using seed for the random choices. Returns the
 * number of ranges that were dropped or torn. */
uint64_t tq_io_faults_power_cut(struct tq_io_faults *faults, enum tq_power_cut_mode mode,
                                uint64_t seed);
/* Frees the recorded ranges. */
void tq_io_faults_reset(struct tq_io_faults *faults);

/* Test-only: frees a log without any I/O (no sync, no close-time work), as if the process had
 * died at this instant. In-flight SQEs on the caller's ring must not be reaped afterwards. */
void tq_log_abandon(struct tq_log *log);

#endif
