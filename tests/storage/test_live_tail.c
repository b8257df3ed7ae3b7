/* tests/storage/test_live_tail.c: read-only opens beside a live writer (issue #6).
 *
 * Goal: the rule of docs/log-format.md "Readers beside a live writer". A read-only open that
 * finds valid batches after a bad one stops there (the live end, one "live tail" line) only
 * if a live process holds DIR/LOCK, the hole is in the tail segment, at most
 * TQ_BATCHES_INFLIGHT_MAX - 1 valid batches follow and none of them says the missing LSN was
 * durable; otherwise it refuses with TQ_ERR_CORRUPT naming file, offset, LSN and the reason.
 * Method: a log whose last TQ_BATCHES_INFLIGHT_MAX batches were really pipelined (sealed and
 * submitted on one ring before any completed, as ticketqd does, so their lsn_durable is
 * below all of them); one of them is zeroed on disk, as if its write were still in flight.
 * The lock holder is a second descriptor of this process (tq_log_dir_lock: flock locks
 * belong to open file descriptions, so the probe of another description sees it) or a child
 * process. Invariants checked: refused without a holder (file, "offset N", "lsn N" in the
 * message); opened to the hole with one, every record before it reads back; the bound, the
 * tail-segment condition and durable evidence each refuse even with a holder; a hole at the
 * end of the segment before the tail (the writer rolled meanwhile) is the live end too; a writable
 * open (the crash case: the holder is gone) still cuts the same hole as a torn tail.
 */
#include "log_impl.h"
#include "storage_test.h"

#include <liburing.h>
#include <sys/wait.h>

static uint64_t seed;

struct pos {
    uint32_t seg_index;
    uint64_t offset, lsn_first;
    uint32_t disk_bytes;
};

/* Batch i (0-based, negative: from the end) of dir via a read-only handle's index. */
static struct pos batch_at(const char *dir, int64_t i, uint32_t *seg_count) {
    struct tq_log_options o = st_options(dir, NULL);
    o.read_only = true;
    struct tq_log *log;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    uint64_t k = i < 0 ? log->ref_count - (uint64_t)(-i) : (uint64_t)i;
    TQ_CHECK_LT(k, log->ref_count);
    const struct tq_batch_ref *r = &log->refs[k];
    struct pos p = {r->seg_index, r->offset, r->lsn_first, r->disk_bytes};
    if (seg_count != NULL) *seg_count = log->seg_count;
    tq_log_close(log);
    return p;
}

/* Appends `batches` batches of 3 records each, all sealed and submitted on one ring before any
 * completes (the writer's pipeline, batches_inflight_max = TQ_BATCHES_INFLIGHT_MAX). */
static void append_pipelined(struct tq_log *log, int batches) {
    TQ_CHECK_LE(batches, (int)TQ_BATCHES_INFLIGHT_MAX);
    struct io_uring ring;
    int rc = io_uring_queue_init(64, &ring, 0);
    if (rc < 0) {
        printf("io_uring unavailable (%s): skip\n", strerror(-rc));
        exit(TQ_TEST_SKIP);
    }
    static uint8_t buf[4096];
    struct tq_error err;
    for (int b = 0; b < batches; b++) {
        for (int r = 0; r < 3; r++) {
            uint64_t want = tq_log_next_lsn(log), lsn;
            uint32_t len = st_payload(seed, want, 2000, buf);
            TQ_CHECK_OK(tq_log_append(log, st_type(want), buf, len, &lsn, &err), &err);
        }
        TQ_CHECK_GT(tq_log_submit(log, &ring, 1700000000000000ull + (uint64_t)b), 0);
    }
    uint64_t durable_before = tq_log_durable_lsn(log);
    io_uring_submit(&ring);
    while (!tq_log_idle(log)) {
        io_uring_submit_and_wait(&ring, 1);
        struct io_uring_cqe *cqe;
        while (io_uring_peek_cqe(&ring, &cqe) == 0) {
            tq_log_complete(log, &ring, cqe);
            io_uring_cqe_seen(&ring, cqe);
        }
    }
    TQ_CHECK_GT(tq_log_durable_lsn(log), durable_before);
    io_uring_queue_exit(&ring);
}

