/* client/client.c: libticketq, the blocking/pipelined client of ticketqd (API in ticketq.h).
 *
 * What it owns: one socket per struct tq_client, a send buffer of packed request frames not yet
 * written, a receive buffer of bytes not yet decoded, the window of pipelined request ids, and
 * (optionally) one subscription with the event frames that arrived while a blocking call was
 * waiting for its own response.
 *
 * Invariants:
 *   - sbuf[soff..slen) are whole frames not yet written; rbuf[roff..rlen) are bytes read but
 *     not yet decoded. Neither ever holds more than one frame above frame_bytes_max: every
 *     length prefix is checked (tq_frame_peek) before the payload is awaited.
 *   - Request ids are allocated from next_id, strictly increasing. Pipelined requests in flight
 *     are the contiguous ids [inflight_first, inflight_first + inflight_count): tq_client_call,
 *     tq_client_subscribe and batches refuse to run while any are in flight, so nothing else
 *     can interleave with the window, and responses must come back in that order.
 *   - A transport failure (timeout, peer closed, bad frame) sets broken: after it the byte
 *     stream can no longer be trusted to be aligned with our ids, so every later call fails.
 *
 * Why blocking sockets with poll() and not an event loop: the library is linked by front ends
 * and scripts that want plain calls with timeouts; pipelining gives the throughput of an async
 * API without imposing a loop. The socket is non-blocking underneath so that every wait is a
 * poll() with the remaining time of the call's deadline, and so that flush can read responses
 * while it writes (a server that stops reading until we read its answers cannot deadlock us).
 *
 * Responses are unpacked with an allocator that goes through tq_alloc with the size stored in
 * a 16-byte header, so tq_client_response_free needs no context and sized tq_free still holds.
 */
#include "ticketq.h"

#include "frame.h"
#include "reqenc.h"
#include "respdec.h"
#include "tq_alloc.h"
#include "tq_assert.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Receive granularity: one recv() asks for at least this much free space. */
#define RECV_CHUNK_BYTES   ((size_t)64 * 1024)
#define ALLOC_HEADER_BYTES 16u
/* Event frames kept while a blocking call waits on a subscribed connection. The server sends
 * at most 256 events per frame, so this is ~260k events: far more than a call should ever
 * wait through, small enough that a runaway catch-up cannot eat the caller's memory. */
#define QUEUED_FRAMES_MAX 1024u

struct event_node {
    struct event_node *next;
    Ticketq__Response *resp; /* id == sub_id: an EventBatch or the subscription's error */
};

struct tq_subscription {
    struct tq_client *client;
    uint64_t id;                   /* the Subscribe request's id */
    Ticketq__Response *current;    /* EventBatch being handed out, or NULL */
    size_t current_index;          /* next event of current */
    uint64_t lsn_last;             /* of the last event returned */
    struct event_node *queue_head; /* frames that arrived during tq_client_call */
    struct event_node *queue_tail;
    size_t queue_count; /* frames in the queue, at most QUEUED_FRAMES_MAX */
    bool ended;         /* the server ended it with an error */
    bool started;       /* the Subscribe's own answer arrived */
    uint64_t start_lsn; /* from it: events of records after this LSN follow */
};

struct tq_client {
    int fd;
    bool broken;
    bool timed_out; /* the last wait ended by its deadline */
    int io_timeout_ms;
    uint32_t frame_bytes_max;
    uint32_t inflight_max;
    uint64_t tenant_id; /* tq_client_set_tenant */
    uint64_t next_id;
    uint64_t inflight_first;
    size_t inflight_count;
    struct tq_client_identity identity;
    uint8_t *sbuf;
    size_t slen, soff, scap;
    uint8_t *rbuf;
    size_t rlen, roff, rcap;
    struct tq_subscription *sub;
};

/* ---- allocation for unpacked responses --------------------------------------------------- */

/* ctx, when not NULL, is a bool set on allocation failure (so decoding can tell out of memory
 * from corrupt bytes: protobuf-c returns NULL for both). */
static void *pb_alloc(void *ctx, size_t size) {
    uint8_t *p = tq_alloc(size + ALLOC_HEADER_BYTES);
    if (p == NULL) {
        if (ctx != NULL) *(bool *)ctx = true;
        return NULL;
    }
    memcpy(p, &size, sizeof(size));
    return p + ALLOC_HEADER_BYTES;
}

static void pb_free(void *ctx, void *ptr) {
    (void)ctx;
    if (ptr == NULL) return;
    uint8_t *p = (uint8_t *)ptr - ALLOC_HEADER_BYTES;
    size_t size;
    memcpy(&size, p, sizeof(size));
    tq_free(p, size + ALLOC_HEADER_BYTES);
}

static ProtobufCAllocator pb_allocator = {
    .alloc = pb_alloc, .free = pb_free, .allocator_data = NULL};

void tq_client_response_free(Ticketq__Response *resp) {
    if (resp == NULL) return;
    /* The common shapes (an Ingest's or Claim's Ids) directly; the rest by the descriptors. */
    if (tq_respdec_free(resp, &pb_allocator)) return;
    protobuf_c_message_free_unpacked(&resp->base, &pb_allocator);
}

/* ---- errors ------------------------------------------------------------------------------ */

TQ_NODISCARD static enum tq_err err_from_wire(Ticketq__ErrorCode code) {
    switch (code) {
    case TICKETQ__ERROR_CODE__OK: return TQ_OK;
    case TICKETQ__ERROR_CODE__INVALID_ARGUMENT: return TQ_ERR_INVALID_ARGUMENT;
    case TICKETQ__ERROR_CODE__NOT_FOUND: return TQ_ERR_NOT_FOUND;
    case TICKETQ__ERROR_CODE__FAILED_PRECONDITION: return TQ_ERR_FAILED_PRECONDITION;
    case TICKETQ__ERROR_CODE__UNAUTHENTICATED: return TQ_ERR_UNAUTHENTICATED;
    case TICKETQ__ERROR_CODE__PERMISSION_DENIED: return TQ_ERR_PERMISSION_DENIED;
    case TICKETQ__ERROR_CODE__RESOURCE_EXHAUSTED: return TQ_ERR_RESOURCE_EXHAUSTED;
    case TICKETQ__ERROR_CODE__UNAVAILABLE: return TQ_ERR_UNAVAILABLE;
    case TICKETQ__ERROR_CODE__INTERNAL: return TQ_ERR_INTERNAL;
    case _TICKETQ__ERROR_CODE_IS_INT_SIZE: break;
    }
    return TQ_ERR_INTERNAL; /* a code newer than this library: not retryable, not ours */
}

enum tq_err tq_client_response_error(const Ticketq__Response *resp, struct tq_error *err) {
    TQ_ASSERT(resp != NULL);
    if (resp->error == NULL) return TQ_OK;
    enum tq_err code = err_from_wire(resp->error->code);
    if (code == TQ_OK) return TQ_OK; /* an explicit OK error is success */
    const char *msg = resp->error->message;
    return tq_error_set(err, code, "%s", msg != NULL && msg[0] != '\0' ? msg : tq_err_name(code));
}

/* Marks the client unusable and returns code with the message. */
TQ_NODISCARD static enum tq_err TQ_PRINTF(4, 5)
    fail_broken(struct tq_client *c, struct tq_error *err, enum tq_err code, const char *fmt, ...) {
    c->broken = true;
    va_list ap;
    va_start(ap, fmt);
    tq_error_setv(err, code, fmt, ap);
    va_end(ap);
    return code;
}

TQ_NODISCARD static enum tq_err check_usable(const struct tq_client *c, struct tq_error *err) {
    if (c->broken) return tq_error_set(err, TQ_ERR_UNAVAILABLE, "connection broken");
    return TQ_OK;
}

/* ---- time -------------------------------------------------------------------------------- */

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A deadline for timeout_ms from now; -1 = none. */
static int64_t deadline_after(int timeout_ms) {
    if (timeout_ms < 0) return -1;
    return now_ms() + timeout_ms;
}

static int remaining_ms(int64_t deadline) {
    if (deadline < 0) return -1;
    int64_t left = deadline - now_ms();
    if (left <= 0) return 0;
    return left > 1000000000 ? 1000000000 : (int)left;
}

