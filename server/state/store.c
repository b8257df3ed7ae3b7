/* server/state/store.c: the containers tq_state is built from: chunked slabs, the string store,
 * the id hash tables, the interning table and the lookups that enforce tenant isolation.
 *
 * Invariants: slab chunks never move once allocated (so entity pointers stay valid across
 * allocations within one apply); ids are handed out densely from 1; hash tables delete only by
 * backward shift (merges re-point entities instead; an erased identity is the one removal), so
 * linear probing needs no tombstones; a slot value 0 is empty because no entity has id 0. Every
 * table keeps its load factor <= 3/4 (an incremental table counts the ids still only in the
 * table it is growing from: struct tq_idtab).
 *
 * With a prefault hook (tq_state_options.prefault) the growing slabs ask for their next huge
 * page, and the tables and arrays for their successor, ahead of need (prefault_request): the
 * hook populates them off the applying thread. Nothing else changes: the pages asked for hold
 * no data (asserted for slabs; spares are untouched mappings), so results never depend on it.
 *
 * Why: the memory targets (<= 32 bytes per message, <= 256 per ticket) rule out per-entity
 * malloc and doubling arrays of fat structs; chunked slabs waste at most one chunk per kind.
 */
#include "state_internal.h"
#include "tq_alloc.h"

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25 /* Linux 6.1 (asm-generic/mman-common.h); EINVAL before: harmless */
#endif

/* ---- huge-page regions -------------------------------------------------------------------- */

/* Why: applying a large log reads a few random lines per record in slabs and tables of tens of
 * megabytes (the idempotency table, the identity table, the ticket, message and customer slabs,
 * the deadline heap). With 4 KiB pages nearly every such line is a TLB miss too (a second-level
 * TLB of ~1.5k entries covers 6 MiB), and in a VM each miss walks two sets of page tables.
 * 2 MiB pages cover the lot. malloc cannot give them: it hands out memory that earlier frees
 * left faulted in small pages, or mappings not aligned to 2 MiB. So the big regions come from
 * mmap, 2 MiB aligned, with MADV_HUGEPAGE given before the first touch (whether the kernel
 * backs them with huge pages is its policy: "madvise" or "always" in
 * /sys/kernel/mm/transparent_hugepage/enabled; with "never" they are ordinary pages).
 *
 * Accounting: these bytes are not in tq_alloc_bytes_live() (tq_alloc is malloc's door); they
 * are counted here (what the state asked for, as tq_alloc counts) and reported by
 * tq_state_bytes_mapped(). */

static _Atomic uint64_t mapped_bytes_live;

static void mapped_add(uint64_t n) {
    atomic_fetch_add_explicit(&mapped_bytes_live, n, memory_order_relaxed);
}

static void mapped_sub(uint64_t n) {
    uint64_t before = atomic_fetch_sub_explicit(&mapped_bytes_live, n, memory_order_relaxed);
    TQ_ASSERT(before >= n);
}

uint64_t tq_state_bytes_mapped(void) {
    return atomic_load_explicit(&mapped_bytes_live, memory_order_relaxed);
}

static size_t huge_round(size_t bytes) {
    return (bytes + TQ_HUGE_PAGE_BYTES - 1) & ~(TQ_HUGE_PAGE_BYTES - 1);
}

/* A zeroed, 2 MiB-aligned region of huge_round(bytes) bytes (not counted; callers count), with
 * MADV_HUGEPAGE on its first `advise` bytes (a multiple of 2 MiB). */
static void *region_map_advised(size_t bytes, size_t advise) {
    size_t len = huge_round(bytes);
    /* over-map by one huge page and trim both ends to the alignment */
    uint8_t *raw = mmap(NULL, len + TQ_HUGE_PAGE_BYTES, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) {
        fprintf(stderr, "out of memory mapping %zu bytes\n", len);
        abort();
    }
    uint8_t *p = (uint8_t *)(((uintptr_t)raw + TQ_HUGE_PAGE_BYTES - 1) & ~(TQ_HUGE_PAGE_BYTES - 1));
    if (p > raw) munmap(raw, (size_t)(p - raw));
    size_t tail = (size_t)(raw + len + TQ_HUGE_PAGE_BYTES - (p + len));
    if (tail > 0) munmap(p + len, tail);
    TQ_ASSERT(advise <= len && advise % TQ_HUGE_PAGE_BYTES == 0);
    /* advice only: EINVAL without THP is harmless */
    if (advise > 0) (void)madvise(p, advise, MADV_HUGEPAGE);
    return p;
}

/* A table (touched all over) or a slab group (a whole number of huge pages): every whole 2 MiB
 * page gets the advice, a partial last one does not (it would be resident whole, up to 2 MiB
 * more than the table's bytes; a hash table whose capacity is not a power of two has one). */
static void *region_map(size_t bytes) {
    return region_map_advised(bytes, bytes & ~(TQ_HUGE_PAGE_BYTES - 1));
}

static void region_unmap(void *p, size_t bytes) {
    TQ_ASSERT(((uintptr_t)p & (TQ_HUGE_PAGE_BYTES - 1)) == 0);
    munmap(p, huge_round(bytes));
}

