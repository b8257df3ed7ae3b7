/* server/reqdec.c: the fast decoder for Ingest requests, Batches of them and Claims (see
 * reqdec.h).
 *
 * Accepted encodings (proto2 wire format; anything else declines and protobuf-c decides):
 *   Request  1 id varint (required) | 2 tenant_id varint | 31 Ingest len | 12 Batch len | 34
 *            Claim len (12 and 34 top level only); each field at most once, only one of
 *            31/12/34.
 *   Batch    1 Request len, repeated (each an ingest Request as above, no nested batch).
 *   Ingest   1 channel, 8 priority: enum varints of at most 5 bytes that fit 32 bits;
 *            6 provider_ts_ms, 7 queue_id: varints; 2 from, 3 customer_name, 4 language,
 *            5 external_id, 9 subject, 10 body: strings; each at most once; 1, 2 and 10
 *            required; 11 attachments, 12 tags and unknown fields decline.
 *   Claim    1 agent_id varint (at most once) | 2 queue_ids varint, repeated, unpacked only
 *            (at most CLAIM_QUEUES_MAX; the packed form declines) | 3 ClaimReply len (at most
 *            once).
 *   ClaimReply 1 body string (required) | 2 set_status enum varint | 3 internal_note bool
 *            varint (nonzero = true, as protobuf-c reads it); each at most once.
 * Varints: at most 10 bytes, the tenth at most 1 (no overflow), as protobuf-c reads them.
 * Enums are stored as protobuf-c stores them (the int32 of the low 32 bits, unvalidated: the
 * dispatcher checks ranges). Strings become NUL-terminated arena copies of their bytes.
 * Invariant: never reads outside [buf, buf + len); every length is checked against what is
 * left before use.
 */
#include "reqdec.h"

#include "tq_assert.h"
#include "wire.h"

#include <stdbool.h>
#include <string.h>

/* An enum as protobuf-c stores it, for varints of at most 5 bytes within 32 bits. */
static bool get_enum(struct tq_wire_rd *r, int32_t *out) {
    const uint8_t *start = r->p;
    uint64_t v;
    if (!tq_wire_get_varint(r, &v) || r->p - start > 5 || v > UINT32_MAX) return false;
    *out = (int32_t)(uint32_t)v;
    return true;
}

static bool get_len(struct tq_wire_rd *r, struct tq_wire_rd *sub) {
    uint64_t n;
    if (!tq_wire_get_varint(r, &n) || n > (uint64_t)(r->end - r->p)) return false;
    sub->p = r->p;
    sub->end = r->p + n;
    r->p += n;
    return true;
}

static bool get_string(struct tq_wire_rd *r, struct tq_arena *arena, char **out) {
    struct tq_wire_rd s;
    if (!get_len(r, &s)) return false;
    size_t n = (size_t)(s.end - s.p);
    char *str = tq_arena_alloc(arena, n + 1);
    if (n > 0) memcpy(str, s.p, n);
    str[n] = '\0';
    *out = str;
    return true;
}

/* Reads a tag: field number (< 2^29) and wire type. */
static bool get_tag(struct tq_wire_rd *r, uint32_t *field, uint32_t *wt) {
    uint64_t t;
    const uint8_t *start = r->p;
    if (!tq_wire_get_varint(r, &t) || r->p - start > 5 || (t >> 3) == 0 || (t >> 3) > 0x1fffffff) {
        return false;
    }
    *field = (uint32_t)(t >> 3);
    *wt = (uint32_t)(t & 7);
    return true;
}

