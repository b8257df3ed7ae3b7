/* server/snapshot.c: background snapshots (fork; the child writes, the parent keeps serving).
 *
 * Phases: IDLE -> WANTED (a snapshot is wanted: it starts in this turn's tq_snapshot_turn) ->
 * RUNNING (forked at the state's *applied* LSN, which every staged record reaches but the log
 * may not have made durable yet; the child serialises its copy-on-write image of the state and
 * writes it with tq_log_snapshot_write_image and a gate) -> IDLE (the child was reaped; waiters
 * called). Waiters of the running snapshot are in `cur`; a request that needs a newer snapshot than
 * the running one waits in `next`, which starts as soon as the running one ends. Only the loop
 * thread calls into this file.
 *
 * Durability without a barrier: the loop never stops staging for a snapshot. The child writes
 * and fsyncs DIR/snapshots/<lsn>.snap.tmp, then blocks on the *go pipe* until the parent writes
 * the acknowledged LSN into it, which the parent does in the first turn whose acknowledged LSN
 * is >= the snapshot's (usually the turn of the fork or the next: one group commit, long
 * before the child has serialised). Only then does the child rename the file into place. If the
 * server dies first (kill -9, or a log error, which is fail-stop), the child reads EOF (or is
 * killed by PR_SET_PDEATHSIG) and the temp file stays behind, removed at the next start as
 * before: a *.snap file never holds a record that was not durable.
 *
 * Child protocol: the child writes one line to a pipe ("ok BYTES" or "err CODE MESSAGE") and
 * _exits 0 or 1; a child killed by a signal (OOM killer, kill -9) writes nothing, and the
 * parent removes its temp file. The parent finds out that the child exited through a pidfd
 * polled on the ring (an IORING_OP_POLL_ADD whose user_data carries the pidfd) and reaps it
 * with waitpid(WNOHANG) in tq_snapshot_turn; without that wake-up (a kernel without pidfds) it
 * tries every REAP_POLL_MS, at the latest on the loop's next 100 ms timer tick.
 *
 * Pre-copy (--snapshot-precopy, on by default): right after the fork, before it lowers its
 * priority, the child write-faults the state's hot regions itself (MADV_POPULATE_WRITE over
 * tq_state_regions' hot ones, resident pages only). Why: after fork() every page of the state
 * is shared and write-protected, and the loop's first write to each one used to copy it, on
 * the loop thread (~9k faults, ~31-33 ms per snapshot, most in the 50 ms after the fork:
 * docs/performance-server.md). A write fault in the child copies the page into the child;
 * the parent's page is then mapped only by the parent, and its next write is a fault that
 * reuses the page without a copy (a whole huge page the child copied: one fault for 2 MiB, not
 * split, nothing for the collapse helper to merge). Populating changes no byte of the child's
 * image. Cost: the child's memory grows by the hot bytes it copies, for the snapshot's life.
 * Best effort: a kernel without MADV_POPULATE_WRITE (EINVAL, before 5.14) is found by a probe
 * at start and noted once; any other failure stops the pre-copy, and the snapshot goes on.
 * The child reports the bytes and time in its "ok" line.
 *
 * Automatic snapshots (the policy of Redis's AOF rewrite: auto-aof-rewrite-min-size and
 * -percentage). One starts when both
 *   (a) the records since the newest snapshot's LSN reach --snapshot-every (0 = never), and
 *   (b) the log bytes appended since it reach --snapshot-growth percent of its file's size
 *       (0, or no snapshot on disk yet: (a) alone).
 * Why (b): a snapshot costs in proportion to the state, so a fixed record count makes a big
 * state spend an ever larger share of its time snapshotting (the total work grows with the
 * square of the log). With (b) the bytes snapshots write are at most 100/PCT per log byte, and
 * a restart replays at most about PCT% of the snapshot's size in log. The bytes are the log's
 * own count (tq_log_bytes_submitted: batches as written, headers and padding included), never
 * a clock. The base is the newest snapshot *on disk*: at start the one recovery loaded (the log
 * after it counts as grown: tq_log_bytes_after), afterwards the position of the log when the
 * last successful snapshot forked (exact to a batch: records staged but not submitted at the
 * fork count as grown). A failed snapshot moves nothing: the next attempt is due as soon as the
 * retry delay (TQ_SNAPSHOT_RETRY_MS) has passed. A requested snapshot (SnapshotNow, compaction)
 * moves the base like an automatic one.
 *
 * Invariants: at most one child; the child never touches the ring, the sockets or the log's
 * segments (only DIR/snapshots); every waiter's callback runs exactly once, from the loop.
 */
#include "snapshot.h"

#include "server.h"
#include "tq_assert.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

