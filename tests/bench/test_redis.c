/* tests/bench/test_redis.c: smoke run of the Redis peer and of every ticketq-bench workload.
 *
 * Skipped (exit 77) when redis-server is not installed: it is not a default dependency
 * (TQ_WITH_BENCH_DEPS=1 bash tests/install-deps.sh installs it).
 * Method: start a private redis-server (unix socket in a temp dir, AOF always, no snapshots),
 * load a tiny initial state, run the mixed workload in-process through the real driver loop,
 * then run the ticketq-bench binary once per workload (half a second each, peak 4 s).
 * Invariants checked: the RESP parser accepts complete replies and rejects garbage; no operation
 * fails and no claim finds an empty queue; every completed unit appended exactly one message
 * (next:msg == backlog + completed); the queues hold what the state says; the binary exits 0
 * with a JSON report for every workload, fan-out included (2 subscribers following the event
 * stream each receive every acknowledged ingest's message id exactly once), 2 for fanout without
 * subscribers, 3 for --system ticketq with no server at the address, and 1 with the empty-queue
 * count when the backlog runs out.
 */
#include "openloop.h"
#include "peer_redis.h"

#include "bench_run.h"
#include "tq_test.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define CUSTOMERS 300u
#define BACKLOG   20000u

static char dir[256];
static pid_t redis_pid = -1;

static bool have_redis_server(void) {
    const char *path = getenv("PATH");
    if (path == NULL) return false;
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *save = NULL, *p = strtok_r(buf, ":", &save); p != NULL;
         p = strtok_r(NULL, ":", &save)) {
        char exe[4400];
        snprintf(exe, sizeof(exe), "%s/redis-server", p);
        if (access(exe, X_OK) == 0) return true;
    }
    return false;
}

static void stop_redis(void) {
    if (redis_pid > 0) {
        kill(redis_pid, SIGTERM);
        waitpid(redis_pid, NULL, 0);
        redis_pid = -1;
    }
    if (dir[0] != '\0') {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    }
}

