/* tests/ops/test_ops_replay.c: `ticketq replay` output and point-in-time state.
 *
 * Goal: the audit trail is exactly the history, and --at rebuilds exactly the state the server
 * had. Method: a scripted scenario is applied and logged as the server would (ops_testlib);
 * `ticketq-ops replay --jsonl` must print the expected event lines, written here by reasoning
 * about the scenario with the rules of docs/tickets.md (tenant/queue/agent creation emit one
 * event each; a first message from a new identity creates the customer, then the ticket, then
 * the message; status and assignment changes carry old -> new). Filters must select exactly the
 * matching lines. Then a seeded random workload of a few hundred commands over many segments:
 * `replay --at LSN` and tq_ops_state_at must give, for random LSNs, the digest the live state
 * had right after that LSN; --at TIME must stop at the last command at or before TIME. The
 * random log also carries the server's type-2 events records: replay compares them with the
 * events apply regenerates and exits 1 on any difference, so a clean exit proves agreement.
 * Invariants: replay output is a pure function of the log; --at N digest == live digest[N].
 */
#include "ops.h"
#include "ops_testlib.h"
#include "tq_assert.h"
#include "tq_test.h"

#include <stdlib.h>
#include <string.h>

static struct tq_str str_of(const char *s) {
    struct tq_str r = {s, (uint32_t)strlen(s)};
    return r;
}

#define T0 1762830000000ull /* 2025-11-11T03:00:00.000Z */

static void scripted(struct ops_db *db) {
    struct tq_cmd c;
    memset(&c, 0, sizeof(c));
    c.type = TQ_CMD_TENANT_CREATE;
    c.now_ms = T0;
    c.u.tenant_create.name = str_of("acme");
    TQ_CHECK_EQ(ops_db_apply(db, &c), 1);

    memset(&c, 0, sizeof(c));
    c.type = TQ_CMD_QUEUE_CREATE;
    c.now_ms = T0 + 1000;
    c.tenant_id = 1;
    c.u.queue.name = str_of("support");
    TQ_CHECK_EQ(ops_db_apply(db, &c), 2);

    memset(&c, 0, sizeof(c));
    c.type = TQ_CMD_AGENT_CREATE;
    c.now_ms = T0 + 2000;
    c.tenant_id = 1;
    c.u.agent.name = str_of("ann");
    TQ_CHECK_EQ(ops_db_apply(db, &c), 3);

    memset(&c, 0, sizeof(c));
    c.type = TQ_CMD_MESSAGE_INGEST;
    c.now_ms = T0 + 60000;
    c.tenant_id = 1;
    c.u.ingest.channel = TQ_CHANNEL_EMAIL;
    c.u.ingest.from_external_id = str_of("bob@example.com");
    c.u.ingest.customer_name = str_of("Bob");
    c.u.ingest.queue_id = 1;
    c.u.ingest.priority = TQ_PRIORITY_NORMAL;
    c.u.ingest.subject = str_of("order 42");
    c.u.ingest.body = str_of("where is my order?");
    c.u.ingest.provider_ts_ms = T0 + 59000; /* the provider saw it a second earlier */
    TQ_CHECK_EQ(ops_db_apply(db, &c), 4);

    memset(&c, 0, sizeof(c));
    c.type = TQ_CMD_TICKET_UPDATE;
    c.now_ms = T0 + 120000;
    c.tenant_id = 1;
    c.u.ticket_update.ticket_id = 1;
    c.u.ticket_update.fields = TQ_UPDATE_STATUS | TQ_UPDATE_ASSIGNEE;
    c.u.ticket_update.status = TQ_STATUS_OPEN;
    c.u.ticket_update.assignee_id = 1;
    TQ_CHECK_EQ(ops_db_apply(db, &c), 5);

    memset(&c, 0, sizeof(c));
    c.type = TQ_CMD_MESSAGE_REPLY;
    c.now_ms = T0 + 180000;
    c.tenant_id = 1;
    c.actor_agent_id = 1;
    c.u.reply.ticket_id = 1;
    c.u.reply.channel = TQ_CHANNEL_EMAIL;
    c.u.reply.body = str_of("shipped today");
    c.u.reply.set_status = true;
    c.u.reply.status = TQ_STATUS_PENDING;
    TQ_CHECK_EQ(ops_db_apply(db, &c), 6);
}

