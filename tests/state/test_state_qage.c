/* tests/state/test_state_qage.c: a queue's oldest waiting ticket (server/state/qage.c).
 *
 * Goal: QueueGet's oldest_enqueued_ms is exactly the earliest time at which a ticket now in
 * the queue (unassigned, new or open) entered it, after any history, while the queue caches
 * its oldest ticket instead of scanning on every read; and the cache costs no memory that
 * grows with churn.
 * Method: an oracle from the public ticket views (queue, status, assignee; the time each ticket
 * last entered the queue is tracked by the test from the commands it sent) is compared with
 * tq_state_queue_get after every command; the fixture also runs tq_state_check_invariants
 * after every command, which compares a known cache with a scan of the queue. Histories:
 *   - fixed: claims, pending/open, a move to another queue and back, release;
 *   - a log whose time goes backwards (not one ticketqd writes, but apply accepts it): a
 *     ticket entering older than the cached oldest becomes the oldest;
 *   - 20,000 claim/release cycles at one frozen millisecond: live memory stays flat;
 *   - a seeded random history (TQ_SEED) over two queues, then a snapshot round trip.
 */
#include "state_fixture.h"

#define TICKETS_MAX 256

struct world {
    uint64_t tenant, q[2], agent;
    uint64_t tickets[TICKETS_MAX];
    uint64_t entered[TICKETS_MAX]; /* the time the test last (re)queued it */
    int customer[TICKETS_MAX];
    uint32_t n;
};

static uint64_t oracle(struct fx *f, const struct world *w, uint64_t queue) {
    uint64_t oldest = 0;
    for (uint32_t i = 0; i < w->n; i++) {
        struct tq_ticket_view v = fx_ticket(f, w->tenant, w->tickets[i]);
        bool queued = v.queue_id == queue && v.assignee_id == 0 &&
                      (v.status == TQ_STATUS_NEW || v.status == TQ_STATUS_OPEN);
        if (queued && (oldest == 0 || w->entered[i] < oldest)) oldest = w->entered[i];
    }
    return oldest;
}

static void check(struct fx *f, const struct world *w) {
    for (int k = 0; k < 2; k++) {
        struct tq_queue_view v;
        TQ_CHECK_OK(tq_state_queue_get(f->s, w->tenant, w->q[k], &v), NULL);
        TQ_CHECK_UEQ(v.oldest_enqueued_ms, oracle(f, w, w->q[k]));
    }
}

static void setup(struct fx *f, struct world *w) {
    memset(w, 0, sizeof(*w));
    fx_init(f);
    w->tenant = fx_tenant(f, "t");
    w->q[0] = fx_queue(f, w->tenant, "q0", false, 0);
    w->q[1] = fx_queue(f, w->tenant, "q1", false, 0);
    w->agent = fx_agent(f, w->tenant, "a", TQ_PRESENCE_ONLINE, 1000, 1000);
}

static uint32_t index_of(const struct world *w, uint64_t ticket) {
    for (uint32_t i = 0; i < w->n; i++)
        if (w->tickets[i] == ticket) return i;
    TQ_CHECK(false);
    return 0;
}

static bool queued(struct fx *f, const struct world *w, uint32_t i) {
    struct tq_ticket_view v = fx_ticket(f, w->tenant, w->tickets[i]);
    return v.assignee_id == 0 && (v.status == TQ_STATUS_NEW || v.status == TQ_STATUS_OPEN);
}

static void ingest(struct fx *f, struct world *w, int customer, int queue, enum tq_priority p) {
    bool before[TICKETS_MAX];
    for (uint32_t i = 0; i < w->n; i++)
        before[i] = w->customer[i] == customer && queued(f, w, i);
    char from[32];
    snprintf(from, sizeof(from), "c%d@x.com", customer);
    struct tq_cmd c = fx_cmd(TQ_CMD_MESSAGE_INGEST, w->tenant);
    c.u.ingest.channel = TQ_CHANNEL_EMAIL;
    c.u.ingest.from_external_id = S(from);
    c.u.ingest.queue_id = w->q[queue];
    c.u.ingest.priority = p;
    c.u.ingest.subject = S("s");
    c.u.ingest.body = S("b");
    FX_OK(f, &c);
    uint64_t tid = f->res.ticket_id;
    if (f->res.ticket_created) {
        TQ_CHECK(w->n < TICKETS_MAX);
        w->tickets[w->n] = tid;
        w->customer[w->n] = customer;
        w->entered[w->n++] = f->now;
        return;
    }
    /* appended to an unclosed ticket: a pending one goes back to open (re-enters now) */
    uint32_t i = index_of(w, tid);
    if (!before[i] && queued(f, w, i)) w->entered[i] = f->now;
}

