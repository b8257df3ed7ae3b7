/* ticketq.h: libticketq, the C client library of ticketq (the only installed header).
 *
 * A client is one connection to a ticketqd server over TCP ("HOST:PORT", IPv4/IPv6 literal or
 * name, "[::1]:7070") or a Unix socket ("unix:PATH"), authenticated with a token (the first
 * request on a connection is always Auth). Requests and responses are the protobuf messages of
 * ticketq.proto (types Ticketq__Request, Ticketq__Response from the generated ticketq.pb-c.h,
 * installed next to this header); framing is a 4-byte big-endian length then the message.
 * Guide with examples: docs/client.md.
 *
 * Four ways to talk to the server:
 *   - tq_client_call(): one blocking request/response (the library sets req->id);
 *   - typed helpers (tq_client_ingest(), tq_client_claim(), ...): build the request for you;
 *   - pipelining: tq_client_submit() many requests, tq_client_flush(), then tq_client_collect()
 *     the responses in submission order; tq_client_batch() sends many operations in one frame;
 *   - subscriptions: tq_client_subscribe() then tq_subscription_next() one event at a time.
 *
 * Errors. Every function that can fail returns enum tq_err (proto/tq_err.h, installed as
 * tq_err.h) and, when err is not NULL, fills struct tq_error with one line naming the cause.
 * A server error is mapped from the wire ErrorCode: TQ_ERR_INVALID_ARGUMENT, NOT_FOUND,
 * FAILED_PRECONDITION, UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED, UNAVAILABLE,
 * INTERNAL, with the server's message. Local failures are:
 *   TQ_ERR_INVALID_ARGUMENT   a bad address, option or argument (nothing was sent);
 *   TQ_ERR_UNAVAILABLE        cannot connect, connect/IO timeout, or the server closed the
 *                             connection (the client is then broken: close it and reconnect);
 *   TQ_ERR_IO                 a socket error other than the above (client broken);
 *   TQ_ERR_CORRUPT            the server sent a frame that does not decode, or an unexpected id
 *                             (client broken);
 *   TQ_ERR_RESOURCE_EXHAUSTED a frame above frame_bytes_max (either direction; an incoming one
 *                             breaks the client, an outgoing one is refused before sending);
 *   TQ_ERR_FAILED_PRECONDITION misuse of the pipeline or subscription state (e.g. tq_client_call
 *                             while pipelined responses are uncollected);
 *   TQ_ERR_INTERNAL           out of memory.
 * Once a client is broken every later call returns TQ_ERR_UNAVAILABLE ("connection broken").
 *
 * Ownership. Requests stay owned by the caller (the library only reads them, except req->id
 * and, in tq_client_batch, the ops' ids).
 * Every Ticketq__Response returned through resp_out is owned by the caller and must be released
 * with tq_client_response_free() (never free()). Events returned by tq_subscription_next() are
 * owned by the subscription and valid until the next tq_subscription_next() or close.
 *
 * Threads. A client is not thread-safe: use one client per thread (clients share nothing, so
 * many clients in many threads are fine). The library installs no signal handlers; it sends
 * with MSG_NOSIGNAL so a closed peer is an error, not SIGPIPE.
 *
 * Bounds. No frame larger than options.frame_bytes_max is ever read or written; the receive
 * buffer holds at most one frame beyond the responses of the requests in flight. Event frames
 * that arrive while a blocking call waits on a subscribed connection are kept until
 * tq_subscription_next() takes them, at most 1024 frames: beyond that the call fails with
 * TQ_ERR_RESOURCE_EXHAUSTED and breaks the client (make such calls on a second client).
 */
#ifndef TICKETQ_H
#define TICKETQ_H

#include "ticketq.pb-c.h"
#include "tq_err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TQ_CLIENT_ADDR_DEFAULT "127.0.0.1:7070"
/* Timeouts: long enough for a fsync=always server on a slow disk under a sanitizer build. */
#define TQ_CLIENT_CONNECT_TIMEOUT_MS_DEFAULT 5000
#define TQ_CLIENT_IO_TIMEOUT_MS_DEFAULT      30000
/* 1 MiB, the server's default --max-frame (proto/frame.h TQ_FRAME_BYTES_DEFAULT_MAX). */
#define TQ_CLIENT_FRAME_BYTES_DEFAULT_MAX (1u * 1024 * 1024)
/* Pipelining window: submissions beyond this many uncollected requests are refused. */
#define TQ_CLIENT_INFLIGHT_DEFAULT_MAX 4096u
#define TQ_CLIENT_TOKEN_BYTES_MAX      256

