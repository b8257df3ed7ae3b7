/* tests/client/test_client_nonblock.c: tq_client_fd and tq_client_try_collect against a fake
 * server whose every write the test controls.
 *
 * Goal: prove the non-blocking collect used by one-thread poll(2) drivers (ticketq-bench)
 * never waits, hands out a response exactly when its whole frame has arrived (never a partial
 * one, never one early), keeps ids in submission order, and reports a closed server as a
 * broken client. Method: a forked fake server on a Unix socket answers the Auth by itself,
 * then obeys single commands from the test over a control socketpair: read one request and
 * queue its answer, write the next K bytes of queued answers, close. After each command it
 * acknowledges with the number of complete frames written so far in this round (a round ends
 * when every queued answer is written), so the test knows exactly
 * how many responses try_collect must return. Chunk sizes and request counts are seeded.
 */
#include "frame.h"
#include "ticketq.h"
#include "tq_test.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define REQUESTS_MAX  64u
#define OUT_BYTES_MAX (64u * 1024)

static char sock_path[100];
static char token_ok[] = "nb-token";

struct command {
    char op; /* 'r' read a request, 'w' write n bytes, 'c' close */
    uint32_t n;
};

static int write_all(int fd, const void *buf, size_t n) {
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *buf, size_t n) {
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static Ticketq__Request *read_request(int fd) {
    uint8_t prefix[TQ_FRAME_PREFIX_BYTES];
    if (read_all(fd, prefix, sizeof(prefix)) != 0) _exit(0);
    uint32_t len = (uint32_t)prefix[0] << 24 | (uint32_t)prefix[1] << 16 |
                   (uint32_t)prefix[2] << 8 | prefix[3];
    uint8_t *payload = malloc(len + 1u);
    TQ_CHECK(payload != NULL);
    if (read_all(fd, payload, len) != 0) _exit(0);
    Ticketq__Request *req = ticketq__request__unpack(NULL, len, payload);
    free(payload);
    TQ_CHECK(req != NULL);
    return req;
}

/* Appends the frame of resp to out. */
static void pack_to(uint8_t *out, uint32_t *out_len, Ticketq__Response *resp) {
    size_t size = tq_frame_size(&resp->base);
    TQ_CHECK(*out_len + size <= OUT_BYTES_MAX);
    TQ_CHECK_UEQ(tq_frame_pack(&resp->base, out + *out_len, size), size);
    *out_len += (uint32_t)size;
}

static void fake_serve(int fd, int ctl) {
    /* Auth first, answered at once (tq_client_connect blocks on it). */
    Ticketq__Request *auth = read_request(fd);
    TQ_CHECK(auth->op_case == TICKETQ__REQUEST__OP_AUTH);
    Ticketq__AuthResult a = TICKETQ__AUTH_RESULT__INIT;
    a.role = TICKETQ__ROLE__TENANT_ADMIN;
    Ticketq__Response resp = TICKETQ__RESPONSE__INIT;
    resp.id = auth->id;
    resp.result_case = TICKETQ__RESPONSE__RESULT_AUTH;
    resp.auth = &a;
    static uint8_t out[OUT_BYTES_MAX];
    uint32_t out_len = 0, out_off = 0, frames_complete = 0;
    uint32_t frame_end[REQUESTS_MAX + 1];
    uint32_t frame_count = 0;
    pack_to(out, &out_len, &resp);
    TQ_CHECK_EQ(write_all(fd, out, out_len), 0);
    out_len = 0;
    ticketq__request__free_unpacked(auth, NULL);
    for (;;) {
        struct command cmd;
        if (read_all(ctl, &cmd, sizeof(cmd)) != 0) _exit(0);
        if (cmd.op == 'r') {
            Ticketq__Request *req = read_request(fd);
            Ticketq__Ids ids = TICKETQ__IDS__INIT;
            ids.has_ticket_id = 1;
            ids.ticket_id = req->id * 3; /* proves which request this answers */
            Ticketq__Response r = TICKETQ__RESPONSE__INIT;
            r.id = req->id;
            r.result_case = TICKETQ__RESPONSE__RESULT_IDS;
            r.ids = &ids;
            pack_to(out, &out_len, &r);
            TQ_CHECK(frame_count < REQUESTS_MAX + 1);
            frame_end[frame_count++] = out_len;
            ticketq__request__free_unpacked(req, NULL);
        } else if (cmd.op == 'w') {
            uint32_t n = cmd.n < out_len - out_off ? cmd.n : out_len - out_off;
            TQ_CHECK_EQ(write_all(fd, out + out_off, n), 0);
            out_off += n;
            while (frames_complete < frame_count && frame_end[frames_complete] <= out_off) {
                frames_complete++;
            }
        } else {
            close(fd);
        }
        TQ_CHECK_EQ(write_all(ctl, &frames_complete, sizeof(frames_complete)), 0);
        if (cmd.op == 'c') _exit(0);
        if (out_off == out_len && frames_complete == frame_count) {
            out_len = out_off = frames_complete = frame_count = 0; /* round over */
        }
    }
}

static pid_t fake_start(int *ctl_out) {
    snprintf(sock_path, sizeof(sock_path), "/tmp/tq-client-nb-%d.sock", (int)getpid());
    unlink(sock_path);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    TQ_CHECK(lfd >= 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock_path);
    TQ_CHECK_EQ(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    TQ_CHECK_EQ(listen(lfd, 4), 0);
    int sv[2];
    TQ_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    pid_t pid = fork();
    TQ_CHECK(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed check in the test must not leave us */
        if (getppid() == 1) _exit(0);
        close(sv[0]);
        int fd = accept(lfd, NULL, NULL);
        TQ_CHECK(fd >= 0);
        close(lfd);
        fake_serve(fd, sv[1]);
        _exit(0);
    }
    close(lfd);
    close(sv[1]);
    *ctl_out = sv[0];
    return pid;
}

static uint32_t command(int ctl, char op, uint32_t n) {
    struct command cmd = {.op = op, .n = n};
    TQ_CHECK_EQ(write_all(ctl, &cmd, sizeof(cmd)), 0);
    uint32_t complete = 0;
    TQ_CHECK_EQ(read_all(ctl, &complete, sizeof(complete)), 0);
    return complete;
}

static void wait_readable(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    TQ_CHECK_EQ(poll(&p, 1, 10000), 1);
}

/* Collects everything try_collect hands out now; checks ids and contents. */
static uint32_t drain(struct tq_client *c, uint64_t *next_id) {
    uint32_t got = 0;
    for (;;) {
        Ticketq__Response *resp = NULL;
        struct tq_error err;
        if (tq_client_inflight(c) == 0) return got;
        TQ_CHECK_OK(tq_client_try_collect(c, &resp, &err), &err);
        if (resp == NULL) return got;
        TQ_CHECK_UEQ(resp->id, *next_id);
        TQ_CHECK(resp->result_case == TICKETQ__RESPONSE__RESULT_IDS);
        TQ_CHECK_UEQ(resp->ids->ticket_id, *next_id * 3);
        tq_client_response_free(resp);
        (*next_id)++;
        got++;
    }
}

int main(void) {
    uint64_t rng = tq_test_seed("test_client_nonblock");
    signal(SIGPIPE, SIG_IGN);
    TQ_CHECK_EQ(tq_client_fd(NULL), -1);
    int ctl = -1;
    pid_t pid = fake_start(&ctl);

    char addr[160];
    snprintf(addr, sizeof(addr), "unix:%s", sock_path);
    struct tq_client_options o = {.addr = addr, .token = token_ok};
    struct tq_client *c = NULL;
    struct tq_error err;
    TQ_CHECK_OK(tq_client_connect(&o, &c, &err), &err);
    int fd = tq_client_fd(c);
    TQ_CHECK(fd >= 0);
    int type = 0;
    socklen_t type_len = sizeof(type);
    TQ_CHECK_EQ(getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_len), 0);
    TQ_CHECK_EQ(type, SOCK_STREAM);

    /* Nothing in flight: a precondition error, and the client stays usable. */
    Ticketq__Response *resp = NULL;
    TQ_CHECK_EQ(tq_client_try_collect(c, &resp, &err), TQ_ERR_FAILED_PRECONDITION);
    TQ_CHECK(resp == NULL);

    uint64_t next_id = 0;
    for (int round = 0; round < 20; round++) {
        uint32_t count = 1 + (uint32_t)tq_test_rand_below(&rng, REQUESTS_MAX / 2);
        for (uint32_t i = 0; i < count; i++) {
            Ticketq__Ping ping = TICKETQ__PING__INIT;
            Ticketq__Request req = TICKETQ__REQUEST__INIT;
            req.op_case = TICKETQ__REQUEST__OP_PING;
            req.ping = &ping;
            uint64_t id = 0;
            TQ_CHECK_OK(tq_client_submit(c, &req, &id, &err), &err);
            if (next_id == 0) next_id = id;
        }
        TQ_CHECK_OK(tq_client_flush(c, &err), &err);
        /* The server has not answered: no response, and the call returned (never waits). */
        TQ_CHECK_UEQ(drain(c, &next_id), 0);
        for (uint32_t i = 0; i < count; i++)
            command(ctl, 'r', 0);
        TQ_CHECK_UEQ(drain(c, &next_id), 0);
        uint32_t collected = 0, complete = 0;
        while (collected < count) {
            uint32_t chunk = 1 + (uint32_t)tq_test_rand_below(&rng, 40);
            uint32_t now_complete = command(ctl, 'w', chunk);
            wait_readable(fd); /* every chunk has at least one byte */
            collected += drain(c, &next_id);
            /* Exactly the frames wholly written so far, and nothing partial. */
            TQ_CHECK_UEQ(collected, now_complete);
            TQ_CHECK_GE(now_complete, complete);
            complete = now_complete;
        }
        TQ_CHECK_UEQ(tq_client_inflight(c), 0);
    }

    /* A server that closes: try_collect reports it and the client is broken for good. */
    Ticketq__Ping ping = TICKETQ__PING__INIT;
    Ticketq__Request req = TICKETQ__REQUEST__INIT;
    req.op_case = TICKETQ__REQUEST__OP_PING;
    req.ping = &ping;
    TQ_CHECK_OK(tq_client_submit(c, &req, NULL, &err), &err);
    TQ_CHECK_OK(tq_client_flush(c, &err), &err);
    command(ctl, 'r', 0);
    command(ctl, 'c', 0);
    wait_readable(fd);
    enum tq_err rc = TQ_OK;
    for (int i = 0; i < 100 && rc == TQ_OK; i++) {
        rc = tq_client_try_collect(c, &resp, &err);
        TQ_CHECK(resp == NULL);
    }
    TQ_CHECK_EQ(rc, TQ_ERR_UNAVAILABLE);
    TQ_CHECK_EQ(tq_client_try_collect(c, &resp, &err), TQ_ERR_UNAVAILABLE);
    tq_client_close(c);

    close(ctl);
    int status = 0;
    TQ_CHECK_EQ(waitpid(pid, &status, 0), pid);
    unlink(sock_path);
    printf("test_client_nonblock: ok\n");
    return 0;
}
