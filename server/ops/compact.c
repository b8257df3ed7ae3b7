/* server/ops/compact.c: `ticketq compact` (offline): snapshot, erasure, retention, compression.
 *
 * Owns the rewrite of old segments. Steps, in this order, each durable before the next:
 *   1. open the log read-write (recovery cuts a torn tail), rebuild the state with the same
 *      apply as the server (tq_ops_state_at), decide what to redact (step 2, against this
 *      state, before any erasure), then for each --erase-customer append a CUSTOMER_ERASE
 *      command (only the id: no personal data) with tq_log_append + tq_log_sync and apply it
 *      to the rebuilt state, exactly as the server would; write that state as a snapshot at
 *      the last LSN. The snapshot therefore holds the tombstone, not the name, language or
 *      identities; older snapshots (which still hold them) are deleted once it is durable.
 *      A customer already erased in the log (a re-run after a crash) is not erased twice;
 *   2. decide which records to redact, by decoding every command record and looking its
 *      subject up in the rebuilt state: --erase-customer (right to erasure: the customer's
 *      inbound messages, the replies on their tickets, their creation and identity links, and
 *      ticket updates that set free text on their tickets) and
 *      --retention (the messages of tickets closed longer ago than the retention; with
 *      --archive DIR their records are first written to DIR, fsynced);
 *   3. redact those records: payload bytes zeroed, the record flagged TQ_RECORD_REDACTED, its
 *      length and payload hash kept. The batch area hash covers only (len, type,
 *      payload_hash) per record and batch headers are untouched, so every checksum and the hash
 *      chain still verify (docs/log-format.md, "Redaction"). Sealed plain segments go through
 *      storage's primitive, tq_log_redact_segment. Segments it refuses (compressed ones, from
 *      an earlier compaction, and the tail) are rewritten here with no log open, through
 *      storage's decoder: the new image goes to <lsn>.seg.tmp, fsync, rename, fsync dir; a
 *      compressed segment becomes a plain one and its .zseg is removed afterwards;
 *   4. reopen the log and zstd-compress every sealed segment (tq_log_compress_segment, which is
 *      atomic on its own).
 * Crash safety: every file change is an atomic rename, so each segment is either its old or
 * its new image, and both hold the same batches with the same hashes: the log always opens.
 * A .seg and a .zseg of one segment side by side resolve to the .zseg (recovery's rule), i.e.
 * the old image. The snapshot is durable before the first redaction, so the state is always
 * rebuildable: replay shows a tombstone for a redacted record and resumes from the snapshot.
 * Online compaction (ticketqd running, server/compaction.c) reuses step 2 through
 * tq_ops_classify and the storage rewrite of step 3/4 split in begin / write / install; the
 * data-directory lock keeps this offline tool off a live server's directory.
 * Classification of an inbound message looks at both its sender identity and the ticket its
 * message sits on, so a re-run after a crash that happened between the CUSTOMER_ERASE append
 * and the redaction (the identities are gone from the state by then) still finds the
 * customer's messages, replies, links and ticket edits. The command that created the customer
 * (a CUSTOMER_CREATE holding the name) is found through the server's events record after it
 * (CUSTOMER_CREATED names the id), so a re-run or an online erasure finds it too; only a build
 * without the events codec (no server) falls back to the identity lookup.
 */
#include "ops_internal.h"

#ifdef TQ_OPS_EVENTS_CODEC
#include "events_codec.h"
#endif
#include "log.h"
#include "state.h"
#include "tq_alloc.h"
#include "tq_assert.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SEGMENTS_MAX 65536 /* 4 TiB of 64 MiB segments */

/* ---- a sorted set of LSNs ------------------------------------------------------------ */

static void set_add(struct tq_ops_lsn_set *s, uint64_t lsn) {
    if (s->count == s->cap) {
        size_t cap = s->cap == 0 ? 256 : s->cap * 2;
        s->lsns = tq_xrealloc(s->lsns, s->cap * sizeof(uint64_t), cap * sizeof(uint64_t));
        s->cap = cap;
    }
    s->lsns[s->count++] = lsn;
}

static int u64_cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void set_seal(struct tq_ops_lsn_set *s) {
    if (s->count == 0) return;
    qsort(s->lsns, s->count, sizeof(uint64_t), u64_cmp);
    size_t kept = 1;
    for (size_t i = 1; i < s->count; i++) {
        if (s->lsns[i] != s->lsns[kept - 1]) s->lsns[kept++] = s->lsns[i];
    }
    s->count = kept;
}

static bool set_has(const struct tq_ops_lsn_set *s, uint64_t lsn) {
    return s->count > 0 && bsearch(&lsn, s->lsns, s->count, sizeof(uint64_t), u64_cmp) != NULL;
}

static void set_free(struct tq_ops_lsn_set *s) {
    if (s->lsns != NULL) tq_free(s->lsns, s->cap * sizeof(uint64_t));
    memset(s, 0, sizeof(*s));
}

void tq_ops_lsn_set_free(struct tq_ops_lsn_set *set) {
    set_free(set);
}

/* ---- step 2: what to redact ----------------------------------------------------------- */

struct classify {
    uint64_t tenant_id;
    struct tq_ops_lsn_set customers; /* ids of the customers to erase (sorted) */
    uint64_t retention_ms;
    uint64_t lsn_max; /* records above it are not looked at (0: all) */
    const struct tq_state *state;
    struct tq_ops_lsn_set erase, retain; /* retain: retention drops (archived first if asked) */
    struct tq_ops_lsn_set erased_msgs;   /* LSNs of messages on the erased customers' tickets */
    uint64_t now_ms;                     /* latest command time in the log */
};

