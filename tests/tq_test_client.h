/* tests/tq_test_client.h: libticketq helpers shared by the tests that talk to a real ticketqd. */
#ifndef TQ_TEST_CLIENT_H
#define TQ_TEST_CLIENT_H

#include "ticketq.h"
#include "tq_test.h"

/* Connects with token (30 s I/O timeout); a failure fails the test. */
static inline struct tq_client *tq_test_connect(const char *addr, const char *token,
                                                struct tq_error *err) {
    struct tq_client_options o = {.addr = addr, .token = token, .io_timeout_ms = 30000};
    struct tq_client *c = NULL;
    TQ_CHECK_OK(tq_client_connect(&o, &c, err), err);
    return c;
}

#endif
