/* tests/state/test_state_rules.c: one unit test per rule of the ticket state machine.
 *
 * Goal: every rule of issue 3 and docs/tickets.md, each allowed and each disallowed status move,
 * idempotent ingest, follow-ups, customer and ticket merges, routing (claim, capacity,
 * auto-assign choice and ties, assignment timeout, release/transfer), the outbox (leases,
 * attempts, monotone delivery), every SLA metric with and without business hours, pauses and
 * priority changes, reply windows, tenant isolation and limits; the right to erasure
 * (CUSTOMER_ERASE), the SLA target cap, the full token hash comparison, snapshot versions.
 * Method: the fixture sends every command through encode/decode before applying it, checks the
 * invariants after every command, and on every error path checks that the digest, the LSN and
 * the event stream did not change. Expected values are computed from the rule (times from the
 * scenario's own clock), never copied from the implementation's output.
 */
#include "state_fixture.h"
#include "tq_assert.h"

#include <errno.h>
#include <sys/mman.h>
#include <xxhash.h>

/* The status table as docs/tickets.md states it (an independent copy of the spec). */
static const char *const allowed_moves[TQ_STATUS_COUNT] = {
    [TQ_STATUS_NEW] = "open pending on_hold solved",    [TQ_STATUS_OPEN] = "pending on_hold solved",
    [TQ_STATUS_PENDING] = "open on_hold solved",        [TQ_STATUS_ON_HOLD] = "open pending solved",
    [TQ_STATUS_SOLVED] = "open pending on_hold closed", [TQ_STATUS_CLOSED] = "",
};

static bool spec_allows(enum tq_ticket_status from, enum tq_ticket_status to) {
    const char *list = allowed_moves[from];
    const char *name = tq_status_name(to);
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)) != NULL; p += n) {
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0')) return true;
    }
    return false;
}

/* Drives a fresh ticket to status `st` through allowed moves. */
static uint64_t ticket_in(struct fx *f, uint64_t tenant, uint64_t queue, enum tq_ticket_status st,
                          const char *who) {
    uint64_t t = fx_ingest(f, tenant, TQ_CHANNEL_EMAIL, who, NULL, queue);
    if (st == TQ_STATUS_NEW) return t;
    if (st == TQ_STATUS_CLOSED) {
        fx_status(f, tenant, t, TQ_STATUS_SOLVED);
        fx_status(f, tenant, t, TQ_STATUS_CLOSED);
        return t;
    }
    fx_status(f, tenant, t, st);
    return t;
}

static void test_status_table(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    uint64_t q = fx_queue(&f, tn, "support", false, 0);
    int n = 0;
    for (int from = 0; from < TQ_STATUS_COUNT; from++) {
        for (int to = 0; to < TQ_STATUS_COUNT; to++) {
            char who[64];
            snprintf(who, sizeof(who), "c%d-%d@example.com", from, to);
            uint64_t t = ticket_in(&f, tn, q, (enum tq_ticket_status)from, who);
            TQ_CHECK_EQ(fx_ticket(&f, tn, t).status, from);
            TQ_CHECK_EQ(tq_state_status_move_allowed((enum tq_ticket_status)from,
                                                     (enum tq_ticket_status)to),
                        spec_allows((enum tq_ticket_status)from, (enum tq_ticket_status)to));
            struct tq_cmd c = fx_cmd(TQ_CMD_TICKET_UPDATE, tn);
            c.u.ticket_update.ticket_id = t;
            c.u.ticket_update.fields = TQ_UPDATE_STATUS;
            c.u.ticket_update.status = (enum tq_ticket_status)to;
            uint32_t ev0 = f.ev_n;
            if (from == TQ_STATUS_CLOSED) {
                FX_ERR(&f, &c, TQ_ERR_FAILED_PRECONDITION); /* closed is immutable */
            } else if (from == to) {
                FX_OK(&f, &c); /* not a move: no status event */
                TQ_CHECK_EQ(fx_count(&f, ev0, TQ_EVENT_TICKET_UPDATED, -1), 0);
            } else if (spec_allows((enum tq_ticket_status)from, (enum tq_ticket_status)to)) {
                FX_OK(&f, &c);
                TQ_CHECK_EQ(fx_ticket(&f, tn, t).status, to);
                const struct tq_event *e = fx_last(&f, ev0, TQ_EVENT_TICKET_UPDATED, -1);
                TQ_CHECK_EQ(e->field, TQ_FIELD_STATUS);
                TQ_CHECK_EQ(e->old_value, from);
                TQ_CHECK_EQ(e->new_value, to);
                n++;
            } else {
                FX_ERR(&f, &c, TQ_ERR_FAILED_PRECONDITION);
                TQ_CHECK_EQ(fx_ticket(&f, tn, t).status, from);
            }
        }
    }
    TQ_CHECK_EQ(n, 17); /* the number of arrows in the spec table (4+3+3+3+4) */
    fx_free(&f);
}

static void test_ingest_idempotent(void) {
    struct fx f;
    fx_init(&f);
    uint64_t a = fx_tenant(&f, "a"), b = fx_tenant(&f, "b");
    uint64_t qa = fx_queue(&f, a, "q", false, 0), qb = fx_queue(&f, b, "q", false, 0);
    uint64_t t1 = fx_ingest(&f, a, TQ_CHANNEL_EMAIL, "Bob@Example.com", "m-1", qa);
    uint64_t m1 = f.res.message_id, c1 = f.res.customer_id;
    TQ_CHECK(f.res.ticket_created && f.res.customer_created && !f.res.duplicate);
    uint8_t d0[16], d1[16];
    tq_state_digest(f.s, d0);
    uint32_t ev0 = f.ev_n;
    uint64_t t2 = fx_ingest(&f, a, TQ_CHANNEL_EMAIL, "bob@example.com", "m-1", qa);
    TQ_CHECK(f.res.duplicate);
    TQ_CHECK_EQ(t2, t1);
    TQ_CHECK_EQ(f.res.message_id, m1);
    TQ_CHECK_EQ(f.res.customer_id, c1);
    TQ_CHECK_EQ(f.ev_n, ev0);
    tq_state_digest(f.s, d1);
    TQ_CHECK_MEM_EQ(d0, d1, 16);
    TQ_CHECK_EQ(fx_ticket(&f, a, t1).message_count, 1);
    /* email identities are case-insensitive: same customer, appended to the same ticket */
    fx_ingest(&f, a, TQ_CHANNEL_EMAIL, "BOB@example.COM", "m-2", qa);
    TQ_CHECK_EQ(f.res.customer_id, c1);
    TQ_CHECK_EQ(f.res.ticket_id, t1);
    TQ_CHECK(!f.res.ticket_created);
    TQ_CHECK_EQ(fx_ticket(&f, a, t1).message_count, 2);
    /* the same provider id on another channel or tenant is another message */
    fx_ingest(&f, a, TQ_CHANNEL_SMS, "+15550001", "m-1", qa);
    TQ_CHECK(!f.res.duplicate);
    fx_ingest(&f, b, TQ_CHANNEL_EMAIL, "bob@example.com", "m-1", qb);
    TQ_CHECK(!f.res.duplicate);
    TQ_CHECK(f.res.customer_created);
    /* non-email identities are exact */
    fx_ingest(&f, a, TQ_CHANNEL_WECHAT, "WxAbc", NULL, qa);
    uint64_t cw = f.res.customer_id;
    fx_ingest(&f, a, TQ_CHANNEL_WECHAT, "wxabc", NULL, qa);
    TQ_CHECK_NE(f.res.customer_id, cw);
    /* messages without an external id are never duplicates */
    fx_ingest(&f, a, TQ_CHANNEL_WECHAT, "WxAbc", NULL, qa);
    TQ_CHECK(!f.res.duplicate);
    struct tq_customer_view cv;
    TQ_CHECK_OK(tq_state_customer_find(f.s, a, TQ_CHANNEL_EMAIL, S("bOb@eXample.com"), &cv), NULL);
    TQ_CHECK_EQ(cv.customer_id, c1);
    TQ_CHECK_ERR(tq_state_customer_find(f.s, b, TQ_CHANNEL_WECHAT, S("WxAbc"), &cv),
                 TQ_ERR_NOT_FOUND, NULL);
    fx_free(&f);
}

static void set_tags(struct fx *f, uint64_t tn, uint64_t t, const char *t1, const char *t2) {
    struct tq_str tags[2] = {S(t1), S(t2)};
    struct tq_cmd c = fx_cmd(TQ_CMD_TICKET_UPDATE, tn);
    c.u.ticket_update.ticket_id = t;
    c.u.ticket_update.fields = TQ_UPDATE_TAGS_ADD;
    c.u.ticket_update.tags_add_count = 2;
    c.u.ticket_update.tags_add = tags;
    FX_OK(f, &c);
}

static void test_append_reopen_follow_up(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    uint64_t q = fx_queue(&f, tn, "q", false, 0), q2 = fx_queue(&f, tn, "q2", false, 0);
    uint64_t t = fx_ingest(&f, tn, TQ_CHANNEL_WHATSAPP, "+4912345", "w1", q);
    set_tags(&f, tn, t, "vip", "refund");
    for (int st = TQ_STATUS_PENDING; st <= TQ_STATUS_SOLVED; st++) {
        fx_status(&f, tn, t, (enum tq_ticket_status)st);
        uint32_t ev0 = f.ev_n;
        TQ_CHECK_EQ(fx_ingest(&f, tn, TQ_CHANNEL_WHATSAPP, "+4912345", NULL, q), t);
        TQ_CHECK_EQ(fx_ticket(&f, tn, t).status, TQ_STATUS_OPEN);
        const struct tq_event *e = fx_last(&f, ev0, TQ_EVENT_TICKET_UPDATED, -1);
        TQ_CHECK_EQ(e->old_value, st);
        TQ_CHECK_EQ(e->new_value, TQ_STATUS_OPEN);
    }
    /* another queue: a separate ticket for the same customer */
    uint64_t other = fx_ingest(&f, tn, TQ_CHANNEL_WHATSAPP, "+4912345", NULL, q2);
    TQ_CHECK_NE(other, t);
    fx_status(&f, tn, t, TQ_STATUS_SOLVED);
    fx_status(&f, tn, t, TQ_STATUS_CLOSED);
    uint32_t ev0 = f.ev_n;
    uint64_t fu = fx_ingest(&f, tn, TQ_CHANNEL_WHATSAPP, "+4912345", NULL, q);
    TQ_CHECK_NE(fu, t);
    TQ_CHECK(f.res.ticket_created);
    struct tq_ticket_view v = fx_ticket(&f, tn, fu);
    TQ_CHECK_EQ(v.follow_up_of_id, t);
    TQ_CHECK_EQ(v.status, TQ_STATUS_NEW);
    TQ_CHECK_EQ(v.tag_count, 2);
    TQ_CHECK(v.tags[0].len == 3 && memcmp(v.tags[0].ptr, "vip", 3) == 0);
    TQ_CHECK_EQ(v.number, fx_ticket(&f, tn, other).number + 1);
    TQ_CHECK_EQ(fx_last(&f, ev0, TQ_EVENT_TICKET_CREATED, -1)->old_value, (int64_t)t);
    TQ_CHECK_EQ(fx_ticket(&f, tn, t).status, TQ_STATUS_CLOSED);
    fx_free(&f);
}

static void test_customer_merge(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    uint64_t q = fx_queue(&f, tn, "q", false, 0);
    uint64_t t1 = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "ann@example.com", NULL, q);
    uint64_t c1 = f.res.customer_id;
    uint64_t t2 = fx_ingest(&f, tn, TQ_CHANNEL_WHATSAPP, "+331234", NULL, q);
    uint64_t c2 = f.res.customer_id;
    TQ_CHECK_NE(c1, c2);
    struct tq_cmd c = fx_cmd(TQ_CMD_CUSTOMER_MERGE, tn);
    c.u.customer_merge.survivor_id = c1;
    c.u.customer_merge.merged_id = c1;
    FX_ERR(&f, &c, TQ_ERR_INVALID_ARGUMENT);
    c.u.customer_merge.merged_id = c2;
    uint32_t ev0 = f.ev_n;
    FX_OK(&f, &c);
    TQ_CHECK_EQ(fx_count(&f, ev0, TQ_EVENT_CUSTOMER_MERGED, -1), 1);
    TQ_CHECK_EQ(fx_ticket(&f, tn, t2).customer_id, c1);
    const struct tq_event *e = fx_last(&f, ev0, TQ_EVENT_TICKET_UPDATED, -1);
    TQ_CHECK_EQ(e->field, TQ_FIELD_CUSTOMER);
    TQ_CHECK_EQ(e->old_value, (int64_t)c2);
    struct tq_customer_view cv;
    TQ_CHECK_OK(tq_state_customer_get(f.s, tn, c2, &cv), NULL);
    TQ_CHECK_EQ(cv.merged_into_id, c1);
    TQ_CHECK_OK(tq_state_customer_find(f.s, tn, TQ_CHANNEL_WHATSAPP, S("+331234"), &cv), NULL);
    TQ_CHECK_EQ(cv.customer_id, c1);
    TQ_CHECK_EQ(cv.identity_count, 2);
    TQ_CHECK_EQ(cv.open_ticket_count, 2);
    enum tq_channel ch;
    struct tq_str ext;
    TQ_CHECK(tq_state_customer_identity(f.s, tn, c1, 1, &ch, &ext));
    TQ_CHECK_EQ(ch, TQ_CHANNEL_WHATSAPP);
    /* a returning customer on the merged identity lands on the survivor's open ticket */
    uint64_t t3 = fx_ingest(&f, tn, TQ_CHANNEL_WHATSAPP, "+331234", NULL, q);
    TQ_CHECK(t3 == t1 || t3 == t2);
    TQ_CHECK_EQ(f.res.customer_id, c1);
    FX_ERR(&f, &c, TQ_ERR_FAILED_PRECONDITION); /* already merged */
    struct tq_cmd link = fx_cmd(TQ_CMD_CUSTOMER_LINK, tn);
    link.u.customer_link.customer_id = c1;
    link.u.customer_link.channel = TQ_CHANNEL_EMAIL;
    link.u.customer_link.external_id = S("ANN@example.com");
    FX_ERR(&f, &link, TQ_ERR_ALREADY_EXISTS);
    link.u.customer_link.customer_id = c2;
    link.u.customer_link.external_id = S("ann2@example.com");
    FX_ERR(&f, &link, TQ_ERR_FAILED_PRECONDITION); /* merged customers take no links */
    fx_free(&f);
}

static void test_ticket_merge(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    uint64_t q = fx_queue(&f, tn, "q", false, 0), q2 = fx_queue(&f, tn, "q2", false, 0);
    uint64_t a = fx_agent(&f, tn, "al", TQ_PRESENCE_ONLINE, 5, 5);
    uint64_t t1 = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "x@example.com", NULL, q);
    uint64_t m1 = f.res.message_id;
    uint64_t t2 = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "x@example.com", NULL, q2);
    uint64_t m2 = f.res.message_id;
    fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "x@example.com", NULL, q);
    uint64_t m3 = f.res.message_id;
    fx_reply(&f, tn, a, t2);
    uint64_t m4 = f.res.message_id;
    struct tq_cmd c = fx_cmd(TQ_CMD_TICKET_MERGE, tn);
    c.u.ticket_merge.source_id = t2;
    c.u.ticket_merge.target_id = t2;
    FX_ERR(&f, &c, TQ_ERR_INVALID_ARGUMENT);
    c.u.ticket_merge.target_id = t1;
    uint32_t ev0 = f.ev_n;
    FX_OK(&f, &c);
    struct tq_ticket_view src = fx_ticket(&f, tn, t2), dst = fx_ticket(&f, tn, t1);
    TQ_CHECK_EQ(src.merged_into_id, t1);
    TQ_CHECK_EQ(src.status, TQ_STATUS_CLOSED);
    TQ_CHECK_EQ(src.message_count, 0);
    TQ_CHECK_EQ(dst.message_count, 4);
    struct tq_message_view mv[8];
    TQ_CHECK_EQ(tq_state_ticket_messages(f.s, tn, t1, 0, 8, mv), 4);
    const uint64_t want[4] = {m1, m2, m3, m4};
    for (int i = 0; i < 4; i++) {
        TQ_CHECK_EQ(mv[i].message_id, want[i]);
        TQ_CHECK_EQ(mv[i].ticket_id, t1);
    }
    TQ_CHECK_EQ(fx_last(&f, ev0, TQ_EVENT_TICKET_MERGED, -1)->new_value, (int64_t)t1);
    TQ_CHECK_EQ(tq_state_ticket_messages(f.s, tn, t1, 3, 8, mv), 1);
    TQ_CHECK_EQ(mv[0].message_id, m4);
    FX_ERR(&f, &c, TQ_ERR_FAILED_PRECONDITION); /* source is a tombstone now */
    struct tq_cmd r = fx_cmd(TQ_CMD_MESSAGE_REPLY, tn);
    r.u.reply.ticket_id = t2;
    r.u.reply.body = S("x");
    FX_ERR(&f, &r, TQ_ERR_FAILED_PRECONDITION);
    fx_free(&f);
}