void *tq_st_table_alloc(size_t bytes) {
    if (bytes < TQ_ST_TABLE_MAP_BYTES_MIN) return tq_xcalloc(1, bytes);
    mapped_add(bytes);
    return region_map(bytes);
}

void tq_st_table_free(void *p, size_t bytes) {
    if (p == NULL) return;
    if (bytes < TQ_ST_TABLE_MAP_BYTES_MIN) {
        tq_free(p, bytes);
        return;
    }
    region_unmap(p, bytes);
    mapped_sub(bytes);
}

void tq_st_table_release(const struct tq_state *s, void *p, size_t bytes) {
    if (p == NULL) return;
    if (s->pf.release == NULL || bytes < TQ_ST_TABLE_MAP_BYTES_MIN) {
        tq_st_table_free(p, bytes);
        return;
    }
    TQ_ASSERT(((uintptr_t)p & (TQ_HUGE_PAGE_BYTES - 1)) == 0);
    mapped_sub(bytes); /* the state's no longer, whenever the hook unmaps it */
    s->pf.release(s->pf.release_ctx, p, huge_round(bytes));
}

/* For the arrays that fill from the front (the SLA index's nodes): only the
 * whole 2 MiB pages of what is copied get huge pages. A huge page is resident whole from its
 * first touch, so advising the new capacity too would make the page the array is growing into
 * resident up to its end (up to 2 MiB per array: 4 B per ticket in tq-state-bench's memory
 * run); the growth is touched in small pages, and the next regrowth covers it. */
void *tq_st_table_realloc(void *p, size_t bytes_old, size_t bytes_new) {
    if (bytes_old < TQ_ST_TABLE_MAP_BYTES_MIN && bytes_new < TQ_ST_TABLE_MAP_BYTES_MIN) {
        return tq_xrealloc(p, bytes_old, bytes_new);
    }
    size_t kept = bytes_old < bytes_new ? bytes_old : bytes_new;
    void *n;
    if (bytes_new < TQ_ST_TABLE_MAP_BYTES_MIN) {
        n = tq_st_table_alloc(bytes_new);
    } else {
        mapped_add(bytes_new);
        n = region_map_advised(bytes_new, kept & ~(TQ_HUGE_PAGE_BYTES - 1));
    }
    if (p != NULL) memcpy(n, p, kept);
    tq_st_table_free(p, bytes_old);
    return n;
}

/* Asks the hook to populate [p, p + len) page by page from another thread. */
static void prefault_request(const struct tq_prefault *pf, void *p, size_t len) {
    TQ_ASSERT(((uintptr_t)p & (TQ_HUGE_PAGE_BYTES - 1)) == 0 && len % TQ_HUGE_PAGE_BYTES == 0);
    pf->fn(pf->ctx, p, len);
}

/* Why: in a VM the kernel takes milliseconds to zero a fresh 2 MiB page, and a table that
 * grows touches every page of its new table at once (tens of milliseconds inside one apply).
 * Only whole huge pages are worth populating: a table below TQ_ST_TABLE_MAP_BYTES_MIN is
 * malloc'd. */
void tq_st_table_prepare(const struct tq_state *s, struct tq_spare_table *spare, size_t bytes) {
    if (s->pf.fn == NULL || bytes < TQ_ST_TABLE_MAP_BYTES_MIN || spare->bytes == bytes) return;
    tq_st_spare_free(spare);
    spare->p = region_map(bytes);
    spare->bytes = bytes;
    /* the whole 2 MiB pages only: a partial last page is not advised (region_map) */
    size_t whole = bytes & ~(TQ_HUGE_PAGE_BYTES - 1);
    if (whole > 0) prefault_request(&s->pf, spare->p, whole);
}

void tq_st_table_prepare_grow(const struct tq_state *s, struct tq_spare_table *spare,
                              size_t bytes_old, size_t bytes_new) {
    if (s->pf.fn == NULL || bytes_new < TQ_ST_TABLE_MAP_BYTES_MIN || spare->bytes == bytes_new) {
        return;
    }
    tq_st_spare_free(spare);
    size_t whole = bytes_old & ~(TQ_HUGE_PAGE_BYTES - 1);
    spare->p = region_map_advised(bytes_new, whole);
    spare->bytes = bytes_new;
    if (whole > 0) prefault_request(&s->pf, spare->p, whole);
}

void *tq_st_table_realloc_take(struct tq_spare_table *spare, void *p, size_t bytes_old,
                               size_t bytes_new) {
    if (spare->p == NULL || spare->bytes != bytes_new || bytes_old > bytes_new) {
        tq_st_spare_free(spare);
        return tq_st_table_realloc(p, bytes_old, bytes_new);
    }
    void *n = tq_st_table_take(spare, bytes_new);
    if (p != NULL) memcpy(n, p, bytes_old);
    tq_st_table_free(p, bytes_old);
    return n;
}

