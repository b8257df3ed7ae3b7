/* tests/server/test_server_ingest_run.c: single Ingests pipelined from several connections
 * into one loop turn are applied as a run (server/dispatch.c, tq_dispatch_flush) with exactly
 * the results of one-at-a-time dispatch.
 *
 * Method: two fresh servers get the same setup (a tenant, a queue, three existing customers).
 * On the first, ticketqd is stopped (SIGSTOP) while four connections each write CONN_OPS
 * Ingest frames in one send, then continued (SIGCONT): its first turn finds every
 * connection's frames at once, and the turn dispatches them connection by connection in slot
 * order, so the server collects them into runs. On the second (the reference), the same
 * requests are sent one at a time, waiting for each answer, in that same order. Every
 * answer must match: error code, created/duplicate flags, customer, ticket, message ids and
 * ticket numbers, and the LSN relative to the first one of the burst (so the log holds the
 * same records in the same order). The ops mix first contacts, existing customers shared by
 * all connections, a resend of an earlier idempotency key of the same connection inside the
 * burst, an op with an out-of-range channel, one naming a missing tenant (refused by the gate) and
 * one naming a tenant without an email queue (refused by the apply). Checked both with
 * the default turn and with --turn poll (which flushes the run between connections).
 * ticketq_turn_answered_connections must show the burst answered in one wave and one
 * connection per answering turn one at a time.
 */
#include "rawc.h"

#include "frame.h"
#include "tq_fixture.h"
#include "tq_test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { CONNS = 4, CONN_OPS = 30, DUP_CONN = 1, DUP_OP = 20, DUP_OF = 4 };
enum { BAD_CONN = 2, BAD_OP = 7, FOREIGN_CONN = 3, FOREIGN_OP = 11, OTHER_CONN = 0, OTHER_OP = 13 };
#define MISSING_TENANT 999999u

struct answer {
    int code;
    uint64_t lsn, customer_id, ticket_id, message_id, ticket_number;
    bool customer_created, ticket_created, duplicate;
};

struct setup {
    uint64_t tenant, other_tenant, queue;
};

static struct setup prepare(struct rawc *admin) {
    struct setup s;
    s.tenant = rawc_tenant_create(admin, "run");
    s.other_tenant = rawc_tenant_create(admin, "other");
    s.queue = rawc_queue_create(admin, s.tenant, "inbox");
    rawc_default_queue(admin, s.tenant, TICKETQ__CHANNEL__EMAIL, s.queue);
    for (int i = 0; i < 3; i++) { /* the existing customers (and their open tickets) */
        char from[32], ext[32];
        snprintf(from, sizeof(from), "old%d@example.com", i);
        snprintf(ext, sizeof(ext), "setup-%d", i);
        Ticketq__Ingest in = TICKETQ__INGEST__INIT;
        in.channel = TICKETQ__CHANNEL__EMAIL;
        in.from = from;
        in.external_id = ext;
        in.body = tq_test_mut("hello");
        RAWC_REQ(req, ingest, INGEST, &in);
        req.has_tenant_id = true;
        req.tenant_id = s.tenant;
        Ticketq__Response *r = rawc_call(admin, &req);
        RAWC_EXPECT(r, 0);
        TQ_CHECK(r->ids->customer_created);
        rawc_free(r);
    }
    return s;
}

/* Frame of op i of connection c. */
static size_t pack_op(const struct setup *s, int c, int i, uint8_t *out, size_t cap) {
    char from[48], ext[48];
    int oi = (c == DUP_CONN && i == DUP_OP) ? DUP_OF : i; /* the resend repeats op DUP_OF */
    if (oi % 3 == 0) {
        snprintf(from, sizeof(from), "old%d@example.com", (c + oi) % 3);
    } else {
        snprintf(from, sizeof(from), "new-%d-%d@example.com", c, oi / 6); /* 2nd, 3rd op: back */
    }
    snprintf(ext, sizeof(ext), "run-%d-%d", c, oi);
    Ticketq__Ingest in = TICKETQ__INGEST__INIT;
    in.channel = (c == BAD_CONN && i == BAD_OP) ? (Ticketq__Channel)99 : TICKETQ__CHANNEL__EMAIL;
    in.from = from;
    in.external_id = ext;
    in.subject = tq_test_mut("run");
    in.body = tq_test_mut("pipelined single ingest");
    RAWC_REQ(req, ingest, INGEST, &in);
    req.id = (uint64_t)(c * 1000 + i + 1);
    req.has_tenant_id = true;
    req.tenant_id = s->tenant;
    if (c == FOREIGN_CONN && i == FOREIGN_OP)
        req.tenant_id = MISSING_TENANT;                                    /* refused by the gate */
    if (c == OTHER_CONN && i == OTHER_OP) req.tenant_id = s->other_tenant; /* by the apply */
    size_t n = tq_frame_pack(&req.base, out, cap);
    TQ_CHECK(n > 0);
    return n;
}