static void test_claim_capacity(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    uint64_t q1 = fx_queue(&f, tn, "pre-sales", false, 0);
    uint64_t q2 = fx_queue(&f, tn, "warranty", false, 0);
    uint64_t a = fx_agent(&f, tn, "al", TQ_PRESENCE_ONLINE, 1, 2);
    uint64_t b = fx_agent(&f, tn, "bo", TQ_PRESENCE_ONLINE, 0, 0);
    uint64_t t_low = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "1@x.com", NULL, q1);
    f.now += 1000;
    uint64_t t_old = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "2@x.com", NULL, q2);
    f.now += 1000;
    uint64_t t_new = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "3@x.com", NULL, q2);
    uint64_t t_chat = fx_ingest(&f, tn, TQ_CHANNEL_WEBCHAT, "chat-1", NULL, q1);
    struct tq_cmd u = fx_cmd(TQ_CMD_TICKET_UPDATE, tn);
    u.u.ticket_update.ticket_id = t_low;
    u.u.ticket_update.fields = TQ_UPDATE_PRIORITY;
    u.u.ticket_update.priority = TQ_PRIORITY_LOW;
    FX_OK(&f, &u);
    uint64_t ids[8];
    TQ_CHECK_EQ(tq_state_queue_list(f.s, tn, q2, ids, 8), 2);
    TQ_CHECK_EQ(ids[0], t_old);
    struct tq_cmd c = fx_cmd(TQ_CMD_TICKET_CLAIM, tn);
    c.u.claim.agent_id = b;
    FX_ERR(&f, &c, TQ_ERR_RESOURCE_EXHAUSTED); /* no capacity at all */
    c.actor_agent_id = b;
    c.u.claim.agent_id = a;
    FX_ERR(&f, &c, TQ_ERR_PERMISSION_DENIED); /* b may not claim for a */
    c.actor_agent_id = a;
    /* across all queues, by priority then entry time: chat (normal, live class) competes with
     * the email tickets; t_old entered before t_chat, t_low has low priority */
    FX_OK(&f, &c);
    TQ_CHECK_EQ(f.res.ticket_id, t_old);
    FX_OK(&f, &c);
    TQ_CHECK_EQ(f.res.ticket_id, t_new);
    FX_OK(&f, &c);
    TQ_CHECK_EQ(f.res.ticket_id, t_chat); /* async full: only live left */
    FX_ERR(&f, &c, TQ_ERR_RESOURCE_EXHAUSTED);
    struct tq_agent_view av;
    TQ_CHECK_OK(tq_state_agent_get(f.s, tn, a, &av), NULL);
    TQ_CHECK_EQ(av.load[TQ_CHANNEL_CLASS_ASYNC], 2);
    TQ_CHECK_EQ(av.load[TQ_CHANNEL_CLASS_LIVE], 1);
    /* a manual assignment may exceed capacity, and says so */
    struct tq_cmd m = fx_cmd(TQ_CMD_TICKET_UPDATE, tn);
    m.u.ticket_update.ticket_id = t_low;
    m.u.ticket_update.fields = TQ_UPDATE_ASSIGNEE;
    m.u.ticket_update.assignee_id = a;
    FX_OK(&f, &m);
    TQ_CHECK(f.res.over_capacity);
    TQ_CHECK_OK(tq_state_agent_get(f.s, tn, a, &av), NULL);
    TQ_CHECK_EQ(av.load[TQ_CHANNEL_CLASS_ASYNC], 3);
    /* pending still counts, solving frees capacity */
    fx_status(&f, tn, t_old, TQ_STATUS_PENDING);
    TQ_CHECK_OK(tq_state_agent_get(f.s, tn, a, &av), NULL);
    TQ_CHECK_EQ(av.load[TQ_CHANNEL_CLASS_ASYNC], 3);
    fx_status(&f, tn, t_old, TQ_STATUS_SOLVED);
    TQ_CHECK_OK(tq_state_agent_get(f.s, tn, a, &av), NULL);
    TQ_CHECK_EQ(av.load[TQ_CHANNEL_CLASS_ASYNC], 2);
    /* release puts it back; transfer moves it */
    struct tq_cmd rel = fx_cmd(TQ_CMD_TICKET_RELEASE, tn);
    rel.u.release.ticket_id = t_new;
    FX_OK(&f, &rel);
    FX_ERR(&f, &rel, TQ_ERR_FAILED_PRECONDITION);
    TQ_CHECK_EQ(tq_state_queue_list(f.s, tn, q2, ids, 8), 1);
    TQ_CHECK_EQ(ids[0], t_new);
    struct tq_cmd tr = fx_cmd(TQ_CMD_TICKET_TRANSFER, tn);
    tr.u.transfer.ticket_id = t_new;
    FX_ERR(&f, &tr, TQ_ERR_INVALID_ARGUMENT);
    tr.u.transfer.to_queue_id = q1;
    FX_OK(&f, &tr);
    TQ_CHECK_EQ(tq_state_queue_list(f.s, tn, q2, ids, 8), 0);
    TQ_CHECK_EQ(fx_ticket(&f, tn, t_new).queue_id, q1);
    tr.u.transfer.to_queue_id = 0;
    tr.u.transfer.to_agent_id = b;
    FX_OK(&f, &tr);
    TQ_CHECK(f.res.over_capacity);
    TQ_CHECK_EQ(fx_ticket(&f, tn, t_new).assignee_id, b);
    struct tq_queue_view qv;
    TQ_CHECK_OK(tq_state_queue_get(f.s, tn, q1, &qv), NULL);
    TQ_CHECK_EQ(qv.depth, 0);
    fx_free(&f);
}

static void test_autoassign(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    uint64_t q = fx_queue(&f, tn, "auto", true, 0);
    uint64_t a = fx_agent(&f, tn, "a", TQ_PRESENCE_ONLINE, 0, 2);
    f.now += 10;
    uint64_t b = fx_agent(&f, tn, "b", TQ_PRESENCE_ONLINE, 0, 1);
    uint64_t off = fx_agent(&f, tn, "off", TQ_PRESENCE_OFFLINE, 0, 9);
    (void)off;
    uint64_t t[5];
    for (int i = 0; i < 5; i++) {
        char who[32];
        snprintf(who, sizeof(who), "c%d@x.com", i);
        f.now += 1000;
        t[i] = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, who, NULL, q);
    }
    /* t0: a and b both load 0, never assigned (0): tie on wait -> lowest id (a).
     * t1: b has load 0 < a's 1 -> b. t2: b full, a has room -> a. t3, t4: no capacity. */
    TQ_CHECK_EQ(fx_ticket(&f, tn, t[0]).assignee_id, a);
    TQ_CHECK_EQ(fx_ticket(&f, tn, t[1]).assignee_id, b);
    TQ_CHECK_EQ(fx_ticket(&f, tn, t[2]).assignee_id, a);
    TQ_CHECK_EQ(fx_ticket(&f, tn, t[3]).assignee_id, 0);
    TQ_CHECK_EQ(fx_ticket(&f, tn, t[4]).assignee_id, 0);
    /* capacity frees: the best waiting ticket goes to the agent with room */
    f.now += 1000;
    uint32_t ev0 = f.ev_n;
    fx_status(&f, tn, t[1], TQ_STATUS_SOLVED);
    TQ_CHECK_EQ(fx_ticket(&f, tn, t[3]).assignee_id, b);
    const struct tq_event *e = fx_last(&f, ev0, TQ_EVENT_ASSIGNED, -1);
    TQ_CHECK_EQ(e->ticket_id, t[3]);
    TQ_CHECK_EQ(e->new_value, (int64_t)b);
    /* ties on load: whoever waited longest since their last assignment */
    f.now += 1000;
    fx_status(&f, tn, t[0], TQ_STATUS_SOLVED); /* a: load 1, last assigned at t2 */
    TQ_CHECK_EQ(fx_ticket(&f, tn, t[4]).assignee_id, a);
    /* an agent coming online takes work the moment it appears */
    uint64_t t5 = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c5@x.com", NULL, q);
    TQ_CHECK_EQ(fx_ticket(&f, tn, t5).assignee_id, 0);
    struct tq_cmd up = fx_cmd(TQ_CMD_AGENT_UPDATE, tn);
    up.u.agent.agent_id = off;
    up.u.agent.set_presence = true;
    up.u.agent.presence = TQ_PRESENCE_ONLINE;
    FX_OK(&f, &up);
    TQ_CHECK_EQ(fx_ticket(&f, tn, t5).assignee_id, off);
    /* never over capacity */
    uint64_t ids[16];
    uint32_t n = tq_state_agent_ids(f.s, tn, ids, 16);
    for (uint32_t i = 0; i < n; i++) {
        struct tq_agent_view av;
        TQ_CHECK_OK(tq_state_agent_get(f.s, tn, ids[i], &av), NULL);
        TQ_CHECK_LE(av.load[1], av.capacity[1]);
    }
    fx_free(&f);
}

static void test_assignment_timeout(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    uint64_t q = fx_queue(&f, tn, "q", false, 10 * MIN_MS);
    uint64_t a = fx_agent(&f, tn, "a", TQ_PRESENCE_ONLINE, 5, 5);
    uint64_t t = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c@x.com", NULL, q);
    uint64_t t0 = f.now;
    struct tq_cmd c = fx_cmd(TQ_CMD_TICKET_CLAIM, tn);
    c.u.claim.agent_id = a;
    FX_OK(&f, &c);
    TQ_CHECK_EQ(tq_state_next_deadline_ms(f.s), t0 + 10 * MIN_MS);
    f.now = t0 + 4 * MIN_MS;
    fx_reply(&f, tn, a, t); /* the assignee acted: timer restarts */
    TQ_CHECK_EQ(tq_state_next_deadline_ms(f.s), t0 + 14 * MIN_MS);
    uint32_t ev0 = f.ev_n;
    fx_tick(&f, t0 + 13 * MIN_MS);
    TQ_CHECK_EQ(fx_ticket(&f, tn, t).assignee_id, a);
    fx_tick(&f, t0 + 20 * MIN_MS);
    TQ_CHECK_EQ(fx_ticket(&f, tn, t).assignee_id, 0);
    const struct tq_event *e = fx_last(&f, ev0, TQ_EVENT_ASSIGNED, -1);
    TQ_CHECK_EQ(e->at_ms, t0 + 14 * MIN_MS);
    TQ_CHECK_EQ(e->old_value, (int64_t)a);
    uint64_t ids[4];
    TQ_CHECK_EQ(tq_state_queue_list(f.s, tn, q, ids, 4), 1);
    /* pending: the agent is waiting on the customer, no timeout */
    FX_OK(&f, &c);
    fx_status(&f, tn, t, TQ_STATUS_PENDING);
    fx_tick(&f, f.now + HOUR_MS);
    TQ_CHECK_EQ(fx_ticket(&f, tn, t).assignee_id, a);
    fx_free(&f);
}

static void take(struct fx *f, uint64_t tn, uint32_t max, uint64_t lease, uint32_t expect) {
    struct tq_cmd c = fx_cmd(TQ_CMD_OUTBOX_TAKE, tn);
    c.u.outbox_take.channel = TQ_CHANNEL_EMAIL;
    c.u.outbox_take.max = max;
    c.u.outbox_take.lease_ms = lease;
    FX_OK(f, &c);
    TQ_CHECK_EQ(f->res.taken_count, expect);
}

static void ack(struct fx *f, uint64_t tn, uint64_t msg, enum tq_delivery st, bool retry,
                bool expect_dup) {
    struct tq_cmd c = fx_cmd(TQ_CMD_OUTBOX_ACK, tn);
    c.u.outbox_ack.message_id = msg;
    c.u.outbox_ack.status = st;
    c.u.outbox_ack.retry = retry;
    c.u.outbox_ack.reason = S("mailbox full");
    FX_OK(f, &c);
    TQ_CHECK_EQ(f->res.duplicate, expect_dup);
}

/* The outbox tests' world: one tenant whose outbound messages fail after 3 attempts, one queue,
 * one online agent (*a) and one e-mail ticket (returned). */
static uint64_t outbox_fixture(struct fx *f, uint64_t *tn, uint64_t *a) {
    fx_init(f);
    *tn = fx_tenant(f, "shop");
    fx_settings(f, *tn, 0, 0, 0, 3);
    uint64_t q = fx_queue(f, *tn, "q", false, 0);
    *a = fx_agent(f, *tn, "a", TQ_PRESENCE_ONLINE, 5, 5);
    return fx_ingest(f, *tn, TQ_CHANNEL_EMAIL, "c@x.com", NULL, q);
}

static void test_outbox(void) {
    struct fx f;
    uint64_t tn, a;
    uint64_t t = outbox_fixture(&f, &tn, &a);
    uint64_t m1 = fx_reply(&f, tn, a, t);
    uint64_t m2 = fx_reply(&f, tn, a, t);
    struct tq_message_view mv;
    TQ_CHECK_OK(tq_state_message_get(f.s, tn, m1, &mv), NULL);
    TQ_CHECK_EQ(mv.delivery, TQ_DELIVERY_QUEUED);
    TQ_CHECK_EQ(mv.direction, TQ_DIRECTION_OUTBOUND);
    TQ_CHECK_EQ(mv.author_kind, TQ_AUTHOR_AGENT);
    take(&f, tn, 1, 30000, 1);
    TQ_CHECK_EQ(f.res.taken_ids[0], m1);
    take(&f, tn, 10, 30000, 1);
    TQ_CHECK_EQ(f.res.taken_ids[0], m2);
    take(&f, tn, 10, 30000, 0); /* everything leased */
    ack(&f, tn, m2, TQ_DELIVERY_SENT, false, false);
    ack(&f, tn, m2, TQ_DELIVERY_READ, false, false);
    ack(&f, tn, m2, TQ_DELIVERY_DELIVERED, false, true); /* late receipt: never backwards */
    ack(&f, tn, m2, TQ_DELIVERY_FAILED, false, true);    /* stale failure after delivery */
    TQ_CHECK_OK(tq_state_message_get(f.s, tn, m2, &mv), NULL);
    TQ_CHECK_EQ(mv.delivery, TQ_DELIVERY_READ);
    /* m1's lease expires: it is taken again; attempts count up to the maximum (3) */
    f.now += 30000;
    take(&f, tn, 10, 30000, 1);
    TQ_CHECK_EQ(f.res.taken_ids[0], m1);
    ack(&f, tn, m1, TQ_DELIVERY_FAILED, true, false); /* retryable: back to the queue */
    take(&f, tn, 10, 30000, 1);
    TQ_CHECK_OK(tq_state_message_get(f.s, tn, m1, &mv), NULL);
    TQ_CHECK_EQ(mv.attempts, 3);
    TQ_CHECK_EQ(tq_state_next_deadline_ms(f.s), f.now + 30000);
    uint32_t ev0 = f.ev_n;
    uint64_t expiry = f.now + 30000;
    fx_tick(&f, f.now + 60000); /* the third lease expires */
    const struct tq_event *e = fx_last(&f, ev0, TQ_EVENT_OUTBOX_FAILED, -1);
    TQ_CHECK_EQ(e->message_id, m1);
    TQ_CHECK_EQ(e->at_ms, expiry);
    e = fx_last(&f, ev0, TQ_EVENT_DELIVERY_STATUS, -1);
    TQ_CHECK_EQ(e->old_value, TQ_DELIVERY_QUEUED);
    TQ_CHECK_EQ(e->new_value, TQ_DELIVERY_FAILED);
    TQ_CHECK_OK(tq_state_message_get(f.s, tn, m1, &mv), NULL);
    TQ_CHECK_EQ(mv.delivery, TQ_DELIVERY_FAILED);
    ack(&f, tn, m1, TQ_DELIVERY_SENT, false, true); /* failed is terminal */
    struct tq_stats st;
    tq_state_stats(f.s, tn, &st);
    TQ_CHECK_EQ(st.outbox_pending, 0);
    /* notes never reach the outbox; acks for inbound messages are refused */
    struct tq_cmd note = fx_cmd(TQ_CMD_MESSAGE_REPLY, tn);
    note.actor_agent_id = a;
    note.u.reply.ticket_id = t;
    note.u.reply.internal_note = true;
    note.u.reply.body = S("internal");
    FX_OK(&f, &note);
    tq_state_stats(f.s, tn, &st);
    TQ_CHECK_EQ(st.outbox_pending, 0);
    struct tq_message_view list[8];
    TQ_CHECK_EQ(tq_state_ticket_messages(f.s, tn, t, 0, 8, list), 4);
    struct tq_cmd bad = fx_cmd(TQ_CMD_OUTBOX_ACK, tn);
    bad.u.outbox_ack.message_id = list[0].message_id;
    bad.u.outbox_ack.status = TQ_DELIVERY_SENT;
    FX_ERR(&f, &bad, TQ_ERR_FAILED_PRECONDITION);
    fx_free(&f);
}

/* OUTBOX_TAKE counts an attempt in the outbox entry only (the message is not written): the
 * message view and a snapshot see the entry's count, a loaded state counts on from it, and the
 * message catches up when the entry goes (an ack; an exhausted lease, whose event carries the
 * count). Each check fails if one of those paths reads or writes the message's stale bits. */
static void test_outbox_attempts_in_entry(void) {
    struct fx f;
    uint64_t tn, a;
    uint64_t t = outbox_fixture(&f, &tn, &a);
    uint64_t m1 = fx_reply(&f, tn, a, t);
    struct tq_message_view mv;
    take(&f, tn, 1, 30000, 1);
    f.now += 30000;
    take(&f, tn, 1, 30000, 1); /* the lease expired: taken again */
    TQ_CHECK_OK(tq_state_message_get(f.s, tn, m1, &mv), NULL);
    TQ_CHECK_EQ(mv.attempts, 2);
    /* snapshot round trip: the loaded state reports 2 and serialises to the same bytes */
    void *b1 = NULL, *b2 = NULL;
    size_t n1 = 0, n2 = 0;
    TQ_CHECK_OK(tq_state_serialize(f.s, &b1, &n1, &f.err), &f.err);
    struct tq_state *loaded = NULL;
    TQ_CHECK_OK(tq_state_deserialize(b1, n1, NULL, &loaded, &f.err), &f.err);
    TQ_CHECK_OK(tq_state_message_get(loaded, tn, m1, &mv), NULL);
    TQ_CHECK_EQ(mv.attempts, 2);
    TQ_CHECK_OK(tq_state_serialize(loaded, &b2, &n2, &f.err), &f.err);
    TQ_CHECK_UEQ(n2, n1);
    TQ_CHECK_MEM_EQ(b2, b1, n1);
    /* the original: an ack removes the entry, the message keeps the count */
    uint64_t now = f.now;
    ack(&f, tn, m1, TQ_DELIVERY_SENT, false, false);
    TQ_CHECK_OK(tq_state_message_get(f.s, tn, m1, &mv), NULL);
    TQ_CHECK_EQ(mv.attempts, 2);
    TQ_CHECK_EQ(mv.delivery, TQ_DELIVERY_SENT);
    /* the loaded state: a third take, then the lease expires with the attempts used up */
    struct tq_state *orig = f.s;
    f.s = loaded;
    f.now = now + 30000;
    take(&f, tn, 1, 30000, 1);
    TQ_CHECK_OK(tq_state_message_get(f.s, tn, m1, &mv), NULL);
    TQ_CHECK_EQ(mv.attempts, 3);
    uint32_t ev0 = f.ev_n;
    fx_tick(&f, f.now + 30000);
    const struct tq_event *e = fx_last(&f, ev0, TQ_EVENT_OUTBOX_FAILED, -1);
    TQ_CHECK_EQ(e->message_id, m1);
    TQ_CHECK_EQ(e->new_value, 3);
    TQ_CHECK_OK(tq_state_message_get(f.s, tn, m1, &mv), NULL);
    TQ_CHECK_EQ(mv.attempts, 3);
    TQ_CHECK_EQ(mv.delivery, TQ_DELIVERY_FAILED);
    f.s = orig;
    tq_state_free(loaded);
    tq_free(b1, n1);
    tq_free(b2, n2);
    fx_free(&f);
}

