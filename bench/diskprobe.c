/* bench/diskprobe.c: ticketq-diskprobe, the disk figures that head every peer table.
 *
 * Usage: ticketq-diskprobe DIR [APPENDS [SEQ_MIB]]
 * Measures, in DIR (on the disk the servers use), with a scratch file it removes afterwards:
 *   1. fdatasync latency of a 4 KiB append (file grows: the metadata journal is involved), the
 *      case of a log without preallocation: median and p99 over APPENDS (default 1000);
 *   2. the same 4 KiB write + fdatasync overwriting a preallocated, already-synced file (what a
 *      log with preallocated segments pays);
 *   3. sequential write bandwidth: SEQ_MIB (default 1024) MiB in 1 MiB writes + one fdatasync.
 * Prints one JSON object on stdout. Exit 1 with a message on any I/O error.
 *
 * Why a C helper and not dd: dd cannot time each fdatasync, and the latency distribution (not
 * the mean) is what group commit has to beat.
 */
#include "tq_alloc.h"
#include "tq_assert.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BLOCK_BYTES     4096u
#define SEQ_CHUNK_BYTES (1024u * 1024u)
#define APPENDS_DEFAULT 1000u
#define SEQ_MIB_DEFAULT 1024u

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double percentile_us(uint64_t *v, size_t n, double p) {
    TQ_ASSERT(n > 0);
    qsort(v, n, sizeof(*v), cmp_u64);
    size_t rank = (size_t)(p / 100.0 * (double)n);
    if (rank >= n) rank = n - 1;
    return (double)v[rank] / 1000.0;
}

static void die(const char *what, const char *path) {
    fprintf(stderr, "ticketq-diskprobe: %s %s: %s\n", what, path, strerror(errno));
    exit(1);
}

/* Times `count` 4 KiB writes + fdatasync at consecutive offsets (appending or overwriting). */
static void timed_syncs(int fd, const char *path, const char *block, uint64_t *lat, size_t count) {
    for (size_t i = 0; i < count; i++) {
        uint64_t t0 = now_ns();
        ssize_t n = pwrite(fd, block, BLOCK_BYTES, (off_t)(i * BLOCK_BYTES));
        if (n != (ssize_t)BLOCK_BYTES) die("write", path);
        if (fdatasync(fd) != 0) die("fdatasync", path);
        lat[i] = now_ns() - t0;
    }
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        fprintf(stderr, "usage: ticketq-diskprobe DIR [APPENDS [SEQ_MIB]]\n");
        return argc < 2 ? 2 : 0;
    }
    size_t appends = argc > 2 ? (size_t)strtoull(argv[2], NULL, 10) : APPENDS_DEFAULT;
    size_t seq_mib = argc > 3 ? (size_t)strtoull(argv[3], NULL, 10) : SEQ_MIB_DEFAULT;
    if (appends == 0 || seq_mib == 0) {
        fprintf(stderr, "ticketq-diskprobe: APPENDS and SEQ_MIB must be > 0\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/ticketq-diskprobe.%d.tmp", argv[1], (int)getpid());
    char *block = tq_xalloc(SEQ_CHUNK_BYTES);
    memset(block, 'x', SEQ_CHUNK_BYTES);
    uint64_t *lat = tq_xcalloc(appends, sizeof(*lat));

    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) die("open", path);
    timed_syncs(fd, path, block, lat, appends);
    double append_p50 = percentile_us(lat, appends, 50.0);
    double append_p99 = percentile_us(lat, appends, 99.0);
    /* The file now exists, full size, synced: the same offsets again are overwrites. */
    timed_syncs(fd, path, block, lat, appends);
    double over_p50 = percentile_us(lat, appends, 50.0);
    double over_p99 = percentile_us(lat, appends, 99.0);
    if (ftruncate(fd, 0) != 0) die("ftruncate", path);
    if (fdatasync(fd) != 0) die("fdatasync", path);

    uint64_t t0 = now_ns();
    for (size_t i = 0; i < seq_mib; i++) {
        ssize_t n = write(fd, block, SEQ_CHUNK_BYTES);
        if (n != (ssize_t)SEQ_CHUNK_BYTES) die("write", path);
    }
    if (fdatasync(fd) != 0) die("fdatasync", path);
    double seq_s = (double)(now_ns() - t0) / 1e9;
    close(fd);
    unlink(path);

    printf("{\"fdatasync_append_4k_p50_us\":%.1f,\"fdatasync_append_4k_p99_us\":%.1f,"
           "\"fdatasync_overwrite_4k_p50_us\":%.1f,\"fdatasync_overwrite_4k_p99_us\":%.1f,"
           "\"seq_write_mib_s\":%.0f,\"appends\":%zu,\"seq_mib\":%zu}\n",
           append_p50, append_p99, over_p50, over_p99, (double)seq_mib / seq_s, appends, seq_mib);
    tq_free(lat, appends * sizeof(*lat));
    tq_free(block, SEQ_CHUNK_BYTES);
    return 0;
}