/* Test seam: the child sleeps this long before it writes (tests kill -9 the server during a
 * snapshot with it). Read only in the child; unset in production. */
#define TEST_DELAY_ENV "TICKETQD_TEST_SNAPSHOT_DELAY_MS"

/* Test seam: the parent withholds the go (the snapshot's LSN is durable) for this long after
 * the fork, as a slow commit would (tests kill -9 the server while the child waits). Read once
 * at tq_snapshot_init; unset in production. */
#define TEST_GO_DELAY_ENV "TICKETQD_TEST_SNAPSHOT_GO_DELAY_MS"

/* Without a pidfd wake-up, the child's exit is checked this often. */
#define REAP_POLL_MS 50u

enum phase { PHASE_IDLE = 0, PHASE_WANTED = 1, PHASE_RUNNING = 2 };

struct waiter {
    tq_snapshot_done_fn fn;
    uint64_t arg;
};

struct tq_snapshotter {
    enum phase phase;
    bool closed; /* shut down: requests are refused */
    struct waiter cur[TQ_SNAPSHOT_WAITERS_MAX];
    struct waiter next[TQ_SNAPSHOT_WAITERS_MAX];
    uint32_t cur_n, next_n;
    bool automatic; /* the current run was started by --snapshot-every / --snapshot-growth */
    /* --snapshot-growth's count: the log bytes since the newest snapshot on disk are
     * growth_debt + tq_log_bytes_submitted() - growth_base. */
    uint64_t growth_base;
    uint64_t growth_debt;   /* bytes after the recovered snapshot at start; 0 after a snapshot */
    uint64_t bytes_at_fork; /* tq_log_bytes_submitted() at the running snapshot's fork */
    uint64_t fork_start_us;
    uint64_t lsn;            /* LSN of the running snapshot */
    uint64_t staged_at_fork; /* srv->lsn_staged when the child was forked */
    uint64_t retry_after_ms; /* no automatic snapshot before this (monotonic) */
    pid_t pid;               /* running child, 0 if none */
    bool exit_hint;          /* a pidfd poll completed: waitpid now */
    uint64_t next_reap_ms;   /* else waitpid no sooner than this (monotonic) */
    int err_fd;              /* read end of the child's pipe, -1 if none */
    int go_fd;               /* write end of the go pipe, -1 once the go was sent (or none) */
    uint64_t go_delay_us;    /* test seam TEST_GO_DELAY_ENV, 0 in production */
    bool precopy;            /* the child pre-copies (--snapshot-precopy and the kernel has it) */
    bool precopy_err_said;   /* a pre-copy failure was logged (once) */
    struct tq_snapshot_stats st;
};

static void line(const char *fmt, ...) TQ_PRINTF(1, 2);
static void line(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fprintf(stderr, "ticketqd: %s\n", buf);
}

static void tmp_path(const struct tq_server *srv, uint64_t lsn, char *out, size_t cap) {
    snprintf(out, cap, "%s/snapshots/%020" PRIu64 ".snap.tmp", srv->cfg.data_dir, lsn);
}

/* Removes DIR/snapshots/<20 digits>.snap.tmp files: what a snapshot killed mid-write leaves.
 * Recovery ignores them anyway (only *.snap names are snapshots). */
static void remove_stale_temps(const struct tq_server *srv) {
    char dir[TQ_CONFIG_PATH_BYTES + 16];
    snprintf(dir, sizeof(dir), "%s/snapshots", srv->cfg.data_dir);
    DIR *d = opendir(dir);
    if (d == NULL) return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (strlen(n) != 29 || strcmp(n + 20, ".snap.tmp") != 0) continue;
        if (strspn(n, "0123456789") != 20) continue;
        char path[sizeof(dir) + 300];
        snprintf(path, sizeof(path), "%s/%s", dir, n);
        if (unlinkat(dirfd(d), n, 0) == 0) {
            line("removed %s, left by an interrupted snapshot", path);
        } else {
            line("cannot remove %s: %s", path, strerror(errno));
        }
    }
    closedir(d);
}

/* Whether the kernel has MADV_POPULATE_WRITE (on one private page of our own); says so once if
 * not. */
static bool precopy_probe(void) {
    long page = sysconf(_SC_PAGESIZE);
    size_t len = page > 0 ? (size_t)page : 4096u;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return false;
    bool ok = madvise(p, len, MADV_POPULATE_WRITE) == 0;
    int e = errno;
    munmap(p, len);
    if (!ok) {
        line("snapshot pre-copy off: MADV_POPULATE_WRITE: %s%s", strerror(e),
             e == EINVAL ? " (Linux 5.14 has it); the loop takes the copy-on-write faults" : "");
    }
    return ok;
}