/* tq_state_reserve_messages sizes the idempotency table and nothing else: the digest is
 * unchanged, and duplicates are found among keys inserted before and after it. */
static void test_reserve_messages(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    uint64_t q = fx_queue(&f, tn, "q", false, 0);
    char id[32];
    for (int i = 0; i < 2000; i++) { /* past the first regrowths of the 1024-slot table */
        snprintf(id, sizeof(id), "m-%d", i);
        fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c@x.com", id, q);
    }
    uint8_t d0[16], d1[16];
    tq_state_digest(f.s, d0);
    tq_state_reserve_messages(f.s, 100000);
    tq_state_reserve_messages(f.s, 10); /* smaller than the table: nothing to do */
    tq_state_digest(f.s, d1);
    TQ_CHECK_MEM_EQ(d0, d1, 16);
    for (int i = 0; i < 4000; i += 7) { /* the old keys: found; new ones: added */
        snprintf(id, sizeof(id), "m-%d", i);
        fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c@x.com", id, q);
        TQ_CHECK_EQ(f.res.duplicate, i < 2000);
        fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c@x.com", id, q);
        TQ_CHECK(f.res.duplicate);
    }
    fx_free(&f);
}

/* tq_state_regions (what a snapshot child pre-copies, server/snapshot.c) over a state of
 * `tickets` first-time senders: every region is non-empty, no two overlap (nothing is copied
 * twice), every hot one comes before every cold one, the hot ones hold at least the tickets
 * (64 bytes each at the least; they are 192) and include whole 2 MiB-aligned groups, and the
 * message slab's full part is cold. Called by test_huge_regions. */
struct region_log {
    uint32_t count, hot, cold, huge_hot;
    bool cold_seen, hot_after_cold;
    uint64_t hot_bytes, cold_bytes;
    uintptr_t lo[4096], hi[4096];
};

static void region_note(void *ctx, void *addr, size_t len, bool hot) {
    struct region_log *log = ctx;
    TQ_CHECK(addr != NULL);
    TQ_CHECK(len > 0);
    TQ_CHECK(log->count < 4096);
    log->lo[log->count] = (uintptr_t)addr;
    log->hi[log->count] = (uintptr_t)addr + len;
    log->count++;
    if (hot) {
        log->hot++;
        log->hot_bytes += len;
        if (log->cold_seen) log->hot_after_cold = true;
        if ((uintptr_t)addr % (2u << 20) == 0 && len % (2u << 20) == 0) log->huge_hot++;
    } else {
        log->cold++;
        log->cold_bytes += len;
        log->cold_seen = true;
    }
}

static void check_regions(const struct tq_state *s, uint32_t tickets) {
    static struct region_log log;
    memset(&log, 0, sizeof(log));
    tq_state_regions(s, region_note, &log);
    TQ_CHECK(!log.hot_after_cold);
    TQ_CHECK_GE(log.hot_bytes, (uint64_t)tickets * 64);
    TQ_CHECK_GE(log.huge_hot, 1);
    TQ_CHECK_GE(log.cold, 1); /* 140,000 messages: groups before the tail */
    TQ_CHECK_GE(log.cold_bytes, (uint64_t)2 << 20);
    for (uint32_t i = 0; i < log.count; i++) {
        for (uint32_t j = i + 1; j < log.count; j++) {
            bool apart = log.hi[i] <= log.lo[j] || log.hi[j] <= log.lo[i];
            if (!apart) fprintf(stderr, "regions %u and %u overlap\n", i, j);
            TQ_CHECK(apart);
        }
    }
    printf("state regions: %u hot (%.1f MB, %u whole huge-page groups), %u cold (%.1f MB)\n",
           log.hot, (double)log.hot_bytes / 1e6, log.huge_hot, log.cold,
           (double)log.cold_bytes / 1e6);
}

/* Big slabs and tables live in 2 MiB-aligned huge-page regions (store.c): chunk 0 of a slab
 * comes from tq_alloc, chunks 1, 2, ... of a big one are carved out of groups mapped one at a
 * time, and tables of 2 MiB or more (here the reserved idempotency table and the deadline heap,
 * which crosses the threshold while it grows) are mapped. 140,000 first-time senders put every
 * big slab past chunk 0 and the ticket slab across four group boundaries. What must hold: the
 * entities on both sides of every boundary read back as written, the regions' bytes are counted
 * while the state lives and all given back when it is freed (ASan does not see mmap), a small
 * state maps nothing, and a snapshot of the big state loads into an equal one. Commands go
 * straight to tq_state_apply (the fixture's per-command invariant scan would be quadratic);
 * the invariants are checked once at the end. */
static void test_huge_regions(void) {
    uint64_t mapped0 = tq_state_bytes_mapped();
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    fx_policy(&f, tn, HOUR_MS, 0, 0, 0, false);
    uint64_t q = fx_queue(&f, tn, "q", false, 0);
    TQ_CHECK_UEQ(tq_state_bytes_mapped(), mapped0); /* a small state maps nothing */
    enum { SENDERS = 140000 };
    tq_state_reserve_messages(f.s, SENDERS); /* 186,668 slots, 747 KB: not yet mapped */
    TQ_CHECK_UEQ(tq_state_bytes_mapped(), mapped0);
    tq_state_reserve_messages(f.s, 4 * SENDERS); /* 2.99 MB: mapped */
    uint64_t mapped1 = tq_state_bytes_mapped();
    TQ_CHECK(mapped1 >= mapped0 + 4u * 4 * SENDERS);
    char from[32], mid[32];
    uint64_t t_first = 0;
    for (uint32_t i = 0; i < SENDERS; i++) {
        snprintf(from, sizeof(from), "c%u@example.com", i);
        snprintf(mid, sizeof(mid), "m-%u", i);
        struct tq_cmd c = fx_ingest_cmd(tn, TQ_CHANNEL_EMAIL, from, mid, q);
        c.now_ms = f.now + i;
        c.u.ingest.subject = S(mid);
        TQ_CHECK_OK(tq_state_apply(f.s, f.lsn + 1, &c, &f.res, NULL, &f.err), &f.err);
        f.lsn++;
        if (i == 0) t_first = f.res.ticket_id;
        TQ_CHECK_UEQ(f.res.ticket_id, t_first + i);
    }
    TQ_CHECK(tq_state_bytes_mapped() > mapped1); /* slab groups and the deadline heap */
    TQ_CHECK(tq_state_check_invariants(f.s, &f.err));
    /* every 997th sender and both sides of each 4096-element chunk boundary */
    for (uint32_t i = 0; i < SENDERS; i++) {
        uint32_t r = (uint32_t)((t_first + i) % 4096);
        if (i % 997 != 0 && r != 0 && r != 4095) continue;
        snprintf(from, sizeof(from), "C%u@Example.com", i); /* e-mail keys fold case */
        snprintf(mid, sizeof(mid), "m-%u", i);
        struct tq_customer_view cv;
        TQ_CHECK_OK(tq_state_customer_find(f.s, tn, TQ_CHANNEL_EMAIL, S(from), &cv), NULL);
        struct tq_ticket_view v = fx_ticket(&f, tn, t_first + i);
        TQ_CHECK_UEQ(v.customer_id, cv.customer_id);
        TQ_CHECK_EQ(v.message_count, 1);
        TQ_CHECK_EQ(v.subject.len, strlen(mid));
        TQ_CHECK_MEM_EQ(v.subject.ptr, mid, v.subject.len);
        TQ_CHECK_UEQ(v.created_ms, f.now + i);
    }
    TQ_CHECK_UEQ(tq_state_next_deadline_ms(f.s), f.now + 45 * MIN_MS); /* the first warning */
    /* a redelivery of a key near the end is found in the mapped table */
    snprintf(from, sizeof(from), "c%u@example.com", SENDERS - 1);
    snprintf(mid, sizeof(mid), "m-%u", SENDERS - 1);
    fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, from, mid, q);
    TQ_CHECK(f.res.duplicate);
    check_regions(f.s, SENDERS);
    void *blob;
    size_t len;
    TQ_CHECK_OK(tq_state_serialize(f.s, &blob, &len, &f.err), &f.err);
    struct tq_state *l;
    TQ_CHECK_OK(tq_state_deserialize(blob, len, NULL, &l, &f.err), &f.err);
    tq_free(blob, len);
    uint8_t d1[16], d2[16];
    tq_state_digest(f.s, d1);
    tq_state_digest(l, d2);
    TQ_CHECK_MEM_EQ(d1, d2, 16);
    TQ_CHECK(tq_state_check_invariants(l, &f.err));
    tq_state_free(l);
    fx_free(&f);
    TQ_CHECK_UEQ(tq_state_bytes_mapped(), mapped0); /* every region given back */
}

/* The prefault hook (tq_state_options.prefault): what the state hands it must be whole 2 MiB
 * pages that hold nothing yet (all zero), and populating them (as the server's helper does,
 * here synchronously) must change nothing: the same 200,000 first-time senders applied to a
 * state with the hook and to one without give the same digest at every checkpoint. 200,000
 * senders take the ticket, message and identity slabs across several huge pages and group
 * boundaries, the identity table (at 5/8 of 262,144 slots) to its 2 MiB successor and the
 * deadline heap (12 bytes a ticket) past 2 MiB, each prepared ahead and then taken by the
 * regrowth. */
struct pf_log {
    uint32_t requests, pages;
};

static void pf_hook(void *ctx, void *addr, size_t len) {
    struct pf_log *log = ctx;
    TQ_CHECK(((uintptr_t)addr & ((2u << 20) - 1)) == 0);
    TQ_CHECK(len > 0 && len % (2u << 20) == 0);
    const uint8_t *p = addr;
    for (size_t i = 0; i < len; i += 4096) { /* no data there yet */
        TQ_CHECK_EQ(p[i], 0);
        TQ_CHECK_EQ(p[i + 4095], 0);
    }
#ifdef MADV_POPULATE_WRITE
    TQ_CHECK(madvise(addr, len, MADV_POPULATE_WRITE) == 0 || errno == EINVAL);
#endif
    log->requests++;
    log->pages += (uint32_t)(len / (2u << 20));
}

static void test_prefault_hook(void) {
    uint64_t mapped0 = tq_state_bytes_mapped();
    struct pf_log log = {0};
    struct fx f, g;
    fx_init(&f);
    fx_init(&g);
    tq_state_free(g.s);
    g.s = tq_state_new(&(struct tq_state_options){.prefault = pf_hook, .prefault_ctx = &log});
    struct fx *both[2] = {&f, &g};
    uint64_t tn = 0, q = 0;
    for (int k = 0; k < 2; k++) {
        tn = fx_tenant(both[k], "shop");
        fx_policy(both[k], tn, HOUR_MS, 0, 0, 0, false); /* a deadline per ticket */
        q = fx_queue(both[k], tn, "q", false, 0);
    }
    enum { SENDERS = 200000 };
    char from[32], mid[32];
    for (uint32_t i = 0; i < SENDERS; i++) {
        snprintf(from, sizeof(from), "c%u@example.com", i);
        snprintf(mid, sizeof(mid), "m-%u", i);
        struct tq_cmd c = fx_ingest_cmd(tn, TQ_CHANNEL_EMAIL, from, mid, q);
        c.now_ms = f.now + i;
        c.u.ingest.subject = S(mid);
        for (int k = 0; k < 2; k++) {
            struct fx *x = both[k];
            TQ_CHECK_OK(tq_state_apply(x->s, x->lsn + 1, &c, &x->res, NULL, &x->err), &x->err);
            x->lsn++;
        }
        if ((i + 1) % 50000 == 0) {
            uint8_t d1[16], d2[16];
            tq_state_digest(f.s, d1);
            tq_state_digest(g.s, d2);
            TQ_CHECK_MEM_EQ(d1, d2, 16);
        }
    }
    /* tickets (192 B) alone fill 18 pages, messages 2, identities and customers a few; the
     * identity table's successor is 1 page */
    TQ_CHECK(log.requests >= 20);
    TQ_CHECK(log.pages >= log.requests);
    TQ_CHECK(tq_state_check_invariants(g.s, &g.err));
    /* every key is found in the regrown identity table */
    for (uint32_t i = 0; i < SENDERS; i += 101) {
        snprintf(from, sizeof(from), "c%u@example.com", i);
        struct tq_customer_view cv;
        TQ_CHECK_OK(tq_state_customer_find(g.s, tn, TQ_CHANNEL_EMAIL, S(from), &cv), NULL);
    }
    fx_free(&g);
    fx_free(&f);
    TQ_CHECK_UEQ(tq_state_bytes_mapped(), mapped0); /* what was taken is given back */
}

/* The identity table grows incrementally (struct tq_idtab): after its 1024 slots double at the
 * 769th identity, the old table is copied 16 slots per insert, so for the next 64 inserts an
 * identity may be only in the old table. Every sender must be found at every step of the copy
 * (each lookup checks the customer it maps to), an identity added mid-copy too, and an erasure
 * mid-copy (which finishes the copy, then removes) must forget exactly the erased sender. */
static void test_identity_table_incremental_growth(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    uint64_t q = fx_queue(&f, tn, "q", false, 0);
    enum { N = 900, ERASE_AT = 800, ERASED = 17 };
    uint64_t cust[N];
    char from[32];
    for (uint32_t i = 0; i < N; i++) {
        snprintf(from, sizeof(from), "s%u@example.com", i);
        fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, from, NULL, q);
        cust[i] = fx_ticket(&f, tn, f.res.ticket_id).customer_id;
        if (i == ERASE_AT) {
            struct tq_cmd er = fx_cmd(TQ_CMD_CUSTOMER_ERASE, tn);
            er.u.customer_erase.customer_id = cust[ERASED];
            FX_OK(&f, &er);
        }
        if (i < 760 || i > 840) continue; /* around the doubling and the copy */
        for (uint32_t k = 0; k <= i; k++) {
            snprintf(from, sizeof(from), "s%u@example.com", k);
            struct tq_customer_view cv;
            enum tq_err e = tq_state_customer_find(f.s, tn, TQ_CHANNEL_EMAIL, S(from), &cv);
            if (k == ERASED && i >= ERASE_AT) {
                TQ_CHECK_EQ(e, TQ_ERR_NOT_FOUND);
            } else {
                TQ_CHECK_OK(e, NULL);
                TQ_CHECK_UEQ(cv.customer_id, cust[k]);
            }
        }
    }
    TQ_CHECK(tq_state_check_invariants(f.s, &f.err));
    fx_free(&f);
}

/* ---- SLA ---------------------------------------------------------------------------------- */

static void test_sla_first_reply_breach_and_warning(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    fx_settings(&f, tn, 0, 750, 0, 5);
    fx_policy(&f, tn, HOUR_MS, 0, 0, 0, false);
    uint64_t q = fx_queue(&f, tn, "q", false, 0);
    uint64_t t0 = f.now;
    uint64_t t = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c@x.com", NULL, q);
    struct tq_ticket_view v = fx_ticket(&f, tn, t);
    TQ_CHECK_EQ(v.sla[TQ_SLA_FIRST_REPLY].state, TQ_SLA_RUNNING);
    TQ_CHECK_EQ(v.sla[TQ_SLA_FIRST_REPLY].deadline_ms, t0 + HOUR_MS);
    TQ_CHECK_EQ(tq_state_next_deadline_ms(f.s), t0 + 45 * MIN_MS);
    struct tq_sla_due due[4];
    TQ_CHECK_EQ(tq_state_sla_nearest(f.s, tn, due, 4), 1);
    TQ_CHECK_EQ(due[0].deadline_ms, t0 + HOUR_MS);
    uint32_t ev0 = f.ev_n;
    fx_tick(&f, t0 + 44 * MIN_MS);
    TQ_CHECK_EQ(f.ev_n, ev0);
    fx_tick(&f, t0 + 3 * HOUR_MS); /* one late tick: both, exact stamps */
    TQ_CHECK_EQ(fx_count(&f, ev0, TQ_EVENT_SLA_WARNING, TQ_SLA_FIRST_REPLY), 1);
    TQ_CHECK_EQ(fx_count(&f, ev0, TQ_EVENT_SLA_BREACH, TQ_SLA_FIRST_REPLY), 1);
    TQ_CHECK_EQ(f.ev[ev0].type, TQ_EVENT_SLA_WARNING);
    TQ_CHECK_EQ(f.ev[ev0].at_ms, t0 + 45 * MIN_MS);
    TQ_CHECK_EQ(f.ev[ev0 + 1].type, TQ_EVENT_SLA_BREACH);
    TQ_CHECK_EQ(f.ev[ev0 + 1].at_ms, t0 + HOUR_MS);
    TQ_CHECK_EQ(f.ev[ev0 + 1].lsn, f.lsn);
    v = fx_ticket(&f, tn, t);
    TQ_CHECK_EQ(v.sla[TQ_SLA_FIRST_REPLY].state, TQ_SLA_BREACHED);
    struct tq_stats st;
    tq_state_stats(f.s, tn, &st);
    TQ_CHECK_EQ(st.sla_breaches, 1);
    TQ_CHECK_EQ(st.sla_warnings, 1);
    /* a second ticket answered in time: achieved, nothing fires later */
    uint64_t a = fx_agent(&f, tn, "a", TQ_PRESENCE_AWAY, 0, 0);
    uint64_t t1 = f.now;
    uint64_t u = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "d@x.com", NULL, q);
    f.now = t1 + 30 * MIN_MS;
    ev0 = f.ev_n;
    fx_reply(&f, tn, a, u);
    TQ_CHECK_EQ(fx_count(&f, ev0, TQ_EVENT_SLA_ACHIEVED, TQ_SLA_FIRST_REPLY), 1);
    v = fx_ticket(&f, tn, u);
    TQ_CHECK_EQ(v.first_response_ms, t1 + 30 * MIN_MS);
    TQ_CHECK_EQ(v.status, TQ_STATUS_OPEN);
    fx_tick(&f, t1 + 5 * HOUR_MS);
    TQ_CHECK_EQ(fx_count(&f, ev0, TQ_EVENT_SLA_BREACH, -1), 0);
    tq_state_stats(f.s, tn, &st);
    TQ_CHECK_LE(st.first_response_p50_ms, 30 * MIN_MS * 9 / 8);
    TQ_CHECK_GE(st.first_response_p50_ms, 30 * MIN_MS * 7 / 8);
    fx_free(&f);
}

