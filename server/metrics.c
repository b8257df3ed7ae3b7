/* server/metrics.c: counters and histograms, rendered as Prometheus text at GET /metrics.
 *
 * Owns plain counters updated by the loop thread (no atomics: one thread) and renders them on
 * demand. Latency is measured from the moment a request frame was parsed to the moment its
 * response was released to the socket (i.e. including the wait for fdatasync), bucketed in
 * fixed log-spaced microsecond buckets so rendering is O(ops x buckets).
 */
#include "auth.h"
#include "prefault.h"
#include "server.h"
#include "snapshot.h"
#include "tq_assert.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const uint64_t k_bucket_us[] = {100,   250,   500,   1000,   2500,   5000,
                                       10000, 25000, 50000, 100000, 250000, 1000000};
#define BUCKETS (sizeof(k_bucket_us) / sizeof(k_bucket_us[0]))
/* Turn durations: a turn is the loop's CPU work between two waits, so a stall of the loop
 * itself (a long apply run, a rehash, a blocking write or sync, a fork) shows here whatever the
 * load; finer at the low end, where a turn of a few requests lives. */
static const uint64_t k_turn_bucket_us[] = {10,   25,   50,   100,   250,   500,
                                            1000, 2500, 5000, 10000, 25000, 100000};
#define TURN_BUCKETS (sizeof(k_turn_bucket_us) / sizeof(k_turn_bucket_us[0]))
static const uint64_t k_batch_buckets[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 1024};
#define BATCH_BUCKETS (sizeof(k_batch_buckets) / sizeof(k_batch_buckets[0]))

struct histogram {
    uint64_t bucket[BUCKETS + 1]; /* last = +Inf */
    uint64_t count;
    uint64_t sum;
};

struct tq_metrics {
    uint64_t requests[TQ_AUTH_OP_LIMIT];
    uint64_t errors[TQ_AUTH_OP_LIMIT];
    struct histogram latency[TQ_AUTH_OP_LIMIT];
    struct histogram fsync;
    struct histogram fsync_per_record; /* the same, one count per record of the batch */
    struct histogram phase_to_ack;     /* parse -> the loop saw the acknowledgement (all ops) */
    struct histogram phase_release;    /* the acknowledgement seen -> released to the socket */
    struct histogram turn;
    uint64_t turn_max_us;
    uint64_t batch_bucket[BATCH_BUCKETS + 1];
    uint64_t batch_count, batch_records;
    uint64_t answered_bucket[BATCH_BUCKETS + 1];
    uint64_t answered_count, answered_sum;
    uint64_t counters[TQ_METRIC_COUNTER_COUNT];
    bool rendered[TQ_AUTH_OP_LIMIT]; /* ops with a rule: the ones /metrics lists */
};

static const char *const k_counter_names[TQ_METRIC_COUNTER_COUNT] = {
    "ticketq_commands_total",
    "ticketq_events_unlogged_total",
    "ticketq_auth_failures_total",
    "ticketq_connections_accepted_total",
    "ticketq_connections_rejected_total",
    "ticketq_connections_idle_closed_total",
    "ticketq_connections_slow_closed_total",
    "ticketq_protocol_errors_total",
    "ticketq_ticks_total",
    "ticketq_subscriber_fallbacks_total",
    "ticketq_events_sent_total",
    "ticketq_recv_nobufs_total",
    "ticketq_recv_pauses_total",
    "ticketq_idle_poll_hits_total",
    "ticketq_idle_poll_misses_total",
};

struct tq_metrics *tq_metrics_new(void) {
    struct tq_metrics *m = tq_xcalloc(1, sizeof(struct tq_metrics));
    uint32_t rule_count;
    const struct tq_auth_rule *rules = tq_auth_rules(&rule_count);
    for (uint32_t i = 0; i < rule_count; i++) {
        TQ_ASSERT(rules[i].op >= 0 && rules[i].op < TQ_AUTH_OP_LIMIT);
        m->rendered[rules[i].op] = true;
    }
    return m;
}

void tq_metrics_free(struct tq_metrics *m) {
    if (m != NULL) tq_free(m, sizeof(*m));
}

static void observe(struct histogram *h, uint64_t v, const uint64_t *bounds, size_t n) {
    size_t i = 0;
    while (i < n && v > bounds[i])
        i++;
    h->bucket[i]++;
    h->count++;
    h->sum += v;
}

