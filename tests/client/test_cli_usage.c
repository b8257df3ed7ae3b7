/* tests/client/test_cli_usage.c: the `ticketq` command line without a server.
 *
 * Goal: help works and every kind of usage error is caught before anything is sent, with one
 * line on stderr and exit code 2; a dead server is exit 1 with "error: unavailable: ...".
 * Method: run the built binary (cli_run.h) with bad command lines against an address where
 * nothing listens; a usage error must win over the connection error, proving it is found
 * first. Invariants: exit codes 0/1/2 as documented; stderr is exactly one line for errors.
 */
#include "cli_run.h"

static struct run r;

int main(void) {
    tq_test_seed("test_cli_usage");
    if (access(tq_fixture_bin("client/cli/ticketq"), X_OK) != 0) {
        printf("ticketq not built: skipped\n");
        return TQ_TEST_SKIP;
    }
    snprintf(cli_run_dir, sizeof(cli_run_dir), "%s/tq-cli-usage-XXXXXX",
             getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
    TQ_CHECK(mkdtemp(cli_run_dir) != NULL);
    setenv("TICKETQ_ADDR", "unix:/nonexistent/ticketq.sock", 1);
    setenv("TICKETQ_TOKEN", "t", 1);

    cli_exec(&r, "--help", NULL);
    TQ_CHECK_EQ(r.status, 0);
    TQ_CHECK(strstr(r.out, "ticket claim") != NULL);
    cli_exec(&r, "ingest", "--help", NULL);
    TQ_CHECK_EQ(r.status, 0);
    TQ_CHECK(strstr(r.out, "--channel") != NULL);
    cli_exec(&r, "frobnicate", NULL);
    expect_one_line_error(&r, 2, "unknown subcommand 'frobnicate'");
    cli_exec(&r, "ticket", "frob", NULL);
    expect_one_line_error(&r, 2, "unknown subcommand 'ticket frob'");
    cli_exec(&r, "ticket", "show", NULL);
    expect_one_line_error(&r, 2, "needs TICKET_ID");
    cli_exec(&r, "ticket", "show", "7", "--colour", NULL);
    expect_one_line_error(&r, 2, "unknown option --colour");
    cli_exec(&r, "ingest", "--channel", "telegram", "--from", "x", "--body", "y", NULL);
    expect_one_line_error(&r, 2, "channel must be one of email, sms, whatsapp");
    cli_exec(&r, "queue", "show", "abc", NULL);
    expect_one_line_error(&r, 2, "QUEUE_ID must be a non-negative integer");

    cli_exec(&r, "ticket", NULL); /* a group alone lists its subcommands */
    TQ_CHECK_EQ(r.status, 2);
    TQ_CHECK(strstr(r.err, "ticket transfer") != NULL);
    cli_exec(&r, "ticket", "--help", NULL);
    TQ_CHECK_EQ(r.status, 0);
    TQ_CHECK(strstr(r.out, "ticket merge") != NULL);
    cli_exec(&r, "ticket", "update", "5", "--status", "done", NULL);
    expect_one_line_error(&r, 2,
                          "status must be one of new, open, pending, on_hold, solved, closed");
    cli_exec(&r, "subscribe", "--type", "ticket_closed", NULL);
    expect_one_line_error(&r, 2, "type must be one of tenant_created, ticket_created,");
    cli_exec(&r, "token", "issue", NULL);
    expect_one_line_error(&r, 2, "needs --role");
    cli_exec(&r, "tenant", "sla", "--policy", "first_reply=1h", NULL);
    expect_one_line_error(&r, 2, "--policy needs name=NAME");
    cli_exec(&r, "tenant", "hours", "--tz", "UTC", "--day", "funday=09:00-18:00", NULL);
    expect_one_line_error(&r, 2, "--day wants DAY=HH:MM-HH:MM");
    cli_exec(&r, "queue", "create", "q", "--assignment-timeout", "5 weeks", NULL);
    expect_one_line_error(&r, 2, "must be a duration");
    cli_exec(&r, "--tenant", "x", "stats", NULL);
    expect_one_line_error(&r, 2, "--tenant must be a tenant id");
    cli_exec(&r, "--token-file", "/nonexistent/token", "ping", NULL);
    expect_one_line_error(&r, 2, "--token-file /nonexistent/token");
    cli_exec(&r, "ticket", "show", "1", "2", NULL);
    expect_one_line_error(&r, 2, "unexpected argument");
    cli_exec(&r, "subscribe", "--ack", NULL);
    expect_one_line_error(&r, 2, "--ack needs --consumer");
    cli_exec(&r, "ingest", "--channel", "email", "--from", "a@b", NULL);
    expect_one_line_error(&r, 2, "give --body or --body-file");
    cli_exec(&r, "note", "1", "--body", "x", "--body-file", "-", NULL);
    expect_one_line_error(&r, 2, "give --body or --body-file");
    cli_exec(&r, "reply", "1", "--body-file", "/nonexistent/body.txt", NULL);
    expect_one_line_error(&r, 2, "--body-file /nonexistent/body.txt");
    cli_exec(&r, "ping", NULL); /* valid, but nobody listens */
    expect_one_line_error(&r, 1, "error: unavailable: ");
    cli_exec(&r, "--addr", "no-port", "ping", NULL);
    expect_one_line_error(&r, 1, "error: invalid_argument: ");

    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", cli_run_dir);
    TQ_CHECK_EQ(system(cmd), 0);
    printf("test_cli_usage: ok\n");
    return 0;
}