/* ---- connect ----------------------------------------------------------------------------- */

TQ_NODISCARD static enum tq_err set_nonblocking(int fd, struct tq_error *err) {
    int flags = fcntl(fd, F_GETFL, 0);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        return tq_error_set(err, TQ_ERR_IO, "fcntl: %s", strerror(errno));
    }
    return TQ_OK;
}

/* Connects fd (non-blocking) to sa within the deadline. */
TQ_NODISCARD static enum tq_err connect_fd(int fd, const struct sockaddr *sa, socklen_t sa_len,
                                           int64_t deadline, const char *addr,
                                           struct tq_error *err) {
    TQ_ASSERT(fd >= 0);
    TQ_ASSERT(sa != NULL);
    if (connect(fd, sa, sa_len) == 0) return TQ_OK;
    if (errno != EINPROGRESS && errno != EINTR) {
        return tq_error_set(err, TQ_ERR_UNAVAILABLE, "connect %s: %s", addr, strerror(errno));
    }
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int n = poll(&pfd, 1, remaining_ms(deadline));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return tq_error_set(err, TQ_ERR_IO, "poll: %s", strerror(errno));
        if (n == 0) return tq_error_set(err, TQ_ERR_UNAVAILABLE, "connect %s: timed out", addr);
        break;
    }
    int so_error = 0;
    socklen_t len = sizeof(so_error);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) < 0) {
        return tq_error_set(err, TQ_ERR_IO, "getsockopt: %s", strerror(errno));
    }
    if (so_error != 0) {
        return tq_error_set(err, TQ_ERR_UNAVAILABLE, "connect %s: %s", addr, strerror(so_error));
    }
    return TQ_OK;
}

TQ_NODISCARD static enum tq_err connect_unix(const char *path, int64_t deadline, int *fd_out,
                                             struct tq_error *err) {
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(sun.sun_path)) {
        return tq_error_set(err, TQ_ERR_INVALID_ARGUMENT, "unix socket path must be 1..%zu bytes",
                            sizeof(sun.sun_path) - 1);
    }
    memcpy(sun.sun_path, path, n + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return tq_error_set(err, TQ_ERR_IO, "socket: %s", strerror(errno));
    enum tq_err rc =
        connect_fd(fd, (const struct sockaddr *)&sun, sizeof(sun), deadline, path, err);
    if (rc != TQ_OK) {
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return TQ_OK;
}

/* Splits "host:port" / "[v6]:port" into host and port (both NUL-terminated copies). */
TQ_NODISCARD static enum tq_err split_host_port(const char *addr, char *host, size_t host_cap,
                                                char *port, size_t port_cap, struct tq_error *err) {
    const char *host_begin = addr;
    const char *host_end;
    const char *colon;
    if (addr[0] == '[') {
        host_begin = addr + 1;
        host_end = strchr(host_begin, ']');
        if (host_end == NULL || host_end[1] != ':') {
            return tq_error_set(err, TQ_ERR_INVALID_ARGUMENT, "address %s: expected [IPV6]:PORT",
                                addr);
        }
        colon = host_end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL) {
            return tq_error_set(err, TQ_ERR_INVALID_ARGUMENT,
                                "address %s: expected HOST:PORT or unix:PATH", addr);
        }
        host_end = colon;
        if (memchr(addr, ':', (size_t)(colon - addr)) != NULL) {
            return tq_error_set(err, TQ_ERR_INVALID_ARGUMENT,
                                "address %s: write IPv6 addresses as [ADDR]:PORT", addr);
        }
    }
    size_t host_len = (size_t)(host_end - host_begin);
    size_t port_len = strlen(colon + 1);
    if (host_len == 0 || host_len >= host_cap || port_len == 0 || port_len >= port_cap) {
        return tq_error_set(err, TQ_ERR_INVALID_ARGUMENT, "address %s: bad host or port", addr);
    }
    for (size_t i = 0; i < port_len; i++) {
        if (!isdigit((unsigned char)colon[1 + i])) {
            return tq_error_set(err, TQ_ERR_INVALID_ARGUMENT, "address %s: port must be numeric",
                                addr);
        }
    }
    memcpy(host, host_begin, host_len);
    host[host_len] = '\0';
    memcpy(port, colon + 1, port_len + 1);
    return TQ_OK;
}

TQ_NODISCARD static enum tq_err connect_tcp(const char *addr, int64_t deadline, int *fd_out,
                                            struct tq_error *err) {
    char host[256], port[16];
    enum tq_err rc = split_host_port(addr, host, sizeof(host), port, sizeof(port), err);
    if (rc != TQ_OK) return rc;
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    struct addrinfo *list = NULL;
    int gai = getaddrinfo(host, port, &hints, &list); /* names: bounded by the resolver's own */
    if (gai != 0) {
        return tq_error_set(err, TQ_ERR_UNAVAILABLE, "resolve %s: %s", host, gai_strerror(gai));
    }
    rc = tq_error_set(err, TQ_ERR_UNAVAILABLE, "connect %s: no address", addr);
    for (struct addrinfo *ai = list; ai != NULL; ai = ai->ai_next) {
        int fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            rc = tq_error_set(err, TQ_ERR_IO, "socket: %s", strerror(errno));
            continue;
        }
        rc = connect_fd(fd, ai->ai_addr, ai->ai_addrlen, deadline, addr, err);
        if (rc == TQ_OK) {
            int one = 1;
            (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            *fd_out = fd;
            break;
        }
        close(fd);
    }
    freeaddrinfo(list);
    return rc;
}

/* ---- buffers and I/O --------------------------------------------------------------------- */

/* Makes room for at least need more bytes after slen (compacting first). */
TQ_NODISCARD static enum tq_err sbuf_reserve(struct tq_client *c, size_t need,
                                             struct tq_error *err) {
    if (c->soff > 0 && c->soff == c->slen) c->soff = c->slen = 0;
    if (c->scap - c->slen >= need) return TQ_OK;
    if (c->soff > 0) {
        memmove(c->sbuf, c->sbuf + c->soff, c->slen - c->soff);
        c->slen -= c->soff;
        c->soff = 0;
        if (c->scap - c->slen >= need) return TQ_OK;
    }
    size_t cap = c->scap != 0 ? c->scap : RECV_CHUNK_BYTES;
    while (cap - c->slen < need)
        cap *= 2;
    uint8_t *p = tq_realloc(c->sbuf, c->scap, cap);
    if (p == NULL) return tq_error_set(err, TQ_ERR_INTERNAL, "out of memory (%zu bytes)", cap);
    c->sbuf = p;
    c->scap = cap;
    return TQ_OK;
}

/* Makes room for RECV_CHUNK_BYTES more bytes after rlen; bounded by the frame limit since a
 * caller only reads when the buffered bytes do not yet hold a whole frame. */
TQ_NODISCARD static enum tq_err rbuf_reserve(struct tq_client *c, struct tq_error *err) {
    if (c->roff == c->rlen) c->roff = c->rlen = 0;
    if (c->rcap - c->rlen >= RECV_CHUNK_BYTES) return TQ_OK;
    if (c->roff > 0) {
        memmove(c->rbuf, c->rbuf + c->roff, c->rlen - c->roff);
        c->rlen -= c->roff;
        c->roff = 0;
        if (c->rcap - c->rlen >= RECV_CHUNK_BYTES) return TQ_OK;
    }
    size_t cap = c->rcap != 0 ? c->rcap * 2 : 2 * RECV_CHUNK_BYTES;
    uint8_t *p = tq_realloc(c->rbuf, c->rcap, cap);
    if (p == NULL) return fail_broken(c, err, TQ_ERR_INTERNAL, "out of memory (%zu bytes)", cap);
    c->rbuf = p;
    c->rcap = cap;
    return TQ_OK;
}

