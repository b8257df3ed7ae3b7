/* tests/ops/test_ops_online.c: online erasure, online compaction and the data-directory lock,
 * against a real ticketqd through the real client library.
 *
 * Goal: the promises of docs/operations.md "Online erasure" and "Online compaction".
 * Method (tests/fixture starts ticketqd with 8 MiB segments):
 *   1. a shop; a victim customer writes early (bodies carry a unique marker), then enough
 *      traffic from others (5 KiB bodies) to seal two segments;
 *   2. roles: a tenant admin may erase but not compact (PERMISSION_DENIED);
 *      the lock: a second ticketqd on the directory and an offline `compact --data` and a
 *      `restore` into it are refused at once naming the holder; verify and replay still work;
 *   3. CustomerErase: NOT_FOUND for an unknown id, the identity no longer resolves, a
 *      subscriber receives CUSTOMER_ERASED with the id, erasing again is FAILED_PRECONDITION,
 *      and the next message from the victim's address makes a new customer;
 *   4. Compact with a small I/O budget while a second process keeps ingesting: a second
 *      Compact is FAILED_PRECONDITION, every ingest succeeds, the run ends "done" with
 *      segments rewritten and records redacted; then, with the server stopped: verify passes,
 *      .zseg files exist, no file of the data directory holds a byte of the victim's marker,
 *      the rebuilt state's counts equal the live server's Stats, its digest equals the
 *      uncompacted copy's state with every later command applied, and a restarted server serves
 *      an early message body from a compressed segment;
 *   5. on a pristine copy of the erased-but-uncompacted directory, one compaction to the end:
 *      the compacted directory rebuilds to the pristine digest and holds no marker byte;
 *   6. kill -9 during online compaction (every fifth cycle SIGTERM instead: the server cancels
 *      and joins the helper and exits 0), TQ_ONLINE_KILL_CYCLES (default 20) times: each cycle
 *      starts from a pristine copy of the erased-but-uncompacted directory, starts ticketqd,
 *      sends Compact (I/O budget) and kills it at a random instant; the directory must verify,
 *      rebuild to the pristine digest (the erasure was logged before), and ticketqd must
 *      start on it again. Seeded (TQ_SEED=).
 * Label net (loopback only).
 */
#include "log.h"
#include "ops.h"
#include "ops_testlib.h"
#include "state.h"
#include "ticketq.h"
#include "tq_alloc.h"
#include "tq_fixture.h"
#include "tq_test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static struct tq_error err;
#define OK(expr) TQ_CHECK_OK((expr), &err)

#define VICTIM      "victim@example.com"
#define MARKER      "VICTIMSECRET"
#define VICTIM_NAME "Vic Timson"
#define FILLER_BODY 5000

static struct tq_client *connect_admin(const struct tq_fixture *f, uint64_t tenant) {
    struct tq_client_options o = {.addr = f->addr, .token = f->admin_token, .io_timeout_ms = 60000};
    struct tq_client *c = NULL;
    OK(tq_client_connect(&o, &c, &err));
    if (tenant != 0) tq_client_set_tenant(c, tenant);
    return c;
}

static uint64_t ingest(struct tq_client *c, const char *from, const char *body, uint64_t queue,
                       struct tq_client_ids *ids) {
    Ticketq__Ingest in = TICKETQ__INGEST__INIT;
    in.channel = TICKETQ__CHANNEL__EMAIL;
    in.from = tq_test_mut(from);
    in.body = tq_test_mut(body);
    in.has_queue_id = true;
    in.queue_id = queue;
    OK(tq_client_ingest(c, &in, ids, &err));
    return ids->ticket_id;
}

/* n filler messages of FILLER_BODY bytes from 50 other customers; returns 0 or -1 (child). */
static int filler(struct tq_client *c, int first, int n, uint64_t queue) {
    static char body[FILLER_BODY + 64];
    for (int i = first; i < first + n; i++) {
        char from[64];
        snprintf(from, sizeof(from), "other%d@example.com", i % 50);
        int k = snprintf(body, sizeof(body), "message %d about parcel %d: ", i, i * 7919);
        for (; k < FILLER_BODY; k++)
            body[k] = (char)('a' + (i * 31 + k * 7) % 26);
        body[k] = '\0';
        Ticketq__Ingest in = TICKETQ__INGEST__INIT;
        in.channel = TICKETQ__CHANNEL__EMAIL;
        in.from = from;
        in.body = body;
        in.has_queue_id = true;
        in.queue_id = queue;
        struct tq_client_ids ids;
        struct tq_error e;
        if (tq_client_ingest(c, &in, &ids, &e) != TQ_OK) {
            fprintf(stderr, "ingest %d: %s\n", i, e.msg);
            return -1;
        }
    }
    return 0;
}

