/* server/state/store.c: the containers tq_state is built from: chunked slabs, the string store,
 * the id hash tables, the interning table and the lookups that enforce tenant isolation.
 *
 * Invariants: slab chunks never move once allocated (so entity pointers stay valid across
 * allocations within one apply); ids are handed out densely from 1; hash tables delete only by
 * backward shift (merges re-point entities instead; an erased identity is the one removal), so
 * linear probing needs no tombstones; a slot value 0 is empty because no entity has id 0. Every
 * table keeps its load factor <= 3/4.
 *
 * Why: the memory targets (<= 32 bytes per message, <= 256 per ticket) rule out per-entity
 * malloc and doubling arrays of fat structs; chunked slabs waste at most one chunk per kind.
 */
#include "state_internal.h"

#include <stddef.h>
#include <string.h>
#include <xxhash.h>

/* ---- slabs -------------------------------------------------------------------------------- */

/* Chunks are 64-byte aligned, so an element whose size is a multiple of 64 (the 192-byte
 * ticket) occupies whole cache lines. tq_alloc gives 16-byte alignment: a chunk is allocated
 * 64 bytes larger, and the allocation's own address is kept in the 8 bytes before the
 * aligned start (there are always 16 to 64 bytes of room). */
#define CHUNK_ALIGN 64u

static size_t slab_chunk_bytes(const struct tq_slab *slab) {
    return ((size_t)1 << slab->shift) * slab->elem_size;
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
        slab->chunks[slab->chunk_count++] = chunk_alloc(slab_chunk_bytes(slab));
        if (chunk == 0) memset(slab->chunks[0], 0, slab->elem_size); /* id 0: never handed out */
    }
    slab->next_id = id + 1;
    memset(tq_slab_at(slab, id), 0, slab->elem_size);
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
    for (uint32_t i = 0; i < slab->chunk_count; i++) {
        chunk_free(slab->chunks[i], slab_chunk_bytes(slab));
    }
    tq_free(slab->chunks, slab->chunk_cap * sizeof(*slab->chunks));
    memset(slab, 0, sizeof(*slab));
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
    t->slots = tq_xcalloc(cap, sizeof(uint32_t));
    t->mask = cap - 1;
    t->count = 0;
    t->id_mask = tagged ? TQ_IDTAB_ID_MASK : UINT32_MAX;
}

void tq_st_idtab_free(struct tq_idtab *t) {
    tq_free(t->slots, (t->mask + 1) * sizeof(uint32_t));
    t->slots = NULL;
}

typedef uint64_t (*hash_of_fn)(const struct tq_state *s, uint32_t id);

static void idtab_put(struct tq_idtab *t, uint64_t hash, uint32_t id) {
    TQ_ASSERT(id != 0 && id <= t->id_mask);
    uint64_t i = hash & t->mask;
    while (t->slots[i] != 0)
        i = (i + 1) & t->mask;
    t->slots[i] = tq_idtab_tag(t, hash) | id;
    t->count++;
}

void tq_st_idtab_insert(const struct tq_state *s, struct tq_idtab *t, uint64_t hash, uint32_t id,
                        hash_of_fn hash_of) {
    TQ_ASSERT(id != 0);
    if ((t->count + 1) * 4 > (t->mask + 1) * 3) {
        uint64_t old_cap = t->mask + 1;
        uint32_t *old = t->slots;
        uint32_t id_mask = t->id_mask;
        tq_st_idtab_init(t, old_cap * 2, id_mask != UINT32_MAX);
        for (uint64_t i = 0; i < old_cap; i++) {
            uint32_t oid = old[i] & id_mask;
            if (oid != 0) idtab_put(t, hash_of(s, oid), oid);
        }
        tq_free(old, old_cap * sizeof(uint32_t));
    }
    idtab_put(t, hash, id);
    TQ_ASSERT(t->count * 4 <= (t->mask + 1) * 3);
}

void tq_st_idtab_remove(const struct tq_state *s, struct tq_idtab *t, uint64_t hash, uint32_t id,
                        hash_of_fn hash_of) {
    TQ_ASSERT(id != 0 && t->count > 0);
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
    m->slots = tq_xcalloc(cap, sizeof(uint64_t));
    m->mask = cap - 1;
    m->count = 0;
}

void tq_st_u32map_free(struct tq_u32map *m) {
    tq_free(m->slots, (m->mask + 1) * sizeof(uint64_t));
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
        tq_free(old, old_cap * sizeof(uint64_t));
    }
    uint64_t i = mix32(key) & m->mask;
    while (m->slots[i] != 0) {
        TQ_ASSERT((uint32_t)(m->slots[i] >> 32) != key);
        i = (i + 1) & m->mask;
    }
    m->slots[i] = (uint64_t)key << 32 | value;
    m->count++;
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
