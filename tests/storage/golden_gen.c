/* tests/storage/golden_gen.c: writes the golden log directory (tests/golden/log-v1.tar.zst).
 *
 * Run once per format version: `tq-storage-golden-gen log-vN` on an empty directory, then
 * commit it as one archive (log files are never tracked), from its parent directory:
 * `tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - log-vN | zstd -19 >
 * tests/golden/log-vN.tar.zst`. It writes GOLDEN_RECORDS records (golden.h) in batches of
 * GOLDEN_PER_BATCH into 32 KiB segments, compresses the first sealed segment (so .zseg stays
 * readable forever), writes one snapshot, closes the log and removes the spare segment (never part
 * of the log).
 */
#include "golden.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void die(const char *what, const struct tq_error *err) {
    fprintf(stderr, "golden_gen: %s: %s\n", what, err->msg);
    exit(1);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    struct tq_log_options o;
    memset(&o, 0, sizeof(o));
    o.dir = argv[1];
    o.segment_bytes_max = GOLDEN_SEGMENT_BYTES;
    o.batch_bytes_max = GOLDEN_BATCH_BYTES;
    o.record_bytes_max = GOLDEN_RECORD_BYTES;
    o.spare_no_prezero = true;
    struct tq_log *log;
    struct tq_error err;
    if (tq_log_open(&o, &log, NULL, &err) != TQ_OK) die("open", &err);
    static uint8_t buf[GOLDEN_RECORD_BYTES];
    for (uint64_t lsn = 1; lsn <= GOLDEN_RECORDS; lsn++) {
        uint32_t len = golden_payload(lsn, buf);
        uint64_t got;
        if (tq_log_append(log, golden_type(lsn), buf, len, &got, &err) != TQ_OK)
            die("append", &err);
        if (got != lsn) return 1;
        if (lsn % GOLDEN_PER_BATCH == 0 && tq_log_sync(log, &err) != TQ_OK) die("sync", &err);
    }
    if (tq_log_sync(log, &err) != TQ_OK) die("sync", &err);
    uint64_t segs[64];
    size_t n = tq_log_segments(log, segs, 64);
    if (n < 3) return 1;
    if (tq_log_compress_segment(log, segs[0], NULL, &err) != TQ_OK) die("compress", &err);
    if (tq_log_snapshot_write(log, GOLDEN_SNAPSHOT_LSN, GOLDEN_SNAPSHOT_BLOB,
                              strlen(GOLDEN_SNAPSHOT_BLOB), &err) != TQ_OK) {
        die("snapshot", &err);
    }
    tq_log_close(log);
    char spare[4096];
    snprintf(spare, sizeof(spare), "%s/log/spare.seg.tmp", argv[1]);
    unlink(spare);
    printf("golden_gen: %u records in %zu segments written to %s\n", GOLDEN_RECORDS, n, argv[1]);
    return 0;
}
