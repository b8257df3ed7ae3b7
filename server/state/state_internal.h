/* server/state/state_internal.h: the in-memory layout of struct tq_state, shared by the files of
 * tq_state (state.c apply, query.c views, snapshot.c serialise/digest). Not installed, not used
 * outside server/state/.
 *
 * Memory layout (why it looks like this: the targets are <= 256 bytes per ticket and
 * <= 32 bytes per message resident):
 *   - every entity kind lives in a chunked slab indexed by its id (ids are dense, global, start
 *     at 1): element id is chunks[id >> shift][id & mask]. Chunks never move, so the
 *     slabs grow in large steps without a realloc copy and without doubling slack.
 *   - in memory ids are uint32_t (the API speaks uint64_t): 4 billion of any entity is far
 *     beyond one process; apply refuses to create more (RESOURCE_EXHAUSTED).
 *   - a message is 24 bytes: idempotency hash, LSN + packed enums, ticket, the ticket's
 *     previous message (chains run newest first: an append touches no older message).
 *     Its body, attachments, author id, provider timestamp and commit time stay in the record.
 *   - the derived indices (identity, idempotency and token hash tables, queue heaps, the
 *     deadline heap, the per-tenant SLA index, per-customer and per-ticket chains, the outbox
 *     message map) are rebuilt
 *     from the entities when a snapshot is loaded; snapshot.c serialises only the entities.
 */
#ifndef TQ_STATE_INTERNAL_H
#define TQ_STATE_INTERNAL_H

#include "state.h"
#include "tq_assert.h"

#define TQ_SLAB_SHIFT            12u              /* 4096 per chunk: tickets, messages, customers */
#define TQ_SLAB_SHIFT_SMALL      5u               /* 32 per chunk: tenants (5 KB each), queues... */
#define TQ_ID_MAX                0xfffffff0u      /* in-memory ids are uint32_t */
#define TQ_MESSAGES_MAX          ((1u << 28) - 1) /* 4 bits of each idempotency slot: state.c */
#define TQ_IDENTITIES_MAX        ((1u << 28) - 1) /* 4 tag bits of each identity slot: below */
#define TQ_HOURLY_SLOTS          48u  /* messages per channel per hour: the last 48 hours */
#define TQ_HIST_BUCKETS          256u /* log-bucketed: 4 per power of two of ms */
#define TQ_OUTBOX_ATTEMPTS_LIMIT 15u  /* attempts are 4 bits in a message */
#define TQ_CONSUMER_NAMES_MAX    256u /* named consumer positions per tenant */

/* The state's memory hooks (tq_state_options.prefault and .release); fn / release NULL =
 * none. */
struct tq_prefault {
    tq_state_prefault_fn *fn;
    void *ctx;
    tq_state_release_fn *release;
    void *release_ctx;
};

/* A table mapped ahead of a table's growth and handed to the prefault hook (store.c), so the
 * growth finds its pages already populated. Zero-filled (nothing writes it before use). */
struct tq_spare_table {
    void *p;
    size_t bytes;
};

/* A chunked slab of fixed-size, zero-initialised elements addressed by id (id 0 unused). */
struct tq_slab {
    uint8_t **chunks;
    uint32_t chunk_count, chunk_cap;
    uint32_t elem_size;
    uint32_t next_id; /* the id the next allocation gets (starts at 1) */
    uint32_t shift;   /* log2 of the elements per chunk */
    /* With a prefault hook (store.c): the huge page whose successor was last requested, and
     * the next huge-page group, mapped early so its first page can be populated ahead. */
    const struct tq_prefault *pf;
    uint8_t *pf_page;
    uint8_t *spare_group;
};

/* Open-addressing table of entity ids (0 = empty slot), linear probing. Merges re-point the
 * entity instead of removing it; the only removal is an erased identity (backward-shift
 * deletion, so no tombstones). The key hash is kept in the entity itself; growth asks state
 * for it.
 * A tagged table (the identity table) keeps the top 4 bits of the key hash in the top 4 bits
 * of each slot (ids are then < 2^28, TQ_IDENTITIES_MAX): a lookup, and the prefetch stage that
 * walks an inbound message's chain, skip 15/16 of the slots that hold another key without
 * reading that entity (a cache miss each; at the table's 3/8..3/4 load a quarter to a half of
 * the lookups met a displaced identity in the home slot). Same memory. */
