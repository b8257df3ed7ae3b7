/* server/ops/verify.c: `ticketq verify`, the auditor's integrity check of a data or backup dir.
 *
 * Owns no state on disk; it only reads. What it proves, in order:
 *   1. every segment (plain or compressed) decodes, and every batch in it passes storage's own
 *      checks (header checksum, area checksum, every unredacted payload's checksum);
 *   2. the segments form one history: each segment's first batch starts at the LSN its file
 *      name says, LSNs continue without a gap from one batch (and one segment) to the next,
 *      and each batch's chain_prev equals the previous batch's header hash, so the last
 *      batch's hash (the chain head) commits to every record ever written. A missing segment
 *      shows as an LSN gap, a swapped pair as a name/content mismatch or a broken chain;
 *   3. only the LAST segment may end in a torn batch (a live server writing it, or a crash
 *      before the next recovery): it is reported, not failed, as recovery would cut it; a
 *      hole (valid batches after a bad one) is damage unless it is a live writer's batches in
 *      flight by storage's rule (tq_ops_live_hole: tail, bounded depth, DIR/LOCK held): then
 *      the walk stops there with a "live tail" note, as a read-only open does;
 *   4. every snapshot file is accepted by storage (checked by opening the log read-only, which
 *      runs recovery's validation without writing), and its LSN lies inside the log;
 *   5. a backup directory's files match its MANIFEST (size and XXH3).
 * Redacted records (right to erasure) keep their payload hash, so they still verify; they are
 * listed so an auditor sees exactly which LSNs were erased.
 * The first problem found stops the check, with the file, byte offset and LSN in the message.
 */
#include "ops_internal.h"

#include "log.h"
#include "state.h"
#include "tq_alloc.h"
#include "tq_assert.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Walk state carried across segments. */
#define VERIFY_LIVE_TRIES 20

struct verify_ctx {
    const char *dir; /* the data (or backup) directory */
    struct tq_ops_verify_report *report;
    const struct tq_ops_segment *seg;
    bool first_in_segment;
    uint64_t expected_lsn; /* LSN the next batch must start at (0: anything, first one) */
    uint64_t chain;        /* header hash of the previous batch */
    struct tq_arena arena; /* decode scratch, reset per record */
    bool live_race;        /* a hole refused while a writer holds DIR/LOCK: read again */
};

static void count_record(void *vctx, uint64_t lsn, uint16_t type, uint16_t flags,
                         const uint8_t *payload, uint32_t payload_len) {
    struct verify_ctx *ctx = vctx;
    struct tq_ops_verify_report *r = ctx->report;
    r->records++;
    r->records_by_type[type < TQ_OPS_RECORD_TYPES ? type : 0]++;
    if ((flags & TQ_RECORD_REDACTED) != 0) {
        if (r->redaction_count < TQ_OPS_REDACTIONS_LISTED_MAX) {
            r->redacted_lsns[r->redaction_count] = lsn;
        }
        r->redaction_count++;
        return;
    }
    if (type != TQ_RECORD_TYPE_CMD) return;
    struct tq_cmd cmd;
    struct tq_error ignored;
    tq_arena_reset(&ctx->arena);
    if (tq_cmd_decode(payload, payload_len, &cmd, &ctx->arena, &ignored) == TQ_OK &&
        (unsigned)cmd.type < TQ_OPS_CMD_TYPES) {
        r->cmds_by_type[cmd.type]++;
    } else {
        r->cmds_by_type[0]++;
    }
}

