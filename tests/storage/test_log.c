/* tests/storage/test_log.c: the log's public API end to end, in one process.
 *
 * Goal: appends, group commit on a caller-owned ring, reads by LSN, iteration from every LSN,
 * segment rolling, reopen, limits, read-only handles, ENOSPC rejection, interval/none modes.
 * Method: seeded random payloads derived from (seed, lsn) (storage_test.h), small segments so
 * many roll, and checks of every record after each step. Invariants checked: LSNs are dense and
 * start at 1; a record reads back byte-identical (type, length, payload) from the live log and
 * after reopen; acked <= next-1 and durable <= acked; errors are the documented codes and leave
 * nothing staged; tq_log_bytes_submitted grows by each batch's bytes as written (4 KiB
 * multiples) and tq_log_bytes_after(lsn) is the sum of the batches after lsn's, live and after
 * reopen (where the count since open restarts at 0).
 */
#include "log_impl.h" /* TQ_LOG_OP_ZERO: which CQEs are zero-fill writes */
#include "storage_test.h"

#include <errno.h>
#include <liburing.h>

static uint64_t seed; /* payloads */
static uint64_t rng;  /* choices */

/* Closes log and opens the directory again with o: the reopened log recovered exactly the
 * records 1 .. lsn_last (its next LSN follows them). Returns the new handle; *rec_out (when
 * not NULL) gets the recovery report for further checks. */
static struct tq_log *reopen_expect(struct tq_log *log, const struct tq_log_options *o,
                                    uint64_t lsn_last, struct tq_log_recovery *rec_out) {
    tq_log_close(log);
    struct tq_log_recovery rec;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(o, &log, &rec, &err), &err);
    TQ_CHECK_UEQ(rec.lsn_last, lsn_last);
    TQ_CHECK_UEQ(tq_log_next_lsn(log), lsn_last + 1);
    if (rec_out != NULL) *rec_out = rec;
    return log;
}

/* Every step-th record of from .. to reads back as st_fill wrote it. */
static void check_records(struct tq_log *log, uint64_t from, /* first LSN checked */
                          uint64_t to,                       /* last LSN, inclusive */
                          uint64_t step,                     /* 1: every record */
                          uint32_t len_max) {                /* st_fill's len_max */
    TQ_CHECK_GT(step, 0);
    TQ_CHECK_LE(from, to);
    for (uint64_t lsn = from; lsn <= to; lsn += step)
        st_check_record(log, seed, lsn, len_max);
}

static void test_basic_and_reopen(void) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "log");
    struct tq_log_options o = st_options(dir, NULL);
    struct tq_log *log;
    struct tq_log_recovery rec;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, &rec, &err), &err);
    TQ_CHECK_UEQ(rec.lsn_last, 0);
    TQ_CHECK_UEQ(tq_log_next_lsn(log), 1);
    /* empty read / iterate */
    struct tq_log_record r;
    uint8_t buf[64];
    TQ_CHECK_ERR(tq_log_read(log, 1, &r, buf, sizeof(buf), &err), TQ_ERR_NOT_FOUND, &err);

    uint64_t n = 600 + tq_test_rand_below(&rng, 400);
    st_fill(log, seed, n + 1, 3000, 1 + (int)tq_test_rand_below(&rng, 40));
    TQ_CHECK_UEQ(tq_log_acked_lsn(log), n);
    TQ_CHECK_UEQ(tq_log_durable_lsn(log), n);
    uint64_t segs[256];
    size_t seg_count = tq_log_segments(log, segs, 256);
    TQ_CHECK_GT(seg_count, 2); /* 256 KiB segments: several rolled */
    check_records(log, 1, n, 1, 3000);
    TQ_CHECK_ERR(tq_log_read(log, n + 1, &r, buf, sizeof(buf), &err), TQ_ERR_NOT_FOUND, &err);
    TQ_CHECK_ERR(tq_log_read(log, 0, &r, buf, sizeof(buf), &err), TQ_ERR_NOT_FOUND, &err);
    /* a too-small buffer says how much is needed */
    uint64_t big = 0;
    for (uint64_t lsn = 1; lsn <= n && big == 0; lsn++) {
        uint8_t tmp[4096];
        if (st_payload(seed, lsn, 3000, tmp) > sizeof(buf)) big = lsn;
    }
    TQ_CHECK(big != 0);
    TQ_CHECK_ERR(tq_log_read(log, big, &r, buf, sizeof(buf), &err), TQ_ERR_RESOURCE_EXHAUSTED,
                 &err);
    TQ_CHECK_GT(r.len, sizeof(buf));
    TQ_CHECK(tq_log_idle(log));

    log = reopen_expect(log, &o, n, &rec);
    TQ_CHECK_UEQ(rec.lsn_first, 1);
    TQ_CHECK_UEQ(rec.records_scanned, n);
    TQ_CHECK_UEQ(rec.torn_bytes_cut, 0);
    TQ_CHECK_UEQ(rec.segments, seg_count);
    for (uint64_t lsn = 1; lsn <= n; lsn += 1 + tq_test_rand_below(&rng, 5)) {
        st_check_record(log, seed, lsn, 3000);
    }
    /* iterate from random LSNs (including 0 and past the end) */
    for (int round = 0; round < 12; round++) {
        uint64_t from = round == 0 ? 0 : tq_test_rand_below(&rng, n + 3);
        struct tq_log_iter *it;
        TQ_CHECK_OK(tq_log_iter_open(log, from, &it, &err), &err);
        uint64_t expect = from == 0 ? 1 : from;
        enum tq_err e;
        static uint8_t want[4096];
        while ((e = tq_log_iter_next(it, &r, &err)) == TQ_OK) {
            TQ_CHECK_UEQ(r.lsn, expect);
            uint32_t len = st_payload(seed, expect, 3000, want);
            TQ_CHECK_UEQ(r.len, len);
            TQ_CHECK_UEQ(r.type, st_type(expect));
            if (len > 0) TQ_CHECK_MEM_EQ(r.payload, want, len);
            TQ_CHECK_GT(r.commit_us, 0);
            expect++;
        }
        TQ_CHECK_ERR(e, TQ_ERR_NOT_FOUND, &err);
        TQ_CHECK_UEQ(expect, from > n ? from : n + 1);
        tq_log_iter_close(it);
    }
    /* continue appending after reopen: the chain and LSNs continue */
    st_fill(log, seed, n + 200, 3000, 7);
    log = reopen_expect(log, &o, n + 199, NULL);
    check_records(log, n - 5, n + 199, 1, 3000);

    /* read-only handle: reads, refuses appends; may coexist with the writer */
    struct tq_log_options ro = o;
    ro.read_only = true;
    struct tq_log *reader;
    TQ_CHECK_OK(tq_log_open(&ro, &reader, &rec, &err), &err);
    TQ_CHECK_UEQ(rec.lsn_last, n + 199);
    st_check_record(reader, seed, n + 100, 3000);
    uint64_t lsn;
    TQ_CHECK_ERR(tq_log_append(reader, 1, "x", 1, &lsn, &err), TQ_ERR_UNAVAILABLE, &err);
    TQ_CHECK(!tq_log_can_append(reader, 1));
    tq_log_close(reader);
    tq_log_close(log);
    st_rmtree(dir);
}