void tq_snapshot_init(struct tq_server *srv, uint64_t recovered_lsn,
                      uint64_t recovered_file_bytes) {
    TQ_ASSERT(srv->snap == NULL);
    if (recovered_lsn == 0) TQ_ASSERT(recovered_file_bytes == 0);
    struct tq_snapshotter *s = tq_xcalloc(1, sizeof(*s));
    s->err_fd = -1;
    s->go_fd = -1;
    s->st.last_lsn = recovered_lsn;
    s->st.last_file_bytes = recovered_file_bytes;
    s->growth_base = tq_log_bytes_submitted(srv->log);
    s->growth_debt = tq_log_bytes_after(srv->log, recovered_lsn);
    const char *go_delay = getenv(TEST_GO_DELAY_ENV);
    if (go_delay != NULL) {
        long ms = strtol(go_delay, NULL, 10);
        if (ms > 0 && ms < 600000) s->go_delay_us = (uint64_t)ms * 1000u;
    }
    s->precopy = srv->cfg.snapshot_precopy && precopy_probe();
    srv->snap = s;
    remove_stale_temps(srv);
}

void tq_snapshot_free(struct tq_server *srv) {
    struct tq_snapshotter *s = srv->snap;
    if (s == NULL) return;
    TQ_ASSERT(s->pid == 0);
    if (s->err_fd >= 0) close(s->err_fd);
    if (s->go_fd >= 0) close(s->go_fd);
    tq_free(s, sizeof(*s));
    srv->snap = NULL;
}

/* Calls and clears the current waiters (a callback may request again: it lands in a fresh
 * list). */
static void complete(struct tq_server *srv, uint64_t lsn, const struct tq_error *error) {
    struct tq_snapshotter *s = srv->snap;
    struct waiter done[TQ_SNAPSHOT_WAITERS_MAX];
    uint32_t n = s->cur_n;
    TQ_ASSERT(n <= TQ_SNAPSHOT_WAITERS_MAX);
    TQ_ASSERT(s->pid == 0); /* no child outlives its waiters */
    memcpy(done, s->cur, n * sizeof(*done));
    s->cur_n = 0;
    s->phase = PHASE_IDLE;
    s->automatic = false;
    for (uint32_t i = 0; i < n; i++)
        done[i].fn(srv, done[i].arg, lsn, error);
}

static void fail_run(struct tq_server *srv, enum tq_err code, const char *fmt, ...) TQ_PRINTF(3, 4);
static void fail_run(struct tq_server *srv, enum tq_err code, const char *fmt, ...) {
    struct tq_snapshotter *s = srv->snap;
    struct tq_error error;
    va_list ap;
    va_start(ap, fmt);
    (void)tq_error_setv(&error, code, fmt, ap);
    va_end(ap);
    s->st.failed++;
    s->retry_after_ms = tq_mono_ms() + TQ_SNAPSHOT_RETRY_MS;
    line("%s", error.msg);
    complete(srv, 0, &error);
}

enum tq_err tq_snapshot_request(struct tq_server *srv, tq_snapshot_done_fn fn, uint64_t arg,
                                struct tq_error *error) {
    TQ_ASSERT(fn != NULL);
    struct tq_snapshotter *s = srv->snap;
    TQ_ASSERT(s == NULL ||
              (s->cur_n <= TQ_SNAPSHOT_WAITERS_MAX && s->next_n <= TQ_SNAPSHOT_WAITERS_MAX));
    if (s == NULL || s->closed || srv->draining) {
        return tq_error_set(error, TQ_ERR_UNAVAILABLE,
                            s == NULL ? "snapshots are not set up" : "the server is shutting down");
    }
    /* The running snapshot serves the request if nothing was staged since its fork. */
    bool join_running = s->phase == PHASE_RUNNING && srv->lsn_staged == s->staged_at_fork;
    bool use_cur = s->phase != PHASE_RUNNING || join_running;
    uint32_t *n = use_cur ? &s->cur_n : &s->next_n;
    if (*n >= TQ_SNAPSHOT_WAITERS_MAX) {
        return tq_error_set(error, TQ_ERR_RESOURCE_EXHAUSTED,
                            "%u snapshot requests are already waiting", TQ_SNAPSHOT_WAITERS_MAX);
    }
    (use_cur ? s->cur : s->next)[(*n)++] = (struct waiter){.fn = fn, .arg = arg};
    if (s->phase == PHASE_IDLE) s->phase = PHASE_WANTED;
    return TQ_OK;
}

#define SNAPSHOT_CHILD_NICE 10

/* The child's gate (tq_snapshot_gate_fn): blocks until the parent writes the acknowledged LSN
 * into the go pipe. EOF means the server stopped (or died) before lsn was durable. */