static enum tq_err verify_batch(void *vctx, const struct tq_ops_batch *batch,
                                struct tq_error *error) {
    struct verify_ctx *ctx = vctx;
    struct tq_ops_verify_report *r = ctx->report;
    const struct tq_batch_header *h = &batch->header;
    if (ctx->first_in_segment && h->lsn_first != ctx->seg->lsn_first_named) {
        return tq_error_set(error, TQ_ERR_CORRUPT,
                            "%s offset %" PRIu64 " lsn %" PRIu64 ": segment named for LSN %" PRIu64
                            " starts at LSN %" PRIu64 " (misplaced or swapped segment)",
                            batch->file, batch->offset, h->lsn_first, ctx->seg->lsn_first_named,
                            h->lsn_first);
    }
    if (ctx->expected_lsn != 0 && h->lsn_first != ctx->expected_lsn) {
        return tq_error_set(error, TQ_ERR_CORRUPT,
                            "%s offset %" PRIu64 " lsn %" PRIu64 ": expected LSN %" PRIu64
                            " (records missing or out of order)",
                            batch->file, batch->offset, h->lsn_first, ctx->expected_lsn);
    }
    if (ctx->expected_lsn == 0 && h->lsn_first == 1 && h->chain_prev != 0) {
        return tq_error_set(error, TQ_ERR_CORRUPT,
                            "%s offset %" PRIu64 " lsn 1: first batch has a non-zero chain_prev",
                            batch->file, batch->offset);
    }
    if (ctx->expected_lsn != 0 && h->chain_prev != ctx->chain) {
        return tq_error_set(error, TQ_ERR_CORRUPT,
                            "%s offset %" PRIu64 " lsn %" PRIu64
                            ": hash chain broken (chain_prev %016" PRIx64
                            ", previous batch hash %016" PRIx64 ")",
                            batch->file, batch->offset, h->lsn_first, h->chain_prev, ctx->chain);
    }
    ctx->first_in_segment = false;
    if (r->lsn_first == 0) {
        r->lsn_first = h->lsn_first;
        r->commit_us_first = h->commit_us;
    }
    r->lsn_last = h->lsn_first + h->record_count - 1;
    r->commit_us_last = h->commit_us;
    r->batches++;
    r->bytes += batch->disk_bytes;
    ctx->expected_lsn = r->lsn_last + 1;
    ctx->chain = h->header_hash;
    r->chain_head = h->header_hash;
    tq_ops_batch_records(batch, count_record, ctx);
    return TQ_OK;
}

static const char *const snapshot_suffixes[] = {".snap", NULL};

/* The walk of names[index] ended (end, at byte stop_offset of file) before the log's end:
 * if a live writer's batches in flight explain it (tq_ops_live_hole), records the live tail
 * in the report and returns true (the walk stops there, as a read-only open does). */
static bool live_stop(struct verify_ctx *ctx, const char *log_dir, const struct tq_ops_names *names,
                      size_t index, const struct tq_ops_walk_end *end, const char *file,
                      uint64_t stop_offset, const char **why_not) {
    struct tq_ops_verify_report *r = ctx->report;
    TQ_ASSERT(ctx->dir != NULL);
    TQ_ASSERT(index < names->count);
    if (!tq_ops_live_hole(ctx->dir, log_dir, names, index, end, ctx->expected_lsn, why_not)) {
        return false;
    }
    r->live_tail = true;
    r->live_tail_lsn = r->lsn_last;
    r->live_tail_offset = stop_offset;
    snprintf(r->live_tail_file, sizeof(r->live_tail_file), "%s", file);
    return true;
}

/* Walks every segment of log_dir in LSN order. */
static enum tq_err verify_segments(const char *log_dir, struct verify_ctx *ctx,
                                   struct tq_error *error) {
    struct tq_ops_verify_report *r = ctx->report;
    struct tq_ops_names names;
    enum tq_err err = tq_ops_segment_names(log_dir, &names, error);
    if (err != TQ_OK) return err;
    bool progress = isatty(2) != 0;  /* an operator watching: one line, rewritten */
    struct tq_ops_walk_end prev_end; /* the previous segment's walk */
    memset(&prev_end, 0, sizeof(prev_end));
    char prev_name[64] = "";
    uint64_t prev_stop = 0;
    for (size_t i = 0; i < names.count && err == TQ_OK; i++) {
        if (progress) fprintf(stderr, "\rverify: segment %zu/%zu\033[K", i + 1, names.count);
        uint64_t named;
        bool named_ok = tq_ops_name_lsn(names.names[i], &named);
        TQ_ASSERT(named_ok); /* tq_ops_segment_names keeps only segment names */
        struct tq_ops_segment seg;
        err = tq_ops_segment_load(log_dir, names.names[i], &seg, error);
        if (err != TQ_OK) break;
        r->segments++;
        if (seg.compressed) r->segments_compressed++;
        bool last = i + 1 == names.count;
        ctx->seg = &seg;
        ctx->first_in_segment = true;
        if (ctx->expected_lsn != 0 && named != ctx->expected_lsn && last && i > 0 &&
            live_stop(ctx, log_dir, &names, i - 1, &prev_end, prev_name, prev_stop, NULL)) {
            tq_ops_segment_free(&seg);
            break;
        }
        if (ctx->expected_lsn != 0 && named != ctx->expected_lsn) {
            err = tq_error_set(error, TQ_ERR_CORRUPT,
                               "%s offset 0 lsn %" PRIu64
                               ": expected a segment starting at LSN %" PRIu64
                               " (segment missing or misnamed)",
                               seg.name, named, ctx->expected_lsn);
            tq_ops_segment_free(&seg);
            break;
        }
        struct tq_ops_walk_end end;
        err = tq_ops_segment_walk(&seg, verify_batch, ctx, &end, error);
        const char *why_not = "";
        uint64_t stop_at = end.clean ? end.valid_bytes : end.stop_offset;
        if (err == TQ_OK && !end.clean) {
            if (last && !end.valid_after) {
                r->torn_tail_bytes = seg.image_bytes - end.stop_offset;
            } else if (live_stop(ctx, log_dir, &names, i, &end, seg.name, stop_at, &why_not)) {
                tq_ops_segment_free(&seg);
                break;
            } else {
                ctx->live_race = tq_log_dir_locked(ctx->dir);
                err = tq_error_set(error, TQ_ERR_CORRUPT,
                                   "%s offset %" PRIu64 " lsn %" PRIu64 ": %s (%" PRIu64
                                   " valid batch(es) follow: damage, not a live writer's batches "
                                   "in flight: %s)",
                                   seg.name, end.stop_offset, ctx->expected_lsn, end.why,
                                   end.batches_after, why_not);
            }
        }
        prev_end = end;
        prev_stop = stop_at;
        snprintf(prev_name, sizeof(prev_name), "%s", seg.name);
        if (err == TQ_OK && end.batches == 0 && !last) {
            err = tq_error_set(error, TQ_ERR_CORRUPT,
                               "%s offset 0 lsn %" PRIu64 ": sealed segment holds no batch",
                               seg.name, named);
        }
        tq_ops_segment_free(&seg);
    }
    if (progress) fprintf(stderr, "\r\033[K");
    tq_ops_names_free(&names);
    return err;
}