void *tq_st_table_take(struct tq_spare_table *spare, size_t bytes) {
    if (spare->p == NULL || spare->bytes != bytes) {
        tq_st_spare_free(spare);
        return tq_st_table_alloc(bytes);
    }
    void *p = spare->p;
    TQ_DEBUG_ASSERT(((const uint8_t *)p)[0] == 0 && ((const uint8_t *)p)[bytes - 1] == 0);
    spare->p = NULL;
    spare->bytes = 0;
    mapped_add(bytes);
    return p;
}

void tq_st_spare_free(struct tq_spare_table *spare) {
    if (spare->p != NULL) region_unmap(spare->p, spare->bytes);
    spare->p = NULL;
    spare->bytes = 0;
}

/* ---- arrays that grow in place ------------------------------------------------------------ */

/* Why: an array that grows by copying holds the old array and the new one at once, and with a
 * prefault hook it held the new one, populated, from 7/8 full on (tq_st_table_prepare_grow):
 * the deadline heap's 12 bytes per ticket were 12 + 18 = 30 resident bytes per ticket just
 * before each growth, and 34 at 2 M tickets (bench/restart-10m.sh; docs/performance-state.md,
 * §11). A big array is instead a reservation of address space (PROT_NONE: no memory, no commit
 * charge) whose front is made writable a huge page at a time; with a prefault hook one page
 * ahead of the last entry, populated by the hook while the array fills the one before. It moves
 * into a reservation four times as large only when it outgrows its reservation: by moving its
 * page tables (mremap) when its writable front is one mapping, else by one copy.
 * Resident: the entries, plus the rest of the page being filled and (with a hook) the page ahead.
 */

/* A PROT_NONE reservation of `bytes` (a multiple of 2 MiB), 2 MiB aligned: address space
 * only (tq_st_array_grow makes its front writable and advises it for huge pages). */
static uint8_t *reserve_map(size_t bytes) {
    TQ_ASSERT(bytes % TQ_HUGE_PAGE_BYTES == 0);
    uint8_t *raw = mmap(NULL, bytes + TQ_HUGE_PAGE_BYTES, PROT_NONE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) {
        fprintf(stderr, "out of address space reserving %zu bytes\n", bytes);
        abort();
    }
    uint8_t *p = (uint8_t *)(((uintptr_t)raw + TQ_HUGE_PAGE_BYTES - 1) & ~(TQ_HUGE_PAGE_BYTES - 1));
    if (p > raw) munmap(raw, (size_t)(p - raw));
    size_t tail = (size_t)(raw + bytes + TQ_HUGE_PAGE_BYTES - (p + bytes));
    if (tail > 0) munmap(p + bytes, tail);
    return p;
}

static void make_writable(uint8_t *p, size_t bytes) {
    if (bytes > 0 && mprotect(p, bytes, PROT_READ | PROT_WRITE) != 0) {
        fprintf(stderr,
                "ticketq state: out of memory: making %zu more bytes of an array "
                "writable (mprotect) failed: %s\n",
                bytes, strerror(errno));
        abort();
    }
}

void *tq_st_array_grow(const struct tq_state *s, void *p, size_t bytes_used, size_t *bytes,
                       size_t *reserved) {
    TQ_ASSERT(bytes_used > 0);
    TQ_ASSERT(*reserved == 0 || (*bytes % TQ_HUGE_PAGE_BYTES == 0 && *bytes <= *reserved));
    /* writable through the page the last entry in use falls into, and with a prefault hook
     * one whole page ahead (for the hook to populate) */
    size_t ahead = s->pf.fn != NULL ? TQ_HUGE_PAGE_BYTES : 0;
    size_t want = huge_round(bytes_used) + ahead;
    if (want <= *bytes) return p; /* already a page ahead */
    /* Huge pages: with a hook, every writable page (the page ahead is populated whole by the
     * hook, the others were once the page ahead); without, the whole pages below the one being
     * filled, which is touched in small pages (a huge page is resident whole from its first
     * touch: up to 2 MiB more than the entries, as region_map says) and collapsed into a huge
     * page once full, at the next growth. Advice only: EINVAL without THP is harmless. */
    size_t whole = (bytes_used - 1) & ~(TQ_HUGE_PAGE_BYTES - 1);
    size_t advised = ahead > 0 ? want : whole;
    uint8_t *q = p;
    if (*reserved == 0 || want > *reserved) { /* into a new reservation */
        size_t res = huge_round(want * 4);
        q = reserve_map(res);
        TQ_ASSERT(*bytes <= want);
        /* From a reservation: move its writable front's page tables (no copy, no fault: a copy
         * into fresh pages would take one huge-page fault per 2 MiB on the loop, milliseconds
         * each in a VM). mremap refuses a range of several mappings (with no hook, the front
         * is advised in part: two mappings); then, and from malloc or a plain region, copy. */
        bool moved = *reserved > 0 && *bytes > 0 &&
                     mremap(p, *bytes, *bytes, MREMAP_MAYMOVE | MREMAP_FIXED, q) != MAP_FAILED;
        if (moved) {
            make_writable(q + *bytes, want - *bytes);
            if (advised > 0) (void)madvise(q, advised, MADV_HUGEPAGE);
            munmap((uint8_t *)p + *bytes, *reserved - *bytes); /* the PROT_NONE rest */
            mapped_sub(*bytes);
        } else {
            make_writable(q, want);
            if (advised > 0) (void)madvise(q, advised, MADV_HUGEPAGE); /* before the copy */
            if (*bytes > 0) memcpy(q, p, *bytes);
            if (*reserved == 0) {
                tq_st_table_free(p, *bytes); /* malloc'd or a plain region */
            } else {
                munmap(p, *reserved);
                mapped_sub(*bytes);
            }
        }
        mapped_add(want);
        *reserved = res;
    } else {
        make_writable(q + *bytes, want - *bytes);
        mapped_add(want - *bytes);
        if (advised > 0) (void)madvise(q, advised, MADV_HUGEPAGE);
        /* without a hook: the page just filled, in small pages; one collapse per 2 MiB of
         * entries (a millisecond or so, synchronous) where its 512 TLB entries would cost every
         * later random access (2-5% of tq-state-bench's apply without it) */
        if (ahead == 0 && whole > 0)
            (void)madvise(q + whole - TQ_HUGE_PAGE_BYTES, TQ_HUGE_PAGE_BYTES, MADV_COLLAPSE);
    }
    *bytes = want;
    if (ahead > 0) prefault_request(&s->pf, q + want - ahead, ahead);
    return q;
}

