/* server/state/qage.c: the age index of a queue, for its oldest waiting ticket.
 *
 * A queue's heap is ordered by priority and SLA due, so it cannot answer "how long has the
 * oldest ticket waited" (QueueGet, dashboards) without a scan of every queued ticket. Tickets
 * enter a queue at the time of the record that queues them, and record times only grow in a
 * server's log, so the tickets of a queue in the order they entered are also in the order of
 * their routing_ms: the age index keeps that list, (ticket, routing_ms) per entry. A ticket
 * that leaves is not searched for: its entry turns stale (the ticket is no longer queued in
 * this queue at that time) and is dropped when it reaches the front (tq_st_qage_left, so the
 * front is always the oldest live entry) or at the next compaction.
 *
 * Invariants (tq_state_check_invariants): unless unsorted, entries [head, count) have
 * non-decreasing ms; the front entry, if any, is live; every queued ticket of the queue has a
 * live entry. A log whose times go backwards (not written by ticketqd, but apply accepts it)
 * sets unsorted: the oldest is then a scan of the queue until it empties.
 * Cost: amortised O(1) per enter and leave; compaction runs when the array is full and keeps
 * at least half of it free afterwards (else it grows by half), so each compaction's O(cap) is
 * paid by cap/2 enters. 12 bytes per live entry, the array at most ~3x the live ones.
 * Derived state: not in snapshots or the digest; rebuilt by tq_st_qage_rebuild at load.
 */
#include "state_internal.h"

#include "tq_alloc.h"
#include "tq_assert.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define QAGE_MARK 0x80u /* a transient bit of tq_ticket.flags while compacting (dedupe) */

/* The entry (tid, ms) is live: the ticket is queued in queue qid and entered it at ms. */
static bool qage_live(const struct tq_state *s, uint32_t qid, uint32_t tid, uint64_t ms) {
    const struct tq_ticket *t = st_ticket(s, tid);
    return (t->flags & TQ_TF_QUEUED) != 0 && t->queue == qid && t->routing_ms == ms;
}

/* Drops stale and duplicate entries (a ticket that left and came back within the same
 * millisecond has two live-looking entries) and moves the rest to the start; grows the array
 * when less than half of it would be free. */
static void qage_compact(struct tq_state *s, uint32_t qid) {
    struct tq_qage *a = &st_queue(s, qid)->age;
    uint32_t n = 0;
    for (uint32_t i = a->head; i < a->count; i++) {
        struct tq_ticket *t = st_ticket(s, a->tid[i]);
        if (!qage_live(s, qid, a->tid[i], a->ms[i]) || (t->flags & QAGE_MARK) != 0) continue;
        t->flags |= QAGE_MARK;
        a->tid[n] = a->tid[i];
        a->ms[n] = a->ms[i];
        n++;
    }
    for (uint32_t i = 0; i < n; i++)
        st_ticket(s, a->tid[i])->flags &= (uint8_t)~QAGE_MARK;
    a->head = 0;
    a->count = n;
    if (n + 1 > a->cap / 2) {
        uint32_t cap = a->cap < 16 ? 16 : a->cap + a->cap / 2;
        if (cap < 2 * (n + 1)) cap = 2 * (n + 1);
        a->tid = tq_xrealloc(a->tid, a->cap * sizeof(*a->tid), cap * sizeof(*a->tid));
        a->ms = tq_xrealloc(a->ms, a->cap * sizeof(*a->ms), cap * sizeof(*a->ms));
        a->cap = cap;
    }
}

void tq_st_qage_enter(struct tq_state *s, uint32_t qid, uint32_t tid) {
    struct tq_qage *a = &st_queue(s, qid)->age;
    uint64_t ms = st_ticket(s, tid)->routing_ms;
    TQ_ASSERT(qage_live(s, qid, tid, ms));
    if (a->count > a->head && ms < a->ms[a->count - 1]) a->unsorted = true;
    if (a->count == a->cap) qage_compact(s, qid);
    TQ_ASSERT(a->count < a->cap);
    a->tid[a->count] = tid;
    a->ms[a->count] = ms;
    a->count++;
}

void tq_st_qage_left(struct tq_state *s, uint32_t qid) {
    struct tq_qage *a = &st_queue(s, qid)->age;
    while (a->head < a->count && !qage_live(s, qid, a->tid[a->head], a->ms[a->head]))
        a->head++;
    if (a->head == a->count) {
        a->head = a->count = 0;
        a->unsorted = false;
    }
}

