/* tests/storage/test_snapshot_compress.c: snapshots and compressed (.zseg) segments.
 *
 * Goal: snapshots are atomic, the newest two are kept, a gated snapshot (taken ahead of
 * durability) is published only when its gate allows and never left behind when it refuses,
 * a corrupt newest falls back to the
 * previous one with a log line; compressed segments read (single records and iteration),
 * recover and verify exactly like plain ones, and a damaged .zseg refuses to open.
 * Method: a log of realistic support messages (support_text.h) in small segments; every sealed
 * segment is compressed; records are compared against the text regenerated from the seed.
 * Invariants checked: byte-identical records before/after compression and reopen; compression
 * ratio > 1 on text (printed); the precondition errors (tail, twice, unknown segment); a
 * crash between rename and unlink (both files present) reopens to the .zseg alone; the
 * rewrite split (begin / write on another thread / install) redacts and compresses while the
 * owner appends and reads, and the old image stays readable until install; a snapshot written
 * from an image (O_DIRECT, or its buffered fallback) is byte-identical to the blob path's.
 */
#include "storage_test.h"
#include "support_text.h"
#include "tq_alloc.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>

static uint64_t seed;

static void test_snapshots(void) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "snap");
    struct st_lines lines = {0};
    struct tq_log_options o = st_options(dir, &lines);
    struct tq_log *log;
    struct tq_log_recovery rec;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, &rec, &err), &err);
    TQ_CHECK_UEQ(rec.snapshot_lsn, 0);
    void *blob;
    size_t len;
    uint64_t lsn;
    TQ_CHECK_ERR(tq_log_snapshot_latest(log, &blob, &len, &lsn, &err), TQ_ERR_NOT_FOUND, &err);
    st_fill(log, seed, 301, 500, 10);
    TQ_CHECK_ERR(tq_log_snapshot_write(log, 301, "x", 1, &err), TQ_ERR_INVALID_ARGUMENT, &err);
    static uint8_t blobs[3][20000];
    size_t lens[3];
    for (int i = 0; i < 3; i++) {
        uint64_t s = seed + (uint64_t)i;
        lens[i] = 1000 + (size_t)tq_test_rand_below(&s, 19000);
        for (size_t k = 0; k < lens[i]; k++)
            blobs[i][k] = (uint8_t)tq_test_rand(&s);
        TQ_CHECK_OK(tq_log_snapshot_write(log, 100 * (uint64_t)(i + 1), blobs[i], lens[i], &err),
                    &err);
    }
    TQ_CHECK_OK(tq_log_snapshot_latest(log, &blob, &len, &lsn, &err), &err);
    TQ_CHECK_UEQ(lsn, 300);
    TQ_CHECK_UEQ(len, lens[2]);
    TQ_CHECK_MEM_EQ(blob, blobs[2], len);
    tq_free(blob, len);
    char path[512];
    snprintf(path, sizeof(path), "%s/snapshots/%020d.snap", dir, 100);
    TQ_CHECK(access(path, F_OK) != 0); /* only the newest two are kept */
    /* corrupt the newest: fall back to 200 with a log line */
    snprintf(path, sizeof(path), "%s/snapshots/%020d.snap", dir, 300);
    int fd = open(path, O_RDWR);
    TQ_CHECK(fd >= 0);
    uint8_t b = 0;
    TQ_CHECK_EQ(pread(fd, &b, 1, 64 + 77), 1);
    b ^= 0x10;
    TQ_CHECK_EQ(pwrite(fd, &b, 1, 64 + 77), 1);
    close(fd);
    lines.count = 0;
    lines.text[0] = '\0';
    TQ_CHECK_OK(tq_log_snapshot_latest(log, &blob, &len, &lsn, &err), &err);
    TQ_CHECK_UEQ(lsn, 200);
    TQ_CHECK_MEM_EQ(blob, blobs[1], lens[1]);
    tq_free(blob, len);
    TQ_CHECK(strstr(lines.text, "corrupt snapshot") != NULL);
    tq_log_close(log);
    TQ_CHECK_OK(tq_log_open(&o, &log, &rec, &err), &err);
    TQ_CHECK_UEQ(rec.snapshot_lsn, 200);
    /* the records after the snapshot are all there: replay from snapshot_lsn + 1 */
    struct tq_log_iter *it;
    TQ_CHECK_OK(tq_log_iter_open(log, rec.snapshot_lsn + 1, &it, &err), &err);
    struct tq_log_record r;
    uint64_t count = 0;
    while (tq_log_iter_next(it, &r, &err) == TQ_OK)
        count++;
    tq_log_iter_close(it);
    TQ_CHECK_UEQ(count, 100);
    /* both kept snapshots damaged (the older one truncated): none is valid */
    snprintf(path, sizeof(path), "%s/snapshots/%020d.snap", dir, 200);
    TQ_CHECK_EQ(truncate(path, 100), 0);
    TQ_CHECK_ERR(tq_log_snapshot_latest(log, &blob, &len, &lsn, &err), TQ_ERR_NOT_FOUND, &err);
    tq_log_close(log);
    st_rmtree(dir);
}

