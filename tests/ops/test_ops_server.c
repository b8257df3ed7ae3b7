/* tests/ops/test_ops_server.c: the tools on a real ticketqd's data directory, while it runs.
 *
 * Goal: what ticketqd writes is what the tools understand, and the online promises hold against
 * the real server: verify and replay are safe on its live directory, backup is consistent while
 * it serves, and a restored directory is one ticketqd starts on and serves from.
 * Method: tests/fixture starts ticketqd (8 MiB segments); libticketq
 * drives a small shop (tenant, queue, agent, customers' messages, replies). Then, with the
 * server running:
 *   - `verify` passes on the live directory;
 *   - `replay --jsonl` exits 0: it re-applies every command and compares the events with the
 *     events records ticketqd logged itself (any difference exits 1), so apply in the tool and
 *     in the server agree on real traffic;
 *   - a backup, more traffic, a second backup into the same directory taken while another
 *     process keeps sending traffic (so the active segment grows under the copy);
 * then ticketqd is stopped, the backup restored into a fresh directory, and a new ticketqd is
 * started on it: it must serve the tickets and message bodies written before the backup, and
 * the state rebuilt from the restored log equals the state rebuilt from the original log (which
 * went on growing) at the backup LSN: the backup is a consistent prefix.
 * Label net (loopback only).
 */
#include "ops.h"
#include "ops_testlib.h"
#include "ticketq.h"
#include "tq_fixture.h"
#include "tq_test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static struct tq_error err;
#define OK(expr) TQ_CHECK_OK((expr), &err)

static struct tq_client *connect_admin(const struct tq_fixture *f) {
    struct tq_client_options o = {.addr = f->addr, .token = f->admin_token, .io_timeout_ms = 30000};
    struct tq_client *c = NULL;
    OK(tq_client_connect(&o, &c, &err));
    return c;
}

/* n messages from a rotating set of customers, each answered once; returns the last ticket. */
static uint64_t traffic(struct tq_client *c, int first, int n, uint64_t queue_id) {
    uint64_t ticket = 0;
    for (int i = first; i < first + n; i++) {
        char from[64], body[128];
        snprintf(from, sizeof(from), "customer%d@example.com", i % 23);
        snprintf(body, sizeof(body), "message %d: where is parcel %d?", i, i * 7919);
        Ticketq__Ingest in = TICKETQ__INGEST__INIT;
        in.channel = TICKETQ__CHANNEL__EMAIL;
        in.from = from;
        in.body = body;
        in.subject = tq_test_mut("parcel");
        in.has_queue_id = true;
        in.queue_id = queue_id;
        struct tq_client_ids ids;
        OK(tq_client_ingest(c, &in, &ids, &err));
        ticket = ids.ticket_id;
        if (i % 2 == 0) {
            snprintf(body, sizeof(body), "reply %d: parcel %d ships today", i, i * 7919);
            OK(tq_client_reply(c, ids.ticket_id, body, &ids, &err));
        }
    }
    return ticket;
}

static void digest_at(const char *dir, uint64_t lsn, uint8_t out[16], uint64_t *applied) {
    struct tq_state *state = NULL;
    struct tq_error e;
    TQ_CHECK_OK(tq_ops_state_at(dir, lsn, &state, applied, &e), &e);
    tq_state_digest(state, out);
    tq_state_free(state);
}

