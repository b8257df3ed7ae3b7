/* tests/bench/test_openloop.c: the drivers' scheduling, with a virtual clock.
 *
 * Method: a fake system feeds a simulated single-threaded server (FIFO, fixed service time,
 * optionally one stall) and the test advances a virtual clock from event to event, calling the
 * driver's clock-free core (tq_driver_step / tq_driver_complete) exactly as tq_driver_run does.
 * Invariants checked:
 *   - open loop sends arrival k at exactly its intended time k / rate on connection k % clients,
 *     and no arrival past the window;
 *   - with an idle server every latency equals the service time;
 *   - a 100 ms stall is charged to every arrival it delays (latency from the intended time):
 *     far more slow operations than could ever be in flight, so coordinated omission is absent;
 *   - closed loop never exceeds clients x pipeline in flight and keeps the server busy;
 *   - the peak schedule's arrivals follow tq_peak_arrival_time;
 *   - with a tick (tick_ns, simulated as tq_driver_run's loop does it: sleep out the tick, then
 *     read everything answered and send everything due): wake-ups at least a tick apart, every
 *     arrival sent within a tick of its intended time and none lost, and latency still counted
 *     from the intended time: from the send it would be one tick for every operation, from the
 *     intended time it spreads over (tick, 2 ticks]; a 100 ms stall is still charged to every
 *     arrival it delays.
 */
#include "openloop.h"

#include "tq_alloc.h"
#include "tq_test.h"

#include <math.h>

#define MS        1000000ull
#define US        1000ull
#define QUEUE_MAX 100000u

struct request {
    uint64_t tag;
    uint64_t sent_ns;
};

struct fake_server {
    struct request queue[QUEUE_MAX]; /* FIFO of requests not yet completed */
    uint32_t head, count;
    uint64_t now_ns; /* the virtual clock */
    uint64_t service_ns;
    uint64_t stall_at_ns, stall_ns; /* the first request starting at/after stall_at stalls */
    bool stalled;
    uint64_t busy_until_ns; /* completion time of the head request (0: not started) */
    uint32_t in_flight_max;
    /* Record of sends, for the schedule checks. */
    uint64_t sends;
    uint64_t *send_times;
    uint32_t *send_conns;
    uint64_t send_cap;
};

struct tq_bench_conn {
    struct fake_server *server;
    uint32_t index;
};

static enum tq_err fake_open(void *ctx, uint32_t conn_index, struct tq_bench_conn **out,
                             struct tq_error *error) {
    (void)error;
    struct tq_bench_conn *c = tq_xcalloc(1, sizeof(*c));
    c->server = ctx;
    c->index = conn_index;
    *out = c;
    return TQ_OK;
}

static int fake_fd(struct tq_bench_conn *c) {
    (void)c;
    return -1;
}

static enum tq_err fake_send(struct tq_bench_conn *c, const struct tq_bench_op *op, uint64_t tag,
                             struct tq_error *error) {
    (void)op;
    (void)error;
    struct fake_server *s = c->server;
    TQ_CHECK_UINT_OP(s->count, <, QUEUE_MAX);
    TQ_CHECK_UEQ(tq_driver_tag_conn(tag), c->index);
    s->queue[(s->head + s->count) % QUEUE_MAX] = (struct request){tag, s->now_ns};
    s->count++;
    if (s->count > s->in_flight_max) s->in_flight_max = s->count;
    if (s->sends < s->send_cap) {
        s->send_times[s->sends] = s->now_ns;
        s->send_conns[s->sends] = c->index;
    }
    s->sends++;
    return TQ_OK;
}

static enum tq_err fake_flush(struct tq_bench_conn *c, bool *pending, struct tq_error *error) {
    (void)c;
    (void)error;
    *pending = false;
    return TQ_OK;
}

static enum tq_err fake_poll(struct tq_bench_conn *c, struct tq_bench_completion *out, uint32_t max,
                             uint32_t *count, struct tq_error *error) {
    (void)c;
    (void)out;
    (void)max;
    (void)error;
    *count = 0; /* completions are delivered by the simulation loop */
    return TQ_OK;
}

static void fake_close(struct tq_bench_conn *c) {
    tq_free(c, sizeof(*c));
}

/* Completion time of the head request, starting it if needed. */
static uint64_t head_done_ns(struct fake_server *s) {
    if (s->count == 0) return UINT64_MAX;
    if (s->busy_until_ns == 0) {
        const struct request *r = &s->queue[s->head];
        uint64_t start = r->sent_ns > s->now_ns ? r->sent_ns : s->now_ns;
        uint64_t service = s->service_ns;
        if (!s->stalled && start >= s->stall_at_ns && s->stall_ns > 0) {
            s->stalled = true;
            service += s->stall_ns;
        }
        s->busy_until_ns = start + service;
    }
    return s->busy_until_ns;
}

