/* server/ops/ops_internal.h: helpers shared by the files of tq_ops (not installed).
 *
 * util.c: files (read, atomic write, copy with XXH3, directory fsync), directory listings,
 * number parsing, option parsing. segscan.c: the one place tq_ops walks segment images, built
 * on storage's own batch decoder (storage/format.h) and segment reader (storage/log_impl.h) so
 * the byte format is interpreted only inside tq_storage.
 */
#ifndef TQ_OPS_INTERNAL_H
#define TQ_OPS_INTERNAL_H

#include "format.h"
#include "ops.h"
#include "tq_err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes of the argv entry points. */
#define TQ_OPS_EXIT_OK     0
#define TQ_OPS_EXIT_FAILED 1 /* the check failed: corruption found, restore refused, ... */
#define TQ_OPS_EXIT_USAGE  2 /* bad options, I/O errors */

#define TQ_OPS_PATH_BYTES_MAX 4096

/* ---- util.c --------------------------------------------------------------------------- */

/* Parses a decimal u64 (the whole string). */
bool tq_ops_u64_parse(const char *s, uint64_t *out);
/* Formats "DIR/NAME" into out (TQ_OPS_PATH_BYTES_MAX); returns TQ_ERR_INVALID_ARGUMENT if it
 * does not fit. */
TQ_NODISCARD enum tq_err tq_ops_path_join(char *out, const char *dir, const char *name,
                                          struct tq_error *error);

/* Reads a whole file; *buf_out is freed with tq_free(*buf_out, *len_out) (NULL for 0 bytes).
 * TQ_ERR_NOT_FOUND, TQ_ERR_IO. */
TQ_NODISCARD enum tq_err tq_ops_file_read(const char *path, uint8_t **buf_out, size_t *len_out,
                                          struct tq_error *error);
/* Writes path atomically: PATH.tmp, write, fsync, rename, fsync of the directory. */
TQ_NODISCARD enum tq_err tq_ops_file_write_atomic(const char *path, const void *buf, size_t len,
                                                  struct tq_error *error);
/* Copies the first len bytes of src (UINT64_MAX: all of it) to dst atomically (dst.tmp, fsync,
 * rename; the caller fsyncs dst's directory). *xxh3_out (may be NULL) gets the XXH3-64 of the
 * bytes copied, *len_out (may be NULL) their count. TQ_ERR_NOT_FOUND, TQ_ERR_IO. */
TQ_NODISCARD enum tq_err tq_ops_file_copy(const char *src, const char *dst, uint64_t len,
                                          uint64_t *xxh3_out, uint64_t *len_out,
                                          struct tq_error *error);
/* XXH3-64 and size of a whole file. */
TQ_NODISCARD enum tq_err tq_ops_file_hash(const char *path, uint64_t *xxh3_out, uint64_t *len_out,
                                          struct tq_error *error);
/* fsync of a directory (makes creates/renames/unlinks in it durable). */
TQ_NODISCARD enum tq_err tq_ops_dir_fsync(const char *dir, struct tq_error *error);
/* mkdir if missing (one level). */
TQ_NODISCARD enum tq_err tq_ops_mkdir(const char *dir, struct tq_error *error);

/* The names in a directory that end with one of the given suffixes (NULL-terminated list),
 * sorted by strcmp (segment and snapshot names are zero-padded LSNs, so that is LSN order). */
struct tq_ops_names {
    char **names;
    size_t count;
    size_t cap;
};
/* TQ_ERR_NOT_FOUND if dir does not exist (names left empty), TQ_ERR_IO. */
TQ_NODISCARD enum tq_err tq_ops_names_list(const char *dir, const char *const *suffixes,
                                           struct tq_ops_names *names, struct tq_error *error);
void tq_ops_names_free(struct tq_ops_names *names);
/* The LSN a "<20 digits>.ext" name starts with; false if the name is not of that form. */
bool tq_ops_name_lsn(const char *name, uint64_t *lsn_out);

/* Prints "ticketq <tool>: <code>: <msg>" to stderr. */
void tq_ops_print_error(const char *tool, const struct tq_error *error);

/* A tiny option parser: "--name value", "--name=value" and flags. */
struct tq_ops_args {
    int argc;
    char **argv;
    int index;        /* next argument to look at */
    const char *tool; /* for messages */
};
void tq_ops_args_init(struct tq_ops_args *args, int argc, char **argv, const char *tool);
/* True if argv[index] is the option name (e.g. "--data"); on true, *value (may be NULL for
 * flags) gets its value and index advances. An option that wants a value but has none prints
 * an error and sets *bad. */
bool tq_ops_args_take(struct tq_ops_args *args, const char *name, const char **value, bool *bad);

/* ---- replay.c / backup.c ------------------------------------------------------------- */

