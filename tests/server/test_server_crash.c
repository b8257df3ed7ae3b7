/* tests/server/test_server_crash.c: the acknowledged-write crash test over the network.
 *
 * Goal: "a response means durable" holds for real clients and a real kill -9. Method: each
 * cycle starts ticketqd on the same data directory, forks several clients that ingest as fast
 * as they can (pipelined, a window of requests in flight each, unique sender and external id
 * per message) and append every ACKNOWLEDGED message (ticket id, message id, sequence) to
 * their own file; after a random delay (seeded) the test kill -9s the server, waits for the
 * clients to see the connection die, restarts the server and checks with TicketGet that every
 * acknowledged message of the cycle is there with its exact body. At the end a sample of all
 * cycles' acknowledgements is checked again (they must survive later crashes too). Every sixth
 * cycle starts with a SnapshotNow, so recovery from a snapshot plus the log tail is crashed
 * too, and the server writes a background snapshot every 3000 records, so kills also land
 * while a snapshot child is writing. At least 20 cycles run by default (TQ_CRASH_CYCLES
 * overrides).
 * Invariants: every acknowledged ingest is readable after any crash; the server restarts
 * after every kill -9; no client ever sees an error other than by the connection dying.
 */
#include "rawc.h"
#include "tq_fixture.h"
#include "tq_test.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CLIENTS        3
#define WINDOW         16
#define CYCLES_DEFAULT 24

struct ack {
    uint64_t ticket_id, message_id;
    uint32_t cycle, client, seq;
};

static struct ack *acks;
static size_t ack_count, ack_cap;