struct tq_idtab {
    uint32_t *slots;
    uint64_t mask; /* capacity - 1; capacity is a power of two */
    uint64_t count;
    uint32_t id_mask;            /* UINT32_MAX: untagged; TQ_IDTAB_ID_MASK: tagged */
    struct tq_spare_table spare; /* with a prefault hook: the next table, populated ahead */
    /* An incremental table (the identity table, which grows during live ingest) does not
     * re-insert every id in one insert when it doubles: the old table stays, unchanged, as
     * `old` until every one of its slots has been copied, TQ_IDTAB_MIGRATE_STEP slots per
     * insert (slots old_next .. old_mask are still to copy). Meanwhile an id is in slots, or
     * in old, or in both; a lookup probes slots and then, on a miss, old; count is the number
     * of distinct ids. The copy ends long before the next doubling (the new table is 3/8 full
     * when it starts, and it is done after old's capacity / 16 inserts). A removal finishes it
     * first. */
    uint32_t *old; /* NULL: no copy in progress */
    uint64_t old_mask, old_next;
    bool incremental;
};
#define TQ_IDTAB_MIGRATE_STEP 16u
#define TQ_IDTAB_ID_MASK      ((1u << 28) - 1)
static inline uint32_t tq_idtab_tag(const struct tq_idtab *t, uint64_t hash) {
    return t->id_mask == UINT32_MAX ? 0 : (uint32_t)(hash >> 60) << 28;
}

/* The message idempotency table (state.c): any capacity (it grows by half, not doubling, so
 * its share per message stays within 4/0.75 .. 4/0.5 bytes), slot = fingerprint | id.
 * It grows incrementally: at 3/4 load the keys go on into a new table 1.5 times the size while
 * the old one stays, read-only, as `old` until the keys of messages 1 .. old_end - 1 have been
 * copied, in message id order (a sequential scan of the message slab), old_step ids per insert
 * (message ids old_next .. old_end - 1 are still to copy). Meanwhile a key of message id is in
 * slots if id < old_next or id >= old_end, and in old if id < old_end; a lookup probes slots
 * and then, on a miss, old; count is the number of distinct keys. old_step is chosen when the
 * growth starts so that the copy ends within the first quarter of the inserts before the next
 * growth (asserted there); msgtab_reserve, a rebuild and tq_state_free finish or drop it. */
struct tq_msgtab {
    uint32_t *slots;
    uint64_t cap;
    uint64_t count;
    struct tq_spare_table spare; /* with a prefault hook: the next table, populated ahead */
    uint32_t *old;               /* NULL: no copy in progress */
    uint64_t old_cap;
    uint32_t old_next, old_end, old_step;
};

/* uint32 -> uint32 map with deletion (backward-shift), used for message id -> outbox entry. */
struct tq_u32map {
    uint64_t *slots; /* key << 32 | value; 0 = empty (keys are non-zero) */
    uint64_t mask;
    uint64_t count;
};

/* Chunked append-only byte store for names, subjects and other small strings. */
struct tq_strstore {
    struct tq_strchunk *head;
    uint64_t bytes; /* total bytes stored (for the memory report) */
};

struct tq_heap32 { /* binary heap of ticket ids; comparator by kind */
    uint32_t *ids;
    uint32_t count, cap;
};

/* Deadline heap entry, one per ticket with a due item. Packed to 12 bytes (a third of the
 * per-ticket index cost); x86 and arm64 load unaligned words at full speed. */
struct __attribute__((packed)) tq_duenode {
    uint64_t due_ms;
    uint32_t ticket;
};

/* The SLA index (slaidx.c): per tenant, a 4-ary min-heap with one node per ticket that has a
 * running SLA clock with a deadline, ordered by the earliest such deadline, then ticket id. A node
 * is 8 bytes (the memory budget of <= 256 bytes per ticket had 12 left): the deadline is kept as a
 * 32-bit offset from the heap's base, clamped to 0 below the base and to UINT32_MAX at or
 * beyond base + UINT32_MAX ms (49.7 days). The clamp is monotone, so different keys order
 * exactly as their deadlines do; only two equal clamped keys are resolved by reading the
 * tickets' exact deadlines. The base moves forward (an O(n) re-encoding) when new deadlines
 * saturate and the earliest deadline has moved on by 12 days. The node's position is in the
 * ticket (tq_ticket.sla_pos: it fills the ticket's padding). Derived: rebuilt on snapshot load,
 * never serialised. */
#define TQ_SLAIDX_ARITY                                                                            \
    4u /* children per node: half the levels of a binary heap, so half the                         \
        * position writes into other tickets per sift; 4 nodes are 32 bytes */
