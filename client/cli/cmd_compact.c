/* client/cli/cmd_compact.c: `ticketq compact` against a running server (online compaction).
 *
 * `ticketq compact --data DIR` is the offline tool (tq_ops_compact_main); without --data the
 * command talks to the server at --addr (global option, or given after `compact`): it sends
 * Compact, then polls CompactStatus every 200 ms, showing progress on a terminal, and prints a
 * final summary (space before/after, time, what was redacted). Exit 0 done, 1 refused or
 * failed, 2 usage.
 */
#include "cli.h"

#include "tq_assert.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *out) {
    fputs("usage: ticketq [--addr A] [--tenant T] compact [--addr A] [--retention DAYS\n"
          "                 [--archive DIR]] [--no-erase] [--no-compress] [--io-budget BYTES]\n"
          "                 [--no-wait]\n"
          "  ONLINE, through the running server (server admin token): snapshot of the live\n"
          "  state, then on a helper thread, without stopping ingest: the records of the\n"
          "  tenant's erased customers are redacted (see 'customer erase'), messages of tickets\n"
          "  closed more than DAYS ago dropped (archived first to DIR on the server), sealed\n"
          "  segments zstd-compressed. --io-budget caps the rewrite's disk I/O (bytes/s, K/M/G\n"
          "  suffixes). Progress on a terminal, then a summary. One run at a time.\n"
          "usage: ticketq compact --data DIR ...   OFFLINE (server stopped): see --data --help\n",
          out);
}

static bool parse_bytes(const char *s, uint64_t *out) {
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s) return false;
    uint64_t mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1024, end++;
    else if (*end == 'M' || *end == 'm')
        mul = 1024 * 1024, end++;
    else if (*end == 'G' || *end == 'g')
        mul = 1024ull * 1024 * 1024, end++;
    if (*end != '\0' || v > UINT64_MAX / mul) return false;
    *out = v * mul;
    return true;
}

static void print_summary(const Ticketq__CompactStatusResult *s, bool json) {
    if (json) {
        printf("{\"phase\":\"%s\",\"snapshot_lsn\":%" PRIu64 ",\"segments_total\":%u,"
               "\"segments_rewritten\":%u,\"records_redacted\":%" PRIu64
               ",\"records_erased\":%" PRIu64 ",\"records_retained_out\":%" PRIu64
               ",\"customers_erased\":%" PRIu64 ",\"snapshots_removed\":%" PRIu64
               ",\"bytes_before\":%" PRIu64 ",\"bytes_after\":%" PRIu64 ",\"io_bytes\":%" PRIu64
               ",\"elapsed_ms\":%" PRIu64 ",\"loop_stall_us\":%" PRIu64 "}\n",
               s->phase ? s->phase : "", s->snapshot_lsn, s->segments_total, s->segments_rewritten,
               s->records_redacted, s->records_erased, s->records_retained_out, s->customers_erased,
               s->snapshots_removed, s->bytes_before, s->bytes_after, s->io_bytes, s->elapsed_ms,
               s->loop_stall_us);
        return;
    }
    printf("compact: %s in %.2f s, snapshot at LSN %" PRIu64 " (loop held %.1f ms)\n",
           s->phase ? s->phase : "?", (double)s->elapsed_ms / 1000.0, s->snapshot_lsn,
           (double)s->loop_stall_us / 1000.0);
    printf("erased: %" PRIu64 " customers, %" PRIu64 " older snapshots removed\n",
           s->customers_erased, s->snapshots_removed);
    printf("redacted: %" PRIu64 " records (%" PRIu64 " erased, %" PRIu64 " past retention, %" PRIu64
           " archived)\n",
           s->records_redacted, s->records_erased, s->records_retained_out, s->records_archived);
    printf("segments: %u rewritten of %u sealed; space %" PRIu64 " -> %" PRIu64 " bytes\n",
           s->segments_rewritten, s->segments_total, s->bytes_before, s->bytes_after);
}

int cli_compact_online(struct cli *cli, int argc, char **argv) {
    Ticketq__Compact op = TICKETQ__COMPACT__INIT;
    bool wait = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return CLI_EXIT_OK;
        } else if (strcmp(a, "--addr") == 0 && has_value) {
            cli->addr = argv[++i];
        } else if (strcmp(a, "--retention") == 0 && has_value) {
            uint64_t days = 0;
            if (!parse_bytes(argv[++i], &days) || days == 0 || days > 36500) {
                return cli_usage_error("--retention: a number of days, 1..36500");
            }
            op.has_retention_days = true;
            op.retention_days = (uint32_t)days;
        } else if (strcmp(a, "--archive") == 0 && has_value) {
            op.archive_dir = argv[++i];
        } else if (strcmp(a, "--io-budget") == 0 && has_value) {
            op.has_io_bytes_per_sec = true;
            if (!parse_bytes(argv[++i], &op.io_bytes_per_sec) || op.io_bytes_per_sec == 0) {
                return cli_usage_error("--io-budget: bytes per second, e.g. 20M");
            }
        } else if (strcmp(a, "--no-erase") == 0) {
            op.has_erase = true;
            op.erase = false;
        } else if (strcmp(a, "--no-compress") == 0) {
            op.has_compress = true;
            op.compress = false;
        } else if (strcmp(a, "--no-wait") == 0) {
            wait = false;
        } else {
            usage(stderr);
            return cli_usage_error("compact: unexpected argument %s", a);
        }
    }
    if (op.archive_dir != NULL && !op.has_retention_days) {
        return cli_usage_error("--archive needs --retention");
    }
    int rc = cli_connect(cli);
    if (rc != CLI_EXIT_OK) return rc;
    struct tq_error err;
    tq_error_clear(&err);
    Ticketq__Response *resp = NULL;
    if (tq_client_compact(cli->client, &op, &resp, &err) != TQ_OK) {
        tq_client_response_free(resp);
        return cli_fail(&err);
    }
    tq_client_response_free(resp);
    bool tty = isatty(2) != 0;
    for (;;) {
        resp = NULL;
        if (tq_client_compact_status(cli->client, &resp, &err) != TQ_OK) {
            tq_client_response_free(resp);
            return cli_fail(&err);
        }
        const Ticketq__CompactStatusResult *s = resp->compact;
        TQ_ASSERT(s != NULL);
        if (!s->running || !wait) {
            if (tty) fputs("\r\033[K", stderr);
            print_summary(s, cli->json);
            int exit_code = CLI_EXIT_OK;
            if (s->error != NULL) {
                fprintf(stderr, "error: compaction failed: %s\n",
                        s->error->message ? s->error->message : "?");
                exit_code = CLI_EXIT_ERROR;
            }
            tq_client_response_free(resp);
            return exit_code;
        }
        if (tty) {
            fprintf(stderr, "\rcompact: %s, segment %u/%u, %.1f MB of I/O, %.1f s\033[K",
                    s->phase ? s->phase : "?", s->segments_done, s->segments_total,
                    (double)s->io_bytes / 1e6, (double)s->elapsed_ms / 1000.0);
        }
        tq_client_response_free(resp);
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
}
