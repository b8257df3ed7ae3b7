/* server/sha256.c: SHA-256 as specified in FIPS 180-4 section 6.2.
 *
 * Owns nothing but the hash state. Invariant: ctx->block_len < 64 between calls; the message
 * length is counted in bytes and appended in bits, big-endian, at finalisation. Written from
 * the standard rather than pulled in from a crypto library because the stack is fixed (no
 * OpenSSL) and tokens are the only use; the FIPS vectors in tests pin it.
 */
#include "sha256.h"

#include "tq_assert.h"

#include <string.h>

static const uint32_t k_round[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u,
    0xab1c5ed5u, 0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu,
    0x9bdc06a7u, 0xc19bf174u, 0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu,
    0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau, 0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u,
    0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u, 0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu,
    0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u, 0xa2bfe8a1u, 0xa81a664bu,
    0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u, 0x19a4c116u,
    0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u,
    0xc67178f2u,
};

static uint32_t rotr(uint32_t x, unsigned n) {
    return (x >> n) | (x << (32u - n));
}

static void compress_block(uint32_t h[8], const uint8_t block[64]) {
    uint32_t w[64];
    for (unsigned i = 0; i < 16; i++) {
        w[i] = ((uint32_t)block[4 * i] << 24) | ((uint32_t)block[4 * i + 1] << 16) |
               ((uint32_t)block[4 * i + 2] << 8) | (uint32_t)block[4 * i + 3];
    }
    for (unsigned i = 16; i < 64; i++) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (unsigned i = 0; i < 64; i++) {
        uint32_t s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = hh + s1 + ch + k_round[i] + w[i];
        uint32_t s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = s0 + maj;
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
}

void tq_sha256_init(struct tq_sha256 *ctx) {
    static const uint32_t h0[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                   0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
    memcpy(ctx->h, h0, sizeof(h0));
    ctx->total_bytes = 0;
    ctx->block_len = 0;
}

void tq_sha256_update(struct tq_sha256 *ctx, const void *data, size_t len) {
    TQ_ASSERT(ctx->block_len < 64);
    TQ_ASSERT(data != NULL || len == 0);
    const uint8_t *p = data;
    ctx->total_bytes += len;
    while (len > 0) {
        size_t take = 64 - ctx->block_len;
        if (take > len) take = len;
        memcpy(ctx->block + ctx->block_len, p, take);
        ctx->block_len += (uint32_t)take;
        p += take;
        len -= take;
        if (ctx->block_len == 64) {
            compress_block(ctx->h, ctx->block);
            ctx->block_len = 0;
        }
    }
}

void tq_sha256_final(struct tq_sha256 *ctx, uint8_t out[TQ_SHA256_BYTES]) {
    TQ_ASSERT(ctx->block_len < 64);
    uint64_t bits = ctx->total_bytes * 8u;
    uint8_t pad[72];
    size_t pad_len = (ctx->block_len < 56) ? 56 - ctx->block_len : 120 - ctx->block_len;
    memset(pad, 0, sizeof(pad));
    pad[0] = 0x80;
    for (unsigned i = 0; i < 8; i++)
        pad[pad_len + i] = (uint8_t)(bits >> (56 - 8 * i));
    uint64_t total = ctx->total_bytes;
    tq_sha256_update(ctx, pad, pad_len + 8);
    TQ_ASSERT(ctx->block_len == 0);
    ctx->total_bytes = total;
    for (unsigned i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(ctx->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(ctx->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(ctx->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)ctx->h[i];
    }
}

void tq_sha256(const void *data, size_t len, uint8_t out[TQ_SHA256_BYTES]) {
    struct tq_sha256 ctx;
    tq_sha256_init(&ctx);
    tq_sha256_update(&ctx, data, len);
    tq_sha256_final(&ctx, out);
}

bool tq_sha256_equal(const uint8_t a[TQ_SHA256_BYTES], const uint8_t b[TQ_SHA256_BYTES]) {
    volatile uint8_t diff = 0;
    for (unsigned i = 0; i < TQ_SHA256_BYTES; i++)
        diff = (uint8_t)(diff | (a[i] ^ b[i]));
    return diff == 0;
}