struct tq_slanode {
    uint32_t key; /* clamp(deadline - base, 0, UINT32_MAX) */
    uint32_t ticket;
};
struct tq_slaidx {
    struct tq_slanode *nodes;
    uint32_t count, cap;
    uint64_t base;               /* key origin (ms) */
    struct tq_spare_table spare; /* with a prefault hook: the array it grows into */
};

struct tq_hist { /* log-bucketed duration histogram (ms) */
    uint64_t count;
    uint32_t buckets[TQ_HIST_BUCKETS];
};

struct tq_policy {
    struct tq_str name;
    uint32_t queue;  /* 0 = any */
    int32_t channel; /* -1 = any */
    uint32_t tag;    /* interned tag id, 0 = any */
    bool business_hours;
    uint64_t target_ms[TQ_SLA_METRIC_COUNT - 1][TQ_PRIORITY_COUNT];
};

struct tq_consumer {
    struct tq_str name;
    uint64_t lsn;
};

/* Outbox list of one (tenant, channel): doubly linked through struct tq_obentry. */
struct tq_oblist {
    uint32_t head, tail, count;
};

struct tq_tenant {
    struct tq_str name;
    uint64_t auto_close_ms;
    uint32_t warn_permille;
    uint32_t attempts_max;
    uint64_t reply_window_ms[TQ_CHANNEL_COUNT];
    uint32_t default_queue[TQ_CHANNEL_COUNT];
    uint32_t ticket_number_next;
    /* SLA policies: every list ever set is kept (tickets keep the policy chosen at creation);
     * the current list is [policy_first, policy_first + policy_current). Index + 1 is the id. */
    struct tq_policy *policies;
    uint32_t policy_count, policy_cap, policy_first, policy_current;
    struct tq_calendar *calendar; /* NULL = calendar time (24x7) */
    uint32_t *queue_ids, queue_n, queue_cap;
    uint32_t *agent_ids, agent_n, agent_cap;
    struct tq_consumer *consumers;
    uint32_t consumer_n, consumer_cap;
    /* analytics, kept incrementally */
    uint64_t by_status[TQ_STATUS_COUNT];
    uint64_t ticket_count, message_count, customer_count;
    uint64_t sla_breaches, sla_warnings, outbox_pending;
    uint64_t by_channel[TQ_CHANNEL_COUNT];
    struct tq_hist first_response, resolution;
    uint64_t hour_of_slot[TQ_HOURLY_SLOTS]; /* hour number (ms / 3600000) held by each slot */
    uint32_t hourly[TQ_HOURLY_SLOTS][TQ_CHANNEL_COUNT];
    struct tq_oblist ob_avail[TQ_CHANNEL_COUNT], ob_leased[TQ_CHANNEL_COUNT];
    bool autoassign_dirty; /* something may be assignable: run the pass */
    struct tq_slaidx sla;  /* running SLA deadlines of the tenant's tickets (slaidx.c) */
};

struct tq_token {
    uint8_t hash[32];
    struct tq_str name;
    uint32_t tenant, agent;
    uint8_t role, revoked;
};

struct tq_queue {
    struct tq_str name;
    uint64_t timeout_ms;
    uint32_t tenant;
    bool auto_assign;
    struct tq_heap32 heap[TQ_CHANNEL_CLASS_COUNT]; /* unassigned new/open tickets by class */
    uint32_t oldest_tid; /* cache: the queued ticket with the least (routing_ms, id); 0 =
                          * unknown or empty (qage.c) */
};

struct tq_agent {
    struct tq_str name;
    uint64_t last_assigned_ms;
    uint32_t tenant;
    uint32_t capacity[TQ_CHANNEL_CLASS_COUNT];
    uint32_t load[TQ_CHANNEL_CLASS_COUNT];
    uint8_t presence;
};

struct tq_customer {
    struct tq_str name, language;
    uint32_t tenant, merged_into;
    uint32_t ident_head, ident_count; /* identity chain, ascending identity id */
    uint32_t ticket_head;             /* ticket chain, descending ticket id */
    uint8_t erased;                   /* CUSTOMER_ERASE tombstone (fits the padding) */
};

/* An erased identity (CUSTOMER_ERASE) keeps its id slot, tenant, channel and customer, with
 * hash 0 and ext_len 0: it is in no chain and no lookup table. Live identities have
 * ext_len >= 1 (every path that adds one requires a non-empty id).
 * One cache line (64 bytes, slab chunks are 64-byte aligned): the normalised external id is
 * kept inline when it fits (e-mail addresses and phone numbers almost always do), so an
 * inbound message's identity check reads one line, not the record and then the string. Longer
 * ids live in the string store. Read the id with ident_ext(). */
