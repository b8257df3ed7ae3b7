/* tests/server/rawc.h: a tiny raw-socket client for the server tests.
 *
 * Deliberately independent of libticketq: the server tests must be able to send anything
 * (garbage, truncated frames, oversized prefixes) and observe exactly what comes back. Frames
 * are protobuf-c Requests/Responses with the 4-byte big-endian length prefix (proto/frame.h).
 * Every wait is bounded (timeouts), so a broken server fails a test instead of hanging it.
 */
#ifndef TQ_TESTS_SERVER_RAWC_H
#define TQ_TESTS_SERVER_RAWC_H

#include "ticketq.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rawc {
    int fd;
    uint64_t next_id;
    uint8_t *buf; /* received, not yet consumed bytes */
    size_t len, cap;
};

/* Connects to "HOST:PORT" or a Unix socket path ("/..."). 0 or -1. */
int rawc_connect(struct rawc *c, const char *addr);
/* The same with SO_RCVBUF set to rcvbuf bytes before connecting (TCP only; 0 = default). */
int rawc_connect_rcvbuf(struct rawc *c, const char *addr, int rcvbuf);
void rawc_close(struct rawc *c);
/* Sends raw bytes (all of them, blocking up to 10 s). 0 or -1. */
int rawc_send_raw(struct rawc *c, const void *bytes, size_t len);
/* Packs and sends a request (assigns req->id from next_id when 0). Returns the id or 0. */
uint64_t rawc_send(struct rawc *c, Ticketq__Request *req);
/* Receives one response (caller frees with rawc_free), NULL on EOF, error or timeout. */
Ticketq__Response *rawc_recv(struct rawc *c, int timeout_ms);
void rawc_free(Ticketq__Response *resp);
/* send + recv (10 s timeout); the response's id is checked against the request's. */
Ticketq__Response *rawc_call(struct rawc *c, Ticketq__Request *req);
/* True if the server closes the connection within timeout_ms (reads and drops any frames). */
bool rawc_wait_closed(struct rawc *c, int timeout_ms);
/* Error code of a response (0 = OK). */
int rawc_code(const Ticketq__Response *resp);

/* Fails the test (printing the server's message) unless resp has the given code. */
void rawc_expect_at(const Ticketq__Response *resp, int code, const char *file, int line);
#define RAWC_EXPECT(resp, code) rawc_expect_at((resp), (code), __FILE__, __LINE__)

/* Auth; returns the error code (0 = OK). */
int rawc_auth(struct rawc *c, const char *token);
/* Convenience for tests: connect + auth, abort the test on failure. */
void rawc_open_authed(struct rawc *c, const char *addr, const char *token);

/* Admin helpers (abort the test on failure); tenant_id 0 = none. */
uint64_t rawc_tenant_create(struct rawc *admin, const char *name);
/* Issues a token; returns its id and copies the secret into secret_out (cap >= 80). */
uint64_t rawc_token_issue(struct rawc *c, uint64_t tenant_id, Ticketq__Role role, uint64_t agent_id,
                          char *secret_out);
uint64_t rawc_agent_create(struct rawc *c, uint64_t tenant_id, const char *name);
uint64_t rawc_queue_create(struct rawc *c, uint64_t tenant_id, const char *name);
/* Makes queue_id the tenant's default queue for channel (TenantSettings; checked). */
void rawc_default_queue(struct rawc *c, uint64_t tenant_id, Ticketq__Channel channel,
                        uint64_t queue_id);

/* "127.0.0.1:PORT" of a loopback port that was free a moment ago (for --metrics). */
void rawc_free_port_addr(char *out, size_t cap);
/* The text ticketqd serves at GET /metrics on addr ("HOST:PORT"), NUL-terminated. */
void rawc_get_metrics(const char *addr, char *out, size_t cap);
/* Value of the unlabelled metric line "NAME VALUE" in text; fails the test if absent. */
uint64_t rawc_metric_value(const char *text, const char *name);
/* The sum of every sample whose line starts with prefix followed by '{' or ' ' (all label
 * sets of one series, e.g. "ticketq_request_seconds_sum"), as a double; fails the test when
 * there is none. */
double rawc_metric_sum(const char *text, const char *prefix);
/* Checks that the parse-to-release latency of every response is split exactly into its two
 * phases (ticketq_request_phase_seconds: counts equal, sums add up) and returns the to_ack
 * phase's sum in seconds. */
double rawc_check_request_phases(const char *text);

struct tq_fixture;
/* Makes a failing test (exit via TQ_CHECK) kill -9 the fixture's server instead of leaving
 * it running; the data directory is kept and named for debugging. One fixture per test. */
void rawc_guard_fixture(struct tq_fixture *f);

/* Builds a request with the given op set (the op pointer must outlive the call). */
#define RAWC_REQ(var, field, CASE, op_ptr)                                                         \
    Ticketq__Request var = TICKETQ__REQUEST__INIT;                                                 \
    var.op_case = TICKETQ__REQUEST__OP_##CASE;                                                     \
    var.field = (op_ptr)

#endif
