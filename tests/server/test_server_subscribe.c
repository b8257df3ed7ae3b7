/* tests/server/test_server_subscribe.c: Subscribe catch-up + live, filters, durable consumers,
 * slow subscribers, and the metrics endpoint.
 *
 * Goal: a subscriber sees every committed event of its tenant exactly once, in LSN order,
 * whether it catches up from the log, follows live, or falls behind. Method: a real server
 * with a small --subscriber-buffer; messages are ingested through one connection while
 * subscribers on others read MESSAGE_ADDED events; the set of message ids seen must equal the
 * set ingested (no gap, no duplicate) and LSNs must increase. A durable consumer acks a
 * position, disconnects, the server restarts, and the consumer resumes strictly after it.
 * A subscriber that does not read while hundreds of messages are ingested is switched to
 * log catch-up (visible in /metrics) and still gets everything. A second tenant's events
 * never reach the first tenant's subscriber.
 */
#include "frame.h"
#include "rawc.h"
#include "tq_fixture.h"
#include "tq_test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TOTAL_MAX 2000
static uint64_t event_lsns[TOTAL_MAX]; /* LSN of the i-th MESSAGE_ADDED of the last read */

static uint64_t ingest(struct rawc *c, const char *from, const char *body) {
    Ticketq__Ingest op = TICKETQ__INGEST__INIT;
    op.channel = TICKETQ__CHANNEL__EMAIL;
    op.from = (char *)(uintptr_t)from;
    op.body = (char *)(uintptr_t)body;
    RAWC_REQ(req, ingest, INGEST, &op);
    Ticketq__Response *r = rawc_call(c, &req);
    RAWC_EXPECT(r, 0);
    uint64_t id = r->ids->message_id;
    rawc_free(r);
    return id;
}

static void setup_tenant(struct rawc *admin, const char *name, char *token_out) {
    uint64_t t = rawc_tenant_create(admin, name);
    uint64_t q = rawc_queue_create(admin, t, "mail");
    rawc_default_queue(admin, t, TICKETQ__CHANNEL__EMAIL, q);
    rawc_token_issue(admin, t, TICKETQ__ROLE__INTEGRATION, 0, token_out);
}

/* Sends Subscribe for MESSAGE_ADDED events (all types if all_types); checks the
 * acknowledgement. */
static void subscribe_x(struct rawc *c, uint64_t from_lsn, const char *consumer, bool all_types) {
    Ticketq__Subscribe op = TICKETQ__SUBSCRIBE__INIT;
    op.has_from_lsn = true;
    op.from_lsn = from_lsn;
    op.consumer = (char *)(uintptr_t)consumer;
    Ticketq__EventType types[1] = {TICKETQ__EVENT_TYPE__MESSAGE_ADDED};
    op.n_types = all_types ? 0 : 1;
    op.types = all_types ? NULL : types;
    RAWC_REQ(req, subscribe, SUBSCRIBE, &op);
    req.id = 77;
    Ticketq__Response *r = rawc_call(c, &req);
    RAWC_EXPECT(r, 0);
    TQ_CHECK_EQ(r->result_case, TICKETQ__RESPONSE__RESULT_EVENTS);
    rawc_free(r);
}

/* Reads events until `want` MESSAGE_ADDED events arrived; appends their message ids. */
static void subscribe(struct rawc *c, uint64_t from_lsn, const char *consumer) {
    subscribe_x(c, from_lsn, consumer, false);
}

/* Reads events until `want` MESSAGE_ADDED events arrived; appends their message ids. Other
 * event types (all_types subscriptions) are skipped; LSNs never decrease, and MESSAGE_ADDED
 * LSNs strictly increase (one message per command). */
static void read_events(struct rawc *c, uint64_t *ids, size_t *count, size_t want,
                        uint64_t *last_lsn) {
    uint64_t last_any = *last_lsn;
    while (*count < want) {
        Ticketq__Response *r = rawc_recv(c, 15000);
        TQ_CHECK(r != NULL);
        RAWC_EXPECT(r, 0);
        TQ_CHECK_UEQ(r->id, 77);
        TQ_CHECK_EQ(r->result_case, TICKETQ__RESPONSE__RESULT_EVENTS);
        for (size_t i = 0; i < r->events->n_events; i++) {
            const Ticketq__Event *e = r->events->events[i];
            TQ_CHECK_GE(e->lsn, last_any);
            last_any = e->lsn;
            if (e->type != TICKETQ__EVENT_TYPE__MESSAGE_ADDED) continue;
            TQ_CHECK_GT(e->lsn, *last_lsn); /* LSN order, no duplicates */
            *last_lsn = e->lsn;
            TQ_CHECK(e->has_message_id);
            TQ_CHECK_LT(*count, (size_t)TOTAL_MAX); /* frames may carry more than `want` */
            event_lsns[*count] = e->lsn;
            ids[(*count)++] = e->message_id;
        }
        rawc_free(r);
    }
}

