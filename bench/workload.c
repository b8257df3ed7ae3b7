/* bench/workload.c: the deterministic input generator (see workload.h for the contract).
 *
 * Owns: the per-client PRNG streams, the shapes of every workload, the initial state as pure
 * functions of an index, the two 300-byte bodies (copied byte for byte from
 * bench/peers/peer-body-{in,out}.txt; tests/bench/test_workload.c checks they still match), and
 * the peak rate schedule with its closed-form arrival times.
 *
 * Invariants: a stream depends only on (seed, client_index, customers, backlog, kind); nothing
 * here reads a clock or allocates. Every op a stream produces is valid for the initial state
 * (customer ids in 1..NCUST, ticket ids in 1..BACKLOG, queues 0..2, agents 1..500).
 */
#include "workload.h"

#include "tq_assert.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const char tq_workload_body_in[TQ_WORKLOAD_BODY_BYTES + 1] =
    "Hi, I ordered a winter jacket (order #SO-2024-118734) during the Black Friday sale and the"
    " tracking page has said \"label created\" for five days now. Could you check with the carr"
    "ier and tell me when it will actually ship? I need it before the 20th. Also, can I still c"
    "hange the size from M to L? Than";

const char tq_workload_body_out[TQ_WORKLOAD_BODY_BYTES + 1] =
    "Hello, thanks for reaching out and sorry for the wait! I checked with the carrier: your pa"
    "rcel was collected this morning and should arrive within 3 business days, well before the "
    "20th. The size can no longer be changed on this order, but free exchanges are open for 60 "
    "days. Anything else I can help";

/* ---- PRNG -------------------------------------------------------------------------------- */

