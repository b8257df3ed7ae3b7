/* server/subscribe.c: Subscribe streams, catch-up from the log and live delivery.
 *
 * A subscription is in one of two modes:
 *   catch-up: it reads event records (TQ_RECORD_TYPE_EVENTS) from the log with tq_log_iter,
 *             after scanned_lsn, a bounded number of bytes per loop turn, and only while its
 *             connection's unsent output is below half of --subscriber-buffer;
 *   live:     events of newly acknowledged records are appended to its connection directly
 *             by tq_sub_pump.
 * A live subscriber whose unsent output exceeds --subscriber-buffer is switched back to
 * catch-up: it never blocks the loop or other subscribers, and the log is its buffer.
 *
 * Invariants: every record <= scanned_lsn has been considered for the subscriber, events are
 * delivered in LSN order, exactly once per subscription, and only after the log acknowledged
 * the record carrying them (srv->pend holds staged events until then). Live delivery happens
 * before catch-up in each pump, and catch-up reads up to the acknowledged end, so the switch
 * from catch-up to live loses nothing: what was pending and is now acknowledged is in the log.
 */
#include "server.h"

#include "events_codec.h"
#include "ticketq.pb-c.h"
#include "tq_assert.h"

#include <stdio.h>
#include <string.h>

#define EVENTS_PER_FRAME_MAX 256u

void tq_sub_start(struct tq_server *srv, struct tq_conn *conn, uint64_t request_id,
                  uint64_t tenant_id, uint64_t from_lsn, uint32_t type_mask, uint64_t ticket_id,
                  uint64_t queue_id) {
    TQ_ASSERT(!conn->sub.active);
    TQ_ASSERT(tenant_id != 0);
    memset(&conn->sub, 0, sizeof(conn->sub));
    conn->sub.active = true;
    conn->sub.catching_up = true;
    conn->sub.request_id = request_id;
    conn->sub.tenant_id = tenant_id;
    conn->sub.scanned_lsn = from_lsn;
    conn->sub.after_lsn = from_lsn;
    conn->sub.type_mask = type_mask;
    conn->sub.ticket_id = ticket_id;
    conn->sub.queue_id = queue_id;
    srv->subscribers++;
}

void tq_sub_stop(struct tq_server *srv, struct tq_conn *conn) {
    if (!conn->sub.active) return;
    TQ_ASSERT(srv->subscribers > 0);
    conn->sub.active = false;
    srv->subscribers--;
}

void tq_sub_stage_events(struct tq_server *srv, const struct tq_event *events, uint32_t count,
                         uint64_t record_lsn) {
    TQ_ASSERT(record_lsn > srv->events_flushed_lsn);
    if (srv->pend_count + count > srv->pend_cap) {
        uint32_t cap = srv->pend_cap ? srv->pend_cap : 256;
        while (cap < srv->pend_count + count)
            cap *= 2;
        srv->pend =
            tq_xrealloc(srv->pend, srv->pend_cap * sizeof(*srv->pend), cap * sizeof(*srv->pend));
        srv->pend_cap = cap;
    }
    for (uint32_t i = 0; i < count; i++) {
        srv->pend[srv->pend_count++] =
            (struct tq_pending_event){.event = events[i], .record_lsn = record_lsn};
    }
}

bool tq_sub_matches(const struct tq_sub *sub, const struct tq_event *e) {
    if (e->lsn <= sub->after_lsn) return false; /* from_lsn / consumer position: exclusive */
    if (e->tenant_id != sub->tenant_id) return false;
    if (sub->type_mask != 0 && (sub->type_mask & (1u << e->type)) == 0) return false;
    if (sub->ticket_id != 0 && e->ticket_id != sub->ticket_id) return false;
    if (sub->queue_id != 0 && e->queue_id != sub->queue_id) return false;
    return true;
}

/* ---- frames ------------------------------------------------------------------------------ */

struct frame_builder {
    struct tq_server *srv;
    struct tq_conn *conn;
    Ticketq__Event **events;
    Ticketq__Event *storage;
    uint32_t count;
    uint64_t wait_lsn;
    bool failed; /* send queue bound hit */
};