uint64_t tq_st_qage_oldest(const struct tq_state *s, uint32_t qid) {
    const struct tq_queue *q = st_queue(s, qid);
    const struct tq_qage *a = &q->age;
    if (!a->unsorted) return a->head < a->count ? a->ms[a->head] : 0;
    uint64_t oldest = 0;
    for (int k = 0; k < TQ_CHANNEL_CLASS_COUNT; k++) {
        for (uint32_t i = 0; i < q->heap[k].count; i++) {
            uint64_t at = st_ticket(s, q->heap[k].ids[i])->routing_ms;
            if (oldest == 0 || at < oldest) oldest = at;
        }
    }
    return oldest;
}

static int qage_cmp(const void *x, const void *y) {
    const uint64_t *a = x, *b = y; /* (ms, tid) pairs */
    if (a[0] != b[0]) return a[0] < b[0] ? -1 : 1;
    return a[1] < b[1] ? -1 : a[1] > b[1];
}

void tq_st_qage_rebuild(struct tq_state *s, uint32_t qid) {
    struct tq_queue *q = st_queue(s, qid);
    tq_st_qage_free(q);
    uint32_t n = 0;
    for (int k = 0; k < TQ_CHANNEL_CLASS_COUNT; k++)
        n += q->heap[k].count;
    if (n == 0) return;
    uint64_t *pairs = tq_xalloc(2 * (size_t)n * sizeof(uint64_t));
    uint32_t j = 0;
    for (int k = 0; k < TQ_CHANNEL_CLASS_COUNT; k++) {
        for (uint32_t i = 0; i < q->heap[k].count; i++) {
            uint32_t tid = q->heap[k].ids[i];
            pairs[2 * j] = st_ticket(s, tid)->routing_ms;
            pairs[2 * j + 1] = tid;
            j++;
        }
    }
    qsort(pairs, n, 2 * sizeof(uint64_t), qage_cmp);
    struct tq_qage *a = &q->age;
    a->cap = 2 * n;
    a->tid = tq_xalloc(a->cap * sizeof(*a->tid));
    a->ms = tq_xalloc(a->cap * sizeof(*a->ms));
    for (uint32_t i = 0; i < n; i++) {
        a->ms[i] = pairs[2 * i];
        a->tid[i] = (uint32_t)pairs[2 * i + 1];
    }
    a->count = n;
    tq_free(pairs, 2 * (size_t)n * sizeof(uint64_t));
}

void tq_st_qage_free(struct tq_queue *q) {
    struct tq_qage *a = &q->age;
    tq_free(a->tid, a->cap * sizeof(*a->tid));
    tq_free(a->ms, a->cap * sizeof(*a->ms));
    memset(a, 0, sizeof(*a));
}

bool tq_st_qage_check(const struct tq_state *s, uint32_t qid, struct tq_error *error) {
    const struct tq_queue *q = st_queue(s, qid);
    const struct tq_qage *a = &q->age;
    if (a->head > a->count || a->count > a->cap) {
        tq_error_set(error, TQ_ERR_INTERNAL, "queue %u: age index bounds", qid);
        return false;
    }
    if (a->head < a->count && !qage_live(s, qid, a->tid[a->head], a->ms[a->head])) {
        tq_error_set(error, TQ_ERR_INTERNAL, "queue %u: stale age index front", qid);
        return false;
    }
    uint32_t live = 0;
    for (uint32_t i = a->head; i < a->count; i++) {
        if (!a->unsorted && i > a->head && a->ms[i] < a->ms[i - 1]) {
            tq_error_set(error, TQ_ERR_INTERNAL, "queue %u: age index order at %u", qid, i);
            return false;
        }
        if (qage_live(s, qid, a->tid[i], a->ms[i])) live++;
    }
    uint32_t depth = 0;
    uint64_t oldest = 0;
    for (int k = 0; k < TQ_CHANNEL_CLASS_COUNT; k++) {
        depth += q->heap[k].count;
        for (uint32_t i = 0; i < q->heap[k].count; i++) {
            uint64_t at = st_ticket(s, q->heap[k].ids[i])->routing_ms;
            if (oldest == 0 || at < oldest) oldest = at;
        }
    }
    if (live < depth) { /* duplicates may make live > depth, never fewer */
        tq_error_set(error, TQ_ERR_INTERNAL, "queue %u: age index has %u live of %u queued", qid,
                     live, depth);
        return false;
    }
    if (tq_st_qage_oldest(s, qid) != oldest) {
        tq_error_set(error, TQ_ERR_INTERNAL,
                     "queue %u: oldest %" PRIu64 " in the age index, %" PRIu64 " queued", qid,
                     tq_st_qage_oldest(s, qid), oldest);
        return false;
    }
    return true;
}