static bool child_gate(void *ctx, uint64_t lsn, struct tq_error *error) {
    int go_fd = *(const int *)ctx;
    uint64_t acked = 0;
    size_t got = 0;
    while (got < sizeof(acked)) {
        ssize_t n = read(go_fd, (uint8_t *)&acked + got, sizeof(acked) - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            (void)tq_error_set(error, TQ_ERR_UNAVAILABLE,
                               "the server stopped before LSN %" PRIu64 " was durable", lsn);
            return false;
        }
        got += (size_t)n;
    }
    if (acked < lsn) { /* the parent's bug, not a reason to publish */
        (void)tq_error_set(error, TQ_ERR_INTERNAL,
                           "go for LSN %" PRIu64 " with only %" PRIu64 " durable", lsn, acked);
        return false;
    }
    return true;
}

/* Closes every descriptor from 3 up except a and b. */
static void close_all_but(int a, int b) {
    int lo = a < b ? a : b, hi = a < b ? b : a;
    TQ_ASSERT(lo >= 3 && lo < hi);
    if (lo > 3) (void)close_range(3, (unsigned)lo - 1, 0);
    if (hi > lo + 1) (void)close_range((unsigned)lo + 1, (unsigned)hi - 1, 0);
    (void)close_range((unsigned)hi + 1, ~0u, 0);
}

struct precopy {
    size_t page_bytes;
    uint64_t bytes; /* copied */
    int err;        /* the errno that stopped it, 0 if none */
    unsigned char vec[TQ_HUGE_PAGE_BYTES / 4096];
};

/* tq_state_region_fn: takes the resident pages of a hot region from the parent, 2 MiB window
 * by window, each run of resident pages by MADV_POPULATE_WRITE (write faults: the kernel
 * copies each shared page into the child). Pages never touched are skipped: copying them would
 * only add zeroed memory to the child. Tried and not kept: a whole resident window copied into
 * a fresh huge page and moved over the old one with mremap (2x faster in a micro-benchmark,
 * 4-6x slower inside ticketqd on the development VM: docs/performance-server.md). */
static void precopy_region(void *ctx, void *addr, size_t len, bool hot) {
    struct precopy *pc = ctx;
    if (!hot || pc->err != 0) return;
    const uintptr_t pg = pc->page_bytes, win = TQ_HUGE_PAGE_BYTES;
    uintptr_t p = (uintptr_t)addr & ~(pg - 1);
    const uintptr_t end = ((uintptr_t)addr + len + pg - 1) & ~(pg - 1);
    TQ_ASSERT(p < end);
    while (p < end) {
        uintptr_t stop = (p & ~(win - 1)) + win; /* to the window's end */
        if (stop > end) stop = end;
        size_t n = (size_t)((stop - p) / pg);
        TQ_ASSERT(n >= 1 && n <= sizeof(pc->vec));
        if (mincore((void *)p, stop - p, pc->vec) != 0) {
            pc->err = errno;
            return;
        }
        for (size_t i = 0; i < n;) {
            size_t j = i;
            while (j < n && (pc->vec[j] & 1) != 0)
                j++;
            if (j > i) {
                if (madvise((void *)(p + i * pg), (j - i) * pg, MADV_POPULATE_WRITE) != 0) {
                    pc->err = errno;
                    return;
                }
                pc->bytes += (j - i) * pg;
            }
            i = j + 1;
        }
        p = stop;
    }
}

