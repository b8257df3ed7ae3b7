/* tests/server/test_server_prefault.c: the state prefault helper's counters in /metrics.
 *
 * Goal: ticketq_state_prefault_requests_total counts every range the state asks the helper
 * (server/prefault.c) to populate, and ticketq_state_prefault_dropped_total those its full
 * queue refused (before, a drop was silent). Method: two servers get the same INGESTS
 * first-contact ingests (Batches of BATCH_OPS): enough that the ticket, message and customer
 * slabs reach their first huge-page groups (4096 elements a chunk) and ask for pages ahead.
 * One runs with the test seam TICKETQD_TEST_PREFAULT_QUEUE=0 (a queue that holds nothing:
 * every request drops), the other with the default queue of 64.
 * Invariants checked: requests > 0 on both; the same ingests ask for the same number of
 * ranges (what the state asks follows from what it applied); with the empty queue every
 * request is dropped, with the default one none is (a few requests, a helper that drains them
 * at once); both servers exit 0 on SIGTERM (the helper stops and joins).
 */
#include "rawc.h"
#include "tq_fixture.h"
#include "tq_test.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { INGESTS = 6000, BATCH_OPS = 500 };
_Static_assert(INGESTS % BATCH_OPS == 0, "whole batches");

struct prefault_counts {
    uint64_t requests, dropped;
};

/* Starts a server on f (test_queue NULL: the default queue), gives it INGESTS first-contact
 * ingests into a fresh tenant, reads the helper's two counters and stops it. */
static struct prefault_counts run_server(struct tq_fixture *f, const char *test_queue) {
    if (test_queue != NULL) TQ_CHECK_EQ(setenv("TICKETQD_TEST_PREFAULT_QUEUE", test_queue, 1), 0);
    char metrics[64];
    rawc_free_port_addr(metrics, sizeof(metrics));
    f->extra_args[0] = "--metrics";
    f->extra_args[1] = metrics;
    TQ_CHECK_EQ(tq_fixture_start(f), 0);
    rawc_guard_fixture(f);
    TQ_CHECK_EQ(unsetenv("TICKETQD_TEST_PREFAULT_QUEUE"), 0);
    struct rawc admin;
    rawc_open_authed(&admin, f->addr, f->admin_token);
    uint64_t tenant = rawc_tenant_create(&admin, "prefault");
    uint64_t queue = rawc_queue_create(&admin, tenant, "inbox");
    rawc_default_queue(&admin, tenant, TICKETQ__CHANNEL__EMAIL, queue);

    static Ticketq__Ingest ins[BATCH_OPS];
    static Ticketq__Request ops[BATCH_OPS];
    static Ticketq__Request *op_ptrs[BATCH_OPS];
    static char from[BATCH_OPS][40];
    for (uint32_t done = 0; done < INGESTS; done += BATCH_OPS) {
        for (uint32_t k = 0; k < BATCH_OPS; k++) {
            snprintf(from[k], sizeof(from[k]), "c%u@example.com", done + k);
            ins[k] = (Ticketq__Ingest)TICKETQ__INGEST__INIT;
            ins[k].channel = TICKETQ__CHANNEL__EMAIL;
            ins[k].from = from[k];
            ins[k].body = tq_test_mut("where is my order?");
            ops[k] = (Ticketq__Request)TICKETQ__REQUEST__INIT;
            ops[k].op_case = TICKETQ__REQUEST__OP_INGEST;
            ops[k].ingest = &ins[k];
            ops[k].id = k + 1;
            op_ptrs[k] = &ops[k];
        }
        Ticketq__Batch batch = TICKETQ__BATCH__INIT;
        batch.n_ops = BATCH_OPS;
        batch.ops = op_ptrs;
        RAWC_REQ(req, batch, BATCH, &batch);
        req.has_tenant_id = true;
        req.tenant_id = tenant;
        Ticketq__Response *r = rawc_call(&admin, &req);
        RAWC_EXPECT(r, 0);
        TQ_CHECK_EQ(r->batch->n_results, BATCH_OPS);
        for (uint32_t k = 0; k < BATCH_OPS; k++) {
            RAWC_EXPECT(r->batch->results[k], 0);
            TQ_CHECK(r->batch->results[k]->ids->ticket_created);
        }
        rawc_free(r);
    }
    rawc_close(&admin);
    static char text[1 << 18];
    rawc_get_metrics(metrics, text, sizeof(text));
    struct prefault_counts counts = {
        .requests = rawc_metric_value(text, "ticketq_state_prefault_requests_total"),
        .dropped = rawc_metric_value(text, "ticketq_state_prefault_dropped_total"),
    };
    printf("queue %s: %" PRIu64 " prefault requests, %" PRIu64 " dropped\n",
           test_queue != NULL ? test_queue : "default", counts.requests, counts.dropped);
    TQ_CHECK_EQ(tq_fixture_stop(f), 0);
    tq_fixture_cleanup(f);
    return counts;
}

int main(void) {
    static struct tq_fixture fixtures[2]; /* static: the guard may still name them at exit */
    struct prefault_counts none = run_server(&fixtures[0], "0");
    TQ_CHECK_GT(none.requests, 0);
    TQ_CHECK_UEQ(none.dropped, none.requests);
    struct prefault_counts normal = run_server(&fixtures[1], NULL);
    TQ_CHECK_UEQ(normal.requests, none.requests);
    TQ_CHECK_UEQ(normal.dropped, 0);
    printf("test_server_prefault: ok\n");
    return 0;
}