#define TQ_IDENTITY_INLINE_BYTES 40u
struct tq_identity {
    uint64_t hash; /* XXH3 of (tenant, channel, normalised id) */
    uint32_t tenant, customer, next;
    uint16_t ext_len;
    uint8_t channel;
    union {
        char bytes[TQ_IDENTITY_INLINE_BYTES]; /* ext_len <= TQ_IDENTITY_INLINE_BYTES */
        const char *ptr;                      /* longer: in the string store */
    } ext;
};
_Static_assert(sizeof(struct tq_identity) == 64, "an identity is one cache line");
static inline const char *ident_ext(const struct tq_identity *x) {
    return x->ext_len <= TQ_IDENTITY_INLINE_BYTES ? x->ext.bytes : x->ext.ptr;
}

/* message.packed: lsn (48 bits) | direction (2) | channel (4) | author (2) | delivery (3) |
 * attempts (4). */
struct tq_message {
    uint64_t ext_hash; /* idempotency key hash; 0 = no external id */
    uint64_t packed;
    uint32_t ticket, next; /* next: the ticket's previous (older) message, 0 = first */
};
#define TQ_LSN_MAX ((1ull << 48) - 1)

struct tq_clock {         /* a duration clock (requester wait, agent work) */
    uint64_t deadline_ms; /* RUNNING with a target: breach instant; else 0 */
    uint64_t mark_ms;     /* RUNNING: resumed at */
    uint64_t elapsed_ms;  /* counted before mark_ms */
};

struct tq_tag_field {
    uint32_t key; /* interned */
    uint8_t type;
    int64_t int_value;
    struct tq_str string_value; /* string store */
};

/* The cold part of a ticket: wake_at, merge and follow-up links, tags and custom fields. Most
 * tickets have none of these, so they cost nothing there (a NULL pointer); the block is one
 * exact-size allocation, rebuilt whenever it changes: the header, field_count fields, then
 * tag_count interned tag ids. Read and write it only through the accessors below. */
struct tq_ticket_extras {
    uint64_t wake_at_ms;
    uint32_t merged_into, follow_up_of;
    uint32_t tag_count, field_count;
    struct tq_tag_field fields[];
};
static inline uint32_t *extras_tags(const struct tq_ticket_extras *x) {
    return (uint32_t *)(void *)((uint8_t *)(uintptr_t)x + sizeof(*x) +
                                x->field_count * sizeof(struct tq_tag_field));
}
static inline size_t extras_bytes(uint32_t tag_count, uint32_t field_count) {
    return sizeof(struct tq_ticket_extras) + field_count * sizeof(struct tq_tag_field) +
           tag_count * sizeof(uint32_t);
}

enum {
    TQ_TF_IN_LOAD = 1u << 0, /* counted in the assignee's load */
    TQ_TF_QUEUED = 1u << 1,  /* in its queue's heap */
};

struct tq_ticket {
    uint64_t created_ms, updated_ms, first_response_ms, solved_ms;
    uint64_t routing_ms;        /* queued: (re)entered at; assigned: last action */
    uint64_t unanswered_ms;     /* oldest inbound not answered by an agent; 0 none */
    struct tq_clock wait, work; /* requester wait, agent work */
    uint64_t first_reply_deadline_ms, next_reply_deadline_ms, window_deadline_ms;
    const char *subject;
    struct tq_ticket_extras *extras; /* cold fields (see above); NULL = none */
    uint32_t tenant, number, customer, queue, assignee;
    uint32_t msg_head, msg_tail, msg_count; /* oldest, newest; chained newest first */
    uint32_t customer_next;                 /* customer's ticket chain (descending id) */
    uint32_t policy;                        /* tenant policy index + 1; 0 = no SLA */
    uint16_t subject_len;
    uint8_t status, priority, origin, flags;
    uint8_t sla_state[TQ_SLA_METRIC_COUNT]; /* enum tq_sla_clock_state */
    uint8_t sla_warned;                     /* bit per metric */
    uint32_t sla_pos; /* tenant SLA index position + 1 while indexed, else 0 (slaidx.c) */
};
/* Three whole cache lines (slab chunks are 64-byte aligned): an inbound message to a ticket
 * reads and writes fields in all of them, and a fourth line was a fourth miss. */
_Static_assert(sizeof(struct tq_ticket) == 192, "a ticket is three cache lines");

