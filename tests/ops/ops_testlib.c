/* tests/ops/ops_testlib.c: data directories built the way the server builds them.
 *
 * Goal: give every tq_ops test a real log (real segments, batches, hash chain) whose records
 * are exactly what ticketqd writes, plus the live state's digest after each LSN. Method: apply
 * to a live state first; only a command that applied is encoded and appended (the server never
 * logs a failed command), one tq_log_sync per command so each command is its own batch and
 * every LSN is a batch boundary (point-in-time tests can cut anywhere).
 */
#include "ops_testlib.h"

#ifdef TQ_OPS_EVENTS_CODEC
#include "events_codec.h"
#endif
#include "tq_alloc.h"
#include "tq_test.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

void ops_tmpdir(const char *tag, char *out, size_t cap) {
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0') base = "/tmp";
    snprintf(out, cap, "%s/tq-ops-%s-XXXXXX", base, tag);
    TQ_CHECK(mkdtemp(out) != NULL);
}

void ops_rm_rf(const char *dir) {
    if (dir == NULL || dir[0] == '\0' || strcmp(dir, "/") == 0) return;
    if (getenv("TQ_OPS_KEEP") != NULL) return; /* debugging: keep the directories */
    TQ_CHECK_EQ(ops_sh("rm -rf '%s'", dir), 0);
}

static uint64_t opt_segment_bytes = OPS_SEGMENT_BYTES;
static uint32_t opt_batch_bytes = 16 * 1024;
static enum tq_fsync_mode opt_fsync = TQ_FSYNC_ALWAYS;

static void open_log(struct ops_db *db) {
    struct tq_log_options opt;
    memset(&opt, 0, sizeof(opt));
    opt.dir = db->dir;
    opt.segment_bytes_max = opt_segment_bytes;
    opt.record_bytes_max = 8 * 1024;
    opt.batch_bytes_max = opt_batch_bytes;
    opt.fsync_mode = opt_fsync;
    opt.ring_tag = 0x33;
    opt.spare_no_prezero = true;
    struct tq_error error;
    TQ_CHECK_OK(tq_log_open(&opt, &db->log, NULL, &error), &error);
}

void ops_db_open_ex(struct ops_db *db, const char *dir, uint64_t segment_bytes,
                    uint32_t batch_bytes, enum tq_fsync_mode fsync_mode) {
    opt_segment_bytes = segment_bytes;
    opt_batch_bytes = batch_bytes;
    opt_fsync = fsync_mode;
    ops_db_open(db, dir);
}

void ops_db_sync(struct ops_db *db) {
    struct tq_error error;
    TQ_CHECK_OK(tq_log_sync(db->log, &error), &error);
    db->since_sync = 0;
}

/* Appends one record, making room in the batch buffer first if it is full. */
static uint64_t append(struct ops_db *db, uint16_t type, const void *buf, size_t len) {
    uint64_t got = 0;
    struct tq_error error;
    enum tq_err err = tq_log_append(db->log, type, buf, (uint32_t)len, &got, &error);
    if (err == TQ_ERR_RESOURCE_EXHAUSTED) {
        ops_db_sync(db);
        err = tq_log_append(db->log, type, buf, (uint32_t)len, &got, &error);
    }
    TQ_CHECK_OK(err, &error);
    return got;
}

static void maybe_sync(struct ops_db *db) {
    if (++db->since_sync >= (db->sync_every > 1 ? db->sync_every : 1)) ops_db_sync(db);
}

void ops_db_open(struct ops_db *db, const char *dir) {
    memset(db, 0, sizeof(*db));
    snprintf(db->dir, sizeof(db->dir), "%s", dir);
    open_log(db);
    db->state = tq_state_new(NULL);
    TQ_CHECK(db->state != NULL);
    db->now_ms = 1762830000000ull; /* 2025-11-11T03:00:00Z: Singles' Day, China */
    db->digest_cap = 1024;
    db->digests = tq_xcalloc(db->digest_cap, 16);
    tq_state_digest(db->state, db->digests[0]);
}

void ops_db_reopen_log(struct ops_db *db) {
    TQ_CHECK(db->log == NULL);
    open_log(db);
    TQ_CHECK_UEQ(tq_log_next_lsn(db->log), db->lsn_last + 1);
}

void ops_db_close_log(struct ops_db *db) {
    if (db->log != NULL && db->since_sync > 0) ops_db_sync(db);
    if (db->log != NULL) tq_log_close(db->log);
    db->log = NULL;
}

void ops_db_close(struct ops_db *db) {
    ops_db_close_log(db);
    if (db->state != NULL) tq_state_free(db->state);
    if (db->digests != NULL) tq_free(db->digests, db->digest_cap * 16);
    memset(db, 0, sizeof(*db));
}

struct collected {
    struct tq_event events[256];
    uint32_t count;
};

