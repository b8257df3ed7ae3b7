/* server/tq_limits.h: every limit of ticketqd in one place, with where its number came from.
 *
 * _DEFAULT values are option defaults (see `ticketqd --help`); _MAX/_MIN bound what an option
 * may be set to. Per-turn work bounds keep one loop turn short, so one busy client cannot
 * starve the others (TigerBeetle style: every loop has a bound).
 */
#ifndef TQ_SERVER_TQ_LIMITS_H
#define TQ_SERVER_TQ_LIMITS_H

#include "frame.h"

/* Connections: 1024 keeps the table at a few MiB; the kernel's default fd limit is 1024. */
#define TQ_CONNECTIONS_DEFAULT_MAX 1000u
#define TQ_CONNECTIONS_LIMIT_MAX   100000u

/* Requests a connection may have in flight (read, not yet fully answered). When reached the
 * server stops reading from that connection (backpressure) until responses drain. 1024 lets a
 * pipelining client fill several group-commit batches. */
#define TQ_INFLIGHT_DEFAULT_MAX 1024u
#define TQ_INFLIGHT_LIMIT_MAX   65536u

/* A connection that neither sends a byte nor accepts one for this long is closed. 5 minutes
 * tolerates interactive CLI sessions; subscribers are exempt (they wait for events). */
#define TQ_IDLE_TIMEOUT_MS_DEFAULT (300u * 1000u)

/* Live events buffered for one subscriber before it is switched back to catch-up from the
 * log: 1 MiB is about 10k events, several seconds of a busy tenant. */
#define TQ_SUBSCRIBER_BUFFER_BYTES_DEFAULT (1u * 1024 * 1024)
#define TQ_SUBSCRIBER_BUFFER_BYTES_MIN     4096u

/* Responses queued to one connection that the client does not read: beyond this (or beyond
 * 2 x max-frame, whichever is larger) the client is disconnected. */
#define TQ_SEND_QUEUE_BYTES_MAX (16u * 1024 * 1024)

/* Per-turn bounds. */
#define TQ_CQES_PER_TURN_MAX        512u /* CQEs reaped per loop turn */
#define TQ_FRAMES_PER_CONN_TURN_MAX 256u /* requests parsed per connection per turn */
/* Single Ingests collected (across connections) before they are applied together with the
 * state's prefetch running ahead (dispatch.c, the run): 4x the prefetch window, and a bound
 * on the decoded requests the arena holds at once. */
#define TQ_INGEST_RUN_MAX 64u
/* --turn poll|reactive: a turn lets the kernel run pending completions (and reaps them) after every
 * this many requests parsed. 8 requests are 20-30 us of apply: the log's write->fdatasync link
 * is held no longer than that (one ~1 us io_uring_enter per 8 requests at most). */
#define TQ_FRAMES_PER_POLL_MAX        8u
#define TQ_CATCHUP_BYTES_PER_TURN_MAX (256u * 1024) /* subscriber catch-up per turn */

/* Ring size: one recv + one send per connection fit without waiting for the SQ to drain. */
#define TQ_RING_ENTRIES 4096u

/* Per-connection receive buffer: starts small, grows to max-frame + prefix. */
#define TQ_RECV_BUFFER_BYTES_INITIAL (16u * 1024)

/* Multishot receive (--recv multishot|auto): one provided-buffer ring shared by every client
 * connection. A CQE names one buffer; its bytes are copied into the connection's frame buffer
 * and the buffer goes back to the ring at once, so the ring only runs dry when more than
 * count x bytes (8 MiB) arrive within one reap. 16 KiB matches the initial per-connection
 * buffer and typical TCP segments coalesced by GRO. */
#define TQ_RECV_RING_BUFFERS_DEFAULT 512u
/* --recv-buffers bounds: a power of two; 2 lets the tests empty the ring (-ENOBUFS) on
 * purpose; buffer ids are 16 bits and the kernel caps a ring at 32768 entries. */
#define TQ_RECV_RING_BUFFERS_MIN  2u
#define TQ_RECV_RING_BUFFERS_MAX  32768u
#define TQ_RECV_RING_BUFFER_BYTES (16u * 1024)
#define TQ_RECV_RING_GROUP_ID     1u
/* io-wq workers for bounded work (the log's fdatasyncs, O_DIRECT writes that need extent
 * conversion, the spare's zero-fill), --io-workers. 0 leaves the kernel's bound (4 per CPU): a
 * bound of 2 measured no better on the 2-core machine (docs/performance-server.md, 2026-12-03)
 * and can queue a batch's write behind the spare's long zero-fill fdatasync. */
#define TQ_IO_WORKERS_DEFAULT 0u
#define TQ_IO_WORKERS_MAX     64u