/* One recv() of whatever is available. Sets *got (0 if it would block). */
TQ_NODISCARD static enum tq_err recv_available(struct tq_client *c, size_t *got,
                                               struct tq_error *err) {
    *got = 0;
    enum tq_err rc = rbuf_reserve(c, err);
    if (rc != TQ_OK) return rc;
    for (;;) {
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, MSG_DONTWAIT);
        if (n > 0) {
            c->rlen += (size_t)n;
            *got = (size_t)n;
            return TQ_OK;
        }
        if (n == 0) return fail_broken(c, err, TQ_ERR_UNAVAILABLE, "server closed the connection");
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return TQ_OK;
        if (errno == ECONNRESET || errno == EPIPE) {
            return fail_broken(c, err, TQ_ERR_UNAVAILABLE, "connection reset by server");
        }
        return fail_broken(c, err, TQ_ERR_IO, "recv: %s", strerror(errno));
    }
}

/* Waits for events on the socket until deadline. *revents = 0 on timeout (c->timed_out). */
TQ_NODISCARD static enum tq_err wait_socket(struct tq_client *c, short events, int64_t deadline,
                                            short *revents, struct tq_error *err) {
    for (;;) {
        struct pollfd pfd = {.fd = c->fd, .events = events};
        int n = poll(&pfd, 1, remaining_ms(deadline));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_broken(c, err, TQ_ERR_IO, "poll: %s", strerror(errno));
        *revents = 0;
        if (n > 0) *revents = pfd.revents;
        if (n == 0) c->timed_out = true;
        return TQ_OK;
    }
}

/* Writes all of sbuf, reading whatever arrives meanwhile into rbuf. */
TQ_NODISCARD static enum tq_err send_pending(struct tq_client *c, int64_t deadline,
                                             struct tq_error *err) {
    while (c->soff < c->slen) {
        ssize_t n = send(c->fd, c->sbuf + c->soff, c->slen - c->soff, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            c->soff += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            if (errno == EPIPE || errno == ECONNRESET) {
                return fail_broken(c, err, TQ_ERR_UNAVAILABLE, "server closed the connection");
            }
            return fail_broken(c, err, TQ_ERR_IO, "send: %s", strerror(errno));
        }
        short revents = 0;
        enum tq_err rc = wait_socket(c, POLLIN | POLLOUT, deadline, &revents, err);
        if (rc != TQ_OK) return rc;
        if (revents == 0) return fail_broken(c, err, TQ_ERR_UNAVAILABLE, "send: timed out");
        if (revents & (POLLIN | POLLHUP | POLLERR)) {
            size_t got;
            rc = recv_available(c, &got, err);
            if (rc != TQ_OK) return rc;
        }
    }
    c->soff = c->slen = 0;
    return TQ_OK;
}

/* Decodes the next whole frame of rbuf into *resp_out, or sets it NULL if none is complete. */
TQ_NODISCARD static enum tq_err decode_buffered(struct tq_client *c, Ticketq__Response **resp_out,
                                                struct tq_error *err) {
    *resp_out = NULL;
    if (c->rlen == c->roff) return TQ_OK; /* nothing buffered (rbuf may still be NULL) */
    uint32_t len = 0;
    const uint8_t *p = c->rbuf + c->roff;
    switch (tq_frame_peek(p, c->rlen - c->roff, c->frame_bytes_max, &len)) {
    case TQ_FRAME_NEED_MORE: return TQ_OK;
    case TQ_FRAME_EMPTY: return fail_broken(c, err, TQ_ERR_CORRUPT, "server sent an empty frame");
    case TQ_FRAME_TOO_LARGE:
        return fail_broken(c, err, TQ_ERR_RESOURCE_EXHAUSTED,
                           "server sent a %u-byte frame; the limit is %u bytes", len,
                           c->frame_bytes_max);
    case TQ_FRAME_READY: break;
    }
    bool out_of_memory = false;
    ProtobufCAllocator allocator = pb_allocator; /* same layout, so pb_free releases it */
    allocator.allocator_data = &out_of_memory;
    /* The common shapes (Response{id, lsn, Ids}) by respdec.c; the rest, and anything unusual
     * about those, by protobuf-c, which also judges malformed bytes. */
    ProtobufCMessage *m =
        (ProtobufCMessage *)tq_respdec_decode(p + TQ_FRAME_PREFIX_BYTES, len, &allocator);
    if (m == NULL) {
        out_of_memory = false; /* protobuf-c allocates again and reports its own failure */
        m = protobuf_c_message_unpack(&ticketq__response__descriptor, &allocator, len,
                                      p + TQ_FRAME_PREFIX_BYTES);
    }
    if (m == NULL && out_of_memory) {
        return fail_broken(c, err, TQ_ERR_INTERNAL, "out of memory decoding a %u-byte frame", len);
    }
    if (m == NULL) {
        return fail_broken(c, err, TQ_ERR_CORRUPT,
                           "server sent a %u-byte frame that is not a "
                           "valid Response",
                           len);
    }
    c->roff += TQ_FRAME_PREFIX_BYTES + len;
    TQ_ASSERT(c->roff <= c->rlen);
    *resp_out = (Ticketq__Response *)m;
    return TQ_OK;
}

/* Reads the next response frame, waiting until deadline. On timeout returns
 * TQ_ERR_UNAVAILABLE with c->timed_out set (the caller decides whether that breaks). */
TQ_NODISCARD static enum tq_err read_frame(struct tq_client *c, int64_t deadline,
                                           Ticketq__Response **resp_out, struct tq_error *err) {
    c->timed_out = false;
    for (;;) {
        enum tq_err rc = decode_buffered(c, resp_out, err);
        if (rc != TQ_OK || *resp_out != NULL) return rc;
        size_t got = 0;
        rc = recv_available(c, &got, err);
        if (rc != TQ_OK) return rc;
        if (got > 0) continue;
        short revents = 0;
        rc = wait_socket(c, POLLIN, deadline, &revents, err);
        if (rc != TQ_OK) return rc;
        if (revents == 0)
            return tq_error_set(err, TQ_ERR_UNAVAILABLE,
                                "timed out waiting for "
                                "the server");
    }
}

/* Packs req as one frame at the end of sbuf (with tenant_id filled in); sets req->id. */
TQ_NODISCARD static enum tq_err queue_request(struct tq_client *c, Ticketq__Request *req,
                                              struct tq_error *err) {
    TQ_ASSERT(req != NULL);
    TQ_ASSERT(req->base.descriptor == &ticketq__request__descriptor);
    req->id = c->next_id;
    Ticketq__Request copy = *req;
    if (!copy.has_tenant_id && c->tenant_id != 0) {
        copy.has_tenant_id = 1;
        copy.tenant_id = c->tenant_id;
    }
    /* The common shapes (Ingest, Claim, Reply) by reqenc.c, the same bytes without protobuf-c's
     * descriptor walks; everything else (and any missing required field) by protobuf-c. */
    size_t payload = tq_reqenc_size(&copy);
    bool fast = payload > 0;
    if (!fast) {
        if (!protobuf_c_message_check(&copy.base)) {
            return tq_error_set(err, TQ_ERR_INVALID_ARGUMENT,
                                "request is missing a required field (or has a NULL string)");
        }
        /* The size once: tq_frame_size and then tq_frame_pack walked the message for it twice
         * (protobuf-c's size and pack were ~5% of ticketq-bench's CPU samples at 64 clients). */
        payload = protobuf_c_message_get_packed_size(&copy.base);
    }
    if (payload > c->frame_bytes_max) {
        return tq_error_set(err, TQ_ERR_RESOURCE_EXHAUSTED,
                            "request of %zu bytes is above the frame limit of %u bytes", payload,
                            c->frame_bytes_max);
    }
    enum tq_err rc = sbuf_reserve(c, TQ_FRAME_PREFIX_BYTES + payload, err);
    if (rc != TQ_OK) return rc;
    uint8_t *out = c->sbuf + c->slen;
    tq_frame_put_prefix(out, (uint32_t)payload);
    size_t written = fast ? tq_reqenc_pack(&copy, out + TQ_FRAME_PREFIX_BYTES)
                          : protobuf_c_message_pack(&copy.base, out + TQ_FRAME_PREFIX_BYTES);
    TQ_ASSERT(written == payload);
    c->slen += TQ_FRAME_PREFIX_BYTES + payload;
    c->next_id++;
    return TQ_OK;
}

