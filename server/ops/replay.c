/* server/ops/replay.c: `ticketq replay`, the audit trail and point-in-time state.
 *
 * Owns the rebuild engine: it opens the log READ-ONLY (so it is safe on a live server's data
 * directory: storage stops at the last valid batch and never writes), iterates the records in
 * LSN order and applies every command record (type 1) to a fresh state with tq_state_apply,
 * the very function the server runs, collecting the events it emits. Type-2 records (the
 * events ticketqd recorded for the command just before them, server/events_codec.h) are
 * compared with the regenerated ones: a difference means the tool's apply and the server's
 * disagree, which replay reports (exit 1) after printing the trail. A command's report is held
 * back until its type-2 record (if any) has been read, i.e. until the next command record.
 *
 * Invariants and why:
 *   - the server logs only commands that applied successfully, so an apply error during replay
 *     means the log and the state machine disagree: replay stops with TQ_ERR_CORRUPT naming the
 *     LSN instead of printing a history that never happened;
 *   - a redacted record (right to erasure) cannot be applied. Replay prints a tombstone for it;
 *     the state stays unknown from there until the newest snapshot (which compaction writes
 *     before it redacts), where replay reloads the state and carries on. Records in between
 *     show the events the server recorded for them (marked "recorded"; a log without type-2
 *     records shows them as commands without effects). --at inside such a window is refused,
 *     never guessed;
 *   - if older segments were removed (the log starts after LSN 1), the rebuild starts from the
 *     newest snapshot.
 * Output: one line per event (JSONL with --jsonl, text otherwise); the format is documented in
 * docs/operations.md and pinned by tests/ops/test_ops_replay.c.
 */
#include "ops_internal.h"

#ifdef TQ_OPS_EVENTS_CODEC
#include "events_codec.h"
#endif
#include "log.h"
#include "state.h"
#include "tq_alloc.h"
#include "tq_assert.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char *const cmd_names[TQ_CMD_TYPE_MAX + 1] = {
    "unknown",
    "tenant_create",
    "tenant_settings",
    "sla_policies_set",
    "business_hours_set",
    "token_issue",
    "token_revoke",
    "queue_create",
    "queue_update",
    "agent_create",
    "agent_update",
    "customer_create",
    "customer_link",
    "customer_merge",
    "message_ingest",
    "message_reply",
    "ticket_update",
    "ticket_claim",
    "ticket_release",
    "ticket_transfer",
    "ticket_merge",
    "outbox_take",
    "outbox_ack",
    "consumer_ack",
    "tick",
    "customer_erase",
};

const char *tq_ops_cmd_name(int cmd_type) {
    if (cmd_type < 1 || cmd_type > TQ_CMD_TYPE_MAX) return "unknown";
    return cmd_names[cmd_type];
}

/* ==== the rebuild engine ================================================================ */

#define EVENTS_INITIAL_CAP 64
#define RECORD_BUF_BYTES   (TQ_RECORD_BYTES_DEFAULT_MAX + 64)
/* Events decoded from one type-2 record: the server splits larger sets over several. */
#define RECORDED_EVENTS_PER_RECORD_MAX 4096u
/* The largest body limit ticketqd accepts (--body-max, server/config.c). apply only uses the
 * limit to refuse commands, and a refused command is never logged, so replaying with the
 * largest possible limit accepts every logged command whatever the server's setting was. */
#define REPLAY_BODY_BYTES_MAX (512u * 1024)

enum record_kind {
    RECORD_APPLIED = 0, /* a command applied; events are its regenerated effects */
    RECORD_TOMBSTONE,   /* a redacted record; events (if any) are the recorded ones */
    RECORD_UNAPPLIED,   /* a command read while the state is unknown (after a tombstone);
                           events (if any) are the recorded ones */
};

/* What the printers need of a command (the decoded command itself does not outlive the
 * iterator's next call, and a tombstone has none). */
struct cmd_summary {
    const char *name;
    uint64_t now_ms, tenant_id, actor_agent_id;
};

struct engine;
/* Called once per command record, after its events are known. recorded: the events come from
 * the server's type-2 record, not from apply. */
typedef enum tq_err (*record_fn)(struct engine *e, enum record_kind kind, uint64_t lsn,
                                 uint64_t commit_us, uint32_t len, const struct cmd_summary *cmd,
                                 const struct tq_event *events, size_t count, bool recorded,
                                 struct tq_error *error);

/* A growable array of events. */
struct event_buf {
    struct tq_event *events;
    size_t count, cap;
};

struct engine {
    struct tq_log *log;
    struct tq_state *state;
    struct tq_log_recovery recovery;
    struct tq_arena arena;     /* decode scratch, reset per record */
    struct event_buf applied;  /* events apply emitted for the current command */
    struct event_buf recorded; /* events of type-2 records of the current command */
    struct tq_event *scratch;  /* RECORDED_EVENTS_PER_RECORD_MAX, for decoding */
    /* The current command record, reported when its events are complete. */
    bool pending;
    enum record_kind pending_kind;
    uint64_t pending_lsn, pending_commit_us;
    uint32_t pending_len;
    struct cmd_summary pending_cmd;
    uint64_t lsn_applied;         /* last LSN whose effects are in state */
    uint64_t lost_at;             /* redacted LSN that made the state unknown (0: known) */
    uint64_t lsn_to;              /* stop after this LSN */
    uint64_t time_to_ms;          /* stop before the first command later than this */
    bool events_records_seen;     /* the log carries the server's type-2 records: a command
                                     without one had no effect to record */
    uint64_t checked, mismatched; /* commands whose recorded events were compared / differed */
    uint64_t first_mismatch_lsn;
    /* A CUSTOMER_ERASE read while the state is unknown: its one effect follows from the
     * command alone (a logged command applied, and erasure emits exactly one event, built from
     * the command's fields), so replay shows it, marked as derived, when the server recorded
     * no events for it. */
    bool pending_derivable, derived;
    struct tq_event pending_derived;
    record_fn on_record; /* may be NULL */
    void *ctx;
};

static void buf_push(struct event_buf *b, const struct tq_event *event) {
    if (b->count == b->cap) {
        size_t cap = b->cap == 0 ? EVENTS_INITIAL_CAP : b->cap * 2;
        b->events = tq_xrealloc(b->events, b->cap * sizeof(*b->events), cap * sizeof(*b->events));
        b->cap = cap;
    }
    b->events[b->count++] = *event;
}

