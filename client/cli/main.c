/* client/cli/main.c: `ticketq`, the command-line tool: global options, dispatch, connection.
 *
 * The dispatch table is the list of per-file command tables below (COMMAND_TABLES): a
 * subcommand is found by its words ("ticket claim", then "ping"), its options are parsed by
 * args.c from its declaration, then it runs with a lazily connected client (commands that fail
 * on their arguments never touch the network). Operator subcommands of a later issue (replay,
 * verify, compact, backup, restore) are tq_ops's own argv entry points (OPS_TOOLS below).
 *
 * Exit codes: 0 success, 1 the server or the connection refused (message "error: <code>:
 * <text>"), 2 a usage error (one line naming the problem).
 */
#include "cli.h"

#include "ops.h"
#include "tq_assert.h"

#include <stdlib.h>
#include <string.h>

static const struct cli_cmd *const COMMAND_TABLES[] = {
    cli_cmds_admin,
    cli_cmds_entities,
    cli_cmds_ticket,
    cli_cmds_stream,
};

/* The operator and auditor tools work offline on a data (or backup) directory, not through a
 * connection: they are tq_ops's argv entry points (server/ops/ops.h), parsing their own options. */
static const struct {
    const char *name;
    const char *summary;
    int (*main)(int argc, char **argv);
} OPS_TOOLS[] = {
    {"replay", "print the log as audit events, or the state at a time/LSN (--at)",
     tq_ops_replay_main},
    {"verify", "check every checksum and the hash chain; print the chain head", tq_ops_verify_main},
    {"backup", "consistent, incremental backup of a (live) data directory", tq_ops_backup_main},
    {"restore", "restore a backup, optionally to a time or LSN", tq_ops_restore_main},
    {"compact", "snapshot, erase, retention, compression (online without --data)",
     tq_ops_compact_main},
};

int cli_fail(const struct tq_error *err) {
    fprintf(stderr, "error: %s: %s\n", tq_err_name(err->code), err->msg);
    return CLI_EXIT_ERROR;
}

static struct tq_client_options client_options(const struct cli *cli) {
    struct tq_client_options o;
    memset(&o, 0, sizeof(o));
    o.addr = cli->addr;
    o.token = cli->token;
    o.io_timeout_ms = cli->timeout_ms;
    return o;
}

int cli_connect(struct cli *cli) {
    if (cli->client != NULL) return CLI_EXIT_OK;
    return cli_connect_extra(cli, &cli->client);
}

int cli_connect_extra(struct cli *cli, struct tq_client **client_out) {
    struct tq_client_options o = client_options(cli);
    struct tq_error err;
    tq_error_clear(&err);
    enum tq_err rc = tq_client_connect(&o, client_out, &err);
    if (rc != TQ_OK) return cli_fail(&err);
    tq_client_set_tenant(*client_out, cli->tenant_id);
    return CLI_EXIT_OK;
}

int cli_call_print(struct cli *cli, Ticketq__Request *req) {
    int rc = cli_connect(cli);
    if (rc != CLI_EXIT_OK) return rc;
    struct tq_error err;
    tq_error_clear(&err);
    Ticketq__Response *resp = NULL;
    enum tq_err e = tq_client_call(cli->client, req, &resp, &err);
    if (e != TQ_OK) {
        tq_client_response_free(resp);
        return cli_fail(&err);
    }
    cli_print_response(cli, resp);
    tq_client_response_free(resp);
    return CLI_EXIT_OK;
}

static void print_help(FILE *out) {
    fputs("usage: ticketq [global options] SUBCOMMAND [options]\n\n"
          "ticketq drives a ticketqd server: tenants, tokens, queues, agents, customers,\n"
          "tickets and their messages, SLA clocks, the outbox and live events.\n\n"
          "global options:\n"
          "  --addr HOST:PORT|unix:PATH  server (env TICKETQ_ADDR; default 127.0.0.1:7070)\n"
          "  --token T                   token (env TICKETQ_TOKEN)\n"
          "  --token-file F              read the token from the first line of F\n"
          "  --tenant ID                 act on tenant ID (server admin tokens)\n"
          "  --json                      print JSON (one document per line) for scripts\n"
          "  --timeout-ms N              per-request timeout (0 = none; default 30000)\n\n"
          "subcommands:\n",
          out);
    for (size_t t = 0; t < TQ_ARRAY_COUNT(COMMAND_TABLES); t++) {
        for (const struct cli_cmd *c = COMMAND_TABLES[t]; c->words != NULL; c++) {
            fprintf(out, "  %-22s %s\n", c->words, c->summary);
        }
    }
    fputs("\noperator tools (offline, on --data DIR; see docs/operations.md):\n", out);
    for (size_t i = 0; i < TQ_ARRAY_COUNT(OPS_TOOLS); i++) {
        fprintf(out, "  %-22s %s\n", OPS_TOOLS[i].name, OPS_TOOLS[i].summary);
    }
    fputs("\n'ticketq SUBCOMMAND --help' describes a subcommand's options.\n", out);
}

