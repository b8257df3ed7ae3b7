/* bench/workload.h: the deterministic inputs of ticketq-bench, identical for every system.
 *
 * Implements the peer workloads of docs/performance.md (from /work/shared/PEER-WORKLOADS.md):
 * the initial state (customers, backlog) as pure functions of an index, and per-client input
 * streams drawn from a seeded PRNG (default seed 42). A system driver turns a struct
 * tq_bench_op into its own request; it never draws random numbers itself, so two systems fed
 * the same (seed, client) see the same sequence of operations.
 *
 * PRNG: splitmix64 (next() adds 0x9e3779b97f4a7c15 to the state and mixes it). Client c of a
 * run with seed s starts from state next(s) ^ next(0x632be59bd9b4e019 + c), each next() applied
 * to a fresh state holding that value. uniform(n) = next() % n (bias < 2^-24 for n <= 1e12,
 * irrelevant here, and simple to reproduce in any language).
 */
#ifndef TQ_BENCH_WORKLOAD_H
#define TQ_BENCH_WORKLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TQ_WORKLOAD_SEED_DEFAULT           42u
#define TQ_WORKLOAD_CUSTOMERS_DEFAULT      100000u
#define TQ_WORKLOAD_BACKLOG_DEFAULT        1500000u
#define TQ_WORKLOAD_QUEUES                 3u /* queue = channel 0..2 */
#define TQ_WORKLOAD_PRIORITIES             3u /* 0 is the highest */
#define TQ_WORKLOAD_AGENTS                 500u
#define TQ_WORKLOAD_BODY_BYTES             300u /* both bodies are exactly 300 bytes */
#define TQ_WORKLOAD_FIRST_CONTACT_PERMILLE 100u
#define TQ_WORKLOAD_NEW_CUSTOMER_MIN       1000000000ull /* first contacts: n in [1e9, 1e12) */
#define TQ_WORKLOAD_NEW_CUSTOMER_END       1000000000000ull
#define TQ_WORKLOAD_EPOCH_MS               1733011200000ull /* 2024-12-01T00:00Z */
#define TQ_WORKLOAD_EXTERNAL_ID_BYTES_MAX  32               /* "ext-" + 20 digits + NUL fits */
#define TQ_WORKLOAD_DASHBOARD_PAGE         50u              /* queue top-N and SLA-nearest N */
#define TQ_WORKLOAD_DASHBOARD_MESSAGES     20u              /* messages returned with a ticket */
#define TQ_WORKLOAD_PEAK_FACTOR            20u

extern const char tq_workload_body_in[TQ_WORKLOAD_BODY_BYTES + 1];
extern const char tq_workload_body_out[TQ_WORKLOAD_BODY_BYTES + 1];

enum tq_workload_kind {
    TQ_WORKLOAD_INGEST = 0,
    TQ_WORKLOAD_CLAIM_REPLY = 1,
    TQ_WORKLOAD_MIXED = 2,     /* 80% ingest, 20% claim-reply */
    TQ_WORKLOAD_DASHBOARD = 3, /* 50% ingest, 50% reads (get 50%, queue top 25%, SLA 25%) */
    TQ_WORKLOAD_FANOUT = 4,    /* ingest while subscribers follow the event stream */
    TQ_WORKLOAD_PEAK = 5,      /* mixed, open loop, rate ramps base -> 20x base -> base */
};
#define TQ_WORKLOAD_KIND_COUNT 6

enum tq_op_kind {
    TQ_OP_INGEST = 0,
    TQ_OP_CLAIM_REPLY = 1,
    TQ_OP_GET_TICKET = 2,  /* a ticket with its last 20 messages */
    TQ_OP_LIST_QUEUE = 3,  /* a queue's top 50 (claim order) */
    TQ_OP_SLA_NEAREST = 4, /* the 50 queued tickets nearest their SLA deadline */
};
#define TQ_OP_KIND_COUNT 5

/* One operation. Fields not used by a kind are zero. */
struct tq_bench_op {
    enum tq_op_kind kind;
    uint8_t channel;     /* ingest: 0..2 (also the queue a new ticket goes to) */
    uint8_t tier;        /* ingest: the customer's tier = priority, (n / 3) % 3 */
    uint8_t queue;       /* claim-reply, list-queue: 0..2 */
    bool first_contact;  /* ingest: n is a new customer */
    uint32_t agent;      /* claim-reply: 1..500 */
    uint64_t customer_n; /* ingest: n */
    uint64_t ticket_id;  /* get-ticket: 1..backlog */
    char external_id[TQ_WORKLOAD_EXTERNAL_ID_BYTES_MAX]; /* ingest: "ext-<n>" */
    const char *body; /* ingest: body_in; claim-reply: body_out; static storage */
    uint32_t body_bytes;
};

