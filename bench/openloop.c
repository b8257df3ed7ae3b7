/* bench/openloop.c: closed- and open-loop load drivers (see openloop.h for the contract).
 *
 * Owns: per-connection in-flight slots (a fixed table of `pipeline` slots and a free stack, so
 * the hot path never allocates), the schedule of open-loop arrivals, the histograms of the run
 * and of the current second, and the poll(2) loop.
 *
 * Tags: (conn_index << 32) | slot_index. A slot remembers the op kind and the time latency is
 * measured from: the intended send time (open loop) or the actual send (closed loop).
 *
 * Invariants (asserted): in_flight == pipeline - free_count on every connection; a completed
 * tag names a used slot; arrivals are sent in increasing k per connection, k == c (mod clients);
 * the sum of in_flight over connections equals driver->in_flight_total.
 *
 * Waiting: epoll (default) or ppoll. Both time out with nanosecond resolution (epoll_pwait2,
 * ppoll): open-loop send times need better than millisecond resolution, or the scheduler's own
 * lateness would show up as server latency. epoll because ppoll polls, registers and
 * unregisters every connection's socket on each wake-up: with 64 closed-loop connections and
 * one answer per wake-up that was ~7% of the driver's CPU (sock_poll, tcp_poll, __pollwait),
 * CPU taken from the server under test on a shared machine (docs/performance-peers.md,
 * 2026-12-03 afternoon). The epoll loop keeps one registration per connection, level
 * triggered, and changes it only when the connection's wish to write changes.
 *
 * Ticks (options.tick_ns, --tick-us): without them the loop wakes for every intended time and
 * every answer, so at 160k/s each request costs a wake-up, a write and a read on both sides.
 * With a tick T it wakes at most every T: after a wake-up it sleeps out the tick (while anything
 * is in flight or due within it: tq_driver_tick_hold), then waits as before, which returns at
 * once with what became readable and due meanwhile. The intended times do not move and
 * latency counts from them, so the tick's delay is inside the figure.
 */
#include "openloop.h"

#include "tq_alloc.h"
#include "tq_assert.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S         1000000000ull
#define POLL_WAIT_NS_MAX (50ull * 1000 * 1000) /* re-check the clock at least every 50 ms */

struct slot {
    uint64_t start_ns;
    enum tq_op_kind kind;
    bool used;
};

struct driver_conn {
    struct tq_bench_conn *conn;
    struct tq_workload stream;
    struct slot *slots;   /* pipeline entries */
    uint32_t *free_slots; /* stack of free slot indexes */
    uint32_t free_count;
    uint64_t next_k; /* open loop: next arrival of this connection */
    bool pending_write;
};

struct tq_driver {
    struct tq_driver_options options;
    const struct tq_bench_system *system;
    struct driver_conn *conns;
    uint32_t conn_count; /* connections opened so far (all of them after create) */
    bool open_loop;
    bool started;
    uint64_t start_ns;
    uint64_t end_ns; /* end of the sending window */
    uint64_t in_flight_total;
    struct tq_driver_result result;
    /* The current second. */
    struct tq_hist second_hist;
    uint64_t second_errors;
    uint32_t second_index;
    uint64_t second_end_ns;
};

uint64_t tq_bench_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

uint32_t tq_driver_tag_conn(uint64_t tag) {
    return (uint32_t)(tag >> 32);
}

static void result_reset(struct tq_driver_result *result) {
    memset(result, 0, sizeof(*result));
    tq_hist_reset(&result->all);
    for (unsigned i = 0; i < TQ_OP_KIND_COUNT; i++)
        tq_hist_reset(&result->per_op[i]);
}

/* ---- create / destroy -------------------------------------------------------------------- */

