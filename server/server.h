/* server/server.h: ticketqd's internal structures (one server, one loop thread).
 *
 * Module map (docs/architecture.md has the guided tour):
 *   main.c       options, startup, recovery, first-start admin token, shutdown
 *   loop.c       the io_uring event loop: accept, recv, send, log I/O, timer, signals
 *   conn.c       connection buffers, framing, in-order responses gated on the acked LSN
 *   dispatch.c   protobuf Request -> auth check -> state command / query -> Response
 *   auth.c       the role table (the only place that says which role may do what)
 *   subscribe.c  Subscribe: catch-up from the log, live events, slow-subscriber fallback
 *   metrics.c    Prometheus text at GET /metrics
 *   snapshot.c   background snapshots: fork, the child writes and publishes once durable, reap
 *   compaction.c online compaction: snapshot on the loop, segment rewrites on a helper thread
 *   prefault.c   the state's memory helper thread: populates pages ahead of its growth
 *   config.c     options; sha256.c tokens; events_codec.c the events log record
 *   reqdec.c     fast decoder for Ingest / Batch-of-Ingest requests (else protobuf-c)
 *   respenc.c    fast encoder for id/error/ids/batch responses (else protobuf-c)
 *
 * The one rule everything serves: no response reveals state that is not durable. Every byte
 * queued to a connection carries the LSN it depends on (the highest LSN staged when it was
 * produced); conn.c releases bytes to the socket only once tq_log_acked_lsn() reaches it, and
 * in order, so a read that follows an unsynced write waits for that write's batch.
 */
#ifndef TQ_SERVER_SERVER_H
#define TQ_SERVER_SERVER_H

#include "config.h"
#include "state/state.h"
#include "storage/log.h"
#include "tq_alloc.h"
#include "tq_limits.h"

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

struct tq_metrics;
struct tq_snapshotter;
struct tq_compaction;
struct tq_prefaulter;

/* ---- sessions and subscriptions ------------------------------------------------------- */

struct tq_session {
    bool authed;
    uint64_t token_id;
    enum tq_role role;
    uint64_t tenant_id; /* 0 for a server admin */
    uint64_t agent_id;  /* agent tokens */
};

struct tq_sub {
    bool active;
    bool catching_up;    /* reading the log instead of receiving live events */
    uint64_t request_id; /* the Subscribe's id, echoed in every event frame */
    uint64_t tenant_id;
    uint64_t scanned_lsn;         /* every record <= this has been considered */
    uint64_t after_lsn;           /* deliver only events with event.lsn (command LSN) > this */
    uint32_t type_mask;           /* bit t = event type t wanted; 0 = all */
    uint64_t ticket_id, queue_id; /* filters; 0 = any */
    uint64_t events_sent;
};

/* ---- connections ---------------------------------------------------------------------- */

enum tq_conn_kind { TQ_CONN_CLIENT = 0, TQ_CONN_METRICS = 1 };

/* A run of queued output bytes ending at `end` that may be sent once acked >= wait_lsn. */
struct tq_out_mark {
    uint64_t end; /* offset in the output stream (monotonic) */
    uint64_t wait_lsn;
    uint64_t start_us; /* when the request was parsed (latency metric) */
    int16_t op;        /* request op case for metrics; -1 for event frames */
    bool is_response;  /* counts towards in-flight */
};

struct tq_conn {
    bool in_use;
    bool closing; /* shut down; freed when no SQE is outstanding */
    enum tq_conn_kind kind;
    int fd;
    uint32_t index;
    uint32_t gen; /* bumped on reuse: stale CQEs are recognised */
    uint32_t sqes_outstanding;
    bool recv_armed, send_armed;
    bool recv_ring;             /* the armed recv is multishot on the buffer ring: the
                                 * kernel never writes into rbuf */
    bool recv_cancelling;       /* a cancel of that multishot recv was submitted */
    uint64_t recv_retry_ms;     /* after -ENOBUFS: no re-arm before this (monotonic) */
    bool eof;                   /* peer closed its side */
    bool close_after_send;      /* protocol error: flush then close */
    uint64_t blocked_until_lsn; /* >0: parsing waits until acked >= this */

