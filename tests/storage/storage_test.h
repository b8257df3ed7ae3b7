/* tests/storage/storage_test.h: helpers shared by the storage tests (header-only).
 *
 * Temporary data directories under TMPDIR (removed at the end unless TQ_KEEP=1), deterministic
 * payloads derived from (seed, lsn) so any process can check a record without a copy of it, and
 * a log-line collector to assert on recovery messages.
 */
#ifndef TQ_STORAGE_TEST_H
#define TQ_STORAGE_TEST_H

#include "faults.h"
#include "log.h"
#include "tq_test.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static inline void st_mkdtemp(char *out, size_t cap, const char *name) {
    const char *base = getenv("TMPDIR");
    snprintf(out, cap, "%s/tq-%s-XXXXXX", base != NULL ? base : "/tmp", name);
    TQ_CHECK(mkdtemp(out) != NULL);
}

static inline int st_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void st_rmtree(const char *dir) {
    const char *keep = getenv("TQ_KEEP");
    if (keep != NULL && keep[0] == '1') return;
    nftw(dir, st_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Payload of the record with this lsn under this seed: length in [0, len_max], bytes from a
 * PRNG, so a checker needs only (seed, lsn). */
static inline uint32_t st_payload(uint64_t seed, uint64_t lsn, uint32_t len_max, uint8_t *out) {
    uint64_t s = seed ^ (lsn * 0x9e3779b97f4a7c15ull);
    uint32_t len = (uint32_t)tq_test_rand_below(&s, (uint64_t)len_max + 1);
    for (uint32_t i = 0; i < len; i += 8) {
        uint64_t v = tq_test_rand(&s);
        uint32_t n = len - i < 8 ? len - i : 8;
        memcpy(out + i, &v, n);
    }
    return len;
}

static inline uint16_t st_type(uint64_t lsn) {
    return (uint16_t)(1 + lsn % 7);
}

/* Collects log lines (recovery messages) for checks. */
struct st_lines {
    char text[8192];
    int count;
};

static inline void st_line(void *ctx, const char *line) {
    struct st_lines *l = ctx;
    size_t used = strlen(l->text);
    snprintf(l->text + used, sizeof(l->text) - used, "%s\n", line);
    l->count++;
}

static inline struct tq_log_options st_options(const char *dir, struct st_lines *lines) {
    struct tq_log_options o;
    memset(&o, 0, sizeof(o));
    o.dir = dir;
    o.segment_bytes_max = 256 * 1024;
    o.record_bytes_max = 16 * 1024;
    o.batch_bytes_max = 64 * 1024;
    o.spare_no_prezero = true;
    o.pipeline_bytes_min = 1; /* small test batches pipeline too (tests: test_log.c) */
    /* TQ_TEST_DSYNC=1: the whole storage suite with dsync_writes on (the opt-in target
     * test_storage_dsync_suite, tests/crash/CMakeLists.txt) */
    const char *dsync = getenv("TQ_TEST_DSYNC");
    o.dsync_writes = dsync != NULL && strcmp(dsync, "1") == 0;
    if (lines != NULL) {
        o.log_line = st_line;
        o.log_line_ctx = lines;
    }
    return o;
}

/* SQEs one batch takes in ALWAYS mode (no directory fsync): a write linked to an fdatasync, or
 * with dsync_writes one RWF_DSYNC write. */
static inline unsigned st_batch_sqes(const struct tq_log_options *o) {
    return o->dsync_writes && o->fsync_mode == TQ_FSYNC_ALWAYS ? 1u : 2u;
}

/* Checks that the record with lsn matches st_payload(seed, lsn). */
static inline void st_check_record(struct tq_log *log, uint64_t seed, uint64_t lsn,
                                   uint32_t len_max) {
    static uint8_t want[1 << 20], got[1 << 20];
    struct tq_log_record rec;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_read(log, lsn, &rec, got, sizeof(got), &err), &err);
    uint32_t len = st_payload(seed, lsn, len_max, want);
    TQ_CHECK_UEQ(rec.lsn, lsn);
    if (rec.len != len) fprintf(stderr, "record %" PRIu64 ": length mismatch\n", lsn);
    TQ_CHECK_UEQ(rec.len, len);
    TQ_CHECK_UEQ(rec.type, st_type(lsn));
    if (len > 0) TQ_CHECK_MEM_EQ(rec.payload, want, len);
}

/* Appends records seeded by seed until next_lsn reaches lsn_end (exclusive), syncing every
 * per_sync records. */
static inline void st_fill(struct tq_log *log, uint64_t seed, uint64_t lsn_end, uint32_t len_max,
                           int per_sync) {
    static uint8_t buf[1 << 20];
    struct tq_error err;
    int n = 0;
    while (tq_log_next_lsn(log) < lsn_end) {
        uint64_t lsn_want = tq_log_next_lsn(log);
        uint32_t len = st_payload(seed, lsn_want, len_max, buf);
        uint64_t lsn;
        enum tq_err e = tq_log_append(log, st_type(lsn_want), buf, len, &lsn, &err);
        if (e == TQ_ERR_RESOURCE_EXHAUSTED) {
            TQ_CHECK_OK(tq_log_sync(log, &err), &err);
            continue;
        }
        TQ_CHECK_OK(e, &err);
        TQ_CHECK_UEQ(lsn, lsn_want);
        if (++n % per_sync == 0) TQ_CHECK_OK(tq_log_sync(log, &err), &err);
    }
    TQ_CHECK_OK(tq_log_sync(log, &err), &err);
}

/* Segment file paths of dir/log, sorted; returns the count. */
static inline int st_segments(const char *dir, char paths[][512], int cap) {
    char log_dir[264];
    snprintf(log_dir, sizeof(log_dir), "%s/log", dir);
    struct dirent **names;
    int n = scandir(log_dir, &names, NULL, alphasort);
    int count = 0;
    for (int i = 0; i < n; i++) {
        const char *d = names[i]->d_name;
        size_t len = strlen(d);
        bool seg = (len > 4 && strcmp(d + len - 4, ".seg") == 0) ||
                   (len > 5 && strcmp(d + len - 5, ".zseg") == 0);
        if (seg && count < cap && strlen(log_dir) + len + 2 <= 512) {
            memcpy(paths[count], log_dir, strlen(log_dir));
            paths[count][strlen(log_dir)] = '/';
            memcpy(paths[count] + strlen(log_dir) + 1, d, len + 1);
            count++;
        }
        free(names[i]);
    }
    if (n >= 0) free(names);
    return count;
}

#endif
