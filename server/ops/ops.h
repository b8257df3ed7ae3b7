/* server/ops/ops.h: operator and auditor tools (public API of tq_ops).
 *
 * Everything here works OFFLINE on a data directory (or a backup directory, which has the same
 * layout plus a MANIFEST): verify, replay (audit events and point-in-time state), backup,
 * restore (with point-in-time recovery) and compact. Each tool has two faces:
 *   - an argv entry point tq_ops_<tool>_main(argc, argv) for the `ticketq` CLI and the
 *     standalone `ticketq-ops` binary: it parses its own options (argv[0] is the tool name),
 *     prints --help, writes results to stdout and diagnostics to stderr, and returns the process
 *     exit code (0 ok, 1 the check failed / corruption found, 2 usage or I/O error);
 *   - a library function (tq_ops_verify, tq_ops_backup, tq_ops_restore) that tests and other
 *     tools call directly and that returns an enum tq_err with the specifics in struct tq_error.
 * Read-only tools (verify, replay, backup's reading side) never write into the data directory,
 * so they are safe on a live server's directory: they read up to the last valid batch.
 * Operator guide: docs/operations.md.
 */
#ifndef TQ_OPS_H
#define TQ_OPS_H

#include "tq_err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- argv entry points (exit codes: 0 ok, 1 check failed/corrupt, 2 usage or error) ------ */

int tq_ops_verify_main(int argc, char **argv);
int tq_ops_replay_main(int argc, char **argv);
int tq_ops_backup_main(int argc, char **argv);
int tq_ops_restore_main(int argc, char **argv);
int tq_ops_compact_main(int argc, char **argv);

/* ---- verify --------------------------------------------------------------------------- */

#define TQ_OPS_RECORD_TYPES          8    /* record types counted individually (1 cmd, 2 events) */
#define TQ_OPS_CMD_TYPES             32   /* > TQ_CMD_TYPE_MAX; index = enum tq_cmd_type */
#define TQ_OPS_REDACTIONS_LISTED_MAX 1024 /* redacted LSNs kept in the report (count is exact) */

struct tq_ops_verify_report {
    uint64_t lsn_first, lsn_last; /* 0, 0 for an empty log */
    uint64_t commit_us_first, commit_us_last;
    uint64_t segments, segments_compressed;
    uint64_t batches, records, bytes;
    uint64_t records_by_type[TQ_OPS_RECORD_TYPES]; /* [0]: types >= TQ_OPS_RECORD_TYPES */
    uint64_t cmds_by_type[TQ_OPS_CMD_TYPES];       /* decoded type-1 records; [0]: undecodable */
    uint64_t chain_head;          /* header hash of the last batch (0: empty log) */
    uint64_t snapshots;           /* snapshot files checked */
    uint64_t snapshot_lsn_newest; /* 0: none */
    uint64_t manifest_files;      /* backup directories: files checked against MANIFEST */
    uint64_t redaction_count;
    uint64_t redacted_lsns[TQ_OPS_REDACTIONS_LISTED_MAX];
    uint64_t torn_tail_bytes; /* bytes after the last valid batch of the last segment */
    /* A live writer holds DIR/LOCK: the walk stopped at its batches in flight (a hole in the
     * tail, docs/log-format.md "Readers beside a live writer"); a note, not an error. */
    bool live_tail;
    uint64_t live_tail_lsn;    /* the walk's last LSN there */
    char live_tail_file[64];   /* the segment holding the hole */
    uint64_t live_tail_offset; /* its byte offset */
    bool live_writer;          /* DIR/LOCK was held when the recovery cross-check ran */
};

/* Checks every batch checksum, every payload checksum, LSN continuity and the hash chain across
 * all segments (compressed or not) of dir, every snapshot file, and, if dir holds a MANIFEST
 * (a backup), every file's size and XXH3 against it. Only reads. A torn tail of the LAST
 * segment (a batch being written by a live server) is not an error: it is counted in
 * torn_tail_bytes. Returns TQ_OK with *report filled, TQ_ERR_CORRUPT with error->msg naming the
 * first problem's file, byte offset and LSN (report holds what was checked before it),
 * TQ_ERR_NOT_FOUND (no log directory), TQ_ERR_IO. */
TQ_NODISCARD enum tq_err tq_ops_verify(const char *dir, struct tq_ops_verify_report *report,
                                       struct tq_error *error);

/* ---- backup and restore ----------------------------------------------------------------- */