static void digest_of(const char *dir, uint8_t out[16]) {
    struct tq_state *state = NULL;
    struct tq_error e;
    uint64_t lsn = 0;
    TQ_CHECK_OK(tq_ops_state_at(dir, UINT64_MAX, &state, &lsn, &e), &e);
    tq_state_digest(state, out);
    tq_state_free(state);
}

static const Ticketq__CompactStatusResult *status(struct tq_client *c, Ticketq__Response **resp) {
    *resp = NULL;
    OK(tq_client_compact_status(c, resp, &err));
    TQ_CHECK((*resp)->compact != NULL);
    return (*resp)->compact;
}

/* The digest of the pristine directory's state with every command of dir after the pristine
 * log's end applied: what the compacted dir must rebuild to when traffic went on meanwhile. */
static void digest_pristine_plus(const char *pristine, const char *dir, uint8_t out[16]) {
    struct tq_state *state = NULL;
    struct tq_error e;
    uint64_t applied = 0;
    TQ_CHECK_OK(tq_ops_state_at(pristine, UINT64_MAX, &state, &applied, &e), &e);
    struct tq_log_options o;
    memset(&o, 0, sizeof(o));
    o.dir = pristine;
    o.read_only = true;
    o.ring_tag = 1;
    struct tq_log *log = NULL;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &e), &e);
    uint64_t end = tq_log_acked_lsn(log);
    tq_log_close(log);
    o.dir = dir;
    TQ_CHECK_OK(tq_log_open(&o, &log, NULL, &e), &e);
    struct tq_log_iter *it = NULL;
    TQ_CHECK_OK(tq_log_iter_open(log, end + 1, &it, &e), &e);
    struct tq_arena arena;
    tq_arena_init(&arena, 64 * 1024);
    uint64_t n = 0;
    for (;;) {
        struct tq_log_record rec;
        enum tq_err rc = tq_log_iter_next(it, &rec, &e);
        if (rc == TQ_ERR_NOT_FOUND) break;
        TQ_CHECK_OK(rc, &e);
        if (rec.type != TQ_RECORD_TYPE_CMD) continue;
        TQ_CHECK_EQ(rec.flags & TQ_RECORD_REDACTED, 0);
        struct tq_cmd cmd;
        tq_arena_reset(&arena);
        TQ_CHECK_OK(tq_cmd_decode(rec.payload, rec.len, &cmd, &arena, &e), &e);
        TQ_CHECK_OK(tq_state_apply(state, rec.lsn, &cmd, NULL, NULL, &e), &e);
        n++;
    }
    TQ_CHECK_GE(n, 400); /* the concurrent ingests at least */
    tq_arena_destroy(&arena);
    tq_log_iter_close(it);
    tq_log_close(log);
    tq_state_digest(state, out);
    tq_state_free(state);
}

/* Waits (bounded) until the running compaction ended; returns its phase ("done"...). */
static void wait_done(struct tq_client *c, char *phase, size_t cap) {
    for (int i = 0; i < 3000; i++) {
        Ticketq__Response *r = NULL;
        const Ticketq__CompactStatusResult *s = status(c, &r);
        if (!s->running) {
            snprintf(phase, cap, "%s", s->phase);
            if (s->error != NULL) fprintf(stderr, "compaction: %s\n", s->error->message);
            tq_client_response_free(r);
            return;
        }
        tq_client_response_free(r);
        usleep(100 * 1000);
    }
    TQ_CHECK(!"compaction did not end within 300 s");
}

static void check_lock(struct tq_fixture *fx) {
    int status_code = -1;
    char *out = ops_capture(&status_code, "%s --data %s --listen 127.0.0.1:0 2>&1",
                            tq_fixture_bin("server/ticketqd"), fx->dir);
    TQ_CHECK_NE(status_code, 0);
    TQ_CHECK(strstr(out, "in use by another process (ticketqd pid") != NULL);
    free(out);
    out = ops_capture(&status_code, "%s compact --data %s 2>&1", ops_tool(), fx->dir);
    TQ_CHECK_EQ(status_code, 2);
    TQ_CHECK(strstr(out, "in use by another process") != NULL);
    free(out);
    char backup[200];
    ops_tmpdir("online-lock-backup", backup, sizeof(backup));
    TQ_CHECK_EQ(ops_sh("%s backup %s --data %s > /dev/null", ops_tool(), backup, fx->dir), 0);
    out = ops_capture(&status_code, "%s restore %s --data %s --force 2>&1", ops_tool(), backup,
                      fx->dir);
    TQ_CHECK_NE(status_code, 0);
    TQ_CHECK(strstr(out, "in use by another process") != NULL);
    free(out);
    ops_rm_rf(backup);
    TQ_CHECK_EQ(ops_sh("%s verify --data %s > /dev/null", ops_tool(), fx->dir), 0);
    TQ_CHECK_EQ(ops_sh("%s replay --data %s --jsonl > /dev/null", ops_tool(), fx->dir), 0);
}