static void sub_enqueue(struct tq_subscription *sub, struct event_node *node) {
    node->next = NULL;
    sub->queue_count++;
    if (sub->queue_tail != NULL) {
        sub->queue_tail->next = node;
    } else {
        sub->queue_head = node;
    }
    sub->queue_tail = node;
}

/* Waits for the response with id, keeping the open subscription's frames for later. */
TQ_NODISCARD static enum tq_err await_response(struct tq_client *c, uint64_t id, int64_t deadline,
                                               Ticketq__Response **resp_out, struct tq_error *err) {
    for (;;) {
        Ticketq__Response *resp = NULL;
        enum tq_err rc = read_frame(c, deadline, &resp, err);
        if (rc != TQ_OK) {
            if (c->timed_out) c->broken = true; /* a late answer would misalign the stream */
            return rc;
        }
        TQ_ASSERT(resp != NULL); /* read_frame returns a frame or an error */
        if (resp->id == id) {
            *resp_out = resp;
            return TQ_OK;
        }
        if (c->sub != NULL && resp->id == c->sub->id && c->sub->queue_count >= QUEUED_FRAMES_MAX) {
            tq_client_response_free(resp);
            return fail_broken(c, err, TQ_ERR_RESOURCE_EXHAUSTED,
                               "%u event frames arrived while waiting for an answer: make calls "
                               "on a client without a subscription",
                               QUEUED_FRAMES_MAX);
        }
        if (c->sub != NULL && resp->id == c->sub->id) {
            struct event_node *node = tq_alloc(sizeof(*node));
            if (node == NULL) {
                tq_client_response_free(resp);
                return fail_broken(c, err, TQ_ERR_INTERNAL, "out of memory");
            }
            node->resp = resp;
            sub_enqueue(c->sub, node);
            continue;
        }
        uint64_t got = resp->id;
        tq_client_response_free(resp);
        return fail_broken(c, err, TQ_ERR_CORRUPT,
                           "server answered id %llu while id %llu was expected",
                           (unsigned long long)got, (unsigned long long)id);
    }
}

/* ---- connection ------------------------------------------------------------------------- */

TQ_NODISCARD static enum tq_err authenticate(struct tq_client *c, const char *token,
                                             struct tq_error *err) {
    size_t n = strlen(token);
    if (n == 0 || n > TQ_CLIENT_TOKEN_BYTES_MAX) {
        return tq_error_set(err, TQ_ERR_INVALID_ARGUMENT, "token must be 1..%d bytes",
                            TQ_CLIENT_TOKEN_BYTES_MAX);
    }
    Ticketq__Auth auth = TICKETQ__AUTH__INIT;
    char *token_copy = tq_strdup(token); /* the generated struct wants char * */
    if (token_copy == NULL) return tq_error_set(err, TQ_ERR_INTERNAL, "out of memory");
    auth.token = token_copy;
    Ticketq__Request req = TICKETQ__REQUEST__INIT;
    req.op_case = TICKETQ__REQUEST__OP_AUTH;
    req.auth = &auth;
    Ticketq__Response *resp = NULL;
    enum tq_err rc = tq_client_call(c, &req, &resp, err);
    memset(token_copy, 0, n); /* do not leave the secret in freed memory */
    tq_free(token_copy, n + 1);
    if (rc == TQ_OK && resp->result_case == TICKETQ__RESPONSE__RESULT_AUTH) {
        c->identity.role = resp->auth->role;
        c->identity.tenant_id = resp->auth->has_tenant_id ? resp->auth->tenant_id : 0;
        c->identity.agent_id = resp->auth->has_agent_id ? resp->auth->agent_id : 0;
        c->identity.token_id = resp->auth->has_token_id ? resp->auth->token_id : 0;
    } else if (rc == TQ_OK) {
        rc = tq_error_set(err, TQ_ERR_CORRUPT, "server answered Auth without an AuthResult");
    }
    tq_client_response_free(resp);
    return rc;
}

enum tq_err tq_client_connect(const struct tq_client_options *options,
                              struct tq_client **client_out, struct tq_error *err) {
    TQ_ASSERT(options != NULL);
    TQ_ASSERT(client_out != NULL);
    *client_out = NULL;
    tq_error_clear(err);
    const char *addr = options->addr != NULL ? options->addr : TQ_CLIENT_ADDR_DEFAULT;
    uint32_t frame_max = options->frame_bytes_max != 0 ? options->frame_bytes_max
                                                       : TQ_CLIENT_FRAME_BYTES_DEFAULT_MAX;
    if (frame_max > TQ_FRAME_BYTES_LIMIT_MAX) {
        return tq_error_set(err, TQ_ERR_INVALID_ARGUMENT, "frame_bytes_max %u is above %u",
                            frame_max, TQ_FRAME_BYTES_LIMIT_MAX);
    }
    int connect_timeout = options->connect_timeout_ms != 0 ? options->connect_timeout_ms
                                                           : TQ_CLIENT_CONNECT_TIMEOUT_MS_DEFAULT;
    int64_t deadline = deadline_after(connect_timeout);
    int fd = -1;
    enum tq_err rc;
    if (strncmp(addr, "unix:", 5) == 0) {
        rc = connect_unix(addr + 5, deadline, &fd, err);
    } else {
        rc = connect_tcp(addr, deadline, &fd, err);
    }
    if (rc != TQ_OK) return rc;
    rc = set_nonblocking(fd, err); /* SOCK_NONBLOCK already; kept for fds of other origins */
    if (rc != TQ_OK) {
        close(fd);
        return rc;
    }
    struct tq_client *c = tq_calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return tq_error_set(err, TQ_ERR_INTERNAL, "out of memory");
    }
    c->fd = fd;
    c->frame_bytes_max = frame_max;
    c->io_timeout_ms =
        options->io_timeout_ms != 0 ? options->io_timeout_ms : TQ_CLIENT_IO_TIMEOUT_MS_DEFAULT;
    c->inflight_max =
        options->inflight_max != 0 ? options->inflight_max : TQ_CLIENT_INFLIGHT_DEFAULT_MAX;
    c->next_id = 1;
    if (options->token != NULL) {
        rc = authenticate(c, options->token, err);
        if (rc != TQ_OK) {
            tq_client_close(c);
            return rc;
        }
    }
    *client_out = c;
    return TQ_OK;
}

static void sub_free(struct tq_subscription *sub) {
    struct event_node *node = sub->queue_head;
    while (node != NULL) {
        struct event_node *next = node->next;
        tq_client_response_free(node->resp);
        tq_free(node, sizeof(*node));
        node = next;
    }
    tq_client_response_free(sub->current);
    tq_free(sub, sizeof(*sub));
}

void tq_client_close(struct tq_client *client) {
    if (client == NULL) return;
    if (client->sub != NULL) sub_free(client->sub);
    if (client->fd >= 0) close(client->fd);
    tq_free(client->sbuf, client->scap);
    tq_free(client->rbuf, client->rcap);
    tq_free(client, sizeof(*client));
}

const struct tq_client_identity *tq_client_identity(const struct tq_client *client) {
    return &client->identity;
}

void tq_client_set_tenant(struct tq_client *client, uint64_t tenant_id) {
    client->tenant_id = tenant_id;
}

/* ---- blocking call ----------------------------------------------------------------------- */

enum tq_err tq_client_call(struct tq_client *client, Ticketq__Request *req,
                           Ticketq__Response **resp_out, struct tq_error *err) {
    TQ_ASSERT(client != NULL);
    TQ_ASSERT(resp_out != NULL);
    *resp_out = NULL;
    enum tq_err rc = check_usable(client, err);
    if (rc != TQ_OK) return rc;
    if (client->inflight_count != 0) {
        return tq_error_set(err, TQ_ERR_FAILED_PRECONDITION,
                            "%zu pipelined responses not collected yet", client->inflight_count);
    }
    rc = queue_request(client, req, err);
    if (rc != TQ_OK) return rc;
    int64_t deadline = deadline_after(client->io_timeout_ms);
    rc = send_pending(client, deadline, err);
    if (rc != TQ_OK) return rc;
    rc = await_response(client, req->id, deadline, resp_out, err);
    if (rc != TQ_OK) return rc;
    return tq_client_response_error(*resp_out, err);
}