struct tq_client;       /* opaque: one connection */
struct tq_subscription; /* opaque: the subscription of one client */

struct tq_client_options {
    const char *addr;         /* "HOST:PORT" or "unix:PATH"; NULL = TQ_CLIENT_ADDR_DEFAULT */
    const char *token;        /* NULL: do not authenticate (only Ping will work) */
    int connect_timeout_ms;   /* 0 = default; < 0 = wait forever */
    int io_timeout_ms;        /* per blocking call; 0 = default; < 0 = wait forever */
    uint32_t frame_bytes_max; /* 0 = default; at most 64 MiB */
    uint32_t inflight_max;    /* pipelined requests not yet collected; 0 = default */
};

/* What the server said about the token (from the Auth response). */
struct tq_client_identity {
    Ticketq__Role role;
    uint64_t tenant_id; /* 0 for a server admin */
    uint64_t agent_id;  /* ROLE_AGENT tokens */
    uint64_t token_id;
};

/* Ids a mutation created or touched (Response.ids), flattened; zero when absent. */
struct tq_client_ids {
    uint64_t lsn; /* the LSN of the mutation's log record */
    uint64_t tenant_id, token_id, queue_id, agent_id, customer_id, ticket_id, message_id;
    uint64_t ticket_number;
    bool customer_created, ticket_created, duplicate, over_capacity;
};

/* ---- connection ------------------------------------------------------------------------- */

/* Connects, authenticates (when options->token is set) and returns the client in *client_out
 * (owned by the caller: tq_client_close). Errors: TQ_ERR_INVALID_ARGUMENT (bad address or
 * option), TQ_ERR_UNAVAILABLE (resolve/connect failed or timed out, server closed), TQ_ERR_IO,
 * TQ_ERR_CORRUPT, TQ_ERR_INTERNAL (no memory), or the server's Auth error
 * (TQ_ERR_UNAUTHENTICATED for a wrong or revoked token). On error *client_out is NULL. */
TQ_NODISCARD enum tq_err tq_client_connect(const struct tq_client_options *options,
                                           struct tq_client **client_out, struct tq_error *err);

/* Closes the connection and frees everything, including an open subscription and responses
 * that were never collected. NULL is a no-op. */
void tq_client_close(struct tq_client *client);

/* The identity of the authenticated token (all zero before/without Auth). */
const struct tq_client_identity *tq_client_identity(const struct tq_client *client);

/* Server admins act on one tenant by setting Request.tenant_id; this sets it for every later
 * request whose has_tenant_id is false (0 = none). */
void tq_client_set_tenant(struct tq_client *client, uint64_t tenant_id);

/* ---- blocking calls --------------------------------------------------------------------- */

/* Sends req (setting req->id to a fresh id) and waits for its response, returned in
 * *resp_out (caller frees with tq_client_response_free) when the server answered at all,
 * also when it answered with an error. Returns TQ_OK, or the server's error mapped to
 * enum tq_err (then *resp_out still holds the response), or a local error (then *resp_out is
 * NULL); see the top of this file. Events of an open subscription on this client that arrive
 * meanwhile are kept for tq_subscription_next(). TQ_ERR_FAILED_PRECONDITION if pipelined
 * requests are still uncollected. */
TQ_NODISCARD enum tq_err tq_client_call(struct tq_client *client, Ticketq__Request *req,
                                        Ticketq__Response **resp_out, struct tq_error *err);

/* Releases a response returned by this library. NULL is a no-op. */
void tq_client_response_free(Ticketq__Response *resp);

/* Maps a response's error (if any) to enum tq_err and err; TQ_OK when it has none. Use it for
 * the per-operation results of a batch. */
TQ_NODISCARD enum tq_err tq_client_response_error(const Ticketq__Response *resp,
                                                  struct tq_error *err);

