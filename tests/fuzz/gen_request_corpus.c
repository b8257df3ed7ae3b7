/* tests/fuzz/gen_request_corpus.c: writes the seed corpus of fuzz_request.
 *
 * Run: fuzz_request_corpus DIR. Each seed is a session byte (0 anonymous, 1 server admin,
 * 2 tenant admin of tenant 1) followed by one or more real Request frames built with
 * protobuf-c, so the fuzzer starts from inputs that reach every handler family. Committed
 * under tests/fuzz/corpus/fuzz_request/ (regenerate when the protocol grows).
 */
#include "frame.h"
#include "ticketq.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint8_t out[65536];
static size_t out_len;

static void begin(uint8_t session) {
    out[0] = session;
    out_len = 1;
}

static void add(Ticketq__Request *req) {
    size_t n = tq_frame_pack(&req->base, out + out_len, sizeof(out) - out_len);
    if (n == 0) abort();
    out_len += n;
}

static void save(const char *dir, const char *name) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (fp == NULL || fwrite(out, 1, out_len, fp) != out_len) abort();
    fclose(fp);
}

#define REQ(var, field, CASE, op_ptr, id_)                                                         \
    Ticketq__Request var = TICKETQ__REQUEST__INIT;                                                 \
    var.id = (id_);                                                                                \
    var.op_case = TICKETQ__REQUEST__OP_##CASE;                                                     \
    var.field = (op_ptr)

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_request_corpus DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    char s_tok[] = "tq_0123", s_name[] = "acme", s_from[] = "+4915100000", s_body[] = "hello",
         s_ext[] = "ext-1", s_tag[] = "vip", s_tz[] = "Europe/Berlin", s_day[] = "2026-12-25",
         s_cons[] = "hook";
    {
        Ticketq__Ping p = TICKETQ__PING__INIT;
        REQ(r, ping, PING, &p, 1);
        Ticketq__Auth a = TICKETQ__AUTH__INIT;
        a.token = s_tok;
        REQ(r2, auth, AUTH, &a, 2);
        begin(0);
        add(&r2);
        add(&r);
        save(dir, "anon-auth-ping");
    }
    {
        Ticketq__TenantCreate t = TICKETQ__TENANT_CREATE__INIT;
        t.name = s_name;
        REQ(r, tenant_create, TENANT_CREATE, &t, 1);
        Ticketq__QueueCreate q = TICKETQ__QUEUE_CREATE__INIT;
        q.name = s_name;
        q.has_auto_assign = 1;
        q.auto_assign = 1;
        REQ(r2, queue_create, QUEUE_CREATE, &q, 2);
        r2.has_tenant_id = 1;
        r2.tenant_id = 1;
        Ticketq__Stats st = TICKETQ__STATS__INIT;
        REQ(r3, stats, STATS, &st, 3);
        begin(1);
        add(&r);
        add(&r2);
        add(&r3);
        save(dir, "admin-tenant-queue-stats");
    }
    {
        Ticketq__Ingest in = TICKETQ__INGEST__INIT;
        in.channel = TICKETQ__CHANNEL__WHATSAPP;
        in.from = s_from;
        in.body = s_body;
        in.external_id = s_ext;
        in.has_queue_id = 1;
        in.queue_id = 1;
        char *tags[1] = {s_tag};
        in.n_tags = 1;
        in.tags = tags;
        REQ(r, ingest, INGEST, &in, 1);
        Ticketq__TicketGet g = TICKETQ__TICKET_GET__INIT;
        g.ticket_id = 1;
        REQ(r2, ticket_get, TICKET_GET, &g, 2);
        Ticketq__Reply rp = TICKETQ__REPLY__INIT;
        rp.ticket_id = 1;
        rp.body = s_body;
        REQ(r3, reply, REPLY, &rp, 3);
        Ticketq__OutboxTake ot = TICKETQ__OUTBOX_TAKE__INIT;
        ot.channel = TICKETQ__CHANNEL__WHATSAPP;
        REQ(r4, outbox_take, OUTBOX_TAKE, &ot, 4);
        Ticketq__TicketUpdate tu = TICKETQ__TICKET_UPDATE__INIT;
        tu.ticket_id = 1;
        tu.has_status = 1;
        tu.status = TICKETQ__STATUS__SOLVED;
        char *tags2[1] = {s_tag};
        tu.n_tags_add = 1;
        tu.tags_add = tags2;
        REQ(r5, ticket_update, TICKET_UPDATE, &tu, 5);
        begin(2);
        add(&r);
        add(&r2);
        add(&r3);
        add(&r4);
        add(&r5);
        save(dir, "tenant-ingest-get-reply-outbox-update");
    }
    {
        Ticketq__AgentCreate ac = TICKETQ__AGENT_CREATE__INIT;
        ac.name = s_name;
        REQ(r, agent_create, AGENT_CREATE, &ac, 1);
        Ticketq__Claim cl = TICKETQ__CLAIM__INIT;
        cl.has_agent_id = 1;
        cl.agent_id = 1;
        REQ(r2, claim, CLAIM, &cl, 2);
        Ticketq__SlaNearest sn = TICKETQ__SLA_NEAREST__INIT;
        REQ(r3, sla_nearest, SLA_NEAREST, &sn, 3);
        Ticketq__CustomerLookup lk = TICKETQ__CUSTOMER_LOOKUP__INIT;
        Ticketq__Identity id = TICKETQ__IDENTITY__INIT;
        id.channel = TICKETQ__CHANNEL__WHATSAPP;
        id.external_id = s_from;
        lk.identity = &id;
        REQ(r4, customer_lookup, CUSTOMER_LOOKUP, &lk, 4);
        begin(2);
        add(&r);
        add(&r2);
        add(&r3);
        add(&r4);
        save(dir, "tenant-agent-claim-sla-lookup");
    }
    {
        Ticketq__BusinessHoursSet bh = TICKETQ__BUSINESS_HOURS_SET__INIT;
        bh.tz_name = s_tz;
        Ticketq__DayHours d = TICKETQ__DAY_HOURS__INIT;
        d.weekday = 1;
        d.start_minute = 540;
        d.end_minute = 1020;
        Ticketq__DayHours *days[1] = {&d};
        bh.n_hours = 1;
        bh.hours = days;
        char *hol[1] = {s_day};
        bh.n_holidays = 1;
        bh.holidays = hol;
        REQ(r, business_hours_set, BUSINESS_HOURS_SET, &bh, 1);
        Ticketq__SlaPolicy pol = TICKETQ__SLA_POLICY__INIT;
        pol.name = s_name;
        Ticketq__SlaTargets tg = TICKETQ__SLA_TARGETS__INIT;
        uint64_t fr[4] = {1000, 2000, 3000, 4000};
        tg.n_first_reply_ms = 4;
        tg.first_reply_ms = fr;
        pol.targets = &tg;
        Ticketq__SlaPolicy *pols[1] = {&pol};
        Ticketq__SlaPoliciesSet ps = TICKETQ__SLA_POLICIES_SET__INIT;
        ps.n_policies = 1;
        ps.policies = pols;
        REQ(r2, sla_policies_set, SLA_POLICIES_SET, &ps, 2);
        begin(2);
        add(&r);
        add(&r2);
        save(dir, "tenant-hours-policies");
    }
    {
        Ticketq__Subscribe sb = TICKETQ__SUBSCRIBE__INIT;
        sb.has_from_lsn = 1;
        sb.from_lsn = 0;
        sb.consumer = s_cons;
        REQ(r, subscribe, SUBSCRIBE, &sb, 1);
        Ticketq__ConsumerAck ca = TICKETQ__CONSUMER_ACK__INIT;
        ca.consumer = s_cons;
        ca.lsn = 3;
        REQ(r2, consumer_ack, CONSUMER_ACK, &ca, 2);
        Ticketq__Unsubscribe us = TICKETQ__UNSUBSCRIBE__INIT;
        REQ(r3, unsubscribe, UNSUBSCRIBE, &us, 3);
        begin(2);
        add(&r);
        add(&r2);
        add(&r3);
        save(dir, "tenant-subscribe-ack");
    }
    {
        Ticketq__Ping p = TICKETQ__PING__INIT;
        REQ(o1, ping, PING, &p, 1);
        Ticketq__TokenIssue ti = TICKETQ__TOKEN_ISSUE__INIT;
        ti.role = TICKETQ__ROLE__INTEGRATION;
        REQ(o2, token_issue, TOKEN_ISSUE, &ti, 2);
        Ticketq__Request *ops[2] = {&o1, &o2};
        Ticketq__Batch b = TICKETQ__BATCH__INIT;
        b.n_ops = 2;
        b.ops = ops;
        REQ(r, batch, BATCH, &b, 9);
        r.has_tenant_id = 1;
        r.tenant_id = 1;
        begin(1);
        add(&r);
        save(dir, "admin-batch");
    }
    return 0;
}