static void check_same(const uint64_t *a, const uint64_t *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        TQ_CHECK_UEQ(a[i], b[i]);
}

static void consumer_ack(struct rawc *c, const char *name, uint64_t lsn) {
    Ticketq__ConsumerAck op = TICKETQ__CONSUMER_ACK__INIT;
    op.consumer = (char *)(uintptr_t)name;
    op.lsn = lsn;
    RAWC_REQ(req, consumer_ack, CONSUMER_ACK, &op);
    Ticketq__Response *r = rawc_call(c, &req);
    RAWC_EXPECT(r, 0);
    rawc_free(r);
}

static uint64_t stats_last_lsn(struct rawc *c) {
    Ticketq__Stats op = TICKETQ__STATS__INIT;
    RAWC_REQ(req, stats, STATS, &op);
    Ticketq__Response *r = rawc_call(c, &req);
    RAWC_EXPECT(r, 0);
    uint64_t lsn = r->stats->last_lsn;
    rawc_free(r);
    return lsn;
}

/* The TICK: an SLA first-reply target of 800 ms breaches without any client request, the
 * breach is an event, and once nothing is due no TICK records are written. */
static void test_tick(const char *addr, const char *admin_token) {
    struct rawc admin;
    rawc_open_authed(&admin, addr, admin_token);
    char tok[80];
    setup_tenant(&admin, "gamma", tok);
    rawc_close(&admin);
    struct rawc c;
    rawc_open_authed(&c, addr, tok);
    Ticketq__SlaTargets tg = TICKETQ__SLA_TARGETS__INIT;
    uint64_t first_reply[4] = {800, 800, 800, 800};
    tg.n_first_reply_ms = 4;
    tg.first_reply_ms = first_reply;
    Ticketq__SlaPolicy pol = TICKETQ__SLA_POLICY__INIT;
    pol.name = (char *)(uintptr_t) "fast";
    pol.targets = &tg;
    Ticketq__SlaPolicy *pols[1] = {&pol};
    Ticketq__SlaPoliciesSet ps = TICKETQ__SLA_POLICIES_SET__INIT;
    ps.n_policies = 1;
    ps.policies = pols;
    /* An integration may not set policies: use a tenant admin token. */
    RAWC_REQ(preq, sla_policies_set, SLA_POLICIES_SET, &ps);
    Ticketq__Response *r = rawc_call(&c, &preq);
    RAWC_EXPECT(r, TICKETQ__ERROR_CODE__PERMISSION_DENIED);
    rawc_free(r);
    rawc_open_authed(&admin, addr, admin_token);
    Ticketq__Stats so = TICKETQ__STATS__INIT;
    RAWC_REQ(sreq, stats, STATS, &so);
    r = rawc_call(&admin, &sreq);
    RAWC_EXPECT(r, 0);
    uint64_t gamma = r->stats->tenant_count; /* tenants are numbered 1..n: gamma is the last */
    rawc_free(r);
    preq.id = 0;
    preq.has_tenant_id = true;
    preq.tenant_id = gamma;
    r = rawc_call(&admin, &preq);
    RAWC_EXPECT(r, 0);
    rawc_free(r);
    rawc_close(&admin);

    struct rawc s;
    rawc_open_authed(&s, addr, tok);
    Ticketq__Subscribe op = TICKETQ__SUBSCRIBE__INIT;
    Ticketq__EventType types[1] = {TICKETQ__EVENT_TYPE__SLA_BREACH};
    op.n_types = 1;
    op.types = types;
    RAWC_REQ(req, subscribe, SUBSCRIBE, &op);
    req.id = 91;
    r = rawc_call(&s, &req);
    RAWC_EXPECT(r, 0);
    rawc_free(r);
    Ticketq__Ingest in = TICKETQ__INGEST__INIT;
    in.channel = TICKETQ__CHANNEL__EMAIL;
    in.from = (char *)(uintptr_t) "late@example.com";
    in.body = (char *)(uintptr_t) "anyone there?";
    RAWC_REQ(ireq, ingest, INGEST, &in);
    r = rawc_call(&c, &ireq);
    RAWC_EXPECT(r, 0);
    uint64_t ticket = r->ids->ticket_id;
    rawc_free(r);
    bool breached = false;
    while (!breached) {
        r = rawc_recv(&s, 10000); /* no request is sent: only the server's TICK can do it */
        TQ_CHECK(r != NULL);
        RAWC_EXPECT(r, 0);
        for (size_t i = 0; i < r->events->n_events; i++) {
            const Ticketq__Event *e = r->events->events[i];
            TQ_CHECK_EQ(e->type, TICKETQ__EVENT_TYPE__SLA_BREACH);
            if (e->ticket_id == ticket && e->sla_metric == TICKETQ__SLA_METRIC__FIRST_REPLY) {
                breached = true;
            }
        }
        rawc_free(r);
    }
    rawc_close(&s);
    /* Nothing is due any more: the log must not grow by itself. */
    uint64_t before = stats_last_lsn(&c);
    struct timespec ts = {1, 500 * 1000000L};
    nanosleep(&ts, NULL);
    TQ_CHECK_UEQ(stats_last_lsn(&c), before);
    rawc_close(&c);
}