static struct answer answer_of(const Ticketq__Response *r, uint64_t id) {
    TQ_CHECK(r != NULL);
    TQ_CHECK_UEQ(r->id, id);
    struct answer a;
    memset(&a, 0, sizeof(a));
    a.code = rawc_code(r);
    if (a.code != 0) return a;
    TQ_CHECK(r->has_lsn);
    TQ_CHECK_EQ(r->result_case, TICKETQ__RESPONSE__RESULT_IDS);
    a.lsn = r->lsn;
    a.customer_id = r->ids->customer_id;
    a.ticket_id = r->ids->ticket_id;
    a.message_id = r->ids->message_id;
    a.ticket_number = r->ids->ticket_number;
    a.customer_created = r->ids->customer_created;
    a.ticket_created = r->ids->ticket_created;
    a.duplicate = r->ids->duplicate;
    return a;
}

/* Value of the unlabelled metric NAME served at GET /metrics on addr; fails if absent. */
static uint64_t metric_value(const char *addr, const char *name) {
    static char text[256 * 1024];
    rawc_get_metrics(addr, text, sizeof(text));
    return rawc_metric_value(text, name);
}

/* Runs the workload on a fresh server; burst: all at once into one turn, else one at a time. */
static void run(const char *turn, bool burst, struct answer out[CONNS][CONN_OPS]) {
    static struct tq_fixture f; /* static: the exit guard keeps a pointer to it */
    memset(&f, 0, sizeof(f));
    rawc_guard_fixture(&f);
    char metrics_addr[64];
    rawc_free_port_addr(metrics_addr, sizeof(metrics_addr));
    f.extra_args[0] = "--turn";
    f.extra_args[1] = turn;
    f.extra_args[2] = "--metrics";
    f.extra_args[3] = metrics_addr;
    TQ_CHECK_EQ(tq_fixture_start(&f), 0);
    struct rawc admin, conns[CONNS];
    rawc_open_authed(&admin, f.addr, f.admin_token);
    struct setup s = prepare(&admin);
    for (int c = 0; c < CONNS; c++) /* accepted in this order: slots in this order */
        rawc_open_authed(&conns[c], f.addr, f.admin_token);
    static uint8_t frames[CONNS][CONN_OPS * 256];
    size_t len[CONNS] = {0};
    size_t at[CONNS][CONN_OPS + 1];
    for (int c = 0; c < CONNS; c++) {
        for (int i = 0; i < CONN_OPS; i++) {
            at[c][i] = len[c];
            len[c] += pack_op(&s, c, i, frames[c] + len[c], sizeof(frames[c]) - len[c]);
        }
        at[c][CONN_OPS] = len[c];
        TQ_CHECK(len[c] < 16384); /* one ring buffer, one send: arrives whole */
    }
    if (burst) {
        TQ_CHECK_EQ(kill(f.pid, SIGSTOP), 0);
        for (int c = 0; c < CONNS; c++)
            TQ_CHECK_EQ(rawc_send_raw(&conns[c], frames[c], len[c]), 0);
        TQ_CHECK_EQ(kill(f.pid, SIGCONT), 0);
        for (int c = 0; c < CONNS; c++) {
            for (int i = 0; i < CONN_OPS; i++) {
                Ticketq__Response *r = rawc_recv(&conns[c], 10000);
                out[c][i] = answer_of(r, (uint64_t)(c * 1000 + i + 1));
                rawc_free(r);
            }
        }
    } else {
        for (int c = 0; c < CONNS; c++) {
            for (int i = 0; i < CONN_OPS; i++) {
                TQ_CHECK_EQ(rawc_send_raw(&conns[c], frames[c] + at[c][i], at[c][i + 1] - at[c][i]),
                            0);
                Ticketq__Response *r = rawc_recv(&conns[c], 10000);
                out[c][i] = answer_of(r, (uint64_t)(c * 1000 + i + 1));
                rawc_free(r);
            }
        }
    }
    /* The wave width: one at a time, every turn that answered anyone answered exactly one
     * connection; the burst's single batch answers all four connections in one turn. */
    uint64_t waves = metric_value(metrics_addr, "ticketq_turn_answered_connections_count");
    uint64_t answered = metric_value(metrics_addr, "ticketq_turn_answered_connections_sum");
    TQ_CHECK_GE(waves, burst ? 1u : (uint64_t)(CONNS * CONN_OPS));
    if (burst) {
        TQ_CHECK_GT(answered, waves);
    } else {
        TQ_CHECK_UEQ(answered, waves);
    }
    for (int c = 0; c < CONNS; c++)
        rawc_close(&conns[c]);
    rawc_close(&admin);
    tq_fixture_cleanup(&f);
}