void tq_metrics_request(struct tq_metrics *m, int op, uint64_t parse_us, uint64_t ack_us,
                        uint64_t release_us) {
    if (m == NULL || op < 0 || op >= TQ_AUTH_OP_LIMIT) return;
    /* A response queued already acknowledged (a read, an error) is released in its own turn:
     * ack_us is then that turn's start, which is also its parse_us. Clamp, never wrap. */
    if (ack_us < parse_us) ack_us = parse_us;
    if (release_us < ack_us) release_us = ack_us;
    m->requests[op]++;
    observe(&m->latency[op], release_us - parse_us, k_bucket_us, BUCKETS);
    if (!m->rendered[op]) return; /* an undecodable request's error: not in /metrics either */
    observe(&m->phase_to_ack, ack_us - parse_us, k_bucket_us, BUCKETS);
    observe(&m->phase_release, release_us - ack_us, k_turn_bucket_us, TURN_BUCKETS);
}

void tq_metrics_error(struct tq_metrics *m, int op) {
    if (m == NULL || op < 0 || op >= TQ_AUTH_OP_LIMIT) return;
    m->errors[op]++;
}

void tq_metrics_batch(struct tq_metrics *m, uint64_t records, uint64_t fsync_us) {
    if (m == NULL) return;
    size_t i = 0;
    while (i < BATCH_BUCKETS && records > k_batch_buckets[i])
        i++;
    m->batch_bucket[i]++;
    m->batch_count++;
    m->batch_records += records;
    observe(&m->fsync, fsync_us, k_bucket_us, BUCKETS);
    /* Weighted by records: a slow commit holds every record that queued behind it, so the
     * per-batch histogram understates how many requests a slow commit delays. */
    size_t b = 0;
    while (b < BUCKETS && fsync_us > k_bucket_us[b])
        b++;
    m->fsync_per_record.bucket[b] += records;
    m->fsync_per_record.count += records;
    m->fsync_per_record.sum += fsync_us * records;
}

void tq_metrics_turn(struct tq_metrics *m, uint64_t turn_us) {
    if (m == NULL) return;
    _Static_assert(TURN_BUCKETS == BUCKETS, "struct histogram holds BUCKETS + 1 counts");
    observe(&m->turn, turn_us, k_turn_bucket_us, TURN_BUCKETS);
    if (turn_us > m->turn_max_us) m->turn_max_us = turn_us;
}

void tq_metrics_answered(struct tq_metrics *m, uint64_t connections) {
    if (m == NULL) return;
    size_t i = 0;
    while (i < BATCH_BUCKETS && connections > k_batch_buckets[i])
        i++;
    m->answered_bucket[i]++;
    m->answered_count++;
    m->answered_sum += connections;
}

void tq_metrics_count(struct tq_metrics *m, enum tq_metric_counter what) {
    if (m == NULL) return;
    TQ_ASSERT(what < TQ_METRIC_COUNTER_COUNT);
    m->counters[what]++;
}

struct text {
    char *buf;
    size_t len, cap;
};

static void put(struct text *t, const char *fmt, ...) TQ_PRINTF(2, 3);
static void put(struct text *t, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        TQ_ASSERT(n >= 0);
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        t->buf = tq_xrealloc(t->buf, t->cap, t->cap * 2);
        t->cap *= 2;
    }
}

static void put_hist(struct text *t, const char *name, const char *labels,
                     const struct histogram *h, const uint64_t *bounds, size_t n, double scale) {
    uint64_t cum = 0;
    for (size_t i = 0; i < n; i++) {
        cum += h->bucket[i];
        put(t, "%s_bucket{%s%sle=\"%g\"} %" PRIu64 "\n", name, labels, labels[0] ? "," : "",
            (double)bounds[i] * scale, cum);
    }
    cum += h->bucket[n];
    put(t, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, labels[0] ? "," : "", cum);
    put(t, "%s_sum%s%s%s %g\n", name, labels[0] ? "{" : "", labels, labels[0] ? "}" : "",
        (double)h->sum * scale);
    put(t, "%s_count%s%s%s %" PRIu64 "\n", name, labels[0] ? "{" : "", labels, labels[0] ? "}" : "",
        h->count);
}