/* ---- a gated write: a snapshot taken ahead of durability (server/snapshot.c's child) ---- */

struct gate_probe {
    const char *dir;
    uint64_t lsn;
    size_t blob_bytes;
    bool answer; /* what the gate returns */
    int calls;
};

/* The gate sees the temp file complete and nothing published yet, whatever it answers. */
static bool probe_gate(void *ctx, uint64_t lsn, struct tq_error *error) {
    struct gate_probe *p = ctx;
    p->calls++;
    TQ_CHECK_UEQ(lsn, p->lsn);
    char tmp[512], final[512];
    snprintf(tmp, sizeof(tmp), "%s/snapshots/%020" PRIu64 ".snap.tmp", p->dir, lsn);
    snprintf(final, sizeof(final), "%s/snapshots/%020" PRIu64 ".snap", p->dir, lsn);
    struct stat sb;
    TQ_CHECK_EQ(stat(tmp, &sb), 0);
    TQ_CHECK_EQ(sb.st_size, (off_t)(64 + p->blob_bytes));
    TQ_CHECK(access(final, F_OK) != 0);
    if (!p->answer) (void)tq_error_set(error, TQ_ERR_UNAVAILABLE, "stopped before %" PRIu64, lsn);
    return p->answer;
}

/* A gated image write, as server/snapshot.c's forked child makes it (tq_log_snapshot_write_image
 * with a gate), at an LSN appended but not yet durable. */
static void test_snapshot_gated(void) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "gate");
    struct tq_log_options o = st_options(dir, NULL);
    struct tq_log *log;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    st_fill(log, seed, 101, 300, 10); /* LSN 1..100 acknowledged */
    uint64_t lsn = 0;
    TQ_CHECK_OK(tq_log_append(log, 1, "staged", 6, &lsn, &err), &err);
    TQ_CHECK_UEQ(lsn, 101);
    TQ_CHECK_UEQ(tq_log_acked_lsn(log), 100); /* appended, not durable */
    enum { BLOB_BYTES = 5000, IMAGE_CAP = 2 * 4096 };
    _Static_assert(TQ_SNAPSHOT_HEADER_BYTES + BLOB_BYTES <= IMAGE_CAP, "room for the padding");
    uint8_t *image =
        mmap(NULL, IMAGE_CAP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    TQ_CHECK(image != MAP_FAILED);
    static uint8_t blob[BLOB_BYTES];
    uint64_t s = seed;
    for (size_t k = 0; k < sizeof(blob); k++)
        blob[k] = (uint8_t)tq_test_rand(&s);
    memcpy(image + TQ_SNAPSHOT_HEADER_BYTES, blob, sizeof(blob));
    struct gate_probe p = {.dir = dir, .lsn = 101, .blob_bytes = sizeof(blob)};
    /* The plain write refuses an LSN that is not durable, the gated one an LSN never appended. */
    TQ_CHECK_ERR(
        tq_log_snapshot_write_image(log, 101, image, IMAGE_CAP, sizeof(blob), NULL, NULL, &err),
        TQ_ERR_INVALID_ARGUMENT, &err);
    TQ_CHECK(strstr(err.msg, "not acknowledged") != NULL);
    TQ_CHECK_ERR(
        tq_log_snapshot_write_image(log, 102, image, IMAGE_CAP, sizeof(blob), probe_gate, &p, &err),
        TQ_ERR_INVALID_ARGUMENT, &err);
    TQ_CHECK(strstr(err.msg, "not appended") != NULL);
    TQ_CHECK_EQ(p.calls, 0);
    /* The gate refuses (the server stopped first): nothing published, the temp file gone. */
    TQ_CHECK_ERR(
        tq_log_snapshot_write_image(log, 101, image, IMAGE_CAP, sizeof(blob), probe_gate, &p, &err),
        TQ_ERR_UNAVAILABLE, &err);
    TQ_CHECK(strstr(err.msg, "stopped before 101") != NULL);
    TQ_CHECK_EQ(p.calls, 1);
    char path[512];
    snprintf(path, sizeof(path), "%s/snapshots/%020d.snap.tmp", dir, 101);
    TQ_CHECK(access(path, F_OK) != 0);
    void *got = NULL;
    size_t len = 0;
    uint64_t snap = 0;
    TQ_CHECK_ERR(tq_log_snapshot_latest(log, &got, &len, &snap, &err), TQ_ERR_NOT_FOUND, &err);
    /* The gate lets it through: published at 101, exactly the blob. */
    p.answer = true;
    TQ_CHECK_OK(
        tq_log_snapshot_write_image(log, 101, image, IMAGE_CAP, sizeof(blob), probe_gate, &p, &err),
        &err);
    TQ_CHECK_EQ(p.calls, 2);
    TQ_CHECK(access(path, F_OK) != 0);
    TQ_CHECK_OK(tq_log_snapshot_latest(log, &got, &len, &snap, &err), &err);
    TQ_CHECK_UEQ(snap, 101);
    TQ_CHECK_UEQ(len, sizeof(blob));
    TQ_CHECK_MEM_EQ(got, blob, len);
    tq_free(got, len);
    munmap(image, IMAGE_CAP);
    TQ_CHECK_OK(tq_log_sync(log, &err), &err);
    tq_log_close(log);
    st_rmtree(dir);
}