/* A fresh log: `prefix` synced batches of single records, then `pipelined` pipelined ones. */
static void build(const char *dir, int prefix, int pipelined) {
    struct tq_log_options o = st_options(dir, NULL);
    o.batches_inflight_max = TQ_BATCHES_INFLIGHT_MAX;
    struct tq_log *log;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    st_fill(log, seed, (uint64_t)prefix + 1, 2000, 1);
    if (pipelined > 0) append_pipelined(log, pipelined);
    tq_log_close(log);
}

/* Zeroes batch p on disk: its write "still in flight". */
static void zero_batch(const char *dir, struct pos p) {
    char paths[64][512];
    int n = st_segments(dir, paths, 64);
    TQ_CHECK_LT(p.seg_index, (uint32_t)n);
    int fd = open(paths[p.seg_index], O_RDWR);
    TQ_CHECK(fd >= 0);
    static uint8_t zeros[256 * 1024];
    TQ_CHECK_LE(p.disk_bytes, sizeof(zeros));
    TQ_CHECK_EQ(pwrite(fd, zeros, p.disk_bytes, (off_t)p.offset), (ssize_t)p.disk_bytes);
    close(fd);
}

/* Opens read-only; returns the error code, with lines and rec filled. */
static enum tq_err open_ro(const char *dir, struct st_lines *lines, struct tq_log_recovery *rec,
                           struct tq_error *err) {
    struct tq_log_options o = st_options(dir, lines);
    o.read_only = true;
    struct tq_log *log = NULL;
    enum tq_err e = tq_log_open(&o, &log, rec, err);
    if (e == TQ_OK) {
        for (uint64_t lsn = 1; lsn <= rec->lsn_last; lsn++)
            st_check_record(log, seed, lsn, 2000);
        tq_log_close(log);
    }
    return e;
}

static void check_refused(enum tq_err e, const struct tq_error *err, struct pos hole,
                          const char *reason) {
    TQ_CHECK_ERR(e, TQ_ERR_CORRUPT, err);
    char want[96];
    snprintf(want, sizeof(want), "offset %" PRIu64 " (lsn %" PRIu64 ")", hole.offset,
             hole.lsn_first);
    if (strstr(err->msg, want) == NULL || strstr(err->msg, reason) == NULL)
        fprintf(stderr, "message: %s\nwanted: %s, %s\n", err->msg, want, reason);
    TQ_CHECK(strstr(err->msg, want) != NULL);
    TQ_CHECK(strstr(err->msg, reason) != NULL);
    TQ_CHECK(strstr(err->msg, ".seg") != NULL);
}