char *tq_metrics_render(struct tq_metrics *m, const struct tq_server *srv, size_t *len_out) {
    struct text t = {.buf = tq_xalloc(16384), .len = 0, .cap = 16384};
    uint32_t rule_count;
    const struct tq_auth_rule *rules = tq_auth_rules(&rule_count);
    put(&t, "# HELP ticketq_requests_total Requests answered, by operation.\n"
            "# TYPE ticketq_requests_total counter\n");
    for (uint32_t i = 0; i < rule_count; i++) {
        put(&t, "ticketq_requests_total{op=\"%s\"} %" PRIu64 "\n", rules[i].name,
            m->requests[rules[i].op]);
    }
    put(&t, "# HELP ticketq_request_errors_total Requests answered with an error.\n"
            "# TYPE ticketq_request_errors_total counter\n");
    for (uint32_t i = 0; i < rule_count; i++) {
        put(&t, "ticketq_request_errors_total{op=\"%s\"} %" PRIu64 "\n", rules[i].name,
            m->errors[rules[i].op]);
    }
    put(&t, "# HELP ticketq_request_seconds Parse-to-release latency (includes fdatasync).\n"
            "# TYPE ticketq_request_seconds histogram\n");
    for (uint32_t i = 0; i < rule_count; i++) {
        if (m->latency[rules[i].op].count == 0) continue;
        char labels[64];
        snprintf(labels, sizeof(labels), "op=\"%s\"", rules[i].name);
        put_hist(&t, "ticketq_request_seconds", labels, &m->latency[rules[i].op], k_bucket_us,
                 BUCKETS, 1e-6);
    }
    put(&t, "# HELP ticketq_request_phase_seconds Parse-to-release latency of every response in "
            "two parts: phase=\"to_ack\" (parse to the turn that saw the acknowledgement: the "
            "rest of the parse turn, the wait for a batch, write+flush, the loop noticing) and "
            "phase=\"release\" (that turn's start to the release: its parse phase).\n"
            "# TYPE ticketq_request_phase_seconds histogram\n");
    put_hist(&t, "ticketq_request_phase_seconds", "phase=\"to_ack\"", &m->phase_to_ack, k_bucket_us,
             BUCKETS, 1e-6);
    put_hist(&t, "ticketq_request_phase_seconds", "phase=\"release\"", &m->phase_release,
             k_turn_bucket_us, TURN_BUCKETS, 1e-6);
    put(&t, "# HELP ticketq_fsync_seconds Batch submit to acknowledgement (write+fdatasync).\n"
            "# TYPE ticketq_fsync_seconds histogram\n");
    put_hist(&t, "ticketq_fsync_seconds", "", &m->fsync, k_bucket_us, BUCKETS, 1e-6);
    put(&t, "# HELP ticketq_fsync_record_seconds ticketq_fsync_seconds counted once per record "
            "of the batch (what a record's commit took, not a batch's).\n"
            "# TYPE ticketq_fsync_record_seconds histogram\n");
    put_hist(&t, "ticketq_fsync_record_seconds", "", &m->fsync_per_record, k_bucket_us, BUCKETS,
             1e-6);
    put(&t, "# HELP ticketq_turn_seconds Busy time of one loop turn (reap to the next wait).\n"
            "# TYPE ticketq_turn_seconds histogram\n");
    put_hist(&t, "ticketq_turn_seconds", "", &m->turn, k_turn_bucket_us, TURN_BUCKETS, 1e-6);
    put(&t,
        "# HELP ticketq_turn_max_seconds Longest loop turn since start.\n"
        "# TYPE ticketq_turn_max_seconds gauge\nticketq_turn_max_seconds %g\n",
        (double)m->turn_max_us / 1e6);
    put(&t, "# HELP ticketq_batch_records Records per group-commit batch.\n"
            "# TYPE ticketq_batch_records histogram\n");
    uint64_t cum = 0;
    for (size_t i = 0; i < BATCH_BUCKETS; i++) {
        cum += m->batch_bucket[i];
        put(&t, "ticketq_batch_records_bucket{le=\"%" PRIu64 "\"} %" PRIu64 "\n",
            k_batch_buckets[i], cum);
    }
    cum += m->batch_bucket[BATCH_BUCKETS];
    put(&t, "ticketq_batch_records_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
    put(&t, "ticketq_batch_records_sum %" PRIu64 "\nticketq_batch_records_count %" PRIu64 "\n",
        m->batch_records, m->batch_count);
    put(&t, "# HELP ticketq_turn_answered_connections Client connections one loop turn "
            "released responses to (turns that released any).\n"
            "# TYPE ticketq_turn_answered_connections histogram\n");
    cum = 0;
    for (size_t i = 0; i < BATCH_BUCKETS; i++) {
        cum += m->answered_bucket[i];
        put(&t, "ticketq_turn_answered_connections_bucket{le=\"%" PRIu64 "\"} %" PRIu64 "\n",
            k_batch_buckets[i], cum);
    }
    cum += m->answered_bucket[BATCH_BUCKETS];
    put(&t, "ticketq_turn_answered_connections_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
    put(&t,
        "ticketq_turn_answered_connections_sum %" PRIu64
        "\nticketq_turn_answered_connections_count %" PRIu64 "\n",
        m->answered_sum, m->answered_count);
    for (int i = 0; i < TQ_METRIC_COUNTER_COUNT; i++) {
        put(&t, "# TYPE %s counter\n%s %" PRIu64 "\n", k_counter_names[i], k_counter_names[i],
            m->counters[i]);
    }
    struct tq_stats st;
    tq_state_stats(srv->state, 0, &st);
    uint64_t inflight = 0, unsent = 0;
    for (uint32_t i = 0; i < srv->conn_high; i++) {
        const struct tq_conn *c = &srv->conns[i];
        if (!c->in_use || c->kind != TQ_CONN_CLIENT) continue;
        inflight += c->inflight;
        unsent += tq_conn_unsent(c);
    }
    put(&t,
        "# HELP ticketq_recv_multishot 1 if client receives use multishot recv with a "
        "provided-buffer ring, 0 for single-shot.\n"
        "# TYPE ticketq_recv_multishot gauge\nticketq_recv_multishot %d\n",
        srv->recv_multishot ? 1 : 0);
    put(&t, "# TYPE ticketq_connections gauge\nticketq_connections %u\n", srv->clients);
    put(&t, "# TYPE ticketq_subscribers gauge\nticketq_subscribers %u\n", srv->subscribers);
    put(&t, "# TYPE ticketq_inflight_requests gauge\nticketq_inflight_requests %" PRIu64 "\n",
        inflight);
    put(&t, "# TYPE ticketq_send_queue_bytes gauge\nticketq_send_queue_bytes %" PRIu64 "\n",
        unsent);
    put(&t, "# TYPE ticketq_queued_tickets gauge\nticketq_queued_tickets %" PRIu64 "\n",
        st.queued_tickets);
    put(&t, "# TYPE ticketq_sla_breaches gauge\nticketq_sla_breaches %" PRIu64 "\n",
        st.sla_breaches);
    put(&t, "# TYPE ticketq_sla_warnings gauge\nticketq_sla_warnings %" PRIu64 "\n",
        st.sla_warnings);
    put(&t, "# TYPE ticketq_outbox_pending gauge\nticketq_outbox_pending %" PRIu64 "\n",
        st.outbox_pending);
    put(&t, "# TYPE ticketq_tickets gauge\nticketq_tickets %" PRIu64 "\n", st.ticket_count);
    put(&t, "# TYPE ticketq_log_acked_lsn gauge\nticketq_log_acked_lsn %" PRIu64 "\n",
        tq_log_acked_lsn(srv->log));
    put(&t, "# TYPE ticketq_log_staged_lsn gauge\nticketq_log_staged_lsn %" PRIu64 "\n",
        srv->lsn_staged);
    struct tq_snapshot_stats ss;
    tq_snapshot_get_stats(srv, &ss);
    put(&t,
        "# HELP ticketq_snapshots_total Background snapshots written since start.\n"
        "# TYPE ticketq_snapshots_total counter\nticketq_snapshots_total %" PRIu64 "\n"
        "# HELP ticketq_snapshot_failures_total Snapshots that failed since start.\n"
        "# TYPE ticketq_snapshot_failures_total counter\n"
        "ticketq_snapshot_failures_total %" PRIu64 "\n"
        "# HELP ticketq_snapshot_last_lsn LSN of the newest snapshot on disk.\n"
        "# TYPE ticketq_snapshot_last_lsn gauge\nticketq_snapshot_last_lsn %" PRIu64 "\n"
        "# HELP ticketq_snapshot_last_seconds Fork to durable, last snapshot.\n"
        "# TYPE ticketq_snapshot_last_seconds gauge\nticketq_snapshot_last_seconds %g\n"
        "# HELP ticketq_snapshot_last_fork_seconds The loop's pause in fork(), last snapshot.\n"
        "# TYPE ticketq_snapshot_last_fork_seconds gauge\n"
        "ticketq_snapshot_last_fork_seconds %g\n"
        "# HELP ticketq_snapshot_last_durable_wait_seconds Fork until the snapshot's LSN was "
        "durable (the child's rename waits for it; intake never pauses), last snapshot.\n"
        "# TYPE ticketq_snapshot_last_durable_wait_seconds gauge\n"
        "ticketq_snapshot_last_durable_wait_seconds %g\n"
        "# HELP ticketq_snapshot_last_bytes Serialised state bytes, last snapshot.\n"
        "# TYPE ticketq_snapshot_last_bytes gauge\nticketq_snapshot_last_bytes %" PRIu64 "\n"
        "# HELP ticketq_snapshot_last_precopy_bytes State bytes the last snapshot's child copied "
        "ahead of the loop's writes (--snapshot-precopy; 0 = off).\n"
        "# TYPE ticketq_snapshot_last_precopy_bytes gauge\n"
        "ticketq_snapshot_last_precopy_bytes %" PRIu64 "\n"
        "# HELP ticketq_snapshot_last_precopy_seconds The child's pre-copy time, last snapshot.\n"
        "# TYPE ticketq_snapshot_last_precopy_seconds gauge\n"
        "ticketq_snapshot_last_precopy_seconds %g\n"
        "# TYPE ticketq_snapshot_in_progress gauge\nticketq_snapshot_in_progress %d\n",
        ss.written, ss.failed, ss.last_lsn, (double)ss.last_duration_us / 1e6,
        (double)ss.last_fork_us / 1e6, (double)ss.last_durable_wait_us / 1e6, ss.last_bytes,
        ss.last_precopy_bytes, (double)ss.last_precopy_us / 1e6, ss.running ? 1 : 0);
    struct tq_prefault_stats ps;
    tq_prefaulter_stats(srv->prefaulter, &ps);
    put(&t,
        "# HELP ticketq_state_prefault_requests_total Ranges the state asked its prefault helper "
        "to populate (--state-prefault).\n"
        "# TYPE ticketq_state_prefault_requests_total counter\n"
        "ticketq_state_prefault_requests_total %" PRIu64 "\n"
        "# HELP ticketq_state_prefault_dropped_total Of those, refused because the helper's queue "
        "was full or the kernel lacks MADV_POPULATE_WRITE: the loop thread takes those faults "
        "itself.\n"
        "# TYPE ticketq_state_prefault_dropped_total counter\n"
        "ticketq_state_prefault_dropped_total %" PRIu64 "\n",
        ps.requests, ps.dropped);
    put(&t,
        "# HELP ticketq_snapshot_last_file_bytes The newest snapshot's file on disk (the one "
        "loaded at start until one is written; 0 = none): the base of --snapshot-growth.\n"
        "# TYPE ticketq_snapshot_last_file_bytes gauge\n"
        "ticketq_snapshot_last_file_bytes %" PRIu64 "\n"
        "# HELP ticketq_snapshot_log_bytes_since Log bytes appended since the newest snapshot "
        "(batches as written; a restart replays them).\n"
        "# TYPE ticketq_snapshot_log_bytes_since gauge\n"
        "ticketq_snapshot_log_bytes_since %" PRIu64 "\n"
        "# HELP ticketq_snapshot_auto_records Records since the snapshot before it when the "
        "last automatic snapshot started (--snapshot-every).\n"
        "# TYPE ticketq_snapshot_auto_records gauge\n"
        "ticketq_snapshot_auto_records %" PRIu64 "\n"
        "# HELP ticketq_snapshot_auto_log_bytes Log bytes since the snapshot before it when the "
        "last automatic snapshot started (--snapshot-growth).\n"
        "# TYPE ticketq_snapshot_auto_log_bytes gauge\n"
        "ticketq_snapshot_auto_log_bytes %" PRIu64 "\n",
        ss.last_file_bytes, ss.log_bytes_since, ss.auto_records, ss.auto_log_bytes);
    struct tq_compaction_status cs;
    tq_compaction_status(srv, &cs);
    put(&t, "# TYPE ticketq_compaction_running gauge\nticketq_compaction_running %d\n",
        cs.running ? 1 : 0);
    put(&t,
        "# TYPE ticketq_compaction_runs_total counter\nticketq_compaction_runs_total %" PRIu64 "\n",
        cs.runs);
    put(&t, "# TYPE ticketq_compaction_io_bytes gauge\nticketq_compaction_io_bytes %" PRIu64 "\n",
        cs.io_bytes);
    *len_out = t.len;
    /* Shrink-to-fit bookkeeping: callers free with the capacity, so return exact size. */
    char *out = tq_xalloc(t.len ? t.len : 1);
    memcpy(out, t.buf, t.len);
    tq_free(t.buf, t.cap);
    return out;
}
