/* bench/peer_redis.c: the Redis peer (a RESP2 client and the Redis data model of the peer
 * workloads). See peer_redis.h for the contract and docs/performance-peers.md for the set-up.
 *
 * Owns: the connections to Redis (one control connection, blocking, for script loading, the
 * initial load and stats; one non-blocking connection per bench client), their buffers, and the
 * Lua scripts below, which are the whole "application" on the Redis side.
 *
 * Invariants: replies on a connection arrive in request order (RESP pipelining), so each data
 * connection keeps a FIFO of tags; tag_count <= tag_cap (= the driver's pipeline depth). Every
 * byte from the server is validated by tq_resp_parse before use (never asserted on).
 *
 * Data model (identical meaning to the PostgreSQL schema, bench/peers/pg/schema.sql):
 *   cust:<ch>:ext-<n>  hash  id, tier, ot (newest unclosed ticket, 0 if none)
 *   t:<id>             hash  cust queue prio status(open|pending|closed) assignee deadline seq
 *                            msgs created updated
 *   t:<id>:m           list  message ids in order
 *   m:<id>             hash  ticket dir(in|out) body at
 *   q:<0..2>           zset  queued tickets, score prio * 1e12 + seq (claim = ZPOPMIN)
 *   sla                zset  queued tickets, score deadline (ms)
 *   next:cust next:ticket next:msg next:seq   counters
 * Scores stay below 1e13 so Lua's number-to-string conversion (%.14g) is exact.
 *
 * Buffers grow by doubling until a run reaches its steady state; they never shrink, so after
 * warm-up the request path does not allocate.
 */
#include "peer_redis.h"

#include "tq_alloc.h"
#include "tq_assert.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define BUF_BYTES_INITIAL       (64u * 1024)
#define BUF_BYTES_MAX           (256u * 1024 * 1024) /* a reply this large is a broken server */
#define RESP_DEPTH_MAX          16
#define LOAD_COMMANDS_PER_ROUND 20000u           /* pipelined commands between reply reads */
#define LOAD_ZADD_MEMBERS       1000u            /* members per ZADD while loading */
#define QUEUE_SCORE_PRIORITY    1000000000000ull /* score = prio * 1e12 + seq */
#define SUB_READ_TIMEOUT_S      10               /* an XREAD BLOCK answers well within this */

/* ---- scripts ----------------------------------------------------------------------------- */

/* The ingest unit, without its return: script_ingest and script_ingest_ev complete it. */
#define INGEST_BODY                                                                                \
    "local ck = KEYS[1]\n"                                                                         \
    "local now = tonumber(ARGV[3])\n"                                                              \
    "local c = redis.call('HMGET', ck, 'id', 'tier', 'ot')\n"                                      \
    "local tier\n"                                                                                 \
    "if not c[1] then\n"                                                                           \
    "  local cid = redis.call('INCR', 'next:cust')\n"                                              \
    "  tier = tonumber(ARGV[2])\n"                                                                 \
    "  redis.call('HSET', ck, 'id', cid, 'tier', tier, 'ot', 0)\n"                                 \
    "  c = {cid, tier, '0'}\n"                                                                     \
    "else\n"                                                                                       \
    "  tier = tonumber(c[2])\n"                                                                    \
    "end\n"                                                                                        \
    "local sla = {3600000, 14400000, 86400000}\n"                                                  \
    "local tid = tonumber(c[3])\n"                                                                 \
    "local tk\n"                                                                                   \
    "local status\n"                                                                               \
    "if tid ~= 0 then\n"                                                                           \
    "  tk = 't:' .. tid\n"                                                                         \
    "  status = redis.call('HGET', tk, 'status')\n"                                                \
    "  if status == 'closed' then tid = 0 end\n"                                                   \
    "end\n"                                                                                        \
    "if tid == 0 then\n"                                                                           \
    "  tid = redis.call('INCR', 'next:ticket')\n"                                                  \
    "  tk = 't:' .. tid\n"                                                                         \
    "  local seq = redis.call('INCR', 'next:seq')\n"                                               \
    "  local dl = now + sla[tier + 1]\n"                                                           \
    "  redis.call('HSET', tk, 'cust', c[1], 'queue', ARGV[1], 'prio', tier, 'status', 'open',\n"   \
    "    'assignee', 0, 'deadline', dl, 'seq', seq, 'msgs', 0, 'created', now, 'updated', now)\n"  \
    "  redis.call('ZADD', 'q:' .. ARGV[1], tier * 1000000000000 + seq, tid)\n"                     \
    "  redis.call('ZADD', 'sla', dl, tid)\n"                                                       \
    "  redis.call('HSET', ck, 'ot', tid)\n"                                                        \
    "elseif status == 'pending' then\n"                                                            \
    "  local t = redis.call('HMGET', tk, 'queue', 'prio')\n"                                       \
    "  local prio = tonumber(t[2])\n"                                                              \
    "  local seq = redis.call('INCR', 'next:seq')\n"                                               \
    "  local dl = now + sla[prio + 1]\n"                                                           \
    "  redis.call('HSET', tk, 'status', 'open', 'assignee', 0, 'deadline', dl, 'seq', seq)\n"      \
    "  redis.call('ZADD', 'q:' .. t[1], prio * 1000000000000 + seq, tid)\n"                        \
    "  redis.call('ZADD', 'sla', dl, tid)\n"                                                       \
    "end\n"                                                                                        \
    "local mid = redis.call('INCR', 'next:msg')\n"                                                 \
    "redis.call('HSET', 'm:' .. mid, 'ticket', tid, 'dir', 'in', 'body', ARGV[4], 'at', now)\n"    \
    "redis.call('RPUSH', tk .. ':m', mid)\n"                                                       \
    "redis.call('HINCRBY', tk, 'msgs', 1)\n"                                                       \
    "redis.call('HSET', tk, 'updated', now)\n"

static const char script_ingest[] = INGEST_BODY "return tid\n";

