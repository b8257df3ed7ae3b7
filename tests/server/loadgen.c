/* tests/server/loadgen.c: tq-loadgen, a small closed-loop load generator for ticketqd.
 *
 * Not a test (no assertions about speed): the server engineer's measuring tool. It drives N
 * connections, one process each (libticketq's allocation counter is process-global and not
 * atomic, so clients must not run in threads of one process), with up to DEPTH requests in flight
 * per connection through libticketq's pipelined API (tq_client_submit / tq_client_flush /
 * tq_client_collect). Each request is one Ingest, or with --batch B one Batch of B Ingests (B
 * messages per request). Ingests follow /work/shared/PEER-WORKLOADS.md: customers ext-<n>, n
 * uniform in 1..NCUST on channel n % 3 (10% first-contact customers n in [1e9, 1e12)), a 300-byte
 * body (--first-contact sets that 10%); they carry no provider message id unless --message-ids
 * (then "m<run>.<process>-<sequence>", unique, so every ingest adds a key to the idempotency
 * table). With
 * --mixed P, a fraction P of the operations is a claim-reply instead (Claim by agent then Reply).
 * --seconds 0 runs the setup only.
 *
 * Setup (unless --no-setup): with the server-admin token, creates a tenant, 3 queues, 500
 * agents and pre-creates the NCUST customers (one ingest each, batched, not measured; so each
 * has a ticket too). With --pre-create the customers are created by CustomerCreate instead
 * (with the identity their ingests come from, no ticket); --first-messages then sends one
 * ingest per customer in order, so each gets exactly one ticket (bench/restart-10m.sh measures
 * memory per customer and per ticket this way). --sla sets a first-reply SLA policy first.
 *
 * Window: each thread keeps between DEPTH/2 and DEPTH requests in flight: it collects half a
 * window, submits half a window, flushes once (so one write per half window, as a pipelining
 * client would). Latency is submit-to-collect per request, in a histogram of 10 µs buckets
 * (to 1 s); p50/p99 are printed with ops/s (requests and messages).
 *
 * Usage: tq-loadgen --addr HOST:PORT --token-file DIR/admin.token [--conns N] [--depth D]
 *        [--seconds S] [--batch B] [--customers N] [--mixed P] [--rate R] [--seed X]
 *        [--no-setup]
 *
 * --rate R switches to an open loop (ingest only): R requests/s in total, spread evenly over
 * the connections, at most DEPTH in flight each; latency counts from each request's due time.
 * A worker never waits for a response past its next due time (--collect-blocking restores the
 * old behaviour, which did: one slow answer then held back every later send). The open loop's
 * connections are driven by --open-procs P processes (default 1: the tool's own CPU on a 2-core
 * machine was most of the client's tail; run_open_group). It also prints how late requests
 * went out against the schedule and how long the workers waited for a CPU. --tick-us T makes
 * the open loop wake at most every T µs (run_open_group): fewer, larger writes and reads on
 * both sides, latency still from each request's due time.
 */
#include "ticketq.h"

#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HIST_BUCKETS   100000u /* 10 µs each: up to 1 s */
#define HIST_US        10u
#define BODY_BYTES_MAX 4096u
#define AGENTS         500u
#define TICK_US_MAX    100000u /* --tick-us: at most 100 ms */

struct opts {
    const char *addr;
    char token[TQ_CLIENT_TOKEN_BYTES_MAX];
    unsigned conns, depth, seconds, batch;
    uint64_t customers, seed;
    double mixed;
    bool collect_blocking; /* --collect-blocking: the open loop's old blocking collect */
    unsigned open_procs;   /* open loop: processes sharing the connections (--open-procs) */
    unsigned tick_us;      /* open loop: at least this long between wake-ups (--tick-us) */
    double rate;           /* > 0: open loop at this many requests/s in total */
    double first_contact;  /* fraction of ingests from customers never seen before */
    bool setup;
    bool message_ids;    /* --message-ids: every ingest carries a unique provider message id */
    bool pre_create;     /* --pre-create: setup creates customers by CustomerCreate, no tickets */
    bool first_messages; /* --first-messages: one ingest per customer 1..N in order, batched */
    bool sla;            /* --sla: setup sets a first-reply SLA policy on every priority */
};

static struct opts g_opt = {.addr = "127.0.0.1:7070",
                            .conns = 4,
                            .depth = 64,
                            .seconds = 10,
                            .batch = 1,
                            .customers = 100000,
                            .seed = 42,
                            .first_contact = 0.1,
                            .open_procs = 1,
                            .setup = true};
static char g_body_in[BODY_BYTES_MAX], g_body_out[BODY_BYTES_MAX];
static uint64_t g_tenant, g_queue[3], g_agent_first;
static volatile sig_atomic_t g_stop;

static void on_alarm(int sig) {
    (void)sig;
    g_stop = 1;
}

struct worker {
    unsigned index;
    uint64_t rng;
    uint64_t requests, messages, errors;
    uint64_t *sent_us; /* submit time by in-flight slot (FIFO) */
    uint32_t hist[HIST_BUCKETS];
    uint32_t late_hist[HIST_BUCKETS]; /* open loop: send time minus due time */
    uint32_t send_hist[HIST_BUCKETS]; /* open loop: latency from the send (the tool's delay out) */
    uint64_t late_max_us;
    uint64_t run_delay_ns; /* time runnable but not running (/proc/self/schedstat), 0 if unknown */
};

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Sleeps until the monotonic time t_us (now_us's clock). */
static void sleep_until_us(uint64_t t_us) {
    struct timespec ts = {.tv_sec = (time_t)(t_us / 1000000u),
                          .tv_nsec = (long)(t_us % 1000000u) * 1000};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
    }
}

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static void die(const char *what, enum tq_err rc, const struct tq_error *err) {
    fprintf(stderr, "tq-loadgen: %s: %s (%d)\n", what, err->msg, (int)rc);
    exit(1);
}

