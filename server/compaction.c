/* server/compaction.c: online compaction (the Compact and CompactStatus requests).
 *
 * What it does, in order (docs/operations.md, "Online compaction"):
 *   1. on the loop thread: ask the background snapshotter (server/snapshot.c: fork,
 *      the child writes, as Redis's BGSAVE; the loop pays the fork, reported as
 *      loop_stall_us) for a snapshot of the live state covering every record staged so far;
 *   2. on the loop thread, when that snapshot at L is durable (its callback): begin a rewrite
 *      (tq_log_rewrite_begin) of every sealed segment whose records are all <= L and start
 *      the helper thread. Nothing else changes before the snapshot is durable: from then on
 *      recovery starts at L (or later) and never re-applies a record that step 4 redacts;
 *   3. on the helper thread, when erasing or applying retention: open a private read-only
 *      handle on the log, load that snapshot into a private state, and decide what to redact
 *      with the offline compactor's own code (tq_ops_classify), records <= L only; archive
 *      the retention drops first if asked;
 *   4. on the helper thread, segment by segment: tq_log_rewrite_write (read, verify, redact,
 *      zstd, temp file, fsync, rename, fsync dir), paced by the I/O budget; each finished
 *      rewrite is queued for the loop thread, which installs it (tq_log_rewrite_install: the
 *      segment table now points at the new file) at its next turn. The helper never touches
 *      the loop's tq_log, tq_state or connections;
 *   5. on the helper thread, when customers were erased: delete every snapshot older than L
 *      (they still hold the erased names and identities).
 * Why a child for the snapshot and a thread for the rest: serialising the state on the loop
 * stalled ingest for 50-700 ms at a million messages (measured, docs/performance-ops.md); the
 * snapshotter's forked child serialises a copy-on-write image instead, with no lock anywhere. The
 * rewrite needs no copy of anything (file I/O and zstd), so a plain thread does it, and the storage
 * split (begin / write / install) keeps the segment table owned by the loop: the only shared
 * structure is the small queue below, under one mutex.
 * Crash safety: every file change is one atomic rename; the snapshot is durable before the
 * first segment changes; a segment is either its old or its new image (same batches, same
 * hashes). Killed at any point, the server restarts into a state equal to the one it had (the
 * erasures were logged as ordinary commands before). Only one run at a time.
 */
#include "ops.h"
#include "server.h"
#include "snapshot.h"
#include "tq_assert.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define COMPACTION_SEGMENTS_MAX 65536u /* 4 TiB of 64 MiB segments */

struct tq_compaction {
    /* inputs, fixed at start */
    struct tq_compaction_request req;
    char dir[TQ_PATH_BYTES_MAX];
    uint64_t snap_lsn;
    struct tq_state_options state_options;
    bool snapshot_pending;      /* waiting for the snapshotter's callback (loop thread) */
    struct tq_log_rewrite **rw; /* rw_cap slots, rw_count used */
    uint32_t rw_count, rw_cap;
    pthread_t thread;
    bool thread_live;      /* loop thread only */
    uint32_t rw_installed; /* loop thread only */
    uint64_t start_mono_ms;
    atomic_bool cancel;
    /* shared with the helper, under mu */
    pthread_mutex_t mu;
    uint32_t rw_written; /* rewrites [rw_installed, rw_written) wait for install */
    bool finished;
    struct tq_compaction_status st;
    /* the helper's I/O pacing */
    uint64_t io_bytes;
    uint64_t io_start_us;
};

static uint64_t mono_us(void) {
    return tq_mono_us();
}

/* The helper runs at a lower CPU priority than the event loop: on a
 * machine with few cores the scheduler then gives the loop the CPU first (Linux nice is per
 * thread). Best effort: a failure only loses the preference. */
#define COMPACTION_NICE 10

static void lower_priority(void) {
    (void)setpriority(PRIO_PROCESS, (id_t)gettid(), COMPACTION_NICE);
}

/* ---- the helper thread ------------------------------------------------------------------ */

static void set_phase(struct tq_compaction *c, const char *phase) {
    pthread_mutex_lock(&c->mu);
    snprintf(c->st.phase, sizeof(c->st.phase), "%s", phase);
    pthread_mutex_unlock(&c->mu);
}

