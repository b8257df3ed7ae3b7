/* client/cli/cmd_stream.c: subscribe, consumer ack, watch.
 *
 * subscribe prints committed events as they arrive (one line each, or JSONL with --json) until
 * --count events or --idle without one; with --consumer and --ack it stores the consumer's
 * position (every ACK_EVERY events and when it stops), so the next run resumes after it.
 *
 * watch is a live queue/SLA view: queue depths and the tickets nearest their SLA deadline,
 * redrawn when an event arrives (and at least every --interval, since deadlines approach with
 * time alone). On a terminal it redraws in place; otherwise it prints one view after another.
 * It uses two connections: one subscription (the trigger) and one for the queries, because a
 * subscribed connection only carries blocking calls, and a view wants a consistent pair of
 * reads between events. --once prints one view and exits (scripts, tests).
 */
#include "cli.h"

#include "tq_assert.h"

#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define END                                                                                        \
    { NULL, OPT_STR, false, NULL, NULL }
/* A durable consumer acks at least this often: bounds the replay after a crash to this many. */
#define ACK_EVERY 100

static uint64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- subscribe --------------------------------------------------------------------------- */

/* SIGINT/SIGTERM end a subscribe cleanly (a durable consumer acks where it stopped). */
static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

/* Waits for the next event in slices short enough to notice a stop request; *ev_out stays
 * NULL when stopped or when idle_deadline (monotonic ms; < 0 = none) passed. */
TQ_NODISCARD static enum tq_err next_event(struct tq_subscription *sub, int64_t idle_deadline,
                                           const Ticketq__Event **ev_out, struct tq_error *err) {
    enum { SLICE_MS = 200 }; /* how late a Ctrl-C may be noticed */
    for (;;) {
        int64_t slice = SLICE_MS;
        if (idle_deadline >= 0 && idle_deadline - mono_ms() < slice) {
            slice = idle_deadline - mono_ms();
        }
        enum tq_err rc = tq_subscription_next(sub, ev_out, slice < 0 ? 0 : (int)slice, err);
        if (rc != TQ_OK || *ev_out != NULL || stop_requested) return rc;
        if (idle_deadline >= 0 && mono_ms() >= idle_deadline) return TQ_OK;
    }
}

static int ack(struct cli *cli, const char *consumer, uint64_t lsn) {
    struct tq_error err;
    tq_error_clear(&err);
    if (tq_client_consumer_ack(cli->client, consumer, lsn, &err) != TQ_OK) return cli_fail(&err);
    return CLI_EXIT_OK;
}

static int run_subscribe(struct cli *cli) {
    const struct cli_val *types = cli_opt(cli, "--type");
    Ticketq__EventType type_values[CLI_LIST_MAX];
    for (size_t i = 0; i < types->list_count; i++) {
        int v = 0;
        bool ok = tq_client_enum_parse(&ticketq__event_type__descriptor, types->list[i], &v);
        TQ_ASSERT(ok); /* checked by the parser */
        type_values[i] = (Ticketq__EventType)v;
    }
    const char *consumer = cli_str(cli, "--consumer");
    bool do_ack = cli_has(cli, "--ack");
    if (do_ack && consumer == NULL) return cli_usage_error("--ack needs --consumer");
    if (cli_has(cli, "--live") && cli_has(cli, "--from-lsn")) {
        return cli_usage_error("--live and --from-lsn exclude each other");
    }
    struct tq_subscribe_options o = {
        .from_lsn = cli_u64(cli, "--from-lsn"),
        .from_now = cli_has(cli, "--live"),
        .consumer = consumer,
        .types = type_values,
        .type_count = types->list_count,
        .ticket_id = cli_u64(cli, "--ticket"),
        .queue_id = cli_u64(cli, "--queue"),
    };
    uint64_t count_max = cli_has(cli, "--count") ? cli_u64(cli, "--count") : UINT64_MAX;
    int64_t idle_ms = -1;
    if (cli_has(cli, "--idle")) {
        uint64_t v = cli_u64(cli, "--idle");
        idle_ms = v > 86400000 ? 86400000 : (int64_t)v;
    }
    int rc = cli_connect(cli); /* only now: usage errors never touch the network */
    if (rc != CLI_EXIT_OK) return rc;
    struct tq_error err;
    tq_error_clear(&err);
    struct tq_subscription *sub = NULL;
    if (tq_client_subscribe(cli->client, &o, &sub, &err) != TQ_OK) return cli_fail(&err);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal; /* no SA_RESTART needed: waits are sliced */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    uint64_t seen = 0, acked_lsn = 0;
    while (seen < count_max && !stop_requested) {
        const Ticketq__Event *ev = NULL;
        int64_t idle_deadline = idle_ms < 0 ? -1 : mono_ms() + idle_ms;
        if (next_event(sub, idle_deadline, &ev, &err) != TQ_OK) {
            rc = cli_fail(&err);
            break;
        }
        if (ev == NULL) break; /* --idle passed without an event, or stopped */
        cli_print_event(cli, ev);
        seen++;
        if (do_ack && seen % ACK_EVERY == 0) {
            rc = ack(cli, consumer, ev->lsn);
            if (rc != CLI_EXIT_OK) break;
            acked_lsn = ev->lsn;
        }
    }
    uint64_t last = tq_subscription_lsn(sub);
    if (rc == CLI_EXIT_OK && do_ack && last > acked_lsn && seen > 0) rc = ack(cli, consumer, last);
    struct tq_error close_err;
    tq_error_clear(&close_err);
    if (tq_subscription_close(sub, &close_err) != TQ_OK && rc == CLI_EXIT_OK) {
        rc = cli_fail(&close_err);
    }
    return rc;
}

