/* tests/bench/test_ticketq.c: smoke run of ticketq-bench's ticketq system against a real
 * ticketqd (tests/fixture: temp data directory, loopback, --fsync always).
 *
 * Goal: the bench's ticketq path cannot rot. Method: load a tiny initial state, run the mixed
 * workload in-process through the real driver loop, once waiting with epoll and once with
 * ppoll (pipeline 3, so claim-and-reply requests interleave with ingests on one connection),
 * then run the ticketq-bench binary once per
 * workload (ingest, claim-reply, mixed, dashboard; one second each), batched and pipelined
 * ingest (the batched run also with --server-pid and --restart-cmd: the RSS and restart figures
 * are in the JSON), and the invalid cases (a --server-pid without a process, a failing
 * --restart-cmd).
 * Invariants checked: no operation fails, every tag completes (nothing unfinished), no claim finds
 * an empty queue; every completed unit appended exactly one message to the bench's tenant
 * (server messages == backlog + ingests + claim-replies: a lost or doubled reply, or a batch
 * member counted without its message, breaks the equality); the binary exits 0 with a JSON
 * report holding the figures and the server counts, 2 for a batch larger than the pipeline and
 * for fanout without subscribers, 3 for a server that is not there, and 1 with the empty-queue
 * count when the backlog runs out.
 * Fan-out (test_fanout, plain and batched ingest): ingest for ~1 s while 2 subscribers follow the
 * event stream; every subscriber received exactly one MESSAGE_ADDED per acknowledged ingest
 * (received == matched == the acknowledged count, nothing missing, doubled or unexpected), that
 * count equals the messages the server holds beyond the backlog (an independent count: Stats),
 * and the lag figures are present, non-negative and ordered (p50 <= p99 <= max; end-to-end
 * max > 0).
 */
#include "openloop.h"
#include "peer_ticketq.h"

#include "bench_run.h"
#include "tq_fixture.h"
#include "tq_test.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CUSTOMERS 200u
#define BACKLOG   3000u

static struct tq_fixture server;

static void test_in_process(uint64_t seed, enum tq_driver_wait wait) {
    struct tq_ticketq_options o = {
        .addr = server.addr, .token = server.admin_token, .pipeline = 3, .batch = 1};
    struct tq_bench_system *sys = NULL;
    struct tq_error err;
    TQ_CHECK_OK(tq_ticketq_system_create(&o, &sys, &err), &err);
    TQ_CHECK_OK(tq_ticketq_load(sys, CUSTOMERS, BACKLOG, NULL, &err), &err);
    struct tq_ticketq_counts before;
    TQ_CHECK_OK(tq_ticketq_counts(sys, &before, &err), &err);
    TQ_CHECK_UEQ(before.tickets, BACKLOG);
    TQ_CHECK_UEQ(before.messages, BACKLOG);
    TQ_CHECK_UEQ(before.queued_tickets, BACKLOG);

    struct tq_driver_options d = {
        .clients = 3,
        .pipeline = 3,
        .duration_s = 1.0,
        .wait = wait,
        .workload = {.kind = TQ_WORKLOAD_MIXED,
                     .seed = seed,
                     .customers = CUSTOMERS,
                     .backlog = BACKLOG},
    };
    struct tq_driver *driver = NULL;
    TQ_CHECK_OK(tq_driver_create(&d, sys, &driver, &err), &err);
    struct tq_driver_result *r = calloc(1, sizeof(*r));
    TQ_CHECK(r != NULL);
    TQ_CHECK_OK(tq_driver_run(driver, r, &err), &err);
    uint64_t errors = 0;
    for (unsigned k = 0; k < TQ_OP_KIND_COUNT; k++)
        errors += r->errors[k];
    printf("mixed in-process (%s): %llu ingests, %llu claim-replies, %llu errors\n",
           wait == TQ_DRIVER_WAIT_PPOLL ? "ppoll" : "epoll",
           (unsigned long long)r->ops[TQ_OP_INGEST], (unsigned long long)r->ops[TQ_OP_CLAIM_REPLY],
           (unsigned long long)errors);
    TQ_CHECK_UEQ(errors, 0);
    TQ_CHECK_UEQ(r->empty_queue, 0);
    TQ_CHECK_UEQ(r->unfinished, 0);
    TQ_CHECK_GT(r->ops[TQ_OP_INGEST], 0);
    TQ_CHECK_GT(r->ops[TQ_OP_CLAIM_REPLY], 0);
    TQ_CHECK_UEQ(r->ops[TQ_OP_INGEST] + r->ops[TQ_OP_CLAIM_REPLY], r->sent);

    struct tq_ticketq_counts after;
    TQ_CHECK_OK(tq_ticketq_counts(sys, &after, &err), &err);
    TQ_CHECK_UEQ(after.messages, BACKLOG + r->ops[TQ_OP_INGEST] + r->ops[TQ_OP_CLAIM_REPLY]);
    TQ_CHECK_GE(after.tickets, BACKLOG);
    free(r);
    tq_driver_destroy(driver);
    tq_ticketq_system_destroy(sys);
}

