/* bench/storage_bench.c: tq-storage-bench, the storage micro-benchmark.
 *
 * Measures, in one run on one machine, with the figures docs/performance-storage.md quotes:
 *   1. the raw disk: sequential O_DIRECT write bandwidth (4 MiB writes; the canonical figure
 *      from a 4 KiB-page buffer, then again from a huge-page buffer as the log's batches use),
 *      the latency of one 4 KiB write + fdatasync (median of many) appending to a fresh file,
 *      overwriting a fallocated file and overwriting a pre-zeroed file (the segment
 *      preallocation choice), and of one 72 KiB O_DIRECT write made durable by fdatasync or by
 *      RWF_DSYNC (the floor of a 256 x 256 B group-commit round);
 *   2. durable (ALWAYS) appends through the event-loop API on a private io_uring: N logical
 *      appenders, each with one record outstanding and resubmitting as soon as it is acked,
 *      for record sizes 64 B..16 KiB and N = 1..256: records/s and MB/s of payload;
 *   3. the recovery scan (tq_log_open of the log written above), as the writer left the page
 *      cache and cold (drop_caches when root, else fadvise DONTNEED), next to the disk's own
 *      O_DIRECT read speed over the same files;
 *   4. the zstd ratio and speed of tq_log_compress_segment on realistic support messages.
 * Prints the machine (cores, memory, CPU, kernel, filesystem of --dir) and medians.
 *
 * Usage: tq-storage-bench [--dir DIR] [--seconds S] [--quick] [--only SIZE:APPENDERS]
 *                         [--raw-only] [--compression-only]
 * Build Release in your own build dir; DIR defaults to /tmp/tq-storage-bench (removed after).
 * Diagnosis knobs (environment, for one --only point): TQ_BENCH_INFLIGHT, TQ_BENCH_BUFFERED,
 * TQ_BENCH_BATCH_BYTES, TQ_BENCH_PIPELINE, TQ_BENCH_SUBMIT_FULL, TQ_BENCH_WARMUP_S,
 * TQ_BENCH_FSYNC, TQ_BENCH_DSYNC=1 (dsync_writes), TQ_BENCH_NO_PREZERO=1 (spare_no_prezero),
 * TQ_BENCH_RECYCLE=N (age the log so appends go into recycled segment files), TQ_BENCH_NO_RECYCLE=1
 * (the same aging with recycling off).
 */
#include "log.h"
#include "support_text.h"
#include "tq_alloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static const char *bench_dir = "/tmp/tq-storage-bench";
static double point_seconds = 1.0; /* per run; each point is the median of 3 runs */
static bool quick;
static uint32_t only_size; /* --only SIZE:APPENDERS runs one append point (for perf/strace) */
static int only_appenders;
static bool compression_only; /* --compression-only: just the compression/read section */
static bool raw_only;         /* --raw-only: just the raw disk section (A/B rounds) */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t wall_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rmtree(const char *dir) {
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *what, const struct tq_error *err) {
    fprintf(stderr, "tq-storage-bench: %s: %s\n", what, err != NULL ? err->msg : strerror(errno));
    exit(1);
}

/* ==== machine ========================================================================== */

/* One line with /proc/loadavg: the machine is shared, every figure needs its load next to it. */
static void print_load(const char *when) {
    char line[128] = "?";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f != NULL) {
        if (fgets(line, sizeof(line), f) == NULL) snprintf(line, sizeof(line), "?");
        fclose(f);
    }
    line[strcspn(line, "\n")] = '\0';
    printf("- load average %s: %s\n", when, line);
}

static void print_machine(void) {
    struct utsname u;
    uname(&u);
    char cpu[600] = "?";
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "model name", 10) == 0) {
            char *colon = strchr(line, ':');
            snprintf(cpu, sizeof(cpu), "%s", colon != NULL ? colon + 2 : line);
            cpu[strcspn(cpu, "\n")] = '\0';
            break;
        }
    }
    if (f != NULL) fclose(f);
    uint64_t mem_kb = 0;
    f = fopen("/proc/meminfo", "r");
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "MemTotal: %" SCNu64, &mem_kb) == 1) break;
    }
    if (f != NULL) fclose(f);
    struct statfs sf;
    char fs[200] = "?";
    if (statfs(bench_dir, &sf) == 0) {
        snprintf(fs, sizeof(fs), "%.1f GiB free of %.1f GiB",
                 (double)sf.f_bavail * (double)sf.f_bsize / 1073741824.0,
                 (double)sf.f_blocks * (double)sf.f_bsize / 1073741824.0);
    }
    char mount[600] = "?";
    f = fopen("/proc/mounts", "r");
    size_t best = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        char dev[128], mnt[256], type[64];
        if (sscanf(line, "%127s %255s %63s", dev, mnt, type) != 3) continue;
        size_t n = strlen(mnt);
        if (strncmp(bench_dir, mnt, n) == 0 && n >= best) {
            best = n;
            snprintf(mount, sizeof(mount), "%s on %s (%s)", dev, mnt, type);
        }
    }
    if (f != NULL) fclose(f);
    printf("## machine\n");
    printf("- cores: %ld, memory: %.1f GiB, cpu: %s\n", sysconf(_SC_NPROCESSORS_ONLN),
           (double)mem_kb / 1048576.0, cpu);
    printf("- kernel: %s %s, data dir: %s: %s, %s\n", u.sysname, u.release, bench_dir, mount, fs);
}

