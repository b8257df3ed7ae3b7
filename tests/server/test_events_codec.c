/* tests/server/test_events_codec.c: the events log record (server/events_codec.h).
 *
 * Goal: what Subscribe catch-up reads from the log is exactly what apply emitted, and bytes
 * from disk can never crash the decoder. Method: seeded random event lists (random fields,
 * zeros and extremes, negative old/new values) are encoded and decoded and compared field by
 * field; then every prefix of an encoding, and random single-byte corruptions of it, are
 * decoded: each must either fail with TQ_ERR_CORRUPT or decode to valid enums (never crash,
 * never read past the end, which ASan checks). The encoding must also equal, byte for byte, the
 * one the first encoder wrote (ref_encode below: the mask first, then the values; the encoder
 * now writes it in one pass), since records already on disk were written by it.
 */
#include "events_codec.h"
#include "tq_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rnd_val(uint64_t *rng) {
    switch (tq_test_rand_below(rng, 4)) {
    case 0: return 0;
    case 1: return tq_test_rand_below(rng, 100);
    case 2: return UINT64_MAX;
    default: return tq_test_rand(rng);
    }
}

static void random_event(uint64_t *rng, uint64_t lsn, struct tq_event *e) {
    memset(e, 0, sizeof(*e));
    e->type = (enum tq_event_type)(1 + tq_test_rand_below(rng, 14));
    e->lsn = lsn;
    e->at_ms = rnd_val(rng);
    e->tenant_id = rnd_val(rng);
    e->ticket_id = rnd_val(rng);
    e->message_id = rnd_val(rng);
    e->customer_id = rnd_val(rng);
    e->agent_id = rnd_val(rng);
    e->queue_id = rnd_val(rng);
    e->field = (enum tq_event_field)tq_test_rand_below(rng, 10);
    e->old_value = (int64_t)rnd_val(rng);
    e->new_value = -(int64_t)tq_test_rand_below(rng, 1000);
    e->sla_metric = (enum tq_sla_metric)tq_test_rand_below(rng, 5);
    if (tq_test_rand_below(rng, 3) == 0) { /* a one-byte mask (bits 7..10 clear), as most are */
        e->field = (enum tq_event_field)0;
        e->old_value = e->new_value = 0;
        e->sla_metric = (enum tq_sla_metric)0;
    }
}