/* A ticket's entries in the queue and deadline heaps, kept in their own slab (same ids as the
 * tickets) so that heap sifts, which move other tickets' entries, write 16-byte records in a
 * dense array instead of a line of each moved ticket, and queue comparisons read the cached
 * key there. Derived: rebuilt on snapshot load, never serialised. */
struct tq_tkidx {
    uint64_t qkey;      /* queued: tq_st_queue_key() when it entered or was re-keyed */
    uint32_t queue_pos; /* queue heap position + 1 while queued, else 0 */
    uint32_t due_pos;   /* deadline heap position + 1 while it has a due item, else 0 */
};

/* The running deadline of SLA clock m (0: not running). */
static inline uint64_t tk_clock_deadline(const struct tq_ticket *t, enum tq_sla_metric m) {
    switch (m) {
    case TQ_SLA_FIRST_REPLY: return t->first_reply_deadline_ms;
    case TQ_SLA_NEXT_REPLY: return t->next_reply_deadline_ms;
    case TQ_SLA_REQUESTER_WAIT: return t->wait.deadline_ms;
    case TQ_SLA_AGENT_WORK: return t->work.deadline_ms;
    case TQ_SLA_REPLY_WINDOW: return t->window_deadline_ms;
    }
    return 0;
}
static inline uint64_t tk_wake_at(const struct tq_ticket *t) {
    return t->extras != NULL ? t->extras->wake_at_ms : 0;
}
static inline uint32_t tk_merged_into(const struct tq_ticket *t) {
    return t->extras != NULL ? t->extras->merged_into : 0;
}
static inline uint32_t tk_follow_up_of(const struct tq_ticket *t) {
    return t->extras != NULL ? t->extras->follow_up_of : 0;
}
/* Setters (state.c): they create or drop the extras block as needed. */
void tq_st_set_wake_at(struct tq_ticket *t, uint64_t v);
void tq_st_set_merged_into(struct tq_ticket *t, uint32_t v);
void tq_st_set_follow_up_of(struct tq_ticket *t, uint32_t v);

/* An outbox entry, one per outbound message waiting for delivery (QUEUED). Its attempts count
 * is the message's current one: OUTBOX_TAKE counts here only, so taking 50 messages touches no
 * message line (it wrote one random line each before); the message's 4 bits catch up when the
 * entry is removed (outbox_remove). Read a message's attempts with tq_st_message_attempts. */
struct tq_obentry {
    uint64_t lease_until_ms; /* 0 = available */
    uint32_t message, tenant, prev, next;
    /* A leased entry's successor TQ_OUTBOX_AHEAD places on in its take (0 = none): expiry walks
     * the leased list 30 s or so after the take, when the entries are cold, and each entry's
     * line is only known from the one before it; this lets the walk fetch a few ahead. A hint
     * only (it goes stale when an entry is acked, re-leased or reused, and is never followed
     * for anything but a prefetch): not in snapshots or the digest. */
    uint32_t ahead;
    uint8_t channel, leased;
    uint8_t attempts; /* authoritative while the entry exists (above) */
};
_Static_assert(sizeof(struct tq_obentry) == 32, "two outbox entries per cache line");
#define TQ_OUTBOX_AHEAD 6u

struct tq_intern { /* interned tag / custom-field key */
    uint64_t hash;
    struct tq_str str;
};

struct tq_state {
    uint32_t body_bytes_max;
    uint64_t lsn;
    struct tq_slab tenants, tokens, queues, agents, customers, identities, tickets, messages;
    struct tq_slab tkidx; /* struct tq_tkidx, one per ticket, same id */
    struct tq_slab interns, obentries;
    uint32_t ob_free; /* free list of outbox entries (through next) */
    struct tq_idtab ident_index, token_index, intern_index;
    struct tq_msgtab msg_index;
    struct tq_prefault pf; /* tq_state_options.prefault; the slabs point here */
    struct tq_u32map ob_by_message;
    struct tq_duenode *due;      /* min-heap by (due_ms, ticket) */
    uint32_t due_count, due_cap; /* due_cap: entries before dh_grow must run */
    size_t due_bytes;            /* due's length (writable, once it grows in place) */
    size_t due_reserved; /* address space of due once it grows in place (tq_st_array_grow) */
    struct tq_strstore strings;
    uint64_t *taken; /* OUTBOX_TAKE result buffer */
    /* query scratch (views are valid until the next apply) */
    struct tq_str *view_tags;
    struct tq_custom_field *view_fields;
    /* tenants whose auto-assign pass must run at the end of this apply */
    uint32_t *dirty;
    uint32_t dirty_n, dirty_cap;
};