/* The byte counts --snapshot-growth uses (server/snapshot.c). */
static void test_bytes_count(void) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "log-bytes");
    struct tq_log_options o = st_options(dir, NULL);
    struct tq_log *log;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    TQ_CHECK_UEQ(tq_log_bytes_submitted(log), 0);
    TQ_CHECK_UEQ(tq_log_bytes_after(log, 0), 0);
    enum { BATCHES = 40 };
    uint64_t end_lsn[BATCHES], end_bytes[BATCHES]; /* after batch j: its last LSN, bytes so far */
    static uint8_t buf[16 * 1024];
    uint64_t prev = 0;
    for (int j = 0; j < BATCHES; j++) {
        /* 1..4 records of up to 12 KiB (under the 64 KiB batch): one-block batches and larger, with
         * 256 KiB segments several rolls */
        int records = 1 + (int)tq_test_rand_below(&rng, 4);
        for (int k = 0; k < records; k++) {
            uint64_t want = tq_log_next_lsn(log), lsn;
            uint32_t len = st_payload(seed, want, 12 * 1024, buf);
            TQ_CHECK_OK(tq_log_append(log, st_type(want), buf, len, &lsn, &err), &err);
        }
        TQ_CHECK_OK(tq_log_sync(log, &err), &err);
        uint64_t now = tq_log_bytes_submitted(log);
        TQ_CHECK_GT(now, prev);
        TQ_CHECK_UEQ((now - prev) % 4096, 0);
        end_lsn[j] = tq_log_next_lsn(log) - 1;
        end_bytes[j] = now;
        prev = now;
    }
    const uint64_t total = prev;
    TQ_CHECK_GT(tq_log_segments(log, (uint64_t[64]){0}, 64), 1);
    for (int pass = 0; pass < 2; pass++) {
        TQ_CHECK_UEQ(tq_log_bytes_after(log, 0), total);
        TQ_CHECK_UEQ(tq_log_bytes_after(log, end_lsn[BATCHES - 1]), 0);
        TQ_CHECK_UEQ(tq_log_bytes_after(log, end_lsn[BATCHES - 1] + 5), 0);
        for (int j = 0; j < BATCHES; j++) {
            TQ_CHECK_UEQ(tq_log_bytes_after(log, end_lsn[j]), total - end_bytes[j]);
            uint64_t first = j == 0 ? 1 : end_lsn[j - 1] + 1; /* any LSN of the batch */
            TQ_CHECK_UEQ(tq_log_bytes_after(log, first), total - end_bytes[j]);
        }
        /* reopen: the index is rebuilt from the segments; the count since open is 0 */
        tq_log_close(log);
        TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
        TQ_CHECK_UEQ(tq_log_bytes_submitted(log), 0);
    }
    uint64_t lsn;
    TQ_CHECK_OK(tq_log_append(log, 1, "x", 1, &lsn, &err), &err);
    TQ_CHECK_UEQ(tq_log_bytes_after(log, lsn), 0); /* staged, not submitted */
    TQ_CHECK_OK(tq_log_sync(log, &err), &err);
    TQ_CHECK_UEQ(tq_log_bytes_submitted(log), 4096);
    TQ_CHECK_UEQ(tq_log_bytes_after(log, end_lsn[BATCHES - 1]), 4096);
    tq_log_close(log);
    st_rmtree(dir);
}