int main(void) {
    tq_test_seed("test_server_subscribe");
    /* A fixed metrics port would collide across parallel runs: find a free one. */
    char metrics_addr[64];
    rawc_free_port_addr(metrics_addr, sizeof(metrics_addr));

    struct tq_fixture f;
    memset(&f, 0, sizeof(f));
    rawc_guard_fixture(&f);
    f.extra_args[0] = "--subscriber-buffer";
    f.extra_args[1] = "4096";
    f.extra_args[2] = "--metrics";
    f.extra_args[3] = metrics_addr;
    f.with_unix = true; /* the slow subscriber uses it: no TCP buffer autotuning there */
    TQ_CHECK_EQ(tq_fixture_start(&f), 0);
    struct rawc admin;
    rawc_open_authed(&admin, f.addr, f.admin_token);
    /* Deep pipelining (more than the per-turn frame bound and the in-flight bound of 1024):
     * everything is answered, in order, with no client read until all is sent. */
    {
        static uint8_t many[5000 * 16];
        size_t len = 0;
        for (uint64_t i = 0; i < 5000; i++) {
            Ticketq__Ping p = TICKETQ__PING__INIT;
            RAWC_REQ(req, ping, PING, &p);
            req.id = 100000 + i;
            len += tq_frame_pack(&req.base, many + len, sizeof(many) - len);
        }
        TQ_CHECK_EQ(rawc_send_raw(&admin, many, len), 0);
        for (uint64_t i = 0; i < 5000; i++) {
            Ticketq__Response *r = rawc_recv(&admin, 10000);
            RAWC_EXPECT(r, 0);
            TQ_CHECK_UEQ(r->id, 100000 + i);
            rawc_free(r);
        }
    }
    char tok_a[80], tok_b[80];
    setup_tenant(&admin, "alpha", tok_a);
    setup_tenant(&admin, "beta", tok_b);
    rawc_close(&admin);
    struct rawc w, wb;
    rawc_open_authed(&w, f.addr, tok_a);
    rawc_open_authed(&wb, f.addr, tok_b);

    enum { TOTAL = TOTAL_MAX };
    static uint64_t sent[TOTAL], got[TOTAL];
    size_t nsent = 0;
    for (; nsent < 5; nsent++)
        sent[nsent] = ingest(&w, "ann@example.com", "catch-up");
    ingest(&wb, "zed@example.com", "other tenant"); /* must never show up */

    /* Catch-up from the start, then live. */
    struct rawc s;
    rawc_open_authed(&s, f.addr, tok_a);
    subscribe(&s, 0, NULL);
    size_t ngot = 0;
    uint64_t last = 0;
    read_events(&s, got, &ngot, 5, &last);
    check_same(sent, got, 5);
    for (; nsent < 8; nsent++)
        sent[nsent] = ingest(&w, "bob@example.com", "live");
    ingest(&wb, "zed@example.com", "other tenant again");
    read_events(&s, got, &ngot, 8, &last);
    check_same(sent, got, 8);
    uint64_t lsn_after_8 = last;

    /* A slow subscriber: does not read while many messages arrive (falls back to the log). */
    struct rawc slow;
    rawc_open_authed(&slow, f.unix_path, tok_a);
    subscribe_x(&slow, lsn_after_8, NULL, true);
    for (; nsent < TOTAL; nsent++) {
        char from[64]; /* a new customer and ticket each: several events per message */
        snprintf(from, sizeof(from), "c%zu@example.com", nsent);
        sent[nsent] = ingest(&w, from, "slow phase");
    }
    read_events(&s, got, &ngot, TOTAL, &last); /* the live one got everything */
    check_same(sent, got, TOTAL);
    static uint64_t got_slow[TOTAL];
    size_t nslow = 8;
    uint64_t last_slow = lsn_after_8;
    read_events(&slow, got_slow, &nslow, TOTAL, &last_slow);
    check_same(sent + 8, got_slow + 8, TOTAL - 8);
    char text[65536];
    rawc_get_metrics(metrics_addr, text, sizeof(text));
    TQ_CHECK(strstr(text, "200 OK") != NULL);
    TQ_CHECK(strstr(text, "ticketq_requests_total{op=\"ingest\"}") != NULL);
    TQ_CHECK(strstr(text, "ticketq_fsync_seconds_count") != NULL);
    /* Every acknowledged record was in exactly one metered batch (the log meters each batch as
     * it retires; a fresh data directory, so the acknowledged LSN counts every record). */
    uint64_t records = rawc_metric_value(text, "ticketq_batch_records_sum");
    uint64_t batches = rawc_metric_value(text, "ticketq_batch_records_count");
    TQ_CHECK_UEQ(records, rawc_metric_value(text, "ticketq_log_acked_lsn"));
    TQ_CHECK_UINT_OP(batches, >, 0);
    TQ_CHECK_UINT_OP(batches, <=, records);
    /* The per-record commit histogram counts each batch once per record, so its count is the
     * record count and its sum at least the per-batch sum (every batch has a record). */
    TQ_CHECK_UEQ(rawc_metric_value(text, "ticketq_fsync_record_seconds_count"), records);
    double fsync_sum = rawc_metric_sum(text, "ticketq_fsync_seconds_sum");
    TQ_CHECK(fsync_sum > 0);
    TQ_CHECK(rawc_metric_sum(text, "ticketq_fsync_record_seconds_sum") >= fsync_sum * (1 - 1e-5));
    /* Ingests wait for their batch's write and flush: the to_ack phase is not empty. */
    TQ_CHECK(rawc_check_request_phases(text) > 0);
    TQ_CHECK_GT(rawc_metric_value(text, "ticketq_subscriber_fallbacks_total"), 0);
    rawc_close(&slow);
    rawc_close(&s);

    /* Durable consumer: read some, ack, go away, restart the server, resume after the ack. */
    struct rawc d;
    rawc_open_authed(&d, f.addr, tok_a);
    subscribe(&d, 0, "webhook");
    size_t nd = 0;
    uint64_t last_d = 0;
    static uint64_t got_d[TOTAL];
    read_events(&d, got_d, &nd, TOTAL, &last_d);
    check_same(sent, got_d, TOTAL);
    consumer_ack(&d, "webhook", event_lsns[9]); /* processed the first 10 */
    rawc_close(&d);
    rawc_close(&w);
    rawc_close(&wb);
    TQ_CHECK_EQ(tq_fixture_stop(&f), 0);
    TQ_CHECK_EQ(tq_fixture_start(&f), 0);
    rawc_open_authed(&d, f.addr, tok_a);
    subscribe(&d, 0, "webhook");
    last_d = 0;
    nd = 0;
    read_events(&d, got_d, &nd, TOTAL - 10, &last_d);
    TQ_CHECK_EQ(nd, TOTAL - 10);
    check_same(sent + 10, got_d, TOTAL - 10); /* exactly the rest, nothing repeated */
    rawc_close(&d);
    test_tick(f.addr, f.admin_token);
    TQ_CHECK_EQ(tq_fixture_stop(&f), 0);
    tq_fixture_cleanup(&f);
    printf("test_server_subscribe: ok\n");
    return 0;
}