static void fb_init(struct frame_builder *fb, struct tq_server *srv, struct tq_conn *conn) {
    memset(fb, 0, sizeof(*fb));
    fb->srv = srv;
    fb->conn = conn;
    fb->events = tq_arena_alloc(&srv->arena, EVENTS_PER_FRAME_MAX * sizeof(*fb->events));
    fb->storage = tq_arena_alloc(&srv->arena, EVENTS_PER_FRAME_MAX * sizeof(*fb->storage));
}

static void fb_flush(struct frame_builder *fb) {
    if (fb->count == 0 || fb->failed) return;
    Ticketq__EventBatch batch = TICKETQ__EVENT_BATCH__INIT;
    batch.n_events = fb->count;
    batch.events = fb->events;
    Ticketq__Response resp = TICKETQ__RESPONSE__INIT;
    resp.id = fb->conn->sub.request_id;
    resp.result_case = TICKETQ__RESPONSE__RESULT_EVENTS;
    resp.events = &batch;
    if (!tq_conn_queue_frame(fb->conn, &resp.base, fb->wait_lsn, -1, false, 0,
                             tq_dispatch_send_queue_max(fb->srv))) {
        fb->failed = true;
    }
    fb->conn->sub.events_sent += fb->count;
    for (uint32_t i = 0; i < fb->count; i++) {
        tq_metrics_count(fb->srv->metrics, TQ_METRIC_EVENTS_SENT);
    }
    fb->count = 0;
}

static void fb_add(struct frame_builder *fb, const struct tq_event *e, uint64_t record_lsn) {
    if (fb->count == EVENTS_PER_FRAME_MAX) fb_flush(fb);
    Ticketq__Event *w = &fb->storage[fb->count];
    ticketq__event__init(w);
    w->type = (Ticketq__EventType)e->type;
    w->lsn = e->lsn;
#define OPT(f)                                                                                     \
    do {                                                                                           \
        if (e->f != 0) {                                                                           \
            w->has_##f = true;                                                                     \
            w->f = e->f;                                                                           \
        }                                                                                          \
    } while (0)
    OPT(at_ms);
    OPT(tenant_id);
    OPT(ticket_id);
    OPT(message_id);
    OPT(customer_id);
    OPT(agent_id);
    OPT(queue_id);
#undef OPT
    if (e->field != TQ_FIELD_NONE) {
        w->has_field = w->has_old_value = w->has_new_value = true;
        w->field = (Ticketq__EventField)e->field;
        w->old_value = e->old_value;
        w->new_value = e->new_value;
    } else if (e->type == TQ_EVENT_ASSIGNED || e->type == TQ_EVENT_DELIVERY_STATUS) {
        w->has_old_value = w->has_new_value = true;
        w->old_value = e->old_value;
        w->new_value = e->new_value;
    }
    if (e->type == TQ_EVENT_SLA_WARNING || e->type == TQ_EVENT_SLA_BREACH ||
        e->type == TQ_EVENT_SLA_ACHIEVED) {
        w->has_sla_metric = true;
        w->sla_metric = (Ticketq__SlaMetric)e->sla_metric;
    }
    fb->events[fb->count++] = w;
    if (record_lsn > fb->wait_lsn) fb->wait_lsn = record_lsn;
}

/* ---- live and catch-up ------------------------------------------------------------------- */

static bool conn_can_take(const struct tq_server *srv, const struct tq_conn *conn) {
    return conn->in_use && !conn->closing && conn->sub.active;
    (void)srv;
}

static void deliver_live(struct tq_server *srv, struct tq_conn *conn, uint32_t upto) {
    struct tq_sub *sub = &conn->sub;
    if (tq_conn_unsent(conn) > srv->cfg.subscriber_buffer) {
        sub->catching_up = true; /* slow: the log becomes its buffer */
        tq_metrics_count(srv->metrics, TQ_METRIC_SUB_FALLBACKS);
        return;
    }
    struct frame_builder fb;
    fb_init(&fb, srv, conn);
    for (uint32_t i = 0; i < upto; i++) {
        const struct tq_pending_event *p = &srv->pend[i];
        if (p->record_lsn <= sub->scanned_lsn) continue;
        if (tq_sub_matches(sub, &p->event)) fb_add(&fb, &p->event, p->record_lsn);
    }
    fb_flush(&fb);
    if (upto > 0 && srv->pend[upto - 1].record_lsn > sub->scanned_lsn) {
        sub->scanned_lsn = srv->pend[upto - 1].record_lsn;
    }
    if (fb.failed) conn->close_after_send = true;
}

