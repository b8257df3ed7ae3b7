/* storage/snapshot.c: state snapshots, DIR/snapshots/<lsn %020>.snap.
 *
 * A snapshot is an opaque blob (the state machine's serialised state) covering every record up
 * to its LSN. Layout (little-endian, 64-byte header then the blob):
 *   off size field
 *     0    4 magic        TQ_SNAP_MAGIC ("SNP1")
 *     4    2 version      TQ_FORMAT_VERSION
 *     6    2 flags        0
 *     8    8 lsn          the last LSN the blob covers
 *    16    8 blob_bytes
 *    24    8 blob_hash    XXH3-64 of the blob
 *    32    8 created_us
 *    40   16 reserved     zero
 *    56    8 header_hash  XXH3-64 of bytes 0..55
 * Written from a blob (tq_log_snapshot_write: header, then the blob, buffered and paced) or from
 * an image (tq_log_snapshot_write_image: the caller left the header's 64 bytes in front of the
 * blob in page-aligned memory, so the file is one contiguous O_DIRECT write; buffered where the
 * file system refuses O_DIRECT). Both produce the same bytes.
 * Writes are atomic: <name>.tmp, fsync, rename, fsync dir. A gated write (an image written
 * ahead of durability) waits for its gate between the fsync and the rename: the rename is the
 * publication, and it happens only once every record <= lsn is durable. The newest
 * options.snapshots_kept (default 2) are kept; a snapshot that fails validation is skipped with a
 * log line and the previous one is used if the log still holds every record after it. Invariant: a
 * returned blob always matches its hash.
 */
#include "log_impl.h"

#include "faults.h"
#include "tq_alloc.h"
#include "tq_assert.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define SNAPSHOTS_LISTED_MAX 64

struct snap_header {
    uint32_t magic;
    uint16_t version;
    uint16_t flags;
    uint64_t lsn;
    uint64_t blob_bytes;
    uint64_t blob_hash;
    uint64_t created_us;
    uint8_t reserved[16];
    uint64_t header_hash;
};
_Static_assert(sizeof(struct snap_header) == 64, "snapshot format");
_Static_assert(offsetof(struct snap_header, header_hash) == 56, "snapshot format");
_Static_assert(sizeof(struct snap_header) == TQ_SNAPSHOT_HEADER_BYTES, "snapshot format");

static int cmp_desc(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x > y ? -1 : x < y;
}

/* Lists snapshot LSNs, newest first. */
static size_t snap_list(const char *dir, uint64_t *lsns, size_t cap) {
    DIR *d = opendir(dir);
    if (d == NULL) return 0;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < cap) {
        if (strlen(de->d_name) != 25 || strcmp(de->d_name + 20, ".snap") != 0) continue;
        bool digits = true;
        for (int i = 0; i < 20; i++)
            digits = digits && de->d_name[i] >= '0' && de->d_name[i] <= '9';
        if (digits) lsns[n++] = strtoull(de->d_name, NULL, 10);
    }
    closedir(d);
    qsort(lsns, n, sizeof(*lsns), cmp_desc);
    return n;
}

static void snap_path(const struct tq_log *log, uint64_t lsn, const char *suffix, char *out,
                      size_t cap) {
    snprintf(out, cap, "%s/%020" PRIu64 ".snap%s", log->snap_dir, lsn, suffix);
}