/* A hole at pipelined batch `which` (0 = the oldest of TQ_BATCHES_INFLIGHT_MAX in flight). */
static void test_hole_in_tail(int which) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "livetail");
    build(dir, 20, (int)TQ_BATCHES_INFLIGHT_MAX);
    uint32_t segs = 0;
    struct pos hole = batch_at(dir, which - (int)TQ_BATCHES_INFLIGHT_MAX, &segs);
    TQ_CHECK_UEQ(hole.seg_index, segs - 1);
    zero_batch(dir, hole);
    TQ_CHECK(!tq_log_dir_locked(dir));

    /* No live writer: damage, refused. */
    struct st_lines lines = {0};
    struct tq_log_recovery rec;
    struct tq_error err;
    check_refused(open_ro(dir, &lines, &rec, &err), &err, hole, "no live writer holds LOCK");

    /* A live writer holds DIR/LOCK (another description in this process): the live end. */
    int lock_fd = -1;
    TQ_CHECK_OK(tq_log_dir_lock(dir, "test", &lock_fd, &err), &err);
    TQ_CHECK(tq_log_dir_locked(dir));
    memset(&lines, 0, sizeof(lines));
    TQ_CHECK_OK(open_ro(dir, &lines, &rec, &err), &err);
    TQ_CHECK_UEQ(rec.lsn_last, hole.lsn_first - 1);
    TQ_CHECK_EQ(lines.count, 1);
    char want[128];
    snprintf(want, sizeof(want), "live tail: stopped at LSN %" PRIu64 ", offset %" PRIu64,
             hole.lsn_first - 1, hole.offset);
    if (strstr(lines.text, want) == NULL) fprintf(stderr, "line: %s", lines.text);
    TQ_CHECK(strstr(lines.text, want) != NULL);
    TQ_CHECK(strstr(lines.text, "batches in flight") != NULL);
    tq_log_dir_unlock(lock_fd);
    TQ_CHECK(!tq_log_dir_locked(dir)); /* the probe never keeps a lock of its own */

    /* The crash case: the writer died with the batches in flight; a writable open cuts the
     * hole and everything after it as a torn tail (unchanged by the read-only rule). */
    memset(&lines, 0, sizeof(lines));
    struct tq_log_options o = st_options(dir, &lines);
    struct tq_log *log;
    TQ_CHECK_OK(tq_log_open(&o, &log, &rec, &err), &err);
    TQ_CHECK_UEQ(rec.lsn_last, hole.lsn_first - 1);
    TQ_CHECK(strstr(lines.text, "torn tail") != NULL);
    tq_log_close(log);
    st_rmtree(dir);
}

/* The holder is another process (ticketqd in production): a child takes the lock. */
static void test_holder_child(void) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "livechild");
    build(dir, 10, (int)TQ_BATCHES_INFLIGHT_MAX);
    struct pos hole = batch_at(dir, -2, NULL);
    zero_batch(dir, hole);
    int ready[2], release[2];
    TQ_CHECK_EQ(pipe(ready), 0);
    TQ_CHECK_EQ(pipe(release), 0);
    fflush(NULL);
    pid_t pid = fork();
    TQ_CHECK(pid >= 0);
    if (pid == 0) {
        int fd = -1;
        struct tq_error e;
        if (tq_log_dir_lock(dir, "child", &fd, &e) != TQ_OK) _exit(1);
        char c = 'r';
        if (write(ready[1], &c, 1) != 1) _exit(2);
        if (read(release[0], &c, 1) < 0) _exit(3); /* until the parent is done (or exits) */
        _exit(0);
    }
    char c;
    TQ_CHECK_EQ(read(ready[0], &c, 1), 1);
    struct st_lines lines = {0};
    struct tq_log_recovery rec;
    struct tq_error err;
    TQ_CHECK_OK(open_ro(dir, &lines, &rec, &err), &err);
    TQ_CHECK_UEQ(rec.lsn_last, hole.lsn_first - 1);
    TQ_CHECK(strstr(lines.text, "live tail") != NULL);
    TQ_CHECK_EQ(write(release[1], "x", 1), 1);
    int status = 0;
    TQ_CHECK_EQ(waitpid(pid, &status, 0), pid);
    TQ_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* The holder is gone (as after kill -9: the kernel drops the flock): damage again. */
    check_refused(open_ro(dir, &lines, &rec, &err), &err, hole, "no live writer holds LOCK");
    close(ready[0]);
    close(ready[1]);
    close(release[0]);
    close(release[1]);
    st_rmtree(dir);
}

/* Deeper than the bound: TQ_BATCHES_INFLIGHT_MAX valid batches after the hole. */
static void test_too_deep(void) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "livedeep");
    build(dir, 20, 0);
    struct pos hole = batch_at(dir, -1 - (int64_t)TQ_BATCHES_INFLIGHT_MAX, NULL);
    zero_batch(dir, hole);
    int lock_fd = -1;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_dir_lock(dir, "test", &lock_fd, &err), &err);
    struct st_lines lines = {0};
    struct tq_log_recovery rec;
    check_refused(open_ro(dir, &lines, &rec, &err), &err, hole,
                  "more valid batches follow than a writer keeps in flight");
    /* One batch shallower it is within the bound, but those batches were sealed after the
     * missing one was durable (synced one by one): their lsn_durable says so. */
    tq_log_dir_unlock(lock_fd);
    st_rmtree(dir);
    st_mkdtemp(dir, sizeof(dir), "livedurable");
    build(dir, 20, 0);
    hole = batch_at(dir, -(int64_t)TQ_BATCHES_INFLIGHT_MAX, NULL);
    zero_batch(dir, hole);
    TQ_CHECK_OK(tq_log_dir_lock(dir, "test", &lock_fd, &err), &err);
    check_refused(open_ro(dir, &lines, &rec, &err), &err, hole,
                  "a later batch shows it was durable");
    tq_log_dir_unlock(lock_fd);
    st_rmtree(dir);
}

