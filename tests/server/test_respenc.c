/* tests/server/test_respenc.c: the fast Response encoder (server/respenc.h).
 *
 * Goal: for every shape it accepts, tq_respenc writes exactly the bytes protobuf-c writes (so
 * clients cannot tell which encoder answered), and it declines every other shape. Method:
 * seeded random responses (ids with random has_ flags and values from 0 to UINT64_MAX, errors
 * with negative/large codes and NULL/empty/long messages, token secrets, batches of 0-300 such
 * results) are packed by both encoders and compared byte for byte, then unpacked by protobuf-c
 * and compared field by field with the input; unsupported shapes (a ticket result, a nested
 * batch, a batch holding a ticket, unknown fields) must return size 0. Finally
 * tq_conn_queue_frame's output for a random response is compared with tq_frame_pack's.
 */
#include "frame.h"
#include "respenc.h"
#include "server.h"
#include "tq_schema_guard.h"
#include "tq_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char g_strings[4][600];

static char *rnd_str(uint64_t *rng, unsigned slot) {
    unsigned kind = (unsigned)tq_test_rand_below(rng, 4);
    if (kind == 0) return NULL;
    size_t len = kind == 1   ? 0
                 : kind == 2 ? tq_test_rand_below(rng, 40)
                             : 128 + tq_test_rand_below(rng, 400);
    for (size_t i = 0; i < len; i++)
        g_strings[slot][i] = (char)('a' + tq_test_rand_below(rng, 26));
    g_strings[slot][len] = '\0';
    return g_strings[slot];
}

struct leaf {
    Ticketq__Response resp;
    Ticketq__Error err;
    Ticketq__Ids ids;
    char msg[600], secret[600];
};

static void rnd_leaf(uint64_t *rng, struct leaf *l) {
    ticketq__response__init(&l->resp);
    ticketq__error__init(&l->err);
    ticketq__ids__init(&l->ids);
    l->resp.id = tq_test_rand_u64_edges(rng);
    l->resp.has_lsn = tq_test_rand_below(rng, 2) != 0;
    l->resp.lsn = l->resp.has_lsn ? tq_test_rand_u64_edges(rng) : 0;
    if (tq_test_rand_below(rng, 3) == 0) {
        int32_t codes[] = {0, 1, 8, 127, 128, -1, INT32_MIN, INT32_MAX};
        l->err.code = (Ticketq__ErrorCode)codes[tq_test_rand_below(rng, 8)];
        char *m = rnd_str(rng, 0);
        if (m != NULL) {
            memcpy(l->msg, m, strlen(m) + 1);
            l->err.message = l->msg;
        }
        l->resp.error = &l->err;
    }
    if (tq_test_rand_below(rng, 4) != 0) {
        Ticketq__Ids *x = &l->ids;
#define R(f)                                                                                       \
    do {                                                                                           \
        x->has_##f = tq_test_rand_below(rng, 2) != 0;                                              \
        x->f = tq_test_rand_u64_edges(rng);                                                        \
    } while (0)
        R(tenant_id);
        R(token_id);
        R(queue_id);
        R(agent_id);
        R(customer_id);
        R(ticket_id);
        R(message_id);
        R(ticket_number);
#undef R
#define B(f)                                                                                       \
    do {                                                                                           \
        x->has_##f = tq_test_rand_below(rng, 2) != 0;                                              \
        x->f = tq_test_rand_below(rng, 2) != 0;                                                    \
    } while (0)
        B(customer_created);
        B(ticket_created);
        B(duplicate);
        B(over_capacity);
#undef B
        char *s = rnd_str(rng, 1);
        if (s != NULL) {
            memcpy(l->secret, s, strlen(s) + 1);
            x->token_secret = l->secret;
        }
        l->resp.result_case = TICKETQ__RESPONSE__RESULT_IDS;
        l->resp.ids = x;
    }
}

/* Packs with both encoders; checks equal bytes and a faithful round trip of the top level. */
static void check_same(const Ticketq__Response *r) {
    size_t ref_len = protobuf_c_message_get_packed_size(&r->base);
    size_t fast_len = tq_respenc_size(r);
    TQ_CHECK_UEQ(fast_len, ref_len);
    uint8_t *ref = malloc(ref_len + 1), *fast = malloc(fast_len + 1);
    TQ_CHECK(ref != NULL && fast != NULL);
    TQ_CHECK_UEQ(protobuf_c_message_pack(&r->base, ref), ref_len);
    TQ_CHECK_UEQ(tq_respenc_pack(r, fast, fast_len), fast_len);
    TQ_CHECK(memcmp(ref, fast, ref_len) == 0);
    Ticketq__Response *back = ticketq__response__unpack(NULL, fast_len, fast);
    TQ_CHECK(back != NULL);
    TQ_CHECK_UEQ(back->id, r->id);
    TQ_CHECK_EQ(back->has_lsn, r->has_lsn);
    TQ_CHECK_EQ((int)back->result_case, (int)r->result_case);
    TQ_CHECK_EQ(back->error != NULL, r->error != NULL);
    if (r->result_case == TICKETQ__RESPONSE__RESULT_BATCH) {
        TQ_CHECK_UEQ(back->batch->n_results, r->batch->n_results);
    }
    ticketq__response__free_unpacked(back, NULL);
    free(ref);
    free(fast);
}

