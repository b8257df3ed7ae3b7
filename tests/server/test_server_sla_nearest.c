/* tests/server/test_server_sla_nearest.c: SlaNearest pages against a real ticketqd, through
 * libticketq (tq_client_sla_nearest).
 *
 * Goal: a dashboard's "tickets nearest their SLA deadline" page is exactly the tenant's running
 * SLA clocks with the earliest deadlines, in (deadline, ticket, metric) order, whatever else the
 * server holds, and it stays so across clock changes and a restart (the per-tenant SLA index is
 * derived: rebuilt from the snapshot and the log). Method: tests/fixture starts ticketqd on a
 * temp dir; two tenants ("acme" and "globex") with different SLA policies (per-priority targets,
 * globex's low priority beyond 49.7 days, past the index's 32-bit key window); 240 tickets
 * each, ingested interleaved with mixed priorities and channels (WhatsApp messages add a reply
 * window clock). The expected page is built from TicketGet of every ticket of the tenant
 * (every CLOCK_RUNNING clock with a deadline, sorted), independently of the index.
 *
 * Invariants checked, for limits 1, 7, 50 (the default) and 1000 (the maximum; the whole set):
 *   - the page has min(limit, running clocks) entries and equals the expected page entry by
 *     entry (ticket, metric, deadline);
 *   - a page never holds the other tenant's tickets;
 *   - after replies (first reply achieved), pending (clocks paused), priority changes
 *     (deadlines re-derived), solves and a merge, the pages are still exact;
 *   - after a snapshot and a kill -9 restart, the pages are identical to the ones before.
 */
#include "ticketq.h"
#include "tq_fixture.h"
#include "tq_test.h"
#include "tq_test_client.h"

#include <stdlib.h>
#include <string.h>

#define OK(expr)    TQ_CHECK_OK((expr), &err)
#define TICKETS     240 /* per tenant */
#define ENTRIES_MAX (TICKETS * 5)
#define LIMIT_MAX   1000 /* TQ_LIST_LIMIT_MAX */
#define MIN_MS      60000ull
#define HOUR_MS     3600000ull
#define DAY_MS      86400000ull

static struct tq_fixture fx;
static struct tq_error err;

struct due {
    uint64_t ticket, deadline;
    int metric;
};

struct tenant {
    const char *name;
    uint64_t id, queue, agent;
    struct tq_client *ta, *gateway, *agent_c;
    uint64_t tickets[TICKETS];
    uint32_t n;
};

static struct tq_client *connect_as(const char *token) {
    return tq_test_connect(fx.addr, token, &err);
}

static struct tq_client *issue_and_connect(struct tq_client *c, Ticketq__Role role) {
    char secret[TQ_CLIENT_TOKEN_BYTES_MAX + 1];
    struct tq_client_ids ids;
    OK(tq_client_token_issue(c, role, 0, "test", secret, sizeof(secret), &ids, &err));
    return connect_as(secret);
}

static void call_ok(struct tq_client *c, Ticketq__Request *req) {
    Ticketq__Response *resp = NULL;
    OK(tq_client_call(c, req, &resp, &err));
    OK(tq_client_response_error(resp, &err));
    tq_client_response_free(resp);
}

static void set_policy(struct tenant *t, const uint64_t first[4], const uint64_t work[4]) {
    uint64_t next[4], wait[4];
    for (int q = 0; q < 4; q++) {
        next[q] = first[q];
        wait[q] = 2 * work[q];
    }
    Ticketq__SlaTargets targets = TICKETQ__SLA_TARGETS__INIT;
    targets.n_first_reply_ms = targets.n_next_reply_ms = 4;
    targets.n_requester_wait_ms = targets.n_agent_work_ms = 4;
    targets.first_reply_ms = (uint64_t *)(uintptr_t)first;
    targets.next_reply_ms = next;
    targets.requester_wait_ms = wait;
    targets.agent_work_ms = (uint64_t *)(uintptr_t)work;
    Ticketq__SlaPolicy pol = TICKETQ__SLA_POLICY__INIT;
    pol.name = tq_test_mut("standard");
    pol.targets = &targets;
    Ticketq__SlaPolicy *pols[1] = {&pol};
    Ticketq__SlaPoliciesSet op = TICKETQ__SLA_POLICIES_SET__INIT;
    op.n_policies = 1;
    op.policies = pols;
    Ticketq__Request req = TICKETQ__REQUEST__INIT;
    req.op_case = TICKETQ__REQUEST__OP_SLA_POLICIES_SET;
    req.sla_policies_set = &op;
    call_ok(t->ta, &req);
}

