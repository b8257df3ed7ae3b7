/* server/state/slaidx.c: the SLA index, the running SLA deadlines of each tenant in order.
 *
 * Owns: tq_tenant.sla (a 4-ary min-heap of struct tq_slanode) and tq_ticket.sla_pos. It answers
 * SlaNearest (query.c): "the tenant's running clocks with the earliest deadlines". The deadline
 * heap of state.c cannot answer that cheaply: it is global and keyed by each ticket's earliest
 * timed item, which for a fresh ticket is its SLA *warning*, so with a large backlog every key
 * lies before the k-th deadline and a best-first walk of it reads the whole heap.
 *
 * Invariants (checked by tq_state_check_invariants in query.c):
 *   - a tenant's heap holds exactly its tickets with a running SLA clock that has a deadline
 *     (not merged, not closed): one node per ticket, keyed at the earliest such deadline
 *     (tq_st_ticket_sla_next), whatever the clock (first/next reply, requester wait, agent
 *     work, reply window);
 *   - t->sla_pos is the node's position + 1 (0 = not indexed) and node.ticket is t;
 *   - node.key == tq_st_slaidx_key(heap, tq_st_ticket_sla_next(t)), and the heap is ordered by
 *     tq_st_slaidx_before: (exact deadline, ticket id).
 * A page of k therefore walks at most k + 1 nodes best-first (query.c): each ticket's node key
 * is at most each of its clocks' deadlines, and the walk stops at the first node whose smallest
 * possible entry cannot enter the page.
 *
 * Why 8-byte nodes with a 32-bit key: the memory budget is <= 256 bytes per ticket and the
 * state used 243.6 with 10 M messages. A node of (64-bit deadline, ticket) plus a 4-byte
 * position would cost 16-22 bytes per ticket with the heap's growth slack; this one costs 8-10
 * (251.7 bytes per ticket at 10 M messages, performance.md). Here the position
 * fills the ticket's 4 bytes of padding, and the key is the deadline as an offset from a
 * per-tenant base, clamped: key = 0 for deadline <= base, UINT32_MAX for deadline >= base +
 * UINT32_MAX (49.7 days), exact in between. The clamp is monotone, so nodes with different keys
 * order exactly as their deadlines; two nodes with the same clamped key (0 or UINT32_MAX) are
 * compared by reading both tickets' exact deadlines (rare: deadlines before the base only come
 * from a priority change re-deriving an old clock, and SLA targets beyond 37 days are unusual).
 * Equal unclamped keys are equal deadlines, ordered by ticket id. No order depends on the base.
 *
 * The base: set just before the first deadline when the heap is empty, and moved forward when
 * a new deadline saturates while the earliest deadline has moved on by SLA_REBASE_STEP_MS
 * since the base; moving it re-encodes every node (O(n), once per 12 days of deadlines per
 * tenant at most) and re-heapifies. The base is not part of the state's digest or snapshot:
 * a state rebuilt from a snapshot may have a different base and answers identically.
 *
 * Cost to apply: ticket_sync() calls tq_st_slaidx_sync() once per ticket change, with the
 * earliest running deadline that ticket_next_item()'s pass over the clocks found; when it did
 * not change that is one read of the node, which the decode-ahead window prefetches
 * (tq_st_slaidx_prefetch). An inbound message that changes no clock skips ticket_sync()
 * altogether (state.c, ingest_touches_index). When the key changes, a sift moves nodes along
 * one path of the tenant's heap (4-ary: half the levels of a binary heap), one way only for an
 * unclamped key (a grown key sinks, a smaller one rises), and writes each moved node's position
 * into its ticket: 0.08 moved nodes per record in the bench's mix (performance-state.md §5). Ticket
 * merges change two tickets before syncing either, so a sift may meet one node whose ticket changed
 * and is not synced yet; only clamped ties read tickets, and the following sync of that ticket
 * sifts it to its place (the invariant checker verifies the order after every command in the
 * tests).
 */
#include "state_internal.h"

#include <string.h>

#define SLA_KEY_CLAMP_HIGH UINT32_MAX
#define SLA_KEY_CLAMP_LOW  0u
/* A new base sits this far (18.6 h) before the earliest deadline, so deadlines re-derived a
 * little earlier than the earliest (a priority raise) still encode exactly. */
#define SLA_BASE_MARGIN_MS (1ull << 26)
/* The base only moves by at least 2^30 ms (12.4 days): a re-encoding of the tenant's heap
 * (O(n)) happens at most once per 12 days of deadlines. */
#define SLA_REBASE_STEP_MS (1ull << 30)
/* Deadlines of valid commands are below 2^54 (times < 2^53 plus at most 10 years); anything
 * above ("never": a business calendar that does not reach the target) never sets the base. */
