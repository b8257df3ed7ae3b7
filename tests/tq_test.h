/* tests/tq_test.h: the check macros every ticketq test uses.
 *
 * Each test is its own executable (ctest runs each in its own process with a TIMEOUT). Checks
 * print both operands, the file and line, and stop the test with exit(1). Random tests take
 * their seed from TQ_SEED (or the time) and print it first, so a failure can be reproduced with
 * `TQ_SEED=<seed> ctest -R <name>`. Exit code 77 means skipped (SKIP_RETURN_CODE 77).
 */
#ifndef TQ_TEST_H
#define TQ_TEST_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TQ_TEST_SKIP 77

static uint64_t tq_test_seed_value;

#define TQ_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s (seed %" PRIu64 ")\n", __FILE__, __LINE__,    \
                    #cond, tq_test_seed_value);                                                    \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define TQ_CHECK_INT_OP(a, op, b)                                                                  \
    do {                                                                                           \
        long long tq_a_ = (long long)(a), tq_b_ = (long long)(b);                                  \
        if (!(tq_a_ op tq_b_)) {                                                                   \
            fprintf(stderr, "%s:%d: CHECK failed: %s %s %s (%lld vs %lld, seed %" PRIu64 ")\n",    \
                    __FILE__, __LINE__, #a, #op, #b, tq_a_, tq_b_, tq_test_seed_value);            \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define TQ_CHECK_UINT_OP(a, op, b)                                                                 \
    do {                                                                                           \
        unsigned long long tq_a_ = (unsigned long long)(a), tq_b_ = (unsigned long long)(b);       \
        if (!(tq_a_ op tq_b_)) {                                                                   \
            fprintf(stderr, "%s:%d: CHECK failed: %s %s %s (%llu vs %llu, seed %" PRIu64 ")\n",    \
                    __FILE__, __LINE__, #a, #op, #b, tq_a_, tq_b_, tq_test_seed_value);            \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define TQ_CHECK_EQ(a, b)  TQ_CHECK_INT_OP(a, ==, b)
#define TQ_CHECK_NE(a, b)  TQ_CHECK_INT_OP(a, !=, b)
#define TQ_CHECK_LT(a, b)  TQ_CHECK_INT_OP(a, <, b)
#define TQ_CHECK_LE(a, b)  TQ_CHECK_INT_OP(a, <=, b)
#define TQ_CHECK_GT(a, b)  TQ_CHECK_INT_OP(a, >, b)
#define TQ_CHECK_GE(a, b)  TQ_CHECK_INT_OP(a, >=, b)
#define TQ_CHECK_UEQ(a, b) TQ_CHECK_UINT_OP(a, ==, b)

#define TQ_CHECK_STR_EQ(a, b)                                                                      \
    do {                                                                                           \
        const char *tq_a_ = (a), *tq_b_ = (b);                                                     \
        if (tq_a_ == NULL || tq_b_ == NULL || strcmp(tq_a_, tq_b_) != 0) {                         \
            fprintf(stderr,                                                                        \
                    "%s:%d: CHECK failed: %s == %s (\"%s\" vs \"%s\", seed %" PRIu64 ")\n",        \
                    __FILE__, __LINE__, #a, #b, tq_a_ ? tq_a_ : "(null)",                          \
                    tq_b_ ? tq_b_ : "(null)", tq_test_seed_value);                                 \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define TQ_CHECK_MEM_EQ(a, b, n)                                                                   \
    do {                                                                                           \
        if (memcmp((a), (b), (n)) != 0) {                                                          \
            fprintf(stderr,                                                                        \
                    "%s:%d: CHECK failed: %s and %s differ in their first %zu bytes "              \
                    "(seed %" PRIu64 ")\n",                                                        \
                    __FILE__, __LINE__, #a, #b, (size_t)(n), tq_test_seed_value);                  \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Expects an enum tq_err expression to equal the expected code; prints the error message of
 * a struct tq_error named by err_ptr (may be NULL). */
#define TQ_CHECK_ERR(expr, expected, err_ptr)                                                      \
    do {                                                                                           \
        int tq_got_ = (int)(expr);                                                                 \
        if (tq_got_ != (int)(expected)) {                                                          \
            const struct tq_error *tq_e_ = (err_ptr);                                              \
            fprintf(stderr,                                                                        \
                    "%s:%d: CHECK failed: %s returned %d, expected %s=%d (%s) (seed %" PRIu64      \
                    ")\n",                                                                         \
                    __FILE__, __LINE__, #expr, tq_got_, #expected, (int)(expected),                \
                    tq_e_ ? tq_e_->msg : "", tq_test_seed_value);                                  \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define TQ_CHECK_OK(expr, err_ptr) TQ_CHECK_ERR(expr, 0, err_ptr)

/* Reads TQ_SEED or derives one from the clock; prints it; returns it. */
static inline uint64_t tq_test_seed(const char *test_name) {
    const char *env = getenv("TQ_SEED");
    uint64_t seed;
    if (env != NULL && env[0] != '\0') {
        seed = strtoull(env, NULL, 0);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec;
    }
    tq_test_seed_value = seed;
    printf("%s: seed %" PRIu64 " (reproduce with TQ_SEED=%" PRIu64 ")\n", test_name, seed, seed);
    fflush(stdout);
    return seed;
}

/* splitmix64: a small deterministic PRNG for tests. */
static inline uint64_t tq_test_rand(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t tq_test_rand_below(uint64_t *state, uint64_t n) {
    return n == 0 ? 0 : tq_test_rand(state) % n;
}

/* A uint64 for wire tests: 0, a one-byte varint, a three-byte one, UINT64_MAX (ten bytes) or
 * any value, one in five each. */
static inline uint64_t tq_test_rand_u64_edges(uint64_t *state) {
    switch (tq_test_rand_below(state, 5)) {
    case 0: return 0;
    case 1: return tq_test_rand_below(state, 128);
    case 2: return tq_test_rand_below(state, 1u << 20);
    case 3: return UINT64_MAX;
    default: return tq_test_rand(state);
    }
}

/* Room a mutation may add beyond the input's length (tq_test_mutate's out needs len + this). */
#define TQ_TEST_MUTATE_GROW 8u

/* Writes a random mutation of in[0 .. len) into out (capacity len + TQ_TEST_MUTATE_GROW): one
 * bit flipped, one byte replaced, a truncation, or 1-8 random bytes inserted; returns the
 * mutation's length. For decoders that must decline or agree with a reference on bad input. */
static inline size_t tq_test_mutate(uint64_t *state, const uint8_t *in, size_t len, uint8_t *out) {
    memcpy(out, in, len);
    switch (tq_test_rand_below(state, 4)) {
    case 0:
        if (len > 0)
            out[tq_test_rand_below(state, len)] ^= (uint8_t)(1u << tq_test_rand_below(state, 8));
        return len;
    case 1:
        if (len > 0) out[tq_test_rand_below(state, len)] = (uint8_t)tq_test_rand(state);
        return len;
    case 2: return (size_t)tq_test_rand_below(state, len + 1);
    default: {
        size_t at = (size_t)tq_test_rand_below(state, len + 1);
        size_t n = 1 + (size_t)tq_test_rand_below(state, TQ_TEST_MUTATE_GROW);
        memmove(out + at + n, out + at, len - at);
        for (size_t i = 0; i < n; i++)
            out[at + i] = (uint8_t)tq_test_rand(state);
        return len + n;
    }
    }
}

/* protobuf-c's string fields are char *; tests fill them from literals. */
static inline char *tq_test_mut(const char *s) {
    union {
        const char *c;
        char *m;
    } u = {.c = s};
    return u.m;
}

#endif
