/* server/respenc.c: the fast Response encoder (see respenc.h for why it exists).
 *
 * Wire format (proto2, as protobuf-c 1.4 writes it): fields in field-number order, each as a
 * one-byte tag (number << 3 | wire type; every number here is < 16) then a varint (wire type 0)
 * or a varint length and the bytes (wire type 2). An optional scalar is written when its has_
 * flag is set (whatever its value), an optional string or message when its pointer is not NULL,
 * a oneof member when the case names it. int32 (the ErrorCode enum) is sign-extended to 64
 * bits when negative (10 bytes); bool is one byte, 0 or 1.
 *
 * Handled shapes (anything else: tq_respenc_size returns 0 and the caller uses protobuf-c):
 *   Response { 1 id, 2 Error{1 code, 2 message}?, 3 lsn?, oneof: none | 11 BatchResult
 *              {1 repeated Response (handled shapes)} | 12 Ids{1..12 scalars, 13 token_secret} }
 * with no unknown fields anywhere. The size pass walks the message once; the pack pass walks it
 * once more and writes each length after its body (len_open/len_close: one byte reserved, the
 * body moved up in the rare case its length needs more), so nothing is sized twice. The bytes
 * are the same as protobuf-c's: minimal varints, fields in number order.
 * Invariant: tq_respenc_pack writes exactly tq_respenc_size bytes (asserted), and never more
 * than size bytes: a body is moved up only by the bytes its final length takes, which the size
 * pass counted.
 */
#include "respenc.h"

#include "tq_assert.h"
#include "wire.h"

#include <stdbool.h>
#include <string.h>

#define TAG(num, wt) ((uint8_t)(((num) << 3) | (wt)))

/* int32 as protobuf-c packs it: negative values take ten bytes. */
static uint64_t int32_wire(int32_t v) {
    return (uint64_t)(int64_t)v;
}

static size_t len_field_size(size_t len) {
    return 1 + tq_varint_size(len) + len;
}

static bool error_ok(const Ticketq__Error *e) {
    return e->base.descriptor == &ticketq__error__descriptor && e->base.n_unknown_fields == 0;
}

static size_t error_size(const Ticketq__Error *e) {
    size_t n = 1 + tq_varint_size(int32_wire((int32_t)e->code));
    if (e->message != NULL) n += len_field_size(strlen(e->message));
    return n;
}

static bool ids_ok(const Ticketq__Ids *ids) {
    return ids->base.descriptor == &ticketq__ids__descriptor && ids->base.n_unknown_fields == 0;
}

/* Calls F(number, has, value) for the scalar fields of Ids in field-number order. */
#define IDS_U64(F, x)                                                                              \
    F(1, x->has_tenant_id, x->tenant_id)                                                           \
    F(2, x->has_token_id, x->token_id)                                                             \
    F(3, x->has_queue_id, x->queue_id)                                                             \
    F(4, x->has_agent_id, x->agent_id)                                                             \
    F(5, x->has_customer_id, x->customer_id)                                                       \
    F(6, x->has_ticket_id, x->ticket_id)                                                           \
    F(7, x->has_message_id, x->message_id)                                                         \
    F(8, x->has_ticket_number, x->ticket_number)                                                   \
    F(9, x->has_customer_created, (uint32_t)(x->customer_created != 0))                            \
    F(10, x->has_ticket_created, (uint32_t)(x->ticket_created != 0))                               \
    F(11, x->has_duplicate, (uint32_t)(x->duplicate != 0))                                         \
    F(12, x->has_over_capacity, (uint32_t)(x->over_capacity != 0))

static size_t ids_size(const Ticketq__Ids *x) {
    size_t n = 0;
#define SZ(num, has, v)                                                                            \
    if (has) n += 1 + tq_varint_size((uint64_t)(v));
    IDS_U64(SZ, x)
#undef SZ
    if (x->token_secret != NULL) n += len_field_size(strlen(x->token_secret));
    return n;
}

static uint8_t *ids_put(const Ticketq__Ids *x, uint8_t *p) {
#define PUT(num, has, v)                                                                           \
    if (has) {                                                                                     \
        *p++ = TAG(num, TQ_WT_VARINT);                                                             \
        p = tq_varint_put(p, (uint64_t)(v));                                                       \
    }
    IDS_U64(PUT, x)
#undef PUT
    if (x->token_secret != NULL) {
        size_t len = strlen(x->token_secret);
        *p++ = TAG(13, TQ_WT_LEN);
        p = tq_varint_put(p, len);
        memcpy(p, x->token_secret, len);
        p += len;
    }
    return p;
}