#define SLA_BASE_DEADLINE_MAX (1ull << 54)
#define SLA_HEAP_CAP_MIN      64u

uint64_t tq_st_ticket_sla_next(const struct tq_ticket *t) {
    if (t->status == TQ_STATUS_CLOSED || tk_merged_into(t) != 0) return 0;
    uint64_t best = 0;
    for (unsigned m = 0; m < TQ_SLA_METRIC_COUNT; m++) {
        if (t->sla_state[m] != TQ_SLA_RUNNING) continue;
        uint64_t d = tk_clock_deadline(t, (enum tq_sla_metric)m);
        if (d != 0 && (best == 0 || d < best)) best = d;
    }
    return best;
}

uint32_t tq_st_slaidx_key(const struct tq_slaidx *x, uint64_t deadline_ms) {
    TQ_ASSERT(deadline_ms != 0);
    if (deadline_ms <= x->base) return SLA_KEY_CLAMP_LOW;
    uint64_t off = deadline_ms - x->base;
    return off >= SLA_KEY_CLAMP_HIGH ? SLA_KEY_CLAMP_HIGH : (uint32_t)off;
}

static bool key_clamped(uint32_t key) {
    return key == SLA_KEY_CLAMP_LOW || key == SLA_KEY_CLAMP_HIGH;
}

bool tq_st_slaidx_before(const struct tq_state *s, struct tq_slanode a, struct tq_slanode b) {
    if (a.key != b.key) return a.key < b.key;
    if (key_clamped(a.key)) {
        uint64_t da = tq_st_ticket_sla_next(st_ticket(s, a.ticket));
        uint64_t db = tq_st_ticket_sla_next(st_ticket(s, b.ticket));
        if (da != db) return da < db;
    }
    return a.ticket < b.ticket;
}

/* ---- the heap ----------------------------------------------------------------------------- */

static void sh_set(struct tq_state *s, struct tq_slaidx *x, uint32_t pos, struct tq_slanode n) {
    TQ_DEBUG_ASSERT(pos < x->count &&
                    st_ticket(s, n.ticket)->tenant == st_ticket(s, x->nodes[0].ticket)->tenant);
    x->nodes[pos] = n;
    st_ticket(s, n.ticket)->sla_pos = pos + 1;
}

static void sh_up(struct tq_state *s, struct tq_slaidx *x, uint32_t pos) {
    TQ_ASSERT(pos < x->count);
    struct tq_slanode n = x->nodes[pos];
    while (pos > 0) {
        uint32_t parent = (pos - 1) / TQ_SLAIDX_ARITY;
        if (!tq_st_slaidx_before(s, n, x->nodes[parent])) break;
        sh_set(s, x, pos, x->nodes[parent]);
        pos = parent;
    }
    sh_set(s, x, pos, n);
}

static void sh_down(struct tq_state *s, struct tq_slaidx *x, uint32_t pos) {
    TQ_ASSERT(pos < x->count);
    struct tq_slanode n = x->nodes[pos];
    for (;;) {
        uint32_t first = TQ_SLAIDX_ARITY * pos + 1;
        if (first >= x->count) break;
        uint32_t end = x->count - first < TQ_SLAIDX_ARITY ? x->count : first + TQ_SLAIDX_ARITY;
        uint32_t child = first;
        for (uint32_t c = first + 1; c < end; c++) {
            if (tq_st_slaidx_before(s, x->nodes[c], x->nodes[child])) child = c;
        }
        if (!tq_st_slaidx_before(s, x->nodes[child], n)) break;
        sh_set(s, x, pos, x->nodes[child]);
        pos = child;
    }
    sh_set(s, x, pos, n);
}

/* Moves the base to new_base: every node is re-encoded (clamped ones from their ticket's
 * exact deadline) and the heap re-heapified, so a node whose ticket changed earlier in this
 * apply and is not yet synced is placed by its current deadline (its own sync then finds its
 * key unchanged). */
static void sh_rebase(struct tq_state *s, struct tq_slaidx *x, uint64_t new_base) {
    TQ_ASSERT(new_base > x->base);
    uint64_t old_base = x->base;
    x->base = new_base;
    for (uint32_t i = 0; i < x->count; i++) {
        struct tq_slanode *n = &x->nodes[i];
        uint64_t d = key_clamped(n->key) ? tq_st_ticket_sla_next(st_ticket(s, n->ticket))
                                         : old_base + n->key;
        n->key = d == 0 ? SLA_KEY_CLAMP_LOW : tq_st_slaidx_key(x, d);
    }
    for (uint32_t i = x->count / TQ_SLAIDX_ARITY + 1; i-- > 0;) {
        if (i < x->count) sh_down(s, x, i);
    }
}

