/* tests/bench/test_workload.c: the deterministic input generator.
 *
 * Method: generate long streams with a random seed (printed; TQ_SEED= reproduces) and check
 * determinism byte for byte, then the distributions PEER-WORKLOADS.md specifies, the initial
 * state formulas against brute force, the bodies against bench/peers/peer-body-{in,out}.txt, and
 * the peak schedule's closed-form arrival times against its integral. Invariants checked: same
 * (seed, client) -> same ops; different client -> different ops; first contact 10%; mixed
 * 80/20; dashboard 50% ingest; every field in range. A share is checked within 6 standard
 * deviations of its binomial sampling error (share_ok): a fixed +-1% was 3 sigma for the channel
 * of a first contact (~20,000 draws), so a correct generator failed about one run in 150; at 6
 * sigma that is ~1e-9, while a share off by 2 points still fails every check (6 sigma is
 * 0.5-2.0 points here).
 */
#include "workload.h"

#include "tq_test.h"

#include <math.h>

#define STREAM_OPS 20000u
#define SAMPLE_OPS 200000u

/* count of n draws is a share p of them, within 6 binomial standard deviations. */
static bool share_ok(uint64_t count, uint64_t n, double p) {
    double sigma = sqrt(p * (1.0 - p) / (double)n);
    return fabs((double)count / (double)n - p) <= 6.0 * sigma;
}

static void check_determinism(uint64_t seed) {
    for (int kind = 0; kind < TQ_WORKLOAD_KIND_COUNT; kind++) {
        struct tq_workload_options o = {.kind = (enum tq_workload_kind)kind, .seed = seed};
        tq_workload_options_default(&o);
        struct tq_workload w1, w2, w3;
        tq_workload_init(&w1, &o, 7);
        tq_workload_init(&w2, &o, 7);
        tq_workload_init(&w3, &o, 8);
        size_t same_as_other_client = 0;
        for (uint32_t i = 0; i < STREAM_OPS; i++) {
            struct tq_bench_op a, b, c;
            tq_workload_next(&w1, &a);
            tq_workload_next(&w2, &b);
            tq_workload_next(&w3, &c);
            TQ_CHECK_MEM_EQ(&a, &b, sizeof(a));
            /* Reads without arguments (SLA-nearest) are identical in every stream. */
            bool comparable = a.kind == TQ_OP_INGEST || a.kind == TQ_OP_CLAIM_REPLY;
            if (comparable && memcmp(&a, &c, sizeof(a)) == 0) same_as_other_client++;
        }
        /* Claim-reply ops repeat often by chance (3 queues x 500 agents); ingest ops rarely. */
        TQ_CHECK_UINT_OP(same_as_other_client, <, STREAM_OPS / 100);
        TQ_CHECK_UEQ(w1.ops_generated, STREAM_OPS);
    }
}

static void check_ingest_op(const struct tq_bench_op *op, uint64_t customers) {
    TQ_CHECK_EQ(op->kind, TQ_OP_INGEST);
    if (op->first_contact) {
        TQ_CHECK_UINT_OP(op->customer_n, >=, TQ_WORKLOAD_NEW_CUSTOMER_MIN);
        TQ_CHECK_UINT_OP(op->customer_n, <, TQ_WORKLOAD_NEW_CUSTOMER_END);
    } else {
        TQ_CHECK_UINT_OP(op->customer_n, >=, 1);
        TQ_CHECK_UINT_OP(op->customer_n, <=, customers);
        TQ_CHECK_UEQ(op->channel, op->customer_n % 3);
    }
    TQ_CHECK_UINT_OP(op->channel, <, 3);
    TQ_CHECK_UEQ(op->queue, op->channel);
    TQ_CHECK_UEQ(op->tier, (op->customer_n / 3) % 3);
    char want[32];
    snprintf(want, sizeof(want), "ext-%llu", (unsigned long long)op->customer_n);
    TQ_CHECK_STR_EQ(op->external_id, want);
    TQ_CHECK(op->body == tq_workload_body_in);
    TQ_CHECK_UEQ(op->body_bytes, 300);
}