/* The I/O budget: after each chunk, sleep until bytes/rate seconds have passed since the start
 * (a token bucket with no burst beyond one chunk). */
static void io_done(void *ctx, uint64_t bytes) {
    struct tq_compaction *c = ctx;
    c->io_bytes += bytes;
    pthread_mutex_lock(&c->mu);
    c->st.io_bytes = c->io_bytes;
    pthread_mutex_unlock(&c->mu);
    uint64_t rate = c->req.io_bytes_per_sec;
    if (rate == 0) return;
    for (;;) {
        uint64_t due_us = c->io_start_us + c->io_bytes * 1000000u / rate;
        uint64_t now = mono_us();
        if (now >= due_us || atomic_load(&c->cancel)) return;
        uint64_t wait = due_us - now > 100000u ? 100000u : due_us - now;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(wait * 1000u)};
        nanosleep(&ts, NULL);
    }
}

static void no_log_line(void *ctx, const char *line) {
    (void)ctx;
    (void)line;
}

/* Step 3: what to redact, on a private state copy and a private read-only handle. */
static enum tq_err classify(struct tq_compaction *c, struct tq_ops_lsn_set *all,
                            struct tq_error *error) {
    struct tq_state *state = NULL;
    struct tq_log_options opt;
    memset(&opt, 0, sizeof(opt));
    opt.dir = c->dir;
    opt.read_only = true;
    /* The live writer (this server, holding DIR/LOCK) keeps up to TQ_BATCHES_INFLIGHT_MAX
     * batches in flight, so the tail may show a batch written after a hole: storage's
     * read-only open stops there while the lock is held (docs/log-format.md, "Readers beside
     * a live writer") and still refuses real damage. Everything <= snap_lsn is durable, hence
     * before any hole. */
    opt.ring_tag = 1;
    opt.log_line = no_log_line;
    struct tq_log *log = NULL;
    enum tq_err err = tq_log_open(&opt, &log, NULL, error);
    if (err == TQ_OK && tq_log_acked_lsn(log) < c->snap_lsn) {
        err = tq_error_set(error, TQ_ERR_INTERNAL,
                           "the log read back ends at LSN %" PRIu64
                           ", before the snapshot at %" PRIu64,
                           tq_log_acked_lsn(log), c->snap_lsn);
    }
    /* The state to classify against: the snapshot just written (or a newer one another
     * writer took since: it only knows more erasures). */
    void *blob = NULL;
    size_t len = 0;
    uint64_t snap = 0;
    if (err == TQ_OK) err = tq_log_snapshot_latest(log, &blob, &len, &snap, error);
    if (err == TQ_OK && snap < c->snap_lsn) {
        err = tq_error_set(error, TQ_ERR_INTERNAL,
                           "the newest snapshot is at LSN %" PRIu64 ", not the one at %" PRIu64,
                           snap, c->snap_lsn);
    }
    if (err == TQ_OK) err = tq_state_deserialize(blob, len, &c->state_options, &state, error);
    if (blob != NULL) tq_free(blob, len);
    struct tq_ops_classification cl;
    memset(&cl, 0, sizeof(cl));
    if (err == TQ_OK) {
        struct tq_ops_classify_options co = {.tenant_id = c->req.tenant_id,
                                             .erased_in_state = c->req.erase,
                                             .retention_ms = c->req.retention_days * 86400000ull,
                                             .lsn_max = c->snap_lsn};
        err = tq_ops_classify(log, state, &co, &cl, error);
    }
    if (err == TQ_OK && c->req.archive_dir[0] != '\0' && cl.retain.count > 0) {
        err = tq_ops_archive_write(log, c->req.archive_dir, &cl.retain, error);
        pthread_mutex_lock(&c->mu);
        if (err == TQ_OK) c->st.records_archived = cl.retain.count;
        pthread_mutex_unlock(&c->mu);
    }
    if (log != NULL) tq_log_close(log);
    if (state != NULL) tq_state_free(state);
    if (err != TQ_OK) return err;
    /* erase + retain, merged (both sorted) */
    all->cap = cl.erase.count + cl.retain.count;
    all->lsns = tq_xalloc((all->cap > 0 ? all->cap : 1) * sizeof(uint64_t));
    size_t i = 0, j = 0;
    while (i < cl.erase.count || j < cl.retain.count) {
        uint64_t v;
        if (j == cl.retain.count || (i < cl.erase.count && cl.erase.lsns[i] <= cl.retain.lsns[j])) {
            v = cl.erase.lsns[i++];
        } else {
            v = cl.retain.lsns[j++];
        }
        if (all->count == 0 || all->lsns[all->count - 1] != v) all->lsns[all->count++] = v;
    }
    if (all->cap == 0) all->cap = 1;
    pthread_mutex_lock(&c->mu);
    c->st.customers_erased = cl.customers;
    c->st.records_erased = cl.erase.count;
    c->st.records_retained_out = cl.retain.count;
    pthread_mutex_unlock(&c->mu);
    tq_ops_lsn_set_free(&cl.erase);
    tq_ops_lsn_set_free(&cl.retain);
    return TQ_OK;
}