static void read_file(const char *path, char *out, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "tq-loadgen: cannot open %s\n", path);
        exit(2);
    }
    size_t n = fread(out, 1, cap - 1, f);
    fclose(f);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        n--;
    out[n] = '\0';
}

static struct tq_client *connect_admin(void) {
    struct tq_client_options o = {
        .addr = g_opt.addr, .token = g_opt.token, .inflight_max = 65536, .io_timeout_ms = 60000};
    struct tq_client *c = NULL;
    struct tq_error err;
    enum tq_err rc = tq_client_connect(&o, &c, &err);
    if (rc != TQ_OK) die("connect", rc, &err);
    if (g_tenant != 0) tq_client_set_tenant(c, g_tenant);
    return c;
}

/* One ingest op for customer n (the Request and its strings live in the caller's storage). */
struct ingest_slot {
    Ticketq__Request req;
    Ticketq__Ingest in;
    Ticketq__CustomerCreate cc; /* --pre-create: the same customer, created without a ticket */
    Ticketq__Identity ident;
    char from[32];
    char ext[64]; /* --message-ids: "m<run>.<process>-<sequence>" */
};

/* --message-ids: the run (its start in µs: another run against the same server uses other
 * ids), the process's number (0 = setup, i + 1 = worker process i, set after its fork) and its
 * own sequence, so that ids never repeat across processes or runs. */
static uint64_t g_mid_run;
static unsigned g_mid_proc;
static uint64_t g_mid_seq;