static int run_consumer_ack(struct cli *cli) {
    Ticketq__ConsumerAck op = TICKETQ__CONSUMER_ACK__INIT;
    op.consumer = mut(cli_str(cli, "CONSUMER"));
    op.lsn = cli_u64(cli, "LSN");
    REQ(req, consumer_ack, CONSUMER_ACK, &op);
    return cli_call_print(cli, &req);
}

/* ---- watch ------------------------------------------------------------------------------- */

/* "in 12m" / "5m ago" for a deadline relative to now. */
static void relative(uint64_t deadline_ms, uint64_t now, char *buf, size_t cap) {
    uint64_t d = deadline_ms > now ? deadline_ms - now : now - deadline_ms;
    const char *unit = "s";
    uint64_t v = d / 1000;
    if (v >= 2u * 86400u) {
        v /= 86400;
        unit = "d";
    } else if (v >= 2u * 3600u) {
        v /= 3600;
        unit = "h";
    } else if (v >= 120) {
        v /= 60;
        unit = "m";
    }
    if (deadline_ms > now) {
        snprintf(buf, cap, "in %" PRIu64 "%s", v, unit);
    } else {
        snprintf(buf, cap, "BREACHED %" PRIu64 "%s ago", v, unit);
    }
}

/* Fetches and prints one view. */
static int watch_view(struct cli *cli, uint32_t limit, bool redraw) {
    struct tq_error err;
    tq_error_clear(&err);
    Ticketq__Response *queues = NULL, *due = NULL;
    if (tq_client_queues_get(cli->client, &queues, &err) != TQ_OK ||
        tq_client_sla_nearest(cli->client, limit, &due, &err) != TQ_OK) {
        tq_client_response_free(queues);
        return cli_fail(&err);
    }
    uint64_t now = wall_ms();
    char buf[64], rel[48];
    if (cli->json) {
        struct json j;
        json_init(&j, stdout);
        json_object_begin(&j);
        json_key(&j, "at_ms");
        json_u64(&j, now);
        json_key(&j, "queues");
        json_array_begin(&j);
        for (size_t i = 0; queues->queues != NULL && i < queues->queues->n_queues; i++) {
            cli_json_message(&j, &queues->queues->queues[i]->base);
        }
        json_array_end(&j);
        json_key(&j, "sla_nearest");
        json_array_begin(&j);
        for (size_t i = 0; due->sla_nearest != NULL && i < due->sla_nearest->n_due; i++) {
            cli_json_message(&j, &due->sla_nearest->due[i]->base);
        }
        json_array_end(&j);
        json_object_end(&j);
        json_end_line(&j);
    } else {
        if (redraw) fputs("\033[H\033[2J", stdout);
        printf("ticketq watch  %s\n\n", cli_iso8601(now, buf, sizeof(buf)));
        printf("%-8s %-24s %7s  %s\n", "QUEUE", "NAME", "WAITING", "OLDEST");
        for (size_t i = 0; queues->queues != NULL && i < queues->queues->n_queues; i++) {
            const Ticketq__Queue *q = queues->queues->queues[i];
            const char *oldest = "-";
            if (q->has_oldest_enqueued_ms && q->oldest_enqueued_ms != 0) {
                oldest = cli_iso8601(q->oldest_enqueued_ms, buf, sizeof(buf));
            }
            printf("%-8" PRIu64 " %-24s %7u  %s\n", q->queue_id, q->name != NULL ? q->name : "",
                   q->has_depth ? q->depth : 0, oldest);
        }
        printf("\n%-8s %-16s %-26s %s\n", "TICKET", "SLA", "DEADLINE", "");
        for (size_t i = 0; due->sla_nearest != NULL && i < due->sla_nearest->n_due; i++) {
            const Ticketq__SlaDue *d = due->sla_nearest->due[i];
            char metric[32];
            relative(d->deadline_ms, now, rel, sizeof(rel));
            printf("%-8" PRIu64 " %-16s %-26s %s\n", d->ticket_id,
                   tq_client_enum_name(&ticketq__sla_metric__descriptor, d->metric, metric,
                                       sizeof(metric)),
                   cli_iso8601(d->deadline_ms, buf, sizeof(buf)), rel);
        }
        if (!redraw) putchar('\n');
    }
    fflush(stdout);
    tq_client_response_free(queues);
    tq_client_response_free(due);
    return CLI_EXIT_OK;
}

