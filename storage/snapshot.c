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
 * Writes are atomic: <name>.tmp, fsync, rename, fsync dir. A gated write (a snapshot taken
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

/* Snapshots are written in chunks whose writeback starts at once (sync_file_range), and at
 * most SNAP_DIRTY_BYTES are left unwritten behind the writer. One pwrite of the whole blob
 * left it all dirty for the final fsync, which then flushed 64 MB-1 GB in one burst: the
 * log's batch fdatasyncs queued behind it for tens of ms (ingest p99, docs/performance.md,
 * "open loop"). The final fsync stays the durability point; these calls only pace the I/O, so
 * their errors are left to it. */
#define SNAP_WRITE_CHUNK (1u << 20)
#define SNAP_DIRTY_BYTES (8 << 20)

static void snap_writeback(int fd, off_t at, off_t len) {
    (void)sync_file_range(fd, at, len, SYNC_FILE_RANGE_WRITE);
    if (at >= SNAP_DIRTY_BYTES) {
        (void)sync_file_range(fd, at - SNAP_DIRTY_BYTES, len,
                              SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                  SYNC_FILE_RANGE_WAIT_AFTER);
    }
}

/* The write itself, into snap_dir; gate (NULL: none) is asked between the fsync and the rename. */
static enum tq_err snap_write(struct tq_log *log, const char *snap_dir, uint64_t lsn,
                              const void *blob, size_t len, tq_snapshot_gate_fn gate,
                              void *gate_ctx, struct tq_error *error) {
    char tmp[4096], final[4096];
    snap_path_in(snap_dir, lsn, ".tmp", tmp, sizeof(tmp));
    snap_path_in(snap_dir, lsn, "", final, sizeof(final));
    struct snap_header h = {
        .magic = TQ_SNAP_MAGIC,
        .version = TQ_FORMAT_VERSION,
        .lsn = lsn,
        .blob_bytes = len,
        .blob_hash = XXH3_64bits(blob, len),
        .created_us = wall_us(),
    };
    h.header_hash = XXH3_64bits(&h, offsetof(struct snap_header, header_hash));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return tq_error_set(error, TQ_ERR_IO, "create %s: %s", tmp, strerror(errno));
    enum tq_err err = TQ_OK;
    ssize_t put = pwrite(fd, &h, sizeof(h), 0);
    if (put == (ssize_t)sizeof(h) && len > 0) {
        size_t done = 0;
        while (done < len) {
            size_t n = len - done < SNAP_WRITE_CHUNK ? len - done : SNAP_WRITE_CHUNK;
            off_t at = (off_t)(sizeof(h) + done);
            ssize_t w = pwrite(fd, (const uint8_t *)blob + done, n, at);
            if (w <= 0) break;
            done += (size_t)w;
            snap_writeback(fd, at, (off_t)w);
        }
        if (done != len) put = -1;
    }
    if (put < 0 || put == 0) {
        err = tq_error_set(error, errno == ENOSPC ? TQ_ERR_NO_SPACE : TQ_ERR_IO, "write %s: %s",
                           tmp, strerror(errno));
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
        err = tq_error_set(error, TQ_ERR_IO, "rename %s: %s", tmp, strerror(errno));
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

enum tq_err tq_log_snapshot_write(struct tq_log *log, uint64_t lsn, const void *blob, size_t len,
                                  struct tq_error *error) {
    if (log->opt.read_only) {
        return tq_error_set(error, TQ_ERR_UNAVAILABLE, "log %s is open read-only", log->dir);
    }
    if (lsn == 0 || lsn > tq_log_acked_lsn(log)) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                            "snapshot lsn %" PRIu64 " is not acknowledged (acked %" PRIu64 ")", lsn,
                            tq_log_acked_lsn(log));
    }
    if (len > 0 && blob == NULL) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT, "snapshot blob is NULL");
    }
    return snap_write(log, log->snap_dir, lsn, blob, len, NULL, NULL, error);
}

enum tq_err tq_log_snapshot_write_gated(struct tq_log *log, uint64_t lsn, const void *blob,
                                        size_t len, tq_snapshot_gate_fn gate, void *gate_ctx,
                                        struct tq_error *error) {
    TQ_ASSERT(gate != NULL);
    if (log->opt.read_only) {
        return tq_error_set(error, TQ_ERR_UNAVAILABLE, "log %s is open read-only", log->dir);
    }
    if (lsn == 0 || lsn >= log->next_lsn) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                            "snapshot lsn %" PRIu64 " was not appended (next %" PRIu64 ")", lsn,
                            log->next_lsn);
    }
    if (len > 0 && blob == NULL) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT, "snapshot blob is NULL");
    }
    return snap_write(log, log->snap_dir, lsn, blob, len, gate, gate_ctx, error);
}