/* ---- slabs ---- */
static inline void *tq_slab_at(const struct tq_slab *slab, uint32_t id) {
    TQ_DEBUG_ASSERT(id != 0 && id < slab->next_id);
    return slab->chunks[id >> slab->shift] +
           (size_t)(id & ((1u << slab->shift) - 1)) * slab->elem_size;
}
static inline uint32_t tq_slab_count(const struct tq_slab *slab) {
    return slab->next_id - 1;
}

static inline struct tq_tenant *st_tenant(const struct tq_state *s, uint32_t id) {
    return tq_slab_at(&s->tenants, id);
}
static inline struct tq_ticket *st_ticket(const struct tq_state *s, uint32_t id) {
    return tq_slab_at(&s->tickets, id);
}
static inline struct tq_tkidx *st_tkidx(const struct tq_state *s, uint32_t id) {
    return tq_slab_at(&s->tkidx, id);
}
static inline struct tq_message *st_message(const struct tq_state *s, uint32_t id) {
    return tq_slab_at(&s->messages, id);
}
static inline struct tq_customer *st_customer(const struct tq_state *s, uint32_t id) {
    return tq_slab_at(&s->customers, id);
}
static inline struct tq_identity *st_identity(const struct tq_state *s, uint32_t id) {
    return tq_slab_at(&s->identities, id);
}
static inline struct tq_queue *st_queue(const struct tq_state *s, uint32_t id) {
    return tq_slab_at(&s->queues, id);
}
static inline struct tq_agent *st_agent(const struct tq_state *s, uint32_t id) {
    return tq_slab_at(&s->agents, id);
}
static inline struct tq_token *st_token(const struct tq_state *s, uint32_t id) {
    return tq_slab_at(&s->tokens, id);
}
static inline struct tq_intern *st_intern(const struct tq_state *s, uint32_t id) {
    return tq_slab_at(&s->interns, id);
}
static inline struct tq_obentry *st_obentry(const struct tq_state *s, uint32_t id) {
    return tq_slab_at(&s->obentries, id);
}

/* Message packing. */
static inline uint64_t msg_lsn(const struct tq_message *m) {
    return m->packed & TQ_LSN_MAX;
}
static inline unsigned msg_dir(const struct tq_message *m) {
    return (m->packed >> 48) & 3u;
}
static inline unsigned msg_chan(const struct tq_message *m) {
    return (m->packed >> 50) & 15u;
}
static inline unsigned msg_author(const struct tq_message *m) {
    return (m->packed >> 54) & 3u;
}
static inline unsigned msg_delivery(const struct tq_message *m) {
    return (m->packed >> 56) & 7u;
}
static inline unsigned msg_attempts(const struct tq_message *m) {
    return (m->packed >> 59) & 15u;
}
static inline uint64_t msg_pack(uint64_t lsn, unsigned dir, unsigned chan, unsigned author,
                                unsigned delivery, unsigned attempts) {
    return (lsn & TQ_LSN_MAX) | (uint64_t)dir << 48 | (uint64_t)chan << 50 |
           (uint64_t)author << 54 | (uint64_t)delivery << 56 | (uint64_t)attempts << 59;
}
static inline uint64_t msg_with_attempts(uint64_t packed, unsigned attempts) {
    return (packed & ~(15ull << 59)) | (uint64_t)(attempts & 15u) << 59;
}

/* ---- containers (store.c) ---- */
void tq_st_slab_init(struct tq_slab *slab, uint32_t elem_size, uint32_t shift);
/* tq_state_regions for one slab: every chunk and huge-page group with an element in it (ALL),
 * the last one only (TAIL: where the next element goes) or all but that (BEFORE_TAIL); each
 * passed to fn with `hot`. */
enum tq_st_slab_part { TQ_ST_SLAB_ALL, TQ_ST_SLAB_TAIL, TQ_ST_SLAB_BEFORE_TAIL };
void tq_st_slab_regions(const struct tq_slab *slab, enum tq_st_slab_part part,
                        tq_state_region_fn *fn, void *ctx, bool hot);

/* Tables (hash tables, heaps, index arrays) of TQ_ST_TABLE_MAP_BYTES_MIN bytes or more live in
 * 2 MiB-aligned huge-page regions (store.c says why); smaller ones come from tq_alloc. alloc
 * returns zeroed memory; realloc keeps the common prefix (the rest is zero only for a region).
 * Every table is freed with the byte count it was allocated with. */
