/* tests/ops/test_ops_backup.c: online backup, incremental backup, restore and PITR.
 *
 * Goal: a backup taken while another process appends is a consistent prefix of the history,
 * and restoring it (fully or up to an LSN) yields exactly the live state at that LSN.
 * Method: a child process plays the server: it applies a seeded random workload to a live
 * state, logs every command (one batch each), writes a snapshot midway, and publishes the live
 * state digest after every LSN to a side file. Meanwhile the parent
 *   1. takes a backup (tq_ops_backup) while the child appends, restores it into an empty
 *      directory and checks: restored LSN == backup LSN, digest == the child's digest there;
 *   2. takes a second backup into the same DEST after more appends: the segments sealed before
 *      the first backup are reused, not copied, and the restored state again matches;
 *   3. restores with --to-lsn at random LSNs (CLI and API): digest == digest[LSN];
 *   4. checks verify accepts the backup directory (manifest included) and rejects a backup
 *      with one byte changed, and that restore refuses a non-empty target without --force.
 * Invariants: restore(backup) == live state at backup LSN; PITR(N) == live state at N.
 */
#include "ops.h"
#include "ops_testlib.h"
#include "tq_alloc.h"
#include "tq_test.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHILD_COMMANDS 700
#define SNAPSHOT_AFTER 120

struct digests {
    char (*hex)[OPS_DIGEST_HEX];
    uint64_t count; /* hex[lsn] valid for lsn < count */
};

/* The "server": runs in the child, never returns. */
static void child_main(const char *dir, const char *digest_path, uint64_t seed) {
    uint64_t rng = seed ^ 0x5eed;
    struct ops_db db;
    ops_db_open(&db, dir);
    FILE *out = fopen(digest_path, "w");
    TQ_CHECK(out != NULL);
    uint64_t published = 0;
    ops_gen_setup(&db);
    bool snapshotted = false;
    for (int i = 0; i < CHILD_COMMANDS; i++) {
        ops_gen_random(&db, &rng, 1);
        for (; published < db.lsn_last; published++) {
            char hex[OPS_DIGEST_HEX];
            ops_db_digest_hex(&db, published + 1, hex);
            fprintf(out, "%llu %s\n", (unsigned long long)(published + 1), hex);
        }
        fflush(out);
        if (!snapshotted && db.lsn_last >= SNAPSHOT_AFTER) {
            void *blob = NULL;
            size_t len = 0;
            struct tq_error error;
            TQ_CHECK_OK(tq_state_serialize(db.state, &blob, &len, &error), &error);
            TQ_CHECK_OK(tq_log_snapshot_write(db.log, db.lsn_last, blob, len, &error), &error);
            tq_free(blob, len);
            snapshotted = true;
        }
    }
    fclose(out);
    ops_db_close(&db);
    _exit(0);
}

static void read_digests(const char *path, struct digests *d) {
    if (d->hex == NULL) d->hex = calloc(CHILD_COMMANDS + 16, OPS_DIGEST_HEX);
    TQ_CHECK(d->hex != NULL);
    FILE *in = fopen(path, "r");
    if (in == NULL) return; /* the child has not created it yet */
    unsigned long long lsn;
    char hex[64];
    d->count = 1;
    while (fscanf(in, "%llu %40s", &lsn, hex) == 2) {
        if (strlen(hex) != 32 || lsn != d->count || lsn >= CHILD_COMMANDS + 16) break;
        memcpy(d->hex[lsn], hex, OPS_DIGEST_HEX); /* 32 digits + NUL, checked above */
        d->count = lsn + 1;
    }
    fclose(in);
}

static void wait_for_lsn(const char *path, struct digests *d, uint64_t lsn, pid_t child) {
    for (int i = 0; i < 60000; i++) {
        read_digests(path, d);
        if (d->count > lsn) return;
        int status;
        if (waitpid(child, &status, WNOHANG) == child) {
            read_digests(path, d);
            TQ_CHECK(d->count > lsn);
            return;
        }
        usleep(2000);
    }
    TQ_CHECK(!"the child did not reach the LSN in time");
}