/* The child: serialise, write, wait for the go, publish, report, exit. Never returns. */
static _Noreturn void child_main(struct tq_server *srv, uint64_t lsn, int wfd, int go_fd,
                                 pid_t parent, bool precopy) {
    /* Die with the server: a snapshot finishing after a kill -9 would race the restart. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(3);
    /* Drop every inherited descriptor but stdio and the two pipes: client sockets and
     * listeners, the ring, segment files (and their locks). The write opens its own files. */
    close_all_but(wfd, go_fd);
    /* At the loop's priority: the loop's first turns after the fork write the pages most
     * likely still shared, so the sooner they are the child's, the fewer it copies. */
    struct precopy pc = {.page_bytes = 4096u}; /* vec holds a window's pages at 4 KiB or more */
    uint64_t precopy_us = 0;
    long page = sysconf(_SC_PAGESIZE);
    if (page >= 4096 && (page & (page - 1)) == 0 && (size_t)page <= TQ_HUGE_PAGE_BYTES) {
        pc.page_bytes = (size_t)page;
    }
    if (precopy) {
        uint64_t t0 = tq_mono_us();
        tq_state_regions(srv->state, precopy_region, &pc);
        precopy_us = tq_mono_us() - t0;
    }
    /* Below the event loop's priority, as compaction's helper thread: on a contended CPU the
     * loop (answering clients) runs first. Best effort. */
    (void)setpriority(PRIO_PROCESS, 0, SNAPSHOT_CHILD_NICE);
    const char *delay = getenv(TEST_DELAY_ENV);
    if (delay != NULL) {
        long ms = strtol(delay, NULL, 10);
        if (ms > 0 && ms < 600000) {
            struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    char msg[TQ_SNAPSHOT_ERROR_BYTES + 32];
    struct tq_state_image image;
    struct tq_error error;
    enum tq_err err =
        tq_state_serialize_image(srv->state, TQ_SNAPSHOT_HEADER_BYTES, &image, &error);
    size_t len = err == TQ_OK ? image.blob_bytes : 0;
    if (err == TQ_OK) {
        err = tq_log_snapshot_write_image(srv->log, lsn, image.map, image.map_bytes, len,
                                          child_gate, &go_fd, &error);
    }
    int n = err == TQ_OK ? snprintf(msg, sizeof(msg), "ok %zu %" PRIu64 " %" PRIu64 " %d\n", len,
                                    pc.bytes, precopy_us, pc.err)
                         : snprintf(msg, sizeof(msg), "err %d %s\n", (int)err, error.msg);
    if (n > 0 && write(wfd, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1) < 0) {
        /* the parent is gone or closed the pipe: nothing left to tell */
    }
    _exit(err == TQ_OK ? 0 : 1);
}

static void arm_poll(struct tq_server *srv, int pidfd) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&srv->ring);
    if (sqe == NULL) {
        (void)io_uring_submit(&srv->ring);
        sqe = io_uring_get_sqe(&srv->ring);
    }
    if (sqe == NULL) { /* reaping falls back to the timer tick */
        close(pidfd);
        return;
    }
    io_uring_prep_poll_add(sqe, pidfd, POLLIN);
    io_uring_sqe_set_data64(sqe, ((uint64_t)TQ_SNAPSHOT_UD_TAG << 56) | (uint32_t)pidfd);
}

/* Forks at the LSN the state is at now (applied and staged; durable or not). */
static void start(struct tq_server *srv) {
    struct tq_snapshotter *s = srv->snap;
    TQ_ASSERT(s->phase == PHASE_WANTED && s->pid == 0);
    TQ_ASSERT(s->err_fd < 0 && s->go_fd < 0);
    uint64_t lsn = tq_state_lsn(srv->state);
    TQ_ASSERT(lsn <= srv->lsn_staged); /* every applied record is in the log (staged) */
    if (lsn == 0) {
        struct tq_error e;
        (void)tq_error_set(&e, TQ_ERR_FAILED_PRECONDITION, "nothing to snapshot: the log is empty");
        complete(srv, 0, &e);
        return;
    }
    if (lsn == s->st.last_lsn) { /* the newest snapshot already covers the state */
        complete(srv, lsn, NULL);
        return;
    }
    /* pfd: the child's report (read end non-blocking); gfd: the go (write end non-blocking,
     * read end blocking: the child sleeps in read until the go). */
    int pfd[2], gfd[2];
    if (pipe2(pfd, O_CLOEXEC | O_NONBLOCK) != 0) {
        fail_run(srv, TQ_ERR_IO, "snapshot at LSN %" PRIu64 " failed: pipe: %s", lsn,
                 strerror(errno));
        return;
    }
    if (pipe2(gfd, O_CLOEXEC) != 0 || fcntl(gfd[1], F_SETFL, O_NONBLOCK) != 0) {
        int e = errno;
        close(pfd[0]);
        close(pfd[1]);
        fail_run(srv, TQ_ERR_IO, "snapshot at LSN %" PRIu64 " failed: pipe: %s", lsn, strerror(e));
        return;
    }
    fflush(stderr); /* nothing buffered may be written twice */
    pid_t parent = getpid();
    uint64_t t0 = tq_mono_us();
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        close(gfd[1]);
        child_main(srv, lsn, pfd[1], gfd[0], parent, s->precopy);
    }
    uint64_t t1 = tq_mono_us();
    close(pfd[1]);
    close(gfd[0]);
    if (pid < 0) {
        close(pfd[0]);
        close(gfd[1]);
        fail_run(srv, TQ_ERR_RESOURCE_EXHAUSTED, "snapshot at LSN %" PRIu64 " failed: fork: %s",
                 lsn, strerror(errno));
        return;
    }
    s->phase = PHASE_RUNNING;
    s->pid = pid;
    s->err_fd = pfd[0];
    s->go_fd = gfd[1];
    s->lsn = lsn;
    s->staged_at_fork = srv->lsn_staged;
    s->bytes_at_fork = tq_log_bytes_submitted(srv->log);
    s->fork_start_us = t0;
    s->st.last_fork_us = t1 - t0;
    s->st.last_durable_wait_us = 0;
    s->exit_hint = false;
    s->next_reap_ms = tq_mono_ms() + REAP_POLL_MS;
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd >= 0) arm_poll(srv, pidfd);
}

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25 /* Linux 6.1 */
#endif