static void test_limits(void) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "limits");
    struct tq_log_options o = st_options(dir, NULL);
    struct tq_log *log;
    struct tq_error err;
    /* bad options name the limit */
    struct tq_log_options bad = o;
    bad.record_bytes_max = o.batch_bytes_max;
    TQ_CHECK_ERR(tq_log_open(&bad, &log, NULL, &err), TQ_ERR_INVALID_ARGUMENT, &err);
    TQ_CHECK(strstr(err.msg, "record_bytes_max") != NULL);
    bad = o;
    bad.segment_bytes_max = 64 * 1024; /* cannot hold a full 64 KiB batch */
    TQ_CHECK_ERR(tq_log_open(&bad, &log, NULL, &err), TQ_ERR_INVALID_ARGUMENT, &err);
    TQ_CHECK(strstr(err.msg, "segment_bytes_max") != NULL);
    bad = o;
    bad.fsync_mode = TQ_FSYNC_INTERVAL;
    TQ_CHECK_ERR(tq_log_open(&bad, &log, NULL, &err), TQ_ERR_INVALID_ARGUMENT, &err);

    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    static uint8_t big[64 * 1024];
    uint64_t lsn = 0;
    TQ_CHECK_ERR(tq_log_append(log, 0, big, 1, &lsn, &err), TQ_ERR_INVALID_ARGUMENT, &err);
    TQ_CHECK_ERR(tq_log_append(log, 1, big, o.record_bytes_max + 1, &lsn, &err),
                 TQ_ERR_INVALID_ARGUMENT, &err);
    TQ_CHECK(strstr(err.msg, "record_bytes_max") != NULL);
    TQ_CHECK(!tq_log_can_append(log, o.record_bytes_max + 1));
    TQ_CHECK(tq_log_can_append(log, o.record_bytes_max));
    TQ_CHECK_UEQ(tq_log_next_lsn(log), 1); /* nothing staged */
    /* fill the batch buffer: the append that does not fit is RESOURCE_EXHAUSTED */
    int staged = 0;
    enum tq_err e;
    while ((e = tq_log_append(log, 1, big, o.record_bytes_max, &lsn, &err)) == TQ_OK)
        staged++;
    TQ_CHECK_ERR(e, TQ_ERR_RESOURCE_EXHAUSTED, &err);
    TQ_CHECK(strstr(err.msg, "batch_bytes_max") != NULL);
    TQ_CHECK_EQ(staged, (int)(o.batch_bytes_max / (o.record_bytes_max + 16)));
    TQ_CHECK(!tq_log_can_append(log, o.record_bytes_max));
    TQ_CHECK_UEQ(tq_log_next_lsn(log), (uint64_t)staged + 1);
    TQ_CHECK_OK(tq_log_sync(log, &err), &err);
    TQ_CHECK_UEQ(tq_log_acked_lsn(log), (uint64_t)staged);
    /* an empty payload is a valid record */
    TQ_CHECK_OK(tq_log_append(log, 9, NULL, 0, &lsn, &err), &err);
    TQ_CHECK_OK(tq_log_sync(log, &err), &err);
    struct tq_log_record r;
    TQ_CHECK_OK(tq_log_read(log, lsn, &r, big, sizeof(big), &err), &err);
    TQ_CHECK_UEQ(r.len, 0);
    TQ_CHECK_UEQ(r.type, 9);
    tq_log_close(log);
    st_rmtree(dir);
}

/* Submits what is prepared and hands the log every CQE until nothing of it is in flight. */
static void drain(struct tq_log *log, struct io_uring *ring) {
    while (!tq_log_idle(log)) {
        TQ_CHECK_GE(io_uring_submit_and_wait(ring, 1), 0);
        struct io_uring_cqe *cqe;
        while (io_uring_peek_cqe(ring, &cqe) == 0) {
            tq_log_complete(log, ring, cqe);
            io_uring_cqe_seen(ring, cqe);
        }
    }
}

