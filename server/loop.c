/* server/loop.c: the one io_uring event loop of ticketqd.
 *
 * Owns the ring and every SQE the server submits: multishot accept (single-shot where the
 * kernel lacks it), one receive per connection, one send per connection, the log's
 * write+fdatasync SQEs (tagged by the log; routed to tq_log_complete), a periodic
 * IORING_OP_TIMEOUT, and a read on a signalfd for SIGTERM/SIGINT.
 *
 * Receives come in two kinds (--recv; tq_loop_recv_setup probes the kernel at start):
 *   multishot  one IORING_RECV_MULTISHOT recv per client connection, buffers picked by the
 *              kernel from one provided-buffer ring (group TQ_RECV_RING_GROUP_ID, --recv-buffers
 * entries). Each CQE's bytes are copied into the connection's frame buffer and the ring buffer is
 *              handed back at once, whatever state the connection is in. Backpressure
 *              (--max-inflight, a deferred request, a full frame buffer, a protocol error,
 *              drain) cancels the recv; bytes that complete before the cancel lands are
 *              still kept, so the overshoot is bounded by the socket's receive queue. The
 *              recv is re-armed when the condition clears, or when the kernel ends it (F_MORE
 *              clear), -ENOBUFS waiting TQ_RECV_NOBUFS_RETRY_MS so an empty ring never spins.
 *   single     one single-shot recv into the connection's own buffer: the fallback, and
 *              always the path of metrics connections.
 * A connection is freed only after the CQE without F_MORE of its multishot recv.
 *
 * One turn: wait for at least one CQE; reap at most TQ_CQES_PER_TURN_MAX; parse complete
 * frames of every connection (at most TQ_FRAMES_PER_CONN_TURN_MAX each) and dispatch them;
 * write a TICK if an SLA/wake-up/auto-close deadline is due; tq_log_submit() once (group
 * commit: everything staged this turn becomes one batch); release the output whose LSN the log
 * has acknowledged; hand acknowledged events to subscribers; arm sends and receives.
 * --turn poll / reactive change the order (see "the reactive turn" below): pending completions
 * run every TQ_FRAMES_PER_POLL_MAX frames; reactive reaps them then, and on a new
 * acknowledgement submits the staged batch and sends what it released before parsing on.
 *
 * user_data layout of our SQEs: bits 56..63 tag, 32..55 connection slot, 0..31 generation.
 * The log's SQEs carry TQ_LOG_RING_TAG in the top byte. A connection slot is reused only when
 * none of its SQEs is outstanding, so a CQE can never land on a stranger's buffer.
 */
#include "server.h"
#include "snapshot.h"

#include "ticketq.pb-c.h"
#include "tq_assert.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum ud_tag {
    UD_ACCEPT = 1,
    UD_RECV = 2,
    UD_SEND = 3,
    UD_TIMER = 4,
    UD_SIGNAL = 5,
    UD_CANCEL = 6,
    UD_SNAPSHOT = TQ_SNAPSHOT_UD_TAG, /* server/snapshot.c: the child's pidfd poll */
};

#define METRICS_CONNS_MAX         8u
#define METRICS_REQUEST_BYTES_MAX 8192u
#define METRICS_IDLE_MS           10000u
#define DRAIN_TIMEOUT_MS          10000u

static uint64_t make_ud(enum ud_tag tag, uint32_t index, uint32_t gen) {
    return ((uint64_t)tag << 56) | ((uint64_t)(index & 0xffffffu) << 32) | gen;
}

uint64_t tq_now_ms(void) {
    return tq_now_us() / 1000;
}

uint64_t tq_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t tq_mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t tq_mono_ms(void) {
    return tq_mono_us() / 1000;
}

static struct io_uring_sqe *get_sqe(struct tq_server *srv) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&srv->ring);
    if (sqe == NULL) {
        int rc = io_uring_submit(&srv->ring);
        if (rc < 0) tq_fatal("io_uring_submit: %s", strerror(-rc));
        sqe = io_uring_get_sqe(&srv->ring);
    }
    TQ_ASSERT(sqe != NULL);
    return sqe;
}

/* ---- the provided-buffer ring (multishot receive) ----------------------------------------- */

static uint8_t *ring_buf(struct tq_server *srv, uint32_t bid) {
    TQ_ASSERT(bid < srv->recv_ring_count);
    return srv->recv_bufs + (size_t)bid * TQ_RECV_RING_BUFFER_BYTES;
}

/* Hands buffer bid back to the kernel. */
static void ring_buf_return(struct tq_server *srv, uint32_t bid) {
    io_uring_buf_ring_add(srv->recv_ring, ring_buf(srv, bid), TQ_RECV_RING_BUFFER_BYTES,
                          (unsigned short)bid, io_uring_buf_ring_mask(srv->recv_ring_count), 0);
    io_uring_buf_ring_advance(srv->recv_ring, 1);
}

/* liburing 2.3 has no io_uring_setup_buf_ring: map the ring ourselves and register it. */
static int ring_register(struct tq_server *srv) {
    uint32_t count = srv->cfg.recv_buffers;
    TQ_ASSERT(count >= TQ_RECV_RING_BUFFERS_MIN && count <= TQ_RECV_RING_BUFFERS_MAX);
    TQ_ASSERT((count & (count - 1)) == 0); /* validated by config.c */
    srv->recv_ring_count = count;
    srv->recv_ring_bytes = count * sizeof(struct io_uring_buf);
    void *mem = mmap(NULL, srv->recv_ring_bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return -errno;
    srv->recv_ring = mem;
    io_uring_buf_ring_init(srv->recv_ring);
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)mem;
    reg.ring_entries = count;
    reg.bgid = TQ_RECV_RING_GROUP_ID;
    int rc = io_uring_register_buf_ring(&srv->ring, &reg, 0);
    if (rc < 0) {
        munmap(mem, srv->recv_ring_bytes);
        srv->recv_ring = NULL;
        return rc;
    }
    /* The buffers get their own mapping, left out of fork (MADV_DONTFORK): a snapshot child
     * never reads them, and while it lives every page the kernel receives into would be a
     * copy-on-write fault in the loop thread (8 MiB: 2,048 faults a snapshot at 157k ingests/s,
     * when the ring cycles through them in the child's ~0.3 s; docs/performance-server.md). */
    size_t bytes = (size_t)count * TQ_RECV_RING_BUFFER_BYTES;
    void *bufs = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (bufs == MAP_FAILED) return -errno; /* tq_loop_recv_teardown unregisters the ring */
    (void)madvise(bufs, bytes, MADV_DONTFORK);
    srv->recv_bufs = bufs;
    for (uint32_t bid = 0; bid < count; bid++)
        ring_buf_return(srv, bid);
    return 0;
}