/* Copies resp->lsn and resp->ids into *ids (zeroing absent fields). */
void tq_client_ids_from(const Ticketq__Response *resp, struct tq_client_ids *ids);

/* ---- typed helpers: each builds one request and calls tq_client_call --------------------
 * Errors are those of tq_client_call. ids may be NULL. A function with resp_out returns the
 * whole response (the result in its oneof, e.g. (*resp_out)->ticket); the caller frees it. */

TQ_NODISCARD enum tq_err tq_client_ping(struct tq_client *client, struct tq_error *err);
/* Server admin: creates a tenant; ids->tenant_id. */
TQ_NODISCARD enum tq_err tq_client_tenant_create(struct tq_client *client, const char *name,
                                                 struct tq_client_ids *ids, struct tq_error *err);
/* Issues a token; the secret (shown once) is copied into secret (NUL-terminated, truncated to
 * secret_cap - 1 bytes; secret may be NULL). ids->token_id. */
TQ_NODISCARD enum tq_err tq_client_token_issue(struct tq_client *client,
                                               Ticketq__Role role, /* token's role */
                                               uint64_t agent_id,  /* ROLE_AGENT: agent */
                                               const char *name,   /* label, or NULL */
                                               char *secret,       /* out, or NULL */
                                               size_t secret_cap,  /* bytes at secret */
                                               struct tq_client_ids *ids, struct tq_error *err);
TQ_NODISCARD enum tq_err tq_client_token_revoke(struct tq_client *client, uint64_t token_id,
                                                struct tq_error *err);
TQ_NODISCARD enum tq_err tq_client_queue_create(struct tq_client *client, const char *name,
                                                bool auto_assign, struct tq_client_ids *ids,
                                                struct tq_error *err);
TQ_NODISCARD enum tq_err tq_client_agent_create(struct tq_client *client,
                                                const char *name,        /* display name */
                                                uint32_t capacity_live,  /* chat tickets */
                                                uint32_t capacity_async, /* email tickets */
                                                struct tq_client_ids *ids, struct tq_error *err);
/* Sends *update as is (only its has_ fields change anything). */
TQ_NODISCARD enum tq_err tq_client_agent_update(struct tq_client *client,
                                                const Ticketq__AgentUpdate *update,
                                                struct tq_error *err);
/* An inbound customer message; ids: ticket, message, customer, duplicate, ... */
TQ_NODISCARD enum tq_err tq_client_ingest(struct tq_client *client, const Ticketq__Ingest *in,
                                          struct tq_client_ids *ids, struct tq_error *err);
/* A public reply on the ticket's channel; ids->message_id. */
TQ_NODISCARD enum tq_err tq_client_reply(struct tq_client *client, uint64_t ticket_id,
                                         const char *body, struct tq_client_ids *ids,
                                         struct tq_error *err);
/* An internal note (never sent to the customer); ids->message_id. */
TQ_NODISCARD enum tq_err tq_client_note(struct tq_client *client, uint64_t ticket_id,
                                        const char *body, struct tq_client_ids *ids,
                                        struct tq_error *err);
TQ_NODISCARD enum tq_err tq_client_ticket_update(struct tq_client *client,
                                                 const Ticketq__TicketUpdate *update,
                                                 struct tq_client_ids *ids, struct tq_error *err);
/* Takes the next ticket for an agent (agent_id 0: the token's agent); ids->ticket_id. */
TQ_NODISCARD enum tq_err tq_client_claim(struct tq_client *client, uint64_t agent_id,
                                         struct tq_client_ids *ids, struct tq_error *err);
/* Claim-and-reply in one round trip: claims the next ticket for the agent (agent_id 0: the
 * token's agent) from queue_ids[0..queue_count) (0: all queues), appends body as a public reply
 * authored by that agent on the ticket's channel and, if set_status >= 0, sets that status
 * (e.g. TICKETQ__STATUS__PENDING). ids: ticket_id, ticket_number, message_id, agent_id, lsn.
 * TQ_ERR_NOT_FOUND: nothing to claim. A bad body or status (TQ_ERR_INVALID_ARGUMENT) claims
 * nothing. */
