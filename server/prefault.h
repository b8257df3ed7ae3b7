/* server/prefault.h: the state's memory helper thread (tq_state_options.prefault, .release).
 *
 * Why: a growing state slab or table touches a fresh 2 MiB huge page every so often, and in a
 * VM the kernel takes milliseconds to zero one; taken on the loop thread, that fault is a long
 * turn (docs/performance-state.md). The state asks ahead of need; this thread populates the
 * pages (madvise MADV_POPULATE_WRITE) while the loop goes on. Likewise the old table an
 * incremental growth has finished copying (46 MB at 10 million messages; its munmap took
 * ~0.3 ms inside one apply) is unmapped here instead of on the loop. */
#ifndef TQ_SERVER_PREFAULT_H
#define TQ_SERVER_PREFAULT_H

#include <stddef.h>
#include <stdint.h>

struct tq_prefaulter;

/* Counts since start (GET /metrics: ticketq_state_prefault_*_total). */
struct tq_prefault_stats {
    uint64_t requests; /* ranges the state asked for */
    uint64_t dropped;  /* of those, refused: the queue was full, or the kernel lacks the madvise */
};

/* Starts the helper thread; NULL (and a note on stderr) if it cannot be started: the state
 * then runs without the hook. Test seam: TICKETQD_TEST_PREFAULT_QUEUE=N (0..64) bounds the
 * queue at N requests (0: every request is dropped). */
struct tq_prefaulter *tq_prefaulter_start(void);

/* The hook (tq_state_prefault_fn; ctx is the prefaulter): queues the range and returns at
 * once; a request that finds the queue full is dropped (the fault then happens on first touch,
 * as without the helper). */
void tq_prefaulter_request(void *ctx, void *addr, size_t len);

/* The release hook (tq_state_release_fn; ctx is the prefaulter): queues the unmap and returns
 * at once; when the queue is full it unmaps the range itself (never dropped). */
void tq_prefaulter_release(void *ctx, void *addr, size_t len);

/* The counts so far; zeros for NULL (no helper). Any thread. */
void tq_prefaulter_stats(struct tq_prefaulter *pf, struct tq_prefault_stats *out);

/* Stops and joins the thread (before tq_state_free unmaps what it may be populating), then
 * unmaps what is still queued for unmapping. NULL is a no-op. */
void tq_prefaulter_stop(struct tq_prefaulter *pf);

#endif