void tq_st_array_free(void *p, size_t bytes, size_t reserved) {
    if (p == NULL) return;
    if (reserved == 0) {
        tq_st_table_free(p, bytes);
        return;
    }
    TQ_ASSERT(((uintptr_t)p & (TQ_HUGE_PAGE_BYTES - 1)) == 0 && bytes <= reserved);
    munmap(p, reserved);
    mapped_sub(bytes);
}

/* ---- slabs -------------------------------------------------------------------------------- */

/* Chunks are 64-byte aligned, so an element whose size is a multiple of 64 (the 192-byte
 * ticket) occupies whole cache lines. tq_alloc gives 16-byte alignment: a chunk is allocated
 * 64 bytes larger, and the allocation's own address is kept in the 8 bytes before the
 * aligned start (there are always 16 to 64 bytes of room). */
#define CHUNK_ALIGN 64u

static size_t slab_chunk_bytes(const struct tq_slab *slab) {
    return ((size_t)1 << slab->shift) * slab->elem_size;
}

/* The chunks per huge-page group of a big slab: the least power of two whose chunks fill whole
 * 2 MiB pages (a group of a 192-byte element's 768 KiB chunks is 8 of them, 6 MiB), so no page
 * is touched past the last chunk handed out by more than one huge page. */
static uint32_t slab_group_chunks(const struct tq_slab *slab) {
    uint32_t g = 1;
    while (((size_t)g * slab_chunk_bytes(slab)) % TQ_HUGE_PAGE_BYTES != 0)
        g *= 2;
    return g;
}

/* Chunk 0 of every slab (and every chunk of a small slab) comes from tq_alloc, so a small state
 * stays small; chunks 1, 2, ... of a big slab are carved out of huge-page groups, each group
 * mapped when its first chunk is needed. A chunk is counted when handed out. */
static bool slab_grouped(const struct tq_slab *slab, uint32_t chunk) {
    return chunk >= 1 && slab->shift >= TQ_SLAB_SHIFT;
}

/* Not zeroed: tq_st_slab_new zeroes each element as it hands it out. A calloc'd chunk cost a
 * memset of the whole chunk (768 KiB for tickets) whenever malloc reused freed memory, ahead of
 * use and through the cache; the element's lines are written right after anyway. */
static uint8_t *chunk_alloc(size_t bytes) {
    uint8_t *raw = tq_xalloc(bytes + CHUNK_ALIGN);
    TQ_ASSERT(((uintptr_t)raw & 15u) == 0);
    uint8_t *chunk = (uint8_t *)(((uintptr_t)raw + CHUNK_ALIGN) & ~(uintptr_t)(CHUNK_ALIGN - 1));
    TQ_ASSERT(chunk - raw >= 16 && chunk - raw <= (ptrdiff_t)CHUNK_ALIGN);
    memcpy(chunk - sizeof(raw), &raw, sizeof(raw));
    return chunk;
}

static void chunk_free(uint8_t *chunk, size_t bytes) {
    uint8_t *raw;
    memcpy(&raw, chunk - sizeof(raw), sizeof(raw));
    TQ_ASSERT(raw < chunk && chunk - raw <= (ptrdiff_t)CHUNK_ALIGN);
    tq_free(raw, bytes + CHUNK_ALIGN);
}

/* With a prefault hook: when the element handed out is the first to reach a huge page of its
 * group, the hook is asked to populate the page after it (the first page of the next group,
 * mapped now, when it is the group's last), so the applying thread does not take the fault
 * that zeroes it: a page holds 10,000 elements or more, so the request is thousands of applies
 * ahead of need. That page holds no element yet. One page ahead per slab is resident early. */