static void setup_tenant(struct tq_client *admin, struct tenant *t, const char *name) {
    struct tq_client_ids ids;
    t->name = name;
    OK(tq_client_tenant_create(admin, name, &ids, &err));
    t->id = ids.tenant_id;
    tq_client_set_tenant(admin, t->id);
    t->ta = issue_and_connect(admin, TICKETQ__ROLE__TENANT_ADMIN);
    OK(tq_client_queue_create(t->ta, "support", false, &ids, &err));
    t->queue = ids.queue_id;
    OK(tq_client_agent_create(t->ta, "alice", 50, 50, &ids, &err));
    t->agent = ids.agent_id;
    t->gateway = issue_and_connect(t->ta, TICKETQ__ROLE__INTEGRATION);
    char secret[TQ_CLIENT_TOKEN_BYTES_MAX + 1];
    OK(tq_client_token_issue(t->ta, TICKETQ__ROLE__ROLE_AGENT, t->agent, "alice", secret,
                             sizeof(secret), &ids, &err));
    t->agent_c = connect_as(secret); /* replies by an agent achieve the reply clocks */
}

static void ingest(struct tenant *t, uint32_t i) {
    char from[64];
    snprintf(from, sizeof(from), "%s-customer-%u@example.com", t->name, i);
    Ticketq__Ingest in = TICKETQ__INGEST__INIT;
    in.channel = i % 3 == 0 ? TICKETQ__CHANNEL__WHATSAPP : TICKETQ__CHANNEL__EMAIL;
    if (in.channel == TICKETQ__CHANNEL__WHATSAPP) {
        snprintf(from, sizeof(from), "+86138%08u", i);
    }
    in.from = from;
    in.body = tq_test_mut("Where is my parcel?");
    in.has_queue_id = true;
    in.queue_id = t->queue;
    in.has_priority = true;
    in.priority = (Ticketq__Priority)((i * 7 + 3) % 4);
    struct tq_client_ids ids;
    OK(tq_client_ingest(t->gateway, &in, &ids, &err));
    TQ_CHECK(ids.ticket_created);
    t->tickets[t->n++] = ids.ticket_id;
}

static int due_cmp(const void *pa, const void *pb) {
    const struct due *a = pa, *b = pb;
    if (a->deadline != b->deadline) return a->deadline < b->deadline ? -1 : 1;
    if (a->ticket != b->ticket) return a->ticket < b->ticket ? -1 : 1;
    return a->metric - b->metric;
}

/* The expected clocks, from TicketGet of every ticket of the tenant (sorted). */
static uint32_t expected(struct tenant *t, struct due *out) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < t->n; i++) {
        Ticketq__Response *resp = NULL;
        OK(tq_client_ticket_get(t->ta, t->tickets[i], 0, 1, &resp, &err));
        OK(tq_client_response_error(resp, &err));
        const Ticketq__Ticket *tk = resp->ticket;
        TQ_CHECK(tk != NULL);
        for (size_t k = 0; tk->status != TICKETQ__STATUS__CLOSED && k < tk->n_sla; k++) {
            const Ticketq__SlaClock *c = tk->sla[k];
            if (c->state != TICKETQ__SLA_CLOCK_STATE__CLOCK_RUNNING || !c->has_deadline_ms ||
                c->deadline_ms == 0) {
                continue;
            }
            TQ_CHECK(n < ENTRIES_MAX);
            out[n++] = (struct due){t->tickets[i], c->deadline_ms, (int)c->metric};
        }
        tq_client_response_free(resp);
    }
    qsort(out, n, sizeof(*out), due_cmp);
    return n;
}

