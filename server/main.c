/* server/main.c: ticketqd's entry point: options, recovery, first start, listeners, shutdown.
 *
 * Startup order matters for durability and for the test fixture:
 *   1. options (exit 2 on a bad one);
 *   2. the data-directory lock (DIR/LOCK, flock, never waits: a second ticketqd or an offline
 *      compact/restore on the same directory is refused with a message naming the holder),
 *      then the io_uring ring (the log's write path plugs into it);
 *   3. the log: tq_log_open verifies checksums and the hash chain; corruption refuses to start
 *      with the storage error naming file, offset and LSN (exit 1);
 *   4. the state: newest snapshot, then every command record after it, applied in LSN order;
 *      an apply error here means the log and the code disagree, which is fatal;
 *   5. first start only (no record at all): a server-admin token, written to DIR/admin.token
 *      (0600, temp + rename) BEFORE its hash is logged, so a crash in between at worst issues
 *      a fresh token on the next start; it is printed once;
 *   6. listeners, then the port file (temp + rename) that tells tests and scripts we are up.
 */
#include "auth.h"
#include "events_codec.h"
#include "prefault.h"
#include "server.h"
#include "snapshot.h"
#include "tq_assert.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* The log's per-batch callback (records per group-commit batch, submit to acknowledgement). */
static void on_batch_acked(void *metrics, uint32_t records, uint64_t submit_to_ack_us) {
    tq_metrics_batch(metrics, records, submit_to_ack_us);
}

static void log_line(void *ctx, const char *line) {
    (void)ctx;
    fprintf(stderr, "ticketqd: %s\n", line);
}