/* CustomerGet: the name into out, returns the number of identities. */
static size_t customer_get(struct tq_client *c, uint64_t id, char *out, size_t cap) {
    Ticketq__CustomerGet get = TICKETQ__CUSTOMER_GET__INIT;
    get.customer_id = id;
    Ticketq__Request req = TICKETQ__REQUEST__INIT;
    req.op_case = TICKETQ__REQUEST__OP_CUSTOMER_GET;
    req.customer_get = &get;
    Ticketq__Response *r = NULL;
    OK(tq_client_call(c, &req, &r, &err));
    TQ_CHECK(r->customer != NULL);
    TQ_CHECK_UEQ(r->customer->customer_id, id);
    snprintf(out, cap, "%s", r->customer->name != NULL ? r->customer->name : "");
    size_t n = r->customer->n_identities;
    tq_client_response_free(r);
    return n;
}

/* Step 3: online erasure. Returns the victim's customer id. */
static uint64_t check_erase(struct tq_fixture *fx, struct tq_client *c, uint64_t victim,
                            uint64_t queue) {
    struct tq_client *sc = connect_admin(fx, 1);
    Ticketq__EventType types[] = {TICKETQ__EVENT_TYPE__CUSTOMER_ERASED};
    struct tq_subscribe_options so = {.from_now = true, .types = types, .type_count = 1};
    struct tq_subscription *sub = NULL;
    OK(tq_client_subscribe(sc, &so, &sub, &err));
    usleep(100 * 1000);
    char name[64];
    TQ_CHECK_EQ(customer_get(c, victim, name, sizeof(name)), 1);
    TQ_CHECK_STR_EQ(name, VICTIM_NAME);
    TQ_CHECK_ERR(tq_client_customer_erase(c, 987654, &err), TQ_ERR_NOT_FOUND, &err);
    OK(tq_client_customer_erase(c, victim, &err));
    const Ticketq__Event *ev = NULL;
    OK(tq_subscription_next(sub, &ev, 10000, &err));
    TQ_CHECK(ev != NULL);
    TQ_CHECK_EQ(ev->type, TICKETQ__EVENT_TYPE__CUSTOMER_ERASED);
    TQ_CHECK_UEQ(ev->customer_id, victim);
    OK(tq_subscription_close(sub, &err));
    tq_client_close(sc);
    TQ_CHECK_ERR(tq_client_customer_erase(c, victim, &err), TQ_ERR_FAILED_PRECONDITION, &err);
    /* The tombstone: same id, no name, no identities. */
    TQ_CHECK_EQ(customer_get(c, victim, name, sizeof(name)), 0);
    TQ_CHECK_STR_EQ(name, "");
    Ticketq__Response *r = NULL;
    TQ_CHECK_ERR(tq_client_customer_lookup(c, TICKETQ__CHANNEL__EMAIL, VICTIM, &r, &err),
                 TQ_ERR_NOT_FOUND, &err);
    tq_client_response_free(r);
    struct tq_client_ids ids;
    ingest(c, VICTIM, "hello again, a new conversation", queue, &ids);
    TQ_CHECK(ids.customer_id != 0);
    TQ_CHECK(ids.customer_id != victim);
    return victim;
}

/* True if any file under dir holds the marker (grep -r, binary files included). */
static bool dir_holds(const char *dir, const char *marker) {
    return ops_sh("grep -r -a -q '%s' %s", marker, dir) == 0;
}

static uint64_t stats_tickets(struct tq_client *c) {
    Ticketq__Response *r = NULL;
    OK(tq_client_stats(c, &r, &err));
    uint64_t n = r->stats->tickets;
    tq_client_response_free(r);
    return n;
}