int main(void) {
    tq_test_seed("test_ops_server");
    struct tq_fixture fx;
    memset(&fx, 0, sizeof(fx));
    fx.extra_args[0] = "--segment-bytes";
    fx.extra_args[1] = "8388608"; /* 1 MiB cannot hold a default 4 MiB batch */
    if (tq_fixture_start(&fx) != 0) return 1;
    struct tq_client *c = connect_admin(&fx);
    struct tq_client_ids ids;
    OK(tq_client_tenant_create(c, "acme", &ids, &err));
    tq_client_set_tenant(c, ids.tenant_id);
    OK(tq_client_queue_create(c, "support", false, &ids, &err));
    uint64_t queue = ids.queue_id;
    OK(tq_client_agent_create(c, "ann", 10, 10, &ids, &err));
    traffic(c, 0, 300, queue);

    /* Live: verify and replay (cross-checked against ticketqd's own events records). */
    int status = -1;
    char *out = ops_capture(&status, "%s verify --data %s 2>&1", ops_tool(), fx.dir);
    if (status != 0) fprintf(stderr, "%s", out);
    TQ_CHECK_EQ(status, 0);
    TQ_CHECK(strstr(out, "events 0") == NULL); /* the server logs events records */
    free(out);
    out = ops_capture(&status, "%s replay --data %s --jsonl 2>&1 | grep -c message_added",
                      ops_tool(), fx.dir);
    TQ_CHECK_EQ(atol(out), 450);
    free(out);
    TQ_CHECK_EQ(ops_sh("%s replay --data %s --jsonl > /dev/null", ops_tool(), fx.dir), 0);

    /* Live backups: a full one, more traffic, an incremental one. */
    char backup[200], restored[200];
    ops_tmpdir("server-backup", backup, sizeof(backup));
    ops_tmpdir("server-restored", restored, sizeof(restored)); /* empty: restore accepts it */
    struct tq_ops_backup_result r1, r2;
    struct tq_error e;
    TQ_CHECK_OK(tq_ops_backup(fx.dir, backup, false, &r1, &e), &e);
    TQ_CHECK_GE(r1.files_copied, 1);
    uint64_t last_ticket = traffic(c, 300, 200, queue);
    /* The second backup runs while another process keeps the server busy. */
    fflush(stdout);
    pid_t child = fork();
    TQ_CHECK(child >= 0);
    if (child == 0) {
        struct tq_client *busy = connect_admin(&fx);
        tq_client_set_tenant(busy, 1);
        traffic(busy, 1000, 300, queue);
        tq_client_close(busy);
        _exit(0);
    }
    usleep(200 * 1000);
    TQ_CHECK_OK(tq_ops_backup(fx.dir, backup, false, &r2, &e), &e);
    int child_status = 0;
    TQ_CHECK_EQ(waitpid(child, &child_status, 0), child);
    TQ_CHECK(WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0);
    TQ_CHECK_GT(r2.lsn_last, r1.lsn_last);
    TQ_CHECK_GE(r2.files_copied, 1); /* the active segment grew (reuse: test_ops_backup) */
    tq_client_close(c);
    TQ_CHECK_EQ(tq_fixture_stop(&fx), 0);

    /* Restore the second backup and serve from it. */
    struct tq_ops_restore_options ro;
    memset(&ro, 0, sizeof(ro));
    ro.src = backup;
    ro.data_dir = restored;
    uint64_t lsn = 0;
    TQ_CHECK_OK(tq_ops_restore(&ro, &lsn, &e), &e);
    TQ_CHECK_UEQ(lsn, r2.lsn_last);
    uint8_t a[16], b[16];
    uint64_t applied_a = 0, applied_b = 0;
    digest_at(restored, UINT64_MAX, a, &applied_a);
    digest_at(fx.dir, r2.lsn_last, b, &applied_b);
    TQ_CHECK_UEQ(applied_a, applied_b);
    TQ_CHECK_MEM_EQ(a, b, 16);

    struct tq_fixture fx2;
    memset(&fx2, 0, sizeof(fx2));
    snprintf(fx2.dir, sizeof(fx2.dir), "%s", restored);
    snprintf(fx2.admin_token, sizeof(fx2.admin_token), "%s", fx.admin_token);
    /* The restored directory has no admin.token (the token itself is in the log, as a hash):
     * the fixture reads the secret from DIR/admin.token, so put it there. */
    char token_path[300];
    snprintf(token_path, sizeof(token_path), "%s/admin.token", restored);
    FILE *tf = fopen(token_path, "w");
    TQ_CHECK(tf != NULL);
    fprintf(tf, "%s\n", fx.admin_token);
    fclose(tf);
    fx2.extra_args[0] = "--segment-bytes";
    fx2.extra_args[1] = "8388608"; /* 1 MiB cannot hold a default 4 MiB batch */
    TQ_CHECK_EQ(tq_fixture_start(&fx2), 0);
    c = connect_admin(&fx2);
    tq_client_set_tenant(c, 1);
    Ticketq__Response *resp = NULL;
    OK(tq_client_ticket_get(c, last_ticket, 0, 0, &resp, &err));
    TQ_CHECK(resp != NULL);
    tq_client_response_free(resp);
    traffic(c, 500, 10, queue); /* and it keeps appending to the restored log */
    tq_client_close(c);
    TQ_CHECK_EQ(tq_fixture_stop(&fx2), 0);
    TQ_CHECK_EQ(ops_sh("%s verify --data %s > /dev/null", ops_tool(), restored), 0);

    tq_fixture_cleanup(&fx2);
    tq_fixture_cleanup(&fx);
    ops_rm_rf(backup);
    printf("test_ops_server: ok\n");
    return 0;
}