/* Every snapshot's LSN must lie inside the log; the newest must be accepted by storage. */
static enum tq_err verify_snapshots(const char *dir, struct tq_ops_verify_report *r,
                                    uint64_t *newest_out, struct tq_error *error) {
    char snap_dir[TQ_OPS_PATH_BYTES_MAX];
    enum tq_err err = tq_ops_path_join(snap_dir, dir, "snapshots", error);
    if (err != TQ_OK) return err;
    struct tq_ops_names names;
    err = tq_ops_names_list(snap_dir, snapshot_suffixes, &names, error);
    if (err == TQ_ERR_NOT_FOUND) return TQ_OK;
    if (err != TQ_OK) return err;
    for (size_t i = 0; i < names.count; i++) {
        uint64_t lsn;
        if (!tq_ops_name_lsn(names.names[i], &lsn)) continue;
        r->snapshots++;
        if (lsn > *newest_out) *newest_out = lsn;
        /* A live server may have written a snapshot past the walk's end since the walk: the
         * recovery cross-check reads the log again and checks the newest one. */
        bool past_live_end = lsn > r->lsn_last && (r->live_tail || tq_log_dir_locked(dir));
        if (!past_live_end && (lsn > r->lsn_last || (r->lsn_first > 1 && lsn + 1 < r->lsn_first))) {
            err = tq_error_set(error, TQ_ERR_CORRUPT,
                               "snapshots/%s offset 0 lsn %" PRIu64
                               ": snapshot outside the log's LSN range %" PRIu64 "..%" PRIu64,
                               names.names[i], lsn, r->lsn_first, r->lsn_last);
            break;
        }
    }
    tq_ops_names_free(&names);
    return err;
}

/* Keeps storage's last recovery line (e.g. why a snapshot was skipped) for the report. */
static void capture_line(void *ctx, const char *line) {
    snprintf(ctx, TQ_ERROR_MSG_BYTES_MAX, "%s", line);
}

/* Cross-check with storage's recovery (read-only open): it must accept the log and the newest
 * snapshot file (storage silently falls back to an older one if the newest fails its checks:
 * for an auditor that is damage), and must end where the walk ended. */