void tq_client_ids_from(const Ticketq__Response *resp, struct tq_client_ids *ids) {
    memset(ids, 0, sizeof(*ids));
    if (resp == NULL) return;
    ids->lsn = resp->has_lsn ? resp->lsn : 0;
    if (resp->result_case != TICKETQ__RESPONSE__RESULT_IDS) return;
    const Ticketq__Ids *r = resp->ids;
#define COPY(f) ids->f = r->has_##f ? r->f : 0
    COPY(tenant_id);
    COPY(token_id);
    COPY(queue_id);
    COPY(agent_id);
    COPY(customer_id);
    COPY(ticket_id);
    COPY(message_id);
    COPY(ticket_number);
#undef COPY
#define COPY_BOOL(f) ids->f = r->has_##f && r->f
    COPY_BOOL(customer_created);
    COPY_BOOL(ticket_created);
    COPY_BOOL(duplicate);
    COPY_BOOL(over_capacity);
#undef COPY_BOOL
}

/* Calls req and, on success, copies the ids; frees the response. */
TQ_NODISCARD static enum tq_err call_ids(struct tq_client *c, Ticketq__Request *req,
                                         struct tq_client_ids *ids, struct tq_error *err) {
    Ticketq__Response *resp = NULL;
    enum tq_err rc = tq_client_call(c, req, &resp, err);
    if (rc == TQ_OK && ids != NULL) tq_client_ids_from(resp, ids);
    tq_client_response_free(resp);
    return rc;
}

/* Calls req and hands the response to the caller (NULL on error). */
TQ_NODISCARD static enum tq_err call_resp(struct tq_client *c, Ticketq__Request *req,
                                          Ticketq__Response **resp_out, struct tq_error *err) {
    Ticketq__Response *resp = NULL;
    enum tq_err rc = tq_client_call(c, req, &resp, err);
    if (rc != TQ_OK) {
        tq_client_response_free(resp);
        resp = NULL;
    }
    *resp_out = resp;
    return rc;
}

/* The generated structs hold char * for strings the library never writes: one place to
 * drop const, documented, instead of casts at every helper. */
static char *str_arg(const char *s) {
    union {
        const char *c;
        char *m;
    } u = {.c = s};
    return u.m;
}

#define REQUEST(var, field, CASE, value)                                                           \
    Ticketq__Request var = TICKETQ__REQUEST__INIT;                                                 \
    var.op_case = TICKETQ__REQUEST__OP_##CASE;                                                     \
    var.field = (value)

/* ---- typed helpers ----------------------------------------------------------------------- */

enum tq_err tq_client_ping(struct tq_client *client, struct tq_error *err) {
    Ticketq__Ping op = TICKETQ__PING__INIT;
    REQUEST(req, ping, PING, &op);
    return call_ids(client, &req, NULL, err);
}

enum tq_err tq_client_tenant_create(struct tq_client *client, const char *name,
                                    struct tq_client_ids *ids, struct tq_error *err) {
    Ticketq__TenantCreate op = TICKETQ__TENANT_CREATE__INIT;
    op.name = str_arg(name);
    REQUEST(req, tenant_create, TENANT_CREATE, &op);
    return call_ids(client, &req, ids, err);
}

enum tq_err tq_client_token_issue(struct tq_client *client, Ticketq__Role role, uint64_t agent_id,
                                  const char *name, char *secret, size_t secret_cap,
                                  struct tq_client_ids *ids, struct tq_error *err) {
    Ticketq__TokenIssue op = TICKETQ__TOKEN_ISSUE__INIT;
    op.role = role;
    op.has_agent_id = agent_id != 0;
    op.agent_id = agent_id;
    op.name = str_arg(name);
    REQUEST(req, token_issue, TOKEN_ISSUE, &op);
    Ticketq__Response *resp = NULL;
    enum tq_err rc = tq_client_call(client, &req, &resp, err);
    if (rc == TQ_OK) {
        if (ids != NULL) tq_client_ids_from(resp, ids);
        const char *s =
            resp->result_case == TICKETQ__RESPONSE__RESULT_IDS ? resp->ids->token_secret : NULL;
        if (s == NULL) {
            rc = tq_error_set(err, TQ_ERR_CORRUPT, "server issued a token without a secret");
        } else if (secret != NULL && secret_cap > 0) {
            (void)snprintf(secret, secret_cap, "%s", s); /* truncation is documented */
        }
    }
    tq_client_response_free(resp);
    return rc;
}

enum tq_err tq_client_token_revoke(struct tq_client *client, uint64_t token_id,
                                   struct tq_error *err) {
    Ticketq__TokenRevoke op = TICKETQ__TOKEN_REVOKE__INIT;
    op.token_id = token_id;
    REQUEST(req, token_revoke, TOKEN_REVOKE, &op);
    return call_ids(client, &req, NULL, err);
}

enum tq_err tq_client_queue_create(struct tq_client *client, const char *name, bool auto_assign,
                                   struct tq_client_ids *ids, struct tq_error *err) {
    Ticketq__QueueCreate op = TICKETQ__QUEUE_CREATE__INIT;
    op.name = str_arg(name);
    op.has_auto_assign = 1;
    op.auto_assign = auto_assign;
    REQUEST(req, queue_create, QUEUE_CREATE, &op);
    return call_ids(client, &req, ids, err);
}

enum tq_err tq_client_agent_create(struct tq_client *client, const char *name,
                                   uint32_t capacity_live, uint32_t capacity_async,
                                   struct tq_client_ids *ids, struct tq_error *err) {
    Ticketq__AgentCreate op = TICKETQ__AGENT_CREATE__INIT;
    op.name = str_arg(name);
    op.has_capacity_live = 1;
    op.capacity_live = capacity_live;
    op.has_capacity_async = 1;
    op.capacity_async = capacity_async;
    REQUEST(req, agent_create, AGENT_CREATE, &op);
    return call_ids(client, &req, ids, err);
}

enum tq_err tq_client_agent_update(struct tq_client *client, const Ticketq__AgentUpdate *update,
                                   struct tq_error *err) {
    Ticketq__AgentUpdate op = *update; /* shallow copy: the request wants a mutable pointer */
    REQUEST(req, agent_update, AGENT_UPDATE, &op);
    return call_ids(client, &req, NULL, err);
}

enum tq_err tq_client_ingest(struct tq_client *client, const Ticketq__Ingest *in,
                             struct tq_client_ids *ids, struct tq_error *err) {
    Ticketq__Ingest op = *in;
    REQUEST(req, ingest, INGEST, &op);
    return call_ids(client, &req, ids, err);
}

TQ_NODISCARD static enum tq_err reply_or_note(struct tq_client *client, uint64_t ticket_id,
                                              const char *body, bool note,
                                              struct tq_client_ids *ids, struct tq_error *err) {
    Ticketq__Reply op = TICKETQ__REPLY__INIT;
    op.ticket_id = ticket_id;
    op.body = str_arg(body);
    op.has_internal_note = note;
    op.internal_note = note;
    REQUEST(req, reply, REPLY, &op);
    return call_ids(client, &req, ids, err);
}

enum tq_err tq_client_reply(struct tq_client *client, uint64_t ticket_id, const char *body,
                            struct tq_client_ids *ids, struct tq_error *err) {
    return reply_or_note(client, ticket_id, body, false, ids, err);
}

enum tq_err tq_client_note(struct tq_client *client, uint64_t ticket_id, const char *body,
                           struct tq_client_ids *ids, struct tq_error *err) {
    return reply_or_note(client, ticket_id, body, true, ids, err);
}

enum tq_err tq_client_ticket_update(struct tq_client *client, const Ticketq__TicketUpdate *update,
                                    struct tq_client_ids *ids, struct tq_error *err) {
    Ticketq__TicketUpdate op = *update;
    REQUEST(req, ticket_update, TICKET_UPDATE, &op);
    return call_ids(client, &req, ids, err);
}