/* The schema guard (tests/tq_schema_guard.h) for the messages respenc.c encodes; for Response
 * only the fields outside the result oneof (its members other than 11 and 12 go to protobuf-c). */
static void check_schema(void) {
    TQ_CHECK_FIELDS(ticketq__response__descriptor, true, 1, 2, 3);
    TQ_CHECK_FIELDS(ticketq__error__descriptor, false, 1, 2);
    TQ_CHECK_FIELDS(ticketq__ids__descriptor, false, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13);
    TQ_CHECK_FIELDS(ticketq__batch_result__descriptor, false, 1);
}

int main(void) {
    uint64_t rng = tq_test_seed("test_respenc");
    static struct leaf leaves[301];
    static Ticketq__Response *ptrs[301];

    /* Single responses. */
    for (int round = 0; round < 20000; round++) {
        rnd_leaf(&rng, &leaves[0]);
        check_same(&leaves[0].resp);
    }

    /* Batches of leaves (an empty batch included). */
    for (int round = 0; round < 300; round++) {
        size_t n = round == 0 ? 0 : (size_t)tq_test_rand_below(&rng, 301);
        for (size_t i = 0; i < n; i++) {
            rnd_leaf(&rng, &leaves[i + 1]);
            ptrs[i] = &leaves[i + 1].resp;
        }
        Ticketq__BatchResult br = TICKETQ__BATCH_RESULT__INIT;
        br.n_results = n;
        br.results = ptrs;
        rnd_leaf(&rng, &leaves[0]);
        leaves[0].resp.result_case = TICKETQ__RESPONSE__RESULT_BATCH;
        leaves[0].resp.batch = &br;
        check_same(&leaves[0].resp);
    }

    /* Declined shapes: a ticket result, a nested batch, a batch holding a ticket. */
    Ticketq__Ticket ticket = TICKETQ__TICKET__INIT;
    Ticketq__Response r = TICKETQ__RESPONSE__INIT;
    r.result_case = TICKETQ__RESPONSE__RESULT_TICKET;
    r.ticket = &ticket;
    TQ_CHECK_UEQ(tq_respenc_size(&r), 0);
    Ticketq__Response *one[1] = {&r};
    Ticketq__BatchResult holds_ticket = TICKETQ__BATCH_RESULT__INIT;
    holds_ticket.n_results = 1;
    holds_ticket.results = one;
    Ticketq__Response outer = TICKETQ__RESPONSE__INIT;
    outer.result_case = TICKETQ__RESPONSE__RESULT_BATCH;
    outer.batch = &holds_ticket;
    TQ_CHECK_UEQ(tq_respenc_size(&outer), 0);
    Ticketq__Response inner = TICKETQ__RESPONSE__INIT;
    inner.result_case = TICKETQ__RESPONSE__RESULT_BATCH;
    Ticketq__BatchResult empty = TICKETQ__BATCH_RESULT__INIT;
    inner.batch = &empty;
    one[0] = &inner;
    TQ_CHECK_UEQ(tq_respenc_size(&outer), 0);
    static uint8_t one_byte[1] = {1};
    ProtobufCMessageUnknownField unknown = {
        .tag = 99, .wire_type = PROTOBUF_C_WIRE_TYPE_VARINT, .len = 1, .data = one_byte};
    Ticketq__Response with_unknown = TICKETQ__RESPONSE__INIT;
    with_unknown.base.n_unknown_fields = 1;
    with_unknown.base.unknown_fields = &unknown;
    TQ_CHECK_UEQ(tq_respenc_size(&with_unknown), 0);

    /* Through the connection: the same frame bytes as tq_frame_pack, fast path and fallback. */
    for (int round = 0; round < 200; round++) {
        struct tq_conn conn;
        memset(&conn, 0, sizeof(conn));
        tq_conn_init(&conn, 3, TQ_CONN_CLIENT, 0);
        rnd_leaf(&rng, &leaves[0]);
        const ProtobufCMessage *msg = round % 2 ? &leaves[0].resp.base : &r.base;
        TQ_CHECK(tq_conn_queue_frame(&conn, msg, 1, 0, true, 0, UINT64_MAX));
        size_t want = tq_frame_size(msg);
        uint8_t *ref = malloc(want);
        TQ_CHECK(ref != NULL);
        TQ_CHECK_UEQ(tq_frame_pack(msg, ref, want), want);
        TQ_CHECK_UEQ(conn.olen, want);
        TQ_CHECK(memcmp(conn.obuf, ref, want) == 0);
        free(ref);
        conn.inflight = 0;
        tq_conn_release(&conn);
    }
    check_schema();
    printf("test_respenc: ok\n");
    return 0;
}