/* A hole in an older segment (two or more segments before the tail) is damage. */
static void test_not_in_tail(void) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "liveold");
    build(dir, 600, 0);
    uint32_t segs = 0;
    struct pos last = batch_at(dir, -1, &segs);
    TQ_CHECK_GE(segs, 3);
    (void)last;
    struct pos hole = batch_at(dir, 2, NULL); /* the third batch: in segment 0 */
    TQ_CHECK_UEQ(hole.seg_index, 0);
    zero_batch(dir, hole);
    int lock_fd = -1;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_dir_lock(dir, "test", &lock_fd, &err), &err);
    struct st_lines lines = {0};
    struct tq_log_recovery rec;
    check_refused(open_ro(dir, &lines, &rec, &err), &err, hole, "it is not in the tail segment");
    tq_log_dir_unlock(lock_fd);
    st_rmtree(dir);
}

/* The writer rolled to a new segment while the old one's last batch was in flight: the hole
 * is the end of the segment before the tail, and the tail's batches follow it. */
static void test_hole_across_roll(void) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "liveroll");
    bool found = false;
    for (int prefix = 40; prefix < 140 && !found; prefix++) {
        build(dir, prefix, (int)TQ_BATCHES_INFLIGHT_MAX);
        uint32_t segs = 0;
        for (int k = -(int)TQ_BATCHES_INFLIGHT_MAX; k <= -2 && !found; k++) {
            struct pos a = batch_at(dir, k, &segs), b = batch_at(dir, k + 1, NULL);
            if (a.seg_index + 1 != b.seg_index || b.seg_index + 1 != segs) continue;
            found = true;
            zero_batch(dir, a);
            struct st_lines lines = {0};
            struct tq_log_recovery rec;
            struct tq_error err;
            TQ_CHECK_ERR(open_ro(dir, &lines, &rec, &err), TQ_ERR_CORRUPT, &err);
            TQ_CHECK(strstr(err.msg, "no live writer holds LOCK") != NULL);
            char lsn_text[64];
            snprintf(lsn_text, sizeof(lsn_text), "(lsn %" PRIu64 ")", a.lsn_first);
            TQ_CHECK(strstr(err.msg, lsn_text) != NULL);
            int lock_fd = -1;
            TQ_CHECK_OK(tq_log_dir_lock(dir, "test", &lock_fd, &err), &err);
            memset(&lines, 0, sizeof(lines));
            TQ_CHECK_OK(open_ro(dir, &lines, &rec, &err), &err);
            TQ_CHECK_UEQ(rec.lsn_last, a.lsn_first - 1);
            TQ_CHECK(strstr(lines.text, "live tail: stopped at LSN") != NULL);
            tq_log_dir_unlock(lock_fd);
        }
        st_rmtree(dir);
        st_mkdtemp(dir, sizeof(dir), "liveroll");
    }
    TQ_CHECK(found); /* some prefix length puts the pipelined batches across a roll */
    st_rmtree(dir);
}

int main(void) {
    seed = tq_test_seed("test_live_tail");
    for (int which = 0; which < (int)TQ_BATCHES_INFLIGHT_MAX - 1; which++)
        test_hole_in_tail(which);
    test_holder_child();
    test_too_deep();
    test_not_in_tail();
    test_hole_across_roll();
    printf("test_live_tail: ok\n");
    return 0;
}
