/* server/conn.c: per-connection buffers and the acknowledged-output discipline.
 *
 * Owns a connection's receive buffer (bytes not yet parsed into frames) and its output stream.
 * The output buffer has three regions:
 *
 *     [0, osent)       sent to the socket (compacted away)
 *     [osent, oready)  releasable: every LSN it depends on is acknowledged by the log
 *     [oready, olen)   waiting: produced after an LSN that is not acknowledged yet
 *
 * Each queued frame is described by a mark (end offset, wait_lsn). Marks are appended in the
 * order frames are produced, and wait_lsn never decreases along the FIFO (it is the highest
 * LSN staged at production time, which only grows), so releasing is a prefix walk: responses
 * on a connection go out in order, and no byte leaves before its LSN is acknowledged.
 * Invariants: osent <= oready <= olen <= ocap; every mark's end lies in (osent, olen].
 * Buffers an SQE points into are never moved or freed while the SQE is outstanding: the
 * receive buffer is compacted only when no single-shot recv is armed (rpos marks parsed bytes
 * until then; a multishot recv writes into the server's ring buffers, never into rbuf),
 * and the output buffer grows into a fresh allocation while a send is armed, the old one
 * being freed when that send completes.
 */
#include "server.h"

#include "frame.h"
#include "respenc.h"
#include "tq_assert.h"

#include <string.h>

void tq_conn_init(struct tq_conn *conn, int fd, enum tq_conn_kind kind, uint64_t now_ms) {
    TQ_ASSERT(!conn->in_use);
    TQ_ASSERT(fd >= 0);
    uint32_t gen = conn->gen + 1, index = conn->index;
    memset(conn, 0, sizeof(*conn));
    conn->gen = gen;
    conn->index = index;
    conn->in_use = true;
    conn->kind = kind;
    conn->fd = fd;
    conn->last_active_ms = now_ms;
}

void tq_conn_release(struct tq_conn *conn) {
    TQ_ASSERT(conn->in_use);
    TQ_ASSERT(conn->sqes_outstanding == 0);
    if (conn->rbuf != NULL) tq_free(conn->rbuf, conn->rcap);
    if (conn->obuf != NULL) tq_free(conn->obuf, conn->ocap);
    if (conn->marks != NULL) tq_free(conn->marks, conn->mark_cap * sizeof(*conn->marks));
    tq_conn_send_done(conn);
    uint32_t gen = conn->gen, index = conn->index;
    memset(conn, 0, sizeof(*conn));
    conn->gen = gen;
    conn->index = index;
    conn->fd = -1;
}

size_t tq_conn_unsent(const struct tq_conn *conn) {
    return conn->olen - conn->osent;
}

static bool out_reserve(struct tq_conn *conn, size_t extra, uint64_t send_queue_max) {
    TQ_ASSERT(conn->osent <= conn->oready && conn->oready <= conn->olen);
    if (conn->olen - conn->osent + extra > send_queue_max) return false;
    if (conn->olen + extra <= conn->ocap) return true;
    size_t live = conn->olen - conn->osent;
    if (!conn->send_armed && live + extra <= conn->ocap) {
        /* Compact in place: sent bytes are dead and no SQE points into the buffer. */
        memmove(conn->obuf, conn->obuf + conn->osent, live);
    } else {
        /* Grow into a fresh buffer. If a send SQE points into the current one, the kernel may
         * still be reading it: keep it alive until that send completes (tq_conn_send_done). */
        size_t cap = conn->ocap ? conn->ocap : 4096;
        while (cap < live + extra)
            cap *= 2;
        uint8_t *fresh = tq_xalloc(cap);
        if (live > 0) memcpy(fresh, conn->obuf + conn->osent, live);
        if (conn->obuf != NULL) {
            if (conn->send_armed && conn->obuf_inflight == NULL) {
                conn->obuf_inflight = conn->obuf;
                conn->obuf_inflight_cap = conn->ocap;
            } else {
                tq_free(conn->obuf, conn->ocap);
            }
        }
        conn->obuf = fresh;
        conn->ocap = cap;
    }
    conn->obase += conn->osent;
    conn->olen -= conn->osent;
    conn->oready -= conn->osent;
    conn->osent = 0;
    TQ_ASSERT(conn->olen + extra <= conn->ocap);
    return true;
}