/* Fan-out: the same unit, plus the message id appended to the stream ev in the same atomic
 * script (so in the same AOF write and fsync as the message); returns the message id. */
static const char script_ingest_ev[] = INGEST_BODY "redis.call('XADD', 'ev', '*', 'mid', mid)\n"
                                                   "return mid\n";

static const char script_claim_reply[] =
    "local r = redis.call('ZPOPMIN', 'q:' .. ARGV[1])\n"
    "if #r == 0 then return redis.error_reply('EMPTY queue ' .. ARGV[1]) end\n"
    "local tid = r[1]\n"
    "local tk = 't:' .. tid\n"
    "local now = ARGV[3]\n"
    "redis.call('ZREM', 'sla', tid)\n"
    "redis.call('HSET', tk, 'status', 'pending', 'assignee', ARGV[2], 'updated', now)\n"
    "local mid = redis.call('INCR', 'next:msg')\n"
    "redis.call('HSET', 'm:' .. mid, 'ticket', tid, 'dir', 'out', 'body', ARGV[4], 'at', now)\n"
    "redis.call('RPUSH', tk .. ':m', mid)\n"
    "redis.call('HINCRBY', tk, 'msgs', 1)\n"
    "return tonumber(tid)\n";

static const char script_get_ticket[] =
    "local tk = 't:' .. ARGV[1]\n"
    "local out = {redis.call('HGETALL', tk)}\n"
    "local ids = redis.call('LRANGE', tk .. ':m', -20, -1)\n"
    "for i = 1, #ids do out[#out + 1] = redis.call('HGETALL', 'm:' .. ids[i]) end\n"
    "return out\n";

/* KEYS[1]: q:<n> or sla; the first 50 tickets with their summary fields. */
static const char script_list_top[] =
    "local ids = redis.call('ZRANGE', KEYS[1], 0, 49)\n"
    "local out = {}\n"
    "for i = 1, #ids do out[i] = redis.call('HMGET', 't:' .. ids[i], 'cust', 'queue', 'prio',\n"
    "  'status', 'deadline', 'msgs', 'updated') end\n"
    "return out\n";

static const char script_stats[] =
    "local d = redis.call('ZCARD', 'q:0') + redis.call('ZCARD', 'q:1') +\n"
    "  redis.call('ZCARD', 'q:2')\n"
    "local b = redis.call('ZCOUNT', 'sla', '-inf', ARGV[1])\n"
    "return {d, b}\n";

enum script_id {
    SCRIPT_INGEST,
    SCRIPT_INGEST_EV,
    SCRIPT_CLAIM_REPLY,
    SCRIPT_GET_TICKET,
    SCRIPT_LIST_TOP,
    SCRIPT_STATS,
    SCRIPT_COUNT
};

static const char *const scripts[SCRIPT_COUNT] = {
    script_ingest,     script_ingest_ev, script_claim_reply,
    script_get_ticket, script_list_top,  script_stats,
};

#define SHA_HEX_BYTES 40

/* ---- types ------------------------------------------------------------------------------- */

struct buf {
    char *data;
    uint64_t off; /* first unconsumed byte */
    uint64_t len; /* end of valid bytes */
    uint64_t cap;
};

struct tq_bench_conn {
    struct redis_sys *sys;
    int fd;
    struct buf out;
    struct buf in;
    uint64_t *tags; /* FIFO of tags awaiting replies */
    uint8_t *kinds; /* the op kind of each tag (the same FIFO positions) */
    uint32_t tag_cap, tag_head, tag_count;
    uint64_t last_reply_off; /* blocking use: where the last reply read_reply returned began */
};

struct redis_sys {
    struct tq_bench_system system;
    struct tq_redis_options options;
    char *host, *unix_path, *password; /* owned copies */
    struct tq_bench_conn *control;
    char sha[SCRIPT_COUNT][SHA_HEX_BYTES + 1];
    tq_redis_ack_fn ack_fn; /* fanout: called per acknowledged ingest */
    void *ack_ctx;
};

/* ---- RESP parsing ------------------------------------------------------------------------ */

/* Finds "\r\n" from p; returns its offset or -1 when absent. */
static int64_t find_crlf(const char *buf, uint64_t len, uint64_t from) {
    for (uint64_t i = from; i + 1 < len; i++) {
        if (buf[i] == '\r' && buf[i + 1] == '\n') return (int64_t)i;
    }
    return -1;
}

/* Parses a signed decimal in buf[from..end); returns false if malformed. */
static bool parse_int(const char *buf, uint64_t from, uint64_t end, int64_t *out) {
    bool neg = false;
    if (from < end && buf[from] == '-') {
        neg = true;
        from++;
    }
    if (from == end || end - from > 18) return false;
    int64_t v = 0;
    for (uint64_t i = from; i < end; i++) {
        if (buf[i] < '0' || buf[i] > '9') return false;
        v = v * 10 + (buf[i] - '0');
    }
    *out = neg ? -v : v;
    return true;
}

