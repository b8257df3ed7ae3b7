/* bench/bench_main.c: ticketq-bench, the load generator operators run against a support backend.
 *
 * Owns: option parsing, the choice of system (ticketq over libticketq, peer_ticketq.c; or the
 * Redis peer), the initial load (optional for Redis; always for ticketq, which loads a fresh
 * tenant every run), one driver run (openloop.c), the report (text or one JSON object), the
 * progress line, and the peak scenario's CSV and gnuplot PNG. For ticketq the report ends with
 * the server's ticket and message counts (Stats), which bench/peers/run-peers.sh divides the
 * server's resident memory by.
 *
 * Fan-out: K subscriber threads follow the ingested messages while the driver runs the ingest
 * workload on its own thread; the driver never waits for them. ticketq: each thread has its own
 * libticketq client (a client belongs to one thread) subscribed to the tenant's MESSAGE_ADDED
 * events from the load's last LSN. Redis: each thread has its own connection doing XREAD BLOCK
 * on the stream the ingest script appends every message id to (peer_redis.h says why a stream
 * and not PUBLISH). The system's send_op is wrapped to note each op's intended send time, the
 * peer's ack hook notes (message id, ack time) per acknowledged ingest; both are touched only by
 * the driver's thread. Subscribers only append (message id, receive time) to their own arrays;
 * after the run (threads joined) events are matched to ingests by message id, so no structure is
 * shared between threads except the stop flag, the expected count and the drain deadline (atomics).
 *
 * Server figures (ticketq only, opt-in): with --server-pid the bench reads the server's VmRSS
 * (/proc/PID/status, so the server runs on this machine) before the load, after it and after
 * the run: the load adds tickets with one message each (RSS per ticket), the run adds messages
 * mostly to existing tickets (RSS per message, net of the run's new tickets at the load's per
 * ticket figure). With --restart-cmd CMD the bench runs CMD after the run (e.g. a kill -9 and
 * a start of ticketqd on the same directory) and times it until a fresh connection's Stats is
 * answered: the restart time for the data the run produced.
 *
 * Invariants: every figure printed comes from the run's histograms and counters, never from a
 * constant; a run with failed operations or an empty queue still prints its figures but exits 1,
 * so scripts cannot mistake it for a valid run (fan-out: also when a subscriber missed, doubled
 * or invented an event). An unavailable system exits 3.
 */
#include "openloop.h"
#include "peer_redis.h"
#include "peer_ticketq.h"
#include "workload.h"

#include "tq_alloc.h"
#include "tq_assert.h"

#include "ticketq.h"

#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXIT_RUN_INVALID       1
#define EXIT_USAGE             2
#define EXIT_UNAVAILABLE       3
#define REDIS_PORT_DEFAULT     6379
#define TOKEN_BYTES_MAX        4096
#define PEAK_BASE_RATE_DEFAULT 500.0

enum system_kind { SYSTEM_REDIS, SYSTEM_TICKETQ };

struct bench_args {
    enum system_kind system;
    enum tq_workload_kind workload;
    double duration_s;
    uint32_t clients;
    uint32_t pipeline;
    uint32_t batch;
    double rate;
    uint64_t seed;
    uint64_t customers;
    uint64_t backlog;
    const char *addr;
    char *token; /* owned (from --token, --token-file or TICKETQ_TOKEN) */
    bool json;
    bool load;
    bool load_only;
    uint32_t subscribers;
    struct tq_peak_schedule peak;
    const char *csv_path;
    const char *plot_path;
    enum tq_driver_wait wait; /* --wait */
    uint64_t tick_us;         /* --tick-us: 0 = none */
    long server_pid;          /* --server-pid: 0 = none */
    const char *restart_cmd;  /* --restart-cmd: NULL = none */
};

/* --server-pid / --restart-cmd figures (see the header comment). */
struct server_figures {
    uint64_t rss_kib[3]; /* before the load, after the load, after the run */
    struct tq_ticketq_counts load, run;
    bool have_rss;
    double restart_ms; /* < 0: not measured */
};

static struct server_figures server_figs = {.restart_ms = -1.0};

struct peak_row {
    struct tq_driver_second second;
    struct tq_bench_stats stats;
    bool have_stats;
};

struct run_ctx {
    const struct bench_args *args;
    struct tq_bench_system *system;
    bool progress;
    struct peak_row *rows;
    uint32_t row_count, row_cap;
};

static void usage(FILE *out) {
    fputs(
        "usage: ticketq-bench [options]\n"
        "  --system redis|ticketq      system under test (default ticketq; redis = the peer)\n"
        "  --workload NAME             ingest | claim-reply | mixed | dashboard | fanout | peak\n"
        "                              (default mixed)\n"
        "  --duration SECONDS          measured window (default 10; peak: the schedule's length)\n"
        "  --clients N                 connections (default 16)\n"
        "  --pipeline N                operations in flight per connection (default 1)\n"
        "  --batch N                   ingests per request (ticketq: one Batch; needs\n"
        "                              --pipeline >= N, the batch is filled from the ops in "
        "flight)\n"
        "  --rate OPS                  open loop at OPS/s over all connections (default 0 =\n"
        "                              closed loop); peak: the base rate (default 500)\n"
        "  --seed N                    workload seed (default 42)\n"
        "  --customers N --backlog N   initial state size (default 100000 / 1500000)\n"
        "  --load                      redis: (re)load the initial state before the run;\n"
        "                              ticketq loads a fresh tenant before every run\n"
        "  --load-only                 load the initial state and exit\n"
        "  --addr HOST:PORT|unix:PATH  server address (env TICKETQ_ADDR; default\n"
        "                              127.0.0.1:7070, redis 127.0.0.1:6379)\n"
        "  --token T | --token-file F  credential (env TICKETQ_TOKEN; redis: AUTH password)\n"
        "  --subscribers K             fanout: event-stream subscribers (default 4; each follows\n"
        "                              MESSAGE_ADDED events, redis: XREAD on a stream; lag per\n"
        "                              subscriber and overall)\n"
        "  --peak-warmup S --peak-ramp S --peak-spike S   peak schedule (default 10/5/20 s)\n"
        "  --csv PATH --plot PATH      peak outputs (default peak.csv / peak.png)\n"
        "  --server-pid PID            ticketq on this machine: report its RSS per ticket (the\n"
        "                              load) and per message (the run), from /proc/PID/status\n"
        "  --restart-cmd CMD           ticketq: after the run, run CMD (sh -c; e.g. kill -9 and\n"
        "                              start ticketqd again) and time it until Stats answers\n"
        "  --wait epoll|ppoll          how the driver waits for its connections (default epoll;\n"
        "                              ppoll = the driver before 2026-12-03 afternoon, for A/B)\n"
        "  --tick-us T                 open loop: wake at most every T us (default 0 = at every\n"
        "                              intended time and answer; max 100000); latency still\n"
        "                              counts from the intended time, the tick's delay included\n"
        "  --json                      print one JSON object instead of the text report\n"
        "  --help\n"
        "Exit: 0 valid run, 1 run had errors (figures still printed), 2 usage, 3 unavailable.\n",
        out);
}

static bool parse_u64(const char *s, uint64_t *out) {
    char *end = NULL;
    if (s == NULL || *s == '\0' || *s == '-') return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0') return false;
    *out = v;
    return true;
}

static bool parse_double(const char *s, double *out) {
    char *end = NULL;
    if (s == NULL || *s == '\0') return false;
    double v = strtod(s, &end);
    if (*end != '\0' || v < 0.0) return false;
    *out = v;
    return true;
}

