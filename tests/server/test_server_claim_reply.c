/* tests/server/test_server_claim_reply.c: Claim with a reply (claim-and-reply in one round
 * trip) against a real ticketqd, through libticketq (tq_client_claim_reply).
 *
 * Goal: one request claims the best ticket, appends the agent's reply and sets the status, and a
 * request that cannot be carried out in full changes nothing. Method: tests/fixture starts
 * ticketqd (--body-max 1024) on a temp dir; a tenant with one queue, agents alice and bob, an
 * agent token for alice and an integration token; inbound messages through the integration.
 *
 * Invariants checked:
 *   - an empty queue answers NOT_FOUND and writes nothing (the log's last LSN is unchanged);
 *   - an invalid reply (bad UTF-8, over --body-max, a status a claimed ticket cannot move to,
 *     a status out of range) answers INVALID_ARGUMENT and claims nothing: same last LSN, same
 *     queue depth, the agent still has no ticket;
 *   - the normal case: the best ticket (the older one) is assigned to the agent, the reply is
 *     its last message (outbound, authored by the agent, the body as sent), its status is
 *     PENDING, it left the queue, and a subscriber sees ASSIGNED, MESSAGE_ADDED and the status
 *     change in that order; the ids carry ticket, message and agent;
 *   - roles: an integration token may not claim (PERMISSION_DENIED); an agent token acts only
 *     as its own agent; a tenant admin must name the agent and the reply is then that agent's;
 *     another tenant's admin cannot use this tenant's agent (NOT_FOUND); none of the refusals
 *     claims anything;
 *   - after a restart everything acknowledged is still there.
 */
#include "ticketq.h"
#include "tq_fixture.h"
#include "tq_test.h"
#include "tq_test_client.h"

#include <string.h>

#define OK(expr)          TQ_CHECK_OK((expr), &err)
#define FAILS(expr, code) TQ_CHECK_ERR((expr), (code), &err)
#define BODY_MAX          1024
#define EVENT_WAIT_MS     10000

static struct tq_fixture fx;
static struct tq_error err;

static struct tq_client *connect_as(const char *token) {
    return tq_test_connect(fx.addr, token, &err);
}

static struct tq_client *issue_and_connect(struct tq_client *c, Ticketq__Role role,
                                           uint64_t agent_id) {
    char secret[TQ_CLIENT_TOKEN_BYTES_MAX + 1];
    struct tq_client_ids ids;
    OK(tq_client_token_issue(c, role, agent_id, "test", secret, sizeof(secret), &ids, &err));
    return connect_as(secret);
}

struct world {
    struct tq_client *admin, *ta, *alice_c, *gateway, *foreign;
    uint64_t tenant, queue, alice, bob;
};

static uint64_t last_lsn(struct world *w) {
    Ticketq__Response *resp = NULL;
    OK(tq_client_stats(w->admin, &resp, &err));
    uint64_t lsn = resp->stats->last_lsn;
    tq_client_response_free(resp);
    return lsn;
}

static uint32_t queue_depth(struct world *w) {
    Ticketq__Response *resp = NULL;
    OK(tq_client_queue_list(w->ta, w->queue, 0, &resp, &err));
    uint32_t depth = (uint32_t)resp->queue_list->n_tickets;
    tq_client_response_free(resp);
    return depth;
}

static uint32_t agent_load(struct world *w, uint64_t agent) {
    Ticketq__AgentGet op = TICKETQ__AGENT_GET__INIT;
    op.has_agent_id = true;
    op.agent_id = agent;
    Ticketq__Request req = TICKETQ__REQUEST__INIT;
    req.op_case = TICKETQ__REQUEST__OP_AGENT_GET;
    req.agent_get = &op;
    Ticketq__Response *resp = NULL;
    OK(tq_client_call(w->ta, &req, &resp, &err));
    OK(tq_client_response_error(resp, &err));
    uint32_t load = resp->agent->load_live + resp->agent->load_async;
    tq_client_response_free(resp);
    return load;
}