static enum tq_err verify_with_recovery(const char *dir, struct tq_ops_verify_report *r,
                                        uint64_t newest_snapshot_file, struct tq_error *error) {
    char line[TQ_ERROR_MSG_BYTES_MAX] = "";
    struct tq_log_options opt;
    memset(&opt, 0, sizeof(opt));
    opt.dir = dir;
    opt.read_only = true;
    opt.ring_tag = 1;
    opt.log_line = capture_line;
    opt.log_line_ctx = line;
    struct tq_log *log = NULL;
    struct tq_log_recovery rec;
    enum tq_err err = tq_log_open(&opt, &log, &rec, error);
    if (err != TQ_OK) return err;
    /* Beside a live writer the log grows between the walk and this open (and a new snapshot
     * may appear): recovery may end later than the walk and see a newer snapshot, never an
     * earlier end. Probed after the open: a writer that exited meanwhile left a final log. */
    r->live_writer = tq_log_dir_locked(dir);
    bool live = r->live_writer || r->live_tail;
    if (live && rec.lsn_last < r->lsn_last) {
        err = tq_error_set(error, TQ_ERR_CORRUPT,
                           "recovery ends at LSN %" PRIu64 ", before the segments' LSN %" PRIu64,
                           rec.lsn_last, r->lsn_last);
    } else if (!live && rec.lsn_last != r->lsn_last) {
        err = tq_error_set(error, TQ_ERR_CORRUPT,
                           "recovery ends at LSN %" PRIu64 " but the segments hold up to %" PRIu64,
                           rec.lsn_last, r->lsn_last);
    }
    if (err == TQ_OK && r->snapshots > 0) {
        void *blob = NULL;
        size_t len = 0;
        uint64_t lsn = 0;
        err = tq_log_snapshot_latest(log, &blob, &len, &lsn, error);
        if (err == TQ_OK) {
            r->snapshot_lsn_newest = lsn;
            tq_free(blob, len);
        }
        bool mismatch = live ? lsn < newest_snapshot_file : lsn != newest_snapshot_file;
        if (err == TQ_ERR_NOT_FOUND || (err == TQ_OK && mismatch)) {
            err = tq_error_set(error, TQ_ERR_CORRUPT,
                               "snapshots/%020" PRIu64 ".snap offset 0 lsn %" PRIu64
                               ": the newest snapshot fails its checks (%s)",
                               newest_snapshot_file, newest_snapshot_file, line);
        }
    }
    tq_log_close(log);
    return err;
}

enum tq_err tq_ops_verify(const char *dir, struct tq_ops_verify_report *report,
                          struct tq_error *error) {
    TQ_ASSERT(dir != NULL);
    TQ_ASSERT(report != NULL);
    memset(report, 0, sizeof(*report));
    char log_dir[TQ_OPS_PATH_BYTES_MAX];
    enum tq_err err = tq_ops_path_join(log_dir, dir, "log", error);
    if (err != TQ_OK) return err;
    struct verify_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.report = report;
    ctx.dir = dir;
    tq_arena_init(&ctx.arena, 64 * 1024);
    err = tq_ops_manifest_check(dir, &report->manifest_files, error);
    /* The segments are read over time, not at one instant: beside a live writer, a batch read
     * as missing may have landed, and the writer moved on by several batches, before the
     * batches after it were read. A hole refused while a writer holds DIR/LOCK is read again
     * (as tq_log_open does, docs/log-format.md); damage fails every read. */
    for (unsigned attempt = 1; err == TQ_OK; attempt++) {
        uint64_t manifest_files = report->manifest_files;
        memset(report, 0, sizeof(*report));
        report->manifest_files = manifest_files;
        ctx.seg = NULL;
        ctx.expected_lsn = 0;
        ctx.chain = 0;
        ctx.live_race = false;
        err = verify_segments(log_dir, &ctx, error);
        if (err == TQ_OK || !ctx.live_race || attempt == VERIFY_LIVE_TRIES) break;
        err = TQ_OK;
        usleep(5000);
    }
    uint64_t newest_snapshot_file = 0;
    if (err == TQ_OK) err = verify_snapshots(dir, report, &newest_snapshot_file, error);
    if (err == TQ_OK) err = verify_with_recovery(dir, report, newest_snapshot_file, error);
    tq_arena_destroy(&ctx.arena);
    return err;
}

/* ---- CLI ------------------------------------------------------------------------------ */

static void verify_usage(FILE *out) {
    fprintf(out,
            "usage: ticketq verify --data DIR [--quiet]\n"
            "  Checks every checksum and the hash chain of all segments (compressed too) and\n"
            "  snapshots of a data directory or a backup directory (and its MANIFEST).\n"
            "  Exit 0: intact (prints LSN range, record counts, chain head, redactions; on a\n"
            "  live server's directory it stops before the batches in flight: \"live tail\");\n"
            "  exit 1: the first problem, with file, offset and LSN; exit 2: usage/IO error.\n");
}