    uint8_t *rbuf; /* received bytes [0, rlen); [0, rpos) already parsed */
    size_t rcap, rlen, rpos;

    uint8_t *obuf;                    /* output: [0, osent) sent, [osent, oready) releasable */
    size_t ocap, olen, osent, oready; /* [oready, olen) waits for the log */
    uint64_t obase;                   /* stream offset of obuf[0] */
    uint8_t *obuf_inflight;           /* old output buffer an armed send still points into */
    size_t obuf_inflight_cap;
    struct tq_out_mark *marks; /* FIFO of marks not yet fully sent */
    uint32_t mark_head, mark_count, mark_cap;
    uint32_t inflight; /* requests read and not yet fully answered */
    /* A response of the pending Ingest run (dispatch.c) did not fit the send queue: the loop
     * closes the connection, and its later requests of the run are neither applied nor
     * answered (as if dispatched one at a time, where the first failure stopped the parse). */
    bool run_dead;

    uint64_t last_active_ms;
    /* A SnapshotNow is being answered in the background (server/snapshot.c): nothing more is
     * parsed until its response is queued, so responses stay in request order. */
    bool snap_wait;
    uint64_t snap_request_id;
    uint64_t snap_start_us;
    struct tq_session session;
    struct tq_sub sub;
};

/* ---- the server ----------------------------------------------------------------------- */

struct tq_pending_event {
    struct tq_event event;
    uint64_t record_lsn; /* LSN that must be acked before it is revealed */
};

/* A command record staged in the log but not yet acknowledged (bodies for reads). */
struct tq_staged_record {
    uint64_t lsn;
    size_t offset; /* in tq_server.staged_bytes */
    size_t len;
};

enum tq_metric_counter {
    TQ_METRIC_COMMANDS = 0,    /* command records appended */
    TQ_METRIC_EVENTS_UNLOGGED, /* events that did not fit their log record */
    TQ_METRIC_AUTH_FAILURES,
    TQ_METRIC_CONN_ACCEPTED,
    TQ_METRIC_CONN_REJECTED, /* over --max-connections */
    TQ_METRIC_CONN_IDLE_CLOSED,
    TQ_METRIC_CONN_SLOW_CLOSED, /* send queue bound */
    TQ_METRIC_PROTOCOL_ERRORS,  /* bad frames */
    TQ_METRIC_TICKS,
    TQ_METRIC_SUB_FALLBACKS, /* live -> catch-up switches of slow subscribers */
    TQ_METRIC_EVENTS_SENT,
    TQ_METRIC_RECV_NOBUFS,      /* multishot recv ended because the buffer ring was empty */
    TQ_METRIC_RECV_PAUSES,      /* multishot recv cancelled for backpressure */
    TQ_METRIC_IDLE_POLL_HITS,   /* --idle-poll-us: a spin found a completion, no block */
    TQ_METRIC_IDLE_POLL_MISSES, /* --idle-poll-us: a spin timed out, the loop blocked */
    TQ_METRIC_COUNTER_COUNT
};

struct tq_server {
    struct tq_config cfg;
    struct io_uring ring;
    bool ring_ready;
    bool ring_defer; /* DEFER_TASKRUN: completions are posted only inside io_uring_enter */
    struct tq_log *log;
    struct tq_state *state;

    int listen_fds[2]; /* TCP, Unix; -1 if unused */
    int metrics_fd;
    int signal_fd;
    bool multishot_accept;
    bool recv_multishot;                 /* client receives use the provided-buffer ring */
    struct io_uring_buf_ring *recv_ring; /* mmap'd ring of recv_ring_count entries */
    size_t recv_ring_bytes;
    uint32_t recv_ring_count; /* cfg.recv_buffers: a power of two */
    uint8_t *recv_bufs;       /* count x TQ_RECV_RING_BUFFER_BYTES, buffer i at i x BYTES */
    bool accept_armed[3];     /* TCP, Unix, metrics */

    struct tq_conn *conns;
    uint32_t conn_cap;  /* table size: max_connections + spare for metrics */
    uint32_t conn_high; /* slots [0, conn_high) may be in use */
    uint32_t clients;   /* open client connections */
    uint32_t metrics_conns;