/* Writes v in decimal at p; returns the digits written. */
static unsigned put_decimal(char *p, uint64_t v) {
    char digits[24];
    unsigned len = 0;
    do {
        digits[len++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (unsigned k = 0; k < len; k++)
        p[k] = digits[len - 1 - k];
    return len;
}

static void make_ingest(struct ingest_slot *s, uint64_t n) {
    ticketq__request__init(&s->req);
    ticketq__ingest__init(&s->in);
    /* "ext-<n>" by hand: snprintf was 3% of the open loop's client CPU. */
    char digits[24];
    unsigned len = 0;
    uint64_t rest = n;
    do {
        digits[len++] = (char)('0' + rest % 10);
        rest /= 10;
    } while (rest != 0);
    memcpy(s->from, "ext-", 4);
    for (unsigned k = 0; k < len; k++)
        s->from[4 + k] = digits[len - 1 - k];
    s->from[4 + len] = '\0';
    s->in.channel = (Ticketq__Channel)(n % 3);
    s->in.from = s->from;
    if (g_opt.message_ids) { /* a key per message: the server's idempotency table grows */
        unsigned at = 0;
        s->ext[at++] = 'm';
        at += put_decimal(s->ext + at, g_mid_run);
        s->ext[at++] = '.';
        at += put_decimal(s->ext + at, g_mid_proc);
        s->ext[at++] = '-';
        at += put_decimal(s->ext + at, ++g_mid_seq);
        s->ext[at] = '\0';
        s->in.external_id = s->ext;
    }
    s->in.body = g_body_in;
    s->in.has_queue_id = true;
    s->in.queue_id = g_queue[n % 3];
    s->in.has_priority = true;
    s->in.priority = (Ticketq__Priority)((n / 3) % 3);
    s->req.op_case = TICKETQ__REQUEST__OP_INGEST;
    s->req.ingest = &s->in;
}

static uint64_t pick_customer(uint64_t *rng) {
    double u = (double)(rng_next(rng) >> 11) / 9007199254740992.0;
    if (u < g_opt.first_contact) return 1000000000u + rng_next(rng) % 999000000000u;
    return 1 + rng_next(rng) % g_opt.customers;
}

/* --sla: one policy whose first-reply target covers every priority (the peer workloads give
 * each new ticket an SLA deadline, PEER-WORKLOADS.md: 1 h, 4 h, 24 h by tier; LOW gets 24 h too,
 * so that every ticket has a running clock, the most memory a ticket takes in these workloads). */
static void set_sla_policy(struct tq_client *c) {
    uint64_t first_reply[4] = {24u * 3600000u, 24u * 3600000u, 4u * 3600000u, 3600000u};
    Ticketq__SlaTargets targets = TICKETQ__SLA_TARGETS__INIT;
    targets.n_first_reply_ms = 4;
    targets.first_reply_ms = first_reply;
    Ticketq__SlaPolicy policy = TICKETQ__SLA_POLICY__INIT;
    policy.name = (char *)(uintptr_t) "loadgen";
    policy.targets = &targets;
    Ticketq__SlaPolicy *policies[1] = {&policy};
    Ticketq__SlaPoliciesSet set = TICKETQ__SLA_POLICIES_SET__INIT;
    set.n_policies = 1;
    set.policies = policies;
    Ticketq__Request req = TICKETQ__REQUEST__INIT;
    req.op_case = TICKETQ__REQUEST__OP_SLA_POLICIES_SET;
    req.sla_policies_set = &set;
    Ticketq__Response *resp = NULL;
    struct tq_error err;
    enum tq_err rc = tq_client_call(c, &req, &resp, &err);
    if (rc != TQ_OK) die("sla_policies_set", rc, &err);
    tq_client_response_free(resp);
}

/* A CustomerCreate for customer n with the identity its ingests come from (channel n % 3,
 * "ext-<n>", as make_ingest), so that a later ingest finds it and creates only the ticket. */
static void make_customer_create(struct ingest_slot *s, uint64_t n) {
    make_ingest(s, n); /* the same "ext-<n>" string and channel */
    ticketq__customer_create__init(&s->cc);
    ticketq__identity__init(&s->ident);
    s->ident.channel = s->in.channel;
    s->ident.external_id = s->from;
    s->cc.identity = &s->ident;
    s->req.op_case = TICKETQ__REQUEST__OP_CUSTOMER_CREATE;
    s->req.customer_create = &s->cc;
}

enum send_kind { SEND_INGEST, SEND_CUSTOMER_CREATE };

/* Sends one operation per customer 1..N in order (an Ingest, or a CustomerCreate), 100 per
 * Batch, 16 batches in flight, on connection c; every result must succeed (exits otherwise).
 * Prints one line "<what>: ..." with the count and the time. */
static void send_each(struct tq_client *c, enum send_kind kind, const char *what) {
    enum { B = 100, W = 16 };
    static struct ingest_slot slots[W][B];
    static Ticketq__Request *ops[W][B];
    static Ticketq__Batch batches[W];
    static Ticketq__Request reqs[W];
    struct tq_error err;
    uint64_t next = 1, t0 = now_us();
    unsigned inflight = 0, w = 0;
    while (next <= g_opt.customers || inflight > 0) {
        while (next <= g_opt.customers && inflight < W) {
            size_t k = 0;
            for (; k < B && next <= g_opt.customers; k++, next++) {
                if (kind == SEND_CUSTOMER_CREATE) {
                    make_customer_create(&slots[w][k], next);
                } else {
                    make_ingest(&slots[w][k], next);
                }
                slots[w][k].req.id = k + 1;
                ops[w][k] = &slots[w][k].req;
            }
            ticketq__batch__init(&batches[w]);
            batches[w].n_ops = k;
            batches[w].ops = ops[w];
            ticketq__request__init(&reqs[w]);
            reqs[w].op_case = TICKETQ__REQUEST__OP_BATCH;
            reqs[w].batch = &batches[w];
            enum tq_err rc = tq_client_submit(c, &reqs[w], NULL, &err);
            if (rc != TQ_OK) die("submit", rc, &err);
            w = (w + 1) % W;
            inflight++;
        }
        Ticketq__Response *resp = NULL;
        enum tq_err rc = tq_client_collect(c, &resp, &err);
        if (rc != TQ_OK) die("collect", rc, &err);
        if ((rc = tq_client_response_error(resp, &err)) != TQ_OK) die(what, rc, &err);
        if (resp->result_case == TICKETQ__RESPONSE__RESULT_BATCH) { /* each op's own result */
            for (size_t i = 0; i < resp->batch->n_results; i++) {
                rc = tq_client_response_error(resp->batch->results[i], &err);
                if (rc != TQ_OK) die(what, rc, &err);
            }
        }
        tq_client_response_free(resp);
        inflight--;
    }
    printf("%s: tenant %" PRIu64 ", %" PRIu64 " %s in %.1f s\n", what, g_tenant, g_opt.customers,
           kind == SEND_CUSTOMER_CREATE ? "customers (CustomerCreate, no ticket)"
                                        : "ingests (one per customer, in order)",
           (double)(now_us() - t0) / 1e6);
}

static void setup(void) {
    struct tq_client *c = connect_admin();
    struct tq_error err;
    struct tq_client_ids ids;
    enum tq_err rc = tq_client_tenant_create(c, "loadgen", &ids, &err);
    if (rc != TQ_OK) die("tenant_create", rc, &err);
    g_tenant = ids.tenant_id;
    tq_client_set_tenant(c, g_tenant);
    static const char *names[3] = {"email", "sms", "whatsapp"};
    for (int i = 0; i < 3; i++) {
        rc = tq_client_queue_create(c, names[i], false, &ids, &err);
        if (rc != TQ_OK) die("queue_create", rc, &err);
        g_queue[i] = ids.queue_id;
    }
    for (unsigned a = 0; a < AGENTS; a++) {
        char name[32];
        snprintf(name, sizeof(name), "agent-%u", a + 1);
        rc = tq_client_agent_create(c, name, 1000000, 1000000, &ids, &err);
        if (rc != TQ_OK) die("agent_create", rc, &err);
        if (a == 0) g_agent_first = ids.agent_id;
    }
    if (g_opt.sla) set_sla_policy(c);
    if (g_opt.pre_create) {
        send_each(c, SEND_CUSTOMER_CREATE, "setup");
    } else {
        send_each(c, SEND_INGEST, "setup");
    }
    tq_client_close(c);
}

/* Builds request number seq of a worker into its slot storage. Returns messages it carries. */
struct req_storage {
    Ticketq__Request req;
    Ticketq__Batch batch;
    Ticketq__Request **ops;
    struct ingest_slot *slots;
    Ticketq__Claim claim;
};

static unsigned build_request(struct worker *wk, struct req_storage *rs) {
    double u = (double)(rng_next(&wk->rng) >> 11) / 9007199254740992.0;
    if (g_opt.mixed > 0 && u < g_opt.mixed) {
        /* claim: the reply follows when the claim answers (see run_worker). */
        ticketq__request__init(&rs->req);
        ticketq__claim__init(&rs->claim);
        rs->claim.has_agent_id = true;
        rs->claim.agent_id = g_agent_first + rng_next(&wk->rng) % AGENTS;
        rs->req.op_case = TICKETQ__REQUEST__OP_CLAIM;
        rs->req.claim = &rs->claim;
        return 0;
    }
    if (g_opt.batch <= 1) {
        make_ingest(&rs->slots[0], pick_customer(&wk->rng));
        rs->req = rs->slots[0].req;
        rs->req.ingest = &rs->slots[0].in;
        return 1;
    }
    for (unsigned k = 0; k < g_opt.batch; k++) {
        make_ingest(&rs->slots[k], pick_customer(&wk->rng));
        rs->slots[k].req.id = k + 1;
        rs->ops[k] = &rs->slots[k].req;
    }
    ticketq__batch__init(&rs->batch);
    rs->batch.n_ops = g_opt.batch;
    rs->batch.ops = rs->ops;
    ticketq__request__init(&rs->req);
    rs->req.op_case = TICKETQ__REQUEST__OP_BATCH;
    rs->req.batch = &rs->batch;
    return g_opt.batch;
}

static void record_latency(struct worker *wk, uint64_t lat) {
    uint64_t b = lat / HIST_US;
    wk->hist[b < HIST_BUCKETS ? b : HIST_BUCKETS - 1]++;
}

/* Open loop: how late a request went out against its due time (the tool's own schedule; the
 * latency above includes it, by design, so this says how much of a tail is the client's). */
static void record_lateness(struct worker *wk, uint64_t late_us) {
    uint64_t b = late_us / HIST_US;
    wk->late_hist[b < HIST_BUCKETS ? b : HIST_BUCKETS - 1]++;
    if (late_us > wk->late_max_us) wk->late_max_us = late_us;
}

/* One response collected: its latency from the due time (the figure) and from the send, due
 * time + late_us (printed beside it: the difference is the tool's own send delay), its
 * messages, its error. */
static void open_collected(struct worker *wk, Ticketq__Response *resp, uint64_t due_us,
                           uint64_t late_us, unsigned messages) {
    struct tq_error err;
    uint64_t lat = now_us() - due_us, from_send = lat > late_us ? lat - late_us : 0;
    record_latency(wk, lat);
    wk->send_hist[from_send / HIST_US < HIST_BUCKETS ? from_send / HIST_US : HIST_BUCKETS - 1]++;
    if (tq_client_response_error(resp, &err) != TQ_OK) {
        if (wk->errors++ < 3) fprintf(stderr, "tq-loadgen: error: %s\n", err.msg);
    } else {
        wk->messages += messages;
    }
    wk->requests++;
    tq_client_response_free(resp);
}

/* Open loop: request k of this connection is due at start + k * interval whatever the
 * answers do; its latency runs from that due time (so a late send counts against the server,
 * no coordinated omission). Between sends the worker waits in ppoll(2) for responses, never
 * past the next due time: a slow response must not hold back the requests due meanwhile (until
 * 2026-12-03 it blocked in tq_client_collect, so one slow answer delayed every later send and
 * the server then received them as one burst; --collect-blocking keeps that for comparison). */
static void run_worker_open(struct worker *wk, struct tq_client *c) {
    struct tq_error err;
    struct req_storage rs;
    memset(&rs, 0, sizeof(rs));
    rs.slots = calloc(g_opt.batch, sizeof(*rs.slots));
    rs.ops = calloc(g_opt.batch, sizeof(*rs.ops));
    unsigned depth = g_opt.depth;
    unsigned *msgs = calloc(depth, sizeof(*msgs));
    uint64_t *late = calloc(depth, sizeof(*late));
    uint64_t interval_us = (uint64_t)(1e6 * g_opt.conns / g_opt.rate);
    if (interval_us == 0) interval_us = 1;
    uint64_t head = 0, tail = 0, due = now_us();
    while (!g_stop || head > tail) {
        uint64_t now = now_us();
        if (!g_stop && now >= due && head - tail < depth) {
            while (!g_stop && now >= due && head - tail < depth) {
                unsigned m = build_request(wk, &rs);
                enum tq_err rc = tq_client_submit(c, &rs.req, NULL, &err);
                if (rc != TQ_OK) die("submit", rc, &err);
                wk->sent_us[head % depth] = due;
                msgs[head % depth] = m;
                late[head % depth] = now - due;
                record_lateness(wk, now - due);
                head++;
                due += interval_us;
            }
            enum tq_err rc = tq_client_flush(c, &err);
            if (rc != TQ_OK) die("flush", rc, &err);
            continue;
        }
        if (head > tail && g_opt.collect_blocking) {
            Ticketq__Response *resp = NULL;
            enum tq_err rc = tq_client_collect(c, &resp, &err);
            if (rc != TQ_OK) die("collect", rc, &err);
            open_collected(wk, resp, wk->sent_us[tail % depth], late[tail % depth],
                           msgs[tail % depth]);
            tail++;
            continue;
        }
        bool got = false;
        while (head > tail) { /* everything already answered, without waiting */
            Ticketq__Response *resp = NULL;
            enum tq_err rc = tq_client_try_collect(c, &resp, &err);
            if (rc != TQ_OK) die("collect", rc, &err);
            if (resp == NULL) break;
            open_collected(wk, resp, wk->sent_us[tail % depth], late[tail % depth],
                           msgs[tail % depth]);
            tail++;
            got = true;
        }
        if (got) continue;
        /* Nothing to collect: wait for the socket, at most until the next send is due (or
         * 50 ms when the window is full or the run is over, to re-check the stop flag). */
        now = now_us();
        uint64_t wait_us = 50000;
        if (!g_stop && head - tail < depth) wait_us = due > now ? due - now : 0;
        if (wait_us > 50000) wait_us = 50000;
        if (wait_us == 0) continue;
        struct pollfd pfd = {.fd = tq_client_fd(c), .events = POLLIN};
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(wait_us * 1000)};
        if (head == tail) {
            nanosleep(&ts, NULL);
        } else {
            (void)ppoll(&pfd, 1, &ts, NULL);
        }
    }
    free(rs.slots);
    free(rs.ops);
    free(msgs);
    free(late);
}

/* One connection of the grouped open loop. */
struct open_conn {
    struct tq_client *c;
    uint64_t head, tail; /* requests sent, collected */
    uint64_t due;        /* when the next request is due (monotonic µs) */
    uint64_t *due_us;    /* due time by in-flight slot (FIFO) */
    uint64_t *late_us;   /* send time minus due time by in-flight slot */
    unsigned *msgs;      /* messages by in-flight slot */
};

/* Drains every response the connection has (buffered or readable now). */
static void open_drain(struct worker *wk, struct open_conn *oc, unsigned depth) {
    struct tq_error err;
    while (oc->head > oc->tail) {
        Ticketq__Response *resp = NULL;
        enum tq_err rc = tq_client_try_collect(oc->c, &resp, &err);
        if (rc != TQ_OK) die("collect", rc, &err);
        if (resp == NULL) return;
        open_collected(wk, resp, oc->due_us[oc->tail % depth], oc->late_us[oc->tail % depth],
                       oc->msgs[oc->tail % depth]);
        oc->tail++;
    }
}

/* Open loop, grouped (the default since 2026-12-03, --open-procs P): this process drives the
 * connections first, first + step, ... Connection j's request k is due at start + (j +
 * k * conns) * interval / conns, so the connections' schedules interleave evenly and the total
 * is R requests/s whatever the answers do; latency runs from the due time, as in
 * run_worker_open. One wake-up serves every connection with a request due, and a connection is
 * read only when ppoll says it is readable. The arrival schedule is the same as with one
 * process per connection; what changes is the tool's own CPU: on the 2-core machine four
 * processes waking every 25 µs used 0.8 of a core at 160k/s and waited 9.4 s for a CPU in an
 * 8 s run (send lateness p99 6-8 ms: most of the client's p99; docs/performance-server.md).
 * With --tick-us T a wake-up comes at most every T µs: everything due by then goes out on a
 * connection in one write and every readable connection is read, so at 160k/s and T = 100 each
 * wake-up carries ~16 requests instead of one (the due times, and so the latency, are as
 * without ticks: the tick's delay is counted). */
static void run_open_group(struct worker *wk, unsigned first, unsigned step) {
    struct tq_error err;
    struct req_storage rs;
    memset(&rs, 0, sizeof(rs));
    rs.slots = calloc(g_opt.batch, sizeof(*rs.slots));
    rs.ops = calloc(g_opt.batch, sizeof(*rs.ops));
    unsigned depth = g_opt.depth, n = 0;
    for (unsigned j = first; j < g_opt.conns; j += step)
        n++;
    struct open_conn *oc = calloc(n, sizeof(*oc));
    struct pollfd *pfd = calloc(n, sizeof(*pfd));
    double interval = 1e6 * g_opt.conns / g_opt.rate; /* per connection, µs */
    uint64_t start = now_us();
    for (unsigned i = 0, j = first; i < n; i++, j += step) {
        oc[i].c = connect_admin();
        oc[i].due_us = calloc(depth, sizeof(uint64_t));
        oc[i].late_us = calloc(depth, sizeof(uint64_t));
        oc[i].msgs = calloc(depth, sizeof(unsigned));
        oc[i].due = start + (uint64_t)(interval * j / g_opt.conns);
    }
    uint64_t *sent = calloc(n, sizeof(uint64_t)); /* requests due so far, per connection */
    /* The schedule ends here (not at the alarm, which may come mid-tick): every request due
     * before it goes out, so the count is exact with or without ticks. */
    uint64_t end_us = start + (uint64_t)g_opt.seconds * 1000000u, last_wake = start;
    for (;;) {
        bool inflight = false, more = false;
        uint64_t next_due = UINT64_MAX;
        for (unsigned i = 0; i < n; i++) {
            struct open_conn *o = &oc[i];
            uint64_t now = now_us();
            bool submitted = false;
            while (o->due < end_us && now >= o->due && o->head - o->tail < depth) {
                unsigned m = build_request(wk, &rs);
                enum tq_err rc = tq_client_submit(o->c, &rs.req, NULL, &err);
                if (rc != TQ_OK) die("submit", rc, &err);
                o->due_us[o->head % depth] = o->due;
                o->late_us[o->head % depth] = now - o->due;
                o->msgs[o->head % depth] = m;
                record_lateness(wk, now - o->due);
                o->head++;
                sent[i]++;
                /* From the start, not by adding a rounded interval: the rate stays exact. */
                o->due = start + (uint64_t)(interval * ((double)(first + i * step) / g_opt.conns +
                                                        (double)sent[i]));
                submitted = true;
            }
            if (submitted) {
                enum tq_err rc = tq_client_flush(o->c, &err);
                if (rc != TQ_OK) die("flush", rc, &err);
            }
            if (o->due < end_us && o->head - o->tail < depth && o->due < next_due)
                next_due = o->due;
            more |= o->due < end_us;
            pfd[i].fd = tq_client_fd(o->c);
            pfd[i].events = o->head > o->tail ? POLLIN : 0;
            pfd[i].revents = 0;
            inflight |= o->head > o->tail;
        }
        if (!more && !inflight) break;
        uint64_t now = now_us();
        /* --tick-us T: no wake-up sooner than T after the last one. The sleep runs to the end
         * of the tick whatever arrives meanwhile (answers wait in the socket, due requests wait
         * for the next send pass), then the ppoll below returns at once with the readable
         * connections, or blocks until the next due time or an answer if neither is there yet.
         * Only when nothing is in flight and nothing falls due within the tick is there
         * nothing to wait for. Until 2026-12-03 the draft left POLLIN off while ticking, so a
         * tool whose every connection had a full window slept the whole 50 ms cap. */
        if (g_opt.tick_us > 0 && now < last_wake + g_opt.tick_us &&
            (inflight || next_due < last_wake + g_opt.tick_us)) {
            sleep_until_us(last_wake + g_opt.tick_us);
            now = now_us();
        }
        uint64_t wait_us = 50000;
        if (next_due != UINT64_MAX) wait_us = next_due > now ? next_due - now : 0;
        if (wait_us > 50000) wait_us = 50000;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(wait_us * 1000)};
        int ready = ppoll(pfd, n, &ts, NULL);
        last_wake = now_us();
        if (ready <= 0) continue;
        for (unsigned i = 0; i < n; i++) {
            if (pfd[i].revents != 0) open_drain(wk, &oc[i], depth);
        }
    }
    for (unsigned i = 0; i < n; i++) {
        tq_client_close(oc[i].c);
        free(oc[i].due_us);
        free(oc[i].late_us);
        free(oc[i].msgs);
    }
    free(sent);
    free(pfd);
    free(oc);
    free(rs.slots);
    free(rs.ops);
}