static uint64_t ingest(struct world *w, const char *from) {
    Ticketq__Ingest in = TICKETQ__INGEST__INIT;
    in.channel = TICKETQ__CHANNEL__EMAIL;
    in.from = tq_test_mut(from);
    in.body = tq_test_mut("Where is my parcel?");
    in.has_queue_id = true;
    in.queue_id = w->queue;
    struct tq_client_ids ids;
    OK(tq_client_ingest(w->gateway, &in, &ids, &err));
    TQ_CHECK(ids.ticket_created);
    return ids.ticket_id;
}

static void setup(struct world *w) {
    struct tq_client_ids ids;
    w->admin = connect_as(fx.admin_token);
    OK(tq_client_tenant_create(w->admin, "acme", &ids, &err));
    w->tenant = ids.tenant_id;
    OK(tq_client_tenant_create(w->admin, "globex", &ids, &err));
    tq_client_set_tenant(w->admin, ids.tenant_id);
    w->foreign = issue_and_connect(w->admin, TICKETQ__ROLE__TENANT_ADMIN, 0);
    tq_client_set_tenant(w->admin, w->tenant);
    w->ta = issue_and_connect(w->admin, TICKETQ__ROLE__TENANT_ADMIN, 0);
    OK(tq_client_queue_create(w->ta, "support", false, &ids, &err));
    w->queue = ids.queue_id;
    OK(tq_client_agent_create(w->ta, "alice", 5, 5, &ids, &err));
    w->alice = ids.agent_id;
    OK(tq_client_agent_create(w->ta, "bob", 5, 5, &ids, &err));
    w->bob = ids.agent_id;
    w->alice_c = issue_and_connect(w->ta, TICKETQ__ROLE__ROLE_AGENT, w->alice);
    w->gateway = issue_and_connect(w->ta, TICKETQ__ROLE__INTEGRATION, 0);
}

/* A claim-and-reply that must be refused with `code` and leave everything as it was. */
static void refused(struct world *w, struct tq_client *c, uint64_t agent, const char *body,
                    int status, enum tq_err code) {
    uint64_t lsn = last_lsn(w);
    uint32_t depth = queue_depth(w);
    uint32_t load_alice = agent_load(w, w->alice), load_bob = agent_load(w, w->bob);
    struct tq_client_ids ids;
    FAILS(tq_client_claim_reply(c, agent, &w->queue, 1, body, status, &ids, &err), code);
    TQ_CHECK_UEQ(last_lsn(w), lsn);
    TQ_CHECK_EQ(queue_depth(w), depth);
    TQ_CHECK_EQ(agent_load(w, w->alice), load_alice);
    TQ_CHECK_EQ(agent_load(w, w->bob), load_bob);
}

static void test_empty_and_invalid(struct world *w) {
    refused(w, w->alice_c, 0, "hello", TICKETQ__STATUS__PENDING, TQ_ERR_NOT_FOUND);
    TQ_CHECK(strstr(err.msg, "no ticket") != NULL);
    ingest(w, "ann@example.com");
    ingest(w, "ben@example.com");
    TQ_CHECK_EQ(queue_depth(w), 2);
    refused(w, w->alice_c, 0, "caf\xc3", TICKETQ__STATUS__PENDING, TQ_ERR_INVALID_ARGUMENT);
    TQ_CHECK(strstr(err.msg, "UTF-8") != NULL);
    TQ_CHECK(strstr(err.msg, "nothing claimed") != NULL);
    static char big[BODY_MAX + 2];
    memset(big, 'x', BODY_MAX + 1);
    refused(w, w->alice_c, 0, big, TICKETQ__STATUS__PENDING, TQ_ERR_INVALID_ARGUMENT);
    TQ_CHECK(strstr(err.msg, "body-max") != NULL);
    big[BODY_MAX] = '\0'; /* exactly at the limit is fine: proved by the claim below */
    refused(w, w->alice_c, 0, "bye", TICKETQ__STATUS__CLOSED, TQ_ERR_INVALID_ARGUMENT);
    refused(w, w->alice_c, 0, "back to new", TICKETQ__STATUS__NEW, TQ_ERR_INVALID_ARGUMENT);
    refused(w, w->alice_c, 0, "range", 77, TQ_ERR_INVALID_ARGUMENT);
}