static void start_redis(char *sock, size_t sock_bytes) {
    snprintf(dir, sizeof(dir), "/tmp/tq-bench-redis-XXXXXX");
    TQ_CHECK(mkdtemp(dir) != NULL);
    snprintf(sock, sock_bytes, "%s/redis.sock", dir);
    redis_pid = fork();
    TQ_CHECK(redis_pid >= 0);
    if (redis_pid == 0) {
        char log[300];
        snprintf(log, sizeof(log), "%s/redis.log", dir);
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", sock, "--dir", dir,
               "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--logfile", log,
               (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        if (access(sock, F_OK) == 0) return;
        usleep(10000);
    }
    fprintf(stderr, "redis-server did not create %s\n", sock);
    stop_redis();
    exit(1);
}

static void test_resp(void) {
    struct tq_resp_reply r;
    uint64_t used = 0;
    const char *ok = "+OK\r\n:42\r\n";
    TQ_CHECK_EQ(tq_resp_parse(ok, strlen(ok), &used, &r), 1);
    TQ_CHECK_EQ(r.type, TQ_RESP_SIMPLE);
    TQ_CHECK_UEQ(used, 5);
    TQ_CHECK_EQ(tq_resp_parse(ok + 5, 5, &used, &r), 1);
    TQ_CHECK_EQ(r.integer, 42);
    const char *arr = "*3\r\n$3\r\nabc\r\n*1\r\n:-7\r\n$-1\r\n";
    for (size_t cut = 0; cut < strlen(arr); cut++) {
        TQ_CHECK_EQ(tq_resp_parse(arr, cut, &used, &r), 0);
    }
    TQ_CHECK_EQ(tq_resp_parse(arr, strlen(arr), &used, &r), 1);
    TQ_CHECK_EQ(r.type, TQ_RESP_ARRAY);
    TQ_CHECK_EQ(r.integer, 3);
    TQ_CHECK_UEQ(used, strlen(arr));
    const char *err = "-EMPTY queue 1\r\n";
    TQ_CHECK_EQ(tq_resp_parse(err, strlen(err), &used, &r), 1);
    TQ_CHECK_EQ(r.type, TQ_RESP_ERROR);
    TQ_CHECK_UEQ(r.str_bytes, 13);
    TQ_CHECK_EQ(tq_resp_parse("?x\r\n", 4, &used, &r), -1);
    TQ_CHECK_EQ(tq_resp_parse("$3\r\nabcd\r\n", 10, &used, &r), -1);
    TQ_CHECK_EQ(tq_resp_parse(":12a\r\n", 6, &used, &r), -1);
    char deep[200];
    size_t n = 0;
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(deep + n, sizeof(deep) - n, "*1\r\n");
    n += (size_t)snprintf(deep + n, sizeof(deep) - n, ":1\r\n");
    TQ_CHECK_EQ(tq_resp_parse(deep, n, &used, &r), -1);
}

static void test_driver(const char *sock, uint64_t seed) {
    struct tq_redis_options ro = {.unix_path = sock, .pipeline = 4};
    struct tq_bench_system *sys = NULL;
    struct tq_error error;
    tq_error_clear(&error);
    TQ_CHECK_OK(tq_redis_system_create(&ro, &sys, &error), &error);
    TQ_CHECK_OK(tq_redis_load(sys, CUSTOMERS, BACKLOG, NULL, &error), &error);
    struct tq_bench_stats st;
    TQ_CHECK_OK(sys->stats(sys->ctx, &st, &error), &error);
    TQ_CHECK_UEQ(st.queue_depth, BACKLOG);
    TQ_CHECK_UEQ(st.breached, BACKLOG); /* the backlog's deadlines are in December 2024 */

    struct tq_driver_options o = {
        .clients = 4,
        .pipeline = 4,
        .duration_s = 1.0,
        .workload = {.kind = TQ_WORKLOAD_MIXED,
                     .seed = seed,
                     .customers = CUSTOMERS,
                     .backlog = BACKLOG},
    };
    struct tq_driver *d = NULL;
    TQ_CHECK_OK(tq_driver_create(&o, sys, &d, &error), &error);
    struct tq_driver_result *r = calloc(1, sizeof(*r));
    TQ_CHECK(r != NULL);
    TQ_CHECK_OK(tq_driver_run(d, r, &error), &error);
    uint64_t ingest = r->ops[TQ_OP_INGEST], claims = r->ops[TQ_OP_CLAIM_REPLY];
    printf("mixed: %llu ingest, %llu claim-reply in %.2f s\n", (unsigned long long)ingest,
           (unsigned long long)claims, r->elapsed_s);
    TQ_CHECK_UEQ(r->errors[TQ_OP_INGEST] + r->errors[TQ_OP_CLAIM_REPLY], 0);
    TQ_CHECK_UEQ(r->empty_queue, 0);
    TQ_CHECK_UEQ(r->unfinished, 0);
    TQ_CHECK_UINT_OP(ingest, >, 0);
    TQ_CHECK_UINT_OP(claims, >, 0);
    TQ_CHECK_UEQ(r->all.count, ingest + claims);

    uint64_t msgs = 0, tickets = 0;
    TQ_CHECK_OK(tq_redis_get_u64(sys, "next:msg", &msgs, &error), &error);
    TQ_CHECK_OK(tq_redis_get_u64(sys, "next:ticket", &tickets, &error), &error);
    TQ_CHECK_UEQ(msgs, BACKLOG + ingest + claims);
    TQ_CHECK_UINT_OP(tickets, >=, BACKLOG);
    TQ_CHECK_UINT_OP(tickets, <=, BACKLOG + ingest);
    TQ_CHECK_OK(sys->stats(sys->ctx, &st, &error), &error);
    /* Every claim dequeued one; ingest enqueued new and re-opened tickets. */
    TQ_CHECK_UINT_OP(st.queue_depth + claims, >=, BACKLOG);
    TQ_CHECK_UINT_OP(st.queue_depth + claims, <=, BACKLOG + ingest);
    TQ_CHECK_UINT_OP(st.queue_depth + claims, >=, tickets);
    free(r);
    tq_driver_destroy(d);
    tq_redis_system_destroy(sys);
}

static void test_binary(const char *sock) {
    char addr[320], out[320], csv[320], png[320];
    snprintf(addr, sizeof(addr), "unix:%s", sock);
    snprintf(out, sizeof(out), "%s/out.json", dir);
    snprintf(csv, sizeof(csv), "%s/peak.csv", dir);
    snprintf(png, sizeof(png), "%s/peak.png", dir);
    static const char *const workloads[] = {"ingest", "claim-reply", "mixed", "dashboard"};
    for (size_t i = 0; i < sizeof(workloads) / sizeof(workloads[0]); i++) {
        const char *args[] = {"--system",    "redis",      "--addr",
                              addr,          "--workload", workloads[i],
                              "--duration",  "0.5",        "--clients",
                              "3",           "--pipeline", "2",
                              "--customers", "300",        "--backlog",
                              "20000",       "--json",     i <= 1 ? "--load" : "--json",
                              NULL};
        int code = run_bench(out, args);
        printf("ticketq-bench --workload %s: exit %d\n", workloads[i], code);
        TQ_CHECK_EQ(code, 0);
        TQ_CHECK(file_contains(out, "\"ops_per_sec\":"));
        TQ_CHECK(file_contains(out, "\"p999_us\":"));
        TQ_CHECK(file_contains(out, "\"errors\":0,\"system\":\"redis\""));
    }
    TQ_CHECK(file_contains(out, "\"get_ticket\":{"));
    const char *peak[] = {"--system",
                          "redis",
                          "--addr",
                          addr,
                          "--workload",
                          "peak",
                          "--rate",
                          "100",
                          "--peak-warmup",
                          "1",
                          "--peak-ramp",
                          "0.5",
                          "--peak-spike",
                          "1",
                          "--clients",
                          "4",
                          "--customers",
                          "300",
                          "--backlog",
                          "20000",
                          "--csv",
                          csv,
                          "--plot",
                          png,
                          NULL};
    TQ_CHECK_EQ(run_bench(out, peak), 0);
    TQ_CHECK(file_contains(csv, "second,intended_rate,throughput,p50_ms,p99_ms"));
    TQ_CHECK(file_contains(csv, "\n4,")); /* 1 + 0.5 + 1 + 0.5 + 1 = 4 whole seconds */
    /* Fan-out: 2 subscribers XREAD the stream the ingest script appends to; each must get every
     * acknowledged ingest's message id once (the binary exits 1 otherwise). */
    const char *fanout[] = {"--system",      "redis", "--addr",      addr,  "--workload", "fanout",
                            "--subscribers", "2",     "--duration",  "0.5", "--clients",  "3",
                            "--pipeline",    "2",     "--customers", "300", "--backlog",  "20000",
                            "--json",        NULL};
    TQ_CHECK_EQ(run_bench(out, fanout), 0);
    TQ_CHECK(file_contains(out, "\"transport\":\"redis-stream-xread\""));
    TQ_CHECK(file_contains(out, "\"missing\":0,\"duplicates\":0,\"unexpected\":0,"));
    TQ_CHECK(!file_contains(out, "\"expected_per_subscriber\":0,"));
    TQ_CHECK(file_contains(out, "\"lag_after_ack\":{\"p50_us\":"));
    const char *no_subs[] = {"--system", "redis",         "--addr", addr, "--workload",
                             "fanout",   "--subscribers", "0",      NULL};
    TQ_CHECK_EQ(run_bench(out, no_subs), 2);
    char nowhere[320];
    snprintf(nowhere, sizeof(nowhere), "unix:%s/no-ticketqd.sock", dir);
    const char *ticketq[] = {"--system", "ticketq",    "--addr", nowhere, "--token",
                             "x",        "--workload", "mixed",  NULL};
    TQ_CHECK_EQ(run_bench(out, ticketq), 3);
    const char *bad[] = {"--system", "redis", "--clients", "x", NULL};
    TQ_CHECK_EQ(run_bench(out, bad), 2);
    /* A backlog far too small: claims find empty queues, the run is reported invalid (exit 1)
     * with its figures and the count. Last, because --load replaces the state. */
    const char *empty[] = {"--system",    "redis",      "--addr",    addr,        "--workload",
                           "claim-reply", "--duration", "0.3",       "--clients", "2",
                           "--customers", "300",        "--backlog", "5",         "--load",
                           "--json",      NULL};
    TQ_CHECK_EQ(run_bench(out, empty), 1);
    TQ_CHECK(file_contains(out, "\"claim_reply\":{\"count\":5,"));
    TQ_CHECK(!file_contains(out, "\"empty_queue\":0,"));
}

int main(void) {
    uint64_t seed = tq_test_seed("test_bench_redis");
    test_resp();
    if (!have_redis_server()) {
        printf("test_bench_redis: redis-server not installed, skipping the smoke run\n");
        return TQ_TEST_SKIP;
    }
    char sock[300];
    start_redis(sock, sizeof(sock));
    atexit(stop_redis);
    test_driver(sock, seed);
    test_binary(sock);
    printf("test_bench_redis: ok\n");
    return 0;
}
