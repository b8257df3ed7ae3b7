/* bench/state_bench.c: tq-state-bench, the micro-benchmark of the ticket state machine.
 *
 * What it measures (issue 3's targets, docs/performance-state.md):
 *   1. apply throughput on one core for the ingest-heavy mix: records are generated and
 *      encoded beforehand (by running them against a scratch state, so every one is valid and
 *      refers to real ids), then decode + apply of the whole log into a fresh state is timed.
 *      Mix: 70% inbound messages (10% from first-time contacts, 3% redelivered duplicates),
 *      14% agent replies, 6% ticket updates (pending/open/solved), 4% outbox takes, 4% acks,
 *      2% TICKs; 20 tenants, 3 queues and 10 agents each, an SLA policy with all four targets,
 *      a WhatsApp reply window, auto-assignment on one queue. Target >= 2 million records/s.
 *   2. resident memory per ticket and per message with 10 million messages loaded: 1 million
 *      tickets (one customer each) get their first message, then 9 million more messages are
 *      appended. Bytes are tq_alloc_bytes_live() + tq_state_bytes_mapped() deltas (exact, what
 *      the state asked for, its huge-page regions included) and
 *      VmRSS deltas from /proc/self/status (what the process really holds, malloc overhead
 *      included). Bodies are not in the state (they stay in the log). Targets <= 256 bytes per
 *      ticket, <= 32 bytes per message.
 *   3. with TQ_BENCH_APPLY_MAX=1: the longest single applies of the memory run's phases B and C
 *      (every message keyed, the idempotency table grown from small through ~14 growths):
 *      wall time and minor page faults of each apply (getrusage), the 10 longest printed with
 *      the message number they happened at. The state then has a prefault hook (as ticketqd
 *      has, on by default) whose pages are populated after the apply that asked, untimed: what
 *      ticketqd's helper thread does meanwhile (so [2]'s figures count the spares too); and a
 *      release hook, whose ranges (the old table at a copy's end) are unmapped after the apply,
 *      untimed, as that thread does too (TQ_BENCH_RELEASE=0: none, apply unmaps them). Also
 *      printed: every apply that mapped or unmapped 4 MB or more (tq_state_bytes_mapped), i.e.
 *      the idempotency table's growths and the ends of its copies, and the slabs' new groups.
 *      The table grows when its count reaches 3/4 of
 *      its capacity: at 756,671, 1,135,006, 1,702,509, 2,553,764, 3,830,646, 5,745,969 and
 *      8,618,953 keys. Time is wall time on a shared machine: compare the applies at those
 *      numbers, not the noise between them.
 * Usage: tq-state-bench [records (default 2000000)] [messages (default 10000000)] [runs (3)]
 * Run it from a Release build; it prints the machine, the exact figures and the medians.
 */
#include "state.h"
#include "tq_alloc.h"
#include "tq_assert.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#define TENANTS           20u
#define AGENTS_PER_TENANT 10u
static uint64_t CUSTOMERS_PER_TENANT = 20000; /* TQ_BENCH_CUSTOMERS overrides */

static uint64_t rng_state = 42;
static uint64_t rnd(uint64_t n) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (z ^ (z >> 31)) % n;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) return 0;
    char line[256];
    uint64_t v = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) v = strtoull(line + 6, NULL, 10);
    }
    fclose(f);
    return v;
}

static void machine(void) {
    struct utsname u;
    uname(&u);
    char model[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f != NULL) {
        char line[512];
        while (fgets(line, sizeof(line), f) != NULL) {
            if (strncmp(line, "model name", 10) == 0) {
                char *p = strchr(line, ':');
                if (p != NULL) snprintf(model, sizeof(model), "%s", p + 2);
                model[strcspn(model, "\n")] = '\0';
                break;
            }
        }
        fclose(f);
    }
    time_t t = time(NULL);
    char when[64];
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", gmtime(&t));
    printf("tq-state-bench  %s\nmachine: %s, %ld cpus; kernel %s %s\n", when, model,
           sysconf(_SC_NPROCESSORS_ONLN), u.sysname, u.release);
#ifdef TQ_DEBUG
    printf("WARNING: debug build (TQ_DEBUG); figures are not representative\n");
#endif
}

