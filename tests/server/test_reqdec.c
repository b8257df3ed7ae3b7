/* tests/server/test_reqdec.c: the fast request decoder (server/reqdec.h).
 *
 * Goal: whatever tq_reqdec_decode accepts, it decodes exactly as protobuf-c does, and it never
 * accepts what protobuf-c rejects; it does accept the plain Ingest, Batch-of-Ingest and Claim
 * (with or without its reply) requests clients send (else it would be useless). Method: seeded
 * random Ingest requests (random optional fields, enum values in and out of range, empty/long
 * strings, tenant ids, batches of 0-120 ops) and Claims (agent id or not, 0-16 queue ids, a
 * reply or not, with random optional fields) are packed by protobuf-c; the fast decoder must accept
 * them and its result, re-packed by protobuf-c, must equal the re-packed protobuf-c decoding. Then
 * every input is mutated (byte flips, truncations, inserted bytes, other ops) and decoded by both:
 * the fast decoder must either decline or agree with protobuf-c byte for byte (ASan watches the
 * reads).
 */
#include "reqdec.h"
#include "tq_test.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char g_text[12][400];

static char *rnd_str(uint64_t *rng, unsigned slot, bool required) {
    unsigned kind = (unsigned)tq_test_rand_below(rng, 4);
    if (kind == 0 && !required) return NULL;
    size_t len = kind <= 1   ? 0
                 : kind == 2 ? tq_test_rand_below(rng, 20)
                             : tq_test_rand_below(rng, 350);
    for (size_t i = 0; i < len; i++)
        g_text[slot][i] = (char)(' ' + tq_test_rand_below(rng, 95));
    g_text[slot][len] = '\0';
    return g_text[slot];
}

static int32_t rnd_enum(uint64_t *rng) {
    switch (tq_test_rand_below(rng, 4)) {
    case 0: return 0;
    case 1: return (int32_t)tq_test_rand_below(rng, 10);
    case 2: return (int32_t)tq_test_rand_below(rng, 1u << 20);
    default: return INT32_MAX;
    }
}

static void rnd_ingest(uint64_t *rng, Ticketq__Ingest *in, unsigned slot_base) {
    ticketq__ingest__init(in);
    in->channel = (Ticketq__Channel)rnd_enum(rng);
    in->from = rnd_str(rng, slot_base + 0, true);
    in->customer_name = rnd_str(rng, slot_base + 1, false);
    in->language = rnd_str(rng, slot_base + 2, false);
    in->external_id = rnd_str(rng, slot_base + 3, false);
    in->has_provider_ts_ms = tq_test_rand_below(rng, 2) != 0;
    in->provider_ts_ms = tq_test_rand_u64_edges(rng);
    in->has_queue_id = tq_test_rand_below(rng, 2) != 0;
    in->queue_id = tq_test_rand_u64_edges(rng);
    in->has_priority = tq_test_rand_below(rng, 2) != 0;
    in->priority = (Ticketq__Priority)rnd_enum(rng);
    in->subject = rnd_str(rng, slot_base + 4, false);
    in->body = rnd_str(rng, slot_base + 5, true);
}

/* Packs a message into a malloc'd buffer. */
static uint8_t *pack(const ProtobufCMessage *m, size_t *len_out) {
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(n + 1);
    TQ_CHECK(b != NULL);
    TQ_CHECK_UEQ(protobuf_c_message_pack(m, b), n);
    *len_out = n;
    return b;
}