static enum tq_err check_options(const struct tq_driver_options *o, struct tq_error *error) {
    if (o->clients == 0 || o->clients > TQ_DRIVER_CLIENTS_MAX) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT, "--clients must be 1..%u",
                            TQ_DRIVER_CLIENTS_MAX);
    }
    if (o->pipeline == 0 || o->pipeline > TQ_DRIVER_PIPELINE_MAX) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT, "--pipeline must be 1..%u",
                            TQ_DRIVER_PIPELINE_MAX);
    }
    if (!(o->duration_s > 0.0) || o->duration_s > 86400.0) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT, "--duration must be in (0, 86400]");
    }
    if (o->rate < 0.0 || !isfinite(o->rate)) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT, "--rate must be >= 0");
    }
    if (o->peak != NULL && !(o->peak->base_rate > 0.0)) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT, "peak base rate must be > 0");
    }
    if (o->tick_ns > TQ_DRIVER_TICK_NS_MAX) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT, "--tick-us must be <= %llu",
                            TQ_DRIVER_TICK_NS_MAX / 1000);
    }
    if (o->tick_ns > 0 && o->rate == 0.0 && o->peak == NULL) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT,
                            "--tick-us needs an open loop (--rate)");
    }
    if (o->workload.customers == 0) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT, "customers must be > 0");
    }
    return TQ_OK;
}

enum tq_err tq_driver_create(const struct tq_driver_options *options,
                             const struct tq_bench_system *system, struct tq_driver **driver_out,
                             struct tq_error *error) {
    enum tq_err err = check_options(options, error);
    if (err != TQ_OK) return err;
    struct tq_driver *d = tq_xcalloc(1, sizeof(*d));
    d->options = *options;
    d->system = system;
    d->open_loop = options->rate > 0.0 || options->peak != NULL;
    d->conns = tq_xcalloc(options->clients, sizeof(*d->conns));
    result_reset(&d->result);
    tq_hist_reset(&d->second_hist);
    for (uint32_t i = 0; i < options->clients; i++) {
        struct driver_conn *c = &d->conns[i];
        c->slots = tq_xcalloc(options->pipeline, sizeof(*c->slots));
        c->free_slots = tq_xcalloc(options->pipeline, sizeof(*c->free_slots));
        for (uint32_t s = 0; s < options->pipeline; s++) {
            c->free_slots[s] = options->pipeline - 1 - s;
        }
        c->free_count = options->pipeline;
        c->next_k = i;
        tq_workload_init(&c->stream, &options->workload, i);
        d->conn_count = i + 1;
        err = system->conn_open(system->ctx, i, &c->conn, error);
        if (err != TQ_OK) goto fail;
        TQ_ASSERT(c->conn != NULL);
    }
    *driver_out = d;
    return TQ_OK;
fail:
    tq_driver_destroy(d);
    return err;
}

void tq_driver_destroy(struct tq_driver *driver) {
    if (driver == NULL) return;
    for (uint32_t i = 0; i < driver->conn_count; i++) {
        struct driver_conn *c = &driver->conns[i];
        if (c->conn != NULL) driver->system->conn_close(c->conn);
        tq_free(c->slots, driver->options.pipeline * sizeof(*c->slots));
        tq_free(c->free_slots, driver->options.pipeline * sizeof(*c->free_slots));
    }
    tq_free(driver->conns, driver->options.clients * sizeof(*driver->conns));
    tq_free(driver, sizeof(*driver));
}

/* ---- the core ---------------------------------------------------------------------------- */

uint64_t tq_driver_intended_ns(const struct tq_driver *driver, uint64_t k) {
    TQ_ASSERT(driver->open_loop);
    if (driver->options.peak != NULL) {
        return (uint64_t)(tq_peak_arrival_time(driver->options.peak, k) * (double)NS_PER_S);
    }
    return (uint64_t)((double)k * (double)NS_PER_S / driver->options.rate);
}

/* Arrivals due (intended time before now) since the start. */
static uint64_t arrivals_due(const struct tq_driver *d, uint64_t now_ns) {
    double t_s = (double)(now_ns - d->start_ns) / (double)NS_PER_S;
    double n =
        d->options.peak != NULL ? tq_peak_arrivals(d->options.peak, t_s) : t_s * d->options.rate;
    return (uint64_t)ceil(n); /* arrivals k with k < n, i.e. intended time < now */
}