static void test_sla_automated_reply_does_not_count(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    fx_policy(&f, tn, HOUR_MS, 0, 0, 0, false);
    uint64_t q = fx_queue(&f, tn, "q", false, 0);
    uint64_t a = fx_agent(&f, tn, "a", TQ_PRESENCE_ONLINE, 1, 1);
    uint64_t t = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c@x.com", NULL, q);
    struct tq_cmd c = fx_cmd(TQ_CMD_MESSAGE_REPLY, tn);
    c.actor_agent_id = a;
    c.u.reply.ticket_id = t;
    c.u.reply.automated = true;
    c.u.reply.body = S("we got your message");
    FX_OK(&f, &c);
    c.u.reply.automated = false;
    c.u.reply.internal_note = true;
    FX_OK(&f, &c);
    struct tq_ticket_view v = fx_ticket(&f, tn, t);
    TQ_CHECK_EQ(v.sla[TQ_SLA_FIRST_REPLY].state, TQ_SLA_RUNNING);
    TQ_CHECK_EQ(v.first_response_ms, 0);
    TQ_CHECK_EQ(v.status, TQ_STATUS_NEW);
    fx_free(&f);
}

static void test_sla_next_reply(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    fx_settings(&f, tn, 0, 0, 0, 5);
    fx_policy(&f, tn, HOUR_MS, 2 * HOUR_MS, 0, 0, false);
    uint64_t q = fx_queue(&f, tn, "q", false, 0);
    uint64_t a = fx_agent(&f, tn, "a", TQ_PRESENCE_ONLINE, 1, 1);
    uint64_t t = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c@x.com", NULL, q);
    f.now += 10 * MIN_MS;
    fx_reply(&f, tn, a, t);
    TQ_CHECK_EQ(fx_ticket(&f, tn, t).sla[TQ_SLA_NEXT_REPLY].state, TQ_SLA_NONE);
    f.now += 20 * MIN_MS;
    uint64_t in1 = f.now;
    fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c@x.com", NULL, q);
    f.now += 5 * MIN_MS;
    fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c@x.com", NULL, q); /* clock keeps the oldest */
    struct tq_ticket_view v = fx_ticket(&f, tn, t);
    TQ_CHECK_EQ(v.sla[TQ_SLA_NEXT_REPLY].state, TQ_SLA_RUNNING);
    TQ_CHECK_EQ(v.sla[TQ_SLA_NEXT_REPLY].deadline_ms, in1 + 2 * HOUR_MS);
    f.now = in1 + HOUR_MS;
    uint32_t ev0 = f.ev_n;
    fx_reply(&f, tn, a, t);
    TQ_CHECK_EQ(fx_count(&f, ev0, TQ_EVENT_SLA_ACHIEVED, TQ_SLA_NEXT_REPLY), 1);
    /* next cycle breaches, stamped with its own deadline */
    f.now += HOUR_MS;
    uint64_t in2 = f.now;
    fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c@x.com", NULL, q);
    ev0 = f.ev_n;
    fx_tick(&f, in2 + 10 * HOUR_MS);
    TQ_CHECK_EQ(fx_last(&f, ev0, TQ_EVENT_SLA_BREACH, TQ_SLA_NEXT_REPLY)->at_ms, in2 + 2 * HOUR_MS);
    fx_free(&f);
}

static void test_sla_pauses_and_reopen(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    fx_settings(&f, tn, 0, 0, 0, 5);
    fx_policy(&f, tn, 0, 0, 8 * HOUR_MS, 4 * HOUR_MS, false);
    uint64_t q = fx_queue(&f, tn, "q", false, 0);
    uint64_t t0 = f.now;
    uint64_t t = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c@x.com", NULL, q);
    struct tq_ticket_view v = fx_ticket(&f, tn, t);
    TQ_CHECK_EQ(v.sla[TQ_SLA_REQUESTER_WAIT].deadline_ms, t0 + 8 * HOUR_MS);
    TQ_CHECK_EQ(v.sla[TQ_SLA_AGENT_WORK].deadline_ms, t0 + 4 * HOUR_MS);
    /* +1h pending (both pause), +3h customer answers (both resume) */
    f.now = t0 + HOUR_MS;
    fx_status(&f, tn, t, TQ_STATUS_PENDING);
    v = fx_ticket(&f, tn, t);
    TQ_CHECK_EQ(v.sla[TQ_SLA_REQUESTER_WAIT].state, TQ_SLA_PAUSED);
    TQ_CHECK_EQ(v.sla[TQ_SLA_REQUESTER_WAIT].elapsed_ms, HOUR_MS);
    TQ_CHECK_EQ(tq_state_next_deadline_ms(f.s), UINT64_MAX);
    f.now = t0 + 3 * HOUR_MS;
    fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c@x.com", NULL, q);
    v = fx_ticket(&f, tn, t);
    TQ_CHECK_EQ(v.status, TQ_STATUS_OPEN);
    TQ_CHECK_EQ(v.sla[TQ_SLA_REQUESTER_WAIT].deadline_ms, t0 + 10 * HOUR_MS);
    TQ_CHECK_EQ(v.sla[TQ_SLA_AGENT_WORK].deadline_ms, t0 + 6 * HOUR_MS);
    /* +4h on hold: requester wait keeps running, agent work pauses */
    f.now = t0 + 4 * HOUR_MS;
    fx_status(&f, tn, t, TQ_STATUS_ON_HOLD);
    v = fx_ticket(&f, tn, t);
    TQ_CHECK_EQ(v.sla[TQ_SLA_REQUESTER_WAIT].state, TQ_SLA_RUNNING);
    TQ_CHECK_EQ(v.sla[TQ_SLA_AGENT_WORK].state, TQ_SLA_PAUSED);
    TQ_CHECK_EQ(v.sla[TQ_SLA_AGENT_WORK].elapsed_ms, 2 * HOUR_MS);
    /* +5h solved: both achieved; +7h reopened: they resume, never restart */
    f.now = t0 + 5 * HOUR_MS;
    uint32_t ev0 = f.ev_n;
    fx_status(&f, tn, t, TQ_STATUS_SOLVED);
    TQ_CHECK_EQ(fx_count(&f, ev0, TQ_EVENT_SLA_ACHIEVED, -1), 2);
    v = fx_ticket(&f, tn, t);
    TQ_CHECK_EQ(v.sla[TQ_SLA_REQUESTER_WAIT].state, TQ_SLA_ACHIEVED);
    TQ_CHECK_EQ(v.sla[TQ_SLA_REQUESTER_WAIT].elapsed_ms, 3 * HOUR_MS);
    TQ_CHECK_EQ(v.solved_ms, t0 + 5 * HOUR_MS);
    f.now = t0 + 7 * HOUR_MS;
    fx_status(&f, tn, t, TQ_STATUS_OPEN);
    v = fx_ticket(&f, tn, t);
    TQ_CHECK_EQ(v.sla[TQ_SLA_REQUESTER_WAIT].state, TQ_SLA_RUNNING);
    TQ_CHECK_EQ(v.sla[TQ_SLA_REQUESTER_WAIT].deadline_ms, t0 + 12 * HOUR_MS);
    TQ_CHECK_EQ(v.sla[TQ_SLA_AGENT_WORK].deadline_ms, t0 + 9 * HOUR_MS);
    ev0 = f.ev_n;
    fx_tick(&f, t0 + 20 * HOUR_MS);
    TQ_CHECK_EQ(fx_last(&f, ev0, TQ_EVENT_SLA_BREACH, TQ_SLA_AGENT_WORK)->at_ms, t0 + 9 * HOUR_MS);
    TQ_CHECK_EQ(fx_last(&f, ev0, TQ_EVENT_SLA_BREACH, TQ_SLA_REQUESTER_WAIT)->at_ms,
                t0 + 12 * HOUR_MS);
    fx_free(&f);
}

static void test_sla_priority_change(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    fx_settings(&f, tn, 0, 0, 0, 5);
    struct tq_sla_policy p;
    memset(&p, 0, sizeof(p));
    p.name = S("by priority");
    p.channel = -1;
    p.targets.target_ms[TQ_SLA_FIRST_REPLY][TQ_PRIORITY_NORMAL] = 8 * HOUR_MS;
    p.targets.target_ms[TQ_SLA_FIRST_REPLY][TQ_PRIORITY_URGENT] = HOUR_MS;
    p.targets.target_ms[TQ_SLA_REQUESTER_WAIT][TQ_PRIORITY_NORMAL] = 24 * HOUR_MS;
    p.targets.target_ms[TQ_SLA_REQUESTER_WAIT][TQ_PRIORITY_URGENT] = 4 * HOUR_MS;
    struct tq_cmd c = fx_cmd(TQ_CMD_SLA_POLICIES_SET, tn);
    c.u.sla_policies_set.count = 1;
    c.u.sla_policies_set.policies = &p;
    FX_OK(&f, &c);
    uint64_t q = fx_queue(&f, tn, "q", false, 0);
    uint64_t t0 = f.now;
    uint64_t t = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c@x.com", NULL, q);
    f.now = t0 + 30 * MIN_MS;
    fx_status(&f, tn, t, TQ_STATUS_PENDING);
    f.now = t0 + 90 * MIN_MS;
    fx_status(&f, tn, t, TQ_STATUS_OPEN);
    f.now = t0 + 2 * HOUR_MS;
    struct tq_cmd u = fx_cmd(TQ_CMD_TICKET_UPDATE, tn);
    u.u.ticket_update.ticket_id = t;
    u.u.ticket_update.fields = TQ_UPDATE_PRIORITY;
    u.u.ticket_update.priority = TQ_PRIORITY_URGENT;
    FX_OK(&f, &u);
    struct tq_ticket_view v = fx_ticket(&f, tn, t);
    /* first reply: from the original start; requester wait: start + target + time paused */
    TQ_CHECK_EQ(v.sla[TQ_SLA_FIRST_REPLY].deadline_ms, t0 + HOUR_MS);
    TQ_CHECK_EQ(v.sla[TQ_SLA_FIRST_REPLY].target_ms, HOUR_MS);
    TQ_CHECK_EQ(v.sla[TQ_SLA_REQUESTER_WAIT].deadline_ms, t0 + 4 * HOUR_MS + HOUR_MS);
    /* the already-passed deadline fires at the next tick, stamped with the deadline */
    uint32_t ev0 = f.ev_n;
    fx_tick(&f, f.now + 1);
    TQ_CHECK_EQ(fx_last(&f, ev0, TQ_EVENT_SLA_BREACH, TQ_SLA_FIRST_REPLY)->at_ms, t0 + HOUR_MS);
    /* urgent jumps the queue */
    uint64_t t2 = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "d@x.com", NULL, q);
    uint64_t ids[4];
    TQ_CHECK_EQ(tq_state_queue_list(f.s, tn, q, ids, 4), 2);
    TQ_CHECK_EQ(ids[0], t);
    TQ_CHECK_EQ(ids[1], t2);
    fx_free(&f);
}

/* Mon-Fri 09:00-17:00 UTC. */
static void business_hours(struct fx *f, uint64_t tn) {
    static struct tq_calendar cal;
    tq_calendar_init_24x7(&cal);
    snprintf(cal.tz_name, sizeof(cal.tz_name), "UTC");
    for (int d = 1; d <= 5; d++) {
        cal.interval_count[d] = 1;
        cal.intervals[d][0].start_minute = 9 * 60;
        cal.intervals[d][0].end_minute = 17 * 60;
    }
    struct tq_cmd c = fx_cmd(TQ_CMD_BUSINESS_HOURS_SET, tn);
    c.u.business_hours_set.calendar = &cal;
    FX_OK(f, &c);
}

static void test_sla_business_hours(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    fx_settings(&f, tn, 0, 500, 0, 5);
    business_hours(&f, tn);
    fx_policy(&f, tn, 2 * HOUR_MS, 0, 0, 4 * HOUR_MS, true);
    uint64_t q = fx_queue(&f, tn, "q", false, 0);
    /* Friday 2023-11-17 16:00 UTC: 1 business hour left on Friday, 1 more on Monday */
    const uint64_t fri_16 = 1700236800000ull;
    const uint64_t mon_09 = fri_16 + 2 * DAY_MS + 17 * HOUR_MS;
    f.now = fri_16;
    uint64_t t = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c@x.com", NULL, q);
    struct tq_ticket_view v = fx_ticket(&f, tn, t);
    TQ_CHECK_EQ(v.sla[TQ_SLA_FIRST_REPLY].deadline_ms, mon_09 + HOUR_MS);
    TQ_CHECK_EQ(v.sla[TQ_SLA_AGENT_WORK].deadline_ms, mon_09 + 3 * HOUR_MS);
    /* warning at 50% of 2 business hours: Friday 17:00 exactly */
    uint32_t ev0 = f.ev_n;
    fx_tick(&f, mon_09 + 2 * HOUR_MS);
    TQ_CHECK_EQ(fx_last(&f, ev0, TQ_EVENT_SLA_WARNING, TQ_SLA_FIRST_REPLY)->at_ms,
                fri_16 + HOUR_MS);
    TQ_CHECK_EQ(fx_last(&f, ev0, TQ_EVENT_SLA_BREACH, TQ_SLA_FIRST_REPLY)->at_ms, mon_09 + HOUR_MS);
    /* pause on Monday 11:00 after 2 business hours of work; resume Tuesday 10:00 */
    f.now = mon_09 + 2 * HOUR_MS;
    fx_status(&f, tn, t, TQ_STATUS_PENDING);
    v = fx_ticket(&f, tn, t);
    TQ_CHECK_EQ(v.sla[TQ_SLA_AGENT_WORK].elapsed_ms, 3 * HOUR_MS);
    f.now = mon_09 + DAY_MS + HOUR_MS;
    fx_status(&f, tn, t, TQ_STATUS_OPEN);
    v = fx_ticket(&f, tn, t);
    TQ_CHECK_EQ(v.sla[TQ_SLA_AGENT_WORK].deadline_ms, f.now + HOUR_MS);
    /* the same scenario without business hours counts calendar time */
    fx_policy(&f, tn, 2 * HOUR_MS, 0, 0, 4 * HOUR_MS, false);
    f.now = fri_16 + 7 * DAY_MS;
    uint64_t u = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "d@x.com", NULL, q);
    TQ_CHECK_EQ(fx_ticket(&f, tn, u).sla[TQ_SLA_FIRST_REPLY].deadline_ms, f.now + 2 * HOUR_MS);
    fx_free(&f);
}