/* The expected trail, one line per event. */
static const char *const expected[] = {
    "{\"lsn\":1,\"time\":\"2025-11-11T03:00:00.000Z\",\"tenant\":1,\"cmd\":\"tenant_create\","
    "\"event\":\"tenant_created\"}",
    "{\"lsn\":2,\"time\":\"2025-11-11T03:00:01.000Z\",\"tenant\":1,\"cmd\":\"queue_create\","
    "\"event\":\"config_changed\",\"queue\":1}",
    "{\"lsn\":3,\"time\":\"2025-11-11T03:00:02.000Z\",\"tenant\":1,\"cmd\":\"agent_create\","
    "\"event\":\"config_changed\",\"agent\":1}",
    "{\"lsn\":4,\"time\":\"2025-11-11T03:01:00.000Z\",\"tenant\":1,\"cmd\":\"message_ingest\","
    "\"event\":\"customer_created\",\"customer\":1}",
    "{\"lsn\":4,\"time\":\"2025-11-11T03:01:00.000Z\",\"tenant\":1,\"cmd\":\"message_ingest\","
    "\"event\":\"ticket_created\",\"ticket\":1,\"customer\":1,\"queue\":1}",
    "{\"lsn\":4,\"time\":\"2025-11-11T03:01:00.000Z\",\"tenant\":1,\"cmd\":\"message_ingest\","
    "\"event\":\"message_added\",\"ticket\":1,\"message\":1,\"customer\":1,\"queue\":1,"
    "\"direction\":\"inbound\",\"channel\":\"email\"}",
    "{\"lsn\":5,\"time\":\"2025-11-11T03:02:00.000Z\",\"tenant\":1,\"cmd\":\"ticket_update\","
    "\"event\":\"ticket_updated\",\"ticket\":1,\"customer\":1,\"queue\":1,\"field\":\"status\","
    "\"old\":\"new\",\"new\":\"open\"}",
    "{\"lsn\":5,\"time\":\"2025-11-11T03:02:00.000Z\",\"tenant\":1,\"cmd\":\"ticket_update\","
    "\"event\":\"assigned\",\"ticket\":1,\"customer\":1,\"agent\":1,\"queue\":1,"
    "\"field\":\"assignee\",\"old\":null,\"new\":1}",
    "{\"lsn\":6,\"time\":\"2025-11-11T03:03:00.000Z\",\"tenant\":1,\"cmd\":\"message_reply\","
    "\"actor\":1,\"event\":\"message_added\",\"ticket\":1,\"message\":2,\"customer\":1,"
    "\"agent\":1,\"queue\":1,\"direction\":\"outbound\",\"channel\":\"email\"}",
    "{\"lsn\":6,\"time\":\"2025-11-11T03:03:00.000Z\",\"tenant\":1,\"cmd\":\"message_reply\","
    "\"actor\":1,\"event\":\"ticket_updated\",\"ticket\":1,\"customer\":1,\"agent\":1,"
    "\"queue\":1,\"field\":\"status\",\"old\":\"open\",\"new\":\"pending\"}",
};

/* Joins the expected lines whose index bit is set in mask. */
static char *expect(uint32_t mask) {
    size_t cap = 8192;
    char *out = calloc(1, cap);
    TQ_CHECK(out != NULL);
    for (size_t i = 0; i < TQ_ARRAY_COUNT(expected); i++) {
        if ((mask & (1u << i)) == 0) continue;
        strcat(out, expected[i]);
        strcat(out, "\n");
    }
    return out;
}

static void check_replay(const char *dir, const char *options, uint32_t mask) {
    int status = -1;
    char *got = ops_capture(&status, "%s replay --data %s --jsonl %s", ops_tool(), dir, options);
    char *want = expect(mask);
    if (strcmp(got, want) != 0)
        fprintf(stderr, "replay %s:\n--- got\n%s--- want\n%s", options, got, want);
    TQ_CHECK_EQ(status, 0);
    TQ_CHECK_STR_EQ(got, want);
    free(got);
    free(want);
}

/* `replay --at` prints "digest: <hex>"; returns it in out. */
static void at_digest(const char *dir, const char *at, char out[OPS_DIGEST_HEX], char **text) {
    int status = -1;
    char *got = ops_capture(&status, "%s replay --data %s --at %s", ops_tool(), dir, at);
    TQ_CHECK_EQ(status, 0);
    const char *d = strstr(got, "digest: ");
    TQ_CHECK(d != NULL);
    snprintf(out, OPS_DIGEST_HEX, "%.32s", d + 8);
    if (text != NULL) {
        *text = got;
    } else {
        free(got);
    }
}