/* Reads and validates one snapshot. On TQ_OK *blob_out is the caller's (tq_free). */
static enum tq_err snap_load(const struct tq_log *log, uint64_t lsn, void **blob_out,
                             size_t *len_out, struct tq_error *error) {
    char path[4096];
    snap_path(log, lsn, "", path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return tq_error_set(error, TQ_ERR_IO, "open %s: %s", path, strerror(errno));
    struct snap_header h;
    enum tq_err err = TQ_OK;
    void *blob = NULL;
    ssize_t got = pread(fd, &h, sizeof(h), 0);
    if (got != (ssize_t)sizeof(h) || h.magic != TQ_SNAP_MAGIC || h.version != TQ_FORMAT_VERSION ||
        XXH3_64bits(&h, offsetof(struct snap_header, header_hash)) != h.header_hash ||
        h.lsn != lsn || h.blob_bytes > ((uint64_t)1 << 40)) {
        err = tq_error_set(error, TQ_ERR_CORRUPT, "corrupt snapshot %s: bad header", path);
        goto done;
    }
    blob = tq_alloc(h.blob_bytes > 0 ? (size_t)h.blob_bytes : 1);
    if (blob == NULL) {
        err = tq_error_set(error, TQ_ERR_RESOURCE_EXHAUSTED, "snapshot %s: out of memory", path);
        goto done;
    }
    got = h.blob_bytes > 0 ? pread(fd, blob, (size_t)h.blob_bytes, (off_t)sizeof(h)) : 0;
    if (got != (ssize_t)h.blob_bytes || XXH3_64bits(blob, (size_t)h.blob_bytes) != h.blob_hash) {
        tq_free(blob, h.blob_bytes > 0 ? (size_t)h.blob_bytes : 1);
        blob = NULL;
        err = tq_error_set(error, TQ_ERR_CORRUPT,
                           "corrupt snapshot %s: blob checksum mismatch "
                           "or short file",
                           path);
        goto done;
    }
    if (h.blob_bytes == 0) {
        tq_free(blob, 1);
        blob = NULL;
    }
    *blob_out = blob;
    *len_out = (size_t)h.blob_bytes;
done:
    close(fd);
    return err;
}

/* Whether the log holds every record after lsn (so state(lsn) + log = the whole state). */
static bool log_covers(const struct tq_log *log, uint64_t lsn) {
    uint64_t last = log->next_lsn - 1;
    if (lsn > last) return false;
    return log->lsn_first == 0 ? lsn == last : log->lsn_first <= lsn + 1;
}

static enum tq_err snap_find(struct tq_log *log, void **blob_out, size_t *len_out,
                             uint64_t *lsn_out, bool want_blob, struct tq_error *error) {
    uint64_t lsns[SNAPSHOTS_LISTED_MAX];
    size_t n = snap_list(log->snap_dir, lsns, SNAPSHOTS_LISTED_MAX);
    for (size_t i = 0; i < n; i++) {
        if (!log_covers(log, lsns[i])) {
            tq_log_line(log,
                        "snapshot at lsn %" PRIu64 " skipped: the log (lsn %" PRIu64 "..%" PRIu64
                        ") does not continue it",
                        lsns[i], log->lsn_first, log->next_lsn - 1);
            continue;
        }
        void *blob = NULL;
        size_t len = 0;
        struct tq_error e;
        if (snap_load(log, lsns[i], &blob, &len, &e) != TQ_OK) {
            tq_log_line(log, "%s; falling back to an older snapshot", e.msg);
            continue;
        }
        *lsn_out = lsns[i];
        if (want_blob) {
            *blob_out = blob;
            *len_out = len;
        } else if (blob != NULL) {
            tq_free(blob, len);
        }
        return TQ_OK;
    }
    return tq_error_set(error, TQ_ERR_NOT_FOUND, "no valid snapshot in %s", log->snap_dir);
}

uint64_t tq_snapshot_scan_latest(struct tq_log *log) {
    uint64_t lsn = 0;
    void *blob = NULL;
    size_t len = 0;
    if (snap_find(log, &blob, &len, &lsn, false, NULL) != TQ_OK) return 0;
    return lsn;
}

enum tq_err tq_log_snapshot_latest(struct tq_log *log, void **blob_out, size_t *len_out,
                                   uint64_t *lsn_out, struct tq_error *error) {
    TQ_ASSERT(blob_out != NULL && len_out != NULL);
    TQ_ASSERT(lsn_out != NULL);
    *blob_out = NULL;
    *len_out = 0;
    return snap_find(log, blob_out, len_out, lsn_out, true, error);
}

static uint64_t wall_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* fsync through the log's fault seam when there is a log, plain otherwise. */
static int snap_fsync(struct tq_log *log, int fd, const char *path) {
    return tq_log_blocking_fsync(log, fd, path);
}

static void snap_path_in(const char *snap_dir, uint64_t lsn, const char *suffix, char *out,
                         size_t cap) {
    snprintf(out, cap, "%s/%020" PRIu64 ".snap%s", snap_dir, lsn, suffix);
}

/* Buffered writes go in chunks whose writeback starts at once (sync_file_range), and at
 * most SNAP_DIRTY_BYTES are left unwritten behind the writer. One pwrite of the whole blob
 * left it all dirty for the final fsync, which then flushed 64 MB-1 GB in one burst: the
 * log's batch fdatasyncs queued behind it for tens of ms (ingest p99, docs/performance.md,
 * "open loop"). The final fsync stays the durability point; these calls only pace the I/O, so
 * their errors are left to it. */
#define SNAP_WRITE_CHUNK (1u << 20)
#define SNAP_DIRTY_BYTES (8 << 20)

/* An image (tq_log_snapshot_write_image) is written with O_DIRECT in chunks of this size,
 * each a whole number of SNAP_DIRECT_ALIGN blocks: the device reads the child's pages itself,
 * so the page cache gets no 250-450 MB copy to make, hold and write back (every copy was
 * memory bandwidth taken from the event loop on the same cores: docs/performance-server.md,
 * "Snapshot copies"). Each pwrite waits for the device, which also paces the writer. 4096:
 * the largest logical block size of the devices we run on (512 or 4096), so any of them
 * accepts the offsets, lengths and buffer addresses. */
#define SNAP_DIRECT_CHUNK (1u << 20)
#define SNAP_DIRECT_ALIGN 4096u
_Static_assert(SNAP_DIRECT_CHUNK % SNAP_DIRECT_ALIGN == 0, "direct chunks are whole blocks");

static void snap_writeback(int fd, off_t at, off_t len) {
    (void)sync_file_range(fd, at, len, SYNC_FILE_RANGE_WRITE);
    if (at >= SNAP_DIRTY_BYTES) {
        (void)sync_file_range(fd, at - SNAP_DIRTY_BYTES, len,
                              SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                  SYNC_FILE_RANGE_WAIT_AFTER);
    }
}

/* pwrite through the fault seam: faults->snapshot_write_errno fails every snapshot write. */
static ssize_t snap_pwrite(const struct tq_log *log, int fd, const void *p, size_t n, off_t at) {
    if (log->opt.faults != NULL && log->opt.faults->snapshot_write_errno != 0) {
        log->opt.faults->injected++;
        errno = log->opt.faults->snapshot_write_errno;
        return -1;
    }
    return pwrite(fd, p, n, at);
}

/* Buffered, paced writes of bytes [from, len) of p at file offset `at + (i - from)`. Returns
 * false with errno set on a failed or zero-length write. */
static bool snap_write_buffered(const struct tq_log *log, int fd, const uint8_t *p, size_t len,
                                off_t at) {
    size_t done = 0;
    while (done < len) {
        size_t n = len - done < SNAP_WRITE_CHUNK ? len - done : SNAP_WRITE_CHUNK;
        ssize_t w = snap_pwrite(log, fd, p + done, n, at + (off_t)done);
        if (w < 0) return false;
        if (w == 0) {
            errno = EIO;
            return false;
        }
        snap_writeback(fd, at + (off_t)done, (off_t)w);
        done += (size_t)w;
    }
    return true;
}

/* What a snapshot file is written from: a bare blob (the header is written on its own), or an
 * image whose first TQ_SNAPSHOT_HEADER_BYTES are the header's and whose bytes up to image_cap
 * may be used as zero padding. */
struct snap_src {
    const void *blob; /* blob mode */
    uint8_t *image;   /* image mode (blob == NULL): page-aligned */
    size_t image_cap;
    size_t len; /* blob bytes */
};

/* Writes an image: O_DIRECT unless the file system refuses it (tmpfs before Linux 6.6,
 * some FUSE and network file systems: EINVAL at open or at the first write), then buffered
 * as a blob would be. The tail is padded with zeros to a whole block and the file truncated
 * back to its exact length; the fsync that follows makes the length durable with the data.
 * *direct_out tells which path wrote it (for the tests). */
static bool snap_write_image(const struct tq_log *log, int fd, const struct snap_src *src,
                             bool *direct_out) {
    const size_t total = TQ_SNAPSHOT_HEADER_BYTES + src->len;
    const size_t padded = (total + SNAP_DIRECT_ALIGN - 1) / SNAP_DIRECT_ALIGN * SNAP_DIRECT_ALIGN;
    TQ_ASSERT(((uintptr_t)src->image & (SNAP_DIRECT_ALIGN - 1)) == 0);
    TQ_ASSERT(padded <= src->image_cap);
    int flags = fcntl(fd, F_GETFL);
    bool direct = flags >= 0 && (flags & O_DIRECT) != 0;
    *direct_out = false;
    if (direct) {
        memset(src->image + total, 0, padded - total);
        size_t done = 0;
        while (done < padded) {
            size_t n = padded - done < SNAP_DIRECT_CHUNK ? padded - done : SNAP_DIRECT_CHUNK;
            ssize_t w = snap_pwrite(log, fd, src->image + done, n, (off_t)done);
            if (w < 0 && errno == EINVAL && done == 0) break; /* refused: buffered below */
            if (w < 0) return false;
            if (w == 0 || (size_t)w % SNAP_DIRECT_ALIGN != 0) {
                errno = EIO; /* a short direct write: not expected on a local file system */
                return false;
            }
            done += (size_t)w;
        }
        if (done == padded) {
            *direct_out = true;
            if (padded != total && ftruncate(fd, (off_t)total) != 0) return false;
            return true;
        }
        if (fcntl(fd, F_SETFL, flags & ~O_DIRECT) != 0) return false;
    }
    return snap_write_buffered(log, fd, src->image, total, 0);
}

/* The write itself, into snap_dir; gate (NULL: none) is asked between the fsync and the rename. */
static enum tq_err snap_write(struct tq_log *log, const char *snap_dir, uint64_t lsn,
                              const struct snap_src *src, tq_snapshot_gate_fn gate, void *gate_ctx,
                              struct tq_error *error) {
    char tmp[4096], final[4096];
    snap_path_in(snap_dir, lsn, ".tmp", tmp, sizeof(tmp));
    snap_path_in(snap_dir, lsn, "", final, sizeof(final));
    const bool image = src->blob == NULL;
    const uint8_t *blob = image ? src->image + TQ_SNAPSHOT_HEADER_BYTES : src->blob;
    struct snap_header h = {
        .magic = TQ_SNAP_MAGIC,
        .version = TQ_FORMAT_VERSION,
        .lsn = lsn,
        .blob_bytes = src->len,
        .blob_hash = XXH3_64bits(blob, src->len),
        .created_us = wall_us(),
    };
    h.header_hash = XXH3_64bits(&h, offsetof(struct snap_header, header_hash));
    int fd = -1;
    if (image) {
        memcpy(src->image, &h, sizeof(h));
        bool refuse = log->opt.faults != NULL && log->opt.faults->snapshot_direct_einval;
        fd = refuse ? (errno = EINVAL, -1)
                    : open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT, 0644);
        if (fd < 0 && errno == EINVAL)
            fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    } else {
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    }
    if (fd < 0) return tq_error_set(error, TQ_ERR_IO, "create %s: %s", tmp, strerror(errno));
    bool written = false;
    if (image) {
        bool direct = false;
        written = snap_write_image(log, fd, src, &direct);
        if (written && log->opt.faults != NULL) log->opt.faults->snapshot_direct_writes += direct;
    } else {
        written = snap_pwrite(log, fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h) &&
                  snap_write_buffered(log, fd, src->blob, src->len, (off_t)sizeof(h));
    }
    if (!written) {
        int e = errno;
        enum tq_err err = tq_error_set(error, e == ENOSPC ? TQ_ERR_NO_SPACE : TQ_ERR_IO,
                                       "write %s: %s", tmp, strerror(e));
        close(fd);
        unlink(tmp);
        return err;
    }
    int rc = snap_fsync(log, fd, tmp);
    close(fd);
    if (rc < 0) {
        unlink(tmp);
        return tq_error_set(error, TQ_ERR_IO, "fsync %s: %s", tmp, strerror(-rc));
    }
    if (gate != NULL && !gate(gate_ctx, lsn, error)) {
        unlink(tmp);
        return error != NULL ? error->code : TQ_ERR_UNAVAILABLE;
    }
    if (rename(tmp, final) != 0) {
        enum tq_err err = tq_error_set(error, TQ_ERR_IO, "rename %s: %s", tmp, strerror(errno));
        unlink(tmp);
        return err;
    }
    int dfd = open(snap_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return tq_error_set(error, TQ_ERR_IO, "open %s: %s", snap_dir, strerror(errno));
    rc = snap_fsync(log, dfd, snap_dir);
    if (rc < 0) {
        close(dfd);
        return tq_error_set(error, TQ_ERR_IO, "fsync %s: %s", snap_dir, strerror(-rc));
    }
    /* Keep the newest snapshots_kept. */
    size_t kept =
        log->opt.snapshots_kept == 0 ? TQ_SNAPSHOTS_KEPT_DEFAULT : log->opt.snapshots_kept;
    if (kept > TQ_SNAPSHOTS_KEPT_MAX) kept = TQ_SNAPSHOTS_KEPT_MAX;
    uint64_t lsns[SNAPSHOTS_LISTED_MAX];
    size_t n = snap_list(snap_dir, lsns, SNAPSHOTS_LISTED_MAX);
    for (size_t i = kept; i < n; i++) {
        char old[4096];
        snap_path_in(snap_dir, lsns[i], "", old, sizeof(old));
        unlink(old);
    }
    if (n > kept) (void)snap_fsync(log, dfd, snap_dir);
    close(dfd);
    return TQ_OK;
}

/* The preconditions every snapshot write shares: a writable log, and an LSN that is durable
 * (no gate) or at least appended (gated: the gate waits for its durability). */
static enum tq_err snap_check(const struct tq_log *log, uint64_t lsn, bool gated,
                              struct tq_error *error) {
    if (log->opt.read_only) {
        return tq_error_set(error, TQ_ERR_UNAVAILABLE, "log %s is open read-only", log->dir);
    }
    if (!gated && (lsn == 0 || lsn > tq_log_acked_lsn(log))) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                            "snapshot lsn %" PRIu64 " is not acknowledged (acked %" PRIu64 ")", lsn,
                            tq_log_acked_lsn(log));
    }
    if (gated && (lsn == 0 || lsn >= log->next_lsn)) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                            "snapshot lsn %" PRIu64 " was not appended (next %" PRIu64 ")", lsn,
                            log->next_lsn);
    }
    return TQ_OK;
}