static uint32_t page(struct tenant *t, uint32_t limit, struct due *out) {
    Ticketq__Response *resp = NULL;
    OK(tq_client_sla_nearest(t->ta, limit, &resp, &err));
    OK(tq_client_response_error(resp, &err));
    TQ_CHECK(resp->sla_nearest != NULL);
    uint32_t n = (uint32_t)resp->sla_nearest->n_due;
    for (uint32_t i = 0; i < n; i++) {
        const Ticketq__SlaDue *d = resp->sla_nearest->due[i];
        out[i] = (struct due){d->ticket_id, d->deadline_ms, (int)d->metric};
    }
    tq_client_response_free(resp);
    return n;
}

static bool same(const struct due *x, const struct due *y, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        if (x[i].ticket != y[i].ticket || x[i].metric != y[i].metric ||
            x[i].deadline != y[i].deadline) {
            return false;
        }
    }
    return true;
}

static bool owns(const struct tenant *t, uint64_t ticket) {
    for (uint32_t i = 0; i < t->n; i++) {
        if (t->tickets[i] == ticket) return true;
    }
    return false;
}

/* Checks every page size against the expected clocks; returns the whole page (limit 1000). */
static uint32_t check(struct tenant *t, const struct tenant *other, struct due *whole) {
    static struct due want[ENTRIES_MAX], got[LIMIT_MAX];
    uint32_t total = expected(t, want);
    TQ_CHECK(total > 50); /* the pages below are real selections, not the whole set */
    static const uint32_t limits[] = {1, 7, 0, LIMIT_MAX};
    for (size_t k = 0; k < sizeof(limits) / sizeof(limits[0]); k++) {
        uint32_t limit = limits[k] == 0 ? 50 : limits[k];
        uint32_t n = page(t, limits[k], got);
        TQ_CHECK_EQ(n, total < limit ? total : limit);
        for (uint32_t i = 0; i < n; i++) {
            if (got[i].ticket != want[i].ticket || got[i].metric != want[i].metric ||
                got[i].deadline != want[i].deadline) {
                fprintf(stderr,
                        "%s limit %u entry %u: got (%" PRIu64 ", %d, %" PRIu64 ") want (%" PRIu64
                        ", %d, %" PRIu64 ")\n",
                        t->name, limit, i, got[i].ticket, got[i].metric, got[i].deadline,
                        want[i].ticket, want[i].metric, want[i].deadline);
                TQ_CHECK(false);
            }
            TQ_CHECK(owns(t, got[i].ticket));
            TQ_CHECK(!owns(other, got[i].ticket));
        }
        if (limit == LIMIT_MAX && whole != NULL) memcpy(whole, got, n * sizeof(*got));
        if (limit == LIMIT_MAX) return n;
    }
    return 0;
}

static void update(struct tenant *t, uint64_t ticket, int status, int priority) {
    Ticketq__TicketUpdate up = TICKETQ__TICKET_UPDATE__INIT;
    up.ticket_id = ticket;
    if (status >= 0) {
        up.has_status = true;
        up.status = (Ticketq__Status)status;
    }
    if (priority >= 0) {
        up.has_priority = true;
        up.priority = (Ticketq__Priority)priority;
    }
    struct tq_client_ids ids;
    OK(tq_client_ticket_update(t->ta, &up, &ids, &err));
}

static void change_clocks(struct tenant *t) {
    struct tq_client_ids ids;
    for (uint32_t i = 0; i < 30; i++) {
        OK(tq_client_reply(t->agent_c, t->tickets[i * 7 % t->n], "On it.", &ids, &err));
    }
    for (uint32_t i = 0; i < 20; i++)
        update(t, t->tickets[(i * 11 + 1) % t->n], TICKETQ__STATUS__PENDING, -1);
    for (uint32_t i = 0; i < 20; i++)
        update(t, t->tickets[(i * 13 + 2) % t->n], -1, (int)(i % 4));
    for (uint32_t i = 0; i < 10; i++)
        update(t, t->tickets[(i * 17 + 5) % t->n], TICKETQ__STATUS__SOLVED, -1);
    Ticketq__TicketMerge op = TICKETQ__TICKET_MERGE__INIT;
    op.source_id = t->tickets[t->n - 1];
    op.target_id = t->tickets[t->n - 2];
    Ticketq__Request req = TICKETQ__REQUEST__INIT;
    req.op_case = TICKETQ__REQUEST__OP_TICKET_MERGE;
    req.ticket_merge = &op;
    call_ok(t->ta, &req);
}

