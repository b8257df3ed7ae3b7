/* tests/common/test_common.c: the shared vocabulary (errors, allocation accounting, arena).
 *
 * Goal: the pieces every other target leans on behave as their headers promise. Method: direct
 * calls. Invariants checked: live-byte accounting returns to its start after frees, the Nth
 * allocation fails exactly once when asked, arena memory is aligned, reused after reset without
 * new blocks, and large requests get their own block; error names and messages are stable.
 */
#include "tq_alloc.h"
#include "tq_err.h"
#include "tq_test.h"

#include <stdint.h>
#include <string.h>

static void test_error(void) {
    struct tq_error err;
    tq_error_clear(&err);
    TQ_CHECK_EQ(err.code, TQ_OK);
    TQ_CHECK_EQ(err.msg[0], '\0');
    enum tq_err code = tq_error_set(&err, TQ_ERR_NOT_FOUND, "ticket %d", 42);
    TQ_CHECK_EQ(code, TQ_ERR_NOT_FOUND);
    TQ_CHECK_EQ(err.code, TQ_ERR_NOT_FOUND);
    TQ_CHECK_STR_EQ(err.msg, "ticket 42");
    TQ_CHECK_STR_EQ(tq_err_name(TQ_ERR_RESOURCE_EXHAUSTED), "resource_exhausted");
    TQ_CHECK_STR_EQ(tq_err_name((enum tq_err)999), "unknown");
    /* NULL error pointers are allowed and still return the code. */
    TQ_CHECK_EQ(tq_error_set(NULL, TQ_ERR_IO, "x"), TQ_ERR_IO);
    /* Long messages are truncated, never overflow. */
    char big[2000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    tq_error_set(&err, TQ_ERR_INVALID_ARGUMENT, "%s", big);
    TQ_CHECK_EQ(strlen(err.msg), TQ_ERROR_MSG_BYTES_MAX - 1);
}

static void test_alloc_accounting(void) {
    uint64_t before = tq_alloc_bytes_live();
    void *a = tq_alloc(100);
    void *b = tq_calloc(10, 30);
    TQ_CHECK(a != NULL && b != NULL);
    TQ_CHECK_UEQ(tq_alloc_bytes_live(), before + 400);
    a = tq_realloc(a, 100, 1000);
    TQ_CHECK(a != NULL);
    TQ_CHECK_UEQ(tq_alloc_bytes_live(), before + 1300);
    tq_free(a, 1000);
    tq_free(b, 300);
    TQ_CHECK_UEQ(tq_alloc_bytes_live(), before);
    TQ_CHECK(tq_calloc(SIZE_MAX / 2, 4) == NULL); /* overflow is refused, not wrapped */

    tq_alloc_fail_at(3);
    void *p1 = tq_alloc(8), *p2 = tq_alloc(8), *p3 = tq_alloc(8), *p4 = tq_alloc(8);
    TQ_CHECK(p1 != NULL && p2 != NULL && p4 != NULL);
    TQ_CHECK(p3 == NULL);
    tq_free(p1, 8);
    tq_free(p2, 8);
    tq_free(p4, 8);
    TQ_CHECK_UEQ(tq_alloc_bytes_live(), before);
}

static void test_arena(void) {
    struct tq_arena arena;
    tq_arena_init(&arena, 1024);
    uint64_t before = tq_alloc_bytes_live();
    unsigned char *p = tq_arena_alloc(&arena, 10);
    unsigned char *q = tq_arena_alloc(&arena, 3);
    TQ_CHECK_EQ((uintptr_t)p % 16, 0);
    TQ_CHECK_EQ((uintptr_t)q % 16, 0);
    TQ_CHECK(q >= p + 10);
    memset(p, 1, 10);
    memset(q, 2, 3);
    unsigned char *big = tq_arena_alloc(&arena, 5000); /* larger than a block */
    memset(big, 3, 5000);
    uint64_t grown = tq_alloc_bytes_live();
    TQ_CHECK_GT(grown, before);
    for (int round = 0; round < 50; round++) {
        tq_arena_reset(&arena);
        for (int i = 0; i < 60; i++) {
            unsigned char *r = tq_arena_alloc(&arena, 16);
            memset(r, i, 16);
        }
        unsigned char *b2 = tq_arena_alloc(&arena, 5000);
        memset(b2, 4, 5000);
    }
    /* Warmed up: resets reuse the blocks, nothing new is allocated. */
    TQ_CHECK_UEQ(tq_alloc_bytes_live(), grown);
    const char text[] = "hello";
    char *dup = tq_arena_memdup(&arena, text, sizeof(text));
    TQ_CHECK_STR_EQ(dup, "hello");
    tq_arena_destroy(&arena);
    TQ_CHECK_UEQ(tq_alloc_bytes_live(), before);
}

int main(void) {
    test_error();
    test_alloc_accounting();
    test_arena();
    printf("test_common: ok\n");
    return 0;
}