static void state_digest_hex(const char *dir, uint64_t *lsn_out, char out[OPS_DIGEST_HEX]) {
    struct tq_state *state = NULL;
    struct tq_error error;
    TQ_CHECK_OK(tq_ops_state_at(dir, UINT64_MAX, &state, lsn_out, &error), &error);
    uint8_t digest[16];
    tq_state_digest(state, digest);
    ops_digest_hex(digest, out);
    tq_state_free(state);
}

static void check_restore(const char *backup, const char *target, uint64_t to_lsn,
                          uint64_t want_lsn, const struct digests *d) {
    ops_rm_rf(target);
    struct tq_ops_restore_options o;
    memset(&o, 0, sizeof(o));
    o.src = backup;
    o.data_dir = target;
    o.to_lsn = to_lsn;
    uint64_t lsn = 0;
    struct tq_error error;
    TQ_CHECK_OK(tq_ops_restore(&o, &lsn, &error), &error);
    TQ_CHECK_UEQ(lsn, want_lsn);
    char got[OPS_DIGEST_HEX];
    uint64_t applied = 0;
    state_digest_hex(target, &applied, got);
    TQ_CHECK_UEQ(applied, want_lsn);
    TQ_CHECK(want_lsn < d->count);
    TQ_CHECK_STR_EQ(got, d->hex[want_lsn]);
}

/* Parses the manifest: counts copied/reused segment entries; *copied_min_lsn is the smallest
 * lsn_first of a copied segment. */
static void manifest_stats(const char *backup, int *copied, int *reused, uint64_t *copied_min_lsn) {
    char path[512];
    snprintf(path, sizeof(path), "%s/MANIFEST", backup);
    FILE *in = fopen(path, "r");
    TQ_CHECK(in != NULL);
    char line[512];
    *copied = *reused = 0;
    *copied_min_lsn = UINT64_MAX;
    while (fgets(line, sizeof(line), in) != NULL) {
        char rel[128], state[16];
        unsigned long long size, first, last;
        char hash[32];
        if (sscanf(line, "file %127s size %llu xxh3 %31s lsn %llu-%llu %15s", rel, &size, hash,
                   &first, &last, state) != 6 ||
            strncmp(rel, "log/", 4) != 0) {
            continue;
        }
        if (strcmp(state, "copied") == 0) {
            (*copied)++;
            if (first < *copied_min_lsn) *copied_min_lsn = first;
        } else {
            TQ_CHECK_STR_EQ(state, "reused");
            (*reused)++;
        }
    }
    fclose(in);
}

