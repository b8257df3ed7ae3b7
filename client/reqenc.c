/* client/reqenc.c: the fast Request encoder (see reqenc.h for why it exists).
 *
 * Wire format (proto2, as protobuf-c 1.4 writes it; the server's respenc.c does the same for
 * responses): fields in field-number order, each as its tag (number << 3 | wire type, a varint:
 * one byte below field 16, two for the op numbers 31-34) then a varint (wire type 0) or a
 * varint length and the bytes (wire type 2). An optional scalar is written when its has_ flag is
 * set (whatever its value), an optional string or message when its pointer is not NULL, a
 * repeated field element by element (proto2: not packed). Enums are int32: a negative value is
 * sign-extended to ten bytes; bool is one byte, 0 or 1.
 *
 * Handled shapes, with no unknown fields anywhere (anything else: size 0):
 *   Request { 1 id, 2 tenant_id?, oneof: 31 Ingest | 32 Reply | 34 Claim }
 *   Ingest  { 1 channel, 2 from, 3 customer_name?, 4 language?, 5 external_id?,
 *             6 provider_ts_ms?, 7 queue_id?, 8 priority?, 9 subject?, 10 body, 12 tags* }
 *           (no attachments)
 *   Reply   { 1 ticket_id, 2 body, 3 internal_note?, 4 automated?, 5 channel?, 6 set_status?,
 *             8 agent_id? } (no attachments)
 *   Claim   { 1 agent_id?, 2 queue_ids*, 3 ClaimReply { 1 body, 2 set_status?, 3 internal_note? }?
 * } Required strings must not be NULL (else size 0, and protobuf-c's check reports it). Invariant:
 * tq_reqenc_pack writes exactly tq_reqenc_size bytes (asserted by the caller and by
 * tests/client/test_reqenc.c, which compares every byte with protobuf-c's on random requests).
 */
#include "reqenc.h"

#include "tq_assert.h"
#include "wire.h"

#include <stdbool.h>
#include <string.h>

static uint64_t tag(unsigned num, unsigned wt) {
    return ((uint64_t)num << 3) | wt;
}

/* int32 (enums) as protobuf-c packs it: negative values take ten bytes. */
static uint64_t int32_wire(int32_t v) {
    return (uint64_t)(int64_t)v;
}

static size_t scalar_size(unsigned num, uint64_t v) {
    return tq_varint_size(tag(num, TQ_WT_VARINT)) + tq_varint_size(v);
}

static size_t bytes_size(unsigned num, size_t len) {
    return tq_varint_size(tag(num, TQ_WT_LEN)) + tq_varint_size(len) + len;
}

static uint8_t *scalar_put(uint8_t *p, unsigned num, uint64_t v) {
    return tq_varint_put(tq_varint_put(p, tag(num, TQ_WT_VARINT)), v);
}

static uint8_t *str_put(uint8_t *p, unsigned num, const char *s, size_t len) {
    p = tq_varint_put(tq_varint_put(p, tag(num, TQ_WT_LEN)), len);
    memcpy(p, s, len);
    return p + len;
}

static uint8_t *head_put(uint8_t *p, unsigned num, size_t len) {
    return tq_varint_put(tq_varint_put(p, tag(num, TQ_WT_LEN)), len);
}

static bool plain(const ProtobufCMessage *m, const ProtobufCMessageDescriptor *d) {
    return m->descriptor == d && m->n_unknown_fields == 0;
}

/* Optional strings: size when present, 0 when NULL. */
static size_t opt_str_size(unsigned num, const char *s) {
    return s != NULL ? bytes_size(num, strlen(s)) : 0;
}

static uint8_t *opt_str_put(uint8_t *p, unsigned num, const char *s) {
    return s != NULL ? str_put(p, num, s, strlen(s)) : p;
}

/* ---- Ingest ---- */

static bool ingest_ok(const Ticketq__Ingest *in) {
    if (!plain(&in->base, &ticketq__ingest__descriptor)) return false;
    if (in->from == NULL || in->body == NULL || in->n_attachments != 0) return false;
    for (size_t i = 0; i < in->n_tags; i++)
        if (in->tags[i] == NULL) return false;
    return true;
}

static size_t ingest_size(const Ticketq__Ingest *in) {
    size_t n = scalar_size(1, int32_wire((int32_t)in->channel)) + bytes_size(2, strlen(in->from));
    n += opt_str_size(3, in->customer_name) + opt_str_size(4, in->language) +
         opt_str_size(5, in->external_id);
    if (in->has_provider_ts_ms) n += scalar_size(6, in->provider_ts_ms);
    if (in->has_queue_id) n += scalar_size(7, in->queue_id);
    if (in->has_priority) n += scalar_size(8, int32_wire((int32_t)in->priority));
    n += opt_str_size(9, in->subject) + bytes_size(10, strlen(in->body));
    for (size_t i = 0; i < in->n_tags; i++)
        n += bytes_size(12, strlen(in->tags[i]));
    return n;
}

static uint8_t *ingest_put(uint8_t *p, const Ticketq__Ingest *in) {
    p = scalar_put(p, 1, int32_wire((int32_t)in->channel));
    p = str_put(p, 2, in->from, strlen(in->from));
    p = opt_str_put(p, 3, in->customer_name);
    p = opt_str_put(p, 4, in->language);
    p = opt_str_put(p, 5, in->external_id);
    if (in->has_provider_ts_ms) p = scalar_put(p, 6, in->provider_ts_ms);
    if (in->has_queue_id) p = scalar_put(p, 7, in->queue_id);
    if (in->has_priority) p = scalar_put(p, 8, int32_wire((int32_t)in->priority));
    p = opt_str_put(p, 9, in->subject);
    p = str_put(p, 10, in->body, strlen(in->body));
    for (size_t i = 0; i < in->n_tags; i++)
        p = str_put(p, 12, in->tags[i], strlen(in->tags[i]));
    return p;
}