static void buf_free(struct event_buf *b) {
    if (b->events != NULL) tq_free(b->events, b->cap * sizeof(*b->events));
    memset(b, 0, sizeof(*b));
}

static void engine_emit(void *vctx, const struct tq_event *event) {
    struct engine *e = vctx;
    buf_push(&e->applied, event);
}

static void engine_close(struct engine *e) {
    if (e->state != NULL) tq_state_free(e->state);
    if (e->log != NULL) tq_log_close(e->log);
    buf_free(&e->applied);
    buf_free(&e->recorded);
    if (e->scratch != NULL) {
        tq_free(e->scratch, RECORDED_EVENTS_PER_RECORD_MAX * sizeof(struct tq_event));
    }
    tq_arena_destroy(&e->arena);
    memset(e, 0, sizeof(*e));
}

/* Replaces the state by the newest snapshot (TQ_ERR_NOT_FOUND if none). */
static enum tq_err engine_load_snapshot(struct engine *e, struct tq_error *error) {
    void *blob = NULL;
    size_t len = 0;
    uint64_t lsn = 0;
    enum tq_err err = tq_log_snapshot_latest(e->log, &blob, &len, &lsn, error);
    if (err != TQ_OK) return err;
    struct tq_state *state = NULL;
    struct tq_state_options so = {.body_bytes_max = REPLAY_BODY_BYTES_MAX};
    err = tq_state_deserialize(blob, len, &so, &state, error);
    tq_free(blob, len);
    if (err != TQ_OK) return err;
    if (e->state != NULL) tq_state_free(e->state);
    e->state = state;
    e->lsn_applied = lsn;
    e->lost_at = 0;
    return TQ_OK;
}

static enum tq_err engine_open(struct engine *e, const char *dir, struct tq_error *error) {
    memset(e, 0, sizeof(*e));
    tq_arena_init(&e->arena, 64 * 1024);
    e->lsn_to = UINT64_MAX;
    e->time_to_ms = UINT64_MAX;
    e->scratch = tq_xalloc(RECORDED_EVENTS_PER_RECORD_MAX * sizeof(struct tq_event));
    struct tq_log_options opt;
    memset(&opt, 0, sizeof(opt));
    opt.dir = dir;
    opt.read_only = true;
    opt.ring_tag = 1;
    enum tq_err err = tq_log_open(&opt, &e->log, &e->recovery, error);
    if (err != TQ_OK) return err;
    if (e->recovery.lsn_first > 1) {
        /* Older segments are gone: only a snapshot can stand in for them. */
        err = engine_load_snapshot(e, error);
        if (err == TQ_ERR_NOT_FOUND ||
            (err == TQ_OK && e->lsn_applied + 1 < e->recovery.lsn_first)) {
            return tq_error_set(error, TQ_ERR_FAILED_PRECONDITION,
                                "the log starts at LSN %" PRIu64
                                " and no snapshot covers the records before it",
                                e->recovery.lsn_first);
        }
        return err;
    }
    struct tq_state_options so = {.body_bytes_max = REPLAY_BODY_BYTES_MAX};
    e->state = tq_state_new(&so);
    TQ_ASSERT(e->state != NULL);
    return TQ_OK;
}

static bool event_equal(const struct tq_event *a, const struct tq_event *b) {
    return a->type == b->type && a->lsn == b->lsn && a->at_ms == b->at_ms &&
           a->tenant_id == b->tenant_id && a->ticket_id == b->ticket_id &&
           a->message_id == b->message_id && a->customer_id == b->customer_id &&
           a->agent_id == b->agent_id && a->queue_id == b->queue_id && a->field == b->field &&
           a->old_value == b->old_value && a->new_value == b->new_value &&
           (!(a->type == TQ_EVENT_SLA_WARNING || a->type == TQ_EVENT_SLA_BREACH ||
              a->type == TQ_EVENT_SLA_ACHIEVED) ||
            a->sla_metric == b->sla_metric);
}

/* Reports the pending command (its events are complete) and, for an applied one with a
 * recorded copy, compares the two. */
static enum tq_err engine_flush(struct engine *e, struct tq_error *error) {
    if (!e->pending) return TQ_OK;
    e->pending = false;
    enum tq_err err = TQ_OK;
    if (e->pending_kind == RECORD_APPLIED) {
        if (e->recorded.count > 0) {
            e->checked++;
            bool same = e->recorded.count == e->applied.count;
            for (size_t i = 0; same && i < e->applied.count; i++) {
                same = event_equal(&e->applied.events[i], &e->recorded.events[i]);
            }
            if (!same) {
                if (e->mismatched == 0) e->first_mismatch_lsn = e->pending_lsn;
                e->mismatched++;
            }
        }
        if (e->on_record != NULL) {
            err = e->on_record(e, RECORD_APPLIED, e->pending_lsn, e->pending_commit_us,
                               e->pending_len, &e->pending_cmd, e->applied.events, e->applied.count,
                               false, error);
        }
    } else if (e->on_record != NULL) {
        e->derived = e->pending_derivable && e->recorded.count == 0;
        if (e->derived) buf_push(&e->recorded, &e->pending_derived);
        err = e->on_record(e, e->pending_kind, e->pending_lsn, e->pending_commit_us, e->pending_len,
                           &e->pending_cmd, e->recorded.events, e->recorded.count, true, error);
        e->derived = false;
    }
    e->pending_derivable = false;
    e->applied.count = 0;
    e->recorded.count = 0;
    return err;
}

static void engine_pend(struct engine *e, enum record_kind kind, const struct tq_log_record *rec,
                        const struct tq_cmd *cmd) {
    e->pending = true;
    e->pending_kind = kind;
    e->pending_lsn = rec->lsn;
    e->pending_commit_us = rec->commit_us;
    e->pending_len = rec->len;
    memset(&e->pending_cmd, 0, sizeof(e->pending_cmd));
    if (cmd != NULL) {
        e->pending_cmd.name = tq_ops_cmd_name((int)cmd->type);
        e->pending_cmd.now_ms = cmd->now_ms;
        e->pending_cmd.tenant_id = cmd->tenant_id;
        e->pending_cmd.actor_agent_id = cmd->actor_agent_id;
    } else {
        e->pending_cmd.name = "erased";
        e->pending_cmd.now_ms = rec->commit_us / 1000;
    }
}