static enum tq_err run(struct tq_compaction *c, struct tq_error *error) {
    enum tq_err err = TQ_OK;
    struct tq_ops_lsn_set all;
    memset(&all, 0, sizeof(all));
    if (c->req.erase || c->req.retention_days > 0) {
        set_phase(c, "classify");
        err = classify(c, &all, error);
        if (err != TQ_OK) return err;
    }
    set_phase(c, "rewrite");
    c->io_start_us = mono_us();
    c->io_bytes = 0;
    for (uint32_t i = 0; i < c->rw_count && err == TQ_OK; i++) {
        if (atomic_load(&c->cancel)) {
            err = tq_error_set(error, TQ_ERR_UNAVAILABLE, "cancelled: the server is stopping");
            break;
        }
        struct tq_log_rewrite_options o = {.lsns = all.lsns,
                                           .count = all.count,
                                           .compress = c->req.compress,
                                           .io_done = io_done,
                                           .io_ctx = c};
        struct tq_log_rewrite_stats rs;
        err = tq_log_rewrite_write(c->rw[i], &o, &rs, error);
        pthread_mutex_lock(&c->mu);
        if (err == TQ_OK) {
            c->st.records_redacted += rs.records_redacted;
            if (rs.rewritten) c->st.segments_rewritten++;
            c->st.segments_done = i + 1;
            c->rw_written = i + 1; /* hand it to the loop */
        }
        pthread_mutex_unlock(&c->mu);
    }
    tq_ops_lsn_set_free(&all);
    pthread_mutex_lock(&c->mu);
    bool erased = c->st.customers_erased > 0;
    pthread_mutex_unlock(&c->mu);
    if (err == TQ_OK && erased) {
        set_phase(c, "snapshots");
        uint64_t removed = 0;
        err = tq_ops_snapshots_remove_older(c->dir, c->snap_lsn, &removed, error);
        pthread_mutex_lock(&c->mu);
        c->st.snapshots_removed = removed;
        pthread_mutex_unlock(&c->mu);
    }
    return err;
}

