/* tests/client/test_respdec.c: libticketq's fast Response decoder (client/respdec.h).
 *
 * Goal: whatever tq_respdec_decode accepts, it decodes exactly as protobuf-c does, and it never
 * accepts what protobuf-c rejects; it accepts the Response{id, lsn?, Ids?} shape every Ingest and
 * Claim answer has (else it would be useless); tq_respdec_free releases exactly what either
 * decoder allocated for that shape and declines every other shape. Method: seeded random
 * responses (ids and scalars 0..UINT64_MAX, has_ flags and bools at random; some with an Error,
 * a token_secret or another result, which must decline) are packed by protobuf-c; the fast
 * decoder's result, re-packed by protobuf-c, must equal the re-packed protobuf-c decoding, field
 * flags included. Every input is then mutated (bit flips, bytes replaced, truncations,
 * insertions) and decoded by both: the fast decoder declines or agrees byte for byte. A counting
 * allocator checks that every decoding and free leaves no block behind, including when the first
 * or second allocation fails (ASan watches the reads and the frees). A schema guard fails when
 * Response (outside its result oneof) or Ids gains a field respdec.c does not know.
 */
#include "respdec.h"
#include "tq_schema_guard.h"
#include "tq_test.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long g_blocks;       /* allocated and not yet freed */
static long g_fail_at = -1; /* fail the allocation with this index (counting from 0), -1: none */
static long g_alloc_index;

static void *count_alloc(void *ctx, size_t size) {
    (void)ctx;
    if (g_alloc_index++ == g_fail_at) return NULL;
    void *p = malloc(size);
    TQ_CHECK(p != NULL);
    g_blocks++;
    return p;
}

static void count_free(void *ctx, void *p) {
    (void)ctx;
    if (p == NULL) return;
    g_blocks--;
    free(p);
}

static ProtobufCAllocator g_alloc = {.alloc = count_alloc, .free = count_free};

static uint8_t *pack(const ProtobufCMessage *m, size_t *len_out) {
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(n + 1);
    TQ_CHECK(b != NULL);
    TQ_CHECK_UEQ(protobuf_c_message_pack(m, b), n);
    *len_out = n;
    return b;
}

static void free_either(Ticketq__Response *r) {
    if (!tq_respdec_free(r, &g_alloc)) protobuf_c_message_free_unpacked(&r->base, &g_alloc);
}

/* Decodes buf with both decoders; returns whether the fast one accepted; checks agreement and
 * that both frees leave nothing behind. */
static bool check_agree(const uint8_t *buf, size_t len) {
    TQ_CHECK_EQ(g_blocks, 0);
    Ticketq__Response *fast = tq_respdec_decode(buf, len, &g_alloc);
    Ticketq__Response *ref = (Ticketq__Response *)protobuf_c_message_unpack(
        &ticketq__response__descriptor, &g_alloc, len, buf);
    bool accepted = fast != NULL;
    if (fast != NULL) {
        TQ_CHECK(ref != NULL); /* never accept what protobuf-c rejects */
        size_t a_len, b_len;
        uint8_t *a = pack(&fast->base, &a_len), *b = pack(&ref->base, &b_len);
        TQ_CHECK_UEQ(a_len, b_len);
        TQ_CHECK(memcmp(a, b, a_len) == 0);
        free(a);
        free(b);
        TQ_CHECK_EQ((int)fast->result_case, (int)ref->result_case);
        TQ_CHECK_EQ(fast->has_lsn, ref->has_lsn);
        if (fast->result_case == TICKETQ__RESPONSE__RESULT_IDS) {
            const Ticketq__Ids *x = fast->ids, *y = ref->ids;
            TQ_CHECK_EQ(x->has_customer_id, y->has_customer_id);
            TQ_CHECK_EQ(x->has_ticket_created, y->has_ticket_created);
            TQ_CHECK_EQ(x->ticket_created, y->ticket_created);
            TQ_CHECK_EQ(x->over_capacity, y->over_capacity);
        }
        /* What the fast decoder accepts, the fast free takes, from either decoder. */
        TQ_CHECK(tq_respdec_free(fast, &g_alloc));
        TQ_CHECK(tq_respdec_free(ref, &g_alloc));
        ref = NULL;
    }
    if (ref != NULL) free_either(ref);
    TQ_CHECK_EQ(g_blocks, 0);
    return accepted;
}

static void mutate_and_check(uint64_t *rng, const uint8_t *buf, size_t len) {
    uint8_t *m = malloc(len + TQ_TEST_MUTATE_GROW);
    TQ_CHECK(m != NULL);
    for (int k = 0; k < 40; k++) {
        size_t mlen = tq_test_mutate(rng, buf, len, m);
        (void)check_agree(m, mlen);
    }
    free(m);
}