static int parse_at(const char *buf, uint64_t len, uint64_t pos, int depth, uint64_t *end_out,
                    struct tq_resp_reply *reply) {
    if (depth > RESP_DEPTH_MAX) return -1;
    if (pos >= len) return 0;
    int64_t crlf = find_crlf(buf, len, pos + 1);
    if (crlf < 0) return 0;
    uint64_t line_end = (uint64_t)crlf;
    char kind = buf[pos];
    memset(reply, 0, sizeof(*reply));
    switch (kind) {
    case '+':
    case '-':
        reply->type = kind == '+' ? TQ_RESP_SIMPLE : TQ_RESP_ERROR;
        reply->str = buf + pos + 1;
        reply->str_bytes = line_end - pos - 1;
        *end_out = line_end + 2;
        return 1;
    case ':':
        reply->type = TQ_RESP_INTEGER;
        if (!parse_int(buf, pos + 1, line_end, &reply->integer)) return -1;
        *end_out = line_end + 2;
        return 1;
    case '$': {
        int64_t n;
        if (!parse_int(buf, pos + 1, line_end, &n) || n < -1 || n > (int64_t)BUF_BYTES_MAX) {
            return -1;
        }
        if (n == -1) {
            reply->type = TQ_RESP_NIL;
            *end_out = line_end + 2;
            return 1;
        }
        uint64_t body = line_end + 2;
        if (len < body + (uint64_t)n + 2) return 0;
        if (buf[body + (uint64_t)n] != '\r' || buf[body + (uint64_t)n + 1] != '\n') return -1;
        reply->type = TQ_RESP_BULK;
        reply->str = buf + body;
        reply->str_bytes = (uint64_t)n;
        *end_out = body + (uint64_t)n + 2;
        return 1;
    }
    case '*': {
        int64_t n;
        if (!parse_int(buf, pos + 1, line_end, &n) || n < -1 || n > (int64_t)BUF_BYTES_MAX) {
            return -1;
        }
        if (n == -1) {
            reply->type = TQ_RESP_NIL;
            *end_out = line_end + 2;
            return 1;
        }
        uint64_t at = line_end + 2;
        for (int64_t i = 0; i < n; i++) {
            struct tq_resp_reply element;
            int rc = parse_at(buf, len, at, depth + 1, &at, &element);
            if (rc != 1) return rc;
        }
        memset(reply, 0, sizeof(*reply));
        reply->type = TQ_RESP_ARRAY;
        reply->integer = n;
        *end_out = at;
        return 1;
    }
    default: return -1;
    }
}

int tq_resp_parse(const char *buf, uint64_t len, uint64_t *consumed_out,
                  struct tq_resp_reply *reply_out) {
    uint64_t end = 0;
    int rc = parse_at(buf, len, 0, 0, &end, reply_out);
    if (rc == 1) {
        TQ_ASSERT(end <= len);
        *consumed_out = end;
    }
    return rc;
}

/* ---- buffers and encoding ---------------------------------------------------------------- */

static void buf_init(struct buf *b) {
    b->data = tq_xalloc(BUF_BYTES_INITIAL);
    b->off = 0;
    b->len = 0;
    b->cap = BUF_BYTES_INITIAL;
}

static void buf_free(struct buf *b) {
    tq_free(b->data, b->cap);
    memset(b, 0, sizeof(*b));
}

/* Makes room for need more bytes after len (compacting consumed bytes first). */
static void buf_reserve(struct buf *b, uint64_t need) {
    if (b->off > 0 && b->cap - b->len < need) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->cap - b->len >= need) return;
    uint64_t cap = b->cap;
    while (cap - b->len < need)
        cap *= 2;
    b->data = tq_xrealloc(b->data, b->cap, cap);
    b->cap = cap;
}

static void buf_put(struct buf *b, const void *p, uint64_t n) {
    buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_array(struct buf *b, uint32_t count) {
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "*%u\r\n", count);
    buf_put(b, tmp, (uint64_t)n);
}

static void put_bulk(struct buf *b, const void *p, uint64_t bytes) {
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "$%" PRIu64 "\r\n", bytes);
    buf_reserve(b, (uint64_t)n + bytes + 2);
    buf_put(b, tmp, (uint64_t)n);
    buf_put(b, p, bytes);
    buf_put(b, "\r\n", 2);
}

static void put_str(struct buf *b, const char *s) {
    put_bulk(b, s, strlen(s));
}

static void put_u64(struct buf *b, uint64_t v) {
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
    put_bulk(b, tmp, (uint64_t)n);
}

/* ---- connections ------------------------------------------------------------------------- */

static uint64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static enum tq_err dial(const struct redis_sys *sys, int *fd_out, struct tq_error *error) {
    if (sys->unix_path != NULL) {
        struct sockaddr_un sa;
        memset(&sa, 0, sizeof(sa));
        sa.sun_family = AF_UNIX;
        if (strlen(sys->unix_path) >= sizeof(sa.sun_path)) {
            return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT, "unix path too long: %s",
                                sys->unix_path);
        }
        memcpy(sa.sun_path, sys->unix_path, strlen(sys->unix_path) + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return tq_error_set(error, TQ_ERR_IO, "socket: %s", strerror(errno));
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
            int e = errno;
            close(fd);
            return tq_error_set(error, TQ_ERR_UNAVAILABLE, "connect unix:%s: %s", sys->unix_path,
                                strerror(e));
        }
        *fd_out = fd;
        return TQ_OK;
    }
    char port[8];
    snprintf(port, sizeof(port), "%u", sys->options.port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(sys->host, port, &hints, &res);
    if (rc != 0) {
        return tq_error_set(error, TQ_ERR_UNAVAILABLE, "resolve %s: %s", sys->host,
                            gai_strerror(rc));
    }
    int last_errno = 0;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            freeaddrinfo(res);
            *fd_out = fd;
            return TQ_OK;
        }
        last_errno = errno;
        close(fd);
    }
    freeaddrinfo(res);
    return tq_error_set(error, TQ_ERR_UNAVAILABLE, "connect %s:%u: %s", sys->host,
                        sys->options.port, strerror(last_errno));
}

static void conn_free(struct tq_bench_conn *c) {
    if (c == NULL) return;
    if (c->fd >= 0) close(c->fd);
    buf_free(&c->out);
    buf_free(&c->in);
    tq_free(c->tags, c->tag_cap * sizeof(*c->tags));
    tq_free(c->kinds, c->tag_cap * sizeof(*c->kinds));
    tq_free(c, sizeof(*c));
}

/* Blocking: writes all of c->out. */
static enum tq_err write_all(struct tq_bench_conn *c, struct tq_error *error) {
    while (c->out.off < c->out.len) {
        ssize_t n = write(c->fd, c->out.data + c->out.off, c->out.len - c->out.off);
        if (n < 0) {
            if (errno == EINTR) continue;
            return tq_error_set(error, TQ_ERR_UNAVAILABLE, "write to redis: %s", strerror(errno));
        }
        c->out.off += (uint64_t)n;
    }
    c->out.off = 0;
    c->out.len = 0;
    return TQ_OK;
}

