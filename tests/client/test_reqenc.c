/* tests/client/test_reqenc.c: libticketq's fast Request encoder (client/reqenc.h).
 *
 * Goal: for every shape it accepts (Ingest, Reply, Claim with or without its reply, with or
 * without tenant_id), tq_reqenc writes exactly the bytes protobuf-c writes, so the server cannot
 * tell which encoder a client used; and it declines (size 0) every other shape: another op, an
 * attachment, unknown fields, a NULL required string, a NULL tag. Method: seeded random
 * requests (ids and scalars from 0 to UINT64_MAX, enums including negative and large values,
 * optional fields and has_ flags at random, strings NULL/empty/short/over 128 bytes so lengths
 * take one and two bytes, 0-5 tags, 0-5 queue ids) are packed by both encoders and compared byte
 * for byte, then unpacked by protobuf-c and re-packed (round trip). Swapping two fields' order in
 * reqenc.c, dropping a has_ check or mis-sizing a length makes it fail.
 */
#include "reqenc.h"
#include "tq_schema_guard.h"
#include "tq_test.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rnd_enum(uint64_t *rng) {
    int values[] = {0, 1, 2, 3, 5, 10, 127, 128, -1, -2147483647 - 1, 2147483647};
    return values[tq_test_rand_below(rng, sizeof(values) / sizeof(values[0]))];
}

#define STRINGS 16
static char g_str[STRINGS][400];
static unsigned g_next;

/* NULL (only when may_null), empty, short or long (two-byte length). */
static char *rnd_str(uint64_t *rng, bool may_null) {
    unsigned kind = (unsigned)tq_test_rand_below(rng, 4);
    if (kind == 0 && may_null) return NULL;
    char *s = g_str[g_next++ % STRINGS];
    size_t len = kind <= 1   ? 0
                 : kind == 2 ? tq_test_rand_below(rng, 40)
                             : 128 + tq_test_rand_below(rng, 250);
    for (size_t i = 0; i < len; i++)
        s[i] = (char)('a' + tq_test_rand_below(rng, 26));
    s[len] = '\0';
    return s;
}

struct req_store {
    Ticketq__Request req;
    Ticketq__Ingest in;
    Ticketq__Reply reply;
    Ticketq__Claim claim;
    Ticketq__ClaimReply claim_reply;
    char *tags[5];
    uint64_t queue_ids[5];
};

static bool coin(uint64_t *rng) {
    return tq_test_rand_below(rng, 2) != 0;
}

