/* tests/storage/test_recycle.c: recycled segment files and the stale batches they hold.
 *
 * Goal: a segment file reused as a spare (docs/log-format.md, "Recycled segments") still holds
 * valid batches of its earlier life; recovery must never take them for data or for evidence,
 * and recycling must not weaken the detection of real damage.
 * Method: small segments (256 KiB), seeded random records; sealed segments are compressed so
 * their .seg files go to the pool (DIR/log/recycle.*), and appending goes on until new segments
 * are made of them. Each case first checks its precondition: stale headers (valid, LSN below the
 * segment's name) really are there after the damage or the end.
 * Invariants checked: every record up to the recovered end reads back byte-identical; a clean
 * close reopens with no log line; a torn tail in a recycled segment is cut (one line) and the
 * stale batches after it change nothing; a crash right after a spare was recycled into the tail
 * (renamed, nothing written) opens cleanly; damage in a sealed recycled segment is still
 * refused with file, offset and LSN; verify-style read-only opens agree; the pool is bounded.
 */
#include "format.h"
#include "log_impl.h"
#include "storage_test.h"

#include <errno.h>
#include <inttypes.h>

static uint64_t seed;
#define LEN_MAX 3000u

static struct tq_log_options options(const char *dir, struct st_lines *lines) {
    struct tq_log_options o = st_options(dir, lines);
    o.recycle_segments_max = 8;
    return o;
}

static int count_recycled(const char *dir) {
    char log_dir[300];
    snprintf(log_dir, sizeof(log_dir), "%s/log", dir);
    DIR *d = opendir(log_dir);
    TQ_CHECK(d != NULL);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, TQ_RECYCLE_PREFIX, strlen(TQ_RECYCLE_PREFIX)) == 0) n++;
    }
    closedir(d);
    return n;
}

/* Compresses every sealed plain segment of the open log: their files go to the pool. */
static int compress_sealed(struct tq_log *log) {
    int n = 0;
    for (uint32_t i = 0; i + 1 < log->seg_count; i++) {
        if (log->segs[i].compressed) continue;
        struct tq_error err;
        TQ_CHECK_OK(tq_log_compress_segment(log, log->segs[i].lsn_first, NULL, &err), &err);
        n++;
    }
    return n;
}

/* Stale batch headers (valid, LSN below lsn_first) at 4 KiB boundaries of path from offset. */
static int stale_headers(const char *path, uint64_t lsn_first, uint64_t from) {
    int fd = open(path, O_RDONLY);
    TQ_CHECK(fd >= 0);
    struct stat st;
    TQ_CHECK_EQ(fstat(fd, &st), 0);
    static uint8_t block[TQ_BATCH_ALIGN_BYTES];
    int n = 0;
    for (uint64_t off = from; off + sizeof(block) <= (uint64_t)st.st_size; off += sizeof(block)) {
        TQ_CHECK_EQ(pread(fd, block, sizeof(block), (off_t)off), (ssize_t)sizeof(block));
        struct tq_batch_header h;
        char why[64];
        enum tq_batch_check c = tq_batch_check(block, sizeof(block), false, &h, why, sizeof(why));
        if ((c == TQ_BATCH_VALID || c == TQ_BATCH_TRUNCATED) && h.lsn_first < lsn_first) n++;
    }
    close(fd);
    return n;
}

static bool in_pool(int fd, const ino_t *pool, uint32_t count) {
    struct stat st;
    TQ_CHECK_EQ(fstat(fd, &st), 0);
    for (uint32_t i = 0; i < count; i++) {
        if (pool[i] == st.st_ino) return true;
    }
    return false;
}

/* Builds a log whose tail and at least one sealed segment are recycled files. Returns the last
 * LSN; *tail_path and *tail_lsn name the tail segment, *sealed_recycled a sealed one. */