/* The kernel's count of nanoseconds this process waited on a run queue (schedstat field 2);
 * 0 where the file is missing. On a shared machine this says how much of the lateness is
 * waiting for a CPU. */
static uint64_t run_delay_ns(void) {
    FILE *f = fopen("/proc/self/schedstat", "r");
    if (f == NULL) return 0;
    unsigned long long on_cpu = 0, waited = 0;
    int n = fscanf(f, "%llu %llu", &on_cpu, &waited);
    fclose(f);
    return n == 2 ? (uint64_t)waited : 0;
}

/* Processes the workers run in: one per connection, except the grouped open loop. */
static unsigned open_procs(void) {
    if (g_opt.rate <= 0 || g_opt.collect_blocking) return g_opt.conns;
    return g_opt.open_procs < g_opt.conns ? g_opt.open_procs : g_opt.conns;
}

static void run_worker(struct worker *wk) {
    wk->sent_us = calloc(g_opt.depth, sizeof(uint64_t));
    signal(SIGALRM, on_alarm);
    alarm(g_opt.seconds);
    if (g_opt.rate > 0 && !g_opt.collect_blocking) {
        uint64_t waited = run_delay_ns();
        run_open_group(wk, wk->index, open_procs());
        wk->run_delay_ns = run_delay_ns() - waited;
        free(wk->sent_us);
        return;
    }
    struct tq_client *c = connect_admin();
    if (g_opt.rate > 0) {
        uint64_t waited = run_delay_ns();
        run_worker_open(wk, c);
        wk->run_delay_ns = run_delay_ns() - waited;
        tq_client_close(c);
        free(wk->sent_us);
        return;
    }
    struct tq_error err;
    struct req_storage rs;
    memset(&rs, 0, sizeof(rs));
    rs.slots = calloc(g_opt.batch, sizeof(*rs.slots));
    rs.ops = calloc(g_opt.batch, sizeof(*rs.ops));
    unsigned depth = g_opt.depth, half = depth > 1 ? depth / 2 : 1;
    unsigned *msgs = calloc(depth, sizeof(*msgs));
    uint8_t *is_claim = calloc(depth, 1);
    uint64_t head = 0, tail = 0; /* FIFO of in-flight slots: [tail, head) */
    Ticketq__Reply reply = TICKETQ__REPLY__INIT;
    reply.body = g_body_out;
    for (;;) {
        /* Top up the window. */
        while (head - tail < depth && !g_stop) {
            unsigned m = build_request(wk, &rs);
            enum tq_err rc = tq_client_submit(c, &rs.req, NULL, &err);
            if (rc != TQ_OK) die("submit", rc, &err);
            wk->sent_us[head % depth] = now_us();
            msgs[head % depth] = m;
            is_claim[head % depth] = rs.req.op_case == TICKETQ__REQUEST__OP_CLAIM;
            head++;
        }
        enum tq_err rc = tq_client_flush(c, &err);
        if (rc != TQ_OK) die("flush", rc, &err);
        if (head == tail) break;
        unsigned want = g_stop ? (unsigned)(head - tail) : half;
        for (unsigned i = 0; i < want && tail < head; i++) {
            Ticketq__Response *resp = NULL;
            rc = tq_client_collect(c, &resp, &err);
            if (rc != TQ_OK) die("collect", rc, &err);
            uint64_t lat = now_us() - wk->sent_us[tail % depth];
            uint64_t b = lat / HIST_US;
            wk->hist[b < HIST_BUCKETS ? b : HIST_BUCKETS - 1]++;
            if (tq_client_response_error(resp, &err) != TQ_OK) {
                if (wk->errors++ < 3) fprintf(stderr, "tq-loadgen: error: %s\n", err.msg);
            } else if (is_claim[tail % depth]) {
                /* claim-reply: the reply is a blocking call once the window is drained. */
                struct tq_client_ids ids;
                tq_client_ids_from(resp, &ids);
                is_claim[tail % depth] = 0;
                msgs[tail % depth] = ids.ticket_id != 0 ? 1 : 0;
                if (ids.ticket_id != 0) {
                    tail++;
                    wk->requests++;
                    tq_client_response_free(resp);
                    /* Reply pipelined like any request. */
                    reply.ticket_id = ids.ticket_id;
                    reply.has_agent_id = true;
                    reply.agent_id = g_agent_first;
                    Ticketq__Request rq = TICKETQ__REQUEST__INIT;
                    rq.op_case = TICKETQ__REQUEST__OP_REPLY;
                    rq.reply = &reply;
                    if (head - tail < depth) {
                        rc = tq_client_submit(c, &rq, NULL, &err);
                        if (rc != TQ_OK) die("submit", rc, &err);
                        wk->sent_us[head % depth] = now_us();
                        msgs[head % depth] = 1;
                        is_claim[head % depth] = 0;
                        head++;
                    }
                    continue;
                }
            } else {
                wk->messages += msgs[tail % depth];
            }
            wk->requests++;
            tq_client_response_free(resp);
            tail++;
        }
    }
    tq_client_close(c);
    free(rs.slots);
    free(rs.ops);
    free(msgs);
    free(is_claim);
    free(wk->sent_us);
}