/* A type-2 record: the events the server recorded for the command at cmd_lsn. */
static void engine_events_record(struct engine *e, const struct tq_log_record *rec) {
#ifdef TQ_OPS_EVENTS_CODEC
    e->events_records_seen = true;
    if (!e->pending || (rec->flags & TQ_RECORD_REDACTED) != 0) return;
    uint64_t cmd_lsn = 0;
    uint32_t count = 0;
    struct tq_error ignored;
    if (tq_events_decode(rec->payload, rec->len, &cmd_lsn, e->scratch,
                         RECORDED_EVENTS_PER_RECORD_MAX, &count, &ignored) != TQ_OK ||
        cmd_lsn != e->pending_lsn) {
        return; /* not ours, or unreadable: the comparison simply does not happen */
    }
    for (uint32_t i = 0; i < count; i++)
        buf_push(&e->recorded, &e->scratch[i]);
#else
    (void)e;
    (void)rec;
#endif
}

/* One command record. */
static enum tq_err engine_step(struct engine *e, const struct tq_log_record *rec, bool *stop,
                               struct tq_error *error) {
    if ((rec->flags & TQ_RECORD_REDACTED) != 0) {
        if (rec->commit_us / 1000 > e->time_to_ms) {
            *stop = true;
            return TQ_OK;
        }
        if (e->lost_at == 0) e->lost_at = rec->lsn;
        engine_pend(e, RECORD_TOMBSTONE, rec, NULL);
        return TQ_OK;
    }
    struct tq_cmd cmd;
    tq_arena_reset(&e->arena);
    enum tq_err err = tq_cmd_decode(rec->payload, rec->len, &cmd, &e->arena, error);
    if (err != TQ_OK) {
        return tq_error_set(error, TQ_ERR_CORRUPT, "lsn %" PRIu64 ": undecodable command: %s",
                            rec->lsn, error->msg);
    }
    if (cmd.now_ms > e->time_to_ms) {
        *stop = true;
        return TQ_OK;
    }
    if (e->lost_at != 0 && e->recovery.snapshot_lsn >= e->lost_at &&
        rec->lsn > e->recovery.snapshot_lsn) {
        err = engine_load_snapshot(e, error);
        if (err != TQ_OK) return err;
    }
    if (e->lost_at != 0) {
        engine_pend(e, RECORD_UNAPPLIED, rec, &cmd);
        if (cmd.type == TQ_CMD_CUSTOMER_ERASE) {
            struct tq_event *d = &e->pending_derived;
            memset(d, 0, sizeof(*d));
            d->type = TQ_EVENT_CUSTOMER_ERASED;
            d->lsn = rec->lsn;
            d->at_ms = cmd.now_ms;
            d->tenant_id = cmd.tenant_id;
            d->customer_id = cmd.u.customer_erase.customer_id;
            e->pending_derivable = true;
        }
        return TQ_OK;
    }
    struct tq_event_sink sink = {.emit = engine_emit, .ctx = e};
    err = tq_state_apply(e->state, rec->lsn, &cmd, NULL, &sink, error);
    if (err != TQ_OK) {
        return tq_error_set(error, TQ_ERR_CORRUPT,
                            "lsn %" PRIu64 ": %s does not apply (%s: %s): the log and the state "
                            "machine disagree",
                            rec->lsn, tq_ops_cmd_name((int)cmd.type), tq_err_name(err), error->msg);
    }
    e->lsn_applied = rec->lsn;
    engine_pend(e, RECORD_APPLIED, rec, &cmd);
    return TQ_OK;
}

/* Runs the log from just after the state's LSN to lsn_to / time_to_ms / the end. */
static enum tq_err engine_run(struct engine *e, struct tq_error *error) {
    struct tq_log_iter *iter = NULL;
    enum tq_err err = tq_log_iter_open(e->log, e->lsn_applied + 1, &iter, error);
    if (err != TQ_OK) return err;
    bool stop = false;
    uint64_t last_cmd_lsn = 0;
    while (!stop) {
        struct tq_log_record rec;
        err = tq_log_iter_next(iter, &rec, error);
        if (err == TQ_ERR_NOT_FOUND) {
            err = TQ_OK;
            break;
        }
        if (err != TQ_OK) break;
        if (rec.type != TQ_RECORD_TYPE_CMD) {
            /* Past lsn_to too: the events record of the last command follows it. */
            if (rec.type == 2) engine_events_record(e, &rec);
            continue;
        }
        if (rec.lsn > e->lsn_to) {
            stop = true;
            break;
        }
        last_cmd_lsn = rec.lsn;
        err = engine_flush(e, error);
        if (err == TQ_OK) err = engine_step(e, &rec, &stop, error);
        if (err != TQ_OK) break;
    }
    tq_log_iter_close(iter);
    if (err == TQ_OK) err = engine_flush(e, error);
    /* The log ended inside a window that only the snapshot covers (no command after the
     * snapshot's LSN; the last command's events record may follow it): the snapshot is the
     * state at the end. */
    if (err == TQ_OK && !stop && e->lost_at != 0 && e->recovery.snapshot_lsn >= e->lost_at &&
        e->recovery.snapshot_lsn >= last_cmd_lsn) {
        err = engine_load_snapshot(e, error);
    }
    return err;
}

enum tq_err tq_ops_state_at(const char *data_dir, uint64_t lsn_to, struct tq_state **state_out,
                            uint64_t *lsn_out, struct tq_error *error) {
    TQ_ASSERT(data_dir != NULL);
    TQ_ASSERT(state_out != NULL && lsn_out != NULL);
    struct engine e;
    enum tq_err err = engine_open(&e, data_dir, error);
    if (err == TQ_OK) {
        e.lsn_to = lsn_to;
        err = engine_run(&e, error);
    }
    if (err == TQ_OK && e.lost_at != 0) {
        err = tq_error_set(error, TQ_ERR_FAILED_PRECONDITION,
                           "the state after LSN %" PRIu64
                           " cannot be rebuilt: that record was redacted and no snapshot covers it",
                           e.lost_at);
    }
    if (err == TQ_OK) {
        *state_out = e.state;
        *lsn_out = e.lsn_applied;
        e.state = NULL;
    }
    engine_close(&e);
    return err;
}

