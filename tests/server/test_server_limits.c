/* tests/server/test_server_limits.c: limits and bad input against a real ticketqd.
 *
 * Goal: a client that breaks the rules gets the documented answer (or is disconnected where
 * it must be) and everyone else is unaffected. Method: one server with small limits
 * (--max-frame 4096 --max-connections 6 --max-inflight 4 --idle-timeout-ms 1500) and a
 * "witness" connection that must keep answering Ping after every abuse. Checks:
 *   oversized frame -> RESOURCE_EXHAUSTED then close; zero-length frame -> INVALID_ARGUMENT
 *   then close; a frame of random bytes -> INVALID_ARGUMENT and the connection stays usable;
 *   unknown fields and an unknown operation -> INVALID_ARGUMENT; a truncated frame followed
 *   by a half-close -> the server just closes; too many connections -> UNAVAILABLE frame then
 *   close; 64 pipelined requests with --max-inflight 4 -> all answered in order
 *   (backpressure, not errors); a client that never reads its responses -> disconnected by
 *   the idle timeout while the witness is served; an idle client -> disconnected; a batch
 *   answers each op on its own (and refuses Auth inside it).
 */
#include "frame.h"
#include "rawc.h"
#include "tq_fixture.h"
#include "tq_test.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct rawc witness;