/* Step 4: online compaction under concurrent ingest. */
static void check_compact_live(struct tq_fixture *fx, struct tq_client *c, uint64_t queue,
                               uint64_t early_ticket, const char *pristine) {
    fflush(stdout);
    fflush(stderr);
    pid_t child = fork();
    TQ_CHECK(child >= 0);
    if (child == 0) {
        struct tq_client *busy = connect_admin(fx, 1);
        int rc = filler(busy, 100000, 400, queue);
        tq_client_close(busy);
        _exit(rc == 0 ? 0 : 1);
    }
    usleep(100 * 1000);
    Ticketq__Compact op = TICKETQ__COMPACT__INIT;
    op.has_io_bytes_per_sec = true;
    op.io_bytes_per_sec = 8u << 20;
    Ticketq__Response *r = NULL;
    OK(tq_client_compact(c, &op, &r, &err));
    TQ_CHECK(r->compact->running);
    TQ_CHECK_STR_EQ(r->compact->phase, "snapshot"); /* answered before the snapshot is taken */
    tq_client_response_free(r);
    r = NULL;
    TQ_CHECK_ERR(tq_client_compact(c, &op, &r, &err), TQ_ERR_FAILED_PRECONDITION, &err);
    tq_client_response_free(r);
    char phase[32] = "";
    wait_done(c, phase, sizeof(phase));
    TQ_CHECK_STR_EQ(phase, "done");
    const Ticketq__CompactStatusResult *s = status(c, &r);
    TQ_CHECK_GE(s->segments_total, 1);
    TQ_CHECK_GE(s->segments_rewritten, 1);
    TQ_CHECK_GT(s->snapshot_lsn, 0);
    TQ_CHECK_GE(s->records_redacted, 5);
    TQ_CHECK_UEQ(s->customers_erased, 1);
    TQ_CHECK_LT(s->bytes_after, s->bytes_before);
    printf("online compaction: %" PRIu64 " -> %" PRIu64 " bytes in %" PRIu64
           " ms, loop held %" PRIu64 " us\n",
           s->bytes_before, s->bytes_after, s->elapsed_ms, s->loop_stall_us);
    tq_client_response_free(r);
    int child_status = 0;
    TQ_CHECK_EQ(waitpid(child, &child_status, 0), child);
    TQ_CHECK(WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0);
    uint64_t live_tickets = stats_tickets(c);
    tq_client_close(c);
    TQ_CHECK_EQ(tq_fixture_stop(fx), 0);

    TQ_CHECK_EQ(ops_sh("%s verify --data %s > /dev/null", ops_tool(), fx->dir), 0);
    TQ_CHECK_EQ(ops_sh("ls %s/log | grep -q zseg", fx->dir), 0);
    TQ_CHECK(!dir_holds(fx->dir, MARKER));
    TQ_CHECK(!dir_holds(fx->dir, VICTIM_NAME)); /* the CUSTOMER_CREATE record too */
    struct tq_state *state = NULL;
    struct tq_error e;
    uint64_t lsn = 0;
    TQ_CHECK_OK(tq_ops_state_at(fx->dir, UINT64_MAX, &state, &lsn, &e), &e);
    struct tq_stats st;
    tq_state_stats(state, 1, &st);
    TQ_CHECK_UEQ(st.ticket_count, live_tickets);
    /* The same state as without compaction: the pristine log + everything after it. */
    uint8_t got[16], want[16];
    tq_state_digest(state, got);
    tq_state_free(state);
    digest_pristine_plus(pristine, fx->dir, want);
    TQ_CHECK_MEM_EQ(got, want, 16);

    /* A restarted server serves an early (compressed) message body. */
    TQ_CHECK_EQ(tq_fixture_start(fx), 0);
    c = connect_admin(fx, 1);
    OK(tq_client_ticket_get(c, early_ticket, 0, 5, &r, &err));
    TQ_CHECK(r->ticket->n_messages >= 1);
    TQ_CHECK(strstr(r->ticket->messages[0]->body, "message 0 about parcel") != NULL);
    tq_client_response_free(r);
    TQ_CHECK_UEQ(stats_tickets(c), live_tickets);
    tq_client_close(c);
    /* The CLI face: `ticketq compact` without --data runs it online and prints the summary;
     * a relative --archive is refused by the server. */
    int code = -1;
    char *out =
        ops_capture(&code, "%s --addr %s --token-file %s/admin.token --tenant 1 --json compact",
                    tq_fixture_bin("client/cli/ticketq"), fx->addr, fx->dir);
    TQ_CHECK_EQ(code, 0);
    TQ_CHECK(strstr(out, "\"phase\":\"done\"") != NULL);
    free(out);
    out = ops_capture(&code,
                      "%s --addr %s --token-file %s/admin.token --tenant 1 compact --retention 30 "
                      "--archive rel/dir 2>&1",
                      tq_fixture_bin("client/cli/ticketq"), fx->addr, fx->dir);
    TQ_CHECK_EQ(code, 1);
    TQ_CHECK(strstr(out, "absolute path") != NULL);
    free(out);
    TQ_CHECK_EQ(tq_fixture_stop(fx), 0);
}