uint64_t tq_workload_rand(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t tq_workload_uniform(uint64_t *state, uint64_t n) {
    TQ_ASSERT(n > 0);
    return tq_workload_rand(state) % n;
}

/* ---- names ------------------------------------------------------------------------------- */

static const char *const workload_names[TQ_WORKLOAD_KIND_COUNT] = {
    "ingest", "claim-reply", "mixed", "dashboard", "fanout", "peak",
};
static const char *const op_names[TQ_OP_KIND_COUNT] = {
    "ingest", "claim_reply", "get_ticket", "list_queue", "sla_nearest",
};

const char *tq_workload_kind_name(enum tq_workload_kind kind) {
    TQ_ASSERT((unsigned)kind < TQ_WORKLOAD_KIND_COUNT);
    return workload_names[kind];
}

bool tq_workload_kind_parse(const char *name, enum tq_workload_kind *out) {
    for (unsigned i = 0; i < TQ_WORKLOAD_KIND_COUNT; i++) {
        if (strcmp(name, workload_names[i]) == 0) {
            *out = (enum tq_workload_kind)i;
            return true;
        }
    }
    if (strcmp(name, "fan-out") == 0) {
        *out = TQ_WORKLOAD_FANOUT;
        return true;
    }
    return false;
}

const char *tq_op_kind_name(enum tq_op_kind kind) {
    TQ_ASSERT((unsigned)kind < TQ_OP_KIND_COUNT);
    return op_names[kind];
}

/* ---- initial state ----------------------------------------------------------------------- */

uint64_t tq_workload_sla_ms(uint32_t priority) {
    static const uint64_t sla_ms[TQ_WORKLOAD_PRIORITIES] = {3600000u, 14400000u, 86400000u};
    TQ_ASSERT(priority < TQ_WORKLOAD_PRIORITIES);
    return sla_ms[priority];
}

void tq_workload_customer(uint64_t i, struct tq_workload_customer *out) {
    TQ_ASSERT(i >= 1);
    out->id = i;
    out->channel = (uint8_t)(i % 3);
    out->tier = (uint8_t)((i / 3) % 3);
    snprintf(out->external_id, sizeof(out->external_id), "ext-%llu", (unsigned long long)i);
}

void tq_workload_ticket(uint64_t t, uint64_t customers, struct tq_workload_ticket *out) {
    TQ_ASSERT(t >= 1);
    TQ_ASSERT(customers >= 1);
    uint64_t c = ((t - 1) % customers) + 1;
    out->id = t;
    out->customer_id = c;
    out->queue = (uint8_t)(c % 3);
    out->priority = (uint8_t)((c / 3) % 3);
    out->created_ms = TQ_WORKLOAD_EPOCH_MS + t;
    out->deadline_ms = out->created_ms + tq_workload_sla_ms(out->priority);
    out->seq = t;
}

uint64_t tq_workload_customer_newest_ticket(uint64_t i, uint64_t customers, uint64_t backlog) {
    TQ_ASSERT(i >= 1 && i <= customers);
    if (i > backlog) return 0;
    uint64_t t = i + customers * ((backlog - i) / customers);
    TQ_ASSERT(t <= backlog && t + customers > backlog);
    return t;
}

/* ---- streams ----------------------------------------------------------------------------- */

void tq_workload_options_default(struct tq_workload_options *options) {
    if (options->customers == 0) options->customers = TQ_WORKLOAD_CUSTOMERS_DEFAULT;
    if (options->backlog == 0) options->backlog = TQ_WORKLOAD_BACKLOG_DEFAULT;
}

void tq_workload_init(struct tq_workload *workload, const struct tq_workload_options *options,
                      uint32_t client_index) {
    TQ_ASSERT(options->customers > 0);
    TQ_ASSERT((unsigned)options->kind < TQ_WORKLOAD_KIND_COUNT);
    workload->options = *options;
    workload->client_index = client_index;
    /* Mix seed and client separately: states that differ by a multiple of the splitmix
     * increment would give shifted copies of one stream. */
    uint64_t seed_state = options->seed;
    uint64_t client_state = 0x632be59bd9b4e019ull + client_index;
    workload->rng = tq_workload_rand(&seed_state) ^ tq_workload_rand(&client_state);
    workload->ops_generated = 0;
}

/* A draw with probability permille/1000. */
static bool chance_permille(uint64_t *rng, uint32_t permille) {
    return tq_workload_uniform(rng, 1000) < permille;
}

/* Writes "ext-<n>" (what snprintf's "ext-%llu" writes) into out. By hand because snprintf cost
 * ~800 instructions a call, ~15% of ticketq-bench's own per operation in the mixed workload
 * (docs/performance-server.md, "The mixed cell's CPU per unit"); the driver shares the cores
 * with the server it measures. tests/bench/test_workload.c compares it with snprintf. */
static void format_external_id(char out[TQ_WORKLOAD_EXTERNAL_ID_BYTES_MAX], uint64_t n) {
    _Static_assert(TQ_WORKLOAD_EXTERNAL_ID_BYTES_MAX >= 4 + 20 + 1, "ext- + 20 digits + NUL");
    char digits[20];
    size_t count = 0;
    do {
        digits[count++] = (char)('0' + n % 10);
        n /= 10;
    } while (n != 0);
    TQ_ASSERT(count <= sizeof(digits));
    memcpy(out, "ext-", 4);
    for (size_t i = 0; i < count; i++)
        out[4 + i] = digits[count - 1 - i];
    out[4 + count] = '\0';
}

void tq_workload_make_ingest(uint64_t *rng, uint64_t customers, struct tq_bench_op *op) {
    memset(op, 0, sizeof(*op));
    op->kind = TQ_OP_INGEST;
    if (chance_permille(rng, TQ_WORKLOAD_FIRST_CONTACT_PERMILLE)) {
        op->first_contact = true;
        op->customer_n =
            TQ_WORKLOAD_NEW_CUSTOMER_MIN +
            tq_workload_uniform(rng, TQ_WORKLOAD_NEW_CUSTOMER_END - TQ_WORKLOAD_NEW_CUSTOMER_MIN);
        op->channel = (uint8_t)tq_workload_uniform(rng, TQ_WORKLOAD_QUEUES);
    } else {
        op->customer_n = 1 + tq_workload_uniform(rng, customers);
        op->channel = (uint8_t)(op->customer_n % 3);
    }
    op->tier = (uint8_t)((op->customer_n / 3) % 3);
    op->queue = op->channel;
    format_external_id(op->external_id, op->customer_n);
    op->body = tq_workload_body_in;
    op->body_bytes = TQ_WORKLOAD_BODY_BYTES;
}

void tq_workload_make_claim_reply(uint64_t *rng, struct tq_bench_op *op) {
    memset(op, 0, sizeof(*op));
    op->kind = TQ_OP_CLAIM_REPLY;
    op->queue = (uint8_t)tq_workload_uniform(rng, TQ_WORKLOAD_QUEUES);
    op->agent = 1 + (uint32_t)tq_workload_uniform(rng, TQ_WORKLOAD_AGENTS);
    op->body = tq_workload_body_out;
    op->body_bytes = TQ_WORKLOAD_BODY_BYTES;
}

static void make_dashboard_read(uint64_t *rng, uint64_t backlog, struct tq_bench_op *op) {
    memset(op, 0, sizeof(*op));
    uint64_t r = tq_workload_uniform(rng, 4);
    if (r < 2) {
        op->kind = TQ_OP_GET_TICKET;
        op->ticket_id = 1 + tq_workload_uniform(rng, backlog > 0 ? backlog : 1);
    } else if (r == 2) {
        op->kind = TQ_OP_LIST_QUEUE;
        op->queue = (uint8_t)tq_workload_uniform(rng, TQ_WORKLOAD_QUEUES);
    } else {
        op->kind = TQ_OP_SLA_NEAREST;
    }
}

void tq_workload_next(struct tq_workload *workload, struct tq_bench_op *op) {
    uint64_t *rng = &workload->rng;
    uint64_t customers = workload->options.customers;
    switch (workload->options.kind) {
    case TQ_WORKLOAD_INGEST:
    case TQ_WORKLOAD_FANOUT: tq_workload_make_ingest(rng, customers, op); break;
    case TQ_WORKLOAD_CLAIM_REPLY: tq_workload_make_claim_reply(rng, op); break;
    case TQ_WORKLOAD_MIXED:
    case TQ_WORKLOAD_PEAK:
        if (chance_permille(rng, 800)) {
            tq_workload_make_ingest(rng, customers, op);
        } else {
            tq_workload_make_claim_reply(rng, op);
        }
        break;
    case TQ_WORKLOAD_DASHBOARD:
        if (chance_permille(rng, 500)) {
            tq_workload_make_ingest(rng, customers, op);
        } else {
            make_dashboard_read(rng, workload->options.backlog, op);
        }
        break;
    }
    workload->ops_generated++;
    TQ_ASSERT((unsigned)op->kind < TQ_OP_KIND_COUNT);
}

/* ---- peak schedule ----------------------------------------------------------------------- */

/* The schedule as five linear pieces: [start, start + len) with the rate going r0 -> r1. */
struct piece {
    double start, len, r0, r1;
};

static void peak_pieces(const struct tq_peak_schedule *s, struct piece p[5]) {
    TQ_ASSERT(s->base_rate > 0.0);
    TQ_ASSERT(s->factor >= 1.0);
    double b = s->base_rate, top = s->base_rate * s->factor;
    double t = 0.0;
    p[0] = (struct piece){t, s->warmup_s, b, b};
    t += s->warmup_s;
    p[1] = (struct piece){t, s->ramp_s, b, top};
    t += s->ramp_s;
    p[2] = (struct piece){t, s->spike_s, top, top};
    t += s->spike_s;
    p[3] = (struct piece){t, s->ramp_s, top, b};
    t += s->ramp_s;
    p[4] = (struct piece){t, INFINITY, b, b};
}

static double piece_rate(const struct piece *p, double x) {
    if (p->r0 == p->r1) return p->r0;
    return p->r0 + (p->r1 - p->r0) * x / p->len;
}

/* Arrivals in the first x seconds of a piece. */
static double piece_arrivals(const struct piece *p, double x) {
    if (p->len == 0.0) return 0.0;
    if (p->r0 == p->r1) return p->r0 * x;
    return p->r0 * x + 0.5 * (p->r1 - p->r0) / p->len * x * x;
}

double tq_peak_rate(const struct tq_peak_schedule *schedule, double t_s) {
    struct piece p[5];
    peak_pieces(schedule, p);
    for (int i = 0; i < 5; i++) {
        if (t_s < p[i].start + p[i].len) return piece_rate(&p[i], t_s - p[i].start);
    }
    return schedule->base_rate;
}

double tq_peak_arrivals(const struct tq_peak_schedule *schedule, double t_s) {
    struct piece p[5];
    peak_pieces(schedule, p);
    double total = 0.0;
    for (int i = 0; i < 5; i++) {
        if (t_s < p[i].start + p[i].len) return total + piece_arrivals(&p[i], t_s - p[i].start);
        total += piece_arrivals(&p[i], p[i].len);
    }
    return total;
}

double tq_peak_arrival_time(const struct tq_peak_schedule *schedule, uint64_t k) {
    struct piece p[5];
    peak_pieces(schedule, p);
    double want = (double)k;
    for (int i = 0; i < 5; i++) {
        double in_piece = isinf(p[i].len) ? INFINITY : piece_arrivals(&p[i], p[i].len);
        if (want < in_piece) {
            double x;
            if (p[i].r0 == p[i].r1) {
                x = want / p[i].r0;
            } else {
                /* Solve r0 x + a/2 x^2 = want for the root inside the piece. */
                double a = (p[i].r1 - p[i].r0) / p[i].len;
                double disc = p[i].r0 * p[i].r0 + 2.0 * a * want;
                x = (-p[i].r0 + sqrt(disc > 0.0 ? disc : 0.0)) / a;
            }
            if (x < 0.0) x = 0.0;
            if (x > p[i].len) x = p[i].len;
            return p[i].start + x;
        }
        want -= in_piece;
    }
    TQ_UNREACHABLE();
}