static void rnd_ids(uint64_t *rng, Ticketq__Ids *ids) {
    ticketq__ids__init(ids);
    protobuf_c_boolean *has[12] = {
        &ids->has_tenant_id,      &ids->has_token_id,      &ids->has_queue_id,
        &ids->has_agent_id,       &ids->has_customer_id,   &ids->has_ticket_id,
        &ids->has_message_id,     &ids->has_ticket_number, &ids->has_customer_created,
        &ids->has_ticket_created, &ids->has_duplicate,     &ids->has_over_capacity};
    uint64_t *u64[8] = {&ids->tenant_id,   &ids->token_id,  &ids->queue_id,   &ids->agent_id,
                        &ids->customer_id, &ids->ticket_id, &ids->message_id, &ids->ticket_number};
    protobuf_c_boolean *bools[4] = {&ids->customer_created, &ids->ticket_created, &ids->duplicate,
                                    &ids->over_capacity};
    for (int i = 0; i < 12; i++)
        *has[i] = tq_test_rand_below(rng, 2) != 0;
    for (int i = 0; i < 8; i++)
        *u64[i] = tq_test_rand_u64_edges(rng);
    for (int i = 0; i < 4; i++)
        *bools[i] = tq_test_rand_below(rng, 2) != 0;
}

int main(void) {
    /* The schema guard (tests/tq_schema_guard.h): tq_respdec_free releases a Response and its
     * Ids knowing their fields (a string or message field added to either would leak), and the
     * decoder declines fields it does not know; so a field added outside Response's result
     * oneof, or to Ids, must be looked at in respdec.c first. */
    TQ_CHECK_FIELDS(ticketq__response__descriptor, true, 1, 2, 3);
    TQ_CHECK_FIELDS(ticketq__ids__descriptor, false, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13);
    uint64_t rng = tq_test_seed("test_respdec");
    int accepted = 0, rounds = 4000;
    for (int round = 0; round < rounds; round++) {
        Ticketq__Ids ids;
        rnd_ids(&rng, &ids);
        Ticketq__Error error = TICKETQ__ERROR__INIT;
        error.code = TICKETQ__ERROR_CODE__NOT_FOUND;
        static char message[] = "no such ticket";
        error.message = message;
        Ticketq__StatsResult stats = TICKETQ__STATS_RESULT__INIT;
        Ticketq__Response resp = TICKETQ__RESPONSE__INIT;
        resp.id = tq_test_rand_u64_edges(&rng);
        resp.has_lsn = tq_test_rand_below(&rng, 2) != 0;
        resp.lsn = tq_test_rand_u64_edges(&rng);
        unsigned shape = (unsigned)tq_test_rand_below(&rng, 10);
        bool handled = true;
        if (shape <= 6) { /* the hot shape */
            resp.result_case = TICKETQ__RESPONSE__RESULT_IDS;
            resp.ids = &ids;
        } else if (shape == 7) { /* an error: declines */
            resp.error = &error;
            handled = false;
        } else if (shape == 8) { /* a token secret: declines */
            resp.result_case = TICKETQ__RESPONSE__RESULT_IDS;
            resp.ids = &ids;
            static char secret[] = "tq_secret";
            ids.token_secret = secret;
            handled = false;
        } else { /* another result: declines */
            resp.result_case = TICKETQ__RESPONSE__RESULT_STATS;
            resp.stats = &stats;
            handled = false;
        }
        size_t len;
        uint8_t *buf = pack(&resp.base, &len);
        TQ_CHECK_EQ(check_agree(buf, len), handled);
        accepted += handled;
        if (round % 4 == 0) mutate_and_check(&rng, buf, len);
        /* Allocation failures: the first (Response) or second (Ids) allocation fails. */
        if (handled && round % 16 == 0) {
            for (long fail = 0; fail < 2; fail++) {
                g_alloc_index = 0;
                g_fail_at = fail;
                TQ_CHECK(tq_respdec_decode(buf, len, &g_alloc) == NULL ||
                         resp.result_case != TICKETQ__RESPONSE__RESULT_IDS);
                TQ_CHECK_EQ(g_blocks, 0);
                g_fail_at = -1;
            }
        }
        free(buf);
    }
    TQ_CHECK_GT(accepted, rounds / 2);
    TQ_CHECK(!check_agree(NULL, 0)); /* no id: protobuf-c rejects it, so must we */
    printf("test_respdec: ok (%d of %d accepted)\n", accepted, rounds);
    return 0;
}
