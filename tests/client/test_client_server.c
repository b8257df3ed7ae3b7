/* tests/client/test_client_server.c: every operation through libticketq against a real ticketqd.
 *
 * Goal: the library and the server agree on the whole protocol. Method: tests/fixture starts
 * ticketqd on a temp dir, an ephemeral TCP port and a Unix socket; the test plays the roles of
 * a shop (server admin, tenant admin, an agent, a channel gateway, a foreign tenant) and drives
 * every operation with the typed helpers or tq_client_call, then the pipelined API (1000
 * requests in flight), a batch, a subscription with catch-up then live events, and a durable
 * consumer that acks, disconnects and resumes.
 *
 * Invariants checked: happy paths return the ids they created and reads show the writes
 * (message bodies come back from the log); the main errors are the documented codes
 * (unauthenticated, permission denied, not found, also for another tenant's ids); pipelined
 * responses come back in order with the ids of their requests; events arrive in strictly
 * increasing LSN order and a resumed consumer sees only events after its ack.
 */
#include "ticketq.h"
#include "tq_fixture.h"
#include "tq_test.h"
#include "tq_test_client.h"

#include <signal.h>
#include <unistd.h>

#define OK(expr)          TQ_CHECK_OK((expr), &err)
#define FAILS(expr, code) TQ_CHECK_ERR((expr), (code), &err)
#define PIPELINE_COUNT    1000

static struct tq_fixture fx;
static struct tq_error err;