/* Called when deadline d saturates: moves the base if the earliest deadline has moved on. */
static void sh_maybe_rebase(struct tq_state *s, struct tq_slaidx *x, uint64_t d) {
    if (x->count == 0) return;
    uint64_t lo = tq_st_ticket_sla_next(st_ticket(s, x->nodes[0].ticket));
    if (lo == 0 || d < lo) lo = d;
    if (lo >= SLA_BASE_DEADLINE_MAX || lo <= SLA_BASE_MARGIN_MS) return;
    uint64_t nb = lo - SLA_BASE_MARGIN_MS;
    if (nb >= x->base + SLA_REBASE_STEP_MS) sh_rebase(s, x, nb);
}

static void sh_remove(struct tq_state *s, struct tq_slaidx *x, struct tq_ticket *t) {
    uint32_t pos = t->sla_pos - 1;
    TQ_ASSERT(pos < x->count);
    t->sla_pos = 0;
    x->count--;
    if (pos == x->count) return;
    x->nodes[pos] = x->nodes[x->count];
    sh_up(s, x, pos);
    sh_down(s, x, st_ticket(s, x->nodes[pos].ticket)->sla_pos - 1);
}

void tq_st_slaidx_sync(struct tq_state *s, uint32_t tid, uint64_t d) {
    struct tq_ticket *t = st_ticket(s, tid);
    struct tq_slaidx *x = &st_tenant(s, t->tenant)->sla;
    TQ_DEBUG_ASSERT(d == tq_st_ticket_sla_next(t));
    if (d == 0) {
        if (t->sla_pos != 0) sh_remove(s, x, t);
        return;
    }
    if (x->count == 0 && d < SLA_BASE_DEADLINE_MAX) {
        x->base = d > SLA_BASE_MARGIN_MS ? d - SLA_BASE_MARGIN_MS : 0;
    }
    uint32_t key = tq_st_slaidx_key(x, d);
    if (key == SLA_KEY_CLAMP_HIGH) {
        sh_maybe_rebase(s, x, d);
        key = tq_st_slaidx_key(x, d);
    }
    if (t->sla_pos != 0) {
        uint32_t pos = t->sla_pos - 1;
        TQ_ASSERT(pos < x->count);
        struct tq_slanode *n = &x->nodes[pos];
        TQ_ASSERT(n->ticket == tid);
        uint32_t key_old = n->key;
        if (key_old == key && !key_clamped(key)) return; /* same deadline: nothing moves */
        n->key = key;
        /* An unclamped node orders by (key, ticket) alone, so a key that grew can only move
         * down and one that shrank only up: the other sift would read a random parent (or
         * four children) for nothing. Most re-keys grow (a first reply stops the earliest
         * clock). A clamped key is compared through the tickets' exact deadlines: both. */
        if (key > key_old && !key_clamped(key)) {
            sh_down(s, x, pos);
        } else if (key < key_old && !key_clamped(key)) {
            sh_up(s, x, pos);
        } else {
            sh_up(s, x, pos);
            sh_down(s, x, t->sla_pos - 1);
        }
        return;
    }
    if (__builtin_expect(s->pf.fn != NULL, 0) && x->count >= x->cap - x->cap / 16 &&
        x->cap >= SLA_HEAP_CAP_MIN) { /* 15/16 full: ready the next array */
        tq_st_table_prepare_grow(s, &x->spare, x->cap * sizeof(*x->nodes),
                                 (x->cap + x->cap / 4) * sizeof(*x->nodes));
    }
    if (x->count == x->cap) {
        /* grow by a quarter: the per-ticket share stays within 8..10 bytes (the memory
         * budget); the copies this costs are amortised O(1) per node all the same */
        uint32_t cap = x->cap < SLA_HEAP_CAP_MIN ? SLA_HEAP_CAP_MIN : x->cap + x->cap / 4;
        TQ_ASSERT(cap > x->count);
        x->nodes = tq_st_table_realloc_take(&x->spare, x->nodes, x->cap * sizeof(*x->nodes),
                                            cap * sizeof(*x->nodes));
        x->cap = cap;
    }
    x->nodes[x->count] = (struct tq_slanode){key, tid};
    x->count++;
    sh_up(s, x, x->count - 1);
}

void tq_st_slaidx_prefetch(const struct tq_state *s, const struct tq_ticket *t) {
    if (t->sla_pos == 0) return;
    const struct tq_slaidx *x = &st_tenant(s, t->tenant)->sla;
    if (t->sla_pos <= x->count) __builtin_prefetch(&x->nodes[t->sla_pos - 1]);
}

void tq_st_slaidx_free(struct tq_tenant *tn) {
    tq_st_table_free(tn->sla.nodes, tn->sla.cap * sizeof(*tn->sla.nodes));
    tq_st_spare_free(&tn->sla.spare);
    memset(&tn->sla, 0, sizeof(tn->sla));
}
