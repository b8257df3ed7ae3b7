/* tests/crash/test_crash_kill.c: kill -9 a writer at random moments, reopen, check.
 *
 * Goal: an acknowledged record is never lost or altered, whatever instant the writer dies at,
 * and recovery never yields garbage after the acknowledged end.
 * Method: per cycle, a forked child opens the log (ALWAYS mode, small segments so they roll,
 * spare zero-fill on) and drives it through the event-loop API on its own io_uring with 1..24
 * logical appenders (one record of random size outstanding each), 1..4 batches in flight
 * (submitted at random points between appends), O_DIRECT or page-cache writes. Payloads are
 * a function of (cycle seed, LSN). The child writes its cycle seed, then every new acknowledged
 * high-water LSN, to a pipe. The parent SIGKILLs it after a random delay, drains the pipe, reopens
 * the log and checks: recovered end >= every LSN the child reported; every record of this cycle
 * (and a sample of older ones) is byte-identical to what its cycle wrote; records past the
 * acknowledged end are whole records of the killed cycle; after that recovery a read-only open
 * finds a clean end (no byte of garbage left after the last batch, stale batches of a recycled
 * segment file aside). Half the cycles compress sealed segments while appending, so spares are
 * recycled segment files (docs/log-format.md, "Recycled segments"). >= 200 cycles
 * (TQ_CRASH_CYCLES), a fresh directory every 25 cycles to bound reopen time. Seeded: TQ_SEED
 * reproduces the choices (not the kernel's timing).
 */
#include "storage_test.h"

#include <errno.h>
#include <liburing.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#define LEN_MAX 3000u
#define LSN_CAP (4u << 20)

static uint64_t *seed_of; /* seed_of[lsn]: cycle seed of the record with this LSN */

static void write_all(int fd, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) _exit(4);
        b += w;
        n -= (size_t)w;
    }
}

static uint64_t wall_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

TQ_NORETURN static void child_run(const char *dir, uint64_t cycle_seed, int fd) {
    struct tq_log_options o = st_options(dir, NULL);
    o.segment_bytes_max = 512 * 1024;
    o.spare_no_prezero = (cycle_seed & 1) != 0;
    o.ring_tag = 0x21;
    o.batches_inflight_max = 1 + (uint32_t)((cycle_seed >> 1) % TQ_BATCHES_INFLIGHT_MAX);
    o.buffered_writes = ((cycle_seed >> 3) & 1) != 0;
    /* half the cycles: small batches pipeline (1), or wait for a batch in flight (default) */
    o.pipeline_bytes_min = ((cycle_seed >> 4) & 1) != 0 ? 1u : 0u;
    /* half the cycles recycle the files of compressed segments (the loop below compresses) */
    o.recycle_segments_max = ((cycle_seed >> 5) & 1) != 0 ? 4u : 0u;
    /* half the cycles make batches durable with RWF_DSYNC writes instead of write + fdatasync */
    if (((cycle_seed >> 6) & 1) != 0) o.dsync_writes = true;
    struct tq_log *log;
    struct tq_error err;
    if (tq_log_open(&o, &log, NULL, &err) != TQ_OK) {
        fprintf(stderr, "child: open: %s\n", err.msg);
        _exit(5);
    }
    struct io_uring ring;
    if (io_uring_queue_init(64, &ring, 0) < 0) _exit(6);
    write_all(fd, &cycle_seed, sizeof(cycle_seed));
    uint64_t rng = cycle_seed;
    int appenders = 1 + (int)tq_test_rand_below(&rng, 24);
    uint64_t waiting[24] = {0};
    uint64_t reported = tq_log_acked_lsn(log);
    static uint8_t buf[LEN_MAX];
    /* half the cycles compress sealed segments now and then: their files are recycled into
     * spares, so the kill also lands in recycled segments, mid-compression and mid-reuse */
    bool recycle = ((cycle_seed >> 5) & 1) != 0;
    for (;;) {
        if (recycle && tq_test_rand_below(&rng, 32) == 0) {
            uint64_t lsns[64];
            size_t n = tq_log_segments(log, lsns, 64);
            for (size_t i = 0; i + 1 < n && i < 64; i++) {
                enum tq_err e = tq_log_compress_segment(log, lsns[i], NULL, &err);
                if (e == TQ_OK) break;
                if (e != TQ_ERR_FAILED_PRECONDITION) _exit(8);
            }
        }
        for (int a = 0; a < appenders; a++) {
            if (waiting[a] != 0) continue;
            uint64_t lsn_next = tq_log_next_lsn(log);
            uint32_t len = st_payload(cycle_seed, lsn_next, LEN_MAX, buf);
            if (!tq_log_can_append(log, len)) break;
            if (tq_log_append(log, st_type(lsn_next), buf, len, &waiting[a], &err) != TQ_OK)
                _exit(7);
            /* sometimes send what is staged now: several batches in flight at once */
            if (tq_test_rand_below(&rng, 4) == 0) tq_log_submit(log, &ring, wall_us());
        }
        tq_log_submit(log, &ring, wall_us());
        io_uring_submit_and_wait(&ring, 1);
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            tq_log_complete(log, &ring, cqe);
            seen++;
        }
        io_uring_cq_advance(&ring, seen);
        uint64_t acked = tq_log_acked_lsn(log);
        if (acked > reported) {
            write_all(fd, &acked, sizeof(acked));
            reported = acked;
        }
        for (int a = 0; a < appenders; a++) {
            if (waiting[a] != 0 && waiting[a] <= acked) waiting[a] = 0;
        }
    }
}