/* Reads a whole snapshot file into a tq_alloc'd buffer (*len_out bytes). */
static uint8_t *read_snap_file(const char *dir, uint64_t lsn, size_t *len_out) {
    char path[512];
    snprintf(path, sizeof(path), "%s/snapshots/%020" PRIu64 ".snap", dir, lsn);
    int fd = open(path, O_RDONLY);
    TQ_CHECK(fd >= 0);
    struct stat sb;
    TQ_CHECK_EQ(fstat(fd, &sb), 0);
    uint8_t *buf = tq_xalloc((size_t)sb.st_size);
    TQ_CHECK_EQ(pread(fd, buf, (size_t)sb.st_size, 0), (ssize_t)sb.st_size);
    close(fd);
    *len_out = (size_t)sb.st_size;
    return buf;
}

/* A file written from an image is the file written from the same blob, byte for byte, but for
 * the creation time and the header hash that covers it. */
static void check_same_file(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len) {
    TQ_CHECK_UEQ(a_len, b_len);
    TQ_CHECK_MEM_EQ(a, b, 32);           /* magic, version, flags, lsn, blob_bytes, blob_hash */
    TQ_CHECK_MEM_EQ(a + 40, b + 40, 16); /* reserved */
    TQ_CHECK_MEM_EQ(a + 64, b + 64, a_len - 64);
}

/* True when DIR/snapshots holds a *.tmp file. */
static bool snap_tmp_left(const char *dir) {
    char sd[512];
    snprintf(sd, sizeof(sd), "%s/snapshots", dir);
    DIR *d = opendir(sd);
    TQ_CHECK(d != NULL);
    bool found = false;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        found = found || (n > 4 && strcmp(de->d_name + n - 4, ".tmp") == 0);
    }
    closedir(d);
    return found;
}

/* Goal: tq_log_snapshot_write_image (the background snapshot's O_DIRECT path) writes exactly
 * the file tq_log_snapshot_write writes for the same blob, through O_DIRECT and through the
 * buffered fallback (a file system refusing O_DIRECT, forced by the fault seam), and a failed
 * write (ENOSPC from the seam) reports NO_SPACE with the file named and leaves no temp file.
 * Sizes: whole direct chunks plus a partial block (padding then ftruncate), an exact multiple
 * of the block size (no padding), and an empty blob. */
