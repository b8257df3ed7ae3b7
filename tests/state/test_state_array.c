/* tests/state/test_state_array.c: arrays that grow in place (tq_st_array_grow, store.c).
 *
 * Goal: the deadline heap's array (and any array like it) keeps every entry it had through
 * each of its three kinds of growth: out of a malloc'd array into its first reservation, in
 * place (more pages made writable, the same address), and into a new reservation when it
 * outgrows the old one (the address changes, one copy); it is writable exactly as far as the
 * contract says (through the page the last entry falls into, one page more with a prefault
 * hook, which is handed exactly that page, all zero); tq_state_bytes_mapped() counts the
 * writable bytes and is back where it started once the array is freed.
 * Method: white box (state_internal.h). A state with and one without a prefault hook; an array
 * of 8-byte words filled with w(i) = i * 2654435761 + 1 grows word by word (calling
 * tq_st_array_grow whenever the next word would not fit) to 40 MiB, which crosses the first
 * reservation (4 x 4 MiB) and the second; every word is re-checked after each growth that
 * moved the array, and a sample after the others.
 */
#include "state_internal.h"
#include "tq_alloc.h"
#include "tq_test.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define HUGE ((size_t)2 << 20)

struct hook_log {
    uint32_t requests;
    uint8_t *last;
};

static void hook(void *ctx, void *addr, size_t len) {
    struct hook_log *log = ctx;
    TQ_CHECK_UEQ(len, HUGE);
    TQ_CHECK_UEQ((uintptr_t)addr % HUGE, 0);
    const uint8_t *p = addr;
    for (size_t i = 0; i < len; i += 4096)
        TQ_CHECK_EQ(p[i], 0); /* nothing there yet */
    log->requests++;
    log->last = addr;
}

static uint64_t word(uint64_t i) {
    return i * 2654435761u + 1;
}

static void check_words(const uint64_t *a, uint64_t n, uint64_t step) {
    for (uint64_t i = 0; i < n; i += step)
        TQ_CHECK_UEQ(a[i], word(i));
    if (n > 0) TQ_CHECK_UEQ(a[n - 1], word(n - 1));
}

static void run(bool with_hook) {
    struct hook_log log = {0};
    struct tq_state_options o = {.prefault = hook, .prefault_ctx = &log};
    struct tq_state *s = tq_state_new(with_hook ? &o : NULL);
    uint64_t mapped0 = tq_state_bytes_mapped();
    size_t ahead = with_hook ? HUGE : 0;
    /* start as dh_grow does: a malloc'd array below TQ_ST_TABLE_MAP_BYTES_MIN */
    size_t bytes = 1024 * 1024, reserved = 0;
    uint64_t *a = tq_st_table_alloc(bytes);
    uint64_t n = 0, moves = 0, in_place = 0;
    const uint64_t total = (40u << 20) / sizeof(uint64_t);
    while (n < total) {
        size_t used = (size_t)(n + 1) * sizeof(uint64_t);
        if (used > bytes - (reserved != 0 ? ahead : 0)) {
            uint64_t *before = a;
            size_t reserved_before = reserved;
            uint32_t requests = log.requests;
            a = tq_st_array_grow(s, a, used, &bytes, &reserved);
            /* writable through the page of the last word in use, and the page ahead */
            TQ_CHECK_UEQ(bytes, ((used + HUGE - 1) & ~(HUGE - 1)) + ahead);
            TQ_CHECK(reserved >= bytes);
            TQ_CHECK_UEQ((uintptr_t)a % HUGE, 0);
            TQ_CHECK_UEQ(tq_state_bytes_mapped(), mapped0 + bytes);
            if (with_hook) {
                TQ_CHECK_UEQ(log.requests, requests + 1);
                TQ_CHECK(log.last == (uint8_t *)a + bytes - HUGE);
            } else {
                TQ_CHECK_UEQ(log.requests, 0);
            }
            if (a != before) {
                moves++;
                TQ_CHECK(reserved > reserved_before);
                check_words(a, n, 1);
            } else {
                in_place++;
                TQ_CHECK_UEQ(reserved, reserved_before);
                check_words(a, n, 4099);
            }
            /* the whole writable length can be written (the page ahead included) */
            ((uint8_t *)a)[bytes - 1] = 0;
        }
        a[n] = word(n);
        n++;
    }
    check_words(a, n, 1);
    /* into the first reservation, into the second (16 MiB outgrown), and in place between */
    TQ_CHECK(moves >= 2);
    TQ_CHECK(in_place >= 8);
    tq_st_array_free(a, bytes, reserved);
    TQ_CHECK_UEQ(tq_state_bytes_mapped(), mapped0);
    tq_state_free(s);
}

int main(void) {
    run(false);
    run(true);
    printf("test_state_array: ok\n");
    return 0;
}