#define TQ_ST_TABLE_MAP_BYTES_MIN ((size_t)2 << 20)
void *tq_st_table_alloc(size_t bytes);
void *tq_st_table_realloc(void *p, size_t bytes_old, size_t bytes_new);
void tq_st_table_free(void *p, size_t bytes);
/* tq_st_table_free for a table given up inside apply: a region goes to the release hook when
 * there is one (unmapped later, off the applying thread), else it is freed at once. */
void tq_st_table_release(const struct tq_state *s, void *p, size_t bytes);
/* With a prefault hook: a table that will grow to `bytes` once it is fuller gets them mapped
 * now and populated by the hook (called when its load passes 5/8, before the 3/4 that grows
 * it); tq_st_table_take then hands them to the growth (zeroed, and counted as
 * tq_st_table_alloc counts), or a fresh table when there is no spare of that size. */
void tq_st_table_prepare(const struct tq_state *s, struct tq_spare_table *spare, size_t bytes);
/* The same for an array that fills from the front and grows from bytes_old to bytes_new by
 * tq_st_table_realloc_take (which is tq_st_table_realloc, with the spare when it fits): only
 * the whole huge pages the copy will write are populated, as tq_st_table_realloc advises
 * only those. Called when the array is 7/8 full or so. */
void tq_st_table_prepare_grow(const struct tq_state *s, struct tq_spare_table *spare,
                              size_t bytes_old, size_t bytes_new);
void *tq_st_table_realloc_take(struct tq_spare_table *spare, void *p, size_t bytes_old,
                               size_t bytes_new);
void *tq_st_table_take(struct tq_spare_table *spare, size_t bytes);
/* An array that fills from the front and grows in place (store.c says why): it is *bytes long
 * (writable) in *reserved bytes of address space (0: not yet reserved: p is NULL, or
 * tq_st_table_alloc'd with *bytes bytes). Makes it writable through the huge page that byte
 * bytes_used - 1 falls into, and with a prefault hook one whole page more (moving it, one copy,
 * into a new reservation when that does not fit) and hands the page ahead to the prefault hook.
 * Returns the array (the same p unless it moved); *bytes and *reserved are updated. Aborts when the
 * kernel gives no address space or memory (as tq_xalloc does). */
void *tq_st_array_grow(const struct tq_state *s, void *p, size_t bytes_used, size_t *bytes,
                       size_t *reserved);
/* Frees an array of tq_st_array_grow (or tq_st_table_alloc while reserved is 0). */
void tq_st_array_free(void *p, size_t bytes, size_t reserved);
void tq_st_spare_free(struct tq_spare_table *spare);
uint32_t tq_st_slab_new(struct tq_slab *slab);
void tq_st_slab_free(struct tq_slab *slab);
void tq_st_strings_free(struct tq_state *s);
/* tagged: see struct tq_idtab (ids must then be <= TQ_IDTAB_ID_MASK). */
void tq_st_idtab_init(struct tq_idtab *t, uint64_t cap, bool tagged);
/* The table grows incrementally from now on (the fields above); lookups must then probe old
 * too after a miss in slots. */
void tq_st_idtab_set_incremental(struct tq_idtab *t);

void tq_st_idtab_free(struct tq_idtab *t);
void tq_st_idtab_insert(const struct tq_state *s, struct tq_idtab *t, uint64_t hash, uint32_t id,
                        uint64_t (*hash_of)(const struct tq_state *s, uint32_t id));
/* Removes id (present, inserted with hash) by backward shift; hash_of must still answer for
 * every other id in the table. */
void tq_st_idtab_remove(const struct tq_state *s, struct tq_idtab *t, uint64_t hash, uint32_t id,
                        uint64_t (*hash_of)(const struct tq_state *s, uint32_t id));
void tq_st_u32map_init(struct tq_u32map *m, uint64_t cap);
void tq_st_u32map_free(struct tq_u32map *m);
uint32_t tq_st_u32map_get(const struct tq_u32map *m, uint32_t key);
void tq_st_u32map_put(struct tq_u32map *m, uint32_t key, uint32_t value);
void tq_st_u32map_del(struct tq_u32map *m, uint32_t key);
void tq_st_u32map_prefetch(const struct tq_u32map *m, uint32_t key); /* key's home slot */

/* Lookups honouring tenant isolation: NULL when the id does not exist or is another tenant's. */
struct tq_tenant *tq_st_tenant_get(const struct tq_state *s, uint64_t id);
struct tq_ticket *tq_st_ticket_get(const struct tq_state *s, uint64_t tenant, uint64_t id);
struct tq_queue *tq_st_queue_get(const struct tq_state *s, uint64_t tenant, uint64_t id);
struct tq_agent *tq_st_agent_get(const struct tq_state *s, uint64_t tenant, uint64_t id);
struct tq_customer *tq_st_customer_get(const struct tq_state *s, uint64_t tenant, uint64_t id);
struct tq_message *tq_st_message_get(const struct tq_state *s, uint64_t tenant, uint64_t id);