static bool erased_customer(const struct classify *c, uint64_t customer_id) {
    return set_has(&c->customers, customer_id);
}

/* The customer a command record is about (0: none or unknown), looked up in the rebuilt
 * state. */
static uint64_t cmd_customer(const struct classify *c, const struct tq_cmd *cmd) {
    struct tq_customer_view cv;
    struct tq_ticket_view tv;
    uint64_t tenant = cmd->tenant_id;
    switch (cmd->type) {
    case TQ_CMD_MESSAGE_INGEST:
        if (tq_state_customer_find(c->state, tenant, cmd->u.ingest.channel,
                                   cmd->u.ingest.from_external_id, &cv) == TQ_OK) {
            return cv.customer_id;
        }
        return 0;
    case TQ_CMD_MESSAGE_REPLY:
        if (tq_state_ticket_get(c->state, tenant, cmd->u.reply.ticket_id, &tv) == TQ_OK) {
            return tv.customer_id;
        }
        return 0;
    case TQ_CMD_CUSTOMER_CREATE:
        if (cmd->u.customer_create.external_id.len > 0 &&
            tq_state_customer_find(c->state, tenant, cmd->u.customer_create.channel,
                                   cmd->u.customer_create.external_id, &cv) == TQ_OK) {
            return cv.customer_id;
        }
        return 0;
    case TQ_CMD_CUSTOMER_LINK: return cmd->u.customer_link.customer_id;
    case TQ_CMD_TICKET_UPDATE:
        /* Free text about their ticket (subject, tags, custom fields); a pure status or
         * assignment change carries nothing personal and stays readable. */
        if ((cmd->u.ticket_update.fields & (TQ_UPDATE_SUBJECT | TQ_UPDATE_TAGS_ADD |
                                            TQ_UPDATE_TAGS_REMOVE | TQ_UPDATE_FIELDS)) != 0 &&
            tq_state_ticket_get(c->state, tenant, cmd->u.ticket_update.ticket_id, &tv) == TQ_OK) {
            return tv.customer_id;
        }
        return 0;
    default: return 0;
    }
}

#ifdef TQ_OPS_EVENTS_CODEC
/* An events record (type 2) that says a command created an erased customer: that command (a
 * CUSTOMER_CREATE holding the name, or the first message) is the customer's. This finds the
 * creation even once the identities no longer resolve (online erasure, or a re-run after a
 * crash). Events carry ids only, so the events record itself stays. */
static void classify_events(struct classify *c, const struct tq_log_record *rec,
                            struct tq_event *scratch) {
    uint64_t cmd_lsn = 0;
    uint32_t count = 0;
    struct tq_error ignored;
    if (tq_events_decode(rec->payload, rec->len, &cmd_lsn, scratch, TQ_EVENTS_PER_RECORD_MAX,
                         &count, &ignored) != TQ_OK) {
        return; /* unreadable: the command-based rules still apply */
    }
    for (uint32_t i = 0; i < count; i++) {
        const struct tq_event *ev = &scratch[i];
        if (ev->type == TQ_EVENT_CUSTOMER_CREATED && ev->tenant_id == c->tenant_id &&
            erased_customer(c, ev->customer_id) && cmd_lsn < rec->lsn) {
            set_add(&c->erase, cmd_lsn);
        }
    }
}
#endif

static enum tq_err classify_log(struct tq_log *log, struct classify *c, struct tq_error *error) {
    struct tq_log_iter *iter = NULL;
    enum tq_err err = tq_log_iter_open(log, 0, &iter, error);
    if (err != TQ_OK) return err;
    struct tq_arena arena;
    tq_arena_init(&arena, 64 * 1024);
#ifdef TQ_OPS_EVENTS_CODEC
    size_t scratch_bytes = TQ_EVENTS_PER_RECORD_MAX * sizeof(struct tq_event);
    struct tq_event *scratch = tq_xalloc(scratch_bytes);
#endif
    for (;;) {
        struct tq_log_record rec;
        err = tq_log_iter_next(iter, &rec, error);
        if (err == TQ_ERR_NOT_FOUND) {
            err = TQ_OK;
            break;
        }
        if (err != TQ_OK) break;
        if (c->lsn_max != 0 && rec.lsn > c->lsn_max) break;
#ifdef TQ_OPS_EVENTS_CODEC
        if (rec.type == TQ_RECORD_TYPE_EVENTS && (rec.flags & TQ_RECORD_REDACTED) == 0 &&
            c->customers.count > 0) {
            classify_events(c, &rec, scratch);
            continue;
        }
#endif
        if (rec.type != TQ_RECORD_TYPE_CMD || (rec.flags & TQ_RECORD_REDACTED) != 0) continue;
        struct tq_cmd cmd;
        tq_arena_reset(&arena);
        err = tq_cmd_decode(rec.payload, rec.len, &cmd, &arena, error);
        if (err != TQ_OK) {
            err = tq_error_set(error, TQ_ERR_CORRUPT, "lsn %" PRIu64 ": undecodable: %s", rec.lsn,
                               error->msg);
            break;
        }
        if (cmd.now_ms > c->now_ms) c->now_ms = cmd.now_ms;
        if (c->customers.count == 0 || cmd.tenant_id != c->tenant_id) continue;
        if (set_has(&c->erased_msgs, rec.lsn)) {
            /* a message on an erased customer's ticket, whoever's identity sent it (after
             * an erasure the sender identity no longer resolves) */
            set_add(&c->erase, rec.lsn);
            continue;
        }
        uint64_t customer = cmd_customer(c, &cmd);
        if (customer != 0 && erased_customer(c, customer)) set_add(&c->erase, rec.lsn);
    }
#ifdef TQ_OPS_EVENTS_CODEC
    tq_free(scratch, scratch_bytes);
#endif
    tq_arena_destroy(&arena);
    tq_log_iter_close(iter);
    return err;
}

