/* tests/storage/test_corrupt.c: recovery against damaged files.
 *
 * Goal: a torn tail is cut back to the last whole batch; corruption anywhere else refuses to
 * open with a message naming the file, the byte offset and the LSN; removed or swapped segments
 * break the chain; repair cuts at the first bad batch and says what it dropped.
 * Method: build a log of several 256 KiB segments with seeded random records, then damage a
 * copy: truncate the last segment at random offsets, flip random bits in the last batch or in
 * a random batch of a sealed segment, delete or swap segments. Batch boundaries come from the
 * log's own index (log_impl.h) and the batch headers. Invariants checked: every record up to
 * the recovered end reads back byte-identical; the recovered end is exactly the last batch
 * wholly before the damage; error messages carry file name, "offset <n>" and "lsn <n>".
 */
#include "log_impl.h"
#include "storage_test.h"

static uint64_t seed;
static uint64_t rng;
#define LEN_MAX 2500u

struct batch_pos {
    uint64_t offset;
    uint64_t lsn_first, lsn_last;
    uint32_t area_bytes;
};

/* Builds a fresh log in dir with about n records; returns the segment count. */
static int build_ps(const char *dir, uint64_t n, int per_sync) {
    struct tq_log_options o = st_options(dir, NULL);
    struct tq_log *log;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    st_fill(log, seed, n + 1, LEN_MAX, per_sync);
    tq_log_close(log);
    char segs[64][512];
    return st_segments(dir, segs, 64);
}

static int build(const char *dir, uint64_t n) {
    return build_ps(dir, n, 1 + (int)tq_test_rand_below(&rng, 30));
}

/* Batches of segment seg_index (via a read-only handle's index). */
static int batches_of(const char *dir, uint32_t seg_index, struct batch_pos *out, int cap) {
    struct tq_log_options o = st_options(dir, NULL);
    o.read_only = true;
    struct tq_log *log;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    int n = 0;
    for (uint64_t i = 0; i < log->ref_count; i++) {
        const struct tq_batch_ref *r = &log->refs[i];
        if (r->seg_index != seg_index || n >= cap) continue;
        struct tq_batch_header h;
        TQ_CHECK_EQ(pread(log->segs[seg_index].fd, &h, sizeof(h), (off_t)r->offset),
                    (int)sizeof(h));
        out[n++] = (struct batch_pos){r->offset, r->lsn_first, r->lsn_first + r->record_count - 1,
                                      h.area_bytes};
    }
    tq_log_close(log);
    return n;
}

static void flip_bit(const char *path, uint64_t offset, int bit) {
    int fd = open(path, O_RDWR);
    TQ_CHECK(fd >= 0);
    uint8_t b;
    TQ_CHECK_EQ(pread(fd, &b, 1, (off_t)offset), 1);
    b ^= (uint8_t)(1u << bit);
    TQ_CHECK_EQ(pwrite(fd, &b, 1, (off_t)offset), 1);
    close(fd);
}

static void check_prefix(const char *dir, uint64_t lsn_last_expected, bool reopen_append) {
    struct st_lines lines = {0};
    struct tq_log_options o = st_options(dir, &lines);
    struct tq_log *log;
    struct tq_log_recovery rec;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, &rec, &err), &err);
    TQ_CHECK_UEQ(rec.lsn_last, lsn_last_expected);
    for (uint64_t lsn = 1; lsn <= lsn_last_expected; lsn += 1 + tq_test_rand_below(&rng, 3)) {
        st_check_record(log, seed, lsn, LEN_MAX);
    }
    if (reopen_append) {
        st_fill(log, seed, lsn_last_expected + 40, LEN_MAX, 5);
        tq_log_close(log);
        TQ_CHECK_OK(tq_log_open(&o, &log, &rec, &err), &err);
        TQ_CHECK_UEQ(rec.lsn_last, lsn_last_expected + 39);
        TQ_CHECK_UEQ(rec.torn_bytes_cut, 0);
        st_check_record(log, seed, lsn_last_expected + 39, LEN_MAX);
    }
    tq_log_close(log);
}

static void test_truncate_tail(void) {
    for (int round = 0; round < 14; round++) {
        char dir[256];
        st_mkdtemp(dir, sizeof(dir), "trunc");
        int segs = build(dir, 300 + tq_test_rand_below(&rng, 500));
        char paths[64][512];
        TQ_CHECK_EQ(st_segments(dir, paths, 64), segs);
        struct batch_pos b[4096];
        int nb = batches_of(dir, (uint32_t)segs - 1, b, 4096);
        uint64_t end = nb > 0 ? b[nb - 1].offset + 64 + b[nb - 1].area_bytes : 0;
        uint64_t cut = tq_test_rand_below(&rng, end + 1);
        TQ_CHECK_EQ(truncate(paths[segs - 1], (off_t)cut), 0);
        /* expected: the last batch whose header + area lie wholly before the cut */
        uint64_t expect;
        char first_name[32];
        snprintf(first_name, sizeof(first_name), "%.20s", strrchr(paths[segs - 1], '/') + 1);
        expect = strtoull(first_name, NULL, 10) - 1;
        for (int i = 0; i < nb; i++) {
            if (b[i].offset + 64 + b[i].area_bytes <= cut) expect = b[i].lsn_last;
        }
        check_prefix(dir, expect, round % 2 == 0);
        st_rmtree(dir);
    }
}