void tq_conn_send_done(struct tq_conn *conn) {
    if (conn->obuf_inflight != NULL) {
        tq_free(conn->obuf_inflight, conn->obuf_inflight_cap);
        conn->obuf_inflight = NULL;
        conn->obuf_inflight_cap = 0;
    }
}

static void mark_push(struct tq_conn *conn, struct tq_out_mark mark) {
    if (conn->mark_count == conn->mark_cap) {
        uint32_t cap = conn->mark_cap ? conn->mark_cap * 2 : 16;
        struct tq_out_mark *m = tq_xalloc(cap * sizeof(*m));
        for (uint32_t i = 0; i < conn->mark_count; i++) {
            m[i] = conn->marks[(conn->mark_head + i) % conn->mark_cap];
        }
        if (conn->marks != NULL) tq_free(conn->marks, conn->mark_cap * sizeof(*conn->marks));
        conn->marks = m;
        conn->mark_cap = cap;
        conn->mark_head = 0;
    }
    if (conn->mark_count > 0) {
        const struct tq_out_mark *last =
            &conn->marks[(conn->mark_head + conn->mark_count - 1) % conn->mark_cap];
        /* In order: a frame never overtakes an earlier one, so it inherits its wait. */
        if (mark.wait_lsn < last->wait_lsn) mark.wait_lsn = last->wait_lsn;
        TQ_ASSERT(last->end < mark.end);
    }
    conn->marks[(conn->mark_head + conn->mark_count) % conn->mark_cap] = mark;
    conn->mark_count++;
}

/* Packs msg as one frame straight into the output buffer: the fast encoder for the common
 * Response shapes (server/respenc.c), else protobuf-c with the size computed once (the frame
 * helpers compute it twice: tq_frame_size, then again inside tq_frame_pack). */
bool tq_conn_queue_frame(struct tq_conn *conn, const ProtobufCMessage *msg, uint64_t wait_lsn,
                         int op, bool is_response, uint64_t start_us, uint64_t send_queue_max) {
    size_t payload = 0;
    bool fast = msg->descriptor == &ticketq__response__descriptor &&
                (payload = tq_respenc_size((const Ticketq__Response *)msg)) != 0;
    if (!fast) payload = protobuf_c_message_get_packed_size(msg);
    TQ_ASSERT(payload <= UINT32_MAX);
    size_t n = TQ_FRAME_PREFIX_BYTES + payload;
    if (!out_reserve(conn, n, send_queue_max)) return false;
    uint8_t *out = conn->obuf + conn->olen;
    tq_frame_put_prefix(out, (uint32_t)payload);
    size_t written =
        fast ? tq_respenc_pack((const Ticketq__Response *)msg, out + TQ_FRAME_PREFIX_BYTES, payload)
             : protobuf_c_message_pack(msg, out + TQ_FRAME_PREFIX_BYTES);
    TQ_ASSERT(written == payload);
    conn->olen += n;
    mark_push(conn, (struct tq_out_mark){.end = conn->obase + conn->olen,
                                         .wait_lsn = wait_lsn,
                                         .start_us = start_us,
                                         .op = (int16_t)op,
                                         .is_response = is_response});
    if (is_response) conn->inflight++;
    return true;
}

bool tq_conn_queue_raw(struct tq_conn *conn, const void *bytes, size_t len) {
    if (!out_reserve(conn, len, UINT64_MAX)) return false;
    memcpy(conn->obuf + conn->olen, bytes, len);
    conn->olen += len;
    mark_push(conn,
              (struct tq_out_mark){
                  .end = conn->obase + conn->olen, .wait_lsn = 0, .op = -1, .is_response = false});
    return true;
}

