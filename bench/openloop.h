/* bench/openloop.h: the load drivers of ticketq-bench over an abstract "system".
 *
 * A system (Redis peer, ticketq, a test fake) implements struct tq_bench_system: it opens
 * non-blocking connections, encodes a struct tq_bench_op into a connection's output buffer,
 * flushes, and reports completions by tag. The driver owns scheduling and measurement:
 *
 *   closed loop (rate == 0): every connection keeps `pipeline` operations in flight; latency is
 *     measured from the actual send.
 *   open loop (rate > 0, or a peak schedule): arrival k has an intended send time that is a pure
 *     function of k (k / rate, or the peak schedule's integral); arrival k goes to connection
 *     k % clients, whose operation stream is that client's workload stream. Latency is measured
 *     from the intended time, so a stall delays every arrival behind it and all of them count
 *     (no coordinated omission). A connection already holding `pipeline` operations keeps its
 *     due arrivals waiting, still on the clock.
 *
 * The driver's core is clock-free (tq_driver_step / tq_driver_complete take now_ns), so tests
 * drive it with a simulated server and a virtual clock; tq_driver_run is the real loop (epoll,
 * or ppoll over every connection's fd; one thread). Threads: a driver belongs to one thread.
 */
#ifndef TQ_BENCH_OPENLOOP_H
#define TQ_BENCH_OPENLOOP_H

#include "hist.h"
#include "workload.h"

#include "tq_err.h"

#include <stdbool.h>
#include <stdint.h>

#define TQ_DRIVER_CLIENTS_MAX          4096u
#define TQ_DRIVER_PIPELINE_MAX         4096u
#define TQ_DRIVER_TICK_NS_MAX          (100ull * 1000 * 1000)       /* --tick-us: at most 100 ms */
#define TQ_DRIVER_DRAIN_NS             (10ull * 1000 * 1000 * 1000) /* wait this long for in-flight ops */
#define TQ_DRIVER_COMPLETIONS_PER_POLL 256u /* bound of one poll_completions call */

struct tq_bench_conn; /* defined by each system */

struct tq_bench_completion {
    uint64_t tag;
    enum tq_err status; /* TQ_OK; TQ_ERR_NOT_FOUND = claim found an empty queue; else failed */
};

/* Sampled once a second in the peak scenario (optional). */
struct tq_bench_stats {
    uint64_t queue_depth; /* tickets waiting in all queues */
    uint64_t breached;    /* queued tickets whose SLA deadline has passed */
};

struct tq_bench_system {
    const char *name;
    void *ctx;
    /* Opens connection conn_index (its socket non-blocking, ready for send_op). */
    enum tq_err (*conn_open)(void *ctx, uint32_t conn_index, struct tq_bench_conn **conn_out,
                             struct tq_error *error);
    int (*conn_fd)(struct tq_bench_conn *conn);
    /* Appends the encoded op to the connection's output; never blocks. The tag comes back in
     * exactly one completion. */
    enum tq_err (*send_op)(struct tq_bench_conn *conn, const struct tq_bench_op *op, uint64_t tag,
                           struct tq_error *error);
    /* Writes what the socket takes; *pending_out tells whether output remains. */
    enum tq_err (*flush)(struct tq_bench_conn *conn, bool *pending_out, struct tq_error *error);
    /* Reads what is available without blocking and returns up to max completions. A transport
     * or protocol failure is an error (the run stops); a failed operation is a completion. */
    enum tq_err (*poll_completions)(struct tq_bench_conn *conn, struct tq_bench_completion *out,
                                    uint32_t max, uint32_t *count_out, struct tq_error *error);
    void (*conn_close)(struct tq_bench_conn *conn);
    /* Optional (NULL): blocking side query for the peak time series. */
    enum tq_err (*stats)(void *ctx, struct tq_bench_stats *out, struct tq_error *error);
};

/* One second of a run, for the progress line and the peak CSV. */
struct tq_driver_second {
    uint32_t second;      /* 1, 2, ... */
    double intended_rate; /* open loop: the schedule's rate at this second; 0 closed */
    uint64_t completed;   /* operations completed during the second */
    uint64_t errors;      /* failed operations completed during the second */
    uint64_t p50_ns, p99_ns, max_ns;
    uint64_t backlog; /* open loop: due arrivals not yet sent at the end */
};

/* How tq_driver_run waits for its connections (the same measurement either way; ppoll is the
 * driver of every figure before 2026-12-03 afternoon, kept for A/B runs). */
enum tq_driver_wait {
    TQ_DRIVER_WAIT_EPOLL = 0, /* epoll_pwait2: cost per wake-up ~ ready connections */
    TQ_DRIVER_WAIT_PPOLL = 1, /* ppoll over every connection: cost per wake-up ~ all of them */
};

