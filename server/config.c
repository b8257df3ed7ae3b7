/* server/config.c: option parsing for ticketqd (getopt_long and the --config file).
 *
 * One table (k_options) names every option, its argument and its help text with the default,
 * so --help, the config file and getopt_long can never disagree. Values are validated here,
 * once, with the option's name in the message; the rest of the server trusts struct tq_config.
 */
#include "config.h"

#include "state/state.h"
#include "tq_assert.h"
#include "tq_limits.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct option_doc {
    const char *name;
    const char *arg; /* NULL: no argument */
    const char *help;
};

static const struct option_doc k_options[] = {
    {"data", "DIR", "data directory (log, snapshots, admin.token); required"},
    {"listen", "HOST:PORT",
     "TCP address to listen on (default 127.0.0.1:7070; port 0 = "
     "ephemeral; 'none' = no TCP)"},
    {"unix", "PATH", "also listen on this Unix socket (default: none)"},
    {"port-file", "FILE", "after listening, write \"HOST:PORT\\n\" to FILE atomically"},
    {"fsync", "MODE", "always | interval=MS | none (default always: a response means durable)"},
    {"metrics", "HOST:PORT", "serve Prometheus text at GET /metrics (default: off)"},
    {"config", "FILE", "read 'name = value' lines with these option names (argv overrides)"},
    {"max-connections", "N", "concurrent client connections (default 1000)"},
    {"max-frame", "BYTES", "largest request frame (default 1048576, at most 67108864)"},
    {"max-inflight", "N",
     "unanswered requests per connection before the server stops "
     "reading it (default 1024)"},
    {"idle-timeout-ms", "MS", "close connections idle this long; 0 = never (default 300000)"},
    {"subscriber-buffer", "BYTES",
     "live event bytes buffered per subscriber before it falls "
     "back to the log (default 1048576)"},
    {"segment-bytes", "BYTES", "log segment size (default 67108864)"},
    {"body-max", "BYTES", "largest message body (default 65536)"},
    {"recv", "MODE",
     "single | multishot | auto: receive path (default auto = multishot recv "
     "with a provided-buffer ring when the kernel has it; env TICKETQD_RECV)"},
    {"recv-buffers", "N",
     "provided-buffer ring entries of 16 KiB for multishot recv, a power "
     "of two 2..32768 (default 512)"},
    {"snapshot-every", "N",
     "write a background snapshot after N records appended since the last one; 0 = only on "
     "SnapshotNow (default 2000000)"},
    {"snapshot-growth", "PCT",
     "an automatic snapshot (--snapshot-every) also waits until the log grew by PCT percent "
     "of the last snapshot's file since it, 0..100000; 0 = records alone decide (default 300; "
     "docs/operations.md, \"Snapshots\")"},
    {"snapshots-keep", "N", "snapshots kept on disk, newest first, 1..32 (default 2)"},
    {"snapshot-precopy", "on|off",
     "the snapshot child copies the state's written-to pages first, so the loop's writes do "
     "not copy them (default on; docs/operations.md, \"Snapshots\")"},
    {"ring", "MODE",
     "auto | defer | coop | plain: io_uring set-up flags (default auto = defer, else coop, "
     "else plain, whichever the kernel takes; docs/architecture.md)"},
    {"io-workers", "N",
     "bound on io-wq workers for the log's writes and fdatasyncs, 1..64; 0 = the kernel's "
     "own bound (default 0)"},
    {"turn", "MODE",
     "classic | poll | reactive: the order of a loop turn (default classic; poll lets the "
     "kernel run pending completions every 8 requests parsed; reactive also reaps them and, "
     "on an acknowledgement, starts the next batch and sends the released responses before "
     "parsing on; env TICKETQD_TURN)"},
    {"idle-poll-us", "US",
     "before the loop blocks for completions while a commit is in flight or a client is "
     "connected, spin up to US microseconds checking the completion queue, 0..1000 (default 0 "
     "= block at once; docs/performance-server.md)"},
    {"state-prefault", "on|off",
     "populate the state's next huge pages on a helper thread, ahead of need, so the loop "
     "does not take the faults that zero them (default on; docs/performance-state.md)"},
    {"log-prezero", "on|off",
     "zero-fill the preallocated spare segment in the background (default on; off makes "
     "each fdatasync convert unwritten extents: slower, docs/performance-server.md)"},
    {"log-dsync", "on|off",
     "with --fsync always, make each batch durable with the write itself (RWF_DSYNC) instead "
     "of a write linked to an fdatasync (default on; docs/performance-server.md)"},
    {"recycle-segments", "N",
     "keep up to N files of compressed segments for reuse as new segments, 0..64: faster "
     "writes, N x segment-bytes of disk kept (default 0 = off)"},
    {"log-batches", "N",
     "group-commit batches in flight at once, 1..4; 0 = the log's own default, 4 (default "
     "2; docs/performance-server.md)"},
    {"log-pipeline-bytes", "BYTES",
     "a batch goes out while another is in flight only if it or the batches in flight hold "
     "this many bytes, 1..4194304; 1 = any batch; 0 = the log's own default, 524288 "
     "(default 1; docs/performance-server.md)"},
    {"help", NULL, "print this help and exit"},
};

