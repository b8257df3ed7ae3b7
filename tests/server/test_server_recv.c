/* tests/server/test_server_recv.c: both receive paths of ticketqd (--recv single|multishot).
 *
 * Goal: the multishot recv with its provided-buffer ring and the single-shot fallback give the
 * same answers, and the knob really selects the path. Method: for each mode, one server with
 * --max-inflight 4 and a metrics listener; checks, in order:
 *   /metrics reports the mode (ticketq_recv_multishot 1 or 0);
 *   3000 Pings pipelined in one write (about 3x the ring's 16 KiB buffers, frames straddling
 *   buffer boundaries, far over --max-inflight) are all answered, in order;
 *   a 100 KiB frame that spans several ring buffers (payload 0xff: not a valid Request)
 *   answers INVALID_ARGUMENT and the same stream then answers a Ping;
 *   16 clients that send half a frame and vanish (half of them with a reset) while their
 *   receive is armed do not disturb a witness;
 *   in multishot mode the in-flight bound paused the recv (ticketq_recv_pauses_total > 0; in
 *   single-shot mode it stays 0: the fallback pauses by not re-arming);
 *   with --recv-buffers 2 the ring runs dry under that burst (ticketq_recv_nobufs_total > 0)
 *   and everything is still answered, in order (the recv is re-armed later, no spin);
 *   the loop's turn metrics add up: ticketq_turn_seconds counted turns between the two reads
 *   (its +Inf bucket equals its count), and 0 < ticketq_turn_max_seconds <= the sum of turns;
 *   ticketq_request_phase_seconds splits every answer's latency into its two phases (counts
 *   equal to ticketq_request_seconds', sums adding up);
 *   SIGTERM exits 0 (under ASan: no leak, nothing freed under a pending SQE).
 * One more multishot run adds --idle-poll-us 200 (the loop spins on its completion queue
 * before blocking): everything above still holds, and /metrics counts the spins
 * (ticketq_idle_poll_hits_total + _misses_total > 0; both 0 in the runs without it).
 */
#include "frame.h"
#include "rawc.h"
#include "tq_fixture.h"
#include "tq_test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { PIPELINED = 3000, BIG_PAYLOAD_BYTES = 100 * 1024, VANISHING = 16 };

/* A metric whose value is not an integer (seconds). */
static double metric_double(const char *text, const char *name) {
    char needle[128];
    snprintf(needle, sizeof(needle), "\n%s ", name);
    const char *p = strstr(text, needle);
    TQ_CHECK(p != NULL);
    return strtod(p + strlen(needle), NULL);
}