/* Group commit through the caller's ring: N logical appenders, one record outstanding each. */
static void test_event_loop(void) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "loop");
    struct tq_log_options o = st_options(dir, NULL);
    o.ring_tag = 0x33;
    struct tq_log *log;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    struct io_uring ring;
    int rc = io_uring_queue_init(64, &ring, 0);
    if (rc < 0) {
        printf("io_uring unavailable (%s): skip\n", strerror(-rc));
        exit(TQ_TEST_SKIP);
    }
    enum { APPENDERS = 64 };
    uint64_t waiting[APPENDERS] = {0}; /* LSN each appender waits for, 0 = idle */
    uint64_t acked_total = 0, batches = 0, target = 3000;
    uint64_t last_acked = 0;
    static uint8_t buf[4096];
    while (acked_total < target) {
        for (int a = 0; a < APPENDERS; a++) {
            if (waiting[a] != 0 || tq_log_next_lsn(log) > target) continue;
            uint64_t want = tq_log_next_lsn(log);
            uint32_t len = st_payload(seed, want, 1000, buf);
            if (!tq_log_can_append(log, len)) break;
            TQ_CHECK_OK(tq_log_append(log, st_type(want), buf, len, &waiting[a], &err), &err);
        }
        tq_log_submit(log, &ring, 1700000000000000ull + acked_total);
        io_uring_submit_and_wait(&ring, 1);
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            TQ_CHECK(tq_log_owns_cqe(log, cqe));
            tq_log_complete(log, &ring, cqe);
            seen++;
        }
        io_uring_cq_advance(&ring, seen);
        uint64_t acked = tq_log_acked_lsn(log);
        TQ_CHECK_GE(acked, last_acked);
        TQ_CHECK_LE(tq_log_durable_lsn(log), tq_log_next_lsn(log) - 1);
        if (acked > last_acked) batches++;
        last_acked = acked;
        for (int a = 0; a < APPENDERS; a++) {
            if (waiting[a] != 0 && waiting[a] <= acked) {
                waiting[a] = 0;
                acked_total++;
            }
        }
    }
    /* group commit: far fewer durable steps than records */
    printf("event loop: %" PRIu64 " records acknowledged in %" PRIu64 " steps\n", acked_total,
           batches);
    TQ_CHECK_LT(batches * 4, acked_total);
    drain(log, &ring);
    check_records(log, 1, target, 13, 1000);
    tq_log_close(log);
    io_uring_queue_exit(&ring);
    st_rmtree(dir);
}

static void test_modes(void) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "modes");
    struct tq_log_options o = st_options(dir, NULL);
    o.fsync_mode = TQ_FSYNC_INTERVAL;
    o.fsync_interval_ms = 50;
    struct tq_log *log;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    st_fill(log, seed, 401, 2000, 10);
    /* acked means written; durable lags until the interval passes */
    TQ_CHECK_UEQ(tq_log_acked_lsn(log), 400);
    TQ_CHECK_LE(tq_log_durable_lsn(log), 400);
    struct io_uring ring;
    TQ_CHECK_EQ(io_uring_queue_init(8, &ring, 0), 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    if (tq_log_durable_lsn(log) < 400) {
        int ms = tq_log_timeout_ms(log, now);
        TQ_CHECK_GE(ms, 0);
        TQ_CHECK_LE(ms, 50);
        uint64_t later = now + 60 * 1000;
        TQ_CHECK_EQ(tq_log_timeout_ms(log, later), 0);
        unsigned n = tq_log_submit(log, &ring, later);
        TQ_CHECK_GT(n, 0);
        drain(log, &ring);
    }
    TQ_CHECK_UEQ(tq_log_durable_lsn(log), 400);
    TQ_CHECK_EQ(tq_log_timeout_ms(log, now), -1);
    io_uring_queue_exit(&ring);
    tq_log_close(log);

    o.fsync_mode = TQ_FSYNC_NONE;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    st_fill(log, seed, 801, 2000, 10);
    TQ_CHECK_UEQ(tq_log_acked_lsn(log), 800);
    TQ_CHECK_UEQ(tq_log_durable_lsn(log), 400); /* none mode never syncs */
    TQ_CHECK_EQ(tq_log_timeout_ms(log, 0), -1);
    o.fsync_mode = TQ_FSYNC_ALWAYS;
    log = reopen_expect(log, &o, 800, NULL);
    check_records(log, 1, 800, 3, 2000);
    tq_log_close(log);
    st_rmtree(dir);
}