__attribute__((noinline, cold)) static void slab_prefault_ahead(struct tq_slab *slab,
                                                                uint32_t chunk, uint8_t *elem) {
    uint8_t *page =
        (uint8_t *)(((uintptr_t)elem + slab->elem_size - 1) & ~(uintptr_t)(TQ_HUGE_PAGE_BYTES - 1));
    if (page == slab->pf_page) return;
    slab->pf_page = page;
    size_t bytes = slab_chunk_bytes(slab);
    uint32_t g = slab_group_chunks(slab);
    const uint8_t *group_end = slab->chunks[chunk - (chunk - 1) % g] + (size_t)g * bytes;
    uint8_t *next = page + TQ_HUGE_PAGE_BYTES;
    TQ_ASSERT(next <= group_end && next >= elem + slab->elem_size); /* no element there yet */
    if (next == group_end) {
        if (slab->spare_group == NULL) slab->spare_group = region_map((size_t)g * bytes);
        next = slab->spare_group;
    }
    prefault_request(slab->pf, next, TQ_HUGE_PAGE_BYTES);
}

/* Hands out the next id (zeroed element). The caller checked next_id <= TQ_ID_MAX. */
uint32_t tq_st_slab_new(struct tq_slab *slab) {
    TQ_ASSERT(slab->next_id <= TQ_ID_MAX);
    uint32_t id = slab->next_id;
    uint32_t chunk = id >> slab->shift;
    if (chunk >= slab->chunk_count) {
        TQ_ASSERT(chunk == slab->chunk_count);
        if (slab->chunk_count == slab->chunk_cap) {
            uint32_t cap = slab->chunk_cap == 0 ? 16 : slab->chunk_cap * 2;
            slab->chunks = tq_xrealloc(slab->chunks, slab->chunk_cap * sizeof(*slab->chunks),
                                       cap * sizeof(*slab->chunks));
            slab->chunk_cap = cap;
        }
        size_t bytes = slab_chunk_bytes(slab);
        if (!slab_grouped(slab, chunk)) {
            slab->chunks[chunk] = chunk_alloc(bytes);
        } else {
            uint32_t g = slab_group_chunks(slab);
            if ((chunk - 1) % g != 0) {
                slab->chunks[chunk] = slab->chunks[chunk - 1] + bytes;
            } else if (slab->spare_group != NULL) { /* mapped (and populated) ahead */
                slab->chunks[chunk] = slab->spare_group;
                slab->spare_group = NULL;
            } else {
                slab->chunks[chunk] = region_map((size_t)g * bytes);
            }
            mapped_add(bytes);
        }
        slab->chunk_count++;
        if (chunk == 0) memset(slab->chunks[0], 0, slab->elem_size); /* id 0: never handed out */
    }
    slab->next_id = id + 1;
    uint8_t *elem = tq_slab_at(slab, id);
    if (__builtin_expect(slab->pf != NULL, 0) && slab_grouped(slab, chunk)) {
        slab_prefault_ahead(slab, chunk, elem);
    }
    memset(elem, 0, slab->elem_size);
    return id;
}

void tq_st_identity_set_ext(struct tq_state *s, struct tq_identity *x, const char *ptr,
                            uint32_t len) {
    TQ_ASSERT(len >= 1 && len <= TQ_EXTERNAL_ID_BYTES_MAX);
    memset(&x->ext, 0, sizeof(x->ext));
    x->ext_len = (uint16_t)len;
    if (len <= TQ_IDENTITY_INLINE_BYTES) {
        memcpy(x->ext.bytes, ptr, len);
    } else {
        x->ext.ptr = tq_st_strdup(s, ptr, len).ptr;
    }
    TQ_ASSERT(memcmp(ident_ext(x), ptr, len) == 0);
}

void tq_st_tkidx_new(struct tq_state *s, uint32_t id) {
    uint32_t x = tq_st_slab_new(&s->tkidx);
    TQ_ASSERT(x == id); /* the index slab follows the ticket slab id for id */
}

void tq_st_slab_init(struct tq_slab *slab, uint32_t elem_size, uint32_t shift) {
    TQ_ASSERT(shift >= 1 && shift <= 20);
    memset(slab, 0, sizeof(*slab));
    slab->elem_size = elem_size;
    slab->shift = shift;
    slab->next_id = 1;
}

void tq_st_slab_free(struct tq_slab *slab) {
    size_t bytes = slab_chunk_bytes(slab);
    for (uint32_t i = 0; i < slab->chunk_count; i++) {
        if (!slab_grouped(slab, i)) {
            chunk_free(slab->chunks[i], bytes);
            continue;
        }
        uint32_t g = slab_group_chunks(slab);
        if ((i - 1) % g == 0) region_unmap(slab->chunks[i], (size_t)g * bytes);
        mapped_sub(bytes);
    }
    if (slab->spare_group != NULL) {
        region_unmap(slab->spare_group, (size_t)slab_group_chunks(slab) * bytes);
    }
    tq_free(slab->chunks, slab->chunk_cap * sizeof(*slab->chunks));
    memset(slab, 0, sizeof(*slab));
}

/* Each run of contiguous memory of the slab (a tq_alloc'd chunk, a huge-page group) with an
 * element handed out, of the part asked for. The tail is the last run: what an append-only
 * slab's next elements are written into (a whole group: a huge page is copied whole or not at
 * all). */
