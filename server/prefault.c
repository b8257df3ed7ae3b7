/* server/prefault.c: the state's memory helper thread (prefault.h).
 *
 * One FIFO queue of requests from the loop thread: populate a range ahead of the state's
 * growth, or unmap one the state gave up. FIFO keeps a range's populate (asked for when it was
 * a spare) ahead of its unmap (years later in apply terms). A populate that finds the queue
 * full is dropped (counted); an unmap never is: the loop then unmaps it itself, as the state
 * did before the release hook, so memory is never leaked and the queue stays bounded. */
#include "prefault.h"

#include "tq_alloc.h"
#include "tq_assert.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

#define PREFAULT_QUEUE 64u        /* requests pending; the state makes a few per second */
#define PREFAULT_STEP  (2u << 20) /* one huge page per madvise: short mmap_lock holds */
/* Test seam (prefault.h): a smaller queue bound, so that a test can make requests drop. */
#define TEST_QUEUE_ENV "TICKETQD_TEST_PREFAULT_QUEUE"

struct range {
    uint8_t *p;
    size_t len;
    bool unmap; /* else populate */
};

struct tq_prefaulter {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct range queue[PREFAULT_QUEUE];
    uint32_t queue_max;             /* PREFAULT_QUEUE, or less with TEST_QUEUE_ENV */
    uint32_t head, count;           /* under mu */
    bool stop;                      /* under mu */
    bool supported;                 /* MADV_POPULATE_WRITE works (set before the thread) */
    struct tq_prefault_stats stats; /* under mu */
};

/* Populates [p, p + len) a huge page at a time. Errors are ignored: support was probed at start
 * (probe_populate), so an error here is a range that changed since it was asked for: ENOMEM once
 * it is unmapped (a spare freed, a table that regrew), EINVAL once its addresses were reused by
 * a PROT_NONE reservation (an array's, a thread stack's guard). Populating writes nothing, so a
 * range reused by another writable mapping costs at most its memory being faulted in early. */
static void populate(uint8_t *p, size_t len) {
    for (size_t off = 0; off < len; off += PREFAULT_STEP) {
        size_t n = len - off < PREFAULT_STEP ? len - off : PREFAULT_STEP;
        (void)madvise(p + off, n, MADV_POPULATE_WRITE);
    }
}

/* Whether the kernel has MADV_POPULATE_WRITE (Linux 5.14), tried on a private page of our own. */
static bool probe_populate(void) {
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return false;
    bool ok = madvise(p, 4096, MADV_POPULATE_WRITE) == 0;
    munmap(p, 4096);
    if (!ok)
        fprintf(stderr, "ticketqd: state prefault: MADV_POPULATE_WRITE unsupported; the loop "
                        "takes the state's page faults itself (populate requests count as "
                        "dropped)\n");
    return ok;
}

/* A range the state released: its own 2 MiB-aligned mapping, so munmap cannot fail. */
static void unmap(void *p, size_t len) {
    int rc = munmap(p, len);
    TQ_ASSERT(rc == 0);
}

static void *helper_main(void *arg) {
    struct tq_prefaulter *pf = arg;
    pthread_mutex_lock(&pf->mu);
    for (;;) {
        while (pf->count == 0 && !pf->stop)
            pthread_cond_wait(&pf->cv, &pf->mu);
        if (pf->stop) break; /* unmaps still queued: tq_prefaulter_stop does them */
        struct range r = pf->queue[pf->head];
        pf->head = (pf->head + 1) % PREFAULT_QUEUE;
        pf->count--;
        pthread_mutex_unlock(&pf->mu);
        if (r.unmap) {
            unmap(r.p, r.len);
        } else {
            populate(r.p, r.len);
        }
        pthread_mutex_lock(&pf->mu);
    }
    pthread_mutex_unlock(&pf->mu);
    return NULL;
}

struct tq_prefaulter *tq_prefaulter_start(void) {
    struct tq_prefaulter *pf = tq_xcalloc(1, sizeof(*pf));
    pthread_mutex_init(&pf->mu, NULL);
    pthread_cond_init(&pf->cv, NULL);
    pf->queue_max = PREFAULT_QUEUE;
    const char *test_queue = getenv(TEST_QUEUE_ENV);
    if (test_queue != NULL && test_queue[0] != '\0') {
        char *end;
        long n = strtol(test_queue, &end, 10);
        if (*end == '\0' && n >= 0 && n < (long)PREFAULT_QUEUE)
            pf->queue_max = (uint32_t)n;
        else
            fprintf(stderr, "ticketqd: %s=%s ignored (expected 0..%u)\n", TEST_QUEUE_ENV,
                    test_queue, PREFAULT_QUEUE - 1);
    }
    pf->supported = probe_populate();
    if (pthread_create(&pf->thread, NULL, helper_main, pf) != 0) {
        fprintf(stderr, "ticketqd: state prefault: cannot start the helper thread\n");
        pthread_cond_destroy(&pf->cv);
        pthread_mutex_destroy(&pf->mu);
        tq_free(pf, sizeof(*pf));
        return NULL;
    }
    return pf;
}

void tq_prefaulter_request(void *ctx, void *addr, size_t len) {
    struct tq_prefaulter *pf = ctx;
    pthread_mutex_lock(&pf->mu);
    pf->stats.requests++;
    if (pf->supported && pf->count < pf->queue_max) {
        pf->queue[(pf->head + pf->count) % PREFAULT_QUEUE] = (struct range){addr, len, false};
        pf->count++;
        pthread_cond_signal(&pf->cv);
    } else {
        pf->stats.dropped++; /* full, or no populate: the loop takes the faults on first touch */
    }
    pthread_mutex_unlock(&pf->mu);
}

void tq_prefaulter_release(void *ctx, void *addr, size_t len) {
    struct tq_prefaulter *pf = ctx;
    TQ_ASSERT(addr != NULL && len > 0);
    pthread_mutex_lock(&pf->mu);
    bool queued = pf->count < pf->queue_max;
    if (queued) {
        pf->queue[(pf->head + pf->count) % PREFAULT_QUEUE] = (struct range){addr, len, true};
        pf->count++;
        pthread_cond_signal(&pf->cv);
    }
    pthread_mutex_unlock(&pf->mu);
    if (!queued) unmap(addr, len); /* here, on the loop: never dropped */
}

void tq_prefaulter_stats(struct tq_prefaulter *pf, struct tq_prefault_stats *out) {
    if (pf == NULL) {
        *out = (struct tq_prefault_stats){0};
        return;
    }
    pthread_mutex_lock(&pf->mu);
    *out = pf->stats;
    pthread_mutex_unlock(&pf->mu);
    TQ_ASSERT(out->dropped <= out->requests);
}

void tq_prefaulter_stop(struct tq_prefaulter *pf) {
    if (pf == NULL) return;
    pthread_mutex_lock(&pf->mu);
    pf->stop = true;
    pthread_cond_signal(&pf->cv);
    pthread_mutex_unlock(&pf->mu);
    pthread_join(pf->thread, NULL);
    for (uint32_t i = 0; i < pf->count; i++) { /* the unmaps it had not reached */
        const struct range *r = &pf->queue[(pf->head + i) % PREFAULT_QUEUE];
        if (r->unmap) unmap(r->p, r->len);
    }
    pthread_cond_destroy(&pf->cv);
    pthread_mutex_destroy(&pf->mu);
    tq_free(pf, sizeof(*pf));
}
