/* storage/logtool.c: tq-logtool, the operator's view of a log directory.
 *
 *   tq-logtool verify DIR              open read-only: verify every batch and the chain, print
 *                                      the LSN range, segments, bytes, scan speed, snapshot and
 *                                      the chain head (the value an auditor writes down)
 *   tq-logtool dump DIR [FROM [COUNT]] one line per record: lsn, commit time, type, flags, len,
 *                                      and the first bytes (printable) of the payload
 *   tq-logtool compress DIR            compress every sealed segment (.seg -> .zseg)
 *   tq-logtool repair DIR              open with repair: cut at the first bad batch, printing
 *                                      exactly what is dropped (stop the server first)
 * Exit status: 0 ok, 1 the log refused to open or an operation failed, 2 usage.
 * Only the public API (log.h) plus tq_log_chain_head; read-only unless compress/repair.
 */
#include "log.h"
#include "tq_alloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void print_line(void *ctx, const char *line) {
    (void)ctx;
    printf("log: %s\n", line);
}

static int usage(void) {
    fprintf(stderr, "usage: tq-logtool verify|dump|compress|repair DIR [FROM [COUNT]]\n");
    return 2;
}

static int open_log(const char *dir, bool read_only, bool repair, struct tq_log **log,
                    struct tq_log_recovery *rec) {
    struct tq_log_options o;
    memset(&o, 0, sizeof(o));
    o.dir = dir;
    o.read_only = read_only;
    o.repair = repair;
    o.log_line = print_line;
    struct tq_error err;
    if (tq_log_open(&o, log, rec, &err) != TQ_OK) {
        fprintf(stderr, "tq-logtool: %s: %s\n", tq_err_name(err.code), err.msg);
        return 1;
    }
    return 0;
}

static void print_summary(struct tq_log *log, const struct tq_log_recovery *rec) {
    printf("lsn %" PRIu64 "..%" PRIu64 ", %" PRIu64 " segments, %" PRIu64 " batches, %" PRIu64
           " records, %.1f MB verified in %.3f s (%.2f GB/s)\n",
           rec->lsn_first, rec->lsn_last, rec->segments, rec->batches_scanned, rec->records_scanned,
           (double)rec->bytes_scanned / 1e6, rec->seconds,
           rec->seconds > 0 ? (double)rec->bytes_scanned / 1e9 / rec->seconds : 0.0);
    printf("snapshot lsn %" PRIu64 "\n", rec->snapshot_lsn);
    printf("chain head %016" PRIx64 "\n", tq_log_chain_head(log));
}

static int dump(struct tq_log *log, uint64_t from, uint64_t count) {
    struct tq_log_iter *it;
    struct tq_error err;
    if (tq_log_iter_open(log, from, &it, &err) != TQ_OK) return 1;
    struct tq_log_record r;
    enum tq_err e = TQ_OK;
    for (uint64_t n = 0; n < count && (e = tq_log_iter_next(it, &r, &err)) == TQ_OK; n++) {
        time_t secs = (time_t)(r.commit_us / 1000000u);
        struct tm tm;
        gmtime_r(&secs, &tm);
        char when[32];
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        char preview[49];
        uint32_t k = 0;
        for (; k < r.len && k < sizeof(preview) - 1; k++) {
            uint8_t c = r.payload[k];
            preview[k] = c >= 0x20 && c < 0x7f ? (char)c : '.';
        }
        preview[k] = '\0';
        printf("%" PRIu64 " %s type %u%s len %u %s\n", r.lsn, when, r.type,
               (r.flags & TQ_RECORD_REDACTED) != 0 ? " REDACTED" : "", r.len, preview);
    }
    tq_log_iter_close(it);
    if (e != TQ_OK && e != TQ_ERR_NOT_FOUND) {
        fprintf(stderr, "tq-logtool: %s\n", err.msg);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) return usage();
    const char *cmd = argv[1], *dir = argv[2];
    struct tq_log *log;
    struct tq_log_recovery rec;
    int rc = 0;
    if (strcmp(cmd, "verify") == 0 || strcmp(cmd, "dump") == 0) {
        if (open_log(dir, true, false, &log, &rec) != 0) return 1;
        if (cmd[0] == 'v') {
            print_summary(log, &rec);
        } else {
            uint64_t from = argc > 3 ? strtoull(argv[3], NULL, 10) : 0;
            uint64_t count = argc > 4 ? strtoull(argv[4], NULL, 10) : UINT64_MAX;
            rc = dump(log, from, count);
        }
    } else if (strcmp(cmd, "repair") == 0) {
        if (open_log(dir, false, true, &log, &rec) != 0) return 1;
        printf("repaired: %" PRIu64 " records dropped, %" PRIu64 " torn bytes cut\n",
               rec.repair_records_dropped, rec.torn_bytes_cut);
        print_summary(log, &rec);
    } else if (strcmp(cmd, "compress") == 0) {
        if (open_log(dir, false, false, &log, &rec) != 0) return 1;
        uint64_t segs[4096];
        size_t n = tq_log_segments(log, segs, 4096);
        for (size_t i = 0; i + 1 < n && rc == 0; i++) {
            struct tq_compress_stats st;
            struct tq_error err;
            enum tq_err e = tq_log_compress_segment(log, segs[i], &st, &err);
            if (e == TQ_ERR_FAILED_PRECONDITION) continue; /* already compressed */
            if (e != TQ_OK) {
                fprintf(stderr, "tq-logtool: %s\n", err.msg);
                rc = 1;
            } else {
                printf("segment %" PRIu64 ": %.1f MB -> %.1f MB (%u blocks)\n", segs[i],
                       (double)st.raw_bytes / 1e6, (double)st.compressed_bytes / 1e6, st.blocks);
            }
        }
    } else {
        return usage();
    }
    tq_log_close(log);
    return rc;
}
