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
 * INTERVAL/NONE modes with many unsynced batches.
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

static struct tq_log_options sweep_options(const char *dir, struct tq_io_faults *faults) {
    struct tq_log_options o = st_options(dir, NULL);
    o.batch_bytes_max = 16 * 1024;
    o.record_bytes_max = 4 * 1024;
    o.segment_bytes_max = 32 * 1024;
    o.faults = faults;
    return o;
}

/* The workload. Returns 0 when done, 3 on a clean rejection; reports acked LSNs to fd. */
static int workload(const char *dir, struct tq_io_faults *faults, int fd) {
    struct tq_log_options o = sweep_options(dir, faults);
    struct tq_log *log;
    struct tq_error err;
    if (tq_log_open(&o, &log, NULL, &err) != TQ_OK) return 3;
    static uint8_t buf[LEN_MAX];
    uint64_t rng = seed;
    for (uint64_t i = 0; i < RECORDS; i++) {
        uint64_t want = tq_log_next_lsn(log);
        uint32_t len = st_payload(seed, want, LEN_MAX, buf);
        uint64_t lsn;
        enum tq_err e = tq_log_append(log, st_type(want), buf, len, &lsn, &err);
        if (e == TQ_ERR_RESOURCE_EXHAUSTED) {
            if (tq_log_sync(log, &err) != TQ_OK) return 3;
            e = tq_log_append(log, st_type(want), buf, len, &lsn, &err);
        }
        if (e != TQ_OK) {
            TQ_CHECK(e == TQ_ERR_NO_SPACE); /* the only clean rejection a fault can cause */
            tq_log_close(log);
            return 3;
        }
        if (tq_test_rand_below(&rng, 4) == 0) {
            if (tq_log_sync(log, &err) != TQ_OK) return 3;
            uint64_t acked = tq_log_acked_lsn(log);
            if (fd >= 0 && write(fd, &acked, sizeof(acked)) != (ssize_t)sizeof(acked)) return 4;
        }
    }
    if (tq_log_sync(log, &err) != TQ_OK) return 3;
    uint64_t acked = tq_log_acked_lsn(log);
    if (fd >= 0 && write(fd, &acked, sizeof(acked)) != (ssize_t)sizeof(acked)) return 4;
    tq_log_close(log);
    return 0;
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
        if (strstr(text, "fatal:") == NULL || strstr(text, "lsn") == NULL) fprintf(stderr, "%s\n", text);
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
    for (uint64_t lsn = 1; lsn <= rec.lsn_last; lsn++) st_check_record(log, seed, lsn, LEN_MAX);
    tq_log_close(log);
}

static void sweep(void) {
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
    for (int k = 0; k < 3; k++) {
        enum fault_kind kind = (enum fault_kind)k;
        uint64_t limit = kind == FAIL_OP ? counter.ops : kind == SHORT_WRITE ? counter.writes
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
    printf("sweep outcomes: done %d, fail-stop %d, rejected %d\n", outcomes[0], outcomes[1], outcomes[3]);
    TQ_CHECK_GT(outcomes[1], 0);
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
        struct tq_log *log;
        struct tq_error err;
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
        struct io_uring ring;
        bool inflight = false;
        if (mode == 0) {
            /* one more batch, in flight when the power goes */
            for (int i = 0; i < 5; i++) {
                uint64_t want = tq_log_next_lsn(log), lsn;
                uint32_t len = st_payload(seed, want, LEN_MAX, buf);
                if (tq_log_append(log, st_type(want), buf, len, &lsn, &err) != TQ_OK) break;
            }
            TQ_CHECK_EQ(io_uring_queue_init(8, &ring, 0), 0);
            tq_log_submit(log, &ring, 1);
            io_uring_submit(&ring);
            inflight = true;
        }
        uint64_t written = tq_log_next_lsn(log) - 1;
        if (inflight) io_uring_queue_exit(&ring); /* the power goes: CQEs never reaped */
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
        for (uint64_t lsn = 1; lsn <= rec.lsn_last; lsn++) st_check_record(log, seed, lsn, LEN_MAX);
        /* and the log goes on */
        st_fill(log, seed, rec.lsn_last + 10, LEN_MAX, 3);
        tq_log_close(log);
        st_rmtree(dir);
    }
    printf("power cuts: 60 rounds, %d ranges damaged, %d torn tails cut\n", damaged_total, cut_count);
    TQ_CHECK_GT(damaged_total, 0);
}

int main(void) {
    seed = tq_test_seed("test_fault_sweep");
    sweep();
    power_cuts();
    printf("test_fault_sweep: ok\n");
    return 0;
}
