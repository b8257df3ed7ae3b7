/* bench/peer_redis.h: the Redis peer of ticketq-bench (a bench system, see openloop.h).
 *
 * A minimal non-blocking, pipelined RESP2 client plus the Redis data model of the peer
 * workloads (docs/performance-peers.md): customers as hash keys cust:<channel>:<external id>,
 * tickets t:<id> and messages m:<id> as hashes, each ticket's message ids in the list
 * t:<id>:m, queues q:<0..2> as sorted sets scored priority * 2^44 + enqueue sequence, and the
 * sorted set sla of queued tickets scored by SLA deadline. Every unit is one EVALSHA of a Lua
 * script loaded at connect time (one round trip, atomic).
 */
#ifndef TQ_BENCH_PEER_REDIS_H
#define TQ_BENCH_PEER_REDIS_H

#include "openloop.h"

#include "tq_err.h"

#include <stdbool.h>
#include <stdint.h>

struct tq_redis_options {
    const char *host; /* numeric IPv4/IPv6 or name; NULL when unix_path is set */
    uint16_t port;
    const char *unix_path; /* unix socket, or NULL */
    const char *password;  /* AUTH password (the bench's --token), or NULL */
    uint32_t pipeline;     /* the driver's pipeline depth (reply slots per connection) */
    bool events;           /* fanout: each ingest also XADDs its message id to stream ev */
};

/* Connects a control connection, checks the server answers PING, loads the Lua scripts.
 * Errors: TQ_ERR_UNAVAILABLE (cannot connect), TQ_ERR_UNAUTHENTICATED, TQ_ERR_CORRUPT (reply
 * not RESP), TQ_ERR_INTERNAL (a script failed to load). The caller owns *system_out
 * (tq_redis_system_destroy). */
TQ_NODISCARD enum tq_err tq_redis_system_create(const struct tq_redis_options *options,
                                                struct tq_bench_system **system_out,
                                                struct tq_error *error);
void tq_redis_system_destroy(struct tq_bench_system *system);

/* FLUSHALL, then loads the initial state (customers 1..customers, tickets 1..backlog, their
 * messages and queues) pipelined over the control connection. progress (may be NULL) is called
 * with the tickets loaded so far. */
TQ_NODISCARD enum tq_err tq_redis_load(struct tq_bench_system *system, uint64_t customers,
                                       uint64_t backlog, void (*progress)(uint64_t done),
                                       struct tq_error *error);

/* GET of an integer key over the control connection (0 when the key is absent); for checks
 * after a run (e.g. next:msg counts every message ever appended). */
TQ_NODISCARD enum tq_err tq_redis_get_u64(struct tq_bench_system *system, const char *key,
                                          uint64_t *value_out, struct tq_error *error);

/* ---- fanout (bench_main.c) ----
 * The peer of ticketq's Subscribe is a Redis stream: with options.events the ingest script also
 * runs XADD ev * mid <message id> (atomic with the ingest, in the same AOF write and fsync) and
 * answers the message id; subscribers follow ev with XREAD BLOCK from the last id they saw.
 * Like ticketq's subscriptions (and unlike PUBLISH) the stream is durable and a reader resumes
 * from a position, so nothing is lost while a reader is slow or reconnects. */

/* Called on the driver's thread for every acknowledged ingest: the driver's tag, the message id
 * the script answered, the monotonic time the answer was parsed (tq_bench_now_ns). */
typedef void (*tq_redis_ack_fn)(void *ctx, uint64_t tag, uint64_t message_id, uint64_t ack_ns);

/* Installs (fn != NULL) or removes the ack hook. Call before the driver runs. */
void tq_redis_set_ack_hook(struct tq_bench_system *system, tq_redis_ack_fn fn, void *ctx);

/* DEL ev over the control connection: subscribers then start from the beginning ("0-0"). */
TQ_NODISCARD enum tq_err tq_redis_events_reset(struct tq_bench_system *system,
                                               struct tq_error *error);

/* One subscriber: its own blocking connection (one thread). Errors: those of connecting. */
struct tq_redis_sub;
TQ_NODISCARD enum tq_err tq_redis_sub_open(struct tq_bench_system *system,
                                           struct tq_redis_sub **sub_out, struct tq_error *error);
/* XREAD COUNT max BLOCK wait_ms from the last id seen: up to max message ids into ids
 * (*count_out = 0 when nothing arrived within wait_ms). Errors: TQ_ERR_UNAVAILABLE (connection
 * lost, or no reply within 10 s), TQ_ERR_CORRUPT (not the expected reply), a Redis error. */
TQ_NODISCARD enum tq_err tq_redis_sub_next(struct tq_redis_sub *sub, uint32_t wait_ms,
                                           uint64_t *ids, uint32_t max, uint32_t *count_out,
                                           struct tq_error *error);
void tq_redis_sub_close(struct tq_redis_sub *sub);

/* ---- RESP, exposed for tests ------------------------------------------------------------- */

enum tq_resp_type {
    TQ_RESP_SIMPLE,
    TQ_RESP_ERROR,
    TQ_RESP_INTEGER,
    TQ_RESP_BULK,
    TQ_RESP_NIL,
    TQ_RESP_ARRAY
};

struct tq_resp_reply {
    enum tq_resp_type type;
    int64_t integer; /* INTEGER; element count for ARRAY */
    const char *str; /* SIMPLE, ERROR, BULK: points into the parsed buffer */
    uint64_t str_bytes;
};

/* Parses one complete reply at buf[0..len). Returns 1 and sets *consumed_out and *reply_out
 * (top level only; nested elements are validated and skipped), 0 when more bytes are needed,
 * -1 when the bytes are not RESP (or nest deeper than 16). */
int tq_resp_parse(const char *buf, uint64_t len, uint64_t *consumed_out,
                  struct tq_resp_reply *reply_out);

#endif