static Ticketq__Ingest *decode_ingest(struct tq_wire_rd r, struct tq_arena *arena) {
    Ticketq__Ingest *in = tq_arena_alloc(arena, sizeof(*in));
    ticketq__ingest__init(in);
    uint32_t seen = 0;
    while (r.p < r.end) {
        uint32_t field, wt;
        if (!get_tag(&r, &field, &wt) || field > 10 || (seen & (1u << field)) != 0) return NULL;
        seen |= 1u << field;
        bool ok;
        int32_t e = 0;
        switch (field) {
        case 1:
            ok = wt == TQ_WT_VARINT && get_enum(&r, &e);
            in->channel = (Ticketq__Channel)e;
            break;
        case 2: ok = wt == TQ_WT_LEN && get_string(&r, arena, &in->from); break;
        case 3: ok = wt == TQ_WT_LEN && get_string(&r, arena, &in->customer_name); break;
        case 4: ok = wt == TQ_WT_LEN && get_string(&r, arena, &in->language); break;
        case 5: ok = wt == TQ_WT_LEN && get_string(&r, arena, &in->external_id); break;
        case 6:
            ok = wt == TQ_WT_VARINT && tq_wire_get_varint(&r, &in->provider_ts_ms);
            in->has_provider_ts_ms = true;
            break;
        case 7:
            ok = wt == TQ_WT_VARINT && tq_wire_get_varint(&r, &in->queue_id);
            in->has_queue_id = true;
            break;
        case 8:
            ok = wt == TQ_WT_VARINT && get_enum(&r, &e);
            in->priority = (Ticketq__Priority)e;
            in->has_priority = true;
            break;
        case 9: ok = wt == TQ_WT_LEN && get_string(&r, arena, &in->subject); break;
        case 10: ok = wt == TQ_WT_LEN && get_string(&r, arena, &in->body); break;
        default: ok = false; break;
        }
        if (!ok) return NULL;
    }
    const uint32_t required = (1u << 1) | (1u << 2) | (1u << 10);
    return (seen & required) == required ? in : NULL;
}

/* Queue ids a Claim may name and still be decoded here: the bench and the agents' clients name
 * one or a few; a longer list goes to protobuf-c (same result, just slower). */
#define CLAIM_QUEUES_MAX 16

static Ticketq__ClaimReply *decode_claim_reply(struct tq_wire_rd r, struct tq_arena *arena) {
    Ticketq__ClaimReply *cr = tq_arena_alloc(arena, sizeof(*cr));
    ticketq__claim_reply__init(cr);
    uint32_t seen = 0;
    while (r.p < r.end) {
        uint32_t field, wt;
        if (!get_tag(&r, &field, &wt) || field > 3 || (seen & (1u << field)) != 0) return NULL;
        seen |= 1u << field;
        bool ok;
        int32_t e = 0;
        uint64_t v = 0;
        switch (field) {
        case 1: ok = wt == TQ_WT_LEN && get_string(&r, arena, &cr->body); break;
        case 2:
            ok = wt == TQ_WT_VARINT && get_enum(&r, &e);
            cr->set_status = (Ticketq__Status)e;
            cr->has_set_status = true;
            break;
        case 3:
            ok = wt == TQ_WT_VARINT && tq_wire_get_varint(&r, &v);
            cr->internal_note = v != 0;
            cr->has_internal_note = true;
            break;
        default: ok = false; break;
        }
        if (!ok) return NULL;
    }
    return (seen & (1u << 1)) != 0 ? cr : NULL;
}

static Ticketq__Claim *decode_claim(struct tq_wire_rd r, struct tq_arena *arena) {
    Ticketq__Claim *cl = tq_arena_alloc(arena, sizeof(*cl));
    ticketq__claim__init(cl);
    uint64_t queues[CLAIM_QUEUES_MAX];
    size_t queue_count = 0;
    while (r.p < r.end) {
        uint32_t field, wt;
        struct tq_wire_rd sub;
        if (!get_tag(&r, &field, &wt)) return NULL;
        if (field == 1 && wt == TQ_WT_VARINT && !cl->has_agent_id) {
            if (!tq_wire_get_varint(&r, &cl->agent_id)) return NULL;
            cl->has_agent_id = true;
        } else if (field == 2 && wt == TQ_WT_VARINT && queue_count < CLAIM_QUEUES_MAX) {
            if (!tq_wire_get_varint(&r, &queues[queue_count])) return NULL;
            queue_count++;
        } else if (field == 3 && wt == TQ_WT_LEN && cl->reply == NULL) {
            if (!get_len(&r, &sub) || (cl->reply = decode_claim_reply(sub, arena)) == NULL) {
                return NULL;
            }
        } else {
            return NULL;
        }
    }
    TQ_ASSERT(queue_count <= CLAIM_QUEUES_MAX);
    if (queue_count > 0) {
        cl->queue_ids = tq_arena_alloc(arena, queue_count * sizeof(*cl->queue_ids));
        memcpy(cl->queue_ids, queues, queue_count * sizeof(*cl->queue_ids));
        cl->n_queue_ids = queue_count;
    }
    return cl;
}