/* Decodes buf with both decoders. Returns whether the fast one accepted; checks agreement. */
static bool check_agree(const uint8_t *buf, size_t len, struct tq_arena *arena) {
    Ticketq__Request *fast = tq_reqdec_decode(buf, len, arena);
    Ticketq__Request *ref = ticketq__request__unpack(NULL, len, buf);
    bool accepted = fast != NULL;
    if (fast != NULL) {
        TQ_CHECK(ref != NULL); /* never accept what protobuf-c rejects */
        size_t a_len, b_len;
        uint8_t *a = pack(&fast->base, &a_len), *b = pack(&ref->base, &b_len);
        TQ_CHECK_UEQ(a_len, b_len);
        TQ_CHECK(memcmp(a, b, a_len) == 0);
        TQ_CHECK_EQ((int)fast->op_case, (int)ref->op_case);
        TQ_CHECK_EQ(fast->has_tenant_id, ref->has_tenant_id);
        if (fast->op_case == TICKETQ__REQUEST__OP_CLAIM) {
            const Ticketq__Claim *fc = fast->claim, *rc = ref->claim;
            TQ_CHECK_EQ(fc->has_agent_id, rc->has_agent_id);
            TQ_CHECK_UEQ(fc->n_queue_ids, rc->n_queue_ids);
            TQ_CHECK_EQ(fc->reply != NULL, rc->reply != NULL);
            if (fc->reply != NULL) {
                TQ_CHECK_EQ(fc->reply->has_set_status, rc->reply->has_set_status);
                TQ_CHECK_EQ((int)fc->reply->set_status, (int)rc->reply->set_status);
                TQ_CHECK_EQ(fc->reply->has_internal_note, rc->reply->has_internal_note);
                TQ_CHECK_EQ(fc->reply->internal_note, rc->reply->internal_note);
            }
        }
        if (fast->op_case == TICKETQ__REQUEST__OP_INGEST) {
            TQ_CHECK_EQ(fast->ingest->has_priority, ref->ingest->has_priority);
            TQ_CHECK_EQ(fast->ingest->has_queue_id, ref->ingest->has_queue_id);
            TQ_CHECK_EQ((int)fast->ingest->priority, (int)ref->ingest->priority);
        }
        free(a);
        free(b);
    }
    if (ref != NULL) ticketq__request__free_unpacked(ref, NULL);
    tq_arena_reset(arena);
    return accepted;
}

static void mutate_and_check(uint64_t *rng, const uint8_t *buf, size_t len,
                             struct tq_arena *arena) {
    uint8_t *m = malloc(len + TQ_TEST_MUTATE_GROW);
    TQ_CHECK(m != NULL);
    for (int k = 0; k < 40; k++) {
        size_t mlen = tq_test_mutate(rng, buf, len, m);
        (void)check_agree(m, mlen, arena);
    }
    free(m);
}