/* Runs the driver to completion on the virtual clock. */
static void simulate(struct tq_driver *d, struct fake_server *s) {
    struct tq_error error;
    tq_error_clear(&error);
    s->now_ns = 1000 * MS; /* any origin: intended times are relative to the start */
    tq_driver_start(d, s->now_ns);
    for (uint64_t guard = 0; guard < 100000000u; guard++) {
        uint64_t wake = UINT64_MAX;
        TQ_CHECK_OK(tq_driver_step(d, s->now_ns, &wake, &error), &error);
        if (tq_driver_done(d, s->now_ns)) break;
        uint64_t done = head_done_ns(s);
        if (done <= wake) {
            s->now_ns = done > s->now_ns ? done : s->now_ns;
            struct tq_bench_completion c = {s->queue[s->head].tag, TQ_OK};
            s->head = (s->head + 1) % QUEUE_MAX;
            s->count--;
            s->busy_until_ns = 0;
            tq_driver_complete(d, &c, s->now_ns);
        } else {
            TQ_CHECK(wake != UINT64_MAX);
            s->now_ns = wake > s->now_ns ? wake : s->now_ns;
        }
    }
    TQ_CHECK(tq_driver_done(d, s->now_ns));
    tq_driver_finish(d, s->now_ns);
}

/* Moves the fake server to t_ns, completing (in FIFO order, each at its own time) what it
 * finishes by then; the completions wait in done[] until the driver reads them. */
static void server_advance(struct fake_server *s, uint64_t t_ns, struct tq_bench_completion *done,
                           uint32_t *done_count) {
    for (uint64_t at = head_done_ns(s); at <= t_ns; at = head_done_ns(s)) {
        s->now_ns = at > s->now_ns ? at : s->now_ns;
        TQ_CHECK_UINT_OP(*done_count, <, QUEUE_MAX);
        done[(*done_count)++] = (struct tq_bench_completion){s->queue[s->head].tag, TQ_OK};
        s->head = (s->head + 1) % QUEUE_MAX;
        s->count--;
        s->busy_until_ns = 0;
    }
    if (t_ns > s->now_ns) s->now_ns = t_ns;
}

/* tq_driver_run's loop with options.tick_ns on the virtual clock: step (send what is due),
 * sleep out the tick if tq_driver_tick_hold says so, wait until the next intended time or the
 * next answer (at once if either is already there), wake: read every answer. Records the
 * wake-up times in wakes[] (up to wake_cap) and returns their count. */
static uint64_t simulate_ticked(struct tq_driver *d, struct fake_server *s, uint64_t *wakes,
                                uint64_t wake_cap) {
    struct tq_error error;
    tq_error_clear(&error);
    static struct tq_bench_completion done[QUEUE_MAX];
    uint32_t done_count = 0;
    uint64_t wake_count = 0;
    s->now_ns = 1000 * MS;
    tq_driver_start(d, s->now_ns);
    uint64_t last_wake = s->now_ns;
    for (uint64_t guard = 0; guard < 100000000u; guard++) {
        uint64_t wake = UINT64_MAX;
        TQ_CHECK_OK(tq_driver_step(d, s->now_ns, &wake, &error), &error);
        if (tq_driver_done(d, s->now_ns)) break;
        uint64_t hold = tq_driver_tick_hold(d, last_wake, s->now_ns, wake);
        if (hold != 0) {
            TQ_CHECK_UINT_OP(hold, >, s->now_ns);
            server_advance(s, hold, done, &done_count);
        }
        if (done_count == 0 && wake > s->now_ns) { /* wait for an answer or the next send */
            uint64_t next = head_done_ns(s);
            if (wake < next) next = wake;
            TQ_CHECK(next != UINT64_MAX);
            server_advance(s, next, done, &done_count);
        }
        last_wake = s->now_ns;
        if (wake_count < wake_cap) wakes[wake_count] = last_wake;
        wake_count++;
        for (uint32_t i = 0; i < done_count; i++)
            tq_driver_complete(d, &done[i], s->now_ns);
        done_count = 0;
    }
    TQ_CHECK(tq_driver_done(d, s->now_ns));
    tq_driver_finish(d, s->now_ns);
    return wake_count;
}