static void test_snapshot_image(void) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "image");
    struct tq_io_faults faults;
    memset(&faults, 0, sizeof(faults));
    struct tq_log_options o = st_options(dir, NULL);
    o.faults = &faults;
    o.snapshots_kept = 32;
    struct tq_log *log;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    st_fill(log, seed, 301, 300, 10); /* LSN 1..300 acknowledged */
    const size_t lens[] = {(3u << 20) + 777, 8 * 4096 - TQ_SNAPSHOT_HEADER_BYTES, 0};
    uint64_t lsn = 10, direct_before = 0;
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        for (int fallback = 0; fallback < 2; fallback++, lsn += 10) {
            const size_t len = lens[i];
            const size_t cap = (TQ_SNAPSHOT_HEADER_BYTES + len + 4095) / 4096 * 4096 + 4096;
            uint8_t *image =
                mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            TQ_CHECK(image != MAP_FAILED);
            memset(image, 0xA5, cap); /* header and padding must be overwritten */
            uint64_t s = seed + lsn;
            for (size_t k = 0; k < len; k++)
                image[TQ_SNAPSHOT_HEADER_BYTES + k] = (uint8_t)tq_test_rand(&s);
            uint8_t *blob = tq_xalloc(len + 1);
            memcpy(blob, image + TQ_SNAPSHOT_HEADER_BYTES, len);
            /* the old path's file, then the image's over it at the same LSN */
            TQ_CHECK_OK(tq_log_snapshot_write(log, lsn, blob, len, &err), &err);
            size_t a_len;
            uint8_t *a = read_snap_file(dir, lsn, &a_len);
            TQ_CHECK_UEQ(a_len, TQ_SNAPSHOT_HEADER_BYTES + len);
            faults.snapshot_direct_einval = fallback != 0;
            direct_before = faults.snapshot_direct_writes;
            TQ_CHECK_OK(tq_log_snapshot_write_image(log, lsn, image, cap, len, NULL, NULL, &err),
                        &err);
            TQ_CHECK_UEQ(faults.snapshot_direct_writes, direct_before + (fallback ? 0 : 1));
            size_t b_len;
            uint8_t *b = read_snap_file(dir, lsn, &b_len);
            check_same_file(a, a_len, b, b_len);
            TQ_CHECK(!snap_tmp_left(dir));
            /* it loads: the header hash covers the new creation time */
            void *got = NULL;
            size_t got_len = 0;
            uint64_t got_lsn = 0;
            TQ_CHECK_OK(tq_log_snapshot_latest(log, &got, &got_len, &got_lsn, &err), &err);
            TQ_CHECK_UEQ(got_lsn, lsn);
            TQ_CHECK_UEQ(got_len, len);
            if (len > 0) {
                TQ_CHECK_MEM_EQ(got, blob, len);
                tq_free(got, got_len);
            }
            tq_free(a, a_len);
            tq_free(b, b_len);
            tq_free(blob, len + 1);
            munmap(image, cap);
        }
    }
    faults.snapshot_direct_einval = false;
    /* An image without room for the padding is refused before any file is made. */
    const size_t len = 3 * 4096;
    uint8_t *image =
        mmap(NULL, 5 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    TQ_CHECK(image != MAP_FAILED);
    TQ_CHECK_ERR(tq_log_snapshot_write_image(log, 200, image, 3 * 4096 + 64, len, NULL, NULL, &err),
                 TQ_ERR_INVALID_ARGUMENT, &err);
    TQ_CHECK(strstr(err.msg, "no room") != NULL);
    /* An LSN not yet durable is refused without a gate; not appended, with one. */
    TQ_CHECK_ERR(tq_log_snapshot_write_image(log, 301, image, 5 * 4096, len, NULL, NULL, &err),
                 TQ_ERR_INVALID_ARGUMENT, &err);
    struct gate_probe p = {.dir = dir, .lsn = 300, .blob_bytes = len};
    TQ_CHECK_ERR(tq_log_snapshot_write_image(log, 301, image, 5 * 4096, len, probe_gate, &p, &err),
                 TQ_ERR_INVALID_ARGUMENT, &err);
    /* A gate that refuses leaves nothing behind; one that allows publishes. */
    TQ_CHECK_ERR(tq_log_snapshot_write_image(log, 300, image, 5 * 4096, len, probe_gate, &p, &err),
                 TQ_ERR_UNAVAILABLE, &err);
    TQ_CHECK(!snap_tmp_left(dir));
    TQ_CHECK_EQ(p.calls, 1);
    /* A full disk (ENOSPC on every write), direct and buffered, image and blob: NO_SPACE, the
     * temp file named, none left behind, the newest snapshot still the previous one. */
    faults.snapshot_write_errno = ENOSPC;
    for (int fallback = 0; fallback < 3; fallback++) {
        faults.snapshot_direct_einval = fallback == 1;
        uint64_t injected = faults.injected;
        enum tq_err e = fallback == 2 ? tq_log_snapshot_write(log, 290, image + 64, len, &err)
                                      : tq_log_snapshot_write_image(log, 290, image, 5 * 4096, len,
                                                                    NULL, NULL, &err);
        TQ_CHECK_ERR(e, TQ_ERR_NO_SPACE, &err);
        TQ_CHECK(strstr(err.msg, "00000000000000000290.snap.tmp") != NULL);
        TQ_CHECK(strstr(err.msg, strerror(ENOSPC)) != NULL);
        TQ_CHECK_UEQ(faults.injected, injected + 1);
        TQ_CHECK(!snap_tmp_left(dir));
    }
    faults.snapshot_write_errno = 0;
    void *got = NULL;
    size_t got_len = 0;
    uint64_t got_lsn = 0;
    TQ_CHECK_OK(tq_log_snapshot_latest(log, &got, &got_len, &got_lsn, &err), &err);
    TQ_CHECK_UEQ(got_lsn, lsn - 10);
    munmap(image, 5 * 4096);
    TQ_CHECK_OK(tq_log_sync(log, &err), &err);
    tq_log_close(log);
    st_rmtree(dir);
}