/* The LSNs of every message on a ticket of an erased customer (inbound ones carry the
 * customer's words even when the sender identity no longer resolves). Ticket ids are dense. */
static void classify_erased_messages(struct classify *c) {
    if (c->customers.count == 0) return;
    struct tq_stats stats;
    tq_state_stats(c->state, 0, &stats);
    struct tq_message_view views[64];
    for (uint64_t tid = 1; tid <= stats.ticket_count; tid++) {
        struct tq_ticket_view tv;
        if (tq_state_ticket_get(c->state, c->tenant_id, tid, &tv) != TQ_OK) continue;
        if (!erased_customer(c, tv.customer_id)) continue;
        for (uint32_t first = 0;;) {
            uint32_t n = tq_state_ticket_messages(c->state, c->tenant_id, tid, first,
                                                  (uint32_t)TQ_ARRAY_COUNT(views), views);
            for (uint32_t i = 0; i < n; i++)
                set_add(&c->erased_msgs, views[i].lsn);
            if (n < TQ_ARRAY_COUNT(views)) break;
            first += n;
        }
    }
    set_seal(&c->erased_msgs);
}

/* Messages of the tenant's tickets closed before now - retention. Ticket ids are dense. */
static void classify_retention(struct classify *c) {
    if (c->retention_ms == 0) return;
    uint64_t cutoff = c->now_ms > c->retention_ms ? c->now_ms - c->retention_ms : 0;
    struct tq_stats stats;
    tq_state_stats(c->state, 0, &stats);
    struct tq_message_view views[64];
    for (uint64_t tid = 1; tid <= stats.ticket_count; tid++) {
        struct tq_ticket_view tv;
        if (tq_state_ticket_get(c->state, c->tenant_id, tid, &tv) != TQ_OK) continue;
        if (tv.status != TQ_STATUS_CLOSED || tv.updated_ms >= cutoff) continue;
        for (uint32_t first = 0;;) {
            uint32_t n = tq_state_ticket_messages(c->state, c->tenant_id, tid, first,
                                                  (uint32_t)TQ_ARRAY_COUNT(views), views);
            for (uint32_t i = 0; i < n; i++)
                set_add(&c->retain, views[i].lsn);
            if (n < TQ_ARRAY_COUNT(views)) break;
            first += n;
        }
    }
}

/* The customers of the tenant that the state shows erased (tombstones). Customer ids are
 * dense. */
static void classify_erased_in_state(struct classify *c) {
    struct tq_stats stats;
    tq_state_stats(c->state, 0, &stats);
    for (uint64_t id = 1; id <= stats.customer_count; id++) {
        struct tq_customer_view cv;
        if (tq_state_customer_get(c->state, c->tenant_id, id, &cv) == TQ_OK && cv.erased &&
            cv.customer_id == id) {
            set_add(&c->customers, id);
        }
    }
}

enum tq_err tq_ops_classify(struct tq_log *log, const struct tq_state *state,
                            const struct tq_ops_classify_options *o,
                            struct tq_ops_classification *out, struct tq_error *error) {
    TQ_ASSERT(log != NULL && state != NULL);
    TQ_ASSERT(o != NULL && out != NULL);
    memset(out, 0, sizeof(*out));
    struct classify c;
    memset(&c, 0, sizeof(c));
    c.tenant_id = o->tenant_id;
    c.retention_ms = o->retention_ms;
    c.lsn_max = o->lsn_max;
    c.state = state;
    for (uint32_t i = 0; i < o->erase_count; i++)
        set_add(&c.customers, o->erase_customers[i]);
    if (o->erased_in_state) classify_erased_in_state(&c);
    set_seal(&c.customers);
    classify_erased_messages(&c);
    enum tq_err err = o->erase_count > 0 || c.customers.count > 0 || o->retention_ms > 0
                          ? classify_log(log, &c, error)
                          : TQ_OK;
    if (err == TQ_OK) classify_retention(&c);
    set_seal(&c.erase);
    set_seal(&c.retain);
    out->customers = c.customers.count;
    out->now_ms = c.now_ms;
    out->erase = c.erase;
    out->retain = c.retain;
    set_free(&c.customers);
    set_free(&c.erased_msgs);
    if (err != TQ_OK) {
        set_free(&out->erase);
        set_free(&out->retain);
    }
    return err;
}

