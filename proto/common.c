/* proto/common.c: the shared vocabulary's implementation (errors, assertions, allocation).
 *
 * Kept tiny and dependency-free: every target links it (library tq_common). The allocation
 * counter is one relaxed atomic: the server is one thread, but libticketq links this file too
 * and its users may run one client per thread. A free always follows its own allocation, so
 * the counter can never drop below the size being freed, whatever the interleaving.
 */
#include "tq_alloc.h"
#include "tq_assert.h"
#include "tq_err.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *tq_err_name(enum tq_err code) {
    switch (code) {
    case TQ_OK: return "ok";
    case TQ_ERR_INVALID_ARGUMENT: return "invalid_argument";
    case TQ_ERR_NOT_FOUND: return "not_found";
    case TQ_ERR_FAILED_PRECONDITION: return "failed_precondition";
    case TQ_ERR_UNAUTHENTICATED: return "unauthenticated";
    case TQ_ERR_PERMISSION_DENIED: return "permission_denied";
    case TQ_ERR_RESOURCE_EXHAUSTED: return "resource_exhausted";
    case TQ_ERR_UNAVAILABLE: return "unavailable";
    case TQ_ERR_ALREADY_EXISTS: return "already_exists";
    case TQ_ERR_CORRUPT: return "corrupt";
    case TQ_ERR_IO: return "io";
    case TQ_ERR_NO_SPACE: return "no_space";
    case TQ_ERR_INTERNAL: return "internal";
    }
    return "unknown";
}

enum tq_err tq_error_setv(struct tq_error *error, enum tq_err code, const char *fmt, va_list ap) {
    if (error != NULL) {
        error->code = code;
        vsnprintf(error->msg, sizeof(error->msg), fmt, ap);
    }
    return code;
}

enum tq_err tq_error_set(struct tq_error *error, enum tq_err code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    tq_error_setv(error, code, fmt, ap);
    va_end(ap);
    return code;
}

void tq_error_clear(struct tq_error *error) {
    if (error != NULL) {
        error->code = TQ_OK;
        error->msg[0] = '\0';
    }
}

void tq_assert_fail(const char *expr, const char *file, int line, const char *func) {
    fprintf(stderr, "ticketq: assertion failed: %s (%s:%d, %s)\n", expr, file, line, func);
    fflush(stderr);
    abort();
}

void tq_fatal(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("ticketq: fatal: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    exit(EXIT_FAILURE);
}

/* ---- allocation ------------------------------------------------------------------------- */

static _Atomic uint64_t alloc_bytes_live;
static _Atomic uint64_t alloc_fail_countdown; /* test seam; 0 = off */

static void live_add(uint64_t n) {
    atomic_fetch_add_explicit(&alloc_bytes_live, n, memory_order_relaxed);
}

static void live_sub(uint64_t n) {
    uint64_t before = atomic_fetch_sub_explicit(&alloc_bytes_live, n, memory_order_relaxed);
    TQ_ASSERT(before >= n);
}

static int alloc_should_fail(void) {
    uint64_t left = atomic_load_explicit(&alloc_fail_countdown, memory_order_relaxed);
    while (left != 0) {
        if (atomic_compare_exchange_weak_explicit(&alloc_fail_countdown, &left, left - 1,
                                                  memory_order_relaxed, memory_order_relaxed)) {
            return left == 1;
        }
    }
    return 0;
}

void tq_alloc_fail_at(uint64_t nth) {
    atomic_store_explicit(&alloc_fail_countdown, nth, memory_order_relaxed);
}

uint64_t tq_alloc_bytes_live(void) {
    return atomic_load_explicit(&alloc_bytes_live, memory_order_relaxed);
}

void *tq_alloc(size_t size) {
    if (alloc_should_fail()) return NULL;
    void *p = malloc(size == 0 ? 1 : size);
    if (p != NULL) live_add(size);
    return p;
}

void *tq_calloc(size_t count, size_t size) {
    if (size != 0 && count > SIZE_MAX / size) return NULL;
    if (alloc_should_fail()) return NULL;
    void *p = calloc(count == 0 ? 1 : count, size == 0 ? 1 : size);
    if (p != NULL) live_add(count * size);
    return p;
}

void *tq_realloc(void *ptr, size_t size_old, size_t size_new) {
    if (alloc_should_fail()) return NULL;
    void *p = realloc(ptr, size_new == 0 ? 1 : size_new);
    if (p != NULL) {
        TQ_ASSERT(ptr != NULL || size_old == 0);
        live_add(size_new);
        live_sub(size_old);
    }
    return p;
}

void tq_free(void *ptr, size_t size) {
    if (ptr == NULL) return;
    live_sub(size);
    free(ptr);
}

char *tq_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = tq_alloc(n);
    if (p != NULL) memcpy(p, s, n);
    return p;
}