void tq_driver_start(struct tq_driver *driver, uint64_t now_ns) {
    TQ_ASSERT(!driver->started);
    driver->started = true;
    driver->start_ns = now_ns;
    driver->end_ns = now_ns + (uint64_t)(driver->options.duration_s * (double)NS_PER_S);
    driver->second_index = 1;
    driver->second_end_ns = now_ns + NS_PER_S;
}

static void emit_second(struct tq_driver *d, uint64_t now_ns) {
    struct tq_driver_second s;
    memset(&s, 0, sizeof(s));
    s.second = d->second_index;
    if (d->open_loop) {
        double t_s = (double)(d->second_index - 1) + 0.5;
        s.intended_rate =
            d->options.peak != NULL ? tq_peak_rate(d->options.peak, t_s) : d->options.rate;
        uint64_t due = arrivals_due(d, now_ns);
        s.backlog = due > d->result.sent ? due - d->result.sent : 0;
    }
    s.completed = d->second_hist.count;
    s.errors = d->second_errors;
    s.p50_ns = tq_hist_percentile(&d->second_hist, 50.0);
    s.p99_ns = tq_hist_percentile(&d->second_hist, 99.0);
    s.max_ns = d->second_hist.max;
    if (d->options.on_second != NULL) d->options.on_second(d->options.on_second_ctx, &s);
    tq_hist_reset(&d->second_hist);
    d->second_errors = 0;
    d->second_index++;
    d->second_end_ns += NS_PER_S;
}

static enum tq_err send_one(struct tq_driver *d, uint32_t conn_index, uint64_t start_ns,
                            struct tq_error *error) {
    struct driver_conn *c = &d->conns[conn_index];
    TQ_ASSERT(c->free_count > 0);
    struct tq_bench_op op;
    tq_workload_next(&c->stream, &op);
    uint32_t slot_index = c->free_slots[--c->free_count];
    struct slot *slot = &c->slots[slot_index];
    TQ_ASSERT(!slot->used);
    slot->used = true;
    slot->kind = op.kind;
    slot->start_ns = start_ns;
    uint64_t tag = ((uint64_t)conn_index << 32) | slot_index;
    d->in_flight_total++;
    d->result.sent++;
    c->pending_write = true;
    return d->system->send_op(c->conn, &op, tag, error);
}

enum tq_err tq_driver_step(struct tq_driver *driver, uint64_t now_ns, uint64_t *wake_ns,
                           struct tq_error *error) {
    struct tq_driver *d = driver;
    TQ_ASSERT(d->started);
    while (now_ns >= d->second_end_ns && d->second_end_ns <= d->end_ns)
        emit_second(d, now_ns);
    uint64_t wake = d->second_end_ns <= d->end_ns ? d->second_end_ns : UINT64_MAX;
    if (now_ns >= d->end_ns) {
        /* Over. With a tick, the arrivals due in the window's last tick go out at the first
         * wake-up after it (one tick late at most, as any other; none lost). */
        *wake_ns = UINT64_MAX;
        if (!d->open_loop || now_ns >= d->end_ns + d->options.tick_ns) return TQ_OK;
        wake = UINT64_MAX;
    } else if (d->end_ns < wake) {
        wake = d->end_ns;
    }
    for (uint32_t i = 0; i < d->conn_count; i++) {
        struct driver_conn *c = &d->conns[i];
        while (c->free_count > 0) {
            uint64_t start_ns = now_ns;
            if (d->open_loop) {
                uint64_t intended = d->start_ns + tq_driver_intended_ns(d, c->next_k);
                if (intended >= d->end_ns) break;
                if (intended > now_ns) {
                    if (intended < wake) wake = intended;
                    break;
                }
                start_ns = intended;
                c->next_k += d->conn_count;
            }
            enum tq_err err = send_one(d, i, start_ns, error);
            if (err != TQ_OK) return err;
        }
    }
    *wake_ns = wake;
    return TQ_OK;
}