static uint64_t build_recycled(const char *dir, char *tail_path, uint64_t *tail_lsn,
                               char *sealed_recycled, uint64_t *sealed_lsn) {
    struct tq_log_options o = options(dir, NULL);
    struct tq_log *log;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    /* a first life: 5 segments, 4 of them compressed into the pool */
    while (log->seg_count < 5)
        st_fill(log, seed, tq_log_next_lsn(log) + 40, LEN_MAX, 7);
    TQ_CHECK_EQ(compress_sealed(log), 4);
    TQ_CHECK_EQ(log->recycle_count + (log->spare_recycled ? 1u : 0u), 4u);
    ino_t pool[8];
    for (uint32_t i = 0; i < log->recycle_count; i++) {
        struct stat st;
        TQ_CHECK_EQ(stat(log->recycle_paths[i], &st), 0);
        pool[i] = st.st_ino;
    }
    uint32_t pool_count = log->recycle_count;
    /* a second life: new segments made of recycled files; stop mid-segment */
    uint32_t first_new = log->seg_count;
    while (log->seg_count < first_new + 3)
        st_fill(log, seed, tq_log_next_lsn(log) + 40, LEN_MAX, 7);
    st_fill(log, seed, tq_log_next_lsn(log) + 10, LEN_MAX, 3);
    uint64_t last = tq_log_next_lsn(log) - 1;
    struct tq_seg *tail = &log->segs[log->seg_count - 1];
    struct tq_seg *sealed = &log->segs[log->seg_count - 2];
    snprintf(tail_path, 512, "%s", tail->path);
    *tail_lsn = tail->lsn_first;
    snprintf(sealed_recycled, 512, "%s", sealed->path);
    *sealed_lsn = sealed->lsn_first;
    /* the premise: both are files of the first life, and the tail holds stale batches after
     * its data */
    TQ_CHECK(in_pool(tail->fd, pool, pool_count));
    TQ_CHECK(in_pool(sealed->fd, pool, pool_count));
    TQ_CHECK_GT(stale_headers(tail_path, *tail_lsn, tail->bytes_used), 0);
    tq_log_close(log);
    return last;
}

static void check_all(const char *dir, uint64_t lsn_first, uint64_t lsn_last, bool read_only) {
    struct st_lines lines = {0};
    struct tq_log_options o = options(dir, &lines);
    o.read_only = read_only;
    struct tq_log *log;
    struct tq_log_recovery rec;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, &rec, &err), &err);
    TQ_CHECK_UEQ(rec.lsn_last, lsn_last);
    if (lines.count != 0) fprintf(stderr, "unexpected lines:\n%s", lines.text);
    TQ_CHECK_EQ(lines.count, 0);
    for (uint64_t lsn = lsn_first; lsn <= lsn_last; lsn++)
        st_check_record(log, seed, lsn, LEN_MAX);
    tq_log_close(log);
}

/* Clean close and reopen of a log living in recycled files: no log line, every record, and
 * appending goes on (and the pool is used up, then fresh spares are made). */
static void test_clean_reopen(void) {
    char dir[256], tail[512], sealed[512];
    uint64_t tail_lsn, sealed_lsn;
    st_mkdtemp(dir, sizeof(dir), "recycle-clean");
    uint64_t last = build_recycled(dir, tail, &tail_lsn, sealed, &sealed_lsn);
    check_all(dir, 1, last, false);
    check_all(dir, 1, last, true);
    /* go on past the pool: fresh fallocated spares again */
    struct tq_log_options o = options(dir, NULL);
    struct tq_log *log;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    uint32_t segs = log->seg_count;
    while (log->seg_count < segs + 4)
        st_fill(log, seed, tq_log_next_lsn(log) + 40, LEN_MAX, 5);
    TQ_CHECK_UEQ(log->recycle_count, 0);
    TQ_CHECK(!log->spare_recycled);
    last = tq_log_next_lsn(log) - 1;
    tq_log_close(log);
    check_all(dir, 1, last, false);
    st_rmtree(dir);
}

/* A torn last batch in a recycled tail, with valid-looking stale batches after it: cut with one
 * line, nothing after it counts, appending resumes with the same LSNs. */
