/* tests/server/rawc.c: see rawc.h. */
#include "rawc.h"

#include "frame.h"
#include "tq_fixture.h"
#include "tq_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int rawc_connect(struct rawc *c, const char *addr) {
    return rawc_connect_rcvbuf(c, addr, 0);
}

int rawc_connect_rcvbuf(struct rawc *c, const char *addr, int rcvbuf) {
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->next_id = 1;
    if (addr[0] == '/') {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", addr);
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) goto fail;
        return 0;
    }
    char host[64];
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || (size_t)(colon - addr) >= sizeof(host)) return -1;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) return -1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    /* Before connect, so the window is small from the handshake on: shrinking the buffer of an
     * open connection makes the kernel drop data it already advertised room for, and a reset
     * from the peer can then fall outside the window and be lost. */
    if (c->fd >= 0 && rcvbuf > 0) setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) goto fail;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return 0;
fail:
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    return -1;
}

void rawc_close(struct rawc *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
}

int rawc_send_raw(struct rawc *c, const void *bytes, size_t len) {
    const uint8_t *p = bytes;
    int64_t deadline = now_ms() + 10000;
    while (len > 0) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
        int left = (int)(deadline - now_ms());
        if (left <= 0 || poll(&pfd, 1, left) <= 0) return -1;
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

uint64_t rawc_send(struct rawc *c, Ticketq__Request *req) {
    if (req->id == 0) req->id = c->next_id++;
    size_t size = tq_frame_size(&req->base);
    uint8_t *buf = malloc(size);
    TQ_CHECK(buf != NULL);
    size_t n = tq_frame_pack(&req->base, buf, size);
    TQ_CHECK(n == size);
    int rc = rawc_send_raw(c, buf, n);
    free(buf);
    return rc == 0 ? req->id : 0;
}

/* Reads more bytes into the buffer; 1 = got some, 0 = EOF, -1 = error/timeout. */
static int fill(struct rawc *c, int64_t deadline) {
    if (c->cap - c->len < 65536) {
        c->cap = c->cap ? c->cap * 2 : 131072;
        c->buf = realloc(c->buf, c->cap);
        TQ_CHECK(c->buf != NULL);
    }
    for (;;) {
        int left = (int)(deadline - now_ms());
        if (left < 0) left = 0;
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int pr = poll(&pfd, 1, left);
        if (pr == 0) return -1;
        if (pr < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);
        if (n > 0) {
            c->len += (size_t)n;
            return 1;
        }
        if (n == 0) return 0;
        if (errno == EAGAIN || errno == EINTR) continue;
        return errno == ECONNRESET ? 0 : -1;
    }
}

Ticketq__Response *rawc_recv(struct rawc *c, int timeout_ms) {
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        uint32_t plen = 0;
        enum tq_frame_status st = tq_frame_peek(c->buf, c->len, TQ_FRAME_BYTES_LIMIT_MAX, &plen);
        if (st == TQ_FRAME_READY) {
            Ticketq__Response *resp =
                ticketq__response__unpack(NULL, plen, c->buf + TQ_FRAME_PREFIX_BYTES);
            size_t used = TQ_FRAME_PREFIX_BYTES + plen;
            memmove(c->buf, c->buf + used, c->len - used);
            c->len -= used;
            if (resp == NULL) fprintf(stderr, "rawc: server sent an undecodable response\n");
            return resp;
        }
        if (st != TQ_FRAME_NEED_MORE) {
            fprintf(stderr, "rawc: bad frame from server (status %d)\n", (int)st);
            return NULL;
        }
        if (fill(c, deadline) <= 0) return NULL;
    }
}

void rawc_free(Ticketq__Response *resp) {
    if (resp != NULL) ticketq__response__free_unpacked(resp, NULL);
}

Ticketq__Response *rawc_call(struct rawc *c, Ticketq__Request *req) {
    uint64_t id = rawc_send(c, req);
    if (id == 0) return NULL;
    Ticketq__Response *resp = rawc_recv(c, 10000);
    if (resp != NULL && resp->id != id) {
        fprintf(stderr, "rawc: response id %llu for request %llu\n", (unsigned long long)resp->id,
                (unsigned long long)id);
        exit(1);
    }
    return resp;
}