static const char *file_text(const char *path);
static double json_number(const char *from, const char *key, const char **next_out);

static void test_binary(void) {
    char out[300], token_file[300];
    snprintf(out, sizeof(out), "%s/bench-out.json", server.dir);
    snprintf(token_file, sizeof(token_file), "%s/admin.token", server.dir);
    static const char *const workloads[] = {"ingest", "claim-reply", "mixed", "dashboard"};
    for (size_t i = 0; i < sizeof(workloads) / sizeof(workloads[0]); i++) {
        const char *args[] = {"--system", "ticketq", "--addr", server.addr, "--token-file",
                              token_file, "--workload", workloads[i], "--duration", "1",
                              "--clients", "3", "--pipeline", i == 1 ? "2" : "1", "--customers",
                              "200", "--backlog", "8000", "--json",
                              /* claim-reply open loop at 1000/s: a faster server cannot empty
                               * the 8000-ticket backlog within the second (mixed, closed
                               * loop: 20% claims of at most a few thousand ops) */
                              i == 1 ? "--rate" : "--seed", i == 1 ? "1000" : "42", NULL};
        int code = run_bench(out, args);
        printf("ticketq-bench --workload %s: exit %d\n", workloads[i], code);
        TQ_CHECK_EQ(code, 0);
        TQ_CHECK(file_contains(out, "\"ops_per_sec\":"));
        TQ_CHECK(file_contains(out, "\"p999_us\":"));
        TQ_CHECK(file_contains(out, "\"errors\":0,\"system\":\"ticketq\""));
        TQ_CHECK(file_contains(out, "\"empty_queue\":0,\"unfinished\":0"));
        TQ_CHECK(file_contains(out, "\"server\":{\"tickets\":"));
        TQ_CHECK(!file_contains(out, "\"count\":0,")); /* every op kind that ran, ran */
    }
    TQ_CHECK(file_contains(out, "\"get_ticket\":{"));
    TQ_CHECK(file_contains(out, "\"sla_nearest\":{"));
    /* Batched ingest: 300 per Batch, 2 batches in flight, so one answer holds more completions
     * than the driver takes per call (256) and must be handed out over several calls. With the
     * server's figures: RSS from /proc/PID and a restart command (here one that restarts
     * nothing: the time until Stats answers again must still be measured). */
    char pid_text[32], out_more[320];
    snprintf(out_more, sizeof(out_more), "%s/bench-out-more.json", server.dir);
    snprintf(pid_text, sizeof(pid_text), "%d", (int)server.pid);
    const char *batched[] = {
        "--system",   "ticketq", "--addr",       server.addr, "--token-file",  token_file,
        "--workload", "ingest",  "--duration",   "1",         "--clients",     "1",
        "--pipeline", "600",     "--batch",      "300",       "--customers",   "200",
        "--backlog",  "1000",    "--server-pid", pid_text,    "--restart-cmd", "true",
        "--json",     NULL};
    TQ_CHECK_EQ(run_bench(out, batched), 0);
    TQ_CHECK(file_contains(out, "\"rss_per_ticket_bytes\":"));
    TQ_CHECK(file_contains(out, "\"rss_per_message_bytes\":"));
    TQ_CHECK(file_contains(out, "\"restart_ms\":"));
    const char *no_such_pid[] = {"--system",     "ticketq",      "--addr",
                                 server.addr,    "--token-file", token_file,
                                 "--server-pid", "2147483647",   NULL};
    TQ_CHECK_EQ(run_bench(out_more, no_such_pid), 2);
    const char *bad_wait[] = {"--system", "ticketq", "--addr", server.addr,
                              "--wait",   "select",  NULL};
    TQ_CHECK_EQ(run_bench(out_more, bad_wait), 2);
    /* The open loop with a 2 ms tick through the real loop: every answer is read at a tick's
     * end, so counted from the intended time the median is at least a tick; a tick needs an
     * open loop and is at most 100 ms. */
    const char *ticked[] = {"--system",  "ticketq",    "--addr",     server.addr,   "--token-file",
                            token_file,  "--workload", "ingest",     "--duration",  "1",
                            "--clients", "2",          "--pipeline", "8",           "--rate",
                            "1000",      "--tick-us",  "2000",       "--customers", "200",
                            "--backlog", "1000",       "--json",     NULL};
    TQ_CHECK_EQ(run_bench(out_more, ticked), 0);
    TQ_CHECK(file_contains(out_more, "\"errors\":0,\"system\":\"ticketq\""));
    TQ_CHECK(file_contains(out_more, "\"rate\":1000.0,\"tick_us\":2000,"));
    TQ_CHECK(file_contains(out_more, "\"empty_queue\":0,\"unfinished\":0"));
    const char *text = file_text(out_more);
    TQ_CHECK(json_number(text, "count", NULL) >= 990.0); /* 1,000 due in the second */
    TQ_CHECK(json_number(text, "p50_us", NULL) >= 2000.0);
    const char *tick_closed[] = {"--system", "ticketq",   "--addr", server.addr, "--token-file",
                                 token_file, "--tick-us", "100",    NULL};
    TQ_CHECK_EQ(run_bench(out_more, tick_closed), 2);
    const char *tick_big[] = {"--system",     "ticketq",  "--addr", server.addr,
                              "--token-file", token_file, "--rate", "100",
                              "--tick-us",    "100001",   NULL};
    TQ_CHECK_EQ(run_bench(out_more, tick_big), 2);
    const char *failing_restart[] = {"--system",      "ticketq",  "--addr",     server.addr,
                                     "--token-file",  token_file, "--workload", "ingest",
                                     "--duration",    "1",        "--clients",  "1",
                                     "--customers",   "200",      "--backlog",  "1000",
                                     "--restart-cmd", "false",    NULL};
    TQ_CHECK_EQ(run_bench(out_more, failing_restart), 1);
    TQ_CHECK(file_contains(out, "\"errors\":0,\"system\":\"ticketq\",\"workload\":\"ingest\","
                                "\"clients\":1,\"pipeline\":600,\"batch\":300"));
    TQ_CHECK(file_contains(out, "\"empty_queue\":0,\"unfinished\":0"));
    TQ_CHECK(!file_contains(out, "\"count\":0,"));
    const char *pipelined[] = {"--system",     "ticketq",  "--addr",      server.addr,
                               "--token-file", token_file, "--workload",  "mixed",
                               "--duration",   "1",        "--clients",   "2",
                               "--pipeline",   "16",       "--customers", "200",
                               "--backlog",    "20000",    "--json",      NULL};
    /* The backlog must outlast a second of pipelined claims (20% of ~15k+ ops/s): a run whose
     * queues run empty is invalid and exits 1. */
    TQ_CHECK_EQ(run_bench(out, pipelined), 0);
    TQ_CHECK(file_contains(out, "\"empty_queue\":0,\"unfinished\":0"));

    const char *fanout[] = {"--system",      "ticketq",  "--addr",      server.addr,
                            "--token-file",  token_file, "--workload",  "fanout",
                            "--subscribers", "0",        "--customers", "200",
                            "--backlog",     "1000",     NULL};
    TQ_CHECK_EQ(run_bench(out, fanout), 2);
    const char *batch_too_big[] = {"--system",     "ticketq",  "--addr",  server.addr,
                                   "--token-file", token_file, "--batch", "10",
                                   "--pipeline",   "4",        NULL};
    TQ_CHECK_EQ(run_bench(out, batch_too_big), 2);
    char nowhere[320];
    snprintf(nowhere, sizeof(nowhere), "unix:%s/no-such.sock", server.dir);
    const char *absent[] = {"--system", "ticketq", "--addr", nowhere, "--token", "x", NULL};
    TQ_CHECK_EQ(run_bench(out, absent), 3);
    /* A backlog far too small: claims find empty queues, the run is reported invalid (exit 1)
     * with its figures and the count. */
    const char *empty[] = {"--system",  "ticketq",    "--addr",      server.addr,  "--token-file",
                           token_file,  "--workload", "claim-reply", "--duration", "0.5",
                           "--clients", "2",          "--customers", "5",          "--backlog",
                           "5",         "--json",     NULL};
    TQ_CHECK_EQ(run_bench(out, empty), 1);
    TQ_CHECK(file_contains(out, "\"claim_reply\":{\"count\":5,"));
    TQ_CHECK(!file_contains(out, "\"empty_queue\":0,"));
}