/* ==== raw disk ========================================================================= */

/* Sequential O_DIRECT write bandwidth: a fallocated file written twice with 4 MiB pwrites,
 * MB/s of the second pass (already written blocks) returned. huge: the buffer is 2 MiB-aligned
 * and asks for transparent huge pages, as the log's batch buffers do (storage/log.c buf_alloc):
 * fewer, larger block requests. The canonical figure (the % of seq columns) is huge = false. */
static double raw_seq_direct_mbs(bool huge) {
    char path[512];
    snprintf(path, sizeof(path), "%s/raw-seq.dat", bench_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_DIRECT, 0644);
    if (fd < 0) die("open O_DIRECT", NULL);
    size_t block = 4u << 20;
    uint64_t total = quick ? (256ull << 20) : (2048ull << 20);
    if (posix_fallocate(fd, 0, (off_t)total) != 0) die("fallocate", NULL);
    /* Overwrite once first so the measured pass writes allocated, written blocks. */
    void *buf;
    if (posix_memalign(&buf, huge ? (2u << 20) : 4096, block) != 0) die("memalign", NULL);
    if (huge) (void)madvise(buf, block, MADV_HUGEPAGE);
    memset(buf, 0x5a, block);
    double best = 0;
    for (int pass = 0; pass < 2; pass++) {
        double t0 = now_s();
        for (uint64_t off = 0; off < total; off += block) {
            if (pwrite(fd, buf, block, (off_t)off) != (ssize_t)block) die("pwrite O_DIRECT", NULL);
        }
        fdatasync(fd);
        double mbs = (double)total / 1e6 / (now_s() - t0);
        if (pass == 1 || mbs > best) best = pass == 1 ? mbs : best;
        printf("- sequential O_DIRECT write, 4 MiB writes%s, %s file: %.0f MB/s\n",
               huge ? " from a huge-page buffer" : "",
               pass == 0 ? "fallocated (unwritten extents)" : "already written", mbs);
    }
    free(buf);
    close(fd);
    unlink(path);
    return best;
}

/* Median latency (ms) of a 4 KiB pwrite + fdatasync: mode 0 append to an empty file,
 * 1 overwrite a fallocated file, 2 overwrite a pre-zeroed (written) file. */
static double raw_sync_latency_ms(int mode, double *p99) {
    char path[512];
    snprintf(path, sizeof(path), "%s/raw-sync.dat", bench_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) die("open", NULL);
    int n = quick ? 500 : 2000;
    uint64_t size = (uint64_t)n * 4096;
    static uint8_t zeros[1 << 20];
    if (mode == 1 && posix_fallocate(fd, 0, (off_t)size) != 0) die("fallocate", NULL);
    if (mode == 2) {
        for (uint64_t off = 0; off < size; off += sizeof(zeros)) {
            if (pwrite(fd, zeros, sizeof(zeros), (off_t)off) < 0) die("pwrite", NULL);
        }
    }
    fsync(fd);
    double *lat = calloc((size_t)n, sizeof(double));
    uint8_t block[4096];
    memset(block, 'x', sizeof(block));
    for (int i = 0; i < n; i++) {
        double t0 = now_s();
        if (pwrite(fd, block, sizeof(block), (off_t)i * 4096) != (ssize_t)sizeof(block))
            die("pwrite", NULL);
        if (fdatasync(fd) != 0) die("fdatasync", NULL);
        lat[i] = (now_s() - t0) * 1e3;
    }
    qsort(lat, (size_t)n, sizeof(double), cmp_double);
    double median = lat[n / 2];
    *p99 = lat[n * 99 / 100];
    free(lat);
    close(fd);
    unlink(path);
    return median;
}

