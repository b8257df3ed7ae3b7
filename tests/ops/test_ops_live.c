/* tests/ops/test_ops_live.c: the read-only tools against a LIVE server's data directory.
 *
 * Goal: issue #6's promise that verify, replay and backup are safe while ticketqd runs: they
 * read up to the last complete batch and never report corruption that is not there. The log
 * writer keeps up to TQ_BATCHES_INFLIGHT_MAX batches in flight, so the tail segment can show a
 * hole (batch N+1 on disk while batch N is still being written); that must read as "the live
 * end", not as damage (docs/log-format.md, "Readers beside a live writer").
 * Method, first deterministically: a directory whose last batches were really pipelined, one
 * of them zeroed (a write still in flight): verify, replay and backup refuse it (exit != 0,
 * "offset N lsn N", "no live writer holds LOCK"); while this process holds DIR/LOCK through
 * another descriptor they stop at the hole ("live tail: stopped at LSN X, offset Y"), and the
 * backup then holds exactly LSNs 1..X and verifies on its own.
 * Then live: tests/fixture starts a real ticketqd (8 MiB segments, so segments roll during the
 * run); LIVE_WRITERS child processes each pipeline LIVE_PIPELINE ingests of LIVE_BODY_BYTES
 * bodies at a time through the real client library, which keeps batches above the writer's
 * pipeline_bytes_min so several are in flight. Meanwhile the parent runs, in a loop for
 * TQ_LIVE_SECONDS (default 4) seconds, `ticketq-ops verify --data DIR`, `replay --data DIR
 * --jsonl > /dev/null` and `backup DEST --data DIR`, each on the live directory.
 * Invariants checked: every tool run exits 0 (the first failure's output is printed, and the
 * count of failures per tool); every ingest of the writers succeeded; at least one verify run
 * saw the log grow between runs (the check really ran against a moving log); after the server
 * stopped, the data directory and the last backup verify, and the backup's MANIFEST range
 * is a prefix of the final log. Label net (loopback only).
 */
#include "log_impl.h"
#include "ops_testlib.h"
#include "ticketq.h"
#include "tq_fixture.h"
#include "tq_test.h"

#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LIVE_WRITERS     6
#define LIVE_PIPELINE    16
#define LIVE_BODY_BYTES  (32 * 1024)
#define LIVE_PAUSE_US    40000 /* between rounds: bounds the log's growth (tools re-read it) */
#define LIVE_ROUNDS_MIN  6
#define LIVE_SECONDS_DEF 4

static struct tq_error err;
#define OK(expr) TQ_CHECK_OK((expr), &err)

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One writer process: pipelined ingests until SIGTERM. Exit 0, or 1 on any failed ingest. */
static volatile sig_atomic_t writer_stop;
static void on_term(int sig) {
    (void)sig;
    writer_stop = 1;
}

static int writer_main(const struct tq_fixture *fx, int index) {
    signal(SIGTERM, on_term);
    struct tq_client_options o = {
        .addr = fx->addr, .token = fx->admin_token, .io_timeout_ms = 60000};
    struct tq_client *c = NULL;
    struct tq_error e;
    if (tq_client_connect(&o, &c, &e) != TQ_OK) {
        fprintf(stderr, "writer %d: connect: %s\n", index, e.msg);
        return 1;
    }
    tq_client_set_tenant(c, 1);
    static char body[LIVE_BODY_BYTES + 1];
    for (int k = 0; k < LIVE_BODY_BYTES; k++)
        body[k] = (char)('a' + (index * 7 + k * 13) % 26);
    body[LIVE_BODY_BYTES] = '\0';
    for (uint64_t round = 0; !writer_stop; round++) {
        for (int i = 0; i < LIVE_PIPELINE; i++) {
            char from[64];
            snprintf(from, sizeof(from), "w%d-%d@example.com", index, i % 20);
            Ticketq__Ingest in = TICKETQ__INGEST__INIT;
            in.channel = TICKETQ__CHANNEL__EMAIL;
            in.from = from;
            in.body = body;
            in.has_queue_id = true;
            in.queue_id = 1;
            Ticketq__Request req = TICKETQ__REQUEST__INIT;
            req.op_case = TICKETQ__REQUEST__OP_INGEST;
            req.ingest = &in;
            if (tq_client_submit(c, &req, NULL, &e) != TQ_OK) {
                fprintf(stderr, "writer %d: submit: %s\n", index, e.msg);
                return 1;
            }
        }
        while (tq_client_inflight(c) > 0) {
            Ticketq__Response *r = NULL;
            if (tq_client_collect(c, &r, &e) != TQ_OK || tq_client_response_error(r, &e) != TQ_OK) {
                fprintf(stderr, "writer %d round %" PRIu64 ": ingest: %s\n", index, round, e.msg);
                if (r != NULL) tq_client_response_free(r);
                return 1;
            }
            tq_client_response_free(r);
        }
        usleep(LIVE_PAUSE_US);
    }
    tq_client_close(c);
    return 0;
}