static void verify_print(const struct tq_ops_verify_report *r) {
    char t0[TQ_OPS_TIME_BYTES], t1[TQ_OPS_TIME_BYTES];
    printf("verify: ok\n");
    printf("lsn range: %" PRIu64 "..%" PRIu64 " (%s .. %s)\n", r->lsn_first, r->lsn_last,
           tq_ops_time_format(r->commit_us_first / 1000, t0),
           tq_ops_time_format(r->commit_us_last / 1000, t1));
    printf("segments: %" PRIu64 " (%" PRIu64 " compressed), batches: %" PRIu64 ", records: %" PRIu64
           ", bytes: %" PRIu64 "\n",
           r->segments, r->segments_compressed, r->batches, r->records, r->bytes);
    printf("records by type: cmd %" PRIu64 ", events %" PRIu64, r->records_by_type[1],
           r->records_by_type[2]);
    for (unsigned t = 3; t < TQ_OPS_RECORD_TYPES; t++) {
        if (r->records_by_type[t] != 0) printf(", type%u %" PRIu64, t, r->records_by_type[t]);
    }
    if (r->records_by_type[0] != 0) printf(", other %" PRIu64, r->records_by_type[0]);
    printf("\ncommands:");
    for (unsigned t = 1; t < TQ_OPS_CMD_TYPES; t++) {
        if (r->cmds_by_type[t] != 0) {
            printf(" %s=%" PRIu64, tq_ops_cmd_name((int)t), r->cmds_by_type[t]);
        }
    }
    if (r->cmds_by_type[0] != 0) printf(" undecodable=%" PRIu64, r->cmds_by_type[0]);
    printf("\nchain head: %016" PRIx64 "\n", r->chain_head);
    printf("snapshots: %" PRIu64 " (newest at LSN %" PRIu64 ")\n", r->snapshots,
           r->snapshot_lsn_newest);
    if (r->manifest_files != 0) printf("manifest: %" PRIu64 " files match\n", r->manifest_files);
    printf("redactions: %" PRIu64, r->redaction_count);
    for (uint64_t i = 0; i < r->redaction_count && i < TQ_OPS_REDACTIONS_LISTED_MAX; i++) {
        printf("%s%" PRIu64, i == 0 ? " at LSN " : ",", r->redacted_lsns[i]);
    }
    printf("\n");
    if (r->live_tail) {
        printf("note: live tail: stopped at LSN %" PRIu64 ", offset %" PRIu64
               " of %s: a live writer holds LOCK and has batches in flight\n",
               r->live_tail_lsn, r->live_tail_offset, r->live_tail_file);
    } else if (r->live_writer) {
        printf("note: a live writer holds LOCK: checked up to LSN %" PRIu64
               " (the log grows while it runs)\n",
               r->lsn_last);
    }
    if (r->torn_tail_bytes != 0) {
        printf("warning: the last segment ends in %" PRIu64
               " bytes of an incomplete batch (being written, or cut by the next recovery)\n",
               r->torn_tail_bytes);
    }
}

int tq_ops_verify_main(int argc, char **argv) {
    struct tq_ops_args args;
    tq_ops_args_init(&args, argc, argv, "verify");
    const char *dir = NULL;
    bool quiet = false, bad = false;
    while (args.index < argc && !bad) {
        if (tq_ops_args_take(&args, "--help", NULL, &bad) ||
            tq_ops_args_take(&args, "-h", NULL, &bad)) {
            verify_usage(stdout);
            return TQ_OPS_EXIT_OK;
        }
        if (tq_ops_args_take(&args, "--data", &dir, &bad)) continue;
        if (tq_ops_args_take(&args, "--quiet", NULL, &bad)) {
            quiet = true;
            continue;
        }
        fprintf(stderr, "ticketq verify: unknown option %s\n", argv[args.index]);
        bad = true;
    }
    if (bad || dir == NULL) {
        verify_usage(stderr);
        return TQ_OPS_EXIT_USAGE;
    }
    struct tq_ops_verify_report *report = tq_xalloc(sizeof(*report));
    struct tq_error error;
    tq_error_clear(&error);
    enum tq_err err = tq_ops_verify(dir, report, &error);
    int rc = TQ_OPS_EXIT_OK;
    if (err == TQ_OK) {
        if (!quiet) verify_print(report);
    } else {
        printf("verify: FAILED\n");
        tq_ops_print_error("verify", &error);
        rc = err == TQ_ERR_CORRUPT ? TQ_OPS_EXIT_FAILED : TQ_OPS_EXIT_USAGE;
    }
    tq_free(report, sizeof(*report));
    return rc;
}