/* ==== event output ====================================================================== */

struct replay_filter {
    bool jsonl;
    uint64_t from_ms, to_ms; /* inclusive; to_ms UINT64_MAX = open */
    uint64_t lsn_from, lsn_to;
    uint64_t tenant, ticket, customer, agent; /* 0 = any */
    uint32_t type_mask;                       /* bit per enum tq_event_type; 0 = all */
    bool tombstones;                          /* print tombstones (unless --type excludes them) */
    uint64_t printed;
};

/* Renders an event value as JSON (a quoted name, a number or null). */
static void value_json(const struct tq_event *ev, int64_t v, char *out, size_t cap) {
    if (ev->type == TQ_EVENT_DELIVERY_STATUS) {
        snprintf(out, cap, "\"%s\"", tq_delivery_name((enum tq_delivery)v));
        return;
    }
    switch (ev->field) {
    case TQ_FIELD_STATUS:
        snprintf(out, cap, "\"%s\"", tq_status_name((enum tq_ticket_status)v));
        return;
    case TQ_FIELD_PRIORITY:
        snprintf(out, cap, "\"%s\"", tq_priority_name((enum tq_priority)v));
        return;
    case TQ_FIELD_QUEUE:
    case TQ_FIELD_ASSIGNEE:
    case TQ_FIELD_CUSTOMER:
        if (v == 0) {
            snprintf(out, cap, "null");
        } else {
            snprintf(out, cap, "%" PRId64, v);
        }
        return;
    case TQ_FIELD_WAKE_AT: {
        char t[TQ_OPS_TIME_BYTES];
        if (v <= 0) {
            snprintf(out, cap, "null");
        } else {
            snprintf(out, cap, "\"%s\"", tq_ops_time_format((uint64_t)v, t));
        }
        return;
    }
    case TQ_FIELD_NONE:
    case TQ_FIELD_TAGS:
    case TQ_FIELD_SUBJECT:
    case TQ_FIELD_CUSTOM: break;
    }
    snprintf(out, cap, "%" PRId64, v);
}

static const char *field_name(enum tq_event_field f) {
    static const char *const names[] = {"none", "status",  "priority", "queue",   "assignee",
                                        "tags", "subject", "custom",   "wake_at", "customer"};
    return (unsigned)f < TQ_ARRAY_COUNT(names) ? names[f] : "unknown";
}

/* Whether an event's old/new pair is a change worth printing. MESSAGE_ADDED carries
 * (direction, channel), TICKET_CREATED (follow_up_of, ticket) and CONFIG_CHANGED (the command
 * type twice): those are printed by name instead (see the printers). */
static bool has_change(const struct tq_event *ev) {
    switch (ev->type) {
    case TQ_EVENT_MESSAGE_ADDED:
    case TQ_EVENT_TICKET_CREATED:
    case TQ_EVENT_CONFIG_CHANGED:
    case TQ_EVENT_TENANT_CREATED:
    case TQ_EVENT_CUSTOMER_CREATED:
    case TQ_EVENT_CUSTOMER_ERASED: return false;
    case TQ_EVENT_DELIVERY_STATUS:
    case TQ_EVENT_ASSIGNED: return true;
    case TQ_EVENT_TICKET_UPDATED:
    case TQ_EVENT_SLA_WARNING:
    case TQ_EVENT_SLA_BREACH:
    case TQ_EVENT_SLA_ACHIEVED:
    case TQ_EVENT_CUSTOMER_MERGED:
    case TQ_EVENT_TICKET_MERGED:
    case TQ_EVENT_OUTBOX_FAILED: break;
    }
    return ev->field != TQ_FIELD_NONE || ev->old_value != 0 || ev->new_value != 0;
}

static const char *direction_name(int64_t d) {
    static const char *const names[] = {"inbound", "outbound", "note"};
    return d >= 0 && d < 3 ? names[d] : "unknown";
}

static bool is_sla_event(enum tq_event_type t) {
    return t == TQ_EVENT_SLA_WARNING || t == TQ_EVENT_SLA_BREACH || t == TQ_EVENT_SLA_ACHIEVED;
}

static bool event_matches(const struct replay_filter *f, const struct cmd_summary *cmd,
                          const struct tq_event *ev) {
    if (f->type_mask != 0 && (f->type_mask & (1u << (unsigned)ev->type)) == 0) return false;
    if (f->tenant != 0 && ev->tenant_id != f->tenant && cmd->tenant_id != f->tenant) return false;
    if (f->ticket != 0 && ev->ticket_id != f->ticket) return false;
    if (f->customer != 0 && ev->customer_id != f->customer) return false;
    if (f->agent != 0) {
        bool assignee = ev->field == TQ_FIELD_ASSIGNEE || ev->type == TQ_EVENT_ASSIGNED;
        bool hit = ev->agent_id == f->agent || cmd->actor_agent_id == f->agent ||
                   (assignee &&
                    (ev->old_value == (int64_t)f->agent || ev->new_value == (int64_t)f->agent));
        if (!hit) return false;
    }
    return true;
}

/* source: NULL for an event apply regenerated, "recorded" (the server's type-2 record) or
 * "command" (derived from the command itself, see struct engine). */