static void check_record(struct tq_log *log, uint64_t lsn) {
    TQ_CHECK_LT(lsn, LSN_CAP);
    TQ_CHECK(seed_of[lsn] != 0);
    st_check_record(log, seed_of[lsn], lsn, LEN_MAX);
}

int main(void) {
    uint64_t seed = tq_test_seed("test_crash_kill");
    uint64_t rng = seed;
    const char *env = getenv("TQ_CRASH_CYCLES");
    int cycles = env != NULL ? atoi(env) : 200;
    seed_of = calloc(LSN_CAP, sizeof(*seed_of));
    TQ_CHECK(seed_of != NULL);
    char dir[256] = "";
    uint64_t acked_max = 0, verified_end = 0;
    uint64_t total_acked = 0, total_cut = 0;
    int killed_before_ack = 0;
    for (int cycle = 0; cycle < cycles; cycle++) {
        if (cycle % 25 == 0) {
            if (dir[0] != '\0') st_rmtree(dir);
            st_mkdtemp(dir, sizeof(dir), "crash");
            memset(seed_of, 0, LSN_CAP * sizeof(*seed_of));
            acked_max = 0;
            verified_end = 0;
        }
        uint64_t cycle_seed = tq_test_rand(&rng) | 2;
        int fds[2];
        TQ_CHECK_EQ(pipe(fds), 0);
        pid_t pid = fork();
        TQ_CHECK(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child_run(dir, cycle_seed, fds[1]);
        }
        close(fds[1]);
        /* Usually let it open the log first, then run 0.2..30 ms; one cycle in 8 is killed
         * at a random instant, possibly during open/recovery. */
        uint64_t first = 0;
        size_t n_read = 0;
        if (tq_test_rand_below(&rng, 8) == 0) {
            usleep((useconds_t)tq_test_rand_below(&rng, 3000));
        } else {
            if (read(fds[0], &first, sizeof(first)) == (ssize_t)sizeof(first)) n_read = 1;
            usleep((useconds_t)(200 + tq_test_rand_below(&rng, 30000)));
        }
        kill(pid, SIGKILL);
        int status;
        TQ_CHECK_EQ(waitpid(pid, &status, 0), pid);
        if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
            fprintf(stderr, "cycle %d: child exited by itself (status 0x%x)\n", cycle, status);
            TQ_CHECK(0);
        }
        /* Drain: the seed, then acknowledged high-water marks. */
        uint64_t v, got_seed = first, cycle_acked = 0;
        ssize_t r;
        while ((r = read(fds[0], &v, sizeof(v))) == (ssize_t)sizeof(v)) {
            if (n_read++ == 0) {
                got_seed = v;
            } else {
                TQ_CHECK_GT(v, cycle_acked);
                cycle_acked = v;
            }
        }
        close(fds[0]);
        if (n_read > 0) TQ_CHECK_UEQ(got_seed, cycle_seed);
        if (cycle_acked == 0) killed_before_ack++;

        struct st_lines lines = {0};
        struct tq_log_options o = st_options(dir, &lines);
        o.segment_bytes_max = 512 * 1024;
        struct tq_log *log;
        struct tq_log_recovery rec;
        struct tq_error err;
        TQ_CHECK_OK(tq_log_open(&o, &log, &rec, &err), &err);
        if (cycle_acked > acked_max) acked_max = cycle_acked;
        TQ_CHECK_GE(rec.lsn_last, acked_max);
        TQ_CHECK_LT(rec.lsn_last, LSN_CAP);
        if (rec.torn_bytes_cut > 0) total_cut++;
        /* Everything past what earlier cycles left was written by this cycle. */
        for (uint64_t lsn = verified_end + 1; lsn <= rec.lsn_last; lsn++)
            seed_of[lsn] = cycle_seed;
        uint64_t from = verified_end > 20 ? verified_end - 20 : 1;
        for (uint64_t lsn = from; lsn <= rec.lsn_last; lsn++)
            check_record(log, lsn);
        for (int k = 0; k < 20 && rec.lsn_last > 0; k++) {
            check_record(log, 1 + tq_test_rand_below(&rng, rec.lsn_last));
        }
        /* Nothing past the end: the next LSN continues right after it. */
        TQ_CHECK_UEQ(tq_log_next_lsn(log), rec.lsn_last + 1);
        total_acked += cycle_acked > verified_end ? cycle_acked - verified_end : 0;
        verified_end = rec.lsn_last;
        acked_max = rec.lsn_last; /* recovered records are part of the log from now on */
        tq_log_close(log);
        /* After that recovery nothing is left past the end: a read-only open finds a clean
         * end (no torn bytes, not one recovery line) at the same LSN. */
        struct st_lines again = {0};
        struct tq_log_options ro = st_options(dir, &again);
        ro.read_only = true;
        struct tq_log_recovery rec2;
        TQ_CHECK_OK(tq_log_open(&ro, &log, &rec2, &err), &err);
        if (again.count != 0) fprintf(stderr, "unexpected: %s", again.text);
        TQ_CHECK_EQ(again.count, 0);
        TQ_CHECK_UEQ(rec2.lsn_last, rec.lsn_last);
        tq_log_close(log);
    }
    printf("test_crash_kill: %d cycles, %" PRIu64 " records acknowledged, %" PRIu64
           " torn tails cut, %d kills before the first ack\n",
           cycles, total_acked, total_cut, killed_before_ack);
    st_rmtree(dir);
    free(seed_of);
    return 0;
}