struct tq_workload_options {
    enum tq_workload_kind kind;
    uint64_t seed;      /* 0 is a valid seed; the bench defaults to 42 */
    uint64_t customers; /* NCUST, > 0 */
    uint64_t backlog;   /* BACKLOG, >= customers is not required */
};

/* Per-client generator state (plain value: copy it to fork a stream). */
struct tq_workload {
    struct tq_workload_options options;
    uint32_t client_index;
    uint64_t rng;
    uint64_t ops_generated;
};

/* Initial state, as pure functions of an index (1-based), identical for every system. */
struct tq_workload_customer {
    uint64_t id;     /* i */
    uint8_t channel; /* i % 3 */
    uint8_t tier;    /* (i / 3) % 3 */
    char external_id[TQ_WORKLOAD_EXTERNAL_ID_BYTES_MAX];
};
struct tq_workload_ticket {
    uint64_t id;          /* t */
    uint64_t customer_id; /* ((t - 1) % NCUST) + 1 */
    uint8_t queue;        /* the customer's channel */
    uint8_t priority;     /* the customer's tier */
    uint64_t created_ms;  /* EPOCH + t */
    uint64_t deadline_ms; /* created + {1 h, 4 h, 24 h}[priority] */
    uint64_t seq;         /* enqueue order = t */
};

/* Fills defaults (customers, backlog, seed 42) into a zeroed options struct's zero fields
 * except seed, which the caller sets explicitly. */
void tq_workload_options_default(struct tq_workload_options *options);

/* Starts client client_index's stream. options->customers must be > 0. */
void tq_workload_init(struct tq_workload *workload, const struct tq_workload_options *options,
                      uint32_t client_index);

/* The next operation of this client's stream (deterministic). */
void tq_workload_next(struct tq_workload *workload, struct tq_bench_op *op);

/* Ingest / claim-reply inputs on their own, for drivers mixing shapes themselves. */
void tq_workload_make_ingest(uint64_t *rng, uint64_t customers, struct tq_bench_op *op);
void tq_workload_make_claim_reply(uint64_t *rng, struct tq_bench_op *op);

void tq_workload_customer(uint64_t i, struct tq_workload_customer *out);
void tq_workload_ticket(uint64_t t, uint64_t customers, struct tq_workload_ticket *out);

/* SLA target of a priority (0..2): 1 h, 4 h, 24 h in ms. */
uint64_t tq_workload_sla_ms(uint32_t priority);

/* The newest backlog ticket of customer i (0 when the customer has none). */
uint64_t tq_workload_customer_newest_ticket(uint64_t i, uint64_t customers, uint64_t backlog);

/* splitmix64 step and uniform draw in [0, n) (n > 0). */
uint64_t tq_workload_rand(uint64_t *state);
uint64_t tq_workload_uniform(uint64_t *state, uint64_t n);

/* Names: "ingest", "claim-reply", ...; parse returns false on an unknown name. */
const char *tq_workload_kind_name(enum tq_workload_kind kind);
bool tq_workload_kind_parse(const char *name, enum tq_workload_kind *out);
const char *tq_op_kind_name(enum tq_op_kind kind);

/* ---- peak: the rate schedule ------------------------------------------------------------ */

/* base for warmup_s, linear ramp to base * factor over ramp_s, hold spike_s, linear ramp down
 * over ramp_s, then base until the end. */
struct tq_peak_schedule {
    double base_rate; /* ops/s, > 0 */
    double factor;    /* spike = base * factor (TQ_WORKLOAD_PEAK_FACTOR) */
    double warmup_s;
    double ramp_s;
    double spike_s;
};

/* Intended arrival rate (ops/s) at time t_s seconds after the start. */
double tq_peak_rate(const struct tq_peak_schedule *schedule, double t_s);

/* Number of arrivals intended in [0, t_s): the integral of the rate. */
double tq_peak_arrivals(const struct tq_peak_schedule *schedule, double t_s);

/* Time (s) of the k-th arrival (k >= 0): the t with tq_peak_arrivals(t) == k. Arrival times are
 * a pure function of k, so a late sender never shifts later arrivals (no coordinated omission). */
double tq_peak_arrival_time(const struct tq_peak_schedule *schedule, uint64_t k);

#endif