/* Step 5: kill -9 at random instants of online compaction. */
static void check_kill_cycles(const char *pristine, uint64_t *rng) {
    int cycles = 20;
    const char *env = getenv("TQ_ONLINE_KILL_CYCLES");
    if (env != NULL && atoi(env) > 0) cycles = atoi(env);
    uint8_t want[16];
    digest_of(pristine, want);
    /* First a run to the end: the compacted directory rebuilds to the same digest. */
    {
        struct tq_fixture fx;
        memset(&fx, 0, sizeof(fx));
        ops_tmpdir("online-full", fx.dir, sizeof(fx.dir));
        TQ_CHECK_EQ(ops_sh("cp -a %s/. %s/", pristine, fx.dir), 0);
        fx.extra_args[0] = "--segment-bytes";
        fx.extra_args[1] = "8388608";
        TQ_CHECK_EQ(tq_fixture_start(&fx), 0);
        struct tq_client *c = connect_admin(&fx, 1);
        Ticketq__Response *r = NULL;
        OK(tq_client_compact(c, NULL, &r, &err));
        tq_client_response_free(r);
        char phase[32] = "";
        wait_done(c, phase, sizeof(phase));
        TQ_CHECK_STR_EQ(phase, "done");
        tq_client_close(c);
        TQ_CHECK_EQ(tq_fixture_stop(&fx), 0);
        uint8_t got[16];
        digest_of(fx.dir, got);
        TQ_CHECK_MEM_EQ(got, want, 16);
        TQ_CHECK(!dir_holds(fx.dir, MARKER));
        TQ_CHECK(!dir_holds(fx.dir, VICTIM_NAME));
        tq_fixture_cleanup(&fx);
    }
    int killed_mid = 0;
    for (int cycle = 0; cycle < cycles; cycle++) {
        struct tq_fixture fx;
        memset(&fx, 0, sizeof(fx));
        ops_tmpdir("online-kill", fx.dir, sizeof(fx.dir));
        TQ_CHECK_EQ(ops_sh("cp -a %s/. %s/", pristine, fx.dir), 0);
        fx.extra_args[0] = "--segment-bytes";
        fx.extra_args[1] = "8388608";
        TQ_CHECK_EQ(tq_fixture_start(&fx), 0);
        struct tq_client *c = connect_admin(&fx, 1);
        Ticketq__Compact op = TICKETQ__COMPACT__INIT;
        op.has_io_bytes_per_sec = true;
        op.io_bytes_per_sec = 16u << 20;
        Ticketq__Response *r = NULL;
        OK(tq_client_compact(c, &op, &r, &err));
        tq_client_response_free(r);
        /* every third cycle early (the snapshot child, classification), else anywhere */
        uint64_t delay_ms = tq_test_rand_below(rng, cycle % 3 == 0 ? 40 : 1500);
        usleep((useconds_t)delay_ms * 1000);
        const Ticketq__CompactStatusResult *s = status(c, &r);
        killed_mid += s->running;
        printf("cycle %d: killed in phase %s, %u/%u segments done\n", cycle, s->phase,
               s->segments_done, s->segments_total);
        tq_client_response_free(r);
        if (cycle % 5 == 4) {
            /* a graceful stop instead: the running compaction is cancelled and joined */
            TQ_CHECK_EQ(tq_fixture_stop(&fx), 0);
        } else {
            tq_fixture_kill9(&fx);
        }
        tq_client_close(c);
        /* old or new layout, never a mix: verify passes and the state is the pristine one */
        int st = -1;
        char *out = ops_capture(&st, "%s verify --data %s 2>&1", ops_tool(), fx.dir);
        if (st != 0) fprintf(stderr, "cycle %d: %s", cycle, out);
        TQ_CHECK_EQ(st, 0);
        free(out);
        uint8_t got[16];
        digest_of(fx.dir, got);
        TQ_CHECK_MEM_EQ(got, want, 16);
        TQ_CHECK_EQ(tq_fixture_start(&fx), 0);
        tq_fixture_cleanup(&fx);
    }
    printf("kill cycles: %d, killed while running: %d\n", cycles, killed_mid);
    TQ_CHECK_GE(killed_mid, cycles / 2);
}