void tq_st_slab_regions(const struct tq_slab *slab, enum tq_st_slab_part part,
                        tq_state_region_fn *fn, void *ctx, bool hot) {
    TQ_ASSERT(fn != NULL);
    TQ_ASSERT(part == TQ_ST_SLAB_ALL || part == TQ_ST_SLAB_TAIL || part == TQ_ST_SLAB_BEFORE_TAIL);
    if (slab->chunk_count == 0) return;
    size_t bytes = slab_chunk_bytes(slab);
    uint32_t g = slab_group_chunks(slab);
    uint32_t tail = slab->chunk_count - 1;
    if (slab_grouped(slab, tail)) tail -= (tail - 1) % g; /* its group's first chunk */
    uint32_t from = part == TQ_ST_SLAB_TAIL ? tail : 0;
    uint32_t to = part == TQ_ST_SLAB_BEFORE_TAIL ? tail : slab->chunk_count;
    for (uint32_t i = from; i < to; i++) {
        if (!slab_grouped(slab, i)) {
            fn(ctx, slab->chunks[i], bytes, hot);
        } else if ((i - 1) % g == 0) {
            TQ_ASSERT(((uintptr_t)slab->chunks[i] & (TQ_HUGE_PAGE_BYTES - 1)) == 0);
            fn(ctx, slab->chunks[i], (size_t)g * bytes, hot);
        }
    }
}

/* ---- string store ------------------------------------------------------------------------- */

struct tq_strchunk {
    struct tq_strchunk *next;
    size_t cap, used;
    char data[];
};
#define STRCHUNK_BYTES (64u * 1024 - 64u)

struct tq_str tq_st_strdup(struct tq_state *s, const char *ptr, uint32_t len) {
    if (len == 0) return (struct tq_str){"", 0};
    struct tq_strchunk *c = s->strings.head;
    if (c == NULL || c->cap - c->used < len) {
        size_t cap = len > STRCHUNK_BYTES ? len : STRCHUNK_BYTES;
        struct tq_strchunk *n = tq_xalloc(sizeof(*n) + cap);
        n->cap = cap;
        n->used = 0;
        if (c != NULL && len > STRCHUNK_BYTES) {
            /* Keep filling the current chunk: put the big one behind it. */
            n->next = c->next;
            c->next = n;
        } else {
            n->next = c;
            s->strings.head = n;
        }
        c = n;
    }
    char *p = c->data + c->used;
    memcpy(p, ptr, len);
    c->used += len;
    s->strings.bytes += len;
    return (struct tq_str){p, len};
}

void tq_st_strings_free(struct tq_state *s) {
    struct tq_strchunk *c = s->strings.head;
    while (c != NULL) {
        struct tq_strchunk *n = c->next;
        tq_free(c, sizeof(*c) + c->cap);
        c = n;
    }
    s->strings.head = NULL;
}

/* ---- id tables ---------------------------------------------------------------------------- */

void tq_st_idtab_init(struct tq_idtab *t, uint64_t cap, bool tagged) {
    TQ_ASSERT((cap & (cap - 1)) == 0);
    t->slots = tq_st_table_alloc(cap * sizeof(uint32_t));
    t->mask = cap - 1;
    t->count = 0;
    t->id_mask = tagged ? TQ_IDTAB_ID_MASK : UINT32_MAX;
    t->spare = (struct tq_spare_table){0};
    t->old = NULL;
    t->old_mask = t->old_next = 0;
    t->incremental = false;
}

void tq_st_idtab_set_incremental(struct tq_idtab *t) {
    t->incremental = true;
}

void tq_st_idtab_free(struct tq_idtab *t) {
    tq_st_table_free(t->slots, (t->mask + 1) * sizeof(uint32_t));
    t->slots = NULL;
    tq_st_spare_free(&t->spare);
    if (t->old != NULL) tq_st_table_free(t->old, (t->old_mask + 1) * sizeof(uint32_t));
    t->old = NULL;
}

typedef uint64_t (*hash_of_fn)(const struct tq_state *s, uint32_t id);

/* Stores id in slots (not counted). */
static void idtab_place(struct tq_idtab *t, uint64_t hash, uint32_t id) {
    TQ_ASSERT(id != 0 && id <= t->id_mask);
    uint64_t i = hash & t->mask;
    while (t->slots[i] != 0)
        i = (i + 1) & t->mask;
    t->slots[i] = tq_idtab_tag(t, hash) | id;
}

static void idtab_put(struct tq_idtab *t, uint64_t hash, uint32_t id) {
    idtab_place(t, hash, id);
    t->count++;
}

/* Copies up to `slots` more slots of old into slots (all of them: UINT64_MAX); frees old when
 * the last is copied. An id inserted since the doubling is only in slots; every id of old is
 * copied once, so none is stored twice. */