/* The LSN range "lsn range: A..B" printed by verify, or 0. */
static uint64_t verify_lsn_last(const char *out) {
    const char *p = strstr(out, "lsn range: ");
    if (p == NULL) return 0;
    p = strstr(p, "..");
    return p == NULL ? 0 : strtoull(p + 2, NULL, 10);
}

struct tool_stats {
    const char *name;
    int runs, failures;
    int live_tails; /* runs that stopped at a hole of batches in flight ("live tail") */
};

static void run_tool(struct tool_stats *t, const char *cmd, char **out_keep) {
    int status = -1;
    char *out = ops_capture(&status, "%s", cmd);
    t->runs++;
    if (strstr(out, "live tail") != NULL) t->live_tails++;
    if (status != 0) {
        if (t->failures < 8)
            fprintf(stderr, "failure of %s (exit %d):\n%s\n", t->name, status, out);
        t->failures++;
    }
    if (out_keep != NULL) {
        *out_keep = out;
    } else {
        free(out);
    }
}

/* ---- the same rule, deterministic: a hole made on purpose -------------------------------- */

/* A data directory whose last TQ_BATCHES_INFLIGHT_MAX batches were pipelined (sealed and
 * submitted on one ring before any completed, as ticketqd does), one batch zeroed with `after`
 * valid batches after it: TQ_BATCHES_INFLIGHT_MAX - 2 zeroes the second of the pipelined
 * ones, as if its write were still in flight; more than TQ_BATCHES_INFLIGHT_MAX - 1 is damage
 * (more batches follow than a writer keeps in flight). *hole_lsn / *hole_offset: where the
 * hole starts. */
static void build_hole(const char *dir, unsigned after, uint64_t *hole_lsn, uint64_t *hole_offset) {
    struct tq_log_options o;
    memset(&o, 0, sizeof(o));
    o.dir = dir;
    o.segment_bytes_max = 1u << 20;
    o.batch_bytes_max = 256u << 10;
    o.record_bytes_max = 64u << 10;
    o.pipeline_bytes_min = 1;
    o.spare_no_prezero = true;
    struct tq_log *log = NULL;
    OK(tq_log_open(&o, &log, NULL, &err));
    static uint8_t payload[3000];
    memset(payload, 'p', sizeof(payload));
    uint64_t lsn;
    for (int i = 0; i < 20; i++) {
        OK(tq_log_append(log, 7, payload, 100u + (uint32_t)i * 50u, &lsn, &err));
        OK(tq_log_sync(log, &err));
    }
    struct io_uring ring;
    int rc = io_uring_queue_init(64, &ring, 0);
    if (rc < 0) {
        printf("io_uring unavailable (%s): skip\n", strerror(-rc));
        exit(TQ_TEST_SKIP);
    }
    for (unsigned b = 0; b < TQ_BATCHES_INFLIGHT_MAX; b++) {
        for (int r = 0; r < 3; r++)
            OK(tq_log_append(log, 7, payload, sizeof(payload), &lsn, &err));
        TQ_CHECK_GT(tq_log_submit(log, &ring, 1700000000000000ull + b), 0);
    }
    io_uring_submit(&ring);
    while (!tq_log_idle(log)) {
        io_uring_submit_and_wait(&ring, 1);
        struct io_uring_cqe *cqe;
        while (io_uring_peek_cqe(&ring, &cqe) == 0) {
            tq_log_complete(log, &ring, cqe);
            io_uring_cqe_seen(&ring, cqe);
        }
    }
    io_uring_queue_exit(&ring);
    TQ_CHECK_GE(log->ref_count, 2 + TQ_BATCHES_INFLIGHT_MAX);
    TQ_CHECK_LT(after + 1u, log->ref_count);
    const struct tq_batch_ref *hole = &log->refs[log->ref_count - 1u - after];
    TQ_CHECK_UEQ(hole->seg_index, log->seg_count - 1);
    *hole_lsn = hole->lsn_first;
    *hole_offset = hole->offset;
    int fd = open(log->segs[hole->seg_index].path, O_RDWR);
    TQ_CHECK(fd >= 0);
    static uint8_t zeros[64u << 10];
    TQ_CHECK_LE(hole->disk_bytes, sizeof(zeros));
    TQ_CHECK_EQ(pwrite(fd, zeros, hole->disk_bytes, (off_t)hole->offset),
                (ssize_t)hole->disk_bytes);
    close(fd);
    tq_log_close(log);
}