/* Reads more bytes into c->in. Returns TQ_OK with *got_out = 0 on EAGAIN. */
static enum tq_err read_some(struct tq_bench_conn *c, uint64_t *got_out, struct tq_error *error) {
    *got_out = 0;
    buf_reserve(&c->in, BUF_BYTES_INITIAL / 2);
    if (c->in.cap > BUF_BYTES_MAX) {
        return tq_error_set(error, TQ_ERR_CORRUPT, "redis reply larger than %u bytes",
                            BUF_BYTES_MAX);
    }
    for (;;) {
        ssize_t n = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len);
        if (n > 0) {
            c->in.len += (uint64_t)n;
            *got_out = (uint64_t)n;
            return TQ_OK;
        }
        if (n == 0) return tq_error_set(error, TQ_ERR_UNAVAILABLE, "redis closed the connection");
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return TQ_OK;
        return tq_error_set(error, TQ_ERR_UNAVAILABLE, "read from redis: %s", strerror(errno));
    }
}

/* Blocking: the next complete reply of a blocking connection (valid until the next read). */
static enum tq_err read_reply(struct tq_bench_conn *c, struct tq_resp_reply *reply,
                              struct tq_error *error) {
    for (;;) {
        uint64_t used = 0;
        int rc = tq_resp_parse(c->in.data + c->in.off, c->in.len - c->in.off, &used, reply);
        if (rc < 0)
            return tq_error_set(error, TQ_ERR_CORRUPT, "redis sent bytes that are not RESP");
        if (rc == 1) {
            c->last_reply_off = c->in.off;
            c->in.off += used;
            return TQ_OK;
        }
        uint64_t got = 0;
        enum tq_err err = read_some(c, &got, error);
        if (err != TQ_OK) return err;
    }
}

static enum tq_err reply_error(const struct tq_resp_reply *r, const char *what,
                               struct tq_error *error) {
    if (r->type != TQ_RESP_ERROR) return TQ_OK;
    enum tq_err code = TQ_ERR_INTERNAL;
    if (r->str_bytes >= 7 &&
        (memcmp(r->str, "NOAUTH ", 7) == 0 || memcmp(r->str, "WRONGPA", 7) == 0)) {
        code = TQ_ERR_UNAUTHENTICATED;
    }
    return tq_error_set(error, code, "redis %s: %.*s", what, (int)r->str_bytes, r->str);
}

static enum tq_err conn_new(struct redis_sys *sys, uint32_t tag_cap, bool blocking,
                            struct tq_bench_conn **out, struct tq_error *error) {
    struct tq_bench_conn *c = tq_xcalloc(1, sizeof(*c));
    c->sys = sys;
    c->fd = -1;
    buf_init(&c->out);
    buf_init(&c->in);
    c->tag_cap = tag_cap;
    c->tags = tq_xcalloc(tag_cap, sizeof(*c->tags));
    c->kinds = tq_xcalloc(tag_cap, sizeof(*c->kinds));
    enum tq_err err = dial(sys, &c->fd, error);
    if (err != TQ_OK) goto fail;
    if (sys->password != NULL) {
        struct tq_resp_reply r;
        put_array(&c->out, 2);
        put_str(&c->out, "AUTH");
        put_str(&c->out, sys->password);
        err = write_all(c, error);
        if (err == TQ_OK) err = read_reply(c, &r, error);
        if (err == TQ_OK && r.type == TQ_RESP_ERROR) {
            err = tq_error_set(error, TQ_ERR_UNAUTHENTICATED, "redis AUTH: %.*s", (int)r.str_bytes,
                               r.str);
        }
        if (err != TQ_OK) goto fail;
    }
    if (!blocking) {
        int flags = fcntl(c->fd, F_GETFL, 0);
        if (flags < 0 || fcntl(c->fd, F_SETFL, flags | O_NONBLOCK) != 0) {
            err = tq_error_set(error, TQ_ERR_IO, "fcntl O_NONBLOCK: %s", strerror(errno));
            goto fail;
        }
    }
    *out = c;
    return TQ_OK;
fail:
    conn_free(c);
    return err;
}

/* ---- the bench system callbacks ---------------------------------------------------------- */

static enum tq_err redis_conn_open(void *ctx, uint32_t conn_index, struct tq_bench_conn **conn_out,
                                   struct tq_error *error) {
    (void)conn_index;
    struct redis_sys *sys = ctx;
    return conn_new(sys, sys->options.pipeline, false, conn_out, error);
}

static int redis_conn_fd(struct tq_bench_conn *conn) {
    return conn->fd;
}

static void put_evalsha(struct buf *b, const char *sha, uint32_t argc_after_sha, uint32_t keys) {
    put_array(b, 3 + argc_after_sha);
    put_str(b, "EVALSHA");
    put_bulk(b, sha, SHA_HEX_BYTES);
    put_u64(b, keys);
}