static void body_of(uint32_t cycle, uint32_t client, uint32_t seq, char *out, size_t cap) {
    int n = snprintf(out, cap, "msg %u/%u/%u ", cycle, client, seq);
    uint32_t pad = (seq * 37u + cycle * 11u) % 300u; /* bodies of varying length */
    for (uint32_t i = 0; i < pad && (size_t)n + 1 < cap; i++)
        out[n++] = (char)('a' + (i + seq) % 26);
    out[n] = '\0';
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A client process: ingests until the connection dies; records acknowledgements. */
static void client_main(const char *addr, const char *token, uint64_t tenant_unused, uint32_t cycle,
                        uint32_t client, const char *ack_path) {
    (void)tenant_unused;
    FILE *out = fopen(ack_path, "w");
    if (out == NULL) _exit(3);
    struct rawc c;
    if (rawc_connect(&c, addr) != 0 || rawc_auth(&c, token) != 0) _exit(0); /* server gone */
    uint32_t next_seq = 0, inflight = 0;
    uint64_t id_to_seq[1 << 16];
    for (;;) {
        while (inflight < WINDOW) {
            char from[64], ext[64], body[400];
            snprintf(from, sizeof(from), "+1555%02u%02u%06u", cycle, client, next_seq);
            snprintf(ext, sizeof(ext), "crash-%u-%u-%u", cycle, client, next_seq);
            body_of(cycle, client, next_seq, body, sizeof(body));
            Ticketq__Ingest op = TICKETQ__INGEST__INIT;
            op.channel = TICKETQ__CHANNEL__SMS;
            op.from = from;
            op.external_id = ext;
            op.body = body;
            RAWC_REQ(req, ingest, INGEST, &op);
            uint64_t id = rawc_send(&c, &req);
            if (id == 0) goto done;
            id_to_seq[id & 0xffff] = next_seq++;
            inflight++;
        }
        Ticketq__Response *r = rawc_recv(&c, 10000);
        if (r == NULL) break; /* the server died */
        inflight--;
        if (r->error != NULL) {
            fprintf(stderr, "crash client %u: error %d: %s\n", client, (int)r->error->code,
                    r->error->message ? r->error->message : "");
            rawc_free(r);
            fclose(out);
            _exit(4);
        }
        fprintf(out, "%llu %llu %llu\n", (unsigned long long)r->ids->ticket_id,
                (unsigned long long)r->ids->message_id,
                (unsigned long long)id_to_seq[r->id & 0xffff]);
        fflush(out); /* the test process, not the server, is the one reading it */
        rawc_free(r);
    }
done:
    fclose(out);
    rawc_close(&c);
    _exit(0);
}

static void load_acks(const char *path, uint32_t cycle, uint32_t client) {
    FILE *in = fopen(path, "r");
    TQ_CHECK(in != NULL);
    unsigned long long t, m, s;
    while (fscanf(in, "%llu %llu %llu", &t, &m, &s) == 3) {
        if (ack_count == ack_cap) {
            ack_cap = ack_cap ? ack_cap * 2 : 1024;
            acks = realloc(acks, ack_cap * sizeof(*acks));
            TQ_CHECK(acks != NULL);
        }
        acks[ack_count++] = (struct ack){t, m, cycle, client, (uint32_t)s};
    }
    fclose(in);
}

static void check_one(const struct ack *a, Ticketq__Response *r) {
    if (rawc_code(r) != 0) {
        fprintf(stderr, "acknowledged message lost: cycle %u client %u seq %u ticket %llu\n",
                a->cycle, a->client, a->seq, (unsigned long long)a->ticket_id);
    }
    RAWC_EXPECT(r, 0);
    TQ_CHECK_GE(r->ticket->n_messages, 1);
    char body[400];
    body_of(a->cycle, a->client, a->seq, body, sizeof(body));
    TQ_CHECK_UEQ(r->ticket->messages[0]->message_id, a->message_id);
    TQ_CHECK_STR_EQ(r->ticket->messages[0]->body, body);
    rawc_free(r);
}

/* Checks acks[i] for every i in idx[0..n) with TicketGet, pipelined 64 deep. */
static void verify_many(struct rawc *c, const size_t *idx, size_t n) {
    enum { DEPTH = 64 };
    size_t sent = 0, done = 0;
    while (done < n) {
        while (sent < n && sent - done < DEPTH) {
            Ticketq__TicketGet op = TICKETQ__TICKET_GET__INIT;
            op.ticket_id = acks[idx[sent]].ticket_id;
            RAWC_REQ(req, ticket_get, TICKET_GET, &op);
            req.id = 1 + sent;
            TQ_CHECK(rawc_send(c, &req) != 0);
            sent++;
        }
        Ticketq__Response *r = rawc_recv(c, 10000);
        TQ_CHECK(r != NULL);
        TQ_CHECK_UEQ(r->id, 1 + done);
        check_one(&acks[idx[done]], r);
        done++;
    }
}

int main(void) {
    uint64_t rng = tq_test_seed("test_server_crash");
    const char *env = getenv("TQ_CRASH_CYCLES");
    uint32_t cycles = env != NULL ? (uint32_t)atoi(env) : CYCLES_DEFAULT;
    if (cycles < 1) cycles = 1;

    struct tq_fixture f;
    memset(&f, 0, sizeof(f));
    /* Frequent background snapshots, so kills also land while a snapshot child is writing;
     * growth 0: on the record count alone, however large the snapshot grows. */
    f.extra_args[0] = "--snapshot-every";
    f.extra_args[1] = "3000";
    f.extra_args[2] = "--snapshot-growth";
    f.extra_args[3] = "0";
    rawc_guard_fixture(&f);
    TQ_CHECK_EQ(tq_fixture_start(&f), 0);
    struct rawc admin;
    rawc_open_authed(&admin, f.addr, f.admin_token);
    uint64_t tenant = rawc_tenant_create(&admin, "crash");
    uint64_t queue = rawc_queue_create(&admin, tenant, "sms");
    rawc_default_queue(&admin, tenant, TICKETQ__CHANNEL__SMS, queue);
    char token[80];
    rawc_token_issue(&admin, tenant, TICKETQ__ROLE__INTEGRATION, 0, token);
    rawc_close(&admin);

    size_t verified_before = 0;
    for (uint32_t cycle = 0; cycle < cycles; cycle++) {
        if (f.pid == 0) TQ_CHECK_EQ(tq_fixture_start(&f), 0);
        if (cycle % 6 == 5) { /* a snapshot now and then: recovery = snapshot + tail */
            struct rawc a;
            rawc_open_authed(&a, f.addr, f.admin_token);
            Ticketq__SnapshotNow sn = TICKETQ__SNAPSHOT_NOW__INIT;
            RAWC_REQ(snreq, snapshot_now, SNAPSHOT_NOW, &sn);
            Ticketq__Response *sr = rawc_call(&a, &snreq);
            RAWC_EXPECT(sr, 0);
            rawc_free(sr);
            rawc_close(&a);
        }
        pid_t kids[CLIENTS];
        char paths[CLIENTS][400];
        for (uint32_t k = 0; k < CLIENTS; k++) {
            snprintf(paths[k], sizeof(paths[k]), "%s/acks-%u-%u", f.dir, cycle, k);
            fflush(stdout);
            kids[k] = fork();
            TQ_CHECK(kids[k] >= 0);
            if (kids[k] == 0) client_main(f.addr, token, tenant, cycle, k, paths[k]);
        }
        sleep_ms(20 + (long)tq_test_rand_below(&rng, 250));
        tq_fixture_kill9(&f);
        for (uint32_t k = 0; k < CLIENTS; k++) {
            int st = 0;
            TQ_CHECK_EQ(waitpid(kids[k], &st, 0), kids[k]);
            TQ_CHECK(WIFEXITED(st));
            TQ_CHECK_EQ(WEXITSTATUS(st), 0);
            load_acks(paths[k], cycle, k);
        }
        TQ_CHECK_EQ(tq_fixture_start(&f), 0);
        struct rawc c;
        rawc_open_authed(&c, f.addr, token);
        size_t n = ack_count - verified_before;
        size_t *idx = malloc((n ? n : 1) * sizeof(*idx));
        TQ_CHECK(idx != NULL);
        for (size_t i = 0; i < n; i++)
            idx[i] = verified_before + i;
        verify_many(&c, idx, n);
        free(idx);
        rawc_close(&c);
        printf("cycle %u: %zu acknowledged messages so far, all present\n", cycle, ack_count);
        fflush(stdout);
        verified_before = ack_count;
    }
    TQ_CHECK_GT(ack_count, 0);
    /* Earlier cycles' messages survived every later crash. */
    struct rawc c;
    rawc_open_authed(&c, f.addr, token);
    size_t sample[300];
    for (int i = 0; i < 300; i++)
        sample[i] = (size_t)tq_test_rand_below(&rng, ack_count);
    verify_many(&c, sample, 300);
    rawc_close(&c);
    TQ_CHECK_EQ(tq_fixture_stop(&f), 0);
    tq_fixture_cleanup(&f);
    free(acks);
    printf("test_server_crash: ok (%u kill -9 cycles, %zu acknowledged messages)\n", cycles,
           ack_count);
    return 0;
}
