/* tests/server/test_server_snapshot.c: background snapshots of a real ticketqd.
 *
 * Goal: a snapshot never stalls other clients, covers exactly a committed LSN, and neither a
 * crash nor a failure during one harms the data directory. Method: real ticketqd processes
 * (tests/fixture) on temp dirs, raw clients; the child's write is slowed down with the test
 * seam TICKETQD_TEST_SNAPSHOT_DELAY_MS so "during the snapshot" is a wide, certain window.
 * Checks:
 *   - while a SnapshotNow is pending, another connection's ingests are answered; the
 *     requester's next pipelined request is answered after the snapshot's response; a second
 *     SnapshotNow made after new writes gets a newer snapshot; each snapshot file deserialises
 *     to the same digest as replaying the log up to its LSN (tq_ops_state_at); the restarted
 *     server loads the newest one and reports the same counts as a full replay;
 *   - snapshot-every N (here from a --config file, with snapshot-growth 0) writes snapshots by
 *     itself, snapshots-keep K keeps K files, and --snapshot-every 0 writes none;
 *   - --snapshot-growth PCT: with no snapshot on disk the first automatic one starts on the
 *     record count alone; the next one does not start while the log bytes since it (metric
 *     ticketq_snapshot_log_bytes_since) are below PCT% of its file's size although the record
 *     count was reached long before, and does start once they reach it (its log line and
 *     metrics give the counts that started it); with growth 0 the same record count alone
 *     starts the second one at once; a failed automatic snapshot moves neither the base nor the
 *     count (and no retry within the retry delay), a SnapshotNow resets the count; a restart
 *     takes the loaded snapshot's file as the base and the log after it as grown;
 *   - kill -9 during a background snapshot: no snapshot appears afterwards (the child dies with
 *     the server), the restart removes the temp files and serves every acknowledged write;
 *   - the child publishes only after the server's go (its LSN durable; held back with the seam
 *     TICKETQD_TEST_SNAPSHOT_GO_DELAY_MS): the temp file is complete, nothing is published and
 *     other clients are served while it waits; kill -9 then leaves no snapshot (at most the
 *     temp file, removed at the restart);
 *   - SIGTERM during a background snapshot: the server exits 0 at once (the child is killed,
 *     its temp file removed), the waiter gets UNAVAILABLE or a closed connection;
 *   - a snapshot that cannot be written (DIR/snapshots replaced by a file) answers SnapshotNow
 *     with an error naming the cause, the server keeps serving, and the next one succeeds;
 *     /metrics counts one failure, one snapshot and names its LSN;
 *   - the child's pre-copy (--snapshot-precopy, on by default) does something and changes
 *     nothing: after a snapshot of 9,000 tickets (the ticket slab past its first huge-page
 *     group) /metrics and the log line report pre-copied bytes > 0, and the snapshot equals
 *     replay at its LSN; with --snapshot-precopy off the same report says 0.
 */
#include "ops.h"
#include "rawc.h"
#include "state.h"
#include "tq_alloc.h"
#include "tq_fixture.h"
#include "tq_test.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SNAP_HEADER_BYTES 64 /* docs/log-format.md: the snapshot file header */

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct setup {
    uint64_t tenant;
    char token[80]; /* integration token of the tenant */
};

/* A tenant whose SMS messages go to one queue, and an integration token for it. */
static void setup_tenant(struct tq_fixture *f, struct setup *s) {
    struct rawc admin;
    rawc_open_authed(&admin, f->addr, f->admin_token);
    s->tenant = rawc_tenant_create(&admin, "snap");
    uint64_t queue = rawc_queue_create(&admin, s->tenant, "sms");
    rawc_default_queue(&admin, s->tenant, TICKETQ__CHANNEL__SMS, queue);
    rawc_token_issue(&admin, s->tenant, TICKETQ__ROLE__INTEGRATION, 0, s->token);
    rawc_close(&admin);
}

static uint64_t send_ingest(struct rawc *c, uint32_t n) {
    char from[32], body[64];
    snprintf(from, sizeof(from), "+1444%07u", n % 50); /* 50 customers: tickets grow */
    snprintf(body, sizeof(body), "message %u", n);
    Ticketq__Ingest op = TICKETQ__INGEST__INIT;
    op.channel = TICKETQ__CHANNEL__SMS;
    op.from = from;
    op.body = body;
    RAWC_REQ(req, ingest, INGEST, &op);
    uint64_t id = rawc_send(c, &req);
    TQ_CHECK(id != 0);
    return id;
}

/* n ingests, one at a time; returns the LSN of the last acknowledgement. */
static uint64_t ingest_n(struct rawc *c, uint32_t first, uint32_t n) {
    uint64_t lsn = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t id = send_ingest(c, first + i);
        Ticketq__Response *r = rawc_recv(c, 10000);
        TQ_CHECK(r != NULL);
        TQ_CHECK_UEQ(r->id, id);
        RAWC_EXPECT(r, 0);
        lsn = r->lsn;
        rawc_free(r);
    }
    return lsn;
}

static uint64_t send_snapshot_now(struct rawc *c) {
    Ticketq__SnapshotNow op = TICKETQ__SNAPSHOT_NOW__INIT;
    RAWC_REQ(req, snapshot_now, SNAPSHOT_NOW, &op);
    uint64_t id = rawc_send(c, &req);
    TQ_CHECK(id != 0);
    return id;
}

static uint64_t send_stats(struct rawc *c) {
    Ticketq__Stats op = TICKETQ__STATS__INIT;
    RAWC_REQ(req, stats, STATS, &op);
    uint64_t id = rawc_send(c, &req);
    TQ_CHECK(id != 0);
    return id;
}

/* Waits for the SnapshotNow response with id; returns its LSN (the request must succeed). */
static uint64_t expect_snapshot(struct rawc *c, uint64_t id) {
    Ticketq__Response *r = rawc_recv(c, 30000);
    TQ_CHECK(r != NULL);
    TQ_CHECK_UEQ(r->id, id);
    RAWC_EXPECT(r, 0);
    TQ_CHECK(r->has_lsn);
    uint64_t lsn = r->lsn;
    rawc_free(r);
    return lsn;
}

