/* server/ops/ops_main.c: `ticketq-ops TOOL ...`, the standalone face of tq_ops.
 *
 * The `ticketq` CLI dispatches replay|verify|backup|restore|compact to the same functions; this
 * binary exists so tests and operators can run the tools without the client library. It owns
 * nothing but the dispatch table: each tool parses its own options and returns its exit code.
 */
#include "ops.h"

#include <stdio.h>
#include <string.h>

struct tool {
    const char *name;
    int (*main)(int argc, char **argv);
    const char *summary;
};

static const struct tool tools[] = {
    {"verify", tq_ops_verify_main, "check every checksum and the hash chain"},
    {"replay", tq_ops_replay_main, "print the log as events; --at: state at a time or LSN"},
    {"backup", tq_ops_backup_main, "consistent, incremental backup of a data directory"},
    {"restore", tq_ops_restore_main, "restore a backup (optionally to a time or LSN)"},
    {"compact", tq_ops_compact_main, "snapshot, erase a customer's data, compress segments"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: ticketq-ops TOOL [options]   (TOOL --help for its options)\n");
    for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++) {
        fprintf(out, "  %-8s %s\n", tools[i].name, tools[i].summary);
    }
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++) {
        if (strcmp(argv[1], tools[i].name) == 0) return tools[i].main(argc - 1, argv + 1);
    }
    fprintf(stderr, "ticketq-ops: unknown tool %s\n", argv[1]);
    usage(stderr);
    return 2;
}