static int run_watch(struct cli *cli) {
    int rc = cli_connect(cli);
    if (rc != CLI_EXIT_OK) return rc;
    uint64_t limit64 = cli_has(cli, "--limit") ? cli_u64(cli, "--limit") : 10;
    uint32_t limit = limit64 > 1000 ? 1000 : (uint32_t)limit64;
    bool redraw = !cli->json && isatty(STDOUT_FILENO);
    rc = watch_view(cli, limit, redraw);
    if (rc != CLI_EXIT_OK || cli_has(cli, "--once")) return rc;
    uint64_t interval = cli_has(cli, "--interval") ? cli_u64(cli, "--interval") : 1000;
    if (interval == 0 || interval > 3600000) interval = 1000;
    int64_t stop_at =
        cli_has(cli, "--duration") ? mono_ms() + (int64_t)cli_u64(cli, "--duration") : -1;

    /* The trigger stream starts at the current end of the log: no catch-up replay. */
    struct tq_error err;
    tq_error_clear(&err);
    struct tq_client *stream = NULL;
    rc = cli_connect_extra(cli, &stream);
    if (rc != CLI_EXIT_OK) return rc;
    struct tq_subscribe_options o = {.from_now = true};
    struct tq_subscription *sub = NULL;
    if (tq_client_subscribe(stream, &o, &sub, &err) != TQ_OK) {
        tq_client_close(stream);
        return cli_fail(&err);
    }
    int64_t next_draw = mono_ms() + (int64_t)interval;
    bool dirty = false;
    while (stop_at < 0 || mono_ms() < stop_at) {
        int64_t wait = next_draw - mono_ms();
        if (wait < 0) wait = 0;
        if (stop_at >= 0 && stop_at - mono_ms() < wait) wait = stop_at - mono_ms();
        const Ticketq__Event *ev = NULL;
        if (tq_subscription_next(sub, &ev, (int)(wait < 0 ? 0 : wait), &err) != TQ_OK) {
            rc = cli_fail(&err);
            break;
        }
        if (ev != NULL) {
            dirty = true; /* drain a burst of events before redrawing, up to the interval */
            continue;
        }
        if (mono_ms() >= next_draw) {
            /* Redraw on events, and on a terminal also for the moving deadlines. */
            if (dirty || redraw) {
                rc = watch_view(cli, limit, redraw);
                if (rc != CLI_EXIT_OK) break;
            }
            dirty = false;
            next_draw = mono_ms() + (int64_t)interval;
        }
    }
    tq_client_close(stream); /* frees the subscription with the connection */
    return rc;
}

/* ---- table ------------------------------------------------------------------------------- */

static const struct cli_opt subscribe_opts[] = {
    {"--from-lsn", OPT_U64, false, "events of records after this LSN (default 0: all)", NULL},
    {"--live", OPT_FLAG, false, "only events from now on (no catch-up)", NULL},
    {"--consumer", OPT_STR, false, "durable consumer name: resume after its last ack", NULL},
    {"--ack", OPT_FLAG, false, "store the consumer's position as events are printed", NULL},
    {"--type", OPT_LIST, false, "only this event type", &ticketq__event_type__descriptor},
    {"--ticket", OPT_U64, false, "only events of this ticket", NULL},
    {"--queue", OPT_U64, false, "only events of this queue", NULL},
    {"--count", OPT_U64, false, "stop after this many events", NULL},
    {"--idle", OPT_MS, false, "stop after this long without an event (also: Ctrl-C)", NULL},
    END,
};
static const struct cli_opt consumer_ack_opts[] = {
    {"CONSUMER", OPT_STR, true, "durable consumer name", NULL},
    {"LSN", OPT_U64, true, "events up to this LSN are done", NULL},
    END,
};
static const struct cli_opt watch_opts[] = {
    {"--once", OPT_FLAG, false, "print one view and exit", NULL},
    {"--interval", OPT_MS, false, "redraw at most this often (default 1s)", NULL},
    {"--limit", OPT_U64, false, "SLA rows (default 10)", NULL},
    {"--duration", OPT_MS, false, "stop after this long", NULL},
    END,
};

const struct cli_cmd cli_cmds_stream[] = {
    {"subscribe", "print committed events (lines, or JSONL with --json)", subscribe_opts,
     run_subscribe},
    {"consumer ack", "store a durable consumer's position", consumer_ack_opts, run_consumer_ack},
    {"watch", "live view of queue depths and the nearest SLA deadlines", watch_opts, run_watch},
    {NULL, NULL, NULL, NULL},
};