/* Median latency (ms) of one O_DIRECT write of `bytes` made durable, overwriting a pre-zeroed
 * file: dsync false = pwrite + fdatasync (the log's default chain), true = pwritev2(RWF_DSYNC)
 * (dsync_writes). Alternated write by write, so both see the same disk. With bytes = one batch
 * of 256 records of 256 B (73728 bytes on disk) this is the floor of one group-commit round of
 * the 256 B x 256 point: records/s <= 256 / this (docs/performance-storage.md). */
static void raw_batch_latency_ms(uint32_t bytes, double *sync_ms, double *dsync_ms) {
    char path[512];
    snprintf(path, sizeof(path), "%s/raw-batch.dat", bench_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) die("open", NULL);
    int n = quick ? 300 : 1000;
    uint64_t size = 16ull << 20;
    void *buf;
    if (posix_memalign(&buf, 4096, bytes) != 0) die("memalign", NULL);
    memset(buf, 0, bytes);
    for (uint64_t off = 0; off + bytes <= size; off += bytes) {
        if (pwrite(fd, buf, bytes, (off_t)off) != (ssize_t)bytes) die("pwrite", NULL);
    }
    fsync(fd);
    int dfd = open(path, O_WRONLY | O_DIRECT);
    if (dfd < 0) die("open O_DIRECT", NULL);
    memset(buf, 'x', bytes);
    double *lat[2] = {calloc((size_t)n, sizeof(double)), calloc((size_t)n, sizeof(double))};
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        for (int v = 0; v < 2; v++) {
            if (off + bytes > size) off = 0;
            double t0 = now_s();
            if (v == 0) {
                if (pwrite(dfd, buf, bytes, (off_t)off) != (ssize_t)bytes) die("pwrite", NULL);
                if (fdatasync(fd) != 0) die("fdatasync", NULL);
            } else {
                struct iovec iov = {.iov_base = buf, .iov_len = bytes};
                if (pwritev2(dfd, &iov, 1, (off_t)off, RWF_DSYNC) != (ssize_t)bytes)
                    die("pwritev2 RWF_DSYNC", NULL);
            }
            lat[v][i] = (now_s() - t0) * 1e3;
            off += bytes;
        }
    }
    for (int v = 0; v < 2; v++)
        qsort(lat[v], (size_t)n, sizeof(double), cmp_double);
    *sync_ms = lat[0][n / 2];
    *dsync_ms = lat[1][n / 2];
    free(lat[0]);
    free(lat[1]);
    free(buf);
    close(dfd);
    close(fd);
    unlink(path);
}

/* ==== durable appends ================================================================== */

struct point {
    uint32_t size;
    int appenders;
    double records_per_s;
    double mb_per_s;
    double records_per_batch;
    double ack_ms_median;
};

static void drain(struct tq_log *log, struct io_uring *ring) {
    while (!tq_log_idle(log)) {
        io_uring_submit_and_wait(ring, 1);
        struct io_uring_cqe *cqe;
        while (io_uring_peek_cqe(ring, &cqe) == 0) {
            tq_log_complete(log, ring, cqe);
            io_uring_cqe_seen(ring, cqe);
        }
    }
}

/* TQ_BENCH_RECYCLE=N (diagnosis, docs/performance-storage.md): before measuring, age the log as
 * a server whose compaction keeps up would: fill N + 1 segments (1 MiB records, durable) and
 * compress the N sealed ones, so their files wait in the recycle pool and the measured appends
 * go into recycled (written, synced) segment files. TQ_BENCH_NO_RECYCLE=1 ages the same way but
 * with recycling off (the files are removed; spares are fresh fallocated files): the A/B pair. */
static void age_log(struct tq_log *log, int segments) {
    static uint8_t rec[1u << 20];
    for (size_t i = 0; i < sizeof(rec); i++)
        rec[i] = (uint8_t)(i * 131u + 7u);
    struct tq_error err;
    uint64_t lsns[TQ_RECYCLE_SEGMENTS_MAX + 2];
    while (tq_log_segments(log, lsns, TQ_RECYCLE_SEGMENTS_MAX + 2) < (size_t)segments + 1) {
        uint64_t lsn;
        enum tq_err e = tq_log_append(log, 1, rec, sizeof(rec) - 64, &lsn, &err);
        if (e == TQ_ERR_RESOURCE_EXHAUSTED) {
            if (tq_log_sync(log, &err) != TQ_OK) die("age: sync", &err);
            continue;
        }
        if (e != TQ_OK) die("age: append", &err);
    }
    if (tq_log_sync(log, &err) != TQ_OK) die("age: sync", &err);
    size_t n = tq_log_segments(log, lsns, TQ_RECYCLE_SEGMENTS_MAX + 2);
    for (size_t i = 0; i + 1 < n; i++) {
        if (tq_log_compress_segment(log, lsns[i], NULL, &err) != TQ_OK) die("age: compress", &err);
    }
}