void tq_driver_complete(struct tq_driver *driver, const struct tq_bench_completion *completion,
                        uint64_t now_ns) {
    struct tq_driver *d = driver;
    uint32_t conn_index = tq_driver_tag_conn(completion->tag);
    uint32_t slot_index = (uint32_t)completion->tag;
    TQ_ASSERT(conn_index < d->conn_count);
    TQ_ASSERT(slot_index < d->options.pipeline);
    struct driver_conn *c = &d->conns[conn_index];
    struct slot *slot = &c->slots[slot_index];
    TQ_ASSERT(slot->used);
    uint64_t latency = now_ns > slot->start_ns ? now_ns - slot->start_ns : 0;
    tq_hist_record(&d->result.all, latency);
    tq_hist_record(&d->result.per_op[slot->kind], latency);
    tq_hist_record(&d->second_hist, latency);
    if (completion->status == TQ_OK) {
        d->result.ops[slot->kind]++;
    } else {
        d->result.errors[slot->kind]++;
        d->second_errors++;
        if (completion->status == TQ_ERR_NOT_FOUND && slot->kind == TQ_OP_CLAIM_REPLY) {
            d->result.empty_queue++;
        }
    }
    slot->used = false;
    c->free_slots[c->free_count++] = slot_index;
    TQ_ASSERT(c->free_count <= d->options.pipeline);
    TQ_ASSERT(d->in_flight_total > 0);
    d->in_flight_total--;
}

uint64_t tq_driver_tick_hold(const struct tq_driver *driver, uint64_t last_wake_ns, uint64_t now_ns,
                             uint64_t wake_ns) {
    uint64_t tick_end = last_wake_ns + driver->options.tick_ns;
    if (driver->options.tick_ns == 0 || now_ns >= tick_end) return 0;
    if (driver->in_flight_total == 0 && wake_ns >= tick_end) return 0;
    return tick_end;
}

bool tq_driver_done(const struct tq_driver *driver, uint64_t now_ns) {
    return driver->started && now_ns >= driver->end_ns && driver->in_flight_total == 0;
}

const struct tq_driver_result *tq_driver_result(const struct tq_driver *driver) {
    return &driver->result;
}

void tq_driver_finish(struct tq_driver *driver, uint64_t now_ns) {
    TQ_ASSERT(driver->started);
    driver->result.unfinished = driver->in_flight_total;
    uint64_t end = now_ns > driver->end_ns ? now_ns : driver->end_ns;
    driver->result.elapsed_s = (double)(end - driver->start_ns) / (double)NS_PER_S;
}

/* ---- the real loop ----------------------------------------------------------------------- */

static enum tq_err flush_conn(struct tq_driver *d, struct driver_conn *c, struct tq_error *error) {
    bool pending = false;
    enum tq_err err = d->system->flush(c->conn, &pending, error);
    c->pending_write = pending;
    return err;
}

static enum tq_err read_conn(struct tq_driver *d, struct driver_conn *c, struct tq_error *error) {
    struct tq_bench_completion done[TQ_DRIVER_COMPLETIONS_PER_POLL];
    /* Bounded: at most pipeline completions can be outstanding on this connection. */
    for (uint32_t round = 0; round <= d->options.pipeline; round++) {
        uint32_t count = 0;
        enum tq_err err =
            d->system->poll_completions(c->conn, done, TQ_ARRAY_COUNT(done), &count, error);
        if (err != TQ_OK) return err;
        uint64_t now_ns = tq_bench_now_ns();
        for (uint32_t i = 0; i < count; i++)
            tq_driver_complete(d, &done[i], now_ns);
        if (count < TQ_ARRAY_COUNT(done)) break;
    }
    return TQ_OK;
}