/* Writes the records of set to archive_dir/<first>-<last>.jsonl (payload as hex), durably. */
enum tq_err tq_ops_archive_write(struct tq_log *log, const char *archive_dir,
                                 const struct tq_ops_lsn_set *set, struct tq_error *error) {
    if (set->count == 0) return TQ_OK;
    enum tq_err err = tq_ops_mkdir(archive_dir, error);
    if (err != TQ_OK) return err;
    size_t cap = 1 << 20, len = 0;
    char *text = tq_xalloc(cap);
    size_t buf_cap = TQ_RECORD_BYTES_DEFAULT_MAX + 64;
    uint8_t *buf = tq_xalloc(buf_cap);
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < set->count && err == TQ_OK; i++) {
        struct tq_log_record rec;
        err = tq_log_read(log, set->lsns[i], &rec, buf, buf_cap, error);
        if (err != TQ_OK) break;
        size_t need = 128 + 2 * (size_t)rec.len;
        if (cap - len < need) {
            size_t ncap = cap * 2 + need;
            text = tq_xrealloc(text, cap, ncap);
            cap = ncap;
        }
        len += (size_t)snprintf(text + len, cap - len,
                                "{\"lsn\":%" PRIu64 ",\"type\":%u,\"commit_us\":%" PRIu64
                                ",\"payload_hex\":\"",
                                rec.lsn, rec.type, rec.commit_us);
        for (uint32_t b = 0; b < rec.len; b++) {
            text[len++] = hex[rec.payload[b] >> 4];
            text[len++] = hex[rec.payload[b] & 15];
        }
        len += (size_t)snprintf(text + len, cap - len, "\"}\n");
    }
    if (err == TQ_OK) {
        char name[64], path[TQ_OPS_PATH_BYTES_MAX];
        snprintf(name, sizeof(name), "%020" PRIu64 "-%020" PRIu64 ".jsonl", set->lsns[0],
                 set->lsns[set->count - 1]);
        err = tq_ops_path_join(path, archive_dir, name, error);
        if (err == TQ_OK) err = tq_ops_file_write_atomic(path, text, len, error);
    }
    tq_free(buf, buf_cap);
    tq_free(text, cap);
    return err;
}

/* ---- step 3: rewriting segments ------------------------------------------------------- */

struct redact_ctx {
    struct tq_ops_segment *seg;
    const struct tq_ops_lsn_set *set;
    uint64_t redacted;
};

static enum tq_err redact_batch(void *vctx, const struct tq_ops_batch *batch,
                                struct tq_error *error) {
    struct redact_ctx *ctx = vctx;
    uint8_t *area = ctx->seg->image + batch->offset + TQ_BATCH_HEADER_BYTES;
    uint32_t offset = 0, index = 0;
    struct tq_record_header rec;
    const uint8_t *payload;
    bool changed = false;
    while (tq_batch_record_next(area, batch->header.area_bytes, &offset, &rec, &payload)) {
        uint64_t lsn = batch->header.lsn_first + index++;
        if ((rec.flags & TQ_RECORD_REDACTED) != 0 || !set_has(ctx->set, lsn)) continue;
        uint8_t *hdr = (uint8_t *)(uintptr_t)payload - TQ_RECORD_HEADER_BYTES;
        memset(hdr + TQ_RECORD_HEADER_BYTES, 0, rec.len);
        rec.flags = (uint16_t)(rec.flags | TQ_RECORD_REDACTED);
        memcpy(hdr, &rec, sizeof(rec));
        ctx->redacted++;
        changed = true;
    }
    if (changed) {
        /* The rewrite must still pass storage's own checks, byte for byte. */
        struct tq_batch_header h;
        char why[160];
        const uint8_t *p = ctx->seg->image + batch->offset;
        if (tq_batch_check(p, ctx->seg->image_bytes - batch->offset, true, &h, why, sizeof(why)) !=
            TQ_BATCH_VALID) {
            return tq_error_set(error, TQ_ERR_INTERNAL,
                                "%s offset %" PRIu64 ": redacted batch fails its check: %s",
                                batch->file, batch->offset, why);
        }
        TQ_ASSERT(h.header_hash == batch->header.header_hash);
    }
    return TQ_OK;
}

/* Rewrites one segment with the records of set redacted; *redacted_out counts them. */
static enum tq_err redact_segment(const char *log_dir, const char *name,
                                  const struct tq_ops_lsn_set *set, uint64_t *redacted_out,
                                  struct tq_error *error) {
    struct tq_ops_segment seg;
    enum tq_err err = tq_ops_segment_load(log_dir, name, &seg, error);
    if (err != TQ_OK) return err;
    struct redact_ctx ctx = {&seg, set, 0};
    struct tq_ops_walk_end end;
    err = tq_ops_segment_walk(&seg, redact_batch, &ctx, &end, error);
    if (err == TQ_OK && ctx.redacted > 0) {
        char plain[64], path[TQ_OPS_PATH_BYTES_MAX];
        snprintf(plain, sizeof(plain), "%020" PRIu64 ".seg", seg.lsn_first_named);
        err = tq_ops_path_join(path, log_dir, plain, error);
        if (err == TQ_OK) err = tq_ops_file_write_atomic(path, seg.image, seg.image_bytes, error);
        if (err == TQ_OK && seg.compressed) {
            /* Now both forms exist (recovery would pick the old .zseg): remove it. */
            char zpath[TQ_OPS_PATH_BYTES_MAX];
            err = tq_ops_path_join(zpath, log_dir, name, error);
            if (err == TQ_OK && unlink(zpath) != 0) {
                err = tq_error_set(error, TQ_ERR_IO, "unlink %s: %s", zpath, strerror(errno));
            }
            if (err == TQ_OK) err = tq_ops_dir_fsync(log_dir, error);
        }
    }
    *redacted_out = ctx.redacted;
    tq_ops_segment_free(&seg);
    return err;
}