static void *oom(size_t size) {
    tq_fatal("out of memory allocating %zu bytes", size);
}

void *tq_xalloc(size_t size) {
    void *p = tq_alloc(size);
    return p != NULL ? p : oom(size);
}

void *tq_xcalloc(size_t count, size_t size) {
    void *p = tq_calloc(count, size);
    return p != NULL ? p : oom(count * size);
}

void *tq_xrealloc(void *ptr, size_t size_old, size_t size_new) {
    void *p = tq_realloc(ptr, size_old, size_new);
    return p != NULL ? p : oom(size_new);
}

/* ---- arena ------------------------------------------------------------------------------ */

struct tq_arena_block {
    struct tq_arena_block *next;
    size_t size; /* usable bytes in data */
    size_t used;
    _Alignas(16) unsigned char data[];
};

#if defined(__SANITIZE_ADDRESS__)
#define TQ_HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TQ_HAVE_ASAN 1
#endif
#endif
#ifdef TQ_HAVE_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

void tq_arena_init(struct tq_arena *arena, size_t block_bytes) {
    arena->head = NULL;
    arena->blocks = NULL;
    arena->block_bytes = block_bytes != 0 ? block_bytes : 64 * 1024;
}

static struct tq_arena_block *arena_block_new(size_t size) {
    struct tq_arena_block *b = tq_xalloc(sizeof(*b) + size);
    b->next = NULL;
    b->size = size;
    b->used = 0;
    POISON(b->data, size);
    return b;
}

void *tq_arena_alloc(struct tq_arena *arena, size_t size) {
    size_t need = (size + 15u) & ~(size_t)15u;
    if (need == 0) need = 16;
    struct tq_arena_block *b = arena->head;
    /* Walk forward through blocks kept from before the last reset. */
    while (b != NULL && b->size - b->used < need) {
        if (b->next == NULL) break;
        b = b->next;
        b->used = 0;
        arena->head = b;
    }
    if (b == NULL || b->size - b->used < need) {
        size_t block = need > arena->block_bytes ? need : arena->block_bytes;
        struct tq_arena_block *nb = arena_block_new(block);
        if (b == NULL) {
            arena->blocks = nb;
        } else {
            nb->next = b->next;
            b->next = nb;
        }
        arena->head = nb;
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += need;
    TQ_ASSERT(b->used <= b->size);
    UNPOISON(p, size);
    return p;
}

void *tq_arena_memdup(struct tq_arena *arena, const void *src, size_t size) {
    void *p = tq_arena_alloc(arena, size);
    if (size != 0) memcpy(p, src, size);
    return p;
}

void tq_arena_reset(struct tq_arena *arena) {
    for (struct tq_arena_block *b = arena->blocks; b != NULL; b = b->next) {
        b->used = 0;
        POISON(b->data, b->size);
    }
    arena->head = arena->blocks;
}

void tq_arena_destroy(struct tq_arena *arena) {
    struct tq_arena_block *b = arena->blocks;
    while (b != NULL) {
        struct tq_arena_block *next = b->next;
        UNPOISON(b->data, b->size);
        tq_free(b, sizeof(*b) + b->size);
        b = next;
    }
    arena->head = NULL;
    arena->blocks = NULL;
}