static uint64_t percentile(const uint32_t *hist, uint64_t total, double p) {
    uint64_t want = (uint64_t)((double)total * p), seen = 0;
    for (uint32_t i = 0; i < HIST_BUCKETS; i++) {
        seen += hist[i];
        if (seen > want) return (uint64_t)(i + 1) * HIST_US;
    }
    return (uint64_t)HIST_BUCKETS * HIST_US;
}

/* Cross-check: the server's own counts (setup's customers + acknowledged ingests). */
static void print_server_counts(void) {
    struct tq_client *c = connect_admin();
    Ticketq__Response *resp = NULL;
    struct tq_error err;
    if (tq_client_stats(c, &resp, &err) == TQ_OK && resp->stats != NULL) {
        printf("server: %" PRIu64 " messages, %" PRIu64 " customers, %" PRIu64 " tickets\n",
               resp->stats->messages, resp->stats->customers, resp->stats->tickets);
    }
    tq_client_response_free(resp);
    tq_client_close(c);
}

static void usage_to(FILE *out, int code) {
    fprintf(out,
            "usage: tq-loadgen --addr HOST:PORT --token-file FILE [--conns N] "
            "[--depth D] [--seconds S] [--batch B] [--customers N] [--mixed P] "
            "[--rate R] [--open-procs P] [--tick-us T] [--seed X] [--first-contact P] "
            "[--message-ids] [--pre-create] [--sla] [--first-messages] "
            "[--no-setup --tenant ID --queues Q1,Q2,Q3]\n"
            "--seconds 0: the setup only (customers, each with one ticket and message), then "
            "--first-messages if given\n"
            "--pre-create: setup creates the customers with CustomerCreate (identity channel "
            "n %% 3, ext-<n>; 100 per Batch), without tickets\n"
            "--sla: setup sets a first-reply SLA policy on every priority (24 h, 24 h, 4 h, "
            "1 h), so every new ticket has a running SLA clock\n"
            "--first-messages: after the setup (or with --no-setup), one ingest from each "
            "customer 1..N in order, 100 per Batch: on pre-created customers, one ticket "
            "each\n"
            "--first-contact P: fraction of ingests from new customers (default 0.1)\n"
            "--message-ids: every ingest (setup's too) carries a unique provider message id "
            "(the idempotency key), so the server's idempotency table grows during the run\n"
            "--collect-blocking: open loop waits for each answer in turn, even past the "
            "next due send (the behaviour before 2026-12-03, for comparison; one process "
            "per connection)\n"
            "--open-procs P: the open loop's connections are driven by P processes "
            "(default 1; --open-procs N = --conns N is one process per connection, as "
            "before 2026-12-03 afternoon)\n"
            "--tick-us T: open loop wakes at most every T µs (default 0: at every due "
            "time and every answer); each wake-up sends what is due on a connection in "
            "one write and reads every readable connection; latency still counts from "
            "each request's due time, so the tick's delay (<= T to send, <= T to read) is "
            "inside it (max %u)\n",
            TICK_US_MAX);
    exit(code);
}

