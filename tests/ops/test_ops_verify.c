/* tests/ops/test_ops_verify.c: `ticketq verify` proves integrity and finds damage.
 *
 * Goal: verify passes an intact log (and reports its LSN range, counts and chain head), and
 * fails, naming the file and byte offset, on each kind of damage an operator can meet. Method:
 * a seeded random workload over ~20 small segments, copied pristine for each case; then
 *   - a flipped bit at a random position inside a random batch (header or records) of a random
 *     segment that is not the newest one's last batch;
 *   - a missing segment (a middle one deleted);
 *   - a reordered pair (two adjacent segments' contents swapped);
 *   - a sealed segment cut short (damage) versus the newest segment's last batch damaged (a
 *     torn tail, which recovery cuts: a warning, not a failure);
 *   - the chain head differs after one more record (it commits to the whole history).
 * Invariants: exit 0 <=> intact; on damage exit 1 and the message names file and offset.
 */
#include "format.h"
#include "ops.h"
#include "ops_testlib.h"
#include "tq_test.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct seglist {
    char names[256][32];
    int count;
};

static int cmp_names(const void *a, const void *b) {
    return strcmp(a, b);
}

static void list_segments(const char *dir, struct seglist *out) {
    char path[512];
    snprintf(path, sizeof(path), "%s/log", dir);
    DIR *d = opendir(path);
    TQ_CHECK(d != NULL);
    out->count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n == 24 && strcmp(e->d_name + 20, ".seg") == 0 && out->count < 256) {
            memcpy(out->names[out->count++], e->d_name, 25);
        }
    }
    closedir(d);
    qsort(out->names, (size_t)out->count, sizeof(out->names[0]), cmp_names);
}

/* Offsets of the valid batches of a segment file (storage's own checker finds them). */
static int batch_offsets(const char *path, uint64_t *offsets, uint32_t *lens, int cap) {
    int fd = open(path, O_RDONLY);
    TQ_CHECK(fd >= 0);
    struct stat st;
    TQ_CHECK(fstat(fd, &st) == 0);
    size_t size = (size_t)st.st_size;
    uint8_t *buf = malloc(size);
    TQ_CHECK(buf != NULL);
    TQ_CHECK_EQ(pread(fd, buf, size, 0), (ssize_t)size);
    close(fd);
    int n = 0;
    for (uint64_t off = 0; off + TQ_BATCH_HEADER_BYTES <= size && n < cap;) {
        struct tq_batch_header h;
        char why[128];
        if (tq_batch_check(buf + off, size - off, true, &h, why, sizeof(why)) != TQ_BATCH_VALID) {
            break;
        }
        offsets[n] = off;
        lens[n] = TQ_BATCH_HEADER_BYTES + h.area_bytes;
        n++;
        off += tq_batch_disk_bytes(h.area_bytes);
    }
    free(buf);
    return n;
}

static char *run_verify(const char *dir, int *status) {
    return ops_capture(status, "%s verify --data %s 2>&1", ops_tool(), dir);
}

static void copy_dir(const char *from, const char *to) {
    ops_rm_rf(to);
    TQ_CHECK_EQ(ops_sh("cp -a '%s' '%s'", from, to), 0);
}

static void test_intact(const char *dir, const struct ops_db *db) {
    int status = -1;
    char *out = run_verify(dir, &status);
    if (status != 0) fprintf(stderr, "%s", out);
    TQ_CHECK_EQ(status, 0);
    char want[128];
    snprintf(want, sizeof(want), "lsn range: 1..%llu ", (unsigned long long)db->lsn_last);
    TQ_CHECK(strstr(out, want) != NULL);
    snprintf(want, sizeof(want), "records by type: cmd %llu, events 0",
             (unsigned long long)db->lsn_last);
    TQ_CHECK(strstr(out, want) != NULL);
    TQ_CHECK(strstr(out, "tenant_create=1 ") != NULL);
    TQ_CHECK(strstr(out, "agent_create=2 ") != NULL);
    TQ_CHECK(strstr(out, "redactions: 0") != NULL);
    TQ_CHECK(strstr(out, "chain head: ") != NULL);
    free(out);
    struct tq_ops_verify_report *r = calloc(1, sizeof(*r));
    struct tq_error error;
    TQ_CHECK_OK(tq_ops_verify(dir, r, &error), &error);
    TQ_CHECK_UEQ(r->lsn_first, 1);
    TQ_CHECK_UEQ(r->lsn_last, db->lsn_last);
    TQ_CHECK_UEQ(r->records_by_type[TQ_RECORD_TYPE_CMD], db->lsn_last);
    TQ_CHECK_UEQ(r->batches, db->lsn_last); /* one sync per command: one batch each */
    TQ_CHECK_GT(r->segments, 5);
    TQ_CHECK_UEQ(r->cmds_by_type[TQ_CMD_TENANT_CREATE], 1);
    TQ_CHECK(r->chain_head != 0);
    free(r);
}