/* The one-at-a-time semantics the reference must show (so a broken reference cannot make
 * the comparison pass vacuously). */
static void check_reference(struct answer a[CONNS][CONN_OPS]) {
    TQ_CHECK_EQ(a[BAD_CONN][BAD_OP].code, TICKETQ__ERROR_CODE__INVALID_ARGUMENT);
    TQ_CHECK_EQ(a[FOREIGN_CONN][FOREIGN_OP].code, TICKETQ__ERROR_CODE__NOT_FOUND);
    TQ_CHECK_NE(a[OTHER_CONN][OTHER_OP].code, 0); /* no default email queue there */
    const struct answer *dup = &a[DUP_CONN][DUP_OP], *orig = &a[DUP_CONN][DUP_OF];
    TQ_CHECK_EQ(dup->code, 0);
    TQ_CHECK(dup->duplicate && !dup->ticket_created && !dup->customer_created);
    TQ_CHECK_UEQ(dup->message_id, orig->message_id);
    TQ_CHECK_UEQ(dup->ticket_id, orig->ticket_id);
    TQ_CHECK(a[0][1].customer_created && a[0][1].ticket_created); /* a first contact */
    TQ_CHECK(!a[0][2].customer_created);                          /* ... coming back */
    TQ_CHECK_UEQ(a[0][2].ticket_id, a[0][1].ticket_id);
    TQ_CHECK(!a[0][0].customer_created); /* an existing customer */
}

static void compare(const char *turn, struct answer got[CONNS][CONN_OPS],
                    struct answer want[CONNS][CONN_OPS]) {
    uint64_t got_base = got[0][0].lsn, want_base = want[0][0].lsn;
    TQ_CHECK(got_base != 0 && want_base != 0);
    for (int c = 0; c < CONNS; c++) {
        for (int i = 0; i < CONN_OPS; i++) {
            const struct answer *g = &got[c][i], *w = &want[c][i];
            if (g->code != w->code || (g->code == 0 && g->lsn - got_base != w->lsn - want_base) ||
                g->customer_id != w->customer_id || g->ticket_id != w->ticket_id ||
                g->message_id != w->message_id || g->ticket_number != w->ticket_number ||
                g->customer_created != w->customer_created ||
                g->ticket_created != w->ticket_created || g->duplicate != w->duplicate) {
                fprintf(stderr,
                        "test_server_ingest_run: --turn %s conn %d op %d differs from one at a "
                        "time: code %d/%d lsn+%llu/+%llu customer %llu/%llu ticket %llu/%llu "
                        "message %llu/%llu created %d%d/%d%d dup %d/%d\n",
                        turn, c, i, g->code, w->code, (unsigned long long)(g->lsn - got_base),
                        (unsigned long long)(w->lsn - want_base),
                        (unsigned long long)g->customer_id, (unsigned long long)w->customer_id,
                        (unsigned long long)g->ticket_id, (unsigned long long)w->ticket_id,
                        (unsigned long long)g->message_id, (unsigned long long)w->message_id,
                        g->customer_created, g->ticket_created, w->customer_created,
                        w->ticket_created, g->duplicate, w->duplicate);
                exit(1);
            }
        }
    }
}

int main(void) {
    (void)tq_test_seed("test_server_ingest_run");
    static struct answer want[CONNS][CONN_OPS], got[CONNS][CONN_OPS];
    run("classic", false, want);
    check_reference(want);
    const char *turns[] = {"classic", "poll"};
    for (size_t t = 0; t < 2; t++) {
        run(turns[t], true, got);
        check_reference(got);
        compare(turns[t], got, want);
    }
    fprintf(stderr, "test_server_ingest_run: ok\n");
    return 0;
}
