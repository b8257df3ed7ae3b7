/* server/state/qage.c: a queue's oldest waiting ticket, without a scan per read.
 *
 * A queue's heap is ordered by priority and SLA due, so it cannot answer "how long has the
 * oldest ticket waited" (QueueGet, QueueList, dashboards); a scan reads every queued ticket
 * (1.5 M cache misses, ~100 ms, per dashboard read). The queue caches which ticket is the
 * oldest instead, (routing_ms, ticket id) being the order:
 *   - a ticket entering the queue replaces a known oldest only if it is older (ticketqd's
 *     record times never go backwards, so it never is, but apply accepts any log); entering
 *     an empty queue makes it the oldest;
 *   - the oldest leaving makes the cache unknown; any other ticket leaving changes nothing;
 *   - a read with an unknown cache scans the queue once and fills the cache.
 * So a read costs O(1) unless the oldest left since the last read. The worst case is a queue
 * served strictly oldest-first (one priority, SLA due in arrival order) read after every
 * claim: one scan per read, as before this cache; reads without claims in between (dashboards
 * polling while tickets arrive) never scan. An exact index of entry order (a FIFO of
 * (ticket, time) entries) would make every read O(1) but costs 8-12 bytes per queued ticket,
 * which the 256-byte per-ticket budget does not have (measured: 265 B with it).
 * The cache is derived and not in snapshots or the digest; filling it from a const reader is
 * the one write a query makes (tq_state is used by one thread: the loop, or a tool).
 * Invariant (tq_state_check_invariants): a known cache names a ticket queued in this queue
 * whose (routing_ms, id) is the minimum of the queue.
 */
#include "state_internal.h"

#include "tq_assert.h"

#include <inttypes.h>

static bool older(const struct tq_state *s, uint32_t a, uint32_t b) {
    const struct tq_ticket *ta = st_ticket(s, a), *tb = st_ticket(s, b);
    return ta->routing_ms != tb->routing_ms ? ta->routing_ms < tb->routing_ms : a < b;
}

static uint32_t depth(const struct tq_queue *q) {
    uint32_t n = 0;
    for (int k = 0; k < TQ_CHANNEL_CLASS_COUNT; k++)
        n += q->heap[k].count;
    return n;
}

void tq_st_qage_enter(struct tq_state *s, uint32_t qid, uint32_t tid) {
    struct tq_queue *q = st_queue(s, qid);
    TQ_ASSERT(st_ticket(s, tid)->flags & TQ_TF_QUEUED);
    if (q->oldest_tid != 0 ? older(s, tid, q->oldest_tid) : depth(q) == 1) q->oldest_tid = tid;
}

void tq_st_qage_left(struct tq_state *s, uint32_t qid, uint32_t tid) {
    struct tq_queue *q = st_queue(s, qid);
    if (q->oldest_tid == tid) q->oldest_tid = 0;
}

static uint32_t scan(const struct tq_state *s, const struct tq_queue *q) {
    uint32_t best = 0;
    for (int k = 0; k < TQ_CHANNEL_CLASS_COUNT; k++) {
        for (uint32_t i = 0; i < q->heap[k].count; i++) {
            uint32_t tid = q->heap[k].ids[i];
            if (best == 0 || older(s, tid, best)) best = tid;
        }
    }
    return best;
}

uint64_t tq_st_qage_oldest(const struct tq_state *s, uint32_t qid) {
    struct tq_queue *q = st_queue(s, qid); /* the cache is the one field a read may fill */
    if (q->oldest_tid == 0) q->oldest_tid = scan(s, q);
    return q->oldest_tid != 0 ? st_ticket(s, q->oldest_tid)->routing_ms : 0;
}

bool tq_st_qage_check(const struct tq_state *s, uint32_t qid, struct tq_error *error) {
    const struct tq_queue *q = st_queue(s, qid);
    if (q->oldest_tid == 0) return true;
    uint32_t want = scan(s, q);
    if (q->oldest_tid != want) {
        tq_error_set(error, TQ_ERR_INTERNAL, "queue %u: cached oldest ticket %u, scan finds %u",
                     qid, q->oldest_tid, want);
        return false;
    }
    return true;
}