static void check_distributions(uint64_t seed) {
    struct tq_workload_options o = {.kind = TQ_WORKLOAD_INGEST, .seed = seed, .customers = 1000};
    tq_workload_options_default(&o);
    struct tq_workload w;
    tq_workload_init(&w, &o, 0);
    uint64_t first = 0, new_channel[3] = {0, 0, 0};
    for (uint32_t i = 0; i < SAMPLE_OPS; i++) {
        struct tq_bench_op op;
        tq_workload_next(&w, &op);
        check_ingest_op(&op, 1000);
        if (op.first_contact) {
            first++;
            new_channel[op.channel]++;
        }
    }
    TQ_CHECK(share_ok(first, SAMPLE_OPS, 0.10));
    for (int c = 0; c < 3; c++)
        TQ_CHECK(share_ok(new_channel[c], first, 1.0 / 3));

    o.kind = TQ_WORKLOAD_MIXED;
    tq_workload_init(&w, &o, 3);
    uint64_t ingest = 0, queue[3] = {0, 0, 0};
    for (uint32_t i = 0; i < SAMPLE_OPS; i++) {
        struct tq_bench_op op;
        tq_workload_next(&w, &op);
        if (op.kind == TQ_OP_INGEST) {
            ingest++;
            check_ingest_op(&op, 1000);
        } else {
            TQ_CHECK_EQ(op.kind, TQ_OP_CLAIM_REPLY);
            TQ_CHECK_UINT_OP(op.queue, <, 3);
            TQ_CHECK_UINT_OP(op.agent, >=, 1);
            TQ_CHECK_UINT_OP(op.agent, <=, 500);
            TQ_CHECK(op.body == tq_workload_body_out);
            queue[op.queue]++;
        }
    }
    TQ_CHECK(share_ok(ingest, SAMPLE_OPS, 0.8));
    uint64_t claims = SAMPLE_OPS - ingest;
    for (int q = 0; q < 3; q++)
        TQ_CHECK(share_ok(queue[q], claims, 1.0 / 3));

    o.kind = TQ_WORKLOAD_DASHBOARD;
    o.backlog = 5000;
    tq_workload_init(&w, &o, 1);
    uint64_t kinds[TQ_OP_KIND_COUNT] = {0};
    for (uint32_t i = 0; i < SAMPLE_OPS; i++) {
        struct tq_bench_op op;
        tq_workload_next(&w, &op);
        kinds[op.kind]++;
        if (op.kind == TQ_OP_GET_TICKET) {
            TQ_CHECK_UINT_OP(op.ticket_id, >=, 1);
            TQ_CHECK_UINT_OP(op.ticket_id, <=, 5000);
        }
    }
    TQ_CHECK(share_ok(kinds[TQ_OP_INGEST], SAMPLE_OPS, 0.5));
    TQ_CHECK(share_ok(kinds[TQ_OP_GET_TICKET], SAMPLE_OPS, 0.25));
    TQ_CHECK_UEQ(kinds[TQ_OP_CLAIM_REPLY], 0);
}

static void check_initial_state(void) {
    const uint64_t customers = 37, backlog = 1000;
    for (uint64_t i = 1; i <= customers; i++) {
        struct tq_workload_customer c;
        tq_workload_customer(i, &c);
        TQ_CHECK_UEQ(c.channel, i % 3);
        TQ_CHECK_UEQ(c.tier, (i / 3) % 3);
        uint64_t newest = 0;
        for (uint64_t t = 1; t <= backlog; t++) {
            struct tq_workload_ticket tk;
            tq_workload_ticket(t, customers, &tk);
            if (tk.customer_id == i) newest = t;
        }
        TQ_CHECK_UEQ(tq_workload_customer_newest_ticket(i, customers, backlog), newest);
    }
    struct tq_workload_ticket tk;
    tq_workload_ticket(5, 3, &tk);
    TQ_CHECK_UEQ(tk.customer_id, 2); /* ((5 - 1) % 3) + 1 */
    TQ_CHECK_UEQ(tk.queue, 2);
    TQ_CHECK_UEQ(tk.priority, 0);
    TQ_CHECK_UEQ(tk.created_ms, TQ_WORKLOAD_EPOCH_MS + 5);
    TQ_CHECK_UEQ(tk.deadline_ms, tk.created_ms + 3600000u);
    TQ_CHECK_UEQ(tq_workload_customer_newest_ticket(5, 10, 3), 0);
}