/* ---- huge pages back after a snapshot ------------------------------------------------------
 *
 * Why: the state's big regions are transparent huge pages (server/state/store.c), and fork()
 * copies one PMD for each instead of 512 PTEs. But every huge page the loop writes while a
 * child lives is split by its copy-on-write fault, and it stays split: the next fork copies
 * its 512 PTEs. Measured (a 1 M-ticket state, 320 MB resident, ingest, a snapshot every 300k
 * records): fork 2.8 ms for the first snapshot, then 12.5-14.2 ms for every later one;
 * docs/performance-server.md, 2026-12-03 late evening. khugepaged would merge them back, but
 * at its default pace (4096 pages per 10 s) not between two snapshots.
 *
 * So after each snapshot a helper thread walks the process's VM_HUGEPAGE mappings and asks
 * for a synchronous collapse (MADV_COLLAPSE) of every 2 MiB range whose pages are all resident
 * (so the collapse adds no memory; a range that is already one huge page returns at once).
 * Off the loop thread: a collapse copies 2 MiB (150-200 ms for 320 MB on the development VM),
 * and the loop only waits if it touches a range in the moment of its swap. At nice 10, as
 * compaction's helper. Best effort: any failure (an old kernel: EINVAL) just leaves the pages
 * split. At most one runs; the flag is process-wide so the thread never touches srv. */
#define COLLAPSE_NICE 10

static atomic_bool collapse_running;

static void *collapse_main(void *arg) {
    (void)arg;
    (void)setpriority(PRIO_PROCESS, (id_t)gettid(), COLLAPSE_NICE);
    FILE *fp = fopen("/proc/self/smaps", "re");
    if (fp != NULL) {
        char ln[512];
        uintptr_t lo = 0, hi = 0;
        unsigned char vec[TQ_HUGE_PAGE_BYTES / 4096];
        while (fgets(ln, sizeof(ln), fp) != NULL) {
            unsigned long a = 0, b = 0;
            int end = 0;
            /* a mapping's first line: "lo-hi perms ..." */
            if (sscanf(ln, "%lx-%lx %n", &a, &b, &end) == 2 && end > 0) {
                lo = a;
                hi = b;
                continue;
            }
            if (strncmp(ln, "VmFlags:", 8) != 0 || strstr(ln, " hg") == NULL) continue;
            const uintptr_t h = TQ_HUGE_PAGE_BYTES;
            for (uintptr_t p = (lo + h - 1) & ~(h - 1); p + h <= hi; p += h) {
                if (mincore((void *)p, h, vec) != 0) break; /* unmapped meanwhile */
                size_t i = 0;
                while (i < sizeof(vec) && (vec[i] & 1) != 0)
                    i++;
                if (i == sizeof(vec)) (void)madvise((void *)p, h, MADV_COLLAPSE);
            }
        }
        fclose(fp);
    }
    atomic_store(&collapse_running, false);
    return NULL;
}

/* Starts the collapse helper unless one runs. */
static void collapse_start(void) {
    if (atomic_exchange(&collapse_running, true)) return;
    pthread_attr_t attr;
    pthread_t t;
    bool ok = pthread_attr_init(&attr) == 0;
    ok = ok && pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0;
    ok = ok && pthread_create(&t, &attr, collapse_main, NULL) == 0;
    (void)pthread_attr_destroy(&attr);
    if (!ok) atomic_store(&collapse_running, false);
}

/* Tells the child that its LSN is durable (once): acked is written into the go pipe. */
static void maybe_go(struct tq_server *srv, uint64_t acked) {
    struct tq_snapshotter *s = srv->snap;
    TQ_ASSERT(s->phase == PHASE_RUNNING && s->pid > 0);
    if (s->go_fd < 0 || acked < s->lsn) return;
    uint64_t now_us = tq_mono_us();
    if (s->go_delay_us > 0 && now_us < s->fork_start_us + s->go_delay_us) return;
    /* 8 bytes into an empty pipe: never short, never EAGAIN. A failure (EPIPE, SIGPIPE being
     * ignored by main.c: the child is gone) is the reap's to report; closing the pipe makes the
     * child give up either way. */
    if (write(s->go_fd, &acked, sizeof(acked)) != (ssize_t)sizeof(acked)) {
        line("snapshot at LSN %" PRIu64 ": cannot signal the child: %s", s->lsn, strerror(errno));
    }
    close(s->go_fd);
    s->go_fd = -1;
    s->st.last_durable_wait_us = now_us - s->fork_start_us;
}