static Ticketq__Request *decode_request(struct tq_wire_rd r, struct tq_arena *arena, bool top);

static Ticketq__Batch *decode_batch(struct tq_wire_rd r, struct tq_arena *arena) {
    /* First pass: count the ops (and check the framing) so the array is allocated once. */
    size_t n = 0;
    for (struct tq_wire_rd c = r; c.p < c.end; n++) {
        uint32_t field, wt;
        struct tq_wire_rd sub;
        if (!get_tag(&c, &field, &wt) || field != 1 || wt != TQ_WT_LEN || !get_len(&c, &sub)) {
            return NULL;
        }
    }
    Ticketq__Batch *b = tq_arena_alloc(arena, sizeof(*b));
    ticketq__batch__init(b);
    b->ops = n > 0 ? tq_arena_alloc(arena, n * sizeof(*b->ops)) : NULL;
    while (r.p < r.end) {
        uint32_t field, wt;
        struct tq_wire_rd sub;
        (void)get_tag(&r, &field, &wt); /* checked by the first pass */
        (void)get_len(&r, &sub);
        Ticketq__Request *op = decode_request(sub, arena, false);
        if (op == NULL) return NULL;
        TQ_ASSERT(b->n_ops < n);
        b->ops[b->n_ops++] = op;
    }
    return b;
}

static Ticketq__Request *decode_request(struct tq_wire_rd r, struct tq_arena *arena, bool top) {
    Ticketq__Request *req = tq_arena_alloc(arena, sizeof(*req));
    ticketq__request__init(req);
    bool has_id = false;
    while (r.p < r.end) {
        uint32_t field, wt;
        struct tq_wire_rd sub;
        if (!get_tag(&r, &field, &wt)) return NULL;
        if (field == 1 && wt == TQ_WT_VARINT && !has_id) {
            if (!tq_wire_get_varint(&r, &req->id)) return NULL;
            has_id = true;
        } else if (field == 2 && wt == TQ_WT_VARINT && !req->has_tenant_id) {
            if (!tq_wire_get_varint(&r, &req->tenant_id)) return NULL;
            req->has_tenant_id = true;
        } else if (field == 31 && wt == TQ_WT_LEN &&
                   req->op_case == TICKETQ__REQUEST__OP__NOT_SET) {
            if (!get_len(&r, &sub) || (req->ingest = decode_ingest(sub, arena)) == NULL) {
                return NULL;
            }
            req->op_case = TICKETQ__REQUEST__OP_INGEST;
        } else if (field == 12 && wt == TQ_WT_LEN && top &&
                   req->op_case == TICKETQ__REQUEST__OP__NOT_SET) {
            if (!get_len(&r, &sub) || (req->batch = decode_batch(sub, arena)) == NULL) {
                return NULL;
            }
            req->op_case = TICKETQ__REQUEST__OP_BATCH;
        } else if (field == 34 && wt == TQ_WT_LEN && top &&
                   req->op_case == TICKETQ__REQUEST__OP__NOT_SET) {
            if (!get_len(&r, &sub) || (req->claim = decode_claim(sub, arena)) == NULL) {
                return NULL;
            }
            req->op_case = TICKETQ__REQUEST__OP_CLAIM;
        } else {
            return NULL;
        }
    }
    return has_id && req->op_case != TICKETQ__REQUEST__OP__NOT_SET ? req : NULL;
}

Ticketq__Request *tq_reqdec_decode(const uint8_t *buf, size_t len, struct tq_arena *arena) {
    TQ_ASSERT(buf != NULL || len == 0);
    TQ_ASSERT(arena != NULL);
    struct tq_wire_rd r = {.p = buf, .end = buf + len};
    return decode_request(r, arena, true);
}