    uint64_t lsn_staged;         /* highest LSN appended (staged) so far */
    uint64_t events_flushed_lsn; /* live events up to this were handed to subscribers */
    uint64_t last_now_ms;        /* time never goes backwards in the log */
    uint64_t batch_now_ms;       /* clock read once for the Batch being run (0: per command) */
    struct tq_dispatch_run *run; /* single Ingests collected this turn, not yet applied */
    uint32_t run_dead_conns;     /* connections marked run_dead since the loop last looked */
    uint64_t next_tick_check_ms;

    struct tq_arena arena; /* per-request scratch, reset after each request (or run) */
    uint8_t *enc_buf;      /* command / events encoding scratch */
    size_t enc_cap;
    uint8_t *read_buf; /* log record read scratch (TicketGet bodies, catch-up) */
    size_t read_cap;

    struct tq_event *ev; /* events of the command being applied */
    uint32_t ev_count, ev_cap;
    struct tq_staged_record *staged; /* [staged_head, staged_count): unacknowledged command
                                      * records, by LSN; acked ones below head are dead */
    uint32_t staged_head, staged_count, staged_cap;
    uint8_t *staged_bytes;                     /* their encodings, back to back */
    size_t staged_bytes_len, staged_bytes_cap; /* live bytes start at staged[staged_head] */
    struct tq_pending_event *pend;             /* staged events not yet revealed to subscribers */
    uint32_t pend_count, pend_cap;
    uint32_t subscribers;

    bool draining;
    uint64_t drain_deadline_ms;
    bool stop;

    struct tq_metrics *metrics;
    struct tq_snapshotter *snap;      /* background snapshots (snapshot.c); NULL: not set up */
    uint8_t siginfo_buf[128];         /* signalfd read target */
    int dir_lock_fd;                  /* flock on DIR/LOCK for the process's lifetime */
    struct tq_compaction *compaction; /* online compaction (compaction.c); NULL until used */
    struct tq_prefaulter *prefaulter; /* the state's helper (prefault.c), from recovery until
                                         shutdown; NULL with --state-prefault off */
};

/* Wall clock in ms / µs (CLOCK_REALTIME) and monotonic ms. */
uint64_t tq_now_ms(void);
uint64_t tq_now_us(void);
uint64_t tq_mono_ms(void);
uint64_t tq_mono_us(void);

/* ---- loop.c ------------------------------------------------------------------------------ */

#define TQ_LOG_RING_TAG 0x7e

/* Decides the receive path from cfg.recv_mode: for auto and multishot, registers the
 * provided-buffer ring and proves multishot recv on a socketpair. Returns 0, or 1 (message
 * printed) when --recv multishot was asked for and the kernel cannot do it. Call once, before
 * anything else is submitted on the ring. */
int tq_loop_recv_setup(struct tq_server *srv);
/* Unregisters and frees the buffer ring (after the ring is torn down or idle). */
void tq_loop_recv_teardown(struct tq_server *srv);

/* Runs the event loop until a drain (SIGTERM/SIGINT) completes. Returns the exit status. */
int tq_loop_run(struct tq_server *srv);

/* ---- conn.c ------------------------------------------------------------------------------ */

/* Prepares a connection slot (buffers allocated lazily). */
void tq_conn_init(struct tq_conn *conn, int fd, enum tq_conn_kind kind, uint64_t now_ms);
/* Releases buffers of a slot whose fd is closed and which has no SQE outstanding. */
void tq_conn_release(struct tq_conn *conn);
/* Appends one packed Response frame that may be sent once acked >= wait_lsn. op is the
 * request's op case (or -1); is_response counts it towards in-flight. Returns false if the
 * connection's send queue would exceed its bound (caller disconnects the client). */
bool tq_conn_queue_frame(struct tq_conn *conn, const ProtobufCMessage *msg, uint64_t wait_lsn,
                         int op, bool is_response, uint64_t start_us, uint64_t send_queue_max);
/* Appends raw bytes (metrics HTTP) releasable at once. */
bool tq_conn_queue_raw(struct tq_conn *conn, const void *bytes, size_t len);
/* Moves queued bytes whose wait_lsn <= acked_lsn into the releasable region, in order.
 * ack_us is when the loop saw acked_lsn (the start of the turn whose reap advanced it), now_us
 * the release: a response's latency metric is split at ack_us (tq_metrics_request). */