static void test_enospc(void) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "enospc");
    struct tq_io_faults faults;
    memset(&faults, 0, sizeof(faults));
    struct st_lines lines = {0};
    struct tq_log_options o = st_options(dir, &lines);
    o.faults = &faults;
    struct tq_log *log;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    faults.enospc = true; /* the disk is now full: no new segment can be allocated */
    static uint8_t buf[1 << 14];
    uint64_t lsn = 0, appended = 0;
    enum tq_err e = TQ_OK;
    for (int i = 0; i < 10000 && e == TQ_OK; i++) {
        uint32_t len = st_payload(seed, tq_log_next_lsn(log), 4000, buf);
        uint64_t want = tq_log_next_lsn(log);
        bool can = tq_log_can_append(log, len);
        e = tq_log_append(log, st_type(want), buf, len, &lsn, &err);
        if (e == TQ_ERR_RESOURCE_EXHAUSTED) {
            TQ_CHECK_OK(tq_log_sync(log, &err), &err);
            e = TQ_OK;
            continue;
        }
        if (e == TQ_OK) {
            appended++;
            if (i % 9 == 0) TQ_CHECK_OK(tq_log_sync(log, &err), &err);
        } else {
            TQ_CHECK(!can); /* can_append predicted the refusal */
        }
    }
    TQ_CHECK_ERR(e, TQ_ERR_NO_SPACE, &err);
    TQ_CHECK(strstr(err.msg, "no space") != NULL);
    uint64_t next = tq_log_next_lsn(log);
    TQ_CHECK_UEQ(next, appended + 1); /* the refused record was not staged */
    TQ_CHECK_OK(tq_log_sync(log, &err), &err);
    /* reads keep working */
    check_records(log, 1, next - 1, 1, 4000);
    /* space comes back: appends resume */
    faults.enospc = false;
    uint32_t len = st_payload(seed, next, 4000, buf);
    TQ_CHECK_OK(tq_log_append(log, st_type(next), buf, len, &lsn, &err), &err);
    TQ_CHECK_OK(tq_log_sync(log, &err), &err);
    st_check_record(log, seed, next, 4000);
    tq_log_close(log);
    st_rmtree(dir);
}

/* The spare segment is zero-filled in idle turns through the caller's ring, then used. */
static void test_prezero(void) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "prezero");
    struct tq_log_options o = st_options(dir, NULL);
    o.spare_no_prezero = false;
    o.segment_bytes_max = 1024 * 1024;
    struct tq_log *log;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    struct io_uring ring;
    TQ_CHECK_EQ(io_uring_queue_init(16, &ring, 0), 0);
    for (int round = 0; round < 3; round++) {
        int turns = 0;
        while (tq_log_timeout_ms(log, 0) == 1 || !tq_log_idle(log)) {
            TQ_CHECK_LT(turns++, 100); /* 1 MiB / 256 KiB chunks + the sync */
            tq_log_submit(log, &ring, 1);
            io_uring_submit(&ring);
            struct io_uring_cqe *cqe;
            TQ_CHECK_EQ(io_uring_wait_cqe(&ring, &cqe), 0);
            tq_log_complete(log, &ring, cqe);
            io_uring_cqe_seen(&ring, cqe);
        }
        TQ_CHECK_GE(turns, 4);
        TQ_CHECK_EQ(tq_log_timeout_ms(log, 0), -1);
        /* fill past the end of the segment: the zeroed spare becomes the tail */
        uint64_t end = tq_log_next_lsn(log) + 700;
        st_fill(log, seed, end, 3000, 16);
    }
    uint64_t segs[16];
    TQ_CHECK_GE(tq_log_segments(log, segs, 16), 3);
    check_records(log, 1, tq_log_next_lsn(log) - 1, 7, 3000);
    io_uring_queue_exit(&ring);
    tq_log_close(log);
    st_rmtree(dir);
}

/* Batches larger than the readers' 1 MiB window: recovery, reads and iteration. */
/* Every batch buffer in use lies inside its allocation and is aligned for O_DIRECT; one of at
 * least 1 MiB starts on a huge-page boundary (storage/log.c buf_alloc: fewer, larger block
 * requests per batch). Returns how many buffers were checked. */
static unsigned check_batch_buffers(const struct tq_log *log) {
    unsigned n = 0;
    for (unsigned i = 0; i < TQ_LOG_BUFS_MAX; i++) {
        const struct tq_batch_buf *b = &log->bufs[i];
        if (b->mem == NULL) continue;
        n++;
        TQ_CHECK(b->mem >= b->raw && b->mem + b->cap <= b->raw + b->raw_bytes);
        TQ_CHECK_UEQ((uintptr_t)b->mem % 4096u, 0);
        if (b->cap >= (1u << 20)) TQ_CHECK_UEQ((uintptr_t)b->mem % (2u << 20), 0);
    }
    return n;
}

static void test_big_batches(void) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "big");
    struct tq_log_options o = st_options(dir, NULL);
    o.record_bytes_max = 1024 * 1024;
    o.batch_bytes_max = 4 * 1024 * 1024;
    o.segment_bytes_max = 16 * 1024 * 1024;
    struct tq_log *log;
    struct tq_log_recovery rec;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    st_fill(log, seed, 41, 400 * 1024, 12); /* batches of ~2.4 MiB */
    TQ_CHECK(check_batch_buffers(log) >= 1);
    log = reopen_expect(log, &o, 40, &rec);
    TQ_CHECK_LT(rec.batches_scanned, 10);
    check_records(log, 1, 40, 1, 400 * 1024);
    tq_log_close(log);
    st_rmtree(dir);
}