/* LSNs of DIR/snapshots/<lsn>.snap files, ascending; also counts *.tmp files. */
static size_t list_snapshots(const char *dir, uint64_t *lsns, size_t cap, size_t *tmps) {
    char path[512];
    snprintf(path, sizeof(path), "%s/snapshots", dir);
    DIR *d = opendir(path);
    size_t n = 0;
    if (tmps != NULL) *tmps = 0;
    if (d == NULL) return 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len > 4 && strcmp(de->d_name + len - 4, ".tmp") == 0 && tmps != NULL) (*tmps)++;
        if (len == 25 && strcmp(de->d_name + 20, ".snap") == 0 && n < cap) {
            lsns[n++] = strtoull(de->d_name, NULL, 10);
        }
    }
    closedir(d);
    for (size_t i = 1; i < n; i++) /* insertion sort: a handful of files */
        for (size_t j = i; j > 0 && lsns[j - 1] > lsns[j]; j--) {
            uint64_t t = lsns[j];
            lsns[j] = lsns[j - 1];
            lsns[j - 1] = t;
        }
    return n;
}

/* The digest of the state stored in DIR/snapshots/<lsn>.snap. */
static void snapshot_digest(const char *dir, uint64_t lsn, uint8_t out[16]) {
    char path[512];
    snprintf(path, sizeof(path), "%s/snapshots/%020" PRIu64 ".snap", dir, lsn);
    FILE *fp = fopen(path, "rb");
    TQ_CHECK(fp != NULL);
    TQ_CHECK_EQ(fseek(fp, 0, SEEK_END), 0);
    long size = ftell(fp);
    TQ_CHECK_GT(size, SNAP_HEADER_BYTES);
    uint8_t *buf = malloc((size_t)size);
    TQ_CHECK(buf != NULL);
    TQ_CHECK_EQ(fseek(fp, 0, SEEK_SET), 0);
    TQ_CHECK_EQ(fread(buf, 1, (size_t)size, fp), (size_t)size);
    fclose(fp);
    struct tq_state_options sopt = {0};
    struct tq_state *state = NULL;
    struct tq_error error;
    TQ_CHECK_OK(tq_state_deserialize(buf + SNAP_HEADER_BYTES, (size_t)size - SNAP_HEADER_BYTES,
                                     &sopt, &state, &error),
                &error);
    TQ_CHECK_UEQ(tq_state_lsn(state), lsn);
    tq_state_digest(state, out);
    tq_state_free(state);
    free(buf);
}

/* The digest of the state replayed from the log, every record up to lsn. */
static void replay_digest(const char *dir, uint64_t lsn, uint8_t out[16], struct tq_stats *st) {
    struct tq_state *state = NULL;
    uint64_t applied = 0;
    struct tq_error error;
    TQ_CHECK_OK(tq_ops_state_at(dir, lsn, &state, &applied, &error), &error);
    tq_state_digest(state, out);
    if (st != NULL) tq_state_stats(state, 0, st);
    tq_state_free(state);
}

static bool file_contains(const char *path, const char *needle) {
    FILE *fp = fopen(path, "r");
    if (fp == NULL) return false;
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof(line), fp) != NULL)
        found = strstr(line, needle) != NULL;
    fclose(fp);
    return found;
}

/* GET /metrics from the address the server logged ("metrics on http://HOST:PORT/metrics"). */
static void get_metrics(const struct tq_fixture *f, char *out, size_t cap) {
    char log_path[512], line[512];
    snprintf(log_path, sizeof(log_path), "%s/ticketqd.log", f->dir);
    FILE *fp = fopen(log_path, "r");
    TQ_CHECK(fp != NULL);
    unsigned port = 0;
    while (fgets(line, sizeof(line), fp) != NULL) {
        const char *m = strstr(line, "metrics on http://127.0.0.1:");
        if (m != NULL) port = (unsigned)atoi(m + strlen("metrics on http://127.0.0.1:"));
    }
    fclose(fp);
    TQ_CHECK(port > 0 && port < 65536);
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
    rawc_get_metrics(addr, out, cap);
}

/* Starts ticketqd with snapshots only on request (--snapshot-every 0) and the options in more
 * (NULL-terminated; NULL: none). child_delay_ms (NULL: none) makes every snapshot child sleep
 * that long before it writes (the server reads the variable at start, so it is unset again at
 * once). */
static void start_on_request_with(struct tq_fixture *f, const char *child_delay_ms,
                                  const char *const *more) {
    memset(f, 0, sizeof(*f));
    f->extra_args[0] = "--snapshot-every";
    f->extra_args[1] = "0";
    for (size_t i = 0; more != NULL && more[i] != NULL; i++) {
        TQ_CHECK(i + 3 < sizeof(f->extra_args) / sizeof(f->extra_args[0]));
        f->extra_args[2 + i] = more[i];
    }
    rawc_guard_fixture(f);
    if (child_delay_ms != NULL) setenv("TICKETQD_TEST_SNAPSHOT_DELAY_MS", child_delay_ms, 1);
    TQ_CHECK_EQ(tq_fixture_start(f), 0);
    unsetenv("TICKETQD_TEST_SNAPSHOT_DELAY_MS");
}

static void start_on_request(struct tq_fixture *f, const char *child_delay_ms) {
    start_on_request_with(f, child_delay_ms, NULL);
}

/* ---- a snapshot while clients ingest ----------------------------------------------------- */