struct tq_ops_backup_result {
    uint64_t lsn_last; /* last LSN in the backup */
    uint64_t chain_head;
    uint64_t snapshot_lsn; /* 0: no snapshot copied */
    uint64_t files_copied, files_reused;
    uint64_t bytes_copied, bytes_reused;
    bool live_tail; /* stopped before a live writer's batches in flight (a hole in the tail) */
};

/* Takes a consistent copy of data_dir (which may belong to a running server) into dest: the
 * newest snapshot, every sealed segment and the active segment up to its last valid batch,
 * then writes dest/MANIFEST (file, size, XXH3, LSN range, copied|reused; the chain head)
 * atomically. If dest already holds a backup, files whose size and XXH3 match are reused, not
 * copied (incremental). Everything written is fsynced before the manifest is renamed into
 * place, so a crash leaves the previous backup's manifest valid. Returns TQ_OK, TQ_ERR_CORRUPT
 * (a sealed segment fails its checks), TQ_ERR_NOT_FOUND, TQ_ERR_IO. progress may be NULL. */
TQ_NODISCARD enum tq_err tq_ops_backup(const char *data_dir, const char *dest, bool progress,
                                       struct tq_ops_backup_result *result, struct tq_error *error);

struct tq_ops_restore_options {
    const char *src;      /* backup (or data) directory */
    const char *data_dir; /* target; must be empty or missing unless force */
    bool force;           /* wipe a non-empty target's log/ and snapshots/ */
    uint64_t to_lsn;      /* 0: everything; else cut after the last batch <= it */
    uint64_t to_time_ms;  /* 0: everything; else cut after the last batch whose
                             commit time <= it */
};

/* Restores src into data_dir: checks every file against src's MANIFEST (if present), copies
 * (fsync, rename, directory fsync), cuts the log at a batch boundary for point-in-time
 * recovery (so the hash chain stays valid: only a suffix is removed), drops snapshots beyond
 * the cut, then runs tq_ops_verify on the result. *lsn_last_out gets the last LSN restored.
 * Returns TQ_OK, TQ_ERR_FAILED_PRECONDITION (non-empty target without force), TQ_ERR_CORRUPT,
 * TQ_ERR_INVALID_ARGUMENT (the cut would leave nothing: to_lsn below the first batch),
 * TQ_ERR_IO. */
TQ_NODISCARD enum tq_err tq_ops_restore(const struct tq_ops_restore_options *options,
                                        uint64_t *lsn_last_out, struct tq_error *error);

/* ---- compaction (offline) ------------------------------------------------------------ */

#define TQ_OPS_ERASE_MAX 64 /* customers per run: erasure requests come one by one */

struct tq_ops_compact_options {
    const char *dir;    /* data directory; no server may be running on it */
    uint64_t tenant_id; /* tenant of erase_customers and retention (default 1) */
    uint64_t erase_customers[TQ_OPS_ERASE_MAX];
    uint32_t erase_count;
    uint64_t retention_ms;   /* 0: keep everything; else drop messages of tickets
                                closed longer ago than this (log time) */
    const char *archive_dir; /* with retention: write dropped records here first */
    bool compress;           /* zstd-compress sealed segments */
    uint64_t segment_bytes;  /* the server's segment size; 0: inferred from the files */
    bool progress;           /* progress lines on stderr */
};

struct tq_ops_compact_result {
    uint64_t snapshot_lsn;             /* the last LSN: the erase records included */
    uint64_t customers_erased;         /* CUSTOMER_ERASE records appended */
    uint64_t customers_already_erased; /* requested but erased before (a re-run) */
    uint64_t snapshots_removed;        /* older snapshots deleted (they held the PII) */
    uint64_t records_erased, records_retained_out, archived_records;
    uint64_t records_redacted, segments_rewritten, segments_compressed;
    uint64_t bytes_before, bytes_after;
    double seconds;
};

/* Compacts dir offline: for each erase_customers id not erased yet, a CUSTOMER_ERASE command
 * appended and synced to the log (only the id) and applied; a snapshot at the last LSN (with
 * erasures: older snapshots deleted once it is durable); redaction of the erased customers'
 * records and of messages past retention (payload zeroed, hash kept, so verify still passes
 * and lists them); zstd compression of sealed segments. Crash-safe at every point: each file
 * change is an atomic rename and the snapshot is durable before the first redaction. Returns
 * TQ_OK, TQ_ERR_INVALID_ARGUMENT, TQ_ERR_NOT_FOUND (an erase id is not a customer of the
 * tenant: nothing was changed), TQ_ERR_FAILED_PRECONDITION (the log grew: a server is
 * running), TQ_ERR_CORRUPT, TQ_ERR_IO, TQ_ERR_NO_SPACE. */