void tq_config_defaults(struct tq_config *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->listen_host, sizeof(cfg->listen_host), "127.0.0.1");
    cfg->listen_port = 7070;
    cfg->listen_tcp = true;
    cfg->fsync_mode = TQ_FSYNC_ALWAYS;
    cfg->max_connections = TQ_CONNECTIONS_DEFAULT_MAX;
    cfg->max_frame = TQ_FRAME_BYTES_DEFAULT_MAX;
    cfg->max_inflight = TQ_INFLIGHT_DEFAULT_MAX;
    cfg->idle_timeout_ms = TQ_IDLE_TIMEOUT_MS_DEFAULT;
    cfg->subscriber_buffer = TQ_SUBSCRIBER_BUFFER_BYTES_DEFAULT;
    cfg->segment_bytes = TQ_SEGMENT_BYTES_DEFAULT;
    cfg->body_max = TQ_BODY_BYTES_DEFAULT_MAX;
    cfg->recv_mode = TQ_RECV_AUTO;
    cfg->recv_buffers = TQ_RECV_RING_BUFFERS_DEFAULT;
    cfg->snapshot_every = TQ_SNAPSHOT_EVERY_DEFAULT;
    cfg->snapshot_growth_pct = TQ_SNAPSHOT_GROWTH_PCT_DEFAULT;
    cfg->snapshots_keep = TQ_SNAPSHOTS_KEPT_DEFAULT;
    cfg->ring_mode = TQ_RING_AUTO;
    cfg->io_workers = TQ_IO_WORKERS_DEFAULT;
    cfg->turn_mode = TQ_TURN_CLASSIC;
    cfg->idle_poll_us = TQ_IDLE_POLL_US_DEFAULT;
    cfg->log_prezero = true;
    cfg->log_dsync = TQ_LOG_DSYNC_DEFAULT;
    cfg->log_batches = TQ_LOG_BATCHES_DEFAULT;
    cfg->log_pipeline_bytes = TQ_LOG_PIPELINE_BYTES_DEFAULT;
    cfg->state_prefault = true;
    cfg->snapshot_precopy = true;
}

static bool parse_on_off(const char *s, bool *out) {
    if (strcmp(s, "on") == 0 || strcmp(s, "off") == 0) {
        *out = s[1] == 'n';
        return true;
    }
    return false;
}

static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out) {
    if (s == NULL || *s == '\0' || *s == '-' || *s == '+') return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) return false;
    *out = v;
    return true;
}

/* "HOST:PORT" (IPv6 as "[::1]:PORT"). */
static bool parse_host_port(const char *s, char *host, size_t host_cap, uint16_t *port) {
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s) return false;
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (h[0] == '[') {
        if (hl < 3 || h[hl - 1] != ']') return false;
        h++;
        hl -= 2;
    }
    if (hl >= host_cap) return false;
    uint64_t p;
    if (!parse_u64(colon + 1, 0, 65535, &p)) return false;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (uint16_t)p;
    return true;
}

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(msg, cap, __VA_ARGS__);                                                           \
        return false;                                                                              \
    } while (0)