static void test_flipped_bit(const char *pristine, const char *work, uint64_t *rng) {
    for (int round = 0; round < 6; round++) {
        copy_dir(pristine, work);
        struct seglist segs;
        list_segments(work, &segs);
        TQ_CHECK_GT(segs.count, 3);
        int si = (int)tq_test_rand_below(rng, (uint64_t)segs.count);
        char path[512];
        snprintf(path, sizeof(path), "%s/log/%.64s", work, segs.names[si]);
        uint64_t offsets[64];
        uint32_t lens[64];
        int n = batch_offsets(path, offsets, lens, 64);
        if (si == segs.count - 1 && n < 2) { /* the newest may hold just its torn-tail batch */
            si = 0;
            snprintf(path, sizeof(path), "%s/log/%.64s", work, segs.names[si]);
            n = batch_offsets(path, offsets, lens, 64);
        }
        TQ_CHECK_GT(n, 1);
        /* The newest segment's last batch would be a torn tail (recovery cuts it). */
        int bi = (int)tq_test_rand_below(rng, (uint64_t)(si == segs.count - 1 ? n - 1 : n));
        uint64_t at = offsets[bi] + tq_test_rand_below(rng, lens[bi]);
        int fd = open(path, O_RDWR);
        TQ_CHECK(fd >= 0);
        uint8_t byte;
        TQ_CHECK_EQ(pread(fd, &byte, 1, (off_t)at), 1);
        byte ^= (uint8_t)(1u << tq_test_rand_below(rng, 8));
        TQ_CHECK_EQ(pwrite(fd, &byte, 1, (off_t)at), 1);
        close(fd);
        int status = -1;
        char *out = run_verify(work, &status);
        char want[128];
        snprintf(want, sizeof(want), "%s offset %llu ", segs.names[si],
                 (unsigned long long)offsets[bi]);
        if (status != 1 || strstr(out, want) == NULL) {
            fprintf(stderr, "flip at %s+%llu (batch at %llu): want \"%s\" in:\n%s", segs.names[si],
                    (unsigned long long)at, (unsigned long long)offsets[bi], want, out);
        }
        TQ_CHECK_EQ(status, 1);
        TQ_CHECK(strstr(out, want) != NULL);
        free(out);
    }
}

static void test_missing_segment(const char *pristine, const char *work) {
    copy_dir(pristine, work);
    struct seglist segs;
    list_segments(work, &segs);
    int victim = segs.count / 2;
    char path[512];
    snprintf(path, sizeof(path), "%s/log/%s", work, segs.names[victim]);
    TQ_CHECK_EQ(unlink(path), 0);
    int status = -1;
    char *out = run_verify(work, &status);
    TQ_CHECK_EQ(status, 1);
    /* The gap shows at the segment after the missing one. */
    TQ_CHECK(strstr(out, segs.names[victim + 1]) != NULL);
    TQ_CHECK(strstr(out, "offset 0 ") != NULL);
    TQ_CHECK(strstr(out, "missing") != NULL);
    free(out);
}