/* The recovery scan's streaming reads (read.c: 8 reads of 1 MiB in flight in a ring that wraps
 * every 8 MiB, with a copy only at the wrap) over 40 MiB segments of batches up to ~4 MiB, so
 * batches straddle read and wrap borders many times: the index it builds must match every
 * record, and a flipped byte far past the first wrap (in a sealed segment) must be refused
 * naming the file. Then batches of ~12 MiB, larger than the stream serves (8 MiB): the scan
 * falls back to preads and still verifies everything. */
static void test_scan_stream(void) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "stream");
    struct tq_log_options o = st_options(dir, NULL);
    o.record_bytes_max = 1024 * 1024;
    o.batch_bytes_max = 4 * 1024 * 1024;
    o.segment_bytes_max = 40 * 1024 * 1024;
    struct tq_log *log;
    struct tq_log_recovery rec;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    uint64_t n = 0;
    uint64_t segs[8];
    while (tq_log_segments(log, segs, 8) < 2) {
        n += 1 + tq_test_rand_below(&rng, 12);
        st_fill(log, seed, n + 1, 700 * 1024, 1000); /* one batch per st_fill */
    }
    log = reopen_expect(log, &o, n, &rec);
    TQ_CHECK_GT(rec.bytes_scanned, 40u * 1024 * 1024 - 4u * 1024 * 1024);
    check_records(log, 1, n, 1, 700 * 1024);
    tq_log_close(log);

    /* One byte flipped at 21 MiB + 123 of the sealed first segment: past the first wrap (16 MiB).
     */
    char paths[8][512];
    TQ_CHECK_EQ(st_segments(dir, paths, 8), 2);
    int fd = open(paths[0], O_RDWR);
    TQ_CHECK_GE(fd, 0);
    uint8_t b;
    off_t at = 21 * 1024 * 1024 + 123;
    TQ_CHECK_EQ(pread(fd, &b, 1, at), 1);
    b ^= 0x10;
    TQ_CHECK_EQ(pwrite(fd, &b, 1, at), 1);
    close(fd);
    TQ_CHECK_ERR(tq_log_open(&o, &log, &rec, &err), TQ_ERR_CORRUPT, &err);
    printf("stream scan: %" PRIu64 " records; flipped byte: %s\n", n, err.msg);
    TQ_CHECK(strstr(err.msg, "00000000000000000001.seg offset ") != NULL);
    unsigned long long bad_offset = 0;
    TQ_CHECK_EQ(sscanf(strstr(err.msg, " offset ") + 8, "%llu", &bad_offset), 1);
    TQ_CHECK_LE(bad_offset, (unsigned long long)at);
    TQ_CHECK_GT(bad_offset + 4 * 1024 * 1024 + 4096, (unsigned long long)at);
    st_rmtree(dir);

    st_mkdtemp(dir, sizeof(dir), "stream-big");
    o = st_options(dir, NULL);
    o.record_bytes_max = 1024 * 1024;
    o.batch_bytes_max = 12 * 1024 * 1024;
    o.segment_bytes_max = 40 * 1024 * 1024;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    st_fill(log, seed, 61, 1024 * 1024, 1000); /* batches close only when full: ~12 MiB */
    log = reopen_expect(log, &o, 60, &rec);
    TQ_CHECK_LE(rec.batches_scanned, 8);
    check_records(log, 1, 60, 1, 1024 * 1024);
    tq_log_close(log);
    st_rmtree(dir);
}

/* A busy loop of small batches, never idle (a record is always staged when it submits):
 * returns the zero-fill writes of the spare that went out meanwhile (*last_lsn: the last
 * record appended, if any). */
static uint64_t busy_zero_writes(struct tq_log *l, struct io_uring *ring, uint64_t *last_lsn) {
    static uint8_t buf[1000];
    memset(buf, 'z', sizeof(buf));
    struct tq_error err;
    uint64_t lsn, zero_writes_seen = 0;
    for (int turn = 0; turn < 400; turn++) {
        for (int i = 0; i < 4; i++) {
            if (!tq_log_can_append(l, sizeof(buf))) break;
            TQ_CHECK_OK(tq_log_append(l, 1, buf, sizeof(buf), &lsn, &err), &err);
            *last_lsn = lsn;
        }
        tq_log_submit(l, ring, 1);
        io_uring_submit_and_wait(ring, 1);
        struct io_uring_cqe *cqe;
        while (io_uring_peek_cqe(ring, &cqe) == 0) {
            if (((cqe->user_data >> 48) & 0xff) == TQ_LOG_OP_ZERO) zero_writes_seen++;
            tq_log_complete(l, ring, cqe);
            io_uring_cqe_seen(ring, cqe);
        }
    }
    return zero_writes_seen;
}

/* pipeline_bytes_min: a small batch is not submitted while another is in flight (it waits and
 * grows), a large one is; and the small batches of a busy loop that is never idle earn the
 * spare segment its zero-fill (zero_credit), which an idle-only policy never gave it. */