bool rawc_wait_closed(struct rawc *c, int timeout_ms) {
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        c->len = 0; /* drop whatever came */
        int rc = fill(c, deadline);
        if (rc == 0) return true;
        if (rc < 0) return false;
    }
}

int rawc_code(const Ticketq__Response *resp) {
    if (resp == NULL) return -1;
    return resp->error != NULL ? (int)resp->error->code : 0;
}

int rawc_auth(struct rawc *c, const char *token) {
    Ticketq__Auth op = TICKETQ__AUTH__INIT;
    op.token = (char *)(uintptr_t)token;
    RAWC_REQ(req, auth, AUTH, &op);
    Ticketq__Response *resp = rawc_call(c, &req);
    int code = rawc_code(resp);
    rawc_free(resp);
    return code;
}

void rawc_open_authed(struct rawc *c, const char *addr, const char *token) {
    TQ_CHECK_EQ(rawc_connect(c, addr), 0);
    TQ_CHECK_EQ(rawc_auth(c, token), 0);
}

static Ticketq__Response *checked(struct rawc *c, Ticketq__Request *req) {
    Ticketq__Response *resp = rawc_call(c, req);
    TQ_CHECK(resp != NULL);
    if (resp->error != NULL) {
        fprintf(stderr, "rawc: request failed: %d %s\n", (int)resp->error->code,
                resp->error->message ? resp->error->message : "");
    }
    TQ_CHECK(resp->error == NULL);
    return resp;
}

uint64_t rawc_tenant_create(struct rawc *admin, const char *name) {
    Ticketq__TenantCreate op = TICKETQ__TENANT_CREATE__INIT;
    op.name = (char *)(uintptr_t)name;
    RAWC_REQ(req, tenant_create, TENANT_CREATE, &op);
    Ticketq__Response *resp = checked(admin, &req);
    TQ_CHECK(resp->ids != NULL && resp->ids->has_tenant_id);
    uint64_t id = resp->ids->tenant_id;
    rawc_free(resp);
    return id;
}

uint64_t rawc_token_issue(struct rawc *c, uint64_t tenant_id, Ticketq__Role role, uint64_t agent_id,
                          char *secret_out) {
    Ticketq__TokenIssue op = TICKETQ__TOKEN_ISSUE__INIT;
    op.role = role;
    op.has_agent_id = agent_id != 0;
    op.agent_id = agent_id;
    RAWC_REQ(req, token_issue, TOKEN_ISSUE, &op);
    req.has_tenant_id = tenant_id != 0;
    req.tenant_id = tenant_id;
    Ticketq__Response *resp = checked(c, &req);
    TQ_CHECK(resp->ids != NULL && resp->ids->token_secret != NULL);
    snprintf(secret_out, 80, "%s", resp->ids->token_secret);
    uint64_t id = resp->ids->token_id;
    rawc_free(resp);
    return id;
}

uint64_t rawc_agent_create(struct rawc *c, uint64_t tenant_id, const char *name) {
    Ticketq__AgentCreate op = TICKETQ__AGENT_CREATE__INIT;
    op.name = (char *)(uintptr_t)name;
    RAWC_REQ(req, agent_create, AGENT_CREATE, &op);
    req.has_tenant_id = tenant_id != 0;
    req.tenant_id = tenant_id;
    Ticketq__Response *resp = checked(c, &req);
    uint64_t id = resp->ids->agent_id;
    rawc_free(resp);
    return id;
}

uint64_t rawc_queue_create(struct rawc *c, uint64_t tenant_id, const char *name) {
    Ticketq__QueueCreate op = TICKETQ__QUEUE_CREATE__INIT;
    op.name = (char *)(uintptr_t)name;
    RAWC_REQ(req, queue_create, QUEUE_CREATE, &op);
    req.has_tenant_id = tenant_id != 0;
    req.tenant_id = tenant_id;
    Ticketq__Response *resp = checked(c, &req);
    uint64_t id = resp->ids->queue_id;
    rawc_free(resp);
    return id;
}

void rawc_default_queue(struct rawc *c, uint64_t tenant_id, Ticketq__Channel channel,
                        uint64_t queue_id) {
    Ticketq__ChannelQueue cq = TICKETQ__CHANNEL_QUEUE__INIT;
    cq.channel = channel;
    cq.queue_id = queue_id;
    Ticketq__ChannelQueue *cqs[1] = {&cq};
    Ticketq__TenantSettings ts = TICKETQ__TENANT_SETTINGS__INIT;
    ts.n_default_queues = 1;
    ts.default_queues = cqs;
    RAWC_REQ(req, tenant_settings, TENANT_SETTINGS, &ts);
    req.has_tenant_id = true;
    req.tenant_id = tenant_id;
    rawc_free(checked(c, &req));
}