static void test_swapped_pair(const char *pristine, const char *work) {
    copy_dir(pristine, work);
    struct seglist segs;
    list_segments(work, &segs);
    int a = segs.count / 3;
    char pa[512], pb[512], pt[600];
    snprintf(pa, sizeof(pa), "%s/log/%s", work, segs.names[a]);
    snprintf(pb, sizeof(pb), "%s/log/%s", work, segs.names[a + 1]);
    snprintf(pt, sizeof(pt), "%s.swap", pa);
    TQ_CHECK_EQ(rename(pa, pt), 0);
    TQ_CHECK_EQ(rename(pb, pa), 0);
    TQ_CHECK_EQ(rename(pt, pb), 0);
    int status = -1;
    char *out = run_verify(work, &status);
    TQ_CHECK_EQ(status, 1);
    TQ_CHECK(strstr(out, segs.names[a]) != NULL);
    TQ_CHECK(strstr(out, "offset 0 ") != NULL);
    free(out);
}

/* A sealed segment cut short is damage; the newest segment's last batch damaged is a torn
 * tail (what a crash mid-write leaves and recovery cuts): reported, not failed. */
static void test_truncated_and_torn(const char *pristine, const char *work) {
    copy_dir(pristine, work);
    struct seglist segs;
    list_segments(work, &segs);
    char path[512];
    snprintf(path, sizeof(path), "%s/log/%s", work, segs.names[1]);
    TQ_CHECK_EQ(truncate(path, 4096 * 3 + 100), 0);
    int status = -1;
    char *out = run_verify(work, &status);
    TQ_CHECK_EQ(status, 1);
    TQ_CHECK(strstr(out, segs.names[1]) != NULL || strstr(out, segs.names[2]) != NULL);
    free(out);

    copy_dir(pristine, work);
    snprintf(path, sizeof(path), "%s/log/%s", work, segs.names[segs.count - 1]);
    uint64_t offsets[64];
    uint32_t lens[64];
    int n = batch_offsets(path, offsets, lens, 64);
    TQ_CHECK_GE(n, 1);
    int fd = open(path, O_RDWR);
    TQ_CHECK(fd >= 0);
    uint8_t byte = 0;
    uint64_t at = offsets[n - 1] + 24; /* commit_us of the last batch: its header check fails */
    TQ_CHECK_EQ(pread(fd, &byte, 1, (off_t)at), 1);
    byte ^= 0x40;
    TQ_CHECK_EQ(pwrite(fd, &byte, 1, (off_t)at), 1);
    close(fd);
    out = run_verify(work, &status);
    TQ_CHECK_EQ(status, 0);
    TQ_CHECK(strstr(out, "warning: the last segment ends in") != NULL);
    free(out);
}

static void test_chain_head_moves(const char *work, struct ops_db *db) {
    struct tq_ops_verify_report *r = calloc(1, sizeof(*r));
    struct tq_error error;
    TQ_CHECK_OK(tq_ops_verify(work, r, &error), &error);
    uint64_t head = r->chain_head;
    ops_gen_ingest(db, "late@example.com", "one more");
    TQ_CHECK_OK(tq_ops_verify(work, r, &error), &error);
    TQ_CHECK(r->chain_head != head);
    TQ_CHECK_UEQ(r->lsn_last, db->lsn_last);
    free(r);
}

int main(void) {
    uint64_t seed = tq_test_seed("test_ops_verify");
    uint64_t rng = seed;
    char pristine[256], work[300];
    ops_tmpdir("verify", pristine, sizeof(pristine));
    snprintf(work, sizeof(work), "%s.work", pristine);
    struct ops_db db;
    ops_db_open(&db, pristine);
    ops_gen_setup(&db);
    ops_gen_random(&db, &rng, 300);
    ops_db_close_log(&db);

    test_intact(pristine, &db);
    test_flipped_bit(pristine, work, &rng);
    test_missing_segment(pristine, work);
    test_swapped_pair(pristine, work);
    test_truncated_and_torn(pristine, work);
    ops_db_reopen_log(&db);
    test_chain_head_moves(pristine, &db);

    ops_db_close(&db);
    ops_rm_rf(work);
    ops_rm_rf(pristine);
    printf("test_ops_verify: ok\n");
    return 0;
}