#define TEXT_RECORDS 6000u

static void text_of(uint64_t lsn, char *out, uint32_t *len) {
    uint64_t s = seed ^ (lsn * 0x2545f4914f6cdd1dull);
    *len = st_support_message(&s, out, 4096);
}

static void check_text(struct tq_log *log, uint64_t lsn) {
    static char want[4096], got[4096];
    uint32_t len;
    text_of(lsn, want, &len);
    struct tq_log_record r;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_read(log, lsn, &r, got, sizeof(got), &err), &err);
    TQ_CHECK_UEQ(r.len, len);
    TQ_CHECK_MEM_EQ(r.payload, want, len);
}

static void test_compress(void) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "zseg");
    struct tq_log_options o = st_options(dir, NULL);
    o.segment_bytes_max = 1024 * 1024;
    struct tq_log *log;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    static char text[4096];
    for (uint64_t i = 1; i <= TEXT_RECORDS; i++) {
        uint32_t len;
        text_of(i, text, &len);
        uint64_t lsn;
        enum tq_err e = tq_log_append(log, 1, text, len, &lsn, &err);
        if (e == TQ_ERR_RESOURCE_EXHAUSTED) {
            TQ_CHECK_OK(tq_log_sync(log, &err), &err);
            e = tq_log_append(log, 1, text, len, &lsn, &err);
        }
        TQ_CHECK_OK(e, &err);
        TQ_CHECK_UEQ(lsn, i);
    }
    TQ_CHECK_OK(tq_log_sync(log, &err), &err);
    uint64_t segs[64];
    size_t n = tq_log_segments(log, segs, 64);
    TQ_CHECK_GE(n, 3);
    uint64_t raw = 0, comp = 0, payload = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        struct tq_compress_stats st;
        TQ_CHECK_OK(tq_log_compress_segment(log, segs[i], &st, &err), &err);
        TQ_CHECK_GT(st.blocks, 1);
        raw += st.raw_bytes;
        comp += st.compressed_bytes;
        payload += st.payload_bytes;
    }
    printf("compression: %" PRIu64 " payload bytes, %" PRIu64 " segment bytes -> %" PRIu64
           " (%.2fx of payload, %.2fx of segment)\n",
           payload, raw, comp, (double)payload / (double)comp, (double)raw / (double)comp);
    TQ_CHECK_LT(comp * 2, payload); /* text compresses well */
    TQ_CHECK_ERR(tq_log_compress_segment(log, segs[n - 1], NULL, &err), TQ_ERR_FAILED_PRECONDITION,
                 &err);
    TQ_CHECK_ERR(tq_log_compress_segment(log, segs[0], NULL, &err), TQ_ERR_FAILED_PRECONDITION,
                 &err);
    TQ_CHECK_ERR(tq_log_compress_segment(log, 999999, NULL, &err), TQ_ERR_NOT_FOUND, &err);
    /* single records, random order, from the live handle */
    uint64_t rng = seed;
    for (int k = 0; k < 500; k++)
        check_text(log, 1 + tq_test_rand_below(&rng, TEXT_RECORDS));
    /* append more after compression */
    for (uint64_t i = TEXT_RECORDS + 1; i <= TEXT_RECORDS + 50; i++) {
        uint32_t len;
        text_of(i, text, &len);
        uint64_t lsn;
        TQ_CHECK_OK(tq_log_append(log, 1, text, len, &lsn, &err), &err);
    }
    TQ_CHECK_OK(tq_log_sync(log, &err), &err);
    tq_log_close(log);

    /* reopen: recovery verifies the .zseg batches; iterate everything */
    struct tq_log_recovery rec;
    TQ_CHECK_OK(tq_log_open(&o, &log, &rec, &err), &err);
    TQ_CHECK_UEQ(rec.lsn_last, TEXT_RECORDS + 50);
    struct tq_log_iter *it;
    TQ_CHECK_OK(tq_log_iter_open(log, 0, &it, &err), &err);
    struct tq_log_record r;
    uint64_t expect = 1;
    static char want[4096];
    while (tq_log_iter_next(it, &r, &err) == TQ_OK) {
        uint32_t len;
        text_of(expect, want, &len);
        TQ_CHECK_UEQ(r.lsn, expect);
        TQ_CHECK_UEQ(r.len, len);
        TQ_CHECK_MEM_EQ(r.payload, want, len);
        expect++;
    }
    tq_log_iter_close(it);
    TQ_CHECK_UEQ(expect, TEXT_RECORDS + 51);
    tq_log_close(log);

    /* a crash after the rename but before the unlink: both files; open keeps the .zseg */
    char paths[64][512];
    int count = st_segments(dir, paths, 64);
    TQ_CHECK_GT(count, 1);
    char plain[520];
    snprintf(plain, sizeof(plain), "%.*s.seg", (int)(strlen(paths[0]) - 5), paths[0]);
    TQ_CHECK(strstr(paths[0], ".zseg") != NULL);
    int fd = open(plain, O_WRONLY | O_CREAT, 0644);
    TQ_CHECK(fd >= 0);
    TQ_CHECK_EQ(write(fd, "garbage", 7), 7);
    close(fd);
    TQ_CHECK_OK(tq_log_open(&o, &log, &rec, &err), &err);
    TQ_CHECK(access(plain, F_OK) != 0);
    check_text(log, 1);
    tq_log_close(log);

    /* damage a compressed block: refuse, naming the file */
    fd = open(paths[1], O_RDWR);
    TQ_CHECK(fd >= 0);
    uint8_t b;
    TQ_CHECK_EQ(pread(fd, &b, 1, 3000), 1);
    b ^= 0x40;
    TQ_CHECK_EQ(pwrite(fd, &b, 1, 3000), 1);
    close(fd);
    TQ_CHECK_ERR(tq_log_open(&o, &log, &rec, &err), TQ_ERR_CORRUPT, &err);
    TQ_CHECK(strstr(err.msg, strrchr(paths[1], '/') + 1) != NULL);
    st_rmtree(dir);
}