TQ_NODISCARD enum tq_err tq_client_claim_reply(struct tq_client *client,
                                               uint64_t agent_id,         /* 0: token's */
                                               const uint64_t *queue_ids, /* or NULL */
                                               size_t queue_count,        /* 0: all */
                                               const char *body,          /* UTF-8 */
                                               int set_status, /* Ticketq__Status or -1 */
                                               struct tq_client_ids *ids, struct tq_error *err);
TQ_NODISCARD enum tq_err tq_client_release(struct tq_client *client, uint64_t ticket_id,
                                           struct tq_error *err);
/* Moves a ticket to a queue and/or an agent (0 = leave unchanged). */
TQ_NODISCARD enum tq_err tq_client_transfer(struct tq_client *client, uint64_t ticket_id,
                                            uint64_t to_queue_id, uint64_t to_agent_id,
                                            struct tq_error *err);
/* (*resp_out)->ticket with a page of messages (limit 0 = server default). */
TQ_NODISCARD enum tq_err tq_client_ticket_get(struct tq_client *client,
                                              uint64_t ticket_id,      /* ticket */
                                              uint32_t message_offset, /* first message */
                                              uint32_t message_limit,  /* 0 = default */
                                              Ticketq__Response **resp_out, struct tq_error *err);
/* (*resp_out)->queue_list: the queue and its waiting tickets (limit 0 = default). */
TQ_NODISCARD enum tq_err tq_client_queue_list(struct tq_client *client, uint64_t queue_id,
                                              uint32_t limit, Ticketq__Response **resp_out,
                                              struct tq_error *err);
/* (*resp_out)->queues: every queue of the tenant with its depth. */
TQ_NODISCARD enum tq_err tq_client_queues_get(struct tq_client *client,
                                              Ticketq__Response **resp_out, struct tq_error *err);
/* (*resp_out)->sla_nearest: running SLA clocks, nearest deadline first. */
TQ_NODISCARD enum tq_err tq_client_sla_nearest(struct tq_client *client, uint32_t limit,
                                               Ticketq__Response **resp_out, struct tq_error *err);
/* (*resp_out)->outbox: outbound messages leased to the caller for lease_ms (0 = default). */
TQ_NODISCARD enum tq_err tq_client_outbox_take(struct tq_client *client,
                                               Ticketq__Channel channel, /* gateway's */
                                               uint32_t max,             /* 0 = default */
                                               uint64_t lease_ms,        /* 0 = default */
                                               Ticketq__Response **resp_out, struct tq_error *err);
/* Delivery status of an outbound message (reason may be NULL). */
TQ_NODISCARD enum tq_err tq_client_outbox_ack(struct tq_client *client, uint64_t message_id,
                                              Ticketq__Delivery status, const char *reason,
                                              struct tq_error *err);
/* (*resp_out)->customer for an identity; TQ_ERR_NOT_FOUND if none. */
TQ_NODISCARD enum tq_err tq_client_customer_lookup(struct tq_client *client,
                                                   Ticketq__Channel channel,
                                                   const char *external_id,
                                                   Ticketq__Response **resp_out,
                                                   struct tq_error *err);
TQ_NODISCARD enum tq_err tq_client_customer_link(struct tq_client *client, uint64_t customer_id,
                                                 Ticketq__Channel channel, const char *external_id,
                                                 struct tq_error *err);
TQ_NODISCARD enum tq_err tq_client_customer_merge(struct tq_client *client, uint64_t survivor_id,
                                                  uint64_t merged_id, struct tq_error *err);
/* Right to erasure on the running server: the customer keeps its id but loses its name,
 * language and identities (a CUSTOMER_ERASED event is streamed); the next message from that
 * sender makes a new customer. The message bodies stay in the log until tq_client_compact
 * redacts them. TQ_ERR_NOT_FOUND, TQ_ERR_FAILED_PRECONDITION (erased already). Tenant admin,
 * or server admin with tq_client_set_tenant. */
TQ_NODISCARD enum tq_err tq_client_customer_erase(struct tq_client *client, uint64_t customer_id,
                                                  struct tq_error *err);
/* Online compaction (server admin, tenant from tq_client_set_tenant): starts it and returns at
 * once; (*resp_out)->compact is the status (phase "snapshot": the snapshot's LSN and the
 * segment count appear in CompactStatus once it is durable). op may be NULL
 * (defaults: erase, compress, no retention, no budget). TQ_ERR_FAILED_PRECONDITION while one
 * runs. Poll tq_client_compact_status until running is false. */