/* Next reply, requester wait with a pause and a priority change, all in business hours. */
static void test_sla_business_hours_pauses_priority(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    fx_settings(&f, tn, 0, 0, 0, 5);
    business_hours(&f, tn);
    struct tq_sla_policy p;
    memset(&p, 0, sizeof(p));
    p.name = S("bh");
    p.channel = -1;
    p.business_hours = true;
    for (int q = 0; q < TQ_PRIORITY_COUNT; q++) {
        p.targets.target_ms[TQ_SLA_NEXT_REPLY][q] = 2 * HOUR_MS;
        p.targets.target_ms[TQ_SLA_REQUESTER_WAIT][q] = 4 * HOUR_MS;
    }
    p.targets.target_ms[TQ_SLA_REQUESTER_WAIT][TQ_PRIORITY_URGENT] = 2 * HOUR_MS;
    struct tq_cmd c = fx_cmd(TQ_CMD_SLA_POLICIES_SET, tn);
    c.u.sla_policies_set.count = 1;
    c.u.sla_policies_set.policies = &p;
    FX_OK(&f, &c);
    uint64_t q = fx_queue(&f, tn, "q", false, 0);
    uint64_t a = fx_agent(&f, tn, "a", TQ_PRESENCE_ONLINE, 1, 1);
    const uint64_t mon_09 = 1700236800000ull + 2 * DAY_MS + 17 * HOUR_MS; /* 2023-11-20 */
    const uint64_t tue_09 = mon_09 + DAY_MS, wed_09 = mon_09 + 2 * DAY_MS;
    f.now = mon_09 + 7 * HOUR_MS; /* Mon 16:00 */
    uint64_t t = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c@x.com", NULL, q);
    struct tq_ticket_view v = fx_ticket(&f, tn, t);
    TQ_CHECK_EQ(v.sla[TQ_SLA_REQUESTER_WAIT].deadline_ms, tue_09 + 3 * HOUR_MS);
    TQ_CHECK_EQ(v.sla[TQ_SLA_FIRST_REPLY].deadline_ms, 0); /* no target */
    f.now = mon_09 + 7 * HOUR_MS + 30 * MIN_MS;
    fx_reply(&f, tn, a, t);
    f.now = mon_09 + 7 * HOUR_MS + 45 * MIN_MS; /* Mon 16:45 */
    fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c@x.com", NULL, q);
    v = fx_ticket(&f, tn, t);
    TQ_CHECK_EQ(v.sla[TQ_SLA_NEXT_REPLY].deadline_ms, tue_09 + 105 * MIN_MS); /* Tue 10:45 */
    f.now = tue_09 + 30 * MIN_MS;                                             /* Tue 09:30 */
    fx_status(&f, tn, t, TQ_STATUS_PENDING);
    v = fx_ticket(&f, tn, t);
    TQ_CHECK_EQ(v.sla[TQ_SLA_REQUESTER_WAIT].elapsed_ms, 90 * MIN_MS);
    TQ_CHECK_EQ(v.sla[TQ_SLA_NEXT_REPLY].state, TQ_SLA_RUNNING); /* never pauses */
    f.now = wed_09;
    fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c@x.com", NULL, q); /* reopens */
    v = fx_ticket(&f, tn, t);
    TQ_CHECK_EQ(v.sla[TQ_SLA_REQUESTER_WAIT].deadline_ms, wed_09 + 150 * MIN_MS);
    f.now = wed_09 + HOUR_MS;
    struct tq_cmd u = fx_cmd(TQ_CMD_TICKET_UPDATE, tn);
    u.u.ticket_update.ticket_id = t;
    u.u.ticket_update.fields = TQ_UPDATE_PRIORITY;
    u.u.ticket_update.priority = TQ_PRIORITY_URGENT;
    FX_OK(&f, &u);
    /* start Mon 16:00 + 2 business hours = Tue 10:00, plus the business time paused
     * (Tue 09:30 .. Wed 09:00 = 7.5 h) = Wed 09:30 */
    v = fx_ticket(&f, tn, t);
    TQ_CHECK_EQ(v.sla[TQ_SLA_REQUESTER_WAIT].deadline_ms, wed_09 + 30 * MIN_MS);
    uint32_t ev0 = f.ev_n;
    fx_tick(&f, wed_09 + 2 * HOUR_MS);
    TQ_CHECK_EQ(fx_last(&f, ev0, TQ_EVENT_SLA_BREACH, TQ_SLA_REQUESTER_WAIT)->at_ms,
                wed_09 + 30 * MIN_MS);
    /* the next reply breached Tue 10:45 already; it is reported once, with that stamp */
    TQ_CHECK_EQ(fx_count(&f, 0, TQ_EVENT_SLA_BREACH, TQ_SLA_NEXT_REPLY), 1);
    TQ_CHECK_EQ(fx_last(&f, 0, TQ_EVENT_SLA_BREACH, TQ_SLA_NEXT_REPLY)->at_ms,
                tue_09 + 105 * MIN_MS);
    fx_free(&f);
}

static void test_reply_window(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    fx_settings(&f, tn, 0, 0, 24 * HOUR_MS, 5);
    uint64_t q = fx_queue(&f, tn, "q", false, 0);
    uint64_t t0 = f.now;
    uint64_t t = fx_ingest(&f, tn, TQ_CHANNEL_WHATSAPP, "+1555", NULL, q);
    struct tq_ticket_view v = fx_ticket(&f, tn, t);
    TQ_CHECK_EQ(v.sla[TQ_SLA_REPLY_WINDOW].state, TQ_SLA_RUNNING);
    TQ_CHECK_EQ(v.sla[TQ_SLA_REPLY_WINDOW].deadline_ms, t0 + 24 * HOUR_MS);
    /* a new customer message reopens the window from its own time */
    f.now = t0 + 5 * HOUR_MS;
    fx_ingest(&f, tn, TQ_CHANNEL_WHATSAPP, "+1555", NULL, q);
    TQ_CHECK_EQ(fx_ticket(&f, tn, t).sla[TQ_SLA_REPLY_WINDOW].deadline_ms, t0 + 29 * HOUR_MS);
    uint32_t ev0 = f.ev_n;
    fx_tick(&f, t0 + 28 * HOUR_MS);
    TQ_CHECK_EQ(fx_count(&f, ev0, TQ_EVENT_SLA_BREACH, TQ_SLA_REPLY_WINDOW), 0);
    fx_tick(&f, t0 + 30 * HOUR_MS);
    TQ_CHECK_EQ(fx_last(&f, ev0, TQ_EVENT_SLA_BREACH, TQ_SLA_REPLY_WINDOW)->at_ms,
                t0 + 29 * HOUR_MS);
    /* email has no window */
    uint64_t e = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c@x.com", NULL, q);
    TQ_CHECK_EQ(fx_ticket(&f, tn, e).sla[TQ_SLA_REPLY_WINDOW].state, TQ_SLA_NONE);
    fx_free(&f);
}

/* The earliest running SLA deadline of ticket t, from its view (UINT64_MAX: none). */
static uint64_t view_sla_next(struct fx *f, uint64_t tenant, uint64_t t) {
    struct tq_ticket_view v = fx_ticket(f, tenant, t);
    uint64_t best = UINT64_MAX;
    for (int m = 0; m < TQ_SLA_METRIC_COUNT; m++) {
        if (v.sla[m].state == TQ_SLA_RUNNING && v.sla[m].deadline_ms != 0 &&
            v.sla[m].deadline_ms < best) {
            best = v.sla[m].deadline_ms;
        }
    }
    return best;
}

/* An inbound message appended to an existing ticket skips ticket_sync when it changes nothing
 * the indices derive from (state.c, ingest_touches_index): a customer writing again before the
 * answer, on a channel without a reply window or not the ticket's origin. Each branch of that
 * test, and the skip itself, against the rule: the earliest deadline (the deadline index's top,
 * warnings off) and the SLA clocks as the rules give them; the fixture checks every index
 * against a scan after every command. */