static enum tq_err redis_send_op(struct tq_bench_conn *conn, const struct tq_bench_op *op,
                                 uint64_t tag, struct tq_error *error) {
    struct redis_sys *sys = conn->sys;
    struct buf *b = &conn->out;
    if (conn->tag_count == conn->tag_cap) {
        return tq_error_set(error, TQ_ERR_RESOURCE_EXHAUSTED, "more than %u requests in flight",
                            conn->tag_cap);
    }
    char key[64];
    switch (op->kind) {
    case TQ_OP_INGEST:
        snprintf(key, sizeof(key), "cust:%u:%s", op->channel, op->external_id);
        put_evalsha(b, sys->sha[sys->options.events ? SCRIPT_INGEST_EV : SCRIPT_INGEST], 5, 1);
        put_str(b, key);
        put_u64(b, op->channel);
        put_u64(b, op->tier);
        put_u64(b, wall_ms());
        put_bulk(b, op->body, op->body_bytes);
        break;
    case TQ_OP_CLAIM_REPLY:
        put_evalsha(b, sys->sha[SCRIPT_CLAIM_REPLY], 4, 0);
        put_u64(b, op->queue);
        put_u64(b, op->agent);
        put_u64(b, wall_ms());
        put_bulk(b, op->body, op->body_bytes);
        break;
    case TQ_OP_GET_TICKET:
        put_evalsha(b, sys->sha[SCRIPT_GET_TICKET], 1, 0);
        put_u64(b, op->ticket_id);
        break;
    case TQ_OP_LIST_QUEUE:
        snprintf(key, sizeof(key), "q:%u", op->queue);
        put_evalsha(b, sys->sha[SCRIPT_LIST_TOP], 1, 1);
        put_str(b, key);
        break;
    case TQ_OP_SLA_NEAREST:
        put_evalsha(b, sys->sha[SCRIPT_LIST_TOP], 1, 1);
        put_str(b, "sla");
        break;
    }
    uint32_t at = (conn->tag_head + conn->tag_count) % conn->tag_cap;
    conn->tags[at] = tag;
    conn->kinds[at] = (uint8_t)op->kind;
    conn->tag_count++;
    return TQ_OK;
}

static enum tq_err redis_flush(struct tq_bench_conn *conn, bool *pending_out,
                               struct tq_error *error) {
    struct buf *b = &conn->out;
    while (b->off < b->len) {
        ssize_t n = write(conn->fd, b->data + b->off, b->len - b->off);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            return tq_error_set(error, TQ_ERR_UNAVAILABLE, "write to redis: %s", strerror(errno));
        }
        b->off += (uint64_t)n;
    }
    if (b->off == b->len) {
        b->off = 0;
        b->len = 0;
    }
    *pending_out = b->off < b->len;
    return TQ_OK;
}

static enum tq_err redis_poll_completions(struct tq_bench_conn *conn,
                                          struct tq_bench_completion *out, uint32_t max,
                                          uint32_t *count_out, struct tq_error *error) {
    uint32_t count = 0;
    for (;;) {
        while (count < max) {
            struct tq_resp_reply r;
            uint64_t used = 0;
            int rc =
                tq_resp_parse(conn->in.data + conn->in.off, conn->in.len - conn->in.off, &used, &r);
            if (rc < 0) {
                *count_out = count;
                return tq_error_set(error, TQ_ERR_CORRUPT, "redis sent bytes that are not RESP");
            }
            if (rc == 0) break;
            conn->in.off += used;
            if (conn->tag_count == 0) {
                *count_out = count;
                return tq_error_set(error, TQ_ERR_CORRUPT, "redis sent a reply nobody asked for");
            }
            enum tq_err status = TQ_OK;
            if (r.type == TQ_RESP_ERROR) {
                bool empty = r.str_bytes >= 5 && memmem(r.str, r.str_bytes, "EMPTY", 5) != NULL;
                status = empty ? TQ_ERR_NOT_FOUND : TQ_ERR_INTERNAL;
                if (!empty) {
                    /* Not expected in a valid run: say it once per connection-read, on stderr. */
                    fprintf(stderr, "ticketq-bench: redis error: %.*s\n",
                            (int)(r.str_bytes > 200 ? 200 : r.str_bytes), r.str);
                }
            }
            out[count].tag = conn->tags[conn->tag_head];
            out[count].status = status;
            /* Fan-out: an acknowledged ingest answers its message id (script_ingest_ev). */
            if (status == TQ_OK && conn->sys->ack_fn != NULL &&
                conn->kinds[conn->tag_head] == TQ_OP_INGEST && r.type == TQ_RESP_INTEGER &&
                r.integer > 0) {
                conn->sys->ack_fn(conn->sys->ack_ctx, out[count].tag, (uint64_t)r.integer,
                                  tq_bench_now_ns());
            }
            count++;
            conn->tag_head = (conn->tag_head + 1) % conn->tag_cap;
            conn->tag_count--;
        }
        if (count == max || conn->tag_count == 0) break;
        uint64_t got = 0;
        enum tq_err err = read_some(conn, &got, error);
        if (err != TQ_OK) {
            *count_out = count;
            return err;
        }
        if (got == 0) break;
    }
    if (conn->in.off == conn->in.len) {
        conn->in.off = 0;
        conn->in.len = 0;
    }
    *count_out = count;
    return TQ_OK;
}

static void redis_conn_close(struct tq_bench_conn *conn) {
    conn_free(conn);
}

static enum tq_err redis_stats(void *ctx, struct tq_bench_stats *out, struct tq_error *error) {
    struct redis_sys *sys = ctx;
    struct tq_bench_conn *c = sys->control;
    put_evalsha(&c->out, sys->sha[SCRIPT_STATS], 1, 0);
    put_u64(&c->out, wall_ms());
    struct tq_resp_reply r;
    enum tq_err err = write_all(c, error);
    if (err == TQ_OK) err = read_reply(c, &r, error);
    if (err == TQ_OK) err = reply_error(&r, "stats", error);
    if (err != TQ_OK) return err;
    if (r.type != TQ_RESP_ARRAY || r.integer != 2) {
        return tq_error_set(error, TQ_ERR_CORRUPT, "redis stats: unexpected reply");
    }
    /* read_reply consumed the array; its two integers are in the bytes just before in.off. */
    const char *base = c->in.data + c->last_reply_off;
    uint64_t len = c->in.off - c->last_reply_off;
    int64_t crlf = find_crlf(base, len, 0);
    uint64_t at = (uint64_t)crlf + 2;
    struct tq_resp_reply depth, breached;
    if (crlf < 0 || parse_at(base, len, at, 1, &at, &depth) != 1 ||
        parse_at(base, len, at, 1, &at, &breached) != 1 || depth.type != TQ_RESP_INTEGER ||
        breached.type != TQ_RESP_INTEGER || depth.integer < 0 || breached.integer < 0) {
        return tq_error_set(error, TQ_ERR_CORRUPT, "redis stats: unexpected reply");
    }
    out->queue_depth = (uint64_t)depth.integer;
    out->breached = (uint64_t)breached.integer;
    return TQ_OK;
}