static void witness_ping(void) {
    Ticketq__Ping p = TICKETQ__PING__INIT;
    RAWC_REQ(req, ping, PING, &p);
    Ticketq__Response *r = rawc_call(&witness, &req);
    RAWC_EXPECT(r, 0);
    rawc_free(r);
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* True if the peer closed within timeout_ms, WITHOUT reading our receive queue. The witness
 * pings meanwhile (it must stay served, and active, since idle connections are closed). */
static bool peer_closed_unread(int fd, int timeout_ms) {
    for (int waited = 0; waited < timeout_ms; waited += 200) {
        struct pollfd pfd = {.fd = fd, .events = POLLRDHUP};
        int n = poll(&pfd, 1, 200);
        if (n > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) return true;
        witness_ping();
    }
    return false;
}

int main(void) {
    uint64_t rng = tq_test_seed("test_server_limits");
    struct tq_fixture f;
    memset(&f, 0, sizeof(f));
    rawc_guard_fixture(&f);
    f.extra_args[0] = "--max-frame";
    f.extra_args[1] = "4096";
    f.extra_args[2] = "--max-connections";
    f.extra_args[3] = "6";
    f.extra_args[4] = "--max-inflight";
    f.extra_args[5] = "4";
    f.extra_args[6] = "--idle-timeout-ms";
    f.extra_args[7] = "1500";
    TQ_CHECK_EQ(tq_fixture_start(&f), 0);
    rawc_open_authed(&witness, f.addr, f.admin_token);
    witness_ping();

    struct rawc c;
    uint8_t frame[8192];
    /* Oversized frame: RESOURCE_EXHAUSTED, then the server closes. */
    TQ_CHECK_EQ(rawc_connect(&c, f.addr), 0);
    put_be32(frame, 5000);
    memset(frame + 4, 0, 5000);
    TQ_CHECK_EQ(rawc_send_raw(&c, frame, 4 + 5000), 0);
    Ticketq__Response *r = rawc_recv(&c, 5000);
    RAWC_EXPECT(r, TICKETQ__ERROR_CODE__RESOURCE_EXHAUSTED);
    TQ_CHECK(strstr(r->error->message, "max-frame") != NULL);
    rawc_free(r);
    TQ_CHECK(rawc_wait_closed(&c, 5000));
    rawc_close(&c);
    witness_ping();

    /* Zero-length frame: INVALID_ARGUMENT, then close. */
    TQ_CHECK_EQ(rawc_connect(&c, f.addr), 0);
    put_be32(frame, 0);
    TQ_CHECK_EQ(rawc_send_raw(&c, frame, 4), 0);
    r = rawc_recv(&c, 5000);
    RAWC_EXPECT(r, TICKETQ__ERROR_CODE__INVALID_ARGUMENT);
    rawc_free(r);
    TQ_CHECK(rawc_wait_closed(&c, 5000));
    rawc_close(&c);

    /* Random bytes in a well-formed frame: INVALID_ARGUMENT, the stream stays usable. */
    TQ_CHECK_EQ(rawc_connect(&c, f.addr), 0);
    for (int i = 0; i < 20; i++) {
        uint32_t n = 1 + (uint32_t)tq_test_rand_below(&rng, 200);
        put_be32(frame, n);
        for (uint32_t k = 0; k < n; k++)
            frame[4 + k] = (uint8_t)tq_test_rand(&rng);
        TQ_CHECK_EQ(rawc_send_raw(&c, frame, 4 + n), 0);
        r = rawc_recv(&c, 5000);
        TQ_CHECK(r != NULL);
        /* Random bytes might decode as a valid Request; then it is unauthenticated. */
        TQ_CHECK(rawc_code(r) == TICKETQ__ERROR_CODE__INVALID_ARGUMENT ||
                 rawc_code(r) == TICKETQ__ERROR_CODE__UNAUTHENTICATED);
        rawc_free(r);
    }
    TQ_CHECK_EQ(rawc_auth(&c, f.admin_token), 0);
    /* Unknown field (number 99, varint) and an unknown operation (field 60, bytes). */
    static const uint8_t unknown_field[] = {0x08, 0x07, 0xb8, 0x06, 0x01, 0x5a, 0x00};
    /* id=7, field 99 varint 1, ping (field 11, empty) */
    put_be32(frame, sizeof(unknown_field));
    memcpy(frame + 4, unknown_field, sizeof(unknown_field));
    TQ_CHECK_EQ(rawc_send_raw(&c, frame, 4 + sizeof(unknown_field)), 0);
    r = rawc_recv(&c, 5000);
    RAWC_EXPECT(r, 0); /* unknown fields are ignored: it is a Ping */
    TQ_CHECK_UEQ(r->id, 7);
    rawc_free(r);
    static const uint8_t unknown_op[] = {0x08, 0x08, 0xe2, 0x03, 0x00}; /* id=8, field 60 */
    put_be32(frame, sizeof(unknown_op));
    memcpy(frame + 4, unknown_op, sizeof(unknown_op));
    TQ_CHECK_EQ(rawc_send_raw(&c, frame, 4 + sizeof(unknown_op)), 0);
    r = rawc_recv(&c, 5000);
    RAWC_EXPECT(r, TICKETQ__ERROR_CODE__INVALID_ARGUMENT);
    TQ_CHECK_UEQ(r->id, 8);
    rawc_free(r);

    /* A batch answers each op; Auth inside a batch is refused, the rest still run. */
    Ticketq__Ping bp = TICKETQ__PING__INIT;
    Ticketq__Auth ba = TICKETQ__AUTH__INIT;
    ba.token = f.admin_token;
    Ticketq__TenantCreate bt = TICKETQ__TENANT_CREATE__INIT;
    bt.name = (char *)(uintptr_t) "batched";
    RAWC_REQ(op1, ping, PING, &bp);
    RAWC_REQ(op2, auth, AUTH, &ba);
    RAWC_REQ(op3, tenant_create, TENANT_CREATE, &bt);
    op1.id = 1;
    op2.id = 2;
    op3.id = 3;
    Ticketq__Request *ops[3] = {&op1, &op2, &op3};
    Ticketq__Batch batch = TICKETQ__BATCH__INIT;
    batch.n_ops = 3;
    batch.ops = ops;
    RAWC_REQ(breq, batch, BATCH, &batch);
    r = rawc_call(&c, &breq);
    RAWC_EXPECT(r, 0);
    TQ_CHECK_EQ(r->batch->n_results, 3);
    RAWC_EXPECT(r->batch->results[0], 0);
    RAWC_EXPECT(r->batch->results[1], TICKETQ__ERROR_CODE__INVALID_ARGUMENT);
    RAWC_EXPECT(r->batch->results[2], 0);
    TQ_CHECK(r->batch->results[2]->ids->tenant_id > 0);
    rawc_free(r);

    /* Pipelining beyond --max-inflight: everything is answered, in order. */
    for (int i = 0; i < 64; i++) {
        Ticketq__Ping p = TICKETQ__PING__INIT;
        RAWC_REQ(req, ping, PING, &p);
        req.id = 1000 + (uint64_t)i;
        TQ_CHECK(rawc_send(&c, &req) != 0);
    }
    for (int i = 0; i < 64; i++) {
        r = rawc_recv(&c, 5000);
        RAWC_EXPECT(r, 0);
        TQ_CHECK_UEQ(r->id, 1000 + (uint64_t)i);
        rawc_free(r);
    }
    rawc_close(&c);

    /* Truncated frame then half-close: the server closes, nothing else happens. */
    TQ_CHECK_EQ(rawc_connect(&c, f.addr), 0);
    put_be32(frame, 100);
    TQ_CHECK_EQ(rawc_send_raw(&c, frame, 4 + 50), 0);
    shutdown(c.fd, SHUT_WR);
    TQ_CHECK(rawc_wait_closed(&c, 5000));
    rawc_close(&c);
    witness_ping();

    /* Connection limit (6): the witness + 5 more; the 7th gets UNAVAILABLE then close. */
    struct rawc many[5];
    for (int i = 0; i < 5; i++)
        rawc_open_authed(&many[i], f.addr, f.admin_token);
    TQ_CHECK_EQ(rawc_connect(&c, f.addr), 0);
    r = rawc_recv(&c, 5000);
    RAWC_EXPECT(r, TICKETQ__ERROR_CODE__UNAVAILABLE);
    rawc_free(r);
    TQ_CHECK(rawc_wait_closed(&c, 5000));
    rawc_close(&c);
    for (int i = 0; i < 5; i++)
        rawc_close(&many[i]);
    witness_ping();

    /* A client that never reads its responses: it is disconnected (idle timeout: neither
     * its requests nor its responses make progress), the witness is served meanwhile. */
    struct rawc slow;
    TQ_CHECK_EQ(rawc_connect_rcvbuf(&slow, f.addr, 4096), 0);
    TQ_CHECK_EQ(rawc_auth(&slow, f.admin_token), 0);
    Ticketq__Stats so = TICKETQ__STATS__INIT; /* a large-ish response */
    RAWC_REQ(sreq, stats, STATS, &so);
    uint8_t one[256];
    sreq.id = 1;
    size_t one_len = tq_frame_pack(&sreq.base, one, sizeof(one));
    TQ_CHECK_GT(one_len, 0);
    size_t sent_frames = 0;
    for (int i = 0; i < 20000; i++) {
        ssize_t n = send(slow.fd, one, one_len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) break; /* the server stopped reading: backpressure reached us */
        TQ_CHECK_EQ(n, (ssize_t)one_len);
        sent_frames++;
    }
    TQ_CHECK_GT(sent_frames, 4);
    witness_ping();
    TQ_CHECK(peer_closed_unread(slow.fd, 15000));
    rawc_close(&slow);
    witness_ping();

    /* An idle client is disconnected; the witness (active) is not. */
    rawc_open_authed(&c, f.addr, f.admin_token);
    for (int i = 0; i < 4; i++) {
        struct timespec ts = {0, 500 * 1000000L};
        nanosleep(&ts, NULL);
        witness_ping();
    }
    TQ_CHECK(rawc_wait_closed(&c, 10000));
    rawc_close(&c);
    witness_ping();
    rawc_close(&witness);
    TQ_CHECK_EQ(tq_fixture_stop(&f), 0);
    tq_fixture_cleanup(&f);
    printf("test_server_limits: ok\n");
    return 0;
}