/* Size of resp, or 0 if its shape is not handled. depth bounds the recursion (a batch's
 * results are responses; batches do not nest on the wire we produce). */
static size_t resp_size(const Ticketq__Response *r, unsigned depth) {
    if (r == NULL || r->base.descriptor != &ticketq__response__descriptor ||
        r->base.n_unknown_fields != 0) {
        return 0;
    }
    size_t n = 1 + tq_varint_size(r->id);
    if (r->error != NULL) {
        if (!error_ok(r->error)) return 0;
        n += len_field_size(error_size(r->error));
    }
    if (r->has_lsn) n += 1 + tq_varint_size(r->lsn);
    switch (r->result_case) {
    case TICKETQ__RESPONSE__RESULT__NOT_SET: break;
    case TICKETQ__RESPONSE__RESULT_IDS:
        if (r->ids == NULL || !ids_ok(r->ids)) return 0;
        n += len_field_size(ids_size(r->ids));
        break;
    case TICKETQ__RESPONSE__RESULT_BATCH: {
        const Ticketq__BatchResult *b = r->batch;
        if (depth > 0 || b == NULL || b->base.descriptor != &ticketq__batch_result__descriptor ||
            b->base.n_unknown_fields != 0) {
            return 0;
        }
        size_t inner = 0;
        for (size_t i = 0; i < b->n_results; i++) {
            size_t s = resp_size(b->results[i], depth + 1);
            if (s == 0) return 0;
            inner += len_field_size(s);
        }
        n += len_field_size(inner);
        break;
    }
    default: return 0;
    }
    return n;
}

/* Writes a length-delimited field whose length is not known yet: the tag, one byte reserved
 * for the length, then put() writes the body at p. Almost every body here is under 128 bytes,
 * so the length fits the reserved byte; a longer body is moved up by the extra varint bytes
 * (rare: a batch result, or an error message). This is why the pack pass needs no size pass of
 * its own (it used to size every batch element twice more). */
static uint8_t *len_open(uint8_t *p, uint8_t tag) {
    *p++ = tag;
    return p + 1; /* the body starts after the reserved length byte */
}

static uint8_t *len_close(uint8_t *body, uint8_t *end) {
    size_t len = (size_t)(end - body);
    size_t extra = tq_varint_size(len) - 1;
    if (extra > 0) memmove(body + extra, body, len);
    tq_varint_put(body - 1, len);
    return end + extra;
}

static uint8_t *resp_put(const Ticketq__Response *r, uint8_t *p, unsigned depth) {
    *p++ = TAG(1, TQ_WT_VARINT);
    p = tq_varint_put(p, r->id);
    if (r->error != NULL) {
        uint8_t *body = len_open(p, TAG(2, TQ_WT_LEN));
        p = body;
        *p++ = TAG(1, TQ_WT_VARINT);
        p = tq_varint_put(p, int32_wire((int32_t)r->error->code));
        if (r->error->message != NULL) {
            size_t len = strlen(r->error->message);
            *p++ = TAG(2, TQ_WT_LEN);
            p = tq_varint_put(p, len);
            memcpy(p, r->error->message, len);
            p += len;
        }
        p = len_close(body, p);
    }
    if (r->has_lsn) {
        *p++ = TAG(3, TQ_WT_VARINT);
        p = tq_varint_put(p, r->lsn);
    }
    if (r->result_case == TICKETQ__RESPONSE__RESULT_IDS) {
        uint8_t *body = len_open(p, TAG(12, TQ_WT_LEN));
        p = len_close(body, ids_put(r->ids, body));
    } else if (r->result_case == TICKETQ__RESPONSE__RESULT_BATCH) {
        const Ticketq__BatchResult *b = r->batch;
        uint8_t *outer = len_open(p, TAG(11, TQ_WT_LEN));
        p = outer;
        for (size_t i = 0; i < b->n_results; i++) {
            uint8_t *body = len_open(p, TAG(1, TQ_WT_LEN));
            p = len_close(body, resp_put(b->results[i], body, depth + 1));
        }
        p = len_close(outer, p);
    }
    return p;
}

size_t tq_respenc_size(const Ticketq__Response *resp) {
    return resp_size(resp, 0);
}

size_t tq_respenc_pack(const Ticketq__Response *resp, uint8_t *out, size_t size) {
    TQ_ASSERT(resp != NULL && out != NULL);
    TQ_ASSERT(size >= 2);
    uint8_t *end = resp_put(resp, out, 0);
    TQ_ASSERT((size_t)(end - out) == size);
    return size;
}