/* Reads the log for one catching-up subscriber, at most budget bytes. Returns true if it has
 * more to read. */
static bool catch_up(struct tq_server *srv, struct tq_conn *conn, uint64_t acked_lsn,
                     size_t budget) {
    struct tq_sub *sub = &conn->sub;
    if (sub->scanned_lsn >= acked_lsn) {
        sub->catching_up = false;
        return false;
    }
    struct tq_log_iter *it = NULL;
    struct tq_error error;
    if (tq_log_iter_open(srv->log, sub->scanned_lsn + 1, &it, &error) != TQ_OK) {
        fprintf(stderr, "ticketqd: subscribe catch-up: %s\n", error.msg);
        conn->close_after_send = true;
        return false;
    }
    struct frame_builder fb;
    fb_init(&fb, srv, conn);
    struct tq_event *events =
        tq_arena_alloc(&srv->arena, TQ_EVENTS_PER_RECORD_MAX * sizeof(*events));
    size_t read_bytes = 0;
    bool more = true;
    while (read_bytes < budget) {
        struct tq_log_record rec;
        enum tq_err err = tq_log_iter_next(it, &rec, &error);
        if (err == TQ_ERR_NOT_FOUND) {
            more = false;
            break;
        }
        if (err != TQ_OK) {
            fprintf(stderr, "ticketqd: subscribe catch-up: %s\n", error.msg);
            conn->close_after_send = true;
            more = false;
            break;
        }
        if (rec.lsn > acked_lsn) { /* not revealed yet: live delivery will handle it */
            more = false;
            break;
        }
        if (rec.lsn <= sub->scanned_lsn) continue; /* exactly once, whatever the iterator */
        read_bytes += rec.len + 16;
        sub->scanned_lsn = rec.lsn;
        if (rec.type != TQ_RECORD_TYPE_EVENTS || (rec.flags & TQ_RECORD_REDACTED)) continue;
        uint64_t cmd_lsn;
        uint32_t count;
        if (tq_events_decode(rec.payload, rec.len, &cmd_lsn, events, TQ_EVENTS_PER_RECORD_MAX,
                             &count, &error) != TQ_OK) {
            fprintf(stderr, "ticketqd: events record %llu: %s\n", (unsigned long long)rec.lsn,
                    error.msg);
            continue;
        }
        for (uint32_t i = 0; i < count; i++) {
            if (tq_sub_matches(sub, &events[i])) fb_add(&fb, &events[i], rec.lsn);
        }
    }
    tq_log_iter_close(it);
    fb_flush(&fb);
    if (fb.failed) conn->close_after_send = true;
    if (!more) {
        if (sub->scanned_lsn < acked_lsn) sub->scanned_lsn = acked_lsn;
        sub->catching_up = false;
    }
    return more;
}

bool tq_sub_pump(struct tq_server *srv, uint64_t acked_lsn) {
    uint32_t upto = 0;
    while (upto < srv->pend_count && srv->pend[upto].record_lsn <= acked_lsn)
        upto++;
    bool more = false;
    if (srv->subscribers > 0) {
        for (uint32_t i = 0; i < srv->conn_high; i++) {
            struct tq_conn *conn = &srv->conns[i];
            if (!conn_can_take(srv, conn) || conn->sub.catching_up) continue;
            deliver_live(srv, conn, upto);
            tq_arena_reset(&srv->arena);
        }
    }
    if (upto > 0) {
        memmove(srv->pend, srv->pend + upto, (srv->pend_count - upto) * sizeof(*srv->pend));
        srv->pend_count -= upto;
    }
    if (acked_lsn > srv->events_flushed_lsn) srv->events_flushed_lsn = acked_lsn;
    if (srv->subscribers == 0) return false;
    for (uint32_t i = 0; i < srv->conn_high; i++) {
        struct tq_conn *conn = &srv->conns[i];
        if (!conn_can_take(srv, conn) || !conn->sub.catching_up) continue;
        if (tq_conn_unsent(conn) > srv->cfg.subscriber_buffer / 2) continue; /* let it drain */
        if (catch_up(srv, conn, acked_lsn, TQ_CATCHUP_BYTES_PER_TURN_MAX)) more = true;
        tq_arena_reset(&srv->arena);
    }
    return more;
}