static bool set_path(char *dst, size_t dst_cap, const char *name, const char *value, char *msg,
                     size_t cap) {
    if (value[0] == '\0' || strlen(value) >= dst_cap) {
        FAIL("--%s: path empty or longer than %zu bytes", name, dst_cap - 1);
    }
    snprintf(dst, dst_cap, "%s", value);
    return true;
}

bool tq_config_set(struct tq_config *cfg, const char *name, const char *value, char *msg,
                   size_t cap) {
    TQ_ASSERT(cfg != NULL);
    TQ_ASSERT(name != NULL && value != NULL);
    uint64_t v;
    if (strcmp(name, "data") == 0) {
        return set_path(cfg->data_dir, sizeof(cfg->data_dir), name, value, msg, cap);
    } else if (strcmp(name, "listen") == 0) {
        if (strcmp(value, "none") == 0) {
            cfg->listen_tcp = false;
            return true;
        }
        if (!parse_host_port(value, cfg->listen_host, sizeof(cfg->listen_host),
                             &cfg->listen_port)) {
            FAIL("--listen: expected HOST:PORT (e.g. 127.0.0.1:7070), got '%s'", value);
        }
        cfg->listen_tcp = true;
    } else if (strcmp(name, "unix") == 0) {
        return set_path(cfg->unix_path, sizeof(cfg->unix_path), name, value, msg, cap);
    } else if (strcmp(name, "port-file") == 0) {
        return set_path(cfg->port_file, sizeof(cfg->port_file), name, value, msg, cap);
    } else if (strcmp(name, "fsync") == 0) {
        if (strcmp(value, "always") == 0) {
            cfg->fsync_mode = TQ_FSYNC_ALWAYS;
        } else if (strcmp(value, "none") == 0) {
            cfg->fsync_mode = TQ_FSYNC_NONE;
        } else if (strncmp(value, "interval=", 9) == 0 && parse_u64(value + 9, 1, 60000, &v)) {
            cfg->fsync_mode = TQ_FSYNC_INTERVAL;
            cfg->fsync_interval_ms = (uint32_t)v;
        } else {
            FAIL("--fsync: expected always, interval=MS (1..60000) or none, got '%s'", value);
        }
    } else if (strcmp(name, "metrics") == 0) {
        if (!parse_host_port(value, cfg->metrics_host, sizeof(cfg->metrics_host),
                             &cfg->metrics_port)) {
            FAIL("--metrics: expected HOST:PORT, got '%s'", value);
        }
    } else if (strcmp(name, "max-connections") == 0) {
        if (!parse_u64(value, 1, TQ_CONNECTIONS_LIMIT_MAX, &v)) {
            FAIL("--max-connections: expected 1..%u, got '%s'", TQ_CONNECTIONS_LIMIT_MAX, value);
        }
        cfg->max_connections = (uint32_t)v;
    } else if (strcmp(name, "max-frame") == 0) {
        if (!parse_u64(value, 64, TQ_FRAME_BYTES_LIMIT_MAX, &v)) {
            FAIL("--max-frame: expected 64..%u bytes, got '%s'", TQ_FRAME_BYTES_LIMIT_MAX, value);
        }
        cfg->max_frame = (uint32_t)v;
    } else if (strcmp(name, "max-inflight") == 0) {
        if (!parse_u64(value, 1, TQ_INFLIGHT_LIMIT_MAX, &v)) {
            FAIL("--max-inflight: expected 1..%u, got '%s'", TQ_INFLIGHT_LIMIT_MAX, value);
        }
        cfg->max_inflight = (uint32_t)v;
    } else if (strcmp(name, "idle-timeout-ms") == 0) {
        if (!parse_u64(value, 0, 30ull * 86400 * 1000, &v)) {
            FAIL("--idle-timeout-ms: expected 0..2592000000, got '%s'", value);
        }
        cfg->idle_timeout_ms = v;
    } else if (strcmp(name, "subscriber-buffer") == 0) {
        if (!parse_u64(value, TQ_SUBSCRIBER_BUFFER_BYTES_MIN, 1u << 30, &v)) {
            FAIL("--subscriber-buffer: expected %u..1073741824 bytes, got '%s'",
                 TQ_SUBSCRIBER_BUFFER_BYTES_MIN, value);
        }
        cfg->subscriber_buffer = (uint32_t)v;
    } else if (strcmp(name, "segment-bytes") == 0) {
        if (!parse_u64(value, 1u << 20, 1ull << 40, &v)) {
            FAIL("--segment-bytes: expected 1048576..1099511627776, got '%s'", value);
        }
        cfg->segment_bytes = v;
    } else if (strcmp(name, "body-max") == 0) {
        if (!parse_u64(value, 1, 512u * 1024, &v)) {
            FAIL("--body-max: expected 1..524288 bytes, got '%s'", value);
        }
        cfg->body_max = (uint32_t)v;
    } else if (strcmp(name, "recv-buffers") == 0) {
        if (!parse_u64(value, TQ_RECV_RING_BUFFERS_MIN, TQ_RECV_RING_BUFFERS_MAX, &v) ||
            (v & (v - 1)) != 0) {
            FAIL("--recv-buffers: expected a power of two %u..%u, got '%s'",
                 TQ_RECV_RING_BUFFERS_MIN, TQ_RECV_RING_BUFFERS_MAX, value);
        }
        cfg->recv_buffers = (uint32_t)v;
    } else if (strcmp(name, "snapshot-every") == 0) {
        if (!parse_u64(value, 0, TQ_SNAPSHOT_EVERY_MAX, &v)) {
            FAIL("--snapshot-every: expected 0..%llu records, got '%s'",
                 (unsigned long long)TQ_SNAPSHOT_EVERY_MAX, value);
        }
        cfg->snapshot_every = v;
    } else if (strcmp(name, "snapshot-growth") == 0) {
        if (!parse_u64(value, 0, TQ_SNAPSHOT_GROWTH_PCT_MAX, &v)) {
            FAIL("--snapshot-growth: expected 0..%u percent of the last snapshot's size, got '%s'",
                 TQ_SNAPSHOT_GROWTH_PCT_MAX, value);
        }
        cfg->snapshot_growth_pct = (uint32_t)v;
    } else if (strcmp(name, "snapshots-keep") == 0) {
        if (!parse_u64(value, 1, TQ_SNAPSHOTS_KEPT_MAX, &v)) {
            FAIL("--snapshots-keep: expected 1..%u, got '%s'", TQ_SNAPSHOTS_KEPT_MAX, value);
        }
        cfg->snapshots_keep = (uint32_t)v;
    } else if (strcmp(name, "recycle-segments") == 0) {
        if (!parse_u64(value, 0, TQ_RECYCLE_SEGMENTS_MAX, &v)) {
            FAIL("--recycle-segments: expected 0..%u, got '%s'", TQ_RECYCLE_SEGMENTS_MAX, value);
        }
        cfg->recycle_segments = (uint32_t)v;
    } else if (strcmp(name, "log-batches") == 0) {
        if (!parse_u64(value, 0, TQ_BATCHES_INFLIGHT_MAX, &v)) {
            FAIL("--log-batches: expected 0..%u, got '%s'", TQ_BATCHES_INFLIGHT_MAX, value);
        }
        cfg->log_batches = (uint32_t)v;
    } else if (strcmp(name, "log-pipeline-bytes") == 0) {
        if (!parse_u64(value, 0, TQ_BATCH_BYTES_DEFAULT_MAX, &v)) {
            FAIL("--log-pipeline-bytes: expected 0..%u, got '%s'", TQ_BATCH_BYTES_DEFAULT_MAX,
                 value);
        }
        cfg->log_pipeline_bytes = (uint32_t)v;
    } else if (strcmp(name, "recv") == 0) {
        if (strcmp(value, "auto") == 0) {
            cfg->recv_mode = TQ_RECV_AUTO;
        } else if (strcmp(value, "single") == 0) {
            cfg->recv_mode = TQ_RECV_SINGLE;
        } else if (strcmp(value, "multishot") == 0) {
            cfg->recv_mode = TQ_RECV_MULTISHOT;
        } else {
            FAIL("--recv: expected single, multishot or auto, got '%s'", value);
        }
    } else if (strcmp(name, "ring") == 0) {
        if (strcmp(value, "auto") == 0) {
            cfg->ring_mode = TQ_RING_AUTO;
        } else if (strcmp(value, "defer") == 0) {
            cfg->ring_mode = TQ_RING_DEFER;
        } else if (strcmp(value, "coop") == 0) {
            cfg->ring_mode = TQ_RING_COOP;
        } else if (strcmp(value, "plain") == 0) {
            cfg->ring_mode = TQ_RING_PLAIN;
        } else {
            FAIL("--ring: expected auto, defer, coop or plain, got '%s'", value);
        }
    } else if (strcmp(name, "io-workers") == 0) {
        if (!parse_u64(value, 0, TQ_IO_WORKERS_MAX, &v)) {
            FAIL("--io-workers: expected 0..%u, got '%s'", TQ_IO_WORKERS_MAX, value);
        }
        cfg->io_workers = (uint32_t)v;
    } else if (strcmp(name, "turn") == 0) {
        if (strcmp(value, "reactive") == 0) {
            cfg->turn_mode = TQ_TURN_REACTIVE;
        } else if (strcmp(value, "classic") == 0) {
            cfg->turn_mode = TQ_TURN_CLASSIC;
        } else if (strcmp(value, "poll") == 0) {
            cfg->turn_mode = TQ_TURN_POLL;
        } else {
            FAIL("--turn: expected classic, poll or reactive, got '%s'", value);
        }
    } else if (strcmp(name, "idle-poll-us") == 0) {
        if (!parse_u64(value, 0, TQ_IDLE_POLL_US_MAX, &v)) {
            FAIL("--idle-poll-us: expected 0..%u, got '%s'", TQ_IDLE_POLL_US_MAX, value);
        }
        cfg->idle_poll_us = (uint32_t)v;
    } else if (strcmp(name, "state-prefault") == 0) {
        if (!parse_on_off(value, &cfg->state_prefault)) {
            FAIL("--state-prefault: expected on or off, got '%s'", value);
        }
    } else if (strcmp(name, "snapshot-precopy") == 0) {
        if (!parse_on_off(value, &cfg->snapshot_precopy)) {
            FAIL("--snapshot-precopy: expected on or off, got '%s'", value);
        }
    } else if (strcmp(name, "log-prezero") == 0 || strcmp(name, "log-dsync") == 0) {
        bool *flag = strcmp(name, "log-prezero") == 0 ? &cfg->log_prezero : &cfg->log_dsync;
        if (!parse_on_off(value, flag)) FAIL("--%s: expected on or off, got '%s'", name, value);
    } else {
        FAIL("unknown option '%s'", name);
    }
    return true;
}