static void test_roles(struct world *w) {
    refused(w, w->gateway, w->alice, "from a gateway", -1, TQ_ERR_PERMISSION_DENIED);
    refused(w, w->alice_c, w->bob, "as bob", -1, TQ_ERR_PERMISSION_DENIED);
    refused(w, w->ta, 0, "for whom?", -1, TQ_ERR_INVALID_ARGUMENT);
    refused(w, w->foreign, w->alice, "not my tenant", -1, TQ_ERR_NOT_FOUND);
}

/* Reads events until one of `type` for `ticket` arrives; returns it (owned by sub). */
static const Ticketq__Event *next_of(struct tq_subscription *sub, Ticketq__EventType type,
                                     uint64_t ticket) {
    for (;;) {
        const Ticketq__Event *e = NULL;
        OK(tq_subscription_next(sub, &e, EVENT_WAIT_MS, &err));
        TQ_CHECK(e != NULL); /* NULL: timed out */
        if (e->type == type && e->ticket_id == ticket) return e;
    }
}

static void test_claim_reply(struct world *w, uint64_t first_ticket) {
    struct tq_client *watcher = connect_as(fx.admin_token);
    tq_client_set_tenant(watcher, w->tenant);
    struct tq_subscribe_options so = {.from_lsn = last_lsn(w)};
    struct tq_subscription *sub = NULL;
    OK(tq_client_subscribe(watcher, &so, &sub, &err));

    static char body[BODY_MAX + 1];
    memset(body, 'y', BODY_MAX); /* at --body-max exactly */
    memcpy(body, "On it", 5);
    struct tq_client_ids ids;
    OK(tq_client_claim_reply(w->alice_c, 0, &w->queue, 1, body, TICKETQ__STATUS__PENDING, &ids,
                             &err));
    TQ_CHECK_UEQ(ids.ticket_id, first_ticket); /* the older of two equal tickets */
    TQ_CHECK_UEQ(ids.agent_id, w->alice);
    TQ_CHECK(ids.message_id != 0);
    TQ_CHECK(ids.lsn != 0);
    TQ_CHECK_EQ(queue_depth(w), 1);

    Ticketq__Response *resp = NULL;
    OK(tq_client_ticket_get(w->ta, ids.ticket_id, 0, 0, &resp, &err));
    const Ticketq__Ticket *t = resp->ticket;
    TQ_CHECK_UEQ(t->assignee_id, w->alice);
    TQ_CHECK_EQ(t->status, TICKETQ__STATUS__PENDING);
    TQ_CHECK_EQ(t->message_count, 2);
    TQ_CHECK_EQ(t->n_messages, 2);
    const Ticketq__Message *m = t->messages[1];
    TQ_CHECK_UEQ(m->message_id, ids.message_id);
    TQ_CHECK_EQ(m->direction, TICKETQ__DIRECTION__OUTBOUND);
    TQ_CHECK_EQ(m->author_kind, TICKETQ__AUTHOR_KIND__AGENT);
    TQ_CHECK_UEQ(m->author_id, w->alice);
    TQ_CHECK_EQ(m->channel, TICKETQ__CHANNEL__EMAIL);
    TQ_CHECK_STR_EQ(m->body, body);
    tq_client_response_free(resp);

    const Ticketq__Event *e = next_of(sub, TICKETQ__EVENT_TYPE__ASSIGNED, ids.ticket_id);
    TQ_CHECK_EQ(e->new_value, (int64_t)w->alice);
    uint64_t assigned_lsn = e->lsn;
    e = next_of(sub, TICKETQ__EVENT_TYPE__MESSAGE_ADDED, ids.ticket_id);
    TQ_CHECK_UEQ(e->message_id, ids.message_id);
    TQ_CHECK_GT(e->lsn, assigned_lsn); /* two commands: claim, then reply */
    TQ_CHECK_UEQ(e->lsn, ids.lsn);     /* the response carries the reply's LSN */
    e = next_of(sub, TICKETQ__EVENT_TYPE__TICKET_UPDATED, ids.ticket_id);
    TQ_CHECK_EQ(e->field, TICKETQ__EVENT_FIELD__FIELD_STATUS);
    TQ_CHECK_EQ(e->new_value, TICKETQ__STATUS__PENDING);
    OK(tq_subscription_close(sub, &err));
    tq_client_close(watcher);

    /* A tenant admin acting for bob: bob is the assignee and the author; no status given, so
     * the agent's public reply opens the new ticket (the rule of a plain Reply). */
    OK(tq_client_claim_reply(w->ta, w->bob, NULL, 0, "Bob here", -1, &ids, &err));
    TQ_CHECK_UEQ(ids.agent_id, w->bob);
    TQ_CHECK_EQ(queue_depth(w), 0);
    OK(tq_client_ticket_get(w->ta, ids.ticket_id, 0, 0, &resp, &err));
    TQ_CHECK_UEQ(resp->ticket->assignee_id, w->bob);
    TQ_CHECK_EQ(resp->ticket->status, TICKETQ__STATUS__OPEN);
    TQ_CHECK_EQ(resp->ticket->n_messages, 2);
    TQ_CHECK_UEQ(resp->ticket->messages[1]->author_id, w->bob);
    TQ_CHECK_STR_EQ(resp->ticket->messages[1]->body, "Bob here");
    tq_client_response_free(resp);
}