static void idtab_migrate(const struct tq_state *s, struct tq_idtab *t, uint64_t slots,
                          hash_of_fn hash_of) {
    if (t->old == NULL) return;
    uint64_t end = t->old_mask + 1;
    uint64_t stop = end - t->old_next > slots ? t->old_next + slots : end;
    for (uint64_t i = t->old_next; i < stop; i++) {
        uint32_t oid = t->old[i] & t->id_mask;
        if (oid != 0) idtab_place(t, hash_of(s, oid), oid);
    }
    t->old_next = stop;
    if (stop == end) {
        tq_st_table_release(s, t->old, end * sizeof(uint32_t));
        t->old = NULL;
        t->old_mask = t->old_next = 0;
    }
}

void tq_st_idtab_insert(const struct tq_state *s, struct tq_idtab *t, uint64_t hash, uint32_t id,
                        hash_of_fn hash_of) {
    TQ_ASSERT(id != 0);
    if (__builtin_expect(s->pf.fn != NULL, 0) && (t->count + 1) * 8 > (t->mask + 1) * 5) {
        /* 5/8 full: ready the next table */
        tq_st_table_prepare(s, &t->spare, (t->mask + 1) * 2 * sizeof(uint32_t));
    }
    idtab_migrate(s, t, TQ_IDTAB_MIGRATE_STEP, hash_of);
    if ((t->count + 1) * 4 > (t->mask + 1) * 3) {
        idtab_migrate(s, t, UINT64_MAX, hash_of); /* done long ago but for tiny tables */
        uint64_t old_cap = t->mask + 1;
        t->old = t->slots;
        t->old_mask = t->mask;
        t->old_next = 0;
        t->slots = tq_st_table_take(&t->spare, old_cap * 2 * sizeof(uint32_t));
        t->mask = old_cap * 2 - 1;
        if (!t->incremental) idtab_migrate(s, t, UINT64_MAX, hash_of);
    }
    idtab_put(t, hash, id);
    TQ_ASSERT(t->count * 4 <= (t->mask + 1) * 3);
}

void tq_st_idtab_remove(const struct tq_state *s, struct tq_idtab *t, uint64_t hash, uint32_t id,
                        hash_of_fn hash_of) {
    TQ_ASSERT(id != 0 && t->count > 0);
    idtab_migrate(s, t, UINT64_MAX, hash_of); /* removals are rare (an erasure) */
    uint64_t i = hash & t->mask;
    while ((t->slots[i] & t->id_mask) != id) {
        TQ_ASSERT(t->slots[i] != 0); /* the caller promised id is present */
        i = (i + 1) & t->mask;
    }
    /* Backward shift: move later members of the probe run into the hole when their home slot
     * does not lie cyclically in (hole, j]. */
    for (uint64_t j = (i + 1) & t->mask; t->slots[j] != 0; j = (j + 1) & t->mask) {
        uint64_t home = hash_of(s, t->slots[j] & t->id_mask) & t->mask;
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            t->slots[i] = t->slots[j];
            i = j;
        }
    }
    t->slots[i] = 0;
    t->count--;
}

/* ---- u32 map (backward-shift deletion) ---------------------------------------------------- */

static uint64_t mix32(uint32_t k) {
    uint64_t z = (uint64_t)k * 0x9e3779b97f4a7c15ull;
    return z ^ (z >> 29);
}

void tq_st_u32map_init(struct tq_u32map *m, uint64_t cap) {
    m->slots = tq_st_table_alloc(cap * sizeof(uint64_t));
    m->mask = cap - 1;
    m->count = 0;
}

void tq_st_u32map_free(struct tq_u32map *m) {
    tq_st_table_free(m->slots, (m->mask + 1) * sizeof(uint64_t));
    m->slots = NULL;
}

uint32_t tq_st_u32map_get(const struct tq_u32map *m, uint32_t key) {
    for (uint64_t i = mix32(key) & m->mask;; i = (i + 1) & m->mask) {
        uint64_t v = m->slots[i];
        if (v == 0) return 0;
        if ((uint32_t)(v >> 32) == key) return (uint32_t)v;
    }
}

void tq_st_u32map_put(struct tq_u32map *m, uint32_t key, uint32_t value) {
    TQ_ASSERT(key != 0);
    if ((m->count + 1) * 4 > (m->mask + 1) * 3) {
        uint64_t old_cap = m->mask + 1;
        uint64_t *old = m->slots;
        tq_st_u32map_init(m, old_cap * 2);
        for (uint64_t i = 0; i < old_cap; i++) {
            if (old[i] != 0) tq_st_u32map_put(m, (uint32_t)(old[i] >> 32), (uint32_t)old[i]);
        }
        tq_st_table_free(old, old_cap * sizeof(uint64_t));
    }
    uint64_t i = mix32(key) & m->mask;
    while (m->slots[i] != 0) {
        TQ_ASSERT((uint32_t)(m->slots[i] >> 32) != key);
        i = (i + 1) & m->mask;
    }
    m->slots[i] = (uint64_t)key << 32 | value;
    m->count++;
}

void tq_st_u32map_prefetch(const struct tq_u32map *m, uint32_t key) {
    __builtin_prefetch(&m->slots[mix32(key) & m->mask], 1);
}