int main(void) {
    memset(&fx, 0, sizeof(fx));
    if (tq_fixture_start(&fx) != 0) return 1;
    struct tq_client *admin = connect_as(fx.admin_token);
    static struct tenant a, b;
    setup_tenant(admin, &a, "acme");
    setup_tenant(admin, &b, "globex");
    /* acme: 8 h / 4 h / 1 h / 10 min to first reply; globex: 60 days for low priority (beyond
     * the index's 32-bit window), 2 h / 30 min / 5 min otherwise */
    const uint64_t a_first[4] = {8 * HOUR_MS, 4 * HOUR_MS, HOUR_MS, 10 * MIN_MS};
    const uint64_t a_work[4] = {3 * DAY_MS, DAY_MS, 8 * HOUR_MS, 2 * HOUR_MS};
    const uint64_t b_first[4] = {60 * DAY_MS, 2 * HOUR_MS, 30 * MIN_MS, 5 * MIN_MS};
    const uint64_t b_work[4] = {90 * DAY_MS, 12 * HOUR_MS, 4 * HOUR_MS, HOUR_MS};
    set_policy(&a, a_first, a_work);
    set_policy(&b, b_first, b_work);
    for (uint32_t i = 0; i < TICKETS; i++) {
        ingest(&a, i);
        ingest(&b, i);
    }
    check(&a, &b, NULL);
    check(&b, &a, NULL);
    change_clocks(&a);
    change_clocks(&b);
    static struct due before_a[LIMIT_MAX], before_b[LIMIT_MAX];
    uint32_t na = check(&a, &b, before_a);
    uint32_t nb = check(&b, &a, before_b);
    /* a snapshot, then kill -9: the restarted server loads it and rebuilds the index */
    tq_client_set_tenant(admin, 0);
    Ticketq__SnapshotNow sn = TICKETQ__SNAPSHOT_NOW__INIT;
    Ticketq__Request req = TICKETQ__REQUEST__INIT;
    req.op_case = TICKETQ__REQUEST__OP_SNAPSHOT_NOW;
    req.snapshot_now = &sn;
    call_ok(admin, &req);
    /* one more change after the snapshot: replayed from the log on restart */
    update(&a, a.tickets[3], -1, TICKETQ__PRIORITY__URGENT);
    na = check(&a, &b, before_a);
    for (struct tenant *t = &a; t != NULL; t = t == &a ? &b : NULL) {
        tq_client_close(t->ta);
        tq_client_close(t->gateway);
        tq_client_close(t->agent_c);
    }
    tq_client_close(admin);
    tq_fixture_kill9(&fx);
    if (tq_fixture_start(&fx) != 0) return 1;
    admin = connect_as(fx.admin_token);
    tq_client_set_tenant(admin, a.id);
    a.ta = issue_and_connect(admin, TICKETQ__ROLE__TENANT_ADMIN);
    tq_client_set_tenant(admin, b.id);
    b.ta = issue_and_connect(admin, TICKETQ__ROLE__TENANT_ADMIN);
    static struct due after[LIMIT_MAX];
    TQ_CHECK_EQ(check(&a, &b, after), na);
    TQ_CHECK(same(after, before_a, na));
    TQ_CHECK_EQ(check(&b, &a, after), nb);
    TQ_CHECK(same(after, before_b, nb));
    printf("test_server_sla_nearest: ok (%u + %u running clocks, pages exact before and after a "
           "restart)\n",
           na, nb);
    tq_client_close(a.ta);
    tq_client_close(b.ta);
    tq_client_close(admin);
    tq_fixture_cleanup(&fx);
    return 0;
}