static void test_snapshot_while_ingesting(void) {
    struct tq_fixture f;
    start_on_request(&f, "1500");
    struct setup s;
    setup_tenant(&f, &s);
    struct rawc a, b, c;
    rawc_open_authed(&a, f.addr, f.admin_token);
    rawc_open_authed(&b, f.addr, s.token);
    rawc_open_authed(&c, f.addr, f.admin_token);
    uint64_t before = ingest_n(&b, 0, 200);

    /* A asks for a snapshot and pipelines a Stats behind it. */
    int64_t t0 = mono_ms();
    uint64_t snap_id = send_snapshot_now(&a);
    uint64_t stats_id = send_stats(&a);
    /* B keeps ingesting; every answer arrives while A's snapshot is still being written. */
    uint64_t during = ingest_n(&b, 200, 100);
    int64_t t_ingested = mono_ms();
    Ticketq__Response *early = rawc_recv(&a, 0);
    if (early != NULL) {
        fprintf(stderr, "unexpected early response id %" PRIu64 " (code %d: %s)\n", early->id,
                rawc_code(early), early->error ? early->error->message : "");
    }
    TQ_CHECK(early == NULL);            /* nothing for A yet: its snapshot is not durable */
    TQ_CHECK_LT(t_ingested - t0, 1500); /* i.e. B was served inside the child's delay */
    /* C asks after B's new writes: A's snapshot does not cover them, so C gets the next one. */
    uint64_t c_id = send_snapshot_now(&c);

    uint64_t lsn_a = expect_snapshot(&a, snap_id);
    TQ_CHECK_GE(lsn_a, before);
    TQ_CHECK_LT(lsn_a, during);
    Ticketq__Response *r = rawc_recv(&a, 10000); /* the Stats, after the snapshot's answer */
    TQ_CHECK(r != NULL);
    TQ_CHECK_UEQ(r->id, stats_id);
    RAWC_EXPECT(r, 0);
    rawc_free(r);
    uint64_t lsn_c = expect_snapshot(&c, c_id);
    TQ_CHECK_GE(lsn_c, during);
    /* Nothing written since: a SnapshotNow now is answered with C's snapshot at once. */
    uint64_t again_id = send_snapshot_now(&c);
    TQ_CHECK_UEQ(expect_snapshot(&c, again_id), lsn_c);

    /* The server's counts now, to compare after the restart. */
    uint64_t sid = send_stats(&c);
    r = rawc_recv(&c, 10000);
    TQ_CHECK(r != NULL && r->id == sid && r->stats != NULL);
    uint64_t tickets = r->stats->tickets, messages = r->stats->messages;
    rawc_free(r);
    TQ_CHECK_UEQ(messages, 300);
    rawc_close(&a);
    rawc_close(&b);
    rawc_close(&c);
    TQ_CHECK_EQ(tq_fixture_stop(&f), 0);

    /* Both snapshots hold exactly the state replay gives at their LSN. */
    uint64_t lsns[8];
    TQ_CHECK_EQ(list_snapshots(f.dir, lsns, 8, NULL), 2);
    TQ_CHECK_UEQ(lsns[0], lsn_a);
    TQ_CHECK_UEQ(lsns[1], lsn_c);
    uint8_t d_snap[16], d_replay[16];
    for (int i = 0; i < 2; i++) {
        snapshot_digest(f.dir, lsns[i], d_snap);
        replay_digest(f.dir, lsns[i], d_replay, NULL);
        TQ_CHECK_MEM_EQ(d_snap, d_replay, 16);
    }

    /* The restart loads C's snapshot and ends at the full replay's state. */
    TQ_CHECK_EQ(tq_fixture_start(&f), 0);
    char log_path[512], needle[96];
    snprintf(log_path, sizeof(log_path), "%s/ticketqd.log", f.dir);
    snprintf(needle, sizeof(needle), "snapshot at LSN %" PRIu64 " loaded", lsn_c);
    TQ_CHECK(file_contains(log_path, needle));
    struct tq_stats full;
    replay_digest(f.dir, UINT64_MAX, d_replay, &full);
    TQ_CHECK_UEQ(full.ticket_count, tickets);
    TQ_CHECK_UEQ(full.message_count, messages);
    rawc_open_authed(&a, f.addr, f.admin_token);
    sid = send_stats(&a);
    r = rawc_recv(&a, 10000);
    TQ_CHECK(r != NULL && r->id == sid && r->stats != NULL);
    TQ_CHECK_UEQ(r->stats->tickets, tickets);
    TQ_CHECK_UEQ(r->stats->messages, messages);
    rawc_free(r);
    rawc_close(&a);
    TQ_CHECK_EQ(tq_fixture_stop(&f), 0);
    tq_fixture_cleanup(&f);
    printf("snapshot while ingesting: ok (LSN %" PRIu64 " and %" PRIu64 ")\n", lsn_a, lsn_c);
}

/* ---- automatic snapshots ------------------------------------------------------------------ */