/* verify, replay and backup on a directory with a hole: damage without a lock holder, the live
 * end while one holds DIR/LOCK (this process, through another open file description). */
static void check_hole_rule(void) {
    char dir[256], backup[256];
    ops_tmpdir("live-hole", dir, sizeof(dir));
    ops_tmpdir("live-hole-backup", backup, sizeof(backup));
    uint64_t hole_lsn = 0, hole_offset = 0;
    build_hole(dir, TQ_BATCHES_INFLIGHT_MAX - 2u, &hole_lsn, &hole_offset);
    char want[128];
    snprintf(want, sizeof(want), "offset %" PRIu64 " lsn %" PRIu64, hole_offset, hole_lsn);
    int status = -1;
    char *out = ops_capture(&status, "%s verify --data %s 2>&1", ops_tool(), dir);
    if (status != 1 || strstr(out, want) == NULL) fprintf(stderr, "%s\n", out);
    TQ_CHECK_EQ(status, 1);
    TQ_CHECK(strstr(out, want) != NULL);
    TQ_CHECK(strstr(out, "no live writer holds LOCK") != NULL);
    free(out);
    out = ops_capture(&status, "%s replay --data %s --jsonl 2>&1 >/dev/null", ops_tool(), dir);
    TQ_CHECK_NE(status, 0);
    TQ_CHECK(strstr(out, "no live writer holds LOCK") != NULL);
    free(out);
    out = ops_capture(&status, "%s backup %s --data %s 2>&1", ops_tool(), backup, dir);
    TQ_CHECK_NE(status, 0);
    TQ_CHECK(strstr(out, "no live writer holds LOCK") != NULL);
    free(out);

    int lock_fd = -1;
    OK(tq_log_dir_lock(dir, "test_ops_live", &lock_fd, &err));
    out = ops_capture(&status, "%s verify --data %s 2>&1", ops_tool(), dir);
    if (status != 0) fprintf(stderr, "%s\n", out);
    TQ_CHECK_EQ(status, 0);
    snprintf(want, sizeof(want), "live tail: stopped at LSN %" PRIu64 ", offset %" PRIu64,
             hole_lsn - 1, hole_offset);
    TQ_CHECK(strstr(out, want) != NULL);
    TQ_CHECK_UEQ(verify_lsn_last(out), hole_lsn - 1);
    free(out);
    out = ops_capture(&status, "%s replay --data %s --jsonl 2>&1 >/dev/null", ops_tool(), dir);
    if (status != 0) fprintf(stderr, "%s\n", out);
    TQ_CHECK_EQ(status, 0);
    TQ_CHECK(strstr(out, "live tail: stopped at LSN") != NULL);
    free(out);
    out = ops_capture(&status, "%s backup %s --data %s 2>&1", ops_tool(), backup, dir);
    if (status != 0) fprintf(stderr, "%s\n", out);
    TQ_CHECK_EQ(status, 0);
    snprintf(want, sizeof(want), "backup: ok, lsn_last %" PRIu64 ",", hole_lsn - 1);
    TQ_CHECK(strstr(out, want) != NULL);
    TQ_CHECK(strstr(out, "live tail") != NULL);
    free(out);
    tq_log_dir_unlock(lock_fd);
    /* The backup holds exactly the log before the hole, and verifies on its own. */
    out = ops_capture(&status, "%s verify --data %s 2>&1", ops_tool(), backup);
    if (status != 0) fprintf(stderr, "%s\n", out);
    TQ_CHECK_EQ(status, 0);
    TQ_CHECK_UEQ(verify_lsn_last(out), hole_lsn - 1);
    TQ_CHECK(strstr(out, "live tail") == NULL);
    free(out);
    ops_rm_rf(backup);
    ops_rm_rf(dir);
}