static void test_torn_tail_before_stale(void) {
    for (int round = 0; round < 6; round++) {
        char dir[256], tail[512], sealed[512];
        uint64_t tail_lsn, sealed_lsn;
        st_mkdtemp(dir, sizeof(dir), "recycle-torn");
        uint64_t last = build_recycled(dir, tail, &tail_lsn, sealed, &sealed_lsn);
        /* the last batch of the tail */
        struct tq_log_options ro = options(dir, NULL);
        ro.read_only = true;
        struct tq_log *log;
        struct tq_error err;
        TQ_CHECK_OK(tq_log_open(&ro, &log, NULL, &err), &err);
        const struct tq_batch_ref *r = &log->refs[log->ref_count - 1];
        uint64_t off = r->offset, lsn = r->lsn_first, disk = r->disk_bytes;
        TQ_CHECK_UEQ(r->lsn_first + r->record_count - 1, last);
        tq_log_close(log);
        TQ_CHECK_GT(stale_headers(tail, tail_lsn, off + disk), 0);
        /* damage: a bit flip in the batch (round even) or its header block zeroed (odd: the
         * write landed without its first block) */
        int fd = open(tail, O_RDWR);
        TQ_CHECK(fd >= 0);
        uint64_t seed_r = seed + (uint64_t)round;
        if (round % 2 == 0) {
            struct tq_batch_header h;
            TQ_CHECK_EQ(pread(fd, &h, sizeof(h), (off_t)off), (ssize_t)sizeof(h));
            uint64_t at = off + tq_test_rand_below(&seed_r, 64 + h.area_bytes);
            uint8_t b;
            TQ_CHECK_EQ(pread(fd, &b, 1, (off_t)at), 1);
            b ^= (uint8_t)(1u << tq_test_rand_below(&seed_r, 8));
            TQ_CHECK_EQ(pwrite(fd, &b, 1, (off_t)at), 1);
        } else {
            static uint8_t zeros[TQ_BATCH_ALIGN_BYTES];
            TQ_CHECK_EQ(pwrite(fd, zeros, sizeof(zeros), (off_t)off), (ssize_t)sizeof(zeros));
        }
        close(fd);
        struct st_lines lines = {0};
        struct tq_log_options o = options(dir, &lines);
        struct tq_log_recovery rec;
        /* read-only first: it stops there and refuses nothing (stale batches are no hole) */
        ro.log_line = st_line;
        ro.log_line_ctx = &lines;
        TQ_CHECK_OK(tq_log_open(&ro, &log, &rec, &err), &err);
        TQ_CHECK_UEQ(rec.lsn_last, lsn - 1);
        tq_log_close(log);
        memset(&lines, 0, sizeof(lines));
        TQ_CHECK_OK(tq_log_open(&o, &log, &rec, &err), &err);
        TQ_CHECK_UEQ(rec.lsn_last, lsn - 1);
        if (round % 2 == 0) {
            TQ_CHECK_EQ(lines.count, 1);
            TQ_CHECK(strstr(lines.text, "torn tail") != NULL);
            TQ_CHECK_GT(rec.torn_bytes_cut, 0);
        } else {
            /* zeros where the header was and only stale bytes after: the write never landed */
            TQ_CHECK_LE(lines.count, 1);
        }
        /* append again over the cut: same LSNs, new bytes, then a clean reopen */
        st_fill(log, seed + 1, lsn + 30, LEN_MAX, 4);
        tq_log_close(log);
        struct tq_log_options o2 = options(dir, NULL);
        TQ_CHECK_OK(tq_log_open(&o2, &log, &rec, &err), &err);
        TQ_CHECK_UEQ(rec.lsn_last, lsn + 29);
        for (uint64_t l = lsn; l < lsn + 30; l++)
            st_check_record(log, seed + 1, l, LEN_MAX);
        tq_log_close(log);
        st_rmtree(dir);
    }
}

/* A crash right after recycling: the spare (a recycled file) was renamed to the next segment's
 * name and the directory synced, but no batch of it landed. Its offset 0 holds a stale batch.
 * The log must open at the same end, with no line, read-only and writable. */
static void test_crash_after_recycle(void) {
    char dir[256], tail[512], sealed[512];
    uint64_t tail_lsn, sealed_lsn;
    st_mkdtemp(dir, sizeof(dir), "recycle-crash");
    uint64_t last = build_recycled(dir, tail, &tail_lsn, sealed, &sealed_lsn);
    /* a recycled file in the pool (compress the sealed one: its file goes to the pool) */
    struct tq_log_options o = options(dir, NULL);
    o.recycle_segments_max = 8;
    struct tq_log *log;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    TQ_CHECK_GT(compress_sealed(log), 0);
    TQ_CHECK_GT(log->recycle_count, 0);
    char from[600];
    snprintf(from, sizeof(from), "%s", log->recycle_paths[log->recycle_count - 1]);
    tq_log_abandon(log); /* a crash: no close-time work */
    char to[600];
    snprintf(to, sizeof(to), "%s/log/%020" PRIu64 ".seg", dir, last + 1);
    TQ_CHECK_EQ(rename(from, to), 0);
    TQ_CHECK_GT(stale_headers(to, last + 1, 0), 0);
    check_all(dir, 1, last, true);
    check_all(dir, 1, last, false);
    /* the renamed file is now the (empty) tail: appending starts at its offset 0 */
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    TQ_CHECK_UEQ(log->segs[log->seg_count - 1].lsn_first, last + 1);
    st_fill(log, seed, last + 50, LEN_MAX, 6);
    tq_log_close(log);
    check_all(dir, 1, last + 49, false);
    st_rmtree(dir);
}