static void print_help(FILE *out) {
    fprintf(out, "usage: ticketqd --data DIR [options]\n\n"
                 "ticketqd: the ticketq server (docs/architecture.md, docs/protocol.md).\n\n");
    for (size_t i = 0; i < TQ_ARRAY_COUNT(k_options); i++) {
        char left[64];
        snprintf(left, sizeof(left), "--%s%s%s", k_options[i].name, k_options[i].arg ? " " : "",
                 k_options[i].arg ? k_options[i].arg : "");
        fprintf(out, "  %-28s %s\n", left, k_options[i].help);
    }
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r')) {
        s[--n] = '\0';
    }
    return s;
}

static int load_file(struct tq_config *cfg, const char *path) {
    FILE *fp = fopen(path, "r");
    if (fp == NULL) {
        fprintf(stderr, "ticketqd: --config: cannot open %s: %s\n", path, strerror(errno));
        return 2;
    }
    char line[1024];
    unsigned lineno = 0;
    while (fgets(line, sizeof(line), fp) != NULL) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash != NULL) *hash = '\0';
        char *s = trim(line);
        if (*s == '\0') continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            fprintf(stderr, "ticketqd: --config %s:%u: expected 'name = value'\n", path, lineno);
            fclose(fp);
            return 2;
        }
        *eq = '\0';
        char *name = trim(s), *value = trim(eq + 1);
        char msg[256];
        if (strcmp(name, "config") == 0 || strcmp(name, "help") == 0 ||
            !tq_config_set(cfg, name, value, msg, sizeof(msg))) {
            if (strcmp(name, "config") == 0 || strcmp(name, "help") == 0) {
                snprintf(msg, sizeof(msg), "'%s' is not allowed in a config file", name);
            }
            fprintf(stderr, "ticketqd: --config %s:%u: %s\n", path, lineno, msg);
            fclose(fp);
            return 2;
        }
    }
    fclose(fp);
    return 0;
}