struct tq_driver_options {
    uint32_t clients;                    /* connections, 1..TQ_DRIVER_CLIENTS_MAX */
    uint32_t pipeline;                   /* operations in flight per connection, >= 1 */
    double duration_s;                   /* > 0 */
    double rate;                         /* open loop ops/s over all connections; 0 = closed loop */
    const struct tq_peak_schedule *peak; /* non-NULL: open loop on this schedule (rate unused) */
    struct tq_workload_options workload;
    enum tq_driver_wait wait; /* tq_driver_run only; default epoll */
    /* Open loop only: at least this long between two wake-ups of tq_driver_run (0: wake at
     * every intended time and every answer). Everything due by a wake-up goes out in one write
     * per connection and every readable connection is read; latency still counts from the
     * intended time, so the tick's delay (< tick_ns to send, <= tick_ns to read) is inside it.
     * At most TQ_DRIVER_TICK_NS_MAX. */
    uint64_t tick_ns;
    /* Called after each full second (may be NULL). */
    void (*on_second)(void *ctx, const struct tq_driver_second *second);
    void *on_second_ctx;
};

struct tq_driver_result {
    struct tq_hist all;
    struct tq_hist per_op[TQ_OP_KIND_COUNT];
    uint64_t ops[TQ_OP_KIND_COUNT];    /* completed without error */
    uint64_t errors[TQ_OP_KIND_COUNT]; /* completed with an error (empty queue included) */
    uint64_t empty_queue;              /* claims that found the queue empty: run invalid */
    uint64_t sent;
    uint64_t unfinished; /* still in flight when the drain timed out */
    double elapsed_s;    /* first send to the end of the measured window */
};

struct tq_driver;

/* Creates a driver and opens options->clients connections through system. Returns TQ_OK,
 * TQ_ERR_INVALID_ARGUMENT (options out of range, message names the option) or the error of
 * conn_open. On success the caller owns *driver_out (tq_driver_destroy). */
TQ_NODISCARD enum tq_err tq_driver_create(const struct tq_driver_options *options,
                                          const struct tq_bench_system *system,
                                          struct tq_driver **driver_out, struct tq_error *error);

/* Runs the whole measurement with the real clock, waiting with epoll (or ppoll: options->wait);
 * fills *result. Errors: those of the system's callbacks, TQ_ERR_IO for epoll/ppoll failures. */
TQ_NODISCARD enum tq_err tq_driver_run(struct tq_driver *driver, struct tq_driver_result *result,
                                       struct tq_error *error);

/* Closes every connection and frees the driver. NULL is a no-op. */
void tq_driver_destroy(struct tq_driver *driver);

/* ---- the clock-free core (used by tq_driver_run, and by tests with a virtual clock) ------ */

/* Starts the measured window at now_ns. */
void tq_driver_start(struct tq_driver *driver, uint64_t now_ns);

/* Sends every operation due at now_ns (closed loop: refills every free pipeline slot; open
 * loop: every arrival whose intended time is <= now_ns on a connection with a free slot).
 * *wake_ns is the next time a send may become due with no completion in between (UINT64_MAX:
 * none). Stops sending once the window is over. */
TQ_NODISCARD enum tq_err tq_driver_step(struct tq_driver *driver, uint64_t now_ns,
                                        uint64_t *wake_ns, struct tq_error *error);

/* Records the completion of tag at now_ns; tags come from send_op. */
void tq_driver_complete(struct tq_driver *driver, const struct tq_bench_completion *completion,
                        uint64_t now_ns);

/* options->tick_ns: the time until which a loop that last woke at last_wake_ns must sleep
 * without looking at its connections, given now_ns and the wake_ns of tq_driver_step (then it
 * waits as usual: answers and due sends are there at once). 0 when it need not sleep: no tick,
 * the tick already over, or nothing in flight and nothing due within the tick. */
uint64_t tq_driver_tick_hold(const struct tq_driver *driver, uint64_t last_wake_ns, uint64_t now_ns,
                             uint64_t wake_ns);

/* True once the window is over and nothing is in flight. */
bool tq_driver_done(const struct tq_driver *driver, uint64_t now_ns);

/* The accumulated result (valid until destroy). elapsed_s is set by tq_driver_finish. */
const struct tq_driver_result *tq_driver_result(const struct tq_driver *driver);
void tq_driver_finish(struct tq_driver *driver, uint64_t now_ns);

/* Intended time (ns after the start) of open-loop arrival k. */
uint64_t tq_driver_intended_ns(const struct tq_driver *driver, uint64_t k);

/* Connection of a tag and the monotonic clock in ns. */
uint32_t tq_driver_tag_conn(uint64_t tag);
uint64_t tq_bench_now_ns(void);

#endif