/* ---- create / load ----------------------------------------------------------------------- */

static enum tq_err control_command(struct redis_sys *sys, struct tq_resp_reply *r, const char *what,
                                   struct tq_error *error) {
    enum tq_err err = write_all(sys->control, error);
    if (err == TQ_OK) err = read_reply(sys->control, r, error);
    if (err == TQ_OK) err = reply_error(r, what, error);
    return err;
}

static char *dup_or_null(const char *s) {
    return s != NULL ? tq_strdup(s) : NULL;
}

static void free_str(char *s) {
    if (s != NULL) tq_free(s, strlen(s) + 1);
}

enum tq_err tq_redis_system_create(const struct tq_redis_options *options,
                                   struct tq_bench_system **system_out, struct tq_error *error) {
    TQ_ASSERT(options->pipeline >= 1);
    TQ_ASSERT(options->unix_path != NULL || options->host != NULL);
    struct redis_sys *sys = tq_xcalloc(1, sizeof(*sys));
    sys->options = *options;
    sys->host = dup_or_null(options->host);
    sys->unix_path = dup_or_null(options->unix_path);
    sys->password = dup_or_null(options->password);
    sys->system = (struct tq_bench_system){
        .name = "redis",
        .ctx = sys,
        .conn_open = redis_conn_open,
        .conn_fd = redis_conn_fd,
        .send_op = redis_send_op,
        .flush = redis_flush,
        .poll_completions = redis_poll_completions,
        .conn_close = redis_conn_close,
        .stats = redis_stats,
    };
    enum tq_err err = conn_new(sys, 1, true, &sys->control, error);
    if (err != TQ_OK) goto fail;
    struct tq_resp_reply r;
    put_array(&sys->control->out, 1);
    put_str(&sys->control->out, "PING");
    err = control_command(sys, &r, "PING", error);
    if (err != TQ_OK) goto fail;
    for (int i = 0; i < SCRIPT_COUNT; i++) {
        put_array(&sys->control->out, 3);
        put_str(&sys->control->out, "SCRIPT");
        put_str(&sys->control->out, "LOAD");
        put_str(&sys->control->out, scripts[i]);
        err = control_command(sys, &r, "SCRIPT LOAD", error);
        if (err != TQ_OK) goto fail;
        if (r.type != TQ_RESP_BULK || r.str_bytes != SHA_HEX_BYTES) {
            err = tq_error_set(error, TQ_ERR_CORRUPT, "redis SCRIPT LOAD: unexpected reply");
            goto fail;
        }
        memcpy(sys->sha[i], r.str, SHA_HEX_BYTES);
        sys->sha[i][SHA_HEX_BYTES] = '\0';
    }
    *system_out = &sys->system;
    return TQ_OK;
fail:
    tq_redis_system_destroy(&sys->system);
    return err;
}

void tq_redis_system_destroy(struct tq_bench_system *system) {
    if (system == NULL) return;
    struct redis_sys *sys = system->ctx;
    conn_free(sys->control);
    free_str(sys->host);
    free_str(sys->unix_path);
    free_str(sys->password);
    tq_free(sys, sizeof(*sys));
}

/* Sends the buffered commands of a load round and checks their `count` replies. */
static enum tq_err load_round(struct redis_sys *sys, uint32_t count, struct tq_error *error) {
    struct tq_bench_conn *c = sys->control;
    enum tq_err err = write_all(c, error);
    for (uint32_t i = 0; err == TQ_OK && i < count; i++) {
        struct tq_resp_reply r;
        err = read_reply(c, &r, error);
        if (err == TQ_OK) err = reply_error(&r, "load", error);
    }
    if (c->in.off == c->in.len) {
        c->in.off = 0;
        c->in.len = 0;
    }
    return err;
}

static void put_set_counter(struct buf *b, const char *key, uint64_t value) {
    put_array(b, 3);
    put_str(b, "SET");
    put_str(b, key);
    put_u64(b, value);
}

static void load_customer(struct buf *b, uint64_t i, uint64_t customers, uint64_t backlog) {
    struct tq_workload_customer cu;
    tq_workload_customer(i, &cu);
    char key[64];
    snprintf(key, sizeof(key), "cust:%u:%s", cu.channel, cu.external_id);
    put_array(b, 8);
    put_str(b, "HSET");
    put_str(b, key);
    put_str(b, "id");
    put_u64(b, i);
    put_str(b, "tier");
    put_u64(b, cu.tier);
    put_str(b, "ot");
    put_u64(b, tq_workload_customer_newest_ticket(i, customers, backlog));
}

/* Four commands: the ticket hash, its message hash, its message list. */
static uint32_t load_ticket(struct buf *b, uint64_t t, uint64_t customers) {
    struct tq_workload_ticket tk;
    tq_workload_ticket(t, customers, &tk);
    char key[48];
    snprintf(key, sizeof(key), "t:%" PRIu64, t);
    put_array(b, 22);
    put_str(b, "HSET");
    put_str(b, key);
    put_str(b, "cust");
    put_u64(b, tk.customer_id);
    put_str(b, "queue");
    put_u64(b, tk.queue);
    put_str(b, "prio");
    put_u64(b, tk.priority);
    put_str(b, "status");
    put_str(b, "open");
    put_str(b, "assignee");
    put_u64(b, 0);
    put_str(b, "deadline");
    put_u64(b, tk.deadline_ms);
    put_str(b, "seq");
    put_u64(b, tk.seq);
    put_str(b, "msgs");
    put_u64(b, 1);
    put_str(b, "created");
    put_u64(b, tk.created_ms);
    put_str(b, "updated");
    put_u64(b, tk.created_ms);
    char mkey[48];
    snprintf(mkey, sizeof(mkey), "m:%" PRIu64, t);
    put_array(b, 10);
    put_str(b, "HSET");
    put_str(b, mkey);
    put_str(b, "ticket");
    put_u64(b, t);
    put_str(b, "dir");
    put_str(b, "in");
    put_str(b, "body");
    put_bulk(b, tq_workload_body_in, TQ_WORKLOAD_BODY_BYTES);
    put_str(b, "at");
    put_u64(b, tk.created_ms);
    char lkey[56];
    snprintf(lkey, sizeof(lkey), "t:%" PRIu64 ":m", t);
    put_array(b, 3);
    put_str(b, "RPUSH");
    put_str(b, lkey);
    put_u64(b, t);
    return 3;
}