static void test_ingest_index_fast_path(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    fx_settings(&f, tn, 0, 0, 24 * HOUR_MS, 5); /* warnings off, WhatsApp window 24 h */
    fx_policy(&f, tn, HOUR_MS, 2 * HOUR_MS, 0, 0, false);
    uint64_t q = fx_queue(&f, tn, "q", false, 0);
    uint64_t a = fx_agent(&f, tn, "a", TQ_PRESENCE_ONLINE, 1, 1);
    uint64_t t0 = f.now;
    uint64_t t = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c@x.com", NULL, q);
    TQ_CHECK_UEQ(tq_state_next_deadline_ms(f.s), t0 + HOUR_MS);
    /* written again before the answer: nothing derived changes (the skip) */
    f.now = t0 + 10 * MIN_MS;
    TQ_CHECK_UEQ(fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c@x.com", NULL, q), t);
    TQ_CHECK_UEQ(tq_state_next_deadline_ms(f.s), t0 + HOUR_MS);
    TQ_CHECK_UEQ(view_sla_next(&f, tn, t), t0 + HOUR_MS);
    TQ_CHECK_EQ(fx_ticket(&f, tn, t).message_count, 2);
    /* answered; the next message starts the next-reply clock (not skipped) */
    f.now = t0 + 20 * MIN_MS;
    fx_reply(&f, tn, a, t);
    TQ_CHECK_UEQ(tq_state_next_deadline_ms(f.s), UINT64_MAX);
    f.now = t0 + 30 * MIN_MS;
    fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c@x.com", NULL, q);
    TQ_CHECK_UEQ(tq_state_next_deadline_ms(f.s), t0 + 150 * MIN_MS);
    TQ_CHECK_UEQ(view_sla_next(&f, tn, t), t0 + 150 * MIN_MS);
    /* written again: skipped, the clock keeps the oldest unanswered message */
    f.now = t0 + 40 * MIN_MS;
    fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c@x.com", NULL, q);
    TQ_CHECK_UEQ(tq_state_next_deadline_ms(f.s), t0 + 150 * MIN_MS);
    /* pending: an inbound message reopens it (not skipped) */
    fx_status(&f, tn, t, TQ_STATUS_PENDING);
    f.now = t0 + 50 * MIN_MS;
    fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c@x.com", NULL, q);
    TQ_CHECK_EQ(fx_ticket(&f, tn, t).status, TQ_STATUS_OPEN);
    TQ_CHECK_UEQ(tq_state_next_deadline_ms(f.s), view_sla_next(&f, tn, t));
    /* a WhatsApp ticket: every message moves its window (not skipped), and the first-reply
     * clock stays; the queue still orders both tickets by their SLA due */
    uint64_t w0 = f.now;
    uint64_t w = fx_ingest(&f, tn, TQ_CHANNEL_WHATSAPP, "+1555", NULL, q);
    TQ_CHECK_UEQ(view_sla_next(&f, tn, w), w0 + HOUR_MS);
    fx_reply(&f, tn, a, w); /* first reply: only the window runs */
    TQ_CHECK_UEQ(view_sla_next(&f, tn, w), w0 + 24 * HOUR_MS);
    f.now = w0 + 5 * HOUR_MS;
    fx_ingest(&f, tn, TQ_CHANNEL_WHATSAPP, "+1555", NULL, q);
    TQ_CHECK_UEQ(fx_ticket(&f, tn, w).sla[TQ_SLA_REPLY_WINDOW].deadline_ms, w0 + 29 * HOUR_MS);
    TQ_CHECK_UEQ(view_sla_next(&f, tn, w), w0 + 5 * HOUR_MS + 2 * HOUR_MS); /* next reply */
    f.now = w0 + 6 * HOUR_MS; /* unanswered already: only the window moves */
    fx_ingest(&f, tn, TQ_CHANNEL_WHATSAPP, "+1555", NULL, q);
    TQ_CHECK_UEQ(fx_ticket(&f, tn, w).sla[TQ_SLA_REPLY_WINDOW].deadline_ms, w0 + 30 * HOUR_MS);
    TQ_CHECK_UEQ(view_sla_next(&f, tn, w), w0 + 7 * HOUR_MS);
    /* the breaches come at the rule's instants */
    uint32_t ev0 = f.ev_n;
    fx_tick(&f, w0 + 31 * HOUR_MS);
    TQ_CHECK_UEQ(fx_last(&f, ev0, TQ_EVENT_SLA_BREACH, TQ_SLA_NEXT_REPLY)->at_ms, w0 + 7 * HOUR_MS);
    TQ_CHECK_UEQ(fx_last(&f, ev0, TQ_EVENT_SLA_BREACH, TQ_SLA_REPLY_WINDOW)->at_ms,
                 w0 + 30 * HOUR_MS);
    fx_free(&f);
}

static void test_wake_and_auto_close(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    fx_settings(&f, tn, 2 * DAY_MS, 0, 0, 5);
    uint64_t q = fx_queue(&f, tn, "q", false, 0);
    uint64_t t0 = f.now;
    uint64_t t = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c@x.com", NULL, q);
    struct tq_cmd u = fx_cmd(TQ_CMD_TICKET_UPDATE, tn);
    u.u.ticket_update.ticket_id = t;
    u.u.ticket_update.fields = TQ_UPDATE_STATUS | TQ_UPDATE_WAKE_AT;
    u.u.ticket_update.status = TQ_STATUS_ON_HOLD;
    u.u.ticket_update.wake_at_ms = t0 + DAY_MS;
    FX_OK(&f, &u);
    TQ_CHECK_EQ(tq_state_next_deadline_ms(f.s), t0 + DAY_MS);
    uint32_t ev0 = f.ev_n;
    fx_tick(&f, t0 + 2 * DAY_MS);
    struct tq_ticket_view v = fx_ticket(&f, tn, t);
    TQ_CHECK_EQ(v.status, TQ_STATUS_OPEN);
    TQ_CHECK_EQ(v.wake_at_ms, 0);
    const struct tq_event *e = fx_last(&f, ev0, TQ_EVENT_TICKET_UPDATED, -1);
    TQ_CHECK_EQ(e->field, TQ_FIELD_WAKE_AT);
    TQ_CHECK_EQ(fx_count(&f, ev0, TQ_EVENT_TICKET_UPDATED, -1), 2);
    TQ_CHECK_EQ(f.ev[ev0].new_value, TQ_STATUS_OPEN);
    TQ_CHECK_EQ(f.ev[ev0].at_ms, t0 + DAY_MS);
    uint64_t ids[2];
    TQ_CHECK_EQ(tq_state_queue_list(f.s, tn, q, ids, 2), 1); /* back in the queue */
    f.now = t0 + 3 * DAY_MS;
    fx_status(&f, tn, t, TQ_STATUS_SOLVED);
    ev0 = f.ev_n;
    fx_tick(&f, t0 + 9 * DAY_MS);
    TQ_CHECK_EQ(fx_ticket(&f, tn, t).status, TQ_STATUS_CLOSED);
    TQ_CHECK_EQ(fx_last(&f, ev0, TQ_EVENT_TICKET_UPDATED, -1)->at_ms, t0 + 5 * DAY_MS);
    struct tq_stats st;
    tq_state_stats(f.s, tn, &st);
    TQ_CHECK_EQ(st.tickets_by_status[TQ_STATUS_CLOSED], 1);
    TQ_CHECK_GE(st.resolution_p50_ms, 3 * DAY_MS * 7 / 8);
    TQ_CHECK_LE(st.resolution_p50_ms, 3 * DAY_MS * 9 / 8);
    fx_free(&f);
}

static void test_tenant_isolation(void) {
    struct fx f;
    fx_init(&f);
    uint64_t a = fx_tenant(&f, "a"), b = fx_tenant(&f, "b");
    uint64_t qa = fx_queue(&f, a, "q", false, 0);
    uint64_t qb = fx_queue(&f, b, "q", false, 0);
    uint64_t aa = fx_agent(&f, a, "a", TQ_PRESENCE_ONLINE, 3, 3);
    uint64_t ab = fx_agent(&f, b, "b", TQ_PRESENCE_ONLINE, 3, 3);
    uint64_t ta = fx_ingest(&f, a, TQ_CHANNEL_EMAIL, "c@x.com", NULL, qa);
    uint64_t ca = f.res.customer_id;
    uint64_t ma = f.res.message_id;
    fx_ingest(&f, b, TQ_CHANNEL_EMAIL, "c@x.com", NULL, qb);
    uint64_t cb = f.res.customer_id;
    struct tq_ticket_view tv;
    TQ_CHECK_ERR(tq_state_ticket_get(f.s, b, ta, &tv), TQ_ERR_NOT_FOUND, NULL);
    struct tq_message_view mv;
    TQ_CHECK_ERR(tq_state_message_get(f.s, b, ma, &mv), TQ_ERR_NOT_FOUND, NULL);
    struct tq_customer_view cv;
    TQ_CHECK_ERR(tq_state_customer_get(f.s, b, ca, &cv), TQ_ERR_NOT_FOUND, NULL);
    struct tq_queue_view qv;
    TQ_CHECK_ERR(tq_state_queue_get(f.s, b, qa, &qv), TQ_ERR_NOT_FOUND, NULL);
    struct tq_agent_view av;
    TQ_CHECK_ERR(tq_state_agent_get(f.s, b, aa, &av), TQ_ERR_NOT_FOUND, NULL);
    TQ_CHECK_EQ(tq_state_ticket_messages(f.s, b, ta, 0, 1, &mv), 0);
    /* commands naming another tenant's ids behave as for missing ids */
    struct tq_cmd c = fx_cmd(TQ_CMD_TICKET_UPDATE, b);
    c.u.ticket_update.ticket_id = ta;
    c.u.ticket_update.fields = TQ_UPDATE_STATUS;
    c.u.ticket_update.status = TQ_STATUS_OPEN;
    FX_ERR(&f, &c, TQ_ERR_NOT_FOUND);
    c.u.ticket_update.ticket_id = 999999;
    FX_ERR(&f, &c, TQ_ERR_NOT_FOUND);
    struct tq_cmd m = fx_cmd(TQ_CMD_CUSTOMER_MERGE, b);
    m.u.customer_merge.survivor_id = cb;
    m.u.customer_merge.merged_id = ca;
    FX_ERR(&f, &m, TQ_ERR_NOT_FOUND);
    struct tq_cmd cl = fx_cmd(TQ_CMD_TICKET_CLAIM, b);
    cl.u.claim.agent_id = ab;
    uint64_t foreign_q = qa;
    cl.u.claim.queue_count = 1;
    cl.u.claim.queue_ids = &foreign_q;
    FX_ERR(&f, &cl, TQ_ERR_NOT_FOUND);
    cl.u.claim.agent_id = aa;
    cl.u.claim.queue_count = 0;
    FX_ERR(&f, &cl, TQ_ERR_NOT_FOUND);
    struct tq_cmd ing = fx_cmd(TQ_CMD_MESSAGE_INGEST, b);
    ing.u.ingest.from_external_id = S("z@x.com");
    ing.u.ingest.queue_id = qa;
    FX_ERR(&f, &ing, TQ_ERR_NOT_FOUND);
    struct tq_cmd act = fx_cmd(TQ_CMD_MESSAGE_REPLY, b);
    act.actor_agent_id = aa;
    act.u.reply.ticket_id = ta;
    FX_ERR(&f, &act, TQ_ERR_PERMISSION_DENIED);
    struct tq_cmd none = fx_cmd(TQ_CMD_QUEUE_CREATE, 77);
    none.u.queue.name = S("x");
    FX_ERR(&f, &none, TQ_ERR_NOT_FOUND);
    struct tq_stats st;
    tq_state_stats(f.s, b, &st);
    TQ_CHECK_EQ(st.ticket_count, 1);
    tq_state_stats(f.s, 0, &st);
    TQ_CHECK_EQ(st.ticket_count, 2);
    TQ_CHECK_EQ(st.tenant_count, 2);
    fx_free(&f);
}

static void test_limits(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    uint64_t q = fx_queue(&f, tn, "q", false, 0);
    static char big[TQ_BODY_BYTES_DEFAULT_MAX + 2];
    memset(big, 'x', sizeof(big) - 1);
    struct tq_cmd c = fx_cmd(TQ_CMD_MESSAGE_INGEST, tn);
    c.u.ingest.from_external_id = S("a@x.com");
    c.u.ingest.queue_id = q;
    c.u.ingest.body = (struct tq_str){big, TQ_BODY_BYTES_DEFAULT_MAX + 1};
    FX_ERR(&f, &c, TQ_ERR_INVALID_ARGUMENT);
    c.u.ingest.body = (struct tq_str){big, TQ_BODY_BYTES_DEFAULT_MAX};
    FX_OK(&f, &c);
    c.u.ingest.subject = (struct tq_str){big, TQ_NAME_BYTES_MAX + 1};
    FX_ERR(&f, &c, TQ_ERR_INVALID_ARGUMENT);
    /* text must be well-formed UTF-8: truncated sequence, overlong '/', surrogate */
    static const char *const bad_utf8[] = {"caf\xc3", "\xc0\xaf", "\xed\xa0\x80",
                                           "\xf5\x80\x80\x80"};
    for (size_t i = 0; i < TQ_ARRAY_COUNT(bad_utf8); i++) {
        c.u.ingest.subject = S(bad_utf8[i]);
        FX_ERR(&f, &c, TQ_ERR_INVALID_ARGUMENT);
    }
    c.u.ingest.subject = S("caf\xc3\xa9 \xe8\xae\xa2\xe5\x8d\x95 \xf0\x9f\x93\xa6"); /* ok */
    c.u.ingest.body = S("\xff");
    FX_ERR(&f, &c, TQ_ERR_INVALID_ARGUMENT);
    c.u.ingest.body = S("ok");
    c.u.ingest.from_external_id = S("utf8@x.com"); /* a new ticket takes the subject */
    FX_OK(&f, &c);                                 /* multi-byte subject accepted */
    TQ_CHECK_EQ(fx_ticket(&f, tn, f.res.ticket_id).subject.len, 5 + 1 + 6 + 1 + 4);
    c.u.ingest.from_external_id = S("a@x.com");
    c.u.ingest.subject = S("");
    c.u.ingest.from_external_id = (struct tq_str){big, TQ_EXTERNAL_ID_BYTES_MAX + 1};
    FX_ERR(&f, &c, TQ_ERR_INVALID_ARGUMENT);
    c.u.ingest.from_external_id = S("");
    FX_ERR(&f, &c, TQ_ERR_INVALID_ARGUMENT);
    c.u.ingest.from_external_id = S("a@x.com");
    struct tq_attachment att[TQ_ATTACHMENTS_PER_MESSAGE_MAX + 1];
    for (int i = 0; i <= TQ_ATTACHMENTS_PER_MESSAGE_MAX; i++) {
        att[i] = (struct tq_attachment){S("k"), S("n.pdf"), S("application/pdf"), 10};
    }
    c.u.ingest.attachment_count = TQ_ATTACHMENTS_PER_MESSAGE_MAX + 1;
    c.u.ingest.attachments = att;
    TQ_CHECK_UEQ(tq_cmd_encode(&c, f.buf, f.buf_cap), tq_cmd_encoded_size(&c));
    struct tq_cmd dec;
    TQ_CHECK_ERR(tq_cmd_decode(f.buf, tq_cmd_encoded_size(&c), &dec, &f.arena, &f.err),
                 TQ_ERR_CORRUPT, &f.err); /* the decoder refuses it too */
    TQ_CHECK_ERR(tq_state_apply(f.s, f.lsn + 1, &c, NULL, NULL, &f.err), TQ_ERR_INVALID_ARGUMENT,
                 &f.err);
    c.u.ingest.attachment_count = TQ_ATTACHMENTS_PER_MESSAGE_MAX;
    FX_OK(&f, &c);
    uint64_t t = f.res.ticket_id;
    c.u.ingest.queue_id = 0;
    FX_ERR(&f, &c, TQ_ERR_FAILED_PRECONDITION); /* no default queue for email */
    c.u.ingest.queue_id = q;
    c.now_ms = 1ull << 60;
    FX_ERR(&f, &c, TQ_ERR_INVALID_ARGUMENT);
    /* tags: 32 per ticket */
    char names[40][8];
    struct tq_str tags[40];
    for (int i = 0; i < 40; i++) {
        snprintf(names[i], sizeof(names[i]), "t%d", i);
        tags[i] = S(names[i]);
    }
    struct tq_cmd u = fx_cmd(TQ_CMD_TICKET_UPDATE, tn);
    u.u.ticket_update.ticket_id = t;
    u.u.ticket_update.fields = TQ_UPDATE_TAGS_ADD;
    u.u.ticket_update.tags_add = tags;
    u.u.ticket_update.tags_add_count = 30;
    FX_OK(&f, &u);
    u.u.ticket_update.tags_add = tags + 28;
    u.u.ticket_update.tags_add_count = 5; /* 2 known + 3 new = 33 */
    FX_ERR(&f, &u, TQ_ERR_RESOURCE_EXHAUSTED);
    u.u.ticket_update.tags_add_count = 4; /* 2 known + 2 new = 32 */
    FX_OK(&f, &u);
    TQ_CHECK_EQ(fx_ticket(&f, tn, t).tag_count, 32);
    u.u.ticket_update.fields = TQ_UPDATE_TAGS_REMOVE;
    u.u.ticket_update.tags_remove = tags;
    u.u.ticket_update.tags_remove_count = 2;
    FX_OK(&f, &u);
    TQ_CHECK_EQ(fx_ticket(&f, tn, t).tag_count, 30);
    /* custom fields */
    struct tq_custom_field cf[2] = {{S("order"), TQ_FIELD_STRING, S("A-1"), 0},
                                    {S("gift"), TQ_FIELD_BOOL, S(""), 2}};
    u.u.ticket_update.fields = TQ_UPDATE_FIELDS;
    u.u.ticket_update.custom_fields = cf;
    u.u.ticket_update.field_count = 2;
    FX_ERR(&f, &u, TQ_ERR_INVALID_ARGUMENT); /* bool must be 0 or 1 */
    cf[1].int_value = 1;
    FX_OK(&f, &u);
    struct tq_ticket_view v = fx_ticket(&f, tn, t);
    TQ_CHECK_EQ(v.field_count, 2);
    TQ_CHECK_EQ(v.custom_fields[1].int_value, 1);
    TQ_CHECK_EQ(v.custom_fields[0].string_value.len, 3);
    /* other limits */
    struct tq_cmd qn = fx_cmd(TQ_CMD_QUEUE_CREATE, tn);
    FX_ERR(&f, &qn, TQ_ERR_INVALID_ARGUMENT); /* a queue needs a name */
    struct tq_sla_policy pol[TQ_SLA_POLICIES_MAX + 1];
    memset(pol, 0, sizeof(pol));
    for (int i = 0; i <= TQ_SLA_POLICIES_MAX; i++)
        pol[i].channel = -1;
    struct tq_cmd ps = fx_cmd(TQ_CMD_SLA_POLICIES_SET, tn);
    ps.u.sla_policies_set.count = TQ_SLA_POLICIES_MAX + 1;
    ps.u.sla_policies_set.policies = pol;
    TQ_CHECK_ERR(tq_state_apply(f.s, f.lsn + 1, &ps, NULL, NULL, &f.err), TQ_ERR_INVALID_ARGUMENT,
                 &f.err);
    ps.u.sla_policies_set.count = 1;
    pol[0].channel = 11;
    FX_ERR(&f, &ps, TQ_ERR_INVALID_ARGUMENT);
    pol[0].channel = -1;
    pol[0].targets.target_ms[0][0] = 100ull * 366 * DAY_MS;
    FX_ERR(&f, &ps, TQ_ERR_INVALID_ARGUMENT);
    struct tq_cmd st = fx_cmd(TQ_CMD_TENANT_SETTINGS, tn);
    st.u.tenant_settings.outbox_attempts_max = 0;
    FX_ERR(&f, &st, TQ_ERR_INVALID_ARGUMENT);
    st.u.tenant_settings.outbox_attempts_max = 3;
    st.u.tenant_settings.sla_warning_permille = 1001;
    FX_ERR(&f, &st, TQ_ERR_INVALID_ARGUMENT);
    struct tq_cmd tk = fx_cmd(TQ_CMD_OUTBOX_TAKE, tn);
    tk.u.outbox_take.max = TQ_OUTBOX_TAKE_MAX + 1;
    tk.u.outbox_take.lease_ms = 1000;
    FX_ERR(&f, &tk, TQ_ERR_INVALID_ARGUMENT);
    /* enums out of range in commands built by the server (the decoder refuses them first) */
    tk.u.outbox_take.max = 1;
    tk.u.outbox_take.channel = (enum tq_channel)TQ_CHANNEL_COUNT;
    FX_ERR(&f, &tk, TQ_ERR_INVALID_ARGUMENT);
    c.u.ingest.channel = (enum tq_channel)40;
    FX_ERR(&f, &c, TQ_ERR_INVALID_ARGUMENT);
    c.u.ingest.channel = TQ_CHANNEL_EMAIL;
    c.u.ingest.priority = (enum tq_priority)TQ_PRIORITY_COUNT;
    FX_ERR(&f, &c, TQ_ERR_INVALID_ARGUMENT);
    struct tq_cmd us = fx_cmd(TQ_CMD_TICKET_UPDATE, tn);
    us.u.ticket_update.ticket_id = t;
    us.u.ticket_update.fields = TQ_UPDATE_STATUS;
    us.u.ticket_update.status = (enum tq_ticket_status)TQ_STATUS_COUNT;
    FX_ERR(&f, &us, TQ_ERR_INVALID_ARGUMENT);
    us.u.ticket_update.fields = 1u << 12;
    FX_ERR(&f, &us, TQ_ERR_INVALID_ARGUMENT);
    struct tq_cmd ag = fx_cmd(TQ_CMD_AGENT_CREATE, tn);
    ag.u.agent.name = S("x");
    ag.u.agent.set_presence = true;
    ag.u.agent.presence = (enum tq_presence)3;
    FX_ERR(&f, &ag, TQ_ERR_INVALID_ARGUMENT);
    struct tq_cmd ti = fx_cmd(TQ_CMD_TOKEN_ISSUE, tn);
    ti.u.token_issue.role = (enum tq_role)9;
    FX_ERR(&f, &ti, TQ_ERR_INVALID_ARGUMENT);
    fx_free(&f);
}

static void test_tokens_and_consumers(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    uint64_t a = fx_agent(&f, tn, "a", TQ_PRESENCE_ONLINE, 1, 1);
    struct tq_cmd c = fx_cmd(TQ_CMD_TOKEN_ISSUE, tn);
    c.u.token_issue.role = TQ_ROLE_AGENT;
    c.u.token_issue.agent_id = a;
    memset(c.u.token_issue.hash, 0xab, 32);
    c.u.token_issue.name = S("laptop");
    FX_OK(&f, &c);
    uint64_t id = f.res.token_id;
    FX_ERR(&f, &c, TQ_ERR_ALREADY_EXISTS);
    c.u.token_issue.hash[0] = 1;
    c.u.token_issue.role = TQ_ROLE_SERVER_ADMIN;
    FX_ERR(&f, &c, TQ_ERR_INVALID_ARGUMENT); /* server admins have no tenant */
    c.tenant_id = 0;
    c.u.token_issue.agent_id = 0;
    FX_OK(&f, &c);
    uint8_t h[32];
    memset(h, 0xab, 32);
    struct tq_token_view v;
    TQ_CHECK_OK(tq_state_token_find(f.s, h, &v), NULL);
    TQ_CHECK_EQ(v.token_id, id);
    TQ_CHECK_EQ(v.agent_id, a);
    TQ_CHECK_EQ(v.role, TQ_ROLE_AGENT);
    struct tq_cmd r = fx_cmd(TQ_CMD_TOKEN_REVOKE, tn);
    r.u.token_revoke.token_id = id;
    FX_OK(&f, &r);
    FX_ERR(&f, &r, TQ_ERR_FAILED_PRECONDITION);
    TQ_CHECK_ERR(tq_state_token_find(f.s, h, &v), TQ_ERR_FAILED_PRECONDITION, NULL);
    h[1] = 0;
    TQ_CHECK_ERR(tq_state_token_find(f.s, h, &v), TQ_ERR_NOT_FOUND, NULL);
    struct tq_cmd k = fx_cmd(TQ_CMD_CONSUMER_ACK, tn);
    k.u.consumer_ack.name = S("crm-sync");
    k.u.consumer_ack.lsn = 40;
    FX_OK(&f, &k);
    k.u.consumer_ack.lsn = 30; /* positions only move forward */
    FX_OK(&f, &k);
    TQ_CHECK_EQ(tq_state_consumer_lsn(f.s, tn, S("crm-sync")), 40);
    TQ_CHECK_EQ(tq_state_consumer_lsn(f.s, tn, S("other")), 0);
    fx_free(&f);
}

static void test_hourly_and_stats(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    uint64_t q = fx_queue(&f, tn, "q", false, 0);
    uint64_t hour0 = f.now / HOUR_MS * HOUR_MS;
    f.now = hour0 + 10;
    fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "a@x.com", NULL, q);
    fx_ingest(&f, tn, TQ_CHANNEL_SMS, "+1", NULL, q);
    fx_ingest(&f, tn, TQ_CHANNEL_SMS, "+2", NULL, q);
    f.now = hour0 + HOUR_MS + 5;
    fx_ingest(&f, tn, TQ_CHANNEL_SMS, "+3", NULL, q);
    uint64_t out[TQ_CHANNEL_COUNT];
    tq_state_hourly_messages(f.s, tn, hour0, out);
    TQ_CHECK_EQ(out[TQ_CHANNEL_EMAIL], 1);
    TQ_CHECK_EQ(out[TQ_CHANNEL_SMS], 2);
    tq_state_hourly_messages(f.s, tn, hour0 + HOUR_MS, out);
    TQ_CHECK_EQ(out[TQ_CHANNEL_SMS], 1);
    tq_state_hourly_messages(f.s, tn, hour0 + 49 * HOUR_MS, out);
    TQ_CHECK_EQ(out[TQ_CHANNEL_SMS], 0);
    struct tq_stats st;
    tq_state_stats(f.s, tn, &st);
    TQ_CHECK_EQ(st.tickets_by_status[TQ_STATUS_NEW], 4);
    TQ_CHECK_EQ(st.queued_tickets, 4);
    TQ_CHECK_EQ(st.messages_by_channel[TQ_CHANNEL_SMS], 3);
    struct tq_queue_view qv;
    TQ_CHECK_OK(tq_state_queue_get(f.s, tn, q, &qv), NULL);
    TQ_CHECK_EQ(qv.depth, 4);
    TQ_CHECK_EQ(qv.oldest_enqueued_ms, hour0 + 10);
    fx_free(&f);
}

static void test_message_view_from_record(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    uint64_t q = fx_queue(&f, tn, "q", false, 0);
    uint64_t a = fx_agent(&f, tn, "a", TQ_PRESENCE_ONLINE, 1, 1);
    struct tq_cmd in = fx_cmd(TQ_CMD_MESSAGE_INGEST, tn);
    in.u.ingest.channel = TQ_CHANNEL_SMS;
    in.u.ingest.from_external_id = S("+1999");
    in.u.ingest.queue_id = q;
    in.u.ingest.provider_ts_ms = f.now - 4321;
    in.u.ingest.body = S("hi");
    FX_OK(&f, &in);
    uint64_t t = f.res.ticket_id, m = f.res.message_id, cust = f.res.customer_id;
    struct tq_message_view v;
    TQ_CHECK_OK(tq_state_message_get(f.s, tn, m, &v), NULL);
    TQ_CHECK_EQ(v.author_id, cust); /* in memory */
    TQ_CHECK_EQ(v.created_ms, 0);   /* in the record */
    TQ_CHECK_EQ(v.lsn, f.lsn);
    tq_state_message_complete(&v, &in);
    TQ_CHECK_EQ(v.created_ms, f.now);
    TQ_CHECK_EQ(v.provider_ts_ms, f.now - 4321);
    f.now += 1000;
    struct tq_cmd r = fx_cmd(TQ_CMD_MESSAGE_REPLY, tn);
    r.actor_agent_id = a;
    r.u.reply.ticket_id = t;
    r.u.reply.channel = TQ_CHANNEL_SMS;
    r.u.reply.body = S("hello");
    FX_OK(&f, &r);
    TQ_CHECK_OK(tq_state_message_get(f.s, tn, f.res.message_id, &v), NULL);
    TQ_CHECK_EQ(v.author_id, 0);
    tq_state_message_complete(&v, &r);
    TQ_CHECK_EQ(v.author_id, a);
    TQ_CHECK_EQ(v.created_ms, f.now);
    fx_free(&f);
}

/* A snapshot of a state that uses every structure loads into an equal state, which then
 * evolves identically (same digest after the same commands, same views). */
/* Identity external ids are kept inline up to 40 bytes and in the string store beyond: lookups,
 * e-mail case folding, snapshots and erasure must not care which. Lengths 1, 40, 41 and the
 * maximum (256), each e-mail id in upper case on the second message. */