static void test_flip_tail(void) {
    for (int round = 0; round < 10; round++) {
        char dir[256];
        st_mkdtemp(dir, sizeof(dir), "fliptail");
        int segs = build(dir, 200 + tq_test_rand_below(&rng, 300));
        char paths[64][512];
        st_segments(dir, paths, 64);
        struct batch_pos b[4096];
        int nb = batches_of(dir, (uint32_t)segs - 1, b, 4096);
        if (nb < 2) {
            st_rmtree(dir);
            continue;
        }
        struct batch_pos *last = &b[nb - 1];
        uint64_t at = last->offset + tq_test_rand_below(&rng, 64 + last->area_bytes);
        flip_bit(paths[segs - 1], at, (int)tq_test_rand_below(&rng, 8));
        struct st_lines lines = {0};
        struct tq_log_options o = st_options(dir, &lines);
        struct tq_log *log;
        struct tq_log_recovery rec;
        struct tq_error err;
        TQ_CHECK_OK(tq_log_open(&o, &log, &rec, &err), &err);
        TQ_CHECK_UEQ(rec.lsn_last, last->lsn_first - 1);
        TQ_CHECK_GT(rec.torn_bytes_cut, 0);
        TQ_CHECK_EQ(lines.count, 1);
        TQ_CHECK(strstr(lines.text, "torn tail") != NULL);
        tq_log_close(log);
        check_prefix(dir, last->lsn_first - 1, true);
        st_rmtree(dir);
    }
}

static void test_flip_middle(void) {
    for (int round = 0; round < 10; round++) {
        char dir[256];
        st_mkdtemp(dir, sizeof(dir), "flipmid");
        int segs = build(dir, 700 + tq_test_rand_below(&rng, 300));
        TQ_CHECK_GE(segs, 3);
        char paths[64][512];
        st_segments(dir, paths, 64);
        uint32_t si = (uint32_t)tq_test_rand_below(&rng, (uint64_t)segs - 1); /* a sealed one */
        struct batch_pos b[4096];
        int nb = batches_of(dir, si, b, 4096);
        TQ_CHECK_GT(nb, 0);
        struct batch_pos *victim = &b[tq_test_rand_below(&rng, (uint64_t)nb)];
        uint64_t at = victim->offset + tq_test_rand_below(&rng, 64 + victim->area_bytes);
        flip_bit(paths[si], at, (int)tq_test_rand_below(&rng, 8));
        struct tq_log_options o = st_options(dir, NULL);
        struct tq_log *log;
        struct tq_error err;
        TQ_CHECK_ERR(tq_log_open(&o, &log, NULL, &err), TQ_ERR_CORRUPT, &err);
        char want[128];
        TQ_CHECK(strstr(err.msg, strrchr(paths[si], '/') + 1) != NULL);
        snprintf(want, sizeof(want), "offset %" PRIu64 " (lsn %" PRIu64 ")", victim->offset,
                 victim->lsn_first);
        if (strstr(err.msg, want) == NULL)
            fprintf(stderr, "message: %s\nwanted: %s\n", err.msg, want);
        TQ_CHECK(strstr(err.msg, want) != NULL);
        /* read-only also refuses? No: read-only stops there and serves the prefix. */
        /* repair cuts at the bad batch and says what it dropped */
        struct st_lines lines = {0};
        o = st_options(dir, &lines);
        o.repair = true;
        struct tq_log_recovery rec;
        TQ_CHECK_OK(tq_log_open(&o, &log, &rec, &err), &err);
        TQ_CHECK_UEQ(rec.lsn_last, victim->lsn_first - 1);
        TQ_CHECK_GT(rec.repair_records_dropped, 0);
        TQ_CHECK(strstr(lines.text, "REPAIR") != NULL);
        tq_log_close(log);
        check_prefix(dir, victim->lsn_first - 1, true);
        st_rmtree(dir);
    }
}