static void *helper_main(void *arg) {
    struct tq_compaction *c = arg;
    lower_priority();
    struct tq_error error;
    tq_error_clear(&error);
    enum tq_err err = run(c, &error);
    pthread_mutex_lock(&c->mu);
    if (err != TQ_OK) {
        c->st.failed = true;
        c->st.error_code = err;
        snprintf(c->st.error_msg, sizeof(c->st.error_msg), "%s", error.msg);
    }
    c->finished = true;
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ---- the loop thread ------------------------------------------------------------------- */

static void compaction_free(struct tq_compaction *c) {
    for (uint32_t i = 0; i < c->rw_count; i++)
        tq_log_rewrite_free(c->rw[i]);
    if (c->rw != NULL) tq_free(c->rw, c->rw_cap * sizeof(*c->rw));
    c->rw = NULL;
    c->rw_count = 0;
}

/* Records a failure that ended a run before its helper started (loop thread). */
static void fail_before_helper(struct tq_compaction *c, enum tq_err code, const char *msg) {
    pthread_mutex_lock(&c->mu);
    c->st.running = false;
    c->st.failed = true;
    c->st.error_code = code;
    snprintf(c->st.error_msg, sizeof(c->st.error_msg), "%s", msg);
    snprintf(c->st.phase, sizeof(c->st.phase), "failed");
    c->st.runs++;
    c->st.elapsed_ms = tq_mono_ms() - c->start_mono_ms;
    pthread_mutex_unlock(&c->mu);
    fprintf(stderr, "ticketqd: compaction failed: %s\n", msg);
}

/* Step 2, the snapshotter's callback (loop thread): the snapshot at lsn is durable. */
static void on_snapshot(struct tq_server *srv, uint64_t arg, uint64_t lsn,
                        const struct tq_error *snap_error) {
    (void)arg;
    struct tq_compaction *c = srv->compaction;
    TQ_ASSERT(c != NULL && c->snapshot_pending && !c->thread_live);
    c->snapshot_pending = false;
    if (snap_error != NULL) {
        char msg[TQ_ERROR_MSG_BYTES_MAX];
        snprintf(msg, sizeof(msg), "snapshot: %.*s (nothing changed)", (int)(sizeof(msg) - 32),
                 snap_error->msg);
        fail_before_helper(c, snap_error->code, msg);
        return;
    }
    struct tq_snapshot_stats ss;
    tq_snapshot_get_stats(srv, &ss);
    c->snap_lsn = lsn;
    /* The sealed segments the snapshot covers (not the tail, nothing not yet durable). */
    uint64_t *lsns = tq_xalloc(COMPACTION_SEGMENTS_MAX * sizeof(uint64_t));
    size_t n = tq_log_segments(srv->log, lsns, COMPACTION_SEGMENTS_MAX);
    c->rw_cap = n > 0 ? (uint32_t)n : 1;
    c->rw = tq_xcalloc(c->rw_cap, sizeof(*c->rw));
    for (size_t i = 0; i + 1 < n; i++) {
        if (lsns[i + 1] - 1 > lsn) break;
        struct tq_error ignored;
        if (tq_log_rewrite_begin(srv->log, lsns[i], &c->rw[c->rw_count], &ignored) == TQ_OK) {
            c->rw_count++;
        }
    }
    tq_free(lsns, COMPACTION_SEGMENTS_MAX * sizeof(uint64_t));
    TQ_ASSERT(c->rw_count <= c->rw_cap);
    pthread_mutex_lock(&c->mu);
    c->st.snapshot_lsn = lsn;
    c->st.segments_total = c->rw_count;
    c->st.loop_stall_us = ss.last_fork_us;
    pthread_mutex_unlock(&c->mu);
    if (pthread_create(&c->thread, NULL, helper_main, c) != 0) {
        compaction_free(c);
        fail_before_helper(c, TQ_ERR_RESOURCE_EXHAUSTED, "cannot start the helper thread");
        return;
    }
    c->thread_live = true;
}

enum tq_err tq_compaction_start(struct tq_server *srv, const struct tq_compaction_request *req,
                                struct tq_error *error) {
    TQ_ASSERT(srv != NULL && req != NULL);
    struct tq_compaction *c = srv->compaction;
    if (c == NULL) {
        c = tq_xcalloc(1, sizeof(*c));
        pthread_mutex_init(&c->mu, NULL);
        srv->compaction = c;
    }
    if (c->thread_live || c->snapshot_pending) {
        return tq_error_set(error, TQ_ERR_FAILED_PRECONDITION,
                            "a compaction is running already (phase %s): see CompactStatus",
                            c->st.phase);
    }
    if (req->archive_dir[0] != '\0' && req->retention_days == 0) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT, "archive_dir needs retention_days");
    }
    if (req->archive_dir[0] != '\0' && req->archive_dir[0] != '/') {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                            "archive_dir must be an absolute path on the server");
    }
    if (srv->lsn_staged == 0) {
        return tq_error_set(error, TQ_ERR_FAILED_PRECONDITION, "nothing to compact");
    }
    TQ_ASSERT(c->rw_count == 0 && c->rw == NULL);
    /* Step 1: the snapshot; on_snapshot continues from the loop once it is durable. */
    enum tq_err err = tq_snapshot_request(srv, on_snapshot, 0, error);
    if (err != TQ_OK) return err;
    uint64_t runs = c->st.runs;
    memset(&c->st, 0, sizeof(c->st));
    c->st.runs = runs;
    c->req = *req;
    snprintf(c->dir, sizeof(c->dir), "%s", srv->cfg.data_dir);
    c->snap_lsn = 0;
    c->state_options = (struct tq_state_options){.body_bytes_max = srv->cfg.body_max};
    c->snapshot_pending = true;
    c->rw_installed = 0;
    c->rw_written = 0;
    c->finished = false;
    atomic_store(&c->cancel, false);
    c->st.running = true;
    snprintf(c->st.phase, sizeof(c->st.phase), "snapshot");
    c->st.bytes_before = tq_ops_data_bytes(c->dir);
    c->start_mono_ms = tq_mono_ms();
    return TQ_OK;
}