static void test_identity_id_lengths(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    uint64_t q = fx_queue(&f, tn, "q", false, 0);
    static const uint32_t lens[] = {1, 40, 41, TQ_EXTERNAL_ID_BYTES_MAX};
    char lower[4][TQ_EXTERNAL_ID_BYTES_MAX + 1], upper[4][TQ_EXTERNAL_ID_BYTES_MAX + 1];
    uint64_t cust[4];
    for (int i = 0; i < 4; i++) {
        for (uint32_t k = 0; k < lens[i]; k++)
            lower[i][k] = (char)('a' + (k + (uint32_t)i) % 26);
        lower[i][lens[i]] = '\0';
        for (uint32_t k = 0; k <= lens[i]; k++)
            upper[i][k] = (char)(lower[i][k] >= 'a' ? lower[i][k] - 'a' + 'A' : lower[i][k]);
        uint64_t t = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, lower[i], NULL, q);
        TQ_CHECK(f.res.customer_created);
        cust[i] = f.res.customer_id;
        /* the same address in upper case is the same customer, appended to the same ticket */
        TQ_CHECK_EQ(fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, upper[i], NULL, q), t);
        TQ_CHECK_EQ(f.res.customer_id, cust[i]);
        TQ_CHECK(!f.res.customer_created);
        /* an id one byte shorter is another customer */
        if (lens[i] > 1) {
            lower[i][lens[i] - 1] = '\0';
            fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, lower[i], NULL, q);
            TQ_CHECK(f.res.customer_created);
            lower[i][lens[i] - 1] = (char)('a' + (lens[i] - 1 + (uint32_t)i) % 26);
        }
    }
    /* a snapshot keeps them all (same digest, same lookups) */
    void *blob;
    size_t len;
    TQ_CHECK_OK(tq_state_serialize(f.s, &blob, &len, &f.err), &f.err);
    struct tq_state *l;
    TQ_CHECK_OK(tq_state_deserialize(blob, len, NULL, &l, &f.err), &f.err);
    uint8_t d0[16], d1[16];
    tq_state_digest(f.s, d0);
    tq_state_digest(l, d1);
    TQ_CHECK_MEM_EQ(d0, d1, 16);
    for (int i = 0; i < 4; i++) {
        struct tq_customer_view cv;
        TQ_CHECK_OK(tq_state_customer_find(l, tn, TQ_CHANNEL_EMAIL, S(upper[i]), &cv), NULL);
        TQ_CHECK_EQ(cv.customer_id, cust[i]);
        struct tq_str ext;
        enum tq_channel ch;
        TQ_CHECK(tq_state_customer_identity(l, tn, cust[i], 0, &ch, &ext));
        TQ_CHECK_EQ(ch, TQ_CHANNEL_EMAIL);
        TQ_CHECK_EQ(ext.len, lens[i]);
        TQ_CHECK_MEM_EQ(ext.ptr, lower[i], lens[i]);
    }
    tq_state_free(l);
    tq_free(blob, len);
    /* erasing the customers with the long ids forgets the ids */
    for (int i = 2; i < 4; i++) {
        struct tq_cmd er = fx_cmd(TQ_CMD_CUSTOMER_ERASE, tn);
        er.u.customer_erase.customer_id = cust[i];
        FX_OK(&f, &er);
        struct tq_customer_view cv;
        TQ_CHECK_ERR(tq_state_customer_find(f.s, tn, TQ_CHANNEL_EMAIL, S(lower[i]), &cv),
                     TQ_ERR_NOT_FOUND, NULL);
    }
    fx_free(&f);
}

/* E-mail ids are lower-cased eight bytes at a time (a word-parallel test per byte): every
 * length 1..48 (below, at and across word boundaries), random bytes drawn around the capitals'
 * edges ('@' 'A' 'Z' '[' '`' 'a' 'z' '{') and from the top half (0xc1, 0xda: a top bit over a
 * capital's low bits must stay). The stored identity is exactly the byte-by-byte reference, the
 * reference and the raw id find the customer; on SMS the id is kept byte for byte. Seeded. */
static void test_email_case_folding_bytes(void) {
    struct fx f;
    fx_init(&f);
    uint64_t rng = tq_test_seed("test_email_case_folding_bytes");
    uint64_t tn = fx_tenant(&f, "shop");
    static const char pool[] = {'@', 'A', 'M', 'Z', '[',        '`',        'a',        'q',
                                'z', '{', '.', '0', (char)0xc1, (char)0xda, (char)0x80, (char)0xff};
    for (uint32_t len = 1; len <= 48; len++) {
        for (int round = 0; round < 4; round++) {
            char raw[48], ref[48];
            for (uint32_t k = 0; k < len; k++) {
                raw[k] = pool[tq_test_rand_below(&rng, sizeof(pool))];
                ref[k] = raw[k] >= 'A' && raw[k] <= 'Z' ? (char)(raw[k] - 'A' + 'a') : raw[k];
            }
            for (int ch = 0; ch < 2; ch++) {
                enum tq_channel chan = ch == 0 ? TQ_CHANNEL_EMAIL : TQ_CHANNEL_SMS;
                struct tq_str raw_s = {raw, len}, ref_s = {ref, len};
                struct tq_customer_view cv;
                if (tq_state_customer_find(f.s, tn, chan, raw_s, &cv) == TQ_OK) continue;
                struct tq_cmd c = fx_cmd(TQ_CMD_CUSTOMER_CREATE, tn);
                c.u.customer_create.name = S("n");
                c.u.customer_create.channel = chan;
                c.u.customer_create.external_id = raw_s;
                FX_OK(&f, &c);
                uint64_t cid = f.res.customer_id;
                struct tq_str ext;
                enum tq_channel got;
                TQ_CHECK(tq_state_customer_identity(f.s, tn, cid, 0, &got, &ext));
                TQ_CHECK_EQ(ext.len, len);
                TQ_CHECK_MEM_EQ(ext.ptr, chan == TQ_CHANNEL_EMAIL ? ref : raw, len);
                TQ_CHECK_OK(tq_state_customer_find(f.s, tn, chan, raw_s, &cv), NULL);
                TQ_CHECK_UEQ(cv.customer_id, cid);
                if (chan == TQ_CHANNEL_EMAIL) {
                    TQ_CHECK_OK(tq_state_customer_find(f.s, tn, chan, ref_s, &cv), NULL);
                    TQ_CHECK_UEQ(cv.customer_id, cid);
                } else if (memcmp(raw, ref, len) != 0) {
                    enum tq_err e = tq_state_customer_find(f.s, tn, chan, ref_s, &cv);
                    TQ_CHECK(e == TQ_ERR_NOT_FOUND || cv.customer_id != cid);
                }
            }
        }
    }
    fx_free(&f);
}

/* A ticket's messages are chained newest first (an append touches no older message); the
 * listing pages in ascending order must not care. Two tickets of 7 and 5 interleaved messages,
 * every (first, cap) with first, cap in 0..14 against the expected slice, before and after the
 * second merges into the first (ids interleave), and after a snapshot round trip. */
static void test_ticket_messages_pages(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    uint64_t q = fx_queue(&f, tn, "q", false, 0);
    uint64_t ids[2][16], n[2] = {0, 0}, tk[2] = {0, 0};
    for (int k = 0; k < 12; k++) {
        int who = k % 2 == 0 || k > 9 ? 0 : 1; /* 7 for the first customer, 5 for the second */
        tk[who] = fx_ingest(&f, tn, TQ_CHANNEL_SMS, who == 0 ? "+100" : "+200", NULL, q);
        ids[who][n[who]++] = f.res.message_id;
    }
    TQ_CHECK_UEQ(n[0], 7);
    TQ_CHECK_UEQ(n[1], 5);
    struct tq_message_view mv[16];
    for (int round = 0; round < 3; round++) {
        const struct tq_state *st = f.s;
        struct tq_state *loaded = NULL;
        void *blob = NULL;
        size_t len = 0;
        if (round == 2) { /* the chains are rebuilt on load */
            TQ_CHECK_OK(tq_state_serialize(f.s, &blob, &len, &f.err), &f.err);
            TQ_CHECK_OK(tq_state_deserialize(blob, len, NULL, &loaded, &f.err), &f.err);
            st = loaded;
        }
        for (int t = 0; t < (round == 0 ? 2 : 1); t++) {
            for (uint32_t first = 0; first <= 14; first++) {
                for (uint32_t cap = 0; cap <= 14; cap++) {
                    uint32_t want = first >= n[t] ? 0 : (uint32_t)n[t] - first;
                    if (want > cap) want = cap;
                    TQ_CHECK_UEQ(tq_state_ticket_messages(st, tn, tk[t], first, cap, mv), want);
                    for (uint32_t i = 0; i < want; i++) {
                        TQ_CHECK_UEQ(mv[i].message_id, ids[t][first + i]);
                        TQ_CHECK_UEQ(mv[i].ticket_id, tk[t]);
                    }
                }
            }
        }
        if (loaded != NULL) {
            tq_state_free(loaded);
            tq_free(blob, len);
        }
        if (round == 0) { /* merge the second ticket into the first: ids interleave */
            struct tq_cmd c = fx_cmd(TQ_CMD_TICKET_MERGE, tn);
            c.u.ticket_merge.source_id = tk[1];
            c.u.ticket_merge.target_id = tk[0];
            FX_OK(&f, &c);
            uint64_t all[16];
            uint32_t a = 0, b = 0, m = 0;
            while (a < n[0] || b < n[1])
                all[m++] =
                    b >= n[1] || (a < n[0] && ids[0][a] < ids[1][b]) ? ids[0][a++] : ids[1][b++];
            memcpy(ids[0], all, m * sizeof(uint64_t));
            n[0] = m;
            n[1] = 0;
            TQ_CHECK_EQ(tq_state_ticket_messages(f.s, tn, tk[1], 0, 16, mv), 0);
            /* and a new message lands after all of them */
            fx_ingest(&f, tn, TQ_CHANNEL_SMS, "+100", NULL, q);
            TQ_CHECK_UEQ(f.res.ticket_id, tk[0]);
            TQ_CHECK_EQ(tq_state_ticket_messages(f.s, tn, tk[0], 11, 16, mv), 2);
            TQ_CHECK_UEQ(mv[1].message_id, f.res.message_id);
            TQ_CHECK_UEQ(mv[0].message_id, ids[0][11]);
            ids[0][n[0]++] = f.res.message_id; /* 13 now */
        }
    }
    fx_free(&f);
}

/* The ASCII fast path ORs 64 and 16 bytes at a time and then the last 16 bytes again
 * (overlapping): every length 0..200 with all-ASCII text is valid, and a lone continuation byte
 * (0x80) or a valid 2-byte sequence at every position is caught or accepted exactly. */
static void test_text_valid_every_position(void) {
    char buf[208];
    for (uint32_t n = 0; n <= 200; n++) {
        memset(buf, 'a', sizeof(buf));
        TQ_CHECK(tq_state_text_valid(buf, n));
        for (uint32_t k = 0; k < n; k++) {
            buf[k] = (char)0x80; /* a continuation byte alone: invalid */
            TQ_CHECK(!tq_state_text_valid(buf, n));
            buf[k] = 'a';
            if (k + 1 < n) {
                buf[k] = (char)0xc3; /* U+00E9: valid */
                buf[k + 1] = (char)0xa9;
                TQ_CHECK(tq_state_text_valid(buf, n));
                buf[k] = buf[k + 1] = 'a';
            }
        }
    }
}

static void test_snapshot_round_trip(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    fx_settings(&f, tn, DAY_MS, 600, 24 * HOUR_MS, 3);
    business_hours(&f, tn);
    fx_policy(&f, tn, HOUR_MS, 2 * HOUR_MS, 8 * HOUR_MS, 4 * HOUR_MS, true);
    uint64_t q = fx_queue(&f, tn, "q", true, 30 * MIN_MS);
    uint64_t a = fx_agent(&f, tn, "a", TQ_PRESENCE_ONLINE, 1, 1);
    uint64_t t1 = fx_ingest(&f, tn, TQ_CHANNEL_WHATSAPP, "+1", "w1", q);
    uint64_t t2 = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "x@y.com", "e1", q);
    uint64_t t3 = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "z@y.com", "e2", q);
    set_tags(&f, tn, t2, "vip", "refund");
    fx_reply(&f, tn, a, t1);
    take(&f, tn, 1, 60000, 1);
    struct tq_cmd m = fx_cmd(TQ_CMD_TICKET_MERGE, tn);
    m.u.ticket_merge.source_id = t3;
    m.u.ticket_merge.target_id = t2;
    FX_OK(&f, &m);
    struct tq_cmd u = fx_cmd(TQ_CMD_TICKET_UPDATE, tn);
    u.u.ticket_update.ticket_id = t2;
    u.u.ticket_update.fields = TQ_UPDATE_STATUS | TQ_UPDATE_WAKE_AT;
    u.u.ticket_update.status = TQ_STATUS_PENDING;
    u.u.ticket_update.wake_at_ms = f.now + 3 * HOUR_MS;
    FX_OK(&f, &u);
    struct tq_cmd k = fx_cmd(TQ_CMD_CONSUMER_ACK, tn);
    k.u.consumer_ack.name = S("crm");
    k.u.consumer_ack.lsn = 5;
    FX_OK(&f, &k);
    void *blob;
    size_t len;
    TQ_CHECK_OK(tq_state_serialize(f.s, &blob, &len, &f.err), &f.err);
    struct tq_state *l;
    TQ_CHECK_OK(tq_state_deserialize(blob, len, NULL, &l, &f.err), &f.err);
    uint8_t d1[16], d2[16];
    tq_state_digest(f.s, d1);
    tq_state_digest(l, d2);
    TQ_CHECK_MEM_EQ(d1, d2, 16);
    TQ_CHECK(tq_state_check_invariants(l, &f.err));
    TQ_CHECK_UEQ(tq_state_lsn(l), f.lsn);
    TQ_CHECK_UEQ(tq_state_next_deadline_ms(l), tq_state_next_deadline_ms(f.s));
    struct tq_ticket_view va, vb;
    TQ_CHECK_OK(tq_state_ticket_get(l, tn, t2, &vb), NULL);
    va = fx_ticket(&f, tn, t2);
    TQ_CHECK_EQ(vb.tag_count, 2);
    TQ_CHECK_EQ(vb.message_count, va.message_count);
    TQ_CHECK_EQ(vb.wake_at_ms, va.wake_at_ms);
    TQ_CHECK_OK(tq_state_ticket_get(l, tn, t3, &vb), NULL);
    TQ_CHECK_EQ(vb.merged_into_id, t2);
    TQ_CHECK_EQ(tq_state_consumer_lsn(l, tn, S("crm")), 5);
    struct tq_customer_view cv;
    TQ_CHECK_OK(tq_state_customer_find(l, tn, TQ_CHANNEL_EMAIL, S("X@Y.com"), &cv), NULL);
    /* both evolve identically: a TICK far ahead (wake-up, SLA, lease expiry, auto-close) */
    struct tq_cmd tick = fx_cmd(TQ_CMD_TICK, 0);
    tick.now_ms = f.now + 3 * DAY_MS;
    TQ_CHECK_OK(tq_state_apply(f.s, f.lsn + 1, &tick, NULL, NULL, &f.err), &f.err);
    TQ_CHECK_OK(tq_state_apply(l, f.lsn + 1, &tick, NULL, NULL, &f.err), &f.err);
    tq_state_digest(f.s, d1);
    tq_state_digest(l, d2);
    TQ_CHECK_MEM_EQ(d1, d2, 16);
    /* damaged blobs are refused */
    ((uint8_t *)blob)[len / 2] ^= 0x10;
    struct tq_state *bad;
    TQ_CHECK_ERR(tq_state_deserialize(blob, len, NULL, &bad, &f.err), TQ_ERR_CORRUPT, &f.err);
    TQ_CHECK_ERR(tq_state_deserialize(blob, 10, NULL, &bad, &f.err), TQ_ERR_CORRUPT, &f.err);
    tq_free(blob, len);
    tq_state_free(l);
    fx_free(&f);
}

/* A byte string inside a blob (memmem without _GNU_SOURCE). */
static bool blob_has(const void *blob, size_t n, const char *needle) {
    size_t m = strlen(needle);
    const uint8_t *p = blob;
    for (size_t i = 0; m <= n && i <= n - m; i++) {
        if (memcmp(p + i, needle, m) == 0) return true;
    }
    return false;
}

/* Right to erasure: the customer becomes a tombstone; its tickets and messages stay; the
 * identities are gone (a returning sender is a new customer); nothing of the name, the
 * identities or the subjects is left in a snapshot; a second erase is refused. */