static void print_event_jsonl(uint64_t lsn, const struct cmd_summary *cmd,
                              const struct tq_event *ev, const char *source) {
    char t[TQ_OPS_TIME_BYTES];
    printf("{\"lsn\":%" PRIu64 ",\"time\":\"%s\",\"tenant\":%" PRIu64 ",\"cmd\":\"%s\"", lsn,
           tq_ops_time_format(cmd->now_ms, t), ev->tenant_id != 0 ? ev->tenant_id : cmd->tenant_id,
           cmd->name);
    if (cmd->actor_agent_id != 0) printf(",\"actor\":%" PRIu64, cmd->actor_agent_id);
    printf(",\"event\":\"%s\"", tq_event_type_name(ev->type));
    if (ev->ticket_id != 0) printf(",\"ticket\":%" PRIu64, ev->ticket_id);
    if (ev->message_id != 0) printf(",\"message\":%" PRIu64, ev->message_id);
    if (ev->customer_id != 0) printf(",\"customer\":%" PRIu64, ev->customer_id);
    if (ev->agent_id != 0) printf(",\"agent\":%" PRIu64, ev->agent_id);
    if (ev->queue_id != 0) printf(",\"queue\":%" PRIu64, ev->queue_id);
    if (is_sla_event(ev->type)) {
        printf(",\"metric\":\"%s\",\"at\":\"%s\"", tq_sla_metric_name(ev->sla_metric),
               tq_ops_time_format(ev->at_ms, t));
    } else if (ev->type == TQ_EVENT_MESSAGE_ADDED) {
        printf(",\"direction\":\"%s\",\"channel\":\"%s\"", direction_name(ev->old_value),
               tq_channel_name((enum tq_channel)ev->new_value));
    } else if (ev->type == TQ_EVENT_TICKET_CREATED && ev->old_value != 0) {
        printf(",\"follow_up_of\":%" PRId64, ev->old_value);
    } else if (has_change(ev)) {
        char old_v[64], new_v[64];
        value_json(ev, ev->old_value, old_v, sizeof(old_v));
        value_json(ev, ev->new_value, new_v, sizeof(new_v));
        if (ev->field != TQ_FIELD_NONE) printf(",\"field\":\"%s\"", field_name(ev->field));
        printf(",\"old\":%s,\"new\":%s", old_v, new_v);
    }
    if (source != NULL) printf(",\"source\":\"%s\"", source);
    printf("}\n");
}

/* Text form of a value: JSON without quotes, "none" for null. */
static void value_text(const struct tq_event *ev, int64_t v, char *out, size_t cap) {
    char json[64];
    value_json(ev, v, json, sizeof(json));
    if (strcmp(json, "null") == 0) {
        snprintf(out, cap, "none");
    } else if (json[0] == '"') {
        snprintf(out, cap, "%.*s", (int)strlen(json) - 2, json + 1);
    } else {
        snprintf(out, cap, "%s", json);
    }
}

static void print_event_text(uint64_t lsn, const struct cmd_summary *cmd, const struct tq_event *ev,
                             const char *source) {
    char t[TQ_OPS_TIME_BYTES];
    printf("lsn %" PRIu64 "  %s  tenant %" PRIu64 "  %s", lsn, tq_ops_time_format(cmd->now_ms, t),
           ev->tenant_id != 0 ? ev->tenant_id : cmd->tenant_id, cmd->name);
    if (cmd->actor_agent_id != 0) printf(" by agent %" PRIu64, cmd->actor_agent_id);
    printf(": %s", tq_event_type_name(ev->type));
    if (ev->ticket_id != 0) printf(" ticket %" PRIu64, ev->ticket_id);
    if (ev->message_id != 0) printf(" message %" PRIu64, ev->message_id);
    if (ev->customer_id != 0) printf(" customer %" PRIu64, ev->customer_id);
    if (ev->agent_id != 0) printf(" agent %" PRIu64, ev->agent_id);
    if (ev->queue_id != 0) printf(" queue %" PRIu64, ev->queue_id);
    if (is_sla_event(ev->type)) {
        printf(" %s at %s", tq_sla_metric_name(ev->sla_metric), tq_ops_time_format(ev->at_ms, t));
    } else if (ev->type == TQ_EVENT_MESSAGE_ADDED) {
        printf(" %s %s", direction_name(ev->old_value),
               tq_channel_name((enum tq_channel)ev->new_value));
    } else if (ev->type == TQ_EVENT_TICKET_CREATED && ev->old_value != 0) {
        printf(" follow-up of ticket %" PRId64, ev->old_value);
    } else if (has_change(ev)) {
        char old_v[64], new_v[64];
        value_text(ev, ev->old_value, old_v, sizeof(old_v));
        value_text(ev, ev->new_value, new_v, sizeof(new_v));
        if (ev->field != TQ_FIELD_NONE) printf(" %s", field_name(ev->field));
        printf(" %s -> %s", old_v, new_v);
    }
    if (source == NULL) {
        printf("\n");
    } else if (strcmp(source, "recorded") == 0) {
        printf("  (as recorded)\n");
    } else {
        printf("  (from the command)\n");
    }
}

static bool record_in_range(const struct replay_filter *f, uint64_t lsn, uint64_t ms) {
    return lsn >= f->lsn_from && lsn <= f->lsn_to && ms >= f->from_ms && ms <= f->to_ms;
}

static enum tq_err print_record(struct engine *e, enum record_kind kind, uint64_t lsn,
                                uint64_t commit_us, uint32_t len, const struct cmd_summary *cmd,
                                const struct tq_event *events, size_t count, bool recorded,
                                struct tq_error *error) {
    (void)error;
    struct replay_filter *f = e->ctx;
    char t[TQ_OPS_TIME_BYTES];
    if (!record_in_range(f, lsn, cmd->now_ms)) return TQ_OK;
    if (kind == RECORD_TOMBSTONE && f->tombstones) {
        tq_ops_time_format(commit_us / 1000, t);
        if (f->jsonl) {
            printf("{\"lsn\":%" PRIu64 ",\"time\":\"%s\",\"tombstone\":true,\"bytes\":%u}\n", lsn,
                   t, len);
        } else {
            printf("lsn %" PRIu64 "  %s  [erased: %u bytes redacted by compaction]\n", lsn, t, len);
        }
        f->printed++;
    }
    if (kind == RECORD_UNAPPLIED && count == 0 && !e->events_records_seen) {
        /* Neither apply (state unknown here) nor the server's event record tells the effect. */
        if (f->ticket != 0 || f->customer != 0 || f->agent != 0 || f->type_mask != 0 ||
            (f->tenant != 0 && cmd->tenant_id != f->tenant)) {
            return TQ_OK;
        }
        tq_ops_time_format(cmd->now_ms, t);
        if (f->jsonl) {
            printf("{\"lsn\":%" PRIu64 ",\"time\":\"%s\",\"tenant\":%" PRIu64
                   ",\"cmd\":\"%s\",\"event\":null,\"unapplied_after\":%" PRIu64 "}\n",
                   lsn, t, cmd->tenant_id, cmd->name, e->lost_at);
        } else {
            printf("lsn %" PRIu64 "  %s  tenant %" PRIu64
                   "  %s: effects unknown (state lost after erased LSN %" PRIu64 ")\n",
                   lsn, t, cmd->tenant_id, cmd->name, e->lost_at);
        }
        f->printed++;
        return TQ_OK;
    }
    for (size_t i = 0; i < count; i++) {
        const struct tq_event *ev = &events[i];
        if (!event_matches(f, cmd, ev)) continue;
        const char *source = !recorded ? NULL : e->derived ? "command" : "recorded";
        if (f->jsonl) {
            print_event_jsonl(lsn, cmd, ev, source);
        } else {
            print_event_text(lsn, cmd, ev, source);
        }
        f->printed++;
    }
    return TQ_OK;
}