static void usage(void) {
    usage_to(stderr, 2);
}

int main(int argc, char **argv) {
    const char *token_file = NULL, *body_in = "/work/shared/peer-body-in.txt",
               *body_out = "/work/shared/peer-body-out.txt";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) usage_to(stdout, 0);
        if (strcmp(a, "--no-setup") == 0) {
            g_opt.setup = false;
            continue;
        }
        if (strcmp(a, "--collect-blocking") == 0) {
            g_opt.collect_blocking = true;
            continue;
        }
        if (strcmp(a, "--message-ids") == 0) {
            g_opt.message_ids = true;
            continue;
        }
        if (strcmp(a, "--pre-create") == 0) {
            g_opt.pre_create = true;
            continue;
        }
        if (strcmp(a, "--first-messages") == 0) {
            g_opt.first_messages = true;
            continue;
        }
        if (strcmp(a, "--sla") == 0) {
            g_opt.sla = true;
            continue;
        }
        if (v == NULL) usage();
        i++;
        if (strcmp(a, "--addr") == 0)
            g_opt.addr = v;
        else if (strcmp(a, "--tick-us") == 0)
            g_opt.tick_us = (unsigned)strtoul(v, NULL, 10);
        else if (strcmp(a, "--open-procs") == 0)
            g_opt.open_procs = (unsigned)strtoul(v, NULL, 10);
        else if (strcmp(a, "--token-file") == 0)
            token_file = v;
        else if (strcmp(a, "--conns") == 0)
            g_opt.conns = (unsigned)strtoul(v, NULL, 10);
        else if (strcmp(a, "--depth") == 0)
            g_opt.depth = (unsigned)strtoul(v, NULL, 10);
        else if (strcmp(a, "--seconds") == 0)
            g_opt.seconds = (unsigned)strtoul(v, NULL, 10);
        else if (strcmp(a, "--batch") == 0)
            g_opt.batch = (unsigned)strtoul(v, NULL, 10);
        else if (strcmp(a, "--customers") == 0)
            g_opt.customers = strtoull(v, NULL, 10);
        else if (strcmp(a, "--mixed") == 0)
            g_opt.mixed = strtod(v, NULL);
        else if (strcmp(a, "--rate") == 0)
            g_opt.rate = strtod(v, NULL);
        else if (strcmp(a, "--first-contact") == 0)
            g_opt.first_contact = strtod(v, NULL);
        else if (strcmp(a, "--seed") == 0)
            g_opt.seed = strtoull(v, NULL, 10);
        else if (strcmp(a, "--body-in") == 0)
            body_in = v;
        else if (strcmp(a, "--body-out") == 0)
            body_out = v;
        else if (strcmp(a, "--tenant") == 0)
            g_tenant = strtoull(v, NULL, 10);
        else if (strcmp(a, "--queues") == 0) {
            if (sscanf(v, "%" SCNu64 ",%" SCNu64 ",%" SCNu64, &g_queue[0], &g_queue[1],
                       &g_queue[2]) != 3)
                usage();
        } else
            usage();
    }
    if (token_file == NULL || g_opt.conns == 0 || g_opt.open_procs == 0 || g_opt.depth == 0 ||
        g_opt.batch == 0 || g_opt.customers == 0 || g_opt.first_contact < 0 ||
        g_opt.first_contact > 1 || g_opt.tick_us > TICK_US_MAX ||
        (g_opt.tick_us > 0 && (g_opt.rate <= 0 || g_opt.collect_blocking)))
        usage();
    g_mid_run = now_us();
    read_file(token_file, g_opt.token, sizeof(g_opt.token));
    read_file(body_in, g_body_in, sizeof(g_body_in));
    read_file(body_out, g_body_out, sizeof(g_body_out));
    if (g_opt.setup) setup();
    if (g_opt.first_messages) { /* the tickets of customers that exist (--pre-create) */
        if (g_tenant == 0 || g_queue[0] == 0) usage();
        struct tq_client *c = connect_admin();
        send_each(c, SEND_INGEST, "first messages");
        Ticketq__Response *due = NULL;
        struct tq_error err;
        enum tq_err rc = tq_client_sla_nearest(c, 1000, &due, &err);
        if (rc != TQ_OK) die("sla_nearest", rc, &err);
        size_t n_due = due->sla_nearest != NULL ? due->sla_nearest->n_due : 0, tickets = 0;
        uint64_t seen[1000];
        for (size_t i = 0; i < n_due && i < 1000; i++) { /* distinct tickets, at most 1000 */
            uint64_t id = due->sla_nearest->due[i]->ticket_id;
            size_t k = 0;
            while (k < tickets && seen[k] != id)
                k++;
            if (k == tickets) seen[tickets++] = id;
        }
        printf("sla: %zu running clocks on %zu tickets listed (limit 1000)\n", n_due, tickets);
        tq_client_response_free(due);
        tq_client_close(c);
    }
    if (g_opt.seconds == 0) { /* setup and first messages only */
        print_server_counts();
        return 0;
    }
    if (g_opt.mixed > 0) g_opt.batch = 1;
    if (g_opt.rate > 0) g_opt.mixed = 0; /* open loop: ingest only */

    /* Workers are processes writing their results into one shared mapping. */
    size_t map_bytes = g_opt.conns * sizeof(struct worker);
    struct worker *wk =
        mmap(NULL, map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (wk == MAP_FAILED) {
        perror("tq-loadgen: mmap");
        return 2;
    }
    fflush(stdout);
    pid_t *pids = calloc(g_opt.conns, sizeof(pid_t)); /* private: children share wk */
    uint64_t t0 = now_us();
    unsigned procs = open_procs();
    for (unsigned i = 0; i < procs; i++) {
        wk[i].index = i;
        wk[i].rng = g_opt.seed * 1000003u + i;
        pids[i] = fork();
        if (pids[i] == 0) {
            g_mid_proc = i + 1;
            run_worker(&wk[i]);
            _exit(0);
        }
    }
    int failed = 0;
    for (unsigned i = 0; i < procs; i++) {
        int st = 0;
        if (waitpid(pids[i], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) failed++;
    }
    uint32_t *hist = calloc(HIST_BUCKETS, sizeof(uint32_t));
    uint64_t reqs = 0, msgs = 0, errs = (uint64_t)failed;
    for (unsigned i = 0; i < g_opt.conns; i++) {
        reqs += wk[i].requests;
        msgs += wk[i].messages;
        errs += wk[i].errors;
        for (uint32_t b = 0; b < HIST_BUCKETS; b++)
            hist[b] += wk[i].hist[b];
    }
    double secs = (double)(now_us() - t0) / 1e6;
    uint64_t total = 0;
    for (uint32_t b = 0; b < HIST_BUCKETS; b++)
        total += hist[b];
    if (g_opt.rate > 0) printf("open loop at %.0f requests/s: ", g_opt.rate);
    printf("conns %u depth %u batch %u mixed %.2f: %.0f requests/s, %.0f messages/s, "
           "p50 %" PRIu64 " us, p99 %" PRIu64 " us, errors %" PRIu64 " (%.1f s)\n",
           g_opt.conns, g_opt.depth, g_opt.batch, g_opt.mixed, (double)reqs / secs,
           (double)msgs / secs, percentile(hist, total, 0.50), percentile(hist, total, 0.99), errs,
           secs);
    if (g_opt.rate > 0) {
        uint64_t late_max = 0, waited_ns = 0;
        for (unsigned i = 0; i < g_opt.conns; i++)
            waited_ns += wk[i].run_delay_ns;
        printf("latency p99.9 %" PRIu64 " us", percentile(hist, total, 0.999));
        memset(hist, 0, HIST_BUCKETS * sizeof(uint32_t));
        for (unsigned i = 0; i < g_opt.conns; i++)
            for (uint32_t b = 0; b < HIST_BUCKETS; b++)
                hist[b] += wk[i].send_hist[b];
        printf("; from the send instead of the due time (not the figure): p50 %" PRIu64
               " us, p99 %" PRIu64 " us\n",
               percentile(hist, total, 0.50), percentile(hist, total, 0.99));
        memset(hist, 0, HIST_BUCKETS * sizeof(uint32_t));
        for (unsigned i = 0; i < g_opt.conns; i++) {
            for (uint32_t b = 0; b < HIST_BUCKETS; b++)
                hist[b] += wk[i].late_hist[b];
            if (wk[i].late_max_us > late_max) late_max = wk[i].late_max_us;
        }
        printf("send lateness (send - due): p50 %" PRIu64 " us, p99 %" PRIu64 " us, p99.9 %" PRIu64
               " us, max %" PRIu64 " us; workers waited %.2f s for a CPU\n",
               percentile(hist, total, 0.50), percentile(hist, total, 0.99),
               percentile(hist, total, 0.999), late_max, (double)waited_ns / 1e9);
    }
    print_server_counts();
    free(hist);
    free(pids);
    munmap(wk, map_bytes);
    return errs == 0 ? 0 : 1;
}
