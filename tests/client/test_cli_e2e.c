/* tests/client/test_cli_e2e.c: the `ticketq` binary end to end against a real ticketqd.
 *
 * Goal: the README tour works as written and scripts can rely on --json and the exit codes.
 * Method: start ticketqd with tests/fixture, then run the CLI binary (fork/exec, stdout and
 * stderr captured) through the tour: the server admin creates a tenant and a tenant-admin
 * token; the tenant admin sets up a queue, an agent, routing and a first-reply SLA; a WhatsApp
 * message is ingested; the agent claims it and replies; `ticket show` shows the first-reply
 * clock achieved. Then stats, subscribe (JSONL), watch (once, and live while a message
 * arrives) and the server-error contract
 * (usage errors, which need no server, are in test_cli_usage.c).
 *
 * Invariants checked: every --json output is exactly one valid JSON document per line (strict
 * checker in json_check.h) with the values the tour needs; usage errors exit 2 with one line
 * on stderr; server errors exit 1 with "error: <code>: ..." on stderr.
 */
#include "cli_run.h"

#include <signal.h>
#include <sys/stat.h>

static struct tq_fixture fx;

static char *str_of(const char *json, const char *path, char *buf, size_t cap) {
    if (!json_get(json, path, buf, cap)) {
        fprintf(stderr, "no %s in %s\n", path, json);
        TQ_CHECK(false);
    }
    return buf;
}

static struct run r; /* large: static */

/* A failed check exits: never leave the server running behind (nor its temp dir). */
static void stop_server_at_exit(void) {
    if (fx.pid > 0) tq_fixture_kill9(&fx);
    if (fx.dir[0] != '\0') tq_fixture_cleanup(&fx);
}