/* The original two-pass encoder, kept as the reference for the bytes. */
static size_t ref_varint(uint8_t *p, uint64_t v) {
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static uint64_t ref_zigzag(int64_t v) {
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static size_t ref_encode(uint64_t cmd_lsn, const struct tq_event *events, uint32_t count,
                         uint8_t *buf) {
    size_t n = 0;
    buf[n++] = TQ_EVENTS_CODEC_VERSION;
    n += ref_varint(buf + n, cmd_lsn);
    n += ref_varint(buf + n, count);
    for (uint32_t i = 0; i < count; i++) {
        const struct tq_event *e = &events[i];
        uint64_t v[11] = {e->at_ms,
                          e->tenant_id,
                          e->ticket_id,
                          e->message_id,
                          e->customer_id,
                          e->agent_id,
                          e->queue_id,
                          (uint64_t)e->field,
                          ref_zigzag(e->old_value),
                          ref_zigzag(e->new_value),
                          (uint64_t)e->sla_metric};
        uint64_t mask = 0;
        for (unsigned b = 0; b < 11; b++) {
            if (v[b] != 0) mask |= 1u << b;
        }
        buf[n++] = (uint8_t)e->type;
        n += ref_varint(buf + n, mask);
        for (unsigned b = 0; b < 11; b++) {
            if (v[b] != 0) n += ref_varint(buf + n, v[b]);
        }
    }
    return n;
}

int main(void) {
    uint64_t rng = tq_test_seed("test_events_codec");
    static uint8_t ref[300 * TQ_EVENT_ENCODED_BYTES_MAX + 64];
    static struct tq_event in[300], out[300];
    static uint8_t buf[300 * TQ_EVENT_ENCODED_BYTES_MAX + 64];
    for (int round = 0; round < 200; round++) {
        uint32_t count = (uint32_t)tq_test_rand_below(&rng, round < 100 ? 8 : 300);
        uint64_t lsn = 1 + tq_test_rand_below(&rng, 1u << 30);
        for (uint32_t i = 0; i < count; i++)
            random_event(&rng, lsn, &in[i]);
        size_t n = tq_events_encode(lsn, in, count, buf, sizeof(buf));
        TQ_CHECK_GT(n, 0);
        TQ_CHECK_LE(n, tq_events_encoded_size_max(count));
        TQ_CHECK_UEQ(ref_encode(lsn, in, count, ref), n);
        TQ_CHECK(memcmp(ref, buf, n) == 0);
        uint64_t got_lsn = 0;
        uint32_t got = 0;
        struct tq_error err;
        TQ_CHECK_OK(tq_events_decode(buf, n, &got_lsn, out, 300, &got, &err), &err);
        TQ_CHECK_UEQ(got_lsn, lsn);
        TQ_CHECK_EQ(got, count);
        for (uint32_t i = 0; i < count; i++) {
            TQ_CHECK_EQ(out[i].type, in[i].type);
            TQ_CHECK_UEQ(out[i].lsn, lsn);
            TQ_CHECK_UEQ(out[i].at_ms, in[i].at_ms);
            TQ_CHECK_UEQ(out[i].tenant_id, in[i].tenant_id);
            TQ_CHECK_UEQ(out[i].ticket_id, in[i].ticket_id);
            TQ_CHECK_UEQ(out[i].message_id, in[i].message_id);
            TQ_CHECK_UEQ(out[i].customer_id, in[i].customer_id);
            TQ_CHECK_UEQ(out[i].agent_id, in[i].agent_id);
            TQ_CHECK_UEQ(out[i].queue_id, in[i].queue_id);
            TQ_CHECK_EQ(out[i].field, in[i].field);
            TQ_CHECK_EQ(out[i].old_value, in[i].old_value);
            TQ_CHECK_EQ(out[i].new_value, in[i].new_value);
            TQ_CHECK_EQ(out[i].sla_metric, in[i].sla_metric);
        }
        /* Too small an output array is refused, not overflowed. */
        if (count > 1) {
            TQ_CHECK_ERR(tq_events_decode(buf, n, &got_lsn, out, count - 1, &got, &err),
                         TQ_ERR_RESOURCE_EXHAUSTED, &err);
        }
        /* Every proper prefix is corrupt (the count promises more). */
        if (round < 100) {
            for (size_t len = 0; len < n; len++) {
                uint8_t *copy = malloc(len ? len : 1);
                memcpy(copy, buf, len);
                TQ_CHECK_ERR(tq_events_decode(copy, len, &got_lsn, out, 300, &got, &err),
                             TQ_ERR_CORRUPT, &err);
                free(copy);
            }
        }
        /* Random corruptions decode or fail cleanly. */
        for (int k = 0; k < 20 && n > 0; k++) {
            uint8_t *copy = malloc(n);
            memcpy(copy, buf, n);
            copy[tq_test_rand_below(&rng, n)] ^= (uint8_t)(1 + tq_test_rand_below(&rng, 255));
            enum tq_err e = tq_events_decode(copy, n, &got_lsn, out, 300, &got, &err);
            if (e == TQ_OK) {
                for (uint32_t i = 0; i < got; i++) {
                    TQ_CHECK(out[i].type >= TQ_EVENT_TENANT_CREATED &&
                             out[i].type <= TQ_EVENT_CUSTOMER_ERASED);
                    TQ_CHECK_LE(out[i].field, TQ_FIELD_CUSTOMER);
                }
            } else {
                TQ_CHECK(e == TQ_ERR_CORRUPT || e == TQ_ERR_RESOURCE_EXHAUSTED);
            }
            free(copy);
        }
    }
    printf("test_events_codec: ok\n");
    return 0;
}