/* ==== --at queries ======================================================================= */

struct replay_query {
    bool ticket, queue, sla, stats;
    uint64_t ticket_id, queue_id, tenant_id;
};

static void print_str(const char *label, struct tq_str s) {
    printf("%s%.*s\n", label, (int)s.len, s.ptr != NULL ? s.ptr : "");
}

/* The body of the message carried by the record at lsn, or a note why there is none. */
/* Reads and decodes the record that carried message m, completes the view from it
 * (tq_state_message_complete: commit time, provider time, agent author) and returns its body
 * in *body. Returns false with a reason in why (an erased or unreadable record: the view stays
 * as the state holds it). The body points into buf. */
static bool message_record(struct tq_log *log, struct tq_message_view *m, uint8_t *buf,
                           struct tq_arena *arena, struct tq_str *body, char *why, size_t why_cap) {
    struct tq_log_record rec;
    struct tq_error error;
    *body = (struct tq_str){NULL, 0};
    enum tq_err err = tq_log_read(log, m->lsn, &rec, buf, RECORD_BUF_BYTES, &error);
    if (err != TQ_OK) {
        snprintf(why, why_cap, "body unavailable: %.400s", error.msg);
        return false;
    }
    if ((rec.flags & TQ_RECORD_REDACTED) != 0) {
        snprintf(why, why_cap, "erased");
        return false;
    }
    struct tq_cmd cmd;
    tq_arena_reset(arena);
    if (tq_cmd_decode(rec.payload, rec.len, &cmd, arena, &error) != TQ_OK) {
        snprintf(why, why_cap, "body undecodable: %.400s", error.msg);
        return false;
    }
    tq_state_message_complete(m, &cmd);
    if (cmd.type == TQ_CMD_MESSAGE_INGEST) *body = cmd.u.ingest.body;
    if (cmd.type == TQ_CMD_MESSAGE_REPLY) *body = cmd.u.reply.body;
    return true;
}

/* Tenant ids are small counters: try each until the entity is found. */
static uint64_t find_ticket_tenant(const struct tq_state *state, uint64_t ticket_id) {
    struct tq_stats stats;
    tq_state_stats(state, 0, &stats);
    for (uint64_t t = 1; t <= stats.tenant_count + 1; t++) {
        struct tq_ticket_view v;
        if (tq_state_ticket_get(state, t, ticket_id, &v) == TQ_OK) return t;
    }
    return 0;
}

static int query_ticket(struct engine *e, const struct replay_query *q) {
    uint64_t tenant = q->tenant_id != 0 ? q->tenant_id : find_ticket_tenant(e->state, q->ticket_id);
    struct tq_ticket_view v;
    if (tenant == 0 || tq_state_ticket_get(e->state, tenant, q->ticket_id, &v) != TQ_OK) {
        printf("ticket %" PRIu64 ": not found at this point\n", q->ticket_id);
        return TQ_OPS_EXIT_FAILED;
    }
    char t0[TQ_OPS_TIME_BYTES], t1[TQ_OPS_TIME_BYTES];
    printf("ticket %" PRIu64 " (#%" PRIu64 ", tenant %" PRIu64 ")\n", v.ticket_id, v.number,
           v.tenant_id);
    printf("  status %s, priority %s, channel %s\n", tq_status_name(v.status),
           tq_priority_name(v.priority), tq_channel_name(v.origin_channel));
    printf("  customer %" PRIu64 ", queue %" PRIu64 ", assignee %" PRIu64 "\n", v.customer_id,
           v.queue_id, v.assignee_id);
    print_str("  subject: ", v.subject);
    printf("  created %s, updated %s\n", tq_ops_time_format(v.created_ms, t0),
           tq_ops_time_format(v.updated_ms, t1));
    if (v.merged_into_id != 0) printf("  merged into ticket %" PRIu64 "\n", v.merged_into_id);
    for (uint32_t i = 0; i < v.tag_count; i++)
        print_str("  tag: ", v.tags[i]);
    static const char *const clock_states[] = {"none", "running", "paused", "achieved", "breached"};
    for (uint32_t i = 0; i < v.sla_count; i++) {
        const struct tq_sla_view *s = &v.sla[i];
        if (s->state == TQ_SLA_NONE) continue;
        printf("  sla %s: %s, target %" PRIu64 " ms, elapsed %" PRIu64 " ms",
               tq_sla_metric_name(s->metric), (unsigned)s->state < 5 ? clock_states[s->state] : "?",
               s->target_ms, s->elapsed_ms);
        if (s->state == TQ_SLA_RUNNING) printf(", due %s", tq_ops_time_format(s->deadline_ms, t0));
        printf("%s\n", s->warned ? ", warned" : "");
    }
    uint8_t *buf = tq_xalloc(RECORD_BUF_BYTES);
    struct tq_message_view msgs[32];
    for (uint32_t first = 0;;) {
        uint32_t n = tq_state_ticket_messages(e->state, tenant, q->ticket_id, first,
                                              (uint32_t)TQ_ARRAY_COUNT(msgs), msgs);
        for (uint32_t i = 0; i < n; i++) {
            struct tq_message_view *m = &msgs[i];
            struct tq_str body;
            char why[448];
            bool have = message_record(e->log, m, buf, &e->arena, &body, why, sizeof(why));
            static const char *const authors[] = {"customer", "agent", "automation"};
            printf("  message %" PRIu64 " %s %s by %s", m->message_id, direction_name(m->direction),
                   tq_channel_name(m->channel),
                   (unsigned)m->author_kind < 3 ? authors[m->author_kind] : "?");
            if (m->author_id != 0) printf(" %" PRIu64, m->author_id);
            if (m->created_ms != 0) printf(" at %s", tq_ops_time_format(m->created_ms, t0));
            if (m->provider_ts_ms != 0) {
                printf(" (provider %s)", tq_ops_time_format(m->provider_ts_ms, t0));
            }
            if (m->delivery != TQ_DELIVERY_NONE) printf(", %s", tq_delivery_name(m->delivery));
            printf(" (lsn %" PRIu64 ")\n", m->lsn);
            if (have) {
                print_str("    ", body);
            } else {
                printf("    [%s]\n", why);
            }
        }
        if (n < TQ_ARRAY_COUNT(msgs)) break;
        first += n;
    }
    tq_free(buf, RECORD_BUF_BYTES);
    return TQ_OPS_EXIT_OK;
}