/* Real damage in a sealed recycled segment (stale batches after its data) is still refused,
 * naming file, offset and LSN; a stale batch is never a substitute for a missing one. */
static void test_damage_in_sealed_recycled(void) {
    char dir[256], tail[512], sealed[512];
    uint64_t tail_lsn, sealed_lsn;
    st_mkdtemp(dir, sizeof(dir), "recycle-sealed");
    (void)build_recycled(dir, tail, &tail_lsn, sealed, &sealed_lsn);
    struct tq_log_options ro = options(dir, NULL);
    ro.read_only = true;
    struct tq_log *log;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&ro, &log, NULL, &err), &err);
    /* the last batch of the sealed recycled segment: zero its header (a lost page) */
    uint64_t off = 0, lsn = 0;
    for (uint64_t i = 0; i < log->ref_count; i++) {
        if (log->refs[i].seg_index == log->seg_count - 2) {
            off = log->refs[i].offset;
            lsn = log->refs[i].lsn_first;
        }
    }
    tq_log_close(log);
    TQ_CHECK_GT(lsn, 0);
    int fd = open(sealed, O_RDWR);
    TQ_CHECK(fd >= 0);
    static uint8_t zeros[TQ_BATCH_ALIGN_BYTES];
    TQ_CHECK_EQ(pwrite(fd, zeros, sizeof(zeros), (off_t)off), (ssize_t)sizeof(zeros));
    close(fd);
    struct tq_log_options o = options(dir, NULL);
    enum tq_err e = tq_log_open(&o, &log, NULL, &err);
    TQ_CHECK_EQ(e, TQ_ERR_CORRUPT);
    char want[80];
    snprintf(want, sizeof(want), "(lsn %" PRIu64 ")", lsn);
    if (strstr(err.msg, want) == NULL) fprintf(stderr, "message: %s\n", err.msg);
    TQ_CHECK(strstr(err.msg, want) != NULL);
    TQ_CHECK(strstr(err.msg, "offset") != NULL);
    ro.log_line = NULL;
    TQ_CHECK_EQ(tq_log_open(&ro, &log, NULL, &err), TQ_ERR_CORRUPT);
    st_rmtree(dir);
}

/* The pool keeps at most recycle_segments_max files; 0 (the default) keeps none. */
static void test_pool_bounded(void) {
    for (int mode = 0; mode < 2; mode++) {
        char dir[256];
        st_mkdtemp(dir, sizeof(dir), "recycle-pool");
        struct tq_log_options o = st_options(dir, NULL);
        o.recycle_segments_max = mode == 0 ? 2 : 0;
        struct tq_log *log;
        struct tq_error err;
        TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
        while (log->seg_count < 6)
            st_fill(log, seed, tq_log_next_lsn(log) + 40, LEN_MAX, 9);
        TQ_CHECK_EQ(compress_sealed(log), 5);
        TQ_CHECK_UEQ(log->recycle_count, mode == 0 ? 2u : 0u);
        TQ_CHECK_EQ(count_recycled(dir), mode == 0 ? 2 : 0);
        uint64_t last = tq_log_next_lsn(log) - 1;
        tq_log_close(log);
        /* at open, files beyond the bound are removed (the one kept becomes the spare and goes
         * back to the pool at close) */
        o.recycle_segments_max = mode == 0 ? 1 : 0;
        TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
        TQ_CHECK_EQ(count_recycled(dir), 0);
        TQ_CHECK(log->spare_recycled == (mode == 0));
        tq_log_close(log);
        TQ_CHECK_EQ(count_recycled(dir), mode == 0 ? 1 : 0);
        check_all(dir, 1, last, true);
        o.recycle_segments_max = TQ_RECYCLE_SEGMENTS_MAX + 1;
        TQ_CHECK_EQ(tq_log_open(&o, &log, NULL, &err), TQ_ERR_INVALID_ARGUMENT);
        st_rmtree(dir);
    }
}

int main(void) {
    seed = tq_test_seed("test_recycle");
    test_clean_reopen();
    test_torn_tail_before_stale();
    test_crash_after_recycle();
    test_damage_in_sealed_recycled();
    test_pool_bounded();
    printf("test_recycle: ok\n");
    return 0;
}
