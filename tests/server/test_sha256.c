/* tests/server/test_sha256.c: SHA-256 against the FIPS 180-2 example vectors.
 *
 * Goal: the token hash is the standard SHA-256. Method: the three FIPS 180-2 appendix B
 * messages ("abc", the 448-bit two-block message, one million 'a'), plus the empty string,
 * each hashed in one call and fed in random-sized pieces (seeded), which must agree; and the
 * constant-time comparison must tell equal from different digests.
 */
#include "sha256.h"
#include "tq_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void hex(const uint8_t d[32], char out[65]) {
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void check(const uint8_t *msg, size_t len, const char *expect, uint64_t *rng) {
    uint8_t d[32];
    char h[65];
    tq_sha256(msg, len, d);
    hex(d, h);
    TQ_CHECK_STR_EQ(h, expect);
    struct tq_sha256 ctx;
    tq_sha256_init(&ctx);
    size_t off = 0;
    while (off < len) {
        size_t n = 1 + tq_test_rand_below(rng, 130);
        if (n > len - off) n = len - off;
        tq_sha256_update(&ctx, msg + off, n);
        off += n;
    }
    uint8_t d2[32];
    tq_sha256_final(&ctx, d2);
    TQ_CHECK(tq_sha256_equal(d, d2));
}

int main(void) {
    uint64_t rng = tq_test_seed("test_sha256");
    check((const uint8_t *)"abc", 3,
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", &rng);
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check((const uint8_t *)two, strlen(two),
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1", &rng);
    check((const uint8_t *)"", 0,
          "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", &rng);
    size_t n = 1000000;
    uint8_t *a = malloc(n);
    TQ_CHECK(a != NULL);
    memset(a, 'a', n);
    check(a, n, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", &rng);
    free(a);
    uint8_t x[32], y[32];
    tq_sha256("x", 1, x);
    memcpy(y, x, 32);
    TQ_CHECK(tq_sha256_equal(x, y));
    y[31] ^= 1;
    TQ_CHECK(!tq_sha256_equal(x, y));
    y[31] ^= 1;
    y[0] ^= 0x80;
    TQ_CHECK(!tq_sha256_equal(x, y));
    printf("test_sha256: ok\n");
    return 0;
}