/* Sleeps until the monotonic time t_ns (tq_bench_now_ns's clock). */
static void sleep_until_ns(uint64_t t_ns) {
    struct timespec ts = {(time_t)(t_ns / NS_PER_S), (long)(t_ns % NS_PER_S)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

/* options.tick_ns: sleeps out the rest of the tick if tq_driver_tick_hold says so; returns the
 * time after it (now_ns if it did not sleep). */
static uint64_t tick_hold(struct tq_driver *d, uint64_t last_wake_ns, uint64_t now_ns,
                          uint64_t wake_ns) {
    uint64_t hold = tq_driver_tick_hold(d, last_wake_ns, now_ns, wake_ns);
    if (hold == 0) return now_ns;
    sleep_until_ns(hold);
    return tq_bench_now_ns();
}

/* The wait of one loop turn: until wake_ns, at most POLL_WAIT_NS_MAX after now_ns. */
static struct timespec wait_timeout(uint64_t now_ns, uint64_t wake_ns) {
    uint64_t wait_ns = wake_ns > now_ns ? wake_ns - now_ns : 0;
    if (wait_ns > POLL_WAIT_NS_MAX) wait_ns = POLL_WAIT_NS_MAX;
    return (struct timespec){(time_t)(wait_ns / NS_PER_S), (long)(wait_ns % NS_PER_S)};
}

/* Flushes or reads connection c as its readiness says. */
static enum tq_err serve_ready(struct tq_driver *d, struct driver_conn *c, bool writable,
                               bool readable, struct tq_error *error) {
    if (writable) {
        enum tq_err err = flush_conn(d, c, error);
        if (err != TQ_OK) return err;
    }
    if (readable) return read_conn(d, c, error);
    return TQ_OK;
}

/* Sends what is due and writes every connection's new output. Sets *wake_ns (tq_driver_step). */
static enum tq_err step_and_flush(struct tq_driver *d, uint64_t now_ns, uint64_t *wake_ns,
                                  struct tq_error *error) {
    *wake_ns = UINT64_MAX;
    enum tq_err err = tq_driver_step(d, now_ns, wake_ns, error);
    if (err != TQ_OK) return err;
    for (uint32_t i = 0; i < d->conn_count; i++) {
        if (!d->conns[i].pending_write) continue;
        err = flush_conn(d, &d->conns[i], error);
        if (err != TQ_OK) return err;
    }
    return TQ_OK;
}

/* Registers (op EPOLL_CTL_ADD) or updates connection i: EPOLLIN always, EPOLLOUT while it has
 * output the socket did not take. */
static enum tq_err epoll_update(struct tq_driver *d, int epfd, uint32_t i, int op, bool *out_armed,
                                struct tq_error *error) {
    struct driver_conn *c = &d->conns[i];
    if (op == EPOLL_CTL_MOD && out_armed[i] == c->pending_write) return TQ_OK;
    struct epoll_event ev = {.events = EPOLLIN | (c->pending_write ? EPOLLOUT : 0u),
                             .data = {.u32 = i}};
    if (epoll_ctl(epfd, op, d->system->conn_fd(c->conn), &ev) != 0) {
        return tq_error_set(error, TQ_ERR_IO, "epoll_ctl: %s", strerror(errno));
    }
    out_armed[i] = c->pending_write;
    return TQ_OK;
}

static enum tq_err run_epoll(struct tq_driver *d, struct tq_error *error) {
    enum tq_err err = TQ_OK;
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) return tq_error_set(error, TQ_ERR_IO, "epoll_create1: %s", strerror(errno));
    struct epoll_event *events = tq_xcalloc(d->conn_count, sizeof(*events));
    bool *out_armed = tq_xcalloc(d->conn_count, sizeof(*out_armed));
    for (uint32_t i = 0; i < d->conn_count && err == TQ_OK; i++)
        err = epoll_update(d, epfd, i, EPOLL_CTL_ADD, out_armed, error);
    if (err != TQ_OK) goto done;
    tq_driver_start(d, tq_bench_now_ns());
    uint64_t last_wake_ns = d->start_ns;
    for (;;) {
        uint64_t now_ns = tq_bench_now_ns(), wake_ns;
        err = step_and_flush(d, now_ns, &wake_ns, error);
        if (err != TQ_OK) goto done;
        if (tq_driver_done(d, now_ns)) break;
        if (now_ns >= d->end_ns + TQ_DRIVER_DRAIN_NS) break;
        for (uint32_t i = 0; i < d->conn_count; i++) {
            err = epoll_update(d, epfd, i, EPOLL_CTL_MOD, out_armed, error);
            if (err != TQ_OK) goto done;
        }
        now_ns = tick_hold(d, last_wake_ns, now_ns, wake_ns);
        struct timespec timeout = wait_timeout(now_ns, wake_ns);
        int ready = epoll_pwait2(epfd, events, (int)d->conn_count, &timeout, NULL);
        if (d->options.tick_ns > 0) last_wake_ns = tq_bench_now_ns();
        if (ready < 0) {
            if (errno == EINTR) continue;
            err = tq_error_set(error, TQ_ERR_IO, "epoll_pwait2: %s", strerror(errno));
            goto done;
        }
        TQ_ASSERT((uint32_t)ready <= d->conn_count);
        for (int k = 0; k < ready; k++) {
            uint32_t i = events[k].data.u32;
            TQ_ASSERT(i < d->conn_count);
            uint32_t ev = events[k].events;
            err = serve_ready(d, &d->conns[i], (ev & EPOLLOUT) != 0,
                              (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0, error);
            if (err != TQ_OK) goto done;
        }
    }
done:
    tq_free(out_armed, d->conn_count * sizeof(*out_armed));
    tq_free(events, d->conn_count * sizeof(*events));
    close(epfd);
    return err;
}

static enum tq_err run_ppoll(struct tq_driver *d, struct tq_error *error) {
    enum tq_err err = TQ_OK;
    struct pollfd *fds = tq_xcalloc(d->conn_count, sizeof(*fds));
    tq_driver_start(d, tq_bench_now_ns());
    uint64_t last_wake_ns = d->start_ns;
    for (;;) {
        uint64_t now_ns = tq_bench_now_ns(), wake_ns;
        err = step_and_flush(d, now_ns, &wake_ns, error);
        if (err != TQ_OK) goto done;
        if (tq_driver_done(d, now_ns)) break;
        if (now_ns >= d->end_ns + TQ_DRIVER_DRAIN_NS) break;
        now_ns = tick_hold(d, last_wake_ns, now_ns, wake_ns);
        for (uint32_t i = 0; i < d->conn_count; i++) {
            fds[i].fd = d->system->conn_fd(d->conns[i].conn);
            fds[i].events = (short)(POLLIN | (d->conns[i].pending_write ? POLLOUT : 0));
            fds[i].revents = 0;
        }
        struct timespec timeout = wait_timeout(now_ns, wake_ns);
        int ready = ppoll(fds, d->conn_count, &timeout, NULL);
        if (d->options.tick_ns > 0) last_wake_ns = tq_bench_now_ns();
        if (ready < 0) {
            if (errno == EINTR) continue;
            err = tq_error_set(error, TQ_ERR_IO, "ppoll: %s", strerror(errno));
            goto done;
        }
        for (uint32_t i = 0; i < d->conn_count && ready > 0; i++) {
            if (fds[i].revents == 0) continue;
            ready--;
            err = serve_ready(d, &d->conns[i], (fds[i].revents & POLLOUT) != 0,
                              (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) != 0, error);
            if (err != TQ_OK) goto done;
        }
    }
done:
    tq_free(fds, d->conn_count * sizeof(*fds));
    return err;
}

/* True if the kernel has epoll_pwait2 (Linux 5.11): a zero-timeout wait on an empty set. */
static bool epoll_pwait2_available(void) {
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) return false;
    struct epoll_event ev;
    struct timespec zero = {0, 0};
    bool ok = epoll_pwait2(epfd, &ev, 1, &zero, NULL) >= 0 || errno != ENOSYS;
    close(epfd);
    return ok;
}

enum tq_err tq_driver_run(struct tq_driver *driver, struct tq_driver_result *result,
                          struct tq_error *error) {
    TQ_ASSERT(!driver->started);
    TQ_ASSERT(driver->conn_count == driver->options.clients);
    /* Older kernels: the ppoll loop, which measures the same way at a higher cost per wake. */
    bool epoll = driver->options.wait == TQ_DRIVER_WAIT_EPOLL && epoll_pwait2_available();
    enum tq_err err = epoll ? run_epoll(driver, error) : run_ppoll(driver, error);
    if (err != TQ_OK) return err;
    tq_driver_finish(driver, tq_bench_now_ns());
    *result = driver->result;
    return TQ_OK;
}