static int write_file_atomic(const char *path, const char *text, mode_t mode) {
    char tmp[TQ_CONFIG_PATH_BYTES + 16];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) return -1;
    size_t len = strlen(text);
    if (fchmod(fd, mode) != 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) != 0) {
        close(fd);
        unlink(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* ---- recovery -------------------------------------------------------------------------------- */

struct derive_ctx {
    struct tq_event **events;
    uint32_t *count, *cap;
};

static void derive_event(void *ctx, const struct tq_event *event) {
    struct derive_ctx *d = ctx;
    if (*d->count == *d->cap) {
        uint32_t cap = *d->cap ? *d->cap * 2 : 64;
        *d->events =
            tq_xrealloc(*d->events, *d->cap * sizeof(**d->events), cap * sizeof(**d->events));
        *d->cap = cap;
    }
    (*d->events)[(*d->count)++] = *event;
}

#ifdef TQ_DEBUG
/* Compares a logged events record with the events apply derived for its command. Returns the
 * number of differing events (a record that does not decode counts as one). */
static uint64_t compare_events(struct tq_server *srv, const struct tq_log_record *r,
                               uint64_t applied_cmd_lsn, const struct tq_event *derived,
                               uint32_t available, uint32_t *next) {
    struct tq_event *logged =
        tq_arena_alloc(&srv->arena, TQ_EVENTS_PER_RECORD_MAX * sizeof(*logged));
    uint64_t cmd_lsn;
    uint32_t count;
    struct tq_error error;
    if (tq_events_decode(r->payload, r->len, &cmd_lsn, logged, TQ_EVENTS_PER_RECORD_MAX, &count,
                         &error) != TQ_OK) {
        fprintf(stderr, "ticketqd: events record %" PRIu64 ": %s\n", r->lsn, error.msg);
        return 1;
    }
    if (cmd_lsn != applied_cmd_lsn) return 0; /* its command is inside the snapshot */
    uint64_t bad = 0;
    for (uint32_t i = 0; i < count; i++) {
        const struct tq_event *a = &logged[i];
        const struct tq_event *b = i < available ? &derived[i] : NULL;
        if (b == NULL || a->type != b->type || a->lsn != cmd_lsn || a->at_ms != b->at_ms ||
            a->tenant_id != b->tenant_id || a->ticket_id != b->ticket_id ||
            a->message_id != b->message_id || a->customer_id != b->customer_id ||
            a->agent_id != b->agent_id || a->queue_id != b->queue_id || a->field != b->field ||
            a->old_value != b->old_value || a->new_value != b->new_value ||
            a->sla_metric != b->sla_metric) {
            bad++;
            if (b != NULL) {
                fprintf(stderr,
                        "ticketqd:   logged type %d at %" PRIu64 " tenant %" PRIu64
                        " ticket %" PRIu64 " msg %" PRIu64 " cust %" PRIu64 " agent %" PRIu64
                        " queue %" PRIu64 " field %d %" PRId64 "->%" PRId64
                        "; derived type %d at %" PRIu64 " tenant %" PRIu64 " ticket %" PRIu64
                        " msg %" PRIu64 " cust %" PRIu64 " agent %" PRIu64 " queue %" PRIu64
                        " field %d %" PRId64 "->%" PRId64 "\n",
                        (int)a->type, a->at_ms, a->tenant_id, a->ticket_id, a->message_id,
                        a->customer_id, a->agent_id, a->queue_id, (int)a->field, a->old_value,
                        a->new_value, (int)b->type, b->at_ms, b->tenant_id, b->ticket_id,
                        b->message_id, b->customer_id, b->agent_id, b->queue_id, (int)b->field,
                        b->old_value, b->new_value);
            }
        }
    }
    if (bad > 0) {
        fprintf(stderr, "ticketqd: events record %" PRIu64 ": %" PRIu64 " of %u events differ\n",
                r->lsn, bad, count);
    }
    *next += count;
    return bad;
}
#endif

/* What recovery did, for the "ready" line. */
struct recovery_times {
    uint64_t snapshot_lsn;
    uint64_t snapshot_file_bytes; /* its file: header + blob (0: none) */
    uint64_t snapshot_us;         /* reading and loading the snapshot */
    uint64_t replay_us;           /* applying the records after it */
    uint64_t replayed;            /* command records applied */
};

/* Recovery applies commands through a decode-ahead window (tq_state_window, state.h): records
 * are decoded and their cache lines prefetched up to TQ_STATE_WINDOW_RECORDS ahead of the one
 * applied, which hides most of apply's memory latency on a large state. */
struct recovery_progress {
    struct derive_ctx *derived; /* the events apply derives for the command just applied */
    uint32_t derived_next;      /* how many of them the events records have matched */
    uint64_t applied, last_cmd_lsn;
    int last_cmd_type;
};

/* Applies the oldest command of the window; a command that no longer applies is fatal. */
static void recovery_apply(struct tq_server *srv, struct tq_state_window *window,
                           const struct tq_event_sink *sink, struct recovery_progress *p) {
    struct tq_error error;
    uint64_t lsn = 0;
    const struct tq_cmd *cmd = NULL;
    *p->derived->count = 0;
    p->derived_next = 0;
    if (tq_state_window_apply(window, srv->state, NULL, sink, &lsn, &cmd, &error) != TQ_OK) {
        tq_fatal("recovery: record %" PRIu64 " (command %d) no longer applies: %s "
                 "(the log and this binary disagree)",
                 lsn, (int)cmd->type, error.msg);
    }
    p->last_cmd_type = (int)cmd->type;
    p->last_cmd_lsn = lsn;
    if (cmd->now_ms > srv->last_now_ms) srv->last_now_ms = cmd->now_ms;
    p->applied++;
}

static int recover(struct tq_server *srv, const struct tq_log_recovery *rec,
                   struct recovery_times *times) {
    uint64_t t0 = tq_mono_us();
    if (srv->cfg.state_prefault && srv->prefaulter == NULL) {
        srv->prefaulter = tq_prefaulter_start();
    }
    struct tq_state_options sopt = {
        .body_bytes_max = srv->cfg.body_max,
        .prefault = srv->prefaulter != NULL ? tq_prefaulter_request : NULL,
        .prefault_ctx = srv->prefaulter,
        .release = srv->prefaulter != NULL ? tq_prefaulter_release : NULL,
        .release_ctx = srv->prefaulter};
    struct tq_error error;
    void *blob = NULL;
    size_t blob_len = 0;
    uint64_t snap_lsn = 0;
    enum tq_err err = tq_log_snapshot_latest(srv->log, &blob, &blob_len, &snap_lsn, &error);
    times->snapshot_file_bytes = err == TQ_OK ? TQ_SNAPSHOT_HEADER_BYTES + (uint64_t)blob_len : 0;
    if (err == TQ_OK) {
        err = tq_state_deserialize(blob, blob_len, &sopt, &srv->state, &error);
        tq_free(blob, blob_len);
        if (err != TQ_OK) {
            fprintf(stderr, "ticketqd: snapshot at LSN %" PRIu64 ": %s\n", snap_lsn, error.msg);
            return 1;
        }
    } else if (err == TQ_ERR_NOT_FOUND) {
        srv->state = tq_state_new(&sopt);
        snap_lsn = 0;
    } else {
        fprintf(stderr, "ticketqd: snapshot: %s\n", error.msg);
        return 1;
    }
    uint64_t t_loaded = tq_mono_us();
    /* Size the message idempotency table once for what the replay can add, instead of
     * regrowing it on the way: about half the records after the snapshot are commands (each
     * ingest also logs an events record); a table found too small still grows. */
    if (rec->lsn_last > snap_lsn)
        tq_state_reserve_messages(srv->state, (rec->lsn_last - snap_lsn) / 2);
    struct tq_log_iter *it = NULL;
    if (tq_log_iter_open(srv->log, snap_lsn + 1, &it, &error) != TQ_OK) {
        fprintf(stderr, "ticketqd: recovery: %s\n", error.msg);
        return 1;
    }
    uint64_t first = 0, last = 0;
    /* Events are derived data: recovery skips their records. Debug builds re-derive them
     * from apply and compare, which checks that apply is deterministic. */
    struct tq_event *derived = NULL;
    uint32_t derived_count = 0, derived_cap = 0;
    uint64_t mismatches = 0;
    struct derive_ctx dctx = {&derived, &derived_count, &derived_cap};
    struct tq_event_sink sink = {.emit = derive_event, .ctx = &dctx};
    struct recovery_progress prog = {.derived = &dctx};
    struct tq_state_window *window = tq_xalloc(sizeof(*window));
    tq_state_window_init(window);
    for (;;) {
        struct tq_log_record r;
        err = tq_log_iter_next(it, &r, &error);
        if (err == TQ_ERR_NOT_FOUND) break;
        if (err != TQ_OK) {
            fprintf(stderr, "ticketqd: recovery: %s\n", error.msg);
            tq_log_iter_close(it);
            tq_state_window_destroy(window);
            tq_free(window, sizeof(*window));
            return 1;
        }
        if (first == 0) first = r.lsn;
        last = r.lsn;
        if (r.type == TQ_RECORD_TYPE_EVENTS) {
#ifdef TQ_DEBUG
            /* an events record follows its command: apply everything pending first */
            while (!tq_state_window_empty(window))
                recovery_apply(srv, window, &sink, &prog);
            uint64_t bad = compare_events(srv, &r, prog.last_cmd_lsn, derived + prog.derived_next,
                                          derived_count - prog.derived_next, &prog.derived_next);
            if (bad > 0) {
                fprintf(stderr, "ticketqd:   (events of command type %d, %u derived)\n",
                        prog.last_cmd_type, derived_count);
            }
            mismatches += bad;
            tq_arena_reset(&srv->arena);
#endif
            continue;
        }
        if (r.type != TQ_RECORD_TYPE_CMD) continue;
        if (r.flags & TQ_RECORD_REDACTED) {
            tq_fatal("recovery: command record %" PRIu64 " is redacted", r.lsn);
        }
        if (tq_state_window_full(window)) recovery_apply(srv, window, &sink, &prog);
        /* the window copies the payload: the iterator may reuse its buffer */
        if (tq_state_window_push(window, srv->state, r.lsn, r.payload, r.len, &error) != TQ_OK) {
            tq_fatal("recovery: record %" PRIu64 " does not decode: %s", r.lsn, error.msg);
        }
    }
    while (!tq_state_window_empty(window))
        recovery_apply(srv, window, &sink, &prog);
    tq_state_window_destroy(window);
    tq_free(window, sizeof(*window));
    uint64_t applied = prog.applied;
    tq_log_iter_close(it);
    if (derived != NULL) tq_free(derived, derived_cap * sizeof(*derived));
    if (mismatches > 0) {
        tq_fatal("recovery: %" PRIu64 " logged events differ from the events apply derives "
                 "again (apply is not deterministic)",
                 mismatches);
    }
    srv->lsn_staged = rec->lsn_last > last ? rec->lsn_last : last;
    if (srv->lsn_staged < snap_lsn) srv->lsn_staged = snap_lsn;
    srv->events_flushed_lsn = srv->lsn_staged;
    uint64_t t_end = tq_mono_us();
    times->snapshot_lsn = snap_lsn;
    times->snapshot_us = t_loaded - t0;
    times->replay_us = t_end - t_loaded;
    times->replayed = applied;
    fprintf(stderr,
            "ticketqd: recovered %" PRIu64 " records (LSN %" PRIu64 "..%" PRIu64 ") in %.1f ms "
            "(snapshot at LSN %" PRIu64 ", %" PRIu64 " torn bytes cut)\n",
            applied, first, last, (double)(t_end - t0) / 1000.0, snap_lsn, rec->torn_bytes_cut);
    return 0;
}

/* Waits (on the server's ring) until everything staged is acknowledged. Startup only. */
static void sync_staged(struct tq_server *srv) {
    while (tq_log_acked_lsn(srv->log) < srv->lsn_staged) {
        tq_log_submit(srv->log, &srv->ring, tq_now_us());
        struct io_uring_cqe *cqe;
        int rc = io_uring_submit_and_wait(&srv->ring, 1);
        if (rc < 0 && rc != -EINTR) tq_fatal("io_uring_submit_and_wait: %s", strerror(-rc));
        while (io_uring_peek_cqe(&srv->ring, &cqe) == 0) {
            TQ_ASSERT(tq_log_owns_cqe(srv->log, cqe));
            tq_log_complete(srv->log, &srv->ring, cqe);
            io_uring_cqe_seen(&srv->ring, cqe);
        }
    }
    tq_dispatch_prune_staged(srv, tq_log_acked_lsn(srv->log));
    srv->events_flushed_lsn = srv->lsn_staged;
    srv->pend_count = 0;
}

static int first_start(struct tq_server *srv) {
    uint8_t secret[TQ_TOKEN_SECRET_BYTES];
    if (getrandom(secret, sizeof(secret), 0) != (ssize_t)sizeof(secret)) {
        fprintf(stderr, "ticketqd: getrandom: %s\n", strerror(errno));
        return 1;
    }
    char text[TQ_TOKEN_TEXT_BYTES + 1];
    tq_dispatch_token_text(secret, text);
    char path[TQ_CONFIG_PATH_BYTES + 32];
    snprintf(path, sizeof(path), "%s/admin.token", srv->cfg.data_dir);
    char line[TQ_TOKEN_TEXT_BYTES + 4];
    snprintf(line, sizeof(line), "%s\n", text);
    if (write_file_atomic(path, line, 0600) != 0) {
        fprintf(stderr, "ticketqd: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    struct tq_cmd cmd;
    memset(&cmd, 0, sizeof(cmd));
    cmd.type = TQ_CMD_TOKEN_ISSUE;
    cmd.u.token_issue.role = TQ_ROLE_SERVER_ADMIN;
    cmd.u.token_issue.name = (struct tq_str){.ptr = "admin", .len = 5};
    tq_auth_token_hash(text, strlen(text), cmd.u.token_issue.hash);
    struct tq_cmd_result res;
    struct tq_error error;
    uint64_t lsn;
    if (tq_dispatch_run_cmd(srv, &cmd, &res, &lsn, &error) != TQ_OK) {
        fprintf(stderr, "ticketqd: first start: cannot issue the admin token: %s\n", error.msg);
        return 1;
    }
    sync_staged(srv);
    printf("ticketqd: first start: server-admin token (shown once; also in %s):\n%s\n", path, text);
    fflush(stdout);
    return 0;
}

/* ---- listeners --------------------------------------------------------------------------- */

static int listen_tcp(const char *host, uint16_t port, char *bound, size_t bound_cap) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char port_text[8];
    snprintf(port_text, sizeof(port_text), "%u", port);
    int rc = getaddrinfo(host, port_text, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "ticketqd: %s:%u: %s\n", host, port, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        fprintf(stderr, "ticketqd: listen %s:%u: %s\n", host, port, strerror(errno));
        if (fd >= 0) close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    char h[64], p[8];
    getnameinfo((struct sockaddr *)&ss, sl, h, sizeof(h), p, sizeof(p),
                NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(bound, bound_cap, strchr(h, ':') ? "[%s]:%s" : "%s:%s", h, p);
    return fd;
}

static int listen_unix(const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "ticketqd: --unix: path too long\n");
        return -1;
    }
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 1024) != 0) {
        fprintf(stderr, "ticketqd: listen unix:%s: %s\n", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

/* Creates the ring with the flags --ring asks for (auto: the first of defer, coop, plain that
 * the kernel accepts; an explicit mode that the kernel refuses is an error) and bounds the
 * io-wq workers (--io-workers). Returns 0, or 1 after one message. */
static int ring_setup(struct tq_server *srv) {
    static const struct {
        enum tq_ring_mode mode;
        const char *name;
        unsigned flags;
    } modes[] = {
        {TQ_RING_DEFER, "defer",
         IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG},
        {TQ_RING_COOP, "coop", IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG},
        {TQ_RING_PLAIN, "plain", 0},
    };
    TQ_ASSERT(!srv->ring_ready);
    int rc = -EINVAL;
    for (size_t i = 0; i < TQ_ARRAY_COUNT(modes); i++) {
        if (srv->cfg.ring_mode != TQ_RING_AUTO && srv->cfg.ring_mode != modes[i].mode) continue;
        rc = io_uring_queue_init(TQ_RING_ENTRIES, &srv->ring, modes[i].flags);
        if (rc == 0) {
            srv->ring_defer = (modes[i].flags & IORING_SETUP_DEFER_TASKRUN) != 0;
            static const char *const turns[] = {"classic", "poll", "reactive"};
            fprintf(stderr, "ticketqd: io_uring: %s ring, %s turns\n", modes[i].name,
                    turns[srv->cfg.turn_mode]);
            break;
        }
        if (srv->cfg.ring_mode != TQ_RING_AUTO || rc != -EINVAL) break;
    }
    if (rc < 0) {
        fprintf(stderr, "ticketqd: io_uring unavailable (--ring): %s\n", strerror(-rc));
        return 1;
    }
    srv->ring_ready = true;
    if (srv->cfg.io_workers > 0) {
        unsigned workers[2] = {srv->cfg.io_workers, srv->cfg.io_workers}; /* bounded, unbounded */
        rc = io_uring_register_iowq_max_workers(&srv->ring, workers);
        if (rc < 0) { /* kernels before 5.15: the default pool, which is only slower */
            fprintf(stderr, "ticketqd: --io-workers %u not applied: %s\n", srv->cfg.io_workers,
                    strerror(-rc));
        }
    }
    return 0;
}

static void probe_ring(struct tq_server *srv) {
    struct io_uring_probe *probe = io_uring_get_probe_ring(&srv->ring);
    /* Multishot accept came with kernel 5.19, as did IORING_OP_SOCKET: use it as the marker;
     * on_accept() still falls back if the kernel answers EINVAL. */
    srv->multishot_accept = probe != NULL && io_uring_opcode_supported(probe, IORING_OP_SOCKET);
    if (probe != NULL) {
        static const int needed[] = {IORING_OP_ACCEPT,  IORING_OP_RECV,        IORING_OP_SEND,
                                     IORING_OP_TIMEOUT, IORING_OP_READ,        IORING_OP_WRITE,
                                     IORING_OP_FSYNC,   IORING_OP_ASYNC_CANCEL};
        for (size_t i = 0; i < TQ_ARRAY_COUNT(needed); i++) {
            if (!io_uring_opcode_supported(probe, needed[i])) {
                tq_fatal("io_uring lacks opcode %d (kernel too old: 5.6+ needed)", needed[i]);
            }
        }
        io_uring_free_probe(probe);
    }
}

/* Opens the TCP, Unix and metrics listeners; bound receives the TCP address actually bound
 * ("HOST:PORT", the ephemeral port resolved). 0 or 1 (message printed). */
static int open_listeners(struct tq_server *srv, char *bound, size_t bound_cap) {
    TQ_ASSERT(bound != NULL && bound_cap > 0);
    if (srv->cfg.listen_tcp) {
        srv->listen_fds[0] =
            listen_tcp(srv->cfg.listen_host, srv->cfg.listen_port, bound, bound_cap);
        if (srv->listen_fds[0] < 0) return 1;
        fprintf(stderr, "ticketqd: listening on %s\n", bound);
    }
    if (srv->cfg.unix_path[0] != '\0') {
        srv->listen_fds[1] = listen_unix(srv->cfg.unix_path);
        if (srv->listen_fds[1] < 0) return 1;
        fprintf(stderr, "ticketqd: listening on unix:%s\n", srv->cfg.unix_path);
    }
    if (srv->cfg.metrics_host[0] != '\0') {
        char mbound[128];
        srv->metrics_fd =
            listen_tcp(srv->cfg.metrics_host, srv->cfg.metrics_port, mbound, sizeof(mbound));
        if (srv->metrics_fd < 0) return 1;
        fprintf(stderr, "ticketqd: metrics on http://%s/metrics\n", mbound);
    }
    return 0;
}

/* Releases everything main() acquired, after the loop returned. */
static void server_free(struct tq_server *srv) {
    for (int i = 0; i < 2; i++) {
        if (srv->listen_fds[i] >= 0) close(srv->listen_fds[i]);
    }
    if (srv->cfg.unix_path[0] != '\0') unlink(srv->cfg.unix_path);
    if (srv->metrics_fd >= 0) close(srv->metrics_fd);
    close(srv->signal_fd);
    if (tq_log_idle(srv->log)) tq_log_close(srv->log); /* else exit: the OS closes it */
    io_uring_queue_exit(&srv->ring);
    srv->ring_ready = false;
    /* The ring buffers are freed only if every connection was finalized (no recv can still
     * be copying into them); after a timed-out shutdown the process exit reclaims them. */
    bool conns_left = false;
    for (uint32_t i = 0; i < srv->conn_high; i++)
        conns_left |= srv->conns[i].in_use;
    if (!conns_left) tq_loop_recv_teardown(srv);
    tq_snapshot_free(srv);
    tq_prefaulter_stop(srv->prefaulter); /* it may be populating the state's pages */
    srv->prefaulter = NULL;
    tq_state_free(srv->state);
    tq_dispatch_destroy(srv);
    if (srv->pend != NULL) tq_free(srv->pend, srv->pend_cap * sizeof(*srv->pend));
    tq_free(srv->conns, srv->conn_cap * sizeof(*srv->conns));
    tq_metrics_free(srv->metrics);
    tq_log_dir_unlock(srv->dir_lock_fd);
}

int main(int argc, char **argv) {
    uint64_t t_start = tq_mono_us();
    static struct tq_server server;
    struct tq_server *srv = &server;
    tq_config_defaults(&srv->cfg);
    int rc = tq_config_parse(&srv->cfg, argc, argv);
    if (rc == 1) return 0;
    if (rc != 0) return 2;
    signal(SIGPIPE, SIG_IGN);
    /* Signals arrive through a signalfd read by the ring. Blocked before anything can start a
     * helper thread (threads inherit the mask; an unblocked one would take the default
     * action and kill the process). */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    srv->listen_fds[0] = srv->listen_fds[1] = srv->metrics_fd = srv->signal_fd = -1;
    srv->dir_lock_fd = -1;

    if (mkdir(srv->cfg.data_dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "ticketqd: --data %s: %s\n", srv->cfg.data_dir, strerror(errno));
        return 1;
    }
    /* One writer per data directory: a second ticketqd, or an offline compact/restore, is
     * refused at once (the lock lives as long as this process, kill -9 included). */
    struct tq_error lock_error;
    if (tq_log_dir_lock(srv->cfg.data_dir, "ticketqd", &srv->dir_lock_fd, &lock_error) != TQ_OK) {
        fprintf(stderr, "ticketqd: %s\n", lock_error.msg);
        return 1;
    }
    if (ring_setup(srv) != 0) return 1;
    probe_ring(srv);
    if (tq_loop_recv_setup(srv) != 0) return 1;
    tq_dispatch_init(srv);
    srv->metrics = tq_metrics_new();

    struct tq_log_options lopt = {
        .dir = srv->cfg.data_dir,
        .segment_bytes_max = srv->cfg.segment_bytes,
        .fsync_mode = srv->cfg.fsync_mode,
        .fsync_interval_ms = srv->cfg.fsync_interval_ms,
        .ring_tag = TQ_LOG_RING_TAG,
        .log_line = log_line,
        .snapshots_kept = srv->cfg.snapshots_keep,
        .spare_no_prezero = !srv->cfg.log_prezero,
        .dsync_writes = srv->cfg.log_dsync,
        .recycle_segments_max = srv->cfg.recycle_segments,
        .batches_inflight_max = srv->cfg.log_batches,
        .pipeline_bytes_min = srv->cfg.log_pipeline_bytes,
        .on_batch_acked = on_batch_acked,
        .on_batch_acked_ctx = srv->metrics,
    };
    struct tq_log_recovery rec;
    struct tq_error error;
    memset(&rec, 0, sizeof(rec));
    if (tq_log_open(&lopt, &srv->log, &rec, &error) != TQ_OK) {
        fprintf(stderr, "ticketqd: cannot open the log in %s: %s\n", srv->cfg.data_dir, error.msg);
        return 1;
    }
    struct recovery_times times;
    memset(&times, 0, sizeof(times));
    if (recover(srv, &rec, &times) != 0) return 1;
    if (srv->lsn_staged == 0 && first_start(srv) != 0) return 1;
    tq_snapshot_init(srv, times.snapshot_lsn, times.snapshot_file_bytes);

    srv->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (srv->signal_fd < 0) tq_fatal("signalfd: %s", strerror(errno));

    char bound[128] = "";
    if (open_listeners(srv, bound, sizeof(bound)) != 0) return 1;
    srv->conn_cap = srv->cfg.max_connections + 16;
    srv->conns = tq_xcalloc(srv->conn_cap, sizeof(*srv->conns));
    for (uint32_t i = 0; i < srv->conn_cap; i++) {
        srv->conns[i].index = i;
        srv->conns[i].fd = -1;
    }
    fprintf(stderr,
            "ticketqd: ready in %.2f s (log open %.2f s; snapshot at LSN %" PRIu64
            " loaded in %.2f s; replayed %" PRIu64 " commands in %.2f s)\n",
            (double)(tq_mono_us() - t_start) / 1e6, rec.seconds, times.snapshot_lsn,
            (double)times.snapshot_us / 1e6, times.replayed, (double)times.replay_us / 1e6);
    fflush(stderr); /* the line is out before the port file says we are up */
    if (srv->cfg.port_file[0] != '\0') {
        char line[160];
        snprintf(line, sizeof(line), "%s\n", bound[0] ? bound : srv->cfg.unix_path);
        if (write_file_atomic(srv->cfg.port_file, line, 0644) != 0) {
            fprintf(stderr, "ticketqd: --port-file %s: %s\n", srv->cfg.port_file, strerror(errno));
            return 1;
        }
    }
    fflush(stderr);

    rc = tq_loop_run(srv);
    server_free(srv);
    fprintf(stderr, "ticketqd: stopped (last LSN %" PRIu64 ")\n", srv->lsn_staged);
    return rc;
}