/* Finds the subcommand named by the words at argv[0..]; sets *used to how many it took. */
static const struct cli_cmd *find_command(int argc, char **argv, int *used) {
    char two[128];
    if (argc >= 2) {
        snprintf(two, sizeof(two), "%s %s", argv[0], argv[1]);
        for (size_t t = 0; t < TQ_ARRAY_COUNT(COMMAND_TABLES); t++) {
            for (const struct cli_cmd *c = COMMAND_TABLES[t]; c->words != NULL; c++) {
                if (strcmp(c->words, two) == 0) {
                    *used = 2;
                    return c;
                }
            }
        }
    }
    for (size_t t = 0; t < TQ_ARRAY_COUNT(COMMAND_TABLES); t++) {
        for (const struct cli_cmd *c = COMMAND_TABLES[t]; c->words != NULL; c++) {
            if (strcmp(c->words, argv[0]) == 0) {
                *used = 1;
                return c;
            }
        }
    }
    return NULL;
}

/* Lists the subcommands of group on out (NULL: only tell whether group is a group). */
static bool print_group(const char *group, FILE *out) {
    size_t n = strlen(group);
    bool found = false;
    for (size_t t = 0; t < TQ_ARRAY_COUNT(COMMAND_TABLES); t++) {
        for (const struct cli_cmd *c = COMMAND_TABLES[t]; c->words != NULL; c++) {
            if (strncmp(c->words, group, n) == 0 && c->words[n] == ' ') {
                if (out != NULL && !found) fprintf(out, "subcommands of '%s':\n", group);
                if (out != NULL) fprintf(out, "  %-22s %s\n", c->words, c->summary);
                found = true;
            }
        }
    }
    return found;
}

int main(int argc, char **argv) {
    static struct cli cli; /* static: large, and zero-initialised */
    cli.addr = getenv("TICKETQ_ADDR");
    if (cli.addr == NULL || cli.addr[0] == '\0') cli.addr = TQ_CLIENT_ADDR_DEFAULT;
    cli.token = getenv("TICKETQ_TOKEN");
    if (cli.token != NULL && cli.token[0] == '\0') cli.token = NULL;
    int first = cli_parse_globals(&cli, argc, argv);
    if (first == -1) {
        print_help(stdout);
        return CLI_EXIT_OK;
    }
    if (first < 0) return -first - 1;
    if (first >= argc) {
        print_help(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[first], "help") == 0) {
        print_help(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[first], "compact") == 0) {
        /* Offline with --data DIR; otherwise online through the server. */
        bool offline = false;
        for (int i = first + 1; i < argc; i++)
            offline |= strcmp(argv[i], "--data") == 0;
        if (!offline) {
            int rc = cli_compact_online(&cli, argc - first, argv + first);
            tq_client_close(cli.client);
            fflush(stdout);
            return rc;
        }
    }
    for (size_t i = 0; i < TQ_ARRAY_COUNT(OPS_TOOLS); i++) {
        if (strcmp(argv[first], OPS_TOOLS[i].name) == 0) {
            int rc = OPS_TOOLS[i].main(argc - first, argv + first);
            fflush(stdout);
            return rc;
        }
    }
    int used = 0;
    const struct cli_cmd *cmd = find_command(argc - first, argv + first, &used);
    if (cmd == NULL) {
        /* "ticketq ticket" or "ticketq ticket --help": list the group; else one line. */
        bool alone = first + 1 == argc;
        bool want_help = first + 1 < argc && strcmp(argv[first + 1], "--help") == 0;
        if ((alone || want_help) && print_group(argv[first], want_help ? stdout : stderr)) {
            return want_help ? CLI_EXIT_OK : CLI_EXIT_USAGE;
        }
        if (!alone && print_group(argv[first], NULL)) {
            return cli_usage_error("unknown subcommand '%s %s'", argv[first], argv[first + 1]);
        }
        return cli_usage_error("unknown subcommand '%s'", argv[first]);
    }
    int rc = cli_parse(&cli, cmd, argc - first - used, argv + first + used);
    if (rc >= 0) return rc;
    rc = cmd->run(&cli);
    tq_client_close(cli.client);
    fflush(stdout);
    return rc;
}