static void test_pipeline_and_zero_credit(void) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "pipe");
    struct tq_log_options o = st_options(dir, NULL);
    o.pipeline_bytes_min = 16 * 1024;
    o.spare_no_prezero = false;
    o.segment_bytes_max = 2 * 1024 * 1024;
    o.batch_bytes_max = 256 * 1024;
    o.record_bytes_max = 32 * 1024;
    o.batches_inflight_max = 2;
    struct tq_log *log;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    struct io_uring ring;
    TQ_CHECK_EQ(io_uring_queue_init(32, &ring, 0), 0);
    static uint8_t buf[64 * 1024];
    memset(buf, 'p', sizeof(buf));
    uint64_t lsn;
    /* batch A (small) goes out at once: nothing is in flight */
    TQ_CHECK_OK(tq_log_append(log, 1, buf, 100, &lsn, &err), &err);
    TQ_CHECK_UEQ(tq_log_submit(log, &ring, 1), st_batch_sqes(&o)); /* write + fdatasync */
    /* batch B (small) waits while A is in flight */
    TQ_CHECK_OK(tq_log_append(log, 1, buf, 100, &lsn, &err), &err);
    TQ_CHECK_UEQ(tq_log_submit(log, &ring, 1), 0);
    /* once it holds pipeline_bytes_min it goes out next to A */
    TQ_CHECK_OK(tq_log_append(log, 1, buf, 20 * 1024, &lsn, &err), &err);
    TQ_CHECK_UEQ(tq_log_submit(log, &ring, 1), st_batch_sqes(&o));
    TQ_CHECK_UEQ(check_batch_buffers(log), 3); /* 256 KiB buffers: 4 KiB pages */
    drain(log, &ring);
    TQ_CHECK_UEQ(tq_log_acked_lsn(log), lsn);
    uint64_t zero_writes_seen = busy_zero_writes(log, &ring, &lsn);
    printf("pipeline: %" PRIu64 " zero-fill writes earned by small batches under load\n",
           zero_writes_seen);
    TQ_CHECK_GT(zero_writes_seen, 0);
    drain(log, &ring);
    io_uring_queue_exit(&ring);
    log = reopen_expect(log, &o, lsn, NULL);
    tq_log_close(log);
    st_rmtree(dir);
}

/* pipeline_bytes_min = 1 (any batch may go out beside another, the server's default since
 * 2026-12-03 late evening): small batches still earn the spare its zero-fill. When the credit
 * was tied to pipeline_bytes_min, no batch was below 1 byte and a busy log never zeroed it. */
static void test_zero_credit_any_pipeline(void) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "pipe1");
    struct tq_log_options o = st_options(dir, NULL);
    o.pipeline_bytes_min = 1;
    o.spare_no_prezero = false;
    o.segment_bytes_max = 2 * 1024 * 1024;
    o.batch_bytes_max = 256 * 1024;
    o.batches_inflight_max = 2;
    struct tq_log *log;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    struct io_uring ring;
    TQ_CHECK_EQ(io_uring_queue_init(32, &ring, 0), 0);
    uint64_t last_lsn = 0;
    uint64_t zero_writes_seen = busy_zero_writes(log, &ring, &last_lsn);
    TQ_CHECK_GT(last_lsn, 0);
    printf("pipeline 1: %" PRIu64 " zero-fill writes earned under load\n", zero_writes_seen);
    TQ_CHECK_GT(zero_writes_seen, 0);
    drain(log, &ring);
    io_uring_queue_exit(&ring);
    tq_log_close(log);
    st_rmtree(dir);
}

/* A completion starts the batch staged meanwhile by itself (no tq_log_submit needed), and
 * tq_log_batches_inflight counts the batches on the disk. */
static void test_completion_submits(void) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "complsub");
    struct tq_log_options o = st_options(dir, NULL);
    o.spare_no_prezero = true;        /* no zero-fill SQEs: only batches are in flight */
    o.pipeline_bytes_min = 64 * 1024; /* a small batch waits for the one in flight */
    struct tq_log *log;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    struct io_uring ring;
    TQ_CHECK_EQ(io_uring_queue_init(16, &ring, 0), 0);
    uint8_t buf[200];
    memset(buf, 'c', sizeof(buf));
    uint64_t first, second;
    TQ_CHECK_UEQ(tq_log_batches_inflight(log), 0);
    TQ_CHECK_OK(tq_log_append(log, 1, buf, sizeof(buf), &first, &err), &err);
    TQ_CHECK_UEQ(tq_log_submit(log, &ring, 1), st_batch_sqes(&o));
    TQ_CHECK_UEQ(tq_log_batches_inflight(log), 1);
    /* staged while the first batch is in flight: small, so it waits (pipeline_bytes_min) */
    TQ_CHECK_OK(tq_log_append(log, 1, buf, sizeof(buf), &second, &err), &err);
    TQ_CHECK_UEQ(tq_log_submit(log, &ring, 1), 0);
    io_uring_submit(&ring);
    while (tq_log_acked_lsn(log) < first) {
        struct io_uring_cqe *cqe;
        TQ_CHECK_EQ(io_uring_wait_cqe(&ring, &cqe), 0);
        tq_log_complete(log, &ring, cqe);
        io_uring_cqe_seen(&ring, cqe);
    }
    TQ_CHECK_UEQ(tq_log_acked_lsn(log), first);
    TQ_CHECK_UEQ(tq_log_batches_inflight(log), 1); /* the completion started the second */
    drain(log, &ring);
    TQ_CHECK_UEQ(tq_log_acked_lsn(log), second);
    TQ_CHECK_UEQ(tq_log_batches_inflight(log), 0);
    io_uring_queue_exit(&ring);
    log = reopen_expect(log, &o, second, NULL);
    tq_log_close(log);
    st_rmtree(dir);
}