/* Claims the best ticket of queue k for the agent; returns its index or -1 if empty. */
static int claim(struct fx *f, struct world *w, int k) {
    struct tq_cmd c = fx_cmd(TQ_CMD_TICKET_CLAIM, w->tenant);
    c.actor_agent_id = w->agent;
    c.u.claim.agent_id = w->agent;
    c.u.claim.queue_count = 1;
    c.u.claim.queue_ids = &w->q[k];
    enum tq_err e = fx_try(f, &c);
    if (e != TQ_OK || f->res.ticket_id == 0) return -1;
    return (int)index_of(w, f->res.ticket_id);
}

static void release(struct fx *f, struct world *w, uint32_t i) {
    struct tq_cmd c = fx_cmd(TQ_CMD_TICKET_RELEASE, w->tenant);
    c.actor_agent_id = w->agent;
    c.u.release.ticket_id = w->tickets[i];
    FX_OK(f, &c);
    w->entered[i] = f->now;
}

static void move(struct fx *f, struct world *w, uint32_t i, int k) {
    struct tq_cmd c = fx_cmd(TQ_CMD_TICKET_UPDATE, w->tenant);
    c.u.ticket_update.ticket_id = w->tickets[i];
    c.u.ticket_update.fields = TQ_UPDATE_QUEUE;
    c.u.ticket_update.queue_id = w->q[k];
    FX_OK(f, &c);
    w->entered[i] = f->now;
}

static void set_status(struct fx *f, struct world *w, uint32_t i, enum tq_ticket_status st) {
    struct tq_ticket_view v = fx_ticket(f, w->tenant, w->tickets[i]);
    fx_status(f, w->tenant, w->tickets[i], st);
    bool was = v.assignee_id == 0 && (v.status == TQ_STATUS_NEW || v.status == TQ_STATUS_OPEN);
    bool now = v.assignee_id == 0 && (st == TQ_STATUS_NEW || st == TQ_STATUS_OPEN);
    if (!was && now) w->entered[i] = f->now;
}

static void test_fixed_history(void) {
    struct fx f;
    struct world w;
    setup(&f, &w);
    check(&f, &w);
    for (int i = 0; i < 8; i++) {
        ingest(&f, &w, i, 0, i < 4 ? TQ_PRIORITY_LOW : TQ_PRIORITY_URGENT);
        f.now += 1000;
        check(&f, &w);
    }
    /* the claims take the urgent (newer) tickets first: the oldest stays */
    int got = claim(&f, &w, 0);
    TQ_CHECK(got >= 4);
    check(&f, &w);
    /* the oldest goes pending: the next one is the oldest; back to open: it re-enters now */
    set_status(&f, &w, 0, TQ_STATUS_PENDING);
    f.now += 1000;
    check(&f, &w);
    set_status(&f, &w, 0, TQ_STATUS_OPEN);
    f.now += 1000;
    check(&f, &w);
    /* a move to the other queue and back */
    move(&f, &w, 1, 1);
    f.now += 1000;
    check(&f, &w);
    move(&f, &w, 1, 0);
    f.now += 1000;
    check(&f, &w);
    /* released: the claimed ticket re-enters at now */
    release(&f, &w, (uint32_t)got);
    check(&f, &w);
    /* drain the queue: oldest 0 */
    while (claim(&f, &w, 0) >= 0)
        check(&f, &w);
    struct tq_queue_view v;
    TQ_CHECK_OK(tq_state_queue_get(f.s, w.tenant, w.q[0], &v), NULL);
    TQ_CHECK_UEQ(v.depth, 0);
    TQ_CHECK_UEQ(v.oldest_enqueued_ms, 0);
    fx_free(&f);
}

static void test_time_going_backwards(void) {
    struct fx f;
    struct world w;
    setup(&f, &w);
    for (int i = 0; i < 4; i++) {
        ingest(&f, &w, i, 0, TQ_PRIORITY_NORMAL);
        f.now += 1000;
    }
    f.now -= 10000; /* a record older than the queue's newest entry */
    ingest(&f, &w, 10, 0, TQ_PRIORITY_NORMAL);
    check(&f, &w);
    struct tq_queue_view v;
    TQ_CHECK_OK(tq_state_queue_get(f.s, w.tenant, w.q[0], &v), NULL);
    TQ_CHECK_UEQ(v.oldest_enqueued_ms, f.now); /* the late one is the oldest now */
    /* drain it, then time flows forward again: exact throughout */
    while (claim(&f, &w, 0) >= 0)
        check(&f, &w);
    f.now += 20000;
    for (int i = 20; i < 24; i++) {
        ingest(&f, &w, i, 0, TQ_PRIORITY_NORMAL);
        f.now += 1000;
        check(&f, &w);
    }
    fx_free(&f);
}