static void collect(void *ctx, const struct tq_event *event) {
    struct collected *c = ctx;
    TQ_CHECK_LT(c->count, 256);
    c->events[c->count++] = *event;
}

static void record_digest(struct ops_db *db, uint64_t lsn) {
    db->lsn_last = lsn;
    if (lsn >= db->digest_cap) {
        uint64_t cap = db->digest_cap * 2;
        db->digests = tq_xrealloc(db->digests, db->digest_cap * 16, cap * 16);
        db->digest_cap = cap;
    }
    tq_state_digest(db->state, db->digests[lsn]);
}

/* The server's events record right after the command (ticketqd's dispatch does the same). */
static void log_events(struct ops_db *db, uint64_t cmd_lsn, const struct collected *c) {
#ifdef TQ_OPS_EVENTS_CODEC
    if (c->count == 0) return;
    if (db->falsify_events_of == cmd_lsn) {
        struct collected *f = (struct collected *)(uintptr_t)c;
        f->events[0].ticket_id += 1000; /* what a diverging server would have recorded */
    }
    size_t cap = tq_events_encoded_size_max(c->count);
    uint8_t *buf = tq_xalloc(cap);
    size_t n = tq_events_encode(cmd_lsn, c->events, c->count, buf, cap);
    TQ_CHECK(n > 0);
    uint64_t got = append(db, 2, buf, n);
    tq_free(buf, cap);
    maybe_sync(db);
    record_digest(db, got);
#else
    (void)db;
    (void)cmd_lsn;
    (void)c;
    TQ_CHECK(!"ops_db.with_events needs the server's events codec in the build");
#endif
}

/* Applies and logs cmd; returns the LSN, or 0 if the state refused it (nothing logged). */
static uint64_t db_try(struct ops_db *db, struct tq_cmd *cmd, struct tq_cmd_result *result) {
    if (cmd->now_ms == 0) cmd->now_ms = db->now_ms;
    uint64_t lsn = tq_log_next_lsn(db->log);
    TQ_CHECK_UEQ(lsn, db->lsn_last + 1);
    struct tq_error error;
    struct collected *c = tq_xalloc(sizeof(*c));
    c->count = 0;
    struct tq_event_sink sink = {.emit = collect, .ctx = c};
    if (tq_state_apply(db->state, lsn, cmd, result, &sink, &error) != TQ_OK) {
        tq_free(c, sizeof(*c));
        return 0;
    }
    size_t size = tq_cmd_encoded_size(cmd);
    uint8_t *buf = tq_xalloc(size);
    TQ_CHECK_UEQ(tq_cmd_encode(cmd, buf, size), size);
    uint64_t got = append(db, TQ_RECORD_TYPE_CMD, buf, size);
    tq_free(buf, size);
    TQ_CHECK_UEQ(got, lsn);
    maybe_sync(db);
    record_digest(db, lsn);
    if (db->with_events) log_events(db, lsn, c);
    tq_free(c, sizeof(*c));
    return lsn;
}

uint64_t ops_db_apply(struct ops_db *db, struct tq_cmd *cmd) {
    uint64_t lsn = db_try(db, cmd, NULL);
    TQ_CHECK(lsn != 0);
    return lsn;
}

