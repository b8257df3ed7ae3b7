/* tests/crash/test_fault_sweep.c: injected I/O faults and simulated power cuts.
 *
 * Goal: whatever single I/O operation fails, the writer either fail-stops (tq_fatal: exit
 * status 1, one "fatal" line) or rejects cleanly (an error code, exit status 3), never
 * acknowledges what is not durable, and a reopen recovers every acknowledged record; a short
 * write is finished and synced transparently; a power cut that drops, keeps or tears the
 * unsynced writes never loses a durable record and never yields garbage.
 * Method: a small workload (records of random size, small segments so several roll, a sync
 * every few records) runs once fault-free to count its operations, then once per N in a forked
 * child with "fail the Nth operation", "the Nth write is short" and "the Nth fdatasync returns
 * EIO"; the child reports acknowledged LSNs over a pipe. Power cuts run in-process through
 * tq_log_abandon + tq_io_faults_power_cut, in ALWAYS mode with a batch still in flight and in
 * INTERVAL/NONE modes with many unsynced batches; half of them in recycled segment files
 * (stale batches of an earlier life behind the torn ones).
 */
#include "storage_test.h"

#include <errno.h>
#include <liburing.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define LSAN_DISABLE() __lsan_disable() /* a fail-stop child exits with its log still open */
#else
#define LSAN_DISABLE() ((void)0)
#endif
#include <sys/wait.h>

#define LEN_MAX 3000u
#define RECORDS 120u

static uint64_t seed;
static bool sweep_dsync; /* the second sweep: batches made durable by RWF_DSYNC writes */

static struct tq_log_options sweep_options(const char *dir, struct tq_io_faults *faults) {
    struct tq_log_options o = st_options(dir, NULL);
    o.batch_bytes_max = 16 * 1024;
    o.record_bytes_max = 4 * 1024;
    o.segment_bytes_max = 32 * 1024;
    o.faults = faults;
    o.batches_inflight_max = TQ_BATCHES_INFLIGHT_MAX; /* up to 4 batches in flight */
    if (sweep_dsync) o.dsync_writes = true;
    return o;
}

/* Reaps every CQE of the log on ring (blocking), reporting the acknowledged LSN to fd whenever
 * it grows. Returns 0, or 4 if the pipe broke. */
static int drain_report(struct tq_log *log, struct io_uring *ring, int fd, uint64_t *acked) {
    io_uring_submit(ring);
    while (!tq_log_idle(log)) {
        struct io_uring_cqe *cqe;
        int rc = io_uring_wait_cqe(ring, &cqe);
        if (rc == -EINTR) continue;
        TQ_CHECK_EQ(rc, 0);
        tq_log_complete(log, ring, cqe);
        io_uring_cqe_seen(ring, cqe);
        io_uring_submit(ring); /* a short write's rest */
        uint64_t now = tq_log_acked_lsn(log);
        if (now > *acked) {
            *acked = now;
            if (fd >= 0 && write(fd, acked, sizeof(*acked)) != (ssize_t)sizeof(*acked)) return 4;
        }
    }
    return 0;
}

/* The workload, through the event-loop API on its own ring so that several batches are in
 * flight at once: groups of 1-3 batches of 1-4 records are submitted together, then every CQE
 * is reaped (deterministic: the number of operations does not depend on completion order).
 * Returns 0 when done, 3 on a clean rejection; reports acked LSNs to fd as they grow. */