/* --idle-poll-us: how long the loop spins on its completion queue before it blocks in
 * io_uring_enter (server/loop.c, idle_poll). 0 = never spin (the default). The bound: a spin is
 * meant to cover the wake-up of an idle vCPU and of the loop thread (p99 about 1.9 ms from wake
 * to run on the 2-vCPU VM, docs/performance-server.md); 1 ms of pure spin per idle wait is the
 * most CPU we let one option burn. */
#define TQ_IDLE_POLL_US_DEFAULT 0u
#define TQ_IDLE_POLL_US_MAX     1000u

/* The log's group commit as ticketqd runs it by default (2026-12-03 late evening,
 * docs/performance-server.md "Group commit defaults"): batch writes made durable by RWF_DSYNC
 * (--log-dsync on: no linked fdatasync waiting for the loop's next io_uring_enter to be
 * issued), up to two batches in flight (--log-batches) and a second one sent whatever its size
 * (--log-pipeline-bytes 1). Mixed 64 x 1 durable: 91-93k against 75-78k units/s (3 quiet
 * pairs); the storage layer's own defaults (4, 512 KiB, no dsync) are unchanged. */
#define TQ_LOG_DSYNC_DEFAULT          true
#define TQ_LOG_BATCHES_DEFAULT        2u
#define TQ_LOG_PIPELINE_BYTES_DEFAULT 1u

/* After -ENOBUFS (ring empty) a connection re-arms no sooner than this (the loop's timer
 * wakes it): never spin on an empty ring. */
#define TQ_RECV_NOBUFS_RETRY_MS 10u

/* Tick: at least once a second the server checks for due SLA/wake-up/auto-close work. */
#define TQ_TICK_INTERVAL_MS 1000u
/* Timer granularity of the loop (idle checks, interval fsync when no I/O happens). */
#define TQ_TIMER_PERIOD_MS 100u

/* Reserve for the events record that follows a command record in the same batch. */
#define TQ_EVENTS_RECORD_RESERVE_BYTES (64u * 1024)

/* Queries. */
/* Background snapshots (server/snapshot.c): --snapshot-every records appended since the last
 * snapshot start the next one (0 = never automatically); SnapshotNow requests waiting at once;
 * after a failed automatic snapshot the next attempt waits this long. */
#define TQ_SNAPSHOT_EVERY_DEFAULT 2000000ull
#define TQ_SNAPSHOT_EVERY_MAX     1000000000000ull
/* --snapshot-growth: an automatic snapshot also waits until the log bytes appended since the
 * last snapshot reach this percentage of that snapshot's file (Redis's
 * auto-aof-rewrite-percentage; 0 = off). It bounds what snapshots write to 100/PCT bytes per
 * log byte, and a restart's replay to PCT% of the snapshot's size in log. Default: measured in
 * docs/performance-server.md (2026-12-04, "Snapshots scaled to the state"). The maximum (1000x
 * the snapshot) is where --snapshot-every 0 is the honest setting. */
#define TQ_SNAPSHOT_GROWTH_PCT_DEFAULT 300u
#define TQ_SNAPSHOT_GROWTH_PCT_MAX     100000u
#define TQ_SNAPSHOT_WAITERS_MAX        64u
#define TQ_SNAPSHOT_RETRY_MS           30000u
#define TQ_SNAPSHOT_ERROR_BYTES        256u

#define TQ_LIST_LIMIT_DEFAULT          50u
#define TQ_LIST_LIMIT_MAX              1000u
#define TQ_MESSAGES_PAGE_DEFAULT       20u
#define TQ_MESSAGES_PAGE_MAX           200u
#define TQ_QUEUES_PER_TENANT_REPLY_MAX 4096u

/* AgentCreate with only one capacity given: the other class gets this (3 chats at once is
 * the common contact-centre default; 10 open emails). */
#define TQ_AGENT_CAPACITY_LIVE_DEFAULT  3u
#define TQ_AGENT_CAPACITY_ASYNC_DEFAULT 10u

/* Business hours: the tz table covers one year back and ten years ahead. */
#define TQ_TZ_SPAN_BACK_S  (366ll * 86400)
#define TQ_TZ_SPAN_AHEAD_S (3653ll * 86400)

/* The admin token: 32 random bytes, printed as "tq_" + 64 hex digits. */
#define TQ_TOKEN_SECRET_BYTES   32u
#define TQ_TOKEN_PREFIX         "tq_"
#define TQ_TOKEN_TEXT_BYTES     (3u + 2u * TQ_TOKEN_SECRET_BYTES)
#define TQ_AUTH_TOKEN_BYTES_MAX 1024u

#endif