/* ZADD of tickets [first, last] to one queue (or to sla when queue < 0). */
static void load_zadd(struct buf *b, int queue, uint64_t first, uint64_t last, uint64_t customers) {
    uint32_t members = 0;
    for (uint64_t t = first; t <= last; t++) {
        struct tq_workload_ticket tk;
        tq_workload_ticket(t, customers, &tk);
        if (queue < 0 || tk.queue == (uint8_t)queue) members++;
    }
    char key[16];
    if (queue < 0) {
        snprintf(key, sizeof(key), "sla");
    } else {
        snprintf(key, sizeof(key), "q:%d", queue);
    }
    put_array(b, 2 + 2 * members);
    put_str(b, "ZADD");
    put_str(b, key);
    for (uint64_t t = first; t <= last; t++) {
        struct tq_workload_ticket tk;
        tq_workload_ticket(t, customers, &tk);
        if (queue >= 0 && tk.queue != (uint8_t)queue) continue;
        put_u64(b, queue < 0 ? tk.deadline_ms : tk.priority * QUEUE_SCORE_PRIORITY + tk.seq);
        put_u64(b, t);
    }
}

enum tq_err tq_redis_load(struct tq_bench_system *system, uint64_t customers, uint64_t backlog,
                          void (*progress)(uint64_t done), struct tq_error *error) {
    struct redis_sys *sys = system->ctx;
    struct buf *b = &sys->control->out;
    TQ_ASSERT(customers > 0);
    TQ_ASSERT(backlog < QUEUE_SCORE_PRIORITY);
    struct tq_resp_reply r;
    put_array(b, 1);
    put_str(b, "FLUSHALL");
    enum tq_err err = control_command(sys, &r, "FLUSHALL", error);
    if (err != TQ_OK) return err;
    uint32_t pending = 0;
    for (uint64_t i = 1; i <= customers; i++) {
        load_customer(b, i, customers, backlog);
        if (++pending == LOAD_COMMANDS_PER_ROUND) {
            err = load_round(sys, pending, error);
            if (err != TQ_OK) return err;
            pending = 0;
        }
    }
    for (uint64_t first = 1; first <= backlog; first += LOAD_ZADD_MEMBERS) {
        uint64_t last = first + LOAD_ZADD_MEMBERS - 1;
        if (last > backlog) last = backlog;
        for (uint64_t t = first; t <= last; t++)
            pending += load_ticket(b, t, customers);
        for (int q = -1; q < (int)TQ_WORKLOAD_QUEUES; q++) {
            load_zadd(b, q, first, last, customers);
            pending++;
        }
        if (pending >= LOAD_COMMANDS_PER_ROUND) {
            err = load_round(sys, pending, error);
            if (err != TQ_OK) return err;
            pending = 0;
            if (progress != NULL) progress(last);
        }
    }
    put_set_counter(b, "next:cust", customers);
    put_set_counter(b, "next:ticket", backlog);
    put_set_counter(b, "next:msg", backlog);
    put_set_counter(b, "next:seq", backlog);
    pending += 4;
    err = load_round(sys, pending, error);
    if (err == TQ_OK && progress != NULL) progress(backlog);
    return err;
}

enum tq_err tq_redis_get_u64(struct tq_bench_system *system, const char *key, uint64_t *value_out,
                             struct tq_error *error) {
    struct redis_sys *sys = system->ctx;
    put_array(&sys->control->out, 2);
    put_str(&sys->control->out, "GET");
    put_str(&sys->control->out, key);
    struct tq_resp_reply r;
    enum tq_err err = control_command(sys, &r, "GET", error);
    if (err != TQ_OK) return err;
    *value_out = 0;
    if (r.type == TQ_RESP_NIL) return TQ_OK;
    int64_t v = 0;
    if (r.type != TQ_RESP_BULK || !parse_int(r.str, 0, r.str_bytes, &v) || v < 0) {
        return tq_error_set(error, TQ_ERR_CORRUPT, "redis GET %s: not an integer", key);
    }
    *value_out = (uint64_t)v;
    return TQ_OK;
}

/* ---- fan-out: the event stream ------------------------------------------------------------ */

#define STREAM_ID_BYTES_MAX 48 /* "<ms>-<seq>": two 64-bit decimals and a dash */

struct tq_redis_sub {
    struct tq_bench_conn *conn; /* blocking */
    char last_id[STREAM_ID_BYTES_MAX + 1];
};

void tq_redis_set_ack_hook(struct tq_bench_system *system, tq_redis_ack_fn fn, void *ctx) {
    struct redis_sys *sys = system->ctx;
    sys->ack_fn = fn;
    sys->ack_ctx = ctx;
}

enum tq_err tq_redis_events_reset(struct tq_bench_system *system, struct tq_error *error) {
    struct redis_sys *sys = system->ctx;
    put_array(&sys->control->out, 2);
    put_str(&sys->control->out, "DEL");
    put_str(&sys->control->out, "ev");
    struct tq_resp_reply r;
    return control_command(sys, &r, "DEL ev", error);
}

