/* tests/client/test_client_fake.c: libticketq against a scripted fake server (no ticketqd).
 *
 * Goal: prove the client's framing, id matching, pipelining, batch and subscription logic and
 * every local error path, independently of the real server. Method: a forked fake server on a
 * Unix socket (one forked handler per connection) decodes each Request and answers from a
 * script keyed by the operation and its arguments: normal answers, server errors, garbage
 * frames, oversized prefixes, silence and hang-ups; for subscriptions it interleaves event
 * frames with the answers to other requests. Its socket buffers are shrunk so that 1000
 * pipelined 2 KiB requests cannot be written without reading responses meanwhile.
 *
 * Invariants checked: responses come back with the ids of their requests, in order; a
 * response's content is the one for its request (the fake echoes the body); server errors
 * keep the client usable while transport errors break it for good; every error code the
 * header promises for these cases is the one returned; events arrive in LSN order and none
 * is lost when a blocking call runs on the subscribed connection.
 */
#include "frame.h"
#include "ticketq.h"
#include "tq_alloc.h"
#include "tq_assert.h"
#include "tq_test.h"

#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define BODY_BYTES     2048
#define PIPELINE_COUNT 1000

static char sock_path[100];

/* The generated structs hold char * for strings nobody writes. */
static char token_ok[] = "good-token";

/* ---- the fake server ------------------------------------------------------------------- */

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static void send_response(int fd, Ticketq__Response *resp) {
    size_t size = tq_frame_size(&resp->base);
    uint8_t *buf = malloc(size);
    TQ_CHECK(buf != NULL);
    TQ_CHECK_UEQ(tq_frame_pack(&resp->base, buf, size), size);
    if (write_all(fd, buf, size) != 0) _exit(0);
    free(buf);
}

static void send_error(int fd, uint64_t id, Ticketq__ErrorCode code, const char *msg) {
    Ticketq__Error e = TICKETQ__ERROR__INIT;
    e.code = code;
    e.message = tq_test_mut(msg);
    Ticketq__Response resp = TICKETQ__RESPONSE__INIT;
    resp.id = id;
    resp.error = &e;
    send_response(fd, &resp);
}

/* An EventBatch of lsns [first, first + count) on the subscription id. */
static void send_events(int fd, uint64_t sub_id, uint64_t first, size_t count) {
    Ticketq__Event events[8], *ptrs[8];
    TQ_CHECK(count <= 8);
    for (size_t i = 0; i < count; i++) {
        ticketq__event__init(&events[i]);
        events[i].type = TICKETQ__EVENT_TYPE__TICKET_CREATED;
        events[i].lsn = first + i;
        events[i].has_ticket_id = 1;
        events[i].ticket_id = 100 + first + i;
        ptrs[i] = &events[i];
    }
    Ticketq__EventBatch batch = TICKETQ__EVENT_BATCH__INIT;
    batch.n_events = count;
    batch.events = ptrs;
    Ticketq__Response resp = TICKETQ__RESPONSE__INIT;
    resp.id = sub_id;
    resp.result_case = TICKETQ__RESPONSE__RESULT_EVENTS;
    resp.events = &batch;
    send_response(fd, &resp);
}