enum tq_err tq_client_claim(struct tq_client *client, uint64_t agent_id, struct tq_client_ids *ids,
                            struct tq_error *err) {
    Ticketq__Claim op = TICKETQ__CLAIM__INIT;
    op.has_agent_id = agent_id != 0;
    op.agent_id = agent_id;
    REQUEST(req, claim, CLAIM, &op);
    return call_ids(client, &req, ids, err);
}

enum tq_err tq_client_claim_reply(struct tq_client *client, uint64_t agent_id,
                                  const uint64_t *queue_ids, size_t queue_count, const char *body,
                                  int set_status, struct tq_client_ids *ids, struct tq_error *err) {
    Ticketq__ClaimReply reply = TICKETQ__CLAIM_REPLY__INIT;
    reply.body = str_arg(body);
    reply.has_set_status = set_status >= 0;
    reply.set_status = set_status >= 0 ? (Ticketq__Status)set_status : TICKETQ__STATUS__NEW;
    Ticketq__Claim op = TICKETQ__CLAIM__INIT;
    op.has_agent_id = agent_id != 0;
    op.agent_id = agent_id;
    op.n_queue_ids = queue_ids != NULL ? queue_count : 0;
    union {
        const uint64_t *c;
        uint64_t *m;
    } ids_arg = {.c = queue_ids}; /* as str_arg: the library never writes through it */
    op.queue_ids = ids_arg.m;
    op.reply = &reply;
    REQUEST(req, claim, CLAIM, &op);
    return call_ids(client, &req, ids, err);
}

enum tq_err tq_client_release(struct tq_client *client, uint64_t ticket_id, struct tq_error *err) {
    Ticketq__Release op = TICKETQ__RELEASE__INIT;
    op.ticket_id = ticket_id;
    REQUEST(req, release, RELEASE, &op);
    return call_ids(client, &req, NULL, err);
}

enum tq_err tq_client_transfer(struct tq_client *client, uint64_t ticket_id, uint64_t to_queue_id,
                               uint64_t to_agent_id, struct tq_error *err) {
    Ticketq__Transfer op = TICKETQ__TRANSFER__INIT;
    op.ticket_id = ticket_id;
    op.has_to_queue_id = to_queue_id != 0;
    op.to_queue_id = to_queue_id;
    op.has_to_agent_id = to_agent_id != 0;
    op.to_agent_id = to_agent_id;
    REQUEST(req, transfer, TRANSFER, &op);
    return call_ids(client, &req, NULL, err);
}

enum tq_err tq_client_ticket_get(struct tq_client *client, uint64_t ticket_id,
                                 uint32_t message_offset, uint32_t message_limit,
                                 Ticketq__Response **resp_out, struct tq_error *err) {
    Ticketq__TicketGet op = TICKETQ__TICKET_GET__INIT;
    op.ticket_id = ticket_id;
    op.has_message_offset = message_offset != 0;
    op.message_offset = message_offset;
    op.has_message_limit = message_limit != 0;
    op.message_limit = message_limit;
    REQUEST(req, ticket_get, TICKET_GET, &op);
    return call_resp(client, &req, resp_out, err);
}

enum tq_err tq_client_queue_list(struct tq_client *client, uint64_t queue_id, uint32_t limit,
                                 Ticketq__Response **resp_out, struct tq_error *err) {
    Ticketq__QueueList op = TICKETQ__QUEUE_LIST__INIT;
    op.queue_id = queue_id;
    op.has_limit = limit != 0;
    op.limit = limit;
    REQUEST(req, queue_list, QUEUE_LIST, &op);
    return call_resp(client, &req, resp_out, err);
}

enum tq_err tq_client_queues_get(struct tq_client *client, Ticketq__Response **resp_out,
                                 struct tq_error *err) {
    Ticketq__QueuesGet op = TICKETQ__QUEUES_GET__INIT;
    REQUEST(req, queues_get, QUEUES_GET, &op);
    return call_resp(client, &req, resp_out, err);
}

enum tq_err tq_client_sla_nearest(struct tq_client *client, uint32_t limit,
                                  Ticketq__Response **resp_out, struct tq_error *err) {
    Ticketq__SlaNearest op = TICKETQ__SLA_NEAREST__INIT;
    op.has_limit = limit != 0;
    op.limit = limit;
    REQUEST(req, sla_nearest, SLA_NEAREST, &op);
    return call_resp(client, &req, resp_out, err);
}

enum tq_err tq_client_outbox_take(struct tq_client *client, Ticketq__Channel channel, uint32_t max,
                                  uint64_t lease_ms, Ticketq__Response **resp_out,
                                  struct tq_error *err) {
    Ticketq__OutboxTake op = TICKETQ__OUTBOX_TAKE__INIT;
    op.channel = channel;
    op.has_max = max != 0;
    op.max = max;
    op.has_lease_ms = lease_ms != 0;
    op.lease_ms = lease_ms;
    REQUEST(req, outbox_take, OUTBOX_TAKE, &op);
    return call_resp(client, &req, resp_out, err);
}

enum tq_err tq_client_outbox_ack(struct tq_client *client, uint64_t message_id,
                                 Ticketq__Delivery status, const char *reason,
                                 struct tq_error *err) {
    Ticketq__OutboxAck op = TICKETQ__OUTBOX_ACK__INIT;
    op.message_id = message_id;
    op.status = status;
    op.reason = str_arg(reason);
    REQUEST(req, outbox_ack, OUTBOX_ACK, &op);
    return call_ids(client, &req, NULL, err);
}

enum tq_err tq_client_customer_lookup(struct tq_client *client, Ticketq__Channel channel,
                                      const char *external_id, Ticketq__Response **resp_out,
                                      struct tq_error *err) {
    Ticketq__Identity identity = TICKETQ__IDENTITY__INIT;
    identity.channel = channel;
    identity.external_id = str_arg(external_id);
    Ticketq__CustomerLookup op = TICKETQ__CUSTOMER_LOOKUP__INIT;
    op.identity = &identity;
    REQUEST(req, customer_lookup, CUSTOMER_LOOKUP, &op);
    return call_resp(client, &req, resp_out, err);
}

enum tq_err tq_client_customer_link(struct tq_client *client, uint64_t customer_id,
                                    Ticketq__Channel channel, const char *external_id,
                                    struct tq_error *err) {
    Ticketq__Identity identity = TICKETQ__IDENTITY__INIT;
    identity.channel = channel;
    identity.external_id = str_arg(external_id);
    Ticketq__CustomerLink op = TICKETQ__CUSTOMER_LINK__INIT;
    op.customer_id = customer_id;
    op.identity = &identity;
    REQUEST(req, customer_link, CUSTOMER_LINK, &op);
    return call_ids(client, &req, NULL, err);
}

enum tq_err tq_client_customer_merge(struct tq_client *client, uint64_t survivor_id,
                                     uint64_t merged_id, struct tq_error *err) {
    Ticketq__CustomerMerge op = TICKETQ__CUSTOMER_MERGE__INIT;
    op.survivor_id = survivor_id;
    op.merged_id = merged_id;
    REQUEST(req, customer_merge, CUSTOMER_MERGE, &op);
    return call_ids(client, &req, NULL, err);
}

enum tq_err tq_client_customer_erase(struct tq_client *client, uint64_t customer_id,
                                     struct tq_error *err) {
    Ticketq__CustomerErase op = TICKETQ__CUSTOMER_ERASE__INIT;
    op.customer_id = customer_id;
    REQUEST(req, customer_erase, CUSTOMER_ERASE, &op);
    return call_ids(client, &req, NULL, err);
}

enum tq_err tq_client_compact(struct tq_client *client, const Ticketq__Compact *op,
                              Ticketq__Response **resp_out, struct tq_error *err) {
    Ticketq__Compact dflt = TICKETQ__COMPACT__INIT;
    Ticketq__Compact copy = op != NULL ? *op : dflt;
    REQUEST(req, compact, COMPACT, &copy);
    return call_resp(client, &req, resp_out, err);
}

enum tq_err tq_client_compact_status(struct tq_client *client, Ticketq__Response **resp_out,
                                     struct tq_error *err) {
    Ticketq__CompactStatus op = TICKETQ__COMPACT_STATUS__INIT;
    REQUEST(req, compact_status, COMPACT_STATUS, &op);
    return call_resp(client, &req, resp_out, err);
}