static int workload(const char *dir, struct tq_io_faults *faults, int fd) {
    struct tq_log_options o = sweep_options(dir, faults);
    struct tq_log *log;
    struct tq_error err;
    if (tq_log_open(&o, &log, NULL, &err) != TQ_OK) return 3;
    struct io_uring ring;
    TQ_CHECK_EQ(io_uring_queue_init(32, &ring, 0), 0);
    static uint8_t buf[LEN_MAX];
    uint64_t rng = seed, acked = 0, done = 0, stamp = 1;
    int rc = 0;
    while (done < RECORDS && rc == 0) {
        uint64_t batches = 1 + tq_test_rand_below(&rng, 3);
        for (uint64_t b = 0; b < batches && done < RECORDS; b++) {
            uint64_t records = 1 + tq_test_rand_below(&rng, 4);
            for (uint64_t r = 0; r < records && done < RECORDS; r++) {
                uint64_t want = tq_log_next_lsn(log), lsn;
                uint32_t len = st_payload(seed, want, LEN_MAX, buf);
                enum tq_err e = tq_log_append(log, st_type(want), buf, len, &lsn, &err);
                if (e == TQ_ERR_RESOURCE_EXHAUSTED) {
                    /* batch full: send it (waiting for the batches in flight first) */
                    if ((rc = drain_report(log, &ring, fd, &acked)) != 0) break;
                    tq_log_submit(log, &ring, stamp++);
                    e = tq_log_append(log, st_type(want), buf, len, &lsn, &err);
                }
                if (e != TQ_OK) {
                    TQ_CHECK(e == TQ_ERR_NO_SPACE); /* the only clean rejection a fault can cause */
                    rc = 3;
                    break;
                }
                TQ_CHECK_UEQ(lsn, want);
                done++;
            }
            if (rc == 0) tq_log_submit(log, &ring, stamp++);
        }
        if (rc == 0) rc = drain_report(log, &ring, fd, &acked);
    }
    if (rc == 0) {
        tq_log_submit(log, &ring, stamp++); /* whatever is still staged */
        rc = drain_report(log, &ring, fd, &acked);
    }
    if (rc == 0) TQ_CHECK_UEQ(tq_log_acked_lsn(log), RECORDS);
    if (rc == 3) (void)drain_report(log, &ring, -1, &acked);
    if (tq_log_idle(log)) tq_log_close(log);
    io_uring_queue_exit(&ring);
    return rc;
}

enum fault_kind { FAIL_OP, SHORT_WRITE, FSYNC_EIO };

/* Runs the workload in a child with one fault; returns the exit status; *acked_out gets the
 * highest acknowledged LSN the child reported. */