TQ_NODISCARD enum tq_err tq_ops_compact(const struct tq_ops_compact_options *options,
                                        struct tq_ops_compact_result *result,
                                        struct tq_error *error);

/* ---- the pieces of compaction that ticketqd shares (online compaction) ------------------ */

struct tq_log;
struct tq_state;

/* A sorted set of LSNs (or ids). */
struct tq_ops_lsn_set {
    uint64_t *lsns;
    size_t count, cap;
};
void tq_ops_lsn_set_free(struct tq_ops_lsn_set *set);

struct tq_ops_classify_options {
    uint64_t tenant_id;
    const uint64_t *erase_customers; /* customers whose records to redact */
    uint32_t erase_count;
    bool erased_in_state;  /* also every customer of the tenant the state shows erased */
    uint64_t retention_ms; /* 0: none; else messages of tickets closed longer ago (log time) */
    uint64_t lsn_max;      /* records above it are not looked at; 0: all */
};
struct tq_ops_classification {
    struct tq_ops_lsn_set erase;  /* LSNs of the erased customers' records (sorted) */
    struct tq_ops_lsn_set retain; /* LSNs past retention (sorted) */
    uint64_t customers;           /* customers erased (listed and/or found in the state) */
    uint64_t now_ms;              /* latest command time looked at */
};
/* Decides which records compaction redacts, by decoding every command record of log (up to
 * lsn_max) and looking its subject up in state (docs/operations.md, "compact", step 2). The
 * state is the caller's and only read (the offline tool's rebuilt state, or a private copy the
 * server deserialised from its snapshot). On TQ_OK the caller frees out's sets. Returns
 * TQ_ERR_CORRUPT (an undecodable command), TQ_ERR_IO. */
TQ_NODISCARD enum tq_err tq_ops_classify(struct tq_log *log, const struct tq_state *state,
                                         const struct tq_ops_classify_options *options,
                                         struct tq_ops_classification *out, struct tq_error *error);
/* Writes the records of set to archive_dir/<first>-<last>.jsonl, durably (temp, fsync,
 * rename). TQ_ERR_IO, TQ_ERR_NO_SPACE. */
TQ_NODISCARD enum tq_err tq_ops_archive_write(struct tq_log *log, const char *archive_dir,
                                              const struct tq_ops_lsn_set *set,
                                              struct tq_error *error);
/* Deletes the snapshots of dir/snapshots older than keep_lsn (they may hold an erased
 * customer's name and identities), then fsyncs the directory; *removed counts them. */
TQ_NODISCARD enum tq_err tq_ops_snapshots_remove_older(const char *dir, uint64_t keep_lsn,
                                                       uint64_t *removed, struct tq_error *error);

/* ---- state rebuild (shared by replay --at and the tests) -------------------------------- */

/* Rebuilds the state of the log in data_dir as of LSN lsn_to (UINT64_MAX: the end) by applying
 * every command record from the start with tq_state_apply, exactly as the server does. Opens
 * the log read-only. *state_out (tq_state_free) and *lsn_out (last applied LSN) on success.
 * Returns TQ_OK, TQ_ERR_CORRUPT (an undecodable record or an apply that fails: the log and the
 * state machine disagree), TQ_ERR_FAILED_PRECONDITION (a redacted record lies before lsn_to
 * and no snapshot covers it), TQ_ERR_IO. */
TQ_NODISCARD enum tq_err tq_ops_state_at(const char *data_dir, uint64_t lsn_to,
                                         struct tq_state **state_out, uint64_t *lsn_out,
                                         struct tq_error *error);

/* ---- small helpers the CLI and tests share -------------------------------------------- */

/* Formats ms since the epoch as ISO-8601 UTC with milliseconds ("2026-11-23T10:00:00.000Z").
 * buf must hold TQ_OPS_TIME_BYTES. Returns buf. */
#define TQ_OPS_TIME_BYTES 80 /* room for any year gmtime can return */
const char *tq_ops_time_format(uint64_t ms, char *buf);
/* Parses "YYYY-MM-DDTHH:MM[:SS[.mmm]][Z]" (a space may replace T; UTC) into ms since the
 * epoch. Returns false for anything else. */
bool tq_ops_time_parse(const char *s, uint64_t *ms_out);

/* Space the log and the snapshots of data directory dir take on disk: allocated blocks (a
 * plain segment is preallocated to its full size), for the compactors' before/after figures. */
uint64_t tq_ops_data_bytes(const char *dir);

#endif
