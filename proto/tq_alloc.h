/* proto/tq_alloc.h: the one door to the heap, and a bump arena.
 *
 * All heap use goes through tq_alloc/tq_calloc/tq_realloc/tq_free. The wrappers count live
 * bytes (for the memory-per-ticket benchmarks) and tests can make the Nth allocation fail
 * (tq_alloc_fail_at). Out of memory is not an expected failure for the server: callers that
 * cannot cope use tq_xalloc*, which abort with a message.
 *
 * struct tq_arena is a bump allocator for per-turn / per-request scratch: allocation is a
 * pointer increment, tq_arena_reset() frees everything at once. Blocks are kept across resets,
 * so a warmed-up arena never calls malloc on the hot path.
 */
#ifndef TQ_ALLOC_H
#define TQ_ALLOC_H

#include <stddef.h>
#include <stdint.h>

/* The transparent huge page size (x86-64): the log's batch and scan buffers and the state's big
 * regions are aligned to it and advised with MADV_HUGEPAGE (docs/operations.md, "Memory and
 * transparent huge pages"). */
#define TQ_HUGE_PAGE_BYTES ((size_t)2 << 20)

void *tq_alloc(size_t size);
void *tq_calloc(size_t count, size_t size);
void *tq_realloc(void *ptr, size_t size_old, size_t size_new);
void tq_free(void *ptr, size_t size);
char *tq_strdup(const char *s);

/* Abort on failure ("out of memory allocating N bytes"). */
void *tq_xalloc(size_t size);
void *tq_xcalloc(size_t count, size_t size);
void *tq_xrealloc(void *ptr, size_t size_old, size_t size_new);

/* Bytes currently allocated through these wrappers (size as passed by callers). */
uint64_t tq_alloc_bytes_live(void);
/* Test seam: the nth allocation from now (1 = the next) returns NULL; 0 disables. */
void tq_alloc_fail_at(uint64_t nth);

struct tq_arena_block;
struct tq_arena {
    struct tq_arena_block *head;   /* block being filled */
    struct tq_arena_block *blocks; /* all blocks, for free */
    size_t block_bytes;            /* default block size */
};

void tq_arena_init(struct tq_arena *arena, size_t block_bytes);
void *tq_arena_alloc(struct tq_arena *arena, size_t size); /* 16-byte aligned; aborts on OOM */
void *tq_arena_memdup(struct tq_arena *arena, const void *src, size_t size);
void tq_arena_reset(struct tq_arena *arena);
void tq_arena_destroy(struct tq_arena *arena);

#endif