void tq_st_u32map_del(struct tq_u32map *m, uint32_t key) {
    uint64_t i = mix32(key) & m->mask;
    while ((uint32_t)(m->slots[i] >> 32) != key) {
        TQ_ASSERT(m->slots[i] != 0);
        i = (i + 1) & m->mask;
    }
    /* Backward shift: move later members of the cluster into the hole when allowed. */
    uint64_t hole = i;
    for (uint64_t j = (i + 1) & m->mask; m->slots[j] != 0; j = (j + 1) & m->mask) {
        uint64_t home = mix32((uint32_t)(m->slots[j] >> 32)) & m->mask;
        /* j may move to hole if home is not cyclically in (hole, j]. */
        bool in_range = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!in_range) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    m->slots[hole] = 0;
    m->count--;
}

/* ---- hashing of keys ---------------------------------------------------------------------- */

/* XXH3-64 of (tenant u64 LE, kind u8, channel u8, bytes); never 0 (0 means "no key"). Keys
 * are at most TQ_EXTERNAL_ID_BYTES_MAX bytes (validated by every caller). */
static uint64_t key_hash(uint64_t tenant, unsigned kind, unsigned channel, const char *p,
                         size_t len) {
    uint8_t buf[10 + TQ_EXTERNAL_ID_BYTES_MAX];
    TQ_ASSERT(len <= TQ_EXTERNAL_ID_BYTES_MAX);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(tenant >> (8 * i));
    buf[8] = (uint8_t)kind;
    buf[9] = (uint8_t)channel;
    if (len > 0) memcpy(buf + 10, p, len);
    uint64_t h = XXH3_64bits(buf, 10 + len);
    return h == 0 ? 1 : h;
}

uint64_t tq_st_identity_hash(uint64_t tenant, unsigned channel, const char *norm, size_t len) {
    return key_hash(tenant, 1, channel, norm, len);
}

uint64_t tq_st_message_hash(uint64_t tenant, unsigned channel, const char *ext, size_t len) {
    return key_hash(tenant, 2, channel, ext, len);
}

/* ---- interning ---------------------------------------------------------------------------- */

static uint64_t intern_hash_of(const struct tq_state *s, uint32_t id) {
    return st_intern(s, id)->hash;
}

uint32_t tq_st_intern_find(const struct tq_state *s, struct tq_str str) {
    uint64_t h = XXH3_64bits(str.ptr, str.len);
    const struct tq_idtab *t = &s->intern_index;
    TQ_DEBUG_ASSERT(!t->incremental);
    for (uint64_t i = h & t->mask;; i = (i + 1) & t->mask) {
        uint32_t id = t->slots[i];
        if (id == 0) return 0;
        const struct tq_intern *in = st_intern(s, id);
        if (in->hash == h && in->str.len == str.len && memcmp(in->str.ptr, str.ptr, str.len) == 0) {
            return id;
        }
    }
}

uint32_t tq_st_intern(struct tq_state *s, struct tq_str str) {
    uint32_t id = tq_st_intern_find(s, str);
    if (id != 0) return id;
    id = tq_st_slab_new(&s->interns);
    struct tq_intern *in = st_intern(s, id);
    in->hash = XXH3_64bits(str.ptr, str.len);
    in->str = tq_st_strdup(s, str.ptr, str.len);
    tq_st_idtab_insert(s, &s->intern_index, in->hash, id, intern_hash_of);
    return id;
}

/* ---- tenant-isolated lookups -------------------------------------------------------------- */

struct tq_tenant *tq_st_tenant_get(const struct tq_state *s, uint64_t id) {
    if (id == 0 || id >= s->tenants.next_id) return NULL;
    return st_tenant(s, (uint32_t)id);
}

struct tq_ticket *tq_st_ticket_get(const struct tq_state *s, uint64_t tenant, uint64_t id) {
    if (id == 0 || id >= s->tickets.next_id) return NULL;
    struct tq_ticket *t = st_ticket(s, (uint32_t)id);
    return t->tenant == tenant ? t : NULL;
}

struct tq_queue *tq_st_queue_get(const struct tq_state *s, uint64_t tenant, uint64_t id) {
    if (id == 0 || id >= s->queues.next_id) return NULL;
    struct tq_queue *q = st_queue(s, (uint32_t)id);
    return q->tenant == tenant ? q : NULL;
}

struct tq_agent *tq_st_agent_get(const struct tq_state *s, uint64_t tenant, uint64_t id) {
    if (id == 0 || id >= s->agents.next_id) return NULL;
    struct tq_agent *a = st_agent(s, (uint32_t)id);
    return a->tenant == tenant ? a : NULL;
}

struct tq_customer *tq_st_customer_get(const struct tq_state *s, uint64_t tenant, uint64_t id) {
    if (id == 0 || id >= s->customers.next_id) return NULL;
    struct tq_customer *c = st_customer(s, (uint32_t)id);
    return c->tenant == tenant ? c : NULL;
}

struct tq_message *tq_st_message_get(const struct tq_state *s, uint64_t tenant, uint64_t id) {
    if (id == 0 || id >= s->messages.next_id) return NULL;
    struct tq_message *m = st_message(s, (uint32_t)id);
    return st_ticket(s, m->ticket)->tenant == tenant ? m : NULL;
}