/* Installs the rewrites the helper finished (loop thread). */
static void install_ready(struct tq_server *srv, struct tq_compaction *c) {
    pthread_mutex_lock(&c->mu);
    uint32_t ready = c->rw_written;
    pthread_mutex_unlock(&c->mu);
    TQ_ASSERT(ready <= c->rw_count);
    for (; c->rw_installed < ready; c->rw_installed++) {
        tq_log_rewrite_install(srv->log, c->rw[c->rw_installed]);
    }
}

bool tq_compaction_poll(struct tq_server *srv) {
    struct tq_compaction *c = srv->compaction;
    if (c == NULL || !c->thread_live) return false;
    install_ready(srv, c);
    pthread_mutex_lock(&c->mu);
    bool finished = c->finished;
    pthread_mutex_unlock(&c->mu);
    if (!finished) return true;
    pthread_join(c->thread, NULL);
    c->thread_live = false;
    install_ready(srv, c); /* whatever was queued after the last turn */
    c->st.running = false;
    c->st.runs++;
    snprintf(c->st.phase, sizeof(c->st.phase), "%s", c->st.failed ? "failed" : "done");
    c->st.elapsed_ms = tq_mono_ms() - c->start_mono_ms;
    c->st.bytes_after = tq_ops_data_bytes(c->dir);
    if (c->st.failed) {
        fprintf(stderr, "ticketqd: compaction failed: %s\n", c->st.error_msg);
    } else {
        fprintf(stderr,
                "ticketqd: compaction done in %" PRIu64 " ms: snapshot at LSN %" PRIu64
                ", %u/%u segments rewritten, %" PRIu64 " records redacted, %" PRIu64 " -> %" PRIu64
                " bytes\n",
                c->st.elapsed_ms, c->st.snapshot_lsn, c->st.segments_rewritten,
                c->st.segments_total, c->st.records_redacted, c->st.bytes_before,
                c->st.bytes_after);
    }
    compaction_free(c);
    return false;
}

void tq_compaction_status(const struct tq_server *srv, struct tq_compaction_status *out) {
    struct tq_compaction *c = srv->compaction;
    memset(out, 0, sizeof(*out));
    if (c == NULL) {
        snprintf(out->phase, sizeof(out->phase), "idle");
        return;
    }
    pthread_mutex_lock(&c->mu);
    *out = c->st;
    pthread_mutex_unlock(&c->mu);
    if (out->running) out->elapsed_ms = tq_mono_ms() - c->start_mono_ms;
}

void tq_compaction_stop(struct tq_server *srv) {
    struct tq_compaction *c = srv->compaction;
    if (c == NULL) return;
    /* tq_snapshot_shutdown ran first and called every waiter back, on_snapshot included. */
    TQ_ASSERT(!c->snapshot_pending);
    if (c->thread_live) {
        atomic_store(&c->cancel, true);
        pthread_join(c->thread, NULL);
        c->thread_live = false;
        install_ready(srv, c);
        compaction_free(c);
    }
    pthread_mutex_destroy(&c->mu);
    tq_free(c, sizeof(*c));
    srv->compaction = NULL;
}