/* The child's report line, up to a newline (empty if it wrote none). */
static void read_report(struct tq_snapshotter *s, char *buf, size_t cap) {
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t n = read(s->err_fd, buf + len, cap - 1 - len);
        if (n <= 0) break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    char *nl = strchr(buf, '\n');
    if (nl != NULL) *nl = '\0';
    close(s->err_fd);
    s->err_fd = -1;
}

/* Reaps the child if it exited: records the outcome and calls the waiters. */
static void reap_child(struct tq_server *srv) {
    struct tq_snapshotter *s = srv->snap;
    /* One waitpid per loop turn would be a syscall per request under load: only when the
     * pidfd said so, or every REAP_POLL_MS (kernels without pidfd, a failed poll). */
    TQ_ASSERT(s->phase == PHASE_RUNNING && s->pid > 0);
    TQ_ASSERT(s->err_fd >= 0);
    uint64_t now_ms = tq_mono_ms();
    if (!s->exit_hint && now_ms < s->next_reap_ms) return;
    s->exit_hint = false;
    s->next_reap_ms = now_ms + REAP_POLL_MS;
    int status = 0;
    pid_t r = waitpid(s->pid, &status, WNOHANG);
    if (r == 0) return;
    if (r < 0 && errno == EINTR) return;
    s->pid = 0;
    if (s->go_fd >= 0) { /* exited before the go: a failure, reported below */
        close(s->go_fd);
        s->go_fd = -1;
    }
    char report[TQ_SNAPSHOT_ERROR_BYTES + 64];
    read_report(s, report, sizeof(report));
    uint64_t took = tq_mono_us() - s->fork_start_us;
    unsigned long long bytes = 0, pc_bytes = 0, pc_us = 0;
    int pc_err = 0;
    if (r > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
        sscanf(report, "ok %llu %llu %llu %d", &bytes, &pc_bytes, &pc_us, &pc_err) >= 1) {
        s->st.written++;
        s->st.last_lsn = s->lsn;
        s->st.last_duration_us = took;
        s->st.last_bytes = bytes;
        s->st.last_precopy_bytes = pc_bytes;
        s->st.last_precopy_us = pc_us;
        uint64_t base_file_bytes = s->st.last_file_bytes;
        s->st.last_file_bytes = TQ_SNAPSHOT_HEADER_BYTES + (uint64_t)bytes;
        s->growth_base = s->bytes_at_fork;
        s->growth_debt = 0;
        char why[160] = "";
        if (s->automatic && base_file_bytes > 0) { /* the counts that started it (auto_due) */
            snprintf(why, sizeof(why),
                     "; automatic: %" PRIu64 " records, %" PRIu64 " log bytes = %.0f%% of the last "
                     "snapshot's %" PRIu64 " bytes",
                     s->st.auto_records, s->st.auto_log_bytes,
                     100.0 * (double)s->st.auto_log_bytes / (double)base_file_bytes,
                     base_file_bytes);
        } else if (s->automatic) {
            snprintf(why, sizeof(why),
                     "; automatic: %" PRIu64 " records, %" PRIu64 " log bytes, no snapshot before",
                     s->st.auto_records, s->st.auto_log_bytes);
        }
        line("snapshot at LSN %" PRIu64 ": %.1f MB in %.2f s (fork %.1f ms, durable %.1f ms "
             "after the fork, pre-copied %.1f MB in %.1f ms%s)",
             s->lsn, (double)bytes / 1e6, (double)took / 1e6, (double)s->st.last_fork_us / 1e3,
             (double)s->st.last_durable_wait_us / 1e3, (double)pc_bytes / 1e6, (double)pc_us / 1e3,
             why);
        if (pc_err != 0 && !s->precopy_err_said) {
            s->precopy_err_said = true;
            line("snapshot pre-copy stopped early: %s (the snapshot is complete; the loop takes "
                 "the rest of the copy-on-write faults)",
                 strerror(pc_err));
        }
        collapse_start();
        complete(srv, s->lsn, NULL);
        return;
    }
    int code = 0, off = 0;
    if (strncmp(report, "err ", 4) == 0 && sscanf(report, "err %d %n", &code, &off) == 1 &&
        off > 0) {
        fail_run(srv, (enum tq_err)code, "snapshot at LSN %" PRIu64 " failed: %s", s->lsn,
                 report + off);
        return;
    }
    char tmp[TQ_CONFIG_PATH_BYTES + 64];
    tmp_path(srv, s->lsn, tmp, sizeof(tmp));
    (void)unlink(tmp);
    if (r > 0 && WIFSIGNALED(status)) {
        fail_run(srv, TQ_ERR_INTERNAL,
                 "snapshot at LSN %" PRIu64 " failed: the snapshot process was killed by "
                 "signal %d (%s)",
                 s->lsn, WTERMSIG(status), strsignal(WTERMSIG(status)));
    } else {
        fail_run(srv, TQ_ERR_INTERNAL,
                 "snapshot at LSN %" PRIu64 " failed: the snapshot process ended without a "
                 "report (status %d)",
                 s->lsn, r > 0 ? status : -1);
    }
}