static char *read_token_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (f == NULL) return NULL;
    char buf[TOKEN_BYTES_MAX];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ')) {
        buf[--n] = '\0';
    }
    return tq_strdup(buf);
}

static void set_token(struct bench_args *a, char *token) {
    if (a->token != NULL) tq_free(a->token, strlen(a->token) + 1);
    a->token = token;
}

enum long_only {
    OPT_SEED = 1000,
    OPT_CUSTOMERS,
    OPT_BACKLOG,
    OPT_LOAD,
    OPT_LOAD_ONLY,
    OPT_TOKEN_FILE,
    OPT_SUBSCRIBERS,
    OPT_PEAK_WARMUP,
    OPT_PEAK_RAMP,
    OPT_PEAK_SPIKE,
    OPT_CSV,
    OPT_PLOT,
    OPT_JSON,
    OPT_HELP,
    OPT_SYSTEM,
    OPT_WORKLOAD,
    OPT_DURATION,
    OPT_CLIENTS,
    OPT_PIPELINE,
    OPT_BATCH,
    OPT_RATE,
    OPT_ADDR,
    OPT_TOKEN,
    OPT_SERVER_PID,
    OPT_RESTART_CMD,
    OPT_WAIT,
    OPT_TICK_US,
};

/* Returns -1 to go on, or an exit code. */
static int parse_args(int argc, char **argv, struct bench_args *a) {
    static const struct option longopts[] = {
        {"system", required_argument, NULL, OPT_SYSTEM},
        {"workload", required_argument, NULL, OPT_WORKLOAD},
        {"duration", required_argument, NULL, OPT_DURATION},
        {"clients", required_argument, NULL, OPT_CLIENTS},
        {"pipeline", required_argument, NULL, OPT_PIPELINE},
        {"batch", required_argument, NULL, OPT_BATCH},
        {"rate", required_argument, NULL, OPT_RATE},
        {"seed", required_argument, NULL, OPT_SEED},
        {"customers", required_argument, NULL, OPT_CUSTOMERS},
        {"backlog", required_argument, NULL, OPT_BACKLOG},
        {"load", no_argument, NULL, OPT_LOAD},
        {"load-only", no_argument, NULL, OPT_LOAD_ONLY},
        {"addr", required_argument, NULL, OPT_ADDR},
        {"token", required_argument, NULL, OPT_TOKEN},
        {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
        {"subscribers", required_argument, NULL, OPT_SUBSCRIBERS},
        {"peak-warmup", required_argument, NULL, OPT_PEAK_WARMUP},
        {"peak-ramp", required_argument, NULL, OPT_PEAK_RAMP},
        {"peak-spike", required_argument, NULL, OPT_PEAK_SPIKE},
        {"csv", required_argument, NULL, OPT_CSV},
        {"plot", required_argument, NULL, OPT_PLOT},
        {"json", no_argument, NULL, OPT_JSON},
        {"server-pid", required_argument, NULL, OPT_SERVER_PID},
        {"restart-cmd", required_argument, NULL, OPT_RESTART_CMD},
        {"wait", required_argument, NULL, OPT_WAIT},
        {"tick-us", required_argument, NULL, OPT_TICK_US},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    bool duration_set = false;
    uint64_t u = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        bool ok = true;
        switch (opt) {
        case OPT_SYSTEM:
            if (strcmp(optarg, "redis") == 0) {
                a->system = SYSTEM_REDIS;
            } else if (strcmp(optarg, "ticketq") == 0) {
                a->system = SYSTEM_TICKETQ;
            } else {
                ok = false;
            }
            break;
        case OPT_WORKLOAD: ok = tq_workload_kind_parse(optarg, &a->workload); break;
        case OPT_DURATION:
            ok = parse_double(optarg, &a->duration_s) && a->duration_s > 0.0;
            duration_set = true;
            break;
        case OPT_CLIENTS:
            ok = parse_u64(optarg, &u) && u <= UINT32_MAX;
            a->clients = (uint32_t)u;
            break;
        case OPT_PIPELINE:
            ok = parse_u64(optarg, &u) && u <= UINT32_MAX;
            a->pipeline = (uint32_t)u;
            break;
        case OPT_BATCH:
            ok = parse_u64(optarg, &u) && u >= 1 && u <= UINT32_MAX;
            a->batch = (uint32_t)u;
            break;
        case OPT_RATE: ok = parse_double(optarg, &a->rate); break;
        case OPT_SEED: ok = parse_u64(optarg, &a->seed); break;
        case OPT_CUSTOMERS: ok = parse_u64(optarg, &a->customers) && a->customers > 0; break;
        case OPT_BACKLOG: ok = parse_u64(optarg, &a->backlog) && a->backlog > 0; break;
        case OPT_LOAD: a->load = true; break;
        case OPT_LOAD_ONLY: a->load = a->load_only = true; break;
        case OPT_ADDR: a->addr = optarg; break;
        case OPT_TOKEN: set_token(a, tq_strdup(optarg)); break;
        case OPT_TOKEN_FILE: {
            char *t = read_token_file(optarg);
            if (t == NULL) {
                fprintf(stderr, "ticketq-bench: cannot read --token-file %s\n", optarg);
                return EXIT_USAGE;
            }
            set_token(a, t);
            break;
        }
        case OPT_SUBSCRIBERS:
            ok = parse_u64(optarg, &u) && u <= 4096;
            a->subscribers = (uint32_t)u;
            break;
        case OPT_PEAK_WARMUP: ok = parse_double(optarg, &a->peak.warmup_s); break;
        case OPT_PEAK_RAMP: ok = parse_double(optarg, &a->peak.ramp_s); break;
        case OPT_PEAK_SPIKE: ok = parse_double(optarg, &a->peak.spike_s); break;
        case OPT_CSV: a->csv_path = optarg; break;
        case OPT_PLOT: a->plot_path = optarg; break;
        case OPT_JSON: a->json = true; break;
        case OPT_SERVER_PID:
            ok = parse_u64(optarg, &u) && u > 0 && u <= INT32_MAX;
            a->server_pid = (long)u;
            break;
        case OPT_RESTART_CMD:
            ok = optarg[0] != '\0';
            a->restart_cmd = optarg;
            break;
        case OPT_WAIT:
            if (strcmp(optarg, "epoll") == 0) {
                a->wait = TQ_DRIVER_WAIT_EPOLL;
            } else if (strcmp(optarg, "ppoll") == 0) {
                a->wait = TQ_DRIVER_WAIT_PPOLL;
            } else {
                ok = false;
            }
            break;
        case OPT_TICK_US:
            ok = parse_u64(optarg, &a->tick_us) && a->tick_us <= TQ_DRIVER_TICK_NS_MAX / 1000;
            break;
        case OPT_HELP: usage(stdout); return 0;
        default: usage(stderr); return EXIT_USAGE;
        }
        if (!ok) {
            const char *name = "?";
            for (const struct option *o = longopts; o->name != NULL; o++) {
                if (o->val == opt) name = o->name;
            }
            fprintf(stderr, "ticketq-bench: bad value for --%s: %s\n", name, optarg);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ticketq-bench: unexpected argument %s\n", argv[optind]);
        return EXIT_USAGE;
    }
    if ((a->server_pid != 0 || a->restart_cmd != NULL) && a->system != SYSTEM_TICKETQ) {
        fprintf(stderr, "ticketq-bench: --server-pid and --restart-cmd are for ticketq\n");
        return EXIT_USAGE;
    }
    if (a->workload == TQ_WORKLOAD_PEAK) {
        if (a->rate == 0.0) a->rate = PEAK_BASE_RATE_DEFAULT;
        a->peak.base_rate = a->rate;
        a->peak.factor = TQ_WORKLOAD_PEAK_FACTOR;
        if (!duration_set) {
            a->duration_s = 2 * a->peak.warmup_s + 2 * a->peak.ramp_s + a->peak.spike_s;
        }
    }
    if (a->tick_us > 0 && !(a->rate > 0.0)) { /* before any load: it can take a while */
        fprintf(stderr, "ticketq-bench: --tick-us needs an open loop (--rate)\n");
        return EXIT_USAGE;
    }
    return -1;
}

/* ---- report ------------------------------------------------------------------------------ */

static double us(uint64_t ns) {
    return (double)ns / 1000.0;
}

static void json_figures(const struct tq_hist *h, uint64_t ok, uint64_t errors, double elapsed_s) {
    printf("\"count\":%" PRIu64 ",\"ops_per_sec\":%.1f,\"p50_us\":%.1f,\"p90_us\":%.1f,"
           "\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,\"mean_us\":%.1f,\"errors\":%" PRIu64,
           ok, elapsed_s > 0 ? (double)ok / elapsed_s : 0.0, us(tq_hist_percentile(h, 50.0)),
           us(tq_hist_percentile(h, 90.0)), us(tq_hist_percentile(h, 99.0)),
           us(tq_hist_percentile(h, 99.9)), us(h->max), tq_hist_mean(h) / 1000.0, errors);
}

struct fanout;
static void fanout_json(const struct fanout *fo);

/* RSS per ticket (the load's growth / its tickets) and per message (the run's growth, net of
 * its new tickets, / its messages). False if --server-pid was not given or nothing grew. */
static bool server_per_item(double *per_ticket, double *per_message) {
    const struct server_figures *f = &server_figs;
    if (!f->have_rss || f->load.tickets == 0) return false;
    *per_ticket =
        ((double)f->rss_kib[1] - (double)f->rss_kib[0]) * 1024.0 / (double)f->load.tickets;
    uint64_t messages = f->run.messages - f->load.messages;
    uint64_t tickets = f->run.tickets - f->load.tickets;
    *per_message = 0.0;
    if (messages > tickets) {
        double grown = ((double)f->rss_kib[2] - (double)f->rss_kib[1]) * 1024.0;
        *per_message = (grown - (double)tickets * *per_ticket) / (double)(messages - tickets);
    }
    return true;
}

static void report_json(const struct bench_args *a, const char *system_name,
                        const struct tq_driver_result *r, const struct tq_ticketq_counts *counts,
                        const struct fanout *fo) {
    uint64_t ok = 0, errors = 0;
    for (unsigned k = 0; k < TQ_OP_KIND_COUNT; k++) {
        ok += r->ops[k];
        errors += r->errors[k];
    }
    printf("{");
    json_figures(&r->all, ok, errors, r->elapsed_s);
    printf(",\"system\":\"%s\",\"workload\":\"%s\",\"clients\":%u,\"pipeline\":%u,\"batch\":%u,"
           "\"rate\":%.1f,\"tick_us\":%" PRIu64 ",\"seed\":%" PRIu64 ",\"customers\":%" PRIu64
           ",\"backlog\":%" PRIu64 ",\"elapsed_s\":%.3f,\"empty_queue\":%" PRIu64
           ",\"unfinished\":%" PRIu64 ",\"per_op\":{",
           system_name, tq_workload_kind_name(a->workload), a->clients, a->pipeline, a->batch,
           a->rate, a->tick_us, a->seed, a->customers, a->backlog, r->elapsed_s, r->empty_queue,
           r->unfinished);
    bool first = true;
    for (unsigned k = 0; k < TQ_OP_KIND_COUNT; k++) {
        if (r->per_op[k].count == 0) continue;
        printf("%s\"%s\":{", first ? "" : ",", tq_op_kind_name((enum tq_op_kind)k));
        json_figures(&r->per_op[k], r->ops[k], r->errors[k], r->elapsed_s);
        printf("}");
        first = false;
    }
    printf("}");
    if (counts != NULL) {
        printf(",\"server\":{\"tickets\":%" PRIu64 ",\"messages\":%" PRIu64
               ",\"customers\":%" PRIu64 ",\"queued\":%" PRIu64,
               counts->tickets, counts->messages, counts->customers, counts->queued_tickets);
        double per_ticket = 0, per_message = 0;
        if (server_per_item(&per_ticket, &per_message)) {
            printf(",\"rss_kib\":%" PRIu64 ",\"rss_per_ticket_bytes\":%.1f", server_figs.rss_kib[2],
                   per_ticket);
            if (per_message > 0) {
                printf(",\"rss_per_message_bytes\":%.1f", per_message);
            } else {
                printf(",\"rss_per_message_bytes\":null"); /* too small to separate */
            }
        }
        if (server_figs.restart_ms >= 0) printf(",\"restart_ms\":%.0f", server_figs.restart_ms);
        printf("}");
    }
    if (fo != NULL) fanout_json(fo);
    printf("}\n");
}

static void text_line(const char *name, const struct tq_hist *h, uint64_t ok, uint64_t errors,
                      double elapsed_s) {
    printf("%-12s %10.0f %9.1f %9.1f %9.1f %9.1f %10.1f %8" PRIu64 "\n", name,
           elapsed_s > 0 ? (double)ok / elapsed_s : 0.0, us(tq_hist_percentile(h, 50.0)),
           us(tq_hist_percentile(h, 90.0)), us(tq_hist_percentile(h, 99.0)),
           us(tq_hist_percentile(h, 99.9)), us(h->max), errors);
}

static void report_text(const struct bench_args *a, const char *system_name,
                        const struct tq_driver_result *r) {
    uint64_t ok = 0, errors = 0;
    for (unsigned k = 0; k < TQ_OP_KIND_COUNT; k++) {
        ok += r->ops[k];
        errors += r->errors[k];
    }
    printf("ticketq-bench: system %s, workload %s, %u clients x pipeline %u, %s, %.1f s, "
           "seed %" PRIu64 "\n",
           system_name, tq_workload_kind_name(a->workload), a->clients, a->pipeline,
           a->rate > 0 ? "open loop" : "closed loop", r->elapsed_s, a->seed);
    printf("%-12s %10s %9s %9s %9s %9s %10s %8s\n", "op", "ops/s", "p50_us", "p90_us", "p99_us",
           "p999_us", "max_us", "errors");
    for (unsigned k = 0; k < TQ_OP_KIND_COUNT; k++) {
        if (r->per_op[k].count == 0) continue;
        text_line(tq_op_kind_name((enum tq_op_kind)k), &r->per_op[k], r->ops[k], r->errors[k],
                  r->elapsed_s);
    }
    text_line("all", &r->all, ok, errors, r->elapsed_s);
    if (r->empty_queue > 0) {
        printf("INVALID RUN: %" PRIu64 " claims found an empty queue (raise --backlog)\n",
               r->empty_queue);
    }
    if (r->unfinished > 0) printf("%" PRIu64 " operations never completed\n", r->unfinished);
}

/* ---- fanout: K subscribers follow the event stream while the driver ingests --------------- */

/* One tq_subscription_next wait, and how long to wait for events after the run. */
#define FANOUT_WAIT_MS  50
#define FANOUT_DRAIN_NS (10ull * 1000 * 1000 * 1000)

/* One acknowledged ingest: its message id, when the answer was collected, when it was meant to
 * be sent (open loop: the schedule's intended time; closed loop: the actual send). */
struct fanout_ack {
    uint64_t message_id, ack_ns, intended_ns;
};

struct fanout_sub {
    struct fanout *fo;
    uint32_t index;
    pthread_t thread;
    bool started;
    struct tq_client *client;  /* ticketq */
    struct tq_redis_sub *rsub; /* redis */
    uint64_t *ids, *recv_ns;   /* events received, in order */
    uint64_t count, cap;
    enum tq_err status;    /* TQ_OK or why the subscriber stopped early */
    struct tq_error error; /* when status != TQ_OK */
    /* filled by fanout_match */
    struct tq_hist lag_ack, lag_e2e;
    uint64_t matched, missing, duplicates, unexpected, before_ack;
};

struct fanout {
    enum system_kind system;
    uint32_t k;
    uint64_t from_lsn;
    struct fanout_sub *subs;
    struct fanout_ack *acks;
    uint64_t ack_count, ack_cap;
    uint64_t *tag_start_ns; /* [conn * pipeline + slot]: intended time of the tag's op */
    uint64_t *conn_sends;   /* open loop: sends so far per connection (arrival k) */
    uint32_t clients, pipeline;
    bool open_loop;
    uint64_t t0_ns; /* taken just before tq_driver_run: <= the driver's start */
    struct tq_driver *driver;
    struct tq_bench_system wrapped; /* the ticketq system with send_op observed */
    const struct tq_bench_system *inner;
    atomic_bool stop;
    _Atomic uint64_t expected; /* set with stop: the acknowledged ingests */
    _Atomic uint64_t deadline_ns;
    struct tq_hist lag_ack, lag_e2e;
};

static struct fanout fanout_state; /* send_op has no context pointer besides the conn */

static enum tq_err fanout_send_op(struct tq_bench_conn *conn, const struct tq_bench_op *op,
                                  uint64_t tag, struct tq_error *error) {
    struct fanout *fo = &fanout_state;
    uint32_t c = tq_driver_tag_conn(tag);
    uint32_t slot = (uint32_t)tag;
    TQ_ASSERT(c < fo->clients && slot < fo->pipeline);
    uint64_t start = tq_bench_now_ns();
    if (fo->open_loop) {
        /* The driver sends connection c's arrivals in increasing k, k == c (mod clients). */
        uint64_t k = c + fo->conn_sends[c] * fo->clients;
        fo->conn_sends[c]++;
        start = fo->t0_ns + tq_driver_intended_ns(fo->driver, k);
    }
    fo->tag_start_ns[(uint64_t)c * fo->pipeline + slot] = start;
    return fo->inner->send_op(conn, op, tag, error);
}

static void fanout_on_ack(void *ctx, uint64_t tag, uint64_t message_id, uint64_t ack_ns) {
    struct fanout *fo = ctx;
    if (fo->ack_count == fo->ack_cap) {
        uint64_t cap = fo->ack_cap == 0 ? 4096 : fo->ack_cap * 2;
        fo->acks = tq_xrealloc(fo->acks, fo->ack_cap * sizeof(*fo->acks), cap * sizeof(*fo->acks));
        fo->ack_cap = cap;
    }
    uint32_t c = tq_driver_tag_conn(tag);
    uint32_t slot = (uint32_t)tag;
    fo->acks[fo->ack_count++] = (struct fanout_ack){
        .message_id = message_id,
        .ack_ns = ack_ns,
        .intended_ns = fo->tag_start_ns[(uint64_t)c * fo->pipeline + slot],
    };
}

static void sub_append(struct fanout_sub *sub, uint64_t message_id, uint64_t now) {
    if (sub->count == sub->cap) {
        uint64_t cap = sub->cap == 0 ? 4096 : sub->cap * 2;
        sub->ids = tq_xrealloc(sub->ids, sub->cap * sizeof(*sub->ids), cap * sizeof(*sub->ids));
        sub->recv_ns = tq_xrealloc(sub->recv_ns, sub->cap * sizeof(*sub->recv_ns),
                                   cap * sizeof(*sub->recv_ns));
        sub->cap = cap;
    }
    sub->ids[sub->count] = message_id;
    sub->recv_ns[sub->count] = now;
    sub->count++;
}

/* A subscriber thread: MESSAGE_ADDED events of the bench tenant after the load's last LSN, until
 * the run is over and it has as many events as ingests were acknowledged (or the drain time is
 * up). Owns sub->client while it runs. */
static void *fanout_thread_redis(struct fanout_sub *sub);

static void *fanout_thread(void *arg) {
    struct fanout_sub *sub = arg;
    struct fanout *fo = sub->fo;
    if (fo->system == SYSTEM_REDIS) return fanout_thread_redis(sub);
    struct tq_error error;
    tq_error_clear(&error);
    Ticketq__EventType types[1] = {TICKETQ__EVENT_TYPE__MESSAGE_ADDED};
    struct tq_subscribe_options so = {.from_lsn = fo->from_lsn, .types = types, .type_count = 1};
    struct tq_subscription *s = NULL;
    enum tq_err rc = tq_client_subscribe(sub->client, &so, &s, &error);
    while (rc == TQ_OK) {
        const Ticketq__Event *ev = NULL;
        rc = tq_subscription_next(s, &ev, FANOUT_WAIT_MS, &error);
        if (rc != TQ_OK) break;
        uint64_t now = tq_bench_now_ns();
        if (ev != NULL) {
            /* A MESSAGE_ADDED without a message id is counted as unexpected (id 0). */
            sub_append(sub, ev->has_message_id ? ev->message_id : 0, now);
        }
        if (atomic_load(&fo->stop) &&
            (sub->count >= atomic_load(&fo->expected) || now >= atomic_load(&fo->deadline_ns))) {
            break;
        }
    }
    sub->status = rc;
    if (rc != TQ_OK) sub->error = error;
    if (s != NULL) {
        /* A failed close leaves a broken client, which is closed next anyway. */
        struct tq_error close_error;
        if (tq_subscription_close(s, &close_error) != TQ_OK) s = NULL;
    }
    return NULL;
}

#define FANOUT_REDIS_READ_MAX 1024 /* stream entries per XREAD */

/* The Redis subscriber: XREAD BLOCK on stream ev until the run is over and it has as many ids
 * as ingests were acknowledged (or the drain time is up). Owns sub->rsub while it runs. */
static void *fanout_thread_redis(struct fanout_sub *sub) {
    struct fanout *fo = sub->fo;
    struct tq_error error;
    tq_error_clear(&error);
    uint64_t *ids = tq_xalloc(FANOUT_REDIS_READ_MAX * sizeof(*ids));
    enum tq_err rc = TQ_OK;
    for (;;) {
        uint32_t n = 0;
        rc = tq_redis_sub_next(sub->rsub, FANOUT_WAIT_MS, ids, FANOUT_REDIS_READ_MAX, &n, &error);
        if (rc != TQ_OK) break;
        uint64_t now = tq_bench_now_ns();
        for (uint32_t i = 0; i < n; i++)
            sub_append(sub, ids[i], now);
        if (atomic_load(&fo->stop) &&
            (sub->count >= atomic_load(&fo->expected) || now >= atomic_load(&fo->deadline_ns))) {
            break;
        }
    }
    sub->status = rc;
    if (rc != TQ_OK) sub->error = error;
    tq_free(ids, FANOUT_REDIS_READ_MAX * sizeof(*ids));
    return NULL;
}

/* Connects the K subscriber clients and starts their threads. Returns 0 or an exit code. */
static int fanout_start(struct fanout *fo, const struct bench_args *a,
                        struct tq_bench_system *system) {
    memset(fo, 0, sizeof(*fo));
    fo->system = a->system;
    fo->k = a->subscribers;
    fo->clients = a->clients;
    fo->pipeline = a->pipeline;
    fo->open_loop = a->rate > 0;
    fo->inner = system;
    fo->from_lsn = a->system == SYSTEM_TICKETQ ? tq_ticketq_load_lsn(system) : 1;
    tq_hist_reset(&fo->lag_ack);
    tq_hist_reset(&fo->lag_e2e);
    atomic_store(&fo->stop, false);
    atomic_store(&fo->expected, UINT64_MAX);
    atomic_store(&fo->deadline_ns, UINT64_MAX);
    if (fo->k == 0 || fo->from_lsn == 0 || a->clients == 0 || a->clients > TQ_DRIVER_CLIENTS_MAX ||
        a->pipeline == 0 || a->pipeline > TQ_DRIVER_PIPELINE_MAX) {
        fprintf(stderr, "ticketq-bench: fanout needs --subscribers >= 1, valid --clients and "
                        "--pipeline, and a load that reported its LSN\n");
        return EXIT_USAGE;
    }
    fo->tag_start_ns = tq_xcalloc((size_t)fo->clients * fo->pipeline, sizeof(*fo->tag_start_ns));
    fo->conn_sends = tq_xcalloc(fo->clients, sizeof(*fo->conn_sends));
    fo->subs = tq_xcalloc(fo->k, sizeof(*fo->subs));
    fo->wrapped = *system;
    fo->wrapped.send_op = fanout_send_op;
    if (a->system == SYSTEM_TICKETQ) {
        tq_ticketq_set_ack_hook(system, fanout_on_ack, fo);
    } else {
        struct tq_error error;
        tq_error_clear(&error);
        if (tq_redis_events_reset(system, &error) != TQ_OK) {
            fprintf(stderr, "ticketq-bench: fanout: %s\n", error.msg);
            return EXIT_UNAVAILABLE;
        }
        tq_redis_set_ack_hook(system, fanout_on_ack, fo);
    }
    for (uint32_t i = 0; i < fo->k; i++) {
        struct fanout_sub *sub = &fo->subs[i];
        sub->fo = fo;
        sub->index = i;
        tq_hist_reset(&sub->lag_ack);
        tq_hist_reset(&sub->lag_e2e);
        struct tq_error error;
        tq_error_clear(&error);
        enum tq_err rc = a->system == SYSTEM_TICKETQ
                             ? tq_ticketq_connect(system, &sub->client, &error)
                             : tq_redis_sub_open(system, &sub->rsub, &error);
        if (rc != TQ_OK) {
            fprintf(stderr, "ticketq-bench: fanout subscriber %u: %s\n", i, error.msg);
            return EXIT_UNAVAILABLE;
        }
        if (pthread_create(&sub->thread, NULL, fanout_thread, sub) != 0) {
            fprintf(stderr, "ticketq-bench: fanout: cannot start subscriber thread %u\n", i);
            return EXIT_UNAVAILABLE;
        }
        sub->started = true;
    }
    return 0;
}

/* Tells the subscribers the run is over (expected = the acknowledged ingests) and joins them. */
static void fanout_stop(struct fanout *fo) {
    atomic_store(&fo->deadline_ns, tq_bench_now_ns() + FANOUT_DRAIN_NS);
    atomic_store(&fo->expected, fo->ack_count);
    atomic_store(&fo->stop, true);
    for (uint32_t i = 0; i < fo->k; i++) {
        if (fo->subs != NULL && fo->subs[i].started) {
            pthread_join(fo->subs[i].thread, NULL);
            fo->subs[i].started = false;
        }
    }
}

static uint64_t fanout_hash(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

/* Matches every subscriber's events to the acknowledged ingests by message id (an open-addressing
 * map id -> ack index) and records the lags. */
static void fanout_match(struct fanout *fo) {
    uint64_t cap = 16;
    while (cap < 2 * fo->ack_count + 1)
        cap *= 2;
    uint64_t *slots = tq_xcalloc(cap, sizeof(*slots)); /* ack index + 1; 0 = empty */
    for (uint64_t i = 0; i < fo->ack_count; i++) {
        uint64_t h = fanout_hash(fo->acks[i].message_id) & (cap - 1);
        while (slots[h] != 0)
            h = (h + 1) & (cap - 1);
        slots[h] = i + 1;
    }
    uint8_t *seen = tq_xalloc(fo->ack_count + 1);
    for (uint32_t s = 0; s < fo->k; s++) {
        struct fanout_sub *sub = &fo->subs[s];
        memset(seen, 0, fo->ack_count + 1);
        for (uint64_t e = 0; e < sub->count; e++) {
            uint64_t h = fanout_hash(sub->ids[e]) & (cap - 1);
            uint64_t found = 0;
            while (slots[h] != 0) {
                if (fo->acks[slots[h] - 1].message_id == sub->ids[e]) {
                    found = slots[h];
                    break;
                }
                h = (h + 1) & (cap - 1);
            }
            if (found == 0) {
                sub->unexpected++;
                continue;
            }
            if (seen[found - 1]) {
                sub->duplicates++;
                continue;
            }
            seen[found - 1] = 1;
            sub->matched++;
            const struct fanout_ack *ack = &fo->acks[found - 1];
            uint64_t recv = sub->recv_ns[e];
            /* The event may be read before the driver collects the ingest's answer: lag 0. */
            if (recv < ack->ack_ns) sub->before_ack++;
            uint64_t lag = recv > ack->ack_ns ? recv - ack->ack_ns : 0;
            uint64_t e2e = recv > ack->intended_ns ? recv - ack->intended_ns : 0;
            tq_hist_record(&sub->lag_ack, lag);
            tq_hist_record(&sub->lag_e2e, e2e);
        }
        sub->missing = fo->ack_count - sub->matched;
        tq_hist_merge(&fo->lag_ack, &sub->lag_ack);
        tq_hist_merge(&fo->lag_e2e, &sub->lag_e2e);
    }
    tq_free(seen, fo->ack_count + 1);
    tq_free(slots, cap * sizeof(*slots));
}

/* True when some subscriber missed, doubled or invented an event, or stopped on an error. */
static bool fanout_failed(const struct fanout *fo) {
    for (uint32_t s = 0; s < fo->k; s++) {
        const struct fanout_sub *sub = &fo->subs[s];
        if (sub->missing > 0 || sub->duplicates > 0 || sub->unexpected > 0 ||
            sub->status != TQ_OK) {
            return true;
        }
    }
    return false;
}

static void fanout_json_lag(const char *name, const struct tq_hist *h) {
    printf("\"%s\":{\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
           "\"max_us\":%.1f,\"mean_us\":%.1f}",
           name, us(tq_hist_percentile(h, 50.0)), us(tq_hist_percentile(h, 90.0)),
           us(tq_hist_percentile(h, 99.0)), us(tq_hist_percentile(h, 99.9)), us(h->max),
           tq_hist_mean(h) / 1000.0);
}

static void fanout_json(const struct fanout *fo) {
    uint64_t missing = 0, dup = 0, unexpected = 0, received = 0;
    for (uint32_t s = 0; s < fo->k; s++) {
        missing += fo->subs[s].missing;
        dup += fo->subs[s].duplicates;
        unexpected += fo->subs[s].unexpected;
        received += fo->subs[s].count;
    }
    printf(",\"fanout\":{\"subscribers\":%u,\"event_types\":\"message_added\",\"transport\":\"%s\","
           "\"expected_per_subscriber\":%" PRIu64 ",\"received\":%" PRIu64 ",\"missing\":%" PRIu64
           ",\"duplicates\":%" PRIu64 ",\"unexpected\":%" PRIu64 ",",
           fo->k, fo->system == SYSTEM_REDIS ? "redis-stream-xread" : "ticketq-subscribe",
           fo->ack_count, received, missing, dup, unexpected);
    fanout_json_lag("lag_after_ack", &fo->lag_ack);
    printf(",");
    fanout_json_lag("lag_end_to_end", &fo->lag_e2e);
    printf(",\"per_subscriber\":[");
    for (uint32_t s = 0; s < fo->k; s++) {
        const struct fanout_sub *sub = &fo->subs[s];
        printf("%s{\"received\":%" PRIu64 ",\"matched\":%" PRIu64 ",\"missing\":%" PRIu64
               ",\"duplicates\":%" PRIu64 ",\"unexpected\":%" PRIu64 ",\"before_ack\":%" PRIu64
               ",\"error\":%s,",
               s == 0 ? "" : ",", sub->count, sub->matched, sub->missing, sub->duplicates,
               sub->unexpected, sub->before_ack, sub->status == TQ_OK ? "false" : "true");
        fanout_json_lag("lag_after_ack", &sub->lag_ack);
        printf(",");
        fanout_json_lag("lag_end_to_end", &sub->lag_e2e);
        printf("}");
    }
    printf("]}");
}

static void fanout_text_line(const char *name, const struct tq_hist *h) {
    printf("  %-22s %9.1f %9.1f %9.1f %9.1f %10.1f\n", name, us(tq_hist_percentile(h, 50.0)),
           us(tq_hist_percentile(h, 90.0)), us(tq_hist_percentile(h, 99.0)),
           us(tq_hist_percentile(h, 99.9)), us(h->max));
}

static void fanout_text(const struct fanout *fo) {
    printf("fanout: %u subscribers (%s), %" PRIu64 " acknowledged ingests each should see\n", fo->k,
           fo->system == SYSTEM_REDIS ? "XREAD BLOCK on stream ev" : "MESSAGE_ADDED only",
           fo->ack_count);
    printf("  %-22s %9s %9s %9s %9s %10s\n", "delivery lag", "p50_us", "p90_us", "p99_us",
           "p999_us", "max_us");
    fanout_text_line("all, after ack", &fo->lag_ack);
    fanout_text_line("all, end to end", &fo->lag_e2e);
    for (uint32_t s = 0; s < fo->k; s++) {
        const struct fanout_sub *sub = &fo->subs[s];
        char name[48];
        snprintf(name, sizeof(name), "sub %u, after ack", s);
        fanout_text_line(name, &sub->lag_ack);
        printf("    received %" PRIu64 ", matched %" PRIu64 ", missing %" PRIu64
               ", duplicates %" PRIu64 ", unexpected %" PRIu64 ", before ack %" PRIu64 "%s%s\n",
               sub->count, sub->matched, sub->missing, sub->duplicates, sub->unexpected,
               sub->before_ack,
               sub->status == TQ_OK ? "" : ", error: ", sub->status == TQ_OK ? "" : sub->error.msg);
    }
    if (fanout_failed(fo)) printf("INVALID RUN: a subscriber did not receive every event once\n");
}

static void fanout_destroy(struct fanout *fo) {
    fanout_stop(fo);
    for (uint32_t s = 0; fo->subs != NULL && s < fo->k; s++) {
        struct fanout_sub *sub = &fo->subs[s];
        tq_client_close(sub->client);
        tq_redis_sub_close(sub->rsub);
        tq_free(sub->ids, sub->cap * sizeof(*sub->ids));
        tq_free(sub->recv_ns, sub->cap * sizeof(*sub->recv_ns));
    }
    if (fo->subs != NULL) tq_free(fo->subs, fo->k * sizeof(*fo->subs));
    if (fo->tag_start_ns != NULL) {
        tq_free(fo->tag_start_ns, (size_t)fo->clients * fo->pipeline * sizeof(*fo->tag_start_ns));
    }
    if (fo->conn_sends != NULL) tq_free(fo->conn_sends, fo->clients * sizeof(*fo->conn_sends));
    tq_free(fo->acks, fo->ack_cap * sizeof(*fo->acks));
    fo->subs = NULL;
    fo->tag_start_ns = fo->conn_sends = NULL;
    fo->acks = NULL;
}

/* ---- per second: progress line and peak rows --------------------------------------------- */

static void on_second(void *ctx, const struct tq_driver_second *s) {
    struct run_ctx *rc = ctx;
    if (rc->progress) {
        fprintf(stderr,
                "[%4us] %9" PRIu64 " ops/s  p50 %8.1f us  p99 %9.1f us  errors %" PRIu64 "%s\n",
                s->second, s->completed, us(s->p50_ns), us(s->p99_ns), s->errors,
                s->backlog > 0 ? "  (open-loop backlog)" : "");
    }
    if (rc->args->workload != TQ_WORKLOAD_PEAK) return;
    if (rc->row_count == rc->row_cap) {
        uint32_t cap = rc->row_cap == 0 ? 64 : rc->row_cap * 2;
        rc->rows = tq_xrealloc(rc->rows, rc->row_cap * sizeof(*rc->rows), cap * sizeof(*rc->rows));
        rc->row_cap = cap;
    }
    struct peak_row *row = &rc->rows[rc->row_count++];
    memset(row, 0, sizeof(*row));
    row->second = *s;
    if (rc->system->stats != NULL) {
        struct tq_error error;
        tq_error_clear(&error);
        row->have_stats = rc->system->stats(rc->system->ctx, &row->stats, &error) == TQ_OK;
        if (!row->have_stats) fprintf(stderr, "ticketq-bench: stats: %s\n", error.msg);
    }
}

static int write_peak_outputs(const struct bench_args *a, const struct run_ctx *rc) {
    const char *csv = a->csv_path != NULL ? a->csv_path : "peak.csv";
    const char *png = a->plot_path != NULL ? a->plot_path : "peak.png";
    FILE *f = fopen(csv, "w");
    if (f == NULL) {
        fprintf(stderr, "ticketq-bench: cannot write %s\n", csv);
        return EXIT_RUN_INVALID;
    }
    fprintf(f, "second,intended_rate,throughput,p50_ms,p99_ms,max_ms,errors,backlog,"
               "queue_depth,breached\n");
    for (uint32_t i = 0; i < rc->row_count; i++) {
        const struct peak_row *row = &rc->rows[i];
        fprintf(f, "%u,%.1f,%" PRIu64 ",%.3f,%.3f,%.3f,%" PRIu64 ",%" PRIu64 ",",
                row->second.second, row->second.intended_rate, row->second.completed,
                row->second.p50_ns / 1e6, row->second.p99_ns / 1e6, row->second.max_ns / 1e6,
                row->second.errors, row->second.backlog);
        if (row->have_stats) {
            fprintf(f, "%" PRIu64 ",%" PRIu64 "\n", row->stats.queue_depth, row->stats.breached);
        } else {
            fprintf(f, ",\n");
        }
    }
    fclose(f);
    FILE *g = popen("gnuplot 2>&1", "w");
    if (g == NULL) {
        fprintf(stderr, "ticketq-bench: gnuplot not available; wrote %s only\n", csv);
        return 0;
    }
    fprintf(g,
            "set terminal pngcairo size 1200,900 noenhanced\n"
            "set output '%s'\n"
            "set datafile separator ','\n"
            "set key autotitle columnhead left top\n"
            "set multiplot layout 3,1 title 'ticketq-bench peak: %s, base %.0f ops/s, x%.0f'\n"
            "set xlabel 'second'\n"
            "set ylabel 'ops/s'\n"
            "plot '%s' using 1:2 with lines title 'intended', '' using 1:3 with lines "
            "title 'completed'\n"
            "set ylabel 'ms'\n"
            "plot '%s' using 1:5 with lines title 'p99 latency', '' using 1:4 with lines "
            "title 'p50 latency'\n"
            "set ylabel 'tickets'\n"
            "plot '%s' using 1:9 with lines title 'queue depth', '' using 1:10 with lines "
            "title 'queued past SLA', '' using 1:8 with lines title 'open-loop backlog'\n"
            "unset multiplot\n",
            png, a->system == SYSTEM_REDIS ? "redis" : "ticketq", a->peak.base_rate, a->peak.factor,
            csv, csv, csv);
    int rc_plot = pclose(g);
    if (rc_plot != 0) {
        fprintf(stderr, "ticketq-bench: gnuplot failed (exit %d); wrote %s only\n", rc_plot, csv);
        return 0;
    }
    fprintf(stderr, "ticketq-bench: wrote %s and %s\n", csv, png);
    return 0;
}

/* ---- main -------------------------------------------------------------------------------- */

static int split_addr(const char *addr, char *host, size_t host_bytes, uint16_t *port,
                      const char **unix_path) {
    *unix_path = NULL;
    if (strncmp(addr, "unix:", 5) == 0) {
        *unix_path = addr + 5;
        return 0;
    }
    const char *colon = strrchr(addr, ':');
    if (colon == NULL) return -1;
    const char *h = addr;
    size_t hlen = (size_t)(colon - addr);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    uint64_t p = 0;
    if (hlen == 0 || hlen >= host_bytes || !parse_u64(colon + 1, &p) || p == 0 || p > 65535) {
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)p;
    return 0;
}

static uint64_t load_last_ns;

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A progress line at most once a second (on a terminal: rewritten in place). */
static void load_progress(uint64_t done) {
    uint64_t now = mono_ns();
    if (now - load_last_ns < 1000000000u) return;
    load_last_ns = now;
    fprintf(stderr,
            isatty(STDERR_FILENO) ? "\rloaded %" PRIu64 " tickets" : "loaded %" PRIu64 " tickets\n",
            done);
}

/* The VmRSS of process pid in KiB, 0 if unreadable. */
static uint64_t proc_rss_kib(long pid) {
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return 0;
    uint64_t kib = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) kib = strtoull(line + 6, NULL, 10);
    }
    fclose(f);
    return kib;
}

/* --restart-cmd: runs the command, then connects until Stats answers (at most 300 s). Returns
 * the milliseconds from the command's start, or -1 (message printed). */
static double restart_server(const struct bench_args *a) {
    fflush(stdout);
    uint64_t t0 = mono_ns();
    int st = system(a->restart_cmd);
    if (st != 0) {
        fprintf(stderr, "ticketq-bench: --restart-cmd exited with status %d\n", st);
        return -1.0;
    }
    struct tq_client_options o = {.addr = a->addr, .token = a->token, .connect_timeout_ms = 1000};
    while (mono_ns() - t0 < 300ull * 1000000000ull) {
        struct tq_client *c = NULL;
        struct tq_error error;
        if (tq_client_connect(&o, &c, &error) == TQ_OK) {
            Ticketq__Response *resp = NULL;
            bool ok = tq_client_stats(c, &resp, &error) == TQ_OK && resp->stats != NULL;
            tq_client_response_free(resp);
            tq_client_close(c);
            if (ok) return (double)(mono_ns() - t0) / 1e6;
        }
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "ticketq-bench: the server did not answer within 300 s of --restart-cmd\n");
    return -1.0;
}

/* Creates the ticketq system and loads a fresh tenant (every run: the initial state is rebuilt
 * before each run, as PEER-WORKLOADS.md asks). Returns 0 or an exit code. */
static int ticketq_open(struct bench_args *a, struct tq_bench_system **system_out) {
    if (a->batch > a->pipeline) {
        fprintf(stderr,
                "ticketq-bench: --batch %u needs --pipeline >= %u (a batch is filled from "
                "the operations in flight on one connection)\n",
                a->batch, a->batch);
        return EXIT_USAGE;
    }
    struct tq_ticketq_options to = {
        .addr = a->addr,
        .token = a->token,
        .pipeline = a->pipeline,
        .batch = a->batch,
    };
    struct tq_error error;
    tq_error_clear(&error);
    if (tq_ticketq_system_create(&to, system_out, &error) != TQ_OK) {
        fprintf(stderr, "ticketq-bench: %s\n", error.msg);
        return error.code == TQ_ERR_INVALID_ARGUMENT ? EXIT_USAGE : EXIT_UNAVAILABLE;
    }
    uint64_t t0 = mono_ns();
    if (a->server_pid != 0) {
        server_figs.rss_kib[0] = proc_rss_kib(a->server_pid);
        if (server_figs.rss_kib[0] == 0) {
            fprintf(stderr, "ticketq-bench: --server-pid %ld: no /proc/%ld/status VmRSS\n",
                    a->server_pid, a->server_pid);
            tq_ticketq_system_destroy(*system_out);
            *system_out = NULL;
            return EXIT_USAGE;
        }
    }
    if (tq_ticketq_load(*system_out, a->customers, a->backlog, load_progress, &error) != TQ_OK) {
        fprintf(stderr, "%sticketq-bench: load: %s\n", isatty(STDERR_FILENO) ? "\n" : "",
                error.msg);
        tq_ticketq_system_destroy(*system_out);
        *system_out = NULL;
        return error.code == TQ_ERR_INVALID_ARGUMENT ? EXIT_USAGE : EXIT_UNAVAILABLE;
    }
    double load_s = (double)(mono_ns() - t0) / 1e9;
    if (a->server_pid != 0) {
        server_figs.rss_kib[1] = proc_rss_kib(a->server_pid);
        server_figs.have_rss = tq_ticketq_counts(*system_out, &server_figs.load, &error) == TQ_OK;
    }
    fprintf(stderr,
            "%sloaded %" PRIu64 " tickets (%" PRIu64 " customers) in %.1f s: %.0f tickets/s\n",
            isatty(STDERR_FILENO) ? "\r" : "", a->backlog, a->customers, load_s,
            load_s > 0 ? (double)a->backlog / load_s : 0.0);
    return 0;
}

static int redis_open(struct bench_args *a, struct tq_bench_system **system_out) {
    if (a->batch > 1) {
        fprintf(stderr, "ticketq-bench: the redis peer has no batches (one EVALSHA is one unit); "
                        "use --pipeline instead of --batch\n");
        return EXIT_USAGE;
    }
    char host[256];
    uint16_t port = REDIS_PORT_DEFAULT;
    const char *unix_path = NULL;
    const char *addr = a->addr != NULL ? a->addr : "127.0.0.1:6379";
    if (split_addr(addr, host, sizeof(host), &port, &unix_path) != 0) {
        fprintf(stderr, "ticketq-bench: bad --addr %s (HOST:PORT or unix:PATH)\n", addr);
        return EXIT_USAGE;
    }
    struct tq_redis_options ro = {
        .host = unix_path == NULL ? host : NULL,
        .port = port,
        .unix_path = unix_path,
        .password = a->token,
        .pipeline = a->pipeline,
        .events = a->workload == TQ_WORKLOAD_FANOUT,
    };
    struct tq_error error;
    tq_error_clear(&error);
    struct tq_bench_system *system = NULL;
    if (tq_redis_system_create(&ro, &system, &error) != TQ_OK) {
        fprintf(stderr, "ticketq-bench: %s\n", error.msg);
        return EXIT_UNAVAILABLE;
    }
    *system_out = system;
    if (a->load) {
        if (tq_redis_load(system, a->customers, a->backlog, load_progress, &error) != TQ_OK) {
            fprintf(stderr, "ticketq-bench: load: %s\n", error.msg);
            tq_redis_system_destroy(system);
            *system_out = NULL;
            return EXIT_UNAVAILABLE;
        }
        if (isatty(STDERR_FILENO)) fputc('\n', stderr);
    }
    return 0;
}

static void system_destroy(const struct bench_args *a, struct tq_bench_system *system) {
    if (a->system == SYSTEM_TICKETQ) {
        tq_ticketq_system_destroy(system);
    } else {
        tq_redis_system_destroy(system);
    }
}

/* ticketq: the server's counts after the run (for memory per ticket / per message). Returns
 * false (with a message) when Stats failed. */
static bool ticketq_counts(struct tq_bench_system *system, struct tq_ticketq_counts *counts) {
    struct tq_error error;
    tq_error_clear(&error);
    if (tq_ticketq_counts(system, counts, &error) != TQ_OK) {
        fprintf(stderr, "ticketq-bench: stats: %s\n", error.msg);
        return false;
    }
    return true;
}

static int run(struct bench_args *a) {
    struct tq_bench_system *system = NULL;
    int exit_code = a->system == SYSTEM_TICKETQ ? ticketq_open(a, &system) : redis_open(a, &system);
    if (exit_code != 0) return exit_code;
    struct tq_error error;
    tq_error_clear(&error);
    struct tq_driver *driver = NULL;
    struct tq_driver_result *result = tq_xalloc(sizeof(*result));
    struct run_ctx rc = {.args = a, .system = system, .progress = isatty(STDOUT_FILENO) != 0};
    struct fanout *fo = NULL;
    if (a->load_only) goto done;
    if (a->workload == TQ_WORKLOAD_FANOUT) {
        fo = &fanout_state;
        exit_code = fanout_start(fo, a, system);
        if (exit_code != 0) goto done;
    }
    struct tq_driver_options o = {
        .clients = a->clients,
        .pipeline = a->pipeline,
        .duration_s = a->duration_s,
        .rate = a->workload == TQ_WORKLOAD_PEAK ? 0.0 : a->rate,
        .peak = a->workload == TQ_WORKLOAD_PEAK ? &a->peak : NULL,
        .workload = {.kind = a->workload,
                     .seed = a->seed,
                     .customers = a->customers,
                     .backlog = a->backlog},
        .wait = a->wait,
        .tick_ns = a->tick_us * 1000,
        .on_second = on_second,
        .on_second_ctx = &rc,
    };
    if (tq_driver_create(&o, fo != NULL ? &fo->wrapped : system, &driver, &error) != TQ_OK) {
        fprintf(stderr, "ticketq-bench: %s\n", error.msg);
        exit_code = error.code == TQ_ERR_INVALID_ARGUMENT ? EXIT_USAGE : EXIT_UNAVAILABLE;
        goto done;
    }
    if (fo != NULL) {
        fo->driver = driver;
        fo->t0_ns = tq_bench_now_ns();
    }
    if (tq_driver_run(driver, result, &error) != TQ_OK) {
        fprintf(stderr, "ticketq-bench: %s\n", error.msg);
        exit_code = error.code == TQ_ERR_INVALID_ARGUMENT ? EXIT_USAGE : EXIT_UNAVAILABLE;
        goto done;
    }
    if (fo != NULL) {
        fanout_stop(fo);
        fanout_match(fo);
    }
    struct tq_ticketq_counts counts;
    bool have_counts = a->system == SYSTEM_TICKETQ && ticketq_counts(system, &counts);
    if (have_counts && a->server_pid != 0) {
        server_figs.rss_kib[2] = proc_rss_kib(a->server_pid);
        server_figs.run = counts;
    }
    if (a->restart_cmd != NULL) {
        server_figs.restart_ms = restart_server(a);
        if (server_figs.restart_ms < 0) exit_code = EXIT_RUN_INVALID;
    }
    if (a->json) {
        report_json(a, system->name, result, have_counts ? &counts : NULL, fo);
    } else {
        report_text(a, system->name, result);
        if (fo != NULL) fanout_text(fo);
        if (have_counts) {
            printf("server (bench tenant): %" PRIu64 " tickets, %" PRIu64 " messages, %" PRIu64
                   " customers, %" PRIu64 " queued\n",
                   counts.tickets, counts.messages, counts.customers, counts.queued_tickets);
            double per_ticket = 0, per_message = 0;
            if (server_per_item(&per_ticket, &per_message)) {
                printf("server RSS %" PRIu64 " KiB: %.1f B per ticket (load: %" PRIu64
                       " tickets with one message each); run: +%" PRIu64 " KiB for %" PRIu64
                       " messages and %" PRIu64 " new tickets = ",
                       server_figs.rss_kib[2], per_ticket, server_figs.load.tickets,
                       server_figs.rss_kib[2] - server_figs.rss_kib[1],
                       counts.messages - server_figs.load.messages,
                       counts.tickets - server_figs.load.tickets);
                if (per_message > 0) {
                    printf("%.1f B per message (net of the new tickets)\n", per_message);
                } else {
                    printf("n/a per message (growth too small to separate: RSS grows in "
                           "steps; use a longer run or bench/restart-10m.sh)\n");
                }
            }
        }
        if (server_figs.restart_ms >= 0) {
            printf("restart (--restart-cmd until Stats answers): %.0f ms\n",
                   server_figs.restart_ms);
        }
    }
    uint64_t errors = 0;
    for (unsigned k = 0; k < TQ_OP_KIND_COUNT; k++)
        errors += result->errors[k];
    if (errors > 0 || result->unfinished > 0) exit_code = EXIT_RUN_INVALID;
    if (fo != NULL && fanout_failed(fo)) exit_code = EXIT_RUN_INVALID;
    if (a->workload == TQ_WORKLOAD_PEAK) {
        int e = write_peak_outputs(a, &rc);
        if (e != 0) exit_code = e;
    }
done:
    if (fo != NULL) {
        if (a->system == SYSTEM_TICKETQ) {
            tq_ticketq_set_ack_hook(system, NULL, NULL);
        } else {
            tq_redis_set_ack_hook(system, NULL, NULL);
        }
        fanout_destroy(fo);
    }
    tq_driver_destroy(driver);
    system_destroy(a, system);
    tq_free(result, sizeof(*result));
    tq_free(rc.rows, rc.row_cap * sizeof(*rc.rows));
    return exit_code;
}

int main(int argc, char **argv) {
    struct bench_args a = {
        .system = SYSTEM_TICKETQ,
        .workload = TQ_WORKLOAD_MIXED,
        .duration_s = 10.0,
        .clients = 16,
        .pipeline = 1,
        .batch = 1,
        .seed = TQ_WORKLOAD_SEED_DEFAULT,
        .customers = TQ_WORKLOAD_CUSTOMERS_DEFAULT,
        .backlog = TQ_WORKLOAD_BACKLOG_DEFAULT,
        .subscribers = 4,
        .peak = {.warmup_s = 10.0, .ramp_s = 5.0, .spike_s = 20.0},
    };
    const char *env_addr = getenv("TICKETQ_ADDR");
    if (env_addr != NULL && env_addr[0] != '\0') a.addr = env_addr;
    const char *env_token = getenv("TICKETQ_TOKEN");
    if (env_token != NULL && env_token[0] != '\0') a.token = tq_strdup(env_token);
    int code = parse_args(argc, argv, &a);
    if (code < 0) code = run(&a);
    set_token(&a, NULL);
    return code;
}