void ops_digest_hex(const uint8_t digest[16], char out[OPS_DIGEST_HEX]) {
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

void ops_db_digest_hex(const struct ops_db *db, uint64_t lsn, char out[OPS_DIGEST_HEX]) {
    TQ_CHECK(lsn <= db->lsn_last);
    ops_digest_hex(db->digests[lsn], out);
}

static struct tq_str str_of(const char *s) {
    struct tq_str r = {s, (uint32_t)strlen(s)};
    return r;
}

void ops_gen_setup(struct ops_db *db) {
    struct tq_cmd c;
    memset(&c, 0, sizeof(c));
    c.type = TQ_CMD_TENANT_CREATE;
    c.u.tenant_create.name = str_of("acme");
    ops_db_apply(db, &c);
    memset(&c, 0, sizeof(c));
    c.type = TQ_CMD_QUEUE_CREATE;
    c.tenant_id = 1;
    c.u.queue.name = str_of("support");
    ops_db_apply(db, &c);
    db->queue_id = 1;
    for (uint32_t i = 0; i < 2; i++) {
        memset(&c, 0, sizeof(c));
        c.type = TQ_CMD_AGENT_CREATE;
        c.tenant_id = 1;
        c.u.agent.name = str_of(i == 0 ? "ann" : "ben");
        c.u.agent.set_presence = true;
        c.u.agent.presence = TQ_PRESENCE_ONLINE;
        c.u.agent.set_capacity = true;
        c.u.agent.capacity[0] = c.u.agent.capacity[1] = 100;
        ops_db_apply(db, &c);
        db->agent_ids[db->agent_count++] = i + 1;
    }
}

uint64_t ops_gen_ingest(struct ops_db *db, const char *from, const char *body) {
    struct tq_cmd c;
    memset(&c, 0, sizeof(c));
    c.type = TQ_CMD_MESSAGE_INGEST;
    c.tenant_id = 1;
    c.u.ingest.channel = TQ_CHANNEL_EMAIL;
    c.u.ingest.from_external_id = str_of(from);
    c.u.ingest.customer_name = str_of(from);
    c.u.ingest.queue_id = db->queue_id;
    c.u.ingest.priority = TQ_PRIORITY_NORMAL;
    c.u.ingest.subject = str_of("order question");
    c.u.ingest.body = str_of(body);
    db->now_ms += 1000;
    return ops_db_apply(db, &c);
}

void ops_gen_random(struct ops_db *db, uint64_t *rng, int n) {
    char from[64], body[256];
    for (int i = 0; i < n; i++) {
        struct tq_cmd c;
        memset(&c, 0, sizeof(c));
        c.tenant_id = 1;
        db->now_ms += 1 + tq_test_rand_below(rng, 60000);
        struct tq_stats stats;
        tq_state_stats(db->state, 1, &stats);
        uint64_t roll = tq_test_rand_below(rng, 10);
        if (stats.ticket_count == 0 || roll < 4) {
            uint64_t who = tq_test_rand_below(rng, db->customers_made + 2);
            if (who >= db->customers_made) who = db->customers_made++;
            snprintf(from, sizeof(from), "customer%llu@example.com", (unsigned long long)who);
            snprintf(body, sizeof(body), "message %d from customer %llu: where is my parcel %llu?",
                     i, (unsigned long long)who, (unsigned long long)tq_test_rand(rng));
            c.type = TQ_CMD_MESSAGE_INGEST;
            c.u.ingest.channel = TQ_CHANNEL_EMAIL;
            c.u.ingest.from_external_id = str_of(from);
            c.u.ingest.customer_name = str_of(from);
            c.u.ingest.queue_id = db->queue_id;
            c.u.ingest.priority = (enum tq_priority)tq_test_rand_below(rng, TQ_PRIORITY_COUNT);
            c.u.ingest.subject = str_of("parcel");
            c.u.ingest.body = str_of(body);
        } else {
            uint64_t ticket = 1 + tq_test_rand_below(rng, stats.ticket_count);
            uint64_t agent = db->agent_ids[tq_test_rand_below(rng, db->agent_count)];
            if (roll < 7) {
                snprintf(body, sizeof(body), "reply %d: your parcel %llu is on its way", i,
                         (unsigned long long)tq_test_rand(rng));
                c.type = TQ_CMD_MESSAGE_REPLY;
                c.actor_agent_id = agent;
                c.u.reply.ticket_id = ticket;
                c.u.reply.channel = TQ_CHANNEL_EMAIL;
                c.u.reply.body = str_of(body);
                c.u.reply.internal_note = tq_test_rand_below(rng, 5) == 0;
                if (tq_test_rand_below(rng, 2) == 0) {
                    c.u.reply.set_status = true;
                    c.u.reply.status =
                        tq_test_rand_below(rng, 2) ? TQ_STATUS_PENDING : TQ_STATUS_SOLVED;
                }
            } else {
                c.type = TQ_CMD_TICKET_UPDATE;
                c.u.ticket_update.ticket_id = ticket;
                c.u.ticket_update.fields = TQ_UPDATE_ASSIGNEE;
                c.u.ticket_update.assignee_id = agent;
                if (roll == 9) {
                    c.u.ticket_update.fields |= TQ_UPDATE_STATUS;
                    c.u.ticket_update.status =
                        (enum tq_ticket_status)tq_test_rand_below(rng, TQ_STATUS_COUNT);
                }
            }
        }
        (void)db_try(db, &c, NULL); /* refused commands are not logged, as in the server */
    }
}

const char *ops_tool(void) {
    static char path[512];
    const char *build = getenv("TQ_BUILD_DIR");
    snprintf(path, sizeof(path), "%s/server/ops/ticketq-ops", build != NULL ? build : ".");
    return path;
}

int ops_sh(const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    fflush(stdout);
    fflush(stderr);
    int rc = system(cmd);
    if (rc == -1 || !WIFEXITED(rc)) return -1;
    return WEXITSTATUS(rc);
}

char *ops_capture(int *status_out, const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    fflush(stdout);
    FILE *p = popen(cmd, "r");
    TQ_CHECK(p != NULL);
    size_t cap = 4096, len = 0;
    char *out = malloc(cap);
    TQ_CHECK(out != NULL);
    size_t n;
    while ((n = fread(out + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 2) {
            cap *= 2;
            out = realloc(out, cap);
            TQ_CHECK(out != NULL);
        }
    }
    out[len] = '\0';
    int rc = pclose(p);
    *status_out = rc == -1 || !WIFEXITED(rc) ? -1 : WEXITSTATUS(rc);
    return out;
}