/* Redaction: payloads zeroed in place, checksums and chain still verify, then compressed. */
static void test_redact(void) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "redact");
    struct tq_log_options o = st_options(dir, NULL);
    struct tq_log *log;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    st_fill(log, seed, 801, 2000, 9);
    uint64_t segs[64];
    size_t n = tq_log_segments(log, segs, 64);
    TQ_CHECK_GE(n, 3);
    uint64_t victims[40];
    uint64_t rng = seed;
    size_t nv = 0;
    while (nv < 40) {
        uint64_t lsn = 1 + tq_test_rand_below(&rng, segs[2] - 1); /* in the first two segments */
        uint8_t tmp[4096];
        if (st_payload(seed, lsn, 2000, tmp) > 0) victims[nv++] = lsn;
    }
    uint64_t total = 0;
    for (int k = 0; k < 2; k++) {
        uint64_t got = 0;
        TQ_CHECK_OK(tq_log_redact_segment(log, segs[k], victims, nv, &got, &err), &err);
        total += got;
    }
    TQ_CHECK_GT(total, 0);
    TQ_CHECK_ERR(tq_log_redact_segment(log, segs[n - 1], victims, nv, NULL, &err),
                 TQ_ERR_FAILED_PRECONDITION, &err);
    tq_log_close(log);
    struct tq_log_recovery rec;
    TQ_CHECK_OK(tq_log_open(&o, &log, &rec, &err), &err); /* checksums and chain still verify */
    TQ_CHECK_UEQ(rec.lsn_last, 800);
    TQ_CHECK_OK(tq_log_compress_segment(log, segs[0], NULL, &err), &err);
    static uint8_t got[4096];
    for (int pass = 0; pass < 2; pass++) {
        uint64_t seen = 0;
        for (uint64_t lsn = 1; lsn <= 800; lsn++) {
            bool victim = false;
            for (size_t i = 0; i < nv; i++)
                victim = victim || victims[i] == lsn;
            if (!victim) {
                st_check_record(log, seed, lsn, 2000);
                continue;
            }
            struct tq_log_record r;
            TQ_CHECK_OK(tq_log_read(log, lsn, &r, got, sizeof(got), &err), &err);
            TQ_CHECK_UEQ(r.flags, TQ_RECORD_REDACTED);
            TQ_CHECK_UEQ(r.len, 0);
            TQ_CHECK_UEQ(r.type, st_type(lsn));
            seen++;
        }
        TQ_CHECK_UEQ(seen, total);
        st_fill(log, seed, 801 + 10 * (uint64_t)(pass + 1), 2000, 3);
        tq_log_close(log);
        TQ_CHECK_OK(tq_log_open(&o, &log, &rec, &err), &err);
    }
    tq_log_close(log);
    st_rmtree(dir);
}

