/* tests/state/test_state_slaidx.c: the SLA index behind SlaNearest (server/state/slaidx.c).
 *
 * Goal: tq_state_sla_nearest answers exactly "the tenant's running SLA clocks with the earliest
 * deadlines, ordered by (deadline, ticket, metric)" after any history, and the index it walks
 * stays exactly the set of running clocks (tq_state_check_invariants, run by the fixture after
 * every command, checks membership, keys and heap order of every tenant's index).
 * Method: an oracle built only from the public ticket views (every running clock with a
 * deadline, of every unclosed ticket of the tenant, sorted) is compared entry by entry with
 * the page, for random page sizes and for a page larger than the walk's frontier (the scan
 * path). Histories:
 *   - fixed cases: two tenants with interleaved deadlines (a page never shows the other
 *     tenant's tickets), ties on the deadline (ticket id, then metric decide), every kind of
 *     clock change (start, achieve, pause/resume, priority re-derivation, breach, solve, close,
 *     merge);
 *   - the index keeps deadlines as 32-bit offsets from a per-tenant base, clamped: targets of
 *     100 days (beyond 2^32 ms: clamped high), a priority change that moves a deadline 60 days
 *     into the past (clamped low), and time jumps of months (the base moves, every node is
 *     re-encoded);
 *   - a seeded random history (TQ_SEED reproduces it) over two tenants mixing all of the
 *     above, checked after every command; then a snapshot round trip (the index is rebuilt on
 *     load) answers the same pages.
 */
#include "state_fixture.h"

#define TICKETS_MAX 512
#define PAGE_MAX    2048 /* above the walk's frontier bound (1,364): the scan path */

struct tn {
    uint64_t id, queue, agent;
    uint64_t tickets[TICKETS_MAX];
    uint32_t n;
};

static int due_cmp(const void *pa, const void *pb) {
    const struct tq_sla_due *a = pa, *b = pb;
    if (a->deadline_ms != b->deadline_ms) return a->deadline_ms < b->deadline_ms ? -1 : 1;
    if (a->ticket_id != b->ticket_id) return a->ticket_id < b->ticket_id ? -1 : 1;
    return (int)a->metric - (int)b->metric;
}

/* The oracle: every running clock with a deadline of the tenant's unclosed tickets, sorted. */
static uint32_t oracle(struct fx *f, const struct tn *t, struct tq_sla_due *out) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < t->n; i++) {
        struct tq_ticket_view v = fx_ticket(f, t->id, t->tickets[i]);
        if (v.status == TQ_STATUS_CLOSED) continue;
        for (uint32_t m = 0; m < v.sla_count; m++) {
            if (v.sla[m].state != TQ_SLA_RUNNING || v.sla[m].deadline_ms == 0) continue;
            out[n++] = (struct tq_sla_due){t->tickets[i], v.sla[m].metric, v.sla[m].deadline_ms};
        }
    }
    qsort(out, n, sizeof(*out), due_cmp);
    return n;
}

/* Compares pages of size cap (and a page larger than everything) with the oracle. */
static void check_pages(struct fx *f, const struct tn *t, uint32_t cap) {
    static struct tq_sla_due want[TICKETS_MAX * TQ_SLA_METRIC_COUNT];
    static struct tq_sla_due got[PAGE_MAX];
    uint32_t total = oracle(f, t, want);
    TQ_CHECK(total <= PAGE_MAX);
    uint32_t caps[3] = {cap, 1, PAGE_MAX};
    for (int k = 0; k < 3; k++) {
        uint32_t n = tq_state_sla_nearest(f->s, t->id, got, caps[k]);
        TQ_CHECK_EQ(n, total < caps[k] ? total : caps[k]);
        for (uint32_t i = 0; i < n; i++) {
            TQ_CHECK_UEQ(got[i].ticket_id, want[i].ticket_id);
            TQ_CHECK_EQ(got[i].metric, want[i].metric);
            TQ_CHECK_UEQ(got[i].deadline_ms, want[i].deadline_ms);
        }
    }
}

/* A policy with per-priority targets for first reply and agent work (next reply and requester
 * wait get the same as first reply and twice agent work). */
static void policy(struct fx *f, uint64_t tenant, const uint64_t first[TQ_PRIORITY_COUNT],
                   const uint64_t work[TQ_PRIORITY_COUNT]) {
    struct tq_sla_policy p;
    memset(&p, 0, sizeof(p));
    p.name = S("p");
    p.channel = -1;
    for (int q = 0; q < TQ_PRIORITY_COUNT; q++) {
        p.targets.target_ms[TQ_SLA_FIRST_REPLY][q] = first[q];
        p.targets.target_ms[TQ_SLA_NEXT_REPLY][q] = first[q];
        p.targets.target_ms[TQ_SLA_REQUESTER_WAIT][q] = 2 * work[q];
        p.targets.target_ms[TQ_SLA_AGENT_WORK][q] = work[q];
    }
    struct tq_cmd c = fx_cmd(TQ_CMD_SLA_POLICIES_SET, tenant);
    c.u.sla_policies_set.count = 1;
    c.u.sla_policies_set.policies = &p;
    FX_OK(f, &c);
}