static int query_queue(struct engine *e, const struct replay_query *q) {
    uint64_t tenant = q->tenant_id != 0 ? q->tenant_id : 1;
    struct tq_queue_view v;
    if (tq_state_queue_get(e->state, tenant, q->queue_id, &v) != TQ_OK) {
        printf("queue %" PRIu64 " of tenant %" PRIu64 ": not found at this point\n", q->queue_id,
               tenant);
        return TQ_OPS_EXIT_FAILED;
    }
    char t[TQ_OPS_TIME_BYTES];
    printf("queue %" PRIu64 " (tenant %" PRIu64 ")", v.queue_id, v.tenant_id);
    print_str(": ", v.name);
    printf("  depth %u, oldest enqueued %s, auto_assign %s\n", v.depth,
           v.oldest_enqueued_ms != 0 ? tq_ops_time_format(v.oldest_enqueued_ms, t) : "-",
           v.auto_assign ? "yes" : "no");
    uint64_t ids[100];
    uint32_t n =
        tq_state_queue_list(e->state, tenant, q->queue_id, ids, (uint32_t)TQ_ARRAY_COUNT(ids));
    for (uint32_t i = 0; i < n; i++)
        printf("  %u. ticket %" PRIu64 "\n", i + 1, ids[i]);
    return TQ_OPS_EXIT_OK;
}

static void query_sla(struct engine *e, const struct replay_query *q) {
    uint64_t tenant = q->tenant_id != 0 ? q->tenant_id : 1;
    struct tq_sla_due due[50];
    uint32_t n = tq_state_sla_nearest(e->state, tenant, due, (uint32_t)TQ_ARRAY_COUNT(due));
    char t[TQ_OPS_TIME_BYTES];
    printf("running SLA clocks of tenant %" PRIu64 " (nearest first): %u\n", tenant, n);
    for (uint32_t i = 0; i < n; i++) {
        printf("  ticket %" PRIu64 " %s due %s\n", due[i].ticket_id,
               tq_sla_metric_name(due[i].metric), tq_ops_time_format(due[i].deadline_ms, t));
    }
}

static void query_stats(struct engine *e, const struct replay_query *q) {
    struct tq_stats s;
    tq_state_stats(e->state, q->tenant_id, &s);
    if (q->tenant_id == 0) {
        printf("stats (all %" PRIu64 " tenants):\n", s.tenant_count);
    } else {
        printf("stats (tenant %" PRIu64 "):\n", q->tenant_id);
    }
    printf("  tickets %" PRIu64 ", messages %" PRIu64 ", customers %" PRIu64 ", agents %" PRIu64
           ", queues %" PRIu64 "\n",
           s.ticket_count, s.message_count, s.customer_count, s.agent_count, s.queue_count);
    printf("  by status:");
    for (unsigned i = 0; i < TQ_STATUS_COUNT; i++) {
        printf(" %s=%" PRIu64, tq_status_name((enum tq_ticket_status)i), s.tickets_by_status[i]);
    }
    printf("\n  queued %" PRIu64 ", sla breaches %" PRIu64 ", warnings %" PRIu64
           ", outbox pending %" PRIu64 "\n",
           s.queued_tickets, s.sla_breaches, s.sla_warnings, s.outbox_pending);
    printf("  first response p50 %" PRIu64 " ms p90 %" PRIu64 " ms, resolution p50 %" PRIu64
           " ms p90 %" PRIu64 " ms\n",
           s.first_response_p50_ms, s.first_response_p90_ms, s.resolution_p50_ms,
           s.resolution_p90_ms);
}

static void print_digest(const struct tq_state *state, uint64_t lsn) {
    uint8_t digest[16];
    tq_state_digest(state, digest);
    printf("state at lsn %" PRIu64 "\ndigest: ", lsn);
    for (int i = 0; i < 16; i++)
        printf("%02x", digest[i]);
    printf("\n");
}

/* ==== CLI =============================================================================== */

static void replay_usage(FILE *out) {
    fprintf(out,
            "usage: ticketq replay --data DIR [--jsonl] [filters]\n"
            "       ticketq replay --data DIR --at TIME|LSN [--tenant T] [--ticket N]\n"
            "                      [--queue N] [--sla] [--stats]\n"
            "  Prints the log as events (one per line): LSN, time, tenant, command, effect with\n"
            "  old -> new values; erased records show as tombstones. Read-only: safe on a live\n"
            "  server's data directory and on a backup.\n"
            "  filters: --from TIME --to TIME --lsn-from N --lsn-to N --tenant T --ticket N\n"
            "           --customer N --agent N --type NAME[,NAME...] (event types, 'tombstone')\n"
            "  --at rebuilds the state as of TIME (ISO-8601 UTC, e.g. 2026-11-11T03:12:00Z) or\n"
            "  LSN and prints its digest and the queries asked for (--ticket: with messages).\n");
}

static bool parse_types(const char *list, struct replay_filter *f) {
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", list);
    f->tombstones = false;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        if (strcmp(tok, "tombstone") == 0) {
            f->tombstones = true;
            continue;
        }
        bool found = false;
        for (unsigned t = 1; t < 32; t++) {
            if (strcmp(tq_event_type_name((enum tq_event_type)t), tok) == 0) {
                f->type_mask |= 1u << t;
                found = true;
                break;
            }
        }
        if (!found) return false;
    }
    if (f->type_mask == 0) f->type_mask = 1u << 31; /* tombstones only */
    return true;
}