static void test_segments_removed_or_swapped(void) {
    for (int kind = 0; kind < 3; kind++) {
        char dir[256];
        st_mkdtemp(dir, sizeof(dir), "segs");
        int segs = build_ps(dir, 900, 5);
        TQ_CHECK_GE(segs, 4);
        char paths[64][512];
        st_segments(dir, paths, 64);
        int victim = 1 + (int)tq_test_rand_below(&rng, (uint64_t)segs - 2); /* not first/last */
        if (kind == 0) {
            TQ_CHECK_EQ(unlink(paths[victim]), 0);
        } else if (kind == 1) {
            /* swap the contents of two sealed segments (names stay) */
            char tmp[600];
            snprintf(tmp, sizeof(tmp), "%s.x", paths[victim]);
            TQ_CHECK_EQ(rename(paths[victim], tmp), 0);
            TQ_CHECK_EQ(rename(paths[victim - 1], paths[victim]), 0);
            TQ_CHECK_EQ(rename(tmp, paths[victim - 1]), 0);
        } else {
            /* replace a sealed segment by a copy of a different log's segment with the same
             * name: the LSNs match but the hash chain does not */
            char other[256];
            st_mkdtemp(other, sizeof(other), "other");
            usleep(2000); /* other commit timestamps: same records, other chain values */
            build_ps(other, 900, 5);
            char opaths[64][512];
            int on = st_segments(other, opaths, 64);
            TQ_CHECK_GT(on, victim);
            if (strcmp(strrchr(opaths[victim], '/'), strrchr(paths[victim], '/')) != 0) {
                st_rmtree(other);
                st_rmtree(dir);
                continue; /* different segment boundaries: not this scenario */
            }
            TQ_CHECK_EQ(rename(opaths[victim], paths[victim]), 0);
            st_rmtree(other);
        }
        struct tq_log_options o = st_options(dir, NULL);
        struct tq_log *log;
        struct tq_error err;
        TQ_CHECK_ERR(tq_log_open(&o, &log, NULL, &err), TQ_ERR_CORRUPT, &err);
        printf("kind %d refused: %s\n", kind, err.msg);
        TQ_CHECK(strstr(err.msg, "offset") != NULL && strstr(err.msg, "lsn") != NULL);
        if (kind == 0) TQ_CHECK(strstr(err.msg, "missing") != NULL);
        if (kind == 2) TQ_CHECK(strstr(err.msg, "chain") != NULL);
        /* repair keeps the intact prefix, drops the rest, and the log goes on from there */
        struct st_lines lines = {0};
        o = st_options(dir, &lines);
        o.repair = true;
        struct tq_log_recovery rec;
        TQ_CHECK_OK(tq_log_open(&o, &log, &rec, &err), &err);
        TQ_CHECK(strstr(lines.text, "REPAIR") != NULL);
        uint64_t kept = rec.lsn_last; /* 0 when the first segment was the damaged one */
        TQ_CHECK_GT(rec.repair_records_dropped, 0);
        tq_log_close(log);
        check_prefix(dir, kept, true);
        st_rmtree(dir);
    }
}

/* Bits that rot after open: a point read of the damaged record and an iterator over its
 * batch report CORRUPT (file, offset, LSN); other records keep reading. */
static void test_rot_after_open(void) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "rot");
    int segs = build_ps(dir, 400, 6);
    TQ_CHECK_GE(segs, 2);
    char paths[64][512];
    st_segments(dir, paths, 64);
    struct batch_pos b[4096];
    int nb = batches_of(dir, 0, b, 4096);
    struct batch_pos *victim = NULL;
    static uint8_t tmp[LEN_MAX];
    for (int i = 0; i < nb && victim == NULL; i++) {
        if (b[i].lsn_last > b[i].lsn_first && st_payload(seed, b[i].lsn_first, LEN_MAX, tmp) > 0) {
            victim = &b[i];
        }
    }
    TQ_CHECK(victim != NULL);
    struct tq_log_options o = st_options(dir, NULL);
    struct tq_log *log;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    flip_bit(paths[0], victim->offset + 64 + 16, 3); /* first payload byte of the batch */
    struct tq_log_record r;
    static uint8_t buf[LEN_MAX];
    TQ_CHECK_ERR(tq_log_read(log, victim->lsn_first, &r, buf, sizeof(buf), &err), TQ_ERR_CORRUPT,
                 &err);
    char want[128];
    snprintf(want, sizeof(want), "offset %" PRIu64 " (lsn %" PRIu64 ")", victim->offset,
             victim->lsn_first);
    TQ_CHECK(strstr(err.msg, want) != NULL);
    TQ_CHECK(strstr(err.msg, strrchr(paths[0], '/') + 1) != NULL);
    st_check_record(log, seed, victim->lsn_first + 1, LEN_MAX); /* its neighbour is intact */
    struct tq_log_iter *it;
    TQ_CHECK_OK(tq_log_iter_open(log, victim->lsn_first, &it, &err), &err);
    TQ_CHECK_ERR(tq_log_iter_next(it, &r, &err), TQ_ERR_CORRUPT, &err);
    tq_log_iter_close(it);
    tq_log_close(log);
    st_rmtree(dir);
}

int main(void) {
    seed = tq_test_seed("test_corrupt");
    rng = seed * 7 + 1;
    test_truncate_tail();
    test_flip_tail();
    test_flip_middle();
    test_segments_removed_or_swapped();
    test_rot_after_open();
    printf("test_corrupt: ok\n");
    return 0;
}