static void tenant_setup(struct fx *f, struct tn *t, const char *name) {
    memset(t, 0, sizeof(*t));
    t->id = fx_tenant(f, name);
    fx_settings(f, t->id, 0, 750, DAY_MS, 5); /* WhatsApp windows: a fifth clock */
    t->queue = fx_queue(f, t->id, "q", false, 0);
    t->agent = fx_agent(f, t->id, "a", TQ_PRESENCE_ONLINE, 100, 100);
}

static uint64_t ingest(struct fx *f, struct tn *t, enum tq_channel ch, const char *from,
                       enum tq_priority prio) {
    struct tq_cmd c = fx_cmd(TQ_CMD_MESSAGE_INGEST, t->id);
    c.u.ingest.channel = ch;
    c.u.ingest.from_external_id = S(from);
    c.u.ingest.queue_id = t->queue;
    c.u.ingest.priority = prio;
    c.u.ingest.subject = S("s");
    c.u.ingest.body = S("b");
    FX_OK(f, &c);
    if (f->res.ticket_created) {
        TQ_CHECK(t->n < TICKETS_MAX);
        t->tickets[t->n++] = f->res.ticket_id;
    }
    return f->res.ticket_id;
}

static void set_priority(struct fx *f, const struct tn *t, uint64_t ticket, enum tq_priority p) {
    struct tq_cmd c = fx_cmd(TQ_CMD_TICKET_UPDATE, t->id);
    c.u.ticket_update.ticket_id = ticket;
    c.u.ticket_update.fields = TQ_UPDATE_PRIORITY;
    c.u.ticket_update.priority = p;
    FX_OK(f, &c);
}

static const uint64_t FIRST_STD[TQ_PRIORITY_COUNT] = {8 * HOUR_MS, 4 * HOUR_MS, HOUR_MS,
                                                      10 * MIN_MS};
static const uint64_t WORK_STD[TQ_PRIORITY_COUNT] = {3 * DAY_MS, DAY_MS, 8 * HOUR_MS, 2 * HOUR_MS};

/* Two tenants, interleaved deadlines, ties, and each kind of clock change. */
static void test_two_tenants_and_clock_changes(void) {
    struct fx f;
    fx_init(&f);
    struct tn a, b;
    tenant_setup(&f, &a, "a");
    tenant_setup(&f, &b, "b");
    policy(&f, a.id, FIRST_STD, WORK_STD);
    policy(&f, b.id, FIRST_STD, WORK_STD);
    char from[32];
    for (int i = 0; i < 40; i++) {
        struct tn *t = i % 2 ? &b : &a;
        snprintf(from, sizeof(from), "c%d@x.com", i);
        ingest(&f, t, i % 3 == 0 ? TQ_CHANNEL_WHATSAPP : TQ_CHANNEL_EMAIL, from,
               (enum tq_priority)(i % TQ_PRIORITY_COUNT));
        if (i % 5 != 4) f.now += 7 * MIN_MS; /* pairs created in the same ms: equal deadlines */
    }
    check_pages(&f, &a, 10);
    check_pages(&f, &b, 10);
    /* a page of tenant a holds only a's tickets, and the same for b */
    struct tq_sla_due page[64];
    uint32_t n = tq_state_sla_nearest(f.s, a.id, page, 64);
    TQ_CHECK(n > 0);
    for (uint32_t i = 0; i < n; i++) {
        struct tq_ticket_view v;
        TQ_CHECK_OK(tq_state_ticket_get(f.s, a.id, page[i].ticket_id, &v), NULL);
    }
    TQ_CHECK_EQ(tq_state_sla_nearest(f.s, 999, page, 64), 0); /* unknown tenant */
    TQ_CHECK_EQ(tq_state_sla_nearest(f.s, a.id, page, 0), 0);
    /* first reply achieved: the ticket's key moves to its later clocks */
    fx_reply(&f, a.id, a.agent, a.tickets[0]);
    check_pages(&f, &a, 5);
    /* pending pauses requester wait and agent work; open resumes them */
    fx_status(&f, a.id, a.tickets[1], TQ_STATUS_PENDING);
    check_pages(&f, &a, 5);
    f.now += HOUR_MS;
    fx_status(&f, a.id, a.tickets[1], TQ_STATUS_OPEN);
    check_pages(&f, &a, 5);
    /* a priority change re-derives every running clock */
    set_priority(&f, &a, a.tickets[2], TQ_PRIORITY_URGENT);
    set_priority(&f, &a, a.tickets[3], TQ_PRIORITY_LOW);
    check_pages(&f, &a, 7);
    /* solved: no running clock left (requester wait and agent work achieved) */
    fx_status(&f, a.id, a.tickets[4], TQ_STATUS_SOLVED);
    check_pages(&f, &a, 7);
    /* a merge closes the source: its clocks leave the index */
    struct tq_cmd m = fx_cmd(TQ_CMD_TICKET_MERGE, a.id);
    m.u.ticket_merge.source_id = a.tickets[5];
    m.u.ticket_merge.target_id = a.tickets[6];
    FX_OK(&f, &m);
    check_pages(&f, &a, 7);
    /* breaches: a TICK past several deadlines turns those clocks into breached ones */
    fx_tick(&f, f.now + 3 * HOUR_MS);
    check_pages(&f, &a, 12);
    check_pages(&f, &b, 12);
    /* a new inbound message after a reply starts the next-reply clock */
    snprintf(from, sizeof(from), "c%d@x.com", 0);
    ingest(&f, &a, TQ_CHANNEL_EMAIL, from, TQ_PRIORITY_NORMAL);
    check_pages(&f, &a, 12);
    fx_free(&f);
}