/* Stable lower-case name of a command type ("message_ingest"), "unknown" for others. */
const char *tq_ops_cmd_name(int cmd_type);
/* If dir holds a MANIFEST (a backup), checks every file it lists (size and XXH3) and sets
 * *files_out to their count; with no MANIFEST, TQ_OK and 0. TQ_ERR_CORRUPT names the file. */
TQ_NODISCARD enum tq_err tq_ops_manifest_check(const char *dir, uint64_t *files_out,
                                               struct tq_error *error);

/* ---- segscan.c ------------------------------------------------------------------------ */

/* The segment files of log_dir in LSN order, as storage sees them: only "<20 digits>.seg" and
 * ".zseg" names; where both forms of one segment exist (a compression that finished but did
 * not remove the plain file yet), only the .zseg, exactly as recovery decides. */
TQ_NODISCARD enum tq_err tq_ops_segment_names(const char *log_dir, struct tq_ops_names *names,
                                              struct tq_error *error);

/* One batch of a segment image, as decoded by storage's tq_batch_check. */
struct tq_ops_batch {
    const char *file; /* segment file name */
    uint64_t offset;  /* logical byte offset of the batch in its segment */
    struct tq_batch_header header;
    const uint8_t *area; /* header.area_bytes of records */
    uint64_t disk_bytes; /* header + area + padding */
};

/* Calls fn for every record of a batch (lsn, type, flags, payload; payload_len is the
 * ORIGINAL length, payload is NULL when redacted). */
typedef void (*tq_ops_record_fn)(void *ctx, uint64_t lsn, uint16_t type, uint16_t flags,
                                 const uint8_t *payload, uint32_t payload_len);
void tq_ops_batch_records(const struct tq_ops_batch *batch, tq_ops_record_fn fn, void *ctx);

/* The logical image of one segment file (plain or compressed), read whole into memory. */
struct tq_ops_segment {
    char name[64];
    uint64_t lsn_first_named; /* from the file name */
    bool compressed;
    uint64_t file_bytes; /* on disk */
    uint8_t *image;      /* logical bytes (tq_free(image, image_cap)) */
    size_t image_bytes;
    size_t image_cap;
};
/* Loads DIR/NAME. TQ_ERR_CORRUPT (a compressed segment's index or frames fail), TQ_ERR_IO. */
TQ_NODISCARD enum tq_err tq_ops_segment_load(const char *dir, const char *name,
                                             struct tq_ops_segment *seg, struct tq_error *error);
void tq_ops_segment_free(struct tq_ops_segment *seg);

/* Why a segment walk stopped. */
struct tq_ops_walk_end {
    uint64_t valid_bytes; /* end of the last valid batch (a 4 KiB multiple) */
    uint64_t batches;
    uint64_t lsn_last;          /* last LSN of the last valid batch (0: none) */
    uint64_t chain_last;        /* its header hash */
    bool clean;                 /* stopped at zeros with nothing valid after them */
    uint64_t stop_offset;       /* where the walk stopped (if !clean) */
    bool valid_after;           /* !clean and a valid batch header lies after stop_offset:
                                   damage inside the log, never a torn tail (unless a live
                                   writer's batches in flight explain it: tq_ops_live_hole) */
    uint64_t batches_after;     /* valid batches after stop_offset (if !clean) */
    uint64_t durable_after_max; /* their highest lsn_durable */
    char why[160];              /* why it stopped (if !clean) */
};
/* Walks the batches of seg in order from offset 0, calling fn (may be NULL) for each valid
 * one; fn returning non-OK stops the walk with that error. Never fails on bad bytes: the
 * first batch that does not check out ends the walk and is described in *end. */
typedef enum tq_err (*tq_ops_batch_fn)(void *ctx, const struct tq_ops_batch *batch,
                                       struct tq_error *error);
TQ_NODISCARD enum tq_err tq_ops_segment_walk(const struct tq_ops_segment *seg, tq_ops_batch_fn fn,
                                             void *ctx, struct tq_ops_walk_end *end,
                                             struct tq_error *error);

/* storage's rule for readers beside a live writer (storage/log.c, read_only_hole;
 * docs/log-format.md "Readers beside a live writer"), for the segment walkers. The walk of
 * names->names[index] (in log_dir, of data directory data_dir) ended in *end: stopped at a
 * hole, or (the segment before the last) ended where the last segment's name does not follow
 * on. True if that is the live end of the log: the segment is the last or the one before it;
 * at most TQ_BATCHES_INFLIGHT_MAX - 1 valid batches follow (the last segment's included);
 * none says by lsn_durable that stop_lsn (the first LSN missing) was durable; and a live
 * writer holds DIR/LOCK (tq_log_dir_locked). Otherwise *why_not (may be NULL) names the
 * condition that failed. Only reads. */
bool tq_ops_live_hole(const char *data_dir, const char *log_dir, const struct tq_ops_names *names,
                      size_t index, const struct tq_ops_walk_end *end, uint64_t stop_lsn,
                      const char **why_not);

#endif