static void check_bodies(void) {
    const char *src = getenv("TQ_SOURCE_DIR");
    TQ_CHECK(src != NULL);
    const char *names[2] = {"peer-body-in.txt", "peer-body-out.txt"};
    const char *bodies[2] = {tq_workload_body_in, tq_workload_body_out};
    for (int i = 0; i < 2; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/bench/peers/%s", src, names[i]);
        FILE *f = fopen(path, "rb");
        TQ_CHECK(f != NULL);
        char buf[400];
        size_t n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        TQ_CHECK_UEQ(n, TQ_WORKLOAD_BODY_BYTES);
        TQ_CHECK_UEQ(strlen(bodies[i]), TQ_WORKLOAD_BODY_BYTES);
        TQ_CHECK_MEM_EQ(buf, bodies[i], n);
    }
}

static void check_peak(uint64_t *rng) {
    struct tq_peak_schedule s = {
        .base_rate = 100, .factor = 20, .warmup_s = 3, .ramp_s = 2, .spike_s = 4};
    TQ_CHECK(tq_peak_rate(&s, 1.0) == 100.0);
    TQ_CHECK(tq_peak_rate(&s, 4.0) == 1050.0); /* halfway up the ramp */
    TQ_CHECK(tq_peak_rate(&s, 6.0) == 2000.0);
    TQ_CHECK(tq_peak_rate(&s, 10.0) == 1050.0); /* halfway down */
    TQ_CHECK(tq_peak_rate(&s, 30.0) == 100.0);
    /* Integral: 300 + 2100 + 8000 + 2100 = 12500 arrivals by t = 11 s. */
    TQ_CHECK(fabs(tq_peak_arrivals(&s, 11.0) - 12500.0) < 1e-6);
    double prev = -1.0;
    for (uint64_t k = 0; k < 13000; k++) {
        double t = tq_peak_arrival_time(&s, k);
        TQ_CHECK(t > prev);
        TQ_CHECK(fabs(tq_peak_arrivals(&s, t) - (double)k) < 1e-6);
        prev = t;
    }
    for (int i = 0; i < 1000; i++) {
        uint64_t k = tq_test_rand_below(rng, 20000);
        double t = tq_peak_arrival_time(&s, k);
        TQ_CHECK(fabs(tq_peak_arrivals(&s, t) - (double)k) < 1e-6);
    }
    struct tq_peak_schedule flat = {.base_rate = 50, .factor = 20, .warmup_s = 1};
    TQ_CHECK(fabs(tq_peak_arrival_time(&flat, 75) - 1.5) < 1e-9);
}

int main(void) {
    uint64_t seed = tq_test_seed("test_bench_workload");
    uint64_t rng = seed;
    check_determinism(seed);
    check_determinism(TQ_WORKLOAD_SEED_DEFAULT);
    check_distributions(seed);
    check_initial_state();
    check_bodies();
    check_peak(&rng);
    enum tq_workload_kind k;
    TQ_CHECK(tq_workload_kind_parse("claim-reply", &k) && k == TQ_WORKLOAD_CLAIM_REPLY);
    TQ_CHECK(tq_workload_kind_parse("fan-out", &k) && k == TQ_WORKLOAD_FANOUT);
    TQ_CHECK(!tq_workload_kind_parse("nope", &k));
    printf("test_bench_workload: ok\n");
    return 0;
}