/* Deadlines beyond the 32-bit window of the base, deadlines before it, and a moving base. */
static void test_clamped_keys_and_rebase(void) {
    struct fx f;
    fx_init(&f);
    struct tn a;
    tenant_setup(&f, &a, "a");
    /* low: 100 days (far beyond 2^32 ms = 49.7 days); urgent: 1 minute */
    const uint64_t first[TQ_PRIORITY_COUNT] = {100 * DAY_MS, 60 * DAY_MS, 2 * HOUR_MS, MIN_MS};
    const uint64_t work[TQ_PRIORITY_COUNT] = {200 * DAY_MS, 70 * DAY_MS, DAY_MS, 5 * MIN_MS};
    policy(&f, a.id, first, work);
    char from[32];
    for (int i = 0; i < 60; i++) {
        snprintf(from, sizeof(from), "c%d@x.com", i);
        ingest(&f, &a, TQ_CHANNEL_EMAIL, from, (enum tq_priority)(i % 2 == 0 ? 0 : i % 4));
        f.now += i % 3 == 0 ? 0 : 13 * MIN_MS;
    }
    check_pages(&f, &a, 20); /* many saturated keys, compared by their exact deadlines */
    /* 60 days on (no TICK: nothing breaches), new tickets: their deadlines saturate the old
     * base, which moves */
    f.now += 60 * DAY_MS;
    for (int i = 60; i < 120; i++) {
        snprintf(from, sizeof(from), "c%d@x.com", i);
        ingest(&f, &a, TQ_CHANNEL_EMAIL, from, (enum tq_priority)(i % 4));
        f.now += 11 * MIN_MS;
        if (i % 10 == 0) check_pages(&f, &a, 1 + (uint32_t)i % 30);
    }
    check_pages(&f, &a, 40);
    /* a low-priority ticket created 60 days ago becomes urgent: its first reply deadline is
     * created + 1 minute, 60 days in the past (below the base: clamped low) */
    for (int i = 0; i < 8; i += 2) {
        set_priority(&f, &a, a.tickets[i], TQ_PRIORITY_URGENT);
        check_pages(&f, &a, 10);
    }
    /* and back: the deadline is 100 days after creation again */
    set_priority(&f, &a, a.tickets[0], TQ_PRIORITY_LOW);
    check_pages(&f, &a, 10);
    /* another year: the base moves again, past every old deadline */
    f.now += 365 * DAY_MS;
    for (int i = 120; i < 160; i++) {
        snprintf(from, sizeof(from), "c%d@x.com", i);
        ingest(&f, &a, TQ_CHANNEL_EMAIL, from, (enum tq_priority)(i % 4));
        f.now += 17 * MIN_MS;
    }
    check_pages(&f, &a, 33);
    /* now a TICK breaches everything due: only the new tickets' far clocks remain */
    fx_tick(&f, f.now);
    check_pages(&f, &a, 33);
    fx_free(&f);
}