enum tq_err tq_log_snapshot_write(struct tq_log *log, uint64_t lsn, const void *blob, size_t len,
                                  struct tq_error *error) {
    enum tq_err err = snap_check(log, lsn, false, error);
    if (err != TQ_OK) return err;
    if (len > 0 && blob == NULL) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT, "snapshot blob is NULL");
    }
    const struct snap_src src = {.blob = blob != NULL ? blob : "", .len = len};
    return snap_write(log, log->snap_dir, lsn, &src, NULL, NULL, error);
}

enum tq_err tq_log_snapshot_write_image(struct tq_log *log, uint64_t lsn, void *image,
                                        size_t image_cap, size_t blob_bytes,
                                        tq_snapshot_gate_fn gate, void *gate_ctx,
                                        struct tq_error *error) {
    TQ_ASSERT(image != NULL);
    TQ_ASSERT(((uintptr_t)image & (SNAP_DIRECT_ALIGN - 1)) == 0);
    enum tq_err err = snap_check(log, lsn, gate != NULL, error);
    if (err != TQ_OK) return err;
    const size_t total = TQ_SNAPSHOT_HEADER_BYTES + blob_bytes;
    if (blob_bytes > image_cap ||
        (total + SNAP_DIRECT_ALIGN - 1) / SNAP_DIRECT_ALIGN * SNAP_DIRECT_ALIGN > image_cap) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                            "snapshot image of %zu bytes has no room for its header and padding "
                            "(%zu)",
                            blob_bytes, image_cap);
    }
    const struct snap_src src = {.image = image, .image_cap = image_cap, .len = blob_bytes};
    return snap_write(log, log->snap_dir, lsn, &src, gate, gate_ctx, error);
}