/* --at value: digits = LSN, otherwise a time. */
static bool parse_at(const char *s, bool *is_time, uint64_t *value) {
    if (tq_ops_u64_parse(s, value)) {
        *is_time = false;
        return true;
    }
    *is_time = true;
    return tq_ops_time_parse(s, value);
}

int tq_ops_replay_main(int argc, char **argv) {
    struct tq_ops_args args;
    tq_ops_args_init(&args, argc, argv, "replay");
    struct replay_filter f;
    memset(&f, 0, sizeof(f));
    f.to_ms = UINT64_MAX;
    f.lsn_to = UINT64_MAX;
    f.tombstones = true;
    struct replay_query q;
    memset(&q, 0, sizeof(q));
    const char *dir = NULL, *v = NULL;
    bool bad = false, at_set = false, at_is_time = false;
    uint64_t at = 0;
    while (args.index < argc && !bad) {
        if (tq_ops_args_take(&args, "--help", NULL, &bad) ||
            tq_ops_args_take(&args, "-h", NULL, &bad)) {
            replay_usage(stdout);
            return TQ_OPS_EXIT_OK;
        }
        if (tq_ops_args_take(&args, "--data", &dir, &bad)) continue;
        const char *option = argv[args.index];
        if (tq_ops_args_take(&args, "--jsonl", NULL, &bad)) {
            f.jsonl = true;
        } else if (tq_ops_args_take(&args, "--sla", NULL, &bad)) {
            q.sla = true;
        } else if (tq_ops_args_take(&args, "--stats", NULL, &bad)) {
            q.stats = true;
        } else if (tq_ops_args_take(&args, "--from", &v, &bad)) {
            bad = bad || !tq_ops_time_parse(v, &f.from_ms);
        } else if (tq_ops_args_take(&args, "--to", &v, &bad)) {
            bad = bad || !tq_ops_time_parse(v, &f.to_ms);
        } else if (tq_ops_args_take(&args, "--lsn-from", &v, &bad)) {
            bad = bad || !tq_ops_u64_parse(v, &f.lsn_from);
        } else if (tq_ops_args_take(&args, "--lsn-to", &v, &bad)) {
            bad = bad || !tq_ops_u64_parse(v, &f.lsn_to);
        } else if (tq_ops_args_take(&args, "--tenant", &v, &bad)) {
            bad = bad || !tq_ops_u64_parse(v, &f.tenant);
        } else if (tq_ops_args_take(&args, "--ticket", &v, &bad)) {
            bad = bad || !tq_ops_u64_parse(v, &f.ticket);
        } else if (tq_ops_args_take(&args, "--customer", &v, &bad)) {
            bad = bad || !tq_ops_u64_parse(v, &f.customer);
        } else if (tq_ops_args_take(&args, "--agent", &v, &bad)) {
            bad = bad || !tq_ops_u64_parse(v, &f.agent);
        } else if (tq_ops_args_take(&args, "--queue", &v, &bad)) {
            bad = bad || !tq_ops_u64_parse(v, &q.queue_id);
            q.queue = true;
        } else if (tq_ops_args_take(&args, "--type", &v, &bad)) {
            bad = bad || !parse_types(v, &f);
        } else if (tq_ops_args_take(&args, "--at", &v, &bad)) {
            bad = bad || !parse_at(v, &at_is_time, &at);
            at_set = true;
        } else {
            fprintf(stderr, "ticketq replay: unknown option %s\n", argv[args.index]);
            bad = true;
            break;
        }
        if (bad) fprintf(stderr, "ticketq replay: bad value for %s\n", option);
    }
    if (bad || dir == NULL || ((q.queue || q.sla || q.stats) && !at_set)) {
        replay_usage(stderr);
        return TQ_OPS_EXIT_USAGE;
    }
    struct engine e;
    struct tq_error error;
    tq_error_clear(&error);
    enum tq_err err = engine_open(&e, dir, &error);
    int rc = TQ_OPS_EXIT_OK;
    if (err == TQ_OK && at_set) {
        if (at_is_time) {
            e.time_to_ms = at;
        } else {
            e.lsn_to = at;
        }
        err = engine_run(&e, &error);
        if (err == TQ_OK && e.lost_at != 0) {
            err = tq_error_set(&error, TQ_ERR_FAILED_PRECONDITION,
                               "the state after LSN %" PRIu64
                               " cannot be rebuilt: that record was erased and no snapshot "
                               "covers it",
                               e.lost_at);
        }
        if (err == TQ_OK) {
            print_digest(e.state, e.lsn_applied);
            q.tenant_id = f.tenant;
            q.ticket_id = f.ticket;
            if (f.ticket != 0 && query_ticket(&e, &q) != TQ_OPS_EXIT_OK) rc = TQ_OPS_EXIT_FAILED;
            if (q.queue && query_queue(&e, &q) != TQ_OPS_EXIT_OK) rc = TQ_OPS_EXIT_FAILED;
            if (q.sla) query_sla(&e, &q);
            if (q.stats) query_stats(&e, &q);
        }
    } else if (err == TQ_OK) {
        e.on_record = print_record;
        e.ctx = &f;
        e.lsn_to = f.lsn_to;
        err = engine_run(&e, &error);
    }
    fflush(stdout);
    if (err == TQ_OK && e.mismatched != 0) {
        fprintf(stderr,
                "ticketq replay: %" PRIu64 " of %" PRIu64 " commands produced events that differ "
                "from the ones the server recorded (first at LSN %" PRIu64 ")\n",
                e.mismatched, e.checked, e.first_mismatch_lsn);
        rc = TQ_OPS_EXIT_FAILED;
    }
    if (err != TQ_OK) {
        tq_ops_print_error("replay", &error);
        rc = err == TQ_ERR_CORRUPT || err == TQ_ERR_FAILED_PRECONDITION ? TQ_OPS_EXIT_FAILED
                                                                        : TQ_OPS_EXIT_USAGE;
    }
    engine_close(&e);
    return rc;
}