/* Log bytes appended since the newest snapshot on disk (--snapshot-growth's count). */
static uint64_t log_bytes_since(const struct tq_server *srv) {
    const struct tq_snapshotter *s = srv->snap;
    uint64_t now = tq_log_bytes_submitted(srv->log);
    TQ_ASSERT(now >= s->growth_base);
    return s->growth_debt + (now - s->growth_base);
}

/* Whether an automatic snapshot is due (the file comment: (a) records and (b) log bytes); on
 * true, notes the counts that made it due for the log line and /metrics. */
static bool auto_due(struct tq_server *srv) {
    struct tq_snapshotter *s = srv->snap;
    const struct tq_config *cfg = &srv->cfg;
    if (cfg->snapshot_every == 0) return false;
    if (srv->lsn_staged < s->st.last_lsn + cfg->snapshot_every) return false; /* (a) */
    uint64_t bytes = log_bytes_since(srv);
    /* (b); the product stays far below 2^64: a file under 2^45 bytes x <= 100000 */
    if (cfg->snapshot_growth_pct > 0 && s->st.last_file_bytes > 0 &&
        bytes * 100u < s->st.last_file_bytes * cfg->snapshot_growth_pct) {
        return false;
    }
    if (tq_mono_ms() < s->retry_after_ms) return false;
    TQ_ASSERT(srv->lsn_staged >= s->st.last_lsn);
    s->st.auto_records = srv->lsn_staged - s->st.last_lsn;
    s->st.auto_log_bytes = bytes;
    return true;
}

void tq_snapshot_turn(struct tq_server *srv, uint64_t acked_lsn) {
    struct tq_snapshotter *s = srv->snap;
    if (s == NULL || s->closed) return;
    TQ_ASSERT(acked_lsn <= srv->lsn_staged);
    if (s->phase == PHASE_RUNNING) {
        maybe_go(srv, acked_lsn);
        reap_child(srv);
    }
    if (s->phase == PHASE_IDLE && !srv->draining) {
        if (s->next_n > 0) {
            memcpy(s->cur, s->next, s->next_n * sizeof(*s->cur));
            s->cur_n = s->next_n;
            s->next_n = 0;
            s->phase = PHASE_WANTED;
        } else if (auto_due(srv)) {
            s->phase = PHASE_WANTED;
            s->automatic = true;
        }
    }
    if (s->phase == PHASE_WANTED && !srv->draining) {
        start(srv);
        if (s->phase == PHASE_RUNNING) maybe_go(srv, acked_lsn); /* already durable: go now */
    }
}

void tq_snapshot_on_cqe(struct tq_server *srv, const struct io_uring_cqe *cqe) {
    int pidfd = (int)(uint32_t)io_uring_cqe_get_data64(cqe);
    close(pidfd); /* the child exited (or the poll failed): tq_snapshot_turn reaps it */
    if (srv->snap != NULL) srv->snap->exit_hint = true;
}

void tq_snapshot_shutdown(struct tq_server *srv) {
    struct tq_snapshotter *s = srv->snap;
    if (s == NULL || s->closed) return;
    s->closed = true;
    struct tq_error e;
    (void)tq_error_set(&e, TQ_ERR_UNAVAILABLE, "the server is shutting down");
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        int status;
        while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR) {
        }
        s->pid = 0;
        char tmp[TQ_CONFIG_PATH_BYTES + 64];
        tmp_path(srv, s->lsn, tmp, sizeof(tmp));
        (void)unlink(tmp);
        if (s->err_fd >= 0) close(s->err_fd);
        s->err_fd = -1;
        if (s->go_fd >= 0) close(s->go_fd);
        s->go_fd = -1;
        line("snapshot at LSN %" PRIu64 " abandoned: the server is shutting down", s->lsn);
    }
    complete(srv, 0, &e);
    memcpy(s->cur, s->next, s->next_n * sizeof(*s->cur));
    s->cur_n = s->next_n;
    s->next_n = 0;
    complete(srv, 0, &e);
}

void tq_snapshot_get_stats(const struct tq_server *srv, struct tq_snapshot_stats *out) {
    memset(out, 0, sizeof(*out));
    if (srv->snap == NULL) return;
    *out = srv->snap->st;
    out->running = srv->snap->phase == PHASE_RUNNING;
    out->log_bytes_since = log_bytes_since(srv);
}