int tq_config_parse(struct tq_config *cfg, int argc, char **argv) {
    struct option longopts[TQ_ARRAY_COUNT(k_options) + 1];
    for (size_t i = 0; i < TQ_ARRAY_COUNT(k_options); i++) {
        longopts[i] =
            (struct option){k_options[i].name, k_options[i].arg ? required_argument : no_argument,
                            NULL, (int)(i + 1)};
    }
    longopts[TQ_ARRAY_COUNT(k_options)] = (struct option){NULL, 0, NULL, 0};

    /* The environment knob comes first, so a config file and argv override it (the tests run
     * the whole suite with TICKETQD_RECV=single to exercise the fallback receive path, and
     * with TICKETQD_TURN=reactive for the other turn order). */
    static const char *const env_knobs[][2] = {{"TICKETQD_RECV", "recv"},
                                               {"TICKETQD_TURN", "turn"}};
    for (size_t k = 0; k < TQ_ARRAY_COUNT(env_knobs); k++) {
        const char *env = getenv(env_knobs[k][0]);
        if (env == NULL || env[0] == '\0') continue;
        char msg[256];
        if (!tq_config_set(cfg, env_knobs[k][1], env, msg, sizeof(msg))) {
            fprintf(stderr, "ticketqd: %s: %s\n", env_knobs[k][0], msg);
            return 2;
        }
    }
    /* Pass 1: --help and --config (the file is loaded first so argv overrides it). */
    opterr = 0;
    optind = 0; /* GNU: 0 fully re-initialises getopt (argv may have been permuted) */
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        bool known = c > 0 && (size_t)c <= TQ_ARRAY_COUNT(k_options);
        if (c == 'h' || (known && strcmp(k_options[c - 1].name, "help") == 0)) {
            print_help(stdout);
            return 1;
        }
        if (known && strcmp(k_options[c - 1].name, "config") == 0) {
            int rc = load_file(cfg, optarg);
            if (rc != 0) return rc;
        }
    }
    /* Pass 2: everything else, with errors. */
    optind = 0; /* GNU: 0 fully re-initialises getopt (argv may have been permuted) */
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (c == '?') {
            fprintf(stderr, "ticketqd: unknown option '%s' (see --help)\n", argv[optind - 1]);
            return 2;
        }
        if (c == ':') {
            fprintf(stderr, "ticketqd: option '%s' needs a value (see --help)\n", argv[optind - 1]);
            return 2;
        }
        if (c <= 0 || (size_t)c > TQ_ARRAY_COUNT(k_options)) continue;
        const char *name = k_options[c - 1].name;
        if (strcmp(name, "config") == 0 || strcmp(name, "help") == 0) continue;
        char msg[256];
        if (!tq_config_set(cfg, name, optarg, msg, sizeof(msg))) {
            fprintf(stderr, "ticketqd: %s\n", msg);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ticketqd: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }
    if (cfg->data_dir[0] == '\0') {
        fprintf(stderr, "ticketqd: --data DIR is required (see --help)\n");
        return 2;
    }
    if (!cfg->listen_tcp && cfg->unix_path[0] == '\0') {
        fprintf(stderr, "ticketqd: --listen none needs --unix PATH\n");
        return 2;
    }
    return 0;
}