static void serve_request(int fd, const Ticketq__Request *req, uint64_t *sub_id) {
    Ticketq__Response resp = TICKETQ__RESPONSE__INIT;
    resp.id = req->id;
    switch (req->op_case) {
    case TICKETQ__REQUEST__OP_AUTH: {
        if (strcmp(req->auth->token, token_ok) != 0) {
            send_error(fd, req->id, TICKETQ__ERROR_CODE__UNAUTHENTICATED, "unknown token");
            return;
        }
        Ticketq__AuthResult a = TICKETQ__AUTH_RESULT__INIT;
        a.role = TICKETQ__ROLE__TENANT_ADMIN;
        a.has_tenant_id = 1;
        a.tenant_id = 7;
        a.has_token_id = 1;
        a.token_id = 3;
        resp.result_case = TICKETQ__RESPONSE__RESULT_AUTH;
        resp.auth = &a;
        send_response(fd, &resp);
        return;
    }
    case TICKETQ__REQUEST__OP_INGEST: {
        Ticketq__Ids ids = TICKETQ__IDS__INIT;
        ids.has_ticket_id = 1;
        ids.ticket_id = req->id;
        ids.has_customer_id = req->has_tenant_id; /* echo of the acting tenant */
        ids.customer_id = req->tenant_id;
        ids.token_secret = req->ingest->body; /* echo: proves which request this answers */
        resp.has_lsn = 1;
        resp.lsn = req->id * 10;
        resp.result_case = TICKETQ__RESPONSE__RESULT_IDS;
        resp.ids = &ids;
        send_response(fd, &resp);
        return;
    }
    case TICKETQ__REQUEST__OP_TICKET_GET: {
        uint64_t t = req->ticket_get->ticket_id;
        if (t == 999) {
            send_error(fd, req->id, TICKETQ__ERROR_CODE__NOT_FOUND, "ticket 999");
        } else if (t == 666) {
            static const uint8_t garbage[] = {0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff};
            if (write_all(fd, garbage, sizeof(garbage)) != 0) _exit(0);
        } else if (t == 555) {
            static const uint8_t huge[] = {0x7f, 0, 0, 0};
            if (write_all(fd, huge, sizeof(huge)) != 0) _exit(0);
        } else if (t == 777) {
            /* seeded garbage, sometimes behind a plausible length prefix, then hang up */
            uint64_t rng = req->ticket_get->message_offset;
            uint8_t junk[512];
            size_t n = 1 + tq_test_rand_below(&rng, sizeof(junk));
            for (size_t i = 0; i < n; i++)
                junk[i] = (uint8_t)tq_test_rand(&rng);
            if (n > 8 && tq_test_rand_below(&rng, 2) == 0)
                tq_frame_put_prefix(junk, (uint32_t)(n - 4));
            if (write_all(fd, junk, n) != 0) _exit(0);
            close(fd);
            _exit(0);
        } else if (t == 444) {
            /* silence */
        } else if (t == 333) {
            close(fd);
            _exit(0);
        } else {
            Ticketq__Ticket tk = TICKETQ__TICKET__INIT;
            tk.ticket_id = t;
            tk.number = 1;
            tk.status = TICKETQ__STATUS__OPEN;
            tk.priority = TICKETQ__PRIORITY__HIGH;
            resp.result_case = TICKETQ__RESPONSE__RESULT_TICKET;
            resp.ticket = &tk;
            send_response(fd, &resp);
        }
        return;
    }
    case TICKETQ__REQUEST__OP_BATCH: {
        size_t n = req->batch->n_ops;
        Ticketq__Response *results = calloc(n, sizeof(*results));
        Ticketq__Response **ptrs = calloc(n, sizeof(*ptrs));
        Ticketq__Ids *ids = calloc(n, sizeof(*ids));
        Ticketq__Error *errs = calloc(n, sizeof(*errs));
        TQ_CHECK(results != NULL && ptrs != NULL && ids != NULL && errs != NULL);
        for (size_t i = 0; i < n; i++) {
            const Ticketq__Request *op = req->batch->ops[i];
            ticketq__response__init(&results[i]);
            results[i].id = op->id;
            if (op->op_case == TICKETQ__REQUEST__OP_PING) {
                ticketq__error__init(&errs[i]);
                errs[i].code = TICKETQ__ERROR_CODE__INVALID_ARGUMENT;
                errs[i].message = tq_test_mut("ping is not allowed in a batch");
                results[i].error = &errs[i];
            } else {
                ticketq__ids__init(&ids[i]);
                ids[i].has_ticket_id = 1;
                ids[i].ticket_id = 1000 + op->id;
                results[i].result_case = TICKETQ__RESPONSE__RESULT_IDS;
                results[i].ids = &ids[i];
            }
            ptrs[i] = &results[i];
        }
        Ticketq__BatchResult br = TICKETQ__BATCH_RESULT__INIT;
        br.n_results = n;
        br.results = ptrs;
        resp.result_case = TICKETQ__RESPONSE__RESULT_BATCH;
        resp.batch = &br;
        send_response(fd, &resp);
        free(results);
        free(ptrs);
        free(ids);
        free(errs);
        return;
    }
    case TICKETQ__REQUEST__OP_SUBSCRIBE:
        *sub_id = req->id;
        /* The answer: an empty EventBatch naming the start (events of records after it). */
        {
            Ticketq__EventBatch none = TICKETQ__EVENT_BATCH__INIT;
            resp.result_case = TICKETQ__RESPONSE__RESULT_EVENTS;
            resp.events = &none;
            resp.has_lsn = 1;
            resp.lsn = req->subscribe->from_lsn;
            send_response(fd, &resp);
        }
        /* The first event sits at the start LSN itself: the client must drop it. */
        send_events(fd, req->id, req->subscribe->from_lsn, 3);
        send_events(fd, req->id, req->subscribe->from_lsn + 3, 1);
        return;
    case TICKETQ__REQUEST__OP_CONSUMER_ACK:
        if (req->consumer_ack->lsn == 999999) { /* a flood: more frames than a call may queue */
            for (uint64_t i = 0; i < 1100; i++)
                send_events(fd, *sub_id, 2000 + i, 1);
            send_response(fd, &resp);
            return;
        }
        /* An event frame overtakes the answer: the client must keep it for next(). */
        send_events(fd, *sub_id, req->consumer_ack->lsn + 1, 2);
        send_response(fd, &resp);
        return;
    case TICKETQ__REQUEST__OP_UNSUBSCRIBE:
        send_events(fd, *sub_id, 1000, 1); /* in flight when the client unsubscribed */
        send_response(fd, &resp);
        *sub_id = 0;
        return;
    default: send_response(fd, &resp); return;
    }
}