static int run_child(const char *dir, enum fault_kind kind, uint64_t n, uint64_t *acked_out) {
    int fds[2];
    TQ_CHECK_EQ(pipe(fds), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    TQ_CHECK(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        LSAN_DISABLE();
        char err_path[300];
        snprintf(err_path, sizeof(err_path), "%s/stderr.txt", dir);
        int err_fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(err_fd, 2); /* the expected "fatal:" lines are checked by the parent, not shown */
        struct tq_io_faults faults;
        memset(&faults, 0, sizeof(faults));
        if (kind == FAIL_OP) faults.fail_op_at = n;
        if (kind == SHORT_WRITE) faults.short_write_at = n;
        if (kind == FSYNC_EIO) faults.fsync_eio_at = n;
        int rc = workload(dir, &faults, fds[1]);
        _exit(rc == 0 && faults.injected == 0 && kind != SHORT_WRITE ? 9 : rc);
    }
    close(fds[1]);
    uint64_t v, acked = 0;
    while (read(fds[0], &v, sizeof(v)) == (ssize_t)sizeof(v)) {
        TQ_CHECK_GE(v, acked);
        acked = v;
    }
    close(fds[0]);
    int status;
    TQ_CHECK_EQ(waitpid(pid, &status, 0), pid);
    TQ_CHECK(WIFEXITED(status)); /* never a crash, an abort or a sanitizer report */
    *acked_out = acked;
    if (WEXITSTATUS(status) == 1) {
        /* fail-stop: one line naming the operation, the file and the LSN */
        char err_path[300], text[2048] = "";
        snprintf(err_path, sizeof(err_path), "%s/stderr.txt", dir);
        FILE *f = fopen(err_path, "r");
        TQ_CHECK(f != NULL);
        size_t got = fread(text, 1, sizeof(text) - 1, f);
        text[got] = '\0';
        fclose(f);
        if (strstr(text, "fatal:") == NULL || strstr(text, "lsn") == NULL)
            fprintf(stderr, "%s\n", text);
        TQ_CHECK(strstr(text, "ticketq: fatal:") != NULL);
        TQ_CHECK(strstr(text, "lsn") != NULL);
        TQ_CHECK(strstr(text, "Input/output error") != NULL);
    }
    return WEXITSTATUS(status);
}

static void verify_reopen(const char *dir, uint64_t acked) {
    struct tq_log_options o = sweep_options(dir, NULL);
    struct tq_log *log;
    struct tq_log_recovery rec;
    struct tq_error err;
    o.log_line = st_line;
    struct st_lines lines = {0};
    o.log_line_ctx = &lines;
    TQ_CHECK_OK(tq_log_open(&o, &log, &rec, &err), &err);
    TQ_CHECK_GE(rec.lsn_last, acked);
    /* every record present, acknowledged or not, is whole and the workload's */
    for (uint64_t lsn = 1; lsn <= rec.lsn_last; lsn++)
        st_check_record(log, seed, lsn, LEN_MAX);
    tq_log_close(log);
}

/* Fails the Nth operation of each fault kind from first on, for every N of the workload. */
static void sweep(enum fault_kind first) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "sweep0");
    struct tq_io_faults counter;
    memset(&counter, 0, sizeof(counter));
    TQ_CHECK_EQ(workload(dir, &counter, -1), 0);
    verify_reopen(dir, RECORDS);
    st_rmtree(dir);
    printf("workload: %" PRIu64 " ops (%" PRIu64 " writes, %" PRIu64 " fsyncs)\n", counter.ops,
           counter.writes, counter.fsyncs);
    TQ_CHECK_GT(counter.writes, 5);
    int outcomes[10] = {0};
    for (int k = (int)first; k < 3; k++) {
        enum fault_kind kind = (enum fault_kind)k;
        uint64_t limit = kind == FAIL_OP       ? counter.ops
                         : kind == SHORT_WRITE ? counter.writes
                                               : counter.fsyncs;
        for (uint64_t n = 1; n <= limit; n++) {
            st_mkdtemp(dir, sizeof(dir), "sweep");
            uint64_t acked = 0;
            int rc = run_child(dir, kind, n, &acked);
            if (kind == SHORT_WRITE) {
                if (rc != 0) fprintf(stderr, "short write %" PRIu64 ": exit %d\n", n, rc);
                TQ_CHECK_EQ(rc, 0); /* a short write is finished, not an error */
                TQ_CHECK_UEQ(acked, RECORDS);
            } else {
                /* 1: fail-stop; 3: rejected; 0: absorbed (a failed spare preallocation is
                 * retried when the spare is needed) */
                if (rc != 0 && rc != 1 && rc != 3) {
                    fprintf(stderr, "kind %d n %" PRIu64 ": exit %d\n", k, n, rc);
                }
                TQ_CHECK(rc == 0 || rc == 1 || rc == 3);
                if (rc == 0) TQ_CHECK_UEQ(acked, RECORDS);
            }
            outcomes[rc]++;
            verify_reopen(dir, acked);
            st_rmtree(dir);
        }
    }
    printf("sweep%s outcomes: done %d, fail-stop %d, rejected %d\n",
           sweep_dsync ? " (dsync_writes)" : "", outcomes[0], outcomes[1], outcomes[3]);
    TQ_CHECK_GT(outcomes[1], 0);
}

/* ---- acknowledgement order with several batches in flight ---------------------------- */

struct held_cqe {
    uint64_t user_data;
    int32_t res;
};

