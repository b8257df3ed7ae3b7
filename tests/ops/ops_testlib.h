/* tests/ops/ops_testlib.h: building real data directories for the tq_ops tests.
 *
 * A struct ops_db is what the server does, minus the network: each command is applied to a
 * live state with tq_state_apply and, only if that succeeds, encoded (tq_cmd_encode) and
 * appended to a real log (tq_log_append + tq_log_sync, one batch per command), so the log on
 * disk is exactly what ticketqd would have written. The digest of the live state after every
 * LSN is kept, so tests can compare a rebuilt state with "the live state at that LSN".
 * Segments are small (64 KiB) so a few hundred commands span many segments.
 */
#ifndef TQ_OPS_TESTLIB_H
#define TQ_OPS_TESTLIB_H

#include "log.h"
#include "state.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OPS_SEGMENT_BYTES (64u * 1024)
#define OPS_DIGEST_HEX    33

struct ops_db {
    char dir[512];
    struct tq_log *log;
    struct tq_state *state;
    uint64_t now_ms;        /* the clock commands get (advanced by the generator) */
    uint8_t (*digests)[16]; /* digests[lsn] after applying lsn; [0] = empty state */
    uint64_t digest_cap;
    uint64_t lsn_last;
    bool with_events;    /* also log each command's events as a type-2 record, as
                            ticketqd does (needs the server's codec in the build) */
    uint32_t sync_every; /* commands per batch (tq_log_sync); 0 or 1: each alone */
    uint32_t since_sync;
    uint64_t falsify_events_of; /* test seam: record a wrong event for this command LSN */
    /* generator bookkeeping (tenant 1) */
    uint64_t queue_id, agent_ids[4];
    uint32_t agent_count;
    uint64_t customers_made;
};

/* Creates a fresh temp directory (under $TMPDIR or /tmp); returns a static-lifetime copy. */
void ops_tmpdir(const char *tag, char *out, size_t cap);
/* rm -rf dir. */
void ops_rm_rf(const char *dir);

/* Opens (creating) a data directory with small segments and an empty live state. */
void ops_db_open(struct ops_db *db, const char *dir);
/* The same with production-sized log options (figures): segment and batch limits, fsync mode. */
void ops_db_open_ex(struct ops_db *db, const char *dir, uint64_t segment_bytes,
                    uint32_t batch_bytes, enum tq_fsync_mode fsync_mode);
/* Makes everything staged durable (only needed with sync_every > 1). */
void ops_db_sync(struct ops_db *db);
/* Reopens the log of an existing directory (after ops_db_close_log), keeping the live state. */
void ops_db_reopen_log(struct ops_db *db);
void ops_db_close_log(struct ops_db *db);
void ops_db_close(struct ops_db *db);
/* Applies cmd (now_ms filled from db->now_ms if 0) and logs it; CHECKs success; returns LSN. */
uint64_t ops_db_apply(struct ops_db *db, struct tq_cmd *cmd);
/* Digest of the live state after lsn, as hex. */
void ops_db_digest_hex(const struct ops_db *db, uint64_t lsn, char out[OPS_DIGEST_HEX]);
void ops_digest_hex(const uint8_t digest[16], char out[OPS_DIGEST_HEX]);

/* Tenant 1 with one queue and two agents (5 records). */
void ops_gen_setup(struct ops_db *db);
/* n random commands of tenant 1: ingests (new and returning customers, bodies containing
 * marker when not NULL... see the .c), replies, status and assignment updates. */
void ops_gen_random(struct ops_db *db, uint64_t *rng, int n);
/* One ingest from customer identity `from` with the given body; returns the LSN. */
uint64_t ops_gen_ingest(struct ops_db *db, const char *from, const char *body);

/* Path of ticketq-ops in the build tree. */
const char *ops_tool(void);
/* Runs a shell command line; returns its exit status (or -1). Output goes to the test's. */
int ops_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Runs a command line and returns its stdout (NUL-terminated, caller frees with free()). */
char *ops_capture(int *status_out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