static struct point run_point(uint32_t size, int appenders, bool prezero, const char *dir,
                              bool keep) {
    struct tq_log_options o;
    memset(&o, 0, sizeof(o));
    o.dir = dir;
    const char *no_prezero = getenv("TQ_BENCH_NO_PREZERO"); /* 1: spare_no_prezero */
    o.spare_no_prezero = !prezero || (no_prezero != NULL && strcmp(no_prezero, "1") == 0);
    o.ring_tag = 0x51;
    const char *mode = getenv("TQ_BENCH_FSYNC"); /* diagnosis only: none | interval */
    if (mode != NULL && strcmp(mode, "none") == 0) o.fsync_mode = TQ_FSYNC_NONE;
    if (mode != NULL && strcmp(mode, "interval") == 0) {
        o.fsync_mode = TQ_FSYNC_INTERVAL;
        o.fsync_interval_ms = 10;
    }
    /* Comparisons for docs/performance-storage.md: batches in flight, page-cache writes. */
    const char *inflight = getenv("TQ_BENCH_INFLIGHT");
    if (inflight != NULL) o.batches_inflight_max = (uint32_t)atoi(inflight);
    const char *batch_bytes = getenv("TQ_BENCH_BATCH_BYTES"); /* batch_bytes_max */
    if (batch_bytes != NULL) o.batch_bytes_max = (uint32_t)strtoul(batch_bytes, NULL, 10);
    const char *pipeline = getenv("TQ_BENCH_PIPELINE"); /* pipeline_bytes_min (1: always) */
    if (pipeline != NULL) o.pipeline_bytes_min = (uint32_t)strtoul(pipeline, NULL, 10);
    /* TQ_BENCH_SUBMIT_FULL=0: the loop of before 2026-12-03, which stopped appending at a full
     * batch until the next completion instead of submitting it and filling the next one */
    const char *submit_full_env = getenv("TQ_BENCH_SUBMIT_FULL");
    bool submit_full = submit_full_env == NULL || strcmp(submit_full_env, "0") != 0;
    const char *buffered = getenv("TQ_BENCH_BUFFERED");
    o.buffered_writes = buffered != NULL && strcmp(buffered, "1") == 0;
    const char *dsync = getenv("TQ_BENCH_DSYNC"); /* 1: dsync_writes (RWF_DSYNC, no fdatasync) */
    o.dsync_writes = dsync != NULL && strcmp(dsync, "1") == 0;
    const char *recycle_env = getenv("TQ_BENCH_RECYCLE");
    int age_segments = recycle_env != NULL ? atoi(recycle_env) : 0;
    if (age_segments < 0 || age_segments > (int)TQ_RECYCLE_SEGMENTS_MAX) {
        fprintf(stderr, "tq-storage-bench: TQ_BENCH_RECYCLE must be 0..%u\n",
                TQ_RECYCLE_SEGMENTS_MAX);
        exit(2);
    }
    const char *no_recycle = getenv("TQ_BENCH_NO_RECYCLE");
    if (age_segments > 0 && !(no_recycle != NULL && strcmp(no_recycle, "1") == 0)) {
        o.recycle_segments_max = (uint32_t)age_segments;
    }
    struct tq_log *log;
    struct tq_error err;
    if (tq_log_open(&o, &log, NULL, &err) != TQ_OK) die("open", &err);
    if (age_segments > 0) age_log(log, age_segments);
    struct io_uring ring;
    if (io_uring_queue_init(256, &ring, 0) < 0) die("io_uring_queue_init", NULL);
    uint8_t *payload = malloc(size);
    for (uint32_t i = 0; i < size; i++)
        payload[i] = (uint8_t)(i * 131u + 7u);
    uint64_t *waiting = calloc((size_t)appenders, sizeof(uint64_t));
    double *sent_at = calloc((size_t)appenders, sizeof(double));
    size_t lat_cap = 1u << 20, lat_n = 0;
    double *lat = malloc(lat_cap * sizeof(double));
    uint64_t done = 0, steps = 0, last_acked = tq_log_acked_lsn(log);
    /* TQ_BENCH_WARMUP_S: run this long first, uncounted (steady state: the first segment of a
     * fresh log is only 4 MiB zero-filled, later ones are zero-filled by small batches' credit) */
    const char *warmup_env = getenv("TQ_BENCH_WARMUP_S");
    double warmup = warmup_env != NULL ? atof(warmup_env) : 0.0;
    double t_start = now_s(), t0 = t_start, t = t_start;
    bool measuring = warmup <= 0;
    while (!measuring || t - t0 < point_seconds) {
        if (!measuring && t - t_start >= warmup) {
            measuring = true;
            t0 = t;
            done = 0;
            steps = 0;
            lat_n = 0;
        }
        for (int a = 0; a < appenders; a++) {
            if (waiting[a] != 0) continue;
            if (!tq_log_can_append(log, size)) {
                /* The open batch is full: hand it to the disk now (if a slot is free) and go on
                 * filling the next one, as an event loop does, so copying and hashing the next
                 * batch overlaps the write of this one. */
                if (submit_full && tq_log_submit(log, &ring, wall_us()) > 0) {
                    io_uring_submit(&ring);
                }
                if (!tq_log_can_append(log, size)) break;
            }
            if (tq_log_append(log, 1, payload, size, &waiting[a], &err) != TQ_OK)
                die("append", &err);
            sent_at[a] = t;
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
        t = now_s();
        uint64_t acked = tq_log_acked_lsn(log);
        if (acked == last_acked) continue;
        steps++;
        last_acked = acked;
        for (int a = 0; a < appenders; a++) {
            if (waiting[a] != 0 && waiting[a] <= acked) {
                waiting[a] = 0;
                done++;
                if (lat_n < lat_cap) lat[lat_n++] = (t - sent_at[a]) * 1e3;
            }
        }
    }
    double elapsed = now_s() - t0;
    drain(log, &ring);
    tq_log_close(log);
    io_uring_queue_exit(&ring);
    if (!keep) rmtree(dir);
    qsort(lat, lat_n, sizeof(double), cmp_double);
    struct point p = {
        .size = size,
        .appenders = appenders,
        .records_per_s = (double)done / elapsed,
        .mb_per_s = (double)done * size / 1e6 / elapsed,
        .records_per_batch = steps > 0 ? (double)done / (double)steps : 0,
        .ack_ms_median = lat_n > 0 ? lat[lat_n / 2] : 0,
    };
    free(lat);
    free(payload);
    free(waiting);
    free(sent_at);
    return p;
}

static int cmp_point(const void *a, const void *b) {
    double x = ((const struct point *)a)->records_per_s,
           y = ((const struct point *)b)->records_per_s;
    return x < y ? -1 : x > y;
}

/* The median (by records/s) of three runs of a point: the machine is shared and noisy. */
static struct point run_point_median(uint32_t size, int appenders, bool prezero, const char *dir,
                                     bool keep) {
    struct point p[3];
    for (int i = 0; i < 3; i++)
        p[i] = run_point(size, appenders, prezero, dir, keep && i == 2);
    qsort(p, 3, sizeof(p[0]), cmp_point);
    return p[1];
}

/* ==== recovery and compression ========================================================= */

/* Drops the page cache: all of it when we may (root: /proc/sys/vm/drop_caches, the honest cold
 * case), else every file in DIR/log (fdatasync, then POSIX_FADV_DONTNEED). Returns how. */
static const char *evict(const char *dir) {
    sync();
    FILE *dc = fopen("/proc/sys/vm/drop_caches", "w");
    if (dc != NULL) {
        bool ok = fputs("3\n", dc) >= 0;
        if (fclose(dc) == 0 && ok) return "dropped: drop_caches";
    }
    char log_dir[700];
    snprintf(log_dir, sizeof(log_dir), "%s/log", dir);
    DIR *d = opendir(log_dir);
    if (d == NULL) return "not evicted";
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char path[1000];
        snprintf(path, sizeof(path), "%s/%s", log_dir, de->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0) continue;
        fdatasync(fd);
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
    closedir(d);
    return "evicted: fadvise DONTNEED";
}

/* The disk's own sequential read speed over the same segment files, cold, in the same run:
 * O_DIRECT reads of 4 MiB, one at a time (what `dd iflag=direct bs=4M` does). GB/s. */
static double raw_read_gbs(const char *dir) {
    char log_dir[700];
    snprintf(log_dir, sizeof(log_dir), "%s/log", dir);
    evict(dir);
    DIR *d = opendir(log_dir);
    if (d == NULL) return 0;
    size_t block = 4u << 20;
    void *buf;
    if (posix_memalign(&buf, 4096, block) != 0) die("memalign", NULL);
    uint64_t total = 0;
    double t0 = now_s();
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char path[1000];
        snprintf(path, sizeof(path), "%s/%s", log_dir, de->d_name);
        int fd = open(path, O_RDONLY | O_DIRECT);
        if (fd < 0) continue;
        ssize_t got;
        while ((got = read(fd, buf, block)) > 0)
            total += (uint64_t)got;
        close(fd);
    }
    double secs = now_s() - t0;
    closedir(d);
    free(buf);
    return secs > 0 ? (double)total / 1e9 / secs : 0;
}