void rawc_expect_at(const Ticketq__Response *resp, int code, const char *file, int line) {
    int got = rawc_code(resp);
    if (got == code) return;
    fprintf(stderr, "%s:%d: expected code %d, got %d (%s)\n", file, line, code, got,
            resp == NULL                                  ? "no response"
            : resp->error != NULL && resp->error->message ? resp->error->message
                                                          : "");
    exit(1);
}

static struct tq_fixture *guarded;
static bool guard_done;

static void guard_at_exit(void) {
    if (guarded == NULL || guarded->pid <= 0 || guard_done) return;
    fprintf(stderr, "rawc: test failed: killing ticketqd (pid %d); data kept in %s\n",
            (int)guarded->pid, guarded->dir);
    tq_fixture_kill9(guarded);
}

void rawc_guard_fixture(struct tq_fixture *f) {
    if (guarded == NULL) atexit(guard_at_exit);
    guarded = f;
}

void rawc_free_port_addr(char *out, size_t cap) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    TQ_CHECK(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    TQ_CHECK_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t sl = sizeof(sa);
    TQ_CHECK_EQ(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    snprintf(out, cap, "127.0.0.1:%u", ntohs(sa.sin_port));
    close(fd);
}

void rawc_get_metrics(const char *addr, char *out, size_t cap) {
    TQ_CHECK(cap > 0);
    const char *colon = strrchr(addr, ':');
    TQ_CHECK(colon != NULL);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    TQ_CHECK(fd >= 0);
    TQ_CHECK_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    const char req[] = "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n";
    TQ_CHECK_EQ(write(fd, req, sizeof(req) - 1), (ssize_t)(sizeof(req) - 1));
    size_t len = 0;
    ssize_t n;
    while (len + 1 < cap && (n = read(fd, out + len, cap - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(fd);
}

uint64_t rawc_metric_value(const char *text, const char *name) {
    char needle[128];
    snprintf(needle, sizeof(needle), "\n%s ", name);
    const char *p = strstr(text, needle);
    TQ_CHECK(p != NULL);
    return strtoull(p + strlen(needle), NULL, 10);
}

double rawc_metric_sum(const char *text, const char *prefix) {
    size_t plen = strlen(prefix);
    double sum = 0;
    int found = 0;
    for (const char *line = text; line != NULL && *line != '\0';) {
        if (strncmp(line, prefix, plen) == 0 && (line[plen] == '{' || line[plen] == ' ')) {
            const char *v = strchr(line + plen, ' ');
            if (line[plen] == '{') v = strstr(line + plen, "} ");
            TQ_CHECK(v != NULL);
            sum += strtod(v + (v[0] == '}' ? 2 : 1), NULL);
            found++;
        }
        line = strchr(line, '\n');
        if (line != NULL) line++;
    }
    TQ_CHECK(found > 0);
    return sum;
}

double rawc_check_request_phases(const char *text) {
    double count = rawc_metric_sum(text, "ticketq_request_seconds_count");
    double sum = rawc_metric_sum(text, "ticketq_request_seconds_sum");
    double to_ack_count =
        rawc_metric_sum(text, "ticketq_request_phase_seconds_count{phase=\"to_ack\"}");
    double release_count =
        rawc_metric_sum(text, "ticketq_request_phase_seconds_count{phase=\"release\"}");
    double to_ack = rawc_metric_sum(text, "ticketq_request_phase_seconds_sum{phase=\"to_ack\"}");
    double release = rawc_metric_sum(text, "ticketq_request_phase_seconds_sum{phase=\"release\"}");
    TQ_CHECK(count > 0);
    TQ_CHECK(to_ack_count == count);
    TQ_CHECK(release_count == count);
    TQ_CHECK(to_ack >= 0 && release >= 0);
    /* Both sides are rendered with %g (6 significant digits): allow that rounding. */
    double diff = to_ack + release - sum;
    TQ_CHECK(diff < 1e-4 * sum + 2e-6 && -diff < 1e-4 * sum + 2e-6);
    return to_ack;
}