TQ_NODISCARD enum tq_err tq_client_compact(struct tq_client *client, const Ticketq__Compact *op,
                                           Ticketq__Response **resp_out, struct tq_error *err);
/* (*resp_out)->compact: the running or the last finished online compaction. */
TQ_NODISCARD enum tq_err tq_client_compact_status(struct tq_client *client,
                                                  Ticketq__Response **resp_out,
                                                  struct tq_error *err);
/* (*resp_out)->stats: of the acting tenant (or all tenants for a server admin). */
TQ_NODISCARD enum tq_err tq_client_stats(struct tq_client *client, Ticketq__Response **resp_out,
                                         struct tq_error *err);
/* Stores a durable consumer's position: a later subscribe with that consumer name resumes
 * with the events after lsn. */
TQ_NODISCARD enum tq_err tq_client_consumer_ack(struct tq_client *client, const char *consumer,
                                                uint64_t lsn, struct tq_error *err);

/* ---- pipelining and batches ------------------------------------------------------------- */

/* Assigns req->id (also returned in *id_out, may be NULL) and queues the packed request for
 * sending; nothing is written until tq_client_flush() or tq_client_collect(). Errors:
 * TQ_ERR_RESOURCE_EXHAUSTED (frame too large, or inflight_max requests uncollected),
 * TQ_ERR_FAILED_PRECONDITION (a subscription is open), TQ_ERR_UNAVAILABLE (broken),
 * TQ_ERR_INTERNAL. The caller may reuse or free req right after. */
TQ_NODISCARD enum tq_err tq_client_submit(struct tq_client *client, Ticketq__Request *req,
                                          uint64_t *id_out, struct tq_error *err);

/* Writes every queued request (reading arriving responses into the receive buffer meanwhile,
 * so a server that answers while we write never deadlocks us). Errors: TQ_ERR_UNAVAILABLE,
 * TQ_ERR_IO, TQ_ERR_RESOURCE_EXHAUSTED (a response above the frame limit). */
TQ_NODISCARD enum tq_err tq_client_flush(struct tq_client *client, struct tq_error *err);

/* Number of submitted requests whose responses were not collected yet. */
size_t tq_client_inflight(const struct tq_client *client);

/* Flushes if needed and returns the response of the oldest uncollected request in *resp_out
 * (caller frees). Returns TQ_OK whether or not the server answered with an error (use
 * tq_client_response_error on it): the transport-level result is what counts here. Errors:
 * TQ_ERR_FAILED_PRECONDITION (nothing in flight), TQ_ERR_CORRUPT (the response's id is not the
 * oldest in flight: the server broke ordering), and the transport errors of tq_client_call. */
TQ_NODISCARD enum tq_err tq_client_collect(struct tq_client *client, Ticketq__Response **resp_out,
                                           struct tq_error *err);

/* Non-blocking collect, for callers that run their own poll(2) loop over many clients: reads
 * whatever the socket holds right now (never waits) and, if the response of the oldest
 * uncollected request is complete, returns it in *resp_out (caller frees) exactly like
 * tq_client_collect. If no complete response is buffered yet, returns TQ_OK with
 * *resp_out == NULL (poll tq_client_fd() for POLLIN and call again). It writes nothing: queued
 * requests go out with tq_client_flush(). Errors: TQ_ERR_FAILED_PRECONDITION (nothing in
 * flight, or a subscription is open), TQ_ERR_CORRUPT (the response is not the oldest in
 * flight), TQ_ERR_UNAVAILABLE (server closed; client broken), TQ_ERR_IO, TQ_ERR_RESOURCE_
 * EXHAUSTED (frame above the limit), TQ_ERR_INTERNAL. */
TQ_NODISCARD enum tq_err tq_client_try_collect(struct tq_client *client,
                                               Ticketq__Response **resp_out, struct tq_error *err);

/* The client's socket (non-blocking), for poll(2)/epoll readiness only: never read, write or
 * close it yourself. -1 if client is NULL. */
int tq_client_fd(const struct tq_client *client);

