/* tests/golden/test_golden.c: every version must open the committed log of format v1.
 *
 * Goal: format compatibility. tests/golden/log-v1.tar.zst was written once (tests/storage/
 * golden_gen.c) and is never regenerated for a format change; a change that breaks this test
 * needs a new format version and a migration, not a new golden directory.
 * Method: open the committed directory read-only (it must not be modified), check every record
 * (type, length, bytes from golden.h), iteration, the compressed first segment and the
 * snapshot; then open a copy read-write, append, reopen and check that the chain continues.
 */
#include "golden.h"
#include "log.h"
#include "tq_alloc.h"
#include "tq_test.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void check_all(struct tq_log *log) {
    static uint8_t want[GOLDEN_RECORD_BYTES], got[GOLDEN_RECORD_BYTES];
    struct tq_error err;
    struct tq_log_record r;
    for (uint64_t lsn = 1; lsn <= GOLDEN_RECORDS; lsn++) {
        uint32_t len = golden_payload(lsn, want);
        TQ_CHECK_OK(tq_log_read(log, lsn, &r, got, sizeof(got), &err), &err);
        TQ_CHECK_UEQ(r.type, golden_type(lsn));
        TQ_CHECK_UEQ(r.len, len);
        TQ_CHECK_UEQ(r.flags, 0);
        if (len > 0) TQ_CHECK_MEM_EQ(r.payload, want, len);
    }
    struct tq_log_iter *it;
    TQ_CHECK_OK(tq_log_iter_open(log, GOLDEN_SNAPSHOT_LSN + 1, &it, &err), &err);
    uint64_t expect = GOLDEN_SNAPSHOT_LSN + 1;
    while (tq_log_iter_next(it, &r, &err) == TQ_OK) {
        TQ_CHECK_UEQ(r.lsn, expect);
        TQ_CHECK_UEQ(r.len, golden_payload(expect, want));
        expect++;
    }
    tq_log_iter_close(it);
    TQ_CHECK_GE(expect, GOLDEN_RECORDS + 1);
    void *blob;
    size_t len;
    uint64_t lsn;
    TQ_CHECK_OK(tq_log_snapshot_latest(log, &blob, &len, &lsn, &err), &err);
    TQ_CHECK_UEQ(lsn, GOLDEN_SNAPSHOT_LSN);
    TQ_CHECK_UEQ(len, strlen(GOLDEN_SNAPSHOT_BLOB));
    TQ_CHECK_MEM_EQ(blob, GOLDEN_SNAPSHOT_BLOB, len);
    tq_free(blob, len);
}

int main(void) {
    /* tests/golden/log-v1.tar.zst, unpacked by CMake into the build tree */
    const char *golden = TQ_GOLDEN_DIR;
    char copy[256], cmd[4096];
    struct tq_log_options o;
    memset(&o, 0, sizeof(o));
    o.dir = golden;
    o.segment_bytes_max = GOLDEN_SEGMENT_BYTES;
    o.batch_bytes_max = GOLDEN_BATCH_BYTES;
    o.record_bytes_max = GOLDEN_RECORD_BYTES;
    o.read_only = true;
    struct tq_log *log;
    struct tq_log_recovery rec;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, &rec, &err), &err);
    TQ_CHECK_UEQ(rec.lsn_first, 1);
    TQ_CHECK_UEQ(rec.lsn_last, GOLDEN_RECORDS);
    TQ_CHECK_UEQ(rec.snapshot_lsn, GOLDEN_SNAPSHOT_LSN);
    TQ_CHECK_UEQ(rec.torn_bytes_cut, 0);
    TQ_CHECK_GE(rec.segments, 3);
    check_all(log);
    tq_log_close(log);

    const char *tmp = getenv("TMPDIR");
    snprintf(copy, sizeof(copy), "%s/tq-golden-XXXXXX", tmp != NULL ? tmp : "/tmp");
    TQ_CHECK(mkdtemp(copy) != NULL);
    snprintf(cmd, sizeof(cmd), "cp -r '%s/log' '%s/snapshots' '%s/'", golden, golden, copy);
    TQ_CHECK_EQ(system(cmd), 0);
    o.dir = copy;
    o.read_only = false;
    TQ_CHECK_OK(tq_log_open(&o, &log, &rec, &err), &err);
    TQ_CHECK_UEQ(rec.lsn_last, GOLDEN_RECORDS);
    static uint8_t buf[GOLDEN_RECORD_BYTES];
    for (uint64_t lsn = GOLDEN_RECORDS + 1; lsn <= GOLDEN_RECORDS + 40; lsn++) {
        uint32_t len = golden_payload(lsn, buf);
        uint64_t got;
        TQ_CHECK_OK(tq_log_append(log, golden_type(lsn), buf, len, &got, &err), &err);
        TQ_CHECK_UEQ(got, lsn);
        if (lsn % GOLDEN_PER_BATCH == 0) TQ_CHECK_OK(tq_log_sync(log, &err), &err);
    }
    TQ_CHECK_OK(tq_log_sync(log, &err), &err);
    tq_log_close(log);
    TQ_CHECK_OK(tq_log_open(&o, &log, &rec, &err), &err);
    TQ_CHECK_UEQ(rec.lsn_last, GOLDEN_RECORDS + 40);
    check_all(log);
    tq_log_close(log);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", copy);
    TQ_CHECK_EQ(system(cmd), 0);
    printf("test_golden: ok\n");
    return 0;
}
