/* tests/ops/test_cli_ops.c: the operator tools through the `ticketq` CLI.
 *
 * Goal: `ticketq verify|replay|backup|restore` reach tq_ops from the one binary operators use.
 * Method: a real ticketqd on a temp dir takes a tenant, a queue and two ingests through the CLI;
 * the server is stopped; then the CLI's operator subcommands run on its data directory and on a
 * backup of it. Checks: verify exits 0 and prints the LSN range and a chain head; replay's JSONL
 * names both ingests' events; backup + restore + verify of the restored dir print the same chain
 * head; verify of a damaged copy exits 1 naming the segment file; unknown options exit 2.
 */
#include "tq_err.h"
#include "tq_fixture.h"
#include "tq_test.h"

#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

static struct tq_fixture fx;

/* Runs a shell command line, captures up to cap-1 bytes of stdout, returns the exit status. */
static int run(char *out, size_t cap, const char *fmt, ...) TQ_PRINTF(3, 4);
static int run(char *out, size_t cap, const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    TQ_CHECK(p != NULL);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void line_value(const char *text, const char *key, char *value, size_t cap) {
    const char *p = strstr(text, key);
    TQ_CHECK(p != NULL);
    p += strlen(key);
    size_t i = 0;
    while (p[i] != '\0' && p[i] != '\n' && i + 1 < cap) {
        value[i] = p[i];
        i++;
    }
    value[i] = '\0';
}

int main(void) {
    tq_test_seed("test_cli_ops");
    char cli[1024];
    snprintf(cli, sizeof(cli), "%s", tq_fixture_bin("client/cli/ticketq")); /* static buffer */
    if (access(cli, X_OK) != 0 || access(tq_fixture_bin("server/ticketqd"), X_OK) != 0) {
        fprintf(stderr, "ticketq or ticketqd not built\n");
        return 1;
    }
    TQ_CHECK_EQ(tq_fixture_start(&fx), 0);
    static char out[1 << 16];
    const char *tok = "--token-file";
    char token_file[400];
    snprintf(token_file, sizeof(token_file), "%s/admin.token", fx.dir);
    TQ_CHECK_EQ(run(out, sizeof(out), "%s --addr %s %s %s tenant create Acme", cli, fx.addr, tok,
                    token_file),
                0);
    TQ_CHECK_EQ(run(out, sizeof(out), "%s --addr %s %s %s --tenant 1 queue create support", cli,
                    fx.addr, tok, token_file),
                0);
    for (int i = 0; i < 2; i++) {
        TQ_CHECK_EQ(run(out, sizeof(out),
                        "%s --addr %s %s %s --tenant 1 ingest --channel whatsapp --from +86138%d "
                        "--queue 1 --body 'parcel question %d'",
                        cli, fx.addr, tok, token_file, i, i),
                    0);
    }
    /* Message views are completed from their records: the commit time is there (not 0). */
    TQ_CHECK_EQ(run(out, sizeof(out), "%s --addr %s %s %s --tenant 1 --json ticket show 1", cli,
                    fx.addr, tok, token_file),
                0);
    const char *msgs = strstr(out, "\"messages\":[");
    TQ_CHECK(msgs != NULL);
    const char *created = strstr(msgs, "\"created_ms\":");
    TQ_CHECK(created != NULL);
    TQ_CHECK_GT(strtoull(created + strlen("\"created_ms\":"), NULL, 10), 1700000000000ull);
    TQ_CHECK_EQ(tq_fixture_stop(&fx), 0);

    TQ_CHECK_EQ(run(out, sizeof(out), "%s verify --data %s", cli, fx.dir), 0);
    TQ_CHECK(strstr(out, "verify: ok") != NULL);
    TQ_CHECK(strstr(out, "message_ingest=2") != NULL);
    char head[64];
    line_value(out, "chain head: ", head, sizeof(head));
    TQ_CHECK_GE(strlen(head), 8);

    TQ_CHECK_EQ(run(out, sizeof(out), "%s replay --data %s --jsonl", cli, fx.dir), 0);
    int tickets_created = 0;
    for (const char *p = out; (p = strstr(p, "ticket_created")) != NULL; p++)
        tickets_created++;
    TQ_CHECK_EQ(tickets_created, 2);

    char backup[400], restored[400], damaged[400];
    snprintf(backup, sizeof(backup), "%s-backup", fx.dir);
    snprintf(restored, sizeof(restored), "%s-restored", fx.dir);
    snprintf(damaged, sizeof(damaged), "%s-damaged", fx.dir);
    TQ_CHECK_EQ(run(out, sizeof(out), "%s backup --data %s %s", cli, fx.dir, backup), 0);
    TQ_CHECK_EQ(run(out, sizeof(out), "%s restore %s --data %s", cli, backup, restored), 0);
    TQ_CHECK_EQ(run(out, sizeof(out), "%s verify --data %s", cli, restored), 0);
    char head2[64];
    line_value(out, "chain head: ", head2, sizeof(head2));
    TQ_CHECK_STR_EQ(head2, head);

    /* Flip one byte in the middle of the first batch's payload of a copy. */
    TQ_CHECK_EQ(run(out, sizeof(out), "cp -r %s %s && ls %s/log/*.seg | head -n 1", fx.dir, damaged,
                    damaged),
                0);
    char seg[512];
    line_value(out, "", seg, sizeof(seg));
    FILE *fp = fopen(seg, "r+b");
    TQ_CHECK(fp != NULL);
    TQ_CHECK_EQ(fseek(fp, 100, SEEK_SET), 0);
    int c = fgetc(fp);
    TQ_CHECK_EQ(fseek(fp, 100, SEEK_SET), 0);
    fputc(c ^ 0x40, fp);
    fclose(fp);
    TQ_CHECK_EQ(run(out, sizeof(out), "%s verify --data %s 2>&1", cli, damaged), 1);
    const char *base = strrchr(seg, '/');
    TQ_CHECK(strstr(out, base + 1) != NULL);

    TQ_CHECK_EQ(run(out, sizeof(out), "%s verify --no-such-option 2>&1", cli), 2);

    TQ_CHECK_EQ(run(out, sizeof(out), "rm -rf %s %s %s", backup, restored, damaged), 0);
    tq_fixture_cleanup(&fx);
    printf("test_cli_ops: ok\n");
    return 0;
}