static int cmp_held_desc(const void *a, const void *b) {
    uint64_t x = ((const struct held_cqe *)a)->user_data & 0xffffffffffull;
    uint64_t y = ((const struct held_cqe *)b)->user_data & 0xffffffffffull;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Submits batch A then batch B (both in flight), waits for all their CQEs and hands them to
 * the log newest first, so B's fdatasync completes before A's. With fail_a, A's fdatasync
 * fails with EIO. Reports tq_log_acked_lsn after every CQE to fd; *a_first gets A's first LSN.
 * Never returns with fail_a (fail-stop). */
static void order_run(const char *dir, bool fail_a, int fd, uint64_t *a_first) {
    struct tq_io_faults faults;
    memset(&faults, 0, sizeof(faults));
    struct tq_log_options o = sweep_options(dir, &faults);
    o.segment_bytes_max = 1024 * 1024; /* no roll: A and B in one segment */
    struct tq_log *log;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    if (fail_a) faults.fsync_eio_at = faults.fsyncs + 1; /* A's fdatasync is the next fsync */
    struct io_uring ring;
    TQ_CHECK_EQ(io_uring_queue_init(16, &ring, 0), 0);
    static uint8_t buf[LEN_MAX];
    unsigned sqes = 0;
    for (int b = 0; b < 2; b++) {
        for (int i = 0; i < 3; i++) {
            uint64_t want = tq_log_next_lsn(log), lsn;
            uint32_t len = st_payload(seed, want, LEN_MAX, buf);
            TQ_CHECK_OK(tq_log_append(log, st_type(want), buf, len, &lsn, &err), &err);
            if (b == 0 && i == 0) *a_first = lsn;
        }
        unsigned n = tq_log_submit(log, &ring, 1 + (uint64_t)b);
        /* write linked to fdatasync (or one RWF_DSYNC write); B goes out while A is in flight */
        TQ_CHECK_UEQ(n, st_batch_sqes(&o));
        sqes += n;
    }
    TQ_CHECK_EQ(io_uring_submit(&ring), (int)sqes);
    struct held_cqe held[8];
    for (unsigned i = 0; i < sqes; i++) {
        struct io_uring_cqe *cqe;
        TQ_CHECK_EQ(io_uring_wait_cqe(&ring, &cqe), 0);
        held[i].user_data = cqe->user_data;
        held[i].res = cqe->res;
        io_uring_cqe_seen(&ring, cqe);
    }
    qsort(held, sqes, sizeof(held[0]), cmp_held_desc);
    uint64_t acked = tq_log_acked_lsn(log);
    for (unsigned i = 0; i < sqes; i++) {
        struct io_uring_cqe cqe;
        memset(&cqe, 0, sizeof(cqe));
        cqe.user_data = held[i].user_data;
        cqe.res = held[i].res;
        tq_log_complete(log, &ring, &cqe);
        uint64_t now = tq_log_acked_lsn(log);
        TQ_CHECK_GE(now, acked);
        acked = now;
        if (fd >= 0) TQ_CHECK_EQ(write(fd, &acked, sizeof(acked)), (ssize_t)sizeof(acked));
        if (i + 1 < sqes / 2 + 1) {
            /* only B's CQEs so far (the newest half, and A's first one): nothing new is acked */
            TQ_CHECK_LT(acked, *a_first);
        }
    }
    TQ_CHECK(!fail_a);
    TQ_CHECK_UEQ(acked, tq_log_next_lsn(log) - 1);
    tq_log_close(log);
    io_uring_queue_exit(&ring);
}

static void inflight_order(void) {
    char dir[256];
    uint64_t a_first = 0;
    st_mkdtemp(dir, sizeof(dir), "order");
    order_run(dir, false, -1, &a_first);
    st_rmtree(dir);

    /* A's fdatasync fails after B's succeeded: fail-stop, B never acknowledged. */
    st_mkdtemp(dir, sizeof(dir), "order-eio");
    int fds[2];
    TQ_CHECK_EQ(pipe(fds), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    TQ_CHECK(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        LSAN_DISABLE();
        char err_path[300];
        snprintf(err_path, sizeof(err_path), "%s/stderr.txt", dir);
        int err_fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(err_fd, 2);
        order_run(dir, true, fds[1], &a_first);
        _exit(9);
    }
    close(fds[1]);
    uint64_t v, acked = 0;
    int reports = 0;
    while (read(fds[0], &v, sizeof(v)) == (ssize_t)sizeof(v)) {
        acked = v;
        reports++;
    }
    close(fds[0]);
    int status;
    TQ_CHECK_EQ(waitpid(pid, &status, 0), pid);
    TQ_CHECK(WIFEXITED(status));
    TQ_CHECK_EQ(WEXITSTATUS(status), 1); /* tq_fatal */
    /* B's CQEs (one per SQE of a batch) were consumed before A's failed */
    struct tq_log_options shape = sweep_options(dir, NULL);
    TQ_CHECK_GE(reports, (int)st_batch_sqes(&shape));
    TQ_CHECK_UEQ(acked, 0); /* and nothing, B least of all, was acknowledged */
    st_rmtree(dir);
    printf(
        "in-flight order: B's sync before A's acks nothing; A's EIO fail-stops with B unacked\n");
}

/* Power cut with unsynced data: ALWAYS mode with one batch in flight, or INTERVAL/NONE. */
static void power_cuts(void) {
    uint64_t rng = seed ^ 0xabcdef;
    int cut_count = 0, damaged_total = 0;
    for (int round = 0; round < 60; round++) {
        char dir[256];
        st_mkdtemp(dir, sizeof(dir), "power");
        struct tq_io_faults faults;
        memset(&faults, 0, sizeof(faults));
        faults.track_unsynced = true;
        struct tq_log_options o = sweep_options(dir, &faults);
        int mode = round % 3;
        o.fsync_mode = mode == 0 ? TQ_FSYNC_ALWAYS : mode == 1 ? TQ_FSYNC_INTERVAL : TQ_FSYNC_NONE;
        o.fsync_interval_ms = 1000000; /* never due by itself: we decide when it syncs */
        /* every other triple of rounds writes into recycled segment files: a first life of a
         * few segments is compressed, its files become the spares, and the power cut tears
         * batches with stale batches of that first life behind them */
        bool recycle = (round / 3) % 2 == 1;
        if (recycle) o.recycle_segments_max = 8;
        struct tq_log *log;
        struct tq_error err;
        if (recycle) {
            /* the first life, durable (ALWAYS mode, no faults), left in the pool at close */
            struct tq_log_options first = sweep_options(dir, NULL);
            first.recycle_segments_max = 8;
            TQ_CHECK_OK(tq_log_open(&first, &log, NULL, &err), &err);
            uint64_t lsns[64];
            while (tq_log_segments(log, lsns, 64) < 6)
                st_fill(log, seed, tq_log_next_lsn(log) + 10, LEN_MAX, 4);
            size_t k = tq_log_segments(log, lsns, 64);
            for (size_t i = 0; i + 1 < k; i++)
                TQ_CHECK_OK(tq_log_compress_segment(log, lsns[i], NULL, &err), &err);
            tq_log_close(log);
        }
        TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
        static uint8_t buf[LEN_MAX];
        uint64_t n = 20 + tq_test_rand_below(&rng, 100);
        for (uint64_t i = 0; i < n; i++) {
            uint64_t want = tq_log_next_lsn(log), lsn;
            uint32_t len = st_payload(seed, want, LEN_MAX, buf);
            enum tq_err e = tq_log_append(log, st_type(want), buf, len, &lsn, &err);
            if (e == TQ_ERR_RESOURCE_EXHAUSTED) {
                TQ_CHECK_OK(tq_log_sync(log, &err), &err);
                e = tq_log_append(log, st_type(want), buf, len, &lsn, &err);
            }
            TQ_CHECK_OK(e, &err);
            if (tq_test_rand_below(&rng, 5) == 0) TQ_CHECK_OK(tq_log_sync(log, &err), &err);
        }
        TQ_CHECK_OK(tq_log_sync(log, &err), &err);
        if (mode == 1 && tq_test_rand_below(&rng, 2) == 0) {
            /* an interval sync happens halfway */
            struct io_uring ring;
            TQ_CHECK_EQ(io_uring_queue_init(8, &ring, 0), 0);
            tq_log_submit(log, &ring, UINT64_MAX / 2);
            io_uring_submit(&ring);
            while (!tq_log_idle(log)) {
                struct io_uring_cqe *cqe;
                TQ_CHECK_EQ(io_uring_wait_cqe(&ring, &cqe), 0);
                tq_log_complete(log, &ring, cqe);
                io_uring_cqe_seen(&ring, cqe);
            }
            io_uring_queue_exit(&ring);
            for (int i = 0; i < 10; i++) {
                uint64_t want = tq_log_next_lsn(log), lsn;
                uint32_t len = st_payload(seed, want, LEN_MAX, buf);
                if (tq_log_append(log, st_type(want), buf, len, &lsn, &err) != TQ_OK) break;
            }
            TQ_CHECK_OK(tq_log_sync(log, &err), &err);
        }
        uint64_t durable = tq_log_durable_lsn(log);
        if (mode == 0) {
            /* 1-4 more batches in flight when the power goes; a random number of their CQEs
             * reach the log first (the rest complete in the kernel, unseen by the log) */
            struct io_uring ring;
            TQ_CHECK_EQ(io_uring_queue_init(32, &ring, 0), 0);
            uint64_t batches = 1 + tq_test_rand_below(&rng, TQ_BATCHES_INFLIGHT_MAX);
            unsigned sqes = 0;
            for (uint64_t b = 0; b < batches; b++) {
                for (int i = 0; i < 3; i++) {
                    uint64_t want = tq_log_next_lsn(log), lsn;
                    uint32_t len = st_payload(seed, want, LEN_MAX, buf);
                    if (tq_log_append(log, st_type(want), buf, len, &lsn, &err) != TQ_OK) break;
                }
                sqes += tq_log_submit(log, &ring, 1 + b);
            }
            TQ_CHECK_EQ(io_uring_submit(&ring), (int)sqes);
            uint64_t feed = tq_test_rand_below(&rng, sqes + 1);
            unsigned reaped = 0;
            for (uint64_t i = 0; i < feed && reaped < sqes; i++) {
                struct io_uring_cqe *cqe;
                TQ_CHECK_EQ(io_uring_wait_cqe(&ring, &cqe), 0);
                tq_log_complete(log, &ring, cqe);
                io_uring_cqe_seen(&ring, cqe);
                reaped++;
                sqes += (unsigned)io_uring_submit(&ring); /* a kick may start a staged batch */
            }
            durable = tq_log_durable_lsn(log);
            TQ_CHECK_LE(durable, tq_log_acked_lsn(log));
            /* The process dies: wait until the kernel finished what was in flight (a write
             * still landing after the simulated power cut would race its restore), unseen. */
            for (; reaped < sqes; reaped++) {
                struct io_uring_cqe *cqe;
                TQ_CHECK_EQ(io_uring_wait_cqe(&ring, &cqe), 0);
                io_uring_cqe_seen(&ring, cqe);
            }
            io_uring_queue_exit(&ring);
        }
        uint64_t written = tq_log_next_lsn(log) - 1;
        tq_log_abandon(log);
        int damaged = (int)tq_io_faults_power_cut(&faults, TQ_POWER_CUT_RANDOM, tq_test_rand(&rng));
        damaged_total += damaged;
        struct st_lines lines = {0};
        o = sweep_options(dir, NULL);
        o.log_line = st_line;
        o.log_line_ctx = &lines;
        struct tq_log_recovery rec;
        TQ_CHECK_OK(tq_log_open(&o, &log, &rec, &err), &err);
        TQ_CHECK_GE(rec.lsn_last, durable);
        TQ_CHECK_LE(rec.lsn_last, written);
        if (rec.torn_bytes_cut > 0) cut_count++;
        for (uint64_t lsn = 1; lsn <= rec.lsn_last; lsn++)
            st_check_record(log, seed, lsn, LEN_MAX);
        /* and the log goes on */
        st_fill(log, seed, rec.lsn_last + 10, LEN_MAX, 3);
        tq_log_close(log);
        st_rmtree(dir);
    }
    printf("power cuts: 60 rounds, %d ranges damaged, %d torn tails cut\n", damaged_total,
           cut_count);
    TQ_CHECK_GT(damaged_total, 0);
}

int main(void) {
    seed = tq_test_seed("test_fault_sweep");
    inflight_order();
    sweep(FAIL_OP);
    power_cuts();
    /* dsync_writes: the write is also the sync (the seam counts it as both), so a failed sync is
     * a failed write and a short write's rest carries its own sync. The kinds that differ from
     * the sweep above; the whole test runs with it on under TQ_TEST_DSYNC=1. */
    sweep_dsync = true;
    sweep(SHORT_WRITE);
    sweep_dsync = false;
    printf("test_fault_sweep: ok\n");
    return 0;
}
