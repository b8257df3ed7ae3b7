/* server/prefault.h: the state's prefault helper thread (tq_state_options.prefault).
 *
 * Why: a growing state slab or table touches a fresh 2 MiB huge page every so often, and in a
 * VM the kernel takes milliseconds to zero one; taken on the loop thread, that fault is a long
 * turn (docs/performance-state.md). The state asks ahead of need; this thread populates the
 * pages (madvise MADV_POPULATE_WRITE) while the loop goes on. */
#ifndef TQ_SERVER_PREFAULT_H
#define TQ_SERVER_PREFAULT_H

#include <stddef.h>

struct tq_prefaulter;

/* Starts the helper thread; NULL (and a note on stderr) if it cannot be started: the state
 * then runs without the hook. */
struct tq_prefaulter *tq_prefaulter_start(void);

/* The hook (tq_state_prefault_fn; ctx is the prefaulter): queues the range and returns at
 * once; a request that finds the queue full is dropped (the fault then happens on first touch,
 * as without the helper). */
void tq_prefaulter_request(void *ctx, void *addr, size_t len);

/* Stops and joins the thread (before tq_state_free unmaps what it may be populating). NULL is
 * a no-op. */
void tq_prefaulter_stop(struct tq_prefaulter *pf);

#endif