int main(void) {
    uint64_t rng = tq_test_seed("test_ops_online");
    struct tq_fixture fx;
    memset(&fx, 0, sizeof(fx));
    fx.extra_args[0] = "--segment-bytes";
    fx.extra_args[1] = "8388608";
    if (tq_fixture_start(&fx) != 0) return 1;
    struct tq_client *c = connect_admin(&fx, 0);
    struct tq_client_ids ids;
    OK(tq_client_tenant_create(c, "acme", &ids, &err));
    tq_client_set_tenant(c, ids.tenant_id);
    OK(tq_client_queue_create(c, "support", false, &ids, &err));
    uint64_t queue = ids.queue_id;
    uint64_t early_ticket = 0;
    TQ_CHECK_EQ(filler(c, 0, 1, queue), 0);
    early_ticket = 1;
    /* The victim is created with a name first (a CUSTOMER_CREATE record holding it). */
    Ticketq__Identity ident = TICKETQ__IDENTITY__INIT;
    ident.channel = TICKETQ__CHANNEL__EMAIL;
    ident.external_id = tq_test_mut(VICTIM);
    Ticketq__CustomerCreate cc = TICKETQ__CUSTOMER_CREATE__INIT;
    cc.name = tq_test_mut(VICTIM_NAME);
    cc.identity = &ident;
    Ticketq__Request req = TICKETQ__REQUEST__INIT;
    req.op_case = TICKETQ__REQUEST__OP_CUSTOMER_CREATE;
    req.customer_create = &cc;
    Ticketq__Response *resp = NULL;
    OK(tq_client_call(c, &req, &resp, &err));
    uint64_t victim = resp->ids->customer_id;
    tq_client_response_free(resp);
    for (int i = 0; i < 6; i++) {
        char body[128];
        snprintf(body, sizeof(body), "%s-%d: my address is 12 Secret Lane", MARKER, i);
        ingest(c, VICTIM, body, queue, &ids);
        TQ_CHECK_UEQ(ids.customer_id, victim);
        OK(tq_client_reply(c, ids.ticket_id, MARKER " noted, we will write to Secret Lane", &ids,
                           &err));
    }
    TQ_CHECK_EQ(filler(c, 1, 3600, queue), 0); /* ~18 MiB: two sealed 8 MiB segments */

    /* Roles: a tenant admin may erase (here an unknown id: NOT_FOUND, past the role check)
     * but not compact; compaction is the server admin's. */
    char secret[128];
    OK(tq_client_token_issue(c, TICKETQ__ROLE__TENANT_ADMIN, 0, "ta", secret, sizeof(secret), &ids,
                             &err));
    struct tq_client_options to = {.addr = fx.addr, .token = secret, .io_timeout_ms = 60000};
    struct tq_client *ta = NULL;
    OK(tq_client_connect(&to, &ta, &err));
    TQ_CHECK_ERR(tq_client_customer_erase(ta, 987654, &err), TQ_ERR_NOT_FOUND, &err);
    resp = NULL;
    TQ_CHECK_ERR(tq_client_compact(ta, NULL, &resp, &err), TQ_ERR_PERMISSION_DENIED, &err);
    tq_client_response_free(resp);
    tq_client_close(ta);

    check_lock(&fx);
    check_erase(&fx, c, victim, queue);

    /* The erased-but-uncompacted directory, for the kill cycles. */
    char pristine[200];
    ops_tmpdir("online-pristine", pristine, sizeof(pristine));
    tq_client_close(c);
    TQ_CHECK_EQ(tq_fixture_stop(&fx), 0);
    TQ_CHECK_EQ(ops_sh("cp -a %s/. %s/", fx.dir, pristine), 0);
    TQ_CHECK(dir_holds(pristine, MARKER)); /* the grep below can see it */
    TQ_CHECK(dir_holds(pristine, VICTIM_NAME));
    TQ_CHECK_EQ(tq_fixture_start(&fx), 0);
    c = connect_admin(&fx, 1);

    check_compact_live(&fx, c, queue, early_ticket, pristine);
    check_kill_cycles(pristine, &rng);
    ops_rm_rf(pristine);
    tq_fixture_cleanup(&fx);
    printf("test_ops_online: ok\n");
    return 0;
}