/* The rewrite split for a helper thread (what online compaction does): begin on the owning
 * thread, write on another thread while the owner keeps appending and reading (the old images
 * stay readable), install on the owner; then the records read back redacted / compressed,
 * reopening verifies, and a rewrite with nothing to change touches no file. */
struct rewrite_job {
    struct tq_log_rewrite *rw[2];
    const uint64_t *victims;
    size_t nv;
    struct tq_log_rewrite_stats stats[2];
    enum tq_err err[2];
    uint64_t io_calls;
};

static void count_io(void *ctx, uint64_t bytes) {
    struct rewrite_job *job = ctx;
    TQ_CHECK_GT(bytes, 0);
    job->io_calls++;
}

static void *rewrite_thread(void *arg) {
    struct rewrite_job *job = arg;
    for (int k = 0; k < 2; k++) {
        struct tq_log_rewrite_options o = {.lsns = k == 0 ? job->victims : NULL,
                                           .count = k == 0 ? job->nv : 0,
                                           .compress = true,
                                           .io_done = count_io,
                                           .io_ctx = job};
        struct tq_error err;
        job->err[k] = tq_log_rewrite_write(job->rw[k], &o, &job->stats[k], &err);
        if (job->err[k] != TQ_OK) fprintf(stderr, "rewrite %d: %s\n", k, err.msg);
    }
    return NULL;
}

