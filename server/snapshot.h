/* server/snapshot.h: background state snapshots for ticketqd (fork, like Redis BGSAVE).
 *
 * A snapshot is the serialised state at a durable LSN. Taking one never blocks the loop for
 * longer than one fork(): when a snapshot is wanted (a request, or --snapshot-every records
 * and --snapshot-growth percent of its size in log bytes since the last one), the loop forks
 * at the end of that turn, at the state's applied LSN, without waiting for the log. The child
 * holds a copy-on-write image of the state at exactly that LSN; it serialises it
 * (tq_state_serialize_image), writes and fsyncs the temp file (tq_log_snapshot_write_image,
 * gated), waits until the parent says that LSN is durable (a pipe),
 * renames it into place, fsyncs the directory, prunes to --snapshots-keep and _exits; it
 * touches no ring and no socket and dies with the parent (PR_SET_PDEATHSIG). The parent keeps
 * serving, sends the go in the first turn whose acknowledged LSN covers the snapshot's, learns
 * of the exit through a pidfd
 * polled on its ring (waitpid), reads the child's error text from a pipe, and calls every
 * waiter's callback once. One snapshot runs at a time; a request that arrives while one runs
 * is served by it if it already covers every staged record, else by the next one.
 *
 * API for other server modules (SnapshotNow in dispatch.c, online compaction): call
 * tq_snapshot_request() and wait for the callback, always invoked later from the loop (never
 * from inside tq_snapshot_request). Loop hooks: tq_snapshot_turn(),
 * tq_snapshot_on_cqe(), tq_snapshot_shutdown().
 */
#ifndef TQ_SERVER_SNAPSHOT_H
#define TQ_SERVER_SNAPSHOT_H

#include "tq_err.h"

#include <stdbool.h>
#include <stdint.h>

struct tq_server;
struct io_uring_cqe;

/* Called once per request: lsn is the snapshot's LSN (the file and every record up to lsn
 * durable on disk) when error is NULL;
 * otherwise error says why (the server keeps running either way). */
typedef void (*tq_snapshot_done_fn)(struct tq_server *srv, uint64_t arg, uint64_t lsn,
                                    const struct tq_error *error);

struct tq_snapshot_stats {
    uint64_t written;              /* snapshots completed since start */
    uint64_t failed;               /* snapshots that failed since start */
    uint64_t last_lsn;             /* LSN of the newest snapshot on disk (recovered one at start) */
    uint64_t last_duration_us;     /* fork to durable, of the last completed snapshot */
    uint64_t last_fork_us;         /* the parent's pause in fork() for the last snapshot */
    uint64_t last_durable_wait_us; /* fork until its LSN was durable (the go; no pause) */
    uint64_t last_bytes;           /* serialised state bytes of the last completed snapshot */
    uint64_t last_precopy_bytes;   /* state bytes the child copied ahead of the loop (pre-copy) */
    uint64_t last_precopy_us;      /* how long that took the child, after the fork */
    uint64_t last_file_bytes;      /* the newest snapshot's file (header + blob; recovered one at
                                    * start, 0 if none): --snapshot-growth's base */
    uint64_t log_bytes_since;      /* log bytes appended since the newest snapshot's LSN */
    uint64_t auto_records;         /* records since the last snapshot when the last automatic */
    uint64_t auto_log_bytes;       /* snapshot started, and log bytes (0 before the first) */
    bool running;                  /* a child is writing one now */
};

/* Sets up snapshots for srv (after recovery; recovered_lsn and recovered_file_bytes = the LSN
 * and file size of the snapshot recovery loaded, 0 and 0 if none) and removes temp files a
 * killed snapshot left in DIR/snapshots (logged). The log bytes after recovered_lsn (what the
 * restart replayed) count as grown since that snapshot for --snapshot-growth. */
void tq_snapshot_init(struct tq_server *srv, uint64_t recovered_lsn, uint64_t recovered_file_bytes);
/* Releases what tq_snapshot_init allocated (after tq_snapshot_shutdown). */
void tq_snapshot_free(struct tq_server *srv);

/* Asks for a snapshot covering at least every record staged so far; fn(srv, arg, ...) is
 * called exactly once, from the loop. Returns TQ_OK, TQ_ERR_RESOURCE_EXHAUSTED (more than
 * TQ_SNAPSHOT_WAITERS_MAX requests waiting), TQ_ERR_UNAVAILABLE (draining, or snapshots not
 * set up) with error filled. */
TQ_NODISCARD enum tq_err tq_snapshot_request(struct tq_server *srv, tq_snapshot_done_fn fn,
                                             uint64_t arg, struct tq_error *error);

/* Once per loop turn, after the group commit (acked_lsn: the log's acknowledged LSN): tells a
 * running child once its LSN is durable, reaps a finished child and calls its waiters, and
 * forks when a snapshot is wanted or an automatic one is due. */
void tq_snapshot_turn(struct tq_server *srv, uint64_t acked_lsn);
/* A CQE tagged for snapshots (the child's pidfd became readable). */
void tq_snapshot_on_cqe(struct tq_server *srv, const struct io_uring_cqe *cqe);
/* Draining: kills a running child (its temp file is removed) and fails every waiter with
 * TQ_ERR_UNAVAILABLE. */
void tq_snapshot_shutdown(struct tq_server *srv);

void tq_snapshot_get_stats(const struct tq_server *srv, struct tq_snapshot_stats *out);

/* The user_data tag of the snapshot module's SQEs (top byte). */
#define TQ_SNAPSHOT_UD_TAG 7u

#endif