/* A hole with more valid batches after it than a writer keeps in flight is damage even while a
 * writer holds DIR/LOCK: verify, replay and backup read it again (the read race, up to 20
 * times) and then refuse it, naming file and offset. */
static void check_deep_hole(void) {
    char dir[256], backup[256];
    ops_tmpdir("live-deep", dir, sizeof(dir));
    ops_tmpdir("live-deep-backup", backup, sizeof(backup));
    uint64_t hole_lsn = 0, hole_offset = 0;
    build_hole(dir, TQ_BATCHES_INFLIGHT_MAX + 1u, &hole_lsn, &hole_offset);
    int lock_fd = -1;
    OK(tq_log_dir_lock(dir, "test_ops_live", &lock_fd, &err));
    char want[128];
    snprintf(want, sizeof(want), "offset %" PRIu64, hole_offset);
    int status = -1;
    char *out = ops_capture(&status, "%s verify --data %s 2>&1", ops_tool(), dir);
    if (status != 1 || strstr(out, want) == NULL) fprintf(stderr, "%s\n", out);
    TQ_CHECK_EQ(status, 1);
    TQ_CHECK(strstr(out, want) != NULL);
    TQ_CHECK(strstr(out, "more valid batches follow") != NULL);
    free(out);
    out = ops_capture(&status, "%s replay --data %s --jsonl 2>&1 >/dev/null", ops_tool(), dir);
    TQ_CHECK_NE(status, 0);
    TQ_CHECK(strstr(out, "more valid batches follow") != NULL);
    free(out);
    out = ops_capture(&status, "%s backup %s --data %s 2>&1", ops_tool(), backup, dir);
    if (status == 0 || strstr(out, want) == NULL) fprintf(stderr, "%s\n", out);
    TQ_CHECK_NE(status, 0);
    TQ_CHECK(strstr(out, want) != NULL);
    TQ_CHECK(strstr(out, "more valid batches follow") != NULL);
    char manifest[300];
    snprintf(manifest, sizeof(manifest), "%s/MANIFEST", backup);
    TQ_CHECK(access(manifest, F_OK) != 0);
    free(out);
    tq_log_dir_unlock(lock_fd);
    ops_rm_rf(backup);
    ops_rm_rf(dir);
}