static void serve_connection(int fd) {
    int small = 4096; /* tiny buffers: pipelining must interleave reads with writes */
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    uint64_t sub_id = 0;
    for (;;) {
        uint8_t prefix[4];
        if (read_all(fd, prefix, 4) != 0) _exit(0);
        uint32_t len = 0;
        TQ_CHECK_EQ(tq_frame_peek(prefix, 4, TQ_FRAME_BYTES_LIMIT_MAX, &len), TQ_FRAME_NEED_MORE);
        uint8_t *payload = malloc(len);
        TQ_CHECK(payload != NULL);
        if (read_all(fd, payload, len) != 0) _exit(0);
        Ticketq__Request *req = ticketq__request__unpack(NULL, len, payload);
        TQ_CHECK(req != NULL);
        serve_request(fd, req, &sub_id);
        ticketq__request__free_unpacked(req, NULL);
        free(payload);
    }
}

static pid_t fake_start(void) {
    snprintf(sock_path, sizeof(sock_path), "/tmp/tq-client-fake-%d.sock", (int)getpid());
    unlink(sock_path);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    TQ_CHECK(lfd >= 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock_path);
    TQ_CHECK_EQ(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    TQ_CHECK_EQ(listen(lfd, 16), 0);
    pid_t pid = fork();
    TQ_CHECK(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed check in the test must not leave us */
        if (getppid() == 1) _exit(0);
        signal(SIGCHLD, SIG_IGN); /* handlers are reaped automatically */
        for (;;) {
            int fd = accept(lfd, NULL, NULL);
            if (fd < 0) continue;
            pid_t h = fork();
            if (h == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                close(lfd);
                serve_connection(fd);
            }
            close(fd);
        }
    }
    close(lfd);
    return pid;
}

/* ---- tests -------------------------------------------------------------------------------- */

static struct tq_client *connect_ok(int io_timeout_ms, uint32_t frame_max, uint32_t inflight) {
    char addr[256];
    snprintf(addr, sizeof(addr), "unix:%s", sock_path);
    struct tq_client_options o = {.addr = addr,
                                  .token = token_ok,
                                  .io_timeout_ms = io_timeout_ms,
                                  .frame_bytes_max = frame_max,
                                  .inflight_max = inflight};
    struct tq_client *c = NULL;
    struct tq_error err;
    TQ_CHECK_OK(tq_client_connect(&o, &c, &err), &err);
    TQ_CHECK(c != NULL);
    return c;
}

static void test_connect_errors(void) {
    struct tq_error err;
    struct tq_client *c = (struct tq_client *)1;
    const char *bad_addrs[] = {"nonsense", "[::1", "::1:70", "host:", ":7070", "h:12x", "unix:"};
    for (size_t i = 0; i < TQ_ARRAY_COUNT(bad_addrs); i++) {
        struct tq_client_options o = {.addr = bad_addrs[i]};
        TQ_CHECK_ERR(tq_client_connect(&o, &c, &err), TQ_ERR_INVALID_ARGUMENT, &err);
        TQ_CHECK(c == NULL);
    }
    /* an IPv6 literal parses (then nobody listens there, or the host has no IPv6) */
    struct tq_client_options v6 = {.addr = "[::1]:1"};
    enum tq_err rc = tq_client_connect(&v6, &c, &err);
    TQ_CHECK(rc == TQ_ERR_UNAVAILABLE || rc == TQ_ERR_IO);
    struct tq_client_options refused = {.addr = "unix:/nonexistent/tq.sock"};
    TQ_CHECK_ERR(tq_client_connect(&refused, &c, &err), TQ_ERR_UNAVAILABLE, &err);
    char addr[256];
    snprintf(addr, sizeof(addr), "unix:%s", sock_path);
    struct tq_client_options bad_token = {.addr = addr, .token = "wrong"};
    TQ_CHECK_ERR(tq_client_connect(&bad_token, &c, &err), TQ_ERR_UNAUTHENTICATED, &err);
    TQ_CHECK(strstr(err.msg, "unknown token") != NULL);
    struct tq_client_options too_big = {.addr = addr, .frame_bytes_max = 128u << 20};
    TQ_CHECK_ERR(tq_client_connect(&too_big, &c, &err), TQ_ERR_INVALID_ARGUMENT, &err);
}

static void test_calls_and_errors(void) {
    struct tq_error err;
    struct tq_client *c = connect_ok(300, 4096, 0);
    const struct tq_client_identity *who = tq_client_identity(c);
    TQ_CHECK_EQ(who->role, TICKETQ__ROLE__TENANT_ADMIN);
    TQ_CHECK_UEQ(who->tenant_id, 7);
    TQ_CHECK_UEQ(who->token_id, 3);
    TQ_CHECK_OK(tq_client_ping(c, &err), &err);

    /* typed helper, tenant_id filled in from tq_client_set_tenant */
    tq_client_set_tenant(c, 77);
    Ticketq__Ingest in = TICKETQ__INGEST__INIT;
    in.channel = TICKETQ__CHANNEL__WHATSAPP;
    in.from = tq_test_mut("+8613800000000");
    in.body = tq_test_mut("hello");
    struct tq_client_ids ids;
    TQ_CHECK_OK(tq_client_ingest(c, &in, &ids, &err), &err);
    TQ_CHECK(ids.ticket_id > 0);
    TQ_CHECK_UEQ(ids.lsn, ids.ticket_id * 10);
    TQ_CHECK_UEQ(ids.customer_id, 77);
    tq_client_set_tenant(c, 0);

    /* a server error keeps the response and the client */
    Ticketq__Response *resp = NULL;
    TQ_CHECK_ERR(tq_client_ticket_get(c, 999, 0, 0, &resp, &err), TQ_ERR_NOT_FOUND, &err);
    TQ_CHECK(resp == NULL);
    TQ_CHECK_STR_EQ(err.msg, "ticket 999");
    Ticketq__TicketGet tg = TICKETQ__TICKET_GET__INIT;
    tg.ticket_id = 999;
    Ticketq__Request req = TICKETQ__REQUEST__INIT;
    req.op_case = TICKETQ__REQUEST__OP_TICKET_GET;
    req.ticket_get = &tg;
    TQ_CHECK_ERR(tq_client_call(c, &req, &resp, &err), TQ_ERR_NOT_FOUND, &err);
    TQ_CHECK(resp != NULL && resp->error != NULL && resp->id == req.id);
    tq_client_response_free(resp);
    TQ_CHECK_OK(tq_client_ticket_get(c, 5, 0, 0, &resp, &err), &err);
    TQ_CHECK(resp->result_case == TICKETQ__RESPONSE__RESULT_TICKET);
    TQ_CHECK_UEQ(resp->ticket->ticket_id, 5);
    tq_client_response_free(resp);

    /* local refusals: nothing sent, client fine */
    Ticketq__Ingest missing = TICKETQ__INGEST__INIT; /* from and body are required */
    TQ_CHECK_ERR(tq_client_ingest(c, &missing, NULL, &err), TQ_ERR_INVALID_ARGUMENT, &err);
    char big[8192];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    in.body = big;
    TQ_CHECK_ERR(tq_client_ingest(c, &in, NULL, &err), TQ_ERR_RESOURCE_EXHAUSTED, &err);
    TQ_CHECK_ERR(tq_client_collect(c, &resp, &err), TQ_ERR_FAILED_PRECONDITION, &err);
    TQ_CHECK_OK(tq_client_ping(c, &err), &err);

    /* silence: timeout, then the client is broken */
    TQ_CHECK_ERR(tq_client_ticket_get(c, 444, 0, 0, &resp, &err), TQ_ERR_UNAVAILABLE, &err);
    TQ_CHECK(strstr(err.msg, "timed out") != NULL);
    TQ_CHECK_ERR(tq_client_ping(c, &err), TQ_ERR_UNAVAILABLE, &err);
    TQ_CHECK(strstr(err.msg, "broken") != NULL);
    tq_client_close(c);

    struct {
        uint64_t ticket;
        enum tq_err code;
    } broken[] = {
        {666, TQ_ERR_CORRUPT}, {555, TQ_ERR_RESOURCE_EXHAUSTED}, {333, TQ_ERR_UNAVAILABLE}};
    for (size_t i = 0; i < TQ_ARRAY_COUNT(broken); i++) {
        c = connect_ok(5000, 0, 0);
        TQ_CHECK_ERR(tq_client_ticket_get(c, broken[i].ticket, 0, 0, &resp, &err), broken[i].code,
                     &err);
        TQ_CHECK_ERR(tq_client_ping(c, &err), TQ_ERR_UNAVAILABLE, &err);
        tq_client_close(c);
    }
}

/* Whatever bytes the server sends, the client returns an error or a response for its own id:
 * never a crash (ASan/UBSan watch), never a hang. */
static void test_garbage(uint64_t *rng) {
    struct tq_error err;
    for (int i = 0; i < 200; i++) {
        struct tq_client *c = connect_ok(2000, 0, 0);
        Ticketq__Response *resp = NULL;
        uint32_t seed = (uint32_t)tq_test_rand(rng);
        enum tq_err rc = tq_client_ticket_get(c, 777, seed == 0 ? 1 : seed, 0, &resp, &err);
        if (rc == TQ_OK) {
            TQ_CHECK(resp != NULL); /* random bytes that decode as our answer: fine */
        } else {
            TQ_CHECK(resp == NULL);
            TQ_CHECK(rc != TQ_ERR_INTERNAL);
        }
        tq_client_response_free(resp);
        tq_client_close(c);
    }
}

/* Every allocation of a session fails in turn: each call returns TQ_OK or TQ_ERR_INTERNAL
 * (or UNAVAILABLE once an out-of-memory broke the client), and closing frees every byte
 * (tq_alloc_bytes_live back to where it was; LeakSanitizer checks the rest at exit). */
static void test_out_of_memory(void) {
    char addr[256];
    snprintf(addr, sizeof(addr), "unix:%s", sock_path);
    uint64_t live_before = tq_alloc_bytes_live();
    int failures_seen = 0;
    for (uint64_t nth = 1; nth <= 40; nth++) {
        struct tq_error err;
        struct tq_client_options o = {.addr = addr, .token = token_ok, .io_timeout_ms = 5000};
        struct tq_client *c = NULL;
        tq_alloc_fail_at(nth);
        enum tq_err rc = tq_client_connect(&o, &c, &err);
        if (rc != TQ_OK) {
            TQ_CHECK_ERR(rc, TQ_ERR_INTERNAL, &err);
            TQ_CHECK(c == NULL);
            failures_seen++;
            tq_alloc_fail_at(0);
            TQ_CHECK_UEQ(tq_alloc_bytes_live(), live_before);
            continue;
        }
        Ticketq__Response *resp = NULL;
        enum tq_err steps[4];
        steps[0] = tq_client_ping(c, &err);
        steps[1] = tq_client_ticket_get(c, 5, 0, 0, &resp, &err);
        tq_client_response_free(resp);
        struct tq_subscribe_options so = {.from_lsn = 1};
        struct tq_subscription *sub = NULL;
        steps[2] = tq_client_subscribe(c, &so, &sub, &err);
        steps[3] = TQ_OK;
        if (steps[2] == TQ_OK) {
            const Ticketq__Event *ev = NULL;
            steps[3] = tq_subscription_next(sub, &ev, 5000, &err);
        }
        for (int i = 0; i < 4; i++) {
            if (steps[i] == TQ_OK) continue;
            failures_seen++;
            if (steps[i] != TQ_ERR_INTERNAL && steps[i] != TQ_ERR_UNAVAILABLE) {
                TQ_CHECK_ERR(steps[i], TQ_ERR_INTERNAL, &err);
            }
        }
        tq_alloc_fail_at(0);
        tq_client_close(c); /* with or without its subscription */
        TQ_CHECK_UEQ(tq_alloc_bytes_live(), live_before);
    }
    TQ_CHECK_GT(failures_seen, 10); /* the seam really did fail allocations */
}

static void test_pipeline(uint64_t *rng) {
    struct tq_error err;
    struct tq_client *c = connect_ok(10000, 0, 0);
    static char bodies[PIPELINE_COUNT][BODY_BYTES];
    uint64_t ids[PIPELINE_COUNT];
    Ticketq__Ingest in = TICKETQ__INGEST__INIT;
    in.channel = TICKETQ__CHANNEL__EMAIL;
    in.from = tq_test_mut("a@example.com");
    Ticketq__Request req = TICKETQ__REQUEST__INIT;
    req.op_case = TICKETQ__REQUEST__OP_INGEST;
    req.ingest = &in;
    for (size_t i = 0; i < PIPELINE_COUNT; i++) {
        size_t len = 1 + tq_test_rand_below(rng, BODY_BYTES - 40);
        snprintf(bodies[i], BODY_BYTES, "%zu:", i);
        size_t prefix = strlen(bodies[i]);
        memset(bodies[i] + prefix, 'a' + (int)(i % 26), len);
        bodies[i][prefix + len] = '\0';
        in.body = bodies[i];
        TQ_CHECK_OK(tq_client_submit(c, &req, &ids[i], &err), &err);
        if (i > 0) TQ_CHECK_UEQ(ids[i], ids[i - 1] + 1);
    }
    TQ_CHECK_UEQ(tq_client_inflight(c), PIPELINE_COUNT);
    Ticketq__Response *resp = NULL;
    TQ_CHECK_ERR(tq_client_call(c, &req, &resp, &err), TQ_ERR_FAILED_PRECONDITION, &err);
    TQ_CHECK_OK(tq_client_flush(c, &err), &err);
    for (size_t i = 0; i < PIPELINE_COUNT; i++) {
        TQ_CHECK_OK(tq_client_collect(c, &resp, &err), &err);
        TQ_CHECK_UEQ(resp->id, ids[i]);
        TQ_CHECK_OK(tq_client_response_error(resp, &err), &err);
        TQ_CHECK(resp->result_case == TICKETQ__RESPONSE__RESULT_IDS);
        TQ_CHECK_STR_EQ(resp->ids->token_secret, bodies[i]);
        tq_client_response_free(resp);
    }
    TQ_CHECK_UEQ(tq_client_inflight(c), 0);
    TQ_CHECK_OK(tq_client_ping(c, &err), &err);
    tq_client_close(c);

    /* the window limit, and collect without an explicit flush */
    c = connect_ok(5000, 0, 4);
    in.body = tq_test_mut("w");
    for (int i = 0; i < 4; i++)
        TQ_CHECK_OK(tq_client_submit(c, &req, NULL, &err), &err);
    TQ_CHECK_ERR(tq_client_submit(c, &req, NULL, &err), TQ_ERR_RESOURCE_EXHAUSTED, &err);
    for (int i = 0; i < 4; i++) {
        TQ_CHECK_OK(tq_client_collect(c, &resp, &err), &err);
        tq_client_response_free(resp);
    }
    /* closing with requests in flight frees everything (ASan checks) */
    for (int i = 0; i < 3; i++)
        TQ_CHECK_OK(tq_client_submit(c, &req, NULL, &err), &err);
    tq_client_close(c);
}

static void test_batch(void) {
    struct tq_error err;
    struct tq_client *c = connect_ok(5000, 0, 0);
    Ticketq__Ingest in = TICKETQ__INGEST__INIT;
    in.channel = TICKETQ__CHANNEL__SMS;
    in.from = tq_test_mut("+1555");
    in.body = tq_test_mut("b");
    Ticketq__Ping ping = TICKETQ__PING__INIT;
    Ticketq__Request ops[5], *ptrs[5];
    for (int i = 0; i < 5; i++) {
        ticketq__request__init(&ops[i]);
        if (i == 3) {
            ops[i].op_case = TICKETQ__REQUEST__OP_PING;
            ops[i].ping = &ping;
        } else {
            ops[i].op_case = TICKETQ__REQUEST__OP_INGEST;
            ops[i].ingest = &in;
        }
        ptrs[i] = &ops[i];
    }
    Ticketq__Response *resp = NULL;
    TQ_CHECK_OK(tq_client_batch(c, ptrs, 5, &resp, &err), &err);
    TQ_CHECK_UEQ(resp->batch->n_results, 5);
    for (size_t i = 0; i < 5; i++) {
        const Ticketq__Response *r = resp->batch->results[i];
        TQ_CHECK_UEQ(r->id, i + 1);
        if (i == 3) {
            TQ_CHECK_ERR(tq_client_response_error(r, &err), TQ_ERR_INVALID_ARGUMENT, &err);
        } else {
            TQ_CHECK_OK(tq_client_response_error(r, &err), &err);
            TQ_CHECK_UEQ(r->ids->ticket_id, 1000 + i + 1);
        }
    }
    tq_client_response_free(resp);
    tq_client_close(c);
}

static void expect_event(struct tq_subscription *sub, uint64_t lsn) {
    struct tq_error err;
    const Ticketq__Event *ev = NULL;
    TQ_CHECK_OK(tq_subscription_next(sub, &ev, 5000, &err), &err);
    TQ_CHECK(ev != NULL);
    TQ_CHECK_UEQ(ev->lsn, lsn);
    TQ_CHECK_UEQ(ev->ticket_id, 100 + lsn);
    TQ_CHECK_UEQ(tq_subscription_lsn(sub), lsn);
}

static void test_subscription(void) {
    struct tq_error err;
    struct tq_client *c = connect_ok(5000, 0, 0);
    struct tq_subscribe_options o = {.from_lsn = 10, .consumer = "hooks"};
    struct tq_subscription *sub = NULL;
    TQ_CHECK_OK(tq_client_subscribe(c, &o, &sub, &err), &err);
    struct tq_subscription *second = NULL;
    TQ_CHECK_ERR(tq_client_subscribe(c, &o, &second, &err), TQ_ERR_FAILED_PRECONDITION, &err);
    Ticketq__Ping ping = TICKETQ__PING__INIT;
    Ticketq__Request req = TICKETQ__REQUEST__INIT;
    req.op_case = TICKETQ__REQUEST__OP_PING;
    req.ping = &ping;
    TQ_CHECK_ERR(tq_client_submit(c, &req, NULL, &err), TQ_ERR_FAILED_PRECONDITION, &err);
    expect_event(sub, 11);
    expect_event(sub, 12);
    expect_event(sub, 13);
    const Ticketq__Event *ev = NULL;
    TQ_CHECK_OK(tq_subscription_next(sub, &ev, 50, &err), &err);
    TQ_CHECK(ev == NULL); /* quiet: a timeout is not an error */
    TQ_CHECK_OK(tq_subscription_next(sub, &ev, 0, &err), &err);
    TQ_CHECK(ev == NULL);
    /* a blocking call on the subscribed connection: events overtaking its answer are kept */
    TQ_CHECK_OK(tq_client_consumer_ack(c, "hooks", 13, &err), &err);
    expect_event(sub, 14);
    expect_event(sub, 15);
    TQ_CHECK_OK(tq_subscription_close(sub, &err), &err);
    TQ_CHECK_OK(tq_client_ping(c, &err), &err); /* the stale event frame was discarded */
    tq_client_close(c);

    /* a call on a subscribed connection cannot queue events without bound */
    c = connect_ok(5000, 0, 0);
    TQ_CHECK_OK(tq_client_subscribe(c, &o, &sub, &err), &err);
    TQ_CHECK_ERR(tq_client_consumer_ack(c, "hooks", 999999, &err), TQ_ERR_RESOURCE_EXHAUSTED, &err);
    tq_client_close(c);

    /* closing the client with an open subscription and queued frames frees everything */
    c = connect_ok(5000, 0, 0);
    TQ_CHECK_OK(tq_client_subscribe(c, &o, &sub, &err), &err);
    TQ_CHECK_OK(tq_client_consumer_ack(c, "hooks", 1, &err), &err);
    tq_client_close(c);
}

static void test_names(void) {
    char buf[32];
    TQ_CHECK_STR_EQ(tq_client_channel_name(TICKETQ__CHANNEL__WHATSAPP), "whatsapp");
    TQ_CHECK_STR_EQ(tq_client_status_name(TICKETQ__STATUS__ON_HOLD), "on_hold");
    TQ_CHECK_STR_EQ(tq_client_role_name(TICKETQ__ROLE__ROLE_AGENT), "agent");
    TQ_CHECK_STR_EQ(tq_client_enum_name(&ticketq__role__descriptor, TICKETQ__ROLE__ROLE_AGENT, buf,
                                        sizeof(buf)),
                    "agent");
    TQ_CHECK_STR_EQ(tq_client_enum_name(&ticketq__delivery__descriptor, 0, buf, sizeof(buf)),
                    "none");
    TQ_CHECK_STR_EQ(tq_client_enum_name(&ticketq__event_type__descriptor,
                                        TICKETQ__EVENT_TYPE__DELIVERY_STATUS, buf, sizeof(buf)),
                    "delivery_status");
    TQ_CHECK_STR_EQ(tq_client_enum_name(&ticketq__sla_clock_state__descriptor,
                                        TICKETQ__SLA_CLOCK_STATE__CLOCK_ACHIEVED, buf, sizeof(buf)),
                    "achieved");
    TQ_CHECK_STR_EQ(tq_client_enum_name(&ticketq__channel__descriptor, 99, buf, sizeof(buf)),
                    "unknown");
    /* every value round-trips through its name, for every enum the CLI parses */
    const ProtobufCEnumDescriptor *enums[] = {
        &ticketq__channel__descriptor,    &ticketq__status__descriptor,
        &ticketq__priority__descriptor,   &ticketq__role__descriptor,
        &ticketq__presence__descriptor,   &ticketq__delivery__descriptor,
        &ticketq__event_type__descriptor, &ticketq__sla_metric__descriptor};
    for (size_t e = 0; e < TQ_ARRAY_COUNT(enums); e++) {
        for (unsigned i = 0; i < enums[e]->n_values; i++) {
            int v = -1;
            const char *name =
                tq_client_enum_name(enums[e], enums[e]->values[i].value, buf, sizeof(buf));
            TQ_CHECK(tq_client_enum_parse(enums[e], name, &v));
            TQ_CHECK_EQ(v, enums[e]->values[i].value);
        }
    }
    int v;
    TQ_CHECK(!tq_client_enum_parse(&ticketq__channel__descriptor, "telegram", &v));
    TQ_CHECK(tq_client_enum_parse(&ticketq__channel__descriptor, "WhatsApp", &v));
    TQ_CHECK_EQ(v, TICKETQ__CHANNEL__WHATSAPP);
}

int main(void) {
    uint64_t rng = tq_test_seed("test_client_fake");
    signal(SIGPIPE, SIG_IGN);
    pid_t fake = fake_start();
    test_names();
    test_connect_errors();
    test_calls_and_errors();
    test_garbage(&rng);
    test_out_of_memory();
    test_pipeline(&rng);
    test_batch();
    test_subscription();
    kill(fake, SIGKILL);
    waitpid(fake, NULL, 0);
    unlink(sock_path);
    printf("test_client_fake: ok\n");
    return 0;
}