/* A second writer on the same directory is refused (the first holds its segment's write lock);
 * once the first is closed, it opens and sees everything the first acknowledged. */
static void test_second_writer(void) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "writers");
    struct tq_log_options o = st_options(dir, NULL);
    o.writers_wait_ms = 30;
    struct tq_log *a, *b;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &a, NULL, &err), &err);
    uint64_t lsn;
    TQ_CHECK_OK(tq_log_append(a, 1, "first", 5, &lsn, &err), &err);
    TQ_CHECK_OK(tq_log_sync(a, &err), &err); /* the tail's write descriptor is locked now */
    enum tq_err e = tq_log_open(&o, &b, NULL, &err);
    TQ_CHECK_EQ(e, TQ_ERR_UNAVAILABLE);
    TQ_CHECK(strstr(err.msg, "locked by another writer") != NULL);
    struct tq_log_options ro = o;
    ro.read_only = true; /* readers never wait */
    TQ_CHECK_OK(tq_log_open(&ro, &b, NULL, &err), &err);
    TQ_CHECK_UEQ(tq_log_acked_lsn(b), 1);
    tq_log_close(b);
    tq_log_close(a);
    TQ_CHECK_OK(tq_log_open(&o, &b, NULL, &err), &err);
    TQ_CHECK_UEQ(tq_log_next_lsn(b), 2);
    tq_log_close(b);
    st_rmtree(dir);
}

/* dsync_writes: one RWF_DSYNC write per batch and no fdatasync SQE (a segment's first batch
 * still links the fsync of log/); the seam counts the write as a sync too, so its Nth-sync EIO
 * still fails a batch; records written across several segments read back after a reopen. */
static void test_dsync_writes(void) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "dsync");
    struct tq_io_faults faults;
    memset(&faults, 0, sizeof(faults));
    struct tq_log_options o = st_options(dir, NULL);
    o.dsync_writes = true;
    o.faults = &faults;
    struct tq_log *log;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    struct io_uring ring;
    TQ_CHECK_EQ(io_uring_queue_init(32, &ring, 0), 0);
    static uint8_t buf[4096];
    uint32_t len = st_payload(seed, 1, 3000, buf);
    uint64_t lsn;
    TQ_CHECK_OK(tq_log_append(log, st_type(1), buf, len, &lsn, &err), &err);
    uint64_t writes = faults.writes, fsyncs = faults.fsyncs;
    TQ_CHECK_UEQ(tq_log_submit(log, &ring, 1), 1); /* the write alone: no fdatasync SQE */
    TQ_CHECK_UEQ(faults.writes, writes + 1);
    TQ_CHECK_UEQ(faults.fsyncs, fsyncs + 1);
    io_uring_submit(&ring);
    struct io_uring_cqe *cqe;
    TQ_CHECK_EQ(io_uring_wait_cqe(&ring, &cqe), 0);
    TQ_CHECK_EQ(cqe->res, 4096); /* one padded batch, written whole */
    tq_log_complete(log, &ring, cqe);
    io_uring_cqe_seen(&ring, cqe);
    TQ_CHECK(tq_log_idle(log));
    TQ_CHECK_UEQ(tq_log_acked_lsn(log), 1); /* durable on the write's completion */
    io_uring_queue_exit(&ring);
    /* several segments (256 KiB each): new segments' first batches link the fsync of log/ */
    st_fill(log, seed, 400, 3000, 9);
    uint64_t segs[16];
    TQ_CHECK_GT(tq_log_segments(log, segs, 16), 2);
    o.faults = NULL;
    log = reopen_expect(log, &o, 399, NULL);
    check_records(log, 1, 399, 1, 3000);
    tq_log_close(log);
    st_rmtree(dir);
}

int main(void) {
    seed = tq_test_seed("test_log");
    rng = seed * 31 + 7;
    test_basic_and_reopen();
    test_bytes_count();
    test_limits();
    test_event_loop();
    test_modes();
    test_enospc();
    test_big_batches();
    test_prezero();
    test_second_writer();
    test_scan_stream();
    test_pipeline_and_zero_credit();
    test_zero_credit_any_pipeline();
    test_dsync_writes();
    test_completion_submits();
    printf("test_log: ok\n");
    return 0;
}