static void rnd_request(uint64_t *rng, struct req_store *s) {
    ticketq__request__init(&s->req);
    s->req.id = tq_test_rand_u64_edges(rng);
    s->req.has_tenant_id = coin(rng);
    s->req.tenant_id = s->req.has_tenant_id ? tq_test_rand_u64_edges(rng) : 0;
    switch (tq_test_rand_below(rng, 3)) {
    case 0: {
        Ticketq__Ingest *in = &s->in;
        ticketq__ingest__init(in);
        in->channel = (Ticketq__Channel)rnd_enum(rng);
        in->from = rnd_str(rng, false);
        in->customer_name = rnd_str(rng, true);
        in->language = rnd_str(rng, true);
        in->external_id = rnd_str(rng, true);
        in->has_provider_ts_ms = coin(rng);
        in->provider_ts_ms = tq_test_rand_u64_edges(rng);
        in->has_queue_id = coin(rng);
        in->queue_id = tq_test_rand_u64_edges(rng);
        in->has_priority = coin(rng);
        in->priority = (Ticketq__Priority)rnd_enum(rng);
        in->subject = rnd_str(rng, true);
        in->body = rnd_str(rng, false);
        in->n_tags = (size_t)tq_test_rand_below(rng, 6);
        for (size_t i = 0; i < in->n_tags; i++)
            s->tags[i] = rnd_str(rng, false);
        in->tags = s->tags;
        s->req.op_case = TICKETQ__REQUEST__OP_INGEST;
        s->req.ingest = in;
        break;
    }
    case 1: {
        Ticketq__Reply *r = &s->reply;
        ticketq__reply__init(r);
        r->ticket_id = tq_test_rand_u64_edges(rng);
        r->body = rnd_str(rng, false);
        r->has_internal_note = coin(rng);
        r->internal_note = coin(rng);
        r->has_automated = coin(rng);
        r->automated = coin(rng);
        r->has_channel = coin(rng);
        r->channel = (Ticketq__Channel)rnd_enum(rng);
        r->has_set_status = coin(rng);
        r->set_status = (Ticketq__Status)rnd_enum(rng);
        r->has_agent_id = coin(rng);
        r->agent_id = tq_test_rand_u64_edges(rng);
        s->req.op_case = TICKETQ__REQUEST__OP_REPLY;
        s->req.reply = r;
        break;
    }
    default: {
        Ticketq__Claim *c = &s->claim;
        ticketq__claim__init(c);
        c->has_agent_id = coin(rng);
        c->agent_id = tq_test_rand_u64_edges(rng);
        c->n_queue_ids = (size_t)tq_test_rand_below(rng, 6);
        for (size_t i = 0; i < c->n_queue_ids; i++)
            s->queue_ids[i] = tq_test_rand_u64_edges(rng);
        c->queue_ids = s->queue_ids;
        if (coin(rng)) {
            ticketq__claim_reply__init(&s->claim_reply);
            s->claim_reply.body = rnd_str(rng, false);
            s->claim_reply.has_set_status = coin(rng);
            s->claim_reply.set_status = (Ticketq__Status)rnd_enum(rng);
            s->claim_reply.has_internal_note = coin(rng);
            s->claim_reply.internal_note = coin(rng);
            c->reply = &s->claim_reply;
        }
        s->req.op_case = TICKETQ__REQUEST__OP_CLAIM;
        s->req.claim = c;
        break;
    }
    }
}

static uint8_t g_a[8192], g_b[8192];

static void check_same(const Ticketq__Request *req) {
    size_t n = tq_reqenc_size(req);
    TQ_CHECK(n > 0);
    size_t want = protobuf_c_message_get_packed_size(&req->base);
    TQ_CHECK_UEQ(n, want);
    TQ_CHECK(n <= sizeof(g_a));
    memset(g_a, 0xa5, sizeof(g_a));
    size_t wrote = tq_reqenc_pack(req, g_a);
    TQ_CHECK_UEQ(wrote, n);
    TQ_CHECK_UEQ(g_a[n], 0xa5); /* nothing written past the size */
    TQ_CHECK_UEQ(protobuf_c_message_pack(&req->base, g_b), want);
    TQ_CHECK_MEM_EQ(g_a, g_b, n);
    /* Round trip: what protobuf-c decodes from our bytes packs to the same bytes. */
    Ticketq__Request *back = ticketq__request__unpack(NULL, n, g_a);
    TQ_CHECK(back != NULL);
    TQ_CHECK_UEQ(back->id, req->id);
    TQ_CHECK_EQ((int)back->op_case, (int)req->op_case);
    TQ_CHECK_UEQ(protobuf_c_message_pack(&back->base, g_b), n);
    TQ_CHECK_MEM_EQ(g_a, g_b, n);
    ticketq__request__free_unpacked(back, NULL);
}