static void close_world(struct world *w) {
    tq_client_close(w->admin);
    tq_client_close(w->ta);
    tq_client_close(w->alice_c);
    tq_client_close(w->gateway);
    tq_client_close(w->foreign);
    memset(w, 0, sizeof(*w));
}

int main(void) {
    tq_test_seed("test_server_claim_reply");
    memset(&fx, 0, sizeof(fx));
    fx.extra_args[0] = "--body-max";
    fx.extra_args[1] = "1024";
    TQ_CHECK_EQ(tq_fixture_start(&fx), 0);
    struct world w;
    memset(&w, 0, sizeof(w));
    setup(&w);
    test_empty_and_invalid(&w);
    test_roles(&w);
    /* The queue lists the two waiting tickets best first: the older one. */
    Ticketq__Response *resp = NULL;
    OK(tq_client_queue_list(w.ta, w.queue, 0, &resp, &err));
    TQ_CHECK_EQ(resp->queue_list->n_tickets, 2);
    uint64_t first = resp->queue_list->tickets[0]->ticket_id;
    uint64_t second = resp->queue_list->tickets[1]->ticket_id;
    TQ_CHECK_LT(first, second);
    tq_client_response_free(resp);
    test_claim_reply(&w, first);
    uint64_t lsn = last_lsn(&w);
    uint64_t tenant = w.tenant;
    close_world(&w);

    /* Everything acknowledged survives a restart. */
    TQ_CHECK_EQ(tq_fixture_stop(&fx), 0);
    TQ_CHECK_EQ(tq_fixture_start(&fx), 0);
    w.admin = connect_as(fx.admin_token);
    TQ_CHECK_UEQ(last_lsn(&w), lsn);
    tq_client_set_tenant(w.admin, tenant);
    OK(tq_client_ticket_get(w.admin, first, 0, 0, &resp, &err));
    TQ_CHECK_EQ(resp->ticket->status, TICKETQ__STATUS__PENDING);
    TQ_CHECK_EQ(resp->ticket->message_count, 2);
    tq_client_response_free(resp);
    tq_client_close(w.admin);
    TQ_CHECK_EQ(tq_fixture_stop(&fx), 0);
    tq_fixture_cleanup(&fx);
    printf("test_server_claim_reply: ok\n");
    return 0;
}