enum tq_err tq_client_stats(struct tq_client *client, Ticketq__Response **resp_out,
                            struct tq_error *err) {
    Ticketq__Stats op = TICKETQ__STATS__INIT;
    REQUEST(req, stats, STATS, &op);
    return call_resp(client, &req, resp_out, err);
}

enum tq_err tq_client_consumer_ack(struct tq_client *client, const char *consumer, uint64_t lsn,
                                   struct tq_error *err) {
    Ticketq__ConsumerAck op = TICKETQ__CONSUMER_ACK__INIT;
    op.consumer = str_arg(consumer);
    op.lsn = lsn;
    REQUEST(req, consumer_ack, CONSUMER_ACK, &op);
    return call_ids(client, &req, NULL, err);
}

/* ---- pipelining and batches -------------------------------------------------------------- */

enum tq_err tq_client_submit(struct tq_client *client, Ticketq__Request *req, uint64_t *id_out,
                             struct tq_error *err) {
    TQ_ASSERT(client != NULL);
    TQ_ASSERT(req != NULL);
    enum tq_err rc = check_usable(client, err);
    if (rc != TQ_OK) return rc;
    if (client->sub != NULL) {
        return tq_error_set(err, TQ_ERR_FAILED_PRECONDITION,
                            "cannot pipeline on a client with an open subscription");
    }
    if (client->inflight_count >= client->inflight_max) {
        return tq_error_set(err, TQ_ERR_RESOURCE_EXHAUSTED,
                            "%zu requests in flight: collect before submitting more",
                            client->inflight_count);
    }
    rc = queue_request(client, req, err);
    if (rc != TQ_OK) return rc;
    if (client->inflight_count == 0) client->inflight_first = req->id;
    client->inflight_count++;
    TQ_ASSERT(client->inflight_first + client->inflight_count == client->next_id);
    if (id_out != NULL) *id_out = req->id;
    return TQ_OK;
}

enum tq_err tq_client_flush(struct tq_client *client, struct tq_error *err) {
    enum tq_err rc = check_usable(client, err);
    if (rc != TQ_OK) return rc;
    return send_pending(client, deadline_after(client->io_timeout_ms), err);
}

size_t tq_client_inflight(const struct tq_client *client) {
    return client->inflight_count;
}

enum tq_err tq_client_collect(struct tq_client *client, Ticketq__Response **resp_out,
                              struct tq_error *err) {
    TQ_ASSERT(client != NULL);
    TQ_ASSERT(resp_out != NULL);
    *resp_out = NULL;
    enum tq_err rc = check_usable(client, err);
    if (rc != TQ_OK) return rc;
    if (client->inflight_count == 0) {
        return tq_error_set(err, TQ_ERR_FAILED_PRECONDITION, "no request in flight");
    }
    int64_t deadline = deadline_after(client->io_timeout_ms);
    if (client->soff < client->slen) {
        rc = send_pending(client, deadline, err);
        if (rc != TQ_OK) return rc;
    }
    rc = await_response(client, client->inflight_first, deadline, resp_out, err);
    if (rc != TQ_OK) return rc;
    client->inflight_first++;
    client->inflight_count--;
    return TQ_OK;
}

enum tq_err tq_client_try_collect(struct tq_client *client, Ticketq__Response **resp_out,
                                  struct tq_error *err) {
    TQ_ASSERT(client != NULL);
    TQ_ASSERT(resp_out != NULL);
    *resp_out = NULL;
    enum tq_err rc = check_usable(client, err);
    if (rc != TQ_OK) return rc;
    if (client->inflight_count == 0) {
        return tq_error_set(err, TQ_ERR_FAILED_PRECONDITION, "no request in flight");
    }
    /* Pipelining refuses to start with a subscription open, so every frame here answers the
     * window; say so rather than misfile an event frame. */
    if (client->sub != NULL) {
        return tq_error_set(err, TQ_ERR_FAILED_PRECONDITION,
                            "try_collect on a client with an open subscription");
    }
    Ticketq__Response *resp = NULL;
    rc = decode_buffered(client, &resp, err);
    if (rc != TQ_OK) return rc;
    if (resp == NULL) {
        /* One read of what the socket holds; a whole frame may now be buffered. */
        size_t got = 0;
        rc = recv_available(client, &got, err);
        if (rc != TQ_OK) return rc;
        if (got == 0) return TQ_OK;
        rc = decode_buffered(client, &resp, err);
        if (rc != TQ_OK || resp == NULL) return rc;
    }
    if (resp->id != client->inflight_first) {
        uint64_t got_id = resp->id;
        tq_client_response_free(resp);
        return fail_broken(client, err, TQ_ERR_CORRUPT,
                           "server answered id %llu while id %llu was expected",
                           (unsigned long long)got_id, (unsigned long long)client->inflight_first);
    }
    client->inflight_first++;
    client->inflight_count--;
    *resp_out = resp;
    return TQ_OK;
}

int tq_client_fd(const struct tq_client *client) {
    return client != NULL ? client->fd : -1;
}

enum tq_err tq_client_batch(struct tq_client *client, Ticketq__Request **ops, size_t count,
                            Ticketq__Response **resp_out, struct tq_error *err) {
    TQ_ASSERT(ops != NULL || count == 0);
    for (size_t i = 0; i < count; i++) {
        TQ_ASSERT(ops[i] != NULL);
        ops[i]->id = i + 1;
    }
    Ticketq__Batch batch = TICKETQ__BATCH__INIT;
    batch.n_ops = count;
    batch.ops = ops;
    REQUEST(req, batch, BATCH, &batch);
    enum tq_err rc = call_resp(client, &req, resp_out, err);
    if (rc == TQ_OK) TQ_ASSERT(*resp_out != NULL);
    if (rc == TQ_OK && ((*resp_out)->result_case != TICKETQ__RESPONSE__RESULT_BATCH ||
                        (*resp_out)->batch->n_results != count)) {
        tq_client_response_free(*resp_out);
        *resp_out = NULL;
        return tq_error_set(err, TQ_ERR_CORRUPT, "batch of %zu ops answered without %zu results",
                            count, count);
    }
    return rc;
}

/* ---- subscriptions ----------------------------------------------------------------------- */

enum tq_err tq_client_subscribe(struct tq_client *client,
                                const struct tq_subscribe_options *options,
                                struct tq_subscription **sub_out, struct tq_error *err) {
    TQ_ASSERT(client != NULL);
    TQ_ASSERT(options != NULL);
    *sub_out = NULL;
    enum tq_err rc = check_usable(client, err);
    if (rc != TQ_OK) return rc;
    if (client->sub != NULL || client->inflight_count != 0) {
        return tq_error_set(err, TQ_ERR_FAILED_PRECONDITION,
                            "client already has a subscription or requests in flight");
    }
    Ticketq__Subscribe op = TICKETQ__SUBSCRIBE__INIT;
    op.has_from_lsn = !options->from_now;
    op.from_lsn = options->from_now ? 0 : options->from_lsn;
    op.consumer = str_arg(options->consumer);
    Ticketq__EventType types[TICKETQ__EVENT_TYPE__CONFIG_CHANGED + 1];
    if (options->type_count > TQ_ARRAY_COUNT(types)) {
        return tq_error_set(err, TQ_ERR_INVALID_ARGUMENT, "%zu event types: at most %zu",
                            options->type_count, TQ_ARRAY_COUNT(types));
    }
    for (size_t i = 0; i < options->type_count; i++)
        types[i] = options->types[i];
    op.n_types = options->type_count;
    op.types = options->type_count != 0 ? types : NULL;
    op.has_ticket_id = options->ticket_id != 0;
    op.ticket_id = options->ticket_id;
    op.has_queue_id = options->queue_id != 0;
    op.queue_id = options->queue_id;
    REQUEST(req, subscribe, SUBSCRIBE, &op);
    struct tq_subscription *sub = tq_calloc(1, sizeof(*sub));
    if (sub == NULL) return tq_error_set(err, TQ_ERR_INTERNAL, "out of memory");
    rc = queue_request(client, &req, err);
    if (rc == TQ_OK) rc = send_pending(client, deadline_after(client->io_timeout_ms), err);
    if (rc != TQ_OK) {
        tq_free(sub, sizeof(*sub));
        return rc;
    }
    sub->client = client;
    sub->id = req.id;
    sub->lsn_last = options->from_lsn;
    client->sub = sub;
    *sub_out = sub;
    return TQ_OK;
}