static void recovery_scan(const char *dir) {
    struct tq_log_options o;
    memset(&o, 0, sizeof(o));
    o.dir = dir;
    o.read_only = true;
    for (int cold = 0; cold < 2; cold++) {
        const char *how = cold ? evict(dir) : "page cache warm (as left by the writer)";
        struct tq_log *log;
        struct tq_log_recovery rec;
        struct tq_error err;
        struct timespec c0, c1;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
        if (tq_log_open(&o, &log, &rec, &err) != TQ_OK) die("open for recovery", &err);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
        double cpu = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) / 1e9;
        printf("- recovery scan (%s): %.2f GB in %.3f s = %.2f GB/s (%.3f s of CPU: %.2f GB per "
               "CPU-second), %" PRIu64 " batches, %" PRIu64 " records\n",
               how, (double)rec.bytes_scanned / 1e9, rec.seconds,
               (double)rec.bytes_scanned / 1e9 / rec.seconds, cpu,
               (double)rec.bytes_scanned / 1e9 / cpu, rec.batches_scanned, rec.records_scanned);
        tq_log_close(log);
    }
    printf("- disk: O_DIRECT sequential read of the same segment files, 4 MiB at a time, cold: "
           "%.2f GB/s\n",
           raw_read_gbs(dir));
}

