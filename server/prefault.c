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
    struct tq_prefault_stats stats; /* under mu */
};

/* Populates [p, p + len) a huge page at a time; false once the kernel lacks the madvise. */
static bool populate(uint8_t *p, size_t len) {
    /* ENOMEM: the range was unmapped meanwhile (a table that regrew); populating writes
     * nothing, so a range reused by another mapping is harmless too. */
    for (size_t off = 0; off < len; off += PREFAULT_STEP) {
        size_t n = len - off < PREFAULT_STEP ? len - off : PREFAULT_STEP;
        if (madvise(p + off, n, MADV_POPULATE_WRITE) != 0 && errno == EINVAL) {
            fprintf(stderr, "ticketqd: state prefault: MADV_POPULATE_WRITE unsupported; "
                            "populating stops\n");
            return false;
        }
    }
    return true;
}

/* A range the state released: its own 2 MiB-aligned mapping, so munmap cannot fail. */
static void unmap(void *p, size_t len) {
    int rc = munmap(p, len);
    TQ_ASSERT(rc == 0);
}

static void *helper_main(void *arg) {
    struct tq_prefaulter *pf = arg;
    bool supported = true;
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
        } else if (supported) {
            supported = populate(r.p, r.len);
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
        long n = strtol(test_queue, NULL, 10);
        if (n >= 0 && n < (long)PREFAULT_QUEUE) pf->queue_max = (uint32_t)n;
    }
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
    if (pf->count < pf->queue_max) {
        pf->queue[(pf->head + pf->count) % PREFAULT_QUEUE] = (struct range){addr, len, false};
        pf->count++;
        pthread_cond_signal(&pf->cv);
    } else {
        pf->stats.dropped++; /* the loop takes the fault on first touch, as without a helper */
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