/* ---- Reply ---- */

static bool reply_ok(const Ticketq__Reply *r) {
    return plain(&r->base, &ticketq__reply__descriptor) && r->body != NULL && r->n_attachments == 0;
}

static size_t reply_size(const Ticketq__Reply *r) {
    size_t n = scalar_size(1, r->ticket_id) + bytes_size(2, strlen(r->body));
    if (r->has_internal_note) n += 2;
    if (r->has_automated) n += 2;
    if (r->has_channel) n += scalar_size(5, int32_wire((int32_t)r->channel));
    if (r->has_set_status) n += scalar_size(6, int32_wire((int32_t)r->set_status));
    if (r->has_agent_id) n += scalar_size(8, r->agent_id);
    return n;
}

static uint8_t *reply_put(uint8_t *p, const Ticketq__Reply *r) {
    p = scalar_put(p, 1, r->ticket_id);
    p = str_put(p, 2, r->body, strlen(r->body));
    if (r->has_internal_note) p = scalar_put(p, 3, r->internal_note ? 1 : 0);
    if (r->has_automated) p = scalar_put(p, 4, r->automated ? 1 : 0);
    if (r->has_channel) p = scalar_put(p, 5, int32_wire((int32_t)r->channel));
    if (r->has_set_status) p = scalar_put(p, 6, int32_wire((int32_t)r->set_status));
    if (r->has_agent_id) p = scalar_put(p, 8, r->agent_id);
    return p;
}

/* ---- Claim ---- */

static bool claim_ok(const Ticketq__Claim *c) {
    if (!plain(&c->base, &ticketq__claim__descriptor)) return false;
    return c->reply == NULL ||
           (plain(&c->reply->base, &ticketq__claim_reply__descriptor) && c->reply->body != NULL);
}

static size_t claim_reply_size(const Ticketq__ClaimReply *r) {
    size_t n = bytes_size(1, strlen(r->body));
    if (r->has_set_status) n += scalar_size(2, int32_wire((int32_t)r->set_status));
    if (r->has_internal_note) n += 2;
    return n;
}

static size_t claim_size(const Ticketq__Claim *c) {
    size_t n = c->has_agent_id ? scalar_size(1, c->agent_id) : 0;
    for (size_t i = 0; i < c->n_queue_ids; i++)
        n += scalar_size(2, c->queue_ids[i]);
    if (c->reply != NULL) n += bytes_size(3, claim_reply_size(c->reply));
    return n;
}

static uint8_t *claim_put(uint8_t *p, const Ticketq__Claim *c) {
    if (c->has_agent_id) p = scalar_put(p, 1, c->agent_id);
    for (size_t i = 0; i < c->n_queue_ids; i++)
        p = scalar_put(p, 2, c->queue_ids[i]);
    if (c->reply != NULL) {
        const Ticketq__ClaimReply *r = c->reply;
        p = head_put(p, 3, claim_reply_size(r));
        p = str_put(p, 1, r->body, strlen(r->body));
        if (r->has_set_status) p = scalar_put(p, 2, int32_wire((int32_t)r->set_status));
        if (r->has_internal_note) p = scalar_put(p, 3, r->internal_note ? 1 : 0);
    }
    return p;
}

/* ---- Request ---- */

/* The op's body size, or 0 with *ok false when the op is not handled. */
static size_t op_size(const Ticketq__Request *req, bool *ok) {
    *ok = false;
    switch (req->op_case) {
    case TICKETQ__REQUEST__OP_INGEST:
        if (req->ingest == NULL || !ingest_ok(req->ingest)) return 0;
        *ok = true;
        return ingest_size(req->ingest);
    case TICKETQ__REQUEST__OP_REPLY:
        if (req->reply == NULL || !reply_ok(req->reply)) return 0;
        *ok = true;
        return reply_size(req->reply);
    case TICKETQ__REQUEST__OP_CLAIM:
        if (req->claim == NULL || !claim_ok(req->claim)) return 0;
        *ok = true;
        return claim_size(req->claim);
    default: return 0;
    }
}

size_t tq_reqenc_size(const Ticketq__Request *req) {
    if (!plain(&req->base, &ticketq__request__descriptor)) return 0;
    bool ok;
    size_t body = op_size(req, &ok);
    if (!ok) return 0;
    size_t n = scalar_size(1, req->id);
    if (req->has_tenant_id) n += scalar_size(2, req->tenant_id);
    return n + bytes_size((unsigned)req->op_case, body);
}

size_t tq_reqenc_pack(const Ticketq__Request *req, uint8_t *out) {
    bool ok;
    size_t body = op_size(req, &ok);
    TQ_ASSERT(ok);
    uint8_t *p = scalar_put(out, 1, req->id);
    if (req->has_tenant_id) p = scalar_put(p, 2, req->tenant_id);
    p = head_put(p, (unsigned)req->op_case, body);
    uint8_t *body_start = p;
    switch (req->op_case) {
    case TICKETQ__REQUEST__OP_INGEST: p = ingest_put(p, req->ingest); break;
    case TICKETQ__REQUEST__OP_REPLY: p = reply_put(p, req->reply); break;
    case TICKETQ__REQUEST__OP_CLAIM: p = claim_put(p, req->claim); break;
    default: TQ_ASSERT(false && "op not handled by tq_reqenc");
    }
    TQ_ASSERT((size_t)(p - body_start) == body);
    return (size_t)(p - out);
}