/* A seeded random history over two tenants, checked after every command, then a snapshot. */
static void test_random_history(uint64_t seed) {
    uint64_t rng = seed;
    struct fx f;
    fx_init(&f);
    struct tn tns[2];
    tenant_setup(&f, &tns[0], "a");
    tenant_setup(&f, &tns[1], "b");
    const uint64_t first_long[TQ_PRIORITY_COUNT] = {90 * DAY_MS, 4 * HOUR_MS, HOUR_MS, 5 * MIN_MS};
    policy(&f, tns[0].id, FIRST_STD, WORK_STD);
    policy(&f, tns[1].id, first_long, WORK_STD);
    char from[32];
    for (uint32_t op = 0; op < 2500; op++) {
        struct tn *t = &tns[tq_test_rand_below(&rng, 2)];
        uint64_t r = tq_test_rand_below(&rng, 100);
        f.now += tq_test_rand_below(&rng, 10 * MIN_MS);
        if (r < 2) f.now += tq_test_rand_below(&rng, 90 * DAY_MS); /* a long quiet spell */
        uint64_t tk = t->n > 0 ? t->tickets[tq_test_rand_below(&rng, t->n)] : 0;
        struct tq_ticket_view v;
        memset(&v, 0, sizeof(v));
        if (tk != 0) v = fx_ticket(&f, t->id, tk);
        bool closed = tk == 0 || v.status == TQ_STATUS_CLOSED;
        if (r < 40 || tk == 0) {
            snprintf(from, sizeof(from), "c%" PRIu64 "@x.com", tq_test_rand_below(&rng, 300));
            ingest(&f, t, tq_test_rand_below(&rng, 3) == 0 ? TQ_CHANNEL_WHATSAPP : TQ_CHANNEL_EMAIL,
                   from, (enum tq_priority)tq_test_rand_below(&rng, TQ_PRIORITY_COUNT));
        } else if (closed) {
            fx_tick(&f, f.now);
        } else if (r < 55) {
            fx_reply(&f, t->id, t->agent, tk);
        } else if (r < 70) {
            static const enum tq_ticket_status to[4] = {TQ_STATUS_OPEN, TQ_STATUS_PENDING,
                                                        TQ_STATUS_ON_HOLD, TQ_STATUS_SOLVED};
            enum tq_ticket_status st = to[tq_test_rand_below(&rng, 4)];
            if (tq_state_status_move_allowed(v.status, st) || v.status == st) {
                fx_status(&f, t->id, tk, st);
            }
        } else if (r < 80) {
            set_priority(&f, t, tk, (enum tq_priority)tq_test_rand_below(&rng, TQ_PRIORITY_COUNT));
        } else if (r < 84) {
            uint64_t other = t->tickets[tq_test_rand_below(&rng, t->n)];
            struct tq_ticket_view ov = fx_ticket(&f, t->id, other);
            if (other != tk && ov.status != TQ_STATUS_CLOSED) {
                struct tq_cmd m = fx_cmd(TQ_CMD_TICKET_MERGE, t->id);
                m.u.ticket_merge.source_id = tk;
                m.u.ticket_merge.target_id = other;
                FX_OK(&f, &m);
            }
        } else if (r < 87 && v.status == TQ_STATUS_SOLVED) {
            fx_status(&f, t->id, tk, TQ_STATUS_CLOSED);
        } else {
            fx_tick(&f, f.now);
        }
        check_pages(&f, t, 1 + (uint32_t)tq_test_rand_below(&rng, 40));
    }
    /* the index is derived: a state loaded from a snapshot rebuilds it and answers the same */
    void *blob = NULL;
    size_t len = 0;
    TQ_CHECK_OK(tq_state_serialize(f.s, &blob, &len, &f.err), &f.err);
    struct tq_state *l = NULL;
    TQ_CHECK_OK(tq_state_deserialize(blob, len, NULL, &l, &f.err), &f.err);
    struct tq_error ie;
    TQ_CHECK(tq_state_check_invariants(l, &ie));
    static struct tq_sla_due p1[PAGE_MAX], p2[PAGE_MAX];
    for (int k = 0; k < 2; k++) {
        for (uint32_t cap = 1; cap <= PAGE_MAX; cap = cap * 3 + 1) {
            uint32_t n1 = tq_state_sla_nearest(f.s, tns[k].id, p1, cap);
            uint32_t n2 = tq_state_sla_nearest(l, tns[k].id, p2, cap);
            TQ_CHECK_EQ(n1, n2);
            TQ_CHECK_MEM_EQ(p1, p2, n1 * sizeof(*p1));
        }
        check_pages(&f, &tns[k], 50);
    }
    printf("  random history: %u + %u tickets, %u + %u running clocks at the end\n", tns[0].n,
           tns[1].n, tq_state_sla_nearest(f.s, tns[0].id, p1, PAGE_MAX),
           tq_state_sla_nearest(f.s, tns[1].id, p2, PAGE_MAX));
    tq_state_free(l);
    tq_free(blob, len);
    fx_free(&f);
}

int main(void) {
    uint64_t seed = tq_test_seed("test_state_slaidx");
    test_two_tenants_and_clock_changes();
    test_clamped_keys_and_rebase();
    test_random_history(seed);
    printf("test_state_slaidx: ok\n");
    return 0;
}