static void ping_ok(struct rawc *c) {
    Ticketq__Ping p = TICKETQ__PING__INIT;
    RAWC_REQ(req, ping, PING, &p);
    Ticketq__Response *r = rawc_call(c, &req);
    RAWC_EXPECT(r, 0);
    rawc_free(r);
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ring_buffers: --recv-buffers, or NULL for the default. With "2" the ring must run dry
 * (-ENOBUFS, counted) under the pipelined burst, and every request is still answered. */
static void run_mode(const char *mode, const char *ring_buffers, const char *idle_poll_us,
                     uint64_t *rng) {
    bool multishot = strcmp(mode, "multishot") == 0;
    fprintf(stderr, "test_server_recv: --recv %s --recv-buffers %s --idle-poll-us %s\n", mode,
            ring_buffers ? ring_buffers : "(default)", idle_poll_us ? idle_poll_us : "(default)");
    char metrics_addr[64];
    rawc_free_port_addr(metrics_addr, sizeof(metrics_addr));
    static struct tq_fixture f; /* static: the exit guard keeps a pointer to it */
    memset(&f, 0, sizeof(f));
    rawc_guard_fixture(&f);
    f.extra_args[0] = "--recv";
    f.extra_args[1] = mode;
    f.extra_args[2] = "--max-inflight";
    f.extra_args[3] = "4";
    f.extra_args[4] = "--metrics";
    f.extra_args[5] = metrics_addr;
    size_t argi = 6;
    if (ring_buffers != NULL) {
        f.extra_args[argi++] = "--recv-buffers";
        f.extra_args[argi++] = ring_buffers;
    }
    if (idle_poll_us != NULL) {
        f.extra_args[argi++] = "--idle-poll-us";
        f.extra_args[argi++] = idle_poll_us;
    }
    TQ_CHECK(argi < TQ_FIXTURE_ARGS_MAX);
    TQ_CHECK_EQ(tq_fixture_start(&f), 0);

    static char text[256 * 1024];
    rawc_get_metrics(metrics_addr, text, sizeof(text));
    TQ_CHECK_UEQ(rawc_metric_value(text, "ticketq_recv_multishot"), multishot ? 1 : 0);
    uint64_t turns_before = rawc_metric_value(text, "ticketq_turn_seconds_count");

    struct rawc witness, c;
    rawc_open_authed(&witness, f.addr, f.admin_token);
    rawc_open_authed(&c, f.addr, f.admin_token);

    /* Deep pipelining in one write; ids from a seeded base so a stale answer cannot match. */
    static uint8_t many[PIPELINED * 24];
    size_t len = 0;
    uint64_t base = 1000 + tq_test_rand_below(rng, 1u << 30);
    for (uint64_t i = 0; i < PIPELINED; i++) {
        Ticketq__Ping p = TICKETQ__PING__INIT;
        RAWC_REQ(req, ping, PING, &p);
        req.id = base + i;
        size_t n = tq_frame_pack(&req.base, many + len, sizeof(many) - len);
        TQ_CHECK(n > 0);
        len += n;
    }
    TQ_CHECK(len > 2 * 16384); /* spans several ring buffers */
    TQ_CHECK_EQ(rawc_send_raw(&c, many, len), 0);
    for (uint64_t i = 0; i < PIPELINED; i++) {
        Ticketq__Response *r = rawc_recv(&c, 10000);
        RAWC_EXPECT(r, 0);
        TQ_CHECK_UEQ(r->id, base + i);
        rawc_free(r);
    }

    /* A frame larger than several ring buffers, then a Ping on the same stream. */
    static uint8_t big[4 + BIG_PAYLOAD_BYTES];
    put_be32(big, BIG_PAYLOAD_BYTES);
    memset(big + 4, 0xff, BIG_PAYLOAD_BYTES);
    TQ_CHECK_EQ(rawc_send_raw(&c, big, sizeof(big)), 0);
    Ticketq__Response *r = rawc_recv(&c, 10000);
    RAWC_EXPECT(r, TICKETQ__ERROR_CODE__INVALID_ARGUMENT);
    rawc_free(r);
    ping_ok(&c);

    /* Clients that vanish in the middle of a frame while their receive is armed. */
    for (int i = 0; i < VANISHING; i++) {
        struct rawc v;
        TQ_CHECK_EQ(rawc_connect(&v, f.addr), 0);
        uint8_t half[4 + 8];
        put_be32(half, 64);
        memset(half + 4, 0x08, 8);
        TQ_CHECK_EQ(rawc_send_raw(&v, half, sizeof(half)), 0);
        if (tq_test_rand_below(rng, 2) == 0) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(v.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        rawc_close(&v);
        ping_ok(&witness);
    }
    ping_ok(&c);

    rawc_get_metrics(metrics_addr, text, sizeof(text));
    uint64_t pauses = rawc_metric_value(text, "ticketq_recv_pauses_total");
    if (multishot) {
        TQ_CHECK(pauses > 0);
    } else {
        TQ_CHECK_UEQ(pauses, 0);
    }
    TQ_CHECK_UEQ(rawc_metric_value(text, "ticketq_recv_multishot"), multishot ? 1 : 0);
    uint64_t turns = rawc_metric_value(text, "ticketq_turn_seconds_count");
    TQ_CHECK(turns > turns_before); /* thousands of requests were answered in between */
    TQ_CHECK_UEQ(rawc_metric_value(text, "ticketq_turn_seconds_bucket{le=\"+Inf\"}"), turns);
    double turn_max = metric_double(text, "ticketq_turn_max_seconds");
    TQ_CHECK(turn_max > 0);
    TQ_CHECK(turn_max <= metric_double(text, "ticketq_turn_seconds_sum"));
    (void)rawc_check_request_phases(text); /* every answer's latency split in two, exactly */
    uint64_t nobufs = rawc_metric_value(text, "ticketq_recv_nobufs_total");
    if (multishot && ring_buffers != NULL && strcmp(ring_buffers, "2") == 0) {
        TQ_CHECK(nobufs > 0);
    } else if (!multishot) {
        TQ_CHECK_UEQ(nobufs, 0);
    }

    uint64_t spins = rawc_metric_value(text, "ticketq_idle_poll_hits_total") +
                     rawc_metric_value(text, "ticketq_idle_poll_misses_total");
    if (idle_poll_us != NULL) {
        TQ_CHECK(spins > 0); /* clients were connected: every blocking wait spun first */
    } else {
        TQ_CHECK_UEQ(spins, 0);
    }

    rawc_close(&c);
    rawc_close(&witness);
    TQ_CHECK_EQ(tq_fixture_stop(&f), 0);
    tq_fixture_cleanup(&f);
}

int main(void) {
    uint64_t rng = tq_test_seed("test_server_recv");
    run_mode("multishot", NULL, NULL, &rng);
    run_mode("multishot", "2", NULL, &rng);
    run_mode("single", NULL, NULL, &rng);
    run_mode("multishot", NULL, "200", &rng);
    fprintf(stderr, "test_server_recv: ok\n");
    return 0;
}
