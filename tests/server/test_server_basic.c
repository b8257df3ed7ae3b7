/* tests/server/test_server_basic.c: ticketqd end to end over real sockets.
 *
 * Goal: the server's contract at the process boundary. Method: start real ticketqd processes
 * (tests/fixture) on temp dirs and ephemeral loopback ports and talk to them with the raw
 * client (rawc). Checks: option errors exit 2 naming the option; --help exits 0; the first
 * start writes DIR/admin.token with mode 0600 and prints it once; auth errors; the role table
 * (every role against a sample of operations, allowed vs PERMISSION_DENIED); a foreign
 * tenant's ids and tenant_id answer exactly like missing ones; revocation takes effect on an
 * open connection; bodies come back from the log; SIGTERM drains and exits 0; data survives a
 * restart; the Unix socket serves the same protocol; every --ring / --io-workers /
 * --log-prezero / --log-dsync choice serves and recovers the same way; so does every --turn order
 * with 16 clients pipelining (answers in request order, LSNs growing per connection, every body
 * back after a restart).
 */
#include "rawc.h"
#include "tq_assert.h"
#include "tq_fixture.h"
#include "tq_test.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs ticketqd with args; returns the exit status and the first stderr line in err. */
static int run_ticketqd(const char *const *args, char *err, size_t cap) {
    char cmd[2048];
    size_t n = (size_t)snprintf(cmd, sizeof(cmd), "'%s'", tq_fixture_bin("server/ticketqd"));
    for (int i = 0; args[i] != NULL; i++) {
        n += (size_t)snprintf(cmd + n, sizeof(cmd) - n, " '%s'", args[i]);
    }
    snprintf(cmd + n, sizeof(cmd) - n, " 2>&1 >/dev/null");
    FILE *p = popen(cmd, "r");
    TQ_CHECK(p != NULL);
    size_t len = 0; /* all of stderr, up to cap */
    err[0] = '\0';
    char line[512];
    while (fgets(line, sizeof(line), p) != NULL) {
        size_t ln = strlen(line);
        if (len + ln < cap) {
            memcpy(err + len, line, ln + 1);
            len += ln;
        }
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_options(void) {
    char err[512];
    const char *a1[] = {"--data", "/tmp/x", "--bogus", NULL};
    TQ_CHECK_EQ(run_ticketqd(a1, err, sizeof(err)), 2);
    const char *a2[] = {"--data", "/tmp/x", "--fsync", "sometimes", NULL};
    TQ_CHECK_EQ(run_ticketqd(a2, err, sizeof(err)), 2);
    TQ_CHECK(strstr(err, "--fsync") != NULL);
    const char *a3[] = {"--listen", "127.0.0.1:0", NULL};
    TQ_CHECK_EQ(run_ticketqd(a3, err, sizeof(err)), 2);
    TQ_CHECK(strstr(err, "--data") != NULL);
    const char *a4[] = {"--data", "/tmp/x", "--max-frame", "12abc", NULL};
    TQ_CHECK_EQ(run_ticketqd(a4, err, sizeof(err)), 2);
    TQ_CHECK(strstr(err, "--max-frame") != NULL);
    const char *a7[] = {"--data", "/tmp/x", "--snapshot-every", "-1", NULL};
    TQ_CHECK_EQ(run_ticketqd(a7, err, sizeof(err)), 2);
    TQ_CHECK(strstr(err, "--snapshot-every") != NULL);
    const char *a7b[] = {"--data", "/tmp/x", "--snapshot-growth", "100001", NULL};
    TQ_CHECK_EQ(run_ticketqd(a7b, err, sizeof(err)), 2);
    TQ_CHECK(strstr(err, "--snapshot-growth: expected 0..100000 percent") != NULL);
    const char *a7c[] = {"--data", "/tmp/x", "--snapshot-growth", "-5", NULL};
    TQ_CHECK_EQ(run_ticketqd(a7c, err, sizeof(err)), 2);
    TQ_CHECK(strstr(err, "--snapshot-growth") != NULL);
    const char *a7d[] = {"--data", "/tmp/x", "--snapshot-growth", "2x", NULL};
    TQ_CHECK_EQ(run_ticketqd(a7d, err, sizeof(err)), 2);
    TQ_CHECK(strstr(err, "got '2x'") != NULL);
    const char *a8[] = {"--data", "/tmp/x", "--snapshots-keep", "0", NULL};
    TQ_CHECK_EQ(run_ticketqd(a8, err, sizeof(err)), 2);
    TQ_CHECK(strstr(err, "--snapshots-keep") != NULL);
    const char *a8b[] = {"--data", "/tmp/x", "--snapshot-precopy", "populate", NULL};
    TQ_CHECK_EQ(run_ticketqd(a8b, err, sizeof(err)), 2);
    TQ_CHECK(strstr(err, "--snapshot-precopy: expected on or off") != NULL);
    const char *a9[] = {"--data", "/tmp/x", "--ring", "fast", NULL};
    TQ_CHECK_EQ(run_ticketqd(a9, err, sizeof(err)), 2);
    TQ_CHECK(strstr(err, "--ring") != NULL);
    const char *a10[] = {"--data", "/tmp/x", "--io-workers", "65", NULL};
    TQ_CHECK_EQ(run_ticketqd(a10, err, sizeof(err)), 2);
    TQ_CHECK(strstr(err, "--io-workers") != NULL);
    const char *a11[] = {"--data", "/tmp/x", "--log-prezero", "yes", NULL};
    TQ_CHECK_EQ(run_ticketqd(a11, err, sizeof(err)), 2);
    TQ_CHECK(strstr(err, "--log-prezero") != NULL);
    const char *a12[] = {"--data", "/tmp/x", "--log-dsync", "1", NULL};
    TQ_CHECK_EQ(run_ticketqd(a12, err, sizeof(err)), 2);
    TQ_CHECK(strstr(err, "--log-dsync") != NULL);
    const char *a13[] = {"--data", "/tmp/x", "--turn", "eager", NULL};
    TQ_CHECK_EQ(run_ticketqd(a13, err, sizeof(err)), 2);
    TQ_CHECK(strstr(err, "--turn") != NULL);
    const char *a14[] = {"--data", "/tmp/x", "--idle-poll-us", "1001", NULL};
    TQ_CHECK_EQ(run_ticketqd(a14, err, sizeof(err)), 2);
    TQ_CHECK(strstr(err, "--idle-poll-us: expected 0..1000, got '1001'") != NULL);
    const char *a14b[] = {"--data", "/tmp/x", "--idle-poll-us", "-5", NULL};
    TQ_CHECK_EQ(run_ticketqd(a14b, err, sizeof(err)), 2);
    TQ_CHECK(strstr(err, "--idle-poll-us") != NULL);
    const char *a15[] = {"--data", "/tmp/x", "--log-batches", "5", NULL};
    TQ_CHECK_EQ(run_ticketqd(a15, err, sizeof(err)), 2);
    TQ_CHECK(strstr(err, "--log-batches") != NULL);
    const char *a16[] = {"--data", "/tmp/x", "--log-pipeline-bytes", "4194305", NULL};
    TQ_CHECK_EQ(run_ticketqd(a16, err, sizeof(err)), 2);
    TQ_CHECK(strstr(err, "--log-pipeline-bytes") != NULL);
    const char *a5[] = {"--help", NULL};
    TQ_CHECK_EQ(run_ticketqd(a5, err, sizeof(err)), 0);
    char cfg[] = "/tmp/tq-cfg-XXXXXX";
    int fd = mkstemp(cfg);
    TQ_CHECK(fd >= 0);
    const char bad[] = "# comment\nmax-inflight = 0\n";
    TQ_CHECK_EQ(write(fd, bad, sizeof(bad) - 1), (long)(sizeof(bad) - 1));
    close(fd);
    const char *a6[] = {"--data", "/tmp/x", "--config", cfg, NULL};
    TQ_CHECK_EQ(run_ticketqd(a6, err, sizeof(err)), 2);
    TQ_CHECK(strstr(err, "max-inflight") != NULL);
    unlink(cfg);
}

static Ticketq__Response *ingest(struct rawc *c, uint64_t tenant, const char *from, const char *ext,
                                 const char *body) {
    Ticketq__Ingest op = TICKETQ__INGEST__INIT;
    op.channel = TICKETQ__CHANNEL__WHATSAPP;
    op.from = (char *)(uintptr_t)from;
    op.external_id = (char *)(uintptr_t)ext;
    op.body = (char *)(uintptr_t)body;
    RAWC_REQ(req, ingest, INGEST, &op);
    req.has_tenant_id = tenant != 0;
    req.tenant_id = tenant;
    return rawc_call(c, &req);
}

static Ticketq__Response *ticket_get(struct rawc *c, uint64_t tenant, uint64_t ticket) {
    Ticketq__TicketGet op = TICKETQ__TICKET_GET__INIT;
    op.ticket_id = ticket;
    RAWC_REQ(req, ticket_get, TICKET_GET, &op);
    req.has_tenant_id = tenant != 0;
    req.tenant_id = tenant;
    return rawc_call(c, &req);
}

/* One op per role check; each returns the response code. */
static int try_op(struct rawc *c, int which, uint64_t tenant, uint64_t ticket) {
    Ticketq__Response *r = NULL;
    switch (which) {
    case 0: {
        Ticketq__TenantCreate op = TICKETQ__TENANT_CREATE__INIT;
        op.name = (char *)(uintptr_t) "x";
        RAWC_REQ(req, tenant_create, TENANT_CREATE, &op);
        r = rawc_call(c, &req);
        break;
    }
    case 1: r = ingest(c, tenant, "+100", NULL, "role check"); break;
    case 2: r = ticket_get(c, tenant, ticket); break;
    case 3: {
        Ticketq__SnapshotNow op = TICKETQ__SNAPSHOT_NOW__INIT;
        RAWC_REQ(req, snapshot_now, SNAPSHOT_NOW, &op);
        r = rawc_call(c, &req);
        break;
    }
    case 4: {
        Ticketq__QueueCreate op = TICKETQ__QUEUE_CREATE__INIT;
        op.name = (char *)(uintptr_t) "q-role";
        RAWC_REQ(req, queue_create, QUEUE_CREATE, &op);
        req.has_tenant_id = tenant != 0;
        req.tenant_id = tenant;
        r = rawc_call(c, &req);
        break;
    }
    case 5: {
        Ticketq__OutboxTake op = TICKETQ__OUTBOX_TAKE__INIT;
        op.channel = TICKETQ__CHANNEL__WHATSAPP;
        RAWC_REQ(req, outbox_take, OUTBOX_TAKE, &op);
        req.has_tenant_id = tenant != 0;
        req.tenant_id = tenant;
        r = rawc_call(c, &req);
        break;
    }
    case 6: {
        Ticketq__Reply op = TICKETQ__REPLY__INIT;
        op.ticket_id = ticket;
        op.body = (char *)(uintptr_t) "hello";
        RAWC_REQ(req, reply, REPLY, &op);
        req.has_tenant_id = tenant != 0;
        req.tenant_id = tenant;
        r = rawc_call(c, &req);
        break;
    }
    default: TQ_CHECK(0);
    }
    TQ_CHECK(r != NULL);
    int code = rawc_code(r);
    rawc_free(r);
    return code;
}

/* A corrupt batch that is not the torn tail: ticketqd refuses to start (exit 1) and names
 * the segment file. */
static void test_corruption(void) {
    struct tq_fixture f;
    memset(&f, 0, sizeof(f));
    rawc_guard_fixture(&f);
    TQ_CHECK_EQ(tq_fixture_start(&f), 0);
    struct rawc c;
    rawc_open_authed(&c, f.addr, f.admin_token);
    rawc_tenant_create(&c, "one"); /* sequential: separate batches after the first */
    rawc_tenant_create(&c, "two");
    rawc_close(&c);
    TQ_CHECK_EQ(tq_fixture_stop(&f), 0);
    char seg[512];
    snprintf(seg, sizeof(seg), "%s/log/00000000000000000001.seg", f.dir);
    int fd = open(seg, O_RDWR);
    TQ_CHECK(fd >= 0);
    uint8_t b;
    TQ_CHECK_EQ(pread(fd, &b, 1, 0x50), 1); /* inside the first batch's records */
    b ^= 0x5a;
    TQ_CHECK_EQ(pwrite(fd, &b, 1, 0x50), 1);
    close(fd);
    char err[4096];
    const char *args[] = {"--data", f.dir, "--listen", "127.0.0.1:0", NULL};
    TQ_CHECK_EQ(run_ticketqd(args, err, sizeof(err)), 1);
    TQ_CHECK(strstr(err, "cannot open the log") != NULL);
    TQ_CHECK(strstr(err, "00000000000000000001.seg") != NULL);
    tq_fixture_cleanup(&f);
}

/* Every ring set-up (--ring plain, coop, defer), io-wq bound, spare zero-fill and batch sync
 * (--log-dsync: RWF_DSYNC writes or write + fdatasync) choice serves
 * the same protocol with the same durability: 1100 sequential ingests (one 4 KiB batch and one
 * fdatasync each) on the smallest segments (4198400 bytes) roll the log into a second segment
 * (the spare, zero-filled or not), every
 * answer carries a growing LSN, SIGTERM drains with exit 0, and after a restart with the same
 * options the last body is read back from the log. The server's log names the ring it set up. */
static void test_ring_modes(void) {
    static const char *const modes[3][4] = {
        {"plain", "0", "on", "off"},
        {"coop", "1", "off", "on"},
        {"defer", "2", "on", "on"},
    };
    for (int m = 0; m < 3; m++) {
        struct tq_fixture f;
        memset(&f, 0, sizeof(f));
        rawc_guard_fixture(&f);
        const char *args[] = {
            "--ring",    modes[m][0],   "--io-workers", modes[m][1],       "--log-prezero",
            modes[m][2], "--log-dsync", modes[m][3],    "--segment-bytes", "4198400",
            NULL};
        memcpy(f.extra_args, args, sizeof(args));
        TQ_CHECK_EQ(tq_fixture_start(&f), 0);
        char cmd[900];
        snprintf(cmd, sizeof(cmd), "grep -q 'io_uring: %s ring' '%s/ticketqd.log'", modes[m][0],
                 f.dir);
        TQ_CHECK_EQ(system(cmd), 0);
        struct rawc c;
        rawc_open_authed(&c, f.addr, f.admin_token);
        uint64_t tenant = rawc_tenant_create(&c, "ring");
        uint64_t queue = rawc_queue_create(&c, tenant, "q");
        rawc_default_queue(&c, tenant, TICKETQ__CHANNEL__WHATSAPP, queue);
        Ticketq__Response *r;
        uint64_t last_lsn = 0, ticket = 0;
        char from[32], body[64];
        for (int i = 0; i < 1100; i++) {
            snprintf(from, sizeof(from), "+49151%06d", i);
            snprintf(body, sizeof(body), "ring %s message %d", modes[m][0], i);
            r = ingest(&c, tenant, from, NULL, body);
            RAWC_EXPECT(r, 0);
            TQ_CHECK(r->has_lsn);
            TQ_CHECK_GT(r->lsn, last_lsn);
            last_lsn = r->lsn;
            ticket = r->ids->ticket_id;
            rawc_free(r);
        }
        rawc_close(&c);
        snprintf(cmd, sizeof(cmd), "test $(ls '%s'/log/*.seg | wc -l) -ge 2", f.dir);
        TQ_CHECK_EQ(system(cmd), 0); /* the log rolled onto the spare */
        TQ_CHECK_EQ(tq_fixture_stop(&f), 0);
        TQ_CHECK_EQ(tq_fixture_start(&f), 0);
        rawc_open_authed(&c, f.addr, f.admin_token);
        r = ticket_get(&c, tenant, ticket);
        RAWC_EXPECT(r, 0);
        snprintf(body, sizeof(body), "ring %s message %d", modes[m][0], 1099);
        TQ_CHECK_STR_EQ(r->ticket->messages[0]->body, body);
        rawc_free(r);
        rawc_close(&c);
        TQ_CHECK_EQ(tq_fixture_stop(&f), 0);
        tq_fixture_cleanup(&f);
    }
}

/* Sends one ingest without waiting for its answer; returns the request id. */
static uint64_t ingest_send(struct rawc *c, uint64_t tenant, const char *from, const char *body) {
    Ticketq__Ingest op = TICKETQ__INGEST__INIT;
    op.channel = TICKETQ__CHANNEL__WHATSAPP;
    op.from = (char *)(uintptr_t)from;
    op.body = (char *)(uintptr_t)body;
    RAWC_REQ(req, ingest, INGEST, &op);
    req.has_tenant_id = true;
    req.tenant_id = tenant;
    return rawc_send(c, &req);
}

/* Every turn order (--turn classic, poll, reactive) with 16 connections x 2 ingests in flight,
 * 30 rounds: enough requests per turn that poll and reactive poll completions mid-turn, and
 * reactive sends answers and starts batches before parsing. Every answer is a success for the
 * request it names, in request order per connection, with an LSN above the connection's
 * previous one; after a SIGTERM and a restart each connection's last ticket has its last body
 * (what was acknowledged is durable). The server's log names the turn order. */
#define TURN_CONNS  16
#define TURN_ROUNDS 30
static void test_turn_modes(void) {
    static const char *const modes[] = {"classic", "poll", "reactive"};
    for (size_t m = 0; m < TQ_ARRAY_COUNT(modes); m++) {
        struct tq_fixture f;
        memset(&f, 0, sizeof(f));
        rawc_guard_fixture(&f);
        const char *args[] = {"--turn", modes[m], NULL};
        memcpy(f.extra_args, args, sizeof(args));
        TQ_CHECK_EQ(tq_fixture_start(&f), 0);
        char cmd[900];
        snprintf(cmd, sizeof(cmd), "grep -q ' %s turns' '%s/ticketqd.log'", modes[m], f.dir);
        TQ_CHECK_EQ(system(cmd), 0);
        struct rawc admin;
        rawc_open_authed(&admin, f.addr, f.admin_token);
        uint64_t tenant = rawc_tenant_create(&admin, "turns");
        uint64_t queue = rawc_queue_create(&admin, tenant, "q");
        rawc_default_queue(&admin, tenant, TICKETQ__CHANNEL__WHATSAPP, queue);
        static struct rawc conns[TURN_CONNS];
        uint64_t last_lsn[TURN_CONNS] = {0}, last_ticket[TURN_CONNS] = {0};
        for (int i = 0; i < TURN_CONNS; i++)
            rawc_open_authed(&conns[i], f.addr, f.admin_token);
        char from[48], body[64];
        for (int round = 0; round < TURN_ROUNDS; round++) {
            uint64_t ids[TURN_CONNS][2];
            for (int k = 0; k < 2; k++) {
                for (int i = 0; i < TURN_CONNS; i++) {
                    snprintf(from, sizeof(from), "+4930%02d%03d%d", i, round, k);
                    snprintf(body, sizeof(body), "%s conn %d round %d k %d", modes[m], i, round, k);
                    ids[i][k] = ingest_send(&conns[i], tenant, from, body);
                }
            }
            for (int i = 0; i < TURN_CONNS; i++) {
                for (int k = 0; k < 2; k++) {
                    Ticketq__Response *r = rawc_recv(&conns[i], 10000);
                    TQ_CHECK(r != NULL);
                    RAWC_EXPECT(r, 0);
                    TQ_CHECK_UEQ(r->id, ids[i][k]);
                    TQ_CHECK(r->has_lsn);
                    TQ_CHECK_GT(r->lsn, last_lsn[i]);
                    last_lsn[i] = r->lsn;
                    last_ticket[i] = r->ids->ticket_id;
                    rawc_free(r);
                }
            }
        }
        for (int i = 0; i < TURN_CONNS; i++)
            rawc_close(&conns[i]);
        rawc_close(&admin);
        TQ_CHECK_EQ(tq_fixture_stop(&f), 0);
        TQ_CHECK_EQ(tq_fixture_start(&f), 0);
        rawc_open_authed(&admin, f.addr, f.admin_token);
        for (int i = 0; i < TURN_CONNS; i++) {
            Ticketq__Response *r = ticket_get(&admin, tenant, last_ticket[i]);
            RAWC_EXPECT(r, 0);
            snprintf(body, sizeof(body), "%s conn %d round %d k %d", modes[m], i, TURN_ROUNDS - 1,
                     1);
            TQ_CHECK_STR_EQ(r->ticket->messages[0]->body, body);
            rawc_free(r);
        }
        rawc_close(&admin);
        TQ_CHECK_EQ(tq_fixture_stop(&f), 0);
        tq_fixture_cleanup(&f);
    }
}

int main(void) {
    tq_test_seed("test_server_basic");
    test_options();
    test_corruption();
    test_ring_modes();
    test_turn_modes();

    struct tq_fixture f;
    memset(&f, 0, sizeof(f));
    rawc_guard_fixture(&f);
    f.with_unix = true;
    TQ_CHECK_EQ(tq_fixture_start(&f), 0);
    TQ_CHECK(f.admin_token[0] != '\0');
    TQ_CHECK(strncmp(f.admin_token, "tq_", 3) == 0);
    TQ_CHECK_EQ(strlen(f.admin_token), 67);
    char path[512];
    snprintf(path, sizeof(path), "%s/admin.token", f.dir);
    struct stat st;
    TQ_CHECK_EQ(stat(path, &st), 0);
    TQ_CHECK_EQ(st.st_mode & 0777, 0600);

    /* Auth errors. */
    struct rawc c;
    TQ_CHECK_EQ(rawc_connect(&c, f.addr), 0);
    Ticketq__Ping ping = TICKETQ__PING__INIT;
    RAWC_REQ(preq, ping, PING, &ping);
    Ticketq__Response *r = rawc_call(&c, &preq);
    RAWC_EXPECT(r, TICKETQ__ERROR_CODE__UNAUTHENTICATED);
    rawc_free(r);
    TQ_CHECK_EQ(rawc_auth(&c, "tq_0000"), TICKETQ__ERROR_CODE__UNAUTHENTICATED);
    TQ_CHECK_EQ(rawc_auth(&c, ""), TICKETQ__ERROR_CODE__UNAUTHENTICATED);
    TQ_CHECK_EQ(rawc_auth(&c, f.admin_token), 0);
    preq.id = 0;
    r = rawc_call(&c, &preq);
    RAWC_EXPECT(r, 0);
    rawc_free(r);

    /* Tenants, an agent, tokens of every role. */
    uint64_t ta = rawc_tenant_create(&c, "acme");
    uint64_t tb = rawc_tenant_create(&c, "globex");
    TQ_CHECK_NE(ta, tb);
    uint64_t agent = rawc_agent_create(&c, ta, "ann");
    uint64_t queue = rawc_queue_create(&c, ta, "support");
    TQ_CHECK_GT(queue, 0);
    rawc_default_queue(&c, ta, TICKETQ__CHANNEL__WHATSAPP, queue);
    /* Business hours: the zone is resolved by the server (an unknown one is refused). */
    Ticketq__DayHours day = TICKETQ__DAY_HOURS__INIT;
    day.weekday = 1;
    day.start_minute = 9 * 60;
    day.end_minute = 17 * 60;
    Ticketq__DayHours *days[1] = {&day};
    char *holidays[1] = {(char *)(uintptr_t) "2026-12-25"};
    Ticketq__BusinessHoursSet bh = TICKETQ__BUSINESS_HOURS_SET__INIT;
    bh.tz_name = (char *)(uintptr_t) "Asia/Shanghai";
    bh.n_hours = 1;
    bh.hours = days;
    bh.n_holidays = 1;
    bh.holidays = holidays;
    RAWC_REQ(bhreq, business_hours_set, BUSINESS_HOURS_SET, &bh);
    bhreq.has_tenant_id = true;
    bhreq.tenant_id = ta;
    r = rawc_call(&c, &bhreq);
    RAWC_EXPECT(r, 0);
    rawc_free(r);
    bh.tz_name = (char *)(uintptr_t) "Nowhere/Atlantis";
    bhreq.id = 0;
    r = rawc_call(&c, &bhreq);
    RAWC_EXPECT(r, TICKETQ__ERROR_CODE__INVALID_ARGUMENT);
    rawc_free(r);
    day.end_minute = 2000; /* validated before anything is logged */
    bh.tz_name = (char *)(uintptr_t) "Asia/Shanghai";
    bhreq.id = 0;
    r = rawc_call(&c, &bhreq);
    RAWC_EXPECT(r, TICKETQ__ERROR_CODE__INVALID_ARGUMENT);
    rawc_free(r);
    char tok_ta[80], tok_ag[80], tok_in[80], tok_tb[80];
    rawc_token_issue(&c, ta, TICKETQ__ROLE__TENANT_ADMIN, 0, tok_ta);
    uint64_t ag_token_id = rawc_token_issue(&c, ta, TICKETQ__ROLE__ROLE_AGENT, agent, tok_ag);
    rawc_token_issue(&c, ta, TICKETQ__ROLE__INTEGRATION, 0, tok_in);
    rawc_token_issue(&c, tb, TICKETQ__ROLE__TENANT_ADMIN, 0, tok_tb);

    struct rawc cta, cag, cin, ctb;
    rawc_open_authed(&cta, f.addr, tok_ta);
    rawc_open_authed(&cag, f.addr, tok_ag);
    rawc_open_authed(&cin, f.unix_path, tok_in); /* the Unix socket speaks the same protocol */
    rawc_open_authed(&ctb, f.addr, tok_tb);

    /* Ingest as the integration, read the body back. */
    r = ingest(&cin, 0, "+4915112345678", "wamid.1", "Hello, where is my order?");
    RAWC_EXPECT(r, 0);
    TQ_CHECK(r->has_lsn && r->lsn > 0);
    uint64_t ticket = r->ids->ticket_id;
    rawc_free(r);
    r = ticket_get(&cta, 0, ticket);
    RAWC_EXPECT(r, 0);
    TQ_CHECK_EQ(r->ticket->n_messages, 1);
    TQ_CHECK_STR_EQ(r->ticket->messages[0]->body, "Hello, where is my order?");
    rawc_free(r);

    /* Role table: op -> allowed for SA, TA, AG, IN (PERMISSION_DENIED otherwise). */
    static const bool allowed[7][4] = {
        {1, 0, 0, 0}, /* tenant_create */
        {1, 1, 0, 1}, /* ingest */
        {1, 1, 1, 1}, /* ticket_get */
        {1, 0, 0, 0}, /* snapshot_now */
        {1, 1, 0, 0}, /* queue_create */
        {1, 1, 0, 1}, /* outbox_take */
        {1, 1, 1, 0}, /* reply */
    };
    struct rawc *conns[4] = {&c, &cta, &cag, &cin};
    for (int op = 0; op < 7; op++) {
        for (int role = 0; role < 4; role++) {
            uint64_t tenant = role == 0 ? ta : 0;
            int code = try_op(conns[role], op, tenant, ticket);
            if (allowed[op][role]) {
                TQ_CHECK_NE(code, TICKETQ__ERROR_CODE__PERMISSION_DENIED);
            } else {
                TQ_CHECK_EQ(code, TICKETQ__ERROR_CODE__PERMISSION_DENIED);
            }
        }
    }

    /* A foreign tenant's ids answer exactly like missing ones. */
    r = ticket_get(&ctb, 0, ticket);
    RAWC_EXPECT(r, TICKETQ__ERROR_CODE__NOT_FOUND);
    char foreign_msg[256];
    snprintf(foreign_msg, sizeof(foreign_msg), "%s", r->error->message);
    rawc_free(r);
    r = ticket_get(&cta, 0, ticket + 1000000);
    RAWC_EXPECT(r, TICKETQ__ERROR_CODE__NOT_FOUND);
    char missing_msg[256], expect[256];
    snprintf(missing_msg, sizeof(missing_msg), "%s", r->error->message);
    rawc_free(r);
    snprintf(expect, sizeof(expect), "ticket %llu not found", (unsigned long long)ticket);
    TQ_CHECK_STR_EQ(foreign_msg, expect);
    snprintf(expect, sizeof(expect), "ticket %llu not found",
             (unsigned long long)(ticket + 1000000));
    TQ_CHECK_STR_EQ(missing_msg, expect);
    r = ticket_get(&ctb, ta, ticket); /* naming the other tenant does not help */
    RAWC_EXPECT(r, TICKETQ__ERROR_CODE__NOT_FOUND);
    rawc_free(r);

    /* Revocation takes effect on the open agent connection. */
    r = ticket_get(&cag, 0, ticket);
    RAWC_EXPECT(r, 0);
    rawc_free(r);
    Ticketq__Subscribe sub = TICKETQ__SUBSCRIBE__INIT; /* a listening-only connection */
    RAWC_REQ(subreq, subscribe, SUBSCRIBE, &sub);
    subreq.id = 55;
    r = rawc_call(&cag, &subreq);
    RAWC_EXPECT(r, 0);
    rawc_free(r);
    Ticketq__TokenRevoke rv = TICKETQ__TOKEN_REVOKE__INIT;
    rv.token_id = ag_token_id;
    RAWC_REQ(rvreq, token_revoke, TOKEN_REVOKE, &rv);
    r = rawc_call(&ctb, &rvreq); /* another tenant's admin cannot even see it */
    RAWC_EXPECT(r, TICKETQ__ERROR_CODE__NOT_FOUND);
    rawc_free(r);
    rvreq.id = 0;
    r = rawc_call(&cta, &rvreq);
    RAWC_EXPECT(r, 0);
    rawc_free(r);
    for (;;) { /* its subscription ends at once with UNAUTHENTICATED */
        r = rawc_recv(&cag, 5000);
        TQ_CHECK(r != NULL);
        TQ_CHECK_UEQ(r->id, 55);
        if (r->error != NULL) break;
        rawc_free(r);
    }
    RAWC_EXPECT(r, TICKETQ__ERROR_CODE__UNAUTHENTICATED);
    rawc_free(r);
    r = ticket_get(&cag, 0, ticket);
    RAWC_EXPECT(r, TICKETQ__ERROR_CODE__UNAUTHENTICATED);
    rawc_free(r);
    TQ_CHECK_EQ(rawc_auth(&cag, tok_ag), TICKETQ__ERROR_CODE__UNAUTHENTICATED);

    rawc_close(&cta);
    rawc_close(&cag);
    rawc_close(&cin);
    rawc_close(&ctb);
    rawc_close(&c);

    /* SIGTERM drains and exits 0; everything is there after the restart; no second token. */
    TQ_CHECK_EQ(tq_fixture_stop(&f), 0);
    char token_before[256];
    snprintf(token_before, sizeof(token_before), "%s", f.admin_token);
    TQ_CHECK_EQ(tq_fixture_start(&f), 0);
    TQ_CHECK_STR_EQ(f.admin_token, token_before);
    rawc_open_authed(&c, f.addr, f.admin_token);
    r = ticket_get(&c, ta, ticket);
    RAWC_EXPECT(r, 0);
    TQ_CHECK_STR_EQ(r->ticket->messages[0]->body, "Hello, where is my order?");
    rawc_free(r);
    rawc_open_authed(&cin, f.addr, tok_in);
    rawc_close(&cin);
    rawc_close(&c);
    char log_path[512], cmd[700];
    snprintf(log_path, sizeof(log_path), "%s/ticketqd.log", f.dir);
    snprintf(cmd, sizeof(cmd), "test $(grep -c 'first start' '%s') -eq 1", log_path);
    TQ_CHECK_EQ(system(cmd), 0);
    snprintf(cmd, sizeof(cmd), "grep -q 'recovered' '%s'", log_path);
    TQ_CHECK_EQ(system(cmd), 0);
    TQ_CHECK_EQ(tq_fixture_stop(&f), 0);
    tq_fixture_cleanup(&f);
    printf("test_server_basic: ok\n");
    return 0;
}