/* The file's text (static buffer, NUL-terminated). */
static const char *file_text(const char *path) {
    static char buf[1 << 16];
    FILE *f = fopen(path, "r");
    TQ_CHECK(f != NULL);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* The number after "key": at or after from; fails the test when absent. *next_out (may be NULL)
 * points after the number. */
static double json_number(const char *from, const char *key, const char **next_out) {
    char needle[96];
    snprintf(needle, sizeof(needle), "\"%s\":", key);
    const char *p = strstr(from, needle);
    TQ_CHECK(p != NULL);
    char *end = NULL;
    double v = strtod(p + strlen(needle), &end);
    TQ_CHECK(end != p + strlen(needle));
    if (next_out != NULL) *next_out = end;
    return v;
}

static void check_lag(const char *from, const char *name) {
    const char *p = strstr(from, name);
    TQ_CHECK(p != NULL);
    double p50 = json_number(p, "p50_us", NULL), p99 = json_number(p, "p99_us", NULL);
    double max = json_number(p, "max_us", NULL);
    TQ_CHECK(p50 >= 0.0 && p50 <= p99 && p99 <= max);
}

#define FANOUT_BACKLOG     1000u
#define FANOUT_SUBSCRIBERS 2

/* pipeline/batch as strings: "2"/"1" plain Ingests; "600"/"300" Batch members (their acks come
 * from the batch answer's results). */
static void test_fanout(const char *pipeline, const char *batch) {
    char out[300], token_file[300];
    snprintf(out, sizeof(out), "%s/bench-fanout.json", server.dir);
    snprintf(token_file, sizeof(token_file), "%s/admin.token", server.dir);
    const char *args[] = {
        "--system",    "ticketq", "--addr",        server.addr, "--token-file", token_file,
        "--workload",  "fanout",  "--subscribers", "2",         "--duration",   "1",
        "--clients",   "2",       "--pipeline",    pipeline,    "--batch",      batch,
        "--customers", "200",     "--backlog",     "1000",      "--json",       NULL};
    int code = run_bench(out, args);
    const char *text = file_text(out);
    printf("ticketq-bench --workload fanout --batch %s: exit %d\n%s", batch, code, text);
    TQ_CHECK_EQ(code, 0);
    const char *fo = strstr(text, "\"fanout\":{");
    TQ_CHECK(fo != NULL);
    TQ_CHECK_EQ((int)json_number(fo, "subscribers", NULL), FANOUT_SUBSCRIBERS);
    double expected = json_number(fo, "expected_per_subscriber", NULL);
    TQ_CHECK(expected > 0.0);
    double messages = json_number(text, "messages", NULL);
    TQ_CHECK_UEQ((uint64_t)messages, (uint64_t)expected + FANOUT_BACKLOG);
    TQ_CHECK_UEQ((uint64_t)json_number(fo, "missing", NULL), 0u);
    TQ_CHECK_UEQ((uint64_t)json_number(fo, "duplicates", NULL), 0u);
    TQ_CHECK_UEQ((uint64_t)json_number(fo, "unexpected", NULL), 0u);
    check_lag(fo, "\"lag_after_ack\"");
    check_lag(fo, "\"lag_end_to_end\"");
    TQ_CHECK(json_number(strstr(fo, "\"lag_end_to_end\""), "max_us", NULL) > 0.0);
    const char *p = strstr(fo, "\"per_subscriber\":[");
    TQ_CHECK(p != NULL);
    int subs = 0;
    for (const char *q = strstr(p, "{\"received\":"); q != NULL;
         q = strstr(q + 1, "{\"received\":")) {
        TQ_CHECK_UEQ((uint64_t)json_number(q, "received", NULL), (uint64_t)expected);
        TQ_CHECK_UEQ((uint64_t)json_number(q, "matched", NULL), (uint64_t)expected);
        TQ_CHECK_UEQ((uint64_t)json_number(q, "missing", NULL), 0u);
        TQ_CHECK(strncmp(strstr(q, "\"error\":"), "\"error\":false,", 14) == 0);
        check_lag(q, "\"lag_after_ack\"");
        check_lag(q, "\"lag_end_to_end\"");
        subs++;
    }
    TQ_CHECK_EQ(subs, FANOUT_SUBSCRIBERS);
}

int main(void) {
    uint64_t seed = tq_test_seed("test_bench_ticketq");
    memset(&server, 0, sizeof(server));
    TQ_CHECK_EQ(tq_fixture_start(&server), 0);
    test_in_process(seed, TQ_DRIVER_WAIT_EPOLL);
    test_in_process(seed + 1, TQ_DRIVER_WAIT_PPOLL);
    test_binary();
    test_fanout("2", "1");
    test_fanout("600", "300");
    tq_fixture_cleanup(&server);
    printf("test_bench_ticketq: ok\n");
    return 0;
}
