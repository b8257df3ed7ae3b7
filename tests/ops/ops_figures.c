/* tests/ops/ops_figures.c: the figures of docs/performance-ops.md (not a test: run by hand).
 *
 * Builds a data directory the way ticketqd does (commands applied, then logged with their
 * events records; group commit of 64 commands per batch; 8 MiB segments) and times each tool
 * through its library function on it: verify, replay (events to /dev/null; --at half way),
 * backup (full, then incremental after 10% more traffic), restore, compaction (erase one
 * customer, compress sealed segments) with space before/after. Prints machine info first.
 * Usage: ops_figures [commands (default 200000)] [dir ('-': a temp dir)] [segment KiB (8192)]
 * Build it Release (-DCMAKE_BUILD_TYPE=Release, no sanitizers) for meaningful numbers.
 */
#include "ops.h"
#include "ops_testlib.h"
#include "tq_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t du(const char *dir) {
    int status = 0;
    char *out = ops_capture(&status, "du -sb '%s' | cut -f1", dir);
    uint64_t n = strtoull(out, NULL, 10);
    free(out);
    return n;
}

/* Runs an argv tool with stdout to /dev/null; returns seconds. */
static double run_quiet(int (*tool)(int, char **), int argc, char **argv) {
    fflush(stdout);
    FILE *saved = fdopen(dup(1), "w");
    TQ_CHECK(freopen("/dev/null", "w", stdout) != NULL);
    double t0 = now_s();
    int rc = tool(argc, argv);
    double s = now_s() - t0;
    fflush(stdout);
    TQ_CHECK(dup2(fileno(saved), 1) >= 0);
    fclose(saved);
    TQ_CHECK_EQ(rc, 0);
    return s;
}

int main(int argc, char **argv) {
    int commands = argc > 1 ? atoi(argv[1]) : 200000;
    char dir[256], backup[300], restored[300];
    uint64_t segment_kib = argc > 3 ? strtoull(argv[3], NULL, 10) : 8192;
    if (argc > 2 && strcmp(argv[2], "-") != 0) {
        snprintf(dir, sizeof(dir), "%s", argv[2]);
    } else {
        ops_tmpdir("figures", dir, sizeof(dir));
    }
    snprintf(backup, sizeof(backup), "%s.backup", dir);
    snprintf(restored, sizeof(restored), "%s.restored", dir);
    struct utsname u;
    uname(&u);
    printf("machine: %s %s, %ld cpus; data dir %s, %llu KiB segments\n", u.sysname, u.release,
           sysconf(_SC_NPROCESSORS_ONLN), dir, (unsigned long long)segment_kib);
    uint64_t rng = 12345;
    struct ops_db db;
    uint32_t batch = segment_kib >= 2048 ? 1u << 20 : (uint32_t)(segment_kib * 1024 / 4);
    ops_db_open_ex(&db, dir, segment_kib * 1024, batch, TQ_FSYNC_NONE);
#ifdef TQ_OPS_EVENTS_CODEC
    db.with_events = true;
#endif
    db.sync_every = 64;
    double t0 = now_s();
    ops_gen_setup(&db);
    ops_gen_random(&db, &rng, commands);
    ops_db_close_log(&db);
    double gen_s = now_s() - t0;
    uint64_t bytes = du(dir);
    printf("workload: %d commands (ingest 40%%, reply 30%%, update 30%%), %llu records, %.1f MB "
           "on disk, generated in %.1f s\n",
           commands, (unsigned long long)db.lsn_last, (double)bytes / 1e6, gen_s);

    struct tq_ops_verify_report *r = calloc(1, sizeof(*r));
    struct tq_error error;
    t0 = now_s();
    TQ_CHECK_OK(tq_ops_verify(dir, r, &error), &error);
    double s = now_s() - t0;
    printf("verify: %.2f s, %.0f MB/s, %.0f records/s (%llu segments)\n", s,
           (double)r->bytes / 1e6 / s, (double)r->records / s, (unsigned long long)r->segments);

    char a_replay[] = "replay", a_data[] = "--data", a_jsonl[] = "--jsonl", a_at[] = "--at",
         a_stats[] = "--stats";
    char *replay_argv[] = {a_replay, a_data, dir, a_jsonl, NULL};
    s = run_quiet(tq_ops_replay_main, 4, replay_argv);
    printf("replay --jsonl (all events, cross-checked): %.2f s, %.0f records/s\n", s,
           (double)db.lsn_last / s);
    char at[32];
    snprintf(at, sizeof(at), "%llu", (unsigned long long)(db.lsn_last / 2));
    char *at_argv[] = {a_replay, a_data, dir, a_at, at, a_stats, NULL};
    s = run_quiet(tq_ops_replay_main, 6, at_argv);
    printf("replay --at LSN %s --stats: %.2f s\n", at, s);

    struct tq_ops_backup_result b;
    t0 = now_s();
    TQ_CHECK_OK(tq_ops_backup(dir, backup, false, &b, &error), &error);
    s = now_s() - t0;
    printf("backup (full): %.2f s, %.0f MB/s, %llu files copied\n", s,
           (double)b.bytes_copied / 1e6 / s, (unsigned long long)b.files_copied);
    ops_db_reopen_log(&db);
    ops_gen_random(&db, &rng, commands / 10);
    ops_db_close_log(&db);
    t0 = now_s();
    TQ_CHECK_OK(tq_ops_backup(dir, backup, false, &b, &error), &error);
    s = now_s() - t0;
    printf("backup (incremental, +10%% traffic): %.2f s, %llu files copied (%.1f MB), %llu "
           "reused (%.1f MB)\n",
           s, (unsigned long long)b.files_copied, (double)b.bytes_copied / 1e6,
           (unsigned long long)b.files_reused, (double)b.bytes_reused / 1e6);
    struct tq_ops_restore_options ro;
    memset(&ro, 0, sizeof(ro));
    ro.src = backup;
    ro.data_dir = restored;
    uint64_t lsn = 0;
    t0 = now_s();
    TQ_CHECK_OK(tq_ops_restore(&ro, &lsn, &error), &error);
    printf("restore (copy + verify): %.2f s\n", now_s() - t0);

    struct tq_ops_compact_options co;
    memset(&co, 0, sizeof(co));
    co.dir = dir;
    co.tenant_id = 1;
    co.erase_customers[0] = 1;
    co.erase_count = 1;
    co.compress = true;
    struct tq_ops_compact_result cr;
    TQ_CHECK_OK(tq_ops_compact(&co, &cr, &error), &error);
    printf("compact (snapshot, erase customer 1: %llu records in %llu segments, compress %llu "
           "segments): %.2f s; log+snapshots %.1f MB -> %.1f MB\n",
           (unsigned long long)cr.records_redacted, (unsigned long long)cr.segments_rewritten,
           (unsigned long long)cr.segments_compressed, cr.seconds, (double)cr.bytes_before / 1e6,
           (double)cr.bytes_after / 1e6);
    t0 = now_s();
    TQ_CHECK_OK(tq_ops_verify(dir, r, &error), &error);
    s = now_s() - t0;
    printf("verify after compaction (%llu compressed segments): %.2f s, %.0f records/s\n",
           (unsigned long long)r->segments_compressed, s, (double)r->records / s);
    free(r);
    ops_db_close(&db);
    if (argc <= 2 || strcmp(argv[2], "-") == 0) {
        ops_rm_rf(dir);
        ops_rm_rf(backup);
    }
    ops_rm_rf(restored);
    return 0;
}
