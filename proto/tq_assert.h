/* proto/tq_assert.h: assertions and fail-stop.
 *
 * TQ_ASSERT(x) is on in every build (cheap invariants on the write and acknowledge path).
 * TQ_DEBUG_ASSERT(x) is for O(n) cross-checks; it exists only when TQ_DEBUG is defined (Debug
 * and test builds). Never assert on bytes from the network or the disk: validate them instead.
 * tq_fatal() is for broken durability promises: one line to stderr, then exit(EXIT_FAILURE).
 */
#ifndef TQ_ASSERT_H
#define TQ_ASSERT_H

#include "tq_err.h"

TQ_NORETURN void tq_assert_fail(const char *expr, const char *file, int line, const char *func);
TQ_NORETURN void tq_fatal(const char *fmt, ...) TQ_PRINTF(1, 2);

#define TQ_ASSERT(x)                                                                               \
    do {                                                                                           \
        if (__builtin_expect(!(x), 0)) {                                                           \
            tq_assert_fail(#x, __FILE__, __LINE__, __func__);                                      \
        }                                                                                          \
    } while (0)

#ifdef TQ_DEBUG
#define TQ_DEBUG_ASSERT(x) TQ_ASSERT(x)
#else
#define TQ_DEBUG_ASSERT(x)                                                                         \
    do {                                                                                           \
        (void)sizeof(x);                                                                           \
    } while (0)
#endif

#define TQ_UNREACHABLE() tq_assert_fail("unreachable", __FILE__, __LINE__, __func__)

#define TQ_ARRAY_COUNT(a) (sizeof(a) / sizeof((a)[0]))

#endif