int main(void) {
    uint64_t seed = tq_test_seed("test_ops_backup");
    uint64_t rng = seed;
    char src[256], backup[256], target[300], digest_path[300];
    ops_tmpdir("backup-src", src, sizeof(src));
    ops_tmpdir("backup-dest", backup, sizeof(backup));
    snprintf(target, sizeof(target), "%s.restored", backup);
    snprintf(digest_path, sizeof(digest_path), "%s.digests", src);
    struct digests d;
    memset(&d, 0, sizeof(d));

    fflush(stdout);
    pid_t child = fork();
    TQ_CHECK(child >= 0);
    if (child == 0) child_main(src, digest_path, seed);

    /* 1. A first backup while the child appends. */
    wait_for_lsn(digest_path, &d, 200, child);
    struct tq_ops_backup_result r1, r2;
    struct tq_error error;
    TQ_CHECK_OK(tq_ops_backup(src, backup, false, &r1, &error), &error);
    TQ_CHECK_GE(r1.lsn_last, 200);
    TQ_CHECK_UEQ(r1.files_reused, 0);
    TQ_CHECK_UEQ(r1.snapshot_lsn, SNAPSHOT_AFTER);
    wait_for_lsn(digest_path, &d, r1.lsn_last, child);
    check_restore(backup, target, 0, r1.lsn_last, &d);
    int copied = 0, reused = 0;
    uint64_t min_copied = 0;
    manifest_stats(backup, &copied, &reused, &min_copied);
    TQ_CHECK_GT(copied, 3);
    uint64_t active_first = 0; /* first LSN of the segment that was active at backup 1 */
    {
        char path[512];
        snprintf(path, sizeof(path), "%s/MANIFEST", backup);
        FILE *in = fopen(path, "r");
        TQ_CHECK(in != NULL);
        char line[512];
        while (fgets(line, sizeof(line), in) != NULL) {
            unsigned long long first;
            if (sscanf(line, "file log/%llu.seg", &first) == 1) active_first = first;
        }
        fclose(in);
    }
    TQ_CHECK_GT(active_first, 1);

    /* 2. An incremental backup after more appends. */
    wait_for_lsn(digest_path, &d, r1.lsn_last + 200, child);
    TQ_CHECK_OK(tq_ops_backup(src, backup, false, &r2, &error), &error);
    TQ_CHECK_GT(r2.lsn_last, r1.lsn_last);
    TQ_CHECK_GT(r2.files_reused, 2);
    manifest_stats(backup, &copied, &reused, &min_copied);
    TQ_CHECK_UEQ((uint64_t)reused + 1, r2.files_reused); /* + the unchanged snapshot */
    TQ_CHECK_GE(min_copied, active_first);               /* sealed before: never recopied */
    wait_for_lsn(digest_path, &d, r2.lsn_last, child);
    check_restore(backup, target, 0, r2.lsn_last, &d);

    int status = 0;
    TQ_CHECK_EQ(waitpid(child, &status, 0), child);
    TQ_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    read_digests(digest_path, &d);

    /* 3. Point-in-time restores (every LSN is a batch boundary here). */
    for (int i = 0; i < 4; i++) {
        uint64_t lsn = 1 + tq_test_rand_below(&rng, r2.lsn_last);
        check_restore(backup, target, lsn, lsn, &d);
    }
    uint64_t lsn = SNAPSHOT_AFTER + 1 + tq_test_rand_below(&rng, r2.lsn_last - SNAPSHOT_AFTER);
    ops_rm_rf(target);
    TQ_CHECK_EQ(ops_sh("%s restore %s --data %s --to-lsn %llu > /dev/null", ops_tool(), backup,
                       target, (unsigned long long)lsn),
                0);
    char got[OPS_DIGEST_HEX];
    uint64_t applied = 0;
    state_digest_hex(target, &applied, got);
    TQ_CHECK_UEQ(applied, lsn);
    TQ_CHECK_STR_EQ(got, d.hex[lsn]);

    /* 4. Refusals and verification of the backup directory. */
    TQ_CHECK_EQ(ops_sh("%s restore %s --data %s 2> /dev/null", ops_tool(), backup, target), 1);
    TQ_CHECK_EQ(ops_sh("%s restore %s --data %s --force > /dev/null", ops_tool(), backup, target),
                0);
    char *out = ops_capture(&status, "%s verify --data %s", ops_tool(), backup);
    TQ_CHECK_EQ(status, 0);
    TQ_CHECK(strstr(out, "files match") != NULL);
    free(out);
    TQ_CHECK_EQ(ops_sh("printf 'X' | dd of=%s/log/00000000000000000001.seg bs=1 seek=100 "
                       "conv=notrunc 2> /dev/null",
                       backup),
                0);
    out = ops_capture(&status, "%s verify --data %s 2>&1", ops_tool(), backup);
    TQ_CHECK_EQ(status, 1);
    TQ_CHECK(strstr(out, "00000000000000000001.seg") != NULL);
    free(out);
    /* A truncated manifest is itself damage. */
    TQ_CHECK_EQ(ops_sh("truncate -s 100 %s/MANIFEST", backup), 0);
    out = ops_capture(&status, "%s verify --data %s 2>&1", ops_tool(), backup);
    TQ_CHECK_EQ(status, 1);
    TQ_CHECK(strstr(out, "MANIFEST") != NULL);
    free(out);

    free(d.hex);
    ops_rm_rf(target);
    ops_rm_rf(backup);
    ops_rm_rf(src);
    unlink(digest_path);
    printf("test_ops_backup: ok\n");
    return 0;
}