enum tq_err tq_redis_sub_open(struct tq_bench_system *system, struct tq_redis_sub **sub_out,
                              struct tq_error *error) {
    struct redis_sys *sys = system->ctx;
    struct tq_redis_sub *sub = tq_xcalloc(1, sizeof(*sub));
    enum tq_err err = conn_new(sys, 1, true, &sub->conn, error);
    if (err != TQ_OK) {
        tq_free(sub, sizeof(*sub));
        return err;
    }
    /* A dead server must not hang the subscriber: reads time out (then UNAVAILABLE). */
    struct timeval tv = {.tv_sec = SUB_READ_TIMEOUT_S, .tv_usec = 0};
    setsockopt(sub->conn->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    memcpy(sub->last_id, "0-0", 4);
    *sub_out = sub;
    return TQ_OK;
}

void tq_redis_sub_close(struct tq_redis_sub *sub) {
    if (sub == NULL) return;
    conn_free(sub->conn);
    tq_free(sub, sizeof(*sub));
}

/* Parses the header "<kind><n>\r\n" of an aggregate at *at; advances past it. */
static bool parse_header(const char *buf, uint64_t len, uint64_t *at, char kind, int64_t *n_out) {
    if (*at >= len || buf[*at] != kind) return false;
    int64_t crlf = find_crlf(buf, len, *at + 1);
    if (crlf < 0 || !parse_int(buf, *at + 1, (uint64_t)crlf, n_out) || *n_out < 0) return false;
    *at = (uint64_t)crlf + 2;
    return true;
}

static bool parse_bulk(const char *buf, uint64_t len, uint64_t *at, struct tq_resp_reply *r) {
    return parse_at(buf, len, *at, 1, at, r) == 1 && r->type == TQ_RESP_BULK;
}

/* XREAD's reply: nil (timed out) or [[ "ev", [[id, ["mid", "<n>"]], ...] ]]. */
static enum tq_err parse_xread(struct tq_redis_sub *sub, const char *buf, uint64_t len,
                               uint64_t *ids, uint32_t max, uint32_t *count_out,
                               struct tq_error *error) {
    uint64_t at = 0;
    int64_t n = 0;
    *count_out = 0;
    if (len >= 3 && (memcmp(buf, "*-1", 3) == 0 || memcmp(buf, "$-1", 3) == 0)) return TQ_OK;
    struct tq_resp_reply key;
    if (!parse_header(buf, len, &at, '*', &n) || n != 1 || !parse_header(buf, len, &at, '*', &n) ||
        n != 2 || !parse_bulk(buf, len, &at, &key) || key.str_bytes != 2 ||
        memcmp(key.str, "ev", 2) != 0 || !parse_header(buf, len, &at, '*', &n) ||
        n > (int64_t)max) {
        return tq_error_set(error, TQ_ERR_CORRUPT, "redis XREAD: unexpected reply");
    }
    int64_t entries = n;
    for (int64_t i = 0; i < entries; i++) {
        struct tq_resp_reply id, field, value;
        int64_t pairs = 0, mid = 0;
        if (!parse_header(buf, len, &at, '*', &n) || n != 2 || !parse_bulk(buf, len, &at, &id) ||
            id.str_bytes == 0 || id.str_bytes > STREAM_ID_BYTES_MAX ||
            !parse_header(buf, len, &at, '*', &pairs) || pairs != 2 ||
            !parse_bulk(buf, len, &at, &field) || !parse_bulk(buf, len, &at, &value) ||
            field.str_bytes != 3 || memcmp(field.str, "mid", 3) != 0 ||
            !parse_int(value.str, 0, value.str_bytes, &mid) || mid <= 0) {
            return tq_error_set(error, TQ_ERR_CORRUPT, "redis XREAD: unexpected entry");
        }
        ids[(*count_out)++] = (uint64_t)mid;
        memcpy(sub->last_id, id.str, id.str_bytes);
        sub->last_id[id.str_bytes] = '\0';
    }
    return TQ_OK;
}

enum tq_err tq_redis_sub_next(struct tq_redis_sub *sub, uint32_t wait_ms, uint64_t *ids,
                              uint32_t max, uint32_t *count_out, struct tq_error *error) {
    TQ_ASSERT(max >= 1);
    struct tq_bench_conn *c = sub->conn;
    *count_out = 0;
    put_array(&c->out, 8);
    put_str(&c->out, "XREAD");
    put_str(&c->out, "COUNT");
    put_u64(&c->out, max);
    put_str(&c->out, "BLOCK");
    put_u64(&c->out, wait_ms);
    put_str(&c->out, "STREAMS");
    put_str(&c->out, "ev");
    put_str(&c->out, sub->last_id);
    enum tq_err err = write_all(c, error);
    if (err != TQ_OK) return err;
    struct tq_resp_reply r;
    for (;;) {
        uint64_t used = 0;
        int rc = tq_resp_parse(c->in.data + c->in.off, c->in.len - c->in.off, &used, &r);
        if (rc < 0)
            return tq_error_set(error, TQ_ERR_CORRUPT, "redis sent bytes that are not RESP");
        if (rc == 1) break;
        uint64_t got = 0;
        err = read_some(c, &got, error);
        if (err != TQ_OK) return err;
        if (got == 0) {
            return tq_error_set(error, TQ_ERR_UNAVAILABLE, "redis XREAD: no reply within %d s",
                                SUB_READ_TIMEOUT_S);
        }
    }
    const char *base = c->in.data + c->in.off;
    uint64_t used = 0;
    (void)tq_resp_parse(base, c->in.len - c->in.off, &used, &r);
    err = reply_error(&r, "XREAD", error);
    if (err == TQ_OK) err = parse_xread(sub, base, used, ids, max, count_out, error);
    c->in.off += used;
    if (c->in.off == c->in.len) {
        c->in.off = 0;
        c->in.len = 0;
    }
    return err;
}