static struct tq_client *connect_as(const char *addr, const char *token) {
    return tq_test_connect(addr, token, &err);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Issues a token with c and connects with it. */
static struct tq_client *issue_and_connect(struct tq_client *c, Ticketq__Role role,
                                           uint64_t agent_id, uint64_t *token_id) {
    char secret[TQ_CLIENT_TOKEN_BYTES_MAX + 1];
    struct tq_client_ids ids;
    OK(tq_client_token_issue(c, role, agent_id, "test", secret, sizeof(secret), &ids, &err));
    TQ_CHECK(ids.token_id != 0);
    TQ_CHECK(strlen(secret) >= 16);
    if (token_id != NULL) *token_id = ids.token_id;
    return connect_as(fx.addr, secret);
}

static Ticketq__Ingest make_ingest(Ticketq__Channel channel, const char *from, const char *body,
                                   const char *external_id) {
    Ticketq__Ingest in = TICKETQ__INGEST__INIT;
    in.channel = channel;
    in.from = tq_test_mut(from);
    in.body = tq_test_mut(body);
    in.external_id = tq_test_mut(external_id);
    return in;
}

static const Ticketq__SlaClock *find_clock(const Ticketq__Ticket *t, Ticketq__SlaMetric metric) {
    for (size_t i = 0; i < t->n_sla; i++) {
        if (t->sla[i]->metric == metric) return t->sla[i];
    }
    return NULL;
}

struct world {
    struct tq_client *admin, *ta, *agent, *gateway, *foreign;
    uint64_t tenant, other_tenant, queue, auto_queue, alice, bob, agent_token;
    uint64_t ticket, customer;
};

static void setup_tenants(struct world *w) {
    struct tq_client_ids ids;
    w->admin = connect_as(fx.addr, fx.admin_token);
    TQ_CHECK_EQ(tq_client_identity(w->admin)->role, TICKETQ__ROLE__SERVER_ADMIN);
    OK(tq_client_ping(w->admin, &err));
    struct tq_client_options wrong = {.addr = fx.addr, .token = "not-a-token"};
    struct tq_client *c = NULL;
    FAILS(tq_client_connect(&wrong, &c, &err), TQ_ERR_UNAUTHENTICATED);

    OK(tq_client_tenant_create(w->admin, "acme", &ids, &err));
    w->tenant = ids.tenant_id;
    TQ_CHECK(ids.lsn > 0);
    OK(tq_client_tenant_create(w->admin, "globex", &ids, &err));
    w->other_tenant = ids.tenant_id;
    TQ_CHECK(w->other_tenant != w->tenant);

    tq_client_set_tenant(w->admin, w->other_tenant);
    w->foreign = issue_and_connect(w->admin, TICKETQ__ROLE__TENANT_ADMIN, 0, NULL);
    tq_client_set_tenant(w->admin, w->tenant);
    w->ta = issue_and_connect(w->admin, TICKETQ__ROLE__TENANT_ADMIN, 0, NULL);
    TQ_CHECK_EQ(tq_client_identity(w->ta)->role, TICKETQ__ROLE__TENANT_ADMIN);
    TQ_CHECK_UEQ(tq_client_identity(w->ta)->tenant_id, w->tenant);
    /* a tenant admin cannot create tenants */
    FAILS(tq_client_tenant_create(w->ta, "evil", &ids, &err), TQ_ERR_PERMISSION_DENIED);
}

static void setup_shop(struct world *w) {
    struct tq_client_ids ids;
    OK(tq_client_queue_create(w->ta, "support", false, &ids, &err));
    w->queue = ids.queue_id;
    OK(tq_client_queue_create(w->ta, "auto", true, &ids, &err));
    w->auto_queue = ids.queue_id;
    TQ_CHECK(w->queue != 0 && w->auto_queue != 0 && w->queue != w->auto_queue);
    OK(tq_client_agent_create(w->ta, "alice", 3, 3, &ids, &err));
    w->alice = ids.agent_id;
    OK(tq_client_agent_create(w->ta, "bob", 2, 2, &ids, &err));
    w->bob = ids.agent_id;
    Ticketq__AgentUpdate up = TICKETQ__AGENT_UPDATE__INIT;
    up.has_agent_id = 1;
    up.agent_id = w->alice;
    up.has_presence = 1;
    up.presence = TICKETQ__PRESENCE__ONLINE;
    OK(tq_client_agent_update(w->ta, &up, &err));
    w->agent = issue_and_connect(w->ta, TICKETQ__ROLE__ROLE_AGENT, w->alice, &w->agent_token);
    TQ_CHECK_UEQ(tq_client_identity(w->agent)->agent_id, w->alice);
    w->gateway = issue_and_connect(w->ta, TICKETQ__ROLE__INTEGRATION, 0, NULL);

    /* settings: whatsapp routes to "support"; a first-reply SLA of 1 h at every priority */
    Ticketq__TenantSettings st = TICKETQ__TENANT_SETTINGS__INIT;
    Ticketq__ChannelQueue route = TICKETQ__CHANNEL_QUEUE__INIT, *routes[1] = {&route};
    route.channel = TICKETQ__CHANNEL__WHATSAPP;
    route.queue_id = w->queue;
    st.n_default_queues = 1;
    st.default_queues = routes;
    Ticketq__Request req = TICKETQ__REQUEST__INIT;
    req.op_case = TICKETQ__REQUEST__OP_TENANT_SETTINGS;
    req.tenant_settings = &st;
    Ticketq__Response *resp = NULL;
    OK(tq_client_call(w->ta, &req, &resp, &err));
    tq_client_response_free(resp);

    uint64_t hour[4] = {3600000, 3600000, 3600000, 3600000};
    Ticketq__SlaTargets targets = TICKETQ__SLA_TARGETS__INIT;
    targets.n_first_reply_ms = 4;
    targets.first_reply_ms = hour;
    Ticketq__SlaPolicy policy = TICKETQ__SLA_POLICY__INIT, *policies[1] = {&policy};
    policy.name = tq_test_mut("standard");
    policy.targets = &targets;
    Ticketq__SlaPoliciesSet sla = TICKETQ__SLA_POLICIES_SET__INIT;
    sla.n_policies = 1;
    sla.policies = policies;
    req.op_case = TICKETQ__REQUEST__OP_SLA_POLICIES_SET;
    req.sla_policies_set = &sla;
    OK(tq_client_call(w->ta, &req, &resp, &err));
    tq_client_response_free(resp);

    Ticketq__BusinessHoursSet hours = TICKETQ__BUSINESS_HOURS_SET__INIT;
    hours.tz_name = tq_test_mut("UTC");
    req.op_case = TICKETQ__REQUEST__OP_BUSINESS_HOURS_SET;
    req.business_hours_set = &hours;
    OK(tq_client_call(w->ta, &req, &resp, &err));
    tq_client_response_free(resp);
}

static void test_ticket_lifecycle(struct world *w) {
    struct tq_client_ids ids, again;
    Ticketq__Ingest in = make_ingest(TICKETQ__CHANNEL__WHATSAPP, "+8613800000001",
                                     "你好, where is my order?", "wamid.1");
    in.customer_name = tq_test_mut("Li Wei");
    OK(tq_client_ingest(w->gateway, &in, &ids, &err));
    TQ_CHECK(ids.ticket_created && ids.customer_created);
    TQ_CHECK(ids.ticket_id != 0 && ids.message_id != 0 && ids.customer_id != 0);
    w->ticket = ids.ticket_id;
    w->customer = ids.customer_id;
    OK(tq_client_ingest(w->gateway, &in, &again, &err)); /* same external id: idempotent */
    TQ_CHECK(again.duplicate);
    TQ_CHECK_UEQ(again.ticket_id, ids.ticket_id);
    TQ_CHECK_UEQ(again.message_id, ids.message_id);

    Ticketq__Response *resp = NULL;
    OK(tq_client_ticket_get(w->ta, w->ticket, 0, 0, &resp, &err));
    const Ticketq__Ticket *t = resp->ticket;
    TQ_CHECK_EQ(t->status, TICKETQ__STATUS__NEW);
    TQ_CHECK_UEQ(t->queue_id, w->queue);
    TQ_CHECK_UEQ(t->customer_id, w->customer);
    TQ_CHECK_UEQ(t->n_messages, 1);
    TQ_CHECK_STR_EQ(t->messages[0]->body, "你好, where is my order?");
    const Ticketq__SlaClock *clock = find_clock(t, TICKETQ__SLA_METRIC__FIRST_REPLY);
    TQ_CHECK(clock != NULL);
    TQ_CHECK_EQ(clock->state, TICKETQ__SLA_CLOCK_STATE__CLOCK_RUNNING);
    tq_client_response_free(resp);

    OK(tq_client_queue_list(w->ta, w->queue, 0, &resp, &err));
    TQ_CHECK_UEQ(resp->queue_list->queue->queue_id, w->queue);
    TQ_CHECK_UEQ(resp->queue_list->n_tickets, 1);
    TQ_CHECK_UEQ(resp->queue_list->tickets[0]->ticket_id, w->ticket);
    tq_client_response_free(resp);
    OK(tq_client_queues_get(w->ta, &resp, &err));
    TQ_CHECK_UEQ(resp->queues->n_queues, 2);
    tq_client_response_free(resp);
    OK(tq_client_sla_nearest(w->ta, 10, &resp, &err));
    TQ_CHECK(resp->sla_nearest->n_due >= 1);
    TQ_CHECK_UEQ(resp->sla_nearest->due[0]->ticket_id, w->ticket);
    TQ_CHECK_EQ(resp->sla_nearest->due[0]->metric, TICKETQ__SLA_METRIC__FIRST_REPLY);
    tq_client_response_free(resp);

    /* the agent claims it, replies, and the first-reply clock stops */
    OK(tq_client_claim(w->agent, 0, &ids, &err));
    TQ_CHECK_UEQ(ids.ticket_id, w->ticket);
    OK(tq_client_reply(w->agent, w->ticket, "We are on it!", &ids, &err));
    uint64_t reply_id = ids.message_id;
    TQ_CHECK(reply_id != 0);
    OK(tq_client_note(w->agent, w->ticket, "customer sounds upset", &ids, &err));
    OK(tq_client_ticket_get(w->agent, w->ticket, 0, 0, &resp, &err));
    t = resp->ticket;
    TQ_CHECK_UEQ(t->assignee_id, w->alice);
    TQ_CHECK_UEQ(t->n_messages, 3);
    TQ_CHECK_EQ(t->messages[2]->direction, TICKETQ__DIRECTION__NOTE);
    clock = find_clock(t, TICKETQ__SLA_METRIC__FIRST_REPLY);
    TQ_CHECK(clock != NULL);
    TQ_CHECK_EQ(clock->state, TICKETQ__SLA_CLOCK_STATE__CLOCK_ACHIEVED);
    TQ_CHECK(t->has_first_response_ms && t->first_response_ms > 0);
    tq_client_response_free(resp);

    /* the gateway delivers the reply (never the note) */
    OK(tq_client_outbox_take(w->gateway, TICKETQ__CHANNEL__WHATSAPP, 10, 0, &resp, &err));
    TQ_CHECK_UEQ(resp->outbox->n_messages, 1);
    TQ_CHECK_UEQ(resp->outbox->messages[0]->message_id, reply_id);
    TQ_CHECK_STR_EQ(resp->outbox->messages[0]->body, "We are on it!");
    tq_client_response_free(resp);
    OK(tq_client_outbox_ack(w->gateway, reply_id, TICKETQ__DELIVERY__DELIVERED, NULL, &err));

    /* update, release, transfer */
    const char *tags[] = {"vip"};
    Ticketq__TicketUpdate up = TICKETQ__TICKET_UPDATE__INIT;
    up.ticket_id = w->ticket;
    up.has_priority = 1;
    up.priority = TICKETQ__PRIORITY__HIGH;
    up.n_tags_add = 1;
    up.tags_add = (char **)(uintptr_t)tags;
    OK(tq_client_ticket_update(w->agent, &up, &ids, &err));
    OK(tq_client_ticket_get(w->ta, w->ticket, 0, 1, &resp, &err));
    TQ_CHECK_EQ(resp->ticket->priority, TICKETQ__PRIORITY__HIGH);
    TQ_CHECK_UEQ(resp->ticket->n_tags, 1);
    TQ_CHECK_STR_EQ(resp->ticket->tags[0], "vip");
    TQ_CHECK_UEQ(resp->ticket->n_messages, 1); /* message_limit 1 */
    tq_client_response_free(resp);
    OK(tq_client_release(w->agent, w->ticket, &err));
    OK(tq_client_transfer(w->ta, w->ticket, 0, w->bob, &err));
    OK(tq_client_ticket_get(w->ta, w->ticket, 0, 0, &resp, &err));
    TQ_CHECK_UEQ(resp->ticket->assignee_id, w->bob);
    tq_client_response_free(resp);

    /* errors: missing ids, foreign tenant ids look missing, roles */
    FAILS(tq_client_ticket_get(w->ta, 987654321, 0, 0, &resp, &err), TQ_ERR_NOT_FOUND);
    TQ_CHECK(resp == NULL);
    FAILS(tq_client_ticket_get(w->foreign, w->ticket, 0, 0, &resp, &err), TQ_ERR_NOT_FOUND);
    FAILS(tq_client_reply(w->foreign, w->ticket, "hi", &ids, &err), TQ_ERR_NOT_FOUND);
    FAILS(tq_client_queue_create(w->agent, "nope", false, &ids, &err), TQ_ERR_PERMISSION_DENIED);
    FAILS(tq_client_release(w->ta, 987654321, &err), TQ_ERR_NOT_FOUND);
}

static void test_customers(struct world *w) {
    Ticketq__Response *resp = NULL;
    OK(tq_client_customer_lookup(w->ta, TICKETQ__CHANNEL__WHATSAPP, "+8613800000001", &resp, &err));
    TQ_CHECK_UEQ(resp->customer->customer_id, w->customer);
    TQ_CHECK_STR_EQ(resp->customer->name, "Li Wei");
    tq_client_response_free(resp);
    FAILS(tq_client_customer_lookup(w->ta, TICKETQ__CHANNEL__EMAIL, "nobody@example.com", &resp,
                                    &err),
          TQ_ERR_NOT_FOUND);
    FAILS(tq_client_customer_lookup(w->foreign, TICKETQ__CHANNEL__WHATSAPP, "+8613800000001", &resp,
                                    &err),
          TQ_ERR_NOT_FOUND);

    Ticketq__CustomerCreate cc = TICKETQ__CUSTOMER_CREATE__INIT;
    cc.name = tq_test_mut("Li Wei (email)");
    Ticketq__Request req = TICKETQ__REQUEST__INIT;
    req.op_case = TICKETQ__REQUEST__OP_CUSTOMER_CREATE;
    req.customer_create = &cc;
    OK(tq_client_call(w->ta, &req, &resp, &err));
    struct tq_client_ids ids;
    tq_client_ids_from(resp, &ids);
    tq_client_response_free(resp);
    uint64_t second = ids.customer_id;
    TQ_CHECK(second != 0 && second != w->customer);
    OK(tq_client_customer_link(w->ta, second, TICKETQ__CHANNEL__EMAIL, "li@example.com", &err));
    OK(tq_client_customer_lookup(w->ta, TICKETQ__CHANNEL__EMAIL, "li@example.com", &resp, &err));
    TQ_CHECK_UEQ(resp->customer->customer_id, second);
    tq_client_response_free(resp);
    OK(tq_client_customer_merge(w->ta, w->customer, second, &err));
    Ticketq__CustomerGet cg = TICKETQ__CUSTOMER_GET__INIT;
    cg.customer_id = w->customer;
    req.op_case = TICKETQ__REQUEST__OP_CUSTOMER_GET;
    req.customer_get = &cg;
    OK(tq_client_call(w->ta, &req, &resp, &err));
    TQ_CHECK_UEQ(resp->customer->n_identities, 2); /* the survivor has both identities */
    tq_client_response_free(resp);
}

/* The operations without a typed helper, through tq_client_call. */
static void test_generic_ops(struct world *w) {
    Ticketq__Response *resp = NULL;
    Ticketq__Request req = TICKETQ__REQUEST__INIT;

    Ticketq__QueueUpdate qu = TICKETQ__QUEUE_UPDATE__INIT;
    qu.queue_id = w->queue;
    qu.name = tq_test_mut("support-tier1");
    req.op_case = TICKETQ__REQUEST__OP_QUEUE_UPDATE;
    req.queue_update = &qu;
    OK(tq_client_call(w->ta, &req, &resp, &err));
    tq_client_response_free(resp);
    OK(tq_client_queue_list(w->ta, w->queue, 1, &resp, &err));
    TQ_CHECK_STR_EQ(resp->queue_list->queue->name, "support-tier1");
    tq_client_response_free(resp);

    Ticketq__AgentGet ag = TICKETQ__AGENT_GET__INIT; /* unset: the token's own agent */
    req.op_case = TICKETQ__REQUEST__OP_AGENT_GET;
    req.agent_get = &ag;
    OK(tq_client_call(w->agent, &req, &resp, &err));
    TQ_CHECK_UEQ(resp->agent->agent_id, w->alice);
    TQ_CHECK_STR_EQ(resp->agent->name, "alice");
    TQ_CHECK_EQ(resp->agent->presence, TICKETQ__PRESENCE__ONLINE);
    tq_client_response_free(resp);

    /* two tickets (different customers, so never threaded together), merged */
    struct tq_client_ids a, b;
    Ticketq__Ingest in =
        make_ingest(TICKETQ__CHANNEL__EMAIL, "merge@example.com", "first", "merge-1");
    in.has_queue_id = 1;
    in.queue_id = w->queue;
    in.subject = tq_test_mut("order 1");
    OK(tq_client_ingest(w->gateway, &in, &a, &err));
    in.channel = TICKETQ__CHANNEL__SMS;
    in.from = tq_test_mut("+19995550000");
    in.external_id = tq_test_mut("merge-2");
    in.subject = tq_test_mut("order 1 again");
    in.body = tq_test_mut("second");
    OK(tq_client_ingest(w->gateway, &in, &b, &err));
    TQ_CHECK(a.ticket_id != b.ticket_id);
    {
        Ticketq__TicketMerge tm = TICKETQ__TICKET_MERGE__INIT;
        tm.source_id = b.ticket_id;
        tm.target_id = a.ticket_id;
        req.op_case = TICKETQ__REQUEST__OP_TICKET_MERGE;
        req.ticket_merge = &tm;
        OK(tq_client_call(w->ta, &req, &resp, &err));
        tq_client_response_free(resp);
        OK(tq_client_ticket_get(w->ta, b.ticket_id, 0, 0, &resp, &err));
        TQ_CHECK_UEQ(resp->ticket->merged_into_id, a.ticket_id);
        tq_client_response_free(resp);
    }
    OK(tq_client_ticket_get(w->ta, a.ticket_id, 0, 0, &resp, &err));
    TQ_CHECK_GE(resp->ticket->n_messages, 1);
    tq_client_response_free(resp);

    /* the server admin's stats cover every tenant; a tenant's only its own */
    OK(tq_client_stats(w->ta, &resp, &err));
    uint64_t tenant_tickets = resp->stats->tickets;
    tq_client_response_free(resp);
    tq_client_set_tenant(w->admin, 0);
    OK(tq_client_stats(w->admin, &resp, &err));
    TQ_CHECK_UEQ(resp->stats->tenant_count, 2);
    TQ_CHECK_GE(resp->stats->tickets, tenant_tickets);
    tq_client_response_free(resp);
    Ticketq__SnapshotNow snap = TICKETQ__SNAPSHOT_NOW__INIT; /* server admin only */
    req.op_case = TICKETQ__REQUEST__OP_SNAPSHOT_NOW;
    req.snapshot_now = &snap;
    OK(tq_client_call(w->admin, &req, &resp, &err));
    tq_client_response_free(resp);
    FAILS(tq_client_call(w->ta, &req, &resp, &err), TQ_ERR_PERMISSION_DENIED);
    tq_client_response_free(resp);
    tq_client_set_tenant(w->admin, w->tenant);
    OK(tq_client_stats(w->foreign, &resp, &err));
    TQ_CHECK_UEQ(resp->stats->tickets, 0);
    tq_client_response_free(resp);
}

/* Auto-assignment: a ticket in an auto-assign queue goes to the online agent by itself. */
static void test_auto_assign(struct world *w) {
    Ticketq__Ingest in = make_ingest(TICKETQ__CHANNEL__WEBCHAT, "visitor-7", "hello?", "web-1");
    in.has_queue_id = 1;
    in.queue_id = w->auto_queue;
    struct tq_client_ids ids;
    OK(tq_client_ingest(w->gateway, &in, &ids, &err));
    uint64_t assignee = 0;
    for (int i = 0; i < 100 && assignee == 0; i++) {
        Ticketq__Response *resp = NULL;
        OK(tq_client_ticket_get(w->ta, ids.ticket_id, 0, 0, &resp, &err));
        assignee = resp->ticket->has_assignee_id ? resp->ticket->assignee_id : 0;
        tq_client_response_free(resp);
        if (assignee == 0) sleep_ms(50);
    }
    TQ_CHECK_UEQ(assignee, w->alice); /* bob is offline; alice is online with capacity */
}

static void test_pipeline_and_batch(struct world *w) {
    Ticketq__Response *resp = NULL;
    OK(tq_client_stats(w->ta, &resp, &err));
    uint64_t tickets_before = resp->stats->tickets;
    tq_client_response_free(resp);

    static char from[PIPELINE_COUNT][32], ext[PIPELINE_COUNT][32];
    uint64_t ids[PIPELINE_COUNT];
    for (size_t i = 0; i < PIPELINE_COUNT; i++) {
        snprintf(from[i], sizeof(from[i]), "user%zu@example.com", i);
        snprintf(ext[i], sizeof(ext[i]), "mail-%zu", i);
        Ticketq__Ingest in = make_ingest(TICKETQ__CHANNEL__EMAIL, from[i], "pipelined", ext[i]);
        in.has_queue_id = 1;
        in.queue_id = w->queue;
        Ticketq__Request req = TICKETQ__REQUEST__INIT;
        req.op_case = TICKETQ__REQUEST__OP_INGEST;
        req.ingest = &in;
        OK(tq_client_submit(w->gateway, &req, &ids[i], &err));
    }
    TQ_CHECK_UEQ(tq_client_inflight(w->gateway), PIPELINE_COUNT);
    OK(tq_client_flush(w->gateway, &err));
    uint64_t last_ticket = 0;
    for (size_t i = 0; i < PIPELINE_COUNT; i++) {
        OK(tq_client_collect(w->gateway, &resp, &err));
        TQ_CHECK_UEQ(resp->id, ids[i]);
        OK(tq_client_response_error(resp, &err));
        struct tq_client_ids got;
        tq_client_ids_from(resp, &got);
        TQ_CHECK(got.ticket_created);
        TQ_CHECK_GT(got.ticket_id, last_ticket); /* applied in submission order */
        last_ticket = got.ticket_id;
        tq_client_response_free(resp);
    }
    OK(tq_client_stats(w->ta, &resp, &err));
    TQ_CHECK_UEQ(resp->stats->tickets, tickets_before + PIPELINE_COUNT);
    TQ_CHECK(resp->stats->has_last_lsn && resp->stats->last_lsn > 0);
    TQ_CHECK_UEQ(resp->stats->n_tickets_by_status, 6);
    tq_client_response_free(resp);

    /* a batch: nine ingests and one update of a missing ticket, each with its own result */
    Ticketq__Ingest ins[9];
    Ticketq__TicketUpdate bad = TICKETQ__TICKET_UPDATE__INIT;
    bad.ticket_id = 987654321;
    bad.has_priority = 1;
    bad.priority = TICKETQ__PRIORITY__LOW;
    Ticketq__Request ops[10], *ptrs[10];
    static char batch_ext[9][16];
    for (size_t i = 0; i < 10; i++) {
        ticketq__request__init(&ops[i]);
        ptrs[i] = &ops[i];
        if (i == 5) {
            ops[i].op_case = TICKETQ__REQUEST__OP_TICKET_UPDATE;
            ops[i].ticket_update = &bad;
            continue;
        }
        size_t k = i < 5 ? i : i - 1;
        snprintf(batch_ext[k], sizeof(batch_ext[k]), "batch-%zu", k);
        ins[k] = make_ingest(TICKETQ__CHANNEL__SMS, "+15550001", "batched", batch_ext[k]);
        ins[k].has_queue_id = 1; /* sms has no default queue in this tenant */
        ins[k].queue_id = w->queue;
        ops[i].op_case = TICKETQ__REQUEST__OP_INGEST;
        ops[i].ingest = &ins[k];
    }
    OK(tq_client_batch(w->ta, ptrs, 10, &resp, &err));
    TQ_CHECK_UEQ(resp->batch->n_results, 10);
    for (size_t i = 0; i < 10; i++) {
        const Ticketq__Response *r = resp->batch->results[i];
        TQ_CHECK_UEQ(r->id, i + 1);
        if (i == 5) {
            TQ_CHECK_ERR(tq_client_response_error(r, &err), TQ_ERR_NOT_FOUND, &err);
        } else {
            OK(tq_client_response_error(r, &err));
        }
    }
    tq_client_response_free(resp);
}

/* A Batch made only of Ingests takes the server's two-pass path (server/dispatch.c,
 * batch_ingest): the gate and the command of every op first, then apply with the state's
 * prefetch running up to 15 ops ahead. Its results must be those of applying the ops one by
 * one: a later op sees the customer, ticket and idempotency key an earlier op of the same
 * batch created (although its prefetch ran before that op was applied), and an op refused by
 * validation (channel out of range) or at the gate (another tenant) leaves the rest alone.
 * 40 ops, so every prefetch stage runs; 10 of them first contacts. */
static void test_ingest_batch(struct world *w) {
    enum { N = 40, BAD_CHANNEL = 5, DUP_OF_2 = 9, FOREIGN = 13, DUP_OF_29 = 30 };
    static char ext[N][16], from[N][16];
    Ticketq__Ingest ins[N];
    Ticketq__Request ops[N], *ptrs[N];
    for (size_t i = 0; i < N; i++) {
        /* two returning customers alternate; every fourth op is a first contact */
        snprintf(from[i], sizeof(from[i]), "+15557700%02zu", i % 4 == 3 ? i : i % 2);
        snprintf(ext[i], sizeof(ext[i]), "ib-%zu", i);
        if (i == DUP_OF_2 || i == DUP_OF_29) { /* a resend of an earlier op of this batch */
            size_t orig = i == DUP_OF_2 ? 2 : 29;
            memcpy(from[i], from[orig], sizeof(from[i]));
            memcpy(ext[i], ext[orig], sizeof(ext[i]));
        }
        ins[i] = make_ingest(TICKETQ__CHANNEL__SMS, from[i], "batched ingest", ext[i]);
        ins[i].has_queue_id = 1;
        ins[i].queue_id = w->queue;
        if (i == BAD_CHANNEL) ins[i].channel = (Ticketq__Channel)99;
        ticketq__request__init(&ops[i]);
        ops[i].op_case = TICKETQ__REQUEST__OP_INGEST;
        ops[i].ingest = &ins[i];
        if (i == FOREIGN) {
            ops[i].has_tenant_id = 1;
            ops[i].tenant_id = w->other_tenant;
        }
        ptrs[i] = &ops[i];
    }
    Ticketq__Response *resp = NULL;
    OK(tq_client_batch(w->ta, ptrs, N, &resp, &err));
    TQ_CHECK_UEQ(resp->batch->n_results, N);
    const Ticketq__Ids *first[N] = {0}; /* by op: the first ok op with the same sender */
    uint64_t last_message = 0, last_lsn = 0;
    for (size_t i = 0; i < N; i++) {
        const Ticketq__Response *r = resp->batch->results[i];
        TQ_CHECK_UEQ(r->id, i + 1);
        if (i == BAD_CHANNEL) {
            TQ_CHECK_ERR(tq_client_response_error(r, &err), TQ_ERR_INVALID_ARGUMENT, &err);
            continue;
        }
        if (i == FOREIGN) {
            TQ_CHECK_ERR(tq_client_response_error(r, &err), TQ_ERR_NOT_FOUND, &err);
            continue;
        }
        OK(tq_client_response_error(r, &err));
        TQ_CHECK_EQ(r->result_case, TICKETQ__RESPONSE__RESULT_IDS);
        const Ticketq__Ids *ids = r->ids;
        TQ_CHECK(r->has_lsn && r->lsn > last_lsn);
        last_lsn = r->lsn;
        if (i == DUP_OF_2 || i == DUP_OF_29) {
            const Ticketq__Ids *orig = resp->batch->results[i == DUP_OF_2 ? 2 : 29]->ids;
            TQ_CHECK(ids->duplicate);
            TQ_CHECK_UEQ(ids->message_id, orig->message_id);
            TQ_CHECK_UEQ(ids->ticket_id, orig->ticket_id);
            TQ_CHECK(!ids->ticket_created && !ids->customer_created);
            continue;
        }
        TQ_CHECK(!ids->duplicate);
        TQ_CHECK_UINT_OP(ids->message_id, >, last_message); /* applied in op order */
        last_message = ids->message_id;
        size_t j = 0;
        while (j < i && (first[j] == NULL || strcmp(from[j], from[i]) != 0))
            j++;
        if (j == i) { /* first op of this sender in the batch: a new customer and ticket */
            first[i] = ids;
            TQ_CHECK(ids->customer_created);
            TQ_CHECK(ids->ticket_created);
        } else { /* appended to the ticket an earlier op of this batch opened */
            TQ_CHECK(!ids->customer_created);
            TQ_CHECK(!ids->ticket_created);
            TQ_CHECK_UEQ(ids->customer_id, first[j]->customer_id);
            TQ_CHECK_UEQ(ids->ticket_id, first[j]->ticket_id);
        }
    }
    tq_client_response_free(resp);
}

/* Reads events until one with type, ticket_id and message_id (0 = any) shows up; checks the
 * LSN order on the way. */
static uint64_t await_event(struct tq_subscription *sub, Ticketq__EventType type,
                            uint64_t ticket_id, uint64_t message_id, uint64_t *last_lsn) {
    for (int i = 0; i < 100000; i++) {
        const Ticketq__Event *ev = NULL;
        OK(tq_subscription_next(sub, &ev, 10000, &err));
        TQ_CHECK(ev != NULL);            /* 10 s without the expected event */
        TQ_CHECK_GE(ev->lsn, *last_lsn); /* one record may carry several events */
        *last_lsn = ev->lsn;
        if (ev->type == type && (ticket_id == 0 || ev->ticket_id == ticket_id) &&
            (message_id == 0 || ev->message_id == message_id)) {
            return ev->lsn;
        }
    }
    TQ_CHECK(false);
    return 0;
}

static void test_subscribe(struct world *w) {
    /* catch-up from LSN 0 finds the first ticket's creation and its reply */
    struct tq_client *c = connect_as(fx.addr, NULL);
    tq_client_close(c);
    struct tq_client *sc = issue_and_connect(w->ta, TICKETQ__ROLE__INTEGRATION, 0, NULL);
    struct tq_subscribe_options o = {.from_lsn = 0};
    struct tq_subscription *sub = NULL;
    OK(tq_client_subscribe(sc, &o, &sub, &err));
    uint64_t last = 0;
    await_event(sub, TICKETQ__EVENT_TYPE__TICKET_CREATED, w->ticket, 0, &last);
    await_event(sub, TICKETQ__EVENT_TYPE__MESSAGE_ADDED, w->ticket, 0, &last);
    /* live: a new message appears */
    Ticketq__Ingest in =
        make_ingest(TICKETQ__CHANNEL__WHATSAPP, "+8613800000001", "any news?", "wamid.2");
    struct tq_client_ids ids;
    OK(tq_client_ingest(w->gateway, &in, &ids, &err));
    TQ_CHECK_UEQ(ids.ticket_id, w->ticket);
    uint64_t live =
        await_event(sub, TICKETQ__EVENT_TYPE__MESSAGE_ADDED, w->ticket, ids.message_id, &last);
    TQ_CHECK_UEQ(live, ids.lsn);
    /* blocking calls still work on the subscribed connection */
    OK(tq_client_ping(sc, &err));
    OK(tq_subscription_close(sub, &err));
    OK(tq_client_ping(sc, &err));
    tq_client_close(sc);

    /* filters: only MESSAGE_ADDED of the first ticket */
    sc = issue_and_connect(w->ta, TICKETQ__ROLE__INTEGRATION, 0, NULL);
    Ticketq__EventType only[1] = {TICKETQ__EVENT_TYPE__MESSAGE_ADDED};
    struct tq_subscribe_options f = {
        .from_lsn = 0, .types = only, .type_count = 1, .ticket_id = w->ticket};
    OK(tq_client_subscribe(sc, &f, &sub, &err));
    int seen = 0;
    for (;;) {
        const Ticketq__Event *fe = NULL;
        OK(tq_subscription_next(sub, &fe, 500, &err));
        if (fe == NULL) break; /* caught up and quiet */
        TQ_CHECK_EQ(fe->type, TICKETQ__EVENT_TYPE__MESSAGE_ADDED);
        TQ_CHECK_UEQ(fe->ticket_id, w->ticket);
        seen++;
    }
    TQ_CHECK_EQ(seen, 4); /* inbound, reply, note, the live inbound above */
    tq_client_close(sc);

    /* durable consumer: read a few events, ack, disconnect, resume after the ack */
    sc = issue_and_connect(w->ta, TICKETQ__ROLE__INTEGRATION, 0, NULL);
    struct tq_subscribe_options d = {.from_lsn = 0, .consumer = "webhooks"};
    OK(tq_client_subscribe(sc, &d, &sub, &err));
    uint64_t acked = 0;
    for (int i = 0; i < 5; i++) {
        const Ticketq__Event *ev = NULL;
        OK(tq_subscription_next(sub, &ev, 10000, &err));
        TQ_CHECK(ev != NULL);
        acked = ev->lsn;
    }
    OK(tq_client_consumer_ack(sc, "webhooks", acked, &err));
    tq_client_close(sc);
    sc = issue_and_connect(w->ta, TICKETQ__ROLE__INTEGRATION, 0, NULL);
    OK(tq_client_subscribe(sc, &d, &sub, &err));
    const Ticketq__Event *ev = NULL;
    OK(tq_subscription_next(sub, &ev, 10000, &err));
    TQ_CHECK(ev != NULL);
    TQ_CHECK_GT(ev->lsn, acked);
    tq_client_close(sc);
}

static void test_revoke_and_unix(struct world *w) {
    OK(tq_client_token_revoke(w->ta, w->agent_token, &err));
    FAILS(tq_client_ping(w->agent, &err), TQ_ERR_UNAUTHENTICATED); /* also on open connections */
    char addr[400];
    snprintf(addr, sizeof(addr), "unix:%s", fx.unix_path);
    struct tq_client *u = connect_as(addr, fx.admin_token);
    OK(tq_client_ping(u, &err));
    tq_client_close(u);
    /* a host name: "localhost" may resolve to ::1 first, where nobody listens */
    const char *port = strrchr(fx.addr, ':');
    snprintf(addr, sizeof(addr), "localhost%s", port);
    u = connect_as(addr, fx.admin_token);
    OK(tq_client_ping(u, &err));
    tq_client_close(u);
}

/* A failed check exits: never leave the server running behind (nor its temp dir). */
static void stop_server_at_exit(void) {
    if (fx.pid > 0) tq_fixture_kill9(&fx);
    if (fx.dir[0] != '\0') tq_fixture_cleanup(&fx);
}

int main(void) {
    tq_test_seed("test_client_server");
    signal(SIGPIPE, SIG_IGN);
    if (access(tq_fixture_bin("server/ticketqd"), X_OK) != 0) {
        printf("no ticketqd at %s: skipped\n", tq_fixture_bin("server/ticketqd"));
        return TQ_TEST_SKIP;
    }
    atexit(stop_server_at_exit);
    fx.with_unix = true;
    TQ_CHECK_EQ(tq_fixture_start(&fx), 0);
    struct world w;
    memset(&w, 0, sizeof(w));
    setup_tenants(&w);
    setup_shop(&w);
    test_ticket_lifecycle(&w);
    test_customers(&w);
    test_generic_ops(&w);
    test_auto_assign(&w);
    test_pipeline_and_batch(&w);
    test_ingest_batch(&w);
    test_subscribe(&w);
    test_revoke_and_unix(&w);
    tq_client_close(w.admin);
    tq_client_close(w.ta);
    tq_client_close(w.agent);
    tq_client_close(w.gateway);
    tq_client_close(w.foreign);
    TQ_CHECK_EQ(tq_fixture_stop(&fx), 0);
    tq_fixture_cleanup(&fx);
    printf("test_client_server: ok\n");
    return 0;
}