static struct tq_bench_system fake_system(struct fake_server *s) {
    return (struct tq_bench_system){
        .name = "fake",
        .ctx = s,
        .conn_open = fake_open,
        .conn_fd = fake_fd,
        .send_op = fake_send,
        .flush = fake_flush,
        .poll_completions = fake_poll,
        .conn_close = fake_close,
        .stats = NULL,
    };
}

static struct fake_server *server_new(uint64_t service_ns, uint64_t send_cap) {
    struct fake_server *s = tq_xcalloc(1, sizeof(*s));
    s->service_ns = service_ns;
    s->stall_at_ns = UINT64_MAX;
    s->send_cap = send_cap;
    s->send_times = tq_xcalloc(send_cap, sizeof(*s->send_times));
    s->send_conns = tq_xcalloc(send_cap, sizeof(*s->send_conns));
    return s;
}

static void server_free(struct fake_server *s) {
    tq_free(s->send_times, s->send_cap * sizeof(*s->send_times));
    tq_free(s->send_conns, s->send_cap * sizeof(*s->send_conns));
    tq_free(s, sizeof(*s));
}

static uint64_t count_at_least(const struct tq_hist *h, uint64_t value) {
    uint64_t n = 0;
    for (uint32_t i = tq_hist_bucket_index(value); i < TQ_HIST_BUCKETS; i++)
        n += h->buckets[i];
    return n;
}

static struct tq_driver_options base_options(uint64_t seed) {
    struct tq_driver_options o = {
        .clients = 4,
        .pipeline = 8,
        .duration_s = 2.0,
        .rate = 1000.0,
        .workload = {.kind = TQ_WORKLOAD_MIXED, .seed = seed, .customers = 1000, .backlog = 1000},
    };
    return o;
}

static void test_open_loop_idle(uint64_t seed) {
    struct fake_server *s = server_new(50 * US, 4000);
    struct tq_bench_system sys = fake_system(s);
    struct tq_driver_options o = base_options(seed);
    struct tq_driver *d = NULL;
    struct tq_error error;
    TQ_CHECK_OK(tq_driver_create(&o, &sys, &d, &error), &error);
    simulate(d, s);
    const struct tq_driver_result *r = tq_driver_result(d);
    TQ_CHECK_UEQ(s->sends, 2000); /* k = 0..1999: intended k ms < 2 s */
    TQ_CHECK_UEQ(r->all.count, 2000);
    for (uint64_t k = 0; k < s->sends; k++) {
        TQ_CHECK_UEQ(s->send_times[k] - 1000 * MS, k * MS);
        TQ_CHECK_UEQ(s->send_conns[k], k % 4);
        TQ_CHECK_UEQ(tq_driver_intended_ns(d, k), k * MS);
    }
    TQ_CHECK_UEQ(r->all.min, 50 * US);
    TQ_CHECK_UEQ(r->all.max, 50 * US);
    TQ_CHECK_UEQ(r->ops[TQ_OP_INGEST] + r->ops[TQ_OP_CLAIM_REPLY], 2000);
    TQ_CHECK_UINT_OP(r->ops[TQ_OP_INGEST], >, r->ops[TQ_OP_CLAIM_REPLY]);
    TQ_CHECK_UEQ(r->unfinished, 0);
    tq_driver_destroy(d);
    server_free(s);
}

static void test_open_loop_stall(uint64_t seed) {
    struct fake_server *s = server_new(50 * US, 4000);
    s->stall_at_ns = 1000 * MS + 500 * MS;
    s->stall_ns = 100 * MS;
    struct tq_bench_system sys = fake_system(s);
    struct tq_driver_options o = base_options(seed);
    struct tq_driver *d = NULL;
    struct tq_error error;
    TQ_CHECK_OK(tq_driver_create(&o, &sys, &d, &error), &error);
    simulate(d, s);
    const struct tq_driver_result *r = tq_driver_result(d);
    TQ_CHECK_UEQ(r->all.count, 2000); /* the open loop skips nothing */
    TQ_CHECK_UINT_OP(s->in_flight_max, <=, 32);
    /* The request in service when the stall hit waited the whole stall. */
    TQ_CHECK_UINT_OP(r->all.max, >=, 100 * MS);
    /* Arrivals at 500..590 ms are each delayed >= 10 ms: ~90 operations, far more than the 32
     * that can be in flight (all a send-time measurement could ever see as slow). */
    uint64_t slow = count_at_least(&r->all, 10 * MS);
    TQ_CHECK_UINT_OP(slow, >=, 85);
    TQ_CHECK_UINT_OP(slow, <=, 110);
    /* p99 (rank 1980) is inside the stall's tail, p50 is the idle service time. */
    TQ_CHECK_UINT_OP(tq_hist_percentile(&r->all, 99.0), >=, 50 * MS);
    TQ_CHECK_UINT_OP(tq_hist_percentile(&r->all, 50.0), <=, 51 * US);
    tq_driver_destroy(d);
    server_free(s);
}