/* ---- the whole run ------------------------------------------------------------------- */

/* The segment size the log was written with: segments are preallocated to it, so it is the
 * largest plain segment file (0 if none is usable: then storage's default). Opening with another
 * size would make storage preallocate the tail and every rewritten segment to that size. */
static uint64_t infer_segment_bytes(const char *dir) {
    char log_dir[TQ_OPS_PATH_BYTES_MAX];
    struct tq_error ignored;
    struct tq_ops_names names;
    if (tq_ops_path_join(log_dir, dir, "log", &ignored) != TQ_OK ||
        tq_ops_segment_names(log_dir, &names, &ignored) != TQ_OK) {
        return 0;
    }
    uint64_t best = 0;
    for (size_t i = 0; i < names.count; i++) {
        char path[TQ_OPS_PATH_BYTES_MAX];
        struct stat st;
        size_t n = strlen(names.names[i]);
        if (n < 4 || strcmp(names.names[i] + n - 4, ".seg") != 0) continue;
        if (tq_ops_path_join(path, log_dir, names.names[i], &ignored) == TQ_OK &&
            stat(path, &st) == 0 && (uint64_t)st.st_size > best) {
            best = (uint64_t)st.st_size;
        }
    }
    tq_ops_names_free(&names);
    return best % TQ_BATCH_ALIGN_BYTES == 0 && best >= 4 * TQ_BATCH_ALIGN_BYTES ? best : 0;
}