static void test_customer_erase(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    uint64_t other = fx_tenant(&f, "other");
    uint64_t q = fx_queue(&f, tn, "q", false, 0);
    uint64_t a = fx_agent(&f, tn, "a", TQ_PRESENCE_ONLINE, 5, 5);
    struct tq_cmd in = fx_cmd(TQ_CMD_MESSAGE_INGEST, tn);
    in.u.ingest.channel = TQ_CHANNEL_EMAIL;
    in.u.ingest.from_external_id = S("Erin.Erased@Example.com");
    in.u.ingest.customer_name = S("Erin Erasedname");
    in.u.ingest.language = S("sv-SE");
    in.u.ingest.queue_id = q;
    in.u.ingest.subject = S("Subject-ERIN-42");
    in.u.ingest.body = S("my address is ...");
    FX_OK(&f, &in);
    uint64_t c = f.res.customer_id, t = f.res.ticket_id;
    struct tq_cmd link = fx_cmd(TQ_CMD_CUSTOMER_LINK, tn);
    link.u.customer_link.customer_id = c;
    link.u.customer_link.channel = TQ_CHANNEL_WHATSAPP;
    link.u.customer_link.external_id = S("+46700000042");
    FX_OK(&f, &link);
    fx_reply(&f, tn, a, t);
    uint64_t bystander_t = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "bob@example.com", NULL, q);
    uint64_t bystander = f.res.customer_id;
    struct tq_ticket_view before = fx_ticket(&f, tn, t);
    TQ_CHECK_EQ(before.message_count, 2);

    struct tq_cmd er = fx_cmd(TQ_CMD_CUSTOMER_ERASE, other);
    er.u.customer_erase.customer_id = c;
    FX_ERR(&f, &er, TQ_ERR_NOT_FOUND); /* another tenant's customer */
    er.tenant_id = tn;
    er.u.customer_erase.customer_id = 999;
    FX_ERR(&f, &er, TQ_ERR_NOT_FOUND);
    er.u.customer_erase.customer_id = c;
    uint32_t ev0 = f.ev_n;
    FX_OK(&f, &er);
    TQ_CHECK_EQ(f.ev_n - ev0, 1); /* CUSTOMER_ERASED, nothing else */
    TQ_CHECK_EQ(f.ev[ev0].type, TQ_EVENT_CUSTOMER_ERASED);
    TQ_CHECK_UEQ(f.ev[ev0].customer_id, c);
    TQ_CHECK_UEQ(f.ev[ev0].tenant_id, tn);
    TQ_CHECK(strcmp(tq_event_type_name(TQ_EVENT_CUSTOMER_ERASED), "customer_erased") == 0);
    struct tq_customer_view cv;
    TQ_CHECK_OK(tq_state_customer_get(f.s, tn, c, &cv), NULL);
    TQ_CHECK(cv.erased);
    TQ_CHECK_EQ(cv.name.len, 0);
    TQ_CHECK_EQ(cv.language.len, 0);
    TQ_CHECK_EQ(cv.identity_count, 0);
    TQ_CHECK_EQ(cv.open_ticket_count, 1); /* the ticket stays the customer's */
    enum tq_channel ch;
    struct tq_str ext;
    TQ_CHECK(!tq_state_customer_identity(f.s, tn, c, 0, &ch, &ext));
    TQ_CHECK_ERR(
        tq_state_customer_find(f.s, tn, TQ_CHANNEL_EMAIL, S("erin.erased@example.com"), &cv),
        TQ_ERR_NOT_FOUND, NULL);
    TQ_CHECK_ERR(tq_state_customer_find(f.s, tn, TQ_CHANNEL_WHATSAPP, S("+46700000042"), &cv),
                 TQ_ERR_NOT_FOUND, NULL);
    struct tq_ticket_view after = fx_ticket(&f, tn, t);
    TQ_CHECK_UEQ(after.customer_id, c);
    TQ_CHECK_EQ(after.message_count, 2);
    TQ_CHECK_EQ(after.status, before.status);
    TQ_CHECK_EQ(after.subject.len, 0);
    struct tq_message_view mv[2];
    TQ_CHECK_EQ(tq_state_ticket_messages(f.s, tn, t, 0, 2, mv), 2);
    TQ_CHECK_UEQ(mv[0].author_id, c); /* ids stay; bodies are the log's */
    /* the bystander is untouched */
    TQ_CHECK_OK(tq_state_customer_find(f.s, tn, TQ_CHANNEL_EMAIL, S("bob@example.com"), &cv), NULL);
    TQ_CHECK_UEQ(cv.customer_id, bystander);
    TQ_CHECK(!cv.erased);
    TQ_CHECK_EQ(fx_ticket(&f, tn, bystander_t).subject.len, 4);

    /* idempotent error; erased customers take no links and no merges */
    FX_ERR(&f, &er, TQ_ERR_FAILED_PRECONDITION);
    link.u.customer_link.external_id = S("+46700000043");
    FX_ERR(&f, &link, TQ_ERR_FAILED_PRECONDITION);
    struct tq_cmd mg = fx_cmd(TQ_CMD_CUSTOMER_MERGE, tn);
    mg.u.customer_merge.survivor_id = bystander;
    mg.u.customer_merge.merged_id = c;
    FX_ERR(&f, &mg, TQ_ERR_FAILED_PRECONDITION);
    mg.u.customer_merge.survivor_id = c;
    mg.u.customer_merge.merged_id = bystander;
    FX_ERR(&f, &mg, TQ_ERR_FAILED_PRECONDITION);

    /* nothing personal in a snapshot; it round-trips with the tombstone */
    void *blob;
    size_t len;
    TQ_CHECK_OK(tq_state_serialize(f.s, &blob, &len, &f.err), &f.err);
    TQ_CHECK(!blob_has(blob, len, "Erasedname"));
    TQ_CHECK(!blob_has(blob, len, "erin.erased@example.com"));
    TQ_CHECK(!blob_has(blob, len, "+46700000042"));
    TQ_CHECK(!blob_has(blob, len, "Subject-ERIN"));
    TQ_CHECK(!blob_has(blob, len, "sv-SE"));
    TQ_CHECK(blob_has(blob, len, "bob@example.com")); /* the search does find things */
    struct tq_state *l;
    TQ_CHECK_OK(tq_state_deserialize(blob, len, NULL, &l, &f.err), &f.err);
    uint8_t d1[16], d2[16];
    tq_state_digest(f.s, d1);
    tq_state_digest(l, d2);
    TQ_CHECK_MEM_EQ(d1, d2, 16);
    TQ_CHECK_OK(tq_state_customer_get(l, tn, c, &cv), NULL);
    TQ_CHECK(cv.erased);
    TQ_CHECK(tq_state_check_invariants(l, &f.err));
    tq_state_free(l);
    tq_free(blob, len);

    /* a returning sender is a NEW customer with a new ticket */
    FX_OK(&f, &in);
    TQ_CHECK(f.res.customer_created);
    TQ_CHECK(f.res.ticket_created);
    TQ_CHECK_NE(f.res.customer_id, c);
    TQ_CHECK_NE(f.res.ticket_id, t);
    TQ_CHECK_OK(
        tq_state_customer_find(f.s, tn, TQ_CHANNEL_EMAIL, S("erin.erased@example.com"), &cv), NULL);
    TQ_CHECK_UEQ(cv.customer_id, f.res.customer_id);
    TQ_CHECK(!cv.erased);
    /* agents may still work the erased customer's ticket */
    fx_reply(&f, tn, a, t);
    fx_status(&f, tn, t, TQ_STATUS_SOLVED);
    fx_free(&f);
}

/* Many identities, every third customer erased: the lookup table's backward-shift removal
 * keeps every other identity findable (the invariant checker looks each one up by its key
 * after every command), and the survivors' identities still resolve. */
static void test_customer_erase_many(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    enum { N = 1500 };
    static uint64_t ids[N];
    char ext[64];
    for (int i = 0; i < N; i++) {
        struct tq_cmd c = fx_cmd(TQ_CMD_CUSTOMER_CREATE, tn);
        snprintf(ext, sizeof(ext), "+1555%06d", i);
        c.u.customer_create.name = S("n");
        c.u.customer_create.channel = TQ_CHANNEL_SMS;
        c.u.customer_create.external_id = S(ext);
        FX_OK(&f, &c);
        ids[i] = f.res.customer_id;
    }
    for (int i = 0; i < N; i += 3) {
        struct tq_cmd c = fx_cmd(TQ_CMD_CUSTOMER_ERASE, tn);
        c.u.customer_erase.customer_id = ids[(i * 7) % N]; /* not in creation order */
        enum tq_err e = fx_try(&f, &c);
        TQ_CHECK(e == TQ_OK || e == TQ_ERR_FAILED_PRECONDITION);
    }
    uint32_t live = 0;
    for (int i = 0; i < N; i++) {
        struct tq_customer_view cv;
        TQ_CHECK_OK(tq_state_customer_get(f.s, tn, ids[i], &cv), NULL);
        snprintf(ext, sizeof(ext), "+1555%06d", i);
        enum tq_err e = tq_state_customer_find(f.s, tn, TQ_CHANNEL_SMS, S(ext), &cv);
        if (e == TQ_OK) {
            TQ_CHECK_UEQ(cv.customer_id, ids[i]);
            live++;
        } else {
            TQ_CHECK_EQ(e, TQ_ERR_NOT_FOUND);
            TQ_CHECK_OK(tq_state_customer_get(f.s, tn, ids[i], &cv), NULL);
            TQ_CHECK(cv.erased);
        }
    }
    TQ_CHECK_EQ(live, N - N / 3);
    fx_free(&f);
}

/* SLA targets and reply windows are capped at TQ_SLA_TARGET_MS_MAX (the error names the
 * field); a calendar that never reaches a target gives a deadline of "never" (UINT64_MAX). */
static void test_sla_target_cap(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    struct tq_sla_policy p;
    memset(&p, 0, sizeof(p));
    p.name = S("huge");
    p.channel = -1;
    p.business_hours = true;
    struct tq_cmd c = fx_cmd(TQ_CMD_SLA_POLICIES_SET, tn);
    c.u.sla_policies_set.count = 1;
    c.u.sla_policies_set.policies = &p;
    const uint64_t bad[] = {TQ_SLA_TARGET_MS_MAX + 1, (uint64_t)INT64_MAX + 1, UINT64_MAX};
    for (size_t i = 0; i < TQ_ARRAY_COUNT(bad); i++) {
        p.targets.target_ms[TQ_SLA_AGENT_WORK][TQ_PRIORITY_URGENT] = bad[i];
        FX_ERR(&f, &c, TQ_ERR_INVALID_ARGUMENT);
        TQ_CHECK(strstr(f.err.msg, "target_ms[agent_work][urgent]") != NULL);
    }
    struct tq_cmd st = fx_cmd(TQ_CMD_TENANT_SETTINGS, tn);
    st.u.tenant_settings.outbox_attempts_max = 3;
    st.u.tenant_settings.reply_window_ms[TQ_CHANNEL_SMS] = TQ_SLA_TARGET_MS_MAX + 1;
    FX_ERR(&f, &st, TQ_ERR_INVALID_ARGUMENT);
    TQ_CHECK(strstr(f.err.msg, "reply_window_ms[sms]") != NULL);
    st.u.tenant_settings.reply_window_ms[TQ_CHANNEL_SMS] = TQ_SLA_TARGET_MS_MAX;
    FX_OK(&f, &st);
    /* the limit itself is accepted, at every priority */
    for (int q = 0; q < TQ_PRIORITY_COUNT; q++) {
        p.targets.target_ms[TQ_SLA_FIRST_REPLY][q] = TQ_SLA_TARGET_MS_MAX;
        p.targets.target_ms[TQ_SLA_AGENT_WORK][q] = HOUR_MS;
    }
    FX_OK(&f, &c);
    /* The sparsest calendar (one business minute a week) with the largest target: the
     * deadline lies ~100,000 years ahead, within calendar's range, and nothing trips. (A
     * calendar answer of INT64_MAX, "never", maps to UINT64_MAX; with targets capped at 10
     * years and at least one business minute a week it cannot occur through apply.) */
    static struct tq_calendar sparse;
    tq_calendar_init_24x7(&sparse);
    snprintf(sparse.tz_name, sizeof(sparse.tz_name), "UTC");
    for (int d = 0; d < 7; d++)
        sparse.interval_count[d] = 0;
    sparse.interval_count[1] = 1;
    sparse.intervals[1][0].start_minute = 9 * 60;
    sparse.intervals[1][0].end_minute = 9 * 60 + 1;
    struct tq_cmd bh = fx_cmd(TQ_CMD_BUSINESS_HOURS_SET, tn);
    bh.u.business_hours_set.calendar = &sparse;
    FX_OK(&f, &bh);
    uint64_t q = fx_queue(&f, tn, "q", false, 0);
    uint64_t t = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "c@x.com", NULL, q);
    struct tq_ticket_view v = fx_ticket(&f, tn, t);
    TQ_CHECK_EQ(v.sla[TQ_SLA_FIRST_REPLY].state, TQ_SLA_RUNNING);
    uint64_t weeks = TQ_SLA_TARGET_MS_MAX / MIN_MS; /* one business minute per week */
    TQ_CHECK_GT(v.sla[TQ_SLA_FIRST_REPLY].deadline_ms, f.now + (weeks - 1) * 7 * DAY_MS);
    TQ_CHECK_LT(v.sla[TQ_SLA_FIRST_REPLY].deadline_ms, f.now + (weeks + 1) * 7 * DAY_MS);
    /* one business hour of agent work takes 60 weeks */
    TQ_CHECK_GT(v.sla[TQ_SLA_AGENT_WORK].deadline_ms, f.now + 59 * 7 * DAY_MS);
    TQ_CHECK_LT(v.sla[TQ_SLA_AGENT_WORK].deadline_ms, f.now + 61 * 7 * DAY_MS);
    uint32_t ev0 = f.ev_n;
    fx_tick(&f, f.now + 365 * DAY_MS);
    TQ_CHECK_EQ(fx_count(&f, ev0, TQ_EVENT_SLA_BREACH, TQ_SLA_FIRST_REPLY), 0);
    /* 24x7 (the policy without business hours): the 10-year target is a real deadline */
    p.business_hours = false;
    FX_OK(&f, &c);
    uint64_t u = fx_ingest(&f, tn, TQ_CHANNEL_EMAIL, "d@x.com", NULL, q);
    TQ_CHECK_UEQ(fx_ticket(&f, tn, u).sla[TQ_SLA_FIRST_REPLY].deadline_ms,
                 f.now + TQ_SLA_TARGET_MS_MAX);
    fx_free(&f);
}

/* The token lookup compares all 32 bytes: a hash differing only in its last byte (same
 * probe key: the first 8 bytes) is not found. */
static void test_token_full_compare(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    struct tq_cmd c = fx_cmd(TQ_CMD_TOKEN_ISSUE, tn);
    c.u.token_issue.role = TQ_ROLE_INTEGRATION;
    for (int i = 0; i < 32; i++)
        c.u.token_issue.hash[i] = (uint8_t)(i * 7 + 1);
    c.u.token_issue.name = S("gw");
    FX_OK(&f, &c);
    uint64_t id = f.res.token_id;
    uint8_t h[32];
    memcpy(h, c.u.token_issue.hash, 32);
    struct tq_token_view v;
    TQ_CHECK_OK(tq_state_token_find(f.s, h, &v), NULL);
    TQ_CHECK_UEQ(v.token_id, id);
    for (int i = 8; i < 32; i++) {
        h[i] ^= 0x80;
        TQ_CHECK_ERR(tq_state_token_find(f.s, h, &v), TQ_ERR_NOT_FOUND, NULL);
        h[i] ^= 0x80;
    }
    fx_free(&f);
}

/* Rewrites a blob's header for a new body length / version, with a fresh checksum. */
static void blob_reseal(uint8_t *blob, size_t len, uint32_t version) {
    uint64_t body_len = len - 32, sum = XXH3_64bits(blob + 32, body_len);
    for (int i = 0; i < 4; i++)
        blob[8 + i] = (uint8_t)(version >> (8 * i));
    for (int i = 0; i < 8; i++)
        blob[16 + i] = (uint8_t)(body_len >> (8 * i));
    for (int i = 0; i < 8; i++)
        blob[24 + i] = (uint8_t)(sum >> (8 * i));
}

/* Snapshot version 2 adds the customer's erased flag (u8 after merged_into); version-1 blobs
 * (without it) still load; a flag other than 0/1 is CORRUPT. The customer is the last entity
 * written here (no identities, tickets or messages), so its flag is the body's last byte. */
static void test_snapshot_v1_and_erased_flag(void) {
    struct fx f;
    fx_init(&f);
    uint64_t tn = fx_tenant(&f, "shop");
    struct tq_cmd c = fx_cmd(TQ_CMD_CUSTOMER_CREATE, tn);
    c.u.customer_create.name = S("Zed");
    c.u.customer_create.language = S("en");
    FX_OK(&f, &c);
    uint64_t cid = f.res.customer_id;
    void *blob;
    size_t len;
    TQ_CHECK_OK(tq_state_serialize(f.s, &blob, &len, &f.err), &f.err);
    uint8_t *b = blob;
    TQ_CHECK_EQ(b[8], 2);       /* version 2 */
    TQ_CHECK_EQ(b[len - 1], 0); /* not erased */
    uint8_t live[16], loaded[16];
    tq_state_digest(f.s, live);
    struct tq_state *l = NULL;
    blob_reseal(b, len - 1, 1); /* the same state as version 1 */
    TQ_CHECK_OK(tq_state_deserialize(b, len - 1, NULL, &l, &f.err), &f.err);
    tq_state_digest(l, loaded);
    TQ_CHECK_MEM_EQ(live, loaded, 16);
    struct tq_customer_view cv;
    TQ_CHECK_OK(tq_state_customer_get(l, tn, cid, &cv), NULL);
    TQ_CHECK(!cv.erased && cv.name.len == 3);
    tq_state_free(l);
    blob_reseal(b, len, 2);
    b[len - 1] = 2;
    blob_reseal(b, len, 2);
    TQ_CHECK_ERR(tq_state_deserialize(b, len, NULL, &l, &f.err), TQ_ERR_CORRUPT, &f.err);
    b[len - 1] = 1; /* erased but still named */
    blob_reseal(b, len, 2);
    TQ_CHECK_ERR(tq_state_deserialize(b, len, NULL, &l, &f.err), TQ_ERR_CORRUPT, &f.err);
    tq_free(blob, len);
    fx_free(&f);
}

int main(void) {
    tq_test_seed("test_state_rules");
    test_status_table();
    test_ingest_idempotent();
    test_identity_id_lengths();
    test_email_case_folding_bytes();
    test_ticket_messages_pages();
    test_text_valid_every_position();
    test_append_reopen_follow_up();
    test_customer_merge();
    test_ticket_merge();
    test_claim_capacity();
    test_autoassign();
    test_assignment_timeout();
    test_outbox();
    test_outbox_attempts_in_entry();
    test_reserve_messages();
    test_huge_regions();
    test_prefault_hook();
    test_identity_table_incremental_growth();
    test_sla_first_reply_breach_and_warning();
    test_sla_automated_reply_does_not_count();
    test_sla_next_reply();
    test_sla_pauses_and_reopen();
    test_sla_priority_change();
    test_sla_business_hours();
    test_sla_business_hours_pauses_priority();
    test_reply_window();
    test_ingest_index_fast_path();
    test_wake_and_auto_close();
    test_tenant_isolation();
    test_limits();
    test_tokens_and_consumers();
    test_hourly_and_stats();
    test_message_view_from_record();
    test_snapshot_round_trip();
    test_customer_erase();
    test_customer_erase_many();
    test_sla_target_cap();
    test_token_full_compare();
    test_snapshot_v1_and_erased_flag();
    printf("test_state_rules: ok\n");
    return 0;
}