/* Takes the next frame for the subscription: queued first, then from the socket. Sets
 * *resp_out NULL on timeout. */
TQ_NODISCARD static enum tq_err sub_next_frame(struct tq_subscription *sub, int64_t deadline,
                                               Ticketq__Response **resp_out, struct tq_error *err) {
    struct tq_client *c = sub->client;
    *resp_out = NULL;
    if (sub->queue_head != NULL) {
        struct event_node *node = sub->queue_head;
        sub->queue_head = node->next;
        if (sub->queue_head == NULL) sub->queue_tail = NULL;
        TQ_ASSERT(sub->queue_count > 0);
        sub->queue_count--;
        *resp_out = node->resp;
        tq_free(node, sizeof(*node));
        return TQ_OK;
    }
    Ticketq__Response *resp = NULL;
    enum tq_err rc = read_frame(c, deadline, &resp, err);
    if (rc != TQ_OK) {
        if (c->timed_out && !c->broken) {
            tq_error_clear(err);
            return TQ_OK; /* a quiet stream is not an error */
        }
        return rc;
    }
    if (resp->id != sub->id) {
        uint64_t got = resp->id;
        tq_client_response_free(resp);
        return fail_broken(c, err, TQ_ERR_CORRUPT,
                           "server sent id %llu on a subscription stream (id %llu)",
                           (unsigned long long)got, (unsigned long long)sub->id);
    }
    *resp_out = resp;
    return TQ_OK;
}

enum tq_err tq_subscription_next(struct tq_subscription *sub, const Ticketq__Event **event_out,
                                 int timeout_ms, struct tq_error *err) {
    TQ_ASSERT(sub != NULL);
    TQ_ASSERT(event_out != NULL);
    *event_out = NULL;
    enum tq_err rc = check_usable(sub->client, err);
    if (rc != TQ_OK) return rc;
    if (sub->ended) return tq_error_set(err, TQ_ERR_FAILED_PRECONDITION, "subscription ended");
    int64_t deadline = deadline_after(timeout_ms);
    for (;;) {
        if (sub->current != NULL) {
            const Ticketq__EventBatch *batch = sub->current->events;
            if (sub->current_index < batch->n_events) {
                const Ticketq__Event *ev = batch->events[sub->current_index++];
                /* The stream starts after start_lsn by contract; drop what a server sends at or
                 * below it (e.g. events of the record a durable consumer acked). */
                if (ev->lsn <= sub->start_lsn) continue;
                sub->lsn_last = ev->lsn;
                *event_out = ev;
                return TQ_OK;
            }
            tq_client_response_free(sub->current);
            sub->current = NULL;
        }
        Ticketq__Response *resp = NULL;
        rc = sub_next_frame(sub, deadline, &resp, err);
        if (rc != TQ_OK || resp == NULL) return rc;
        rc = tq_client_response_error(resp, err);
        if (rc != TQ_OK) {
            sub->ended = true;
            tq_client_response_free(resp);
            return rc;
        }
        if (resp->result_case == TICKETQ__RESPONSE__RESULT_EVENTS) {
            /* The Subscribe's own answer (no events) names where the stream starts. */
            if (!sub->started && resp->events->n_events == 0 && resp->has_lsn) {
                sub->started = true;
                sub->start_lsn = resp->lsn;
                if (resp->lsn > sub->lsn_last) sub->lsn_last = resp->lsn;
            }
            sub->current = resp;
            sub->current_index = 0;
        } else {
            tq_client_response_free(resp); /* the Subscribe's plain acknowledgement */
        }
    }
}

uint64_t tq_subscription_lsn(const struct tq_subscription *sub) {
    return sub->lsn_last;
}

enum tq_err tq_subscription_close(struct tq_subscription *sub, struct tq_error *err) {
    TQ_ASSERT(sub != NULL);
    struct tq_client *c = sub->client;
    TQ_ASSERT(c->sub == sub);
    enum tq_err rc = check_usable(c, err);
    if (rc == TQ_OK && !sub->ended) {
        Ticketq__Unsubscribe op = TICKETQ__UNSUBSCRIBE__INIT;
        REQUEST(req, unsubscribe, UNSUBSCRIBE, &op);
        Ticketq__Response *resp = NULL;
        rc = tq_client_call(c, &req, &resp, err); /* event frames before it are queued */
        tq_client_response_free(resp);
    }
    c->sub = NULL;
    sub_free(sub);
    return rc;
}

/* ---- names ------------------------------------------------------------------------------- */

/* Wire names with a disambiguating prefix drop it, per enum: Role ROLE_AGENT -> agent,
 * SlaClockState CLOCK_RUNNING -> running, Delivery DELIVERY_NONE -> none, EventField
 * FIELD_STATUS -> status, EventType EVENT_UNKNOWN -> unknown (but DELIVERY_STATUS stays
 * delivery_status: the prefix belongs to another enum). */
static const char *strip_prefix(const ProtobufCEnumDescriptor *descriptor, const char *name) {
    static const struct {
        const ProtobufCEnumDescriptor *descriptor;
        const char *prefix;
    } prefixes[] = {
        {&ticketq__role__descriptor, "ROLE_"},
        {&ticketq__sla_clock_state__descriptor, "CLOCK_"},
        {&ticketq__delivery__descriptor, "DELIVERY_"},
        {&ticketq__event_field__descriptor, "FIELD_"},
        {&ticketq__event_type__descriptor, "EVENT_"},
    };
    for (size_t i = 0; i < TQ_ARRAY_COUNT(prefixes); i++) {
        if (prefixes[i].descriptor != descriptor) continue;
        size_t n = strlen(prefixes[i].prefix);
        if (strncmp(name, prefixes[i].prefix, n) == 0 && name[n] != '\0') return name + n;
    }
    return name;
}

const char *tq_client_enum_name(const ProtobufCEnumDescriptor *descriptor, int value, char *buf,
                                size_t cap) {
    TQ_ASSERT(cap > 0);
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(descriptor, value);
    const char *name = v != NULL ? strip_prefix(descriptor, v->name) : "UNKNOWN";
    size_t i = 0;
    for (; name[i] != '\0' && i + 1 < cap; i++)
        buf[i] = (char)tolower((unsigned char)name[i]);
    buf[i] = '\0';
    return buf;
}

bool tq_client_enum_parse(const ProtobufCEnumDescriptor *descriptor, const char *name,
                          int *value_out) {
    for (unsigned i = 0; i < descriptor->n_values; i++) {
        const char *wire = strip_prefix(descriptor, descriptor->values[i].name);
        size_t n = strlen(wire);
        if (strlen(name) != n) continue;
        size_t j = 0;
        while (j < n && tolower((unsigned char)wire[j]) == tolower((unsigned char)name[j]))
            j++;
        if (j == n) {
            *value_out = descriptor->values[i].value;
            return true;
        }
    }
    return false;
}

const char *tq_client_channel_name(Ticketq__Channel channel) {
    static const char *const names[] = {"email",   "sms",       "whatsapp",  "wechat",
                                        "webchat", "messenger", "instagram", "amazon",
                                        "ebay",    "phone",     "api"};
    unsigned i = (unsigned)channel;
    return i < TQ_ARRAY_COUNT(names) ? names[i] : "unknown";
}

const char *tq_client_status_name(Ticketq__Status status) {
    static const char *const names[] = {"new", "open", "pending", "on_hold", "solved", "closed"};
    unsigned i = (unsigned)status;
    return i < TQ_ARRAY_COUNT(names) ? names[i] : "unknown";
}

const char *tq_client_role_name(Ticketq__Role role) {
    static const char *const names[] = {"server_admin", "tenant_admin", "agent", "integration"};
    unsigned i = (unsigned)role;
    return i < TQ_ARRAY_COUNT(names) ? names[i] : "unknown";
}