/* Sends ops[0..count) as one Batch request (one frame, one log batch on the server) and
 * returns the response; (*resp_out)->batch->results[i] is the result of ops[i] (check each
 * with tq_client_response_error). The ops' ids are set to 1..count. Errors: those of
 * tq_client_call (a batch-level error, e.g. RESOURCE_EXHAUSTED for too many ops), and
 * TQ_ERR_CORRUPT if the answer does not hold one result per op. */
TQ_NODISCARD enum tq_err tq_client_batch(struct tq_client *client, Ticketq__Request **ops,
                                         size_t count, Ticketq__Response **resp_out,
                                         struct tq_error *err);

/* ---- subscriptions ---------------------------------------------------------------------- */

struct tq_subscribe_options {
    uint64_t from_lsn;               /* events of records after this LSN (0 = from the start) */
    bool from_now;                   /* ignore from_lsn: only events committed from now on */
    const char *consumer;            /* durable consumer name: resume after its ack, or NULL */
    const Ticketq__EventType *types; /* filter (type_count entries); NULL = all types */
    size_t type_count;
    uint64_t ticket_id; /* filter; 0 = any */
    uint64_t queue_id;  /* filter; 0 = any */
};

/* Starts streaming the acting tenant's committed events on this client's connection: first
 * the catch-up from the log, then live. The subscription belongs to the client (one at a
 * time); while it is open tq_client_call still works (events arriving meanwhile are kept),
 * but pipelining does not. Errors: TQ_ERR_FAILED_PRECONDITION (already subscribed, or
 * requests in flight), TQ_ERR_INVALID_ARGUMENT (more types than exist), TQ_ERR_INTERNAL,
 * transport errors. The server's refusal (e.g. PERMISSION_DENIED)
 * arrives through tq_subscription_next(). */
TQ_NODISCARD enum tq_err tq_client_subscribe(struct tq_client *client,
                                             const struct tq_subscribe_options *options,
                                             struct tq_subscription **sub_out,
                                             struct tq_error *err);

/* Returns the next event in *event_out (owned by the subscription, valid until the next call
 * or close), waiting up to timeout_ms (< 0 = forever, 0 = only what is already here). On
 * timeout returns TQ_OK with *event_out == NULL. Events come in LSN order; several events of
 * one log record share its LSN. Events at or below the LSN the server says the stream starts
 * after are dropped (so a resumed durable consumer never sees its acked record again).
 * Errors: the server's error for the subscription (it then ended: TQ_ERR_FAILED_PRECONDITION
 * on later calls), and the transport errors of tq_client_call. */
TQ_NODISCARD enum tq_err tq_subscription_next(struct tq_subscription *sub,
                                              const Ticketq__Event **event_out, int timeout_ms,
                                              struct tq_error *err);

/* LSN of the last event returned (before the first: the LSN the stream starts after, once
 * the server named it, else from_lsn): what a durable consumer acks. */
uint64_t tq_subscription_lsn(const struct tq_subscription *sub);

/* Ends the subscription: sends Unsubscribe, discards the events still in flight and frees sub.
 * The client stays usable when this returns TQ_OK; on a transport error it is broken. */
TQ_NODISCARD enum tq_err tq_subscription_close(struct tq_subscription *sub, struct tq_error *err);

/* ---- names ------------------------------------------------------------------------------ */

/* Lower-case names of protocol enum values ("whatsapp", "on_hold", "agent", ...): the
 * spelling the CLI and docs use. Unknown values give "unknown". */
const char *tq_client_channel_name(Ticketq__Channel channel);
const char *tq_client_status_name(Ticketq__Status status);
const char *tq_client_role_name(Ticketq__Role role);
/* Parses such a name for any protocol enum (descriptor e.g. &ticketq__channel__descriptor).
 * Returns false for an unknown name. */
bool tq_client_enum_parse(const ProtobufCEnumDescriptor *descriptor, const char *name,
                          int *value_out);
/* The lower-case name of value in descriptor, written into buf; "unknown" if not a value. */
const char *tq_client_enum_name(const ProtobufCEnumDescriptor *descriptor, int value, char *buf,
                                size_t cap);

#ifdef __cplusplus
}
#endif

#endif