static void test_scripted(void) {
    char dir[256];
    ops_tmpdir("replay", dir, sizeof(dir));
    struct ops_db db;
    ops_db_open(&db, dir);
    scripted(&db);
    ops_db_close_log(&db); /* replay must also work while the log is open: see below */

    check_replay(dir, "", 0x3ff);
    check_replay(dir, "--lsn-from 5 --lsn-to 5", 0x0c0);
    check_replay(dir, "--type ticket_updated", 0x240);
    check_replay(dir, "--ticket 1 --type assigned,message_added", 0x1a0);
    check_replay(dir, "--agent 1", 0x384);
    check_replay(dir, "--customer 1 --lsn-to 4", 0x038);
    check_replay(dir, "--from 2025-11-11T03:01:00Z --to 2025-11-11T03:02:00Z", 0x0f8);
    check_replay(dir, "--tenant 2", 0x000);

    /* The readable form says the same thing. */
    int status = -1;
    char *text = ops_capture(&status, "%s replay --data %s --lsn-from 5", ops_tool(), dir);
    TQ_CHECK_EQ(status, 0);
    TQ_CHECK(strstr(text, "status new -> open") != NULL);
    TQ_CHECK(strstr(text, "assignee none -> 1") != NULL);
    TQ_CHECK(strstr(text, "status open -> pending") != NULL);
    free(text);

    /* --at LSN for every LSN, and --at TIME between commands. */
    for (uint64_t lsn = 1; lsn <= 6; lsn++) {
        char at[32], got[OPS_DIGEST_HEX], want[OPS_DIGEST_HEX];
        snprintf(at, sizeof(at), "%llu", (unsigned long long)lsn);
        at_digest(dir, at, got, NULL);
        ops_db_digest_hex(&db, lsn, want);
        TQ_CHECK_STR_EQ(got, want);
    }
    char got[OPS_DIGEST_HEX], want[OPS_DIGEST_HEX];
    at_digest(dir, "2025-11-11T03:01:30Z", got, NULL);
    ops_db_digest_hex(&db, 4, want);
    TQ_CHECK_STR_EQ(got, want);

    /* The ticket as the agent saw it at LSN 6, bodies read back from the log. */
    char *shown = NULL;
    at_digest(dir, "6 --ticket 1", got, &shown);
    TQ_CHECK(strstr(shown, "status pending") != NULL);
    TQ_CHECK(strstr(shown, "where is my order?") != NULL);
    TQ_CHECK(strstr(shown, "shipped today") != NULL);
    /* message views completed from their records (tq_state_message_complete): commit time,
     * provider time, the replying agent */
    TQ_CHECK(strstr(shown, "message 1 inbound email by customer 1 at 2025-11-11T03:01:00.000Z "
                           "(provider 2025-11-11T03:00:59.000Z) (lsn 4)") != NULL);
    TQ_CHECK(strstr(shown, "message 2 outbound email by agent 1 at 2025-11-11T03:03:00.000Z") !=
             NULL);
    free(shown);
    at_digest(dir, "4 --ticket 1 --queue 1 --stats --sla", got, &shown);
    TQ_CHECK(strstr(shown, "status new") != NULL);
    TQ_CHECK(strstr(shown, "shipped today") == NULL);
    TQ_CHECK(strstr(shown, "1. ticket 1") != NULL);
    free(shown);

    /* Read-only: replay works while a writer holds the log open, and sees what is durable. */
    ops_db_reopen_log(&db);
    check_replay(dir, "--lsn-to 3", 0x007);
    ops_db_close(&db);
    ops_rm_rf(dir);
}

static void test_random_at(uint64_t seed) {
    char dir[256];
    ops_tmpdir("replay-rand", dir, sizeof(dir));
    struct ops_db db;
    ops_db_open(&db, dir);
#ifdef TQ_OPS_EVENTS_CODEC
    db.with_events = true; /* as ticketqd: replay cross-checks them (exit 1 on a difference) */
#endif
    uint64_t rng = seed;
    ops_gen_setup(&db);
    ops_gen_random(&db, &rng, 400);
    TQ_CHECK_GT(db.lsn_last, 200);
    for (int i = 0; i < 12; i++) {
        uint64_t lsn = 1 + tq_test_rand_below(&rng, db.lsn_last);
        if (i == 0) lsn = db.lsn_last;
        struct tq_state *state = NULL;
        uint64_t applied = 0;
        struct tq_error error;
        TQ_CHECK_OK(tq_ops_state_at(dir, lsn, &state, &applied, &error), &error);
        TQ_CHECK(applied == lsn || (db.with_events && applied + 1 == lsn)); /* events rec */
        uint8_t digest[16];
        tq_state_digest(state, digest);
        TQ_CHECK_MEM_EQ(digest, db.digests[lsn], 16);
        tq_state_free(state);
        if (i < 4) {
            char at[32], got[OPS_DIGEST_HEX], want[OPS_DIGEST_HEX];
            snprintf(at, sizeof(at), "%llu", (unsigned long long)lsn);
            at_digest(dir, at, got, NULL);
            ops_db_digest_hex(&db, lsn, want);
            TQ_CHECK_STR_EQ(got, want);
        }
    }
    /* The full trail replays without error over many segments. */
    TQ_CHECK_EQ(ops_sh("%s replay --data %s --jsonl > /dev/null", ops_tool(), dir), 0);
#ifdef TQ_OPS_EVENTS_CODEC
    /* A recorded event that apply does not regenerate is reported with its LSN. */
    db.falsify_events_of = db.lsn_last + 1;
    uint64_t bad = ops_gen_ingest(&db, "liar@example.com", "this ticket id will be recorded wrong");
    TQ_CHECK_UEQ(bad, db.falsify_events_of);
    int status = -1;
    char *out =
        ops_capture(&status, "%s replay --data %s --jsonl 2>&1 >/dev/null", ops_tool(), dir);
    char want[96];
    snprintf(want, sizeof(want), "(first at LSN %llu)", (unsigned long long)bad);
    TQ_CHECK_EQ(status, 1);
    TQ_CHECK(strstr(out, want) != NULL);
    free(out);
#endif
    ops_db_close(&db);
    ops_rm_rf(dir);
}

int main(void) {
    uint64_t seed = tq_test_seed("test_ops_replay");
    test_scripted();
    test_random_at(seed);
    printf("test_ops_replay: ok\n");
    return 0;
}