int main(void) {
    tq_test_seed("test_cli_e2e");
    if (access(tq_fixture_bin("server/ticketqd"), X_OK) != 0 ||
        access(tq_fixture_bin("client/cli/ticketq"), X_OK) != 0) {
        printf("ticketqd or ticketq not built: skipped\n");
        return TQ_TEST_SKIP;
    }
    atexit(stop_server_at_exit);
    TQ_CHECK_EQ(tq_fixture_start(&fx), 0);
    snprintf(cli_run_dir, sizeof(cli_run_dir), "%s", fx.dir);
    setenv("TICKETQ_ADDR", fx.addr, 1);
    unsetenv("TICKETQ_TOKEN");
    char admin_file[300], tenant[32], tenant_token[300], queue[32], agent[32], agent_token[300];
    char ticket[32], buf[256];
    snprintf(admin_file, sizeof(admin_file), "%s/admin.token", fx.dir);

    /* the tour, as the server admin */
    cli_exec(&r, "--token-file", admin_file, "ping", NULL);
    TQ_CHECK_EQ(r.status, 0);
    cli_exec(&r, "--token-file", admin_file, "tenant", "create", "Acme Shop", "--json", NULL);
    expect_json(&r, "tenant create");
    TQ_CHECK(json_get_u64(r.out, "lsn") > 0);
    str_of(r.out, "tenant_id", tenant, sizeof(tenant));
    cli_exec(&r, "--token-file", admin_file, "--tenant", tenant, "token", "issue", "--role",
             "tenant_admin", "--name", "ops", "--json", NULL);
    expect_json(&r, "token issue");
    str_of(r.out, "token_secret", tenant_token, sizeof(tenant_token));

    /* as the tenant admin (token from the environment) */
    setenv("TICKETQ_TOKEN", tenant_token, 1);
    cli_exec(&r, "queue", "create", "support", "--json", NULL);
    expect_json(&r, "queue create");
    str_of(r.out, "queue_id", queue, sizeof(queue));
    cli_exec(&r, "agent", "create", "Alice", "--capacity-live", "3", "--json", NULL);
    expect_json(&r, "agent create");
    str_of(r.out, "agent_id", agent, sizeof(agent));
    cli_exec(&r, "agent", "update", agent, "--presence", "online", NULL);
    TQ_CHECK_EQ(r.status, 0);
    snprintf(buf, sizeof(buf), "whatsapp=%s", queue);
    cli_exec(&r, "tenant", "settings", "--default-queue", buf, "--reply-window", "whatsapp=24h",
             NULL);
    TQ_CHECK_EQ(r.status, 0);
    cli_exec(&r, "tenant", "sla", "--policy", "name=standard,first_reply=4h/1h/30m/10m", NULL);
    TQ_CHECK_EQ(r.status, 0);
    cli_exec(&r, "token", "issue", "--role", "agent", "--agent", agent, "--json", NULL);
    expect_json(&r, "agent token");
    str_of(r.out, "token_secret", agent_token, sizeof(agent_token));

    cli_exec(&r, "ingest", "--channel", "whatsapp", "--from", "+8613800000000", "--name", "Li Wei",
             "--body", "Hi, my parcel \"SF123\" has not arrived\n", "--json", NULL);
    expect_json(&r, "ingest");
    str_of(r.out, "ticket_id", ticket, sizeof(ticket));
    TQ_CHECK_STR_EQ(str_of(r.out, "ticket_created", buf, sizeof(buf)), "true");

    /* as the agent: claim, reply */
    cli_exec(&r, "--token", agent_token, "ticket", "claim", "--json", NULL);
    expect_json(&r, "claim");
    TQ_CHECK_STR_EQ(str_of(r.out, "ticket_id", buf, sizeof(buf)), ticket);
    cli_exec(&r, "--token", agent_token, "reply", ticket, "--body", "Checking with SF Express now.",
             "--json", NULL);
    expect_json(&r, "reply");

    /* a note from a file: multi-line text arrives intact */
    char note_path[300];
    snprintf(note_path, sizeof(note_path), "%s/note.txt", fx.dir);
    FILE *fp = fopen(note_path, "w");
    TQ_CHECK(fp != NULL);
    fputs("Courier says:\n\t\"out for delivery\"\n", fp);
    fclose(fp);
    cli_exec(&r, "--token", agent_token, "note", ticket, "--body-file", note_path, "--json", NULL);
    expect_json(&r, "note");

    /* the first-reply clock stopped */
    cli_exec(&r, "ticket", "show", ticket, "--json", NULL);
    expect_json(&r, "ticket show");
    TQ_CHECK_STR_EQ(str_of(r.out, "assignee_id", buf, sizeof(buf)), agent);
    TQ_CHECK_STR_EQ(str_of(r.out, "messages.0.body", buf, sizeof(buf)),
                    "Hi, my parcel \\\"SF123\\\" has not arrived\\n");
    TQ_CHECK_STR_EQ(str_of(r.out, "messages.2.body", buf, sizeof(buf)),
                    "Courier says:\\n\\t\\\"out for delivery\\\"\\n");
    bool achieved = false;
    for (int i = 0; i < 8; i++) {
        char path[32], metric[32], state[32];
        snprintf(path, sizeof(path), "sla.%d.metric", i);
        if (!json_get(r.out, path, metric, sizeof(metric))) break;
        snprintf(path, sizeof(path), "sla.%d.state", i);
        str_of(r.out, path, state, sizeof(state));
        if (strcmp(metric, "first_reply") == 0) achieved = strcmp(state, "achieved") == 0;
    }
    TQ_CHECK(achieved);
    cli_exec(&r, "ticket", "show", ticket, NULL); /* text mode: ISO-8601 times */
    TQ_CHECK_EQ(r.status, 0);
    TQ_CHECK(strstr(r.out, "status: open") != NULL || strstr(r.out, "status: pending") != NULL);
    TQ_CHECK(strstr(r.out, "created_ms: 20") != NULL && strstr(r.out, "Z\n") != NULL);

    /* stats, subscribe (JSONL), watch */
    cli_exec(&r, "stats", "--json", NULL);
    expect_json(&r, "stats");
    TQ_CHECK_GE(json_get_u64(r.out, "tickets"), 1);
    TQ_CHECK_GE(json_get_u64(r.out, "messages"), 2);
    TQ_CHECK(json_get_u64(r.out, "last_lsn") > 0);
    TQ_CHECK(json_get(r.out, "tickets_by_status.open", buf, sizeof(buf)));
    cli_exec(&r, "--token-file", admin_file, "stats", "--json", NULL); /* all tenants */
    expect_json(&r, "stats (all)");
    TQ_CHECK_GE(json_get_u64(r.out, "tenant_count"), 1);
    cli_exec(&r, "subscribe", "--from-lsn", "0", "--count", "3", "--idle", "10s", "--json", NULL);
    expect_json(&r, "subscribe");
    int lines = 0;
    for (const char *p = r.out; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    TQ_CHECK_EQ(lines, 3);
    cli_exec(&r, "subscribe", "--from-lsn", "0", "--consumer", "cli", "--ack", "--count", "2",
             NULL);
    TQ_CHECK_EQ(r.status, 0);
    TQ_CHECK(strstr(r.out, "lsn=") != NULL);
    cli_exec(&r, "watch", "--once", "--json", NULL);
    expect_json(&r, "watch");
    TQ_CHECK_STR_EQ(str_of(r.out, "queues.0.queue_id", buf, sizeof(buf)), queue);
    /* live: a message ingested while watch runs produces a new view with a deeper queue */
    pid_t writer = fork();
    TQ_CHECK(writer >= 0);
    if (writer == 0) {
        struct timespec ts = {0, 800 * 1000000L};
        nanosleep(&ts, NULL);
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, STDOUT_FILENO);
        execl(tq_fixture_bin("client/cli/ticketq"), "ticketq", "ingest", "--channel", "whatsapp",
              "--from", "+8613900000000", "--body", "still waiting", (char *)NULL);
        _exit(127);
    }
    cli_exec(&r, "watch", "--interval", "100ms", "--duration", "5s", "--json", NULL);
    int status = 0;
    TQ_CHECK_EQ(waitpid(writer, &status, 0), writer);
    TQ_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    expect_json(&r, "watch (live)");
    const char *last_view = r.out;
    int views = 0;
    for (const char *p = r.out; *p != '\0'; views++) {
        last_view = p;
        p = strchr(p, '\n') + 1;
    }
    TQ_CHECK_GE(views, 2);
    TQ_CHECK_UEQ(json_get_u64(last_view, "queues.0.depth"), 1);
    cli_exec(&r, "watch", "--once", NULL);
    TQ_CHECK_EQ(r.status, 0);
    TQ_CHECK(strstr(r.out, "support") != NULL);

    /* every other subcommand once, --json validated (the tour covered the rest) */
    char queue2[32], customer[32], customer2[32], ticket2[32], message[32], token_id[32];
    cli_exec(&r, "queue", "create", "vip", "--auto-assign", "--assignment-timeout", "5m", "--json",
             NULL);
    expect_json(&r, "queue create vip");
    str_of(r.out, "queue_id", queue2, sizeof(queue2));
    cli_exec(&r, "queue", "update", queue2, "--name", "vip-desk", "--auto-assign", "false",
             "--json", NULL);
    expect_json(&r, "queue update");
    cli_exec(&r, "queue", "show", queue, "--limit", "5", "--json", NULL);
    expect_json(&r, "queue show");
    TQ_CHECK_STR_EQ(str_of(r.out, "queue.queue_id", buf, sizeof(buf)), queue);
    cli_exec(&r, "queue", "list", "--json", NULL);
    expect_json(&r, "queue list");
    TQ_CHECK_STR_EQ(str_of(r.out, "queues.1.name", buf, sizeof(buf)), "vip-desk");
    cli_exec(&r, "agent", "show", agent, "--json", NULL);
    expect_json(&r, "agent show");
    TQ_CHECK_STR_EQ(str_of(r.out, "presence", buf, sizeof(buf)), "online");
    cli_exec(&r, "customer", "lookup", "--channel", "whatsapp", "--id", "+8613800000000", "--json",
             NULL);
    expect_json(&r, "customer lookup");
    str_of(r.out, "customer_id", customer, sizeof(customer));
    cli_exec(&r, "customer", "create", "--name", "Li Wei", "--channel", "email", "--id",
             "li@example.com", "--json", NULL);
    expect_json(&r, "customer create");
    str_of(r.out, "customer_id", customer2, sizeof(customer2));
    cli_exec(&r, "customer", "link", customer2, "--channel", "sms", "--id", "+8613700000000", NULL);
    TQ_CHECK_EQ(r.status, 0);
    cli_exec(&r, "customer", "merge", customer, customer2, "--json", NULL);
    expect_json(&r, "customer merge");
    cli_exec(&r, "customer", "show", customer, "--json", NULL);
    expect_json(&r, "customer show");
    TQ_CHECK(json_get(r.out, "identities.2.external_id", buf, sizeof(buf))); /* three now */
    cli_exec(&r, "ingest", "--channel", "email", "--from", "zhang@example.com", "--subject",
             "Invoice", "--body", "Please send the invoice", "--queue", queue2, "--priority",
             "high", "--tag", "billing", "--tag", "b2b", "--external-id", "mail-1", "--json", NULL);
    expect_json(&r, "ingest email");
    str_of(r.out, "ticket_id", ticket2, sizeof(ticket2));
    cli_exec(&r, "ticket", "update", ticket2, "--status", "pending", "--tag-add", "urgent",
             "--tag-remove", "b2b", "--field", "order=12345", "--field", "gift=true", "--json",
             NULL);
    expect_json(&r, "ticket update");
    cli_exec(&r, "ticket", "show", ticket2, "--json", NULL);
    expect_json(&r, "ticket show 2");
    TQ_CHECK_STR_EQ(str_of(r.out, "status", buf, sizeof(buf)), "pending");
    TQ_CHECK_STR_EQ(str_of(r.out, "priority", buf, sizeof(buf)), "high");
    cli_exec(&r, "ticket", "transfer", ticket2, "--queue", queue, "--json", NULL);
    expect_json(&r, "ticket transfer");
    cli_exec(&r, "ticket", "update", ticket2, "--assignee", agent, "--json", NULL);
    expect_json(&r, "ticket assign");
    cli_exec(&r, "ticket", "release", ticket2, "--json", NULL);
    expect_json(&r, "ticket release");
    cli_exec(&r, "ticket", "merge", ticket2, ticket, "--json", NULL);
    expect_json(&r, "ticket merge");
    cli_exec(&r, "sla", "nearest", "--limit", "5", "--json", NULL);
    expect_json(&r, "sla nearest");
    cli_exec(&r, "outbox", "take", "--channel", "whatsapp", "--max", "10", "--lease", "30s",
             "--json", NULL);
    expect_json(&r, "outbox take");
    str_of(r.out, "messages.0.message_id", message, sizeof(message));
    cli_exec(&r, "outbox", "ack", message, "--status", "delivered", "--provider-id", "wamid.9",
             "--json", NULL);
    expect_json(&r, "outbox ack");
    cli_exec(&r, "tenant", "hours", "--tz", "Asia/Shanghai", "--day", "mon=09:00-18:00", "--day",
             "tue=09:00-18:00", "--holiday", "2026-11-11", "--json", NULL);
    expect_json(&r, "tenant hours");
    cli_exec(&r, "token", "issue", "--role", "integration", "--name", "wa-gateway", "--json", NULL);
    expect_json(&r, "token issue integration");
    str_of(r.out, "token_id", token_id, sizeof(token_id));
    cli_exec(&r, "token", "revoke", token_id, "--json", NULL);
    expect_json(&r, "token revoke");
    cli_exec(&r, "consumer", "ack", "cli", "1", "--json", NULL);
    expect_json(&r, "consumer ack");
    cli_exec(&r, "ping", "--json", NULL);
    expect_json(&r, "ping");

    /* Ctrl-C ends a durable subscriber cleanly: it acks what it printed, and the next run
     * resumes after it */
    char sig_out[300];
    snprintf(sig_out, sizeof(sig_out), "%s/sub.out", fx.dir);
    pid_t sub_pid = fork();
    TQ_CHECK(sub_pid >= 0);
    if (sub_pid == 0) {
        int o = open(sig_out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(o, STDOUT_FILENO);
        execl(tq_fixture_bin("client/cli/ticketq"), "ticketq", "subscribe", "--from-lsn", "0",
              "--consumer", "sigtest", "--ack", "--json", (char *)NULL);
        _exit(127);
    }
    /* wait (bounded) until it printed something, then a little more so it is mid-stream */
    for (int i = 0; i < 1000; i++) {
        struct stat st;
        if (stat(sig_out, &st) == 0 && st.st_size > 0) break;
        struct timespec tick = {0, 10 * 1000000L};
        nanosleep(&tick, NULL);
    }
    struct timespec pause = {0, 300 * 1000000L};
    nanosleep(&pause, NULL);
    TQ_CHECK_EQ(kill(sub_pid, SIGINT), 0);
    TQ_CHECK_EQ(waitpid(sub_pid, &status, 0), sub_pid);
    TQ_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    int fd = open(sig_out, O_RDONLY);
    TQ_CHECK(fd >= 0);
    read_fd(fd, r.out, sizeof(r.out));
    close(fd);
    unsigned long long printed_last = 0;
    for (const char *p = r.out; *p != '\0'; p = strchr(p, '\n') + 1) {
        printed_last = json_get_u64(p, "lsn");
    }
    TQ_CHECK(printed_last > 0);
    cli_exec(&r, "subscribe", "--consumer", "sigtest", "--idle", "500ms", "--json", NULL);
    expect_json_or_empty(&r, "subscribe resumed");
    for (const char *p = r.out; *p != '\0'; p = strchr(p, '\n') + 1) {
        TQ_CHECK_GT(json_get_u64(p, "lsn"), printed_last);
    }

    /* server errors: exit 1, "error: <code>: ..." */
    cli_exec(&r, "ticket", "show", "987654321", NULL);
    expect_one_line_error(&r, 1, "error: not_found: ");
    cli_exec(&r, "--token", "bogus", "ping", NULL);
    expect_one_line_error(&r, 1, "error: unauthenticated: ");
    cli_exec(&r, "--token", agent_token, "tenant", "create", "x", NULL);
    expect_one_line_error(&r, 1, "error: permission_denied: ");

    TQ_CHECK_EQ(tq_fixture_stop(&fx), 0);
    tq_fixture_cleanup(&fx);
    printf("test_cli_e2e: ok\n");
    return 0;
}