int main(void) {
    (void)tq_test_seed("test_ops_live");
    check_hole_rule();
    check_deep_hole();
    double seconds = LIVE_SECONDS_DEF;
    const char *env = getenv("TQ_LIVE_SECONDS");
    if (env != NULL && atof(env) > 0) seconds = atof(env);

    struct tq_fixture fx;
    memset(&fx, 0, sizeof(fx));
    fx.extra_args[0] = "--segment-bytes";
    fx.extra_args[1] = "8388608";
    TQ_CHECK_EQ(tq_fixture_start(&fx), 0);
    struct tq_client_options o = {.addr = fx.addr, .token = fx.admin_token, .io_timeout_ms = 60000};
    struct tq_client *admin = NULL;
    OK(tq_client_connect(&o, &admin, &err));
    struct tq_client_ids ids;
    OK(tq_client_tenant_create(admin, "Live Shop", &ids, &err));
    TQ_CHECK_UEQ(ids.tenant_id, 1);
    tq_client_set_tenant(admin, 1);
    OK(tq_client_queue_create(admin, "support", false, &ids, &err));
    TQ_CHECK_UEQ(ids.queue_id, 1);
    tq_client_close(admin);

    pid_t writers[LIVE_WRITERS];
    for (int i = 0; i < LIVE_WRITERS; i++) {
        fflush(NULL);
        writers[i] = fork();
        TQ_CHECK(writers[i] >= 0);
        if (writers[i] == 0) _exit(writer_main(&fx, i));
    }
    usleep(300 * 1000); /* let the log get going */

    char backup[256];
    ops_tmpdir("live-backup", backup, sizeof(backup));
    char verify_cmd[1024], replay_cmd[1024], backup_cmd[1024];
    snprintf(verify_cmd, sizeof(verify_cmd), "%s verify --data %s 2>&1", ops_tool(), fx.dir);
    snprintf(replay_cmd, sizeof(replay_cmd), "%s replay --data %s --jsonl 2>&1 >/dev/null",
             ops_tool(), fx.dir);
    snprintf(backup_cmd, sizeof(backup_cmd), "%s backup %s --data %s 2>&1", ops_tool(), backup,
             fx.dir);
    struct tool_stats verify = {.name = "verify"}, replay = {.name = "replay"},
                      bak = {.name = "backup"};
    uint64_t lsn_seen_prev = 0;
    int grew = 0;
    double end = mono_s() + seconds;
    for (int round = 0; round < LIVE_ROUNDS_MIN || mono_s() < end; round++) {
        char *out = NULL;
        run_tool(&verify, verify_cmd, &out);
        uint64_t lsn = verify_lsn_last(out);
        if (lsn > lsn_seen_prev && lsn_seen_prev != 0) grew++;
        if (lsn > lsn_seen_prev) lsn_seen_prev = lsn;
        free(out);
        run_tool(&replay, replay_cmd, NULL);
        run_tool(&bak, backup_cmd, NULL);
    }
    for (int i = 0; i < LIVE_WRITERS; i++)
        kill(writers[i], SIGTERM);
    int writer_failures = 0;
    for (int i = 0; i < LIVE_WRITERS; i++) {
        int st = 0;
        TQ_CHECK_EQ(waitpid(writers[i], &st, 0), writers[i]);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) writer_failures++;
    }
    printf("test_ops_live: %.1f s, log grew %d times to LSN %" PRIu64 "; runs (failed, stopped "
           "at a live tail): verify %d (%d, %d), replay %d (%d, %d), backup %d (%d, %d)\n",
           seconds, grew, lsn_seen_prev, verify.runs, verify.failures, verify.live_tails,
           replay.runs, replay.failures, replay.live_tails, bak.runs, bak.failures, bak.live_tails);
    TQ_CHECK_EQ(writer_failures, 0);
    TQ_CHECK_GE(verify.runs, 2);
    TQ_CHECK_GE(grew, 1);
    TQ_CHECK_EQ(verify.failures, 0);
    TQ_CHECK_EQ(replay.failures, 0);
    TQ_CHECK_EQ(bak.failures, 0);

    /* With the server stopped: the directory and the last backup verify, and the backup is a
     * prefix of the final log. */
    TQ_CHECK_EQ(tq_fixture_stop(&fx), 0);
    int status = -1;
    char *out = ops_capture(&status, "%s verify --data %s 2>&1", ops_tool(), fx.dir);
    TQ_CHECK_EQ(status, 0);
    uint64_t final_last = verify_lsn_last(out);
    free(out);
    out = ops_capture(&status, "%s verify --data %s 2>&1", ops_tool(), backup);
    if (status != 0) fprintf(stderr, "%s\n", out);
    TQ_CHECK_EQ(status, 0);
    uint64_t backup_last = verify_lsn_last(out);
    free(out);
    TQ_CHECK_GT(backup_last, 0);
    TQ_CHECK_LE(backup_last, final_last);
    ops_rm_rf(backup);
    tq_fixture_cleanup(&fx);
    return 0;
}
