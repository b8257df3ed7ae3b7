/* client/respdec.c: the fast Response decoder (see respdec.h for why it exists).
 *
 * Wire format (proto2, as protobuf-c 1.4 reads it): a tag varint (number << 3 | wire type),
 * then a varint (wire type 0) or a varint length and that many bytes (wire type 2). Accepted:
 *   Response 1 id varint (required) | 3 lsn varint | 12 Ids len
 *   Ids      1..8 varints (uint64) | 9..12 varints read as bool (nonzero = true, as protobuf-c's
 *            parse_boolean)
 * each field at most once; a repeated scalar field is legal proto2 (protobuf-c keeps the last)
 * but no encoder sends one, so it declines, as do every other field and wire type.
 * Varints: at most ten bytes, the tenth at most 1 (no overflow; protobuf-c would wrap).
 * Invariant: never reads outside [buf, buf + len); every length is checked against what is left
 * before use. The message is decoded on the stack and allocated only once accepted, so a decline
 * allocates nothing and an allocation failure frees what it allocated.
 */
#include "respdec.h"

#include "tq_assert.h"
#include "wire.h"

/* Reads a one-byte tag, field numbers 1..15 (every field handled here is below 16; a longer
 * tag, even a non-minimal one for a small number, declines). */
static bool get_tag(struct tq_wire_rd *r, uint32_t *field, uint32_t *wt) {
    if (r->p == r->end) return false;
    uint8_t b = *r->p;
    if ((b & 0x80) != 0 || (b >> 3) == 0) return false;
    r->p++;
    *field = (uint32_t)(b >> 3);
    *wt = (uint32_t)(b & 7);
    return true;
}

/* Sets an optional uint64 field (its has_ flag and value). */
#define SET_U64(name) (ids->has_##name = 1, ids->name = v)
/* Sets an optional bool field as protobuf-c reads it: any nonzero varint is true. */
#define SET_BOOL(name) (ids->has_##name = 1, ids->name = v != 0)

static bool decode_ids(struct tq_wire_rd r, Ticketq__Ids *ids) {
    uint32_t seen = 0;
    while (r.p < r.end) {
        uint32_t field, wt;
        uint64_t v;
        if (!get_tag(&r, &field, &wt) || field > 12 || wt != TQ_WT_VARINT) return false;
        if ((seen & (1u << field)) != 0 || !tq_wire_get_varint(&r, &v)) return false;
        seen |= 1u << field;
        switch (field) {
        case 1: SET_U64(tenant_id); break;
        case 2: SET_U64(token_id); break;
        case 3: SET_U64(queue_id); break;
        case 4: SET_U64(agent_id); break;
        case 5: SET_U64(customer_id); break;
        case 6: SET_U64(ticket_id); break;
        case 7: SET_U64(message_id); break;
        case 8: SET_U64(ticket_number); break;
        case 9: SET_BOOL(customer_created); break;
        case 10: SET_BOOL(ticket_created); break;
        case 11: SET_BOOL(duplicate); break;
        case 12: SET_BOOL(over_capacity); break;
        default: TQ_UNREACHABLE(); /* 1..12 checked above */
        }
    }
    return true;
}

#undef SET_U64
#undef SET_BOOL

Ticketq__Response *tq_respdec_decode(const uint8_t *buf, size_t len,
                                     ProtobufCAllocator *allocator) {
    TQ_ASSERT(buf != NULL || len == 0);
    TQ_ASSERT(allocator != NULL && allocator->alloc != NULL);
    /* Decoded on the stack first, so a decline (an event batch, an error) allocates nothing. */
    struct tq_wire_rd r = {.p = buf, .end = buf + len};
    Ticketq__Response resp = TICKETQ__RESPONSE__INIT;
    Ticketq__Ids ids = TICKETQ__IDS__INIT;
    bool has_id = false;
    while (r.p < r.end) {
        uint32_t field, wt;
        uint64_t n;
        if (!get_tag(&r, &field, &wt)) return NULL;
        if (field == 1 && wt == TQ_WT_VARINT && !has_id) {
            if (!tq_wire_get_varint(&r, &resp.id)) return NULL;
            has_id = true;
        } else if (field == 3 && wt == TQ_WT_VARINT && !resp.has_lsn) {
            if (!tq_wire_get_varint(&r, &resp.lsn)) return NULL;
            resp.has_lsn = 1;
        } else if (field == 12 && wt == TQ_WT_LEN &&
                   resp.result_case == TICKETQ__RESPONSE__RESULT__NOT_SET) {
            if (!tq_wire_get_varint(&r, &n) || n > (uint64_t)(r.end - r.p)) return NULL;
            struct tq_wire_rd sub = {.p = r.p, .end = r.p + n};
            r.p += n;
            if (!decode_ids(sub, &ids)) return NULL;
            resp.result_case = TICKETQ__RESPONSE__RESULT_IDS;
        } else {
            return NULL;
        }
    }
    if (!has_id) return NULL;
    Ticketq__Response *out = allocator->alloc(allocator->allocator_data, sizeof(*out));
    if (out == NULL) return NULL;
    *out = resp;
    if (resp.result_case == TICKETQ__RESPONSE__RESULT_IDS) {
        out->ids = allocator->alloc(allocator->allocator_data, sizeof(*out->ids));
        if (out->ids == NULL) {
            allocator->free(allocator->allocator_data, out);
            return NULL;
        }
        *out->ids = ids;
    }
    return out;
}

bool tq_respdec_free(Ticketq__Response *resp, ProtobufCAllocator *allocator) {
    TQ_ASSERT(resp != NULL);
    TQ_ASSERT(resp->base.descriptor == &ticketq__response__descriptor);
    if (resp->error != NULL || resp->base.unknown_fields != NULL) return false;
    if (resp->result_case == TICKETQ__RESPONSE__RESULT_IDS) {
        const Ticketq__Ids *ids = resp->ids;
        if (ids != NULL && (ids->base.unknown_fields != NULL || ids->token_secret != NULL)) {
            return false;
        }
        allocator->free(allocator->allocator_data, resp->ids);
    } else if (resp->result_case != TICKETQ__RESPONSE__RESULT__NOT_SET) {
        return false;
    }
    allocator->free(allocator->allocator_data, resp);
    return true;
}
