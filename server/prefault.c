/* server/prefault.c: the state's prefault helper thread (prefault.h). */
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

static void *helper_main(void *arg) {
    struct tq_prefaulter *pf = arg;
    bool supported = true;
    pthread_mutex_lock(&pf->mu);
    for (;;) {
        while (pf->count == 0 && !pf->stop)
            pthread_cond_wait(&pf->cv, &pf->mu);
        if (pf->stop) break;
        struct range r = pf->queue[pf->head];
        pf->head = (pf->head + 1) % PREFAULT_QUEUE;
        pf->count--;
        pthread_mutex_unlock(&pf->mu);
        /* ENOMEM: the range was unmapped meanwhile (a table that regrew); populating writes
         * nothing, so a range reused by another mapping is harmless too. */
        for (size_t off = 0; supported && off < r.len; off += PREFAULT_STEP) {
            size_t n = r.len - off < PREFAULT_STEP ? r.len - off : PREFAULT_STEP;
            if (madvise(r.p + off, n, MADV_POPULATE_WRITE) != 0 && errno == EINVAL) {
                fprintf(stderr, "ticketqd: state prefault: MADV_POPULATE_WRITE unsupported; "
                                "helper idle\n");
                supported = false;
            }
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
        pf->queue[(pf->head + pf->count) % PREFAULT_QUEUE] = (struct range){addr, len};
        pf->count++;
        pthread_cond_signal(&pf->cv);
    } else {
        pf->stats.dropped++; /* the loop takes the fault on first touch, as without a helper */
    }
    pthread_mutex_unlock(&pf->mu);
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
    pthread_cond_destroy(&pf->cv);
    pthread_mutex_destroy(&pf->mu);
    tq_free(pf, sizeof(*pf));
}
