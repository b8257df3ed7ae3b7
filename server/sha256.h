/* server/sha256.h: SHA-256 (FIPS 180-4), small and dependency-free.
 *
 * Used for API tokens: the server stores and logs only SHA-256(token), never the token. Tested
 * against the FIPS 180-2 example vectors (tests/server/test_sha256.c).
 */
#ifndef TQ_SERVER_SHA256_H
#define TQ_SERVER_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TQ_SHA256_BYTES 32

struct tq_sha256 {
    uint32_t h[8];
    uint64_t total_bytes; /* bytes absorbed so far */
    uint8_t block[64];
    uint32_t block_len; /* bytes buffered in block, < 64 */
};

void tq_sha256_init(struct tq_sha256 *ctx);
void tq_sha256_update(struct tq_sha256 *ctx, const void *data, size_t len);
void tq_sha256_final(struct tq_sha256 *ctx, uint8_t out[TQ_SHA256_BYTES]);
/* One-shot convenience. */
void tq_sha256(const void *data, size_t len, uint8_t out[TQ_SHA256_BYTES]);

/* Compares two digests in time independent of their contents (no early exit). */
bool tq_sha256_equal(const uint8_t a[TQ_SHA256_BYTES], const uint8_t b[TQ_SHA256_BYTES]);

#endif