static int u64_cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_rewrite_thread(void) {
    char dir[256];
    st_mkdtemp(dir, sizeof(dir), "rewrite");
    struct tq_log_options o = st_options(dir, NULL);
    struct tq_log *log;
    struct tq_error err;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &err), &err);
    st_fill(log, seed, 801, 2000, 9);
    uint64_t segs[64];
    size_t n = tq_log_segments(log, segs, 64);
    TQ_CHECK_GE(n, 3);
    uint64_t victims[20];
    size_t nv = 0;
    uint64_t rng = seed ^ 0x5eed;
    while (nv < 20) {
        uint64_t lsn = segs[0] + tq_test_rand_below(&rng, segs[1] - segs[0]);
        uint8_t tmp[4096];
        bool dup = false;
        for (size_t i = 0; i < nv; i++)
            dup = dup || victims[i] == lsn;
        if (!dup && st_payload(seed, lsn, 2000, tmp) > 0) victims[nv++] = lsn;
    }
    qsort(victims, nv, sizeof(victims[0]), u64_cmp);
    struct rewrite_job job = {.victims = victims, .nv = nv};
    TQ_CHECK_OK(tq_log_rewrite_begin(log, segs[0], &job.rw[0], &err), &err);
    TQ_CHECK_OK(tq_log_rewrite_begin(log, segs[1], &job.rw[1], &err), &err);
    struct tq_log_rewrite *tail = NULL;
    TQ_CHECK_ERR(tq_log_rewrite_begin(log, segs[n - 1], &tail, &err), TQ_ERR_FAILED_PRECONDITION,
                 &err);
    TQ_CHECK(tail == NULL);
    pthread_t t;
    TQ_CHECK_EQ(pthread_create(&t, NULL, rewrite_thread, &job), 0);
    /* Meanwhile the owner appends (new segments: the table grows) and reads old records. */
    st_fill(log, seed, 1201, 2000, 7);
    for (uint64_t lsn = 1; lsn < segs[2]; lsn += 13)
        st_check_record(log, seed, lsn, 2000);
    TQ_CHECK_EQ(pthread_join(t, NULL), 0);
    for (int k = 0; k < 2; k++) {
        TQ_CHECK_OK(job.err[k], &err);
        TQ_CHECK(job.stats[k].rewritten);
        TQ_CHECK_LT(job.stats[k].bytes_after, job.stats[k].raw_bytes);
    }
    TQ_CHECK_UEQ(job.stats[0].records_redacted, nv);
    TQ_CHECK_UEQ(job.stats[1].records_redacted, 0);
    TQ_CHECK_GT(job.io_calls, 2);
    /* Not installed yet: the owner still reads the old image, unredacted. */
    st_check_record(log, seed, victims[0], 2000);
    for (int k = 0; k < 2; k++) {
        tq_log_rewrite_install(log, job.rw[k]);
        tq_log_rewrite_free(job.rw[k]);
    }
    static uint8_t got[4096];
    for (uint64_t lsn = 1; lsn < 1201; lsn++) {
        if (bsearch(&lsn, victims, nv, sizeof(victims[0]), u64_cmp) == NULL) {
            st_check_record(log, seed, lsn, 2000);
            continue;
        }
        struct tq_log_record r;
        TQ_CHECK_OK(tq_log_read(log, lsn, &r, got, sizeof(got), &err), &err);
        TQ_CHECK_UEQ(r.flags, TQ_RECORD_REDACTED);
        TQ_CHECK_UEQ(r.len, 0);
    }
    /* Nothing left to do on a compressed, redacted segment: no file is written. */
    struct tq_log_rewrite *again = NULL;
    TQ_CHECK_OK(tq_log_rewrite_begin(log, segs[0], &again, &err), &err);
    struct tq_log_rewrite_options none = {.lsns = victims, .count = nv, .compress = true};
    struct tq_log_rewrite_stats st;
    TQ_CHECK_OK(tq_log_rewrite_write(again, &none, &st, &err), &err);
    TQ_CHECK(!st.rewritten);
    TQ_CHECK_UEQ(st.records_redacted, 0);
    tq_log_rewrite_install(log, again); /* a no-op */
    tq_log_rewrite_free(again);
    tq_log_close(log);
    char paths[64][512];
    int files = st_segments(dir, paths, 64);
    TQ_CHECK(strstr(paths[0], ".zseg") != NULL);
    TQ_CHECK(strstr(paths[1], ".zseg") != NULL);
    TQ_CHECK_GE(files, 4);
    struct tq_log_recovery rec;
    TQ_CHECK_OK(tq_log_open(&o, &log, &rec, &err), &err); /* checksums and chain verify */
    TQ_CHECK_UEQ(rec.lsn_last, 1200);
    tq_log_close(log);
    st_rmtree(dir);
}

int main(void) {
    seed = tq_test_seed("test_snapshot_compress");
    test_rewrite_thread();
    test_snapshots();
    test_snapshot_gated();
    test_snapshot_image();
    test_compress();
    test_redact();
    printf("test_snapshot_compress: ok\n");
    return 0;
}