static void test_frozen_clock_stays_bounded(void) {
    struct fx f;
    struct world w;
    setup(&f, &w);
    for (int i = 0; i < 3; i++)
        ingest(&f, &w, i, 0, TQ_PRIORITY_NORMAL);
    check(&f, &w);
    uint64_t live0 = 0;
    for (int r = 0; r < 20000; r++) {
        int got = claim(&f, &w, 0);
        TQ_CHECK(got >= 0);
        release(&f, &w, (uint32_t)got);
        if (r == 100) live0 = tq_alloc_bytes_live();
    }
    check(&f, &w);
    /* the events array of the fixture grows (it keeps every event): discount it */
    uint64_t live1 = tq_alloc_bytes_live();
    TQ_CHECK(live1 < live0 + 64 * 1024);
    fx_free(&f);
}

static void test_random_history(uint64_t seed) {
    uint64_t r = seed;
    struct fx f;
    struct world w;
    setup(&f, &w);
    for (int step = 0; step < 4000; step++) {
        uint32_t op = tq_test_rand_below(&r, 100);
        if (op < 30 && w.n < TICKETS_MAX) {
            ingest(&f, &w, (int)tq_test_rand_below(&r, 400), (int)tq_test_rand_below(&r, 2),
                   (enum tq_priority)tq_test_rand_below(&r, TQ_PRIORITY_COUNT));
        } else if (op < 50) {
            (void)claim(&f, &w, (int)tq_test_rand_below(&r, 2));
        } else if (op < 65 && w.n > 0) {
            uint32_t i = tq_test_rand_below(&r, w.n);
            struct tq_ticket_view v = fx_ticket(&f, w.tenant, w.tickets[i]);
            if (v.assignee_id != 0 && v.status != TQ_STATUS_CLOSED) release(&f, &w, i);
        } else if (op < 75 && w.n > 0) {
            uint32_t i = tq_test_rand_below(&r, w.n);
            struct tq_ticket_view v = fx_ticket(&f, w.tenant, w.tickets[i]);
            int k = v.queue_id == w.q[0] ? 1 : 0;
            bool queued =
                v.assignee_id == 0 && (v.status == TQ_STATUS_NEW || v.status == TQ_STATUS_OPEN);
            if (v.status != TQ_STATUS_CLOSED && v.status != TQ_STATUS_SOLVED) {
                uint64_t keep = w.entered[i];
                move(&f, &w, i, k);
                if (!queued) w.entered[i] = keep;
            }
        } else if (op < 90 && w.n > 0) {
            uint32_t i = tq_test_rand_below(&r, w.n);
            struct tq_ticket_view v = fx_ticket(&f, w.tenant, w.tickets[i]);
            if (v.status == TQ_STATUS_OPEN || v.status == TQ_STATUS_NEW) {
                set_status(&f, &w, i, TQ_STATUS_PENDING);
            } else if (v.status == TQ_STATUS_PENDING) {
                set_status(&f, &w, i, TQ_STATUS_OPEN);
            }
        }
        uint32_t dt = tq_test_rand_below(&r, 100);
        if (dt < 60)
            f.now += dt * 37; /* often the same millisecond */
        else if (dt < 62)
            f.now -= 500; /* now and then a step back */
        check(&f, &w);
    }
    /* a snapshot round trip rebuilds the index: the same answers */
    void *blob = NULL;
    size_t len = 0;
    TQ_CHECK_OK(tq_state_serialize(f.s, &blob, &len, &f.err), &f.err);
    struct tq_state *s2 = NULL;
    TQ_CHECK_OK(tq_state_deserialize(blob, len, NULL, &s2, &f.err), &f.err);
    struct tq_state *s1 = f.s;
    f.s = s2;
    check(&f, &w);
    struct tq_error ie;
    TQ_CHECK(tq_state_check_invariants(s2, &ie));
    f.s = s1;
    tq_state_free(s2);
    tq_free(blob, len);
    fx_free(&f);
}

int main(void) {
    uint64_t seed = tq_test_seed("test_state_qage");
    test_fixed_history();
    test_time_going_backwards();
    test_frozen_clock_stays_bounded();
    test_random_history(seed);
    printf("test_state_qage: ok\n");
    return 0;
}