int main(void) {
    uint64_t rng = tq_test_seed("test_reqdec");
    struct tq_arena arena;
    tq_arena_init(&arena, 64 * 1024);

    /* Single ingests: always accepted, same decoding; then mutated. */
    for (int round = 0; round < 3000; round++) {
        Ticketq__Ingest in;
        rnd_ingest(&rng, &in, 0);
        Ticketq__Request req = TICKETQ__REQUEST__INIT;
        req.id = tq_test_rand_u64_edges(&rng);
        req.has_tenant_id = tq_test_rand_below(&rng, 2) != 0;
        req.tenant_id = tq_test_rand_u64_edges(&rng);
        req.op_case = TICKETQ__REQUEST__OP_INGEST;
        req.ingest = &in;
        size_t len;
        uint8_t *buf = pack(&req.base, &len);
        TQ_CHECK(check_agree(buf, len, &arena));
        mutate_and_check(&rng, buf, len, &arena);
        free(buf);
    }

    /* Batches of ingests (empty included): accepted; then mutated. */
    static Ticketq__Ingest ins[120];
    static Ticketq__Request ops[120];
    static Ticketq__Request *op_ptrs[120];
    for (int round = 0; round < 150; round++) {
        size_t n = round == 0 ? 0 : (size_t)tq_test_rand_below(&rng, 121);
        for (size_t i = 0; i < n; i++) {
            rnd_ingest(&rng, &ins[i], (unsigned)(i % 2) * 6);
            ticketq__request__init(&ops[i]);
            ops[i].id = i + 1;
            ops[i].has_tenant_id = tq_test_rand_below(&rng, 4) == 0;
            ops[i].tenant_id = tq_test_rand_u64_edges(&rng);
            ops[i].op_case = TICKETQ__REQUEST__OP_INGEST;
            ops[i].ingest = &ins[i];
            op_ptrs[i] = &ops[i];
        }
        Ticketq__Batch batch = TICKETQ__BATCH__INIT;
        batch.n_ops = n;
        batch.ops = op_ptrs;
        Ticketq__Request req = TICKETQ__REQUEST__INIT;
        req.id = tq_test_rand_u64_edges(&rng);
        req.op_case = TICKETQ__REQUEST__OP_BATCH;
        req.batch = &batch;
        size_t len;
        uint8_t *buf = pack(&req.base, &len);
        TQ_CHECK(check_agree(buf, len, &arena));
        if (round < 40) mutate_and_check(&rng, buf, len, &arena);
        free(buf);
    }

    /* Claims, with and without a reply: accepted (up to 16 queue ids); then mutated. */
    static uint64_t queue_ids[20];
    for (int round = 0; round < 3000; round++) {
        Ticketq__ClaimReply reply = TICKETQ__CLAIM_REPLY__INIT;
        reply.body = rnd_str(&rng, 0, true);
        reply.has_set_status = tq_test_rand_below(&rng, 2) != 0;
        reply.set_status = (Ticketq__Status)rnd_enum(&rng);
        reply.has_internal_note = tq_test_rand_below(&rng, 2) != 0;
        reply.internal_note = tq_test_rand_below(&rng, 2) != 0;
        Ticketq__Claim claim = TICKETQ__CLAIM__INIT;
        claim.has_agent_id = tq_test_rand_below(&rng, 4) != 0;
        claim.agent_id = tq_test_rand_u64_edges(&rng);
        claim.n_queue_ids = (size_t)tq_test_rand_below(&rng, round < 100 ? 21 : 4);
        for (size_t i = 0; i < claim.n_queue_ids; i++)
            queue_ids[i] = tq_test_rand_u64_edges(&rng);
        claim.queue_ids = queue_ids;
        claim.reply = tq_test_rand_below(&rng, 4) != 0 ? &reply : NULL;
        Ticketq__Request req = TICKETQ__REQUEST__INIT;
        req.id = tq_test_rand_u64_edges(&rng);
        req.has_tenant_id = tq_test_rand_below(&rng, 2) != 0;
        req.tenant_id = tq_test_rand_u64_edges(&rng);
        req.op_case = TICKETQ__REQUEST__OP_CLAIM;
        req.claim = &claim;
        size_t len;
        uint8_t *buf = pack(&req.base, &len);
        /* More than 16 queue ids decline (protobuf-c decodes them); everything else is ours. */
        TQ_CHECK_EQ(check_agree(buf, len, &arena), claim.n_queue_ids <= 16);
        mutate_and_check(&rng, buf, len, &arena);
        free(buf);
    }

    /* Other shapes decline (and agree trivially): a Ping, an ingest with a tag, a reply. */
    Ticketq__Ping ping = TICKETQ__PING__INIT;
    Ticketq__Request preq = TICKETQ__REQUEST__INIT;
    preq.op_case = TICKETQ__REQUEST__OP_PING;
    preq.ping = &ping;
    size_t len;
    uint8_t *buf = pack(&preq.base, &len);
    TQ_CHECK(!check_agree(buf, len, &arena));
    free(buf);
    Ticketq__Ingest tagged;
    rnd_ingest(&rng, &tagged, 0);
    char *tags[1] = {g_text[11]};
    strcpy(g_text[11], "vip");
    tagged.n_tags = 1;
    tagged.tags = tags;
    Ticketq__Request treq = TICKETQ__REQUEST__INIT;
    treq.op_case = TICKETQ__REQUEST__OP_INGEST;
    treq.ingest = &tagged;
    buf = pack(&treq.base, &len);
    TQ_CHECK(!check_agree(buf, len, &arena));
    free(buf);
    TQ_CHECK(!check_agree(NULL, 0, &arena));

    tq_arena_destroy(&arena);
    printf("test_reqdec: ok\n");
    return 0;
}