/* Shared between state.c, query.c and snapshot.c. */
struct tq_state *tq_st_alloc(const struct tq_state_options *options);
struct tq_str tq_st_strdup(struct tq_state *s, const char *ptr, uint32_t len);
/* Stores the normalised external id of identity x (inline or in the string store). */
void tq_st_identity_set_ext(struct tq_state *s, struct tq_identity *x, const char *ptr,
                            uint32_t len);
uint32_t tq_st_intern(struct tq_state *s, struct tq_str str);            /* 0 never returned */
uint32_t tq_st_intern_find(const struct tq_state *s, struct tq_str str); /* 0 = not interned */
uint64_t tq_st_ticket_due(const struct tq_state *s, const struct tq_ticket *t);
uint64_t tq_st_ticket_sla_due(const struct tq_ticket *t);
bool tq_st_ticket_should_queue(const struct tq_ticket *t);
bool tq_st_ticket_counts_load(const struct tq_ticket *t);
uint64_t tq_st_clock_target(const struct tq_state *s, const struct tq_ticket *t,
                            enum tq_sla_metric m);
uint64_t tq_st_clock_elapsed(const struct tq_state *s, const struct tq_ticket *t,
                             enum tq_sla_metric m);
bool tq_st_queue_before(const struct tq_state *s, uint32_t a, uint32_t b);
/* The oldest-ticket cache of queue qid (qage.c): enter after ticket tid was queued in it
 * (TQ_TF_QUEUED and routing_ms set), left after it left. */
void tq_st_qage_enter(struct tq_state *s, uint32_t qid, uint32_t tid);
void tq_st_qage_left(struct tq_state *s, uint32_t qid, uint32_t tid);
uint64_t tq_st_qage_oldest(const struct tq_state *s, uint32_t qid); /* routing_ms; 0 empty */
bool tq_st_qage_check(const struct tq_state *s, uint32_t qid, struct tq_error *error);

/* The cached part of a queued ticket's heap key: priority (desc) then SLA due (asc) as one
 * ascending integer. */
uint64_t tq_st_queue_key(const struct tq_ticket *t);
/* Allocates ticket id's index entry (after tq_st_slab_new(&s->tickets) returned id). */
void tq_st_tkidx_new(struct tq_state *s, uint32_t id);
bool tq_st_ticket_has_tag(const struct tq_ticket *t, uint32_t tag);
uint32_t tq_st_identity_lookup(const struct tq_state *s, uint64_t tenant, enum tq_channel ch,
                               struct tq_str ext);
void tq_st_outbox_add(struct tq_state *s, uint32_t tenant, uint32_t mid, unsigned channel,
                      uint64_t lease_until);
/* Message mid's delivery attempts: its outbox entry's count while it has one, else its own. */
unsigned tq_st_message_attempts(const struct tq_state *s, uint32_t mid);
/* The SLA index (slaidx.c). sync re-derives ticket tid's node from its clocks (ticket_sync
 * calls it after every change); next_deadline is the earliest running deadline of a ticket, 0
 * when it has none (merged or closed tickets have none); before orders two nodes of a tenant's
 * heap exactly; key_of encodes a deadline with the heap's current base. */
void tq_st_slaidx_sync(struct tq_state *s, uint32_t tid,
                       uint64_t sla_next); /* = tq_st_ticket_sla_next() */
void tq_st_slaidx_prefetch(const struct tq_state *s, const struct tq_ticket *t);
void tq_st_slaidx_free(struct tq_tenant *tn);
uint64_t tq_st_ticket_sla_next(const struct tq_ticket *t);
bool tq_st_slaidx_before(const struct tq_state *s, struct tq_slanode a, struct tq_slanode b);
uint32_t tq_st_slaidx_key(const struct tq_slaidx *x, uint64_t deadline_ms);

/* Rebuilds every derived index from the entities (snapshot load). */
void tq_st_rebuild_indices(struct tq_state *s);
uint64_t tq_st_hist_quantile(const struct tq_hist *h, uint32_t permille);
uint64_t tq_st_identity_hash(uint64_t tenant, unsigned channel, const char *norm, size_t len);
uint64_t tq_st_message_hash(uint64_t tenant, unsigned channel, const char *ext, size_t len);

#endif