static void test_closed_loop(uint64_t seed) {
    struct fake_server *s = server_new(100 * US, 1);
    struct tq_bench_system sys = fake_system(s);
    struct tq_driver_options o = base_options(seed);
    o.rate = 0;
    o.clients = 3;
    o.pipeline = 2;
    o.duration_s = 1.0;
    struct tq_driver *d = NULL;
    struct tq_error error;
    TQ_CHECK_OK(tq_driver_create(&o, &sys, &d, &error), &error);
    simulate(d, s);
    const struct tq_driver_result *r = tq_driver_result(d);
    TQ_CHECK_UEQ(s->in_flight_max, 6);
    /* The server is never idle: 1 s / 100 us = 10000 completions, plus the drain. */
    TQ_CHECK_UINT_OP(r->all.count, >=, 10000);
    TQ_CHECK_UINT_OP(r->all.count, <=, 10006);
    /* Six in flight, FIFO: each waits for the five ahead of it. */
    TQ_CHECK_UINT_OP(tq_hist_percentile(&r->all, 50.0), >=, 599 * US);
    TQ_CHECK_UINT_OP(tq_hist_percentile(&r->all, 50.0), <=, 601 * US);
    TQ_CHECK(fabs(r->elapsed_s - 1.0) < 0.01);
    tq_driver_destroy(d);
    server_free(s);
}

static void test_peak_schedule(uint64_t seed) {
    struct tq_peak_schedule p = {
        .base_rate = 200, .factor = 20, .warmup_s = 0.5, .ramp_s = 0.25, .spike_s = 0.5};
    struct fake_server *s = server_new(10 * US, 10000);
    struct tq_bench_system sys = fake_system(s);
    struct tq_driver_options o = base_options(seed);
    o.peak = &p;
    o.rate = 0;
    o.duration_s = 2.0;
    struct tq_driver *d = NULL;
    struct tq_error error;
    TQ_CHECK_OK(tq_driver_create(&o, &sys, &d, &error), &error);
    simulate(d, s);
    uint64_t expect = (uint64_t)ceil(tq_peak_arrivals(&p, 2.0));
    TQ_CHECK_UEQ(s->sends, expect);
    for (uint64_t k = 0; k < s->sends && k < s->send_cap; k++) {
        uint64_t want = (uint64_t)(tq_peak_arrival_time(&p, k) * 1e9);
        TQ_CHECK_UEQ(s->send_times[k] - 1000 * MS, want);
    }
    tq_driver_destroy(d);
    server_free(s);
}

/* 1,000/s over 4 connections, a 5 ms tick, an idle server (50 us a request). */
static void test_open_loop_tick(uint64_t seed) {
    const uint64_t tick = 5 * MS;
    struct fake_server *s = server_new(50 * US, 4000);
    struct tq_bench_system sys = fake_system(s);
    struct tq_driver_options o = base_options(seed);
    o.tick_ns = tick;
    struct tq_driver *d = NULL;
    struct tq_error error;
    TQ_CHECK_OK(tq_driver_create(&o, &sys, &d, &error), &error);
    enum { WAKE_CAP = 4096 };
    static uint64_t wakes[WAKE_CAP];
    uint64_t wake_count = simulate_ticked(d, s, wakes, WAKE_CAP);
    const struct tq_driver_result *r = tq_driver_result(d);
    /* None lost, none early, none more than a tick late. A wake-up sends connection by
     * connection, so sends are in order per connection: its j-th is arrival c + 4j. */
    TQ_CHECK_UEQ(s->sends, 2000);
    TQ_CHECK_UEQ(r->all.count, 2000);
    uint64_t per_conn[4] = {0, 0, 0, 0};
    for (uint64_t i = 0; i < s->sends; i++) {
        uint32_t c = s->send_conns[i];
        TQ_CHECK_UINT_OP(c, <, 4);
        uint64_t k = c + 4 * per_conn[c]++;
        uint64_t intended = 1000 * MS + tq_driver_intended_ns(d, k);
        TQ_CHECK_UINT_OP(s->send_times[i], >=, intended);
        TQ_CHECK_UINT_OP(s->send_times[i] - intended, <, tick);
    }
    for (uint32_t c = 0; c < 4; c++)
        TQ_CHECK_UEQ(per_conn[c], 500);
    /* At most one wake-up a tick: ~400 in the 2 s, not one per arrival and answer. */
    TQ_CHECK_UINT_OP(wake_count, <=, WAKE_CAP);
    TQ_CHECK_UINT_OP(wake_count, <=, 2 * MS * 1000 / tick + 2);
    for (uint64_t i = 1; i < wake_count; i++)
        TQ_CHECK_UINT_OP(wakes[i] - wakes[i - 1], >=, tick);
    /* Every answer is read a tick after its send; latency counts from the intended time, so it
     * spreads over [tick, 2 ticks) (1 in 5 arrivals is due on a tick: exactly one tick). Counted
     * from the send, every latency would be one tick and p50 = p90 = max. */
    TQ_CHECK_UINT_OP(r->all.min, >=, tick);
    TQ_CHECK_UINT_OP(r->all.max, <, 2 * tick);
    TQ_CHECK_UINT_OP(r->all.max, >=, 2 * tick - 2 * MS);
    TQ_CHECK_UINT_OP(tq_hist_percentile(&r->all, 50.0), >=, tick + tick / 4);
    TQ_CHECK_UINT_OP(tq_hist_percentile(&r->all, 50.0), <=, tick + 3 * tick / 4);
    TQ_CHECK_UEQ(r->unfinished, 0);
    tq_driver_destroy(d);
    server_free(s);
}