void tq_conn_release_acked(struct tq_conn *conn, uint64_t acked_lsn, struct tq_metrics *m,
                           uint64_t ack_us, uint64_t now_us);
/* Accounts for n bytes sent; pops fully sent marks; compacts the buffer. */
void tq_conn_sent(struct tq_conn *conn, size_t n);
/* A send completed: frees an output buffer that was replaced while it was in flight. */
void tq_conn_send_done(struct tq_conn *conn);
/* Bytes queued but not yet sent. */
size_t tq_conn_unsent(const struct tq_conn *conn);
/* Appends n received bytes (copied out of a ring buffer) after dropping parsed ones; grows
 * the buffer as needed (the caller bounds how much it lets arrive). Only with no single-shot
 * recv armed. */
void tq_conn_recv_append(struct tq_conn *conn, const uint8_t *bytes, size_t n);
/* Ensures at least min_free bytes of receive space (grows up to cap_max). False if not. */
bool tq_conn_recv_reserve(struct tq_conn *conn, size_t min_free, size_t cap_max);

/* ---- dispatch.c -------------------------------------------------------------------------- */

enum tq_dispatch_status {
    TQ_DISPATCH_DONE = 0,  /* a response was queued */
    TQ_DISPATCH_DEFER = 1, /* nothing happened; retry once the log made progress */
    TQ_DISPATCH_CLOSE = 2, /* the connection must be closed (send queue bound) */
};

/* Handles one request frame payload from conn: decodes, authenticates, authorises, applies or
 * queries, queues the response. Never trusts the bytes. start_us is the parse time. */
enum tq_dispatch_status tq_dispatch_frame(struct tq_server *srv, struct tq_conn *conn,
                                          const uint8_t *payload, uint32_t len, uint64_t start_us);
/* Applies and answers the single Ingests that tq_dispatch_frame collected (the "run": see
 * dispatch.c), in the order they arrived. The loop calls it before anything that could
 * invalidate a collected request (a reap, the end of the parse phase); tq_dispatch_frame
 * calls it before any other request. Afterwards srv->run_dead_conns counts the connections
 * whose send queue overflowed (conn->run_dead): the loop closes them. */
void tq_dispatch_flush(struct tq_server *srv);
/* Queues an error response with the given id (protocol errors detected by the loop). */
bool tq_dispatch_queue_error(struct tq_server *srv, struct tq_conn *conn, uint64_t id,
                             enum tq_err code, const char *msg);
/* Applies a command built by the server itself (TICK, first-start token): encodes, checks
 * the log has room, applies, appends the command record and its events record. */
TQ_NODISCARD enum tq_err tq_dispatch_run_cmd(struct tq_server *srv, struct tq_cmd *cmd,
                                             struct tq_cmd_result *result, uint64_t *lsn_out,
                                             struct tq_error *error);
/* Frees staged record copies that the log has acknowledged. */
void tq_dispatch_prune_staged(struct tq_server *srv, uint64_t acked_lsn);
/* Formats a token secret as "tq_" + 64 lower-case hex digits. */
void tq_dispatch_token_text(const uint8_t secret[TQ_TOKEN_SECRET_BYTES],
                            char out[TQ_TOKEN_TEXT_BYTES + 1]);
/* Maps an internal error code onto the wire's ErrorCode value. */
int tq_dispatch_wire_code(enum tq_err code);
/* Allocates the dispatcher's scratch buffers (encoding, reads, events). */
void tq_dispatch_init(struct tq_server *srv);
void tq_dispatch_destroy(struct tq_server *srv);
/* Send-queue bound for one connection. */
uint64_t tq_dispatch_send_queue_max(const struct tq_server *srv);

/* ---- subscribe.c ------------------------------------------------------------------------- */

/* Starts a subscription on conn (validated by dispatch): catch-up from from_lsn (exclusive). */
void tq_sub_start(struct tq_server *srv, struct tq_conn *conn, uint64_t request_id,
                  uint64_t tenant_id, uint64_t from_lsn, uint32_t type_mask, uint64_t ticket_id,
                  uint64_t queue_id);