void tq_conn_release_acked(struct tq_conn *conn, uint64_t acked_lsn, struct tq_metrics *m,
                           uint64_t ack_us, uint64_t now_us) {
    /* Walk marks beyond oready: release while their LSN is acknowledged. */
    for (uint32_t i = 0; i < conn->mark_count; i++) {
        struct tq_out_mark *mark = &conn->marks[(conn->mark_head + i) % conn->mark_cap];
        uint64_t end = mark->end - conn->obase;
        if (end <= conn->oready) continue;
        if (mark->wait_lsn > acked_lsn) break;
        TQ_ASSERT(end <= conn->olen);
        conn->oready = end;
        if (m != NULL && mark->is_response && mark->op >= 0) {
            tq_metrics_request(m, mark->op, mark->start_us, ack_us, now_us);
        }
    }
    TQ_ASSERT(conn->osent <= conn->oready && conn->oready <= conn->olen);
}

void tq_conn_sent(struct tq_conn *conn, size_t n) {
    TQ_ASSERT(conn->osent + n <= conn->oready);
    conn->osent += n;
    while (conn->mark_count > 0) {
        struct tq_out_mark *mark = &conn->marks[conn->mark_head];
        if (mark->end - conn->obase > conn->osent) break;
        if (mark->is_response) {
            TQ_ASSERT(conn->inflight > 0);
            conn->inflight--;
        }
        conn->mark_head = (conn->mark_head + 1) % conn->mark_cap;
        conn->mark_count--;
    }
    if (conn->osent == conn->olen) { /* everything sent: rewind for free */
        conn->obase += conn->osent;
        conn->osent = conn->oready = conn->olen = 0;
    }
}

bool tq_conn_recv_reserve(struct tq_conn *conn, size_t min_free, size_t cap_max) {
    TQ_ASSERT(conn->rlen <= conn->rcap);
    /* A single-shot recv may be writing into rbuf; a multishot one writes into ring buffers. */
    TQ_ASSERT(!conn->recv_armed || conn->recv_ring);
    if (conn->rpos > 0) { /* drop parsed bytes */
        memmove(conn->rbuf, conn->rbuf + conn->rpos, conn->rlen - conn->rpos);
        conn->rlen -= conn->rpos;
        conn->rpos = 0;
    }
    if (conn->rcap - conn->rlen >= min_free) return true;
    size_t cap = conn->rcap ? conn->rcap : TQ_RECV_BUFFER_BYTES_INITIAL;
    while (cap - conn->rlen < min_free && cap < cap_max)
        cap *= 2;
    if (cap > cap_max) cap = cap_max;
    if (cap - conn->rlen < min_free && cap <= conn->rcap) return false;
    if (cap != conn->rcap) {
        conn->rbuf = tq_xrealloc(conn->rbuf, conn->rcap, cap);
        conn->rcap = cap;
    }
    return conn->rcap - conn->rlen >= min_free;
}

void tq_conn_recv_append(struct tq_conn *conn, const uint8_t *bytes, size_t n) {
    TQ_ASSERT(!conn->recv_armed || conn->recv_ring);
    TQ_ASSERT(conn->rpos <= conn->rlen && conn->rlen <= conn->rcap);
    if (conn->rpos > 0) { /* drop parsed bytes: no SQE points into rbuf */
        memmove(conn->rbuf, conn->rbuf + conn->rpos, conn->rlen - conn->rpos);
        conn->rlen -= conn->rpos;
        conn->rpos = 0;
    }
    if (conn->rcap - conn->rlen < n) {
        size_t cap = conn->rcap ? conn->rcap : TQ_RECV_BUFFER_BYTES_INITIAL;
        while (cap - conn->rlen < n)
            cap *= 2;
        conn->rbuf = tq_xrealloc(conn->rbuf, conn->rcap, cap);
        conn->rcap = cap;
    }
    memcpy(conn->rbuf + conn->rlen, bytes, n);
    conn->rlen += n;
    TQ_ASSERT(conn->rlen <= conn->rcap);
}