/* The stall test with a 1 ms tick: the stall is still charged to every arrival it delays. */
static void test_open_loop_tick_stall(uint64_t seed) {
    struct fake_server *s = server_new(50 * US, 4000);
    s->stall_at_ns = 1000 * MS + 500 * MS;
    s->stall_ns = 100 * MS;
    struct tq_bench_system sys = fake_system(s);
    struct tq_driver_options o = base_options(seed);
    o.tick_ns = 1 * MS;
    struct tq_driver *d = NULL;
    struct tq_error error;
    TQ_CHECK_OK(tq_driver_create(&o, &sys, &d, &error), &error);
    static uint64_t wakes[1];
    (void)simulate_ticked(d, s, wakes, 0);
    const struct tq_driver_result *r = tq_driver_result(d);
    TQ_CHECK_UEQ(r->all.count, 2000);
    TQ_CHECK_UINT_OP(r->all.max, >=, 100 * MS);
    uint64_t slow = count_at_least(&r->all, 10 * MS);
    TQ_CHECK_UINT_OP(slow, >=, 85);
    TQ_CHECK_UINT_OP(slow, <=, 115);
    tq_driver_destroy(d);
    server_free(s);
}

static void test_bad_options(void) {
    struct fake_server *s = server_new(1, 1);
    struct tq_bench_system sys = fake_system(s);
    struct tq_driver_options o = base_options(1);
    struct tq_driver *d = NULL;
    struct tq_error error;
    o.clients = 0;
    TQ_CHECK_ERR(tq_driver_create(&o, &sys, &d, &error), TQ_ERR_INVALID_ARGUMENT, &error);
    o = base_options(1);
    o.pipeline = 0;
    TQ_CHECK_ERR(tq_driver_create(&o, &sys, &d, &error), TQ_ERR_INVALID_ARGUMENT, &error);
    o = base_options(1);
    o.duration_s = 0;
    TQ_CHECK_ERR(tq_driver_create(&o, &sys, &d, &error), TQ_ERR_INVALID_ARGUMENT, &error);
    o = base_options(1);
    o.tick_ns = TQ_DRIVER_TICK_NS_MAX + 1;
    TQ_CHECK_ERR(tq_driver_create(&o, &sys, &d, &error), TQ_ERR_INVALID_ARGUMENT, &error);
    o = base_options(1);
    o.rate = 0; /* a tick needs an open loop */
    o.tick_ns = 1 * MS;
    TQ_CHECK_ERR(tq_driver_create(&o, &sys, &d, &error), TQ_ERR_INVALID_ARGUMENT, &error);
    server_free(s);
}

int main(void) {
    uint64_t seed = tq_test_seed("test_bench_openloop");
    test_open_loop_idle(seed);
    test_open_loop_stall(seed);
    test_closed_loop(seed);
    test_peak_schedule(seed);
    test_open_loop_tick(seed);
    test_open_loop_tick_stall(seed);
    test_bad_options();
    printf("test_bench_openloop: ok\n");
    return 0;
}