void tq_sub_stop(struct tq_server *srv, struct tq_conn *conn);
/* Remembers the events of the command just applied (record_lsn: the events record). */
void tq_sub_stage_events(struct tq_server *srv, const struct tq_event *events, uint32_t count,
                         uint64_t record_lsn);
/* Hands revealed (acked) staged events to live subscribers and runs bounded catch-up for
 * subscribers reading the log. Returns true if some subscriber still has catch-up work. */
bool tq_sub_pump(struct tq_server *srv, uint64_t acked_lsn);
/* True if the event passes the subscription's filters. */
bool tq_sub_matches(const struct tq_sub *sub, const struct tq_event *event);

/* ---- compaction.c: online compaction ------------------------------------------------------ */

#define TQ_PATH_BYTES_MAX 1024 /* archive_dir and the data directory's path */

struct tq_compaction_request {
    uint64_t tenant_id; /* erasure and retention are about this tenant */
    bool erase;         /* redact the records of the tenant's erased customers */
    bool compress;
    uint32_t retention_days;             /* 0: none */
    uint64_t io_bytes_per_sec;           /* 0: unlimited */
    char archive_dir[TQ_PATH_BYTES_MAX]; /* "" = none; absolute path on the server */
};

struct tq_compaction_status {
    bool running;
    char phase[16]; /* idle, snapshot, classify, rewrite, snapshots, done, failed */
    uint64_t snapshot_lsn;
    uint32_t segments_total, segments_done, segments_rewritten;
    uint64_t records_redacted, records_erased, records_retained_out, records_archived;
    uint64_t customers_erased, snapshots_removed;
    uint64_t bytes_before, bytes_after, io_bytes;
    uint64_t elapsed_ms, loop_stall_us;
    bool failed;
    enum tq_err error_code;
    char error_msg[TQ_ERROR_MSG_BYTES_MAX];
    uint64_t runs; /* finished since start */
};

/* Starts an online compaction (loop thread; every staged record must be acknowledged): takes
 * the snapshot of the live state and hands the rest to a helper thread. Returns
 * TQ_ERR_FAILED_PRECONDITION (one is running; nothing to compact), TQ_ERR_INVALID_ARGUMENT,
 * TQ_ERR_RESOURCE_EXHAUSTED. */
TQ_NODISCARD enum tq_err tq_compaction_start(struct tq_server *srv,
                                             const struct tq_compaction_request *request,
                                             struct tq_error *error);
/* Once per loop turn: installs rewritten segments, reaps a finished run. True while running. */
bool tq_compaction_poll(struct tq_server *srv);
/* The running or the last finished run (phase "idle" if none). */
void tq_compaction_status(const struct tq_server *srv, struct tq_compaction_status *out);
/* Shutdown: cancels a running compaction, joins the helper, frees everything. */
void tq_compaction_stop(struct tq_server *srv);

/* ---- metrics.c --------------------------------------------------------------------------- */

struct tq_metrics *tq_metrics_new(void);
void tq_metrics_free(struct tq_metrics *m);
/* One response released: parse_us, ack_us and release_us are when its request was parsed,
 * when the loop saw the acknowledgement covering it and when it was released to the socket
 * (ticketq_request_seconds, and ticketq_request_phase_seconds: parse -> ack, ack -> release). */
void tq_metrics_request(struct tq_metrics *m, int op, uint64_t parse_us, uint64_t ack_us,
                        uint64_t release_us);
void tq_metrics_error(struct tq_metrics *m, int op);
void tq_metrics_batch(struct tq_metrics *m, uint64_t records, uint64_t fsync_us);
void tq_metrics_count(struct tq_metrics *m, enum tq_metric_counter what);
/* One loop turn's busy time (from the end of its wait to the start of the next). */
void tq_metrics_turn(struct tq_metrics *m, uint64_t turn_us);
/* One loop turn released responses to this many client connections (a wave's width). */
void tq_metrics_answered(struct tq_metrics *m, uint64_t connections);
/* Renders the Prometheus text exposition into a tq_alloc'd buffer (*len_out bytes). */
char *tq_metrics_render(struct tq_metrics *m, const struct tq_server *srv, size_t *len_out);

#endif