static void test_automatic(void) {
    /* Through the config file, which takes the same names as the command line. */
    char cfg[] = "/tmp/tq-snap-cfg-XXXXXX";
    int cfd = mkstemp(cfg);
    TQ_CHECK(cfd >= 0);
    const char text[] = "# background snapshots\nsnapshot-every = 200\nsnapshots-keep = 3\n"
                        "snapshot-growth = 0\n";
    TQ_CHECK_EQ(write(cfd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
    close(cfd);
    struct tq_fixture f;
    memset(&f, 0, sizeof(f));
    f.extra_args[0] = "--config";
    f.extra_args[1] = cfg;
    rawc_guard_fixture(&f);
    TQ_CHECK_EQ(tq_fixture_start(&f), 0);
    struct setup s;
    setup_tenant(&f, &s);
    struct rawc b;
    rawc_open_authed(&b, f.addr, s.token);
    /* 100 ingests = 200 records (command + events): at least one snapshot is due. */
    uint64_t last = ingest_n(&b, 0, 100);
    uint64_t lsns[64];
    size_t n = 0;
    for (int64_t deadline = mono_ms() + 10000; n == 0 && mono_ms() < deadline; sleep_ms(20))
        n = list_snapshots(f.dir, lsns, 64, NULL);
    TQ_CHECK_EQ(n, 1);
    TQ_CHECK_GE(lsns[0] + 1, 200); /* its last command; the events record follows */
    TQ_CHECK_LE(lsns[0], last);
    /* 500 more: several snapshots, of which the newest 3 are kept. */
    last = ingest_n(&b, 100, 500);
    size_t tmps = 1;
    for (int64_t deadline = mono_ms() + 10000; mono_ms() < deadline; sleep_ms(20)) {
        n = list_snapshots(f.dir, lsns, 64, &tmps);
        if (n == 3 && tmps == 0 && lsns[2] + 200 > last) break;
    }
    TQ_CHECK_EQ(n, 3);
    TQ_CHECK_EQ(tmps, 0);
    TQ_CHECK_LT(lsns[0], lsns[1]);
    TQ_CHECK_LT(lsns[1], lsns[2]);
    TQ_CHECK_GT(lsns[2] + 200, last); /* caught up: fewer than N records after the newest */
    rawc_close(&b);
    TQ_CHECK_EQ(tq_fixture_stop(&f), 0);
    uint8_t d_snap[16], d_replay[16];
    snapshot_digest(f.dir, lsns[2], d_snap);
    replay_digest(f.dir, lsns[2], d_replay, NULL);
    TQ_CHECK_MEM_EQ(d_snap, d_replay, 16);
    tq_fixture_cleanup(&f);
    unlink(cfg);

    /* --snapshot-every 0: none, however much is written. */
    start_on_request(&f, NULL);
    setup_tenant(&f, &s);
    rawc_open_authed(&b, f.addr, s.token);
    (void)ingest_n(&b, 0, 300);
    rawc_close(&b);
    TQ_CHECK_EQ(tq_fixture_stop(&f), 0);
    TQ_CHECK_EQ(list_snapshots(f.dir, lsns, 64, NULL), 0);
    tq_fixture_cleanup(&f);
    printf("automatic snapshots: ok\n");
}

/* ---- --snapshot-growth --------------------------------------------------------------------- */

/* Size of DIR/snapshots/<lsn>.snap. */
static uint64_t snapshot_file_bytes(const char *dir, uint64_t lsn) {
    char path[512];
    snprintf(path, sizeof(path), "%s/snapshots/%020" PRIu64 ".snap", dir, lsn);
    struct stat st;
    TQ_CHECK_EQ(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

struct snap_metrics {
    uint64_t total, failures, running, last_lsn, file_bytes, since, auto_records, auto_bytes;
};

static void read_snap_metrics(const struct tq_fixture *f, struct snap_metrics *m) {
    static char text[65536];
    get_metrics(f, text, sizeof(text));
    m->total = rawc_metric_value(text, "ticketq_snapshots_total");
    m->failures = rawc_metric_value(text, "ticketq_snapshot_failures_total");
    m->running = rawc_metric_value(text, "ticketq_snapshot_in_progress");
    m->last_lsn = rawc_metric_value(text, "ticketq_snapshot_last_lsn");
    m->file_bytes = rawc_metric_value(text, "ticketq_snapshot_last_file_bytes");
    m->since = rawc_metric_value(text, "ticketq_snapshot_log_bytes_since");
    m->auto_records = rawc_metric_value(text, "ticketq_snapshot_auto_records");
    m->auto_bytes = rawc_metric_value(text, "ticketq_snapshot_auto_log_bytes");
}

/* Polls the metrics until no snapshot runs and total snapshots reach want (10 s at most). */
static void wait_snapshots(const struct tq_fixture *f, uint64_t want, struct snap_metrics *m) {
    for (int64_t deadline = mono_ms() + 10000; mono_ms() < deadline; sleep_ms(10)) {
        read_snap_metrics(f, m);
        if (m->total >= want && m->running == 0) return;
    }
    TQ_CHECK_UEQ(m->total, want);
    TQ_CHECK_UEQ(m->running, 0);
}

#define GROWTH_EVERY "10"   /* records: 5 ingests (command + events each) */
#define GROWTH_PCT   "3000" /* of the first snapshot's file (~5 KB): dozens of 4 KiB batches */

/* Makes every snapshot write fail: the tests run as root, so permissions cannot stop a write;
 * a file takes the place of DIR/snapshots (moved to DIR/snapshots.away). */
static void snapshots_block(const char *dir) {
    char snaps[512], away[520];
    snprintf(snaps, sizeof(snaps), "%s/snapshots", dir);
    snprintf(away, sizeof(away), "%s.away", snaps);
    TQ_CHECK_EQ(rename(snaps, away), 0);
    int fd = open(snaps, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    TQ_CHECK(fd >= 0);
    close(fd);
}

/* Undoes snapshots_block. */
static void snapshots_unblock(const char *dir) {
    char snaps[512], away[520];
    snprintf(snaps, sizeof(snaps), "%s/snapshots", dir);
    snprintf(away, sizeof(away), "%s.away", snaps);
    TQ_CHECK_EQ(unlink(snaps), 0);
    TQ_CHECK_EQ(rename(away, snaps), 0);
}

static void test_growth(void) {
    struct tq_fixture f;
    memset(&f, 0, sizeof(f));
    const char *args[] = {"--snapshot-every", GROWTH_EVERY, "--snapshot-growth",
                          GROWTH_PCT,         "--metrics",  "127.0.0.1:0",
                          "--snapshots-keep", "8",          NULL};
    memcpy(f.extra_args, args, sizeof(args));
    rawc_guard_fixture(&f);
    TQ_CHECK_EQ(tq_fixture_start(&f), 0);
    struct setup s;
    setup_tenant(&f, &s);
    struct rawc a, b;
    rawc_open_authed(&b, f.addr, s.token);
    rawc_open_authed(&a, f.addr, f.admin_token);
    struct snap_metrics m;
    read_snap_metrics(&f, &m);
    TQ_CHECK_UEQ(m.file_bytes, 0); /* no snapshot yet: the record count alone decides */
    TQ_CHECK_UEQ(m.total, 0);
    (void)ingest_n(&b, 0, 5);
    wait_snapshots(&f, 1, &m);
    uint64_t lsns[16];
    TQ_CHECK_EQ(list_snapshots(f.dir, lsns, 16, NULL), 1);
    uint64_t base = snapshot_file_bytes(f.dir, lsns[0]);
    TQ_CHECK_UEQ(m.file_bytes, base);
    TQ_CHECK_GE(m.auto_records, 10);
    TQ_CHECK_GT(m.auto_bytes, 0);
    const uint64_t need = base * (uint64_t)atoi(GROWTH_PCT) / 100; /* log bytes */

    /* One ingest at a time: the record count is reached after 5, the bytes much later. While
     * the metrics show neither a run nor a second snapshot, the bytes are below the need (the
     * loop checks the policy in the turn that submits a batch, before its answer is sent). */
    uint32_t i = 5, waited = 0;
    uint64_t before = 0;
    for (;;) {
        TQ_CHECK_LT(waited, 10000); /* bounded: 4 KiB or more per batch */
        (void)ingest_n(&b, i++, 1);
        waited++;
        read_snap_metrics(&f, &m);
        if (m.total >= 2 || m.running > 0) break;
        TQ_CHECK_LT(m.since, need);
        before = m.since;
    }
    TQ_CHECK_GT(waited, 10); /* far more than the 5 ingests of the record count */
    TQ_CHECK_GT(before, 0);  /* the count grew while nothing started */
    wait_snapshots(&f, 2, &m);
    TQ_CHECK_GE(m.auto_bytes, need); /* what started it */
    TQ_CHECK_GT(m.auto_bytes, before);
    TQ_CHECK_GE(m.auto_records, 2u * waited);
    TQ_CHECK_EQ(list_snapshots(f.dir, lsns, 16, NULL), 2);
    TQ_CHECK_UEQ(m.file_bytes, snapshot_file_bytes(f.dir, lsns[1]));
    TQ_CHECK_LT(m.since, m.auto_bytes); /* counted from the new snapshot */
    char log_path[512];
    snprintf(log_path, sizeof(log_path), "%s/ticketqd.log", f.dir);
    char needle[160];
    snprintf(needle, sizeof(needle), "automatic: %" PRIu64 " records, %" PRIu64 " log bytes",
             m.auto_records, m.auto_bytes);
    TQ_CHECK(file_contains(log_path, needle));
    printf("growth: the second snapshot started after %u ingests, %" PRIu64 " log bytes >= %" PRIu64
           " (%s%% of %" PRIu64 ")\n",
           waited, m.auto_bytes, need, GROWTH_PCT, base);

    /* A failed automatic snapshot moves nothing. */
    base = m.file_bytes;
    uint64_t last_lsn = m.last_lsn;
    snapshots_block(f.dir);
    for (waited = 0; m.failures == 0; waited++) {
        TQ_CHECK_LT(waited, 10000);
        (void)ingest_n(&b, i++, 1);
        read_snap_metrics(&f, &m);
        if (m.running > 0) {
            for (int64_t deadline = mono_ms() + 10000; m.running > 0 && mono_ms() < deadline;
                 sleep_ms(10))
                read_snap_metrics(&f, &m);
        }
    }
    TQ_CHECK_UEQ(m.failures, 1);
    TQ_CHECK_UEQ(m.total, 2);
    TQ_CHECK_UEQ(m.file_bytes, base);
    TQ_CHECK_UEQ(m.last_lsn, last_lsn);
    TQ_CHECK_GE(m.since, base * (uint64_t)atoi(GROWTH_PCT) / 100); /* not reset */
    uint64_t since_failed = m.since;
    (void)ingest_n(&b, i, 20); /* due, but within the retry delay: no second attempt */
    i += 20;
    read_snap_metrics(&f, &m);
    TQ_CHECK_UEQ(m.failures, 1);
    TQ_CHECK_UEQ(m.running, 0);
    TQ_CHECK_GT(m.since, since_failed);
    snapshots_unblock(f.dir);
    /* A requested snapshot resets the count like an automatic one. */
    uint64_t snap_lsn = expect_snapshot(&a, send_snapshot_now(&a));
    read_snap_metrics(&f, &m);
    TQ_CHECK_UEQ(m.total, 3);
    TQ_CHECK_UEQ(m.last_lsn, snap_lsn);
    TQ_CHECK_UEQ(m.file_bytes, snapshot_file_bytes(f.dir, snap_lsn));
    TQ_CHECK_UEQ(m.since, 0); /* nothing after it: the client waited for its answer */

    /* A restart: the loaded snapshot is the base, the log after it counts as grown. */
    (void)ingest_n(&b, i, 8);
    read_snap_metrics(&f, &m);
    uint64_t since_stop = m.since, file_stop = m.file_bytes;
    TQ_CHECK_GT(since_stop, 0);
    TQ_CHECK_UEQ(m.total, 3); /* 8 ingests are below the need */
    rawc_close(&a);
    rawc_close(&b);
    TQ_CHECK_EQ(tq_fixture_stop(&f), 0);
    TQ_CHECK_EQ(tq_fixture_start(&f), 0);
    read_snap_metrics(&f, &m);
    TQ_CHECK_UEQ(m.last_lsn, snap_lsn);
    TQ_CHECK_UEQ(m.file_bytes, file_stop);
    TQ_CHECK_UEQ(m.since, since_stop);
    TQ_CHECK_EQ(tq_fixture_stop(&f), 0);
    tq_fixture_cleanup(&f);

    /* --snapshot-growth 0: the record count alone starts the second snapshot too. */
    memset(&f, 0, sizeof(f));
    const char *args0[] = {"--snapshot-every", GROWTH_EVERY, "--snapshot-growth", "0", "--metrics",
                           "127.0.0.1:0",      NULL};
    memcpy(f.extra_args, args0, sizeof(args0));
    rawc_guard_fixture(&f);
    TQ_CHECK_EQ(tq_fixture_start(&f), 0);
    setup_tenant(&f, &s);
    rawc_open_authed(&b, f.addr, s.token);
    (void)ingest_n(&b, 0, 5);
    wait_snapshots(&f, 1, &m);
    (void)ingest_n(&b, 5, 6); /* 12 records, far below the bytes growth 3000 needs */
    wait_snapshots(&f, 2, &m);
    TQ_CHECK_LT(m.auto_bytes, need);
    rawc_close(&b);
    TQ_CHECK_EQ(tq_fixture_stop(&f), 0);
    tq_fixture_cleanup(&f);
    printf("snapshot growth: ok\n");
}

/* ---- kill -9 during a background snapshot ------------------------------------------------- */

static void test_kill_during_snapshot(void) {
    struct tq_fixture f;
    start_on_request(&f, "1500");
    struct setup s;
    setup_tenant(&f, &s);
    struct rawc a, b;
    rawc_open_authed(&b, f.addr, s.token);
    (void)ingest_n(&b, 0, 100);
    rawc_open_authed(&a, f.addr, f.admin_token);
    (void)send_snapshot_now(&a);
    uint64_t acked = ingest_n(&b, 100, 50); /* acknowledged while the snapshot runs */
    /* What a child killed in the middle of its write leaves behind. */
    char tmp[512];
    snprintf(tmp, sizeof(tmp), "%s/snapshots/%020" PRIu64 ".snap.tmp", f.dir, acked);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    TQ_CHECK(fd >= 0);
    TQ_CHECK_EQ(write(fd, "SNP1 torn", 9), 9);
    close(fd);
    tq_fixture_kill9(&f);
    TQ_CHECK(rawc_wait_closed(&a, 5000));
    rawc_close(&a);
    rawc_close(&b);
    sleep_ms(2000); /* past the child's delay: had it survived, its snapshot would be here */
    uint64_t lsns[8];
    TQ_CHECK_EQ(list_snapshots(f.dir, lsns, 8, NULL), 0);

    TQ_CHECK_EQ(tq_fixture_start(&f), 0);
    size_t tmps = 99;
    TQ_CHECK_EQ(list_snapshots(f.dir, lsns, 8, &tmps), 0);
    TQ_CHECK_EQ(tmps, 0);
    char log_path[512];
    snprintf(log_path, sizeof(log_path), "%s/ticketqd.log", f.dir);
    TQ_CHECK(file_contains(log_path, "left by an interrupted snapshot"));
    rawc_open_authed(&a, f.addr, f.admin_token);
    uint64_t sid = send_stats(&a);
    Ticketq__Response *r = rawc_recv(&a, 10000);
    TQ_CHECK(r != NULL && r->id == sid && r->stats != NULL);
    TQ_CHECK_UEQ(r->stats->messages, 150); /* every acknowledged ingest */
    rawc_free(r);
    /* And snapshots work again on this directory. */
    uint64_t lsn = expect_snapshot(&a, send_snapshot_now(&a));
    TQ_CHECK_GE(lsn, acked);
    rawc_close(&a);
    TQ_CHECK_EQ(tq_fixture_stop(&f), 0);
    tq_fixture_cleanup(&f);
    printf("kill -9 during a snapshot: ok\n");
}

/* ---- the child waits until its LSN is durable ------------------------------------------- */

/* The size a complete DIR/snapshots/<lsn>.snap.tmp has (64-byte header + blob_bytes), or -1 while
 * its header is not written yet. */
static long long complete_tmp_size(const char *dir, uint64_t *lsn_out, long long *size_out) {
    char path[512];
    snprintf(path, sizeof(path), "%s/snapshots", dir);
    DIR *d = opendir(path);
    TQ_CHECK(d != NULL);
    long long want = -1;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strlen(de->d_name) != 29 || strcmp(de->d_name + 20, ".snap.tmp") != 0) continue;
        char tmp[800];
        snprintf(tmp, sizeof(tmp), "%s/%s", path, de->d_name);
        int fd = open(tmp, O_RDONLY);
        if (fd < 0) continue;
        uint64_t blob_bytes = 0;
        struct stat sb;
        if (pread(fd, &blob_bytes, 8, 16) == 8 && fstat(fd, &sb) == 0 && blob_bytes > 0) {
            want = (long long)(SNAP_HEADER_BYTES + blob_bytes);
            *lsn_out = strtoull(de->d_name, NULL, 10);
            *size_out = (long long)sb.st_size;
        }
        close(fd);
    }
    closedir(d);
    return want;
}

/* The snapshot is forked at the applied LSN, before the log has made it durable; the child
 * writes its temp file and publishes (renames) it only after the server's go. The test seam
 * TICKETQD_TEST_SNAPSHOT_GO_DELAY_MS holds the go back, as a slow commit would. Checks: while
 * the go is held the temp file is complete and no snapshot exists, other clients are served;
 * the SnapshotNow answer comes only after the go; a kill -9 while the child waits leaves no
 * snapshot (at most the temp file, which the restart removes), and every acknowledged ingest
 * is served. */
static void test_snapshot_waits_for_durable(void) {
    for (int kill_it = 0; kill_it < 2; kill_it++) {
        struct tq_fixture f;
        memset(&f, 0, sizeof(f));
        f.extra_args[0] = "--snapshot-every";
        f.extra_args[1] = "0";
        rawc_guard_fixture(&f);
        setenv("TICKETQD_TEST_SNAPSHOT_GO_DELAY_MS", "2500", 1);
        TQ_CHECK_EQ(tq_fixture_start(&f), 0);
        unsetenv("TICKETQD_TEST_SNAPSHOT_GO_DELAY_MS");
        struct setup s;
        setup_tenant(&f, &s);
        struct rawc a, b;
        rawc_open_authed(&b, f.addr, s.token);
        (void)ingest_n(&b, 0, 100);
        rawc_open_authed(&a, f.addr, f.admin_token);
        int64_t t0 = mono_ms();
        uint64_t snap_id = send_snapshot_now(&a);
        /* The child writes the whole temp file and then waits. */
        uint64_t tmp_lsn = 0;
        long long size = 0, want = -1;
        while (mono_ms() - t0 < 2000) {
            want = complete_tmp_size(f.dir, &tmp_lsn, &size);
            if (want > 0 && size == want) break;
            sleep_ms(10);
        }
        TQ_CHECK_GT(want, SNAP_HEADER_BYTES);
        TQ_CHECK_EQ(size, want);
        uint64_t acked = ingest_n(&b, 100, 50); /* served while the child waits */
        TQ_CHECK_LT(mono_ms() - t0, 2500);
        uint64_t lsns[8];
        TQ_CHECK_EQ(list_snapshots(f.dir, lsns, 8, NULL), 0); /* nothing published */
        Ticketq__Response *early = rawc_recv(&a, 0);
        TQ_CHECK(early == NULL);
        if (!kill_it) {
            uint64_t lsn = expect_snapshot(&a, snap_id);
            TQ_CHECK_GE(mono_ms() - t0, 2500); /* not before the go */
            TQ_CHECK_UEQ(lsn, tmp_lsn);
            TQ_CHECK_LT(lsn, acked);
            size_t tmps = 99;
            TQ_CHECK_EQ(list_snapshots(f.dir, lsns, 8, &tmps), 1);
            TQ_CHECK_EQ(tmps, 0);
            TQ_CHECK_UEQ(lsns[0], lsn);
            rawc_close(&a);
            rawc_close(&b);
            TQ_CHECK_EQ(tq_fixture_stop(&f), 0);
            uint8_t d_snap[16], d_replay[16];
            snapshot_digest(f.dir, lsn, d_snap);
            replay_digest(f.dir, lsn, d_replay, NULL);
            TQ_CHECK_MEM_EQ(d_snap, d_replay, 16);
            tq_fixture_cleanup(&f);
            continue;
        }
        tq_fixture_kill9(&f);
        TQ_CHECK(rawc_wait_closed(&a, 5000));
        rawc_close(&a);
        rawc_close(&b);
        sleep_ms(3000); /* past the held go: had the child survived, its snapshot would be here */
        /* The child either died with the server (SIGKILL) leaving the complete temp file, or
         * read EOF on the go pipe first and removed it itself: never a snapshot. */
        size_t left = 99, tmps = 99;
        TQ_CHECK_EQ(list_snapshots(f.dir, lsns, 8, &left), 0);
        TQ_CHECK_LE(left, 1);
        TQ_CHECK_EQ(tq_fixture_start(&f), 0);
        TQ_CHECK_EQ(list_snapshots(f.dir, lsns, 8, &tmps), 0);
        TQ_CHECK_EQ(tmps, 0);
        char log_path[512];
        snprintf(log_path, sizeof(log_path), "%s/ticketqd.log", f.dir);
        TQ_CHECK_EQ(file_contains(log_path, "left by an interrupted snapshot"), left == 1);
        rawc_open_authed(&a, f.addr, f.admin_token);
        uint64_t sid = send_stats(&a);
        Ticketq__Response *r = rawc_recv(&a, 10000);
        TQ_CHECK(r != NULL && r->id == sid && r->stats != NULL);
        TQ_CHECK_UEQ(r->stats->messages, 150); /* every acknowledged ingest */
        rawc_free(r);
        TQ_CHECK_GE(expect_snapshot(&a, send_snapshot_now(&a)), acked - 1);
        rawc_close(&a);
        TQ_CHECK_EQ(tq_fixture_stop(&f), 0);
        tq_fixture_cleanup(&f);
    }
    printf("snapshot waits for its LSN to be durable: ok\n");
}

/* ---- SIGTERM during a background snapshot ------------------------------------------------- */

static void test_sigterm_during_snapshot(void) {
    struct tq_fixture f;
    start_on_request(&f, "5000");
    struct setup s;
    setup_tenant(&f, &s);
    struct rawc a, b;
    rawc_open_authed(&b, f.addr, s.token);
    (void)ingest_n(&b, 0, 20);
    rawc_open_authed(&a, f.addr, f.admin_token);
    uint64_t id = send_snapshot_now(&a);
    sleep_ms(200); /* the child is sleeping before its write */
    int64_t t0 = mono_ms();
    TQ_CHECK_EQ(tq_fixture_stop(&f), 0); /* drains; the snapshot is abandoned, not awaited */
    TQ_CHECK_LT(mono_ms() - t0, 4000);
    /* The waiter gets UNAVAILABLE or sees the connection close; never a success. */
    Ticketq__Response *r = rawc_recv(&a, 2000);
    if (r != NULL) {
        TQ_CHECK_UEQ(r->id, id);
        TQ_CHECK(r->error != NULL);
        TQ_CHECK_EQ((int)r->error->code, (int)TICKETQ__ERROR_CODE__UNAVAILABLE);
        rawc_free(r);
    }
    rawc_close(&a);
    rawc_close(&b);
    sleep_ms(300);
    uint64_t lsns[8];
    size_t tmps = 99;
    TQ_CHECK_EQ(list_snapshots(f.dir, lsns, 8, &tmps), 0);
    TQ_CHECK_EQ(tmps, 0);
    char log_path[512];
    snprintf(log_path, sizeof(log_path), "%s/ticketqd.log", f.dir);
    TQ_CHECK(file_contains(log_path, "abandoned: the server is shutting down"));
    tq_fixture_cleanup(&f);
    printf("SIGTERM during a snapshot: ok\n");
}

/* ---- a snapshot that cannot be written --------------------------------------------------- */

static void test_failing_snapshot(void) {
    struct tq_fixture f;
    const char *const more[] = {"--metrics", "127.0.0.1:0", NULL};
    start_on_request_with(&f, NULL, more);
    struct setup s;
    setup_tenant(&f, &s);
    struct rawc a, b;
    rawc_open_authed(&b, f.addr, s.token);
    rawc_open_authed(&a, f.addr, f.admin_token);
    (void)ingest_n(&b, 0, 20);
    snapshots_block(f.dir);
    uint64_t id = send_snapshot_now(&a);
    Ticketq__Response *r = rawc_recv(&a, 30000);
    TQ_CHECK(r != NULL);
    TQ_CHECK_UEQ(r->id, id);
    TQ_CHECK(r->error != NULL);
    TQ_CHECK_EQ((int)r->error->code, (int)TICKETQ__ERROR_CODE__INTERNAL);
    TQ_CHECK(strstr(r->error->message, "snapshot") != NULL);
    TQ_CHECK(strstr(r->error->message, strerror(ENOTDIR)) != NULL);
    printf("failing snapshot says: %s\n", r->error->message);
    rawc_free(r);
    /* The server keeps serving, and the next snapshot works once the directory is back. */
    uint64_t lsn = ingest_n(&b, 20, 20);
    snapshots_unblock(f.dir);
    uint64_t snap_lsn = expect_snapshot(&a, send_snapshot_now(&a));
    TQ_CHECK_GE(snap_lsn, lsn - 1);
    /* The metrics count both and name the newest snapshot. */
    static char text[65536];
    get_metrics(&f, text, sizeof(text));
    char want[96];
    snprintf(want, sizeof(want), "\nticketq_snapshot_last_lsn %" PRIu64 "\n", snap_lsn);
    TQ_CHECK(strstr(text, "\nticketq_snapshots_total 1\n") != NULL);
    TQ_CHECK(strstr(text, "\nticketq_snapshot_failures_total 1\n") != NULL);
    TQ_CHECK(strstr(text, want) != NULL);
    TQ_CHECK(strstr(text, "\nticketq_snapshot_in_progress 0\n") != NULL);
    rawc_close(&a);
    rawc_close(&b);
    TQ_CHECK_EQ(tq_fixture_stop(&f), 0);
    tq_fixture_cleanup(&f);
    printf("failing snapshot: ok\n");
}

/* ---- the child's pre-copy ----------------------------------------------------------------- */

/* n ingests from n first-time senders (one ticket each), up to 256 in flight. */
static void ingest_senders(struct rawc *c, uint32_t first, uint32_t n) {
    uint32_t sent = 0, got = 0;
    while (got < n) {
        while (sent < n && sent - got < 256) {
            char from[32], body[32];
            snprintf(from, sizeof(from), "+1555%07u", first + sent);
            snprintf(body, sizeof(body), "hello %u", first + sent);
            Ticketq__Ingest op = TICKETQ__INGEST__INIT;
            op.channel = TICKETQ__CHANNEL__SMS;
            op.from = from;
            op.body = body;
            RAWC_REQ(req, ingest, INGEST, &op);
            TQ_CHECK(rawc_send(c, &req) != 0);
            sent++;
        }
        Ticketq__Response *r = rawc_recv(c, 10000);
        TQ_CHECK(r != NULL);
        RAWC_EXPECT(r, 0);
        rawc_free(r);
        got++;
    }
}

/* One SnapshotNow on a server started with precopy ("on" or "off"); returns the metric. */
static uint64_t precopy_run(const char *precopy, uint32_t senders) {
    struct tq_fixture f;
    const char *const more[] = {"--metrics", "127.0.0.1:0", "--snapshot-precopy", precopy, NULL};
    start_on_request_with(&f, NULL, more);
    struct setup s;
    setup_tenant(&f, &s);
    struct rawc a, b;
    rawc_open_authed(&b, f.addr, s.token);
    rawc_open_authed(&a, f.addr, f.admin_token);
    ingest_senders(&b, 0, senders);
    uint64_t lsn = expect_snapshot(&a, send_snapshot_now(&a));
    static char text[65536];
    get_metrics(&f, text, sizeof(text));
    uint64_t bytes = rawc_metric_value(text, "ticketq_snapshot_last_precopy_bytes");
    TQ_CHECK_UEQ(rawc_metric_value(text, "ticketq_snapshots_total"), 1);
    rawc_close(&a);
    rawc_close(&b);
    TQ_CHECK_EQ(tq_fixture_stop(&f), 0);
    /* the log line says the same */
    char log_path[512], needle[96];
    snprintf(log_path, sizeof(log_path), "%s/ticketqd.log", f.dir);
    snprintf(needle, sizeof(needle), "pre-copied %.1f MB", (double)bytes / 1e6);
    TQ_CHECK(file_contains(log_path, needle));
    /* the pre-copy changed no byte of what the child serialised */
    uint8_t d_snap[16], d_replay[16];
    snapshot_digest(f.dir, lsn, d_snap);
    replay_digest(f.dir, lsn, d_replay, NULL);
    TQ_CHECK_MEM_EQ(d_snap, d_replay, 16);
    tq_fixture_cleanup(&f);
    printf("pre-copy %s: %" PRIu64 " bytes, snapshot at LSN %" PRIu64 " equals replay\n", precopy,
           bytes, lsn);
    return bytes;
}

static void test_precopy(void) {
    /* 9,000 tickets of 192 bytes: past chunk 0 (4,096) into the slab's first huge-page group */
    TQ_CHECK(precopy_run("on", 9000) > 0);
    TQ_CHECK_UEQ(precopy_run("off", 200), 0);
}

int main(void) {
    (void)tq_test_seed("test_server_snapshot");
    test_snapshot_while_ingesting();
    test_automatic();
    test_growth();
    test_kill_during_snapshot();
    test_snapshot_waits_for_durable();
    test_sigterm_during_snapshot();
    test_failing_snapshot();
    test_precopy();
    printf("test_server_snapshot: ok\n");
    return 0;
}
