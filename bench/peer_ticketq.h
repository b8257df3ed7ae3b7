/* bench/peer_ticketq.h: ticketq itself as a ticketq-bench system (see openloop.h), over
 * libticketq (client/ticketq.h): pipelined requests per connection, tq_client_try_collect for
 * completions, Batch requests for --batch.
 *
 * Data model (the peer workloads of /work/shared/PEER-WORKLOADS.md mapped onto ticketq; the
 * full mapping and its deviations are in docs/performance-peers.md):
 *   - one tenant per load ("bench-<pid>-<n>"; created with a server-admin token, or the
 *     token's own tenant for a tenant-admin token);
 *   - queues "email", "sms", "whatsapp" for the doc's channels 0, 1, 2 (proto Channel EMAIL,
 *     SMS, WHATSAPP have the same numbers); every Ingest names its queue explicitly;
 *   - priority: the doc's tier 0 (highest) -> URGENT, 1 -> HIGH, 2 -> NORMAL; one SLA policy with
 *     first-reply targets URGENT 1 h, HIGH 4 h, NORMAL 24 h (the doc's deadlines), so a queue's
 *     order (priority, SLA due, enqueue time) is the doc's (priority, seq);
 *   - 500 agents with capacity 1,000,000 per class (claims never hit a capacity);
 *   - ingest = one Ingest (channel, from = "ext-<n>", queue of the channel, priority of the
 *     tier, the 300-byte body);
 *   - claim-reply = one Claim (agent, [queue]) with a ClaimReply (the outbound body,
 *     set_status PENDING): one request and one round trip, like the Redis peer's Lua call and
 *     PostgreSQL's function (until 2026-12-03 it was Claim, then Reply: two round trips);
 *   - reads: TicketGet (last = true: the last 20 messages), QueueList (top 50), SlaNearest (50).
 * Backlog: ticketq keeps one unclosed ticket per customer and queue (ingest appends to it), so
 * backlog ticket t <= NCUST belongs to customer ext-t and ticket t > NCUST to a placeholder
 * customer "bl-<t>" on the channel, queue and tier of the doc's customer ((t-1) % NCUST) + 1.
 * The backlog must be at least NCUST (every doc customer exists after the load).
 */
#ifndef TQ_BENCH_PEER_TICKETQ_H
#define TQ_BENCH_PEER_TICKETQ_H

#include "openloop.h"

#include "tq_err.h"

#include <stdbool.h>
#include <stdint.h>

#define TQ_TICKETQ_BATCH_MAX      1000u /* ingests per Batch request (server limit 1000) */
#define TQ_TICKETQ_LOAD_BATCH     100u  /* ingests per Batch while loading */
#define TQ_TICKETQ_LOAD_INFLIGHT  16u   /* Batch requests in flight while loading */
#define TQ_TICKETQ_AGENT_CAPACITY 1000000u

struct tq_ticketq_options {
    const char *addr;  /* "HOST:PORT" or "unix:PATH" (NULL: libticketq's default) */
    const char *token; /* server-admin or tenant-admin token */
    uint32_t pipeline; /* the driver's pipeline depth (operations per connection) */
    uint32_t batch;    /* ingests per Batch request, 1..TQ_TICKETQ_BATCH_MAX */
};

/* Counts from the server's Stats for the bench's tenant. */
struct tq_ticketq_counts {
    uint64_t tickets, messages, customers, queued_tickets, sla_breaches;
};

/* Connects the control client (checks the token). Errors: those of tq_client_connect
 * (TQ_ERR_UNAVAILABLE cannot connect, TQ_ERR_UNAUTHENTICATED), TQ_ERR_INVALID_ARGUMENT (batch out
 * of range, or an agent token: the bench needs an admin). The caller owns *system_out
 * (tq_ticketq_system_destroy). Data connections exist only after tq_ticketq_load. */
TQ_NODISCARD enum tq_err tq_ticketq_system_create(const struct tq_ticketq_options *options,
                                                  struct tq_bench_system **system_out,
                                                  struct tq_error *error);
void tq_ticketq_system_destroy(struct tq_bench_system *system);

/* Creates the tenant (server admin), its SLA policy, 3 queues, 500 agents, then the backlog
 * (customers 1..customers appear as the senders of tickets 1..customers) with Batch requests
 * of TQ_TICKETQ_LOAD_BATCH ingests, TQ_TICKETQ_LOAD_INFLIGHT in flight. progress (may be NULL)
 * is called with the tickets loaded so far after every batch. Errors: TQ_ERR_INVALID_ARGUMENT
 * (backlog < customers), a server error (message names the step), transport errors. */
TQ_NODISCARD enum tq_err tq_ticketq_load(struct tq_bench_system *system, uint64_t customers,
                                         uint64_t backlog, void (*progress)(uint64_t done),
                                         struct tq_error *error);

/* Stats of the bench's tenant (after tq_ticketq_load) over the control client. */
TQ_NODISCARD enum tq_err tq_ticketq_counts(struct tq_bench_system *system,
                                           struct tq_ticketq_counts *out, struct tq_error *error);

/* ---- fanout (bench_main.c) ---- */
struct tq_client;

/* Called on the driver's thread for every ingest the server acknowledged without error (plain or
 * batch member): the driver's tag, the message id the answer carries, the monotonic time the
 * answer was collected (tq_bench_now_ns). Answers without a message id are not reported. */
typedef void (*tq_ticketq_ack_fn)(void *ctx, uint64_t tag, uint64_t message_id, uint64_t ack_ns);

/* Installs (fn != NULL) or removes the ack hook. Call before the driver runs. */
void tq_ticketq_set_ack_hook(struct tq_bench_system *system, tq_ticketq_ack_fn fn, void *ctx);

/* The highest LSN the load's answers carried (0 if none did): a subscription from this LSN sees
 * the events of every mutation after the load, and none of the load's last batch. */
uint64_t tq_ticketq_load_lsn(const struct tq_bench_system *system);

/* Opens one more client on the bench's tenant (after tq_ticketq_load), for a subscriber thread
 * (the caller owns it: tq_client_close). Errors: TQ_ERR_FAILED_PRECONDITION before the load,
 * those of tq_client_connect. */
TQ_NODISCARD enum tq_err tq_ticketq_connect(struct tq_bench_system *system,
                                            struct tq_client **client_out, struct tq_error *error);

/* The wire priority of a workload tier (0 = highest): 0 -> URGENT, 1 -> HIGH, 2 -> NORMAL. */
int tq_ticketq_priority_of_tier(uint32_t tier);

#endif