static void apply_ok(struct tq_state *s, uint64_t *lsn, struct tq_cmd *c,
                     struct tq_cmd_result *res) {
    struct tq_error err;
    enum tq_err e = tq_state_apply(s, *lsn + 1, c, res, NULL, &err);
    if (e != TQ_OK) {
        fprintf(stderr, "setup command type %d failed: %s\n", (int)c->type, err.msg);
        exit(1);
    }
    (*lsn)++;
}

/* ---- the encoded log ---------------------------------------------------------------- */

struct log {
    uint8_t *bytes;
    size_t len, cap;
    uint32_t *len_of;
    uint64_t n, cap_n;
};

static void log_add(struct log *l, const struct tq_cmd *c) {
    size_t n = tq_cmd_encoded_size(c);
    if (l->len + n > l->cap) {
        l->cap = l->cap == 0 ? (64u << 20) : l->cap * 2;
        l->bytes = realloc(l->bytes, l->cap);
    }
    if (l->n == l->cap_n) {
        l->cap_n = l->cap_n == 0 ? (1u << 20) : l->cap_n * 2;
        l->len_of = realloc(l->len_of, l->cap_n * sizeof(uint32_t));
    }
    if (l->bytes == NULL || l->len_of == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    TQ_ASSERT(tq_cmd_encode(c, l->bytes + l->len, n) == n);
    l->len += n;
    l->len_of[l->n++] = (uint32_t)n;
}

struct world {
    uint64_t tenant[TENANTS];
    uint64_t queue[TENANTS][3];
    uint64_t agent[TENANTS][AGENTS_PER_TENANT];
    uint64_t *recent_ticket; /* ring of recently touched tickets per tenant */
    uint64_t *outbound;      /* ring of recent outbound messages per tenant */
};
#define RING 4096u

static char body[301];

/* Builds the setup records (tenants, queues, agents, settings, policies) into log and s. */
static void setup(struct tq_state *s, uint64_t *lsn, struct log *lg, struct world *w,
                  uint64_t now) {
    struct tq_cmd c;
    struct tq_cmd_result res;
    static struct tq_sla_policy pol;
    memset(&pol, 0, sizeof(pol));
    pol.name = (struct tq_str){"standard", 8};
    pol.channel = -1;
    for (int q = 0; q < TQ_PRIORITY_COUNT; q++) {
        pol.targets.target_ms[TQ_SLA_FIRST_REPLY][q] = 4 * 3600000ull >> q;
        pol.targets.target_ms[TQ_SLA_NEXT_REPLY][q] = 8 * 3600000ull >> q;
        pol.targets.target_ms[TQ_SLA_REQUESTER_WAIT][q] = 48 * 3600000ull >> q;
        pol.targets.target_ms[TQ_SLA_AGENT_WORK][q] = 24 * 3600000ull >> q;
    }
    for (uint32_t t = 0; t < TENANTS; t++) {
        memset(&c, 0, sizeof(c));
        c.now_ms = now;
        c.type = TQ_CMD_TENANT_CREATE;
        c.u.tenant_create.name = (struct tq_str){"shop", 4};
        apply_ok(s, lsn, &c, &res);
        if (lg) log_add(lg, &c);
        w->tenant[t] = res.tenant_id;
        static const char *const names[3] = {"pre-sales", "warranty", "after-sales"};
        for (int q = 0; q < 3; q++) {
            memset(&c, 0, sizeof(c));
            c.now_ms = now;
            c.type = TQ_CMD_QUEUE_CREATE;
            c.tenant_id = w->tenant[t];
            c.u.queue.name = (struct tq_str){names[q], (uint32_t)strlen(names[q])};
            c.u.queue.auto_assign = q == 2;
            apply_ok(s, lsn, &c, &res);
            if (lg) log_add(lg, &c);
            w->queue[t][q] = res.queue_id;
        }
        for (uint32_t a = 0; a < AGENTS_PER_TENANT; a++) {
            memset(&c, 0, sizeof(c));
            c.now_ms = now;
            c.type = TQ_CMD_AGENT_CREATE;
            c.tenant_id = w->tenant[t];
            c.u.agent.name = (struct tq_str){"agent", 5};
            c.u.agent.set_presence = true;
            c.u.agent.presence = TQ_PRESENCE_ONLINE;
            c.u.agent.set_capacity = true;
            c.u.agent.capacity[0] = 5;
            c.u.agent.capacity[1] = 20;
            apply_ok(s, lsn, &c, &res);
            if (lg) log_add(lg, &c);
            w->agent[t][a] = res.agent_id;
        }
        memset(&c, 0, sizeof(c));
        c.now_ms = now;
        c.type = TQ_CMD_TENANT_SETTINGS;
        c.tenant_id = w->tenant[t];
        c.u.tenant_settings.auto_close_ms = 4 * 86400000ull;
        c.u.tenant_settings.sla_warning_permille = 750;
        c.u.tenant_settings.reply_window_ms[TQ_CHANNEL_WHATSAPP] = 24 * 3600000ull;
        for (int ch = 0; ch < TQ_CHANNEL_COUNT; ch++) {
            c.u.tenant_settings.default_queue_id[ch] = w->queue[t][ch % 3];
        }
        c.u.tenant_settings.outbox_attempts_max = 5;
        apply_ok(s, lsn, &c, &res);
        if (lg) log_add(lg, &c);
        memset(&c, 0, sizeof(c));
        c.now_ms = now;
        c.type = TQ_CMD_SLA_POLICIES_SET;
        c.tenant_id = w->tenant[t];
        c.u.sla_policies_set.count = 1;
        c.u.sla_policies_set.policies = &pol;
        apply_ok(s, lsn, &c, &res);
        if (lg) log_add(lg, &c);
    }
}

static char sbuf[4][64];

static void fill_ingest(struct tq_cmd *c, uint64_t tenant, uint64_t customer, uint64_t msg_id,
                        uint64_t now) {
    memset(c, 0, sizeof(*c));
    c->type = TQ_CMD_MESSAGE_INGEST;
    c->now_ms = now;
    c->tenant_id = tenant;
    enum tq_channel ch = (enum tq_channel)(customer % 3); /* email, sms, whatsapp */
    c->u.ingest.channel = ch;
    int n = snprintf(sbuf[0], sizeof(sbuf[0]), "c%" PRIu64 "@example.com", customer);
    c->u.ingest.from_external_id = (struct tq_str){sbuf[0], (uint32_t)n};
    n = snprintf(sbuf[1], sizeof(sbuf[1]), "msg-%" PRIu64, msg_id);
    c->u.ingest.message_external_id = (struct tq_str){sbuf[1], (uint32_t)n};
    c->u.ingest.provider_ts_ms = now - 1000;
    c->u.ingest.priority = (enum tq_priority)(customer % 4);
    c->u.ingest.subject = (struct tq_str){"Where is my order?", 18};
    c->u.ingest.body = (struct tq_str){body, 300};
}

/* Generates `records` valid records of the ingest-heavy mix into lg (after the setup). */
static void generate(struct log *lg, uint64_t records, struct world *w) {
    struct tq_state *s = tq_state_new(NULL);
    uint64_t lsn = 0, now = 1700000000000ull;
    setup(s, &lsn, lg, w, now);
    w->recent_ticket = calloc((size_t)TENANTS * RING, sizeof(uint64_t));
    w->outbound = calloc((size_t)TENANTS * RING, sizeof(uint64_t));
    uint64_t next_customer[TENANTS] = {0};
    uint64_t msg_seq = 0, ticket_i = 0, out_i = 0;
    struct tq_cmd c;
    struct tq_cmd_result res;
    struct tq_error err;
    while (lg->n < records) {
        now += 1 + rnd(2);
        uint32_t t = (uint32_t)rnd(TENANTS);
        uint64_t r = rnd(100);
        if (r < 70) {
            uint64_t cust;
            if (next_customer[t] < 100 || rnd(10) == 0) {
                cust = next_customer[t]++ % CUSTOMERS_PER_TENANT;
            } else {
                cust = rnd(next_customer[t] < CUSTOMERS_PER_TENANT ? next_customer[t]
                                                                   : CUSTOMERS_PER_TENANT);
            }
            uint64_t mid = rnd(100) < 3 && msg_seq > 10 ? msg_seq - 1 - rnd(10) : msg_seq++;
            fill_ingest(&c, w->tenant[t], cust + t * 1000000ull, mid, now);
        } else if (r < 84) {
            memset(&c, 0, sizeof(c));
            c.type = TQ_CMD_MESSAGE_REPLY;
            c.now_ms = now;
            c.tenant_id = w->tenant[t];
            c.actor_agent_id = w->agent[t][rnd(AGENTS_PER_TENANT)];
            c.u.reply.ticket_id = w->recent_ticket[t * RING + rnd(RING)];
            c.u.reply.channel = TQ_CHANNEL_EMAIL;
            c.u.reply.body = (struct tq_str){body, 300};
            if (rnd(4) == 0) {
                c.u.reply.set_status = true;
                c.u.reply.status = TQ_STATUS_PENDING;
            }
        } else if (r < 90) {
            memset(&c, 0, sizeof(c));
            c.type = TQ_CMD_TICKET_UPDATE;
            c.now_ms = now;
            c.tenant_id = w->tenant[t];
            c.u.ticket_update.ticket_id = w->recent_ticket[t * RING + rnd(RING)];
            c.u.ticket_update.fields = TQ_UPDATE_STATUS;
            static const enum tq_ticket_status st[3] = {TQ_STATUS_PENDING, TQ_STATUS_OPEN,
                                                        TQ_STATUS_SOLVED};
            c.u.ticket_update.status = st[rnd(3)];
        } else if (r < 94) {
            memset(&c, 0, sizeof(c));
            c.type = TQ_CMD_OUTBOX_TAKE;
            c.now_ms = now;
            c.tenant_id = w->tenant[t];
            c.u.outbox_take.channel = TQ_CHANNEL_EMAIL;
            c.u.outbox_take.max = 50;
            c.u.outbox_take.lease_ms = 30000;
        } else if (r < 98) {
            memset(&c, 0, sizeof(c));
            c.type = TQ_CMD_OUTBOX_ACK;
            c.now_ms = now;
            c.tenant_id = w->tenant[t];
            c.u.outbox_ack.message_id = w->outbound[t * RING + rnd(RING)];
            c.u.outbox_ack.status = (enum tq_delivery)(TQ_DELIVERY_SENT + rnd(3));
            c.u.outbox_ack.provider_message_id = (struct tq_str){"pm-1", 4};
        } else {
            memset(&c, 0, sizeof(c));
            c.type = TQ_CMD_TICK;
            c.now_ms = now;
        }
        if (tq_state_apply(s, lsn + 1, &c, &res, NULL, &err) != TQ_OK) continue;
        lsn++;
        log_add(lg, &c);
        if (c.type == TQ_CMD_MESSAGE_INGEST && !res.duplicate) {
            w->recent_ticket[t * RING + ticket_i++ % RING] = res.ticket_id;
        } else if (c.type == TQ_CMD_MESSAGE_REPLY) {
            w->outbound[t * RING + out_i++ % RING] = res.message_id;
        }
    }
    tq_state_free(s);
}

static double type_ns[TQ_CMD_TYPE_MAX + 1];
static uint64_t type_n[TQ_CMD_TYPE_MAX + 1];
static bool per_type;

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static bool use_prefetch = true;
static bool use_reserve = true; /* TQ_BENCH_RESERVE=0: no tq_state_reserve_messages */

/* Decode + apply of the whole log into a fresh state, through a tq_state_window (what recovery
 * does: records decoded ahead, tq_state_prefetch's stages run on them), or record by record
 * with tq_state_apply when TQ_BENCH_PREFETCH=0. */
static double replay(const struct log *lg, uint64_t *bytes_out, double *cpu_out) {
    struct tq_state *s = tq_state_new(NULL);
    /* what a recovery knows before it replays: how many records follow (an upper bound on the
     * messages they create) */
    if (use_reserve) tq_state_reserve_messages(s, lg->n);
    static struct tq_state_window win;
    tq_state_window_init(&win);
    struct tq_arena arena;
    tq_arena_init(&arena, 1 << 16);
    struct tq_cmd_result res;
    struct tq_error err;
    size_t off = 0, ahead_off = 0, fetched = 0;
    uint64_t decoded = 0;
    double t0 = now_s(), c0 = cpu_s();
    for (uint64_t i = 0; i < lg->n; i++) {
        uint64_t r0 = per_type ? __rdtsc() : 0;
        const struct tq_cmd *c;
        enum tq_err e;
        if (use_prefetch) {
            while (decoded < lg->n && !tq_state_window_full(&win)) {
                if (tq_state_window_push(&win, s, decoded + 1, lg->bytes + ahead_off,
                                         lg->len_of[decoded], &err) != TQ_OK) {
                    fprintf(stderr, "decode failed at record %" PRIu64 ": %s\n", decoded, err.msg);
                    exit(1);
                }
                ahead_off += lg->len_of[decoded];
                decoded++;
                /* the log is read front to back, but decoding skips the bodies, which defeats
                 * the hardware's stream detection: keep the lines up to 4 KiB ahead of the
                 * decoder fetched (what a recovery loop reading a segment buffer can do) */
                size_t until = ahead_off + 4096 < lg->len ? ahead_off + 4096 : lg->len;
                for (; fetched < until; fetched += 64)
                    __builtin_prefetch(lg->bytes + fetched);
            }
            e = tq_state_window_apply(&win, s, &res, NULL, NULL, &c, &err);
        } else {
            struct tq_cmd cmd;
            tq_arena_reset(&arena);
            if (tq_cmd_decode(lg->bytes + off, lg->len_of[i], &cmd, &arena, &err) != TQ_OK) {
                fprintf(stderr, "decode failed at record %" PRIu64 ": %s\n", i, err.msg);
                exit(1);
            }
            c = &cmd;
            e = tq_state_apply(s, i + 1, &cmd, &res, NULL, &err);
        }
        if (e != TQ_OK) {
            fprintf(stderr, "replay failed at record %" PRIu64 ": %s\n", i, err.msg);
            exit(1);
        }
        off += lg->len_of[i];
        if (per_type) {
            type_ns[c->type] += (double)(__rdtsc() - r0);
            type_n[c->type]++;
        }
    }
    double dt = now_s() - t0;
    *cpu_out = cpu_s() - c0;
    *bytes_out = off;
    tq_state_window_destroy(&win);
    tq_arena_destroy(&arena);
    tq_state_free(s);
    return dt;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void bench_throughput(uint64_t records, int runs) {
    struct log lg;
    memset(&lg, 0, sizeof(lg));
    struct world w;
    memset(&w, 0, sizeof(w));
    double g0 = now_s();
    generate(&lg, records, &w);
    printf("\n[1] apply throughput, ingest-heavy mix: %" PRIu64 " records (%.1f MB encoded, "
           "generated in %.1f s)\n",
           lg.n, (double)lg.len / 1e6, now_s() - g0);
    double rate[16];
    if (runs > 16) runs = 16;
    double cpu_rate[16];
    for (int r = 0; r < runs; r++) {
        uint64_t bytes;
        double cpu;
        double dt = replay(&lg, &bytes, &cpu);
        rate[r] = (double)lg.n / dt;
        cpu_rate[r] = (double)lg.n / cpu;
        printf("  run %d: %.3f s wall (%.3f s cpu), %.2f M records/s wall, %.2f M/s per cpu-second"
               " (decode + apply)\n",
               r + 1, dt, cpu, rate[r] / 1e6, cpu_rate[r] / 1e6);
    }
    qsort(rate, (size_t)runs, sizeof(double), cmp_double);
    qsort(cpu_rate, (size_t)runs, sizeof(double), cmp_double);
    printf("  median: %.2f M records/s wall, %.2f M/s per cpu-second (target >= 2.00)\n",
           rate[runs / 2] / 1e6, cpu_rate[runs / 2] / 1e6);
    per_type = true;
    uint64_t bytes;
    double cpu;
    replay(&lg, &bytes, &cpu);
    per_type = false;
    printf("  per command type (one extra run, TSC cycles around each record's decode + apply):\n");
    for (int t = 1; t <= TQ_CMD_TYPE_MAX; t++) {
        if (type_n[t] == 0) continue;
        printf("    type %2d: %8" PRIu64 " records, %7.0f cycles each\n", t, type_n[t],
               type_ns[t] / (double)type_n[t]);
    }
    free(lg.bytes);
    free(lg.len_of);
    free(w.recent_ticket);
    free(w.outbound);
}

/* [3] the longest applies (TQ_BENCH_APPLY_MAX=1) */
#define SLOW_KEEP 10
struct slow_apply {
    uint64_t msg, ns, faults;
};
static bool apply_max;
static struct slow_apply slowest[SLOW_KEEP];
/* the applies that mapped or unmapped 4 MB or more (a table's growth, a slab's next group) */
#define GREW_KEEP 48
struct grew_apply {
    uint64_t msg, ns;
    int64_t mapped;
};
static struct grew_apply grew[GREW_KEEP];
static unsigned grew_n;

static uint64_t minflt(void) {
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return (uint64_t)ru.ru_minflt;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif
struct pf_req {
    void *p;
    size_t len;
};
static struct pf_req pf_pending[64];
static unsigned pf_n;

static void bench_prefault(void *ctx, void *p, size_t len) {
    (void)ctx;
    if (pf_n < 64) pf_pending[pf_n++] = (struct pf_req){p, len};
}

/* The release hook: the old tables the state gives up, unmapped after the apply (untimed) as
 * ticketqd's helper thread does meanwhile. TQ_BENCH_RELEASE=0: no hook, apply unmaps them. */
static struct pf_req rel_pending[8];
static unsigned rel_n;
static bool release_hook = true;

static void bench_release(void *ctx, void *p, size_t len) {
    (void)ctx;
    if (rel_n < 8) {
        rel_pending[rel_n++] = (struct pf_req){p, len};
    } else {
        munmap(p, len); /* as ticketqd's helper with a full queue: at once */
    }
}

/* Populates what the hook was asked for (a range freed since fails harmlessly), then unmaps
 * what the state released. */
static void pf_drain(void) {
    for (unsigned i = 0; i < pf_n; i++)
        (void)madvise(pf_pending[i].p, pf_pending[i].len, MADV_POPULATE_WRITE);
    pf_n = 0;
    for (unsigned i = 0; i < rel_n; i++)
        munmap(rel_pending[i].p, rel_pending[i].len);
    rel_n = 0;
}

/* apply_ok, timed when apply_max: keeps the SLOW_KEEP longest applies */
static void apply_timed(struct tq_state *s, uint64_t *lsn, struct tq_cmd *c,
                        struct tq_cmd_result *res, uint64_t msg) {
    if (!apply_max) {
        apply_ok(s, lsn, c, res);
        return;
    }
    uint64_t f0 = minflt(), m0 = tq_state_bytes_mapped();
    double t0 = now_s();
    apply_ok(s, lsn, c, res);
    uint64_t ns = (uint64_t)((now_s() - t0) * 1e9);
    int64_t dm = (int64_t)(tq_state_bytes_mapped() - m0);
    if ((dm >= 4000000 || dm <= -4000000) && grew_n < GREW_KEEP) {
        grew[grew_n++] = (struct grew_apply){msg, ns, dm};
    }
    uint64_t faults = minflt() - f0;
    pf_drain();
    unsigned min = 0;
    for (unsigned i = 1; i < SLOW_KEEP; i++) {
        if (slowest[i].ns < slowest[min].ns) min = i;
    }
    if (ns > slowest[min].ns) slowest[min] = (struct slow_apply){msg, ns, faults};
}

static int cmp_slow(const void *a, const void *b) {
    const struct slow_apply *x = a, *y = b;
    return x->msg < y->msg ? -1 : x->msg > y->msg;
}

static void print_slowest(void) {
    qsort(slowest, SLOW_KEEP, sizeof(slowest[0]), cmp_slow);
    printf("\n[3] the %u longest applies of phases B and C (message number: wall us, minor "
           "faults)\n",
           SLOW_KEEP);
    uint64_t max = 0;
    for (unsigned i = 0; i < SLOW_KEEP; i++) {
        if (slowest[i].ns == 0) continue;
        printf("  %9" PRIu64 ": %8.1f us, %" PRIu64 " faults\n", slowest[i].msg + 1,
               (double)slowest[i].ns / 1e3, slowest[i].faults);
        if (slowest[i].ns > max) max = slowest[i].ns;
    }
    printf("  longest: %.1f us\n", (double)max / 1e3);
    printf("  the applies that mapped (+) or unmapped (-) 4 MB or more (message number: wall us, "
           "MB):\n");
    for (unsigned i = 0; i < grew_n; i++) {
        printf("  %9" PRIu64 ": %8.1f us, %+.1f MB\n", grew[i].msg + 1, (double)grew[i].ns / 1e3,
               (double)grew[i].mapped / 1e6);
    }
}

/* What the states asked for: tq_alloc's bytes and the huge-page regions (state.h). */
static uint64_t bytes_live(void) {
    return tq_alloc_bytes_live() + tq_state_bytes_mapped();
}

static void bench_memory(uint64_t messages) {
    uint64_t tickets = messages / 10;
    struct tq_state_options opts = {.prefault = bench_prefault,
                                    .release = release_hook ? bench_release : NULL};
    struct tq_state *s = tq_state_new(apply_max ? &opts : NULL);
    struct world w;
    memset(&w, 0, sizeof(w));
    uint64_t lsn = 0, now = 1700000000000ull;
    setup(s, &lsn, NULL, &w, now);
    struct tq_cmd c;
    struct tq_cmd_result res;
    uint64_t b0 = bytes_live(), r0 = rss_kib();
    /* A: one customer per ticket, with the identity its messages will come from */
    for (uint64_t i = 0; i < tickets; i++) {
        fill_ingest(&c, w.tenant[i % TENANTS], i, i, now);
        struct tq_str from = c.u.ingest.from_external_id;
        enum tq_channel ch = c.u.ingest.channel;
        memset(&c, 0, sizeof(c));
        c.type = TQ_CMD_CUSTOMER_CREATE;
        c.now_ms = now;
        c.tenant_id = w.tenant[i % TENANTS];
        c.u.customer_create.channel = ch;
        c.u.customer_create.external_id = from;
        apply_ok(s, &lsn, &c, &res);
    }
    uint64_t b1 = bytes_live(), r1 = rss_kib();
    /* B: the first message of each ticket creates the ticket */
    for (uint64_t i = 0; i < tickets; i++) {
        now += 1;
        fill_ingest(&c, w.tenant[i % TENANTS], i, i, now);
        apply_timed(s, &lsn, &c, &res, i);
    }
    uint64_t b2 = bytes_live(), r2 = rss_kib();
    /* C: the other 9 messages of each ticket */
    for (uint64_t i = tickets; i < messages; i++) {
        now += 1;
        uint64_t k = i % tickets;
        fill_ingest(&c, w.tenant[k % TENANTS], k, i, now);
        apply_timed(s, &lsn, &c, &res, i);
    }
    uint64_t b3 = bytes_live(), r3 = rss_kib();
    struct tq_stats st;
    tq_state_stats(s, 0, &st);
    double nt = (double)tickets, nm = (double)(messages - tickets);
    double per_msg = (double)(b3 - b2) / nm, per_msg_rss = (double)(r3 - r2) * 1024.0 / nm;
    double per_tk = (double)(b2 - b1) / nt - per_msg;
    double per_tk_rss = (double)(r2 - r1) * 1024.0 / nt - per_msg_rss;
    printf("\n[2] resident memory: %" PRIu64 " tickets, %" PRIu64 " messages, %" PRIu64
           " customers (bodies excluded; each message has a provider id, each ticket a subject)\n",
           st.ticket_count, st.message_count, st.customer_count);
    printf("  customer with one identity: %.1f bytes live (asked for), %.1f RSS\n",
           (double)(b1 - b0) / nt, (double)(r1 - r0) * 1024.0 / nt);
    printf("  message: %.1f bytes live, %.1f RSS (target <= 32; phase C, %" PRIu64 " appends)\n",
           per_msg, per_msg_rss, messages - tickets);
    printf("  ticket: %.1f bytes live, %.1f RSS (target <= 256; phase B minus its first "
           "message)\n",
           per_tk, per_tk_rss);
    printf("  total live %.1f MB, RSS %.1f MB\n", (double)b3 / 1e6, (double)r3 / 1024.0);
    if (apply_max) print_slowest();
    tq_state_free(s);
}

int main(int argc, char **argv) {
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: tq-state-bench [records (2000000)] [messages (10000000)] [runs (3)]\n"
               "  [1] apply throughput of the ingest-heavy mix (decode + apply, one core)\n"
               "  [2] resident memory per ticket and per message (skipped when messages < 10)\n"
               "environment: TQ_BENCH_PREFETCH=0 applies record by record without the window;\n"
               "  TQ_BENCH_RESERVE=0 does not size the idempotency table for the log up front;\n"
               "  TQ_BENCH_CUSTOMERS=N customers per tenant (default 20000);\n"
               "  TQ_BENCH_APPLY_MAX=1 also times every apply of [2]'s phases B and C and prints\n"
               "  the 10 longest ([3]), with a prefault hook populated between applies\n"
               "  and a release hook unmapped between them (TQ_BENCH_RELEASE=0: none)\n");
        return 0;
    }
    uint64_t records = argc > 1 ? strtoull(argv[1], NULL, 0) : 2000000;
    uint64_t messages = argc > 2 ? strtoull(argv[2], NULL, 0) : 10000000;
    int runs = argc > 3 ? atoi(argv[3]) : 3;
    memset(body, 'x', 300);
    const char *pf = getenv("TQ_BENCH_PREFETCH");
    if (pf != NULL && pf[0] == '0') use_prefetch = false;
    const char *rs = getenv("TQ_BENCH_RESERVE");
    if (rs != NULL && rs[0] == '0') use_reserve = false;
    printf("replay %s\n", use_prefetch ? "through a tq_state_window (decodes ahead and prefetches)"
                                       : "record by record (TQ_BENCH_PREFETCH=0)");
    printf("idempotency table %s\n",
           use_reserve ? "reserved for the log's record count (tq_state_reserve_messages)"
                       : "grown from small (TQ_BENCH_RESERVE=0)");
    const char *am = getenv("TQ_BENCH_APPLY_MAX");
    if (am != NULL && am[0] == '1') apply_max = true;
    const char *rh = getenv("TQ_BENCH_RELEASE");
    if (rh != NULL && rh[0] == '0') release_hook = false;
    const char *cust = getenv("TQ_BENCH_CUSTOMERS");
    if (cust != NULL && cust[0] != '\0') CUSTOMERS_PER_TENANT = strtoull(cust, NULL, 0);
    machine();
    if (records > 0) bench_throughput(records, runs < 1 ? 1 : runs);
    if (messages >= 10) bench_memory(messages);
    return 0;
}
