/* server/config.h: ticketqd's options (command line, --config file) and their validation.
 *
 * Every option has a long name; the config file uses the same names as `name = value` lines
 * ('#' starts a comment). Command-line options override the file. A bad value is one clear
 * line naming the option and exit status 2 (tq_config_parse returns 2).
 */
#ifndef TQ_SERVER_CONFIG_H
#define TQ_SERVER_CONFIG_H

#include "storage/log.h"

#include <stdbool.h>
#include <stdint.h>

#define TQ_CONFIG_PATH_BYTES 512

/* How connections receive (--recv, or the TICKETQD_RECV environment variable, which the
 * command line overrides): multishot recv with a provided-buffer ring, the single-shot
 * per-connection-buffer path, or auto (multishot when the startup probe says it works). */
enum tq_recv_mode { TQ_RECV_AUTO = 0, TQ_RECV_SINGLE = 1, TQ_RECV_MULTISHOT = 2 };

/* How the ring is set up (--ring): auto tries defer, then coop, then plain, and takes the first
 * the kernel accepts; the others insist on one (plain = no setup flags, the pre-2026-12-03
 * ring, kept for A/B runs). defer = SINGLE_ISSUER | DEFER_TASKRUN | TASKRUN_FLAG: completions
 * (an io-wq worker's fdatasync, a send) are posted only when the loop waits, so the loop is
 * never interrupted mid-turn and a worker's completion does not wake it before it asks;
 * coop = COOP_TASKRUN | TASKRUN_FLAG. */
enum tq_ring_mode { TQ_RING_AUTO = 0, TQ_RING_DEFER = 1, TQ_RING_COOP = 2, TQ_RING_PLAIN = 3 };
/* The order of a loop turn (server/loop.c, docs/architecture.md "One loop turn"). */
enum tq_turn_mode { TQ_TURN_CLASSIC = 0, TQ_TURN_POLL = 1, TQ_TURN_REACTIVE = 2 };

struct tq_config {
    char data_dir[TQ_CONFIG_PATH_BYTES];
    char listen_host[64]; /* numeric IPv4/IPv6 literal or "localhost" */
    uint16_t listen_port; /* 0 = ephemeral */
    bool listen_tcp;      /* false if --listen none */
    char unix_path[108];  /* empty: no Unix socket */
    char port_file[TQ_CONFIG_PATH_BYTES];
    enum tq_fsync_mode fsync_mode;
    uint32_t fsync_interval_ms;
    char metrics_host[64]; /* empty: no metrics listener */
    uint16_t metrics_port;
    uint32_t max_connections;
    uint32_t max_frame;
    uint32_t max_inflight;
    uint64_t idle_timeout_ms; /* 0 = never */
    uint32_t subscriber_buffer;
    uint64_t segment_bytes;
    uint32_t body_max;
    enum tq_recv_mode recv_mode;
    uint32_t recv_buffers;   /* provided-buffer ring entries (power of two) */
    uint64_t snapshot_every; /* records since the last snapshot that start one; 0 = off */
    /* and log bytes since it, in percent of its size on disk, that must also be reached;
     * 0 = records alone decide (snapshot.c) */
    uint32_t snapshot_growth_pct;
    uint32_t snapshots_keep; /* newest snapshots kept on disk */
    bool snapshot_precopy;   /* the child breaks copy-on-write of the hot state (snapshot.c) */
    enum tq_ring_mode ring_mode;
    uint32_t io_workers; /* io-wq bounded workers (the log's writes and fdatasyncs); 0 = kernel's */
    enum tq_turn_mode turn_mode;
    uint32_t idle_poll_us; /* spin on the CQ ring this long before blocking; 0 = never */
    bool log_dsync;      /* ALWAYS: RWF_DSYNC batch writes, no linked fdatasync (tq_log_options) */
    bool state_prefault; /* populate the state's next huge pages on a helper thread */
    bool log_prezero;    /* zero-fill the spare segment through the ring (tq_log_options) */
    uint32_t recycle_segments;   /* tq_log_options.recycle_segments_max (0 = off) */
    uint32_t log_batches;        /* tq_log_options.batches_inflight_max (0 = storage's default) */
    uint32_t log_pipeline_bytes; /* tq_log_options.pipeline_bytes_min (0 = storage's default) */
};

/* Fills cfg with every default. */
void tq_config_defaults(struct tq_config *cfg);

/* Parses argv (and the --config file it names). Returns 0 to run, 1 if --help was printed
 * (exit 0), 2 after printing one line naming the bad option to stderr (exit 2). */
int tq_config_parse(struct tq_config *cfg, int argc, char **argv);

/* Sets one option by long name from its text value. Returns false and writes a message
 * naming the option into msg (cap bytes) if the name is unknown or the value bad. */
bool tq_config_set(struct tq_config *cfg, const char *name, const char *value, char *msg,
                   size_t cap);

#endif