static void prep_recv_multishot(struct io_uring_sqe *sqe, int fd) {
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = TQ_RECV_RING_GROUP_ID;
}

/* Proves multishot recv on a socketpair: one byte must arrive in a ring buffer with F_MORE
 * set, and closing the peer must end the recv (F_MORE clear). Nothing else is on the ring. */
static bool multishot_probe(struct tq_server *srv) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return false;
    bool data_ok = false, ended = false;
    if (write(sv[1], "x", 1) == 1) {
        struct io_uring_sqe *sqe = get_sqe(srv);
        prep_recv_multishot(sqe, sv[0]);
        io_uring_sqe_set_data64(sqe, 1);
        io_uring_submit(&srv->ring);
        bool closed = false;
        for (int i = 0; i < 8 && !ended; i++) {
            struct io_uring_cqe *cqe;
            struct __kernel_timespec ts = {.tv_sec = 1, .tv_nsec = 0};
            if (io_uring_wait_cqe_timeout(&srv->ring, &cqe, &ts) != 0) break;
            if (cqe->flags & IORING_CQE_F_BUFFER) {
                ring_buf_return(srv, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
            }
            if (cqe->res == 1 && (cqe->flags & IORING_CQE_F_MORE) != 0 &&
                (cqe->flags & IORING_CQE_F_BUFFER) != 0) {
                data_ok = true;
            }
            if ((cqe->flags & IORING_CQE_F_MORE) == 0) ended = true;
            io_uring_cqe_seen(&srv->ring, cqe);
            if (!closed) {
                shutdown(sv[1], SHUT_WR); /* EOF: the recv must end with res 0 */
                closed = true;
            }
        }
        if (!ended) { /* should not happen; never leave an SQE pointing at a closed fd */
            sqe = get_sqe(srv);
            io_uring_prep_cancel64(sqe, 1, 0);
            io_uring_sqe_set_data64(sqe, 2);
            io_uring_submit(&srv->ring);
            for (int i = 0; i < 8 && !ended; i++) {
                struct io_uring_cqe *cqe;
                struct __kernel_timespec ts = {.tv_sec = 1, .tv_nsec = 0};
                if (io_uring_wait_cqe_timeout(&srv->ring, &cqe, &ts) != 0) break;
                if (cqe->flags & IORING_CQE_F_BUFFER) {
                    ring_buf_return(srv, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
                }
                if (io_uring_cqe_get_data64(cqe) == 1 && (cqe->flags & IORING_CQE_F_MORE) == 0) {
                    ended = true;
                }
                io_uring_cqe_seen(&srv->ring, cqe);
            }
            if (!ended) tq_fatal("io_uring: the multishot recv probe cannot be cancelled");
            data_ok = false;
        }
    }
    close(sv[0]);
    close(sv[1]);
    return data_ok && ended;
}

int tq_loop_recv_setup(struct tq_server *srv) {
    TQ_ASSERT(srv->ring_ready);
    TQ_ASSERT(srv->recv_ring == NULL);
    srv->recv_multishot = false;
    if (srv->cfg.recv_mode == TQ_RECV_SINGLE) return 0;
    const char *why = NULL;
    struct io_uring_probe *probe = io_uring_get_probe_ring(&srv->ring);
    if (probe == NULL || !io_uring_opcode_supported(probe, IORING_OP_RECV) ||
        !io_uring_opcode_supported(probe, IORING_OP_PROVIDE_BUFFERS)) {
        why = "io_uring probe: no recv / provided buffers";
    }
    if (probe != NULL) io_uring_free_probe(probe);
    int rc = 0;
    if (why == NULL && (rc = ring_register(srv)) != 0) why = "cannot register a buffer ring";
    if (why == NULL && !multishot_probe(srv)) why = "multishot recv did not work on a socketpair";
    if (why == NULL) {
        srv->recv_multishot = true;
        fprintf(stderr, "ticketqd: receive: multishot recv, %u x %u-byte provided buffers\n",
                srv->recv_ring_count, TQ_RECV_RING_BUFFER_BYTES);
        return 0;
    }
    tq_loop_recv_teardown(srv);
    if (srv->cfg.recv_mode == TQ_RECV_MULTISHOT) {
        fprintf(stderr, "ticketqd: --recv multishot: %s%s%s\n", why, rc ? ": " : "",
                rc ? strerror(-rc) : "");
        return 1;
    }
    fprintf(stderr, "ticketqd: receive: single-shot (%s)\n", why);
    return 0;
}

void tq_loop_recv_teardown(struct tq_server *srv) {
    if (srv->recv_ring == NULL) return;
    if (srv->ring_ready) (void)io_uring_unregister_buf_ring(&srv->ring, TQ_RECV_RING_GROUP_ID);
    munmap(srv->recv_ring, srv->recv_ring_bytes);
    srv->recv_ring = NULL;
    srv->recv_ring_bytes = 0;
    if (srv->recv_bufs != NULL) {
        munmap(srv->recv_bufs, (size_t)srv->recv_ring_count * TQ_RECV_RING_BUFFER_BYTES);
        srv->recv_bufs = NULL;
    }
    srv->recv_multishot = false;
}

/* ---- connections ---------------------------------------------------------------------- */

static void conn_finalize(struct tq_server *srv, struct tq_conn *conn) {
    TQ_ASSERT(conn->closing);
    TQ_ASSERT(conn->sqes_outstanding == 0);
    close(conn->fd);
    tq_conn_release(conn);
    while (srv->conn_high > 0 && !srv->conns[srv->conn_high - 1].in_use)
        srv->conn_high--;
}

static void conn_close(struct tq_server *srv, struct tq_conn *conn) {
    if (conn->closing) return;
    conn->closing = true;
    tq_sub_stop(srv, conn);
    if (conn->kind == TQ_CONN_CLIENT) {
        TQ_ASSERT(srv->clients > 0);
        srv->clients--;
    } else {
        srv->metrics_conns--;
    }
    shutdown(conn->fd, SHUT_RDWR);
    /* shutdown() completes a pending recv/send; the cancels cover what it does not. */
    if (conn->recv_armed) {
        struct io_uring_sqe *sqe = get_sqe(srv);
        io_uring_prep_cancel64(sqe, make_ud(UD_RECV, conn->index, conn->gen), 0);
        io_uring_sqe_set_data64(sqe, make_ud(UD_CANCEL, 0, 0));
    }
    if (conn->send_armed) {
        struct io_uring_sqe *sqe = get_sqe(srv);
        io_uring_prep_cancel64(sqe, make_ud(UD_SEND, conn->index, conn->gen), 0);
        io_uring_sqe_set_data64(sqe, make_ud(UD_CANCEL, 0, 0));
    }
    if (conn->sqes_outstanding == 0) conn_finalize(srv, conn);
}

/* Closes with a reset instead of a FIN: for clients that do not read (idle, over the send
 * queue bound), whose FIN would queue behind the unread bytes forever. */
static void conn_abort(struct tq_server *srv, struct tq_conn *conn) {
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(conn->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    conn_close(srv, conn);
}

static struct tq_conn *conn_alloc(struct tq_server *srv, int fd, enum tq_conn_kind kind) {
    for (uint32_t i = 0; i < srv->conn_cap; i++) {
        struct tq_conn *conn = &srv->conns[i];
        if (conn->in_use) continue;
        tq_conn_init(conn, fd, kind, tq_mono_ms());
        if (i + 1 > srv->conn_high) srv->conn_high = i + 1;
        return conn;
    }
    return NULL;
}

/* Over the connection limit: one UNAVAILABLE error frame, written directly (the socket is
 * fresh, its buffer empty, so a small write cannot block), then close. */
static void reject_connection(struct tq_server *srv, int fd) {
    Ticketq__Error err = TICKETQ__ERROR__INIT;
    err.code = TICKETQ__ERROR_CODE__UNAVAILABLE;
    char msg[128];
    snprintf(msg, sizeof(msg), "too many connections (--max-connections %u)",
             srv->cfg.max_connections);
    err.message = msg;
    Ticketq__Response resp = TICKETQ__RESPONSE__INIT;
    resp.error = &err;
    uint8_t buf[256];
    size_t n = tq_frame_pack(&resp.base, buf, sizeof(buf));
    if (n > 0 && send(fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        /* The client is gone already; nothing to report. */
    }
    close(fd);
    tq_metrics_count(srv->metrics, TQ_METRIC_CONN_REJECTED);
}

/* ---- arming ------------------------------------------------------------------------------- */

static void arm_accept(struct tq_server *srv, uint32_t which) {
    int fd = which < 2 ? srv->listen_fds[which] : srv->metrics_fd;
    if (fd < 0 || srv->accept_armed[which] || srv->draining) return;
    struct io_uring_sqe *sqe = get_sqe(srv);
    if (srv->multishot_accept) {
        io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
    } else {
        io_uring_prep_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
    }
    io_uring_sqe_set_data64(sqe, make_ud(UD_ACCEPT, which, 0));
    srv->accept_armed[which] = true;
}

/* True while a client connection must not take more bytes (backpressure, protocol error,
 * EOF, drain): the single-shot path simply does not re-arm, the multishot one cancels. */
static bool recv_paused(const struct tq_server *srv, const struct tq_conn *conn, size_t cap_max) {
    if (conn->closing || conn->close_after_send || conn->eof) return true;
    if (conn->kind != TQ_CONN_CLIENT) return false;
    if (srv->draining) return true;
    if (conn->inflight >= srv->cfg.max_inflight) return true; /* backpressure */
    if (conn->blocked_until_lsn != 0 || conn->snap_wait) return true;
    /* A full frame buffer always holds a whole frame (or an oversized prefix): parse first. */
    return conn->rlen - conn->rpos >= cap_max;
}

/* Cancels the connection's multishot recv when paused, else arms one if none is. */
static void arm_recv_multishot(struct tq_server *srv, struct tq_conn *conn, bool paused) {
    if (conn->recv_armed) {
        TQ_ASSERT(conn->recv_ring);
        if (paused && !conn->recv_cancelling) {
            struct io_uring_sqe *sqe = get_sqe(srv);
            io_uring_prep_cancel64(sqe, make_ud(UD_RECV, conn->index, conn->gen), 0);
            io_uring_sqe_set_data64(sqe, make_ud(UD_CANCEL, 0, 0));
            conn->recv_cancelling = true;
            tq_metrics_count(srv->metrics, TQ_METRIC_RECV_PAUSES);
        }
        return;
    }
    if (paused || conn->closing) return;
    if (conn->recv_retry_ms != 0) {
        if (tq_mono_ms() < conn->recv_retry_ms) return; /* ring was empty: wait, never spin */
        conn->recv_retry_ms = 0;
    }
    struct io_uring_sqe *sqe = get_sqe(srv);
    prep_recv_multishot(sqe, conn->fd);
    io_uring_sqe_set_data64(sqe, make_ud(UD_RECV, conn->index, conn->gen));
    conn->recv_armed = true;
    conn->recv_ring = true;
    conn->recv_cancelling = false;
    conn->sqes_outstanding++;
}

static void arm_recv(struct tq_server *srv, struct tq_conn *conn) {
    size_t cap_max = conn->kind == TQ_CONN_CLIENT
                         ? (size_t)srv->cfg.max_frame + TQ_FRAME_PREFIX_BYTES
                         : METRICS_REQUEST_BYTES_MAX;
    if (conn->recv_armed && conn->recv_ring) {
        /* Armed multishot (every client connection, almost every turn): only a pause needs
         * work, and only once (a cancel already asked for stands). Checked here, without the
         * call, because flush_conns walks every connection every turn. */
        if (!conn->recv_cancelling && recv_paused(srv, conn, cap_max)) {
            arm_recv_multishot(srv, conn, true); /* cancels it */
        }
        return;
    }
    bool paused = recv_paused(srv, conn, cap_max);
    if (conn->recv_armed || paused) return;
    if (srv->recv_multishot && conn->kind == TQ_CONN_CLIENT) {
        arm_recv_multishot(srv, conn, false);
        return;
    }
    if (!tq_conn_recv_reserve(conn, 0, cap_max)) return; /* compacts parsed bytes away */
    size_t want = 4096;
    uint32_t plen = 0;
    if (conn->kind == TQ_CONN_CLIENT &&
        tq_frame_peek(conn->rbuf, conn->rlen, srv->cfg.max_frame, &plen) == TQ_FRAME_NEED_MORE &&
        conn->rlen >= TQ_FRAME_PREFIX_BYTES) {
        size_t need = TQ_FRAME_PREFIX_BYTES + (size_t)plen - conn->rlen;
        if (need > want) want = need;
    }
    if (want > cap_max - conn->rlen) want = cap_max - conn->rlen;
    if (want == 0 || !tq_conn_recv_reserve(conn, want, cap_max)) return;
    struct io_uring_sqe *sqe = get_sqe(srv);
    io_uring_prep_recv(sqe, conn->fd, conn->rbuf + conn->rlen, conn->rcap - conn->rlen, 0);
    io_uring_sqe_set_data64(sqe, make_ud(UD_RECV, conn->index, conn->gen));
    conn->recv_armed = true;
    conn->recv_ring = false;
    conn->sqes_outstanding++;
}

static void arm_send(struct tq_server *srv, struct tq_conn *conn) {
    if (conn->send_armed || conn->closing || conn->oready == conn->osent) return;
    struct io_uring_sqe *sqe = get_sqe(srv);
    io_uring_prep_send(sqe, conn->fd, conn->obuf + conn->osent, conn->oready - conn->osent,
                       MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, make_ud(UD_SEND, conn->index, conn->gen));
    conn->send_armed = true;
    conn->sqes_outstanding++;
}

static bool timer_armed;
/* The monotonic clock at the start of the current reap, for connections' last activity (the
 * idle timeout counts milliseconds; a read per recv and per send CQE was two per request;
 * clock_gettime was 2.5% of ticketqd's samples in the mixed 64-client run, with parse_client's
 * read per connection per turn). */
static uint64_t reap_mono_ms;
static struct __kernel_timespec timer_ts;

static void arm_timer(struct tq_server *srv) {
    if (timer_armed) return;
    timer_ts.tv_sec = 0;
    timer_ts.tv_nsec = (long long)TQ_TIMER_PERIOD_MS * 1000000;
    struct io_uring_sqe *sqe = get_sqe(srv);
    io_uring_prep_timeout(sqe, &timer_ts, 0, 0);
    io_uring_sqe_set_data64(sqe, make_ud(UD_TIMER, 0, 0));
    timer_armed = true;
}

static bool signal_armed;

static void arm_signal(struct tq_server *srv) {
    if (signal_armed || srv->signal_fd < 0) return;
    struct io_uring_sqe *sqe = get_sqe(srv);
    io_uring_prep_read(sqe, srv->signal_fd, srv->siginfo_buf, sizeof(struct signalfd_siginfo), 0);
    io_uring_sqe_set_data64(sqe, make_ud(UD_SIGNAL, 0, 0));
    signal_armed = true;
}

/* ---- completions -------------------------------------------------------------------------- */

static void start_drain(struct tq_server *srv) {
    if (srv->draining) return;
    fprintf(stderr, "ticketqd: signal received: draining (finishing the in-flight batch)\n");
    srv->draining = true;
    srv->drain_deadline_ms = tq_mono_ms() + DRAIN_TIMEOUT_MS;
    for (uint32_t i = 0; i < 3; i++) {
        if (srv->accept_armed[i]) {
            struct io_uring_sqe *sqe = get_sqe(srv);
            io_uring_prep_cancel64(sqe, make_ud(UD_ACCEPT, i, 0), 0);
            io_uring_sqe_set_data64(sqe, make_ud(UD_CANCEL, 0, 0));
        }
    }
}

static void on_accept(struct tq_server *srv, uint32_t which, const struct io_uring_cqe *cqe) {
    if ((cqe->flags & IORING_CQE_F_MORE) == 0) srv->accept_armed[which] = false;
    if (cqe->res < 0) {
        if (cqe->res == -EINVAL && srv->multishot_accept) {
            srv->multishot_accept = false; /* kernel without multishot accept: fall back */
        } else if (cqe->res != -ECANCELED) {
            fprintf(stderr, "ticketqd: accept: %s\n", strerror(-cqe->res));
        }
        return;
    }
    int fd = cqe->res;
    if (srv->draining) {
        close(fd);
        return;
    }
    if (which == 2) {
        struct tq_conn *conn = NULL;
        if (srv->metrics_conns < METRICS_CONNS_MAX) conn = conn_alloc(srv, fd, TQ_CONN_METRICS);
        if (conn == NULL) {
            close(fd);
            return;
        }
        srv->metrics_conns++;
        return;
    }
    if (srv->clients >= srv->cfg.max_connections) {
        reject_connection(srv, fd);
        return;
    }
    struct tq_conn *conn = conn_alloc(srv, fd, TQ_CONN_CLIENT);
    if (conn == NULL) {
        reject_connection(srv, fd);
        return;
    }
    if (which == 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    srv->clients++;
    tq_metrics_count(srv->metrics, TQ_METRIC_CONN_ACCEPTED);
}

/* A CQE of a multishot recv: hands its ring buffer back whatever happens, keeps the bytes
 * (even while a backpressure cancel is in flight: the overshoot is bounded by the socket's
 * receive queue), and retires the recv when F_MORE is clear. Returns true if the connection
 * was finalized. */
static bool on_recv_multishot(struct tq_server *srv, struct tq_conn *conn,
                              const struct io_uring_cqe *cqe) {
    int res = cqe->res;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        if (bid >= srv->recv_ring_count) tq_fatal("io_uring: buffer id %u out of range", bid);
        if (res > 0 && !conn->closing) {
            TQ_ASSERT((size_t)res <= TQ_RECV_RING_BUFFER_BYTES);
            tq_conn_recv_append(conn, ring_buf(srv, bid), (size_t)res);
            conn->last_active_ms = reap_mono_ms;
        }
        ring_buf_return(srv, bid);
    }
    bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;
    if (!more) {
        TQ_ASSERT(conn->sqes_outstanding > 0);
        conn->sqes_outstanding--;
        conn->recv_armed = false;
        conn->recv_ring = false;
        conn->recv_cancelling = false;
    }
    if (conn->closing) {
        if (conn->sqes_outstanding == 0) {
            conn_finalize(srv, conn);
            return true;
        }
        return false;
    }
    if (res == 0) {
        conn->eof = true;
        conn->close_after_send = true;
    } else if (res < 0 && !more) {
        if (res == -ENOBUFS) {
            /* Every ring buffer was in use: re-arm later (flush_conns), never spin. */
            tq_metrics_count(srv->metrics, TQ_METRIC_RECV_NOBUFS);
            conn->recv_retry_ms = tq_mono_ms() + TQ_RECV_NOBUFS_RETRY_MS;
        } else if (res == -EINVAL && srv->recv_multishot) {
            /* Kernel without multishot recv after all: every connection falls back. */
            fprintf(stderr, "ticketqd: multishot recv: EINVAL: falling back to single-shot\n");
            srv->recv_multishot = false;
        } else if (res != -ECANCELED && res != -EINTR && res != -EAGAIN) {
            conn_close(srv, conn);
        }
    }
    return false;
}

static void on_conn_cqe(struct tq_server *srv, enum ud_tag tag, uint32_t index, uint32_t gen,
                        const struct io_uring_cqe *cqe) {
    if (index >= srv->conn_cap) return;
    struct tq_conn *conn = &srv->conns[index];
    /* Slots wait for their last CQE before reuse, so this cannot happen; a ring buffer
     * must never be lost, though. */
    if (!conn->in_use || conn->gen != gen) {
        if (cqe->flags & IORING_CQE_F_BUFFER) {
            ring_buf_return(srv, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        }
        return;
    }
    if (tag == UD_RECV && conn->recv_ring) {
        (void)on_recv_multishot(srv, conn, cqe);
        return;
    }
    int res = cqe->res;
    TQ_ASSERT(conn->sqes_outstanding > 0);
    conn->sqes_outstanding--;
    if (tag == UD_RECV) {
        conn->recv_armed = false;
    } else {
        conn->send_armed = false;
        tq_conn_send_done(conn);
    }
    if (conn->closing) {
        if (conn->sqes_outstanding == 0) conn_finalize(srv, conn);
        return;
    }
    if (res < 0) {
        if (res == -EINTR || res == -EAGAIN) return; /* re-armed this turn */
        conn_close(srv, conn);
        return;
    }
    conn->last_active_ms = reap_mono_ms;
    if (tag == UD_RECV) {
        if (res == 0) {
            conn->eof = true;
            conn->close_after_send = true;
            return;
        }
        conn->rlen += (size_t)res;
        TQ_ASSERT(conn->rlen <= conn->rcap);
    } else {
        tq_conn_sent(conn, (size_t)res);
    }
}

static void reap(struct tq_server *srv) {
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    reap_mono_ms = tq_mono_ms(); /* one clock read per reap, not one per CQE */
    io_uring_for_each_cqe(&srv->ring, head, cqe) {
        if (tq_log_owns_cqe(srv->log, cqe)) {
            tq_log_complete(srv->log, &srv->ring, cqe);
        } else {
            uint64_t ud = io_uring_cqe_get_data64(cqe);
            enum ud_tag tag = (enum ud_tag)(ud >> 56);
            uint32_t index = (uint32_t)(ud >> 32) & 0xffffffu, gen = (uint32_t)ud;
            switch (tag) {
            case UD_ACCEPT: on_accept(srv, index, cqe); break;
            case UD_RECV:
            case UD_SEND: on_conn_cqe(srv, tag, index, gen, cqe); break;
            case UD_TIMER: timer_armed = false; break;
            case UD_SIGNAL:
                signal_armed = false;
                if (cqe->res > 0) start_drain(srv);
                break;
            case UD_CANCEL: break;
            case UD_SNAPSHOT: tq_snapshot_on_cqe(srv, cqe); break;
            default: fprintf(stderr, "ticketqd: unexpected CQE user_data %" PRIx64 "\n", ud);
            }
        }
        if (++seen >= TQ_CQES_PER_TURN_MAX) break;
    }
    io_uring_cq_advance(&srv->ring, seen);
}

/* ---- per-turn work ------------------------------------------------------------------------ */

static void protocol_error(struct tq_server *srv, struct tq_conn *conn, enum tq_err code,
                           const char *msg) {
    tq_metrics_count(srv->metrics, TQ_METRIC_PROTOCOL_ERRORS);
    if (!tq_dispatch_queue_error(srv, conn, 0, code, msg)) {
        conn_close(srv, conn);
        return;
    }
    conn->close_after_send = true; /* the stream can no longer be trusted to be in sync */
}

/* Dispatches conn's complete frames (at most TQ_FRAMES_PER_CONN_TURN_MAX); start_us is the
 * turn's clock, where each request's latency metric starts. Returns the frames dispatched. */
static uint32_t parse_client(struct tq_server *srv, struct tq_conn *conn, uint64_t acked,
                             uint64_t start_us) {
    if (conn->snap_wait) return 0;
    if (conn->blocked_until_lsn != 0) {
        if (acked < conn->blocked_until_lsn) return 0;
        conn->blocked_until_lsn = 0;
    }
    if (conn->rlen == conn->rpos) return 0;
    size_t off = conn->rpos;
    uint32_t frames = 0;
    for (; frames < TQ_FRAMES_PER_CONN_TURN_MAX; frames++) {
        if (conn->close_after_send || conn->closing || srv->draining) break;
        if (conn->snap_wait) break;                         /* a SnapshotNow holds */
        if (conn->inflight >= srv->cfg.max_inflight) break; /* backpressure */
        uint32_t plen = 0;
        enum tq_frame_status st =
            tq_frame_peek(conn->rbuf + off, conn->rlen - off, srv->cfg.max_frame, &plen);
        if (st == TQ_FRAME_NEED_MORE) break;
        if (st == TQ_FRAME_EMPTY) {
            protocol_error(srv, conn, TQ_ERR_INVALID_ARGUMENT, "zero-length frame");
            break;
        }
        if (st == TQ_FRAME_TOO_LARGE) {
            char msg[160];
            snprintf(msg, sizeof(msg), "frame of %u bytes exceeds --max-frame %u", plen,
                     srv->cfg.max_frame);
            protocol_error(srv, conn, TQ_ERR_RESOURCE_EXHAUSTED, msg);
            break;
        }
        enum tq_dispatch_status ds =
            tq_dispatch_frame(srv, conn, conn->rbuf + off + TQ_FRAME_PREFIX_BYTES, plen, start_us);
        if (ds == TQ_DISPATCH_DEFER) {
            conn->blocked_until_lsn = acked + 1;
            break;
        }
        if (ds == TQ_DISPATCH_CLOSE) {
            tq_metrics_count(srv->metrics, TQ_METRIC_CONN_SLOW_CLOSED);
            conn_abort(srv, conn);
            return frames;
        }
        off += TQ_FRAME_PREFIX_BYTES + plen;
    }
    conn->rpos = off; /* compacted by arm_recv, when no recv points into the buffer */
    return frames;
}

static void serve_metrics(struct tq_server *srv, struct tq_conn *conn) {
    if (conn->close_after_send || conn->rlen < 4) return;
    if (memmem(conn->rbuf, conn->rlen, "\r\n\r\n", 4) == NULL &&
        memmem(conn->rbuf, conn->rlen, "\n\n", 2) == NULL) {
        if (conn->rlen >= METRICS_REQUEST_BYTES_MAX) conn_close(srv, conn);
        return;
    }
    char head[256];
    if (conn->rlen >= 12 && memcmp(conn->rbuf, "GET /metrics", 12) == 0 &&
        (conn->rlen == 12 || conn->rbuf[12] == ' ' || conn->rbuf[12] == '?')) {
        size_t len = 0;
        char *body = tq_metrics_render(srv->metrics, srv, &len);
        int n = snprintf(head, sizeof(head),
                         "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                         len);
        tq_conn_queue_raw(conn, head, (size_t)n);
        tq_conn_queue_raw(conn, body, len);
        tq_free(body, len ? len : 1);
    } else {
        static const char k_404[] = "HTTP/1.0 404 Not Found\r\nContent-Length: 10\r\n"
                                    "Connection: close\r\n\r\nnot found\n";
        tq_conn_queue_raw(conn, k_404, sizeof(k_404) - 1);
    }
    conn->rpos = conn->rlen;
    conn->close_after_send = true;
}

static void maybe_tick(struct tq_server *srv, uint64_t *last_tick_ms) {
    if (srv->draining) return;
    uint64_t now = tq_now_ms();
    if (now < srv->last_now_ms) now = srv->last_now_ms;
    uint64_t due = tq_state_next_deadline_ms(srv->state);
    if (due > now) return;                                    /* nothing due: no record */
    if (now < *last_tick_ms + TQ_TIMER_PERIOD_MS / 2) return; /* at most ~20 ticks a second */
    *last_tick_ms = now;
    struct tq_cmd cmd;
    memset(&cmd, 0, sizeof(cmd));
    cmd.type = TQ_CMD_TICK;
    struct tq_cmd_result res;
    struct tq_error error;
    uint64_t lsn;
    if (tq_dispatch_run_cmd(srv, &cmd, &res, &lsn, &error) != TQ_OK) {
        if (error.code != TQ_ERR_RESOURCE_EXHAUSTED) {
            fprintf(stderr, "ticketqd: tick: %s\n", error.msg);
        }
        return;
    }
    tq_metrics_count(srv->metrics, TQ_METRIC_TICKS);
}

static bool drained(const struct tq_server *srv) {
    if (tq_log_acked_lsn(srv->log) < srv->lsn_staged || !tq_log_idle(srv->log)) return false;
    for (uint32_t i = 0; i < srv->conn_high; i++) {
        const struct tq_conn *c = &srv->conns[i];
        if (c->in_use && !c->closing && c->kind == TQ_CONN_CLIENT && tq_conn_unsent(c) > 0) {
            return false;
        }
    }
    return true;
}

static void check_idle(struct tq_server *srv, uint64_t now_mono) {
    for (uint32_t i = 0; i < srv->conn_high; i++) {
        struct tq_conn *c = &srv->conns[i];
        if (!c->in_use || c->closing) continue;
        uint64_t limit = c->kind == TQ_CONN_METRICS ? METRICS_IDLE_MS : srv->cfg.idle_timeout_ms;
        if (limit == 0 || (c->kind == TQ_CONN_CLIENT && c->sub.active)) continue;
        if (now_mono > c->last_active_ms + limit) {
            if (c->kind == TQ_CONN_CLIENT)
                tq_metrics_count(srv->metrics, TQ_METRIC_CONN_IDLE_CLOSED);
            conn_abort(srv, c);
        }
    }
}

/* Fatal (fail-stop) unless rc is success or one of io_uring_enter's transient answers. */
static void ring_check(int rc, const char *what) {
    if (rc < 0 && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN && rc != -ETIME) {
        tq_fatal("%s: %s", what, strerror(-rc));
    }
}

/* With DEFER_TASKRUN / COOP_TASKRUN the kernel posts completions finished elsewhere (the log's
 * write, an fdatasync on an io-wq worker) only inside io_uring_enter(GETEVENTS); it flags them
 * in the SQ ring (TASKRUN_FLAG). Fetches them if flagged: a load, and no syscall when nothing
 * is pending. */
static void fetch_task_work(struct tq_server *srv) {
    if ((IO_URING_READ_ONCE(*srv->ring.sq.kflags) & IORING_SQ_TASKRUN) != 0) {
        ring_check(io_uring_get_events(&srv->ring), "io_uring_get_events");
    }
}

/* One pause of a spin: tells the CPU (and a hypervisor with pause-loop exiting) that this is
 * a busy-wait, so a sibling hyperthread gets the core's resources. */
static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

/* --idle-poll-us: before the loop blocks in io_uring_enter, submits its SQEs and spins up to
 * cfg.idle_poll_us checking for a completion in user space: a CQE in the ring, or pending task
 * work the kernel flagged (fetch_task_work). Why: an idle
 * vCPU of this VM halts (cpuidle haltpoll with guest_halt_poll_ns 0), and waking the blocked
 * loop costs a scheduler wake-up plus an IPI through the host (p50 88 / p99 1,904 us from the
 * flush's completion to the loop running, docs/performance-server.md). The spin only runs
 * while something can complete soon: a batch of the log in flight or a client connected (its
 * receive armed); with neither the loop blocks at once, so an idle server never spins. Returns
 * true if a completion is ready (the caller skips the blocking wait), false after the spin
 * timed out or was not tried (SQEs are submitted either way). */
static bool idle_poll(struct tq_server *srv) {
    uint32_t budget_us = srv->cfg.idle_poll_us;
    TQ_ASSERT(budget_us <= TQ_IDLE_POLL_US_MAX);
    if (budget_us == 0) return false;
    if (srv->clients == 0 && tq_log_idle(srv->log)) return false; /* nothing due soon */
    ring_check(io_uring_submit(&srv->ring), "io_uring_submit");
    uint64_t deadline_us = tq_mono_us() + budget_us;
    for (;;) {
        if (io_uring_cq_ready(&srv->ring) > 0) break;
        fetch_task_work(srv);
        if (io_uring_cq_ready(&srv->ring) > 0) break;
        for (uint32_t i = 0; i < 32; i++) /* ~1 us of pauses between clock reads */
            cpu_relax();
        if (tq_mono_us() >= deadline_us) {
            tq_metrics_count(srv->metrics, TQ_METRIC_IDLE_POLL_MISSES);
            return false;
        }
    }
    TQ_ASSERT(io_uring_cq_ready(&srv->ring) > 0);
    tq_metrics_count(srv->metrics, TQ_METRIC_IDLE_POLL_HITS);
    return true;
}

/* Submits pending SQEs and waits for at least one CQE (not at all when busy; at most until
 * the log's interval sync is due; after an --idle-poll-us spin only if the spin found none). */
static void wait_for_io(struct tq_server *srv, bool busy) {
    int rc;
    int log_wait_ms = tq_log_timeout_ms(srv->log, tq_now_us());
    if (!busy && idle_poll(srv)) return;
    if (busy) {
        rc = io_uring_submit(&srv->ring);
        /* completions finished elsewhere: fetch them now rather than after the busy turns end */
        if (rc >= 0) fetch_task_work(srv);
    } else if (log_wait_ms >= 0 && log_wait_ms < (int)TQ_TIMER_PERIOD_MS) {
        struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = (long long)log_wait_ms * 1000000};
        struct io_uring_cqe *cqe;
        rc = io_uring_submit_and_wait_timeout(&srv->ring, &cqe, 1, &ts, NULL);
        if (rc == -ETIME) rc = 0;
    } else {
        rc = io_uring_submit_and_wait(&srv->ring, 1);
    }
    ring_check(rc, "io_uring_submit_and_wait");
}

/* Group commit: one batch for everything staged this turn. Our SQEs are submitted first so
 * the log finds room in the SQ ring. Returns the acknowledged LSN. (Per-batch metrics come from
 * the log itself: tq_log_options.on_batch_acked, set in main.c.) */
static uint64_t commit_turn(struct tq_server *srv) {
    io_uring_submit(&srv->ring);
    (void)tq_log_submit(srv->log, &srv->ring, tq_now_us());
    return tq_log_acked_lsn(srv->log);
}

/* Releases acknowledged output, closes finished connections, arms sends and receives.
 * Returns true if some connection still has a whole frame buffered (keep turning). */
static bool flush_conns(struct tq_server *srv, uint64_t acked, uint64_t ack_us, uint64_t mono_us) {
    bool busy = false;
    uint32_t answered = 0;
    for (uint32_t i = 0; i < srv->conn_high; i++) {
        struct tq_conn *c = &srv->conns[i];
        if (!c->in_use || c->closing) continue;
        size_t ready = c->oready;
        /* Output beyond oready is what an acknowledgement can release (marks end within olen). */
        if (c->olen > ready) tq_conn_release_acked(c, acked, srv->metrics, ack_us, mono_us);
        if (c->oready > ready && c->kind == TQ_CONN_CLIENT) answered++;
        if (c->close_after_send && tq_conn_unsent(c) == 0) {
            conn_close(srv, c);
            continue;
        }
        arm_send(srv, c);
        arm_recv(srv, c);
        uint32_t plen = 0;
        if (c->kind == TQ_CONN_CLIENT && c->rlen > c->rpos && c->inflight < srv->cfg.max_inflight &&
            c->blocked_until_lsn == 0 && !c->snap_wait && !c->close_after_send && !srv->draining &&
            tq_frame_peek(c->rbuf + c->rpos, c->rlen - c->rpos, srv->cfg.max_frame, &plen) !=
                TQ_FRAME_NEED_MORE) {
            busy = true; /* a whole frame is buffered (the per-turn bound was hit) */
        }
    }
    if (answered > 0) tq_metrics_answered(srv->metrics, answered);
    return busy;
}

/* Closes every connection and waits (bounded) for their outstanding SQEs and the log's, so no
 * buffer is freed under the kernel and tq_log_close finds the log idle. */
static void shutdown_conns(struct tq_server *srv) {
    for (uint32_t i = 0; i < srv->conn_high; i++) {
        if (srv->conns[i].in_use) conn_close(srv, &srv->conns[i]);
    }
    uint64_t deadline = tq_mono_ms() + 5000;
    while (tq_mono_ms() < deadline) {
        bool pending = !tq_log_idle(srv->log);
        for (uint32_t i = 0; i < srv->conn_high; i++)
            pending |= srv->conns[i].in_use;
        if (!pending) break;
        struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 50 * 1000000};
        struct io_uring_cqe *cqe;
        (void)io_uring_submit_and_wait_timeout(&srv->ring, &cqe, 1, &ts, NULL);
        reap(srv);
    }
}

/* ---- the reactive turn (--turn reactive) ------------------------------------------------- */

/* Run when a reap advanced the acknowledged LSN, before (more) frames are parsed: hands the
 * batch staged meanwhile to the log and sends the responses the acknowledgement released, in
 * one io_uring_enter. Otherwise both would wait for the rest of the turn: the disk idles while
 * the turn parses and applies the frames that arrived with the acknowledgement (tens to a
 * hundred us with 64 clients), and so do the clients whose answers are ready. Returns the
 * acknowledged LSN. */
static uint64_t on_acknowledged(struct tq_server *srv, uint64_t mono_us) {
    TQ_ASSERT(srv->cfg.turn_mode == TQ_TURN_REACTIVE);
    uint64_t acked = commit_turn(srv);
    TQ_ASSERT(acked <= srv->lsn_staged);
    for (uint32_t i = 0; i < srv->conn_high; i++) {
        struct tq_conn *c = &srv->conns[i];
        if (!c->in_use || c->closing || c->kind != TQ_CONN_CLIENT) continue;
        tq_conn_release_acked(c, acked, srv->metrics, mono_us, mono_us);
        arm_send(srv, c);
    }
    ring_check(io_uring_submit(&srv->ring), "io_uring_submit");
    return acked;
}

/* Between connections of a long turn: with DEFER_TASKRUN the kernel runs our completions'
 * task work only inside io_uring_enter(GETEVENTS). That includes the completion of the log's
 * batch write, which is what queues its linked fdatasync: while a turn parses 64 clients'
 * requests the disk would sit idle with the write done and the sync not started (a trace of
 * the mixed 64-client run showed 67 us median, 338 us p90 between the block write completing
 * and its CQE). So the turn lets pending task work run (the kernel flags it in the SQ ring: a
 * load, and no syscall when nothing is pending); --turn reactive also reaps what it produced
 * and reacts to a new acknowledgement at once. Only between connections: a reap appends to
 * receive buffers and may close connections, never under a parse_client. Returns the
 * acknowledged LSN. */
static uint64_t poll_midturn(struct tq_server *srv, uint64_t acked) {
    TQ_ASSERT(srv->cfg.turn_mode != TQ_TURN_CLASSIC);
    TQ_ASSERT(acked <= tq_log_acked_lsn(srv->log)); /* acknowledgements only grow */
    if (srv->ring_defer) fetch_task_work(srv);
    if (srv->cfg.turn_mode != TQ_TURN_REACTIVE || io_uring_cq_ready(&srv->ring) == 0) {
        return acked; /* --turn poll: the CQEs wait for the next turn's reap */
    }
    reap(srv);
    if (tq_log_acked_lsn(srv->log) == acked) return acked;
    return on_acknowledged(srv, tq_mono_us());
}

/* Applies the collected run of single Ingests (dispatch.c) and closes the connections whose
 * send queue one of its responses overflowed (as parse_client does on TQ_DISPATCH_CLOSE). */
static void flush_run(struct tq_server *srv) {
    tq_dispatch_flush(srv);
    if (srv->run_dead_conns == 0) return;
    srv->run_dead_conns = 0;
    for (uint32_t i = 0; i < srv->conn_high; i++) {
        struct tq_conn *c = &srv->conns[i];
        if (!c->in_use || c->closing || !c->run_dead) continue;
        tq_metrics_count(srv->metrics, TQ_METRIC_CONN_SLOW_CLOSED);
        conn_abort(srv, c);
    }
}

/* Parses every connection's complete frames (each bounded per turn) and serves metrics
 * requests. poll, reactive: poll completions every TQ_FRAMES_PER_POLL_MAX frames. Returns the
 * acknowledged LSN. */
static uint64_t parse_all(struct tq_server *srv, uint64_t acked, uint64_t turn_us) {
    bool polling = srv->cfg.turn_mode != TQ_TURN_CLASSIC;
    uint32_t since_poll = 0;
    TQ_ASSERT(acked <= srv->lsn_staged);
    for (uint32_t i = 0; i < srv->conn_high; i++) {
        struct tq_conn *c = &srv->conns[i];
        if (!c->in_use || c->closing) continue;
        if (c->kind != TQ_CONN_CLIENT) {
            serve_metrics(srv, c);
            continue;
        }
        since_poll += parse_client(srv, c, acked, turn_us);
        if (srv->run_dead_conns > 0) flush_run(srv);
        if (polling && since_poll >= TQ_FRAMES_PER_POLL_MAX) {
            since_poll = 0;
            flush_run(srv); /* a reap may move receive buffers the run points into */
            acked = poll_midturn(srv, acked);
        }
    }
    flush_run(srv);
    TQ_ASSERT(acked <= tq_log_acked_lsn(srv->log));
    return acked;
}

int tq_loop_run(struct tq_server *srv) {
    TQ_ASSERT(srv->log != NULL && srv->state != NULL);
    TQ_ASSERT(srv->conns != NULL);
    uint64_t last_tick_ms = 0, last_idle_check = tq_mono_ms();
    bool busy = false;
    uint64_t acked = tq_log_acked_lsn(srv->log);
    for (uint32_t i = 0; i < 3; i++)
        arm_accept(srv, i);
    arm_signal(srv);
    arm_timer(srv);
    while (!srv->stop) {
        wait_for_io(srv, busy);
        uint64_t woke_us = tq_mono_us();
        reap(srv);
        uint64_t turn_us = tq_mono_us();
        if (srv->cfg.turn_mode == TQ_TURN_REACTIVE && tq_log_acked_lsn(srv->log) > acked) {
            acked = on_acknowledged(srv, turn_us);
        } else {
            acked = tq_log_acked_lsn(srv->log);
        }
        acked = parse_all(srv, acked, turn_us);
        maybe_tick(srv, &last_tick_ms);
        acked = commit_turn(srv);
        TQ_ASSERT(acked <= srv->lsn_staged);
        tq_dispatch_prune_staged(srv, acked);
        tq_snapshot_turn(srv, acked); /* may fork: after the commit, before the sends */
        busy = tq_sub_pump(srv, acked);
        (void)tq_compaction_poll(srv);
        uint64_t mono_us = tq_mono_us();
        busy |= flush_conns(srv, acked, turn_us, mono_us);
        uint64_t now_mono = mono_us / 1000;
        if (now_mono >= last_idle_check + TQ_TIMER_PERIOD_MS) {
            last_idle_check = now_mono;
            check_idle(srv, now_mono);
        }
        for (uint32_t i = 0; i < 3; i++)
            arm_accept(srv, i);
        arm_signal(srv);
        arm_timer(srv);
        tq_metrics_turn(srv->metrics, tq_mono_us() - woke_us); /* the whole turn, sends included */
        if (srv->draining && (drained(srv) || now_mono > srv->drain_deadline_ms)) srv->stop = true;
    }
    tq_snapshot_shutdown(srv);
    tq_compaction_stop(srv);
    shutdown_conns(srv);
    return 0;
}