static void check_declined(void) {
    struct req_store s;
    uint64_t rng = 7;
    /* Another op. */
    Ticketq__Ping ping = TICKETQ__PING__INIT;
    ticketq__request__init(&s.req);
    s.req.op_case = TICKETQ__REQUEST__OP_PING;
    s.req.ping = &ping;
    TQ_CHECK_UEQ(tq_reqenc_size(&s.req), 0);
    /* No op at all. */
    ticketq__request__init(&s.req);
    TQ_CHECK_UEQ(tq_reqenc_size(&s.req), 0);
    /* An ingest with an attachment, a NULL from, a NULL body, a NULL tag, unknown fields. */
    do {
        rnd_request(&rng, &s);
    } while (s.req.op_case != TICKETQ__REQUEST__OP_INGEST);
    TQ_CHECK(tq_reqenc_size(&s.req) > 0);
    Ticketq__Attachment att = TICKETQ__ATTACHMENT__INIT;
    Ticketq__Attachment *atts[1] = {&att};
    s.in.n_attachments = 1;
    s.in.attachments = atts;
    TQ_CHECK_UEQ(tq_reqenc_size(&s.req), 0);
    s.in.n_attachments = 0;
    char *from = s.in.from;
    s.in.from = NULL;
    TQ_CHECK_UEQ(tq_reqenc_size(&s.req), 0);
    s.in.from = from;
    char *body = s.in.body;
    s.in.body = NULL;
    TQ_CHECK_UEQ(tq_reqenc_size(&s.req), 0);
    s.in.body = body;
    s.in.n_tags = 1;
    s.tags[0] = NULL;
    TQ_CHECK_UEQ(tq_reqenc_size(&s.req), 0);
    s.in.n_tags = 0;
    TQ_CHECK(tq_reqenc_size(&s.req) > 0);
    static uint8_t one = 1;
    ProtobufCMessageUnknownField unknown = {
        .tag = 99, .wire_type = PROTOBUF_C_WIRE_TYPE_VARINT, .len = 1, .data = &one};
    s.in.base.n_unknown_fields = 1;
    s.in.base.unknown_fields = &unknown;
    TQ_CHECK_UEQ(tq_reqenc_size(&s.req), 0);
    s.in.base.n_unknown_fields = 0;
    s.req.base.n_unknown_fields = 1;
    s.req.base.unknown_fields = &unknown;
    TQ_CHECK_UEQ(tq_reqenc_size(&s.req), 0);
    s.req.base.n_unknown_fields = 0;
    /* A claim whose reply has no body; a reply with an attachment or no body. */
    do {
        rnd_request(&rng, &s);
    } while (s.req.op_case != TICKETQ__REQUEST__OP_CLAIM || s.claim.reply == NULL);
    s.claim_reply.body = NULL;
    TQ_CHECK_UEQ(tq_reqenc_size(&s.req), 0);
    do {
        rnd_request(&rng, &s);
    } while (s.req.op_case != TICKETQ__REQUEST__OP_REPLY);
    s.reply.n_attachments = 1;
    s.reply.attachments = atts;
    TQ_CHECK_UEQ(tq_reqenc_size(&s.req), 0);
    s.reply.n_attachments = 0;
    s.reply.body = NULL;
    TQ_CHECK_UEQ(tq_reqenc_size(&s.req), 0);
}

/* The schema guard (tests/tq_schema_guard.h): every field of the messages reqenc.c encodes (for
 * Request: outside the op oneof) must be one it writes or declines, so a field added in
 * ticketq.proto fails here instead of being dropped without a word. */
static void check_schema(void) {
    TQ_CHECK_FIELDS(ticketq__request__descriptor, true, 1, 2);
    TQ_CHECK_FIELDS(ticketq__ingest__descriptor, false, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                    11 /* attachments: declined */, 12);
    TQ_CHECK_FIELDS(ticketq__reply__descriptor, false, 1, 2, 3, 4, 5, 6,
                    7 /* attachments: declined */, 8);
    TQ_CHECK_FIELDS(ticketq__claim__descriptor, false, 1, 2, 3);
    TQ_CHECK_FIELDS(ticketq__claim_reply__descriptor, false, 1, 2, 3);
}

int main(void) {
    uint64_t rng = tq_test_seed("test_reqenc");
    static struct req_store s;
    unsigned seen[3] = {0, 0, 0};
    for (int round = 0; round < 30000; round++) {
        rnd_request(&rng, &s);
        check_same(&s.req);
        seen[s.req.op_case == TICKETQ__REQUEST__OP_INGEST  ? 0
             : s.req.op_case == TICKETQ__REQUEST__OP_REPLY ? 1
                                                           : 2]++;
    }
    TQ_CHECK(seen[0] > 0 && seen[1] > 0 && seen[2] > 0);
    check_declined();
    check_schema();
    printf("test_reqenc: ok (%u ingests, %u replies, %u claims)\n", seen[0], seen[1], seen[2]);
    return 0;
}