static enum tq_err open_rw(const struct tq_ops_compact_options *o, struct tq_log **log_out,
                           struct tq_error *error) {
    struct tq_log_options opt;
    memset(&opt, 0, sizeof(opt));
    opt.dir = o->dir;
    opt.ring_tag = 1;
    opt.spare_no_prezero = true;
    opt.segment_bytes_max = o->segment_bytes != 0 ? o->segment_bytes : infer_segment_bytes(o->dir);
    if (opt.segment_bytes_max != 0 && opt.segment_bytes_max < TQ_SEGMENT_BYTES_DEFAULT) {
        /* Nothing is appended: the limits only have to be consistent with the segment size. */
        uint64_t batch = opt.segment_bytes_max - TQ_BATCH_ALIGN_BYTES;
        if (batch < TQ_BATCH_BYTES_DEFAULT_MAX) opt.batch_bytes_max = (uint32_t)batch;
        if (batch - 64 < TQ_RECORD_BYTES_DEFAULT_MAX) opt.record_bytes_max = (uint32_t)(batch - 64);
    }
    return tq_log_open(&opt, log_out, NULL, error);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Appends and applies one CUSTOMER_ERASE per requested customer not yet erased; durable
 * (tq_log_sync) before it returns. Every id is checked against the state before anything is
 * appended, so an unknown id appends nothing. *lsn_io is the state's LSN, moved to the last
 * appended record. */
static enum tq_err append_erasures(const struct tq_ops_compact_options *o, struct tq_log *log,
                                   struct tq_state *state, uint64_t now_ms, uint64_t *lsn_io,
                                   struct tq_ops_compact_result *r, struct tq_error *error) {
    bool todo[TQ_OPS_ERASE_MAX] = {false};
    for (uint32_t i = 0; i < o->erase_count; i++) {
        struct tq_customer_view cv;
        if (tq_state_customer_get(state, o->tenant_id, o->erase_customers[i], &cv) != TQ_OK) {
            return tq_error_set(error, TQ_ERR_NOT_FOUND,
                                "--erase-customer %" PRIu64 ": no such customer in tenant %" PRIu64,
                                o->erase_customers[i], o->tenant_id);
        }
        todo[i] = !cv.erased;
        for (uint32_t k = 0; k < i; k++) {
            if (o->erase_customers[k] == o->erase_customers[i]) todo[i] = false;
        }
        if (!todo[i]) r->customers_already_erased++;
    }
    enum tq_err err = TQ_OK;
    for (uint32_t i = 0; i < o->erase_count && err == TQ_OK; i++) {
        if (!todo[i]) continue;
        struct tq_cmd cmd;
        memset(&cmd, 0, sizeof(cmd));
        cmd.type = TQ_CMD_CUSTOMER_ERASE;
        cmd.now_ms = now_ms;
        cmd.tenant_id = o->tenant_id;
        cmd.u.customer_erase.customer_id = o->erase_customers[i];
        uint8_t buf[64];
        size_t n = tq_cmd_encode(&cmd, buf, sizeof(buf));
        TQ_ASSERT(n > 0);
        uint64_t lsn = 0;
        err = tq_log_append(log, TQ_RECORD_TYPE_CMD, buf, (uint32_t)n, &lsn, error);
        if (err != TQ_OK) break;
        TQ_ASSERT(lsn > *lsn_io);
        /* Validated above and the log holds only applicable commands: this cannot fail, and
         * if it did the record would be staged but not yet synced (dropped at close). */
        err = tq_state_apply(state, lsn, &cmd, NULL, NULL, error);
        if (err != TQ_OK) {
            err = tq_error_set(error, TQ_ERR_INTERNAL, "CUSTOMER_ERASE %" PRIu64 " refused: %s",
                               o->erase_customers[i], error->msg);
            break;
        }
        *lsn_io = lsn;
        r->customers_erased++;
    }
    if (err == TQ_OK && r->customers_erased > 0) err = tq_log_sync(log, error);
    if (err == TQ_OK && r->customers_erased > 0 && tq_log_acked_lsn(log) != *lsn_io) {
        err = tq_error_set(error, TQ_ERR_IO,
                           "CUSTOMER_ERASE records not durable (LSN %" PRIu64
                           ", acknowledged %" PRIu64 ")",
                           *lsn_io, tq_log_acked_lsn(log));
    }
    return err;
}

/* Deletes every snapshot file of dir/snapshots older than keep_lsn (they may hold an erased
 * customer's name and identities), then fsyncs the directory. The newest one, at keep_lsn, is
 * durable already, so a crash in between leaves it (and perhaps some old ones) in place. */
enum tq_err tq_ops_snapshots_remove_older(const char *dir, uint64_t keep_lsn, uint64_t *removed,
                                          struct tq_error *error) {
    char snap_dir[TQ_OPS_PATH_BYTES_MAX];
    enum tq_err err = tq_ops_path_join(snap_dir, dir, "snapshots", error);
    if (err != TQ_OK) return err;
    DIR *d = opendir(snap_dir);
    if (d == NULL)
        return tq_error_set(error, TQ_ERR_IO, "opendir %s: %s", snap_dir, strerror(errno));
    struct dirent *ent;
    while (err == TQ_OK && (ent = readdir(d)) != NULL) {
        uint64_t lsn = 0;
        char path[TQ_OPS_PATH_BYTES_MAX];
        if (ent->d_name[0] == '.') continue;
        /* "<LSN, 20 digits>.snap" or a temp file of an interrupted write */
        if (sscanf(ent->d_name, "%20" SCNu64, &lsn) != 1 || lsn >= keep_lsn) continue;
        err = tq_ops_path_join(path, snap_dir, ent->d_name, error);
        if (err == TQ_OK && unlink(path) != 0) {
            err = tq_error_set(error, TQ_ERR_IO, "unlink %s: %s", path, strerror(errno));
        }
        if (err == TQ_OK) (*removed)++;
    }
    closedir(d);
    if (err == TQ_OK) err = tq_ops_dir_fsync(snap_dir, error);
    return err;
}

/* Steps 1 and 2: the LSNs to redact (archived first where asked), the erasures, the snapshot. */
static enum tq_err compact_prepare(const struct tq_ops_compact_options *o,
                                   struct tq_ops_classification *c, struct tq_ops_compact_result *r,
                                   struct tq_error *error) {
    struct tq_log *log = NULL;
    enum tq_err err = open_rw(o, &log, error);
    if (err != TQ_OK) return err;
    struct tq_state *state = NULL;
    uint64_t lsn = 0;
    err = tq_ops_state_at(o->dir, UINT64_MAX, &state, &lsn, error);
    /* lsn is the last COMMAND; records after it (the server's events records) do not change
     * the state, so the snapshot covers the whole log. A command beyond the end this handle
     * recovered means someone is appending. */
    if (err == TQ_OK && lsn > tq_log_acked_lsn(log)) {
        err = tq_error_set(error, TQ_ERR_FAILED_PRECONDITION,
                           "the log grew while compacting (LSN %" PRIu64 " -> %" PRIu64
                           "): is a server running on %s?",
                           tq_log_acked_lsn(log), lsn, o->dir);
    }
    if (err == TQ_OK) lsn = tq_log_acked_lsn(log);
    /* What to redact is decided on the state before the erasures: the identities still
     * resolve there. */
    if (err == TQ_OK) {
        struct tq_ops_classify_options co = {.tenant_id = o->tenant_id,
                                             .erase_customers = o->erase_customers,
                                             .erase_count = o->erase_count,
                                             .retention_ms = o->retention_ms};
        err = tq_ops_classify(log, state, &co, c, error);
    }
    if (err == TQ_OK && o->archive_dir != NULL) {
        err = tq_ops_archive_write(log, o->archive_dir, &c->retain, error);
        if (err == TQ_OK) r->archived_records = c->retain.count;
    }
    if (err == TQ_OK && o->erase_count > 0) {
        uint64_t now = wall_ms();
        err = append_erasures(o, log, state, now > c->now_ms ? now : c->now_ms, &lsn, r, error);
    }
    void *blob = NULL;
    size_t len = 0;
    if (err == TQ_OK && lsn > 0) err = tq_state_serialize(state, &blob, &len, error);
    if (err == TQ_OK && lsn > 0) err = tq_log_snapshot_write(log, lsn, blob, len, error);
    if (blob != NULL) tq_free(blob, len);
    r->snapshot_lsn = lsn;
    if (err == TQ_OK && lsn > 0 && o->erase_count > 0) {
        err = tq_ops_snapshots_remove_older(o->dir, lsn, &r->snapshots_removed, error);
    }
    if (state != NULL) tq_state_free(state);
    tq_log_close(log);
    return err;
}

/* Step 4: compress every sealed plain segment. */
static enum tq_err compact_compress(const struct tq_ops_compact_options *o,
                                    struct tq_ops_compact_result *r, struct tq_error *error) {
    struct tq_log *log = NULL;
    enum tq_err err = open_rw(o, &log, error);
    if (err != TQ_OK) return err;
    uint64_t *lsns = tq_xalloc(SEGMENTS_MAX * sizeof(uint64_t));
    size_t n = tq_log_segments(log, lsns, SEGMENTS_MAX);
    for (size_t i = 0; i + 1 < n && err == TQ_OK; i++) {
        if (o->progress) {
            fprintf(stderr, "\rcompact: compressing segment %zu/%zu\033[K", i + 1, n - 1);
        }
        struct tq_compress_stats stats;
        err = tq_log_compress_segment(log, lsns[i], &stats, error);
        if (err == TQ_ERR_FAILED_PRECONDITION) {
            err = TQ_OK; /* already compressed */
        } else if (err == TQ_OK) {
            r->segments_compressed++;
        }
    }
    if (o->progress) fprintf(stderr, "\r\033[K");
    tq_free(lsns, SEGMENTS_MAX * sizeof(uint64_t));
    tq_log_close(log);
    return err;
}

/* The index of the first LSN of set >= first, or set->count. */
static size_t set_lower_bound(const struct tq_ops_lsn_set *set, uint64_t first) {
    size_t lo = 0, hi = set->count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (set->lsns[mid] < first) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* Step 3a: storage's own erasure primitive, for every sealed uncompressed segment. */
static enum tq_err redact_with_storage(const struct tq_ops_compact_options *o,
                                       const struct tq_ops_lsn_set *set,
                                       struct tq_ops_compact_result *r, struct tq_error *error) {
    struct tq_log *log = NULL;
    enum tq_err err = open_rw(o, &log, error);
    if (err != TQ_OK) return err;
    uint64_t *lsns = tq_xalloc(SEGMENTS_MAX * sizeof(uint64_t));
    size_t n = tq_log_segments(log, lsns, SEGMENTS_MAX);
    for (size_t i = 0; i < n && err == TQ_OK; i++) {
        uint64_t next = i + 1 < n ? lsns[i + 1] : UINT64_MAX;
        size_t lo = set_lower_bound(set, lsns[i]), hi = set_lower_bound(set, next);
        if (lo == hi) continue;
        if (o->progress) fprintf(stderr, "\rcompact: redacting in segment %zu/%zu\033[K", i + 1, n);
        uint64_t redacted = 0;
        err = tq_log_redact_segment(log, lsns[i], set->lsns + lo, hi - lo, &redacted, error);
        if (err == TQ_ERR_FAILED_PRECONDITION) {
            err = TQ_OK; /* the tail or a compressed segment: step 3b */
            continue;
        }
        r->records_redacted += redacted;
        if (redacted > 0) r->segments_rewritten++;
    }
    tq_free(lsns, SEGMENTS_MAX * sizeof(uint64_t));
    tq_log_close(log);
    return err;
}

/* Step 3b: segments storage's primitive does not take (compressed ones, the tail), rewritten
 * here with no log open (offline), through storage's decoder. Records already redacted in 3a
 * are skipped, so this only touches what is left. */
static enum tq_err redact_rest(const struct tq_ops_compact_options *o, const char *log_dir,
                               const struct tq_ops_lsn_set *set, struct tq_ops_compact_result *r,
                               struct tq_error *error) {
    struct tq_ops_names names;
    enum tq_err err = tq_ops_segment_names(log_dir, &names, error);
    for (size_t i = 0; i < names.count && err == TQ_OK; i++) {
        uint64_t first = 0, next = UINT64_MAX;
        bool ok = tq_ops_name_lsn(names.names[i], &first);
        TQ_ASSERT(ok);
        if (i + 1 < names.count) {
            ok = tq_ops_name_lsn(names.names[i + 1], &next);
            TQ_ASSERT(ok);
        }
        if (set_lower_bound(set, first) == set_lower_bound(set, next)) continue;
        if (o->progress) {
            fprintf(stderr, "\rcompact: redacting in segment %zu/%zu\033[K", i + 1, names.count);
        }
        uint64_t redacted = 0;
        err = redact_segment(log_dir, names.names[i], set, &redacted, error);
        r->records_redacted += redacted;
        if (redacted > 0) r->segments_rewritten++;
    }
    tq_ops_names_free(&names);
    return err;
}

enum tq_err tq_ops_compact(const struct tq_ops_compact_options *o, struct tq_ops_compact_result *r,
                           struct tq_error *error) {
    TQ_ASSERT(o != NULL && o->dir != NULL);
    TQ_ASSERT(r != NULL);
    memset(r, 0, sizeof(*r));
    if (o->retention_ms == 0 && o->archive_dir != NULL) {
        return tq_error_set(error, TQ_ERR_INVALID_ARGUMENT, "--archive needs --retention");
    }
    /* A live ticketqd (or another writer) holds the directory: refuse at once. */
    int lock_fd = -1;
    enum tq_err lerr = tq_log_dir_lock(o->dir, "ticketq compact", &lock_fd, error);
    if (lerr != TQ_OK) return lerr;
    double t0 = now_seconds();
    r->bytes_before = tq_ops_data_bytes(o->dir);
    struct tq_ops_classification c;
    memset(&c, 0, sizeof(c));
    enum tq_err err = compact_prepare(o, &c, r, error);
    struct tq_ops_lsn_set all;
    memset(&all, 0, sizeof(all));
    for (size_t i = 0; i < c.erase.count; i++)
        set_add(&all, c.erase.lsns[i]);
    for (size_t i = 0; i < c.retain.count; i++)
        set_add(&all, c.retain.lsns[i]);
    set_seal(&all);
    char log_dir[TQ_OPS_PATH_BYTES_MAX];
    if (err == TQ_OK) err = tq_ops_path_join(log_dir, o->dir, "log", error);
    if (err == TQ_OK && all.count > 0) err = redact_with_storage(o, &all, r, error);
    if (err == TQ_OK && all.count > 0) err = redact_rest(o, log_dir, &all, r, error);
    r->records_erased = c.erase.count;
    r->records_retained_out = c.retain.count;
    if (err == TQ_OK && o->compress) err = compact_compress(o, r, error);
    r->bytes_after = tq_ops_data_bytes(o->dir);
    r->seconds = now_seconds() - t0;
    set_free(&all);
    set_free(&c.erase);
    set_free(&c.retain);
    tq_log_dir_unlock(lock_fd);
    return err;
}

/* ---- CLI ------------------------------------------------------------------------------- */

static void compact_usage(FILE *out) {
    fprintf(out,
            "usage: ticketq compact --data DIR [--tenant T] [--erase-customer ID[,ID...]]\n"
            "                       [--retention DAYS [--archive DIR]] [--no-compress]\n"
            "                       [--segment-bytes N (default: as the log was written)]\n"
            "  OFFLINE (stop the server first). Logs a CUSTOMER_ERASE per erased customer\n"
            "  (the state keeps a tombstone: no name, language or identities), writes a\n"
            "  snapshot of the state (older snapshots are deleted when erasing), then rewrites\n"
            "  old segments: the erased customers' messages and identities in the log are\n"
            "  physically removed (hash kept: verify still passes and lists them; replay shows\n"
            "  tombstones), messages of tickets closed more than DAYS ago are dropped (or\n"
            "  archived to DIR first), and sealed segments are zstd-compressed. Crash-safe.\n"
            "  Refused at once while a ticketqd holds DIR (its lock); on a running server use\n"
            "  `ticketq compact` without --data (online).\n");
}

static bool parse_ids(const char *list, struct tq_ops_compact_options *o) {
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        if (o->erase_count == TQ_OPS_ERASE_MAX) return false;
        if (!tq_ops_u64_parse(tok, &o->erase_customers[o->erase_count]) ||
            o->erase_customers[o->erase_count] == 0) {
            return false;
        }
        o->erase_count++;
    }
    return true;
}

int tq_ops_compact_main(int argc, char **argv) {
    struct tq_ops_args args;
    tq_ops_args_init(&args, argc, argv, "compact");
    struct tq_ops_compact_options o;
    memset(&o, 0, sizeof(o));
    o.tenant_id = 1;
    o.compress = true;
    const char *v = NULL;
    bool bad = false;
    while (args.index < argc && !bad) {
        if (tq_ops_args_take(&args, "--help", NULL, &bad) ||
            tq_ops_args_take(&args, "-h", NULL, &bad)) {
            compact_usage(stdout);
            return TQ_OPS_EXIT_OK;
        }
        if (tq_ops_args_take(&args, "--data", &o.dir, &bad)) continue;
        if (tq_ops_args_take(&args, "--archive", &o.archive_dir, &bad)) continue;
        if (tq_ops_args_take(&args, "--no-compress", NULL, &bad)) {
            o.compress = false;
        } else if (tq_ops_args_take(&args, "--tenant", &v, &bad)) {
            bad = bad || !tq_ops_u64_parse(v, &o.tenant_id) || o.tenant_id == 0;
        } else if (tq_ops_args_take(&args, "--erase-customer", &v, &bad)) {
            bad = bad || !parse_ids(v, &o);
        } else if (tq_ops_args_take(&args, "--segment-bytes", &v, &bad)) {
            bad = bad || !tq_ops_u64_parse(v, &o.segment_bytes);
        } else if (tq_ops_args_take(&args, "--retention", &v, &bad)) {
            uint64_t days = 0;
            bad = bad || !tq_ops_u64_parse(v, &days) || days == 0;
            o.retention_ms = days * 86400000ull;
        } else {
            fprintf(stderr, "ticketq compact: unexpected argument %s\n", argv[args.index]);
            bad = true;
        }
    }
    if (bad || o.dir == NULL) {
        compact_usage(stderr);
        return TQ_OPS_EXIT_USAGE;
    }
    o.progress = isatty(2) != 0;
    struct tq_ops_compact_result r;
    struct tq_error error;
    tq_error_clear(&error);
    enum tq_err err = tq_ops_compact(&o, &r, &error);
    if (err != TQ_OK) {
        tq_ops_print_error("compact", &error);
        return err == TQ_ERR_CORRUPT ? TQ_OPS_EXIT_FAILED : TQ_OPS_EXIT_USAGE;
    }
    printf("compact: ok in %.2f s, snapshot at LSN %" PRIu64 "\n", r.seconds, r.snapshot_lsn);
    if (o.erase_count > 0) {
        printf("erased: %" PRIu64 " customers (CUSTOMER_ERASE logged), %" PRIu64
               " already erased; %" PRIu64 " older snapshots removed\n",
               r.customers_erased, r.customers_already_erased, r.snapshots_removed);
    }
    printf("redacted: %" PRIu64 " records in %" PRIu64 " segments (%" PRIu64 " erased, %" PRIu64
           " past retention, %" PRIu64 " archived)\n",
           r.records_redacted, r.segments_rewritten, r.records_erased, r.records_retained_out,
           r.archived_records);
    printf("compressed: %" PRIu64 " segments; space %" PRIu64 " -> %" PRIu64 " bytes\n",
           r.segments_compressed, r.bytes_before, r.bytes_after);
    return TQ_OPS_EXIT_OK;
}