static void compression(void) {
    char dir[600];
    snprintf(dir, sizeof(dir), "%s/zlog", bench_dir);
    struct tq_log_options o;
    memset(&o, 0, sizeof(o));
    o.dir = dir;
    o.segment_bytes_max = 16u << 20;
    o.spare_no_prezero = true;
    o.fsync_mode = TQ_FSYNC_NONE;
    struct tq_log *log;
    struct tq_error err;
    if (tq_log_open(&o, &log, NULL, &err) != TQ_OK) die("open", &err);
    static char text[4096];
    uint64_t s = 42;
    uint64_t target = quick ? (16u << 20) : (64u << 20), bytes = 0, records = 0;
    while (bytes < target) {
        uint32_t len = st_support_message(&s, text, sizeof(text));
        uint64_t lsn;
        enum tq_err e = tq_log_append(log, 1, text, len, &lsn, &err);
        if (e == TQ_ERR_RESOURCE_EXHAUSTED) {
            if (tq_log_sync(log, &err) != TQ_OK) die("sync", &err);
            continue;
        }
        if (e != TQ_OK) die("append", &err);
        bytes += len;
        records++;
        /* batches of 64 records: what group commit produces under moderate load */
        if (records % 64 == 0 && tq_log_sync(log, &err) != TQ_OK) die("sync", &err);
    }
    if (tq_log_sync(log, &err) != TQ_OK) die("sync", &err);
    tq_log_close(log);
    o.fsync_mode = TQ_FSYNC_ALWAYS;
    if (tq_log_open(&o, &log, NULL, &err) != TQ_OK) die("reopen", &err);
    uint64_t segs[256];
    size_t n = tq_log_segments(log, segs, 256);
    {
        /* random single-record reads from plain segments (page cache warm) */
        double *plain = calloc(2000, sizeof(double));
        uint64_t r2 = 11;
        for (int i = 0; i < 2000; i++) {
            uint64_t lsn = 1 + st_text_rand(&r2) % (segs[n - 1] - 1);
            struct tq_log_record r;
            double t = now_s();
            if (tq_log_read(log, lsn, &r, text, sizeof(text), &err) != TQ_OK) die("read", &err);
            plain[i] = (now_s() - t) * 1e6;
        }
        qsort(plain, 2000, sizeof(double), cmp_double);
        printf("- random single-record read from plain segments (warm): median %.1f us\n",
               plain[1000]);
        free(plain);
    }
    uint64_t raw = 0, comp = 0, payload = 0;
    double t0 = now_s();
    for (size_t i = 0; i + 1 < n; i++) {
        struct tq_compress_stats st;
        if (tq_log_compress_segment(log, segs[i], &st, &err) != TQ_OK) die("compress", &err);
        raw += st.raw_bytes;
        comp += st.compressed_bytes;
        payload += st.payload_bytes;
    }
    double secs = now_s() - t0;
    /* single-record reads from compressed segments */
    double *lat = calloc(2000, sizeof(double));
    uint64_t rng = 7;
    uint64_t last = segs[n - 1] - 1;
    for (int i = 0; i < 2000; i++) {
        uint64_t lsn = 1 + st_text_rand(&rng) % last;
        struct tq_log_record r;
        double t = now_s();
        if (tq_log_read(log, lsn, &r, text, sizeof(text), &err) != TQ_OK) die("read", &err);
        lat[i] = (now_s() - t) * 1e6;
    }
    qsort(lat, 2000, sizeof(double), cmp_double);
    printf("- %" PRIu64 " support messages (%.1f bytes avg), %zu sealed segments: payload %.1f MB, "
           "segment bytes %.1f MB -> .zseg %.1f MB: ratio %.2fx of payload (%.2fx of segment "
           "bytes), compress %.0f MB/s (zstd level 3, 256 KiB blocks); random single-record read "
           "from .zseg: median %.0f us\n",
           records, (double)bytes / (double)records, n - 1, (double)payload / 1e6,
           (double)raw / 1e6, (double)comp / 1e6, (double)payload / (double)comp,
           (double)raw / (double)comp, (double)raw / 1e6 / secs, lat[1000]);
    free(lat);
    tq_log_close(log);
    rmtree(dir);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            bench_dir = argv[++i];
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            point_seconds = atof(argv[++i]);
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            if (sscanf(argv[++i], "%u:%d", &only_size, &only_appenders) != 2) return 2;
        } else if (strcmp(argv[i], "--raw-only") == 0) {
            raw_only = true;
        } else if (strcmp(argv[i], "--compression-only") == 0) {
            compression_only = true;
        } else if (strcmp(argv[i], "--quick") == 0) {
            quick = true;
            point_seconds = 0.3;
        } else {
            bool help = strcmp(argv[i], "--help") == 0;
            fprintf(help ? stdout : stderr,
                    "usage: %s [--dir DIR] [--seconds S] [--quick] [--only SIZE:APPENDERS] "
                    "[--raw-only] [--compression-only]\n",
                    argv[0]);
            return help ? 0 : 2;
        }
    }
    mkdir(bench_dir, 0755);
    print_machine();
    print_load("at the start");
    if (compression_only) {
        compression();
        rmtree(bench_dir);
        return 0;
    }
    if (only_size > 0) {
        char one[600];
        snprintf(one, sizeof(one), "%s/one", bench_dir);
        bool keep = getenv("TQ_BENCH_KEEP") != NULL; /* keep DIR/one for tq-logtool verify */
        struct point p = run_point(only_size, only_appenders, true, one, keep);
        printf("%u B x %d: %.0f records/s, %.1f MB/s, %.1f records/batch, ack median %.3f ms\n",
               p.size, p.appenders, p.records_per_s, p.mb_per_s, p.records_per_batch,
               p.ack_ms_median);
        if (!keep) rmtree(bench_dir);
        return 0;
    }

    printf("\n## raw disk\n");
    double seq = raw_seq_direct_mbs(false);
    (void)raw_seq_direct_mbs(true); /* what the log's huge-page batch buffers can get */
    const char *names[3] = {"append to an empty file", "overwrite a fallocated file",
                            "overwrite a pre-zeroed file"};
    for (int m = 0; m < 3; m++) {
        double p99;
        double med = raw_sync_latency_ms(m, &p99);
        printf("- 4 KiB write + fdatasync, %s: median %.3f ms, p99 %.3f ms\n", names[m], med, p99);
    }
    {
        uint32_t batch = 73728; /* 256 records of 256 B: 64 + 256 * 272 bytes, padded to 4 KiB */
        double sync_ms, dsync_ms;
        raw_batch_latency_ms(batch, &sync_ms, &dsync_ms);
        printf("- %u-byte O_DIRECT write made durable (one 256 x 256 B batch), pre-zeroed file: "
               "+ fdatasync median %.3f ms, RWF_DSYNC median %.3f ms; 256 appenders with one "
               "record outstanding: <= %.2f M records/s\n",
               batch, sync_ms, dsync_ms, 256.0 / (sync_ms < dsync_ms ? sync_ms : dsync_ms) / 1e3);
    }
    if (raw_only) {
        rmtree(bench_dir);
        return 0;
    }

    printf(
        "\n## durable appends (fsync always, event-loop API, one record outstanding per appender;"
        " default options: %u batches in flight, O_DIRECT writes; median of 3 runs of %.1f s)\n",
        TQ_BATCHES_INFLIGHT_DEFAULT, point_seconds);
    printf(
        "| record | appenders | records/s | MB/s | %% of seq | records/batch | ack median ms |\n");
    printf("|---:|---:|---:|---:|---:|---:|---:|\n");
    uint32_t sizes[] = {64, 256, 1024, 4096, 16384};
    int counts[] = {1, 16, 64, 256};
    char dir[600];
    snprintf(dir, sizeof(dir), "%s/log", bench_dir);
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
        for (size_t ci = 0; ci < sizeof(counts) / sizeof(counts[0]); ci++) {
            bool keep = sizes[si] == 16384 && counts[ci] == 256;
            struct point p = run_point_median(sizes[si], counts[ci], true, dir, keep);
            printf("| %u | %d | %.0f | %.1f | %.0f%% | %.1f | %.3f |\n", p.size, p.appenders,
                   p.records_per_s, p.mb_per_s, 100.0 * p.mb_per_s / seq, p.records_per_batch,
                   p.ack_ms_median);
            fflush(stdout);
        }
    }
    print_load("after the table");
    printf("\n## batches in flight and write path (same run; median of 3 runs per cell)\n");
    printf("| point | in flight | writes | records/s | MB/s | %% of seq | ack median ms |\n");
    printf("|---|---:|---|---:|---:|---:|---:|\n");
    {
        char cmp_dir[600]; /* not dir: it holds the 16 KiB x 256 log for the recovery scan */
        snprintf(cmp_dir, sizeof(cmp_dir), "%s/cmp", bench_dir);
        uint32_t csizes[] = {256, 16384};
        unsigned depths[] = {1, 2, 4};
        for (size_t si = 0; si < 2; si++) {
            for (size_t di = 0; di < 3; di++) {
                for (int buffered = 1; buffered >= 0; buffered--) {
                    char v[16];
                    snprintf(v, sizeof(v), "%u", depths[di]);
                    setenv("TQ_BENCH_INFLIGHT", v, 1);
                    setenv("TQ_BENCH_BUFFERED", buffered ? "1" : "0", 1);
                    struct point p = run_point_median(csizes[si], 256, true, cmp_dir, false);
                    printf("| %u B x 256 | %u | %s | %.0f | %.1f | %.0f%% | %.3f |\n", csizes[si],
                           depths[di], buffered ? "page cache" : "O_DIRECT", p.records_per_s,
                           p.mb_per_s, 100.0 * p.mb_per_s / seq, p.ack_ms_median);
                    fflush(stdout);
                }
            }
        }
        unsetenv("TQ_BENCH_INFLIGHT");
        unsetenv("TQ_BENCH_BUFFERED");
    }

    print_load("after the table");
    printf("\n## zero-filled segments vs fallocate only (same run)\n");
    char dir2[600];
    snprintf(dir2, sizeof(dir2), "%s/log2", bench_dir);
    for (int prezero = 0; prezero < 2; prezero++) {
        struct point a = run_point_median(256, 1, prezero != 0, dir2, false);
        struct point b = run_point_median(16384, 256, prezero != 0, dir2, false);
        printf("- %s: 256 B x 1: %.0f records/s, ack median %.3f ms; 16 KiB x 256: %.1f MB/s\n",
               prezero ? "zero-filled (default)" : "fallocate only", a.records_per_s,
               a.ack_ms_median, b.mb_per_s);
    }

    printf("\n## recovery (the 16 KiB x 256 log above: large batches)\n");
    recovery_scan(dir);
    rmtree(dir);
    printf("\n## recovery (small batches: 4 records of 256 B each, written in none mode)\n");
    {
        setenv("TQ_BENCH_FSYNC", "none", 1);
        double saved = point_seconds;
        point_seconds = quick ? 0.5 : 2.0;
        run_point(256, 4, false, dir, true);
        point_seconds = saved;
        unsetenv("TQ_BENCH_FSYNC");
        recovery_scan(dir);
        rmtree(dir);
    }

    printf("\n## compression (zstd, realistic support messages)\n");
    compression();
    print_load("at the end");
    rmtree(bench_dir);
    return 0;
}
